//! `ntplab bench server ADDR:PORT`: a load generator that measures how many NTP
//! client requests a server answers, how many it loses, and how long answers take.
//!
//! # What it does
//!
//! It sends NTPv4 client-mode requests (48 octets, mode 3, each with a random
//! 64-bit transmit timestamp) from `--clients` UDP sockets in turn, either at a
//! fixed `--rate` or as fast as possible with at most `--window` requests in
//! flight. A reply counts as a *response* when it decodes, is mode 4, is not a
//! kiss-o'-death, and its origin timestamp equals the transmit timestamp of a
//! request still waiting; the round trip is then taken from the bench's own
//! monotonic clock (send: just before `send`; receive: just after `recv`). A
//! request unanswered after `--timeout-ms` is given up (which frees its window
//! slot); a reply to a given-up request is *late*; a reply that matches nothing
//! (duplicate, stray) is *unmatched*. After the send phase the bench waits up to
//! `--timeout-ms` more for replies still in flight; what is still unanswered
//! then is *lost*: `lost = sent - responses - kiss-o'-death - late`.
//!
//! The run is bounded by `--duration` (at most 60 s) and optionally `--count`;
//! every loop and wait below has a deadline, so the command always ends.
//!
//! # Design: two threads, blocking on the kernel, no async runtime
//!
//! * The **sender** (the calling thread) paces requests against an absolute
//!   schedule (`start + n / rate`) with `thread::sleep`, so sleep overshoot
//!   (about 50–100 µs of timer slack) only bunches sends into short bursts and
//!   does not lower the average rate; if it falls more than 10 ms behind (the
//!   machine cannot keep up) it drops the backlog instead of bursting, and the
//!   shortfall shows as `sent/s` below `--rate`. In window mode it waits on a
//!   condition variable that the receiver signals when a slot frees.
//! * The **receiver** thread blocks in one `epoll` wait over all client sockets
//!   (through `mio`, a thin, safe wrapper) and reads the monotonic clock right
//!   after each `recv`, so a reply's time is not delayed by a timer tick, a
//!   runtime's task scheduling or a sleep of the sender.
//!
//! Why not tokio: its timers have 1 ms granularity and a reply is stamped only
//! when its task is polled, which adds scheduler noise to microsecond loopback
//! round trips; a single thread doing both sides would likewise stamp replies
//! late whenever it sleeps for pacing. Two threads match the two cores of a
//! small machine (and leave the server under test the rest). The client
//! sockets are `connect`ed to the target, so the kernel drops datagrams from
//! anyone else and reports ICMP port-unreachable (no server listening).
//!
//! Latency percentiles come from a log-linear histogram (exact below 128 ns,
//! within 1/64 relative error above), so memory does not grow with the run.
//!
//! With `--nts-ke` every request is NTS-protected and a reply is judged by
//! its socket's NTS session before it is matched: see [`crate::bench_nts`].
//!
//! Safety on shared machines: a target (or NTS-KE server) that is not a
//! loopback address is refused unless `--allow-remote` is given.

use crate::bench_nts::{Judgement, NtsClients, NtsKe, NtsReport};
use crate::cli::{CliError, OutputFormat};
use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::wire::v4::{self, LeapIndicator, Mode};
use ntplab_proto::wire::{self, Header};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest run `--duration` accepts, in seconds.
pub const DURATION_S_MAX: f64 = 60.0;
/// In-flight limit when neither `--rate` nor `--window` is given.
pub const WINDOW_DEFAULT: usize = 64;
/// How far the paced sender may fall behind its schedule before it drops the backlog.
const BACKLOG_MAX: Duration = Duration::from_millis(10);
/// How long given-up requests are remembered to recognise late replies, in timeouts.
const LATE_HORIZON_TIMEOUTS: u64 = 10;
/// At most this many given-up requests are remembered (bounds memory at high rates).
const LATE_REMEMBERED_MAX: usize = 1 << 20;
/// The receiver wakes at least this often to check whether the run is over.
const RECV_POLL: Duration = Duration::from_millis(20);
/// First rate of a `--ramp` without `--rate`, requests/s.
const RAMP_START: f64 = 1000.0;
/// Most steps of a `--ramp`.
const RAMP_STEPS_MAX: usize = 30;
/// Rate factor from one ramp step to the next (ntpperf's default).
const RAMP_FACTOR: f64 = 1.5;
/// Consecutive send errors (other than a full send buffer) after which the run stops.
const SEND_ERRORS_CONSECUTIVE_MAX: u32 = 1000;

/// Arguments of `ntplab bench server`.
#[derive(clap::Args, Debug)]
pub struct BenchServerArgs {
    /// The server to load, as ADDR:PORT (e.g. 127.0.0.1:123, [::1]:123, localhost:123).
    #[arg(value_name = "ADDR:PORT")]
    pub target: String,
    /// Number of client UDP sockets (source ports) to spread requests over.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub clients: u16,
    /// Requests per second (default: as fast as possible, with at most --window in flight).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Most requests in flight at once (default: 64 without --rate, unlimited with it).
    #[arg(long, value_name = "W")]
    pub window: Option<usize>,
    /// How long to send, in seconds (at most 60).
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after sending this many requests (the --duration bound still applies).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Give up on a request after this many milliseconds; also the final drain wait.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub timeout_ms: u64,
    /// Allow a target that is not a loopback address (only for servers you operate).
    #[arg(long)]
    pub allow_remote: bool,
    /// Send each client socket's requests from its own address, 127.1.x.y
    /// (IPv4 loopback targets only): a server's per-client tables then see
    /// `--clients` clients, as with ntpperf's range of source addresses.
    #[arg(long)]
    pub spread_sources: bool,
    /// Open-loop ramp like ntpperf's: from `--rate` (default 1000/s) up by
    /// x1.5 per step of `--duration` seconds, until fewer than half the
    /// requests are answered, the bench itself sends less than half the
    /// rate, or after 30 steps; reports each step and the
    /// highest rate with at least 99 % responses.
    #[arg(long)]
    pub ramp: bool,
    /// NTS (RFC 8915): before sending, one NTS-KE with this server
    /// (HOST[:PORT], port 4460 by default) per client socket (per step with
    /// --ramp); then every request carries that socket's cookie and
    /// authenticator, and only replies that authenticate count as
    /// responses. The NTP server the KE names must be ADDR:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub nts_ke: Option<String>,
    /// PEM file of the certificates to trust for --nts-ke (default: the system's store).
    #[arg(long, value_name = "FILE", requires = "nts_ke")]
    pub trusted_certificates: Option<std::path::PathBuf>,
    /// AEAD to offer with --nts-ke, by ID (15 AES-SIV-CMAC-256, 30
    /// AES-128-GCM-SIV, 17 AES-SIV-CMAC-512); repeat for several, most
    /// preferred first (default: 15, 30, 17).
    #[arg(long = "aead", value_name = "ID", requires = "nts_ke")]
    pub aeads: Vec<u16>,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// The checked settings of one run.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    target: SocketAddr,
    clients: usize,
    spread_sources: bool,
    rate_per_s: Option<f64>,
    window: Option<usize>,
    duration: Duration,
    count: Option<u64>,
    timeout: Duration,
}

