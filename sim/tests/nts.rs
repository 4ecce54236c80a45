//! NTS in the simulator: NTS-KE over simulated TCP and TLS, protected NTP,
//! byte-for-byte determinism, and the scenario keys' errors.

use ntplab_sim::scenario::Scenario;
use support::{file, run_to_files};

mod support;

const SCENARIO: &str = r#"
name = "nts determinism: key rotation, KE down and back, 20 % loss"
seed = 3
start = "2026-01-01T00:00:00Z"
duration = "2h"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1
nts = { key_rotation = "15m", aeads = [30, 15] }

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
clock = { offset = 0.01, frequency = 1e-6 }
sources = [ { host = "server", iburst = true, nts = true, poll_min = 6, poll_max = 8 } ]

[[link]]
between = ["client", "server"]
delay = "1ms"
jitter = { kind = "exponential", mean = 1e-4 }
loss = 0.2

[[event]]
at = "20m"
action = "ke_down"
host = "server"

[[event]]
at = "50m"
action = "ke_up"
host = "server"
"#;

fn trace(seed: u64, dir: &str) -> Vec<(String, Vec<u8>)> {
    let scenario = Scenario::parse(SCENARIO, "nts.toml").unwrap().with_seed(seed);
    let (report, files) = run_to_files(&scenario, &format!("nts-det-{dir}"));
    assert!(report.packets.0 > 100, "the run did something: {:?}", report.packets);
    files
}

#[test]
fn an_nts_run_is_byte_for_byte_the_same_for_a_seed() {
    let first = trace(3, "1");
    let second = trace(3, "2");
    assert_eq!(first.len(), 4);
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert!(a == b, "{name} differs between two runs with the same seed");
    }
    // The requests are NTS-protected (longer than the 48-octet header) and
    // replies were accepted as samples.
    let packets = String::from_utf8_lossy(file(&first, "packets.jsonl")).into_owned();
    assert!(packets.lines().filter(|l| l.contains("\"dst\":\"10.0.0.1:123\"")).all(|l| !l.contains("\"length\":48,")), "every request carries NTS fields");
    let events = String::from_utf8_lossy(file(&first, "events.jsonl")).into_owned();
    assert!(events.contains("\"kind\":\"sample\""), "authenticated replies became samples");
    let other = trace(4, "3");
    assert_ne!(file(&first, "packets.jsonl"), file(&other, "packets.jsonl"), "another seed, other keys and nonces");
}

fn err(text: &str) -> String {
    Scenario::parse(text, "s.toml").unwrap_err().to_string()
}

