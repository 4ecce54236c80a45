use super::*;

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn ms(v: i64) -> NtpDuration {
    NtpDuration::from_nanos(v * 1_000_000)
}

fn us(v: i64) -> NtpDuration {
    NtpDuration::from_nanos(v * 1_000)
}

/// Deterministic jitter: a splitmix64 stream mapped to an approximately
/// Gaussian value (sum of four uniforms), standard deviation `sd`.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, sd: NtpDuration) -> NtpDuration {
        let mut sum = 0.0;
        for _ in 0..4 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            sum += (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        // Variance of the sum of four U(-0.5, 0.5) is 1/3.
        NtpDuration::from_seconds_f64(sum * 3f64.sqrt() * sd.to_seconds_f64())
    }
}

fn drain(p: &mut PpsProcessor) -> (Vec<RefclockSample>, Vec<Refusal>) {
    let (mut samples, mut refusals) = (Vec::new(), Vec::new());
    while let Some(e) = p.poll_event() {
        match e {
            PpsEvent::Sample(s) => samples.push(s),
            PpsEvent::Refused(r) => refusals.push(r),
        }
    }
    (samples, refusals)
}

const START: &str = "2025-03-01T12:00:00Z";

/// Runs `seconds` seconds of a receiver against a local clock `clock_ahead`
/// ahead of true time; each label is received 350 ms after its pulse. `edit`
/// gets (i, edge local time, true second) and returns the edge and label to
/// hand in (or `None` to drop them).
fn run(
    p: &mut PpsProcessor,
    seconds: i64,
    clock_ahead: NtpDuration,
    mut edit: impl FnMut(i64, NtpTime, NtpTime) -> (Option<NtpTime>, Option<NtpTime>),
) -> (Vec<RefclockSample>, Vec<Refusal>) {
    let start = t(START);
    for i in 0..seconds {
        let second = start + NtpDuration::from_seconds(i);
        let edge_local = second + clock_ahead;
        let (edge, label) = edit(i, edge_local, second);
        if let Some(edge) = edge {
            p.handle_pulse(edge);
        }
        if let Some(label) = label {
            p.handle_label(label, second + clock_ahead + ms(350));
        }
    }
    drain(p)
}

#[test]
fn labelled_pps_with_jitter_measures_a_clock_three_seconds_ahead() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let mut j = Jitter(1);
    let ahead = NtpDuration::from_seconds(3) + us(250);
    let (samples, refusals) = run(&mut p, 64, ahead, |_, e, s| (Some(e + j.next(us(1))), Some(s)));
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_eq!(samples.len(), 4);
    for s in &samples {
        assert!((s.offset + ahead).abs() < us(1), "offset {:?}", s.offset);
        assert!(s.dispersion >= us(1).half() && s.dispersion < us(2), "dispersion {:?}", s.dispersion);
        assert_eq!(s.samples_used + s.outliers_rejected, 16);
    }
    // The sample's time is the mean of its edges' local times: the middle of seconds 0..16.
    let mid = t(START) + ahead + ms(7500);
    assert!(samples[0].time.duration_since(mid).abs() < us(1));
}

#[test]
fn locked_mode_takes_the_second_from_the_clock_and_compensates_the_cable() {
    let config = PpsConfig { mode: PpsMode::Locked, filter_len: 4, pulse_delay: NtpDuration::from_nanos(120), ..PpsConfig::default() };
    let mut p = PpsProcessor::new(config);
    // Local clock 0.4 s behind; edges come 120 ns after the true second.
    let behind = -ms(400);
    let (samples, refusals) = run(&mut p, 8, behind, |_, e, _| (Some(e + NtpDuration::from_nanos(120)), None));
    assert!(refusals.is_empty());
    assert_eq!(samples.len(), 2);
    for s in samples {
        assert!((s.offset - ms(400)).abs() < NtpDuration::from_nanos(2), "{:?}", s.offset);
    }
    // Beyond half a second the second is misidentified: that is what "locked" assumes away.
    let mut p = PpsProcessor::new(PpsConfig { mode: PpsMode::Locked, filter_len: 1, ..PpsConfig::default() });
    let (samples, _) = run(&mut p, 1, -ms(600), |_, e, _| (Some(e), None));
    assert!((samples[0].offset + ms(400)).abs() < NtpDuration::from_nanos(2));
}

