//! The event-driven harness: virtual time, the delivery queue, link models,
//! scenario events, and the real daemon of every host.
//!
//! One current-thread tokio runtime with a paused clock and one `LocalSet`
//! run every host's daemon (the same [`ntplab_daemon::daemon::run`] that
//! `ntplab serve` runs; only the network and clock providers differ). The
//! harness is one more task: it sleeps until the next packet delivery or
//! scenario event, or until a socket sends, so tokio's auto-advance jumps
//! virtual time straight to the next thing that happens. Deliveries and
//! timestamps are exact to the nanosecond; the daemons' own timers fire on
//! tokio's 1 ms grid, which only delays processing (timestamps stay exact).
//!
//! Determinism: one seed; every random stream is derived from it by label;
//! maps are ordered; the select is biased.

use crate::attacker::{Attacker, AttackerConfig};
use crate::host_clock::{ClockSample, HostClock, ReadNoise, SimClock};
use crate::link::{Fate, LinkConfig, LossReason, Path};
use crate::net::{Scoped, Shared, SimNetwork};
use crate::nts::{SeededRandom, SimStreams, SimTime};
use crate::oscillator::{Oscillator, OscillatorConfig};
use crate::peers::ScriptedPeer;
use crate::refclock::{SimRefclockConfig, SimRefclocks};
use crate::rng::SimRng;
use ntplab_daemon::config::DaemonConfig;
use ntplab_daemon::daemon::{self, DaemonEvent, EventSink};
use ntplab_daemon::net::{DatagramSocket, Network};
use ntplab_daemon::nts::glue::NtsRuntime;
use ntplab_proto::time::{NtpDuration, NtpTime};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use turmoil_net::{Net, Transport};

/// What runs on a host.
pub enum HostRole {
    /// The real daemon with this configuration.
    Daemon(Box<DaemonConfig>),
    /// A scripted peer answering on `port`.
    Scripted {
        /// How it answers.
        peer: ScriptedPeer,
        /// The UDP port it answers on.
        port: u16,
    },
}

/// One host of a run.
pub struct HostSetup {
    /// Name (for reports).
    pub name: String,
    /// Its one address.
    pub address: IpAddr,
    /// What runs on it.
    pub role: HostRole,
    /// Its free-running oscillator.
    pub oscillator: OscillatorConfig,
    /// A recorded frequency replayed in place of the oscillator's random
    /// walk, one value a second ([`Oscillator::with_frequency_series`]).
    pub frequency_series: Option<std::sync::Arc<[f64]>>,
    /// Noise on its timestamp readings.
    pub noise: ReadNoise,
    /// Its reference-clock hardware, read by the daemon's `[[refclock]]`s.
    pub refclock: Option<SimRefclockConfig>,
}

/// A link between two hosts (by index); `forward` is from `a` to `b`.
pub struct LinkSetup {
    /// First host.
    pub a: usize,
    /// Second host.
    pub b: usize,
    /// Both directions.
    pub config: LinkConfig,
    /// An on-path attacker on it, if any.
    pub attacker: Option<AttackerConfig>,
}

