//! The `client-sample-*` checks on a hand-made trace fragment: the client's
//! own `sample` event (offset, delay, dispersion, T1-T4) against the formulas
//! and against the exchange the simulator recorded. One that passes and one
//! that fails for each check, including the two formula bugs the wire-only
//! check `offset-delay-formula` cannot see.

use ntplab_conformance::checks::{check, Analysis, Status};
use ntplab_conformance::trace::{Context, HostInfo, HostKind, Trace};
use ntplab_proto::time::{NtpDuration, NtpTime};

const START: &str = "2026-01-01T00:00:00Z";
const NONCE: u64 = 0x0123_4567_89ab_cdef;

fn time(s: f64) -> NtpTime {
    NtpTime::parse_rfc3339(START).unwrap() + NtpDuration::from_seconds_f64(s)
}

fn rfc(s: f64) -> String {
    time(s).rfc3339().to_string()
}

fn context() -> Context {
    let host = |name: &str, address: &str, kind: HostKind| HostInfo { name: name.into(), address: address.parse().unwrap(), kind, noise_s: 0.0 };
    Context {
        start: time(0.0),
        duration_s: 60.0,
        hosts: vec![
            host("server", "10.0.0.1", HostKind::Daemon { serves: true, has_sources: false, interleaved: false }),
            host("client", "10.0.0.2", HostKind::Daemon { serves: false, has_sources: true, interleaved: false }),
        ],
    }
}

