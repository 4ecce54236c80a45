//! The clock's precision (RFC 5905 §7.3: "the precision of the system
//! clock, in log2 seconds"), measured at start-up the way chronyd measures
//! it: read the clock in a tight loop and keep the smallest step between two
//! consecutive readings that differ. On a vDSO `clock_gettime` that is the
//! time one reading takes (tens of nanoseconds); on a clock that only ticks
//! (a 10 ms jiffy clock, or one that `clock_gettime` reads in microseconds)
//! it is the tick.
//!
//! The value goes into every packet the daemon sends (its precision field),
//! into the dispersion of each sample (§8: 2^ρ(server) + 2^ρ(client) + …),
//! the floor of a sample's delay, and the noise floor of the clock filter and
//! the discipline. `[clock] precision` in the configuration replaces the
//! measurement (tests and simulations use it to stay deterministic).

use ntplab_proto::time::NtpTime;

/// Steps between readings to see before the measurement ends (chrony waits
/// for 100: enough, on a clock that ticks, to have met its smallest step).
pub const STEPS: u32 = 100;

/// Readings at most: the measurement ends after this many even when fewer
/// than [`STEPS`] steps were seen (a coarse clock, or one that stopped).
/// At 20-50 ns a reading, a few tens of milliseconds.
pub const READS_MAX: u32 = 1_000_000;

/// Smallest precision reported, 1 ns (2^-30 s), and the largest, 1 s: the
/// bounds chrony clamps its measurement to.
pub const QUANTUM_MIN_S: f64 = 1e-9;
/// See [`QUANTUM_MIN_S`].
pub const QUANTUM_MAX_S: f64 = 1.0;

/// The smallest positive step, in seconds, between consecutive values of
/// `read`, over at most [`READS_MAX`] readings or until [`STEPS`] steps were
/// seen. `None` when the clock never moved forward in that many readings.
pub fn measure_quantum(mut read: impl FnMut() -> NtpTime) -> Option<f64> {
    let mut previous = read();
    let mut smallest: Option<i64> = None;
    let mut steps = 0;
    for _ in 1..READS_MAX {
        let now = read();
        let step = (now - previous).to_bits();
        previous = now;
        if step > 0 {
            smallest = Some(smallest.map_or(step, |s| s.min(step)));
            steps += 1;
            if steps >= STEPS {
                break;
            }
        }
    }
    // NTP durations count 2^-32 s.
    smallest.map(|units| units as f64 / 4_294_967_296.0)
}

/// A precision of `quantum_s` seconds as RFC 5905's exponent: log2 rounded
/// to the nearest integer, with the quantum clamped to 1 ns-1 s (so -30..=0).
/// Not a number counts as 1 s.
pub fn log2_of(quantum_s: f64) -> i8 {
    let q = if quantum_s.is_nan() { QUANTUM_MAX_S } else { quantum_s.clamp(QUANTUM_MIN_S, QUANTUM_MAX_S) };
    // In -29.9..=0 before rounding: the cast cannot truncate.
    q.log2().round() as i8
}

/// The precision exponent of the clock `read` reads ([`measure_quantum`],
/// then [`log2_of`]); a clock that never moved counts as a 1 s clock.
pub fn measure_log2(read: impl FnMut() -> NtpTime) -> i8 {
    log2_of(measure_quantum(read).unwrap_or(QUANTUM_MAX_S))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::time::NtpDuration;

    /// A clock read by `steps`, one after the other (cycling): each reading
    /// adds the next one to the time.
    fn clock(steps: &[f64]) -> impl FnMut() -> NtpTime + '_ {
        let mut t = NtpTime::from_unix(1_700_000_000, 0);
        let mut i = 0;
        move || {
            t = t + NtpDuration::from_seconds_f64(steps[i % steps.len()]);
            i += 1;
            t
        }
    }

    #[test]
    fn the_smallest_step_between_readings_is_the_quantum() {
        // Readings that take 30-90 ns: the quantum is 30 ns, 2^-25 s.
        let q = measure_quantum(clock(&[90e-9, 30e-9, 60e-9])).unwrap();
        assert!((q - 30e-9).abs() < 1e-9, "quantum {q}");
        assert_eq!(log2_of(q), -25);
        assert_eq!(measure_log2(clock(&[90e-9, 30e-9, 60e-9])), -25);
    }

    #[test]
    fn readings_that_do_not_move_are_not_steps() {
        // A 10 ms jiffy clock read every 0.5 µs: most readings repeat, the
        // step is the tick, 2^-7 s (7.8 ms) being nearer than 2^-6.
        let mut reads = 0u32;
        let mut read = || {
            reads += 1;
            let jiffies = reads / 20_000;
            NtpTime::from_unix(1_700_000_000, 0) + NtpDuration::from_seconds_f64(f64::from(jiffies) * 0.01)
        };
        let q = measure_quantum(&mut read).unwrap();
        assert!((q - 0.01).abs() < 1e-9, "quantum {q}");
        assert_eq!(log2_of(q), -7);
        assert_eq!(reads, READS_MAX, "49 steps in the most readings allowed: the bound ends it");
    }

    #[test]
    fn the_measurement_stops_after_enough_steps() {
        let mut reads = 0u32;
        let mut inner = clock(&[0.0, 25e-9]);
        let q = measure_quantum(|| {
            reads += 1;
            inner()
        });
        assert!((q.unwrap() - 25e-9).abs() < 1e-9);
        assert_eq!(reads, 2 * STEPS, "the first reading, then a step every other reading");
    }

    #[test]
    fn a_clock_that_never_moves_or_runs_back_has_no_quantum() {
        let still = NtpTime::from_unix(1_700_000_000, 0);
        assert_eq!(measure_quantum(|| still), None);
        assert_eq!(measure_log2(|| still), 0, "counted as a 1 s clock");
        assert_eq!(measure_quantum(clock(&[-1e-6])), None, "steps back are not precision");
    }

    #[test]
    fn the_exponent_is_rounded_and_clamped() {
        assert_eq!(log2_of(2f64.powi(-20)), -20);
        assert_eq!(log2_of(101e-9), -23, "chronyd under clknetsim: 101 ns");
        assert_eq!(log2_of(1e-6), -20, "2^-19.93");
        assert_eq!(log2_of(1e-12), -30, "below 1 ns");
        assert_eq!(log2_of(0.0), -30);
        assert_eq!(log2_of(-1.0), -30);
        assert_eq!(log2_of(5.0), 0, "above 1 s");
        assert_eq!(log2_of(f64::INFINITY), 0);
        assert_eq!(log2_of(f64::NAN), 0);
    }
}
