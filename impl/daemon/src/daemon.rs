//! The daemon loop: one task that owns the sockets, the timers and the clock,
//! feeds the core and carries out what it returns.
//!
//! It is generic over the network ([`Network`]) and the clock ([`DaemonClock`]):
//! `ntplab serve` runs it on tokio sockets and the system clock, the simulator
//! on simulated sockets and a host clock model. Receive loops run as local tasks
//! (`spawn_local`, so the caller runs the daemon inside a `tokio::task::LocalSet`)
//! and hand datagrams to the one loop through a channel; everything else
//! happens in that loop, in a fixed order (`biased` select), so a run is
//! deterministic when its inputs are.
//!
//! Reference clocks ([`crate::refclock`]) work the same way: one local task
//! per configured clock awaits its provider and hands the input to the loop,
//! whose [`RefclockDriver`]s turn it into samples for the system.

use crate::clock::DaemonClock;
use crate::config::DaemonConfig;
use crate::fast::{FastPathSpec, FastServer, Published};
use crate::net::{DatagramSocket, Network, Received};
use crate::nts::glue::{Judgement, KeDone, NtsRuntime, NtsSource};
use crate::nts::ke::{NoStreams, StreamNetwork};
use crate::nts::server::NtsServerShared;
use crate::refclock::{RefclockDriver, RefclockInput, RefclockProvider, Refclocks};
use ntplab_proto::discipline::{Action, ClockDiscipline, State as DisciplineState};
use crate::drift::DRIFT_WRITE_INTERVAL;
use ntplab_proto::mono::Instant;
use ntplab_proto::select::Rejection;
use ntplab_proto::server::{NtsReplyKind, NtsServerAction, Response, Server, ServerAction, ServerClockState};
use ntplab_proto::refclock::pps::RefclockSample;
use ntplab_proto::source::{Measurement, Source, SourceConfig, SourceEvent};
use ntplab_proto::system::{System, SystemConfig, SystemUpdate};
use ntplab_proto::time::{NtpDuration, NtpTime, NtpTimestamp};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::LeapIndicator;
use ntplab_proto::wire::v5::V5ReferenceId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest datagram the daemon uses (the responder's limit). Receive buffers
/// are one octet longer, so that a longer datagram, which the kernel cuts to
/// the buffer, is recognised as oversize and dropped whole, never judged by
/// its first 2,048 octets.
const MAX_DATAGRAM: usize = ntplab_proto::server::MAX_REQUEST_LEN;
/// Datagrams waiting for the loop before receive tasks drop new ones.
const QUEUE_DATAGRAMS: usize = 1024;

/// A source of time as events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An NTP server.
    Source(SocketAddr),
    /// A reference clock: its place among the `[[refclock]]`s, and its reference ID.
    Refclock {
        /// Index in the configuration.
        index: usize,
        /// Reference ID (`GPS`, `PPS`).
        reference_id: ReferenceId,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Source(address) => address.fmt(f),
            Peer::Refclock { index, reference_id } => {
                write!(f, "refclock{index}({})", reference_id.ascii().unwrap_or("?"))
            }
        }
    }
}

/// What the system knows its sources by: NTP servers and reference clocks,
/// each by its index in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PeerId {
    Source(usize),
    Refclock(usize),
}

/// Something the daemon did, for logs, metrics and simulation traces.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonEvent {
    /// A request went to a source.
    RequestSent {
        /// Source address.
        source: SocketAddr,
    },
    /// A source's reply was processed.
    SourceReply {
        /// Source address.
        source: SocketAddr,
        /// What the source made of it.
        event: SourceEvent,
    },
    /// A reference clock produced a filtered sample.
    RefclockSample {
        /// Which clock.
        refclock: Peer,
        /// The sample.
        sample: RefclockSample,
    },
    /// A selection run ended.
    Selection {
        /// The system peer, if any.
        system_peer: Option<Peer>,
        /// Sources outvoted as falsetickers.
        falsetickers: Vec<Peer>,
        /// Combined offset, when there was a majority.
        offset: Option<NtpDuration>,
    },
    /// The discipline acted on the clock.
    Clock {
        /// The action.
        action: Action,
        /// When it took effect, per the clock.
        at: Option<NtpTime>,
    },
    /// A measurement arrived at a local time before one handled earlier:
    /// something else set the clock back. Every source's samples and the
    /// discipline's were discarded
    /// ([`ntplab_proto::system::SystemUpdate::clock_went_back`]).
    ClockWentBack {
        /// How far, at least (the last arrival time minus this one).
        by: NtpDuration,
    },
    /// The system peer's sample would have adjusted the clock by more than
    /// `[clock] max_change` allows: the clock was left alone
    /// ([`ntplab_proto::system::SystemUpdate::max_change`]). `giving_up`:
    /// no more may be skipped, and the daemon exits.
    MaxChange {
        /// The adjustment refused.
        adjustment: NtpDuration,
        /// The limit, seconds.
        limit: f64,
        /// The daemon exits.
        giving_up: bool,
    },
    /// The system poll exponent changed.
    PollChanged {
        /// New exponent, log2 s.
        poll_log2: i8,
    },
    /// A leap second was armed on the clock (or cleared with `NoWarning`).
    LeapArmed {
        /// What the clock was told.
        leap: LeapIndicator,
        /// When it took effect, if the clock accepted it.
        at: Option<NtpTime>,
    },
    /// A source was dropped after a DENY or RSTR kiss code.
    SourceDropped {
        /// Source address.
        source: SocketAddr,
    },
    /// A source was refused because it is this daemon: its address is one
    /// of the listen addresses (found at start, or when its reply arrived at
    /// the very address it came from). Polling it would be a timing loop.
    SourceIsThisHost {
        /// Source address.
        source: SocketAddr,
    },
    /// A source became unfit because of a timing loop (RFC 5905 A.5.2
    /// `fit()`: it follows this host or what this host follows), or because
    /// its stratum is not below the local reference's. Reported when it
    /// starts; the selection's rejections say it every run.
    SourceLoop {
        /// The source.
        source: Peer,
        /// [`Rejection::Loop`] or [`Rejection::NotBelowLocalStratum`].
        reason: Rejection,
    },
    /// The server answered (or refused) a client.
    Served {
        /// Client address.
        client: SocketAddr,
        /// What the responder decided.
        action: ServerAction,
    },
    /// An NTS source's key establishment (RFC 8915 §4) ended.
    NtsKe {
        /// Source address (as configured; NTS-KE may name another NTP server).
        source: SocketAddr,
        /// The AEAD agreed (its IANA ID), when it succeeded.
        aead: Option<u16>,
        /// Cookies received.
        cookies: usize,
        /// Why it failed, when it did.
        error: Option<String>,
        /// The records exchanged, TLS version and ALPN, when it succeeded.
        transcript: Option<crate::nts::client::KeTranscript>,
    },
    /// A source's reply was accepted as a sample (RFC 5905 §8): what the
    /// client computed and the four timestamps it computed it from. Emitted
    /// after the [`DaemonEvent::SourceReply`] that carries the same sample.
    Sample {
        /// Source address.
        source: SocketAddr,
        /// The sample's figures and timestamps.
        sample: SampleFigures,
    },
}

