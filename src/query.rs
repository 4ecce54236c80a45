//! `ntplab query`: one-shot measurement of a server's time against this host's clock.
//!
//! Each sample is one client/server exchange run by the core's per-source
//! state machine (so every RFC 5905 packet check applies), timestamped by the
//! kernel where it can. The best sample is the one with the smallest delay, as
//! the clock filter would pick it. The system clock is only read.
//!
//! The socket is connected to the server, so the kernel drops datagrams from
//! anyone else and an ICMP port unreachable ends the query at once. While
//! waiting for a reply, datagrams whose origin timestamp is not this request's
//! transmit timestamp (garbage, spoofs, late answers to earlier requests) are
//! set aside and counted, and the wait goes on until the timeout. Every
//! exchange is reported with its fate. A RATE, DENY or RSTR kiss-o'-death
//! stops the query (RFC 5905 §7.4, RFC 8633 §5.4): exit status 4.

use crate::cli::{CliError, OutputFormat};
use ntplab_daemon::net::{DatagramSocket, Network, TokioNetwork};
use ntplab_daemon::sysclock::realtime_now;
use ntplab_proto::mono::Instant;
use ntplab_proto::source::{Measurement, RejectReason, Source, SourceConfig, SourceEvent};
use ntplab_proto::time::NtpTime;
use ntplab_proto::wire::refid::KissCode;
use ntplab_proto::wire::v4::LeapIndicator;
use serde::Serialize;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Arguments of `ntplab query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The server, as IP:PORT (e.g. 127.0.0.1:123 or [::1]:123).
    #[arg(required_unless_present = "nts", conflicts_with = "nts")]
    pub server: Option<SocketAddr>,
    /// Use NTS (RFC 8915): key establishment with this NTS-KE server
    /// (HOST[:PORT], default port 4460), then NTS-protected exchanges with
    /// the NTP server it names (by default the same address, port 123).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub nts: Option<String>,
    /// PEM file of the certificates to trust for --nts (default: the system's store).
    #[arg(long, value_name = "FILE")]
    pub trusted_certificates: Option<std::path::PathBuf>,
    /// AEAD to offer with --nts, by ID (15 AES-SIV-CMAC-256, 30 AES-128-GCM-SIV,
    /// 17 AES-SIV-CMAC-512); repeat for several, most preferred first (default: 15, 30, 17).
    #[arg(long = "aead", value_name = "ID")]
    pub aeads: Vec<u16>,
    /// With --nts: write the session's client-to-server key and one of its
    /// cookies (the last the KE server gave) in hex, as `C2S,COOKIE`, to FILE
    /// (created new, mode 0600): the argument of ntpperf's -S option, to load
    /// a server with NTS requests. ntpperf seals with AEAD 15 only: give --aead 15.
    #[arg(long, value_name = "FILE", requires = "nts")]
    pub ntpperf_session: Option<std::path::PathBuf>,
    /// Exchanges to make; the one with the smallest delay is reported (default 4; 1 with --nts).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub samples: Option<u32>,
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

/// What became of one exchange.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// A reply that passed every check: a sample.
    Ok,
    /// The reply to this request failed a check (reason and rule in `detail`).
    Rejected,
    /// The reply was a kiss-o'-death (code in `kiss_code`).
    Kiss,
    /// No reply to this request before the timeout.
    NoReply,
    /// An ICMP port unreachable came back: nothing listens there.
    PortUnreachable,
    /// The exchange failed locally or with another ICMP error (in `detail`).
    Error,
}

/// Datagrams set aside while waiting for one reply, by reason.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DiscardJson {
    /// Why: a packet check's name (`bogus`, `too_short`, ...) or `late_reply`
    /// (the answer to an earlier sample's request).
    pub reason: String,
    /// How many.
    pub count: u32,
}

/// One exchange, as reported.
#[derive(Serialize, Debug, Clone)]
pub struct SampleJson {
    /// 1-based number of the exchange.
    pub sample: u32,
    /// What became of it.
    pub fate: Fate,
    /// Server clock minus local clock, seconds (fate `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
    /// Round-trip delay, seconds (fate `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<f64>,
    /// The kiss code (fate `kiss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiss_code: Option<String>,
    /// Why the exchange gave no sample, in words (every fate but `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Datagrams from the server that did not answer this request (wrong
    /// origin, garbage, late replies to earlier requests): not used, counted.
    pub discarded: Vec<DiscardJson>,
}

