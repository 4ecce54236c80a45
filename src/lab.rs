//! `ntplab lab run`: a scenario on real daemons in the virtual lab (network
//! namespaces on this machine), with the simulator's trace, figures and verdicts.

use crate::cli::{CliError, OutputFormat};
use ntplab_hwlab::labfile::LabFile;
use ntplab_hwlab::programs;
use ntplab_hwlab::run::{self as lab, LabOptions};
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::checks::{Outcome, Status};
use ntplab_conformance::suite::{self, ScenarioResult, SuiteResult};
use ntplab_sim::scenario::Scenario;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// `ntplab lab ...`.
#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Run one scenario on real daemons in network namespaces (needs root); write the trace and judge it.
    Run(LabRunArgs),
    /// Run every scenario (*.toml) of a directory in the lab, one after another; a table of the results.
    Suite(LabSuiteArgs),
    /// Each implementation (ntplab, chrony, ntpsec, ntpd-rs) as client against each as server, in each mode both support: a matrix report.
    Interop(crate::lab_interop::LabInteropArgs),
    /// A scenario's scripted peer (role = "scripted") answering on a real socket in real time; the lab starts one per scripted host.
    Peer(crate::lab_peer::LabPeerArgs),
}

/// Arguments of `ntplab lab suite`.
#[derive(clap::Args, Debug)]
pub struct LabSuiteArgs {
    /// The directory of scenario files.
    #[arg(default_value = "scenarios/lab")]
    pub dir: PathBuf,
    /// Each scenario's trace goes to DIR/<file stem>/; the summary to DIR/lab-suite.json; the conformance reports (summary.md, report.html, report.json, junit.xml, figures.csv) to DIR.
    #[arg(long, value_name = "DIR", default_value = "target/ntplab-lab-suite")]
    pub out: PathBuf,
    /// Report scenarios the lab cannot realize, or whose programs are not installed, as skipped instead of failing the suite.
    #[arg(long)]
    pub skip_unsupported: bool,
    /// Run nothing: say for each scenario whether the lab can run it here (what it cannot realize, which programs are missing) and how much real time the runnable ones take. Needs no root.
    #[arg(long)]
    pub check: bool,
    /// The clock shim library (default: libntplab_clockshim.so next to this executable, or $NTPLAB_SHIM).
    #[arg(long, value_name = "FILE")]
    pub shim: Option<PathBuf>,
    #[command(flatten)]
    pub programs: PeerPrograms,
    /// The lab's hardware (GPS receivers on serial ports, PPS devices, interfaces) and the scenario hosts that use it (docs/hwlab.md, "The lab file").
    #[arg(long, value_name = "LAB.toml")]
    pub lab: Option<PathBuf>,
}

/// Where the other implementations are.
#[derive(clap::Args, Debug)]
pub struct PeerPrograms {
    /// chronyd, for impl = "chrony" hosts (chronyc beside it, or in /usr/bin).
    #[arg(long, value_name = "FILE", default_value = programs::CHRONYD)]
    pub chronyd: PathBuf,
    /// Where ntpsec is unpacked, for impl = "ntpsec" hosts (default: $NTPLAB_PEERS_DIR/ntpsec or /tmp/ntplab-peers/ntpsec, as scripts/install-peers.sh puts it).
    #[arg(long, value_name = "DIR")]
    pub ntpsec_root: Option<PathBuf>,
    /// ntpd-rs's ntp-daemon, for impl = "ntpd-rs" hosts (ntp-ctl beside it; default: on PATH, else ~/.cargo/bin).
    #[arg(long, value_name = "FILE")]
    pub ntp_daemon: Option<PathBuf>,
}

impl PeerPrograms {
    fn ntpsec(&self) -> programs::Ntpsec {
        programs::Ntpsec { root: self.ntpsec_root.clone().unwrap_or_else(programs::Ntpsec::default_root) }
    }
    fn ntpd_rs(&self) -> programs::NtpdRs {
        programs::NtpdRs { daemon: self.ntp_daemon.clone().unwrap_or_else(programs::NtpdRs::default_daemon) }
    }
    /// The first program `s` needs that is not installed, with what installs it.
    pub fn missing_for(&self, s: &Scenario) -> Option<String> {
        lab::missing_programs(s, &self.chronyd, &self.ntpsec(), &self.ntpd_rs())
    }
}

