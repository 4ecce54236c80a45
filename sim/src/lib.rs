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
//! - [`host_clock`]: a host's clock: oscillator, reading noise and the kernel-like steering the daemon applies.
//! - [`net`]: the daemon's network provider on turmoil-net, with exact timestamps.
//! - [`harness`]: the event-driven run loop: virtual time, deliveries, scenario events, the real daemons.
//! - [`stats`]: per-host figures of a run.
//! - [`run`]: one scenario from file to verdicts: setup, trace, figures, expectations.
//! - [`scenario`]: the scenario file format (TOML) with positioned errors and hints.
//! - [`trace`]: trace writers: samples.csv, events.jsonl, packets.jsonl, packets.pcap.
//! - [`attacker`]: an on-path attacker on a link that tampers with NTS packets and forges replies and kisses.
//! - [`peers`]: scripted peers (falsetickers, kiss-o'-death senders, replayers, malformed replies).
//! - [`gps`]: GPS receiver (NMEA over a serial line, with faults and capture replay) and PPS models.
//! - [`refclock`]: those models as a host daemon's reference clock, at their true times.
//! - [`scale`]: the benchmarks' workload (N clients, one server) and process memory figures.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod attacker;
pub mod gps;
pub mod harness;
pub mod host_clock;
pub mod link;
pub mod net;
pub mod nts;
pub mod oscillator;
pub mod peers;
pub mod refclock;
pub mod rng;
pub mod run;
pub mod scale;
pub mod scenario;
pub mod stats;
pub mod trace;
