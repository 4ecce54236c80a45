//! The programs a lab host runs, each on its own virtual clock: how to start
//! them (the clock shim preloaded, CAP_SYS_TIME removed with `setpriv`, in the
//! host's namespace) and the configuration written from the host's spec.

use ntplab_daemon::config::DaemonConfig;
use ntplab_proto::discipline::DisciplineKind;
use ntplab_proto::server::access::{AccessAction, AccessList};
use ntplab_sim::scenario::Implementation;
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
            .env("NTPLAB_VCLOCK_WANDER", self.params.wander_text())
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

/// A program a lab run started, for the report header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The scenario host it ran for.
    pub host: String,
    /// Its `impl`.
    pub implementation: String,
    /// Its path.
    pub program: String,
    /// The first line of its version output.
    pub version: String,
    /// SHA-256 of the executable, lowercase hex.
    pub sha256: String,
}

impl Started {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"host": self.host, "impl": self.implementation, "program": self.program, "version": self.version, "sha256": self.sha256})
    }
}

/// SHA-256 of a file, lowercase hex, read in 64 KiB pieces.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read {} to hash it: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read {} to hash it: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The first line of `PROGRAM --version` (or `-v` for chronyd), for the
/// report header: from standard output, or standard error when that is empty
/// (ntp-daemon writes it there).
pub fn version(program: &Path, flag: &str) -> String {
    match Command::new(program).arg(flag).stdin(Stdio::null()).output() {
        Ok(o) => {
            let first = |b: &[u8]| String::from_utf8_lossy(b).lines().next().unwrap_or("").trim().to_string();
            let v = first(&o.stdout);
            if v.is_empty() {
                first(&o.stderr)
            } else {
                v
            }
        }
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
        if c.interleaved {
            s.push_str(" xleave");
        }
        s.push('\n');
    }
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "local stratum {}", l.stratum);
    }
    if let Some(p) = cfg.precision_log2 {
        let _ = writeln!(s, "clockprecision {:e}", 2f64.powi(i32::from(p)));
    }
    match port {
        Some(p) => {
            let _ = writeln!(s, "port {p}\nbindaddress {bind}");
            // Longest prefix wins in chrony as in ntplab (unwritable() lets
            // allow and deny through only).
            let a = &cfg.server.access;
            let word = |x: AccessAction| if x == AccessAction::Allow { "allow" } else { "deny" };
            let _ = writeln!(s, "{} all", word(a.default_action()));
            for r in a.rules() {
                let _ = writeln!(s, "{} {}/{}", word(r.action), r.network(), r.prefix_len());
            }
        }
        None => s.push_str("port 0\n"),
    }
    // No UDP command port; chronyc reads reports through the Unix socket.
    let _ = writeln!(
        s,
        "cmdport 0\nbindcmdaddress {}\npidfile {}",
        chronyc_socket(dir, name).display(),
        dir.join(format!("{name}.chronyd.pid")).display()
    );
    s
}

/// Where a host's chronyd listens for chronyc: in a directory of its own,
/// mode 0700, as chronyd requires of the socket's directory
/// ([`prepare_chronyc_dir`] makes it).
pub fn chronyc_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.chronyc")).join("chronyd.sock")
}

/// Makes the directory of [`chronyc_socket`] with mode 0700.
pub fn prepare_chronyc_dir(dir: &Path, name: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.join(format!("{name}.chronyc"));
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(|e| format!("cannot set the mode of {}: {e}", d.display()))
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
    // Given only when the configuration fixes it: otherwise the daemon measures its clock.
    if let Some(p) = cfg.precision_log2 {
        let _ = writeln!(s, "precision = {:e}", 2f64.powi(i32::from(p)));
    }
    let a = &cfg.server.access;
    let rules: Vec<String> =
        a.rules().iter().map(|r| format!("{{ network = \"{}/{}\", action = \"{}\" }}", r.network(), r.prefix_len(), access_name(r.action))).collect();
    let _ = writeln!(s, "\n[access]\ndefault = \"{}\"\nrules = [{}]", access_name(a.default_action()), rules.join(", "));
    for src in &cfg.sources {
        let c = &src.config;
        let _ = writeln!(
            s,
            "\n[[source]]\naddress = \"{}\"\niburst = {}\nburst = {}\npoll_min = {}\npoll_max = {}\nversion = {}\ninterleaved = {}",
            src.address, c.iburst, c.burst, c.poll_min_log2, c.poll_max_log2, c.version, c.interleaved
        );
    }
    s
}

