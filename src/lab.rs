//! `ntplab lab run`: a scenario on real daemons in the virtual lab (network
//! namespaces on this machine), with the simulator's trace, figures and verdicts.

use crate::cli::{CliError, OutputFormat};
use ntplab_hwlab::programs;
use ntplab_hwlab::run::{self as lab, LabOptions};
use ntplab_sim::scenario::Scenario;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// `ntplab lab ...`.
#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Run one scenario on real daemons in network namespaces (needs root); write the trace and judge it.
    Run(LabRunArgs),
}

/// Arguments of `ntplab lab run`.
#[derive(clap::Args, Debug)]
pub struct LabRunArgs {
    /// The scenario file (TOML; hosts may say impl = "ntplab" | "chrony").
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
    /// chronyd, for impl = "chrony" hosts.
    #[arg(long, value_name = "FILE", default_value = programs::CHRONYD)]
    pub chronyd: PathBuf,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Release);
}

/// Runs `ntplab lab run`.
pub fn run(args: &LabRunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| CliError::input(e.to_string()))?;
    let scenario = match args.seed {
        Some(seed) => scenario.with_seed(seed),
        None => scenario,
    };
    let refused = lab::refusals(&scenario);
    if !refused.is_empty() {
        return Err(CliError::input(format!("{}: the lab cannot run this scenario:\n  - {}", scenario.origin, refused.join("\n  - "))));
    }
    let shim = match &args.shim {
        Some(p) => p.clone(),
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
    if args.format == OutputFormat::Text {
        writeln!(out, "scenario {}: {}", scenario.origin, scenario.name).map_err(CliError::from_io)?;
        writeln!(out, "lab run: {} s of real time (scenario duration {} s), seed {}", total.as_secs_f64(), scenario.duration.as_secs_f64(), scenario.seed)
            .map_err(CliError::from_io)?;
        out.flush().map_err(CliError::from_io)?;
    }
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
        out: args.out.clone(),
        shim,
        ntplab,
        chronyd: args.chronyd.clone(),
        interrupted: &INTERRUPTED,
        progress: Some(Box::new(move |elapsed, total| {
            progress_bar.set_position(elapsed.as_secs());
            progress_bar.set_message(format!("{} s left", total.saturating_sub(elapsed).as_secs()));
        })),
    };
    let report = lab::run(&scenario, opts);
    bar.finish_and_clear();
    let report = report.map_err(CliError::input)?;
    match args.format {
        OutputFormat::Text => {
            for (host, imp, program, version) in &report.inventory {
                writeln!(out, "host {host}: {imp} ({program}: {version})").map_err(CliError::from_io)?;
            }
            let (sent, lost) = report.run.packets;
            writeln!(out, "ran {:.1} s of real time; {sent} datagrams, {lost} lost", report.ran.as_secs_f64()).map_err(CliError::from_io)?;
            crate::run::write_figures(&report.run, out).map_err(CliError::from_io)?;
        }
        OutputFormat::Json => {
            let mut v = crate::run::report_json(&scenario, &report.run);
            v["lab"] = serde_json::json!({
                "ran_s": report.ran.as_secs_f64(),
                "programs": report.inventory.iter().map(|(h, i, p, ver)| serde_json::json!({"host": h, "impl": i, "program": p, "version": ver})).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}").map_err(CliError::from_io)?;
        }
    }
    if report.run.passed() {
        Ok(())
    } else {
        let failed: Vec<String> = report.run.verdicts.iter().filter(|v| !v.passed).map(|v| v.expectation.name.clone()).collect();
        Err(CliError::input(format!("{}: {} expectation(s) failed: {}", scenario.origin, failed.len(), failed.join("; "))))
    }
}
