use super::*;
use modes::*;

const T0: i128 = 1_780_000_000_000_000_000; // 2026-05-28, Unix ns
const SEC: i128 = 1_000_000_000;

fn clock(offset_s: f64, frequency: f64) -> VirtualClock {
    VirtualClock::new(Params::new(T0, offset_s, frequency), T0)
}

fn call(c: &mut VirtualClock, at: i128, t: Timex) -> (Result<i32, i32>, Timex) {
    let mut t = t;
    let r = c.adjtimex(at, &mut t);
    (r, t)
}

#[test]
fn oscillator_offset_and_frequency_show_in_the_local_time() {
    let c = clock(0.25, 100e-6);
    assert!((c.offset_at(T0) - 0.25).abs() < 1e-9);
    // After 1000 s at +100 ppm: 0.25 + 0.1 s.
    assert!((c.offset_at(T0 + 1000 * SEC) - 0.35).abs() < 1e-9);
    assert!((c.frequency_error(T0) - 100e-6).abs() < 1e-15);
}

#[test]
fn a_read_changes_nothing_and_reports_the_boot_state() {
    let mut c = clock(0.0, 0.0);
    let (r, t) = call(&mut c, T0, Timex::default());
    assert_eq!(r, Ok(state::TIME_ERROR)); // STA_UNSYNC at boot
    assert_eq!((t.freq, t.tick, t.offset, t.constant), (0, 10_000, 0, 2));
    assert_eq!(t.time_sec as i128, T0 / SEC);
}

#[test]
fn frequency_and_tick_read_back_in_kernel_units_and_steer_the_clock() {
    let mut c = clock(0.0, 0.0);
    // chrony's Linux driver: tick 10001 (+100 ppm) and freq -20 ppm = +80 ppm.
    let (r, t) = call(&mut c, T0, Timex { modes: ADJ_TICK | ADJ_FREQUENCY, tick: 10_001, freq: -20 << 16, ..Timex::default() });
    assert!(r.is_ok());
    assert_eq!((t.tick, t.freq), (10_001, -20 << 16));
    assert!((c.offset_at(T0 + 100 * SEC) - 80e-6 * 100.0).abs() < 1e-9);
    // The kernel clamps freq to 500 ppm.
    let (_, t) = call(&mut c, T0, Timex { modes: ADJ_FREQUENCY, freq: 900 << 16, ..Timex::default() });
    assert_eq!(t.freq, FREQ_MAX_SCALED);
}

#[test]
fn a_tick_out_of_range_is_einval_and_changes_nothing() {
    let mut c = clock(0.0, 0.0);
    let (r, _) = call(&mut c, T0, Timex { modes: ADJ_TICK | ADJ_FREQUENCY, tick: 12_000, freq: 5 << 16, ..Timex::default() });
    assert_eq!(r, Err(EINVAL));
    let (_, t) = call(&mut c, T0, Timex::default());
    assert_eq!((t.tick, t.freq), (10_000, 0));
}

#[test]
fn setoffset_steps_in_micro_and_nano_units() {
    let mut c = clock(0.0, 0.0);
    call(&mut c, T0, Timex { modes: ADJ_SETOFFSET, time_sec: -1, time_frac: 500_000, ..Timex::default() }).0.unwrap();
    assert!((c.offset_at(T0) + 0.5).abs() < 1e-9);
    call(&mut c, T0, Timex { modes: ADJ_SETOFFSET | ADJ_NANO, time_sec: 0, time_frac: 250_000_000, ..Timex::default() }).0.unwrap();
    assert!((c.offset_at(T0) + 0.25).abs() < 1e-9);
    // usec must be below one second.
    let (r, _) = call(&mut c, T0, Timex { modes: ADJ_SETOFFSET, time_frac: 1_000_000, ..Timex::default() });
    assert_eq!(r, Err(EINVAL));
}

#[test]
fn pll_offset_needs_sta_pll_and_slews_with_the_kernel_time_constant() {
    let mut c = clock(0.0, 0.0);
    call(&mut c, T0, Timex { modes: ADJ_OFFSET, offset: 1000, ..Timex::default() }).0.unwrap();
    assert_eq!(c.offset_at(T0 + 10 * SEC), 0.0);
    call(&mut c, T0, Timex { modes: ADJ_STATUS | ADJ_OFFSET | ADJ_TIMECONST, status: status::STA_PLL, constant: 0, offset: 1000, ..Timex::default() })
        .0
        .unwrap();
    // tau = 4 s: after 4 s, 1 - 1/e of 1 ms has been applied; and the
    // frequency moved as Linux's PLL moves it: the first update counts 2^(2+1+0)
    // = 8 s, 1 ms x 8 / 2^(2(2+2+0)) = +31.25 ppm, 125 us in 4 s.
    let applied = c.offset_at(T0 + 4 * SEC);
    assert!((applied - 1e-3 * (1.0 - (-1.0f64).exp()) - 125e-6).abs() < 1e-8, "{applied}");
    let (_, t) = call(&mut c, T0 + 4 * SEC, Timex::default());
    assert!((t.offset - 368).abs() <= 1, "{}", t.offset);
    assert_eq!(t.freq, 3125 * 65536 / 100);
    assert_eq!(t.status & status::STA_MODE, status::STA_MODE);
}