impl Plan {
    fn from_args(args: &BenchServerArgs) -> Result<Plan, CliError> {
        let target = parse_target(&args.target)?;
        if !is_loopback(target.ip()) && !args.allow_remote {
            return Err(CliError::usage(format!(
                "refusing to load {target}: it is not a loopback address, and a load test can \
                 disrupt a server and the network it shares; pass --allow-remote only for a \
                 server you operate"
            )));
        }
        if !(args.duration > 0.0 && args.duration <= DURATION_S_MAX) {
            return Err(CliError::usage(format!(
                "--duration {}: must be more than 0 and at most {DURATION_S_MAX} seconds",
                args.duration
            )));
        }
        if let Some(r) = args.rate {
            if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
                return Err(CliError::usage(format!("--rate {r}: must be more than 0 and at most 10000000 requests/s")));
            }
        }
        if let Some(w) = args.window {
            if !(1..=1_000_000).contains(&w) {
                return Err(CliError::usage(format!("--window {w}: must be 1 to 1000000")));
            }
        }
        if args.spread_sources && !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return Err(CliError::usage(format!("--spread-sources: {target} is not an IPv4 loopback address")));
        }
        if args.ramp && args.window.is_some() {
            return Err(CliError::usage("--ramp is open-loop: it takes no --window"));
        }
        if args.count == Some(0) {
            return Err(CliError::usage("--count 0: must be at least 1"));
        }
        if !(1..=10_000).contains(&args.timeout_ms) {
            return Err(CliError::usage(format!("--timeout-ms {}: must be 1 to 10000", args.timeout_ms)));
        }
        let window = match (args.rate, args.window) {
            (None, None) if !args.ramp => Some(WINDOW_DEFAULT),
            (_, w) => w,
        };
        Ok(Plan {
            target,
            clients: usize::from(args.clients),
            spread_sources: args.spread_sources,
            rate_per_s: if args.ramp { Some(args.rate.unwrap_or(RAMP_START)) } else { args.rate },
            window,
            duration: Duration::from_secs_f64(args.duration),
            count: args.count,
            timeout: Duration::from_millis(args.timeout_ms),
        })
    }
}

/// Parses ADDR:PORT; `localhost` means 127.0.0.1 (no name lookups are made).
fn parse_target(s: &str) -> Result<SocketAddr, CliError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    Err(CliError::usage(format!(
        "target '{s}': expected ADDR:PORT with an IP address, e.g. 127.0.0.1:123 or [::1]:123"
    )))
}

/// 127.0.0.0/8, ::1, and IPv4-mapped 127.0.0.0/8.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// A small non-cryptographic generator (SplitMix64) for request transmit timestamps.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Seeded from the process's per-run hash keys (which std draws from the OS).
    fn from_os() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6e74_706c_6162); // "ntplab"
        SplitMix64(h.finish())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// An NTPv4 client request (RFC 5905 §7.3, mode 3) whose only non-constant
/// field is the transmit timestamp, by which its reply is matched.
pub(crate) fn build_request(transmit: u64) -> [u8; v4::HEADER_LEN] {
    v4::Repr {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Client,
        stratum: 0,
        poll: 0,
        precision: 0,
        root_delay: wire::short::NtpShort::ZERO,
        root_dispersion: wire::short::NtpShort::ZERO,
        reference_id: wire::refid::ReferenceId::NONE,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::ZERO,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: NtpTimestamp::from_bits(transmit),
    }
    .to_bytes()
}

/// What became of one received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A mode-4 answer to a waiting request; round trip in nanoseconds.
    Response { rtt_ns: u64 },
    /// A kiss-o'-death answer to a waiting request, with its code.
    KissOfDeath { code: String },
    /// A mode-4 answer to a request already given up; round trip in nanoseconds.
    Late { rtt_ns: u64 },
    /// A mode-4 answer whose origin matches no request (duplicate or stray).
    Unmatched,
    /// With NTS: it answers a waiting request but does not authenticate
    /// (or came to another socket); the request keeps waiting.
    Unauthenticated,
    /// Not decodable as NTP, not NTPv4 layout, or not mode 4.
    Invalid,
}

/// Outstanding requests and counts: the bench's bookkeeping, free of clocks
/// and sockets. Times are nanoseconds since the start of the run.
#[derive(Debug)]
pub(crate) struct Tracker {
    timeout_ns: u64,
    /// Waiting requests: transmit timestamp -> send time.
    waiting: HashMap<u64, u64>,
    /// (send time, transmit timestamp) in send order, for expiry; may hold answered ones.
    waiting_order: VecDeque<(u64, u64)>,
    /// Given-up requests, to recognise late replies: transmit timestamp -> send time.
    given_up: HashMap<u64, u64>,
    given_up_order: VecDeque<(u64, u64)>,
    pub(crate) sent: u64,
    pub(crate) responses: u64,
    pub(crate) kiss_o_death: BTreeMap<String, u64>,
    pub(crate) late: u64,
    pub(crate) unmatched: u64,
    pub(crate) invalid: u64,
    pub(crate) latency: LatencyHistogram,
    /// With NTS: the sessions and what each request sent.
    nts: Option<NtsClients>,
}

/// Why [`Tracker::prepare`] made no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The transmit timestamp is in use: draw another.
    InUse,
    /// NTS: the socket's cookie jar is empty.
    NoCookie,
}

impl Tracker {
    /// Bookkeeping for NTS requests: `nts` protects and judges them.
    pub(crate) fn with_nts(timeout: Duration, nts: NtsClients) -> Self {
        Tracker { nts: Some(nts), ..Tracker::new(timeout) }
    }

    /// Registers a request from client socket `socket` with transmit
    /// timestamp `transmit` and returns the octets to send: the plain
    /// request, or with NTS its protected form.
    pub(crate) fn prepare(&mut self, socket: usize, transmit: u64, now_ns: u64) -> Result<Vec<u8>, Refused> {
        if transmit == 0 || !self.register(transmit, now_ns) {
            return Err(Refused::InUse);
        }
        let plain = build_request(transmit);
        let Some(nts) = &mut self.nts else { return Ok(plain.to_vec()) };
        match nts.protect(socket, transmit, &plain) {
            Some(bytes) => Ok(bytes),
            None => {
                self.unregister(transmit);
                Err(Refused::NoCookie)
            }
        }
    }

    /// Classifies and counts a datagram that arrived on client socket
    /// `socket`; with NTS it must authenticate first (see [`NtsClients::judge`]).
    pub(crate) fn on_datagram_from(&mut self, socket: usize, datagram: &[u8], now_ns: u64) -> Reply {
        let Some(nts) = &mut self.nts else { return self.on_datagram(datagram, now_ns) };
        match nts.judge(socket, datagram) {
            // Only the header: the NTS fields have been judged.
            Judgement::Echoed => self.on_datagram(&datagram[..v4::HEADER_LEN], now_ns),
            Judgement::Unauthenticated => Reply::Unauthenticated,
            // No request remembered: whatever it is, it answers nothing waiting.
            Judgement::NotPending => self.on_datagram(&datagram[..datagram.len().min(v4::HEADER_LEN)], now_ns),
        }
    }

    /// What NTS did so far, with NTS.
    pub(crate) fn nts_report(&self) -> Option<NtsReport> {
        self.nts.as_ref().map(NtsClients::finish)
    }

    /// NTS requests remembered.
    #[cfg(test)]
    pub(crate) fn nts_remembered(&self) -> usize {
        self.nts.as_ref().map_or(0, NtsClients::remembered)
    }

