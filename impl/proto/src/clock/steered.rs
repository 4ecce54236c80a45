//! [`SteeredClock`]: a software model of a kernel-disciplined clock layered
//! over a *raw* time source.
//!
//! Two users:
//!
//! - the daemon in observe-only mode (no clock control): local time =
//!   steered(system `CLOCK_REALTIME` reading). The daemon disciplines its own
//!   notion of time and serves it without ever touching the system clock;
//! - the simulator: raw time = the host's free-running oscillator (true time +
//!   offset + frequency error + wander, computed by the simulator), and the
//!   steered clock provides the kernel-like reaction to the daemon's
//!   adjustments.
//!
//! # Shape
//!
//! [`SteeredClock`] is a pure state machine. It stores no time source: every
//! method that depends on time takes the raw reading `raw` as an argument, and
//! [`SteeredClock::time_at`] maps a raw reading to the local time. To hand it to
//! code written against [`NtpClock`] (such as
//! [`crate::discipline::Action::apply`]), wrap it together with a [`RawTime`]
//! in a [`SteeredWith`] for as long as the call lasts:
//!
//! ```
//! use ntplab_proto::clock::{NtpClock, SteeredClock, SteeredWith};
//! use ntplab_proto::time::{NtpDuration, NtpTime};
//!
//! let start = NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
//! let mut clock = SteeredClock::new(start);
//! let raw = start + NtpDuration::from_seconds(10);
//! let source = || raw; // the daemon reads CLOCK_REALTIME here, the simulator its oscillator
//! let mut steered = SteeredWith::new(&mut clock, &source);
//! steered.set_frequency(10e-6).unwrap();
//! assert_eq!(steered.now(), clock.time_at(raw));
//! ```
//!
//! Raw readings are expected not to decrease from one call to the next. The
//! model is still defined for an earlier reading (the line through the last
//! change, at the current frequency, without slew), so a raw source that is
//! stepped back by someone else makes local time follow it back.
//!
//! # The model
//!
//! Between two changes the clock is described by an *anchor* `(r₀, L₀)` (raw
//! and local readings at the last change), the frequency correction `f`, and a
//! phase slew `θ` (remaining at `r₀`) with time constant `τ`. With
//! `d = r − r₀`:
//!
//! ```text
//! local(r) = L₀ + d + ⌊d · F / 2⁶⁴⌋ + round(frac(d · F / 2⁶⁴) + P(d)) + leap(r)
//! ```
//!
//! where everything is in units of 2⁻³² s, `F = round(f · 2⁶⁴)` (the frequency
//! term is exact integer arithmetic: 10 ppm is 10 µs per second to the unit,
//! with no accumulation), `P(d)` is the phase slewed so far (below), and the
//! frequency remainder and the phase are rounded together once. Every change
//! (frequency, phase, step, leap) first *re-anchors* at the current raw reading:
//! `L₀ ← local(r)`, `θ ← θ − P(d)`, `r₀ ← r`. The clock is therefore continuous
//! across every change that is not a step or a leap, exactly (to the unit).
//!
//! ## Frequency
//!
//! [`SteeredClock::set_frequency`] replaces the correction: the clock then runs
//! at `1 + f` local seconds per raw second, plus the slew. `f` is clamped to
//! `±`[`SteeredConfig::max_frequency`], by default the kernel's `MAXFREQ`
//! (500 ppm, [`crate::constants::MAXFREQ`]).
//!
//! ## Tick length (kernel `ADJ_TICK`) and total frequency
//!
//! Linux advances the clock by `tick` µs per timer tick at `USER_HZ` = 100
//! ticks per second ([`USER_HZ`]); `adjtimex(ADJ_TICK)` accepts `tick` within
//! `900000/USER_HZ ..= 1100000/USER_HZ` ([`TICK_MIN_USEC`] = 9000,
//! [`TICK_MAX_USEC`] = 11000; kernel/time/ntp.c refuses others with `EINVAL`).
//! The tick adds `(tick − 10000)/10000` to the rate: ±10 %
//! ([`MAX_TICK_RATE`]), in steps of 100 ppm. [`SteeredClock::set_tick`] sets
//! it; [`SteeredClock::set_frequency`] sets only the `ADJ_FREQUENCY` part
//! (±`MAXFREQ`), and the clock runs at `1 + f` with
//! `f = (tick − 10000)/10000 + freq`. [`SteeredClock::set_total_frequency`]
//! splits a wanted `f` (within ±(10 % + `max_frequency`)) as chrony's Linux
//! driver does: the nearest tick, and the remainder (within ±50 ppm) as
//! `freq`; the frequency term `F` is computed from the wanted `f` directly,
//! so the split loses nothing.
//!
//! ## Phase slew: exponential, rate-limited
//!
//! [`SteeredClock::adjust_phase`] replaces any slew in progress by `θ` (clamped
//! to `±`[`SteeredConfig::max_phase`], the kernel PLL's `MAXPHASE` of 0.5 s by
//! default). The remaining phase `ρ` then obeys
//!
//! ```text
//! dρ/dt = −sign(ρ) · min(R, |ρ| / τ)
//! ```
//!
//! with `R` = [`SteeredConfig::max_slew_rate`] (500 ppm by default, the
//! kernel's `MAX_TICKADJ` limit on slewing). As long as `|θ|/τ ≤ R` this is
//! exactly the exponential [`NtpClock::adjust_phase`] documents: after `t`
//! seconds `θ · e^(−t/τ)` remains. When the exponential would start faster
//! than `R`, the rate is clamped: the phase moves linearly at `R` until the
//! remaining phase has fallen to the *knee* `τ · R` (at
//! `t₁ = (|θ| − τR) / R`), and from there decays exponentially,
//! `ρ = sign(θ) · τR · e^(−(t − t₁)/τ)`. The slope is continuous at `t₁`, the
//! phase never steps, the remaining phase decays more slowly than the
//! unlimited exponential would (the caller's residual model then
//! underestimates what remains; with the discipline's offsets, at most STEPT =
//! 0.125 s, and time constants of at least 16 · 64 s the knee is never reached
//! at the default rate). `τ = 0` (or negative) gives a purely linear slew at
//! `R` that stops when the phase is done. The ODE is autonomous, so re-anchoring
//! mid-slew (for a frequency change, say) does not alter the slew's course.
//! Everything is closed form; there is no timer tick in the computation.
//!
//! This is the kernel's phase adjustment (`ADJ_OFFSET`, the offset part of the
//! PLL: `ntp_offset_chunk` removes `offset >> (SHIFT_PLL + time_constant)`
//! each second, an exponential with τ = 2^(`SHIFT_PLL` + time constant) s,
//! `SHIFT_PLL` = 2; [`kernel_pll_time_constant`]), clamped to `MAXPHASE`. The
//! kernel PLL's own frequency update is not modelled: the disciplines here
//! set the frequency themselves (`ADJ_FREQUENCY`), as ntpd with the kernel
//! discipline off and chrony do.
//!
//! ## Fast slew through the tick (chrony's `sys_generic`)
//!
//! [`SteeredClock::slew_phase`] is the slew chrony performs in user space:
//! it adds a slew rate to the frequency (through tick and frequency, so up to
//! 10 % in all) for as long as the offset takes. It follows the same law as
//! above with the caller's rate limit `R` instead of the kernel's (within
//! the headroom the tick leaves next to the frequency in force,
//! `MAX_TICK_RATE + max_frequency − |f|`, and at most [`MAX_USER_SLEW_RATE`]),
//! and the offset bounded by `PANICT` rather than `MAXPHASE`. With `τ = 0` it
//! is chrony's linear slew: the offset is removed at `R` in `|θ|/R` seconds.
//!
//! ## Step
//!
//! [`SteeredClock::step`] moves local time by the offset at once and cancels
//! any slew in progress.
//!
//! ## Leap seconds (kernel `STA_INS` / `STA_DEL`)
//!
//! [`SteeredClock::set_leap`] with [`LeapIndicator::Insert`] arms an insertion
//! at the end of the current UTC day *of the steered clock*: when local time
//! reaches 00:00:00 it is stepped back by 1 s and repeats 23:59:59 (which is
//! 23:59:60 on a UTC display), the Linux kernel's `TIME_INS` → `TIME_OOP`.
//! [`LeapIndicator::Delete`] arms a deletion: when local time reaches 23:59:59
//! it jumps to 00:00:00. The end of the *day*, not of the month: the kernel
//! applies an armed leap at the next midnight; RFC 5905 §7.3 announces the leap
//! for the end of the month, so the daemon arms it only on the last day of the
//! month. Like the kernel, arming picks the first such instant strictly after
//! the current local time (a deletion armed during 23:59:59 waits for the next
//! day).
//!
//! The event fires once: afterwards the clock is in [`LeapStatus::Wait`]
//! (the kernel's `TIME_WAIT`): further `Insert`/`Delete` announcements are
//! ignored until [`LeapIndicator::NoWarning`] (or `Unsynchronized`, which also
//! means "no leap announced") clears the state, so an upstream that keeps
//! announcing the leap for a while after midnight does not cause a second one.
//! [`SteeredClock::leap_applied_at`] reports the last leap applied, with the
//! raw reading at which the clock stepped.
//!
//! A [`SteeredClock::step`] that carries local time past an armed leap's
//! instant consumes it without applying it (the time stepped to already
//! counts the leap; the kernel, which compares for equality with the leap
//! second, never applies it either) and enters `Wait`.
//!
//! # Invariants
//!
//! Local time never decreases as the raw reading increases, except by an
//! explicit negative step or a leap insertion (1 s). The slope of local time
//! per raw second stays within `1 ± (MAX_TICK_RATE + max_frequency + slew
//! rate)`, at most `1 ± 0.21` (tick 10 %, limits capped at [`RATE_CEILING`]
//! (1 %), user slews at [`MAX_USER_SLEW_RATE`] (10 %)), far from 0, and the
//! single rounding of frequency remainder plus phase keeps this true unit by
//! unit.
//! Arithmetic is in `i128` units of 2⁻³² s, except the phase function, which is
//! `f64` using only IEEE 754 basic operations: the exponential is computed
//! here (range reduction and a Taylor series), not by the platform's `libm`,
//! so results are identical on every platform.

