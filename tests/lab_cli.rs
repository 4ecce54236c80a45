//! `ntplab lab run` end to end: an ntplab server and a client (chronyd under
//! the clock shim, then ntplab's own daemon) in network namespaces, 40 s of
//! real time each. Needs root and network namespaces (and chronyd for the
//! chrony run); skipped with a message otherwise. Also: a scenario feature the
//! lab cannot realize is refused up front (no root needed).

mod support;

use ntplab_hwlab::safety::SystemClockState;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ntplab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ntplab"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-lab-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// tests/lab/short-client.toml with the client's `impl`, written to `dir/scenario.toml`.
fn short_scenario(dir: &Path, implementation: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/short-client.toml")).unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, text.replace("impl = \"chrony\"", &format!("impl = \"{implementation}\""))).unwrap();
    scenario
}

/// Runs the short scenario with the client's `impl`; returns the JSON summary.
fn lab_run(implementation: &str) -> serde_json::Value {
    let r = lab_run_edited(implementation, |t| t);
    assert!(passed_but_for_timing(r.ok, &r.summary), "{}", r.summary);
    // 40 s on the 1 s grid; the initial burst and polls every 16 s.
    assert!(r.summary["hosts"].as_array().unwrap().iter().any(|h| h["name"] == "client" && h["packets_sent"].as_u64().unwrap() >= 3), "{}", r.summary);
    assert!(r.packets.lines().filter(|l| l.contains("\"dst\":\"10.0.0.1:123\"")).count() >= 3, "{}", r.packets);
    r.summary
}

/// The checks a run's summary says failed.
fn failed_checks(v: &serde_json::Value) -> Vec<String> {
    v["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "fail").map(|c| c["check"].as_str().unwrap().to_string()).collect()
}

/// Whether a run passed, or failed only timing checks (its expectations met).
fn passed_but_for_timing(ok: bool, v: &serde_json::Value) -> bool {
    ok || (v["passed"] == true && !failed_checks(v).is_empty() && untimed_failures(v).is_empty())
}

/// The failed checks but those whose verdict depends on the machine's load
/// (`TIMING_CHECKS`: printed, not held against the run).
fn untimed_failures(v: &serde_json::Value) -> Vec<String> {
    let all = failed_checks(v);
    for c in all.iter().filter(|c| ntplab_hwlab::run::TIMING_CHECKS.contains(&c.as_str())) {
        eprintln!("timing check {c} failed on this machine's load: {}", v["checks"]);
    }
    all.into_iter().filter(|c| !ntplab_hwlab::run::TIMING_CHECKS.contains(&c.as_str())).collect()
}

/// The client's `lab_report` events (what its daemon reported) in a trace's events.jsonl.
fn client_reports(events: &str) -> Vec<serde_json::Value> {
    events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "lab_report" && e["host"] == "client")
        .map(|e| e["details"].clone())
        .collect()
}

/// A lab run's JSON summary and its trace's events.jsonl and packets.jsonl.
struct Run {
    /// Exit status 0.
    ok: bool,
    summary: serde_json::Value,
    events: String,
    packets: String,
}

/// Runs the short scenario with the client's `impl`, its text changed by `edit`.
fn lab_run_edited(implementation: &str, edit: impl Fn(String) -> String) -> Run {
    let dir = tmp(implementation);
    let scenario = short_scenario(&dir, implementation);
    std::fs::write(&scenario, edit(std::fs::read_to_string(&scenario).unwrap())).unwrap();
    let out = dir.join("out");
    let output = lab_run_checked(&scenario, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The trace the simulator writes, with the client's samples and captured datagrams.
    let samples = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    assert!(samples.lines().filter(|l| l.contains(",client,")).count() >= 20);
    let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
    assert!(packets.lines().any(|l| l.contains("\"dst\":\"10.0.0.1:123\"")), "{packets}");
    assert!(std::fs::metadata(out.join("packets.pcap")).unwrap().len() > 24);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Run { ok: output.status.success(), summary: v, events, packets }
}

/// `ntplab lab run --format json --out OUT SCENARIO`, asserting the system
/// clock unchanged around it and every namespace of the run gone after it.
fn lab_run_checked(scenario: &Path, out: &Path) -> std::process::Output {
    let before = SystemClockState::read().unwrap();
    let child = ntplab().args(["lab", "run", "--format", "json", "--out"]).arg(out).arg(scenario).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains(&format!("ntplab-{pid}-")), "namespaces left behind");
    output
}

/// A run of tests/lab/`file` (`lab_run_checked`) into `out` under a fresh
/// temporary directory `dir`: its exit status and its JSON summary `v`.
struct LabFileRun {
    dir: PathBuf,
    out: PathBuf,
    ok: bool,
    v: serde_json::Value,
}

fn lab_file_run(file: &str) -> LabFileRun {
    let dir = tmp(file.trim_end_matches(".toml"));
    let out = dir.join("out");
    let lab = lab_run_checked(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab").join(file), &out);
    let v = serde_json::from_slice(&lab.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&lab.stderr)));
    LabFileRun { dir, out, ok: lab.status.success(), v }
}

fn skip_reason(implementation: &str) -> Option<String> {
    if let Some(why) = ntplab_hwlab::netns::unavailable() {
        return Some(why);
    }
    use ntplab_hwlab::programs::{NtpdRs, Ntpsec};
    let missing = match implementation {
        "chrony" => (!Path::new(ntplab_hwlab::programs::CHRONYD).is_file()).then(|| "chronyd is not installed (apt-get install chrony)".to_string()),
        "ntpsec" => Ntpsec { root: Ntpsec::default_root() }.missing(),
        "ntpd-rs" => NtpdRs { daemon: NtpdRs::default_daemon() }.missing(),
        _ => None,
    };
    if missing.is_some() {
        return missing;
    }
    support::build_clock_shim();
    None
}

/// Runs the short scenario with the client's `impl` and checks the client
/// ended up steered: it started 50 ms off, so only a clock its daemon
/// disciplined is within 5 ms of true time after 20 s. (40 s of real time is
/// two or three polls after the initial burst: ntplab's client has been seen
/// anywhere from 0.17 to 0.57 ms RMS here, chronyd 0.05 to 0.08 ms.)
fn client_disciplines_its_clock(implementation: &str) {
    if let Some(why) = skip_reason(implementation) {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    let Run { ok, summary: v, events, .. } = lab_run_edited(implementation, |t| t);
    assert!(passed_but_for_timing(ok, &v), "{v}");
    if implementation == "chrony" {
        // chronyc's reports were read: synchronized to the server, at stratum 2.
        let last = client_reports(&events).pop().unwrap_or_default();
        assert_eq!(last["stratum"], 2, "{events}");
        assert_eq!(last["sources"][0]["selected"], true, "{events}");
    }
    let c = v["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "client").unwrap();
    let rms = c["rms_offset_s"].as_f64().unwrap();
    eprintln!("{implementation} client: rms offset {:.1} us, max {:.1} us", rms * 1e6, c["max_offset_s"].as_f64().unwrap() * 1e6);
    assert!(rms < 5e-3, "{v}");
    assert!(v["lab"]["programs"].to_string().contains(implementation), "{v}");
    assert_eq!(v["passed"], true, "{v}");
}

#[test]
fn a_chronyd_client_disciplines_its_virtual_clock_in_the_lab() {
    client_disciplines_its_clock("chrony");
}

#[test]
fn an_ntplab_client_disciplines_its_virtual_clock_in_the_lab() {
    client_disciplines_its_clock("ntplab");
}

/// ntpsec or ntpd-rs as the client of the short scenario, without its
/// expectation: neither steers its clock within 5 ms in 40 s from 50 ms off
/// on 16 s polls (ntpsec slews at most 500 ppm for its first 900 s; ntpd-rs
/// steers once its filter has 8 samples, about 2 minutes), which the
/// scenarios/lab runs show. What 40 s does show: the daemon runs in the lab
/// under the shim, measures its virtual clock's 50 ms through the emulated
/// link, and the lab reads its reports (ntpq, ntp-ctl) into the trace.
///
/// `deviations`: the checks the program fails, which fail the run.
fn a_peer_client_measures_its_virtual_clock(implementation: &str, deviations: &[&str]) {
    if let Some(why) = skip_reason(implementation) {
        eprintln!("skipped: {implementation} in the virtual lab: {why}");
        return;
    }
    let Run { ok, summary: v, events, .. } = lab_run_edited(implementation, |t| t.split("[[expect]]").next().unwrap().to_string());
    assert_eq!(untimed_failures(&v), deviations, "{v}");
    assert_eq!(ok, failed_checks(&v).is_empty(), "{v}");
    assert!(v["lab"]["programs"].to_string().contains(implementation), "{v}");
    let reports = client_reports(&events);
    assert!(reports.len() >= 3, "{events}");
    let first = reports.iter().find(|r| r["sources"][0]["offset_s"].is_f64()).unwrap_or_else(|| panic!("no source offset in {events}"));
    let measured = first["sources"][0]["offset_s"].as_f64().unwrap();
    eprintln!("{implementation}: first reported offset {:.3} ms; reports {}", measured * 1e3, reports.len());
    // The server serves the real clock, 50 ms behind the client's virtual
    // clock: a daemon reading the real clock would measure about 0. Within
    // 40 s neither corrects the whole offset (ntpd-rs may jump by part of it
    // at its first sample, leaving its uncertainty, some 25 ms; ntpsec slews
    // at most 0.5 ms/s), so the offset it reports is below -5 ms.
    assert!(measured > -0.055 && measured < -0.005, "{first}");
    assert!(reports.iter().all(|r| r.get("error").is_none()), "{events}");
    assert_eq!(reports.last().unwrap()["stratum"], 2, "{events}");
}

#[test]
fn an_ntpsec_client_measures_its_virtual_clock_in_the_lab() {
    // ntpsec 1.2.2's requests come from port 123 (RFC 9109 asks for a
    // random source port) and carry poll 0 (its data minimization).
    a_peer_client_measures_its_virtual_clock("ntpsec", &["client-source-port", "poll-bounds"]);
}

#[test]
fn an_ntpd_rs_client_measures_its_virtual_clock_in_the_lab() {
    a_peer_client_measures_its_virtual_clock("ntpd-rs", &[]);
}

/// A partition of the client from 5 s to 20 s and a link change at 25 s
/// (5 ms more delay each way), realized in real time by the link emulator:
/// datagrams sent during the partition are lost as "partition", none after
/// it; after the change every datagram takes at least 5 ms; the trace lists
/// the three timeline events.
#[test]
fn partitions_and_link_changes_happen_in_real_time() {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    let events = "\n[[event]]\nat = \"5s\"\naction = \"partition\"\nhosts = [\"client\"]\nuntil = \"20s\"\n\
                  \n[[event]]\nat = \"25s\"\naction = \"set_link\"\nlink = [\"client\", \"server\"]\ndelay = \"5100us\"\n";
    let Run { ok, summary: v, events: trace_events, packets } = lab_run_edited("ntplab", |t| format!("{}{events}", t.split("[[expect]]").next().unwrap()));
    assert!(passed_but_for_timing(ok, &v), "{v}");
    let timeline: Vec<&str> = trace_events.lines().filter(|l| l.contains("\"lab_timeline\"")).collect();
    assert_eq!(timeline.len(), 3, "{trace_events}");
    assert!(timeline[0].contains("Partition") && timeline[1].contains("Heal") && timeline[2].contains("SetLink"), "{timeline:?}");
    let rows: Vec<serde_json::Value> = packets.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sent = |r: &serde_json::Value| r["sent_t_s"].as_f64().unwrap();
    let partitioned: Vec<&serde_json::Value> = rows.iter().filter(|r| r["lost"] == "partition").collect();
    assert!(!partitioned.is_empty(), "{packets}");
    // The loop applies events within its 0.2 s tick.
    assert!(partitioned.iter().all(|r| sent(r) >= 5.0 && sent(r) < 20.5), "{packets}");
    let after: Vec<&serde_json::Value> = rows.iter().filter(|r| sent(r) >= 25.5).collect();
    assert!(!after.is_empty(), "{packets}");
    for r in after {
        let took = r["received_t_s"].as_f64().unwrap() - sent(r);
        assert!(took >= 0.005, "{r}");
    }
}

/// Frames in a pcap file (after its 24-octet header, a 16-octet record
/// header each with the captured length at octets 8..12, little-endian).
fn pcap_frames(bytes: &[u8]) -> usize {
    let (mut at, mut n) = (24, 0);
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
        n += 1;
    }
    n
}

/// In a trace's packets.jsonl: (datagrams that arrived twice: same octets
/// and send time, two arrivals; datagrams of the client's that a later one
/// overtook by more than `held_s` - 0.5 s, frames of delivered lines, the
/// delivered lines).
fn doubled_and_overtaken(packets: &str, held_s: f64) -> (usize, usize, Vec<u64>, usize) {
    let rows: Vec<serde_json::Value> = packets.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let delivered: Vec<&serde_json::Value> = rows.iter().filter(|r| r["received_t_s"].is_f64()).collect();
    let mut copies: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in &delivered {
        *copies.entry((r["bytes"].to_string(), r["sent"].to_string())).or_default() += 1;
    }
    let doubled = copies.values().filter(|&&n| n == 2).count();
    let t = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    let requests: Vec<&&serde_json::Value> = delivered.iter().filter(|r| r["dst"] == "10.0.0.1:123").collect();
    let overtaken = requests
        .iter()
        .filter(|a| t(a, "received_t_s") - t(a, "sent_t_s") > held_s - 0.5 && requests.iter().any(|b| t(b, "sent_t_s") > t(a, "sent_t_s") && t(b, "received_t_s") < t(a, "received_t_s")))
        .count();
    let frames = delivered.iter().map(|r| r["frame"].as_u64().unwrap()).collect();
    (doubled, overtaken, frames, delivered.len())
}

/// The client's requests in send order: (arrivals, whether one was held back 2.5 s or more).
fn request_fates(packets: &str) -> Vec<(usize, bool)> {
    let rows: Vec<serde_json::Value> = packets.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["dst"] == "10.0.0.1:123").collect();
    let mut by_send: std::collections::BTreeMap<String, (f64, usize, bool)> = Default::default();
    for r in &rows {
        let sent = r["sent_t_s"].as_f64().unwrap();
        let e = by_send.entry(r["sent"].to_string()).or_insert((sent, 0, false));
        if let Some(at) = r["received_t_s"].as_f64() {
            e.1 += 1;
            e.2 |= at - sent >= 2.5;
        }
    }
    let mut v: Vec<(f64, usize, bool)> = by_send.into_values().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v.into_iter().map(|(_, n, held)| (n, held)).collect()
}