#[test]
fn pll_offsets_move_the_frequency_by_the_time_since_the_last() {
    let mut c = clock(0.0, 0.0);
    let pll = |offset| Timex { modes: ADJ_STATUS | ADJ_OFFSET | ADJ_TIMECONST | ADJ_NANO, status: status::STA_PLL, constant: 2, offset, ..Timex::default() };
    call(&mut c, T0, pll(0)).0.unwrap();
    // 16 s later (within 2^(2+1+2) = 32 s): -2 ms x 16 / 2^12 = -7.8125 ppm.
    let (_, t) = call(&mut c, T0 + 16 * SEC, pll(-2_000_000));
    assert_eq!(t.freq, -78125 * 65536 / 10000);
    assert_eq!(t.status & status::STA_MODE, 0);
    // 100 s later: counted as 32 s; +1 ms x 32 / 4096 = +7.8125 ppm, back to 0.
    let (_, t) = call(&mut c, T0 + 116 * SEC, pll(1_000_000));
    assert_eq!(t.freq, 0);
    // With STA_FREQHOLD the frequency stays.
    let held = Timex { status: status::STA_PLL | status::STA_FREQHOLD, ..pll(5_000_000) };
    let (_, t) = call(&mut c, T0 + 132 * SEC, held);
    assert_eq!(t.freq, 0);
    // Without STA_PLL an offset does nothing to the frequency either.
    let (_, t) = call(&mut c, T0 + 148 * SEC, Timex { status: 0, ..pll(5_000_000) });
    assert_eq!(t.freq, 0);
}

#[test]
fn status_clears_unsync_and_arms_a_leap() {
    let mut c = clock(0.0, 0.0);
    let (r, t) = call(&mut c, T0, Timex { modes: ADJ_STATUS, status: status::STA_INS, ..Timex::default() });
    assert_eq!(r, Ok(state::TIME_INS));
    assert_eq!(t.status & status::STA_UNSYNC, 0);
    let (r, _) = call(&mut c, T0, Timex { modes: ADJ_STATUS, status: 0, ..Timex::default() });
    assert_eq!(r, Ok(state::TIME_OK));
}

#[test]
fn adjtime_slews_linearly_at_500_ppm_and_returns_the_old_remainder() {
    let mut c = clock(0.0, 0.0);
    let (_, t) = call(&mut c, T0, Timex { modes: ADJ_OFFSET_SINGLESHOT, offset: 1000, ..Timex::default() });
    assert_eq!(t.offset, 0);
    assert!((c.offset_at(T0 + SEC) - 500e-6).abs() < 1e-9);
    let (_, t) = call(&mut c, T0 + SEC, Timex { modes: ADJ_OFFSET_SS_READ, ..Timex::default() });
    assert_eq!(t.offset, 500);
}

#[test]
fn settime_sets_the_local_time() {
    let mut c = clock(3.0, 0.0);
    c.set_time(T0 + SEC, T0 + 2 * SEC);
    assert!(c.offset_at(T0 + SEC) - 1.0 < 1e-9);
}

#[test]
fn the_journal_replays_to_the_same_clock_at_every_instant() {
    let params = Params::new(T0, 0.1, -37e-6);
    let mut live = VirtualClock::new(params, T0);
    let calls = [
        (T0 + SEC, JournalOp::Adjtimex(Timex { modes: ADJ_SETOFFSET | ADJ_NANO, time_sec: -1, time_frac: 900_000_000, ..Timex::default() })),
        (T0 + 2 * SEC, JournalOp::Adjtimex(Timex { modes: ADJ_TICK | ADJ_FREQUENCY, tick: 10_000, freq: 37 << 16, ..Timex::default() })),
        (T0 + 3 * SEC, JournalOp::Adjtimex(Timex { modes: ADJ_STATUS, status: 0, ..Timex::default() })),
        (T0 + 5 * SEC, JournalOp::SetTime(T0 + 5 * SEC + 123)),
    ];
    let mut text = String::new();
    for (at, op) in &calls {
        live.apply(*at, op).unwrap();
        text.push_str(&op.line(42, *at));
        text.push('\n');
    }
    // Another process's line and a half-written last line are left out.
    text.push_str("43 0 S 0\n42 99 X 1");
    let replay = Replay::parse(params, T0, &text, "journal").unwrap();
    assert_eq!(replay.pid, Some(42));
    assert_eq!(replay.calls().count(), 4);
    for at in [T0 + 6 * SEC, T0 + 100 * SEC] {
        assert_eq!(replay.clock_at(at).now(at), live.now(at));
    }
    assert!(replay.clock_at(T0).offset_at(T0) - 0.1 < 1e-9);
    assert_eq!(replay.first_synchronized(), Some(T0 + 3 * SEC));
    assert_eq!(replay.first_adjustment(), Some(T0 + SEC));
    assert_eq!(replay.steps(), 2);
    // A zero ADJ_SETOFFSET (chrony's probe) is no step.
    let probe = JournalOp::Adjtimex(Timex { modes: ADJ_SETOFFSET | ADJ_NANO, ..Timex::default() }).line(42, T0);
    assert_eq!(Replay::parse(params, T0, &format!("{probe}\n"), "j").unwrap().steps(), 0);
}

