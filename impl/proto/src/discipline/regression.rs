//! A clock discipline by least-squares regression, in the manner of chrony.
//!
//! [`RegressionDiscipline`] is the alternative to RFC 5905's PLL/FLL
//! ([`super::Discipline`]) behind [`super::ClockDiscipline`]. It emits the same
//! [`Action`]s, so the daemon and the clocks need no change.
//!
//! # The idea: estimate open loop, in the clock's uncorrected frame
//!
//! The local clock is `L(t) = R(t) + C(t)`: the free-running oscillator `R`
//! plus the corrections `C` this discipline has asked for (frequency, phase
//! slews, steps). A measured offset θ = true − L therefore gives the offset of
//! the *uncorrected* oscillator as `θ + C(t)`. The discipline knows every
//! action it returned and the clock model [`NtpClock`](crate::clock::NtpClock)
//! documents (frequency replaced, exponential slew limited to
//! [`RegressionConfig::max_slew_rate`], the previous slew replaced), so it
//! rebuilds `C(t)` exactly from its own history (a bounded list of segments)
//! and keeps up to [`MAX_SAMPLES`] *raw* offsets. Those lie on a straight line
//! (oscillator phase and frequency error) plus noise and slow wander,
//! whatever the corrections did: the estimate never chases its own feedback.
//!
//! On every sample:
//!
//! 1. the raw offset is appended; each sample gets a weight from its round-trip
//!    delay (an offset's error is at most half the delay above the path's
//!    minimum): `σᵢ = σ₀ + (δᵢ − δ_min)/2`, `wᵢ = 1/σᵢ²`, where `σ₀` is a
//!    quarter of the mean half-excess delay (equal weights when delays are
//!    unknown);
//! 2. a weighted least-squares line is fitted ([`LinearFit`]) over the longest
//!    window of recent samples whose residuals pass a runs test
//!    ([`runs_test_passes`]): too few sign changes mean the line no longer
//!    describes the data (frequency wander, a changed path), and older samples
//!    are dropped until the test passes;
//! 3. the frequency correction is set to the fitted slope, and the fitted
//!    offset *now* minus the correction already in place is slewed out with a
//!    time constant of `poll interval × ratio × σ̂/|phase|` within
//!    `[0.5, 8]` intervals, where σ̂ is the fit's standard error now: a phase
//!    that is large against the fit's uncertainty is removed within a poll or
//!    so, one of the size of the noise over several (chrony's
//!    `corrtimeratio` rule);
//! 4. the poll exponent follows chrony's rule: it rises while the accepted
//!    window holds more than [`RegressionConfig::poll_target`] samples (the
//!    line predicts well over many polls) and falls when it holds fewer, or
//!    at once when a sample misses the prediction by more than its distance
//!    (half its delay), within `[min_poll, max_poll]`.
//!
//! # Steps and panics
//!
//! Within the first [`RegressionConfig::initial_step_updates`] updates an
//! offset above [`RegressionConfig::step_threshold`] (default 0.125 s, STEPT) is
//! stepped at once, like chrony's `makestep 0.125 3` (chrony's own default
//! configuration suggests `makestep 1 3`; the lower threshold keeps slews
//! short under the kernel's 500 ppm limit). Later, an offset above the
//! threshold is ignored as a spike until none below it has been seen for the
//! stepout ([`RegressionConfig::stepout`], 900 s), then stepped, as in RFC 5905.
//! After a step the samples are discarded (the reference may have jumped) but
//! the frequency is kept. Offsets above the panic threshold give
//! [`Action::Panic`] and change nothing.
//!
//! # States
//!
//! [`State::Nset`]/[`State::Fset`] before the first update (without/with a
//! saved frequency), [`State::Freq`] while fewer than
//! [`MIN_FIT_SAMPLES`] samples give no frequency, [`State::Spik`] while
//! ignoring spikes, [`State::Sync`] otherwise.

use super::{Action, ClockDiscipline, DisciplineConfig, DisciplineSample, DisciplineUpdate, IgnoreReason, State};
use crate::clock::steered::{slewed, KERNEL_MAXPHASE, KERNEL_MAX_SLEW_RATE};
use crate::constants::{log2_to_seconds, MAXFREQ, MAXPOLL, MINPOLL, PANICT, STEPT, WATCH};
use crate::time::{NtpDuration, NtpTime};
use std::collections::VecDeque;

/// Most samples a [`RegressionDiscipline`] keeps (fixed memory).
pub const MAX_SAMPLES: usize = 64;