    pub(crate) fn new(timeout: Duration) -> Self {
        Tracker {
            timeout_ns: duration_ns(timeout),
            waiting: HashMap::new(),
            waiting_order: VecDeque::new(),
            given_up: HashMap::new(),
            given_up_order: VecDeque::new(),
            sent: 0,
            responses: 0,
            kiss_o_death: BTreeMap::new(),
            late: 0,
            unmatched: 0,
            invalid: 0,
            latency: LatencyHistogram::new(),
            nts: None,
        }
    }

    /// Records a request about to be sent. False (and nothing recorded) if
    /// its transmit timestamp is already waiting or given up: draw another.
    pub(crate) fn register(&mut self, transmit: u64, now_ns: u64) -> bool {
        if self.waiting.contains_key(&transmit) || self.given_up.contains_key(&transmit) {
            return false;
        }
        self.waiting.insert(transmit, now_ns);
        self.waiting_order.push_back((now_ns, transmit));
        self.sent += 1;
        true
    }

    /// Takes back a request whose send failed.
    pub(crate) fn unregister(&mut self, transmit: u64) {
        if self.waiting.remove(&transmit).is_some() {
            self.sent -= 1;
        }
        if let Some(nts) = &mut self.nts {
            nts.forget(transmit);
        }
    }

    /// Requests waiting for an answer.
    pub(crate) fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// When the oldest waiting request will be given up, if any waits.
    pub(crate) fn next_expiry_ns(&mut self) -> Option<u64> {
        while let Some(&(_, t)) = self.waiting_order.front() {
            if self.waiting.contains_key(&t) {
                break;
            }
            self.waiting_order.pop_front();
        }
        self.waiting_order.front().map(|&(sent_ns, _)| sent_ns.saturating_add(self.timeout_ns))
    }

    /// Gives up requests sent `timeout` or more before `now_ns`, and forgets
    /// given-up requests older than the late horizon.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        while let Some(&(sent_ns, t)) = self.waiting_order.front() {
            if now_ns.saturating_sub(sent_ns) < self.timeout_ns {
                break;
            }
            self.waiting_order.pop_front();
            if self.waiting.remove(&t).is_some() {
                self.given_up.insert(t, sent_ns);
                self.given_up_order.push_back((sent_ns, t));
            }
        }
        let horizon_ns = self.timeout_ns.saturating_mul(LATE_HORIZON_TIMEOUTS);
        while let Some(&(sent_ns, t)) = self.given_up_order.front() {
            if now_ns.saturating_sub(sent_ns) < horizon_ns && self.given_up_order.len() <= LATE_REMEMBERED_MAX {
                break;
            }
            self.given_up_order.pop_front();
            self.given_up.remove(&t);
            if let Some(nts) = &mut self.nts {
                nts.forget(t);
            }
        }
    }

    /// Classifies and counts one received datagram.
    pub(crate) fn on_datagram(&mut self, datagram: &[u8], now_ns: u64) -> Reply {
        let reply = self.classify(datagram, now_ns);
        match &reply {
            Reply::Response { rtt_ns } => {
                self.responses += 1;
                self.latency.record(*rtt_ns);
            }
            Reply::KissOfDeath { code } => *self.kiss_o_death.entry(code.clone()).or_default() += 1,
            Reply::Late { .. } => self.late += 1,
            Reply::Unmatched => self.unmatched += 1,
            Reply::Invalid => self.invalid += 1,
            // Counted by the NTS clients.
            Reply::Unauthenticated => {}
        }
        reply
    }

    fn classify(&mut self, datagram: &[u8], now_ns: u64) -> Reply {
        let Ok(packet) = wire::parse_packet(datagram) else { return Reply::Invalid };
        let Header::V4(header) = packet.header else { return Reply::Invalid };
        if header.mode != Mode::Server {
            return Reply::Invalid;
        }
        let origin = header.origin_timestamp.to_bits();
        if let Some(sent_ns) = self.waiting.remove(&origin) {
            if header.is_kiss_of_death() {
                return Reply::KissOfDeath { code: header.reference_id.kiss_code().name() };
            }
            return Reply::Response { rtt_ns: now_ns.saturating_sub(sent_ns) };
        }
        if let Some(sent_ns) = self.given_up.remove(&origin) {
            return Reply::Late { rtt_ns: now_ns.saturating_sub(sent_ns) };
        }
        Reply::Unmatched
    }

    /// Answered requests: responses, kiss-o'-death replies and late replies.
    pub(crate) fn answered(&self) -> u64 {
        self.responses + self.kiss_o_death.values().sum::<u64>() + self.late
    }
}

/// Round-trip times in a log-linear histogram: values below 128 ns are kept
/// exactly; above, each power of two is split into 64 buckets, so a reported
/// percentile is within 1/64 (1.6 %) of the true sample value.
#[derive(Clone, Debug)]
pub(crate) struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

