//! Leap smearing: serving a time that absorbs a leap second gradually, and the
//! smear REFID 254.b1.b2.b3 of draft-stenn-ntp-leap-smear-refid-02 §2.
//!
//! # Definitions
//!
//! `L` is [`SmearConfig::leap_time`]: the NTP-timescale instant of the
//! midnight (00:00:00 UTC) that ends the leap day. The server's UTC clock `t`
//! (the NTP timescale, which does not count leap seconds) steps at the leap:
//!
//! - inserted second: when `t` reaches `L` the clock steps back to `L - 1 s`
//!   and reads `[L - 1 s, L)` again during 23:59:60 (the kernel's `TIME_OOP`);
//! - deleted second: when `t` reaches `L - 1 s` (23:59:59) it jumps to `L`.
//!
//! Call `E` the reading at which the clock steps: `E = L` (insert) or
//! `E = L - 1 s` (delete), and `σ = +1` (insert) or `-1` (delete).
//!
//! The **correction** `c(t)` follows the draft's sign: the served time is
//! `t - c(t)`, so `c > 0` means the served time is behind the UTC clock (an
//! insertion being absorbed before the leap gives `c` in `(0, 1)`, as the
//! draft says). The REFID carries `c` in signed 2:22 fixed point.
//! [`SmearConfig::smear_offset`] is `-c(t)`, the amount the responder adds to
//! the timestamps it serves. (ntpd's implementation puts its *offset* in the
//! REFID, the opposite sign of the draft's wording; we follow the draft.)
//!
//! The smeared clock runs at a constant rate `1 - σ/86400` (−/+11.574 ppm) for
//! exactly 86 400 elapsed SI seconds and at rate 1 elsewhere: it is continuous
//! in real time, including across the step. In both styles the correction
//! applied relative to a clock that did not step is `σ R`, where `R` rises
//! linearly from 0 to 1 over the 86 400 elapsed seconds of the window:
//!
//! - [`SmearStyle::BeforeLeap`] (style a): the window is the 86 400 s before
//!   the step, `[E - 86400 s, E]`; the smear is complete when the clock steps.
//!   After the step (including during an inserted 23:59:60) `c = 0`.
//! - [`SmearStyle::Centered`] (style b): the window is centred on the step,
//!   `[E - 43200 s, E + 43200 s]` in elapsed time: half a second is absorbed
//!   before the step (`c` in `(0, 0.5]` for an insertion) and half after
//!   (`c` in `[-0.5, 0)`).
//!
//! Key points, inserted leap second at `L` = 00:00:00 (all corrections in
//! seconds; `W` = 86 400):
//!
//! | UTC clock `t`                      | style a `c`         | style b `c`             |
//! |------------------------------------|---------------------|-------------------------|
//! | before `L - 86400` (00:00 leap day)| 0                   | 0                       |
//! | `L - 43200` (12:00)                | +0.5                | 0 (start)               |
//! | `L - 21600` (18:00)                | +0.75               | +0.25                   |
//! | `L - 1` (23:59:59, first pass)     | +1 − 1/W            | +0.5 − 1/W              |
//! | just before the step (→ `L`)       | → +1                | → +0.5                  |
//! | 23:59:60 (clock reads `L-1+x`)     | 0                   | −0.5 + x/W              |
//! | `L` (00:00:00)                     | 0                   | −0.5 + 1/W              |
//! | `L + 21600` (06:00)                | 0                   | −0.25 + 1/W             |
//! | `L + 43199` (11:59:59), and later  | 0                   | 0 (end)                 |
//!
//! A deleted leap second flips every sign and moves the step to `L - 1 s`
//! (style b then ends at `L + 43200`, 12:00:00). During an inserted 23:59:60
//! the clock reading alone is ambiguous (it repeats 23:59:59), so the caller
//! says whether the inserted second is in progress
//! ([`SmearConfig::correction_at`]); [`SmearConfig::correction`] assumes it is not.

use crate::time::{NtpDuration, NtpTime};

/// Length of a smear in elapsed seconds.
pub const SMEAR_WINDOW_S: i64 = 86_400;

const ONE_S_BITS: i128 = 1 << 32;

/// How the leap second is spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmearStyle {
    /// (a) Linear over the 86 400 s before the leap; complete at the leap.
    BeforeLeap,
    /// (b) Linear over 86 400 s centred on the leap: half before, half after.
    Centered,
}

/// Whether the leap second is inserted or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeapKind {
    /// 23:59:60 is inserted (LI 1); the served clock runs slow.
    Insert,
    /// 23:59:59 is deleted (LI 2); the served clock runs fast.
    Delete,
}

