//! Per-host figures of a run: offset and frequency error statistics after
//! convergence, synchronization time, steps, packets.

use crate::host_clock::ClockSample;
use ntplab_proto::time::NtpDuration;

/// Running statistics of one host's true offset.
#[derive(Debug, Clone)]
pub struct HostStats {
    /// Statistics count from this true time on.
    pub converged_after: NtpDuration,
    /// |offset| below this counts as synchronized.
    pub sync_threshold_s: f64,
    count: u64,
    sum_sq: f64,
    max_abs: f64,
    freq_sum_sq: f64,
    freq_max_abs: f64,
    /// Last grid time the offset was above the threshold.
    last_unsynced: Option<NtpDuration>,
    /// Grid samples seen in all.
    pub samples: u64,
    /// The last sample.
    pub last: Option<ClockSample>,
    /// Clock steps the daemon made.
    pub steps: u64,
    /// Datagrams this host sent.
    pub packets_sent: u64,
    /// Times the daemon's selection chose a new system peer.
    pub selections: u64,
    /// Kiss codes the daemon received.
    pub kiss_codes: u64,
    /// NTSN kiss codes the daemon received.
    pub ntsn: u64,
    /// Clock updates the daemon refused as above its `max_change`.
    pub max_change_exceeded: u64,
}

impl HostStats {
    /// Empty statistics.
    pub fn new(converged_after: NtpDuration, sync_threshold_s: f64) -> Self {
        HostStats {
            converged_after,
            sync_threshold_s,
            count: 0,
            sum_sq: 0.0,
            max_abs: 0.0,
            freq_sum_sq: 0.0,
            freq_max_abs: 0.0,
            last_unsynced: None,
            samples: 0,
            last: None,
            steps: 0,
            max_change_exceeded: 0,
            packets_sent: 0,
            selections: 0,
            kiss_codes: 0,
            ntsn: 0,
        }
    }

    /// Adds a grid sample.
    pub fn add(&mut self, s: &ClockSample) {
        self.samples += 1;
        if s.offset_s.abs() > self.sync_threshold_s || !s.offset_s.is_finite() {
            self.last_unsynced = Some(s.elapsed);
        }
        if s.elapsed >= self.converged_after {
            self.count += 1;
            self.sum_sq += s.offset_s * s.offset_s;
            self.max_abs = self.max_abs.max(s.offset_s.abs());
            self.freq_sum_sq += s.frequency_error * s.frequency_error;
            self.freq_max_abs = self.freq_max_abs.max(s.frequency_error.abs());
        }
        self.last = Some(*s);
    }

    /// RMS of the true offset after convergence, seconds.
    pub fn rms_offset(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.sum_sq / self.count as f64).sqrt())
    }

    /// Largest |true offset| after convergence, seconds.
    pub fn max_offset(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max_abs)
    }

    /// RMS frequency error after convergence, s/s.
    pub fn rms_frequency_error(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.freq_sum_sq / self.count as f64).sqrt())
    }

    /// Largest |frequency error| after convergence, s/s.
    pub fn max_frequency_error(&self) -> Option<f64> {
        (self.count > 0).then_some(self.freq_max_abs)
    }

    /// When the offset came within the threshold for good, seconds since the
    /// start; `None` if it was above it at the last sample.
    pub fn sync_time(&self) -> Option<f64> {
        let last = self.last?;
        if last.offset_s.abs() > self.sync_threshold_s {
            return None;
        }
        Some(self.last_unsynced.map_or(0.0, |t| t.to_seconds_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, offset_s: f64) -> ClockSample {
        ClockSample { elapsed: NtpDuration::from_seconds(t), offset_s, frequency_error: 1e-6 }
    }

    #[test]
    fn statistics_after_convergence_and_sync_time() {
        let mut st = HostStats::new(NtpDuration::from_seconds(10), 1e-3);
        for t in 0..10 {
            st.add(&s(t, 0.1));
        }
        for t in 10..20 {
            st.add(&s(t, if t % 2 == 0 { 1e-4 } else { -1e-4 }));
        }
        assert!((st.rms_offset().unwrap() - 1e-4).abs() < 1e-12);
        assert_eq!(st.max_offset(), Some(1e-4));
        assert_eq!(st.sync_time(), Some(9.0));
        assert!((st.rms_frequency_error().unwrap() - 1e-6).abs() < 1e-15);
        st.add(&s(20, 0.5));
        assert_eq!(st.sync_time(), None, "not synchronized at the end");
    }
}
