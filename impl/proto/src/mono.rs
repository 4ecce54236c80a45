//! Monotonic time for the protocol state machines.
//!
//! The core never reads a clock. Drivers pass [`Instant`]s in: the daemon from
//! the operating system's monotonic clock, the simulator from its virtual time.
//! An `Instant` counts nanoseconds from an arbitrary start chosen by the driver
//! (boot, process start, simulation start); only differences between instants
//! from the same driver mean anything. It never jumps when the system clock is
//! stepped, which is why timers (poll intervals, bursts, back-off) use it and
//! not [`NtpTime`](crate::time::NtpTime).
//!
//! Arithmetic saturates instead of panicking or wrapping: `u64` nanoseconds
//! last 584 years, so saturation only guards against nonsense inputs.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point on the driver's monotonic timeline, in nanoseconds since an
/// arbitrary start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Instant(u64);

impl Instant {
    /// The start of the timeline.
    pub const ZERO: Instant = Instant(0);
    /// The last representable instant (about 584 years after the start).
    pub const MAX: Instant = Instant(u64::MAX);

    /// From nanoseconds since the driver's start.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// From whole seconds since the driver's start, saturating.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the driver's start.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, or `None` past [`Instant::MAX`].
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Instant)
    }

    /// `self - d`, or `None` before [`Instant::ZERO`].
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(nanos).map(Instant)
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Instant::MAX)
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        self.checked_sub(d).unwrap_or(Instant::ZERO)
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.checked_duration_since(earlier).unwrap_or(Duration::ZERO)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating subtraction.
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating difference: zero if `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({}.{:09}s)", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(10);
        assert_eq!(t + Duration::from_millis(1500), Instant::from_nanos(11_500_000_000));
        assert_eq!(t - Duration::from_secs(20), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::from_secs(4), Duration::from_secs(6));
        assert_eq!(Instant::ZERO.checked_duration_since(t), None);
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert_eq!(format!("{:?}", Instant::from_nanos(2_000_000_001)), "Instant(2.000000001s)");
    }
}
