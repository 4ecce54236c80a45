//! The clock discipline of RFC 5905 §11.3 (A.5.5.6 `local_clock()`,
//! A.5.5.7 `rstclock()`, A.5.6.1 `clock_adjust()`), and the seam for others.
//!
//! [`ClockDiscipline`] is what the system process ([`crate::system::System`])
//! drives; [`DisciplineKind`] chooses the algorithm: [`Discipline`] (this
//! module, RFC 5905) or [`regression::RegressionDiscipline`] (least squares in
//! the manner of chrony, the default). Both emit the same [`Action`]s.
//!
//! [`Discipline::update`] takes the combined offset from the selection
//! ([`crate::select::Combined::offset`]) and the time of the update, runs the
//! NSET/FSET/SPIK/FREQ/SYNC state machine of Fig. 28 and the hybrid PLL/FLL,
//! adapts the poll exponent, and returns an [`Action`]. It touches no clock:
//! the caller applies the action through an [`NtpClock`] (see
//! [`Action::apply`]) and, after a [`Action::Step`], resets every source.
//!
//! # Phase slewing without a 1 Hz tick
//!
//! In the RFC the clock-adjust process runs every second and removes
//! `offset / (TC · min(2^poll, ALLAN))` of the residual phase each time: an
//! exponential decay. Here the slew is handed to the clock as
//! [`NtpClock::adjust_phase`] with that time constant, and the discipline
//! computes the residual that must remain at the next update in closed form
//! (`θ · e^(−μ/τ)`, [`Discipline::residual_offset`]). The FLL and the FREQ-state
//! frequency measurement use that residual exactly as the skeleton uses its
//! decayed `c.offset`, so a clock implementing the documented slew gives the
//! same loop as the RFC's, with no timer in the core.
//!
//! # Choices where RFC 5905 is ambiguous or its skeleton is wrong
//!
//! - A.5.5.6 assigns the new state to a local variable in the SYNC→SPIK and
//!   NSET cases (`state = SPIK`, `if (state == NSET)`); the state machine of
//!   Fig. 28 is what is implemented.
//! - A.5.5.6's FREQ inlier case measures the frequency but never leaves FREQ;
//!   Fig. 28 says "→SYNC", and so does this code (as the reference
//!   implementation does).
//! - NSET inlier: the skeleton returns IGNORE but `rstclock()` hands the offset
//!   to the clock-adjust process anyway. Here that is an explicit
//!   [`Action::Slew`] (the reference implementation returns "slewed" too).
//! - The stepout is measured from the last accepted update (A.5.5.6's `mu`),
//!   see [`crate::constants::WATCH`].
//! - Wander is the exponential RMS average of frequency *changes* (the
//!   skeleton squares the whole frequency, contradicting its own comment).
//! - PANIC is returned, never a process exit (§11.2.3 says SHOULD exit; the
//!   caller decides). Optionally the first update may exceed it, like
//!   `ntpd -g`: [`DisciplineConfig::allow_initial_panic`].
//! - Poll hysteresis steps by +1/−2 (§11.3 text) unless
//!   [`HysteresisStep::PollExponent`] selects A.5.5.6's `+poll/−2·poll`.

use crate::clock::NtpClock;
use crate::constants::{
    log2_to_seconds, ALLAN, AVG, DEFAULT_MAXPOLL, DEFAULT_MINPOLL, FLL, LIMIT, MAXFREQ, PANICT, PGATE, STEPT,
    TC, WATCH,
};
use crate::time::{NtpDuration, NtpTime};

pub mod regression;

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

fn dur(s: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(s)
}

/// The discipline states of Fig. 28 (A.1.1 clock state definitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Clock never set, no frequency known (`NSET`).
    Nset,
    /// Frequency set from a saved value, clock not yet set (`FSET`).
    Fset,
    /// An offset above the step threshold was seen in SYNC (`SPIK`).
    Spik,
    /// Measuring the frequency directly over the stepout interval (`FREQ`).
    Freq,
    /// Normal operation (`SYNC`).
    Sync,
}

/// Why an update was not acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The offset is above the step threshold but the stepout interval has
    /// not passed since the last accepted update (SYNC→SPIK or in SPIK).
    Spike,
    /// In FREQ state, waiting for the stepout interval to measure frequency.
    FrequencyMeasurement,
    /// The round trip was far longer than the held samples' least, and the
    /// offset did not move with it (chrony's `maxdelaydevratio` test).
    Delay,
}

/// What the caller must do with the clock. `#[must_use]`.
///
/// Caller duties per variant are in the variant docs; [`Action::apply`] does
/// the clock part.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Do nothing to the clock (a phase slew already in progress continues).
    Ignore(IgnoreReason),
    /// The normal case (RFC "ADJ"/"SLEW"): the caller MUST set the frequency
    /// correction to `frequency` and start slewing `phase` with
    /// `time_constant` ([`NtpClock::set_frequency`],
    /// [`NtpClock::adjust_phase`]), and SHOULD update the system variables
    /// from the system peer (§11.2.3 Fig. 25).
    Slew {
        /// Offset to slew out (positive: move the clock forward).
        phase: NtpDuration,
        /// Frequency correction to set, in s/s (within ±MAXFREQ).
        frequency: f64,
        /// Exponential time constant of the slew, `TC · min(2^poll, ALLAN)`.
        time_constant: NtpDuration,
        /// `None`: the kernel PLL's slew ([`NtpClock::adjust_phase`], at most
        /// 500 ppm). `Some(R)`: a slew at up to `R` s/s through the tick
        /// ([`NtpClock::slew_phase`]; zero time constant: linear at `R`).
        max_rate: Option<f64>,
    },
    /// The caller MUST step the clock by `offset` and set the frequency
    /// correction to `frequency`, and then MUST reset all associations
    /// (filters, reach, system peer) and start as at initial start (§11.2.3).
    Step {
        /// The step (positive: move the clock forward).
        offset: NtpDuration,
        /// Frequency correction to set, in s/s (within ±MAXFREQ).
        frequency: f64,
    },
    /// The offset exceeds the panic threshold. Nothing was changed; the caller
    /// SHOULD stop disciplining and report it (§11.2.3: "exit with a diagnostic
    /// message to the system log").
    Panic {
        /// The offending offset.
        offset: NtpDuration,
    },
}

impl Action {
    /// Applies the clock part of the action. Returns the time at which the
    /// last adjustment took effect, or `None` when there was nothing to do.
    pub fn apply<C: NtpClock>(&self, clock: &mut C) -> Result<Option<NtpTime>, C::Error> {
        match *self {
            Action::Ignore(_) | Action::Panic { .. } => Ok(None),
            Action::Slew { phase, frequency, time_constant, max_rate } => {
                clock.set_frequency(frequency)?;
                match max_rate {
                    None => clock.adjust_phase(phase, time_constant).map(Some),
                    Some(rate) => clock.slew_phase(phase, time_constant, rate).map(Some),
                }
            }
            Action::Step { offset, frequency } => {
                clock.step(offset)?;
                clock.set_frequency(frequency).map(Some)
            }
        }
    }
}

/// The result of one [`Discipline::update`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineUpdate {
    /// What to do with the clock.
    pub action: Action,
    /// The state after this update.
    pub state: State,
    /// The system poll exponent after this update (the time constant `tau`);
    /// the poll process uses it as the host poll bound (§13.2).
    pub poll: i8,
}

