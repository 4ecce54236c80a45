//! The same scenario and seed give a byte-identical trace; another seed does not.

use ntplab_sim::run::run;
use ntplab_sim::scenario::Scenario;
use support::run_to_files;

mod support;

const SCENARIO: &str = r#"
name = "determinism: two clients, loss, jitter, a partition and a step"
seed = 7
start = "2036-02-07T06:20:00Z"
duration = "20m"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "a"
address = "10.0.0.2"
listen = false
clock = { offset = 0.05, frequency = 2e-5, wander = 1e-9, noise = 1e-7 }
sources = [ { host = "server", iburst = true, poll_min = 4, poll_max = 6 } ]

[[host]]
name = "b"
address = "10.0.0.3"
listen = false
clock = { offset = -0.02, frequency = -5e-6 }
sources = [ { host = "server", iburst = true, poll_min = 4, poll_max = 4 } ]

[[link]]
between = ["a", "server"]
delay = "1ms"
jitter = { kind = "pareto", scale = 1e-4, shape = 2.5 }
loss = 0.1
duplicate = 0.05

[[link]]
between = ["b", "server"]
delay = "500us"
jitter = { kind = "exponential", mean = 2e-4 }

[[event]]
at = "5m"
action = "partition"
hosts = ["a"]
until = "8m"

[[event]]
at = "10m"
action = "step_clock"
host = "b"
by = 0.5
"#;

fn trace(seed: u64, dir: &str) -> Vec<(String, Vec<u8>)> {
    let scenario = Scenario::parse(SCENARIO, "determinism.toml").unwrap().with_seed(seed);
    let (report, files) = run_to_files(&scenario, &format!("det-{dir}"));
    assert!(report.packets.0 > 100, "the run did something: {:?}", report.packets);
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let first = trace(7, "1");
    let second = trace(7, "2");
    assert_eq!(first.len(), 4, "samples.csv, events.jsonl, packets.jsonl, packets.pcap");
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert!(a == b, "{name} differs between two runs with the same seed");
        assert!(!a.is_empty(), "{name} is empty");
    }
    let other = trace(8, "3");
    let packets = |t: &[(String, Vec<u8>)]| t.iter().find(|(n, _)| n == "packets.jsonl").unwrap().1.clone();
    assert_ne!(packets(&first), packets(&other), "another seed must give another run");
}

const REFCLOCK: &str = r#"
name = "determinism: a GPS + PPS server with outliers, dropouts and a fix loss, and a client"
seed = 5
start = "2026-01-01T00:00:00Z"
duration = "20m"

[[host]]
name = "server"
address = "10.0.0.1"
clock = { offset = 0.001, frequency = 1e-6, wander = 1e-9, noise = 1e-8 }
refclock = { kind = "gps-pps", pps_jitter = "1us", pps_dropout = 0.05, pps_outlier = 0.01, fix_loss = [ { from = "10m", until = "12m" } ] }

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
sources = [ { host = "server", iburst = true, poll_min = 4, poll_max = 4 } ]

[[link]]
between = ["client", "server"]
delay = "100us"
jitter = { kind = "exponential", mean = 1e-5 }
"#;

#[test]
fn refclock_runs_are_deterministic_too() {
    let run_once = |dir: &str| {
        let out = std::env::temp_dir().join(format!("ntplab-det-rc-{}-{dir}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let scenario = Scenario::parse(REFCLOCK, "refclock.toml").unwrap();
        run(&scenario, Some(&out)).unwrap();
        let events = std::fs::read(out.join("events.jsonl")).unwrap();
        let samples = std::fs::read(out.join("samples.csv")).unwrap();
        std::fs::remove_dir_all(&out).ok();
        (events, samples)
    };
    let (a, b) = (run_once("1"), run_once("2"));
    assert!(String::from_utf8_lossy(&a.0).contains("refclock_sample"), "the refclock produced samples");
    assert!(a == b, "two runs with the same seed differ");
}
