//! Checks of NTS-protected NTPv4 (RFC 8915 §5) over the datagrams of a run.
//! The extension fields are read here from the octets (type, length, body),
//! not through the implementation's own NTS code, so that a misread field in
//! the core cannot hide from them. Encrypted contents cannot be read from a
//! trace; what the checks see is the plaintext layout every packet must have.

use super::{Analysis, Outcome, Tally};
use crate::trace::PacketRec;
use ntplab_proto::wire::v4::Mode;
use std::collections::BTreeMap;

/// Unique Identifier (RFC 8915 §5.3).
pub const EF_UID: u16 = 0x0104;
/// NTS Cookie (§5.4).
pub const EF_COOKIE: u16 = 0x0204;
/// NTS Cookie Placeholder (§5.5).
pub const EF_PLACEHOLDER: u16 = 0x0304;
/// NTS Authenticator and Encrypted Extension Fields (§5.6).
pub const EF_AUTH: u16 = 0x0404;

/// One extension field: type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ef<'a> {
    /// Field type.
    pub kind: u16,
    /// Body (after the 4-octet header, padding included).
    pub body: &'a [u8],
}

/// The extension fields after the 48-octet header; `None` when they do not
/// decode: in NTPv4 a length below 16, no multiple of 4 or past the end (RFC
/// 7822); in NTPv5 (NTS for NTPv5, draft-ietf-ntp-ntpv5-07 §7, §11) a
/// length below 4 or, aligned to 4, past the end.
pub fn fields(bytes: &[u8]) -> Option<Vec<Ef<'_>>> {
    let v5 = bytes.first().is_some_and(|b| (b >> 3) & 7 == 5);
    let mut out = Vec::new();
    let mut rest = bytes.get(48..)?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return None;
        }
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let step = if v5 { len.div_ceil(4) * 4 } else { len };
        let too_short = if v5 { len < 4 } else { len < 16 || len % 4 != 0 };
        if too_short || step > rest.len() {
            return None;
        }
        out.push(Ef { kind, body: &rest[4..len] });
        rest = &rest[step..];
    }
    Some(out)
}

/// The mode of an NTPv4 datagram (its parsed header) or an NTPv5 one (its
/// first octet, draft-ietf-ntp-ntpv5-07 §6): NTS protects both.
fn mode(p: &PacketRec) -> Option<Mode> {
    p.mode().or_else(|| (p.is_v5() && p.bytes.len() >= 48).then(|| Mode::from_bits(p.bytes[0] & 7)))
}

fn count(f: &[Ef<'_>], kind: u16) -> usize {
    f.iter().filter(|e| e.kind == kind).count()
}

fn first<'a>(f: &'a [Ef<'a>], kind: u16) -> Option<&'a [u8]> {
    f.iter().find(|e| e.kind == kind).map(|e| e.body)
}

/// NTS requests the daemon sent (mode 3 with an authenticator), with their fields.
fn daemon_nts_requests<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = (&'b PacketRec, Vec<Ef<'b>>)> {
    a.trace.packets.iter().filter(move |p| a.ctx.is_daemon(p.src.ip()) && mode(p) == Some(Mode::Client)).filter_map(|p| {
        let f = fields(&p.bytes)?;
        (count(&f, EF_AUTH) > 0 || count(&f, EF_COOKIE) > 0).then_some((p, f))
    })
}

/// Daemon replies whose request carried a Unique Identifier: (request, reply).
fn uid_pairs<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = (&'b PacketRec, &'b PacketRec)> {
    a.server_pairs.iter().map(|pair| (a.pk(pair.request), a.pk(pair.reply))).filter(|(req, _)| {
        fields(&req.bytes).is_some_and(|f| count(&f, EF_UID) > 0)
    })
}

fn is_ntsn(p: &PacketRec) -> bool {
    p.header.is_some_and(|h| h.stratum == 0 && &h.reference_id.0 == b"NTSN")
}

/// R8915-5.3-uid: each NTS request carries one Unique Identifier of at least
/// 32 octets, never repeated.
pub fn uid_length(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut seen: BTreeMap<&[u8], &PacketRec> = BTreeMap::new();
    for (p, f) in daemon_nts_requests(a) {
        let uids: Vec<&[u8]> = f.iter().filter(|e| e.kind == EF_UID).map(|e| e.body).collect();
        match uids.as_slice() {
            [uid] if uid.len() < 32 => t.bad(|| format!("{} ({}): a {}-octet Unique Identifier", p.cite(), a.flow_name(p), uid.len())),
            [uid] => match seen.insert(uid, p) {
                Some(earlier) => t.bad(|| format!("{}: the Unique Identifier of {} again", p.cite(), earlier.cite())),
                None => t.good(|| format!("{}: {}-octet Unique Identifier", p.cite(), uid.len())),
            },
            _ => t.bad(|| format!("{} ({}): {} Unique Identifier fields", p.cite(), a.flow_name(p), uids.len())),
        }
    }
    t.outcome("NTS requests of the daemon", "the daemon sent no NTS request")
}

/// R8915-5.3-uid-always: every reply of the daemon to a request with a
/// Unique Identifier echoes it (NTSN included).
pub fn uid_echo(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (req, rep) in uid_pairs(a) {
        let want = fields(&req.bytes).and_then(|f| first(&f, EF_UID).map(<[u8]>::to_vec));
        let got = fields(&rep.bytes).and_then(|f| first(&f, EF_UID).map(<[u8]>::to_vec));
        if got.is_some() && got == want {
            t.good(|| format!("{} echoes the identifier of {}", rep.cite(), req.cite()));
        } else {
            t.bad(|| format!("{} ({}) does not echo the identifier of {}", rep.cite(), a.flow_name(rep), req.cite()));
        }
    }
    t.outcome("daemon replies to requests with a Unique Identifier", "no request with a Unique Identifier was answered by the daemon")
}

/// R8915-5.7-client-req: an NTS request carries exactly one Unique
/// Identifier, one cookie and one authenticator, the authenticator last.
pub fn client_request_shape(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, f) in daemon_nts_requests(a) {
        let (u, c, x) = (count(&f, EF_UID), count(&f, EF_COOKIE), count(&f, EF_AUTH));
        let last = f.last().map(|e| e.kind);
        if (u, c, x) == (1, 1, 1) && last == Some(EF_AUTH) {
            t.good(|| format!("{}: UID, cookie, {} placeholder(s), authenticator", p.cite(), count(&f, EF_PLACEHOLDER)));
        } else {
            t.bad(|| format!("{} ({}): {u} UID, {c} cookie, {x} authenticator field(s), last field {last:04x?}", p.cite(), a.flow_name(p)));
        }
    }
    t.outcome("NTS requests of the daemon", "the daemon sent no NTS request")
}

/// R8915-5.4-cookie-modes: cookie and authenticator fields only in mode 3 and 4.
pub fn ef_modes(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip())) {
        let Some(f) = fields(&p.bytes) else { continue };
        if count(&f, EF_COOKIE) + count(&f, EF_AUTH) == 0 {
            continue;
        }
        match mode(p) {
            Some(Mode::Client | Mode::Server) => t.good(|| format!("{}: NTS fields in mode {:?}", p.cite(), mode(p))),
            m => t.bad(|| format!("{} ({}): cookie or authenticator in mode {m:?}", p.cite(), a.flow_name(p))),
        }
    }
    t.outcome("datagrams of the daemon with NTS fields", "the daemon sent no NTS field")
}