#[test]
fn a_bad_journal_line_is_named() {
    let p = Params::new(T0, 0.0, 0.0);
    let e = Replay::parse(p, T0, "1 2 S 3\n1 2 Q\n", "j.log").unwrap_err();
    assert!(e.starts_with("j.log:2:"), "{e}");
}

#[test]
fn params_refuse_nonsense() {
    assert!(Params::parse("0.1", "1e-5", "0", "").is_ok());
    assert!(Params::parse("x", "0", "0", "").unwrap_err().contains("offset"));
    assert!(Params::parse("0", "2", "0", "").unwrap_err().contains("frequency"));
    assert!(Params::parse("0", "0", "1.5", "").unwrap_err().contains("epoch"));
    let p = Params::parse("0", "0", "0", "1e-9/7/2").unwrap();
    assert_eq!(p.wander, Some(Wander { wander: 1e-9, seed: 7, host: 2 }));
    assert_eq!(Params::parse("0", "0", "0", &p.wander_text()).unwrap(), p);
    for bad in ["1e-9/7", "-1e-9/7/2", "x/7/2", "1e-9/7/2/3", "inf/1/1"] {
        assert!(Params::parse("0", "0", "0", bad).unwrap_err().contains("WANDER/SEED/HOST"), "{bad}");
    }
}

#[test]
fn the_wander_is_the_simulators_random_walk_for_that_seed_and_host() {
    use ntplab_proto::time::NtpDuration;
    use ntplab_sim::oscillator::{Oscillator, OscillatorConfig};
    let w = Wander { wander: 1e-7, seed: 11, host: 3 };
    let p = Params { wander: Some(w), ..Params::new(T0, 0.01, 2e-6) };
    let mut sim = Oscillator::new(
        OscillatorConfig { offset_s: 0.01, frequency: 2e-6, wander: 1e-7, ..OscillatorConfig::default() },
        ntplab_sim::rng::SimRng::derive(11, "oscillator/3"),
    );
    // Asked out of order first (the lab evaluates packets and samples in
    // any order): the same answers.
    let late = p.raw_at(T0 + 500_000_000_000);
    let times = [0.0, 0.5, 1.0, 7.25, 100.0, 499.999, 500.0];
    for t in times {
        let real = T0 + (t * 1e9) as i128;
        let want = sim.raw_offset_at(NtpDuration::from_seconds_f64(t)).to_seconds_f64();
        let got = p.raw_at(real).duration_since(unix_ns_to_ntp(real)).to_seconds_f64();
        assert!((got - want).abs() < 1e-9, "at {t} s: lab {got}, simulator {want}");
        let f = sim.frequency_at(NtpDuration::from_seconds_f64(t));
        assert!((p.frequency_at(real) - f).abs() < 1e-12, "at {t} s: {} vs {f}", p.frequency_at(real));
    }
    assert_eq!(p.raw_at(T0 + 500_000_000_000), late);
    // It wanders: after 500 s the frequency has moved by about 1e-7 * sqrt(500).
    assert!((p.frequency_at(T0 + 500_000_000_000) - 2e-6).abs() > 1e-8);
    // Another host's walk is another.
    let q = Params { wander: Some(Wander { host: 4, ..w }), ..p };
    assert_ne!(q.raw_at(T0 + 500_000_000_000), late);
    // No wander: none.
    assert_eq!(Params::new(T0, 0.0, 0.0).frequency_at(T0 + 500_000_000_000), 0.0);
}

#[test]
fn a_step_resets_maxerror_as_chrony_probes_for_setoffset() {
    // chrony's test_step_offset: zero maxerror, step by 0, expect maxerror reset.
    let mut c = clock(0.0, 0.0);
    let (_, t) = call(&mut c, T0, Timex { modes: ADJ_MAXERROR | ADJ_STATUS, maxerror: 0, status: 0, ..Timex::default() });
    assert_eq!(t.maxerror, 0);
    let (_, t) = call(&mut c, T0, Timex { modes: ADJ_SETOFFSET | ADJ_NANO, ..Timex::default() });
    assert!(t.maxerror >= 100_000);
    assert_ne!(t.status & status::STA_UNSYNC, 0);
}