/// The client's own figures for one sample, as [`DaemonEvent::Sample`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleFigures {
    /// Offset θ (server − local), including a smear correction the client added back.
    pub offset: NtpDuration,
    /// Round-trip delay δ (at least the local precision).
    pub delay: NtpDuration,
    /// Dispersion ε of the sample.
    pub dispersion: NtpDuration,
    /// T1: local clock when the request left.
    pub t1: NtpTime,
    /// T2: server clock when the request arrived (as received, no era).
    pub t2: NtpTimestamp,
    /// T3: server clock when the reply left (as received, no era).
    pub t3: NtpTimestamp,
    /// T4: local clock when the reply arrived.
    pub t4: NtpTime,
    /// The client's precision, log2 seconds: ρ_local in the dispersion and
    /// the delay's floor.
    pub local_precision_log2: i8,
    /// An interleaved sample (RFC 9769): T1, T2 and T4 of the previous
    /// exchange with the exact T3 this reply carried.
    pub interleaved: bool,
}

impl SampleFigures {
    /// The figures of `m`, measured by a client of precision 2^`local_precision_log2` s.
    pub fn of(m: &Measurement, local_precision_log2: i8) -> Self {
        SampleFigures {
            offset: m.offset,
            delay: m.delay,
            dispersion: m.dispersion,
            t1: m.local_send_time,
            t2: m.server_receive_timestamp,
            t3: m.server_transmit_timestamp,
            t4: m.local_receive_time,
            local_precision_log2,
            interleaved: m.interleaved,
        }
    }
}

/// Receives daemon events (a trace recorder, a metrics counter, a log).
pub trait EventSink {
    /// One event, at local time `at`.
    fn event(&mut self, at: NtpTime, event: &DaemonEvent);
}

/// Logs events through `tracing`.
#[derive(Debug, Default)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn event(&mut self, at: NtpTime, event: &DaemonEvent) {
        match event {
            DaemonEvent::Served { .. } | DaemonEvent::RequestSent { .. } => {
                tracing::trace!(at = %at.rfc3339(), ?event)
            }
            DaemonEvent::Clock { .. } | DaemonEvent::SourceDropped { .. } => {
                tracing::info!(at = %at.rfc3339(), ?event)
            }
            DaemonEvent::SourceIsThisHost { source } => {
                tracing::warn!(at = %at.rfc3339(), %source, "source refused: it is this server (a timing loop)")
            }
            DaemonEvent::ClockWentBack { by } => tracing::warn!(
                at = %at.rfc3339(),
                by_s = by.to_seconds_f64(),
                "the clock went back (set by another program?): samples on the old timescale discarded"
            ),
            DaemonEvent::MaxChange { adjustment, limit, giving_up } => tracing::warn!(
                at = %at.rfc3339(),
                adjustment_s = adjustment.to_seconds_f64(),
                limit_s = limit,
                "adjustment of {:.3} s exceeds the allowed maximum of {limit} s ({})",
                adjustment.to_seconds_f64(),
                if *giving_up { "exiting" } else { "ignored" }
            ),
            DaemonEvent::SourceLoop { source, reason } => {
                tracing::warn!(at = %at.rfc3339(), %source, ?reason, "source not followed: timing loop")
            }
            _ => tracing::debug!(at = %at.rfc3339(), ?event),
        }
    }
}

struct SourceSlot<S> {
    address: SocketAddr,
    source: Source,
    socket: Rc<S>,
    /// Kernel transmit time of the last request, for the next reply's T1.
    last_tx: Option<NtpTime>,
    /// NTS, for a source with `nts = true`.
    nts: Option<NtsSource>,
}

/// A datagram handed from a receive task to the loop.
struct Incoming {
    socket: usize,
    received: Received,
    data: Vec<u8>,
}

/// A reference clock handed from its task to the loop.
struct RefclockIncoming {
    index: usize,
    input: RefclockInput,
}

