use super::*;
use ntplab_proto::refclock::nmea::{wnro_correct, wnro_suspect, Sentence, Status};
use ntplab_proto::refclock::pps::{PpsConfig, PpsEvent, PpsProcessor};

/// splitmix64, enough for tests (the simulator's own generator lives elsewhere).
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn secs(n: i64) -> NtpDuration {
    NtpDuration::from_seconds(n)
}

fn pivot() -> NtpTime {
    t("2024-01-01T00:00:00Z")
}

/// Runs the receiver for `n` seconds from `start`; returns every sentence the
/// host's NMEA reader sees, with the true time its last chunk arrived.
fn receive(gps: &GpsReceiver, start: NtpTime, n: i64, rng: &mut TestRng) -> Vec<(NtpTime, NtpTime, Sentence)> {
    let mut reader = NmeaReader::new();
    let mut out = Vec::new();
    let mut last_chunk = NtpTime::PRIME_EPOCH;
    for i in 0..n {
        let second = start + secs(i);
        for chunk in gps.emit_second(second, rng) {
            assert!(chunk.true_time > last_chunk, "chunks in time order");
            assert!(chunk.true_time > second + gps.config().timing.latency_min);
            assert!(chunk.true_time < second + secs(1), "the group fits in its second");
            last_chunk = chunk.true_time;
            for line in reader.push(&chunk.bytes) {
                let line = line.expect("the model sends only well-formed lines");
                let s = parse_sentence(&line).expect("the model's sentences parse");
                assert!(matches!(s.checksum, ntplab_proto::refclock::nmea::Checksum::Verified(_)));
                out.push((second, chunk.true_time, s));
            }
        }
    }
    assert_eq!(reader.finish(), None);
    out
}

