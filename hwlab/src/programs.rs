//! The programs a lab host runs, each on its own virtual clock: how to start
//! them (the clock shim preloaded, CAP_SYS_TIME removed with `setpriv`, in the
//! host's namespace) and the configuration written from the host's spec.

use ntplab_daemon::config::{DaemonConfig, NtsServerSpec, NtsSourceSpec, StepSettings};
use ntplab_proto::discipline::DisciplineKind;
use ntplab_proto::nts::Aead;
use ntplab_proto::select::SelectOptions;
use ntplab_proto::server::access::{AccessAction, AccessList};
use ntplab_proto::server::{LeapKind, RateLimitConfig, SmearConfig, SmearStyle};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_sim::nts::CertificateKind;
use ntplab_sim::scenario::Implementation;
use ntplab_vclock::Params;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
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

/// The `cargo build` arguments that build into the directory `exe` runs from:
/// `target/<dir>/` or `target/<dir>/deps/`, where `debug` is cargo's `dev`
/// profile and any other directory name is the profile of that name (so a
/// test binary of `--cargo-profile checked` builds the shim it needs into
/// `target/checked/`). None when `exe` is not under a cargo target directory.
pub fn cargo_profile_args(exe: &Path) -> Option<Vec<String>> {
    let mut dir = exe.parent()?;
    if dir.file_name()? == "deps" {
        dir = dir.parent()?;
    }
    match dir.file_name()?.to_str()? {
        "debug" => Some(Vec::new()),
        "release" => Some(vec!["--release".into()]),
        name => Some(vec!["--profile".into(), name.into()]),
    }
}

/// Builds the clock shim with `cargo` (a no-op when it is fresh) into the
/// profile directory the running executable is in (see
/// [`cargo_profile_args`]), for tests that need it. The variables cargo sets
/// for a running test or binary are not passed on: ring's build script
/// watches `CARGO_MANIFEST_DIR`, so an inherited one would rebuild ring and
/// every crate above it here, and again in the next ordinary build.
pub fn build_clockshim(cargo: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let profile = cargo_profile_args(&exe).ok_or_else(|| format!("{} is not under a cargo target directory", exe.display()))?;
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "ntplab-clockshim"]).args(profile);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo = ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR"].contains(&name)
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_");
        if set_by_cargo {
            build.env_remove(name);
        }
    }
    let status = build.status().map_err(|e| format!("{cargo} did not run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building the clock shim failed ({status})"))
    }
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
    /// The lab's control page the shim maps (`ntplab_vclock::control`), if any.
    pub control: Option<PathBuf>,
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
            .env("NTPLAB_VCLOCK_SHIFT_NS", self.params.shift_ns.to_string())
            .env("NTPLAB_VCLOCK_WANDER", self.params.wander_text())
            .env("NTPLAB_VCLOCK_JOURNAL", &self.journal)
            .stdin(Stdio::null());
        if let Some(p) = &self.control {
            c.env("NTPLAB_VCLOCK_CONTROL", p);
        }
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
    /// What ran for `host`: `program` (hashed here) and its `version` line.
    pub fn new(host: &str, implementation: &str, program: &Path, version: String) -> Result<Started, String> {
        Ok(Started {
            host: host.to_string(),
            implementation: implementation.to_string(),
            sha256: sha256_file(program)?,
            program: program.display().to_string(),
            version,
        })
    }

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

/// The NTS-KE port every lab NTS server listens on unless its spec says
/// otherwise (RFC 8915 §4: 4460; ntpsec's is fixed there).
pub const KE_PORT: u16 = 4460;

/// A lab run's NTS certificates: a CA made for the run, and a certificate
/// signed by it for each host that serves NTS (ECDSA P-256, which the four
/// implementations' TLS libraries all verify: rustls, GnuTLS, OpenSSL).
#[derive(Debug, Clone, Default)]
pub struct NtsPki {
    /// The CA certificate (PEM): every NTS client's trust anchor.
    pub ca: PathBuf,
    /// Host name → (certificate, key) PEM files.
    pub identities: BTreeMap<String, (PathBuf, PathBuf)>,
    /// Where the hosts keep their NTS state.
    pub dir: PathBuf,
}

/// What one host's configuration needs for NTS.
#[derive(Debug, Clone)]
pub struct HostNts {
    /// The trust anchors its NTS sources are checked against.
    pub ca: PathBuf,
    /// Its certificate and key, when it serves NTS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// A directory of its own for NTS state (cookie keys, saved cookies).
    pub state_dir: PathBuf,
}

impl NtsPki {
    /// Makes the CA and a certificate for each of `servers` (host name,
    /// address, which certificate) in `dir`, valid around `now_unix` (real
    /// time, s): `valid` for the host's address (an IP SAN, which is what
    /// every client is configured with) and its name, from a day before to
    /// 30 days after; `expired` the same names, ended a day before;
    /// `wrong-name` for `wrong-name.invalid` only (as the simulator's).
    pub fn make(dir: &Path, servers: &[(String, IpAddr, CertificateKind)], now_unix: i64) -> Result<NtsPki, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let at = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).map_err(|e| format!("NTS certificate validity: {e}"));
        let day = 86_400;
        let ca_key = rcgen::KeyPair::generate().map_err(|e| format!("NTS CA key: {e}"))?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("NTS CA: {e}"))?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "ntplab lab NTS CA (made for one run)");
        ca.not_before = at(now_unix - 2 * day)?;
        ca.not_after = at(now_unix + 60 * day)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| format!("NTS CA certificate: {e}"))?;
        let write = |p: &Path, text: String| std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()));
        let ca_path = dir.join("ca.pem");
        write(&ca_path, ca_cert.pem())?;
        let mut identities = BTreeMap::new();
        for (name, address, kind) in servers {
            let names = match kind {
                CertificateKind::WrongName => vec!["wrong-name.invalid".to_string()],
                _ => vec![address.to_string(), name.clone()],
            };
            let key = rcgen::KeyPair::generate().map_err(|e| format!("NTS key of host `{name}`: {e}"))?;
            let mut p = rcgen::CertificateParams::new(names).map_err(|e| format!("NTS certificate of host `{name}`: {e}"))?;
            p.is_ca = rcgen::IsCa::ExplicitNoCa;
            p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, format!("ntplab lab NTS server {name}"));
            let (from, until) = match kind {
                CertificateKind::Expired => (now_unix - 365 * day, now_unix - day),
                _ => (now_unix - day, now_unix + 30 * day),
            };
            p.not_before = at(from)?;
            p.not_after = at(until)?;
            let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(|e| format!("NTS certificate of host `{name}`: {e}"))?;
            let (c, k) = (dir.join(format!("{name}.cert.pem")), dir.join(format!("{name}.key.pem")));
            write(&c, cert.pem())?;
            write(&k, key.serialize_pem())?;
            identities.insert(name.clone(), (c, k));
        }
        Ok(NtsPki { ca: ca_path, identities, dir: dir.to_path_buf() })
    }

    /// What host `name`'s configuration needs (its state directory made
    /// empty: cookies or keys a previous run into the same directory saved
    /// would not fit this run's server keys).
    pub fn host(&self, name: &str) -> Result<HostNts, String> {
        let state_dir = self.dir.join(format!("{name}.state"));
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir).map_err(|e| format!("cannot empty {}: {e}", state_dir.display()))?;
        }
        std::fs::create_dir_all(&state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        Ok(HostNts { ca: self.ca.clone(), identity: self.identities.get(name).cloned(), state_dir })
    }
}

/// AEAD IDs as a TOML list's items: `15, 30, 17`.
fn aead_ids(a: &[Aead]) -> String {
    a.iter().map(|x| x.id().0.to_string()).collect::<Vec<_>>().join(", ")
}

/// Whether an AEAD list is the default one (`aeads` not given).
fn default_aeads(a: &[Aead]) -> bool {
    a == Aead::ALL
}

/// The NTS-KE listen port of a server spec (the first of `ke_listen`).
fn ke_port(n: &NtsServerSpec) -> u16 {
    n.ke_listen.first().map_or(KE_PORT, |a| a.port())
}

/// What in a host's NTS settings `implementation` has no setting for.
fn nts_unwritable(cfg: &DaemonConfig, implementation: Implementation, why: &mut Vec<String>) {
    let program = implementation.name();
    if let Some(n) = &cfg.nts {
        let port = ke_port(n);
        match implementation {
            Implementation::Ntpsec => {
                if port != KE_PORT {
                    why.push(format!("NTS-KE on port {port}: ntpsec 1.2 serves NTS-KE on {KE_PORT} only"));
                }
                if n.key_rotation != std::time::Duration::from_secs(86_400) {
                    why.push(format!("NTS key_rotation {} s: ntpsec 1.2 makes a new cookie key daily, it has no setting", n.key_rotation.as_secs_f64()));
                }
                if n.ntp_server.is_some() || n.ntp_port.is_some() {
                    why.push("NTS ntp_server/ntp_port: ntpsec 1.2 has no setting to name another NTP server or port in NTS-KE".into());
                }
                if !default_aeads(&n.aeads) {
                    why.push("NTS aeads: ntpsec 1.2's server accepts 15, 16 and 17 in the client's order, it cannot be limited".into());
                }
            }
            Implementation::Chrony => {
                if !default_aeads(&n.aeads) && n.aeads != [Aead::AesSivCmac256] {
                    why.push(format!("NTS aeads [{}]: chrony 4.3 implements AEAD 15 only", aead_ids(&n.aeads)));
                }
                let listen = cfg.listen.first().map(|a| a.port());
                if n.ntp_port.is_some_and(|p| Some(p) != listen) {
                    why.push("NTS ntp_port: chronyd names its own NTP port in NTS-KE, it has no setting for another".into());
                }
            }
            Implementation::NtpdRs => {
                if !default_aeads(&n.aeads) {
                    why.push("NTS aeads: ntpd-rs 1.9 accepts 15 and 17 in the client's order, it has no setting".into());
                }
            }
            Implementation::Ntplab => {}
        }
    }
    for s in &cfg.sources {
        let Some(n) = &s.nts else { continue };
        let a = &n.aeads;
        match implementation {
            Implementation::Chrony if !default_aeads(a) && *a != [Aead::AesSivCmac256] => {
                why.push(format!("source {}: NTS aeads [{}]: chrony 4.3 offers AEAD 15 only", s.address, aead_ids(a)))
            }
            Implementation::Ntpsec if !default_aeads(a) && a.len() != 1 => {
                why.push(format!("source {}: NTS aeads [{}]: ntpsec 1.2 offers exactly one AEAD", s.address, aead_ids(a)))
            }
            Implementation::Ntpsec if a.len() == 1 && a[0] == Aead::Aes128GcmSiv => {
                why.push(format!("source {}: NTS AEAD 30: ntpsec 1.2 implements 15, 16 and 17 only", s.address))
            }
            Implementation::NtpdRs if !default_aeads(a) => {
                why.push(format!("source {}: NTS aeads [{}]: ntpd-rs 1.9 offers 17 then 15, it has no setting", s.address, aead_ids(a)))
            }
            _ => {}
        }
        if implementation == Implementation::Ntpsec && n.ke_port != KE_PORT {
            why.push(format!("source {}: NTS-KE port {}: {program} is written with {KE_PORT} only", s.address, n.ke_port));
        }
    }
}

/// ntpsec's name of an AEAD (`aead` option).
fn ntpsec_aead(a: Aead) -> &'static str {
    match a {
        Aead::AesSivCmac256 => "AES_SIV_CMAC_256",
        Aead::AesSivCmac512 => "AES_SIV_CMAC_512",
        // nts_unwritable() refuses it.
        Aead::Aes128GcmSiv => "AES_128_GCM_SIV",
    }
}

/// The NTS material a host's configuration uses, or an error naming what is missing.
fn nts_files<'a>(nts: Option<&'a HostNts>, what: &str) -> Result<&'a HostNts, String> {
    nts.ok_or_else(|| format!("{what}: NTS is configured but the lab made no NTS certificates"))
}