const EXACT_BELOW: u64 = 128;
const SUB_BUCKETS: usize = 64;
const BUCKETS: usize = EXACT_BELOW as usize + 57 * SUB_BUCKETS;

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        LatencyHistogram { buckets: vec![0; BUCKETS], count: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0 }
    }

    fn bucket_of(v: u64) -> usize {
        if v < EXACT_BELOW {
            return v as usize;
        }
        let exponent = 63 - v.leading_zeros(); // at least 7
        let shift = exponent - 6;
        let mantissa = (v >> shift) as usize; // 64..=127
        EXACT_BELOW as usize + (shift as usize - 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)
    }

    /// The lowest and highest value a bucket holds.
    fn bucket_bounds(index: usize) -> (u64, u64) {
        if index < EXACT_BELOW as usize {
            return (index as u64, index as u64);
        }
        let k = index - EXACT_BELOW as usize;
        let shift = (k / SUB_BUCKETS + 1) as u32;
        let low = ((k % SUB_BUCKETS + SUB_BUCKETS) as u64) << shift;
        (low, low + ((1u64 << shift) - 1))
    }

    pub(crate) fn record(&mut self, v_ns: u64) {
        self.buckets[Self::bucket_of(v_ns)] += 1;
        self.count += 1;
        self.min_ns = self.min_ns.min(v_ns);
        self.max_ns = self.max_ns.max(v_ns);
        self.sum_ns += u128::from(v_ns);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank percentile `p` (0 < p <= 100): the sample at rank
    /// ceil(p/100 * n), as its bucket's midpoint within [min, max]. None if empty.
    pub(crate) fn percentile_ns(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if p >= 100.0 {
            return Some(self.max_ns);
        }
        let rank = ((p / 100.0 * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = Self::bucket_bounds(i);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min_ns, self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    pub(crate) fn min_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_ns)
    }

    pub(crate) fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The bench's monotonic clock: nanoseconds since the run began.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // the bench is an adapter: it owns its clock
    fn start() -> Self {
        Clock { start: Instant::now() }
    }

    fn now_ns(&self) -> u64 {
        duration_ns(self.start.elapsed())
    }
}

/// State shared by the sender and the receiver.
struct Shared {
    tracker: Mutex<Tracker>,
    /// Signalled when a window slot frees (only while the sender waits).
    slot_freed: Condvar,
    /// Set when the sender waits for a free slot.
    sender_waiting: std::sync::atomic::AtomicBool,
    /// Nanoseconds at which sending ended (u64::MAX while sending).
    send_end_ns: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // A panic in the other thread is reported by join; the counts stay usable.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts kept by the sender and receiver beside the tracker.
#[derive(Debug, Default)]
struct IoCounts {
    send_errors: u64,
    send_buffer_full: u64,
    icmp_unreachable: u64,
    recv_errors: u64,
    first_error: Option<String>,
}

/// The report of one run (the JSON form; the text form shows the same).
#[derive(Serialize, Debug)]
pub(crate) struct BenchReport {
    pub target: String,
    pub clients: usize,
    pub rate_per_s: Option<f64>,
    pub window: Option<usize>,
    pub timeout_ms: u64,
    /// Length of the send phase.
    pub send_s: f64,
    /// Length of the final wait for replies.
    pub drain_s: f64,
    pub sent: u64,
    pub sent_per_s: f64,
    pub responses: u64,
    pub responses_per_s: f64,
    pub kiss_o_death: BTreeMap<String, u64>,
    pub late: u64,
    pub unmatched: u64,
    pub invalid: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub send_errors: u64,
    pub send_buffer_full: u64,
    pub icmp_unreachable: u64,
    pub latency_us: LatencyReport,
    /// With --nts-ke: the key establishments and what NTS refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nts: Option<NtsReport>,
}

/// Round-trip times of responses in microseconds (null when there were none).
#[derive(Serialize, Debug)]
pub(crate) struct LatencyReport {
    pub count: u64,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

impl LatencyReport {
    pub(crate) fn from_histogram(h: &LatencyHistogram) -> Self {
        let us = |ns: Option<u64>| ns.map(|v| v as f64 / 1000.0);
        LatencyReport {
            count: h.count(),
            min: us(h.min_ns()),
            mean: h.mean_ns().map(|v| v / 1000.0),
            p50: us(h.percentile_ns(50.0)),
            p90: us(h.percentile_ns(90.0)),
            p99: us(h.percentile_ns(99.0)),
            p999: us(h.percentile_ns(99.9)),
            max: us(h.percentile_ns(100.0)),
        }
    }
}

impl BenchReport {
    fn new(plan: &Plan, tracker: &Tracker, io: &IoCounts, send_s: f64, drain_s: f64) -> Self {
        let per_s = |n: u64| if send_s > 0.0 { n as f64 / send_s } else { 0.0 };
        let lost = tracker.sent.saturating_sub(tracker.answered());
        BenchReport {
            target: plan.target.to_string(),
            clients: plan.clients,
            rate_per_s: plan.rate_per_s,
            window: plan.window,
            timeout_ms: duration_ns(plan.timeout) / 1_000_000,
            send_s,
            drain_s,
            sent: tracker.sent,
            sent_per_s: per_s(tracker.sent),
            responses: tracker.responses,
            responses_per_s: per_s(tracker.responses),
            kiss_o_death: tracker.kiss_o_death.clone(),
            late: tracker.late,
            unmatched: tracker.unmatched,
            invalid: tracker.invalid,
            lost,
            loss_percent: if tracker.sent > 0 { lost as f64 * 100.0 / tracker.sent as f64 } else { 0.0 },
            send_errors: io.send_errors,
            send_buffer_full: io.send_buffer_full,
            icmp_unreachable: io.icmp_unreachable,
            latency_us: LatencyReport::from_histogram(&tracker.latency),
            nts: tracker.nts_report(),
        }
    }

    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        let pacing = match (self.rate_per_s, self.window) {
            (Some(r), Some(w)) => format!("rate {r}/s, window {w}"),
            (Some(r), None) => format!("rate {r}/s"),
            (None, Some(w)) => format!("as fast as possible, window {w}"),
            (None, None) => "as fast as possible".to_string(),
        };
        s += &format!(
            "bench server {}: {} clients, {pacing}, timeout {} ms\n",
            self.target, self.clients, self.timeout_ms
        );
        s += &format!("  send phase     {:.3} s (then {:.3} s drain)\n", self.send_s, self.drain_s);
        s += &format!("  sent           {} ({:.0}/s)\n", self.sent, self.sent_per_s);
        s += &format!("  responses      {} ({:.0}/s)\n", self.responses, self.responses_per_s);
        let kod_total: u64 = self.kiss_o_death.values().sum();
        let codes: Vec<String> = self.kiss_o_death.iter().map(|(c, n)| format!("{c} {n}")).collect();
        if codes.is_empty() {
            s += "  kiss-o'-death  0\n";
        } else {
            s += &format!("  kiss-o'-death  {kod_total} ({})\n", codes.join(", "));
        }
        s += &format!("  late           {}\n", self.late);
        s += &format!("  unmatched      {}\n", self.unmatched);
        s += &format!("  invalid        {}\n", self.invalid);
        s += &format!("  lost           {} ({:.3} %)\n", self.lost, self.loss_percent);
        if let Some(n) = &self.nts {
            s += &format!(
                "  nts            {} key establishments with {} in {:.3} s, AEAD {} ({}), cookies of {} octets\n",
                n.key_establishments, n.ke_server, n.ke_s, n.aead, n.aead_name, n.cookie_len
            );
            s += &format!(
                "                 unauthenticated {}, not sent for want of a cookie {}, cookies left {}\n",
                n.unauthenticated, n.no_cookie, n.cookies_left
            );
        }
        if self.send_errors + self.send_buffer_full + self.icmp_unreachable > 0 {
            s += &format!(
                "  errors         send {}, send buffer full {}, ICMP unreachable {}\n",
                self.send_errors, self.send_buffer_full, self.icmp_unreachable
            );
        }
        let l = &self.latency_us;
        match (l.p50, l.p90, l.p99, l.max) {
            (Some(p50), Some(p90), Some(p99), Some(max)) => {
                s += &format!(
                    "  round trip     p50 {}  p90 {}  p99 {}  max {}  ({} responses)\n",
                    fmt_us(p50),
                    fmt_us(p90),
                    fmt_us(p99),
                    fmt_us(max),
                    l.count
                );
            }
            _ => s += "  round trip     no responses\n",
        }
        s
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.3} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Runs `ntplab bench server`.
pub fn run_server(args: &BenchServerArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let plan = Plan::from_args(args)?;
    let ke = match &args.nts_ke {
        Some(ke) => Some(NtsKe::new(ke, args.trusted_certificates.as_deref(), &args.aeads, args.allow_remote)?),
        None => None,
    };
    if args.ramp {
        return run_ramp(plan, ke.as_ref(), args.format, out);
    }
    let (report, io) = bench(&plan, nts_clients(&plan, ke.as_ref())?)?;
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string(&report).map_err(|e| CliError::internal(e.to_string()))? + "\n",
        OutputFormat::Text => report.to_text(),
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)?;
    if report.sent == 0 {
        return Err(CliError::internal(format!(
            "no request could be sent to {}{}",
            report.target,
            io.first_error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    if report.responses + report.late + report.kiss_o_death.values().sum::<u64>() == 0 && report.icmp_unreachable > 0 {
        return Err(CliError::input(format!(
            "no server answered at {}: {} ICMP port-unreachable replies (is a server listening on that port?)",
            report.target, report.icmp_unreachable
        )));
    }
    Ok(())
}

/// One step of a ramp.
#[derive(Serialize, Debug)]
pub(crate) struct RampStep {
    pub rate_per_s: f64,
    pub response_percent: f64,
    pub report: BenchReport,
}

/// A whole ramp.
#[derive(Serialize, Debug)]
pub(crate) struct RampReport {
    pub steps: Vec<RampStep>,
    /// The highest offered rate whose step got at least 99 % responses.
    pub highest_rate_99_per_s: Option<f64>,
    /// Why the ramp ended: `"responses"` (fewer than half answered),
    /// `"bench"` (the bench itself offered less than half the rate: past
    /// that, steps measure the bench, not the server), or `"steps"`.
    pub stopped_by: &'static str,
}

/// Whether a ramp ends after a step offered at `rate_per_s`, and why (see [`RampReport::stopped_by`]).
fn ramp_stop(rate_per_s: f64, report: &BenchReport) -> Option<&'static str> {
    let offered = report.sent + report.nts.as_ref().map_or(0, |n| n.no_cookie);
    let offered_per_s = if report.send_s > 0.0 { offered as f64 / report.send_s } else { 0.0 };
    if response_percent(report) < 50.0 {
        Some("responses")
    } else if offered_per_s < rate_per_s / 2.0 {
        Some("bench")
    } else {
        None
    }
}

/// The share of requests answered (responses and kiss-o'-death), percent;
/// with NTS, requests a socket could not send for want of a cookie count as
/// offered and unanswered.
fn response_percent(r: &BenchReport) -> f64 {
    let answered = r.responses + r.kiss_o_death.values().sum::<u64>();
    let offered = r.sent + r.nts.as_ref().map_or(0, |n| n.no_cookie);
    if offered == 0 { 0.0 } else { answered as f64 * 100.0 / offered as f64 }
}

/// The highest rate of the steps with at least 99 % responses.
fn highest_rate_99(steps: &[RampStep]) -> Option<f64> {
    steps.iter().filter(|s| s.response_percent >= 99.0).map(|s| s.rate_per_s).fold(None, |m, r| Some(m.map_or(r, |m: f64| m.max(r))))
}

/// With `--nts-ke`: one key establishment per client socket, and the sessions.
fn nts_clients(plan: &Plan, ke: Option<&NtsKe>) -> Result<Option<NtsClients>, CliError> {
    let Some(ke) = ke else { return Ok(None) };
    let (sessions, report) = ke.sessions(plan.clients, plan.target)?;
    Ok(Some(NtsClients::new(sessions, report, SplitMix64::from_os().next_u64())))
}

/// `--ramp`: open-loop steps at rising rates until half the requests go unanswered.
fn run_ramp(mut plan: Plan, ke: Option<&NtsKe>, format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
    let mut steps = Vec::new();
    let mut rate = plan.rate_per_s.unwrap_or(RAMP_START);
    if format == OutputFormat::Text {
        let line = format!(
            "bench server {} ramp: {} clients{}{}, {:.1} s a step\n      rate/s   sent/s   resp/s   resp %   p50       p99       max\n",
            plan.target,
            plan.clients,
            if plan.spread_sources { " from as many addresses" } else { "" },
            if ke.is_some() { ", NTS (one key establishment per client and step)" } else { "" },
            plan.duration.as_secs_f64()
        );
        out.write_all(line.as_bytes()).map_err(CliError::from_io)?;
    }
    let mut stopped_by = "steps";
    // Bounded: at most RAMP_STEPS_MAX steps of at most DURATION_S_MAX each.
    for _ in 0..RAMP_STEPS_MAX {
        if rate > 10_000_000.0 {
            break;
        }
        plan.rate_per_s = Some(rate);
        let (report, _) = bench(&plan, nts_clients(&plan, ke)?)?;
        let percent = response_percent(&report);
        if format == OutputFormat::Text {
            let l = &report.latency_us;
            let us = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_us);
            let line = format!(
                "  {:>10.0} {:>8.0} {:>8.0} {:>7.2}   {:<9} {:<9} {}\n",
                rate, report.sent_per_s, report.responses_per_s, percent, us(l.p50), us(l.p99), us(l.max)
            );
            out.write_all(line.as_bytes()).map_err(CliError::from_io)?;
        }
        let stop = ramp_stop(rate, &report);
        steps.push(RampStep { rate_per_s: rate, response_percent: percent, report });
        if let Some(why) = stop {
            stopped_by = why;
            break;
        }
        rate = (rate * RAMP_FACTOR).round();
    }
    let ramp = RampReport { highest_rate_99_per_s: highest_rate_99(&steps), steps, stopped_by };
    let text = match format {
        OutputFormat::Json => serde_json::to_string(&ramp).map_err(|e| CliError::internal(e.to_string()))? + "\n",
        OutputFormat::Text => {
            let why = match stopped_by {
                "bench" => "stopped: the bench offered less than half the rate (it is the limit, not the server)\n",
                "steps" => "stopped: 30 steps\n",
                _ => "",
            };
            match ramp.highest_rate_99_per_s {
                Some(r) => format!("{why}highest rate with >= 99 % responses: {r:.0}/s\n"),
                None => format!("{why}no step got >= 99 % responses\n"),
            }
        }
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)
}

/// The address client socket `i` sends from with `--spread-sources`: 127.1.x.y, y from 1 to 254.
fn spread_source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 254) as u8, (i % 254 + 1) as u8)
}

/// Opens the client sockets: bound to an ephemeral port, connected to the target, nonblocking.
fn open_sockets(plan: &Plan) -> Result<Vec<mio::net::UdpSocket>, CliError> {
    let local: IpAddr = match (plan.target.ip(), is_loopback(plan.target.ip())) {
        (IpAddr::V4(_), true) => Ipv4Addr::LOCALHOST.into(),
        (IpAddr::V6(a), true) if a.to_ipv4_mapped().is_none() => Ipv6Addr::LOCALHOST.into(),
        (IpAddr::V4(_), false) => Ipv4Addr::UNSPECIFIED.into(),
        (IpAddr::V6(_), _) => Ipv6Addr::UNSPECIFIED.into(),
    };
    (0..plan.clients)
        .map(|i| {
            let local = if plan.spread_sources { IpAddr::V4(spread_source(i)) } else { local };
            let s = UdpSocket::bind(SocketAddr::new(local, 0))
                .and_then(|s| s.connect(plan.target).map(|()| s))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|e| CliError::internal(format!("cannot open a UDP socket towards {}: {e}", plan.target)))?;
            Ok(mio::net::UdpSocket::from_std(s))
        })
        .collect()
}