/// R8915-8.4-no-amp: a reply to an NTS request is no longer than the request.
pub fn no_amplification(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (req, rep) in uid_pairs(a) {
        if rep.bytes.len() <= req.bytes.len() {
            t.good(|| format!("{}: {} octets for {} ({} octets)", rep.cite(), rep.bytes.len(), req.cite(), req.bytes.len()));
        } else {
            t.bad(|| format!("{}: {} octets for {} ({} octets)", rep.cite(), rep.bytes.len(), req.cite(), req.bytes.len()));
        }
    }
    t.outcome("daemon replies to NTS requests", "no NTS request was answered by the daemon")
}

/// R8915-5.7-cookie-reuse: a client never sends the same cookie twice.
pub fn cookie_not_reused(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut seen: BTreeMap<(std::net::IpAddr, Vec<u8>), &PacketRec> = BTreeMap::new();
    for (p, f) in daemon_nts_requests(a) {
        let Some(cookie) = first(&f, EF_COOKIE) else { continue };
        match seen.insert((p.src.ip(), cookie.to_vec()), p) {
            Some(earlier) => t.bad(|| format!("{} ({}): the cookie of {} again", p.cite(), a.flow_name(p), earlier.cite())),
            None => t.good(|| format!("{}: a cookie not sent before", p.cite())),
        }
    }
    t.outcome("cookies sent by the daemon", "the daemon sent no cookie")
}

/// R8915-5.5-placeholder: placeholders only in requests with a cookie, each
/// as long as the cookie, zero-filled.
pub fn placeholder_shape(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip())) {
        let Some(f) = fields(&p.bytes) else { continue };
        let holders: Vec<&[u8]> = f.iter().filter(|e| e.kind == EF_PLACEHOLDER).map(|e| e.body).collect();
        if holders.is_empty() {
            continue;
        }
        let cookie = first(&f, EF_COOKIE);
        let fine = mode(p) == Some(Mode::Client)
            && cookie.is_some_and(|c| holders.iter().all(|h| h.len() == c.len() && h.iter().all(|b| *b == 0)));
        if fine {
            t.good(|| format!("{}: {} placeholder(s) as long as the cookie", p.cite(), holders.len()));
        } else {
            t.bad(|| format!("{} ({}): placeholders without a cookie, of another length, non-zero, or not in a request", p.cite(), a.flow_name(p)));
        }
    }
    t.outcome("datagrams of the daemon with placeholders", "the daemon sent no cookie placeholder")
}

/// R8915-5.7-placeholders: at most 7 placeholders, and a request stays within 1280 octets.
pub fn placeholder_count(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, f) in daemon_nts_requests(a) {
        let n = count(&f, EF_PLACEHOLDER);
        if n == 0 {
            continue;
        }
        if n <= 7 && p.bytes.len() <= 1280 {
            t.good(|| format!("{}: {n} placeholder(s), {} octets", p.cite(), p.bytes.len()));
        } else {
            t.bad(|| format!("{} ({}): {n} placeholders, {} octets", p.cite(), a.flow_name(p), p.bytes.len()));
        }
    }
    t.outcome("NTS requests of the daemon with placeholders", "the daemon asked for no cookie with placeholders")
}

/// R8915-5.7-ntsn: an NTSN kiss carries the Unique Identifier and neither a
/// cookie nor an authenticator.
pub fn ntsn_shape(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip()) && is_ntsn(p)) {
        let f = fields(&p.bytes).unwrap_or_default();
        if count(&f, EF_UID) == 1 && count(&f, EF_COOKIE) + count(&f, EF_AUTH) == 0 {
            t.good(|| format!("{}: NTSN with the identifier only", p.cite()));
        } else {
            t.bad(|| format!("{} ({}): NTSN with {} UID, {} cookie, {} authenticator field(s)", p.cite(), a.flow_name(p), count(&f, EF_UID), count(&f, EF_COOKIE), count(&f, EF_AUTH)));
        }
    }
    t.outcome("NTSN kisses of the daemon", "the daemon sent no NTSN")
}

