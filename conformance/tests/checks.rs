//! Each check on hand-made trace fragments: one that passes, one that fails.
//! [`every_check_has_a_pass_and_a_fail_meta_test`] runs the table [`metas`]
//! and fails when a check of `CHECKS` has no entry there.

use ntplab_conformance::checks::{check, Analysis, Status, CHECKS};
use ntplab_conformance::trace::{Context, HostInfo, HostKind, Trace};
use ntplab_proto::time::NtpTime;

const START: &str = "2026-01-01T00:00:00Z";

fn ctx() -> Context {
    let daemon = |name: &str, addr: &str, has_sources: bool| HostInfo {
        name: name.into(),
        address: addr.parse().unwrap(),
        kind: HostKind::Daemon { serves: !has_sources, has_sources, interleaved: false, local_reference: false },
        noise_s: 0.0,
    };
    Context {
        start: NtpTime::parse_rfc3339(START).unwrap(),
        duration_s: 3600.0,
        hosts: vec![
            daemon("server", "10.0.0.1", false),
            daemon("client", "10.0.0.2", true),
            HostInfo {
                name: "liar".into(),
                address: "10.0.0.3".parse().unwrap(),
                kind: HostKind::Scripted { behavior: "falseticker".into(), falseticker_offset_s: Some(1.0) },
                noise_s: 0.0,
            },
            HostInfo {
                name: "honest".into(),
                address: "10.0.0.4".parse().unwrap(),
                kind: HostKind::Scripted { behavior: "falseticker".into(), falseticker_offset_s: Some(0.0) },
                noise_s: 0.0,
            },
        ],
    }
}

/// 48-octet NTPv4 header as hex.
fn hdr(li_vn_mode: u8, stratum: u8, refid: &str, org: u64, rx: u64, tx: u64) -> String {
    let mut b = vec![li_vn_mode, stratum, 6, 0xec];
    b.extend([0u8; 8]);
    b.extend(refid.as_bytes().iter().copied().chain([0u8; 4]).take(4));
    b.extend([0u8; 8]);
    for t in [org, rx, tx] {
        b.extend(t.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// NTP timestamp of START + s seconds (era 0, 2026).
fn ts(s: f64) -> u64 {
    let t = NtpTime::parse_rfc3339(START).unwrap() + ntplab_proto::time::NtpDuration::from_seconds_f64(s);
    t.to_timestamp().to_bits()
}

fn at(s: f64) -> String {
    (NtpTime::parse_rfc3339(START).unwrap() + ntplab_proto::time::NtpDuration::from_seconds_f64(s)).rfc3339().to_string()
}

/// One packets.jsonl line; times in seconds since START; `local_*` = clock readings.
#[allow(clippy::too_many_arguments)] // a trace line has this many fields
fn pkt(frame: u64, sent: f64, recv: f64, sender_local: f64, receiver_local: f64, src: &str, dst: &str, bytes: &str) -> String {
    format!(
        r#"{{"sent":"{}","sent_t_s":{sent},"received":"{}","received_t_s":{recv},"lost":null,"src":"{src}","dst":"{dst}","length":{},"sender_local":"{}","receiver_local":"{}","frame":{frame},"bytes":"{bytes}"}}"#,
        at(sent),
        at(recv),
        bytes.len() / 2,
        at(sender_local),
        at(receiver_local)
    )
}

const C: &str = "10.0.0.2:40000";
const S: &str = "10.0.0.1:123";

/// A clean exchange: client (clock +10 ms) asks at 1 s; 1 ms out, 3 ms back; server perfect.
fn exchange(reply_org: u64) -> String {
    let req = pkt(1, 1.0, 1.001, 1.010, 1.001, C, S, &hdr(0x23, 0, "", 0, 0, 0xabcdef0123456789));
    let rep = pkt(2, 1.001, 1.004, 1.001, 1.014, S, C, &hdr(0x24, 1, "GPS", reply_org, ts(1.001), ts(1.001)));
    format!("{req}\n{rep}\n")
}

fn run(id: &str, packets: &str, events: &str) -> (Status, String) {
    let trace = Trace::from_strs(packets, events, "").unwrap();
    let c = ctx();
    let a = Analysis::new(&c, &trace);
    let o = (check(id).unwrap().run)(&a);
    (o.status, o.reason)
}

#[test]
fn server_echo_pass_and_fail() {
    assert_eq!(run("server-echoes-origin", &exchange(0xabcdef0123456789), "").0, Status::Pass);
    let (s, why) = run("server-echoes-origin", &exchange(0x1111), "");
    assert_eq!(s, Status::Fail);
    assert!(why.contains("origin 0000000000001111 != request transmit abcdef0123456789"), "{why}");
    assert_eq!(run("server-echoes-origin", "", "").0, Status::NotExercised);
}

/// A basic exchange at 1 s, then an interleaved one at 65 s (RFC 9769 §2):
/// the second request names the first reply's receive timestamp (origin)
/// and its own arrival (receive); the second reply echoes that receive
/// timestamp and carries `second_tx`, which must be the first reply's
/// departure (1.001 s) on the server's clock.
fn interleaved_exchanges(second_org: u64, second_tx: u64) -> String {
    interleaved_exchanges_with(ts(1.014), 0x5555, second_org, second_tx)
}

/// The same with the second request's receive and transmit fields given.
fn interleaved_exchanges_with(req_rx: u64, req_tx: u64, second_org: u64, second_tx: u64) -> String {
    let first = exchange(0xabcdef0123456789);
    let req = pkt(3, 65.0, 65.001, 65.010, 65.001, C, S, &hdr(0x23, 0, "", ts(1.001), req_rx, req_tx));
    let rep = pkt(4, 65.001, 65.004, 65.001, 65.014, S, C, &hdr(0x24, 1, "GPS", second_org, ts(65.001), second_tx));
    format!("{first}{req}\n{rep}\n")
}

fn interleaving_server(c: &mut Context) {
    c.hosts[0].kind = HostKind::Daemon { serves: true, has_sources: false, interleaved: true, local_reference: false };
}

#[test]
fn an_interleaved_request_may_come_from_another_port_of_the_host() {
    // chronyd sends every request from a fresh port; its interleaved request
    // names the reply its host received on the previous one (RFC 9769 ties
    // the exchange to no socket).
    let run_with = |packets: &str| {
        let trace = Trace::from_strs(packets, "", "").unwrap();
        let o = (check("client-interleaved-request").unwrap().run)(&Analysis::new(&ctx(), &trace));
        (o.status, o.reason)
    };
    let both = interleaved_exchanges_with(0x5151_5151, 0x5555, 0x5151_5151, ts(1.001));
    let first = exchange(0xabcdef0123456789);
    let second = both.strip_prefix(&first).unwrap().replace("\"10.0.0.2:40000\"", "\"10.0.0.2:40001\"");
    let packets = format!("{first}{second}");
    assert!(packets.contains("10.0.0.2:40000") && packets.contains("10.0.0.2:40001"), "{packets}");
    let (s, why) = run_with(&packets);
    assert_eq!(s, Status::Pass, "{why}");
    // Another host's reply is still no reply of this one.
    let (s, why) = run_with(&packets.replace("\"dst\":\"10.0.0.2:40000\"", "\"dst\":\"10.0.0.3:40000\""));
    assert_eq!(s, Status::Fail, "{why}");
}

#[test]
fn server_echo_judges_interleaved_replies_by_the_request_they_answer() {
    let run_with = |packets: &str| {
        let trace = Trace::from_strs(packets, "", "").unwrap();
        let mut c = ctx();
        interleaving_server(&mut c);
        let o = (check("server-echoes-origin").unwrap().run)(&Analysis::new(&c, &trace));
        (o.status, o.reason, o.evidence.join("\n"))
    };
    let (s, why, ev) = run_with(&interleaved_exchanges(ts(1.014), ts(1.001)));
    assert_eq!(s, Status::Pass, "{why}\n{ev}");
    assert!(ev.contains("interleaved, origin"), "{ev}");
    // The transmit time of this reply instead of the previous one's.
    let (s, _, ev) = run_with(&interleaved_exchanges(ts(1.014), ts(65.002)));
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("interleaved") && ev.contains("out of order"), "{ev}");
    // The previous departure off by 5 ms.
    let (s, _, ev) = run_with(&interleaved_exchanges(ts(1.014), ts(1.006)));
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("transmit by 5.000e-3 s"), "{ev}");
    // Echoing the request's origin (the server's own receive timestamp) is no answer.
    let (s, _, ev) = run_with(&interleaved_exchanges(ts(1.001), ts(1.001)));
    assert_eq!(s, Status::Fail);
    assert!(ev.contains("!= request transmit"), "{ev}");
    // A server without interleaved mode may not answer so.
    let trace = Trace::from_strs(&interleaved_exchanges(ts(1.014), ts(1.001)), "", "").unwrap();
    let c = ctx();
    assert_eq!((check("server-echoes-origin").unwrap().run)(&Analysis::new(&c, &trace)).status, Status::Fail);
}

#[test]
fn version_copy_pass_and_fail() {
    assert_eq!(run("server-copies-version", &exchange(0xabcdef0123456789), "").0, Status::Pass);
    let v3 = exchange(0xabcdef0123456789).replacen("\"bytes\":\"23", "\"bytes\":\"1b", 1);
    let (s, why) = run("server-copies-version", &v3, "");
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("request v3, reply v4"), "{why}");
}