#[test]
fn a_dropped_pulse_refuses_its_label_and_delays_the_window() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let (samples, refusals) =
        run(&mut p, 17, us(10), |i, e, s| (if i == 5 { None } else { Some(e) }, Some(s)));
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].reason, RefusalReason::NoPulseForLabel);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].samples_used, 16);
    assert!((samples[0].offset + us(10)).abs() < NtpDuration::from_nanos(2));
}

#[test]
fn a_missing_label_refuses_its_pulse() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let (samples, refusals) =
        run(&mut p, 8, us(10), |i, e, s| (Some(e), if i == 3 { None } else { Some(s) }));
    assert!(samples.is_empty());
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].reason, RefusalReason::Unlabelled);
    assert_eq!(refusals[0].local_time, t(START) + NtpDuration::from_seconds(3) + us(10));
}

#[test]
fn the_median_filter_removes_an_outlier() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let mut j = Jitter(7);
    let (samples, refusals) =
        run(&mut p, 16, ms(2), |i, e, s| (Some(e + j.next(us(1)) + if i == 9 { ms(5) } else { NtpDuration::ZERO }), Some(s)));
    assert!(refusals.is_empty());
    assert_eq!(samples.len(), 1);
    assert_eq!((samples[0].samples_used, samples[0].outliers_rejected), (15, 1));
    assert!((samples[0].offset + ms(2)).abs() < us(1), "{:?}", samples[0].offset);
    assert!(samples[0].dispersion < us(2));
}

#[test]
fn a_label_off_by_one_second_is_refused_then_relearned() {
    let mut p = PpsProcessor::new(PpsConfig { filter_len: 4, ..PpsConfig::default() });
    let one = NtpDuration::from_seconds(1);
    // Seconds 0..4 fill a window; at 6 one label names the next second; from 10
    // on the clock has been stepped by a second (all labels disagree).
    let (samples, refusals) = run(&mut p, 20, us(5), |i, e, s| {
        let label = if i == 6 || i >= 10 { s + one } else { s };
        (Some(e), Some(label))
    });
    let reasons: Vec<_> = refusals.iter().map(|r| r.reason).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for r in &reasons {
        assert!(matches!(r, RefusalReason::SecondMismatch { .. }));
    }
    if let RefusalReason::SecondMismatch { offset, reference } = reasons[0] {
        assert!((offset - (one - us(5))).abs() < NtpDuration::from_nanos(2));
        assert!((reference + us(5)).abs() < NtpDuration::from_nanos(2));
    }
    // Windows: 0-3, then 4,5,7,8 (6 refused); 9 starts a window, 10-12 are
    // refused (3 in a row: reference and window forgotten), 13-16 give a
    // sample with the new second, 17-19 wait in the next window.
    let offsets: Vec<_> = samples.iter().map(|s| (s.offset + us(5)).to_seconds_f64().round()).collect();
    assert_eq!(offsets, vec![0.0, 0.0, 1.0]);
}

#[test]
fn labels_must_be_whole_seconds_and_pulses_monotonic() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let s = t(START);
    p.handle_pulse(s);
    p.handle_label(s + ms(990), s + ms(300));
    p.handle_pulse(s + ms(1000));
    p.handle_pulse(s + ms(500));
    let (_, refusals) = drain(&mut p);
    let reasons: Vec<_> = refusals.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        vec![RefusalReason::LabelNotWholeSecond, RefusalReason::Unlabelled, RefusalReason::NotMonotonic]
    );
}

#[test]
fn two_pulses_before_one_label_are_ambiguous() {
    let mut p = PpsProcessor::new(PpsConfig::default());
    let s = t(START);
    p.handle_pulse(s);
    p.handle_pulse(s + ms(400)); // a glitch on the PPS line
    p.handle_label(s, s + ms(600));
    let (samples, refusals) = drain(&mut p);
    assert!(samples.is_empty());
    assert_eq!(refusals.iter().filter(|r| r.reason == RefusalReason::AmbiguousPulse).count(), 2);
}

#[test]
fn a_long_gap_empties_the_window() {
    let mut p = PpsProcessor::new(PpsConfig { filter_len: 4, ..PpsConfig::default() });
    let (samples, _) = run(&mut p, 30, us(5), |i, e, s| if (2..20).contains(&i) { (None, None) } else { (Some(e), Some(s)) });
    // 0, 1 are discarded by the 18 s gap; 20..24 and 24..28 fill two windows.
    assert_eq!(samples.len(), 2);
    assert!(samples[0].time > t(START) + NtpDuration::from_seconds(20));
}
