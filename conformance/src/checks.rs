//! Checks over a run's trace. Each check looks at the datagrams
//! (`packets.jsonl`, payloads decoded with `ntplab_proto::wire::parse_packet`),
//! the daemon's events (`events.jsonl`) and the sample grid (`samples.csv`)
//! and returns a [`Outcome`]: [`Status::Pass`], [`Status::Fail`] or
//! [`Status::NotExercised`], a one-line reason, and evidence (frame numbers of
//! `packets.pcap`, lines of the trace files, times and figures).
//!
//! Which requirement a check gives evidence for is data: the `checks` key of
//! `catalog.toml`. The "device under test" is every host that runs the
//! daemon; scripted peers are the test's stimulus and are never judged.
//!
//! Accepted samples are logged as `sample` events (the client's own offset,
//! delay, dispersion and T1–T4); the `client-sample-*` checks compare them
//! with the formulas and with the truth the simulator recorded. Rejections
//! are `source_reply` events, and the reply-classification checks still take
//! a reply delivered to a daemon's source socket that produced no
//! `source_reply` event as used.

mod interleaved;
pub mod nts;
mod v5;

use crate::trace::{Context, EventRec, HostKind, PacketRec, Trace};
use ntplab_proto::clock::steered::MAX_TICK_RATE;
use ntplab_proto::time::{NtpTime, NtpTimestamp};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::{LeapIndicator, Mode};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exercised and met.
    Pass,
    /// Exercised and violated.
    Fail,
    /// The run never created the situation the requirement is about.
    NotExercised,
}

impl Status {
    /// `pass`, `fail` or `not exercised`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotExercised => "not exercised",
        }
    }
}

/// At most this many evidence lines are kept per outcome.
pub const EVIDENCE_MAX: usize = 5;

/// What one check found in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The verdict.
    pub status: Status,
    /// One line saying why.
    pub reason: String,
    /// The datagrams, events and figures that decided it (at most [`EVIDENCE_MAX`]).
    pub evidence: Vec<String>,
}

impl Outcome {
    /// Not exercised, for this reason.
    pub fn not_exercised(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::NotExercised, reason: reason.into(), evidence: Vec::new() }
    }
}

/// Counts cases and keeps the first few pieces of evidence; bad cases first.
#[derive(Debug, Default)]
struct Tally {
    good: usize,
    bad: usize,
    bad_evidence: Vec<String>,
    good_evidence: Vec<String>,
}

impl Tally {
    fn good(&mut self, e: impl FnOnce() -> String) {
        self.good += 1;
        if self.good_evidence.len() < 2 {
            self.good_evidence.push(e());
        }
    }

    fn bad(&mut self, e: impl FnOnce() -> String) {
        self.bad += 1;
        if self.bad_evidence.len() < EVIDENCE_MAX {
            self.bad_evidence.push(e());
        }
    }

    /// `what` names the cases (plural noun phrase), `idle` says why nothing was exercised.
    fn outcome(self, what: &str, idle: &str) -> Outcome {
        if self.bad > 0 {
            Outcome {
                status: Status::Fail,
                reason: format!("{} of {} {what} violate it; first: {}", self.bad, self.bad + self.good, self.bad_evidence[0]),
                evidence: self.bad_evidence,
            }
        } else if self.good > 0 {
            Outcome { status: Status::Pass, reason: format!("all {} {what} meet it", self.good), evidence: self.good_evidence }
        } else {
            Outcome::not_exercised(idle)
        }
    }
}

/// A check: an ID (named in `catalog.toml`), a title, and its function.
#[derive(Clone, Copy)]
pub struct Check {
    /// Stable ID, e.g. `server-echoes-origin`.
    pub id: &'static str,
    /// What it verifies, one line.
    pub title: &'static str,
    /// Runs it.
    pub run: fn(&Analysis<'_>) -> Outcome,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("id", &self.id).finish_non_exhaustive()
    }
}

/// RFC 5905 STEPT: offsets below it are slewed, seconds.
pub const STEPT_S: f64 = 0.125;
/// RFC 5905 MAXDISP (s): a reply whose root distance reaches it is insane (§8).
pub const MAXDISP_S: f64 = 16.0;
/// RFC 8633 §5.4: a RATE back-off must stay at or below 2^13 s.
pub const RATE_POLL_CAP_S: f64 = 8192.0;
/// RFC 5905 MAXPOLL: 2^17 s.
pub const MAXPOLL_LOG2: i8 = 17;
/// RFC 5905 MINPOLL: 2^4 s.
pub const MINPOLL_LOG2: i8 = 4;
/// Start of NTP era 1: 2036-02-07T06:28:16Z.
pub const ERA1: NtpTime = NtpTime::ERA1;

/// How a reply delivered to a daemon's source socket relates to that socket's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplyClass {
    /// Answers the outstanding request, first of its kind, sane header.
    Fresh,
    /// Fresh but a kiss-o'-death (stratum 0, mode 4).
    Kiss,
    /// Shorter than the 48-octet header.
    Short,
    /// Version not 1–4.
    BadVersion,
    /// A header followed by an extension area that does not decode.
    BadExtension,
    /// Not mode 4.
    BadMode,
    /// No request outstanding: none was sent on this socket to this server
    /// before, or the latest was already answered and this reply's origin is
    /// not that request's transmit timestamp.
    Unsolicited,
    /// Origin timestamp zero.
    ZeroOrigin,
    /// Origin differs from the outstanding request's transmit timestamp.
    Bogus,
    /// A kiss-o'-death whose origin does not match the outstanding request.
    BogusKiss,
    /// The same octets as an earlier delivered reply (duplicate or replay).
    Duplicate,
    /// A different reply to a request that was already answered.
    SecondReply,
    /// Matches the request but LI 3 (not a kiss), stratum ≥ 16, or transmit 0.
    Insane,
}

/// A reply delivered to a daemon client, classified, with the event it caused.
#[derive(Debug, Clone)]
pub struct ClientReply {
    /// Index into [`Trace::packets`].
    pub packet: usize,
    /// The request it answers or should have answered (index into packets).
    pub request: Option<usize>,
    /// Its class.
    pub class: ReplyClass,
    /// The `source_reply` event it caused (index into [`Trace::events`]); None: used as a sample.
    pub event: Option<usize>,
}

/// A reply sent by a daemon server, paired with the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct ServerPair {
    /// The request (index into packets).
    pub request: usize,
    /// The reply (index into packets).
    pub reply: usize,
}

/// The trace, indexed once for all checks.
#[derive(Debug)]
pub struct Analysis<'a> {
    /// The scenario's hosts.
    pub ctx: &'a Context,
    /// The trace.
    pub trace: &'a Trace,
    /// Replies from daemon servers with their requests.
    pub server_pairs: Vec<ServerPair>,
    /// Replies from daemon servers with no request from that client before them.
    pub orphan_replies: Vec<usize>,
    /// Replies delivered to daemon clients' source sockets, classified.
    pub client_replies: Vec<ClientReply>,
    /// Mode-3 requests per (client socket, server socket), sorted by send
    /// time; a duplicated request once (its first copy).
    pub flows: BTreeMap<(SocketAddr, SocketAddr), Vec<usize>>,
    /// The later copies of each duplicated datagram (a link that duplicates
    /// delivers one datagram more than once: same sockets, send time and
    /// octets, one record per arrival), by its first copy.
    pub copies: BTreeMap<usize, Vec<usize>>,
    /// Per packet: whether it is a later copy of a duplicated datagram.
    pub is_copy: Vec<bool>,
}

fn ts(p: &PacketRec) -> Option<(NtpTimestamp, NtpTimestamp, NtpTimestamp)> {
    p.header.map(|h| (h.origin_timestamp, h.receive_timestamp, h.transmit_timestamp))
}

fn xmt(p: &PacketRec) -> Option<NtpTimestamp> {
    p.header.map(|h| h.transmit_timestamp)
}

/// The kiss code as the reference ID's ASCII octets up to the first NUL, read
/// here rather than through the implementation's own kiss-code parser so that
/// a misread code in the core cannot hide from the checks.
fn kiss_code(p: &PacketRec) -> String {
    p.header.map_or_else(String::new, |h| h.reference_id.0.iter().take_while(|b| **b != 0).map(|b| char::from(*b)).collect())
}