#[test]
fn stratum_16_never_on_the_wire() {
    assert_eq!(run("stratum-16-never-sent", &exchange(0xabcdef0123456789), "").0, Status::Pass);
    let bad = exchange(0xabcdef0123456789).replace(&hdr(0x24, 1, "GPS", 0xabcdef0123456789, ts(1.001), ts(1.001)), &hdr(0x24, 16, "GPS", 0xabcdef0123456789, ts(1.001), ts(1.001)));
    assert_eq!(run("stratum-16-never-sent", &bad, "").0, Status::Fail);
}

#[test]
fn offset_delay_formula_within_half_asymmetry() {
    let (s, why) = run("offset-delay-formula", &exchange(0xabcdef0123456789), "");
    assert_eq!(s, Status::Pass, "{why}");
    // The server's receive timestamp 5 ms late: the offset leaves the asymmetry bound.
    let bad = exchange(0xabcdef0123456789).replace(&hdr(0x24, 1, "GPS", 0xabcdef0123456789, ts(1.001), ts(1.001)), &hdr(0x24, 1, "GPS", 0xabcdef0123456789, ts(1.006), ts(1.006)));
    let (s, why) = run("offset-delay-formula", &bad, "");
    assert_eq!(s, Status::Fail, "{why}");
}

#[test]
fn bogus_origin_needs_a_rejection_event() {
    let packets = exchange(0x1111);
    let rejected = r#"{"t_s":1.004,"host":"client","kind":"source_reply","details":{"event":"Rejected(Bogus)","source":"10.0.0.1:123"}}"#;
    assert_eq!(run("client-rejects-bogus", &packets, rejected).0, Status::Pass);
    let (s, why) = run("client-rejects-bogus", &packets, "");
    assert_eq!(s, Status::Fail);
    assert!(why.contains("used as a sample") && why.contains("frame 2"), "{why}");
    assert_eq!(run("client-rejects-bogus", &exchange(0xabcdef0123456789), "").0, Status::NotExercised);
}

#[test]
fn duplicate_copy_must_be_rejected() {
    let ex = exchange(0xabcdef0123456789);
    let dup = ex.lines().nth(1).unwrap().replace("\"frame\":2", "\"frame\":3");
    let packets = format!("{ex}{dup}\n");
    let ev = r#"{"t_s":1.004,"host":"client","kind":"source_reply","details":{"event":"Rejected(Duplicate)","source":"10.0.0.1:123"}}"#;
    assert_eq!(run("client-rejects-duplicate", &packets, ev).0, Status::Pass);
    assert_eq!(run("client-rejects-duplicate", &packets, "").0, Status::Fail);
}

fn kiss_flow(code: &str, gaps: &[f64]) -> String {
    let mut out = String::new();
    let mut t = 0.0;
    for (i, g) in gaps.iter().enumerate() {
        let x = 0x1000 + i as u64;
        out += &pkt(2 * i as u64 + 1, t, t + 0.001, t, t + 0.001, C, S, &hdr(0x23, 0, "", 0, 0, x));
        out.push('\n');
        out += &pkt(2 * i as u64 + 2, t + 0.001, t + 0.002, t + 0.001, t + 0.002, S, C, &hdr(0xe4, 0, code, x, 0, 0));
        out.push('\n');
        t += g;
    }
    out
}

fn kiss_events(code_event: &str, n: usize, gaps: &[f64]) -> String {
    let mut t = 0.0;
    let mut out = String::new();
    for g in gaps.iter().take(n) {
        out += &format!(r#"{{"t_s":{},"host":"client","kind":"source_reply","details":{{"event":"{code_event}","source":"10.0.0.1:123"}}}}"#, t + 0.002);
        out.push('\n');
        t += g;
    }
    out
}

#[test]
fn rate_backoff_grows_or_fails() {
    let grow = [16.0, 32.0, 64.0, 128.0, 1.0];
    let (s, why) = run("kod-rate-backoff", &kiss_flow("RATE", &grow), &kiss_events("RateLimited { poll_log2: 5 }", 5, &grow));
    assert_eq!(s, Status::Pass, "{why}");
    let flat = [16.0, 16.0, 16.0, 16.0, 1.0];
    let (s, why) = run("kod-rate-backoff", &kiss_flow("RATE", &flat), &kiss_events("RateLimited { poll_log2: 4 }", 5, &flat));
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("interval 16.0 s before, 16.0 s after"), "{why}");
}

#[test]
fn deny_stops_or_fails() {
    let one = [16.0];
    assert_eq!(run("kod-deny-stops", &kiss_flow("DENY", &one), &kiss_events("Demobilize(Deny)", 1, &one)).0, Status::Pass);
    let more = [16.0, 16.0];
    let (s, why) = run("kod-deny-stops", &kiss_flow("DENY", &more), &kiss_events("Demobilize(Deny)", 2, &more));
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("1 more request(s)"), "{why}");
}

#[test]
fn kiss_is_never_a_sample() {
    let g = [16.0];
    assert_eq!(run("kod-no-sample", &kiss_flow("XFOO", &g), &kiss_events("Kiss(Unknown([88, 70, 79, 79]))", 1, &g)).0, Status::Pass);
    assert_eq!(run("kod-no-sample", &kiss_flow("XFOO", &g), "").0, Status::Fail);
    assert_eq!(run("kod-x-ignored", &kiss_flow("XFOO", &g), &kiss_events("RateLimited { poll_log2: 5 }", 1, &g)).0, Status::Fail);
}

#[test]
fn falseticker_never_system_peer() {
    // The client polls the liar and two truechimers: the truechimers hold the majority.
    let polls = [pkt(1, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.3:123", &hdr(0x23, 0, "", 0, 0, 7)), pkt(2, 0.0, 0.001, 0.0, 0.001, C, S, &hdr(0x23, 0, "", 0, 0, 8)), pkt(3, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.4:123", &hdr(0x23, 0, "", 0, 0, 9))].join("\n");
    let good = r#"{"t_s":10,"host":"client","kind":"selection","details":{"system_peer":"10.0.0.1:123","falsetickers":["10.0.0.3:123"]}}"#;
    let bad = r#"{"t_s":10,"host":"client","kind":"selection","details":{"system_peer":"10.0.0.3:123","falsetickers":[]}}"#;
    assert_eq!(run("falsetickers-outvoted", &polls, good).0, Status::Pass);
    let (s, why) = run("falsetickers-outvoted", &polls, bad);
    assert_eq!(s, Status::Fail);
    assert!(why.contains("falseticker 10.0.0.3:123 selected as system peer (events.jsonl:1)"), "{why}");
}

#[test]
fn slew_below_stept() {
    let slew = r#"{"t_s":10,"host":"client","kind":"slew","details":{"action":"Slew { phase: 0.01s }"}}"#;
    let small_step = r#"{"t_s":10,"host":"client","kind":"step","details":{"action":"Step { offset: 0.05s, frequency: 0.0 }"}}"#;
    assert_eq!(run("slew-below-step-threshold", "", slew).0, Status::Pass);
    let (s, why) = run("slew-below-step-threshold", "", small_step);
    assert_eq!(s, Status::Fail);
    assert!(why.contains("stepped 0.050000 s"), "{why}");
}

#[test]
fn era_wrap_not_exercised_outside_2036() {
    assert_eq!(run("era-wrap-no-jump", "", "").0, Status::NotExercised);
}

// ---------------------------------------------------------------------------
// The meta-test table: a passing and a failing fragment for every check.

/// A trace fragment: packets.jsonl, events.jsonl, samples.csv, and the
/// scenario start (None: 2026-01-01).
#[derive(Default, Clone)]
struct Frag {
    packets: String,
    events: String,
    samples: String,
    start: Option<&'static str>,
    /// The server host has interleaved mode on.
    interleaving: bool,
}

fn frag(packets: &str, events: &str) -> Frag {
    Frag { packets: packets.into(), events: events.into(), ..Frag::default() }
}

struct Meta {
    check: &'static str,
    pass: Frag,
    fail: Frag,
}

