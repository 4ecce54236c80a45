//! The programs a lab host runs, each on its own virtual clock: how to start
//! them (the clock shim preloaded, CAP_SYS_TIME removed with `setpriv`, in the
//! host's namespace) and the configuration written from the host's spec.

use ntplab_daemon::config::DaemonConfig;
use ntplab_proto::discipline::DisciplineKind;
use ntplab_vclock::Params;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where chronyd is expected.
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// The file name of the clock shim cargo builds.
pub const SHIM_FILE: &str = "libntplab_clockshim.so";

/// The clock shim: `NTPLAB_SHIM` if set, else next to the running executable
/// (or its parent directory, for test binaries in `target/debug/deps`).
pub fn find_shim() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NTPLAB_SHIM") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("NTPLAB_SHIM={} is not a file", p.display())) };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join(SHIM_FILE);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!("the clock shim {SHIM_FILE} is not next to {} (build it: `cargo build -p ntplab-clockshim`, or set NTPLAB_SHIM)", exe.display()))
}

/// A program on a virtual clock.
#[derive(Debug, Clone)]
pub struct ClockedCommand {
    /// The clock shim library.
    pub shim: PathBuf,
    /// The oscillator.
    pub params: Params,
    /// The journal the shim appends clock changes to.
    pub journal: PathBuf,
}

impl ClockedCommand {
    /// `ip netns exec NS setpriv --inh-caps=-sys_time --bounding-set=-sys_time
    /// PROGRAM ARGS` (without `ns`: setpriv directly) with the shim preloaded.
    /// The process that runs is PROGRAM itself (each wrapper execs the next),
    /// so the child's PID is the daemon's.
    pub fn command(&self, ns: Option<&str>, program: &Path, args: &[String]) -> Command {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "setpriv"]);
                c
            }
            None => Command::new("setpriv"),
        };
        c.args(["--inh-caps=-sys_time", "--bounding-set=-sys_time"]).arg(program).args(args);
        c.env("LD_PRELOAD", &self.shim)
            .env("NTPLAB_VCLOCK_OFFSET", format!("{:e}", self.params.offset_s))
            .env("NTPLAB_VCLOCK_FREQUENCY", format!("{:e}", self.params.frequency))
            .env("NTPLAB_VCLOCK_EPOCH_NS", self.params.epoch_unix_ns.to_string())
            .env("NTPLAB_VCLOCK_JOURNAL", &self.journal)
            .stdin(Stdio::null());
        c
    }
}

/// Starts `command` with stdout and stderr going to `log`.
pub fn spawn_logged(mut command: Command, log: &Path) -> Result<Child, String> {
    let f = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let g = f.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    command.stdout(f).stderr(g).spawn().map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))
}

/// Stops a child we started: SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: std::time::Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: signalling the PID of a child we started and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let until = std::time::Instant::now() + grace;
    while std::time::Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The first line of `PROGRAM --version` (or `-v` for chronyd), for the report header.
pub fn version(program: &Path, flag: &str) -> String {
    match Command::new(program).arg(flag).stdin(Stdio::null()).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string(),
        Err(e) => format!("unavailable: {e}"),
    }
}

/// A chronyd configuration for a host of the scenario: its sources (port,
/// poll range, iburst, burst, version), `local stratum`, where it listens,
/// and no command socket. `dir` holds its pid file.
pub fn chrony_config(cfg: &DaemonConfig, bind: std::net::IpAddr, port: Option<u16>, dir: &Path, name: &str) -> String {
    let mut s = String::new();
    for src in &cfg.sources {
        let c = &src.config;
        let _ = write!(
            s,
            "server {} port {} minpoll {} maxpoll {}",
            src.address.ip(),
            src.address.port(),
            c.poll_min_log2,
            c.poll_max_log2
        );
        if c.iburst {
            s.push_str(" iburst");
        }
        if c.burst {
            s.push_str(" burst");
        }
        if c.version != 4 {
            let _ = write!(s, " version {}", c.version);
        }
        s.push('\n');
    }
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "local stratum {}", l.stratum);
    }
    match port {
        Some(p) => {
            let _ = writeln!(s, "port {p}\nallow all\nbindaddress {bind}");
        }
        None => s.push_str("port 0\n"),
    }
    let _ = writeln!(s, "cmdport 0\nbindcmdaddress /\npidfile {}", dir.join(format!("{name}.chronyd.pid")).display());
    s
}

/// An `ntplab serve` configuration file for a host: listen addresses,
/// sources, the local reference and the discipline.
pub fn ntplab_config(cfg: &DaemonConfig) -> String {
    let mut s = String::new();
    let listen: Vec<String> = cfg.listen.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(s, "listen = [{}]", listen.join(", "));
    let _ = writeln!(s, "interleaved = {}", cfg.server.interleaved);
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "\n[local]\nstratum = {}", l.stratum);
    }
    let _ = writeln!(s, "\n[clock]\ndiscipline = \"{}\"", discipline_name(cfg));
    for src in &cfg.sources {
        let c = &src.config;
        let _ = writeln!(
            s,
            "\n[[source]]\naddress = \"{}\"\niburst = {}\nburst = {}\npoll_min = {}\npoll_max = {}\nversion = {}",
            src.address, c.iburst, c.burst, c.poll_min_log2, c.poll_max_log2, c.version
        );
    }
    s
}

fn discipline_name(cfg: &DaemonConfig) -> &'static str {
    match cfg.discipline {
        DisciplineKind::Rfc5905 => "rfc5905",
        DisciplineKind::Regression => "regression",
    }
}
