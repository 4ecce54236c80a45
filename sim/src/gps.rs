//! Reference-clock models: a GPS receiver's NMEA serial output and its PPS
//! pulses, in true time.
//!
//! The models know only true time. Their outputs are events stamped with the
//! true time at which they happen: serial chunks ([`SerialChunk`]) as the
//! receiver's UART finishes sending them, and PPS edges. The harness turns
//! these into the receiving host's local timestamps (through its clock model)
//! and hands them to the daemon's refclock driver, which feeds
//! `ntplab_proto::refclock`.
//!
//! - [`GpsReceiver`]: each second, RMC + GGA (+ ZDA) for that second, with
//!   correct checksums, sent from a latency after the second at a baud rate,
//!   in UART-sized chunks; faults: fix loss (RMC status `V`, GGA quality 0)
//!   and a week-number-rollover fault (dates 1024 weeks in the past) over
//!   windows of true time.
//! - [`Replay`]: a real capture played back one line group per second.
//! - [`PpsModel`]: one edge per true second, with a fixed delay, Gaussian
//!   jitter, dropouts and outliers.
//!
//! Randomness comes from the caller's seeded generator (`rand_core::RngCore`);
//! each call draws a fixed number of values, so streams stay aligned whatever
//! the outcomes.

#![warn(missing_docs)]

use ntplab_proto::refclock::nmea::{frame, parse_sentence, NmeaReader, SentenceData, WNRO_PERIOD};
use ntplab_proto::time::{NtpDuration, NtpTime};
use rand_core::RngCore;

/// A piece of serial data: the bytes, and the true time the last of them left
/// the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialChunk {
    /// When the chunk's last byte has been sent (true time).
    pub true_time: NtpTime,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// How a receiver sends its sentences each second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialTiming {
    /// Earliest start of transmission after the second the sentences name.
    pub latency_min: NtpDuration,
    /// Latest start; the start is drawn uniformly between the two.
    pub latency_max: NtpDuration,
    /// Line speed; each byte takes 10 bit times (8N1).
    pub baud_rate_bps: u32,
    /// Bytes per chunk delivered to the host (UART FIFO trigger level), at least 1.
    pub chunk_len_max: usize,
}

impl Default for SerialTiming {
    fn default() -> Self {
        SerialTiming {
            latency_min: NtpDuration::from_nanos(100_000_000),
            latency_max: NtpDuration::from_nanos(300_000_000),
            baud_rate_bps: 9600,
            chunk_len_max: 16,
        }
    }
}

impl SerialTiming {
    /// Time to send `len_bytes` bytes.
    pub fn transmission_time(&self, len_bytes: usize) -> NtpDuration {
        let bits = (len_bytes as i64).saturating_mul(10);
        NtpDuration::from_nanos(bits.saturating_mul(1_000_000_000) / i64::from(self.baud_rate_bps.max(1)))
    }

    /// Splits `bytes`, whose transmission starts at a latency after `second`,
    /// into chunks stamped with the time their last byte is sent.
    pub fn transmit(&self, second: NtpTime, bytes: &[u8], rng: &mut impl RngCore) -> Vec<SerialChunk> {
        let spread = (self.latency_max - self.latency_min).max(NtpDuration::ZERO);
        let latency = self.latency_min + NtpDuration::from_seconds_f64(spread.to_seconds_f64() * uniform(rng));
        let start = second + latency;
        let mut sent = 0;
        bytes
            .chunks(self.chunk_len_max.max(1))
            .map(|chunk| {
                sent += chunk.len();
                SerialChunk { true_time: start + self.transmission_time(sent), bytes: chunk.to_vec() }
            })
            .collect()
    }
}

/// A fault of the GPS receiver model, active over `[from, until)` in true time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpsFault {
    /// No fix: RMC status `V` and mode `N`, GGA quality 0 with no satellites.
    /// The time fields are still sent, as real receivers do from their RTC.
    FixLoss {
        /// Start (true time).
        from: NtpTime,
        /// End, exclusive.
        until: NtpTime,
    },
    /// Week-number rollover: every date is 1024 weeks (19.6 years) in the past.
    Wnro {
        /// Start (true time).
        from: NtpTime,
        /// End, exclusive.
        until: NtpTime,
    },
}

