//! The seam between the sans-IO core and a clock.
//!
//! The core never reads or adjusts a clock itself. The daemon implements
//! [`NtpClock`] on the system clock (clock_adjtime, behind an explicit flag);
//! the simulator implements it on a host clock model. The discipline's
//! [`crate::discipline::Action`]s are applied through it
//! ([`crate::discipline::Action::apply`]).
//!
//! Every adjustment returns the clock's time at which it took effect, so a
//! caller (and a trace) can tell exactly when the clock changed.
//!
//! [`steered`] holds [`SteeredClock`], a software model of a kernel-disciplined
//! clock over a raw time source (the daemon's observe-only mode, the
//! simulator's hosts), and [`SteeredWith`], its [`NtpClock`] view.

use crate::time::{NtpDuration, NtpTime};
use crate::wire::v4::LeapIndicator;

pub mod steered;

pub use steered::{LeapEvent, LeapStatus, RawTime, SteerError, SteeredClock, SteeredConfig, SteeredWith};

/// A clock the discipline can steer.
///
/// Units: times are [`NtpTime`] (era-resolved NTP timescale), offsets
/// [`NtpDuration`] (2^-32 s), frequencies plain `f64` in seconds per second
/// (dimensionless; `1e-6` is 1 ppm).
///
/// Sign conventions: a positive offset means the clock is *behind* and must
/// move forward (the sign of an NTP offset θ = server − client); a positive
/// frequency makes the clock run *faster*.
pub trait NtpClock {
    /// Why an adjustment failed (permission, unsupported, out of range...).
    type Error: core::fmt::Debug;

    /// The clock's current time.
    fn now(&self) -> NtpTime;

    /// Sets the frequency correction, in seconds per second, relative to the
    /// uncorrected oscillator: the clock then advances `(1 + frequency)`
    /// seconds per oscillator second (plus any phase slew in progress). This
    /// replaces the previous correction; it does not add to it. A Linux
    /// clock reaches ±500 ppm through `ADJ_FREQUENCY` alone and ±10 % more
    /// through the tick length (`ADJ_TICK`); clocks clamp to what they reach.
    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, Self::Error>;

    /// Starts slewing the clock by `offset` with an exponential decay of time
    /// constant `time_constant`: after `t` seconds, `offset · (1 − e^(−t/τ))`
    /// has been applied and `offset · e^(−t/τ)` remains (the clock-adjust
    /// process of RFC 5905 §12 / A.5.6.1, or the kernel PLL's offset mode).
    /// Replaces any slew still in progress; the clock never steps.
    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, Self::Error>;

    /// Starts slewing `offset` as [`NtpClock::adjust_phase`] does, but with
    /// the rate limited to `max_rate` s/s instead of the kernel PLL's 500 ppm:
    /// the slew chrony does in user space through the tick length and the
    /// frequency (up to 10 %). With a zero time constant the slew is linear
    /// at `max_rate` until the offset is done. See [`steered`] for the law.
    ///
    /// The default is for clocks whose only slew is the kernel PLL's: it
    /// calls [`NtpClock::adjust_phase`] and ignores `max_rate`.
    fn slew_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> Result<NtpTime, Self::Error> {
        let _ = max_rate;
        self.adjust_phase(offset, time_constant)
    }

    /// Steps the clock by `offset` at once, cancelling any phase slew in
    /// progress. Returns the time after the step.
    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, Self::Error>;

    /// Announces (`Insert`, `Delete`) or clears (`NoWarning`) a leap second
    /// at the end of the current UTC *day*, as the kernel does (Linux
    /// `adjtimex` `STA_INS`/`STA_DEL`: the clock repeats 23:59:59 at the next
    /// midnight, or skips 23:59:59). RFC 5905 §7.3 has the leap indicator warn
    /// of a leap at the end of the current *month*; implementations follow the
    /// kernel's end-of-day rule because that is what the system clock does,
    /// and the daemon arms the leap only on the last day of the month so both
    /// agree. Once applied, the leap is not armed again until cleared (the
    /// kernel's `TIME_WAIT`); see [`steered`] for the model.
    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, Self::Error>;
}
