//! The clock filter of RFC 5905 §10 (and Appendix A.5.2 `clock_filter()`).
//!
//! One [`ClockFilter`] per source. It keeps the last [`NSTAGE`] (8) samples
//! `(offset, delay, dispersion, time)` in a shift register, newest first,
//! initially filled with the dummy tuple `(0, MAXDISP, MAXDISP, 0)`, and on
//! every new sample produces the peer variables (offset θ, delay δ, dispersion
//! ε, jitter ψ, time t) of §10 / Fig. 19.
//!
//! # How the caller drives it
//!
//! 1. For every valid response, build a [`Sample`] with
//!    [`Sample::from_timestamps`] (the four on-wire timestamps of §8) and call
//!    [`ClockFilter::add_sample`] with the local time `now`.
//! 2. When three polls in a row went unanswered (the low three bits of the
//!    reach register are zero, §10), call [`ClockFilter::add_dummy`].
//! 3. On [`FilterUpdate::Updated`], run the system process (selection etc.)
//!    with the new [`PeerStatistics`]. On the other outcomes, do not.
//! 4. After a clock step, call [`ClockFilter::reset`] (§11.2.3: "all
//!    associations MUST be reset").
//!
//! `now` is the local clock reading (for instance [`crate::clock::NtpClock::now`]).
//! It must not go backwards between calls except across a step, after which
//! the filter must be reset; ages are clamped at zero so a backwards reading
//! only stops the dispersion from growing.
//!
//! # Choices where RFC 5905 is ambiguous or its skeleton is wrong
//!
//! - **Dispersion aging.** §10 grows each stage's dispersion at PHI per second.
//!   A.5.2 adds `PHI · (c.t − p.t)` on every shift, with `p.t` the time of the
//!   last *used* sample, which over-counts when samples are not used. Here each
//!   stage keeps its dispersion at arrival and is aged on demand as
//!   `ε + PHI · (now − t)`, capped at MAXDISP: the exact integral of §10's rule.
//! - **Jitter.** §10 calls ψ "the RMS average" of `θ_0 − θ_j` over the `n`
//!   valid stages; its typeset formula puts `1/(n−1)` outside the square root,
//!   which is not an RMS. This follows the text (and the reference
//!   implementation): `ψ = sqrt(Σ_{j=1}^{n−1} (θ_0 − θ_j)² / (n−1))`, bounded
//!   below by the system precision. A.5.2 sums over all eight stages including
//!   dummies; only valid stages (real samples with aged dispersion below
//!   MAXDISP) count here, as §10 says.
//! - **Which variables an old sample leaves alone.** §10: when the lowest-delay
//!   stage is not newer than the last sample used, "the routine exits without
//!   affecting the current peer variables". The offset, delay and time are
//!   left alone; the dispersion and jitter are statistics of the whole
//!   register and are refreshed on every call (as the reference
//!   implementation does), so a source whose register fills with stale or
//!   dummy stages loses quality even when no new sample is used.
//! - **Prime directive before first synchronization.** A.5.2 lets a sample be
//!   reused while the system is unsynchronized. §10 has no such exception and
//!   neither does this filter: a sample is used at most once, always.
//! - **Popcorn spike suppressor** (A.5.2 only; optional, on by default, see
//!   [`FilterConfig::popcorn_spike_suppressor`]). A newly selected sample whose
//!   offset differs from the current peer offset by more than SGATE (3) times
//!   the jitter, arriving less than two poll intervals after the last sample
//!   used, is dropped. The gate uses the jitter computed *before* the new sample
//!   (a spike that is also the new minimum-delay sample inflates the jitter
//!   computed against itself and would never trip the gate), and A.5.2's
//!   `2 · s.poll` (a log2 value) is read as `2 · 2^poll` seconds. The gate is
//!   applied only once that jitter rests on at least two valid samples (with
//!   one, it is just the precision floor and would reject the second sample of
//!   every new source). A sustained
//!   shift passes once the jitter, now including the shifted samples, has
//!   grown or once two poll intervals have passed.

use crate::constants::{log2_to_seconds, MAXDISP, NSTAGE, PHI, SGATE};
use crate::time::{NtpDuration, NtpTime, NtpTimestamp};

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

fn dur(s: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(s)
}

/// Seconds from `earlier` to `later`, clamped at zero.
fn age(later: NtpTime, earlier: NtpTime) -> f64 {
    secs(later - earlier).max(0.0)
}

/// One measurement: the tuple `(θ, δ, ε, t)` of §10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Clock offset θ of the server relative to this host (positive: the
    /// server is ahead, this clock must move forward).
    pub offset: NtpDuration,
    /// Round-trip delay δ, never below the system precision.
    pub delay: NtpDuration,
    /// Dispersion ε at arrival: `ρ_peer + ρ_local + PHI · (T4 − T1)` (§9.2).
    pub dispersion: NtpDuration,
    /// Local time of arrival, the epoch `t` of §10.
    pub time: NtpTime,
}