/// How the poll-adjust hysteresis counter moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HysteresisStep {
    /// §11.3 text: +1 when the offset is within PGATE·jitter, −2 otherwise.
    Unit,
    /// A.5.5.6 (and the reference implementation): `+poll` and `−2·poll`.
    PollExponent,
}

/// Settings of a [`Discipline`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineConfig {
    /// Offsets above this are stepped (after the stepout); default STEPT.
    pub step_threshold: NtpDuration,
    /// Stepout interval WATCH; default 900 s.
    pub stepout: NtpDuration,
    /// Offsets above this give [`Action::Panic`]; `None` disables. Default PANICT.
    pub panic_threshold: Option<NtpDuration>,
    /// Allow the first update (in NSET or FSET) to exceed the panic threshold
    /// and step (like `ntpd -g`). Default: no.
    pub allow_initial_panic: bool,
    /// For the regression discipline: within this many first updates an
    /// offset beyond the step threshold is stepped at once (chrony's
    /// `makestep` limit; `u32::MAX`: at every update, chrony's `-1`).
    /// `None`: its default (3). RFC 5905's discipline steps by its own
    /// state machine and does not read it.
    pub step_updates: Option<u32>,
    /// The regression discipline's poll target: samples in the chosen span
    /// at which the poll settles (`None`: its default,
    /// [`regression::DEFAULT_POLL_TARGET`]). RFC 5905's discipline polls by
    /// its own hysteresis and does not read it.
    pub poll_target: Option<usize>,
    /// Lowest poll exponent (default 6); clamped to at least MINPOLL.
    pub min_poll: i8,
    /// Highest poll exponent (default 10); clamped to at most MAXPOLL.
    pub max_poll: i8,
    /// This host's precision in log2 seconds: the floor of the clock jitter.
    pub local_precision: i8,
    /// Poll hysteresis increments.
    pub hysteresis: HysteresisStep,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        DisciplineConfig {
            step_threshold: dur(STEPT),
            stepout: dur(WATCH),
            panic_threshold: Some(dur(PANICT)),
            allow_initial_panic: false,
            step_updates: None,
            poll_target: None,
            min_poll: DEFAULT_MINPOLL,
            max_poll: DEFAULT_MAXPOLL,
            local_precision: -20,
            hysteresis: HysteresisStep::Unit,
        }
    }
}

/// One input to a [`ClockDiscipline`]: the combined offset and what is known
/// about it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineSample {
    /// Combined offset THETA (positive: the clock is behind).
    pub offset: NtpDuration,
    /// The epoch of the offset: the local arrival time of the system peer's
    /// sample behind it (the clock filter may have kept it for a few polls).
    pub time: NtpTime,
    /// Local time now, when the returned action will be applied to the clock
    /// (not earlier than `time`).
    pub now: NtpTime,
    /// Round-trip delay of the system peer's sample; zero when unknown. An
    /// offset's error is bounded by half the delay above the path's minimum,
    /// so disciplines may weight samples by it.
    pub delay: NtpDuration,
}

impl DisciplineSample {
    /// A sample known only by its offset and epoch, applied at that epoch.
    pub fn new(offset: NtpDuration, time: NtpTime) -> Self {
        DisciplineSample { offset, time, now: time, delay: NtpDuration::ZERO }
    }
}

/// A clock discipline: turns combined offsets into clock [`Action`]s and a
/// system poll exponent. [`Discipline`] (RFC 5905) and
/// [`regression::RegressionDiscipline`] implement it; [`DisciplineKind`]
/// chooses one at run time ([`DisciplineKind::build`]).
///
/// Implementations are deterministic, read no clock, and keep bounded memory.
pub trait ClockDiscipline {
    /// A short name for reports (`"rfc5905"`, `"regression"`).
    fn name(&self) -> &'static str;

    /// Processes one offset measured at `time` and applied at `time`.
    fn update(&mut self, offset: NtpDuration, time: NtpTime) -> DisciplineUpdate {
        self.update_sample(&DisciplineSample::new(offset, time))
    }

    /// Processes one sample. The caller applies the returned action to the
    /// clock at `sample.now` and, after an [`Action::Step`], resets every
    /// source.
    fn update_sample(&mut self, sample: &DisciplineSample) -> DisciplineUpdate;

    /// Whether `sample` is an outlier by its delay alone (against the
    /// current source's samples), which [`Self::update_sample`] would ignore
    /// ([`IgnoreReason::Delay`]):
    /// callers that count updates (`max_change`) ask first, as chrony
    /// rejects such a sample before its reference update. Default: never.
    fn delay_outlier(&self, _sample: &DisciplineSample) -> bool {
        false
    }

    /// The system peer changed: the samples that follow come from another
    /// source (a per-source test, such as [`Self::delay_outlier`]'s, starts
    /// over), whose `max_delay_dev_ratio` (chrony's `maxdelaydevratio`)
    /// that test uses. Default: nothing.
    fn source_changed(&mut self, _max_delay_dev_ratio: f64) {}

    /// Whether the discipline wants every sample of the system peer, with its
    /// delay, rather than only the clock filter's choices combined by the
    /// selection (RFC 5905). Default: no.
    fn wants_every_sample(&self) -> bool {
        false
    }

    /// Earlier samples of a newly adopted system peer, oldest first, measured
    /// since the last step and before the discipline had any: a discipline
    /// that wants every sample keeps them (without acting on them) so that
    /// its next update fits them too, as chrony's per-source statistics hold
    /// a source's samples from before it was selected. An `iburst` of five
    /// servers selects a system peer only when a majority has answered, and
    /// the peer's burst was lost to the fit: a clock 100 ppm off drifted for
    /// three more polls before a line through the later samples was certain
    /// enough to give the frequency. Default: ignored.
    fn prime(&mut self, history: &[DisciplineSample]) {
        let _ = history;
    }

    /// The part of the phase corrections commanded before local time `t`
    /// that the clock has not made by `t`: an offset measured at `t` moves
    /// by minus this once the slew in progress completes (chrony's "cooked"
    /// time counts it as done). Zero by default, for disciplines whose
    /// slews have no schedule (the RFC 5905 PLL's exponential kernel slew).
    fn pending_phase(&self, t: NtpTime) -> NtpDuration {
        let _ = t;
        NtpDuration::ZERO
    }

    /// How fast, in s/s, the clock may still drift from true time at its
    /// current frequency correction: the bound on its residual frequency
    /// error. A stored sample's offset is uncertain by this times its age,
    /// so selection widens an old sample's interval by it. RFC 5905 assumes
    /// PHI (15 ppm), the default; a discipline that has not yet measured the
    /// frequency (a clock 100 ppm off drifts 6.5 ms between two 64 s polls)
    /// says more.
    fn frequency_uncertainty(&self) -> f64 {
        crate::constants::PHI
    }

    /// The local clock went back to `now` without this discipline asking
    /// (another program set it): what it holds stamped on the old
    /// timescale (samples, the time of the last update) lies in the future.
    /// An implementation drops or restarts it and keeps its frequency.
    fn clock_went_back(&mut self, now: NtpTime);

    /// The system poll exponent the discipline asks for.
    fn poll(&self) -> i8;

    /// The frequency correction in s/s currently asked of the clock (the
    /// oscillator's estimated error is its negation).
    fn frequency(&self) -> f64;

