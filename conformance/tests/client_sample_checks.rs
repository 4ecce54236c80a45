//! The `client-sample-*` checks on a hand-made trace fragment: the client's
//! own `sample` event (offset, delay, dispersion, T1-T4) against the formulas
//! and against the exchange the simulator recorded. One that passes and one
//! that fails for each check, including the two formula bugs the wire-only
//! check `offset-delay-formula` cannot see.

use ntplab_conformance::checks::{check, Analysis, Status};
use ntplab_conformance::trace::{Context, HostInfo, HostKind, Trace};

#[path = "support/client_sample.rs"]
mod client_sample;
use client_sample::{correct, packets, sample_event, sample_event_with, time, SERVER_PRECISION_S};

fn context() -> Context {
    let host = |name: &str, address: &str, kind: HostKind| HostInfo { name: name.into(), address: address.parse().unwrap(), kind, noise_s: 0.0 };
    Context {
        start: time(0.0),
        duration_s: 60.0,
        hosts: vec![
            host("server", "10.0.0.1", HostKind::Daemon { serves: true, has_sources: false, interleaved: false, local_reference: false }),
            host("client", "10.0.0.2", HostKind::Daemon { serves: false, has_sources: true, interleaved: false, local_reference: false }),
        ],
    }
}

fn run(id: &str, events: &str) -> (Status, String) {
    let trace = Trace::from_strs(&packets(), events, "").unwrap();
    let ctx = context();
    let outcome = (check(id).unwrap().run)(&Analysis::new(&ctx, &trace));
    (outcome.status, outcome.reason)
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

#[test]
fn the_dispersion_is_the_sum_of_the_precisions_and_phi_over_the_round_trip() {
    // RFC 5905 §8: 2^-20 s (the reply's precision) + the client's 2^-20 s +
    // 15 ppm of the 4.5 ms round trip.
    let local = 2f64.powi(-20);
    let exact = SERVER_PRECISION_S + local + 15e-6 * 0.0045;
    let (status, why) = run("client-sample-formula", &sample_event_with(-0.011, 0.004, 1.0145, exact, Some(local)));
    assert_eq!(status, Status::Pass, "{why}");
    // The PHI term dropped: 67.5 ns short.
    let (status, why) = run("client-sample-formula", &sample_event_with(-0.011, 0.004, 1.0145, SERVER_PRECISION_S + local, Some(local)));
    assert_eq!(status, Status::Fail, "{why}");
    assert!(why.contains("2^rho(server) + 2^rho(client) + PHI x round trip = 1.9748e-6 s"), "{why}");
    // The client's precision left out, or counted twice.
    assert_eq!(run("client-sample-formula", &sample_event_with(-0.011, 0.004, 1.0145, exact - local, Some(local))).0, Status::Fail);
    assert_eq!(run("client-sample-formula", &sample_event_with(-0.011, 0.004, 1.0145, exact + local, Some(local))).0, Status::Fail);
    // Without the client's precision only the PHI term is a bound.
    assert_eq!(run("client-sample-formula", &sample_event_with(-0.011, 0.004, 1.0145, exact + local, None)).0, Status::Pass);
}