fn outcome(id: &str, f: &Frag) -> (Status, String) {
    let trace = Trace::from_strs(&f.packets, &f.events, &f.samples).unwrap_or_else(|e| panic!("{id}: {e}"));
    let mut c = ctx();
    if let Some(start) = f.start {
        c.start = NtpTime::parse_rfc3339(start).unwrap();
    }
    if f.interleaving {
        interleaving_server(&mut c);
    }
    let a = Analysis::new(&c, &trace);
    let o = (check(id).unwrap_or_else(|| panic!("no check {id}")).run)(&a);
    (o.status, o.reason)
}

/// A `source_reply` event of the client.
fn ev(t: f64, event: &str, source: &str) -> String {
    format!(r#"{{"t_s":{t},"host":"client","kind":"source_reply","details":{{"event":"{event}","source":"{source}"}}}}"#)
}

const OK_ORG: u64 = 0xabcdef0123456789;

/// The request of [`exchange`] plus one reply (frame 2) with these header bytes, arriving at 1.004 s.
fn answered_by(reply_hex: &str) -> String {
    let req = pkt(1, 1.0, 1.001, 1.010, 1.001, C, S, &hdr(0x23, 0, "", 0, 0, OK_ORG));
    let rep = pkt(2, 1.001, 1.004, 1.001, 1.014, S, C, reply_hex);
    format!("{req}\n{rep}\n")
}

/// A good reply's header with another first octet, stratum or reference ID.
fn good(li_vn_mode: u8, stratum: u8, refid: &str, org: u64) -> String {
    hdr(li_vn_mode, stratum, refid, org, ts(1.001), ts(1.001))
}

/// A reply `S -> C` (frame 3) sent at `t`, arriving 3 ms later.
fn later_reply(t: f64, bytes: &str) -> String {
    pkt(3, t, t + 0.003, t, t + 0.013, S, C, bytes)
}

/// The client, already synchronized to the server (selection at 0.5 s and
/// the exchange of [`exchange`]), serves a stratum-`stratum` reply with `refid` at 5 s.
fn client_serves(stratum: u8, refid: &str) -> Frag {
    let serve = pkt(9, 5.0, 5.001, 5.0, 5.001, "10.0.0.2:123", "10.0.0.9:5000", &hdr(0x24, stratum, refid, 77, ts(5.0), ts(5.0)));
    let sel = r#"{"t_s":0.5,"host":"client","kind":"selection","details":{"system_peer":"10.0.0.1:123","falsetickers":[]}}"#;
    frag(&format!("{}{serve}\n", exchange(OK_ORG)), sel)
}

/// 16 client requests whose transmit timestamps' low 16 bits are `low(i)`.
fn requests(low: impl Fn(u64) -> u64) -> String {
    (0..16u64).map(|i| pkt(i + 1, i as f64, i as f64 + 0.001, i as f64, i as f64 + 0.001, C, S, &hdr(0x23, 0, "", 0, 0, ts(i as f64) & !0xffff | low(i))) + "\n").collect()
}

/// A request with the poll field set.
fn request_with_poll(poll: u8) -> String {
    let mut h = hdr(0x23, 0, "", 0, 0, OK_ORG);
    h.replace_range(4..6, &format!("{poll:02x}"));
    pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &h) + "\n"
}

/// samples.csv rows of the client around the 2036 era wrap (start 06:00:00Z, wrap at 1696 s).
fn wrap_samples(jump_at_1700: f64) -> String {
    let mut o = String::from("time,t_s,host,offset_s,frequency_error,synced,stratum,poll_log2\n");
    for t in [1600.0, 1650.0, 1700.0, 1750.0, 1800.0] {
        let off = if t >= 1700.0 { 1e-5 + jump_at_1700 } else { 1e-5 };
        o += &format!("x,{t},client,{off},0,true,2,6\n");
    }
    o
}

#[path = "support/client_sample.rs"]
#[allow(dead_code)] // the table uses part of what client_sample_checks.rs uses
mod client_sample;


/// One extension field as hex: type, length (header included), body of `len` octets of `fill`.
fn ef(kind: u16, len: usize, fill: u8) -> String {
    format!("{kind:04x}{:04x}{}", len + 4, format!("{fill:02x}").repeat(len))
}

/// An NTS request header + fields: UID (`uid_len` octets of `uid`), a 100-octet
/// cookie of `cookie`, `holders` placeholders, an authenticator.
fn nts_fields(uid: u8, uid_len: usize, cookie: u8, holders: usize) -> String {
    let mut s = ef(0x0104, uid_len, uid) + &ef(0x0204, 100, cookie);
    for _ in 0..holders {
        s += &ef(0x0304, 100, 0);
    }
    s + &ef(0x0404, 36, 0xaa)
}

/// The client sends `reqs` (field hex each) at 1 s, 2 s, ...; the server answers each with `reply(i)`.
fn nts_flow(reqs: &[String], reply: impl Fn(usize) -> Option<String>) -> Frag {
    let mut out = String::new();
    for (i, fields) in reqs.iter().enumerate() {
        let t = 1.0 + i as f64;
        let org = 0x1000 + i as u64;
        out += &(pkt(2 * i as u64 + 1, t, t + 0.001, t, t + 0.001, C, S, &(hdr(0x23, 0, "", 0, 0, org) + fields)) + "\n");
        if let Some(r) = reply(i) {
            out += &(pkt(2 * i as u64 + 2, t + 0.001, t + 0.002, t + 0.001, t + 0.002, S, C, &r) + "\n");
        }
    }
    frag(&out, "")
}

/// A time reply to request `i` with `fields` after the header.
fn nts_reply(i: usize, fields: &str) -> String {
    let t = 1.0 + i as f64;
    hdr(0x24, 1, "GPS", 0x1000 + i as u64, ts(t + 0.001), ts(t + 0.001)) + fields
}

/// An NTSN kiss answering request `i`, with `fields`.
fn ntsn_reply(i: usize, fields: &str) -> String {
    hdr(0x24, 0, "NTSN", 0x1000 + i as u64, 0, 0) + fields
}

/// An `nts_ke` event of the client for the source S at `t`: success with `aead` and `cookies`, or failure.
fn ke_ev(t: f64, ok: Option<(u16, usize)>) -> String {
    let details = match ok {
        Some((aead, cookies)) => format!(r#"{{"source":"{S}","aead":{aead},"cookies":{cookies},"error":null}}"#),
        None => format!(r#"{{"source":"{S}","aead":null,"cookies":0,"error":"NTS-KE: TLS handshake failed"}}"#),
    };
    format!(r#"{{"t_s":{t},"host":"client","kind":"nts_ke","details":{details}}}"#) + "\n"
}

/// `line` (a packets.jsonl line) marked as made by an on-path attacker of `kind`.
fn by_attacker(line: &str, kind: &str) -> String {
    line.replacen("\"bytes\"", &format!("\"attack\":\"{kind}\",\"bytes\""), 1)
}

/// An NTS request at 1 s; a forged reply (T2 = T3 = 2 s) at 1.0015 s, then the
/// server's reply (T2 = T3 = 1.001 s) at 1.002 s; the client's sample at
/// 1.0021 s with T2 = T3 = `sample_at` s.
fn forged_then_real(sample_at: f64) -> Frag {
    let req = pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x1000) + &nts_fields(1, 32, 1, 0)));
    let uid_auth = ef(0x0104, 32, 1) + &ef(0x0404, 100, 0xbb);
    let forged = by_attacker(&pkt(2, 1.0005, 1.0015, 1.0005, 1.0015, S, C, &(hdr(0x24, 1, "GPS", 0x1000, ts(2.0), ts(2.0)) + &uid_auth)), "forge");
    let real = pkt(3, 1.001, 1.002, 1.001, 1.002, S, C, &(hdr(0x24, 1, "GPS", 0x1000, ts(1.001), ts(1.001)) + &uid_auth));
    let sample = format!(
        r#"{{"t_s":1.0021,"host":"client","kind":"sample","details":{{"source":"{S}","offset_s":0.0,"delay_s":0.002,"dispersion_s":2e-6,"t1":"{}","t2":"{}","t3":"{}","t4":"{}"}}}}"#,
        at(1.0),
        at(sample_at),
        at(sample_at),
        at(1.002)
    );
    frag(&format!("{req}\n{forged}\n{real}\n"), &sample)
}

