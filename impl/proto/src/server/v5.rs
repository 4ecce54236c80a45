//! The NTPv5 responder (draft-ietf-ntp-ntpv5-07 §6, §7, §10; -08 and -09 as
//! `docs/ntpv5.md` lists), reached through [`Server::handle`] like NTPv4.
//!
//! A request is answered only when it is a well-formed NTPv5 request (mode 3,
//! extension fields that parse) naming a draft this server speaks in its
//! Draft Identification field (§7.1: never a draft it does not recognize, and
//! never without one, since this is a draft implementation). Access control
//! and rate limiting are those of NTPv4. The answer is in the client's draft
//! and is exactly as long as the request (§7: fields left out are made up for
//! by a Padding field; a response longer than the request is never sent).
//!
//! # Header
//!
//! | field | value |
//! |---|---|
//! | LI | system leap; 3 when unsynchronized; 0 in the leap-smeared timescale |
//! | stratum | system stratum; 0 when unsynchronized, denied or rate limited |
//! | poll | the lowest poll the client may use: `poll_log2_min`, raised to the rate limit's interval when one is enforced (also in a refusal for being over it), 127 when denied (§6: it replaces the KoD codes) |
//! | precision, root delay, root dispersion | as for NTPv4, in `time32` (saturating at 16 s) |
//! | timescale | the requested one if served: UTC always, leap-smeared UTC with a smear configured, TAI with a TAI − UTC offset configured; UTC otherwise |
//! | era | era of the receive timestamp |
//! | flags | Synchronized when synchronized; Interleaved when the transmit timestamp is that of an earlier response |
//! | server cookie | when interleaved was asked for: the receive timestamp of this response, under which its transmit timestamp is saved; 0 otherwise |
//! | client cookie | the request's |
//! | receive, transmit | as for NTPv4, in the timescale |
//!
//! Interleaved mode (§8): a request with the Interleaved flag and a server
//! cookie this server gave the same client address gets the transmit
//! timestamp of that earlier response, and the flag; otherwise a basic answer.
//!
//! # Extension fields, in the request's order
//!
//! | request field | answer |
//! |---|---|
//! | Draft Identification | the same name |
//! | Padding | echoed (zeros, same length) |
//! | Server Information | versions 1–5 (0x001f) |
//! | Reference IDs Request | the chunk of this server's filter ([`Server::set_reference_ids`]); left out when the offset does not fit |
//! | Reference Timestamp | the time of the last clock update |
//! | Secondary Receive Timestamp | the receive time in that timescale, when served; left out otherwise |
//! | Correction | origin fields = the request's delay fields, own delay fields 0; stays last |
//! | MAC, Monotonic Receive Timestamp, NTS and unknown fields | left out (no keys; no uncorrected clock; NTS goes through [`Server::handle_nts`]) |
//!
//! A request with a MAC is answered with the Authentication NAK flag,
//! stratum 0 and no time (§7.3: the key is unknown), Draft Identification
//! and Padding only. Rate-limited and denied requests get stratum 0 and no
//! time as well, with Draft Identification, Server Information and
//! Reference IDs Response answered and Padding for the rest (§7: a server
//! answers every field it supports).

use super::{
    table, AccessAction, DropReason, KodKind, Pending, RateVerdict, Response, ResponseReason, Scale, Server, ServerAction,
    ServerClockState,
};
use crate::time::{NtpTime, NtpTimestamp};
use crate::wire::ext::{FieldRepr, FieldType};
use crate::wire::v4::{LeapIndicator, Mode};
use crate::wire::v5::{self, draft_of, BloomFilter, Draft, DraftId, FieldBody, Flags, Repr, Time32, Timescale, BLOOM_FILTER_LEN};
use core::net::IpAddr;

/// The NTPv4 reference timestamp with which a client asks to be upgraded and
/// a server offers NTPv5: "NTP5DRFT" for draft implementations (-07 §12).
pub const UPGRADE_MARKER: NtpTimestamp = NtpTimestamp::from_bits(u64::from_be_bytes(*b"NTP5DRFT"));

/// Versions answered, bit 0 = NTPv1 (§7.5).
pub const SUPPORTED_VERSIONS: u16 = 0x001f;

/// Poll value meaning "do not ask again" (§6).
pub const POLL_NEVER: i8 = 127;

/// Why an NTPv5 request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum V5Drop {
    /// Not a request (mode other than 3).
    BadMode(Mode),
    /// The extension fields do not parse, or the length is no multiple of 4.
    Malformed,
    /// No Draft Identification field: this draft implementation does not
    /// answer final-version requests.
    NoDraft,
    /// A Draft Identification naming a draft this server does not speak (§7.1).
    UnknownDraft,
    /// The answer would be longer than the request (never sent, §7).
    Longer,
}

