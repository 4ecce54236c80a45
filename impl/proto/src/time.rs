//! Time types.
//!
//! Three kinds of value, kept apart on purpose:
//!
//! - [`NtpTimestamp`]: the 64-bit on-wire timestamp (RFC 5905 §6): 32 bits of
//!   seconds since the start of its era and 32 bits of fraction. It carries no
//!   era, so on its own it names 136-year-periodic instants.
//! - [`NtpTime`]: an era-resolved instant on the NTP timescale, seconds since
//!   1900-01-01T00:00:00Z as a signed 64-bit number plus a 32-bit fraction. It
//!   reaches before 1900 (negative eras) and far beyond 2036.
//! - [`NtpDuration`]: a signed difference in units of 2^-32 s (232 ps),
//!   covering ±68 years, as RFC 5905 §6 prescribes for first-order differences.
//!
//! Conversions between a wire timestamp and a full time need outside context.
//! [`NtpTimestamp::resolve`] takes a *pivot*: the result is the instant with
//! the given low 64 bits that lies within 2^31 s (about 68 years) of the pivot.
//! [`NtpTimestamp::resolve_rfc4330`] applies RFC 4330 §3's rule (most
//! significant bit set: 1968–2036, clear: 2036–2104), which is what Wireshark
//! does and what a decoder without other context should use.
//!
//! The NTP timescale, like POSIX time, has 86 400 seconds in every day: leap
//! seconds are not counted, so conversions to and from UTC calendar dates
//! ignore them.

use core::fmt;
use core::ops::{Add, Neg, Sub};

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const UNIX_EPOCH_NTP_SECS: i64 = 2_208_988_800;

/// Length of one NTP era in seconds (2^32).
pub const ERA_SECS: i64 = 1 << 32;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Converts a 32-bit binary fraction of a second to nanoseconds, rounding to nearest.
///
/// Returns a value in `0..=1_000_000_000`; the caller carries a result of exactly
/// one second into the seconds.
fn fraction_to_nanos(fraction: u32) -> u64 {
    (u64::from(fraction) * NANOS_PER_SEC + (1 << 31)) >> 32
}

/// Converts nanoseconds (`< 1e9`) to a 32-bit binary fraction, rounding to nearest.
///
/// Returns `None` when rounding reaches a whole second (only for values within
/// 0.116 ns of one second, which `nanos < 1e9` excludes), so the result always fits.
fn nanos_to_fraction(nanos: u32) -> u32 {
    debug_assert!(u64::from(nanos) < NANOS_PER_SEC);
    let f = ((u64::from(nanos) << 32) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    // nanos <= 999_999_999 gives f <= 4_294_967_295.7.. rounded to 2^32 - 0 at most;
    // (999_999_999 << 32 + 5e8) / 1e9 = 4294967291, so this never saturates.
    f.min(u64::from(u32::MAX)) as u32
}

/// A 64-bit NTP timestamp as carried on the wire (RFC 5905 §6).
///
/// The value zero is reserved to mean "unknown" or "not set".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The reserved all-zero timestamp.
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// From the 64 bits as they appear on the wire (big-endian order already decoded).
    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }

    /// The 64 bits as they go on the wire.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// From era-relative seconds and a 32-bit fraction.
    pub const fn from_parts(seconds: u32, fraction: u32) -> Self {
        NtpTimestamp(((seconds as u64) << 32) | fraction as u64)
    }

    /// Seconds since the start of the (unknown) era.
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Fraction of a second in units of 2^-32 s.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Whether this is the reserved zero value.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The instant with these low 64 bits that lies within 2^31 seconds of `pivot`
    /// (at or after `pivot - 2^31 s`, before `pivot + 2^31 s`).
    pub fn resolve(self, pivot: NtpTime) -> NtpTime {
        let diff = self.wrapping_sub(pivot.to_timestamp());
        pivot + diff
    }

    /// The era resolution of RFC 4330 §3 (and of Wireshark): a set most
    /// significant bit means era 0 (1968-01-20 to 2036-02-07), a clear one era 1
    /// (2036-02-07 to 2104-02-26).
    pub fn resolve_rfc4330(self) -> NtpTime {
        let era = if self.seconds() & 0x8000_0000 != 0 { 0 } else { 1 };
        NtpTime::from_era_parts(era, self.seconds(), self.fraction())
    }

    /// First-order difference `self - earlier` in two's complement, as RFC 5905 §6
    /// requires: correct across an era boundary whenever the true difference is
    /// within ±68 years.
    pub const fn wrapping_sub(self, earlier: NtpTimestamp) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(earlier.0) as i64)
    }

    /// Adds a duration, wrapping at the era boundary.
    pub const fn wrapping_add(self, d: NtpDuration) -> NtpTimestamp {
        NtpTimestamp(self.0.wrapping_add(d.0 as u64))
    }
}