/// Fewest samples from which a frequency is fitted; with fewer the line
/// keeps the current frequency as its slope.
pub const MIN_FIT_SAMPLES: usize = 3;

/// Most correction segments kept to rebuild past corrections.
const MAX_SEGMENTS: usize = 2 * MAX_SAMPLES;

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

fn dur(s: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(s)
}

/// Settings of a [`RegressionDiscipline`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionConfig {
    /// Lowest poll exponent (default 6), clamped to at least MINPOLL.
    pub min_poll: i8,
    /// Highest poll exponent (default 10), clamped to at most MAXPOLL.
    pub max_poll: i8,
    /// Offsets above this are stepped in the first updates, or after the
    /// stepout later (default STEPT, 0.125 s).
    pub step_threshold: NtpDuration,
    /// How many first updates may step at once (default 3).
    pub initial_step_updates: u32,
    /// After the first updates, how long offsets must stay above the step
    /// threshold before a step (default WATCH, 900 s).
    pub stepout: NtpDuration,
    /// Offsets above this give [`Action::Panic`]; `None` disables (default PANICT).
    pub panic_threshold: Option<NtpDuration>,
    /// Allow the first update to exceed the panic threshold and step (like
    /// `ntpd -g`). Default: no.
    pub allow_initial_panic: bool,
    /// Samples kept, `MIN_FIT_SAMPLES..=MAX_SAMPLES` (default 64).
    pub max_samples: usize,
    /// The poll rises while the accepted window holds more samples than
    /// this and falls while it holds fewer (chrony's `polltarget`, default 8).
    pub poll_target: usize,
    /// Phase time constant factor (chrony's `corrtimeratio`, default 1.5):
    /// the phase is slewed with `τ = interval · ratio · σ̂/|phase|`, bounded.
    pub correction_ratio: f64,
    /// The clock's slew rate limit, s/s (default the kernel's 500 ppm); the
    /// correction model must match the clock's.
    pub max_slew_rate: f64,
    /// This host's precision, log2 s: the floor of every noise estimate.
    pub local_precision: i8,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        RegressionConfig {
            min_poll: crate::constants::DEFAULT_MINPOLL,
            max_poll: crate::constants::DEFAULT_MAXPOLL,
            step_threshold: dur(STEPT),
            initial_step_updates: 3,
            stepout: dur(WATCH),
            panic_threshold: Some(dur(PANICT)),
            allow_initial_panic: false,
            max_samples: MAX_SAMPLES,
            poll_target: 8,
            correction_ratio: 1.5,
            max_slew_rate: KERNEL_MAX_SLEW_RATE,
            local_precision: -20,
        }
    }
}

impl RegressionConfig {
    /// The defaults with the settings a [`DisciplineConfig`] shares (poll
    /// range, step and panic thresholds, stepout, precision).
    pub fn from_common(c: &DisciplineConfig) -> Self {
        RegressionConfig {
            min_poll: c.min_poll,
            max_poll: c.max_poll,
            step_threshold: c.step_threshold,
            stepout: c.stepout,
            panic_threshold: c.panic_threshold,
            allow_initial_panic: c.allow_initial_panic,
            local_precision: c.local_precision,
            ..RegressionConfig::default()
        }
    }
}

/// A weighted least-squares line `y = y_mean + slope · (x − x_mean)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearFit {
    /// Weighted mean abscissa.
    pub x_mean: f64,
    /// Weighted mean ordinate (the line's value at `x_mean`).
    pub y_mean: f64,
    /// Slope.
    pub slope: f64,
    /// Residual variance of unit weight, `Σ wᵢ rᵢ² / (n − 2)` (0 with two points).
    pub variance: f64,
    /// Sum of the weights.
    pub weight_sum: f64,
    /// `Σ wᵢ (xᵢ − x_mean)²`.
    pub sxx: f64,
    /// Number of points.
    pub n: usize,
}