/// Runs the send phase and the drain; returns the report.
fn bench(plan: &Plan, nts: Option<NtsClients>) -> Result<(BenchReport, IoCounts), CliError> {
    let mut sockets = open_sockets(plan)?;
    let poll = mio::Poll::new().map_err(|e| CliError::internal(format!("cannot create a poller: {e}")))?;
    for (i, s) in sockets.iter_mut().enumerate() {
        poll.registry()
            .register(s, mio::Token(i), mio::Interest::READABLE)
            .map_err(|e| CliError::internal(format!("cannot register a socket: {e}")))?;
    }
    let shared = Shared {
        tracker: Mutex::new(match nts {
            Some(nts) => Tracker::with_nts(plan.timeout, nts),
            None => Tracker::new(plan.timeout),
        }),
        slot_freed: Condvar::new(),
        sender_waiting: std::sync::atomic::AtomicBool::new(false),
        send_end_ns: std::sync::atomic::AtomicU64::new(u64::MAX),
    };
    let clock = Clock::start();
    let (mut send_io, recv_io, end_ns) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(plan, &shared, &sockets, poll, clock));
        let send_io = send(plan, &shared, &sockets, clock);
        let recv_io = receiver.join().unwrap_or_else(|_| {
            Err(CliError::internal("the receiver thread panicked"))
        });
        (send_io, recv_io, clock.now_ns())
    });
    let recv_io = recv_io?;
    let send_end_ns = shared.send_end_ns.load(std::sync::atomic::Ordering::SeqCst).min(end_ns);
    send_io.icmp_unreachable += recv_io.icmp_unreachable;
    send_io.recv_errors = recv_io.recv_errors;
    if send_io.first_error.is_none() {
        send_io.first_error = recv_io.first_error;
    }
    let tracker = shared.lock();
    let report = BenchReport::new(
        plan,
        &tracker,
        &send_io,
        send_end_ns as f64 / 1e9,
        end_ns.saturating_sub(send_end_ns) as f64 / 1e9,
    );
    drop(tracker);
    Ok((report, send_io))
}