/// The `[nts]` section and NTS source lines of `ntplab serve`.
fn ntplab_nts_server(n: &NtsServerSpec, (cert, key): &(PathBuf, PathBuf)) -> String {
    let mut s = String::new();
    let ke: Vec<String> = n.ke_listen.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(
        s,
        "\n[nts]\ncertificate = \"{}\"\nkey = \"{}\"\nke_listen = [{}]\nkey_rotation = {}\naeads = [{}]",
        cert.display(),
        key.display(),
        ke.join(", "),
        n.key_rotation.as_secs_f64(),
        aead_ids(&n.aeads)
    );
    if let Some(v) = &n.ntp_server {
        let _ = writeln!(s, "ntp_server = \"{v}\"");
    }
    if let Some(p) = n.ntp_port {
        let _ = writeln!(s, "ntp_port = {p}");
    }
    s
}

fn ntplab_nts_source(n: &NtsSourceSpec, ca: &Path) -> String {
    let host = if n.ke_host.contains(':') { format!("[{}]", n.ke_host) } else { n.ke_host.clone() };
    format!("nts = true\nke_server = \"{host}:{}\"\ntrusted_certificates = \"{}\"\naeads = [{}]\n", n.ke_port, ca.display(), aead_ids(&n.aeads))
}

/// The skew (ppm) written beside the frequency in chrony-format drift files
/// the lab writes: the error bound of a frequency known exactly (the
/// scenario's `drift`) as chrony would start from it; ntplab's daemon reads
/// and checks it but does not use it.
pub const DRIFT_SKEW_PPM: f64 = 1.0;

/// A host's drift file in the run directory: `NAME.IMPL.drift`.
pub fn drift_path(dir: &Path, name: &str, implementation: Implementation) -> PathBuf {
    dir.join(format!("{name}.{}.drift", implementation.name()))
}

/// The drift file's text for a frequency correction `correction` (s/s, what
/// `DaemonConfig::initial_frequency` holds: minus the scenario's `drift`) in
/// the format `implementation` reads. ntplab and chrony: chrony's
/// `FREQ_PPM SKEW_PPM`, FREQ the rate the clock gains (= −correction).
/// ntpsec: ntpd's one number, the frequency correction in ppm (positive:
/// the clock is sped up). None for ntpd-rs, which has no drift file.
pub fn drift_text(correction: f64, implementation: Implementation) -> Option<String> {
    match implementation {
        Implementation::Ntplab | Implementation::Chrony => Some(ntplab_daemon::drift::format(correction, DRIFT_SKEW_PPM * 1e-6)),
        Implementation::Ntpsec => Some(format!("{:.6}\n", correction * 1e6)),
        Implementation::NtpdRs => None,
    }
}

/// Writes host `name`'s drift file into `dir` when its configuration starts
/// from a frequency (the scenario's `drift`), in `implementation`'s format,
/// and returns its path; ntpsec always gets one (with 0 when no `drift` is
/// given: see [`ntpsec_config`]). None: no drift file for this host.
pub fn write_drift_file(cfg: &DaemonConfig, dir: &Path, name: &str, implementation: Implementation) -> Result<Option<PathBuf>, String> {
    let correction = match (cfg.initial_frequency, implementation) {
        (Some(f), _) => f,
        (None, Implementation::Ntpsec) => 0.0,
        (None, _) => return Ok(None),
    };
    let Some(text) = drift_text(correction, implementation) else {
        return Err(format!("host `{name}`: `drift` is set but {} has no drift file to write it to", implementation.name()));
    };
    let path = drift_path(dir, name, implementation);
    std::fs::write(&path, text).map_err(|e| format!("host `{name}`: cannot write its drift file {}: {e}", path.display()))?;
    Ok(Some(path))
}