/// A reply at 1.002 s with an unauthenticated cookie of `0x77` octets
/// appended by the attacker, then the client's next request (cookie `next_cookie`) at 2 s.
fn appended_cookie(next_cookie: u8) -> Frag {
    let req = pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x1000) + &nts_fields(1, 32, 1, 0)));
    let fields = ef(0x0104, 32, 1) + &ef(0x0404, 100, 0xbb) + &ef(0x0204, 100, 0x77);
    let rep = by_attacker(&pkt(2, 1.001, 1.002, 1.001, 1.002, S, C, &(hdr(0x24, 1, "GPS", 0x1000, ts(1.001), ts(1.001)) + &fields)), "append");
    let next = pkt(3, 2.0, 2.001, 2.0, 2.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x2000) + &nts_fields(2, 32, next_cookie, 0)));
    frag(&format!("{req}\n{rep}\n{next}\n"), "")
}

/// A DENY kiss without the identifier forged at 1.0015 s, the client's next request at 2 s, and `events`.
fn forged_kiss(events: &str) -> Frag {
    let req = pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x1000) + &nts_fields(1, 32, 1, 0)));
    let kiss = by_attacker(&pkt(2, 1.0005, 1.0015, 1.0005, 1.0015, S, C, &hdr(0xe4, 0, "DENY", 0x1000, 0, 0)), "forge_kod");
    let next = pkt(3, 2.0, 2.001, 2.0, 2.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x2000) + &nts_fields(2, 32, 2, 0)));
    frag(&format!("{req}\n{kiss}\n{next}\n"), events)
}

const KE_REQ: &str = r#"[{"type":1,"critical":true,"len":2,"values":[0]},{"type":4,"critical":true,"len":4,"values":[15,30]},{"type":0,"critical":true,"len":0}]"#;
const KE_RESP: &str = r#"[{"type":1,"critical":true,"len":2,"values":[0]},{"type":4,"critical":true,"len":2,"values":[15]},{"type":5,"critical":false,"len":100},{"type":0,"critical":true,"len":0}]"#;

