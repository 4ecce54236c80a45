//! Checks of NTPv5 (draft-ietf-ntp-ntpv5-07, -08, -09) over the datagrams of
//! a run. Header fields and extension fields are read here from the octets
//! (offsets of -07 §6, fields of §7), not through the implementation's own
//! NTPv5 code, so that a misread field in the core cannot hide from them.

use super::{Analysis, Outcome, Tally};
use crate::trace::PacketRec;
use std::collections::{BTreeMap, BTreeSet};

const DRAFT_ID: u16 = 0xF5FF;
const REFIDS_REQUEST: u16 = 0xF503;
const REFIDS_RESPONSE: u16 = 0xF504;
const DRAFTS: [&[u8]; 3] = [b"draft-ietf-ntp-ntpv5-07", b"draft-ietf-ntp-ntpv5-08", b"draft-ietf-ntp-ntpv5-09"];
/// "NTP5DRFT", the draft upgrade marker (-07 §12).
const MARKER: &[u8; 8] = b"NTP5DRFT";

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

/// The NTPv5 header fields read from the octets.
#[derive(Debug, Clone, Copy)]
struct Hdr {
    li: u8,
    mode: u8,
    stratum: u8,
    poll: i8,
    timescale: u8,
    era: u8,
    flags: u16,
    client_cookie: u64,
    rx: u64,
    zero_in_request: bool,
}

fn hdr(p: &PacketRec) -> Option<Hdr> {
    let b = &p.bytes;
    if b.len() < 48 || (b[0] >> 3) & 7 != 5 {
        return None;
    }
    Some(Hdr {
        li: b[0] >> 6,
        mode: b[0] & 7,
        stratum: b[1],
        poll: b[2] as i8,
        timescale: b[12],
        era: b[13],
        flags: u16_at(b, 14),
        client_cookie: u64_at(b, 24),
        rx: u64_at(b, 32),
        // LI, stratum, precision, root delay and dispersion, era, receive and transmit (§6, §9).
        zero_in_request: b[0] >> 6 == 0 && b[1] == 0 && b[3] == 0 && b[4..12].iter().all(|x| *x == 0) && b[13] == 0 && b[32..48].iter().all(|x| *x == 0),
    })
}

/// The extension fields (type, value without alignment padding); `None` when
/// they do not parse (a Length below 4 or past the end).
fn efs(b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = b.get(48..)?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(rest, 2));
        let padded = len.div_ceil(4) * 4;
        if len < 4 || padded > rest.len() {
            return None;
        }
        out.push((u16_at(rest, 0), &rest[4..len]));
        rest = &rest[padded..];
    }
    Some(out)
}

fn draft_of<'a>(f: &[(u16, &'a [u8])]) -> Option<&'a [u8]> {
    f.iter().find(|(t, _)| *t == DRAFT_ID).map(|(_, v)| *v)
}

/// NTPv5 requests sent by daemons.
fn daemon_requests<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = (&'b PacketRec, Hdr)> {
    a.trace.packets.iter().filter(move |p| a.ctx.is_daemon(p.src.ip())).filter_map(|p| hdr(p).filter(|h| h.mode == 3).map(|h| (p, h)))
}

/// A daemon's NTPv5 reply and the request whose client cookie it carries.
type Pair<'b> = (&'b PacketRec, Hdr, Option<(&'b PacketRec, Hdr)>);

/// NTPv5 replies sent by daemons, with the request whose client cookie they carry.
fn daemon_pairs<'b>(a: &'b Analysis<'_>) -> Vec<Pair<'b>> {
    let pk = &a.trace.packets;
    let mut by_cookie: BTreeMap<(std::net::SocketAddr, u64), usize> = BTreeMap::new();
    for (i, p) in pk.iter().enumerate() {
        if let Some(h) = hdr(p).filter(|h| h.mode == 3) {
            by_cookie.insert((p.src, h.client_cookie), i);
        }
    }
    pk.iter()
        .filter(|p| a.ctx.is_daemon(p.src.ip()))
        .filter_map(|p| hdr(p).filter(|h| h.mode == 4).map(|h| (p, h)))
        .map(|(p, h)| {
            let req = by_cookie.get(&(p.dst, h.client_cookie)).map(|i| &pk[*i]).filter(|r| r.sent_t_s <= p.sent_t_s);
            (p, h, req.and_then(|r| hdr(r).map(|rh| (r, rh))))
        })
        .collect()
}

/// RV5-6-header: every NTPv5 datagram a daemon sends has the 48-octet header,
/// mode 3 or 4, and a length that is a multiple of 4.
pub fn header(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip()) && p.is_v5()) {
        match hdr(p) {
            Some(h) if matches!(h.mode, 3 | 4) && p.bytes.len() % 4 == 0 => t.good(|| p.cite()),
            _ => t.bad(|| format!("{}: {} octets, first octet {:#04x}", p.cite(), p.bytes.len(), p.bytes.first().copied().unwrap_or(0))),
        }
    }
    t.outcome("NTPv5 datagrams from daemons", "no daemon sent NTPv5")
}