impl<'a> Analysis<'a> {
    /// Indexes the trace.
    pub fn new(ctx: &'a Context, trace: &'a Trace) -> Analysis<'a> {
        let pk = &trace.packets;
        let mut first_copy: BTreeMap<(SocketAddr, SocketAddr, u64, &[u8]), usize> = BTreeMap::new();
        let mut copies: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut is_copy = vec![false; pk.len()];
        for (i, p) in pk.iter().enumerate() {
            match first_copy.entry((p.src, p.dst, p.sent_t_s.to_bits(), p.bytes.as_slice())) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
                std::collections::btree_map::Entry::Occupied(o) => {
                    copies.entry(*o.get()).or_default().push(i);
                    is_copy[i] = true;
                }
            }
        }
        // The copy of request `r` a server's reply answers: the one whose
        // arrival it read as the reply's receive timestamp (T2).
        let copy_answered = |r: usize, reply: &PacketRec| -> usize {
            let (Some(h), Some(more)) = (reply.header, copies.get(&r)) else { return r };
            std::iter::once(r)
                .chain(more.iter().copied())
                .filter_map(|c| pk[c].receiver_local.map(|local| (c, secs(h.receive_timestamp.resolve(local) - local).abs())))
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .map_or(r, |(c, _)| c)
        };
        let mut flows: BTreeMap<(SocketAddr, SocketAddr), Vec<usize>> = BTreeMap::new();
        for (i, p) in pk.iter().enumerate() {
            if p.mode() == Some(Mode::Client) && !is_copy[i] {
                flows.entry((p.src, p.dst)).or_default().push(i);
            }
        }
        for v in flows.values_mut() {
            v.sort_by(|a, b| pk[*a].sent_t_s.total_cmp(&pk[*b].sent_t_s));
        }
        // Server side: replies sent by daemons.
        let mut server_pairs = Vec::new();
        let mut orphan_replies = Vec::new();
        for (i, p) in pk.iter().enumerate() {
            // NTPv5 is judged by its own checks (checks/v5.rs), never by NTPv4's.
            if !ctx.is_daemon(p.src.ip()) || p.mode() == Some(Mode::Client) || p.is_v5() || is_copy[i] {
                continue;
            }
            let Some(reqs) = flows.get(&(p.dst, p.src)) else {
                if p.mode() == Some(Mode::Server) {
                    orphan_replies.push(i);
                }
                continue;
            };
            // A request counts as arrived when any of its copies has.
            let arrival = |r: usize| {
                std::iter::once(r)
                    .chain(copies.get(&r).into_iter().flatten().copied())
                    .filter_map(|c| pk[c].received_t_s)
                    .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))))
            };
            let arrived: Vec<usize> =
                reqs.iter().copied().filter(|r| arrival(*r).is_some_and(|t| t <= p.sent_t_s + 1e-9)).collect();
            let org = p.header.map(|h| h.origin_timestamp);
            let by_org = arrived.iter().rev().take(16).copied().find(|r| xmt(&pk[*r]) == org);
            match by_org.or_else(|| arrived.last().copied()) {
                Some(request) => server_pairs.push(ServerPair { request: copy_answered(request, p), reply: i }),
                None => orphan_replies.push(i),
            }
        }
        // Client side: replies delivered to a daemon's source socket.
        let mut events_by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, e) in trace.events.iter().enumerate() {
            if e.kind == "source_reply" {
                if let Some(h) = e.host.as_deref() {
                    events_by_host.entry(h).or_default().push(i);
                }
            }
        }
        let mut used_events = BTreeSet::new();
        let mut client_replies = Vec::new();
        let mut seen_bytes: BTreeMap<(SocketAddr, SocketAddr), Vec<usize>> = BTreeMap::new();
        let mut answered: BTreeSet<usize> = BTreeSet::new();
        let mut delivered: Vec<usize> = (0..pk.len()).filter(|i| pk[*i].delivered()).collect();
        delivered.sort_by(|a, b| pk[*a].received_t_s.unwrap_or(0.0).total_cmp(&pk[*b].received_t_s.unwrap_or(0.0)));
        for i in delivered {
            let p = &pk[i];
            if p.mode() == Some(Mode::Client) || !ctx.is_daemon(p.dst.ip()) || p.is_v5() {
                continue;
            }
            // Only sockets that sent requests to exactly this server are source sockets.
            let Some(reqs) = flows.get(&(p.dst, p.src)) else { continue };
            if !ctx.is_daemon(p.dst.ip()) {
                continue;
            }
            let t = p.received_t_s.unwrap_or(p.sent_t_s);
            let before: Vec<usize> = reqs.iter().copied().filter(|r| pk[*r].sent_t_s <= t).collect();
            let outstanding = before.last().copied();
            let same = seen_bytes.entry((p.dst, p.src)).or_default();
            let duplicate = same.iter().any(|j| pk[*j].bytes == p.bytes);
            same.push(i);
            let class = match (p.header, outstanding) {
                (None, _) if p.bytes.len() < 48 => ReplyClass::Short,
                (None, _) => ReplyClass::BadVersion,
                (Some(h), _) if !(1..=4).contains(&h.version) => ReplyClass::BadVersion,
                _ if p.ext_error => ReplyClass::BadExtension,
                (Some(h), _) if h.mode != Mode::Server => ReplyClass::BadMode,
                (Some(_), None) => ReplyClass::Unsolicited,
                _ if duplicate => ReplyClass::Duplicate,
                (Some(h), Some(r)) => {
                    let req_xmt = xmt(&pk[r]);
                    // An interleaved request (RFC 9769 §2) carries a receive
                    // timestamp, which an interleaved reply echoes as origin.
                    let interleaved_answer =
                        pk[r].header.is_some_and(|q| !q.receive_timestamp.is_zero() && q.receive_timestamp == h.origin_timestamp);
                    if h.origin_timestamp.is_zero() {
                        ReplyClass::ZeroOrigin
                    } else if Some(h.origin_timestamp) != req_xmt && !interleaved_answer {
                        if answered.contains(&r) {
                            ReplyClass::Unsolicited
                        } else if h.stratum == 0 {
                            ReplyClass::BogusKiss
                        } else {
                            ReplyClass::Bogus
                        }
                    } else if !answered.insert(r) {
                        ReplyClass::SecondReply
                    } else if h.stratum == 0 {
                        ReplyClass::Kiss
                    } else if h.leap == LeapIndicator::Unsynchronized
                        || h.stratum >= 16
                        || h.transmit_timestamp.is_zero()
                        || h.root_delay.to_seconds_f64() / 2.0 + h.root_dispersion.to_seconds_f64() >= MAXDISP_S
                    {
                        ReplyClass::Insane
                    } else {
                        ReplyClass::Fresh
                    }
                }
            };
            // The request's copy this reply answers (with a duplicated request, each copy is answered).
            let request = outstanding.map(|r| copy_answered(r, p));
            client_replies.push(ClientReply { packet: i, request, class, event: None });
        }
        // Events go first to the replies that should have been rejected, then
        // to fresh ones: two copies of a duplicated reply arrive together and
        // the one that was not used is the one that was rejected.
        for fresh_pass in [false, true] {
            for c in client_replies.iter_mut().filter(|c| (c.class == ReplyClass::Fresh) == fresh_pass) {
                let p = &pk[c.packet];
                let t = p.received_t_s.unwrap_or(p.sent_t_s);
                let host = ctx.name(p.dst.ip());
                let event = events_by_host.get(host.as_str()).and_then(|evs| {
                    evs.iter().copied().filter(|e| !used_events.contains(e)).find(|e| {
                        let ev = &trace.events[*e];
                        ev.t_s >= t - 1e-3 && ev.t_s <= t + 0.05 && ev.source() == Some(p.src)
                    })
                });
                if let Some(e) = event {
                    used_events.insert(e);
                }
                c.event = event;
            }
        }
        Analysis { ctx, trace, server_pairs, orphan_replies, client_replies, flows, copies, is_copy }
    }

    fn pk(&self, i: usize) -> &PacketRec {
        &self.trace.packets[i]
    }

    fn ev(&self, i: usize) -> &EventRec {
        &self.trace.events[i]
    }

    fn flow_name(&self, p: &PacketRec) -> String {
        format!("{} -> {}", self.ctx.name(p.src.ip()), self.ctx.name(p.dst.ip()))
    }

    /// Host names of daemons (the devices under test).
    fn daemon_hosts(&self) -> impl Iterator<Item = &crate::trace::HostInfo> {
        self.ctx.hosts.iter().filter(|h| matches!(h.kind, HostKind::Daemon { .. }))
    }

    /// Selection events of one host: (event index, system peer).
    fn selections(&self, host: &str) -> Vec<(usize, Option<SocketAddr>)> {
        self.trace
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == "selection" && e.host.as_deref() == Some(host))
            .map(|(i, e)| (i, e.details.get("system_peer").and_then(|v| v.as_str()).and_then(|s| s.parse().ok())))
            .collect()
    }

    /// The system peer of `host` at true time `t_s` (latest selection event at or before it).
    fn system_peer_at(&self, sel: &[(usize, Option<SocketAddr>)], t_s: f64) -> Option<(usize, Option<SocketAddr>)> {
        sel.iter().copied().take_while(|(e, _)| self.ev(*e).t_s <= t_s).last()
    }
}