/// A 48-octet NTPv4 header as hex: mode byte, stratum, origin/receive/transmit.
fn header(li_vn_mode: u8, stratum: u8, org: u64, rx: u64, tx: u64) -> String {
    let mut b = vec![li_vn_mode, stratum, 6, 0xec];
    b.extend([0u8; 8]);
    b.extend(*b"GPS\0");
    b.extend([0u8; 8]);
    for t in [org, rx, tx] {
        b.extend(t.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One delivered datagram; times in seconds since START, `*_local` the clock readings.
fn datagram(frame: u64, sent: (f64, f64), received: (f64, f64), src: &str, dst: &str, bytes: &str) -> String {
    format!(
        r#"{{"sent":"{}","sent_t_s":{},"received":"{}","received_t_s":{},"lost":null,"src":"{src}","dst":"{dst}","length":48,"sender_local":"{}","receiver_local":"{}","frame":{frame},"bytes":"{bytes}"}}"#,
        rfc(sent.0),
        sent.0,
        rfc(received.0),
        received.0,
        rfc(sent.1),
        rfc(received.1),
    )
}

/// The exchange: the client's clock is 10 ms ahead, the server's exact. The
/// request leaves at 1 s and takes 1 ms; the server answers 0.5 ms later and
/// the reply takes 3 ms. So T1 = 1.010, T2 = 1.001, T3 = 1.0015, T4 = 1.0145:
/// the formulas give offset -11 ms (true -10 ms, half the asymmetry 1 ms) and
/// delay 4 ms (the true 4.5 ms round trip minus 0.5 ms residence).
fn packets() -> String {
    let ts = |s: f64| time(s).to_timestamp().to_bits();
    let request = datagram(1, (1.0, 1.010), (1.001, 1.001), "10.0.0.2:40000", "10.0.0.1:123", &header(0x23, 0, 0, 0, NONCE));
    let reply = datagram(2, (1.0015, 1.0015), (1.0045, 1.0145), "10.0.0.1:123", "10.0.0.2:40000", &header(0x24, 1, NONCE, ts(1.001), ts(1.0015)));
    format!("{request}\n{reply}\n")
}

/// The client's sample event with these figures and this T4.
fn sample_event(offset_s: f64, delay_s: f64, t4: f64) -> String {
    format!(
        r#"{{"t_s":1.005,"host":"client","kind":"sample","details":{{"source":"10.0.0.1:123","offset_s":{offset_s},"delay_s":{delay_s},"dispersion_s":2e-6,"t1":"{}","t2":"{}","t3":"{}","t4":"{}"}}}}"#,
        rfc(1.010),
        rfc(1.001),
        rfc(1.0015),
        rfc(t4)
    )
}

fn run(id: &str, events: &str) -> (Status, String) {
    let trace = Trace::from_strs(&packets(), events, "").unwrap();
    let ctx = context();
    let outcome = (check(id).unwrap().run)(&Analysis::new(&ctx, &trace));
    (outcome.status, outcome.reason)
}

/// What a correct client logs for the exchange.
fn correct() -> String {
    sample_event(-0.011, 0.004, 1.0145)
}

#[test]
fn a_correct_client_passes_all_three() {
    for id in ["client-sample-formula", "client-sample-offset", "client-sample-delay"] {
        let (status, why) = run(id, &correct());
        assert_eq!(status, Status::Pass, "{id}: {why}");
    }
}

#[test]
fn no_sample_event_is_not_exercised() {
    for id in ["client-sample-formula", "client-sample-offset", "client-sample-delay"] {
        assert_eq!(run(id, "").0, Status::NotExercised, "{id}");
    }
}

#[test]
fn formula_fails_on_an_offset_sign_error() {
    let (status, why) = run("client-sample-formula", &sample_event(0.011, 0.004, 1.0145));
    assert_eq!(status, Status::Fail, "{why}");
    assert!(why.contains("events.jsonl:1"), "{why}");
    // The same sign error is 21 ms from the truth: the offset check fails too.
    assert_eq!(run("client-sample-offset", &sample_event(0.011, 0.004, 1.0145)).0, Status::Fail);
}

#[test]
fn formula_and_delay_fail_on_the_sum_of_intervals() {
    // delay = (T4 - T1) + (T3 - T2) = 4.5 ms + 0.5 ms.
    let bug = sample_event(-0.011, 0.005, 1.0145);
    let (status, why) = run("client-sample-formula", &bug);
    assert_eq!(status, Status::Fail, "{why}");
    let (status, why) = run("client-sample-delay", &bug);
    assert_eq!(status, Status::Fail, "{why}");
    assert!(why.contains("delay 0.005000000 s vs true 0.004000000 s"), "{why}");
}

#[test]
fn truth_checks_fail_on_a_wrong_timestamp_the_formulas_agree_with() {
    // The client takes T4 10 ms late and computes consistently from it:
    // offset -16 ms, delay 14 ms. The formulas hold; the truth does not.
    let late = sample_event(-0.016, 0.014, 1.0245);
    assert_eq!(run("client-sample-formula", &late).0, Status::Pass);
    let (status, why) = run("client-sample-offset", &late);
    assert_eq!(status, Status::Fail, "{why}");
    assert!(why.contains("half asymmetry 1.000e-3 s"), "{why}");
    assert_eq!(run("client-sample-delay", &late).0, Status::Fail);
}

#[test]
fn a_malformed_sample_event_fails_the_formula_check() {
    let broken = r#"{"t_s":1.005,"host":"client","kind":"sample","details":{"source":"10.0.0.1:123","offset_s":-0.011}}"#;
    let (status, why) = run("client-sample-formula", broken);
    assert_eq!(status, Status::Fail);
    assert!(why.contains("events.jsonl:1: sample event without"), "{why}");
}

#[test]
fn a_delay_is_only_ever_raised_to_a_precision() {
    // RFC 5905 §8: a raw delay below the precision is raised to it. With T4 at
    // 1.0105 s the raw delay is 0 and the offset -9 ms: 2^-20 s passes.
    assert_eq!(run("client-sample-formula", &sample_event(-0.009, (2.0f64).powi(-20), 1.0105)).0, Status::Pass);
    // The real exchange's raw delay is 4 ms: a power of two below it is no
    // clamp, and one above 1 ms is no plausible precision.
    assert_eq!(run("client-sample-formula", &sample_event(-0.011, (2.0f64).powi(-10), 1.0145)).0, Status::Fail);
    assert_eq!(run("client-sample-formula", &sample_event(-0.011, (2.0f64).powi(-7), 1.0145)).0, Status::Fail);
}