#[test]
fn receiver_output_parses_to_the_true_time() {
    let gps = GpsReceiver::new(GpsConfig::default());
    let mut rng = TestRng(1);
    let start = t("2026-12-31T23:59:50Z");
    let got = receive(&gps, start, 20, &mut rng);
    assert_eq!(got.len(), 60);
    for (second, _, s) in &got {
        match &s.data {
            SentenceData::Rmc(_) | SentenceData::Zda(_) => {
                let fix = s.fix(pivot()).unwrap();
                assert_eq!(fix.time, *second);
                assert_eq!(fix.valid, matches!(s.data, SentenceData::Rmc(_)));
            }
            SentenceData::Gga(g) => {
                assert_eq!(g.quality, Some(1));
                assert_eq!(ntplab_proto::refclock::nmea::Date::of(*second).at(s.time_of_day().unwrap()).unwrap(), *second);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.talker.as_str(), "GP");
    }
}

#[test]
fn serial_timing_follows_the_baud_rate() {
    let timing = SerialTiming { latency_min: secs(0), latency_max: secs(0), ..SerialTiming::default() };
    let gps = GpsReceiver::new(GpsConfig { timing, ..GpsConfig::default() });
    let second = t("2026-01-01T00:00:00Z");
    let len: usize = gps.sentences(second).iter().map(String::len).sum();
    let chunks = gps.emit_second(second, &mut TestRng(2));
    assert_eq!(chunks.iter().map(|c| c.bytes.len()).sum::<usize>(), len);
    assert!(chunks.iter().all(|c| c.bytes.len() <= 16));
    // 10 bits per byte at 9600 bit/s.
    let expected = NtpDuration::from_nanos(len as i64 * 10 * 1_000_000_000 / 9600);
    assert_eq!(chunks.last().unwrap().true_time.duration_since(second), expected);
    assert_eq!(chunks[0].true_time.duration_since(second), timing.transmission_time(16));
}

#[test]
fn fix_loss_reports_status_v_and_quality_zero() {
    let start = t("2026-06-01T00:00:00Z");
    let faults = vec![GpsFault::FixLoss { from: start + secs(3), until: start + secs(6) }];
    let gps = GpsReceiver::new(GpsConfig { faults, zda: false, ..GpsConfig::default() });
    for (second, _, s) in receive(&gps, start, 10, &mut TestRng(3)) {
        let lost = (3..6).contains(&(second.secs_since_1900() - start.secs_since_1900()));
        match &s.data {
            SentenceData::Rmc(r) => {
                assert_eq!(r.status, Some(if lost { Status::Warning } else { Status::Valid }));
                let fix = s.fix(pivot()).unwrap();
                assert_eq!((fix.valid, fix.time), (!lost, second));
            }
            SentenceData::Gga(g) => assert_eq!(g.quality, Some(if lost { 0 } else { 1 })),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn wnro_fault_is_undone_by_wnro_correct() {
    let start = t("2026-06-01T12:00:00Z");
    let faults = vec![GpsFault::Wnro { from: start, until: start + secs(5) }];
    let gps = GpsReceiver::new(GpsConfig { faults, ..GpsConfig::default() });
    let mut faulty = 0;
    for (second, _, s) in receive(&gps, start, 8, &mut TestRng(4)) {
        let Ok(fix) = s.fix(pivot()) else { continue };
        if second < start + secs(5) {
            faulty += 1;
            assert_eq!(fix.time, second + (-WNRO_PERIOD));
            assert_eq!(fix.time.to_civil().year, 2006);
            assert!(wnro_suspect(fix.time, pivot()));
        } else {
            assert_eq!(fix.time, second);
        }
        assert_eq!(wnro_correct(fix.time, pivot()), second);
    }
    assert_eq!(faulty, 10); // RMC and ZDA for 5 seconds
}

#[test]
fn replay_plays_a_capture_group_by_group() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../impl/proto/tests/data/nmea/trimmed/ublox-8-trimmed.log");
    let log = std::fs::read(path).unwrap();
    let replay = Replay::from_capture(&log);
    assert_eq!(replay.len(), 3);
    let start = t("2026-01-01T00:00:00Z");
    let timing = SerialTiming { baud_rate_bps: 115_200, ..SerialTiming::default() };
    let mut rng = TestRng(5);
    let mut reader = NmeaReader::new();
    let mut rmc_times = Vec::new();
    let mut replayed = Vec::new();
    for i in 0..replay.len() {
        let second = start + secs(i as i64);
        for chunk in replay.emit_second(i, second, &timing, &mut rng).unwrap() {
            assert!(chunk.true_time > second && chunk.true_time < second + secs(1));
            replayed.extend_from_slice(&chunk.bytes);
            for line in reader.push(&chunk.bytes).into_iter().flatten() {
                let s = parse_sentence(&line).unwrap();
                if let SentenceData::Rmc(_) = s.data {
                    rmc_times.push(s.fix(pivot()).unwrap().time);
                }
            }
        }
    }
    assert!(replay.emit_second(3, start, &timing, &mut rng).is_none());
    // The capture's own times, one RMC per group.
    assert_eq!(
        rmc_times,
        vec![t("2017-01-10T00:09:41Z"), t("2017-01-10T00:09:42Z"), t("2017-01-10T00:09:43Z")]
    );
    // Every byte but the comment lines is replayed, binary preamble included.
    let without_comments: Vec<u8> =
        log.split_inclusive(|&b| b == b'\n').filter(|l| l.first() != Some(&b'#')).flatten().copied().collect();
    assert_eq!(replayed, without_comments);
}

#[test]
fn pps_jitter_has_the_configured_mean_and_deviation() {
    let config = PpsModelConfig {
        delay: NtpDuration::from_nanos(80),
        jitter_sd: NtpDuration::from_nanos(30),
        ..PpsModelConfig::default()
    };
    let pps = PpsModel::new(config);
    let mut rng = TestRng(6);
    let start = t("2026-01-01T00:00:00Z");
    let n = 20_000;
    let errors: Vec<f64> = (0..n)
        .map(|i| {
            let second = start + secs(i);
            pps.pulse(second, &mut rng).unwrap().duration_since(second).to_seconds_f64() * 1e9
        })
        .collect();
    let mean = errors.iter().sum::<f64>() / n as f64;
    let sd = (errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    // Standard error of the mean: 30 / sqrt(20000) = 0.21 ns; of the sd about 0.15 ns.
    assert!((mean - 80.0).abs() < 1.0, "mean {mean} ns");
    assert!((sd - 30.0).abs() < 1.0, "sd {sd} ns");
    let beyond_3sd = errors.iter().filter(|e| (*e - 80.0).abs() > 90.0).count();
    assert!(beyond_3sd < 100, "{beyond_3sd} beyond 3 sd (Gaussian: about 54)");
}

#[test]
fn pps_dropouts_and_outliers_occur_at_their_rates() {
    let config = PpsModelConfig {
        dropout_probability: 0.05,
        outlier_probability: 0.01,
        outlier_offset_max: NtpDuration::from_nanos(1_000_000),
        ..PpsModelConfig::default()
    };
    let pps = PpsModel::new(config);
    let mut rng = TestRng(7);
    let start = t("2026-01-01T00:00:00Z");
    let n = 20_000;
    let (mut dropped, mut outliers) = (0, 0);
    for i in 0..n {
        let second = start + secs(i);
        match pps.pulse(second, &mut rng) {
            None => dropped += 1,
            Some(e) if e.duration_since(second).abs() > NtpDuration::from_nanos(1_000) => outliers += 1,
            Some(_) => {}
        }
    }
    // Binomial: 1000 ± 31 dropped; 190 ± 14 outliers among the pulses sent.
    assert!((880..1120).contains(&dropped), "{dropped} dropped");
    assert!((130..250).contains(&outliers), "{outliers} outliers");
    // Same seed, same pulses.
    let a: Vec<_> = (0..100).map(|i| pps.pulse(start + secs(i), &mut TestRng(9))).collect();
    let b: Vec<_> = (0..100).map(|i| pps.pulse(start + secs(i), &mut TestRng(9))).collect();
    assert_eq!(a, b);
}

#[test]
fn gps_and_pps_through_the_core_measure_the_host_clock() {
    // A host clock 2.5 s ahead of true time: the NMEA alone cannot tell it
    // better than the serial latency; paired with PPS the offset is exact to
    // the jitter.
    let ahead = NtpDuration::from_seconds_f64(2.5);
    let gps = GpsReceiver::new(GpsConfig::default());
    let pps_model = PpsModel::new(PpsModelConfig {
        outlier_probability: 0.05,
        dropout_probability: 0.05,
        ..PpsModelConfig::default()
    });
    let mut core = PpsProcessor::new(PpsConfig { pulse_delay: pps_model.config().delay, ..PpsConfig::default() });
    let mut reader = NmeaReader::new();
    let mut rng = TestRng(10);
    let start = t("2026-03-01T00:00:00Z");
    let mut samples = Vec::new();
    for i in 0..64 {
        let second = start + secs(i);
        if let Some(edge) = pps_model.pulse(second, &mut rng) {
            core.handle_pulse(edge + ahead);
        }
        for chunk in gps.emit_second(second, &mut rng) {
            for line in reader.push(&chunk.bytes).into_iter().flatten() {
                let s = parse_sentence(&line).unwrap();
                if let (SentenceData::Rmc(_), Ok(fix)) = (&s.data, s.fix(pivot())) {
                    core.handle_label(fix.time, chunk.true_time + ahead);
                }
            }
        }
        while let Some(event) = core.poll_event() {
            if let PpsEvent::Sample(s) = event {
                samples.push(s);
            }
        }
    }
    assert!(samples.len() >= 3, "{} samples", samples.len());
    for s in samples {
        let error = (s.offset + ahead).abs();
        assert!(error < NtpDuration::from_nanos(100), "offset {:?}", s.offset);
    }
}