/// The sender: paces or windows requests until the duration or count is reached.
fn send(plan: &Plan, shared: &Shared, sockets: &[mio::net::UdpSocket], clock: Clock) -> IoCounts {
    use std::sync::atomic::Ordering;
    let mut io = IoCounts::default();
    let mut rng = SplitMix64::from_os();
    let deadline_ns = duration_ns(plan.duration);
    let interval_ns = plan.rate_per_s.map(|r| 1e9 / r);
    let timeout_ns = duration_ns(plan.timeout);
    // The pacing schedule: request k of this schedule is due at pace_start + k * interval.
    let (mut pace_start_ns, mut paced) = (0u64, 0u64);
    let mut next_socket = 0usize;
    let mut errors_in_a_row = 0u32;
    let mut dry_in_a_row = 0usize;
    let mut sent = 0u64;
    // Bounded: every pass either sends, waits until a deadline-bounded time, or
    // counts a send error; errors and the deadline both end the loop.
    loop {
        let now_ns = clock.now_ns();
        if now_ns >= deadline_ns || plan.count.is_some_and(|c| sent >= c) {
            break;
        }
        if let Some(interval) = interval_ns {
            let due_ns = pace_start_ns + (paced as f64 * interval) as u64;
            if due_ns > now_ns {
                std::thread::sleep(Duration::from_nanos((due_ns - now_ns).min(deadline_ns - now_ns)));
                continue;
            }
            if now_ns - due_ns > duration_ns(BACKLOG_MAX) {
                (pace_start_ns, paced) = (now_ns, 0);
            }
        }
        let transmit = rng.next_u64();
        let index = next_socket;
        let datagram = {
            let mut t = shared.lock();
            if let Some(w) = plan.window {
                t.expire(now_ns);
                if t.in_flight() >= w {
                    let wake_ns = t.next_expiry_ns().unwrap_or(now_ns + timeout_ns).min(deadline_ns);
                    let wait = Duration::from_nanos(wake_ns.saturating_sub(now_ns).clamp(10_000, 10_000_000));
                    shared.sender_waiting.store(true, Ordering::SeqCst);
                    let (t, _) = shared.slot_freed.wait_timeout(t, wait).unwrap_or_else(|e| e.into_inner());
                    shared.sender_waiting.store(false, Ordering::SeqCst);
                    drop(t);
                    continue;
                }
            }
            match t.prepare(index, transmit, clock.now_ns()) {
                Ok(d) => d,
                Err(Refused::InUse) => continue,
                Err(Refused::NoCookie) => {
                    // NTS: this socket's turn passes unsent (counted); when
                    // every jar is empty, wait a little instead of spinning.
                    drop(t);
                    next_socket = (next_socket + 1) % sockets.len();
                    paced += 1;
                    dry_in_a_row += 1;
                    if dry_in_a_row >= sockets.len() {
                        dry_in_a_row = 0;
                        std::thread::sleep(Duration::from_millis(1).min(Duration::from_nanos(deadline_ns.saturating_sub(now_ns))));
                    }
                    continue;
                }
            }
        };
        dry_in_a_row = 0;
        let socket = &sockets[index];
        next_socket = (next_socket + 1) % sockets.len();
        match socket.send(&datagram) {
            Ok(_) => {
                sent += 1;
                paced += 1;
                errors_in_a_row = 0;
            }
            Err(e) => {
                shared.lock().unregister(transmit);
                if e.kind() == ErrorKind::WouldBlock {
                    io.send_buffer_full += 1;
                    std::thread::yield_now();
                } else if e.kind() == ErrorKind::ConnectionRefused {
                    // An earlier request's ICMP port-unreachable, reported on this send.
                    io.icmp_unreachable += 1;
                } else {
                    io.send_errors += 1;
                    errors_in_a_row += 1;
                    io.first_error.get_or_insert_with(|| format!("send: {e}"));
                    if errors_in_a_row >= SEND_ERRORS_CONSECUTIVE_MAX {
                        break;
                    }
                }
            }
        }
    }
    shared.send_end_ns.store(clock.now_ns(), Ordering::SeqCst);
    io
}