/// `ntplab serve`'s `[[refclock]]` sections for a host's reference clocks,
/// reading NMEA from `serial` (the lab's pty) and pulses from `pps_socket`.
pub fn ntplab_refclock_config(cfg: &DaemonConfig, serial: Option<&Path>, pps_socket: Option<&Path>) -> String {
    let mut s = String::new();
    for r in &cfg.refclocks {
        let _ = writeln!(s, "\n[[refclock]]\nkind = \"{}\"", r.kind.name());
        if let (true, Some(p)) = (r.kind.uses_serial(), serial) {
            let _ = writeln!(s, "serial = \"{}\"\nbaud = {}", p.display(), r.baud);
        }
        if let (true, Some(p)) = (r.kind.uses_pps(), pps_socket) {
            let _ = writeln!(s, "pps_socket = \"{}\"", p.display());
        }
        if let Some(code) = r.reference_id.ascii() {
            let _ = writeln!(s, "refid = \"{code}\"");
        }
        let _ = writeln!(s, "delay = {:e}\noffset = {:e}\nfilter = {}", r.delay.to_seconds_f64(), r.offset.to_seconds_f64(), r.filter_len);
    }
    s
}

/// An access action as ntplab's configuration writes it.
fn access_name(a: AccessAction) -> &'static str {
    match a {
        AccessAction::Allow => "allow",
        AccessAction::Deny => "deny",
        AccessAction::KodDeny => "kod-deny",
        AccessAction::Restrict => "restrict",
    }
}

/// ntpd-rs's `allowlist`/`denylist` for an access list it can express
/// exactly: everyone allowed but some networks (a denylist), or no one but
/// some (an allowlist), the others all dropped (`ignore`) or all answered
/// with DENY (`deny`). None: allow everyone (no list).
fn ntpd_rs_access(a: &AccessList) -> Result<Option<String>, String> {
    let rules = a.rules();
    if rules.is_empty() && a.default_action() == AccessAction::Allow {
        return Ok(None);
    }
    let action = |x: AccessAction| match x {
        AccessAction::Deny => Ok("ignore"),
        AccessAction::KodDeny => Ok("deny"),
        other => Err(format!("access action {:?}: ntpd-rs refuses with DENY or drops, it has no {}", other, access_name(other))),
    };
    let list = |rules: &[ntplab_proto::server::access::AccessRule]| rules.iter().map(|r| format!("\"{}/{}\"", r.network(), r.prefix_len())).collect::<Vec<_>>().join(", ");
    if a.default_action() == AccessAction::Allow {
        let first = rules[0].action;
        if rules.iter().any(|r| r.action != first) {
            return Err("access rules of more than one action under an allowing default: ntpd-rs has one denylist with one action".into());
        }
        Ok(Some(format!("denylist = {{ filter = [{}], action = \"{}\" }}", list(rules), action(first)?)))
    } else {
        if rules.iter().any(|r| r.action != AccessAction::Allow) {
            return Err("access rules other than allow under a denying default: ntpd-rs has one allowlist".into());
        }
        Ok(Some(format!("allowlist = {{ filter = [{}], action = \"{}\" }}", list(rules), action(a.default_action())?)))
    }
}

fn discipline_name(cfg: &DaemonConfig) -> &'static str {
    match cfg.discipline {
        DisciplineKind::Rfc5905 => "rfc5905",
        DisciplineKind::Regression => "regression",
    }
}

/// Where ntpsec is unpacked when `NTPLAB_PEERS_DIR` is not set
/// (`scripts/install-peers.sh ntpsec`: its `PEERS_DIR`, plus `ntpsec`).
pub const PEERS_DIR: &str = "/tmp/ntplab-peers";

/// ntpsec unpacked by `scripts/install-peers.sh` (Debian's package conflicts
/// with chrony's, so it is not installed): `ROOT/usr/sbin/ntpd`,
/// `ROOT/usr/bin/ntpq` with its Python module under
/// `ROOT/usr/lib/python3/dist-packages`.
#[derive(Debug, Clone)]
pub struct Ntpsec {
    /// The directory it was unpacked into.
    pub root: PathBuf,
}

