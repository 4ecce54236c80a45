//! The free-running host clock: what a host's clock does before any
//! discipline is applied.
//!
//! # Model
//!
//! Time is measured as [`NtpDuration`] since the start of the run, on the
//! true (simulator) timescale. The raw clock offset (clock minus true time) at
//! true time `t` is
//!
//! ```text
//! raw_offset(t) = offset_s + ∫₀ᵗ f(τ) dτ + Σ steps with at ≤ t
//! f(τ)          = frequency + W(τ) + amplitude · sin(2π τ / period_s + phase_rad)
//! ```
//!
//! so a clock with `frequency = 1e-5` gains 10 µs per true second.
//!
//! **Random-walk frequency wander `W`** is piecewise constant on a fixed grid
//! of step `h = wander_step_s` starting at the run start: `W(τ) = W_k` for
//! `τ ∈ [k·h, (k+1)·h)`, with `W_0 = 0` and
//! `W_{k+1} = W_k + wander · √h · N(0, 1)`. The frequency thus changes by
//! `N(0, wander² · Δt)` over `Δt` seconds, and `Var W(t) = wander² · t`
//! (`wander` in (s/s)/√s). This is the definition of chrony's simulation
//! tests on clknetsim: `wander` (default 1e-9) enters the frequency expression
//! `(+ freq_offset (sum (* wander (normal))))`, which clknetsim evaluates once
//! per simulated second, holding the frequency constant in between; for update
//! rates `R` above 1 Hz chrony scales it by `1/√R`, keeping the variance per
//! second at `wander²`. With `h = 1 s` the two models have the same law, up
//! to one detail: clknetsim's running sum already holds one increment at its
//! first evaluation, while ours starts at exactly `frequency`.
//!
//! The walk is generated lazily in grid order from its own random stream, so
//! its path is a function of the seed alone, however often and wherever it is
//! queried. Only the current grid cell is kept (`W_k` and the running integral
//! `∫₀^{k·h} W`), so memory is constant; catching up costs one normal deviate
//! per grid step (a simulated week at `h = 1 s` is 604 800 steps).
//!
//! **A replayed frequency** ([`Oscillator::with_frequency_series`]) takes
//! the walk's place: `W_k` is the series' `k`-th value (its last one after
//! its end), on the same grid, with no draws. Replaying the frequency a
//! clknetsim run logged for a node (`-g`, its "raw frequency") gives a host
//! the very oscillator that node had.
//!
//! **The sine term** (a temperature-like cycle) is integrated in closed form.
//!
//! **Steps** ([`Oscillator::step`]) are scenario events ("someone stepped the
//! clock by +1 s") added to the raw offset from their instant on.
//!
//! **Readings** ([`Oscillator::read`]) add Gaussian timestamp noise (`noise_s`,
//! from a second, separate stream, so reading never changes the walk) and
//! then quantise the *reading* down to a multiple of `precision_s`, as a
//! clock counter that ticks in steps of its resolution would.
//!
//! # Call order
//!
//! Queries ([`Oscillator::raw_offset_at`], [`Oscillator::read`],
//! [`Oscillator::frequency_at`]) MUST come with non-decreasing `t`, as an
//! event-driven simulator produces them. Debug builds assert it. A release
//! build answers an earlier `t` from the current grid cell (exact within that
//! cell, a linear extrapolation of the walk before it) and with the steps
//! applied so far: it never panics, but the answer is not the path's value.
//!
//! # Configuration
//!
//! [`OscillatorConfig::validate`] reports what is wrong with a configuration.
//! [`Oscillator::new`] never panics: it replaces every invalid field by its
//! default (0, no sine, or a 1 s grid), so validate first to tell the user.

use crate::rng::SimRng;
use ntplab_proto::time::NtpDuration;
use std::collections::VecDeque;
use std::sync::Arc;
use std::f64::consts::PI;

/// 2^32: [`NtpDuration`] units per second.
const UNITS_PER_S: f64 = 4_294_967_296.0;

/// Largest magnitude an [`NtpDuration`] holds, in seconds (2^31 s, 68 years).
const MAX_DURATION_S: f64 = 2_147_483_648.0;