/// RV5-6-request-zero: daemon requests are zero but for version, mode,
/// timescale, flags (only Interleaved), cookies, and (-08, -09) the poll.
pub fn request_zero(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, h) in daemon_requests(a) {
        let minus_07 = efs(&p.bytes).and_then(|f| draft_of(&f).map(|d| d == DRAFTS[0])).unwrap_or(true);
        let poll_ok = !minus_07 || h.poll == 0;
        if h.zero_in_request && h.flags & !2 == 0 && poll_ok {
            t.good(|| p.cite());
        } else {
            t.bad(|| format!("{}: flags {:#06x}, poll {}, zero fields {}", p.cite(), h.flags, h.poll, h.zero_in_request));
        }
    }
    t.outcome("NTPv5 requests from daemons", "no daemon sent an NTPv5 request")
}

/// RV5-6-client-cookie: a daemon never repeats a client cookie, and every
/// daemon reply carries the cookie of a request it received.
pub fn client_cookie(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut seen = BTreeSet::new();
    for (p, h) in daemon_requests(a) {
        if seen.insert((p.src.ip(), h.client_cookie)) {
            t.good(|| p.cite());
        } else {
            t.bad(|| format!("{}: client cookie {:016x} sent before", p.cite(), h.client_cookie));
        }
    }
    for (p, h, req) in daemon_pairs(a) {
        match req {
            Some(_) => t.good(|| p.cite()),
            None => t.bad(|| format!("{}: reply with client cookie {:016x} that no request carried", p.cite(), h.client_cookie)),
        }
    }
    t.outcome("NTPv5 requests and replies of daemons", "no daemon sent NTPv5")
}

/// RV5-6-li and RV5-6-stratum: a synchronized reply has LI 0–2 and stratum
/// 1–15; an unsynchronized one LI 3 and stratum 0.
pub fn li_stratum(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, h, _) in daemon_pairs(a) {
        let synced = h.flags & 1 != 0;
        let ok = if synced { h.li != 3 && (1..=15).contains(&h.stratum) } else { h.li == 3 && h.stratum == 0 };
        if ok {
            t.good(|| p.cite());
        } else {
            t.bad(|| format!("{}: synchronized {synced}, LI {}, stratum {}", p.cite(), h.li, h.stratum));
        }
    }
    t.outcome("NTPv5 replies of daemons", "no daemon answered NTPv5")
}

/// RV5-6-timescale and RV5-6-era: a reply is in the requested timescale when
/// that is UTC (always served), and its Era is the NTP era of its receive
/// timestamp as the server's clock read it when replying.
pub fn timescale_era(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, h, req) in daemon_pairs(a) {
        let Some((_, rh)) = req else { continue };
        if rh.timescale == 0 && h.timescale != 0 {
            t.bad(|| format!("{}: UTC asked, timescale {} served", p.cite(), h.timescale));
            continue;
        }
        if h.rx == 0 || h.timescale != 0 {
            continue;
        }
        // The server's clock at sending is microseconds after the receive time;
        // at an era change the two may lie on either side of it.
        let local = p.sender_local;
        let near = [local.era(), (local + ntplab_proto::time::NtpDuration::from_seconds(-1)).era()];
        if near.contains(&i32::from(h.era)) && ntplab_proto::time::NtpTimestamp::from_bits(h.rx).seconds().abs_diff(local.to_timestamp().seconds()) <= 1 {
            t.good(|| format!("{}: era {}", p.cite(), h.era));
        } else {
            t.bad(|| format!("{}: era {} for a receive timestamp at server time {}", p.cite(), h.era, local.rfc3339()));
        }
    }
    t.outcome("NTPv5 replies of daemons", "no daemon answered NTPv5")
}

