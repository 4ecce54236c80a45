//! NTS in the virtual lab (`ntplab lab run`): an ntplab server serving NTS-KE
//! and NTS-protected NTPv4 to an ntplab client and a chronyd client (under the
//! clock shim), each with `nts = true`; the lab makes a CA and the server's
//! certificate for the run. The captured datagrams must show NTS: every
//! request carries a Unique Identifier, a cookie and an Authenticator, every
//! reply an Authenticator. With a certificate for another name, no client may
//! send NTP at all (no fallback to unauthenticated time). Needs root and
//! network namespaces, and chronyd; skipped with a message otherwise.

mod support;

use ntplab_hwlab::safety::SystemClockState;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-lab-nts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn skip_reason() -> Option<String> {
    if let Some(why) = ntplab_hwlab::netns::unavailable() {
        return Some(why);
    }
    if !Path::new(ntplab_hwlab::programs::CHRONYD).is_file() {
        return Some("chronyd is not installed (apt-get install chrony)".into());
    }
    support::build_clock_shim();
    None
}

/// A lab run of tests/lab/nts-clients.toml, its text changed by `edit`.
struct Run {
    summary: serde_json::Value,
    packets: Vec<serde_json::Value>,
    events: String,
    dir: PathBuf,
}

fn lab_run(name: &str, edit: impl Fn(String) -> String) -> Run {
    let dir = tmp(name);
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/nts-clients.toml")).unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, edit(text)).unwrap();
    let out = dir.join("out");
    let before = SystemClockState::read().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["lab", "run", "--format", "json", "--out"])
        .arg(&out)
        .arg(&scenario)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains(&format!("ntplab-{pid}-")), "namespaces left behind");
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    let packets = std::fs::read_to_string(out.join("packets.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    Run { summary, packets, events, dir }
}

/// The extension field types after a datagram's 48-octet header (hex payload).
fn ef_types(hex: &str) -> Vec<u16> {
    let b: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let mut out = Vec::new();
    let mut at = 48;
    while at + 4 <= b.len() {
        let len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
        out.push(u16::from_be_bytes([b[at], b[at + 1]]));
        if len < 4 {
            break;
        }
        at += len;
    }
    out
}

const UID: u16 = 0x0104;
const COOKIE: u16 = 0x0204;
const AUTH: u16 = 0x0404;

/// Requests from `client` to the server's NTP port, and replies delivered to it.
fn exchanges<'a>(packets: &'a [serde_json::Value], client: &str) -> (Vec<&'a serde_json::Value>, Vec<&'a serde_json::Value>) {
    let requests = packets.iter().filter(|p| p["src"].as_str().unwrap().starts_with(&format!("{client}:")) && p["dst"] == "10.0.0.1:123").collect();
    let replies = packets
        .iter()
        .filter(|p| p["src"] == "10.0.0.1:123" && p["dst"].as_str().unwrap().starts_with(&format!("{client}:")) && p.get("received").is_some_and(|r| !r.is_null()))
        .collect();
    (requests, replies)
}

/// The last `lab_report` event of `host` (what its daemon reported).
fn last_report(events: &str, host: &str) -> serde_json::Value {
    let reports: Vec<serde_json::Value> =
        events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["kind"] == "lab_report" && e["host"] == host).collect();
    reports.last().cloned().unwrap_or_else(|| panic!("no report of {host} was read: {events}"))
}

fn check_status<'a>(v: &'a serde_json::Value, id: &str) -> &'a str {
    v["checks"].as_array().unwrap().iter().find(|c| c["check"] == id).map_or("missing", |c| c["status"].as_str().unwrap())
}

fn untimed_failures(v: &serde_json::Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap().to_string())
        .filter(|c| {
            let timing = ntplab_hwlab::run::TIMING_CHECKS.contains(&c.as_str());
            if timing {
                eprintln!("timing check {c} failed on this machine's load");
            }
            !timing
        })
        .collect()
}