/// Runs tests/lab/`file` in the simulator and in the lab (each writing its
/// trace to DIR/sim and DIR/lab; [`lab_run_checked`]): (DIR, the simulator's summary, whether the lab run exited 0, its
/// summary); None (printed) when the lab is unavailable.
fn sim_and_lab(file: &str) -> Option<(PathBuf, serde_json::Value, bool, serde_json::Value)> {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return None;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab").join(file);
    let dir = tmp(file);
    let sim = ntplab().args(["run", "--format", "json", "--out"]).arg(dir.join("sim")).arg(&scenario).output().unwrap();
    let sim_v: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let lab = lab_run_checked(&scenario, &dir.join("lab"));
    let lab_v: serde_json::Value = serde_json::from_slice(&lab.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&lab.stderr)));
    print_host_figures(file, &sim_v, &lab_v);
    Some((dir, sim_v, lab.status.success(), lab_v))
}

/// Prints every host's figures of a simulator run and a lab run of `file`
/// (their JSON summaries), a line each, short enough to survive a CI log's
/// truncation: what a failing sim-vs-lab test is read by.
fn print_host_figures(file: &str, sim: &serde_json::Value, lab: &serde_json::Value) {
    for (run, v) in [("simulator", sim), ("lab", lab)] {
        for h in v["hosts"].as_array().unwrap() {
            eprintln!("{file}: {run} {}: sync {} s, max {} s, rms {} s, steps {}, sent {}", h["name"], h["sync_time_s"], h["max_offset_s"], h["rms_offset_s"], h["steps"], h["packets_sent"]);
        }
    }
}