/// Something the scenario does at a given time.
#[derive(Debug, Clone)]
pub enum SimEvent {
    /// Drop every packet between one of these hosts and a host not listed.
    CutHosts(Vec<usize>),
    /// Drop packets on the link between `a` and `b`, in the named directions
    /// (`forward` is from `a` to `b`).
    CutLink {
        /// Host index.
        a: usize,
        /// Host index.
        b: usize,
        /// Cut `a` → `b`.
        forward: bool,
        /// Cut `b` → `a`.
        backward: bool,
    },
    /// Undo a [`SimEvent::CutHosts`] of the same hosts.
    HealHosts(Vec<usize>),
    /// Restore directions of a link.
    HealLink {
        /// Host index.
        a: usize,
        /// Host index.
        b: usize,
        /// Restore `a` → `b`.
        forward: bool,
        /// Restore `b` → `a`.
        backward: bool,
    },
    /// Undo every cut.
    HealAll,
    /// Replace a link's configuration (`forward` from `a` to `b`).
    SetLink {
        /// Host index.
        a: usize,
        /// Host index.
        b: usize,
        /// New configuration.
        config: LinkConfig,
    },
    /// Replace a link's configuration in the directions named, each after it
    /// has carried `packets` more packets ([`crate::link::Path::set_config_after`]).
    SetLinkAfter {
        /// Host index.
        a: usize,
        /// Host index.
        b: usize,
        /// New configuration.
        config: LinkConfig,
        /// Packets each direction carries first.
        packets: u64,
        /// Change `a` → `b`.
        forward: bool,
        /// Change `b` → `a`.
        backward: bool,
    },
    /// Someone steps a host's clock (not the daemon).
    StepClock {
        /// Host index.
        host: usize,
        /// Seconds.
        by_s: f64,
    },
    /// A host oscillator's frequency error changes.
    SetFrequency {
        /// Host index.
        host: usize,
        /// New frequency error, s/s.
        frequency: f64,
    },
    /// The host goes down: its daemon stops, its packets are dropped.
    Stop {
        /// Host index.
        host: usize,
    },
    /// The host comes back: a fresh daemon starts (the clock keeps its state,
    /// as a kernel clock does across a daemon restart).
    Start {
        /// Host index.
        host: usize,
    },
    /// The host's TCP (NTS-KE) becomes unreachable; UDP still flows.
    KeDown {
        /// Host index.
        host: usize,
    },
    /// The host's TCP is reachable again.
    KeUp {
        /// Host index.
        host: usize,
    },
}

/// A whole run, resolved.
pub struct SimSetup {
    /// True (UTC) time at the start.
    pub start: NtpTime,
    /// How long to simulate.
    pub duration: NtpDuration,
    /// The run's seed.
    pub seed: u64,
    /// Trace grid of true offsets.
    pub sample_interval: NtpDuration,
    /// Hosts.
    pub hosts: Vec<HostSetup>,
    /// Links.
    pub links: Vec<LinkSetup>,
    /// Scenario events by true time since the start.
    pub events: Vec<(NtpDuration, SimEvent)>,
    /// UTC leap seconds: (true time since the start, shift of UTC from then on).
    pub utc_shifts: Vec<(NtpDuration, NtpDuration)>,
}

/// One datagram's fate, for the trace.
#[derive(Debug, Clone)]
pub struct PacketRecord {
    /// Sender host index.
    pub src_host: usize,
    /// Receiver host index (None: no such host).
    pub dst_host: Option<usize>,
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// True send time since the start.
    pub sent: NtpDuration,
    /// True arrival times (two for a duplicate); empty when lost.
    pub arrivals: Vec<NtpDuration>,
    /// Why it was lost, when it was.
    pub lost: Option<&'static str>,
    /// Sender's local (disciplined) time at sending, noiseless.
    pub sender_local: NtpTime,
    /// UDP payload.
    pub payload: Vec<u8>,
    /// What an on-path attacker did to make it ([`crate::attacker::AttackKind::label`]); None: its sender sent it.
    pub attack: Option<&'static str>,
}

/// Receives everything a run produces.
pub trait Recorder {
    /// A trace-grid sample of a host's clock.
    fn sample(&mut self, host: usize, sample: &ClockSample);
    /// A datagram.
    fn packet(&mut self, record: &PacketRecord);
    /// A daemon event, at true time `elapsed` (host-local time `local`).
    fn daemon_event(&mut self, host: usize, elapsed: NtpDuration, local: NtpTime, event: &DaemonEvent);
    /// A scenario event applied.
    fn scenario_event(&mut self, elapsed: NtpDuration, event: &SimEvent);
    /// The hosts' clocks, once at the start (to read receivers' clocks at arrival).
    fn attach(&mut self, _clocks: &[Rc<RefCell<HostClock>>]) {}
}

