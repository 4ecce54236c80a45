//! chronyd 4.3, ntpsec 1.2.2 and ntpd-rs 1.9 under the clock shim, with clock
//! control on (chronyd without `-x`) but without CAP_SYS_TIME: each steps and
//! steers its virtual clock, and the system clock's adjtimex state is
//! untouched. Needs root (to start them as root with setpriv, and network
//! namespaces for ntpsec and ntpd-rs) and the program; skipped with a message
//! otherwise.

use ntplab_hwlab::safety::SystemClockState;
use ntplab_hwlab::netns::{ip, Namespaces};
use ntplab_hwlab::programs::{self, find_shim, spawn_logged, stop, ClockedCommand, NtpdRs, Ntpsec, CHRONYD};
use ntplab_hwlab::reports::Reporter;
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
    // In the profile the tests were built in: find_shim looks next to them.
    programs::build_clockshim(env!("CARGO")).unwrap();
    find_shim().expect("the shim is next to the test binaries")
}

/// A started program, stopped (by its PID) when dropped: a failed
/// assertion or unwrap leaves no daemon running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        stop(&mut self.0, Duration::from_secs(3));
    }
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
    let mut server = Running(spawn_logged(server, &dir.join("server.log")).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    // The client: clock control on, on a virtual clock 0.3 s ahead and 50 ppm fast.
    let start = ntplab_hwlab::emulator::real_now_ns();
    let params = Params::new(start, 0.3, 50e-6);
    let journal = dir.join("client.journal");
    let cc = ClockedCommand { shim, params, journal: journal.clone(), control: None };
    let args = ["-d", "-u", "root", "-f"].map(String::from).into_iter().chain([client_conf.display().to_string()]).collect::<Vec<_>>();
    let mut client = Running(spawn_logged(cc.command(None, Path::new(CHRONYD), &args), &dir.join("client.log")).unwrap());
    std::thread::sleep(Duration::from_secs(12));
    let end = ntplab_hwlab::emulator::real_now_ns();
    stop(&mut client.0, Duration::from_secs(3));
    stop(&mut server.0, Duration::from_secs(3));
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

/// A chronyd server (`-x`: it never adjusts) at 10.97.0.1:123 in a namespace
/// of its own, joined by a veth pair to a client namespace (10.97.0.2):
/// ntpsec needs port 123, which the host's loopback may not have free.
struct Pair {
    /// Declared first: dropped (stopped) before its namespace goes.
    server: Running,
    ns: Namespaces,
    dir: PathBuf,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let dir = std::env::temp_dir().join(format!("ntplab-shim-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ns = Namespaces::new(&format!("shim-{tag}")).unwrap();
        let s = ns.add("s").unwrap();
        let c = ns.add("c").unwrap();
        ip(&["-n", &s, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &c]).unwrap();
        ip(&["-n", &s, "addr", "add", "10.97.0.1/24", "dev", "v0"]).unwrap();
        ip(&["-n", &c, "addr", "add", "10.97.0.2/24", "dev", "v1"]).unwrap();
        ip(&["-n", &s, "link", "set", "v0", "up"]).unwrap();
        ip(&["-n", &c, "link", "set", "v1", "up"]).unwrap();
        let conf = dir.join("server.conf");
        std::fs::write(&conf, format!("bindaddress 10.97.0.1\nlocal stratum 1\nallow all\ncmdport 0\nbindcmdaddress /\npidfile {}/server.pid\n", dir.display())).unwrap();
        let mut server = Command::new("ip");
        server.args(["netns", "exec", &s, "setpriv", "--inh-caps=-sys_time", "--bounding-set=-sys_time", CHRONYD, "-x", "-d", "-u", "root", "-f"]).arg(&conf);
        let server = spawn_logged(server, &dir.join("server.log")).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Pair { server: Running(server), ns, dir }
    }

    fn client_ns(&self) -> String {
        self.ns.names()[1].clone()
    }
}


/// Why the two-namespace test cannot run, if it cannot.
fn pair_skip_reason(program: Option<String>) -> Option<String> {
    skip_reason().or_else(ntplab_hwlab::netns::unavailable).or(program)
}

/// The daemon's client settings: one source, 10.97.0.1, iburst, polled every
/// second (below what ntplab's own daemon accepts, so set after validation).
fn one_fast_source() -> ntplab_daemon::config::DaemonConfig {
    let mut cfg = ntplab_daemon::config::DaemonConfig::from_toml("[[source]]\naddress = \"10.97.0.1:123\"\niburst = true\n", "test").unwrap();
    cfg.sources[0].config.poll_min_log2 = 0;
    cfg.sources[0].config.poll_max_log2 = 0;
    cfg
}

/// Runs `program args` as a client in the pair's client namespace on a
/// virtual clock 0.3 s ahead and 50 ppm fast for `seconds`; reads its report
/// at the end; checks the system clock is as before. Returns the replayed
/// journal, the real end time, the report's reading and the log.
fn run_client(pair: &mut Pair, program: &Path, args: &[String], reporter: &Reporter, seconds: u64, log: &Path) -> (Replay, i128, Result<ntplab_hwlab::reports::DaemonReport, String>, String) {
    let shim = built_shim();
    let before = SystemClockState::read().unwrap();
    let start = ntplab_hwlab::emulator::real_now_ns();
    let params = Params::new(start, 0.3, 50e-6);
    let journal = pair.dir.join("client.journal");
    let cc = ClockedCommand { shim, params, journal: journal.clone(), control: None };
    let mut client = Running(spawn_logged(cc.command(Some(&pair.client_ns()), program, args), &pair.dir.join("client.out")).unwrap());
    std::thread::sleep(Duration::from_secs(seconds));
    let report = reporter.read();
    let end = ntplab_hwlab::emulator::real_now_ns();
    stop(&mut client.0, Duration::from_secs(3));
    stop(&mut pair.server.0, Duration::from_secs(3));
    // The system clock: same frequency, PLL offset, status and tick; not stepped.
    assert_eq!(SystemClockState::read().unwrap().changed_since(&before, 1_000_000), None);
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    let replay = Replay::parse(params, start, &text, "client.journal").unwrap();
    (replay, end, report, log)
}

/// The size of the first step the journal shows, in s.
fn first_step_s(replay: &Replay) -> Option<f64> {
    replay.calls().find_map(|(at, op)| match op {
        JournalOp::Adjtimex(t) if t.modes & modes::ADJ_SETOFFSET != 0 && (t.time_sec, t.time_frac) != (0, 0) => {
            let frac = if t.modes & modes::ADJ_NANO != 0 { t.time_frac } else { t.time_frac * 1000 };
            Some((t.time_sec * 1_000_000_000 + frac) as f64 * 1e-9)
        }
        // A step to a time: how far it moved the clock it replaced.
        JournalOp::SetTime(ns) => {
            let before = replay.clock_at(at - 1).now_unix_ns(at - 1);
            Some((*ns - before) as f64 * 1e-9)
        }
        _ => None,
    })
}

#[test]
fn ntpsec_disciplines_its_virtual_clock_and_the_system_clock_is_untouched() {
    let ntpsec = Ntpsec { root: Ntpsec::default_root() };
    if let Some(why) = pair_skip_reason(ntpsec.missing()) {
        eprintln!("skipped: ntpsec under the clock shim: {why}");
        return;
    }
    let mut pair = Pair::new("ntpsec");
    let conf = pair.dir.join("client.conf");
    std::fs::write(&conf, programs::ntpsec_config(&one_fast_source(), &pair.dir, "client", None).unwrap()).unwrap();
    let log = pair.dir.join("client.log");
    let args = ["-n", "-g", "-c", &conf.display().to_string(), "-l", &log.display().to_string()].map(String::from).to_vec();
    let reporter = Reporter::Ntpq { ntpq: ntpsec.ntpq(), python_path: ntpsec.python_path(), ns: pair.client_ns() };
    let (replay, end, report, log) = run_client(&mut pair, &ntpsec.ntpd(), &args, &reporter, 25, &log);
    // ntpsec steps its clock (clock_settime) by the -0.3 s it measured, then
    // hands the remaining offset to the kernel PLL (STA_PLL), which the shim models.
    assert_eq!(replay.steps(), 1, "{log}");
    let step = first_step_s(&replay).unwrap();
    assert!((step + 0.3).abs() < 0.01, "step {step} s\n{log}");
    assert!(replay.calls().any(|(_, op)| matches!(op, JournalOp::Adjtimex(t) if t.modes & modes::ADJ_STATUS != 0 && t.status & ntplab_vclock::status::STA_PLL != 0 && t.modes & modes::ADJ_OFFSET != 0)), "{log}");
    let offset = replay.clock_at(end).offset_at(end);
    assert!(offset.abs() < 0.005, "ntpsec's clock is {offset} s off at the end\n{log}");
    // What ntpq reports: synchronized to the server at stratum 2, with a small offset.
    let report = report.unwrap();
    assert_eq!(report.stratum, Some(2), "{report:?}");
    assert!(report.sources[0].offset_s.unwrap().abs() < 0.005, "{report:?}");
    let _ = std::fs::remove_dir_all(&pair.dir);
}

#[test]
fn ntpd_rs_disciplines_its_virtual_clock_and_the_system_clock_is_untouched() {
    let ntpd_rs = NtpdRs { daemon: NtpdRs::default_daemon() };
    if let Some(why) = pair_skip_reason(ntpd_rs.missing()) {
        eprintln!("skipped: ntpd-rs under the clock shim: {why}");
        return;
    }
    let mut pair = Pair::new("ntpdrs");
    let conf = pair.dir.join("client.toml");
    std::fs::write(&conf, programs::ntpd_rs_config(&one_fast_source(), &pair.dir, "client", None).unwrap()).unwrap();
    let args = vec!["-c".to_string(), conf.display().to_string()];
    let reporter = Reporter::NtpCtl { ctl: ntpd_rs.ctl(), config: conf.clone() };
    let log = pair.dir.join("client.out");
    // 30 s: after its start-up step ntpd-rs still holds an offset of up to
    // 8 ms (one standard deviation of its first samples) and steers it out
    // over the next 15-20 s; 15 s runs ended 6.4-6.9 ms off twice.
    let (replay, end, report, log) = run_client(&mut pair, &ntpd_rs.daemon, &args, &reporter, 30, &log);
    // ntpd-rs calls clock_adjtime and ntp_adjtime through libc (its binary
    // imports them), so the shim answers: a start-up step of most of the
    // -0.3 s at its first sample (it leaves one standard deviation), a second
    // once its filter has eight samples, then frequency steering.
    assert!(replay.steps() >= 1, "{log}");
    let step = first_step_s(&replay).unwrap();
    assert!(step < -0.2 && step > -0.31, "step {step} s\n{log}");
    assert!(replay.calls().any(|(_, op)| matches!(op, JournalOp::Adjtimex(t) if t.modes & modes::ADJ_FREQUENCY != 0 && t.freq != 0)), "{log}");
    let offset = replay.clock_at(end).offset_at(end);
    assert!(offset.abs() < 0.005, "ntpd-rs's clock is {offset} s off at the end\n{log}");
    let report = report.unwrap();
    assert_eq!(report.stratum, Some(2), "{report:?}");
    assert!(report.sources[0].offset_s.unwrap().abs() < 0.005, "{report:?}");
    let _ = std::fs::remove_dir_all(&pair.dir);
}
