//! From a reference-clock sample to what the system process takes.
//!
//! The [`crate::system::System`] selects and combines sources from
//! [`Measurement`]s, the output of an NTP exchange. A reference clock has no
//! exchange: [`measurement`] dresses a filtered [`RefclockSample`] as one, the
//! way ntpd and chrony treat a refclock as a stratum-0 peer:
//!
//! - offset: the sample's (true − local, the sign of an NTP offset);
//! - delay: a configured constant (chrony's refclock `delay`, by default
//!   1 ns), since there is no round trip;
//! - dispersion: the sample's (the spread of the pulses averaged);
//! - stratum 0, root delay and dispersion 0: the system then advertises
//!   stratum 1 (`stratum + 1`), the reference ID given here (e.g. `GPS`,
//!   `PPS`), and a root dispersion that starts from the sample's own;
//! - leap indicator "no warning" (NMEA carries no leap warning);
//! - the local send and receive times are both the sample's epoch, so the
//!   clock filter ages the sample from the instant it applies at.

use crate::mono::Instant;
use crate::refclock::pps::RefclockSample;
use crate::source::Measurement;
use crate::time::NtpDuration;
use crate::wire::refid::ReferenceId;
use crate::wire::short::NtpShort;
use crate::wire::v4::LeapIndicator;

/// Fixed properties of a reference clock, the same for all its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefclockParams {
    /// What downstream servers see as the reference ID (`GPS`, `PPS`).
    pub reference_id: ReferenceId,
    /// Assumed round-trip delay (chrony `delay`); at least 1 ns is used.
    pub delay: NtpDuration,
    /// Timestamping precision, log2 seconds.
    pub precision_log2: i8,
    /// How often samples come, log2 seconds (the PPS filter window).
    pub poll_log2: i8,
}

impl Default for RefclockParams {
    fn default() -> Self {
        RefclockParams {
            reference_id: ReferenceId::from_ascii("PPS"),
            delay: NtpDuration::from_nanos(1),
            precision_log2: -20,
            poll_log2: 4,
        }
    }
}

/// The stratum a reference clock has as a source: 0 (the system serves 1).
pub const REFCLOCK_STRATUM: u8 = 0;

/// A refclock sample as the [`Measurement`] of a stratum-0 source;
/// `received_at` is the monotonic time the sample was produced (see the
/// [module docs](self)).
pub fn measurement(sample: &RefclockSample, params: &RefclockParams, received_at: Instant) -> Measurement {
    let reference = (sample.time + sample.offset).to_timestamp();
    Measurement {
        offset: sample.offset,
        delay: params.delay.max(NtpDuration::from_nanos(1)),
        dispersion: sample.dispersion,
        received_at,
        local_send_time: sample.time,
        local_receive_time: sample.time,
        server_receive_timestamp: reference,
        server_transmit_timestamp: reference,
        leap: LeapIndicator::NoWarning,
        stratum: REFCLOCK_STRATUM,
        reference_id: params.reference_id,
        reference_timestamp: reference,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        precision_log2: params.precision_log2,
        poll_log2: params.poll_log2,
        version: 4,
        interleaved: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::{System, SystemConfig};
    use crate::time::NtpTime;

    fn sample(offset: f64, at: f64) -> RefclockSample {
        RefclockSample {
            offset: NtpDuration::from_seconds_f64(offset),
            time: NtpTime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap() + NtpDuration::from_seconds_f64(at),
            dispersion: NtpDuration::from_nanos(300),
            samples_used: 16,
            outliers_rejected: 0,
        }
    }

    #[test]
    fn the_measurement_carries_the_sample() {
        let s = sample(2e-6, 100.0);
        let params = RefclockParams { reference_id: ReferenceId::from_ascii("GPS"), ..RefclockParams::default() };
        let m = measurement(&s, &params, Instant::from_secs(100));
        assert_eq!(m.offset, s.offset);
        assert_eq!(m.dispersion, s.dispersion);
        assert_eq!(m.local_receive_time, s.time);
        assert_eq!(m.stratum, 0);
        assert_eq!(m.reference_id.ascii(), Some("GPS"));
        assert_eq!(m.delay, NtpDuration::from_nanos(1));
    }

    #[test]
    fn a_refclock_makes_the_system_stratum_1_with_its_refid() {
        let mut sys: System<u8> = System::new(SystemConfig::default());
        sys.add_source(0, ReferenceId::from_ascii("PPS"));
        let params = RefclockParams::default();
        let mut moved = false;
        for i in 0u32..8 {
            let s = sample(1e-6, 16.0 * f64::from(i));
            let u = sys.handle_measurement(&0, &measurement(&s, &params, Instant::from_secs(16 * u64::from(i))), s.time);
            moved |= u.clock.is_some();
        }
        assert!(moved, "refclock samples reach the discipline");
        let state = sys.server_state(sample(0.0, 130.0).time);
        assert!(state.is_synchronized());
        assert_eq!(state.stratum, 1);
        assert_eq!(state.reference_id.ascii(), Some("PPS"));
        assert_eq!(state.root_delay, NtpDuration::from_nanos(1));
    }
}