impl fmt::Debug for NtpTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtpTimestamp({:016x})", self.0)
    }
}

/// A signed duration in units of 2^-32 seconds (range ±68 years, resolution 232 ps).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NtpDuration(i64);

impl NtpDuration {
    /// Zero length.
    pub const ZERO: NtpDuration = NtpDuration(0);
    /// The longest positive duration.
    pub const MAX: NtpDuration = NtpDuration(i64::MAX);
    /// The longest negative duration.
    pub const MIN: NtpDuration = NtpDuration(i64::MIN);

    /// From a count of 2^-32 s units.
    pub const fn from_bits(bits: i64) -> Self {
        NtpDuration(bits)
    }

    /// The count of 2^-32 s units.
    pub const fn to_bits(self) -> i64 {
        self.0
    }

    /// From whole seconds, saturating beyond ±68 years.
    pub const fn from_seconds(secs: i64) -> Self {
        if secs >= 1 << 31 {
            Self::MAX
        } else if secs < -(1 << 31) {
            Self::MIN
        } else {
            NtpDuration(secs << 32)
        }
    }

    /// From nanoseconds, rounded to the nearest unit (halves away from zero), saturating.
    pub fn from_nanos(nanos: i64) -> Self {
        let scaled = i128::from(nanos) << 32;
        let half = if scaled < 0 { -500_000_000 } else { 500_000_000 };
        let units = (scaled + half) / 1_000_000_000;
        NtpDuration(units.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// In nanoseconds, rounded towards zero.
    pub fn as_nanos(self) -> i64 {
        ((i128::from(self.0) * 1_000_000_000) >> 32) as i64
    }

    /// From floating-point seconds, saturating; NaN gives zero.
    pub fn from_seconds_f64(secs: f64) -> Self {
        // `as` saturates and maps NaN to 0.
        NtpDuration((secs * 4_294_967_296.0) as i64)
    }

    /// In floating-point seconds.
    pub fn to_seconds_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }

    /// Absolute value, saturating at [`NtpDuration::MAX`].
    pub const fn abs(self) -> Self {
        NtpDuration(self.0.saturating_abs())
    }

    /// Saturating addition.
    pub const fn saturating_add(self, other: Self) -> Self {
        NtpDuration(self.0.saturating_add(other.0))
    }

    /// Saturating subtraction.
    pub const fn saturating_sub(self, other: Self) -> Self {
        NtpDuration(self.0.saturating_sub(other.0))
    }

    /// Halves, rounding towards negative infinity.
    pub const fn half(self) -> Self {
        NtpDuration(self.0 >> 1)
    }
}

impl Add for NtpDuration {
    type Output = NtpDuration;
    fn add(self, rhs: Self) -> Self {
        self.saturating_add(rhs)
    }
}

impl Sub for NtpDuration {
    type Output = NtpDuration;
    fn sub(self, rhs: Self) -> Self {
        self.saturating_sub(rhs)
    }
}

impl Neg for NtpDuration {
    type Output = NtpDuration;
    fn neg(self) -> Self {
        NtpDuration(self.0.saturating_neg())
    }
}

impl fmt::Debug for NtpDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.9}s", self.to_seconds_f64())
    }
}

/// An era-resolved instant on the NTP timescale.
///
/// Seconds since 1900-01-01T00:00:00Z (negative before it) and a fraction in
/// units of 2^-32 s. Ordering is chronological.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NtpTime {
    secs: i64,
    fraction: u32,
}