/// 40 s: both clients run NTS-KE with the server through the link emulator
/// (TCP), then poll it with NTS-protected NTPv4 (the initial burst and
/// polls every 16 s: at least 3 requests each, with margin), take its time
/// and steer their virtual clocks from 50 ms off to within 5 ms.
#[test]
fn an_ntplab_nts_server_serves_an_ntplab_and_a_chronyd_nts_client_in_the_lab() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: NTS in the virtual lab: {why}");
        return;
    }
    let r = lab_run("good", |t| t);
    let v = &r.summary;
    for (client, ip) in [("ntplab", "10.0.0.2"), ("chronyd", "10.0.0.3")] {
        let (requests, replies) = exchanges(&r.packets, ip);
        assert!(requests.len() >= 3 && replies.len() >= 2, "{client}: {} requests, {} replies", requests.len(), replies.len());
        for q in &requests {
            let t = ef_types(q["bytes"].as_str().unwrap());
            assert!(t.contains(&UID) && t.contains(&COOKIE) && t.last() == Some(&AUTH), "{client}'s request is not NTS: {q}");
        }
        for p in &replies {
            let t = ef_types(p["bytes"].as_str().unwrap());
            assert!(t.contains(&UID) && t.contains(&AUTH), "a reply to {client} is not NTS: {p}");
        }
        eprintln!("{client}: {} NTS requests, {} NTS replies", requests.len(), replies.len());
    }
    // chronyd's own report: synchronized to the server.
    let last = last_report(&r.events, "chrony");
    assert_eq!(last["details"]["stratum"], 2, "{last}");
    // The datagram-level NTS checks judged the trace and passed.
    for id in ["nts-uid", "nts-uid-echo", "nts-client-request", "nts-server-response", "nts-cookie-once", "nts-no-amplification"] {
        assert_eq!(check_status(v, id), "pass", "{id}: {v}");
    }
    // The ntplab client's NTS-KE (its daemon's `--events`) is in the trace
    // as the simulator records it, and the NTS-KE checks judged it.
    let ke: Vec<serde_json::Value> =
        r.events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|e| e["kind"] == "nts_ke").collect();
    assert!(!ke.is_empty() && ke.iter().all(|e| e["host"] == "client"), "{}", r.events);
    let d = &ke[0]["details"];
    assert!(d["source"] == "10.0.0.1:4460" || d["source"] == "10.0.0.1:123", "{d}");
    assert!(d["error"].is_null() && d["cookies"] == 8 && d["tls"] == "TLSv1_3" && d["alpn"] == "ntske/1", "{d}");
    // Between the run's start and the client's first NTS request.
    let first_request = exchanges(&r.packets, "10.0.0.2").0[0]["sent_t_s"].as_f64().unwrap();
    let at = ke[0]["t_s"].as_f64().unwrap_or_else(|| panic!("{}", ke[0]));
    assert!(at > 0.0 && at <= first_request + 1e-3, "NTS-KE at {at} s, first NTS request at {first_request} s");
    for id in ["nts-ke-aead", "nts-ke-cookies", "nts-ke-tls13", "nts-ke-alpn", "nts-ke-npn-once", "nts-ke-eom", "nts-ke-subset", "nts-ke-client-records"] {
        assert_eq!(check_status(v, id), "pass", "{id}: {v}");
    }
    assert_eq!(untimed_failures(v), Vec::<String>::new(), "{v}");
    assert_eq!(v["passed"], true, "{v}");
    for h in v["hosts"].as_array().unwrap().iter().filter(|h| h["name"] != "server") {
        eprintln!("{}: rms {:.1} us, max {:.1} us", h["name"], h["rms_offset_s"].as_f64().unwrap() * 1e6, h["max_offset_s"].as_f64().unwrap() * 1e6);
    }
    // The run's certificates: the CA the clients trusted and the server's.
    assert!(std::fs::read_to_string(r.dir.join("out/nts/ca.pem")).unwrap().contains("BEGIN CERTIFICATE"));
    assert!(r.dir.join("out/nts/server.cert.pem").is_file());
    let _ = std::fs::remove_dir_all(&r.dir);
}

/// The server's certificate names `wrong-name.invalid`, not 10.0.0.1: both
/// clients must refuse it (their logs say so: rustls's and GnuTLS's name
/// check) and send no NTP at all (a client that fell back to unauthenticated
/// NTP would show up as requests); and the ntplab client retries NTS-KE when
/// its back-off ends (10 s, then 20 s: three attempts in 35 s).
#[test]
fn nts_clients_in_the_lab_send_no_ntp_to_a_server_with_a_certificate_for_another_name() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: NTS in the virtual lab: {why}");
        return;
    }
    let r = lab_run("wrong-name", |t| {
        t.split("[[expect]]")
            .next()
            .unwrap()
            .replace("nts = { key_rotation = \"1d\" }", "nts = { certificate = \"wrong-name\" }")
            .replace("converged_after = \"20s\"", "converged_after = \"10s\"\nlab_duration = \"35s\"")
    });
    for ip in ["10.0.0.2", "10.0.0.3"] {
        let (requests, replies) = exchanges(&r.packets, ip);
        assert!(requests.is_empty() && replies.is_empty(), "{ip} sent NTP to a server whose certificate it should refuse: {requests:?}");
    }
    // Both ran NTS-KE through the emulator and refused the certificate, saying why.
    let log = |host: &str| std::fs::read_to_string(r.dir.join(format!("out/{host}.log"))).unwrap();
    assert!(log("client").contains("certificate not valid for name \"10.0.0.1\""), "{}", log("client"));
    assert!(log("chrony").contains("The name in the certificate does not match"), "{}", log("chrony"));
    // The ntplab client's failed NTS-KE attempts are in the trace, and the
    // check that no NTP follows a failed one judged them.
    let failed = r.events.lines().filter(|l| l.contains("\"nts_ke\"") && l.contains("certificate not valid")).count();
    assert!(failed >= 1, "{}", r.events);
    assert_eq!(check_status(&r.summary, "nts-no-ntp-after-failed-ke"), "pass", "{}", r.summary);
    // chronyd stayed unsynchronized.
    let last = last_report(&r.events, "chrony");
    assert_ne!(last["details"]["stratum"], 2, "{last}");
    // Its retries came when each back-off ended (10 s, then 20 s after the
    // previous attempt's start), not at its polls: nts-ke-backoff judged
    // three attempts and passed.
    let attempts: Vec<f64> = r
        .events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "nts_ke" && e["host"] == "client")
        .map(|e| e["t_s"].as_f64().unwrap())
        .collect();
    eprintln!("the ntplab client's NTS-KE attempts ended at {attempts:?} s");
    assert!(attempts.len() >= 3, "{attempts:?}");
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((gaps[0] - 10.0).abs() < 1.0 && (gaps[1] - 20.0).abs() < 1.0, "attempts at {attempts:?} s");
    assert_eq!(check_status(&r.summary, "nts-ke-backoff"), "pass", "{}", r.summary);
    assert_eq!(untimed_failures(&r.summary), Vec::<String>::new(), "{}", r.summary);
    let _ = std::fs::remove_dir_all(&r.dir);
}
