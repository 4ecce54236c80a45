//! Reference clocks in the daemon: where their input comes from, and the
//! per-clock state that turns it into samples for the system process.
//!
//! A [`RefclockProvider`] yields timestamped input: serial bytes with the raw
//! clock reading taken when they were read ([`RefclockInput::Serial`], a
//! user-space timestamp), and PPS edges with the raw clock reading of the edge
//! ([`RefclockInput::Pulse`]). Raw readings are what the network providers
//! give too (`CLOCK_REALTIME` on Linux, the host clock model in the
//! simulator); the loop turns them into its clock's time with
//! [`DaemonClock::local_time_of`](crate::clock::DaemonClock::local_time_of).
//! A [`Refclocks`] opens one provider per configured `[[refclock]]`:
//! [`linux::LinuxRefclocks`] for `ntplab serve`, the simulator its models.
//!
//! A [`RefclockDriver`] holds the sans-IO core's state for one clock:
//! serial bytes → [`NmeaReader`] → [`parse_sentence`] → the second each
//! cycle's first RMC with a valid fix names (a label; ZDA and GGA carry no
//! validity of their own and are not used, and a week-number rollover is
//! undone against [`CENTURY_PIVOT`]); pulses → the
//! [`PpsProcessor`] (which pairs them with labels and median-filters them) →
//! [`RefclockSample`]s, which the loop hands to the system as measurements of
//! a stratum-0 source ([`measurement`]).

pub mod kpps;
pub mod linux;
pub mod sock;

use crate::config::{RefclockKind, RefclockSpec};
use ntplab_proto::mono::Instant;
use ntplab_proto::refclock::measurement::{measurement, RefclockParams};
use ntplab_proto::refclock::nmea::{parse_sentence, wnro_correct, NmeaReader};
use ntplab_proto::refclock::pps::{PpsEvent, PpsProcessor, RefclockSample, Refusal};
use ntplab_proto::source::Measurement;
use ntplab_proto::time::NtpTime;
use std::io;

/// One piece of reference-clock input, with raw clock readings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefclockInput {
    /// Bytes read from the serial port, and the raw clock when the read returned.
    Serial {
        /// The bytes, as read (any chunking).
        bytes: Vec<u8>,
        /// Raw clock reading right after the read.
        rx_time_raw: NtpTime,
    },
    /// A PPS edge.
    Pulse {
        /// Raw clock reading at the edge.
        edge_time_raw: NtpTime,
    },
}

/// A source of reference-clock input.
#[allow(async_fn_in_trait)]
pub trait RefclockProvider {
    /// Waits for the next input. An error is logged and the loop calls
    /// again after a pause (a device may come back).
    async fn next(&mut self) -> io::Result<RefclockInput>;
}

/// Opens reference-clock providers.
#[allow(async_fn_in_trait)]
pub trait Refclocks {
    /// The provider type.
    type Provider: RefclockProvider + 'static;
    /// Opens the `index`th configured reference clock.
    async fn open(&self, index: usize, spec: &RefclockSpec) -> io::Result<Self::Provider>;
}

/// For daemons without reference clocks: opening one fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefclocks;

/// The provider of [`NoRefclocks`]; never yields.
#[derive(Debug)]
pub struct NoProvider;

impl RefclockProvider for NoProvider {
    async fn next(&mut self) -> io::Result<RefclockInput> {
        std::future::pending().await
    }
}

impl Refclocks for NoRefclocks {
    type Provider = NoProvider;
    async fn open(&self, index: usize, spec: &RefclockSpec) -> io::Result<NoProvider> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("refclock #{} ({}): no reference clocks on this platform", index + 1, spec.kind.name()),
        ))
    }
}

/// NMEA two-digit years resolve within 50 years of this, and dates more than
/// ten years before it are taken for a GPS week-number rollover.
pub const CENTURY_PIVOT: &str = "2025-01-01T00:00:00Z";

/// Counters of one reference clock, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefclockCounters {
    /// Sentences that parsed.
    pub sentences: u64,
    /// Lines that did not (garbage, bad checksums, overlong lines).
    pub bad_lines: u64,
    /// Time sentences that said the fix is not valid.
    pub invalid_fixes: u64,
    /// Seconds labelled (first valid time sentence of each second).
    pub labels: u64,
    /// Pulses taken.
    pub pulses: u64,
    /// Pulses or labels the PPS processor refused.
    pub refused: u64,
    /// Filtered samples produced.
    pub samples: u64,
    /// Dummy samples fed to the system because the clock fell silent.
    pub stale: u64,
}

/// One reference clock's processing state; see the [module docs](self).
#[derive(Debug)]
pub struct RefclockDriver {
    kind: RefclockKind,
    params: RefclockParams,
    reader: NmeaReader,
    pps: PpsProcessor,
    pivot: NtpTime,
    last_label: Option<NtpTime>,
    /// Monotonic time of the last sample, or of the start.
    last_sample: Instant,
    last_dummy: Option<Instant>,
    /// What happened so far.
    pub counters: RefclockCounters,
}

