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
    fn reading_works_and_is_current() {
        let c = SystemClock::read_only();
        let a = c.now();
        assert!(a > NtpTime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap());
        assert!(c.frequency_ppm().unwrap().abs() <= FREQ_MAX_PPM);
    }
}
