//! Each check on hand-made trace fragments: one that passes, one that fails.

use ntplab_conformance::checks::{check, Analysis, Status};
use ntplab_conformance::trace::{Context, HostInfo, HostKind, Trace};
use ntplab_proto::time::NtpTime;

const START: &str = "2026-01-01T00:00:00Z";

fn ctx() -> Context {
    let daemon = |name: &str, addr: &str, has_sources: bool| HostInfo {
        name: name.into(),
        address: addr.parse().unwrap(),
        kind: HostKind::Daemon { serves: !has_sources, has_sources, interleaved: false },
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
    let polls = pkt(1, 0.0, 0.001, 0.0, 0.001, C, "10.0.0.3:123", &hdr(0x23, 0, "", 0, 0, 7));
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
