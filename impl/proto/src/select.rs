//! The system process of RFC 5905 §11.2: selection, cluster and combine.
//!
//! Input: one [`Candidate`] per source (the peer variables from its
//! [`crate::filter::ClockFilter`] plus the header values the source last
//! received). Output: a [`Selection`] naming the rejected candidates, the
//! falsetickers, the truechimers, the cluster outliers and survivors, the
//! system peer, and the combined offset and jitter to hand to
//! [`crate::discipline::Discipline::update`].
//!
//! # Plugging in another algorithm
//!
//! The algorithm sits behind [`SelectionAlgorithm`]. The system process (in the
//! daemon or the simulator) holds a `Box<dyn SelectionAlgorithm<Id>>` or is
//! generic over `A: SelectionAlgorithm<Id>`, calls
//! [`SelectionAlgorithm::select`] with the same candidates and context, and
//! uses only the returned [`Selection`]. A second algorithm (chrony-style
//! selection, a Kalman combiner, ...) implements the trait on its own type;
//! it may keep state between calls (`&mut self`). To measure it against
//! [`Rfc5905Selection`], the simulator runs both on the same candidate stream
//! (same seed) and compares their offsets against true time; the
//! [`SelectionAlgorithm::name`] labels the reports.
//!
//! # Choices where RFC 5905 is ambiguous or its skeleton is wrong
//!
//! - **Intersection.** §11.2.1 steps 1–6 with `c ≥ m − f` (A.5.5.1 compares
//!   against `n − found` with `n` the number of *tuples*, a typo). Edges are
//!   sorted by value, lowpoints before midpoints before highpoints at equal
//!   values, and success needs `l < u` (step 5), so intervals that only touch
//!   do not intersect. Like the RFC (and unlike plain Marzullo), midpoints
//!   count: at most `f` offsets may lie outside `[l, u]`, so two sources whose
//!   intervals overlap without holding each other's offset have no majority.
//! - **Who is a truechimer.** A candidate whose correctness interval
//!   `[θ − λ, θ + λ]` intersects the final interval `[l, u]`; the others are
//!   falsetickers (the reference implementation's rule; A.5.5.1's survivor
//!   loop walks the tuple list and is not usable as written).
//! - **Selection jitter in the cluster rounds** is the RMS form of §11.2.2
//!   step 3, `ψ_s = sqrt(Σ_j (θ_s − θ_j)² / (n − 1))`, not A.5.5.1's plain sum.
//! - **Combine** follows A.5.5.5 and the reference implementation: offset and
//!   selection jitter are weighted by `1/λ` (root distance); the selection
//!   jitter is the weighted RMS difference from the system peer's offset and
//!   the system jitter is `sqrt(ψ_sel² + ψ_peer²)` with `ψ_peer` the system
//!   peer's jitter (§11.2.3's `PSI = [(PSI_s)^2 + (PSI_p)^2]^1/2`).
//! - **Acceptance** (A.5.5.3 `accept()`): this module rejects candidates that
//!   are unsynchronized (leap 3), have stratum ≥ MAXSTRAT, or whose root
//!   distance exceeds `MAXDIST + PHI · 2^poll`. The loop check (refid equal to
//!   our address or the system refid) and the reachability check need state
//!   the per-source machine owns: the caller leaves such sources out.

use crate::constants::{log2_to_seconds, CMIN, MAXDIST, MAXSTRAT, MINDISP, NMIN, PHI};
use crate::filter::PeerStatistics;
use crate::time::{NtpDuration, NtpTime};
use crate::wire::v4::LeapIndicator;

fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

fn dur(s: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(s)
}

/// How a source takes part in selection (chrony's `noselect`, `prefer`,
/// `trust` and `require`; ntpd's `noselect` and `prefer`). All off by default:
/// RFC 5905's selection as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SelectOptions {
    /// Never selected nor combined (polled and reported only):
    /// [`Rejection::NoSelect`].
    pub noselect: bool,
    /// Among the truechimers, the preferred ones alone are clustered and
    /// combined (a system peer is a preferred source when one is true).
    pub prefer: bool,
    /// Its time is taken as true: when any trusted source is accepted, the
    /// majority intersection is found among the trusted sources alone, and
    /// an untrusted source is a truechimer only if its offset lies within
    /// it. A trusted source is a falseticker only when other trusted ones
    /// outvote it.
    pub trust: bool,
    /// The clock is not disciplined unless at least one source with this
    /// option is a truechimer ([`NoSync::RequiredSourceNotSelectable`]).
    pub require: bool,
}

/// One source as the system process sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<Id> {
    /// The caller's opaque source identifier.
    pub id: Id,
    /// Peer offset θ (from the filter).
    pub offset: NtpDuration,
    /// Peer delay δ (from the filter).
    pub delay: NtpDuration,
    /// Peer dispersion ε as of `updated_at` (from the filter).
    pub dispersion: NtpDuration,
    /// Peer jitter ψ (from the filter).
    pub jitter: NtpDuration,
    /// When `dispersion` was computed; the root distance ages it at PHI from here.
    pub updated_at: NtpTime,
    /// Arrival time of the sample behind `offset` (peer variable `t`).
    pub time: NtpTime,
    /// The server's root delay (packet header).
    pub root_delay: NtpDuration,
    /// The server's root dispersion (packet header).
    pub root_dispersion: NtpDuration,
    /// The server's stratum (0 already mapped to MAXSTRAT by the caller, A.5.1.1).
    pub stratum: u8,
    /// The server's leap indicator.
    pub leap: LeapIndicator,
    /// How the source takes part in selection (configured).
    pub options: SelectOptions,
}