/// Every check, in report order.
pub const CHECKS: &[Check] = &[
    Check { id: "v5-header", title: "NTPv5 datagrams of daemons: 48-octet header, mode 3 or 4, length a multiple of 4", run: v5::header },
    Check { id: "v5-request-zero", title: "NTPv5 requests of daemons are zero but version, mode, timescale, interleaved flag, cookies and (-08, -09) poll", run: v5::request_zero },
    Check { id: "v5-client-cookie", title: "NTPv5 client cookies are never repeated and every reply carries its request's", run: v5::client_cookie },
    Check { id: "v5-li-stratum", title: "NTPv5 replies: synchronized with LI 0-2 and stratum 1-15, or LI 3 and stratum 0", run: v5::li_stratum },
    Check { id: "v5-timescale-era", title: "NTPv5 replies are in the requested UTC and carry the era of their receive timestamp", run: v5::timescale_era },
    Check { id: "v5-ef-echo-pad", title: "NTPv5 replies are as long as their request and answer its Draft Identification and Reference IDs Request", run: v5::ef_echo_pad },
    Check { id: "v5-draft-id", title: "NTPv5 requests name a draft exactly; replies name their request's draft", run: v5::draft_id },
    Check { id: "v5-refids", title: "NTPv5 requests ask for a Reference IDs chunk within the filter; responses have its length", run: v5::refids },
    Check { id: "v5-version", title: "NTPv5 requests are answered in NTPv5, never in NTPv4", run: v5::version },
    Check { id: "v5-flags", title: "NTPv5 NAKs are stratum 0 and daemons take no sample from a reply without the Synchronized flag", run: v5::flags },
    Check { id: "v5-stratum-rule", title: "a daemon's synchronized NTPv5 replies have a stratum above that of the source it follows", run: v5::stratum_rule },
    Check { id: "v5-server-info", title: "NTPv5 Server Information: zeros in daemons' requests; daemons' replies name NTPv5 among their versions", run: v5::server_info },
    Check { id: "v5-nts", title: "NTS for NTPv5: NTS-KE answers 0x8001 to a request for it; NTPv5 NTS requests get NTPv5 answers as long as the request, Unique Identifier echoed before an Authenticator or with the Authentication NAK flag", run: nts::v5_nts },
    Check { id: "v5-poll-public", title: "NTPv5 requests of daemons are 64 s apart or more, with a random part, but for a burst of at most 8 about 2 s apart at the start", run: v5::poll_public },
    Check { id: "v5-poll", title: "daemons keep to the Poll of an NTPv5 server's last reply (up to 2^10 s) outside the start-up burst, and stop at Poll 127", run: v5::poll },
    Check { id: "v5-negotiation", title: "the NTP5DRFT marker comes back only when asked for, and the client then speaks NTPv5", run: v5::negotiation },
    Check { id: "interleaved-tx-ne-rx", title: "an interleaving daemon never sends a time packet whose transmit timestamp equals its receive timestamp (RFC 9769 §2)", run: interleaved::tx_ne_rx },
    Check { id: "server-interleaved-detect", title: "a server answers interleaved only with interleaved mode on, to a request with receive != transmit whose origin is a receive timestamp it gave that client and has not used yet (RFC 9769 §2)", run: interleaved::server_detect },
    Check { id: "client-interleaved-request", title: "an interleaved request names a reply its host received, carries a random receive timestamp (not its arrival reading), and at most 4 name the same reply (RFC 9769 §2, §6)", run: interleaved::client_request },
    Check { id: "client-interleaved-sample", title: "an interleaved sample is the previous exchange's T1, T2 and T4 with the interleaved reply's T3 (RFC 9769 §2, the first set)", run: interleaved::client_sample },
    Check { id: "nts-uid", title: "NTS requests carry one Unique Identifier of at least 32 octets, never repeated", run: nts::uid_length },
    Check { id: "nts-uid-echo", title: "every reply to a request with a Unique Identifier echoes it, NTSN included", run: nts::uid_echo },
    Check { id: "nts-client-request", title: "NTS requests carry one Unique Identifier, one cookie and one authenticator, the authenticator last", run: nts::client_request_shape },
    Check { id: "nts-ef-modes", title: "cookie and authenticator fields appear only in mode 3 and 4 datagrams", run: nts::ef_modes },
    Check { id: "nts-no-amplification", title: "replies to NTS requests are no longer than the request", run: nts::no_amplification },
    Check { id: "nts-cookie-once", title: "an NTS client never sends the same cookie twice", run: nts::cookie_not_reused },
    Check { id: "nts-placeholder", title: "placeholders only in requests with a cookie, as long as the cookie, zero-filled", run: nts::placeholder_shape },
    Check { id: "nts-placeholder-count", title: "at most 7 placeholders, requests within 1280 octets", run: nts::placeholder_count },
    Check { id: "nts-ntsn", title: "NTSN kisses carry the Unique Identifier and neither cookie nor authenticator", run: nts::ntsn_shape },
    Check { id: "nts-ke-aead", title: "every successful NTS-KE agreed on an AEAD the client offers (15, 17 or 30)", run: nts::ke_aead },
    Check { id: "nts-ke-cookies", title: "a successful NTS-KE brings 8 cookies", run: nts::ke_cookies },
    Check { id: "nts-no-ntp-after-failed-ke", title: "after a failed NTS-KE the client sends that source no NTS request until a KE succeeds", run: nts::no_ntp_after_failed_ke },
    Check { id: "nts-ke-backoff", title: "NTS-KE attempts of a source without authentic time in between back off exponentially (failures: gap n >= first gap x 1.5^(n-1); after a success: >= 10 x 1.5^(n-1) s; up to an hour)", run: nts::ke_backoff },
    Check { id: "nts-attack-no-sample", title: "no datagram an on-path attacker forged, modified, stripped, replayed or reordered becomes a sample", run: nts::attack_no_sample },
    Check { id: "nts-unauth-ef-ignored", title: "a cookie an attacker appends after a reply's authenticator is never used", run: nts::unauth_ef_ignored },
    Check { id: "nts-kod-needs-uid", title: "a forged DENY kiss without the request's identifier neither drops the source nor stops its polling", run: nts::kod_needs_uid },
    Check { id: "nts-ke-tls13", title: "every NTS-KE session ran TLS 1.3", run: nts::ke_tls13 },
    Check { id: "nts-ke-alpn", title: "every NTS-KE session negotiated ALPN ntske/1", run: nts::ke_alpn },
    Check { id: "nts-ke-npn-once", title: "NTS-KE requests and non-error responses carry exactly one critical Next Protocol record", run: nts::ke_npn_once },
    Check { id: "nts-ke-eom", title: "each NTS-KE request and response is one message: one End of Message, critical, empty, last", run: nts::ke_eom },
    Check { id: "nts-ke-subset", title: "NTS-KE responses name only offered protocols and at most one offered AEAD", run: nts::ke_subset },
    Check { id: "nts-ke-client-records", title: "NTS-KE requests carry no Error, Warning or New Cookie record", run: nts::ke_client_records },
    Check { id: "nts-key-rotation", title: "the server's cookie keys rotate, previous keys' cookies stay accepted, a NAKed key never comes back", run: nts::key_rotation },
    Check { id: "nts-ntsn-rekey", title: "after an NTSN the client waits for its next poll, re-keys then unless authentic time came, and is not NAKed again", run: nts::ntsn_rekey },
    Check { id: "nts-ke-ntp-address", title: "NTS-KE Server and Port records are well formed, and the client sends NTP where they say (else to the KE server)", run: nts::ke_ntp_address },
    Check { id: "nts-server-response", title: "replies to NTS requests carry the identifier and one final authenticator, no cookie in the clear", run: nts::server_response_shape },
    Check { id: "server-echoes-origin", title: "server copies the request's transmit timestamp into the reply's origin (an interleaved reply: its receive timestamp, RFC 9769 §2); receive and transmit are its clock at arrival and departure (interleaved: the departure of the reply whose receive timestamp the request names)", run: server_echoes_origin },
    Check { id: "server-copies-version", title: "server replies with the request's version number", run: server_copies_version },
    Check { id: "server-mode-map", title: "client-mode requests are answered in server mode", run: server_mode_map },
    Check { id: "server-reply-address", title: "server replies go back to the request's source from the address it was sent to", run: server_reply_address },
    Check { id: "server-no-amplification", title: "no reply of the daemon is longer than the request it answers", run: server_no_amplification },
    Check { id: "stratum-16-never-sent", title: "no datagram from the daemon carries stratum 16 or above", run: stratum_never_16 },
    Check { id: "refid-stratum-1", title: "stratum-1 replies carry a left-justified ASCII reference ID", run: refid_stratum_1 },
    Check { id: "refid-upstream", title: "above stratum 1 the reference ID is the system peer's IPv4 address (or MD5 of its IPv6 address)", run: refid_upstream },
    Check { id: "refid-never-init", title: "the daemon never sends the reference ID INIT", run: refid_never_init },
    Check { id: "unsynced-server-advertises", title: "a server not yet synchronized replies LI 3, stratum 0", run: unsynced_server },
    Check { id: "stratum-follows-peer", title: "a synchronized server's stratum is its system peer's plus one", run: stratum_follows_peer },
    Check { id: "kod-well-formed", title: "kiss-o'-death replies from the daemon: stratum 0, ASCII kiss code, origin = request transmit", run: kod_well_formed },
    Check { id: "client-transmit-random", title: "client transmit timestamps: low-order bits random, not predictable", run: client_transmit_random },
    Check { id: "client-source-port", title: "client requests come from ephemeral ports, not 123", run: client_source_port },
    Check { id: "client-rejects-short", title: "replies shorter than the 48-octet header are discarded", run: |a| client_rejects(a, &[ReplyClass::Short], "short replies") },
    Check { id: "client-rejects-bad-version", title: "replies with a version other than 1-4 are discarded", run: |a| client_rejects(a, &[ReplyClass::BadVersion], "wrong-version replies") },
    Check { id: "client-rejects-bad-extension", title: "replies with a malformed extension field chain are discarded", run: |a| client_rejects(a, &[ReplyClass::BadExtension], "replies with a broken extension area") },
    Check { id: "client-rejects-unsolicited", title: "replies with no request outstanding and non-server modes are discarded", run: |a| client_rejects(a, &[ReplyClass::Unsolicited, ReplyClass::BadMode], "unsolicited or wrong-mode replies") },
    Check { id: "client-rejects-bogus", title: "replies whose origin is not the outstanding request's transmit are discarded", run: |a| client_rejects(a, &[ReplyClass::Bogus], "bogus-origin replies") },
    Check { id: "client-rejects-zero-origin", title: "replies with origin 0 are discarded", run: |a| client_rejects(a, &[ReplyClass::ZeroOrigin], "zero-origin replies") },
    Check { id: "client-rejects-duplicate", title: "duplicate and replayed replies are discarded", run: |a| client_rejects(a, &[ReplyClass::Duplicate], "duplicate or replayed replies") },
    Check { id: "client-rejects-second-reply", title: "a second, different reply to an answered request is discarded", run: |a| client_rejects(a, &[ReplyClass::SecondReply], "second replies") },
    Check { id: "client-rejects-insane", title: "replies with LI 3, stratum >= 16, transmit 0 or root distance (root delay / 2 + root dispersion) >= MAXDISP give no sample", run: |a| client_rejects(a, &[ReplyClass::Insane], "unsynchronized or insane replies") },
    Check { id: "kod-no-sample", title: "no kiss-o'-death is used as a time sample", run: kod_no_sample },
    Check { id: "kod-rate-backoff", title: "after RATE the client's interval to that server grows", run: kod_rate_backoff },
    Check { id: "kod-rate-cap", title: "after RATE the interval stays at or below 2^13 s and the client keeps polling", run: kod_rate_cap },
    Check { id: "kod-deny-stops", title: "after DENY or RSTR the client sends nothing more to that server", run: kod_deny_stops },
    Check { id: "kod-x-ignored", title: "kiss codes starting with X cause no protocol action", run: |a| kod_informational(a, true) },
    Check { id: "kod-other-no-sample", title: "other kiss codes cause no protocol action and no sample", run: |a| kod_informational(a, false) },
    Check { id: "kod-bogus-origin-ignored", title: "kiss-o'-death with a wrong origin is ignored", run: |a| client_rejects(a, &[ReplyClass::BogusKiss], "kiss-o'-death replies with a wrong origin") },
    Check { id: "offset-delay-formula", title: "offset and delay from the four timestamps match the true clock offsets within half the path asymmetry", run: offset_delay_formula },
    Check { id: "era-wrap-no-jump", title: "no offset jump, step or loss of sync across 2036-02-07T06:28:16Z", run: era_wrap },
    Check { id: "falsetickers-outvoted", title: "a falseticker never becomes the system peer; without a truechimer majority no server does", run: falsetickers_outvoted },
    Check { id: "poll-bounds", title: "request poll fields and system poll stay within MINPOLL 4 .. MAXPOLL 17", run: poll_bounds },
    Check { id: "slew-below-step-threshold", title: "offsets below 0.125 s are slewed, not stepped; the clock never runs backwards otherwise", run: slew_below_stept },
    Check { id: "client-sample-formula", title: "the client's own offset and delay (sample events) are RFC 5905 §8's formulas of the four timestamps it used; its dispersion is §8's 2^ρ(server) + 2^ρ(client) + PHI·(T4−T1) (at least the PHI term when the precisions are not in the trace)", run: client_sample_formula },
    Check { id: "client-sample-offset", title: "the client's own offset is the true server-minus-client clock offset within half the path asymmetry plus timestamp noise", run: client_sample_offset },
    Check { id: "client-sample-delay", title: "the client's own delay is the true round trip minus the server's residence time, within timestamp noise", run: client_sample_delay },
];

/// The check with this ID.
pub fn check(id: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.id == id)
}

fn t_resolve(ts: NtpTimestamp, near: NtpTime) -> NtpTime {
    ts.resolve(near)
}

fn secs(d: ntplab_proto::time::NtpDuration) -> f64 {
    d.to_seconds_f64()
}

/// The leap-smear correction a reply's reference ID carries (254.b1.b2.b3,
/// draft-stenn-ntp-leap-smear-refid-02): the server's clock is the served time
/// plus this, in seconds; 0 for any other reference ID.
fn smear_s(h: &ntplab_proto::wire::v4::Repr) -> f64 {
    h.smear_correction().map_or(0.0, |c| c.to_seconds_f64())
}