    /// The current state, in RFC 5905's terms (see each implementation).
    fn state(&self) -> State;

    /// The estimated noise of the offsets (RFC 5905 `c.jitter`, or the
    /// regression's residual standard deviation).
    fn jitter(&self) -> NtpDuration;

    /// The epoch of the last sample acted on.
    fn last_update(&self) -> Option<NtpTime>;
}

/// Which discipline algorithm a system runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DisciplineKind {
    /// RFC 5905 §11.3's hybrid PLL/FLL ([`Discipline`]).
    Rfc5905,
    /// Least-squares regression over recent samples in the clock's
    /// uncorrected frame, in the manner of chrony
    /// ([`regression::RegressionDiscipline`]). The default: in the simulator
    /// it reaches chrony-class accuracy (see that module).
    #[default]
    Regression,
}

impl DisciplineKind {
    /// The configuration name (`"rfc5905"`, `"regression"`).
    pub fn name(self) -> &'static str {
        match self {
            DisciplineKind::Rfc5905 => "rfc5905",
            DisciplineKind::Regression => "regression",
        }
    }

    /// Parses a configuration name (see [`DisciplineKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rfc5905" => Some(DisciplineKind::Rfc5905),
            "regression" => Some(DisciplineKind::Regression),
            _ => None,
        }
    }

    /// A discipline of this kind. `config` holds the settings both share
    /// (poll range, thresholds, precision); the regression takes the rest
    /// from [`regression::RegressionConfig::from_common`].
    pub fn build(self, config: DisciplineConfig, initial_frequency: Option<f64>) -> Box<dyn ClockDiscipline> {
        match self {
            DisciplineKind::Rfc5905 => Box::new(Discipline::new(config, initial_frequency)),
            DisciplineKind::Regression => Box::new(regression::RegressionDiscipline::new(
                regression::RegressionConfig::from_common(&config),
                initial_frequency,
            )),
        }
    }
}

/// The clock discipline (`struct c` of A.1.5 plus `s.poll` and `s.t`).
#[derive(Clone, Debug)]
pub struct Discipline {
    config: DisciplineConfig,
    state: State,
    /// `s.t`: time of the last accepted update (set by `rstclock`).
    last_update: Option<NtpTime>,
    /// `c.offset` at `last_update`: the phase handed to the clock then.
    offset: f64,
    /// `c.last`: the previous offset, for the jitter.
    last_offset: f64,
    /// Time constant (s) of the slew handed to the clock with `offset`.
    slew_tau: f64,
    /// `c.freq`, s/s.
    freq: f64,
    /// `c.jitter`, s.
    jitter: f64,
    /// `c.wander`, s/s.
    wander: f64,
    /// `s.poll`.
    poll: i8,
    /// `c.count`, the hysteresis counter.
    count: i32,
}

impl Discipline {
    /// A discipline in NSET (`initial_frequency: None`) or, with a saved
    /// frequency correction in s/s (clamped to ±MAXFREQ), in FSET.
    pub fn new(config: DisciplineConfig, initial_frequency: Option<f64>) -> Self {
        let mut config = config;
        config.min_poll = config.min_poll.clamp(crate::constants::MINPOLL, crate::constants::MAXPOLL);
        config.max_poll = config.max_poll.clamp(config.min_poll, crate::constants::MAXPOLL);
        let (state, freq) = match initial_frequency {
            Some(f) if f.is_finite() => (State::Fset, f.clamp(-MAXFREQ, MAXFREQ)),
            _ => (State::Nset, 0.0),
        };
        Discipline {
            config,
            state,
            last_update: None,
            offset: 0.0,
            last_offset: 0.0,
            slew_tau: 0.0,
            freq,
            jitter: log2_to_seconds(config.local_precision),
            wander: 0.0,
            poll: config.min_poll,
            count: 0,
        }
    }

    /// The settings (poll bounds after clamping).
    pub fn config(&self) -> &DisciplineConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The system poll exponent.
    pub fn poll(&self) -> i8 {
        self.poll
    }

    /// The frequency correction in s/s (`c.freq`). The estimated oscillator
    /// error is its negation: a clock 10 ppm fast converges to −10e-6.
    pub fn frequency(&self) -> f64 {
        self.freq
    }

    /// The clock jitter `c.jitter` (exponential RMS of offset differences).
    pub fn jitter(&self) -> NtpDuration {
        dur(self.jitter)
    }

    /// The frequency wander `c.wander` in s/s.
    pub fn wander(&self) -> f64 {
        self.wander
    }

    /// The hysteresis counter (`c.count`), in `-LIMIT..=LIMIT`.
    pub fn hysteresis_count(&self) -> i32 {
        self.count
    }

    /// Time of the last accepted update (`s.t`).
    pub fn last_update(&self) -> Option<NtpTime> {
        self.last_update
    }

    /// The phase the clock still has to slew at `now`, assuming it follows
    /// the last [`Action::Slew`] as [`NtpClock::adjust_phase`] documents.
    pub fn residual_offset(&self, now: NtpTime) -> NtpDuration {
        dur(self.residual_secs(now))
    }

    fn residual_secs(&self, now: NtpTime) -> f64 {
        match self.last_update {
            Some(t) if self.slew_tau > 0.0 => self.offset * (-secs(now - t).max(0.0) / self.slew_tau).exp(),
            _ => self.offset,
        }
    }

    fn phase_time_constant(&self) -> f64 {
        TC * log2_to_seconds(self.poll).min(ALLAN)
    }

    /// `rstclock()`: enter `state`, remember the update time and the offset
    /// handed to the clock.
    fn reset_clock(&mut self, state: State, time: NtpTime, offset: f64) {
        self.state = state;
        self.last_update = Some(time);
        self.offset = offset;
        self.last_offset = offset;
    }

    fn outcome(&self, action: Action) -> DisciplineUpdate {
        DisciplineUpdate { action, state: self.state, poll: self.poll }
    }

