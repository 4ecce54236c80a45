//! The system process (RFC 5905 §11): from per-source measurements to clock
//! corrections and the system variables a server advertises.
//!
//! Per source it keeps a clock filter (§10); on every filter update it runs
//! the selection algorithm over all sources (§11.2), feeds the combined offset
//! of a new system-peer sample to the discipline (§11.3), and updates the
//! system variables (§11.2.3: leap, stratum, reference ID and time, root delay
//! and dispersion) that [`System::server_state`] hands to the responder.
//!
//! Call protocol: [`System::add_source`] once per association; then for every
//! [`crate::source::SourceEvent::Sample`] call [`System::handle_measurement`]
//! with the local time now, and for every stale poll (`TransmitRequest::stale`)
//! [`System::handle_stale`]. Apply the returned [`SystemUpdate::clock`] action
//! to the clock, and when it steps, reset every source (`Source::reset`): the
//! filters here are reset already. Nothing reads a clock here.
//!
//! Without sources, a configured local reference ([`SystemConfig::local`])
//! makes the system serve its own clock at a fixed stratum, like chrony's
//! `local stratum N` or ntpd's local clock driver.
//!
//! # Timing loops
//!
//! Before selection, a source is not fit ([`Rejection::Loop`], RFC 5905
//! A.5.2 `fit()`) when its stratum is 2 or more and its reference ID is one
//! of this host's addresses other than loopback ([`System::add_own_address`];
//! IPv6 addresses by their MD5 hash ID) — it is synchronized to this host — or, while the
//! system has a system peer, the system's own reference ID — it follows
//! what this host follows. With a local reference of stratum L, a source of
//! stratum L or more is not followed either ([`Rejection::NotBelowLocalStratum`]):
//! it cannot serve better time, and this stops loops longer than two hosts
//! (a ring), which reference IDs cannot see. When the system peer turns out
//! to be a loop, the system drops it and its variables: it serves its local
//! reference, or unsynchronized.

use crate::constants::{MINDISP, PHI};
use crate::discipline::regression::MAX_DELAY_DEV_RATIO;
use crate::discipline::{Action, ClockDiscipline, DisciplineConfig, DisciplineKind, DisciplineSample, IgnoreReason};
use crate::filter::{ClockFilter, FilterConfig, FilterUpdate, Sample};
use crate::select::{Candidate, NoSync, Rejection, Rfc5905Selection, SelectOptions, Selection, SelectionAlgorithm, SelectionConfig, SelectionContext};
use crate::server::ServerClockState;
use crate::source::Measurement;
use crate::time::{NtpDuration, NtpTime};
use crate::wire::refid::ReferenceId;
use crate::wire::v4::LeapIndicator;
use crate::wire::v5::{BloomFilter, V5ReferenceId};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

/// Most addresses [`System::add_own_address`] keeps.
pub const OWN_ADDRESSES_MAX: usize = 64;

/// The local time an exchange's offset belongs to, for a discipline fed
/// every sample: the middle of its origin and receive times. The offset is
/// the mean of the clock's errors at the two (RFC 5905 §8), so during a slew
/// (chrony's rate: 10 ms in 1 s) it carries the correction made by the
/// middle, not by the receive time: at 10 ms/s and 0.4 ms of delay the two
/// differ by 2 us, which a noiseless source's line then kept as a phase
/// error for the hour the sample stayed in its fit.
fn exchange_midpoint(m: &Measurement) -> NtpTime {
    let round_trip = (m.local_receive_time - m.local_send_time).to_seconds_f64();
    if round_trip.is_finite() && round_trip > 0.0 {
        m.local_receive_time + NtpDuration::from_seconds_f64(-round_trip / 2.0)
    } else {
        m.local_receive_time
    }
}

/// A measurement as a discipline that wants every sample takes it, handled at `now`.
fn discipline_sample(m: &Measurement, now: NtpTime) -> DisciplineSample {
    DisciplineSample { offset: m.offset, time: exchange_midpoint(m), now, delay: m.delay }
}

/// Most samples a source keeps for [`ClockDiscipline::prime`]: an `iburst`
/// (8) and a few polls.
pub const PEER_HISTORY: usize = 16;

/// How long, after the first selection, the first clock update waits for a
/// majority of every configured source and, with more than one source, for
/// the truechimers' clock filters to be full (an iburst takes 14 s); after it
/// the RFC 5905 majority of the selectable sources is enough.
pub const STARTUP_WAIT_S: i64 = 64;

/// Serve the local clock as a reference when no source is selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalReference {
    /// Stratum to advertise (1–15).
    pub stratum: u8,
    /// Reference ID to advertise (e.g. `LOCL`).
    pub reference_id: ReferenceId,
    /// A leap second the reference knows of (a reference clock follows UTC):
    /// announced from the start of its month (RFC 5905 §7.3) until it happens.
    pub leap: Option<LeapAnnouncement>,
}

/// A leap second at the end of a UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeapAnnouncement {
    /// 00:00:00 UTC after the leap, on the NTP timescale.
    pub at: NtpTime,
    /// [`LeapIndicator::Insert`] or [`LeapIndicator::Delete`].
    pub kind: LeapIndicator,
}

impl LeapAnnouncement {
    /// The leap indicator to send at local time `now`: the kind from the first
    /// day of the leap's month until the leap, no warning otherwise.
    pub fn indicator_at(&self, now: NtpTime) -> LeapIndicator {
        let last_day = (self.at + NtpDuration::from_seconds(-86_400)).to_civil();
        let month_start = crate::time::Civil { day: 1, hour: 0, minute: 0, second: 0, nanosecond: 0, ..last_day };
        match NtpTime::from_civil(&month_start) {
            Some(start) if now >= start && now < self.at => self.kind,
            _ => LeapIndicator::NoWarning,
        }
    }
}

/// Settings of a [`System`].
#[derive(Clone, Debug)]
pub struct SystemConfig {
    /// The discipline's settings (for [`DisciplineKind::Regression`], the
    /// ones both algorithms share: poll range, thresholds).
    pub discipline: DisciplineConfig,
    /// Which discipline algorithm runs (default [`DisciplineKind::Regression`]).
    pub algorithm: DisciplineKind,
    /// This host's clock precision, log2 seconds.
    pub precision_log2: i8,
    /// Serve the local clock when nothing else is selected.
    pub local: Option<LocalReference>,
    /// Frequency to start from (s/s), e.g. from a drift file.
    pub initial_frequency: Option<f64>,
    /// The selection's settings (for [`System::new`]'s RFC 5905 selection).
    pub selection: SelectionConfig,
    /// chrony's `maxchange`: the largest clock adjustment made (default none).
    pub max_change: Option<MaxChange>,
}

/// chrony's `maxchange offset start ignore`: after the first `start`
/// updates of the clock, an update that would adjust it by more than
/// `offset` seconds is not made; `ignore` such updates are skipped, and the
/// next one ends the daemon ([`System::gave_up`]). A negative `ignore`
/// skips them all, never ending it. The adjustment is the update's offset
/// less the part of earlier slews still to come.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxChange {
    /// Largest adjustment, seconds (above 0).
    pub offset: f64,
    /// Updates made before the check starts.
    pub start: u32,
    /// Larger adjustments skipped before giving up (negative: never give up).
    pub ignore: i32,
}

/// An update whose adjustment exceeded [`MaxChange::offset`] and was not made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxChangeExceeded {
    /// The adjustment refused.
    pub adjustment: NtpDuration,
    /// The limit, seconds.
    pub limit: f64,
    /// The daemon is to end: no more updates may be skipped.
    pub giving_up: bool,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            discipline: DisciplineConfig::default(),
            algorithm: DisciplineKind::default(),
            precision_log2: -20,
            local: None,
            initial_frequency: None,
            selection: SelectionConfig::default(),
            max_change: None,
        }
    }
}

struct Peer {
    filter: ClockFilter,
    reference_id: ReferenceId,
    last: Option<Measurement>,
    /// Its samples since the last step, newest last (at most
    /// [`PEER_HISTORY`]), for a discipline that wants every sample:
    /// [`ClockDiscipline::prime`] when it becomes the first system peer.
    history: VecDeque<DisciplineSample>,
    /// Its reach register emptied and it has not answered since
    /// ([`System::handle_unreachable`]).
    unreachable: bool,
    /// NTPv5 loop detection (see [`System::set_reference_ids`]).
    v5: PeerV5,
    /// Its latest sample was outvoted ([`Rejection::Outvoted`]).
    outvoted: bool,
    /// How it takes part in selection ([`System::set_select_options`]).
    options: SelectOptions,
    /// Its delay test ratio ([`System::set_max_delay_dev_ratio`]).
    max_delay_dev_ratio: f64,
    /// The latest local arrival time of its measurements since the last
    /// step: one of its replies arriving earlier means the clock was set
    /// back by someone else. Per source: replies of different sources may
    /// be handled a little out of order.
    latest_arrival: Option<NtpTime>,
}

/// What a source contributes to NTPv5 loop detection.
#[derive(Default)]
struct PeerV5 {
    /// Its 120-bit ID in this host's filter: MD5 of its address (NTPv4) or
    /// clock code (reference clock), draft-ietf-ntp-ntpv5-07 §7.4.
    id: Option<V5ReferenceId>,
    /// Its own Reference IDs filter, when it speaks NTPv5.
    reference_ids: Option<Box<BloomFilter>>,
    /// Its filter holds this host's ID.
    looped: bool,
    /// Polls still to wait after the loop cleared before selecting it again.
    hold: u8,
    /// It speaks NTPv5 and its whole filter has not arrived yet.
    awaiting: bool,
}

/// What one input changed.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemUpdate<Id> {
    /// The selection run, when the input updated a filter. Its outcome is what
    /// the system adopted: a combined result the startup rule holds back is
    /// replaced by [`NoSync::StartupWait`], so a report of this selection never
    /// names a system peer the system did not take.
    pub selection: Option<Selection<Id>>,
    /// The correction to apply to the clock, when the system peer gave a new sample.
    pub clock: Option<Action>,
    /// The clock is to be stepped: after applying, reset every source.
    pub stepped: bool,
    /// This measurement arrived at a local time this much before one handled
    /// earlier: something else set the clock back. Every filter and the
    /// discipline's samples were discarded (they were stamped on the old
    /// timescale), as chrony drops a source's history at an out-of-order
    /// sample.
    pub clock_went_back: Option<NtpDuration>,
    /// The system peer's new sample would have adjusted the clock by more
    /// than [`SystemConfig::max_change`] allows: `clock` is `None`.
    pub max_change: Option<MaxChangeExceeded>,
}

impl<Id> Default for SystemUpdate<Id> {
    fn default() -> Self {
        SystemUpdate { selection: None, clock: None, stepped: false, clock_went_back: None, max_change: None }
    }
}

/// The system process; `Id` names sources (an address, an index).
pub struct System<Id: Ord + Clone> {
    config: SystemConfig,
    /// Boxed: a B-tree leaf holds room for 11 values, and a `Peer` is ~800
    /// bytes, so unboxed one source cost ~8.5 KiB (measured per simulated host).
    peers: BTreeMap<Id, Box<Peer>>,
    selection: Box<dyn SelectionAlgorithm<Id>>,
    discipline: Box<dyn ClockDiscipline>,
    system_peer: Option<Id>,
    /// Arrival time of the last system-peer sample used (the strictly-later check of A.5.5.1).
    last_used_sample: Option<NtpTime>,
    /// When the first selection ran (start of the startup wait).
    first_sample: Option<NtpTime>,
    /// Epoch of the last raw sample fed to a discipline that takes every sample.
    last_raw_sample: Option<NtpTime>,
    state: ServerClockState,
    offset: NtpDuration,
    jitter: NtpDuration,
    /// Reference IDs of this host's addresses (the loop test).
    own_ids: Vec<ReferenceId>,
    /// This host's 120-bit NTPv5 reference ID, once set.
    own_v5_id: Option<V5ReferenceId>,
    /// The NTPv5 Reference IDs filter this host serves.
    served_ids: Box<BloomFilter>,
    /// Cluster survivors of the last selection: the sources "selected for synchronization".
    survivors: Vec<Id>,
    /// [`MaxChange`]: updates still made unchecked, larger ones still skipped.
    max_change_start: u32,
    max_change_ignore: i32,
    /// The update that exceeded [`MaxChange`] with nothing left to skip.
    gave_up: Option<MaxChangeExceeded>,
}