/// Quantisation of a smear REFID (2^-22 s), allowed on top of a check's tolerance.
const SMEAR_RESOLUTION_S: f64 = 2.4e-7;

fn server_echoes_origin(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    // Per (server, client address): the receive timestamps a daemon handed
    // out, with the server clock when that reply left (its exact transmit
    // time, which an interleaved reply to it carries).
    let mut given_rx: BTreeMap<(SocketAddr, IpAddr), BTreeMap<u64, NtpTime>> = BTreeMap::new();
    for pair in &a.server_pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        let (Some((org, rx, tx)), Some((req_org, req_rx, req_xmt))) = (ts(rep), ts(req)) else { continue };
        let interleaving = matches!(a.ctx.host_at(rep.src.ip()).map(|h| &h.kind), Some(HostKind::Daemon { interleaved: true, .. }));
        let known_rx = given_rx.entry((rep.src, rep.dst.ip())).or_default();
        // An interleaved reply (RFC 9769 §2) echoes the request's receive
        // timestamp, to a request whose origin is a receive timestamp this
        // server gave that client, and carries the exact transmit time of
        // the reply that gave it.
        let previous_send = (interleaving && org != req_xmt && !req_rx.is_zero() && org == req_rx)
            .then(|| known_rx.get(&req_org.to_bits()).copied())
            .flatten();
        let org_ok = org == req_xmt || previous_send.is_some();
        known_rx.insert(rx.to_bits(), rep.sender_local);
        let (Some(arrival_local), Some(_)) = (req.receiver_local, req.received) else { continue };
        // Smeared time differs from the server clock by the correction its REFID names.
        let smear = rep.header.map_or(0.0, |h| smear_s(&h));
        let sent_local = previous_send.unwrap_or(rep.sender_local);
        let rx_err = (secs(t_resolve(rx, arrival_local) - arrival_local) + smear).abs();
        let tx_err = (secs(t_resolve(tx, sent_local) - sent_local) + smear).abs();
        // Basic: the reply leaves after the request arrived; interleaved: the
        // reply it times left before this request arrived.
        let tx_minus_rx = secs(t_resolve(tx, rep.sender_local) - t_resolve(rx, rep.sender_local));
        let order_ok = if previous_send.is_some() { tx_minus_rx <= 0.0 } else { tx_minus_rx >= 0.0 };
        let noise = a.ctx.host_at(rep.src.ip()).map_or(0.0, |h| h.noise_s);
        let tol = 1e-3 + 10.0 * noise;
        let mode = if previous_send.is_some() { "interleaved" } else { "basic" };
        let cite = || format!("{} answering {} ({})", rep.cite(), req.cite(), a.flow_name(rep));
        if !org_ok {
            t.bad(|| format!("{}: origin {:016x} != request transmit {:016x}", cite(), org.to_bits(), req_xmt.to_bits()));
        } else if rep.header.is_some_and(|h| h.stratum == 0) {
            // A kiss-o'-death: receive and transmit are undefined (RFC 5905 §7.4).
            t.good(|| format!("{}: kiss-o'-death, origin {:016x} echoed", cite(), org.to_bits()));
        } else if rx.is_zero() || tx.is_zero() || !order_ok {
            t.bad(|| format!("{}: {mode}, receive {:016x}, transmit {:016x} (zero or out of order)", cite(), rx.to_bits(), tx.to_bits()));
        } else if rx_err > tol || tx_err > tol {
            t.bad(|| format!("{}: {mode}, receive off the server clock by {rx_err:.3e} s, transmit by {tx_err:.3e} s (tolerance {tol:.0e} s)", cite()));
        } else {
            t.good(|| format!("{}: {mode}, origin {:016x} echoed", cite(), org.to_bits()));
        }
    }
    t.outcome("daemon replies", "no daemon served a request in this run")
}

fn server_copies_version(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        let (Some(q), Some(r)) = (req.header, rep.header) else { continue };
        if q.version == r.version {
            t.good(|| format!("{}: v{} request answered v{}", rep.cite(), q.version, r.version));
        } else {
            t.bad(|| format!("{} answering {}: request v{}, reply v{}", rep.cite(), req.cite(), q.version, r.version));
        }
    }
    t.outcome("daemon replies", "no daemon served a request in this run")
}

fn server_mode_map(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let rep = a.pk(pair.reply);
        match rep.mode() {
            Some(Mode::Server) => t.good(|| format!("{}: mode 3 answered with mode 4", rep.cite())),
            m => t.bad(|| format!("{}: mode 3 answered with mode {:?}", rep.cite(), m)),
        }
    }
    let mut o = t.outcome("daemon replies", "no daemon served a request in this run");
    if o.status == Status::Pass {
        o.reason.push_str(" (symmetric modes not exercised)");
    }
    o
}

fn server_reply_address(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        if rep.src == req.dst && rep.dst == req.src {
            t.good(|| format!("{}: {} -> {} answers {} -> {}", rep.cite(), rep.src, rep.dst, req.src, req.dst));
        } else {
            t.bad(|| format!("{}: reply {} -> {} to request {} -> {}", rep.cite(), rep.src, rep.dst, req.src, req.dst));
        }
    }
    for i in &a.orphan_replies {
        let rep = a.pk(*i);
        t.bad(|| format!("{}: mode-4 datagram {} -> {} answers no request from that address and port", rep.cite(), rep.src, rep.dst));
    }
    t.outcome("daemon replies", "no daemon served a request in this run")
}

fn server_no_amplification(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        if rep.bytes.len() <= req.bytes.len() {
            t.good(|| format!("{}: {} octets for a {}-octet request", rep.cite(), rep.bytes.len(), req.bytes.len()));
        } else {
            t.bad(|| format!("{}: {} octets for a {}-octet request {}", rep.cite(), rep.bytes.len(), req.bytes.len(), req.cite()));
        }
    }
    t.outcome("daemon replies", "no daemon served a request in this run")
}

/// Datagrams daemons sent with an NTP header, each once (not the later
/// copies a duplicating link delivers).
fn daemon_sent<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = &'b PacketRec> {
    a.trace
        .packets
        .iter()
        .enumerate()
        .filter(move |(i, p)| !a.is_copy[*i] && a.ctx.is_daemon(p.src.ip()) && p.header.is_some())
        .map(|(_, p)| p)
}

fn stratum_never_16(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in daemon_sent(a) {
        let h = p.header.unwrap_or_else(|| unreachable!());
        if h.stratum >= 16 {
            t.bad(|| format!("{} ({}): stratum {} on the wire", p.cite(), a.flow_name(p), h.stratum));
        } else {
            t.good(|| format!("{}: stratum {}", p.cite(), h.stratum));
        }
    }
    t.outcome("datagrams from the daemon", "the daemon sent no datagram")
}

fn refid_stratum_1(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in daemon_sent(a).filter(|p| p.mode() == Some(Mode::Server)) {
        let h = p.header.unwrap_or_else(|| unreachable!());
        if h.stratum != 1 {
            continue;
        }
        let id = h.reference_id.0;
        let len = id.iter().position(|b| *b == 0).unwrap_or(4);
        let ok = len > 0 && id[..len].iter().all(|b| b.is_ascii_graphic()) && id[len..].iter().all(|b| *b == 0);
        if let (false, Some(c)) = (ok, h.smear_correction()) {
            // The smear REFID replaces the clock code while a smear is served
            // (draft-stenn-ntp-leap-smear-refid-02 §2); RFC 5905 §7.3 predates it.
            t.good(|| format!("{}: leap-smear REFID, correction {:+.6} s", p.cite(), c.to_seconds_f64()));
        } else if ok {
            t.good(|| format!("{}: reference ID {:?}", p.cite(), String::from_utf8_lossy(&id[..len])));
        } else {
            t.bad(|| format!("{}: stratum-1 reference ID {:02x?} is not left-justified, zero-padded ASCII", p.cite(), id));
        }
    }
    t.outcome("stratum-1 replies", "no daemon served at stratum 1")
}

fn refid_upstream(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for host in a.daemon_hosts() {
        let sel = a.selections(&host.name);
        for p in daemon_sent(a).filter(|p| p.src.ip() == host.address && p.mode() == Some(Mode::Server)) {
            let h = p.header.unwrap_or_else(|| unreachable!());
            if !(2..=15).contains(&h.stratum) {
                continue;
            }
            let Some((e, Some(peer))) = a.system_peer_at(&sel, p.sent_t_s) else { continue };
            let want = match peer.ip() {
                IpAddr::V4(v4) => ReferenceId::from_ipv4(v4),
                IpAddr::V6(v6) => ReferenceId::from_ipv6(v6),
            };
            if h.reference_id == want {
                t.good(|| format!("{}: reference ID {:02x?} = system peer {}", p.cite(), h.reference_id.0, peer));
            } else {
                t.bad(|| {
                    format!("{}: reference ID {:02x?}, but the system peer is {} (events.jsonl:{}), which gives {:02x?}", p.cite(), h.reference_id.0, peer, a.ev(e).line, want.0)
                });
            }
        }
    }
    t.outcome("replies above stratum 1", "no daemon served above stratum 1 while it had a system peer")
}

fn refid_never_init(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in daemon_sent(a).filter(|p| p.mode() == Some(Mode::Server)) {
        let h = p.header.unwrap_or_else(|| unreachable!());
        if &h.reference_id.0 == b"INIT" {
            t.bad(|| format!("{}: reference ID INIT (stratum {})", p.cite(), h.stratum));
        } else {
            t.good(|| format!("{}: reference ID {:02x?}", p.cite(), h.reference_id.0));
        }
    }
    t.outcome("daemon replies", "no daemon served a request in this run")
}

fn first_sync_t(a: &Analysis<'_>, host: &str) -> Option<f64> {
    a.selections(host).into_iter().find(|(_, p)| p.is_some()).map(|(e, _)| a.ev(e).t_s)
}

fn unsynced_server(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    // A host with a local reference serves its own clock, synchronized to that
    // reference, until a source is selected (chrony's `local`, ntpd's orphan
    // mode): it is never an unsynchronized server.
    for host in a.daemon_hosts().filter(|h| matches!(h.kind, HostKind::Daemon { has_sources: true, local_reference: false, .. })) {
        let synced_at = first_sync_t(a, &host.name).unwrap_or(f64::INFINITY);
        for p in daemon_sent(a).filter(|p| p.src.ip() == host.address && p.mode() == Some(Mode::Server) && p.sent_t_s < synced_at) {
            let h = p.header.unwrap_or_else(|| unreachable!());
            if h.leap == LeapIndicator::Unsynchronized && h.stratum == 0 {
                t.good(|| format!("{}: LI 3, stratum 0 at {:.3} s, before {} first synchronized", p.cite(), p.sent_t_s, host.name));
            } else {
                t.bad(|| format!("{}: LI {:?}, stratum {} at {:.3} s, before {} first selected a system peer", p.cite(), h.leap, h.stratum, p.sent_t_s, host.name));
            }
        }
    }
    t.outcome("replies of not-yet-synchronized servers", "no daemon with sources served before it synchronized")
}

