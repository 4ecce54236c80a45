//! One scenario run from file to verdict: build the simulation from a
//! [`Scenario`], record its trace, compute each host's figures and check the
//! scenario's expectations.

use crate::harness::{simulate, HostRole, HostSetup, LinkSetup, PacketRecord, Recorder, SimEvent, SimSetup};
use crate::host_clock::{ClockSample, ReadNoise};
use crate::link::{LinkConfig, PathConfig};
use crate::oscillator::{OscillatorConfig, SineConfig};
use crate::peers::ScriptedPeer;
use crate::rng::SimRng;
use crate::scenario::{self, Action, Cut, Direction, Expectation, LinkPatch, Metric, Role, Scenario};
use crate::stats::HostStats;
use crate::trace::{self, TraceWriter};
use ntplab_daemon::daemon::{DaemonEvent, Peer, SampleFigures};
use ntplab_proto::discipline::Action as ClockAction;
use ntplab_proto::source::SourceEvent;
use ntplab_proto::time::{NtpDuration, NtpTime};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// |offset| below this counts as synchronized for `sync_time`: 1 ms.
pub const SYNC_THRESHOLD_S: f64 = 1e-3;

fn dur(d: Duration) -> NtpDuration {
    NtpDuration::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A scenario link direction as the simulator's path model takes it (also
/// the hardware lab's link emulator's).
pub fn path_config(p: &scenario::LinkParams) -> PathConfig {
    PathConfig {
        delay_s: p.delay.as_secs_f64(),
        jitter: p.jitter,
        loss: p.loss,
        duplicate: p.duplicate,
        reorder: p.reorder,
        reorder_delay_s: p.reorder_delay.as_secs_f64(),
        pass_every: p.pass_every,
    }
}

fn directions(d: Direction) -> (bool, bool) {
    match d {
        Direction::Both => (true, true),
        Direction::Forward => (true, false),
        Direction::Backward => (false, true),
    }
}

/// The run's NTS certificates (see [`crate::nts::Pki`]).
struct Identities {
    servers: std::collections::BTreeMap<usize, ntplab_daemon::nts::tls::ServerIdentity>,
    roots: Option<std::sync::Arc<ntplab_daemon::nts::rustls::RootCertStore>>,
}

impl Identities {
    /// Gives host `i`'s daemon its certificate and its NTS sources the run's trust anchors.
    fn apply(&self, i: usize, daemon: &mut ntplab_daemon::config::DaemonConfig) {
        if let Some(nts) = daemon.nts.as_mut() {
            nts.identity = self.servers.get(&i).cloned();
        }
        for source in &mut daemon.sources {
            if let Some(nts) = source.nts.as_mut() {
                nts.roots = self.roots.clone();
            }
        }
    }
}

/// One certificate per host serving NTS, for its address and name, from the
/// seed. (Making one cannot fail for names the scenario validated; if it
/// did, the daemon would fail at start, saying it cannot read its certificate.)
fn nts_identities(s: &Scenario) -> Identities {
    let mut pki = crate::nts::Pki::default();
    let mut servers = std::collections::BTreeMap::new();
    for (i, h) in s.hosts.iter().enumerate() {
        let Role::Ntp(n) = &h.role else { continue };
        let Some(kind) = n.nts_certificate else { continue };
        let names = [h.address.to_string(), h.name.clone()];
        match pki.server(s.seed, &format!("{i}"), &names, kind, s.start) {
            Ok(identity) => {
                servers.insert(i, identity);
            }
            Err(e) => tracing::error!(host = %h.name, error = %e, "cannot make the NTS certificate"),
        }
    }
    let roots = match pki.roots() {
        Ok(r) => Some(std::sync::Arc::new(r)),
        Err(e) => {
            tracing::error!(error = %e, "cannot make the NTS trust anchors");
            None
        }
    };
    Identities { servers, roots }
}

/// The harness setup of a scenario (with its seed).
pub fn setup(s: &Scenario) -> SimSetup {
    let identities = nts_identities(s);
    let hosts = s
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let sine = (h.clock.sine.amplitude != 0.0 && h.clock.sine.period_s > 0.0).then_some(SineConfig {
                amplitude: h.clock.sine.amplitude,
                period_s: h.clock.sine.period_s,
                phase_rad: h.clock.sine.phase_rad,
            });
            HostSetup {
                name: h.name.clone(),
                address: h.address,
                role: match &h.role {
                    Role::Ntp(n) => {
                        let mut daemon = n.daemon.clone();
                        identities.apply(i, &mut daemon);
                        // A host serving its own clock follows UTC: it knows the leap.
                        if let Some(local) = daemon.local.as_mut() {
                            local.leap = local.leap.or(s.leap_seconds.first().copied());
                        }
                        HostRole::Daemon(Box::new(daemon))
                    }
                    Role::Scripted(p) => HostRole::Scripted {
                        peer: ScriptedPeer::new(p.behavior, p.stratum, SimRng::peer_seed(s.seed, i)),
                        port: p.port,
                    },
                },
                oscillator: OscillatorConfig {
                    offset_s: h.clock.offset_s,
                    frequency: h.clock.frequency,
                    wander: h.clock.wander,
                    sine,
                    ..OscillatorConfig::default()
                },
                frequency_series: h.clock.frequency_file.as_ref().map(|f| f.values.clone()),
                noise: ReadNoise { noise_s: h.clock.noise_s, precision_s: h.clock.precision_s },
                refclock: h.refclock.clone(),
            }
        })
        .collect();
    let links: Vec<LinkSetup> = s
        .links
        .iter()
        .map(|l| LinkSetup {
            a: l.hosts[0],
            b: l.hosts[1],
            config: LinkConfig { forward: path_config(&l.forward), backward: path_config(&l.backward), up: true },
            attacker: l.attacker,
        })
        .collect();
    let mut current: Vec<scenario::Link> = s.links.clone();
    let events = s
        .events
        .iter()
        .filter_map(|e| {
            let at = dur(e.at);
            let event = match &e.action {
                Action::Partition(Cut::Hosts(h)) => SimEvent::CutHosts(h.clone()),
                Action::Partition(Cut::Link { link, direction }) => {
                    let [a, b] = s.links.get(*link)?.hosts;
                    let (forward, backward) = directions(*direction);
                    SimEvent::CutLink { a, b, forward, backward }
                }
                Action::Heal(None) => SimEvent::HealAll,
                Action::Heal(Some(Cut::Hosts(h))) => SimEvent::HealHosts(h.clone()),
                Action::Heal(Some(Cut::Link { link, direction })) => {
                    let [a, b] = s.links.get(*link)?.hosts;
                    let (forward, backward) = directions(*direction);
                    SimEvent::HealLink { a, b, forward, backward }
                }
                Action::SetLink { link, forward, backward, after_packets } => {
                    let l = current.get_mut(*link)?;
                    l.forward = forward.apply(&l.forward);
                    l.backward = backward.apply(&l.backward);
                    let config = LinkConfig { forward: path_config(&l.forward), backward: path_config(&l.backward), up: true };
                    match after_packets {
                        None => SimEvent::SetLink { a: l.hosts[0], b: l.hosts[1], config },
                        Some(packets) => SimEvent::SetLinkAfter {
                            a: l.hosts[0],
                            b: l.hosts[1],
                            config,
                            packets: *packets,
                            forward: **forward != LinkPatch::default(),
                            backward: **backward != LinkPatch::default(),
                        },
                    }
                }
                Action::StepClock { host, by_s } => SimEvent::StepClock { host: *host, by_s: *by_s },
                Action::SetFrequency { host, frequency } => SimEvent::SetFrequency { host: *host, frequency: *frequency },
                Action::Stop { host } => SimEvent::Stop { host: *host },
                Action::Start { host } => SimEvent::Start { host: *host },
                Action::KeDown { host } => SimEvent::KeDown { host: *host },
                Action::KeUp { host } => SimEvent::KeUp { host: *host },
            };
            Some((at, event))
        })
        .collect();
    SimSetup {
        start: s.start,
        duration: dur(s.duration),
        seed: s.seed,
        sample_interval: dur(s.sample_interval),
        hosts,
        links,
        events,
        utc_shifts: utc_shifts(s),
    }
}

