//! `ntplab probe`: black-box conformance test of any NTP server.
//!
//! The cases, their judges and the pacer are sans-IO in
//! `ntplab_conformance::probe`; this is the driver: it resolves the target
//! (loopback only unless `--allow-remote`), opens one connected UDP socket,
//! runs each selected case step by step under the pacer (at most `--rate`
//! datagrams per second outside the one bounded burst, at most
//! `--max-packets` datagrams and `--max-seconds` in all; an NTS-KE
//! connection counts as one datagram), records every datagram (for the
//! evidence and `probe.pcap`), and writes the reports. The NTS-KE cases
//! connect to `--nts-ke` (default: the target's address, port 4460) over
//! [`crate::probe_ke`]; the NTS cases send their protected requests to the
//! target.
//!
//! Exit status: 0 no MUST failed; 1 a MUST requirement failed; 2 usage (a
//! non-loopback target without `--allow-remote`, an unknown group); 3
//! internal or I/O; 5 no reply at all (nothing listens, or everything was
//! dropped), [`EXIT_NO_REPLY`].

use crate::cli::{CliError, OutputFormat};
use crate::decode::report::{decode_any, Pivot};
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::probe::pacer::{Pacer, PacerConfig};
use ntplab_conformance::probe::{self, report, CaseResult, Gen, Group, ProbeResult, ReceivedDatagram, SentDatagram, StepRecord};
use ntplab_daemon::net::{DatagramSocket, Network, TokioNetwork};
use ntplab_daemon::sysclock::realtime_now;
use ntplab_proto::time::NtpTime;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Exit status when the server sent nothing back at all (or an ICMP port
/// unreachable came back): distinct from a failed requirement (1), as
/// `ntplab query` keeps 4 for a kiss-o'-death.
pub const EXIT_NO_REPLY: u8 = 5;

/// Arguments of `ntplab probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The server: IP, IP:PORT, [IPv6]:PORT or HOST[:PORT] (port 123 if none).
    pub target: String,
    /// Run only these groups (comma-separated): ntpv4, nts-ke, nts, ntpv5.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    pub only: Vec<String>,
    /// Write the reports (summary.txt, report.json, junit.xml, verdicts.txt,
    /// evidence/CASE.txt) and probe.pcap here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Allow a target that is not a loopback address (only servers you run or may test).
    #[arg(long)]
    pub allow_remote: bool,
    /// Paced datagrams per second (1-100); the rate-limit case's one burst of
    /// 16 comes on top, fenced by a quiet second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rate: u32,
    /// Seconds to wait for replies after each step (0.05-10).
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Most datagrams to send in all (the run stops there).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_packets: u32,
    /// Most seconds the run may take (it stops there).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_seconds: u64,
    /// The NTS-KE server for the nts-ke and nts groups: HOST[:PORT] (default:
    /// the target's address, port 4460). Its host is the TLS server name.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub nts_ke: Option<String>,
    /// PEM file of certificates to trust for NTS-KE; without it any
    /// certificate is accepted (the probe judges NTS, not the server's PKI).
    #[arg(long, value_name = "PEM")]
    pub trusted_certificates: Option<PathBuf>,
}

/// `HOST`, `HOST:PORT`, `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`: the host
/// (an address without brackets) and the port if given.
fn split_host_port(text: &str) -> (String, Option<u16>) {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return (a.ip().to_string(), Some(a.port()));
    }
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return (ip.to_string(), None);
    }
    match text.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
        _ => (text.to_string(), None),
    }
}

/// The default NTS-KE port (RFC 8915 §4).
pub const NTS_KE_PORT: u16 = 4460;

/// The NTS-KE target: `--nts-ke` or the NTP target's address on port 4460,
/// loopback unless `--allow-remote`.
fn ke_target(args: &ProbeArgs, target: SocketAddr) -> Result<crate::probe_ke::KeTarget, CliError> {
    let (host, port) = match &args.nts_ke {
        None => (target.ip().to_string(), NTS_KE_PORT),
        Some(text) => {
            let (host, port) = split_host_port(text);
            (host, port.unwrap_or(NTS_KE_PORT))
        }
    };
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => resolve(&format!("{host}:{port}")).map_err(|e| CliError::usage(format!("--nts-ke: {}", e.message)))?,
    };
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(CliError::usage(format!("--nts-ke {addr} is not a loopback address: give --allow-remote if you run this server or may test it")));
    }
    crate::probe_ke::KeTarget::new(addr, &host, format!("{host} ({addr})"), args.trusted_certificates.as_deref())
        .map_err(|e| CliError::usage(format!("NTS-KE: {e}")))
}

