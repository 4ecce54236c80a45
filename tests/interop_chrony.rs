//! Interoperability with chrony on loopback, in both directions:
//! - `chronyd -Q` (measure only) measures time from `ntplab serve`;
//! - `ntplab query` measures time from a chronyd server (`chronyd -x`: never
//!   touches the clock).
//!
//! Both run on this machine's one clock, so each side must find the other
//! within 1 ms. Needs chronyd (Debian package `chrony`; scripts/test.sh
//! installs it). Every process started here is stopped by its PID.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{chronyd, free_port, ntplab, start_chronyd_server, start_ntplab_server, temp_dir, wait_for_udp_answer, Guard};

#[test]
fn ntplab_query_measures_a_chronyd_server() {
    let dir = temp_dir("chronyd-server");
    let port = free_port();
    let _server = start_chronyd_server(&dir, port);
    wait_for_udp_answer(port);
    let out = ntplab(&["query", &format!("127.0.0.1:{port}"), "--samples", "4", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let offset = v["offset"].as_f64().unwrap();
    assert!(offset.abs() < 1e-3, "chronyd and ntplab share one clock, yet offset = {offset} s");
    assert_eq!(v["stratum"], 1);
    assert!(v["delay"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["samples"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn chronyd_measures_ntplab_serve() {
    let dir = temp_dir("ntplab-server");
    let port = free_port();
    let _server = start_ntplab_server(port);
    // chronyd -Q: measure the offset, print it, never set the clock.
    let out = Command::new(chronyd())
        .args(["-Q", "-t", "20", "-u", "root"])
        .arg(format!("server 127.0.0.1 port {port} iburst maxsamples 4"))
        .arg(format!("pidfile {}/q.pid", dir.display()))
        .arg("cmdport 0")
        .output()
        .expect("run chronyd -Q");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // "System clock wrong by -0.000012 seconds (ignored)"
    let offset: f64 = text
        .lines()
        .find_map(|l| l.split("System clock wrong by ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("chronyd -Q printed no offset:\n{text}"));
    assert!(offset.abs() < 1e-3, "chronyd finds ntplab {offset} s off on the same clock:\n{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The whole client path of the daemon: a second `ntplab serve` follows the
/// first (source -> filter -> selection -> discipline -> system variables) and
/// serves stratum 2 with the first server's address as reference ID.
#[test]
fn ntplab_follows_ntplab_and_serves_stratum_2() {
    let dir = temp_dir("ntplab-chain");
    let (p1, p2) = (free_port(), free_port());
    let upstream = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--listen", &format!("127.0.0.1:{p1}"), "--local-stratum", "1", "--duration", "90"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start upstream");
    let _upstream = Guard(upstream);
    let conf = dir.join("follower.toml");
    std::fs::write(
        &conf,
        format!("listen = [\"127.0.0.1:{p2}\"]\n[[source]]\naddress = \"127.0.0.1:{p1}\"\niburst = true\n"),
    )
    .unwrap();
    let follower = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--duration", "90", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start follower");
    let _follower = Guard(follower);
    // The iburst takes 8 exchanges 2 s apart; allow 60 s in all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let out = ntplab(&["query", &format!("127.0.0.1:{p2}"), "--samples", "1", "--timeout", "0.5", "--format", "json"]);
        if !out.status.success() {
            // Unsynchronized servers answer with LI 3, which the client refuses.
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["stratum"], 2, "{v}");
        assert_eq!(v["reference_id"], "127.0.0.1");
        assert!(v["offset"].as_f64().unwrap().abs() < 1e-3, "{v}");
        std::fs::remove_dir_all(&dir).ok();
        return;
    }
    panic!("the follower never synchronized: {last}");
}
