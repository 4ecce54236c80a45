//! NTPv5 for a [`Source`]: requests, the checks of a reply
//! (draft-ietf-ntp-ntpv5-07 §9), the Reference IDs filter of the server, and
//! the version upgrade from NTPv4 and the fall-back to it (§12).
//!
//! # Which protocol ([`Speaking`])
//!
//! - `version = 5`: NTPv5 only, in the configured draft.
//! - `version = 4` with `v5_auto`: NTPv4 requests carry the reference
//!   timestamp "NTP5DRFT". A reply that echoes it switches the association
//!   to NTPv5. After [`UPGRADE_ASKS`] replies without the echo, or when
//!   [`V5_UNANSWERED_LIMIT`] NTPv5 requests in a row go unanswered after an
//!   upgrade, it speaks plain NTPv4 for [`V5_FALLBACK_REQUESTS`] requests and
//!   then asks again. An on-path attacker who strips the echo keeps the
//!   association on NTPv4 (the draft's security is configured, not
//!   negotiated); one who forges it makes the client try NTPv5 and come back.
//!
//! # Request
//!
//! The header of §9 (all zero but version, mode, timescale UTC and a random
//! client cookie; from -08 on the Poll field carries the host poll, as
//! ntpd-rs does), then Draft Identification, Server Information (zeros:
//! it asks which versions the server supports, §7.5) and a Reference IDs
//! Request for the next [`REFERENCE_IDS_CHUNK`]-octet chunk of the server's
//! filter: every request has the same length ([`V5_REQUEST_LEN`]), and the
//! whole filter arrives in four polls.
//!
//! # Reply checks, in order
//!
//! Format (48 octets, mode 4, fields that parse), demobilized, duplicate
//! transmit timestamp, client cookie (zero → `ZeroOrigin`; no request
//! outstanding → `AlreadyAnswered`/`Unsolicited`; another → `Bogus`); the
//! reply then answers the request. Draft Identification equal to ours
//! (`WrongDraft`); Authentication NAK (`CryptoNak`); stratum 0: the server's
//! Poll is honoured (127 demobilizes, like DENY; a higher poll is a rate
//! limit) and no sample; zero timestamps; Synchronized flag clear or LI 3
//! (`Unsynchronized`); stratum ≥ 16; timescale other than UTC
//! (`WrongTimescale`); root distance ≥ 16 s. A reply that passes is a sample;
//! its Poll becomes a floor of the poll interval (§6: the lowest the client
//! may use), and its Reference IDs chunk goes into the server's filter.

use super::{
    Outstanding, RejectReason, Source, SourceConfig, SourceEvent, KOD_RATE_POLL_CAP_LOG2, REQUEST_LEN,
};
use crate::mono::Instant;
use crate::time::{NtpTime, NtpTimestamp};
use crate::wire::ext::FieldType;
use crate::wire::refid::{KissCode, ReferenceId};
use crate::wire::short::NtpShort;
use crate::wire::v4::{self, LeapIndicator, Mode};
use crate::wire::v5::{self, draft_of, BloomFilter, FieldBody, Timescale, BLOOM_FILTER_LEN};

/// Octets of the Reference IDs chunk asked for in each NTPv5 request.
pub const REFERENCE_IDS_CHUNK: usize = 128;

/// Length of every NTPv5 request: header, Draft Identification (27 octets,
/// padded to 28), Server Information (8), Reference IDs Request (4 + chunk).
pub const V5_REQUEST_LEN: usize = v5::HEADER_LEN + 28 + 8 + 4 + REFERENCE_IDS_CHUNK;

/// NTPv4 replies without the upgrade echo before the client stops asking.
pub const UPGRADE_ASKS: u8 = 8;

/// Unanswered NTPv5 requests in a row, after an upgrade, before falling back
/// to NTPv4 (§12: "a few requests (e.g. 2)").
pub const V5_UNANSWERED_LIMIT: u8 = 2;

