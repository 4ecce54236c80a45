//! A simulated host's clock: the free-running oscillator (true time → raw
//! time), timestamp noise, and the kernel-like steering the daemon applies
//! (the core's [`SteeredClock`]), plus the trace grid of true offsets.
//!
//! The daemon sees this through [`SimClock`], its [`DaemonClock`]; the
//! simulated sockets read raw timestamps from it at exact true instants; the
//! harness samples the true offset (local − true time) on a fixed grid without
//! waking up for it: the grid is filled in lazily whenever the clock is read or
//! adjusted, since between adjustments local time is a pure function of true time.

use crate::net::Shared;
use crate::oscillator::Oscillator;
use crate::rng::SimRng;
use ntplab_daemon::clock::DaemonClock;
use ntplab_proto::clock::{LeapStatus, NtpClock, SteerError, SteeredClock};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::v4::LeapIndicator;
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

/// One point of the trace grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    /// True time since the start of the run.
    pub elapsed: NtpDuration,
    /// Local (disciplined) time minus true time, seconds.
    pub offset_s: f64,
    /// Frequency error of the disciplined clock, s/s (oscillator error plus the
    /// steering's frequency correction; a phase slew in progress is not included).
    pub frequency_error: f64,
}

/// Where grid samples go.
pub type SampleSink = Box<dyn FnMut(usize, &ClockSample)>;

/// Noise on timestamp readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadNoise {
    /// Standard deviation of Gaussian noise added to each reading, seconds.
    pub noise_s: f64,
    /// Readings are quantised down to multiples of this, seconds (0: none).
    pub precision_s: f64,
}

/// The precision, log2 s, a simulated host's daemon reports when its clock
/// reads exactly (`precision = 0`, the scenario's default): 2^-23 s, 119 ns.
/// A simulated reading costs nothing, so measuring it as a real daemon does
/// ([`ntplab_daemon::precision`]) would find only the simulator's 2^-32 s
/// units. This is the value chronyd measures under clknetsim, whose
/// `clock_gettime` advances 101 ns or more between the readings of chrony's
/// measurement (log2 101 ns = -23.2; `scripts/compare-chrony.sh -p` shows
/// chronyd's server reporting -23 to its client), so that ntplab and chronyd run on
/// chrony's simulation tests with the same precision in their packets and
/// the same noise floor. (A real clock read through the vDSO measures about
/// 2^-25 s, 30 ns: the daemon's test `a_real_clock_measures_its_precision`
/// prints what it finds.)
pub const DEFAULT_PRECISION_LOG2: i8 = -23;

impl ReadNoise {
    /// The precision a daemon reading this clock reports (RFC 5905 §7.3),
    /// log2 s: the reading resolution's, rounded as
    /// [`ntplab_daemon::precision::log2_of`] rounds a measurement, when
    /// readings are quantised; [`DEFAULT_PRECISION_LOG2`] when they are exact.
    pub fn precision_log2(&self) -> i8 {
        if self.precision_s > 0.0 {
            ntplab_daemon::precision::log2_of(self.precision_s)
        } else {
            DEFAULT_PRECISION_LOG2
        }
    }
}

/// The clock state of one simulated host.
pub struct HostClock {
    index: usize,
    address: IpAddr,
    start: NtpTime,
    oscillator: Oscillator,
    steered: SteeredClock,
    noise: ReadNoise,
    rng: SimRng,
    /// Latest oscillator query: (true time, raw offset, frequency).
    last: Option<(NtpDuration, NtpDuration, f64)>,
    grid_interval: NtpDuration,
    grid_next: NtpDuration,
    sink: Option<SampleSink>,
    /// Clock adjustments applied by the daemon: (frequency, slew, step, leap).
    pub adjustments: [u64; 4],
    /// UTC leap seconds: from this true time on, UTC on the NTP timescale is
    /// shifted by this much from true (SI) time (−1 s per inserted second).
    utc_shifts: Vec<(NtpDuration, NtpDuration)>,
}

/// How far UTC on the NTP timescale is from true time at `at` into the run,
/// given UTC's shifts (`(from, shift)`: [`crate::run::utc_shifts`]).
pub fn utc_shift_at(shifts: &[(NtpDuration, NtpDuration)], at: NtpDuration) -> NtpDuration {
    shifts.iter().filter(|(from, _)| *from <= at).fold(NtpDuration::ZERO, |a, (_, s)| a + *s)
}