/// A successful `nts_ke` event with its TLS details and records.
fn ke_tx(tls: &str, alpn: &str, request: &str, response: &str) -> Frag {
    let details = format!(r#"{{"source":"{S}","aead":15,"cookies":8,"error":null,"tls":"{tls}","alpn":"{alpn}","request":{request},"response":{response}}}"#);
    frag("", &(format!(r#"{{"t_s":0.5,"host":"client","kind":"nts_ke","details":{details}}}"#) + "\n"))
}

/// A key establishment at 0.5 s whose response names port 124, then the client's NTS request to `to` at 1 s.
fn port_record_then_request(to: &str) -> Frag {
    let resp = KE_RESP.replacen(r#"{"type":5"#, r#"{"type":7,"critical":true,"len":2,"values":[124]},{"type":5"#, 1);
    let ke = ke_tx("TLSv1_3", "ntske/1", KE_REQ, &resp);
    let req = pkt(1, 1.0, 1.001, 1.0, 1.001, C, to, &(hdr(0x23, 0, "", 0, 0, 0x1000) + &nts_fields(1, 32, 1, 0)));
    Frag { packets: req + "\n", ..ke }
}

/// An NTPv5 exchange C -> S at 1 s: a -08 request (Draft Identification,
/// Reference IDs Request of 16 octets) and the real responder's answer, each
/// passed through its `tamper`.
fn v5_exchange(tamper_req: impl Fn(&mut Vec<u8>), tamper_rep: impl Fn(&mut Vec<u8>)) -> String {
    v5_exchange_with(false, false, tamper_req, tamper_rep)
}

/// [`v5_exchange`], with `nts` an NTS-protected one (AEAD 15, cookies from
/// the server's master keys, answered through `handle_nts`), with `info` a
/// Server Information field (zeros) after the Draft Identification.
fn v5_exchange_with(nts: bool, info: bool, tamper_req: impl Fn(&mut Vec<u8>), tamper_rep: impl Fn(&mut Vec<u8>)) -> String {
    use ntplab_proto::nts::{Aead, ClientSession, MasterKeyConfig, MasterKeys, SeededRng, SessionKeys};
    use ntplab_proto::server::{NtsServerAction, RateLimitConfig, Server, ServerAction, ServerClockState, ServerConfig};
    use ntplab_proto::wire::v5::{Draft, FieldBody, Repr, Timescale};
    let mut req = Repr::request(Timescale::Utc, 0x0102_0304_0506_0708).to_bytes().to_vec();
    req.extend(FieldBody::DraftIdentification { name: Draft::D08.name().as_bytes().to_vec() }.to_field().to_bytes());
    if info {
        req.extend(FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field().to_bytes());
    }
    req.extend(FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; 14] }.to_field().to_bytes());
    let mut srv = Server::new(ServerConfig { rate_limit: RateLimitConfig { enabled: false, ..Default::default() }, ..Default::default() }, [0; 16]);
    let clock = ServerClockState {
        leap: ntplab_proto::wire::v4::LeapIndicator::NoWarning,
        stratum: 1,
        reference_time: Some(NtpTime::parse_rfc3339(START).unwrap()),
        ..ServerClockState::unsynchronized(-20)
    };
    let rx = NtpTime::parse_rfc3339(START).unwrap() + ntplab_proto::time::NtpDuration::from_seconds_f64(1.001);
    let mut out = vec![0u8; 2048];
    let len = if nts {
        let mut rng = SeededRng::new(5);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let cookies = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
        req = ClientSession::new(keys, cookies).build_request(&req, &mut rng).unwrap().0;
        let NtsServerAction::Respond(r) = srv.handle_nts(0, C.parse().unwrap(), &req, rx, &clock, &master, &mut out) else { panic!("answered") };
        srv.finish_nts_response(&r, &mut out, rx, &clock, &master, &mut rng).unwrap()
    } else {
        let ServerAction::Respond(r) = srv.handle(0, C.parse().unwrap(), &req, rx, &clock, &mut out) else { panic!("answered") };
        srv.finish_response(&r, &mut out, rx, &clock);
        r.len
    };
    let mut rep = out[..len].to_vec();
    tamper_req(&mut req);
    tamper_rep(&mut rep);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}\n{}\n", pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &hex(&req)), pkt(2, 1.001, 1.002, 1.001, 1.002, S, C, &hex(&rep)))
}

/// The server gets a stratum-1 reply from "honest" at 0.3 s and selects it
/// at 0.5 s; then [`v5_exchange`] with the server's reply through `tamper`
/// (the responder says stratum 1).
fn following_stratum_1(tamper: fn(&mut Vec<u8>)) -> Frag {
    let upstream = pkt(9, 0.2, 0.3, 0.2, 0.3, "10.0.0.4:123", "10.0.0.1:40001", &hdr(0x24, 1, "GPS", 0, ts(0.2), ts(0.2)));
    let selection = r#"{"t_s":0.5,"host":"server","kind":"selection","details":{"system_peer":"10.0.0.4:123"}}"#;
    frag(&format!("{upstream}\n{}", v5_exchange(|_| {}, tamper)), &format!("{selection}\n"))
}

/// The client's `sample` event from the server at `t` s.
fn sample_at(t: f64) -> String {
    format!(r#"{{"t_s":{t},"host":"client","kind":"sample","details":{{"source":"{S}"}}}}"#) + "\n"
}

/// An NTS-KE asking for NTPv5 (0x8001) answered with `answered` (the
/// Next Protocol values), then an NTS-protected NTPv5 exchange whose reply
/// passes through `tamper`.
fn nts_v5(answered: &str, tamper: fn(&mut Vec<u8>)) -> Frag {
    let req = KE_REQ.replacen("[0]", "[32769]", 1);
    let resp = KE_RESP.replacen("[0]", answered, 1);
    let ke = ke_tx("TLSv1_3", "ntske/1", &req, &resp);
    Frag { packets: v5_exchange_with(true, false, |_| {}, tamper), ..ke }
}

/// NTPv5 polls C -> S: a 48-octet request at each of `times` (cookie i + 1)
/// and, unless `answered` says no, a reply 1 ms later carrying its cookie
/// and Poll `poll(i)`.
fn v5_polls(times: &[f64], answered: impl Fn(usize) -> bool, poll: impl Fn(usize) -> i8) -> Frag {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut lines = String::new();
    for (i, t) in times.iter().enumerate() {
        let mut req = vec![0u8; 48];
        req[0] = 0x2b; // LI 0, VN 5, mode 3
        req[24..32].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        lines += &(pkt(2 * i as u64 + 1, *t, t + 0.0005, *t, t + 0.0005, C, S, &hex(&req)) + "\n");
        if answered(i) {
            let mut rep = req.clone();
            rep[0] = 0x2c; // mode 4
            rep[1] = 1;
            rep[2] = poll(i) as u8;
            rep[15] = 1; // Synchronized
            lines += &(pkt(2 * i as u64 + 2, t + 0.0005, t + 0.001, t + 0.0005, t + 0.001, S, C, &hex(&rep)) + "\n");
        }
    }
    frag(&lines, "")
}

/// A start-up burst of 8 requests 2 s apart, then `then`.
fn after_a_burst(then: &[f64]) -> Vec<f64> {
    (0..8).map(|i| f64::from(i) * 2.0).chain(then.iter().copied()).collect()
}

/// A start-up burst, a poll at 78 s, and a second burst from 200 s: after
/// a scenario event that starts the client's daemon again at 199 s when
/// `restart`.
fn restarted(restart: bool) -> Frag {
    let times: Vec<f64> = after_a_burst(&[78.0]).into_iter().chain((0..8).map(|i| 200.0 + f64::from(i) * 2.0)).collect();
    let events = if restart { r#"{"t_s":199,"kind":"scenario","details":{"event":"Start { host: 1 }"}}"#.to_string() + "\n" } else { String::new() };
    Frag { events, ..v5_polls(&times, |_| true, |_| 4) }
}

fn v5_metas() -> Vec<Meta> {
    let ok = || frag(&v5_exchange(|_| {}, |_| {}), "");
    let bad_rep = |f: fn(&mut Vec<u8>)| frag(&v5_exchange(|_| {}, f), "");
    let bad_req = |f: fn(&mut Vec<u8>)| frag(&v5_exchange(f, |_| {}), "");
    // A v4 request of the client with `marker` (NTP5DRFT or not) at 1 s, answered with `echo`; a v5 request at 20 s.
    let upgrade = |marker: bool, echo: bool| {
        let mut q = hdr(0x23, 0, "", 0, 0, 0x77);
        let mut r = hdr(0x24, 1, "GPS", 0x77, ts(1.001), ts(1.001));
        if marker {
            q.replace_range(32..48, "4e54503544524654");
        }
        if echo {
            r.replace_range(32..48, "4e54503544524654");
        }
        let later = v5_exchange(|_| {}, |_| {}).replace("\"sent_t_s\":1,", "\"sent_t_s\":20,");
        frag(&format!("{}\n{}\n{later}", pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &q), pkt(2, 1.001, 1.002, 1.001, 1.002, S, C, &r)), "")
    };
    vec![
        Meta { check: "v5-header", pass: ok(), fail: bad_rep(|r| r.extend([0, 0])) },
        Meta { check: "v5-request-zero", pass: ok(), fail: bad_req(|q| q[1] = 3) },
        Meta { check: "v5-client-cookie", pass: ok(), fail: bad_rep(|r| r[31] ^= 1) },
        Meta { check: "v5-li-stratum", pass: ok(), fail: bad_rep(|r| r[0] |= 0xc0) },
        Meta { check: "v5-timescale-era", pass: ok(), fail: bad_rep(|r| r[13] = 1) },
        Meta { check: "v5-ef-echo-pad", pass: ok(), fail: bad_rep(|r| r.truncate(r.len() - 20)) },
        Meta { check: "v5-draft-id", pass: ok(), fail: bad_rep(|r| r[48 + 4 + 22] = b'9') },
        // A 12-octet chunk for a 16-octet request (and an empty Padding field after it).
        Meta { check: "v5-refids", pass: ok(), fail: bad_rep(|r| {
            r[48 + 28 + 3] = 16;
            r[92..96].copy_from_slice(&[0xf5, 0x01, 0x00, 0x04]);
        }) },
        Meta { check: "v5-version", pass: ok(), fail: frag(&v5_exchange(|_| {}, |r| r[0] = 0x24), "") },
        Meta { check: "v5-negotiation", pass: upgrade(true, true), fail: upgrade(false, true) },
        // Polls 64 s and more apart with a random part after the start's burst;
        // a second burst when the server stops answering; a burst of 9; no random part.
        Meta { check: "v5-poll-public", pass: v5_polls(&after_a_burst(&[78.0, 143.5, 209.1, 274.0, 340.2]), |_| true, |_| 4), fail: v5_polls(&after_a_burst(&[78.0, 143.5, 209.1, 274.0, 340.2, 342.2, 344.2]), |i| i < 12, |_| 4) },
        Meta { check: "v5-poll-public", pass: v5_polls(&after_a_burst(&[78.0]), |_| true, |_| 4), fail: v5_polls(&after_a_burst(&[16.0, 80.0]), |_| true, |_| 4) },
        Meta { check: "v5-poll-public", pass: v5_polls(&after_a_burst(&[78.0, 143.5, 209.1, 274.0, 340.2]), |_| true, |_| 4), fail: v5_polls(&after_a_burst(&[78.0, 142.0, 206.0, 270.0, 334.0]), |_| true, |_| 4) },
        // A second burst after the client's daemon is started again (host 1, "client"), or without a restart.
        Meta { check: "v5-poll-public", pass: restarted(true), fail: restarted(false) },
        // The server asks for 2^7 s: kept (the start's burst may ignore it), not kept; Poll 127 then silence, or not.
        Meta { check: "v5-poll", pass: v5_polls(&after_a_burst(&[142.0, 271.0, 400.5]), |_| true, |_| 7), fail: v5_polls(&after_a_burst(&[142.0, 206.0, 335.0]), |_| true, |_| 7) },
        Meta { check: "v5-poll", pass: v5_polls(&[0.0], |_| true, |_| 127), fail: v5_polls(&[0.0, 2.0], |_| true, |_| 127) },
        // An unsynchronized reply (flags 0), and the client takes a sample from it at its delivery.
        Meta { check: "v5-flags", pass: frag(&v5_exchange(|_| {}, |r| r[15] &= !1), ""), fail: frag(&v5_exchange(|_| {}, |r| r[15] &= !1), &sample_at(1.002)) },
        // An Authentication NAK at stratum 1.
        Meta { check: "v5-flags", pass: frag(&v5_exchange(|_| {}, |r| { r[15] = 4; r[1] = 0; }), ""), fail: frag(&v5_exchange(|_| {}, |r| r[15] = 5), "") },
        // Server Information: the reply names no NTPv5 (versions zeroed); a request with versions in it.
        Meta { check: "v5-server-info", pass: frag(&v5_exchange_with(false, true, |_| {}, |_| {}), ""), fail: frag(&v5_exchange_with(false, true, |_| {}, |r| r[48 + 28 + 4..48 + 28 + 6].fill(0)), "") },
        Meta { check: "v5-server-info", pass: frag(&v5_exchange_with(false, true, |_| {}, |_| {}), ""), fail: frag(&v5_exchange_with(false, true, |q| q[48 + 28 + 5] = 0x1f, |_| {}), "") },
        // The server follows "honest" (stratum 1, selected at 0.5 s): its NTPv5 reply must say 2 or more.
        Meta { check: "v5-stratum-rule", pass: following_stratum_1(|r| r[1] = 2), fail: following_stratum_1(|_| {}) },
        // NTS for NTPv5: an NTS-KE asking for 0x8001, then a protected exchange.
        Meta { check: "v5-nts", pass: nts_v5(r#"[32769]"#, |_| {}), fail: nts_v5(r#"[32769]"#, |r| r.truncate(r.len() - 4)) },
        Meta { check: "v5-nts", pass: nts_v5(r#"[32769]"#, |_| {}), fail: nts_v5(r#"[0]"#, |_| {}) },
        // The Unique Identifier echo altered (it follows the Draft Identification and the Reference IDs Response).
        Meta { check: "v5-nts", pass: nts_v5(r#"[32769]"#, |_| {}), fail: nts_v5(r#"[32769]"#, |r| r[48 + 28 + 20 + 4] ^= 1) },
    ]
}

fn nts_metas() -> Vec<Meta> {
    let two = |a: String, b: String| vec![a, b];
    let plain = |uid: u8| ef(0x0104, 32, uid) + &ef(0x0404, 100, 0xbb);
    let answered = |reqs: Vec<String>| nts_flow(&reqs, |i| Some(nts_reply(i, &plain(i as u8 + 1))));
    let with_events = |f: Frag, events: String| Frag { events, ..f };
    let two_requests = || nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(nts_reply(i, &plain(i as u8 + 1))));
    let failures = |times: &[f64]| times.iter().map(|t| ke_ev(*t, None)).collect::<String>();
    // Successful NTS-KEs at `times`, each followed by an NTSN 64 s later;
    // with `sample`, an authentic reply at that time.
    // Successful key establishments at `times`, each NAKed 64 s later;
    // authentic time as a `source_reply` at `replies`, as a `sample` event
    // (as the simulator writes it) at `samples`.
    let naked = |times: &[f64], replies: &[f64], samples: &[f64]| {
        let mut out: Vec<(f64, String)> = times.iter().flat_map(|t| [(*t, ke_ev(*t, Some((15, 8)))), (t + 64.0, ev(t + 64.0, "NtsNak", S) + "\n")]).collect();
        out.extend(replies.iter().map(|&t| (t, ev(t, "Sample(Measurement { .. })", S) + "\n")));
        out.extend(samples.iter().map(|&t| (t, format!("{{\"t_s\":{t},\"host\":\"client\",\"kind\":\"sample\",\"details\":{{\"source\":\"{S}\"}}}}\n"))));
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.into_iter().map(|(_, l)| l).collect::<String>()
    };
    let ntsn_then_time = |i: usize| Some(if i == 0 { ntsn_reply(i, &ef(0x0104, 32, 1)) } else { nts_reply(i, &plain(i as u8 + 1)) });
    let dropped = format!(r#"{{"t_s":1.0016,"host":"client","kind":"source_dropped","details":{{"source":"{S}"}}}}"#);
    // Requests at 1.0, 1.1 and 2.0 s; the second is answered with NTSN at
    // 1.102 s, the first with time only at `late` s, the third at 2.002 s;
    // no NTS-KE. Time before the next poll (2.0 s) answers the NTSN.
    let late_time = |late: f64| {
        let req = |i: u64, t: f64| (t, pkt(0, t, t + 0.001, t, t + 0.001, C, S, &(hdr(0x23, 0, "", 0, 0, 0x1000 + i) + &nts_fields(i as u8 + 1, 32, i as u8 + 1, 0))));
        let rep = |t: f64, body: String| (t, pkt(0, t - 0.001, t, t - 0.001, t, S, C, &body));
        let mut p = [req(0, 1.0), req(1, 1.1), rep(1.102, ntsn_reply(1, &ef(0x0104, 32, 2))), rep(late, nts_reply(0, &plain(1))), req(2, 2.0), rep(2.002, nts_reply(2, &plain(3)))];
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let lines: String = p.iter().enumerate().map(|(n, (_, l))| l.replacen("\"frame\":0", &format!("\"frame\":{}", n + 1), 1) + "\n").collect();
        frag(&lines, "")
    };
    vec![
        // One forged reply accepted as a sample fails the check.
        Meta { check: "nts-attack-no-sample", pass: forged_then_real(1.001), fail: forged_then_real(2.0) },
        Meta { check: "nts-unauth-ef-ignored", pass: appended_cookie(2), fail: appended_cookie(0x77) },
        Meta { check: "nts-kod-needs-uid", pass: forged_kiss(""), fail: forged_kiss(&dropped) },
        Meta {
            check: "nts-key-rotation",
            pass: nts_flow(&[nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0), nts_fields(3, 32, 1, 0)], |i| Some(nts_reply(i, &plain(i as u8 + 1)))),
            fail: nts_flow(&[nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0), nts_fields(3, 32, 1, 0), nts_fields(4, 32, 1, 0)], |i| {
                Some(if i == 2 { ntsn_reply(i, &ef(0x0104, 32, 3)) } else { nts_reply(i, &plain(i as u8 + 1)) })
            }),
        },
        Meta {
            check: "nts-ntsn-rekey",
            pass: with_events(nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), ntsn_then_time), ke_ev(1.5, Some((15, 8)))),
            fail: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), ntsn_then_time),
        },
        // Authentic time between the NTSN and the next poll: no NTS-KE owed
        // (RFC 8915 §5.7); after the next poll it is too late.
        Meta { check: "nts-ntsn-rekey", pass: late_time(1.5), fail: late_time(2.5) },
        Meta { check: "nts-ke-ntp-address", pass: port_record_then_request("10.0.0.1:124"), fail: port_record_then_request(S) },
        Meta { check: "nts-ke-tls13", pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP), fail: ke_tx("TLSv1_2", "ntske/1", KE_REQ, KE_RESP) },
        Meta { check: "nts-ke-alpn", pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP), fail: ke_tx("TLSv1_3", "http/1.1", KE_REQ, KE_RESP) },
        Meta {
            check: "nts-ke-npn-once",
            pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP),
            fail: ke_tx("TLSv1_3", "ntske/1", &KE_REQ.replacen("[{", r#"[{"type":1,"critical":true,"len":2,"values":[0]},{"#, 1), KE_RESP),
        },
        Meta {
            check: "nts-ke-eom",
            pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP),
            fail: ke_tx("TLSv1_3", "ntske/1", KE_REQ, &KE_RESP.replace(r#"{"type":0,"critical":true,"len":0}]"#, r#"{"type":0,"critical":true,"len":0},{"type":5,"critical":false,"len":100}]"#)),
        },
        Meta { check: "nts-ke-subset", pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP), fail: ke_tx("TLSv1_3", "ntske/1", KE_REQ, &KE_RESP.replacen("[0]", "[32769]", 1)) },
        Meta {
            check: "nts-ke-client-records",
            pass: ke_tx("TLSv1_3", "ntske/1", KE_REQ, KE_RESP),
            fail: ke_tx("TLSv1_3", "ntske/1", &KE_REQ.replacen("[{", r#"[{"type":3,"critical":false,"len":2,"values":[0]},{"#, 1), KE_RESP),
        },
        Meta { check: "nts-ke-aead", pass: frag("", &ke_ev(0.5, Some((15, 8)))), fail: frag("", &ke_ev(0.5, Some((99, 8)))) },
        Meta { check: "nts-ke-cookies", pass: frag("", &ke_ev(0.5, Some((30, 8)))), fail: frag("", &ke_ev(0.5, Some((15, 0)))) },
        Meta {
            check: "nts-no-ntp-after-failed-ke",
            pass: with_events(two_requests(), ke_ev(0.1, None) + &ke_ev(0.5, Some((15, 8)))),
            fail: with_events(two_requests(), ke_ev(0.5, None)),
        },
        Meta { check: "nts-ke-backoff", pass: frag("", &failures(&[0.0, 4.0, 12.0, 28.0, 60.0])), fail: frag("", &failures(&[0.0, 4.0, 12.0, 14.0])) },
        // Key establishment succeeds, the NTP server NAKs every request: the
        // retries at 64 s polls (every other poll, then on the back-off)
        // reach 10 x 1.5^(n-1) s; every other 16 s poll does not (32 s for
        // the 4th retry since an authentic reply, a sample, ended the run).
        Meta {
            check: "nts-ke-backoff",
            pass: frag("", &naked(&[0.0, 128.0, 256.0, 384.0, 512.0, 672.0, 992.0, 1632.0], &[], &[])),
            fail: frag("", &naked(&[0.0, 32.0, 64.0, 96.0, 128.0, 160.0, 192.0], &[33.0], &[])),
        },
        // Re-keying every 32 s is fine when a sample (the simulator's
        // `sample` event, not a `source_reply`) came between the attempts:
        // each run of attempts without authentic time is one attempt long.
        Meta {
            check: "nts-ke-backoff",
            pass: frag("", &naked(&[0.0, 32.0, 64.0, 96.0, 128.0, 160.0, 192.0], &[], &[16.0, 48.0, 80.0, 112.0, 144.0])),
            fail: frag("", &naked(&[0.0, 32.0, 64.0, 96.0, 128.0, 160.0, 192.0], &[], &[16.0])),
        },
        Meta { check: "nts-uid", pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))), fail: answered(two(nts_fields(1, 16, 1, 0), nts_fields(2, 32, 2, 0))) },
        Meta { check: "nts-uid-echo", pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))), fail: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(nts_reply(i, &plain(9)))) },
        Meta {
            check: "nts-client-request",
            pass: answered(two(nts_fields(1, 32, 1, 2), nts_fields(2, 32, 2, 0))),
            fail: answered(two(nts_fields(1, 32, 1, 0), ef(0x0104, 32, 2) + &ef(0x0204, 100, 2) + &ef(0x0204, 100, 3) + &ef(0x0404, 36, 0xaa))),
        },
        Meta {
            check: "nts-ef-modes",
            pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))),
            fail: frag(&(pkt(1, 1.0, 1.001, 1.0, 1.001, C, S, &(hdr(0x21, 0, "", 0, 0, 5) + &nts_fields(1, 32, 1, 0))) + "\n"), ""),
        },
        Meta {
            check: "nts-no-amplification",
            pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))),
            fail: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(nts_reply(i, &(ef(0x0104, 32, i as u8 + 1) + &ef(0x0404, 400, 0xbb))))),
        },
        Meta { check: "nts-cookie-once", pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))), fail: answered(two(nts_fields(1, 32, 7, 0), nts_fields(2, 32, 7, 0))) },
        Meta {
            check: "nts-placeholder",
            pass: answered(two(nts_fields(1, 32, 1, 1), nts_fields(2, 32, 2, 3))),
            fail: answered(two(nts_fields(1, 32, 1, 1), ef(0x0104, 32, 2) + &ef(0x0204, 100, 2) + &ef(0x0304, 96, 0) + &ef(0x0404, 36, 0xaa))),
        },
        Meta { check: "nts-placeholder-count", pass: answered(two(nts_fields(1, 32, 1, 7), nts_fields(2, 32, 2, 1))), fail: answered(two(nts_fields(1, 32, 1, 8), nts_fields(2, 32, 2, 1))) },
        Meta {
            check: "nts-ntsn",
            pass: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(ntsn_reply(i, &ef(0x0104, 32, i as u8 + 1)))),
            fail: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(ntsn_reply(i, &plain(i as u8 + 1)))),
        },
        Meta {
            check: "nts-server-response",
            pass: answered(two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0))),
            fail: nts_flow(&two(nts_fields(1, 32, 1, 0), nts_fields(2, 32, 2, 0)), |i| Some(nts_reply(i, &(ef(0x0104, 32, i as u8 + 1) + &ef(0x0204, 40, 5) + &ef(0x0404, 36, 0xbb))))),
        },
    ]
}

