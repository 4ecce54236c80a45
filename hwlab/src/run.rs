//! `ntplab lab run`: one scenario on real processes in network namespaces.

use crate::emulator::{real_now_ns, Capture, Emulator, LinkState};
use crate::netns::{exec, ip, Namespaces};
use crate::observed::{self, Kisses};
use crate::programs::{self, ClockedCommand};
use crate::reports::{DaemonReport, Reporter};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_sim::host_clock::ClockSample;
use ntplab_sim::run::{judge, value_of, HostReport, RunReport, SYNC_THRESHOLD_S};
use ntplab_sim::scenario::{Action, Cut, Direction, Implementation, LinkParams, Metric, Role, Scenario};
use ntplab_sim::stats::HostStats;
use ntplab_sim::trace::{Event, Fate, Packet, Sample, TraceWriter};
use ntplab_vclock::{JournalOp, Params, Replay, Wander};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lab's SOCK socket for the pulses of `refclock` (none without
/// pulses), for a program that creates and binds it itself: a file left at
/// the path by an earlier run is removed first (chronyd would fail to bind).
fn open_pulse_socket(refclock: Option<&ntplab_sim::refclock::SimRefclockConfig>, out: &Path, name: &str) -> Result<Option<crate::refclock::Devices>, String> {
    let Some(rc) = refclock.filter(|rc| rc.kind.uses_pps()) else { return Ok(None) };
    let d = crate::refclock::Devices::open(rc, out, name)?;
    if let Some(p) = &d.pps_socket {
        remove_stale(p)?;
    }
    Ok(Some(d))
}

/// Removes a file an earlier run left at `p`, if any.
fn remove_stale(p: &Path) -> Result<(), String> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", p.display())),
        _ => Ok(()),
    }
}

/// util-linux's `unshare` and `nsenter` (Debian: package util-linux, always installed).
const UNSHARE: &str = "/usr/bin/unshare";
const NSENTER: &str = "/usr/bin/nsenter";

