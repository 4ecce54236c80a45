//! Clock providers for the daemon loop.
//!
//! A [`DaemonClock`] is the core's [`NtpClock`] plus what a driver needs: turn
//! a kernel (or simulated) timestamp into the clock's time, and a once-a-second
//! tick for clocks that slew in user space.

use crate::sysclock::{realtime_now, ClockError, KernelLeap, SystemClock};
use ntplab_proto::clock::steered::{KERNEL_MAX_SLEW_RATE, MAX_USER_SLEW_RATE};
use ntplab_proto::clock::{NtpClock, SteerError, SteeredClock};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::v4::LeapIndicator;

/// The clock the daemon loop owns.
pub trait DaemonClock: NtpClock {
    /// This clock's time at the instant a network timestamp names. Kernel
    /// timestamps read `CLOCK_REALTIME`; a clock that keeps its own time
    /// layered over it converts them here.
    fn local_time_of(&self, raw: NtpTime) -> NtpTime;

    /// This clock's precision, log2 seconds (RFC 5905 §7.3), for when the
    /// configuration gives none (`[clock] precision`): a real clock measures
    /// it ([`crate::precision`]), a simulated one says what it was given.
    fn precision_log2(&self) -> i8;

    /// How often the loop must call [`DaemonClock::tick`]; `None` (the default)
    /// for clocks that need no ticks, which lets a simulated host sleep between
    /// packets.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called every [`DaemonClock::tick_interval`] by the loop.
    fn tick(&mut self) {}

    /// A copy of [`DaemonClock::local_time_of`] that other threads can use
    /// until the clock is next adjusted (the fast server path's workers), for
    /// clocks whose time is `CLOCK_REALTIME` or a function of it; `None` (the
    /// default) for clocks that only the loop can read, such as a simulated
    /// host's.
    fn time_map(&self) -> Option<TimeMap> {
        None
    }
}

/// This clock's time as a function of a `CLOCK_REALTIME` reading, valid until
/// the clock is next adjusted (see [`DaemonClock::time_map`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeMap {
    /// The system clock itself.
    Identity,
    /// A steered clock layered over it.
    Steered(SteeredClock),
}

impl TimeMap {
    /// The clock's time when `CLOCK_REALTIME` reads `raw`.
    pub fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        match self {
            TimeMap::Identity => raw,
            TimeMap::Steered(s) => s.time_at(raw),
        }
    }

    /// The clock's time now.
    pub fn now(&self) -> NtpTime {
        self.local_time_of(realtime_now())
    }
}

/// The system clock, disciplined through `clock_adjtime` (only with the
/// operator's explicit consent: [`SystemClock::with_control`]).
///
/// Frequency goes to the kernel through the tick length and the frequency
/// (`ADJ_TICK | ADJ_FREQUENCY`, up to ±10 % + 500 ppm). A phase slew is done
/// in user space the way RFC 5905's clock-adjust process does it (A.5.6.1):
/// once a second the remaining offset shrinks by `1/τ`, at most by the slew's
/// rate limit (500 ppm for [`NtpClock::adjust_phase`], the caller's for
/// [`NtpClock::slew_phase`]; τ = 0: linear at that rate), and that second's
/// share is added to the frequency, so the clock never steps. What a slew
/// rate did is counted over the time it was really in force ([`UserSlew`]):
/// a tick that comes late has slewed longer.
#[derive(Debug)]
pub struct ControlledClock {
    clock: SystemClock,
    base_frequency: f64,
    slew: UserSlew,
    /// When the slew rate now in force was set.
    applied_at: std::time::Instant,
}

/// A phase slew done through the frequency, second by second, with the
/// time each rate was really in force counted: at 5 % (a 50 ms offset
/// slewed in a second) a tick 15 ms late slews 0.75 ms more than a
/// second's share, and a discipline that believed the share (it models the
/// slew it asked for) took the difference for a frequency error of
/// hundreds of ppm from the next two samples.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSlew {
    /// Phase still to slew, s.
    pub remaining_s: f64,
    /// Time constant, s (at least 1).
    pub time_constant_s: f64,
    /// Rate limit, s/s.
    pub rate: f64,
    /// The slew rate in force, s/s.
    pub applied: f64,
}

impl UserSlew {
    /// No slew under way, at the kernel's 500 ppm limit.
    pub fn new() -> Self {
        UserSlew { remaining_s: 0.0, time_constant_s: 1.0, rate: KERNEL_MAX_SLEW_RATE, applied: 0.0 }
    }