/// Finest allowed wander grid (1 ms): bounds the work per simulated second.
pub const WANDER_STEP_S_MIN: f64 = 1e-3;

/// Coarsest allowed wander grid (one day).
pub const WANDER_STEP_S_MAX: f64 = 86_400.0;

/// A periodic frequency variation, `amplitude · sin(2π t / period_s + phase_rad)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SineConfig {
    /// Peak frequency deviation, s/s (e.g. 1e-7 for a ±0.1 ppm daily cycle).
    pub amplitude: f64,
    /// Period, seconds (> 0; e.g. 86 400 for a daily temperature cycle).
    pub period_s: f64,
    /// Phase at the run start, radians.
    pub phase_rad: f64,
}

/// Parameters of a free-running host clock (see the module docs for the model).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OscillatorConfig {
    /// Initial offset, clock minus true time, seconds.
    pub offset_s: f64,
    /// Constant frequency offset, s/s (1e-5 = 10 ppm fast). |frequency| < 1.
    pub frequency: f64,
    /// Random-walk frequency noise, (s/s)/√s: the frequency changes by
    /// N(0, wander² · Δt) over Δt seconds (chrony's tests use 1e-9). ≥ 0.
    pub wander: f64,
    /// Optional periodic frequency variation.
    pub sine: Option<SineConfig>,
    /// Standard deviation of the Gaussian noise on each reading, seconds. ≥ 0.
    pub noise_s: f64,
    /// Readings are floored to a multiple of this, seconds; 0 = no
    /// quantisation, otherwise ≥ 2^-32 s.
    pub precision_s: f64,
    /// Grid step of the random walk, seconds (default 1 s, as clknetsim).
    pub wander_step_s: f64,
}

impl Default for OscillatorConfig {
    /// A perfect clock: no offset, no drift, no noise; 1 s wander grid.
    fn default() -> Self {
        OscillatorConfig {
            offset_s: 0.0,
            frequency: 0.0,
            wander: 0.0,
            sine: None,
            noise_s: 0.0,
            precision_s: 0.0,
            wander_step_s: 1.0,
        }
    }
}

/// `Err` naming `field` unless `ok(value)`.
fn check(field: &str, value: f64, ok: bool, rule: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{field}: must be {rule}, got {value}"))
    }
}

