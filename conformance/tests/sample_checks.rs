//! The checks and the plot that read `samples.csv`: each on hand-made rows
//! (one that passes, one that fails), and the trace reader that streams the
//! rows from the file instead of holding them.

use ntplab_conformance::checks::{check, Analysis, Status};
use ntplab_conformance::suite::{series, PLOT_POINTS_MAX};
use ntplab_conformance::trace::{Context, HostInfo, HostKind, Trace};
use ntplab_proto::time::NtpTime;

/// A server and a client, starting `start`.
fn ctx(start: &str) -> Context {
    let daemon = |name: &str, addr: &str, has_sources: bool| HostInfo {
        name: name.into(),
        address: addr.parse().unwrap(),
        kind: HostKind::Daemon { serves: !has_sources, has_sources, interleaved: false, local_reference: false },
        noise_s: 0.0,
    };
    Context {
        start: NtpTime::parse_rfc3339(start).unwrap(),
        duration_s: 7200.0,
        hosts: vec![daemon("server", "10.0.0.1", false), daemon("client", "10.0.0.2", true)],
    }
}

/// samples.csv rows of the client at `t_s` with `offset_s` and `synced`.
fn rows(points: &[(f64, f64, bool)]) -> String {
    let mut o = String::from("time,t_s,host,offset_s,frequency_error,synced,stratum,poll_log2\n");
    for (t, off, synced) in points {
        o += &format!("x,{t},client,{off:e},0e0,{synced},2,6\n");
    }
    o
}

fn run(id: &str, start: &str, events: &str, samples: &str) -> (Status, String) {
    let trace = Trace::from_strs("", events, samples).unwrap();
    let c = ctx(start);
    let o = (check(id).unwrap().run)(&Analysis::new(&c, &trace));
    (o.status, o.reason)
}

const SLEW: &str = r#"{"t_s":1,"host":"client","kind":"slew","details":{"action":"Slew { phase: 0.01s }"}}"#;

#[test]
fn slew_below_stept_finds_local_time_running_backwards() {
    let forward = rows(&[(10.0, 0.01, true), (11.0, 0.009, true), (12.0, 0.008, true)]);
    assert_eq!(run("slew-below-step-threshold", "2026-01-01T00:00:00Z", SLEW, &forward).0, Status::Pass);
    // 11 s + (−1.5 s) is before 10 s + 0.01 s: backwards, and no step explains it.
    let backwards = rows(&[(10.0, 0.01, true), (11.0, -1.5, true), (12.0, -1.5, true)]);
    let (s, why) = run("slew-below-step-threshold", "2026-01-01T00:00:00Z", SLEW, &backwards);
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("ran backwards between samples at 10.000 s and 11.000 s"), "{why}");
    // A step between the rows explains it.
    let step = format!("{SLEW}\n{}", r#"{"t_s":10.5,"host":"client","kind":"step","details":{"action":"Step { offset: -1.51s }"}}"#);
    assert_eq!(run("slew-below-step-threshold", "2026-01-01T00:00:00Z", &step, &backwards).0, Status::Pass);
}

#[test]
fn era_wrap_reads_the_rows_around_the_wrap() {
    // The run starts an hour before 2036-02-07T06:28:16Z.
    let start = "2036-02-07T05:28:16Z";
    let smooth = rows(&[(3500.0, 1e-4, true), (3599.0, 1e-4, true), (3601.0, 1.1e-4, true), (3700.0, 1e-4, true)]);
    assert_eq!(run("era-wrap-no-jump", start, "", &smooth).0, Status::Pass);
    let jump = rows(&[(3500.0, 1e-4, true), (3599.0, 1e-4, true), (3601.0, 0.5, true), (3700.0, 1e-4, true)]);
    let (s, why) = run("era-wrap-no-jump", start, "", &jump);
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("largest offset change 4.999e-1 s between samples (at 3601 s)"), "{why}");
    let lost = rows(&[(3500.0, 1e-4, true), (3599.0, 1e-4, true), (3700.0, 1e-4, false)]);
    let (s, why) = run("era-wrap-no-jump", start, "", &lost);
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("lost synchronization"), "{why}");
    // A clock correcting its start offset near the wrap (0.1 s slewed in
    // 1.2 s) moves fast towards true time: no jump. Away from it, it is.
    let settling = rows(&[(3590.0, 0.1, true), (3591.0, 0.017, true), (3592.0, 1e-4, true), (3601.0, 1e-4, true)]);
    assert_eq!(run("era-wrap-no-jump", start, "", &settling).0, Status::Pass);
    let away = rows(&[(3590.0, 0.1, true), (3591.0, 0.017, true), (3599.0, 0.05, true), (3601.0, -0.4, true)]);
    let (s, why) = run("era-wrap-no-jump", start, "", &away);
    assert_eq!(s, Status::Fail, "{why}");
    assert!(why.contains("largest offset change 4.500e-1 s between samples (at 3601 s)"), "{why}");
    // A jump more than 30 min from the wrap does not count.
    let far = rows(&[(100.0, 1e-4, true), (101.0, 0.5, true), (3599.0, 1e-4, true), (3601.0, 1e-4, true)]);
    assert_eq!(run("era-wrap-no-jump", start, "", &far).0, Status::Pass);
}

#[test]
fn series_keeps_a_bounded_number_of_points_and_the_last() {
    let n = PLOT_POINTS_MAX * 3 + 7;
    let points: Vec<(f64, f64, bool)> = (0..n).map(|i| (i as f64, i as f64 * 1e-6, true)).collect();
    let trace = Trace::from_strs("", "", &rows(&points)).unwrap();
    assert_eq!(trace.sample_counts.get("client"), Some(&n));
    let s = series(&trace);
    let v = &s["client"];
    assert!(v.len() <= PLOT_POINTS_MAX + 1, "{} points", v.len());
    assert_eq!(v[0], (0.0, 0.0));
    assert_eq!(*v.last().unwrap(), ((n - 1) as f64, (n - 1) as f64 * 1e-6));
    // Few rows: all of them.
    let trace = Trace::from_strs("", "", &rows(&points[..10])).unwrap();
    assert_eq!(series(&trace)["client"].len(), 10);
}

#[test]
fn a_loaded_trace_reads_its_rows_from_the_file_each_time() {
    let dir = std::env::temp_dir().join(format!("ntplab-trace-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("packets.jsonl"), "").unwrap();
    std::fs::write(dir.join("events.jsonl"), format!("{SLEW}\n")).unwrap();
    std::fs::write(dir.join("samples.csv"), rows(&[(1.0, 0.5, false), (2.0, 0.25, true)])).unwrap();
    let trace = Trace::load(&dir).unwrap();
    assert_eq!(trace.events.len(), 1);
    assert_eq!(trace.sample_counts.get("client"), Some(&2));
    let first: Vec<_> = trace.samples().map(|s| (s.t_s, s.offset_s, s.synced)).collect();
    assert_eq!(first, [(1.0, 0.5, false), (2.0, 0.25, true)]);
    assert_eq!(trace.samples().count(), 2, "a second walk reads the file again");
    // A bad row is found when the trace is read, with its line.
    std::fs::write(dir.join("samples.csv"), "time,t_s,host,offset_s,frequency_error,synced,stratum,poll_log2\nx,1,client\n").unwrap();
    assert_eq!(Trace::load(&dir).unwrap_err(), "samples.csv:2: expected 8 columns (time,t_s,host,offset_s,frequency_error,synced,stratum,poll_log2)");
    let _ = std::fs::remove_dir_all(&dir);
}
