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
//! 0. a sample whose round trip exceeds the least of the current source's
//!    held samples by far more than the jitter (chrony's delay test,
//!    `maxdelaydevratio` 10: [`ClockDiscipline::delay_outlier`]) is
//!    ignored, unless its offset moved by more than the delay explains;
//! 1. the raw offset is appended; each sample gets a weight from its round-trip
//!    delay (an offset's error is at most half the delay above the path's
//!    minimum): `σᵢ = σ₀ + (δᵢ − δ_min)/2`, `wᵢ = 1/σᵢ²`, where `σ₀` is a
//!    quarter of the mean half-excess delay (equal weights when delays are
//!    unknown);
//!    When the jitter sits mostly on one leg of the path, the offsets are
//!    first corrected by chrony's asymmetry estimate
//!    ([`RegressionDiscipline::asymmetry`]: a fit over time and excess delay
//!    gives the share of the excess delay in each offset; once ten fits in a
//!    row find it beyond ±0.45, `a · (δᵢ − δ_min)` is taken off);
//! 2. break tests find the longest valid window: a weighted least-squares
//!    line ([`LinearFit`]) over it must leave every residual within 1.5 times
//!    its sample's error bound and pass a runs test ([`runs_test_passes`]);
//!    older samples are dropped (a changed path, a jump);
//! 3. within it, the line is fitted over the time span that has predicted
//!    best: for 24 candidate spans (32 s · √2^k, up to 36 h) the fit of each
//!    is kept and scored by its weighted squared error on the next sample
//!    (the mean of the errors, then an exponential average over about 64;
//!    at a poll change each score counts as four errors), and the best
//!    span's fit is used. Too long a span lags the oscillator's frequency wander at its
//!    newest end, too short a one is noisy; the runs test alone cannot tell
//!    (in chrony's reference simulation it kept 64-sample windows that lagged
//!    by 50 µs). With a nearly noiseless source the longest of the
//!    near-best spans is used;
//! 4. the frequency correction is set to the fitted slope (a fit much less
//!    precise than the one the frequency came from, and consistent with it,
//!    is only blended in; that reference's error grows with the oscillator's
//!    assumed wander, [`RegressionConfig::wander`], as it ages), and the fitted
//!    offset *now* minus the correction already in place is slewed out with a
//!    time constant of `poll interval × ratio × σ̂/|phase|` within
//!    `[0.5, 8]` intervals, where σ̂ is the fit's standard error now: a phase
//!    that is large against the fit's uncertainty is removed within a poll or
//!    so, one of the size of the noise over several (chrony's
//!    `corrtimeratio` rule);
//! 5. the poll exponent follows chrony's rule: a score rises by
//!    `(n/target − 1)/target` per update (doubled when negative) where `n`
//!    is the number of samples in the chosen span and `target`
//!    [`RegressionConfig::poll_target`] ([`DEFAULT_POLL_TARGET`], 16;
//!    chrony's `polltarget`, whose default is 8), and falls
//!    by `log2(e)` when a sample misses the last line's prediction by `e > 1`
//!    times what its error bound and the line's standard error allow; ±1
//!    moves the poll by one within `[min_poll, max_poll]`. Wander shortens
//!    the best span, so the poll settles where about sixteen samples predict
//!    best.
//!
//! All of it is deterministic, reads no clock and keeps bounded memory
//! ([`MAX_SAMPLES`] samples, 128 correction segments, 24 span fits).
//!
//! This discipline takes every sample of the system peer with its delay
//! ([`ClockDiscipline::wants_every_sample`]) instead of the clock filter's
//! choices: at long polls the filter passes a new sample only every few polls.
//!
//! # Steps and panics
//!
//! Within the first [`RegressionConfig::initial_step_updates`] updates, while
//! too few samples are held for a line, and until the frequency has been
//! measured, an offset above
//! [`RegressionConfig::step_threshold`] (default 0.125 s, STEPT) is stepped at
//! once, like chrony's `makestep 0.125 3` (chrony's own default
//! configuration suggests `makestep 1 3`; the lower threshold keeps slews
//! short under the kernel's 500 ppm limit). Later, an offset above the
//! threshold is ignored as a spike until none below it has been seen for the
//! stepout ([`RegressionConfig::stepout`], 900 s), then stepped, as in RFC 5905;
//! the spikes since the jump that agree with the stepping sample are kept as
//! the first samples after it, so their line gives the frequency at once.
//! The threshold is at least [`NOISE_STEP_FACTOR`] (3) times the measurement
//! noise (the fit's jitter, or the samples' mean half excess delay): with
//! 100 ms of path jitter an offset of 0.2 s is noise to slew, not a spike.
//!
//! The frequency is measured when a slope is trusted: through two samples,
//! when it differs from the current frequency by more than their delays
//! allow; through more, when its standard error times Student's t at 99.95 %
//! for its degrees of freedom ([`t_coefficient`], chrony's "skew") is within
//! [`MAX_UPDATE_SKEW`] (chrony's `maxupdateskew`, 1000 ppm). A less certain
//! line still gives the level, at the current frequency.
//! After a step the samples are discarded (the reference may have jumped) but
//! the frequency is kept. Offsets above the panic threshold give
//! [`Action::Panic`] and change nothing.
//!
//! # States
//!
//! [`State::Nset`]/[`State::Fset`] before the first update (without/with a
//! saved frequency), [`State::Freq`] while fewer than
//! [`MIN_FIT_SAMPLES`] samples give no fitted line (the first sample's offset
//! is slewed out at once; the second sets the frequency to the slope through
//! the two when it differs from the current one by more than their delay
//! bounds allow) or while no window passes the break tests (the newest
//! sample left every line through the older ones, as after a long run of
//! lost polls: its offset alone sets the level, at the current frequency,
//! and the poll adapts to the miss), [`State::Spik`] while
//! ignoring spikes, [`State::Sync`] otherwise.

use super::{Action, ClockDiscipline, DisciplineConfig, DisciplineSample, DisciplineUpdate, IgnoreReason, State};
use crate::clock::steered::{slewed, KERNEL_MAX_SLEW_RATE, MAX_TICK_RATE, MAX_USER_SLEW_RATE};
use crate::constants::{log2_to_seconds, MAXFREQ, MAXPOLL, MINPOLL, PANICT, PHI, STEPT, WATCH};
use crate::time::{NtpDuration, NtpTime};
use std::collections::VecDeque;

/// A fitted slope whose uncertainty at the 99.95 % level ([`t_coefficient`]
/// times its standard error) exceeds this does not move the frequency:
/// chrony's `maxupdateskew` default (1000 ppm). A line through three samples
/// with 100 ms of jitter can claim a slope of 700 ppm that is pure noise
/// (chrony's 006-largejitter); one through three samples with 100 us of
/// jitter 64 s apart is good to about 0.3 ppm and passes.
pub const MAX_UPDATE_SKEW: f64 = 1000e-6;

/// Student's t at the 99.95 % quantile for `dof` degrees of freedom (the
/// table chrony's regression uses to turn a slope's standard error into its
/// skew; 3.5 above 40).
pub fn t_coefficient(dof: usize) -> f64 {
    const T: [f64; 40] = [
        636.6, 31.6, 12.92, 8.61, 6.869, 5.959, 5.408, 5.041, 4.781, 4.587, 4.437, 4.318, 4.221, 4.140, 4.073, 4.015,
        3.965, 3.922, 3.883, 3.850, 3.819, 3.792, 3.768, 3.745, 3.725, 3.707, 3.690, 3.674, 3.659, 3.646, 3.633, 3.622,
        3.611, 3.601, 3.591, 3.582, 3.574, 3.566, 3.558, 3.551,
    ];
    match dof {
        0 => f64::INFINITY,
        1..=40 => T[dof - 1],
        _ => 3.5,
    }
}

/// Offsets within this many times the measurement noise (the fit's jitter,
/// or the samples' mean half excess delay if larger) are slewed even above
/// the step threshold (see [`RegressionDiscipline`]'s
/// "Steps and panics").
pub const NOISE_STEP_FACTOR: f64 = 3.0;

/// A start-up step whose offset departs from the held samples' line by more
/// than the step threshold, the sample's round-trip delay and this many
/// times the measurement noise plus the line's standard error there is a
/// clock that was set, not noise: the held samples move onto the new
/// timescale with it (with 100 ms of jitter, chrony's 006-largejitter, a
/// departure of 0.2 s from a line through three samples 0.3 s apart is
/// noise, and moving the samples by it made the frequency the tick's 10 %).
pub const JUMP_NOISE_FACTOR: f64 = 10.0;

/// Most samples a [`RegressionDiscipline`] keeps (fixed memory).
pub const MAX_SAMPLES: usize = 64;

/// Fewest samples from which a frequency is fitted; with fewer the line
/// keeps the current frequency as its slope.
pub const MIN_FIT_SAMPLES: usize = 3;

/// A window is refused when a residual exceeds this many times its sample's
/// error bound.
const BOUND_FACTOR: f64 = 1.5;

/// The prior of a fitted offset's uncertainty, for the phase's time
/// constant, in units of the error the samples' bounds give it (each bound
/// taken as a standard deviation): see [`PRIOR_DOF`].
const BOUNDED_SD_FACTOR: f64 = 3.0;

/// The fitted offset's uncertainty is the residuals' standard error pooled
/// with [`BOUNDED_SD_FACTOR`] times the bounds' as if the prior came from this
/// many degrees of freedom: a fit of few samples (the short spans that
/// wander or chance select) cannot tell its own noise from its residuals,
/// and one noisy sample at the end of a short span moves the line a long
/// way; its phase then goes over more polls. A fit of many samples is
/// judged by its residuals. Measured with `scripts/compare-chrony.sh -s 20`
/// (docs/chrony-comparison.md): 006 (100 ms jitter) RMS 20.2 -> 15.8 ms,
/// 001 31.8 us from 38.0 us; RMS in low-noise, high-wander cases rises
/// (007: +25 % in the suite).
const PRIOR_DOF: f64 = 4.0;

/// chrony's default `maxslewrate`, 83 333.333 ppm (1/12: a second in 12 s).
pub const CHRONY_MAX_SLEW_RATE: f64 = 83_333.333e-6;

/// Shortest slew, s (chrony's `MIN_SLEW_TIMEOUT`).
const MIN_SLEW_DURATION: f64 = 1.0;

/// A fit whose slope is more than this many times less certain than the
/// reference fit's only nudges the frequency
/// ([`RegressionDiscipline::blend_frequency`]). At 2 a four-sample span
/// 1.6 times less certain than the reference replaced it and carried the
/// clock 0.13 ppm off for 2,600 s (chrony's 004 +100 s, seed 4, +151 us);
/// at 1, over 20 seeds of `scripts/compare-chrony.sh`, the wander-limited
/// cases' maximum offset fell 3-15 % (003, 004, 102), 009 with two
/// falsetickers rose 9 % (124.1 -> 135.8 us) and 007's RMS 4 %.
const IMPRECISE_FIT: f64 = 1.0;

/// The standard error a saved frequency (a drift file's) starts with, s/s:
/// chrony's drift files hold one ppm or so of skew. A fit over the first few
/// seconds of an iburst has tens of ppm of error and only nudges a frequency
/// held to this ([`RegressionDiscipline::blend_frequency`]); one as precise
/// (minutes of samples) replaces it. ntpd's drift file holds no skew.
pub const SAVED_FREQUENCY_SD: f64 = 1e-6;

/// Largest jitter asymmetry corrected: all jitter on one leg (chrony's `MAX_ASYMMETRY`).
pub const MAX_ASYMMETRY: f64 = 0.5;

/// Smallest estimated asymmetry that counts toward a correction (chrony's `MIN_ASYMMETRY`).
pub const MIN_ASYMMETRY: f64 = 0.45;

/// Estimates of one sign in a row before the correction applies (chrony's `MIN_ASYMMETRY_RUN`).
pub const MIN_ASYMMETRY_RUN: i32 = 10;

/// Most the run counter holds (chrony's `MAX_ASYMMETRY_RUN`).
const MAX_ASYMMETRY_RUN: i32 = 1000;

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
    /// The fastest slew, s/s (chrony's `maxslewrate`, default
    /// [`CHRONY_MAX_SLEW_RATE`], 83 333 ppm): phases are slewed linearly
    /// through the tick ([`Action::Slew`] with `max_rate`), in `|phase|/rate`
    /// at the least. Within `(0, 0.1]` (the tick's 10 %).
    pub max_slew_rate: f64,
    /// Largest frequency correction, s/s (default [`MAX_TICK_RATE`] +
    /// MAXFREQ: the tick's 10 % and the kernel's 500 ppm, what a Linux clock
    /// reaches). Within `[0, MAX_TICK_RATE + MAXFREQ]`.
    pub max_frequency: f64,
    /// This host's precision, log2 s: the floor of every noise estimate.
    pub local_precision: i8,
    /// The oscillator's assumed frequency wander, (s/s)/√s (default
    /// [`DEFAULT_WANDER`]): how fast the slope the frequency last came from
    /// loses certainty, so that a less precise but newer fit outweighs it
    /// after a while.
    pub wander: f64,
}

/// The default poll target: samples in the best-predicting span at which
/// the poll settles ([`RegressionConfig::poll_target`]). chrony's
/// `polltarget` defaults to 8 samples of its regression window; ntplab's
/// span is the one that predicted best, and where the oscillator's wander
/// limits it (clknetsim's 1e-9 with 100 us of jitter each way) a span of 8
/// samples at long polls left single noisy samples steering the clock.
/// With 16 the poll settles a step or two lower: over chrony's tests under
/// clknetsim (docs/chrony-comparison.md, paired with the same chronyd
/// runs) the median RMS offsets fell by 20-26 %, and ntplab sent 2.6 times
/// chronyd's requests where it sent about 1.5 times (geometric means over
/// the tests). `[clock] poll_target = 8` is chrony's default.
pub const DEFAULT_POLL_TARGET: usize = 16;

/// A quartz oscillator's random-walk frequency wander, (s/s)/√s: the
/// default of clknetsim (chrony's simulator) for every clock of chrony's
/// simulation tests.
pub const DEFAULT_WANDER: f64 = 1e-9;

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
            poll_target: DEFAULT_POLL_TARGET,
            correction_ratio: 1.5,
            max_slew_rate: CHRONY_MAX_SLEW_RATE,
            max_frequency: MAX_TICK_RATE + MAXFREQ,
            local_precision: -20,
            wander: DEFAULT_WANDER,
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
            initial_step_updates: c.step_updates.unwrap_or(RegressionConfig::default().initial_step_updates),
            poll_target: c.poll_target.unwrap_or(DEFAULT_POLL_TARGET),
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
        if weight_sum.is_nan() || weight_sum <= 0.0 {
            return None;
        }
        let x_mean = points.iter().map(|p| p.0 * p.2).sum::<f64>() / weight_sum;
        let y_mean = points.iter().map(|p| p.1 * p.2).sum::<f64>() / weight_sum;
        let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - x_mean).powi(2)).sum();
        if sxx.is_nan() || sxx <= 0.0 {
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
        (self.variance * self.value_leverage(x)).sqrt()
    }

    /// The line's error at `x` were each weight the inverse square of its
    /// point's error: what the weights alone say, whatever the residuals.
    pub fn weighted_value_error(&self, x: f64) -> f64 {
        self.value_leverage(x).sqrt()
    }

    /// The factor of the value's variance at `x` that the weights and the
    /// abscissae give: `1/Σw + (x − x̄)²/Sxx`.
    pub fn value_leverage(&self, x: f64) -> f64 {
        1.0 / self.weight_sum + (x - self.x_mean).powi(2) / self.sxx
    }

    /// Standard error of the slope.
    pub fn slope_sd(&self) -> f64 {
        (self.variance / self.sxx).sqrt()
    }

    /// The slope's standard error, at least what the samples' error bounds
    /// allow (a fit of three samples can be nearly collinear by chance and
    /// claim a precision it lacks).
    pub fn slope_uncertainty(&self) -> f64 {
        self.slope_sd().max(1.0 / self.sxx.sqrt())
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

/// [`RegressionDiscipline::regress`]'s window when none passed the break
/// tests: all of `points` (start 0), if there are more than
/// [`MIN_FIT_SAMPLES`] over `min_span` seconds or more (a poll: an iburst's
/// samples, 2 s apart, are left to the break tests), the newest lies within its bound (times
/// [`BOUND_FACTOR`]) plus twice the standard error of the line through the
/// older ones, and the line through all of them passes the runs test.
fn whole_window_despite_bounds(points: &[Point], bounds: Option<&[f64]>, min_span: f64) -> Option<(usize, LinearFit)> {
    let n = points.len();
    let (bounds, newest) = (bounds?, points.last()?);
    let span = newest.0 - points[0].0;
    if n <= MIN_FIT_SAMPLES || bounds.len() != n || span.is_nan() || span < min_span {
        return None;
    }
    let older = LinearFit::new(&points[..n - 1])?;
    let departure = (newest.1 - older.at(newest.0)).abs();
    let allowed = BOUND_FACTOR * bounds[n - 1] + 2.0 * older.value_sd(newest.0);
    if departure.is_nan() || allowed.is_nan() || departure > allowed {
        return None;
    }
    let fit = LinearFit::new(points)?;
    let residuals: Vec<f64> = points.iter().map(|p| p.1 - fit.at(p.0)).collect();
    runs_test_passes(&residuals).then_some((0, fit))
}

/// The weights' sum, the weighted mean abscissa and the weighted sum of
/// squared deviations from it, of a window of points: `None` unless that
/// sum is positive and finite (no slope to fit).
fn weighted_spread(window: &[Point]) -> Option<(f64, f64, f64)> {
    let weight: f64 = window.iter().map(|p| p.2).sum();
    let x_mean = window.iter().map(|p| p.2 * p.0).sum::<f64>() / weight;
    let sxx: f64 = window.iter().map(|p| p.2 * (p.0 - x_mean).powi(2)).sum();
    (sxx > 0.0 && sxx.is_finite()).then_some((weight, x_mean, sxx))
}

/// The lower quartile of the delays' excesses over their minimum (the
/// finite ones), 0 with none.
fn excess_quartile(mut excess: Vec<f64>) -> f64 {
    excess.retain(|e| e.is_finite());
    if excess.is_empty() {
        return 0.0;
    }
    excess.sort_by(f64::total_cmp);
    excess[excess.len() / 4]
}

/// The floor of the samples' error bounds: an eighth of their mean excess
/// delay, unless (with [`QUARTILE_SAMPLES`] or more; with fewer the
/// quartile would be the minimum) a delayed majority puts that above
/// [`DELAYED_MAJORITY_RATIO`] times a quarter of the excesses' lower
/// quartile ([`excess_quartile`]); then the latter. With exponential
/// jitter both are about a quarter of the one-way mean, and the mean moves
/// less from sample to sample: at a ratio of 4 the quartile was taken by
/// chance in a few samples and raised packet-loss-33's RMS offset by 22 %
/// and intermittent-link's max by 87 % over seeds 1-10; chrony's 126-burst
/// (70 % of requests held 150 ms, whose mean excess put the floor at
/// 13 ms) puts the ratio in the hundreds.
fn bound_floor(excess: impl Iterator<Item = f64>) -> f64 {
    let excess: Vec<f64> = excess.collect();
    if excess.is_empty() {
        return 0.0;
    }
    let mean = excess.iter().sum::<f64>() / excess.len() as f64 / 8.0;
    if excess.len() < QUARTILE_SAMPLES {
        return mean;
    }
    let quartile = excess_quartile(excess) / 4.0;
    if mean > DELAYED_MAJORITY_RATIO * quartile {
        quartile
    } else {
        mean
    }
}

/// See [`bound_floor`].
const DELAYED_MAJORITY_RATIO: f64 = 32.0;

/// How many jitters a sample's half round trip may exceed the least held
/// by ([`ClockDiscipline::delay_outlier`]; chrony's `maxdelaydevratio`
/// default), unless the source sets its own.
pub const MAX_DELAY_DEV_RATIO: f64 = 10.0;

/// A delayed sample is an outlier only when its offset left the line by at
/// least this share of its half round trip's excess: the delay then sat on
/// one leg and moved the offset with it. One whose offset stayed on the
/// line (the path grew on both legs, sim/scenarios/format-example.toml's
/// 0.25 -> 10 ms at 4 h) is right, and is taken with its small weight:
/// dropping it left the line to the old path's samples, and a frequency
/// change an hour later was not followed (3.9 ms off).
const DELAYED_DEPARTURE_SHARE: f64 = 0.5;

/// Held samples from which the delay test applies (chrony's, in
/// `SST_IsGoodSample`).
const DELAY_TEST_SAMPLES: usize = 6;

/// The clock's frequency error assumed beyond the measured frequency's
/// uncertainty when the delay test ages its allowance (chrony's
/// `maxclockerror` default, 1 ppm).
const MAX_CLOCK_ERROR: f64 = 1e-6;

/// Before any frequency was measured, a line through samples that fail the
/// break tests gives the frequency only when its slope departs from the
/// one in use by more than this many of its standard errors (and the
/// samples span a poll): an iburst's samples seconds apart, or a perfect
/// clock's noise, give none.
const UNMEASURED_SLOPE_SDS: f64 = 3.0;

/// Fewest samples whose lower quartile [`bound_floor`] considers.
const QUARTILE_SAMPLES: usize = 8;

/// The line's level is carried from its weighted mean at the frequency in
/// use only when that is this many times less uncertain (in variance) than
/// the line's own value: the frequency's uncertainty assumes
/// [`RegressionConfig::wander`], and an oscillator wandering more (chrony's
/// 007-largewander, 1e-7) makes it optimistic.
const CARRIED_LEVEL_GAIN: f64 = 4.0;

/// ... and only when now lies more than this many weighted spreads of the
/// line's abscissae beyond their weighted mean: a line extrapolated far past
/// where its weight lies. Within its span a line follows a wandering
/// oscillator better than a frequency carried from an older fit (007, with
/// the frequency carried whenever it was four times more certain: max
/// offset 501 us over 20 seeds against 391 us).
const CARRIED_LEVEL_REACH: f64 = 5.0;

/// A fit point `(x, y, weight)`.
type Point = (f64, f64, f64);

#[derive(Clone, Copy, Debug)]
struct RawSample {
    time: NtpTime,
    /// Offset of the uncorrected oscillator, s.
    raw_offset: f64,
    /// The correction `C` in force at `time`, s: `time − correction` is the
    /// oscillator's reading, the fit's abscissa.
    correction: f64,
    /// Round-trip delay, s (0 if unknown).
    delay: f64,
}

/// Number of candidate window spans: 32 s · √2^k, k < SPANS (up to 36 h).
const SPANS: usize = 24;

/// Weight of a new prediction error in a span's score, once it averages 64
/// (before: the mean of its errors so far).
const SCORE_WEIGHT: f64 = 1.0 / 64.0;

/// After a poll change a span's score counts as this many predictions. A
/// span holds fewer samples at a longer poll and predicts farther, so what it
/// scored before says little: at 2^6 s a span of 1,024 s held 16 samples
/// and predicted well, at 2^9 s it holds 3 (the fewest a fit takes), and the
/// score it kept chose three-sample lines that followed single noisy samples
/// (chrony's 005 +100 s, seed 1: -156 us slewed from a sample delayed 423 us).
const POLL_CHANGE_MEMORY: f64 = 4.0;

/// With a nearly noiseless source, spans scoring within this fraction of the
/// best count as equally good (the longest of them is used).
const SCORE_TOLERANCE: f64 = 0.1;

/// A best score below this (prediction errors a tenth of the samples' noise
/// bound) marks a nearly noiseless source.
const NOISELESS_SCORE: f64 = 0.01;

fn span_seconds(k: usize) -> f64 {
    32.0 * 2f64.powf(k as f64 / 2.0)
}

/// The oscillator seconds `r` in which `segment` advances local time by `d`
/// s: `d = r + freq·r + slewed(r)`, in closed form for the linear slew (rate
/// `R` until the phase is done).
fn oscillator_span(d: f64, s: &Segment) -> f64 {
    let scale = 1.0 + s.freq;
    let slewing = s.rate > 0.0 && s.phase != 0.0;
    let r = if slewing { d / (scale + s.rate.copysign(s.phase)) } else { d / scale };
    // Past the end of the slew the whole phase is in.
    if slewing && r * s.rate >= s.phase.abs() {
        return (d - s.phase) / scale;
    }
    r
}

/// The phase a segment has slewed `r` oscillator seconds after its start:
/// linearly at its rate (chrony's slew, [`Action::Slew`] with a zero time
/// constant).
fn segment_slewed(s: &Segment, r: f64) -> f64 {
    slewed(s.phase, 0.0, s.rate, r)
}

/// A fit's abscissa origin: a local time and the correction in force then.
/// Abscissas are *oscillator* seconds, `(t − origin) − (C(t) − C(origin))`:
/// the corrections run per oscillator second, local time jumps with steps,
/// and at a 5 % correction local and oscillator seconds differ by 5 %.
type Origin = (NtpTime, f64);

fn abscissa(t: NtpTime, correction: f64, origin: Origin) -> f64 {
    secs(t - origin.0) - (correction - origin.1)
}

/// Appends `sample` to `queue`, dropping the oldest beyond `cap`.
fn push_capped(queue: &mut VecDeque<RawSample>, sample: RawSample, cap: usize) {
    queue.push_back(sample);
    while queue.len() > cap {
        queue.pop_front();
    }
}

/// A candidate window span: its last fit and its prediction score.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    fit: Option<(Origin, LinearFit)>,
    score: Option<f64>,
    /// How many predictions the score averages (at most 1/SCORE_WEIGHT).
    count: f64,
}

