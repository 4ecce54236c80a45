//! The Linux system clock: reading `CLOCK_REALTIME` and, only when the operator
//! asked for it, adjusting it with `clock_adjtime(2)`.
//!
//! This is the only module of the project that can change the machine's clock.
//! [`SystemClock::read_only`] never calls `clock_adjtime` with modes set, so a
//! daemon built on it observes and serves time but cannot move the clock; the
//! adjusting constructor [`SystemClock::with_control`] exists for `ntplab serve
//! --control-system-clock` and nothing else (tests never use it).

use ntplab_proto::time::{NtpDuration, NtpTime};
use std::io;

/// Leap-second state as the kernel's `STA_INS`/`STA_DEL` bits express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelLeap {
    /// No leap second armed.
    None,
    /// Insert a second at the end of the UTC day.
    Insert,
    /// Delete the last second of the UTC day.
    Delete,
}

/// The system clock.
#[derive(Debug)]
pub struct SystemClock {
    control: bool,
}

/// Why a clock operation was refused.
#[derive(Debug)]
pub enum ClockError {
    /// The daemon was not started with clock control.
    ControlDisabled,
    /// The kernel refused.
    Os(io::Error),
}

impl std::fmt::Display for ClockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClockError::ControlDisabled => {
                f.write_str("system clock control is disabled (start with --control-system-clock to allow it)")
            }
            ClockError::Os(e) => write!(f, "clock_adjtime failed: {e}"),
        }
    }
}

impl std::error::Error for ClockError {}

/// Scale of `timex.freq`: parts per million with a 16-bit binary fraction.
const FREQ_SCALE: f64 = 65536.0;
/// The kernel's frequency limit, ±500 ppm.
const FREQ_MAX_PPM: f64 = 500.0;

impl SystemClock {
    /// A clock that is read but never adjusted.
    pub fn read_only() -> Self {
        SystemClock { control: false }
    }

    /// A clock that may be adjusted. Only for an explicit operator request.
    pub fn with_control() -> Self {
        SystemClock { control: true }
    }

    /// Whether adjustments are allowed.
    pub fn has_control(&self) -> bool {
        self.control
    }

    /// Reads `CLOCK_REALTIME`.
    pub fn now(&self) -> NtpTime {
        realtime_now()
    }

    /// The kernel's current frequency correction in ppm (read-only query).
    pub fn frequency_ppm(&self) -> Result<f64, ClockError> {
        let tx = adjtime(zero_timex())?;
        Ok(tx.freq as f64 / FREQ_SCALE)
    }

    /// Sets the frequency correction in ppm (positive makes the clock run faster).
    pub fn set_frequency_ppm(&mut self, ppm: f64) -> Result<NtpTime, ClockError> {
        self.check()?;
        let mut tx = zero_timex();
        tx.modes = libc::ADJ_FREQUENCY;
        tx.freq = (ppm.clamp(-FREQ_MAX_PPM, FREQ_MAX_PPM) * FREQ_SCALE) as libc::c_long;
        adjtime(tx)?;
        Ok(self.now())
    }

    /// Sets the total frequency correction `frequency` s/s through the tick
    /// length and the frequency together (`ADJ_TICK | ADJ_FREQUENCY`), as
    /// chrony's Linux driver does: up to ±10 % + 500 ppm
    /// ([`timex_tick_and_freq`] gives the values).
    pub fn set_total_frequency(&mut self, frequency: f64) -> Result<NtpTime, ClockError> {
        self.check()?;
        let (tick, freq) = timex_tick_and_freq(frequency);
        let mut tx = zero_timex();
        tx.modes = libc::ADJ_TICK | libc::ADJ_FREQUENCY;
        tx.tick = tick;
        tx.freq = freq;
        adjtime(tx)?;
        Ok(self.now())
    }

    /// Steps the clock by `offset`.
    pub fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, ClockError> {
        self.check()?;
        let nanos = offset.as_nanos();
        let mut tx = zero_timex();
        tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        tx.time.tv_sec = nanos.div_euclid(1_000_000_000) as libc::time_t;
        tx.time.tv_usec = nanos.rem_euclid(1_000_000_000) as libc::suseconds_t;
        adjtime(tx)?;
        Ok(self.now())
    }

    /// Arms (or clears) a leap second at the end of the current UTC day.
    pub fn set_leap(&mut self, leap: KernelLeap) -> Result<NtpTime, ClockError> {
        self.check()?;
        let current = adjtime(zero_timex())?;
        let mut tx = zero_timex();
        tx.modes = libc::ADJ_STATUS;
        tx.status = current.status & !(libc::STA_INS | libc::STA_DEL);
        tx.status |= match leap {
            KernelLeap::None => 0,
            KernelLeap::Insert => libc::STA_INS,
            KernelLeap::Delete => libc::STA_DEL,
        };
        adjtime(tx)?;
        Ok(self.now())
    }