/// R8915-5.7-server-resp: a reply to an NTS request that is not a kiss
/// carries the identifier and one authenticator last, and no cookie in the
/// clear (new cookies travel encrypted).
pub fn server_response_shape(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (req, rep) in uid_pairs(a) {
        let Some(rf) = fields(&req.bytes) else { continue };
        if count(&rf, EF_AUTH) == 0 || rep.header.is_none_or(|h| h.stratum == 0) {
            continue;
        }
        let f = fields(&rep.bytes).unwrap_or_default();
        let ok = count(&f, EF_UID) == 1 && count(&f, EF_AUTH) == 1 && f.last().map(|e| e.kind) == Some(EF_AUTH) && count(&f, EF_COOKIE) == 0;
        if ok {
            t.good(|| format!("{}: UID and authenticator, cookies encrypted", rep.cite()));
        } else {
            t.bad(|| format!("{} ({}) answers {}: {} UID, {} authenticator, {} plain cookie field(s)", rep.cite(), a.flow_name(rep), req.cite(), count(&f, EF_UID), count(&f, EF_AUTH), count(&f, EF_COOKIE)));
        }
    }
    t.outcome("daemon replies to NTS requests", "no NTS request was answered with time by the daemon")
}

/// The `nts_ke` events (a daemon's NTS-KE results), in time order.
fn ke_events<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = &'b crate::trace::EventRec> {
    a.trace.events.iter().filter(|e| e.kind == "nts_ke")
}

fn ke_ok(e: &crate::trace::EventRec) -> bool {
    e.details.get("error").is_none_or(serde_json::Value::is_null)
}

fn ke_cite(e: &crate::trace::EventRec) -> String {
    format!("events.jsonl:{} ({} at {:.3} s)", e.line, e.host.as_deref().unwrap_or("?"), e.t_s)
}

/// R8915-4.1.5-aead / -siv: every successful key establishment agreed on one
/// AEAD the client offers (15, 17 or 30).
pub fn ke_aead(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for e in ke_events(a).filter(|e| ke_ok(e)) {
        match e.details.get("aead").and_then(serde_json::Value::as_u64) {
            Some(id @ (15 | 17 | 30)) => t.good(|| format!("{}: AEAD {id}", ke_cite(e))),
            other => t.bad(|| format!("{}: AEAD {other:?}", ke_cite(e))),
        }
    }
    t.outcome("successful NTS key establishments", "no NTS key establishment succeeded")
}

/// R8915-4.1.6-cookies: a successful key establishment brings 8 cookies.
pub fn ke_cookies(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for e in ke_events(a).filter(|e| ke_ok(e)) {
        let n = e.details.get("cookies").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if n == 8 {
            t.good(|| format!("{}: 8 cookies", ke_cite(e)));
        } else {
            t.bad(|| format!("{}: {n} cookies", ke_cite(e)));
        }
    }
    t.outcome("successful NTS key establishments", "no NTS key establishment succeeded")
}

/// R8915-3-cert / R8915-4.1.3-error-client: after a failed key establishment
/// (certificate refused, Error record, no answer) the client sends that
/// source no NTS request until a key establishment succeeds.
pub fn no_ntp_after_failed_ke(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let kes: Vec<&crate::trace::EventRec> = ke_events(a).collect();
    for (i, e) in kes.iter().enumerate() {
        if ke_ok(e) {
            continue;
        }
        let (Some(host), Some(source)) = (e.host.as_deref(), e.source()) else { continue };
        let Some(client) = a.ctx.host_named(host).map(|h| h.address) else { continue };
        // Until this source's next successful KE (or the end).
        let until = kes[i + 1..].iter().find(|k| k.host.as_deref() == Some(host) && k.source() == Some(source) && ke_ok(k)).map_or(f64::INFINITY, |k| k.t_s);
        let sent = daemon_nts_requests(a).find(|(p, _)| p.src.ip() == client && p.dst.ip() == source.ip() && p.sent_t_s > e.t_s && p.sent_t_s < until);
        match sent {
            Some((p, _)) => t.bad(|| format!("{} failed, yet {} is an NTS request to {source} before the next success", ke_cite(e), p.cite())),
            None => t.good(|| format!("{}: failed; no NTS request to {source} until the next success", ke_cite(e))),
        }
    }
    t.outcome("failed NTS key establishments", "no NTS key establishment failed")
}