/// Arguments of `ntplab lab run`.
#[derive(clap::Args, Debug)]
pub struct LabRunArgs {
    /// The scenario file (TOML; hosts may say impl = "ntplab" | "chrony" | "ntpsec" | "ntpd-rs").
    pub scenario: PathBuf,
    /// Write the trace (samples.csv, events.jsonl, packets.jsonl, packets.pcap), configurations, clock journals and daemon logs here.
    #[arg(long, value_name = "DIR", default_value = "target/ntplab-lab")]
    pub out: PathBuf,
    /// Seed for the link emulator's random streams (overrides the file's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The clock shim library (default: libntplab_clockshim.so next to this executable, or $NTPLAB_SHIM).
    #[arg(long, value_name = "FILE")]
    pub shim: Option<PathBuf>,
    #[command(flatten)]
    pub programs: PeerPrograms,
    /// A scenario the lab cannot realize, or whose programs are not installed, is reported as skipped (exit status 0) instead of refused.
    #[arg(long)]
    pub skip_unsupported: bool,
    /// Run nothing: say whether the lab can run the scenario here (what it cannot realize, which programs are missing) and how much real time it takes. Needs no root.
    #[arg(long)]
    pub check: bool,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The lab's hardware (GPS receivers on serial ports, PPS devices, interfaces) and the scenario hosts that use it (docs/hwlab.md, "The lab file").
    #[arg(long, value_name = "LAB.toml")]
    pub lab: Option<PathBuf>,
}

/// Reads `--lab`'s file and checks that its devices are on this machine.
fn load_lab(path: Option<&std::path::Path>) -> Result<Option<LabFile>, CliError> {
    let Some(path) = path else { return Ok(None) };
    let lab = LabFile::load(path).map_err(CliError::input)?;
    lab.check_devices().map_err(CliError::input)?;
    Ok(Some(lab))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Release);
}

/// Whether Ctrl-C or SIGTERM has ended the lab's work.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// Runs `ntplab lab run`.
pub fn run(args: &LabRunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| CliError::input(e.to_string()))?;
    let scenario = match args.seed {
        Some(seed) => scenario.with_seed(seed),
        None => scenario,
    };
    let lab_file = load_lab(args.lab.as_deref())?;
    let mut refused = lab::refusals(&scenario);
    if let Some(l) = &lab_file {
        let unknown = l.unknown_hosts(&scenario);
        if !unknown.is_empty() {
            return Err(CliError::input(format!("{}: binds host(s) {}, which {} does not have: fix the [[host]] names", l.origin, unknown.join(", "), scenario.origin)));
        }
        refused.extend(l.refusals(&scenario));
    }
    if args.check {
        let plan = Plan::of(&scenario, refused, &args.programs);
        plan.write(&scenario, args.format, out)?;
        return match plan.verdict() {
            Verdict::Runnable => Ok(()),
            _ if args.skip_unsupported => Ok(()),
            v => Err(CliError::input(format!("{}: {}", scenario.origin, v.word()))),
        };
    }
    if args.skip_unsupported {
        refused.extend(args.programs.missing_for(&scenario));
        if !refused.is_empty() {
            match args.format {
                OutputFormat::Text => writeln!(out, "skipped {}: the lab cannot run it:\n  - {}", scenario.origin, refused.join("\n  - ")),
                OutputFormat::Json => writeln!(out, "{}", serde_json::json!({"scenario": scenario.origin, "skipped": true, "reasons": refused})),
            }
            .map_err(CliError::from_io)?;
            return Ok(());
        }
    }
    if !refused.is_empty() {
        return Err(CliError::input(format!("{}: the lab cannot run this scenario:\n  - {}", scenario.origin, refused.join("\n  - "))));
    }
    if args.format == OutputFormat::Text {
        let total = scenario.lab_duration.unwrap_or(scenario.duration);
        writeln!(out, "scenario {}: {}", scenario.origin, scenario.name).map_err(CliError::from_io)?;
        writeln!(out, "lab run: {} s of real time (scenario duration {} s), seed {}", total.as_secs_f64(), scenario.duration.as_secs_f64(), scenario.seed)
            .map_err(CliError::from_io)?;
        out.flush().map_err(CliError::from_io)?;
    }
    let report = run_one(&scenario, &args.out, args.shim.as_deref(), &args.programs, lab_file.as_ref())?;
    let judged = judge(&args.scenario, &scenario, &report, &args.out);
    let excused = Catalog::builtin().excused_checks();
    match args.format {
        OutputFormat::Text => {
            for line in lab_file.iter().flat_map(LabFile::inventory) {
                writeln!(out, "{line}").map_err(CliError::from_io)?;
            }
            for p in &report.inventory {
                writeln!(out, "host {}: {} ({}: {}; sha256 {})", p.host, p.implementation, p.program, p.version, p.sha256).map_err(CliError::from_io)?;
            }
            let (sent, lost) = report.run.packets;
            writeln!(out, "ran {:.1} s of real time; {sent} datagrams, {lost} lost", report.ran.as_secs_f64()).map_err(CliError::from_io)?;
            let (scheduling, late_max, late_mean) = &report.emulator;
            writeln!(
                out,
                "link emulator: {scheduling}; datagrams written back up to {:.1} us (mean {:.1} us) after their due time",
                *late_max as f64 / 1e3,
                *late_mean as f64 / 1e3
            )
            .map_err(CliError::from_io)?;
            crate::run::write_figures(&report.run, out).map_err(CliError::from_io)?;
            let count = |st: Status| judged.checks.iter().filter(|c| c.outcome.status == st).count();
            writeln!(out, "checks: {} pass, {} fail, {} not exercised", count(Status::Pass), count(Status::Fail), count(Status::NotExercised))
                .map_err(CliError::from_io)?;
            for c in judged.checks.iter().filter(|c| c.outcome.status == Status::Fail) {
                let known = if excused.contains(&c.check) { " (a known deviation of ntplab's, excused)" } else { "" };
                writeln!(out, "FAIL check {}{known}: {}", c.check, c.outcome.reason).map_err(CliError::from_io)?;
                for e in &c.outcome.evidence {
                    writeln!(out, "    {e}").map_err(CliError::from_io)?;
                }
            }
        }
        OutputFormat::Json => {
            let mut v = crate::run::report_json(&scenario, &report.run);
            v["lab"] = serde_json::json!({
                "ran_s": report.ran.as_secs_f64(),
                "emulator": {
                    "scheduling": report.emulator.0,
                    "late_max_s": report.emulator.1 as f64 / 1e9,
                    "late_mean_s": report.emulator.2 as f64 / 1e9,
                },
                "programs": report.inventory.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
                "inventory": lab_file.iter().flat_map(LabFile::inventory).collect::<Vec<_>>(),
            });
            v["checks"] = serde_json::to_value(&judged.checks).map_err(|e| CliError::internal(e.to_string()))?;
            writeln!(out, "{v}").map_err(CliError::from_io)?;
        }
    }
    let failures = judged.failures(&excused);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::input(format!("{}: {} failure(s):\n  - {}", scenario.origin, failures.len(), failures.join("\n  - "))))
    }
}