/// Aborts the tasks it holds when the loop ends (providers may wait on
/// devices or timers for a long time).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs the daemon until `shutdown` completes. Must be called inside a
/// `tokio::task::LocalSet`.
///
/// `refclocks` opens the configured reference clocks
/// ([`crate::refclock::NoRefclocks`] where there are none).
/// `seed` drives every random choice (transmit-timestamp nonces, poll jitter,
/// the rate limiter's hash key); give it from the OS in production and from
/// the scenario in simulation.
///
/// When it returns, every socket and reference clock it opened is closed
/// (its receive tasks have ended), so a daemon started right after it can
/// bind the same addresses.
#[allow(clippy::too_many_arguments)]
pub async fn run<N: Network, R: Refclocks, C: DaemonClock>(
    config: &DaemonConfig,
    net: &N,
    refclocks: &R,
    clock: &mut C,
    seed: u64,
    events: &mut dyn EventSink,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    N::Socket: 'static,
{
    let nts = NtsRuntime { streams: NoStreams, provider: crate::nts::tls::provider(), time: None };
    run_with_nts(config, net, &nts, refclocks, clock, seed, events, shutdown).await
}

/// [`run`] with TCP and TLS for NTS (RFC 8915): the `[nts]` server side
/// (KE listeners, protected NTP) and sources with `nts = true` need them.
/// [`run`] has no TCP, so a configuration using NTS fails at start there.
#[allow(clippy::too_many_arguments)]
pub async fn run_with_nts<N: Network, T: StreamNetwork + Clone + 'static, R: Refclocks, C: DaemonClock>(
    config: &DaemonConfig,
    net: &N,
    nts: &NtsRuntime<T>,
    refclocks: &R,
    clock: &mut C,
    seed: u64,
    events: &mut dyn EventSink,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    N::Socket: 'static,
{
    run_serving(config, net, nts, refclocks, clock, seed, events, shutdown, None).await
}

/// [`run_with_nts`], with `fast` the server side on the fast path
/// ([`crate::fast`]): worker threads with their own sockets answer the
/// `listen` addresses (NTS requests too, with `[nts]`: the NTS-KE server
/// stays in the loop and shares its cookie keys with them), fed the served
/// clock state by the loop. For real sockets and a clock that reads
/// `CLOCK_REALTIME` ([`DaemonClock::time_map`]); without `fast`, or with a
/// clock without a time map, the loop serves as [`run_with_nts`] does.
#[allow(clippy::too_many_arguments)]
pub async fn run_serving<N: Network, T: StreamNetwork + Clone + 'static, R: Refclocks, C: DaemonClock>(
    config: &DaemonConfig,
    net: &N,
    nts: &NtsRuntime<T>,
    refclocks: &R,
    clock: &mut C,
    seed: u64,
    events: &mut dyn EventSink,
    shutdown: impl Future<Output = ()>,
    fast: Option<FastPathSpec>,
) -> io::Result<()>
where
    N::Socket: 'static,
{
    let mut tasks = AbortOnDrop(Vec::new());
    let result = run_until(config, net, nts, refclocks, clock, seed, events, shutdown, &mut tasks, fast).await;
    // The receive tasks own the sockets: end them and wait until they are
    // gone (an aborted task drops its future before its handle completes).
    for task in &tasks.0 {
        task.abort();
    }
    for task in tasks.0.drain(..) {
        let _ = task.await;
    }
    result
}

