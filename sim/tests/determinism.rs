//! The same scenario and seed give a byte-identical trace; another seed does not.

use ntplab_sim::run::run;
use ntplab_sim::scenario::Scenario;
use std::path::PathBuf;

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
    let out = std::env::temp_dir().join(format!("ntplab-det-{}-{dir}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let scenario = Scenario::parse(SCENARIO, "determinism.toml").unwrap().with_seed(seed);
    let report = run(&scenario, Some(&out)).unwrap();
    assert!(report.packets.0 > 100, "the run did something: {:?}", report.packets);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let contents = files
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    std::fs::remove_dir_all(&out).ok();
    contents
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