use super::NtpClock;
use crate::constants::{MAXFREQ, PANICT};
use crate::server::smear::LeapKind;
use crate::time::{NtpDuration, NtpTime};
use crate::wire::v4::LeapIndicator;

/// 2^-32 s units per second.
const UNITS_PER_SEC: i128 = 1 << 32;
/// Seconds in a day of the NTP timescale (no leap seconds).
const SECS_PER_DAY: i128 = 86_400;
const TWO_POW_32: f64 = 4_294_967_296.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
/// Corrections (frequency and slew) are computed for raw spans within about
/// ±270 years of the anchor (2^65 units); beyond, they stop growing. (With
/// the tick, `|F| < 0.111 · 2^64 < 2^61`, so `span · F` fits an `i128`.)
const SPAN_MAX: i128 = 1 << 65;

/// Timer ticks per second the tick length is expressed in (`USER_HZ`).
pub const USER_HZ: i64 = 100;
/// Nominal tick length, µs (`1000000 / USER_HZ`).
pub const TICK_NOMINAL_USEC: i64 = 1_000_000 / USER_HZ;
/// Shortest tick `adjtimex(ADJ_TICK)` accepts, µs (`900000 / USER_HZ`).
pub const TICK_MIN_USEC: i64 = 900_000 / USER_HZ;
/// Longest tick `adjtimex(ADJ_TICK)` accepts, µs (`1100000 / USER_HZ`).
pub const TICK_MAX_USEC: i64 = 1_100_000 / USER_HZ;
/// The rate the tick can add or remove, s/s: 10 %.
pub const MAX_TICK_RATE: f64 = 0.1;
/// Upper bound on the rate of a [`SteeredClock::slew_phase`]: 10 %, what the
/// tick allows.
pub const MAX_USER_SLEW_RATE: f64 = 0.1;