/// The scenario's leap seconds as UTC's shifts from true time: from this
/// time into the run on, UTC on the NTP timescale is this far from true
/// (SI) time (the lab judges its clocks with the same list).
pub fn utc_shifts(s: &Scenario) -> Vec<(NtpDuration, NtpDuration)> {
    s.leap_seconds
        .iter()
        .map(|l| {
            let at = l.at - s.start;
            match l.kind {
                // A deleted 23:59:59: UTC jumps a second ahead as it starts.
                ntplab_proto::wire::v4::LeapIndicator::Delete => (at - NtpDuration::from_seconds(1), NtpDuration::from_seconds(1)),
                // 23:59:60 repeats 23:59:59 on the NTP timescale: UTC falls a second behind.
                _ => (at, NtpDuration::from_seconds(-1)),
            }
        })
        .collect()
}

/// What one host did and how well it kept time.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// Host name.
    pub name: String,
    /// Whether it runs the daemon.
    pub daemon: bool,
    /// Offset and frequency statistics.
    pub stats: HostStats,
    /// Datagrams it received.
    pub packets_received: u64,
    /// Whether its daemon had a system peer at the end.
    pub synced: bool,
    /// True time since the start at which its daemon first had a system peer
    /// (or served its own clock), seconds; None: it never synchronized.
    pub first_synced_s: Option<f64>,
}

