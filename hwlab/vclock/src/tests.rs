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

#[test]
fn timeline_steps_and_frequency_changes_are_the_simulators() {
    use ntplab_proto::time::NtpDuration;
    use ntplab_sim::oscillator::{Oscillator, OscillatorConfig};
    let mut p = Params::new(T0, 0.01, 2e-6);
    // Given out of time order: kept in time order.
    p.changes.push(Change::Frequency { at_ns: T0 + 200 * SEC, frequency: -5e-6 }).unwrap();
    p.changes.push(Change::Step { at_ns: T0 + 100 * SEC, by_s: 0.5 }).unwrap();
    p.changes.push(Change::Frequency { at_ns: T0 + 300 * SEC, frequency: 1e-5 }).unwrap();
    let mut sim = Oscillator::new(OscillatorConfig { offset_s: 0.01, frequency: 2e-6, ..OscillatorConfig::default() }, ntplab_sim::rng::SimRng::derive(1, "oscillator/0"));
    let secs = |s: i64| NtpDuration::from_seconds(s);
    sim.step(secs(100), NtpDuration::from_seconds_f64(0.5));
    sim.set_frequency(secs(200), -5e-6);
    sim.set_frequency(secs(300), 1e-5);
    for t in [0.0, 99.999, 100.0, 150.0, 200.0, 250.5, 300.0, 400.0] {
        let real = T0 + (t * 1e9) as i128;
        let want = sim.raw_offset_at(NtpDuration::from_seconds_f64(t)).to_seconds_f64();
        let got = p.raw_at(real).duration_since(unix_ns_to_ntp(real)).to_seconds_f64();
        assert!((got - want).abs() < 1e-9, "at {t} s: lab {got}, simulator {want}");
        assert!((p.frequency_at(real) - sim.frequency_at(NtpDuration::from_seconds_f64(t))).abs() < 1e-15, "at {t} s");
    }
    // Bad values and too many are refused, naming why.
    assert!(p.changes.push(Change::Step { at_ns: T0, by_s: f64::NAN }).unwrap_err().contains("finite"));
    assert!(p.changes.push(Change::Frequency { at_ns: T0, frequency: 0.6 }).unwrap_err().contains("±0.5"));
    let mut many = Changes::default();
    for i in 0..CHANGES_MAX {
        many.push(Change::Step { at_ns: T0 + i as i128, by_s: 1e-3 }).unwrap();
    }
    assert!(many.push(Change::Step { at_ns: T0, by_s: 1e-3 }).unwrap_err().contains("more than"));
}