/// tests/lab/dup-reorder.toml in the simulator and in the lab (30 s): a link
/// that doubles half the datagrams and holds half the client's requests back
/// 3 s. Both traces show datagrams arriving twice (two lines and two pcap
/// frames, same octets and send time) and requests overtaken by the next
/// one of the burst; the lab's emulator draws the simulator's streams, so
/// the k-th request is doubled or held back in the lab as in the simulator.
/// The same checks judge both.
#[test]
fn duplication_and_reordering_happen_in_real_time_as_in_the_simulator() {
    let Some((dir, sim_v, lab_ok, lab_v)) = sim_and_lab("dup-reorder.toml") else { return };
    for (name, out) in [("simulator", dir.join("sim")), ("lab", dir.join("lab"))] {
        let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
        let (doubled, overtaken, frames, delivered) = doubled_and_overtaken(&packets, 3.0);
        let pcap = pcap_frames(&std::fs::read(out.join("packets.pcap")).unwrap());
        eprintln!("{name}: {doubled} datagrams arrived twice, {overtaken} requests overtaken, {delivered} arrivals, {pcap} pcap frames");
        assert!(doubled >= 2 && overtaken >= 1, "{name}: {packets}");
        // One frame per arrival, numbered as the lines say.
        assert_eq!(pcap, delivered, "{name}");
        assert_eq!(frames, (1..=delivered as u64).collect::<Vec<_>>(), "{name}");
    }
    // The k-th request has the same fate in both: the same streams drawn in the same order.
    let fates = |out: PathBuf| request_fates(&std::fs::read_to_string(out.join("packets.jsonl")).unwrap());
    let (s, l) = (fates(dir.join("sim")), fates(dir.join("lab")));
    let n = s.len().min(l.len()).saturating_sub(2);
    eprintln!("request fates (arrivals, held back): simulator {s:?}, lab {l:?}");
    assert!(n >= 6 && s[..n] == l[..n], "simulator {s:?}\nlab {l:?}");
    assert!(passed_but_for_timing(lab_ok, &lab_v), "{lab_v}");
    assert_eq!(sim_v["passed"], true, "{sim_v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host's (t_s, offset_s) rows of a trace's samples.csv.
fn offsets(samples: &str, host: &str) -> Vec<(f64, f64)> {
    samples
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2] == host).then(|| (f[1].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect()
}

/// tests/lab/clock-step.toml in the simulator and in the lab (30 s): the
/// ntplab client's clock is stepped 30 ms ahead at 11 s and its
/// oscillator's frequency changed at 12 s; in the lab through the shim's
/// control page while the daemon runs. In both traces the client's true
/// offset (samples.csv) is within 5 ms before the step, shows the step
/// (20-35 ms ahead) within 3 s after it, and is back within 5 ms after
/// 20 s: the daemon saw it and corrected it. The lab's trace has both
/// changes as `lab_timeline` events at their time; the same verdicts.
#[test]
fn a_clock_step_and_a_frequency_change_mid_run_are_seen_and_corrected_as_in_the_simulator() {
    let Some((dir, sim_v, lab_ok, lab_v)) = sim_and_lab("clock-step.toml") else { return };
    // The hosts start a fraction of a second into a lab trace; events count from then.
    for (name, out, late) in [("simulator", dir.join("sim"), 0.0), ("lab", dir.join("lab"), 1.5)] {
        let rows = offsets(&std::fs::read_to_string(out.join("samples.csv")).unwrap(), "client");
        let ms = |r: &[(f64, f64)]| r.iter().map(|(t, o)| format!("{t:.0}:{:.2}", o * 1e3)).collect::<Vec<_>>().join(" ");
        eprintln!("{name}: client offset (s:ms) {}", ms(&rows));
        assert!(rows.iter().filter(|(t, _)| *t < 11.0).all(|(_, o)| o.abs() < 5e-3), "{name}: {}", ms(&rows));
        let seen = rows.iter().filter(|(t, _)| *t >= 11.0 && *t <= 14.0 + late).map(|(_, o)| *o).fold(f64::NEG_INFINITY, f64::max);
        assert!((0.02..0.035).contains(&seen), "{name}: the step is not in the true offset: {}", ms(&rows));
        assert!(rows.iter().filter(|(t, _)| *t >= 20.0).all(|(_, o)| o.abs() < 5e-3), "{name}: not corrected: {}", ms(&rows));
    }
    let events = std::fs::read_to_string(dir.join("lab/events.jsonl")).unwrap();
    let timeline: Vec<serde_json::Value> = events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["kind"] == "lab_timeline").collect();
    assert_eq!(timeline.len(), 2, "{events}");
    for (e, (what, at)) in timeline.iter().zip([("StepClock", 11.0), ("SetFrequency", 12.0)]) {
        let t = e["t_s"].as_f64().unwrap();
        assert!(e["details"]["action"].as_str().unwrap().starts_with(what) && t >= at && t < at + 1.5, "{e}");
    }
    let verdicts = |v: &serde_json::Value| v["expectations"].as_array().unwrap().iter().map(|e| e["passed"].clone()).collect::<Vec<_>>();
    assert_eq!(verdicts(&sim_v), verdicts(&lab_v), "sim {sim_v}\nlab {lab_v}");
    assert_eq!(sim_v["passed"], true, "{sim_v}");
    assert!(passed_but_for_timing(lab_ok, &lab_v), "{lab_v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/ipv6.toml (30 s): an ntplab server and an ntplab and a chronyd
/// client, all on IPv6 addresses. Both clients poll the server over IPv6
/// through the link emulator (the captured datagrams carry the scenario's
/// IPv6 addresses, one pcap frame per arrival), their configurations name
/// the server's IPv6 address, both steer their clocks from 50 ms off to
/// within 5 ms, and the run passes; the system clock unchanged, no
/// namespace left.
#[test]
fn ipv6_hosts_run_in_the_lab() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: IPv6 in the virtual lab: {why}");
        return;
    }
    let LabFileRun { dir, out, ok, v } = lab_file_run("ipv6.toml");
    assert!(passed_but_for_timing(ok, &v), "{v}");
    let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = packets.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for client in ["[2001:db8::2]:", "[2001:db8::3]:"] {
        let requests = rows.iter().filter(|r| r["src"].as_str().unwrap().starts_with(client) && r["dst"] == "[2001:db8::1]:123").count();
        let replies = rows.iter().filter(|r| r["dst"].as_str().unwrap().starts_with(client) && r["received_t_s"].is_f64()).count();
        assert!(requests >= 3 && replies >= 3, "{client}: {requests} requests, {replies} replies: {packets}");
    }
    assert!(rows.iter().all(|r| r["src"].as_str().unwrap().starts_with("[2001:db8::")), "{packets}");
    let delivered = rows.iter().filter(|r| r["received_t_s"].is_f64()).count();
    assert_eq!(pcap_frames(&std::fs::read(out.join("packets.pcap")).unwrap()), delivered);
    assert!(std::fs::read_to_string(out.join("chrony.chrony.conf")).unwrap().contains("server 2001:db8::1 port 123"));
    assert!(std::fs::read_to_string(out.join("client.ntplab.toml")).unwrap().contains("address = \"[2001:db8::1]:123\""));
    for h in v["hosts"].as_array().unwrap().iter().filter(|h| h["name"] != "server") {
        eprintln!("IPv6: {} rms {:.1} us, max {:.1} us", h["name"], h["rms_offset_s"].as_f64().unwrap() * 1e6, h["max_offset_s"].as_f64().unwrap() * 1e6);
    }
    assert_eq!(v["passed"], true, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/makestep.toml (25 s): ntplab and chronyd clients 100 s
/// behind, with a host `step` the lab writes as chronyd's `makestep 1 1`
/// and as ntplab's `[clock]` keys: each steps its virtual clock once and is
/// within 5 ms after 15 s; the system clock unchanged.
#[test]
fn a_step_setting_is_chronys_makestep_and_ntplabs_step_keys_in_the_lab() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: makestep in the virtual lab: {why}");
        return;
    }
    let LabFileRun { dir, out, ok, v } = lab_file_run("makestep.toml");
    assert!(std::fs::read_to_string(out.join("chrony.chrony.conf")).unwrap().contains("\nmakestep 1 1\n"));
    let ntplab_conf = std::fs::read_to_string(out.join("client.ntplab.toml")).unwrap();
    assert!(ntplab_conf.contains("step_threshold = 1e0\npanic_threshold = 0e0\npanic_at_start = true\nstep_updates = 1\n"), "{ntplab_conf}");
    for h in v["hosts"].as_array().unwrap().iter().filter(|h| h["name"] != "server") {
        eprintln!("makestep: {} steps {}, max {:.1} us", h["name"], h["steps"], h["max_offset_s"].as_f64().unwrap_or(f64::NAN) * 1e6);
    }
    assert!(passed_but_for_timing(ok, &v), "{v}");
    assert_eq!(v["passed"], true, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/step-ntpsec-ntpd-rs.toml (40 s): ntpsec and ntpd-rs clients
/// 100 s behind, with the host `step` each program can say, which the lab
/// writes as ntpsec's `tinker step 1 stepout 900 panic 0` and as ntpd-rs's
/// `[synchronization.algorithm] step-threshold` with its panic thresholds
/// off: each steps its virtual clock once and is within 50 ms from 20 s on
/// (ntpd-rs's step leaves its first sample's error, ms to tens of ms, until
/// its filter has 8 samples); the system clock unchanged. ntpsec's requests
/// fail `client-source-port` and `poll-bounds`, as in its other lab tests.
#[test]
fn a_step_setting_is_ntpsecs_tinker_step_and_ntpd_rs_step_threshold_in_the_lab() {
    for implementation in ["ntpsec", "ntpd-rs"] {
        if let Some(why) = skip_reason(implementation) {
            eprintln!("skipped: step settings of ntpsec and ntpd-rs in the virtual lab: {why}");
            return;
        }
    }
    let LabFileRun { dir, out, v, .. } = lab_file_run("step-ntpsec-ntpd-rs.toml");
    assert!(std::fs::read_to_string(out.join("ntpsec.ntp.conf")).unwrap().contains("\ntinker step 1e0 stepout 900 panic 0\n"));
    let rs = std::fs::read_to_string(out.join("ntpd-rs.ntp.toml")).unwrap();
    assert!(rs.contains("\nsingle-step-panic-threshold = \"inf\"\n") && rs.contains("\n[synchronization.algorithm]\nstep-threshold = 1e0\n"), "{rs}");
    for h in v["hosts"].as_array().unwrap().iter().filter(|h| h["name"] != "server") {
        eprintln!("step settings: {} steps {}, max {:.1} us", h["name"], h["steps"], h["max_offset_s"].as_f64().unwrap_or(f64::NAN) * 1e6);
    }
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(untimed_failures(&v), ["client-source-port", "poll-bounds"], "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/deny-ntpsec.toml (40 s): an ntpsec server whose access list
/// denies one of two ntplab clients, written as its `restrict ... noserve`
/// line: it answers the other client only, which selects it, and sends the
/// denied one nothing. ntpsec's first replies carry INIT (stratum 0) until
/// it selects its local refclock, which fails `refid-never-init`, as in its
/// other server runs.
#[test]
fn an_ntpsec_server_denies_a_client_by_its_restrict_lines_in_the_lab() {
    if let Some(why) = skip_reason("ntpsec") {
        eprintln!("skipped: ntpsec access rules in the virtual lab: {why}");
        return;
    }
    let LabFileRun { dir, out, v, .. } = lab_file_run("deny-ntpsec.toml");
    assert!(std::fs::read_to_string(out.join("server.ntp.conf")).unwrap().contains("\nrestrict default nomodify nopeer noquery\nrestrict 10.0.0.3/32 noserve nomodify nopeer noquery\n"));
    assert_eq!(v["passed"], true, "{v}");
    assert!(untimed_failures(&v).iter().all(|c| c == "refid-never-init"), "{v}");
    let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
    let from_server = |to: &str| packets.lines().filter(|l| l.contains("\"src\":\"10.0.0.1:123\"") && l.contains(&format!("\"dst\":\"{to}:"))).count();
    assert!(from_server("10.0.0.2") >= 3, "{packets}");
    assert_eq!(from_server("10.0.0.3"), 0, "{packets}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/max-change.toml (75 s): ntplab and chronyd clients with
/// `max_change` (chronyd's `maxchange 0.1 1 1`), their clocks stepped by 1 s
/// at 20 s: each skips one update and exits on the next, which the lab
/// counts (2 each: ntplab's tally, chronyd's log) and takes as the end of
/// that host's daemon, not as a failed run; neither sends a request after
/// its exit.
#[test]
fn max_change_refusals_are_counted_and_its_exit_ends_the_host_in_the_lab() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: max_change in the virtual lab: {why}");
        return;
    }
    let LabFileRun { dir, out, ok, v } = lab_file_run("max-change.toml");
    assert!(std::fs::read_to_string(out.join("chrony.chrony.conf")).unwrap().contains("\nmaxchange 1e-1 1 1\n"));
    assert!(passed_but_for_timing(ok, &v), "{v}");
    // No request after the exit: the last request of each client is before
    // the end of the run by more than a poll (16 s).
    let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
    for (host, address) in [("client", "10.0.0.2"), ("chrony", "10.0.0.3")] {
        let last = packets
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|p| p["src"].as_str().is_some_and(|s| s.starts_with(&format!("{address}:"))))
            .filter_map(|p| p["sent_t_s"].as_f64())
            .fold(f64::NAN, f64::max);
        assert!(last < 75.0 - 16.0, "{host}'s last request at {last} s: it did not exit");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same short scenario (ntplab client) in the simulator and in the lab:
/// the same verdict on every expectation; the figures side by side.
#[test]
fn sim_and_lab_give_the_same_verdicts_on_the_short_scenario() {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    let dir = tmp("sim");
    let scenario = short_scenario(&dir, "ntplab");
    let out = ntplab().args(["run", "--format", "json"]).arg(&scenario).output().unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lab = lab_run("ntplab");
    print_host_figures("short-client.toml (ntplab)", &sim, &lab);
    let verdicts = |v: &serde_json::Value| v["expectations"].as_array().unwrap().iter().map(|e| (e["name"].to_string(), e["passed"].clone())).collect::<Vec<_>>();
    let rms = |v: &serde_json::Value| v["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "client").unwrap()["rms_offset_s"].as_f64().unwrap();
    eprintln!("ntplab client rms offset: simulator {:.1} us, lab {:.1} us", rms(&sim) * 1e6, rms(&lab) * 1e6);
    assert_eq!(verdicts(&sim), verdicts(&lab), "sim {sim}\nlab {lab}");
    assert_eq!(sim["passed"], lab["passed"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Largest differences between a scenario's simulator and lab runs that
/// count as agreeing: the time to synchronize within two polls (32 s), the
/// RMS offset after `converged_after` within 1 ms (the lab adds the
/// scheduler's and the emulator's latencies to every timestamp: 0.05 to
/// 0.6 ms RMS in 40 s runs here). The RMS frequency error is printed, not
/// compared: under the shim ntplab's daemon slews through the kernel
/// frequency (`--control-system-clock`), so the lab's samples count its
/// slews as frequency error, which the simulator's phase slews are not
/// (chrony-default-short: 0.7 ppm in the simulator, 1.5 and 17.8 ppm in two
/// lab runs).
const SYNC_TOLERANCE_S: f64 = 32.0;
const RMS_TOLERANCE_S: f64 = 1e-3;

/// Runs `file` (ntplab hosts only) in the simulator and in the lab, prints
/// the figures side by side and requires the same verdict on every
/// expectation and `host`'s figures within the tolerances above; then
/// `more` looks at the lab's output directory and summary.
fn sim_and_lab_agree(file: &str, host: &str, more: fn(&Path, &serde_json::Value)) {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    sim_and_lab_agree_with(file, host, &[], &[("sync_time_s", SYNC_TOLERANCE_S), ("rms_offset_s", RMS_TOLERANCE_S)], more);
}

/// [`sim_and_lab_agree`] with more arguments for `lab run`, comparing
/// `host`'s figures `compare` (key, tolerance) and printing the others (the
/// caller checks that the lab is available).
fn sim_and_lab_agree_with(file: &str, host: &str, lab_args: &[&std::ffi::OsStr], compare: &[(&str, f64)], more: fn(&Path, &serde_json::Value)) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab").join(file);
    let dir = tmp(file);
    let out = ntplab().args(["run", "--format", "json"]).arg(&scenario).output().unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = SystemClockState::read().unwrap();
    let out = ntplab().args(["lab", "run", "--format", "json", "--out"]).arg(dir.join("out")).args(lab_args).arg(&scenario).output().unwrap();
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let client = |v: &serde_json::Value| v["hosts"].as_array().unwrap().iter().find(|h| h["name"] == host).unwrap().clone();
    let (s, l) = (client(&sim), client(&lab));
    print_host_figures(file, &sim, &lab);
    let mut differences = Vec::new();
    eprintln!("{file}: {host} rms_frequency_error: simulator {:?}, lab {:?} (not compared)", s["rms_frequency_error"], l["rms_frequency_error"]);
    for key in ["sync_time_s", "rms_offset_s"].into_iter().filter(|k| !compare.iter().any(|(c, _)| c == k)) {
        eprintln!("{file}: {host} {key}: simulator {:?}, lab {:?} (not compared)", s[key], l[key]);
    }
    for &(key, tolerance) in compare {
        let (a, b) = (s[key].as_f64(), l[key].as_f64());
        eprintln!("{file}: {host} {key}: simulator {a:?}, lab {b:?} (tolerance {tolerance:e})");
        match (a, b) {
            (Some(a), Some(b)) if (a - b).abs() <= tolerance => {}
            _ => differences.push(format!("{key}: simulator {a:?}, lab {b:?}, beyond {tolerance:e}")),
        }
    }
    let verdicts = |v: &serde_json::Value| v["expectations"].as_array().unwrap().iter().map(|e| (e["name"].to_string(), e["passed"].clone())).collect::<Vec<_>>();
    for (a, b) in verdicts(&sim).iter().zip(verdicts(&lab)) {
        eprintln!("{file}: expectation {}: simulator {}, lab {}", a.0, a.1, b.1);
        if a.1 != b.1 {
            differences.push(format!("expectation {}: simulator {}, lab {}", a.0, a.1, b.1));
        }
    }
    assert!(differences.is_empty(), "{file}: the simulator and the lab differ:\n{}\nsim {sim}\nlab {lab}", differences.join("\n"));
    assert_eq!(sim["passed"], true, "{sim}");
    assert!(passed_but_for_timing(out.status.success(), &lab), "{lab}");
    more(&dir.join("out"), &lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// chrony's default test (0.1 s off, 100 ppm, wander 1e-9) shortened to 90 s
/// of 16 s polls: the shim now draws the simulator's random walk.
#[test]
fn sim_and_lab_agree_on_chrony_default_shortened() {
    sim_and_lab_agree("chrony-default-short.toml", "client", |_, _| {});
}

/// chrony's default test as it is (default polling, no iburst) for 30
/// minutes of real time: too long for CI, so run by hand (`cargo nextest run
/// --release -p ntplab --test lab_cli --run-ignored only
/// sim_and_lab_agree_on_chrony_default_for_30_minutes --no-capture`). The
/// time to synchronize within two polls of 64 s, the RMS offset within 1 ms.
#[test]
#[ignore = "30 minutes of real time"]
fn sim_and_lab_agree_on_chrony_default_for_30_minutes() {
    sim_and_lab_agree_with("chrony-default-30min.toml", "client", &[], &[("sync_time_s", 128.0), ("rms_offset_s", RMS_TOLERANCE_S)], |_, _| {});
}

/// One falseticker (1 s off) of five servers, 120 s: outvoted in both.
#[test]
fn sim_and_lab_agree_on_a_falseticker_shortened() {
    sim_and_lab_agree("falseticker-short.toml", "client", |_, _| {});
}

/// Scripted peers in the lab (`ntplab lab peer`, one per `role =
/// "scripted"` host): a falseticker 1 s off, a garbage peer and a RATE
/// kisser beside four ntplab servers, 40 s. The same verdicts as in the
/// simulator; in the lab, each peer answered from its own file, the
/// falseticker's transmit timestamps lead the capture's send times by 1 s,
/// and `falsetickers-outvoted` judges the client by the selections its
/// daemon wrote.
#[test]
fn sim_and_lab_agree_on_scripted_peers() {
    sim_and_lab_agree("scripted-peers.toml", "client", |out, lab| {
        let check = lab["checks"].as_array().unwrap().iter().find(|c| c["check"] == "falsetickers-outvoted").unwrap();
        assert_eq!(check["status"], "pass", "{check}");
        for peer in ["liar", "noise", "limiter"] {
            let conf = std::fs::read_to_string(out.join(format!("{peer}.peer.toml"))).unwrap();
            assert!(conf.contains("role = \"scripted\""), "{conf}");
        }
        let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap();
        let replies = |src: &str| -> Vec<serde_json::Value> {
            packets.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|p| p["src"] == src).collect()
        };
        assert!(!replies("10.0.0.2:123").is_empty() && !replies("10.0.0.3:123").is_empty(), "{packets}");
        let liar = replies("10.0.0.1:123");
        assert!(liar.len() >= 3, "{packets}");
        for r in &liar {
            let bytes = r["bytes"].as_str().unwrap();
            let secs = u64::from_str_radix(&bytes[80..88], 16).unwrap() as f64 + u64::from_str_radix(&bytes[88..96], 16).unwrap() as f64 / 4_294_967_296.0;
            let transmit_unix = secs - 2_208_988_800.0;
            let sent = r["sent"].as_str().unwrap();
            let sent_unix = ntplab_proto::time::NtpTime::parse_rfc3339(sent).unwrap().to_unix();
            let lead = transmit_unix - (sent_unix.0 as f64 + f64::from(sent_unix.1) * 1e-9);
            assert!((lead - 1.0).abs() < 0.01, "the falseticker's transmit timestamp leads its send by {lead} s: {r}");
        }
    });
}

/// An inserted leap second (tests/lab/leap-second.toml, 80 s): the lab runs
/// a scenario with leap seconds on its own dates, so every clock shim starts
/// at 2016-12-31T23:59:20Z. The server is told of the leap (`[local] leap`),
/// both daemons arm it in their virtual kernel clocks (STA_INS) and the
/// kernel model repeats 23:59:59; judged against UTC on the NTP timescale,
/// as the simulator judges it, neither clock is a second off after midnight.
#[test]
fn sim_and_lab_agree_on_a_leap_second() {
    sim_and_lab_agree("leap-second.toml", "client", |out, _| {
        let conf = std::fs::read_to_string(out.join("server.ntplab.toml")).unwrap();
        assert!(conf.contains("\n[local]\nstratum = 1\nleap = \"2016-12-31T23:59:60Z\"\n"), "{conf}");
        let events: Vec<serde_json::Value> =
            std::fs::read_to_string(out.join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(events[0]["time"].as_str().unwrap().starts_with("2016-12-31T23:59:20"), "the trace is on the scenario's dates: {}", events[0]);
        for host in ["server", "client"] {
            let status: Vec<(f64, i64)> = events
                .iter()
                .filter(|e| e["host"] == host && e["kind"] == "lab_clock_call" && e["details"]["status"].is_i64())
                .map(|e| (e["t_s"].as_f64().unwrap(), e["details"]["status"].as_i64().unwrap()))
                .collect();
            assert!(status.iter().any(|&(t, st)| t < 40.0 && st & 0x10 != 0), "{host} armed the leap (STA_INS) before midnight: {status:?}");
            assert!(status.last().is_some_and(|&(t, st)| t >= 40.0 && st & 0x10 == 0), "{host} disarmed it after midnight: {status:?}");
        }
        let samples = std::fs::read_to_string(out.join("samples.csv")).unwrap();
        let around: Vec<(f64, f64)> =
            ["client", "server"].iter().flat_map(|h| offsets(&samples, h)).filter(|&(t, _)| (30.0..=50.0).contains(&t)).collect();
        assert_eq!(around.len(), 42, "{samples}");
        assert!(around.iter().all(|&(_, o)| o.abs() < 1e-3), "no clock is a second off across the leap: {around:?}");
    });
}

/// A chronyd client through an inserted leap second (tests/lab/leap-second-chrony.toml,
/// 60 s from 2016-12-31T23:59:30Z): chronyd learns of the leap from the
/// ntplab server, arms it in its clock shim and disarms it after midnight
/// (its log says both), and stays within 1 ms of UTC across it.
#[test]
fn a_chronyd_client_applies_a_leap_second_in_the_lab() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: a leap second with chronyd in the virtual lab: {why}");
        return;
    }
    let LabFileRun { dir, out, ok, v } = lab_file_run("leap-second-chrony.toml");
    assert!(passed_but_for_timing(ok, &v), "{v}");
    let log = std::fs::read_to_string(out.join("chrony.log")).unwrap();
    let armed = log.find("System clock status set to insert leap second").unwrap_or_else(|| panic!("chronyd did not arm the leap: {log}"));
    let disarmed = log.find("System clock status set to not insert/delete leap second").unwrap_or_else(|| panic!("chronyd did not disarm the leap: {log}"));
    assert!(armed < disarmed && log[armed.saturating_sub(21)..armed].starts_with("2016-12-31T23:59:"), "{log}");
    let samples = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    let around: Vec<f64> = offsets(&samples, "chrony").into_iter().filter(|&(t, _)| (25.0..=40.0).contains(&t)).map(|(_, o)| o).collect();
    assert!(around.len() == 16 && around.iter().all(|o| o.abs() < 1e-3), "chronyd is never a second off across the leap: {around:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A GPS+PPS stratum-1 server (ntplab's daemon reading a pty and a SOCK
/// socket fed from the simulator's receiver and pulse models in real time)
/// and a client, 60 s: the same verdicts as in the simulator, the server's
/// figures within the tolerances, its replies carrying the refclock's
/// reference ID (refid-stratum-1 passes), and the feeder delivered the
/// sentences and a pulse a second. (Its client is slower to settle in the
/// lab than in the simulator: docs/hwlab.md.)
#[test]
fn sim_and_lab_agree_on_a_gps_pps_server() {
    sim_and_lab_agree("gps-pps-short.toml", "gps-server", |out, lab| {
        let fed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("gps-server.refclock.json")).unwrap()).unwrap();
        eprintln!("gps-server fed: {fed}");
        assert!(fed["pulses"].as_u64().unwrap() >= 50 && fed["serial_bytes"].as_u64().unwrap() >= 50 * 150, "{fed}");
        let conf = std::fs::read_to_string(out.join("gps-server.ntplab.toml")).unwrap();
        assert!(conf.contains("serial = \"/dev/pts/") && conf.contains("pps_socket = "), "{conf}");
        let check = lab["checks"].as_array().unwrap().iter().find(|c| c["check"] == "refid-stratum-1").unwrap();
        assert_eq!(check["status"], "pass", "{check}");
        let client = lab["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "client").unwrap();
        eprintln!("its client in the lab: rms {:?} s, max {:?} s, sync {:?} s", client["rms_offset_s"], client["max_offset_s"], client["sync_time_s"]);
    });
}

/// A GPS receiver (NMEA only) on a serial port named in a lab file: the
/// test opens a pty pair, names one end as the receiver's serial port in
/// LAB.toml and feeds the other with the scenario's own NMEA model in real
/// time (without its fix loss: a real receiver keeps its fix, the lab cuts
/// the line). The lab relays the port into the daemon's pty and cuts it
/// from 40 to 50 s; the run is judged with the same checks and expectations
/// as the simulator's run of the same file, within the same tolerances.
#[test]
fn a_serial_gps_named_in_the_lab_file_is_relayed_cut_for_its_fix_loss_and_judged_as_in_the_simulator() {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/gps-serial.toml");
    let scenario = ntplab_sim::scenario::Scenario::load(&file).unwrap();
    let mut model = scenario.hosts[0].refclock.clone().unwrap().gps;
    assert_eq!(model.faults.len(), 1, "the scenario's fix loss");
    model.faults.clear();
    let receiver = ntplab_hwlab::refclock::Pty::open().unwrap();
    let dir = tmp("gps-serial-lab");
    let lab = dir.join("LAB.toml");
    std::fs::write(
        &lab,
        format!(
            "[[gps]]\nname = \"receiver\"\nserial = \"{}\"\nbaud = 9600\n\n[[interface]]\nname = \"lo\"\nhw_timestamping = false\n\n\
             [[host]]\nname = \"gps-server\"\nrefclock = {{ gps = \"receiver\" }}\n",
            receiver.slave_path.display()
        ),
    )
    .unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let feeder = std::thread::spawn(move || {
        let gps = ntplab_sim::gps::GpsReceiver::new(model);
        let mut rng = ntplab_sim::rng::SimRng::derive(1, "test-receiver");
        let now_ns = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
        let mut written = 0usize;
        let mut second = now_ns() / 1_000_000_000 + 1;
        while !flag.load(Ordering::Acquire) {
            let t = ntplab_proto::time::NtpTime::from_unix(second as i64, 0);
            for c in gps.emit_second(t, &mut ntplab_sim::refclock::Draws(&mut rng)) {
                let (s, n) = c.true_time.to_unix();
                let at = i128::from(s) * 1_000_000_000 + i128::from(n);
                // Sleep to 1 ms before the chunk's time, then wait it out: a
                // receiver's bytes leave on time, a sleeping thread wakes late.
                while now_ns() < at - 1_000_000 && !flag.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_nanos(((at - 1_000_000 - now_ns()).max(0) as u64).min(50_000_000)));
                }
                while now_ns() < at {
                    std::hint::spin_loop();
                }
                written += receiver.write(&c.bytes);
            }
            second += 1;
        }
        written
    });
    // The host's sync_time_s counts 1 ms as synchronized; NMEA alone through
    // the test's writes, the relay and two ptys ended 1.01 ms off in a lab
    // run whose feeder slept to each chunk's time (0.24 ms in the
    // simulator), so the scenario's sync_time expectation says `within =
    // "5ms"`, and that verdict is compared instead (sync_time_s is printed).
    sim_and_lab_agree_with("gps-serial.toml", "gps-server", &[std::ffi::OsStr::new("--lab"), lab.as_os_str()], &[("rms_offset_s", RMS_TOLERANCE_S)], |out, lab| {
        let relayed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("gps-server.refclock.json")).unwrap()).unwrap();
        eprintln!("gps-server relayed: {relayed}");
        // About 190 octets a second: 50 s relayed, 10 s cut.
        assert!(relayed["relayed_bytes"].as_u64().unwrap() >= 40 * 150, "{relayed}");
        assert!((8 * 150..=11 * 250).contains(&relayed["cut_bytes"].as_u64().unwrap()), "{relayed}");
        let cut = relayed["cuts_s"][0].as_array().unwrap();
        assert!((cut[0].as_f64().unwrap() - 40.0).abs() < 1.0 && (cut[1].as_f64().unwrap() - 50.0).abs() < 1.0, "{relayed}");
        let conf = std::fs::read_to_string(out.join("gps-server.ntplab.toml")).unwrap();
        assert!(conf.contains(&format!("serial = \"{}\"\nbaud = 9600", relayed["relayed_to"].as_str().unwrap())) && !conf.contains("pps_"), "{conf}");
        assert_ne!(relayed["relayed_to"], relayed["serial"], "the daemon reads the lab's pty, not the receiver's port");
        let inventory = lab["lab"]["inventory"].as_array().unwrap();
        assert!(inventory.iter().any(|l| l.as_str().unwrap().contains("gps `receiver`: serial /dev/pts/") && l.as_str().unwrap().ends_with("at 9600 baud, host `gps-server`")), "{inventory:?}");
        assert!(inventory.iter().any(|l| l.as_str().unwrap().ends_with("interface `lo`: hardware timestamping no, no PHC")), "{inventory:?}");
        let check = lab["checks"].as_array().unwrap().iter().find(|c| c["check"] == "refid-stratum-1").unwrap();
        assert_eq!(check["status"], "pass", "{check}");
    });
    stop.store(true, Ordering::Release);
    let written = feeder.join().unwrap();
    assert!(written >= 60 * 150, "the test fed {written} octets");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a lab file names is checked before anything runs, and what the
/// lab cannot do with it is refused with the reason (or skipped). No root
/// needed: nothing runs.
#[test]
fn a_lab_file_is_checked_and_what_the_lab_cannot_do_with_it_refused() {
    let dir = tmp("labfile");
    let gps_pps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/gps-pps-short.toml");
    let lab = dir.join("LAB.toml");
    let run = |scenario: &Path, more: &[&str]| {
        let out = ntplab().args(["lab", "run", "--out"]).arg(dir.join("out")).arg("--lab").arg(&lab).args(more).arg(scenario).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let host = "[[host]]\nname = \"gps-server\"\nrefclock = { gps = \"g\", pps = \"p\" }\n";
    // A device that is not on this machine, named with the key to fix.
    std::fs::write(&lab, format!("[[gps]]\nname = \"g\"\nserial = \"/dev/null\"\nbaud = 9600\n[[pps]]\nname = \"p\"\ndevice = \"/dev/ntplab-no-pps9\"\n{host}")).unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{}: [[pps]] `p`: device /dev/ntplab-no-pps9: No such file", lab.display())) && err.contains("fix `device`"), "{err}");
    // An unknown key, with its line.
    std::fs::write(&lab, "[[gps]]\nname = \"g\"\nserial = \"/dev/null\"\nbaud = 9600\nflow = \"none\"\n").unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert!(code == Some(1) && err.contains(&format!("{}:5:1: unknown field `flow`", lab.display())), "{err}");
    // A kind mismatch: the gps-pps refclock's pulses left unbound; refused, or skipped.
    std::fs::write(&lab, "[[gps]]\nname = \"g\"\nserial = \"/dev/null\"\nbaud = 9600\n[[host]]\nname = \"gps-server\"\nrefclock = { gps = \"g\" }\n").unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert!(code == Some(1) && err.contains("the lab cannot run this scenario") && err.contains("host `gps-server`: its refclock is kind gps-pps: bind its pulses too"), "{err}");
    let (code, out, _) = run(&gps_pps, &["--skip-unsupported"]);
    assert!(code == Some(0) && out.starts_with("skipped ") && out.contains("bind its pulses too"), "{out}");
    // The same in a suite: skipped, and the lab's inventory heads its reports.
    let suite_dir = dir.join("suite");
    std::fs::create_dir_all(&suite_dir).unwrap();
    std::fs::copy(&gps_pps, suite_dir.join("gps-pps-short.toml")).unwrap();
    let suite = |more: &[&str]| ntplab().args(["lab", "suite", "--out"]).arg(dir.join("suite-out")).arg("--lab").arg(&lab).args(more).arg(&suite_dir).output().unwrap();
    let out = suite(&["--skip-unsupported"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("skipped "), "{}", String::from_utf8_lossy(&out.stdout));
    let summary = std::fs::read_to_string(dir.join("suite-out/summary.md")).unwrap();
    // (Markdown escapes the backquotes.)
    assert!(summary.contains("LAB.toml: gps \\`g\\`: serial /dev/null at 9600 baud, host \\`gps-server\\`"), "{summary}");
    // Real clock control: refused in the virtual lab.
    std::fs::write(&lab, "[[host]]\nname = \"client\"\ncontrol_real_clock = true\n").unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert!(code == Some(1) && err.contains("host `client`:") && err.contains("control_real_clock = true") && err.contains("never changed"), "{err}");
    // A host the scenario does not have, in run and in suite.
    std::fs::write(&lab, "[[host]]\nname = \"gps-srever\"\n").unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert!(code == Some(1) && err.contains("binds host(s) gps-srever, which") && err.contains("fix the [[host]] names"), "{err}");
    let out = suite(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("binds host(s) gps-srever, which no scenario of"), "{err}");
    // Remote hosts: not supported yet.
    std::fs::write(&lab, "[[host]]\nname = \"client\"\nssh = \"lab@host2\"\n").unwrap();
    let (code, _, err) = run(&gps_pps, &[]);
    assert!(code == Some(1) && err.contains("remote hosts are not supported yet"), "{err}");
    assert!(!dir.join("out").exists(), "nothing ran");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn features_the_lab_cannot_realize_are_refused_up_front() {
    let dir = tmp("refuse");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/short-client.toml")).unwrap();
    let scenario = dir.join("noise.toml");
    let text = text.replace("frequency = 2e-05 }", "frequency = 2e-05, noise = 1e-6 }").replace("impl = \"chrony\"", "impl = \"ntpd-rs\"");
    std::fs::write(&scenario, text.replace("iburst = true", "iburst = true, burst = true")).unwrap();
    let out = ntplab().args(["lab", "run", "--out"]).arg(dir.join("out")).arg(&scenario).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the lab cannot run this scenario"), "{err}");
    assert!(err.contains("host `client`: clock `noise` is not realized"), "{err}");
    assert!(err.contains("host `client`: impl = \"ntpd-rs\": source 10.0.0.1:123: ntpd-rs has no `burst`"), "{err}");
    // Nothing ran: no trace.
    assert!(!dir.join("out").exists());
    // With --skip-unsupported: skipped, the reasons listed, exit 0, nothing run.
    let out = ntplab().args(["lab", "run", "--skip-unsupported", "--out"]).arg(dir.join("out")).arg(&scenario).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("skipped ") && stdout.contains("ntpd-rs has no `burst`"), "{stdout}");
    assert!(!dir.join("out").exists());
    // The simulator refuses a chrony host, naming it.
    let out = ntplab().args(["run"]).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/short-client.toml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host `client` has impl = \"chrony\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ntplab lab suite` over a directory whose one scenario the lab cannot
/// realize: a failure naming the reason, or with `--skip-unsupported` a skip
/// and exit 0; the summary file says which.
#[test]
fn the_lab_suite_fails_or_skips_what_it_cannot_realize() {
    let dir = tmp("suite");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/short-client.toml")).unwrap();
    std::fs::create_dir_all(dir.join("s")).unwrap();
    std::fs::write(
        dir.join("s/counted.toml"),
        format!("{text}\n[[event]]\nat = \"10s\"\naction = \"set_link\"\nlink = [\"client\", \"server\"]\nloss = 0.1\nafter_packets = 6\n"),
    )
    .unwrap();
    let run = |skip: bool| {
        let mut c = ntplab();
        c.args(["lab", "suite", "--out"]).arg(dir.join("out")).arg(dir.join("s"));
        if skip {
            c.arg("--skip-unsupported");
        }
        c.output().unwrap()
    };
    let out = run(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused") && stdout.contains("timeline event at 10 s: a link change after a packet count (`after_packets`) is not realized by the lab"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("skipped"), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/lab-suite.json")).unwrap()).unwrap();
    assert_eq!(summary["scenarios"][0]["status"], "skipped");
    assert_eq!(summary["failed"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check` runs nothing and needs no root: `lab run --check` says whether
/// the lab can run a scenario here and in how much real time (exit 0), or
/// what it cannot realize and which program is missing (exit 1; 0 with
/// `--skip-unsupported`); `lab suite --check` says it of every file and sums
/// the real time of the runnable ones.
#[test]
fn check_says_what_the_lab_can_run_without_running_it() {
    let dir = tmp("check");
    std::fs::create_dir_all(dir.join("s")).unwrap();
    let runnable = short_scenario(&dir.join("s"), "ntplab");
    let text = std::fs::read_to_string(&runnable).unwrap();
    let refused = dir.join("s/refused.toml");
    std::fs::write(&refused, text.replace("frequency = 2e-05 }", "frequency = 2e-05, noise = 1e-6 }")).unwrap();
    let missing = dir.join("s/missing.toml");
    std::fs::write(&missing, text.replace("impl = \"ntplab\"", "impl = \"ntpsec\"")).unwrap();
    let check = |args: &[&str], file: &Path| {
        let out = ntplab().args(["lab", "run", "--check", "--ntpsec-root"]).arg(dir.join("nowhere")).args(args).arg(file).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = check(&[], &runnable);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("runnable ") && out.contains(": 40 s of real time; hosts server (ntplab), client (ntplab)"), "{out}");
    let (code, out, err) = check(&[], &refused);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.starts_with("refused ") && out.contains("host `client`: clock `noise` is not realized"), "{out}");
    assert!(err.contains("refused"), "{err}");
    let (code, out, _) = check(&["--skip-unsupported"], &refused);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, err) = check(&["--format", "json"], &missing);
    assert_eq!(code, Some(1), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["runnable"].clone(), v["verdict"].clone()), (serde_json::json!(false), serde_json::json!("not installed")), "{v}");
    assert!(v["missing"].as_str().unwrap().contains("nowhere/usr/sbin/ntpd is missing (scripts/install-peers.sh ntpsec)"), "{v}");
    assert_eq!(v["real_time_s"], 40.0, "{v}");
    // The suite: one line per file, then the total; nothing written.
    let out = ntplab().args(["lab", "suite", "--check", "--ntpsec-root"]).arg(dir.join("nowhere")).arg("--out").arg(dir.join("out")).arg(dir.join("s")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| !l.starts_with("  - ")).count(), 4, "{stdout}");
    assert!(stdout.contains("3 scenario(s): 1 runnable here, in 40 s of real time one after another; 2 not"), "{stdout}");
    assert!(!dir.join("out").exists(), "--check wrote {}", dir.join("out").display());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C (SIGINT) during a lab run: the run stops with an error saying so,
/// its daemons are gone and every namespace it made is deleted.
#[test]
fn an_interrupted_lab_run_cleans_up() {
    if let Some(why) = skip_reason("ntplab") {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    let dir = tmp("interrupt");
    let scenario = short_scenario(&dir, "ntplab");
    let child = ntplab()
        .args(["lab", "run", "--out"])
        .arg(dir.join("out"))
        .arg(&scenario)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let prefix = format!("ntplab-{pid}-");
    let namespaces = || String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    // Wait until the lab is up (its namespaces exist), then interrupt it.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !namespaces().contains(&prefix) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(namespaces().contains(&prefix), "the lab never set up its namespaces");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "the run did not stop promptly");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!namespaces().contains(&prefix), "namespaces left behind: {}", namespaces());
    // The daemons it started are gone (their journals stop growing, and no process runs its config).
    let ps = String::from_utf8_lossy(&Command::new("ps").args(["-eo", "args"]).output().unwrap().stdout).into_owned();
    assert!(!ps.contains(&dir.display().to_string()), "{ps}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scenario whose program is not installed: `lab suite` says which file is
/// missing and what installs it, and skips it with `--skip-unsupported`;
/// `lab run` stops before anything starts (no root needed for either).
#[test]
fn a_program_that_is_not_installed_is_named() {
    let dir = tmp("missing");
    std::fs::create_dir_all(dir.join("s")).unwrap();
    let scenario = short_scenario(&dir.join("s"), "ntpsec");
    let suite = |skip: bool| {
        let mut c = ntplab();
        c.args(["lab", "suite", "--ntpsec-root"]).arg(dir.join("nowhere")).arg("--out").arg(dir.join("out")).arg(dir.join("s"));
        if skip {
            c.arg("--skip-unsupported");
        }
        c.output().unwrap()
    };
    let out = suite(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("skipped") && stdout.contains("nowhere/usr/sbin/ntpd is missing (scripts/install-peers.sh ntpsec)"), "{stdout}");
    let out = suite(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("refused"));
    let out = ntplab().args(["lab", "run", "--ntpsec-root"]).arg(dir.join("nowhere")).arg("--out").arg(dir.join("run")).arg(&scenario).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ntpsec is not installed") || err.contains("needs root"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Access rules written to another program's configuration: an ntpd-rs
/// server whose default is `kod-deny` (an empty allowlist answering DENY)
/// answers the ntplab client only with DENY kisses, which then stops. 20 s.
#[test]
fn an_ntpd_rs_server_refuses_by_its_access_rules() {
    if let Some(why) = skip_reason("ntpd-rs") {
        eprintln!("skipped: ntpd-rs in the virtual lab: {why}");
        return;
    }
    let run = lab_run_edited("ntplab", |t| {
        let t = t.split("[[expect]]").next().unwrap().replace("converged_after = \"20s\"", "converged_after = \"10s\"\nlab_duration = \"20s\"");
        t.replace("local_stratum = 1\n", "local_stratum = 1\nimpl = \"ntpd-rs\"\naccess = { default = \"kod-deny\" }\n")
    });
    assert!(passed_but_for_timing(run.ok, &run.summary), "{}", run.summary);
    let replies: Vec<serde_json::Value> =
        run.packets.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["src"] == "10.0.0.1:123").collect();
    assert!(!replies.is_empty(), "{}", run.packets);
    for r in &replies {
        let b = r["bytes"].as_str().unwrap();
        // Stratum 0 and reference ID "DENY" (44454e59).
        assert_eq!((&b[2..4], &b[24..32]), ("00", "44454e59"), "{r}");
    }
}

/// Every check the lab sets aside exists (a renamed check would otherwise be
/// judged unnoticed).
#[test]
fn the_checks_the_lab_does_not_judge_exist() {
    for id in ntplab_hwlab::run::NOT_JUDGED_IN_THE_LAB {
        assert!(ntplab_conformance::checks::check(id).is_some(), "{id}");
    }
}

/// `ntplab lab interop` on the ntplab-client x chrony-server corner of the
/// matrix: the basic cell runs (40 s) and passes, the NTPv5 cell is
/// "unsupported" (chrony 4.3 has no NTPv5) without running, and the four
/// matrix reports say so; the system clock is unchanged and no namespace is
/// left.
#[test]
fn the_interop_matrix_runs_a_cell_and_marks_what_a_peer_does_not_support() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: lab interop needs the virtual lab and chronyd: {why}");
        return;
    }
    let dir = tmp("interop");
    let before = SystemClockState::read().unwrap();
    let child = ntplab()
        .args(["lab", "interop", "--client", "ntplab", "--server", "chrony", "--mode", "basic,ntpv5", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains(&format!("ntplab-{pid}-")), "namespaces left behind");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("matrix.json")).unwrap()).unwrap();
    let cells = m["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{m}");
    let basic = &cells[0];
    assert_eq!((basic["client"].as_str(), basic["server"].as_str(), basic["mode"].as_str(), basic["status"].as_str()), (Some("ntplab"), Some("chrony"), Some("basic"), Some("pass")), "{basic}");
    assert!(basic["evidence"]["replies"]["basic"].as_u64().unwrap() >= 2, "{basic}");
    assert!(basic["evidence"]["max_offset_s"].as_f64().unwrap() < 5e-3, "{basic}");
    assert!(std::fs::read_to_string(dir.join("ntplab-chrony-basic/scenario.toml")).unwrap().contains("impl = \"chrony\""));
    let v5 = &cells[1];
    assert_eq!(v5["status"], "unsupported", "{v5}");
    assert!(v5["reason"].as_str().unwrap().contains("chrony 4.3 does not speak NTPv5"), "{v5}");
    assert!(v5["evidence"].is_null() && !dir.join("ntplab-chrony-ntpv5").exists(), "{v5}");
    let md = std::fs::read_to_string(dir.join("matrix.md")).unwrap();
    assert!(md.contains("| ntplab | pass (") && md.contains("| ntplab | unsupported |"), "{md}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"1\""), "{junit}");
    assert!(std::fs::read_to_string(dir.join("matrix.html")).unwrap().contains("<td class=\"pass\""));
    assert!(dir.join("checks/summary.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad `lab interop` arguments are named, before anything runs.
#[test]
fn lab_interop_names_a_bad_argument() {
    for (args, want) in [
        (&["--client", "ntpd"][..], "--client `ntpd`: unknown; one of ntplab, chrony, ntpsec, ntpd-rs"),
        (&["--mode", "basic,xleave"][..], "--mode `xleave`: unknown; one of basic, interleaved, nts, ntpv5"),
        (&["--cell-seconds", "5"][..], "--cell-seconds 5: must be between 20 and 600"),
    ] {
        let dir = tmp("interop-args");
        let out = ntplab().args(["lab", "interop", "--out"]).arg(&dir).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!dir.join("matrix.json").exists());
    }
}

/// The frequency errors (s/s) of `host` in a trace's samples.csv from `from`
/// to `to` s.
fn frequency_errors(samples: &str, host: &str, from: f64, to: f64) -> Vec<f64> {
    let mut lines = samples.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in samples.csv"));
    let (t, h, f) = (col("t_s"), col("host"), col("frequency_error"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[h] == host)
        .filter(|r| (from..=to).contains(&r[t].parse::<f64>().unwrap()))
        .map(|r| r[f].parse().unwrap())
        .collect()
}

/// The median |frequency error| (s/s) of `host` from 2 to 6 s in a trace's
/// samples.csv (five samples), printed: near 0 for a daemon that started
/// from its clock's frequency, about 100 ppm for one still measuring it.
fn median_frequency_error_2_to_6_s(samples: &str, host: &str) -> f64 {
    let mut f: Vec<f64> = frequency_errors(samples, host, 2.0, 6.0).iter().map(|x| x.abs()).collect();
    f.sort_by(f64::total_cmp);
    eprintln!("{host}: |frequency error| 2-6 s, ppm: {:?}", f.iter().map(|x| x * 1e6).collect::<Vec<_>>());
    assert_eq!(f.len(), 5, "{host}: samples from 2 to 6 s");
    f[2]
}

/// tests/lab/drift.toml (30 s): an ntplab and a chronyd client on clocks
/// 100 ppm fast with `drift = 1e-4` start from the drift files the lab
/// writes (ntplab's `[clock] drift_file`, chronyd's `driftfile`, chrony's
/// format): their frequency error 2 to 6 s in is near 0 (without the files
/// both are still 91 to 100 ppm off then: docs/hwlab.md), and each daemon
/// leaves a file holding the frequency it measured, within 10 ppm of 100.
#[test]
fn lab_clients_start_from_the_drift_files_the_lab_writes() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: {why}");
        return;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/drift.toml");
    let dir = tmp("drift");
    let out = lab_run_checked(&scenario, &dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(passed_but_for_timing(out.status.success(), &v), "{v}");
    let chrony_conf = std::fs::read_to_string(dir.join("chronyd.chrony.conf")).unwrap();
    assert!(chrony_conf.contains(&format!("\ndriftfile {}\n", dir.canonicalize().unwrap().join("chronyd.chrony.drift").display())), "{chrony_conf}");
    let samples = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    for host in ["client", "chronyd"] {
        let median = median_frequency_error_2_to_6_s(&samples, host);
        assert!(median < 20e-6, "{host}: median |frequency error| 2-6 s {} ppm", median * 1e6);
    }
    for file in ["client.ntplab.drift", "chronyd.chrony.drift"] {
        let correction = ntplab_daemon::drift::read(&dir.join(file)).unwrap().unwrap();
        eprintln!("{file}: {}", std::fs::read_to_string(dir.join(file)).unwrap().trim());
        assert!((correction + 1e-4).abs() < 10e-6, "{file}: {correction}");
    }
}

/// tests/lab/daemon-metrics.toml in the simulator and the lab (40 s): an
/// ntplab client of a rate-limiting ntplab server. The metrics counted from
/// the daemon's own events (`selections`, `max_stratum`, `kiss_codes`,
/// `ntsn`) come, in the lab, from the tally the client's and the server's
/// `ntplab serve --events` write: every expectation passes in both, with
/// the same value (one selection, stratum 2 after 20 s, the server's
/// stratum 1, no NTSN; at least one RATE kiss in each).
#[test]
fn sim_and_lab_agree_on_the_metrics_from_the_daemons_events() {
    let Some((dir, sim, lab_ok, lab)) = sim_and_lab("daemon-metrics.toml") else { return };
    assert!(passed_but_for_timing(lab_ok, &lab), "{lab}");
    let values = |v: &serde_json::Value| {
        v["expectations"].as_array().unwrap().iter().map(|e| (e["metric"].as_str().unwrap().to_string(), e["passed"].clone(), e["value"].as_f64())).collect::<Vec<_>>()
    };
    let (sim, lab) = (values(&sim), values(&lab));
    eprintln!("sim {sim:?}\nlab {lab:?}");
    assert_eq!(sim.len(), 5);
    for (s, l) in sim.iter().zip(&lab) {
        assert_eq!(s.1, serde_json::Value::Bool(true), "simulator: {s:?}");
        assert_eq!(l.1, serde_json::Value::Bool(true), "lab: {l:?}");
        // The number of RATE kisses depends on when the burst's requests reach the server.
        if s.0 != "kiss_codes" {
            assert_eq!(s, l);
        }
    }
    // The lab's count from the capture (what it judges other programs'
    // hosts by) is the daemon's own, for the client and the server.
    let seen = daemon_metrics_seen(&std::fs::read_to_string(dir.join("lab/events.jsonl")).unwrap());
    let kisses = lab.iter().find(|l| l.0 == "kiss_codes").and_then(|l| l.2).unwrap();
    assert_eq!(seen["client"]["kiss_codes_seen"].as_f64(), Some(kisses), "{seen:?}");
    assert_eq!(seen["client"]["ntsn_seen"], 0, "{seen:?}");
    assert_eq!(seen["client"]["judged_from"], "its daemon's tally", "{seen:?}");
    assert_eq!(seen["server"]["kiss_codes_seen"], 0, "{seen:?}");
}

/// The stratum-0 replies with kiss code `code` delivered to `to` (an
/// address prefix, "IP:") in a lab trace's packets.jsonl.
fn kisses_delivered(packets: &str, to: &str, code: &[u8; 4]) -> usize {
    let hex: String = code.iter().map(|b| format!("{b:02x}")).collect();
    packets
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|p| p["dst"].as_str().unwrap().starts_with(to) && p["lost"].is_null())
        .filter(|p| p["bytes"].as_str().is_some_and(|b| b.len() >= 96 && &b[2..4] == "00" && b[24..32] == hex))
        .count()
}

/// Each host's `lab_daemon_metrics` event (the kiss codes the capture saw
/// it receive, and what its daemon-event metrics were judged from) in a
/// lab trace's events.jsonl.
fn daemon_metrics_seen(events: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "lab_daemon_metrics")
        .map(|e| (e["host"].as_str().unwrap().to_string(), e["details"].clone()))
        .collect()
}

/// tests/lab/daemon-metrics.toml with its client run by `implementation`
/// in the lab (40 s), beside the simulator's ntplab client on the same
/// file: the rate-limiting ntplab server answers the client's requests
/// beyond its burst with RATE kisses, and the lab judges the client's
/// `kiss_codes` and `ntsn` from the capture, its `selections` and
/// `max_stratum` from its reports. The kiss expectations (and the server's
/// stratum) get the simulator's verdicts; so do the client's selection and
/// stratum for chronyd, which selects the server from its burst as ntplab's
/// client does (ntpsec selects no source within 40 s, so those are printed
/// only; ntpd-rs, which sends no burst, meets a server limiting to one
/// request a minute, and its `selections`, refused, are left out). The
/// kisses counted are the ones the lab reports in events.jsonl, at least
/// one and no more than the RATE replies delivered to the client in
/// packets.jsonl.
fn a_peer_clients_daemon_metrics_are_judged_as_the_simulators(implementation: &str) {
    if let Some(why) = skip_reason(implementation) {
        eprintln!("skipped: {implementation} in the virtual lab: {why}");
        return;
    }
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/daemon-metrics.toml");
    let dir = tmp(&format!("daemon-metrics-{implementation}"));
    let mut text = std::fs::read_to_string(&original).unwrap();
    if implementation == "ntpd-rs" {
        text = text.replace("[[expect]]\nname = \"the client selects the server once\"\nhost = \"client\"\nmetric = \"selections\"\nmin = 1\nmax = 1\n\n", "");
        text = text.replace("interval_s_min = 8,", "interval_s_min = 60,");
        assert!(!text.contains("\"selections\"") && text.contains("interval_s_min = 60,"));
    }
    let sim_scenario = dir.join("sim.toml");
    std::fs::write(&sim_scenario, &text).unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, text.replace("name = \"client\"\n", &format!("name = \"client\"\nimpl = \"{implementation}\"\n"))).unwrap();
    let sim = ntplab().args(["run", "--format", "json"]).arg(&sim_scenario).output().unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let out = lab_run_checked(&scenario, &dir.join("lab"));
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    print_host_figures(&format!("daemon-metrics.toml ({implementation})"), &sim, &lab);
    let verdicts = |v: &serde_json::Value| -> Vec<(String, String, serde_json::Value, Option<f64>)> {
        v["expectations"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["metric"].as_str().unwrap().to_string(), e["passed"].clone(), e["value"].as_f64())).collect()
    };
    let (sim, lab_v) = (verdicts(&sim), verdicts(&lab));
    eprintln!("{implementation}: simulator (ntplab client) {sim:?}\nlab ({implementation} client) {lab_v:?}");
    assert_eq!(lab_v.len(), if implementation == "ntpd-rs" { 4 } else { 5 }, "{lab}");
    for l in &lab_v {
        let s = sim.iter().find(|s| s.0 == l.0).unwrap();
        assert_eq!(s.2, serde_json::Value::Bool(true), "simulator: {s:?}");
        let compared = implementation == "chrony" || ["kiss_codes", "ntsn"].contains(&l.1.as_str()) || l.0.starts_with("the server ");
        if compared {
            assert_eq!(l.2, s.2, "expectation {:?} ({}): simulator {s:?}, lab {l:?}\n{lab}", l.0, l.1);
        } else {
            eprintln!("{implementation}: expectation {:?} ({}): simulator {:?} {:?}, lab {:?} {:?} (not compared)", l.0, l.1, s.2, s.3, l.2, l.3);
        }
    }
    let events = std::fs::read_to_string(dir.join("lab/events.jsonl")).unwrap();
    let seen = daemon_metrics_seen(&events);
    let judged_from = if implementation == "chrony" {
        "kiss codes from the capture; selections and refused adjustments from its log; stratum served from its reports"
    } else {
        "kiss codes from the capture; selections and stratum served from its reports"
    };
    assert_eq!(seen["client"]["judged_from"], judged_from, "{seen:?}");
    let kisses = lab_v.iter().find(|l| l.1 == "kiss_codes").and_then(|l| l.3).unwrap();
    assert_eq!(seen["client"]["kiss_codes_seen"].as_f64(), Some(kisses), "{seen:?}");
    let packets = std::fs::read_to_string(dir.join("lab/packets.jsonl")).unwrap();
    let rate_replies = kisses_delivered(&packets, "10.0.0.2:", b"RATE");
    eprintln!("{implementation}: {kisses} kisses counted, {rate_replies} RATE replies delivered to the client in packets.jsonl");
    assert!(kisses >= 1.0 && kisses <= rate_replies as f64, "{kisses} kisses, {rate_replies} RATE replies");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/reselect-chrony.toml (30 s): chronyd selects server1 after
/// its third burst sample, server1's clock jumps 1 s at 5 s, and chronyd
/// selects another server from server1's next sample, both before the
/// lab's first report (10 s in). The lab counts the selections from
/// chronyd's log: the expectation (exactly 2) passes. Its reports, read
/// every 10 s, named one selected source throughout, so counting from them
/// (as the lab did before, and still does for ntpsec) gives 1.
#[test]
fn a_chronyd_clients_selections_between_two_reports_are_counted_from_its_log() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: chrony in the virtual lab: {why}");
        return;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/reselect-chrony.toml");
    let dir = tmp("reselect-chrony");
    let out = lab_run_checked(&scenario, &dir.join("lab"));
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let log = std::fs::read_to_string(dir.join("lab/client.log")).unwrap();
    let events = std::fs::read_to_string(dir.join("lab/events.jsonl")).unwrap();
    // What each report named selected, and the count the reports give (a
    // selected source other than the last report's).
    let reported: Vec<(f64, Option<String>)> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "lab_report" && e["host"] == "client" && e["details"]["sources"].is_array())
        .map(|e| {
            let sources = e["details"]["sources"].as_array().unwrap();
            (e["t_s"].as_f64().unwrap(), sources.iter().find(|s| s["selected"] == true).map(|s| s["address"].as_str().unwrap().to_string()))
        })
        .collect();
    let sampled = reported.windows(2).filter(|w| w[1].1.is_some() && w[1].1 != w[0].1).count() + usize::from(reported.first().is_some_and(|r| r.1.is_some()));
    let selected: Vec<&str> = log.lines().filter(|l| l.contains(" Selected source ")).collect();
    let e = &lab["expectations"][0];
    eprintln!("chronyd's log: {selected:?}
the reports (t s, selected): {reported:?}
counted from the log {}, from the reports {sampled}", e["value"]);
    assert_eq!((e["metric"].as_str(), e["value"].as_f64(), &e["passed"]), (Some("selections"), Some(2.0), &serde_json::Value::Bool(true)), "{lab}
{log}");
    assert_eq!(selected.len(), 2, "{log}");
    assert_eq!(reported.len(), 3, "{events}");
    assert_eq!(sampled, 1, "{reported:?}");
    let seen = daemon_metrics_seen(&events);
    assert_eq!(seen["client"]["judged_from"], "kiss codes from the capture; selections and refused adjustments from its log; stratum served from its reports", "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tests/lab/deny-chrony.toml (30 s): an ntplab server denies its chronyd
/// client (`kod-deny`). The simulator's ntplab client (the same file
/// without `impl`) counts one kiss and never selects the server; the lab
/// counts the chronyd client's kisses from the capture with the same rule
/// (nothing after the source's DENY), whatever number of DENY replies
/// chronyd draws, and gets the same verdicts.
#[test]
fn a_denied_chronyd_client_counts_one_kiss_as_the_simulators_client() {
    if let Some(why) = skip_reason("chrony") {
        eprintln!("skipped: chrony in the virtual lab: {why}");
        return;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/deny-chrony.toml");
    let dir = tmp("deny-chrony");
    let sim_scenario = dir.join("sim.toml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(&sim_scenario, text.replace("impl = \"chrony\"\n", "")).unwrap();
    let sim = ntplab().args(["run", "--format", "json"]).arg(&sim_scenario).output().unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let out = lab_run_checked(&scenario, &dir.join("lab"));
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    print_host_figures("deny-chrony.toml", &sim, &lab);
    let verdicts = |v: &serde_json::Value| -> Vec<(String, serde_json::Value, Option<f64>)> {
        v["expectations"].as_array().unwrap().iter().map(|e| (e["metric"].as_str().unwrap().to_string(), e["passed"].clone(), e["value"].as_f64())).collect()
    };
    let (s, l) = (verdicts(&sim), verdicts(&lab));
    let packets = std::fs::read_to_string(dir.join("lab/packets.jsonl")).unwrap();
    let denies = kisses_delivered(&packets, "10.0.0.2:", b"DENY");
    eprintln!("simulator (ntplab client) {s:?}\nlab (chronyd client) {l:?}\n{denies} DENY replies delivered to chronyd");
    assert_eq!(s, [("kiss_codes".to_string(), serde_json::Value::Bool(true), Some(1.0)), ("selections".to_string(), serde_json::Value::Bool(true), Some(0.0))]);
    assert_eq!(l, s, "{lab}");
    assert!(denies >= 1, "{packets}");
    // Never synchronized in either: chronyd never selected the server (its
    // log says no "Selected source"), whatever its start-up adjtimex calls.
    let sync_time = |v: &serde_json::Value| v["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "client").map(|h| h["sync_time_s"].clone());
    eprintln!("the client's sync_time_s: simulator {:?}, lab {:?}", sync_time(&sim), sync_time(&lab));
    assert_eq!(sync_time(&sim), Some(serde_json::Value::Null), "{sim}");
    assert_eq!(sync_time(&lab), Some(serde_json::Value::Null), "{lab}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chronyd_clients_daemon_metrics_are_judged_as_the_simulators() {
    a_peer_clients_daemon_metrics_are_judged_as_the_simulators("chrony");
}

#[test]
fn an_ntpsec_clients_daemon_metrics_are_judged_as_the_simulators() {
    a_peer_clients_daemon_metrics_are_judged_as_the_simulators("ntpsec");
}

#[test]
fn an_ntpd_rs_clients_daemon_metrics_are_judged_as_the_simulators() {
    a_peer_clients_daemon_metrics_are_judged_as_the_simulators("ntpd-rs");
}

/// tests/lab/drift.toml with its chronyd client replaced by ntpsec (30 s):
/// ntpsec reads ntpd's format (the correction in ppm: −100 for a clock
/// 100 ppm fast) from the drift file the lab writes, and its first
/// frequency setting is that correction (`adjtimex` `freq` −100 ppm, not
/// +100: the sign is ntpd's); its frequency error 2 to 6 s in is near 0.
#[test]
fn an_ntpsec_client_starts_from_the_drift_file_the_lab_writes() {
    if let Some(why) = skip_reason("ntpsec") {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tmp("ntpsec-drift");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/drift.toml")).unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, text.replace("impl = \"chrony\"", "impl = \"ntpsec\"")).unwrap();
    let out = lab_run_checked(&scenario, &dir.join("lab"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(std::fs::read_to_string(dir.join("lab/chronyd.ntpsec.drift")).unwrap(), "-100.000000\n", "{v}");
    let events = std::fs::read_to_string(dir.join("lab/events.jsonl")).unwrap();
    let first_freq = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "lab_clock_call" && e["host"] == "chronyd" && e["details"]["freq"].is_i64())
        .map(|e| e["details"]["freq"].as_i64().unwrap())
        .expect("ntpsec set its frequency");
    // adjtimex's freq is ppm × 65536.
    assert!((first_freq + 100 * 65536).abs() <= 65536, "first freq {first_freq} ({} ppm)", first_freq as f64 / 65536.0);
    let samples = std::fs::read_to_string(dir.join("lab/samples.csv")).unwrap();
    let median = median_frequency_error_2_to_6_s(&samples, "chronyd");
    assert!(median < 20e-6, "median |frequency error| 2-6 s {} ppm", median * 1e6);
}

/// tests/lab/stop-start.toml, the client's daemon stopped at 20 s and
/// started again at 35 s: in the simulator (ntplab's client) and in the lab
/// with the client's `impl`. The verdicts agree; both traces carry the
/// simulator's `scenario` events for the stop and the start at their time,
/// the client sends nothing while stopped and starts polling again; in the
/// lab the restarted daemon's shim took the host's clock over (one resume
/// line in its journal) and the client's true offset runs on across the
/// restart (within the expectation's bound of true time around it, where a
/// fresh clock would be back at its starting offset).
///
/// `Restart::Slew` (ntplab's daemon, chronyd): the file as it is, the
/// client 50 ms off and within 5 ms from 12 s on. `Restart::Step(max)`
/// (ntpsec, ntpd-rs, which cannot slew 50 ms away by 12 s: ntpsec slews at
/// most 0.5 ms/s, ntpd-rs corrects only by its first sample's jump until
/// its filter has 8 samples, two minutes at 16 s polls): the client starts
/// 0.5 s off, so a daemon that corrects at all steps, and must be within
/// `max` from 12 s on (both runs, simulator and lab, of that file).
/// `deviations`: the checks the program fails (as in
/// [`a_peer_client_measures_its_virtual_clock`]). chronyd's runs also
/// expect one selection of the client: chronyd's logs (one per start)
/// say "Selected source" in each start, and the lab counts the second as the
/// simulator's host does, which keeps its system peer across the restart.
fn a_client_stopped_and_started_again(implementation: &str, restart: Restart, deviations: &[&str]) {
    if let Some(why) = skip_reason(implementation) {
        eprintln!("skipped: the virtual lab is unavailable: {why}");
        return;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/stop-start.toml");
    let dir = tmp(&format!("stop-start-{implementation}"));
    let mut text = std::fs::read_to_string(&scenario).unwrap();
    let max = match restart {
        Restart::Slew => 5e-3,
        Restart::Step(max) => {
            for (from, to) in [
                ("clock = { offset = 0.05, ", "clock = { offset = 0.5, ".to_string()),
                ("within 5 ms of true time from 12 s on, across its restart (it started 50 ms off)", format!("within {} ms of true time from 12 s on, across its restart (it started 0.5 s off)", max * 1e3)),
                ("max = 0.005\n", format!("max = {max}\n")),
            ] {
                assert_eq!(text.matches(from).count(), 1, "{from:?} in {}", scenario.display());
                text = text.replace(from, &to);
            }
            max
        }
    };
    if implementation == "chrony" {
        // chronyd logs a selection in each start; the simulator's host keeps
        // its system peer across the restart: one selection.
        text += "\n[[expect]]\nname = \"the client selects the server once, across its restart\"\nhost = \"client\"\nmetric = \"selections\"\nmin = 1\nmax = 1\n";
    }
    let sim_scenario = dir.join("sim.toml");
    std::fs::write(&sim_scenario, &text).unwrap();
    let lab_scenario = dir.join("lab.toml");
    std::fs::write(&lab_scenario, text.replace("listen = false\n", &format!("impl = \"{implementation}\"\nlisten = false\n"))).unwrap();
    let sim = ntplab().args(["run", "--format", "json", "--out"]).arg(dir.join("sim")).arg(&sim_scenario).output().unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let out = lab_run_checked(&lab_scenario, &dir.join("lab"));
    let lab: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let verdicts = |v: &serde_json::Value| -> Vec<(String, serde_json::Value, Option<f64>)> {
        v["expectations"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["passed"].clone(), e["value"].as_f64())).collect()
    };
    let (s, l) = (verdicts(&sim), verdicts(&lab));
    print_host_figures(&format!("stop-start.toml ({implementation})"), &sim, &lab);
    eprintln!("{implementation}: simulator {s:?}\nlab {l:?}");
    assert_eq!(sim["passed"], true, "{sim}");
    assert_eq!(s.iter().map(|v| &v.1).collect::<Vec<_>>(), l.iter().map(|v| &v.1).collect::<Vec<_>>(), "{lab}");
    assert_eq!(untimed_failures(&lab), deviations, "{lab}");
    assert_eq!(lab["passed"], true, "{lab}");
    assert_eq!(out.status.success(), failed_checks(&lab).is_empty(), "{lab}");
    for (name, trace) in [("simulator", dir.join("sim")), ("lab", dir.join("lab"))] {
        let events = std::fs::read_to_string(trace.join("events.jsonl")).unwrap();
        let at = |event: &str| -> Vec<f64> {
            events
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|e| e["kind"] == "scenario" && e["details"]["event"] == event)
                .map(|e| e["t_s"].as_f64().unwrap())
                .collect()
        };
        let (stop, start) = (at("Stop { host: 1 }"), at("Start { host: 1 }"));
        assert!(stop.len() == 1 && start.len() == 1, "{name}: {events}");
        let (stop, start) = (stop[0], start[0]);
        // The lab counts events from the start of its hosts, a fraction of a second into its trace.
        assert!((20.0..22.0).contains(&stop) && (35.0..37.0).contains(&start), "{name}: stop at {stop} s, start at {start} s");
        let packets = std::fs::read_to_string(trace.join("packets.jsonl")).unwrap();
        let requests: Vec<f64> = packets
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|p| p["src"].as_str().unwrap().starts_with("10.0.0.2:"))
            .map(|p| p["sent_t_s"].as_f64().unwrap())
            .collect();
        eprintln!("{name}: stop at {stop:.2} s, start at {start:.2} s, the client's requests at {requests:.2?}");
        // A stopped daemon gets STOP_GRACE to exit; then it sends nothing until started again.
        let grace = ntplab_hwlab::run::STOP_GRACE.as_secs_f64();
        assert!(requests.iter().any(|&t| t < stop), "{name}: {requests:?}");
        assert!(!requests.iter().any(|&t| t > stop + grace && t < start), "{name}: {requests:?}");
        assert!(requests.iter().filter(|&&t| t >= start).count() >= 2, "{name}: {requests:?}");
    }
    let journal = std::fs::read_to_string(dir.join("lab/client.journal")).unwrap();
    assert_eq!(ntplab_vclock::resumes(&journal), 1, "{journal}");
    if implementation == "chrony" {
        // Its logs (client.log, client.start2.log) hold both starts, each with its selection.
        let log = std::fs::read_to_string(dir.join("lab/client.log")).unwrap() + &std::fs::read_to_string(dir.join("lab/client.start2.log")).unwrap();
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
        assert_eq!((count(" chronyd version "), count(" Selected source 10.0.0.1")), (2, 2), "{log}");
    }
    let samples = std::fs::read_to_string(dir.join("lab/samples.csv")).unwrap();
    let offsets: Vec<(f64, f64)> = samples
        .lines()
        .filter(|l| l.contains(",client,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let around: Vec<(f64, f64)> = offsets.iter().copied().filter(|(t, _)| (30.0..=42.0).contains(t)).collect();
    eprintln!("{implementation}: the lab client's true offset around its restart (t s, ms): {:?}", around.iter().map(|(t, o)| (*t, (o * 1e5).round() / 100.0)).collect::<Vec<_>>());
    assert!(around.len() >= 12 && around.iter().all(|(_, o)| o.abs() < max), "{samples}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// How [`a_client_stopped_and_started_again`] runs a program.
#[derive(Clone, Copy)]
enum Restart {
    /// tests/lab/stop-start.toml as it is: 50 ms off, within 5 ms from 12 s.
    Slew,
    /// The client 0.5 s off, within this many seconds from 12 s.
    Step(f64),
}

#[test]
fn an_ntplab_client_stopped_and_started_again_keeps_its_host_clock_as_in_the_simulator() {
    a_client_stopped_and_started_again("ntplab", Restart::Slew, &[]);
}

#[test]
fn a_chronyd_client_stopped_and_started_again_keeps_its_host_clock_as_in_the_simulator() {
    a_client_stopped_and_started_again("chrony", Restart::Slew, &[]);
}

/// ntpsec steps the 0.5 s at its first clock update (7 to 9 s, after its
/// iburst) and is started again with the drift file the lab wrote (it
/// writes its own only after an hour): it resets the kernel's frequency
/// from it and carries on from the clock as it was. Its requests come from
/// port 123 with poll 0 (as in an_ntpsec_client_measures_its_virtual_clock_in_the_lab).
#[test]
fn an_ntpsec_client_stopped_and_started_again_keeps_its_host_clock_as_in_the_simulator() {
    a_client_stopped_and_started_again("ntpsec", Restart::Step(5e-3), &["client-source-port", "poll-bounds"]);
}

/// ntpd-rs 1.9 keeps no drift file: started again, it starts from the
/// kernel's frequency (kept with the host's clock) and, in its start-up,
/// jumps at its first sample by the offset less its uncertainty, as it did
/// at its first start (`steer-offset-leftover` 1; 20 to 56 ms were left in
/// four lab runs). A source whose uncertainty exceeds 0.25 s is not used
/// (`maximum-source-uncertainty`), so it is within 0.25 s of true time from
/// 12 s on, where a fresh clock would be 0.5 s off.
#[test]
fn an_ntpd_rs_client_stopped_and_started_again_keeps_its_host_clock_as_in_the_simulator() {
    a_client_stopped_and_started_again("ntpd-rs", Restart::Step(0.25), &[]);
}

/// A lab run of a client with a reference clock, judged against limits, not
/// the simulator (which runs ntplab's daemon only).
struct RefclockRun {
    /// Under tests/lab.
    file: &'static str,
    /// The client's `impl` (the file's is replaced with it).
    implementation: &'static str,
    /// Applied to the file's text after that.
    edit: fn(String) -> String,
    /// The client's configuration file in the run's output directory.
    config_file: &'static str,
    /// What that file must contain, given the PPS socket's path.
    config_has: fn(&Path) -> Vec<String>,
    /// Whether the feeder delivered what the host's refclock has (its `client.refclock.json`).
    fed_enough: fn(&serde_json::Value) -> bool,
    /// The checks the program is known to fail (all others must pass).
    deviations: &'static [&'static str],
    /// The client's largest offset from the scenario's `converged_after` on.
    max_offset_s: f64,
}

impl RefclockRun {
    /// Runs it (`None`: skipped, the program or the lab missing): the
    /// scenario's expectations met, only the known deviations failed, the
    /// configuration written, the feed delivered, the client at stratum 1 in
    /// its daemon's last report, which is returned, and within
    /// `max_offset_s`.
    fn run(&self) -> Option<serde_json::Value> {
        let imp = self.implementation;
        if let Some(why) = skip_reason(imp) {
            eprintln!("skipped: {imp} in the virtual lab: {why}");
            return None;
        }
        let dir = tmp(&format!("{imp}-{}", self.file));
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab").join(self.file)).unwrap();
        let scenario = dir.join("scenario.toml");
        let edited = ["chrony", "ntpsec", "ntpd-rs"].iter().fold(text, |t, from| t.replace(&format!("impl = \"{from}\""), &format!("impl = \"{imp}\"")));
        std::fs::write(&scenario, (self.edit)(edited)).unwrap();
        let out = dir.join("out");
        let output = lab_run_checked(&scenario, &out);
        let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        assert_eq!(untimed_failures(&v), self.deviations, "{v}");
        assert_eq!(v["passed"], true, "{v}");
        let conf = std::fs::read_to_string(out.join(self.config_file)).unwrap();
        for line in (self.config_has)(&out.join("client.pps.sock")) {
            assert!(conf.contains(&line), "{line:?} not in {conf}");
        }
        let fed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("client.refclock.json")).unwrap()).unwrap();
        eprintln!("client fed: {fed}");
        assert!((self.fed_enough)(&fed), "{fed}");
        let last = client_reports(&std::fs::read_to_string(out.join("events.jsonl")).unwrap()).pop().unwrap_or_default();
        assert_eq!(last["stratum"], 1, "{last}");
        let c = v["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "client").unwrap();
        let (max, rms) = (c["max_offset_s"].as_f64().unwrap(), c["rms_offset_s"].as_f64().unwrap());
        eprintln!("{imp} ({}): max offset {:.2} us, rms {:.2} us after converged_after", self.file, max * 1e6, rms * 1e6);
        assert!(max < self.max_offset_s, "{v}");
        let _ = std::fs::remove_dir_all(&dir);
        Some(last)
    }
}

/// The source named `address` in a daemon's report.
fn reported_source(report: &serde_json::Value, address: impl Fn(&str) -> bool) -> serde_json::Value {
    report["sources"].as_array().unwrap().iter().find(|s| s["address"].as_str().is_some_and(&address)).unwrap_or_else(|| panic!("no such source in {report}")).clone()
}

/// A client whose host has a PPS output (tests/lab/pps-chrony.toml with
/// its `impl`, 90 s): the lab feeds the pulses as SOCK samples to the
/// socket the daemon binds, a pulse a second; within 10 us of true time
/// from 60 s on.
fn a_client_on_a_pps(implementation: &'static str, edit: fn(String) -> String, config_file: &'static str, config_has: fn(&Path) -> Vec<String>) -> Option<serde_json::Value> {
    let fed_enough = |fed: &serde_json::Value| fed["pulses"].as_u64().unwrap() >= 80 && fed["serial_bytes"] == 0;
    RefclockRun { file: "pps-chrony.toml", implementation, edit, config_file, config_has, fed_enough, deviations: &[], max_offset_s: 10e-6 }.run()
}

/// chronyd: a `refclock SOCK` without `lock`, taken once NTP has
/// synchronised the clock, then selected (the PPS the selected source in
/// chronyc's last report). The pulses come 100 us after the second
/// (`pps_delay`), which the scenario's `offset` compensates: chronyd's
/// `offset 1e-4` (with the opposite sign the clock would sit 200 us off).
/// Measured 2.16 us max, 0.86 us RMS from 60 s on with the delay; without
/// it 0.64-2.2 us max; the same run without the PPS 71 us max, 49 us RMS;
/// with the pulses' offsets written as ntplab's daemon reads them (true
/// second minus stamp) chronyd selected the PPS 20 s later and ended 60 us
/// off, its PPS reading -129 us (docs/hwlab.md).
#[test]
fn a_chronyd_client_disciplines_its_virtual_clock_to_a_pps_fed_as_sock_samples() {
    let delayed = |t: String| t.replace("refclock = { kind = \"pps\", pps_jitter = \"1us\" }", "refclock = { kind = \"pps\", pps_jitter = \"1us\", pps_delay = \"100us\", offset = 1e-4 }");
    let line = |sock: &Path| vec![format!("refclock SOCK {} poll 4 filter 16 refid PPS delay 1e-9 offset 1e-4\n", sock.display())];
    let Some(last) = a_client_on_a_pps("chrony", delayed, "client.chrony.conf", line) else { return };
    assert_eq!(reported_source(&last, |a| a == "PPS")["selected"], true, "{last}");
}

/// ntpd-rs 1.9: a `sock` source fed time samples to the nearest second
/// (its sock source refuses pulse samples), `precision` the pulses' 1 us
/// jitter. Its last report lists the socket as a source, within 10 us
/// (`ntp-ctl` names no selected source). Measured: 0.40 us max, 0.34 us
/// RMS from 60 s on (a manual run: 0.37 and 0.30 us, synchronized at 13 s).
#[test]
fn an_ntpd_rs_client_disciplines_its_virtual_clock_to_a_pps_fed_as_sock_samples() {
    let line = |sock: &Path| vec![format!("\n[[source]]\nmode = \"sock\"\npath = \"{}\"\nprecision = 1e-6\n", sock.display())];
    let Some(last) = a_client_on_a_pps("ntpd-rs", |t| t, "client.ntp.toml", line) else { return };
    let sock = reported_source(&last, |a| a.ends_with("client.pps.sock"));
    assert!(sock["offset_s"].as_f64().unwrap().abs() < 10e-6, "{last}");
}

/// An ntpsec client whose host has a GPS receiver, NMEA only
/// (tests/lab/gps-ntpsec.toml, 120 s): ntpsec's NMEA driver reads the
/// lab's pty (`path`), selects it and is within 3 ms of true time from 90 s
/// on (measured 157 us max, 123 us RMS on a quiet machine, 703 and 476 us
/// while a build and another lab run shared the 2 cores; with `offset` 0,
/// ntpsec's `time2`, the NMEA read 84 ms off and the clock ended 55 ms off:
/// docs/hwlab.md).
/// ntpsec's known deviations (requests from port 123, poll 0) fail the run's
/// checks and are the only checks allowed to.
#[test]
fn an_ntpsec_client_disciplines_its_virtual_clock_to_nmea_on_the_labs_pty() {
    let run = RefclockRun {
        file: "gps-ntpsec.toml",
        implementation: "ntpsec",
        edit: |t| t,
        config_file: "client.ntp.conf",
        config_has: |_| vec!["refclock nmea unit 0 mode 1 baud 9600 path /dev/pts/".into(), " minpoll 4 maxpoll 4 time2 8.35e-2 refid GPS\n".into()],
        // About 180 octets a second of sentences, no pulses.
        fed_enough: |fed| fed["serial_bytes"].as_u64().unwrap() >= 100 * 150 && fed["pulses"] == 0,
        deviations: &["client-source-port", "poll-bounds"],
        max_offset_s: 3e-3,
    };
    let Some(last) = run.run() else { return };
    assert_eq!(reported_source(&last, |a| a == "NMEA(0)")["selected"], true, "{last}");
}

/// A chronyd client whose host has a GPS receiver, NMEA only
/// (tests/lab/gps-chrony.toml, 90 s): gpsd reads the lab's pty beside
/// chronyd (on the host's clock as chronyd steers it) and puts each
/// second's fix in its NTP SHM segment 0, which chronyd reads (`refclock
/// SHM 0`). chronyd selects it (from about 64 s: poll 4, 16 s a sample;
/// printed, not asserted: later under load) and is within 3 ms of true
/// time from 60 s on; the GPS's last sample agrees
/// with the NTP-disciplined clock within 1 ms (gpsd's stamps on a clock of
/// its own, not steered by chronyd, would be some 3 ms off by then: 2 ms
/// start offset and 10 ppm). Measured 108 us max, 63 us RMS from 60 s on,
/// the GPS's last sample -35 us (docs/hwlab.md). Skipped without gpsd.
#[test]
fn a_chronyd_client_disciplines_its_virtual_clock_to_nmea_read_through_gpsd() {
    if let Some(why) = ntplab_hwlab::programs::gpsd_missing(Path::new(ntplab_hwlab::programs::GPSD)) {
        eprintln!("skipped: chrony with gpsd in the virtual lab: {why}");
        return;
    }
    let run = RefclockRun {
        file: "gps-chrony.toml",
        implementation: "chrony",
        edit: |t| t,
        config_file: "client.chrony.conf",
        config_has: |_| vec!["refclock SHM 0 poll 4 filter 16 refid GPS delay 1e-9 offset 8.5e-2\n".into()],
        // About 180 octets a second of sentences, no pulses.
        fed_enough: |fed| fed["serial_bytes"].as_u64().unwrap() >= 80 * 150 && fed["pulses"] == 0,
        deviations: &[],
        max_offset_s: 3e-3,
    };
    let Some(last) = run.run() else { return };
    let gps = reported_source(&last, |a| a == "GPS");
    // Selection comes about 64 s in: on a machine loaded by other work (two
    // busy loops here) chronyd had not selected it by 90 s, so it is shown,
    // not asserted; what the test holds is that gpsd's samples reach
    // chronyd on the host's clock (within 1 ms of it).
    eprintln!("gpsd -> chronyd: GPS selected {}, last sample {} s", gps["selected"], gps["offset_s"]);
    assert!(gps["offset_s"].as_f64().unwrap().abs() < 1e-3, "{last}");
}