impl Ntpsec {
    /// `$NTPLAB_PEERS_DIR/ntpsec`, else `/tmp/ntplab-peers/ntpsec`.
    pub fn default_root() -> PathBuf {
        let peers = std::env::var_os("NTPLAB_PEERS_DIR").map_or_else(|| PathBuf::from(PEERS_DIR), PathBuf::from);
        peers.join("ntpsec")
    }
    /// The daemon.
    pub fn ntpd(&self) -> PathBuf {
        self.root.join("usr/sbin/ntpd")
    }
    /// The query program (Python).
    pub fn ntpq(&self) -> PathBuf {
        self.root.join("usr/bin/ntpq")
    }
    /// `PYTHONPATH` for [`Ntpsec::ntpq`].
    pub fn python_path(&self) -> PathBuf {
        self.root.join("usr/lib/python3/dist-packages")
    }
    /// Why it cannot run, if it cannot.
    pub fn missing(&self) -> Option<String> {
        for p in [self.ntpd(), self.ntpq(), self.python_path().join("ntp")] {
            if !p.exists() {
                return Some(format!("ntpsec is not installed: {} is missing (scripts/install-peers.sh ntpsec)", p.display()));
            }
        }
        None
    }
}

/// ntpd-rs: `ntp-daemon` and `ntp-ctl` side by side (`cargo install ntpd`).
#[derive(Debug, Clone)]
pub struct NtpdRs {
    /// `ntp-daemon`.
    pub daemon: PathBuf,
}

impl NtpdRs {
    /// `ntp-daemon` on `PATH`, else in `~/.cargo/bin` (where `cargo install` puts it).
    pub fn default_daemon() -> PathBuf {
        let on_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("ntp-daemon")).find(|f| f.is_file()));
        on_path.unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cargo/bin/ntp-daemon")
        })
    }
    /// `ntp-ctl`, next to the daemon.
    pub fn ctl(&self) -> PathBuf {
        self.daemon.with_file_name("ntp-ctl")
    }
    /// Why it cannot run, if it cannot.
    pub fn missing(&self) -> Option<String> {
        for p in [self.daemon.clone(), self.ctl()] {
            if !p.is_file() {
                return Some(format!("ntpd-rs is not installed: {} is missing (scripts/install-peers.sh ntpd-rs)", p.display()));
            }
        }
        None
    }
}

/// What in a host's daemon settings `implementation` has no setting for;
/// each entry names the setting and why. Empty: its configuration says
/// everything the scenario says.
pub fn unwritable(cfg: &DaemonConfig, implementation: Implementation) -> Vec<String> {
    let mut why = Vec::new();
    match implementation {
        Implementation::Ntpsec => {
            // ntpsec 1.2 speaks to and serves port 123 only.
            for s in &cfg.sources {
                if s.address.port() != 123 {
                    why.push(format!("source {}: ntpsec polls port 123 only", s.address));
                }
                if s.config.version == 5 || s.config.v5_auto {
                    why.push(format!("source {}: ntpsec 1.2 does not speak NTPv5", s.address));
                }
                if s.config.interleaved {
                    // ntp.conf(5) of 1.2.2 has no `xleave`, nor has the ntpd binary the word.
                    why.push(format!("source {}: ntpsec 1.2 has no interleaved mode (its configuration has no `xleave`)", s.address));
                }
            }
            if cfg.listen.iter().any(|a| a.port() != 123) {
                why.push("listen: ntpsec serves port 123 only".into());
            }
            if cfg.server.access != AccessList::default() {
                why.push("access rules are not written to ntpsec's `restrict` lines yet".into());
            }
            if cfg.local.is_some() && !cfg.sources.is_empty() {
                why.push("local_stratum with sources: ntpsec's local refclock would compete with the sources (chrony's `local` and ntplab's serve it only when no source is selected)".into());
            }
        }
        Implementation::NtpdRs => {
            for s in &cfg.sources {
                let c = &s.config;
                if c.burst {
                    why.push(format!("source {}: ntpd-rs has no `burst`", s.address));
                }
                if c.interleaved {
                    why.push(format!("source {}: ntpd-rs 1.9 has no interleaved mode", s.address));
                }
                if !matches!(c.version, 4 | 5) {
                    why.push(format!("source {}: ntpd-rs speaks NTPv4 and NTPv5 only (version {})", s.address, c.version));
                }
                if c.version == 5 && c.draft != ntplab_proto::wire::v5::Draft::DEFAULT {
                    why.push(format!("source {}: ntpd-rs 1.9 speaks the NTPv5 draft-08 only", s.address));
                }
            }
            if let Err(e) = ntpd_rs_access(&cfg.server.access) {
                why.push(e);
            }
        }
        Implementation::Chrony => {
            for s in &cfg.sources {
                if s.config.version == 5 || s.config.v5_auto {
                    why.push(format!("source {}: chrony 4.3 does not speak NTPv5 (its `version` is 1 to 4)", s.address));
                }
            }
            let a = &cfg.server.access;
            for x in std::iter::once(a.default_action()).chain(a.rules().iter().map(|r| r.action)) {
                if x != AccessAction::Allow && x != AccessAction::Deny {
                    why.push(format!("access action {}: chronyd drops a denied client's requests, it sends no kiss-o'-death", access_name(x)));
                    break;
                }
            }
        }
        Implementation::Ntplab => {}
    }
    why
}

