//! `ntplab`: the NTP test and reference system's command line.

mod bench;
mod bench_nts;
mod cli;
mod decode;
mod lab;
mod lab_interop;
mod lab_peer;
mod probe;
mod probe_ke;
mod query;
mod query_nts;
mod run;
mod serve;
mod suite;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// NTP test and reference system.
#[derive(Parser, Debug)]
#[command(name = "ntplab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode NTP packets (NTPv1-v5, extension fields, NTS fields) from hex or a capture.
    Decode(decode::DecodeArgs),
    /// Measure a server's offset and delay against this host's clock (one shot; the clock is only read).
    Query(query::QueryArgs),
    /// Run the NTP daemon: serve time, follow sources (never touches the system clock unless asked).
    Serve(serve::ServeArgs),
    /// Run a scenario in the deterministic simulator (the real daemon on simulated hosts).
    Run(run::RunArgs),
    /// Black-box conformance test of an NTP server: crafted requests, judged replies, a certification report.
    Probe(probe::ProbeArgs),
    /// Run every scenario of a directory with the conformance checks; write reports; gate CI.
    Suite(suite::SuiteArgs),
    /// The hardware lab: run scenarios on real daemons (ntplab, chronyd, ntpsec, ntpd-rs) in network namespaces, each on a virtual clock; their interop matrix.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Load-test NTP implementations (loopback targets only, unless allowed).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Send NTPv4 client requests to a server; report responses/s, loss and round trips.
    Server(bench::BenchServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG (e.g. RUST_LOG=debug) sets the level, default info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = match &cli.command {
        Command::Decode(args) => decode::run(args, &mut out),
        Command::Query(args) => query::run(args, &mut out),
        Command::Run(args) => run::run(args, &mut out),
        Command::Suite(args) => suite::run(args, &mut out),
        Command::Probe(args) => probe::run(args, &mut out),
        Command::Serve(args) => serve::run(args),
        Command::Lab(lab::LabCommand::Run(args)) => lab::run(args, &mut out),
        Command::Lab(lab::LabCommand::Suite(args)) => lab::suite(args, &mut out),
        Command::Lab(lab::LabCommand::Interop(args)) => lab_interop::run(args, &mut out),
        Command::Lab(lab::LabCommand::Peer(args)) => lab_peer::run(args),
        Command::Bench(BenchCommand::Server(args)) => bench::run_server(args, &mut out),
    };
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) if e.is_closed_output() => ExitCode::SUCCESS,
        (Err(e), _) => {
            eprintln!("ntplab: error: {e}");
            ExitCode::from(e.code)
        }
        (Ok(()), Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (Ok(()), Err(e)) => {
            eprintln!("ntplab: error: cannot write output: {e}");
            ExitCode::from(3)
        }
    }
}
