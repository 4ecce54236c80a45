//! Network links: delay, jitter, loss, duplication, reordering and partitions.
//!
//! A [`Path`] is one direction of a network path; a [`Link`] pairs two (the
//! forward path carries packets from the link's first endpoint to its second,
//! the backward path the replies). The simulator calls [`Path::transmit`] once
//! per packet sent and schedules a delivery for each one-way delay it gets
//! back.
//!
//! # Delay model
//!
//! `delay = delay_s + jitter + (reorder_delay_s with probability reorder)`.
//! `delay_s` is the minimum one-way delay; every jitter distribution adds a
//! non-negative extra (see [`Jitter`]), so delays are never negative and NTP's
//! minimum-delay filters see `delay_s` as the floor.
//!
//! **FIFO is not enforced**: each packet's delay is drawn independently, so a
//! packet can overtake one sent earlier whenever its delay is shorter by more
//! than the gap between them, as with Linux netem's jitter. `reorder` forces
//! that on purpose by holding a packet back by `reorder_delay_s`.
//!
//! # Randomness
//!
//! Each direction has its own stream (forked from the link's [`SimRng`] with
//! the labels `link/forward` and `link/backward`), so traffic one way never
//! changes what happens the other way. Every [`Path::transmit`] call makes the
//! same draws in the same order whatever the outcome (even on a down link):
//! loss, duplicate, two reorder coins, two jitter samples. Changing the loss or
//! duplicate probability in the middle of a run therefore changes which
//! packets are lost or doubled, not the delays of the others.
//!
//! # Configuration
//!
//! [`PathConfig::validate`] and [`LinkConfig::validate`] report what is wrong.
//! Transmitting never panics whatever the configuration: a NaN or negative
//! delay counts as 0, a NaN probability as 0, and a delay too long for
//! [`NtpDuration`] saturates at 68 years.

use crate::rng::SimRng;
use ntplab_proto::time::NtpDuration;

/// The random extra one-way delay added to a path's base delay. Every variant
/// is non-negative.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Jitter {
    /// No jitter: every packet takes exactly the base delay.
    #[default]
    None,
    /// Exponential with mean `mean_s` (clknetsim's and chrony's tests use
    /// `1e-4 * (exponential)` on top of a 1e-4 s base delay).
    Exponential {
        /// Mean extra delay, seconds (≥ 0).
        mean_s: f64,
    },
    /// N(0, sd_s²) truncated to non-negative values, i.e. the half-normal
    /// `|N(0, sd_s²)|`, with mean `sd_s · √(2/π)`.
    Normal {
        /// Standard deviation of the untruncated normal, seconds (≥ 0).
        sd_s: f64,
    },
    /// Uniform on `[0, max_s)`.
    Uniform {
        /// Upper bound of the extra delay, seconds (≥ 0).
        max_s: f64,
    },
    /// Heavy-tailed: a Pareto deviate with minimum `scale_s` and tail index
    /// `shape`, shifted down by `scale_s` so the extra starts at 0 (a Lomax
    /// distribution). Mean `scale_s / (shape − 1)` for `shape > 1`, infinite
    /// otherwise; the variance is finite only for `shape > 2`.
    Pareto {
        /// Scale, seconds (≥ 0).
        scale_s: f64,
        /// Tail index (> 0); smaller is heavier.
        shape: f64,
    },
}

impl Jitter {
    /// Expected extra delay, seconds (infinite for a Pareto with `shape ≤ 1`).
    pub fn mean_s(&self) -> f64 {
        match *self {
            Jitter::None => 0.0,
            Jitter::Exponential { mean_s } => mean_s,
            Jitter::Normal { sd_s } => sd_s * (2.0 / core::f64::consts::PI).sqrt(),
            Jitter::Uniform { max_s } => max_s / 2.0,
            Jitter::Pareto { scale_s, shape } => {
                if shape > 1.0 {
                    scale_s / (shape - 1.0)
                } else {
                    f64::INFINITY
                }
            }
        }
    }