/// Plain NTPv4 requests after a failed upgrade before asking again (§12: "many
/// requests (e.g. 256)").
pub const V5_FALLBACK_REQUESTS: u16 = 256;

/// Which protocol an association speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaking {
    /// NTPv1–v4, never asking for more.
    V4,
    /// NTPv4 asking for NTPv5; `asks_left` replies without the echo remain.
    V4Asking {
        /// Replies without the echo before giving up for a while.
        asks_left: u8,
    },
    /// NTPv4 after a failed upgrade; asks again after `requests_left` requests.
    V4Holdoff {
        /// Requests before asking again.
        requests_left: u16,
    },
    /// NTPv5.
    V5 {
        /// NTPv5 requests in a row that went unanswered.
        unanswered: u8,
        /// Reached by an upgrade (so it may fall back), not configured.
        upgraded: bool,
    },
}

impl Speaking {
    pub(super) fn initial(config: &SourceConfig) -> Speaking {
        match (config.version, config.v5_auto) {
            (5, _) => Speaking::V5 { unanswered: 0, upgraded: false },
            (_, true) => Speaking::V4Asking { asks_left: UPGRADE_ASKS },
            _ => Speaking::V4,
        }
    }

    /// Whether requests are NTPv5 now.
    pub fn is_v5(self) -> bool {
        matches!(self, Speaking::V5 { .. })
    }
}

impl Source {
    /// Which protocol the association speaks now.
    pub fn speaking(&self) -> Speaking {
        self.speaking
    }

    /// The server's NTPv5 Reference IDs filter, once a whole one has arrived
    /// (draft-ietf-ntp-ntpv5-07 §7.4). A server whose filter holds this host's
    /// own ID is synchronized through this host: a loop.
    pub fn reference_ids(&self) -> Option<&BloomFilter> {
        self.reference_ids.complete()
    }

    /// Octets the next request needs.
    pub(super) fn request_len(&self) -> usize {
        if self.speaking.is_v5() {
            V5_REQUEST_LEN
        } else {
            REQUEST_LEN
        }
    }

    /// Called for each request about to be written: counts an unanswered
    /// NTPv5 request, falls back or asks again as due. Then writes the
    /// request; returns its length and, for NTPv5, the chunk offset asked.
    pub(super) fn write_any_request(&mut self, xmt: NtpTimestamp, buf: &mut [u8]) -> (usize, Option<usize>) {
        let last_unanswered = self.outstanding.is_some_and(|o: Outstanding| o.v5_chunk.is_some());
        self.speaking = match self.speaking {
            Speaking::V5 { unanswered, upgraded } => {
                let unanswered = if last_unanswered { unanswered.saturating_add(1) } else { unanswered };
                if upgraded && unanswered >= V5_UNANSWERED_LIMIT {
                    Speaking::V4Holdoff { requests_left: V5_FALLBACK_REQUESTS }
                } else {
                    Speaking::V5 { unanswered, upgraded }
                }
            }
            Speaking::V4Holdoff { requests_left: 0 } => Speaking::V4Asking { asks_left: UPGRADE_ASKS },
            Speaking::V4Holdoff { requests_left } => Speaking::V4Holdoff { requests_left: requests_left - 1 },
            other => other,
        };
        if self.speaking.is_v5() && buf.len() >= V5_REQUEST_LEN {
            let offset = self.reference_ids.next_offset();
            self.write_v5_request(xmt.to_bits(), offset, buf);
            (V5_REQUEST_LEN, Some(offset))
        } else {
            let ask = matches!(self.speaking, Speaking::V4Asking { .. });
            self.write_request(xmt, buf);
            if ask {
                buf[16..24].copy_from_slice(&crate::server::UPGRADE_MARKER.to_bits().to_be_bytes());
            }
            (REQUEST_LEN, None)
        }
    }