/// R8915-4.2-backoff / R8915-5.7-ke-loop: key establishments of a source
/// that no authentic time followed back off exponentially. Authentic time is
/// a reply of the source the client took (a `sample` event, or a
/// `source_reply` with a sample or a rejection: an NTS client reports no
/// other reply but kisses; the simulator writes a sample as a `sample` event
/// only); it ends a run
/// of attempts, and nothing else does (RFC 8915 §4.2: the retry interval is
/// not reset before a successful key establishment has been followed by a
/// successful use of the Next Protocol).
/// - A run of failed attempts: the n-th gap is at least the first gap times
///   1.5^(n-1) (up to an hour).
/// - An attempt after a successful one in the run (the NTP server NAKed or
///   never answered its keys): at least 10 × 1.5^(n-1) s (up to an hour)
///   after it for the run's n-th retry, the RFC's suggested schedule, less
///   1 s for the successful attempt's own length (the trace has attempt
///   ends only). Such retries come at polls, so the first gap cannot be the
///   measure. Gaps after a failed attempt in such a run are not judged: a
///   timed-out attempt ends 10 s after its start.
pub fn ke_backoff(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut runs: BTreeMap<(String, String), Vec<&crate::trace::EventRec>> = BTreeMap::new();
    let key = |e: &crate::trace::EventRec| (e.host.clone().unwrap_or_default(), e.source().map(|s| s.to_string()).unwrap_or_default());
    for e in &a.trace.events {
        if e.kind == "sample" || e.kind == "source_reply" && ["Sample", "Rejected"].iter().any(|k| e.source_event().starts_with(k)) {
            runs.remove(&key(e));
            continue;
        }
        if e.kind != "nts_ke" {
            continue;
        }
        let run = runs.entry(key(e)).or_default();
        run.push(e);
        let n = run.len() - 1;
        if n == 0 {
            continue;
        }
        let gap = run[n].t_s - run[n - 1].t_s;
        if ke_ok(run[n - 1]) {
            let want = (10.0 * 1.5f64.powi(n as i32 - 1)).min(3600.0);
            if gap + 1.0 >= want {
                t.good(|| format!("{}: attempt {} after {gap:.1} s, after a successful one that no authentic time followed", ke_cite(e), n + 1));
            } else {
                t.bad(|| format!("{}: attempt {} only {gap:.1} s after a successful one that no authentic time followed (retry {n}, want >= {want:.1} s)", ke_cite(e), n + 1));
            }
            continue;
        }
        if n < 2 || run.iter().any(|k| ke_ok(k)) {
            continue;
        }
        let first_gap = run[1].t_s - run[0].t_s;
        let want = (first_gap * 1.5f64.powi(n as i32 - 1)).min(3600.0);
        if gap + 1e-6 >= want {
            t.good(|| format!("{}: attempt {} after {gap:.1} s (first gap {first_gap:.1} s)", ke_cite(e), n + 1));
        } else {
            t.bad(|| format!("{}: attempt {} only {gap:.1} s after the previous (first gap {first_gap:.1} s, want >= {want:.1} s)", ke_cite(e), n + 1));
        }
    }
    t.outcome("retries after failed NTS key establishments or successful ones no authentic time followed", "no source ran NTS key establishment again without authentic time in between (three times in a row if all failed)")
}

/// Datagrams an on-path attacker made that reached a daemon host, of these kinds.
fn attacks<'b>(a: &'b Analysis<'_>, kinds: &'b [&str]) -> impl Iterator<Item = (&'b PacketRec, &'b str)> {
    a.trace.attacks.iter().filter_map(move |p| {
        let kind = p.attack.as_deref()?;
        (kinds.contains(&kind) && p.delivered() && a.ctx.is_daemon(p.dst.ip())).then_some((p, kind))
    })
}

/// "modify 12, strip 9, ...": how many of each kind.
fn attempts<'b>(it: impl Iterator<Item = (&'b PacketRec, &'b str)>) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, k) in it {
        *n.entry(k).or_default() += 1;
    }
    n.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Adds the attempt counts to a passing outcome's evidence.
fn with_attempts(mut o: Outcome, counts: String) -> Outcome {
    if o.status == super::Status::Pass {
        o.evidence.insert(0, format!("attacker datagrams delivered: {counts}"));
    }
    o
}

/// Kinds of attacker datagrams that must never become a sample.
const FORGED: &[&str] = &["modify", "strip", "replay", "reorder", "forge"];

/// R8915-5.7-client-verify / R8915-5.6-ad: no datagram an on-path attacker
/// forged, modified (one header bit flipped), stripped of its authenticator,
/// replayed or held back and reordered is taken as a sample. A sample comes
/// from the last datagram, real or not, that reached its host from its source
/// within 2 s before it with exactly its T2 and T3. (An appended field after
/// the authenticator leaves the authenticated time intact: see
/// [`unauth_ef_ignored`].)
pub fn attack_no_sample(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut taken: BTreeMap<usize, String> = BTreeMap::new();
    let near = |ts: ntplab_proto::time::NtpTimestamp, want: ntplab_proto::time::NtpTime| super::secs(ts.resolve(want) - want).abs() <= super::SAMPLE_ROUNDING_S;
    // Without forged datagrams no sample can be one (and the samples' scan
    // of every packet is skipped).
    let any_forged = a.trace.attacks.iter().any(|p| p.attack.as_deref().is_some_and(|k| FORGED.contains(&k)));
    let samples = if any_forged { super::client_samples(a) } else { Vec::new() };
    for s in samples.into_iter().flatten() {
        let fits = |p: &PacketRec| {
            p.src == s.source
                && p.dst.ip() == s.host.address
                && p.received_t_s.is_some_and(|r| r <= s.event.t_s + 1e-6 && r >= s.event.t_s - 2.0)
                && p.header.is_some_and(|h| near(h.receive_timestamp, s.t2) && near(h.transmit_timestamp, s.t3))
        };
        let last_real = a.trace.packets.iter().filter(|p| fits(p)).filter_map(|p| p.received_t_s).fold(f64::NEG_INFINITY, f64::max);
        let mut forged = a.trace.attacks.iter().enumerate().filter(|(_, p)| fits(p) && p.attack.as_deref().is_some_and(|k| FORGED.contains(&k)));
        if let Some((i, _)) = forged.rfind(|(_, p)| p.received_t_s.is_some_and(|r| r >= last_real)) {
            taken.insert(i, s.cite());
        }
    }
    for (i, p) in a.trace.attacks.iter().enumerate() {
        let Some(kind) = p.attack.as_deref().filter(|k| FORGED.contains(k)) else { continue };
        if !p.delivered() || !a.ctx.is_daemon(p.dst.ip()) {
            continue;
        }
        match taken.get(&i) {
            Some(sample) => t.bad(|| format!("{} ({kind}, {}) became the sample {sample}", p.cite(), a.flow_name(p))),
            None => t.good(|| format!("{} ({kind}) was not taken as a sample", p.cite())),
        }
    }
    with_attempts(t.outcome("attacker datagrams delivered to daemons", "no on-path attacker forged or tampered with a datagram to a daemon"), attempts(attacks(a, FORGED)))
}