/// The rate (s/s) a tick length of `tick_usec` adds to the clock.
pub fn tick_rate(tick_usec: i64) -> f64 {
    (tick_usec - TICK_NOMINAL_USEC) as f64 / TICK_NOMINAL_USEC as f64
}

/// The time constant (s) of the kernel PLL's phase adjustment for the
/// `timex.constant` `time_constant` (0..=10, `MAXTC`): `2^(SHIFT_PLL + tc)`
/// with `SHIFT_PLL` = 2 (kernel/time/ntp.c `ntp_offset_chunk`).
pub fn kernel_pll_time_constant(time_constant: u8) -> f64 {
    const SHIFT_PLL: u32 = 2;
    const MAXTC: u8 = 10;
    f64::from(1u32 << (SHIFT_PLL + u32::from(time_constant.min(MAXTC))))
}

/// The split of a total frequency correction `f` (s/s) into a tick length
/// (µs, within `TICK_MIN_USEC..=TICK_MAX_USEC`) and the `ADJ_FREQUENCY`
/// remainder (s/s), as chrony's Linux driver does: the nearest tick, the
/// rest (within ±50 ppm for `f` in range) to the frequency. NaN gives the
/// nominal tick and 0.
pub fn split_frequency(f: f64) -> (i64, f64) {
    if f.is_nan() {
        return (TICK_NOMINAL_USEC, 0.0);
    }
    let delta = (f * TICK_NOMINAL_USEC as f64).round().clamp(-1000.0, 1000.0) as i64;
    let tick = TICK_NOMINAL_USEC + delta;
    (tick, f - tick_rate(tick))
}

/// The kernel's `MAXPHASE`: the largest offset the PLL accepts (0.5 s).
pub const KERNEL_MAXPHASE: NtpDuration = NtpDuration::from_bits(1 << 31);

/// The kernel's limit on the slew rate (`MAX_TICKADJ`, 500 µs per second).
pub const KERNEL_MAX_SLEW_RATE: f64 = 500e-6;