/// RV5-7-ef-echo-pad and RV5-7-server-efs: a reply is exactly as long as its
/// request, echoes the Draft Identification, and answers a Reference IDs
/// Request whose offset fits; whatever it leaves out is padded.
pub fn ef_echo_pad(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, _, req) in daemon_pairs(a) {
        let Some((r, _)) = req else { continue };
        let (Some(qf), Some(pf)) = (efs(&r.bytes), efs(&p.bytes)) else {
            t.bad(|| format!("{}: extension fields do not parse", p.cite()));
            continue;
        };
        let refids_due = qf.iter().any(|(k, v)| *k == REFIDS_REQUEST && v.len() >= 2 && usize::from(u16_at(v, 0)) + v.len() <= 512);
        let has = |k: u16| pf.iter().any(|(t, _)| *t == k);
        let ok = p.bytes.len() == r.bytes.len() && has(DRAFT_ID) && (!refids_due || has(REFIDS_RESPONSE));
        if ok {
            t.good(|| p.cite());
        } else {
            t.bad(|| format!("{}: {} octets for a {}-octet request {}", p.cite(), p.bytes.len(), r.bytes.len(), r.cite()));
        }
    }
    t.outcome("NTPv5 replies of daemons", "no daemon answered NTPv5")
}

/// RV5-7.1-draft-id: every daemon request names a draft exactly (no NUL);
/// every reply names the draft of its request.
pub fn draft_id(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, _) in daemon_requests(a) {
        match efs(&p.bytes).as_deref().and_then(draft_of) {
            Some(d) if DRAFTS.contains(&d) => t.good(|| p.cite()),
            other => t.bad(|| format!("{}: Draft Identification {:?}", p.cite(), other.map(String::from_utf8_lossy))),
        }
    }
    for (p, _, req) in daemon_pairs(a) {
        let Some((r, _)) = req else { continue };
        let asked = efs(&r.bytes).as_deref().and_then(draft_of).map(<[u8]>::to_vec);
        let answered = efs(&p.bytes).as_deref().and_then(draft_of).map(<[u8]>::to_vec);
        if asked.is_some() && asked == answered {
            t.good(|| p.cite());
        } else {
            t.bad(|| format!("{}: answers draft {:?} to {:?}", p.cite(), answered.map(String::from_utf8), asked.map(String::from_utf8)));
        }
    }
    t.outcome("NTPv5 requests and replies of daemons", "no daemon sent NTPv5")
}

/// RV5-7.4-refid-bloom and RV5-9-refid-request: every daemon request carries
/// a Reference IDs Request whose chunk fits the 512-octet filter, and the
/// response chunk has the requested length.
pub fn refids(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, _) in daemon_requests(a) {
        let f = efs(&p.bytes).unwrap_or_default();
        match f.iter().find(|(k, _)| *k == REFIDS_REQUEST) {
            Some((_, v)) if v.len() >= 2 && usize::from(u16_at(v, 0)) + v.len() <= 512 => t.good(|| p.cite()),
            _ => t.bad(|| format!("{}: no Reference IDs Request within the filter", p.cite())),
        }
    }
    for (p, _, req) in daemon_pairs(a) {
        let Some((r, _)) = req else { continue };
        let q = efs(&r.bytes).unwrap_or_default();
        let Some((_, qv)) = q.iter().find(|(k, _)| *k == REFIDS_REQUEST) else { continue };
        let f = efs(&p.bytes).unwrap_or_default();
        match f.iter().find(|(k, _)| *k == REFIDS_RESPONSE) {
            Some((_, v)) if v.len() == qv.len() => t.good(|| p.cite()),
            Some((_, v)) => t.bad(|| format!("{}: chunk of {} octets for a request of {}", p.cite(), v.len(), qv.len())),
            None => {}
        }
    }
    t.outcome("NTPv5 requests and replies of daemons", "no daemon sent NTPv5")
}

