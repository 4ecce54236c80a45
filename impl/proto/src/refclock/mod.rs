//! Reference clocks: GPS receivers (NMEA 0183) and pulse-per-second signals.
//!
//! Sans-IO like the rest of the crate: the daemon-side driver reads the serial
//! port and the PPS device, stamps what it reads with its local clock, and
//! hands bytes and timestamps in; this module hands back decoded sentences,
//! fixes and filtered [`pps::RefclockSample`]s.
//!
//! - [`nmea`]: a streaming line splitter ([`nmea::NmeaReader`]) for bytes as
//!   they come from a serial port, a sentence parser for the time-relevant
//!   sentences (RMC, GGA, ZDA, GLL, GNS), two-digit-year and GPS week-number
//!   rollover handling.
//! - [`pps`]: pairing PPS edges with the NMEA second they mark, a
//!   chrony-style median filter, and the offset samples that come out.
//! - [`measurement`]: a filtered sample as the [`crate::source::Measurement`]
//!   of a stratum-0 source, for [`crate::system::System`].

pub mod measurement;
pub mod nmea;
pub mod pps;
