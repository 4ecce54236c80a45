//! ntplab-proto: the sans-IO core of ntplab.
//!
//! This crate is deterministic: it does no networking, reads no clock and uses
//! no global source of randomness. Time, timestamps and random numbers are
//! arguments; results are returned values. The daemon and the simulator drive
//! it with real or simulated inputs, the same way.
//!
//! What it holds:
//! - [`time`]: wire timestamps, era-resolved instants and durations;
//! - [`mono`]: the monotonic [`mono::Instant`] the driver passes in for timers;
//! - [`wire`]: every wire format, each as a checked packet view plus a
//!   validated representation that can be emitted (NTPv4 header, reference IDs
//!   and kiss codes, extension fields, NTS extension fields, NTS-KE records,
//!   NTPv5);
//! - [`source`]: the per-source client association (poll process, packet
//!   checks, kiss-o'-death reactions, offset/delay measurement).
//!
//! What it does not do: open sockets, spawn tasks, read `SystemTime`/`Instant`,
//! or call `thread_rng`. Parsers never panic on any input; see [`wire`] for the
//! contract.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod mono;
pub mod source;
pub mod time;
pub mod wire;