/// A configured smear of one leap second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SmearConfig {
    /// The smear style.
    pub style: SmearStyle,
    /// 00:00:00 UTC at the end of the leap day, on the NTP timescale.
    pub leap_time: NtpTime,
    /// Inserted or deleted second.
    pub kind: LeapKind,
}

impl SmearConfig {
    fn sign(&self) -> i128 {
        match self.kind {
            LeapKind::Insert => 1,
            LeapKind::Delete => -1,
        }
    }

    /// `E`: the UTC-clock reading at which the clock steps (`L` for an
    /// insertion, `L - 1 s` for a deletion).
    pub fn step_time(&self) -> NtpTime {
        match self.kind {
            LeapKind::Insert => self.leap_time,
            LeapKind::Delete => self.leap_time + NtpDuration::from_seconds(-1),
        }
    }

    /// Start of the window on the clock before the step (the UTC reading at
    /// which the smear starts).
    pub fn window_start(&self) -> NtpTime {
        let lead_s = match self.style {
            SmearStyle::BeforeLeap => SMEAR_WINDOW_S,
            SmearStyle::Centered => SMEAR_WINDOW_S / 2,
        };
        self.step_time() + NtpDuration::from_seconds(-lead_s)
    }

    /// `(u, after)`: `t` on the elapsed-time-aligned scale of the clock before
    /// the step, and whether the step has happened.
    fn unstepped(&self, t: NtpTime, in_inserted_second: bool) -> (NtpTime, bool) {
        let after = t >= self.leap_time || (in_inserted_second && self.kind == LeapKind::Insert);
        if after {
            (t + NtpDuration::from_bits((self.sign() * ONE_S_BITS) as i64), true)
        } else {
            (t, false)
        }
    }

    /// `R * 2^32`: progress of the smear at `u`, in `[0, 2^32]`.
    fn progress_bits(&self, u: NtpTime) -> i128 {
        let window_bits = i128::from(SMEAR_WINDOW_S) * ONE_S_BITS;
        let elapsed_bits = i128::from(u.duration_since(self.window_start()).to_bits()).clamp(0, window_bits);
        elapsed_bits * ONE_S_BITS / window_bits
    }

    /// The correction `c` at UTC-clock reading `t` (served time `t - c`), with
    /// `in_inserted_second` saying that an inserted 23:59:60 is in progress
    /// (the clock is repeating `[L - 1 s, L)` for the second time). Ignored
    /// for a deletion.
    pub fn correction_at(&self, t: NtpTime, in_inserted_second: bool) -> NtpDuration {
        let (u, after) = self.unstepped(t, in_inserted_second);
        let r = self.progress_bits(u);
        let c = if after { self.sign() * (r - ONE_S_BITS) } else { self.sign() * r };
        debug_assert!(c.abs() <= ONE_S_BITS);
        NtpDuration::from_bits(c as i64)
    }

    /// The correction at `t`, outside an inserted 23:59:60.
    pub fn correction(&self, t: NtpTime) -> NtpDuration {
        self.correction_at(t, false)
    }

    /// The amount added to UTC-clock timestamps to serve smeared time: `-c(t)`.
    pub fn smear_offset(&self, t: NtpTime) -> NtpDuration {
        -self.correction(t)
    }

    /// The smeared time served for UTC-clock reading `t`.
    pub fn served_time(&self, t: NtpTime, in_inserted_second: bool) -> NtpTime {
        t + -self.correction_at(t, in_inserted_second)
    }