/// One piece of `C(t)`: from `start` on, `base + freq·(t − start) + slew`,
/// the slew of `phase` linear at `rate`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: NtpTime,
    base: f64,
    freq: f64,
    phase: f64,
    /// Rate of the slew, s/s.
    rate: f64,
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
    /// The samples ignored as spikes since then (at most `max_samples`):
    /// if the stepout ends in a step, those on the new timescale are the
    /// regression's first samples after it.
    spikes: VecDeque<RawSample>,
    /// Weighted RMS residual of the last fit, s.
    jitter: f64,
    /// Standard error of the last fitted offset, s.
    offset_sd: f64,
    /// The last accepted fit, in oscillator seconds relative to its origin.
    fit: Option<(Origin, LinearFit)>,
    /// Samples in the window the last fit accepted.
    window: usize,
    /// Candidate window spans with their prediction scores.
    spans: [Span; SPANS],
    /// The jitter asymmetry in force (offset per second of extra delay,
    /// within ±[`MAX_ASYMMETRY`]; 0 while none is established).
    asymmetry: f64,
    /// Consecutive estimates of one sign beyond [`MIN_ASYMMETRY`] (the sign
    /// is the estimates' sign).
    asymmetry_run: i32,
    /// Standard error of the fitted slope the frequency last came from
    /// (infinite before any, and after a step; [`SAVED_FREQUENCY_SD`] for a
    /// saved frequency, whose time is unknown: it does not age).
    freq_sd: f64,
    /// While `freq_sd` is infinite, the most the frequency can be off when
    /// the slope it came from was bounded by its samples' delays (a pair's,
    /// or a line's through samples each within half its round trip of the
    /// truth: [`Self::bounded_slope`]); infinite otherwise.
    freq_bound: f64,
    /// When the slope the frequency last came from was taken.
    freq_time: Option<NtpTime>,
    /// Some sample pair or line has given the frequency (a slope taken, not
    /// one refused as too uncertain); kept across steps.
    frequency_measured: bool,
    /// The last fit is none because a step cleared it, not because the
    /// held samples gave none.
    fit_cleared_by_step: bool,
    /// How many of the newest held samples came from the current source
    /// (since [`ClockDiscipline::source_changed`]): the delay test's basis.
    source_samples: usize,
    /// The current source's delay test ratio ([`MAX_DELAY_DEV_RATIO`] unless
    /// it sets its own).
    max_delay_dev_ratio: f64,
}

