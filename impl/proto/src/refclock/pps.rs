//! PPS sample processing, as chrony's PPS refclock does it.
//!
//! A GPS receiver's pulse-per-second output marks the start of each UTC second
//! with an edge accurate to tens of nanoseconds; the driver stamps each edge
//! with the local clock (kernel PPS API or a simulated device) and calls
//! [`PpsProcessor::handle_pulse`]. The pulse does not say *which* second it
//! marks. That comes from the receiver's NMEA sentence for the same second,
//! which arrives after the pulse (typically 100–500 ms later, within a
//! second): the driver passes the second it names and the local time it
//! finished receiving it to [`PpsProcessor::handle_label`].
//!
//! # Pairing ([`PpsMode::Labelled`])
//!
//! A label received at local time `R` belongs to the pulse whose edge `E`
//! came at most [`PpsConfig::label_delay_max`] before it (`0 <= R - E <
//! label_delay_max`); no such pulse, or two, and the label is refused. The
//! paired sample's offset is `second + pulse_delay - E`. Once samples exist,
//! every new offset must round to the same whole second as the reference (the
//! median of the current window, else the last output): that is, the pulse's
//! local time, corrected by the reference offset and rounded to the nearest
//! second, must be the labelled second (|new − reference| < 0.5 s). A label
//! off by one second (a receiver that labels the *next* pulse, a sentence
//! from the previous cycle) is refused with [`RefusalReason::SecondMismatch`].
//! After [`PpsConfig::mismatch_reset_count`] refusals in a row the reference
//! is forgotten and the new second accepted, which is how a stepped clock is
//! re-learned; a driver that steps the clock itself should call
//! [`PpsProcessor::reset`].
//!
//! # Without labels ([`PpsMode::Locked`])
//!
//! A pulse alone only gives the offset modulo one second: a pulse without a
//! labelled second is ambiguous unless the local clock is already within
//! 0.5 s of UTC. In locked mode (chrony's `lock` to another source, or a clock
//! already disciplined by NTP) the processor assumes so: each edge marks the
//! whole second nearest to its local time, and the offset lies in
//! (−0.5 s, 0.5 s]. Labels are not needed and are ignored. In labelled mode a
//! pulse whose label never comes (an NMEA gap) is refused as
//! [`RefusalReason::Unlabelled`].
//!
//! # Filter
//!
//! Accepted offsets collect in a window of [`PpsConfig::filter_len`] samples
//! (chrony's `filter`, default 16). When it is full, the median and the median
//! absolute deviation (MAD) are computed; samples further than
//! `max(outlier_threshold_min, 3 × 1.4826 × MAD)` from the median (three
//! standard deviations for Gaussian jitter) are rejected as outliers, and the
//! rest give one [`RefclockSample`]: mean offset, mean local time, and a
//! dispersion of their standard deviation (at least the configured
//! precision). The window is then emptied. Missing pulses only make it fill
//! later; a gap longer than [`PpsConfig::gap_max`] between accepted samples
//! empties it, as its samples are stale.
//!
//! Call order: any number of `handle_*` calls, each followed by draining
//! [`PpsProcessor::poll_event`]. Local times must not go backwards; a pulse
//! that does is refused.

use std::collections::VecDeque;

use crate::time::{NtpDuration, NtpTime};

const HALF_SECOND: NtpDuration = NtpDuration::from_bits(1 << 31);
const EVENTS_MAX: usize = 256;
const PENDING_MAX: usize = 4;

/// Where the integer second of a pulse comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpsMode {
    /// From the NMEA label paired with the pulse.
    Labelled,
    /// From the local clock, assumed within 0.5 s of UTC.
    Locked,
}

/// Settings of a [`PpsProcessor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PpsConfig {
    /// Where the integer second comes from.
    pub mode: PpsMode,
    /// Samples per filter window (chrony `filter`), at least 1; 1 passes every
    /// sample through.
    pub filter_len: usize,
    /// Fixed delay of the edge after the true second (cable, receiver
    /// output): compensated (chrony `offset`, with the opposite sign).
    pub pulse_delay: NtpDuration,
    /// Longest time from a pulse to the end of its label's reception; at most 1 s.
    pub label_delay_max: NtpDuration,
    /// Longest gap between accepted samples before the window is emptied.
    pub gap_max: NtpDuration,
    /// Samples within this distance of the median are never outliers.
    pub outlier_threshold_min: NtpDuration,
    /// Floor of the output dispersion (timestamping precision).
    pub precision: NtpDuration,
    /// Second-mismatch refusals in a row after which the reference is forgotten.
    pub mismatch_reset_count: u32,
}