    /// Checks the parameters; the error names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let nonneg = |name: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(format!("jitter.{name}: must be finite and ≥ 0, got {x}"))
            }
        };
        match *self {
            Jitter::None => Ok(()),
            Jitter::Exponential { mean_s } => nonneg("mean_s", mean_s),
            Jitter::Normal { sd_s } => nonneg("sd_s", sd_s),
            Jitter::Uniform { max_s } => nonneg("max_s", max_s),
            Jitter::Pareto { scale_s, shape } => {
                nonneg("scale_s", scale_s)?;
                if shape.is_finite() && shape > 0.0 {
                    Ok(())
                } else {
                    Err(format!("jitter.shape: must be finite and > 0, got {shape}"))
                }
            }
        }
    }

    /// One extra delay, seconds. Draw count depends on the variant only.
    /// (Also the hardware lab's link emulator's.)
    pub fn sample(&self, rng: &mut SimRng) -> f64 {
        match *self {
            Jitter::None => 0.0,
            Jitter::Exponential { mean_s } => rng.exponential(mean_s),
            Jitter::Normal { sd_s } => (sd_s * rng.normal()).abs(),
            Jitter::Uniform { max_s } => max_s * rng.uniform(),
            Jitter::Pareto { scale_s, shape } => rng.pareto(scale_s, shape) - scale_s,
        }
    }
}

/// One direction of a network path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathConfig {
    /// Base (minimum) one-way delay, seconds (≥ 0).
    pub delay_s: f64,
    /// Random extra delay on top of `delay_s`.
    pub jitter: Jitter,
    /// Probability that a packet is lost, in [0, 1].
    pub loss: f64,
    /// Probability that a delivered packet arrives twice, in [0, 1]; the
    /// copy gets its own jitter and reorder draws.
    pub duplicate: f64,
    /// Probability that a packet is held back by `reorder_delay_s`, in [0, 1].
    pub reorder: f64,
    /// Extra delay of a reordered packet, seconds (≥ 0).
    pub reorder_delay_s: f64,
    /// A deterministic loss pattern: of the packets handed to the path, only
    /// the `pass_every`-th, 2·`pass_every`-th, … get through (clknetsim's
    /// `(% (sum 1) N)` expressions in chrony's tests, e.g. 126-burst passes
    /// every fourth request); 0 and 1 let every packet through. Applies on
    /// top of `loss`; the count runs from the path's creation and includes
    /// packets sent while it is down.
    pub pass_every: u32,
}

impl Default for PathConfig {
    /// A perfect path: zero delay, no jitter, no loss.
    fn default() -> Self {
        PathConfig {
            delay_s: 0.0,
            jitter: Jitter::None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_s: 0.0,
            pass_every: 1,
        }
    }
}

impl PathConfig {
    /// A path with a fixed one-way delay and nothing else.
    pub fn fixed(delay_s: f64) -> Self {
        PathConfig {
            delay_s,
            ..Default::default()
        }
    }

    /// Checks every field; the error names the first bad one and says why.
    pub fn validate(&self) -> Result<(), String> {
        let nonneg = |name: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name}: must be finite and ≥ 0, got {x}"))
            }
        };
        let probability = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name}: must be a probability in [0, 1], got {p}"))
            }
        };
        nonneg("delay_s", self.delay_s)?;
        self.jitter.validate()?;
        probability("loss", self.loss)?;
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        nonneg("reorder_delay_s", self.reorder_delay_s)
    }
}

/// A bidirectional link: two independent paths and one up/down switch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// From the link's first endpoint to its second (e.g. client to server).
    pub forward: PathConfig,
    /// From the second endpoint back to the first.
    pub backward: PathConfig,
    /// Whether the link carries packets at all (false = partitioned).
    pub up: bool,
}

impl LinkConfig {
    /// The same path model both ways, link up.
    pub fn symmetric(path: PathConfig) -> Self {
        LinkConfig {
            forward: path,
            backward: path,
            up: true,
        }
    }

    /// `path` both ways, plus `asymmetry_s` of extra base delay on one side:
    /// on the forward path if positive, on the backward path if negative, so
    /// that forward minus backward base delay is `asymmetry_s`. (An NTP client
    /// on the forward end then sees a systematic offset error of
    /// `asymmetry_s / 2`.)
    pub fn asymmetric(path: PathConfig, asymmetry_s: f64) -> Self {
        let mut link = LinkConfig::symmetric(path);
        if asymmetry_s >= 0.0 {
            link.forward.delay_s += asymmetry_s;
        } else {
            link.backward.delay_s -= asymmetry_s;
        }
        link
    }