impl RefclockDriver {
    /// The driver of `spec`, started at monotonic time `now`.
    pub fn new(spec: &RefclockSpec, precision_log2: i8, now: Instant) -> Self {
        RefclockDriver {
            kind: spec.kind,
            params: RefclockParams {
                reference_id: spec.reference_id,
                delay: spec.delay,
                precision_log2,
                poll_log2: spec.poll_log2(),
            },
            reader: NmeaReader::new(),
            pps: PpsProcessor::new(spec.pps_config()),
            pivot: NtpTime::parse_rfc3339(CENTURY_PIVOT).unwrap_or(NtpTime::UNIX_EPOCH),
            last_label: None,
            last_sample: now,
            last_dummy: None,
            counters: RefclockCounters::default(),
        }
    }

    /// The fixed properties its measurements carry.
    pub fn params(&self) -> &RefclockParams {
        &self.params
    }

    /// Handles one input whose raw timestamp `local_of` turns into local
    /// time; returns the filtered samples it completed (usually none).
    pub fn handle(&mut self, input: RefclockInput, local_of: impl Fn(NtpTime) -> NtpTime) -> Vec<RefclockSample> {
        match input {
            RefclockInput::Serial { bytes, rx_time_raw } => {
                if self.kind.uses_serial() {
                    let received = local_of(rx_time_raw);
                    for line in self.reader.push(&bytes) {
                        match line {
                            Ok(line) => self.handle_line(&line, received),
                            Err(_) => self.counters.bad_lines += 1,
                        }
                    }
                }
            }
            RefclockInput::Pulse { edge_time_raw } => {
                if self.kind.uses_pps() {
                    self.counters.pulses += 1;
                    self.pps.handle_pulse(local_of(edge_time_raw));
                }
            }
        }
        self.drain()
    }

    fn handle_line(&mut self, line: &[u8], received: NtpTime) {
        let Ok(sentence) = parse_sentence(line) else {
            self.counters.bad_lines += 1;
            return;
        };
        self.counters.sentences += 1;
        let Ok(fix) = sentence.fix(self.pivot) else { return };
        if !fix.valid {
            // Only RMC reports validity; a ZDA of the same cycle counts only
            // after a valid RMC named its second (below).
            if sentence.kind() == "RMC" {
                self.counters.invalid_fixes += 1;
                self.last_label = None;
            }
            return;
        }
        let second = wnro_correct(fix.time, self.pivot);
        if self.last_label.is_some_and(|last| second <= last) {
            return; // another sentence of the same cycle
        }
        self.last_label = Some(second);
        self.counters.labels += 1;
        if self.kind == RefclockKind::Gps {
            // No pulse: the sentence's arrival marks the second, `offset` later.
            self.pps.handle_pulse(received);
        }
        self.pps.handle_label(second, received);
    }

    fn drain(&mut self) -> Vec<RefclockSample> {
        let mut samples = Vec::new();
        while let Some(event) = self.pps.poll_event() {
            match event {
                PpsEvent::Sample(s) => samples.push(s),
                PpsEvent::Refused(Refusal { local_time, reason }) => {
                    self.counters.refused += 1;
                    tracing::trace!(at = %local_time.rfc3339(), ?reason, "refclock input refused");
                }
            }
        }
        samples
    }

    /// A sample as a measurement, at monotonic time `now` (marks the clock alive).
    pub fn measurement(&mut self, sample: &RefclockSample, now: Instant) -> Measurement {
        self.counters.samples += 1;
        self.last_sample = now;
        self.last_dummy = None;
        measurement(sample, &self.params, now)
    }

    /// Whether the clock has been silent for three of its sample intervals
    /// (and no dummy went to the system for one interval): then the system
    /// should age it out with a dummy sample (`System::handle_stale`), as for
    /// an NTP source silent for three polls.
    pub fn stale_due(&mut self, now: Instant) -> bool {
        let interval = (1u64 << self.params.poll_log2.clamp(0, 17)) * 1_000_000_000;
        let silent = now.as_nanos().saturating_sub(self.last_sample.as_nanos());
        let since_dummy = self.last_dummy.map_or(u64::MAX, |d| now.as_nanos().saturating_sub(d.as_nanos()));
        if silent >= 3 * interval && since_dummy >= interval {
            self.last_dummy = Some(now);
            self.counters.stale += 1;
            return true;
        }
        false
    }

    /// Forgets pulses, labels and the filter window (after a clock step).
    pub fn reset(&mut self) {
        self.pps.reset();
        self.last_label = None;
    }
}

#[cfg(test)]
mod tests;