    fn check(&self) -> Result<(), ClockError> {
        if self.control {
            Ok(())
        } else {
            Err(ClockError::ControlDisabled)
        }
    }
}

/// The `timex.tick` (µs per 1/`USER_HZ` s) and `timex.freq` (ppm · 2^16)
/// that make a Linux clock run at `1 + frequency`: the nearest tick within
/// the kernel's 9000..=11000 µs and the remainder, clamped to ±500 ppm, as
/// the frequency ([`ntplab_proto::clock::steered::split_frequency`], the same
/// split the simulated clock uses). NaN gives the nominal values.
pub fn timex_tick_and_freq(frequency: f64) -> (libc::c_long, libc::c_long) {
    let (tick, rest) = ntplab_proto::clock::steered::split_frequency(frequency);
    let freq = (rest * 1e6).clamp(-FREQ_MAX_PPM, FREQ_MAX_PPM) * FREQ_SCALE;
    (tick as libc::c_long, freq.round() as libc::c_long)
}

/// Reads `CLOCK_REALTIME` as an NTP time.
pub fn realtime_now() -> NtpTime {
    // CLOCK_REALTIME cannot fail on Linux with a valid clock id.
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(ts) => NtpTime::from_unix(ts.tv_sec(), ts.tv_nsec().clamp(0, 999_999_999) as u32),
        Err(_) => NtpTime::UNIX_EPOCH,
    }
}

fn zero_timex() -> libc::timex {
    // SAFETY: timex is a plain C struct of integers; all-zero is a valid value
    // and, with modes = 0, a pure query.
    unsafe { std::mem::zeroed() }
}

fn adjtime(mut tx: libc::timex) -> Result<libc::timex, ClockError> {
    // SAFETY: `tx` is a valid, initialised timex that lives across the call.
    let r = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, &mut tx) };
    if r < 0 {
        Err(ClockError::Os(io::Error::last_os_error()))
    } else {
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_clock_refuses_every_adjustment() {
        let mut c = SystemClock::read_only();
        assert!(matches!(c.set_frequency_ppm(1.0), Err(ClockError::ControlDisabled)));
        assert!(matches!(c.step(NtpDuration::from_seconds(1)), Err(ClockError::ControlDisabled)));
        assert!(matches!(c.set_leap(KernelLeap::Insert), Err(ClockError::ControlDisabled)));
        assert!(c.set_frequency_ppm(0.0).unwrap_err().to_string().contains("--control-system-clock"));
    }

    #[test]
    fn frequency_splits_into_tick_and_freq_as_the_kernel_takes_them() {
        // Nominal: 10000 us per 10 ms tick, freq in ppm * 2^16.
        assert_eq!(timex_tick_and_freq(0.0), (10_000, 0));
        assert_eq!(timex_tick_and_freq(10e-6), (10_000, (10.0 * FREQ_SCALE) as libc::c_long));
        // 5 % fast: 500 us more per tick, nothing left for freq.
        assert_eq!(timex_tick_and_freq(5e-2), (10_500, 0));
        // 123.4 ppm: one 100 ppm tick step plus 23.4 ppm.
        assert_eq!(timex_tick_and_freq(-123.4e-6), (9_999, (-23.4 * FREQ_SCALE).round() as libc::c_long));
        // The kernel's bounds: tick 9000..=11000, freq within 500 ppm.
        let (tick, freq) = timex_tick_and_freq(0.5);
        assert_eq!(tick, 11_000);
        assert_eq!(freq, (FREQ_MAX_PPM * FREQ_SCALE) as libc::c_long);
        let (tick, freq) = timex_tick_and_freq(-0.5);
        assert_eq!((tick, freq), (9_000, -(FREQ_MAX_PPM * FREQ_SCALE) as libc::c_long));
        assert_eq!(timex_tick_and_freq(f64::NAN), (10_000, 0));
        // What the kernel then runs at is the frequency asked for.
        for f in [-0.1, -3.3e-2, -1e-4, 7.77e-6, 2.5e-3, 9.99e-2] {
            let (tick, freq) = timex_tick_and_freq(f);
            let rate = (tick - 10_000) as f64 / 10_000.0 + freq as f64 / FREQ_SCALE * 1e-6;
            assert!((rate - f).abs() < 1e-10, "{f}: {rate}");
        }
    }

    #[test]
    fn read_only_clock_refuses_the_tick_too() {
        let mut c = SystemClock::read_only();
        assert!(matches!(c.set_total_frequency(1e-3), Err(ClockError::ControlDisabled)));
    }

    #[test]
    fn reading_works_and_is_current() {
        let c = SystemClock::read_only();
        let a = c.now();
        assert!(a > NtpTime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap());
        assert!(c.frequency_ppm().unwrap().abs() <= FREQ_MAX_PPM);
    }
}