fn stratum_follows_peer(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for host in a.daemon_hosts().filter(|h| matches!(h.kind, HostKind::Daemon { has_sources: true, .. })) {
        let sel = a.selections(&host.name);
        for p in daemon_sent(a).filter(|p| p.src.ip() == host.address && p.mode() == Some(Mode::Server)) {
            let h = p.header.unwrap_or_else(|| unreachable!());
            if h.stratum == 0 {
                continue;
            }
            let Some((e, Some(peer))) = a.system_peer_at(&sel, p.sent_t_s) else { continue };
            // The peer's latest reply to this host before the reply left.
            let last = a
                .client_replies
                .iter()
                .rev()
                .map(|c| a.pk(c.packet))
                .find(|r| r.src == peer && r.dst.ip() == host.address && r.received_t_s.is_some_and(|x| x <= p.sent_t_s));
            let Some(up) = last.and_then(|r| r.header.map(|u| (r, u))) else { continue };
            let want = up.1.stratum.saturating_add(1);
            if h.stratum == want {
                t.good(|| format!("{}: stratum {} = peer {} stratum {} + 1", p.cite(), h.stratum, peer, up.1.stratum));
            } else {
                t.bad(|| format!("{}: stratum {}, but system peer {} (events.jsonl:{}) last sent stratum {} in {}", p.cite(), h.stratum, peer, a.ev(e).line, up.1.stratum, up.0.cite()));
            }
        }
    }
    t.outcome("replies of synchronized servers with sources", "no daemon served time it had from an upstream server")
}

const KISS_CODES: [&str; 14] = ["ACST", "AUTH", "AUTO", "BCST", "CRYP", "DENY", "DROP", "RSTR", "INIT", "MCST", "NKEY", "NTSN", "RATE", "STEP"];

fn kod_well_formed(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        let Some(h) = rep.header else { continue };
        let code = h.reference_id.ascii().unwrap_or("").to_string();
        if h.stratum != 0 || !KISS_CODES.contains(&code.as_str()) || code == "INIT" {
            continue; // an unsynchronized reply, not a kiss
        }
        if h.origin_timestamp != xmt(req).unwrap_or(NtpTimestamp::ZERO) {
            t.bad(|| format!("{}: {code} kiss with origin {:016x}, request transmit was {:016x}", rep.cite(), h.origin_timestamp.to_bits(), xmt(req).map_or(0, |x| x.to_bits())));
        } else if h.mode != Mode::Server {
            t.bad(|| format!("{}: {code} kiss in mode {:?}", rep.cite(), h.mode));
        } else {
            t.good(|| format!("{}: {code} kiss, stratum 0, LI {:?}, origin echoed", rep.cite(), h.leap));
        }
    }
    t.outcome("kiss-o'-death replies of the daemon", "no daemon sent a kiss-o'-death (no rate limiting or access control triggered)")
}

fn client_transmit_random(a: &Analysis<'_>) -> Outcome {
    let mut per_host: BTreeMap<IpAddr, Vec<&PacketRec>> = BTreeMap::new();
    for p in daemon_sent(a).filter(|p| p.mode() == Some(Mode::Client)) {
        per_host.entry(p.src.ip()).or_default().push(p);
    }
    let mut t = Tally::default();
    for (ip, reqs) in per_host {
        if reqs.len() < 16 {
            continue;
        }
        let low: BTreeSet<u32> = reqs.iter().filter_map(|p| xmt(p)).map(|x| x.fraction() & 0xffff).collect();
        let near_local = reqs
            .iter()
            .filter(|p| xmt(p).is_some_and(|x| secs(t_resolve(x, p.sender_local) - p.sender_local).abs() < 1e-3))
            .count();
        let distinct = low.len() as f64 / reqs.len() as f64;
        let name = a.ctx.name(ip);
        let what = if near_local == reqs.len() {
            "transmit = local time with randomized low bits"
        } else if near_local == 0 {
            "transmit entirely random (not the local time)"
        } else {
            "transmit partly local time"
        };
        if distinct >= 0.9 {
            t.good(|| format!("{name}: {} requests, {:.0}% distinct low 16 bits; {what}", reqs.len(), distinct * 100.0));
        } else {
            t.bad(|| format!("{name}: {} requests but only {} distinct values of the transmit timestamp's low 16 bits (first {})", reqs.len(), low.len(), reqs[0].cite()));
        }
    }
    t.outcome("clients", "no daemon sent 16 or more requests")
}

fn client_source_port(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in daemon_sent(a).filter(|p| p.mode() == Some(Mode::Client)) {
        if p.src.port() == 123 {
            t.bad(|| format!("{}: request from port 123", p.cite()));
        } else {
            t.good(|| format!("{}: request from port {}", p.cite(), p.src.port()));
        }
    }
    let mut o = t.outcome("requests", "no daemon sent a request");
    if o.status == Status::Pass {
        o.reason.push_str(" (ports come from the simulated stack; their randomness is not judged)");
    }
    o
}

fn describe_event(a: &Analysis<'_>, c: &ClientReply) -> String {
    match c.event {
        Some(e) => format!("events.jsonl:{} {}", a.ev(e).line, a.ev(e).source_event()),
        None => "no source_reply event: used as a sample".to_string(),
    }
}