    /// Checks both paths; the error says which direction is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.forward
            .validate()
            .map_err(|e| format!("forward.{e}"))?;
        self.backward
            .validate()
            .map_err(|e| format!("backward.{e}"))
    }
}

/// Why a packet was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// Dropped by the random loss process.
    Random,
    /// The link was down (partitioned).
    LinkDown,
    /// Not one of the packets the deterministic pattern lets through
    /// ([`PathConfig::pass_every`]).
    Pattern,
}

/// What happens to one packet handed to a [`Path`].
#[must_use = "a packet's fate must be scheduled or recorded"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after `delay` (one-way, from the send instant), and a second
    /// time after `duplicate_delay` if duplicated. The caller MUST schedule
    /// one delivery per delay; the two may arrive in either order.
    Deliver {
        /// One-way delay of the packet.
        delay: NtpDuration,
        /// One-way delay of the copy, when the packet was duplicated.
        duplicate_delay: Option<NtpDuration>,
    },
    /// Not delivered.
    Lost(LossReason),
}

impl Fate {
    /// The one-way delays of the deliveries: none, one or two.
    pub fn delays(&self) -> impl Iterator<Item = NtpDuration> {
        let (first, second) = match *self {
            Fate::Deliver {
                delay,
                duplicate_delay,
            } => (Some(delay), duplicate_delay),
            Fate::Lost(_) => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// Whether the packet was lost.
    pub fn is_lost(&self) -> bool {
        matches!(self, Fate::Lost(_))
    }
}

/// One direction of a network path, with its own random stream.
#[derive(Clone, Debug)]
pub struct Path {
    config: PathConfig,
    up: bool,
    rng: SimRng,
    /// Packets handed to the path so far ([`PathConfig::pass_every`]).
    sent: u64,
    /// A configuration that replaces the current one once `sent` reaches
    /// the count ([`Path::set_config_after`]).
    pending: Option<(u64, PathConfig)>,
}

impl Path {
    /// A path following `config`, up, drawing from `rng`.
    pub fn new(config: PathConfig, rng: SimRng) -> Path {
        Path {
            config,
            up: true,
            rng,
            sent: 0,
            pending: None,
        }
    }

    /// The current configuration.
    pub fn config(&self) -> &PathConfig {
        &self.config
    }

    /// Replaces the configuration (a scenario event); applies to packets sent
    /// from now on, not to those in flight.
    pub fn set_config(&mut self, config: PathConfig) {
        self.config = config;
        self.pending = None;
    }

    /// Replaces the configuration once the path has been handed `packets`
    /// more packets (counted from now, including those sent while it is
    /// down): the packet after the `packets`-th is the first to follow
    /// `config`. chrony's tests write this as clknetsim's `(sum 1)` packet
    /// counter, e.g. 126-burst's "after the 6th packet". A later
    /// [`Path::set_config`] or `set_config_after` replaces a change still pending.
    pub fn set_config_after(&mut self, packets: u64, config: PathConfig) {
        self.pending = Some((self.sent.saturating_add(packets), config));
    }

    /// Whether the path carries packets.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Takes the path down (partition) or back up (heal). Packets already in
    /// flight are not affected.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// The fate of a packet sent at `now` (true time). The models are
    /// time-invariant today; `now` is there so that time-varying ones fit
    /// without an API change.
    pub fn transmit(&mut self, now: NtpDuration) -> Fate {
        let _ = now;
        if let Some((at, config)) = self.pending {
            if self.sent >= at {
                self.config = config;
                self.pending = None;
            }
        }
        let c = self.config;
        // Fixed draws in a fixed order, whatever the outcome (see the module docs).
        let lost = self.rng.bernoulli(c.loss);
        let duplicated = self.rng.bernoulli(c.duplicate);
        let reordered = [self.rng.bernoulli(c.reorder), self.rng.bernoulli(c.reorder)];
        let jitter_s = [
            c.jitter.sample(&mut self.rng),
            c.jitter.sample(&mut self.rng),
        ];
        self.sent = self.sent.wrapping_add(1);
        if !self.up {
            return Fate::Lost(LossReason::LinkDown);
        }
        if c.pass_every > 1 && self.sent % u64::from(c.pass_every) != 0 {
            return Fate::Lost(LossReason::Pattern);
        }
        if lost {
            return Fate::Lost(LossReason::Random);
        }
        let delay = |i: usize| {
            let reorder_s = if reordered[i] { c.reorder_delay_s } else { 0.0 };
            let total_s = c.delay_s + jitter_s[i] + reorder_s;
            // NaN and negative count as 0; `from_seconds_f64` saturates the rest.
            NtpDuration::from_seconds_f64(if total_s > 0.0 { total_s } else { 0.0 })
        };
        Fate::Deliver {
            delay: delay(0),
            duplicate_delay: duplicated.then(|| delay(1)),
        }
    }
}

/// Which way a packet crosses a [`Link`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the first endpoint to the second.
    Forward,
    /// From the second endpoint to the first.
    Backward,
}

/// A bidirectional link: two [`Path`]s with independent streams.
#[derive(Clone, Debug)]
pub struct Link {
    forward: Path,
    backward: Path,
}

impl Link {
    /// A link following `config`; each direction forks its own stream from `rng`.
    pub fn new(config: LinkConfig, mut rng: SimRng) -> Link {
        let mut forward = Path::new(config.forward, rng.fork("link/forward"));
        let mut backward = Path::new(config.backward, rng.fork("link/backward"));
        forward.set_up(config.up);
        backward.set_up(config.up);
        Link { forward, backward }
    }