impl HostReport {
    /// Time from the start until the host synchronized for good, seconds:
    /// the later of its daemon's first synchronization and the last sample
    /// off true time by more than [`SYNC_THRESHOLD_S`]. None when it never
    /// synchronized, or was that far off at the end.
    pub fn sync_time(&self) -> Option<f64> {
        Some(self.stats.sync_time()?.max(self.first_synced_s?))
    }

    /// Why [`HostReport::sync_time`] has no value, when it has none.
    pub fn no_sync_time_reason(&self) -> Option<String> {
        match (self.first_synced_s, self.stats.sync_time()) {
            (None, _) => Some(format!("`{}` never synchronized (its daemon never had a system peer)", self.name)),
            (Some(_), None) => Some(format!("`{}` was more than {} ms off true time at the end of the run", self.name, SYNC_THRESHOLD_S * 1e3)),
            (Some(_), Some(_)) => None,
        }
    }
}

/// One expectation's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The expectation.
    pub expectation: Expectation,
    /// Host name.
    pub host: String,
    /// The measured value (None: never happened, e.g. no sync).
    pub value: Option<f64>,
    /// Why there is no value, when there is none and the reason is known.
    pub missing: Option<String>,
    /// Whether it was met.
    pub passed: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Scenario name.
    pub name: String,
    /// Seed used.
    pub seed: u64,
    /// Per host, in file order.
    pub hosts: Vec<HostReport>,
    /// Per expectation, in file order.
    pub verdicts: Vec<Verdict>,
    /// Datagrams sent and lost in all.
    pub packets: (u64, u64),
    /// Wall-clock time the simulation took.
    pub wall: Duration,
    /// Trace files written, when an output directory was given.
    pub trace: Option<trace::TraceFiles>,
}

impl RunReport {
    /// Whether every expectation was met.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }
}

struct HostState {
    /// When its daemon first had a system peer (or served its own clock).
    first_synced: Option<NtpDuration>,
    poll_log2: i8,
    /// Its selections, kiss codes and stratum.
    tally: DaemonTally,
}

/// What a daemon's events say about its selections, the kiss codes it
/// received and the stratum it serves (the metrics `selections`,
/// `kiss_codes`, `ntsn` and `max_stratum`). The simulator keeps one per
/// host; `ntplab serve --events` keeps one for its own daemon and writes it
/// out whenever it changes, for the hardware lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonTally {
    /// Whether the last selection chose a system peer (or the host serves
    /// its own clock and has no sources).
    pub synced: bool,
    /// The stratum of the last selection: the system peer's + 1 (1 for a
    /// reference clock), 16 without one.
    pub stratum: u8,
    /// The stratum each source's last sample carried.
    peer_stratum: BTreeMap<SocketAddr, u8>,
    /// The local reference's stratum, served while unsynchronized.
    pub local: Option<u8>,
    /// The system peer of the last selection.
    system_peer: Option<Peer>,
    /// Times a selection chose a system peer other than the one it had.
    pub selections: u64,
    /// Kiss-o'-death replies received (any code, NTSN included).
    pub kiss_codes: u64,
    /// NTSN kiss codes received.
    pub ntsn: u64,
    /// Clock updates refused by `[clock] max_change`, the one that ends the
    /// daemon included (as [`HostStats::max_change_exceeded`]).
    pub max_change_exceeded: u64,
}

impl DaemonTally {
    /// A daemon with the local reference `local` (stratum), and without
    /// sources when `own_clock`: it then serves its own clock from the start.
    pub fn new(local: Option<u8>, own_clock: bool) -> DaemonTally {
        let serves = local.filter(|_| own_clock);
        DaemonTally {
            synced: serves.is_some(),
            stratum: serves.unwrap_or(16),
            peer_stratum: BTreeMap::new(),
            local,
            system_peer: None,
            selections: 0,
            kiss_codes: 0,
            ntsn: 0,
            max_change_exceeded: 0,
        }
    }

    /// The stratum the host serves: its system peer's + 1, else its local
    /// reference's; `None` when unsynchronized.
    pub fn served_stratum(&self) -> Option<u8> {
        if self.synced {
            Some(self.stratum)
        } else {
            self.local
        }
    }