impl<Id> Candidate<Id> {
    /// A candidate from filter output and the last header values received.
    pub fn from_statistics(
        id: Id,
        stats: &PeerStatistics,
        root_delay: NtpDuration,
        root_dispersion: NtpDuration,
        stratum: u8,
        leap: LeapIndicator,
    ) -> Self {
        Candidate {
            id,
            offset: stats.offset,
            delay: stats.delay,
            dispersion: stats.dispersion,
            jitter: stats.jitter,
            updated_at: stats.updated_at,
            time: stats.time,
            root_delay,
            root_dispersion,
            stratum,
            leap,
            options: SelectOptions::default(),
        }
    }

    /// Root synchronization distance λ at `now` (A.5.5.2 `root_dist()`):
    /// `max(MINDISP, root delay + δ) / 2 + root dispersion + ε + PHI · (now − t) + ψ`,
    /// with `t` the time the dispersion was last computed.
    pub fn root_distance(&self, now: NtpTime) -> NtpDuration {
        dur(self.root_distance_secs(now))
    }

    fn root_distance_secs(&self, now: NtpTime) -> f64 {
        let age = secs(now - self.updated_at).max(0.0);
        MINDISP.max(secs(self.root_delay) + secs(self.delay)) / 2.0
            + secs(self.root_dispersion)
            + secs(self.dispersion)
            + PHI * age
            + secs(self.jitter)
    }
}

/// Inputs to a selection run besides the candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionContext<Id> {
    /// Local time of the run (ages dispersions).
    pub now: NtpTime,
    /// System poll exponent: the distance threshold is `MAXDIST + PHI · 2^poll`.
    pub system_poll: i8,
    /// The current system peer, kept when it survives at the same stratum as
    /// the best survivor (A.5.5.1: avoid clock hopping).
    pub previous_system_peer: Option<Id>,
    /// Some configured source has [`SelectOptions::require`] (candidate or
    /// not: one left out as unreachable is not selectable either).
    pub require: bool,
}

/// Why a candidate was not even considered (A.5.5.3 `accept()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Leap indicator 3: the server is not synchronized.
    Unsynchronized,
    /// Stratum MAXSTRAT (16) or more.
    StratumTooHigh,
    /// Root distance above `MAXDIST + PHI · 2^poll`.
    DistanceTooLarge,
    /// A timing loop (A.5.2 `fit()`): the source's reference ID is one of
    /// this host's addresses (IPv6: their MD5 hash IDs), or the system's own
    /// reference ID: it follows this host, or what this host follows.
    /// Judged by [`crate::system::System`], which knows these.
    Loop,
    /// The source's stratum is not below the configured local reference's:
    /// following it cannot serve better time than the local reference, and
    /// in a ring of servers it may be following this host.
    NotBelowLocalStratum,
    /// The source's reach register is zero (A.5.2 `fit()`: "an unreachable
    /// error occurs if the server is unreachable"). Judged by
    /// [`crate::system::System`], which hears of it from the poll process.
    Unreachable,
    /// NTPv5: this host serves time and the source's whole Reference IDs
    /// filter has not arrived yet, so whether it follows this host is not
    /// known (draft-ietf-ntp-ntpv5-07 §9: such a client does not select a
    /// server before it has the whole filter). Judged by
    /// [`crate::system::System`].
    ReferenceIdsIncomplete,
    /// The source's latest sample lies outside what a majority of the other
    /// sources agree on, while its clock filter still offers an older sample
    /// that agrees: its clock has jumped away. It is unfit until a sample of
    /// it agrees again. Judged by [`crate::system::System`] for a discipline
    /// fed every sample of the system peer, which would otherwise take the
    /// jumped sample before the filter lets the selection see it.
    Outvoted,
    /// Configured [`SelectOptions::noselect`]: measured, never selected.
    NoSelect,
}

/// Why no offset came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSync {
    /// No candidate passed acceptance.
    NoCandidates,
    /// No intersection holds a majority of the candidates (§11.2.1 step 6).
    NoMajority,
    /// Fewer truechimers than the configured minimum (CMIN).
    TooFewTruechimers {
        /// How many were found.
        found: usize,
        /// How many are required.
        required: usize,
    },
    /// Sources are configured with [`SelectOptions::require`] and none of
    /// them is a truechimer.
    RequiredSourceNotSelectable,
    /// Set by the system process, never by a selection algorithm: before the
    /// first clock update, the truechimers are not yet a majority of every
    /// configured source (or some source is still too far to judge), and the
    /// startup wait ([`crate::system::STARTUP_WAIT_S`]) has not run out.
    StartupWait {
        /// Truechimers of this run.
        truechimers: usize,
        /// Sources configured.
        configured: usize,
    },
}

/// The best and final statistics (§11.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined<Id> {
    /// The system peer `s.p`: its variables become the system variables.
    pub system_peer: Id,
    /// Combined offset THETA (to the discipline).
    pub offset: NtpDuration,
    /// System jitter PSI = sqrt(selection jitter² + system peer jitter²).
    pub jitter: NtpDuration,
    /// Selection jitter PSI_s (weighted RMS offset difference from the system peer).
    pub selection_jitter: NtpDuration,
    /// The system peer's own jitter PSI_p.
    pub peer_jitter: NtpDuration,
}

/// Everything a selection run decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection<Id> {
    /// Candidates refused before the intersection, with the reason.
    pub rejected: Vec<(Id, Rejection)>,
    /// Candidates outside the majority intersection.
    pub falsetickers: Vec<Id>,
    /// Candidates of the majority clique, in input order.
    pub truechimers: Vec<Id>,
    /// Truechimers the cluster algorithm discarded, in the order discarded.
    pub outliers: Vec<Id>,
    /// Cluster survivors in order of preference (stratum, then root distance).
    pub survivors: Vec<Id>,
    /// The intersection interval `[l, u]` (offsets), when one was found.
    pub interval: Option<(NtpDuration, NtpDuration)>,
    /// The combined result, or why there is none (then the clock MUST NOT be
    /// disciplined, §11.2).
    pub outcome: Result<Combined<Id>, NoSync>,
}