const TWO_HOSTS: &str = r#"
name = "x"
duration = "1h"
[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1
SERVER
[[host]]
name = "client"
address = "10.0.0.2"
listen = false
sources = [ { host = "server", nts = true } ]
[[link]]
between = ["client", "server"]
delay = "1ms"
"#;

#[test]
fn nts_key_mistakes_are_named_with_their_position() {
    let e = err(&TWO_HOSTS.replace("SERVER", ""));
    assert!(e.contains("s.toml:13:") && e.contains("does not serve NTS") && e.contains("nts = {}"), "{e}");
    let e = err(&TWO_HOSTS.replace("SERVER", "nts = { certificate = \"stale\" }"));
    assert!(e.contains("s.toml:8:23") && e.contains("\"stale\" is not one of"), "{e}");
    let e = err(&TWO_HOSTS.replace("SERVER", "nts = { key_rotation = \"0s\" }"));
    assert!(e.contains("s.toml:8:") && e.contains("key_rotation"), "{e}");
    let e = err(&TWO_HOSTS.replace("SERVER", "nts = { aeads = [99] }"));
    assert!(e.contains("s.toml:8:") && e.contains("99"), "{e}");
    let e = err(&TWO_HOSTS.replace("SERVER", "nts = { rotate = \"1h\" }"));
    assert!(e.contains("s.toml:8:") && e.contains("rotate"), "{e}");
    let e = err(&(TWO_HOSTS.replace("SERVER", "nts = {}").replace("nts = true", "nts = false") + "[[event]]\nat = \"1m\"\naction = \"ke_down\"\nhost = \"client\"\n"));
    assert!(e.contains("s.toml:19:10") && e.contains("`ke_down` is about NTS-KE"), "{e}");
}

#[test]
fn nts_keys_load() {
    let s = Scenario::parse(&TWO_HOSTS.replace("SERVER", "nts = { key_rotation = \"1h\", certificate = \"expired\", aeads = [15] }"), "s.toml").unwrap();
    assert_eq!(s.hosts.len(), 2);
}

const ATTACKED: &str = include_str!("../../scenarios/nts-on-path-attacker.toml");

fn attacked_trace(dir: &str) -> Vec<(String, Vec<u8>)> {
    let scenario = Scenario::parse(ATTACKED, "nts-on-path-attacker.toml").unwrap();
    let (report, files) = run_to_files(&scenario, &format!("nts-attack-{dir}"));
    assert!(report.passed(), "{:?}", report.verdicts);
    files
}

#[test]
fn the_on_path_attacker_is_deterministic_and_does_everything_it_is_told() {
    let first = attacked_trace("1");
    let second = attacked_trace("2");
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert!(a == b, "{name} differs between two attacked runs with the same seed");
    }
    let packets = String::from_utf8_lossy(file(&first, "packets.jsonl")).into_owned();
    for kind in ["modify", "strip", "append", "replay", "reorder", "forge", "forge_kod"] {
        let n = packets.lines().filter(|l| l.contains(&format!("\"attack\":\"{kind}\""))).count();
        assert!(n >= 3, "{kind}: {n} datagrams");
    }
    // What the attacker replaced or held back is in the trace as lost, with why.
    assert!(packets.contains("\"lost\":\"attacker: replaced in flight\"") && packets.contains("\"lost\":\"attacker: held back\""));
    let events = String::from_utf8_lossy(file(&first, "events.jsonl")).into_owned();
    assert!(events.matches("\"kind\":\"sample\"").count() > 30, "the authentic replies still become samples");
}

#[test]
fn forged_ntsns_neither_force_nts_ke_nor_cost_samples() {
    // Every request is answered first by a forged NTSN echoing its Unique
    // Identifier: the client keeps its session (RFC 8915 §5.7), and the
    // server's authentic reply that follows is still a sample.
    let scenario = Scenario::parse(include_str!("../../scenarios/nts-forged-ntsn.toml"), "nts-forged-ntsn.toml").unwrap();
    let (report, files) = run_to_files(&scenario, "nts-forged-ntsn");
    assert!(report.passed(), "{:?}", report.verdicts);
    let packets = String::from_utf8_lossy(file(&files, "packets.jsonl")).into_owned();
    let forged = packets.lines().filter(|l| l.contains("\"attack\":\"forge_ntsn\"")).count();
    let events = String::from_utf8_lossy(file(&files, "events.jsonl")).into_owned();
    let count = |kind: &str| events.matches(&format!("\"kind\":\"{kind}\"")).count();
    let naks = events.matches("\"event\":\"NtsNak\"").count();
    assert!(forged >= 100 && naks == forged, "{forged} forged NTSNs, {naks} judged");
    assert_eq!(count("nts_ke"), 1, "only the first NTS-KE: no forged NTSN forced another");
    assert_eq!(count("sample"), forged, "every request's authentic reply became a sample");
}

