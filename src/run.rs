//! `ntplab run`: one scenario in the simulator, with a summary and verdicts.

use crate::cli::{CliError, OutputFormat};
use ntplab_sim::rng::SimRng;
use ntplab_sim::run::{self, RunReport};
use ntplab_sim::scenario::{Role, Scenario};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `ntplab run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The scenario file (TOML; see scenarios/).
    pub scenario: PathBuf,
    /// Seed for every random stream (overrides the file's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the trace (samples.csv, events.jsonl, packets.jsonl, packets.pcap) here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `ntplab run`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| CliError::input(e.to_string()))?;
    let scenario = match args.seed {
        Some(seed) => scenario.with_seed(seed),
        None => scenario,
    };
    if args.format == OutputFormat::Text {
        write_parameters(&scenario, out).map_err(CliError::from_io)?;
        out.flush().map_err(CliError::from_io)?;
    }
    let report = run::run(&scenario, args.out.as_deref()).map_err(CliError::internal)?;
    match args.format {
        OutputFormat::Text => write_summary(&report, out).map_err(CliError::from_io)?,
        OutputFormat::Json => {
            let v = report_json(&scenario, &report);
            writeln!(out, "{v}").map_err(CliError::from_io)?;
        }
    }
    if report.passed() {
        Ok(())
    } else {
        let failed: Vec<String> =
            report.verdicts.iter().filter(|v| !v.passed).map(|v| v.expectation.name.clone()).collect();
        Err(CliError::input(format!("{}: {} expectation(s) failed: {}", scenario.origin, failed.len(), failed.join("; "))))
    }
}

/// The seed and every parameter derived from the file, before anything runs.
fn write_parameters(s: &Scenario, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "scenario {}: {}", s.origin, s.name)?;
    writeln!(out, "seed {}", s.seed)?;
    writeln!(
        out,
        "start {}, duration {} s, sample interval {} s, statistics after {} s",
        s.start.rfc3339(),
        s.duration.as_secs_f64(),
        s.sample_interval.as_secs_f64(),
        s.converged_after.as_secs_f64()
    )?;
    for (i, h) in s.hosts.iter().enumerate() {
        let role = match &h.role {
            Role::Ntp(n) => format!("ntp daemon, {} source(s), listen {:?}", n.sources.len(), n.daemon.listen),
            Role::Scripted(p) => format!("scripted {:?}, stratum {}", p.behavior, p.stratum),
        };
        let c = &h.clock;
        let frequency = match &c.frequency_file {
            Some(f) => format!("frequency from {} ({} values, one a second)", f.path, f.values.len()),
            None => format!("frequency {:e}, wander {:e}", c.frequency, c.wander),
        };
        writeln!(
            out,
            "host {} ({}): {role}; clock offset {} s, {frequency}, noise {:e} s, precision {:e} s; \
             streams oscillator/{i} noise/{i} daemon/{i} (first daemon seed {})",
            h.name,
            h.address,
            c.offset_s,
            c.noise_s,
            c.precision_s,
            SimRng::daemon_seed(s.seed, i, 0)
        )?;
    }
    for l in &s.links {
        writeln!(
            out,
            "link {} -> {}: {:?}; {} -> {}: {:?}",
            s.hosts[l.hosts[0]].name,
            s.hosts[l.hosts[1]].name,
            l.forward,
            s.hosts[l.hosts[1]].name,
            s.hosts[l.hosts[0]].name,
            l.backward
        )?;
    }
    for e in &s.events {
        writeln!(out, "event at {} s: {:?}", e.at.as_secs_f64(), e.action)?;
    }
    Ok(())
}

fn fmt_s(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() < 1e-3 => format!("{:.1} us", v * 1e6),
        Some(v) if v.abs() < 1.0 => format!("{:.3} ms", v * 1e3),
        Some(v) => format!("{v:.3} s"),
        None => "-".to_string(),
    }
}

pub(crate) fn write_summary(r: &RunReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "simulated in {:.3} s wall; {} datagrams, {} lost", r.wall.as_secs_f64(), r.packets.0, r.packets.1)?;
    write_figures(r, out)
}

/// The per-host table, the verdicts and the trace directory (`ntplab run`'s and `ntplab lab run`'s).
pub(crate) fn write_figures(r: &RunReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:<12} {:>12} {:>12} {:>12} {:>8} {:>8}", "host", "rms offset", "max offset", "sync time", "steps", "sent")?;
    for h in r.hosts.iter().filter(|h| h.daemon) {
        writeln!(
            out,
            "{:<12} {:>12} {:>12} {:>12} {:>8} {:>8}",
            h.name,
            fmt_s(h.stats.rms_offset()),
            fmt_s(h.stats.max_offset()),
            h.sync_time().map_or("never".into(), |t| format!("{t:.0} s")),
            h.stats.steps,
            h.stats.packets_sent
        )?;
    }
    for v in &r.verdicts {
        let bound = match (v.expectation.min, v.expectation.max) {
            (Some(a), Some(b)) => format!("in [{a:e}, {b:e}]"),
            (Some(a), None) => format!(">= {a:e}"),
            (None, Some(b)) => format!("<= {b:e}"),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{} {}: {} {} = {} (must be {bound}){}",
            if v.passed { "PASS" } else { "FAIL" },
            v.expectation.name,
            v.host,
            v.expectation.metric.name(),
            v.value.map_or_else(|| format!("none: {}", v.missing.as_deref().unwrap_or("never happened")), |x| format!("{x:e}")),
            v.expectation.requirement.as_ref().map_or(String::new(), |r| format!(" [{r}]"))
        )?;
    }
    if let Some(t) = &r.trace {
        writeln!(out, "trace: {}", t.samples_path.parent().map_or(String::new(), |p| p.display().to_string()))?;
    }
    Ok(())
}

pub(crate) fn report_json(s: &Scenario, r: &RunReport) -> serde_json::Value {
    serde_json::json!({
        "scenario": s.origin,
        "name": r.name,
        "seed": r.seed,
        "wall_s": r.wall.as_secs_f64(),
        "packets": r.packets.0,
        "lost": r.packets.1,
        "hosts": r.hosts.iter().filter(|h| h.daemon).map(|h| serde_json::json!({
            "name": h.name,
            "rms_offset_s": h.stats.rms_offset(),
            "max_offset_s": h.stats.max_offset(),
            "sync_time_s": h.sync_time(),
            "rms_frequency_error": h.stats.rms_frequency_error(),
            "steps": h.stats.steps,
            "packets_sent": h.stats.packets_sent,
            "packets_received": h.packets_received,
        })).collect::<Vec<_>>(),
        "expectations": r.verdicts.iter().map(|v| serde_json::json!({
            "name": v.expectation.name,
            "host": v.host,
            "metric": v.expectation.metric.name(),
            "value": v.value,
            "missing": v.missing,
            "min": v.expectation.min,
            "max": v.expectation.max,
            "requirement": v.expectation.requirement,
            "passed": v.passed,
        })).collect::<Vec<_>>(),
        "passed": r.passed(),
    })
}