    /// Processes one combined offset (`local_clock()`).
    ///
    /// `offset` is THETA from the combine algorithm (positive: the clock is
    /// behind); `time` is the update time, the arrival time of the system
    /// peer's sample (`p.t`), which must be later than the previous update's
    /// (the caller enforces §11.2.3's "strictly later" rule).
    pub fn update(&mut self, offset: NtpDuration, time: NtpTime) -> DisciplineUpdate {
        let theta = secs(offset);
        if let Some(panic) = self.config.panic_threshold {
            let initial = matches!(self.state, State::Nset | State::Fset);
            if theta.abs() > secs(panic) && !(initial && self.config.allow_initial_panic) {
                return self.outcome(Action::Panic { offset });
            }
        }
        let mu = self.last_update.map_or(0.0, |t| secs(time - t).max(0.0));
        let watch = secs(self.config.stepout);
        let precision = log2_to_seconds(self.config.local_precision);
        let mut freq_adj = 0.0;
        let stepped;
        if theta.abs() > secs(self.config.step_threshold) {
            match self.state {
                State::Sync => {
                    self.state = State::Spik;
                    return self.outcome(Action::Ignore(IgnoreReason::Spike));
                }
                State::Freq => {
                    if mu < watch {
                        return self.outcome(Action::Ignore(IgnoreReason::FrequencyMeasurement));
                    }
                    freq_adj = (theta - self.residual_secs(time)) / mu;
                }
                State::Spik => {
                    if mu < watch {
                        return self.outcome(Action::Ignore(IgnoreReason::Spike));
                    }
                }
                State::Nset | State::Fset => {}
            }
            self.count = 0;
            self.poll = self.config.min_poll;
            self.jitter = precision;
            stepped = true;
            if self.state == State::Nset {
                // The frequency is measured after the stepout (Fig. 28: →FREQ).
                self.reset_clock(State::Freq, time, 0.0);
                self.slew_tau = self.phase_time_constant();
                return self.outcome(Action::Step { offset, frequency: self.freq });
            }
            self.reset_clock(State::Sync, time, 0.0);
        } else {
            let diff = (theta - self.last_offset).abs().max(precision);
            self.jitter = (self.jitter.powi(2) + (diff.powi(2) - self.jitter.powi(2)) / AVG).sqrt();
            stepped = false;
            match self.state {
                State::Nset => self.reset_clock(State::Freq, time, theta),
                State::Fset => self.reset_clock(State::Sync, time, theta),
                State::Freq => {
                    if mu < watch {
                        return self.outcome(Action::Ignore(IgnoreReason::FrequencyMeasurement));
                    }
                    freq_adj = (theta - self.residual_secs(time)) / mu;
                    self.reset_clock(State::Sync, time, theta);
                }
                State::Sync | State::Spik => {
                    let poll_s = log2_to_seconds(self.poll);
                    // FLL, only above half the Allan intercept.
                    if poll_s > ALLAN / 2.0 {
                        let weight = (FLL - f64::from(self.poll)).max(AVG);
                        freq_adj += (theta - self.residual_secs(time)) / (mu.max(ALLAN) * weight);
                    }
                    // PLL: integrate over min(mu, poll) (oversampling allowed).
                    let gain = 4.0 * TC * poll_s;
                    freq_adj += theta * mu.min(poll_s) / (gain * gain);
                    self.reset_clock(State::Sync, time, theta);
                }
            }
        }

        // New frequency, clamped; wander from the frequency change.
        self.freq = (self.freq + freq_adj).clamp(-MAXFREQ, MAXFREQ);
        self.wander = (self.wander.powi(2) + (freq_adj.powi(2) - self.wander.powi(2)) / AVG).sqrt();

        // Poll adjust: compare the offset with PGATE times the jitter.
        let (up, down) = match self.config.hysteresis {
            HysteresisStep::Unit => (1, 2),
            HysteresisStep::PollExponent => (i32::from(self.poll), 2 * i32::from(self.poll)),
        };
        if self.offset.abs() < PGATE * self.jitter {
            self.count += up;
            if self.count > LIMIT {
                self.count = LIMIT;
                if self.poll < self.config.max_poll {
                    self.count = 0;
                    self.poll += 1;
                }
            }
        } else {
            self.count -= down;
            if self.count < -LIMIT {
                self.count = -LIMIT;
                if self.poll > self.config.min_poll {
                    self.count = 0;
                    self.poll -= 1;
                }
            }
        }
        self.slew_tau = self.phase_time_constant();
        debug_assert!(self.freq.abs() <= MAXFREQ);
        debug_assert!((self.config.min_poll..=self.config.max_poll).contains(&self.poll));
        let action = if stepped {
            Action::Step { offset, frequency: self.freq }
        } else {
            Action::Slew { phase: offset, frequency: self.freq, time_constant: dur(self.slew_tau), max_rate: None }
        };
        self.outcome(action)
    }
}