impl Sample {
    /// The sample of one client/server exchange (RFC 5905 §8, A.5.1.1 `packet()`).
    ///
    /// - `t1`: client transmit (the request's transmit timestamp, echoed as
    ///   the response's origin timestamp);
    /// - `t2`: server receive; `t3`: server transmit;
    /// - `t4`: client receive (destination timestamp);
    /// - `peer_precision`, `local_precision`: log2 seconds (the packet's
    ///   precision field and this host's `s.rho`);
    /// - `arrival`: local time of arrival, the filter epoch (normally `t4`
    ///   resolved to an [`NtpTime`]).
    ///
    /// `θ = ((T2 − T1) + (T3 − T4)) / 2` and `δ = (T4 − T1) − (T3 − T2)`, the
    /// first-order differences taken in two's complement
    /// ([`NtpTimestamp::wrapping_sub`]) so they are correct across an era
    /// boundary, the second-order sums in exact 128-bit arithmetic so the
    /// unambiguous range stays ±68 years (§8). A negative delay (a frequency
    /// error over a very short path) is clamped to the local precision (§8).
    ///
    /// The peer's root delay and root dispersion are *not* part of the sample:
    /// §8/A.5.1.1 compute the sample dispersion without them; they enter the
    /// root distance ([`crate::select::Candidate`]) instead.
    pub fn from_timestamps(
        t1: NtpTimestamp,
        t2: NtpTimestamp,
        t3: NtpTimestamp,
        t4: NtpTimestamp,
        peer_precision: i8,
        local_precision: i8,
        arrival: NtpTime,
    ) -> Sample {
        let d21 = i128::from(t2.wrapping_sub(t1).to_bits());
        let d34 = i128::from(t3.wrapping_sub(t4).to_bits());
        let d41 = i128::from(t4.wrapping_sub(t1).to_bits());
        let d32 = i128::from(t3.wrapping_sub(t2).to_bits());
        let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let offset = NtpDuration::from_bits(clamp((d21 + d34).div_euclid(2)));
        let raw_delay = NtpDuration::from_bits(clamp(d41 - d32));
        let precision = dur(log2_to_seconds(local_precision));
        let delay = raw_delay.max(precision);
        let rtt = (d41 as f64 / 4_294_967_296.0).max(0.0);
        let dispersion =
            dur(log2_to_seconds(peer_precision) + log2_to_seconds(local_precision) + PHI * rtt);
        Sample { offset, delay, dispersion, time: arrival }
    }
}

/// One stage of the shift register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterStage {
    /// The sample, or `None` for the dummy tuple `(0, MAXDISP, MAXDISP, t)`.
    pub sample: Option<Sample>,
    /// When the stage was shifted in (equals `sample.time` for real samples).
    pub time: NtpTime,
}

impl FilterStage {
    const DUMMY: FilterStage = FilterStage { sample: None, time: NtpTime::PRIME_EPOCH };

    /// Delay in seconds; MAXDISP for a dummy.
    fn delay_secs(&self) -> f64 {
        self.sample.map_or(MAXDISP, |s| secs(s.delay))
    }

    /// The stage's dispersion aged to `now`: `ε + PHI · (now − t)`, at most MAXDISP.
    pub fn dispersion_at(&self, now: NtpTime) -> NtpDuration {
        dur(self.dispersion_secs(now))
    }

    fn dispersion_secs(&self, now: NtpTime) -> f64 {
        match self.sample {
            None => MAXDISP,
            Some(s) => (secs(s.dispersion) + PHI * age(now, s.time)).min(MAXDISP),
        }
    }

    /// Whether this stage holds a real sample whose aged dispersion is below
    /// MAXDISP (the "valid tuples" of §10).
    pub fn is_valid_at(&self, now: NtpTime) -> bool {
        self.sample.is_some() && self.dispersion_secs(now) < MAXDISP
    }
}

/// The peer variables produced by the filter (§10, Fig. 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatistics {
    /// Offset θ of the selected (lowest-delay) sample.
    pub offset: NtpDuration,
    /// Delay δ of the selected sample.
    pub delay: NtpDuration,
    /// Peer dispersion ε = Σ ε_i / 2^(i+1) over the delay-sorted stages, as of
    /// [`PeerStatistics::updated_at`].
    pub dispersion: NtpDuration,
    /// Peer jitter ψ (RMS of offset differences, at least the precision).
    pub jitter: NtpDuration,
    /// Arrival time of the selected sample (the peer variable `t`, used by
    /// the "strictly newer" rules of §10 and §11.2.3).
    pub time: NtpTime,
    /// When `dispersion` and `jitter` were computed (the last filter call).
    pub updated_at: NtpTime,
}

impl PeerStatistics {
    /// The peer dispersion aged to `now` at PHI.
    pub fn dispersion_at(&self, now: NtpTime) -> NtpDuration {
        dur(secs(self.dispersion) + PHI * age(now, self.updated_at))
    }
}