/// An ntpsec `ntp.conf` for a host: one `server` line per source (poll
/// range, iburst, burst, version), the local reference as the local
/// refclock (`refclock local stratum N-1`: ntpsec then serves stratum N), a
/// drift file, and `restrict` lines letting `ntpq` on the host's loopback
/// read its variables. `dir` holds the drift file, which is written here with
/// frequency 0: without one ntpsec measures the frequency for 900 s
/// (`stepout`) before it steers it, which would say more about the missing
/// file than about ntpsec.
pub fn ntpsec_config(cfg: &DaemonConfig, dir: &Path, name: &str) -> Result<String, String> {
    let mut s = String::new();
    let drift = dir.join(format!("{name}.ntpsec.drift"));
    std::fs::write(&drift, "0.000\n").map_err(|e| format!("cannot write {}: {e}", drift.display()))?;
    let _ = writeln!(s, "driftfile {}", drift.display());
    for src in &cfg.sources {
        let c = &src.config;
        let _ = write!(s, "server {} minpoll {} maxpoll {}", src.address.ip(), c.poll_min_log2, c.poll_max_log2);
        // unwritable() refuses interleaved sources: ntpsec 1.2 has no `xleave`.
        for (on, word) in [(c.iburst, "iburst"), (c.burst, "burst")] {
            if on {
                let _ = write!(s, " {word}");
            }
        }
        if c.version != 4 {
            let _ = write!(s, " version {}", c.version);
        }
        s.push('\n');
    }
    if let Some(l) = &cfg.local {
        // orphanwait 1: without it ntpd leaves its lone local refclock
        // unselected and answers INIT kisses (a 40 s lab run never synchronized).
        let _ = writeln!(s, "refclock local stratum {} minpoll 0 maxpoll 0\ntos orphanwait 1", l.stratum.saturating_sub(1));
    }
    s.push_str("restrict default nomodify nopeer noquery\nrestrict 127.0.0.1\n");
    Ok(s)
}

/// The observation socket of a host's ntpd-rs, which `ntp-ctl` reads.
pub fn ntpd_rs_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.ntpd-rs.sock"))
}

