//! ntplab-daemon: the one async loop that drives the sans-IO core.
//!
//! The loop owns sockets, timers and the clock; it feeds packets, timestamps
//! and timeouts to the core and carries out the actions the core returns. It is
//! generic over a network provider ([`net::Network`]) and a clock provider, so
//! the same code runs on real sockets and the system clock (`ntplab serve`) and
//! inside the simulator.
//!
//! What it does not do: protocol decisions (the core makes them), or touch the
//! system clock unless the operator asked for it explicitly.

#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod daemon;
pub mod drift;
pub mod fast;
pub mod net;
pub mod nts;
pub mod precision;
pub mod sysclock;
pub mod refclock;
