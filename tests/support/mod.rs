//! Helpers shared by the integration tests that start servers on loopback:
//! free ports, scratch directories, a guard that stops a child by its PID,
//! waiting for an NTP answer, and a chronyd server that cannot touch the clock.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn chronyd() -> &'static str {
    let found = Command::new("chronyd").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "chronyd not found: install chrony (apt-get install chrony) or run scripts/test.sh");
    "chronyd"
}

/// A free UDP port on 127.0.0.1 (bound and released; the tests run apart enough for this).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ntplab-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills a child process on drop: never leave a daemon behind.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_udp_answer(port: u16) {
    // Poll with ntplab query until the server answers (bounded: 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = ntplab(&["query", &format!("127.0.0.1:{port}"), "--samples", "1", "--timeout", "0.5"]);
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no NTP server answered on 127.0.0.1:{port} within 10 s");
}

pub fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

pub fn start_chronyd_server(dir: &Path, port: u16) -> Guard {
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\ncmdport 0\nlocal stratum 1\nallow 127.0.0.1\n\
             pidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // -x: never touch the clock; setpriv: and no CAP_SYS_TIME to do it with.
    let child = Command::new("setpriv")
        .args(["--inh-caps=-sys_time", "--bounding-set=-sys_time", chronyd(), "-n", "-x", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chronyd");
    Guard(child)
}


/// `ntplab serve` at local stratum 1 on 127.0.0.1:`port` for at most 60 s,
/// answering before this returns.
pub fn start_ntplab_server(port: u16) -> Guard {
    let server = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--local-stratum", "1", "--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ntplab serve");
    let guard = Guard(server);
    wait_for_udp_answer(port);
    guard
}

/// Builds the hwlab clock shim in the profile of the test binary (the
/// lab looks for it next to the ntplab binary under test: `cargo nextest
/// run --cargo-profile checked` needs the one in target/checked/).
pub fn build_clock_shim() {
    ntplab_hwlab::programs::build_clockshim(env!("CARGO")).unwrap();
}