    /// Whether `t` is strictly inside the smear window (the smear REFID is
    /// served then).
    pub fn is_active(&self, t: NtpTime, in_inserted_second: bool) -> bool {
        let (u, _) = self.unstepped(t, in_inserted_second);
        let start = self.window_start();
        u > start && u < start + NtpDuration::from_seconds(SMEAR_WINDOW_S)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: f64 = 86_400.0;

    fn l() -> NtpTime {
        NtpTime::parse_rfc3339("2017-01-01T00:00:00Z").unwrap()
    }

    fn at(s: f64) -> NtpTime {
        l() + NtpDuration::from_seconds_f64(s)
    }

    fn cfg(style: SmearStyle, kind: LeapKind) -> SmearConfig {
        SmearConfig { style, leap_time: l(), kind }
    }

    fn close(got: NtpDuration, want_s: f64) {
        let got_s = got.to_seconds_f64();
        assert!((got_s - want_s).abs() < 1e-6, "got {got_s:.9} want {want_s:.9}");
    }

    #[test]
    fn table_of_points_insert() {
        let a = cfg(SmearStyle::BeforeLeap, LeapKind::Insert);
        let b = cfg(SmearStyle::Centered, LeapKind::Insert);
        for (dt, ca, cb) in [
            (-100_000.0, 0.0, 0.0),
            (-86_400.0, 0.0, 0.0),
            (-43_200.0, 0.5, 0.0),
            (-21_600.0, 0.75, 0.25),
            (-1.0, 1.0 - 1.0 / W, 0.5 - 1.0 / W),
            (-1e-6, 1.0, 0.5),
            (0.0, 0.0, -0.5 + 1.0 / W),
            (21_600.0, 0.0, -0.25 + 1.0 / W),
            (43_199.0, 0.0, 0.0),
            (50_000.0, 0.0, 0.0),
        ] {
            close(a.correction(at(dt)), ca);
            close(b.correction(at(dt)), cb);
        }
        // During 23:59:60 the clock reads L-1+x.
        for x in [0.0, 0.5, 0.999] {
            close(a.correction_at(at(-1.0 + x), true), 0.0);
            close(b.correction_at(at(-1.0 + x), true), -0.5 + x / W);
        }
        assert_eq!(a.smear_offset(at(-43_200.0)), -a.correction(at(-43_200.0)));
    }

    #[test]
    fn deletion_flips_signs_and_steps_at_235959() {
        let a = cfg(SmearStyle::BeforeLeap, LeapKind::Delete);
        let b = cfg(SmearStyle::Centered, LeapKind::Delete);
        assert_eq!(a.step_time(), at(-1.0));
        close(a.correction(at(-1.0 - 43_200.0)), -0.5);
        close(a.correction(at(-1.0 - 1e-6)), -1.0);
        close(a.correction(at(0.0)), 0.0);
        close(b.correction(at(-1.0 - 21_600.0)), -0.25);
        close(b.correction(at(-1.0 - 1e-6)), -0.5);
        close(b.correction(at(0.0)), 0.5);
        close(b.correction(at(43_200.0)), 0.0);
        assert!(!b.is_active(at(43_200.0), false));
        assert!(b.is_active(at(43_199.0), false));
    }

    #[test]
    fn the_window_is_open_at_both_ends() {
        // `is_active` (the smear REFID is served) only strictly inside the
        // window: not at its first instant, where the correction is still 0,
        // nor at its last (style a: the step, when 23:59:60 begins and the
        // clock reads L - 1 s again; style b: 43 200 s after it, at 11:59:59).
        for (style, start, end, in_inserted_second) in
            [(SmearStyle::BeforeLeap, -86_400.0, -1.0, true), (SmearStyle::Centered, -43_200.0, 43_199.0, false)]
        {
            let c = cfg(style, LeapKind::Insert);
            assert_eq!(c.window_start(), at(start));
            assert!(!c.is_active(at(start), false), "{style:?} at its start");
            assert!(c.is_active(at(start + 1e-6), false), "{style:?} just after its start");
            assert!(c.is_active(at(end - 1e-6), in_inserted_second), "{style:?} just before its end");
            assert!(!c.is_active(at(end), in_inserted_second), "{style:?} at its end");
        }
    }

    /// Walks real elapsed time across the leap with a clock that steps as a
    /// kernel does and checks the served time is continuous, monotonic and runs
    /// at 1 - σ/W inside the window and 1 outside.
    #[test]
    fn served_time_is_continuous_in_real_time() {
        for kind in [LeapKind::Insert, LeapKind::Delete] {
            for style in [SmearStyle::BeforeLeap, SmearStyle::Centered] {
                let c = cfg(style, kind);
                let sigma = if kind == LeapKind::Insert { 1.0 } else { -1.0 };
                let e = c.step_time();
                // Real time tau as seconds from E; the clock reads tau (before) or tau - sigma (after).
                let reading = |tau: f64| -> (NtpTime, bool) {
                    if tau < 0.0 {
                        (e + NtpDuration::from_seconds_f64(tau), false)
                    } else {
                        let in_oop = kind == LeapKind::Insert && tau < 1.0;
                        (e + NtpDuration::from_seconds_f64(tau - sigma), in_oop)
                    }
                };
                let step_s = 7.0;
                let mut prev: Option<NtpTime> = None;
                let mut tau = -90_000.0;
                let mut steps = 0;
                while tau < 90_000.0 {
                    let (t, oop) = reading(tau);
                    let s = c.served_time(t, oop);
                    if let Some(p) = prev {
                        let ds = (s - p).to_seconds_f64();
                        assert!(ds > 0.0, "{kind:?} {style:?} not monotonic at {tau}");
                        assert!((ds - step_s).abs() <= step_s / W + 1e-6, "{kind:?} {style:?} jump {ds} at {tau}");
                    }
                    prev = Some(s);
                    tau += step_s;
                    steps += 1;
                    assert!(steps < 100_000);
                }
                // Far after the window the served time is plain UTC again.
                let (t, oop) = reading(89_999.0);
                assert_eq!(c.served_time(t, oop), t);
            }
        }
    }
}
