//! Checks of the interleaved client/server mode (RFC 9769 §2, §6; text
//! from draft-ietf-ntp-interleaved-modes-08) over the datagrams and the
//! clients' `sample` events. A request is *interleaved* when its origin and
//! receive timestamps are both non-zero (a basic client sends them zero);
//! a reply is *interleaved* when its origin is the receive timestamp of the
//! request it answers and not that request's transmit timestamp.

use super::{secs, Analysis, ClientReply, Outcome, Tally};
use crate::trace::{HostKind, PacketRec};
use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::wire::v4::{Mode, Repr};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Most interleaved requests a client sends naming one reply (the
/// implementation's `INTERLEAVED_REQUESTS_PER_REPLY`; the draft's "SHOULD
/// limit the number of requests in the interleaved mode between server
/// responses" sets no number, so a client sending more fails).
pub const REQUESTS_PER_REPLY_MAX: usize = 4;

/// How close an interleaved request's receive timestamp may come to the
/// client's arrival reading of the reply it names before it counts as that
/// reading leaked (§6: the field should be random in all its bits).
const LEAK_WINDOW_S: f64 = 1.0;

fn is_interleaved_request(q: &Repr) -> bool {
    q.mode == Mode::Client && !q.origin_timestamp.is_zero() && !q.receive_timestamp.is_zero()
}

fn interleaving_server(a: &Analysis<'_>, ip: IpAddr) -> bool {
    matches!(a.ctx.host_at(ip).map(|h| &h.kind), Some(HostKind::Daemon { interleaved: true, .. }))
}

/// The daemon's interleaved requests in send order.
fn interleaved_requests<'b>(a: &'b Analysis<'_>) -> Vec<(usize, &'b PacketRec, Repr)> {
    let mut v: Vec<_> = a
        .trace
        .packets
        .iter()
        .enumerate()
        .filter(|(i, p)| !a.is_copy[*i] && a.ctx.is_daemon(p.src.ip()) && !p.is_v5())
        .filter_map(|(i, p)| p.header.filter(is_interleaved_request).map(|h| (i, p, h)))
        .collect();
    v.sort_by(|x, y| x.1.sent_t_s.total_cmp(&y.1.sent_t_s));
    v
}

/// `interleaved-tx-ne-rx` (R9769-2-tx-ne-rx): no time packet of an
/// interleaving daemon (an interleaved request, or a reply of a server with
/// interleaved mode on) has its transmit timestamp equal to its receive
/// timestamp. Kiss-o'-deaths carry no time and are left out.
pub fn tx_ne_rx(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (i, p) in a.trace.packets.iter().enumerate() {
        let Some(h) = p.header else { continue };
        if a.is_copy[i] || p.is_v5() || !a.ctx.is_daemon(p.src.ip()) {
            continue;
        }
        let judged = is_interleaved_request(&h) || (h.mode == Mode::Server && h.stratum != 0 && interleaving_server(a, p.src.ip()));
        if !judged {
            continue;
        }
        let line = || format!("{} ({}): receive {:016x}, transmit {:016x}", p.cite(), a.flow_name(p), h.receive_timestamp.to_bits(), h.transmit_timestamp.to_bits());
        if h.transmit_timestamp == h.receive_timestamp {
            t.bad(line);
        } else {
            t.good(line);
        }
    }
    t.outcome("packets of interleaving daemons", "no interleaved request and no reply of a server with interleaved mode on")
}