/// A clock a little behind true time reaches its own leap midnight a
/// little after UTC's: for that moment UTC has repeated (or skipped) a
/// second and the clock not yet, and `local − UTC` reads 1 s off though
/// the clock is only the lag off. Within the second after a UTC leap,
/// while the clock still has its leap `armed`, this is the shift that puts
/// both on one timescale (zero otherwise). A clock that never applies the
/// leap is 1 s off from the end of that second on. (The lab judges its
/// clocks with the same two functions.)
pub fn leap_in_flight(shifts: &[(NtpDuration, NtpDuration)], t: NtpDuration, armed: bool) -> NtpDuration {
    let second = NtpDuration::from_seconds(1);
    match shifts.iter().find(|(from, _)| *from <= t && t < *from + second) {
        Some((_, shift)) if armed => *shift,
        _ => NtpDuration::ZERO,
    }
}

impl HostClock {
    /// A host clock. `index` identifies the host to the sample sink.
    pub fn new(
        index: usize,
        address: IpAddr,
        start: NtpTime,
        mut oscillator: Oscillator,
        noise: ReadNoise,
        rng: SimRng,
        grid_interval: NtpDuration,
    ) -> Self {
        let raw_offset = oscillator.raw_offset_at(NtpDuration::ZERO);
        let steered = SteeredClock::new(start + raw_offset);
        HostClock {
            index,
            address,
            start,
            oscillator,
            steered,
            noise,
            rng,
            last: None,
            grid_interval,
            grid_next: NtpDuration::ZERO,
            sink: None,
            adjustments: [0; 4],
            utc_shifts: Vec::new(),
        }
    }

    /// Sets the run's UTC leap seconds (see [`HostClock::utc_at`]).
    pub fn set_utc_shifts(&mut self, shifts: Vec<(NtpDuration, NtpDuration)>) {
        self.utc_shifts = shifts;
    }

    /// True UTC on the NTP timescale at true time `at` (which repeats a second
    /// at an inserted leap and skips one at a deleted leap).
    pub fn utc_at(&self, at: NtpDuration) -> NtpTime {
        self.start + at + utc_shift_at(&self.utc_shifts, at)
    }

    /// [`leap_in_flight`] for this clock at true time `t` (oscillator reading `raw`).
    fn leap_in_flight(&self, t: NtpDuration, raw: NtpTime) -> NtpDuration {
        leap_in_flight(&self.utc_shifts, t, matches!(self.steered.leap_status(raw), LeapStatus::Armed { .. }))
    }

    /// Sends grid samples to `sink`.
    pub fn set_sink(&mut self, sink: SampleSink) {
        self.sink = Some(sink);
    }

    /// The host's index in the run.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The host's address (used to match arrivals on unspecified-address sockets).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The oscillator, for scenario events (external steps, frequency changes).
    pub fn oscillator_mut(&mut self) -> &mut Oscillator {
        &mut self.oscillator
    }

    /// The steering state.
    pub fn steered(&self) -> &SteeredClock {
        &self.steered
    }

    /// Noiseless raw offset at true time `at`. Queries may go back by the
    /// width of one scheduler tick (a datagram read after a later clock read):
    /// those extrapolate linearly from the latest query, which over a
    /// millisecond is exact to well below a nanosecond.
    fn raw_offset(&mut self, at: NtpDuration) -> NtpDuration {
        if let Some((t, offset, frequency)) = self.last {
            if at < t {
                let back = (t - at).to_seconds_f64();
                return offset - NtpDuration::from_seconds_f64(frequency * back);
            }
        }
        let offset = self.oscillator.raw_offset_at(at);
        let frequency = self.oscillator.frequency_at(at);
        self.last = Some((at, offset, frequency));
        offset
    }

    /// The raw clock reading (with noise and quantisation) at true time `at`.
    pub fn read_raw(&mut self, at: NtpDuration) -> NtpTime {
        self.fill_grid(at);
        let mut offset = self.raw_offset(at);
        if self.noise.noise_s > 0.0 {
            offset = offset + NtpDuration::from_seconds_f64(self.noise.noise_s * self.rng.normal());
        }
        let raw = self.start + at + offset;
        quantise(raw, self.noise.precision_s)
    }

    /// Local time at true time `at` (what the daemon reads).
    pub fn local_at(&mut self, at: NtpDuration) -> NtpTime {
        let raw = self.read_raw(at);
        self.steered.time_at(raw)
    }

    /// Local time at true time `at` without reading noise (for traces: it
    /// consumes no random numbers, so tracing never changes a run).
    pub fn local_noiseless(&mut self, at: NtpDuration) -> NtpTime {
        let offset = self.raw_offset(at);
        self.steered.time_at(self.start + at + offset)
    }