    /// Takes one event of the daemon; true when a count or the stratum changed.
    pub fn event(&mut self, event: &DaemonEvent) -> bool {
        let before = (self.selections, self.kiss_codes, self.ntsn, self.max_change_exceeded, self.synced, self.stratum);
        match event {
            DaemonEvent::SourceReply { source, event: SourceEvent::Sample(m) } => {
                self.peer_stratum.insert(*source, m.stratum);
            }
            DaemonEvent::SourceReply { event: e @ (SourceEvent::RateLimited { .. } | SourceEvent::Demobilize(_) | SourceEvent::NtsNak | SourceEvent::Kiss(_)), .. } => {
                self.kiss_codes += 1;
                self.ntsn += u64::from(matches!(e, SourceEvent::NtsNak));
            }
            DaemonEvent::Selection { system_peer, .. } => {
                if system_peer.is_some() && *system_peer != self.system_peer {
                    self.selections += 1;
                }
                self.system_peer = *system_peer;
                self.synced = system_peer.is_some();
                self.stratum = match system_peer {
                    Some(Peer::Refclock { .. }) => 1,
                    Some(Peer::Source(p)) => self.peer_stratum.get(p).map_or(16, |s| s.saturating_add(1).min(16)),
                    None => 16,
                };
            }
            DaemonEvent::MaxChange { .. } => self.max_change_exceeded += 1,
            _ => {}
        }
        before != (self.selections, self.kiss_codes, self.ntsn, self.max_change_exceeded, self.synced, self.stratum)
    }
}

struct RunRecorder {
    start: NtpTime,
    clocks: Vec<Rc<RefCell<crate::host_clock::HostClock>>>,
    /// Per expectation and host it is about (one, or each member of a group):
    /// the host and its statistics counted from the expectation's `after`.
    expect_stats: Vec<(usize, HostStats)>,
    /// Parallel to `expect_stats`: the highest stratum served from `after`.
    expect_max_stratum: Vec<Option<u8>>,
    /// Per host: its indices in `expect_stats`.
    expect_by_host: Vec<Vec<usize>>,
    /// Per expectation: its range in `expect_stats`.
    expect_slots: Vec<std::ops::Range<usize>>,
    names: Vec<String>,
    hosts: Vec<HostStats>,
    state: Vec<HostState>,
    received: Vec<u64>,
    trace: Option<TraceWriter>,
    pending: BTreeMap<(NtpDuration, u64), PacketRecord>,
    seq: u64,
    error: Option<std::io::Error>,
}

impl RunRecorder {
    /// Takes a daemon event into host `host`'s tally and its counts.
    fn tally(&mut self, host: usize, event: &DaemonEvent) {
        if let (Some(st), Some(h)) = (self.state.get_mut(host), self.hosts.get_mut(host)) {
            st.tally.event(event);
            (h.selections, h.kiss_codes, h.ntsn, h.max_change_exceeded) =
                (st.tally.selections, st.tally.kiss_codes, st.tally.ntsn, st.tally.max_change_exceeded);
        }
    }

    fn write_packet(&mut self, r: &PacketRecord) {
        let Some(trace) = self.trace.as_mut() else { return };
        let receiver_local = match (r.arrivals.first(), r.dst_host.and_then(|h| self.clocks.get(h))) {
            (Some(at), Some(clock)) => Some(clock.borrow_mut().local_noiseless(*at)),
            _ => None,
        };
        let fate = match (r.arrivals.first(), r.lost) {
            (Some(at), _) => trace::Fate::Delivered {
                received: self.start + *at,
                receiver_local: receiver_local.unwrap_or(self.start + *at),
            },
            (None, reason) => trace::Fate::Lost { reason: reason.unwrap_or("lost") },
        };
        let p = trace::Packet {
            sent: self.start + r.sent,
            sender_local: r.sender_local,
            src: r.src,
            dst: r.dst,
            fate,
            payload: &r.payload,
            attack: r.attack,
        };
        if let Err(e) = trace.packet(&p) {
            self.error.get_or_insert(e);
        }
    }

    fn flush_packets(&mut self, until: Option<NtpDuration>) {
        while let Some(entry) = self.pending.first_entry() {
            if until.is_some_and(|u| entry.key().0 > u) {
                break;
            }
            let r = entry.remove();
            self.write_packet(&r);
        }
    }

    fn event(&mut self, elapsed: NtpDuration, host: Option<usize>, kind: &str, details: serde_json::Value) {
        let Some(trace) = self.trace.as_mut() else { return };
        let host = host.and_then(|h| self.names.get(h)).map(String::as_str);
        let e = trace::Event { time: self.start + elapsed, host, kind, details: &details };
        if let Err(e) = trace.event(&e) {
            self.error.get_or_insert(e);
        }
    }
}

