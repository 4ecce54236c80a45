//! chrony's SOCK reference-clock sample format, as gpsd and other PPS
//! helpers send it over a Unix datagram socket.
//!
//! ```c
//! struct sock_sample {
//!   struct timeval tv;   /* system time of the measurement */
//!   double offset;       /* true time minus system time, seconds; a
//!                           pulse: where in the system second the edge
//!                           came (modulo 1 s) */
//!   int pulse;           /* non-zero: a PPS edge */
//!   int leap;            /* 0 normal, 1 insert, 2 delete a leap second */
//!   int _pad;
//!   int magic;           /* 0x534f434b, "SOCK" */
//! };
//! ```
//!
//! 40 bytes in the sender's (the host's) byte order on 64-bit Linux, where
//! `time_t` and `suseconds_t` are 64 bits; the 32-bit layout (32 bytes) is
//! refused. Everything is checked: length, magic, microseconds below 10^6,
//! a time within NTP's reach, a finite offset, a known leap value.

use ntplab_proto::time::{NtpDuration, NtpTime};
use std::fmt;

/// The `magic` field: "SOCK".
pub const SOCK_MAGIC: u32 = 0x534f_434b;
/// Length of one sample on 64-bit Linux.
pub const SOCK_SAMPLE_LEN: usize = 40;
/// Largest |offset| accepted, seconds (chrony's sanity bound is similar).
pub const SOCK_OFFSET_MAX_S: f64 = 1e9;

/// Leap-second warning of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockLeap {
    /// No leap second.
    Normal,
    /// A second is inserted at the end of the day.
    Insert,
    /// A second is deleted at the end of the day.
    Delete,
}

/// One decoded sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SockSample {
    /// `tv`: system time of the measurement (microsecond resolution).
    pub time: NtpTime,
    /// True time minus system time, seconds; for a pulse, the edge's
    /// position in the system second (see [`SockSample::pulse_edge`]).
    pub offset: f64,
    /// A PPS edge: only `offset` modulo one second is meaningful.
    pub pulse: bool,
    /// Leap warning.
    pub leap: SockLeap,
}

impl SockSample {
    /// The system time of the PPS edge the sample describes, as chronyd
    /// reads a pulse sample: its SOCK driver passes `offset` to
    /// `RCL_AddPulse` where its PPS driver passes the kernel stamp's
    /// fraction of a second, and takes the pulse's offset as minus that,
    /// modulo one second (refclock_sock.c, refclock_pps.c, refclock.c). So
    /// `offset` is where in the system second the edge came (0.000123 for a
    /// clock 123 µs ahead of the second the pulse marks; 0.7 or -0.3 for
    /// one 0.3 s behind), and the edge is the time nearest `time` that lies
    /// `offset` after a whole second. This keeps the offset's nanoseconds,
    /// which the microsecond `tv` would lose.
    pub fn pulse_edge(&self) -> NtpTime {
        let offset = NtpDuration::from_seconds_f64(self.offset);
        let second = self.time + (-offset);
        let rounded = if second.fraction() >= 1 << 31 {
            NtpTime::new(second.secs_since_1900().saturating_add(1), 0)
        } else {
            NtpTime::new(second.secs_since_1900(), 0)
        };
        rounded + offset
    }
}

/// Why a datagram is not a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SockError {
    /// Not 40 bytes long.
    Length(usize),
    /// Wrong magic number.
    Magic(u32),
    /// `tv` out of range (negative, microseconds of a second or more, or too far away).
    Time {
        /// `tv_sec`.
        secs: i64,
        /// `tv_usec`.
        micros: i64,
    },
    /// `offset` not finite or beyond [`SOCK_OFFSET_MAX_S`].
    Offset(f64),
    /// `leap` not 0, 1 or 2.
    Leap(i32),
}

impl fmt::Display for SockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockError::Length(n) => write!(f, "{n} bytes, not a {SOCK_SAMPLE_LEN}-byte SOCK sample"),
            SockError::Magic(m) => write!(f, "magic {m:#010x}, not {SOCK_MAGIC:#010x}"),
            SockError::Time { secs, micros } => write!(f, "time {secs} s {micros} us is out of range"),
            SockError::Offset(o) => write!(f, "offset {o} s is not a sane offset"),
            SockError::Leap(l) => write!(f, "leap {l} is not 0, 1 or 2"),
        }
    }
}

impl std::error::Error for SockError {}

/// Decodes one datagram.
pub fn parse_sock_sample(bytes: &[u8]) -> Result<SockSample, SockError> {
    let Ok(b) = <&[u8; SOCK_SAMPLE_LEN]>::try_from(bytes) else {
        return Err(SockError::Length(bytes.len()));
    };
    let i64_at = |at: usize| i64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let i32_at = |at: usize| i32::from_ne_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    let magic = i32_at(36) as u32;
    if magic != SOCK_MAGIC {
        return Err(SockError::Magic(magic));
    }
    let (secs, micros) = (i64_at(0), i64_at(8));
    // Up to 2^36 s after 1970 (year 4147): far beyond any real sample, well
    // within NtpTime's arithmetic.
    if !(0..1 << 36).contains(&secs) || !(0..1_000_000).contains(&micros) {
        return Err(SockError::Time { secs, micros });
    }
    let offset = f64::from_ne_bytes(b[16..24].try_into().unwrap_or([0; 8]));
    if !(offset.is_finite() && offset.abs() <= SOCK_OFFSET_MAX_S) {
        return Err(SockError::Offset(offset));
    }
    let leap = match i32_at(28) {
        0 => SockLeap::Normal,
        1 => SockLeap::Insert,
        2 => SockLeap::Delete,
        other => return Err(SockError::Leap(other)),
    };
    Ok(SockSample {
        time: NtpTime::from_unix(secs, (micros * 1000) as u32),
        offset,
        pulse: i32_at(24) != 0,
        leap,
    })
}