#[test]
fn the_control_page_carries_the_changes_and_a_late_arrival_changes_no_past_reading() {
    let dir = std::env::temp_dir().join(format!("ntplab-vclock-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.control");
    let mut w = control::Writer::create(&path).unwrap();
    let page = std::fs::read(&path).unwrap();
    assert_eq!(page.len(), control::CONTROL_BYTES);
    assert_eq!((u64::from_le_bytes(page[..8].try_into().unwrap()), control::read(&page[8..]).unwrap()), (0, Changes::default()));
    let mut changes = Changes::default();
    changes.push(Change::Step { at_ns: T0 + 10 * SEC, by_s: -0.25 }).unwrap();
    changes.push(Change::Frequency { at_ns: T0 + 20 * SEC, frequency: 3e-5 }).unwrap();
    w.publish(&changes).unwrap();
    let page = std::fs::read(&path).unwrap();
    assert_eq!(u64::from_le_bytes(page[..8].try_into().unwrap()), 2);
    assert_eq!(control::read(&page[8..]).unwrap(), changes);
    // Bad text is named by line.
    assert!(control::read(b"12 jump 1\n").unwrap_err().starts_with("line 1:"));
    assert!(control::read(b"12 step x\n").unwrap_err().contains("not a number"));
    // A shim that learns of the changes at 5 s (before they take effect)
    // and steers its clock meanwhile reads, at every instant, what the lab's
    // replay of its journal computes with the changes from the start.
    let params = Params::new(T0, 0.05, 1e-5);
    let mut shim = VirtualClock::new(params, T0);
    let mut journal = String::new();
    let mut readings = Vec::new();
    let freq = Timex { modes: ADJ_STATUS | ADJ_FREQUENCY, status: status::STA_PLL, freq: -10 << 16, ..Timex::default() };
    let step = Timex { modes: ADJ_SETOFFSET | ADJ_NANO, time_sec: 0, time_frac: 200_000_000, ..Timex::default() };
    for at in [SEC / 2, SEC, 3 * SEC, 5 * SEC, 10 * SEC - 1, 10 * SEC, 12 * SEC, 15 * SEC, 20 * SEC, 40 * SEC] {
        let real = T0 + at;
        match at {
            a if a == SEC => {
                shim.apply(real, &JournalOp::Adjtimex(freq)).unwrap();
                journal += &format!("{}\n", JournalOp::Adjtimex(freq).line(1, real));
            }
            a if a == 5 * SEC => shim.set_changes(changes),
            a if a == 15 * SEC => {
                shim.apply(real, &JournalOp::Adjtimex(step)).unwrap();
                journal += &format!("{}\n", JournalOp::Adjtimex(step).line(1, real));
            }
            _ => {}
        }
        readings.push((real, shim.now_unix_ns(real)));
    }
    let replay = Replay::parse(Params { changes, ..params }, T0, &journal, "journal").unwrap();
    for (real, local) in readings {
        assert_eq!(replay.clock_at(real).now_unix_ns(real), local, "at {} ns", real - T0);
    }
    // The step shows in the true offset at its instant: -0.25 s (and 2.5 us
    // of the -10 ppm correction, which the kernel model, as the simulator's,
    // accrues over the oscillator's time, which jumped).
    let before = replay.clock_at(T0 + 10 * SEC - 1).offset_at(T0 + 10 * SEC - 1);
    let after = replay.clock_at(T0 + 10 * SEC).offset_at(T0 + 10 * SEC);
    assert!((after - before + 0.25).abs() < 3e-6, "{before} -> {after}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pps_fetch_edge_times_are_translated_and_empty_edges_left_alone() {
    let mut fdata = [0u8; pps::FDATA_BYTES];
    // assert_sequence 7, an assert edge at 1_800_000_000.999_999_900 s, no clear edge, a timeout of 1 s.
    fdata[0..4].copy_from_slice(&7u32.to_ne_bytes());
    fdata[8..16].copy_from_slice(&1_800_000_000i64.to_ne_bytes());
    fdata[16..20].copy_from_slice(&999_999_900i32.to_ne_bytes());
    fdata[48..56].copy_from_slice(&1i64.to_ne_bytes());
    let before = fdata;
    // A clock 150 ns ahead: the edge moves into the next second.
    pps::translate_fdata(&mut fdata, |ns| ns + 150);
    assert_eq!(i64::from_ne_bytes(fdata[8..16].try_into().unwrap()), 1_800_000_001);
    assert_eq!(i32::from_ne_bytes(fdata[16..20].try_into().unwrap()), 50);
    assert_eq!(fdata[..8], before[..8], "sequence numbers untouched");
    assert_eq!(fdata[24..], before[24..], "no clear edge: left at zero; timeout untouched");
    // A clock behind: negative nanoseconds are borrowed from the seconds.
    let mut back = before;
    pps::translate_fdata(&mut back, |ns| ns - 1_000_000_000_000);
    assert_eq!(i64::from_ne_bytes(back[8..16].try_into().unwrap()), 1_799_999_000);
    assert_eq!(i32::from_ne_bytes(back[16..20].try_into().unwrap()), 999_999_900);
}

#[test]
fn a_restarted_daemon_takes_the_hosts_clock_over_where_it_was() {
    let params = Params::new(T0, 0.1, -37e-6);
    let mut live = VirtualClock::new(params, T0);
    let slew = JournalOp::Adjtimex(Timex { modes: ADJ_FREQUENCY | ADJ_STATUS, freq: 30 << 16, status: 0, ..Timex::default() });
    live.apply(T0 + SEC, &slew).unwrap();
    let mut text = format!("{}\n", slew.line(42, T0 + SEC));
    // The daemon (42) stops; its clock runs on with its corrections. A
    // process started again at 20 s takes it over as the lab's replay has it.
    let resumed = Replay::resume(params, T0, &text, T0 + 20 * SEC).unwrap();
    assert_eq!(resumed.now(T0 + 30 * SEC), live.now(T0 + 30 * SEC));
    assert_eq!(resumed.status(), 0);
    assert_eq!(resumes(&text), 0);
    text.push_str(&format!("{}\n", resume_line(50, T0 + 20 * SEC)));
    assert_eq!(resumes(&text), 1);
    let before = live.clone();
    let step = JournalOp::Adjtimex(Timex { modes: ADJ_SETOFFSET | ADJ_NANO, time_sec: 0, time_frac: 5_000_000, ..Timex::default() });
    live.apply(T0 + 21 * SEC, &step).unwrap();
    text.push_str(&format!("{}\n", step.line(50, T0 + 21 * SEC)));
    // The old process's calls after the restart, and a helper's, are not the daemon's.
    text.push_str(&format!("{}\n{}\n", step.line(42, T0 + 22 * SEC), step.line(51, T0 + 23 * SEC)));
    let replay = Replay::parse(params, T0, &text, "journal").unwrap();
    assert_eq!(replay.pid, Some(42));
    assert_eq!(replay.resumed, vec![(50, T0 + 20 * SEC)]);
    assert_eq!(replay.calls().count(), 2);
    for at in [T0 + 10 * SEC, T0 + 20 * SEC] {
        assert_eq!(replay.clock_at(at).now(at), before.now(at));
    }
    assert_eq!(replay.clock_at(T0 + 25 * SEC).now(T0 + 25 * SEC), live.now(T0 + 25 * SEC));
    // Continuous across the restart: no jump between just before and just after it.
    let (a, b) = (T0 + 20 * SEC - 1, T0 + 20 * SEC + 1);
    assert!((replay.clock_at(b).offset_at(b) - replay.clock_at(a).offset_at(a)).abs() < 1e-8);
}

#[test]
fn a_follower_fed_the_journal_in_pieces_has_the_replayed_clock() {
    let params = Params::new(T0, 0.1, -37e-6);
    let calls = [
        (T0 + SEC, JournalOp::Adjtimex(Timex { modes: ADJ_SETOFFSET | ADJ_NANO, time_sec: -1, time_frac: 900_000_000, ..Timex::default() })),
        (T0 + 2 * SEC, JournalOp::Adjtimex(Timex { modes: ADJ_FREQUENCY, freq: 37 << 16, ..Timex::default() })),
    ];
    let mut text: String = calls.iter().map(|(at, op)| format!("{}\n", op.line(42, *at))).collect();
    // A helper's line is not the daemon's; after a resume line the resumed process's are.
    text.push_str("43 0 S 0\n");
    text.push_str(&format!("{}\n", resume_line(44, T0 + 3 * SEC)));
    text.push_str(&format!("{}\n", JournalOp::SetTime(T0 + 4 * SEC + 123).line(44, T0 + 4 * SEC)));
    let mut followed = VirtualClock::new(params, T0);
    let mut follower = Follower::new();
    // Cut mid-line: the half line waits for the rest.
    for piece in [&text[..17], &text[17..70], &text[70..]] {
        follower.feed(piece, &mut followed).unwrap();
    }
    let replay = Replay::parse(params, T0, &text, "journal").unwrap();
    for at in [T0 + 5 * SEC, T0 + 100 * SEC] {
        assert_eq!(followed.now(at), replay.clock_at(at).now(at));
    }
    assert!(follower.feed("42 1 Q\n", &mut followed).is_err());
}

#[test]
fn a_shifted_timescale_moves_the_oscillator_and_true_time_together() {
    let p = Params::new(T0, 0.25, 1e-5);
    let shift: i128 = -315_532_800 * 1_000_000_000 + 7; // ten years back, and 7 ns
    let q = p.with_shift(&shift.to_string()).unwrap();
    let real = T0 + 100 * 1_000_000_000;
    assert_eq!(q.true_unix_ns(real), real + shift);
    let moved = q.raw_at(real).duration_since(p.raw_at(real)).as_nanos();
    assert!((moved - shift as i64).abs() <= 1, "the oscillator moves with the timescale: {moved} ns");
    let (a, b) = (VirtualClock::new(p, T0), VirtualClock::new(q, T0));
    assert!((a.offset_at(real) - b.offset_at(real)).abs() < 2e-9, "its offset from true time is the same");
    assert!((b.offset_at(real) - (0.25 + 1e-5 * 100.0)).abs() < 1e-9);
    assert_eq!(p.with_shift("").unwrap(), p);
    for bad in ["x", "1.5", "99999999999999999999999"] {
        assert!(p.with_shift(bad).is_err(), "{bad}");
    }
}