/// Counters of a run.
#[derive(Debug, Clone, Default)]
pub struct RunCounters {
    /// Datagrams sent.
    pub packets: u64,
    /// Datagrams lost.
    pub lost: u64,
    /// Scenario events applied.
    pub scenario_events: u64,
    /// Harness wake-ups.
    pub wakeups: u64,
    /// Clock adjustments per host: frequency, slew, step, leap.
    pub adjustments: Vec<[u64; 4]>,
}

/// Why a run could not be set up.
#[derive(Debug)]
pub struct SimError(pub String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

struct HostSink {
    host: usize,
    shared: Rc<Shared>,
    recorder: Rc<RefCell<dyn Recorder>>,
}

impl EventSink for HostSink {
    fn event(&mut self, at: NtpTime, event: &DaemonEvent) {
        self.recorder.borrow_mut().daemon_event(self.host, self.shared.elapsed(), at, event);
    }
}

struct LinkState {
    forward: Path,
    backward: Path,
    /// `a` → `b` (a < b) is up.
    forward_up: bool,
    /// `b` → `a` is up.
    backward_up: bool,
    /// An on-path attacker, if the link has one.
    attacker: Option<Attacker>,
}

/// Who can reach whom.
#[derive(Default)]
struct Reach {
    links: BTreeMap<(usize, usize), LinkState>,
    cuts: Vec<Vec<usize>>,
    down: std::collections::BTreeSet<usize>,
    /// Hosts whose TCP (NTS-KE) is unreachable while their UDP still flows.
    tcp_blocked: std::collections::BTreeSet<usize>,
    /// Last TCP arrival per (source, destination) host: segments keep their order.
    tcp_last: BTreeMap<(usize, usize), NtpDuration>,
}

impl Reach {
    /// The attacker on the link between `a` and `b`, if there is one.
    fn attacker(&mut self, a: usize, b: usize) -> Option<&mut Attacker> {
        self.links.get_mut(&(a.min(b), a.max(b)))?.attacker.as_mut()
    }

    /// The path from `src` to `dst`, if packets may take it now.
    fn path(&mut self, src: usize, dst: usize) -> Result<&mut Path, &'static str> {
        if self.down.contains(&src) || self.down.contains(&dst) {
            return Err("host down");
        }
        if self.cuts.iter().any(|cut| cut.contains(&src) != cut.contains(&dst)) {
            return Err("partitioned");
        }
        let link = self.links.get_mut(&(src.min(dst), src.max(dst))).ok_or("no link")?;
        if src < dst {
            if link.forward_up { Ok(&mut link.forward) } else { Err("link down") }
        } else if link.backward_up {
            Ok(&mut link.backward)
        } else {
            Err("link down")
        }
    }
}

/// Runs a scenario to its end.
pub fn simulate(setup: SimSetup, recorder: Rc<RefCell<dyn Recorder>>) -> Result<RunCounters, SimError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| SimError(format!("cannot start the runtime: {e}")))?;
    let mut net = Net::with_config(turmoil_net::KernelConfig::default().retx_threshold(u32::MAX));
    let mut by_ip = BTreeMap::new();
    let mut host_ids = Vec::new();
    for (i, h) in setup.hosts.iter().enumerate() {
        if by_ip.insert(h.address, i).is_some() {
            return Err(SimError(format!("two hosts have the address {}", h.address)));
        }
        host_ids.push(net.add_host(h.address));
    }
    let mut reach = Reach::default();
    for l in &setup.links {
        let (a, b, config) = if l.a <= l.b { (l.a, l.b, l.config) } else { (l.b, l.a, reversed(&l.config)) };
        let label = |dir: &str| format!("link/{a}/{b}/{dir}");
        reach.links.insert(
            (a, b),
            LinkState {
                forward: Path::new(config.forward, SimRng::derive(setup.seed, &label("fwd"))),
                backward: Path::new(config.backward, SimRng::derive(setup.seed, &label("bwd"))),
                forward_up: config.up,
                backward_up: config.up,
                attacker: l.attacker.map(|c| Attacker::new(c, SimRng::derive(setup.seed, &label("attacker")))),
            },
        );
    }
    let guard = net.enter();
    let local = tokio::task::LocalSet::new();
    let counters = local.block_on(&runtime, run_all(setup, recorder, &guard, host_ids, by_ip, reach));
    drop(local);
    drop(runtime);
    drop(guard);
    Ok(counters)
}