/// `server-interleaved-detect` (R9769-2-server-detect, -one-shot,
/// -fallback): a daemon server answers in interleaved mode only when it has
/// interleaved mode on, the request's receive and transmit timestamps
/// differ and its origin is a receive timestamp that server handed that
/// client address in an earlier reply and has not yet answered an
/// interleaved request for; every other reply is basic (origin = the
/// request's transmit timestamp; `server-echoes-origin` judges its values).
pub fn server_detect(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut handed: BTreeMap<(SocketAddr, IpAddr), BTreeSet<u64>> = BTreeMap::new();
    let mut used: BTreeMap<(SocketAddr, IpAddr), BTreeSet<u64>> = BTreeMap::new();
    let mut pairs: Vec<_> = a.server_pairs.iter().collect();
    pairs.sort_by(|x, y| a.pk(x.reply).sent_t_s.total_cmp(&a.pk(y.reply).sent_t_s));
    for pair in pairs {
        let (req, rep) = (a.pk(pair.request), a.pk(pair.reply));
        let (Some(q), Some(h)) = (req.header, rep.header) else { continue };
        let key = (rep.src, rep.dst.ip());
        let interleaved = h.origin_timestamp != q.transmit_timestamp && !q.receive_timestamp.is_zero() && h.origin_timestamp == q.receive_timestamp;
        if interleaved {
            let cite = || format!("{} answering {} ({})", rep.cite(), req.cite(), a.flow_name(rep));
            let org = q.origin_timestamp.to_bits();
            let why = if !interleaving_server(a, rep.src.ip()) {
                Some("interleaved reply from a server with interleaved mode off".to_string())
            } else if q.receive_timestamp == q.transmit_timestamp {
                Some("the request's receive timestamp equals its transmit timestamp".to_string())
            } else if !handed.get(&key).is_some_and(|s| s.contains(&org)) {
                Some(format!("the request's origin {org:016x} is no receive timestamp this server gave that client"))
            } else if used.get(&key).is_some_and(|s| s.contains(&org)) {
                Some(format!("receive timestamp {org:016x} already answered an interleaved request"))
            } else {
                None
            };
            match why {
                Some(w) => t.bad(|| format!("{}: {w}", cite())),
                None => t.good(|| format!("{}: interleaved, origin {org:016x} was handed out and is used once", cite())),
            }
            used.entry(key).or_default().insert(org);
        }
        if h.stratum != 0 {
            handed.entry(key).or_default().insert(h.receive_timestamp.to_bits());
        }
    }
    t.outcome("interleaved replies of daemon servers", "no daemon server answered in interleaved mode")
}

/// `client-interleaved-request` (R9769-2-client-limit, R9769-6-no-leak):
/// a daemon's interleaved request names as origin the receive timestamp of
/// a reply that host received from that server before it was sent (on any
/// of its ports: RFC 9769 does not tie the exchange to a socket, and
/// chronyd sends every request from a fresh port, its server keying
/// interleaved state by address); its
/// receive timestamp differs from its transmit timestamp and is not the
/// client's arrival reading of that reply (§6: random, no leak); and at most
/// [`REQUESTS_PER_REPLY_MAX`] requests name the same reply.
pub fn client_request(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut naming: BTreeMap<(IpAddr, SocketAddr, u64), usize> = BTreeMap::new();
    for (_, p, q) in interleaved_requests(a) {
        let org = q.origin_timestamp;
        let named = a.client_replies.iter().map(|c| a.pk(c.packet)).find(|r| {
            r.src == p.dst && r.dst.ip() == p.src.ip() && r.received_t_s.is_some_and(|at| at <= p.sent_t_s) && r.header.is_some_and(|h| h.receive_timestamp == org)
        });
        let count = naming.entry((p.src.ip(), p.dst, org.to_bits())).or_insert(0);
        *count += 1;
        let cite = || format!("{} ({})", p.cite(), a.flow_name(p));
        let why = match named {
            None => Some(format!("origin {:016x} is the receive timestamp of no reply that host received from that server", org.to_bits())),
            Some(_) if q.receive_timestamp == q.transmit_timestamp => Some("receive timestamp equals transmit timestamp".to_string()),
            Some(r) if r.receiver_local.is_some_and(|l| secs(q.receive_timestamp.resolve(l) - l).abs() < LEAK_WINDOW_S) => {
                Some(format!("receive timestamp {:016x} is the client's arrival reading of {} (leaked, RFC 9769 §6)", q.receive_timestamp.to_bits(), r.cite()))
            }
            Some(_) if *count > REQUESTS_PER_REPLY_MAX => Some(format!("request {} naming the same reply (at most {REQUESTS_PER_REPLY_MAX})", *count)),
            Some(_) => None,
        };
        match why {
            Some(w) => t.bad(|| format!("{}: {w}", cite())),
            None => t.good(|| format!("{}: names a received reply, random receive timestamp {:016x}", cite(), q.receive_timestamp.to_bits())),
        }
    }
    t.outcome("interleaved requests of daemon clients", "no daemon client sent an interleaved request")
}

