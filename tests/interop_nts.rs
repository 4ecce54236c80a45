//! NTS end to end on loopback, with certificates made per run (rcgen):
//! - `ntplab query --nts` against `ntplab serve` with `[nts]` (AEAD 15 and
//!   30), its failures and exit codes, and an unauthenticated reply counting
//!   as nothing;
//! - `ntplab serve` following an NTS source;
//! - chrony 4.3 both ways: chronyd as NTS client of `ntplab serve` (it must
//!   report the source Authenticated), and `ntplab` as NTS client of chronyd
//!   (AEAD 15; chrony 4.3 offers and accepts no other AEAD).
//!
//! chronyd runs with -x (never touches the clock) and without CAP_SYS_TIME
//! (setpriv), `cmdport 0`; every process started here is stopped by its PID.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private directory with a self-signed certificate for localhost and
/// 127.0.0.1 (`cert.pem`, `key.pem`) and an unrelated one (`other.pem`).
fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ntplab-nts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // chronyd puts its command socket here only if nobody else can write to it.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names.clone()).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
    dir
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn serve(dir: &Path, name: &str, config: &str) -> Guard {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--duration", "120", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ntplab serve");
    Guard(child)
}

/// `ntplab serve` at stratum 1 with NTS; returns (NTP port, KE port).
fn nts_server(dir: &Path, extra: &str) -> (Guard, u16, u16) {
    let (ntp, ke) = (udp_port(), tcp_port());
    let config = format!(
        "listen = [\"127.0.0.1:{ntp}\"]\n[local]\nstratum = 1\n[nts]\ncertificate = {:?}\nkey = {:?}\nke_listen = [\"127.0.0.1:{ke}\"]\n{extra}",
        path(dir, "cert.pem"),
        path(dir, "key.pem")
    );
    let guard = serve(dir, &format!("server-{ke}"), &config);
    wait_for_ke(ke);
    (guard, ntp, ke)
}

fn wait_for_ke(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens for NTS-KE on 127.0.0.1:{port} after 10 s");
}

