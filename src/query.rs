//! `ntplab query`: one-shot measurement of a server's time against this host's clock.
//!
//! Each sample is one client/server exchange run by the core's per-source
//! state machine (so every RFC 5905 packet check applies), timestamped by the
//! kernel where it can. The best sample is the one with the smallest delay, as
//! the clock filter would pick it. The system clock is only read.

use crate::cli::{CliError, OutputFormat};
use ntplab_daemon::net::{DatagramSocket, Network, TokioNetwork};
use ntplab_daemon::sysclock::realtime_now;
use ntplab_proto::mono::Instant;
use ntplab_proto::source::{Measurement, Source, SourceConfig, SourceEvent};
use ntplab_proto::time::NtpTime;
use ntplab_proto::wire::v4::LeapIndicator;
use serde::Serialize;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Arguments of `ntplab query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The server, as IP:PORT (e.g. 127.0.0.1:123 or [::1]:123).
    pub server: SocketAddr,
    /// Exchanges to make; the one with the smallest delay is reported.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub samples: u32,
    /// Seconds between exchanges.
    #[arg(long, default_value_t = 0.25)]
    pub interval: f64,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// NTP version to send (1-4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub version: u8,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// One exchange, as reported.
#[derive(Serialize, Debug, Clone)]
pub struct SampleJson {
    /// Server clock minus local clock, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
}

/// The result of `ntplab query`, as JSON.
#[derive(Serialize, Debug)]
pub struct QueryJson {
    /// The server queried.
    pub server: String,
    /// Offset of the best sample, seconds (positive: the server is ahead).
    pub offset: f64,
    /// Delay of the best sample, seconds.
    pub delay: f64,
    /// Server stratum.
    pub stratum: u8,
    /// Reference ID (ASCII at stratum 1, else dotted quad).
    pub reference_id: String,
    /// Leap indicator (0-3).
    pub leap: u8,
    /// Leap indicator in words.
    pub leap_name: &'static str,
    /// Server root delay, seconds.
    pub root_delay: f64,
    /// Server root dispersion, seconds.
    pub root_dispersion: f64,
    /// Server precision, log2 seconds.
    pub precision: i8,
    /// Version of the reply.
    pub version: u8,
    /// Every sample, in order.
    pub samples: Vec<SampleJson>,
    /// Exchanges without a usable reply, with why.
    pub failures: Vec<String>,
}

/// Runs `ntplab query`.
pub fn run(args: &QueryArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !(args.interval.is_finite() && (0.0..=60.0).contains(&args.interval)) {
        return Err(CliError::usage("--interval must be between 0 and 60 seconds"));
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 60.0) {
        return Err(CliError::usage("--timeout must be between 0 and 60 seconds"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
    let (samples, failures) = runtime.block_on(exchange_all(args))?;
    let Some(best) = samples.iter().min_by_key(|m| m.delay) else {
        return Err(CliError::input(format!(
            "{}: no usable reply in {} attempt(s): {}",
            args.server,
            args.samples,
            failures.join("; ")
        )));
    };
    let result = QueryJson {
        server: args.server.to_string(),
        offset: best.offset.to_seconds_f64(),
        delay: best.delay.to_seconds_f64(),
        stratum: best.stratum,
        reference_id: if best.stratum <= 1 {
            best.reference_id.ascii().map_or_else(|| best.reference_id.to_ipv4().to_string(), str::to_string)
        } else {
            best.reference_id.to_ipv4().to_string()
        },
        leap: best.leap.to_bits(),
        leap_name: match best.leap {
            LeapIndicator::NoWarning => "none",
            LeapIndicator::Insert => "insert second",
            LeapIndicator::Delete => "delete second",
            LeapIndicator::Unsynchronized => "unsynchronized",
        },
        root_delay: best.root_delay.to_seconds_f64(),
        root_dispersion: best.root_dispersion.to_seconds_f64(),
        precision: best.precision_log2,
        version: best.version,
        samples: samples
            .iter()
            .map(|m| SampleJson { offset: m.offset.to_seconds_f64(), delay: m.delay.to_seconds_f64() })
            .collect(),
        failures,
    };
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string(&result).map_err(|e| CliError::internal(e.to_string()))? + "\n",
        OutputFormat::Text => format!(
            "server {}: stratum {}, reference ID {}, leap {}\n\
             offset {:+.9} s, delay {:.9} s (best of {} samples)\n\
             root delay {:.6} s, root dispersion {:.6} s, precision 2^{} s, version {}\n",
            result.server,
            result.stratum,
            result.reference_id,
            result.leap_name,
            result.offset,
            result.delay,
            result.samples.len(),
            result.root_delay,
            result.root_dispersion,
            result.precision,
            result.version
        ),
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)
}

async fn exchange_all(args: &QueryArgs) -> Result<(Vec<Measurement>, Vec<String>), CliError> {
    let local: SocketAddr = match args.server {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = TokioNetwork::default()
        .bind(local)
        .await
        .map_err(|e| CliError::internal(format!("cannot open a UDP socket: {e}")))?;
    let start = std::time::Instant::now();
    let mono = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let config = SourceConfig { version: args.version, poll_jitter: false, ..SourceConfig::default() };
    for i in 0..args.samples {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        }
        let mut source = Source::new(config, mono()).map_err(|e| CliError::internal(e.to_string()))?;
        let mut buf = [0u8; 2048];
        let Some(req) = source.handle_timeout(mono(), realtime_now(), nonce(i), &mut buf) else {
            return Err(CliError::internal("the client state machine sent nothing"));
        };
        let sent = socket
            .send_to(&buf[..req.len], args.server)
            .await
            .map_err(|e| CliError::input(format!("cannot send to {}: {e}", args.server)))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.timeout);
        loop {
            let received = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => {
                    failures.push(format!("sample {}: no reply within {} s", i + 1, args.timeout));
                    break;
                }
                Ok(Err(e)) => {
                    failures.push(format!("sample {}: {e}", i + 1));
                    break;
                }
                Ok(Ok(r)) => r,
            };
            if received.from != args.server {
                continue;
            }
            let rx = received.rx_time.unwrap_or_else(realtime_now);
            match source.handle_response(mono(), &buf[..received.len], rx, sent.tx_time) {
                SourceEvent::Sample(m) => {
                    samples.push(m);
                    break;
                }
                SourceEvent::Rejected(reason) => {
                    failures.push(format!("sample {}: reply rejected: {} ({})", i + 1, reason.name(), reason.rule()));
                    break;
                }
                other => {
                    failures.push(format!("sample {}: {}", i + 1, describe(&other)));
                    break;
                }
            }
        }
    }
    Ok((samples, failures))
}

fn describe(event: &SourceEvent) -> String {
    match event {
        SourceEvent::RateLimited { poll_log2, .. } => format!("kiss-o'-death RATE: poll no faster than 2^{poll_log2} s"),
        SourceEvent::Demobilize(code) => format!("kiss-o'-death {}: the server refuses service", code.name()),
        SourceEvent::NtsNak => "kiss-o'-death NTSN (NTS negative acknowledgement)".to_string(),
        SourceEvent::Kiss(code) => format!("kiss-o'-death {}", code.name()),
        other => format!("{other:?}"),
    }
}

/// A transmit-timestamp nonce: unpredictable enough for a one-shot query
/// (time and process id hashed), without a second random-number dependency.
fn nonce(i: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(i);
    h.write_u32(std::process::id());
    let now: NtpTime = realtime_now();
    h.write_u64(now.to_timestamp().to_bits());
    h.finish()
}