fn client_rejects(a: &Analysis<'_>, classes: &[ReplyClass], what: &str) -> Outcome {
    let mut t = Tally::default();
    for c in a.client_replies.iter().filter(|c| classes.contains(&c.class)) {
        let p = a.pk(c.packet);
        let rejected = c.event.is_some_and(|e| a.ev(e).source_event().starts_with("Rejected"));
        let line = || format!("{} ({}) at {:.3} s, {:?}: {}", p.cite(), a.flow_name(p), p.received_t_s.unwrap_or(0.0), c.class, describe_event(a, c));
        if rejected {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    t.outcome(what, &format!("no {what} reached a daemon client in this run"))
}

fn fresh_kisses<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = &'b ClientReply> {
    a.client_replies.iter().filter(|c| c.class == ReplyClass::Kiss)
}

fn kod_no_sample(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for c in fresh_kisses(a) {
        let p = a.pk(c.packet);
        let line = || format!("{} {} kiss at {:.3} s: {}", p.cite(), kiss_code(p), p.received_t_s.unwrap_or(0.0), describe_event(a, c));
        if c.event.is_some() {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    t.outcome("kiss-o'-death replies", "no kiss-o'-death reached a daemon client")
}

fn kod_informational(a: &Analysis<'_>, x_codes: bool) -> Outcome {
    let mut t = Tally::default();
    for c in fresh_kisses(a) {
        let p = a.pk(c.packet);
        let code = kiss_code(p);
        let is_x = code.starts_with('X');
        if is_x != x_codes || ["RATE", "DENY", "RSTR", "NTSN"].contains(&code.as_str()) {
            continue;
        }
        let ev = c.event.map(|e| a.ev(e).source_event().to_string()).unwrap_or_default();
        let line = || format!("{} {code} kiss at {:.3} s: {}", p.cite(), p.received_t_s.unwrap_or(0.0), describe_event(a, c));
        if ev.starts_with("Kiss") || ev.starts_with("Rejected") {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    let what = if x_codes { "X kiss codes" } else { "informational kiss codes" };
    t.outcome(what, &format!("no {what} reached a daemon client"))
}

/// Request send times on the flow a kiss answered, with the kisses' arrival times.
fn kiss_flows<'b>(a: &'b Analysis<'_>, codes: &[&str]) -> BTreeMap<(SocketAddr, SocketAddr), Vec<&'b ClientReply>> {
    let mut m: BTreeMap<(SocketAddr, SocketAddr), Vec<&ClientReply>> = BTreeMap::new();
    for c in fresh_kisses(a) {
        let p = a.pk(c.packet);
        if codes.contains(&kiss_code(p).as_str()) {
            m.entry((p.dst, p.src)).or_default().push(c);
        }
    }
    m
}

fn kod_rate_backoff(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (flow, kisses) in kiss_flows(a, &["RATE"]) {
        let reqs: Vec<f64> = a.flows.get(&flow).map(|v| v.iter().map(|i| a.pk(*i).sent_t_s).collect()).unwrap_or_default();
        for c in kisses {
            let Some(r) = c.request else { continue };
            let at = a.pk(r).sent_t_s;
            let Some(k) = reqs.iter().position(|x| *x == at) else { continue };
            let (Some(next), Some(prev)) = (reqs.get(k + 1), k.checked_sub(1).and_then(|j| reqs.get(j))) else { continue };
            let (before, after) = (at - prev, next - at);
            let p = a.pk(c.packet);
            let line = || format!("{} RATE at {:.1} s ({}): interval {before:.1} s before, {after:.1} s after", p.cite(), p.received_t_s.unwrap_or(0.0), a.flow_name(p));
            if after > before * 1.01 || before >= RATE_POLL_CAP_S * 0.9 {
                t.good(line);
            } else {
                t.bad(line);
            }
        }
    }
    t.outcome("RATE kisses followed by another request", "no RATE kiss reached a daemon client")
}

fn kod_rate_cap(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let end = a.ctx.duration_s;
    for (flow, kisses) in kiss_flows(a, &["RATE"]) {
        let reqs: Vec<f64> = a.flows.get(&flow).map(|v| v.iter().map(|i| a.pk(*i).sent_t_s).collect()).unwrap_or_default();
        let first = a.pk(kisses[0].packet).received_t_s.unwrap_or(0.0);
        let after: Vec<f64> = reqs.iter().copied().filter(|x| *x >= first).collect();
        let longest = after.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        let last = after.last().copied().unwrap_or(first);
        let quiet = end - last;
        let name = format!("{} -> {}", a.ctx.name(flow.0.ip()), a.ctx.name(flow.1.ip()));
        if longest > RATE_POLL_CAP_S * 1.05 {
            t.bad(|| format!("{name}: interval {longest:.0} s after RATE exceeds 2^13 s"));
        } else if end - first > RATE_POLL_CAP_S * 1.1 && quiet > RATE_POLL_CAP_S * 1.1 {
            t.bad(|| format!("{name}: stopped polling: last request at {last:.0} s, run ends at {end:.0} s"));
        } else {
            t.good(|| format!("{name}: {} requests after the first RATE, longest interval {longest:.0} s", after.len()));
        }
    }
    t.outcome("rate-limited associations", "no RATE kiss reached a daemon client")
}

fn kod_deny_stops(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (flow, kisses) in kiss_flows(a, &["DENY", "RSTR"]) {
        let c = kisses[0];
        let p = a.pk(c.packet);
        let at = p.received_t_s.unwrap_or(0.0);
        // Any socket of the client host to that server.
        let later: Vec<&PacketRec> = a
            .flows
            .iter()
            .filter(|((cl, sv), _)| cl.ip() == flow.0.ip() && *sv == flow.1)
            .flat_map(|(_, v)| v.iter().map(|i| a.pk(*i)))
            .filter(|r| r.sent_t_s > at)
            .collect();
        let ev = describe_event(a, c);
        if later.is_empty() {
            t.good(|| format!("{} {} at {at:.3} s ({}): {ev}; no request after it", p.cite(), kiss_code(p), a.flow_name(p)));
        } else {
            t.bad(|| format!("{} {} at {at:.3} s ({}): {ev}; yet {} more request(s), first {}", p.cite(), kiss_code(p), a.flow_name(p), later.len(), later[0].cite()));
        }
    }
    t.outcome("DENY/RSTR kisses", "no DENY or RSTR kiss reached a daemon client")
}

/// For an interleaved reply (RFC 9769 §2: its origin is the receive
/// timestamp of the request it answers), the exchange it completes: the
/// earlier reply to the same socket whose receive timestamp the request
/// named as origin, with that reply's request. `None`: a basic reply;
/// `Some(None)`: interleaved, but that exchange is not in the trace.
fn interleaved_previous<'b>(a: &'b Analysis<'_>, c: &ClientReply) -> Option<Option<(&'b PacketRec, &'b PacketRec)>> {
    let (rep, req) = (a.pk(c.packet), a.pk(c.request?));
    let (h, q) = (rep.header?, req.header?);
    if q.receive_timestamp.is_zero() || h.origin_timestamp != q.receive_timestamp || h.origin_timestamp == q.transmit_timestamp {
        return None;
    }
    let previous = a.client_replies.iter().find_map(|p| {
        let pp = a.pk(p.packet);
        let named = pp.src == rep.src
            && pp.dst == rep.dst
            && pp.received_t_s.is_some_and(|r| r <= req.sent_t_s)
            && pp.header.is_some_and(|ph| ph.receive_timestamp == q.origin_timestamp);
        named.then(|| p.request.map(|r| (a.pk(r), pp))).flatten()
    });
    Some(previous)
}

fn offset_delay_formula(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut worst: f64 = 0.0;
    for c in a.client_replies.iter().filter(|c| c.class == ReplyClass::Fresh && c.event.is_none()) {
        let rep = a.pk(c.packet);
        if !a.ctx.is_daemon(rep.src.ip()) {
            continue; // scripted peers may lie on purpose
        }
        let Some(req) = c.request.map(|r| a.pk(r)) else { continue };
        let Some(h) = rep.header else { continue };
        // The exchange the reply measures: its own, or for an interleaved
        // reply (RFC 9769 §2) the previous one: the reply whose receive
        // timestamp the request names, whose exact departure this one carries.
        let (req, rep, rx_ts) = match interleaved_previous(a, c) {
            Some(None) => continue,
            Some(Some((prev_req, prev_rep))) => match prev_rep.header {
                Some(ph) => (prev_req, prev_rep, ph.receive_timestamp),
                None => continue,
            },
            None => (req, rep, h.receive_timestamp),
        };
        let (Some(req_rx_local), Some(req_rx), Some(t4), Some(rep_rx)) = (req.receiver_local, req.received, rep.receiver_local, rep.received) else {
            continue;
        };
        let t1 = req.sender_local;
        let t2 = rx_ts.resolve(req_rx_local);
        let t3 = h.transmit_timestamp.resolve(rep.sender_local);
        // A smeared reply measures the smeared time scale; undo the correction its
        // REFID names to compare with the server's own clock.
        let smear = smear_s(&h);
        let theta = (secs(t2 - t1) + secs(t3 - t4)) / 2.0 + smear;
        let delta = secs(t4 - t1) - secs(t3 - t2);
        // Truth: each clock's offset at each instant, and the one-way delays.
        let c1 = secs(req.sender_local - req.sent);
        let s2 = secs(req_rx_local - req_rx);
        let s3 = secs(rep.sender_local - rep.sent);
        let c4 = secs(t4 - rep_rx);
        let d_f = secs(req_rx - req.sent);
        let d_b = secs(rep_rx - rep.sent);
        let theta_true = ((s2 - c1) + (s3 - c4)) / 2.0;
        let delta_want = d_f + d_b + (c4 - c1) - (s3 - s2);
        let noise = a.ctx.host_at(rep.src.ip()).map_or(0.0, |h| h.noise_s);
        let tol = 1e-7 + 8.0 * noise + if smear != 0.0 { SMEAR_RESOLUTION_S } else { 0.0 };
        let asym = (d_f - d_b).abs() / 2.0;
        let err_theta = (theta - theta_true).abs();
        let err_delta = (delta - delta_want).abs();
        worst = worst.max(err_theta - asym);
        let line = || {
            format!(
                "{} for {} ({}): theta {theta:.9} s vs true {theta_true:.9} s (half asymmetry {asym:.9} s), delta {delta:.9} s vs {delta_want:.9} s",
                rep.cite(),
                req.cite(),
                a.flow_name(rep)
            )
        };
        if err_theta > asym + tol || err_delta > tol {
            t.bad(line);
        } else {
            t.good(line);
        }
    }
    let mut o = t.outcome("exchanges with daemon servers", "no daemon client completed an exchange with a daemon server");
    if o.status == Status::Pass {
        o.reason.push_str(&format!(" (largest excess over half the asymmetry {:.1e} s)", worst.max(0.0)));
    }
    o
}

/// The largest change of a client's offset away from true time between two
/// trace rows that `era-wrap-no-jump` allows.
const ERA_WRAP_MAX_JUMP_S: f64 = 0.01;

fn era_wrap(a: &Analysis<'_>) -> Outcome {
    let wrap = secs(ERA1 - a.ctx.start);
    if wrap <= 0.0 || wrap >= a.ctx.duration_s {
        return Outcome::not_exercised("the run does not cross 2036-02-07T06:28:16Z");
    }
    /// One host's rows within 30 min of the wrap, summarised in one pass over the samples.
    #[derive(Default)]
    struct Near {
        rows: usize,
        prev_offset: Option<f64>,
        /// Largest offset change between neighbouring rows, and when.
        jump: (f64, f64),
        /// `synced` of the last row before the wrap.
        synced_before: bool,
        /// A row more than a minute after the wrap not synchronized.
        unsynced_after: bool,
    }
    let clients = a.daemon_hosts().filter(|h| matches!(h.kind, HostKind::Daemon { has_sources: true, .. }));
    let mut near: BTreeMap<&str, Near> = clients.map(|h| (h.name.as_str(), Near::default())).collect();
    for s in a.trace.samples().filter(|s| (s.t_s - wrap).abs() <= 1800.0) {
        let Some(n) = near.get_mut(s.host.as_str()) else { continue };
        n.rows += 1;
        // A jump moves the clock away from true time. A clock still
        // correcting its start offset (0.1 s slewed in 1.2 s) changes faster
        // than that, towards true time, wrap or not.
        if let Some(p) = n.prev_offset.replace(s.offset_s) {
            let change = (s.offset_s - p).abs();
            if s.offset_s.abs() > p.abs() && change > n.jump.0 {
                n.jump = (change, s.t_s);
            }
        }
        if s.t_s < wrap {
            n.synced_before = s.synced;
        } else if s.t_s > wrap + 60.0 && !s.synced {
            n.unsynced_after = true;
        }
    }
    let mut t = Tally::default();
    for host in a.daemon_hosts().filter(|h| matches!(h.kind, HostKind::Daemon { has_sources: true, .. })) {
        let Some(n) = near.get(host.name.as_str()) else { continue };
        let jump = n.jump;
        let steps: Vec<&EventRec> =
            a.trace.events.iter().filter(|e| e.kind == "step" && e.host.as_deref() == Some(&host.name) && (e.t_s - wrap).abs() <= 1800.0).collect();
        let lost = n.synced_before && n.unsynced_after;
        if n.rows < 2 {
            continue;
        }
        if jump.0 > ERA_WRAP_MAX_JUMP_S || !steps.is_empty() || lost {
            t.bad(|| {
                format!(
                    "{}: within 30 min of the wrap: largest offset change {:.3e} s between samples (at {:.0} s), {} step(s){}{}",
                    host.name,
                    jump.0,
                    jump.1,
                    steps.len(),
                    steps.first().map_or(String::new(), |e| format!(" (events.jsonl:{})", e.line)),
                    if lost { ", lost synchronization" } else { "" }
                )
            });
        } else {
            t.good(|| format!("{}: largest offset change {:.3e} s between samples within 30 min of the wrap, no step", host.name, jump.0));
        }
    }
    t.outcome("clients across the era wrap", "no daemon client ran across the era wrap")
}

fn falsetickers_outvoted(a: &Analysis<'_>) -> Outcome {
    let liars: BTreeSet<IpAddr> = a
        .ctx
        .hosts
        .iter()
        .filter(|h| matches!(h.kind, HostKind::Scripted { falseticker_offset_s: Some(o), .. } if o.abs() >= 0.1))
        .map(|h| h.address)
        .collect();
    if liars.is_empty() {
        return Outcome::not_exercised("no falseticker (scripted peer 0.1 s or more off) in the scenario");
    }
    let mut t = Tally::default();
    for host in a.daemon_hosts() {
        let polled: BTreeSet<IpAddr> = a.flows.keys().filter(|(c, _)| c.ip() == host.address).map(|(_, s)| s.ip()).collect();
        if polled.is_disjoint(&liars) {
            continue;
        }
        let sel = a.selections(&host.name);
        let lying = polled.intersection(&liars).count();
        if 2 * lying >= polled.len() {
            // No truechimer majority (RFC 5905 §11.2.1): following either group is wrong.
            match sel.iter().find(|(_, p)| p.is_some()) {
                Some((e, p)) => t.bad(|| {
                    format!(
                        "{}: {lying} of {} polled servers are falsetickers (no majority), yet {} became system peer (events.jsonl:{})",
                        host.name,
                        polled.len(),
                        p.map_or(String::new(), |p| p.to_string()),
                        a.ev(*e).line
                    )
                }),
                None => t.good(|| format!("{}: {lying} of {} polled servers are falsetickers (no majority): no system peer in {} selections", host.name, polled.len(), sel.len())),
            }
            continue;
        }
        let bad = sel.iter().find(|(_, p)| p.is_some_and(|p| liars.contains(&p.ip())));
        let flagged = sel
            .iter()
            .filter(|(e, _)| {
                a.ev(*e).details.get("falsetickers").and_then(|v| v.as_array()).is_some_and(|v| {
                    v.iter().filter_map(|x| x.as_str()).filter_map(|x| x.parse::<SocketAddr>().ok()).any(|x| liars.contains(&x.ip()))
                })
            })
            .count();
        let chosen = sel.iter().filter(|(_, p)| p.is_some()).count();
        match bad {
            Some((e, p)) => t.bad(|| format!("{}: falseticker {} selected as system peer (events.jsonl:{})", host.name, p.map_or(String::new(), |p| p.to_string()), a.ev(*e).line)),
            None if chosen == 0 => t.bad(|| format!("{}: never selected a system peer ({} selections; falsetickers flagged in {flagged})", host.name, sel.len())),
            None => t.good(|| format!("{}: {chosen} selections with a truechimer as system peer; falsetickers flagged in {flagged}", host.name)),
        }
    }
    t.outcome("clients polling falsetickers", "no daemon polls a falseticker")
}

fn poll_bounds(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let range = MINPOLL_LOG2..=MAXPOLL_LOG2;
    for p in daemon_sent(a).filter(|p| p.mode() == Some(Mode::Client)) {
        let poll = p.header.map_or(0, |h| h.poll);
        if range.contains(&poll) {
            t.good(|| format!("{}: poll {poll}", p.cite()));
        } else {
            t.bad(|| format!("{} ({}): request poll field {poll} outside [{MINPOLL_LOG2}, {MAXPOLL_LOG2}]", p.cite(), a.flow_name(p)));
        }
    }
    for ((c, s), reqs) in &a.flows {
        if !a.ctx.is_daemon(c.ip()) {
            continue;
        }
        for w in reqs.windows(2) {
            let gap = a.pk(w[1]).sent_t_s - a.pk(w[0]).sent_t_s;
            if gap > f64::from(1u32 << MAXPOLL_LOG2) * 1.05 {
                t.bad(|| format!("{c} -> {s}: {gap:.0} s between {} and {}, above 2^17 s", a.pk(w[0]).cite(), a.pk(w[1]).cite()));
            }
        }
    }
    t.outcome("requests", "no daemon sent a request")
}

fn step_offset(e: &EventRec) -> Option<f64> {
    let s = e.details.get("action")?.as_str()?;
    let rest = s.split("offset: ").nth(1)?;
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == 'e').collect();
    let v: f64 = num.parse().ok()?;
    let unit = rest[num.len()..].chars().take_while(|c| c.is_alphabetic()).collect::<String>();
    Some(match unit.as_str() {
        "ms" => v * 1e-3,
        "us" | "µs" => v * 1e-6,
        "ns" => v * 1e-9,
        _ => v,
    })
}

fn slew_below_stept(a: &Analysis<'_>) -> Outcome {
    /// One daemon host's clock actions, and what its sample rows show.
    struct Host<'e> {
        slews: usize,
        steps: Vec<&'e EventRec>,
        leap_armed: bool,
        prev: Option<(f64, f64)>,
        /// The first pair of neighbouring rows between which local time ran backwards with no step.
        backwards: Option<(f64, f64)>,
    }
    let external: Vec<f64> = a.trace.events.iter().filter(|e| e.kind == "scenario").map(|e| e.t_s).collect();
    let mut hosts: BTreeMap<&str, Host<'_>> = BTreeMap::new();
    for host in a.daemon_hosts() {
        let mut h = Host { slews: 0, steps: Vec::new(), leap_armed: false, prev: None, backwards: None };
        for e in a.trace.events.iter().filter(|e| e.host.as_deref() == Some(&host.name)) {
            match e.kind.as_str() {
                "slew" => h.slews += 1,
                "step" => h.steps.push(e),
                // A leap second the daemon armed moves local time by exactly one second,
                // against UTC for the instant between its clock's and UTC's leap: no step.
                "leap_armed" if !e.details.to_string().contains("NoWarning") => h.leap_armed = true,
                _ => {}
            }
        }
        if h.slews > 0 || !h.steps.is_empty() {
            hosts.insert(host.name.as_str(), h);
        }
    }
    for row in a.trace.samples() {
        let Some(h) = hosts.get_mut(row.host.as_str()) else { continue };
        let Some((t0, o0)) = h.prev.replace((row.t_s, row.offset_s)) else { continue };
        if h.backwards.is_some() {
            continue;
        }
        let (t1, o1) = (row.t_s, row.offset_s);
        let leap_jump = h.leap_armed && ((o1 - o0).abs() - 1.0).abs() < 1e-2;
        let between = |x: f64| x > t0 - 1e-9 && x <= t1 + 1e-9;
        if t1 + o1 < t0 + o0 && !leap_jump && !h.steps.iter().any(|e| between(e.t_s)) && !external.iter().copied().any(between) {
            h.backwards = Some((t0, t1));
        }
    }
    let mut t = Tally::default();
    for host in a.daemon_hosts() {
        let Some(h) = hosts.get(host.name.as_str()) else { continue };
        let small: Vec<_> = h.steps.iter().filter_map(|e| step_offset(e).map(|o| (e, o))).filter(|(_, o)| o.abs() < STEPT_S).collect();
        if let Some((e, o)) = small.first() {
            t.bad(|| format!("{}: stepped {o:.6} s (below 0.125 s) at {:.3} s (events.jsonl:{})", host.name, e.t_s, e.line));
        } else if let Some((t0, t1)) = h.backwards {
            t.bad(|| format!("{}: local time ran backwards between samples at {t0:.3} s and {t1:.3} s with no step", host.name));
        } else {
            t.good(|| format!("{}: {} slews, {} steps (all 0.125 s or more), local time monotonic", host.name, h.slews, h.steps.len()));
        }
    }
    t.outcome("disciplined clocks", "no daemon adjusted its clock")
}

/// Runs every check on one trace.
pub fn run_all(ctx: &Context, trace: &Trace) -> Vec<(&'static Check, Outcome)> {
    let a = Analysis::new(ctx, trace);
    CHECKS.iter().map(|c| (c, (c.run)(&a))).collect()
}

/// RFC 5905 PHI (frequency tolerance), s/s; written here, not taken from the
/// implementation under test.
const PHI_RFC: f64 = 15e-6;
/// Rounding of the RFC 3339 timestamps (1 ns each) in a `sample` event, with room.
const SAMPLE_ROUNDING_S: f64 = 5e-9;
/// How far a client's dispersion may sit from RFC 5905 §8's sum: its terms
/// are 2^-32 s fixed point, truncated (a nanosecond is four units). A dropped
/// PHI term shows from a 67 µs round trip up.
const DISPERSION_ROUNDING_S: f64 = 1e-9;
/// A daemon converts a receive timestamp to local time when it handles the
/// datagram, up to a few ms after the arrival, with the clock's steering as
/// it is then; the steering may have changed since the arrival. Each
/// steering runs within the tick's range plus MAXFREQ (10 % + 500 ppm) of
/// the raw clock (the regression discipline follows frequency errors of 5 %
/// and slews through the tick), so two differ by at most twice that per
/// second of delay. (With 500 + 500 ppm, a frequency correction of 7500 ppm
/// made between a reply's arrival and its handling 0.8 ms later, in
/// chrony-002-large-network, exceeded the bound by 3 us.)
const CONVERSION_RATE: f64 = 2.0 * (MAX_TICK_RATE + 500e-6);

/// A `sample` event of a daemon client: the figures it computed and the four
/// timestamps it used, with the exchange on the wire it came from.
struct ClientSample<'b> {
    event: &'b EventRec,
    host: &'b crate::trace::HostInfo,
    source: SocketAddr,
    offset: f64,
    delay: f64,
    dispersion: f64,
    t1: NtpTime,
    t2: NtpTime,
    t3: NtpTime,
    t4: NtpTime,
    /// The client's precision in seconds (`local_precision_s`), when the event gives it.
    local_precision: Option<f64>,
    /// An interleaved sample (`"interleaved": true`, RFC 9769 §2): T1, T2
    /// and T4 are the previous exchange's, T3 the exact send time of its
    /// reply, which the newest reply carried.
    interleaved: bool,
    /// The reply it was computed from (index into packets), matched by
    /// source and T2/T3 (an interleaved sample's: the previous reply, by T2 and T4).
    reply: Option<usize>,
    /// The request that reply answers.
    request: Option<usize>,
}

impl ClientSample<'_> {
    fn cite(&self) -> String {
        format!("events.jsonl:{} ({} from {} at {:.3} s)", self.event.line, self.host.name, self.source, self.event.t_s)
    }

    /// ((T2 - T1) + (T3 - T4)) / 2 and (T4 - T1) - (T3 - T2), seconds.
    fn formulas(&self) -> (f64, f64) {
        let (t1, t2, t3, t4) = (self.t1, self.t2, self.t3, self.t4);
        // Summed as NTP durations (exact), rounded to f64 once.
        (secs((t2 - t1).saturating_add(t3 - t4)) / 2.0, secs((t4 - t1).saturating_sub(t3 - t2)))
    }
}