/// Runs `ntplab probe`.
pub fn run(args: &ProbeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !(args.timeout.is_finite() && (0.05..=10.0).contains(&args.timeout)) {
        return Err(CliError::usage("--timeout must be between 0.05 and 10 seconds"));
    }
    let groups = select_groups(&args.only)?;
    let target = resolve(&args.target)?;
    if !target.ip().is_loopback() && !args.allow_remote {
        return Err(CliError::usage(format!(
            "{target} is not a loopback address: probing sends crafted and malformed packets and a burst; \
             give --allow-remote if you run this server or may test it"
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
    let config = PacerConfig { rate: args.rate, packets_max: args.max_packets, wall_ns_max: args.max_seconds * 1_000_000_000, ..PacerConfig::default() };
    let ke = if groups.iter().any(|g| g.name.starts_with("nts")) { Some(ke_target(args, target)?) } else { None };
    let (cases, stopped, local, unreachable) = runtime.block_on(drive(target, ke.as_ref(), &groups, config, Duration::from_secs_f64(args.timeout)))?;
    let mut cases = cases;
    if groups.iter().any(|g| g.name == "ntpv4") {
        cases.push(probe::overall_case(&cases));
    }
    let result = ProbeResult::new(&Catalog::builtin(), target.to_string(), &groups, cases, stopped.or(unreachable.clone()));
    let decoder = |b: &[u8]| decode_text(b);
    if let Some(dir) = &args.report {
        report::write_all(dir, &result, &decoder).map_err(CliError::internal)?;
        write_pcap(&dir.join("probe.pcap"), &result, local, target)?;
    }
    let text = match args.format {
        OutputFormat::Text => report::text(&result),
        OutputFormat::Json => report::json(&result, &decoder),
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)?;
    if result.received == 0 {
        let why = unreachable.unwrap_or_else(|| format!("none of {} datagrams got a reply", result.sent));
        return Err(CliError { code: EXIT_NO_REPLY, message: format!("no reply at all from {target}: {why}") });
    }
    let fails = result.must_failures();
    if !fails.is_empty() {
        let ids: Vec<&str> = fails.iter().map(|q| q.id.as_str()).collect();
        return Err(CliError::input(format!("{target}: {} MUST requirement(s) failed: {}", ids.len(), ids.join(", "))));
    }
    Ok(())
}

fn select_groups(only: &[String]) -> Result<Vec<&'static Group>, CliError> {
    if only.is_empty() {
        return Ok(probe::GROUPS.iter().collect());
    }
    let mut out = Vec::new();
    for name in only {
        let g = probe::group(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = probe::GROUPS.iter().map(|g| g.name).collect();
            CliError::usage(format!("--only: unknown group {name:?}; groups: {}", known.join(", ")))
        })?;
        if !out.iter().any(|x: &&Group| x.name == g.name) {
            out.push(g);
        }
    }
    if out.iter().all(|g| g.cases.is_empty()) {
        return Err(CliError::usage(format!(
            "--only {}: no cases to run ({})",
            only.join(","),
            probe::GROUP_NOT_IMPLEMENTED
        )));
    }
    Ok(out)
}

/// `IP`, `IP:PORT`, `[V6]:PORT`, `HOST` or `HOST:PORT`; port 123 by default.
fn resolve(text: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 123));
    }
    let with_port = if text.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { text.to_string() } else { format!("{text}:123") };
    with_port
        .to_socket_addrs()
        .map_err(|e| CliError::usage(format!("cannot resolve {text:?}: {e}")))?
        .next()
        .ok_or_else(|| CliError::usage(format!("{text:?} resolves to no address")))
}

type Driven = (Vec<CaseResult>, Option<String>, SocketAddr, Option<String>);

