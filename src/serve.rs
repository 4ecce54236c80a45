//! `ntplab serve`: the NTP daemon on real sockets.
//!
//! Without `--control-system-clock` it never touches the system clock: it
//! disciplines its own software clock layered over `CLOCK_REALTIME` (the
//! core's steered clock) and serves that, the way `chronyd -x` tracks time
//! without setting it. With the flag it disciplines the system clock through
//! `clock_adjtime` (needs CAP_SYS_TIME).

use crate::cli::CliError;
use ntplab_daemon::clock::{ControlledClock, DaemonClock, ObservingClock};
use ntplab_daemon::config::{ConfigFile, DaemonConfig, INTERLEAVED_SLOTS_SERVE_DEFAULT};
use ntplab_daemon::fast::FastPathSpec;
use ntplab_daemon::refclock::linux::LinuxRefclocks;
use ntplab_daemon::daemon::{self, TracingSink};
use ntplab_daemon::net::TokioNetwork;
use ntplab_daemon::nts::glue::NtsRuntime;
use ntplab_daemon::nts::ke::TokioStreams;
use ntplab_daemon::sysclock::SystemClock;
use ntplab_proto::system::LocalReference;
use ntplab_sim::run::DaemonTally;
use ntplab_proto::time::NtpTime;
use ntplab_proto::wire::refid::ReferenceId;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `ntplab serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to serve NTP on, IP:PORT (repeatable; adds to the config file's `listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Configuration file (TOML: sources, local reference, access control, rate limits, smear).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve this host's clock at this stratum when no source is selected
    /// (overrides the file's [local]); like chrony's `local stratum N`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=15))]
    pub local_stratum: Option<u8>,
    /// Discipline the system clock (clock_adjtime; needs CAP_SYS_TIME). Without
    /// it the system clock is only read.
    #[arg(long)]
    pub control_system_clock: bool,
    /// Stop after this many seconds, at most 10 years (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Seed for nonces, poll jitter and the rate limiter's hash key (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Append the daemon's NTS-KE results (`kind` "nts_ke"), the replies
    /// that gave no sample (`kind` "source_reply") and, when its system peer
    /// or falsetickers change, its selections (`kind` "selection"),
    /// `details` as in a simulator trace's events.jsonl, and,
    /// whenever they change, its counts
    /// of selections and kiss codes and the stratum it serves (`kind`
    /// "tally") to FILE as JSON lines with `local_unix_ns`; the hardware lab
    /// reads them into its trace and metrics.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
}

/// Logs events through `tracing` and writes NTS-KE results, selections and
/// the daemon's tally (the simulator's counting of selections, kiss codes
/// and served stratum) to a file (`--events`).
struct EventFile {
    file: Option<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
    tally: DaemonTally,
    /// The system peer and falsetickers of the last selection written.
    last_selection: Option<(serde_json::Value, serde_json::Value)>,
}

impl daemon::EventSink for EventFile {
    fn event(&mut self, at: NtpTime, event: &daemon::DaemonEvent) {
        TracingSink.event(at, event);
        let changed = self.tally.event(event);
        if self.file.is_none() {
            return;
        }
        if let Some(d) = ntplab_sim::run::nts_ke_details(event) {
            self.write("nts_ke", d, at);
        }
        // A reply that gave no sample (rejected, a kiss): the lab's checks
        // tell rejected replies from used ones by these.
        if let Some(d) = ntplab_sim::run::source_reply_details(event) {
            self.write("source_reply", d, at);
        }
        // A selection before the tally it changed (the lab keeps the order of
        // lines of one instant); only when the system peer or the falsetickers
        // change, which is what the checks read of them (one per sample would
        // be a line a second with a reference clock).
        if let Some(d) = ntplab_sim::run::selection_details(event) {
            let said = (d["system_peer"].clone(), d["falsetickers"].clone());
            if self.last_selection.as_ref() != Some(&said) {
                self.last_selection = Some(said);
                self.write("selection", d, at);
            }
        }
        if changed {
            self.write("tally", ntplab_sim::run::tally_details(&self.tally), at);
        }
    }
}

impl EventFile {
    /// Appends one line (`kind`, `details` with the local time) to the file, if any.
    fn write(&mut self, kind: &str, mut details: serde_json::Value, at: NtpTime) {
        let Some(f) = self.file.as_mut() else { return };
        details["local_time"] = at.rfc3339().to_string().into();
        let (secs, nanos) = at.to_unix();
        let line = serde_json::json!({"kind": kind, "local_unix_ns": (i128::from(secs) * 1_000_000_000 + i128::from(nanos)).to_string(), "details": details});
        use std::io::Write;
        if let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush()) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot write the events file; no more events are written");
            self.file = None;
        }
    }
}