impl RegressionDiscipline {
    /// A discipline with no samples; with a saved frequency (s/s, clamped to
    /// `±max_frequency`) it starts from it (FSET), otherwise from zero (NSET).
    pub fn new(config: RegressionConfig, initial_frequency: Option<f64>) -> Self {
        let mut config = config;
        config.min_poll = config.min_poll.clamp(MINPOLL, MAXPOLL);
        config.max_poll = config.max_poll.clamp(config.min_poll, MAXPOLL);
        config.max_samples = config.max_samples.clamp(MIN_FIT_SAMPLES, MAX_SAMPLES);
        config.poll_target = config.poll_target.max(MIN_FIT_SAMPLES);
        if config.correction_ratio.is_nan() || config.correction_ratio <= 0.0 {
            config.correction_ratio = RegressionConfig::default().correction_ratio;
        }
        if config.max_slew_rate.is_nan() || config.max_slew_rate <= 0.0 {
            config.max_slew_rate = KERNEL_MAX_SLEW_RATE;
        }
        config.max_slew_rate = config.max_slew_rate.min(MAX_USER_SLEW_RATE);
        config.max_frequency =
            if config.max_frequency.is_nan() { MAXFREQ } else { config.max_frequency.clamp(0.0, MAX_TICK_RATE + MAXFREQ) };
        let (state, freq) = match initial_frequency {
            Some(f) if f.is_finite() => (State::Fset, f.clamp(-config.max_frequency, config.max_frequency)),
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
            spikes: VecDeque::new(),
            jitter: log2_to_seconds(config.local_precision),
            offset_sd: 0.0,
            fit: None,
            window: 0,
            spans: [Span::default(); SPANS],
            asymmetry: 0.0,
            asymmetry_run: 0,
            frequency_measured: state == State::Fset,
            fit_cleared_by_step: false,
            source_samples: 0,
            max_delay_dev_ratio: MAX_DELAY_DEV_RATIO,
            freq_sd: if state == State::Fset { SAVED_FREQUENCY_SD } else { f64::INFINITY },
            freq_bound: f64::INFINITY,
            freq_time: None,
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

    /// The jitter asymmetry the offsets are corrected by (0 while none is
    /// established; −0.5: all jitter on the way back, the offsets low by
    /// half the excess delay).
    pub fn asymmetry(&self) -> f64 {
        self.asymmetry
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
        // The clock applies frequency and slew per *oscillator* second, and
        // `d` is local: `d = r + freq·r + slewed(r)`, solved for `r`.
        let r = oscillator_span(d, s);
        s.base + s.freq * r + segment_slewed(s, r)
    }

    /// What an exchange centred on `epoch` with round trip `delay` measured,
    /// in the oscillator's terms: the correction to add to its offset and
    /// its round trip. The offset is the mean of the clock's errors when the
    /// request left and when the reply came (about `epoch ∓ delay/2`), so the
    /// correction to add back is the mean of the corrections then, not the
    /// one at the midpoint; and the local clock timed the round trip with the
    /// corrections made meanwhile in it, which are taken out. Both matter
    /// while a slew runs through the exchange: a 100 ms slew at the tick's
    /// 83,333 ppm takes 1.2 s, and in a 1.2 s round trip (chrony's
    /// 120-selectoptions, 0.6 s each way) it shortened the measured delay by
    /// 44 ms, which every later sample then seemed delayed by: their error
    /// bounds kept the slews 8 polls long and the clock off 1 ms for an hour.
    fn exchange(&self, epoch: NtpTime, delay: NtpDuration) -> (f64, f64) {
        let d = secs(delay).max(0.0);
        let half = dur(d / 2.0);
        let (sent, received) = (self.correction_at(epoch + (-half)), self.correction_at(epoch + half));
        ((sent + received) / 2.0, (d - (received - sent)).max(0.0))
    }

    /// An exchange's `offset` (s) at `epoch` with round trip `delay`, as a
    /// held sample: in the oscillator's terms ([`Self::exchange`]).
    fn raw_sample(&self, epoch: NtpTime, offset: f64, delay: NtpDuration) -> RawSample {
        let (correction, delay) = self.exchange(epoch, delay);
        RawSample { time: epoch, raw_offset: offset + correction, correction, delay }
    }

    /// Holds `sample`, dropping the oldest beyond `max_samples`.
    fn hold(&mut self, sample: RawSample) {
        push_capped(&mut self.samples, sample, self.config.max_samples);
        self.source_samples += 1;
    }

    /// Drops the samples, the span fits and the correction history, which
    /// goes on from local time `start` at `base` and the frequency in use.
    fn drop_samples(&mut self, start: NtpTime, base: f64) {
        self.samples.clear();
        self.segments.clear();
        self.segments.push_back(Segment { start, base, freq: self.freq, phase: 0.0, rate: 0.0 });
        self.spans = [Span::default(); SPANS];
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

    /// The measurement noise as the samples show it: the larger of the last
    /// fit's jitter and the held samples' mean half excess delay (an
    /// offset's error is at most half its delay above the path's minimum).
    fn noise(&self) -> f64 {
        let min_delay = self.samples.iter().map(|s| s.delay).fold(f64::INFINITY, f64::min);
        let n = self.samples.len() as f64;
        let half_excess = self.samples.iter().map(|s| (s.delay - min_delay) / 2.0).sum::<f64>() / n;
        if half_excess.is_finite() {
            self.jitter.max(half_excess)
        } else {
            self.jitter
        }
    }

    /// Points `(x, y, w)` for the samples, `x` in seconds relative to
    /// `origin`, `y` the raw offset less the jitter asymmetry's share of the
    /// delay above the minimum ([`RegressionDiscipline::asymmetry`]), and each sample's error bound `(δᵢ − δ_min)/2 + σ₀` (`None`
    /// when the delays are unknown).
    fn points(&self, origin: NtpTime) -> (Vec<Point>, Option<Vec<f64>>) {
        let origin = (origin, self.correction_at(origin));
        let delays = self.samples.iter().map(|s| s.delay);
        let min_delay = delays.clone().fold(f64::INFINITY, f64::min);
        let max_delay = delays.clone().fold(0.0, f64::max);
        let floor = bound_floor(delays.map(|d| d - min_delay)).max(self.precision());
        let sigma = |s: &RawSample| floor + (s.delay - min_delay) / 2.0;
        let y = |s: &RawSample| s.raw_offset - self.asymmetry * (s.delay - min_delay);
        let points =
            self.samples.iter().map(|s| (abscissa(s.time, s.correction, origin), y(s), 1.0 / (sigma(s) * sigma(s)))).collect();
        let bounds = (max_delay > 0.0).then(|| self.samples.iter().map(sigma).collect());
        (points, bounds)
    }

    /// Fits the line: among the windows that pass the break tests (error
    /// bounds, runs), the span whose past fits best predicted the samples
    /// that followed them. Drops samples older than the longest valid window.
    /// Returns that line and the one through the longest valid window.
    fn regress(&mut self, origin: NtpTime) -> Option<(LinearFit, LinearFit)> {
        let (points, bounds) = self.points(origin);
        let origin = (origin, self.correction_at(origin));
        let n = points.len();
        if n < MIN_FIT_SAMPLES {
            return None;
        }
        let precision = self.precision();
        let mut valid = None;
        for start in 0..=n - MIN_FIT_SAMPLES {
            let window = &points[start..];
            let Some(fit) = LinearFit::new(window) else { continue };
            let residuals: Vec<f64> = window.iter().map(|p| p.1 - fit.at(p.0)).collect();
            let within_bounds = bounds.as_ref().is_none_or(|b| {
                residuals.iter().zip(&b[start..]).all(|(r, b)| r.abs() <= BOUND_FACTOR * b)
            });
            // Residuals within the clock's precision carry no trend to test.
            let negligible = residuals.iter().all(|r| r.abs() <= precision);
            if within_bounds && (negligible || runs_test_passes(&residuals)) {
                valid = Some((start, fit));
                break;
            }
        }
        // No window passed. With a millisecond of jitter each way the error
        // bounds can be too tight for every window, the newest three
        // included, though nothing moved: they come from the delays' excess
        // over the least held, and that least is itself far above the
        // path's minimum (chrony's 001 at 1 ms of jitter: a window of 13
        // samples failed, and update_sample's fallback slewed single
        // samples' offsets, +3.3 ms in a second). Unless the newest sample
        // left the line through the older ones (what that fallback is for:
        // a long gap, a jump), the whole window is taken if it passes the
        // runs test.
        let valid = valid.or_else(|| whole_window_despite_bounds(&points, bounds.as_deref(), log2_to_seconds(self.poll)));
        let (start, longest) = valid?;
        self.samples.drain(..start);
        let points = &points[start..];
        let n = points.len();
        // Every span's fit, kept for scoring against the next sample; the
        // best-scoring one is used. Scores are in units of the samples' own
        // noise: when even the best is far below it (a nearly noiseless
        // source), the differences are leftovers of the start-up and the
        // longest span within SCORE_TOLERANCE of the best is used.
        let min_score = self.spans.iter().filter_map(|s| s.score).fold(f64::INFINITY, f64::min);
        let tolerance = if min_score < NOISELESS_SCORE { SCORE_TOLERANCE } else { 0.0 };
        let mut best = None;
        for (k, span) in self.spans.iter_mut().enumerate() {
            let length = span_seconds(k);
            let first = points.iter().position(|p| -p.0 <= length).unwrap_or(n).min(n - MIN_FIT_SAMPLES);
            let fit = if first == 0 { Some(longest) } else { LinearFit::new(&points[first..]) };
            // Nearly noiseless: prediction errors a thousandth of the noise
            // bound are rounding, all equally good.
            let floor = tolerance * NOISELESS_SCORE * SCORE_TOLERANCE;
            let good = span.score.is_some_and(|s| s <= min_score * (1.0 + tolerance) + floor);
            if let (Some(f), true) = (fit, good) {
                best = Some(f);
            }
            span.fit = fit.map(|f| (origin, f));
        }
        Some((best.unwrap_or(longest), longest))
    }

    /// Scores every span's last fit by how well it predicted a new sample
    /// (weighted squared error, exponentially averaged).
    fn score_spans(&mut self, time: NtpTime, correction: f64, raw_offset: f64, weight: f64) {
        for span in &mut self.spans {
            if let Some((origin, fit)) = span.fit {
                let e = weight * (raw_offset - fit.at(abscissa(time, correction, origin))).powi(2);
                span.count = (span.count + 1.0).min(1.0 / SCORE_WEIGHT);
                span.score = Some(span.score.map_or(e, |s| s + (e - s) / span.count));
            }
        }
    }

    /// Steps by `offset`. A start-up step (`keep`) keeps the samples (with
    /// this one): the reference did not move, only this clock, and raw
    /// offsets do not change with a step; their line sets the frequency
    /// (from two samples on: an offset above the step threshold dwarfs the
    /// noise), so a large frequency error is learned while stepping. A later
    /// step (after the stepout: the reference may have jumped) drops them,
    /// and holds the spikes since the jump instead.
    fn step(&mut self, sample: &DisciplineSample, epoch: NtpTime, now: NtpTime, keep: bool) -> DisciplineUpdate {
        let offset = sample.offset;
        let base = self.correction_at(now) + secs(offset);
        // Local time jumps by `offset`; the new segment starts where it lands.
        // Kept samples need no change: their abscissas are oscillator time.
        let after = now + offset;
        // After the stepout, the spikes that led to the step lie on the new
        // timescale with this sample (raw offsets are the oscillator's: the
        // step moves the correction, not them): the newest run of them
        // within the step threshold of this one, carried at the frequency in
        // use, is kept. Their line gives the frequency at once, where
        // dropping them left it to the samples after the step (chrony's
        // 005-externalstep, +100 s: the frequency ran 0.7 ppm off the
        // first 1,500 s after it).
        let spikes = std::mem::take(&mut self.spikes);
        let new = self.raw_sample(epoch, secs(offset), sample.delay);
        let carried: Vec<RawSample> = if keep {
            Vec::new()
        } else {
            let within = |s: &RawSample| {
                let d = s.raw_offset - new.raw_offset - self.freq * secs(s.time - new.time);
                d.abs() <= secs(self.config.step_threshold)
            };
            let run = spikes.iter().rev().take_while(|s| within(s)).count();
            spikes.iter().skip(spikes.len() - run).copied().collect()
        };
        let carry = !carried.is_empty();
        if carry {
            self.samples = carried.into();
            self.spans = [Span::default(); SPANS];
        }
        if keep || carry {
            self.hold(new);
            if let Some(slope) = self.trusted_slope(&self.points(now).0) {
                self.freq = slope.clamp(-self.config.max_frequency, self.config.max_frequency);
                self.frequency_measured = true;
            }
            self.push_segment(Segment { start: after, base, freq: self.freq, phase: 0.0, rate: 0.0 });
        } else {
            self.drop_samples(after, base);
        }
        self.fit = None;
        self.fit_cleared_by_step = true;
        self.freq_sd = f64::INFINITY;
        self.freq_bound = f64::INFINITY;
        self.window = 0;
        self.poll = self.config.min_poll;
        self.poll_score = 0.0;
        self.last_update = Some(epoch);
        self.last_good = Some(epoch);
        self.state = if matches!(self.state, State::Nset | State::Freq) { State::Freq } else { State::Sync };
        self.outcome(Action::Step { offset, frequency: self.freq })
    }

    /// chrony's jitter-asymmetry estimate (its `sourcestats.c`): when the
    /// jitter sits mostly on one leg of the path, an offset moves with half
    /// the delay above the minimum, a bias the line's weights only damp. A
    /// least-squares fit of the raw offsets over time *and* excess delay
    /// gives the share `a`; once [`MIN_ASYMMETRY_RUN`] fits in a row find
    /// `|a| ≥ MIN_ASYMMETRY` with one sign, every offset is corrected by
    /// `a · (δ − δ_min)` (`a` within ±[`MAX_ASYMMETRY`]). A fit that fails or
    /// changes sign starts the count over and stops the correction.
    fn estimate_asymmetry(&mut self, now: NtpTime) {
        let a = self.asymmetry_fit(now);
        let Some(a) = a.filter(|a| a * f64::from(self.asymmetry_run) >= 0.0) else {
            self.asymmetry = 0.0;
            self.asymmetry_run = 0;
            return;
        };
        if a <= -MIN_ASYMMETRY {
            self.asymmetry_run = (self.asymmetry_run - 1).max(-MAX_ASYMMETRY_RUN);
        } else if a >= MIN_ASYMMETRY {
            self.asymmetry_run = (self.asymmetry_run + 1).min(MAX_ASYMMETRY_RUN);
        }
        self.asymmetry =
            if self.asymmetry_run.abs() < MIN_ASYMMETRY_RUN { 0.0 } else { a.clamp(-MAX_ASYMMETRY, MAX_ASYMMETRY) };
    }

    /// The delay coefficient of the unweighted fit `y = c + b·x + a·(δ − δ_min)`
    /// over the held samples (raw offsets), `None` with fewer than four
    /// samples or no spread in time or delay independent of each other.
    fn asymmetry_fit(&self, now: NtpTime) -> Option<f64> {
        let n = self.samples.len();
        if n < 4 {
            return None;
        }
        let origin = (now, self.correction_at(now));
        let min_delay = self.samples.iter().map(|s| s.delay).fold(f64::INFINITY, f64::min);
        let rows = || self.samples.iter().map(|s| (abscissa(s.time, s.correction, origin), s.delay - min_delay, s.raw_offset));
        let k = n as f64;
        let (mx, md, my) = rows().fold((0.0, 0.0, 0.0), |m, r| (m.0 + r.0 / k, m.1 + r.1 / k, m.2 + r.2 / k));
        let (mut sxx, mut sdd, mut sxd, mut sxy, mut sdy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (x, d, y) in rows() {
            let (x, d, y) = (x - mx, d - md, y - my);
            sxx += x * x;
            sdd += d * d;
            sxd += x * d;
            sxy += x * y;
            sdy += d * y;
        }
        let det = sxx * sdd - sxd * sxd;
        // Delays all equal, or moving in step with time: no asymmetry to see.
        if det.is_nan() || det <= 1e-12 * sxx * sdd {
            return None;
        }
        let a = (sxx * sdy - sxd * sxy) / det;
        a.is_finite().then_some(a)
    }

    /// The frequency to take from a fit of slope `slope` ± `sd`. A fit more
    /// than [`IMPRECISE_FIT`] times less certain than the one the current
    /// frequency came from (with the reference's aging below), and consistent with it (within three combined
    /// standard errors), only moves the frequency by inverse-variance
    /// weighting: after an outage or a run of losses the break tests cut the
    /// window down to a burst's few seconds, whose slope is noise of tens of
    /// ppm, and taking it whole carried the clock a millisecond away before
    /// the next sample. Any other fit (as precise, or showing a real change)
    /// sets the frequency and becomes the reference. The reference ages: its
    /// standard error grows by [`RegressionConfig::wander`] · √age, so that
    /// once the oscillator may have wandered more than a newer fit's error,
    /// the newer fit is taken (at 1 024 s polls a reference held for hours
    /// anchored the frequency 1e-7 away from a clock that had wandered:
    /// chrony's 003-largefreqoffset, seed 4, 210 us).
    fn blend_frequency(&mut self, slope: f64, sd: f64, now: NtpTime) -> f64 {
        let old = self.frequency_sd(now);
        let consistent = (slope - self.freq).abs() <= 3.0 * old.hypot(sd);
        self.freq_bound = f64::INFINITY;
        if !sd.is_finite() || !old.is_finite() || sd <= IMPRECISE_FIT * old || !consistent {
            self.freq_sd = sd;
            self.freq_time = Some(now);
            return slope;
        }
        let (w_old, w_new) = (1.0 / (old * old), 1.0 / (sd * sd));
        (self.freq * w_old + slope * w_new) / (w_old + w_new)
    }

    /// The standard error of the frequency in use at `now`: that of the
    /// slope it came from, grown by [`RegressionConfig::wander`] · √age (the
    /// oscillator's frequency wanders after it).
    fn frequency_sd(&self, now: NtpTime) -> f64 {
        let age = self.freq_time.map_or(0.0, |t| secs(now - t).max(0.0));
        self.freq_sd.hypot(self.config.wander * age.sqrt())
    }

    /// The slope of the line through `points` when it can be trusted: through
    /// two, when it differs from the current frequency by more than their
    /// delays allow ([`Self::two_point_slope`]); through more, when its
    /// uncertainty at the 99.95 % level is within [`MAX_UPDATE_SKEW`]. A
    /// start-up step keeps the samples and takes the frequency from them,
    /// but two samples 0.2 s apart with 100 ms of jitter give a "slope" of
    /// 10 % (chrony's 006-largejitter).
    fn trusted_slope(&self, points: &[Point]) -> Option<f64> {
        if points.len() == 2 {
            return self.two_point_slope(points);
        }
        let fit = LinearFit::new(points)?;
        (fit.slope_uncertainty() * t_coefficient(fit.n - 2) <= MAX_UPDATE_SKEW).then_some(fit.slope)
    }

    /// The slope through exactly two samples, when it differs from the
    /// current frequency by more than the two samples allow: each offset is
    /// off by at most half its round-trip delay, so by `(δ₁ + δ₂)/2/Δx` in
    /// all (three times the jitter each when the delays are unknown). The
    /// second sample of a new source 64 s after the first already gives the
    /// frequency to within a few ppm, so the offset stops drifting one poll
    /// before a line through three samples would say so; two samples
    /// milliseconds apart (a poll right after a step) say nothing.
    /// chrony's delay test (`maxdelaydevratio`), per source as chrony's:
    /// with [`DELAY_TEST_SAMPLES`] or more of the current source's samples
    /// held, a sample whose round trip exceeds their least by more than
    /// twice the source's ratio ([`MAX_DELAY_DEV_RATIO`] by default) times
    /// the noise (the fit's jitter, or the lower quartile of their half
    /// excess delays if larger), plus what
    /// the frequency's uncertainty and [`MAX_CLOCK_ERROR`] allow over the
    /// time since the newest sample, is an outlier when its offset left the
    /// last line's prediction by [`DELAYED_DEPARTURE_SHARE`] of that excess
    /// or more (the delay sat on one leg), but not by more than the excess
    /// and the allowance together (then the clock or the reference moved).
    /// A sample held back 150 ms (70 %
    /// of the requests in chrony's 126-burst) otherwise entered the line
    /// with a small weight but taught the asymmetry estimate that half of
    /// every delay is on one leg, and the correction then moved the
    /// undelayed samples by half their jitter: 100-170 us off for hours.
    fn delayed_outlier(&self, epoch: NtpTime, theta: f64, delay: NtpDuration) -> bool {
        let (Some((origin, fit)), Some(newest)) = (self.fit, self.samples.back()) else { return false };
        let own = self.source_samples.min(self.samples.len());
        if own < DELAY_TEST_SAMPLES {
            return false;
        }
        let min_delay = self.samples.iter().rev().take(own).map(|s| s.delay).fold(f64::INFINITY, f64::min);
        let new = self.raw_sample(epoch, theta, delay);
        let elapsed = secs(epoch - newest.time).max(0.0);
        // The noise: the fit's jitter, or the lower quartile of the held
        // samples' half excess delays if larger (six samples of an iburst
        // can fit within 10 us with 100 us of jitter on the path: a
        // seventh then looked delayed, was dropped, and the burst's
        // frequency, 4 ppm off, ran a whole poll).
        let drift = elapsed * (self.frequency_uncertainty() + MAX_CLOCK_ERROR);
        let increase = (new.delay - min_delay) / 2.0;
        // The quartile only raises the allowance: it is sorted out only
        // for a sample the jitter alone would not allow (a few in a
        // hundred), which keeps the test off the simulator's hot path.
        if increase.is_nan() || increase < self.max_delay_dev_ratio * self.jitter + drift {
            return false;
        }
        let quartile = excess_quartile(self.samples.iter().rev().take(own).map(|s| (s.delay - min_delay) / 2.0).collect());
        let allowed = self.max_delay_dev_ratio * self.jitter.max(quartile) + drift;
        if increase < allowed {
            return false;
        }
        let departure = (new.raw_offset - fit.at(abscissa(epoch, new.correction, origin))).abs();
        departure >= DELAYED_DEPARTURE_SHARE * increase && departure - increase <= allowed
    }

    /// Before any frequency was measured, the slope of `line` (through
    /// the newest `line.n` of `points`) when those points span a poll or
    /// more and the slope departs from the frequency in use by more than
    /// UNMEASURED_SLOPE_SDS standard errors; with `skew`, only if the line
    /// also passes the skew test (MAX_UPDATE_SKEW). Once a frequency was
    /// measured, None.
    fn unmeasured_slope(&self, points: &[Point], line: &LinearFit, skew: bool) -> Option<f64> {
        let sd = line.slope_uncertainty();
        let first = points.len().checked_sub(line.n)?;
        let span = points.last()?.0 - points[first].0;
        (!self.frequency_measured
            && line.n >= 2
            && span >= log2_to_seconds(self.poll)
            && (!skew || sd * t_coefficient(line.n.saturating_sub(2)) <= MAX_UPDATE_SKEW)
            && (line.slope - self.freq).abs() > UNMEASURED_SLOPE_SDS * sd)
            .then_some(line.slope)
    }

    fn two_point_slope(&self, points: &[Point]) -> Option<f64> {
        let ([a, b], [sa, sb]) = (points, [self.samples.front()?, self.samples.back()?]) else { return None };
        self.pair_slope([a, b], [sa, sb], f64::INFINITY)
    }

    /// The most a sample's offset can be off: half its round-trip delay
    /// (three times the jitter when the delay is unknown).
    fn offset_bound(&self, s: &RawSample) -> f64 {
        if s.delay > 0.0 {
            s.delay / 2.0
        } else {
            3.0 * self.jitter
        }
    }

    /// The weighted line's slope through the newest `n` samples (the last
    /// `n` of `points`, which may hold samples older than `self.samples`
    /// but not newer) and the most it can be off when each offset is off by
    /// at most [`Self::offset_bound`], as [`Self::pair_slope`] bounds two: the slope is
    /// `Σ cᵢ yᵢ` with `cᵢ = wᵢ (xᵢ − x̄) / Σ wⱼ (xⱼ − x̄)²`, so its error is
    /// within `Σ |cᵢ| δᵢ/2`.
    fn bounded_slope(&self, points: &[Point], n: usize) -> Option<(f64, f64)> {
        let m = self.samples.len();
        if n < 2 || n > m || n > points.len() {
            return None;
        }
        let window = &points[points.len() - n..];
        let (_, x_mean, sxx) = weighted_spread(window)?;
        let (mut slope, mut bound) = (0.0, 0.0);
        for (p, s) in window.iter().zip(self.samples.range(m - n..)) {
            let c = p.2 * (p.0 - x_mean) / sxx;
            slope += c * p.1;
            bound += c.abs() * self.offset_bound(s);
        }
        (slope.is_finite() && bound.is_finite()).then_some((slope, bound))
    }

    /// Whether the newest of `points` (one for each held sample) departs
    /// from the weighted line through the older ones by no more than the
    /// samples' delays allow: that line's value at the newest abscissa is
    /// `Σ cᵢ yᵢ`, off by at most `Σ |cᵢ| δᵢ/2`, and the newest by `δ/2`
    /// ([`Self::offset_bound`]).
    fn newest_within_delay_bounds(&self, points: &[Point]) -> bool {
        let n = points.len();
        if n < MIN_FIT_SAMPLES || n != self.samples.len() {
            return false;
        }
        let (older, newest) = (&points[..n - 1], &points[n - 1]);
        let Some((weight, x_mean, sxx)) = weighted_spread(older) else { return false };
        let (mut value, mut bound) = (0.0, 0.0);
        for (p, s) in older.iter().zip(&self.samples) {
            let c = p.2 / weight + p.2 * (p.0 - x_mean) * (newest.0 - x_mean) / sxx;
            value += c * p.1;
            bound += c.abs() * self.offset_bound(s);
        }
        let allowed = bound + self.samples.back().map_or(f64::INFINITY, |s| self.offset_bound(s));
        (newest.1 - value).abs() <= allowed
    }

    /// The most the slope between samples `sa` and `sb`, `dx` seconds
    /// apart, can be off: each offset within [`Self::offset_bound`].
    fn pair_bound(&self, [sa, sb]: [&RawSample; 2], dx: f64) -> f64 {
        (self.offset_bound(sa) + self.offset_bound(sb)) / dx
    }

    /// The slope from sample `sa` (at point `a`) to sample `sb` (at `b`),
    /// when it differs from the current frequency by more than their delays
    /// allow ([`Self::two_point_slope`]) and what they allow is under
    /// `max_uncertainty`.
    fn pair_slope(&self, [a, b]: [&Point; 2], [sa, sb]: [&RawSample; 2], max_uncertainty: f64) -> Option<f64> {
        let dx = b.0 - a.0;
        if dx.is_nan() || dx <= 0.0 {
            return None;
        }
        let slope = (b.1 - a.1) / dx;
        let uncertainty = self.pair_bound([sa, sb], dx);
        (slope.is_finite() && (slope - self.freq).abs() > uncertainty && uncertainty < max_uncertainty).then_some(slope)
    }

    /// Chrony's poll rule; `prediction_error` is relative to what the sample
    /// allows (above 1: the line did not predict it).
    fn adjust_poll(&mut self, prediction_error: Option<f64>) {
        let adjust = match prediction_error {
            Some(e) if e > 1.0 => -e.log2(),
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
        let poll = self.poll;
        if self.poll_score >= 1.0 {
            self.poll_score = 0.0;
            self.poll = (self.poll + 1).min(self.config.max_poll);
        } else if self.poll_score <= -1.0 {
            self.poll_score = 0.0;
            self.poll = (self.poll - 1).max(self.config.min_poll);
        }
        if self.poll != poll {
            for span in &mut self.spans {
                span.count = span.count.min(POLL_CHANGE_MEMORY);
            }
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
        if self.delay_outlier(sample) {
            return self.outcome(Action::Ignore(IgnoreReason::Delay));
        }
        if let Some(panic) = self.config.panic_threshold {
            if theta.abs() > secs(panic) && !(initial && self.config.allow_initial_panic) {
                return self.outcome(Action::Panic { offset: sample.offset });
            }
        }
        self.updates = self.updates.saturating_add(1);
        // An offset within a few jitters of the line is noise, not a step or
        // a spike, even above the step threshold: with 100 ms of jitter
        // (chrony's 006-largejitter) STEPT is inside the noise, and ignoring
        // every sample beyond it leaves the frequency unmeasured.
        let threshold = secs(self.config.step_threshold).max(NOISE_STEP_FACTOR * self.noise());
        if theta.abs() > threshold {
            // Start-up: the first updates, and any until a line through the
            // samples gives the frequency (a large frequency error keeps
            // carrying the offset past the threshold until it is known; a
            // line whose slope is too uncertain to be taken gives none).
            // "No line": the held samples gave none at the last update, or
            // there are too few for one. A step clears the last fit but a
            // start-up step keeps the samples, and taking the cleared fit
            // for none let every step allow the next (sources 1 s apart
            // stepped the clock back and forth every few ms).
            let no_line =
                self.fit.is_none() && (!self.fit_cleared_by_step || self.samples.len() < MIN_FIT_SAMPLES);
            if self.updates <= self.config.initial_step_updates || no_line || !self.frequency_measured {
                // The held samples are kept through a start-up step (their
                // line gives the frequency). An offset departing from their
                // line by more than noise can (the threshold, the sample's
                // round trip, JUMP_NOISE_FACTOR times the noise and the
                // line's error there) means a clock was set (this one by
                // someone else, or the reference): a line through the held
                // samples and this one would take the jump for a frequency
                // (chrony's 005-externalstep with `makestep 1 -1`: +1e8 s at
                // 5000 s made it the tick's 10 %). They are moved onto the
                // new timescale by the departure, so their slope stays the
                // frequency, and a later offset back on the old timescale is
                // still a spike, not a step back.
                let jumped = self.fit.and_then(|(origin, fit)| {
                    let new = self.raw_sample(epoch, theta, sample.delay);
                    let x = abscissa(epoch, new.correction, origin);
                    let departure = new.raw_offset - fit.at(x);
                    let noise = threshold.max(JUMP_NOISE_FACTOR * (self.noise() + fit.value_sd(x))).max(new.delay);
                    (departure.abs() > noise).then_some(departure)
                });
                if let Some(d) = jumped {
                    for s in &mut self.samples {
                        s.raw_offset += d;
                    }
                    self.spans = [Span::default(); SPANS];
                }
                return self.step(sample, epoch, now, true);
            }
            let since_good = self.last_good.map_or(f64::INFINITY, |t| secs(epoch - t));
            if since_good < secs(self.config.stepout) {
                self.state = State::Spik;
                let spike = self.raw_sample(epoch, theta, sample.delay);
                push_capped(&mut self.spikes, spike, self.config.max_samples);
                return self.outcome(Action::Ignore(IgnoreReason::Spike));
            }
            return self.step(sample, epoch, now, false);
        }
        self.last_good = Some(epoch);
        self.last_update = Some(epoch);
        self.spikes.clear();
        let new = self.raw_sample(epoch, theta, sample.delay);
        let (raw_offset, correction) = (new.raw_offset, new.correction);
        self.hold(new);
        self.estimate_asymmetry(now);
        let (points, bounds) = self.points(now);
        // The new sample as the fits see it (asymmetry corrected).
        let (offset, weight) = points.last().map_or((raw_offset, 1.0), |p| (p.1, p.2));
        self.score_spans(epoch, correction, offset, weight);
        // How far the new sample missed the last line's prediction, relative
        // to what the sample's delay and the line's uncertainty allow.
        let prediction_error = self.fit.map(|(origin, fit)| {
            let x = abscissa(epoch, correction, origin);
            let bound = bounds.and_then(|b| b.last().copied()).unwrap_or(3.0 * self.jitter);
            (offset - fit.at(x)).abs() / (BOUND_FACTOR * bound + 2.0 * fit.value_sd(x))
        });

        // The line through the raw offsets, as of now. Without one, regress
        // changed nothing and `points` still holds every sample.
        let fits = self.regress(now);
        let fit = fits.map(|(best, _)| best);
        let enough_samples = self.samples.len() >= MIN_FIT_SAMPLES;
        let (estimate, estimate_sd, slope) = match fits {
            Some((f, longest)) => {
                self.jitter = (f.variance * f.n as f64 / f.weight_sum).sqrt().max(self.precision());
                // The frequency is taken from a line whose slope is certain
                // enough (its skew within MAX_UPDATE_SKEW): the span chosen
                // to predict, or else the line through every sample that
                // passes the break tests (as chrony's regression); neither
                // leaves the frequency as it is.
                let trusted = |l: &LinearFit| l.slope_uncertainty() * t_coefficient(l.n.saturating_sub(2)) <= MAX_UPDATE_SKEW;
                // With no line certain enough by its residuals (three
                // samples: Student's t for one degree of freedom is 1,273),
                // the chosen line's slope is still taken when the samples'
                // delays bound its error below both its departure from the
                // frequency in use and that frequency's uncertainty
                // ([`Self::bounded_slope`]): in the lab, a first reply
                // delayed 4.3 ms made a two-point slope 29 ppm off, and a
                // second delayed 9.8 ms left the frequency at 0, 100 ppm
                // off; three samples kept either for two more polls.
                let slope = match [f, longest].into_iter().find(trusted) {
                    Some(l) => {
                        self.frequency_measured = true;
                        self.blend_frequency(l.slope, l.slope_uncertainty(), now)
                    }
                    None => match self.bounded_slope(&points, f.n) {
                        Some((slope, bound)) if (slope - self.freq).abs() > bound && bound < self.frequency_sd(now) => {
                            self.frequency_measured = true;
                            self.freq_sd = f64::INFINITY;
                            self.freq_bound = bound;
                            slope
                        }
                        // Before any frequency was measured, a window a
                        // poll or more long whose slope departs from the
                        // frequency in use by more than
                        // UNMEASURED_SLOPE_SDS standard errors gives it,
                        // though Student's t for one degree of freedom
                        // (636.6) keeps three samples from the skew test:
                        // with 0.6 s each way (chrony's 120, seed 1) the
                        // delays bound nothing, and the 100 ppm error ran
                        // a poll longer than chronyd's.
                        _ => match self.unmeasured_slope(&points, &longest, false) {
                            Some(slope) => {
                                self.frequency_measured = true;
                                self.freq_sd = f64::INFINITY;
                                self.freq_bound = f64::INFINITY;
                                slope
                            }
                            None => self.freq,
                        },
                    },
                };
                // The fitted offset's uncertainty: the residuals' pooled
                // with a prior from the samples' error bounds (PRIOR_DOF),
                // less what the asymmetry correction takes out of them.
                //
                // The level now is the line's value, unless the frequency in
                // use is known better than the line's slope: then the line's
                // weighted mean carried to now at that frequency. A window
                // whose weight is all in a burst of seconds long ago (the
                // rest of its samples delayed 150 ms, chrony's 126-burst)
                // has a slope uncertain by tens of ppm, and its value two
                // minutes on was milliseconds off.
                let (level, value_var, leverage) = {
                    let freq_var = self.frequency_sd(now).powi(2);
                    let own = f.value_leverage(0.0);
                    let carried = 1.0 / f.weight_sum + f.x_mean * f.x_mean * freq_var;
                    // How many weighted spreads now lies beyond the weight.
                    let reach = f.x_mean * f.x_mean * f.weight_sum / f.sxx;
                    // A burst: the weight spread over a quarter poll at most.
                    let burst = 4.0 * (f.sxx / f.weight_sum).sqrt() < log2_to_seconds(self.poll);
                    if burst && reach > CARRIED_LEVEL_REACH * CARRIED_LEVEL_REACH && CARRIED_LEVEL_GAIN * carried < own {
                        (f.y_mean - slope * f.x_mean, f.variance / f.weight_sum + f.x_mean * f.x_mean * freq_var, carried)
                    } else {
                        (f.at(0.0), f.value_sd(0.0).powi(2), own)
                    }
                };
                let bounded = BOUNDED_SD_FACTOR * (1.0 - 2.0 * self.asymmetry.abs()) * leverage.sqrt();
                let dof = f.n.saturating_sub(2) as f64;
                let pooled = ((dof * value_var + PRIOR_DOF * bounded * bounded) / (dof + PRIOR_DOF)).sqrt();
                (level, pooled, slope)
            }
            None if enough_samples => {
                // Enough samples, but no window passes the break tests: the
                // newest sample, within its delay bound, left every line
                // through the older ones (the clock wandered through a long
                // gap of lost polls). It alone gives the level, at the
                // current frequency; the line returns as newer samples
                // follow it. A mean over the old samples would take out a
                // fraction of the departure per poll.
                //
                // The newest two samples give the slope when all of these
                // hold: a frequency was taken from samples before (a first
                // one from them is no better than none: at start-up in
                // chrony's 002-largenetwork a stratum-3 server's first,
                // from stratum-2 servers still slewing, 64 s apart, was
                // -300 ppm against the true -100); they lie a poll or more
                // apart (two sources a second and 4 ms apart gave
                // -4,600 ppm there, then steps); their slope differs from
                // the frequency in use by more than their delays allow;
                // and what they allow is under that frequency's
                // uncertainty (a frequency a line measured is kept: one
                // departing sample is then wander or a phase jump).
                // Otherwise an early two-point slope with a fair error
                // (-91 against -100 ppm over 17 s, a server answering once
                // in 128 s) is kept until a line returns, and the error
                // runs on (chrony's 135, seed 7: 1.3 ms).
                //
                // Before any frequency was measured, the line through all
                // the held samples, a poll or more long, gives it when its
                // skew passes and it departs from the frequency in use by
                // more than UNMEASURED_SLOPE_SDS standard errors: that
                // frequency is then a guess (0, or a drift file's),
                // and the break tests' bounds can be too tight for a few
                // samples. Their floor comes from the delays' excess over
                // the smallest held, and three round trips that agree
                // within 10 us can each carry 200 us of jitter split
                // differently between the legs (1.1 s each way in chrony's
                // 120-selectoptions, seed 7: the 100 ppm error ran 260 s).
                //
                // A frequency some samples' delays bounded (a first
                // two-point slope) gives way to the line through all the
                // held samples when their delays bound that line's slope
                // more tightly: with 1 ms of jitter each way the break
                // tests' bounds for three to five samples are too tight
                // (the least delayed is taken as the path's minimum) and
                // a first two-point slope 19 ppm off ran three more polls
                // (1.9 ms) while the three-sample line was 0.6 ppm off.
                // Only while the newest sample could lie on a line with the
                // older ones, each offset within half its round trip (a
                // jump or a wander after a gap: the newest alone, below).
                let n = self.samples.len();
                let bounded = (self.frequency_measured
                    && self.freq_sd.is_infinite()
                    && self.freq_bound.is_finite()
                    && n >= MIN_FIT_SAMPLES
                    && self.newest_within_delay_bounds(&points))
                .then(|| self.bounded_slope(&points, n))
                .flatten()
                .filter(|&(_, bound)| bound < self.freq_bound);
                let slope = match &points[..] {
                    _ if bounded.is_some() => bounded.map(|(slope, bound)| {
                        self.freq_bound = bound;
                        slope
                    }),
                    [_, _, ..] if !self.frequency_measured => LinearFit::new(&points)
                        .and_then(|l| self.unmeasured_slope(&points, &l, true))
                        .inspect(|_| {
                            self.frequency_measured = true;
                            self.freq_bound = f64::INFINITY;
                        }),
                    [.., a, b] if self.frequency_measured && b.0 - a.0 >= log2_to_seconds(self.poll) => self
                        .pair_slope([a, b], [&self.samples[n - 2], &self.samples[n - 1]], self.frequency_sd(now))
                        .inspect(|_| self.freq_bound = self.pair_bound([&self.samples[n - 2], &self.samples[n - 1]], b.0 - a.0)),
                    _ => None,
                };
                let slope = slope.map_or(self.freq, |slope| {
                    self.freq_sd = f64::INFINITY;
                    slope
                });
                // The level: that line's, when it gave the slope (a single
                // sample carries its whole jitter); else the newest sample's.
                let level = match bounded.and_then(|_| LinearFit::new(&points)) {
                    Some(line) => line.at(0.0),
                    None => points.last().map_or(0.0, |p| p.1 - slope * p.0),
                };
                (level, f64::INFINITY, slope)
            }
            None => {
                // Too few samples for a slope: the current frequency is the
                // slope, the level their weighted mean.
                let slope = match self.two_point_slope(&points) {
                    Some(slope) => {
                        self.freq_sd = f64::INFINITY;
                        self.freq_bound = match (&points[..], self.samples.front(), self.samples.back()) {
                            ([a, b], Some(sa), Some(sb)) => self.pair_bound([sa, sb], b.0 - a.0),
                            _ => f64::INFINITY,
                        };
                        self.frequency_measured = true;
                        slope
                    }
                    None => self.freq,
                };
                let w: f64 = points.iter().map(|p| p.2).sum();
                let level = points.iter().map(|p| (p.1 - slope * p.0) * p.2).sum::<f64>() / w;
                (level, f64::INFINITY, slope)
            }
        };
        self.window = fit.map_or(self.samples.len(), |f| f.n);
        self.fit = fit.map(|f| ((now, self.correction_at(now)), f));
        self.fit_cleared_by_step = false;
        self.offset_sd = if estimate_sd.is_finite() { estimate_sd } else { 0.0 };

        let max_frequency = self.config.max_frequency;
        let frequency = slope.clamp(-max_frequency, max_frequency);
        self.freq = frequency;
        let phase = (estimate - self.correction_at(now)).clamp(-PANICT, PANICT);
        let interval = log2_to_seconds(self.poll);
        // chrony's slew: linear, over `ratio · σ̂ · interval / |phase|`
        // (at least a second, at most 8 intervals); a phase far above the
        // fit's uncertainty goes at once, one of the size of the noise slowly.
        let duration = if phase == 0.0 || !estimate_sd.is_finite() {
            MIN_SLEW_DURATION
        } else {
            (self.config.correction_ratio * estimate_sd * interval / phase.abs())
                .clamp(MIN_SLEW_DURATION, 8.0 * interval)
        };
        // The tick's headroom next to the frequency (the clock's own bound).
        let headroom = (MAX_TICK_RATE + MAXFREQ - frequency.abs()).max(0.0);
        let rate = (phase.abs() / duration).min(self.config.max_slew_rate).min(headroom);
        let base = self.correction_at(now);
        self.push_segment(Segment { start: now, base, freq: frequency, phase, rate });

        self.state = if fit.is_some() { State::Sync } else { State::Freq };
        if fit.is_some() || enough_samples {
            self.adjust_poll(prediction_error);
        }
        self.outcome(Action::Slew { phase: dur(phase), frequency, time_constant: NtpDuration::ZERO, max_rate: Some(rate) })
    }

    /// Yes: the regression weighs samples by their delay itself, and the
    /// clock filter would hold back most of them at long polls.
    fn delay_outlier(&self, sample: &DisciplineSample) -> bool {
        self.delayed_outlier(sample.time, secs(sample.offset), sample.delay)
    }

    fn source_changed(&mut self, max_delay_dev_ratio: f64) {
        self.source_samples = 0;
        self.max_delay_dev_ratio = max_delay_dev_ratio;
    }

    fn wants_every_sample(&self) -> bool {
        true
    }

    /// Keeps `history` as samples when none are held (a fresh start, or
    /// after a step that dropped them), each with the correction in force at
    /// its time; no action, no update counted.
    fn prime(&mut self, history: &[DisciplineSample]) {
        if !self.samples.is_empty() {
            return;
        }
        let mut last = None;
        for sample in history {
            if last.is_some_and(|t| sample.time <= t) {
                continue;
            }
            last = Some(sample.time);
            self.hold(self.raw_sample(sample.time, secs(sample.offset), sample.delay));
        }
    }

    /// The samples and the correction history are in local time, which
    /// jumped back: they are dropped, as after a step that does not keep them,
    /// and the corrections go on from `now` at the frequency in use. The
    /// next offset beyond the step threshold is stepped at once (no held
    /// line calls it a spike: the clock, not the reference, moved).
    fn clock_went_back(&mut self, now: NtpTime) {
        let base = self.last_update.map_or(0.0, |t| self.correction_at(t));
        self.drop_samples(now, base);
        self.fit = None;
        self.fit_cleared_by_step = true;
        self.window = 0;
        self.last_update = Some(now);
        self.last_good = Some(now);
    }

    fn pending_phase(&self, t: NtpTime) -> NtpDuration {
        let Some(s) = self.segments.iter().rev().find(|s| s.start <= t) else {
            return NtpDuration::ZERO;
        };
        let r = oscillator_span(secs(t - s.start), s);
        dur(s.phase - segment_slewed(s, r))
    }

    fn frequency_uncertainty(&self) -> f64 {
        // Before a line through the samples gives the frequency, the
        // oscillator may be anywhere in RFC 5905's tolerance (MAXFREQ);
        // after, the slope's standard error, as chrony ages a source's
        // samples at its estimated skew. Never less than PHI.
        // (A stored fit has a spread in time: LinearFit::new refuses none.)
        let bound = match &self.fit {
            Some((_, f)) => f.slope_uncertainty(),
            None => MAXFREQ,
        };
        if bound.is_nan() {
            MAXFREQ
        } else {
            bound.clamp(PHI, MAXFREQ)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NtpClock;
    use crate::wire::v4::LeapIndicator;

    fn t0() -> NtpTime {
        NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn at(s: f64) -> NtpTime {
        t0() + dur(s)
    }

    /// xorshift64*: a deterministic noise source for the tests.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn exponential(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.uniform()).ln()
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-300), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    // ---- The fit --------------------------------------------------------------

    #[test]
    fn a_noiseless_line_is_recovered_exactly() {
        let points: Vec<_> = (0..20).map(|i| {
            let x = -1000.0 + 37.0 * f64::from(i);
            (x, 0.0123 - 7.5e-6 * x, 1.0 + f64::from(i % 3))
        }).collect();
        let fit = LinearFit::new(&points).unwrap();
        assert!((fit.at(0.0) - 0.0123).abs() < 1e-15, "{}", fit.at(0.0));
        assert!((fit.slope + 7.5e-6).abs() < 1e-17, "{}", fit.slope);
        assert!(fit.variance < 1e-28 && fit.value_sd(0.0) < 1e-13);
        let residuals: Vec<f64> = points.iter().map(|p| p.1 - fit.at(p.0)).collect();
        assert!(residuals.iter().all(|r| r.abs() < 1e-15));
        assert!(LinearFit::new(&points[..1]).is_none(), "one point has no slope");
        assert!(LinearFit::new(&[(1.0, 2.0, 1.0), (1.0, 3.0, 1.0)]).is_none(), "no spread in x");
    }

    #[test]
    fn noisy_samples_give_estimates_within_their_standard_errors() {
        // 64 samples 16 s apart, white noise of 50 µs, 200 trials: the
        // estimates must scatter as the fit's own standard errors say.
        let mut rng = Rng(7);
        let (mut z_offset, mut z_slope) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let points: Vec<_> = (0..64).map(|i| {
                let x = -16.0 * f64::from(i);
                (x, 1e-3 + 2e-6 * x + 50e-6 * rng.normal(), 1.0)
            }).collect();
            let fit = LinearFit::new(&points).unwrap();
            z_offset.push((fit.at(0.0) - 1e-3) / fit.value_sd(0.0));
            z_slope.push((fit.slope - 2e-6) / fit.slope_sd());
            // The standard errors are what theory gives for 64 points.
            assert!((fit.variance.sqrt() - 50e-6).abs() < 15e-6, "{}", fit.variance.sqrt());
            assert!(fit.value_sd(0.0) < 30e-6 && fit.slope_sd() < 2e-7);
        }
        for z in [&z_offset, &z_slope] {
            let rms = (z.iter().map(|z| z * z).sum::<f64>() / z.len() as f64).sqrt();
            assert!((0.8..1.2).contains(&rms), "normalized errors RMS {rms}");
            assert!(z.iter().all(|z| z.abs() < 4.5));
        }
    }

    #[test]
    fn the_runs_test_accepts_noise_and_refuses_a_trend() {
        assert_eq!(runs(&[1.0, 2.0, -1.0, -2.0, 3.0]), 3);
        assert_eq!(runs(&[]), 0);
        let alternating: Vec<f64> = (0..30).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(runs_test_passes(&alternating));
        // Residuals of a line through a parabola: + - +, three long runs.
        let bowl: Vec<f64> = (0..30).map(|i| (f64::from(i) - 14.5).powi(2) - 75.0).collect();
        assert!(!runs_test_passes(&bowl));
        let mut rng = Rng(3);
        let mut refused = 0;
        for _ in 0..500 {
            let noise: Vec<f64> = (0..40).map(|_| rng.normal()).collect();
            refused += usize::from(!runs_test_passes(&noise));
        }
        assert!(refused < 25, "white noise refused {refused} times in 500");
    }

    // ---- The window and the span ------------------------------------------------

    /// A discipline holding `offsets` as raw samples 10 s apart (the last at
    /// 90 s for ten), each with `delay` s of round trip and no correction.
    fn holding(offsets: &[f64], delay: f64) -> RegressionDiscipline {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        for (i, y) in offsets.iter().enumerate() {
            d.samples.push_back(RawSample { time: at(10.0 * i as f64), raw_offset: *y, correction: 0.0, delay });
        }
        d
    }

    #[test]
    fn the_window_keeps_residuals_within_one_and_a_half_bounds_that_pass_the_runs_test() {
        // Equal delays: every bound is the precision floor, 2^-20 s (0.95 µs).
        // Offsets alternating ±1 µs leave residuals of 0.73-1.21 µs: beyond
        // one bound, within 1.5, and changing sign at every sample.
        let alternating: Vec<f64> = (0..10).map(|i| if i % 2 == 0 { 1e-6 } else { -1e-6 }).collect();
        let mut d = holding(&alternating, 200e-6);
        assert_eq!(d.regress(at(90.0)).map(|(_, longest)| longest.n), Some(10));
        assert_eq!(d.samples(), 10);
        // An oldest sample 10 µs off leaves a residual of 6.6 µs (the runs
        // still alternate enough): it is dropped, for its bound alone.
        let mut outlier = alternating.clone();
        outlier[0] = 1e-5;
        let mut d = holding(&outlier, 200e-6);
        assert_eq!(d.regress(at(90.0)).map(|(_, longest)| longest.n), Some(9));
        assert_eq!(d.samples(), 9, "the refused sample is dropped");
        // A bowl of 30 samples is a trend the runs test refuses, but its
        // residuals (0.14 µs at most) are within the precision: kept whole.
        let bowl: Vec<f64> = (0..30).map(|i| 1e-9 * (f64::from(i) - 14.5).powi(2)).collect();
        let mut d = holding(&bowl, 200e-6);
        assert_eq!(d.regress(at(290.0)).map(|(_, longest)| longest.n), Some(30));
    }

    #[test]
    fn the_line_is_the_best_predicting_spans_and_for_a_noiseless_source_the_longest_near_best() {
        // Ten samples on an exact line, 10 s apart: the spans of 32, 45 and
        // 64 s (k = 0, 1, 2) hold the last 4, 5 and 7, those of 90 s and
        // more all 10 (the longest window).
        let line: Vec<f64> = (0..10).map(|i| 1e-6 * f64::from(i)).collect();
        let best_n = |scores: &[(usize, f64)]| {
            let mut d = holding(&line, 0.0);
            for &(k, score) in scores {
                d.spans[k].score = Some(score);
            }
            let (best, longest) = d.regress(at(90.0)).unwrap();
            assert_eq!(longest.n, 10);
            best.n
        };
        // Scores above NOISELESS_SCORE (0.01): the lowest wins, the longer
        // of two equal ones.
        assert_eq!(best_n(&[(0, 0.02), (1, 0.0201), (2, 0.02), (5, 0.5)]), 7);
        assert_eq!(best_n(&[(0, 0.02), (1, 0.0199), (2, 0.0201)]), 5);
        // Exactly NOISELESS_SCORE is not noiseless: no tolerance.
        assert_eq!(best_n(&[(0, 0.01), (1, 0.0105)]), 4);
        // Below it, a score within 10 % of the best plus 1e-4 is as good:
        // 0.001 · 1.1 + 0.0001 = 0.0012.
        assert_eq!(best_n(&[(0, 0.001), (1, 0.00119), (2, 0.00121), (5, 0.5)]), 5);
        // Without any score the longest window gives the line.
        assert_eq!(best_n(&[]), 10);
    }

    // ---- One update at a time -------------------------------------------------------

    /// A sample of `offset` s measured at `t` s and handled at `now` s, with
    /// `delay` s of round trip.
    fn sample_at(offset: f64, t: f64, now: f64, delay: f64) -> DisciplineSample {
        DisciplineSample { offset: dur(offset), time: at(t), now: at(now), delay: dur(delay) }
    }

    #[test]
    fn the_panic_threshold_refuses_larger_offsets_except_a_first_update_allowed_to_step() {
        let cfg = RegressionConfig { panic_threshold: Some(dur(10.0)), allow_initial_panic: true, ..RegressionConfig::default() };
        let mut d = RegressionDiscipline::new(cfg, None);
        let u = d.update_sample(&sample_at(20.0, 0.0, 0.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "the first update may step: {:?}", u.action);
        let u = d.update_sample(&sample_at(10.0, 64.0, 64.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "exactly the threshold is no panic: {:?}", u.action);
        let u = d.update_sample(&sample_at(20.0, 128.0, 128.0, 200e-6));
        assert!(matches!(u.action, Action::Panic { .. }), "later updates may not: {:?}", u.action);
        // Without the allowance even the first update panics.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let u = d.update_sample(&sample_at(2000.0, 0.0, 0.0, 200e-6));
        assert!(matches!(u.action, Action::Panic { .. }), "{:?}", u.action);
        assert_eq!(d.updates, 0, "a panic changes nothing");
    }

    #[test]
    fn an_offset_of_exactly_the_step_threshold_is_slewed() {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let u = d.update_sample(&sample_at(STEPT, 0.0, 0.0, 200e-6));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
    }

    #[test]
    fn the_slew_starts_when_the_sample_is_handled_not_at_its_epoch() {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let u = d.update_sample(&sample_at(0.1, 0.0, 0.5, 200e-6));
        let Action::Slew { phase, .. } = u.action else { panic!("{:?}", u.action) };
        assert_eq!(d.pending_phase(at(0.5)), phase, "nothing of it is done when it is commanded");
    }

    #[test]
    fn a_slew_inside_an_exchange_is_taken_out_of_its_offset_and_its_round_trip() {
        // A 0.1 s offset at 0 s is slewed from 0.5 s through the tick
        // (1/12 s/s per oscillator second): done 1.3 local seconds later.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let _ = d.update_sample(&sample_at(0.1, 0.0, 0.5, 200e-6));
        let slewed = |t: f64| d.correction_at(at(t));
        assert!((slewed(1.8) - slewed(0.5) - 0.1).abs() < 1e-9, "{}", slewed(1.8));
        // An exchange from 0.3 s to 1.5 s (1.2 s round trip, midpoint
        // 0.9 s) measured the mean of the errors at its ends; the local clock
        // timed its round trip 77 ms long (the slew's first local second).
        let (correction, delay) = d.exchange(at(0.9), dur(1.2));
        let ends = (slewed(0.3) + slewed(1.5)) / 2.0;
        assert!((correction - ends).abs() < 1e-9, "{correction} vs {ends}");
        assert!((correction - slewed(0.9)).abs() > 0.005, "not the midpoint's: {correction} vs {}", slewed(0.9));
        assert!((delay - (1.2 - (slewed(1.5) - slewed(0.3)))).abs() < 1e-9 && (delay - 1.2).abs() > 0.07, "{delay}");
        // Outside any slew both are as measured.
        let (correction, delay) = d.exchange(at(100.0), dur(200e-6));
        assert!((correction - slewed(100.0)).abs() < 1e-9 && (delay - 200e-6).abs() < 1e-9, "{correction} {delay}");
    }

    /// A discipline with `cfg` after four samples of zero offset 64 s apart
    /// (the last at 192 s): a line, and the frequency measured.
    fn on_a_line(cfg: RegressionConfig) -> RegressionDiscipline {
        let mut d = RegressionDiscipline::new(cfg, None);
        for t in [0.0, 64.0, 128.0, 192.0] {
            let u = d.update_sample(&sample_at(0.0, t, t, 200e-6));
            assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        }
        assert!(d.frequency_measured && d.fit.is_some());
        d
    }

    #[test]
    fn after_start_up_an_offset_beyond_the_step_threshold_is_a_spike_until_the_stepout_then_a_step() {
        let mut d = on_a_line(RegressionConfig::default());
        // The fourth update had a line and a measured frequency: no start-up.
        for t in [256.0, 192.0 + 899.0] {
            let u = d.update_sample(&sample_at(0.5, t, t, 200e-6));
            assert_eq!((u.action, u.state), (Action::Ignore(IgnoreReason::Spike), State::Spik), "at {t} s");
        }
        // WATCH (900 s) after the last good sample: a step. The samples from
        // before the jump are dropped; the two spikes, on the new timescale
        // with the stepping sample, are held with it.
        let u = d.update_sample(&sample_at(0.5, 1092.0, 1092.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert_eq!(d.samples(), 3);
        assert!(d.frequency().abs() < 1e-9, "their line is level: {}", d.frequency());
        // The next sample, on the new timescale, is slewed onto their line.
        let u = d.update_sample(&sample_at(0.0, 1156.0, 1156.0, 200e-6));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        assert_eq!(d.samples(), 4);
    }

    #[test]
    fn a_stepout_step_holds_only_the_newest_spikes_that_agree_with_it() {
        let mut d = on_a_line(RegressionConfig::default());
        // A spike of -0.5 s, then +0.5 s ones: only the run agreeing with
        // the stepping sample (within the step threshold) is held.
        for (t, offset) in [(256.0, -0.5), (320.0, 0.5), (1091.0, 0.5)] {
            let u = d.update_sample(&sample_at(offset, t, t, 200e-6));
            assert_eq!(u.action, Action::Ignore(IgnoreReason::Spike), "at {t} s");
        }
        let u = d.update_sample(&sample_at(0.5 + 0.1, 1092.0, 1092.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert_eq!(d.samples(), 3);
        // None agreeing: the samples go, and without a line the next large
        // offset steps at once again.
        let mut d = on_a_line(RegressionConfig::default());
        let _ = d.update_sample(&sample_at(-0.5, 256.0, 256.0, 200e-6));
        let u = d.update_sample(&sample_at(0.5, 1092.0, 1092.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert_eq!(d.samples(), 0);
        let u = d.update_sample(&sample_at(0.5, 1156.0, 1156.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        // A good sample between spikes clears them.
        let mut d = on_a_line(RegressionConfig::default());
        let _ = d.update_sample(&sample_at(0.5, 256.0, 256.0, 200e-6));
        let u = d.update_sample(&sample_at(0.0, 320.0, 320.0, 200e-6));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        assert!(d.spikes.is_empty());
    }

    #[test]
    fn a_start_up_step_does_not_let_the_next_sources_opposite_offset_step_back_at_once() {
        // A system peer whose clock jumped 1 s is stepped to within the
        // first updates, its samples kept; the next sample, from another
        // source still on true time, says -1 s. It is a spike: stepping
        // back (no line yet, only because the step cleared it) and forth
        // again made a step every 2-6 ms for 28 s in a three-server
        // scenario, every step re-polling all three.
        let mut d = on_a_line(RegressionConfig { initial_step_updates: 5, ..RegressionConfig::default() });
        let u = d.update_sample(&sample_at(1.0, 256.0, 256.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "the fifth update: {:?}", u.action);
        assert!(d.samples() >= MIN_FIT_SAMPLES, "a start-up step keeps the samples");
        for t in [256.002, 256.004, 272.0] {
            let u = d.update_sample(&sample_at(-1.0, t, t, 2e-3));
            assert_eq!(u.action, Action::Ignore(IgnoreReason::Spike), "at {t} s");
        }
    }

    #[test]
    fn when_the_held_samples_gave_no_line_a_large_offset_still_steps_at_once() {
        // After start-up, with a line: a sample 50 ms off (below the step
        // threshold) leaves every window, so the update has no line, and
        // not because of a step. The next offset beyond the threshold is
        // stepped at once, as before the step-war fix (chrony's 005 seeds
        // 3 and 9 recover at 262-266 s this way, not at the stepout).
        let mut d = on_a_line(RegressionConfig::default());
        let u = d.update_sample(&sample_at(0.05, 256.0, 256.0, 200e-6));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        assert!(d.fit.is_none() && d.samples() >= MIN_FIT_SAMPLES, "no window passes, samples held");
        let u = d.update_sample(&sample_at(0.5, 320.0, 320.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
    }

    #[test]
    fn within_the_first_updates_an_offset_beyond_the_step_threshold_steps_even_with_a_line() {
        let mut d = on_a_line(RegressionConfig { initial_step_updates: 5, ..RegressionConfig::default() });
        let u = d.update_sample(&sample_at(0.5, 256.0, 256.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "the fifth update: {:?}", u.action);
    }

    #[test]
    fn a_start_up_step_off_the_held_line_moves_the_samples_with_it_and_keeps_the_frequency() {
        // `makestep 1 -1`: every update may step. Someone sets the clock
        // 1e5 s ahead; a line through the held samples and this one would
        // make the jump a frequency (1e5 s over 64 s, clamped at the tick's
        // 10 %). The held samples move by the jump: the frequency stays.
        let cfg = RegressionConfig {
            initial_step_updates: u32::MAX,
            step_threshold: dur(1.0),
            panic_threshold: None,
            ..RegressionConfig::default()
        };
        let mut d = on_a_line(cfg);
        let (frequency, held) = (d.freq, d.samples());
        let u = d.update_sample(&sample_at(-1e5, 256.0, 256.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert!((d.freq - frequency).abs() < 1e-9, "{} vs {frequency}", d.freq);
        assert_eq!(d.samples(), held + 1, "kept, on the new timescale");
        // Back on line: the next sample slews.
        let u = d.update_sample(&sample_at(0.0, 320.0, 320.0, 200e-6));
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
        assert!((d.freq - frequency).abs() < 1e-9, "{} vs {frequency}", d.freq);
    }

    #[test]
    fn when_the_clock_went_back_the_samples_go_the_frequency_stays_and_the_next_large_offset_steps() {
        let mut d = on_a_line(RegressionConfig::default());
        let frequency = d.freq;
        d.clock_went_back(at(-1000.0));
        assert_eq!((d.samples(), d.freq, d.last_update()), (0, frequency, Some(at(-1000.0))));
        let u = d.update_sample(&sample_at(1000.0, -936.0, -936.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert_eq!(d.freq, frequency);
    }

    #[test]
    fn the_jitter_is_the_fits_rms_residual_and_a_phase_is_slewed_over_ratio_times_its_uncertainty() {
        // Ten samples alternating ±1 µs, 10 s apart, equal delays (equal
        // weights); the tenth handled by update_sample at the default poll.
        let alternating: Vec<f64> = (0..10).map(|i| if i % 2 == 0 { 1e-6 } else { -1e-6 }).collect();
        let mut d = holding(&alternating[..9], 200e-6);
        let interval = log2_to_seconds(d.poll());
        let u = d.update_sample(&sample_at(alternating[9], 90.0, 90.0, 200e-6));
        let Action::Slew { phase, max_rate: Some(rate), .. } = u.action else { panic!("{:?}", u.action) };
        let points: Vec<Point> = alternating.iter().enumerate().map(|(i, y)| (10.0 * i as f64 - 90.0, *y, 1.0)).collect();
        let fit = LinearFit::new(&points).unwrap();
        let squares: f64 = points.iter().map(|p| (p.1 - fit.at(p.0)).powi(2)).sum();
        assert!((d.jitter - (squares / 8.0).sqrt()).abs() < 1e-10, "jitter {} vs {}", d.jitter, (squares / 8.0).sqrt());
        // σ̂: the residuals' standard error (8 degrees of freedom) pooled
        // with three times what the samples' bounds (all the precision
        // floor here) give, counted as 4 degrees of freedom.
        let floor = log2_to_seconds(RegressionConfig::default().local_precision);
        let weighted: Vec<Point> = points.iter().map(|p| (p.0, p.1, 1.0 / (floor * floor))).collect();
        let prior = 3.0 * LinearFit::new(&weighted).unwrap().weighted_value_error(0.0);
        let expected = ((8.0 * fit.value_sd(0.0).powi(2) + 4.0 * prior * prior) / 12.0).sqrt();
        assert!(expected > fit.value_sd(0.0), "the bounds' prior raises it here");
        assert!((secs(d.offset_sd()) - expected).abs() < 1e-9, "{:?} vs {expected}", d.offset_sd());
        assert_eq!(d.window(), 10, "no scores yet: the longest window");
        assert!((secs(phase) - fit.at(0.0)).abs() < 1e-9, "{phase:?} vs {}", fit.at(0.0));
        // chrony's rule: over 1.5 · σ̂ · interval / |phase| within [1 s, 8
        // intervals].
        let duration = (1.5 * d.offset_sd * interval / secs(phase).abs()).clamp(1.0, 8.0 * interval);
        assert!(duration > 100.0, "{duration}");
        assert!((rate * duration / secs(phase).abs() - 1.0).abs() < 1e-3, "rate {rate}, {}", secs(phase).abs() / duration);
    }

    #[test]
    fn a_fit_whose_residuals_are_smaller_than_its_bounds_allow_is_as_uncertain_as_the_bounds_say() {
        // Three samples nearly on a line by chance, the newest with a large
        // delay: its bound (half the excess delay) makes the fitted offset
        // uncertain, and the phase goes over many seconds, not at once.
        let mut d = holding(&[0.0, 1e-6], 200e-6);
        let u = d.update_sample(&sample_at(150e-6, 20.0, 20.0, 700e-6));
        let Action::Slew { phase, max_rate: Some(rate), .. } = u.action else { panic!("{:?}", u.action) };
        let sd = secs(d.offset_sd());
        assert!(sd > 50e-6, "the 250 us bound of the newest sample counts: {sd}");
        let duration = secs(phase).abs() / rate;
        assert!(duration > 10.0 * MIN_SLEW_DURATION, "slewed over {duration} s");
        assert!(d.offset_sd >= d.fit.unwrap().1.value_sd(0.0));
    }

    #[test]
    fn a_slew_leaves_the_tick_room_for_the_frequency() {
        // 5 % of frequency: the tick (10 % + 500 ppm) has 5.05 % left, less
        // than chrony's 8.3 % slew rate.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), Some(0.05));
        let u = d.update_sample(&sample_at(0.1, 0.0, 0.0, 200e-6));
        let Action::Slew { frequency, max_rate, .. } = u.action else { panic!("{:?}", u.action) };
        assert_eq!(frequency, 0.05);
        assert_eq!(max_rate, Some(MAX_TICK_RATE + MAXFREQ - 0.05));
    }

    #[test]
    fn a_sample_off_every_line_gives_the_level_now_at_the_current_frequency() {
        // Nine samples on the zero line at 10 ppm, the tenth 1 ms off (far
        // beyond 1.5 bounds of any window through it), handled 10 s after
        // its epoch: the level now is its offset plus 10 s at 10 ppm, a
        // frequency known to 0.1 ppm.
        let mut d = holding(&[0.0; 9], 200e-6);
        d.freq = 1e-5;
        d.freq_sd = 1e-7;
        d.freq_time = Some(at(0.0));
        d.frequency_measured = true;
        let u = d.update_sample(&sample_at(1e-3, 90.0, 100.0, 200e-6));
        assert_eq!(d.fit, None, "no window passes");
        let Action::Slew { phase, frequency, .. } = u.action else { panic!("{:?}", u.action) };
        assert!((secs(phase) - (1e-3 + 1e-5 * 10.0)).abs() < 1e-9, "{phase:?}");
        assert_eq!(frequency, 1e-5);
    }

    #[test]
    fn a_sample_off_every_line_gives_the_slope_from_the_one_before_when_no_line_measured_the_frequency() {
        // As above, but the 10 ppm came from two samples (taken, but
        // uncertain) and the poll is 8 s: the newest two, a poll apart or more, give
        // 100 ppm, beyond the 20 ppm their delays allow, and that slope
        // carries the level to now.
        let mut d = holding(&[0.0; 9], 200e-6);
        d.freq = 1e-5;
        d.frequency_measured = true;
        d.poll = 3;
        assert_eq!(d.freq_sd, f64::INFINITY);
        let u = d.update_sample(&sample_at(1e-3, 90.0, 100.0, 200e-6));
        assert_eq!(d.fit, None, "no window passes");
        let Action::Slew { phase, frequency, .. } = u.action else { panic!("{:?}", u.action) };
        assert!((frequency - 1e-4).abs() < 1e-10, "{frequency}");
        assert!((secs(phase) - (1e-3 + 1e-4 * 10.0)).abs() < 1e-9, "{phase:?}");
        // Within their delays of the frequency in use, under a poll apart
        // (10 s at 16 s), or with no frequency taken before, the newest two
        // change nothing.
        for (freq, poll, measured) in [(9e-5, 3, true), (1e-5, 4, true), (1e-5, 3, false)] {
            let mut d = holding(&[0.0; 9], 200e-6);
            d.freq = freq;
            d.poll = poll;
            d.frequency_measured = measured;
            let u = d.update_sample(&sample_at(1e-3, 90.0, 100.0, 200e-6));
            let Action::Slew { frequency, .. } = u.action else { panic!("{:?}", u.action) };
            assert_eq!(frequency, freq, "poll {poll}");
        }
    }

    #[test]
    fn a_reply_delayed_milliseconds_among_the_first_three_does_not_keep_the_frequency_wrong_through_the_third() {
        // The lab's 30-minute chrony-default run, seed 1: a clock 0.1 s and
        // 100 ppm fast; the first reply took 4.3 ms (its offset 2 ms off),
        // the next two 0.5 ms, 66-68 s apart. The first two give -128.7 ppm
        // (within the 36 ppm their delays allow of -100); the line through
        // three is not certain enough by its residuals (one degree of
        // freedom), but the delays bound its slope to a few ppm of -100.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        assert_eq!(d.poll, 6);
        let raw = |t: f64| -(0.1 + 1e-4 * t);
        let mut frequency = 0.0;
        for (t, error, delay) in [(0.0, 1.95e-3, 4.298e-3), (68.0, 0.0, 549e-6), (134.0, 0.0, 412e-6)] {
            let theta = raw(t) + error - d.correction_at(at(t));
            let u = d.update_sample(&sample_at(theta, t, t, delay));
            let Action::Slew { frequency: f, .. } = u.action else { panic!("{:?}", u.action) };
            frequency = f;
        }
        assert!((frequency + 1e-4).abs() < 2e-6, "{frequency}");
        // A second reply delayed 9.8 ms (4.6 ms off) says nothing of the
        // frequency, which stays 0; the third, 0.45 ms, with the first
        // bounds the line's slope to 3 ppm: -100 ppm is taken.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        for (t, error, delay, want) in [(0.0, 0.0, 370e-6, 0.0), (67.8, 4.6e-3, 9.771e-3, 0.0), (133.7, 0.0, 453e-6, -1e-4)] {
            let theta = raw(t) + error - d.correction_at(at(t));
            let u = d.update_sample(&sample_at(theta, t, t, delay));
            let Action::Slew { frequency, .. } = u.action else { panic!("{:?}", u.action) };
            assert!((frequency - want).abs() < 3e-6, "at {t} s: {frequency}");
        }
    }

    #[test]
    fn a_first_two_point_slope_gives_way_to_the_line_its_delays_bound_better_when_no_window_passes() {
        // chrony's 001 with 1 ms of exponential jitter each way (the compare
        // script's x001-j1e-3, seed 12): a clock 0.1 s and 100 ppm fast,
        // three replies 66 s apart, their offsets off by -796, +470 and
        // -718 us with round trips of 2.16, 3.28 and 2.41 ms. The first two
        // give 80.9 ppm (19 ppm off; their delays allow 41 ppm). The three
        // fail the break tests (the least delayed is taken as the path's
        // minimum, its bound a few tens of us), and the two-point slope ran
        // on for three polls (1.9 ms). The weighted line through the three,
        // which the delays bound to 17 ppm, is about 1 ppm off.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let raw = |t: f64| -(0.1 + 1e-4 * t);
        let mut got = Vec::new();
        for (t, error, delay) in [(0.0, -796e-6, 2.1616e-3), (66.4, 470e-6, 3.2751e-3), (132.0, -718e-6, 2.4059e-3)] {
            let theta = raw(t) + error - d.correction_at(at(t));
            let u = d.update_sample(&sample_at(theta, t, t, delay));
            let Action::Slew { frequency, .. } = u.action else { panic!("{:?}", u.action) };
            got.push(frequency);
        }
        assert_eq!(d.fit, None, "no window passes the break tests");
        assert!((got[1] + 1e-4).abs() > 1e-5, "the two-point slope is far off: {}", got[1]);
        assert!((got[2] + 1e-4).abs() < 1.5e-6, "the three-sample line: {}", got[2]);
        assert!(d.freq_bound < 2e-5 && d.freq_bound > 1e-6, "bound {}", d.freq_bound);
    }

    #[test]
    fn when_every_window_fails_only_its_bounds_the_whole_window_is_taken_unless_the_newest_left_it() {
        // Twelve samples 64 s apart on a line, their offsets off by a few
        // hundred us, their round trips all 2 ms: no excess over the least,
        // so every error bound is the floor (the precision, 0.95 us) and
        // every window breaks its bounds, the newest three included, though
        // the errors alternate (the runs test passes) and nothing moved.
        let errors = [300e-6, -400e-6, 500e-6, -200e-6, 600e-6, -500e-6, 100e-6, -600e-6, 400e-6, -300e-6, 500e-6, -450e-6];
        let delays = [2e-3; 12];
        let build = |last_error: f64| {
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            for (i, (e, delay)) in errors.iter().zip(delays).enumerate() {
                let e = if i == errors.len() - 1 { last_error } else { *e };
                d.samples.push_back(RawSample { time: at(64.0 * i as f64), raw_offset: 1e-3 + 2e-6 * 64.0 * i as f64 + e, correction: 0.0, delay });
            }
            d
        };
        let (points, bounds) = build(errors[11]).points(at(704.0));
        let bounds = bounds.unwrap();
        let fails = |w: &[Point], b: &[f64]| {
            let f = LinearFit::new(w).unwrap();
            w.iter().zip(b).any(|(p, b)| (p.1 - f.at(p.0)).abs() > BOUND_FACTOR * b)
        };
        assert!((0..=points.len() - MIN_FIT_SAMPLES).all(|s| fails(&points[s..], &bounds[s..])), "every window breaks its bounds");
        // Taken whole: every sample kept, the slope near the line's 2 ppm.
        let mut d = build(errors[11]);
        let (_, longest) = d.regress(at(704.0)).expect("the whole window");
        assert_eq!((longest.n, d.samples()), (12, 12));
        assert!((longest.slope - 2e-6).abs() < 1e-6, "{}", longest.slope);
        // A newest sample 20 ms off every line through the older ones: none.
        let mut d = build(20e-3);
        assert!(d.regress(at(704.0)).is_none());
    }

    #[test]
    fn before_any_frequency_three_samples_with_equal_round_trips_give_it_though_their_bounds_are_too_tight() {
        // chrony's 120-selectoptions at 1.1 s each way, seed 7: a clock
        // 0.1 s and 100 ppm fast, three round trips within 10 us of each
        // other, each offset off by up to 60 us (jitter split differently
        // between the legs). Their error bounds (from the excess over the
        // smallest round trip) are a few us, no window passes the break
        // tests, and the frequency stayed 0 for 260 s. The line through
        // the three is certain to well under a ppm by its residuals.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let raw = |t: f64| -(0.1 + 1e-4 * t);
        let mut frequency = 0.0;
        for (t, error, delay) in [(2.2, 0.0, 2.2002793), (66.2, 60e-6, 2.2002887), (133.0, -50e-6, 2.2002839)] {
            let theta = raw(t) + error - d.correction_at(at(t));
            let u = d.update_sample(&sample_at(theta, t, t, delay));
            let Action::Slew { frequency: f, .. } = u.action else { panic!("{:?}", u.action) };
            frequency = f;
        }
        assert!((frequency + 1e-4).abs() < 3e-6, "{frequency}");
        // Once a frequency was measured, a window that fails the break tests
        // leaves it to the newest two samples' rule (a departing sample is
        // wander or a jump, not a new frequency).
        let before = d.frequency();
        let t = 200.0;
        let theta = raw(t) + 2e-3 - d.correction_at(at(t));
        let u = d.update_sample(&sample_at(theta, t, t, 2.2002800));
        let Action::Slew { frequency: after, .. } = u.action else { panic!("{:?}", u.action) };
        assert!((after - before).abs() < 1e-6, "{before} -> {after}");
    }

    #[test]
    fn before_any_frequency_a_significant_slope_is_taken_though_three_samples_fail_the_skew_test() {
        // chrony's 120-selectoptions, 0.6 s each way: round trips 1.2000,
        // 1.2016 and 1.2012 s, 65 s apart, on a clock 100 ppm fast. The
        // window passes the break tests, but its slope's uncertainty (about
        // 5 ppm) times Student's t for one degree of freedom (636.6) fails
        // the skew test, and the delays bound the slope to 1.8 %: the
        // frequency stayed 0 a poll longer. The slope is 20 standard
        // errors from 0.
        let run = |freq: f64| {
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let raw = |t: f64| -(0.1 + freq * t);
            let mut frequency = 0.0;
            for (t, delay) in [(1.2, 1.2000), (65.4, 1.2016), (130.8, 1.2012)] {
                let theta = raw(t) - d.correction_at(at(t));
                let u = d.update_sample(&sample_at(theta, t, t, delay));
                let Action::Slew { frequency: f, .. } = u.action else { panic!("{:?}", u.action) };
                frequency = f;
            }
            frequency
        };
        let f = run(1e-4);
        assert!((f + 1e-4).abs() < 1e-6, "{f}");
        // A clock without a frequency error keeps 0: nothing departs.
        let f = run(0.0);
        assert!(f.abs() < 1e-9, "{f}");
    }

    #[test]
    fn a_line_whose_weight_is_in_a_burst_long_ago_gives_the_level_at_the_known_frequency() {
        // The clock runs 10 ppm fast, a frequency known to 1e-8. Four quick
        // samples in 3 s (±10 µs), three delayed 150 ms (offsets 75 ms
        // high), and a new delayed one 117 s later: the quick ones carry the
        // weight, and their slope is 4 ppm low. The line's value now is
        // some 470 µs off; its weighted mean carried to now at 10 ppm is
        // within the quick samples' noise.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let truth = |t: f64| 1e-5 * t;
        let quick = [(0.0, 10e-6, 200e-6), (1.0, -10e-6, 240e-6), (2.0, 10e-6, 280e-6), (3.0, -10e-6, 320e-6)];
        for (t, noise, delay) in quick {
            d.samples.push_back(RawSample { time: at(t), raw_offset: truth(t) + noise, correction: 0.0, delay });
        }
        for t in [4.0, 5.0, 6.0] {
            d.samples.push_back(RawSample { time: at(t), raw_offset: truth(t) + 0.075, correction: 0.0, delay: 0.1502 });
        }
        d.freq = 1e-5;
        d.freq_sd = 1e-8;
        d.freq_time = Some(at(0.0));
        d.frequency_measured = true;
        let u = d.update_sample(&sample_at(truth(123.0) + 0.075, 123.0, 123.0, 0.1502));
        let Action::Slew { phase, frequency, .. } = u.action else { panic!("{:?}", u.action) };
        assert!((frequency - 1e-5).abs() < 1e-7, "{frequency}");
        assert!((secs(phase) - truth(123.0)).abs() < 10e-6, "{phase:?}");
        let (_, line) = d.fit.expect("a window passes");
        assert!((line.at(0.0) - truth(123.0)).abs() > 300e-6, "the line itself: {}", line.at(0.0));
    }

    #[test]
    fn a_sample_the_line_did_not_predict_lowers_the_poll_score_by_log2_of_the_miss() {
        // Delays unknown: a sample's bound is three jitters. A sample 1.5
        // times beyond 1.5 bounds plus twice the line's standard error
        // there lowers the score by log2(1.5).
        let alternating: Vec<f64> = (0..10).map(|i| if i % 2 == 0 { 1e-6 } else { -1e-6 }).collect();
        let mut d = holding(&alternating[..9], 0.0);
        let _ = d.update_sample(&sample_at(alternating[9], 90.0, 90.0, 0.0));
        let (origin, fit) = d.fit.unwrap();
        let correction = d.correction_at(at(100.0));
        let x = abscissa(at(100.0), correction, origin);
        let allowed = BOUND_FACTOR * 3.0 * d.jitter + 2.0 * fit.value_sd(x);
        assert!(fit.value_sd(x) > 0.1 * allowed, "the line's own uncertainty counts");
        d.poll_score = 0.0;
        let _ = d.update_sample(&sample_at(fit.at(x) + 1.5 * allowed - correction, 100.0, 100.0, 0.0));
        assert!((d.poll_score + 1.5f64.log2()).abs() < 1e-4, "{}", d.poll_score);
    }

    #[test]
    fn the_shared_settings_come_from_the_common_configuration() {
        let common = DisciplineConfig {
            step_threshold: dur(0.5),
            stepout: dur(300.0),
            panic_threshold: None,
            allow_initial_panic: true,
            min_poll: 4,
            max_poll: 8,
            local_precision: -24,
            ..DisciplineConfig::default()
        };
        let c = RegressionConfig::from_common(&common);
        let shared = (c.step_threshold, c.stepout, c.panic_threshold, c.allow_initial_panic, c.min_poll, c.max_poll, c.local_precision);
        assert_eq!(shared, (dur(0.5), dur(300.0), None, true, 4, 8, -24));
        let own = |c: &RegressionConfig| (c.initial_step_updates, c.max_samples, c.poll_target, c.correction_ratio, c.max_slew_rate, c.max_frequency);
        assert_eq!(own(&c), own(&RegressionConfig::default()), "and the regression's own settings their defaults");
        // chrony's `makestep` limit, when given.
        let c = RegressionConfig::from_common(&DisciplineConfig { step_updates: Some(1), ..common });
        assert_eq!(c.initial_step_updates, 1);
        let c = RegressionConfig::from_common(&DisciplineConfig { step_updates: Some(u32::MAX), ..common });
        assert_eq!(c.initial_step_updates, u32::MAX);
        // chrony's `polltarget`, when given.
        let c = RegressionConfig::from_common(&DisciplineConfig { poll_target: Some(8), ..common });
        assert_eq!(c.poll_target, 8);
        assert_eq!(RegressionConfig::from_common(&common).poll_target, DEFAULT_POLL_TARGET);
    }

    #[test]
    fn with_a_step_limit_of_every_update_a_large_offset_steps_at_once_even_on_a_line() {
        // chrony's `makestep 1 -1`: a settled clock whose reference jumps
        // 1e4 s is stepped at the next update, not after the stepout.
        let cfg = RegressionConfig { initial_step_updates: u32::MAX, step_threshold: dur(1.0), panic_threshold: None, ..RegressionConfig::default() };
        let mut d = on_a_line(cfg);
        let u = d.update_sample(&sample_at(1e4, 256.0, 256.0, 200e-6));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        // The default limit (3 updates) treats it as a spike until the stepout.
        let mut d = on_a_line(RegressionConfig { step_threshold: dur(1.0), panic_threshold: None, ..RegressionConfig::default() });
        let u = d.update_sample(&sample_at(1e4, 256.0, 256.0, 200e-6));
        assert_eq!(u.action, Action::Ignore(IgnoreReason::Spike));
    }

    #[test]
    fn the_runs_test_is_wald_wolfowitz_at_two_standard_deviations() {
        // Run lengths of alternating signs, starting positive.
        let seq = |lengths: &[usize]| -> Vec<f64> {
            lengths.iter().enumerate().flat_map(|(i, n)| vec![if i % 2 == 0 { 1.0 } else { -1.0 }; *n]).collect()
        };
        // 3 + and 4 -: mean 1 + 2·12/7 = 4.43, sd 1.18: at least 2.07 runs.
        assert!(!runs_test_passes(&seq(&[3, 4])));
        assert!(runs_test_passes(&seq(&[2, 4, 1])));
        // 2 + and 5 -: at least 1.98 runs.
        assert!(runs_test_passes(&seq(&[2, 5])));
        // 10 of each: mean 11, sd 2.18: at least 6.65 runs.
        assert!(!runs_test_passes(&seq(&[3, 3, 3, 3, 4, 4])));
        assert!(runs_test_passes(&seq(&[4, 3, 3, 3, 2, 4, 1])));
        // One sign only: a trend from six residuals on.
        assert!(runs_test_passes(&[1.0; 5]) && runs_test_passes(&[-1.0; 5]));
        assert!(!runs_test_passes(&[1.0; 6]) && !runs_test_passes(&[-1.0; 6]));
    }

    #[test]
    fn the_corrections_are_rebuilt_per_oscillator_second_through_a_linear_slew() {
        // From 100 s on: 1 % of frequency and 0.1 s slewed at 5 %, 2
        // oscillator seconds; local time runs at 1 + 1 % + 5 % meanwhile.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let segment = |phase: f64, rate: f64| Segment { start: at(100.0), base: 0.5, freq: 0.01, phase, rate };
        d.segments.push_back(segment(0.1, 0.05));
        // Local seconds since the segment's start (as the clock counts them,
        // in units of 2^-32 s), and the correction there.
        let local = |t: f64| secs(at(t) - at(100.0));
        let near = |d: &RegressionDiscipline, t: f64, expected: f64| (d.correction_at(at(t)) - expected).abs() < 1e-14;
        assert_eq!(d.correction_at(at(50.0)), 0.5, "before the first segment: its base");
        assert!(near(&d, 101.06, 0.5 + 0.06 * local(101.06) / 1.06), "{}", d.correction_at(at(101.06)));
        // Past the slew's end (local 2.12 s), the whole phase is in.
        assert!(near(&d, 110.1, 0.5 + 0.01 * (local(110.1) - 0.1) / 1.01 + 0.1), "{}", d.correction_at(at(110.1)));
        // A negative phase slows local time: 1 + 1 % − 5 %.
        d.segments[0] = segment(-0.1, 0.05);
        assert!(near(&d, 100.96, 0.5 - 0.04 * local(100.96) / 0.96), "{}", d.correction_at(at(100.96)));
        // No slew: frequency alone.
        d.segments[0] = segment(0.0, 0.0);
        assert!(near(&d, 110.1, 0.5 + 0.01 * local(110.1) / 1.01), "{}", d.correction_at(at(110.1)));
    }

    #[test]
    fn as_a_clock_discipline_it_reports_its_name_jitter_and_last_update() {
        let alternating: Vec<f64> = (0..10).map(|i| if i % 2 == 0 { 1e-6 } else { -1e-6 }).collect();
        let mut d = holding(&alternating[..9], 200e-6);
        assert_eq!((d.name(), d.wants_every_sample(), d.last_update()), ("regression", true, None));
        let _ = d.update_sample(&sample_at(alternating[9], 90.0, 90.0, 200e-6));
        assert_eq!(d.last_update(), Some(at(90.0)));
        assert!(d.jitter > 1e-6, "{}", d.jitter);
        assert_eq!(d.jitter(), dur(d.jitter));
    }

    #[test]
    fn the_settings_are_reported_as_bounded() {
        let cfg = RegressionConfig {
            min_poll: 4,
            max_samples: 100,
            poll_target: 1,
            correction_ratio: -1.0,
            max_slew_rate: 0.0,
            ..RegressionConfig::default()
        };
        let c = *RegressionDiscipline::new(cfg, None).config();
        assert_eq!((c.min_poll, c.max_samples, c.poll_target), (4, MAX_SAMPLES, MIN_FIT_SAMPLES));
        assert_eq!((c.correction_ratio, c.max_slew_rate), (1.5, KERNEL_MAX_SLEW_RATE));
    }

    #[test]
    fn a_samples_bound_is_half_its_excess_delay_over_a_floor_of_an_eighth_of_the_mean_excess() {
        let mut d = holding(&[0.0; 4], 0.0);
        for (s, delay) in d.samples.iter_mut().zip([200e-6, 400e-6, 600e-6, 1000e-6]) {
            s.delay = delay;
        }
        // Excesses 0, 200, 400 and 800 µs: mean 350, floor 350/4/2 = 43.75.
        let (points, bounds) = d.points(at(30.0));
        let bounds = bounds.expect("delays are known");
        for ((p, b), expected) in points.iter().zip(&bounds).zip([43.75e-6, 143.75e-6, 243.75e-6, 443.75e-6]) {
            assert!((b - expected).abs() < 1e-15, "{b} vs {expected}");
            assert!((p.2 * expected * expected - 1.0).abs() < 1e-9, "weight {}", p.2);
        }
        // Delays unknown (all zero): no bounds.
        let d = holding(&[0.0; 4], 0.0);
        assert_eq!(d.points(at(30.0)).1, None);
    }

    #[test]
    fn a_delayed_majority_floors_the_bounds_at_a_quarter_of_the_excess_quartile_not_the_means_eighth() {
        // Excesses 0, 40, 80 µs and five held 150 ms (chrony's 126-burst):
        // the quartile is 80 µs (sorted[8 / 4]), the floor 20 µs. A mean
        // over eight would have put it at 11.7 ms, near the delayed ones'.
        let mut d = holding(&[0.0; 8], 0.0);
        let delays = [200e-6, 240e-6, 280e-6, 0.1502, 0.1502, 0.1502, 0.1502, 0.1502];
        for (s, delay) in d.samples.iter_mut().zip(delays) {
            s.delay = delay;
        }
        let bounds = d.points(at(30.0)).1.expect("delays are known");
        for (b, delay) in bounds.iter().zip(delays) {
            let expected = 20e-6 + (delay - 200e-6) / 2.0;
            assert!((b - expected).abs() < 1e-12, "{b} vs {expected}");
        }
        // The delayed samples weigh a 1/14 000 000th of the quickest.
        let points = d.points(at(30.0)).0;
        assert!(points[3].2 / points[0].2 < 1e-7, "{} vs {}", points[3].2, points[0].2);
        // Seven samples: the mean's eighth, as before.
        assert!((bound_floor([0.0, 200e-6, 400e-6, 800e-6, 0.0, 0.0, 0.0].into_iter()) - 1400e-6 / 7.0 / 8.0).abs() < 1e-15);
        assert_eq!(excess_quartile(Vec::new()), 0.0);
        // Exponential-looking excesses with a low quartile by chance (mean/8
        // 24.4 us, 4.9 times the quartile's quarter, 5 us): the mean's eighth.
        let chance = [0.0, 10e-6, 20e-6, 30e-6, 100e-6, 200e-6, 400e-6, 800e-6];
        assert!((bound_floor(chance.into_iter()) - 1560e-6 / 8.0 / 8.0).abs() < 1e-15);
        assert_eq!(bound_floor(std::iter::empty()), 0.0);
    }

    #[test]
    fn the_corrections_after_the_newest_samples_epoch_are_kept() {
        // A sample handled 6 s after its epoch, then one measured before that
        // handling: the correction in force between them (10 ppm) is history
        // a later sample of that time must still see.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), Some(1e-5));
        let _ = d.update_sample(&sample_at(0.01, 0.0, 0.0, 200e-6));
        let _ = d.update_sample(&sample_at(0.0, 64.0, 70.0, 200e-6));
        let before = d.correction_at(at(68.0));
        let _ = d.update_sample(&sample_at(0.0, 66.0, 80.0, 200e-6));
        assert_eq!(d.correction_at(at(68.0)), before);
    }

    #[test]
    fn at_most_128_correction_segments_are_kept() {
        // Samples all older than the first correction's start: none of the
        // corrections can be dropped as history, until the cap.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        for k in 0..200 {
            let t = f64::from(k);
            let _ = d.update_sample(&sample_at(0.0, t, 1000.0 + t, 200e-6));
        }
        assert_eq!(d.segments.len(), MAX_SEGMENTS);
        assert_eq!(MAX_SEGMENTS, 128);
    }

    #[test]
    fn at_most_max_samples_are_held_through_slews_and_start_up_steps() {
        // Offsets of zero are slewed; of 1 s stepped (beyond the step
        // threshold, within the first five updates).
        for offset in [0.0, 1.0] {
            let cfg = RegressionConfig { max_samples: 3, initial_step_updates: 5, ..RegressionConfig::default() };
            let mut d = RegressionDiscipline::new(cfg, None);
            for k in 0..5 {
                let t = 64.0 * f64::from(k);
                let u = d.update_sample(&sample_at(offset, t, t, 200e-6));
                assert_eq!(matches!(u.action, Action::Step { .. }), offset > 0.0, "{:?}", u.action);
                assert_eq!(d.samples(), (k as usize + 1).min(3));
            }
        }
    }

    #[test]
    fn two_samples_give_a_slope_only_beyond_their_delay_bounds() {
        // 64 s apart, 200 µs of delay each: (100 + 100) µs / 64 s = 3.125 ppm.
        let mut d = holding(&[0.0, 0.0], 200e-6);
        let pair = |y: f64| [(-64.0, 0.0, 1.0), (0.0, y, 1.0)];
        assert_eq!(d.two_point_slope(&pair(200e-6)), None, "exactly the bound");
        assert_eq!(d.two_point_slope(&pair(201e-6)), Some(201e-6 / 64.0));
        // Measured against the current frequency.
        d.freq = -3e-6;
        assert_eq!(d.two_point_slope(&pair(100e-6)), Some(100e-6 / 64.0));
        // Out of order: no slope.
        assert_eq!(d.two_point_slope(&[(0.0, 0.0, 1.0), (-64.0, 201e-6, 1.0)]), None);
        // Delays unknown: three jitters each (the precision, 0.95 µs: 0.089 ppm).
        let d = holding(&[0.0, 0.0], 0.0);
        assert_eq!(d.two_point_slope(&pair(64.0 * 5e-8)), None);
        assert_eq!(d.two_point_slope(&pair(64.0 * 1e-7)), Some(1e-7));
    }

    #[test]
    fn the_poll_score_follows_the_window_unless_a_sample_was_missed() {
        // chrony's polltarget, 8 (ntplab's default is DEFAULT_POLL_TARGET, 16).
        let mut d = RegressionDiscipline::new(RegressionConfig { poll_target: 8, ..RegressionConfig::default() }, None);
        // Four samples against a target of eight: (4/8 − 1)/8, doubled.
        d.window = 4;
        d.adjust_poll(Some(1.0));
        assert_eq!(d.poll_score, -0.125, "a miss of exactly what is allowed is no miss");
        d.adjust_poll(None);
        assert_eq!(d.poll_score, -0.25);
        // Sixteen: (16/8 − 1)/8, not doubled.
        d.window = 16;
        d.adjust_poll(None);
        assert_eq!(d.poll_score, -0.125);
        d.adjust_poll(Some(2.0));
        assert_eq!((d.poll_score, d.poll()), (0.0, d.config().min_poll), "−1.125: at the floor already");
    }

    #[test]
    fn a_spans_score_is_the_mean_of_its_errors_and_counts_as_four_after_a_poll_change() {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let level = LinearFit::new(&[(-1.0, 0.0, 1.0), (0.0, 0.0, 1.0)]).unwrap();
        d.spans[0].fit = Some(((t0(), 0.0), level));
        // Errors of 1 and 2 (weight 1): their mean, 2.5 (squared errors).
        d.score_spans(at(1.0), 0.0, 1.0, 1.0);
        d.score_spans(at(2.0), 0.0, 2.0, 1.0);
        assert_eq!((d.spans[0].score, d.spans[0].count), (Some(2.5), 2.0));
        // At most 64 count: then each new error has a 64th of the weight.
        d.spans[0].count = 64.0;
        d.score_spans(at(3.0), 0.0, 0.0, 1.0);
        assert_eq!((d.spans[0].score, d.spans[0].count), (Some(2.5 - 2.5 / 64.0), 64.0));
        // A poll change: the score counts as four errors.
        d.window = 40;
        d.poll_score = 0.99;
        d.adjust_poll(None);
        assert_eq!(d.poll(), d.config().min_poll + 1);
        assert_eq!(d.spans[0].count, POLL_CHANGE_MEMORY);
        let before = d.spans[0].score.unwrap();
        d.score_spans(at(4.0), 0.0, 0.0, 1.0);
        assert_eq!(d.spans[0].score, Some(before - before / 5.0));
        // No change, no loss of memory.
        d.spans[0].count = 30.0;
        d.adjust_poll(None);
        assert_eq!(d.spans[0].count, 30.0);
    }

    // ---- Closed loop ------------------------------------------------------------

    /// A host clock with an oscillator error (optionally wandering), the
    /// kernel-like slew of [`crate::clock::SteeredClock`], advanced in closed form.
    struct SimClock {
        true_s: f64,
        /// Uncorrected oscillator minus true time, s.
        raw_offset_s: f64,
        /// Oscillator rate error, s/s.
        oscillator_error: f64,
        correction: f64,
        slew_left_s: f64,
        slew_tau_s: f64,
        slew_rate: f64,
        /// Applied slew and steps, s.
        applied_s: f64,
        steps: usize,
    }

    impl SimClock {
        fn new(oscillator_error: f64, offset_s: f64) -> Self {
            SimClock {
                true_s: 0.0,
                raw_offset_s: offset_s,
                oscillator_error,
                correction: 0.0,
                slew_left_s: 0.0,
                slew_tau_s: 0.0,
                slew_rate: KERNEL_MAX_SLEW_RATE,
                applied_s: 0.0,
                steps: 0,
            }
        }

        /// Clock minus true time.
        fn offset_s(&self) -> f64 {
            self.raw_offset_s + self.applied_s
        }

        fn advance(&mut self, dt: f64) {
            // Corrections apply per oscillator second, as in SteeredClock.
            let d_raw = dt * (1.0 + self.oscillator_error);
            let slewed = slewed(self.slew_left_s, self.slew_tau_s, self.slew_rate, d_raw);
            self.slew_left_s -= slewed;
            self.applied_s += self.correction * d_raw + slewed;
            self.raw_offset_s += self.oscillator_error * dt;
            self.true_s += dt;
        }
    }

    impl NtpClock for SimClock {
        type Error = core::convert::Infallible;
        fn now(&self) -> NtpTime {
            at(self.true_s + self.offset_s())
        }
        fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, Self::Error> {
            self.correction = frequency;
            Ok(self.now())
        }
        fn adjust_phase(&mut self, offset: NtpDuration, tau: NtpDuration) -> Result<NtpTime, Self::Error> {
            self.slew_left_s = secs(offset);
            self.slew_tau_s = secs(tau);
            self.slew_rate = KERNEL_MAX_SLEW_RATE;
            Ok(self.now())
        }
        fn slew_phase(&mut self, offset: NtpDuration, tau: NtpDuration, rate: f64) -> Result<NtpTime, Self::Error> {
            self.slew_left_s = secs(offset);
            self.slew_tau_s = secs(tau);
            self.slew_rate = rate;
            Ok(self.now())
        }
        fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, Self::Error> {
            self.applied_s += secs(offset);
            self.slew_left_s = 0.0;
            self.steps += 1;
            Ok(self.now())
        }
        fn set_leap(&mut self, _leap: LeapIndicator) -> Result<NtpTime, Self::Error> {
            Ok(self.now())
        }
    }

    struct Noise {
        /// Mean of the exponential delay jitter on the way to the server and
        /// back, s (0: none).
        out_jitter_s: f64,
        back_jitter_s: f64,
        /// Random-walk frequency wander, (s/s)/√s.
        wander: f64,
        rng: Rng,
    }

    /// Runs the loop for `duration_s` with a perfect reference over a path of
    /// 100 µs each way plus jitter; returns (true time, clock offset) after
    /// every update, and the steps.
    fn closed_loop(d: &mut RegressionDiscipline, clock: &mut SimClock, duration_s: f64, noise: &mut Noise) -> Vec<(f64, f64)> {
        let mut trace = Vec::new();
        while clock.true_s < duration_s {
            let (out, back) = (noise.rng.exponential(noise.out_jitter_s), noise.rng.exponential(noise.back_jitter_s));
            let offset = -clock.offset_s() + (out - back) / 2.0;
            let delay = 200e-6 + out + back;
            let now = clock.now();
            let u = d.update_sample(&DisciplineSample { offset: dur(offset), time: now, now, delay: dur(delay) });
            assert!(!matches!(u.action, Action::Panic { .. }));
            let _ = u.action.apply(clock).unwrap();
            let dt = log2_to_seconds(u.poll);
            // Wander on a 1 s grid is overkill here: one step per poll.
            clock.oscillator_error += noise.wander * dt.sqrt() * noise.rng.normal();
            clock.advance(dt);
            trace.push((clock.true_s, clock.offset_s()));
        }
        trace
    }

    fn rms_after(trace: &[(f64, f64)], from_s: f64) -> f64 {
        let v: Vec<f64> = trace.iter().filter(|p| p.0 >= from_s).map(|p| p.1).collect();
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    }

    fn max_after(trace: &[(f64, f64)], from_s: f64) -> f64 {
        trace.iter().filter(|p| p.0 >= from_s).map(|p| p.1.abs()).fold(0.0, f64::max)
    }

    fn quiet() -> Noise {
        Noise { out_jitter_s: 0.0, back_jitter_s: 0.0, wander: 0.0, rng: Rng(1) }
    }

    #[test]
    fn closed_loop_noiseless_converges_to_zero() {
        let mut clock = SimClock::new(10e-6, 0.050);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let trace = closed_loop(&mut d, &mut clock, 6.0 * 3600.0, &mut quiet());
        assert_eq!(clock.steps, 0, "50 ms is below the step threshold");
        // Offsets are quantized to 2^-32 s: the slope is exact to ~1e-12.
        // Per oscillator second: (1 + 10e-6)(1 + f) = 1.
        assert!((d.frequency() + 10e-6 / (1.0 + 10e-6)).abs() < 1e-10, "frequency {}", d.frequency());
        // A few 2^-32 s units of rounding in the corrections remain.
        assert!(max_after(&trace, 3600.0) < 5e-9, "max {}", max_after(&trace, 3600.0));
        assert_eq!(d.state(), State::Sync);
        assert_eq!(d.poll(), d.config().max_poll, "a perfect line lets the poll rise to the top (window {})", d.window());
    }

    #[test]
    fn closed_loop_large_initial_offset_steps_once_then_tracks() {
        let mut clock = SimClock::new(-20e-6, -2.5);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let trace = closed_loop(&mut d, &mut clock, 6.0 * 3600.0, &mut quiet());
        assert_eq!(clock.steps, 1);
        assert!(max_after(&trace, 3600.0) < 1e-8, "{}", max_after(&trace, 3600.0));
        // Per oscillator second: (1 − 20e-6)(1 + f) = 1.
        assert!((d.frequency() - 20e-6 / (1.0 - 20e-6)).abs() < 1e-11, "{}", d.frequency());
    }

    #[test]
    fn closed_loop_slews_a_large_offset_within_the_first_poll() {
        // chrony's linear slew through the tick at up to 83 333 ppm: 0.1 s
        // is gone in 1.2 s, not the 200 s the kernel's 500 ppm would take.
        let mut clock = SimClock::new(10e-6, 0.1);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let trace = closed_loop(&mut d, &mut clock, 3600.0, &mut quiet());
        assert_eq!(clock.steps, 0, "0.1 s is below the step threshold");
        assert!(trace[0].1.abs() < 1e-3, "after the first poll: {:?}", trace[0]);
        assert!(trace.iter().all(|(_, o)| o.abs() < 1e-3), "stays within 1 ms");
        assert_eq!(d.config().max_slew_rate, CHRONY_MAX_SLEW_RATE);
    }

    #[test]
    fn closed_loop_under_100_ms_of_jitter_stays_within_chronys_limits() {
        // chrony's 006-largejitter: 1 s off, 100 ppm fast, exponential jitter
        // of mean 100 ms each way; chrony's limits from 210 s on: max 0.5 s,
        // RMS 0.1 s. Lines through a few such samples have slopes of noise
        // (hundreds of ppm); taken, they carried the clock away while every
        // sample beyond STEPT was ignored as a spike for 900 s.
        for seed in 1..=8 {
            let mut clock = SimClock::new(100e-6, 1.0);
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let mut noise = Noise { out_jitter_s: 0.1, back_jitter_s: 0.1, wander: 0.0, rng: Rng(seed) };
            let trace = closed_loop(&mut d, &mut clock, 10_000.0, &mut noise);
            let (rms, max) = (rms_after(&trace, 210.0), max_after(&trace, 210.0));
            assert!(rms < 0.1 && max < 0.5, "seed {seed}: rms {rms}, max {max}, frequency {}", d.frequency());
        }
    }

    #[test]
    fn a_start_up_step_takes_no_slope_the_delays_cannot_resolve() {
        // Two samples 2 s apart, each with 0.2 s of delay: their "slope"
        // (0.15 s over 2 s) is noise, not a 7.5 % frequency error.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let sample = |offset: f64, t: f64, delay: f64| DisciplineSample { offset: dur(offset), time: at(t), now: at(t), delay: dur(delay) };
        let u = d.update_sample(&sample(1.0, 0.0, 0.2));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        // Local time: 2 s after the first sample, plus the 1 s step.
        let u = d.update_sample(&sample(0.15, 3.0, 0.2));
        assert!(matches!(u.action, Action::Step { .. }), "{:?}", u.action);
        assert_eq!(d.frequency(), 0.0);
        // The same pair with 200 µs delays does give the slope.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let _ = d.update_sample(&sample(1.0, 0.0, 200e-6));
        let _ = d.update_sample(&sample(0.15, 3.0, 200e-6));
        assert!((d.frequency() - 0.075).abs() < 1e-4, "{}", d.frequency());
    }

    #[test]
    fn a_slopes_skew_uses_students_t_at_99_95_percent() {
        assert_eq!(t_coefficient(0), f64::INFINITY);
        assert_eq!(t_coefficient(1), 636.6);
        assert_eq!(t_coefficient(2), 31.6);
        assert_eq!(t_coefficient(10), 4.587);
        assert_eq!(t_coefficient(40), 3.551);
        assert_eq!(t_coefficient(41), 3.5);
        assert_eq!(MAX_UPDATE_SKEW, 1e-3);
    }

    #[test]
    fn a_slope_through_more_than_two_samples_is_trusted_when_its_skew_is_within_1000_ppm() {
        let d = RegressionDiscipline::new(RegressionConfig::default(), None);
        // Exact lines of 10 ppm: the uncertainty is the bounds' 1/sqrt(sxx).
        let line = |n: i32, sigma: f64| -> Vec<Point> {
            (0..n).map(|i| (64.0 * f64::from(i - n + 1), 1e-5 * 64.0 * f64::from(i), 1.0 / (sigma * sigma))).collect()
        };
        // Three samples 64 s apart, 100 µs each: 1.1 ppm · t(1) = 636.6 is
        // 703 ppm; at 200 µs, 1406 ppm.
        let slope = d.trusted_slope(&line(3, 100e-6)).expect("703 ppm of skew");
        assert!((slope - 1e-5).abs() < 1e-15, "{slope}");
        assert_eq!(d.trusted_slope(&line(3, 200e-6)), None, "1406 ppm of skew");
        // Five samples, 10 ms each: 49.4 ppm · t(3) = 12.92 is 638 ppm (with
        // t(2) = 31.6 it would be 1562).
        let slope = d.trusted_slope(&line(5, 0.01)).expect("638 ppm of skew");
        assert!((slope - 1e-5).abs() < 1e-15, "{slope}");
    }

    #[test]
    fn the_noise_is_the_larger_of_the_fit_jitter_and_the_mean_half_excess_delay() {
        let mut d = holding(&[0.0; 4], 0.0);
        for (s, delay) in d.samples.iter_mut().zip([200e-6, 400e-6, 600e-6, 1000e-6]) {
            s.delay = delay;
        }
        // Half excesses 0, 100, 200 and 400 µs: 175 µs on average, above
        // the jitter (the precision, 0.95 µs, before any fit).
        assert!((d.noise() - 175e-6).abs() < 1e-15, "{}", d.noise());
        d.jitter = 300e-6;
        assert_eq!(d.noise(), 300e-6);
        // Without samples, the jitter alone.
        d.samples.clear();
        assert_eq!(d.noise(), 300e-6);
    }

    #[test]
    fn the_pending_phase_is_what_the_clock_has_left_to_slew() {
        // A 0.1 s offset is slewed at 83 333 ppm over 1.2 s; in between, what
        // the discipline says is pending must be what the clock still has to do.
        let mut clock = SimClock::new(0.0, 0.1);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let now = clock.now();
        assert_eq!(d.pending_phase(now), NtpDuration::ZERO, "nothing commanded yet");
        let u = d.update_sample(&DisciplineSample { offset: dur(-0.1), time: now, now, delay: dur(200e-6) });
        let Action::Slew { phase, max_rate: Some(_), .. } = u.action else { panic!("{:?}", u.action) };
        assert!((secs(phase) + 0.1).abs() < 1e-9);
        let _ = u.action.apply(&mut clock).unwrap();
        assert!((secs(d.pending_phase(clock.now())) + 0.1).abs() < 1e-9, "all of it at the start");
        for dt in [0.1, 0.3, 0.5, 0.4] {
            clock.advance(dt);
            let pending = secs(d.pending_phase(clock.now()));
            assert!((pending - clock.slew_left_s).abs() < 1e-9, "after {} s: {pending} vs {}", clock.true_s, clock.slew_left_s);
        }
        assert!(clock.slew_left_s.abs() < 1e-12 && secs(d.pending_phase(clock.now())).abs() < 1e-12, "done after 1.3 s");
    }

    #[test]
    fn the_frequency_is_uncertain_to_maxfreq_until_samples_measure_it() {
        // A clock 100 ppm fast: before two updates give a slope, its drift is
        // bounded only by MAXFREQ; once measured, by the slope's error, and
        // never less than RFC 5905's PHI.
        let mut clock = SimClock::new(100e-6, 0.01);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        assert_eq!(d.frequency_uncertainty(), MAXFREQ, "nothing measured");
        let mut noise = Noise { out_jitter_s: 20e-6, back_jitter_s: 20e-6, wander: 0.0, rng: Rng(7) };
        let mut first = None;
        let mut last = MAXFREQ;
        for _ in 0..40 {
            let until = clock.true_s + 1.0;
            let _ = closed_loop(&mut d, &mut clock, until, &mut noise);
            let u = d.frequency_uncertainty();
            assert!((PHI..=MAXFREQ).contains(&u), "{u}");
            if u < MAXFREQ {
                first.get_or_insert(d.updates);
            }
            last = u;
        }
        assert!(first.is_some_and(|n| n <= 3), "still MAXFREQ after {first:?} updates");
        assert!(last < 20e-6, "measured over 40 polls, the frequency is known to {last}");
    }

    #[test]
    fn closed_loop_follows_frequency_errors_of_five_percent() {
        // chrony's 003-largefreqoffset: ±5e-2, through the tick's ±10 %.
        for error in [5e-2, -5e-2, 5e-3, -5e-3] {
            let mut clock = SimClock::new(error, 0.1);
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let trace = closed_loop(&mut d, &mut clock, 3600.0, &mut quiet());
            // Start-up steps until a line through the samples gives the frequency.
            assert!(clock.steps <= 4, "{error}: {} steps", clock.steps);
            // Per oscillator second: (1 + error)(1 + f) = 1.
            assert!((d.frequency() + error / (1.0 + error)).abs() < 1e-9, "{error}: frequency {}", d.frequency());
            assert!(max_after(&trace, 600.0) < 1e-4, "{error}: max {}", max_after(&trace, 600.0));
            assert_eq!(d.state(), State::Sync);
        }
    }

    #[test]
    fn the_frequency_stops_at_what_tick_and_kernel_reach() {
        // 15 % is beyond a Linux clock: the correction stays at 10 % + 500 ppm.
        let mut clock = SimClock::new(0.15, 0.0);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let _ = closed_loop(&mut d, &mut clock, 1800.0, &mut quiet());
        assert_eq!(d.frequency(), -(MAX_TICK_RATE + MAXFREQ));
        // And a configured limit is honoured (the kernel's 500 ppm alone).
        let cfg = RegressionConfig { max_frequency: MAXFREQ, ..RegressionConfig::default() };
        let mut clock = SimClock::new(5e-2, 0.0);
        let mut d = RegressionDiscipline::new(cfg, None);
        let _ = closed_loop(&mut d, &mut clock, 1800.0, &mut quiet());
        assert_eq!(d.frequency(), -MAXFREQ);
    }

    #[test]
    fn closed_loop_with_noise_and_wander_at_poll_4() {
        // chrony's reference conditions (sim/tests/harness.rs) in miniature.
        let cfg = RegressionConfig { min_poll: 4, max_poll: 4, ..RegressionConfig::default() };
        let mut d = RegressionDiscipline::new(cfg, None);
        let mut clock = SimClock::new(10e-6, 0.1);
        let mut noise = Noise { out_jitter_s: 100e-6, back_jitter_s: 100e-6, wander: 1e-9, rng: Rng(42) };
        let trace = closed_loop(&mut d, &mut clock, 24.0 * 3600.0, &mut noise);
        let (rms, max) = (rms_after(&trace, 6.0 * 3600.0), max_after(&trace, 6.0 * 3600.0));
        eprintln!("poll 4: rms {:.1} µs, max {:.1} µs", rms * 1e6, max * 1e6);
        assert!(rms < 15e-6 && max < 80e-6);
    }

    #[test]
    fn closed_loop_with_noise_and_wander_at_default_polling() {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let mut clock = SimClock::new(10e-6, 0.1);
        let mut noise = Noise { out_jitter_s: 100e-6, back_jitter_s: 100e-6, wander: 1e-9, rng: Rng(42) };
        let trace = closed_loop(&mut d, &mut clock, 24.0 * 3600.0, &mut noise);
        let (rms, max) = (rms_after(&trace, 6.0 * 3600.0), max_after(&trace, 6.0 * 3600.0));
        eprintln!("default polling: rms {:.1} µs, max {:.1} µs, updates {}", rms * 1e6, max * 1e6, trace.len());
        assert!(rms < 100e-6);
    }

    #[test]
    fn closed_loop_the_second_sample_gives_the_frequency() {
        // chrony's default test (100 ppm, 0.1 s, 64 s polls): the first
        // sample's offset is slewed out at once, the second (two samples
        // 64 s apart, 100 µs of jitter) gives the frequency to within a few
        // ppm, so from then on the clock stays within 1 ms. Before, the
        // frequency waited for a third sample: 6.4 ms off at the third poll.
        for seed in 1..=10 {
            let mut clock = SimClock::new(100e-6, 0.1);
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let mut noise = Noise { out_jitter_s: 100e-6, back_jitter_s: 100e-6, wander: 1e-9, rng: Rng(seed) };
            let trace = closed_loop(&mut d, &mut clock, 600.0, &mut noise);
            assert_eq!(clock.steps, 0);
            assert!(trace[1..].iter().all(|(_, o)| o.abs() < 1e-3), "seed {seed}: {:?}", &trace[..3]);
        }
        // Two samples whose bounds do not pin a new slope keep the frequency.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), Some(20e-6));
        let sample = |t: f64, offset: f64, delay: f64| DisciplineSample { offset: dur(offset), time: at(t), now: at(t), delay: dur(delay) };
        let _ = d.update_sample(&sample(0.0, 0.0, 0.050));
        let _ = d.update_sample(&sample(64.0, 1e-3, 0.010));
        assert_eq!(d.frequency(), 20e-6, "a 16 ppm change against 470 ppm of bounds is noise");
    }

    #[test]
    fn closed_loop_corrects_asymmetric_jitter() {
        // chrony's 011-asymjitter: exponential jitter of mean 30 µs out and
        // 970 µs back. Each offset is low by about half the extra delay; the
        // asymmetry estimate finds the share (-0.5) and removes it.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let mut clock = SimClock::new(100e-6, 0.1);
        let mut noise = Noise { out_jitter_s: 30e-6, back_jitter_s: 970e-6, wander: 1e-9, rng: Rng(11) };
        let trace = closed_loop(&mut d, &mut clock, 24.0 * 3600.0, &mut noise);
        let (rms, max) = (rms_after(&trace, 2000.0), max_after(&trace, 2000.0));
        eprintln!("asymmetric jitter: rms {:.1} µs, max {:.1} µs, asymmetry {}", rms * 1e6, max * 1e6, d.asymmetry());
        assert!((-MAX_ASYMMETRY..=-MIN_ASYMMETRY).contains(&d.asymmetry()), "{}", d.asymmetry());
        assert!(rms < 60e-6 && max < 300e-6, "rms {rms}, max {max}");
        // Symmetric jitter shows no asymmetry and gets no correction.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let mut clock = SimClock::new(100e-6, 0.1);
        let mut noise = Noise { out_jitter_s: 500e-6, back_jitter_s: 500e-6, wander: 1e-9, rng: Rng(11) };
        let _ = closed_loop(&mut d, &mut clock, 24.0 * 3600.0, &mut noise);
        assert_eq!(d.asymmetry(), 0.0);
    }

    /// A discipline holding eight samples `spacing` s apart whose offsets are
    /// exactly 2e-6·x + share·(δ − δ_min).
    fn asymmetric(share: f64, spacing: f64) -> RegressionDiscipline {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        for i in 0..8 {
            let excess = [0.0, 3e-4, 1e-4, 7e-4, 2e-4, 0.0, 5e-4, 9e-4][i];
            let t = spacing * i as f64;
            d.samples.push_back(RawSample { time: at(t), raw_offset: 2e-6 * t + share * excess, correction: 0.0, delay: 2e-4 + excess });
        }
        d
    }

    #[test]
    fn the_asymmetry_fit_recovers_the_delay_share() {
        // Offsets exactly 2e-6·x − 0.5·(δ − δ_min): the fit gives −0.5; delays
        // that do not vary give none.
        let mut d = asymmetric(-0.5, 64.0);
        let a = d.asymmetry_fit(at(448.0)).unwrap();
        assert!((a + 0.5).abs() < 1e-9, "{a}");
        // A burst 0.1 s apart shows it as well.
        let burst = asymmetric(-0.5, 0.1).asymmetry_fit(at(0.7)).unwrap();
        assert!((burst + 0.5).abs() < 1e-6, "{burst}");
        // Four samples suffice (three unknowns), three do not.
        let mut four = d.clone();
        four.samples.truncate(4);
        assert!((four.asymmetry_fit(at(448.0)).unwrap() + 0.5).abs() < 1e-9);
        four.samples.truncate(3);
        assert_eq!(four.asymmetry_fit(at(448.0)), None);
        for s in &mut d.samples {
            s.delay = 2e-4;
        }
        assert_eq!(d.asymmetry_fit(at(448.0)), None);
        // Nor do delays that grow in step with time: delay and time cannot
        // be told apart.
        for (i, s) in d.samples.iter_mut().enumerate() {
            s.delay = 2e-4 + 1e-6 * i as f64;
        }
        assert_eq!(d.asymmetry_fit(at(448.0)), None);
    }

    #[test]
    fn the_asymmetry_is_corrected_from_the_tenth_estimate_of_one_sign_in_a_row() {
        for share in [-0.5, 0.5] {
            let mut d = asymmetric(share, 64.0);
            for k in 1..=MIN_ASYMMETRY_RUN {
                d.estimate_asymmetry(at(448.0));
                assert_eq!(d.asymmetry_run, k * share.signum() as i32);
                let expected = if k < MIN_ASYMMETRY_RUN { 0.0 } else { share };
                assert!((d.asymmetry() - expected).abs() < 1e-9, "{share}, estimate {k}: {}", d.asymmetry());
            }
            // The count stops at MAX_ASYMMETRY_RUN.
            d.asymmetry_run = MAX_ASYMMETRY_RUN * share.signum() as i32;
            d.estimate_asymmetry(at(448.0));
            assert_eq!(d.asymmetry_run, MAX_ASYMMETRY_RUN * share.signum() as i32);
        }
        // Shares within ±MIN_ASYMMETRY (0.45) do not count.
        for share in [-0.3, 0.3] {
            let mut d = asymmetric(share, 64.0);
            for _ in 0..2 * MIN_ASYMMETRY_RUN {
                d.estimate_asymmetry(at(448.0));
                assert_eq!((d.asymmetry_run, d.asymmetry()), (0, 0.0), "{share}");
            }
        }
    }

    #[test]
    fn an_imprecise_consistent_fit_only_nudges_the_frequency() {
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        // No reference fit yet: any slope is taken.
        assert_eq!(d.blend_frequency(-1e-5, 1e-8, t0()), -1e-5);
        d.freq = -1e-5;
        // As precise: taken, and it becomes the reference.
        assert_eq!(d.blend_frequency(-1.001e-5, 1e-8, t0()), -1.001e-5);
        d.freq = -1.001e-5;
        // Half again as uncertain: weighted 1 : 2.25, the reference stays.
        let f = d.blend_frequency(-1.0e-5, 1.5e-8, t0());
        assert!((f - (-1.001e-5 * 2.25 - 1.0e-5) / 3.25).abs() < 1e-15, "{f}");
        assert_eq!(d.freq_sd, 1e-8, "the reference stays");
        // 900 times less certain and within its error: weighted 1 : 810 000.
        let f = d.blend_frequency(-3.0e-5, 9e-6, t0());
        assert!((f + 1.001e-5).abs() < 1e-10, "{f}");
        assert_eq!(d.freq_sd, 1e-8, "the reference stays");
        // Less certain but clearly different (a real change): taken.
        assert_eq!(d.blend_frequency(-8e-5, 9e-6, t0()), -8e-5);
        assert_eq!(d.freq_sd, 9e-6);
    }

    #[test]
    fn a_saved_frequency_holds_against_the_first_seconds_fits() {
        // A drift file's -100 ppm, known to SAVED_FREQUENCY_SD.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), Some(-1e-4));
        assert_eq!((d.state, d.freq, d.freq_sd), (State::Fset, -1e-4, SAVED_FREQUENCY_SD));
        // Three iburst samples 2 s apart with 100 us of jitter: a slope
        // 5 ppm off, known to 20 ppm, moves the frequency by 1/401 of it.
        let f = d.blend_frequency(-1.05e-4, 20e-6, t0());
        assert!((f + 1e-4).abs() < 2e-8, "{f}");
        assert_eq!(d.freq_sd, SAVED_FREQUENCY_SD, "the saved frequency stays the reference");
        // Minutes of samples, as precise: taken.
        assert_eq!(d.blend_frequency(-1.002e-4, 0.4e-6, t0()), -1.002e-4);
        // Without a saved frequency the first slope is taken whole.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        assert_eq!(d.blend_frequency(-1.05e-4, 20e-6, t0()), -1.05e-4);
    }

    #[test]
    fn a_reference_ages_with_the_oscillators_wander() {
        let mut d = RegressionDiscipline::new(RegressionConfig { wander: 1e-9, ..RegressionConfig::default() }, None);
        assert_eq!(d.blend_frequency(1e-6, 1e-9, t0()), 1e-6);
        d.freq = 1e-6;
        // A second later, a fit 100 times less certain is only blended.
        let f = d.blend_frequency(1.0e-6 + 5e-8, 1e-7, at(1.0));
        assert!((f - 1e-6).abs() < 1e-10, "{f}");
        // 10 000 s later the reference is as uncertain as 1e-9 · 100 (plus
        // its own 1e-9): the same fit is within twice that, and is taken.
        assert_eq!(d.blend_frequency(1.0e-6 + 5e-8, 1e-7, at(10_000.0)), 1.0e-6 + 5e-8);
        assert_eq!(d.freq_sd, 1e-7);
        // Without wander the reference would have stayed.
        let mut d = RegressionDiscipline::new(RegressionConfig { wander: 0.0, ..RegressionConfig::default() }, None);
        d.blend_frequency(1e-6, 1e-9, t0());
        d.freq = 1e-6;
        let f = d.blend_frequency(1.0e-6 + 5e-8, 1e-7, at(10_000.0));
        assert!((f - 1e-6).abs() < 1e-10, "{f}");
    }

    #[test]
    fn a_consistent_slope_three_times_less_certain_counts_one_tenth() {
        // Inverse variances 1/1e-12 and 1/9e-12: 9 to 1.
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        d.freq_sd = 1e-6;
        let f = d.blend_frequency(5e-6, 3e-6, t0());
        assert!((f - 5e-7).abs() < 1e-18, "{f}");
        assert_eq!(d.freq_sd, 1e-6, "the reference stays");
        // A slope of unknown precision is taken whole, and becomes the reference.
        assert_eq!(d.blend_frequency(5e-6, f64::INFINITY, t0()), 5e-6);
        assert_eq!(d.freq_sd, f64::INFINITY);
    }

    #[test]
    fn a_burst_after_an_outage_keeps_the_learned_frequency() {
        // intermittent-link and packet-loss-33: after an hour without samples
        // the offset has wandered off the old line, the break tests cut the
        // window to the burst that follows (8 samples 2 s apart, 100 µs of
        // jitter), and that burst's own slope is noise of several ppm.
        let mut worst: f64 = 0.0;
        for seed in 1..=20 {
            let mut clock = SimClock::new(10e-6, 0.01);
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let mut noise = Noise { out_jitter_s: 100e-6, back_jitter_s: 100e-6, wander: 1e-9, rng: Rng(seed) };
            let _ = closed_loop(&mut d, &mut clock, 6.0 * 3600.0, &mut noise);
            // The outage: an hour of free running with 300 µs of phase
            // wander on top.
            clock.advance(3600.0);
            clock.raw_offset_s += 300e-6;
            for _ in 0..8 {
                let (out, back) = (noise.rng.exponential(100e-6), noise.rng.exponential(100e-6));
                let now = clock.now();
                let offset = -clock.offset_s() + (out - back) / 2.0;
                let u = d.update_sample(&DisciplineSample { offset: dur(offset), time: now, now, delay: dur(200e-6 + out + back) });
                let _ = u.action.apply(&mut clock).unwrap();
                clock.advance(2.0);
            }
            // Per oscillator second: (1 + 10e-6)(1 + f) = 1.
            worst = worst.max((d.frequency() + 10e-6 / (1.0 + 10e-6)).abs());
        }
        eprintln!("worst frequency error after the burst: {:.2} ppm", worst * 1e6);
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn a_sample_off_every_line_sets_the_level_at_once() {
        // packet-loss-33, seed 22: six polls in a row lost at poll 10, the
        // clock wandered 1.3 ms, and the next sample (a short round trip)
        // fits no line through the older ones. Its offset is the news: it is
        // slewed out whole, not averaged with the old samples, and the poll
        // drops.
        for seed in 1..=10 {
            let mut clock = SimClock::new(10e-6, 0.01);
            let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
            let mut noise = Noise { out_jitter_s: 20e-6, back_jitter_s: 20e-6, wander: 0.0, rng: Rng(seed) };
            let _ = closed_loop(&mut d, &mut clock, 12.0 * 3600.0, &mut noise);
            let poll = d.poll();
            clock.advance(6000.0);
            clock.raw_offset_s += 1.3e-3;
            let now = clock.now();
            let offset = -clock.offset_s();
            let u = d.update_sample(&DisciplineSample { offset: dur(offset), time: now, now, delay: dur(200e-6) });
            let Action::Slew { phase, .. } = u.action else { panic!("seed {seed}: {:?}", u.action) };
            assert!((secs(phase) - offset).abs() < 0.1 * offset.abs(), "seed {seed}: phase {phase:?} for an offset of {offset:.6} s");
            assert!(u.poll < poll, "seed {seed}: poll {} after {poll}", u.poll);
        }
    }

    #[test]
    fn a_sample_delayed_far_beyond_the_jitter_is_ignored_unless_its_offset_moved_more() {
        // chrony's 126-burst: 70 % of the requests held back 150 ms. Such a
        // sample's offset is 75 ms off with the delay, and fitting it (even
        // with a small weight) taught the asymmetry estimate a half-delay
        // slope that then moved every undelayed sample by half its jitter.
        let mut clock = SimClock::new(10e-6, 0.01);
        let mut d = RegressionDiscipline::new(RegressionConfig::default(), None);
        let mut noise = Noise { out_jitter_s: 100e-6, back_jitter_s: 100e-6, wander: 1e-9, rng: Rng(3) };
        let _ = closed_loop(&mut d, &mut clock, 3.0 * 3600.0, &mut noise);
        let held = d.samples();
        let now = clock.now();
        let offset = -clock.offset_s();
        // Held back 150 ms on the way out: +75 ms of offset with +150 ms of delay.
        let delayed = DisciplineSample { offset: dur(offset + 0.075), time: now, now, delay: dur(0.1502) };
        assert!(d.delay_outlier(&delayed));
        let u = d.update_sample(&delayed);
        assert_eq!(u.action, Action::Ignore(IgnoreReason::Delay));
        assert_eq!(d.samples(), held, "an ignored sample is not held");
        // The same delay with the offset moved 200 ms: the clock (or the
        // reference) moved more than the delay explains, and it is taken.
        let moved = DisciplineSample { offset: dur(offset + 0.2), time: now, now, delay: dur(0.1502) };
        assert!(!d.delay_outlier(&moved));
        // The same delay on both legs (a longer path): the offset stays on
        // the line, the sample is right and is taken with its small weight.
        let longer_path = DisciplineSample { offset: dur(offset), time: now, now, delay: dur(0.1502) };
        assert!(!d.delay_outlier(&longer_path));
        // An ordinary round trip is taken.
        let ordinary = DisciplineSample { offset: dur(offset), time: now, now, delay: dur(300e-6) };
        assert!(!d.delay_outlier(&ordinary));
        // A source with a ratio of its own (chrony's maxdelaydevratio): a
        // new source starts the test over; with a ratio of a million the
        // delayed sample is within what its jitter allows.
        d.source_changed(1e6);
        assert!(!d.delay_outlier(&delayed), "a new source's first samples are not tested");
        d.source_samples = d.samples();
        assert!(!d.delay_outlier(&delayed));
        d.source_changed(MAX_DELAY_DEV_RATIO);
        d.source_samples = d.samples();
        assert!(d.delay_outlier(&delayed));
        let u = d.update_sample(&ordinary);
        assert!(matches!(u.action, Action::Slew { .. }), "{:?}", u.action);
    }
}