/// RV5-10-version: daemon servers answer NTPv5 requests in NTPv5 (every
/// NTPv5 reply carries an NTPv5 request's cookie) and never answer one in
/// NTPv4 (no NTPv4 reply carries a daemon's NTPv5 client cookie as origin).
pub fn version(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let cookies: BTreeSet<u64> = a.trace.packets.iter().filter_map(|p| hdr(p).filter(|h| h.mode == 3)).map(|h| h.client_cookie).collect();
    for (p, h, req) in daemon_pairs(a) {
        match req {
            Some(_) => t.good(|| p.cite()),
            None => t.bad(|| format!("{}: NTPv5 reply to no NTPv5 request (cookie {:016x})", p.cite(), h.client_cookie)),
        }
    }
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip()) && !p.is_v5()) {
        if let Some(h) = p.header.filter(|h| h.mode == ntplab_proto::wire::v4::Mode::Server) {
            if cookies.contains(&h.origin_timestamp.to_bits()) {
                t.bad(|| format!("{}: NTPv{} reply to an NTPv5 request", p.cite(), h.version));
            }
        }
    }
    t.outcome("NTPv5 replies of daemons", "no daemon answered NTPv5")
}

/// RV5-12-negotiation: a daemon's NTPv4 reply carries the NTP5DRFT marker
/// only when its request did, and a daemon client that got the marker back
/// sends NTPv5 to that server next.
pub fn negotiation(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for pair in &a.server_pairs {
        let (q, r) = (a.pk(pair.request), a.pk(pair.reply));
        let echoed = r.bytes.get(16..24) == Some(&MARKER[..]);
        let asked = q.bytes.get(16..24) == Some(&MARKER[..]);
        if echoed && !asked {
            t.bad(|| format!("{}: marker in a reply to {}, which did not ask", r.cite(), q.cite()));
        }
    }
    for c in &a.client_replies {
        let p = a.pk(c.packet);
        if p.bytes.get(16..24) != Some(&MARKER[..]) || c.request.is_none_or(|r| a.pk(r).bytes.get(16..24) != Some(&MARKER[..])) {
            continue;
        }
        let next = a.flows.get(&(p.dst, p.src)).and_then(|v| v.iter().copied().find(|i| a.pk(*i).sent_t_s > p.received_t_s.unwrap_or(p.sent_t_s)));
        let next_v5 = a.trace.packets.iter().filter(|q| q.src == p.dst && q.dst == p.src && q.is_v5() && q.sent_t_s > p.received_t_s.unwrap_or(p.sent_t_s)).map(|q| q.sent_t_s).next();
        let next_v4 = next.map(|i| a.pk(i).sent_t_s);
        match (next_v5, next_v4) {
            (Some(v5), Some(v4)) if v5 < v4 => t.good(|| format!("{}: NTPv5 follows the offer", p.cite())),
            (Some(_), None) => t.good(|| format!("{}: NTPv5 follows the offer", p.cite())),
            (None, None) => {}
            _ => t.bad(|| format!("{}: the offer was not taken up", p.cite())),
        }
    }
    t.outcome("upgrade offers", "no client asked for NTPv5 with NTP5DRFT")
}