/// Upper bound on [`SteeredConfig::max_frequency`] and
/// [`SteeredConfig::max_slew_rate`]: 1 % (s/s). It keeps the clock's rate far
/// from zero, which the never-backwards invariant relies on.
pub const RATE_CEILING: f64 = 0.01;

/// Limits of a [`SteeredClock`]. The default is the Linux kernel's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteeredConfig {
    /// Largest magnitude of the frequency correction, s/s; larger requests
    /// are clamped. Default [`MAXFREQ`] (500 ppm). Taken within
    /// `[0, RATE_CEILING]`; NaN counts as 0.
    pub max_frequency: f64,
    /// Largest phase slew rate, s/s. Default [`KERNEL_MAX_SLEW_RATE`]
    /// (500 ppm). Taken within `[0, RATE_CEILING]`; 0 freezes the phase (no
    /// slewing at all); NaN counts as 0.
    pub max_slew_rate: f64,
    /// Largest magnitude of the offset [`SteeredClock::adjust_phase`]
    /// accepts; larger offsets are clamped, like the kernel PLL's input.
    /// Default [`KERNEL_MAXPHASE`] (0.5 s). Taken within `[0, PANICT]`
    /// (1000 s; larger corrections are for [`SteeredClock::step`]).
    pub max_phase: NtpDuration,
}

impl Default for SteeredConfig {
    fn default() -> Self {
        SteeredConfig { max_frequency: MAXFREQ, max_slew_rate: KERNEL_MAX_SLEW_RATE, max_phase: KERNEL_MAXPHASE }
    }
}

impl SteeredConfig {
    fn sanitized(self) -> Self {
        let rate = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, RATE_CEILING) };
        let max_phase_cap = NtpDuration::from_seconds(PANICT as i64);
        SteeredConfig {
            max_frequency: rate(self.max_frequency),
            max_slew_rate: rate(self.max_slew_rate),
            max_phase: self.max_phase.abs().min(max_phase_cap),
        }
    }
}

/// Why an adjustment was refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteerError {
    /// [`SteeredClock::set_frequency`] was given NaN. (Infinities are clamped.)
    NonFiniteFrequency,
    /// [`SteeredClock::set_tick`] was given a tick outside
    /// `TICK_MIN_USEC..=TICK_MAX_USEC` (the kernel's `EINVAL`).
    TickOutOfRange(i64),
}

impl core::fmt::Display for SteerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SteerError::NonFiniteFrequency => write!(f, "frequency correction is NaN"),
            SteerError::TickOutOfRange(t) => {
                write!(f, "tick {t} us is outside {TICK_MIN_USEC}..={TICK_MAX_USEC} us (ADJ_TICK)")
            }
        }
    }
}

impl std::error::Error for SteerError {}

/// A leap second the clock has applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeapEvent {
    /// Inserted or deleted.
    pub kind: LeapKind,
    /// 00:00:00 UTC ending the leap day, on the NTP timescale (as
    /// [`crate::server::SmearConfig::leap_time`]). The clock stepped when its
    /// local time reached this instant (insertion: back to `leap_time − 1 s`)
    /// or `leap_time − 1 s` (deletion: forward to `leap_time`).
    pub leap_time: NtpTime,
    /// The first raw reading at which the step was in effect.
    pub raw: NtpTime,
}

/// Where the leap-second machinery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeapStatus {
    /// No leap armed (the kernel's `TIME_OK`).
    Idle,
    /// A leap is armed (`TIME_INS` / `TIME_DEL`).
    Armed {
        /// Inserted or deleted.
        kind: LeapKind,
        /// 00:00:00 UTC ending the leap day.
        leap_time: NtpTime,
    },
    /// The armed leap was applied (or stepped past); new announcements are
    /// ignored until cleared with [`LeapIndicator::NoWarning`] (`TIME_WAIT`).
    Wait,
}

/// A kernel-like disciplined clock over a raw time source, as a pure state
/// machine; see the [module documentation](self) for the model.
///
/// Adjustments return the local time at which they took effect, like
/// [`NtpClock`]'s.
#[derive(Clone, Debug, PartialEq)]
pub struct SteeredClock {
    config: SteeredConfig,
    /// Raw reading of the last change, in 2^-32 s units.
    anchor_raw: i128,
    /// Local time at `anchor_raw` (leaps already applied), in units.
    anchor_local: i128,
    /// Total frequency correction (tick and `ADJ_FREQUENCY`), s/s.
    frequency: f64,
    /// `round(frequency · 2^64)`.
    frequency_fixed: i128,
    /// Tick length, µs.
    tick_usec: i64,
    /// The `ADJ_FREQUENCY` part of `frequency`, s/s.
    kernel_frequency: f64,
    /// Phase still to slew at `anchor_raw`, s.
    phase_s: f64,
    /// Slew time constant, s (≥ 0).
    tau_s: f64,
    /// Rate limit of the slew in progress, s/s.
    slew_rate: f64,
    leap: LeapStatus,
    last_leap: Option<LeapEvent>,
}

