//! The probe's traffic bound, sans-IO: the driver asks when it may send
//! next and reports each send; time is a monotonic nanosecond count the
//! driver passes in (a fake clock in tests).
//!
//! Three limits hold together:
//! - paced sends are at least `1 / rate` apart (at most `rate` per second);
//! - a burst (the rate-limiting case) may send up to `burst_max` datagrams
//!   back to back, at most once per [`Pacer::BURST_GAP_NS`], fenced by a
//!   quiet second before and after: no one-second window holds more than
//!   `max(rate, burst_max)` datagrams;
//! - at most `packets_max` datagrams in all, and nothing after `wall_ns_max`.

/// Pacing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    /// Paced datagrams per second (1..=100).
    pub rate: u32,
    /// Datagrams a burst may hold.
    pub burst_max: u32,
    /// Total datagrams.
    pub packets_max: u32,
    /// Total run time, nanoseconds.
    pub wall_ns_max: u64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig { rate: 20, burst_max: 16, packets_max: 600, wall_ns_max: 120_000_000_000 }
    }
}

/// Why the pacer refuses to send any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The packet cap is reached.
    Packets(u32),
    /// The time cap is reached (seconds).
    Time(u64),
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::Packets(n) => write!(f, "packet cap reached: {n} datagrams sent"),
            Exhausted::Time(s) => write!(f, "time cap reached: {s} s"),
        }
    }
}

/// One second in nanoseconds.
const SECOND_NS: u64 = 1_000_000_000;

/// The pacer. Call [`Pacer::next_send`] before each datagram, wait until
/// the time it returns, then call [`Pacer::sent`] with the actual time.
#[derive(Debug, Clone)]
pub struct Pacer {
    config: PacerConfig,
    start_ns: u64,
    /// Earliest time of the next paced send.
    next_ns: u64,
    /// Datagrams sent.
    count: u32,
    /// Datagrams left in the current burst, and when the last burst began.
    burst_left: u32,
    last_burst_ns: Option<u64>,
    last_send_ns: Option<u64>,
}

impl Pacer {
    /// A pacer whose run starts at `start_ns`. A rate of 0 is taken as 1 and
    /// more than 100 as 100.
    pub fn new(mut config: PacerConfig, start_ns: u64) -> Self {
        config.rate = config.rate.clamp(1, 100);
        Pacer { config, start_ns, next_ns: start_ns, count: 0, burst_left: 0, last_burst_ns: None, last_send_ns: None }
    }

    /// The settings in force.
    pub fn config(&self) -> &PacerConfig {
        &self.config
    }