/// RV5-6-flags: a daemon's NTPv5 reply with the Authentication NAK flag has
/// stratum 0, and a daemon client takes no sample from an NTPv5 reply
/// without the Synchronized flag (its host logs no `sample` event for that
/// server at the reply's delivery time).
pub fn flags(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, h, _) in daemon_pairs(a) {
        if h.flags & 4 != 0 {
            if h.stratum == 0 {
                t.good(|| format!("{}: Authentication NAK at stratum 0", p.cite()));
            } else {
                t.bad(|| format!("{}: Authentication NAK at stratum {}", p.cite(), h.stratum));
            }
        }
    }
    let samples: Vec<(&str, std::net::SocketAddr, f64)> =
        a.trace.events.iter().filter(|e| e.kind == "sample").filter_map(|e| Some((e.host.as_deref()?, e.source()?, e.t_s))).collect();
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.dst.ip())) {
        let (Some(h), Some(at)) = (hdr(p).filter(|h| h.mode == 4 && h.flags & 1 == 0), p.received_t_s) else { continue };
        let Some(host) = a.ctx.hosts.iter().find(|x| x.address == p.dst.ip()).map(|x| x.name.as_str()) else { continue };
        if samples.iter().any(|(n, src, ts)| *n == host && *src == p.src && (ts - at).abs() < 1e-6) {
            t.bad(|| format!("{}: a sample from a reply without the Synchronized flag (flags {:#06x})", p.cite(), h.flags));
        } else {
            t.good(|| format!("{}: unsynchronized (flags {:#06x}), not used", p.cite(), h.flags));
        }
    }
    t.outcome("NTPv5 NAKs of daemons and unsynchronized NTPv5 replies to daemons", "no daemon got an unsynchronized NTPv5 reply or sent a NAK")
}

/// RV5-10-stratum-rule: a daemon's synchronized NTPv5 reply has a stratum
/// above that of the source it follows: the system peer of its last
/// `selection` event before the reply, whose stratum is that of the last
/// synchronized reply (NTPv4 or NTPv5: octet 1 in both) the daemon got from
/// it before that selection. Replies while following a local reference (no
/// system peer) are not judged.
pub fn stratum_rule(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, h, _) in daemon_pairs(a) {
        if h.flags & 1 == 0 {
            continue;
        }
        let Some(host) = a.ctx.hosts.iter().find(|x| x.address == p.src.ip()).map(|x| x.name.as_str()) else { continue };
        let selection = a.trace.events.iter().rev().find(|e| e.kind == "selection" && e.host.as_deref() == Some(host) && e.t_s <= p.sent_t_s);
        let Some(sel) = selection else { continue };
        let Some(peer) = sel.details.get("system_peer").and_then(|v| v.as_str()).and_then(|s| s.parse::<std::net::SocketAddr>().ok()) else { continue };
        let upstream = a
            .trace
            .packets
            .iter()
            .rev()
            .filter(|q| q.src == peer && q.dst.ip() == p.src.ip() && q.bytes.len() >= 48 && q.bytes[0] & 7 == 4 && q.bytes[1] != 0)
            .find(|q| q.received_t_s.is_some_and(|r| r <= sel.t_s + 1e-9));
        let Some(q) = upstream else { continue };
        if h.stratum > q.bytes[1] {
            t.good(|| format!("{}: stratum {} following {peer} at stratum {} ({})", p.cite(), h.stratum, q.bytes[1], q.cite()));
        } else {
            t.bad(|| format!("{}: stratum {} while following {peer} at stratum {} ({})", p.cite(), h.stratum, q.bytes[1], q.cite()));
        }
    }
    t.outcome("synchronized NTPv5 replies of daemons following a source", "no daemon answered NTPv5 while following a source")
}

/// Server Information (draft-ietf-ntp-ntpv5-07 §7.5).
const SERVER_INFO: u16 = 0xF505;

/// RV5-7.5-server-info: a daemon's request with Server Information has
/// zeros in it, and a daemon's reply to such a request carries Server
/// Information (4 octets) naming NTPv5 among its versions (bit 4, bit 0 =
/// NTPv1) with the reserved octets zero.
pub fn server_info(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let info = |b: &[u8]| efs(b).and_then(|f| f.iter().find(|(k, _)| *k == SERVER_INFO).map(|(_, v)| v.to_vec()));
    for (p, _) in daemon_requests(a) {
        match info(&p.bytes) {
            Some(v) if v.len() == 4 && v.iter().all(|x| *x == 0) => t.good(|| p.cite()),
            Some(v) => t.bad(|| format!("{}: Server Information {v:02x?} in a request", p.cite())),
            None => {}
        }
    }
    for (p, _, req) in daemon_pairs(a) {
        let Some((r, _)) = req else { continue };
        if info(&r.bytes).is_none() {
            continue;
        }
        match info(&p.bytes) {
            Some(v) if v.len() == 4 && u16_at(&v, 0) & 0x10 != 0 && u16_at(&v, 2) == 0 => t.good(|| format!("{}: versions {:#06x}", p.cite(), u16_at(&v, 0))),
            other => t.bad(|| format!("{}: Server Information {other:02x?} answering {}", p.cite(), r.cite())),
        }
    }
    t.outcome("NTPv5 requests and replies of daemons with Server Information", "no daemon sent or answered Server Information")
}