    /// Starts a slew of `offset` s (the previous one is replaced, not added to).
    pub fn start(&mut self, offset: f64, time_constant: f64, rate: f64) {
        self.remaining_s = offset;
        self.time_constant_s = time_constant.max(1.0);
        self.rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, MAX_USER_SLEW_RATE) };
    }

    /// Counts `elapsed` s of the rate in force as done.
    pub fn advance(&mut self, elapsed: f64) {
        self.remaining_s -= self.applied * elapsed.max(0.0);
    }

    /// The rate for the next second: `remaining/τ`, at most the rate limit
    /// (past the target after a late tick, it slews back). It becomes the
    /// rate in force.
    pub fn next_rate(&mut self) -> f64 {
        self.applied = slew_for_second(self.remaining_s, self.time_constant_s, self.rate);
        self.applied
    }

    /// Drops the slew (after a step).
    pub fn stop(&mut self) {
        self.remaining_s = 0.0;
        self.applied = 0.0;
    }
}

impl Default for UserSlew {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlledClock {
    /// Wraps a system clock; with [`SystemClock::read_only`] every adjustment fails.
    pub fn new(clock: SystemClock) -> Self {
        ControlledClock { clock, base_frequency: 0.0, slew: UserSlew::new(), applied_at: std::time::Instant::now() }
    }

    /// Counts the slew rate in force since it was set as done.
    fn account(&mut self) {
        let now = std::time::Instant::now();
        self.slew.advance(now.duration_since(self.applied_at).as_secs_f64());
        self.applied_at = now;
    }

    /// Sets the base frequency plus the next second's slew rate.
    fn apply(&mut self) -> Result<NtpTime, ClockError> {
        let rate = self.slew.next_rate();
        self.clock.set_total_frequency(self.base_frequency + rate)
    }

    /// Counts what the slew did so far, then applies the next second's rate.
    fn reapply(&mut self) -> Result<NtpTime, ClockError> {
        self.account();
        self.apply()
    }

    fn start_slew(&mut self, offset: NtpDuration, time_constant: NtpDuration, rate: f64) -> Result<NtpTime, ClockError> {
        // What the previous slew did up to now is done; the new one replaces the rest.
        self.account();
        self.slew.start(offset.to_seconds_f64(), time_constant.to_seconds_f64(), rate);
        self.apply()
    }
}

/// The frequency (s/s) that slews the next second of a slew with `remaining`
/// s left, time constant `tau` s (at least 1) and rate limit `rate` s/s.
fn slew_for_second(remaining: f64, tau: f64, rate: f64) -> f64 {
    (remaining / tau.max(1.0)).clamp(-rate, rate)
}

impl NtpClock for ControlledClock {
    type Error = ClockError;

    fn now(&self) -> NtpTime {
        self.clock.now()
    }

    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, ClockError> {
        self.base_frequency = frequency;
        self.reapply()
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, ClockError> {
        self.start_slew(offset, time_constant, KERNEL_MAX_SLEW_RATE)
    }

    fn slew_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> Result<NtpTime, ClockError> {
        self.start_slew(offset, time_constant, max_rate)
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, ClockError> {
        self.account();
        self.slew.stop();
        self.apply()?;
        self.clock.step(offset)
    }

    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, ClockError> {
        self.clock.set_leap(match leap {
            LeapIndicator::Insert => KernelLeap::Insert,
            LeapIndicator::Delete => KernelLeap::Delete,
            _ => KernelLeap::None,
        })
    }
}

impl DaemonClock for ControlledClock {
    fn precision_log2(&self) -> i8 {
        crate::precision::measure_log2(realtime_now)
    }

    fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        raw
    }

    fn time_map(&self) -> Option<TimeMap> {
        Some(TimeMap::Identity)
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }

    fn tick(&mut self) {
        if self.slew.remaining_s != 0.0 || self.slew.applied != 0.0 {
            if let Err(e) = self.reapply() {
                tracing::warn!(error = %e, "clock slew refused");
            }
        }
    }
}

/// The daemon's own disciplined clock, layered over `CLOCK_REALTIME`, which it
/// only reads: local time = the core's [`SteeredClock`] applied to the system
/// clock's reading. This is what `ntplab serve` runs without
/// `--control-system-clock`: it tracks and serves disciplined time while the
/// system clock stays exactly as it is.
#[derive(Debug)]
pub struct ObservingClock {
    steered: SteeredClock,
}

impl ObservingClock {
    /// Starts equal to the system clock.
    pub fn new() -> Self {
        ObservingClock { steered: SteeredClock::new(realtime_now()) }
    }

    /// The steering state (frequency, remaining phase) for reports.
    pub fn steered(&self) -> &SteeredClock {
        &self.steered
    }
}

impl Default for ObservingClock {
    fn default() -> Self {
        Self::new()
    }
}

impl NtpClock for ObservingClock {
    type Error = SteerError;