impl NtpTime {
    /// 1900-01-01T00:00:00Z, the start of era 0.
    pub const PRIME_EPOCH: NtpTime = NtpTime { secs: 0, fraction: 0 };
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: NtpTime = NtpTime { secs: UNIX_EPOCH_NTP_SECS, fraction: 0 };
    /// 2036-02-07T06:28:16Z, the start of era 1.
    pub const ERA1: NtpTime = NtpTime { secs: ERA_SECS, fraction: 0 };

    /// From seconds since 1900 and a 32-bit fraction.
    pub const fn new(secs: i64, fraction: u32) -> Self {
        NtpTime { secs, fraction }
    }

    /// From an era number and the era-relative seconds and fraction.
    pub const fn from_era_parts(era: i32, seconds: u32, fraction: u32) -> Self {
        NtpTime { secs: era as i64 * ERA_SECS + seconds as i64, fraction }
    }

    /// Whole seconds since 1900-01-01T00:00:00Z (floor).
    pub const fn secs_since_1900(self) -> i64 {
        self.secs
    }

    /// Fraction of the second in units of 2^-32 s.
    pub const fn fraction(self) -> u32 {
        self.fraction
    }

    /// The era number (0 for 1900–2036, 1 for 2036–2172, -1 before 1900).
    pub const fn era(self) -> i32 {
        self.secs.div_euclid(ERA_SECS) as i32
    }

    /// Seconds since the start of the era.
    pub const fn era_offset(self) -> u32 {
        self.secs.rem_euclid(ERA_SECS) as u32
    }

    /// The wire timestamp: the low 64 bits, era dropped.
    pub const fn to_timestamp(self) -> NtpTimestamp {
        NtpTimestamp::from_parts(self.era_offset(), self.fraction)
    }

    /// From a Unix time (seconds since 1970, nanoseconds below `1e9`).
    ///
    /// Nanoseconds of `1e9` or more are carried into the seconds.
    pub fn from_unix(unix_secs: i64, nanos: u32) -> Self {
        let secs = unix_secs
            .saturating_add(UNIX_EPOCH_NTP_SECS)
            .saturating_add(i64::from(nanos / 1_000_000_000));
        NtpTime { secs, fraction: nanos_to_fraction(nanos % 1_000_000_000) }
    }

    /// As Unix seconds and nanoseconds (rounded to the nearest nanosecond).
    pub fn to_unix(self) -> (i64, u32) {
        let nanos = fraction_to_nanos(self.fraction);
        let (carry, nanos) = if nanos == NANOS_PER_SEC { (1, 0) } else { (0, nanos as u32) };
        (self.secs - UNIX_EPOCH_NTP_SECS + carry, nanos)
    }

    /// Adds a duration, saturating at the ends of the representable range.
    pub fn checked_add(self, d: NtpDuration) -> Option<Self> {
        let total = (i128::from(self.secs) << 32) + i128::from(self.fraction) + i128::from(d.0);
        Self::from_units(total)
    }

    fn from_units(total: i128) -> Option<Self> {
        let secs = i64::try_from(total >> 32).ok()?;
        Some(NtpTime { secs, fraction: total as u32 })
    }

    fn units(self) -> i128 {
        (i128::from(self.secs) << 32) + i128::from(self.fraction)
    }