/// A lab run judged as `ntplab suite` judges a simulator run: expectations,
/// figures and every conformance check on its trace, with every host's
/// timestamp noise at least [`lab::TIMESTAMP_NOISE_S`]; the checks that
/// need a client's own rejections ([`lab::NOT_JUDGED_IN_THE_LAB`]) are not
/// exercised, with the reason, when a chronyd, ntpsec or ntpd-rs client
/// (which writes none) is in the scenario.
pub(crate) fn judge(path: &std::path::Path, scenario: &Scenario, report: &lab::LabReport, trace_dir: &std::path::Path) -> ScenarioResult {
    // The trace is on the real time scale: judged as a scenario that started then.
    let mut at = scenario.clone();
    at.start = report.start;
    for h in at.hosts.iter_mut() {
        h.clock.noise_s = h.clock.noise_s.max(lab::TIMESTAMP_NOISE_S);
    }
    let mut r = suite::judge_run(suite::declared(path, scenario), &at, &report.run, trace_dir);
    if !lab::judges_rejections(scenario) {
        for c in r.checks.iter_mut().filter(|c| lab::NOT_JUDGED_IN_THE_LAB.contains(&c.check.as_str())) {
            c.outcome = Outcome::not_exercised(lab::NOT_JUDGED_REASON);
        }
    }
    r
}

/// Runs one scenario the lab can realize, with a progress bar on a terminal.
pub(crate) fn run_one(scenario: &Scenario, out_dir: &std::path::Path, shim: Option<&std::path::Path>, peers: &PeerPrograms, lab_file: Option<&LabFile>) -> Result<lab::LabReport, CliError> {
    let shim = match shim {
        Some(p) => p.to_path_buf(),
        None => programs::find_shim().map_err(CliError::input)?,
    };
    let ntplab = std::env::current_exe().map_err(|e| CliError::internal(format!("cannot find this executable: {e}")))?;
    // Ctrl-C and SIGTERM end the run early; the lab then stops its daemons and deletes its namespaces.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let total = scenario.lab_duration.unwrap_or(scenario.duration);
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(total.as_secs().max(1))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} s, {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress_bar = bar.clone();
    let opts = LabOptions {
        out: out_dir.to_path_buf(),
        shim,
        ntplab,
        chronyd: peers.chronyd.clone(),
        ntpsec: peers.ntpsec(),
        ntpd_rs: peers.ntpd_rs(),
        interrupted: &INTERRUPTED,
        progress: Some(Box::new(move |elapsed, total| {
            progress_bar.set_position(elapsed.as_secs());
            progress_bar.set_message(format!("{} s left", total.saturating_sub(elapsed).as_secs()));
        })),
        lab: lab_file.cloned(),
    };
    let report = lab::run(scenario, opts);
    bar.finish_and_clear();
    report.map_err(CliError::input)
}