/// The cookies in fields after the authenticator.
fn unauthenticated_cookies(bytes: &[u8]) -> Vec<Vec<u8>> {
    let f = fields(bytes).unwrap_or_default();
    let Some(auth) = f.iter().position(|e| e.kind == EF_AUTH) else { return Vec::new() };
    f[auth + 1..].iter().filter(|e| e.kind == EF_COOKIE).map(|e| e.body.to_vec()).collect()
}

/// R8915-5.7-unauth-ef: a cookie an on-path attacker appended after the
/// authenticator of a reply is never sent in a later request of that host.
pub fn unauth_ef_ignored(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, _) in attacks(a, &["append"]) {
        for cookie in unauthenticated_cookies(&p.bytes) {
            let used = daemon_nts_requests(a).find(|(q, f)| q.src.ip() == p.dst.ip() && q.sent_t_s >= p.sent_t_s && first(f, EF_COOKIE) == Some(cookie.as_slice()));
            match used {
                Some((q, _)) => t.bad(|| format!("{} sends the cookie the attacker appended to {} after its authenticator", q.cite(), p.cite())),
                None => t.good(|| format!("the cookie appended to {} after its authenticator was never sent", p.cite())),
            }
        }
    }
    with_attempts(t.outcome("unauthenticated cookies appended to replies", "no attacker appended a field after a reply's authenticator"), attempts(attacks(a, &["append"])))
}

/// R8915-5.7-kod-uid: a DENY kiss forged without the request's Unique
/// Identifier neither drops the source (no `source_dropped` within a second)
/// nor stops the client polling it (a later request, unless the run ends
/// within 2100 s).
pub fn kod_needs_uid(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (p, _) in attacks(a, &["forge_kod"]) {
        if fields(&p.bytes).is_some_and(|f| count(&f, EF_UID) > 0) {
            continue;
        }
        let at = p.received_t_s.unwrap_or(p.sent_t_s);
        let host = a.ctx.name(p.dst.ip());
        let dropped = a.trace.events.iter().find(|e| e.kind == "source_dropped" && e.host.as_deref() == Some(host.as_str()) && e.source() == Some(p.src) && e.t_s >= at - 1e-6 && e.t_s <= at + 1.0);
        let next = a.trace.packets.iter().find(|q| q.src.ip() == p.dst.ip() && q.dst == p.src && mode(q) == Some(Mode::Client) && q.sent_t_s > at);
        match (dropped, next) {
            (Some(e), _) => t.bad(|| format!("{} ({}): a forged kiss without the identifier dropped the source (events.jsonl:{})", p.cite(), a.flow_name(p), e.line)),
            (None, None) if at < a.ctx.duration_s - 2100.0 => t.bad(|| format!("{} ({}): no request to that source after a forged kiss without the identifier", p.cite(), a.flow_name(p))),
            (None, None) => {}
            (None, Some(q)) => t.good(|| format!("{}: ignored; the next request is {}", p.cite(), q.cite())),
        }
    }
    with_attempts(t.outcome("forged kisses without the identifier", "no attacker forged a kiss-o'-death"), attempts(attacks(a, &["forge_kod"])))
}

/// One NTS-KE record of an `nts_ke` event's `request` or `response`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeRec {
    kind: u64,
    critical: bool,
    len: u64,
    values: Vec<u64>,
}

fn ke_recs(v: Option<&serde_json::Value>) -> Option<Vec<KeRec>> {
    v?.as_array()?
        .iter()
        .map(|r| {
            Some(KeRec {
                kind: r.get("type")?.as_u64()?,
                critical: r.get("critical")?.as_bool()?,
                len: r.get("len")?.as_u64()?,
                values: r.get("values").and_then(|x| x.as_array()).map_or(Some(Vec::new()), |a| a.iter().map(serde_json::Value::as_u64).collect())?,
            })
        })
        .collect()
}

/// Successful key establishments that carry their records: (event, request, response).
fn transcripts<'b>(a: &'b Analysis<'_>) -> impl Iterator<Item = (&'b crate::trace::EventRec, Vec<KeRec>, Vec<KeRec>)> {
    ke_events(a).filter(|e| ke_ok(e)).filter_map(|e| Some((e, ke_recs(e.details.get("request"))?, ke_recs(e.details.get("response"))?)))
}

const KE_EOM: u64 = 0;
const KE_NPN: u64 = 1;
const KE_ERROR: u64 = 2;
const KE_WARNING: u64 = 3;
const KE_AEAD: u64 = 4;
const KE_COOKIE: u64 = 5;

/// A detail of a successful key establishment checked for one value.
fn ke_detail(a: &Analysis<'_>, key: &str, want: &str, what: &str) -> Outcome {
    let mut t = Tally::default();
    for e in ke_events(a).filter(|e| ke_ok(e) && e.details.get(key).is_some()) {
        match e.details.get(key).and_then(serde_json::Value::as_str) {
            Some(v) if v == want => t.good(|| format!("{}: {key} {v}", ke_cite(e))),
            other => t.bad(|| format!("{}: {key} {other:?}, not {want}", ke_cite(e))),
        }
    }
    t.outcome(what, "no NTS key establishment with its TLS details succeeded")
}

/// R8915-3-tls13: every NTS-KE session ran TLS 1.3.
pub fn ke_tls13(a: &Analysis<'_>) -> Outcome {
    ke_detail(a, "tls", "TLSv1_3", "NTS-KE sessions")
}