/// A clock selection/combining algorithm. See the [module docs](self) for how
/// a second algorithm plugs in and is compared.
pub trait SelectionAlgorithm<Id> {
    /// A short name for reports (e.g. `"rfc5905"`).
    fn name(&self) -> &'static str;

    /// Picks the system peer and combined offset from the candidates.
    ///
    /// Candidates with duplicate ids are a caller error; the result is then
    /// unspecified but never a panic.
    fn select(&mut self, candidates: &[Candidate<Id>], context: &SelectionContext<Id>) -> Selection<Id>;
}

/// Settings of [`Rfc5905Selection`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectionConfig {
    /// Minimum truechimers to discipline the clock (CMIN, default 1).
    pub min_truechimers: usize,
    /// The cluster algorithm stops at this many survivors (NMIN, default 3).
    pub min_survivors: usize,
    /// Distance threshold in seconds (MAXDIST, default 1 s).
    pub max_distance: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig { min_truechimers: CMIN, min_survivors: NMIN, max_distance: MAXDIST }
    }
}

/// RFC 5905 §11.2.1–§11.2.3: Marzullo-style intersection, cluster, combine.
#[derive(Clone, Debug, Default)]
pub struct Rfc5905Selection {
    /// The settings.
    pub config: SelectionConfig,
}

impl Rfc5905Selection {
    /// With the given settings.
    pub fn new(config: SelectionConfig) -> Self {
        Rfc5905Selection { config }
    }
}

/// A candidate reduced to numbers.
#[derive(Clone, Copy, Debug)]
struct Entry {
    index: usize,
    offset: f64,
    jitter: f64,
    distance: f64,
    stratum: u8,
    options: SelectOptions,
}