/// An ntpd-rs `ntp.toml` for a host: one `[[source]]` per source (address,
/// poll range, the initial poll at the range's low end: ntpd-rs has no
/// `iburst`, NTP version), a `[[server]]` per listen address, the local
/// stratum, and the observation socket for `ntp-ctl`. Steering starts with
/// one agreeing source (`minimum-agreeing-sources = 1`; its default is 3),
/// as chronyd, ntpsec and ntplab's daemon do.
pub fn ntpd_rs_config(cfg: &DaemonConfig, dir: &Path, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[observability]\nlog-level = \"info\"\nansi-colors = false\nobservation-path = \"{}\"\n",
        ntpd_rs_socket(dir, name).display()
    );
    let _ = writeln!(s, "[synchronization]\nminimum-agreeing-sources = 1\nwarn-on-jump = false");
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "local-stratum = {}", l.stratum);
    }
    for src in &cfg.sources {
        let c = &src.config;
        let _ = writeln!(
            s,
            "\n[[source]]\nmode = \"server\"\naddress = \"{}\"\npoll-interval-limits = {{ min = {}, max = {} }}\ninitial-poll-interval = {}",
            src.address, c.poll_min_log2, c.poll_max_log2, c.poll_min_log2
        );
        if c.v5_auto {
            s.push_str("ntp-version = \"auto\"\n");
        } else if c.version == 5 {
            s.push_str("ntp-version = 5\n");
        }
    }
    // unwritable() refuses what ntpd_rs_access cannot express.
    let access = ntpd_rs_access(&cfg.server.access).ok().flatten();
    for a in &cfg.listen {
        let _ = writeln!(s, "\n[[server]]\nlisten = \"{a}\"");
        // ntpd-rs 1.9 answers NTPv3 and v4 only unless told (its default
        // `accept-ntp-versions` is [3, 4]); the host's `ntpv5` (default on)
        // says to answer NTPv5 too.
        if cfg.server.ntpv5 {
            s.push_str("accept-ntp-versions = [3, 4, 5]\n");
        }
        if let Some(l) = &access {
            let _ = writeln!(s, "{l}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(access: &str) -> DaemonConfig {
        DaemonConfig::from_toml(&format!("listen = [\"10.0.0.1:123\"]\n[local]\nstratum = 1\n[access]\n{access}\n"), "test").unwrap()
    }

    #[test]
    fn access_rules_are_written_where_the_program_can_say_them() {
        let dir = Path::new("/tmp");
        let ip = "10.0.0.1".parse().unwrap();
        // Longest prefix wins in chrony too: the rules go over as they are.
        let c = config("default = \"deny\"\nrules = [ { network = \"10.0.0.0/24\", action = \"allow\" }, { network = \"10.0.0.2\", action = \"deny\" } ]");
        let text = chrony_config(&c, ip, Some(123), dir, "h");
        assert!(text.contains("deny all\nallow 10.0.0.0/24\ndeny 10.0.0.2/32\n"), "{text}");
        assert!(unwritable(&c, Implementation::Chrony).is_empty());
        let back = DaemonConfig::from_toml(&ntplab_config(&c), "written").unwrap();
        assert_eq!(back.server.access, c.server.access);
        assert_eq!(back.precision_log2, None, "measured by the lab host's daemon");
        let mut fixed = c.clone();
        fixed.precision_log2 = Some(-23);
        let text = ntplab_config(&fixed);
        assert_eq!(DaemonConfig::from_toml(&text, "written").unwrap().precision_log2, Some(-23), "{text}");
        assert!(chrony_config(&fixed, ip, Some(123), dir, "h").contains("\nclockprecision 1.1920928955078125e-7\n"));
        // ntpd-rs: an allowlist under a denying default, but not a deny inside it.
        assert!(unwritable(&c, Implementation::NtpdRs)[0].contains("one allowlist"));
        let c = config("default = \"kod-deny\"\nrules = [ { network = \"10.0.0.0/24\", action = \"allow\" } ]");
        assert!(ntpd_rs_config(&c, dir, "h").contains("[[server]]\nlisten = \"10.0.0.1:123\"\naccept-ntp-versions = [3, 4, 5]\nallowlist = { filter = [\"10.0.0.0/24\"], action = \"deny\" }\n"));
        assert!(unwritable(&c, Implementation::NtpdRs).is_empty());
        assert!(unwritable(&c, Implementation::Chrony)[0].contains("kod-deny: chronyd drops"));
        let c = config("rules = [ { network = \"10.0.0.2\", action = \"deny\" } ]");
        assert!(ntpd_rs_config(&c, dir, "h").contains("denylist = { filter = [\"10.0.0.2/32\"], action = \"ignore\" }"));
        let c = config("rules = [ { network = \"10.0.0.2\", action = \"restrict\" } ]");
        assert!(unwritable(&c, Implementation::NtpdRs)[0].contains("no restrict"));
        assert!(unwritable(&c, Implementation::Ntpsec)[0].contains("not written to ntpsec"));
        // No rules, allow: no list at all.
        let text = ntpd_rs_config(&config("default = \"allow\""), dir, "h");
        assert!(!text.contains("allowlist") && !text.contains("denylist"), "{text}");
    }

    #[test]
    fn modes_a_program_lacks_are_refused() {
        let source = |extra: &str| DaemonConfig::from_toml(&format!("[[source]]\naddress = \"10.0.0.1:123\"\n{extra}\n"), "test").unwrap();
        let v5 = source("version = 5");
        assert!(unwritable(&v5, Implementation::Chrony)[0].contains("chrony 4.3 does not speak NTPv5"));
        assert!(unwritable(&v5, Implementation::Ntpsec)[0].contains("does not speak NTPv5"));
        assert!(unwritable(&v5, Implementation::NtpdRs).is_empty());
        let xleave = source("interleaved = true");
        assert!(unwritable(&xleave, Implementation::Ntpsec)[0].contains("no interleaved mode"));
        assert!(unwritable(&xleave, Implementation::NtpdRs)[0].contains("no interleaved mode"));
        assert!(unwritable(&xleave, Implementation::Chrony).is_empty());
        assert!(chrony_config(&xleave, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h").contains(" xleave\n"));
    }

    #[test]
    fn sha256_of_a_file_and_of_a_missing_one() {
        let p = std::env::temp_dir().join(format!("ntplab-sha-{}", std::process::id()));
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::remove_file(&p).unwrap();
        assert!(sha256_file(&p).unwrap_err().contains("cannot read"));
    }
}