impl LinearFit {
    /// Fits `points` `(x, y, w)` (weights > 0). `None` with fewer than two
    /// points or no spread in `x`.
    pub fn new(points: &[(f64, f64, f64)]) -> Option<LinearFit> {
        let n = points.len();
        if n < 2 {
            return None;
        }
        let weight_sum: f64 = points.iter().map(|p| p.2).sum();
        if !(weight_sum > 0.0) {
            return None;
        }
        let x_mean = points.iter().map(|p| p.0 * p.2).sum::<f64>() / weight_sum;
        let y_mean = points.iter().map(|p| p.1 * p.2).sum::<f64>() / weight_sum;
        let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - x_mean).powi(2)).sum();
        if !(sxx > 0.0) {
            return None;
        }
        let sxy: f64 = points.iter().map(|p| p.2 * (p.0 - x_mean) * (p.1 - y_mean)).sum();
        let slope = sxy / sxx;
        let mut fit = LinearFit { x_mean, y_mean, slope, variance: 0.0, weight_sum, sxx, n };
        if n > 2 {
            fit.variance = points.iter().map(|p| p.2 * (p.1 - fit.at(p.0)).powi(2)).sum::<f64>() / (n - 2) as f64;
        }
        Some(fit)
    }

    /// The line's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.y_mean + self.slope * (x - self.x_mean)
    }

    /// Standard error of the line's value at `x`.
    pub fn value_sd(&self, x: f64) -> f64 {
        (self.variance * (1.0 / self.weight_sum + (x - self.x_mean).powi(2) / self.sxx)).sqrt()
    }

    /// Standard error of the slope.
    pub fn slope_sd(&self) -> f64 {
        (self.variance / self.sxx).sqrt()
    }
}

/// Number of runs (maximal blocks of equal sign; zero counts as positive).
pub fn runs(residuals: &[f64]) -> usize {
    if residuals.is_empty() {
        return 0;
    }
    1 + residuals.windows(2).filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0)).count()
}

/// Wald–Wolfowitz runs test against a trend, one-sided at about 2.3 %
/// (normal approximation, two standard deviations): `false` when the
/// residuals change sign too rarely to be noise around the right line.
pub fn runs_test_passes(residuals: &[f64]) -> bool {
    let n = residuals.len();
    if n < 3 {
        return true;
    }
    let plus = residuals.iter().filter(|r| **r >= 0.0).count() as f64;
    let minus = n as f64 - plus;
    if plus == 0.0 || minus == 0.0 {
        // One sign only: a trend, unless there are too few points to tell.
        return n < 6;
    }
    let n = n as f64;
    let mean = 1.0 + 2.0 * plus * minus / n;
    let variance = 2.0 * plus * minus * (2.0 * plus * minus - n) / (n * n * (n - 1.0));
    runs(residuals) as f64 >= mean - 2.0 * variance.max(0.0).sqrt()
}

#[derive(Clone, Copy, Debug)]
struct RawSample {
    time: NtpTime,
    /// Offset of the uncorrected oscillator, s.
    raw_offset: f64,
    /// Round-trip delay, s (0 if unknown).
    delay: f64,
}

/// One piece of `C(t)`: from `start` on, `base + freq·(t − start) + slew`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: NtpTime,
    base: f64,
    freq: f64,
    phase: f64,
    tau: f64,
}

/// The regression discipline (module documentation).
#[derive(Clone, Debug)]
pub struct RegressionDiscipline {
    config: RegressionConfig,
    state: State,
    samples: VecDeque<RawSample>,
    segments: VecDeque<Segment>,
    freq: f64,
    poll: i8,
    poll_score: f64,
    updates: u32,
    last_update: Option<NtpTime>,
    /// Epoch of the last sample within the step threshold.
    last_good: Option<NtpTime>,
    /// Weighted RMS residual of the last fit, s.
    jitter: f64,
    /// Standard error of the last fitted offset, s.
    offset_sd: f64,
    /// The last accepted fit, in seconds relative to `fit_origin`.
    fit: Option<(NtpTime, LinearFit)>,
    /// Samples in the window the last fit accepted.
    window: usize,
}

impl RegressionDiscipline {
    /// A discipline with no samples; with a saved frequency (s/s, clamped to
    /// ±MAXFREQ) it starts from it (FSET), otherwise from zero (NSET).
    pub fn new(config: RegressionConfig, initial_frequency: Option<f64>) -> Self {
        let mut config = config;
        config.min_poll = config.min_poll.clamp(MINPOLL, MAXPOLL);
        config.max_poll = config.max_poll.clamp(config.min_poll, MAXPOLL);
        config.max_samples = config.max_samples.clamp(MIN_FIT_SAMPLES, MAX_SAMPLES);
        config.poll_target = config.poll_target.max(MIN_FIT_SAMPLES);
        if !(config.correction_ratio > 0.0) {
            config.correction_ratio = RegressionConfig::default().correction_ratio;
        }
        if !(config.max_slew_rate > 0.0) {
            config.max_slew_rate = KERNEL_MAX_SLEW_RATE;
        }
        let (state, freq) = match initial_frequency {
            Some(f) if f.is_finite() => (State::Fset, f.clamp(-MAXFREQ, MAXFREQ)),
            _ => (State::Nset, 0.0),
        };
        RegressionDiscipline {
            config,
            state,
            samples: VecDeque::with_capacity(MAX_SAMPLES + 1),
            segments: VecDeque::with_capacity(MAX_SEGMENTS + 1),
            freq,
            poll: config.min_poll,
            poll_score: 0.0,
            updates: 0,
            last_update: None,
            last_good: None,
            jitter: log2_to_seconds(config.local_precision),
            offset_sd: 0.0,
            fit: None,
            window: 0,
        }
    }

