//! What a run's trace says about the exchanges, against what the client
//! computed: `sample` events carry the client's own figures, and the clock
//! readings in `packets.jsonl` are those of the instant the datagram arrived.

use ntplab_proto::time::NtpTime;
use ntplab_sim::run::run;
use ntplab_sim::scenario::Scenario;
use serde_json::Value;
use std::path::PathBuf;

/// One perfect stratum-1 server and one client polling it: the client's
/// clock model and the link (both directions, then `backward` overrides).
fn two_hosts(duration: &str, client_clock: &str, link: &str) -> Scenario {
    let text = format!(
        r#"
name = "two hosts"
seed = 1
start = "2026-01-01T00:00:00Z"
duration = "{duration}"
converged_after = "1h"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
clock = {{ {client_clock} }}
sources = [ {{ host = "server", iburst = true }} ]

[[link]]
between = ["client", "server"]
{link}
"#
    );
    Scenario::parse(&text, "two-hosts.toml").unwrap()
}

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
    // chrony's default setup without read noise: the client's T4 is its
    // clock at the reply's arrival, exactly what receiver_local should record.
    let link = "delay = \"100us\"\njitter = { kind = \"exponential\", mean = 1e-4 }";
    let scenario = two_hosts("2h", "offset = 0.1, frequency = 1e-5, wander = 1e-9", link);
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

#[test]
fn an_asymmetric_link_offsets_the_client_by_half_the_difference_the_right_way() {
    // The client cannot see asymmetry: it steers θ = x + (d_out − d_back)/2
    // to zero, x being server − client. With 1 ms out and 0.2 ms back its
    // clock settles (1 − 0.2)/2 = 0.4 ms ahead of the server's (local − true
    // = +0.4 ms); a link model with its directions swapped gives −0.4 ms.
    let dir = temp_dir("asymmetric");
    let scenario = two_hosts("3h", "offset = 0.01", "delay = \"1ms\"\nbackward = { delay = \"200us\" }");
    run(&scenario, Some(&dir)).unwrap();
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let offsets: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[2] == "client" && c[1].parse::<f64>().unwrap() >= 3600.0)
        .map(|c| c[3].parse().unwrap())
        .collect();
    assert!(offsets.len() > 7000, "{} samples", offsets.len());
    let mean = offsets.iter().sum::<f64>() / offsets.len() as f64;
    assert!((mean - 4e-4).abs() < 4e-5, "mean offset {mean:.3e} s, want +4.0e-4 s");
    // The trace agrees with itself: packets took 1 ms out and 0.2 ms back.
    let packets = lines(dir.join("packets.jsonl"));
    for p in packets.iter().filter(|p| !p["received"].is_null()).take(20) {
        let took = (time(p, "received") - time(p, "sent")).to_seconds_f64();
        let want = if p["src"].as_str().unwrap().starts_with("10.0.0.2") { 1e-3 } else { 2e-4 };
        assert!((took - want).abs() < 1e-9, "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_copy_of_a_duplicated_datagram_is_its_own_record_at_its_own_arrival() {
    // A link that duplicates every datagram delivers each twice: a capture at
    // the receiver holds both copies, with the same octets and send time and
    // each its own arrival (the trace kept only the first, and checks judged
    // a reply against the wrong copy of its request).
    let dir = temp_dir("duplicates");
    let s = two_hosts("2h", "offset = 0.0", "delay = \"100us\"\njitter = { kind = \"exponential\", mean = 1e-4 }\nduplicate = 1.0");
    run(&s, Some(&dir)).expect("runs");
    let packets = lines(dir.join("packets.jsonl"));
    let mut copies: std::collections::BTreeMap<(String, String, String, String), Vec<f64>> = Default::default();
    for p in &packets {
        let key = [&p["src"], &p["dst"], &p["sent"], &p["bytes"]].map(|v| v.as_str().unwrap().to_string());
        copies.entry(key.into()).or_default().push(p["received_t_s"].as_f64().expect("delivered"));
    }
    assert!(copies.len() > 20, "{} datagrams", copies.len());
    for (key, arrivals) in &copies {
        assert_eq!(arrivals.len(), 2, "{key:?} arrived {arrivals:?}");
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]), "{key:?}: copies out of order {arrivals:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_host_sends_and_uses_its_clock_precision() {
    // The server reads its clock exactly: it reports the simulator's default
    // precision, 2^-23 s, in every reply. The client's clock reads in whole
    // microseconds: 2^-20 s (log2 1 µs = -19.93), its own precision in each
    // sample's dispersion (RFC 5905 §8: 2^ρ(server) + 2^ρ(client) + PHI·δ).
    let dir = temp_dir("precision");
    let scenario = two_hosts("2h", "offset = 0.01, precision = 1e-6", "delay = \"100us\"");
    run(&scenario, Some(&dir)).unwrap();
    let packets = lines(dir.join("packets.jsonl"));
    let replies: Vec<&Value> = packets.iter().filter(|p| p["src"] == "10.0.0.1:123").collect();
    assert!(replies.len() > 5, "{} replies", replies.len());
    for r in &replies {
        let precision = u8::from_str_radix(&r["bytes"].as_str().unwrap()[6..8], 16).unwrap() as i8;
        assert_eq!(precision, ntplab_sim::host_clock::DEFAULT_PRECISION_LOG2, "{r}");
    }
    let events = lines(dir.join("events.jsonl"));
    let samples: Vec<&Value> = events.iter().filter(|e| e["kind"] == "sample").collect();
    assert_eq!(samples.len(), replies.len());
    for s in samples {
        let d = &s["details"];
        assert_eq!(d["local_precision_s"].as_f64(), Some(2f64.powi(-20)), "{d}");
        let rtt = (time(d, "t4") - time(d, "t1")).to_seconds_f64();
        let want = 2f64.powi(-23) + 2f64.powi(-20) + 15e-6 * rtt;
        assert!((d["dispersion_s"].as_f64().unwrap() - want).abs() < 1e-9, "{d}: want {want:e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