/// Every `sample` event of a daemon host, parsed; events that do not parse
/// come back as the reason.
fn client_samples<'b>(a: &'b Analysis<'_>) -> Vec<Result<ClientSample<'b>, String>> {
    let mut out = Vec::new();
    // The replies of each flow (source, host), in the order of
    // `client_replies`: by arrival. Each sample looks only at its flow's, and
    // for a basic sample only at those that arrived in its 2 s (a scan of all
    // replies per sample made this a third of the suite's time).
    let arrival = |c: &ClientReply| a.pk(c.packet).received_t_s.unwrap_or(0.0);
    let mut by_flow: BTreeMap<(SocketAddr, IpAddr), Vec<&ClientReply>> = BTreeMap::new();
    for c in &a.client_replies {
        let p = a.pk(c.packet);
        by_flow.entry((p.src, p.dst.ip())).or_default().push(c);
    }
    for e in a.trace.events.iter().filter(|e| e.kind == "sample") {
        let Some(host) = e.host.as_deref().and_then(|h| a.ctx.host_named(h)) else { continue };
        if !matches!(host.kind, HostKind::Daemon { .. }) {
            continue;
        }
        let d = &e.details;
        let num = |k: &str| d.get(k).and_then(|v| v.as_f64()).filter(|x| x.is_finite());
        let time = |k: &str| d.get(k).and_then(|v| v.as_str()).and_then(|v| NtpTime::parse_rfc3339(v).ok());
        let (Some(source), Some(offset), Some(delay), Some(dispersion), Some(t1), Some(t2), Some(t3), Some(t4)) = (
            e.source(),
            num("offset_s"),
            num("delay_s"),
            num("dispersion_s"),
            time("t1"),
            time("t2"),
            time("t3"),
            time("t4"),
        ) else {
            out.push(Err(format!("events.jsonl:{}: sample event without source, offset_s, delay_s, dispersion_s and t1..t4", e.line)));
            continue;
        };
        let interleaved = d.get("interleaved").and_then(serde_json::Value::as_bool).unwrap_or(false);
        // The reply: from that source to this host, arrived by the event, with
        // exactly the receive and transmit timestamps the client used; for an
        // interleaved sample, the previous reply, with the receive timestamp
        // the client used, that arrived when it read T4.
        let near = |ts: NtpTimestamp, want: NtpTime| secs(ts.resolve(want) - want).abs() <= SAMPLE_ROUNDING_S;
        let arrived_at_t4 = |c: &&ClientReply| a.pk(c.packet).receiver_local.is_some_and(|l| secs(l - t4).abs() <= SAMPLE_ROUNDING_S);
        // Of several (the copies of a duplicated reply, or replies to the
        // copies of a duplicated request), the one that arrived when the
        // client read T4.
        let flow = by_flow.get(&(source, host.address)).map_or(&[][..], Vec::as_slice);
        let end = flow.partition_point(|c| arrival(c) <= e.t_s + 1e-6);
        let start = if interleaved { 0 } else { flow[..end].partition_point(|c| arrival(c) < e.t_s - 2.0) };
        let reply = flow[start..end]
            .iter()
            .copied()
            .filter(|c| {
                let p = a.pk(c.packet);
                p.src == source
                    && p.dst.ip() == host.address
                    && if interleaved {
                        p.received_t_s.is_some_and(|r| r <= e.t_s + 1e-6)
                            && p.header.is_some_and(|h| near(h.receive_timestamp, t2))
                            && arrived_at_t4(c)
                    } else {
                        p.received_t_s.is_some_and(|r| r <= e.t_s + 1e-6 && r >= e.t_s - 2.0)
                            && p.header.is_some_and(|h| near(h.receive_timestamp, t2) && near(h.transmit_timestamp, t3))
                    }
            })
            .min_by(|x, y| {
                let off = |c: &&ClientReply| a.pk(c.packet).receiver_local.map_or(f64::INFINITY, |l| secs(l - t4).abs());
                off(x).total_cmp(&off(y)).then(a.pk(y.packet).sent_t_s.total_cmp(&a.pk(x.packet).sent_t_s))
            });
        out.push(Ok(ClientSample {
            event: e,
            host,
            source,
            offset,
            delay,
            dispersion,
            t1,
            t2,
            t3,
            t4,
            local_precision: num("local_precision_s").filter(|p| *p > 0.0),
            interleaved,
            reply: reply.map(|c| c.packet),
            request: reply.and_then(|c| c.request),
        }));
    }
    out
}