impl Server {
    /// Replaces the NTPv5 Reference IDs filter served to clients: this
    /// server's own 120-bit ID and those of the sources it selected (§7.4).
    pub fn set_reference_ids(&mut self, filter: BloomFilter) {
        *self.reference_ids = filter;
    }

    /// The NTPv5 Reference IDs filter served.
    pub fn reference_ids(&self) -> &BloomFilter {
        &self.reference_ids
    }

    /// [`Server::handle`] for a version-5 datagram of at least 48 octets.
    pub(super) fn handle_v5(
        &mut self,
        now_ns: u64,
        client: IpAddr,
        request: &[u8],
        rx_time: NtpTime,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        let drop = |d| ServerAction::Ignore(DropReason::V5(d));
        let Ok(packet) = v5::Packet::new_checked(request) else { return ServerAction::Ignore(DropReason::TooShort) };
        let Ok(req) = Repr::parse(&packet) else { return ServerAction::Ignore(DropReason::TooShort) };
        if req.mode != Mode::Client {
            return drop(V5Drop::BadMode(req.mode));
        }
        let area = v5::parse_extensions(packet.payload());
        if area.error.is_some() || request.len() % 4 != 0 {
            return drop(V5Drop::Malformed);
        }
        let draft = match draft_of(&area.fields) {
            DraftId::Known { draft, .. } => draft,
            DraftId::Absent => return drop(V5Drop::NoDraft),
            DraftId::Unknown(_) => return drop(V5Drop::UnknownDraft),
        };
        if out.len() < request.len() {
            return ServerAction::Ignore(DropReason::OutputTooSmall);
        }
        let client = table::canonical(client);
        let refusal = match self.config.access.decide(client) {
            AccessAction::Allow => None,
            AccessAction::Deny => return ServerAction::Ignore(DropReason::Denied),
            AccessAction::KodDeny => Some(KodKind::Deny),
            AccessAction::Restrict => Some(KodKind::Rstr),
        };
        if let Some(kind) = refusal {
            if !self.rate.take_kod(now_ns, client) {
                return ServerAction::Ignore(DropReason::KodLimited(kind));
            }
            return self.finish_v5_refusal(&req, &area.fields, request.len(), kind, clock, out);
        }
        match self.rate.check_request(now_ns, client) {
            RateVerdict::Serve => {}
            RateVerdict::SendKod => return self.finish_v5_refusal(&req, &area.fields, request.len(), KodKind::Rate, clock, out),
            RateVerdict::Drop if self.config.rate_limit.kod => {
                return ServerAction::Ignore(DropReason::KodLimited(KodKind::Rate))
            }
            RateVerdict::Drop => return ServerAction::Ignore(DropReason::RateLimited),
        }
        if area.fields.iter().any(|f| f.field_type == FieldType::V5Mac) {
            return self.finish_v5_auth_nak(&req, &area.fields, request.len(), clock, out);
        }
        self.v5_time_response(now_ns, client, &req, &area.fields, draft, request.len(), rx_time, clock, out)
    }