fn query_nts(dir: &Path, ke: &str, extra: &[&str]) -> Output {
    let trusted = path(dir, "cert.pem");
    let mut args = vec!["query", "--nts", ke, "--trusted-certificates", &trusted, "--format", "json"];
    args.extend_from_slice(extra);
    ntplab(&args)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn query_nts_measures_ntplab_serve_with_aead_15_and_30() {
    let dir = setup("query");
    let (_server, ntp, ke) = nts_server(&dir, "");
    for (aead, cookie_len) in [("15", 104), ("30", 72)] {
        let v = json(&query_nts(&dir, &format!("localhost:{ke}"), &["--aead", aead, "--samples", "3"]));
        assert_eq!(v["nts"]["aead"].to_string(), aead, "{v}");
        assert_eq!(v["nts"]["cookies"], 8);
        assert_eq!(v["nts"]["cookie_len"], cookie_len, "{v}");
        // The NTP port is not 123: the server hands it out.
        assert_eq!(v["nts"]["ntp_server"], format!("127.0.0.1:{ntp}"));
        assert_eq!(v["nts"]["ntp_port_negotiated"], true);
        // Each exchange uses one cookie and gets one back.
        assert_eq!(v["nts"]["cookies_left"], 8, "{v}");
        assert_eq!(v["samples"].as_array().unwrap().iter().filter(|s| s["fate"] == "ok").count(), 3, "{v}");
        assert!(v["offset"].as_f64().unwrap().abs() < 1e-3, "{v}");
        assert_eq!(v["stratum"], 1);
    }
    // By IP address too: the certificate carries it as an IP SAN.
    let v = json(&query_nts(&dir, &format!("127.0.0.1:{ke}"), &[]));
    assert_eq!(v["nts"]["aead"], 15, "the server prefers AES-SIV-CMAC-256");
    let text = ntplab(&["query", "--nts", &format!("localhost:{ke}"), "--trusted-certificates", &path(&dir, "cert.pem")]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("AEAD 15 (AEAD_AES_SIV_CMAC_256)") && text.contains("8 cookies of 104 octets"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn query_nts_failures_say_why_with_the_query_exit_codes() {
    let dir = setup("failures");
    let (_server, _, ke) = nts_server(&dir, "aeads = [30]\n");
    let ke_addr = format!("localhost:{ke}");
    let untrusted = ntplab(&["query", "--nts", &ke_addr, "--trusted-certificates", &path(&dir, "other.pem")]);
    let e = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(1), "{e}");
    assert!(e.contains("TLS handshake failed") && e.contains("invalid peer certificate"), "{e}");
    let no_aead = query_nts(&dir, &ke_addr, &["--aead", "15"]);
    let e = String::from_utf8_lossy(&no_aead.stderr);
    assert_eq!(no_aead.status.code(), Some(1), "{e}");
    assert!(e.contains("server supports none of the offered AEAD algorithms"), "{e}");
    let closed = query_nts(&dir, &format!("127.0.0.1:{}", tcp_port()), &[]);
    let e = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(1), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
    for (args, what) in [
        (vec!["query", "--nts", "localhost:0"], "not a port number"),
        (vec!["query", "--nts", &ke_addr, "--aead", "1"], "AEAD 1 is not supported"),
        (vec!["query", "127.0.0.1:123", "--nts", &ke_addr], "cannot be used with"),
        (vec!["query", "127.0.0.1:123", "--aead", "15"], "--nts"),
    ] {
        let out = ntplab(&args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(what), "{args:?}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The KE server hands out the port of a plain server: its replies carry no
/// authenticator, so they count as nothing and no sample comes of them.
#[test]
fn an_unauthenticated_reply_is_nothing() {
    let dir = setup("unauthenticated");
    let plain = udp_port();
    let _plain = serve(&dir, "plain", &format!("listen = [\"127.0.0.1:{plain}\"]\n[local]\nstratum = 1\n"));
    let (_server, _, ke) = nts_server(&dir, &format!("ntp_port = {plain}\n"));
    let out = query_nts(&dir, &format!("localhost:{ke}"), &["--samples", "2", "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in v["samples"].as_array().unwrap() {
        assert_eq!(s["fate"], "no_reply", "{v}");
        // Set aside by the NTS check (an unauthenticated reply has no authenticated Unique Identifier).
        assert!(s["discarded"][0]["reason"].as_str().unwrap().starts_with("nts: "), "{v}");
        assert_eq!(s["discarded"][0]["count"], 1, "{v}");
    }
    assert!(v.get("offset").is_none(), "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `ntplab bench server --nts-ke` with NTS requests: one KE per client
/// socket; `--count` bounds each run.
fn bench_nts(dir: &Path, ntp: u16, ke: u16, extra: &[&str]) -> serde_json::Value {
    let (target, ke, trusted) = (format!("127.0.0.1:{ntp}"), format!("127.0.0.1:{ke}"), path(dir, "cert.pem"));
    let mut args = vec!["bench", "server", &target, "--nts-ke", &ke, "--trusted-certificates", &trusted, "--format", "json"];
    args.extend_from_slice(extra);
    json(&ntplab(&args))
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Every request accounted for, none unauthenticated, the jars kept full;
/// a server that answers without NTS gives no response at all.
#[test]
fn bench_server_nts_counts_only_authentic_replies() {
    let dir = setup("bench");
    let (_server, ntp, ke) = nts_server(&dir, "");
    let bounds = ["--window", "4", "--count", "400", "--duration", "30", "--timeout-ms", "2000"];
    let v = bench_nts(&dir, ntp, ke, &[&["--clients", "4", "--aead", "30"][..], &bounds].concat());
    assert_eq!(count(&v, "sent"), 400, "{v}");
    let kod: u64 = v["kiss_o_death"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(count(&v, "responses") + count(&v, "late") + kod + count(&v, "lost"), 400, "{v}");
    assert!(count(&v, "responses") > 0, "{v}");
    let nts = &v["nts"];
    assert_eq!((nts["key_establishments"].as_u64(), nts["aead"].as_u64(), nts["cookie_len"].as_u64()), (Some(4), Some(30), Some(72)), "{v}");
    assert_eq!((nts["unauthenticated"].as_u64(), nts["no_cookie"].as_u64()), (Some(0), Some(0)), "{v}");
    // At most 4 requests in flight: each jar keeps at least 4 cookies.
    assert!(nts["cookies_left"].as_u64().unwrap() >= 16, "{v}");

    // The KE names a plain server: its replies echo the request but do not authenticate.
    let plain = udp_port();
    let _plain = serve(&dir, "plain", &format!("listen = [\"127.0.0.1:{plain}\"]\n[local]\nstratum = 1\n"));
    let (_named, _, ke) = nts_server(&dir, &format!("ntp_port = {plain}\n"));
    let v = bench_nts(&dir, plain, ke, &["--clients", "2", "--window", "2", "--count", "6", "--duration", "30", "--timeout-ms", "300"]);
    assert_eq!((count(&v, "sent"), count(&v, "responses"), count(&v, "lost")), (6, 0, 6), "{v}");
    assert!(v["nts"]["unauthenticated"].as_u64().unwrap() >= 1, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

/// With a master key every second (7 earlier ones kept), a cookie is dead
/// after 8 s: the server answers it with an authenticated NTSN kiss-o'-death.
#[test]
fn a_cookie_older_than_the_kept_keys_gets_an_ntsn() {
    let dir = setup("rotation");
    let (_server, _, ke) = nts_server(&dir, "key_rotation = 1\n");
    let out = query_nts(&dir, &format!("localhost:{ke}"), &["--samples", "2", "--interval", "9"]);
    let v = json(&out);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples[0]["fate"], "ok", "{v}");
    assert_eq!((&samples[1]["fate"], &samples[1]["kiss_code"]), (&"kiss".into(), &"NTSN".into()), "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Polls `port` with a plain query until it serves stratum `stratum` (60 s at most).
fn wait_for_stratum(port: u16, stratum: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let out = ntplab(&["query", &format!("127.0.0.1:{port}"), "--samples", "1", "--timeout", "0.5", "--format", "json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["stratum"] == stratum {
                return v;
            }
            last = v.to_string();
        } else {
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
    }
    panic!("127.0.0.1:{port} never served stratum {stratum}: {last}");
}

fn nts_follower(dir: &Path, ntp: u16, ke: u16) -> (Guard, u16) {
    let port = udp_port();
    let config = format!(
        "listen = [\"127.0.0.1:{port}\"]\n[[source]]\naddress = \"127.0.0.1:{ntp}\"\niburst = true\nnts = true\n\
         ke_server = \"localhost:{ke}\"\ntrusted_certificates = {:?}\n",
        path(dir, "cert.pem")
    );
    (serve(dir, &format!("follower-{port}"), &config), port)
}

#[test]
fn ntplab_follows_an_ntplab_nts_server() {
    let dir = setup("follow");
    let (_server, ntp, ke) = nts_server(&dir, "");
    let (_follower, port) = nts_follower(&dir, ntp, ke);
    let v = wait_for_stratum(port, 2);
    assert_eq!(v["reference_id"], "127.0.0.1");
    assert!(v["offset"].as_f64().unwrap().abs() < 1e-3, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---- chrony 4.3 ----

fn chronyd(dir: &Path, name: &str, config: &str) -> Guard {
    let found = Command::new("chronyd").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "chronyd not found: install chrony (apt-get install chrony) or run scripts/test.sh");
    let conf = dir.join(format!("{name}.conf"));
    let dump = dir.join(format!("{name}-dump"));
    std::fs::create_dir_all(&dump).unwrap();
    std::fs::write(
        &conf,
        format!("{config}cmdport 0\nntsdumpdir {}\npidfile {}\ndriftfile {}\n", dump.display(), path(dir, &format!("{name}.pid")), path(dir, &format!("{name}.drift"))),
    )
    .unwrap();
    let child = Command::new("setpriv")
        .args(["--inh-caps=-sys_time", "--bounding-set=-sys_time", "chronyd", "-x", "-n", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .expect("start chronyd");
    Guard(child)
}

#[test]
fn chronyd_authenticates_ntplab_serve_as_an_nts_server() {
    let dir = setup("chrony-client");
    let (_server, ntp, ke) = nts_server(&dir, "");
    let socket = path(&dir, "chronyc.sock");
    let _client = chronyd(
        &dir,
        "client",
        &format!(
            "server 127.0.0.1 port {ntp} nts ntsport {ke} iburst minpoll 0 maxpoll 0\nntstrustedcerts {}\nbindcmdaddress {socket}\n",
            path(&dir, "cert.pem")
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(out) = Command::new("chronyc").args(["-h", &socket, "-n", "ntpdata"]).output() else { continue };
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let good: u64 = last
            .lines()
            .find_map(|l| l.strip_prefix("Total good RX   : "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if last.contains("Authenticated   : Yes") && good >= 4 {
            let auth = Command::new("chronyc").args(["-h", &socket, "-n", "authdata"]).output().unwrap();
            let auth = String::from_utf8_lossy(&auth.stdout);
            // Mode NTS, AEAD (Type) 15: chrony 4.3 offers no other.
            let row = auth.lines().find(|l| l.starts_with("127.0.0.1")).unwrap_or_else(|| panic!("{auth}"));
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!((cols[1], cols[3]), ("NTS", "15"), "{auth}");
            std::fs::remove_dir_all(&dir).ok();
            return;
        }
    }
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap_or_default();
    panic!("chronyd never authenticated ntplab serve:\n{last}\nchronyd's log:\n{log}");
}

fn chronyd_nts_server(dir: &Path) -> (Guard, u16, u16) {
    let (ntp, ke) = (udp_port(), tcp_port());
    let guard = chronyd(
        dir,
        "server",
        &format!(
            "port {ntp}\nbindaddress 127.0.0.1\nlocal stratum 1\nallow 127.0.0.1\nntsserverkey {}\nntsservercert {}\nntsport {ke}\n",
            path(dir, "key.pem"),
            path(dir, "cert.pem")
        ),
    );
    wait_for_ke(ke);
    (guard, ntp, ke)
}

#[test]
fn ntplab_query_nts_measures_chronyd_with_aead_15_only() {
    let dir = setup("chrony-server");
    let (_server, ntp, ke) = chronyd_nts_server(&dir);
    let v = json(&query_nts(&dir, &format!("localhost:{ke}"), &["--samples", "2"]));
    assert_eq!(v["nts"]["aead"], 15, "{v}");
    assert_eq!(v["nts"]["cookies"], 8);
    assert_eq!(v["nts"]["ntp_server"], format!("127.0.0.1:{ntp}"), "chronyd hands out its port");
    assert!(v["offset"].as_f64().unwrap().abs() < 1e-3, "{v}");
    // chrony 4.3 knows no AES-128-GCM-SIV: it answers an offer of 30 alone with no AEAD.
    let out = query_nts(&dir, &format!("localhost:{ke}"), &["--aead", "30"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && e.contains("server supports none of the offered AEAD algorithms"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_server_nts_loads_chronyd() {
    let dir = setup("bench-chrony");
    let (_server, ntp, ke) = chronyd_nts_server(&dir);
    let v = bench_nts(&dir, ntp, ke, &["--clients", "3", "--window", "3", "--count", "300", "--duration", "30", "--timeout-ms", "2000"]);
    assert_eq!(count(&v, "sent"), 300, "{v}");
    assert!(count(&v, "responses") > 0, "{v}");
    let nts = &v["nts"];
    assert_eq!((nts["key_establishments"].as_u64(), nts["aead"].as_u64()), (Some(3), Some(15)), "{v}");
    assert_eq!(nts["unauthenticated"], 0, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ntplab_follows_a_chronyd_nts_server() {
    let dir = setup("chrony-upstream");
    let (_server, ntp, ke) = chronyd_nts_server(&dir);
    let (_follower, port) = nts_follower(&dir, ntp, ke);
    let v = wait_for_stratum(port, 2);
    assert_eq!(v["reference_id"], "127.0.0.1");
    std::fs::remove_dir_all(&dir).ok();
}