fn units(t: NtpTime) -> i128 {
    (i128::from(t.secs_since_1900()) << 32) + i128::from(t.fraction())
}

fn from_units(u: i128) -> NtpTime {
    let min = i128::from(i64::MIN) << 32;
    let max = (i128::from(i64::MAX) << 32) | 0xFFFF_FFFF;
    let u = u.clamp(min, max);
    NtpTime::new((u >> 32) as i64, u as u32)
}

impl SteeredClock {
    /// A clock that reads the same as the raw source at `raw_now`, with no
    /// correction, no slew and no leap armed, with the kernel's limits.
    pub fn new(raw_now: NtpTime) -> Self {
        Self::with_config(raw_now, raw_now, SteeredConfig::default())
    }

    /// A clock that reads `local_now` when the raw source reads `raw_now`,
    /// with the given limits (see [`SteeredConfig`] for how they are bounded).
    pub fn with_config(raw_now: NtpTime, local_now: NtpTime, config: SteeredConfig) -> Self {
        SteeredClock {
            config: config.sanitized(),
            anchor_raw: units(raw_now),
            anchor_local: units(local_now),
            frequency: 0.0,
            frequency_fixed: 0,
            tick_usec: TICK_NOMINAL_USEC,
            kernel_frequency: 0.0,
            phase_s: 0.0,
            tau_s: 0.0,
            slew_rate: config.sanitized().max_slew_rate,
            leap: LeapStatus::Idle,
            last_leap: None,
        }
    }

    /// The limits in force (after bounding).
    pub fn config(&self) -> &SteeredConfig {
        &self.config
    }

    /// The total frequency correction in s/s (tick and `ADJ_FREQUENCY`), as
    /// set (after clamping).
    pub fn frequency(&self) -> f64 {
        self.frequency
    }

    /// The tick length, µs (`ADJ_TICK`; nominal [`TICK_NOMINAL_USEC`]).
    pub fn tick_usec(&self) -> i64 {
        self.tick_usec
    }

    /// The `ADJ_FREQUENCY` part of the correction, s/s (within
    /// `±max_frequency`).
    pub fn kernel_frequency(&self) -> f64 {
        self.kernel_frequency
    }

    /// The rate limit of the slew in progress, s/s.
    pub fn slew_rate(&self) -> f64 {
        self.slew_rate
    }

    /// The time constant of the phase slew in progress (zero before any).
    pub fn slew_time_constant(&self) -> NtpDuration {
        NtpDuration::from_seconds_f64(self.tau_s)
    }

    /// The local time when the raw source reads `raw`.
    pub fn time_at(&self, raw: NtpTime) -> NtpTime {
        from_units(self.local_units(units(raw)))
    }

    /// The phase the clock still has to slew when the raw source reads `raw`
    /// (positive: the clock will still move forward).
    pub fn remaining_phase(&self, raw: NtpTime) -> NtpDuration {
        let d = units(raw) - self.anchor_raw;
        NtpDuration::from_seconds_f64(self.phase_s - self.slewed_s(d))
    }

    /// The leap-second state when the raw source reads `raw` (an armed leap
    /// whose instant has come is reported as [`LeapStatus::Wait`]).
    pub fn leap_status(&self, raw: NtpTime) -> LeapStatus {
        if self.fired(units(raw)).is_some() {
            LeapStatus::Wait
        } else {
            self.leap
        }
    }

    /// The last leap second applied by the time the raw source reads `raw`,
    /// if any.
    pub fn leap_applied_at(&self, raw: NtpTime) -> Option<LeapEvent> {
        self.fired(units(raw)).or(self.last_leap)
    }

    /// Sets the frequency correction to `frequency` s/s (clamped to
    /// `±max_frequency`) from raw reading `raw` on, replacing the previous
    /// one. Local time is continuous. Returns the local time at `raw`.
    ///
    /// This is `ADJ_FREQUENCY`: the tick length stays; the clock runs at
    /// `1 + tick_rate(tick) + frequency`.
    pub fn set_frequency(&mut self, raw: NtpTime, frequency: f64) -> Result<NtpTime, SteerError> {
        if frequency.is_nan() {
            return Err(SteerError::NonFiniteFrequency);
        }
        let r = self.rebase(raw);
        let limit = self.config.max_frequency;
        self.kernel_frequency = frequency.clamp(-limit, limit);
        self.set_total(tick_rate(self.tick_usec) + self.kernel_frequency);
        Ok(self.time_of(r))
    }