/// Starts gpsd for host `name`'s receiver, on the host's clock as its
/// daemon steers it (the shim follows the daemon's journal) and without
/// CAP_SYS_TIME, in the host's network namespace and a fresh IPC namespace
/// of its own (`unshare --ipc`: the NTP SHM segments it makes are seen by
/// the host's daemon only, which joins it, and by nothing else on the
/// machine). It reads `OUT/NAME.gps`, a link to the pty, which the shim
/// reports as a UART; its control socket is `OUT/NAME.gpsd.sock`, its log
/// `OUT/NAME.gpsd.log`. Returns once it is in its own namespace (at most 5 s).
fn start_gpsd(cc: &ClockedCommand, ns: &str, out: &Path, name: &str, pty: &Path, baud: u32) -> Result<Child, String> {
    let link = out.join(format!("{name}.gps"));
    let control = out.join(format!("{name}.gpsd.sock"));
    for p in [&link, &control] {
        remove_stale(p)?;
    }
    std::os::unix::fs::symlink(pty, &link).map_err(|e| format!("cannot link {} to {}: {e}", link.display(), pty.display()))?;
    let args: Vec<String> = ["--ipc".to_string(), programs::GPSD.to_string()].into_iter().chain(programs::gpsd_args(&link, &control, baud)).collect();
    let mut cmd = cc.command(Some(ns), Path::new(UNSHARE), &args);
    cmd.env("NTPLAB_VCLOCK_FOLLOW", "1").env("NTPLAB_SERIAL_DEVICE", &link);
    // gpsd dies with the lab, even when it is killed.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = programs::spawn_logged(cmd, &out.join(format!("{name}.gpsd.log")))?;
    let own = std::fs::read_link("/proc/self/ns/ipc").map_err(|e| format!("/proc/self/ns/ipc: {e}"))?;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if std::fs::read_link(format!("/proc/{}/ns/ipc", child.id())).is_ok_and(|theirs| theirs != own) {
            return Ok(child);
        }
        if Instant::now() > until || matches!(child.try_wait(), Ok(Some(_))) {
            programs::stop(&mut child, STOP_GRACE);
            return Err(format!("host `{name}`: gpsd did not start in an IPC namespace of its own within 5 s (see {})", out.join(format!("{name}.gpsd.log")).display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Most hosts one virtual-lab run starts (a namespace and a daemon each).
pub const HOSTS_MAX: usize = 32;

/// Longest real time a lab run may take.
pub const LAB_DURATION_MAX: Duration = Duration::from_secs(24 * 3600);

/// Everything in `s` the virtual lab cannot realize, each with its reason.
/// Empty: the lab can run it.
pub fn refusals(s: &Scenario) -> Vec<String> {
    let mut why = Vec::new();
    if s.hosts.len() > HOSTS_MAX {
        why.push(format!("{} hosts: the virtual lab runs at most {HOSTS_MAX} (a namespace and a daemon each)", s.hosts.len()));
    }
    let lab = s.lab_duration.unwrap_or(s.duration);
    if lab > LAB_DURATION_MAX {
        why.push(format!("the lab would run {} s of real time (at most {} s): set `lab_duration`", lab.as_secs(), LAB_DURATION_MAX.as_secs()));
    }
    for e in &s.events {
        let at = e.at.as_secs_f64();
        let not = |what: &str, reason: &str| format!("timeline event at {at} s: {what} is not realized by the lab: {reason}");
        match &e.action {
            Action::Partition(_) | Action::Heal(_) => {}
            Action::SetLink { after_packets: Some(_), .. } => {
                why.push(not("a link change after a packet count (`after_packets`)", "the link emulator counts no packets"));
            }
            Action::SetLink { .. } => {}
            Action::StepClock { host, .. } | Action::SetFrequency { host, .. } => {
                if s.hosts.get(*host).is_some_and(|h| h.refclock.is_some()) {
                    why.push(not(
                        "a clock step or frequency change of a host with a reference clock",
                        "the reference clock's feeder times its pulses on the host's clock as it was at the start",
                    ));
                }
            }
            Action::Stop { host } | Action::Start { host } => {
                if let Some(h) = s.hosts.get(*host).filter(|h| h.refclock.is_some()) {
                    why.push(not(
                        &format!("a stop or start of host `{}`, which has a reference clock", h.name),
                        "its feeder and devices are opened once, for the daemon's first start",
                    ));
                }
            }
            Action::KeDown { .. } | Action::KeUp { .. } => {}
        }
    }
    for (i, h) in s.hosts.iter().enumerate() {
        let n = s.events.iter().filter(|e| matches!(e.action, Action::StepClock { host, .. } | Action::SetFrequency { host, .. } if host == i)).count();
        if n > ntplab_vclock::CHANGES_MAX {
            why.push(format!("host `{}`: {n} clock steps and frequency changes: the clock shim takes at most {}", h.name, ntplab_vclock::CHANGES_MAX));
        }
    }
    // Leap seconds: the run is on the scenario's own dates (timescale_shift).
    for l in &s.leap_seconds {
        let into = (l.at - s.start).to_seconds_f64();
        if into <= 0.0 || into >= lab.as_secs_f64() {
            why.push(format!(
                "leap second {}: it falls {into} s into the scenario, outside the lab's run of {} s: the lab runs a scenario with leap seconds on its own dates from `start`, so start the scenario (or set `lab_duration`) so that the leap falls within the run",
                programs::leap_text(l),
                lab.as_secs()
            ));
        }
    }
    if !s.leap_seconds.is_empty() {
        for h in &s.hosts {
            if h.refclock.is_some() {
                why.push(format!("host `{}`: a reference clock in a scenario with leap seconds: its feeder runs on the real date, the scenario on its own", h.name));
            }
            if let Role::Ntp(n) = &h.role {
                let cannot = match h.implementation {
                    Implementation::Ntplab => None,
                    Implementation::Chrony => Some("chronyd 4.3's local reference always sends leap indicator 0 (reference.c has no leap bits for `local`)"),
                    Implementation::Ntpsec => Some("the lab writes no leap-seconds file for ntpsec's local clock yet"),
                    Implementation::NtpdRs => Some("the lab cannot tell ntpd-rs's local reference of a leap second"),
                };
                if let (true, Some(cannot)) = (n.daemon.local.is_some(), cannot) {
                    why.push(format!(
                        "host `{}`: serves its own clock (local_stratum) with impl = \"{}\" in a scenario with leap seconds: {cannot}; an ntplab server is told of the leap (`[local] leap`)",
                        h.name,
                        h.implementation.name()
                    ));
                }
            }
        }
    }
    for h in &s.hosts {
        let n = &h.name;
        let c = &h.clock;
        for (key, v) in [("noise", c.noise_s), ("precision", c.precision_s), ("sine", c.sine.amplitude)] {
            if v != 0.0 {
                why.push(format!("host `{n}`: clock `{key}` is not realized by the clock shim (it models offset, frequency and wander only)"));
            }
        }
        if c.frequency_file.is_some() {
            why.push(format!("host `{n}`: clock `frequency_file` is not realized by the clock shim (it models offset, frequency and wander only)"));
        }
        match &h.role {
            Role::Scripted(_) => {}
            Role::Ntp(ntp) => {
                let d = &ntp.daemon;
                if d.sources.iter().any(|s| s.config.unsmear) {
                    why.push(format!("host `{n}`: `unsmear` sources are not realized by the lab yet"));
                }
                for w in programs::unwritable(d, h.implementation) {
                    why.push(format!("host `{n}`: impl = \"{}\": {w}", h.implementation.name()));
                }
            }
        }
    }
    for e in &s.expectations {
        let members = if e.members.is_empty() { vec![e.host] } else { e.members.clone() };
        for h in members.iter().filter_map(|&m| s.hosts.get(m)) {
            if let Some(reason) = daemon_metric_refusal(e.metric, h) {
                why.push(format!("expectation {:?}: metric `{}` of host `{}` (impl = \"{}\"): {reason}", e.name, e.metric.name(), h.name, h.implementation.name()));
            }
        }
    }
    why
}

/// Why the lab cannot count metric `m` of host `h` as the simulator does,
/// if it cannot. ntplab's daemon writes its tally; for the other programs
/// the kiss codes come from the capture and the selections and the stratum
/// served from their reports ([`crate::observed`]), except where neither
/// says what the simulator counts. Refused adjustments (`max_change`) come
/// from ntplab's tally and chronyd's log; ntpsec and ntpd-rs have no such
/// setting (a host that sets it is refused), so they refuse none.
fn daemon_metric_refusal(m: Metric, h: &ntplab_sim::scenario::Host) -> Option<String> {
    let Role::Ntp(n) = &h.role else { return None };
    match (m, h.implementation) {
        (_, Implementation::Ntplab) => None,
        (Metric::Selections, Implementation::NtpdRs) => Some(
            "ntpd-rs combines its sources and `ntp-ctl` names no selected source, so the lab cannot count its selections of a system peer".into(),
        ),
        (Metric::KissCodes | Metric::Ntsn, _) if n.daemon.sources.iter().any(|s| s.config.version == 5 || s.config.v5_auto) => Some(
            "an NTPv5 refusal counts as a kiss by the poll it carries against the interval the client has in force, which the capture does not show (the lab counts NTPv4 kisses only)".into(),
        ),
        _ => None,
    }
}

/// The timestamp noise the lab's trace is judged with, s, on every host.
/// The checks that compare a daemon's timestamps with the true clocks at the
/// emulator's capture times (server-echoes-origin: 1 ms + 10 x noise;
/// offset-delay-formula: half the path asymmetry + 8 x noise; the client
/// sample checks) count on timestamps taken where the datagrams are seen;
/// in the lab the daemons take theirs beyond the veth, routing and TUN hops
/// and the scheduler, tens of microseconds to milliseconds from the capture
/// (89 us in a 40 s chronyd run on a quiet machine; 3.1 ms for one reply of
/// a 40 s run while four lab runs and a build shared 2 cores; 5.1 ms
/// between the emulator's send and delivery readings of one datagram whose
/// exchange chronyd timed at 0.74 ms, load average 4.8; 11.8 ms between an
/// ntplab server's transmit timestamp and its reply reaching the emulator,
/// the first reply of a run at load average 5). The simulator's traces are
/// judged with the scenario's own clock noise.
pub const TIMESTAMP_NOISE_S: f64 = 2e-3;

/// The checks whose verdict on a lab trace depends on how loaded the
/// machine is (they compare timestamps with capture times within
/// [`TIMESTAMP_NOISE_S`]-based tolerances); the lab's tests tolerate their
/// failures and print them.
pub const TIMING_CHECKS: &[&str] = &["server-echoes-origin", "offset-delay-formula"];

/// Conformance checks that tell a reply a client rejected from one it used
/// by the `source_reply` event the client daemon writes into the trace.
/// ntplab's daemon writes them in the lab too (`ntplab serve --events`);
/// chronyd, ntpsec and ntpd-rs do not, so with any of them as a client every
/// reply it got would count as used: `ntplab lab` then reports these checks
/// as not exercised, with [`NOT_JUDGED_REASON`] ([`judges_rejections`]).
pub const NOT_JUDGED_IN_THE_LAB: &[&str] = &[
    "client-rejects-short",
    "client-rejects-bad-version",
    "client-rejects-bad-extension",
    "client-rejects-unsolicited",
    "client-rejects-bogus",
    "client-rejects-zero-origin",
    "client-rejects-duplicate",
    "client-rejects-second-reply",
    "client-rejects-insane",
    "kod-no-sample",
    "kod-x-ignored",
    "kod-other-no-sample",
    "kod-bogus-origin-ignored",
];

/// Why [`NOT_JUDGED_IN_THE_LAB`] are not judged.
pub const NOT_JUDGED_REASON: &str = "not judged on this lab trace: this check tells a reply the client rejected from one it used by the \
     client's source_reply events, which ntplab's daemon writes and chronyd, ntpsec and ntpd-rs do not (a client of theirs is in this \
     scenario, and every reply it got would count as used)";

/// Whether a lab trace of `s` can judge [`NOT_JUDGED_IN_THE_LAB`]: every
/// host with sources runs ntplab's daemon, which writes its rejections.
pub fn judges_rejections(s: &Scenario) -> bool {
    s.hosts.iter().all(|h| match &h.role {
        Role::Ntp(n) => n.daemon.sources.is_empty() || h.implementation == Implementation::Ntplab,
        Role::Scripted(_) => true,
    })
}

/// How a lab run is driven.
pub struct LabOptions {
    /// Where the trace, the configurations, journals and logs go.
    pub out: PathBuf,
    /// The clock shim library.
    pub shim: PathBuf,
    /// The `ntplab` executable for `impl = "ntplab"` hosts.
    pub ntplab: PathBuf,
    /// chronyd (chronyc is looked for next to it, then in /usr/bin).
    pub chronyd: PathBuf,
    /// ntpsec, unpacked.
    pub ntpsec: programs::Ntpsec,
    /// ntpd-rs.
    pub ntpd_rs: programs::NtpdRs,
    /// Set from outside (Ctrl-C) to end the run early; the run then fails.
    pub interrupted: &'static AtomicBool,
    /// Called about five times a second with (elapsed, total) real time.
    pub progress: Option<Box<dyn FnMut(Duration, Duration)>>,
    /// The lab's hardware (`--lab LAB.toml`): scenario hosts bound to real
    /// GPS receivers and PPS devices use them instead of the simulated feeds.
    pub lab: Option<crate::labfile::LabFile>,
}

/// What a lab run gives beyond the simulator's report.
pub struct LabReport {
    /// Figures and verdicts, as `ntplab run` gives them.
    pub run: RunReport,
    /// Every program started.
    pub inventory: Vec<programs::Started>,
    /// Real time the hosts ran.
    pub ran: Duration,
    /// Where the trace starts: the real time the hosts started on.
    pub start: NtpTime,
    /// How the link emulator ran: its scheduling, and how late it wrote
    /// datagrams back against their due time (largest, mean), ns.
    pub emulator: (String, i128, i128),
}

struct HostRun {
    name: String,
    /// The shim's control page (the timeline's clock steps and frequency changes).
    control: ntplab_vclock::control::Writer,
    address: IpAddr,
    implementation: Implementation,
    params: Params,
    journal: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// How to read what the daemon reports (none for ntplab's daemon).
    reporter: Option<Reporter>,
    /// How the daemon was started, to start it again after a `stop`.
    launch: Launch,
    /// A scripted peer (`ntplab lab peer`): a `stop` only cuts its links,
    /// as the simulator's keeps its peer (and its state) through one.
    scripted: bool,
}

/// A daemon's command line in its host's namespace, on the host's clock.
struct Launch {
    cc: ClockedCommand,
    ns: String,
    program: PathBuf,
    args: Vec<String>,
    /// How many times it was started.
    starts: usize,
}

impl Launch {
    /// Starts the daemon (again: `starts` > 0, its shim taking the host's
    /// clock over where the journal leaves it), logging to `log`.
    fn spawn(&mut self, log: &Path) -> Result<Child, String> {
        let mut cmd = self.cc.command(Some(&self.ns), &self.program, &self.args);
        if self.starts > 0 {
            cmd.env("NTPLAB_VCLOCK_RESUME", self.starts.to_string());
        }
        // The daemons die with the lab, even when it is killed.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = programs::spawn_logged(cmd, log)?;
        self.starts += 1;
        Ok(child)
    }
}

/// How long a stopped daemon gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often the lab reads each daemon's own report while it runs (and once
/// more just before stopping it).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// One reading of a daemon's report: real time (Unix ns), host index, what it said.
type Reading = (i128, usize, Result<DaemonReport, String>);

/// Runs `s` in the virtual lab and writes its trace to `opts.out`.
pub fn run(s: &Scenario, mut opts: LabOptions) -> Result<LabReport, String> {
    let mut refused = refusals(s);
    if let Some(lab) = &opts.lab {
        refused.extend(lab.refusals(s));
    }
    if !refused.is_empty() {
        return Err(format!("{}: the lab cannot run this scenario:\n  - {}", s.origin, refused.join("\n  - ")));
    }
    if let Some(why) = crate::netns::unavailable() {
        return Err(why);
    }
    if let Some(why) = missing_programs(s, &opts.chronyd, &opts.ntpsec, &opts.ntpd_rs) {
        return Err(why);
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let out = opts.out.canonicalize().map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let wall = Instant::now();

    // The network: a router namespace with the link emulator, a namespace per host.
    let mut ns = Namespaces::new("lab")?;
    let router = ns.add("router")?;
    // IPv6 addresses take effect at once (no duplicate address detection).
    let v6_now = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"];
    for key in ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.forwarding=1"].iter().chain(&v6_now) {
        exec(&router, "sysctl", &["-qw", key])?;
    }
    let mut links = LinkState::default();
    for l in &s.links {
        let [a, b] = l.hosts;
        links.add_link(s.seed, (a, s.hosts[a].address), (b, s.hosts[b].address), l.forward, l.backward);
    }
    let links = Arc::new(Mutex::new(links));
    let emulator = Emulator::start(&router, "tun0", links.clone())?;
    ip(&["-n", &router, "link", "set", "tun0", "up"])?;
    ip(&["-n", &router, "route", "add", "default", "dev", "tun0", "table", "100"])?;
    ip(&["-n", &router, "-6", "route", "add", "default", "dev", "tun0", "table", "100"])?;
    let mut host_ns = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        let hn = ns.add(&format!("h{i}"))?;
        for key in v6_now {
            exec(&hn, "sysctl", &["-qw", key])?;
        }
        let r = format!("r{i}");
        ip(&["-n", &router, "link", "add", &r, "type", "veth", "peer", "name", "eth0", "netns", &hn])?;
        ip(&["-n", &router, "link", "set", &r, "up"])?;
        ip(&["-n", &hn, "link", "set", "eth0", "up"])?;
        // The router's end answers as 169.254.0.1 and fe80::1 on every host link.
        if h.address.is_ipv4() {
            let addr = format!("{}/32", h.address);
            ip(&["-n", &router, "addr", "add", "169.254.0.1/32", "dev", &r])?;
            ip(&["-n", &router, "route", "add", &addr, "dev", &r])?;
            ip(&["-n", &router, "rule", "add", "iif", &r, "lookup", "100"])?;
            ip(&["-n", &hn, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &hn, "route", "add", "169.254.0.1", "dev", "eth0"])?;
            ip(&["-n", &hn, "route", "add", "default", "via", "169.254.0.1", "dev", "eth0"])?;
        } else {
            let addr = format!("{}/128", h.address);
            ip(&["-n", &router, "-6", "addr", "add", "fe80::1/64", "dev", &r, "nodad"])?;
            ip(&["-n", &router, "-6", "route", "add", &addr, "dev", &r])?;
            ip(&["-n", &router, "-6", "rule", "add", "iif", &r, "lookup", "100"])?;
            ip(&["-n", &hn, "-6", "addr", "add", &addr, "dev", "eth0", "nodad"])?;
            ip(&["-n", &hn, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])?;
        }
        host_ns.push(hn);
    }

    // The programs, servers first.
    let total = s.lab_duration.unwrap_or(s.duration);
    let epoch = real_now_ns();
    let shift = timescale_shift(s, epoch);
    let mut hosts: Vec<HostRun> = Vec::new();
    let mut inventory = Vec::new();
    let mut order: Vec<usize> = (0..s.hosts.len()).collect();
    order.sort_by_key(|&i| matches!(&s.hosts[i].role, Role::Ntp(n) if !n.daemon.sources.is_empty()));
    let mut runs: Vec<Option<HostRun>> = (0..s.hosts.len()).map(|_| None).collect();
    let mut readings: Vec<Reading> = Vec::new();
    // Timeline events as they happened: (real time, event index).
    let mut happened: Vec<(i128, usize)> = Vec::new();
    // Reference clocks: their devices until the daemons run, then their feeders.
    let mut devices: Vec<(usize, crate::refclock::Devices, crate::refclock::PulseSamples)> = Vec::new();
    let mut feeders: Vec<(usize, crate::refclock::Feeder)> = Vec::new();
    // Real serial GPS receivers: opened with their pty until the daemons run, then relayed.
    let mut serials: Vec<(usize, std::os::fd::OwnedFd, crate::refclock::Pty)> = Vec::new();
    let mut relays: Vec<(usize, crate::refclock::SerialRelay, serde_json::Value)> = Vec::new();
    // gpsd beside a chronyd host's receiver: (host, its gpsd).
    let mut gpsds: Vec<(usize, Child)> = Vec::new();
    let result = (|| -> Result<(), String> {
        // NTS: a CA for the run and a certificate for each NTS server, at its lab address.
        let nts_servers: Vec<(String, IpAddr, ntplab_sim::nts::CertificateKind)> = s
            .hosts
            .iter()
            .filter_map(|h| match &h.role {
                Role::Ntp(n) if n.daemon.nts.is_some() => Some((h.name.clone(), h.address, n.nts_certificate.unwrap_or_default())),
                _ => None,
            })
            .collect();
        let pki = if nts_servers.is_empty() && !s.hosts.iter().any(|h| matches!(&h.role, Role::Ntp(n) if n.daemon.sources.iter().any(|x| x.nts.is_some()))) {
            programs::NtsPki::default()
        } else {
            programs::NtsPki::make(&out.join("nts"), &nts_servers, ((epoch + shift) / 1_000_000_000) as i64)?
        };
        for &i in &order {
            let h = &s.hosts[i];
            let journal = out.join(format!("{}.journal", h.name));
            let _ = std::fs::remove_file(&journal);
            let wander = (h.clock.wander > 0.0).then_some(Wander { wander: h.clock.wander, seed: s.seed, host: i });
            let params = Params { wander, shift_ns: shift, ..Params::new(epoch, h.clock.offset_s, h.clock.frequency) };
            let control_path = out.join(format!("{}.control", h.name));
            let control = ntplab_vclock::control::Writer::create(&control_path)?;
            let cc = ClockedCommand { shim: opts.shim.clone(), params, journal: journal.clone(), control: Some(control_path) };
            let log = start_log(&out, &h.name, 1);
            // What runs: (how it is started, the program, its arguments, its
            // version line, how to read its reports, its name in the
            // inventory, whether it serves only).
            let (via, program, args, version, reporter, label, serves_only) = match &h.role {
                // A scripted peer: the simulator's responder behind a real
                // socket (`ntplab lab peer`), on the host's clock, with the
                // random stream the simulator gives it.
                Role::Scripted(peer) => {
                    let conf = out.join(format!("{}.peer.toml", h.name));
                    std::fs::write(&conf, peer.scenario_text(&h.name, h.address)).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
                    let seed = ntplab_sim::rng::SimRng::peer_seed(s.seed, i).to_string();
                    let bound = (total + Duration::from_secs(60)).as_secs().to_string();
                    let args = ["lab", "peer", "--config", &conf.display().to_string(), "--seed", &seed, "--duration", &bound].map(String::from).to_vec();
                    (opts.ntplab.clone(), opts.ntplab.clone(), args, programs::version(&opts.ntplab, "--version"), None, "ntplab (scripted peer)", true)
                }
                Role::Ntp(ntp) => {
                    let uses_nts = ntp.daemon.nts.is_some() || ntp.daemon.sources.iter().any(|x| x.nts.is_some());
                    let nts = if uses_nts { Some(pki.host(&h.name)?) } else { None };
                    let write = |conf: &Path, text: String| std::fs::write(conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()));
                    // The gpsd whose IPC namespace (its SHM segments) the daemon joins.
                    let mut ipc_of: Option<u32> = None;
                    let (program, args, version, reporter) = match h.implementation {
                        Implementation::Chrony => {
                            let conf = out.join(format!("{}.chrony.conf", h.name));
                            programs::prepare_chronyc_dir(&out, &h.name)?;
                            let mut text = programs::chrony_config(&ntp.daemon, h.address, h.ntp_port(), &out, &h.name, nts.as_ref())?;
                            // refusals() lets through pulses only (chronyd creates the socket).
                            if let Some(d) = open_pulse_socket(h.refclock.as_ref(), &out, &h.name)? {
                                text += &programs::chrony_refclock_config(&ntp.daemon, d.pps_socket.as_deref().unwrap_or(Path::new("")));
                                devices.push((i, d, crate::refclock::PulseSamples::ChronyPulse));
                            }
                            // ... and NMEA alone (kind gps): gpsd reads the pty, chronyd its SHM segment.
                            if let Some(rc) = h.refclock.as_ref().filter(|rc| rc.kind.uses_serial()) {
                                let d = crate::refclock::Devices::open(rc, &out, &h.name)?;
                                let pty = d.pty.as_ref().map(|p| p.slave_path.clone()).unwrap_or_default();
                                let baud = ntp.daemon.refclocks.iter().find(|r| r.kind.uses_serial()).map_or(rc.gps.timing.baud_rate_bps, |r| r.baud);
                                let gpsd = start_gpsd(&cc, &host_ns[i], &out, &h.name, &pty, baud)?;
                                ipc_of = Some(gpsd.id());
                                gpsds.push((i, gpsd));
                                let program = Path::new(programs::GPSD);
                                inventory.push(programs::Started::new(&h.name, "gpsd", program, programs::version(program, "-V"))?);
                                text += &programs::chrony_gps_refclock_config(&ntp.daemon);
                                devices.push((i, d, crate::refclock::PulseSamples::ChronyPulse));
                            }
                            write(&conf, text)?;
                            let args = vec!["-d".to_string(), "-u".into(), "root".into(), "-f".into(), conf.display().to_string()];
                            let reporter = Reporter::Chronyc { chronyc: chronyc(&opts.chronyd), socket: programs::chronyc_socket(&out, &h.name) };
                            (opts.chronyd.clone(), args, programs::version(&opts.chronyd, "-v"), Some(reporter))
                        }
                        Implementation::Ntpsec => {
                            let conf = out.join(format!("{}.ntp.conf", h.name));
                            let mut text = programs::ntpsec_config(&ntp.daemon, &out, &h.name, nts.as_ref())?;
                            // refusals() lets through NMEA alone: the pty, no pulses.
                            if let Some(rc) = h.refclock.as_ref().filter(|rc| rc.kind.uses_serial()) {
                                let d = crate::refclock::Devices::open(rc, &out, &h.name)?;
                                text += &programs::ntpsec_refclock_config(&ntp.daemon, d.pty.as_ref().map_or(Path::new(""), |p| p.slave_path.as_path()));
                                devices.push((i, d, crate::refclock::PulseSamples::ChronyPulse));
                            }
                            write(&conf, text)?;
                            // -n: no fork; -g: the first correction may be of any size (as chronyd's and ntpd-rs's start-up steps).
                            let own_log = out.join(format!("{}.ntpsec.log", h.name));
                            let args = ["-n", "-g", "-c", &conf.display().to_string(), "-l", &own_log.display().to_string()].map(String::from).to_vec();
                            let reporter = Reporter::Ntpq { ntpq: opts.ntpsec.ntpq(), python_path: opts.ntpsec.python_path(), ns: host_ns[i].clone() };
                            (opts.ntpsec.ntpd(), args, programs::version(&opts.ntpsec.ntpd(), "--version"), Some(reporter))
                        }
                        Implementation::NtpdRs => {
                            let conf = out.join(format!("{}.ntp.toml", h.name));
                            let _ = std::fs::remove_file(programs::ntpd_rs_socket(&out, &h.name));
                            let mut text = programs::ntpd_rs_config(&ntp.daemon, &out, &h.name, nts.as_ref())?;
                            if let (Some(rc), Some(d)) = (h.refclock.as_ref(), open_pulse_socket(h.refclock.as_ref(), &out, &h.name)?) {
                                let jitter_s = rc.pps.jitter_sd.to_seconds_f64();
                                text += &programs::ntpd_rs_refclock_config(&ntp.daemon, d.pps_socket.as_deref().unwrap_or(Path::new("")), jitter_s);
                                devices.push((i, d, crate::refclock::PulseSamples::NearestSecond));
                            }
                            write(&conf, text)?;
                            let args = vec!["-c".to_string(), conf.display().to_string()];
                            let reporter = Reporter::NtpCtl { ctl: opts.ntpd_rs.ctl(), config: conf };
                            (opts.ntpd_rs.daemon.clone(), args, programs::version(&opts.ntpd_rs.daemon, "--version"), Some(reporter))
                        }
                        Implementation::Ntplab => {
                            let conf = out.join(format!("{}.ntplab.toml", h.name));
                            let drift = programs::write_drift_file(&ntp.daemon, &out, &h.name, Implementation::Ntplab)?;
                            // A host serving its own clock follows UTC: it knows the leap (as in the simulator).
                            let mut daemon = ntp.daemon.clone();
                            if let Some(local) = daemon.local.as_mut() {
                                local.leap = local.leap.or(s.leap_seconds.first().copied());
                            }
                            let mut text = programs::ntplab_config(&daemon, nts.as_ref(), drift.as_deref())?;
                            let bound = opts.lab.as_ref().and_then(|l| l.host(&h.name).map(|b| (l, b))).filter(|(_, b)| b.gps.is_some() || b.pps.is_some());
                            match (&h.refclock, bound) {
                                // The lab's real devices (LabFile::refusals() checked
                                // that they are the outputs the refclock's kind has).
                                (Some(_), Some((lab, b))) => {
                                    let gps = b.gps.map(|g| &lab.gps[g]);
                                    let pps = b.pps.map(|p| &lab.pps[p]);
                                    let mut serial = None;
                                    if let Some(g) = gps {
                                        let device = crate::refclock::open_serial(&g.serial, g.baud).map_err(|e| format!("host `{}`: [[gps]] `{}`: {e}", h.name, g.name))?;
                                        serial = Some((device, crate::refclock::Pty::open()?));
                                    }
                                    let pty = serial.as_ref().map(|(_, p)| (p.slave_path.as_path(), gps.map(|g| g.baud)));
                                    text += &programs::ntplab_refclock_config(&ntp.daemon, pty, pps.map(|p| programs::PpsInput::Device(&p.device)));
                                    if let Some((device, pty)) = serial {
                                        serials.push((i, device, pty));
                                    }
                                }
                                (Some(rc), None) => {
                                    let d = crate::refclock::Devices::open(rc, &out, &h.name)?;
                                    let pty = d.pty.as_ref().map(|p| (p.slave_path.as_path(), None));
                                    text += &programs::ntplab_refclock_config(&ntp.daemon, pty, d.pps_socket.as_deref().map(programs::PpsInput::Socket));
                                    devices.push((i, d, crate::refclock::PulseSamples::ChronyPulse));
                                }
                                (None, _) => {}
                            }
                            write(&conf, text)?;
                            let bound = (total + Duration::from_secs(60)).as_secs().to_string();
                            let seed = ntplab_sim::rng::SimRng::daemon_seed(s.seed, i, 0).to_string();
                            let events = out.join(format!("{}.events.jsonl", h.name));
                            let _ = std::fs::remove_file(&events);
                            let args = ["serve", "--config", &conf.display().to_string(), "--control-system-clock", "--duration", &bound, "--seed", &seed, "--events", &events.display().to_string()]
                                .map(String::from)
                                .to_vec();
                            (opts.ntplab.clone(), args, programs::version(&opts.ntplab, "--version"), None)
                        }
                    };
                    // Beside gpsd: in its IPC namespace (`nsenter` execs the daemon, whose PID the child's stays).
                    let (via, args) = match ipc_of {
                        Some(pid) => (PathBuf::from(NSENTER), [format!("--ipc=/proc/{pid}/ns/ipc"), program.display().to_string()].into_iter().chain(args).collect()),
                        None => (program.clone(), args),
                    };
                    (via, program, args, version, reporter, h.implementation.name(), ntp.daemon.sources.is_empty())
                }
            };
            let mut launch = Launch { cc, ns: host_ns[i].clone(), program: via, args, starts: 0 };
            let child = launch.spawn(&log)?;
            inventory.push(programs::Started::new(&h.name, label, &program, version)?);
            runs[i] = Some(HostRun {
                name: h.name.clone(),
                control,
                address: h.address,
                implementation: h.implementation,
                params,
                journal,
                child: Some(child),
                log,
                reporter,
                launch,
                scripted: matches!(h.role, Role::Scripted(_)),
            });
            if serves_only {
                // Servers (and scripted peers) get a moment to bind before their clients' first requests.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // The reference clocks, fed from the simulator's models in real time.
        let until = real_now_ns() + total.as_nanos() as i128;
        for (i, d, samples) in devices.drain(..) {
            let (Some(config), Some(r)) = (s.hosts[i].refclock.clone(), runs[i].as_ref()) else { continue };
            let spec = crate::refclock::FeedSpec {
                config,
                scenario_start: s.start,
                lab_start: lab_start(epoch),
                params: r.params,
                epoch,
                journal: r.journal.clone(),
                seed: s.seed,
                host: i,
                until,
                samples,
            };
            feeders.push((i, crate::refclock::Feeder::start(spec, d)));
        }
        // The real receivers: relayed from now on, the line cut in the
        // scenario's fix-loss windows (on the lab's time scale, as the feeders').
        for (i, device, pty) in serials.drain(..) {
            let faults = s.hosts[i].refclock.as_ref().map_or_else(Vec::new, |rc| crate::refclock::shift_faults(&rc.gps.faults, s.start, lab_start(epoch)));
            let cuts = crate::refclock::fix_loss_windows(&faults);
            let lab = opts.lab.as_ref().and_then(|l| l.host(&s.hosts[i].name).and_then(|b| b.gps).map(|g| &l.gps[g]));
            let about = serde_json::json!({
                "serial": lab.map(|g| g.serial.display().to_string()),
                "baud": lab.map(|g| g.baud),
                "relayed_to": pty.slave_path.display().to_string(),
                "cuts_s": cuts.iter().map(|(a, b)| [(a - epoch) as f64 * 1e-9, (b - epoch) as f64 * 1e-9]).collect::<Vec<_>>(),
            });
            relays.push((i, crate::refclock::SerialRelay::start(device, pty, cuts, until), about));
        }
        // Run for the lab's time, watching the daemons and Ctrl-C, reading
        // their reports every REPORT_INTERVAL and once more at the end.
        let started = Instant::now();
        let started_real = real_now_ns();
        let mut next_report = REPORT_INTERVAL;
        let mut next_event = 0;
        loop {
            let elapsed = started.elapsed().min(total);
            // Timeline events due (at their scenario time counted from the
            // start of the hosts); clock changes CLOCK_LEAD ahead, to take
            // effect at their exact time.
            while let Some(e) = s.events.get(next_event) {
                let clock = matches!(e.action, Action::StepClock { .. } | Action::SetFrequency { .. });
                if e.at > elapsed + if clock { CLOCK_LEAD } else { Duration::ZERO } {
                    break;
                }
                let at = match e.action {
                    Action::StepClock { host, by_s } => change_clock(&mut runs, host, started_real, e.at, |at_ns| ntplab_vclock::Change::Step { at_ns, by_s })?,
                    Action::SetFrequency { host, frequency } => {
                        change_clock(&mut runs, host, started_real, e.at, |at_ns| ntplab_vclock::Change::Frequency { at_ns, frequency })?
                    }
                    Action::Stop { host } => stop_host(s, &mut runs, &links, host),
                    Action::Start { host } => start_host(s, &mut runs, &links, &out, host)?,
                    _ => {
                        apply_event(s, &mut links.lock().unwrap_or_else(|p| p.into_inner()), &e.action);
                        real_now_ns()
                    }
                };
                happened.push((at, next_event));
                next_event += 1;
            }
            if let Some(p) = opts.progress.as_mut() {
                p(elapsed, total);
            }
            if elapsed >= next_report || elapsed >= total {
                for (i, r) in runs.iter().enumerate() {
                    // A stopped daemon reports nothing.
                    if let Some(rep) = r.as_ref().filter(|r| r.child.is_some()).and_then(|r| r.reporter.as_ref()) {
                        readings.push((real_now_ns(), i, rep.read()));
                    }
                }
                next_report = started.elapsed() + REPORT_INTERVAL;
            }
            if elapsed >= total {
                return Ok(());
            }
            if opts.interrupted.load(Ordering::Acquire) {
                return Err("interrupted".into());
            }
            for (i, g) in gpsds.iter_mut() {
                if let Ok(Some(status)) = g.try_wait() {
                    let log = out.join(format!("{}.gpsd.log", s.hosts[*i].name));
                    return Err(format!("host `{}`'s gpsd exited early ({status}); see {}", s.hosts[*i].name, log.display()));
                }
            }
            for r in runs.iter_mut().flatten() {
                if let Some(c) = r.child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        // ntpsec writes its own log (-l); the others write to stdout and stderr.
                        let own = out.join(format!("{}.ntpsec.log", r.name));
                        let log = if r.implementation == Implementation::Ntpsec && own.is_file() { own } else { r.log.clone() };
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
                        if max_change_exit(&tail) {
                            // The scenario's max_change ended it, as it ends
                            // the simulator's daemon: the host stays stopped.
                            r.child = None;
                            continue;
                        }
                        return Err(format!("host `{}`'s {} exited early ({status}); its log {} ends:\n{}", r.name, r.implementation.name(), log.display(), tail.join("\n")));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200).min(total - elapsed));
        }
    })();
    let ended = real_now_ns();
    for (i, f) in feeders {
        let fed = f.finish();
        let p = out.join(format!("{}.refclock.json", s.hosts[i].name));
        let text = serde_json::json!({"serial_bytes": fed.serial_bytes, "pulses": fed.pulses, "dropouts": fed.dropouts}).to_string();
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    for (i, relay, mut about) in relays {
        let done = relay.finish();
        about["relayed_bytes"] = done.relayed_bytes.into();
        about["cut_bytes"] = done.cut_bytes.into();
        let p = out.join(format!("{}.refclock.json", s.hosts[i].name));
        std::fs::write(&p, about.to_string()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    for r in runs.iter_mut().flatten() {
        if let Some(mut c) = r.child.take() {
            programs::stop(&mut c, Duration::from_secs(3));
        }
    }
    for (_, mut g) in gpsds {
        programs::stop(&mut g, Duration::from_secs(3));
    }
    let capture = emulator.finish();
    drop(ns);
    result?;
    let capture = capture?;
    hosts.extend(runs.into_iter().flatten());
    let ran = Duration::from_nanos((ended - epoch).max(0) as u64);
    // Clock changes were sent ahead of their time.
    happened.sort();
    let report = write_trace(s, &out, &hosts, &capture, &readings, &happened, (epoch, shift), ended, wall)?;
    let late_mean = capture.late_sum_ns / i128::from(capture.delivered.max(1));
    let emulator = (capture.scheduling.clone(), capture.late_max_ns, late_mean);
    Ok(LabReport { run: report, inventory, ran, start: lab_start(epoch + shift), emulator })
}

/// Stops host `host` (the scenario's `stop`): its datagrams are dropped from
/// now on, as the simulator's harness drops a down host's, and its daemon is
/// stopped by its PID (SIGTERM, SIGKILL after [`STOP_GRACE`]). Its clock
/// runs on in the journal's replay with the kernel state the daemon left.
/// Returns when the host went down.
fn stop_host(s: &Scenario, runs: &mut [Option<HostRun>], links: &Mutex<LinkState>, host: usize) -> i128 {
    links.lock().unwrap_or_else(|p| p.into_inner()).hosts_down.insert(s.hosts[host].address);
    let at = real_now_ns();
    if let Some(mut c) = runs.get_mut(host).and_then(Option::as_mut).filter(|r| !r.scripted).and_then(|r| r.child.take()) {
        programs::stop(&mut c, STOP_GRACE);
    }
    at
}

/// Starts host `host` again (the scenario's `start`): its daemon with the
/// same command line and configuration in the same namespace (files it
/// keeps, such as a drift file, as it left them), on the host's clock where
/// it was; ntplab's daemon with the seed the simulator gives that start.
/// Returns when the host came up.
fn start_host(s: &Scenario, runs: &mut [Option<HostRun>], links: &Mutex<LinkState>, out: &Path, host: usize) -> Result<i128, String> {
    links.lock().unwrap_or_else(|p| p.into_inner()).hosts_down.remove(&s.hosts[host].address);
    let at = real_now_ns();
    let Some(r) = runs.get_mut(host).and_then(Option::as_mut) else { return Ok(at) };
    if r.child.is_some() {
        return Ok(at);
    }
    match r.implementation {
        // Its control socket, left behind when it was killed, would stop it binding a new one.
        Implementation::NtpdRs => {
            let _ = std::fs::remove_file(programs::ntpd_rs_socket(out, &r.name));
        }
        Implementation::Ntplab => {
            if let Some(k) = r.launch.args.iter().position(|a| a == "--seed") {
                r.launch.args[k + 1] = ntplab_sim::rng::SimRng::daemon_seed(s.seed, host, r.launch.starts as u64).to_string();
            }
        }
        Implementation::Chrony | Implementation::Ntpsec => {}
    }
    r.log = start_log(out, &r.name, r.launch.starts + 1);
    r.child = Some(r.launch.spawn(&r.log).map_err(|e| format!("host `{}`: starting its daemon again: {e}", r.name))?);
    Ok(at)
}

/// Where the lab sends the stdout and stderr of host `name`'s daemon in
/// its `start`th start (from 1).
fn start_log(out: &Path, name: &str, start: usize) -> PathBuf {
    if start <= 1 {
        out.join(format!("{name}.log"))
    } else {
        out.join(format!("{name}.start{start}.log"))
    }
}

/// How far ahead of its time the lab sends a clock step or frequency change
/// to a daemon's shim (the run loop ticks every 0.2 s).
pub const CLOCK_LEAD: Duration = Duration::from_secs(1);

/// Sends host `host`'s shim a change of its oscillator due `at` after the
/// hosts started (real time `started_real`), no earlier than 20 ms from now
/// (so the shim has it before it takes effect, and the lab's replay of the
/// clock agrees with the shim's at every instant), and keeps it in the
/// host's parameters for that replay. Returns when it takes effect.
fn change_clock(runs: &mut [Option<HostRun>], host: usize, started_real: i128, at: Duration, change: impl Fn(i128) -> ntplab_vclock::Change) -> Result<i128, String> {
    let at_ns = (started_real + at.as_nanos() as i128).max(real_now_ns() + 20_000_000);
    // A host without a daemon (refusals() lets no scripted host through) has no clock to change.
    let Some(r) = runs.get_mut(host).and_then(Option::as_mut) else { return Ok(at_ns) };
    r.params.changes.push(change(at_ns)).map_err(|e| format!("host `{}`: {e}", r.name))?;
    r.control.publish(&r.params.changes)?;
    Ok(at_ns)
}

fn dur(d: Duration) -> NtpDuration {
    NtpDuration::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The real time `epoch` (Unix ns) as an NTP time: where a lab trace starts.
pub fn lab_start(epoch: i128) -> NtpTime {
    NtpTime::from_unix(epoch.div_euclid(1_000_000_000) as i64, epoch.rem_euclid(1_000_000_000) as u32)
}

/// The lab's timescale for scenario `s` begun at real time `epoch` (Unix
/// ns): how far true time is from the real clock ([`Params::shift_ns`]). A
/// scenario with leap seconds runs on its own dates (true time is its
/// `start` when the run begins), since the leap must fall in the run; every
/// other runs on the real date (0), as it always has.
pub fn timescale_shift(s: &Scenario, epoch: i128) -> i128 {
    if s.leap_seconds.is_empty() {
        return 0;
    }
    let (secs, nanos) = s.start.to_unix();
    i128::from(secs) * 1_000_000_000 + i128::from(nanos) - epoch
}

/// The trace of a lab run. It is on the lab's timescale: it starts at the
/// real time `epoch` plus the timescale's `shift` ([`timescale_shift`]; the
/// real date unless the scenario has leap seconds), not at the scenario's
/// `start`, so that the timestamps the daemons put in their datagrams,
/// which are their virtual clocks' readings, compare with the trace's times.
/// Offsets are taken against UTC on the NTP timescale, as the simulator
/// takes them: a second behind the lab's timescale after an inserted leap,
/// a second ahead after a deleted one.
#[allow(clippy::too_many_arguments)]
fn write_trace(
    s: &Scenario,
    out: &Path,
    hosts: &[HostRun],
    capture: &Capture,
    readings: &[Reading],
    happened: &[(i128, usize)],
    (epoch, shift): (i128, i128),
    ended: i128,
    wall: Instant,
) -> Result<RunReport, String> {
    let start = lab_start(epoch + shift);
    let to_trace = |real_ns: i128| start + NtpDuration::from_nanos(i64::try_from(real_ns - epoch).unwrap_or(i64::MAX));
    let utc_shifts = ntplab_sim::run::utc_shifts(s);
    let mut replays: Vec<Option<Replay>> = Vec::new();
    for h in &s.hosts {
        let r = hosts.iter().find(|r| r.name == h.name);
        replays.push(match r {
            Some(r) => {
                let text = std::fs::read_to_string(&r.journal).unwrap_or_default();
                Some(Replay::parse(r.params, epoch, &text, &r.journal.display().to_string())?)
            }
            None => None,
        });
    }
    let by_ip: BTreeMap<IpAddr, usize> = s.hosts.iter().enumerate().map(|(i, h)| (h.address, i)).collect();
    let local = |i: Option<&usize>, real: i128| -> NtpTime {
        match i.and_then(|&i| replays[i].as_ref()) {
            Some(r) => r.clock_at(real).now(real),
            None => to_trace(real),
        }
    };
    let werr = |e: std::io::Error| format!("writing the trace to {} failed: {e}", out.display());
    let mut trace = TraceWriter::create(out, start).map_err(werr)?;

    // Events: what ran where, then every clock call in time order.
    for h in hosts {
        let details = serde_json::json!({"impl": h.implementation.name(), "address": h.address.to_string(), "journal": h.journal.display().to_string(), "log": h.log.display().to_string()});
        trace.event(&Event { time: start, host: Some(&h.name), kind: "lab_start", details: &details }).map_err(werr)?;
    }
    // Each ntplab daemon's tally (selections, kiss codes, served stratum) as
    // it changed; before its first change, what the daemon started with.
    let mut tallies: Vec<Vec<(i128, Tally)>> = vec![Vec::new(); s.hosts.len()];
    let initial: Vec<Tally> = s.hosts.iter().map(initial_tally).collect();
    // Clock calls, the daemons' reports and their own events, in time order.
    let mut timed: Vec<(i128, usize, &'static str, serde_json::Value)> = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        if let (Some(r), Some(run)) = (&replays[i], hosts.iter().find(|r| r.name == h.name)) {
            let own = daemon_events(&out.join(format!("{}.events.jsonl", run.name)), r)?;
            timed.extend(own.trace.into_iter().map(|(t, kind, d)| (t, i, kind, d)));
            tallies[i] = own.tallies;
        }
    }
    // The kiss codes each host received, from the capture; for programs
    // that write no tally, their selections (chronyd's from its log) and
    // stratum served from their reports (crate::observed).
    let seen: Vec<Kisses> = s.hosts.iter().map(|h| observed::kisses_received(h.address, &capture.datagrams)).collect();
    // chronyd hosts: when their log says they first selected a source (None: never).
    let mut first_selected: Vec<Option<Option<i128>>> = vec![None; s.hosts.len()];
    // chronyd hosts: the adjustments their logs say `maxchange` refused.
    let mut refused_in_log: Vec<Option<u64>> = vec![None; s.hosts.len()];
    for (i, h) in s.hosts.iter().enumerate() {
        let Role::Ntp(_) = h.role else { continue };
        let judged = if h.implementation == Implementation::Ntplab {
            "its daemon's tally"
        } else {
            let reports = readings.iter().filter(|(_, j, _)| *j == i).filter_map(|(t, _, r)| Some((*t, r.as_ref().ok()?)));
            let mut counted = observed::from_reports(reports);
            // chronyd logs each selection: its selections from its logs
            // (each start's, in order; each line at the start of the second
            // its clock names), its stratum served from its reports.
            let run = hosts.iter().find(|r| r.name == h.name).filter(|_| h.implementation == Implementation::Chrony);
            let judged = match (run, &replays[i]) {
                (Some(run), Some(replay)) => {
                    let mut text = String::new();
                    for start in 1..=run.launch.starts.max(1) {
                        let log = start_log(out, &run.name, start);
                        text += &std::fs::read_to_string(&log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
                    }
                    let selections = observed::chrony_selections(&text, |secs| real_instant(replay, i128::from(secs) * 1_000_000_000));
                    first_selected[i] = Some(selections.first().map(|s| s.0));
                    refused_in_log[i] = Some(observed::chrony_max_change_refusals(&text));
                    counted = observed::with_selections(&counted, &selections);
                    "kiss codes from the capture; selections and refused adjustments from its log; stratum served from its reports"
                }
                _ => "kiss codes from the capture; selections and stratum served from its reports",
            };
            tallies[i] = counted
                .into_iter()
                // Refused adjustments: chronyd's from its log (below), none for the others.
                .map(|(t, selections, served_stratum)| {
                    (t, Tally { selections, kiss_codes: seen[i].kiss_codes, ntsn: seen[i].ntsn, max_change_exceeded: 0, served_stratum })
                })
                .collect();
            judged
        };
        let details = serde_json::json!({"kiss_codes_seen": seen[i].kiss_codes, "ntsn_seen": seen[i].ntsn, "max_change_refused_in_log": refused_in_log[i], "judged_from": judged});
        timed.push((ended, i, "lab_daemon_metrics", details));
    }
    for (i, r) in replays.iter().enumerate() {
        if let Some(r) = r {
            timed.extend(r.calls().map(|(t, op)| {
                let details = match op {
                    JournalOp::Adjtimex(x) => adjtimex_details(x),
                    JournalOp::SetTime(ns) => serde_json::json!({"call": "settime", "unix_ns": ns.to_string()}),
                };
                (t, i, "lab_clock_call", details)
            }));
        }
    }
    for (t, i, reading) in readings {
        let via = hosts.iter().find(|h| h.name == s.hosts[*i].name).and_then(|h| h.reporter.as_ref()).map_or("", |r| r.describe());
        let details = match reading {
            Ok(r) => {
                let mut d = r.to_json();
                d["via"] = via.into();
                d
            }
            Err(e) => serde_json::json!({"via": via, "error": e}),
        };
        timed.push((*t, *i, "lab_report", details));
    }
    timed.sort_by_key(|c| (c.0, c.1));
    // Timeline events (hostless), merged in time order. A host's stop and
    // start are also written as the simulator writes them (a `scenario`
    // event, `{"event": "Stop { host: N }"}`), which the conformance checks
    // read (a daemon started again begins a new start-up burst).
    let timeline_event = |trace: &mut TraceWriter, at: i128, k: usize| -> Result<(), String> {
        let action = &s.events[k].action;
        let details = serde_json::json!({"action": format!("{action:?}"), "scenario_at_s": s.events[k].at.as_secs_f64()});
        let time = to_trace(at.max(epoch));
        trace.event(&Event { time, host: None, kind: "lab_timeline", details: &details }).map_err(werr)?;
        if let Action::Stop { host } | Action::Start { host } = action {
            let which = if matches!(action, Action::Stop { .. }) { "Stop" } else { "Start" };
            let details = serde_json::json!({ "event": format!("{which} {{ host: {host} }}") });
            trace.event(&Event { time, host: None, kind: "scenario", details: &details }).map_err(werr)?;
        }
        Ok(())
    };
    let mut timeline = happened.iter().peekable();
    for (t, i, kind, details) in &timed {
        while let Some((at, k)) = timeline.next_if(|(at, _)| at <= t) {
            timeline_event(&mut trace, *at, *k)?;
        }
        trace.event(&Event { time: to_trace((*t).max(epoch)), host: Some(&s.hosts[*i].name), kind, details }).map_err(werr)?;
    }
    for (at, k) in timeline {
        timeline_event(&mut trace, *at, *k)?;
    }

    // Samples on the scenario's grid, from the replayed clocks.
    let step = s.sample_interval.as_nanos() as i128;
    let span = ended - epoch;
    let mut stats: Vec<HostStats> = s.hosts.iter().map(|_| HostStats::new(dur(s.converged_after), SYNC_THRESHOLD_S)).collect();
    let mut windows: Vec<Vec<(usize, HostStats)>> = Vec::new();
    // Per window member: the highest stratum served from the expectation's `after` on.
    let mut max_strata: Vec<Vec<Option<u8>>> = Vec::new();
    for e in &s.expectations {
        let members = if e.members.is_empty() { vec![e.host] } else { e.members.clone() };
        max_strata.push(vec![None; members.len()]);
        windows.push(members.into_iter().map(|m| (m, HostStats::new(dur(e.after), e.within.unwrap_or(SYNC_THRESHOLD_S)))).collect());
    }
    let mut k = 0i128;
    while k * step <= span {
        let real = epoch + k * step;
        for (i, h) in s.hosts.iter().enumerate() {
            let Some(r) = &replays[i] else { continue };
            let c = r.clock_at(real);
            let elapsed = NtpDuration::from_nanos((k * step) as i64);
            let offset_s = c.offset_at(real) - utc_shift_seen(&utc_shifts, elapsed, c, real).to_seconds_f64();
            let sample = ClockSample { elapsed, offset_s, frequency_error: c.frequency_error(real) };
            let synced = c.status() & ntplab_vclock::status::STA_UNSYNC == 0;
            // The daemon's last report before this instant, when it gives one.
            let reported = readings.iter().rev().find_map(|(t, j, r)| (*j == i && *t <= real).then_some(r.as_ref().ok()).flatten());
            let stratum = reported.and_then(|r| r.stratum).unwrap_or(if synced { 0 } else { 16 });
            let poll_log2 = reported.and_then(|r| r.poll_log2).unwrap_or(0);
            trace.sample(&Sample { time: to_trace(real), host: &h.name, offset_s: sample.offset_s, frequency_error: sample.frequency_error, synced, stratum, poll_log2 }).map_err(werr)?;
            stats[i].add(&sample);
            let served = tally_at(&tallies[i], initial[i], real).served_stratum;
            for (w, max) in windows.iter_mut().zip(max_strata.iter_mut()) {
                for ((m, st), max) in w.iter_mut().zip(max.iter_mut()) {
                    if *m == i {
                        st.add(&sample);
                        if sample.elapsed >= st.converged_after {
                            *max = (*max).max(served);
                        }
                    }
                }
            }
        }
        k += 1;
    }

    // Datagrams in the order they were settled.
    let mut order: Vec<usize> = (0..capture.datagrams.len()).collect();
    order.sort_by_key(|&i| {
        let d = &capture.datagrams[i];
        d.delivered_ns.unwrap_or(d.sent_ns)
    });
    let mut sent = vec![0u64; s.hosts.len()];
    let mut received = vec![0u64; s.hosts.len()];
    let mut lost = 0u64;
    for i in order {
        let d = &capture.datagrams[i];
        let (from, to) = (by_ip.get(&d.src.ip()), by_ip.get(&d.dst.ip()));
        // A duplicate's second arrival is the same datagram, sent once.
        if let (Some(&f), false) = (from, d.copy) {
            sent[f] += 1;
        }
        let fate = match (d.delivered_ns, d.lost) {
            (Some(at), _) => {
                if let Some(&t) = to {
                    received[t] += 1;
                }
                Fate::Delivered { received: to_trace(at), receiver_local: local(to, at) }
            }
            (None, reason) => {
                lost += 1;
                Fate::Lost { reason: reason.unwrap_or("lab-stopped") }
            }
        };
        trace
            .packet(&Packet { sent: to_trace(d.sent_ns), sender_local: local(from, d.sent_ns), src: d.src, dst: d.dst, fate, attack: None, payload: &d.payload })
            .map_err(werr)?;
    }
    let files = trace.finish().map_err(werr)?;

    let reports: Vec<HostReport> = s
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut st = stats[i].clone();
            st.packets_sent = sent[i];
            let own_clock = if h.ntp_port().is_some() && is_server(h) { Some(epoch) } else { None };
            let (steps, first) = match (&replays[i], first_selected[i]) {
                // chronyd's first selection, as the simulator's daemon's first
                // system peer: chronyd on Linux clears STA_UNSYNC only with
                // `rtcsync` (sys_timex.c), and its start-up calls (a zero
                // ADJ_OFFSET_SINGLESHOT, PLL offset reset, ADJ_SETOFFSET
                // probe) are no adjustments of the clock.
                (Some(r), Some(selected)) => (r.steps(), selected.or(own_clock)),
                (Some(r), None) => (r.steps(), r.first_synchronized().or(r.first_adjustment()).or(own_clock)),
                (None, _) => (0, None),
            };
            st.steps = steps;
            let t = tally_at(&tallies[i], initial[i], ended);
            (st.selections, st.kiss_codes, st.ntsn) = (t.selections, t.kiss_codes, t.ntsn);
            st.max_change_exceeded = refused_in_log[i].unwrap_or(t.max_change_exceeded);
            if h.implementation != Implementation::Ntplab {
                (st.kiss_codes, st.ntsn) = (seen[i].kiss_codes, seen[i].ntsn);
            }
            let c = replays[i].as_ref().map(|r| r.clock_at(ended));
            HostReport {
                name: h.name.clone(),
                daemon: matches!(h.role, Role::Ntp(_)),
                stats: st,
                packets_received: received[i],
                synced: c.is_some_and(|c| c.status() & ntplab_vclock::status::STA_UNSYNC == 0),
                first_synced_s: first.map(|t| (t - epoch).max(0) as f64 * 1e-9),
            }
        })
        .collect();
    let verdicts = s
        .expectations
        .iter()
        .zip(windows.iter().zip(&max_strata))
        .map(|(e, (w, max))| {
            let values: Vec<Option<f64>> = w.iter().zip(max).map(|((m, st), max)| value_of(e.metric, &reports[*m], st, *max)).collect();
            let members: Vec<usize> = w.iter().map(|(m, _)| *m).collect();
            judge(e, &reports, &members, &values)
        })
        .collect();
    Ok(RunReport {
        name: s.name.clone(),
        seed: s.seed,
        hosts: reports,
        verdicts,
        packets: (capture.datagrams.iter().filter(|d| !d.copy).count() as u64, lost),
        wall: wall.elapsed(),
        trace: Some(files),
    })
}

/// Whether a daemon's last log lines say `max_change` ended it: ntplab's
/// daemon and chrony 4.3 (reference.c, `is_offset_ok`) both log "...
/// exceeds the allowed maximum of ... (exiting)" for the refusal they exit
/// on (ntplab's "adjustment of", chronyd's "Adjustment of").
fn max_change_exit(tail: &[&str]) -> bool {
    tail.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("adjustment of ") && l.contains(" exceeds the allowed maximum of ") && l.contains("(exiting)")
    })
}

/// Most lines of a daemon's events file the lab reads.
pub const DAEMON_EVENTS_MAX: usize = 100_000;

/// What an ntplab daemon's tally said ([`ntplab_sim::run::DaemonTally`], as
/// `ntplab serve --events` writes it): its counts and the stratum it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Tally {
    selections: u64,
    kiss_codes: u64,
    ntsn: u64,
    max_change_exceeded: u64,
    served_stratum: Option<u8>,
}

impl Tally {
    /// From a `tally` line's details ([`ntplab_sim::run::tally_details`]).
    fn parse(d: &serde_json::Value) -> Result<Tally, String> {
        let count = |key: &str| d[key].as_u64().ok_or_else(|| format!("tally without a count `{key}`"));
        let served_stratum = match &d["served_stratum"] {
            serde_json::Value::Null => None,
            v => Some(v.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or_else(|| format!("tally served_stratum {v} is not a stratum"))?),
        };
        Ok(Tally {
            selections: count("selections")?,
            kiss_codes: count("kiss_codes")?,
            ntsn: count("ntsn")?,
            max_change_exceeded: count("max_change_exceeded")?,
            served_stratum,
        })
    }
}

/// The tally an ntplab host's daemon starts with. Other programs' hosts
/// start from nothing known: their stratum served is taken from their
/// first report on ([`crate::observed::from_reports`]); scripted peers
/// are refused.
fn initial_tally(h: &ntplab_sim::scenario::Host) -> Tally {
    match &h.role {
        Role::Ntp(n) if h.implementation == Implementation::Ntplab => {
            let t = ntplab_sim::run::DaemonTally::new(n.daemon.local.map(|l| l.stratum), n.daemon.sources.is_empty());
            Tally { served_stratum: t.served_stratum(), ..Tally::default() }
        }
        _ => Tally::default(),
    }
}

/// The last tally at or before `real` (Unix ns), else `initial`.
fn tally_at(tallies: &[(i128, Tally)], initial: Tally, real: i128) -> Tally {
    tallies.iter().rev().find(|(t, _)| *t <= real).map_or(initial, |(_, x)| *x)
}

/// What an ntplab daemon wrote with `ntplab serve --events`.
#[derive(Debug, Default)]
struct DaemonEvents {
    /// Its NTS-KE results (`nts_ke`), the replies that gave no sample
    /// (`source_reply`) and the selections that changed its system peer or
    /// falsetickers (`selection`), with the details a simulator trace gives
    /// them, for the trace.
    trace: Vec<(i128, &'static str, serde_json::Value)>,
    /// Its tally each time it changed, in the order written (real time).
    tallies: Vec<(i128, Tally)>,
}

/// The events an ntplab daemon wrote with `ntplab serve --events`, each at
/// the real time its virtual clock read its `local_unix_ns` (found through
/// `replay`). A missing file (a program that writes none) gives none; a bad
/// line is an error naming the file and line.
fn daemon_events(path: &Path, replay: &Replay) -> Result<DaemonEvents, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(DaemonEvents::default()) };
    let mut out = DaemonEvents::default();
    // A daemon started again (the scenario's `start`) counts from zero; the
    // simulator's tally of the host carries on: the counts of each earlier
    // start are added to the later ones'.
    let (mut carried, mut starts_seen) = ((0, 0, 0, 0), 0);
    // A last line without its newline (being written when the daemon stopped) is ignored.
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    for (n, line) in complete.lines().enumerate().take(DAEMON_EVENTS_MAX) {
        let bad = |why: &str| format!("{}:{}: {why}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let kind = match v["kind"].as_str() {
            Some("nts_ke") => "nts_ke",
            Some("selection") => "selection",
            Some("source_reply") => "source_reply",
            Some("tally") => "tally",
            other => return Err(bad(&format!("unknown kind {other:?}"))),
        };
        let local: i128 = v["local_unix_ns"].as_str().and_then(|t| t.parse().ok()).ok_or_else(|| bad("no local_unix_ns"))?;
        let real = real_instant(replay, local);
        if kind == "tally" {
            let starts = replay.resumed.iter().filter(|(_, at)| *at <= real).count();
            if starts > starts_seen {
                if let Some((_, t)) = out.tallies.last() {
                    carried = (t.selections, t.kiss_codes, t.ntsn, t.max_change_exceeded);
                }
                starts_seen = starts;
            }
            let mut t = Tally::parse(&v["details"]).map_err(|e| bad(&e))?;
            (t.selections, t.kiss_codes, t.ntsn) = (t.selections + carried.0, t.kiss_codes + carried.1, t.ntsn + carried.2);
            t.max_change_exceeded += carried.3;
            out.tallies.push((real, t));
        } else {
            out.trace.push((real, kind, v["details"].clone()));
        }
    }
    Ok(out)
}

/// How far UTC on the NTP timescale is from the lab's timescale at `elapsed`
/// into the run (`utc_shifts`, the simulator's [`ntplab_sim::run::utc_shifts`]),
/// as clock `c` at real time `real` is judged: within the second after a
/// leap, a clock that has its leap still armed (a little behind UTC, it has
/// not reached its own midnight) is judged on the timescale before the leap,
/// with the simulator's own functions.
fn utc_shift_seen(utc_shifts: &[(NtpDuration, NtpDuration)], elapsed: NtpDuration, c: &ntplab_vclock::VirtualClock, real: i128) -> NtpDuration {
    use ntplab_sim::host_clock::{leap_in_flight, utc_shift_at};
    let armed = matches!(c.steered().leap_status(c.params().raw_at(real)), ntplab_proto::clock::LeapStatus::Armed { .. });
    utc_shift_at(utc_shifts, elapsed) - leap_in_flight(utc_shifts, elapsed, armed)
}

/// The real instant (Unix ns) host clock `replay` read `local` (Unix ns):
/// a few fixed-point steps (the clock runs within 500 ppm of true time, the
/// real clock plus the timescale's shift; a step is taken whole).
fn real_instant(replay: &Replay, local: i128) -> i128 {
    let mut real = local - replay.clock_at(local).params().shift_ns;
    for _ in 0..4 {
        real -= replay.clock_at(real).now_unix_ns(real) - local;
    }
    real
}

/// chronyc beside `chronyd` (same directory, or /usr/bin when chronyd is in /usr/sbin).
fn chronyc(chronyd: &Path) -> PathBuf {
    let beside = chronyd.with_file_name("chronyc");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("/usr/bin/chronyc")
    }
}