/// Longest `--duration`: ten years, in seconds (far below what a timer can hold).
pub const DURATION_S_MAX: f64 = 10.0 * 365.25 * 86_400.0;

/// `--duration`: a positive, finite number of seconds up to [`DURATION_S_MAX`].
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let s: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(s.is_finite() && s > 0.0 && s <= DURATION_S_MAX) {
        return Err(format!("{text} s is not a positive number of seconds up to {DURATION_S_MAX} (10 years)"));
    }
    Ok(std::time::Duration::from_secs_f64(s))
}

/// Loads the configuration from the file and the command line, and the fast
/// server path's settings (`[server]`).
fn load(args: &ServeArgs) -> Result<(DaemonConfig, FastPathSpec), CliError> {
    let (mut file, text, origin) = match &args.config {
        Some(path) => {
            let text = DaemonConfig::read_file(path).map_err(|e| CliError::input(e.to_string()))?;
            let origin = path.display().to_string();
            // Parse only; validation happens after the command line is merged in.
            let file = DaemonConfig::parse_file(&text, &origin).map_err(|e| CliError::usage(e.to_string()))?;
            (file, text, origin)
        }
        None => (ConfigFile::default(), String::new(), "command line".to_string()),
    };
    file.listen.extend(&args.listen);
    let section = file.server.clone().unwrap_or_default();
    let mut config = file.validate_text(&text, &origin).map_err(|e| CliError::usage(e.to_string()))?;
    // Real servers meet many more clients than simulated ones.
    if section.interleaved_slots.is_none() {
        config.server.interleaved_slots = INTERLEAVED_SLOTS_SERVE_DEFAULT;
    }
    let fast = FastPathSpec::new(section.workers, section.recv_buffer);
    // Certificates and keys are read now, so a bad file is named with its line in the config.
    config.load_nts_files(&text, &origin).map_err(|e| CliError::input(e.to_string()))?;
    // The drift file's frequency to start from; a bad file is a warning, as in ntpd and chrony.
    if let Some(warning) = config.load_drift_file(&text, &origin) {
        tracing::warn!("{warning}");
    }
    if let Some(stratum) = args.local_stratum {
        config.local = Some(LocalReference { stratum, reference_id: ReferenceId::from_ascii("LOCL"), leap: None });
    }
    if args.control_system_clock {
        config.clock_control = true;
    }
    Ok((config, fast))
}

/// Runs `ntplab serve`.
pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    let (config, fast) = load(args)?;
    let tally = DaemonTally::new(config.local.map(|l| l.stratum), config.sources.is_empty());
    let mut events = EventFile { file: None, path: args.events.clone().unwrap_or_default(), tally, last_selection: None };
    if let Some(path) = &args.events {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| CliError::input(format!("--events {}: {e}", path.display())))?;
        events.file = Some(std::io::BufWriter::new(f));
    }
    let seed = args.seed.unwrap_or_else(rand_seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let duration = args.duration;
    let shutdown = async move {
        let stop = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop => {},
            _ = tokio::signal::ctrl_c() => {},
            _ = sigterm => {},
        }
    };
    tracing::info!(workers = fast.workers, interleaved_slots = config.server.interleaved_slots, listen = ?config.listen, sources = config.sources.len(), refclocks = config.refclocks.len(), control = config.clock_control, nts = config.nts.is_some(), initial_frequency = ?config.initial_frequency, seed, "ntplab serve starting");
    let result = if config.clock_control {
        let mut clock = ControlledClock::new(SystemClock::with_control());
        local.block_on(&runtime, serve_with(&config, fast, &mut clock, seed, &mut events, shutdown))
    } else {
        let mut clock = ObservingClock::new();
        local.block_on(&runtime, serve_with(&config, fast, &mut clock, seed, &mut events, shutdown))
    };
    result.map_err(|e| CliError::input(format!("ntplab serve: {e}")))
}

async fn serve_with<C: DaemonClock>(
    config: &DaemonConfig,
    fast: FastPathSpec,
    clock: &mut C,
    seed: u64,
    events: &mut EventFile,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let nts = NtsRuntime { streams: TokioStreams, provider: ntplab_daemon::nts::tls::provider(), time: None };
    daemon::run_serving(config, &TokioNetwork::default(), &nts, &LinuxRefclocks, clock, seed, events, shutdown, Some(fast)).await
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