    /// Sets the tick length to `tick_usec` µs from raw reading `raw` on
    /// (`ADJ_TICK`), keeping the `ADJ_FREQUENCY` part. A tick outside
    /// `TICK_MIN_USEC..=TICK_MAX_USEC` is refused, as the kernel refuses it,
    /// and changes nothing. Returns the local time at `raw`.
    pub fn set_tick(&mut self, raw: NtpTime, tick_usec: i64) -> Result<NtpTime, SteerError> {
        if !(TICK_MIN_USEC..=TICK_MAX_USEC).contains(&tick_usec) {
            return Err(SteerError::TickOutOfRange(tick_usec));
        }
        let r = self.rebase(raw);
        self.tick_usec = tick_usec;
        self.set_total(tick_rate(tick_usec) + self.kernel_frequency);
        Ok(self.time_of(r))
    }

    /// Sets the total frequency correction `frequency` s/s (clamped to
    /// `±(MAX_TICK_RATE + max_frequency)`) through the tick and
    /// `ADJ_FREQUENCY` together ([`split_frequency`]), from raw reading `raw`
    /// on. Local time is continuous. Returns the local time at `raw`.
    pub fn set_total_frequency(&mut self, raw: NtpTime, frequency: f64) -> Result<NtpTime, SteerError> {
        if frequency.is_nan() {
            return Err(SteerError::NonFiniteFrequency);
        }
        let r = self.rebase(raw);
        let limit = MAX_TICK_RATE + self.config.max_frequency;
        let f = frequency.clamp(-limit, limit);
        let (tick, rest) = split_frequency(f);
        let kernel_limit = self.config.max_frequency;
        self.tick_usec = tick;
        self.kernel_frequency = rest.clamp(-kernel_limit, kernel_limit);
        // The wanted total when the kernel part could take the remainder
        // (always, unless max_frequency is below 50 ppm), so F is exact.
        let total = if rest.abs() <= kernel_limit { f } else { tick_rate(tick) + self.kernel_frequency };
        self.set_total(total);
        Ok(self.time_of(r))
    }

    fn set_total(&mut self, total: f64) {
        self.frequency = total;
        self.frequency_fixed = (total * TWO_POW_64).round() as i128;
    }

    /// Starts slewing `offset` (clamped to `±max_phase`; positive moves the
    /// clock forward) with time constant `time_constant` from raw reading
    /// `raw` on, replacing any slew in progress: exponential, with the rate
    /// limited to `max_slew_rate` (module documentation). A negative time
    /// constant counts as zero (linear slew at the rate limit). Returns the
    /// local time at `raw`.
    pub fn adjust_phase(&mut self, raw: NtpTime, offset: NtpDuration, time_constant: NtpDuration) -> NtpTime {
        let r = self.rebase(raw);
        let limit = self.config.max_phase.to_seconds_f64();
        self.phase_s = offset.to_seconds_f64().clamp(-limit, limit);
        self.tau_s = time_constant.to_seconds_f64().max(0.0);
        self.slew_rate = self.config.max_slew_rate;
        self.time_of(r)
    }