/// The best sample's figures and the server's header fields.
#[derive(Serialize, Debug)]
pub struct BestJson {
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
}

/// What NTS key establishment agreed (`--nts`).
#[derive(Serialize, Debug, Clone)]
pub struct NtsJson {
    /// The NTS-KE server, HOST:PORT.
    pub ke_server: String,
    /// The AEAD algorithm's ID (IANA AEAD registry).
    pub aead: u16,
    /// Its name.
    pub aead_name: &'static str,
    /// The NTP server and port used (negotiated, or the defaults).
    pub ntp_server: String,
    /// Whether the KE server named the NTP server (else the KE server's address).
    pub ntp_server_negotiated: bool,
    /// Whether the KE server named the port (else 123).
    pub ntp_port_negotiated: bool,
    /// Cookies received.
    pub cookies: usize,
    /// Their length in octets (the first one's).
    pub cookie_len: usize,
    /// Cookies in the jar after the exchanges.
    pub cookies_left: usize,
}

/// The result of `ntplab query`, as JSON.
#[derive(Serialize, Debug)]
pub struct QueryJson {
    /// The server queried.
    pub server: String,
    /// NTS key establishment, with `--nts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nts: Option<NtsJson>,
    /// The best sample (smallest delay); absent when no exchange gave one.
    #[serde(flatten)]
    pub best: Option<BestJson>,
    /// Every exchange made, in order, with its fate.
    pub samples: Vec<SampleJson>,
    /// Exchanges without a usable reply, with why (the `detail` of each).
    pub failures: Vec<String>,
    /// Why the query stopped before making every exchange asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The kiss code that stopped the query (RATE, DENY or RSTR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiss_code: Option<String>,
    /// What that kiss code means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiss_meaning: Option<&'static str>,
}

/// Exit status when the server answered with a kiss-o'-death that tells
/// clients to stop or slow down (RATE, DENY, RSTR).
pub const EXIT_KISS_OF_DEATH: u8 = 4;

/// One exchange's outcome, before it becomes JSON.
struct Outcome {
    fate: Fate,
    measurement: Option<Measurement>,
    kiss: Option<KissCode>,
    detail: Option<String>,
    discarded: Vec<DiscardJson>,
}

/// Why the exchanges stopped early.
enum Stop {
    Kiss(KissCode),
    PortUnreachable,
    Unreachable(String),
}

/// Runs `ntplab query`.
pub fn run(args: &QueryArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.nts.is_none() && (!args.aeads.is_empty() || args.trusted_certificates.is_some()) {
        return Err(CliError::usage("--aead and --trusted-certificates go with --nts HOST[:PORT]"));
    }
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
    let (server, outcomes, stop, nts) = runtime.block_on(query(args))?;
    let mut result = summarize(server, &outcomes, stop.as_ref());
    result.nts = nts;
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string(&result).map_err(|e| CliError::internal(e.to_string()))? + "\n",
        OutputFormat::Text => to_text(&result),
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)?;
    match (&stop, &result.best) {
        (Some(Stop::Kiss(code)), _) => Err(CliError {
            code: EXIT_KISS_OF_DEATH,
            message: format!(
                "{}: kiss-o'-death {}: {}; stopped sending",
                server,
                code.name(),
                kiss_meaning(*code)
            ),
        }),
        (Some(Stop::PortUnreachable), None) => {
            Err(CliError::input(format!("port unreachable: nothing listens on {}", server)))
        }
        (Some(Stop::Unreachable(why)), None) => Err(CliError::input(format!("{}: {why}", server))),
        (_, None) => Err(CliError::input(format!(
            "{}: no usable reply in {} attempt(s): {}",
            server,
            outcomes.len(),
            result.failures.join("; ")
        ))),
        (_, Some(_)) => Ok(()),
    }
}

