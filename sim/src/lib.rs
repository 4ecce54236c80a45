//! ntplab-sim: a deterministic, event-driven network and clock simulator in
//! which the real ntplab daemon runs unchanged.
//!
//! One seed drives a run; every random stream derives from it. Virtual time
//! jumps straight to the next timer or packet delivery.

pub mod gps;