/// The first program a host of `s` needs that is not installed, with what installs it.
pub fn missing_programs(s: &Scenario, chronyd: &Path, ntpsec: &programs::Ntpsec, ntpd_rs: &programs::NtpdRs) -> Option<String> {
    let mut why = None;
    for h in s.hosts.iter().filter(|h| matches!(h.role, Role::Ntp(_))) {
        let missing = match h.implementation {
            Implementation::Chrony => [chronyd.to_path_buf(), chronyc(chronyd)]
                .into_iter()
                .find(|p| !p.is_file())
                .map(|p| format!("chrony is not installed: {} is missing (apt-get install chrony)", p.display()))
                // A receiver's NMEA reaches chronyd through gpsd.
                .or_else(|| h.refclock.as_ref().filter(|rc| rc.kind.uses_serial()).and_then(|_| programs::gpsd_missing(Path::new(programs::GPSD)))),
            Implementation::Ntpsec => ntpsec.missing(),
            Implementation::NtpdRs => ntpd_rs.missing(),
            Implementation::Ntplab => None,
        };
        if let Some(m) = missing {
            why = Some(format!("host `{}`: {m}", h.name));
            break;
        }
    }
    why
}

/// Applies a partition, heal or link change to the links the emulator uses,
/// as the simulator's harness applies it to its links (refusals() lets no
/// other action through).
fn apply_event(s: &Scenario, state: &mut LinkState, action: &Action) {
    let ip = |h: usize| s.hosts[h].address;
    // The directed pairs of a link cut in `direction`.
    let pairs = |link: usize, direction: Direction| -> Vec<(IpAddr, IpAddr)> {
        let Some(l) = s.links.get(link) else { return Vec::new() };
        let (a, b) = (ip(l.hosts[0]), ip(l.hosts[1]));
        match direction {
            Direction::Both => vec![(a, b), (b, a)],
            Direction::Forward => vec![(a, b)],
            Direction::Backward => vec![(b, a)],
        }
    };
    let set = |hosts: &[usize]| hosts.iter().map(|&h| ip(h)).collect::<std::collections::BTreeSet<_>>();
    match action {
        Action::Partition(Cut::Hosts(h)) => state.cut_sets.push(set(h)),
        Action::Partition(Cut::Link { link, direction }) => state.down.extend(pairs(*link, *direction)),
        Action::Heal(None) => {
            state.cut_sets.clear();
            state.down.clear();
        }
        Action::Heal(Some(Cut::Hosts(h))) => {
            let h = set(h);
            state.cut_sets.retain(|c| *c != h);
        }
        Action::Heal(Some(Cut::Link { link, direction })) => {
            for p in pairs(*link, *direction) {
                state.down.remove(&p);
            }
        }
        // refusals() refuses changes after a packet count.
        Action::SetLink { link, forward, backward, .. } => {
            if let Some(l) = s.links.get(*link) {
                let (a, b) = (ip(l.hosts[0]), ip(l.hosts[1]));
                for (key, patch) in [((a, b), forward), ((b, a), backward)] {
                    if let Some(p) = state.params.get_mut(&key) {
                        *p = patch.apply(p);
                    }
                }
            }
        }
        Action::KeDown { host } => {
            state.tcp_blocked.insert(ip(*host));
        }
        Action::KeUp { host } => {
            state.tcp_blocked.remove(&ip(*host));
        }
        Action::StepClock { .. } | Action::SetFrequency { .. } | Action::Stop { .. } | Action::Start { .. } => {}
    }
}