#[test]
fn attacker_key_mistakes_are_named_with_their_position() {
    let with = |a: &str| TWO_HOSTS.replace("SERVER", "nts = {}") + &format!("attacker = {a}\n");
    let e = err(&with("{ modify = 0.6, strip = 0.6 }"));
    assert!(e.contains("s.toml:17:12") && e.contains("modify + strip"), "{e}");
    let e = err(&with("{ forge = 1.5 }"));
    assert!(e.contains("s.toml:17:") && e.contains("forge"), "{e}");
    let e = err(&with("{ flip = 0.1 }"));
    assert!(e.contains("s.toml:17:") && e.contains("flip"), "{e}");
    Scenario::parse(&with("{ forge = 0.5, forge_kod = 0.5, replay = 1.0 }"), "s.toml").unwrap();
    let e = err(&with("{ forge = 0.5, forge_ntsn = 0.6 }"));
    assert!(e.contains("s.toml:17:") && e.contains("forge + forge_kod + forge_ntsn"), "{e}");
    Scenario::parse(&with("{ forge_kod = 0.5, forge_ntsn = 0.5 }"), "s.toml").unwrap();
}

/// [`TWO_HOSTS`] for 30 min with the client polling every 64 s (poll 6, no
/// iburst), `server_nts` the server's `nts` key and `events` appended.
fn backoff_scenario(server_nts: &str, events: &str) -> Scenario {
    let text = TWO_HOSTS.replace("SERVER", server_nts).replace("duration = \"1h\"", "duration = \"30m\"").replace("nts = true }", "nts = true, poll_min = 6, poll_max = 6 }");
    Scenario::parse(&(text + events), "b.toml").unwrap()
}

/// The client's `nts_ke` events: (t_s, succeeded).
fn ke_attempts(files: &[(String, Vec<u8>)]) -> Vec<(f64, bool)> {
    String::from_utf8_lossy(file(files, "events.jsonl"))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "nts_ke")
        .map(|e| (e["t_s"].as_f64().unwrap(), e["details"]["error"].is_null()))
        .collect()
}

/// Gaps between consecutive attempt ends, with the `nts-ke-backoff` check's
/// rule (gap n >= first gap x 1.5^(n-1)) asserted on them.
fn backoff_gaps(label: &str, failures: &[f64]) -> Vec<f64> {
    let gaps: Vec<f64> = failures.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().enumerate() {
        assert!(*gap + 1e-6 >= gaps[0] * 1.5f64.powi(n as i32), "{label}: gap {n} is {gap} s after a first gap of {} s: {gaps:?}", gaps[0]);
    }
    gaps
}

#[test]
fn failed_key_establishments_are_retried_when_their_back_off_ends_not_at_a_poll() {
    // A certificate for another name: every handshake fails at once, and
    // each retry starts when its back-off (10 s, doubling) ends, though the
    // source polls only every 64 s.
    let scenario = backoff_scenario("nts = { certificate = \"wrong-name\" }", "");
    let (_, files) = run_to_files(&scenario, "nts-backoff-name");
    let attempts = ke_attempts(&files);
    assert!(attempts.iter().all(|(_, ok)| !ok), "{attempts:?}");
    let times: Vec<f64> = attempts.iter().map(|(t, _)| *t).collect();
    let gaps = backoff_gaps("wrong name", &times);
    // 0, 10, 30, 70, 150, 310, 630, 1270 s: eight attempts in 30 min.
    assert_eq!(gaps.len(), 7, "{times:?}");
    for (n, gap) in gaps.iter().enumerate() {
        let want = 10.0 * f64::from(1u32 << n);
        assert!((gap - want).abs() < 0.1, "retry {n} after {gap} s, want {want} s (the back-off, not the 64 s poll): {times:?}");
    }

    // A KE server that does not answer (its TCP blocked) for 20 min: each
    // attempt times out after 10 s, and the back-off counts from the
    // attempt's start, so the ends are 10, 20, 40 … s apart as well; after
    // the server is back the next attempt succeeds and the client follows.
    let events = "[[event]]\nat = \"0s\"\naction = \"ke_down\"\nhost = \"server\"\n[[event]]\nat = \"20m\"\naction = \"ke_up\"\nhost = \"server\"\n";
    let scenario = backoff_scenario("nts = {}", events);
    let (report, files) = run_to_files(&scenario, "nts-backoff-down");
    let attempts = ke_attempts(&files);
    let (failed, ok): (Vec<_>, Vec<_>) = attempts.iter().partition(|(_, ok)| !ok);
    let times: Vec<f64> = failed.iter().map(|(t, _)| *t).collect();
    let gaps = backoff_gaps("ke down", &times);
    assert!(gaps.len() >= 6 && (gaps[0] - 10.0).abs() < 0.1 && (gaps[5] - 320.0).abs() < 0.1, "{times:?}");
    // Back at 1200 s: the attempt started at 630 + 640 s succeeds.
    assert_eq!(ok.len(), 1, "{attempts:?}");
    assert!(ok[0].0 > 1200.0 && ok[0].0 < 1280.0, "{attempts:?}");
    assert!(report.packets.0 > 0, "NTP ran once keys were there: {:?}", report.packets);
}