/// R8915-3-alpn: every NTS-KE session negotiated ALPN `ntske/1`.
pub fn ke_alpn(a: &Analysis<'_>) -> Outcome {
    ke_detail(a, "alpn", "ntske/1", "NTS-KE sessions")
}

fn count_kind(recs: &[KeRec], kind: u64) -> usize {
    recs.iter().filter(|r| r.kind == kind).count()
}

/// R8915-4-npn-once: the request and a response that is not an error each
/// carry exactly one Next Protocol record, critical.
pub fn ke_npn_once(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (e, req, resp) in transcripts(a) {
        for (side, recs) in [("request", &req), ("response", &resp)] {
            if side == "response" && count_kind(recs, KE_ERROR) > 0 {
                continue;
            }
            let npn: Vec<&KeRec> = recs.iter().filter(|r| r.kind == KE_NPN).collect();
            match npn.as_slice() {
                [r] if r.critical => t.good(|| format!("{}: one critical Next Protocol record in the {side}", ke_cite(e))),
                _ => t.bad(|| format!("{}: {} Next Protocol record(s) in the {side}, critical: {:?}", ke_cite(e), npn.len(), npn.iter().map(|r| r.critical).collect::<Vec<_>>())),
            }
        }
    }
    t.outcome("NTS-KE messages", "no NTS key establishment with its records succeeded")
}

/// R8915-4.1.1-eom / R8915-4-one-exchange: each request and response is one
/// message: End of Message exactly once, critical, empty, and last.
pub fn ke_eom(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (e, req, resp) in transcripts(a) {
        for (side, recs) in [("request", &req), ("response", &resp)] {
            let ok = count_kind(recs, KE_EOM) == 1 && recs.last().is_some_and(|r| r.kind == KE_EOM && r.critical && r.len == 0);
            if ok {
                t.good(|| format!("{}: the {side} ends with its only End of Message", ke_cite(e)));
            } else {
                t.bad(|| format!("{}: the {side} has {} End of Message record(s); last record {:?}", ke_cite(e), count_kind(recs, KE_EOM), recs.last()));
            }
        }
    }
    t.outcome("NTS-KE messages", "no NTS key establishment with its records succeeded")
}

/// R8915-4.1.2-subset (and §4.1.5's list rules): the request offers at least
/// one protocol and one AEAD; the response's protocols are among those
/// offered, and it names at most one AEAD, one offered.
pub fn ke_subset(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let values = |recs: &[KeRec], kind: u64| recs.iter().filter(|r| r.kind == kind).flat_map(|r| r.values.clone()).collect::<Vec<u64>>();
    for (e, req, resp) in transcripts(a) {
        let (offered, got) = (values(&req, KE_NPN), values(&resp, KE_NPN));
        let (aeads, chosen) = (values(&req, KE_AEAD), values(&resp, KE_AEAD));
        let ok = !offered.is_empty() && !aeads.is_empty() && got.iter().all(|p| offered.contains(p)) && chosen.len() <= 1 && chosen.iter().all(|x| aeads.contains(x));
        if ok {
            t.good(|| format!("{}: protocols {got:?} of {offered:?}, AEAD {chosen:?} of {aeads:?}", ke_cite(e)));
        } else {
            t.bad(|| format!("{}: protocols {got:?} answered to {offered:?}, AEAD {chosen:?} to {aeads:?}", ke_cite(e)));
        }
    }
    t.outcome("NTS-KE exchanges", "no NTS key establishment with its records succeeded")
}

/// R8915-4.1.4-warning (and the clients' side of §4.1.3 and §4.1.6): a
/// client's request carries no Error, Warning or New Cookie record.
pub fn ke_client_records(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (e, req, _) in transcripts(a) {
        let bad: Vec<u64> = req.iter().map(|r| r.kind).filter(|k| matches!(*k, KE_ERROR | KE_WARNING | KE_COOKIE)).collect();
        if bad.is_empty() {
            t.good(|| format!("{}: the request has no Error, Warning or New Cookie record", ke_cite(e)));
        } else {
            t.bad(|| format!("{}: the request carries record type(s) {bad:?}", ke_cite(e)));
        }
    }
    t.outcome("NTS-KE requests", "no NTS key establishment with its records succeeded")
}

/// The key id of an ntplab cookie: its first 4 octets, in the clear (the
/// daemon's cookie format, impl/proto/src/nts/cookie.rs; RFC 8915 §6 suggests it).
fn key_id(cookie: &[u8]) -> Option<[u8; 4]> {
    cookie.get(..4)?.try_into().ok()
}

