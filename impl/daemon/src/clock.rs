//! Clock providers for the daemon loop.
//!
//! A [`DaemonClock`] is the core's [`NtpClock`] plus what a driver needs: turn
//! a kernel (or simulated) timestamp into the clock's time, and a once-a-second
//! tick for clocks that slew in user space.

use crate::sysclock::{realtime_now, ClockError, KernelLeap, SystemClock};
use ntplab_proto::clock::{NtpClock, SteerError, SteeredClock};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::v4::LeapIndicator;

/// The clock the daemon loop owns.
pub trait DaemonClock: NtpClock {
    /// This clock's time at the instant a network timestamp names. Kernel
    /// timestamps read `CLOCK_REALTIME`; a clock that keeps its own time
    /// layered over it converts them here.
    fn local_time_of(&self, raw: NtpTime) -> NtpTime;

    /// How often the loop must call [`DaemonClock::tick`]; `None` (the default)
    /// for clocks that need no ticks, which lets a simulated host sleep between
    /// packets.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called every [`DaemonClock::tick_interval`] by the loop.
    fn tick(&mut self) {}
}

/// The system clock, disciplined through `clock_adjtime` (only with the
/// operator's explicit consent: [`SystemClock::with_control`]).
///
/// Frequency goes to the kernel directly (`ADJ_FREQUENCY`). A phase slew is
/// done the way RFC 5905's clock-adjust process does it (A.5.6.1): once a
/// second the remaining offset shrinks by `1/τ` and that second's share is
/// added to the kernel frequency, so the offset decays exponentially with time
/// constant τ and the clock never steps.
#[derive(Debug)]
pub struct ControlledClock {
    clock: SystemClock,
    base_frequency: f64,
    remaining_phase_s: f64,
    time_constant_s: f64,
}

impl ControlledClock {
    /// Wraps a system clock; with [`SystemClock::read_only`] every adjustment fails.
    pub fn new(clock: SystemClock) -> Self {
        ControlledClock { clock, base_frequency: 0.0, remaining_phase_s: 0.0, time_constant_s: 1.0 }
    }

    fn apply_frequency(&mut self, slew: f64) -> Result<NtpTime, ClockError> {
        self.clock.set_frequency_ppm((self.base_frequency + slew) * 1e6)
    }
}

impl NtpClock for ControlledClock {
    type Error = ClockError;

    fn now(&self) -> NtpTime {
        self.clock.now()
    }

    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, ClockError> {
        self.base_frequency = frequency;
        self.apply_frequency(self.remaining_phase_s / self.time_constant_s)
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, ClockError> {
        self.remaining_phase_s = offset.to_seconds_f64();
        self.time_constant_s = time_constant.to_seconds_f64().max(1.0);
        self.apply_frequency(self.remaining_phase_s / self.time_constant_s)
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, ClockError> {
        self.remaining_phase_s = 0.0;
        self.apply_frequency(0.0)?;
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
    fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        raw
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }

    fn tick(&mut self) {
        if self.remaining_phase_s != 0.0 {
            // The last second slewed remaining/τ; that much is done.
            self.remaining_phase_s -= self.remaining_phase_s / self.time_constant_s;
            let slew = self.remaining_phase_s / self.time_constant_s;
            if let Err(e) = self.apply_frequency(slew) {
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
        self.steered.set_frequency(realtime_now(), frequency)
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.steered.adjust_phase(realtime_now(), offset, time_constant))
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, SteerError> {
        Ok(self.steered.step(realtime_now(), offset))
    }

    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, SteerError> {
        Ok(self.steered.set_leap(realtime_now(), leap))
    }
}

impl DaemonClock for ObservingClock {
    fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        self.steered.time_at(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn controlled_clock_without_permission_refuses() {
        let mut c = ControlledClock::new(SystemClock::read_only());
        assert!(c.step(NtpDuration::from_seconds(1)).is_err());
        assert!(c.set_frequency(1e-6).is_err());
        assert!(c.adjust_phase(NtpDuration::from_seconds(1), NtpDuration::from_seconds(16)).is_err());
    }
}