/// What one filter call produced. `#[must_use]`: only [`FilterUpdate::Updated`]
/// should trigger the system process.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterUpdate {
    /// A sample newer than the last one used was selected; the peer variables
    /// are new. The caller SHOULD run the system process (selection, cluster,
    /// combine, discipline).
    Updated(PeerStatistics),
    /// The lowest-delay stage is not newer than the last sample used (§10): the
    /// peer offset, delay and time are unchanged (dispersion and jitter were
    /// refreshed). The caller MUST NOT run the system process for this source.
    Stale,
    /// The selected sample was dropped by the popcorn spike suppressor
    /// (A.5.2). It stays in the register and may be used later.
    PopcornSpike {
        /// The suppressed sample's offset.
        offset: NtpDuration,
        /// The jitter it was compared against (times SGATE).
        jitter: NtpDuration,
    },
    /// The register holds only dummy tuples or samples too old to be valid.
    Empty,
}

/// Settings of a [`ClockFilter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// This host's precision `s.rho` in log2 seconds: the lower bound of the
    /// jitter (§10).
    pub local_precision: i8,
    /// Whether the popcorn spike suppressor of A.5.2 is active (default: yes).
    pub popcorn_spike_suppressor: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        // 2^-20 s ≈ 1 µs: a typical software-timestamping host.
        FilterConfig { local_precision: -20, popcorn_spike_suppressor: true }
    }
}

/// The §10 clock filter of one source. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ClockFilter {
    config: FilterConfig,
    /// `stages[0]` is the newest.
    stages: [FilterStage; NSTAGE],
    /// Epoch of the last sample used (`p.t` / `tp`).
    last_used: Option<NtpTime>,
    /// Offset, delay and time of the last sample used.
    selected: Option<Sample>,
    /// Register statistics from the last call: (dispersion, jitter, when).
    register: (f64, f64, NtpTime),
    /// How many valid stages the last jitter was computed from.
    register_valid: usize,
}

impl ClockFilter {
    /// A filter holding only dummy tuples.
    pub fn new(config: FilterConfig) -> Self {
        ClockFilter {
            config,
            stages: [FilterStage::DUMMY; NSTAGE],
            last_used: None,
            selected: None,
            register: (MAXDISP, log2_to_seconds(config.local_precision), NtpTime::PRIME_EPOCH),
            register_valid: 0,
        }
    }

    /// Back to the initial state (after a clock step or a source reset).
    pub fn reset(&mut self) {
        *self = ClockFilter::new(self.config);
    }

    /// Re-expresses every stored sample in the timescale of a corrected
    /// clock, as chrony does with its stored measurements when it slews:
    /// the clock's phase moves by `phase` now (`now`) and its frequency
    /// correction by `dfreq` s/s, so a sample taken `a` seconds before
    /// `now` would have read `offset + dfreq · a − phase` had the new
    /// correction always applied. For corrections the clock completes
    /// quickly (a slew through the tick at a known rate): without this,
    /// samples of different ages disagree by the phase just corrected and
    /// by the frequency error times their age, and selection sees
    /// falsetickers that are not.
    pub fn correct_offsets(&mut self, phase: NtpDuration, dfreq: f64, now: NtpTime) {
        let correct = |s: &mut Sample| {
            let age = (now - s.time).to_seconds_f64();
            s.offset = s.offset.saturating_sub(phase).saturating_add(dur(dfreq * age));
        };
        for stage in &mut self.stages {
            if let Some(s) = stage.sample.as_mut() {
                correct(s);
            }
        }
        if let Some(s) = self.selected.as_mut() {
            correct(s);
        }
    }

    /// The shift register, newest stage first.
    pub fn stages(&self) -> &[FilterStage; NSTAGE] {
        &self.stages
    }

    /// The current peer variables, or `None` before the first sample was used.
    ///
    /// Offset, delay and time are those of the last sample used; dispersion and
    /// jitter are from the last filter call.
    pub fn statistics(&self) -> Option<PeerStatistics> {
        let s = self.selected?;
        let (dispersion, jitter, updated_at) = self.register;
        Some(PeerStatistics {
            offset: s.offset,
            delay: s.delay,
            dispersion: dur(dispersion),
            jitter: dur(jitter),
            time: s.time,
            updated_at,
        })
    }

    /// The peer dispersion of the register without the dummy stages before
    /// its newest sample: `Σ ε_i / 2^(i+1) / Σ 2^-(i+1)` over the
    /// delay-sorted samples and the dummies of polls left unanswered since
    /// the newest sample, aged to `now`; MAXDISP without samples. The §10
    /// dispersion counts every dummy stage as MAXDISP, so a new source's
    /// distance passes MAXDIST only from its fourth sample, and a source back
    /// from a long silence only once its new samples have pushed the dummies
    /// out; this measure is what a discipline that weighs every sample itself
    /// (chrony-like, selecting a source from its first sample, and again from
    /// its first sample after an outage) selects on, while a silence still
    /// raises it as in §10 until the source answers.
    pub fn shifted_in_dispersion(&self, now: NtpTime) -> NtpDuration {
        // Dummies shifted in before the newest sample (polls before the
        // source answered, or before it answered again) are no silence now.
        let Some(newest) = self.stages.iter().filter_map(|s| s.sample.map(|x| x.time)).max() else {
            return dur(MAXDISP);
        };
        let mut order = self.stages;
        order.sort_by(|a, b| a.delay_secs().total_cmp(&b.delay_secs()));
        let (mut sum, mut weight) = (0.0, 0.0);
        for (i, stage) in order.iter().filter(|s| s.sample.is_some() || s.time > newest).enumerate() {
            let w = 1.0 / 2f64.powi(i as i32 + 1);
            sum += w * stage.dispersion_secs(now);
            weight += w;
        }
        dur(if weight > 0.0 { sum / weight } else { MAXDISP })
    }

