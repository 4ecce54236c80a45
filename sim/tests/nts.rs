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
fn attacker_key_mistakes_are_named_with_their_position() {
    let with = |a: &str| TWO_HOSTS.replace("SERVER", "nts = {}") + &format!("attacker = {a}\n");
    let e = err(&with("{ modify = 0.6, strip = 0.6 }"));
    assert!(e.contains("s.toml:17:12") && e.contains("modify + strip"), "{e}");
    let e = err(&with("{ forge = 1.5 }"));
    assert!(e.contains("s.toml:17:") && e.contains("forge"), "{e}");
    let e = err(&with("{ flip = 0.1 }"));
    assert!(e.contains("s.toml:17:") && e.contains("flip"), "{e}");
    Scenario::parse(&with("{ forge = 0.5, forge_kod = 0.5, replay = 1.0 }"), "s.toml").unwrap();
}