    /// The settings (after bounding).
    pub fn config(&self) -> &RegressionConfig {
        &self.config
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Samples in the window the last fit accepted.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Standard error of the last fitted offset (at the time it was applied).
    pub fn offset_sd(&self) -> NtpDuration {
        dur(self.offset_sd)
    }

    /// The correction (s) this discipline has had the clock make by local
    /// time `t`, relative to the clock before its first action.
    pub fn correction_at(&self, t: NtpTime) -> f64 {
        let Some(i) = self.segments.iter().rposition(|s| s.start <= t) else {
            return self.segments.front().map_or(0.0, |s| s.base);
        };
        let s = &self.segments[i];
        let d = secs(t - s.start);
        s.base + s.freq * d + slewed(s.phase, s.tau, self.config.max_slew_rate, d)
    }

    fn push_segment(&mut self, segment: Segment) {
        // Keep the segment in force at the newest sample's epoch and later:
        // new samples are never older than that.
        if let Some(latest) = self.samples.back().map(|s| s.time) {
            while self.segments.len() >= 2 && self.segments[1].start <= latest {
                self.segments.pop_front();
            }
        }
        self.segments.push_back(segment);
        while self.segments.len() > MAX_SEGMENTS {
            self.segments.pop_front();
        }
    }

    fn outcome(&self, action: Action) -> DisciplineUpdate {
        DisciplineUpdate { action, state: self.state, poll: self.poll }
    }

    fn precision(&self) -> f64 {
        log2_to_seconds(self.config.local_precision)
    }

    /// Points `(x, y, w)` for the samples from `start` on, `x` in seconds
    /// relative to `origin`.
    fn points(&self, origin: NtpTime) -> Vec<(f64, f64, f64)> {
        let delays = self.samples.iter().map(|s| s.delay);
        let min_delay = delays.clone().fold(f64::INFINITY, f64::min);
        let n = self.samples.len() as f64;
        let mean_excess = delays.map(|d| d - min_delay).sum::<f64>() / n;
        let floor = (0.25 * mean_excess / 2.0).max(self.precision());
        self.samples
            .iter()
            .map(|s| {
                let sigma = floor + (s.delay - min_delay) / 2.0;
                (secs(s.time - origin), s.raw_offset, 1.0 / (sigma * sigma))
            })
            .collect()
    }

    /// Fits the longest window passing the runs test, drops older samples.
    fn regress(&mut self, origin: NtpTime) -> Option<LinearFit> {
        let points = self.points(origin);
        let n = points.len();
        if n < MIN_FIT_SAMPLES {
            return None;
        }
        let mut chosen = None;
        for start in 0..=n - MIN_FIT_SAMPLES {
            let window = &points[start..];
            let Some(fit) = LinearFit::new(window) else { continue };
            let residuals: Vec<f64> = window.iter().map(|p| p.1 - fit.at(p.0)).collect();
            if runs_test_passes(&residuals) {
                chosen = Some((start, fit));
                break;
            }
        }
        let (start, fit) = chosen?;
        self.samples.drain(..start);
        Some(fit)
    }

    fn step(&mut self, offset: NtpDuration, epoch: NtpTime, now: NtpTime) -> DisciplineUpdate {
        let base = self.correction_at(now) + secs(offset);
        self.samples.clear();
        self.segments.clear();
        self.segments.push_back(Segment { start: now, base, freq: self.freq, phase: 0.0, tau: 0.0 });
        self.fit = None;
        self.window = 0;
        self.poll = self.config.min_poll;
        self.poll_score = 0.0;
        self.last_update = Some(epoch);
        self.last_good = Some(epoch);
        self.state = if matches!(self.state, State::Nset | State::Freq) { State::Freq } else { State::Sync };
        self.outcome(Action::Step { offset, frequency: self.freq })
    }

    fn adjust_poll(&mut self, prediction_error: Option<f64>, delay: f64) {
        let distance = (delay / 2.0).max(3.0 * self.jitter).max(self.precision());
        let adjust = match prediction_error {
            Some(e) if e > distance => -(e / distance).log2(),
            _ => {
                let target = self.config.poll_target as f64;
                let a = (self.window as f64 / target - 1.0) / target;
                if a < 0.0 {
                    2.0 * a
                } else {
                    a
                }
            }
        };
        self.poll_score += adjust;
        if self.poll_score >= 1.0 {
            self.poll_score = 0.0;
            self.poll = (self.poll + 1).min(self.config.max_poll);
        } else if self.poll_score <= -1.0 {
            self.poll_score = 0.0;
            self.poll = (self.poll - 1).max(self.config.min_poll);
        }
    }
}

impl ClockDiscipline for RegressionDiscipline {
    fn name(&self) -> &'static str {
        "regression"
    }