impl Recorder for RunRecorder {
    fn attach(&mut self, clocks: &[Rc<RefCell<crate::host_clock::HostClock>>]) {
        self.clocks = clocks.to_vec();
    }

    fn sample(&mut self, host: usize, sample: &ClockSample) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.add(sample);
        }
        let served = self.state.get(host).and_then(|s| s.tally.served_stratum());
        for &i in self.expect_by_host.get(host).map_or(&[][..], Vec::as_slice) {
            let (st, max) = (&mut self.expect_stats[i].1, &mut self.expect_max_stratum[i]);
            st.add(sample);
            if sample.elapsed >= st.converged_after {
                *max = (*max).max(served);
            }
        }
        if let (Some(trace), Some(state)) = (self.trace.as_mut(), self.state.get(host)) {
            let s = trace::Sample {
                time: self.start + sample.elapsed,
                host: &self.names[host],
                offset_s: sample.offset_s,
                frequency_error: sample.frequency_error,
                synced: state.tally.synced,
                stratum: state.tally.stratum,
                poll_log2: state.poll_log2,
            };
            if let Err(e) = trace.sample(&s) {
                self.error.get_or_insert(e);
            }
        }
    }

    fn packet(&mut self, record: &PacketRecord) {
        if let Some(h) = self.hosts.get_mut(record.src_host) {
            h.packets_sent += 1;
        }
        if let (Some(dst), false) = (record.dst_host, record.arrivals.is_empty()) {
            if let Some(n) = self.received.get_mut(dst) {
                *n += record.arrivals.len() as u64;
            }
        }
        // Frames go to the capture in order of arrival: nothing arrives before
        // the send time of the packet being recorded now.
        self.flush_packets(Some(record.sent));
        if record.arrivals.len() <= 1 {
            self.seq += 1;
            let key = record.arrivals.first().copied().unwrap_or(record.sent);
            self.pending.insert((key, self.seq), record.clone());
            return;
        }
        // A duplicated datagram reaches its receiver once per copy: one line
        // and one capture frame per arrival, as a capture at the receiver
        // shows it (same octets and send time, each copy's arrival time).
        for &at in &record.arrivals {
            self.seq += 1;
            self.pending.insert((at, self.seq), PacketRecord { arrivals: vec![at], ..record.clone() });
        }
    }

    fn daemon_event(&mut self, host: usize, elapsed: NtpDuration, local: NtpTime, event: &DaemonEvent) {
        // A datagram's receiver_local is read when it is written, with the
        // receiver's clock steering as it is then: write those that have
        // arrived before a daemon acts on them (a clock update follows its
        // sample event), not when the next datagram is sent, perhaps after
        // hours of slewing.
        self.flush_packets(Some(elapsed));
        let (kind, details) = match event {
            DaemonEvent::RequestSent { .. } | DaemonEvent::Served { .. } => return,
            DaemonEvent::SourceReply { event: SourceEvent::Sample(_), .. } => {
                self.tally(host, event);
                return;
            }
            DaemonEvent::SourceReply { .. } => {
                self.tally(host, event);
                ("source_reply", source_reply_details(event).unwrap_or_default())
            }
            DaemonEvent::Selection { .. } => {
                self.tally(host, event);
                if let Some(st) = self.state.get_mut(host) {
                    if st.tally.synced && st.first_synced.is_none() {
                        st.first_synced = Some(elapsed);
                    }
                }
                ("selection", selection_details(event).unwrap_or_default())
            }
            DaemonEvent::RefclockSample { refclock, sample } => (
                "refclock_sample",
                serde_json::json!({
                    "refclock": refclock.to_string(),
                    "offset_s": sample.offset.to_seconds_f64(),
                    "dispersion_s": sample.dispersion.to_seconds_f64(),
                    "samples_used": sample.samples_used,
                    "outliers_rejected": sample.outliers_rejected,
                }),
            ),
            DaemonEvent::Clock { action, .. } => {
                if let (ClockAction::Step { .. }, Some(h)) = (action, self.hosts.get_mut(host)) {
                    h.steps += 1;
                }
                let kind = match action {
                    ClockAction::Step { .. } => "step",
                    ClockAction::Slew { .. } => "slew",
                    ClockAction::Panic { .. } => "panic",
                    ClockAction::Ignore(_) => "ignore",
                };
                (kind, serde_json::json!({ "action": format!("{action:?}") }))
            }
            DaemonEvent::MaxChange { adjustment, limit, giving_up } => {
                self.tally(host, event);
                (
                    "max_change",
                    serde_json::json!({ "adjustment_s": adjustment.to_seconds_f64(), "limit_s": limit, "giving_up": giving_up }),
                )
            }
            DaemonEvent::ClockWentBack { by } => {
                ("clock_went_back", serde_json::json!({ "by_s": by.to_seconds_f64() }))
            }
            DaemonEvent::PollChanged { poll_log2 } => {
                if let Some(st) = self.state.get_mut(host) {
                    st.poll_log2 = *poll_log2;
                }
                ("poll", serde_json::json!({ "poll_log2": poll_log2 }))
            }
            DaemonEvent::LeapArmed { leap, .. } => ("leap_armed", serde_json::json!({ "leap": format!("{leap:?}") })),
            DaemonEvent::SourceDropped { source } => ("source_dropped", serde_json::json!({ "source": source.to_string() })),
            DaemonEvent::SourceIsThisHost { source } => {
                ("source_is_this_host", serde_json::json!({ "source": source.to_string() }))
            }
            DaemonEvent::SourceLoop { source, reason } => (
                "source_loop",
                serde_json::json!({ "source": source.to_string(), "reason": format!("{reason:?}") }),
            ),
            DaemonEvent::Sample { source, sample } => ("sample", sample_details(*source, sample)),
            DaemonEvent::NtsKe { .. } => ("nts_ke", nts_ke_details(event).unwrap_or_default()),
        };
        let mut details = details;
        details["local_time"] = serde_json::Value::String(local.rfc3339().to_string());
        self.event(elapsed, Some(host), kind, details);
    }

    fn scenario_event(&mut self, elapsed: NtpDuration, event: &SimEvent) {
        self.event(elapsed, None, "scenario", serde_json::json!({ "event": format!("{event:?}") }));
    }
}