    /// An NTPv4 reply answered our request; `echoed` says it carries the
    /// upgrade marker. Returns whether the marker answers our asking (then it
    /// is no reference time) and switches to NTPv5.
    pub(super) fn v4_answered(&mut self, echoed: bool) -> bool {
        match self.speaking {
            Speaking::V4Asking { .. } if echoed => {
                self.speaking = Speaking::V5 { unanswered: 0, upgraded: true };
                true
            }
            Speaking::V4Asking { asks_left } if asks_left <= 1 => {
                self.speaking = Speaking::V4Holdoff { requests_left: V5_FALLBACK_REQUESTS };
                false
            }
            Speaking::V4Asking { asks_left } => {
                self.speaking = Speaking::V4Asking { asks_left: asks_left - 1 };
                false
            }
            _ => false,
        }
    }

    fn write_v5_request(&self, cookie: u64, chunk_offset: usize, buf: &mut [u8]) {
        let mut header = v5::Repr::request(Timescale::Utc, cookie);
        if !self.config.draft.request_poll_must_be_zero() {
            header.poll = self.host_poll_log2.max(self.kod_poll_floor_log2);
        }
        header.emit(&mut v5::Packet::new_unchecked(&mut buf[..v5::HEADER_LEN]));
        let draft = FieldBody::DraftIdentification { name: self.config.draft.name().as_bytes().to_vec() }.to_field();
        let offset = u16::try_from(chunk_offset).unwrap_or(0);
        let request = FieldBody::ReferenceIdsRequest { offset, padding: vec![0; REFERENCE_IDS_CHUNK - 2] }.to_field();
        let info = FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field();
        let mut pos = v5::HEADER_LEN;
        for f in [draft, info, request] {
            let bytes = f.to_bytes();
            buf[pos..pos + bytes.len()].copy_from_slice(&bytes);
            pos += bytes.len();
        }
        debug_assert_eq!(pos, V5_REQUEST_LEN);
    }

