//! Hostile scenario files through `ntplab run` and `ntplab suite`: a bad file
//! is an error naming the file, line and column, never a panic, and in a
//! suite it is reported as a scenario that failed to load while the others
//! still run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-input-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Five simulated minutes of a server and a client; `name` and `expect` are pasted in.
fn small(name: &str, expect: &str) -> String {
    format!(
        "name = {name}\nduration = \"5m\"\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\
         [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nlisten = false\nsources = [ {{ host = \"server\", iburst = true, poll_min = 4, poll_max = 4 }} ]\n\
         [[link]]\nbetween = [\"client\", \"server\"]\ndelay = \"100us\"\n{expect}"
    )
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn run_names_a_non_ascii_duration_and_never_panics() {
    let dir = tmp("run-utf8");
    let top = dir.join("top.toml");
    std::fs::write(&top, "name = \"x\"\nduration = \"1§\"\n").unwrap();
    let out = ntplab(&["run", top.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("top.toml:2:12: invalid duration \"1§\": unknown unit `§`"), "{}", text(&out));
    assert!(!stderr.contains("panicked"), "{}", text(&out));

    let expect = dir.join("expect.toml");
    std::fs::write(&expect, small("\"x\"", "[[expect]]\nhost = \"client\"\nmetric = \"max_offset\"\nmax = \"5¡s\"\n")).unwrap();
    let out = ntplab(&["run", expect.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expect.toml:18:7: invalid duration \"5¡s\""), "{}", text(&out));
}

#[test]
fn suite_reports_a_scenario_that_fails_to_load_and_runs_the_others() {
    let dir = tmp("suite-load");
    std::fs::write(dir.join("a-good.toml"), small("\"client: good\"", "")).unwrap();
    std::fs::write(dir.join("b-bad.toml"), "name = \"x\"\nduration = \"1§\"\n").unwrap();
    std::fs::write(dir.join("c-good.toml"), small("\"client: also good\"", "")).unwrap();
    let rep = dir.join("report");
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("b-bad.toml did not run: ") && stderr.contains("b-bad.toml:2:12: invalid duration"), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["a-good", "c-good"] {
        assert!(stdout.lines().any(|l| l.starts_with(line) && l.ends_with("PASS")), "{line} did not run: {}", text(&out));
    }
    assert!(stdout.lines().any(|l| l.starts_with("b-bad") && l.ends_with("ERROR")), "{}", text(&out));

    let md = read(&rep.join("summary.md"));
    assert!(md.contains("b-bad.toml:2:12: invalid duration"), "{md}");
    assert!(md.contains("a-good") && md.contains("c-good"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&read(&rep.join("report.json"))).unwrap();
    let scenarios = json["result"]["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 3);
    assert!(scenarios[1]["error"].as_str().unwrap().contains("b-bad.toml:2:12: invalid duration \"1§\""), "{}", scenarios[1]);
    assert!(scenarios[0]["error"].is_null() && !scenarios[0]["checks"].as_array().unwrap().is_empty());
    assert!(scenarios[2]["error"].is_null() && !scenarios[2]["checks"].as_array().unwrap().is_empty());
    assert_eq!(json["passed"], false);
    let junit = read(&rep.join("junit.xml"));
    let bad_suite = junit.split("<testsuite ").find(|s| s.contains("name=\"b-bad\"")).expect("a testsuite for b-bad");
    assert!(bad_suite.contains("failures=\"1\"") && bad_suite.contains("<failure message=\"") && bad_suite.contains("b-bad.toml:2:12: invalid duration &quot;1§&quot;"), "{bad_suite}");
    assert!(read(&rep.join("report.html")).contains("b-bad.toml:2:12: invalid duration"));
}

#[test]
fn run_reads_a_bounded_amount_of_an_endless_file() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let out = ntplab(&["run", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/dev/zero: the scenario is larger than the limit of 8388608 bytes"), "{}", text(&out));
    assert!(stderr.contains("scenario files are at most 8 MiB"), "{}", text(&out));
}

#[test]
fn an_empty_shard_succeeds_with_an_empty_report() {
    let dir = tmp("empty-shard");
    std::fs::write(dir.join("only.toml"), small("\"client: only\"", "")).unwrap();
    let rep = dir.join("report");
    // One scenario in two shards: shard 2/2 is empty.
    let out = ntplab(&["suite", dir.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--shard", "2/2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(read(&rep.join("summary.md")).contains("**PASS**: 0 scenario(s)"));
    let json: serde_json::Value = serde_json::from_str(&read(&rep.join("report.json"))).unwrap();
    assert_eq!(json["passed"], true);
    assert!(json["result"]["scenarios"].as_array().unwrap().is_empty());
    assert!(read(&rep.join("junit.xml")).contains("<testsuites name=\"ntplab suite\""));
    // A directory without scenarios is still a mistake, shard or not.
    let empty = tmp("empty-dir");
    for shard in [None, Some("1/2")] {
        let mut args = vec!["suite", empty.to_str().unwrap(), "--report", rep.to_str().unwrap()];
        args.extend(shard.iter().flat_map(|s| ["--shard", *s]));
        let out = ntplab(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario files (*.toml) in"), "{}", text(&out));
    }
}