    fn update_sample(&mut self, sample: &DisciplineSample) -> DisciplineUpdate {
        let theta = secs(sample.offset);
        let epoch = sample.time;
        let now = if sample.now > epoch { sample.now } else { epoch };
        let initial = self.updates == 0;
        if let Some(panic) = self.config.panic_threshold {
            if theta.abs() > secs(panic) && !(initial && self.config.allow_initial_panic) {
                return self.outcome(Action::Panic { offset: sample.offset });
            }
        }
        self.updates = self.updates.saturating_add(1);
        if theta.abs() > secs(self.config.step_threshold) {
            if self.updates <= self.config.initial_step_updates {
                return self.step(sample.offset, epoch, now);
            }
            let since_good = self.last_good.map_or(f64::INFINITY, |t| secs(epoch - t));
            if since_good < secs(self.config.stepout) {
                self.state = State::Spik;
                return self.outcome(Action::Ignore(IgnoreReason::Spike));
            }
            return self.step(sample.offset, epoch, now);
        }
        self.last_good = Some(epoch);
        self.last_update = Some(epoch);
        let delay = secs(sample.delay).max(0.0);
        let raw_offset = theta + self.correction_at(epoch);
        let prediction_error = self.fit.map(|(origin, fit)| (raw_offset - fit.at(secs(epoch - origin))).abs());
        self.samples.push_back(RawSample { time: epoch, raw_offset, delay });
        while self.samples.len() > self.config.max_samples {
            self.samples.pop_front();
        }

        // The line through the raw offsets, as of now.
        let fit = self.regress(now);
        let (estimate, estimate_sd, slope) = match fit {
            Some(f) => {
                self.jitter = (f.variance * f.n as f64 / f.weight_sum).sqrt().max(self.precision());
                (f.at(0.0), f.value_sd(0.0), f.slope)
            }
            None => {
                // Too few samples for a slope: the current frequency is the
                // slope, the level their weighted mean.
                let points = self.points(now);
                let w: f64 = points.iter().map(|p| p.2).sum();
                let level = points.iter().map(|p| (p.1 - self.freq * p.0) * p.2).sum::<f64>() / w;
                (level, f64::INFINITY, self.freq)
            }
        };
        self.window = fit.map_or(self.samples.len(), |f| f.n);
        self.fit = fit.map(|f| (now, f));
        self.offset_sd = if estimate_sd.is_finite() { estimate_sd } else { 0.0 };

        let frequency = slope.clamp(-MAXFREQ, MAXFREQ);
        self.freq = frequency;
        let max_phase = secs(KERNEL_MAXPHASE);
        let phase = (estimate - self.correction_at(now)).clamp(-max_phase, max_phase);
        let interval = log2_to_seconds(self.poll);
        let factor = if phase == 0.0 || !estimate_sd.is_finite() {
            0.5
        } else {
            (self.config.correction_ratio * estimate_sd / phase.abs()).clamp(0.5, 8.0)
        };
        let tau = interval * factor;
        let base = self.correction_at(now);
        self.push_segment(Segment { start: now, base, freq: frequency, phase, tau });

        self.state = if fit.is_some() { State::Sync } else { State::Freq };
        if fit.is_some() {
            self.adjust_poll(prediction_error, delay);
        }
        self.outcome(Action::Slew { phase: dur(phase), frequency, time_constant: dur(tau) })
    }

    /// Yes: the regression weighs samples by their delay itself, and the
    /// clock filter would hold back most of them at long polls.
    fn wants_every_sample(&self) -> bool {
        true
    }

    fn poll(&self) -> i8 {
        self.poll
    }

    fn frequency(&self) -> f64 {
        self.freq
    }

    fn state(&self) -> State {
        self.state
    }

    fn jitter(&self) -> NtpDuration {
        dur(self.jitter)
    }

    fn last_update(&self) -> Option<NtpTime> {
        self.last_update
    }
}