/// Runs `ntplab lab suite`.
pub fn suite(args: &LabSuiteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let files = ntplab_conformance::suite::discover(&args.dir).map_err(CliError::input)?;
    if files.is_empty() {
        return Err(CliError::input(format!("{}: no scenario files (*.toml)", args.dir.display())));
    }
    let lab_file = load_lab(args.lab.as_deref())?;
    if let Some(l) = &lab_file {
        // A lab file serves many scenarios; a host none of them has is a mistake.
        let mut scenarios = Vec::new();
        for f in &files {
            scenarios.push(Scenario::load(f).map_err(|e| CliError::input(e.to_string()))?);
        }
        let never: Vec<String> = l.hosts.iter().filter(|b| !scenarios.iter().any(|s| s.hosts.iter().any(|h| h.name == b.name))).map(|b| b.name.clone()).collect();
        if !never.is_empty() {
            return Err(CliError::input(format!("{}: binds host(s) {}, which no scenario of {} has: fix the [[host]] names", l.origin, never.join(", "), args.dir.display())));
        }
    }
    let mut rows = Vec::new();
    let mut failed = 0usize;
    let catalog = Catalog::builtin();
    let excused = catalog.excused_checks();
    // What the conformance reports judge: every scenario that ran or should have.
    let mut judged = Vec::new();
    let mut header: Vec<String> = lab_file.iter().flat_map(LabFile::inventory).collect();
    let mut check_seconds = 0.0;
    for f in &files {
        let scenario = Scenario::load(f).map_err(|e| CliError::input(e.to_string()))?;
        let stem = f.file_stem().map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
        let mut refused = lab::refusals(&scenario);
        refused.extend(lab_file.iter().flat_map(|l| l.refusals(&scenario)));
        if args.check {
            let plan = Plan::of(&scenario, refused, &args.programs);
            plan.write(&scenario, OutputFormat::Text, out)?;
            match plan.verdict() {
                Verdict::Runnable => check_seconds += plan.real_time_s,
                _ if args.skip_unsupported => {}
                _ => failed += 1,
            }
            rows.push(plan.json(&scenario));
            continue;
        }
        // A program that is not installed is refused (or skipped) the same way.
        refused.extend(args.programs.missing_for(&scenario));
        let not_run = |why: String| {
            let mut r = suite::declared(f, &scenario);
            r.error = Some(why);
            r
        };
        let (status, detail) = if !refused.is_empty() {
            if !args.skip_unsupported {
                failed += 1;
                judged.push(not_run(format!("the lab cannot run it: {}", refused.join("; "))));
            }
            (if args.skip_unsupported { "skipped" } else { "refused" }, refused.join("; "))
        } else if INTERRUPTED.load(Ordering::Acquire) {
            failed += 1;
            judged.push(not_run("interrupted".into()));
            ("interrupted", String::new())
        } else {
            let dir = args.out.join(&stem);
            match run_one(&scenario, &dir, args.shim.as_deref(), &args.programs, lab_file.as_ref()) {
                Ok(r) => {
                    for p in &r.inventory {
                        header.push(format!("{stem}: host {} runs {} {} ({}, sha256 {})", p.host, p.implementation, p.version, p.program, p.sha256));
                    }
                    let j = judge(f, &scenario, &r, &dir);
                    let failures = j.failures(&excused);
                    judged.push(j);
                    if failures.is_empty() {
                        ("pass", summary(&r.run))
                    } else {
                        failed += 1;
                        ("fail", format!("{}; {}", summary(&r.run), failures.join("; ")))
                    }
                }
                Err(e) => {
                    failed += 1;
                    judged.push(not_run(e.message.clone()));
                    ("error", e.message)
                }
            }
        };
        writeln!(out, "{status:<8} {}: {detail}", f.display()).map_err(CliError::from_io)?;
        out.flush().map_err(CliError::from_io)?;
        rows.push(serde_json::json!({"scenario": f.display().to_string(), "status": status, "detail": detail}));
    }
    if args.check {
        let runnable = rows.iter().filter(|r| r["runnable"] == true).count();
        writeln!(
            out,
            "{} scenario(s): {runnable} runnable here, in {:.0} s of real time one after another; {} not",
            files.len(),
            check_seconds,
            files.len() - runnable
        )
        .map_err(CliError::from_io)?;
        return if failed == 0 { Ok(()) } else { Err(CliError::input(format!("{failed} of {} scenario(s) cannot run in the lab here", files.len()))) };
    }
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::internal(format!("cannot create {}: {e}", args.out.display())))?;
    let path = args.out.join("lab-suite.json");
    std::fs::write(&path, serde_json::json!({"scenarios": rows, "failed": failed}).to_string())
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
    let mut result = SuiteResult::new(&catalog, judged, Vec::new(), false);
    result.header = header;
    let reports = ntplab_conformance::report::write_all(&args.out, &result).map_err(CliError::internal)?;
    writeln!(out, "{} scenario(s), {failed} not passed; summary: {}; reports: {}", files.len(), path.display(), reports.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
        .map_err(CliError::from_io)?;
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::input(format!("{failed} of {} lab scenario(s) did not pass", files.len())))
    }
}