    /// Starts a user-space slew of `offset` (clamped to ±`PANICT`) with
    /// time constant `time_constant` and rate limit `max_rate` s/s from raw
    /// reading `raw` on, replacing any slew in progress: chrony's slew through
    /// tick and frequency (module documentation). The rate is bounded by
    /// [`MAX_USER_SLEW_RATE`] and by the headroom the tick range leaves next
    /// to the frequency in force, `MAX_TICK_RATE + max_frequency − |f|` (set
    /// the frequency first); NaN counts as 0 (the phase stays). Returns the
    /// local time at `raw`.
    pub fn slew_phase(&mut self, raw: NtpTime, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> NtpTime {
        let r = self.rebase(raw);
        let limit = PANICT;
        self.phase_s = offset.to_seconds_f64().clamp(-limit, limit);
        self.tau_s = time_constant.to_seconds_f64().max(0.0);
        let headroom = (MAX_TICK_RATE + self.config.max_frequency - self.frequency.abs()).max(0.0);
        self.slew_rate = if max_rate.is_nan() { 0.0 } else { max_rate.clamp(0.0, MAX_USER_SLEW_RATE.min(headroom)) };
        self.time_of(r)
    }

    /// Steps local time by `offset` at raw reading `raw` and cancels any slew
    /// in progress. A step past an armed leap's instant consumes the leap
    /// without applying it ([`LeapStatus::Wait`]). Returns the local time
    /// after the step.
    pub fn step(&mut self, raw: NtpTime, offset: NtpDuration) -> NtpTime {
        let r = self.rebase(raw);
        self.anchor_local += i128::from(offset.to_bits());
        self.phase_s = 0.0;
        if let LeapStatus::Armed { kind, leap_time } = self.leap {
            if self.anchor_local >= threshold(kind, leap_time) {
                self.leap = LeapStatus::Wait;
            }
        }
        self.time_of(r)
    }

    /// Arms (`Insert`, `Delete`) or clears (`NoWarning`, `Unsynchronized`) a
    /// leap second at the end of the current UTC day of the steered clock, as
    /// the kernel's `STA_INS`/`STA_DEL` do; ignored while in
    /// [`LeapStatus::Wait`] unless clearing. Returns the local time at `raw`.
    pub fn set_leap(&mut self, raw: NtpTime, leap: LeapIndicator) -> NtpTime {
        let r = self.rebase(raw);
        let kind = match leap {
            LeapIndicator::Insert => LeapKind::Insert,
            LeapIndicator::Delete => LeapKind::Delete,
            LeapIndicator::NoWarning | LeapIndicator::Unsynchronized => {
                self.leap = LeapStatus::Idle;
                return self.time_of(r);
            }
        };
        if self.leap != LeapStatus::Wait {
            // The first step instant (00:00:00 for an insertion, 23:59:59 for
            // a deletion) strictly after the current local time.
            let day = SECS_PER_DAY * UNITS_PER_SEC;
            let second_of_day = match kind {
                LeapKind::Insert => 0,
                LeapKind::Delete => (SECS_PER_DAY - 1) * UNITS_PER_SEC,
            };
            let k = (self.anchor_local - second_of_day).div_euclid(day) + 1;
            let step_at = k * day + second_of_day;
            let leap_time = match kind {
                LeapKind::Insert => step_at,
                LeapKind::Delete => step_at + UNITS_PER_SEC,
            };
            self.leap = LeapStatus::Armed { kind, leap_time: from_units(leap_time) };
        }
        self.time_of(r)
    }

    /// Local time in units at raw `r` (units).
    fn time_of(&self, r: i128) -> NtpTime {
        from_units(self.local_units(r))
    }

    /// The phase slewed `d` units after the anchor, s.
    fn slewed_s(&self, d: i128) -> f64 {
        let t = d.clamp(0, SPAN_MAX) as f64 / TWO_POW_32;
        slewed(self.phase_s, self.tau_s, self.slew_rate, t)
    }

    /// Local time at raw `r` before any armed leap, in units.
    fn unleaped_units(&self, r: i128) -> i128 {
        let d = r - self.anchor_raw;
        let dc = d.clamp(-SPAN_MAX, SPAN_MAX);
        // |dc| ≤ 2^65 and |F| ≤ 0.11 · 2^64 < 2^61: the product fits.
        let prod = dc * self.frequency_fixed;
        let whole = prod >> 64; // floor
        let frac = (prod - (whole << 64)) as u64 as f64 / TWO_POW_64; // [0, 1]
        let phase_units = self.slewed_s(d) * TWO_POW_32;
        let correction = whole + (frac + phase_units).round() as i128;
        self.anchor_local + d + correction
    }

    /// Local time at raw `r`, in units.
    fn local_units(&self, r: i128) -> i128 {
        let u = self.unleaped_units(r);
        match self.leap {
            LeapStatus::Armed { kind, leap_time } if u >= threshold(kind, leap_time) => match kind {
                LeapKind::Insert => u - UNITS_PER_SEC,
                LeapKind::Delete => u + UNITS_PER_SEC,
            },
            _ => u,
        }
    }

    /// The armed leap, if it has taken effect by raw `r`, with the first raw
    /// reading at which it did (bisection: unleaped time is non-decreasing).
    fn fired(&self, r: i128) -> Option<LeapEvent> {
        let LeapStatus::Armed { kind, leap_time } = self.leap else { return None };
        let thr = threshold(kind, leap_time);
        if self.unleaped_units(r) < thr {
            return None;
        }
        let (mut lo, mut hi) = (self.anchor_raw, r);
        if hi <= lo || self.unleaped_units(lo) >= thr {
            return Some(LeapEvent { kind, leap_time, raw: from_units(hi.min(lo)) });
        }
        // Invariant: unleaped(lo) < thr <= unleaped(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.unleaped_units(mid) >= thr {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(LeapEvent { kind, leap_time, raw: from_units(hi) })
    }

    /// Re-anchors at raw reading `raw`: applies a leap that has fired, moves
    /// the anchor, keeps the remaining phase. Returns `raw` in units.
    fn rebase(&mut self, raw: NtpTime) -> i128 {
        let r = units(raw);
        let local = self.local_units(r);
        if let Some(event) = self.fired(r) {
            self.last_leap = Some(event);
            self.leap = LeapStatus::Wait;
        }
        self.phase_s -= self.slewed_s(r - self.anchor_raw);
        self.anchor_raw = r;
        self.anchor_local = local;
        r
    }
}

/// The local reading (units) at which an armed leap steps the clock.
fn threshold(kind: LeapKind, leap_time: NtpTime) -> i128 {
    match kind {
        LeapKind::Insert => units(leap_time),
        LeapKind::Delete => units(leap_time) - UNITS_PER_SEC,
    }
}

/// Phase (s) slewed `t` seconds into a slew of `theta` s with time constant
/// `tau` s and rate limit `rate` s/s: the solution of
/// `dρ/dt = −sign(ρ)·min(rate, |ρ|/tau)`, `ρ(0) = theta`, as `theta − ρ(t)`.
pub(crate) fn slewed(theta: f64, tau: f64, rate: f64, t: f64) -> f64 {
    if theta == 0.0 || t <= 0.0 {
        return 0.0;
    }
    let a = theta.abs();
    // Below the knee the exponential is no faster than the limit.
    let knee = tau * rate;
    let magnitude = if a > knee {
        // Linear at `rate` until the knee (rate = 0: never).
        let t1 = (a - knee) / rate;
        if t <= t1 {
            rate * t
        } else if tau > 0.0 {
            a - knee * exp_neg((t - t1) / tau)
        } else {
            a
        }
    } else {
        // Here tau > 0 (a > 0 = knee otherwise).
        a * (1.0 - exp_neg(t / tau))
    };
    magnitude.copysign(theta)
}

/// `e^(−x)` for `x ≥ 0` using only IEEE 754 basic operations (no platform
/// `libm`), so it gives the same bits everywhere. Relative error within a few
/// ulp; 0 beyond `x = 708`, 1 for `x ≤ 0`.
pub(crate) fn exp_neg(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x > 708.0 {
        return 0.0;
    }
    // fdlibm's split of ln 2: k · LN2_HI is exact for k < 2^11.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let k = (x * core::f64::consts::LOG2_E + 0.5).floor();
    // x = k ln2 + r, |r| ≤ ln2/2 (plus rounding).
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // e^(−r) = 1 − r(1 − r/2(1 − r/3(…))): 18 terms leave < 1e-22.
    let mut p = 1.0;
    let mut n = 18.0;
    while n >= 1.0 {
        p = 1.0 - r * p / n;
        n -= 1.0;
    }
    // 2^(−k), 0 ≤ k ≤ 1022: a normal number.
    let scale = f64::from_bits(((1023 - k as i64) as u64) << 52);
    p * scale
}

/// A source of raw time readings for a [`SteeredWith`].
///
/// The daemon implements it with the system `CLOCK_REALTIME`, the simulator
/// with its oscillator model. Any `Fn() -> NtpTime` closure is one.
pub trait RawTime {
    /// The raw source's current reading.
    fn raw_now(&self) -> NtpTime;
}

impl<F: Fn() -> NtpTime> RawTime for F {
    fn raw_now(&self) -> NtpTime {
        self()
    }
}

/// A [`SteeredClock`] together with its raw time source, seen as an
/// [`NtpClock`]: each call reads the raw source once and applies the
/// corresponding [`SteeredClock`] method at that reading.
///
/// It borrows both, so the state stays with its owner (the daemon's
/// observe-only clock, a simulated host) and the view is made for as long as
/// a call such as [`crate::discipline::Action::apply`] lasts.
pub struct SteeredWith<'a, R: RawTime + ?Sized> {
    clock: &'a mut SteeredClock,
    raw: &'a R,
}