impl GpsFault {
    fn active(&self, t: NtpTime) -> bool {
        let (GpsFault::FixLoss { from, until } | GpsFault::Wnro { from, until }) = *self;
        from <= t && t < until
    }
}

/// Settings of a [`GpsReceiver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpsConfig {
    /// Talker ID of the sentences, e.g. `*b"GP"` or `*b"GN"`.
    pub talker: [u8; 2],
    /// Send a ZDA after RMC and GGA.
    pub zda: bool,
    /// Satellites reported in GGA while the fix is good.
    pub satellites: u8,
    /// Serial timing.
    pub timing: SerialTiming,
    /// Faults over windows of true time.
    pub faults: Vec<GpsFault>,
}

impl Default for GpsConfig {
    fn default() -> Self {
        GpsConfig { talker: *b"GP", zda: true, satellites: 9, timing: SerialTiming::default(), faults: Vec::new() }
    }
}

/// A GPS receiver's NMEA output; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct GpsReceiver {
    config: GpsConfig,
}

impl GpsReceiver {
    /// A receiver with these settings.
    pub fn new(config: GpsConfig) -> Self {
        GpsReceiver { config }
    }

    /// The settings.
    pub fn config(&self) -> &GpsConfig {
        &self.config
    }

    /// The framed sentences (CR LF included) the receiver sends for the true
    /// second `second` (its fraction is ignored).
    pub fn sentences(&self, second: NtpTime) -> Vec<String> {
        let second = NtpTime::new(second.secs_since_1900(), 0);
        let fix_lost = self.config.faults.iter().any(|f| matches!(f, GpsFault::FixLoss { .. }) && f.active(second));
        let wnro = self.config.faults.iter().any(|f| matches!(f, GpsFault::Wnro { .. }) && f.active(second));
        let shown = if wnro { second + (-WNRO_PERIOD) } else { second };
        let c = shown.to_civil();
        let talker = String::from_utf8_lossy(&self.config.talker).into_owned();
        let hms = format!("{:02}{:02}{:02}.00", c.hour, c.minute, c.second);
        let (status, mode, quality, satellites) =
            if fix_lost { ("V", "N", 0, 0) } else { ("A", "A", 1, self.config.satellites) };
        let mut out = vec![
            frame(&format!(
                "{talker}RMC,{hms},{status},4807.0380,N,01131.0000,E,0.0,0.0,{:02}{:02}{:02},,,{mode}",
                c.day,
                c.month,
                c.year.rem_euclid(100)
            )),
            frame(&format!(
                "{talker}GGA,{hms},4807.0380,N,01131.0000,E,{quality},{satellites:02},0.9,545.4,M,46.9,M,,"
            )),
        ];
        if self.config.zda {
            out.push(frame(&format!("{talker}ZDA,{hms},{:02},{:02},{:04},00,00", c.day, c.month, c.year)));
        }
        out
    }

    /// The serial output for the true second `second`: its sentences, sent
    /// from a latency after the second, in chunks.
    pub fn emit_second(&self, second: NtpTime, rng: &mut impl RngCore) -> Vec<SerialChunk> {
        let bytes: Vec<u8> = self.sentences(second).concat().into_bytes();
        self.config.timing.transmit(NtpTime::new(second.secs_since_1900(), 0), &bytes, rng)
    }
}

/// A real capture played back with its own content, one line group per second.
///
/// Groups start at each occurrence of the first time-bearing sentence type
/// (RMC, GGA, ZDA, GLL or GNS, talker included) the capture holds, which
/// receivers send first in each cycle; lines before the first such sentence
/// (binary preamble) go with the first group. Comment lines (`#` at the start
/// of a line) are dropped. The bytes are replayed exactly, binary data and
/// line ends included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    groups: Vec<Vec<u8>>,
}

