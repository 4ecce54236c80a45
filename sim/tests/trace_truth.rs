//! What a run's trace says about the exchanges, against what the client
//! computed: `sample` events carry the client's own figures, and the clock
//! readings in `packets.jsonl` are those of the instant the datagram arrived.

use ntplab_proto::time::NtpTime;
use ntplab_sim::run::run;
use ntplab_sim::scenario::Scenario;
use serde_json::Value;
use std::path::PathBuf;

/// chrony's default setup without read noise: the client's T4 is its clock at
/// the reply's arrival, exactly what `receiver_local` should record.
const CHRONY_DEFAULT_2H: &str = r#"
name = "chrony default, 2 h"
seed = 1
start = "2026-01-01T00:00:00Z"
duration = "2h"
converged_after = "1h"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
clock = { offset = 0.1, frequency = 1e-5, wander = 1e-9 }
sources = [ { host = "server", iburst = true } ]

[[link]]
between = ["client", "server"]
delay = "100us"
jitter = { kind = "exponential", mean = 1e-4 }
"#;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-sim-trace-truth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn lines(path: PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn time(v: &Value, key: &str) -> NtpTime {
    NtpTime::parse_rfc3339(v[key].as_str().unwrap_or_else(|| panic!("{key} missing in {v}"))).unwrap()
}

#[test]
fn every_sample_is_logged_and_receiver_clocks_are_read_at_arrival() {
    let dir = temp_dir("chrony-default");
    let scenario = Scenario::parse(CHRONY_DEFAULT_2H, "chrony-default-2h.toml").unwrap();
    run(&scenario, Some(&dir)).unwrap();
    let events = lines(dir.join("events.jsonl"));
    let packets = lines(dir.join("packets.jsonl"));
    let samples: Vec<&Value> = events.iter().filter(|e| e["kind"] == "sample").collect();
    let replies: Vec<&Value> = packets.iter().filter(|p| p["src"] == "10.0.0.1:123" && !p["received"].is_null()).collect();
    // No loss, no adversary: every reply is a sample.
    assert!(replies.len() > 40, "{} replies", replies.len());
    assert_eq!(samples.len(), replies.len());
    let mut worst: f64 = 0.0;
    for (sample, reply) in samples.iter().zip(&replies) {
        let d = &sample["details"];
        assert_eq!(sample["host"], "client");
        assert_eq!(d["source"], "10.0.0.1:123");
        let (t1, t2, t3, t4) = (time(d, "t1"), time(d, "t2"), time(d, "t3"), time(d, "t4"));
        let secs = |a: NtpTime, b: NtpTime| (a - b).to_seconds_f64();
        // The figures are the client's own and obey RFC 5905 §8.
        let offset = d["offset_s"].as_f64().unwrap();
        let delay = d["delay_s"].as_f64().unwrap();
        assert!((offset - (secs(t2, t1) + secs(t3, t4)) / 2.0).abs() < 5e-9, "{d}");
        assert!((delay - (secs(t4, t1) - secs(t3, t2))).abs() < 5e-9, "{d}");
        assert!(d["dispersion_s"].as_f64().unwrap() > 0.0);
        // T3 is the server's clock when the reply left (it is exact here).
        assert!(secs(t3, time(reply, "sender_local")).abs() < 2e-9, "{d} vs {reply}");
        // T4 against the trace's reading of the client clock at arrival: the
        // daemon converts its receive timestamp up to 1 ms after the arrival,
        // so they may differ by that lag times the steering's rate limits.
        worst = worst.max(secs(t4, time(reply, "receiver_local")).abs());
    }
    assert!(worst < 2e-6, "receiver_local differs from the client's T4 by up to {worst:.3e} s");
    let _ = std::fs::remove_dir_all(&dir);
}