/// Encodes a sample (what gpsd sends): for tests and tools.
pub fn encode_sock_sample(secs: i64, micros: i64, offset: f64, pulse: bool, leap: i32) -> [u8; SOCK_SAMPLE_LEN] {
    let mut b = [0u8; SOCK_SAMPLE_LEN];
    b[0..8].copy_from_slice(&secs.to_ne_bytes());
    b[8..16].copy_from_slice(&micros.to_ne_bytes());
    b[16..24].copy_from_slice(&offset.to_ne_bytes());
    b[24..28].copy_from_slice(&i32::from(pulse).to_ne_bytes());
    b[28..32].copy_from_slice(&leap.to_ne_bytes());
    b[36..40].copy_from_slice(&(SOCK_MAGIC as i32).to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pulse_sample_decodes_to_its_edge_as_chronyd_reads_it() {
        // The edge came at system time 1_900_000_000.000_123_456; the pulse
        // marks 1_900_000_000 s: tv truncated to microseconds, the offset
        // the edge's place in the second with nanoseconds.
        let b = encode_sock_sample(1_900_000_000, 123, 0.000_123_456, true, 0);
        let s = parse_sock_sample(&b).unwrap();
        assert!(s.pulse);
        assert_eq!(s.leap, SockLeap::Normal);
        assert_eq!(s.time, NtpTime::from_unix(1_900_000_000, 123_000));
        let edge = s.pulse_edge();
        let expected = NtpTime::from_unix(1_900_000_000, 123_456);
        assert!(edge.duration_since(expected).abs() < NtpDuration::from_nanos(2), "{:?}", edge.duration_since(expected));
        // A clock 0.3 s behind: the edge is 0.3 s before the marked second,
        // whether the offset says 0.7 (the stamp's fraction, as chrony's PPS
        // driver) or -0.3.
        for offset in [0.7, -0.3] {
            let s = parse_sock_sample(&encode_sock_sample(1_899_999_999, 700_000, offset, true, 1)).unwrap();
            assert_eq!(s.leap, SockLeap::Insert);
            let d = s.pulse_edge().duration_since(NtpTime::from_unix(1_899_999_999, 700_000_000));
            assert!(d.abs() < NtpDuration::from_nanos(2), "{offset}: {d:?}");
        }
        // The mirrored reading (true second minus stamp) would put a clock
        // 123 µs ahead 123 µs behind: the sign is what chronyd takes.
        let s = parse_sock_sample(&encode_sock_sample(1_900_000_000, 123, -0.000_123_456, true, 0)).unwrap();
        assert!(s.pulse_edge().duration_since(NtpTime::from_unix(1_900_000_000, 0)) < NtpDuration::ZERO);
    }

    #[test]
    fn bad_samples_are_refused_with_the_reason() {
        let good = encode_sock_sample(1_900_000_000, 0, 0.0, true, 0);
        assert_eq!(parse_sock_sample(&good[..32]), Err(SockError::Length(32)));
        assert_eq!(parse_sock_sample(&[]), Err(SockError::Length(0)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(parse_sock_sample(&long), Err(SockError::Length(41)));
        let mut b = good;
        b[36..40].copy_from_slice(&0x4b434f53u32.to_ne_bytes());
        assert!(matches!(parse_sock_sample(&b), Err(SockError::Magic(0x4b434f53))));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(1, 1_000_000, 0.0, true, 0)), Err(SockError::Time { .. })));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(1, -1, 0.0, true, 0)), Err(SockError::Time { .. })));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(-5, 0, 0.0, true, 0)), Err(SockError::Time { .. })));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(i64::MAX, 0, 0.0, true, 0)), Err(SockError::Time { .. })));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(1, 0, f64::NAN, true, 0)), Err(SockError::Offset(_))));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(1, 0, f64::INFINITY, true, 0)), Err(SockError::Offset(_))));
        assert!(matches!(parse_sock_sample(&encode_sock_sample(1, 0, -1e12, true, 0)), Err(SockError::Offset(_))));
        assert_eq!(parse_sock_sample(&encode_sock_sample(1, 0, 0.0, true, 3)), Err(SockError::Leap(3)));
        assert!(!parse_sock_sample(&encode_sock_sample(1, 0, 0.0, false, 2)).unwrap().pulse);
        for e in [SockError::Length(3), SockError::Magic(1), SockError::Offset(f64::NAN), SockError::Leap(-1)] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..20_000usize {
            let mut b = [0u8; SOCK_SAMPLE_LEN];
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if n % 2 == 0 {
                b[36..40].copy_from_slice(&(SOCK_MAGIC as i32).to_ne_bytes());
            }
            if let Ok(s) = parse_sock_sample(&b) {
                let _ = s.pulse_edge();
            }
            let _ = parse_sock_sample(&b[..n % SOCK_SAMPLE_LEN]);
        }
    }
}