fn summarize(server: SocketAddr, outcomes: &[Outcome], stop: Option<&Stop>) -> QueryJson {
    let best = outcomes.iter().filter_map(|o| o.measurement.as_ref()).min_by_key(|m| m.delay);
    let samples: Vec<SampleJson> = outcomes
        .iter()
        .zip(1..)
        .map(|(o, sample)| SampleJson {
            sample,
            fate: o.fate,
            offset: o.measurement.map(|m| m.offset.to_seconds_f64()),
            delay: o.measurement.map(|m| m.delay.to_seconds_f64()),
            kiss_code: o.kiss.map(|k| k.name()),
            detail: o.detail.clone(),
            discarded: o.discarded.clone(),
        })
        .collect();
    let failures = samples
        .iter()
        .filter_map(|s| s.detail.as_ref().map(|d| format!("sample {}: {d}", s.sample)))
        .collect();
    let kiss = match stop {
        Some(Stop::Kiss(code)) => Some(*code),
        _ => None,
    };
    QueryJson {
        server: server.to_string(),
        nts: None,
        best: best.map(best_json),
        samples,
        failures,
        stopped: stop.map(|s| match s {
            Stop::Kiss(code) => format!("kiss-o'-death {}: {}", code.name(), kiss_meaning(*code)),
            Stop::PortUnreachable => format!("port unreachable: nothing listens on {}", server),
            Stop::Unreachable(why) => why.clone(),
        }),
        kiss_code: kiss.map(|k| k.name()),
        kiss_meaning: kiss.map(kiss_meaning),
    }
}

fn best_json(best: &Measurement) -> BestJson {
    BestJson {
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
    }
}

/// The text form: the best sample (if any), then one line per exchange.
fn to_text(r: &QueryJson) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let usable = r.samples.iter().filter(|x| x.fate == Fate::Ok).count();
    if let Some(n) = &r.nts {
        let how = match (n.ntp_server_negotiated, n.ntp_port_negotiated) {
            (true, true) => "server and port negotiated",
            (true, false) => "server negotiated, port 123",
            (false, true) => "the KE server's address, port negotiated",
            (false, false) => "the KE server's address, port 123",
        };
        let _ = writeln!(
            s,
            "NTS-KE {}: AEAD {} ({}), NTP server {} ({how}), {} cookies of {} octets ({} left)",
            n.ke_server, n.aead, n.aead_name, n.ntp_server, n.cookies, n.cookie_len, n.cookies_left
        );
    }
    if let Some(b) = &r.best {
        let _ = write!(
            s,
            "server {}: stratum {}, reference ID {}, leap {}\n\
             offset {:+.9} s, delay {:.9} s (best of {} usable of {} samples)\n\
             root delay {:.6} s, root dispersion {:.6} s, precision 2^{} s, version {}\n",
            r.server,
            b.stratum,
            b.reference_id,
            b.leap_name,
            b.offset,
            b.delay,
            usable,
            r.samples.len(),
            b.root_delay,
            b.root_dispersion,
            b.precision,
            b.version
        );
    } else {
        let _ = writeln!(s, "server {}: no usable reply in {} exchange(s)", r.server, r.samples.len());
    }
    for x in &r.samples {
        let _ = write!(s, "sample {}: ", x.sample);
        match (x.offset, x.delay, &x.detail) {
            (Some(o), Some(d), _) => {
                let _ = write!(s, "offset {o:+.9} s, delay {d:.9} s");
            }
            (_, _, Some(detail)) => s.push_str(detail),
            _ => s.push_str("(nothing)"),
        }
        if !x.discarded.is_empty() {
            let list: Vec<String> = x.discarded.iter().map(|d| format!("{} {}", d.count, d.reason)).collect();
            let _ = write!(s, " (discarded: {})", list.join(", "));
        }
        s.push('\n');
    }
    if let Some(why) = &r.stopped {
        let _ = writeln!(s, "stopped: {why}");
    }
    s
}

/// What a kiss code means (RFC 5905 §7.4 Figure 13; NTSN RFC 8915 §5.7) and,
/// for the codes a client must act on, what RFC 5905 §7.4 and RFC 8633 §5.4
/// ask of it.
pub fn kiss_meaning(code: KissCode) -> &'static str {
    match code {
        KissCode::Rate => {
            "rate exceeded: the server asks this client to poll less often \
             (RFC 5905 §7.4, RFC 8633 §5.4); wait before querying again"
        }
        KissCode::Deny => "access denied by the server: stop using it (RFC 5905 §7.4)",
        KissCode::Rstr => "access denied by the server's local policy: stop using it (RFC 5905 §7.4)",
        KissCode::Acst => "the association belongs to a unicast server (RFC 5905 §7.4)",
        KissCode::Auth => "server authentication failed (RFC 5905 §7.4)",
        KissCode::Auto => "Autokey sequence failed (RFC 5905 §7.4)",
        KissCode::Bcst => "the association belongs to a broadcast server (RFC 5905 §7.4)",
        KissCode::Cryp => "cryptographic authentication or identification failed (RFC 5905 §7.4)",
        KissCode::Drop => "lost peer in symmetric mode (RFC 5905 §7.4)",
        KissCode::Init => "the server has not synchronized for the first time yet (RFC 5905 §7.4)",
        KissCode::Mcst => "the association belongs to a dynamically discovered server (RFC 5905 §7.4)",
        KissCode::Nkey => "no key found: never installed or not trusted (RFC 5905 §7.4)",
        KissCode::Ntsn => "NTS negative acknowledgement: the cookie could not be used (RFC 8915 §5.7)",
        KissCode::Rmot => "alteration of association from a remote host running ntpdc (RFC 5905 §7.4)",
        KissCode::Step => "the server stepped its clock and has not resynchronized yet (RFC 5905 §7.4)",
        KissCode::Unknown(_) => "an unregistered kiss code: no action defined (RFC 5905 §7.4)",
    }
}