/// An interleaved sample event at 65.005 s for the exchanges of
/// [`interleaved_exchanges_with`]: T1 = 1.010, T2 = 1.001, T4 = 1.014 (the
/// first exchange) and this T3.
fn interleaved_sample(t3: f64) -> String {
    format!(
        r#"{{"t_s":65.005,"host":"client","kind":"sample","details":{{"source":"{S}","offset_s":-0.011,"delay_s":0.004,"dispersion_s":2e-6,"interleaved":true,"t1":"{}","t2":"{}","t3":"{}","t4":"{}"}}}}"#,
        at(1.010),
        at(1.001),
        at(t3),
        at(1.014)
    )
}

fn metas() -> Vec<Meta> {
    let ex = exchange(OK_ORG);
    let xl = |req_rx: u64, req_tx: u64| interleaved_exchanges_with(req_rx, req_tx, req_rx, ts(1.001));
    let xl_server = |interleaving: bool| Frag { interleaving, ..frag(&xl(0x5151_5151, 0x5555), "") };
    let kiss = |code: &str, event: &str| frag(&kiss_flow(code, &[16.0]), &kiss_events(event, 1, &[16.0]));
    let reject = |what: &str| ev(2.003, what, S);
    let bad_ef = good(0x24, 1, "GPS", OK_ORG) + "01040100" + &"00".repeat(24);
    let short = good(0x24, 1, "GPS", OK_ORG)[..94].to_string();
    let far = {
        let g = good(0x24, 1, "GPS", OK_ORG);
        format!("{}00020000000f0000{}", &g[..8], &g[24..])
    };
    let wrong_kiss = {
        let req = pkt(1, 0.0, 0.001, 0.0, 0.001, C, S, &hdr(0x23, 0, "", 0, 0, 0x1000));
        let rep = pkt(2, 0.001, 0.002, 0.001, 0.002, S, C, &hdr(0xe4, 0, "DENY", 0x1001, 0, 0));
        format!("{req}\n{rep}\n")
    };
    let selection = |peer: &str| format!(r#"{{"t_s":10,"host":"client","kind":"selection","details":{{"system_peer":"{peer}","falsetickers":[]}}}}"#);
    let polls_liar_and_server = [pkt(1, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.3:123", &hdr(0x23, 0, "", 0, 0, 7)), pkt(2, 0.0, 0.001, 0.0, 0.001, C, S, &hdr(0x23, 0, "", 0, 0, 8))].join("\n");
    let polls_three = format!("{polls_liar_and_server}\n{}", pkt(3, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.4:123", &hdr(0x23, 0, "", 0, 0, 9)));
    let sampled = |event: String| frag(&client_sample::packets(), &event);
    let mut table = nts_metas();
    table.extend(v5_metas());
    table.extend(vec![
        Meta { check: "interleaved-tx-ne-rx", pass: frag(&xl(0x5151_5151, 0x5555), ""), fail: frag(&xl(0x5555, 0x5555), "") },
        Meta { check: "server-interleaved-detect", pass: xl_server(true), fail: xl_server(false) },
        Meta { check: "client-interleaved-request", pass: frag(&xl(0x5151_5151, 0x5555), ""), fail: frag(&xl(ts(1.014), 0x5555), "") },
        Meta {
            check: "client-interleaved-sample",
            pass: frag(&xl(0x5151_5151, 0x5555), &interleaved_sample(1.001)),
            fail: frag(&xl(0x5151_5151, 0x5555), &interleaved_sample(65.001)),
        },
        Meta { check: "client-sample-formula", pass: sampled(client_sample::correct()), fail: sampled(client_sample::sample_event(0.011, 0.004, 1.0145)) },
        Meta { check: "client-sample-offset", pass: sampled(client_sample::correct()), fail: sampled(client_sample::sample_event(-0.016, 0.014, 1.0245)) },
        Meta { check: "client-sample-delay", pass: sampled(client_sample::correct()), fail: sampled(client_sample::sample_event(-0.011, 0.005, 1.0145)) },
        Meta { check: "server-echoes-origin", pass: frag(&ex, ""), fail: frag(&exchange(0x1111), "") },
        Meta { check: "server-copies-version", pass: frag(&ex, ""), fail: frag(&ex.replacen("\"bytes\":\"23", "\"bytes\":\"1b", 1), "") },
        Meta { check: "server-mode-map", pass: frag(&ex, ""), fail: frag(&answered_by(&good(0x25, 1, "GPS", OK_ORG)), "") },
        Meta {
            check: "server-reply-address",
            pass: frag(&ex, ""),
            fail: frag(&ex.replace(&format!("\"dst\":\"{C}\""), "\"dst\":\"10.0.0.2:40001\""), ""),
        },
        Meta { check: "server-no-amplification", pass: frag(&ex, ""), fail: frag(&answered_by(&(good(0x24, 1, "GPS", OK_ORG) + &"00".repeat(20))), "") },
        Meta { check: "stratum-16-never-sent", pass: frag(&ex, ""), fail: frag(&answered_by(&good(0x24, 16, "GPS", OK_ORG)), "") },
        Meta { check: "refid-stratum-1", pass: frag(&ex, ""), fail: frag(&answered_by(&good(0x24, 1, "\u{0}GPS", OK_ORG)), "") },
        Meta { check: "refid-upstream", pass: client_serves(2, "\u{a}\u{0}\u{0}\u{1}"), fail: client_serves(2, "\u{a}\u{0}\u{0}\u{7}") },
        Meta { check: "refid-never-init", pass: frag(&ex, ""), fail: frag(&answered_by(&good(0x24, 1, "INIT", OK_ORG)), "") },
        Meta {
            check: "unsynced-server-advertises",
            pass: frag(&pkt(1, 5.0, 5.001, 5.0, 5.001, "10.0.0.2:123", "10.0.0.9:5000", &hdr(0xe4, 0, "", 77, ts(5.0), ts(5.0))), ""),
            fail: frag(&pkt(1, 5.0, 5.001, 5.0, 5.001, "10.0.0.2:123", "10.0.0.9:5000", &hdr(0x24, 2, "", 77, ts(5.0), ts(5.0))), ""),
        },
        Meta { check: "stratum-follows-peer", pass: client_serves(2, "\u{a}\u{0}\u{0}\u{1}"), fail: client_serves(3, "\u{a}\u{0}\u{0}\u{1}") },
        Meta { check: "kod-well-formed", pass: kiss("RATE", "RateLimited { poll_log2: 5 }"), fail: frag(&wrong_kiss.replace("DENY", "RATE"), "") },
        Meta { check: "client-transmit-random", pass: frag(&requests(|i| (i * 7919 + 13) & 0xffff), ""), fail: frag(&requests(|_| 0), "") },
        Meta { check: "client-source-port", pass: frag(&ex, ""), fail: frag(&ex.replace(C, "10.0.0.2:123"), "") },
        Meta { check: "client-rejects-short", pass: frag(&answered_by(&short), &ev(1.004, "Rejected(TooShort)", S)), fail: frag(&answered_by(&short), "") },
        Meta {
            check: "client-rejects-bad-version",
            pass: frag(&answered_by(&good(0x3c, 1, "GPS", OK_ORG)), &ev(1.004, "Rejected(BadVersion)", S)),
            fail: frag(&answered_by(&good(0x3c, 1, "GPS", OK_ORG)), ""),
        },
        Meta {
            check: "client-rejects-bad-extension",
            pass: frag(&answered_by(&bad_ef), &ev(1.004, "Rejected(MalformedExtension)", S)),
            fail: frag(&answered_by(&bad_ef), ""),
        },
        Meta {
            check: "client-rejects-unsolicited",
            pass: frag(&format!("{ex}{}\n", later_reply(2.0, &good(0x24, 1, "GPS", 0x2222))), &reject("Rejected(Unsolicited)")),
            fail: frag(&format!("{ex}{}\n", later_reply(2.0, &good(0x24, 1, "GPS", 0x2222))), ""),
        },
        Meta { check: "client-rejects-bogus", pass: frag(&exchange(0x1111), &ev(1.004, "Rejected(Bogus)", S)), fail: frag(&exchange(0x1111), "") },
        Meta { check: "client-rejects-zero-origin", pass: frag(&exchange(0), &ev(1.004, "Rejected(ZeroOrigin)", S)), fail: frag(&exchange(0), "") },
        Meta {
            check: "client-rejects-duplicate",
            pass: frag(&format!("{ex}{}\n", ex.lines().nth(1).unwrap().replace("\"frame\":2", "\"frame\":3")), &ev(1.004, "Rejected(Duplicate)", S)),
            fail: frag(&format!("{ex}{}\n", ex.lines().nth(1).unwrap().replace("\"frame\":2", "\"frame\":3")), ""),
        },
        Meta {
            check: "client-rejects-second-reply",
            pass: frag(&format!("{ex}{}\n", later_reply(2.0, &hdr(0x24, 1, "GPS", OK_ORG, ts(1.001), ts(1.002)))), &reject("Rejected(AlreadyAnswered)")),
            fail: frag(&format!("{ex}{}\n", later_reply(2.0, &hdr(0x24, 1, "GPS", OK_ORG, ts(1.001), ts(1.002)))), ""),
        },
        Meta {
            check: "client-rejects-insane",
            pass: frag(&answered_by(&good(0xe4, 1, "GPS", OK_ORG)), &ev(1.004, "Rejected(Unsynchronized)", S)),
            fail: frag(&answered_by(&good(0xe4, 1, "GPS", OK_ORG)), ""),
        },
        Meta {
            // Root delay 2 s, root dispersion 15 s: root distance 1 + 15 s = MAXDISP.
            check: "client-rejects-insane",
            pass: frag(&answered_by(&far), &ev(1.004, "Rejected(RootDistance)", S)),
            fail: frag(&answered_by(&far), ""),
        },
        Meta { check: "kod-no-sample", pass: kiss("XFOO", "Kiss(Unknown([88, 70, 79, 79]))"), fail: frag(&kiss_flow("XFOO", &[16.0]), "") },
        Meta {
            check: "kod-rate-backoff",
            pass: frag(&kiss_flow("RATE", &[16.0, 32.0, 64.0, 128.0, 1.0]), &kiss_events("RateLimited { poll_log2: 5 }", 5, &[16.0, 32.0, 64.0, 128.0, 1.0])),
            fail: frag(&kiss_flow("RATE", &[16.0, 16.0, 16.0, 16.0, 1.0]), &kiss_events("RateLimited { poll_log2: 4 }", 5, &[16.0, 16.0, 16.0, 16.0, 1.0])),
        },
        Meta {
            check: "kod-rate-cap",
            pass: frag(&kiss_flow("RATE", &[16.0, 32.0, 64.0]), &kiss_events("RateLimited { poll_log2: 5 }", 3, &[16.0, 32.0, 64.0])),
            fail: frag(&kiss_flow("RATE", &[16.0, 9000.0, 1.0]), &kiss_events("RateLimited { poll_log2: 5 }", 3, &[16.0, 9000.0, 1.0])),
        },
        Meta {
            check: "kod-deny-stops",
            pass: kiss("DENY", "Demobilize(Deny)"),
            fail: frag(&kiss_flow("DENY", &[16.0, 16.0]), &kiss_events("Demobilize(Deny)", 2, &[16.0, 16.0])),
        },
        Meta { check: "kod-x-ignored", pass: kiss("XFOO", "Kiss(Unknown([88, 70, 79, 79]))"), fail: kiss("XFOO", "RateLimited { poll_log2: 5 }") },
        Meta { check: "kod-other-no-sample", pass: kiss("INIT", "Kiss(Init)"), fail: frag(&kiss_flow("INIT", &[16.0]), "") },
        Meta {
            check: "kod-bogus-origin-ignored",
            pass: frag(&wrong_kiss, &ev(0.002, "Rejected(Bogus)", S)),
            fail: frag(&wrong_kiss, &ev(0.002, "Demobilize(Deny)", S)),
        },
        Meta {
            check: "offset-delay-formula",
            pass: frag(&ex, ""),
            fail: frag(&answered_by(&hdr(0x24, 1, "GPS", OK_ORG, ts(1.006), ts(1.006))), ""),
        },
        Meta {
            check: "era-wrap-no-jump",
            pass: Frag { samples: wrap_samples(0.0), start: Some("2036-02-07T06:00:00Z"), ..Frag::default() },
            fail: Frag { samples: wrap_samples(0.5), start: Some("2036-02-07T06:00:00Z"), ..Frag::default() },
        },
        Meta {
            check: "falsetickers-outvoted",
            pass: frag(&polls_three, &selection("10.0.0.1:123")),
            fail: frag(&polls_three, &selection("10.0.0.3:123")),
        },
        Meta { check: "poll-bounds", pass: frag(&request_with_poll(6), ""), fail: frag(&request_with_poll(3), "") },
        Meta {
            check: "slew-below-step-threshold",
            pass: frag("", r#"{"t_s":10,"host":"client","kind":"slew","details":{"action":"Slew { phase: 0.01s }"}}"#),
            fail: frag("", r#"{"t_s":10,"host":"client","kind":"step","details":{"action":"Step { offset: 0.05s, frequency: 0.0 }"}}"#),
        },
    ]);
    table
}

#[test]
fn every_check_has_a_pass_and_a_fail_meta_test() {
    let table = metas();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for c in CHECKS {
        // A check may have several pairs (one per rule): each is judged.
        let pairs: Vec<&Meta> = table.iter().filter(|m| m.check == c.id).collect();
        if pairs.is_empty() {
            missing.push(c.id);
        }
        for (n, m) in pairs.iter().enumerate() {
            let (p, why_p) = outcome(c.id, &m.pass);
            let (f, why_f) = outcome(c.id, &m.fail);
            if p != Status::Pass {
                wrong.push(format!("{} #{n}: pass fragment gave {} ({why_p})", c.id, p.label()));
            }
            if f != Status::Fail {
                wrong.push(format!("{} #{n}: fail fragment gave {} ({why_f})", c.id, f.label()));
            }
        }
    }
    for m in &table {
        assert!(check(m.check).is_some(), "the table names `{}`, which is not in CHECKS", m.check);
    }
    assert!(missing.is_empty(), "checks without a pass and a fail meta-test in `metas()`: {missing:?}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_majority_means_no_system_peer() {
    // The client polls the liar and the server only: one of two lies, no majority.
    let polls = [pkt(1, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.3:123", &hdr(0x23, 0, "", 0, 0, 7)), pkt(2, 0.0, 0.001, 0.0, 0.001, C, S, &hdr(0x23, 0, "", 0, 0, 8))].join("\n");
    let none = r#"{"t_s":10,"host":"client","kind":"selection","details":{"system_peer":null,"falsetickers":[]}}"#;
    let (s, why) = outcome("falsetickers-outvoted", &frag(&polls, none));
    assert_eq!(s, Status::Pass, "{why}");
    assert!(why.contains("all 1 clients polling falsetickers meet it"), "{why}");
    let truechimer = r#"{"t_s":10,"host":"client","kind":"selection","details":{"system_peer":"10.0.0.1:123","falsetickers":[]}}"#;
    let (s, why) = outcome("falsetickers-outvoted", &frag(&polls, truechimer));
    assert_eq!(s, Status::Fail);
    assert!(why.contains("1 of 2 polled servers are falsetickers (no majority), yet 10.0.0.1:123 became system peer"), "{why}");
}

#[test]
fn a_host_with_a_local_reference_is_no_unsynchronized_server() {
    // The client of ctx() serves stratum 2 before it selected a peer: a
    // failure for a host without a local reference (the meta-test table),
    // none for one with `local_stratum`, which serves its own clock.
    let served = pkt(1, 5.0, 5.001, 5.0, 5.001, "10.0.0.2:123", "10.0.0.9:5000", &hdr(0x24, 2, "", 77, ts(5.0), ts(5.0)));
    let trace = Trace::from_strs(&served, "", "").unwrap();
    let mut c = ctx();
    let run = |c: &Context| (check("unsynced-server-advertises").unwrap().run)(&Analysis::new(c, &trace)).status;
    assert_eq!(run(&c), Status::Fail);
    c.hosts[1].kind = HostKind::Daemon { serves: true, has_sources: true, interleaved: false, local_reference: true };
    assert_eq!(run(&c), Status::NotExercised);
}