    /// The path in `direction`.
    pub fn path(&self, direction: Direction) -> &Path {
        match direction {
            Direction::Forward => &self.forward,
            Direction::Backward => &self.backward,
        }
    }

    /// The path in `direction`, to reconfigure or partition one way only.
    pub fn path_mut(&mut self, direction: Direction) -> &mut Path {
        match direction {
            Direction::Forward => &mut self.forward,
            Direction::Backward => &mut self.backward,
        }
    }

    /// Replaces both paths' configurations and the up/down state.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.forward.set_config(config.forward);
        self.backward.set_config(config.backward);
        self.set_up(config.up);
    }

    /// Partitions (false) or heals (true) both directions.
    pub fn set_up(&mut self, up: bool) {
        self.forward.set_up(up);
        self.backward.set_up(up);
    }

    /// The fate of a packet sent at `now` in `direction`.
    pub fn transmit(&mut self, direction: Direction, now: NtpDuration) -> Fate {
        self.path_mut(direction).transmit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N: usize = 100_000;

    fn path(config: PathConfig, seed: u64) -> Path {
        assert_eq!(config.validate(), Ok(()));
        Path::new(config, SimRng::derive(seed, "path"))
    }

    fn delays_s(p: &mut Path, n: usize) -> Vec<f64> {
        (0..n)
            .flat_map(|_| p.transmit(NtpDuration::ZERO).delays().collect::<Vec<_>>())
            .map(|d| d.to_seconds_f64())
            .collect()
    }

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    #[test]
    fn mean_delay_is_base_plus_jitter_mean() {
        let base = 1e-4;
        let jitters = [
            Jitter::None,
            Jitter::Exponential { mean_s: 1e-4 },
            Jitter::Normal { sd_s: 2e-4 },
            Jitter::Uniform { max_s: 5e-4 },
            Jitter::Pareto {
                scale_s: 1e-4,
                shape: 3.0,
            },
        ];
        for jitter in jitters {
            let mut p = path(
                PathConfig {
                    delay_s: base,
                    jitter,
                    ..Default::default()
                },
                1,
            );
            let ds = delays_s(&mut p, N);
            assert_eq!(ds.len(), N);
            // Never below the base delay (one NtpDuration unit of rounding).
            assert!(ds.iter().all(|&d| d >= base - 1e-9), "{jitter:?}");
            let expected = base + jitter.mean_s();
            assert!(
                (mean(&ds) / expected - 1.0).abs() < 0.02,
                "{jitter:?}: {} vs {expected}",
                mean(&ds)
            );
        }
    }

    #[test]
    fn loss_rate_matches() {
        let mut p = path(
            PathConfig {
                delay_s: 0.01,
                loss: 0.33,
                ..Default::default()
            },
            2,
        );
        let lost = (0..N)
            .filter(|_| p.transmit(NtpDuration::ZERO) == Fate::Lost(LossReason::Random))
            .count();
        let rate = lost as f64 / N as f64;
        assert!((rate - 0.33).abs() < 0.01, "{rate}");
    }

    #[test]
    fn duplicates_produce_two_deliveries() {
        let mut always = path(
            PathConfig {
                delay_s: 0.01,
                duplicate: 1.0,
                jitter: Jitter::Uniform { max_s: 0.001 },
                ..Default::default()
            },
            3,
        );
        for _ in 0..100 {
            let fate = always.transmit(NtpDuration::ZERO);
            assert_eq!(fate.delays().count(), 2, "{fate:?}");
        }
        let mut some = path(
            PathConfig {
                delay_s: 0.01,
                duplicate: 0.1,
                ..Default::default()
            },
            3,
        );
        let deliveries: usize = (0..N)
            .map(|_| some.transmit(NtpDuration::ZERO).delays().count())
            .sum();
        let rate = deliveries as f64 / N as f64 - 1.0;
        assert!((rate - 0.1).abs() < 0.01, "{rate}");
    }

    #[test]
    fn down_link_loses_everything_until_healed() {
        let mut link = Link::new(
            LinkConfig::symmetric(PathConfig::fixed(0.01)),
            SimRng::derive(4, "link"),
        );
        link.set_up(false);
        for dir in [Direction::Forward, Direction::Backward] {
            for _ in 0..1000 {
                assert_eq!(
                    link.transmit(dir, NtpDuration::ZERO),
                    Fate::Lost(LossReason::LinkDown)
                );
            }
        }
        link.set_up(true);
        assert_eq!(
            link.transmit(Direction::Forward, NtpDuration::ZERO)
                .delays()
                .count(),
            1
        );
        // One way only.
        link.path_mut(Direction::Backward).set_up(false);
        assert!(!link
            .transmit(Direction::Forward, NtpDuration::ZERO)
            .is_lost());
        assert!(link
            .transmit(Direction::Backward, NtpDuration::ZERO)
            .is_lost());
        // A config with up = false partitions too.
        let mut down = LinkConfig::symmetric(PathConfig::fixed(0.01));
        down.up = false;
        link.set_config(down);
        assert!(link
            .transmit(Direction::Forward, NtpDuration::ZERO)
            .is_lost());
    }

    #[test]
    fn a_pass_pattern_delivers_exactly_every_nth_packet() {
        let mut p = Path::new(PathConfig { delay_s: 1e-4, pass_every: 4, ..PathConfig::default() }, SimRng::derive(1, "p"));
        let fates: Vec<bool> = (0..12).map(|_| p.transmit(NtpDuration::ZERO).is_lost()).collect();
        let pattern = [true, true, true, false];
        assert_eq!(fates, pattern.repeat(3));
        assert_eq!(p.transmit(NtpDuration::ZERO), Fate::Lost(LossReason::Pattern));
        // Packets sent while the path is down count too, as in clknetsim.
        p.set_up(false);
        assert_eq!(p.transmit(NtpDuration::ZERO), Fate::Lost(LossReason::LinkDown));
        p.set_up(true);
        assert_eq!(p.transmit(NtpDuration::ZERO), Fate::Lost(LossReason::Pattern));
        assert!(!p.transmit(NtpDuration::ZERO).is_lost(), "the 16th packet");
        // 1 (and 0) let everything through.
        for n in [0, 1] {
            let mut p = Path::new(PathConfig { pass_every: n, ..PathConfig::default() }, SimRng::derive(1, "p"));
            assert!((0..10).all(|_| !p.transmit(NtpDuration::ZERO).is_lost()));
        }
    }

    #[test]
    fn a_change_after_n_packets_applies_from_the_next_packet_on() {
        let mut p = Path::new(PathConfig::fixed(1e-4), SimRng::derive(1, "p"));
        let _ = p.transmit(NtpDuration::ZERO);
        // Armed after one packet: six more follow the old configuration.
        p.set_config_after(6, PathConfig::fixed(0.15));
        let delay = |f: Fate| match f {
            Fate::Deliver { delay, .. } => (delay.to_seconds_f64() * 1e6).round() / 1e6,
            f => panic!("{f:?}"),
        };
        let delays: Vec<f64> = (0..9).map(|_| delay(p.transmit(NtpDuration::ZERO))).collect();
        assert_eq!(delays, [1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 0.15, 0.15, 0.15]);
        // Packets lost while the path is down count, and set_config cancels a pending change.
        p.set_config_after(2, PathConfig::fixed(1.0));
        p.set_up(false);
        assert!(p.transmit(NtpDuration::ZERO).is_lost());
        assert!(p.transmit(NtpDuration::ZERO).is_lost());
        p.set_up(true);
        assert_eq!(delay(p.transmit(NtpDuration::ZERO)), 1.0);
        p.set_config_after(1, PathConfig::fixed(2.0));
        p.set_config(PathConfig::fixed(3.0));
        assert_eq!(delay(p.transmit(NtpDuration::ZERO)), 3.0);
        assert_eq!(delay(p.transmit(NtpDuration::ZERO)), 3.0);
    }

    #[test]
    fn same_seed_same_fates() {
        let config = LinkConfig::symmetric(PathConfig {
            delay_s: 1e-4,
            jitter: Jitter::Exponential { mean_s: 1e-4 },
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_delay_s: 0.01,
            pass_every: 1,
        });
        let run = |seed| {
            let mut link = Link::new(config, SimRng::derive(seed, "link"));
            (0..5000)
                .map(|i| {
                    let dir = if i % 3 == 0 {
                        Direction::Backward
                    } else {
                        Direction::Forward
                    };
                    link.transmit(dir, NtpDuration::from_seconds(i))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn directions_have_independent_streams() {
        let config = LinkConfig::symmetric(PathConfig {
            delay_s: 1e-4,
            jitter: Jitter::Exponential { mean_s: 1e-4 },
            ..Default::default()
        });
        let mut quiet = Link::new(config, SimRng::derive(9, "link"));
        let mut busy = Link::new(config, SimRng::derive(9, "link"));
        for _ in 0..100 {
            let _ = busy.transmit(Direction::Backward, NtpDuration::ZERO);
        }
        for _ in 0..100 {
            assert_eq!(
                quiet.transmit(Direction::Forward, NtpDuration::ZERO),
                busy.transmit(Direction::Forward, NtpDuration::ZERO)
            );
        }
    }

    #[test]
    fn changing_loss_keeps_other_packets_delays() {
        let base = PathConfig {
            delay_s: 1e-4,
            jitter: Jitter::Exponential { mean_s: 1e-4 },
            ..Default::default()
        };
        let mut a = path(base, 11);
        let mut b = path(PathConfig { loss: 0.5, ..base }, 11);
        let mut compared = 0;
        for _ in 0..1000 {
            let (fa, fb) = (a.transmit(NtpDuration::ZERO), b.transmit(NtpDuration::ZERO));
            if !fb.is_lost() {
                assert_eq!(fa, fb);
                compared += 1;
            }
        }
        assert!(compared > 400);
    }

    #[test]
    fn asymmetry_appears_only_in_its_direction() {
        let path = PathConfig {
            delay_s: 1e-4,
            jitter: Jitter::Exponential { mean_s: 1e-4 },
            ..Default::default()
        };
        let sym = LinkConfig::symmetric(path);
        let asym = LinkConfig::asymmetric(path, 5e-4);
        assert_eq!(asym.backward, sym.backward);
        assert!((asym.forward.delay_s - 6e-4).abs() < 1e-15);
        assert_eq!(LinkConfig::asymmetric(path, -5e-4).forward, sym.forward);
        let mut a = Link::new(sym, SimRng::derive(5, "l"));
        let mut b = Link::new(asym, SimRng::derive(5, "l"));
        let extra = NtpDuration::from_seconds_f64(5e-4);
        for _ in 0..1000 {
            let (fa, fb) = (
                a.transmit(Direction::Forward, NtpDuration::ZERO),
                b.transmit(Direction::Forward, NtpDuration::ZERO),
            );
            let (Fate::Deliver { delay: da, .. }, Fate::Deliver { delay: db, .. }) = (fa, fb)
            else {
                panic!("lost")
            };
            assert!((db - da - extra).abs() <= NtpDuration::from_bits(2));
            assert_eq!(
                a.transmit(Direction::Backward, NtpDuration::ZERO),
                b.transmit(Direction::Backward, NtpDuration::ZERO)
            );
        }
    }

    #[test]
    fn reorder_lets_later_packets_overtake() {
        let mut p = path(
            PathConfig {
                delay_s: 1e-3,
                reorder: 0.1,
                reorder_delay_s: 0.05,
                ..Default::default()
            },
            6,
        );
        let mut arrivals: Vec<(NtpDuration, usize)> = (0..1000)
            .map(|i| {
                let sent = NtpDuration::from_nanos(i as i64 * 1_000_000); // every 1 ms
                let Fate::Deliver { delay, .. } = p.transmit(sent) else {
                    panic!("lost")
                };
                (sent + delay, i)
            })
            .collect();
        arrivals.sort();
        let out_of_order = arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(out_of_order > 50, "{out_of_order}");
        let held = arrivals
            .iter()
            .filter(|(at, i)| {
                *at - NtpDuration::from_nanos(*i as i64 * 1_000_000)
                    > NtpDuration::from_seconds_f64(0.04)
            })
            .count();
        assert!((held as f64 / 1000.0 - 0.1).abs() < 0.03, "{held}");
    }

    #[test]
    fn validate_names_the_bad_field() {
        let ok = PathConfig::default();
        let cases = [
            (
                PathConfig {
                    delay_s: -1e-3,
                    ..ok
                },
                "delay_s",
            ),
            (
                PathConfig {
                    delay_s: f64::NAN,
                    ..ok
                },
                "delay_s",
            ),
            (PathConfig { loss: 1.5, ..ok }, "loss"),
            (
                PathConfig {
                    duplicate: -0.1,
                    ..ok
                },
                "duplicate",
            ),
            (
                PathConfig {
                    reorder: f64::NAN,
                    ..ok
                },
                "reorder",
            ),
            (
                PathConfig {
                    reorder_delay_s: -1.0,
                    ..ok
                },
                "reorder_delay_s",
            ),
            (
                PathConfig {
                    jitter: Jitter::Pareto {
                        scale_s: 1e-4,
                        shape: 0.0,
                    },
                    ..ok
                },
                "jitter.shape",
            ),
            (
                PathConfig {
                    jitter: Jitter::Exponential {
                        mean_s: f64::INFINITY,
                    },
                    ..ok
                },
                "jitter.mean_s",
            ),
            (
                PathConfig {
                    jitter: Jitter::Normal { sd_s: -1.0 },
                    ..ok
                },
                "jitter.sd_s",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
        let link = LinkConfig {
            forward: ok,
            backward: PathConfig { loss: 2.0, ..ok },
            up: true,
        };
        assert!(link.validate().unwrap_err().starts_with("backward.loss"));
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            -2.0..2.0f64,
            proptest::num::f64::ANY,
        ]
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            any_f64().prop_map(|mean_s| Jitter::Exponential { mean_s }),
            any_f64().prop_map(|sd_s| Jitter::Normal { sd_s }),
            any_f64().prop_map(|max_s| Jitter::Uniform { max_s }),
            (any_f64(), any_f64()).prop_map(|(scale_s, shape)| Jitter::Pareto { scale_s, shape }),
        ]
    }

    proptest! {
        /// Any config a user can write, valid or not: no panic, no negative delay.
        #[test]
        fn transmit_never_panics_nor_goes_negative(
            delay_s in any_f64(), jitter in any_jitter(), loss in any_f64(), duplicate in any_f64(),
            reorder in any_f64(), reorder_delay_s in any_f64(), pass_every in any::<u32>(), seed in any::<u64>(),
        ) {
            let config = PathConfig { delay_s, jitter, loss, duplicate, reorder, reorder_delay_s, pass_every };
            let mut p = Path::new(config, SimRng::derive(seed, "prop"));
            for _ in 0..20 {
                for d in p.transmit(NtpDuration::ZERO).delays() {
                    prop_assert!(d >= NtpDuration::ZERO);
                }
            }
        }
    }
}