/// The exchanges, after NTS key establishment with `--nts`.
async fn query(args: &QueryArgs) -> Result<(SocketAddr, Vec<Outcome>, Option<Stop>, Option<NtsJson>), CliError> {
    let Some(ke) = &args.nts else {
        let server = args.server.ok_or_else(|| CliError::usage("give a server (IP:PORT) or --nts HOST[:PORT]"))?;
        let (outcomes, stop) = exchange_all(args, server, args.samples.unwrap_or(4), None).await?;
        return Ok((server, outcomes, stop, None));
    };
    let (mut nts, json) = crate::query_nts::establish(args, ke).await?;
    let server = nts.ntp;
    let (outcomes, stop) = exchange_all(args, server, args.samples.unwrap_or(1), Some(&mut nts)).await?;
    let json = NtsJson { cookies_left: nts.cookies_left(), ..json };
    Ok((server, outcomes, stop, Some(json)))
}

async fn exchange_all(
    args: &QueryArgs,
    server: SocketAddr,
    samples: u32,
    mut nts: Option<&mut crate::query_nts::QueryNts>,
) -> Result<(Vec<Outcome>, Option<Stop>), CliError> {
    let local: SocketAddr = match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = TokioNetwork::default()
        .bind(local)
        .await
        .map_err(|e| CliError::internal(format!("cannot open a UDP socket: {e}")))?;
    // Connected: the kernel passes on only the server's datagrams and turns an
    // ICMP port unreachable into ECONNREFUSED on the next receive.
    socket
        .connect(server)
        .await
        .map_err(|e| CliError::input(format!("cannot reach {}: {e}", server)))?;
    let start = std::time::Instant::now();
    let mono = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let mut outcomes = Vec::new();
    // The transmit timestamp of every request sent so far: a reply carrying an
    // earlier one as its origin is a late answer, not this sample's.
    let mut sent_origins: Vec<[u8; 8]> = Vec::new();
    let config = SourceConfig { version: args.version, poll_jitter: false, ..SourceConfig::default() };
    for i in 0..samples {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        }
        let mut source = Source::new(config, mono()).map_err(|e| CliError::internal(e.to_string()))?;
        let mut request = [0u8; 2048];
        let Some(req) = source.handle_timeout(mono(), realtime_now(), nonce(i), &mut request) else {
            return Err(CliError::internal("the client state machine sent nothing"));
        };
        let origin: [u8; 8] = request[40..48].try_into().expect("a request holds a whole header");
        let mut pending = None;
        let bytes = match nts.as_deref_mut() {
            None => request[..req.len].to_vec(),
            Some(n) => {
                let (bytes, p) = n.protect(&request[..req.len])?;
                pending = Some(p);
                bytes
            }
        };
        let sent = match socket.send_to(&bytes, server).await {
            Ok(sent) => sent,
            Err(e) => match unreachable(&e, server) {
                Some(stop) => {
                    outcomes.push(Outcome::failed(Fate::PortUnreachable, stop_text(&stop), Vec::new()));
                    return Ok((outcomes, Some(stop)));
                }
                None => return Err(CliError::input(format!("cannot send to {}: {e}", server))),
            },
        };
        sent_origins.push(origin);
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.timeout);
        let mut discarded: Vec<DiscardJson> = Vec::new();
        let mut buf = [0u8; 2048];
        let outcome = loop {
            let received = match tokio::time::timeout_at(deadline, socket.recv_or_error(&mut buf)).await {
                Err(_) => {
                    break Outcome::failed(Fate::NoReply, format!("no reply within {} s", args.timeout), discarded);
                }
                Ok(Err(e)) => match unreachable(&e, server) {
                    Some(stop) => {
                        let fate = if matches!(stop, Stop::PortUnreachable) { Fate::PortUnreachable } else { Fate::Error };
                        outcomes.push(Outcome::failed(fate, stop_text(&stop), discarded));
                        return Ok((outcomes, Some(stop)));
                    }
                    None => break Outcome::failed(Fate::Error, e.to_string(), discarded),
                },
                Ok(Ok(r)) => r,
            };
            let data = &buf[..received.len];
            if let (Some(n), Some(p)) = (nts.as_deref_mut(), pending.as_ref()) {
                // Only an authentic reply to this request counts; anything else is set aside.
                if let Err(reason) = n.judge(p, data) {
                    count_discard(&mut discarded, reason);
                    continue;
                }
            }
            let answers_us = received.from == server && data.get(24..32) == Some(&origin[..]);
            let rx = received.rx_time.unwrap_or_else(realtime_now);
            let event = if received.from == server {
                source.handle_response(mono(), data, rx, sent.tx_time)
            } else {
                SourceEvent::Rejected(RejectReason::Unsolicited)
            };
            if !answers_us {
                let late = data.get(24..32).is_some_and(|o| sent_origins[..sent_origins.len() - 1].iter().any(|s| s == o));
                let reason = match event {
                    _ if late => "late_reply".to_string(),
                    SourceEvent::Rejected(r) => r.name().to_string(),
                    _ => "unmatched".to_string(),
                };
                count_discard(&mut discarded, reason);
                continue;
            }
            break match event {
                SourceEvent::Sample(m) => Outcome { fate: Fate::Ok, measurement: Some(m), kiss: None, detail: None, discarded },
                SourceEvent::Rejected(reason) => Outcome::failed(
                    Fate::Rejected,
                    format!("reply rejected: {} ({})", reason.name(), reason.rule()),
                    discarded,
                ),
                SourceEvent::RateLimited { poll_log2, .. } => {
                    let detail = format!("kiss-o'-death RATE: poll no faster than 2^{poll_log2} s");
                    outcomes.push(Outcome::kiss(KissCode::Rate, detail, discarded));
                    return Ok((outcomes, Some(Stop::Kiss(KissCode::Rate))));
                }
                SourceEvent::Demobilize(code) => {
                    let detail = format!("kiss-o'-death {}: the server refuses service", code.name());
                    outcomes.push(Outcome::kiss(code, detail, discarded));
                    return Ok((outcomes, Some(Stop::Kiss(code))));
                }
                SourceEvent::NtsNak => Outcome::kiss(KissCode::Ntsn, "kiss-o'-death NTSN".to_string(), discarded),
                SourceEvent::Kiss(code) => {
                    Outcome::kiss(code, format!("kiss-o'-death {}: {}", code.name(), kiss_meaning(code)), discarded)
                }
            };
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, None))
}