/// R8915-6-key-rotation: the daemon server rotates its cookie keys (cookies
/// of more than one key id reach it), keeps answering cookies of a previous
/// key with time after a newer key's cookies appear, and never answers with
/// time a cookie of a key it has already answered NTSN for (an erased key does
/// not come back). Needs the daemon's cookie format (key id in the clear).
pub fn key_rotation(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let mut pairs: Vec<(&PacketRec, &PacketRec)> = uid_pairs(a).collect();
    pairs.sort_by(|x, y| x.0.sent_t_s.total_cmp(&y.0.sent_t_s));
    let mut order: BTreeMap<(std::net::IpAddr, [u8; 4]), usize> = BTreeMap::new();
    let mut newest: BTreeMap<std::net::IpAddr, usize> = BTreeMap::new();
    let mut nakked: std::collections::BTreeSet<(std::net::IpAddr, [u8; 4])> = std::collections::BTreeSet::new();
    for (req, rep) in pairs {
        let Some(f) = fields(&req.bytes) else { continue };
        let Some(kid) = first(&f, EF_COOKIE).and_then(key_id) else { continue };
        let server = rep.src.ip();
        let n = order.len();
        let rank = *order.entry((server, kid)).or_insert(n);
        let top = newest.entry(server).or_insert(rank);
        *top = (*top).max(rank);
        let newer = *top > rank;
        if is_ntsn(rep) {
            nakked.insert((server, kid));
            if newer {
                t.good(|| format!("{}: NTSN for a cookie of an older key {}", rep.cite(), hex4(kid)));
            }
        } else if rep.header.is_some_and(|h| h.stratum != 0) {
            if nakked.contains(&(server, kid)) {
                t.bad(|| format!("{} ({}): a cookie of key {} answered with time after that key was answered with NTSN", rep.cite(), a.flow_name(rep), hex4(kid)));
            } else if newer {
                t.good(|| format!("{}: a cookie of the previous key {} still accepted after a rotation", rep.cite(), hex4(kid)));
            }
        }
    }
    t.outcome("answers to cookies of keys older than the newest", "the daemon server's cookie key never rotated while cookies reached it")
}