    /// The timescale served for a request asking for `asked`, and its code.
    fn v5_scale(&self, asked: Timescale) -> (Scale, Timescale) {
        match (asked, self.config.tai_utc_offset, &self.config.smear) {
            (Timescale::Tai, Some(offset), _) => (Scale::Tai(offset), Timescale::Tai),
            (Timescale::LeapSmearedUtc, _, Some(_)) => (Scale::Served, Timescale::LeapSmearedUtc),
            _ => (Scale::Utc, Timescale::Utc),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn v5_time_response(
        &mut self,
        now_ns: u64,
        client: IpAddr,
        req: &Repr,
        fields: &[FieldRepr],
        draft: Draft,
        request_len: usize,
        rx_time: NtpTime,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        let synced = clock.is_synchronized();
        let (scale, timescale) = self.v5_scale(req.timescale);
        let rx_in_scale = self.in_scale(rx_time, scale, clock);
        let rx = rx_in_scale.to_timestamp();
        let wants_interleaved = self.config.interleaved && req.flags.interleaved();
        let mut previous_tx = None;
        if wants_interleaved && req.server_cookie != 0 {
            previous_tx = self.interleaved.take(client, NtpTimestamp::from_bits(req.server_cookie)).filter(|tx| *tx != rx);
        }
        let interleaved = previous_tx.is_some();
        let leap = match (synced, scale) {
            (false, _) => LeapIndicator::Unsynchronized,
            // A leap-smeared timescale hides the leap (§6 LI 0).
            (true, Scale::Served) if self.config.smear.is_some() => LeapIndicator::NoWarning,
            (true, _) => clock.leap,
        };
        let mut flags = 0;
        if synced {
            flags |= Flags::SYNCHRONIZED;
        }
        if interleaved {
            flags |= Flags::INTERLEAVED;
        }
        let header = Repr {
            leap,
            version: v5::VERSION,
            mode: Mode::Server,
            stratum: if synced { clock.stratum } else { 0 },
            poll: self.v5_poll(),
            precision: clock.precision_log2,
            root_delay: Time32::from_duration(clock.root_delay),
            root_dispersion: Time32::from_duration(clock.root_dispersion_at(rx_time)),
            timescale,
            era: rx_in_scale.era().rem_euclid(256) as u8,
            flags: Flags(flags),
            server_cookie: if wants_interleaved { rx.to_bits() } else { 0 },
            client_cookie: req.client_cookie,
            receive_timestamp: rx,
            transmit_timestamp: previous_tx.unwrap_or(NtpTimestamp::ZERO),
        };
        let reference = clock.reference_time.map(|r| self.in_scale(r, scale, clock).to_timestamp());
        let answers = |f: &FieldRepr| self.v5_answer(f, rx_time, reference, clock);
        let Some(len) = write_v5(&header, fields, request_len, answers, out) else {
            return ServerAction::Ignore(DropReason::V5(V5Drop::Longer));
        };
        debug_assert!(draft_of(fields).draft() == Some(draft));
        ServerAction::Respond(Response {
            len,
            reason: if interleaved { ResponseReason::Interleaved } else { ResponseReason::Basic },
            pending: Pending::Time { client, rx, rx_time: rx_in_scale, interleaved, xleave_client: wants_interleaved, now_ns, scale },
        })
    }

    /// The answer to one request field; `None` leaves it out.
    fn v5_answer(&self, f: &FieldRepr, rx_time: NtpTime, reference: Option<NtpTimestamp>, clock: &ServerClockState) -> Option<FieldRepr> {
        let body = match FieldBody::parse(f)?.ok()? {
            // The same name octets; alignment octets are zeros whatever the request's were.
            FieldBody::DraftIdentification { .. } => return Some(FieldRepr { padding: vec![0; f.padding.len()], ..f.clone() }),
            FieldBody::Padding { body } => FieldBody::Padding { body: vec![0; body.len()] },
            b @ (FieldBody::ServerInformation { .. } | FieldBody::ReferenceIdsRequest { .. }) => self.v5_timeless_answer(b)?,
            FieldBody::ReferenceTimestamp { .. } => FieldBody::ReferenceTimestamp { timestamp: reference.unwrap_or(NtpTimestamp::ZERO) },
            FieldBody::SecondaryReceiveTimestamp { timescale, .. } => {
                let (scale, served) = self.v5_scale(timescale);
                if served != timescale {
                    return None;
                }
                let t = self.in_scale(rx_time, scale, clock);
                FieldBody::SecondaryReceiveTimestamp {
                    timescale,
                    era: t.era().rem_euclid(256) as u8,
                    reserved: 0,
                    timestamp: t.to_timestamp(),
                }
            }
            FieldBody::Correction { delay_correction, delay_path_id, .. } => FieldBody::Correction {
                origin_correction: delay_correction,
                origin_path_id: delay_path_id,
                reserved: 0,
                delay_correction: 0,
                delay_path_id: 0,
                checksum_complement: 0,
            },
            FieldBody::Mac { .. } | FieldBody::MonotonicReceiveTimestamp { .. } | FieldBody::ReferenceIdsResponse { .. } => return None,
        };
        Some(body.to_field())
    }

    /// The answer to Server Information or a Reference IDs Request, the
    /// fields whose answer carries no time (`None` for others, and for a
    /// chunk outside the filter).
    fn v5_timeless_answer(&self, body: FieldBody) -> Option<FieldBody> {
        match body {
            FieldBody::ServerInformation { .. } => Some(FieldBody::ServerInformation { supported_versions: SUPPORTED_VERSIONS, reserved: 0 }),
            FieldBody::ReferenceIdsRequest { offset, padding } => {
                let len = 2 + padding.len();
                let chunk = self.reference_ids.chunk(usize::from(offset), len.min(BLOOM_FILTER_LEN + 1))?;
                Some(FieldBody::ReferenceIdsResponse { chunk: chunk.to_vec() })
            }
            _ => None,
        }
    }

    /// The Poll of a reply: the lowest poll a client may use (-07 §10 step
    /// 4: "the minimum allowed polling interval of the client ... using the
    /// same value for all clients"): `poll_log2_min`, raised to the rate
    /// limit's interval when a limit is enforced, so that a client keeping to
    /// it is never refused.
    fn v5_poll(&self) -> i8 {
        let limit = &self.config.rate_limit;
        if limit.enabled {
            self.config.poll_log2_min.max(limit.poll_log2_min())
        } else {
            self.config.poll_log2_min
        }
    }

    /// A refusal (rate limit, access rule): stratum 0, the poll to keep to,
    /// no time; Draft Identification, Server Information and Reference IDs
    /// Response answered, Padding for the rest.
    fn finish_v5_refusal(
        &mut self,
        req: &Repr,
        fields: &[FieldRepr],
        request_len: usize,
        kind: KodKind,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        let poll = match kind {
            KodKind::Rate => self.config.poll_log2_min.max(self.config.rate_limit.poll_log2_min()),
            KodKind::Deny | KodKind::Rstr => POLL_NEVER,
        };
        let header = empty_response(req, poll, Flags(0), clock);
        // -07 §7: every requested field the server supports is answered,
        // refusals included; those that carry time are not (a refusal gives
        // none) and are made up for by Padding.
        let answers = |f: &FieldRepr| match f.field_type {
            FieldType::V5ServerInformation | FieldType::V5ReferenceIdsRequest => self.v5_timeless_answer(FieldBody::parse(f)?.ok()?).map(|b| b.to_field()),
            _ => only_draft_and_padding(f),
        };
        match write_v5(&header, fields, request_len, answers, out) {
            Some(len) => ServerAction::Respond(Response { len, reason: ResponseReason::KodSent(kind), pending: Pending::Nothing }),
            None => ServerAction::Ignore(DropReason::V5(V5Drop::Longer)),
        }
    }

    /// A request with a MAC this server has no key for (§7.3): Authentication
    /// NAK, stratum 0, no time, no MAC.
    fn finish_v5_auth_nak(
        &mut self,
        req: &Repr,
        fields: &[FieldRepr],
        request_len: usize,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        let header = empty_response(req, self.v5_poll(), Flags(Flags::AUTH_NAK), clock);
        match write_v5(&header, fields, request_len, only_draft_and_padding, out) {
            Some(len) => ServerAction::Respond(Response { len, reason: ResponseReason::Basic, pending: Pending::Nothing }),
            None => ServerAction::Ignore(DropReason::V5(V5Drop::Longer)),
        }
    }
}

fn only_draft_and_padding(f: &FieldRepr) -> Option<FieldRepr> {
    match f.field_type {
        FieldType::V5DraftIdentification => Some(FieldRepr { padding: vec![0; f.padding.len()], ..f.clone() }),
        FieldType::V5Padding => Some(FieldRepr::new(FieldType::V5Padding, vec![0; f.value.len()])),
        _ => None,
    }
}

/// A response header without time: stratum 0, LI 3, zero timestamps.
fn empty_response(req: &Repr, poll: i8, flags: Flags, clock: &ServerClockState) -> Repr {
    Repr {
        leap: LeapIndicator::Unsynchronized,
        version: v5::VERSION,
        mode: Mode::Server,
        stratum: 0,
        poll,
        precision: clock.precision_log2,
        root_delay: Time32::ZERO,
        root_dispersion: Time32::ZERO,
        timescale: Timescale::Utc,
        era: 0,
        flags,
        server_cookie: 0,
        client_cookie: req.client_cookie,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: NtpTimestamp::ZERO,
    }
}

/// Writes `header` and the answers to the request `fields` into `out`, with a
/// Padding field making up for what was left out (before a trailing
/// Correction, which must stay last), so that the response is exactly
/// `request_len` octets. `None` when it would be longer, or `out` is short.
fn write_v5(
    header: &Repr,
    fields: &[FieldRepr],
    request_len: usize,
    answer: impl Fn(&FieldRepr) -> Option<FieldRepr>,
    out: &mut [u8],
) -> Option<usize> {
    let mut answers: Vec<FieldRepr> = fields.iter().filter_map(answer).collect();
    // One Correction at most, and last (§7.6), even when the request had it elsewhere.
    let correction = answers.iter().rposition(|a| a.field_type == FieldType::V5Correction).map(|i| answers.remove(i));
    answers.retain(|a| a.field_type != FieldType::V5Correction);
    let used: usize = v5::HEADER_LEN + answers.iter().chain(&correction).map(FieldRepr::buffer_len).sum::<usize>();
    let missing = request_len.checked_sub(used)?;
    if missing > 0 {
        // Every field left out took at least its 4-octet header.
        answers.push(FieldRepr::new(FieldType::V5Padding, vec![0; missing.checked_sub(4)?]));
    }
    answers.extend(correction);
    let out = out.get_mut(..request_len)?;
    header.emit(&mut v5::Packet::new_unchecked(&mut out[..]));
    let mut pos = v5::HEADER_LEN;
    for a in &answers {
        let bytes = a.to_bytes();
        out.get_mut(pos..pos + bytes.len())?.copy_from_slice(&bytes);
        pos += bytes.len();
    }
    (pos == request_len).then_some(pos)
}

#[cfg(test)]
mod tests;
