//! `ntplab suite`: every scenario of a directory through the simulator and
//! the conformance checks; reports, baseline comparison and a CI verdict.

use crate::cli::CliError;
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::checks::Status;
use ntplab_conformance::suite::{self, SeedChoice, SuiteResult};
use ntplab_conformance::{baseline, report};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Arguments of `ntplab suite`.
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Directory of scenario files (*.toml, run in sorted order).
    #[arg(default_value = "scenarios")]
    pub dir: PathBuf,
    /// Write the reports (summary.md, report.html, report.json, junit.xml, figures.csv) and traces here.
    #[arg(long, value_name = "DIR", default_value = "target/ntplab-report")]
    pub report: PathBuf,
    /// Compare the figures with this baseline; a regression fails the suite.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write this run's figures as a baseline.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Run only shard K of N (scenarios whose index i in sorted order has i mod N = K-1).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Seed for every scenario (overrides each file's `seed` and `seeds`).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep these seeds for every scenario (overrides each file's `seed` and
    /// `seeds`): `1..10` (inclusive), `7`, `1..5,9`. Every check and
    /// expectation must hold for every seed.
    #[arg(long, value_name = "LIST")]
    pub seeds: Option<String>,
    /// Keep the traces of passing runs in a sweep of several seeds (by default
    /// only failing runs keep theirs: a sweep writes about 0.5 GB per seed).
    #[arg(long)]
    pub keep_traces: bool,
    /// How many of the slowest scenarios to list at the end.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub slowest: usize,
    /// Scenario files run at once, each on a thread of its own (default: this
    /// machine's CPUs). Every run is deterministic, so the verdicts and figures
    /// do not depend on it; the simulation wall times in the report do.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
}

/// Largest baseline file read: 64 MiB.
const BASELINE_BYTES_MAX: u64 = 64 << 20;

/// Runs `ntplab suite`.
pub fn run(args: &SuiteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let catalog = Catalog::builtin();
    let mut files = suite::discover(&args.dir).map_err(CliError::input)?;
    if files.is_empty() {
        return Err(CliError::input(format!("no scenario files (*.toml) in {}", args.dir.display())));
    }
    // A shard may be empty (more shards than scenarios): an empty report, and success.
    if let Some(s) = &args.shard {
        let (k, n) = suite::parse_shard(s).map_err(CliError::usage)?;
        files = suite::shard(&files, k, n);
    }
    let seeds = match (&args.seeds, args.seed) {
        (Some(list), _) => SeedChoice::These(ntplab_sim::scenario::parse_seeds(list).map_err(|e| CliError::usage(format!("--seeds: {e}")))?),
        (None, Some(s)) => SeedChoice::These(vec![s]),
        (None, None) => SeedChoice::Scenario,
    };
    let base = match &args.baseline {
        Some(p) => {
            // Bounded like configs and scenarios: the committed baseline of
            // seeds 1..10 is under 1 MiB.
            use ntplab_daemon::config::{read_file_bounded, BoundedReadError};
            let name = p.display();
            let bytes = read_file_bounded(p, BASELINE_BYTES_MAX).map_err(|e| {
                CliError::input(match e {
                    BoundedReadError::Io(e) => format!("cannot read baseline {name}: {e}"),
                    BoundedReadError::Directory => format!("cannot read baseline {name}: it is a directory"),
                    BoundedReadError::TooLarge(_) => format!("cannot read baseline {name}: more than the limit of {BASELINE_BYTES_MAX} bytes (write one with --write-baseline)"),
                })
            })?;
            let text = String::from_utf8(bytes).map_err(|e| CliError::input(format!("cannot read baseline {name}: not UTF-8 text at byte {}", e.utf8_error().valid_up_to())))?;
            Some(baseline::parse(&text, &p.display().to_string()).map_err(CliError::input)?)
        }
        None => None,
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let traces = args.report.join("traces");
    // Files go to the threads in order; their results are put back in file order.
    let jobs = args.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from).clamp(1, files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Vec<suite::ScenarioResult>>> = files.iter().map(|_| std::sync::Mutex::new(Vec::new())).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let r = suite::run_sweep(f, &seeds, &traces, args.keep_traces, |m| bar.set_message(m.to_string()));
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = r;
                    bar.inc(1);
                }
            });
        }
    });
    let scenarios: Vec<suite::ScenarioResult> = results.into_iter().flat_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect();
    bar.finish_and_clear();
    let figures = baseline::figures(&scenarios);
    let regressions = base.as_ref().map(|b| baseline::compare(b, &figures)).unwrap_or_default();
    let result = SuiteResult::new(&catalog, scenarios, regressions, base.is_some());
    let written = report::write_all(&args.report, &result).map_err(CliError::internal)?;
    if let Some(p) = &args.write_baseline {
        std::fs::write(p, baseline::to_json(&figures)).map_err(|e| CliError::internal(format!("cannot write baseline {}: {e}", p.display())))?;
    }
    write_summary(&result, out).map_err(CliError::from_io)?;
    write_slowest(&result, args.slowest, out).map_err(CliError::from_io)?;
    writeln!(out, "reports: {}", written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")).map_err(CliError::from_io)?;
    if let Some(p) = &args.write_baseline {
        writeln!(out, "baseline written: {}", p.display()).map_err(CliError::from_io)?;
    }
    let gate = result.gate_failures();
    if gate.is_empty() {
        Ok(())
    } else {
        let mut msg = format!("suite failed ({} reason(s)):", gate.len());
        for g in &gate {
            msg.push_str("\n  - ");
            msg.push_str(g);
        }
        Err(CliError::input(msg))
    }
}