    fn now(&self) -> NtpTime {
        self.steered.time_at(realtime_now())
    }

    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, SteerError> {
        self.steered.set_total_frequency(realtime_now(), frequency)
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.steered.adjust_phase(realtime_now(), offset, time_constant))
    }

    fn slew_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> Result<NtpTime, SteerError> {
        Ok(self.steered.slew_phase(realtime_now(), offset, time_constant, max_rate))
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.steered.step(realtime_now(), offset))
    }

    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, SteerError> {
        Ok(self.steered.set_leap(realtime_now(), leap))
    }
}

impl DaemonClock for ObservingClock {
    fn precision_log2(&self) -> i8 {
        crate::precision::measure_log2(realtime_now)
    }

    fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        self.steered.time_at(raw)
    }

    fn time_map(&self) -> Option<TimeMap> {
        Some(TimeMap::Steered(self.steered.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controlled_slews_follow_the_rate_limit_and_tau() {
        // Exponential share while below the limit.
        assert_eq!(slew_for_second(0.01, 100.0, KERNEL_MAX_SLEW_RATE), 1e-4);
        // Kernel PLL limit: 500 ppm.
        assert_eq!(slew_for_second(0.1, 16.0, KERNEL_MAX_SLEW_RATE), KERNEL_MAX_SLEW_RATE);
        assert_eq!(slew_for_second(-0.1, 16.0, KERNEL_MAX_SLEW_RATE), -KERNEL_MAX_SLEW_RATE);
        // A fast slew through the tick, τ = 0 (linear): the rate until the end.
        assert_eq!(slew_for_second(0.1, 0.0, 0.08), 0.08);
        assert_eq!(slew_for_second(0.02, 0.0, 0.08), 0.02);
    }

    #[test]
    fn a_slew_counts_the_time_each_rate_was_in_force() {
        // 50 ms at 5 %: a second's share is the whole slew.
        let mut s = UserSlew::new();
        s.start(0.05, 0.0, 0.05);
        assert_eq!(s.next_rate(), 0.05);
        // The tick comes 15 ms late: 0.75 ms too much has been slewed, and
        // the next second slews it back.
        s.advance(1.015);
        assert!((s.remaining_s + 0.00075).abs() < 1e-12, "{}", s.remaining_s);
        assert!((s.next_rate() + 0.00075).abs() < 1e-12);
        s.advance(1.0);
        assert!(s.remaining_s.abs() < 1e-12);
        assert_eq!(s.next_rate(), 0.0);
        // Ticks in a burst (a loop that was held up) count no time twice.
        let mut s = UserSlew::new();
        s.start(0.01, 0.0, KERNEL_MAX_SLEW_RATE);
        let rate = s.next_rate();
        s.advance(3.0);
        s.next_rate();
        s.advance(0.0);
        assert!((s.remaining_s - (0.01 - 3.0 * rate)).abs() < 1e-15);
        // A new slew replaces what is left of the old one; a step drops it.
        s.start(-0.002, 16.0, KERNEL_MAX_SLEW_RATE);
        assert_eq!(s.remaining_s, -0.002);
        assert_eq!(s.next_rate(), -0.002 / 16.0);
        s.stop();
        assert_eq!((s.remaining_s, s.applied), (0.0, 0.0));
    }

    #[test]
    fn a_real_clock_measures_its_precision() {
        // CLOCK_REALTIME through the vDSO: tens of nanoseconds a reading;
        // even a 1 ms-resolution clocksource is above 2^-10 s.
        let p = ObservingClock::new().precision_log2();
        eprintln!("CLOCK_REALTIME precision: 2^{p} s");
        assert!((-30..=-10).contains(&p), "2^{p} s");
    }

    #[test]
    fn observing_clock_moves_only_itself() {
        let mut c = ObservingClock::new();
        let before = realtime_now();
        c.step(NtpDuration::from_seconds(100)).unwrap();
        let ours = c.now();
        let system = realtime_now();
        // Our clock is 100 s ahead; the system clock did not move.
        assert!((ours - system).to_seconds_f64() > 99.9);
        assert!((system - before).to_seconds_f64() < 5.0);
        assert!((c.local_time_of(system) - system).to_seconds_f64() > 99.9);
        let map = c.time_map().expect("a clock over CLOCK_REALTIME has a map");
        assert_eq!(map.local_time_of(system), c.local_time_of(system), "the map is the clock's own conversion");
    }

    #[test]
    fn controlled_clock_without_permission_refuses() {
        let mut c = ControlledClock::new(SystemClock::read_only());
        assert!(c.step(NtpDuration::from_seconds(1)).is_err());
        assert!(c.set_frequency(1e-6).is_err());
        assert!(c.adjust_phase(NtpDuration::from_seconds(1), NtpDuration::from_seconds(16)).is_err());
    }
}
