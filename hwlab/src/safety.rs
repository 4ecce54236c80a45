//! Checking that the system clock was left alone.

/// The system clock's discipline state and position, read without changing
/// anything: `adjtimex` with modes = 0 (frequency, PLL offset, status, tick)
/// and CLOCK_REALTIME − CLOCK_MONOTONIC in ns (moves only when the clock is
/// stepped or slewed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemClockState {
    pub freq: i64,
    pub offset: i64,
    pub status: i32,
    pub tick: i64,
    pub realtime_minus_monotonic_ns: i128,
}

impl SystemClockState {
    /// Reads the state now.
    pub fn read() -> Result<SystemClockState, String> {
        // SAFETY: a zeroed timex with modes 0 is a pure query.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        if unsafe { libc::adjtimex(&mut tx) } < 0 {
            return Err(format!("adjtimex query failed: {}", std::io::Error::last_os_error()));
        }
        let read = |clk| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: valid timespec.
            unsafe { libc::clock_gettime(clk, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        Ok(SystemClockState {
            freq: tx.freq,
            offset: tx.offset,
            status: tx.status,
            tick: tx.tick,
            realtime_minus_monotonic_ns: read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC),
        })
    }

    /// What changed from `before` to `self`, if anything: the adjtimex state
    /// must be identical and the clock must not have moved against
    /// CLOCK_MONOTONIC by more than `tolerance_ns`.
    pub fn changed_since(&self, before: &SystemClockState, tolerance_ns: i128) -> Option<String> {
        let (a, b) = (before, self);
        if (a.freq, a.offset, a.status, a.tick) != (b.freq, b.offset, b.status, b.tick) {
            return Some(format!("adjtimex state changed: {a:?} -> {b:?}"));
        }
        let moved = b.realtime_minus_monotonic_ns - a.realtime_minus_monotonic_ns;
        (moved.abs() > tolerance_ns).then(|| format!("CLOCK_REALTIME moved by {moved} ns against CLOCK_MONOTONIC"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_any_field_or_a_step_is_reported() {
        let a = SystemClockState::read().unwrap();
        assert_eq!(a.changed_since(&a, 0), None);
        assert!(SystemClockState { freq: a.freq + 1, ..a }.changed_since(&a, 0).unwrap().contains("adjtimex"));
        assert!(SystemClockState { status: a.status ^ 0x40, ..a }.changed_since(&a, 0).is_some());
        let stepped = SystemClockState { realtime_minus_monotonic_ns: a.realtime_minus_monotonic_ns + 2_000_000, ..a };
        assert!(stepped.changed_since(&a, 1_000_000).unwrap().contains("moved by 2000000 ns"));
    }
}