async fn drive(target: SocketAddr, ke: Option<&crate::probe_ke::KeTarget>, groups: &[&'static Group], config: PacerConfig, timeout: Duration) -> Result<Driven, CliError> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = TokioNetwork::default().bind(bind).await.map_err(|e| CliError::internal(format!("cannot open a UDP socket: {e}")))?;
    socket.connect(target).await.map_err(|e| CliError::input(format!("cannot reach {target}: {e}")))?;
    let local = socket.local_addr().map_err(|e| CliError::internal(e.to_string()))?;
    let start = std::time::Instant::now();
    let mono = || start.elapsed().as_nanos() as u64;
    let mut pacer = Pacer::new(config, mono());
    let mut seed = nonce_seed();
    let mut results = Vec::new();
    let mut stopped = None;
    let mut unreachable = None;
    let mut buf = vec![0u8; 65_536];
    'cases: for group in groups {
        for case in group.cases {
            let case_start = std::time::Instant::now();
            let mut history: Vec<StepRecord> = Vec::new();
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut gen = Gen::new(realtime_now(), seed);
            while history.len() < case.steps_max {
                gen.now = realtime_now();
                let Some(step) = (case.plan)(&history, &mut gen) else { break };
                let mut rec = StepRecord::default();
                if let Some(attempt) = &step.ke {
                    // One NTS-KE connection counts as one datagram for the pacer.
                    let at = match pacer.next_send(mono()) {
                        Ok(at) => at,
                        Err(e) => {
                            stopped = Some(e.to_string());
                            results.push(CaseResult::judge(group.name, case, history, case_start.elapsed().as_secs_f64()));
                            break 'cases;
                        }
                    };
                    let now = mono();
                    if at > now {
                        tokio::time::sleep(Duration::from_nanos(at - now)).await;
                    }
                    rec.ke = Some(match ke {
                        Some(ke) => ke.attempt(attempt, timeout).await,
                        None => ntplab_conformance::probe::KeRecord {
                            server: String::new(),
                            tls_version: None,
                            alpn: None,
                            response: Vec::new(),
                            end: ntplab_conformance::probe::KeEnd::NoSession("no NTS-KE server configured".into()),
                            keys: None,
                        },
                    });
                    pacer.sent(mono());
                    history.push(rec);
                    continue;
                }
                if step.burst {
                    pacer.begin_burst(step.requests.len() as u32, mono());
                }
                let mut allowed = step.requests.len();
                if step.burst {
                    allowed = allowed.min(pacer.config().burst_max as usize);
                }
                for req in step.requests.iter().take(allowed) {
                    let at = match pacer.next_send(mono()) {
                        Ok(at) => at,
                        Err(e) => {
                            stopped = Some(e.to_string());
                            history.push(rec);
                            results.push(CaseResult::judge(group.name, case, history, case_start.elapsed().as_secs_f64()));
                            break 'cases;
                        }
                    };
                    let now = mono();
                    if at > now {
                        tokio::time::sleep(Duration::from_nanos(at - now)).await;
                    }
                    let sent_at = realtime_now();
                    let sent = socket.send_to(req, target).await;
                    pacer.sent(mono());
                    match sent {
                        Ok(s) => rec.sent.push(SentDatagram { bytes: req.clone(), sent: s.tx_time.unwrap_or(sent_at) }),
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            unreachable = Some(format!("port unreachable (ICMP): nothing listens on {target}"));
                            rec.sent.push(SentDatagram { bytes: req.clone(), sent: sent_at });
                        }
                        Err(e) => return Err(CliError::input(format!("cannot send to {target}: {e}"))),
                    }
                }
                collect(&socket, &mut buf, &mut rec, step.expect, timeout, &mut unreachable, target).await;
                history.push(rec);
                if unreachable.is_some() {
                    results.push(CaseResult::judge(group.name, case, history, case_start.elapsed().as_secs_f64()));
                    break 'cases;
                }
            }
            results.push(CaseResult::judge(group.name, case, history, case_start.elapsed().as_secs_f64()));
        }
    }
    Ok((results, stopped, local, unreachable))
}

/// Collects the replies of one step: until `timeout` passes, or — when
/// `expect` replies are in — a short grace later (for extra datagrams).
async fn collect(
    socket: &ntplab_daemon::net::TimestampedSocket,
    buf: &mut [u8],
    rec: &mut StepRecord,
    expect: Option<usize>,
    timeout: Duration,
    unreachable: &mut Option<String>,
    target: SocketAddr,
) {
    const GRACE: Duration = Duration::from_millis(30);
    let mut deadline = tokio::time::Instant::now() + timeout;
    // Bounded: one reply per loop, and at most 64 per step are kept.
    while rec.replies.len() < 64 {
        match tokio::time::timeout_at(deadline, socket.recv_or_error(buf)).await {
            Err(_) => return,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                *unreachable = Some(format!("port unreachable (ICMP): nothing listens on {target}"));
                return;
            }
            Ok(Err(_)) => continue,
            Ok(Ok(r)) => {
                let bytes = buf.get(..r.len).unwrap_or(&[]).to_vec();
                rec.replies.push(ReceivedDatagram { bytes, received: r.rx_time.unwrap_or_else(realtime_now) });
                if expect.is_some_and(|n| rec.replies.len() >= n) {
                    deadline = deadline.min(tokio::time::Instant::now() + GRACE);
                }
            }
        }
    }
}

/// A datagram as text for the evidence: the decoder's Wireshark-like view.
fn decode_text(bytes: &[u8]) -> String {
    match decode_any(bytes, Pivot::Near(realtime_now()), false) {
        Ok(d) => d.to_text(),
        Err(e) => format!("not decodable as NTP: {e}"),
    }
}

/// Every datagram of the run, in time order, as `probe.pcap`.
fn write_pcap(path: &std::path::Path, r: &ProbeResult, local: SocketAddr, target: SocketAddr) -> Result<(), CliError> {
    let mut frames: Vec<(NtpTime, bool, &[u8])> = Vec::new();
    for s in r.cases.iter().flat_map(|c| &c.steps) {
        frames.extend(s.sent.iter().map(|d| (d.sent, true, d.bytes.as_slice())));
        frames.extend(s.replies.iter().map(|d| (d.received, false, d.bytes.as_slice())));
    }
    frames.sort_by_key(|f| f.0);
    let err = |e: std::io::Error| CliError::internal(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(err)?;
    let mut pcap = ntplab_sim::trace::PcapFrames::new(std::io::BufWriter::new(file)).map_err(err)?;
    for (at, outbound, bytes) in frames {
        let (src, dst) = if outbound { (local, target) } else { (target, local) };
        pcap.write(at, src, dst, bytes).map_err(err)?;
    }
    pcap.finish().map_err(err)?;
    Ok(())
}

/// Seed for the low bits of transmit timestamps: unpredictable enough for a
/// probe (time and process id hashed).
fn nonce_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(realtime_now().to_timestamp().to_bits());
    h.finish()
}
