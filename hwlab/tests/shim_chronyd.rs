//! chronyd 4.3 under the clock shim, with clock control on (no `-x`) but
//! without CAP_SYS_TIME: it steps and slews its virtual clock, and the
//! system clock's adjtimex state is untouched. Needs root (to start chronyd as
//! root with setpriv) and chronyd; skipped with a message otherwise.

use ntplab_hwlab::safety::SystemClockState;
use ntplab_hwlab::programs::{find_shim, spawn_logged, stop, ClockedCommand, CHRONYD};
use ntplab_vclock::{modes, JournalOp, Params, Replay};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn skip_reason() -> Option<String> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new(CHRONYD).is_file() {
        return Some(format!("{CHRONYD} is not installed (apt-get install chrony)"));
    }
    if Command::new("setpriv").arg("-V").output().is_err() {
        return Some("setpriv is not installed".into());
    }
    None
}

/// Builds the shim (a no-op when it is fresh) and finds it.
pub fn built_shim() -> PathBuf {
    let status = Command::new(env!("CARGO")).args(["build", "-q", "-p", "ntplab-clockshim"]).status().expect("cargo runs");
    assert!(status.success(), "building the clock shim failed");
    find_shim().expect("the shim is next to the test binaries")
}

#[test]
fn chronyd_disciplines_its_virtual_clock_and_the_system_clock_is_untouched() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: chronyd under the clock shim needs root, chronyd and setpriv: {why}");
        return;
    }
    let shim = built_shim();
    let dir = std::env::temp_dir().join(format!("ntplab-shim-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server_conf = dir.join("server.conf");
    std::fs::write(
        &server_conf,
        format!("port {port}\nbindaddress 127.0.0.1\nlocal stratum 1\nallow 127.0.0.1\ncmdport 0\nbindcmdaddress /\npidfile {}/server.pid\n", dir.display()),
    )
    .unwrap();
    let client_conf = dir.join("client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "server 127.0.0.1 port {port} iburst minpoll -2 maxpoll -2\nmakestep 0.1 3\nport 0\ncmdport 0\nbindcmdaddress /\npidfile {}/client.pid\n",
            dir.display()
        ),
    )
    .unwrap();

    let before = SystemClockState::read().unwrap();
    // The server serves the real clock with clock control off (-x), also without CAP_SYS_TIME.
    let mut server = Command::new("setpriv");
    server.args(["--inh-caps=-sys_time", "--bounding-set=-sys_time", CHRONYD, "-x", "-d", "-u", "root", "-f"]).arg(&server_conf);
    let mut server = spawn_logged(server, &dir.join("server.log")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The client: clock control on, on a virtual clock 0.3 s ahead and 50 ppm fast.
    let start = ntplab_hwlab::emulator::real_now_ns();
    let params = Params { epoch_unix_ns: start, offset_s: 0.3, frequency: 50e-6 };
    let journal = dir.join("client.journal");
    let cc = ClockedCommand { shim, params, journal: journal.clone() };
    let args = ["-d", "-u", "root", "-f"].map(String::from).into_iter().chain([client_conf.display().to_string()]).collect::<Vec<_>>();
    let mut client = spawn_logged(cc.command(None, Path::new(CHRONYD), &args), &dir.join("client.log")).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let end = ntplab_hwlab::emulator::real_now_ns();
    stop(&mut client, Duration::from_secs(3));
    stop(&mut server, Duration::from_secs(3));
    // The system clock: same frequency, PLL offset, status and tick; not stepped.
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);

    // chronyd's virtual clock: stepped back by about 0.3 s, then steered by frequency.
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap();
    assert!(!log.contains("doesn't support ADJ_SETOFFSET"), "{log}");
    let text = std::fs::read_to_string(&journal).unwrap();
    let replay = Replay::parse(params, start, &text, "client.journal").unwrap();
    assert_eq!(replay.steps(), 1, "{log}\n{text}");
    let step_ns = replay
        .calls()
        .find_map(|(_, op)| match op {
            JournalOp::Adjtimex(t) if t.modes & modes::ADJ_SETOFFSET != 0 && (t.time_sec, t.time_frac) != (0, 0) => {
                let frac = if t.modes & modes::ADJ_NANO != 0 { t.time_frac } else { t.time_frac * 1000 };
                Some(t.time_sec * 1_000_000_000 + frac)
            }
            _ => None,
        })
        .unwrap();
    // The offset chrony measured (with kernel timestamps, which the shim
    // translates to the virtual clock) and stepped away.
    assert!((step_ns as f64 * 1e-9 + 0.3).abs() < 0.01, "step {step_ns} ns\n{log}");
    assert!(replay.calls().any(|(_, op)| matches!(op, JournalOp::Adjtimex(t) if t.modes & modes::ADJ_FREQUENCY != 0 && t.freq != 0)));
    let offset = replay.clock_at(end).offset_at(end);
    assert!(offset.abs() < 0.005, "chronyd's clock is {offset} s off at the end\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