impl Outcome {
    fn failed(fate: Fate, detail: String, discarded: Vec<DiscardJson>) -> Self {
        Outcome { fate, measurement: None, kiss: None, detail: Some(detail), discarded }
    }

    fn kiss(code: KissCode, detail: String, discarded: Vec<DiscardJson>) -> Self {
        Outcome { fate: Fate::Kiss, measurement: None, kiss: Some(code), detail: Some(detail), discarded }
    }
}

fn count_discard(list: &mut Vec<DiscardJson>, reason: String) {
    match list.iter_mut().find(|d| d.reason == reason) {
        Some(d) => d.count += 1,
        None => list.push(DiscardJson { reason, count: 1 }),
    }
}

/// An ICMP error reported on the connected socket: nothing more to gain by sending again.
fn unreachable(e: &std::io::Error, server: SocketAddr) -> Option<Stop> {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => Some(Stop::PortUnreachable),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            Some(Stop::Unreachable(format!("{server} is unreachable: {e}")))
        }
        _ => None,
    }
}

fn stop_text(stop: &Stop) -> String {
    match stop {
        Stop::PortUnreachable => "port unreachable (ICMP): nothing listens there".to_string(),
        Stop::Unreachable(why) => why.clone(),
        Stop::Kiss(code) => format!("kiss-o'-death {}", code.name()),
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
