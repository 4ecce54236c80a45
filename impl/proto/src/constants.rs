//! RFC 5905 parameters, with one pinned value wherever the RFC gives two.
//!
//! RFC 5905 states several parameters twice with different values: once in the
//! body (Figures 6 and 27, the normative text) and once in the non-normative
//! code skeleton of Appendix A. Each constant below names the figure or section
//! it follows and, where there is a conflict, why. The rule used throughout:
//! **the body text wins over the appendix** (RFC 5905 §2 makes the algorithms
//! normative and calls the skeleton an example), unless the body is internally
//! inconsistent, in which case the comment says what was chosen.
//!
//! Pinned contradictions (see the requirement catalog header):
//!
//! | Name    | Body                       | Appendix            | Pinned |
//! |---------|----------------------------|---------------------|--------|
//! | MINPOLL | 4 (Fig. 6)                 | 6 (A.1.1)           | 4 as the protocol floor [`MINPOLL`]; 6 as the default configured minimum [`DEFAULT_MINPOLL`] (§7.3 "suggested default limits ... 6 and 10") |
//! | MINDISP | 0.005 s (Fig. 6)           | 0.01 s (A.1.1)      | 0.005 s |
//! | STEPT   | 0.125 s (§11.2.3, §11.3, Fig. 27) | 0.128 s (A.5.5.6) | 0.125 s |
//! | AVG     | 8 (Fig. 27)                | 4 (A.5.5.6)         | 8 |
//! | PLL/TC  | TC = 16 (Fig. 27)          | PLL = 65536 (A.5.5.6) | 16 |
//! | hysteresis step | +1 / −2 (§11.3 text) | +poll / −2·poll (A.5.5.6) | +1 / −2 by default, configurable |
//!
//! All times are in seconds and all frequencies in seconds per second
//! (1e-6 = 1 ppm) unless a name says otherwise.

/// Frequency tolerance PHI: 15 ppm, the rate at which dispersion grows
/// (Fig. 6 `TOLERANCE` and A.1.1 `PHI` agree).
pub const PHI: f64 = 15e-6;

/// Number of clock filter stages (§10 "8-stage shift register"; A.1.1 `NSTAGE`).
pub const NSTAGE: usize = 8;

/// Lowest poll exponent the protocol allows: 4 (16 s).
///
/// Fig. 6 says 4, A.1.1 says 6. Fig. 6 lists the parameters "needed for
/// interoperability", so 4 is the floor any configuration is clamped to; the
/// appendix's 6 is what the reference implementation uses by default and is
/// kept as [`DEFAULT_MINPOLL`].
pub const MINPOLL: i8 = 4;

/// Default configured minimum poll exponent: 6 (64 s). §7.3 (Poll field):
/// "Suggested default limits for minimum and maximum poll intervals are 6 and
/// 10"; also A.1.1's `MINPOLL`.
pub const DEFAULT_MINPOLL: i8 = 6;

/// Highest poll exponent the protocol allows: 17 (36.4 h). Fig. 6 and A.1.1 agree.
pub const MAXPOLL: i8 = 17;

/// Default configured maximum poll exponent: 10 (1024 s), §7.3 (Poll field).
pub const DEFAULT_MAXPOLL: i8 = 10;

/// Maximum dispersion: 16 s (Fig. 6, A.1.1). Also the dispersion and delay of
/// the dummy filter tuple (§10).
pub const MAXDISP: f64 = 16.0;

/// Minimum dispersion increment: 0.005 s.
///
/// Fig. 6 says 0.005 s, A.1.1 says 0.01 s ("% tunable"). Fig. 6 is the
/// normative global-parameter table, so 0.005 s is used. It bounds from below
/// the root-delay term of the root distance (A.5.5.2) and the root-dispersion
/// increment of a system update (§11.2.3).
pub const MINDISP: f64 = 0.005;

/// Distance threshold: 1 s (Fig. 6, A.1.1). A source whose root distance
/// exceeds `MAXDIST + PHI · 2^poll` is not selectable (A.5.5.3).
pub const MAXDIST: f64 = 1.0;

/// Maximum (unsynchronized) stratum: 16 (Fig. 6, A.1.1).
pub const MAXSTRAT: u8 = 16;

/// Minimum number of cluster survivors: 3 (Fig. 23, A.1.1 `NMIN`).
pub const NMIN: usize = 3;