/// §11.2.1: the intersection `[l, u]` holding a majority, or `None`.
fn intersect(entries: &[Entry]) -> Option<(f64, f64)> {
    let m = entries.len();
    // (edge, type): type -1 lowpoint, 0 midpoint, +1 highpoint.
    let mut chimes: Vec<(f64, i8)> = Vec::with_capacity(3 * m);
    for e in entries {
        chimes.push((e.offset - e.distance, -1));
        chimes.push((e.offset, 0));
        chimes.push((e.offset + e.distance, 1));
    }
    chimes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut allow = 0;
    while 2 * allow < m {
        let need = (m - allow) as i64;
        let mut found = 0;
        let mut chime: i64 = 0;
        let mut low = None;
        for &(edge, kind) in &chimes {
            chime -= i64::from(kind);
            if chime >= need {
                low = Some(edge);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        chime = 0;
        let mut high = None;
        for &(edge, kind) in chimes.iter().rev() {
            chime += i64::from(kind);
            if chime >= need {
                high = Some(edge);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        if found <= allow {
            if let (Some(l), Some(u)) = (low, high) {
                if l < u {
                    return Some((l, u));
                }
            }
        }
        allow += 1;
    }
    None
}

/// RMS offset difference of `entries[s]` from the others (§11.2.2 step 3).
fn selection_jitter(entries: &[Entry], s: usize) -> f64 {
    if entries.len() < 2 {
        return 0.0;
    }
    let sum: f64 = entries.iter().map(|e| (entries[s].offset - e.offset).powi(2)).sum();
    (sum / (entries.len() - 1) as f64).sqrt()
}

impl<Id: Clone + PartialEq> SelectionAlgorithm<Id> for Rfc5905Selection {
    fn name(&self) -> &'static str {
        "rfc5905"
    }

    fn select(&mut self, candidates: &[Candidate<Id>], context: &SelectionContext<Id>) -> Selection<Id> {
        let now = context.now;
        let threshold = self.config.max_distance + PHI * log2_to_seconds(context.system_poll);
        let mut rejected = Vec::new();
        let mut entries = Vec::new();
        for (index, c) in candidates.iter().enumerate() {
            let distance = c.root_distance_secs(now);
            let reason = if c.options.noselect {
                Some(Rejection::NoSelect)
            } else if c.leap == LeapIndicator::Unsynchronized {
                Some(Rejection::Unsynchronized)
            } else if c.stratum >= MAXSTRAT {
                Some(Rejection::StratumTooHigh)
            } else if distance.is_nan() || distance > threshold {
                Some(Rejection::DistanceTooLarge)
            } else {
                None
            };
            match reason {
                Some(r) => rejected.push((c.id.clone(), r)),
                None => entries.push(Entry {
                    index,
                    offset: secs(c.offset),
                    jitter: secs(c.jitter),
                    distance,
                    stratum: c.stratum,
                    options: c.options,
                }),
            }
        }
        let id = |e: &Entry| candidates[e.index].id.clone();
        let mut selection = Selection {
            rejected,
            falsetickers: Vec::new(),
            truechimers: Vec::new(),
            outliers: Vec::new(),
            survivors: Vec::new(),
            interval: None,
            outcome: Err(NoSync::NoCandidates),
        };
        if entries.is_empty() {
            return selection;
        }

        // §11.2.1 selection: among the trusted sources alone when any is
        // accepted (their time is true; the others are judged against it).
        let trusted: Vec<Entry> = entries.iter().filter(|e| e.options.trust).copied().collect();
        let voters = if trusted.is_empty() { &entries } else { &trusted };
        let Some((low, high)) = intersect(voters) else {
            selection.falsetickers = entries.iter().map(id).collect();
            selection.outcome = Err(NoSync::NoMajority);
            return selection;
        };
        selection.interval = Some((dur(low), dur(high)));
        let true_chime = |e: &Entry| {
            if trusted.is_empty() || e.options.trust {
                e.offset - e.distance <= high && e.offset + e.distance >= low
            } else {
                (low..=high).contains(&e.offset)
            }
        };
        let (mut chimers, falsetickers): (Vec<Entry>, Vec<Entry>) = entries.iter().partition(|e| true_chime(e));
        selection.falsetickers = falsetickers.iter().map(id).collect();
        selection.truechimers = chimers.iter().map(id).collect();
        debug_assert!(!trusted.is_empty() || 2 * chimers.len() > entries.len(), "a majority clique");
        if chimers.len() < self.config.min_truechimers.max(1) {
            selection.outcome = Err(NoSync::TooFewTruechimers {
                found: chimers.len(),
                required: self.config.min_truechimers.max(1),
            });
            return selection;
        }
        if context.require && !chimers.iter().any(|e| e.options.require) {
            selection.outcome = Err(NoSync::RequiredSourceNotSelectable);
            return selection;
        }
        // Preferred truechimers, when there are any, are the only ones
        // clustered and combined.
        if chimers.iter().any(|e| e.options.prefer) {
            chimers.retain(|e| e.options.prefer);
        }

        // §11.2.2 cluster: order by merit, then prune by selection jitter.
        let merit = |e: &Entry| f64::from(e.stratum) * MAXDIST + e.distance;
        chimers.sort_by(|a, b| merit(a).total_cmp(&merit(b)));
        while chimers.len() > self.config.min_survivors.max(1) {
            let (worst, psi_max) = (0..chimers.len())
                .map(|s| (s, selection_jitter(&chimers, s)))
                .fold((0, f64::NEG_INFINITY), |acc, x| if x.1 >= acc.1 { x } else { acc });
            let psi_min = chimers.iter().map(|e| e.jitter).fold(f64::INFINITY, f64::min);
            if psi_max < psi_min {
                break;
            }
            let out = chimers.remove(worst);
            selection.outliers.push(id(&out));
        }
        selection.survivors = chimers.iter().map(id).collect();

        // System peer: keep the old one if it survived at the best stratum.
        let sys = context
            .previous_system_peer
            .as_ref()
            .and_then(|p| chimers.iter().position(|e| candidates[e.index].id == *p))
            .filter(|&k| chimers[k].stratum == chimers[0].stratum)
            .unwrap_or(0);

        // §11.2.3 combine.
        let (mut y, mut z, mut w) = (0.0, 0.0, 0.0);
        let reference = chimers[sys].offset;
        for e in &chimers {
            let x = 1.0 / e.distance;
            y += x;
            z += e.offset * x;
            w += (e.offset - reference).powi(2) * x;
        }
        let selection_jitter = (w / y).sqrt();
        let peer_jitter = chimers[sys].jitter;
        selection.outcome = Ok(Combined {
            system_peer: id(&chimers[sys]),
            offset: dur(z / y),
            jitter: dur(selection_jitter.hypot(peer_jitter)),
            selection_jitter: dur(selection_jitter),
            peer_jitter: dur(peer_jitter),
        });
        selection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: f64 = 1e-3;

    fn now() -> NtpTime {
        NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    /// A stratum-1 candidate whose root distance is exactly `dist_ms`
    /// (delay 0 and MINDISP: the delay term is MINDISP/2 = 2.5 ms; the rest
    /// goes into the dispersion), with jitter `jitter_ms`.
    fn cand(id: u32, offset_ms: f64, dist_ms: f64, jitter_ms: f64) -> Candidate<u32> {
        let rest = dist_ms * MS - MINDISP / 2.0 - jitter_ms * MS;
        assert!(rest >= 0.0);
        Candidate {
            id,
            offset: dur(offset_ms * MS),
            delay: NtpDuration::ZERO,
            dispersion: dur(rest),
            jitter: dur(jitter_ms * MS),
            updated_at: now(),
            time: now(),
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            stratum: 1,
            leap: LeapIndicator::NoWarning,
            options: SelectOptions::default(),
        }
    }

    fn ctx() -> SelectionContext<u32> {
        SelectionContext { now: now(), system_poll: 6, previous_system_peer: None, require: false }
    }

    fn run(cands: &[Candidate<u32>]) -> Selection<u32> {
        Rfc5905Selection::default().select(cands, &ctx())
    }

    fn sorted(mut v: Vec<u32>) -> Vec<u32> {
        v.sort();
        v
    }

    #[test]
    fn root_distance_formula() {
        let mut c = cand(1, 0.0, 10.0, 1.0);
        c.delay = dur(0.020);
        c.root_delay = dur(0.030);
        c.root_dispersion = dur(0.004);
        c.dispersion = dur(0.002);
        c.jitter = dur(0.001);
        let d = secs(c.root_distance(now() + dur(100.0)));
        let expect = (0.030 + 0.020) / 2.0 + 0.004 + 0.002 + PHI * 100.0 + 0.001;
        assert!((d - expect).abs() < 1e-9, "{d} vs {expect}");
        // The delay term is at least MINDISP / 2.
        c.delay = NtpDuration::ZERO;
        c.root_delay = NtpDuration::ZERO;
        let d = secs(c.root_distance(now()));
        assert!((d - (MINDISP / 2.0 + 0.004 + 0.002 + 0.001)).abs() < 1e-9);
    }

    /// chrony's 120-selectoptions: servers 1 and 2 serve +1 s and +2 s,
    /// server 3 true time; every interval `dist_ms` wide each way.
    fn two_falsetickers_of_three(dist_ms: f64, options: [SelectOptions; 3]) -> Vec<Candidate<u32>> {
        [1000.0, 2000.0, 0.0]
            .iter()
            .zip(options)
            .enumerate()
            .map(|(i, (&offset, options))| Candidate { options, ..cand(i as u32 + 1, offset, dist_ms, 1.0) })
            .collect()
    }

    const TRUST: SelectOptions = SelectOptions { noselect: false, prefer: false, trust: true, require: false };
    const PREFER: SelectOptions = SelectOptions { noselect: false, prefer: true, trust: false, require: false };
    const REQUIRE: SelectOptions = SelectOptions { noselect: false, prefer: false, trust: false, require: true };
    const NOSELECT: SelectOptions = SelectOptions { noselect: true, prefer: false, trust: false, require: false };
    const NONE: SelectOptions = SelectOptions { noselect: false, prefer: false, trust: false, require: false };

    #[test]
    fn a_trusted_source_is_outvoted_only_by_trusted_ones() {
        // 600 ms intervals: 1 overlaps 2 and 3, 2 and 3 do not overlap, and
        // no interval holds two offsets: no majority.
        assert_eq!(run(&two_falsetickers_of_three(600.0, [NONE; 3])).outcome, Err(NoSync::NoMajority));
        // Trusting 3: its interval is the intersection; 1's offset (+1 s)
        // lies outside it, so 1 is a falseticker although the intervals meet.
        let s = run(&two_falsetickers_of_three(600.0, [NONE, NONE, TRUST]));
        assert_eq!((sorted(s.falsetickers.clone()), s.truechimers.clone()), (vec![1, 2], vec![3]));
        let out = s.outcome.unwrap();
        assert_eq!((out.system_peer, out.offset), (3, NtpDuration::ZERO));
        // Two trusted sources that disagree: no majority among them.
        assert_eq!(run(&two_falsetickers_of_three(400.0, [NONE, TRUST, TRUST])).outcome, Err(NoSync::NoMajority));
    }

    #[test]
    fn preferred_truechimers_alone_are_combined_but_a_preferred_falseticker_is_not_followed() {
        // 1100 ms intervals (within a 3 s distance threshold, chrony's
        // maxdistance): all three meet; combined, the offset is pulled
        // towards the two that are off.
        let wide = |c: &[Candidate<u32>]| {
            Rfc5905Selection::new(SelectionConfig { max_distance: 3.0, ..SelectionConfig::default() }).select(c, &ctx())
        };
        let all = wide(&two_falsetickers_of_three(1100.0, [NONE; 3])).outcome.unwrap();
        assert!(secs(all.offset) > 0.5, "{:?}", all.offset);
        let s = wide(&two_falsetickers_of_three(1100.0, [NONE, NONE, PREFER]));
        let out = s.outcome.unwrap();
        assert_eq!((out.system_peer, out.offset, s.survivors), (3, NtpDuration::ZERO, vec![3]));
        // 600 ms: no majority holds 3, and preferring it changes nothing.
        assert_eq!(run(&two_falsetickers_of_three(600.0, [NONE, NONE, PREFER])).outcome, Err(NoSync::NoMajority));
    }

    #[test]
    fn without_a_required_truechimer_nothing_is_combined() {
        let one_off = |options: [SelectOptions; 3], require: bool| {
            let c: Vec<Candidate<u32>> = [1000.0, 0.3, -0.2]
                .iter()
                .zip(options)
                .enumerate()
                .map(|(i, (&offset, options))| Candidate { options, ..cand(i as u32 + 1, offset, 10.0, 1.0) })
                .collect();
            Rfc5905Selection::default().select(&c, &SelectionContext { require, ..ctx() })
        };
        assert!(one_off([NONE, NONE, REQUIRE], true).outcome.is_ok());
        let s = one_off([REQUIRE, NONE, NONE], true);
        assert_eq!((s.falsetickers.clone(), s.outcome), (vec![1], Err(NoSync::RequiredSourceNotSelectable)));
        // A required source that is no candidate (unreachable): the context says so.
        assert_eq!(one_off([NONE; 3], true).outcome, Err(NoSync::RequiredSourceNotSelectable));
        assert!(one_off([NONE; 3], false).outcome.is_ok());
    }

    #[test]
    fn a_noselect_source_is_refused_before_the_vote() {
        // With it the two true sources would be outvoted... by nobody: it
        // is left out, and the other two agree.
        let c: Vec<Candidate<u32>> = [(1000.0, NOSELECT), (0.3, NONE), (-0.2, NONE)]
            .iter()
            .enumerate()
            .map(|(i, &(offset, options))| Candidate { options, ..cand(i as u32 + 1, offset, 10.0, 1.0) })
            .collect();
        let s = run(&c);
        assert_eq!(s.rejected, vec![(1, Rejection::NoSelect)]);
        assert!(s.falsetickers.is_empty());
        assert_ne!(s.outcome.unwrap().system_peer, 1);
    }

    #[test]
    fn five_sources_one_falseticker() {
        let c = [
            cand(1, 0.5, 10.0, 1.0),
            cand(2, -0.3, 10.0, 1.0),
            cand(3, 1000.0, 10.0, 1.0), // +1 s
            cand(4, 0.1, 10.0, 1.0),
            cand(5, -0.8, 10.0, 1.0),
        ];
        let s = run(&c);
        assert_eq!(s.falsetickers, vec![3]);
        assert_eq!(sorted(s.truechimers.clone()), vec![1, 2, 4, 5]);
        let out = s.outcome.unwrap();
        assert!(!s.survivors.contains(&3), "a falseticker must never survive");
        assert!(secs(out.offset).abs() < 1.0 * MS, "{:?}", out.offset);
        assert_ne!(out.system_peer, 3);
    }

    #[test]
    fn five_sources_two_falsetickers() {
        // Catalog R5905-11.2.1-falseticker: 3 within ±1 ms, 2 at +1 s.
        let c = [
            cand(1, 0.5, 10.0, 1.0),
            cand(2, 1000.0, 10.0, 1.0),
            cand(3, -0.9, 10.0, 1.0),
            cand(4, 1000.4, 10.0, 1.0),
            cand(5, 0.2, 10.0, 1.0),
        ];
        let s = run(&c);
        assert_eq!(sorted(s.falsetickers.clone()), vec![2, 4]);
        assert_eq!(sorted(s.truechimers.clone()), vec![1, 3, 5]);
        let (l, u) = s.interval.unwrap();
        assert!(secs(l) < 0.0 && secs(u) > 0.0 && secs(u) < 0.02);
        let out = s.outcome.unwrap();
        assert!(secs(out.offset).abs() < 1.0 * MS);
        assert!(![2, 4].contains(&out.system_peer));
    }

    #[test]
    fn no_majority_means_no_selection() {
        // Catalog R5905-11.2.1-no-majority: 2 at 0 and 2 at +0.5 s, tight distances.
        let c = [cand(1, 0.0, 10.0, 1.0), cand(2, 0.1, 10.0, 1.0), cand(3, 500.0, 10.0, 1.0), cand(4, 500.1, 10.0, 1.0)];
        let s = run(&c);
        assert_eq!(s.outcome, Err(NoSync::NoMajority));
        assert!(s.survivors.is_empty());
        assert!(s.interval.is_none());
        // Two disagreeing sources: also no majority.
        let s = run(&c[1..3]);
        assert_eq!(s.outcome, Err(NoSync::NoMajority));
    }

    #[test]
    fn a_single_source_is_selected() {
        let s = run(&[cand(7, 3.0, 10.0, 1.0)]);
        let out = s.outcome.unwrap();
        assert_eq!(out.system_peer, 7);
        assert_eq!(out.offset, dur(3.0 * MS));
    }

    #[test]
    fn barely_overlapping_intervals() {
        // RFC 5905's modification of Marzullo: an intersection must also hold
        // the midpoints (offsets) of all but `f` candidates. Two intervals that
        // overlap by 1 µs, [-10, 10] and [9.999, 29.999] ms, hold neither
        // midpoint: no majority (plain Marzullo would accept [9.999, 10]).
        let s = run(&[cand(1, 0.0, 10.0, 1.0), cand(2, 19.999, 10.0, 1.0)]);
        assert_eq!(s.outcome, Err(NoSync::NoMajority));
        // Each interval barely holds the other's midpoint (by 1 µs): success,
        // and the intersection is [9.999 - 10, 0 + 10] ms.
        let s = run(&[cand(1, 0.0, 10.0, 1.0), cand(2, 9.999, 10.0, 1.0)]);
        let (l, u) = s.interval.unwrap();
        assert!((secs(l) + 0.001 * MS).abs() < 1e-9 && (secs(u) - 10.0 * MS).abs() < 1e-9, "{l:?} {u:?}");
        assert!(s.falsetickers.is_empty());
        assert!((secs(s.outcome.unwrap().offset) - 4.9995 * MS).abs() < 1e-9);
        // Missing it by 1 µs: no majority of two.
        let s = run(&[cand(1, 0.0, 10.0, 1.0), cand(2, 10.001, 10.0, 1.0)]);
        assert_eq!(s.outcome, Err(NoSync::NoMajority));
        // A third interval bridging the barely-overlapping pair: with one
        // falseticker allowed, the lower scan stops at 0 ms and the upper at
        // 20 ms; [0, 20] ms touches all three intervals: all are truechimers.
        let s = run(&[cand(1, 0.0, 10.0, 1.0), cand(2, 19.999, 10.0, 1.0), cand(3, 10.0, 10.0, 1.0)]);
        let (l, u) = s.interval.unwrap();
        assert!(secs(l).abs() < 1e-9 && (secs(u) - 20.0 * MS).abs() < 1e-9, "{l:?} {u:?}");
        assert!(s.falsetickers.is_empty());
        assert_eq!(sorted(s.truechimers), vec![1, 2, 3]);
        // Exactly touching intervals never intersect (step 5 needs l < u).
        let s = run(&[cand(1, 0.0, 10.0, 1.0), cand(2, 20.0, 10.0, 1.0)]);
        assert_eq!(s.outcome, Err(NoSync::NoMajority));
    }

    #[test]
    fn acceptance_rejects_unsynchronized_high_stratum_and_far_sources() {
        let mut a = cand(1, 0.0, 10.0, 1.0);
        a.leap = LeapIndicator::Unsynchronized;
        let mut b = cand(2, 0.0, 10.0, 1.0);
        b.stratum = MAXSTRAT;
        let c = cand(3, 0.0, 1500.0, 1.0); // 1.5 s root distance
        let d = cand(4, 0.0, 10.0, 1.0);
        let s = run(&[a, b, c.clone(), d]);
        assert_eq!(
            s.rejected,
            vec![(1, Rejection::Unsynchronized), (2, Rejection::StratumTooHigh), (3, Rejection::DistanceTooLarge)]
        );
        assert_eq!(s.outcome.unwrap().system_peer, 4);
        // Only rejected candidates: nothing to do.
        let s = run(&[c]);
        assert_eq!(s.outcome, Err(NoSync::NoCandidates));
    }

    #[test]
    fn min_truechimers_is_enforced() {
        let mut alg = Rfc5905Selection::new(SelectionConfig { min_truechimers: 3, ..Default::default() });
        let s = alg.select(&[cand(1, 0.0, 10.0, 1.0), cand(2, 0.5, 10.0, 1.0)], &ctx());
        assert_eq!(s.outcome, Err(NoSync::TooFewTruechimers { found: 2, required: 3 }));
        let s = alg.select(&[cand(1, 0.0, 10.0, 1.0), cand(2, 0.5, 10.0, 1.0), cand(3, 0.2, 10.0, 1.0)], &ctx());
        assert!(s.outcome.is_ok());
    }

    #[test]
    fn cluster_prunes_the_noisiest_down_to_nmin() {
        // Six truechimers (wide intervals) with offsets spread so that the
        // outermost have the largest selection jitter; tiny peer jitter so the
        // psi_max < psi_min stop does not fire first.
        let offs = [0.0, 0.2, -0.2, 5.0, -8.0, 12.0];
        let c: Vec<_> = offs.iter().enumerate().map(|(i, o)| cand(i as u32 + 1, *o, 50.0, 0.01)).collect();
        let s = run(&c);
        assert!(s.falsetickers.is_empty());
        assert_eq!(s.outliers, vec![6, 5, 4], "pruned worst first");
        assert_eq!(sorted(s.survivors.clone()), vec![1, 2, 3]);
        assert_eq!(s.survivors.len(), NMIN);
        assert!(secs(s.outcome.unwrap().offset).abs() < 0.1 * MS);
    }

    #[test]
    fn cluster_stops_when_selection_jitter_is_below_peer_jitter() {
        // Peer jitter 5 ms dwarfs the 0.2 ms spread: nothing is pruned.
        let offs = [0.0, 0.1, -0.1, 0.2, -0.2];
        let c: Vec<_> = offs.iter().enumerate().map(|(i, o)| cand(i as u32 + 1, *o, 50.0, 5.0)).collect();
        let s = run(&c);
        assert!(s.outliers.is_empty());
        assert_eq!(s.survivors.len(), 5);
    }

    #[test]
    fn selection_jitter_is_the_rms_offset_difference_from_the_others() {
        // §11.2.2: ψ_s = sqrt(Σ_j (θ_s − θ_j)² / (n − 1)).
        let e = |offset: f64| Entry { index: 0, offset, jitter: 0.0, distance: 0.0, stratum: 1, options: SelectOptions::default() };
        let entries = [e(0.0), e(1.0), e(3.0)];
        assert!((selection_jitter(&entries, 0) - (10.0f64 / 2.0).sqrt()).abs() < 1e-12);
        assert!((selection_jitter(&entries, 2) - (13.0f64 / 2.0).sqrt()).abs() < 1e-12);
        assert_eq!(selection_jitter(&entries[..2], 1), 1.0);
        assert_eq!(selection_jitter(&entries[..1], 0), 0.0, "one entry has no others");
    }

    #[test]
    fn cluster_prunes_while_the_selection_jitter_is_not_below_the_peer_jitter() {
        // Four truechimers at 0, 0, 0 and x, all of peer jitter x: the fourth's
        // selection jitter is sqrt(3x²/3) = x, not below ψ_min = x, so it is
        // pruned (§11.2.2 stops only when ψ_max < ψ_min). x = 2^-10 s keeps the
        // arithmetic exact.
        let x = 2f64.powi(-10);
        let c: Vec<_> = [0.0, 0.0, 0.0, x]
            .iter()
            .enumerate()
            .map(|(i, o)| Candidate { offset: dur(*o), jitter: dur(x), ..cand(i as u32 + 1, 0.0, 50.0, 0.0) })
            .collect();
        let s = run(&c);
        assert_eq!(s.outliers, vec![4]);
        // With a peer jitter just above x the same spread is kept.
        let c: Vec<_> = c.into_iter().map(|k| Candidate { jitter: dur(x * 1.01), ..k }).collect();
        assert!(run(&c).outliers.is_empty());
    }

    #[test]
    fn merit_orders_by_stratum_before_distance() {
        // §11.2.2: merit = stratum × MAXDIST + root distance. A stratum-1
        // source 0.9 s away still outranks a stratum-2 source 10 ms away.
        let far = cand(1, 0.0, 900.0, 1.0);
        let near = Candidate { stratum: 2, ..cand(2, 0.0, 10.0, 1.0) };
        let s = run(&[near, far]);
        assert_eq!(s.survivors, vec![1, 2]);
        assert_eq!(s.outcome.unwrap().system_peer, 1);
    }

    #[test]
    fn the_distance_threshold_grows_with_the_system_poll() {
        // §11.2.1 accepts a root distance up to MAXDIST + PHI × 2^poll: 1 s +
        // 0.96 ms at poll 6, 1 s + 15 µs at poll 0.
        let c = cand(1, 0.0, 1000.5, 1.0);
        let mut alg = Rfc5905Selection::default();
        assert!(alg.select(std::slice::from_ref(&c), &ctx()).rejected.is_empty(), "accepted at poll 6");
        let poll0 = SelectionContext { system_poll: 0, ..ctx() };
        assert_eq!(alg.select(&[c], &poll0).rejected, vec![(1, Rejection::DistanceTooLarge)]);
    }

    #[test]
    fn combine_weights_by_inverse_root_distance() {
        // Catalog R5905-11.2.3-combine: +1 ms at λ 10 ms, -1 ms at λ 30 ms:
        // (1/10 - 1/30) / (1/10 + 1/30) = 0.5 ms.
        let s = run(&[cand(1, 1.0, 10.0, 0.5), cand(2, -1.0, 30.0, 0.5)]);
        let out = s.outcome.unwrap();
        assert!((secs(out.offset) - 0.5 * MS).abs() < 1e-9, "{:?}", out.offset);
        assert_eq!(out.system_peer, 1, "lowest root distance is preferred");
        // Selection jitter: sqrt(((0)^2/10 + (2 ms)^2/30) / (1/10 + 1/30)) = sqrt(1 ms^2) = 1 ms.
        assert!((secs(out.selection_jitter) - 1.0 * MS).abs() < 1e-9);
        assert!((secs(out.jitter) - (1.0f64 * MS).hypot(0.5 * MS)).abs() < 1e-9);
        // Not the plain mean.
        assert!(secs(out.offset).abs() > 1e-4);
    }

    #[test]
    fn lower_stratum_wins_and_the_old_system_peer_is_kept() {
        let mut a = cand(1, 0.0, 20.0, 1.0);
        a.stratum = 2;
        let b = cand(2, 0.1, 30.0, 1.0); // stratum 1
        let c = cand(3, 0.2, 10.0, 1.0); // stratum 1, best distance
        let s = run(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(s.survivors, vec![3, 2, 1]);
        assert_eq!(s.outcome.unwrap().system_peer, 3);
        let mut alg = Rfc5905Selection::default();
        let keep = SelectionContext { previous_system_peer: Some(2), ..ctx() };
        assert_eq!(alg.select(&[a.clone(), b.clone(), c.clone()], &keep).outcome.unwrap().system_peer, 2);
        // A previous peer at a worse stratum is not kept.
        let hop = SelectionContext { previous_system_peer: Some(1), ..ctx() };
        assert_eq!(alg.select(&[a, b, c], &hop).outcome.unwrap().system_peer, 3);
    }

    #[test]
    fn a_falseticker_is_not_combined_while_intervals_are_still_wide() {
        // Early after start: four truechimers at -50 ms and one falseticker at
        // +450 ms, all with wide intervals (few filter samples), tiny jitter.
        let mut c: Vec<_> = (1..=4).map(|i| cand(i, -50.0, 600.0 + f64::from(i), 0.01)).collect();
        c.push(cand(5, 450.0, 600.0, 0.01));
        let s = run(&c);
        assert!(!s.survivors.contains(&5), "the falseticker must not survive the cluster algorithm: {s:?}");
        let out = s.outcome.expect("a majority");
        assert!((secs(out.offset) + 50.0 * MS).abs() < 1.0 * MS, "{:?}", out.offset);
    }

    #[test]
    fn a_truechimer_is_an_interval_overlapping_the_intersection_not_a_midpoint_inside_it() {
        // Three agree around 0-2 ms (intervals ±10 ms); the intersection with
        // one falseticker allowed is [-8, 11] ms. RFC 5905 §11.2.1: a
        // candidate is a truechimer when its interval overlaps [l, u].
        let agree = [cand(1, 0.0, 10.0, 1.0), cand(2, 1.0, 10.0, 1.0), cand(3, 2.0, 10.0, 1.0)];
        // 25 ± 15.5 ms = [9.5, 40.5]: overlaps by 1.5 ms though its offset lies
        // outside: a truechimer (a midpoint rule would call it a falseticker).
        let mut c = agree.to_vec();
        c.push(cand(4, 25.0, 15.5, 1.0));
        let s = run(&c);
        let (l, u) = s.interval.unwrap();
        assert!((secs(l) + 8.0 * MS).abs() < 1e-9 && (secs(u) - 11.0 * MS).abs() < 1e-9, "{l:?} {u:?}");
        assert_eq!(sorted(s.truechimers.clone()), vec![1, 2, 3, 4]);
        assert!(s.falsetickers.is_empty());
        // 40 ± 25 ms = [15, 65]: its interval misses [-8, 10] ms: a falseticker,
        // however wide its interval.
        let mut c = agree.to_vec();
        c.push(cand(4, 40.0, 25.0, 1.0));
        let s = run(&c);
        let (l, u) = s.interval.unwrap();
        assert!((secs(l) + 8.0 * MS).abs() < 1e-9 && (secs(u) - 10.0 * MS).abs() < 1e-9, "{l:?} {u:?}");
        assert_eq!(s.falsetickers, vec![4]);
        assert_eq!(sorted(s.truechimers.clone()), vec![1, 2, 3]);
    }

    #[test]
    fn usable_as_a_trait_object() {
        let mut alg: Box<dyn SelectionAlgorithm<u32>> = Box::new(Rfc5905Selection::default());
        assert_eq!(alg.name(), "rfc5905");
        assert!(alg.select(&[cand(1, 0.0, 10.0, 1.0)], &ctx()).outcome.is_ok());
    }

    proptest! {
        #[test]
        fn minority_of_falsetickers_never_survives(
            good in proptest::collection::vec(-2.0f64..2.0, 3..8),
            bad in proptest::collection::vec(200.0f64..900.0, 0..3),
        ) {
            prop_assume!(bad.len() * 2 < good.len() + bad.len());
            let mut c = Vec::new();
            for (i, o) in good.iter().enumerate() { c.push(cand(i as u32, *o, 10.0, 0.5)); }
            for (i, o) in bad.iter().enumerate() { c.push(cand(100 + i as u32, *o, 10.0, 0.5)); }
            let s = run(&c);
            let out = s.outcome.clone().unwrap();
            prop_assert!(out.system_peer < 100);
            prop_assert!(s.survivors.iter().all(|id| *id < 100));
            prop_assert_eq!(sorted(s.falsetickers.clone()), (100..100 + bad.len() as u32).collect::<Vec<_>>());
            prop_assert!(secs(out.offset).abs() < 2.0 * MS + 1e-9);
            // Every input id is accounted for exactly once.
            prop_assert_eq!(s.truechimers.len() + s.falsetickers.len() + s.rejected.len(), c.len());
            prop_assert_eq!(s.survivors.len() + s.outliers.len(), s.truechimers.len());
        }

        #[test]
        fn combined_offset_lies_within_the_survivors(
            offs in proptest::collection::vec(-5.0f64..5.0, 1..10),
            dists in proptest::collection::vec(11.0f64..40.0, 10),
        ) {
            // Offsets within 10 ms of each other and every root distance above
            // 10 ms: each interval holds every offset, so there is a majority.
            let c: Vec<_> = offs.iter().enumerate().map(|(i, o)| cand(i as u32, *o, dists[i], 1.0)).collect();
            let s = run(&c);
            let out = s.outcome.as_ref();
            prop_assert!(out.is_ok(), "no majority although every interval holds every offset: {:?}", s);
            let out = out.unwrap();
            prop_assert!(s.falsetickers.is_empty());
            let surv: Vec<f64> = c.iter().filter(|e| s.survivors.contains(&e.id)).map(|e| secs(e.offset)).collect();
            prop_assert!(!surv.is_empty());
            let lo = surv.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = surv.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(secs(out.offset) >= lo - 1e-9 && secs(out.offset) <= hi + 1e-9);
            prop_assert!(out.jitter >= out.selection_jitter && out.jitter >= out.peer_jitter);
            prop_assert!(s.survivors.contains(&out.system_peer));
        }
    }
}
