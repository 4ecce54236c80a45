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
//! - [`filter`], [`select`], [`discipline`]: the RFC 5905 clock filter (§10),
//!   selection/cluster/combine (§11.2) and clock discipline (§11.3), with the
//!   RFC's contradictory parameters pinned in [`constants`];
//! - [`clock`]: the [`clock::NtpClock`] trait through which a caller applies
//!   the discipline's actions to a real or simulated clock, and
//!   [`clock::SteeredClock`], a kernel-like disciplined clock modelled over a
//!   raw time source (observe-only daemon, simulated hosts).
//! - [`server`]: the NTPv4 server responder (access control, rate limiting
//!   with kiss-o'-death, interleaved mode, leap smearing), driven by
//!   `Server::handle` with time and keys as arguments.
//! - [`nts`]: Network Time Security (RFC 8915): NTS-KE state machines, AEADs,
//!   server cookies with key rotation, NTS-protected NTPv4 client and server.
//! - [`source`]: the per-source client association (poll process, packet
//!   checks, kiss-o'-death reactions, offset/delay measurement).
//! - [`refclock`]: reference clocks: the NMEA 0183 stream reader and sentence
//!   parser of a GPS receiver, and PPS sample processing (pairing pulses with
//!   NMEA seconds, median filter).
//!
//! What it does not do: open sockets, spawn tasks, read `SystemTime`/`Instant`,
//! or call `thread_rng`. Parsers never panic on any input; see [`wire`] for the
//! contract.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod constants;
pub mod discipline;
pub mod filter;
pub mod mono;
pub mod nts;
pub mod refclock;
pub mod select;
pub mod server;
pub mod source;
pub mod system;
pub mod time;
pub mod wire;