    /// `self - earlier`, saturating at ±68 years.
    pub fn duration_since(self, earlier: NtpTime) -> NtpDuration {
        let d = self.units() - earlier.units();
        NtpDuration(d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// The calendar form of this instant (proleptic Gregorian, UTC, no leap seconds).
    pub fn to_civil(self) -> Civil {
        let (unix, nanos) = self.to_unix();
        let days = unix.div_euclid(86_400);
        let sod = unix.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u8,
            minute: (sod / 60 % 60) as u8,
            second: (sod % 60) as u8,
            nanosecond: nanos,
        }
    }

    /// From calendar fields; `None` when a field is out of range.
    pub fn from_civil(c: &Civil) -> Option<Self> {
        if !(1..=12).contains(&c.month)
            || c.day == 0
            || c.day > days_in_month(c.year, c.month)
            || c.hour > 23
            || c.minute > 59
            || c.second > 59
            || c.nanosecond >= 1_000_000_000
        {
            return None;
        }
        let days = days_from_civil(c.year, c.month, c.day);
        let unix = days
            .checked_mul(86_400)?
            .checked_add(i64::from(c.hour) * 3600 + i64::from(c.minute) * 60 + i64::from(c.second))?;
        unix.checked_add(UNIX_EPOCH_NTP_SECS)?;
        Some(NtpTime::from_unix(unix, c.nanosecond))
    }

    /// Parses an RFC 3339 date-time such as `2036-02-07T06:28:16Z` or
    /// `2016-12-31T23:59:59.5+01:00`. A seconds value of 60 (a leap second) is
    /// refused, since the NTP timescale cannot name it.
    pub fn parse_rfc3339(s: &str) -> Result<Self, ParseTimeError> {
        parse_rfc3339(s)
    }

    /// A value that formats as RFC 3339 with nine fractional digits, e.g.
    /// `2036-02-07T06:28:16.000000000Z`.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }
}

impl Add<NtpDuration> for NtpTime {
    type Output = NtpTime;
    /// Adds a duration; saturates at the ends of the range (about ±2.9e11 years).
    fn add(self, d: NtpDuration) -> NtpTime {
        self.checked_add(d).unwrap_or(if d.0 < 0 {
            NtpTime { secs: i64::MIN, fraction: 0 }
        } else {
            NtpTime { secs: i64::MAX, fraction: u32::MAX }
        })
    }
}

impl Sub for NtpTime {
    type Output = NtpDuration;
    fn sub(self, rhs: NtpTime) -> NtpDuration {
        self.duration_since(rhs)
    }
}

impl fmt::Debug for NtpTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtpTime({})", self.rfc3339())
    }
}

/// Calendar fields of an instant, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// Proleptic Gregorian year (may be zero or negative).
    pub year: i64,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59 (the NTP timescale has no leap second 60).
    pub second: u8,
    /// 0–999 999 999.
    pub nanosecond: u32,
}

/// Formats an [`NtpTime`] as RFC 3339 with nanoseconds and a `Z` suffix.
#[derive(Clone, Copy)]
pub struct Rfc3339(NtpTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0.to_civil();
        if (0..=9999).contains(&c.year) {
            write!(f, "{:04}", c.year)?;
        } else {
            // RFC 3339 covers years 0000-9999 only; ISO 8601 expanded form beyond.
            write!(f, "{:+05}", c.year)?;
        }
        write!(
            f,
            "-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            c.month, c.day, c.hour, c.minute, c.second, c.nanosecond
        )
    }
}

/// Why a date-time string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseTimeError {
    /// Byte offset into the input where the problem is.
    pub offset: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for ParseTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid RFC 3339 date-time at byte {}: expected {} (example: 2036-02-07T06:28:16Z)",
            self.offset, self.expected
        )
    }
}

impl std::error::Error for ParseTimeError {}