/// A host's daemon, kept so that a `Start` event can run it again.
struct DaemonHost {
    config: Rc<DaemonConfig>,
    refclock: Option<SimRefclockConfig>,
    network: SimNetwork,
    clock: Rc<RefCell<HostClock>>,
    stop: Rc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
    starts: u64,
}

struct Hosts {
    ids: Vec<turmoil_net::HostId>,
    daemons: BTreeMap<usize, DaemonHost>,
    scripted: Vec<(Rc<tokio::sync::Notify>, tokio::task::JoinHandle<()>)>,
    shared: Rc<Shared>,
    recorder: Rc<RefCell<dyn Recorder>>,
    seed: u64,
    start: NtpTime,
}

impl Hosts {
    fn start_daemon(&mut self, host: usize) {
        let Some(d) = self.daemons.get_mut(&host) else { return };
        if d.task.is_some() {
            return;
        }
        let config = d.config.clone();
        let network = d.network.clone();
        let mut clock = SimClock::new(d.clock.clone(), self.shared.clone());
        let mut sink = HostSink { host, shared: self.shared.clone(), recorder: self.recorder.clone() };
        let stop = Rc::new(tokio::sync::Notify::new());
        d.stop = stop.clone();
        let seed = SimRng::daemon_seed(self.seed, host, d.starts);
        let refclocks = SimRefclocks {
            model: d.refclock.clone(),
            clock: d.clock.clone(),
            shared: self.shared.clone(),
            start: self.start,
            seed: SimRng::derive(self.seed, &format!("refclock/{host}/{}", d.starts)).next_u64(),
        };
        // TCP and TLS for NTS: turmoil-net streams, randomness from the seed, true time.
        let nts = NtsRuntime {
            streams: SimStreams::new(self.ids[host], self.shared.clone()),
            provider: crate::nts::provider(SeededRandom::new(self.seed, &format!("nts/{host}/{}", d.starts))),
            time: Some(Arc::new(SimTime::new(self.start, self.shared.start))),
        };
        d.starts += 1;
        d.task = Some(tokio::task::spawn_local(Scoped::new(self.ids[host], async move {
            if let Err(e) = daemon::run_with_nts(&config, &network, &nts, &refclocks, &mut clock, seed, &mut sink, stop.notified()).await {
                tracing::error!(host, error = %e, "simulated daemon failed");
            }
        })));
    }

    async fn stop_daemon(&mut self, host: usize) {
        let Some(d) = self.daemons.get_mut(&host) else { return };
        if let Some(task) = d.task.take() {
            d.stop.notify_one();
            let _ = task.await;
        }
    }
}


/// The first whole nanosecond of the run at which [`Shared::elapsed`] reads
/// `next` or later. `as_nanos` truncates and `elapsed` rounds, so waking at
/// `next.as_nanos()` can read a fraction of a nanosecond before `next`: a
/// datagram due then is never delivered and the loop wakes at once, forever.
fn wake_nanos(next: NtpDuration) -> u64 {
    let mut nanos = next.as_nanos().max(0);
    while NtpDuration::from_nanos(nanos) < next {
        nanos += 1;
    }
    nanos as u64
}