    /// Emits grid samples for every grid point up to `until`, with the
    /// steering as it is now (it has not changed since the last fill).
    pub fn fill_grid(&mut self, until: NtpDuration) {
        if self.sink.is_none() {
            return;
        }
        let mut emitted = 0u32;
        while self.grid_next <= until && emitted < 1_000_000 {
            let t = self.grid_next;
            let offset = self.raw_offset(t);
            let frequency = self.last.map_or(0.0, |l| l.2);
            let raw = self.start + t + offset;
            let local = self.steered.time_at(raw);
            let sample = ClockSample {
                elapsed: t,
                offset_s: (local - self.utc_at(t) + self.leap_in_flight(t, raw)).to_seconds_f64(),
                frequency_error: (1.0 + frequency) * (1.0 + self.steered.frequency()) - 1.0,
            };
            if let Some(sink) = self.sink.as_mut() {
                sink(self.index, &sample);
            }
            self.grid_next = self.grid_next + self.grid_interval;
            emitted += 1;
        }
    }

    /// Steps the oscillator itself at true time `at` (a scenario event: someone
    /// else set this host's clock).
    pub fn external_step(&mut self, at: NtpDuration, by: NtpDuration) {
        self.fill_grid(at);
        // Pin the pre-step state at `at`: earlier instants (a datagram read
        // late, a trace record) extrapolate from it and never see the step.
        let _ = self.raw_offset(at);
        self.oscillator.step(at, by);
    }
}

fn quantise(t: NtpTime, precision_s: f64) -> NtpTime {
    if precision_s <= 0.0 {
        return t;
    }
    let unit = NtpDuration::from_seconds_f64(precision_s).to_bits().max(1) as u64;
    let frac = u64::from(t.fraction());
    NtpTime::new(t.secs_since_1900(), (frac - frac % unit.min(1 << 32)) as u32)
}

/// The daemon's view of a simulated host clock.
pub struct SimClock {
    clock: Rc<RefCell<HostClock>>,
    shared: Rc<Shared>,
}

impl SimClock {
    /// The daemon clock of the host whose state is `clock`.
    pub fn new(clock: Rc<RefCell<HostClock>>, shared: Rc<Shared>) -> Self {
        SimClock { clock, shared }
    }

    fn raw_now(&self) -> NtpTime {
        let now = self.shared.elapsed();
        self.clock.borrow_mut().read_raw(now)
    }
}

impl NtpClock for SimClock {
    type Error = SteerError;

    fn now(&self) -> NtpTime {
        let raw = self.raw_now();
        self.clock.borrow().steered.time_at(raw)
    }

    fn set_frequency(&mut self, frequency: f64) -> Result<NtpTime, SteerError> {
        let raw = self.raw_now();
        let mut c = self.clock.borrow_mut();
        c.adjustments[0] += 1;
        // Through tick and frequency, as a Linux clock can (±10 % + 500 ppm).
        c.steered.set_total_frequency(raw, frequency)
    }

    fn adjust_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration) -> Result<NtpTime, SteerError> {
        let raw = self.raw_now();
        let mut c = self.clock.borrow_mut();
        c.adjustments[1] += 1;
        Ok(c.steered.adjust_phase(raw, offset, time_constant))
    }

    fn slew_phase(&mut self, offset: NtpDuration, time_constant: NtpDuration, max_rate: f64) -> Result<NtpTime, SteerError> {
        let raw = self.raw_now();
        let mut c = self.clock.borrow_mut();
        c.adjustments[1] += 1;
        Ok(c.steered.slew_phase(raw, offset, time_constant, max_rate))
    }

    fn step(&mut self, offset: NtpDuration) -> Result<NtpTime, SteerError> {
        let raw = self.raw_now();
        let mut c = self.clock.borrow_mut();
        c.adjustments[2] += 1;
        Ok(c.steered.step(raw, offset))
    }

    fn set_leap(&mut self, leap: LeapIndicator) -> Result<NtpTime, SteerError> {
        let raw = self.raw_now();
        let mut c = self.clock.borrow_mut();
        c.adjustments[3] += 1;
        Ok(c.steered.set_leap(raw, leap))
    }
}

impl DaemonClock for SimClock {
    fn precision_log2(&self) -> i8 {
        self.clock.borrow().noise.precision_log2()
    }

    fn local_time_of(&self, raw: NtpTime) -> NtpTime {
        self.clock.borrow().steered.time_at(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_reports_its_resolution_or_the_default() {
        assert_eq!(ReadNoise::default().precision_log2(), DEFAULT_PRECISION_LOG2, "exact readings");
        assert_eq!(DEFAULT_PRECISION_LOG2, ntplab_daemon::precision::log2_of(101e-9), "what chronyd measures under clknetsim");
        let noisy = ReadNoise { noise_s: 1e-6, precision_s: 0.0 };
        assert_eq!(noisy.precision_log2(), DEFAULT_PRECISION_LOG2, "noise is not resolution");
        for (precision_s, log2) in [(1e-9, -30), (1e-6, -20), (2f64.powi(-10), -10), (0.01, -7)] {
            assert_eq!(ReadNoise { noise_s: 0.0, precision_s }.precision_log2(), log2, "{precision_s} s");
        }
    }
}