/// The `details` of a `tally` line of `ntplab serve --events` (what a
/// [`DaemonTally`] says after a change): `selections`, `kiss_codes`, `ntsn`,
/// and `served_stratum` (null when unsynchronized without a local reference).
pub fn tally_details(t: &DaemonTally) -> serde_json::Value {
    serde_json::json!({
        "selections": t.selections,
        "kiss_codes": t.kiss_codes,
        "ntsn": t.ntsn,
        "max_change_exceeded": t.max_change_exceeded,
        "served_stratum": t.served_stratum()
    })
}

/// The `details` of a `source_reply` event (a [`DaemonEvent::SourceReply`]
/// that gave no sample: a rejection, a kiss; None for other events): the
/// source and what its reply did. (Also what `ntplab serve --events`
/// writes, which the hardware lab reads into its trace.)
pub fn source_reply_details(event: &DaemonEvent) -> Option<serde_json::Value> {
    match event {
        DaemonEvent::SourceReply { event: SourceEvent::Sample(_), .. } => None,
        DaemonEvent::SourceReply { source, event: e } => Some(serde_json::json!({ "source": source.to_string(), "event": format!("{e:?}") })),
        _ => None,
    }
}

/// The `details` of a `selection` event (a [`DaemonEvent::Selection`]; None
/// for other events): the system peer (null: none), the sources flagged as
/// falsetickers and the combined offset. (Also what `ntplab serve --events`
/// writes, which the hardware lab reads into its trace.)
pub fn selection_details(event: &DaemonEvent) -> Option<serde_json::Value> {
    let DaemonEvent::Selection { system_peer, falsetickers, offset } = event else { return None };
    Some(serde_json::json!({
        "system_peer": system_peer.map(|p| p.to_string()),
        "falsetickers": falsetickers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "offset_s": offset.map(|o| o.to_seconds_f64()),
    }))
}

/// The `details` of an `nts_ke` event (a [`DaemonEvent::NtsKe`]; None for
/// other events): source, AEAD, cookies, error and, when it succeeded, TLS
/// version, ALPN and the records of request and response. (Also what
/// `ntplab serve --events` writes, which the hardware lab reads into its trace.)
pub fn nts_ke_details(event: &DaemonEvent) -> Option<serde_json::Value> {
    let DaemonEvent::NtsKe { source, aead, cookies, error, transcript } = event else { return None };
    let mut d = serde_json::json!({ "source": source.to_string(), "aead": aead, "cookies": cookies, "error": error });
    if let Some(t) = transcript {
        d["tls"] = serde_json::json!(t.tls_version);
        d["alpn"] = serde_json::json!(t.alpn);
        d["request"] = ke_records(&t.request);
        d["response"] = ke_records(&t.response);
    }
    Some(d)
}

/// NTS-KE records for an `nts_ke` event: type, critical bit, body length,
/// and the public lists and names (never cookie octets).
fn ke_records(records: &[ntplab_proto::nts::RecordSummary]) -> serde_json::Value {
    records
        .iter()
        .map(|r| {
            let mut o = serde_json::json!({ "type": r.kind, "critical": r.critical, "len": r.body_len });
            if !r.values.is_empty() {
                o["values"] = serde_json::json!(r.values);
            }
            if let Some(t) = &r.text {
                o["text"] = serde_json::json!(t);
            }
            o
        })
        .collect()
}