impl<'a, R: RawTime + ?Sized> SteeredWith<'a, R> {
    /// The view of `clock` over the raw source `raw`.
    pub fn new(clock: &'a mut SteeredClock, raw: &'a R) -> Self {
        SteeredWith { clock, raw }
    }

    /// The steered clock.
    pub fn clock(&self) -> &SteeredClock {
        self.clock
    }
}

impl<R: RawTime + ?Sized> NtpClock for SteeredWith<'_, R> {
    type Error = SteerError;

    fn now(&self) -> NtpTime {
        self.clock.time_at(self.raw.raw_now())
    }

    /// Through tick and frequency together
    /// ([`SteeredClock::set_total_frequency`]): up to ±10 % + `max_frequency`.
    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, SteerError> {
        self.clock.set_total_frequency(self.raw.raw_now(), frequency)
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.clock.adjust_phase(self.raw.raw_now(), offset, time_constant))
    }

    fn slew_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> Result<NtpTime, SteerError> {
        Ok(self.clock.slew_phase(self.raw.raw_now(), offset, time_constant, max_rate))
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.clock.step(self.raw.raw_now(), offset))
    }

    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, SteerError> {
        Ok(self.clock.set_leap(self.raw.raw_now(), leap))
    }
}

#[cfg(test)]
mod tests;