/// Requests of a start-up burst: at most 8, each within this of the one
/// before (-07 §9: "a burst of up to 8 requests using an interval of only
/// 2^1 (2) seconds").
const BURST_GAP_S: f64 = 2.5;
const BURST_MAX: usize = 8;
/// Relative slack of an interval for the client's clock rate (simulated
/// oscillators are off by far less).
const RATE_SLACK: f64 = 1e-3;
/// The Poll value that says "do not contact me again" (-07 §6).
const POLL_NEVER: i8 = 127;

/// A daemon client's requests to one server: (client socket, server
/// socket) → the requests (NTPv4 or NTPv5, first copies only), by send
/// time, each with whether it belongs to a burst at the association's
/// start (the flow's first request, or the first after its host's daemon
/// was started again by a scenario event, and the requests following it
/// within [`BURST_GAP_S`], [`BURST_MAX`] in all).
type RequestFlows<'b> = BTreeMap<(std::net::SocketAddr, std::net::SocketAddr), Vec<(&'b PacketRec, bool)>>;

fn request_flows<'b>(a: &'b Analysis<'_>) -> RequestFlows<'b> {
    let is_request = |p: &PacketRec| hdr(p).map(|h| h.mode == 3).unwrap_or(p.mode() == Some(ntplab_proto::wire::v4::Mode::Client));
    let mut flows: RequestFlows<'b> = BTreeMap::new();
    for (i, p) in a.trace.packets.iter().enumerate() {
        if a.ctx.is_daemon(p.src.ip()) && !a.is_copy[i] && is_request(p) {
            flows.entry((p.src, p.dst)).or_default().push((p, false));
        }
    }
    let restarts = daemon_restarts(a);
    for reqs in flows.values_mut() {
        reqs.sort_by(|x, y| x.0.sent_t_s.total_cmp(&y.0.sent_t_s));
        let host = reqs[0].0.src.ip();
        let mut in_burst = 0;
        for i in 0..reqs.len() {
            let t = reqs[i].0.sent_t_s;
            let prev = i.checked_sub(1).map(|j| reqs[j].0.sent_t_s);
            let restarted = restarts.iter().any(|(h, at)| *h == host && prev.is_none_or(|p| p < *at) && *at <= t);
            in_burst = if i == 0 || restarted {
                1
            } else if in_burst > 0 && in_burst < BURST_MAX && prev.is_some_and(|p| t - p <= BURST_GAP_S) {
                in_burst + 1
            } else {
                0
            };
            reqs[i].1 = in_burst > 0;
        }
    }
    flows
}

/// Hosts whose daemon a scenario event started again, with the time: the
/// simulator logs `{"kind":"scenario","details":{"event":"Start { host: N }"}}`
/// with N the host's index.
fn daemon_restarts(a: &Analysis<'_>) -> Vec<(std::net::IpAddr, f64)> {
    a.trace
        .events
        .iter()
        .filter(|e| e.kind == "scenario")
        .filter_map(|e| {
            let s = e.details.get("event")?.as_str()?;
            let n: usize = s.strip_prefix("Start { host: ")?.strip_suffix(" }")?.parse().ok()?;
            Some((a.ctx.hosts.get(n)?.address, e.t_s))
        })
        .collect()
}

