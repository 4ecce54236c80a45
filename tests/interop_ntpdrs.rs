//! NTPv5 interoperability with ntpd-rs 1.9 (draft-ietf-ntp-ntpv5-08) on loopback:
//! - an ntpd-rs client with `ntp-version = 5` gets NTPv5 replies from
//!   `ntplab serve` and takes measurements from them;
//! - an ntpd-rs client with `ntp-version = "auto"` is offered the upgrade
//!   (NTP5DRFT) by `ntplab serve`, says it switched to NTPv5, and goes on
//!   measuring over NTPv5;
//! - `ntplab serve` with a `version = 5` source follows an ntpd-rs server that
//!   accepts NTPv5, and serves stratum 2.
//!
//! The traffic is captured on loopback with dumpcap (Debian's
//! wireshark-common, which tshark brings) and decoded with `ntplab decode`;
//! the tests judge the decoded packets, not only what the daemons report.
//!
//! Clock safety: every ntpd-rs runs under `setpriv --inh-caps=-sys_time
//! --bounding-set=-sys_time`. ntpd-rs 1.9 has no setting that keeps a client
//! off the clock (its `[clock]` section only picks a clock device) and exits
//! when it may not adjust one, so the clients run under the hwlab clock shim
//! (LD_PRELOAD libntplab_clockshim.so), whose virtual clock takes their
//! adjustments; the ntpd-rs server has no `[[source]]` and never adjusts. The
//! system clock's adjtimex state is compared before and after each test.
//! Every process is stopped by its PID (and gets SIGKILL if the test's thread
//! dies first).
//!
//! Needs root (setpriv's bounding set, the capture), ntp-daemon and ntp-ctl
//! (`scripts/install-peers.sh ntpd-rs`); skipped with a message otherwise.

mod support;

use ntplab_hwlab::programs::{find_shim, spawn_logged, stop, ClockedCommand};
use ntplab_hwlab::safety::SystemClockState;
use ntplab_vclock::Params;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::{free_port, ntplab, start_ntplab_server, temp_dir};

/// The NTPv4 reference timestamp that asks for and offers the upgrade.
const NTP5DRFT: &str = "4e54503544524654";

fn on_path(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn skip_reason() -> Option<String> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (setpriv must drop CAP_SYS_TIME from the bounding set)".into());
    }
    for (program, how) in [("ntp-daemon", "scripts/install-peers.sh ntpd-rs"), ("ntp-ctl", "scripts/install-peers.sh ntpd-rs")] {
        if !on_path(program) {
            return Some(format!("{program} is not installed ({how})"));
        }
    }
    if Command::new("setpriv").arg("-V").output().is_err() {
        return Some("setpriv is not installed".into());
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: NTPv5 interop with ntpd-rs needs root, ntpd-rs 1.9 and setpriv: {why}");
            return;
        }
    };
}

/// Children die with the thread that started them, even if the test is killed.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A child stopped by its PID (SIGTERM, then SIGKILL) when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        stop(&mut self.0, Duration::from_secs(3));
    }
}

/// A dumpcap capture of one UDP port on loopback, or `None` (with a note)
/// when dumpcap is missing.
struct Capture {
    child: Stopped,
    file: PathBuf,
    port: u16,
}