/// Within this of the wire value, a timestamp in a `sample` event is the same.
const SAME_S: f64 = 1e-8;

/// `client-interleaved-sample` (R9769-2-client-checks, R9769-2-timestamps):
/// a daemon's interleaved sample (`"interleaved": true`) comes from an
/// interleaved reply it received, and uses the draft's first set of
/// timestamps: T1 the send reading of the previous request, T2 the receive
/// timestamp of the previous reply (the origin of the request the reply
/// answers), T3 the interleaved reply's transmit timestamp and T4 the
/// arrival reading of the previous reply.
pub fn client_sample(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let same = |ts: NtpTimestamp, want: ntplab_proto::time::NtpTime| secs(ts.resolve(want) - want).abs() <= SAME_S;
    for e in a.trace.events.iter().filter(|e| e.kind == "sample") {
        if e.details.get("interleaved").and_then(serde_json::Value::as_bool) != Some(true) {
            continue;
        }
        let (Some(host), Some(source)) = (e.host.as_deref().and_then(|h| a.ctx.host_named(h)), e.source()) else { continue };
        let time = |k: &str| e.details.get(k).and_then(|v| v.as_str()).and_then(|v| ntplab_proto::time::NtpTime::parse_rfc3339(v).ok());
        let cite = || format!("events.jsonl:{} ({} from {} at {:.3} s)", e.line, host.name, source, e.t_s);
        let (Some(t1), Some(t2), Some(t3), Some(t4)) = (time("t1"), time("t2"), time("t3"), time("t4")) else {
            t.bad(|| format!("{}: interleaved sample without t1..t4", cite()));
            continue;
        };
        // The interleaved reply handled at the event.
        let reply: Option<&ClientReply> = a.client_replies.iter().rev().find(|c| {
            let p = a.pk(c.packet);
            let req = c.request.and_then(|r| a.pk(r).header);
            p.src == source
                && p.dst.ip() == host.address
                && p.received_t_s.is_some_and(|r| r <= e.t_s + 1e-6 && r >= e.t_s - 2.0)
                && p.header.zip(req).is_some_and(|(h, q)| !q.receive_timestamp.is_zero() && h.origin_timestamp == q.receive_timestamp)
        });
        let Some((rep, req)) = reply.and_then(|c| Some((a.pk(c.packet), a.pk(c.request?)))) else {
            t.bad(|| format!("{}: no interleaved reply from that source arrived by then", cite()));
            continue;
        };
        let (Some(h), Some(q)) = (rep.header, req.header) else { continue };
        // The previous exchange: the reply whose receive timestamp the request named, and its request.
        let Some(Some((prev_req, prev_rep))) = reply.and_then(|c| super::interleaved_previous(a, c)) else {
            t.bad(|| format!("{}: {} answers a request naming no reply in the trace", cite(), rep.cite()));
            continue;
        };
        let mut wrong = Vec::new();
        if !same(h.transmit_timestamp, t3) {
            wrong.push(format!("T3 {} is not {}'s transmit timestamp", t3.rfc3339(), rep.cite()));
        }
        if !same(q.origin_timestamp, t2) {
            wrong.push(format!("T2 {} is not the previous reply's receive timestamp", t2.rfc3339()));
        }
        if prev_rep.receiver_local.is_none_or(|l| secs(l - t4).abs() > SAME_S) {
            wrong.push(format!("T4 {} is not the arrival of {}", t4.rfc3339(), prev_rep.cite()));
        }
        if secs(prev_req.sender_local - t1).abs() > 1e-3 {
            wrong.push(format!("T1 {} is not the send time of {}", t1.rfc3339(), prev_req.cite()));
        }
        if wrong.is_empty() {
            t.good(|| format!("{}: {} completes the exchange of {} and {}", cite(), rep.cite(), prev_req.cite(), prev_rep.cite()));
        } else {
            t.bad(|| format!("{}: {}", cite(), wrong.join("; ")));
        }
    }
    t.outcome("interleaved samples of daemon clients", "no daemon client logged an interleaved sample")
}