fn parse_rfc3339(s: &str) -> Result<NtpTime, ParseTimeError> {
    let b = s.as_bytes();
    let err = |offset, expected| ParseTimeError { offset, expected };
    let digits = |at: usize, n: usize, what: &'static str| -> Result<u32, ParseTimeError> {
        let part = b.get(at..at + n).ok_or(err(at.min(b.len()), what))?;
        let mut v = 0u32;
        for (i, &d) in part.iter().enumerate() {
            if !d.is_ascii_digit() {
                return Err(err(at + i, what));
            }
            v = v * 10 + u32::from(d - b'0');
        }
        Ok(v)
    };
    let lit = |at: usize, chars: &[u8], what: &'static str| -> Result<(), ParseTimeError> {
        match b.get(at) {
            Some(c) if chars.contains(c) => Ok(()),
            _ => Err(err(at.min(b.len()), what)),
        }
    };
    let year = digits(0, 4, "a four-digit year")?;
    lit(4, b"-", "'-'")?;
    let month = digits(5, 2, "a two-digit month")?;
    lit(7, b"-", "'-'")?;
    let day = digits(8, 2, "a two-digit day")?;
    lit(10, b"Tt ", "'T'")?;
    let hour = digits(11, 2, "a two-digit hour")?;
    lit(13, b":", "':'")?;
    let minute = digits(14, 2, "two-digit minutes")?;
    lit(16, b":", "':'")?;
    let second = digits(17, 2, "two-digit seconds")?;
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        let mut scale = 100_000_000u32;
        while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
            at += 1;
        }
        if at == start {
            return Err(err(at, "fractional-second digits after '.'"));
        }
    }
    let offset_secs: i64 = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'+' { 1 } else { -1 };
            let oh = digits(at + 1, 2, "a two-digit offset hour")?;
            lit(at + 3, b":", "':' in the UTC offset")?;
            let om = digits(at + 4, 2, "two-digit offset minutes")?;
            if oh > 23 || om > 59 {
                return Err(err(at + 1, "a UTC offset within ±23:59"));
            }
            at += 6;
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
        }
        _ => return Err(err(at.min(b.len()), "'Z' or a UTC offset such as +01:00")),
    };
    if at != b.len() {
        return Err(err(at, "the end of the date-time"));
    }
    if second == 60 {
        return Err(err(17, "seconds 00-59 (the NTP timescale has no leap second 60)"));
    }
    let civil = Civil {
        year: i64::from(year),
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        nanosecond: nanos,
    };
    let t = NtpTime::from_civil(&civil).ok_or(err(5, "a valid calendar date and time of day"))?;
    Ok(t + NtpDuration::from_seconds(-offset_secs))
}

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> NtpTime {
        NtpTime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn rfc5905_figure4_dates() {
        // RFC 5905 §6 Figure 4: era, era offset for well-known dates.
        assert_eq!(t("1900-01-01T00:00:00Z").secs_since_1900(), 0);
        assert_eq!(t("1970-01-01T00:00:00Z").secs_since_1900(), 2_208_988_800);
        assert_eq!(t("1972-01-01T00:00:00Z").secs_since_1900(), 2_272_060_800);
        assert_eq!(t("1999-12-31T00:00:00Z").secs_since_1900(), 3_155_587_200);
        let d = t("2036-02-08T00:00:00Z");
        assert_eq!((d.era(), d.era_offset()), (1, 63_104));
    }

    #[test]
    fn era_boundary_is_2036_02_07_06_28_16() {
        assert_eq!(NtpTime::ERA1.rfc3339().to_string(), "2036-02-07T06:28:16.000000000Z");
        assert_eq!(t("2036-02-07T06:28:16Z"), NtpTime::ERA1);
        let before = t("2036-02-07T06:28:15.5Z");
        assert_eq!(before.era(), 0);
        assert_eq!(before.to_timestamp(), NtpTimestamp::from_parts(u32::MAX, 1 << 31));
        assert_eq!(NtpTime::ERA1.to_timestamp(), NtpTimestamp::ZERO);
    }

    #[test]
    fn resolve_across_the_2036_wrap() {
        let pivot = t("2036-02-07T06:28:10Z");
        // 1 s into era 1: raw seconds 1.
        let ts = NtpTimestamp::from_parts(1, 0);
        assert_eq!(ts.resolve(pivot).rfc3339().to_string(), "2036-02-07T06:28:17.000000000Z");
        // 10 s before the end of era 0.
        let ts = NtpTimestamp::from_parts(u32::MAX - 9, 0);
        assert_eq!(ts.resolve(NtpTime::ERA1).rfc3339().to_string(), "2036-02-07T06:28:06.000000000Z");
        // Differences across the wrap are small and signed.
        let a = NtpTimestamp::from_parts(u32::MAX, 0);
        let b = NtpTimestamp::from_parts(2, 0);
        assert_eq!(b.wrapping_sub(a), NtpDuration::from_seconds(3));
        assert_eq!(a.wrapping_sub(b), NtpDuration::from_seconds(-3));
    }

    #[test]
    fn rfc4330_rule() {
        assert_eq!(NtpTimestamp::from_parts(1, 0).resolve_rfc4330().rfc3339().to_string(), "2036-02-07T06:28:17.000000000Z");
        let t2019 = NtpTimestamp::from_parts(0xE000_0000, 0).resolve_rfc4330();
        assert_eq!(t2019.era(), 0);
        assert_eq!(t2019.rfc3339().to_string(), "2019-02-02T11:39:44.000000000Z");
    }

    #[test]
    fn dates_before_1968_and_before_1900() {
        let d = t("1950-06-15T12:00:00.25Z");
        assert_eq!(d.era(), 0);
        assert_eq!(d.to_timestamp().resolve(t("1960-01-01T00:00:00Z")), d);
        let d = t("1850-01-01T00:00:00Z");
        assert_eq!(d.era(), -1);
        assert_eq!(d.to_timestamp().resolve(t("1851-01-01T00:00:00Z")), d);
        assert_eq!(d.rfc3339().to_string(), "1850-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn rfc3339_parse_errors_say_where() {
        let e = NtpTime::parse_rfc3339("2036-02-07 06:28").unwrap_err();
        assert_eq!(e.offset, 16);
        assert!(NtpTime::parse_rfc3339("2016-12-31T23:59:60Z").is_err());
        assert!(NtpTime::parse_rfc3339("2017-02-29T00:00:00Z").is_err());
        assert!(NtpTime::parse_rfc3339("2017-02-28T00:00:00").is_err());
        assert_eq!(t("2017-01-01T01:00:00+01:00"), t("2017-01-01T00:00:00Z"));
        assert_eq!(t("2017-01-01T00:00:00.5Z").fraction(), 1 << 31);
    }

    #[test]
    fn fraction_rounding_at_the_top_of_a_second() {
        // 2^32 - 1 units = 0.99999999977 s rounds up to the next second.
        let x = NtpTime::new(UNIX_EPOCH_NTP_SECS, u32::MAX);
        assert_eq!(x.to_unix(), (1, 0));
        assert_eq!(NtpTime::from_unix(0, 999_999_999).to_unix(), (0, 999_999_999));
    }

    #[test]
    fn from_nanos_rounds_to_the_nearest_unit() {
        // 2 ns = 8.59 units of 2^-32 s: nearest is 9 (truncation gave 8).
        assert_eq!(NtpDuration::from_nanos(2).to_bits(), 9);
        assert_eq!(NtpDuration::from_nanos(-2).to_bits(), -9);
        // 1 ns = 4.29 units: 4 either way.
        assert_eq!(NtpDuration::from_nanos(1).to_bits(), 4);
        assert_eq!(NtpDuration::from_nanos(1_000_000_000).to_bits(), 1 << 32);
        assert_eq!(NtpDuration::from_nanos(i64::MAX), NtpDuration::from_nanos(i64::MAX - 1));
    }

    proptest! {
        #[test]
        fn from_nanos_is_within_half_a_unit(n in -1_000_000_000_000i64..1_000_000_000_000) {
            // Exact in integers: |units · 10^9 − n · 2^32| ≤ 10^9 / 2.
            let units = i128::from(NtpDuration::from_nanos(n).to_bits());
            let err = (units * 1_000_000_000 - (i128::from(n) << 32)).abs();
            prop_assert!(err <= 500_000_000, "{n} ns -> {units} units, error {err} / 10^9 units");
        }
    }

    proptest! {
        #[test]
        fn unix_nanos_round_trip(secs in -10_000_000_000i64..10_000_000_000i64, nanos in 0u32..1_000_000_000) {
            prop_assert_eq!(NtpTime::from_unix(secs, nanos).to_unix(), (secs, nanos));
        }

        #[test]
        fn rfc3339_round_trip(secs in -5_000_000_000i64..200_000_000_000i64, nanos in 0u32..1_000_000_000) {
            let x = NtpTime::from_unix(secs, nanos);
            let s = x.rfc3339().to_string();
            prop_assert_eq!(NtpTime::parse_rfc3339(&s).unwrap(), x);
        }

        #[test]
        fn resolve_recovers_any_time_near_the_pivot(
            pivot_secs in -(1i64 << 34)..(1i64 << 34),
            delta in -(1i64 << 31)..(1i64 << 31),
            fraction: u32,
        ) {
            let pivot = NtpTime::new(pivot_secs, 0);
            let x = NtpTime::new(pivot_secs + delta, fraction);
            prop_assert_eq!(x.to_timestamp().resolve(pivot), x);
        }

        #[test]
        fn wrapping_difference_is_exact_within_68_years(
            a_secs in -(1i64 << 34)..(1i64 << 34), a_frac: u32,
            delta in -(1i64 << 62)..(1i64 << 62),
        ) {
            let a = NtpTime::new(a_secs, a_frac);
            let b = a + NtpDuration::from_bits(delta);
            prop_assert_eq!(b.to_timestamp().wrapping_sub(a.to_timestamp()), NtpDuration::from_bits(delta));
            prop_assert_eq!(b - a, NtpDuration::from_bits(delta));
        }
    }
}