/// [`run`]'s loop; the tasks it spawns go into `tasks`.
#[allow(clippy::too_many_arguments)]
async fn run_until<N: Network, T: StreamNetwork + Clone + 'static, R: Refclocks, C: DaemonClock>(
    config: &DaemonConfig,
    net: &N,
    nts: &NtsRuntime<T>,
    refclocks: &R,
    clock: &mut C,
    seed: u64,
    events: &mut dyn EventSink,
    shutdown: impl Future<Output = ()>,
    tasks: &mut AbortOnDrop,
    fast: Option<FastPathSpec>,
) -> io::Result<()>
where
    N::Socket: 'static,
{
    let mut rng = SmallRng::seed_from_u64(seed);
    let (tx, mut rx) = mpsc::channel::<Incoming>(QUEUE_DATAGRAMS);
    let mut sockets: Vec<Rc<N::Socket>> = Vec::new();
    let mut server_socket_count = 0;
    // The fast path serves the listen addresses from its own threads.
    let fast = fast.filter(|_| !config.listen.is_empty()).and_then(|spec| clock.time_map().map(|map| (spec, map)));
    for addr in config.listen.iter().filter(|_| fast.is_none()) {
        sockets.push(Rc::new(net.bind(*addr).await.map_err(|e| bind_error(*addr, e, config))?));
        server_socket_count += 1;
    }
    let mut slots = Vec::new();
    // The precision in every packet and the floor of the measurement noise:
    // the configuration's, or the clock's own (measured at start on a real one).
    let precision_log2 = config.precision_log2.unwrap_or_else(|| clock.precision_log2());
    let mut system_config = SystemConfig {
        local: config.local,
        algorithm: config.discipline,
        precision_log2,
        initial_frequency: config.initial_frequency,
        ..SystemConfig::default()
    };
    config.step.apply(&mut system_config.discipline);
    system_config.discipline.poll_target = config.poll_target;
    system_config.selection.min_truechimers = config.min_sources;
    if let Some(d) = config.max_distance {
        system_config.selection.max_distance = d;
    }
    system_config.max_change = config.max_change;
    // The discipline's poll range (its time constant) follows the sources'
    // and the reference clocks' (one sample per filter window).
    let refclock_polls = config.refclocks.iter().map(|r| r.poll_log2());
    if let (Some(min), Some(max)) = (
        config.sources.iter().map(|s| s.config.poll_min_log2).chain(refclock_polls.clone()).min(),
        config.sources.iter().map(|s| s.config.poll_max_log2).chain(refclock_polls).max(),
    ) {
        system_config.discipline.min_poll = min;
        system_config.discipline.max_poll = max;
    }
    let mut system: System<PeerId> = System::new(system_config);
    // This host's NTPv5 reference ID (draft-ietf-ntp-ntpv5-07 §7.4): random,
    // for the loop test. NTPv5 draws from its own stream, so that the NTPv4
    // behaviour of a seed (transmit timestamps, poll jitter) is what it was.
    let mut v5_rng = SmallRng::seed_from_u64(seed ^ 0x4e54_5035_4452_4654);
    let mut own_v5_id = [0u8; 15];
    v5_rng.fill(&mut own_v5_id);
    system.set_own_v5_id(V5ReferenceId::from_random(own_v5_id));
    // With the fast path the NTS-KE listeners start first: the workers
    // share their cookie keys. Without it they start where they always did
    // (a simulation's runs stay what they were for a seed).
    let mut nts_server: Option<Arc<NtsServerShared>> = match (&config.nts, &fast) {
        (Some(spec), Some(_)) => Some(nts.start_server(spec, &mut tasks.0).await?),
        _ => None,
    };
    let fast_server = match fast {
        Some((spec, map)) => {
            let mut key = [0u8; 16];
            rng.fill(&mut key);
            let published = Published { state: system.server_state(clock.now()), map };
            let started = FastServer::start(&config.listen, spec, &config.server, key, published, nts_server.clone());
            Some(started.map_err(|(addr, e)| bind_error(addr, e, config))?)
        }
        None => None,
    };
    // This host's addresses, for the loop test: the listen addresses (and
    // later the addresses replies arrive at).
    let mut listening = Vec::new();
    for socket in &sockets {
        let local = socket.local_addr()?;
        system.add_own_address(local.ip());
        listening.push(local);
    }
    for &local in fast_server.iter().flat_map(|f| f.local_addrs()) {
        system.add_own_address(local.ip());
        listening.push(local);
    }
    let mut refused = Vec::new();
    for (i, spec) in config.sources.iter().enumerate() {
        // One socket per source, on an ephemeral port: replies are told apart by
        // socket and checked against the source's address.
        let any: SocketAddr = match spec.address.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(ip) if ip.is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = Rc::new(net.bind(any).await.map_err(|e| bind_error(any, e, config))?);
        sockets.push(socket.clone());
        if let Ok(local) = socket.local_addr() {
            system.add_own_address(local.ip());
        }
        if is_this_host(spec.address, &listening, None) {
            refused.push(spec.address);
            slots.push(None);
            continue;
        }
        let refid = match spec.address.ip() {
            IpAddr::V4(ip) => ReferenceId::from_ipv4(ip),
            IpAddr::V6(ip) => ReferenceId::from_ipv6(ip),
        };
        system.add_source(PeerId::Source(i), refid);
        system.set_select_options(&PeerId::Source(i), spec.select);
        if let Some(ratio) = spec.config.max_delay_dev_ratio {
            system.set_max_delay_dev_ratio(&PeerId::Source(i), ratio);
        }
        system.set_source_v5_id(&PeerId::Source(i), V5ReferenceId::from_address(spec.address.ip()));
        let source = Source::new(SourceConfig { precision_log2, ..spec.config }, Instant::ZERO)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("source {}: {e}", spec.address)))?;
        let nts_source = match &spec.nts {
            Some(n) => {
                let tls = nts.client_config(n).map_err(|e| io::Error::new(e.kind(), format!("source {}: {e}", spec.address)))?;
                Some(NtsSource::new(n.clone(), tls, spec.address))
            }
            None => None,
        };
        slots.push(Some(SourceSlot { address: spec.address, source, socket, last_tx: None, nts: nts_source }));
    }
    for (index, socket) in sockets.iter().enumerate() {
        let socket = socket.clone();
        let tx = tx.clone();
        tasks.0.push(tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            loop {
                match socket.recv(&mut buf).await {
                    Ok(received) => {
                        let data = buf[..received.len].to_vec();
                        // A full queue drops the datagram, as a kernel buffer would.
                        if tx.try_send(Incoming { socket: index, received, data }).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "receive failed");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    // The loop ends when every receive task has; with the fast path serving
    // there may be none, and the loop must go on.
    let _open_while_serving = fast_server.as_ref().map(|_| tx.clone());
    drop(tx);

    let (refclock_tx, mut refclock_rx) = mpsc::channel::<RefclockIncoming>(QUEUE_DATAGRAMS);
    let mut drivers = Vec::new();
    for (index, spec) in config.refclocks.iter().enumerate() {
        let mut provider = refclocks.open(index, spec).await?;
        let driver = RefclockDriver::new(spec, precision_log2, Instant::ZERO);
        system.add_source(PeerId::Refclock(index), driver.params().reference_id);
        system.set_source_v5_id(&PeerId::Refclock(index), V5ReferenceId::from_refclock_code(driver.params().reference_id.0));
        drivers.push(driver);
        let tx = refclock_tx.clone();
        tasks.0.push(tokio::task::spawn_local(async move {
            loop {
                match provider.next().await {
                    Ok(input) => {
                        if tx.try_send(RefclockIncoming { index, input }).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(refclock = index, error = %e, "reference clock failed");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    drop(refclock_tx);
    // Silent reference clocks age out of selection, checked once per sample interval.
    let refclock_interval = config.refclocks.iter().map(|r| r.poll_log2()).min().map(|p| std::time::Duration::from_secs(1 << p.clamp(0, 17)));
    let mut refclock_tick = tokio::time::interval(refclock_interval.unwrap_or(std::time::Duration::from_secs(3600)));
    refclock_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refclocks_open = !drivers.is_empty();
    let peers = Peers {
        sources: config.sources.iter().map(|s| s.address).collect(),
        refclocks: config.refclocks.iter().map(|r| r.reference_id).collect(),
        listening,
        looping: RefCell::new(BTreeSet::new()),
    };
    for source in refused {
        events.event(clock.now(), &DaemonEvent::SourceIsThisHost { source });
    }

    let mut key = [0u8; 16];
    rng.fill(&mut key);
    let mut server = Server::new(config.server.clone(), key);
    if clock.time_map().is_some() && fast_server.is_none() {
        // A real clock and no fast path: the loop serves, and zeroing
        // the client tables (10 MiB by default) on the first request would
        // delay that reply after its receive reading (a follower measured
        // -6 ms against `ntplab serve` with NTS). The simulator keeps them
        // lazy: its many hosts would each hold the tables.
        server.allocate_tables();
    }
    if let (Some(spec), None) = (&config.nts, &nts_server) {
        nts_server = Some(nts.start_server(spec, &mut tasks.0).await?);
    }
    // NTS sources establish keys at once; results come back on this channel.
    let (ke_tx, mut ke_rx) = mpsc::channel::<KeDone>(slots.len().max(1));
    for (index, slot) in slots.iter_mut().enumerate() {
        if let Some(task) = slot.as_mut().and_then(|s| s.nts.as_mut()).and_then(|n| n.start_ke(index, nts, &ke_tx)) {
            tasks.0.push(task);
        }
    }
    let start = tokio::time::Instant::now();
    let mono = move || Instant::from_nanos(start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
    let mut out = vec![0u8; MAX_DATAGRAM];
    let mut last_poll = system.poll_log2();
    let mut armed_leap = LeapIndicator::NoWarning;
    let tick_interval = clock.tick_interval();
    // The fast path's workers get the served state after every event and at
    // least once a second (a local reference's reference time moves on).
    let mut publish_tick = tokio::time::interval(std::time::Duration::from_secs(if fast_server.is_some() { 1 } else { 3600 }));
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(tick_interval.unwrap_or(std::time::Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The drift file is written once an interval (first after one) and at exit.
    let mut drift_tick = tokio::time::interval_at(tokio::time::Instant::now() + DRIFT_WRITE_INTERVAL, DRIFT_WRITE_INTERVAL);
    drift_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);

    loop {
        let next_poll = slots.iter().flatten().filter_map(|s| s.source.poll_timeout()).min();
        let poll_sleep = sleep_until_or_never(next_poll.map(|t| start + std::time::Duration::from_nanos(t.as_nanos())));
        // NTS sources without keys retry key establishment when their
        // back-off ends, not at their next poll (RFC 8915 §4.2).
        let ke_retry_sleep = sleep_until_or_never(slots.iter().flatten().filter_map(|s| s.nts.as_ref()?.retry_due()).min());
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                save_drift(config, system.discipline());
                return Ok(());
            }
            incoming = rx.recv() => {
                let Some(inc) = incoming else {
                    save_drift(config, system.discipline());
                    return Ok(());
                };
                let rx_time = inc.received.rx_time.map_or_else(|| clock.now(), |raw| clock.local_time_of(raw));
                if inc.socket < server_socket_count {
                    let state = system.server_state(clock.now());
                    server.set_reference_ids(*system.served_reference_ids());
                    let socket = &*sockets[inc.socket];
                    match &nts_server {
                        Some(shared) => serve_nts(shared, &mut server, &state, socket, &inc, rx_time, mono(), clock, &mut out, events).await,
                        None => serve(&mut server, &state, socket, &inc, rx_time, mono(), clock, &mut out, events).await,
                    }
                } else {
                    let index = inc.socket - server_socket_count;
                    // An NTSN drops nothing: NTS-KE waits for the next poll (RFC 8915 §5.7).
                    handle_reply(index, &inc, rx_time, mono(), &mut slots, &mut drivers, &mut system, &peers, clock, events, v5_rng.random());
                }
            }
            done = ke_rx.recv() => {
                let Some(KeDone { index, result }) = done else { continue };
                let Some(slot) = slots.get_mut(index).and_then(Option::as_mut) else { continue };
                let Some(n) = slot.nts.as_mut() else { continue };
                let (aead, cookies, error, transcript) = match &result {
                    Ok(e) => (Some(e.response.aead.id().0), e.response.cookies.len(), None, Some(e.transcript.clone())),
                    Err(e) => (None, 0, Some(e.to_string()), None),
                };
                events.event(clock.now(), &DaemonEvent::NtsKe { source: slot.address, aead, cookies, error, transcript });
                match n.ke_done(result) {
                    Ok(ntp) => {
                        // The socket was bound for the configured address: keep to its family and scope.
                        let fits = ntp.is_ipv4() == slot.address.is_ipv4() && ntp.ip().is_loopback() == slot.address.ip().is_loopback();
                        if ntp != slot.address && fits {
                            tracing::info!(source = %slot.address, ntp = %ntp, "NTS-KE names another NTP server");
                            slot.address = ntp;
                        } else if !fits {
                            tracing::warn!(source = %slot.address, ntp = %ntp, "NTS-KE names an NTP server of another family or scope; keeping the configured address");
                        }
                        tracing::info!(source = %slot.address, aead = aead.unwrap_or_default(), cookies = n.cookies(), "NTS keys established");
                    }
                    Err(e) => {
                        let retry_in = n.retry_due().map(|t| t.saturating_duration_since(tokio::time::Instant::now()).as_secs_f64());
                        tracing::warn!(source = %slot.address, error = %e, retry_in_s = retry_in, "NTS key establishment failed; will retry");
                    }
                }
            }
            incoming = refclock_rx.recv(), if refclocks_open => {
                let Some(RefclockIncoming { index, input }) = incoming else {
                    refclocks_open = false;
                    continue;
                };
                let Some(driver) = drivers.get_mut(index) else { continue };
                let samples = driver.handle(input, |raw| clock.local_time_of(raw));
                for sample in samples {
                    let now = mono();
                    let Some(driver) = drivers.get_mut(index) else { break };
                    let m = driver.measurement(&sample, now);
                    let local = clock.now();
                    events.event(local, &DaemonEvent::RefclockSample { refclock: peers.name(&PeerId::Refclock(index)), sample });
                    let update = system.handle_measurement(&PeerId::Refclock(index), &m, local);
                    apply_update(update, local, now, &mut slots, &mut drivers, &peers, clock, events);
                }
            }
            _ = refclock_tick.tick(), if refclock_interval.is_some() => {
                let now = mono();
                for index in 0..drivers.len() {
                    if drivers[index].stale_due(now) {
                        let local = clock.now();
                        let update = system.handle_stale(&PeerId::Refclock(index), local);
                        apply_update(update, local, now, &mut slots, &mut drivers, &peers, clock, events);
                    }
                }
            }
            _ = ke_retry_sleep => {
                for (index, slot) in slots.iter_mut().enumerate() {
                    if let Some(n) = slot.as_mut().and_then(|s| s.nts.as_mut()).filter(|n| n.retry_due().is_some()) {
                        tasks.0.extend(n.start_ke(index, nts, &ke_tx));
                    }
                }
            }
            _ = poll_sleep => {
                let now = mono();
                let mut updates = Vec::new();
                for (index, slot) in slots.iter_mut().enumerate() {
                    let Some(slot) = slot else { continue };
                    if slot.source.poll_timeout().is_some_and(|t| t <= now) {
                        let local = clock.now();
                        if let Some(req) = slot.source.handle_timeout(now, local, rng.random(), &mut out) {
                            // Applied after the loop, which holds the slots: a
                            // stale source's dummy can run the selection, which can
                            // adopt a system peer and move the clock.
                            if req.stale {
                                updates.push((system.handle_stale(&PeerId::Source(index), local), local));
                            }
                            if req.unreachable {
                                updates.push((system.handle_unreachable(&PeerId::Source(index), local), local));
                            }
                            let mut len = req.len;
                            if let Some(n) = slot.nts.as_mut() {
                                // No cookies, or an NTSN and no authentic time
                                // since, by this poll: NTS-KE (RFC 8915 §5.7).
                                if n.ke_wanted_at_poll() {
                                    tasks.0.extend(n.start_ke(index, nts, &ke_tx));
                                }
                                // No plain request ever leaves for an NTS source:
                                // without keys, none at all. With them it goes,
                                // NTS-KE running or not (§5.7: keep polling with
                                // the cookies there are until NTS-KE succeeds).
                                match n.protect(&out[..req.len], &nts.provider) {
                                    Some(protected) if protected.len() <= out.len() => {
                                        out[..protected.len()].copy_from_slice(&protected);
                                        len = protected.len();
                                    }
                                    _ => {
                                        tasks.0.extend(n.start_ke(index, nts, &ke_tx));
                                        continue;
                                    }
                                }
                            }
                            match slot.socket.send_to(&out[..len], slot.address).await {
                                Ok(sent) => {
                                    slot.last_tx = sent.tx_time.map(|raw| clock.local_time_of(raw));
                                    events.event(local, &DaemonEvent::RequestSent { source: slot.address });
                                }
                                Err(e) => tracing::warn!(source = %slot.address, error = %e, "send failed"),
                            }
                        }
                    }
                }
                for (update, local) in updates {
                    apply_update(update, local, now, &mut slots, &mut drivers, &peers, clock, events);
                }
            }
            _ = tick.tick(), if tick_interval.is_some() => clock.tick(),
            _ = publish_tick.tick(), if fast_server.is_some() => {}
            _ = drift_tick.tick(), if config.drift_file.is_some() => save_drift(config, system.discipline()),
        }
        if let Some(e) = system.gave_up() {
            // chrony's maxchange: an adjustment too large once too often.
            save_drift(config, system.discipline());
            return Err(io::Error::other(format!(
                "adjustment of {:.3} s exceeds [clock] max_change's {} s once more than its `ignore` allows: exiting",
                e.adjustment.to_seconds_f64(),
                e.limit
            )));
        }
        if let (Some(f), Some(map)) = (&fast_server, fast_server.as_ref().and_then(|_| clock.time_map())) {
            f.publish(Published { state: system.server_state(clock.now()), map });
        }
        // Arm an announced leap second on its day (checked after every event:
        // polls come at least every 2^17 s, so the last day is never missed).
        if !config.sources.is_empty() || !config.refclocks.is_empty() || config.local.is_some_and(|l| l.leap.is_some()) {
            let now = clock.now();
            let wanted = leap_to_arm(system.server_state(now).leap, now);
            if wanted != armed_leap {
                armed_leap = wanted;
                let at = clock.set_leap(wanted).ok();
                events.event(now, &DaemonEvent::LeapArmed { leap: wanted, at });
            }
        }
        let poll = system.poll_log2();
        if poll != last_poll {
            last_poll = poll;
            let now = mono();
            for slot in slots.iter_mut().flatten() {
                slot.source.set_poll_log2(now, poll);
            }
            events.event(clock.now(), &DaemonEvent::PollChanged { poll_log2: poll });
        }
    }
}

/// Sleeps until `t`; forever without one.
async fn sleep_until_or_never(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes the discipline's frequency to the drift file, when there is one
/// and the discipline has measured the frequency (state SYNC); a failure is
/// logged and the daemon goes on ([`crate::drift`]).
fn save_drift(config: &DaemonConfig, discipline: &dyn ClockDiscipline) {
    let Some(path) = &config.drift_file else { return };
    if discipline.state() != DisciplineState::Sync {
        return;
    }
    if let Err(e) = crate::drift::write(path, discipline.frequency(), discipline.frequency_uncertainty()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the drift file");
    }
}

/// A bind failure that names the address, and for "too many open files" says
/// where the sockets go and how to allow more.
pub fn bind_error(addr: SocketAddr, e: io::Error, config: &DaemonConfig) -> io::Error {
    let mut message = format!("cannot bind {addr}: {e}");
    if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) {
        let needed = config.listen.len() + config.sources.len();
        message.push_str(&format!(
            " (each listen address and each [[source]] uses a socket: this configuration needs {needed} \
             besides the standard ones; raise the limit with `ulimit -n`, or LimitNOFILE= in a systemd unit)"
        ));
    }
    io::Error::new(e.kind(), message)
}

/// What to arm on the clock: a leap second the system announces is armed only
/// on the last day of the month (RFC 5905 §7.3: LI warns of a leap at the end of
/// the month), since clocks apply an armed leap at the end of the current day.
pub fn leap_to_arm(announced: LeapIndicator, now: NtpTime) -> LeapIndicator {
    let last_day_of_month = (now + NtpDuration::from_seconds(86_400)).to_civil().day == 1;
    match announced {
        LeapIndicator::Insert | LeapIndicator::Delete if last_day_of_month => announced,
        _ => LeapIndicator::NoWarning,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve<S: DatagramSocket, C: DaemonClock>(
    server: &mut Server,
    state: &ServerClockState,
    socket: &S,
    inc: &Incoming,
    rx_time: NtpTime,
    now: Instant,
    clock: &mut C,
    out: &mut [u8],
    events: &mut dyn EventSink,
) {
    let client = inc.received.from;
    let action = server.handle(now.as_nanos(), client, &inc.data, rx_time, state, out);
    if let ServerAction::Respond(response) = &action {
        server.finish_response(response, out, clock.now(), state);
        send_reply(server, state, socket, inc, &out[..response.len], Some(response), clock).await;
    }
    events.event(rx_time, &DaemonEvent::Served { client, action });
}

/// [`serve`] for a server with `[nts]`: NTS-protected requests get
/// authenticated replies (or an NTSN), others the plain path.
#[allow(clippy::too_many_arguments)]
async fn serve_nts<S: DatagramSocket, C: DaemonClock>(
    shared: &NtsServerShared,
    server: &mut Server,
    state: &ServerClockState,
    socket: &S,
    inc: &Incoming,
    rx_time: NtpTime,
    now: Instant,
    clock: &mut C,
    out: &mut [u8],
    events: &mut dyn EventSink,
) {
    let client = inc.received.from;
    let action = shared.with_master(|master, _| server.handle_nts(now.as_nanos(), client, &inc.data, rx_time, state, master, out));
    let action = match action {
        NtsServerAction::Respond(mut response) => {
            // The fresh cookies before the clock is read for the transmit timestamp.
            let sealed = shared.with_master(|master, rng| {
                server.prepare_nts_response(&mut response, out, master, rng);
                server.finish_nts_response(&response, out, clock.now(), state, master, rng)
            });
            if let Ok(len) = sealed {
                // An NTSN saves nothing for interleaved mode; every other reply does.
                let stamp = (response.kind() != NtsReplyKind::Nak).then_some(&response.response);
                send_reply(server, state, socket, inc, &out[..len], stamp, clock).await;
            }
            ServerAction::Respond(response.response)
        }
        NtsServerAction::Ignore(reason) => ServerAction::Ignore(reason),
        NtsServerAction::IgnoreNts(reason) => {
            tracing::trace!(%client, ?reason, "NTS request dropped");
            ServerAction::Ignore(ntplab_proto::server::DropReason::MalformedTrailer)
        }
    };
    events.event(rx_time, &DaemonEvent::Served { client, action });
}

/// The loop's socket tail, for [`serve`] and [`serve_nts`]: sends a finished
/// reply from the address the request came to, and hands the kernel's
/// transmit timestamp of it, if there is one, to the responder for `stamp`.
async fn send_reply<S: DatagramSocket, C: DaemonClock>(
    server: &mut Server,
    state: &ServerClockState,
    socket: &S,
    inc: &Incoming,
    reply: &[u8],
    stamp: Option<&Response>,
    clock: &C,
) {
    let client = inc.received.from;
    match socket.send_reply(reply, client, inc.received.to).await {
        Ok(sent) => {
            if let (Some(raw), Some(response)) = (sent.tx_time, stamp) {
                server.transmitted(response, clock.local_time_of(raw), state);
            }
        }
        Err(e) => tracing::debug!(%client, error = %e, "reply not sent"),
    }
}

/// Names of the configured sources and reference clocks, for events; the
/// addresses served on; the sources found in a timing loop.
struct Peers {
    sources: Vec<SocketAddr>,
    refclocks: Vec<ReferenceId>,
    listening: Vec<SocketAddr>,
    looping: RefCell<BTreeSet<PeerId>>,
}

/// Whether `source` is this daemon: a listen address, or on a wildcard
/// listen port at a loopback address or at `local` (the address its reply
/// arrived at, when it is the source's own).
fn is_this_host(source: SocketAddr, listening: &[SocketAddr], local: Option<IpAddr>) -> bool {
    listening.iter().any(|l| {
        l.port() == source.port()
            && (l.ip() == source.ip()
                || (l.ip().is_unspecified() && (source.ip().is_loopback() || local == Some(source.ip()))))
    })
}

impl Peers {
    fn name(&self, id: &PeerId) -> Peer {
        match *id {
            PeerId::Source(i) => Peer::Source(self.sources.get(i).copied().unwrap_or((Ipv4Addr::UNSPECIFIED, 0).into())),
            PeerId::Refclock(index) => {
                Peer::Refclock { index, reference_id: self.refclocks.get(index).copied().unwrap_or(ReferenceId::NONE) }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_reply<S, C: DaemonClock>(
    index: usize,
    inc: &Incoming,
    rx_time: NtpTime,
    now: Instant,
    slots: &mut [Option<SourceSlot<S>>],
    drivers: &mut [RefclockDriver],
    system: &mut System<PeerId>,
    peers: &Peers,
    clock: &mut C,
    events: &mut dyn EventSink,
    random: u64,
) {
    let Some(slot) = slots.get_mut(index).and_then(Option::as_mut) else { return };
    if inc.data.len() > MAX_DATAGRAM {
        // Cut by the receive buffer: not a reply any server sends.
        return;
    }
    if inc.received.from != slot.address {
        // Not from the server this socket talks to (RFC 5905 §9.2 address check).
        return;
    }
    if let Some(local) = inc.received.to {
        system.add_own_address(local);
        if local == slot.address.ip() && is_this_host(slot.address, &peers.listening, Some(local)) {
            let source = slot.address;
            system.remove_source(&PeerId::Source(index));
            slots[index] = None;
            events.event(rx_time, &DaemonEvent::SourceIsThisHost { source });
            return;
        }
    }
    if let Some(n) = slot.nts.as_mut() {
        // Only authentic replies exist for an NTS source, and kiss-o'-deaths
        // that echo one of its requests' Unique Identifiers (RFC 8915 §5.7):
        // anything else is dropped unseen, as if it never arrived.
        match n.judge(&inc.data) {
            None => return,
            Some(Judgement::Nak) => {
                // Unauthenticated, so it answers nothing: the source's request
                // stays outstanding, and the server's authentic reply, should a
                // forged NTSN have raced ahead of it, is still a sample.
                events.event(rx_time, &DaemonEvent::SourceReply { source: slot.address, event: SourceEvent::NtsNak });
                return;
            }
            Some(Judgement::Time | Judgement::Kiss) => {}
        }
    }
    let event = slot.source.handle_response(now, &inc.data, rx_time, slot.last_tx);
    let address = slot.address;
    events.event(rx_time, &DaemonEvent::SourceReply { source: address, event });
    match event {
        SourceEvent::Sample(m) => {
            if let Some(ids) = slot.source.reference_ids() {
                // NTPv5: a source whose Reference IDs hold this host's ID is a loop.
                system.set_reference_ids(&PeerId::Source(index), ids, random);
            } else if slot.source.speaking().is_v5() && !peers.listening.is_empty() {
                // A server does not follow an NTPv5 source before it knows
                // the source does not follow it (draft-07 §9).
                system.await_reference_ids(&PeerId::Source(index));
            }
            events.event(rx_time, &DaemonEvent::Sample { source: address, sample: SampleFigures::of(&m, slot.source.config().precision_log2) });
            let local = clock.now();
            let update = system.handle_measurement(&PeerId::Source(index), &m, local);
            apply_update(update, local, now, slots, drivers, peers, clock, events);
        }
        SourceEvent::Demobilize(_) => {
            system.remove_source(&PeerId::Source(index));
            if let Some(n) = slot.nts.as_mut() {
                // A forced disassociation of an NTS source: its keys go, and
                // a fresh association starts after NTS-KE runs again, once
                // the disassociation back-off has passed.
                let wait = n.disassociate();
                if let Ok(fresh) = Source::new(*slot.source.config(), now + wait) {
                    slot.source = fresh;
                }
                events.event(rx_time, &DaemonEvent::SourceDropped { source: address });
                return;
            }
            slots[index] = None;
            events.event(rx_time, &DaemonEvent::SourceDropped { source: address });
        }
        _ => {}
    }
}

/// Reports a system update and carries out its clock action; after a step,
/// every source and reference clock starts afresh.
#[allow(clippy::too_many_arguments)]
fn apply_update<S, C: DaemonClock>(
    update: SystemUpdate<PeerId>,
    local: NtpTime,
    now: Instant,
    slots: &mut [Option<SourceSlot<S>>],
    drivers: &mut [RefclockDriver],
    peers: &Peers,
    clock: &mut C,
    events: &mut dyn EventSink,
) {
    if let Some(by) = update.clock_went_back {
        events.event(local, &DaemonEvent::ClockWentBack { by });
    }
    if let Some(e) = update.max_change {
        events.event(local, &DaemonEvent::MaxChange { adjustment: e.adjustment, limit: e.limit, giving_up: e.giving_up });
    }
    if let Some(selection) = &update.selection {
        let mut looping = peers.looping.borrow_mut();
        let mut now_looping = BTreeSet::new();
        for (id, reason) in &selection.rejected {
            if matches!(reason, Rejection::Loop | Rejection::NotBelowLocalStratum) {
                now_looping.insert(*id);
                if !looping.contains(id) {
                    events.event(local, &DaemonEvent::SourceLoop { source: peers.name(id), reason: *reason });
                }
            }
        }
        *looping = now_looping;
        drop(looping);
        events.event(
            local,
            &DaemonEvent::Selection {
                system_peer: selection.outcome.as_ref().ok().map(|c| peers.name(&c.system_peer)),
                // A source whose latest sample the others outvoted (its
                // filter still offered an agreeing older one) is one too.
                falsetickers: selection
                    .falsetickers
                    .iter()
                    .chain(selection.rejected.iter().filter(|(_, r)| *r == Rejection::Outvoted).map(|(id, _)| id))
                    .map(|id| peers.name(id))
                    .collect(),
                offset: selection.outcome.as_ref().ok().map(|c| c.offset),
            },
        );
    }
    let Some(action) = update.clock else { return };
    let at = match action {
        Action::Panic { offset } => {
            tracing::error!(offset = offset.to_seconds_f64(), "offset beyond the panic threshold; clock left alone");
            None
        }
        _ => match action.apply(clock) {
            Ok(at) => at,
            Err(e) => {
                tracing::warn!(error = ?e, "clock adjustment refused");
                None
            }
        },
    };
    events.event(local, &DaemonEvent::Clock { action, at });
    if update.stepped {
        for s in slots.iter_mut().flatten() {
            s.source.reset(now);
            s.last_tx = None;
        }
        for d in drivers.iter_mut() {
            d.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NtpTime {
        NtpTime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn leaps_are_armed_on_the_last_day_of_the_month_only() {
        assert_eq!(leap_to_arm(LeapIndicator::Insert, t("2016-12-31T00:00:01Z")), LeapIndicator::Insert);
        assert_eq!(leap_to_arm(LeapIndicator::Insert, t("2016-12-30T23:59:59Z")), LeapIndicator::NoWarning);
        assert_eq!(leap_to_arm(LeapIndicator::Delete, t("2015-06-30T12:00:00Z")), LeapIndicator::Delete);
        assert_eq!(leap_to_arm(LeapIndicator::Insert, t("2016-02-29T12:00:00Z")), LeapIndicator::Insert);
        assert_eq!(leap_to_arm(LeapIndicator::Insert, t("2017-01-01T00:00:00Z")), LeapIndicator::NoWarning);
        assert_eq!(leap_to_arm(LeapIndicator::Unsynchronized, t("2016-12-31T12:00:00Z")), LeapIndicator::NoWarning);
    }

    #[test]
    fn a_source_is_this_host_when_it_is_a_listen_address() {
        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let specific = [sa("192.0.2.9:123")];
        assert!(is_this_host(sa("192.0.2.9:123"), &specific, None));
        assert!(!is_this_host(sa("192.0.2.9:124"), &specific, None));
        assert!(!is_this_host(sa("192.0.2.8:123"), &specific, None));
        let wildcard = [sa("0.0.0.0:123"), sa("[::]:123")];
        assert!(is_this_host(sa("127.0.0.1:123"), &wildcard, None), "loopback is this host");
        assert!(is_this_host(sa("[::1]:123"), &wildcard, None));
        assert!(!is_this_host(sa("192.0.2.9:123"), &wildcard, None), "another host, as far as is known");
        assert!(is_this_host(sa("192.0.2.9:123"), &wildcard, Some("192.0.2.9".parse().unwrap())), "its reply came to itself");
        assert!(!is_this_host(sa("127.0.0.1:123"), &[], None), "no listen address: nothing to loop to");
    }
}