impl Replay {
    /// Splits a capture into groups.
    pub fn from_capture(log: &[u8]) -> Replay {
        let mut groups: Vec<Vec<u8>> = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        let mut leader: Option<String> = None;
        for line in log.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'#') {
                continue;
            }
            let mut reader = NmeaReader::new();
            let address = reader.push(line).into_iter().chain(reader.finish().map(Err)).flatten().find_map(|s| {
                let s = parse_sentence(&s).ok()?;
                matches!(
                    s.data,
                    SentenceData::Rmc(_) | SentenceData::Gga(_) | SentenceData::Zda(_) | SentenceData::Gll(_) | SentenceData::Gns(_)
                )
                .then(|| format!("{}{}", s.talker, s.kind()))
            });
            if let Some(address) = address {
                match &leader {
                    None => leader = Some(address),
                    Some(l) if *l == address && !current.is_empty() => groups.push(core::mem::take(&mut current)),
                    Some(_) => {}
                }
            }
            current.extend_from_slice(line);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        Replay { groups }
    }

    /// Number of groups (seconds of playback).
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is nothing to play.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The bytes of group `index`.
    pub fn group(&self, index: usize) -> Option<&[u8]> {
        self.groups.get(index).map(Vec::as_slice)
    }

    /// Group `index` sent in the true second `second` with `timing`; `None`
    /// past the end of the capture.
    pub fn emit_second(
        &self,
        index: usize,
        second: NtpTime,
        timing: &SerialTiming,
        rng: &mut impl RngCore,
    ) -> Option<Vec<SerialChunk>> {
        Some(timing.transmit(NtpTime::new(second.secs_since_1900(), 0), self.group(index)?, rng))
    }
}

/// Settings of a [`PpsModel`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PpsModelConfig {
    /// Fixed delay of each edge after the true second (cable, receiver output stage).
    pub delay: NtpDuration,
    /// Standard deviation of the Gaussian jitter added to each edge.
    pub jitter_sd: NtpDuration,
    /// Probability that a pulse is missing, 0–1.
    pub dropout_probability: f64,
    /// Probability that a pulse is an outlier, 0–1.
    pub outlier_probability: f64,
    /// An outlier is displaced uniformly within ± this.
    pub outlier_offset_max: NtpDuration,
}

impl Default for PpsModelConfig {
    fn default() -> Self {
        PpsModelConfig {
            delay: NtpDuration::from_nanos(50),
            jitter_sd: NtpDuration::from_nanos(20),
            dropout_probability: 0.0,
            outlier_probability: 0.0,
            outlier_offset_max: NtpDuration::from_nanos(1_000_000),
        }
    }
}

/// A receiver's PPS output; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PpsModel {
    config: PpsModelConfig,
}

impl PpsModel {
    /// A model with these settings.
    pub fn new(config: PpsModelConfig) -> Self {
        PpsModel { config }
    }

    /// The settings.
    pub fn config(&self) -> &PpsModelConfig {
        &self.config
    }

    /// The true time of the edge marking the true second `second` (fraction
    /// ignored), or `None` for a dropout. Draws five values from `rng` always.
    pub fn pulse(&self, second: NtpTime, rng: &mut impl RngCore) -> Option<NtpTime> {
        let dropout = uniform(rng) < self.config.dropout_probability;
        let outlier = uniform(rng) < self.config.outlier_probability;
        let outlier_offset = (2.0 * uniform(rng) - 1.0) * self.config.outlier_offset_max.to_seconds_f64();
        let jitter = gaussian(rng) * self.config.jitter_sd.to_seconds_f64();
        if dropout {
            return None;
        }
        let displacement = jitter + if outlier { outlier_offset } else { 0.0 };
        Some(NtpTime::new(second.secs_since_1900(), 0) + self.config.delay + NtpDuration::from_seconds_f64(displacement))
    }
}

/// Uniform in `[0, 1)` from 53 random bits.
fn uniform(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Standard normal (Box–Muller, cosine branch), two draws.
fn gaussian(rng: &mut impl RngCore) -> f64 {
    let u1 = 1.0 - uniform(rng); // (0, 1]: the logarithm stays finite
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests;