    /// Shifts a sample into the register and recomputes the peer variables.
    ///
    /// `now` is the local time of this call (normally the sample's arrival
    /// time); `poll` is the host poll exponent, used by the popcorn spike
    /// suppressor's two-poll-interval window.
    pub fn add_sample(&mut self, sample: Sample, now: NtpTime, poll: i8) -> FilterUpdate {
        self.shift(FilterStage { sample: Some(sample), time: sample.time });
        self.evaluate(now, poll)
    }

    /// Shifts the dummy tuple `(0, MAXDISP, MAXDISP, now)` in, as the poll
    /// process does after three unanswered polls (§10).
    pub fn add_dummy(&mut self, now: NtpTime, poll: i8) -> FilterUpdate {
        self.shift(FilterStage { sample: None, time: now });
        self.evaluate(now, poll)
    }

    fn shift(&mut self, stage: FilterStage) {
        self.stages.rotate_right(1);
        self.stages[0] = stage;
    }

    fn evaluate(&mut self, now: NtpTime, poll: i8) -> FilterUpdate {
        let precision = log2_to_seconds(self.config.local_precision);
        // Sort by increasing delay. The sort is stable and stages are newest
        // first, so among equal delays the newest sample ranks first; dummies
        // (delay MAXDISP) sort after every real sample of smaller delay.
        let mut order: [usize; NSTAGE] = core::array::from_fn(|i| i);
        order.sort_by(|&a, &b| self.stages[a].delay_secs().total_cmp(&self.stages[b].delay_secs()));

        // ε = Σ ε_i / 2^(i+1) over all stages, dummies included (§10 (a)–(c)).
        let dispersion: f64 = order
            .iter()
            .enumerate()
            .map(|(i, &k)| self.stages[k].dispersion_secs(now) / 2f64.powi(i as i32 + 1))
            .sum();

        // Jitter over the valid stages in delay order, relative to the first.
        let valid: Vec<Sample> = order
            .iter()
            .filter(|&&k| self.stages[k].is_valid_at(now))
            .filter_map(|&k| self.stages[k].sample)
            .collect();
        let jitter = match valid.split_first() {
            Some((first, rest)) if !rest.is_empty() => {
                let sum: f64 = rest.iter().map(|s| (secs(first.offset) - secs(s.offset)).powi(2)).sum();
                (sum / rest.len() as f64).sqrt()
            }
            _ => 0.0,
        }
        .max(precision);
        let previous_jitter = self.register.1;
        let previous_valid = self.register_valid;
        self.register = (dispersion, jitter, now);
        self.register_valid = valid.len();

        // The best sample is the lowest-delay *valid* stage.
        let Some(best) = valid.first().copied() else {
            return FilterUpdate::Empty;
        };
        if let Some(tp) = self.last_used {
            // Prime directive: use a sample only once, never an older one.
            if best.time <= tp {
                return FilterUpdate::Stale;
            }
        }
        if self.config.popcorn_spike_suppressor {
            if let (Some(prev), Some(tp)) = (self.selected, self.last_used) {
                let jump = (secs(best.offset) - secs(prev.offset)).abs();
                let window = 2.0 * log2_to_seconds(poll);
                if previous_valid >= 2 && jump > SGATE * previous_jitter && age(best.time, tp) < window {
                    return FilterUpdate::PopcornSpike { offset: best.offset, jitter: dur(previous_jitter) };
                }
            }
        }
        self.last_used = Some(best.time);
        self.selected = Some(best);
        // `statistics()` is Some now that `selected` is set.
        self.statistics().map_or(FilterUpdate::Empty, FilterUpdate::Updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: f64 = 1e-3;

    fn t0() -> NtpTime {
        NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn at(s: f64) -> NtpTime {
        t0() + dur(s)
    }

    fn sample(time_s: f64, offset_ms: f64, delay_ms: f64, disp_ms: f64) -> Sample {
        Sample {
            offset: dur(offset_ms * MS),
            delay: dur(delay_ms * MS),
            dispersion: dur(disp_ms * MS),
            time: at(time_s),
        }
    }

    fn no_popcorn() -> ClockFilter {
        ClockFilter::new(FilterConfig { local_precision: -20, popcorn_spike_suppressor: false })
    }

    fn close(a: NtpDuration, b: f64, tol: f64) -> bool {
        (secs(a) - b).abs() <= tol
    }

    #[test]
    fn corrected_offsets_are_those_of_the_corrected_clock() {
        // The clock gains 100 ppm: a sample 65 s old read −0.1 s, one just
        // now −0.1065 s. The discipline slews −0.1 s and sets the frequency
        // −100 ppm: both must now read what the corrected clock would have
        // measured, −0.0065 s, and agree.
        let mut f = no_popcorn();
        let _ = f.add_sample(sample(0.0, -100.0, 2.0, 0.0), at(0.0), 6);
        let _ = f.add_sample(sample(65.0, -106.5, 2.5, 0.0), at(65.0), 6);
        let now = at(65.0);
        f.correct_offsets(dur(-0.1), -100e-6, now);
        let offsets: Vec<f64> = f.stages().iter().filter_map(|s| s.sample).map(|s| secs(s.offset)).collect();
        assert_eq!(offsets.len(), 2);
        for o in &offsets {
            assert!((o + 0.0065).abs() < 1e-9, "{offsets:?}");
        }
        let stats = f.statistics().expect("a sample was used");
        assert!(close(stats.offset, -0.0065, 1e-9), "the selected sample too: {:?}", stats.offset);
        // Dummies stay dummies.
        assert_eq!(f.stages().iter().filter(|s| s.sample.is_none()).count(), NSTAGE - 2);
    }

    #[test]
    fn shifted_in_dispersion_leaves_out_the_dummies_before_the_newest_sample() {
        let mut f = no_popcorn();
        assert!(close(f.shifted_in_dispersion(at(0.0)), MAXDISP, 1e-9), "no sample yet");
        // A poll that found the source silent before it ever answered.
        let _ = f.add_dummy(at(0.0), 6);
        let _ = f.add_sample(sample(1.0, 1.0, 2.0, 0.5), at(1.0), 6);
        // §10 counts the seven other stages as MAXDISP: about 16/4 + 16/4 ... ≈ 8 s.
        assert!(secs(f.statistics().unwrap().dispersion) > 7.9, "{:?}", f.statistics());
        // Without them: the one sample's own dispersion.
        assert!(close(f.shifted_in_dispersion(at(1.0)), 0.5e-3, 1e-9), "{:?}", f.shifted_in_dispersion(at(1.0)));
        // Two samples, delay-sorted weights 1/2 and 1/4, normalized.
        let _ = f.add_sample(sample(65.0, 1.0, 1.0, 1.0), at(65.0), 6);
        let aged = |d_ms: f64, age: f64| d_ms * 1e-3 + PHI * age;
        let want = (aged(1.0, 0.0) / 2.0 + aged(0.5, 64.0) / 4.0) / 0.75;
        assert!(close(f.shifted_in_dispersion(at(65.0)), want, 1e-9), "{:?} vs {want}", f.shifted_in_dispersion(at(65.0)));
        // A silent poll after the source answered counts, as in §10: MAXDISP
        // in third place lifts it far above MAXDIST.
        let _ = f.add_dummy(at(129.0), 6);
        assert!(secs(f.shifted_in_dispersion(at(129.0))) > 2.0, "{:?}", f.shifted_in_dispersion(at(129.0)));
        // Once the source answers again, the silence is over: the dummy
        // before its newest sample no longer counts (chrony selects a source
        // from its first sample after an outage), though §10 still counts it.
        let _ = f.add_sample(sample(193.0, 1.0, 0.5, 1.0), at(193.0), 6);
        let want = (aged(1.0, 0.0) / 2.0 + aged(1.0, 128.0) / 4.0 + aged(0.5, 192.0) / 8.0) / 0.875;
        assert!(close(f.shifted_in_dispersion(at(193.0)), want, 1e-9), "{:?} vs {want}", f.shifted_in_dispersion(at(193.0)));
        assert!(secs(f.statistics().unwrap().dispersion) > 0.1, "{:?}", f.statistics());
    }

    #[test]
    fn from_timestamps_rfc_example() {
        // Server 5 ms ahead, 10 ms out, 30 ms back (catalog R5905-8-offset-delay):
        // offset = 5 + (10 - 30)/2 = -5 ms, delay 40 ms.
        let base = t0();
        let t1 = base;
        let t2 = base + dur(0.010 + 0.005);
        let t3 = t2 + dur(0.001);
        let t4 = base + dur(0.010 + 0.001 + 0.030);
        let s = Sample::from_timestamps(
            t1.to_timestamp(),
            t2.to_timestamp(),
            t3.to_timestamp(),
            t4.to_timestamp(),
            -20,
            -20,
            t4,
        );
        assert!(close(s.offset, -0.005, 1e-9), "{:?}", s.offset);
        assert!(close(s.delay, 0.040, 1e-9), "{:?}", s.delay);
        let disp = 2.0 * 2f64.powi(-20) + PHI * 0.041;
        assert!(close(s.dispersion, disp, 1e-9));
        assert_eq!(s.time, t4);
    }

    #[test]
    fn from_timestamps_across_the_era_wrap() {
        // Client in era 0 just before the wrap, server already in era 1.
        let t1 = NtpTime::ERA1 + dur(-0.5);
        let t2 = NtpTime::ERA1 + dur(0.7); // server 1.2 s ahead minus path
        let t3 = t2 + dur(0.001);
        let t4 = t1 + dur(0.021);
        let s = Sample::from_timestamps(
            t1.to_timestamp(),
            t2.to_timestamp(),
            t3.to_timestamp(),
            t4.to_timestamp(),
            -20,
            -20,
            t4,
        );
        // ((T2-T1) + (T3-T4)) / 2 = (1.2 + (1.2 + 0.001 - 0.021)) / 2
        assert!(close(s.offset, (1.2 + 1.2 + 0.001 - 0.021) / 2.0, 1e-9), "{:?}", s.offset);
        assert!(close(s.delay, 0.021 - 0.001, 1e-9));
    }

    #[test]
    fn negative_delay_is_clamped_to_the_precision() {
        // §8 example: 100 ppm fast server clock over 64 s with no path delay gives -6.4 ms.
        let t1 = t0();
        let t2 = t1 + dur(1.0);
        let t3 = t2 + dur(64.0 * (1.0 + 100e-6));
        let t4 = t1 + dur(64.0);
        let s = Sample::from_timestamps(
            t1.to_timestamp(),
            t2.to_timestamp(),
            t3.to_timestamp(),
            t4.to_timestamp(),
            -20,
            -18,
            t4,
        );
        assert_eq!(s.delay, dur(2f64.powi(-18)));
        assert!(s.delay > NtpDuration::ZERO, "delay must never be negative");
    }

    #[test]
    fn picks_the_minimum_delay_sample() {
        let mut f = no_popcorn();
        let delays = [30.0, 25.0, 12.0, 40.0, 18.0, 22.0, 35.0, 28.0];
        let mut last = FilterUpdate::Empty;
        for (i, d) in delays.iter().enumerate() {
            // Each sample's offset encodes its index.
            let now = i as f64 * 64.0;
            last = f.add_sample(sample(now, i as f64, *d, 1.0), at(now), 6);
        }
        let st = f.statistics().unwrap();
        assert!(close(st.offset, 2.0 * MS, 1e-9), "the 12 ms sample (index 2) must win: {st:?}");
        assert!(close(st.delay, 12.0 * MS, 1e-9));
        assert_eq!(st.time, at(128.0));
        // The last call found the 12 ms sample already used: stale, not updated.
        assert_eq!(last, FilterUpdate::Stale);
    }

    #[test]
    fn rejects_stale_samples_until_the_old_minimum_ages_out() {
        let mut f = no_popcorn();
        let u = f.add_sample(sample(0.0, 5.0, 10.0, 1.0), at(0.0), 4);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.offset == dur(5.0 * MS)));
        // Seven newer but slower samples: each is Stale, the peer offset stays 5 ms.
        for i in 1..8 {
            let u = f.add_sample(sample(i as f64 * 16.0, -7.0, 20.0 + i as f64, 1.0), at(i as f64 * 16.0), 4);
            assert_eq!(u, FilterUpdate::Stale, "sample {i} must not be used");
            assert_eq!(f.statistics().unwrap().offset, dur(5.0 * MS));
        }
        // The ninth shifts the 10 ms sample out: the best is now sample 1 (21 ms),
        // newer than the one used, so it is used.
        let u = f.add_sample(sample(128.0, -7.0, 30.0, 1.0), at(128.0), 4);
        match u {
            FilterUpdate::Updated(s) => {
                assert_eq!(s.offset, dur(-7.0 * MS));
                assert_eq!(s.delay, dur(21.0 * MS));
                assert_eq!(s.time, at(16.0));
            }
            other => panic!("expected an update, got {other:?}"),
        }
        // The next sample shifts the 21 ms stage out; the 22 ms stage (t = 32 s)
        // is newer than the one used, so it is used; times only ever increase.
        let u = f.add_sample(sample(144.0, -7.0, 40.0, 1.0), at(144.0), 4);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.time == at(32.0) && s.delay == dur(22.0 * MS)), "{u:?}");
    }

    #[test]
    fn a_lower_delay_newer_sample_is_used_at_once() {
        let mut f = no_popcorn();
        let _ = f.add_sample(sample(0.0, 1.0, 20.0, 1.0), at(0.0), 6);
        let u = f.add_sample(sample(64.0, 2.0, 10.0, 1.0), at(64.0), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.offset == dur(2.0 * MS)));
    }

    #[test]
    fn jitter_and_dispersion_match_hand_computation() {
        let mut f = no_popcorn();
        // Sorted by delay: offsets 1, 3, -1 ms -> differences 2, -2 ms.
        // psi = sqrt((2^2 + 2^2) / 2) ms = 2 ms.
        let _ = f.add_sample(sample(0.0, 3.0, 20.0, 2.0), at(0.0), 6);
        let _ = f.add_sample(sample(1.0, -1.0, 30.0, 3.0), at(1.0), 6);
        let u = f.add_sample(sample(2.0, 1.0, 10.0, 1.0), at(2.0), 6);
        let st = match u {
            FilterUpdate::Updated(s) => s,
            other => panic!("{other:?}"),
        };
        assert!(close(st.jitter, 2.0 * MS, 1e-9), "jitter {:?}", st.jitter);
        // Dispersions aged to t = 2 s, in delay order: 1 ms (age 0), 2 ms (age 2),
        // 3 ms (age 1), then five dummies of 16 s.
        let eps = [1e-3, 2e-3 + 2.0 * PHI, 3e-3 + PHI, 16.0, 16.0, 16.0, 16.0, 16.0];
        let expect: f64 = eps.iter().enumerate().map(|(i, e)| e / 2f64.powi(i as i32 + 1)).sum();
        assert!(close(st.dispersion, expect, 1e-9), "dispersion {:?} vs {expect}", st.dispersion);
        // Not the A.5.2 formula (which would include dummy offsets 0 in the jitter).
        assert!(!close(st.jitter, 0.0, 1e-4));
    }

    #[test]
    fn jitter_is_bounded_below_by_the_precision() {
        let mut f = ClockFilter::new(FilterConfig { local_precision: -10, popcorn_spike_suppressor: false });
        let u = f.add_sample(sample(0.0, 1.0, 10.0, 1.0), at(0.0), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.jitter == dur(2f64.powi(-10))));
    }

    #[test]
    fn initial_dispersion_falls_below_maxdist_after_four_samples() {
        // §10 (a)-(c): about 16 s empty, halving per sample, under 1 s after the fourth.
        let mut f = no_popcorn();
        let mut disp = Vec::new();
        for i in 0..5 {
            let now = i as f64 * 2.0;
            let _ = f.add_sample(sample(now, 0.0, 10.0, 1.0), at(now), 6);
            disp.push(secs(f.statistics().unwrap().dispersion));
        }
        assert!(disp[0] > 7.9 && disp[0] < 8.0, "{disp:?}");
        assert!(disp[2] > 1.0, "not yet selectable after 3: {disp:?}");
        assert!(disp[3] < 1.0, "selectable after 4: {disp:?}");
        assert!(disp.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn dispersion_ages_at_phi() {
        let mut f = no_popcorn();
        let _ = f.add_sample(sample(0.0, 0.0, 10.0, 1.0), at(0.0), 6);
        let stage = f.stages()[0];
        assert!(close(stage.dispersion_at(at(1000.0)), 1e-3 + PHI * 1000.0, 1e-9));
        // Capped at MAXDISP.
        assert!(close(stage.dispersion_at(at(1e7)), MAXDISP, 1e-9));
        assert!(!stage.is_valid_at(at(1.2e6)), "a sample older than ~12 days is not valid");
        let st = f.statistics().unwrap();
        let d0 = secs(st.dispersion);
        assert!(close(st.dispersion_at(at(100.0)), d0 + PHI * 100.0, 1e-9));
        // The dispersion of a stage grows between two filter calls.
        let _ = f.add_sample(sample(500.0, 0.0, 50.0, 1.0), at(500.0), 6);
        assert!(close(f.stages()[1].dispersion_at(at(500.0)), 1e-3 + PHI * 500.0, 1e-9));
    }

    #[test]
    fn dummies_push_samples_out() {
        let mut f = no_popcorn();
        let _ = f.add_sample(sample(0.0, 0.0, 10.0, 1.0), at(0.0), 6);
        for i in 1..NSTAGE {
            let u = f.add_dummy(at(i as f64 * 64.0), 6);
            assert_eq!(u, FilterUpdate::Stale);
        }
        let u = f.add_dummy(at(512.0), 6);
        assert_eq!(u, FilterUpdate::Empty);
        assert!(secs(f.statistics().unwrap().dispersion) > 15.9);
        f.reset();
        assert!(f.statistics().is_none());
    }

    #[test]
    fn the_spike_window_ends_at_exactly_two_poll_intervals() {
        // A.5.2: a jump is a spike only while less than 2 · 2^poll s have
        // passed since the last sample used; at exactly 2 · 2^poll it is taken.
        // (A lost poll puts the next sample there with a fixed poll interval.)
        let steady = || {
            let mut f = ClockFilter::new(FilterConfig::default());
            for i in 0..8 {
                let off = if i % 2 == 0 { 0.5 } else { -0.5 };
                let u = f.add_sample(sample(64.0 * f64::from(i), off, 10.0, 1.0), at(64.0 * f64::from(i)), 6);
                assert!(matches!(u, FilterUpdate::Updated(_)), "{i}: {u:?}");
            }
            f
        };
        let last = 64.0 * 7.0;
        let mut f = steady();
        let u = f.add_sample(sample(last + 127.0, 50.0, 9.0, 1.0), at(last + 127.0), 6);
        assert!(matches!(u, FilterUpdate::PopcornSpike { .. }), "inside the window: {u:?}");
        let mut f = steady();
        let u = f.add_sample(sample(last + 128.0, 50.0, 9.0, 1.0), at(last + 128.0), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if close(s.offset, 50.0 * MS, 1e-9)), "at its end: {u:?}");
    }

    #[test]
    fn a_jump_of_exactly_sgate_times_the_jitter_is_no_spike() {
        // A.5.2: a spike is a jump *above* SGATE × jitter. Identical offsets
        // leave the jitter at the precision floor, 2^-20 s; a jump of exactly
        // 3 × 2^-20 s (exact in both units) passes.
        let steady = || {
            let mut f = ClockFilter::new(FilterConfig::default());
            for i in 0..4 {
                let u = f.add_sample(sample(64.0 * f64::from(i), 0.0, 10.0 - f64::from(i), 1.0), at(64.0 * f64::from(i)), 6);
                assert!(matches!(u, FilterUpdate::Updated(_)), "{i}: {u:?}");
            }
            f
        };
        let jump = SGATE * 2f64.powi(-20);
        let u = steady().add_sample(sample(256.0, jump / MS, 5.0, 1.0), at(256.0), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.offset == dur(jump)), "{u:?}");
        let u = steady().add_sample(sample(256.0, 1.01 * jump / MS, 5.0, 1.0), at(256.0), 6);
        assert!(matches!(u, FilterUpdate::PopcornSpike { .. }), "above it: {u:?}");
    }

    #[test]
    fn popcorn_spike_is_suppressed_but_a_sustained_shift_passes() {
        let mut f = ClockFilter::new(FilterConfig::default());
        // Steady 1 ms-jitter stream, equal delays: the newest sample is always best.
        let mut t = 0.0;
        for i in 0..8 {
            let off = if i % 2 == 0 { 0.5 } else { -0.5 };
            let u = f.add_sample(sample(t, off, 10.0, 1.0), at(t), 6);
            assert!(matches!(u, FilterUpdate::Updated(_)), "{i}: {u:?}");
            t += 64.0;
        }
        // A single 50 ms spike with the lowest delay: suppressed.
        let u = f.add_sample(sample(t, 50.0, 9.0, 1.0), at(t), 6);
        assert!(matches!(u, FilterUpdate::PopcornSpike { .. }), "{u:?}");
        assert!(close(f.statistics().unwrap().offset, -0.5 * MS, 1e-9), "peer offset must not move");
        t += 64.0;
        // The shift persists: the next sample (50.2 ms, lower delay still) is
        // gated against the jitter computed with the spike in the register
        // (about 50 ms), so it passes.
        let u = f.add_sample(sample(t, 50.2, 8.0, 1.0), at(t), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if close(s.offset, 50.2 * MS, 1e-9)), "{u:?}");
    }

    #[test]
    fn without_the_suppressor_the_spike_is_used() {
        let mut f = no_popcorn();
        let mut t = 0.0;
        for i in 0..8 {
            let off = if i % 2 == 0 { 0.5 } else { -0.5 };
            let _ = f.add_sample(sample(t, off, 10.0, 1.0), at(t), 6);
            t += 64.0;
        }
        let u = f.add_sample(sample(t, 50.0, 9.0, 1.0), at(t), 6);
        assert!(matches!(u, FilterUpdate::Updated(s) if s.offset == dur(50.0 * MS)));
    }

    proptest! {
        #[test]
        fn output_is_always_the_min_delay_valid_stage_and_never_reused(
            delays in proptest::collection::vec(1u32..100_000, 1..40),
        ) {
            let mut f = no_popcorn();
            let mut used = Vec::new();
            for (i, d) in delays.iter().enumerate() {
                let now = i as f64 * 16.0;
                let s = Sample { offset: dur(i as f64 * 1e-6), delay: dur(f64::from(*d) * 1e-6), dispersion: dur(1e-3), time: at(now) };
                match f.add_sample(s, at(now), 4) {
                    FilterUpdate::Updated(st) => {
                        let min = f.stages().iter().filter_map(|s| s.sample).map(|s| s.delay).min().unwrap();
                        prop_assert_eq!(st.delay, min);
                        prop_assert!(!used.contains(&st.time), "sample used twice");
                        if let Some(last) = used.last() { prop_assert!(st.time > *last); }
                        used.push(st.time);
                    }
                    FilterUpdate::Stale => {}
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
                let st = f.statistics().unwrap();
                prop_assert!(st.jitter >= dur(2f64.powi(-20)));
                prop_assert!(secs(st.dispersion) <= MAXDISP);
            }
        }

        #[test]
        fn offset_is_exact_for_any_clock_error(
            true_secs in 0i64..(1i64 << 33), err_units in -(1i64 << 62)..(1i64 << 62),
            out_ns in 0i64..1_000_000_000, back_ns in 0i64..1_000_000_000,
        ) {
            // Client clock = true + err; server perfect.
            let err = NtpDuration::from_bits(err_units);
            let t_true = NtpTime::new(true_secs, 0);
            let t1 = t_true + err;
            let t2 = t_true + NtpDuration::from_nanos(out_ns);
            let t3 = t2 + NtpDuration::from_nanos(1000);
            let t4 = t_true + NtpDuration::from_nanos(out_ns + 1000 + back_ns) + err;
            let s = Sample::from_timestamps(t1.to_timestamp(), t2.to_timestamp(), t3.to_timestamp(), t4.to_timestamp(), -20, -20, t4);
            let expect = (-err).to_bits() as i128 * 2 + NtpDuration::from_nanos(out_ns).to_bits() as i128 - NtpDuration::from_nanos(back_ns).to_bits() as i128;
            prop_assert!((s.offset.to_bits() as i128 * 2 - expect).abs() <= 4);
        }
    }
}