/// The receiver: reads replies until the sender is done and every request is
/// answered or the drain time (one timeout) has passed.
fn receive(
    plan: &Plan,
    shared: &Shared,
    sockets: &[mio::net::UdpSocket],
    mut poll: mio::Poll,
    clock: Clock,
) -> Result<IoCounts, CliError> {
    use std::sync::atomic::Ordering;
    let mut io = IoCounts::default();
    let mut events = mio::Events::with_capacity(sockets.len().max(16));
    let mut buf = [0u8; 2048];
    let timeout_ns = duration_ns(plan.timeout);
    // Hard stop, whatever happens: send phase + drain + 1 s.
    let hard_stop_ns = duration_ns(plan.duration) + 2 * timeout_ns + 1_000_000_000;
    loop {
        let now_ns = clock.now_ns();
        let send_end_ns = shared.send_end_ns.load(Ordering::SeqCst);
        if send_end_ns != u64::MAX {
            let mut t = shared.lock();
            t.expire(now_ns);
            if t.in_flight() == 0 || now_ns >= send_end_ns.saturating_add(timeout_ns) {
                break;
            }
        }
        if now_ns >= hard_stop_ns {
            break;
        }
        match poll.poll(&mut events, Some(RECV_POLL)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::internal(format!("waiting for replies failed: {e}"))),
        }
        for event in events.iter() {
            let Some(socket) = sockets.get(event.token().0) else { continue };
            // Edge-triggered: read until the socket is empty (bounded per wakeup).
            for _ in 0..4096 {
                match socket.recv(&mut buf) {
                    Ok(len) => {
                        let recv_ns = clock.now_ns();
                        let reply = shared.lock().on_datagram_from(event.token().0, &buf[..len], recv_ns);
                        if matches!(reply, Reply::Response { .. } | Reply::KissOfDeath { .. })
                            && shared.sender_waiting.load(Ordering::SeqCst)
                        {
                            shared.slot_freed.notify_one();
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => io.icmp_unreachable += 1,
                    Err(e) => {
                        io.recv_errors += 1;
                        io.first_error.get_or_insert_with(|| format!("receive: {e}"));
                        break;
                    }
                }
            }
        }
    }
    // Whatever is still waiting is lost; it stays counted in `sent`, not in `answered`.
    Ok(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::wire::refid::ReferenceId;

    fn reply(origin: u64, stratum: u8, refid: ReferenceId, mode: Mode) -> [u8; 48] {
        let mut r = v4::Repr::parse(&v4::Packet::new_checked(&build_request(1)[..]).unwrap()).unwrap();
        r.mode = mode;
        r.stratum = stratum;
        r.reference_id = refid;
        r.origin_timestamp = NtpTimestamp::from_bits(origin);
        r.receive_timestamp = NtpTimestamp::from_parts(3_900_000_000, 1);
        r.transmit_timestamp = NtpTimestamp::from_parts(3_900_000_000, 2);
        r.to_bytes()
    }

    fn server_reply(origin: u64) -> [u8; 48] {
        reply(origin, 1, ReferenceId::from_ascii("LOCL"), Mode::Server)
    }

    #[test]
    fn request_is_a_48_octet_v4_client_packet_carrying_the_transmit_timestamp() {
        let b = build_request(0x0123_4567_89ab_cdef);
        assert_eq!(b.len(), 48);
        assert_eq!(b[0], 0x23, "LI 0, VN 4, mode 3");
        assert_eq!(&b[40..48], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert!(b[1..40].iter().all(|&x| x == 0), "everything else is zero");
        let p = wire::parse_packet(&b).unwrap();
        assert_eq!(p.mode(), Mode::Client);
        assert!(p.problems().is_empty(), "{:?}", p.problems());
    }

    #[test]
    fn splitmix_is_deterministic_and_spreads() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..1000).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..1000).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::HashSet<_> = xs.iter().collect();
        assert_eq!(distinct.len(), 1000);
        // Known first output of SplitMix64 with seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn a_reply_matches_its_request_once() {
        let mut t = Tracker::new(Duration::from_millis(200));
        assert!(t.register(42, 1_000));
        assert!(t.register(43, 2_000));
        assert!(!t.register(42, 3_000), "a waiting transmit timestamp cannot be reused");
        assert_eq!(t.sent, 2);
        assert_eq!(t.on_datagram(&server_reply(43), 52_000), Reply::Response { rtt_ns: 50_000 });
        assert_eq!(t.on_datagram(&server_reply(43), 53_000), Reply::Unmatched, "a duplicate");
        assert_eq!(t.on_datagram(&server_reply(99), 53_000), Reply::Unmatched, "a stray");
        assert_eq!(t.in_flight(), 1);
        assert_eq!((t.responses, t.unmatched), (1, 2));
        assert_eq!(t.latency.count(), 1);
        assert_eq!(t.latency.min_ns(), Some(50_000));
    }

    #[test]
    fn kiss_o_death_and_invalid_replies_are_told_apart() {
        let mut t = Tracker::new(Duration::from_millis(200));
        for x in 1..=5 {
            assert!(t.register(x, 0));
        }
        let rate = reply(1, 0, ReferenceId::from_ascii("RATE"), Mode::Server);
        assert_eq!(t.on_datagram(&rate, 10), Reply::KissOfDeath { code: "RATE".into() });
        let deny = reply(2, 0, ReferenceId::from_ascii("DENY"), Mode::Server);
        assert_eq!(t.on_datagram(&deny, 10), Reply::KissOfDeath { code: "DENY".into() });
        let rate3 = reply(3, 0, ReferenceId::from_ascii("RATE"), Mode::Server);
        t.on_datagram(&rate3, 10);
        let wrong_mode = reply(4, 1, ReferenceId::from_ascii("LOCL"), Mode::SymmetricPassive);
        assert_eq!(t.on_datagram(&wrong_mode, 10), Reply::Invalid);
        assert_eq!(t.on_datagram(&server_reply(5)[..47], 10), Reply::Invalid, "truncated");
        let mut control = server_reply(5);
        control[0] = 0x26;
        assert_eq!(t.on_datagram(&control, 10), Reply::Invalid, "mode 6");
        assert_eq!(t.kiss_o_death.get("RATE"), Some(&2));
        assert_eq!(t.kiss_o_death.get("DENY"), Some(&1));
        assert_eq!(t.invalid, 3);
        assert_eq!(t.in_flight(), 2, "requests 4 and 5 still wait");
        assert_eq!(t.answered(), 3);
        assert_eq!(t.latency.count(), 0, "kiss-o'-death replies carry no round trip");
    }

    #[test]
    fn requests_time_out_and_late_replies_are_recognised() {
        let ms = 1_000_000;
        let mut t = Tracker::new(Duration::from_millis(100));
        assert!(t.register(1, 0));
        assert!(t.register(2, 50 * ms));
        assert_eq!(t.next_expiry_ns(), Some(100 * ms));
        t.expire(99 * ms);
        assert_eq!(t.in_flight(), 2);
        t.expire(100 * ms);
        assert_eq!(t.in_flight(), 1, "request 1 is given up");
        assert_eq!(t.next_expiry_ns(), Some(150 * ms));
        assert!(!t.register(1, 101 * ms), "a given-up timestamp is still remembered");
        assert_eq!(t.on_datagram(&server_reply(1), 120 * ms), Reply::Late { rtt_ns: 120 * ms });
        assert_eq!(t.on_datagram(&server_reply(2), 130 * ms), Reply::Response { rtt_ns: 80 * ms });
        assert_eq!(t.next_expiry_ns(), None);
        // Given-up requests are forgotten after the late horizon.
        assert!(t.register(3, 200 * ms));
        t.expire(300 * ms);
        t.expire(200 * ms + LATE_HORIZON_TIMEOUTS * 100 * ms);
        assert_eq!(t.on_datagram(&server_reply(3), 1300 * ms), Reply::Unmatched);
        assert_eq!((t.sent, t.responses, t.late, t.unmatched), (3, 1, 1, 1));
        assert_eq!(t.answered(), 2);
    }

    #[test]
    fn an_unsent_request_is_taken_back() {
        let mut t = Tracker::new(Duration::from_millis(100));
        assert!(t.register(9, 0));
        t.unregister(9);
        t.unregister(9);
        assert_eq!((t.sent, t.in_flight()), (0, 0));
        assert_eq!(t.next_expiry_ns(), None);
    }

    #[test]
    fn percentiles_are_exact_for_small_values() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.percentile_ns(50.0), None);
        for v in (1..=100).rev() {
            h.record(v);
        }
        assert_eq!(h.percentile_ns(50.0), Some(50));
        assert_eq!(h.percentile_ns(90.0), Some(90));
        assert_eq!(h.percentile_ns(99.0), Some(99));
        assert_eq!(h.percentile_ns(99.9), Some(100));
        assert_eq!(h.percentile_ns(100.0), Some(100));
        assert_eq!(h.percentile_ns(0.1), Some(1));
        assert_eq!(h.min_ns(), Some(1));
        assert_eq!(h.mean_ns(), Some(50.5));
    }

    #[test]
    fn percentiles_of_microsecond_values_are_within_one_sixty_fourth() {
        let mut h = LatencyHistogram::new();
        // 1 µs .. 1000 µs in 1 µs steps, plus one 5 ms outlier.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        h.record(5_000_000);
        let close = |got: Option<u64>, want: u64| {
            let got = got.unwrap() as f64;
            assert!((got - want as f64).abs() <= want as f64 / 64.0, "got {got}, want {want}");
        };
        close(h.percentile_ns(50.0), 501_000); // rank ceil(500.5) = 501
        close(h.percentile_ns(99.0), 991_000); // rank ceil(990.99) = 991
        assert_eq!(h.percentile_ns(100.0), Some(5_000_000), "max is exact");
        assert_eq!(h.min_ns(), Some(1000), "min is exact");
        assert_eq!(h.count(), 1001);
    }

    #[test]
    fn histogram_buckets_tile_the_whole_range() {
        let mut expected_low = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = LatencyHistogram::bucket_bounds(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert!(high >= low);
            assert_eq!(LatencyHistogram::bucket_of(low), i);
            assert_eq!(LatencyHistogram::bucket_of(high), i);
            if i >= EXACT_BELOW as usize {
                assert!((high - low + 1) as f64 <= low as f64 / 64.0 + 1.0, "bucket {i} too wide");
            }
            expected_low = high.wrapping_add(1);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
        let mut h = LatencyHistogram::new();
        h.record(u64::MAX);
        h.record(0);
        assert_eq!(h.percentile_ns(100.0), Some(u64::MAX));
    }

    fn args(target: &str) -> BenchServerArgs {
        BenchServerArgs {
            target: target.into(),
            clients: 16,
            rate: None,
            window: None,
            duration: 5.0,
            count: None,
            timeout_ms: 200,
            allow_remote: false,
            spread_sources: false,
            ramp: false,
            nts_ke: None,
            trusted_certificates: None,
            aeads: Vec::new(),
            format: OutputFormat::Text,
        }
    }

    #[test]
    fn ramps_are_open_loop_and_spread_sources_are_distinct_loopback_addresses() {
        let plan = Plan::from_args(&BenchServerArgs { ramp: true, ..args("127.0.0.1:123") }).unwrap();
        assert_eq!((plan.rate_per_s, plan.window), (Some(RAMP_START), None), "open loop from 1000/s");
        assert!(Plan::from_args(&BenchServerArgs { ramp: true, window: Some(4), ..args("127.0.0.1:123") }).is_err());
        assert!(Plan::from_args(&BenchServerArgs { spread_sources: true, ..args("[::1]:123") }).is_err());
        let addresses: std::collections::HashSet<_> = (0..1024).map(spread_source).collect();
        assert_eq!(addresses.len(), 1024);
        assert!(addresses.iter().all(|a| a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255));
    }

    #[test]
    fn the_highest_rate_is_that_of_the_fastest_step_with_99_percent() {
        let step = |rate: f64, percent: f64| {
            let plan = Plan::from_args(&args("127.0.0.1:123")).unwrap();
            let report = BenchReport::new(&plan, &Tracker::new(Duration::from_millis(1)), &IoCounts::default(), 1.0, 0.0);
            RampStep { rate_per_s: rate, response_percent: percent, report }
        };
        assert_eq!(highest_rate_99(&[step(1000.0, 100.0), step(1500.0, 99.0), step(2250.0, 98.9), step(3375.0, 99.5)]), Some(3375.0));
        assert_eq!(highest_rate_99(&[step(1000.0, 98.0)]), None);
    }

    #[test]
    fn a_ramp_stops_when_half_go_unanswered_or_the_bench_cannot_offer_half_the_rate() {
        let plan = Plan::from_args(&args("127.0.0.1:123")).unwrap();
        // 100 sent in 1 s, `answered` of them answered.
        let report = |answered: u64| {
            let mut t = Tracker::new(Duration::from_millis(1));
            for x in 1..=100 {
                assert!(t.register(x, 0));
            }
            for x in 1..=answered {
                t.on_datagram(&server_reply(x), 1);
            }
            BenchReport::new(&plan, &t, &IoCounts::default(), 1.0, 0.0)
        };
        assert_eq!(ramp_stop(100.0, &report(60)), None);
        assert_eq!(ramp_stop(199.0, &report(60)), None);
        assert_eq!(ramp_stop(201.0, &report(60)), Some("bench"), "100/s offered of 201/s asked");
        assert_eq!(ramp_stop(100.0, &report(49)), Some("responses"));
    }

    #[test]
    fn only_loopback_targets_without_allow_remote() {
        for ok in ["127.0.0.1:123", "127.1.2.3:11123", "[::1]:123", "localhost:4123", "[::ffff:127.0.0.1]:123"] {
            assert!(Plan::from_args(&args(ok)).is_ok(), "{ok}");
        }
        for remote in ["192.0.2.1:123", "[2001:db8::1]:123", "0.0.0.0:123", "[::]:123"] {
            let e = Plan::from_args(&args(remote)).unwrap_err();
            assert_eq!(e.code, 2);
            assert!(e.message.contains("not a loopback address") && e.message.contains("--allow-remote"), "{e}");
            let mut a = args(remote);
            a.allow_remote = true;
            assert!(Plan::from_args(&a).is_ok(), "{remote} with --allow-remote");
        }
        assert!(Plan::from_args(&args("pool.ntp.org:123")).unwrap_err().message.contains("IP address"));
        assert!(Plan::from_args(&args("127.0.0.1")).is_err(), "a port is required");
    }

    #[test]
    fn settings_are_bounded() {
        let plan = Plan::from_args(&args("127.0.0.1:123")).unwrap();
        assert_eq!(plan.window, Some(WINDOW_DEFAULT), "window by default");
        assert_eq!(plan.duration, Duration::from_secs(5));
        let mut a = args("127.0.0.1:123");
        a.rate = Some(1000.0);
        assert_eq!(Plan::from_args(&a).unwrap().window, None, "no window with a rate unless asked");
        a.window = Some(8);
        assert_eq!(Plan::from_args(&a).unwrap().window, Some(8));
        for (set, what) in [
            (&(|a: &mut BenchServerArgs| a.duration = 61.0) as &dyn Fn(&mut BenchServerArgs), "--duration"),
            (&|a: &mut BenchServerArgs| a.duration = 0.0, "--duration"),
            (&|a: &mut BenchServerArgs| a.duration = f64::NAN, "--duration"),
            (&|a: &mut BenchServerArgs| a.rate = Some(0.0), "--rate"),
            (&|a: &mut BenchServerArgs| a.rate = Some(f64::INFINITY), "--rate"),
            (&|a: &mut BenchServerArgs| a.window = Some(0), "--window"),
            (&|a: &mut BenchServerArgs| a.count = Some(0), "--count"),
            (&|a: &mut BenchServerArgs| a.timeout_ms = 0, "--timeout-ms"),
        ] {
            let mut a = args("127.0.0.1:123");
            set(&mut a);
            let e = Plan::from_args(&a).unwrap_err();
            assert!(e.message.starts_with(what), "{e}");
        }
    }

    #[test]
    fn report_counts_add_up() {
        let mut t = Tracker::new(Duration::from_millis(100));
        for x in 1..=10 {
            assert!(t.register(x, 0));
        }
        for x in 1..=6 {
            t.on_datagram(&server_reply(x), 20_000 * x);
        }
        t.on_datagram(&reply(7, 0, ReferenceId::from_ascii("RATE"), Mode::Server), 1);
        let plan = Plan::from_args(&args("127.0.0.1:123")).unwrap();
        let r = BenchReport::new(&plan, &t, &IoCounts::default(), 2.0, 0.1);
        assert_eq!((r.sent, r.responses, r.lost), (10, 6, 3));
        assert_eq!(r.responses_per_s, 3.0);
        assert!((r.loss_percent - 30.0).abs() < 1e-9);
        assert_eq!(r.latency_us.p50.map(|v| v.round()), Some(60.0));
        let text = r.to_text();
        assert!(text.contains("kiss-o'-death  1 (RATE 1)"), "{text}");
        assert!(text.contains("lost           3 (30.000 %)"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kiss_o_death"]["RATE"], 1);
        assert_eq!(json["latency_us"]["count"], 6);
    }
}
