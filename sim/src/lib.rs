//! ntplab-sim: a deterministic, event-driven network and clock simulator in
//! which the real ntplab daemon runs unchanged.
//!
//! One seed drives a run; every random stream derives from it. Virtual time
//! jumps straight to the next timer or packet delivery.
//!
//! # Modules
//!
//! - [`rng`]: portable seeded PRNG (xoshiro256++) with labelled streams and samplers.
//! - [`oscillator`]: free-running host clock: offset, drift, random-walk wander, sine, steps, reading noise.
//! - [`link`]: one-way paths and bidirectional links: delay, jitter, loss, duplication, reordering, partitions.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod link;
pub mod oscillator;
pub mod rng;