/// Whether `x` seconds is a power of two (the precision a delay is clamped to).
fn power_of_two_s(x: f64) -> bool {
    x > 0.0 && (x.log2() - x.log2().round()).abs() < 1e-9
}

fn client_sample_formula(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for s in client_samples(a) {
        let s = match s {
            Ok(s) => s,
            Err(why) => {
                t.bad(|| why);
                continue;
            }
        };
        let (theta, delta) = s.formulas();
        // A smear-aware client adds the correction a smear REFID names back.
        let smear = s.reply.and_then(|r| a.pk(r).header).map_or(0.0, |h| smear_s(&h));
        // The event's offset is an f64 too: an offset of 1e8 s (a clock
        // years off) is held to 15 ns, one unit in its last place.
        let rounding = SAMPLE_ROUNDING_S + 2.0 * f64::EPSILON * theta.abs();
        let offset_ok = (s.offset - theta).abs() <= rounding
            || (smear != 0.0 && (s.offset - theta - smear).abs() <= rounding + SMEAR_RESOLUTION_S);
        // The delay may be raised to the local precision (RFC 5905 §8), a power of two.
        let delay_ok = (s.delay - delta).abs() <= SAMPLE_ROUNDING_S || (delta < s.delay && power_of_two_s(s.delay) && s.delay <= 1e-3);
        let rtt = secs(s.t4 - s.t1).max(0.0);
        // ε = 2^ρ(server) + 2^ρ(client) + PHI·(T4 − T1) (RFC 5905 §8), exactly
        // when the reply's precision and the client's are known; otherwise
        // at least the PHI term.
        let server_precision = s.reply.and_then(|r| a.pk(r).header).map(|h| 2f64.powi(i32::from(h.precision)));
        let expected = s.local_precision.zip(server_precision).map(|(l, p)| p + l + PHI_RFC * rtt);
        let dispersion_ok = match expected {
            Some(e) => (s.dispersion - e).abs() <= DISPERSION_ROUNDING_S,
            None => s.dispersion >= PHI_RFC * rtt - SAMPLE_ROUNDING_S && s.dispersion < 16.0,
        };
        let line = || {
            let want = match expected {
                Some(e) => format!("2^rho(server) + 2^rho(client) + PHI x round trip = {e:.4e} s"),
                None => format!("at least PHI x round trip = {:.3e} s", PHI_RFC * rtt),
            };
            format!(
                "{}: offset {:.9} s vs ((T2-T1)+(T3-T4))/2 = {theta:.9} s, delay {:.9} s vs (T4-T1)-(T3-T2) = {delta:.9} s, dispersion {:.4e} s vs {want}",
                s.cite(),
                s.offset,
                s.delay,
                s.dispersion,
            )
        };
        if offset_ok && delay_ok && dispersion_ok {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    t.outcome("samples of daemon clients", "no daemon client logged a sample")
}

/// What the simulator knows about a sample's exchange, in seconds: the true
/// server-minus-client clock offset (noiseless readings, averaged over the
/// two legs), the one-way delays, and the delay a noiseless client would
/// measure (the true round trip minus the server's residence, in the two
/// clocks' units).
struct SampleTruth {
    theta: f64,
    forward: f64,
    backward: f64,
    delta: f64,
    /// Standard deviations of the client's and the server's timestamp noise.
    noise: f64,
    /// Bound on the receive timestamps' conversion error (T2 and T4), seconds.
    conversion: f64,
}

fn sample_truth(a: &Analysis<'_>, s: &ClientSample<'_>) -> Option<SampleTruth> {
    let (rep, req) = (a.pk(s.reply?), a.pk(s.request?));
    let (req_rx, req_rx_local, rep_rx, rep_rx_local) = (req.received?, req.receiver_local?, rep.received?, rep.receiver_local?);
    let c1 = secs(req.sender_local - req.sent);
    let s2 = secs(req_rx_local - req_rx);
    let s3 = secs(rep.sender_local - rep.sent);
    let c4 = secs(rep_rx_local - rep_rx);
    let forward = secs(req_rx - req.sent);
    let backward = secs(rep_rx - rep.sent);
    let server_noise = a.ctx.host_at(rep.src.ip()).map_or(0.0, |h| h.noise_s);
    // When the client converted T4: as it handled the reply (the sample
    // event); an interleaved sample's reply was handled an exchange earlier,
    // at the first sample event from that source after it arrived.
    let handled = if s.interleaved {
        let arrived = rep.received_t_s?;
        a.trace
            .events
            .iter()
            .filter(|e| e.kind == "sample" && e.host.as_deref() == Some(s.host.name.as_str()) && e.source() == Some(s.source))
            .map(|e| e.t_s)
            .find(|t| *t >= arrived - 1e-9)?
    } else {
        s.event.t_s
    };
    Some(SampleTruth {
        theta: ((s2 - c1) + (s3 - c4)) / 2.0,
        forward,
        backward,
        delta: forward + backward + (c4 - c1) - (s3 - s2),
        noise: s.host.noise_s + server_noise,
        // T4 is converted when the client handles the reply (the event), T2
        // when the server handles the request (at the latest when it replies).
        conversion: CONVERSION_RATE * ((handled - rep.received_t_s?).max(0.0) + secs(rep.sent - req_rx).max(0.0)),
    })
}

/// Samples whose truth the trace holds: replies from daemon servers (scripted
/// peers lie on purpose) matched to their exchange.
fn judged_samples<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = (ClientSample<'b>, SampleTruth)> + 'b {
    client_samples(a).into_iter().filter_map(move |s| {
        let s = s.ok()?;
        if !a.ctx.is_daemon(s.source.ip()) {
            return None;
        }
        let truth = sample_truth(a, &s)?;
        Some((s, truth))
    })
}

fn client_sample_offset(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (s, truth) in judged_samples(a) {
        let smear = s.reply.and_then(|r| a.pk(r).header).map_or(0.0, |h| smear_s(&h));
        // A plain client measures the smeared time scale, a smear-aware one the server's clock.
        let err = (s.offset - truth.theta).abs().min(if smear != 0.0 { (s.offset + smear - truth.theta).abs() } else { f64::INFINITY });
        let half_asymmetry = (truth.forward - truth.backward).abs() / 2.0;
        let tol = 1e-7 + 8.0 * truth.noise + truth.conversion + if smear != 0.0 { SMEAR_RESOLUTION_S } else { 0.0 };
        let line = || {
            format!(
                "{} for {}: offset {:.9} s vs true {:.9} s, error {err:.3e} s (half asymmetry {half_asymmetry:.3e} s + noise and conversion {tol:.1e} s)",
                s.cite(),
                a.pk(s.reply.unwrap_or_default()).cite(),
                s.offset,
                truth.theta
            )
        };
        if err <= half_asymmetry + tol {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    t.outcome("samples from daemon servers", "no daemon client logged a sample from a daemon server")
}

fn client_sample_delay(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (s, truth) in judged_samples(a) {
        let err = (s.delay - truth.delta).abs();
        let tol = 1e-7 + 8.0 * truth.noise + truth.conversion;
        let clamped = truth.delta < s.delay && power_of_two_s(s.delay) && s.delay <= 1e-3;
        let line = || {
            format!(
                "{} for {}: delay {:.9} s vs true {:.9} s ({:.9} s out + {:.9} s back), error {err:.3e} s (noise and conversion bound {tol:.1e} s)",
                s.cite(),
                a.pk(s.reply.unwrap_or_default()).cite(),
                s.delay,
                truth.delta,
                truth.forward,
                truth.backward
            )
        };
        if err <= tol || clamped {
            t.good(line);
        } else {
            t.bad(line);
        }
    }
    t.outcome("samples from daemon servers", "no daemon client logged a sample from a daemon server")
}
