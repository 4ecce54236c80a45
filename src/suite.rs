//! `ntplab suite`: every scenario of a directory through the simulator and
//! the conformance checks; reports, baseline comparison and a CI verdict.

use crate::cli::CliError;
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::checks::Status;
use ntplab_conformance::suite::{self, SuiteResult};
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
    /// Seed for every scenario (overrides each file's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

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
    let base = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| CliError::input(format!("cannot read baseline {}: {e}", p.display())))?;
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
    let mut scenarios = Vec::new();
    for f in &files {
        let key = f.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        bar.set_message(key.clone());
        scenarios.push(suite::run_scenario(f, args.seed, &args.report.join("traces").join(&key)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (requirements, warnings) = suite::judge(&catalog, &scenarios);
    let figures = baseline::figures(&scenarios);
    let regressions = base.as_ref().map(|b| baseline::compare(b, &figures)).unwrap_or_default();
    let result = SuiteResult { scenarios, requirements, regressions, baseline_compared: base.is_some(), warnings };
    let written = report::write_all(&args.report, &result).map_err(CliError::internal)?;
    if let Some(p) = &args.write_baseline {
        std::fs::write(p, baseline::to_json(&figures)).map_err(|e| CliError::internal(format!("cannot write baseline {}: {e}", p.display())))?;
    }
    write_summary(&result, out).map_err(CliError::from_io)?;
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
    writeln!(out, "{:<28} {:>6} {:>8} {:>9} {:>12}  result", "scenario", "seed", "expect", "checks", "wall")?;
    for s in &r.scenarios {
        let ok = s.expectations.iter().filter(|e| e.passed).count();
        let cf = s.checks.iter().filter(|c| c.outcome.status == Status::Fail).count();
        let cp = s.checks.iter().filter(|c| c.outcome.status == Status::Pass).count();
        let result = match &s.error {
            Some(_) => "ERROR",
            None if s.passed() => "PASS",
            None => "FAIL",
        };
        writeln!(out, "{:<28} {:>6} {:>8} {:>9} {:>10.3} s  {result}", s.key, s.seed, format!("{ok}/{}", s.expectations.len()), format!("{cp}P {cf}F"), s.wall_s)?;
    }
    let (p, f, n) = r.counts();
    writeln!(out, "requirements: {p} pass, {f} fail, {n} not exercised (of {})", r.requirements.len())?;
    for q in r.requirements.iter().filter(|q| q.status == Status::Fail) {
        writeln!(out, "FAIL {} {}: {}", q.level.as_str(), q.id, q.reason)?;
    }
    for g in &r.regressions {
        writeln!(out, "REGRESSION {}", g.describe())?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}