impl ClockDiscipline for Discipline {
    fn name(&self) -> &'static str {
        "rfc5905"
    }

    fn update(&mut self, offset: NtpDuration, time: NtpTime) -> DisciplineUpdate {
        Discipline::update(self, offset, time)
    }

    /// RFC 5905 sees only the offset and its epoch (A.5.5.6).
    fn update_sample(&mut self, sample: &DisciplineSample) -> DisciplineUpdate {
        Discipline::update(self, sample.offset, sample.time)
    }

    /// The stepout and the frequency interval count from `now`: the last
    /// update's time lies in the future on the new timescale, and measured
    /// from it every interval would be 0 (a spike never stepped out).
    fn clock_went_back(&mut self, now: NtpTime) {
        if self.last_update.is_some_and(|t| t > now) {
            self.last_update = Some(now);
        }
    }

    fn poll(&self) -> i8 {
        Discipline::poll(self)
    }

    fn frequency(&self) -> f64 {
        Discipline::frequency(self)
    }

    fn state(&self) -> State {
        Discipline::state(self)
    }

    fn jitter(&self) -> NtpDuration {
        Discipline::jitter(self)
    }

    fn last_update(&self) -> Option<NtpTime> {
        Discipline::last_update(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::v4::LeapIndicator;
    use proptest::prelude::*;

    fn t0() -> NtpTime {
        NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn at(s: f64) -> NtpTime {
        t0() + dur(s)
    }

    /// A discipline already in SYNC at poll 6 with zero offset, last update at t = 0.
    fn synced() -> Discipline {
        let mut d = Discipline::new(DisciplineConfig::default(), Some(0.0));
        let u = d.update(NtpDuration::ZERO, at(0.0));
        assert_eq!(u.state, State::Sync);
        d
    }

    #[test]
    fn the_kinds_round_trip_their_names_and_rfc5905_keeps_the_rfc_defaults() {
        assert_eq!(DisciplineKind::Rfc5905.name(), "rfc5905");
        assert_eq!(DisciplineKind::Regression.name(), "regression");
        for kind in [DisciplineKind::Rfc5905, DisciplineKind::Regression] {
            assert_eq!(DisciplineKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DisciplineKind::from_name("chrony"), None);
        // RFC 5905's PLL/FLL keeps its configuration, and selection ages its
        // samples at PHI (the trait's default).
        let d = Discipline::new(DisciplineConfig { max_poll: 8, ..DisciplineConfig::default() }, None);
        assert_eq!(d.config().max_poll, 8);
        assert_eq!(d.frequency_uncertainty(), crate::constants::PHI);
    }

    #[test]
    fn the_state_accessors_report_the_last_updates() {
        // RFC 5905 A.5.5.6: after a 10 ms and a 2 ms update, c.jitter is the
        // exponential RMS of the offset differences (above the precision
        // floor), c.wander follows the frequency change, s.t is the last
        // update, and the residual offset decays from the last phase with the
        // PLL time constant.
        let mut d = synced();
        let _ = d.update(dur(0.010), at(64.0));
        let a1 = d.frequency();
        let _ = d.update(dur(0.002), at(128.0));
        let a2 = d.frequency() - a1;
        assert_eq!(d.last_update(), Some(at(128.0)));
        // c.wander² likewise averages the squared frequency adjustments.
        let w1 = a1 * a1 / AVG;
        let w2 = (w1 + (a2 * a2 - w1) / AVG).sqrt();
        assert!(a2 != 0.0 && (d.wander() - w2).abs() < 1e-6 * w2, "{} vs {w2}", d.wander());
        // c.jitter² moves a quarter (1/AVG) of the way to each new squared
        // offset difference: 10 ms, then 8 ms (from a precision-sized start).
        let p2 = 2f64.powi(-20).powi(2);
        let j1 = p2 + (0.010f64.powi(2) - p2) / AVG;
        let j2 = (j1 + (0.008f64.powi(2) - j1) / AVG).sqrt();
        assert!((secs(d.jitter()) - j2).abs() < 1e-9, "{:?} vs {j2}", d.jitter());
        assert!(d.wander() > 0.0 && d.wander() < 1e-6, "{}", d.wander());
        let now = secs(d.residual_offset(at(128.0)));
        assert!((now - 0.002).abs() < 1e-9, "{now}");
        let later = secs(d.residual_offset(at(1128.0)));
        assert!(later > 0.0 && later < now, "{later}");
    }

    #[test]
    fn in_freq_the_frequency_is_the_offset_left_over_the_interval() {
        // A.5.5.6, FREQ state: after the stepout, the frequency is the offset
        // still there minus what is left of the phase handed to the clock,
        // divided by the time since: (θ − residual) / μ. Once with a
        // slewable offset (→ SYNC), once with one above STEPT (→ step).
        for theta in [0.05, 0.2] {
            let mut d = Discipline::new(DisciplineConfig::default(), None);
            let _ = d.update(dur(0.010), at(0.0));
            let residual = secs(d.residual_offset(at(1000.0)));
            assert!(residual > 1e-4, "{residual}: the residual term must show");
            let u = d.update(dur(theta), at(1000.0));
            assert_eq!(matches!(u.action, Action::Step { .. }), theta > 0.125, "{:?}", u.action);
            let want = (theta - residual) / 1000.0;
            assert!((d.frequency() - want).abs() < 1e-12, "{theta}: {} vs {want}", d.frequency());
        }
    }

    #[test]
    fn the_fll_joins_above_half_the_allan_intercept() {
        // A.5.5.6: in SYNC the FLL adds (θ − residual) / (max(μ, ALLAN) ·
        // max(FLL − poll, AVG)) only when 2^poll > ALLAN / 2 (750 s): at poll
        // 10 an update changes the frequency by more than the PLL's share.
        let mut d = Discipline::new(DisciplineConfig { min_poll: 10, ..DisciplineConfig::default() }, Some(0.0));
        let _ = d.update(dur(0.002), at(0.0));
        assert_eq!(d.poll(), 10);
        let residual = secs(d.residual_offset(at(1024.0)));
        assert!(residual > 1e-3, "{residual}: the residual term must show");
        let _ = d.update(dur(0.001), at(1024.0));
        let gain = 4.0 * TC * 1024.0;
        let pll = 0.001 * 1024.0 / (gain * gain);
        let fll = (0.001 - residual) / (1500.0 * (FLL - 10.0).max(AVG));
        assert!((d.frequency() - (pll + fll)).abs() < 1e-6 * (pll + fll).abs(), "{} vs PLL {pll:e} + FLL {fll:e}", d.frequency());
    }

    #[test]
    fn the_thresholds_are_strict_and_the_stepout_ends_at_exactly_watch() {
        // A.5.5.6: an offset steps only *above* STEPT (0.125 s, exact in
        // binary), and a FREQ-state offset counts once the stepout (WATCH,
        // 900 s) has passed, at exactly 900 s too.
        let mut d = synced();
        let u = d.update(dur(0.125), at(64.0));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        // Panic only above PANICT (1000 s): at exactly 1000 s it is a spike.
        assert!(matches!(synced().update(dur(1000.0), at(64.0)).action, Action::Ignore(IgnoreReason::Spike)));
        assert!(matches!(synced().update(dur(1000.5), at(64.0)).action, Action::Panic { .. }));
        for (theta, after) in [(0.05, 899.0), (0.05, 900.0), (0.2, 899.0), (0.2, 900.0)] {
            let mut d = Discipline::new(DisciplineConfig::default(), None);
            let _ = d.update(dur(0.010), at(0.0));
            let u = d.update(dur(theta), at(after));
            let waiting = matches!(u.action, Action::Ignore(IgnoreReason::FrequencyMeasurement));
            assert_eq!(waiting, after < 900.0, "{theta} s after {after} s: {:?}", u.action);
        }
        // A spike held in SPIK steps once the stepout has passed since the
        // last update, at exactly 900 s.
        let mut d = synced();
        assert!(matches!(d.update(dur(0.5), at(64.0)).action, Action::Ignore(IgnoreReason::Spike)));
        assert!(matches!(d.update(dur(0.5), at(899.0)).action, Action::Ignore(IgnoreReason::Spike)));
        assert!(matches!(d.update(dur(0.5), at(900.0)).action, Action::Step { .. }));
    }

    #[test]
    fn as_a_clock_discipline_rfc5905_reports_what_it_holds() {
        // Through the trait object the system holds, the same figures as the
        // concrete type's.
        let mut boxed = DisciplineKind::Rfc5905.build(DisciplineConfig::default(), Some(0.0));
        let mut plain = Discipline::new(DisciplineConfig::default(), Some(0.0));
        for (i, theta) in [0.0, 0.010, 0.002].into_iter().enumerate() {
            let t = at(64.0 * i as f64);
            let _ = ClockDiscipline::update(boxed.as_mut(), dur(theta), t);
            let _ = plain.update(dur(theta), t);
        }
        assert_eq!(boxed.name(), "rfc5905");
        assert_eq!(boxed.poll(), plain.poll());
        assert_eq!(boxed.poll(), 6);
        assert!(plain.frequency() != 0.0);
        assert_eq!(boxed.frequency(), plain.frequency());
        assert!(plain.jitter() > NtpDuration::ZERO);
        assert_eq!(boxed.jitter(), plain.jitter());
        assert_eq!(boxed.last_update(), Some(at(128.0)));
    }

    #[test]
    fn a_small_offset_slews() {
        let mut d = synced();
        let u = d.update(dur(0.010), at(64.0));
        match u.action {
            Action::Slew { phase, frequency, time_constant, max_rate } => {
                assert_eq!(max_rate, None, "the PLL slews through the kernel");
                assert_eq!(phase, dur(0.010));
                // PLL: 0.01 * 64 / (4 * 16 * 64)^2.
                let expect = 0.010 * 64.0 / (4.0 * 16.0 * 64.0f64).powi(2);
                assert!((frequency - expect).abs() < 1e-15, "{frequency}");
                assert!((secs(time_constant) - 16.0 * 64.0).abs() < 1e-6);
            }
            other => panic!("expected a slew, got {other:?}"),
        }
        assert_eq!(u.state, State::Sync);
        assert!(!matches!(u.action, Action::Step { .. }), "below STEPT must never step");
    }

    #[test]
    fn an_offset_above_stept_steps_only_after_the_stepout() {
        let mut d = synced();
        let big = dur(0.5);
        // First outlier: SYNC -> SPIK, ignored.
        let u = d.update(big, at(64.0));
        assert_eq!((u.action, u.state), (Action::Ignore(IgnoreReason::Spike), State::Spik));
        // Outliers keep being ignored until 900 s after the last good update (t = 0).
        let mut t = 128.0;
        while t < 900.0 {
            let u = d.update(big, at(t));
            assert_eq!(u.action, Action::Ignore(IgnoreReason::Spike), "no step at t = {t}");
            t += 64.0;
        }
        // t = 960: stepout passed, step.
        let u = d.update(big, at(t));
        assert_eq!(u.action, Action::Step { offset: big, frequency: d.frequency() });
        assert_eq!((u.state, u.poll), (State::Sync, 6));
        assert!(t >= WATCH);
    }

    #[test]
    fn after_the_clock_went_back_the_stepout_counts_from_then() {
        let mut d = synced();
        let last = d.last_update().unwrap();
        // Set back 1000 s: measured from the last update (now in the
        // future) the stepout would never end.
        let back = last + NtpDuration::from_seconds_f64(-1000.0);
        d.clock_went_back(back);
        assert_eq!(d.last_update(), Some(back));
        let spike = d.update(NtpDuration::from_seconds_f64(100.5), back + NtpDuration::from_seconds_f64(64.0));
        assert_eq!(spike.action, Action::Ignore(IgnoreReason::Spike));
        let after = back + NtpDuration::from_seconds_f64(64.0 + WATCH + 1.0);
        assert!(matches!(d.update(NtpDuration::from_seconds_f64(100.5), after).action, Action::Step { .. }));
        // A later time is left alone.
        let mut d = synced();
        let last = d.last_update();
        d.clock_went_back(last.unwrap() + NtpDuration::from_seconds_f64(5.0));
        assert_eq!(d.last_update(), last);
    }

    #[test]
    fn a_short_excursion_is_never_stepped() {
        // Catalog R5905-11.3-stepout: 0.5 s lasting 5 min -> no step.
        let mut d = synced();
        for k in 1..=5 {
            let u = d.update(dur(0.5), at(k as f64 * 64.0));
            assert!(matches!(u.action, Action::Ignore(IgnoreReason::Spike)));
        }
        let u = d.update(dur(0.001), at(384.0));
        assert!(matches!(u.action, Action::Slew { .. }));
        assert_eq!(u.state, State::Sync, "an inlier ends the spike");
        // The stepout restarts from the good update: 0.5 s at t = 384 + 800 is still ignored.
        let _ = d.update(dur(0.5), at(448.0));
        let u = d.update(dur(0.5), at(1184.0));
        assert_eq!(u.action, Action::Ignore(IgnoreReason::Spike));
    }

    #[test]
    fn first_large_offset_steps_at_once() {
        // NSET: step immediately, then measure frequency (FREQ).
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let u = d.update(dur(3.0), at(0.0));
        assert_eq!(u.action, Action::Step { offset: dur(3.0), frequency: 0.0 });
        assert_eq!(u.state, State::Freq);
        // FSET: step immediately, then SYNC.
        let mut d = Discipline::new(DisciplineConfig::default(), Some(12e-6));
        let u = d.update(dur(-0.2), at(0.0));
        assert_eq!(u.action, Action::Step { offset: dur(-0.2), frequency: 12e-6 });
        assert_eq!(u.state, State::Sync);
    }

    #[test]
    fn above_panict_is_panic_and_changes_nothing() {
        let mut d = synced();
        let before = (d.state(), d.frequency(), d.poll(), d.last_update());
        let u = d.update(dur(2000.0), at(64.0));
        assert_eq!(u.action, Action::Panic { offset: dur(2000.0) });
        assert_eq!((d.state(), d.frequency(), d.poll(), d.last_update()), before);
        // Negative too.
        assert!(matches!(d.update(dur(-1000.5), at(128.0)).action, Action::Panic { .. }));
        // Just under is not a panic (it is a spike).
        assert!(matches!(d.update(dur(999.0), at(192.0)).action, Action::Ignore(_)));
        // Initial panic allowed: step on the first update only.
        let cfg = DisciplineConfig { allow_initial_panic: true, ..Default::default() };
        let mut d = Discipline::new(cfg, None);
        assert!(matches!(d.update(dur(5000.0), at(0.0)).action, Action::Step { .. }));
        let _ = d.update(NtpDuration::ZERO, at(1000.0));
        assert!(matches!(d.update(dur(5000.0), at(1064.0)).action, Action::Panic { .. }));
        // Disabled threshold: never a panic.
        let cfg = DisciplineConfig { panic_threshold: None, ..Default::default() };
        let mut d = Discipline::new(cfg, Some(0.0));
        assert!(matches!(d.update(dur(5000.0), at(0.0)).action, Action::Step { .. }));
    }

    #[test]
    fn freq_state_measures_then_syncs() {
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let u = d.update(NtpDuration::ZERO, at(0.0));
        assert!(matches!(u.action, Action::Slew { .. }));
        assert_eq!(u.state, State::Freq);
        // Offsets drifting at -20 ppm; ignored until 900 s.
        for k in 1..15 {
            let t = k as f64 * 64.0;
            let u = d.update(dur(-20e-6 * t), at(t));
            assert_eq!(u.action, Action::Ignore(IgnoreReason::FrequencyMeasurement));
            assert_eq!(d.frequency(), 0.0);
        }
        let u = d.update(dur(-20e-6 * 960.0), at(960.0));
        assert_eq!(u.state, State::Sync);
        assert!((d.frequency() + 20e-6).abs() < 1e-9, "{}", d.frequency());
    }

    #[test]
    fn frequency_is_clamped_at_maxfreq() {
        // Catalog R5905-11.3-freq: +700 ppm saturates at 500 ppm.
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let _ = d.update(NtpDuration::ZERO, at(0.0));
        let u = d.update(dur(700e-6 * 960.0 * 0.1), at(960.0)); // 67 ms, an inlier
        let _ = u;
        assert!((d.frequency() - 70e-6).abs() < 1e-9);
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let _ = d.update(NtpDuration::ZERO, at(0.0));
        let _ = d.update(dur(0.120), at(200.0)); // ignored, FREQ
        let u = d.update(dur(0.700), at(1000.0)); // outlier after the stepout: measure and step
        assert!(matches!(u.action, Action::Step { frequency, .. } if frequency == MAXFREQ));
        assert_eq!(d.frequency(), MAXFREQ);
        assert!(d.frequency() <= MAXFREQ, "never beyond the clamp");
        // A saved frequency beyond the clamp is clamped too.
        assert_eq!(Discipline::new(DisciplineConfig::default(), Some(-1e-3)).frequency(), -MAXFREQ);
    }

    #[test]
    fn poll_increases_when_offsets_are_small_relative_to_jitter() {
        let mut d = synced();
        let start = d.poll();
        let mut t = 0.0;
        let mut raised_at = None;
        for k in 1..=40 {
            t += log2_to_seconds(d.poll());
            // Alternating ±10 µs: jitter ~20 µs, |offset| 10 µs < PGATE * jitter.
            let off = if k % 2 == 0 { 10e-6 } else { -10e-6 };
            let u = d.update(dur(off), at(t));
            if u.poll > start && raised_at.is_none() {
                raised_at = Some(k);
            }
        }
        // The update that brought `synced()` to SYNC already counted +1, so
        // the 30th update here takes the counter above LIMIT (30).
        assert_eq!(raised_at, Some(30), "+1 per update, above LIMIT raises the poll");
        assert_eq!(d.hysteresis_count(), 10, "counter restarts from 0 after a poll change");
        assert_eq!(d.poll(), start + 1);
        assert!(d.poll() <= d.config().max_poll);
    }

    #[test]
    fn poll_decreases_when_offsets_are_large_relative_to_jitter_but_not_below_min() {
        let cfg = DisciplineConfig { min_poll: 6, max_poll: 10, ..Default::default() };
        let mut d = Discipline::new(cfg, Some(0.0));
        let _ = d.update(NtpDuration::ZERO, at(0.0));
        d.poll = 8;
        let mut t = 0.0;
        let mut polls = Vec::new();
        for _ in 0..80 {
            t += log2_to_seconds(d.poll());
            // A steady 50 ms offset: jitter decays towards the precision, |offset| >> 4 jitter.
            let u = d.update(dur(0.050), at(t));
            polls.push(u.poll);
        }
        assert!(polls.windows(2).all(|w| w[1] <= w[0]), "never increases: {polls:?}");
        assert_eq!(*polls.last().unwrap(), 6, "down to min_poll and no lower");
        assert!(polls.iter().all(|p| *p >= 6));
        // After a change the counter restarts at 0 and falls by 2 per update:
        // the next step down comes 16 updates later (-32 < -LIMIT).
        let p7 = polls.iter().position(|p| *p == 7).unwrap();
        let p6 = polls.iter().position(|p| *p == 6).unwrap();
        assert_eq!(p6 - p7, 16);
    }

    #[test]
    fn a_step_resets_the_poll_to_min() {
        let mut d = synced();
        d.poll = 9;
        let _ = d.update(dur(0.3), at(64.0));
        let u = d.update(dur(0.3), at(1000.0));
        assert!(matches!(u.action, Action::Step { .. }));
        assert_eq!(u.poll, d.config().min_poll);
    }

    /// Feeds `d` an offset one poll interval after `t` seconds (and moves `t`
    /// there); the update.
    fn update_after_a_poll(d: &mut Discipline, t: &mut f64, theta: f64) -> DisciplineUpdate {
        *t += log2_to_seconds(d.poll());
        d.update(dur(theta), at(*t))
    }

    #[test]
    fn an_offset_of_exactly_pgate_times_the_jitter_counts_as_large() {
        // §11.3: the counter goes up only while |offset| < PGATE x jitter.
        // Offsets one precision (2^-20 s, exact in the 32.32 format) apart
        // keep the jitter at exactly the precision (its floor), so the
        // fourth one, 4 x 2^-20 s, is exactly PGATE (4) x jitter.
        let mut d = synced();
        let p = log2_to_seconds(d.config().local_precision);
        let mut t = 0.0;
        for k in 1..=3 {
            let _ = update_after_a_poll(&mut d, &mut t, f64::from(k) * p);
            assert_eq!(d.jitter(), dur(p));
            assert_eq!(d.hysteresis_count(), 1 + k, "{k} x precision is below PGATE x jitter: +1");
        }
        let _ = update_after_a_poll(&mut d, &mut t, 4.0 * p);
        assert_eq!(d.jitter(), dur(p));
        assert_eq!(d.hysteresis_count(), 4 - 2, "at exactly PGATE x jitter: -2");
    }

    #[test]
    fn the_poll_exponent_hysteresis_counts_up_by_the_poll_and_down_by_twice_the_poll() {
        // A.5.5.6: +poll within PGATE x jitter, -2 x poll outside. A steady
        // 50 ms offset first counts up (its jump from zero raised the jitter
        // to 25 ms) and raises the poll to 7, then counts down as the jitter
        // decays below 12.5 ms.
        let cfg = DisciplineConfig { hysteresis: HysteresisStep::PollExponent, ..Default::default() };
        let mut d = Discipline::new(cfg, Some(0.0));
        let _ = d.update(NtpDuration::ZERO, at(0.0));
        assert_eq!((d.poll(), d.hysteresis_count()), (6, 6));
        let mut t = 0.0;
        let (mut ups, mut downs) = (0, 0);
        for _ in 0..12 {
            let (poll, count) = (d.poll(), d.hysteresis_count());
            let _ = update_after_a_poll(&mut d, &mut t, 0.050);
            if d.poll() != poll || d.hysteresis_count().abs() == 30 {
                continue; // past LIMIT: restarted at 0 or held at the limit
            }
            let step = d.hysteresis_count() - count;
            if d.offset.abs() < PGATE * d.jitter {
                assert_eq!(step, i32::from(poll));
                ups += 1;
            } else {
                assert_eq!(step, -2 * i32::from(poll));
                downs += 1;
            }
        }
        assert!(ups > 0 && downs > 0, "{ups} up, {downs} down");
    }

    #[test]
    fn at_the_poll_limits_the_counter_is_held_at_plus_or_minus_limit() {
        // Past LIMIT (30) the poll changes only within [min_poll, max_poll];
        // at a limit the counter stays at +30 or -30.
        let cfg = DisciplineConfig { min_poll: 6, max_poll: 6, ..Default::default() };
        let mut d = Discipline::new(cfg, Some(0.0));
        let _ = d.update(NtpDuration::ZERO, at(0.0));
        let mut t = 0.0;
        for k in 0..40 {
            // Alternating ±10 µs: always within PGATE x jitter.
            let u = update_after_a_poll(&mut d, &mut t, if k % 2 == 0 { 10e-6 } else { -10e-6 });
            assert_eq!(u.poll, 6, "never above max_poll");
        }
        assert_eq!(d.hysteresis_count(), 30);
        for _ in 0..40 {
            // A steady 50 ms: soon above PGATE x jitter.
            let u = update_after_a_poll(&mut d, &mut t, 0.050);
            assert_eq!(u.poll, 6, "never below min_poll");
        }
        assert_eq!(d.hysteresis_count(), -30);
    }

    // ---- Closed loop -------------------------------------------------------

    /// A host clock with a constant oscillator error and the documented
    /// exponential phase slew, advanced in closed form.
    struct SimClock {
        base: NtpTime,
        /// True seconds since `base`.
        true_s: f64,
        /// Clock minus true time, s.
        offset_s: f64,
        /// Uncorrected rate error, s/s (positive: the clock gains).
        oscillator_error: f64,
        correction: f64,
        slew_left_s: f64,
        slew_tau_s: f64,
        steps: usize,
    }

    impl SimClock {
        fn new(oscillator_error: f64, offset_s: f64) -> Self {
            SimClock {
                base: t0(),
                true_s: 0.0,
                offset_s,
                oscillator_error,
                correction: 0.0,
                slew_left_s: 0.0,
                slew_tau_s: 1.0,
                steps: 0,
            }
        }

        fn advance(&mut self, dt: f64) {
            let slewed = self.slew_left_s * (1.0 - (-dt / self.slew_tau_s).exp());
            self.slew_left_s -= slewed;
            self.offset_s += (self.oscillator_error + self.correction) * dt + slewed;
            self.true_s += dt;
        }

        /// What a perfect reference measures: θ = true − clock.
        fn measured_offset(&self) -> NtpDuration {
            dur(-self.offset_s)
        }
    }

    impl NtpClock for SimClock {
        type Error = core::convert::Infallible;
        fn now(&self) -> NtpTime {
            self.base + dur(self.true_s + self.offset_s)
        }
        fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, Self::Error> {
            self.correction = frequency;
            Ok(self.now())
        }
        fn adjust_phase(&mut self, offset: NtpDuration, tau: NtpDuration) -> Result<NtpTime, Self::Error> {
            self.slew_left_s = secs(offset);
            self.slew_tau_s = secs(tau);
            Ok(self.now())
        }
        fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, Self::Error> {
            self.offset_s += secs(offset);
            self.slew_left_s = 0.0;
            self.steps += 1;
            Ok(self.now())
        }
        fn set_leap(&mut self, _leap: LeapIndicator) -> Result<NtpTime, Self::Error> {
            Ok(self.now())
        }
    }

    struct Trace {
        /// (true time s, clock offset s, frequency correction, poll, state)
        points: Vec<(f64, f64, f64, i8, State)>,
        steps: usize,
        panics: usize,
    }

    /// Runs the loop for `duration_s`, one update per poll interval.
    fn closed_loop(d: &mut Discipline, clock: &mut SimClock, duration_s: f64) -> Trace {
        let mut trace = Trace { points: Vec::new(), steps: 0, panics: 0 };
        while clock.true_s < duration_s {
            let u = d.update(clock.measured_offset(), clock.now());
            if matches!(u.action, Action::Panic { .. }) {
                trace.panics += 1;
            }
            let _ = u.action.apply(clock).unwrap();
            trace.steps = clock.steps;
            clock.advance(log2_to_seconds(u.poll));
            trace.points.push((clock.true_s, clock.offset_s, d.frequency(), u.poll, u.state));
        }
        trace
    }

    fn summary(name: &str, trace: &Trace) {
        for h in [1.0, 6.0, 12.0, 24.0, 36.0, 48.0, 72.0] {
            let w: Vec<_> = trace.points.iter().filter(|p| p.0 >= h * 3600.0).collect();
            if let Some(p) = w.first() {
                println!("closed-loop {name} {h} h: max|off| after {:.3e} s, freq {:.5} ppm, poll {}", max_abs_offset_after(trace, h * 3600.0), p.2 * 1e6, p.3);
            }
        }
    }

    fn max_abs_offset_after(trace: &Trace, from_s: f64) -> f64 {
        trace.points.iter().filter(|p| p.0 >= from_s).map(|p| p.1.abs()).fold(0.0, f64::max)
    }

    #[test]
    fn closed_loop_from_nset_measures_10_ppm_and_converges() {
        // Oscillator 10 ppm fast, clock 50 ms ahead, no saved frequency.
        let mut clock = SimClock::new(10e-6, 0.050);
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let trace = closed_loop(&mut d, &mut clock, 2.0 * 86_400.0);
        summary("nset", &trace);
        assert_eq!(trace.steps, 0, "50 ms is below STEPT: never stepped");
        assert_eq!(trace.panics, 0);
        // FREQ state ends after the stepout with the frequency measured directly.
        let first_sync = trace.points.iter().find(|p| p.4 == State::Sync).unwrap();
        assert!(first_sync.0 <= 1100.0, "left FREQ at {} s", first_sync.0);
        assert!((first_sync.2 + 10e-6).abs() < 0.05e-6, "direct measurement {}", first_sync.2);
        // The estimate stays near -10 ppm and the offset converges. The slow
        // part is the RFC PLL working off the ~29 ms phase left at the end of
        // FREQ (time constant of hours at poll 6); these bounds are what this
        // loop achieves, with margin (measured: 143 µs after 12 h, 7.7 µs
        // after 24 h, 3.8 µs after 48 h, -10.0005 ppm at 48 h).
        let end = trace.points.last().unwrap();
        assert!((end.2 + 10e-6).abs() < 0.01e-6, "final frequency {}", end.2);
        assert!(max_abs_offset_after(&trace, 12.0 * 3600.0) < 200e-6);
        assert!(max_abs_offset_after(&trace, 24.0 * 3600.0) < 10e-6);
        assert!(max_abs_offset_after(&trace, 24.0 * 3600.0) > 0.0, "the harness really measures something");
        // The poll interval grew once the offset became small.
        assert!(end.3 > DEFAULT_MINPOLL, "poll {}", end.3);
    }

    #[test]
    fn closed_loop_pll_acquires_10_ppm_from_a_wrong_saved_frequency() {
        // Saved frequency 0 (wrong by 10 ppm): FSET -> SYNC, the PLL/FLL must pull in.
        let mut clock = SimClock::new(10e-6, 0.0);
        let mut d = Discipline::new(DisciplineConfig::default(), Some(0.0));
        let trace = closed_loop(&mut d, &mut clock, 3.0 * 86_400.0);
        summary("fset", &trace);
        assert_eq!(trace.steps, 0);
        let peak = max_abs_offset_after(&trace, 0.0);
        assert!(peak < STEPT, "the transient stays below the step threshold: {peak}");
        // Measured: peak 9.1 ms, 35 µs after 24 h, 5.9 µs after 36 h, 1.3 µs
        // after 72 h; frequency -9.4 ppm at 12 h, -9.99999 ppm at 72 h.
        assert!(peak < 0.020, "{peak}");
        let end = trace.points.last().unwrap();
        assert!((end.2 + 10e-6).abs() < 0.01e-6, "final frequency {}", end.2);
        assert!(max_abs_offset_after(&trace, 36.0 * 3600.0) < 10e-6);
    }

    #[test]
    fn closed_loop_large_initial_offset_steps_once() {
        let mut clock = SimClock::new(10e-6, -2.5);
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let trace = closed_loop(&mut d, &mut clock, 2.0 * 86_400.0);
        summary("step", &trace);
        assert_eq!(trace.steps, 1, "exactly one step");
        // Measured: 46 µs after 12 h, 5.9 µs after 24 h, -10.0004 ppm at 48 h.
        assert!(max_abs_offset_after(&trace, 24.0 * 3600.0) < 10e-6);
        assert!((trace.points.last().unwrap().2 + 10e-6).abs() < 0.01e-6);
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_offset_sequence(
            // Around the panic threshold, and around the step threshold.
            offsets in proptest::collection::vec(prop_oneof![-2000.0f64..2000.0, -0.3f64..0.3], 1..60),
            gaps in proptest::collection::vec(1.0f64..3000.0, 60),
            saved in proptest::option::of(-1e-3f64..1e-3),
        ) {
            // RFC 5905's values (Fig. 24, A.5.5.6), written here rather than
            // taken from the constants the code uses, so a wrong constant fails.
            const RFC_MAXFREQ: f64 = 500e-6;
            const RFC_STEPT: f64 = 0.125;
            const RFC_PANICT: f64 = 1000.0;
            const RFC_LIMIT: i32 = 30;
            let mut d = Discipline::new(DisciplineConfig::default(), saved);
            let mut t = 0.0;
            for (i, o) in offsets.iter().enumerate() {
                t += gaps[i];
                let before = d.state();
                let u = d.update(dur(*o), at(t));
                prop_assert!(d.frequency().abs() <= RFC_MAXFREQ);
                prop_assert!((6..=10).contains(&u.poll));
                prop_assert!(d.hysteresis_count().abs() <= RFC_LIMIT);
                match u.action {
                    Action::Panic { .. } => prop_assert!(o.abs() > RFC_PANICT),
                    Action::Step { offset, .. } => {
                        prop_assert!(o.abs() > RFC_STEPT);
                        prop_assert_eq!(offset, dur(*o));
                    }
                    Action::Slew { phase, .. } => {
                        prop_assert!(o.abs() <= RFC_STEPT + 1e-9);
                        prop_assert_eq!(phase, dur(*o));
                    }
                    Action::Ignore(_) => prop_assert!(matches!(before, State::Sync | State::Spik | State::Freq)),
                }
                // A step is only ever taken from NSET/FSET at once, or after the stepout.
                if let Action::Step { .. } = u.action {
                    prop_assert!(matches!(before, State::Nset | State::Fset | State::Spik | State::Freq));
                }
            }
        }
    }
}