/// A host that serves its own clock (`local_stratum`) and has no sources.
fn is_server(h: &ntplab_sim::scenario::Host) -> bool {
    matches!(&h.role, Role::Ntp(n) if n.daemon.sources.is_empty() && n.daemon.local.is_some())
}

/// Parameters of a link direction, for the report header.
pub fn describe_link(p: &LinkParams) -> String {
    format!(
        "delay {} s, jitter {:?}, loss {}, duplicate {}, reorder {} by {} s, pass_every {}",
        p.delay.as_secs_f64(),
        p.jitter,
        p.loss,
        p.duplicate,
        p.reorder,
        p.reorder_delay.as_secs_f64(),
        p.pass_every
    )
}

/// An `adjtimex` call as an event: its modes and the inputs those modes use
/// (the other fields of a caller's `struct timex` are whatever it left there).
fn adjtimex_details(x: &ntplab_vclock::Timex) -> serde_json::Value {
    use ntplab_vclock::modes::*;
    let mut d = serde_json::json!({"call": "adjtimex", "modes": x.modes});
    let m = x.modes;
    if m & ADJ_ADJTIME != 0 {
        if m & ADJ_OFFSET_READONLY == 0 {
            d["adjtime_us"] = x.offset.into();
        }
        return d;
    }
    if m & ADJ_OFFSET != 0 {
        d["offset"] = x.offset.into();
    }
    if m & ADJ_FREQUENCY != 0 {
        d["freq"] = x.freq.into();
    }
    if m & ADJ_STATUS != 0 {
        d["status"] = x.status.into();
    }
    if m & ADJ_TICK != 0 {
        d["tick"] = x.tick.into();
    }
    if m & ADJ_SETOFFSET != 0 {
        d["step_sec"] = x.time_sec.into();
        d["step_frac"] = x.time_frac.into();
    }
    if m & ADJ_TIMECONST != 0 {
        d["constant"] = x.constant.into();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTS: &str = r#"
name = "nts in the lab"
seed = 1
start = "2026-01-01T00:00:00Z"
duration = "60s"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1
nts = { certificate = "expired" }

[[host]]
name = "client"
address = "10.0.0.2"
impl = "chrony"
listen = false
sources = [ { host = "server", iburst = true, nts = true } ]

[[link]]
between = ["client", "server"]

[[event]]
at = "10s"
action = "ke_down"
host = "server"

[[event]]
at = "20s"
action = "ke_up"
host = "server"
"#;

    #[test]
    fn nts_and_ke_outages_are_realized_and_a_setting_a_program_lacks_is_refused() {
        let s = Scenario::parse(NTS, "nts").unwrap();
        assert_eq!(refusals(&s), Vec::<String>::new());
        // ke_down blocks the host's TCP in the emulator until ke_up.
        let mut state = LinkState::default();
        let server: IpAddr = "10.0.0.1".parse().unwrap();
        apply_event(&s, &mut state, &s.events[0].action);
        assert!(state.tcp_blocked.contains(&server) && !state.cut(server, "10.0.0.2".parse().unwrap()));
        apply_event(&s, &mut state, &s.events[1].action);
        assert!(state.tcp_blocked.is_empty());
        // chrony 4.3 offers AEAD 15 only: a source limited to 30 is refused, naming the host.
        let s = Scenario::parse(&NTS.replace("nts = true }", "nts = true, aeads = [30] }"), "nts").unwrap();
        let r = refusals(&s);
        assert!(r.len() == 1 && r[0].starts_with("host `client`: impl = \"chrony\": source 10.0.0.1:123: NTS aeads [30]"), "{r:?}");
    }

    /// A server and a client of `implementation` starting from a drift file.
    fn drifting_client(implementation: &str) -> Scenario {
        let text = format!(
            "name = \"drift\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"30s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\n\
             [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nimpl = \"{implementation}\"\nlisten = false\nclock = {{ frequency = 1e-4 }}\ndrift = 1e-4\n\
             sources = [ {{ host = \"server\" }} ]\n\n[[link]]\nbetween = [\"client\", \"server\"]\n"
        );
        Scenario::parse(&text, "drift.toml").unwrap()
    }

    #[test]
    fn a_drift_is_realized_where_the_program_keeps_a_drift_file_and_refused_for_ntpd_rs() {
        for imp in ["ntplab", "chrony", "ntpsec"] {
            let s = drifting_client(imp);
            assert!(matches!(&s.hosts[1].role, Role::Ntp(n) if n.daemon.initial_frequency == Some(-1e-4)));
            assert_eq!(refusals(&s), Vec::<String>::new(), "{imp}");
        }
        let r = refusals(&drifting_client("ntpd-rs"));
        assert!(r.len() == 1 && r[0].starts_with("host `client`: impl = \"ntpd-rs\": drift 1e-4 ") && r[0].contains("no drift file"), "{r:?}");
    }

    #[test]
    fn a_recorded_frequency_is_refused() {
        let dir = std::env::temp_dir().join(format!("ntplab-lab-freqfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.txt"), "1e-5\n").unwrap();
        let text = "name = \"r\"\nduration = \"30s\"\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\
                    [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nlisten = false\nclock = { frequency_file = \"f.txt\" }\nsources = [ { host = \"server\" } ]\n\
                    [[link]]\nbetween = [\"client\", \"server\"]\n";
        let r = refusals(&Scenario::parse(text, &dir.join("r.toml").display().to_string()).unwrap());
        assert_eq!(r, vec!["host `client`: clock `frequency_file` is not realized by the clock shim (it models offset, frequency and wander only)".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejections_are_judged_only_when_every_client_is_ntplabs_daemon() {
        let scenario = |server: &str, client: &str| {
            let text = format!(
                "name = \"r\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"30s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nimpl = \"{server}\"\n\
                 local_stratum = 1\n\n[[host]]\nname = \"liar\"\naddress = \"10.0.0.3\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\n\n\
                 [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nimpl = \"{client}\"\nlisten = false\nsources = [ {{ host = \"server\" }}, {{ host = \"liar\" }} ]\n\n\
                 [[link]]\nbetween = [\"client\", \"server\"]\n[[link]]\nbetween = [\"client\", \"liar\"]\n"
            );
            judges_rejections(&Scenario::parse(&text, "r.toml").unwrap())
        };
        // The servers' programs do not matter: only clients write rejections.
        for server in ["ntplab", "chrony", "ntpsec", "ntpd-rs"] {
            assert!(scenario(server, "ntplab"), "{server}");
        }
        for client in ["chrony", "ntpsec", "ntpd-rs"] {
            assert!(!scenario("ntplab", client), "{client}");
        }
    }

    #[test]
    fn rate_limits_and_smears_are_refused_only_where_the_program_cannot_say_them() {
        let server = |imp: &str, extra: &str| {
            let text = format!(
                "name = \"r\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"30s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nimpl = \"{imp}\"\n\
                 local_stratum = 1\n{extra}\n\n[[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nlisten = false\nsources = [ {{ host = \"server\" }} ]\n\n\
                 [[link]]\nbetween = [\"client\", \"server\"]\n"
            );
            refusals(&Scenario::parse(&text, "r.toml").unwrap())
        };
        let limit = "rate_limit = { interval_s_min = 2, burst = 4, kod = false, leak = 2 }";
        let smear = "smear = { style = \"centered\", leap = \"2016-12-31T23:59:60Z\" }";
        for imp in ["ntplab", "chrony"] {
            assert_eq!(server(imp, limit), Vec::<String>::new(), "{imp}");
        }
        assert_eq!(server("ntplab", smear), Vec::<String>::new());
        for imp in ["ntpsec", "ntpd-rs"] {
            let r = server(imp, limit);
            assert!(r.len() == 1 && r[0].starts_with(&format!("host `server`: impl = \"{imp}\": rate_limit: ")), "{r:?}");
        }
        let r = server("chrony", smear);
        assert!(r.len() == 1 && r[0].starts_with("host `server`: impl = \"chrony\": smear: "), "{r:?}");
        let r = server("chrony", "rate_limit = { interval_s_min = 2 }");
        assert!(r.len() == 2 && r[0].contains("kod = true") && r[1].contains("leak 0"), "{r:?}");
    }

    #[test]
    fn daemon_metrics_are_refused_only_where_neither_capture_nor_reports_say_them() {
        let text = |client_impl: &str, source: &str, expect: &str| {
            format!(
                "name = \"m\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"30s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\n\
                 [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nimpl = \"{client_impl}\"\nlisten = false\nsources = [ {{ host = \"server\"{source} }} ]\n\n\
                 [[link]]\nbetween = [\"client\", \"server\"]\n\n[[expect]]\nname = \"e\"\n{expect}\n"
            )
        };
        let refused = |imp: &str, source: &str, expect: &str| refusals(&Scenario::parse(&text(imp, source, expect), "m.toml").unwrap());
        let expect = |metric: &str| format!("host = \"client\"\nmetric = \"{metric}\"\nmax = 3");
        for metric in ["selections", "kiss_codes", "ntsn", "max_stratum"] {
            for imp in ["ntplab", "chrony", "ntpsec"] {
                assert_eq!(refused(imp, "", &expect(metric)), Vec::<String>::new(), "{imp} {metric}");
            }
            // ntpd-rs: all but its selections, which ntp-ctl does not report.
            let r = refused("ntpd-rs", "", &expect(metric));
            if metric == "selections" {
                assert!(r.len() == 1 && r[0].contains("metric `selections` of host `client` (impl = \"ntpd-rs\")") && r[0].contains("names no selected source"), "{r:?}");
            } else {
                assert_eq!(r, Vec::<String>::new(), "{metric}");
            }
        }
        // NTPv5 refusals are not counted from the capture (ntpd-rs speaks NTPv5; ntplab's daemon writes its tally).
        for metric in ["kiss_codes", "ntsn"] {
            let r = refused("ntpd-rs", ", version = 5", &expect(metric));
            assert!(r.len() == 1 && r[0].contains(&format!("metric `{metric}` of host `client`")) && r[0].contains("NTPv4 kisses only"), "{r:?}");
            assert_eq!(refused("ntplab", ", version = 5", &expect(metric)), Vec::<String>::new());
        }
        assert_eq!(refused("ntpd-rs", ", version = 5", &expect("max_stratum")), Vec::<String>::new());
        // Refused adjustments (max_change): ntplab's tally, chronyd's log;
        // ntpsec and ntpd-rs have no such setting and refuse none.
        for imp in ["ntplab", "chrony", "ntpsec", "ntpd-rs"] {
            assert_eq!(refused(imp, "", &expect("max_change_exceeded")), Vec::<String>::new(), "{imp}");
        }
        // A host group: each member is named.
        let group = text("ntpd-rs", "", "host = \"client\"\nover = \"max\"\nmetric = \"selections\"\nmax = 3").replace("listen = false\n", "listen = false\ncount = 2\n");
        let r = refusals(&Scenario::parse(&group, "m.toml").unwrap());
        assert!(r.len() == 2 && r[0].contains("host `client-1` (impl = \"ntpd-rs\")") && r[1].contains("host `client-2` (impl"), "{r:?}");
    }

    #[test]
    fn a_daemon_that_max_change_ended_is_told_from_one_that_failed() {
        // The last lines of chronyd 4.3's and ntplab's logs in the lab (2026-12-06).
        let chronyd = [
            "2026-12-06T13:45:44Z Adjustment of -1.119 seconds exceeds the allowed maximum of 0.100 seconds (ignored) ",
            "2026-12-06T13:46:00Z Adjustment of -1.197 seconds exceeds the allowed maximum of 0.100 seconds (exiting) ",
            "2026-12-06T13:46:00Z chronyd exiting",
        ];
        let ntplab = [
            "2026-12-06T13:46:00.805226Z  WARN ntplab_daemon::daemon: adjustment of -1.000 s exceeds the allowed maximum of 0.1 s (exiting) at=2026-12-06T13:46:00.805202382Z adjustment_s=-0.9999265316873789 limit_s=0.1",
            "ntplab: error: ntplab serve: adjustment of -1.000 s exceeds [clock] max_change's 0.1 s once more than its `ignore` allows: exiting",
        ];
        assert!(max_change_exit(&chronyd));
        assert!(max_change_exit(&ntplab));
        // Skipped only, or another failure: an early exit.
        assert!(!max_change_exit(&chronyd[..1]));
        assert!(!max_change_exit(&["2026-12-06T13:46:00Z Fatal error : Could not open configuration file"]));
        assert!(!max_change_exit(&[]));
    }

    #[test]
    fn an_ntplab_daemons_tally_lines_are_read_at_their_real_time_and_bad_ones_named() {
        let epoch = 1_800_000_000_000_000_000i128;
        // A clock 1 s ahead of real time: each line's real time is its reading minus 1 s.
        let params = Params { offset_s: 1.0, ..Params::new(epoch, 0.0, 0.0) };
        let replay = Replay::parse(params, epoch, "", "journal").unwrap();
        let dir = std::env::temp_dir().join(format!("ntplab-tally-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.events.jsonl");
        let line = |local_s: i128, d: &str| format!("{{\"kind\":\"tally\",\"local_unix_ns\":\"{}\",\"details\":{d}}}\n", epoch + local_s * 1_000_000_000);
        let text = line(3, r#"{"selections":1,"kiss_codes":0,"ntsn":0,"max_change_exceeded":0,"served_stratum":2}"#)
            + &line(8, r#"{"selections":1,"kiss_codes":2,"ntsn":1,"max_change_exceeded":3,"served_stratum":null}"#)
            + "{\"kind\":\"tally\",\"local_unix_ns\":\"1\""; // being written when the daemon stopped: ignored
        std::fs::write(&path, text).unwrap();
        let ev = daemon_events(&path, &replay).unwrap();
        assert!(ev.trace.is_empty());
        let times: Vec<i128> = ev.tallies.iter().map(|(t, _)| (*t - epoch) / 1_000_000).collect();
        assert_eq!(times, [2000, 7000], "ms after the epoch");
        let start = Tally { served_stratum: None, ..Tally::default() };
        let at = |s: i128| tally_at(&ev.tallies, start, epoch + s * 1_000_000_000);
        assert_eq!(at(1), start);
        assert_eq!(at(2), Tally { selections: 1, kiss_codes: 0, ntsn: 0, max_change_exceeded: 0, served_stratum: Some(2) });
        assert_eq!(at(30), Tally { selections: 1, kiss_codes: 2, ntsn: 1, max_change_exceeded: 3, served_stratum: None });
        std::fs::write(&path, line(3, r#"{"selections":1,"kiss_codes":0,"ntsn":0,"max_change_exceeded":0,"served_stratum":300}"#)).unwrap();
        let e = daemon_events(&path, &replay).unwrap_err();
        assert!(e.starts_with(&format!("{}:1: tally served_stratum 300", path.display())), "{e}");
        std::fs::write(&path, line(3, r#"{"selections":1,"ntsn":0,"max_change_exceeded":0,"served_stratum":1}"#)).unwrap();
        assert!(daemon_events(&path, &replay).unwrap_err().ends_with(":1: tally without a count `kiss_codes`"));
        std::fs::write(&path, line(3, r#"{"selections":1,"kiss_codes":0,"ntsn":0,"served_stratum":1}"#)).unwrap();
        assert!(daemon_events(&path, &replay).unwrap_err().ends_with(":1: tally without a count `max_change_exceeded`"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A host `gps` of `implementation` with a reference clock of `kind`
    /// (more keys in `extra`), a client of an ntplab server or not.
    fn refclock_host(implementation: &str, kind: &str, extra: &str, with_source: bool) -> Scenario {
        let sources = if with_source { "sources = [ { host = \"server\" } ]\n" } else { "" };
        let text = format!(
            "name = \"refclock\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"60s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\n\
             [[host]]\nname = \"gps\"\naddress = \"10.0.0.2\"\nimpl = \"{implementation}\"\nrefclock = {{ kind = \"{kind}\"{extra} }}\n{sources}\n\
             [[link]]\nbetween = [\"gps\", \"server\"]\n"
        );
        Scenario::parse(&text, "refclock.toml").unwrap()
    }

    #[test]
    fn reference_clocks_are_realized_where_the_program_reads_the_labs_feed_and_refused_with_the_reason_elsewhere() {
        let refused = |imp: &str, kind: &str, extra: &str, with_source: bool| refusals(&refclock_host(imp, kind, extra, with_source));
        // (impl, kind, more keys, with an NTP source)
        let realized = [
            // chronyd: the pulses on a SOCK source, once an NTP source has synchronised it.
            ("chrony", "pps", ", refid = \"GPPS\", offset = 5e-8, filter = 4", true),
            // ntpd-rs: time samples on its sock source, with or without a source.
            ("ntpd-rs", "pps", ", pps_jitter = \"1us\"", false),
            ("ntpd-rs", "pps", ", pps_jitter = \"1us\"", true),
            // ntpsec: its NMEA driver on the pty, with or without a source.
            ("ntpsec", "gps", ", offset = 0.0835", false),
            ("ntpsec", "gps", ", offset = 0.0835", true),
            // chronyd: the NMEA through gpsd's SHM segment, with or without a source.
            ("chrony", "gps", ", offset = 0.2", false),
            ("chrony", "gps", ", offset = 0.2", true),
        ];
        let ntplab = ["gps", "gps-pps", "pps"].into_iter().flat_map(|k| [("ntplab", k, "", false), ("ntplab", k, "", true)]);
        for (imp, kind, extra, with_source) in realized.into_iter().chain(ntplab) {
            assert_eq!(refused(imp, kind, extra, with_source), Vec::<String>::new(), "{imp} {kind} {extra} {with_source}");
        }
        // (impl, kind, more keys, with an NTP source, the refusal after "host `gps`: impl = \"IMPL\": ")
        let refusals_expected = [
            ("chrony", "pps", "", false, "refclock kind pps with no NTP source: chronyd takes a pulse without `lock` only while"),
            ("chrony", "gps-pps", "", true, "refclock kind gps-pps: chronyd reads the NMEA through gpsd (SHM) in the lab, but the pulses numbered by it"),
            ("ntpd-rs", "pps", ", offset = 5e-8", true, "refclock kind pps: ntpd-rs 1.9's sock source has no setting for offset 5e-8"),
            ("ntpd-rs", "gps", "", true, "refclock kind gps: ntpd-rs 1.9 has no NMEA reader, and gpsd 3.22 cannot stand in"),
            ("ntpd-rs", "gps-pps", "", true, "refclock kind gps-pps: ntpd-rs 1.9 has no NMEA reader, and gpsd 3.22 cannot stand in"),
            ("ntpsec", "gps", ", baud = 1200", true, "refclock kind gps: baud 1200: ntpsec's NMEA driver takes"),
            // No kernel PPS device in the virtual lab.
            ("ntpsec", "pps", "", true, "refclock kind pps: ntpsec reads pulses from a kernel PPS device"),
            ("ntpsec", "gps-pps", "", true, "refclock kind gps-pps: ntpsec reads pulses from a kernel PPS device"),
        ];
        for (imp, kind, extra, with_source, why) in refusals_expected {
            let r = refused(imp, kind, extra, with_source);
            assert!(r.len() == 1 && r[0].starts_with(&format!("host `gps`: impl = \"{imp}\": {why}")), "{r:?}");
        }
    }

    /// A server and a client of `implementation` stopped at 20 s and started at 35 s.
    fn restarted_client(implementation: &str) -> String {
        format!(
            "name = \"restart\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"60s\"\n\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n\n\
             [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nimpl = \"{implementation}\"\nlisten = false\nsources = [ {{ host = \"server\" }} ]\n\n\
             [[link]]\nbetween = [\"client\", \"server\"]\n\n[[event]]\nat = \"20s\"\naction = \"stop\"\nhost = \"client\"\n\n\
             [[event]]\nat = \"35s\"\naction = \"start\"\nhost = \"client\"\n"
        )
    }

    #[test]
    fn stops_and_starts_are_realized_for_every_program_and_refused_on_a_reference_clock_host() {
        for imp in ["ntplab", "chrony", "ntpsec", "ntpd-rs"] {
            assert_eq!(refusals(&Scenario::parse(&restarted_client(imp), "r.toml").unwrap()), Vec::<String>::new(), "{imp}");
        }
        // The server's feeder and devices are opened once: its restart is refused, naming it.
        let text = restarted_client("ntplab").replace("local_stratum = 1\n", "refclock = { kind = \"gps-pps\" }\n").replace("host = \"client\"\n", "host = \"server\"\n");
        let r = refusals(&Scenario::parse(&text, "r.toml").unwrap());
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].starts_with("timeline event at 20 s: a stop or start of host `server`, which has a reference clock"), "{r:?}");
        assert!(r[1].starts_with("timeline event at 35 s: a stop or start of host `server`") && r[1].contains("opened once"), "{r:?}");
        // A stopped host's datagrams are dropped in the emulator until it starts (stop_host, start_host).
        let s = Scenario::parse(&restarted_client("ntplab"), "r.toml").unwrap();
        let links = Mutex::new(LinkState::default());
        let mut runs: Vec<Option<HostRun>> = vec![None, None];
        stop_host(&s, &mut runs, &links, 1);
        assert!(links.lock().unwrap().hosts_down.contains(&s.hosts[1].address));
        start_host(&s, &mut runs, &links, Path::new("/nonexistent"), 1).unwrap();
        assert!(links.lock().unwrap().hosts_down.is_empty());
    }

    #[test]
    fn a_restarted_ntplab_daemons_counts_carry_on_from_its_earlier_start() {
        let epoch = 1_800_000_000_000_000_000i128;
        let s = 1_000_000_000i128;
        let params = Params::new(epoch, 0.0, 0.0);
        // The daemon started again at 10 s (its shim's resume line).
        let journal = format!("{}\n", ntplab_vclock::resume_line(77, epoch + 10 * s));
        let replay = Replay::parse(params, epoch, &journal, "journal").unwrap();
        let dir = std::env::temp_dir().join(format!("ntplab-restart-tally-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.events.jsonl");
        let line = |at_s: i128, sel: u64, kod: u64, refused: u64| {
            format!(
                "{{\"kind\":\"tally\",\"local_unix_ns\":\"{}\",\"details\":{{\"selections\":{sel},\"kiss_codes\":{kod},\"ntsn\":0,\"max_change_exceeded\":{refused},\"served_stratum\":2}}}}\n",
                epoch + at_s * s
            )
        };
        std::fs::write(&path, line(2, 1, 0, 0) + &line(5, 2, 1, 1) + &line(12, 1, 0, 0) + &line(15, 1, 2, 1)).unwrap();
        let ev = daemon_events(&path, &replay).unwrap();
        let counts: Vec<(u64, u64, u64)> = ev.tallies.iter().map(|(_, t)| (t.selections, t.kiss_codes, t.max_change_exceeded)).collect();
        assert_eq!(counts, [(1, 0, 0), (2, 1, 1), (3, 1, 1), (3, 3, 2)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_leap_second_runs_on_the_scenarios_dates_where_it_falls_in_the_run_and_ntplab_serves_the_clock() {
        let text = |start: &str, server_impl: &str| {
            format!(
                "name = \"l\"\nstart = \"{start}\"\nduration = \"150s\"\nleap_seconds = [\"2016-12-31T23:59:60Z\"]\n\
                 [[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\nimpl = \"{server_impl}\"\n\
                 [[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nlisten = false\nimpl = \"chrony\"\nsources = [ {{ host = \"server\" }} ]\n\
                 [[link]]\nbetween = [\"client\", \"server\"]\n"
            )
        };
        let s = Scenario::parse(&text("2016-12-31T23:58:30Z", "ntplab"), "l.toml").unwrap();
        assert_eq!(refusals(&s), Vec::<String>::new());
        // The lab's timescale: true time is the scenario's start when the run begins.
        let epoch = 1_800_000_000_123_456_789i128;
        let shift = timescale_shift(&s, epoch);
        assert_eq!(lab_start(epoch + shift), s.start);
        assert_eq!(timescale_shift(&Scenario::parse(&text("2016-12-31T23:58:30Z", "ntplab").replace("leap_seconds", "seeds = \"1\"\n#"), "l").unwrap(), epoch), 0, "no leap: the real date");
        let r = refusals(&Scenario::parse(&text("2016-12-31T23:50:00Z", "ntplab"), "l.toml").unwrap());
        assert!(r.len() == 1 && r[0].starts_with("leap second 2016-12-31T23:59:60Z: it falls 600 s into the scenario, outside the lab's run of 150 s"), "{r:?}");
        let r = refusals(&Scenario::parse(&text("2016-12-31T23:58:30Z", "chrony"), "l.toml").unwrap());
        assert!(r.len() == 1 && r[0].contains("host `server`: serves its own clock (local_stratum) with impl = \"chrony\"") && r[0].contains("always sends leap indicator 0"), "{r:?}");
    }

    #[test]
    fn a_link_change_after_a_packet_count_is_refused_and_one_at_a_time_is_not() {
        let at_once = format!("{NTS}[[event]]\nat = \"30s\"\naction = \"set_link\"\nlink = [\"client\", \"server\"]\nloss = 0.1\n");
        assert_eq!(refusals(&Scenario::parse(&at_once, "t").unwrap()), Vec::<String>::new());
        let counted = at_once.replace("loss = 0.1", "loss = 0.1\nafter_packets = 6");
        let r = refusals(&Scenario::parse(&counted, "t").unwrap());
        assert!(r.len() == 1 && r[0].contains("after a packet count (`after_packets`)") && r[0].contains("at 30 s"), "{r:?}");
    }
}