/// The `details` of a `sample` event: the client's offset, delay and
/// dispersion in seconds, the four timestamps it used (RFC 3339; T2 and T3
/// resolved to the era nearest T1), the client's precision in seconds and,
/// for an interleaved sample (RFC 9769), `"interleaved": true`.
fn sample_details(source: SocketAddr, s: &SampleFigures) -> serde_json::Value {
    let time = |t: NtpTime| t.rfc3339().to_string();
    serde_json::json!({
        "source": source.to_string(),
        "offset_s": s.offset.to_seconds_f64(),
        "delay_s": s.delay.to_seconds_f64(),
        "dispersion_s": s.dispersion.to_seconds_f64(),
        "t1": time(s.t1),
        "t2": time(s.t2.resolve(s.t1)),
        "t3": time(s.t3.resolve(s.t1)),
        "t4": time(s.t4),
        "local_precision_s": 2f64.powi(i32::from(s.local_precision_log2)),
        "interleaved": s.interleaved,
    })
}

/// Runs a scenario; with `out`, writes the trace there.
pub fn run(s: &Scenario, out: Option<&Path>) -> Result<RunReport, String> {
    refuse_other_implementations(s)?;
    let trace = match out {
        Some(dir) => Some(TraceWriter::create(dir, s.start).map_err(|e| format!("cannot write the trace to {}: {e}", dir.display()))?),
        None => None,
    };
    let converged = dur(s.converged_after);
    let mut expect_stats = Vec::new();
    let mut expect_slots = Vec::with_capacity(s.expectations.len());
    let mut expect_by_host = vec![Vec::new(); s.hosts.len()];
    for e in &s.expectations {
        let first = expect_stats.len();
        let members = if e.members.is_empty() { std::slice::from_ref(&e.host) } else { e.members.as_slice() };
        for &h in members {
            expect_by_host[h].push(expect_stats.len());
            expect_stats.push((h, HostStats::new(dur(e.after), e.within.unwrap_or(SYNC_THRESHOLD_S))));
        }
        expect_slots.push(first..expect_stats.len());
    }
    let recorder = Rc::new(RefCell::new(RunRecorder {
        start: s.start,
        clocks: Vec::new(),
        expect_max_stratum: vec![None; expect_stats.len()],
        expect_stats,
        expect_by_host,
        expect_slots,
        names: s.hosts.iter().map(|h| h.name.clone()).collect(),
        hosts: s.hosts.iter().map(|_| HostStats::new(converged, SYNC_THRESHOLD_S)).collect(),
        state: s
            .hosts
            .iter()
            .map(|h| {
                // A server of its own clock (local stratum) is synchronized from the start.
                let local = match &h.role {
                    Role::Ntp(n) if n.sources.is_empty() => n.daemon.local.map(|l| l.stratum),
                    _ => None,
                };
                let fallback = match &h.role {
                    Role::Ntp(n) => n.daemon.local.map(|l| l.stratum),
                    Role::Scripted(_) => None,
                };
                HostState { first_synced: local.map(|_| NtpDuration::ZERO), poll_log2: 6, tally: DaemonTally::new(fallback, local.is_some()) }
            })
            .collect(),
        received: vec![0; s.hosts.len()],
        trace,
        pending: BTreeMap::new(),
        seq: 0,
        error: None,
    }));
    let wall = std::time::Instant::now();
    let counters = simulate(setup(s), recorder.clone()).map_err(|e| e.to_string())?;
    let wall = wall.elapsed();
    let mut rec = recorder.borrow_mut();
    rec.flush_packets(None);
    if let Some(e) = rec.error.take() {
        return Err(format!("writing the trace failed: {e}"));
    }
    let trace = match rec.trace.take() {
        Some(t) => Some(t.finish().map_err(|e| format!("writing the trace failed: {e}"))?),
        None => None,
    };
    let hosts: Vec<HostReport> = s
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| HostReport {
            name: h.name.clone(),
            daemon: matches!(h.role, Role::Ntp(_)),
            stats: rec.hosts[i].clone(),
            packets_received: rec.received[i],
            synced: rec.state[i].tally.synced,
            first_synced_s: rec.state[i].first_synced.map(|t| t.to_seconds_f64()),
        })
        .collect();
    let verdicts = s
        .expectations
        .iter()
        .zip(&rec.expect_slots)
        .map(|(e, slots)| {
            let values: Vec<Option<f64>> =
                slots.clone().map(|i| value_of(e.metric, &hosts[rec.expect_stats[i].0], &rec.expect_stats[i].1, rec.expect_max_stratum[i])).collect();
            let members: Vec<usize> = slots.clone().map(|i| rec.expect_stats[i].0).collect();
            judge(e, &hosts, &members, &values)
        })
        .collect();
    Ok(RunReport {
        name: s.name.clone(),
        seed: s.seed,
        hosts,
        verdicts,
        packets: (counters.packets, counters.lost),
        wall,
        trace,
    })
}