impl Capture {
    fn start(dir: &Path, port: u16) -> Option<Capture> {
        if Command::new("dumpcap").arg("-v").output().is_err() {
            eprintln!("note: dumpcap is not installed (apt-get install tshark): the traffic is not captured or decoded");
            return None;
        }
        let file = dir.join(format!("port-{port}.pcapng"));
        let log = dir.join(format!("dumpcap-{port}.log"));
        let mut cmd = Command::new("dumpcap");
        cmd.args(["-i", "lo", "-f", &format!("udp port {port}"), "-a", "duration:120", "-w"]).arg(&file);
        die_with_parent(&mut cmd);
        let child = Stopped(spawn_logged(cmd, &log).expect("start dumpcap"));
        // It says "Capturing on ..." once the filter is in place (bounded: 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("Capturing on") {
            assert!(Instant::now() < deadline, "dumpcap did not start capturing in 10 s: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Capture { child, file, port })
    }

    /// Stops the capture and decodes it: one JSON object per NTP packet.
    fn decode(self) -> Vec<serde_json::Value> {
        let Capture { child, file, port } = self;
        drop(child);
        let out = ntplab(&["decode", "--pcap", &file.display().to_string(), "--port", &port.to_string(), "--format", "json"]);
        assert!(out.status.success(), "ntplab decode {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// The hwlab clock shim, built if it is not fresh.
fn built_shim() -> PathBuf {
    support::build_clock_shim();
    find_shim().expect("the shim is next to the test binaries")
}

fn observability(dir: &Path, name: &str, level: &str) -> String {
    format!("[observability]\nlog-level = \"{level}\"\nansi-colors = false\nobservation-path = \"{}\"\n", dir.join(format!("{name}.sock")).display())
}

/// An ntpd-rs client with one `[[source]]` (its keys in `source`), polling
/// every 1-2 s, on a virtual clock (`shim`, from [`built_shim`]) that starts
/// at the real time. Returns the daemon and its configuration file (for
/// ntp-ctl).
fn ntpdrs_client(dir: &Path, shim: PathBuf, source: &str) -> (Stopped, PathBuf) {
    let conf = dir.join("ntpdrs-client.toml");
    std::fs::write(
        &conf,
        format!(
            "{}\n[[source]]\n{source}\n\n\
             [source-defaults]\npoll-interval-limits = {{ min = 0, max = 1 }}\ninitial-poll-interval = 0\n\n\
             [synchronization]\nminimum-agreeing-sources = 1\n",
            observability(dir, "ntpdrs-client", "debug")
        ),
    )
    .unwrap();
    let params = Params::new(ntplab_hwlab::emulator::real_now_ns(), 0.0, 0.0);
    let cc = ClockedCommand { shim, params, journal: dir.join("ntpdrs-client.journal"), control: None };
    let mut cmd = cc.command(None, Path::new("ntp-daemon"), &["-c".to_string(), conf.display().to_string()]);
    die_with_parent(&mut cmd);
    (Stopped(spawn_logged(cmd, &dir.join("ntpdrs-client.log")).expect("start ntp-daemon")), conf)
}

/// What `ntp-ctl status` says: the system stratum and each source's offset.
struct Status {
    stratum: Option<u8>,
    offsets: Vec<f64>,
    text: String,
}

fn ntp_ctl_status(conf: &Path) -> Status {
    let out = Command::new("ntp-ctl").arg("-c").arg(conf).arg("status").output().expect("run ntp-ctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |line: &str, name: &str| line.trim().strip_prefix(name).map(|v| v.trim().to_string());
    let stratum = text.lines().find_map(|l| field(l, "Stratum:")).and_then(|v| v.parse().ok());
    let offsets = text.lines().filter_map(|l| field(l, "Offset:")).filter_map(|v| v.parse().ok()).collect();
    Status { stratum, offsets, text }
}

/// Waits (at most 30 s) until the ntpd-rs client is synchronized (stratum 2)
/// with a measured offset, and returns that status.
fn wait_synchronized(conf: &Path, log: &Path) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let s = ntp_ctl_status(conf);
        if s.stratum == Some(2) && !s.offsets.is_empty() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "ntpd-rs did not synchronize to ntplab serve in 30 s:\n{}\n{}",
            s.text,
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

fn is(p: &serde_json::Value, version: u64, mode: u64) -> bool {
    p["version"] == version && p["mode"] == mode
}

/// Every NTPv5 packet names draft -08 and breaks no rule of it; every reply
/// echoes the client cookie of a request. Returns (v5 requests, v5 replies).
fn check_v5_exchanges(packets: &[serde_json::Value]) -> (usize, usize) {
    let v5: Vec<_> = packets.iter().filter(|p| p["version"] == 5).collect();
    for p in &v5 {
        assert_eq!(p["v5"]["draft"], "draft-ietf-ntp-ntpv5-08", "{p}");
        assert_eq!(p["problems"], serde_json::json!([]), "{p}");
    }
    let requests: Vec<_> = v5.iter().filter(|p| p["mode"] == 3).collect();
    let replies: Vec<_> = v5.iter().filter(|p| p["mode"] == 4).collect();
    for r in &replies {
        let cookie = &r["v5"]["client_cookie"];
        assert!(requests.iter().any(|q| &q["v5"]["client_cookie"] == cookie), "a reply for no request: {r}");
        assert_eq!(r["v5"]["flag_names"], serde_json::json!(["Synchronized"]), "{r}");
        assert_ne!(r["receive_timestamp"]["utc"], serde_json::Value::Null, "{r}");
    }
    (requests.len(), replies.len())
}

/// `ntplab serve` at stratum 1 with NTS (a certificate for localhost made
/// here) on 127.0.0.1:`port`, NTS-KE on a free TCP port; answering before
/// this returns. Returns it, the KE port and the certificate file.
fn ntplab_nts_server(dir: &Path, port: u16) -> (Stopped, u16, PathBuf) {
    let (cert, key, ke) = nts_identity(dir);
    let config = format!("listen = [\"127.0.0.1:{port}\"]\n[local]\nstratum = 1\n[nts]\ncertificate = {cert:?}\nkey = {key:?}\nke_listen = [\"127.0.0.1:{ke}\"]\n");
    let server = ntplab_serve(dir, "serve", &config);
    support::wait_for_udp_answer(port);
    (server, ke, cert)
}

/// A self-signed certificate for localhost and 127.0.0.1 and its key, in
/// `dir`, and a free TCP port for NTS-KE.
fn nts_identity(dir: &Path) -> (PathBuf, PathBuf, u16) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let ke = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    (cert, key, ke)
}

/// `ntplab serve` (at most 90 s) with `config` written to `dir/NAME.toml`, its log in `dir/NAME.log`.
fn ntplab_serve(dir: &Path, name: &str, config: &str) -> Stopped {
    let conf = dir.join(format!("{name}.toml"));
    std::fs::write(&conf, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ntplab"));
    cmd.args(["serve", "--duration", "90", "--config"]).arg(&conf);
    die_with_parent(&mut cmd);
    Stopped(spawn_logged(cmd, &dir.join(format!("{name}.log"))).expect("start ntplab serve"))
}

/// Runs an ntpd-rs client speaking `version` against `ntplab serve` (with
/// `nts`: over NTS) until it is synchronized (after its log says
/// `log_says`, if given) and for three polls more, and checks that the
/// system clock was not touched. Returns what ntp-ctl says then and the
/// decoded capture of the NTP port (`None` without dumpcap).
fn ntpdrs_client_run(name: &str, version: &str, nts: bool, log_says: Option<&str>) -> (Status, Option<Vec<serde_json::Value>>) {
    let dir = temp_dir(name);
    let before = SystemClockState::read().unwrap();
    // Built before the server starts: in a fresh tree the build takes
    // minutes, longer than the server's --duration.
    let shim = built_shim();
    let port = free_port();
    // Either server is stopped by its PID when this box drops.
    let (server, source): (Box<dyn std::any::Any>, String) = if nts {
        let (server, ke, cert) = ntplab_nts_server(&dir, port);
        (Box::new(server), format!("mode = \"nts\"\naddress = \"localhost:{ke}\"\ncertificate-authority = {cert:?}\nntp-version = {version}"))
    } else {
        (Box::new(start_ntplab_server(port)), format!("mode = \"server\"\naddress = \"127.0.0.1:{port}\"\nntp-version = {version}"))
    };
    let capture = Capture::start(&dir, port);
    let (client, conf) = ntpdrs_client(&dir, shim, &source);
    let log = dir.join("ntpdrs-client.log");
    if let Some(needle) = log_says {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(needle) {
            assert!(Instant::now() < deadline, "ntpd-rs never logged {needle:?}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let status = wait_synchronized(&conf, &log);
    // Three more polls: measurements, not one exchange.
    std::thread::sleep(Duration::from_secs(3));
    drop(client);
    drop(server);
    let packets = capture.map(Capture::decode);
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    std::fs::remove_dir_all(&dir).ok();
    (status, packets)
}

#[test]
fn ntpdrs_version_5_client_measures_ntplab_serve() {
    skip_unless_ready!();
    let (status, packets) = ntpdrs_client_run("ntpdrs-v5-client", "5", false, None);
    // One clock on both sides: the offset ntpd-rs measured is near zero.
    assert!(status.offsets.iter().all(|o| o.abs() < 1e-3), "{}", status.text);
    if let Some(packets) = packets {
        // ntpd-rs forced to NTPv5 sends nothing else, and every answer is NTPv5 stratum 1.
        assert!(packets.iter().all(|p| p["version"] == 5), "{packets:?}");
        let (requests, replies) = check_v5_exchanges(&packets);
        assert!(replies >= 2 && requests >= replies, "{requests} requests, {replies} replies");
        assert!(packets.iter().filter(|p| is(p, 5, 4)).all(|p| p["stratum"] == 1));
    }
}

#[test]
fn ntpdrs_auto_client_upgrades_to_ntpv5_with_ntplab_serve() {
    skip_unless_ready!();
    // Its log says it switched (at debug level), and it is synchronized.
    let (status, packets) = ntpdrs_client_run("ntpdrs-auto-client", "\"auto\"", false, Some("switching to NTPv5"));
    assert!(status.offsets.iter().all(|o| o.abs() < 1e-3), "{}", status.text);
    if let Some(packets) = packets {
        // First NTPv4 with the upgrade request, answered with the offer ...
        let first = packets.iter().position(|p| is(p, 4, 3)).expect("an NTPv4 request");
        assert_eq!(packets[first]["reference_timestamp"]["raw_hex"], NTP5DRFT, "{}", packets[first]);
        let offer = packets.iter().find(|p| is(p, 4, 4)).expect("an NTPv4 reply");
        assert_eq!(offer["reference_timestamp"]["raw_hex"], NTP5DRFT, "{offer}");
        assert_eq!(offer["origin_timestamp"], packets[first]["transmit_timestamp"], "{offer}");
        // ... then NTPv5 only, answered.
        let switch = packets.iter().position(|p| p["version"] == 5).expect("NTPv5 after the offer");
        assert!(packets[switch..].iter().all(|p| p["version"] == 5), "back to NTPv4 after the switch: {packets:?}");
        let (_, replies) = check_v5_exchanges(&packets);
        assert!(replies >= 2, "{replies} NTPv5 replies: {packets:?}");
    }
}

/// The names of a decoded packet's extension fields, in order.
fn field_names(p: &serde_json::Value) -> Vec<String> {
    p["extension_fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
}

/// `ntplab serve` with a `version = 5` source (with `nts`: over NTS, the
/// certificate made here) follows an ntpd-rs server that accepts NTPv5 and
/// serves stratum 2; returns the decoded capture of the NTP port.
fn ntplab_follows_ntpdrs(name: &str, nts: bool) -> Option<Vec<serde_json::Value>> {
    let dir = temp_dir(name);
    let before = SystemClockState::read().unwrap();
    let (upstream, follower) = (free_port(), free_port());
    // ntpd-rs serves its clock at stratum 1 and accepts NTPv5; with no
    // [[source]] it never adjusts the clock.
    let mut server_conf = format!(
        "{}\n[[server]]\nlisten = \"127.0.0.1:{upstream}\"\naccept-ntp-versions = [4, 5]\n\n[synchronization]\nlocal-stratum = 1\n",
        observability(&dir, "ntpdrs-server", "info")
    );
    let mut source = String::new();
    if nts {
        let (cert, key, ke) = nts_identity(&dir);
        server_conf += &format!(
            "\n[[nts-ke-server]]\nlisten = \"127.0.0.1:{ke}\"\ncertificate-chain-path = {cert:?}\nprivate-key-path = {key:?}\nntp-port = {upstream}\naccept-ntp-versions = [4, 5]\n\n[keyset]\nkey-storage-path = {:?}\n",
            dir.join("keyset")
        );
        source = format!("nts = true\nke_server = \"localhost:{ke}\"\ntrusted_certificates = {cert:?}\n");
    }
    let conf = dir.join("ntpdrs-server.toml");
    std::fs::write(&conf, server_conf).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--inh-caps=-sys_time", "--bounding-set=-sys_time", "ntp-daemon", "-c"]).arg(&conf);
    die_with_parent(&mut cmd);
    let _server = Stopped(spawn_logged(cmd, &dir.join("ntpdrs-server.log")).expect("start ntp-daemon"));
    let capture = Capture::start(&dir, upstream);
    let follower_config =
        format!("listen = [\"127.0.0.1:{follower}\"]\n[[source]]\naddress = \"127.0.0.1:{upstream}\"\niburst = true\nversion = 5\ndraft = \"08\"\n{source}");
    let follower_daemon = ntplab_serve(&dir, "follower", &follower_config);
    // NTS-KE, then the whole Reference IDs filter (4 replies of the iburst); allow 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        std::thread::sleep(Duration::from_secs(1));
        let out = ntplab(&["query", &format!("127.0.0.1:{follower}"), "--samples", "1", "--timeout", "0.5", "--format", "json"]);
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "ntplab never followed ntpd-rs over NTPv5: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("follower.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("ntpdrs-server.log")).unwrap_or_default()
        );
    };
    assert_eq!(v["stratum"], 2, "{v}");
    assert_eq!(v["reference_id"], "127.0.0.1", "{v}");
    assert!(v["offset"].as_f64().unwrap().abs() < 1e-3, "{v}");
    drop(follower_daemon);
    let packets = capture.map(|c| {
        let packets = c.decode();
        assert!(packets.iter().all(|p| p["version"] == 5), "{packets:?}");
        let (requests, replies) = check_v5_exchanges(&packets);
        assert!(replies >= 1 && requests >= replies, "{requests} requests, {replies} replies");
        // ntpd-rs answers the Reference IDs Request ntplab sends with its filter's chunk.
        assert!(packets.iter().filter(|p| is(p, 5, 4)).all(|p| field_names(p).contains(&"Reference IDs Response".to_string())), "{packets:?}");
        packets
    });
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    std::fs::remove_dir_all(&dir).ok();
    packets
}

#[test]
fn ntplab_follows_an_ntpdrs_server_over_ntpv5() {
    skip_unless_ready!();
    let packets = ntplab_follows_ntpdrs("ntpdrs-v5-server", false);
    for p in packets.iter().flatten() {
        assert!(!field_names(p).iter().any(|n| n.starts_with("NTS")), "{p}");
    }
}

#[test]
fn ntplab_follows_an_ntpdrs_server_over_nts_and_ntpv5() {
    skip_unless_ready!();
    // NTS-KE agreed on NTPv5 (0x8001): every request and reply is NTPv5 with
    // NTS fields. ntpd-rs pads its replies to the request's length after the
    // Authenticator (unauthenticated), so a Padding may follow it there.
    for p in ntplab_follows_ntpdrs("ntpdrs-nts-v5-server", true).iter().flatten() {
        let mut n = field_names(p);
        assert!(n.iter().any(|x| x == "Unique Identifier"), "{p}");
        if p["mode"] == 4 && n.last().is_some_and(|x| x == "Padding") {
            n.pop();
        }
        assert!(n.last().is_some_and(|x| x.starts_with("NTS Authenticator")), "{p}");
    }
}

#[test]
fn ntpdrs_nts_version_5_client_synchronizes_with_ntplab_serve() {
    skip_unless_ready!();
    let (status, packets) = ntpdrs_client_run("ntpdrs-nts-v5-client", "5", true, None);
    assert!(status.offsets.iter().all(|o| o.abs() < 1e-3), "{}", status.text);
    // ntp-ctl marks the source [NTS]; it holds its cookies (one back per request).
    assert!(status.text.contains("[NTS]") && status.text.contains("8/8 available"), "{}", status.text);
    if let Some(packets) = packets {
        assert!(packets.iter().all(|p| p["version"] == 5), "NTS-KE agreed on NTPv5: {packets:?}");
        let (requests, replies) = check_v5_exchanges(&packets);
        assert!(replies >= 2 && requests >= replies, "{requests} requests, {replies} replies");
        for p in &packets {
            let n = field_names(p);
            assert!(n.iter().any(|x| x == "Unique Identifier"), "{p}");
            assert!(n.last().is_some_and(|x| x.starts_with("NTS Authenticator")), "the authenticator comes last: {p}");
            if p["mode"] == 3 {
                assert!(n.iter().any(|x| x == "NTS Cookie"), "{p}");
            }
        }
    }
}