/// What `--check` says of a scenario: whether the lab can run it here, and
/// in how much real time. Nothing is run, so nothing needs root.
struct Plan {
    /// What the lab (and the lab file) cannot realize.
    refused: Vec<String>,
    /// The first program the scenario needs that is not installed, with what installs it.
    missing: Option<String>,
    /// The real time a run takes (`lab_duration`, else `duration`).
    real_time_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Runnable,
    Refused,
    NotInstalled,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Runnable => "runnable",
            Verdict::Refused => "refused",
            Verdict::NotInstalled => "not installed",
        }
    }
}

impl Plan {
    fn of(scenario: &Scenario, refused: Vec<String>, programs: &PeerPrograms) -> Plan {
        Plan {
            refused,
            missing: programs.missing_for(scenario),
            real_time_s: scenario.lab_duration.unwrap_or(scenario.duration).as_secs_f64(),
        }
    }

    fn verdict(&self) -> Verdict {
        if !self.refused.is_empty() {
            Verdict::Refused
        } else if self.missing.is_some() {
            Verdict::NotInstalled
        } else {
            Verdict::Runnable
        }
    }

    /// Each host with the program that would run it.
    fn hosts(scenario: &Scenario) -> Vec<String> {
        scenario
            .hosts
            .iter()
            .map(|h| match h.role {
                ntplab_sim::scenario::Role::Scripted(_) => format!("{} (scripted peer)", h.name),
                ntplab_sim::scenario::Role::Ntp(_) => format!("{} ({})", h.name, h.implementation.name()),
            })
            .collect()
    }

    fn json(&self, scenario: &Scenario) -> serde_json::Value {
        serde_json::json!({
            "scenario": scenario.origin,
            "runnable": self.verdict() == Verdict::Runnable,
            "verdict": self.verdict().word(),
            "real_time_s": self.real_time_s,
            "hosts": Plan::hosts(scenario),
            "refused": self.refused,
            "missing": self.missing,
        })
    }

    fn write(&self, scenario: &Scenario, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
        match format {
            OutputFormat::Json => writeln!(out, "{}", self.json(scenario)),
            OutputFormat::Text => {
                let mut text = match self.verdict() {
                    Verdict::Runnable => format!(
                        "runnable      {}: {} s of real time; hosts {}",
                        scenario.origin,
                        self.real_time_s,
                        Plan::hosts(scenario).join(", ")
                    ),
                    Verdict::Refused => format!("refused       {}: the lab cannot realize:", scenario.origin),
                    Verdict::NotInstalled => format!("not installed {}: {}", scenario.origin, self.missing.as_deref().unwrap_or_default()),
                };
                for r in &self.refused {
                    text.push_str(&format!("\n  - {r}"));
                }
                if let (Verdict::Refused, Some(m)) = (self.verdict(), &self.missing) {
                    text.push_str(&format!("\n  - and not installed: {m}"));
                }
                writeln!(out, "{text}")
            }
        }
        .map_err(CliError::from_io)
    }
}

/// Each daemon host's RMS offset, for the suite's table.
fn summary(r: &ntplab_sim::run::RunReport) -> String {
    let figures: Vec<String> = r
        .hosts
        .iter()
        .filter(|h| h.daemon)
        .map(|h| format!("{} rms {}", h.name, h.stats.rms_offset().map_or("-".into(), |v| format!("{:.1} us", v * 1e6))))
        .collect();
    figures.join(", ")
}
