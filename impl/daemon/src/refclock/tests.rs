use super::*;
use crate::config::RefclockSpec;
use ntplab_proto::refclock::nmea::frame;
use ntplab_proto::time::NtpDuration;

fn t0() -> NtpTime {
    NtpTime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap()
}

fn secs(s: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(s)
}

/// The RMC + GGA + ZDA of the true second `t`.
fn sentences(t: NtpTime, valid: bool) -> Vec<u8> {
    let c = t.to_civil();
    let hms = format!("{:02}{:02}{:02}.00", c.hour, c.minute, c.second);
    let date = format!("{:02}{:02}{:02}", c.day, c.month, c.year % 100);
    let status = if valid { "A" } else { "V" };
    [
        frame(&format!("GPRMC,{hms},{status},4807.038,N,01131.000,E,0.0,0.0,{date},,,A")),
        frame(&format!("GPGGA,{hms},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")),
        frame(&format!("GPZDA,{hms},{:02},{:02},{:04},00,00", c.day, c.month, c.year)),
    ]
    .concat()
    .into_bytes()
}

/// Runs `seconds` seconds of a receiver through a driver whose local clock is
/// `clock_offset` ahead of true time; pulses come `pulse_delay` after each
/// second, sentences `serial_latency` after it, in 16-byte reads.
fn run(driver: &mut RefclockDriver, seconds: i64, clock_offset: f64, serial_latency: f64, valid: impl Fn(i64) -> bool) -> Vec<RefclockSample> {
    let local = |t: NtpTime| t + secs(clock_offset);
    let mut out = Vec::new();
    for i in 0..seconds {
        let second = t0() + NtpDuration::from_seconds(i);
        out.extend(driver.handle(RefclockInput::Pulse { edge_time_raw: second + secs(50e-9) }, local));
        for (k, chunk) in sentences(second, valid(i)).chunks(16).enumerate() {
            let at = second + secs(serial_latency + 0.0167 * k as f64);
            out.extend(driver.handle(RefclockInput::Serial { bytes: chunk.to_vec(), rx_time_raw: at }, local));
        }
    }
    out
}

#[test]
fn gps_pps_pulses_labelled_by_rmc_give_the_offset() {
    let spec = RefclockSpec { offset: secs(50e-9), ..RefclockSpec::new(RefclockKind::GpsPps) };
    let mut d = RefclockDriver::new(&spec, -20, Instant::ZERO);
    let samples = run(&mut d, 40, 0.0123, 0.25, |_| true);
    assert_eq!(samples.len(), 2, "{:?}", d.counters);
    for s in &samples {
        assert!((s.offset.to_seconds_f64() + 0.0123).abs() < 1e-8, "{s:?}");
        assert_eq!(s.samples_used, 16);
    }
    assert_eq!(d.counters.labels, 40, "one label a second: the ZDA of the same second is not another");
    assert_eq!(d.counters.refused, 0, "{:?}", d.counters);
    let m = d.measurement(&samples[0], Instant::from_secs(20));
    assert_eq!((m.stratum, m.reference_id.ascii()), (0, Some("PPS")));
}

#[test]
fn without_a_valid_fix_pulses_give_nothing() {
    let mut d = RefclockDriver::new(&RefclockSpec::new(RefclockKind::GpsPps), -20, Instant::ZERO);
    let samples = run(&mut d, 40, 0.0, 0.25, |i| !(5..30).contains(&i));
    assert!(samples.is_empty(), "15 labelled pulses are not a full window: {samples:?}");
    assert_eq!(d.counters.invalid_fixes, 25);
    assert!(d.counters.refused >= 25, "{:?}", d.counters);
}

#[test]
fn gps_alone_uses_the_sentence_arrival_less_the_configured_latency() {
    let spec = RefclockSpec { offset: secs(0.2), ..RefclockSpec::new(RefclockKind::Gps) };
    let mut d = RefclockDriver::new(&spec, -20, Instant::ZERO);
    // The RMC completes in read number `k` (16-byte reads 16.7 ms apart):
    // make that read come 0.2 s after the second.
    let rmc_len = sentences(t0(), true).iter().position(|&b| b == b'\r').unwrap() + 1; // a line ends at its CR
    let k = (rmc_len - 1) / 16;
    let samples = run(&mut d, 16, -0.5, 0.2 - k as f64 * 0.0167, |_| true);
    assert_eq!(samples.len(), 1, "{:?}", d.counters);
    assert!((samples[0].offset.to_seconds_f64() - 0.5).abs() < 1e-6, "{:?}", samples[0]);
    assert_eq!(d.params().reference_id.ascii(), Some("GPS"));
    assert_eq!(d.counters.pulses, 0, "kind gps ignores pulses");
}

#[test]
fn pps_alone_is_locked_to_the_nearest_second() {
    let mut d = RefclockDriver::new(&RefclockSpec::new(RefclockKind::Pps), -20, Instant::ZERO);
    let samples = run(&mut d, 16, 0.2, 0.25, |_| true);
    assert_eq!(samples.len(), 1);
    assert!((samples[0].offset.to_seconds_f64() + 0.2 + 50e-9).abs() < 1e-8, "{:?}", samples[0]);
    assert_eq!(d.counters.sentences, 0, "kind pps reads no serial data");
}

#[test]
fn serial_garbage_is_counted_not_fatal() {
    let mut d = RefclockDriver::new(&RefclockSpec::new(RefclockKind::GpsPps), -20, Instant::ZERO);
    let mut x = 12345u32;
    for i in 0..2000 {
        let bytes: Vec<u8> = (0..(i % 300))
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                match x >> 28 {
                    0 => b'$',
                    1 => b'\n',
                    2 => b',',
                    _ => (x >> 16) as u8,
                }
            })
            .collect();
        let _ = d.handle(RefclockInput::Serial { bytes, rx_time_raw: t0() + NtpDuration::from_seconds(i64::from(i)) }, |t| t);
    }
    let _ = d.handle(RefclockInput::Serial { bytes: b"$GPRMC,999999.00,A,,,,,,,999999,,,A*00\r\n".to_vec(), rx_time_raw: t0() }, |t| t);
    assert!(d.counters.bad_lines > 0);
}

#[test]
fn a_silent_clock_becomes_stale_after_three_intervals_then_once_an_interval() {
    let mut d = RefclockDriver::new(&RefclockSpec::new(RefclockKind::GpsPps), -20, Instant::ZERO);
    assert!(!d.stale_due(Instant::from_secs(47)));
    assert!(d.stale_due(Instant::from_secs(48)));
    assert!(!d.stale_due(Instant::from_secs(60)));
    assert!(d.stale_due(Instant::from_secs(64)));
    let sample = RefclockSample {
        offset: NtpDuration::ZERO,
        time: t0(),
        dispersion: NtpDuration::from_nanos(1000),
        samples_used: 16,
        outliers_rejected: 0,
    };
    d.measurement(&sample, Instant::from_secs(70));
    assert!(!d.stale_due(Instant::from_secs(117)));
    assert!(d.stale_due(Instant::from_secs(118)));
    assert_eq!(d.counters.stale, 3);
}