/// RV5-9-poll-public: a daemon's NTPv5 requests to a server are at least
/// 2^6 s apart, but for one burst of at most 8 requests about 2 s apart at
/// the association's start; and the intervals carry a random part (-07 §9:
/// "SHOULD contain a small random part"): two successive intervals of the
/// same power of two are never all equal in a flow with four or more. Not
/// judged: that the interval rises to 2^10 s (the configured maximum poll
/// decides it; the scenarios that declare this check cap it lower to run
/// short).
pub fn poll_public(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for ((c, s), reqs) in request_flows(a) {
        let name = || format!("{} -> {}", a.ctx.name(c.ip()), a.ctx.name(s.ip()));
        let mut regular = Vec::new();
        for w in reqs.windows(2) {
            let ((prev, _), (p, startup)) = (w[0], w[1]);
            if !p.is_v5() || startup {
                continue;
            }
            let gap = p.sent_t_s - prev.sent_t_s;
            if gap >= 64.0 * (1.0 - RATE_SLACK) {
                regular.push(gap);
                t.good(|| format!("{}: {gap:.3} s after the request before", p.cite()));
            } else {
                t.bad(|| format!("{} ({}): {gap:.3} s after {}, not in a burst at the start", p.cite(), name(), prev.cite()));
            }
        }
        let same_base: Vec<(f64, f64)> = regular.windows(2).map(|w| (w[0], w[1])).filter(|(x, y)| x.log2().floor() == y.log2().floor()).collect();
        if regular.len() >= 4 && !same_base.is_empty() && same_base.iter().all(|(x, y)| (x - y).abs() < 1e-3) {
            t.bad(|| format!("{}: {} intervals without a random part ({:.3} s each)", name(), regular.len(), regular[0]));
        }
    }
    t.outcome("NTPv5 requests of daemons after their start", "no daemon sent NTPv5 requests after a start-up burst")
}

/// RV5-6-poll: a daemon client keeps to the Poll of the last NTPv5 reply
/// it got from a server: a request follows the one before it by at least
/// 2^Poll s (judged up to 2^10 s, the least maximum -07 §9 wants clients
/// to reach: the draft leaves the cap to the client), except in the burst
/// at the association's start, which may ignore it (§9 MAY); after a Poll
/// of 127 it sends that server nothing more.
pub fn poll(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for ((c, s), reqs) in request_flows(a) {
        let cookies: BTreeSet<u64> = reqs.iter().filter_map(|(p, _)| hdr(p)).map(|h| h.client_cookie).collect();
        // NTPv5 replies from the server that answer this client's requests, by arrival.
        let mut replies: Vec<(f64, i8, &PacketRec)> = a
            .trace
            .packets
            .iter()
            .filter(|p| p.src == s && p.dst == c)
            .filter_map(|p| Some((p.received_t_s?, hdr(p).filter(|h| h.mode == 4 && cookies.contains(&h.client_cookie))?, p)))
            .map(|(at, h, p)| (at, h.poll, p))
            .collect();
        replies.sort_by(|x, y| x.0.total_cmp(&y.0));
        for (at, _, r) in replies.iter().filter(|(_, poll, _)| *poll == POLL_NEVER).take(1) {
            match reqs.iter().find(|(p, _)| p.sent_t_s > *at) {
                None => t.good(|| format!("{}: Poll 127, and no request after it", r.cite())),
                Some((p, _)) => t.bad(|| format!("{}: a request after {}, whose Poll 127 said to stop", p.cite(), r.cite())),
            }
        }
        for w in reqs.windows(2) {
            let ((prev, _), (p, startup)) = (w[0], w[1]);
            let Some((_, floor, r)) = replies.iter().rev().find(|(at, _, _)| *at < p.sent_t_s) else { continue };
            if startup || !p.is_v5() || *floor == POLL_NEVER {
                continue;
            }
            let need = 2f64.powi(i32::from((*floor).min(10)));
            let gap = p.sent_t_s - prev.sent_t_s;
            if gap >= need * (1.0 - RATE_SLACK) {
                t.good(|| format!("{}: {gap:.3} s after the request before, Poll {floor} ({})", p.cite(), r.cite()));
            } else {
                t.bad(|| format!("{}: {gap:.3} s after {}, below the {need} s of Poll {floor} in {}", p.cite(), prev.cite(), r.cite()));
            }
        }
    }
    t.outcome("NTPv5 requests of daemons after a reply, and Poll 127 replies to them", "no daemon polled an NTPv5 server after a reply")
}