fn hex4(k: [u8; 4]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// One NTS-KE attempt's longest time (the daemon's `KE_CLIENT_TIMEOUT`):
/// an NTS-KE started at a poll ends at most this long after it.
const KE_ATTEMPT_MAX_S: f64 = 10.0;

/// R8915-5.7-ntsn-react: an NTSN is unauthenticated, so a daemon client
/// that gets one answering its request waits until its next poll for a
/// valid NTS-protected response, and only if none came runs NTS-KE then
/// (RFC 8915 §5.7). For every server NTSN delivered to a daemon client whose
/// next NTS request to that server is in the trace:
/// - authentic time from the server (a reply with an Authenticator, not a
///   kiss) delivered between the NTSN and that next request: the wait was
///   answered, no NTS-KE is owed;
/// - otherwise a successful NTS-KE of that client must end after the
///   NAKed request left and at most [`KE_ATTEMPT_MAX_S`] after the next
///   request (the poll that found no valid response starts it), and the
///   first request after it must not be answered with NTSN again (the old
///   cookies were discarded).
pub fn ntsn_rekey(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (req, rep) in uid_pairs(a).filter(|(_, rep)| is_ntsn(rep) && rep.delivered() && a.ctx.is_daemon(rep.dst.ip())) {
        let at = rep.received_t_s.unwrap_or(rep.sent_t_s);
        let host = a.ctx.name(rep.dst.ip());
        let to_server = |p: &&PacketRec| p.src.ip() == req.src.ip() && p.dst == req.dst;
        let Some(next) = daemon_nts_requests(a).map(|(p, _)| p).filter(to_server).find(|p| p.sent_t_s > at) else { continue };
        let time = uid_pairs(a).map(|(_, r)| r).find(|r| {
            r.src == rep.src
                && r.dst == rep.dst
                && r.delivered()
                && r.header.is_some_and(|h| h.stratum != 0)
                && fields(&r.bytes).is_some_and(|f| count(&f, EF_AUTH) > 0)
                && r.received_t_s.is_some_and(|rx| rx > at && rx < next.sent_t_s)
        });
        if let Some(r) = time {
            t.good(|| format!("NTSN {} then authentic time {} before the next poll {}: no NTS-KE owed", rep.cite(), r.cite(), next.cite()));
            continue;
        }
        let ke = ke_events(a).find(|e| ke_ok(e) && e.host.as_deref() == Some(host.as_str()) && e.t_s >= req.sent_t_s && e.t_s <= next.sent_t_s + KE_ATTEMPT_MAX_S);
        let Some(e) = ke else {
            t.bad(|| format!("NTSN {}, no authentic time by the next poll {}, and no successful NTS-KE by {:.3} s", rep.cite(), next.cite(), next.sent_t_s + KE_ATTEMPT_MAX_S));
            continue;
        };
        let after = daemon_nts_requests(a).map(|(p, _)| p).filter(to_server).find(|p| p.sent_t_s > e.t_s);
        let answer = after.and_then(|p| a.server_pairs.iter().find(|s| a.pk(s.request).line == p.line)).map(|s| a.pk(s.reply));
        match (after, answer) {
            (Some(p), Some(r)) if is_ntsn(r) => t.bad(|| format!("{} answers {} (sent after the re-key at {}) with NTSN again", r.cite(), p.cite(), ke_cite(e))),
            _ => t.good(|| format!("NTSN {}, no authentic time by the next poll {}, then {}", rep.cite(), next.cite(), ke_cite(e))),
        }
    }
    t.outcome("NTSN kisses delivered to daemon clients and followed by another NTS request", "no daemon client got an NTSN and polled again")
}

/// R8915-4.1.7-server / R8915-4.1.8-port: a response names at most one
/// Server (ASCII, no zone identifier) and at most one Port; the client's
/// next NTS request after the key establishment goes to the named server
/// (else the NTS-KE server's address) and the named port (else the port the
/// source was configured with: the daemon's rule where RFC 8915 says 123,
/// which is what a source configured without a port gets).
pub fn ke_ntp_address(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    for (e, _, resp) in transcripts(a) {
        let (Some(host), Some(source)) = (e.host.as_deref().and_then(|h| a.ctx.host_named(h)), e.source()) else { continue };
        let servers: Vec<&serde_json::Value> = e.details.get("response").and_then(|r| r.as_array()).map(|r| r.iter().filter(|x| x.get("type").and_then(|v| v.as_u64()) == Some(6)).collect()).unwrap_or_default();
        let ports: Vec<u64> = resp.iter().filter(|r| r.kind == 7).flat_map(|r| r.values.clone()).collect();
        let name = servers.first().and_then(|s| s.get("text")).and_then(|v| v.as_str());
        if servers.len() > 1 || resp.iter().filter(|r| r.kind == 7).count() > 1 || name.is_some_and(|n| n.is_empty() || !n.is_ascii() || n.contains('%')) {
            t.bad(|| format!("{}: {} Server record(s) ({name:?}), ports {ports:?}", ke_cite(e), servers.len()));
            continue;
        }
        let ip = match name {
            Some(n) => match n.parse::<std::net::IpAddr>() {
                Ok(ip) => ip,
                Err(_) => continue, // A name: resolved by the client; not judged here.
            },
            None => source.ip(),
        };
        let port = ports.first().map_or(source.port(), |p| *p as u16);
        let want = std::net::SocketAddr::new(ip, port);
        let next = daemon_nts_requests(a).map(|(p, _)| p).find(|p| p.src.ip() == host.address && p.sent_t_s >= e.t_s);
        match next {
            Some(p) if p.dst == want => t.good(|| format!("{}: Server {name:?}, Port {:?}; the next request {} goes to {want}", ke_cite(e), ports.first(), p.cite())),
            Some(p) => t.bad(|| format!("{}: Server {name:?}, Port {:?}, yet the next request {} goes to {}, not {want}", ke_cite(e), ports.first(), p.cite(), p.dst)),
            None => {}
        }
    }
    t.outcome("successful NTS key establishments followed by an NTS request", "no NTS key establishment with its records was followed by an NTS request")
}

/// The NTPv5 Authentication NAK flag (draft-ietf-ntp-ntpv5-07 §6).
const V5_AUTH_NAK: u16 = 0x0004;
/// The NTPv5 draft's NTS-KE Next Protocol (draft-ietf-ntp-ntpv5-07 §11).
const NTPV5_DRAFT_PROTOCOL: u64 = 0x8001;

/// RV5-11-nts: NTS for NTPv5. An NTS-KE whose request asks for the NTPv5
/// draft (0x8001) alone is answered with 0x8001 (or no protocol); and every
/// daemon's answer to an NTPv5 request with NTS fields (a cookie and an
/// Authenticator) is NTPv5, exactly as long as the request, and echoes its
/// Unique Identifier either before an Authenticator (time) or, without one,
/// with stratum 0 and the Authentication NAK flag.
pub fn v5_nts(a: &Analysis<'_>) -> Outcome {
    let mut t = Tally::default();
    let values = |recs: &[KeRec], kind: u64| recs.iter().filter(|r| r.kind == kind).flat_map(|r| r.values.clone()).collect::<Vec<u64>>();
    for (e, req, resp) in transcripts(a) {
        if values(&req, KE_NPN) != [NTPV5_DRAFT_PROTOCOL] {
            continue;
        }
        match values(&resp, KE_NPN).as_slice() {
            [] | [NTPV5_DRAFT_PROTOCOL] => t.good(|| format!("{}: NTPv5 asked for, {:?} answered", ke_cite(e), values(&resp, KE_NPN))),
            other => t.bad(|| format!("{}: NTPv5 (0x8001) asked for, {other:?} answered", ke_cite(e))),
        }
    }
    let uid = |f: &[Ef<'_>]| first(f, EF_UID).map(<[u8]>::to_vec);
    // NTPv5 NTS requests by (client socket, client cookie).
    let mut requests = BTreeMap::new();
    for p in a.trace.packets.iter().filter(|p| p.is_v5() && mode(p) == Some(Mode::Client) && p.bytes.len() >= 48) {
        if let Some(f) = fields(&p.bytes).filter(|f| count(f, EF_COOKIE) == 1 && count(f, EF_AUTH) == 1) {
            requests.insert((p.src, p.bytes[24..32].to_vec()), (p, uid(&f)));
        }
    }
    for p in a.trace.packets.iter().filter(|p| a.ctx.is_daemon(p.src.ip()) && mode(p) == Some(Mode::Server) && p.bytes.len() >= 48) {
        let Some((r, asked)) = requests.get(&(p.dst, p.bytes[24..32].to_vec())) else { continue };
        let Some(f) = fields(&p.bytes).filter(|_| p.is_v5()) else {
            t.bad(|| format!("{}: answer to the NTPv5 NTS request {} is not NTPv5 or its fields do not decode", p.cite(), r.cite()));
            continue;
        };
        let uid_at = f.iter().position(|e| e.kind == EF_UID);
        let auth_at = f.iter().position(|e| e.kind == EF_AUTH);
        let flags = u16::from_be_bytes([p.bytes[14], p.bytes[15]]);
        let shape = match (uid_at, auth_at) {
            (Some(u), Some(x)) => u < x && x + 1 == f.len(),
            (Some(_), None) => p.bytes[1] == 0 && flags & V5_AUTH_NAK != 0,
            _ => false,
        };
        if shape && p.bytes.len() == r.bytes.len() && uid(&f) == *asked {
            t.good(|| format!("{}: {} octets, Unique Identifier echoed, {}", p.cite(), p.bytes.len(), if auth_at.is_some() { "authenticated" } else { "NAK" }));
        } else {
            t.bad(|| format!("{}: {} octets for a {}-octet request {}, Unique Identifier echoed: {}, fields {:x?}, flags {flags:#06x}", p.cite(), p.bytes.len(), r.bytes.len(), r.cite(), uid(&f) == *asked, f.iter().map(|e| e.kind).collect::<Vec<_>>()));
        }
    }
    t.outcome("NTS-KE exchanges asking for NTPv5 and answers to NTPv5 NTS requests", "no NTS-KE asked for NTPv5 and no NTPv5 NTS request was answered")
}