fn write_summary(r: &SuiteResult, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:<34} {:>6} {:>8} {:>9} {:>12}  result", "scenario", "seed", "expect", "checks", "wall")?;
    for s in &r.scenarios {
        let ok = s.expectations.iter().filter(|e| e.passed).count();
        let cf = s.checks.iter().filter(|c| c.outcome.status == Status::Fail).count();
        let cp = s.checks.iter().filter(|c| c.outcome.status == Status::Pass).count();
        let result = match &s.error {
            Some(_) => "ERROR",
            None if r.run_passed(s) => "PASS",
            None => "FAIL",
        };
        writeln!(out, "{:<34} {:>6} {:>8} {:>9} {:>10.3} s  {result}", s.key, s.seed, format!("{ok}/{}", s.expectations.len()), format!("{cp}P {cf}F"), s.wall_s)?;
    }
    let keys = r.keys();
    if r.scenarios.len() > keys.len() {
        writeln!(out, "per scenario over its seeds:")?;
        for k in keys {
            let runs: Vec<_> = r.runs_of(k).collect();
            let failing: Vec<String> = runs.iter().filter(|s| !r.run_passed(s)).map(|s| s.seed.to_string()).collect();
            let verdict = if failing.is_empty() { "PASS".to_string() } else { format!("FAIL (seeds {})", failing.join(", ")) };
            writeln!(out, "  {k:<34} {}/{} seeds pass  {verdict}", runs.len() - failing.len(), runs.len())?;
        }
    }
    let (p, f, n) = r.counts();
    writeln!(out, "requirements: {p} pass, {f} fail, {n} not exercised (of {})", r.requirements.len())?;
    for q in r.requirements.iter().filter(|q| q.status == Status::Fail) {
        let dev = if q.deviation.is_some() { " (known deviation)" } else { "" };
        writeln!(out, "FAIL {} {}{dev}: {}", q.level.as_str(), q.id, q.reason)?;
    }
    for q in r.requirements.iter().filter(|q| q.deviation.is_some()) {
        let d = q.deviation.as_ref().map_or(("", ""), |d| (d.rule.as_str(), d.reason.as_str()));
        writeln!(out, "deviation {} ({}): {}; {}", q.id, q.status.label(), d.0, d.1)?;
    }
    for g in &r.regressions {
        writeln!(out, "REGRESSION {}", g.describe())?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

fn write_slowest(r: &SuiteResult, n: usize, out: &mut dyn Write) -> std::io::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let slow = r.slowest();
    let total: f64 = slow.iter().map(|s| s.1).sum();
    writeln!(out, "slowest scenarios (simulation wall time over their seeds; all {} runs: {total:.1} s):", r.scenarios.len())?;
    for (k, wall, runs) in slow.iter().take(n) {
        writeln!(out, "  {k:<34} {wall:>8.2} s over {runs} seed(s), {:.2} s each", wall / (*runs).max(1) as f64)?;
    }
    Ok(())
}