fn is_nonneg(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

impl OscillatorConfig {
    /// Checks every field; the error names the first bad one and says why.
    pub fn validate(&self) -> Result<(), String> {
        let o = self;
        check(
            "offset_s",
            o.offset_s,
            o.offset_s.abs() < MAX_DURATION_S,
            "finite and within ±2^31 s",
        )?;
        check(
            "frequency",
            o.frequency,
            o.frequency.abs() < 1.0,
            "finite and within (-1, 1)",
        )?;
        check("wander", o.wander, is_nonneg(o.wander), "finite and ≥ 0")?;
        if let Some(s) = &o.sine {
            check(
                "sine.amplitude",
                s.amplitude,
                s.amplitude.abs() < 1.0,
                "finite and within (-1, 1)",
            )?;
            check(
                "sine.period_s",
                s.period_s,
                s.period_s.is_finite() && s.period_s > 0.0,
                "finite and > 0",
            )?;
            check(
                "sine.phase_rad",
                s.phase_rad,
                s.phase_rad.is_finite(),
                "finite",
            )?;
        }
        check(
            "noise_s",
            o.noise_s,
            is_nonneg(o.noise_s) && o.noise_s < MAX_DURATION_S,
            "finite and ≥ 0",
        )?;
        check(
            "precision_s",
            o.precision_s,
            o.precision_s == 0.0
                || (o.precision_s >= 1.0 / UNITS_PER_S && o.precision_s < MAX_DURATION_S),
            "0 or between 2^-32 s and 2^31 s",
        )?;
        check(
            "wander_step_s",
            o.wander_step_s,
            (WANDER_STEP_S_MIN..=WANDER_STEP_S_MAX).contains(&o.wander_step_s),
            "between 0.001 s and 86400 s",
        )?;
        Ok(())
    }

    /// This config with every invalid field replaced by its default.
    fn sanitized(&self) -> OscillatorConfig {
        let d = OscillatorConfig::default();
        let field_ok = |c: OscillatorConfig| c.validate().is_ok();
        let mut out = d;
        // Validate each field on its own against an otherwise default config.
        if field_ok(OscillatorConfig {
            offset_s: self.offset_s,
            ..d
        }) {
            out.offset_s = self.offset_s;
        }
        if field_ok(OscillatorConfig {
            frequency: self.frequency,
            ..d
        }) {
            out.frequency = self.frequency;
        }
        if field_ok(OscillatorConfig {
            wander: self.wander,
            ..d
        }) {
            out.wander = self.wander;
        }
        if field_ok(OscillatorConfig {
            sine: self.sine,
            ..d
        }) {
            out.sine = self.sine;
        }
        if field_ok(OscillatorConfig {
            noise_s: self.noise_s,
            ..d
        }) {
            out.noise_s = self.noise_s;
        }
        if field_ok(OscillatorConfig {
            precision_s: self.precision_s,
            ..d
        }) {
            out.precision_s = self.precision_s;
        }
        if field_ok(OscillatorConfig {
            wander_step_s: self.wander_step_s,
            ..d
        }) {
            out.wander_step_s = self.wander_step_s;
        }
        out
    }
}

/// A free-running host clock driven by true simulated time.
#[derive(Clone, Debug)]
pub struct Oscillator {
    config: OscillatorConfig,
    /// Changes of the base frequency by scenario events: (from true time, added s/s).
    frequency_changes: Vec<(NtpDuration, f64)>,
    /// Stream of the random walk's increments.
    walk_rng: SimRng,
    /// Stream of the reading noise.
    noise_rng: SimRng,
    /// Grid step in [`NtpDuration`] units (> 0), and the same in seconds.
    grid_units: i64,
    grid_s: f64,
    /// Standard deviation of one walk increment: wander · √h.
    walk_increment_sd: f64,
    /// A replayed walk: `W_k` is its `k`-th value (the last one past its end).
    series: Option<Arc<[f64]>>,
    /// Index k of the current grid cell; `walk_freq` is W_k.
    cell: i64,
    walk_freq: f64,
    /// ∫₀^{k·h} W(τ) dτ, seconds.
    walk_integral_s: f64,
    /// Reading quantum in [`NtpDuration`] units; 0 = none.
    precision_units: i64,
    /// Latest query time, for the non-decreasing contract.
    last_query: NtpDuration,
    /// Scheduled steps not yet reached, sorted by instant (FIFO among equal instants).
    pending_steps: VecDeque<(NtpDuration, NtpDuration)>,
    /// Sum of the steps already reached.
    applied_steps: NtpDuration,
}

impl Oscillator {
    /// A clock following `config`, drawing its randomness from `rng` (two
    /// independent child streams are forked from it: the walk and the reading
    /// noise). Invalid fields are replaced by defaults; see
    /// [`OscillatorConfig::validate`].
    pub fn new(config: OscillatorConfig, mut rng: SimRng) -> Oscillator {
        let config = config.sanitized();
        let walk_rng = rng.fork("oscillator/walk");
        let noise_rng = rng.fork("oscillator/noise");
        // wander_step_s ∈ [1 ms, 1 day]: at least 4.3e6 units, no overflow.
        let grid_units = (config.wander_step_s * UNITS_PER_S).round() as i64;
        let grid_s = grid_units as f64 / UNITS_PER_S;
        Oscillator {
            frequency_changes: Vec::new(),
            walk_increment_sd: config.wander * grid_s.sqrt(),
            series: None,
            config,
            walk_rng,
            noise_rng,
            grid_units,
            grid_s,
            cell: 0,
            walk_freq: 0.0,
            walk_integral_s: 0.0,
            precision_units: (config.precision_s * UNITS_PER_S).round() as i64,
            last_query: NtpDuration::MIN,
            pending_steps: VecDeque::new(),
            applied_steps: NtpDuration::ZERO,
        }
    }

    /// This clock with its walk replaced by `series`: `W_k` is `series[k]`
    /// (s/s, added to the configured frequency), and its last value from
    /// the series' end on; the walk's random stream is not used. An empty
    /// series, or one with a value that is not finite, is ignored (the
    /// scenario loader refuses those with a message).
    pub fn with_frequency_series(mut self, series: Arc<[f64]>) -> Oscillator {
        if !series.is_empty() && series.iter().all(|v| v.is_finite()) {
            self.walk_freq = series[0];
            self.series = Some(series);
        }
        self
    }

    /// Whether the walk term is present (drawn or replayed).
    fn walks(&self) -> bool {
        self.walk_increment_sd != 0.0 || self.series.is_some()
    }

    /// The configuration in use (after replacing invalid fields).
    pub fn config(&self) -> &OscillatorConfig {
        &self.config
    }

    /// Schedules an external step of the raw clock by `by` at true time `at`
    /// (a scenario event). It shows in every query at or after `at`. A step
    /// whose `at` is already past shows from the next query on; answers
    /// already given are not revised.
    pub fn step(&mut self, at: NtpDuration, by: NtpDuration) {
        let index = self.pending_steps.partition_point(|&(a, _)| a <= at);
        self.pending_steps.insert(index, (at, by));
    }

    /// Changes the oscillator's base frequency error to `frequency` (s/s) from
    /// true time `at` on (a scenario event: temperature shock, a swapped
    /// oscillator). The offset stays continuous.
    pub fn set_frequency(&mut self, at: NtpDuration, frequency: f64) {
        let current = self.config.frequency + self.frequency_changes.iter().map(|c| c.1).sum::<f64>();
        if frequency.is_finite() {
            self.frequency_changes.push((at, frequency - current));
        }
    }

    fn frequency_change_offset_s(&self, t: NtpDuration) -> f64 {
        self.frequency_changes.iter().filter(|c| c.0 <= t).map(|c| c.1 * (t - c.0).to_seconds_f64()).sum()
    }

    fn frequency_change_s(&self, t: NtpDuration) -> f64 {
        self.frequency_changes.iter().filter(|c| c.0 <= t).map(|c| c.1).sum()
    }

    /// Raw offset (clock minus true time) at true time `t` since the run
    /// start: initial offset, integrated frequency and steps; no reading noise.
    pub fn raw_offset_at(&mut self, t: NtpDuration) -> NtpDuration {
        self.advance_to(t);
        let t_s = t.to_seconds_f64();
        let continuous_s = self.config.offset_s
            + self.config.frequency * t_s
            + self.walk_offset_s(t)
            + self.sine_offset_s(t_s)
            + self.frequency_change_offset_s(t);
        NtpDuration::from_seconds_f64(continuous_s) + self.applied_steps
    }

    /// The clock's reading at true time `t`, as a duration since the run
    /// start on the clock's own scale: `t + raw_offset_at(t)` plus reading
    /// noise, floored to the precision. Consumes the noise stream (one normal
    /// deviate per reading when `noise_s > 0`).
    pub fn read(&mut self, t: NtpDuration) -> NtpDuration {
        let ideal = t + self.raw_offset_at(t);
        self.perturb_reading(ideal)
    }

    /// Adds this clock's reading noise to `ideal` and floors the result to
    /// its precision. [`Oscillator::read`] uses it; a disciplined clock built
    /// on this one applies it to its own corrected reading.
    pub fn perturb_reading(&mut self, ideal: NtpDuration) -> NtpDuration {
        let mut reading = ideal;
        if self.config.noise_s > 0.0 {
            let noise_s = self.config.noise_s * self.noise_rng.normal();
            reading = reading + NtpDuration::from_seconds_f64(noise_s);
        }
        if self.precision_units > 0 {
            let p = i128::from(self.precision_units);
            let floored = i128::from(reading.to_bits()).div_euclid(p) * p;
            let floored = floored.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            reading = NtpDuration::from_bits(floored);
        }
        reading
    }

    /// Instantaneous raw frequency offset at true time `t`, s/s: constant
    /// frequency plus walk plus sine (for traces).
    pub fn frequency_at(&mut self, t: NtpDuration) -> f64 {
        self.advance_to(t);
        let sine = match &self.config.sine {
            Some(s) => {
                let phase =
                    2.0 * PI * t.to_seconds_f64().rem_euclid(s.period_s) / s.period_s + s.phase_rad;
                s.amplitude * libm::sin(phase)
            }
            None => 0.0,
        };
        self.config.frequency + self.walk_freq + sine + self.frequency_change_s(t)
    }

    /// Moves the walk to the cell holding `t` and applies the steps due.
    fn advance_to(&mut self, t: NtpDuration) {
        debug_assert!(
            t >= self.last_query,
            "oscillator queried at {t:?} after {:?}: queries must be non-decreasing",
            self.last_query
        );
        self.last_query = self.last_query.max(t);
        while let Some(&(at, by)) = self.pending_steps.front() {
            if at > t {
                break;
            }
            self.applied_steps = self.applied_steps + by;
            self.pending_steps.pop_front();
        }
        if !self.walks() {
            return; // No walk: W stays 0, no draws.
        }
        let target = t.to_bits().div_euclid(self.grid_units);
        // Bounded by the grid steps elapsed since the previous query.
        while self.cell < target {
            self.walk_integral_s += self.walk_freq * self.grid_s;
            self.cell += 1;
            self.walk_freq = match &self.series {
                Some(series) => series[usize::try_from(self.cell).unwrap_or(usize::MAX).min(series.len() - 1)],
                None => self.walk_freq + self.walk_increment_sd * self.walk_rng.normal(),
            };
        }
    }

    /// ∫₀ᵗ W(τ) dτ, seconds, given that the walk sits in `t`'s cell.
    fn walk_offset_s(&self, t: NtpDuration) -> f64 {
        if !self.walks() {
            return 0.0;
        }
        // cell · grid_units ≤ t for forward queries, so no overflow; i128 for the others.
        let cell_start = i128::from(self.cell) * i128::from(self.grid_units);
        let into_cell_s = (i128::from(t.to_bits()) - cell_start) as f64 / UNITS_PER_S;
        self.walk_integral_s + self.walk_freq * into_cell_s
    }

    /// ∫₀ᵗ amplitude · sin(2πτ/P + φ) dτ = amplitude · P/(2π) · (cos φ − cos(2πt/P + φ)).
    fn sine_offset_s(&self, t_s: f64) -> f64 {
        match &self.config.sine {
            Some(s) => {
                let phase = 2.0 * PI * t_s.rem_euclid(s.period_s) / s.period_s + s.phase_rad;
                s.amplitude * s.period_s / (2.0 * PI) * (libm::cos(s.phase_rad) - libm::cos(phase))
            }
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod frequency_change_tests {
    use super::*;

    #[test]
    fn set_frequency_keeps_the_offset_continuous() {
        let mut o = Oscillator::new(OscillatorConfig { frequency: 1e-5, ..OscillatorConfig::default() }, SimRng::derive(1, "t"));
        let at = NtpDuration::from_seconds(100);
        o.set_frequency(at, -2e-5);
        let before = o.raw_offset_at(at).to_seconds_f64();
        assert!((before - 1e-3).abs() < 1e-9);
        let later = o.raw_offset_at(NtpDuration::from_seconds(200)).to_seconds_f64();
        assert!((later - (1e-3 - 2e-3)).abs() < 1e-9, "{later}");
        assert!((o.frequency_at(NtpDuration::from_seconds(200)) + 2e-5).abs() < 1e-15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(s)
    }

    fn osc(config: OscillatorConfig, seed: u64) -> Oscillator {
        assert_eq!(config.validate(), Ok(()));
        Oscillator::new(config, SimRng::derive(seed, "test"))
    }

    const WEEK_S: i64 = 7 * 86_400;

    #[test]
    fn a_replayed_frequency_is_integrated_per_second_and_its_last_value_holds() {
        let config = OscillatorConfig { offset_s: 0.5, frequency: 1e-5, ..Default::default() };
        let series: Arc<[f64]> = vec![1e-6, 2e-6, -1e-6].into();
        let mut o = osc(config, 1).with_frequency_series(series);
        let expect = |t: f64, walk: f64| 0.5 + 1e-5 * t + walk;
        // Queried out of grid order of cells, never backwards.
        for (t, walk, freq) in [
            (0.25, 0.25e-6, 1e-6),
            (1.0, 1e-6, 2e-6),
            (2.5, 3e-6 - 0.5e-6, -1e-6),
            (10.0, 3e-6 - 8e-6, -1e-6),
        ] {
            let got = o.raw_offset_at(secs(t)).to_seconds_f64();
            // NtpDuration resolves 2^-32 s.
            assert!((got - expect(t, walk)).abs() < 1e-9, "t={t}: {got} vs {}", expect(t, walk));
            assert!((o.frequency_at(secs(t)) - (1e-5 + freq)).abs() < 1e-15, "t={t}");
        }
        // Another seed replays the same path: no randomness in the walk.
        let mut other = osc(config, 2).with_frequency_series(vec![1e-6, 2e-6, -1e-6].into());
        assert_eq!(other.raw_offset_at(secs(10.0)), o.raw_offset_at(secs(10.0)));
        // An empty or non-finite series is ignored.
        for bad in [Vec::new(), vec![1e-6, f64::NAN]] {
            let mut o = osc(config, 1).with_frequency_series(bad.into());
            assert!((o.raw_offset_at(secs(10.0)).to_seconds_f64() - expect(10.0, 0.0)).abs() < 1e-9);
        }
    }

    #[test]
    fn zero_noise_is_exact_linear_drift_over_a_week() {
        let config = OscillatorConfig {
            offset_s: 0.1,
            frequency: 1e-5,
            ..Default::default()
        };
        let mut o = osc(config, 1);
        for hour in 0..=WEEK_S / 3600 {
            let t = NtpDuration::from_seconds(hour * 3600);
            let expected_s = 0.1 + 1e-5 * (hour * 3600) as f64;
            let got_s = o.raw_offset_at(t).to_seconds_f64();
            assert!(
                (got_s - expected_s).abs() < 1e-9,
                "t={t:?}: {got_s} vs {expected_s}"
            );
            // Without noise and precision, a reading is exactly t + offset.
            assert_eq!(o.read(t), t + o.raw_offset_at(t));
            assert_eq!(o.frequency_at(t), 1e-5);
        }
    }

    #[test]
    fn sine_integral_is_exact() {
        let (amplitude, period_s) = (1e-6, 1000.0);
        let config = OscillatorConfig {
            sine: Some(SineConfig {
                amplitude,
                period_s,
                phase_rad: 0.0,
            }),
            ..Default::default()
        };
        let mut o = osc(config, 1);
        // Over half a period the integral of A·sin is A·P/π; over whole periods 0.
        // (Exact up to the 2^-32 s (0.23 ns) resolution of NtpDuration.)
        let half = o.raw_offset_at(secs(500.0)).to_seconds_f64();
        assert!((half - amplitude * period_s / PI).abs() < 1e-9, "{half}");
        let whole = o.raw_offset_at(secs(1000.0)).to_seconds_f64();
        assert!(whole.abs() < 1e-9, "{whole}");
        let many = o
            .raw_offset_at(NtpDuration::from_seconds(WEEK_S - WEEK_S % 1000))
            .to_seconds_f64();
        assert!(many.abs() < 1e-9, "{many}");
        // The trapezoidal integral of the reported frequency agrees.
        let mut o = osc(
            OscillatorConfig {
                sine: Some(SineConfig {
                    amplitude,
                    period_s,
                    phase_rad: 1.0,
                }),
                ..config
            },
            1,
        );
        let (mut integral, mut prev_f) = (0.0, o.frequency_at(NtpDuration::ZERO));
        for ms in 1..=300_000 {
            let f = o.frequency_at(NtpDuration::from_nanos(ms * 1_000_000));
            integral += (prev_f + f) / 2.0 * 1e-3;
            prev_f = f;
        }
        let closed = o.raw_offset_at(secs(300.0)).to_seconds_f64();
        assert!((integral - closed).abs() < 1e-9, "{integral} vs {closed}");
    }

    #[test]
    fn walk_variance_grows_linearly() {
        let wander = 1e-8;
        let config = OscillatorConfig {
            wander,
            ..Default::default()
        };
        let times_s = [100, 400];
        let seeds = 400;
        let mut sums = [0.0; 2];
        let mut offset_sum = 0.0;
        for seed in 0..seeds {
            let mut o = osc(config, seed);
            for (i, &ts) in times_s.iter().enumerate() {
                let f = o.frequency_at(NtpDuration::from_seconds(ts));
                sums[i] += f * f;
            }
            let off = o
                .raw_offset_at(NtpDuration::from_seconds(400))
                .to_seconds_f64();
            offset_sum += off * off;
        }
        for (i, &ts) in times_s.iter().enumerate() {
            let var = sums[i] / seeds as f64;
            let expected = wander * wander * ts as f64;
            // The estimate's relative sd is √(2/400) = 7%: ±30% is > 4 sd.
            assert!(
                (var / expected - 1.0).abs() < 0.3,
                "t={ts}: var {var:e}, expected {expected:e}"
            );
        }
        // The offset is the integral of the walk: Var = wander² Σ_{j<n} j² h³ ≈ wander² n³/3.
        let n = 400.0;
        let expected = wander * wander * (n - 1.0) * n * (2.0 * n - 1.0) / 6.0;
        let var = offset_sum / seeds as f64;
        assert!(
            (var / expected - 1.0).abs() < 0.3,
            "offset var {var:e}, expected {expected:e}"
        );
    }

    #[test]
    fn path_does_not_depend_on_query_pattern() {
        let config = OscillatorConfig {
            offset_s: -0.05,
            frequency: 3e-6,
            wander: 1e-9,
            sine: Some(SineConfig {
                amplitude: 1e-7,
                period_s: 3600.0,
                phase_rad: 0.3,
            }),
            noise_s: 1e-6,
            ..Default::default()
        };
        let checkpoints: Vec<NtpDuration> = (1..=100)
            .map(|i| NtpDuration::from_seconds(i * 100))
            .collect();
        // Every second.
        let mut a = osc(config, 9);
        let mut at_a = Vec::new();
        for s in 0..=10_000 {
            let t = NtpDuration::from_seconds(s);
            let off = a.raw_offset_at(t);
            if checkpoints.contains(&t) {
                at_a.push((off, a.frequency_at(t)));
            }
            a.read(t); // reading must not disturb the walk
        }
        // Every 7.3 s, merged with the checkpoints; no readings.
        let mut b = osc(config, 9);
        let mut at_b = Vec::new();
        let mut queries: Vec<(NtpDuration, bool)> =
            (0..1370).map(|j| (secs(7.3 * j as f64), false)).collect();
        queries.extend(checkpoints.iter().map(|&t| (t, true)));
        queries.sort();
        for (t, is_checkpoint) in queries {
            let off = b.raw_offset_at(t);
            if is_checkpoint {
                at_b.push((off, b.frequency_at(t)));
            }
        }
        assert_eq!(at_a.len(), 100);
        assert_eq!(at_a, at_b);
    }

    #[test]
    fn steps_apply_from_their_instant() {
        let mut o = osc(
            OscillatorConfig {
                offset_s: 0.5,
                ..Default::default()
            },
            1,
        );
        o.step(secs(100.0), NtpDuration::from_seconds(1));
        o.step(secs(200.0), NtpDuration::from_seconds(-3));
        assert_eq!(o.raw_offset_at(secs(99.9)), secs(0.5));
        assert_eq!(o.raw_offset_at(secs(100.0)), secs(1.5));
        assert_eq!(o.raw_offset_at(secs(150.0)), secs(1.5));
        // A step scheduled in the past shows from the next query on.
        o.step(secs(120.0), NtpDuration::from_seconds(10));
        assert_eq!(o.raw_offset_at(secs(150.0)), secs(11.5));
        assert_eq!(o.raw_offset_at(secs(250.0)), secs(8.5));
    }

    #[test]
    fn readings_are_quantised_down() {
        let precision_s = 1.0 / 1024.0;
        let config = OscillatorConfig {
            offset_s: 0.123,
            frequency: 1e-4,
            precision_s,
            ..Default::default()
        };
        let mut o = osc(config, 1);
        let quantum = NtpDuration::from_seconds_f64(precision_s).to_bits();
        for ms in (0..100_000).step_by(37) {
            let t = NtpDuration::from_nanos(ms * 1_000_000);
            let ideal = t + o.raw_offset_at(t);
            let r = o.read(t);
            assert_eq!(r.to_bits() % quantum, 0);
            assert!(
                r <= ideal && ideal - r < NtpDuration::from_bits(quantum),
                "{r:?} {ideal:?}"
            );
        }
    }

    #[test]
    fn reading_noise_has_the_configured_sd() {
        let noise_s = 1e-5;
        let mut o = osc(
            OscillatorConfig {
                noise_s,
                ..Default::default()
            },
            3,
        );
        let n = 20_000;
        let errs: Vec<f64> = (0..n)
            .map(|s| {
                let t = NtpDuration::from_seconds(s);
                (o.read(t) - t).to_seconds_f64()
            })
            .collect();
        let mean = errs.iter().sum::<f64>() / n as f64;
        let sd = (errs.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / n as f64).sqrt();
        assert!(mean.abs() < 5.0 * noise_s / (n as f64).sqrt(), "{mean:e}");
        assert!((sd / noise_s - 1.0).abs() < 0.05, "{sd:e}");
    }

    #[test]
    fn same_seed_same_clock() {
        let config = OscillatorConfig {
            offset_s: 0.1,
            frequency: 1e-5,
            wander: 1e-9,
            noise_s: 1e-6,
            precision_s: 1e-9,
            ..Default::default()
        };
        let run = |seed| {
            let mut o = osc(config, seed);
            (0..2000)
                .map(|s| o.read(NtpDuration::from_seconds(s * 3)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn grid_step_other_than_one_second() {
        let config = OscillatorConfig {
            wander: 1e-8,
            wander_step_s: 0.25,
            ..Default::default()
        };
        let mut o = osc(config, 2);
        // Frequency is constant within a cell and the offset continuous across cells.
        let f0 = o.frequency_at(secs(10.0));
        assert_eq!(o.frequency_at(secs(10.2)), f0);
        let before = o.raw_offset_at(secs(10.25) - NtpDuration::from_bits(1));
        let after = o.raw_offset_at(secs(10.25));
        assert!((after - before).abs() < NtpDuration::from_nanos(1));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "queries must be non-decreasing")]
    fn backward_query_is_caught_in_debug_builds() {
        let mut o = osc(
            OscillatorConfig {
                wander: 1e-9,
                ..Default::default()
            },
            1,
        );
        let _ = o.raw_offset_at(NtpDuration::from_seconds(10));
        let _ = o.raw_offset_at(NtpDuration::from_seconds(9));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let ok = OscillatorConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (
                OscillatorConfig {
                    frequency: f64::NAN,
                    ..ok
                },
                "frequency",
            ),
            (
                OscillatorConfig {
                    frequency: 1.5,
                    ..ok
                },
                "frequency",
            ),
            (
                OscillatorConfig {
                    offset_s: f64::INFINITY,
                    ..ok
                },
                "offset_s",
            ),
            (
                OscillatorConfig {
                    wander: -1e-9,
                    ..ok
                },
                "wander",
            ),
            (
                OscillatorConfig {
                    noise_s: -1.0,
                    ..ok
                },
                "noise_s",
            ),
            (
                OscillatorConfig {
                    precision_s: 1e-12,
                    ..ok
                },
                "precision_s",
            ),
            (
                OscillatorConfig {
                    wander_step_s: 0.0,
                    ..ok
                },
                "wander_step_s",
            ),
            (
                OscillatorConfig {
                    sine: Some(SineConfig {
                        amplitude: 1e-6,
                        period_s: 0.0,
                        phase_rad: 0.0,
                    }),
                    ..ok
                },
                "sine.period_s",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
            // And the clock still works, with the field at its default.
            let mut o = Oscillator::new(config, SimRng::derive(1, "x"));
            let off = o.raw_offset_at(NtpDuration::from_seconds(1000));
            assert!(off.abs() < NtpDuration::from_seconds(1), "{field}: {off:?}");
        }
    }
}