/// The simulator runs ntplab's daemon only: a host with another `impl` is
/// refused, naming it.
pub fn refuse_other_implementations(s: &Scenario) -> Result<(), String> {
    match s.hosts.iter().find(|h| h.implementation != crate::scenario::Implementation::Ntplab) {
        Some(h) => Err(format!(
            "{}: host `{}` has impl = \"{}\": the simulator runs only ntplab's daemon; run this scenario in the hardware lab (`ntplab lab run`)",
            s.origin,
            h.name,
            h.implementation.name()
        )),
        None => Ok(()),
    }
}

/// One host's value of a metric (`window`: its statistics from the expectation's `after`).
/// (Also the hardware lab's: the same figures from the same statistics.)
pub fn value_of(metric: Metric, h: &HostReport, window: &HostStats, max_stratum: Option<u8>) -> Option<f64> {
    match metric {
        Metric::RmsOffset => window.rms_offset(),
        Metric::MaxOffset => window.max_offset(),
        // As HostReport::sync_time, with the expectation's `within`.
        Metric::SyncTime => Some(window.sync_time()?.max(h.first_synced_s?)),
        Metric::MaxFrequencyError => window.max_frequency_error(),
        Metric::RmsFrequencyError => window.rms_frequency_error(),
        Metric::PacketsSent => Some(h.stats.packets_sent as f64),
        Metric::PacketsReceived => Some(h.packets_received as f64),
        Metric::Steps => Some(h.stats.steps as f64),
        Metric::MaxStratum => max_stratum.map(f64::from),
        Metric::Selections => Some(h.stats.selections as f64),
        Metric::KissCodes => Some(h.stats.kiss_codes as f64),
        Metric::Ntsn => Some(h.stats.ntsn as f64),
        Metric::MaxChangeExceeded => Some(h.stats.max_change_exceeded as f64),
        Metric::Synchronized => Some(if window.sync_time().zip(h.first_synced_s).is_some() { 1.0 } else { 0.0 }),
    }
}

/// The verdict on an expectation from its host's value, or its group's
/// values (`members[i]` has `values[i]`).
pub fn judge(e: &Expectation, hosts: &[HostReport], members: &[usize], values: &[Option<f64>]) -> Verdict {
    let (value, host) = match (e.over, &e.group) {
        (Some(over), Some(group)) => (over.summarize(values), format!("{group} ({} over {})", over.name(), values.len())),
        _ => (values.first().copied().flatten(), hosts[e.host].name.clone()),
    };
    let passed = value.is_some_and(|v| e.max.is_none_or(|m| v <= m) && e.min.is_none_or(|m| v >= m));
    // Why there is no value: the first host (of the group) without one.
    let missing = match value {
        Some(_) => None,
        None => members.iter().zip(values).find(|(_, v)| v.is_none()).map(|(&m, _)| {
            let h = &hosts[m];
            let why = match (e.metric, e.within) {
                (Metric::SyncTime, None) => h.no_sync_time_reason(),
                (Metric::SyncTime, Some(_)) if h.first_synced_s.is_none() => h.no_sync_time_reason(),
                (Metric::SyncTime, Some(w)) => Some(format!("`{}` was more than {w} s (`within`) off true time at the end of the run", h.name)),
                _ => None,
            };
            why.unwrap_or_else(|| format!("no samples of `{}` after {} s", h.name, e.after.as_secs_f64()))
        }),
    };
    Verdict { expectation: e.clone(), host, value, missing, passed }
}

#[cfg(test)]
mod tally_tests {
    use super::*;

    #[test]
    fn the_tally_counts_every_max_change_refusal_the_last_included_and_writes_it() {
        let mut t = DaemonTally::new(None, false);
        let refusal = |giving_up| DaemonEvent::MaxChange { adjustment: NtpDuration::from_seconds_f64(-1.0), limit: 0.1, giving_up };
        assert!(t.event(&refusal(false)), "a refusal changes the tally");
        assert!(t.event(&refusal(true)));
        assert_eq!(t.max_change_exceeded, 2);
        assert_eq!((t.selections, t.kiss_codes, t.ntsn), (0, 0, 0));
        assert_eq!(tally_details(&t)["max_change_exceeded"], 2);
    }
}