    /// The NTPv5 counterpart of the NTPv4 checks (see the module docs).
    pub(super) fn process_v5_response(
        &mut self,
        now: Instant,
        bytes: &[u8],
        rx_local: NtpTime,
        tx_local_actual: Option<NtpTime>,
    ) -> SourceEvent {
        use RejectReason as R;
        let reject = SourceEvent::Rejected;
        let Ok(packet) = v5::Packet::new_checked(bytes) else { return reject(R::TooShort) };
        let Ok(h) = v5::Repr::parse(&packet) else { return reject(R::TooShort) };
        if !self.speaking.is_v5() && self.outstanding.is_none_or(|o| o.v5_chunk.is_none()) {
            // Not speaking NTPv5 and no NTPv5 request outstanding.
            return reject(R::BadVersion);
        }
        if h.mode != Mode::Server {
            return reject(R::BadMode);
        }
        let area = v5::parse_extensions(packet.payload());
        if area.error.is_some() {
            return reject(R::MalformedExtension);
        }
        if self.demobilized.is_some() {
            return reject(R::Demobilized);
        }
        if !h.transmit_timestamp.is_zero() && Some(h.transmit_timestamp) == self.last_rx_xmt {
            return reject(R::Duplicate);
        }
        let cookie = NtpTimestamp::from_bits(h.client_cookie);
        if cookie.is_zero() {
            return reject(R::ZeroOrigin);
        }
        let Some(out) = self.outstanding else {
            return if Some(cookie) == self.last_answered_xmt { reject(R::AlreadyAnswered) } else { reject(R::Unsolicited) };
        };
        if cookie != out.xmt || out.v5_chunk.is_none() {
            return reject(R::Bogus);
        }
        self.outstanding = None;
        self.last_answered_xmt = Some(out.xmt);
        self.last_rx_xmt = Some(h.transmit_timestamp);
        if let Speaking::V5 { upgraded, .. } = self.speaking {
            self.speaking = Speaking::V5 { unanswered: 0, upgraded };
        }

        if draft_of(&area.fields).draft() != Some(self.config.draft) {
            return reject(R::WrongDraft);
        }
        if h.flags.auth_nak() {
            return reject(R::CryptoNak);
        }
        if h.stratum == 0 {
            return self.v5_refusal(now, &h);
        }
        if h.transmit_timestamp.is_zero() {
            return reject(R::ZeroTransmit);
        }
        if h.receive_timestamp.is_zero() {
            return reject(R::ZeroReceive);
        }
        if h.leap == LeapIndicator::Unsynchronized || !h.flags.synchronized() {
            return reject(R::Unsynchronized);
        }
        if h.stratum >= 16 {
            return reject(R::StratumUnsynchronized);
        }
        if h.timescale != Timescale::Utc {
            return reject(R::WrongTimescale);
        }
        if h.root_delay.to_duration().half() + h.root_dispersion.to_duration() >= super::MAXDISP {
            return reject(R::RootDistance);
        }
        if let Some(offset) = out.v5_chunk {
            let chunk = area.fields.iter().find(|f| f.field_type == FieldType::V5ReferenceIdsResponse);
            if let Some(f) = chunk {
                if offset + f.value.len() <= BLOOM_FILTER_LEN {
                    self.reference_ids.take(offset, &f.value);
                }
            }
        }
        // The NTPv4 view of the header the measurement needs; NTPv5 has no
        // reference ID or reference timestamp in its header.
        let as_v4 = v4::Repr {
            leap: h.leap,
            version: v5::VERSION,
            mode: Mode::Server,
            stratum: h.stratum,
            poll: h.poll,
            precision: h.precision,
            root_delay: NtpShort::from_duration(h.root_delay.to_duration()),
            root_dispersion: NtpShort::from_duration(h.root_dispersion.to_duration()),
            reference_id: ReferenceId::NONE,
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: cookie,
            receive_timestamp: h.receive_timestamp,
            transmit_timestamp: h.transmit_timestamp,
        };
        let local_send_time = tx_local_actual.unwrap_or(out.local_send_time);
        let m = self.measure(now, &as_v4, super::Stamps::basic(local_send_time, &as_v4, rx_local), false);
        self.reach |= 1;
        self.v5_poll_floor_log2 = h.poll;
        self.last_leap = Some(h.leap);
        if self.burst_remaining == 0 {
            self.schedule_regular(now);
        }
        if self.config.max_delay.is_some_and(|max| m.delay > max) {
            return reject(RejectReason::MaxDelay);
        }
        if self.delay_ratio_exceeded(m.delay) {
            return reject(RejectReason::MaxDelayRatio);
        }
        SourceEvent::Sample(m)
    }

    /// A stratum-0 NTPv5 reply: the server will not give time. Its Poll is
    /// honoured: 127 ends the association (as DENY did); a Poll at or above
    /// the interval in force is a refusal (as RATE was): it becomes the floor,
    /// ends any burst (the start's burst may ignore the server's Poll, -07 §9,
    /// but not a refusal) and holds requests off for one interval. A lower
    /// Poll is an unsynchronized server's: no sample, nothing else changes.
    fn v5_refusal(&mut self, now: Instant, h: &v5::Repr) -> SourceEvent {
        if h.poll == crate::server::v5::POLL_NEVER {
            self.demobilized = Some(KissCode::Deny);
            self.burst_remaining = 0;
            self.next_send_at = Instant::MAX;
            return SourceEvent::Demobilize(KissCode::Deny);
        }
        let current = self.poll_log2();
        if h.poll >= current {
            let cap = KOD_RATE_POLL_CAP_LOG2.max(self.config.poll_max_log2);
            self.v5_poll_floor_log2 = h.poll.min(cap);
            self.burst_remaining = 0;
            let poll_log2 = self.poll_log2();
            self.not_before = now + super::poll_interval(poll_log2, self.jitter_frac16);
            self.next_send_at = self.not_before;
            return SourceEvent::RateLimited { poll_log2, next_poll_at: self.next_send_at };
        }
        SourceEvent::Rejected(RejectReason::StratumUnsynchronized)
    }
}

#[cfg(test)]
mod tests;
