//! The 32-bit NTP short format (RFC 5905 §6): 16 bits of seconds and 16 bits of
//! fraction, unsigned, used for root delay and root dispersion.

use crate::time::NtpDuration;
use core::fmt;

/// An unsigned 16.16 fixed-point number of seconds (resolution 15.26 µs, up to 65536 s).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NtpShort(u32);

impl NtpShort {
    /// Zero seconds.
    pub const ZERO: NtpShort = NtpShort(0);
    /// The largest value, just under 65536 s.
    pub const MAX: NtpShort = NtpShort(u32::MAX);

    /// From the 32 bits on the wire.
    pub const fn from_bits(bits: u32) -> Self {
        NtpShort(bits)
    }

    /// The 32 bits on the wire.
    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// In seconds.
    pub fn to_seconds_f64(self) -> f64 {
        f64::from(self.0) / 65536.0
    }

    /// From seconds, rounded up to the next representable value (so a bound never
    /// shrinks) and saturating at both ends; NaN gives zero.
    pub fn from_seconds_f64(secs: f64) -> Self {
        NtpShort((secs * 65536.0).ceil() as u32)
    }

    /// As a duration.
    pub const fn to_duration(self) -> NtpDuration {
        NtpDuration::from_bits((self.0 as i64) << 16)
    }

    /// From a duration, rounded up, saturating; negative durations give zero.
    pub const fn from_duration(d: NtpDuration) -> Self {
        let bits = d.to_bits();
        if bits <= 0 {
            return NtpShort(0);
        }
        let v = (bits as u64).div_ceil(1 << 16);
        if v > u32::MAX as u64 {
            NtpShort(u32::MAX)
        } else {
            NtpShort(v as u32)
        }
    }
}

impl fmt::Debug for NtpShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.to_seconds_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(NtpShort::from_bits(0x0000_8000).to_seconds_f64(), 0.5);
        assert_eq!(NtpShort::from_seconds_f64(0.5).to_bits(), 0x8000);
        assert_eq!(NtpShort::from_seconds_f64(1e-9).to_bits(), 1, "rounds up");
        assert_eq!(NtpShort::from_seconds_f64(-1.0).to_bits(), 0);
        assert_eq!(NtpShort::from_seconds_f64(1e9), NtpShort::MAX);
        assert_eq!(NtpShort::from_duration(NtpDuration::from_seconds(-3)), NtpShort::ZERO);
        assert_eq!(NtpShort::from_duration(NtpDuration::from_seconds(70_000)), NtpShort::MAX);
    }

    proptest! {
        #[test]
        fn duration_round_trip(bits: u32) {
            let s = NtpShort::from_bits(bits);
            prop_assert_eq!(NtpShort::from_duration(s.to_duration()), s);
            prop_assert_eq!(NtpShort::from_seconds_f64(s.to_seconds_f64()), s);
        }
    }
}
