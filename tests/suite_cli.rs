//! `ntplab suite` end to end on a temporary directory with one tiny scenario:
//! the report files, the baseline round trip, sharding, and the acceptance
//! test (a scenario demanding the impossible fails the suite and the report
//! names the failed requirement and why).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-suite-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Ten simulated minutes of one server and one client; `rms_max` bounds the client's RMS offset.
fn tiny(rms_max: &str) -> String {
    format!(
        r#"name = "client: tiny suite test"
seed = 3
start = "2026-01-01T00:00:00Z"
duration = "10m"
converged_after = "5m"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
clock = {{ offset = 0.001, frequency = 1e-6 }}
sources = [ {{ host = "server", iburst = true, poll_min = 4, poll_max = 4 }} ]

[[link]]
between = ["client", "server"]
delay = "100us"
jitter = {{ kind = "exponential", mean = 5e-5 }}

[[expect]]
name = "client RMS offset"
host = "client"
metric = "rms_offset"
max = {rms_max}
requirement = "R5905-11.3-slew"
"#
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn suite_writes_every_report_and_passes() {
    let dir = tmp("pass");
    std::fs::write(dir.join("tiny.toml"), tiny("0.01")).unwrap();
    let rep = dir.join("report");
    let base = dir.join("baseline.json");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--write-baseline", base.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("tiny") && stdout.contains("PASS") && stdout.contains("requirements:"), "{stdout}");
    for f in ["summary.md", "report.html", "report.json", "junit.xml", "figures.csv"] {
        assert!(rep.join(f).is_file(), "{f} missing");
    }
    assert!(read(&rep.join("summary.md")).contains("| R5905-8-server-echo | MUST | PASS |"));
    assert!(read(&rep.join("report.html")).contains("<polyline"));
    assert!(read(&rep.join("junit.xml")).starts_with("<?xml"));
    assert!(read(&rep.join("figures.csv")).contains("tiny,client,rms_offset_s,3,"));
    assert!(rep.join("traces/tiny/packets.pcap").is_file());
    let json: serde_json::Value = serde_json::from_str(&read(&rep.join("report.json"))).unwrap();
    assert_eq!(json["passed"], true);
    // The same run against its own baseline does not regress.
    let again = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--baseline", base.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    // A baseline that demands better figures than the run makes: regression, exit 1.
    let mut strict: serde_json::Value = serde_json::from_str(&read(&base)).unwrap();
    assert_eq!(strict["version"], 2);
    strict["figures"]["tiny"]["client"]["rms_offset_s"]["3"] = serde_json::json!(1e-12);
    std::fs::write(&base, strict.to_string()).unwrap();
    let worse = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--baseline", base.to_str().unwrap()]);
    assert_eq!(worse.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&worse.stderr).contains("tiny: client rms_offset_s regressed (mean of 1 seed(s))"), "{}", String::from_utf8_lossy(&worse.stderr));
}

#[test]
fn impossible_expectation_fails_the_suite_and_names_the_requirement() {
    let dir = tmp("impossible");
    std::fs::write(dir.join("tiny.toml"), tiny("1e-9")).unwrap();
    let rep = dir.join("report");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tiny (seed 3): expectation \"client RMS offset\" failed [R5905-11.3-slew]: client rms_offset = "), "{stderr}");
    assert!(stderr.contains("(must be <= 1e-9)"), "{stderr}");
    let md = read(&rep.join("summary.md"));
    assert!(md.starts_with("# ntplab conformance report\n\n**FAIL**"), "{md}");
    assert!(md.contains("| R5905-11.3-slew | ALG | FAIL | tiny (seed 3): expectation \"client RMS offset\": client rms_offset = "), "{md}");
    let junit = read(&rep.join("junit.xml"));
    assert!(junit.contains("<failure message=\"client rms_offset = ") && junit.contains("[R5905-11.3-slew]"), "{junit}");
}

#[test]
fn shard_and_usage_errors() {
    let dir = tmp("shard");
    std::fs::write(dir.join("a.toml"), tiny("0.01")).unwrap();
    std::fs::write(dir.join("b.toml"), "name = \"broken\"\n").unwrap();
    let rep = dir.join("report");
    // Shard 1/2 holds a.toml only.
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--shard", "1/2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Shard 2/2 holds the broken file: the error names the file and what is missing.
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--shard", "2/2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scenario") && stderr.contains("b.toml") && stderr.contains("did not run"), "{stderr}");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--shard", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shard wants K/N"));
}

#[test]
fn seed_sweep_reports_every_seed_and_the_spread() {
    let dir = tmp("seeds");
    std::fs::write(dir.join("tiny.toml"), tiny("0.01")).unwrap();
    let rep = dir.join("report");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--seeds", "1..3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3/3 seeds pass") && stdout.contains("slowest scenarios"), "{stdout}");
    let md = read(&rep.join("summary.md"));
    assert!(md.contains("| tiny | 3 | 3/3 | - |"), "{md}");
    for seed in 1..=3 {
        assert!(md.contains(&format!("| tiny | {seed} | 1/1 |")), "{md}");
    }
    assert!(md.contains("| tiny | client | rms_offset_s | 3 |"), "{md}");
    let csv = read(&rep.join("figures.csv"));
    for row in ["tiny,client,rms_offset_s,1,", "tiny,client,rms_offset_s,2,", "tiny,client,rms_offset_s,min,", "tiny,client,rms_offset_s,median,", "tiny,client,rms_offset_s,max,"] {
        assert!(csv.contains(row), "{row} missing:\n{csv}");
    }
    let json: serde_json::Value = serde_json::from_str(&read(&rep.join("report.json"))).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 3);
    // Passing runs of a sweep keep no trace.
    assert!(!rep.join("traces/tiny/seed-2").exists());
    // A scenario's own `seeds` key is the default sweep.
    std::fs::write(dir.join("tiny.toml"), tiny("0.01").replace("seed = 3\n", "seeds = \"4..5\"\n")).unwrap();
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = read(&rep.join("summary.md"));
    assert!(md.contains("| tiny | 4 |") && md.contains("| tiny | 5 |") && !md.contains("| tiny | 3 |"), "{md}");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--seeds", "5..1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds: seed list `5..1`: range 5..1 is empty"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_declared_check_that_is_not_exercised_fails_the_suite() {
    let dir = tmp("exercises");
    // The tiny scenario has no kiss-o'-death: kod-deny-stops is never exercised.
    let text = tiny("0.01").replace("seed = 3\n", "seed = 3\nexercises = [\"server-echoes-origin\", \"kod-deny-stops\"]\n");
    std::fs::write(dir.join("tiny.toml"), text).unwrap();
    let rep = dir.join("report");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tiny (seed 3): check kod-deny-stops is declared exercised (") && stderr.contains("tiny.toml:3:38) but was not: no DENY or RSTR kiss"), "{stderr}");
    assert!(!stderr.contains("server-echoes-origin"), "{stderr}");
    // An unknown check is named with its position.
    std::fs::write(dir.join("tiny.toml"), tiny("0.01").replace("seed = 3\n", "seed = 3\nexercises = [\"kod-deny-stop\"]\n")).unwrap();
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tiny.toml:3:14: `exercises` names unknown check `kod-deny-stop`"), "{stderr}");
}