/// The KE server `ke` names another host, `ntp`, as the NTP server; `ntp`
/// serves NTS too, but with its own cookie keys, so it cannot open the
/// cookies `ke` hands out and answers every request with a (genuine) NTSN.
/// The client polls every 64 s for 30 min.
const NAKING_NTP_SERVER: &str = r#"
name = "nts: KE succeeds, the NTP server it names NAKs every request"
duration = "30m"
[[host]]
name = "ke"
address = "10.0.0.1"
local_stratum = 1
nts = { ntp_server = "10.0.0.3" }
[[host]]
name = "ntp"
address = "10.0.0.3"
local_stratum = 1
nts = {}
[[host]]
name = "client"
address = "10.0.0.2"
listen = false
sources = [ { host = "ke", nts = true, poll_min = 6, poll_max = 6 } ]
[[link]]
between = ["client", "ke"]
delay = "1ms"
[[link]]
between = ["client", "ntp"]
delay = "1ms"
"#;

#[test]
fn successful_key_establishments_that_bring_no_authentic_time_back_off_as_failures_do() {
    // Every NTS-KE succeeds and every request gets an NTSN. The poll after
    // an NTSN wants keys again (RFC 8915 §5.7), but a successful NTS-KE
    // that no authentic time followed counts as failed (§4.2): retries are
    // poll-bound at first (every other 64 s poll) and then wait 10 × 2^(n-1)
    // s from the previous attempt's start, on their own timer. Before
    // 2026-12-05 the client re-keyed every other poll for as long as it ran:
    // 14 attempts in these 30 min, at 0, 133, 262, 395, 528, 658 … s.
    let scenario = Scenario::parse(NAKING_NTP_SERVER, "naking.toml").unwrap();
    let (_, files) = run_to_files(&scenario, "nts-naking-ntp-server");
    let attempts = ke_attempts(&files);
    assert!(attempts.iter().all(|(_, ok)| *ok), "every NTS-KE succeeds: {attempts:?}");
    let events = String::from_utf8_lossy(file(&files, "events.jsonl")).into_owned();
    let naks = events.matches("\"event\":\"NtsNak\"").count();
    assert!(naks >= 20 && !events.contains("\"kind\":\"sample\""), "{naks} NTSNs, no sample");
    let times: Vec<f64> = attempts.iter().map(|(t, _)| *t).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 0, 133, 262, 395, 528, 688, 1008, 1648 s: after four poll-bound
    // retries, 160, 320 and 640 s from the previous attempt.
    assert_eq!(gaps.len(), 7, "{times:?}");
    for (n, gap) in gaps.iter().enumerate() {
        // The nts-ke-backoff check's rule after a success no authentic time followed.
        assert!(*gap + 1.0 >= 10.0 * 1.5f64.powi(n as i32), "retry {}: {gap} s: {times:?}", n + 1);
        // The client's own: 10 × 2^(n-1) s from the previous attempt (whose length is milliseconds here).
        assert!(*gap + 0.1 >= 10.0 * f64::from(1u32 << n), "retry {}: {gap} s: {times:?}", n + 1);
    }
    for (gap, want) in gaps[4..].iter().zip([160.0, 320.0, 640.0]) {
        assert!((gap - want).abs() < 0.1, "{gap} s, want {want} s (the back-off, not a poll): {times:?}");
    }
}