impl<Id: Ord + Clone + 'static> System<Id> {
    /// A system with RFC 5905's selection algorithm.
    pub fn new(config: SystemConfig) -> Self {
        let selection = Rfc5905Selection::new(config.selection);
        Self::with_selection(config, Box::new(selection))
    }

    /// A system with another selection algorithm (for comparisons).
    pub fn with_selection(config: SystemConfig, selection: Box<dyn SelectionAlgorithm<Id>>) -> Self {
        let mut discipline_config = config.discipline;
        discipline_config.local_precision = config.precision_log2;
        let (max_change_start, max_change_ignore) = config.max_change.map_or((0, 0), |m| (m.start, m.ignore));
        System {
            discipline: config.algorithm.build(discipline_config, config.initial_frequency),
            state: ServerClockState::unsynchronized(config.precision_log2),
            config,
            peers: BTreeMap::new(),
            selection,
            system_peer: None,
            last_used_sample: None,
            first_sample: None,
            last_raw_sample: None,
            offset: NtpDuration::ZERO,
            jitter: NtpDuration::ZERO,
            own_ids: Vec::new(),
            own_v5_id: None,
            served_ids: Box::default(),
            survivors: Vec::new(),
            max_change_start,
            max_change_ignore,
            gave_up: None,
        }
    }

    /// The update that exceeded [`SystemConfig::max_change`] when no more
    /// could be skipped: the daemon is to end (chrony exits). Once set, no
    /// further update moves the clock.
    pub fn gave_up(&self) -> Option<MaxChangeExceeded> {
        self.gave_up
    }

    /// Sets this host's 120-bit NTPv5 reference ID (random, chosen once at
    /// start, draft-ietf-ntp-ntpv5-07 §7.4). A source whose Reference IDs
    /// filter holds it is not selected ([`Rejection::Loop`]).
    pub fn set_own_v5_id(&mut self, id: V5ReferenceId) {
        self.own_v5_id = Some(id);
        self.update_served_ids();
    }

    /// Sets the ID source `id` adds to the filter this host serves while it
    /// is selected: the MD5 of its address, or of its reference clock code.
    pub fn set_source_v5_id(&mut self, id: &Id, v5_id: V5ReferenceId) {
        if let Some(p) = self.peers.get_mut(id) {
            p.v5.id = Some(v5_id);
        }
        self.update_served_ids();
    }

    /// Hands over source `id`'s NTPv5 Reference IDs filter (call after each of
    /// its replies, before its measurement). While the filter holds this
    /// host's ID the source is a loop; once it no longer does, the source
    /// stays out for `random % 5` more calls (§7.4: a random 0–4 polls, so
    /// that longer loops settle).
    pub fn set_reference_ids(&mut self, id: &Id, filter: &BloomFilter, random: u64) {
        let own = self.own_v5_id;
        let Some(p) = self.peers.get_mut(id) else { return };
        p.v5.awaiting = false;
        let looped = own.is_some_and(|o| filter.contains(&o));
        if looped {
            p.v5.hold = 0;
        } else if p.v5.looped {
            p.v5.hold = (random % 5) as u8;
        } else {
            p.v5.hold = p.v5.hold.saturating_sub(1);
        }
        p.v5.looped = looped;
        p.v5.reference_ids = Some(Box::new(*filter));
        self.update_served_ids();
    }

    /// Source `id` speaks NTPv5 and its whole Reference IDs filter has not
    /// arrived yet (call after each of its replies, before its measurement,
    /// when this host serves time): it is not selected until
    /// [`System::set_reference_ids`] hands the filter over
    /// ([`Rejection::ReferenceIdsIncomplete`], draft-ietf-ntp-ntpv5-07 §9).
    pub fn await_reference_ids(&mut self, id: &Id) {
        if let Some(p) = self.peers.get_mut(id) {
            p.v5.awaiting = true;
        }
    }

    /// The NTPv5 Reference IDs filter this host serves: its own ID and, for
    /// each source selected for synchronization, that source's filter (NTPv5)
    /// or ID (NTPv4, reference clock).
    pub fn served_reference_ids(&self) -> &BloomFilter {
        &self.served_ids
    }

    fn update_served_ids(&mut self) {
        let mut f = BloomFilter::EMPTY;
        if let Some(own) = &self.own_v5_id {
            f.add(own);
        }
        for id in &self.survivors {
            let Some(p) = self.peers.get(id) else { continue };
            match (&p.v5.reference_ids, &p.v5.id) {
                (Some(theirs), _) => f.union_with(theirs),
                (None, Some(v5_id)) => f.add(v5_id),
                (None, None) => {}
            }
        }
        *self.served_ids = f;
    }

    /// Tells the system one of this host's addresses (a listen address, the
    /// destination of a reply): a source whose reference ID names it is
    /// synchronized to this host. Unspecified and loopback addresses are
    /// ignored (every daemon on a host shares the loopback address, so it
    /// tells none of them apart; ntpd exempts 127.0.0.1 likewise); at most
    /// [`OWN_ADDRESSES_MAX`] are kept. Returns whether it was new.
    pub fn add_own_address(&mut self, addr: IpAddr) -> bool {
        let addr = crate::server::table::canonical(addr);
        if addr.is_unspecified() || addr.is_loopback() {
            return false;
        }
        let id = match addr {
            IpAddr::V4(v4) => ReferenceId::from_ipv4(v4),
            IpAddr::V6(v6) => ReferenceId::from_ipv6(v6),
        };
        if self.own_ids.contains(&id) || self.own_ids.len() >= OWN_ADDRESSES_MAX {
            return false;
        }
        self.own_ids.push(id);
        true
    }

    /// Whether a source that sent `m` is unfit because of a timing loop, and why.
    fn loop_test(&self, m: &Measurement) -> Option<Rejection> {
        // Below stratum 2 the reference ID is a clock's code, not an address.
        if m.stratum >= 2
            && (self.own_ids.contains(&m.reference_id)
                || (self.system_peer.is_some() && m.reference_id == self.state.reference_id))
        {
            return Some(Rejection::Loop);
        }
        match self.config.local {
            Some(local) if m.stratum >= local.stratum => Some(Rejection::NotBelowLocalStratum),
            _ => None,
        }
    }

    /// Registers a source; `reference_id` is what downstream servers see when it
    /// is the system peer (its IPv4 address, or the MD5 prefix of its IPv6 address).
    pub fn add_source(&mut self, id: Id, reference_id: ReferenceId) {
        let filter = ClockFilter::new(FilterConfig { local_precision: self.config.precision_log2, ..FilterConfig::default() });
        self.peers.insert(
            id,
            Box::new(Peer {
                filter,
                reference_id,
                last: None,
                history: VecDeque::new(),
                unreachable: false,
                v5: PeerV5::default(),
                outvoted: false,
                options: SelectOptions::default(),
                max_delay_dev_ratio: MAX_DELAY_DEV_RATIO,
                latest_arrival: None,
            }),
        );
    }

    /// Sets how source `id` takes part in selection (`noselect`, `prefer`,
    /// `trust`, `require`; all off when added).
    pub fn set_select_options(&mut self, id: &Id, options: SelectOptions) {
        if let Some(p) = self.peers.get_mut(id) {
            p.options = options;
        }
    }

    /// Sets source `id`'s delay test ratio (chrony's `maxdelaydevratio`,
    /// [`SourceConfig::max_delay_dev_ratio`](crate::source::SourceConfig::max_delay_dev_ratio)):
    /// a discipline that weighs every sample ignores one of this source's
    /// whose half round trip exceeds the least of its held samples' by more
    /// than this many jitters ([`ClockDiscipline::delay_outlier`]). Default
    /// [`MAX_DELAY_DEV_RATIO`] (10).
    pub fn set_max_delay_dev_ratio(&mut self, id: &Id, ratio: f64) {
        if let Some(p) = self.peers.get_mut(id) {
            p.max_delay_dev_ratio = ratio;
        }
    }

    /// What a selection run at `now` is told besides the candidates.
    fn selection_context(&self, now: NtpTime) -> SelectionContext<Id> {
        SelectionContext {
            now,
            system_poll: self.discipline.poll(),
            previous_system_peer: self.system_peer.clone(),
            require: self.peers.values().any(|p| p.options.require),
        }
    }

    /// Forgets a source (demobilized by a kiss code, or removed).
    pub fn remove_source(&mut self, id: &Id) {
        self.peers.remove(id);
        if self.system_peer.as_ref() == Some(id) {
            self.system_peer = None;
        }
    }

    /// The system poll exponent the discipline asks for (bounds each source's host poll).
    pub fn poll_log2(&self) -> i8 {
        self.discipline.poll()
    }

    /// The discipline (name, state, frequency, jitter) for reports.
    pub fn discipline(&self) -> &dyn ClockDiscipline {
        self.discipline.as_ref()
    }

    /// The current system peer.
    pub fn system_peer(&self) -> Option<&Id> {
        self.system_peer.as_ref()
    }

    /// The last combined offset and system jitter.
    pub fn offset_and_jitter(&self) -> (NtpDuration, NtpDuration) {
        (self.offset, self.jitter)
    }

    /// Handles a measurement from source `id` at local time `now`.
    pub fn handle_measurement(&mut self, id: &Id, m: &Measurement, now: NtpTime) -> SystemUpdate<Id> {
        let arrival = m.local_receive_time;
        let latest = self.peers.get(id).and_then(|p| p.latest_arrival);
        let went_back = latest.filter(|&latest| arrival < latest).map(|latest| latest - arrival);
        if went_back.is_some() {
            self.discard_history(now);
        }
        if let Some(p) = self.peers.get_mut(id) {
            if p.latest_arrival.is_none_or(|latest| arrival > latest) {
                p.latest_arrival = Some(arrival);
            }
        }
        let mut update = self.measurement(id, m, now);
        update.clock_went_back = went_back;
        update
    }

    /// The local clock went back (set by something else, not by this
    /// discipline): the filters' samples, the peers' histories and the
    /// discipline's samples are stamped on the old timescale, where they
    /// are in the future and out of order (the filter would refuse every
    /// new sample as older than the one it used last). They are dropped, as
    /// after a step; the discipline keeps its frequency.
    fn discard_history(&mut self, now: NtpTime) {
        self.start_associations_over();
        // What this host serves was set by someone else: unsynchronized
        // until a selection adopts a source again.
        self.state = ServerClockState::unsynchronized(self.config.precision_log2);
        self.discipline.clock_went_back(now);
    }

    fn measurement(&mut self, id: &Id, m: &Measurement, now: NtpTime) -> SystemUpdate<Id> {
        let poll = self.discipline.poll();
        // Measured during a slew, the offset is counted as after it (the
        // filter's samples are all in the corrected clock's terms).
        let pending = self.discipline.pending_phase(m.local_receive_time);
        let offset = m.offset.saturating_sub(pending);
        let Some(was_outvoted) = self.peers.get(id).map(|p| p.outvoted) else { return SystemUpdate::default() };
        // The filter offers its least-delayed sample, which may be from
        // before the source's clock jumped; a discipline fed every sample of
        // the system peer would take the jumped one at once. Such a sample
        // is judged against the others first (and so is every sample of a
        // source outvoted before, until one agrees again).
        let judged = self.discipline.wants_every_sample()
            && (was_outvoted || self.system_peer.as_ref() == Some(id))
            && self.last_raw_sample.is_none_or(|t| m.local_receive_time > t);
        let outvoted = judged && self.outvoted(id, m, offset, now);
        let Some(peer) = self.peers.get_mut(id) else { return SystemUpdate::default() };
        peer.outvoted = outvoted;
        let sample = Sample { offset, delay: m.delay, dispersion: m.dispersion, time: m.local_receive_time };
        peer.last = Some(*m);
        if self.discipline.wants_every_sample() {
            if peer.history.len() == PEER_HISTORY {
                peer.history.pop_front();
            }
            peer.history.push_back(discipline_sample(m, now));
        }
        peer.unreachable = false;
        let update = peer.filter.add_sample(sample, now, poll);
        let mut result = if outvoted != was_outvoted { self.run_selection(now) } else { self.after_filter(update, now) };
        // A discipline that weighs samples itself gets every sample of the
        // system peer, not only those the clock filter passes.
        if self.discipline.wants_every_sample()
            && !outvoted
            && self.system_peer.as_ref() == Some(id)
            && self.last_raw_sample.is_none_or(|t| m.local_receive_time > t)
        {
            self.last_raw_sample = Some(m.local_receive_time);
            let (action, stepped, exceeded) = self.update_discipline(&discipline_sample(m, now));
            result.clock = action;
            result.stepped = stepped;
            result.max_change = exceeded;
        }
        result
    }

    /// Whether an update by `sample` stays within [`SystemConfig::max_change`]
    /// (counting it against the start and the skips); `Err` when it does not.
    fn max_change_check(&mut self, sample: &DisciplineSample) -> Result<(), MaxChangeExceeded> {
        let Some(m) = self.config.max_change else { return Ok(()) };
        if let Some(g) = self.gave_up {
            return Err(g);
        }
        if self.max_change_start > 0 {
            self.max_change_start -= 1;
            return Ok(());
        }
        let adjustment = sample.offset.saturating_sub(self.discipline.pending_phase(sample.now));
        if adjustment.abs().to_seconds_f64() <= m.offset {
            return Ok(());
        }
        let giving_up = self.max_change_ignore == 0;
        let exceeded = MaxChangeExceeded { adjustment, limit: m.offset, giving_up };
        if giving_up {
            self.gave_up = Some(exceeded);
        } else if self.max_change_ignore > 0 {
            self.max_change_ignore -= 1;
        }
        Err(exceeded)
    }

    /// Feeds the discipline (unless [`SystemConfig::max_change`] refuses
    /// the update: then the clock is left alone and the refusal returned);
    /// after a step, resets every filter.
    fn update_discipline(&mut self, sample: &DisciplineSample) -> (Option<Action>, bool, Option<MaxChangeExceeded>) {
        // A sample the discipline will drop by its delay is not counted
        // against max_change (chrony rejects it before its reference
        // update); without max_change, update_sample tests it alone.
        if self.config.max_change.is_some() && self.discipline.delay_outlier(sample) {
            return (Some(Action::Ignore(IgnoreReason::Delay)), false, None);
        }
        if let Err(e) = self.max_change_check(sample) {
            return (None, false, Some(e));
        }
        let frequency_before = self.discipline.frequency();
        let pending_before = self.discipline.pending_phase(sample.now);
        let result = self.discipline.update_sample(sample);
        let stepped = matches!(result.action, Action::Step { .. });
        if let Action::Slew { phase, frequency, max_rate: Some(_), .. } = result.action {
            // A slew through the tick completes within |phase|/rate (1.2 s
            // for 0.1 s at chrony's rate): the stored samples are corrected
            // now, or they would disagree with the next ones by the phase
            // and by the frequency error times their age. They counted the
            // slew in progress as done; the new one replaces what is left of it.
            let phase = phase.saturating_sub(pending_before);
            for p in self.peers.values_mut() {
                p.filter.correct_offsets(phase, frequency - frequency_before, sample.now);
            }
        }
        if stepped {
            // A step starts every association over, the system peer too
            // (§11.2.3, [`Action::Step`]): nothing measured before it counts.
            self.start_associations_over();
        }
        (Some(result.action), stepped, None)
    }

    /// Empties every source's filter and history and forgets the system
    /// peer and the samples used: nothing measured before counts.
    fn start_associations_over(&mut self) {
        for p in self.peers.values_mut() {
            p.filter.reset();
            p.history.clear();
            p.outvoted = false;
            p.latest_arrival = None;
        }
        self.system_peer = None;
        self.last_used_sample = None;
        self.last_raw_sample = None;
    }

    /// Runs selection after a filter update. Before the first synchronization
    /// "anything goes" (RFC 5905 A.5.2): a filter that keeps its old best sample
    /// still has a fresher dispersion, which may now pass the distance threshold.
    /// The same holds while there is no system peer (it fell silent): the
    /// first sample of a source back from an outage may not displace the
    /// least-delayed one stored before it, yet it is what selects the source
    /// again.
    fn after_filter(&mut self, update: FilterUpdate, now: NtpTime) -> SystemUpdate<Id> {
        match update {
            FilterUpdate::Updated(_) => self.run_selection(now),
            FilterUpdate::Stale if !self.state.is_synchronized() || self.system_peer.is_none() => self.run_selection(now),
            _ => SystemUpdate::default(),
        }
    }

    /// Handles a poll of source `id` that found it silent for three polls: the
    /// filter gets a MAXDISP dummy (§13.2) so the source ages out of selection.
    pub fn handle_stale(&mut self, id: &Id, now: NtpTime) -> SystemUpdate<Id> {
        let poll = self.discipline.poll();
        let Some(peer) = self.peers.get_mut(id) else { return SystemUpdate::default() };
        let update = peer.filter.add_dummy(now, poll);
        self.after_filter(update, now)
    }

    /// Handles a poll of source `id` that emptied its reach register (eight
    /// regular polls unanswered, [`crate::source::TransmitRequest::unreachable`]).
    /// RFC 5905 A.5.2 `fit()` finds an unreachable source unfit: selection
    /// runs without it, and a silent system peer is dropped (the host keeps
    /// its clock and what it serves, as after a lost majority) until a
    /// source is selected again: chrony, too, logs that it cannot
    /// synchronize and selects the source anew when it answers.
    pub fn handle_unreachable(&mut self, id: &Id, now: NtpTime) -> SystemUpdate<Id> {
        let Some(peer) = self.peers.get_mut(id) else { return SystemUpdate::default() };
        peer.unreachable = true;
        if self.system_peer.as_ref() == Some(id) {
            self.system_peer = None;
        }
        self.run_selection(now)
    }

    /// The candidates of a selection run at `now`, and the sources found
    /// unfit before it. Source `judged`, when given, counts as fit though it
    /// was outvoted: its new sample is being judged.
    fn candidates(&self, now: NtpTime, judged: Option<&Id>) -> (Vec<Candidate<Id>>, Vec<(Id, Rejection)>) {
        let mut unfit = Vec::new();
        for (id, p) in &self.peers {
            if p.unreachable {
                unfit.push((id.clone(), Rejection::Unreachable));
            } else if p.v5.looped || p.v5.hold > 0 {
                // Its NTPv5 Reference IDs hold this host's ID (§7.4).
                unfit.push((id.clone(), Rejection::Loop));
            } else if p.v5.awaiting {
                unfit.push((id.clone(), Rejection::ReferenceIdsIncomplete));
            } else if let Some(r) = p.last.as_ref().and_then(|m| self.loop_test(m)) {
                unfit.push((id.clone(), r));
            } else if p.outvoted && judged != Some(id) {
                unfit.push((id.clone(), Rejection::Outvoted));
            }
        }
        let every_sample = self.discipline.wants_every_sample();
        let uncertainty = self.discipline.frequency_uncertainty();
        let candidates: Vec<Candidate<Id>> = self
            .peers
            .iter()
            .filter(|(id, _)| !unfit.iter().any(|(u, _)| u == *id))
            .filter_map(|(id, p)| {
                let mut stats = p.filter.statistics()?;
                if every_sample {
                    // A discipline that weighs every sample itself selects a
                    // source from its first sample, as chrony does: the
                    // register's initial dummy stages do not hold it back.
                    stats.dispersion = p.filter.shifted_in_dispersion(now);
                    stats.updated_at = now;
                }
                if uncertainty > PHI {
                    // The dispersion ages at PHI, but a clock whose frequency
                    // is less certain than that (not yet measured) may have
                    // drifted by `uncertainty` times a sample's age: an old
                    // least-delayed sample then bounds the offset less tightly
                    // than a newer one. The candidate is the stored sample with
                    // the least bound `δ/2 + (uncertainty − PHI) · age`, its
                    // interval widened by the second term.
                    let drift = |time: NtpTime| (uncertainty - PHI) * (now - time).to_seconds_f64().max(0.0);
                    let bound = |delay: NtpDuration, time: NtpTime| delay.to_seconds_f64() / 2.0 + drift(time);
                    let best = p
                        .filter
                        .stages()
                        .iter()
                        .filter_map(|stage| stage.sample)
                        .min_by(|a, b| bound(a.delay, a.time).total_cmp(&bound(b.delay, b.time)));
                    if let Some(best) = best.filter(|b| bound(b.delay, b.time) < bound(stats.delay, stats.time)) {
                        stats.offset = best.offset;
                        stats.delay = best.delay;
                        stats.time = best.time;
                    }
                    stats.dispersion = stats.dispersion.saturating_add(NtpDuration::from_seconds_f64(drift(stats.time)));
                }
                let m = p.last.as_ref()?;
                let mut candidate = Candidate::from_statistics(
                    id.clone(),
                    &stats,
                    m.root_delay.to_duration(),
                    m.root_dispersion.to_duration(),
                    m.stratum,
                    m.leap,
                );
                candidate.options = p.options;
                Some(candidate)
            })
            .collect();
        (candidates, unfit)
    }

    /// Whether source `id`'s new sample `m` (its offset `offset` in the
    /// filter's terms) is outvoted: a selection given this sample as the
    /// source's candidate, in place of what its filter offers, finds a
    /// majority without it and the source a falseticker. Judged only among
    /// three candidates or more (one of two cannot be outvoted).
    fn outvoted(&mut self, id: &Id, m: &Measurement, offset: NtpDuration, now: NtpTime) -> bool {
        let (mut candidates, _) = self.candidates(now, Some(id));
        if candidates.len() < 3 {
            return false;
        }
        let Some(c) = candidates.iter_mut().find(|c| c.id == *id) else { return false };
        c.offset = offset;
        c.delay = m.delay;
        c.dispersion = m.dispersion;
        c.time = m.local_receive_time;
        c.updated_at = now;
        c.root_delay = m.root_delay.to_duration();
        c.root_dispersion = m.root_dispersion.to_duration();
        let context = self.selection_context(now);
        let selection = self.selection.select(&candidates, &context);
        // A majority without it (truechimers found), even one too small to
        // steer by (`min_sources`).
        !selection.truechimers.is_empty() && selection.falsetickers.contains(id)
    }

    fn run_selection(&mut self, now: NtpTime) -> SystemUpdate<Id> {
        let (candidates, unfit) = self.candidates(now, None);
        match self.system_peer.as_ref().and_then(|sp| unfit.iter().find(|(id, _)| id == sp)).map(|(_, r)| *r) {
            None => {}
            // Outvoted: no longer followed; the host serves what it had until
            // the selection names another (as when the sources disagree).
            Some(Rejection::Outvoted) => self.system_peer = None,
            // Following a loop: nothing this host serves came from outside it.
            Some(_) => {
                self.system_peer = None;
                self.last_used_sample = None;
                self.state = ServerClockState::unsynchronized(self.config.precision_log2);
            }
        }
        let context = self.selection_context(now);
        let mut selection = self.selection.select(&candidates, &context);
        selection.rejected.extend(unfit);
        let mut update = SystemUpdate::default();
        // Before the first synchronization, sources whose intervals are still wide
        // (few filter samples) all overlap and a falseticker can sit in any
        // "majority", and a falseticker that answers first is a majority of
        // one: the clock is first set only when the truechimers are a majority
        // of every configured source (answered or not), not only of those whose
        // distance already passes (the first update may step the clock).
        let configured = self.peers.len().max(candidates.len());
        let first = *self.first_sample.get_or_insert(now);
        let in_startup = (now - first) < NtpDuration::from_seconds(STARTUP_WAIT_S);
        let waiting = selection.rejected.iter().any(|(_, r)| *r == Rejection::DistanceTooLarge);
        // After the startup wait, sources that never answered or fell silent no
        // longer hold the clock back: RFC 5905's own majority rule applies.
        // A truechimer whose filter still holds empty stages (its burst is not
        // complete) has MAXDISP-weighted dispersion in its interval: after four
        // samples up to a second, wide enough to overlap a group half a second
        // away, so two agreeing pairs 0.5 s apart are a "majority" of four
        // (falsetickers-no-majority, t = 6 s). With more than one source, the
        // first update waits for full filters (an iburst's 8 samples, 14 s).
        let filling = configured > 1 && selection.truechimers.iter().any(|id| self.filter_has_empty_stages(id));
        let startup_ok = self.state.is_synchronized()
            || !in_startup
            || (2 * selection.truechimers.len() > configured && !waiting && !filling);
        if selection.outcome.is_ok() && !startup_ok {
            selection.outcome =
                Err(NoSync::StartupWait { truechimers: selection.truechimers.len(), configured });
        }
        if matches!(selection.outcome, Err(NoSync::NoMajority | NoSync::TooFewTruechimers { .. })) {
            // The sources disagree: no system peer (A.5.5.1 clock_select()
            // clears s.p), or a discipline fed every sample of the system peer
            // keeps following one the selection found no majority for. A peer
            // merely too far to select (after an outage, its filter holds
            // MAXDISP dummies) stays: it is not contradicted, and its samples
            // let such a discipline recover at once (intermittent-link).
            self.system_peer = None;
        }
        if let Ok(combined) = &selection.outcome {
            let peer_id = combined.system_peer.clone();
            let candidate = candidates.iter().find(|c| c.id == peer_id);
            let changed = self.system_peer.as_ref() != Some(&peer_id);
            if changed {
                let ratio = self.peers.get(&peer_id).map_or(MAX_DELAY_DEV_RATIO, |p| p.max_delay_dev_ratio);
                self.discipline.source_changed(ratio);
            }
            self.system_peer = Some(peer_id.clone());
            self.offset = combined.offset;
            self.jitter = combined.jitter;
            // Only a sample newer than the last one used moves the clock (A.5.5.1).
            if let Some(c) = candidate.filter(|c| self.last_used_sample.is_none_or(|t| c.time > t)) {
                self.last_used_sample = Some(c.time);
                // The offset was measured at the sample's epoch, which the clock
                // filter may have kept for several polls: the discipline must see
                // that epoch, not now, or it takes the slew made since for a
                // frequency error (RFC 5905 A.5.5.6 uses the peer's update time).
                let c = c.clone();
                if !self.discipline.wants_every_sample() {
                    let sample = DisciplineSample { offset: combined.offset, time: c.time, now, delay: c.delay };
                    let (action, stepped, exceeded) = self.update_discipline(&sample);
                    update.clock = action;
                    update.stepped = stepped;
                    update.max_change = exceeded;
                }
                self.set_system_variables(&peer_id, &c, combined.offset, combined.jitter, now);
            } else if let Some(c) = candidate.filter(|_| changed && self.state.is_synchronized()) {
                // A new system peer whose sample is not newer than the last
                // one used does not move the clock, but what this host serves
                // (reference ID, stratum, root delay and dispersion) follows
                // it now, not from its next sample: downstream loop detection
                // and the refid rule read the reference ID.
                let c = c.clone();
                self.set_system_variables(&peer_id, &c, combined.offset, combined.jitter, now);
            }
            // A discipline fed every sample of the system peer gets the first
            // system peer's latest sample when it is adopted (at startup or
            // after a step), not only from its next poll: the peer is often
            // adopted on another source's sample (the one that completes a
            // majority), and its own next one can be a whole poll away.
            if self.discipline.wants_every_sample() && self.last_raw_sample.is_none() && update.clock.is_none() {
                if let Some((m, p)) = self.peers.get(&peer_id).and_then(|p| p.last.map(|m| (m, p))) {
                    // Its earlier samples (an iburst's) go into the fit too.
                    let sample = discipline_sample(&m, now);
                    let earlier: Vec<DisciplineSample> = p.history.iter().filter(|h| h.time < sample.time).copied().collect();
                    self.discipline.prime(&earlier);
                    self.last_raw_sample = Some(m.local_receive_time);
                    let (action, stepped, exceeded) = self.update_discipline(&sample);
                    update.clock = action;
                    update.stepped = stepped;
                    update.max_change = exceeded;
                }
            }
        }
        self.survivors = if selection.outcome.is_ok() { selection.survivors.clone() } else { Vec::new() };
        self.update_served_ids();
        update.selection = Some(selection);
        update
    }

    /// Whether source `id`'s clock filter still holds an empty (dummy) stage.
    fn filter_has_empty_stages(&self, id: &Id) -> bool {
        self.peers.get(id).is_some_and(|p| p.filter.stages().iter().any(|s| s.sample.is_none()))
    }

    /// §11.2.3 / A.5.5.1 clock_update(): the system variables follow the system peer.
    fn set_system_variables(&mut self, id: &Id, c: &Candidate<Id>, offset: NtpDuration, jitter: NtpDuration, now: NtpTime) {
        let Some(peer) = self.peers.get(id) else { return };
        let secs = NtpDuration::to_seconds_f64;
        let age = secs(now - c.time).max(0.0);
        let root_dispersion = (secs(c.root_dispersion)
            + secs(c.dispersion)
            + (secs(c.jitter).powi(2) + secs(jitter).powi(2)).sqrt()
            + PHI * age
            + secs(offset).abs())
        .max(MINDISP);
        self.state = ServerClockState {
            leap: c.leap,
            stratum: c.stratum.saturating_add(1).min(crate::server::STRATUM_UNSYNCHRONIZED),
            precision_log2: self.config.precision_log2,
            root_delay: c.root_delay + c.delay,
            root_dispersion: NtpDuration::from_seconds_f64(root_dispersion),
            reference_id: peer.reference_id,
            reference_time: Some(now),
            inserted_second_in_progress: false,
        };
    }

    /// What the server responder advertises at local time `now`.
    ///
    /// Synchronized to a source: its variables (§11.2.3). Otherwise, with a local
    /// reference: the local clock at the configured stratum, reference time now.
    /// Otherwise unsynchronized (LI 3, stratum 16, sent as 0).
    pub fn server_state(&self, now: NtpTime) -> ServerClockState {
        if self.state.is_synchronized() {
            return self.state;
        }
        match self.config.local {
            Some(local) => ServerClockState {
                leap: local.leap.map_or(LeapIndicator::NoWarning, |l| l.indicator_at(now)),
                stratum: local.stratum,
                precision_log2: self.config.precision_log2,
                root_delay: NtpDuration::ZERO,
                root_dispersion: NtpDuration::ZERO,
                reference_id: local.reference_id,
                reference_time: Some(now),
                inserted_second_in_progress: false,
            },
            None => self.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mono::Instant;
    use crate::wire::short::NtpShort;
    use crate::time::NtpTimestamp;

    fn t(s: f64) -> NtpTime {
        NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap() + NtpDuration::from_seconds_f64(s)
    }

    /// A measurement from a stratum-1 server with the given offset and delay, arriving at `at`.
    fn measurement(offset: f64, delay: f64, at: f64) -> Measurement {
        let t4 = t(at);
        let t1 = t4 + NtpDuration::from_seconds_f64(-delay);
        Measurement {
            offset: NtpDuration::from_seconds_f64(offset),
            delay: NtpDuration::from_seconds_f64(delay),
            dispersion: NtpDuration::from_seconds_f64(1e-6),
            received_at: Instant::from_secs(at as u64),
            local_send_time: t1,
            local_receive_time: t4,
            server_receive_timestamp: (t1 + NtpDuration::from_seconds_f64(offset + delay / 2.0)).to_timestamp(),
            server_transmit_timestamp: (t1 + NtpDuration::from_seconds_f64(offset + delay / 2.0)).to_timestamp(),
            leap: LeapIndicator::NoWarning,
            stratum: 1,
            reference_id: ReferenceId::from_ascii("GPS"),
            reference_timestamp: NtpTimestamp::ZERO,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::from_seconds_f64(0.0001),
            precision_log2: -20,
            poll_log2: 6,
            version: 4,
            interleaved: false,
        }
    }

    #[test]
    fn unsynchronized_until_a_source_is_selected_then_stratum_plus_one() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        let s = sys.server_state(t(0.0));
        assert!(!s.is_synchronized());
        assert_eq!(s.leap, LeapIndicator::Unsynchronized);
        let mut moved = false;
        for i in 0..8 {
            let u = sys.handle_measurement(&1, &measurement(0.001, 0.002, 64.0 * f64::from(i)), t(64.0 * f64::from(i)));
            moved |= u.clock.is_some();
        }
        assert!(moved, "the system peer's samples reach the discipline");
        let s = sys.server_state(t(600.0));
        assert!(s.is_synchronized());
        assert_eq!(s.stratum, 2);
        assert_eq!(s.reference_id.to_ipv4().to_string(), "192.0.2.1");
        assert!((s.root_delay.to_seconds_f64() - 0.002).abs() < 1e-6, "root delay = the peer's delay");
        assert!(s.root_dispersion.to_seconds_f64() >= MINDISP - 1e-9, "MINDISP floor");
        assert_eq!(sys.system_peer(), Some(&1));
    }

    #[test]
    fn before_first_sync_an_old_best_sample_still_gets_selected() {
        // The first sample has the smallest delay, so the filter keeps it as best
        // ("stale") while its dispersion shrinks with every new sample; selection
        // must still run until the system synchronizes (RFC 5905 A.5.2).
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        sys.handle_measurement(&1, &measurement(0.001, 0.001, 0.0), t(0.0));
        let mut synced_at = None;
        for i in 1..8 {
            let at = 2.0 * f64::from(i);
            let u = sys.handle_measurement(&1, &measurement(0.001, 0.002, at), t(at));
            if u.clock.is_some() && synced_at.is_none() {
                synced_at = Some(i);
            }
        }
        assert!(synced_at.is_some(), "never synchronized");
        assert!(sys.server_state(t(20.0)).is_synchronized());
    }

    #[test]
    fn startup_waits_for_a_majority_of_all_answering_sources() {
        // Three sources: a truthful one, a liar, and a truthful one whose
        // interval is still too wide to judge. While the third is out of reach
        // (and within the startup wait), the clock is not touched: two wide
        // intervals, one of them false, always "agree".
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 0..3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            for (id, offset, delay) in [(0, 0.001, 0.002), (1, 0.45, 0.002), (2, 0.0012, 3.0)] {
                let u = sys.handle_measurement(&id, &measurement(offset, delay, at + 0.1 * f64::from(id)), t(at));
                assert!(u.clock.is_none(), "no clock update before the third source can be judged");
            }
        }
        assert!(!sys.server_state(t(20.0)).is_synchronized());
    }

    /// Five configured sources: 0 is a falseticker 0.5 s off, 1-4 are 1 ms off;
    /// source `id`'s delay is 0.2 ms × (id + 1), so the falseticker is nearest.
    /// Five sources, source 0 a falseticker, under the RFC 5905 discipline:
    /// these tests are about §10's MAXDISP stages holding a new source back
    /// (the regression discipline selects from the first sample instead).
    fn five_sources_one_liar() -> System<u32> {
        let mut sys: System<u32> = System::new(SystemConfig { algorithm: DisciplineKind::Rfc5905, ..SystemConfig::default() });
        for id in 0..5 {
            sys.add_source(id, ReferenceId::NONE);
        }
        sys
    }

    /// Source `id` of [`five_sources_one_liar`] answers at `at`.
    fn five_sources_sample(sys: &mut System<u32>, id: u32, at: f64) -> SystemUpdate<u32> {
        let offset = if id == 0 { 0.5 } else { 0.001 };
        sys.handle_measurement(&id, &measurement(offset, 0.0002 * f64::from(id + 1), at), t(at))
    }

    #[test]
    fn a_lone_answering_falseticker_among_five_configured_is_not_adopted() {
        // falsetickers-1-of-5 at startup: five sources configured, and only the
        // falseticker (0.5 s off) has answered so far. It is a majority of the
        // sources that answered but not of those configured: during the
        // startup wait neither the clock nor the reported selection follows it.
        let mut sys = five_sources_one_liar();
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            let u = five_sources_sample(&mut sys, 0, at);
            assert!(u.clock.is_none(), "the clock followed the lone falseticker at {at} s");
            let outcome = &u.selection.expect("a filter update runs selection").outcome;
            assert!(!matches!(outcome, Ok(c) if c.system_peer == 0), "falseticker reported as system peer at {at} s");
        }
        assert_eq!(sys.system_peer(), None);
        assert!(!sys.server_state(t(15.0)).is_synchronized());
        // The four truechimers answer: they outvote it and set the clock.
        let mut moved = None;
        for i in 8..24 {
            let at = 2.0 * f64::from(i);
            for id in 0..5 {
                let u = five_sources_sample(&mut sys, id, at);
                if let Some(Action::Slew { phase, .. } | Action::Step { offset: phase, .. }) = u.clock {
                    moved.get_or_insert(phase.to_seconds_f64());
                }
                if let Some(Ok(c)) = u.selection.map(|s| s.outcome) {
                    assert_ne!(c.system_peer, 0, "falseticker selected at {at} s");
                }
            }
        }
        let first = moved.expect("the truechimers set the clock");
        assert!((first - 0.001).abs() < 0.01, "first correction {first} s");
        assert_ne!(sys.system_peer(), Some(&0));
    }

    #[test]
    fn the_first_system_peer_adopted_on_another_sources_sample_moves_the_clock_at_once() {
        // Three agreeing sources with bursts (source 2 much farther than the
        // others, so never the system peer): source 0 (nearest) fills its
        // filter first, but the first update waits for every truechimer's
        // filter; source 2's eighth sample completes them and source 0 is
        // adopted. The discipline that takes every sample of the system peer
        // must get source 0's latest sample then, not at its next poll.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        assert!(sys.discipline().wants_every_sample(), "the default discipline takes every sample");
        for id in 0..3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        let mut first_move = None;
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            for id in 0..3u32 {
                let at = at + 0.1 * f64::from(id);
                let delay = if id == 2 { 0.02 } else { 0.0002 * f64::from(id + 1) };
                let u = sys.handle_measurement(&id, &measurement(0.001, delay, at), t(at));
                if u.clock.is_some() && first_move.is_none() {
                    first_move = Some((i, id, sys.system_peer().copied()));
                }
            }
        }
        let (round, id, peer) = first_move.expect("the clock never moved");
        assert_eq!((round, id), (7, 2), "the clock moves on the sample that completes the filters");
        assert!(matches!(peer, Some(0 | 1)), "system peer {peer:?}");
    }

    #[test]
    fn the_first_system_peer_brings_its_burst_into_the_fit_so_the_frequency_is_known_at_once() {
        // As above, with a clock 100 ppm fast: the system peer is adopted on
        // the sample that completes the filters, after its own burst of
        // eight samples 2 s apart. Those samples go into the discipline's
        // fit (ClockDiscipline::prime), so the first update already corrects
        // the frequency; with only the latest sample it stayed at 0 until
        // three more polls had passed (the lab's falseticker test: 1.8 ms
        // off before the frequency was known).
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 0..3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        let mut first = None;
        for i in 0..8 {
            for id in 0..3u32 {
                let at = 2.0 * f64::from(i) + 0.1 * f64::from(id);
                let delay = if id == 2 { 0.02 } else { 0.0002 * f64::from(id + 1) };
                let u = sys.handle_measurement(&id, &measurement(0.05 - 1e-4 * at, delay, at), t(at));
                if let (Some(Action::Slew { frequency, .. }), None) = (u.clock, first) {
                    first = Some(frequency);
                }
            }
        }
        let frequency = first.expect("the clock never moved");
        assert!((frequency + 1e-4).abs() < 5e-6, "first frequency correction {frequency:e}, want -1e-4");
    }

    #[test]
    fn two_agreeing_pairs_half_a_second_apart_are_no_majority_at_startup() {
        // falsetickers-no-majority: sources 0 and 1 agree on +0.45 s, 2 and 3
        // on -0.05 s. After four burst samples every interval is still about a
        // second wide (empty filter stages), all four overlap and selection
        // alone finds a "majority" of four (seed 1: system peer at 6 s). No
        // group is a majority: the clock must never be touched, before or
        // after the startup wait.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 0..4 {
            sys.add_source(id, ReferenceId::NONE);
        }
        let mut last = None;
        for i in 0..48 {
            let at = 2.0 * f64::from(i);
            for id in 0..4u32 {
                let offset = if id < 2 { 0.45 } else { -0.05 };
                let u = sys.handle_measurement(&id, &measurement(offset, 0.0002 * f64::from(id + 1), at), t(at));
                assert!(u.clock.is_none(), "the clock was moved at {at} s by {:?}", u.clock);
                last = u.selection.map(|s| s.outcome);
            }
            assert_eq!(sys.system_peer(), None, "a system peer at {at} s");
        }
        assert_eq!(last, Some(Err(NoSync::NoMajority)));
        assert!(!sys.server_state(t(100.0)).is_synchronized());
    }

    #[test]
    fn a_system_peer_the_selection_drops_is_no_longer_followed() {
        // The regression discipline takes every sample of the system peer.
        // Three sources agree and source 0 (nearest) becomes system peer; then
        // 1 and 2 move 0.3 s either way and, once their filters take the new
        // samples, selection finds no majority and names no system peer.
        // Source 0's samples must stop reaching the discipline (they kept
        // steering the clock: falsetickers-no-majority, seeds 1-3).
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 0..3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            for id in 0..3u32 {
                let _ = sys.handle_measurement(&id, &measurement(0.001, 0.0002 * f64::from(id + 1), at), t(at));
            }
        }
        assert_eq!(sys.system_peer(), Some(&0));
        // Polls 64 s apart: a clock whose frequency is not measured yet may
        // drift 500 ppm (MAXFREQ), 32 ms between polls, far less than the
        // 0.3 s the sources disagree by (600 s apart, it could be 0.3 s).
        let mut no_majority_at = None;
        for k in 0..12 {
            let at = 16.0 + 64.0 * f64::from(k);
            for (id, offset, delay) in [(1, 0.3, 0.0001), (2, -0.3, 0.0001), (0, 0.001, 0.0002)] {
                let u = sys.handle_measurement(&id, &measurement(offset, delay, at), t(at));
                if no_majority_at.is_some() {
                    assert!(u.clock.is_none(), "source {id} steered the clock at {at} s: {:?}", u.clock);
                    assert_eq!(sys.system_peer(), None, "at {at} s");
                }
                if u.selection.is_some_and(|s| s.outcome == Err(NoSync::NoMajority)) {
                    no_majority_at.get_or_insert(at);
                    assert_eq!(sys.system_peer(), None, "at {at} s");
                }
            }
        }
        let at = no_majority_at.expect("the three disagree: no majority");
        assert!(at < 16.0 + 64.0 * 10.0, "no majority only at {at} s");
    }

    /// One source, synchronized on eight samples 2 s apart, then silent for
    /// `stale` polls (each a MAXDISP dummy in its filter).
    fn synced_then_silent(stale: u32) -> System<u32> {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            let _ = sys.handle_measurement(&1, &measurement(0.001, 0.002, at), t(at));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        for k in 1..=stale {
            let _ = sys.handle_stale(&1, t(14.0 + 64.0 * f64::from(k)));
        }
        sys
    }

    #[test]
    fn a_stale_system_peer_is_kept_until_it_is_unreachable() {
        // The only source misses polls 3-7 (stale: five MAXDISP dummies) but
        // its reach register is not empty yet. Its next sample is too far to
        // select under RFC 5905's filter dispersion, or selected again at once
        // (the regression discipline's selection): either way never
        // contradicted, it stays system peer and the sample reaches the
        // discipline, so the free-running clock is corrected at once.
        let mut sys = synced_then_silent(5);
        let at = 14.0 + 64.0 * 6.0;
        let u = sys.handle_measurement(&1, &measurement(0.004, 0.002, at), t(at));
        let outcome = u.selection.map(|s| s.outcome);
        assert!(matches!(outcome, Some(Err(NoSync::NoCandidates)) | Some(Ok(crate::select::Combined { system_peer: 1, .. }))), "{outcome:?}");
        assert_eq!(sys.system_peer(), Some(&1));
        assert!(u.clock.is_some(), "the sample after the outage did not reach the discipline");
    }

    #[test]
    fn an_unreachable_system_peer_is_dropped_and_selected_again_from_its_first_sample_back() {
        // chrony-014-intermittent-link: the only source falls silent until its
        // reach register empties (A.5.2 fit(): unreachable, unfit). It is no
        // longer system peer; its first sample back selects it again and
        // reaches the discipline at once, as chrony selects it anew.
        let mut sys = synced_then_silent(6);
        assert_eq!(sys.system_peer(), Some(&1), "stale, not yet unreachable");
        let u = sys.handle_unreachable(&1, t(14.0 + 64.0 * 8.0));
        let selection = u.selection.expect("selection runs");
        assert_eq!(selection.outcome.err(), Some(NoSync::NoCandidates));
        assert_eq!(selection.rejected, vec![(1, Rejection::Unreachable)]);
        assert_eq!(sys.system_peer(), None);
        // Twice the delay of the two samples still stored from before the
        // outage: the filter keeps its old choice (no new filter output).
        let at = 14.0 + 64.0 * 9.0;
        let u = sys.handle_measurement(&1, &measurement(0.004, 0.004, at), t(at));
        let outcome = u.selection.map(|s| s.outcome);
        assert!(matches!(outcome, Some(Ok(crate::select::Combined { system_peer: 1, .. }))), "{outcome:?}");
        assert_eq!(sys.system_peer(), Some(&1));
        assert!(u.clock.is_some(), "the sample after the outage did not reach the discipline");
    }

    #[test]
    fn an_unreachable_system_peer_is_dropped_but_the_host_serves_what_it_had() {
        // As after a lost majority, the host keeps its clock and its system
        // variables: dropping the silent peer is not following a loop, which
        // would make it unsynchronized (stratum 16) at once.
        let mut sys = synced_then_silent(6);
        let now = t(14.0 + 64.0 * 8.0);
        let served = sys.server_state(now);
        assert_eq!(served.stratum, 2, "synchronized to a stratum 1 source");
        let _ = sys.handle_unreachable(&1, now);
        assert_eq!(sys.system_peer(), None);
        assert_eq!(sys.server_state(now), served);
    }

    #[test]
    fn an_unreachable_system_peer_gives_way_to_a_reachable_source() {
        let mut sys = synced_on_the_better_of_two(DisciplineKind::Regression);
        let u = sys.handle_unreachable(&1, t(600.0));
        let selection = u.selection.expect("selection runs");
        assert_eq!(selection.rejected, vec![(1, Rejection::Unreachable)]);
        assert!(selection.outcome.is_ok_and(|c| c.system_peer == 2));
        assert_eq!(sys.system_peer(), Some(&2));
    }

    #[test]
    fn a_held_selection_names_no_system_peer() {
        // All five answer a burst; the falseticker is nearest, so its fourth
        // sample is the first to pass the distance threshold, while the others
        // are still too far to judge. Selection alone finds it a majority of
        // one; the startup rule holds the clock, and the update must say so
        // rather than report the falseticker as system peer (seed 2 of
        // falsetickers-1-of-5 reported it at 6 s).
        let mut sys = five_sources_one_liar();
        for i in 0..3 {
            for id in 0..5 {
                let _ = five_sources_sample(&mut sys, id, 2.0 * f64::from(i));
            }
        }
        let u = five_sources_sample(&mut sys, 0, 6.0);
        let selection = u.selection.expect("a filter update runs selection");
        assert_eq!(selection.truechimers, vec![0], "only the falseticker passes the distance threshold yet");
        assert_eq!(selection.outcome, Err(NoSync::StartupWait { truechimers: 1, configured: 5 }));
        assert!(u.clock.is_none());
        assert_eq!(sys.system_peer(), None);
    }

    #[test]
    fn a_single_source_is_not_held_back() {
        // One configured source is a majority of one: the first update comes
        // with the first sample whose distance passes. With the default
        // regression discipline (which weighs every sample itself) that is the
        // first sample, as in chrony; with RFC 5905's, the clock filter's
        // initial MAXDISP stages keep the distance above MAXDIST until the
        // fourth.
        for (algorithm, want) in [(DisciplineKind::Regression, 0), (DisciplineKind::Rfc5905, 3)] {
            let mut sys: System<u32> = System::new(SystemConfig { algorithm, ..SystemConfig::default() });
            sys.add_source(1, ReferenceId::NONE);
            let first = (0..8).find(|i| {
                let at = 2.0 * f64::from(*i);
                sys.handle_measurement(&1, &measurement(0.001, 0.002, at), t(at)).clock.is_some()
            });
            assert_eq!(first, Some(want), "{algorithm:?}");
        }
    }

    #[test]
    fn the_system_peers_leap_indicator_is_propagated() {
        // §11.2.3: the system leap indicator follows the system peer's.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        let with_leap = |leap, at: f64| Measurement { leap, ..measurement(0.001, 0.002, at) };
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &with_leap(LeapIndicator::Insert, at), t(at));
        }
        assert_eq!(sys.server_state(t(16.0)).leap, LeapIndicator::Insert);
        for i in 8..16 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &with_leap(LeapIndicator::Delete, at), t(at));
        }
        assert_eq!(sys.server_state(t(32.0)).leap, LeapIndicator::Delete);
    }

    #[test]
    fn a_step_resets_every_filter() {
        // §11.2.3: after a step every association starts over. Two sources
        // agree on +1 s; the step empties both filters, so the next sample of
        // either is a lone one (seven empty stages at MAXDISP): too far to
        // select, no second correction from pre-step samples. (RFC 5905's
        // discipline: with the regression discipline a lone sample is
        // selected, and this test's clock does not jump with the step.)
        let mut sys: System<u32> = System::new(SystemConfig { algorithm: DisciplineKind::Rfc5905, ..SystemConfig::default() });
        sys.add_source(1, ReferenceId::NONE);
        sys.add_source(2, ReferenceId::NONE);
        let mut stepped_at = None;
        // Both filters fill (8 samples) before the first update may step.
        for i in 0..16 {
            let at = 2.0 * f64::from(i);
            for id in [1, 2] {
                let u = sys.handle_measurement(&id, &measurement(1.0, 0.002 * f64::from(id), at), t(at));
                if u.stepped {
                    assert!(matches!(u.clock, Some(Action::Step { .. })), "{u:?}");
                    stepped_at.get_or_insert(at);
                }
            }
            if stepped_at.is_some() {
                break;
            }
        }
        let at = stepped_at.expect("a 1 s offset is stepped") + 2.0;
        for id in [1, 2] {
            let u = sys.handle_measurement(&id, &measurement(0.0, 0.002, at), t(at));
            assert!(u.clock.is_none(), "source {id}: a correction right after the step: {u:?}");
            let selection = u.selection.expect("a filter update runs selection");
            assert!(selection.rejected.iter().all(|(_, r)| *r == Rejection::DistanceTooLarge), "{selection:?}");
        }
    }

    /// One source, 16 samples of zero offset `interval` s apart from 0 s,
    /// none of them reporting the clock set back.
    fn fed_16_samples(algorithm: DisciplineKind, interval: f64) -> System<u32> {
        let mut sys: System<u32> = System::new(SystemConfig { algorithm, ..SystemConfig::default() });
        sys.add_source(1, ReferenceId::NONE);
        for i in 0..16 {
            let at = interval * f64::from(i);
            let u = sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
            assert_eq!(u.clock_went_back, None);
        }
        sys
    }

    #[test]
    fn a_clock_set_back_by_another_program_drops_the_old_samples_and_the_next_offset_steps() {
        // chrony's 005-externalstep with `makestep 1 -1`: the clock is set
        // back by 500 s. The filter's samples are then 500 s in the
        // future; kept, every new sample was older than the one used last
        // and never reached the discipline (the clock stayed 500 s off).
        let mut sys = fed_16_samples(DisciplineKind::Regression, 64.0);
        assert!(sys.server_state(t(960.0)).is_synchronized());
        let at = 1024.0 - 500.0;
        let u = sys.handle_measurement(&1, &measurement(500.0, 0.002, at), t(at));
        let back = u.clock_went_back.expect("an arrival before the last one is reported");
        assert!((back.to_seconds_f64() - 436.0).abs() < 1e-6, "{back:?}");
        assert!(matches!(u.clock, Some(Action::Step { .. })), "the clock is set right at once: {u:?}");
        assert!(u.stepped);
        // After the step, arrival times go on from the new timescale.
        let at = 1088.0;
        let u = sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
        assert_eq!(u.clock_went_back, None, "{u:?}");
    }

    #[test]
    fn replies_of_two_sources_handled_a_little_out_of_order_are_no_clock_set_back() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        sys.add_source(2, ReferenceId::NONE);
        for i in 0..8 {
            let at = 64.0 * f64::from(i);
            // Source 2's reply came 1 ms after source 1's and was read first.
            let u = sys.handle_measurement(&2, &measurement(0.0, 0.002, at + 0.001), t(at + 0.001));
            assert_eq!(u.clock_went_back, None);
            let u = sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at + 0.001));
            assert_eq!(u.clock_went_back, None, "at {at} s");
        }
        assert!(sys.server_state(t(500.0)).is_synchronized());
    }

    #[test]
    fn a_clock_set_back_makes_the_host_unsynchronized_until_it_selects_again() {
        let mut sys = fed_16_samples(DisciplineKind::Rfc5905, 16.0);
        assert!(sys.server_state(t(240.0)).is_synchronized());
        let u = sys.handle_measurement(&1, &measurement(10.0, 0.002, 100.0), t(100.0));
        assert!(u.clock_went_back.is_some());
        assert!(!sys.server_state(t(100.0)).is_synchronized(), "the set-back clock is not served as synchronized");
        assert_eq!(sys.system_peer(), None);
    }

    #[test]
    fn a_local_reference_announces_its_leap_during_the_month() {
        let at = NtpTime::parse_rfc3339("2017-01-01T00:00:00Z").unwrap();
        let leap = LeapAnnouncement { at, kind: LeapIndicator::Insert };
        let local = LocalReference { stratum: 1, reference_id: ReferenceId::from_ascii("GPS"), leap: Some(leap) };
        let sys: System<u32> = System::new(SystemConfig { local: Some(local), ..SystemConfig::default() });
        let at_time = |s: &str| sys.server_state(NtpTime::parse_rfc3339(s).unwrap()).leap;
        assert_eq!(at_time("2016-11-30T23:59:59Z"), LeapIndicator::NoWarning);
        assert_eq!(at_time("2016-12-01T00:00:00Z"), LeapIndicator::Insert);
        assert_eq!(at_time("2016-12-31T23:59:59Z"), LeapIndicator::Insert);
        assert_eq!(at_time("2017-01-01T00:00:00Z"), LeapIndicator::NoWarning);
    }

    #[test]
    fn a_sample_is_used_once() {
        // RFC 5905's discipline: the lone-sample wait below is §10's.
        let mut sys: System<u32> = System::new(SystemConfig { algorithm: DisciplineKind::Rfc5905, ..SystemConfig::default() });
        sys.add_source(1, ReferenceId::NONE);
        // A lone sample leaves seven empty stages at MAXDISP: too far to select (§11.2.1).
        let lone = sys.handle_measurement(&1, &measurement(0.001, 0.002, 0.0), t(0.0));
        assert!(lone.clock.is_none());
        for i in 1..8 {
            sys.handle_measurement(&1, &measurement(0.001, 0.002, f64::from(i)), t(f64::from(i)));
        }
        let m = measurement(0.001, 0.002, 10.0);
        let first = sys.handle_measurement(&1, &m, t(10.0));
        let again = sys.handle_measurement(&1, &m, t(11.0));
        assert!(first.clock.is_some());
        assert!(again.clock.is_none(), "the same sample must not move the clock twice");
    }

    #[test]
    fn local_reference_serves_when_nothing_is_selected() {
        let local = LocalReference { stratum: 1, reference_id: ReferenceId::from_ascii("LOCL"), leap: None };
        let sys: System<u32> = System::new(SystemConfig { local: Some(local), ..SystemConfig::default() });
        let s = sys.server_state(t(5.0));
        assert!(s.is_synchronized());
        assert_eq!((s.stratum, s.reference_id.ascii()), (1, Some("LOCL")));
        assert_eq!(s.reference_time, Some(t(5.0)));
    }

    /// `n` agreeing sources at 16 s polls, source 0 the nearest (0.2 ms,
    /// the others 2 ms); the default discipline (fed every sample of the
    /// system peer). Returns the time of the last round.
    fn agreeing(sys: &mut System<u32>, n: u32) -> f64 {
        for id in 0..n {
            sys.add_source(id, ReferenceId::NONE);
        }
        let mut at = 0.0;
        for i in 0..12 {
            at = 16.0 * f64::from(i);
            for id in 0..n {
                let delay = if id == 0 { 0.0002 } else { 0.002 };
                let when = at + 0.1 * f64::from(id);
                sys.handle_measurement(&id, &measurement(0.0, delay, when), t(when));
            }
        }
        at
    }

    #[test]
    fn a_system_peers_jumped_sample_is_outvoted_before_the_discipline_takes_it() {
        // system-peer-clock-jump: the system peer's clock jumps 1 s. Its
        // filter still offers its older least-delayed sample, which agrees
        // with the others, so the selection alone would keep it; the
        // discipline must not take the jumped sample (it would step to it
        // or count it in its fit). The others' majority outvotes it.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        assert!(sys.discipline().wants_every_sample());
        let at = agreeing(&mut sys, 3) + 16.0;
        assert_eq!(sys.system_peer(), Some(&0));
        let u = sys.handle_measurement(&0, &measurement(1.0, 0.0002, at), t(at));
        assert_eq!(u.clock, None, "the jumped sample reached the discipline");
        assert!(!u.stepped);
        let selection = u.selection.expect("being outvoted runs the selection");
        assert!(selection.rejected.contains(&(0, Rejection::Outvoted)), "{selection:?}");
        let peer = *sys.system_peer().expect("another source is followed");
        assert_ne!(peer, 0);
        // The new system peer's sample moves the clock, by microseconds.
        let u = sys.handle_measurement(&peer, &measurement(0.000_01, 0.002, at + 0.1), t(at + 0.1));
        match u.clock {
            Some(Action::Slew { phase, .. }) => assert!(phase.to_seconds_f64().abs() < 0.001, "{phase:?}"),
            other => panic!("expected a small slew from the new system peer, got {other:?}"),
        }
        // Still jumped: still outvoted. Back in agreement: fit again.
        let u = sys.handle_measurement(&0, &measurement(1.0, 0.0002, at + 16.0), t(at + 16.0));
        assert_eq!(u.clock, None);
        assert_ne!(sys.system_peer(), Some(&0));
        let u = sys.handle_measurement(&0, &measurement(0.0, 0.0002, at + 32.0), t(at + 32.0));
        let selection = u.selection.expect("agreeing again runs the selection");
        assert!(!selection.rejected.iter().any(|(_, r)| *r == Rejection::Outvoted), "{selection:?}");
        assert!(selection.truechimers.contains(&0), "{selection:?}");
    }

    #[test]
    fn min_sources_holds_the_clock_until_that_many_sources_agree() {
        // chrony's `minsources 3` (116-minsources): one source never steers
        // the clock nor becomes the system peer; three that agree do.
        let config = SystemConfig { selection: SelectionConfig { min_truechimers: 3, ..SelectionConfig::default() }, ..SystemConfig::default() };
        let mut one: System<u32> = System::new(config.clone());
        one.add_source(0, ReferenceId::NONE);
        for i in 0..12 {
            let at = 16.0 * f64::from(i);
            let u = one.handle_measurement(&0, &measurement(0.001, 0.0002, at), t(at));
            assert_eq!(u.clock, None, "at {at} s");
        }
        assert_eq!(one.system_peer(), None);
        assert!(!one.server_state(t(200.0)).is_synchronized());
        let mut three: System<u32> = System::new(config);
        agreeing(&mut three, 3);
        assert_eq!(three.system_peer(), Some(&0));
        assert!(three.server_state(t(200.0)).is_synchronized());
    }

    #[test]
    fn max_change_skips_larger_adjustments_then_gives_up() {
        // chrony's `maxchange 0.1 1 3` (131-maxchange): the first update is
        // not checked; later, an adjustment above 0.1 s is skipped three
        // times and the fourth gives up. Within the limit nothing changes.
        let config = SystemConfig { max_change: Some(MaxChange { offset: 0.1, start: 1, ignore: 3 }), ..SystemConfig::default() };
        let mut sys: System<u32> = System::new(config);
        sys.add_source(0, ReferenceId::NONE);
        let first = sys.handle_measurement(&0, &measurement(2.0, 0.0002, 0.0), t(0.0));
        assert!(matches!(first.clock, Some(Action::Step { .. })), "the first update is unchecked: {first:?}");
        let mut at = 0.0;
        for _ in 0..3 {
            at += 64.0;
            let u = sys.handle_measurement(&0, &measurement(0.001, 0.0002, at), t(at));
            assert!(u.clock.is_some() && u.max_change.is_none(), "at {at} s: {u:?}");
        }
        for n in 0..4 {
            at += 64.0;
            let u = sys.handle_measurement(&0, &measurement(1.0, 0.0002, at), t(at));
            let e = u.max_change.expect("an adjustment above the limit is refused");
            assert_eq!(u.clock, None, "at {at} s");
            assert!((e.adjustment.to_seconds_f64() - 1.0).abs() < 0.01 && e.limit == 0.1, "{e:?}");
            assert_eq!(e.giving_up, n == 3, "skip {n}");
            assert_eq!(sys.gave_up().is_some(), n == 3);
        }
        // Given up: nothing moves the clock any more.
        at += 64.0;
        let u = sys.handle_measurement(&0, &measurement(0.001, 0.0002, at), t(at));
        assert_eq!(u.clock, None);
        // A negative `ignore` never gives up.
        let config = SystemConfig { max_change: Some(MaxChange { offset: 0.1, start: 0, ignore: -1 }), ..SystemConfig::default() };
        let mut sys: System<u32> = System::new(config);
        sys.add_source(0, ReferenceId::NONE);
        for i in 0..10 {
            let at = 64.0 * f64::from(i);
            let u = sys.handle_measurement(&0, &measurement(1.0, 0.0002, at), t(at));
            assert!(u.max_change.is_some_and(|e| !e.giving_up), "{u:?}");
        }
        assert_eq!(sys.gave_up(), None);
    }

    #[test]
    fn one_of_two_sources_is_not_outvoted() {
        // With two sources neither is a majority without the other: the
        // system peer's new sample is not judged (the selection finds no
        // majority once its filter offers the jumped sample).
        let mut sys: System<u32> = System::new(SystemConfig::default());
        let at = agreeing(&mut sys, 2);
        assert_eq!(sys.system_peer(), Some(&0));
        let u = sys.handle_measurement(&0, &measurement(1.0, 0.0002, at + 16.0), t(at + 16.0));
        assert!(u.clock.is_some(), "the discipline judges the sample itself");
        assert!(u.selection.is_none_or(|s| !s.rejected.iter().any(|(_, r)| *r == Rejection::Outvoted)));
    }

    #[test]
    fn a_falseticker_is_outvoted() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 0..3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        let mut last = None;
        for i in 0..8 {
            let at = 64.0 * f64::from(i);
            sys.handle_measurement(&0, &measurement(0.001, 0.002, at), t(at));
            sys.handle_measurement(&1, &measurement(0.0012, 0.002, at + 0.1), t(at + 0.1));
            last = Some(sys.handle_measurement(&2, &measurement(2.0, 0.002, at + 0.2), t(at + 0.2)));
        }
        let selection = last.unwrap().selection.unwrap();
        assert_eq!(selection.falsetickers, vec![2]);
        assert_ne!(sys.system_peer(), Some(&2));
        assert!(sys.offset_and_jitter().0.to_seconds_f64().abs() < 0.01);
    }

    #[test]
    fn removing_the_system_peer_clears_it() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(7, ReferenceId::NONE);
        for i in 0..8 {
            sys.handle_measurement(&7, &measurement(0.0, 0.001, f64::from(i)), t(f64::from(i)));
        }
        assert_eq!(sys.system_peer(), Some(&7));
        sys.remove_source(&7);
        assert_eq!(sys.system_peer(), None);
        assert!(sys.handle_measurement(&7, &measurement(0.0, 0.001, 9.0), t(9.0)).selection.is_none());
    }

    /// `measurement` from a server at `stratum` whose reference ID is `refid`.
    fn from_server(stratum: u8, refid: ReferenceId, offset: f64, at: f64) -> Measurement {
        Measurement { stratum, reference_id: refid, ..measurement(offset, 0.002, at) }
    }

    fn rejections(u: &SystemUpdate<u32>) -> Vec<(u32, Rejection)> {
        u.selection.as_ref().map(|s| s.rejected.clone()).unwrap_or_default()
    }

    #[test]
    fn a_source_synchronized_to_this_host_is_a_loop_and_never_selected() {
        let me4: std::net::Ipv4Addr = "192.0.2.9".parse().unwrap();
        let me6: std::net::Ipv6Addr = "2001:db8::9".parse().unwrap();
        let mut sys: System<u32> = System::new(SystemConfig::default());
        assert!(sys.add_own_address(IpAddr::V4(me4)));
        assert!(!sys.add_own_address("::ffff:192.0.2.9".parse().unwrap()), "the same address, mapped");
        assert!(!sys.add_own_address("0.0.0.0".parse().unwrap()));
        assert!(!sys.add_own_address("127.0.0.1".parse().unwrap()), "shared by every daemon of the host");
        assert!(!sys.add_own_address("::1".parse().unwrap()));
        assert!(sys.add_own_address(IpAddr::V6(me6)));
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        sys.add_source(2, ReferenceId::from_ipv4("192.0.2.2".parse().unwrap()));
        for i in 0..16 {
            let at = 16.0 * f64::from(i);
            let u = sys.handle_measurement(&1, &from_server(3, ReferenceId::from_ipv4(me4), 0.0, at), t(at));
            assert!(rejections(&u).contains(&(1, Rejection::Loop)), "{:?}", rejections(&u));
            let u = sys.handle_measurement(&2, &from_server(4, ReferenceId::from_ipv6(me6), 0.0, at + 1.0), t(at + 1.0));
            assert!(rejections(&u).contains(&(2, Rejection::Loop)), "IPv6 by its hash ID: {:?}", rejections(&u));
            assert_eq!(sys.system_peer(), None);
        }
        assert!(!sys.server_state(t(300.0)).is_synchronized());
    }

    #[test]
    fn an_ntpv5_source_is_not_selected_before_its_whole_filter_arrives() {
        let me = V5ReferenceId::from_random([9; 15]);
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.set_own_v5_id(me);
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        let refid = ReferenceId::from_ipv4("192.0.2.99".parse().unwrap());
        for i in 0..6 {
            let at = 16.0 * f64::from(i + 1);
            sys.await_reference_ids(&1);
            let u = sys.handle_measurement(&1, &from_server(2, refid, 0.0, at), t(at));
            assert_eq!(rejections(&u), vec![(1, Rejection::ReferenceIdsIncomplete)], "reply {i}");
            assert_eq!(sys.system_peer(), None);
        }
        // The whole filter arrives and does not hold this host's ID: selected.
        let mut clean = BloomFilter::EMPTY;
        clean.add(&V5ReferenceId::from_random([10; 15]));
        sys.set_reference_ids(&1, &clean, 0);
        let u = sys.handle_measurement(&1, &from_server(2, refid, 0.0, 112.0), t(112.0));
        assert!(rejections(&u).is_empty(), "{:?}", rejections(&u));
        assert_eq!(sys.system_peer(), Some(&1));
    }

    #[test]
    fn an_ntpv5_source_whose_reference_ids_hold_this_host_is_a_loop() {
        let me = V5ReferenceId::from_random([9; 15]);
        let other = V5ReferenceId::from_random([10; 15]);
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.set_own_v5_id(me);
        assert!(sys.served_reference_ids().contains(&me));
        assert_eq!(sys.served_reference_ids().count_ones(), 10);
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        sys.set_source_v5_id(&1, V5ReferenceId::from_address("192.0.2.1".parse().unwrap()));
        let mut through_me = BloomFilter::EMPTY;
        through_me.add(&me);
        through_me.add(&other);
        let mut clean = BloomFilter::EMPTY;
        clean.add(&other);
        let mut at = 0.0;
        let mut feed = |sys: &mut System<u32>, filter: &BloomFilter, random: u64| {
            at += 16.0;
            sys.set_reference_ids(&1, filter, random);
            sys.handle_measurement(&1, &from_server(2, ReferenceId::from_ipv4("192.0.2.99".parse().unwrap()), 0.0, at), t(at))
        };
        for _ in 0..10 {
            let u = feed(&mut sys, &through_me, 0);
            assert_eq!(rejections(&u), vec![(1, Rejection::Loop)]);
            assert_eq!(sys.system_peer(), None);
        }
        // The loop clears: out for 3 (= 8 % 5) polls, that one included, then selected.
        for k in 0..3 {
            let random = if k == 0 { 8 } else { 0 };
            assert_eq!(rejections(&feed(&mut sys, &clean, random)), vec![(1, Rejection::Loop)], "held, poll {k}");
        }
        let mut selected = false;
        for _ in 0..8 {
            let u = feed(&mut sys, &clean, 0);
            assert!(rejections(&u).is_empty(), "{:?}", rejections(&u));
            selected |= sys.system_peer() == Some(&1);
        }
        assert!(selected);
        // Selected: the served filter is this host's ID and the source's filter.
        let served = *sys.served_reference_ids();
        assert!(served.contains(&me) && served.contains(&other));
        assert_eq!(served.count_ones(), 20);
    }

    #[test]
    fn an_ntpv4_source_adds_its_address_id_to_the_served_filter() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        let me = V5ReferenceId::from_random([1; 15]);
        sys.set_own_v5_id(me);
        sys.add_source(1, ReferenceId::NONE);
        let addr_id = V5ReferenceId::from_address("192.0.2.1".parse().unwrap());
        sys.set_source_v5_id(&1, addr_id);
        assert!(!sys.served_reference_ids().contains(&addr_id), "not selected yet");
        for i in 0..12 {
            sys.handle_measurement(&1, &from_server(1, ReferenceId::from_ascii("GPS"), 0.0, f64::from(i)), t(f64::from(i)));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        assert!(sys.served_reference_ids().contains(&addr_id));
        assert!(sys.served_reference_ids().contains(&me));
    }

    #[test]
    fn stratum_1_reference_ids_are_clock_codes_not_addresses() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        // "LOCL" read as an IPv4 address is 76.79.67.76.
        sys.add_own_address("76.79.67.76".parse().unwrap());
        sys.add_source(1, ReferenceId::NONE);
        for i in 0..8 {
            sys.handle_measurement(&1, &from_server(1, ReferenceId::from_ascii("LOCL"), 0.0, f64::from(i)), t(f64::from(i)));
        }
        assert_eq!(sys.system_peer(), Some(&1));
    }

    #[test]
    fn the_system_peer_turning_into_a_loop_is_dropped_with_its_variables() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_own_address("192.0.2.9".parse().unwrap());
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        for i in 0..8 {
            sys.handle_measurement(&1, &from_server(1, ReferenceId::from_ascii("GPS"), 0.0, f64::from(i)), t(f64::from(i)));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        assert_eq!(sys.server_state(t(9.0)).stratum, 2);
        // The server lost its reference and now follows this host.
        let u = sys.handle_measurement(&1, &from_server(3, ReferenceId::from_ipv4("192.0.2.9".parse().unwrap()), 0.0, 20.0), t(20.0));
        assert_eq!(rejections(&u), vec![(1, Rejection::Loop)]);
        assert_eq!(sys.system_peer(), None);
        assert!(!sys.server_state(t(21.0)).is_synchronized(), "no longer serving what came from itself");
    }

    #[test]
    fn a_source_following_what_this_host_follows_is_unfit() {
        let upstream: std::net::Ipv4Addr = "192.0.2.1".parse().unwrap();
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::from_ipv4(upstream));
        sys.add_source(2, ReferenceId::from_ipv4("192.0.2.2".parse().unwrap()));
        // Only source 1 answers: it is followed once the startup wait (which
        // wants a majority of both configured sources) has passed.
        for i in 0..8 {
            let at = f64::from(i) * 10.0;
            sys.handle_measurement(&1, &from_server(1, ReferenceId::from_ascii("GPS"), 0.0, at), t(at));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        // Source 2 is synchronized to our system peer (its refid is our refid).
        let u = sys.handle_measurement(&2, &from_server(2, ReferenceId::from_ipv4(upstream), 0.0, 80.0), t(80.0));
        assert!(rejections(&u).contains(&(2, Rejection::Loop)), "{:?}", rejections(&u));
        assert_eq!(sys.system_peer(), Some(&1));
    }

    #[test]
    fn with_a_local_reference_only_lower_strata_are_followed() {
        let local = LocalReference { stratum: 5, reference_id: ReferenceId::from_ascii("LOCL"), leap: None };
        let mut sys: System<u32> = System::new(SystemConfig { local: Some(local), ..SystemConfig::default() });
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        sys.add_source(2, ReferenceId::from_ipv4("192.0.2.2".parse().unwrap()));
        for i in 0..8 {
            let at = f64::from(i);
            let u = sys.handle_measurement(&1, &from_server(5, ReferenceId::from_ascii("LOCL"), 0.0, at), t(at));
            assert!(rejections(&u).contains(&(1, Rejection::NotBelowLocalStratum)));
        }
        assert_eq!(sys.system_peer(), None);
        assert_eq!(sys.server_state(t(9.0)).stratum, 5, "its own local reference");
        // Source 2 alone of the two is fit: followed after the startup wait.
        for i in 0..8 {
            let at = 10.0 + f64::from(i) * 10.0;
            sys.handle_measurement(&2, &from_server(4, ReferenceId::from_ipv4("198.51.100.1".parse().unwrap()), 0.0, at), t(at));
        }
        assert_eq!(sys.system_peer(), Some(&2));
        assert_eq!(sys.server_state(t(90.0)).stratum, 5, "stratum 4 + 1");
    }

    #[test]
    fn the_system_poll_offset_and_jitter_follow_the_discipline_and_the_selection() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        assert_eq!(sys.poll_log2(), crate::constants::DEFAULT_MINPOLL, "the discipline starts at its lowest poll");
        let u = sys.handle_measurement(&1, &measurement(0.001, 0.002, 0.0), t(0.0));
        assert!(u.selection.is_some_and(|s| s.outcome.is_ok()), "a lone source is selected from its first sample");
        let (offset, jitter) = sys.offset_and_jitter();
        assert!((offset.to_seconds_f64() - 0.001).abs() < 1e-6, "the combined offset is the selection's: {offset:?}");
        assert!(jitter > NtpDuration::ZERO, "{jitter:?}");
        assert_eq!(sys.poll_log2(), sys.discipline().poll());
    }

    #[test]
    fn a_sample_handled_twice_reaches_the_discipline_once() {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        let m = measurement(0.001, 0.002, 0.0);
        assert!(sys.handle_measurement(&1, &m, t(0.0)).clock.is_some());
        assert!(sys.handle_measurement(&1, &m, t(0.0)).clock.is_none(), "the same sample again moves nothing");
    }

    #[test]
    fn the_filters_use_the_systems_precision() {
        // Identical samples have no jitter of their own: the filter floors it
        // at the local precision, here 2^-10 s (about 1 ms), not the default 2^-20 s.
        let config = SystemConfig { precision_log2: -10, ..SystemConfig::default() };
        let mut sys: System<u32> = System::new(config);
        sys.add_source(1, ReferenceId::NONE);
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
        }
        let (_, jitter) = sys.offset_and_jitter();
        assert!(jitter.to_seconds_f64() >= 2f64.powi(-10) * 0.99, "{jitter:?}");
    }

    #[test]
    fn before_the_first_sync_a_dummy_sample_runs_selection() {
        // Two configured sources, one answering: the startup rule holds the
        // clock (one is no majority of two). A poll that finds the answering
        // one silent shifts a MAXDISP dummy in (§13.2); until the system
        // synchronizes, every such filter update runs selection (A.5.2); the
        // dummy's dispersion now keeps the source out.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        sys.add_source(2, ReferenceId::NONE);
        sys.handle_measurement(&1, &measurement(0.0, 0.002, 0.0), t(0.0));
        assert!(!sys.server_state(t(0.0)).is_synchronized());
        let u = sys.handle_stale(&1, t(64.0));
        let selection = u.selection.expect("selection ran on the dummy");
        assert_eq!(selection.outcome.err(), Some(NoSync::NoCandidates));
        assert_eq!(selection.rejected, vec![(1, Rejection::DistanceTooLarge)]);
    }

    #[test]
    fn once_synchronized_a_stale_filter_runs_no_selection() {
        // A.5.2's "anything goes" ends with the first synchronization: a
        // sample that leaves the filter's (already used) best in place is no
        // news for selection.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
        }
        assert!(sys.server_state(t(16.0)).is_synchronized());
        let u = sys.handle_measurement(&1, &measurement(0.0, 0.050, 18.0), t(18.0));
        assert!(u.selection.is_none(), "{:?}", u.selection);
    }

    #[test]
    fn at_startup_a_source_too_far_to_select_holds_the_clock_for_the_startup_wait() {
        // Three configured sources: two agree with full filters, the third
        // answers with a 2 s root dispersion. Two of three are a majority, but
        // within the startup wait a source rejected only for its distance may
        // still come closer: the clock waits. At exactly STARTUP_WAIT_S after
        // the first selection the majority rule alone applies.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 1..=3 {
            sys.add_source(id, ReferenceId::NONE);
        }
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
            sys.handle_measurement(&2, &measurement(0.0, 0.002, at + 0.5), t(at + 0.5));
            if i == 0 {
                let far = Measurement { root_dispersion: NtpShort::from_seconds_f64(2.0), ..measurement(0.0, 0.002, 1.0) };
                sys.handle_measurement(&3, &far, t(1.0));
            }
        }
        assert!(!sys.server_state(t(20.0)).is_synchronized(), "held while source 3 is only too far");
        let u = sys.handle_measurement(&1, &measurement(0.0, 0.002, 64.0), t(64.0));
        assert!(u.selection.is_some_and(|s| s.outcome.is_ok()));
        assert!(sys.server_state(t(64.0)).is_synchronized(), "the startup wait ends at 64 s");
    }

    /// The candidates a [`Spy`] was last given.
    type Seen = std::rc::Rc<std::cell::RefCell<Vec<Candidate<u32>>>>;

    /// A selection that records the candidates it is given.
    struct Spy(Seen, Rfc5905Selection);

    impl SelectionAlgorithm<u32> for Spy {
        fn name(&self) -> &'static str {
            "spy"
        }
        fn select(&mut self, candidates: &[Candidate<u32>], context: &SelectionContext<u32>) -> Selection<u32> {
            *self.0.borrow_mut() = candidates.to_vec();
            self.1.select(candidates, context)
        }
    }

    /// A default system whose selection is a [`Spy`], with source 1 added;
    /// the candidates of its last selection.
    fn spied() -> (System<u32>, Seen) {
        let seen = Seen::default();
        let mut sys: System<u32> =
            System::with_selection(SystemConfig::default(), Box::new(Spy(seen.clone(), Rfc5905Selection::default())));
        sys.add_source(1, ReferenceId::NONE);
        (sys, seen)
    }

    #[test]
    fn an_unmeasured_frequency_prefers_a_newer_sample_and_widens_its_interval() {
        // Before the discipline has measured the frequency (uncertain to
        // MAXFREQ = 500 ppm), an old sample bounds the offset by δ/2 + (500 −
        // 15) ppm × its age. Source 1 holds a 0.2 ms-delay sample from t = 0
        // and a 20 ms one from t = 40; at t = 50 the old one's bound is
        // 0.1 + 24.25 ms, the new one's 10 + 4.85 ms: the candidate is the
        // newer sample, its dispersion raised by 4.85 ms. (The clock filter
        // alone would offer the least-delayed one.)
        let (mut sys, seen) = spied();
        sys.add_source(2, ReferenceId::NONE);
        sys.handle_measurement(&1, &measurement(0.0, 0.0002, 0.0), t(0.0));
        sys.handle_measurement(&1, &measurement(0.003, 0.020, 40.0), t(40.0));
        assert!(!sys.server_state(t(40.0)).is_synchronized(), "one of two answered: no sample reached the discipline");
        sys.handle_measurement(&2, &measurement(0.003, 0.002, 50.0), t(50.0));
        let c = seen.borrow().iter().find(|c| c.id == 1).cloned().expect("source 1 is a candidate");
        assert_eq!(c.time, t(40.0));
        assert!((c.offset.to_seconds_f64() - 0.003).abs() < 1e-6, "{:?}", c.offset);
        assert!((c.delay.to_seconds_f64() - 0.020).abs() < 1e-6, "{:?}", c.delay);
        // The filter's dispersion (both samples, by delay rank, aged at PHI:
        // (½ · 0.751 + ¼ · 0.151) / ¾ = 0.551 ms) plus the drift term.
        let own = (0.5 * (1e-6 + PHI * 50.0) + 0.25 * (1e-6 + PHI * 10.0)) / 0.75;
        let drift = (crate::constants::MAXFREQ - PHI) * 10.0;
        assert!((c.dispersion.to_seconds_f64() - own - drift).abs() < 1e-7, "dispersion {:?} vs {own:.4e} + {drift:.4e} s", c.dispersion);
    }

    /// A system of `configured` sources of which the first `answering` each
    /// give eight agreeing samples (full filters) within the startup wait;
    /// whether it synchronized.
    fn synchronizes_with(configured: u32, answering: u32) -> bool {
        let mut sys: System<u32> = System::new(SystemConfig::default());
        for id in 1..=configured {
            sys.add_source(id, ReferenceId::NONE);
        }
        for i in 0..8 {
            for id in 1..=answering {
                let at = 2.0 * f64::from(i) + 0.1 * f64::from(id);
                sys.handle_measurement(&id, &measurement(0.0, 0.002, at), t(at));
            }
        }
        sys.server_state(t(20.0)).is_synchronized()
    }

    #[test]
    fn at_startup_the_truechimers_must_be_a_majority_of_every_configured_source() {
        assert!(synchronizes_with(1, 1));
        assert!(!synchronizes_with(2, 1), "one of two is no majority");
        assert!(!synchronizes_with(4, 2), "two of four is no majority");
        assert!(synchronizes_with(3, 2));
        assert!(synchronizes_with(5, 3));
        assert!(!synchronizes_with(5, 2));
    }

    /// A sample from source 2, which is worse than source 1 (10 ms root dispersion).
    fn worse(at: f64) -> Measurement {
        Measurement { root_dispersion: NtpShort::from_seconds_f64(0.01), ..measurement(0.0, 0.002, at) }
    }

    /// Sources 1 and 2 with eight samples each, synchronized to source 1.
    fn synced_on_the_better_of_two(algorithm: DisciplineKind) -> System<u32> {
        let mut sys: System<u32> = System::new(SystemConfig { algorithm, ..SystemConfig::default() });
        sys.add_source(1, ReferenceId::NONE);
        sys.add_source(2, ReferenceId::NONE);
        let worse = |at: f64| Measurement { root_dispersion: NtpShort::from_seconds_f64(0.01), ..measurement(0.0, 0.002, at) };
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&1, &measurement(0.0, 0.002, at), t(at));
            sys.handle_measurement(&2, &worse(at + 0.5), t(at + 0.5));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        sys
    }

    #[test]
    fn another_sources_sample_does_not_feed_the_system_peers_old_sample_again() {
        // A.5.5.1: only a system-peer sample newer than the last one used
        // moves the clock. With RFC 5905's discipline (fed by selection, not
        // by every sample), a sample from the second source re-runs selection
        // with the system peer's candidate unchanged: no clock update.
        let mut sys = synced_on_the_better_of_two(DisciplineKind::Rfc5905);
        let u = sys.handle_measurement(&2, &worse(20.0), t(20.0));
        assert!(u.selection.is_some_and(|s| s.outcome.is_ok_and(|c| c.system_peer == 1)));
        assert!(u.clock.is_none(), "{:?}", u.clock);
    }

    #[test]
    fn a_new_system_peer_is_served_at_once_even_without_a_newer_sample() {
        // Source 1 (192.0.2.1) is the system peer. Its next sample says it
        // moved to stratum 3: selection now prefers source 2 (192.0.2.2),
        // whose best sample is older than the last one used, so the clock does
        // not move, but the served reference ID and stratum follow the new
        // system peer now (downstream loop detection reads them).
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()));
        sys.add_source(2, ReferenceId::from_ipv4("192.0.2.2".parse().unwrap()));
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            sys.handle_measurement(&2, &measurement(0.0, 0.002, at), t(at));
            sys.handle_measurement(&1, &measurement(0.0, 0.002, at + 0.5), t(at + 0.5));
        }
        assert_eq!(sys.system_peer(), Some(&1));
        assert_eq!(sys.server_state(t(16.0)).reference_id.to_ipv4().to_string(), "192.0.2.1");
        let moved = Measurement { stratum: 3, ..measurement(0.0, 0.001, 16.0) };
        sys.handle_measurement(&1, &moved, t(16.0));
        assert_eq!(sys.system_peer(), Some(&2));
        let served = sys.server_state(t(16.0));
        assert_eq!(served.reference_id.to_ipv4().to_string(), "192.0.2.2");
        assert_eq!(served.stratum, 2);
    }

    #[test]
    fn the_served_root_dispersion_is_rfc_5905s_sum() {
        // §11.2.3 / A.5.5.1: Θ_root dispersion = the peer's root dispersion +
        // its dispersion + sqrt(peer jitter² + system jitter²) + PHI × the
        // sample's age + |the combined offset|. Each term is made large enough
        // to tell (a 0.1 s root dispersion, 10 ms sample dispersions, ±2 ms
        // offsets, samples handled 5 s after they were taken).
        let (mut sys, seen) = spied();
        let mut now = t(0.0);
        for i in 0..8 {
            let at = 2.0 * f64::from(i);
            let offset = if i % 2 == 0 { 0.002 } else { -0.002 };
            let m = Measurement {
                dispersion: NtpDuration::from_seconds_f64(0.01),
                root_dispersion: NtpShort::from_seconds_f64(0.1),
                ..measurement(offset, 0.009 - 0.001 * f64::from(i), at)
            };
            now = t(at + 5.0);
            sys.handle_measurement(&1, &m, now);
        }
        let c = seen.borrow().iter().find(|c| c.id == 1).cloned().expect("a candidate");
        let (offset, jitter) = sys.offset_and_jitter();
        let s = NtpDuration::to_seconds_f64;
        let age = s(now - c.time);
        assert!((age - 5.0).abs() < 1e-6, "{age}");
        let expected = s(c.root_dispersion) + s(c.dispersion) + s(c.jitter).hypot(s(jitter)) + PHI * age + s(offset).abs();
        assert!(expected > MINDISP);
        let served = s(sys.state.root_dispersion);
        assert!((served - expected).abs() < 1e-9, "served {served:.9} s, RFC 5905 {expected:.9} s");
    }

    #[test]
    fn another_sources_sample_leaves_the_clock_and_the_served_variables_alone() {
        // The same with the regression discipline (fed every sample of the
        // system peer itself): source 2's sample re-runs selection, which
        // keeps source 1 with no newer sample. Nothing is fed to the
        // discipline again and what this host serves stays as source 1's
        // last sample set it.
        let mut sys = synced_on_the_better_of_two(DisciplineKind::Regression);
        let served = sys.state;
        let u = sys.handle_measurement(&2, &worse(20.0), t(20.0));
        assert!(u.selection.is_some_and(|s| s.outcome.is_ok_and(|c| c.system_peer == 1)));
        assert!(u.clock.is_none(), "{:?}", u.clock);
        assert_eq!(sys.state, served);
    }

    #[test]
    fn a_slew_replacing_one_in_progress_leaves_the_stored_samples_as_after_it() {
        // A sample stored during a slew counts the slew's pending phase as
        // done (`handle_measurement`). When the discipline answers with a new
        // slew through the tick, that slew replaces what was left of the old
        // one: once it is in, the newest stored sample must read its measured
        // offset less the new slew's phase (its age is zero: no frequency
        // term), not less the new phase and twice the pending one.
        let mut sys: System<u32> = System::new(SystemConfig::default());
        sys.add_source(1, ReferenceId::NONE);
        let mut replaced = 0;
        for i in 0..16 {
            let at = 0.5 * f64::from(i);
            let m = measurement(0.050, 0.002, at);
            let pending = sys.discipline().pending_phase(t(at));
            let u = sys.handle_measurement(&1, &m, t(at));
            let Some(Action::Slew { phase, max_rate: Some(_), .. }) = u.clock else { continue };
            let stored = sys.peers[&1].filter.stages()[0].sample.expect("the sample just stored");
            assert_eq!(stored.time, t(at));
            let expected = (m.offset - phase).to_seconds_f64();
            let got = stored.offset.to_seconds_f64();
            assert!((got - expected).abs() < 1e-9, "at {at} s, {pending:?} pending: stored {got:.9} s, measured less the slew {expected:.9} s");
            if pending.to_seconds_f64().abs() > 1e-6 {
                replaced += 1;
            }
        }
        assert!(replaced > 0, "no slew was still in progress at a sample");
    }
}