impl Default for PpsConfig {
    fn default() -> Self {
        PpsConfig {
            mode: PpsMode::Labelled,
            filter_len: 16,
            pulse_delay: NtpDuration::ZERO,
            label_delay_max: NtpDuration::from_seconds(1),
            gap_max: NtpDuration::from_seconds(8),
            outlier_threshold_min: NtpDuration::from_nanos(10_000),
            precision: NtpDuration::from_nanos(1_000),
            mismatch_reset_count: 3,
        }
    }
}

/// One filtered reference-clock measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefclockSample {
    /// True time minus local time (positive: the local clock is behind).
    pub offset: NtpDuration,
    /// The local time the offset applies at (mean of the samples' edge times).
    pub time: NtpTime,
    /// Estimated error: the kept samples' standard deviation, at least the precision.
    pub dispersion: NtpDuration,
    /// Samples averaged.
    pub samples_used: usize,
    /// Samples rejected as outliers.
    pub outliers_rejected: usize,
}

/// Why a pulse or label gave no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The pulse's local time is not after the previous pulse's.
    NotMonotonic,
    /// Labelled mode: no label came for this pulse within `label_delay_max`.
    Unlabelled,
    /// No pulse came within `label_delay_max` before the label.
    NoPulseForLabel,
    /// More than one pulse came within `label_delay_max` before the label.
    AmbiguousPulse,
    /// The label is not a whole second.
    LabelNotWholeSecond,
    /// The paired offset does not round to the same second as the reference.
    SecondMismatch {
        /// The offset the pairing would give.
        offset: NtpDuration,
        /// The reference offset it contradicts.
        reference: NtpDuration,
    },
}

/// A refused pulse or label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The local time of the pulse, or of the label's reception.
    pub local_time: NtpTime,
    /// Why.
    pub reason: RefusalReason,
}

/// Output of a [`PpsProcessor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpsEvent {
    /// A filtered sample for the clock discipline.
    Sample(RefclockSample),
    /// A pulse or label that gave nothing (for metrics and traces).
    Refused(Refusal),
}

/// Pairs PPS edges with NMEA seconds and filters the offsets; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct PpsProcessor {
    config: PpsConfig,
    /// Edges waiting for a label (labelled mode), oldest first.
    pending: VecDeque<NtpTime>,
    last_edge: Option<NtpTime>,
    /// Accepted (edge local time, offset) pairs.
    window: Vec<(NtpTime, NtpDuration)>,
    last_output: Option<NtpDuration>,
    mismatches: u32,
    events: VecDeque<PpsEvent>,
    events_dropped: u64,
}

impl PpsProcessor {
    /// A processor with these settings (`filter_len` raised to 1 and
    /// `label_delay_max` capped to 1 s if needed).
    pub fn new(mut config: PpsConfig) -> Self {
        config.filter_len = config.filter_len.clamp(1, 1024);
        config.label_delay_max = config.label_delay_max.min(NtpDuration::from_seconds(1));
        PpsProcessor {
            config,
            pending: VecDeque::new(),
            last_edge: None,
            window: Vec::with_capacity(config.filter_len),
            last_output: None,
            mismatches: 0,
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &PpsConfig {
        &self.config
    }

    /// Forgets pending pulses, the window and the reference offset (call after
    /// stepping the local clock).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.last_edge = None;
        self.window.clear();
        self.last_output = None;
        self.mismatches = 0;
    }

    /// Events dropped because the caller did not drain [`poll_event`](Self::poll_event)
    /// (the queue keeps the newest 256).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// The next output, oldest first.
    pub fn poll_event(&mut self) -> Option<PpsEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: PpsEvent) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn refuse(&mut self, local_time: NtpTime, reason: RefusalReason) {
        self.emit(PpsEvent::Refused(Refusal { local_time, reason }));
    }

    /// A PPS edge, stamped with the local clock.
    pub fn handle_pulse(&mut self, edge_local: NtpTime) {
        if self.last_edge.is_some_and(|last| edge_local <= last) {
            self.refuse(edge_local, RefusalReason::NotMonotonic);
            return;
        }
        self.last_edge = Some(edge_local);
        match self.config.mode {
            PpsMode::Locked => {
                let true_edge = edge_local + (-self.config.pulse_delay);
                let second = nearest_second(true_edge);
                let offset = second.duration_since(true_edge);
                debug_assert!(offset.abs() <= HALF_SECOND);
                self.accept(edge_local, offset);
            }
            PpsMode::Labelled => {
                self.expire_pending(edge_local);
                if self.pending.len() >= PENDING_MAX {
                    if let Some(old) = self.pending.pop_front() {
                        self.refuse(old, RefusalReason::Unlabelled);
                    }
                }
                self.pending.push_back(edge_local);
            }
        }
    }

    /// Drops pending pulses too old to be labelled by anything arriving at `now_local`.
    fn expire_pending(&mut self, now_local: NtpTime) {
        while let Some(&oldest) = self.pending.front() {
            if now_local.duration_since(oldest) < self.config.label_delay_max {
                break;
            }
            self.pending.pop_front();
            self.refuse(oldest, RefusalReason::Unlabelled);
        }
    }