async fn run_all(
    setup: SimSetup,
    recorder: Rc<RefCell<dyn Recorder>>,
    guard: &turmoil_net::EnterGuard,
    host_ids: Vec<turmoil_net::HostId>,
    by_ip: BTreeMap<IpAddr, usize>,
    mut reach: Reach,
) -> RunCounters {
    let shared = Shared::new();
    let mut clocks = Vec::new();
    let mut hosts = Hosts {
        ids: host_ids,
        daemons: BTreeMap::new(),
        scripted: Vec::new(),
        shared: shared.clone(),
        recorder: recorder.clone(),
        seed: setup.seed,
        start: setup.start,
    };
    for (i, host) in setup.hosts.into_iter().enumerate() {
        let mut oscillator = Oscillator::new(host.oscillator, SimRng::derive(setup.seed, &format!("oscillator/{i}")));
        if let Some(series) = host.frequency_series {
            oscillator = oscillator.with_frequency_series(series);
        }
        let mut clock = HostClock::new(
            i,
            host.address,
            setup.start,
            oscillator,
            host.noise,
            SimRng::derive(setup.seed, &format!("noise/{i}")),
            setup.sample_interval,
        );
        clock.set_utc_shifts(setup.utc_shifts.clone());
        let rec = recorder.clone();
        clock.set_sink(Box::new(move |h, s| rec.borrow_mut().sample(h, s)));
        let clock = Rc::new(RefCell::new(clock));
        clocks.push(clock.clone());
        let network = SimNetwork::new(hosts.ids[i], clock.clone(), shared.clone());
        match host.role {
            HostRole::Daemon(config) => {
                hosts.daemons.insert(
                    i,
                    DaemonHost {
                        config: Rc::new(*config),
                        refclock: host.refclock,
                        network,
                        clock,
                        stop: Rc::new(tokio::sync::Notify::new()),
                        task: None,
                        starts: 0,
                    },
                );
                hosts.start_daemon(i);
            }
            HostRole::Scripted { peer, port } => {
                let address = SocketAddr::new(host.address, port);
                let stop = Rc::new(tokio::sync::Notify::new());
                let task = tokio::task::spawn_local(Scoped::new(
                    hosts.ids[i],
                    scripted(peer, hosts.ids[i], network, clock, shared.clone(), address, stop.clone()),
                ));
                hosts.scripted.push((stop, task));
            }
        }
    }

    recorder.borrow_mut().attach(&clocks);
    let mut counters = RunCounters::default();
    let mut queue: BTreeMap<(NtpDuration, u64), turmoil_net::Packet> = BTreeMap::new();
    let mut seq = 0u64;
    let mut events = setup.events;
    events.sort_by_key(|(t, _)| *t);
    let mut next_event = 0;
    let mut egress = Vec::new();
    let end = setup.duration;
    loop {
        let now = shared.elapsed();
        counters.wakeups += 1;
        // Scenario events first: they apply from this instant.
        while next_event < events.len() && events[next_event].0 <= now {
            let event = events[next_event].1.clone();
            apply_event(&event, now, &mut reach, &clocks, &mut hosts).await;
            recorder.borrow_mut().scenario_event(now, &event);
            counters.scenario_events += 1;
            next_event += 1;
        }
        // Datagrams to other hosts wait in `shared`; turmoil-net's own egress
        // (which visits every host) is needed only for a host's sends to itself.
        shared.take_outbox(&mut egress);
        if shared.pending_sends.replace(0) > 0 {
            guard.egress_all(&mut egress);
        }
        if !egress.is_empty() {
            for pkt in egress.drain(..) {
                route(pkt, now, &by_ip, &mut reach, &clocks, &mut queue, &mut seq, &mut counters, &recorder);
            }
        }
        while let Some(entry) = queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), pkt) = entry.remove_entry();
            match &pkt.payload {
                Transport::Udp(d) => {
                    let dst = SocketAddr::new(pkt.dst, d.dst_port);
                    let src = SocketAddr::new(pkt.src, d.src_port);
                    shared.record_arrival(dst, src, &d.payload, at);
                }
                // The receiving kernel may answer (SYN-ACK, ACK) at its next egress.
                Transport::Tcp(_) => shared.tcp_activity(),
            }
            guard.deliver(pkt);
        }
        if now >= end {
            break;
        }
        let mut next = end;
        if let Some((&(t, _), _)) = queue.first_key_value() {
            next = next.min(t);
        }
        if let Some((t, _)) = events.get(next_event) {
            next = next.min(*t);
        }
        let wake = shared.start + std::time::Duration::from_nanos(wake_nanos(next));
        tokio::select! {
            biased;
            _ = shared.egress.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    // Fill the trace grid to the end, stop every host, let them finish.
    for c in &clocks {
        c.borrow_mut().fill_grid(end);
    }
    let daemons: Vec<usize> = hosts.daemons.keys().copied().collect();
    for host in daemons {
        hosts.stop_daemon(host).await;
    }
    for (stop, task) in hosts.scripted.drain(..) {
        stop.notify_one();
        let _ = task.await;
    }
    counters.adjustments = clocks.iter().map(|c| c.borrow().adjustments).collect();
    counters
}