/// Minimum number of truechimers needed to discipline the clock: 1 (Fig. 23
/// `CMIN`; A.1.1 calls it `NSANE`). §11.2.1: "for historic reasons the default
/// value for CMIN is one".
pub const CMIN: usize = 1;

/// Popcorn spike gate: 3 (A.5 `SGATE`). The suppressor exists only in the
/// appendix; see [`crate::filter`] for how it is used.
pub const SGATE: f64 = 3.0;

/// Step threshold: 0.125 s.
///
/// §11.2.3 ("STEPT (125 ms)"), §11.3 text ("STEPT (.125 s)") and Fig. 27 all
/// say 0.125 s; only the A.5.5.6 skeleton (and the reference implementation's
/// `CLOCK_MAX`) say 0.128 s. Three normative statements win over one example.
pub const STEPT: f64 = 0.125;

/// Stepout threshold WATCH: 900 s.
///
/// Fig. 27 ("WATCH 900 stepout thresh(s)"), Fig. 28 ("if < 900 s") and §11.3
/// ("only after the stepout threshold WATCH (900 s)") agree. Note the RFC's
/// wording: Fig. 28 compares "900 s" without saying from when; A.5.5.6 measures
/// it as `mu`, the time since the last *accepted* update (not since the first
/// outlier), and that is what [`crate::discipline`] does. §11.3's intro says
/// the state machine "resists error bursts lasting less than 15 minutes".
/// (Later reference ntpd versions lowered the default stepout to 300 s.)
pub const WATCH: f64 = 900.0;

/// Panic threshold: 1000 s (§11.2.3, §11.3, Fig. 27, A.5.5.6 agree).
pub const PANICT: f64 = 1000.0;

/// Poll-adjust hysteresis limit: 30 (Fig. 27, A.5.5.6 agree).
pub const LIMIT: i32 = 30;

/// Poll-adjust gate: 4 (Fig. 27, A.5.5.6 agree).
pub const PGATE: f64 = 4.0;

/// Time-constant scale TC (the PLL loop gain): 16.
///
/// Fig. 27 lists `TC 16 time constant scale`; A.5.5.6 defines `PLL 65536`,
/// which with its formulas gives a loop gain 2^24 times too small to track
/// anything (it looks like 2^16 written where log2 16 was meant). The
/// reference implementation's `CLOCK_PLL` is 16. The phase time constant is
/// `TC · min(2^poll, ALLAN)` (A.5.6.1) and the PLL frequency gain
/// `mu / (4 · TC · 2^poll)^2` (A.5.5.6).
pub const TC: f64 = 16.0;

/// Averaging constant AVG: 8.
///
/// Fig. 27 says 8, A.5.5.6 says 4. Fig. 27 is the body text; the reference
/// implementation contemporary with RFC 5905 also uses `CLOCK_AVG 8`. Used
/// for the exponential averages of clock jitter and wander and as the floor of
/// the FLL weight divisor.
pub const AVG: f64 = 8.0;

/// FLL weight constant: `MAXPOLL + 1` = 18 (A.5.5.6 `FLL`). The FLL frequency
/// increment is divided by `max(FLL − poll, AVG)`. Only the appendix defines it.
pub const FLL: f64 = MAXPOLL as f64 + 1.0;

/// Compromise Allan intercept: 1500 s (A.5.5.6 `ALLAN`; only the appendix
/// defines it). The FLL is active when `2^poll > ALLAN / 2`; the phase time
/// constant stops growing at `ALLAN`.
pub const ALLAN: f64 = 1500.0;

/// Frequency tolerance of the discipline: ±500 ppm (A.5.5.6 `MAXFREQ`).
pub const MAXFREQ: f64 = 500e-6;

/// `2^exponent` seconds for a log2 quantity such as a poll interval or a
/// precision (the appendix's `LOG2D`).
pub fn log2_to_seconds(exponent: i8) -> f64 {
    2f64.powi(i32::from(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_values() {
        assert_eq!(MINPOLL, 4);
        assert_eq!(DEFAULT_MINPOLL, 6);
        assert_eq!(MINDISP, 0.005);
        assert_eq!(STEPT, 0.125);
        assert_eq!(AVG, 8.0);
        assert_eq!(FLL, 18.0);
        assert_ne!(STEPT, 0.128, "the A.5.5.6 value must not be used");
    }

    #[test]
    fn log2_seconds() {
        assert_eq!(log2_to_seconds(6), 64.0);
        assert_eq!(log2_to_seconds(-20), 1.0 / 1_048_576.0);
        assert_eq!(log2_to_seconds(0), 1.0);
    }
}