    /// Datagrams sent so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    fn interval_ns(&self) -> u64 {
        SECOND_NS / u64::from(self.config.rate)
    }

    /// Starts a burst of `n` datagrams (at most `burst_max`); returns how many
    /// it allows. The burst begins no earlier than one second after the last
    /// send and [`Pacer::BURST_GAP_NS`] after the previous burst began (the caller
    /// waits for [`Pacer::next_send`] as usual).
    pub fn begin_burst(&mut self, n: u32, now_ns: u64) -> u32 {
        let n = n.min(self.config.burst_max);
        let quiet = self.last_send_ns.map_or(now_ns, |t| t + SECOND_NS);
        let gap = self.last_burst_ns.map_or(now_ns, |t| t + Self::BURST_GAP_NS);
        self.next_ns = self.next_ns.max(quiet).max(gap).max(now_ns);
        self.burst_left = n;
        n
    }

    /// Bursts begin at least this far apart (10 s).
    pub const BURST_GAP_NS: u64 = 10 * SECOND_NS;

    /// When the next datagram may leave (monotonic ns), or why none may.
    pub fn next_send(&self, now_ns: u64) -> Result<u64, Exhausted> {
        if self.count >= self.config.packets_max {
            return Err(Exhausted::Packets(self.count));
        }
        let end = self.start_ns.saturating_add(self.config.wall_ns_max);
        let at = self.next_ns.max(now_ns);
        if at >= end {
            return Err(Exhausted::Time(self.config.wall_ns_max / SECOND_NS));
        }
        Ok(at)
    }

    /// Records a send at `now_ns` (which must be at or after what
    /// [`Pacer::next_send`] returned).
    pub fn sent(&mut self, now_ns: u64) {
        self.count += 1;
        self.last_send_ns = Some(now_ns);
        if self.burst_left > 0 {
            if self.last_burst_ns.is_none_or(|b| now_ns >= b + Self::BURST_GAP_NS) {
                self.last_burst_ns = Some(now_ns);
            }
            self.burst_left -= 1;
            // The burst's datagrams go back to back; the paced rate resumes
            // one second after it, so no window holds more than rate + burst.
            self.next_ns = if self.burst_left == 0 { now_ns + SECOND_NS } else { now_ns };
        } else {
            self.next_ns = now_ns + self.interval_ns();
        }
    }

    /// Time left before the wall-time cap, ns.
    pub fn time_left_ns(&self, now_ns: u64) -> u64 {
        self.start_ns.saturating_add(self.config.wall_ns_max).saturating_sub(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pacer with a fake clock: a schedule of (paced sends, burst
    /// size) rounds; returns every send time.
    fn drive(config: PacerConfig, rounds: &[(u32, u32)], think_ns: u64) -> (Vec<u64>, Option<Exhausted>) {
        let mut now = 5_000;
        let mut p = Pacer::new(config, now);
        let mut times = Vec::new();
        let send = |p: &mut Pacer, now: &mut u64, times: &mut Vec<u64>| -> Result<(), Exhausted> {
            let at = p.next_send(*now)?;
            assert!(at >= *now, "never in the past");
            *now = at;
            p.sent(*now);
            times.push(*now);
            *now += think_ns;
            Ok(())
        };
        for &(paced, burst) in rounds {
            for _ in 0..paced {
                if let Err(e) = send(&mut p, &mut now, &mut times) {
                    return (times, Some(e));
                }
            }
            let n = if burst > 0 { p.begin_burst(burst, now) } else { 0 };
            for _ in 0..n {
                if let Err(e) = send(&mut p, &mut now, &mut times) {
                    return (times, Some(e));
                }
            }
        }
        (times, None)
    }

    fn max_in_window(times: &[u64], window_ns: u64) -> usize {
        (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + window_ns).count()).max().unwrap_or(0)
    }

    #[test]
    fn paced_sends_never_exceed_the_rate_in_any_second() {
        for rate in [1, 5, 20, 100] {
            let config = PacerConfig { rate, packets_max: 10_000, wall_ns_max: u64::MAX / 4, ..PacerConfig::default() };
            let (times, stop) = drive(config, &[(500, 0)], 0);
            assert_eq!(stop, None);
            assert_eq!(times.len(), 500);
            assert!(max_in_window(&times, SECOND_NS) <= rate as usize, "rate {rate}: {}", max_in_window(&times, SECOND_NS));
            assert!(times.windows(2).all(|w| w[1] - w[0] >= SECOND_NS / u64::from(rate)));
        }
    }

    #[test]
    fn a_burst_adds_at_most_burst_max_to_any_second_and_bursts_are_spaced() {
        let config = PacerConfig { rate: 20, burst_max: 16, packets_max: 10_000, wall_ns_max: u64::MAX / 4 };
        // Ask for bursts of 40: each is cut to 16.
        let (times, stop) = drive(config, &[(30, 40), (30, 40), (50, 0), (3, 40)], 1_000);
        assert_eq!(stop, None);
        assert_eq!(times.len(), 30 + 16 + 30 + 16 + 50 + 3 + 16);
        // A burst is fenced by a quiet second on each side: no second holds
        // more than the larger of the rate and the burst.
        assert_eq!(max_in_window(&times, SECOND_NS), 20);
        // Bursts are at least 10 s apart: no 10 s window holds two.
        assert!(max_in_window(&times, 10 * SECOND_NS) <= 16 + 20 * 10);
        let bursts: Vec<u64> = times.windows(16).filter(|w| w[15] - w[0] < SECOND_NS / 100).map(|w| w[0]).collect();
        assert!(bursts.windows(2).all(|b| b[1] - b[0] >= Pacer::BURST_GAP_NS || b[1] - b[0] < SECOND_NS), "{bursts:?}");
    }

    #[test]
    fn the_packet_and_time_caps_stop_the_run() {
        let config = PacerConfig { rate: 100, burst_max: 16, packets_max: 50, wall_ns_max: 100 * SECOND_NS };
        let (times, stop) = drive(config, &[(80, 0)], 0);
        assert_eq!((times.len(), stop), (50, Some(Exhausted::Packets(50))));
        let config = PacerConfig { rate: 2, burst_max: 16, packets_max: 1000, wall_ns_max: 10 * SECOND_NS };
        let (times, stop) = drive(config, &[(80, 0)], 0);
        assert_eq!((times.len(), stop), (20, Some(Exhausted::Time(10))));
    }

    #[test]
    fn rates_out_of_range_are_clamped() {
        assert_eq!(Pacer::new(PacerConfig { rate: 0, ..PacerConfig::default() }, 0).config().rate, 1);
        assert_eq!(Pacer::new(PacerConfig { rate: 1000, ..PacerConfig::default() }, 0).config().rate, 100);
    }
}