    /// The UTC second an NMEA sentence names (the second its pulse marks), and
    /// the local time the sentence was completely received. Ignored in locked mode.
    pub fn handle_label(&mut self, second: NtpTime, received_local: NtpTime) {
        if self.config.mode == PpsMode::Locked {
            return;
        }
        if second.fraction() != 0 {
            self.refuse(received_local, RefusalReason::LabelNotWholeSecond);
            return;
        }
        self.expire_pending(received_local);
        let in_window = |e: &NtpTime| *e <= received_local;
        let count = self.pending.iter().filter(|e| in_window(e)).count();
        if count == 0 {
            self.refuse(received_local, RefusalReason::NoPulseForLabel);
            return;
        }
        if count > 1 {
            let ambiguous: Vec<NtpTime> = self.pending.iter().copied().filter(in_window).collect();
            self.pending.retain(|e| !in_window(e));
            for e in ambiguous {
                self.refuse(e, RefusalReason::AmbiguousPulse);
            }
            return;
        }
        let Some(pos) = self.pending.iter().position(in_window) else { return };
        let Some(edge) = self.pending.remove(pos) else { return };
        let offset = (second + self.config.pulse_delay).duration_since(edge);
        if let Some(reference) = self.reference() {
            if (offset - reference).abs() >= HALF_SECOND {
                self.mismatches += 1;
                self.refuse(edge, RefusalReason::SecondMismatch { offset, reference });
                if self.mismatches >= self.config.mismatch_reset_count {
                    self.window.clear();
                    self.last_output = None;
                    self.mismatches = 0;
                }
                return;
            }
        }
        self.mismatches = 0;
        self.accept(edge, offset);
    }

    /// The offset new samples must agree with to the second.
    fn reference(&self) -> Option<NtpDuration> {
        if self.window.is_empty() {
            self.last_output
        } else {
            let mut offsets: Vec<NtpDuration> = self.window.iter().map(|s| s.1).collect();
            Some(median(&mut offsets))
        }
    }

    fn accept(&mut self, edge_local: NtpTime, offset: NtpDuration) {
        if let Some(&(last, _)) = self.window.last() {
            if edge_local.duration_since(last) > self.config.gap_max {
                self.window.clear();
            }
        }
        self.window.push((edge_local, offset));
        if self.window.len() >= self.config.filter_len {
            let sample = self.filter();
            self.window.clear();
            self.last_output = Some(sample.offset);
            self.emit(PpsEvent::Sample(sample));
        }
    }

    fn filter(&self) -> RefclockSample {
        let mut offsets: Vec<NtpDuration> = self.window.iter().map(|s| s.1).collect();
        let m = median(&mut offsets);
        let mut deviations: Vec<NtpDuration> = offsets.iter().map(|o| (*o - m).abs()).collect();
        let mad = median(&mut deviations);
        let scaled = NtpDuration::from_seconds_f64(3.0 * 1.4826 * mad.to_seconds_f64());
        let threshold = scaled.max(self.config.outlier_threshold_min);
        let kept: Vec<(NtpTime, NtpDuration)> =
            self.window.iter().copied().filter(|(_, o)| (*o - m).abs() <= threshold).collect();
        // The median itself is always within the threshold, so `kept` is not empty.
        let n = kept.len().max(1) as f64;
        let t0 = kept.first().map_or(NtpTime::PRIME_EPOCH, |k| k.0);
        let mean_dt = kept.iter().map(|(t, _)| t.duration_since(t0).to_seconds_f64()).sum::<f64>() / n;
        let mean_offset = kept.iter().map(|(_, o)| (*o - m).to_seconds_f64()).sum::<f64>() / n;
        let var = kept.iter().map(|(_, o)| ((*o - m).to_seconds_f64() - mean_offset).powi(2)).sum::<f64>() / n;
        RefclockSample {
            offset: m + NtpDuration::from_seconds_f64(mean_offset),
            time: t0 + NtpDuration::from_seconds_f64(mean_dt),
            dispersion: NtpDuration::from_seconds_f64(var.sqrt()).max(self.config.precision),
            samples_used: kept.len(),
            outliers_rejected: self.window.len() - kept.len(),
        }
    }
}

/// The whole second nearest to `t` (halves round up).
fn nearest_second(t: NtpTime) -> NtpTime {
    let secs = if t.fraction() >= 1 << 31 { t.secs_since_1900().saturating_add(1) } else { t.secs_since_1900() };
    NtpTime::new(secs, 0)
}

/// The median (lower middle for an even count); zero for an empty slice.
fn median(values: &mut [NtpDuration]) -> NtpDuration {
    if values.is_empty() {
        return NtpDuration::ZERO;
    }
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

#[cfg(test)]
mod tests;