/// A datagram an on-path attacker sends: arrival, (from, to) when not the
/// seen datagram's own, payload, what it is.
type AttackerDatagram = (NtpDuration, Option<(SocketAddr, SocketAddr)>, Vec<u8>, &'static str);

#[allow(clippy::too_many_arguments)]
fn route(
    pkt: turmoil_net::Packet,
    now: NtpDuration,
    by_ip: &BTreeMap<IpAddr, usize>,
    reach: &mut Reach,
    clocks: &[Rc<RefCell<HostClock>>],
    queue: &mut BTreeMap<(NtpDuration, u64), turmoil_net::Packet>,
    seq: &mut u64,
    counters: &mut RunCounters,
    recorder: &Rc<RefCell<dyn Recorder>>,
) {
    let d = match &pkt.payload {
        Transport::Udp(d) => d,
        Transport::Tcp(_) => return route_tcp(pkt, now, by_ip, reach, queue, seq),
    };
    counters.packets += 1;
    let src_host = by_ip.get(&pkt.src).copied().unwrap_or(usize::MAX);
    let dst_host = by_ip.get(&pkt.dst).copied();
    let src = SocketAddr::new(pkt.src, d.src_port);
    let dst = SocketAddr::new(pkt.dst, d.dst_port);
    let mut base_delay = NtpDuration::ZERO;
    let (mut arrivals, mut lost) = match dst_host.map(|dst| reach.path(src_host, dst)) {
        None => (Vec::new(), Some("no such host")),
        Some(Err(reason)) => (Vec::new(), Some(reason)),
        Some(Ok(path)) => {
            base_delay = NtpDuration::from_seconds_f64(path.config().delay_s);
            match path.transmit(now) {
                Fate::Lost(LossReason::Random) => (Vec::new(), Some("random loss")),
                Fate::Lost(LossReason::LinkDown) => (Vec::new(), Some("link down")),
                Fate::Lost(LossReason::Pattern) => (Vec::new(), Some("loss pattern")),
                fate => (fate.delays().map(|d| now + d).collect(), None),
            }
        }
    };
    // An on-path attacker sees what the link delivers.
    let mut extra: Vec<AttackerDatagram> = Vec::new();
    if let (Some(dh), Some(&first)) = (dst_host, arrivals.first()) {
        if let Some(attacker) = reach.attacker(src_host, dh) {
            let verdict = attacker.on_datagram(src, dst, &d.payload);
            let tick = NtpDuration::from_nanos(1000);
            for inj in verdict.inject {
                let (at, route) = match (inj.back, inj.after) {
                    (true, _) => (now + base_delay, Some((dst, src))),
                    (false, true) => (first + tick, None),
                    (false, false) => ((first - tick).max(now), None),
                };
                extra.push((at, route, inj.payload, inj.kind.label()));
            }
            if let Some((kind, payload)) = verdict.replace {
                extra.push((first, None, payload, kind.label()));
                arrivals.clear();
                lost = Some("attacker: replaced in flight");
            } else if verdict.hold {
                arrivals.clear();
                lost = Some("attacker: held back");
            }
        }
    }
    if lost.is_some() {
        counters.lost += 1;
    }
    let sender_local = clocks.get(src_host).map_or(NtpTime::PRIME_EPOCH, |c| c.borrow_mut().local_noiseless(now));
    recorder.borrow_mut().packet(&PacketRecord {
        src_host,
        dst_host,
        src,
        dst,
        sent: now,
        arrivals: arrivals.clone(),
        lost,
        sender_local,
        payload: d.payload.to_vec(),
        attack: None,
    });
    for at in arrivals {
        *seq += 1;
        queue.insert((at, *seq), pkt.clone());
    }
    for (at, route, payload, kind) in extra {
        let (from, to) = route.unwrap_or((src, dst));
        let mut forged = pkt.clone();
        forged.src = from.ip();
        forged.dst = to.ip();
        forged.payload = Transport::Udp(turmoil_net::UdpDatagram { src_port: from.port(), dst_port: to.port(), payload: payload.clone().into() });
        let (from_host, to_host) = (by_ip.get(&from.ip()).copied().unwrap_or(usize::MAX), by_ip.get(&to.ip()).copied());
        counters.packets += 1;
        recorder.borrow_mut().packet(&PacketRecord {
            src_host: from_host,
            dst_host: to_host,
            src: from,
            dst: to,
            sent: now,
            arrivals: vec![at],
            lost: None,
            // The attacker is not the sender: the sender's clock at this instant.
            sender_local: clocks.get(from_host).map_or(NtpTime::PRIME_EPOCH, |c| c.borrow_mut().local_noiseless(now)),
            payload,
            attack: Some(kind),
        });
        *seq += 1;
        queue.insert((at, *seq), forged);
    }
}

/// Queues a TCP segment: turmoil-net 0.1 neither reassembles nor (with the
/// harness's retransmit threshold) retransmits, so a segment on a live path
/// is never lost, duplicated or overtaken: it takes the path's base delay plus
/// its mean jitter, and arrives no earlier than the one before it. On a path
/// that is down (cut, host down, TCP blocked) it is dropped: the connection
/// then stalls until its owner's timeout, as over a black hole.
fn route_tcp(
    pkt: turmoil_net::Packet,
    now: NtpDuration,
    by_ip: &BTreeMap<IpAddr, usize>,
    reach: &mut Reach,
    queue: &mut BTreeMap<(NtpDuration, u64), turmoil_net::Packet>,
    seq: &mut u64,
) {
    let (Some(&src), Some(&dst)) = (by_ip.get(&pkt.src), by_ip.get(&pkt.dst)) else { return };
    if reach.tcp_blocked.contains(&src) || reach.tcp_blocked.contains(&dst) {
        return;
    }
    let Ok(path) = reach.path(src, dst) else { return };
    let config = path.config();
    let delay = NtpDuration::from_seconds_f64(config.delay_s + config.jitter.mean_s());
    let last = reach.tcp_last.entry((src, dst)).or_insert(NtpDuration::ZERO);
    let at = (now + delay).max(*last);
    *last = at;
    *seq += 1;
    queue.insert((at, *seq), pkt);
}

/// The same link seen from the other end.
fn reversed(config: &LinkConfig) -> LinkConfig {
    LinkConfig { forward: config.backward, backward: config.forward, up: config.up }
}

async fn apply_event(
    event: &SimEvent,
    now: NtpDuration,
    reach: &mut Reach,
    clocks: &[Rc<RefCell<HostClock>>],
    hosts: &mut Hosts,
) {
    let key = |a: usize, b: usize| (a.min(b), a.max(b));
    // Directions given from `a` to `b`, stored relative to (min, max).
    let oriented = |a: usize, b: usize, forward: bool, backward: bool| if a <= b { (forward, backward) } else { (backward, forward) };
    match event {
        SimEvent::CutHosts(set) => reach.cuts.push(set.clone()),
        SimEvent::HealHosts(set) => reach.cuts.retain(|c| c != set),
        SimEvent::CutLink { a, b, forward, backward } => {
            let (f, bk) = oriented(*a, *b, *forward, *backward);
            if let Some(l) = reach.links.get_mut(&key(*a, *b)) {
                l.forward_up &= !f;
                l.backward_up &= !bk;
            }
        }
        SimEvent::HealLink { a, b, forward, backward } => {
            let (f, bk) = oriented(*a, *b, *forward, *backward);
            if let Some(l) = reach.links.get_mut(&key(*a, *b)) {
                l.forward_up |= f;
                l.backward_up |= bk;
            }
        }
        SimEvent::HealAll => {
            reach.cuts.clear();
            for l in reach.links.values_mut() {
                l.forward_up = true;
                l.backward_up = true;
            }
        }
        SimEvent::SetLink { a, b, config } => {
            if let Some(l) = reach.links.get_mut(&key(*a, *b)) {
                let config = if a <= b { *config } else { reversed(config) };
                l.forward.set_config(config.forward);
                l.backward.set_config(config.backward);
            }
        }
        SimEvent::SetLinkAfter { a, b, config, packets, forward, backward } => {
            if let Some(l) = reach.links.get_mut(&key(*a, *b)) {
                let (config, forward, backward) = if a <= b { (*config, *forward, *backward) } else { (reversed(config), *backward, *forward) };
                if forward {
                    l.forward.set_config_after(*packets, config.forward);
                }
                if backward {
                    l.backward.set_config_after(*packets, config.backward);
                }
            }
        }
        SimEvent::StepClock { host, by_s } => {
            if let Some(c) = clocks.get(*host) {
                c.borrow_mut().external_step(now, NtpDuration::from_seconds_f64(*by_s));
            }
        }
        SimEvent::SetFrequency { host, frequency } => {
            if let Some(c) = clocks.get(*host) {
                let mut c = c.borrow_mut();
                c.fill_grid(now);
                c.oscillator_mut().set_frequency(now, *frequency);
            }
        }
        SimEvent::Stop { host } => {
            reach.down.insert(*host);
            hosts.stop_daemon(*host).await;
        }
        SimEvent::Start { host } => {
            reach.down.remove(host);
            hosts.start_daemon(*host);
        }
        SimEvent::KeDown { host } => {
            reach.tcp_blocked.insert(*host);
        }
        SimEvent::KeUp { host } => {
            reach.tcp_blocked.remove(host);
        }
    }
}

/// A scripted peer's loop: answer every datagram to `address`.
async fn scripted(
    mut peer: ScriptedPeer,
    id: turmoil_net::HostId,
    network: SimNetwork,
    clock: Rc<RefCell<HostClock>>,
    shared: Rc<Shared>,
    address: SocketAddr,
    stop: Rc<tokio::sync::Notify>,
) {
    let Ok(socket) = network.bind(address).await else { return };
    let socket = Rc::new(socket);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            biased;
            _ = stop.notified() => return,
            r = socket.recv(&mut buf) => {
                let Ok(r) = r else { return };
                let rx = r.rx_time.map_or_else(|| clock.borrow_mut().local_at(shared.elapsed()), |raw| clock.borrow().steered().time_at(raw));
                let tx = clock.borrow_mut().local_at(shared.elapsed());
                for (after, reply) in peer.respond_all(&buf[..r.len], rx, tx) {
                    if after.is_zero() {
                        let _ = socket.send_to(&reply, r.from).await;
                    } else {
                        // Later datagrams (a second reply, an unsolicited one) leave on their own.
                        let (socket, to) = (socket.clone(), r.from);
                        tokio::task::spawn_local(Scoped::new(id, async move {
                            tokio::time::sleep(after).await;
                            let _ = socket.send_to(&reply, to).await;
                        }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_reads_at_or_after_its_deadline_and_no_later_than_needed() {
        // Deadlines a fraction of a nanosecond past a whole one (2^-32 s
        // units): a wake-up at the truncated nanosecond read before them.
        for units in [0i64, 1, 2, 3, 4, 5, 7, 1 << 20, 83_499_999_999_999, 83_500_000_000_003, (19455 << 32) + 2_323_857_707] {
            let next = NtpDuration::from_bits(units);
            let n = wake_nanos(next);
            assert!(NtpDuration::from_nanos(n as i64) >= next, "{units}: {n} ns reads before the deadline");
            assert!(n == 0 || NtpDuration::from_nanos(n as i64 - 1) < next, "{units}: {n} ns is later than needed");
        }
    }
}