/// A chronyd configuration for a host of the scenario: its sources (port,
/// poll range, iburst, burst, version), `local stratum`, where it listens,
/// NTS (`nts` sources trusting the run's CA, `ntsservercert`/`ntsserverkey`
/// when it serves NTS, its state in `nts`'s directory), and no command
/// socket. `dir` holds its pid file.
pub fn chrony_config(cfg: &DaemonConfig, bind: std::net::IpAddr, port: Option<u16>, dir: &Path, name: &str, nts: Option<&HostNts>) -> Result<String, String> {
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
        if let Some(d) = c.max_delay {
            let _ = write!(s, " maxdelay {:.9}", d.to_seconds_f64());
        }
        if let Some(r) = c.max_delay_ratio {
            let _ = write!(s, " maxdelayratio {r}");
        }
        if let Some(r) = c.max_delay_dev_ratio {
            let _ = write!(s, " maxdelaydevratio {r}");
        }
        // `[clock] poll_target`: chrony's is per source.
        if let Some(n) = cfg.poll_target {
            let _ = write!(s, " polltarget {n}");
        }
        for (word, on) in select_words(&src.select) {
            if on {
                let _ = write!(s, " {word}");
            }
        }
        if let Some(n) = &src.nts {
            s.push_str(" nts");
            if n.ke_port != KE_PORT {
                let _ = write!(s, " ntsport {}", n.ke_port);
            }
        }
        s.push('\n');
    }
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "local stratum {}", l.stratum);
    }
    if cfg.min_sources != 1 {
        let _ = writeln!(s, "minsources {}", cfg.min_sources);
    }
    if let Some(d) = cfg.max_distance {
        let _ = writeln!(s, "maxdistance {d:e}");
    }
    if let Some(m) = cfg.max_change {
        let _ = writeln!(s, "maxchange {:e} {} {}", m.offset, m.start, m.ignore);
    }
    if let Some(p) = cfg.precision_log2 {
        let _ = writeln!(s, "clockprecision {:e}", 2f64.powi(i32::from(p)));
    }
    // The host's `step`: chrony's `makestep` (without one chronyd never
    // steps, and has no panic threshold: [`unwritable`] refuses one).
    if cfg.step != StepSettings::default() {
        let limit = cfg.step.updates_written().unwrap_or(3);
        let _ = writeln!(s, "makestep {} {limit}", cfg.step.threshold_s);
    }
    // The scenario's `drift`: chronyd starts from the file's frequency (and
    // rewrites it with the frequency it measures).
    if let Some(drift) = write_drift_file(cfg, dir, name, Implementation::Chrony)? {
        let _ = writeln!(s, "driftfile {}", drift.display());
    }
    if cfg.sources.iter().any(|x| x.nts.is_some()) || cfg.nts.is_some() {
        let f = nts_files(nts, &format!("host `{name}`"))?;
        // Only the run's CA is trusted; the state (server keys, cookies) stays in the run.
        let _ = writeln!(s, "ntstrustedcerts {}
nosystemcert
ntsdumpdir {}", f.ca.display(), f.state_dir.display());
        if let Some(n) = &cfg.nts {
            let (cert, key) = f.identity.as_ref().ok_or_else(|| format!("host `{name}`: serves NTS but has no certificate"))?;
            let _ = writeln!(s, "ntsservercert {}
ntsserverkey {}
ntsrotate {}", cert.display(), key.display(), n.key_rotation.as_secs().max(1));
            if ke_port(n) != KE_PORT {
                let _ = writeln!(s, "ntsport {}", ke_port(n));
            }
            if let Some(v) = &n.ntp_server {
                let _ = writeln!(s, "ntsntpserver {v}");
            }
        }
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
            // unwritable() refuses a rate limit chronyd cannot say.
            if let Ok(Some(line)) = chrony_ratelimit(&cfg.server.rate_limit) {
                let _ = writeln!(s, "{line}");
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
    Ok(s)
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
/// sources, the local reference, the discipline, the drift file
/// (`drift_file`, which [`write_drift_file`] wrote; required when the host
/// starts from a frequency) and NTS (the server's certificate and key; NTS
/// sources trusting the run's CA).
pub fn ntplab_config(cfg: &DaemonConfig, nts: Option<&HostNts>, drift_file: Option<&Path>) -> Result<String, String> {
    let mut s = String::new();
    let listen: Vec<String> = cfg.listen.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(s, "listen = [{}]", listen.join(", "));
    let _ = writeln!(s, "interleaved = {}", cfg.server.interleaved);
    let _ = writeln!(s, "min_sources = {}", cfg.min_sources);
    if let Some(d) = cfg.max_distance {
        let _ = writeln!(s, "max_distance = {d:e}");
    }
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "\n[local]\nstratum = {}", l.stratum);
        if let Some(leap) = &l.leap {
            let _ = writeln!(s, "leap = \"{}\"", leap_text(leap));
        }
    }
    let _ = writeln!(s, "\n[clock]\ndiscipline = \"{}\"", discipline_name(cfg));
    let st = &cfg.step;
    let _ = writeln!(s, "step_threshold = {:e}\npanic_threshold = {:e}\npanic_at_start = {}", st.threshold_s, st.panic_threshold_s.unwrap_or(0.0), st.panic_at_start);
    if let Some(n) = st.updates_written() {
        let _ = writeln!(s, "step_updates = {n}");
    }
    if let Some(n) = cfg.poll_target {
        let _ = writeln!(s, "poll_target = {n}");
    }
    if let Some(m) = cfg.max_change {
        let _ = writeln!(s, "max_change = {{ offset = {:e}, start = {}, ignore = {} }}", m.offset, m.start, m.ignore);
    }
    // Given only when the configuration fixes it: otherwise the daemon measures its clock.
    if let Some(p) = cfg.precision_log2 {
        let _ = writeln!(s, "precision = {:e}", 2f64.powi(i32::from(p)));
    }
    match (drift_file, cfg.initial_frequency) {
        (Some(p), _) => {
            let _ = writeln!(s, "drift_file = \"{}\"", p.display());
        }
        (None, Some(_)) => return Err("[clock] drift_file: the host starts from a frequency (`drift`) but no drift file was written for it".into()),
        (None, None) => {}
    }
    let a = &cfg.server.access;
    let rules: Vec<String> =
        a.rules().iter().map(|r| format!("{{ network = \"{}/{}\", action = \"{}\" }}", r.network(), r.prefix_len(), access_name(r.action))).collect();
    let _ = writeln!(s, "\n[access]\ndefault = \"{}\"\nrules = [{}]", access_name(a.default_action()), rules.join(", "));
    let r = &cfg.server.rate_limit;
    if *r != no_rate_limit() {
        let _ = writeln!(
            s,
            "\n[rate_limit]\nenabled = {}\ninterval_s_min = {}\nburst = {}\nkod = {}\nslots = {}\nleak = {}",
            r.enabled,
            seconds_text(r.interval_ns_min),
            r.burst,
            r.kod,
            r.slots,
            r.leak_log2
        );
    }
    if let Some(m) = &cfg.server.smear {
        s += &ntplab_smear(m);
    }
    for src in &cfg.sources {
        let c = &src.config;
        let _ = writeln!(
            s,
            "\n[[source]]\naddress = \"{}\"\niburst = {}\nburst = {}\npoll_min = {}\npoll_max = {}\nversion = {}\ninterleaved = {}",
            src.address, c.iburst, c.burst, c.poll_min_log2, c.poll_max_log2, c.version, c.interleaved
        );
        if let Some(d) = c.max_delay {
            let _ = writeln!(s, "max_delay = {:.9}", d.to_seconds_f64());
        }
        if let Some(r) = c.max_delay_ratio {
            let _ = writeln!(s, "max_delay_ratio = {r:?}");
        }
        if let Some(r) = c.max_delay_dev_ratio {
            let _ = writeln!(s, "max_delay_dev_ratio = {r:?}");
        }
        for (word, on) in select_words(&src.select) {
            if on {
                let _ = writeln!(s, "{word} = true");
            }
        }
        if let Some(n) = &src.nts {
            s += &ntplab_nts_source(n, &nts_files(nts, &format!("source {}", src.address))?.ca);
        }
    }
    if let Some(n) = &cfg.nts {
        let id = nts_files(nts, "[nts]")?.identity.as_ref().ok_or("[nts]: the host serves NTS but has no certificate")?;
        s += &ntplab_nts_server(n, id);
    }
    Ok(s)
}

/// The rate limiting of a configuration without a `[rate_limit]` table.
fn no_rate_limit() -> RateLimitConfig {
    RateLimitConfig { enabled: false, ..RateLimitConfig::default() }
}

/// Nanoseconds as exact decimal seconds (`2.500000000`), so that the daemon
/// reads back the interval it was given.
/// A source's selection options as chrony's (and ntplab's) words.
fn select_words(o: &SelectOptions) -> [(&'static str, bool); 4] {
    [("noselect", o.noselect), ("prefer", o.prefer), ("trust", o.trust), ("require", o.require)]
}

fn seconds_text(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// A leap second as `ntplab serve`'s `[local] leap` reads it: the day before
/// `at` (00:00:00 UTC after the leap) at 23:59:60 (inserted) or 23:59:59
/// (deleted).
pub fn leap_text(leap: &ntplab_proto::system::LeapAnnouncement) -> String {
    leap_second_text(leap.at, leap.kind == ntplab_proto::wire::v4::LeapIndicator::Delete)
}

/// The leap second that ends at `end` (00:00:00 UTC) as ntplab's
/// configuration writes it: the day before, at 23:59:60 (inserted) or
/// 23:59:59 (deleted).
fn leap_second_text(end: NtpTime, delete: bool) -> String {
    let day = (end + NtpDuration::from_seconds(-86_400)).to_civil();
    let time = if delete { "23:59:59" } else { "23:59:60" };
    format!("{:04}-{:02}-{:02}T{time}Z", day.year, day.month, day.day)
}

/// `ntplab serve`'s `[smear]` table for a smear: the leap second as written
/// ([`leap_second_text`] of the smear's `leap_time`).
fn ntplab_smear(m: &SmearConfig) -> String {
    let kind = match m.kind {
        LeapKind::Insert => "insert",
        LeapKind::Delete => "delete",
    };
    let style = match m.style {
        SmearStyle::BeforeLeap => "before-leap",
        SmearStyle::Centered => "centered",
    };
    let leap = leap_second_text(m.leap_time, m.kind == LeapKind::Delete);
    format!("\n[smear]\nstyle = \"{style}\"\nleap = \"{leap}\"\nkind = \"{kind}\"\n")
}

/// chronyd's `ratelimit` line for a rate limit it can say exactly, or why
/// not. chronyd limits each address with a token bucket of `burst` answers
/// refilled one per `2^interval` s, as ntplab's (GCRA: an average interval
/// with a burst); it drops what is over the limit (no RATE kiss) and
/// answers one in `2^leak` dropped requests anyway, leak 1 to 4.
fn chrony_ratelimit(r: &RateLimitConfig) -> Result<Option<String>, Vec<String>> {
    if !r.enabled {
        return Ok(None);
    }
    let mut why = Vec::new();
    // chrony's interval is a power of two seconds, 2^-19 to 2^12, and below
    // 2^-4 s chrony.conf(5) says it limits coarsely (in bursts).
    let exponent = (-4..=12).find(|&e: &i32| {
        let ns = 2f64.powi(e) * 1e9;
        ns.fract() == 0.0 && ns as u64 == r.interval_ns_min
    });
    if exponent.is_none() {
        why.push(format!(
            "rate_limit interval_s_min {} s: chronyd's `ratelimit interval` is a power of two seconds, and exact from 2^-4 to 2^12 (below, it limits in bursts)",
            seconds_text(r.interval_ns_min)
        ));
    }
    if !(1..=255).contains(&r.burst) {
        why.push(format!("rate_limit burst {}: chronyd's `ratelimit burst` is 1 to 255", r.burst));
    }
    if r.kod {
        why.push("rate_limit kod = true: chronyd drops requests over the limit, it sends no RATE kiss-o'-death (kod = false says that)".into());
    }
    if r.leak_log2 == 0 {
        why.push("rate_limit leak 0 (answer none over the limit): chronyd always answers some (`ratelimit leak` 1 to 4: one in 2 to one in 16)".into());
    }
    if r.slots != RateLimitConfig::default().slots {
        why.push(format!("rate_limit slots {}: chronyd sizes its client table in octets (`clientloglimit`), not slots", r.slots));
    }
    match exponent {
        Some(e) if why.is_empty() => Ok(Some(format!("ratelimit interval {e} burst {} leak {}", r.burst, r.leak_log2))),
        _ => Err(why),
    }
}

/// Where a lab daemon's reference clock reads its pulses.
#[derive(Debug, Clone, Copy)]
pub enum PpsInput<'a> {
    /// The lab's SOCK feed (`pps_socket`).
    Socket(&'a Path),
    /// A real kernel PPS device (`pps_device`).
    Device(&'a Path),
}

/// `ntplab serve`'s `[[refclock]]` sections for a host's reference clocks,
/// reading NMEA from `serial` (a pty the lab writes, with the line speed of
/// the real receiver behind it, else the scenario's) and pulses from `pps`.
pub fn ntplab_refclock_config(cfg: &DaemonConfig, serial: Option<(&Path, Option<u32>)>, pps: Option<PpsInput<'_>>) -> String {
    let mut s = String::new();
    for r in &cfg.refclocks {
        let _ = writeln!(s, "\n[[refclock]]\nkind = \"{}\"", r.kind.name());
        if let (true, Some((p, baud))) = (r.kind.uses_serial(), serial) {
            let _ = writeln!(s, "serial = \"{}\"\nbaud = {}", p.display(), baud.unwrap_or(r.baud));
        }
        match (r.kind.uses_pps(), pps) {
            (true, Some(PpsInput::Socket(p))) => {
                let _ = writeln!(s, "pps_socket = \"{}\"", p.display());
            }
            (true, Some(PpsInput::Device(p))) => {
                let _ = writeln!(s, "pps_device = \"{}\"", p.display());
            }
            _ => {}
        }
        if let Some(code) = r.reference_id.ascii() {
            let _ = writeln!(s, "refid = \"{code}\"");
        }
        let _ = writeln!(s, "delay = {:e}\noffset = {:e}\nfilter = {}", r.delay.to_seconds_f64(), r.offset.to_seconds_f64(), r.filter_len);
    }
    s
}

/// chronyd's `refclock` lines for a host's reference clocks: a `SOCK`
/// source on `pps_socket`, which chronyd creates and binds and the lab's
/// feeder sends the pulses to ([`crate::refclock::PulseSamples::ChronyPulse`]).
/// No `lock`: a pulse takes its second from the system clock, which
/// chronyd requires synchronised by another source (refclock.c drops
/// pulses otherwise; [`refclock_unwritable`] refuses a host without one),
/// as ntplab's `pps` kind takes it from its own clock. `poll` is ntplab's
/// (its filter window's length in log2 seconds, at least 4), `filter` its
/// window's length, `delay` the same setting (both default to 1e-9 s). `offset`: ntplab's is the
/// pulses' delay after the true second, which it subtracts; chronyd's is
/// added to minus the edge's fraction of a second (`offset = -second +
/// instance->offset` in `RCL_AddCookedPulse`), so an edge `d` late is
/// compensated by the same `d`.
pub fn chrony_refclock_config(cfg: &DaemonConfig, pps_socket: &Path) -> String {
    let mut s = String::new();
    for r in cfg.refclocks.iter().filter(|r| r.kind.uses_pps()) {
        let _ = write!(s, "refclock SOCK {} poll {} filter {}", pps_socket.display(), r.poll_log2(), r.filter_len);
        if let Some(code) = r.reference_id.ascii() {
            let _ = write!(s, " refid {code}");
        }
        let _ = writeln!(s, " delay {} offset {}", ns_seconds(r.delay), ns_seconds(r.offset));
    }
    s
}

/// `d` in seconds to the nanosecond, as a configuration says it (`2e-6`,
/// not the binary fraction's 1.9997823983430862e-6).
fn ns_seconds(d: NtpDuration) -> String {
    format!("{:e}", (d.to_seconds_f64() * 1e9).round() / 1e9)
}

/// ntpd-rs's `[[source]]` for a host's pulses: `mode = "sock"` on
/// `pps_socket` (ntpd-rs creates and binds it), fed time samples
/// ([`crate::refclock::PulseSamples::NearestSecond`]), with `precision` the
/// pulses' standard deviation (`pps_jitter_s` to the nanosecond, at least
/// 1 ns): ntpd-rs
/// cannot estimate a sock source's noise and asks for it. Its sock source
/// has no reference ID, delay, offset or filter settings
/// ([`refclock_unwritable`] refuses a scenario that sets them).
pub fn ntpd_rs_refclock_config(cfg: &DaemonConfig, pps_socket: &Path, pps_jitter_s: f64) -> String {
    let mut s = String::new();
    for _ in cfg.refclocks.iter().filter(|r| r.kind.uses_pps()) {
        let _ = writeln!(s, "\n[[source]]\nmode = \"sock\"\npath = \"{}\"\nprecision = {:e}", pps_socket.display(), ((pps_jitter_s * 1e9).round() / 1e9).max(1e-9));
    }
    s
}

/// Where gpsd is expected (Debian's package `gpsd`).
pub const GPSD: &str = "/usr/sbin/gpsd";

/// Why gpsd cannot run, if it cannot.
pub fn gpsd_missing(gpsd: &Path) -> Option<String> {
    (!gpsd.is_file()).then(|| format!("gpsd is not installed: {} is missing (apt-get install gpsd, or scripts/install-peers.sh gpsd)", gpsd.display()))
}

/// gpsd's arguments for a host's receiver: `-N` in the foreground, `-n`
/// reading `device` (the lab's link to its pty, which the clock shim reports
/// as a UART: gpsd exports no time from a pty) at once, `-b` never writing
/// to it, `-s` at the scenario's line speed (no baud hunting), its control
/// socket `-F control` in the run's directory, `-D 2` logging what it
/// finds. Run as root in a fresh IPC namespace, gpsd puts the receiver's
/// NMEA time in NTP SHM segment 0 (`ntpshm_link_activate`), which only
/// the host's chronyd, in the same namespace, reads.
pub fn gpsd_args(device: &Path, control: &Path, baud: u32) -> Vec<String> {
    let mut a: Vec<String> = ["-N", "-n", "-b", "-s"].map(String::from).to_vec();
    a.push(baud.to_string());
    a.extend(["-F".to_string(), control.display().to_string(), "-D".into(), "2".into(), device.display().to_string()]);
    a
}

/// chronyd's `refclock` line for a host's NMEA-only receiver, read through
/// gpsd: `SHM 0` (gpsd's first segment, which it fills with each second's
/// fix time and its own receive stamp of the cycle), with ntplab's `poll`
/// (its window's length in log2 seconds, at least 4), `filter`, `delay` and
/// `refid`; `offset` is ntplab's, the delay of the stamped moment after the
/// true second, which chronyd adds to the sample's offset as ntplab
/// subtracts it (a sample stamped `d` late reads `-d`). gpsd stamps the end
/// of the second's NMEA cycle, not an RMC sentence's end as ntpsec and
/// ntplab's daemon do, so the same receiver takes a larger `offset` here
/// (docs/hwlab.md).
pub fn chrony_gps_refclock_config(cfg: &DaemonConfig) -> String {
    let mut s = String::new();
    for r in cfg.refclocks.iter().filter(|r| r.kind == ntplab_daemon::config::RefclockKind::Gps) {
        let _ = write!(s, "refclock SHM 0 poll {} filter {}", r.poll_log2(), r.filter_len);
        if let Some(code) = r.reference_id.ascii() {
            let _ = write!(s, " refid {code}");
        }
        let _ = writeln!(s, " delay {} offset {}", ns_seconds(r.delay), ns_seconds(r.offset));
    }
    s
}

/// The line speeds ntpsec's NMEA driver takes (its `baud` option).
pub const NTPSEC_NMEA_BAUDS: [u32; 6] = [4800, 9600, 19_200, 38_400, 57_600, 115_200];

/// ntpsec's `refclock nmea` line for a host's NMEA-only reference clock,
/// reading the lab's pty (`path`, so no /dev/gpsN link is needed) at the
/// scenario's baud: RMC sentences only (`mode 1`, the sentence whose second
/// ntplab's daemon takes), polled at ntplab's window (`minpoll`/`maxpoll`),
/// `refid` the scenario's, and `time2` (the serial end-of-line offset the
/// driver subtracts from its receive stamps) ntplab's `offset`, which it
/// subtracts from the sentences' arrivals.
pub fn ntpsec_refclock_config(cfg: &DaemonConfig, serial: &Path) -> String {
    let mut s = String::new();
    for r in cfg.refclocks.iter().filter(|r| r.kind == ntplab_daemon::config::RefclockKind::Gps) {
        let poll = r.poll_log2();
        let _ = write!(s, "refclock nmea unit 0 mode 1 baud {} path {} minpoll {poll} maxpoll {poll} time2 {}", r.baud, serial.display(), ns_seconds(r.offset));
        if let Some(code) = r.reference_id.ascii() {
            let _ = write!(s, " refid {code}");
        }
        s.push('\n');
    }
    s
}

/// Why `implementation` cannot read a host's reference clocks as the
/// virtual lab feeds them (NMEA on a pty, pulses as SOCK samples), one
/// entry per reason; ntplab's daemon reads both.
fn refclock_unwritable(cfg: &DaemonConfig, implementation: Implementation, why: &mut Vec<String>) {
    use ntplab_daemon::config::{RefclockKind, RefclockSpec};
    for r in &cfg.refclocks {
        let kind = r.kind.name();
        let defaults = RefclockSpec::new(r.kind);
        match implementation {
            Implementation::Ntplab => {}
            Implementation::Chrony => {
                if r.kind == RefclockKind::GpsPps {
                    why.push(format!(
                        "refclock kind {kind}: chronyd reads the NMEA through gpsd (SHM) in the lab, but the pulses numbered by it (`refclock SOCK ... lock`) are not written yet: use kind gps or pps"
                    ));
                } else if r.kind.uses_serial() {
                    // NMEA through gpsd (chrony_gps_refclock_config); missing_programs() names gpsd if it is not installed.
                } else if cfg.sources.is_empty() {
                    why.push(format!(
                        "refclock kind {kind} with no NTP source: chronyd takes a pulse without `lock` only while another source keeps its clock synchronised (refclock.c drops it otherwise), and this host has none; ntplab's daemon numbers the pulses by its own clock from the start, which no chrony setting says (`local` would also serve the unsynchronised clock)"
                    ));
                }
            }
            Implementation::NtpdRs => {
                if r.kind.uses_serial() {
                    why.push(format!(
                        "refclock kind {kind}: ntpd-rs 1.9 has no NMEA reader, and gpsd 3.22 cannot stand in: it sends its `sock` format (chrony's SOCK) only the PPS edges, the NMEA time going to NTP SHM segments, which ntpd-rs does not read"
                    ));
                    continue;
                }
                let mut unset = Vec::new();
                if r.reference_id != defaults.reference_id {
                    unset.push(format!("refid {:?} (its sock sources are all SOCK)", r.reference_id.ascii().unwrap_or("?")));
                }
                if r.delay != defaults.delay {
                    unset.push(format!("delay {}", ns_seconds(r.delay)));
                }
                if r.offset != defaults.offset {
                    unset.push(format!("offset {}", ns_seconds(r.offset)));
                }
                if r.filter_len != defaults.filter_len {
                    unset.push(format!("filter {} (each sample goes to its Kalman filter)", r.filter_len));
                }
                if !unset.is_empty() {
                    why.push(format!("refclock kind {kind}: ntpd-rs 1.9's sock source has no setting for {}", unset.join(", ")));
                }
            }
            Implementation::Ntpsec => {
                if r.kind.uses_pps() {
                    why.push(format!(
                        "refclock kind {kind}: ntpsec reads pulses from a kernel PPS device (/dev/ppsN, RFC 2783), and the virtual lab has none: it sends its pulses as SOCK samples, which ntpsec does not read"
                    ));
                    continue;
                }
                if !NTPSEC_NMEA_BAUDS.contains(&r.baud) {
                    why.push(format!("refclock kind {kind}: baud {}: ntpsec's NMEA driver takes {NTPSEC_NMEA_BAUDS:?}", r.baud));
                }
                if r.delay != defaults.delay {
                    why.push(format!("refclock kind {kind}: delay {}: ntpsec's refclocks have no delay setting", ns_seconds(r.delay)));
                }
            }
        }
    }
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

/// ntpsec's `restrict` lines for a host's access list (for allow everyone,
/// the lone `restrict default` line): `restrict default` with `noserve` for a denying default, one
/// `restrict NET/LEN` per rule (`noserve` for `deny`; the rule that wins
/// for a network, ntplab's later one), each with the `nomodify nopeer
/// noquery` the lab writes for every entry. ntpd, as ntplab, lets the most
/// specific entry win; it merges the flags of entries of the same network
/// and length, hence the one rule per network. `noserve` drops every packet
/// but ntpq's, its sources' replies too, so a host that denies gets a
/// `restrict ADDR` without flags for each source the list denies (which
/// that source, were it to ask this host for time, would then get: where
/// ntplab applies its list to requests only). Refused: other actions
/// (ntpsec has no RSTR kiss, and whether its `kod` sends DENY for
/// `noserve` is not checked).
fn ntpsec_access(cfg: &DaemonConfig) -> Result<String, String> {
    let a = &cfg.server.access;
    let flags = |x: AccessAction| match x {
        AccessAction::Allow => Ok(""),
        AccessAction::Deny => Ok(" noserve"),
        other => Err(format!("access action {}: ntpsec's `restrict` lines are written for allow and deny only", access_name(other))),
    };
    let mut s = format!("restrict default{} nomodify nopeer noquery\n", flags(a.default_action())?);
    let mut effective: Vec<&ntplab_proto::server::access::AccessRule> = Vec::new();
    for r in a.rules() {
        effective.retain(|e| (e.network(), e.prefix_len()) != (r.network(), r.prefix_len()));
        effective.push(r);
    }
    for r in &effective {
        let _ = writeln!(s, "restrict {}/{}{} nomodify nopeer noquery", r.network(), r.prefix_len(), flags(r.action)?);
    }
    for src in &cfg.sources {
        let ip = src.address.ip();
        if a.decide(ip) != AccessAction::Allow {
            let _ = writeln!(s, "restrict {ip}");
        }
    }
    Ok(s)
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
                if s.config.max_delay.is_some() {
                    why.push(format!("source {}: ntpsec 1.2 has no per-source maximum delay (chrony's `maxdelay`)", s.address));
                }
                if s.config.max_delay_ratio.is_some() || s.config.max_delay_dev_ratio.is_some() {
                    why.push(format!("source {}: ntpsec 1.2 has no per-source delay ratio tests (chrony's `maxdelayratio`, `maxdelaydevratio`)", s.address));
                }
                if s.select.trust || s.select.require {
                    // Its `true` makes a source survive selection and clustering
                    // whatever the others say: not chrony's `trust`.
                    why.push(format!("source {}: ntpsec 1.2 has no `trust` or `require` (its `true` is another rule)", s.address));
                }
            }
            if cfg.listen.iter().any(|a| a.port() != 123) {
                why.push("listen: ntpsec serves port 123 only".into());
            }
            if cfg.max_change.is_some() {
                why.push("max_change: ntpsec 1.2 has no largest adjustment (chrony's `maxchange`; its panic threshold is another rule)".into());
            }
            if let Some(n) = cfg.poll_target {
                why.push(format!("poll_target {n}: ntpsec 1.2 has no poll target (chrony's `polltarget`; its poll follows its own hysteresis)"));
            }
            if let Err(e) = ntpsec_access(cfg) {
                why.push(e);
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
                if c.max_delay.is_some() {
                    why.push(format!("source {}: ntpd-rs 1.9 has no per-source maximum delay (chrony's `maxdelay`)", s.address));
                }
                if c.max_delay_ratio.is_some() || c.max_delay_dev_ratio.is_some() {
                    why.push(format!("source {}: ntpd-rs 1.9 has no per-source delay ratio tests (chrony's `maxdelayratio`, `maxdelaydevratio`)", s.address));
                }
                if s.select != SelectOptions::default() {
                    why.push(format!("source {}: the lab writes no selection options (`noselect`, `prefer`, `trust`, `require`) for ntpd-rs", s.address));
                }
                if !matches!(c.version, 4 | 5) {
                    why.push(format!("source {}: ntpd-rs speaks NTPv4 and NTPv5 only (version {})", s.address, c.version));
                }
                if c.version == 5 && c.draft != ntplab_proto::wire::v5::Draft::DEFAULT {
                    why.push(format!("source {}: ntpd-rs 1.9 speaks the NTPv5 draft-08 only", s.address));
                }
            }
            if cfg.max_change.is_some() {
                why.push("max_change: ntpd-rs 1.9 has no largest adjustment that ends it after skips (chrony's `maxchange`; its panic thresholds are other rules)".into());
            }
            if let Some(n) = cfg.poll_target {
                why.push(format!("poll_target {n}: ntpd-rs 1.9 has no poll target (chrony's `polltarget`)"));
            }
            if let Some(d) = cfg.max_distance {
                // Its `maximum-source-uncertainty` bounds a different quantity.
                why.push(format!("max_distance {d:e} s: ntpd-rs 1.9 has no root-distance limit for selection (chrony's `maxdistance`)"));
            }
            if let Err(e) = ntpd_rs_access(&cfg.server.access) {
                why.push(e);
            }
            if let Some(f) = cfg.initial_frequency {
                why.push(format!(
                    "drift {:e} (a drift file to start from): ntpd-rs 1.9 keeps no drift file (ntp.toml(5) has no such setting), it starts from the kernel's frequency",
                    -f
                ));
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
    step_unwritable(cfg, implementation, &mut why);
    rate_limit_and_smear_unwritable(cfg, implementation, &mut why);
    nts_unwritable(cfg, implementation, &mut why);
    refclock_unwritable(cfg, implementation, &mut why);
    why
}

/// What in a host's `step` `implementation` cannot say. chronyd takes a
/// threshold and a limit (`makestep`) and has no panic threshold. ntpsec
/// steps at its first update and later only after the stepout (ntpd's
/// `tinker step` and `stepout`): ntplab's `updates = 1`. ntpd-rs steps at
/// every update whose offset exceeds its `step-threshold`: `updates = -1`.
/// Both exit at an offset beyond their panic threshold, where ntplab's daemon
/// leaves the clock alone and goes on, so a panic threshold is refused for
/// them (the lab writes theirs off).
fn step_unwritable(cfg: &DaemonConfig, implementation: Implementation, why: &mut Vec<String>) {
    if cfg.step == StepSettings::default() {
        return;
    }
    let name = implementation.name();
    let no_panic = || format!("step: {name} exits at an offset beyond its panic threshold, where ntplab's daemon leaves the clock alone: give `panic_threshold = 0`");
    match implementation {
        Implementation::Ntplab => {}
        Implementation::Chrony => {
            if cfg.step.panic_threshold_s.is_some() {
                why.push("step: chrony 4.3 has no panic threshold (its `makestep` steps any offset): give `panic_threshold = 0`".into());
            }
        }
        Implementation::Ntpsec => {
            if cfg.step.updates != Some(1) {
                why.push("step: ntpsec steps at its first clock update and later only after the stepout (`tinker step`, `stepout`): give `updates = 1`".into());
            }
            if cfg.step.panic_threshold_s.is_some() {
                why.push(no_panic());
            }
        }
        Implementation::NtpdRs => {
            if cfg.step.updates != Some(u32::MAX) {
                why.push("step: ntpd-rs steps at every update whose offset exceeds its `step-threshold`: give `updates = -1`".into());
            }
            if cfg.step.panic_threshold_s.is_some() {
                why.push(no_panic());
            }
        }
    }
}

/// ntpsec's lines for a host's `step` (none without one): the step
/// threshold, ntplab's stepout (RFC 5905's WATCH, 900 s; ntpsec's own
/// default is shorter) and no panic threshold ([`step_unwritable`] refuses
/// what else a `step` may say).
fn ntpsec_step_config(cfg: &DaemonConfig) -> String {
    if cfg.step == StepSettings::default() {
        return String::new();
    }
    format!("tinker step {:e} stepout {} panic 0\n", cfg.step.threshold_s, ntplab_proto::constants::WATCH as u64)
}

/// What in a host's rate limiting and leap smear `implementation` cannot say.
fn rate_limit_and_smear_unwritable(cfg: &DaemonConfig, implementation: Implementation, why: &mut Vec<String>) {
    let r = &cfg.server.rate_limit;
    match implementation {
        Implementation::Ntplab => {}
        Implementation::Chrony => {
            if let Err(w) = chrony_ratelimit(r) {
                why.extend(w);
            }
            // ntplab counts an IPv6 client by its prefix (/64 by default), chronyd by its address.
            if r.enabled && r.prefix_len_v6 < 128 && cfg.listen.iter().any(|a| a.is_ipv6()) {
                why.push(format!(
                    "rate_limit on IPv6: ntplab's limiter counts the clients of one /{} as one, chronyd counts each address",
                    r.prefix_len_v6
                ));
            }
        }
        Implementation::Ntpsec if r.enabled => why.push(
            "rate_limit: ntpsec 1.2's limiter (`restrict limited` with `limit average A burst B kod K`, ntp.conf(5)) keeps an exponentially \
             decaying score of every request of an address, answered or not, where ntplab's admits one answer per interval on average with \
             a burst and does not count refused requests: no `limit` says the same"
                .into(),
        ),
        Implementation::NtpdRs if r.enabled => why.push(
            "rate_limit: ntpd-rs 1.9 has only a least time between two requests of a client (`rate-limiting-cutoff-ms`), \
             no average interval with a burst or a leak"
                .into(),
        ),
        Implementation::Ntpsec | Implementation::NtpdRs => {}
    }
    if cfg.server.smear.is_some() {
        let reason = match implementation {
            Implementation::Ntplab => None,
            Implementation::Chrony => Some(
                "chronyd 4.3 smears only as it slews (`leapsecmode slew`, `smoothtime`: a quadratic spline bounded by a maximum frequency and \
                 wander), not by a fixed linear curve over a given window, so it serves a different time",
            ),
            Implementation::Ntpsec => Some("ntpsec 1.2 has leap smearing only when built with it (`leapsmearinterval`), and the lab's build is not"),
            Implementation::NtpdRs => Some("ntpd-rs 1.9 has no leap smear"),
        };
        if let Some(reason) = reason {
            why.push(format!("smear: {reason}"));
        }
    }
}

/// An ntpsec `ntp.conf` for a host: one `server` line per source (poll
/// range, iburst, burst, version), the local reference as the local
/// refclock (`refclock local stratum N-1`: ntpsec then serves stratum N), a
/// drift file, and `restrict` lines letting `ntpq` on the host's loopback
/// read its variables. `dir` holds the drift file, which is written here
/// with the scenario's `drift` as ntpd's frequency correction in ppm, or 0
/// without one: without a drift file ntpsec measures the frequency for 900 s
/// (`stepout`) before it steers it, which would say more about the missing
/// file than about ntpsec.
///
/// NTS: an `nts` source names its NTS-KE server (`ca` the run's CA, `aead`
/// when the source offers one); a host serving NTS gets `nts enable` with
/// its certificate, key and cookie-key file.
pub fn ntpsec_config(cfg: &DaemonConfig, dir: &Path, name: &str, nts: Option<&HostNts>) -> Result<String, String> {
    let mut s = String::new();
    let drift = write_drift_file(cfg, dir, name, Implementation::Ntpsec)?.ok_or_else(|| format!("host `{name}`: no drift file written for ntpsec"))?;
    let _ = writeln!(s, "driftfile {}", drift.display());
    if cfg.min_sources != 1 {
        // The host's `min_sources` (ntpd's default minsane is 1).
        let _ = writeln!(s, "tos minsane {}", cfg.min_sources);
    }
    if let Some(d) = cfg.max_distance {
        // ntpd's selection threshold (its default is 1.5 s).
        let _ = writeln!(s, "tos maxdist {d:e}");
    }
    s.push_str(&ntpsec_step_config(cfg));
    for src in &cfg.sources {
        let c = &src.config;
        let _ = write!(s, "server {} minpoll {} maxpoll {}", src.address.ip(), c.poll_min_log2, c.poll_max_log2);
        if let Some(n) = &src.nts {
            // The `server` name is the NTS-KE server's; its certificate must name it.
            let _ = write!(s, " nts ca {}", nts_files(nts, &format!("source {}", src.address))?.ca.display());
            if let [one] = n.aeads[..] {
                let _ = write!(s, " aead {}", ntpsec_aead(one));
            }
        }
        // unwritable() refuses interleaved sources: ntpsec 1.2 has no `xleave`,
        // and `trust` and `require`.
        for (on, word) in [(c.iburst, "iburst"), (c.burst, "burst"), (src.select.prefer, "prefer"), (src.select.noselect, "noselect")] {
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
    if cfg.nts.is_some() {
        let f = nts_files(nts, &format!("host `{name}`"))?;
        let (cert, key) = f.identity.as_ref().ok_or_else(|| format!("host `{name}`: serves NTS but has no certificate"))?;
        let _ = writeln!(s, "nts enable cert {} key {} cookie {}", cert.display(), key.display(), f.state_dir.join("ntpsec-nts-keys").display());
    }
    // The host's access list ([`unwritable`] refuses what ntpsec_access
    // cannot write); without one, every client served.
    s.push_str(&ntpsec_access(cfg)?);
    s.push_str("restrict 127.0.0.1\n");
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
/// as chronyd, ntpsec and ntplab's daemon do. NTS: `mode = "nts"` sources
/// (their NTS-KE server's address, `certificate-authority` the run's CA); a
/// host serving NTS gets an `[[nts-ke-server]]` and a `[keyset]` of its own.
pub fn ntpd_rs_config(cfg: &DaemonConfig, dir: &Path, name: &str, nts: Option<&HostNts>) -> Result<String, String> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[observability]\nlog-level = \"info\"\nansi-colors = false\nobservation-path = \"{}\"\n",
        ntpd_rs_socket(dir, name).display()
    );
    let _ = writeln!(s, "[synchronization]\nminimum-agreeing-sources = {}\nwarn-on-jump = false", cfg.min_sources);
    // The host's `step` ([`step_unwritable`] lets through `updates = -1`
    // without a panic threshold): ntpd-rs's panic thresholds off, its step
    // threshold under `[synchronization.algorithm]` below.
    let step = cfg.step != StepSettings::default();
    if step {
        s.push_str("single-step-panic-threshold = \"inf\"\nstartup-step-panic-threshold = \"inf\"\n");
    }
    if let Some(l) = &cfg.local {
        let _ = writeln!(s, "local-stratum = {}", l.stratum);
    }
    for src in &cfg.sources {
        let c = &src.config;
        match &src.nts {
            Some(n) => {
                let host = if n.ke_host.contains(':') { format!("[{}]", n.ke_host) } else { n.ke_host.clone() };
                let ca = &nts_files(nts, &format!("source {}", src.address))?.ca;
                let _ = writeln!(s, "\n[[source]]\nmode = \"nts\"\naddress = \"{host}:{}\"\ncertificate-authority = \"{}\"", n.ke_port, ca.display());
            }
            None => {
                let _ = writeln!(s, "\n[[source]]\nmode = \"server\"\naddress = \"{}\"", src.address);
            }
        }
        let _ = writeln!(s, "poll-interval-limits = {{ min = {}, max = {} }}\ninitial-poll-interval = {}", c.poll_min_log2, c.poll_max_log2, c.poll_min_log2);
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
    if let Some(n) = &cfg.nts {
        let f = nts_files(nts, &format!("host `{name}`"))?;
        let (cert, key) = f.identity.as_ref().ok_or_else(|| format!("host `{name}`: serves NTS but has no certificate"))?;
        // The NTP port named in NTS-KE: the spec's, else the first listen port.
        let ntp_port = n.ntp_port.or_else(|| cfg.listen.first().map(|a| a.port())).unwrap_or(123);
        for a in &n.ke_listen {
            let _ = writeln!(
                s,
                "\n[[nts-ke-server]]\nlisten = \"{a}\"\ncertificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\nntp-port = {ntp_port}",
                cert.display(),
                key.display()
            );
            if let Some(v) = &n.ntp_server {
                let _ = writeln!(s, "ntp-server = \"{v}\"");
            }
            if n.ntpv5 {
                s.push_str("accept-ntp-versions = [4, 5]\n");
            }
        }
        let _ = writeln!(
            s,
            "\n[keyset]\nkey-storage-path = \"{}\"\nkey-rotation-interval = {}",
            f.state_dir.join("ntpd-rs-keyset").display(),
            n.key_rotation.as_secs().max(1)
        );
    }
    if step {
        let _ = writeln!(s, "\n[synchronization.algorithm]\nstep-threshold = {:e}", cfg.step.threshold_s);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_is_built_in_the_profile_of_the_directory_a_binary_runs_from() {
        let args = |p: &str| cargo_profile_args(Path::new(p));
        assert_eq!(args("/w/target/debug/deps/lab_cli-0123"), Some(vec![]));
        assert_eq!(args("/w/target/debug/ntplab"), Some(vec![]));
        assert_eq!(args("/w/target/release/deps/lab_cli-0123"), Some(vec!["--release".to_string()]));
        assert_eq!(args("/w/target/checked/deps/lab_cli-0123"), Some(vec!["--profile".to_string(), "checked".to_string()]));
        assert_eq!(args("ntplab"), None);
    }

    #[test]
    fn a_refclock_reads_the_lab_pty_and_a_socket_or_a_real_pps_device() {
        let text = "listen = [\"10.0.0.1:123\"]\n[[refclock]]\nkind = \"gps-pps\"\nserial = \"/dev/x\"\nbaud = 4800\npps_socket = \"/p\"\n";
        let cfg = DaemonConfig::from_toml(text, "c").unwrap();
        let virtual_feed = ntplab_refclock_config(&cfg, Some((Path::new("/dev/pts/7"), None)), Some(PpsInput::Socket(Path::new("/o/h.pps.sock"))));
        assert!(virtual_feed.contains("serial = \"/dev/pts/7\"\nbaud = 4800\npps_socket = \"/o/h.pps.sock\"\n"), "{virtual_feed}");
        let real = ntplab_refclock_config(&cfg, Some((Path::new("/dev/pts/8"), Some(115_200))), Some(PpsInput::Device(Path::new("/dev/pps0"))));
        assert!(real.contains("serial = \"/dev/pts/8\"\nbaud = 115200\npps_device = \"/dev/pps0\"\n") && !real.contains("pps_socket"), "{real}");
        // The daemon takes what the lab writes.
        let back = DaemonConfig::from_toml(&format!("listen = [\"10.0.0.1:123\"]\n{real}"), "back").unwrap();
        assert_eq!(back.refclocks[0].pps_device.as_deref(), Some(Path::new("/dev/pps0")));
        assert_eq!(back.refclocks[0].baud, 115_200);
    }

    #[test]
    fn chronyd_and_ntpd_rs_read_the_pulses_from_a_sock_source_with_the_scenarios_settings() {
        let text = "[[source]]\naddress = \"10.0.0.1:123\"\n[[refclock]]\nkind = \"pps\"\npps_socket = \"/p\"\nrefid = \"GPPS\"\ndelay = 2e-6\noffset = 5e-8\nfilter = 4\n";
        let cfg = DaemonConfig::from_toml(text, "c").unwrap();
        let sock = Path::new("/o/h.pps.sock");
        // ntplab's poll: its window's length in log2 seconds, at least 4.
        assert_eq!(chrony_refclock_config(&cfg, sock), "refclock SOCK /o/h.pps.sock poll 4 filter 4 refid GPPS delay 2e-6 offset 5e-8\n");
        // The defaults: chronyd is told them too (its refid would be SOCK).
        let plain = DaemonConfig::from_toml(&text.replace("refid = \"GPPS\"\ndelay = 2e-6\noffset = 5e-8\nfilter = 4\n", ""), "c").unwrap();
        assert_eq!(chrony_refclock_config(&plain, sock), "refclock SOCK /o/h.pps.sock poll 4 filter 16 refid PPS delay 1e-9 offset 0e0\n");
        let rs = ntpd_rs_refclock_config(&plain, sock, 2e-8);
        assert_eq!(rs, "\n[[source]]\nmode = \"sock\"\npath = \"/o/h.pps.sock\"\nprecision = 2e-8\n");
        // A whole ntp.toml with it is TOML, the sock source after the server.
        let whole = format!("{}{rs}", ntpd_rs_config(&plain, Path::new("/o"), "h", None).unwrap());
        let v: toml::Value = toml::from_str(&whole).unwrap_or_else(|e| panic!("{e}\n{whole}"));
        let sources = v["source"].as_array().unwrap();
        assert_eq!((sources.len(), sources[1]["mode"].as_str(), sources[1]["precision"].as_float()), (2, Some("sock"), Some(2e-8)));
        // A jitter of 0 still gives ntpd-rs the positive precision it requires.
        assert!(ntpd_rs_refclock_config(&plain, sock, 0.0).ends_with("precision = 1e-9\n"));
        assert!(ntpd_rs_refclock_config(&plain, sock, 1.00000761449337e-6).ends_with("precision = 1e-6\n"));
        // Without pulses (NMEA only: chronyd reads it through gpsd, ntpd-rs is refused) no SOCK source is written.
        let gps = DaemonConfig::from_toml("[[refclock]]\nkind = \"gps\"\nserial = \"/dev/x\"\n", "c").unwrap();
        assert_eq!((chrony_refclock_config(&gps, sock), ntpd_rs_refclock_config(&gps, sock, 1e-8)), (String::new(), String::new()));
        // The settings ntpd-rs's sock source lacks are refused, each named.
        let why = unwritable(&cfg, Implementation::NtpdRs);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].starts_with("refclock kind pps: ntpd-rs 1.9's sock source has no setting for refid \"GPPS\" (its sock sources are all SOCK), delay 2e-6, offset 5e-8, filter 4"), "{why:?}");
        assert_eq!(unwritable(&plain, Implementation::NtpdRs), Vec::<String>::new());
        assert_eq!(unwritable(&cfg, Implementation::Chrony), Vec::<String>::new());
    }

    #[test]
    fn ntpsec_reads_the_nmea_pty_with_the_scenarios_settings_and_refuses_what_it_cannot_say() {
        let text = "[[refclock]]\nkind = \"gps\"\nserial = \"/dev/x\"\nbaud = 4800\nrefid = \"NMEA\"\noffset = 0.0835\nfilter = 64\n";
        let cfg = DaemonConfig::from_toml(text, "c").unwrap();
        // time2: the end-of-line offset ntpsec subtracts, as ntplab subtracts `offset`; poll 6 for 64 samples.
        assert_eq!(
            ntpsec_refclock_config(&cfg, Path::new("/dev/pts/3")),
            "refclock nmea unit 0 mode 1 baud 4800 path /dev/pts/3 minpoll 6 maxpoll 6 time2 8.35e-2 refid NMEA\n"
        );
        assert_eq!(unwritable(&cfg, Implementation::Ntpsec), Vec::<String>::new());
        let odd = DaemonConfig::from_toml(&text.replace("baud = 4800", "baud = 2400").replace("filter = 64", "delay = 1e-3"), "c").unwrap();
        assert_eq!(
            unwritable(&odd, Implementation::Ntpsec),
            vec![
                "refclock kind gps: baud 2400: ntpsec's NMEA driver takes [4800, 9600, 19200, 38400, 57600, 115200]".to_string(),
                "refclock kind gps: delay 1e-3: ntpsec's refclocks have no delay setting".to_string()
            ]
        );
        // Pulses: nothing written, refused.
        let pps = DaemonConfig::from_toml("[[refclock]]\nkind = \"gps-pps\"\nserial = \"/dev/x\"\npps_socket = \"/p\"\n", "c").unwrap();
        assert_eq!(ntpsec_refclock_config(&pps, Path::new("/dev/pts/3")), "");
        assert!(unwritable(&pps, Implementation::Ntpsec)[0].contains("kernel PPS device"));
    }

    #[test]
    fn chronyd_reads_the_nmea_through_gpsd_with_the_scenarios_settings_and_ntpd_rs_is_refused() {
        let text = "[[refclock]]\nkind = \"gps\"\nserial = \"/dev/x\"\nbaud = 4800\nrefid = \"NMEA\"\ndelay = 1e-3\noffset = 0.2\nfilter = 64\n";
        let cfg = DaemonConfig::from_toml(text, "c").unwrap();
        // gpsd's first SHM segment, ntplab's poll window, filter, refid, delay and offset.
        assert_eq!(chrony_gps_refclock_config(&cfg), "refclock SHM 0 poll 6 filter 64 refid NMEA delay 1e-3 offset 2e-1\n");
        assert_eq!(unwritable(&cfg, Implementation::Chrony), Vec::<String>::new());
        let plain = DaemonConfig::from_toml("[[refclock]]\nkind = \"gps\"\nserial = \"/dev/x\"\n", "c").unwrap();
        assert_eq!(chrony_gps_refclock_config(&plain), "refclock SHM 0 poll 4 filter 16 refid GPS delay 1e-9 offset 0e0\n");
        assert_eq!(
            gpsd_args(Path::new("/o/h.gps"), Path::new("/o/h.gpsd.sock"), 9600),
            ["-N", "-n", "-b", "-s", "9600", "-F", "/o/h.gpsd.sock", "-D", "2", "/o/h.gps"].map(String::from).to_vec()
        );
        // Pulses and NMEA together: not written for chronyd yet; ntpd-rs reads no NMEA, even through gpsd.
        let both = DaemonConfig::from_toml("[[source]]\naddress = \"10.0.0.1:123\"\n[[refclock]]\nkind = \"gps-pps\"\nserial = \"/dev/x\"\npps_socket = \"/p\"\n", "c").unwrap();
        assert_eq!(chrony_gps_refclock_config(&both), "");
        let why = unwritable(&both, Implementation::Chrony);
        assert!(why.len() == 1 && why[0].contains("pulses numbered by it"), "{why:?}");
        let why = unwritable(&cfg, Implementation::NtpdRs);
        assert!(why.len() == 1 && why[0].contains("gpsd 3.22 cannot stand in"), "{why:?}");
        assert!(gpsd_missing(Path::new("/nonexistent/gpsd")).unwrap().contains("apt-get install gpsd"));
    }

    fn config(access: &str) -> DaemonConfig {
        DaemonConfig::from_toml(&format!("listen = [\"10.0.0.1:123\"]\n[local]\nstratum = 1\n[access]\n{access}\n"), "test").unwrap()
    }

    #[test]
    fn access_rules_are_written_where_the_program_can_say_them() {
        let dir = Path::new("/tmp");
        let ip = "10.0.0.1".parse().unwrap();
        // Longest prefix wins in chrony too: the rules go over as they are.
        let c = config("default = \"deny\"\nrules = [ { network = \"10.0.0.0/24\", action = \"allow\" }, { network = \"10.0.0.2\", action = \"deny\" } ]");
        let text = chrony_config(&c, ip, Some(123), dir, "h", None).unwrap();
        assert!(text.contains("deny all\nallow 10.0.0.0/24\ndeny 10.0.0.2/32\n"), "{text}");
        assert!(unwritable(&c, Implementation::Chrony).is_empty());
        let back = DaemonConfig::from_toml(&ntplab_config(&c, None, None).unwrap(), "written").unwrap();
        assert_eq!(back.server.access, c.server.access);
        assert_eq!(back.precision_log2, None, "measured by the lab host's daemon");
        let mut fixed = c.clone();
        fixed.precision_log2 = Some(-23);
        let text = ntplab_config(&fixed, None, None).unwrap();
        assert_eq!(DaemonConfig::from_toml(&text, "written").unwrap().precision_log2, Some(-23), "{text}");
        assert!(chrony_config(&fixed, ip, Some(123), dir, "h", None).unwrap().contains("\nclockprecision 1.1920928955078125e-7\n"));
        // ntpd-rs: an allowlist under a denying default, but not a deny inside it.
        assert!(unwritable(&c, Implementation::NtpdRs)[0].contains("one allowlist"));
        let c = config("default = \"kod-deny\"\nrules = [ { network = \"10.0.0.0/24\", action = \"allow\" } ]");
        assert!(ntpd_rs_config(&c, dir, "h", None).unwrap().contains("[[server]]\nlisten = \"10.0.0.1:123\"\naccept-ntp-versions = [3, 4, 5]\nallowlist = { filter = [\"10.0.0.0/24\"], action = \"deny\" }\n"));
        assert!(unwritable(&c, Implementation::NtpdRs).is_empty());
        assert!(unwritable(&c, Implementation::Chrony)[0].contains("kod-deny: chronyd drops"));
        let c = config("rules = [ { network = \"10.0.0.2\", action = \"deny\" } ]");
        assert!(ntpd_rs_config(&c, dir, "h", None).unwrap().contains("denylist = { filter = [\"10.0.0.2/32\"], action = \"ignore\" }"));
        let c = config("rules = [ { network = \"10.0.0.2\", action = \"restrict\" } ]");
        assert!(unwritable(&c, Implementation::NtpdRs)[0].contains("no restrict"));
        assert!(unwritable(&c, Implementation::Ntpsec)[0].contains("for allow and deny only"));
        // No rules, allow: no list at all.
        let text = ntpd_rs_config(&config("default = \"allow\""), dir, "h", None).unwrap();
        assert!(!text.contains("allowlist") && !text.contains("denylist"), "{text}");
    }

    #[test]
    fn access_rules_become_ntpsecs_restrict_lines_with_its_sources_let_in() {
        let dir = std::env::temp_dir().join(format!("ntplab-ntpsec-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Without rules: every client served, as before.
        let plain = ntpsec_config(&config("default = \"allow\""), &dir, "h", None).unwrap();
        assert!(plain.ends_with("\nrestrict default nomodify nopeer noquery\nrestrict 127.0.0.1\n"), "{plain}");
        // An allowing default with a denied network (the later of two rules
        // for the same network is the one that holds, as in ntplab).
        let c = config("rules = [ { network = \"10.0.0.0/24\", action = \"allow\" }, { network = \"10.0.0.2\", action = \"allow\" }, { network = \"10.0.0.2\", action = \"deny\" } ]");
        assert!(unwritable(&c, Implementation::Ntpsec).is_empty());
        let text = ntpsec_config(&c, &dir, "h", None).unwrap();
        assert!(
            text.ends_with("\nrestrict default nomodify nopeer noquery\nrestrict 10.0.0.0/24 nomodify nopeer noquery\nrestrict 10.0.0.2/32 noserve nomodify nopeer noquery\nrestrict 127.0.0.1\n"),
            "{text}"
        );
        // A denying default on a host with a source: the source's replies let in.
        let denying_with_source = |source: &str| {
            let text = format!("listen = [\"10.0.0.1:123\"]\n[[source]]\naddress = \"{source}:123\"\n[access]\ndefault = \"deny\"\nrules = [ {{ network = \"10.0.0.3\", action = \"allow\" }} ]\n");
            DaemonConfig::from_toml(&text, "test").unwrap()
        };
        let with_source = denying_with_source("10.0.0.9");
        assert!(unwritable(&with_source, Implementation::Ntpsec).is_empty(), "{:?}", unwritable(&with_source, Implementation::Ntpsec));
        let text = ntpsec_config(&with_source, &dir, "h", None).unwrap();
        assert!(
            text.ends_with("\nrestrict default noserve nomodify nopeer noquery\nrestrict 10.0.0.3/32 nomodify nopeer noquery\nrestrict 10.0.0.9\nrestrict 127.0.0.1\n"),
            "{text}"
        );
        // A source the list allows needs no hole.
        let allowed_source = denying_with_source("10.0.0.3");
        assert!(!ntpsec_config(&allowed_source, &dir, "h", None).unwrap().contains("\nrestrict 10.0.0.3\n"));
        // Actions ntpsec has no words for: refused.
        for action in ["kod-deny", "restrict"] {
            let c = config(&format!("default = \"{action}\""));
            assert!(unwritable(&c, Implementation::Ntpsec)[0].contains(&format!("access action {action}")), "{action}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_settings_become_each_programs_step_settings_and_the_rest_is_refused() {
        let ip = "10.0.0.2".parse().unwrap();
        let with = |clock: &str| DaemonConfig::from_toml(&format!("[[source]]\naddress = \"10.0.0.1:123\"\n[clock]\n{clock}\n"), "test").unwrap();
        let plain = with("");
        assert!(!chrony_config(&plain, ip, None, Path::new("/tmp"), "h", None).unwrap().contains("makestep"), "no step given: chronyd's own default");
        for i in [Implementation::Chrony, Implementation::Ntpsec, Implementation::NtpdRs] {
            assert!(!unwritable(&plain, i).iter().any(|w| w.starts_with("step")), "{i:?}");
        }
        // chrony's `makestep 1 -1`.
        let always = with("step_threshold = 1\nstep_updates = -1\npanic_threshold = 0");
        assert!(chrony_config(&always, ip, None, Path::new("/tmp"), "h", None).unwrap().contains("\nmakestep 1 -1\n"));
        assert!(!unwritable(&always, Implementation::Chrony).iter().any(|w| w.starts_with("step")));
        // ntpd-rs steps at every update above its threshold: `updates = -1`,
        // its panic thresholds off; ntpsec only at its first and after the stepout.
        let dir = std::env::temp_dir().join(format!("ntplab-step-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!unwritable(&always, Implementation::NtpdRs).iter().any(|w| w.starts_with("step")));
        let rs = ntpd_rs_config(&always, &dir, "h", None).unwrap();
        assert!(rs.contains("\nsingle-step-panic-threshold = \"inf\"\nstartup-step-panic-threshold = \"inf\"\n") && rs.ends_with("\n[synchronization.algorithm]\nstep-threshold = 1e0\n"), "{rs}");
        let table: toml::Table = rs.parse().unwrap_or_else(|e| panic!("{e}\n{rs}"));
        assert_eq!(table["synchronization"]["algorithm"]["step-threshold"].as_float(), Some(1.0));
        assert!(!ntpd_rs_config(&plain, &dir, "h", None).unwrap().contains("threshold"), "no step given: ntpd-rs's own defaults");
        assert!(unwritable(&always, Implementation::Ntpsec).iter().any(|w| w.contains("give `updates = 1`")));
        let first = with("step_threshold = 0.5\nstep_updates = 1\npanic_threshold = 0");
        assert!(!unwritable(&first, Implementation::Ntpsec).iter().any(|w| w.starts_with("step")));
        assert!(ntpsec_config(&first, &dir, "h", None).unwrap().contains("\ntinker step 5e-1 stepout 900 panic 0\n"));
        assert!(!ntpsec_config(&plain, &dir, "h", None).unwrap().contains("tinker"), "no step given: ntpsec's own defaults");
        assert!(unwritable(&first, Implementation::NtpdRs).iter().any(|w| w.contains("give `updates = -1`")));
        let _ = std::fs::remove_dir_all(&dir);
        // A panic threshold chronyd cannot have, and at which ntpsec and ntpd-rs would exit.
        let panics = with("step_threshold = 2\nstep_updates = 1");
        assert!(unwritable(&panics, Implementation::Chrony).iter().any(|w| w.contains("no panic threshold")));
        for i in [Implementation::Ntpsec, Implementation::NtpdRs] {
            assert!(unwritable(&panics, i).iter().any(|w| w.contains("exits at an offset beyond its panic threshold")), "{i:?}");
        }
        // ntplab reads back what the lab wrote.
        for cfg in [&plain, &always, &panics, &with("panic_threshold = 5e4\npanic_at_start = false")] {
            let text = ntplab_config(cfg, None, None).unwrap();
            let back = DaemonConfig::from_toml(&text, "written").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back.step, cfg.step, "{text}");
        }
    }

    #[test]
    fn min_sources_is_written_in_each_programs_words() {
        let cfg = DaemonConfig::from_toml("min_sources = 3\n[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        let dir = std::env::temp_dir().join(format!("ntplab-min-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(chrony_config(&cfg, "10.0.0.2".parse().unwrap(), None, &dir, "h", None).unwrap().contains("\nminsources 3\n"));
        assert!(ntpsec_config(&cfg, &dir, "h", None).unwrap().contains("\ntos minsane 3\n"));
        assert!(ntpd_rs_config(&cfg, &dir, "h", None).unwrap().contains("\nminimum-agreeing-sources = 3\n"));
        let back = DaemonConfig::from_toml(&ntplab_config(&cfg, None, None).unwrap(), "written").unwrap();
        assert_eq!(back.min_sources, 3);
        // The default: nothing for chronyd and ntpsec (theirs is 1 too).
        let plain = DaemonConfig::from_toml("[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        assert!(!chrony_config(&plain, "10.0.0.2".parse().unwrap(), None, &dir, "h", None).unwrap().contains("minsources"));
        assert!(!ntpsec_config(&plain, &dir, "h", None).unwrap().contains("minsane"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn max_distance_is_written_in_each_programs_words_and_refused_for_ntpd_rs() {
        let cfg = DaemonConfig::from_toml("max_distance = 3\n[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        let dir = std::env::temp_dir().join(format!("ntplab-max-distance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(chrony_config(&cfg, "10.0.0.2".parse().unwrap(), None, &dir, "h", None).unwrap().contains("\nmaxdistance 3e0\n"));
        assert!(ntpsec_config(&cfg, &dir, "h", None).unwrap().contains("\ntos maxdist 3e0\n"));
        assert!(unwritable(&cfg, Implementation::NtpdRs)[0].contains("no root-distance limit"));
        assert!(unwritable(&cfg, Implementation::Chrony).is_empty() && unwritable(&cfg, Implementation::Ntpsec).is_empty());
        let back = DaemonConfig::from_toml(&ntplab_config(&cfg, None, None).unwrap(), "written").unwrap();
        assert_eq!(back.max_distance, Some(3.0));
        // Not given: each program keeps its own default.
        let plain = DaemonConfig::from_toml("[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        assert!(!chrony_config(&plain, "10.0.0.2".parse().unwrap(), None, &dir, "h", None).unwrap().contains("maxdistance"));
        assert!(!ntpsec_config(&plain, &dir, "h", None).unwrap().contains("maxdist"));
        assert!(!ntplab_config(&plain, None, None).unwrap().contains("max_distance"));
        assert!(unwritable(&plain, Implementation::NtpdRs).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn max_change_is_written_for_chronyd_and_ntplab_and_refused_for_the_others() {
        let cfg = DaemonConfig::from_toml("[clock]\nmax_change = { offset = 0.1, start = 1, ignore = 3 }\n[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        let chrony = chrony_config(&cfg, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap();
        assert!(chrony.contains("\nmaxchange 1e-1 1 3\n"), "{chrony}");
        let back = DaemonConfig::from_toml(&ntplab_config(&cfg, None, None).unwrap(), "written").unwrap();
        assert_eq!(back.max_change, cfg.max_change);
        assert!(unwritable(&cfg, Implementation::Ntpsec)[0].contains("max_change"));
        assert!(unwritable(&cfg, Implementation::NtpdRs)[0].contains("max_change"));
        assert!(unwritable(&cfg, Implementation::Chrony).is_empty());
    }

    #[test]
    fn the_poll_target_is_written_for_chronyd_and_ntplab_and_refused_for_the_others() {
        let cfg = DaemonConfig::from_toml("[clock]\npoll_target = 8\n[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        let chrony = chrony_config(&cfg, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap();
        assert!(chrony.contains("server 10.0.0.1 port 123 minpoll 6 maxpoll 10 polltarget 8\n"), "{chrony}");
        let back = DaemonConfig::from_toml(&ntplab_config(&cfg, None, None).unwrap(), "written").unwrap();
        assert_eq!(back.poll_target, Some(8));
        assert!(unwritable(&cfg, Implementation::Ntpsec)[0].contains("poll_target"));
        assert!(unwritable(&cfg, Implementation::NtpdRs)[0].contains("poll_target"));
        assert!(unwritable(&cfg, Implementation::Chrony).is_empty());
        let plain = DaemonConfig::from_toml("[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        assert!(!chrony_config(&plain, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap().contains("polltarget"));
        assert!(!ntplab_config(&plain, None, None).unwrap().contains("poll_target"));
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
        assert!(chrony_config(&xleave, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap().contains(" xleave\n"));
        let max_delay = source("max_delay = 3e-5");
        assert!(unwritable(&max_delay, Implementation::Ntpsec)[0].contains("no per-source maximum delay"));
        assert!(unwritable(&max_delay, Implementation::NtpdRs)[0].contains("no per-source maximum delay"));
        assert!(unwritable(&max_delay, Implementation::Chrony).is_empty());
        assert!(chrony_config(&max_delay, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap().contains(" maxdelay 0.000030000"));
        let written = ntplab_config(&max_delay, None, None).unwrap();
        assert!(written.contains("\nmax_delay = 0.000030000\n"), "{written}");
        assert_eq!(DaemonConfig::from_toml(&written, "w").unwrap().sources[0].config.max_delay, max_delay.sources[0].config.max_delay);
        let ratios = source("max_delay_ratio = 2.0\nmax_delay_dev_ratio = 2.5");
        assert!(unwritable(&ratios, Implementation::Ntpsec)[0].contains("no per-source delay ratio tests"));
        assert!(unwritable(&ratios, Implementation::NtpdRs)[0].contains("no per-source delay ratio tests"));
        assert!(unwritable(&ratios, Implementation::Chrony).is_empty());
        let chrony = chrony_config(&ratios, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap();
        assert!(chrony.contains(" maxdelayratio 2 maxdelaydevratio 2.5\n"), "{chrony}");
        let written = ntplab_config(&ratios, None, None).unwrap();
        let read = DaemonConfig::from_toml(&written, "w").unwrap().sources[0].config;
        assert_eq!((read.max_delay_ratio, read.max_delay_dev_ratio), (Some(2.0), Some(2.5)), "{written}");
    }

    #[test]
    fn selection_options_are_written_where_a_program_has_them() {
        let source = |extra: &str| DaemonConfig::from_toml(&format!("[[source]]\naddress = \"10.0.0.1:123\"\n{extra}\n"), "test").unwrap();
        let all = source("prefer = true\ntrust = true\nrequire = true");
        let chrony = chrony_config(&all, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap();
        assert!(chrony.contains(" prefer trust require\n"), "{chrony}");
        let written = ntplab_config(&all, None, None).unwrap();
        assert!(written.contains("\nprefer = true\ntrust = true\nrequire = true\n"), "{written}");
        assert_eq!(DaemonConfig::from_toml(&written, "w").unwrap().sources[0].select, all.sources[0].select);
        assert!(unwritable(&all, Implementation::Ntpsec)[0].contains("no `trust` or `require`"));
        assert!(unwritable(&all, Implementation::NtpdRs)[0].contains("writes no selection options"));
        let noselect = source("noselect = true");
        assert!(unwritable(&noselect, Implementation::Ntpsec).is_empty());
        let ntpsec = ntpsec_config(&noselect, Path::new("/tmp"), "h", None).unwrap();
        assert!(ntpsec.contains(" noselect\n"), "{ntpsec}");
        let prefer = source("prefer = true");
        assert!(ntpsec_config(&prefer, Path::new("/tmp"), "h", None).unwrap().contains(" prefer\n"));
        assert!(chrony_config(&noselect, "10.0.0.2".parse().unwrap(), None, Path::new("/tmp"), "h", None).unwrap().contains(" noselect\n"));
    }

    #[test]
    fn a_drift_is_written_in_each_programs_drift_file_format() {
        let dir = std::env::temp_dir().join(format!("ntplab-drift-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ip = "10.0.0.2".parse().unwrap();
        let plain = DaemonConfig::from_toml("[[source]]\naddress = \"10.0.0.1:123\"\n", "test").unwrap();
        // The scenario's `drift = 1e-4` (the clock gains 100 ppm): the daemon starts correcting by -1e-4.
        let mut cfg = plain.clone();
        cfg.initial_frequency = Some(-1e-4);
        let read = |p: &Path| ntplab_daemon::drift::read(p).unwrap().unwrap();
        // ntplab: chrony's format, named by [clock] drift_file, read back by the daemon's own loader.
        let path = write_drift_file(&cfg, &dir, "h", Implementation::Ntplab).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "100.000000 1.000000\n");
        let text = ntplab_config(&cfg, None, Some(&path)).unwrap();
        let mut back = DaemonConfig::from_toml(&text, "written").unwrap();
        assert_eq!(back.load_drift_file(&text, "written"), None, "{text}");
        assert!((back.initial_frequency.unwrap() + 1e-4).abs() < 1e-12, "{text}");
        assert!(ntplab_config(&cfg, None, None).unwrap_err().contains("drift_file"));
        assert_eq!(write_drift_file(&plain, &dir, "p", Implementation::Ntplab).unwrap(), None);
        assert!(!ntplab_config(&plain, None, None).unwrap().contains("drift_file"));
        // chrony: `driftfile` with the same format; none without a drift.
        let text = chrony_config(&cfg, ip, None, &dir, "h", None).unwrap();
        let path = drift_path(&dir, "h", Implementation::Chrony);
        assert!(text.contains(&format!("\ndriftfile {}\n", path.display())), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "100.000000 1.000000\n");
        assert!((read(&path) + 1e-4).abs() < 1e-12);
        assert!(!chrony_config(&plain, ip, None, &dir, "p", None).unwrap().contains("driftfile"));
        // ntpsec: ntpd's one number, the correction in ppm (the clock gains, so it is slowed: negative).
        let text = ntpsec_config(&cfg, &dir, "h", None).unwrap();
        let path = drift_path(&dir, "h", Implementation::Ntpsec);
        assert!(text.starts_with(&format!("driftfile {}\n", path.display())), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-100.000000\n");
        assert!((read(&path) + 1e-4).abs() < 1e-12);
        ntpsec_config(&plain, &dir, "p", None).unwrap();
        assert_eq!(std::fs::read_to_string(drift_path(&dir, "p", Implementation::Ntpsec)).unwrap(), "0.000000\n");
        // ntpd-rs keeps no drift file: refused, naming the drift; the others take it.
        let w = unwritable(&cfg, Implementation::NtpdRs);
        assert!(w.len() == 1 && w[0].starts_with("drift 1e-4 ") && w[0].contains("no drift file"), "{w:?}");
        assert!(write_drift_file(&cfg, &dir, "h", Implementation::NtpdRs).unwrap_err().contains("ntpd-rs has no drift file"));
        for imp in [Implementation::Ntplab, Implementation::Chrony, Implementation::Ntpsec] {
            assert!(unwritable(&cfg, imp).is_empty(), "{imp:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rate_limits_and_smears_are_written_where_the_program_can_say_them() {
        let dir = Path::new("/tmp");
        let ip = "10.0.0.1".parse().unwrap();
        let back = |c: &DaemonConfig| DaemonConfig::from_toml(&ntplab_config(c, None, None).unwrap(), "written").unwrap();
        // ntplab: every setting read back as given; none written without a [rate_limit] table.
        let plain = config("");
        assert!(!ntplab_config(&plain, None, None).unwrap().contains("[rate_limit]"));
        assert_eq!(back(&plain).server.rate_limit, plain.server.rate_limit);
        for table in ["interval_s_min = 2.5\nburst = 4\nkod = false\nleak = 2\nslots = 1024", "enabled = false\ninterval_s_min = 0.3", "interval_s_min = 1e-3"] {
            let c = config(&format!("[rate_limit]\n{table}"));
            assert_ne!(c.server.rate_limit, plain.server.rate_limit, "{table}");
            assert_eq!(back(&c).server.rate_limit, c.server.rate_limit, "{table}");
        }
        for smear in ["style = \"centered\"\nleap = \"2016-12-31T23:59:60Z\"", "style = \"before-leap\"\nleap = \"2027-06-30T23:59:59Z\"\nkind = \"delete\""] {
            let c = config(&format!("[smear]\n{smear}"));
            assert!(c.server.smear.is_some());
            assert_eq!(back(&c).server.smear, c.server.smear, "{smear}");
        }
        // chrony: an average interval of a power of two seconds with a burst, no kiss, a leak.
        let c = config("[rate_limit]\ninterval_s_min = 4\nburst = 16\nkod = false\nleak = 3");
        assert!(unwritable(&c, Implementation::Chrony).is_empty());
        assert!(chrony_config(&c, ip, Some(123), dir, "h", None).unwrap().contains("\nallow all\nratelimit interval 2 burst 16 leak 3\n"));
        let c = config("[rate_limit]\ninterval_s_min = 0.0625\nkod = false\nleak = 1");
        assert!(chrony_config(&c, ip, Some(123), dir, "h", None).unwrap().contains("\nratelimit interval -4 burst 8 leak 1\n"));
        let w = unwritable(&config("[rate_limit]\ninterval_s_min = 0.03125\nkod = false\nleak = 1"), Implementation::Chrony);
        assert!(w.len() == 1 && w[0].contains("0.031250000 s") && w[0].contains("in bursts"), "{w:?}");
        assert!(!chrony_config(&plain, ip, Some(123), dir, "h", None).unwrap().contains("ratelimit"));
        let v6 = DaemonConfig::from_toml("listen = [\"[2001:db8::1]:123\"]\n[local]\nstratum = 1\n[rate_limit]\nkod = false\nleak = 1\n", "test").unwrap();
        let w = unwritable(&v6, Implementation::Chrony);
        assert!(w.len() == 1 && w[0].contains("counts the clients of one /64 as one"), "{w:?}");
        let w = unwritable(&config("[rate_limit]\ninterval_s_min = 3\nburst = 300\nslots = 64"), Implementation::Chrony);
        assert_eq!(w.len(), 5, "{w:?}");
        for (i, what) in ["interval_s_min 3.000000000 s: chronyd's", "burst 300", "kod = true", "leak 0", "slots 64"].iter().enumerate() {
            assert!(w[i].contains(what), "{what}: {w:?}");
        }
        // ntpsec and ntpd-rs: a rate limit is refused, a disabled one is not.
        let limited = config("[rate_limit]\nkod = false\nleak = 1");
        assert!(unwritable(&limited, Implementation::Ntpsec)[0].contains("`limit average A burst B kod K`"));
        assert!(unwritable(&limited, Implementation::NtpdRs)[0].contains("rate-limiting-cutoff-ms"));
        let off = config("[rate_limit]\nenabled = false");
        for imp in [Implementation::Ntpsec, Implementation::NtpdRs, Implementation::Chrony, Implementation::Ntplab] {
            assert!(unwritable(&off, imp).is_empty(), "{imp:?}");
        }
        // A smear: ntplab's only.
        let smear = config("[smear]\nstyle = \"centered\"\nleap = \"2016-12-31T23:59:60Z\"");
        assert!(unwritable(&smear, Implementation::Ntplab).is_empty());
        for (imp, what) in [(Implementation::Chrony, "leapsecmode slew"), (Implementation::Ntpsec, "leapsmearinterval"), (Implementation::NtpdRs, "no leap smear")] {
            let w = unwritable(&smear, imp);
            assert!(w.len() == 1 && w[0].starts_with("smear: ") && w[0].contains(what), "{imp:?}: {w:?}");
        }
    }

    /// A server with NTS and a client with an NTS source, as the scenario
    /// loader makes them (certificate paths are the lab's to fill in).
    fn nts_pair(server_extra: &str, source_extra: &str) -> (DaemonConfig, DaemonConfig) {
        let server = DaemonConfig::from_toml(
            &format!("listen = [\"10.0.0.1:123\"]\n[local]\nstratum = 1\n[nts]\ncertificate = \"sim:c\"\nkey = \"sim:k\"\n{server_extra}\n"),
            "server",
        )
        .unwrap();
        let client = DaemonConfig::from_toml(&format!("[[source]]\naddress = \"10.0.0.1:123\"\nnts = true\n{source_extra}\n"), "client").unwrap();
        (server, client)
    }

    #[test]
    fn nts_is_written_into_each_programs_configuration() {
        let dir = std::env::temp_dir().join(format!("ntplab-nts-pki-{}", std::process::id()));
        let pki = NtsPki::make(&dir, &[("server".into(), "10.0.0.1".parse().unwrap(), CertificateKind::Valid)], 1_800_000_000).unwrap();
        let (sv, cl) = (pki.host("server").unwrap(), pki.host("client").unwrap());
        assert!(sv.identity.is_some() && cl.identity.is_none());
        let ca = pki.ca.display().to_string();
        let (server, client) = nts_pair("key_rotation = 3600", "");
        let ip = "10.0.0.1".parse().unwrap();
        // ntplab: the written file loads back with the same NTS settings.
        let back = DaemonConfig::from_toml(&ntplab_config(&server, Some(&sv), None).unwrap(), "written").unwrap();
        let n = back.nts.unwrap();
        assert_eq!((n.ke_listen[0].to_string(), n.key_rotation.as_secs(), n.aeads.len()), ("10.0.0.1:4460".into(), 3600, 3));
        let back = DaemonConfig::from_toml(&ntplab_config(&client, Some(&cl), None).unwrap(), "written").unwrap();
        let src = back.sources[0].nts.as_ref().unwrap();
        assert_eq!((src.ke_host.as_str(), src.ke_port, src.trusted_certificates.as_ref().unwrap().display().to_string()), ("10.0.0.1", 4460, ca.clone()));
        // chrony
        let text = chrony_config(&server, ip, Some(123), &dir, "server", Some(&sv)).unwrap();
        assert!(text.contains("ntsservercert ") && text.contains("ntsserverkey ") && text.contains("ntsrotate 3600\n"), "{text}");
        let text = chrony_config(&client, ip, None, &dir, "client", Some(&cl)).unwrap();
        assert!(text.starts_with("server 10.0.0.1 port 123 ") && text.contains(" nts\n"), "{text}");
        assert!(text.contains(&format!("ntstrustedcerts {ca}\nnosystemcert\n")), "{text}");
        // ntpsec
        let text = ntpsec_config(&server, &dir, "server", Some(&sv)).unwrap();
        assert!(text.contains("nts enable cert ") && text.contains(" cookie "), "{text}");
        let text = ntpsec_config(&client, &dir, "client", Some(&cl)).unwrap();
        assert!(text.starts_with("driftfile ") && text.contains(&format!(" nts ca {ca}\n")), "{text}");
        let (_, one) = nts_pair("", "aeads = [17]");
        assert!(ntpsec_config(&one, &dir, "client", Some(&cl)).unwrap().contains(" aead AES_SIV_CMAC_512\n"));
        // ntpd-rs
        let text = ntpd_rs_config(&server, &dir, "server", Some(&sv)).unwrap();
        assert!(text.contains("[[nts-ke-server]]\nlisten = \"10.0.0.1:4460\"\n") && text.contains("ntp-port = 123\n") && text.contains("key-rotation-interval = 3600\n"), "{text}");
        let text = ntpd_rs_config(&client, &dir, "client", Some(&cl)).unwrap();
        assert!(text.contains(&format!("mode = \"nts\"\naddress = \"10.0.0.1:4460\"\ncertificate-authority = \"{ca}\"\n")), "{text}");
        // Without the lab's certificates, a clear error, not a configuration without NTS.
        assert!(ntplab_config(&server, None, None).unwrap_err().contains("NTS"));
        assert!(chrony_config(&client, ip, None, &dir, "client", None).unwrap_err().contains("NTS"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nts_settings_a_program_lacks_are_refused() {
        let (server, client) = nts_pair("aeads = [30]\nntp_port = 1123", "aeads = [30, 15]");
        for imp in [Implementation::Ntpsec, Implementation::NtpdRs, Implementation::Chrony] {
            let w = unwritable(&server, imp);
            assert!(w.iter().any(|x| x.contains("aeads")), "{imp:?}: {w:?}");
            assert!(unwritable(&client, imp).iter().any(|x| x.contains("aeads")), "{imp:?}");
        }
        assert!(unwritable(&server, Implementation::Chrony).iter().any(|x| x.contains("ntp_port")));
        assert!(unwritable(&server, Implementation::Ntplab).is_empty() && unwritable(&client, Implementation::Ntplab).is_empty());
        // Defaults go everywhere; a single AEAD is ntpsec's `aead`; chrony takes 15.
        let (server, client) = nts_pair("", "");
        for imp in [Implementation::Ntpsec, Implementation::NtpdRs, Implementation::Chrony, Implementation::Ntplab] {
            assert!(unwritable(&server, imp).is_empty() && unwritable(&client, imp).is_empty(), "{imp:?}");
        }
        assert!(unwritable(&nts_pair("", "aeads = [17]").1, Implementation::Ntpsec).is_empty());
        assert!(unwritable(&nts_pair("aeads = [15]", "aeads = [15]").0, Implementation::Chrony).is_empty());
        assert!(unwritable(&nts_pair("key_rotation = 60", "").0, Implementation::Ntpsec)[0].contains("daily"));
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
