//! Tests in the style "build source, drive timeout, craft the reply from the
//! request bytes, handle, assert_matches".

use super::*;
use crate::time::ERA_SECS;
use proptest::prelude::*;
use RejectReason as R;

macro_rules! assert_matches {
    ($e:expr, $p:pat $(if $g:expr)? $(,)?) => {
        match $e {
            $p $(if $g)? => {}
            ref other => panic!("{:?} does not match {}", other, stringify!($p $(if $g)?)),
        }
    };
}

const RANDOM: u64 = 0x1234_5678_9abc_def0;

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn ms(x: i64) -> NtpDuration {
    NtpDuration::from_nanos(x * 1_000_000)
}

fn secs(x: u64) -> Instant {
    Instant::from_secs(x)
}

/// The default configuration without poll jitter, so schedules are exact.
fn config() -> SourceConfig {
    SourceConfig { poll_jitter: false, ..SourceConfig::default() }
}

fn source(config: SourceConfig) -> Source {
    Source::new(config, Instant::ZERO).unwrap()
}

/// Drives one due poll and returns the request bytes.
fn poll(s: &mut Source, now: Instant, local: NtpTime, random: u64) -> [u8; 48] {
    let mut buf = [0xa5u8; 48];
    let tx = s.handle_timeout(now, local, random, &mut buf).expect("a request is due");
    assert_eq!(tx.len, REQUEST_LEN);
    buf
}

fn parse(bytes: &[u8]) -> Repr {
    Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap()
}

/// What a well-behaved stratum-2 server answers to `request`, with its
/// receive and transmit times `t2`, `t3` (server clock).
fn reply_to(request: &[u8], t2: NtpTime, t3: NtpTime) -> Repr {
    let q = parse(request);
    Repr {
        leap: LeapIndicator::NoWarning,
        version: q.version,
        mode: Mode::Server,
        stratum: 2,
        poll: q.poll,
        precision: -20,
        root_delay: NtpShort::from_bits(0x100),
        root_dispersion: NtpShort::from_bits(0x80),
        reference_id: ReferenceId([192, 0, 2, 1]),
        reference_timestamp: (t2 + NtpDuration::from_seconds(-30)).to_timestamp(),
        origin_timestamp: q.transmit_timestamp,
        receive_timestamp: t2.to_timestamp(),
        transmit_timestamp: t3.to_timestamp(),
    }
}

/// A kiss-o'-death as ntpd sends it: LI 3, stratum 0, the code in the refid,
/// receive and transmit equal to the origin.
fn kiss_to(request: &[u8], code: [u8; 4], poll_log2: i8) -> [u8; 48] {
    let q = parse(request);
    Repr {
        leap: LeapIndicator::Unsynchronized,
        stratum: 0,
        poll: poll_log2,
        reference_id: ReferenceId(code),
        receive_timestamp: q.transmit_timestamp,
        transmit_timestamp: q.transmit_timestamp,
        ..reply_to(request, NtpTime::ERA1, NtpTime::ERA1)
    }
    .to_bytes()
}

/// One exchange over a network path, all times exact multiples of 2^-32 s.
#[derive(Clone, Copy, Debug)]
struct Path {
    /// True time when the request leaves.
    t0: NtpTime,
    /// Client clock minus true time.
    client_err: NtpDuration,
    /// Server clock minus true time.
    server_err: NtpDuration,
    out: NtpDuration,
    back: NtpDuration,
    /// Time the server holds the request.
    turn: NtpDuration,
}

impl Path {
    fn new(t0: NtpTime) -> Self {
        Path { t0, client_err: ms(0), server_err: ms(0), out: ms(10), back: ms(10), turn: ms(1) }
    }
    fn t1(&self) -> NtpTime {
        self.t0 + self.client_err
    }
    fn t2(&self) -> NtpTime {
        self.t0 + self.out + self.server_err
    }
    fn t3(&self) -> NtpTime {
        self.t2() + self.turn
    }
    fn t4(&self) -> NtpTime {
        self.t0 + self.out + self.turn + self.back + self.client_err
    }
}

/// Polls at `now`, answers over `path` 50 ms later, returns the event.
fn exchange(s: &mut Source, now: Instant, path: &Path, random: u64) -> SourceEvent {
    let req = poll(s, now, path.t1(), random);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    s.handle_response(now + Duration::from_millis(50), &rep, path.t4(), None)
}

fn assert_nanos(d: NtpDuration, want_nanos: i64) {
    assert!((d.as_nanos() - want_nanos).abs() <= 1, "{d:?} is not {want_nanos} ns");
}

fn t2024() -> NtpTime {
    t("2024-06-01T12:00:00Z")
}

/// A default path whose true send time follows the monotonic time `now`, so
/// that every poll gets fresh server timestamps.
fn path_at(now: Instant) -> Path {
    Path::new(t2024() + NtpDuration::from_nanos(now.as_nanos() as i64))
}

// ---- request and configuration --------------------------------------------

#[test]
fn request_is_minimal_and_carries_the_random_value() {
    let mut s = source(config());
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    assert_eq!(req[0], 0x23, "LI 0, VN 4, mode 3");
    assert_eq!(req[1], 0, "stratum");
    assert_eq!(req[2], 6, "poll");
    assert!(req[3..40].iter().all(|&b| b == 0), "{req:02x?}");
    assert_eq!(req[40..48], RANDOM.to_be_bytes(), "transmit is the random value, not the clock");

    let mut s = source(SourceConfig { version: 3, ..config() });
    let req = poll(&mut s, Instant::ZERO, t2024(), 0);
    assert_eq!(req[0], 0x1b, "LI 0, VN 3, mode 3");
    assert_eq!(parse(&req).transmit_timestamp, NtpTimestamp::from_bits(1), "zero is never sent");
}

#[test]
fn config_ranges() {
    assert_eq!(SourceConfig::default().poll_min_log2, 6);
    assert_eq!(SourceConfig::default().poll_max_log2, 10);
    assert!(Source::new(SourceConfig { poll_min_log2: 4, ..config() }, Instant::ZERO).is_ok());
    let bad = |c: SourceConfig| Source::new(c, Instant::ZERO).unwrap_err();
    assert_eq!(bad(SourceConfig { poll_min_log2: 3, ..config() }), ConfigError::PollMinTooSmall { poll_min_log2: 3 });
    assert_eq!(bad(SourceConfig { poll_max_log2: 18, ..config() }), ConfigError::PollMaxTooLarge { poll_max_log2: 18 });
    assert_matches!(bad(SourceConfig { poll_min_log2: 9, poll_max_log2: 8, ..config() }), ConfigError::PollMinAboveMax { .. });
    for version in [0, 6, 7] {
        assert_eq!(bad(SourceConfig { version, ..config() }), ConfigError::Version { version });
    }
    // NTPv5 (source/v5.rs): version 5, or "auto" (v5_auto), which starts at version 4 only.
    assert!(Source::new(SourceConfig { version: 5, ..config() }, Instant::ZERO).is_ok());
    assert!(Source::new(SourceConfig { v5_auto: true, ..config() }, Instant::ZERO).is_ok());
    assert_eq!(bad(SourceConfig { version: 3, v5_auto: true, ..config() }), ConfigError::Version { version: 3 });
    assert!(bad(SourceConfig { poll_min_log2: 2, ..config() }).to_string().contains("MINPOLL"));
    // The bounds themselves are valid, and a fixed poll.
    let edge = SourceConfig { poll_min_log2: 4, poll_max_log2: MAXPOLL_LOG2, precision_log2: -7, ..config() };
    let s = Source::new(edge, Instant::ZERO).unwrap();
    assert_eq!((s.config().poll_max_log2, s.config().precision_log2), (MAXPOLL_LOG2, -7), "the source keeps its configuration");
    assert!(Source::new(SourceConfig { poll_min_log2: 8, poll_max_log2: 8, ..config() }, Instant::ZERO).is_ok());
}

#[test]
fn only_bogus_and_zero_origins_are_attack_signatures_and_rejections_add_up() {
    for reason in RejectReason::ALL {
        assert_eq!(reason.is_attack_signature(), matches!(reason, R::Bogus | R::ZeroOrigin), "{reason:?}");
    }
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let good = reply_to(&req, path.t2(), path.t3());
    for origin in [RANDOM + 1, RANDOM + 2] {
        let forged = Repr { origin_timestamp: NtpTimestamp::from_bits(origin), ..good };
        assert_matches!(s.handle_response(secs(1), &forged.to_bytes(), path.t4(), None), SourceEvent::Rejected(R::Bogus));
    }
    assert_eq!((s.counters().rejected(R::Bogus), s.counters().rejected_total()), (2, 2));
}

#[test]
fn early_timeouts_do_nothing() {
    let mut s = source(config());
    poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    let mut buf = [0u8; 48];
    assert_eq!(s.handle_timeout(secs(63), t2024(), 1, &mut buf), None);
    assert_eq!(buf, [0u8; 48]);
    assert_eq!(s.poll_timeout(), Some(secs(64)));
    assert_eq!(s.counters().requests_sent, 1);
}

// ---- measurements ------------------------------------------------------------

#[test]
fn valid_reply_gives_exact_offset_and_delay() {
    // Server clock +5 ms; 10 ms out, 30 ms back: offset 5 + (10 - 30) / 2 = -5 ms.
    let mut s = source(config());
    let path = Path { server_err: ms(5), out: ms(10), back: ms(30), ..Path::new(t2024()) };
    let ev = exchange(&mut s, Instant::ZERO, &path, RANDOM);
    assert_matches!(ev, SourceEvent::Sample(_));
    let SourceEvent::Sample(m) = ev else { unreachable!() };
    assert_nanos(m.offset, -5_000_000);
    assert_nanos(m.delay, 40_000_000);
    assert_eq!((m.stratum, m.leap, m.reference_id), (2, LeapIndicator::NoWarning, ReferenceId([192, 0, 2, 1])));
    assert_eq!((m.root_delay.to_bits(), m.root_dispersion.to_bits(), m.precision_log2, m.poll_log2), (0x100, 0x80, -20, 6));
    assert_eq!(m.local_send_time, path.t1());
    assert_eq!(m.local_receive_time, path.t4());
    assert_eq!(m.received_at, Instant::from_nanos(50_000_000));
    // ε = 2^-20 + 2^-20 + 15e-6 × 41 ms = 953.674 × 2 + 615 ns.
    assert_nanos(m.dispersion, 2522);
    assert_eq!(s.leap(), Some(LeapIndicator::NoWarning));
    assert_eq!(s.reach(), 1);
    assert_eq!(s.counters().samples, 1);

    // Symmetric 20/20 ms: offset +5 ms.
    let path = Path { server_err: ms(5), out: ms(20), back: ms(20), ..Path::new(t2024()) };
    let ev = exchange(&mut s, secs(64), &path, RANDOM + 1);
    assert_matches!(ev, SourceEvent::Sample(m) if (m.offset.as_nanos() - 5_000_000).abs() <= 1);
}

#[test]
fn negative_delay_is_clamped_to_precision() {
    // The server claims to have held the request 100 ms over a 40 ms round trip.
    let mut s = source(config());
    let path = Path { turn: ms(100), ..Path::new(t2024()) };
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    let rx = path.t1() + ms(40);
    assert_matches!(
        s.handle_response(secs(1), &rep, rx, None),
        SourceEvent::Sample(m) if m.delay == NtpDuration::from_bits(1 << 12)
    );
}

#[test]
fn actual_transmit_time_replaces_t1() {
    // The driver read the clock 3 ms before the datagram really left.
    let mut s = source(config());
    let path = Path { server_err: ms(5), out: ms(10), back: ms(30), ..Path::new(t2024()) };
    let req = poll(&mut s, Instant::ZERO, path.t1() + ms(-3), RANDOM);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    let ev = s.handle_response(secs(1), &rep, path.t4(), Some(path.t1()));
    assert_matches!(ev, SourceEvent::Sample(m) if (m.offset.as_nanos() + 5_000_000).abs() <= 1 && m.local_send_time == path.t1());
}

#[test]
fn exchange_straddling_the_2036_era_wrap() {
    // Request leaves 20 ms before 2036-02-07T06:28:16Z, reply arrives after it.
    let path = Path { t0: NtpTime::ERA1 + ms(-20), server_err: ms(5), out: ms(10), back: ms(30), ..Path::new(t2024()) };
    assert_eq!((path.t1().era(), path.t4().era()), (0, 1));
    let mut s = source(config());
    let ev = exchange(&mut s, Instant::ZERO, &path, RANDOM);
    assert_matches!(ev, SourceEvent::Sample(m) if (m.offset.as_nanos() + 5_000_000).abs() <= 1
        && (m.delay.as_nanos() - 40_000_000).abs() <= 1);

    // Client still in era 0 (3 s slow), server already in era 1 (2 s fast).
    let path = Path { t0: NtpTime::ERA1 + ms(-1000), client_err: ms(-2000), server_err: ms(3000), ..Path::new(t2024()) };
    assert_eq!((path.t1().era(), path.t2().era()), (0, 1));
    let ev = exchange(&mut s, secs(64), &path, RANDOM + 1);
    assert_matches!(ev, SourceEvent::Sample(m) if (m.offset.as_nanos() - 5_000_000_000).abs() <= 1);
}

// ---- on-wire checks ----------------------------------------------------------

#[test]
fn the_same_reply_twice_gives_one_sample() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Sample(_));
    assert_matches!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Rejected(R::Duplicate));
    assert_matches!(s.handle_response(secs(6), &rep, path.t4() + ms(5000), None), SourceEvent::Rejected(R::Duplicate));
    assert_eq!(s.counters().samples, 1);
    assert_eq!(s.counters().rejected(R::Duplicate), 2);
}

#[test]
fn origin_plus_one_is_bogus_and_the_real_reply_still_counts() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let good = reply_to(&req, path.t2(), path.t3());
    let forged = Repr { origin_timestamp: NtpTimestamp::from_bits(RANDOM + 1), ..good };
    assert_matches!(s.handle_response(secs(1), &forged.to_bytes(), path.t4(), None), SourceEvent::Rejected(R::Bogus));
    assert!(R::Bogus.is_attack_signature());
    assert_matches!(s.handle_response(secs(1), &good.to_bytes(), path.t4(), None), SourceEvent::Sample(_));
    assert_eq!(s.counters().rejected(R::Bogus), 1);
}

#[test]
fn a_second_distinct_reply_to_one_request_is_rejected() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let first = reply_to(&req, path.t2(), path.t3());
    let second = Repr { transmit_timestamp: (path.t3() + ms(1)).to_timestamp(), ..first };
    assert_matches!(s.handle_response(secs(1), &first.to_bytes(), path.t4(), None), SourceEvent::Sample(_));
    assert_matches!(s.handle_response(secs(1), &second.to_bytes(), path.t4(), None), SourceEvent::Rejected(R::AlreadyAnswered));
    assert_eq!(s.counters().samples, 1);
}

#[test]
fn a_reply_without_a_request_is_rejected() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let fake_request = Repr {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Client,
        stratum: 0,
        poll: 6,
        precision: 0,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: ReferenceId::NONE,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::ZERO,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: NtpTimestamp::from_bits(RANDOM),
    }
    .to_bytes();
    let rep = reply_to(&fake_request, path.t2(), path.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Rejected(R::Unsolicited));
    assert_eq!(s.reach(), 0);
}

#[test]
fn a_late_reply_to_a_superseded_request_is_bogus() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let old = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let new = poll(&mut s, secs(64), path.t1(), RANDOM + 7);
    let late = reply_to(&old, path.t2(), path.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(65), &late, path.t4(), None), SourceEvent::Rejected(R::Bogus));
    let rep = reply_to(&new, path.t2(), path.t3() + ms(1)).to_bytes();
    assert_matches!(s.handle_response(secs(65), &rep, path.t4(), None), SourceEvent::Sample(_));
}

#[test]
fn each_header_check_rejects_with_its_reason() {
    type Mutate = fn(&mut Repr);
    let cases: &[(&str, Mutate, RejectReason)] = &[
        ("version 0", |r| r.version = 0, R::BadVersion),
        ("version 5", |r| r.version = 5, R::BadVersion),
        ("version 7", |r| r.version = 7, R::BadVersion),
        ("mode 3", |r| r.mode = Mode::Client, R::BadMode),
        ("mode 5", |r| r.mode = Mode::Broadcast, R::BadMode),
        ("mode 2", |r| r.mode = Mode::SymmetricPassive, R::BadMode),
        ("mode 0", |r| r.mode = Mode::Reserved, R::BadMode),
        ("origin + 1", |r| r.origin_timestamp = NtpTimestamp::from_bits(r.origin_timestamp.to_bits() + 1), R::Bogus),
        ("origin zero", |r| r.origin_timestamp = NtpTimestamp::ZERO, R::ZeroOrigin),
        ("transmit zero", |r| r.transmit_timestamp = NtpTimestamp::ZERO, R::ZeroTransmit),
        ("receive zero", |r| r.receive_timestamp = NtpTimestamp::ZERO, R::ZeroReceive),
        ("LI 3", |r| r.leap = LeapIndicator::Unsynchronized, R::Unsynchronized),
        ("stratum 16", |r| r.stratum = 16, R::StratumUnsynchronized),
        ("stratum 255", |r| r.stratum = 255, R::StratumUnsynchronized),
        (
            "reference 1 s after transmit",
            |r| r.reference_timestamp = r.transmit_timestamp.wrapping_add(NtpDuration::from_seconds(1)),
            R::ReferenceAfterTransmit,
        ),
        ("root dispersion 16 s", |r| r.root_dispersion = NtpShort::from_bits(16 << 16), R::RootDistance),
        ("root delay 32 s", |r| r.root_delay = NtpShort::from_bits(32 << 16), R::RootDistance),
        (
            "root delay 2 s + dispersion 15 s",
            |r| {
                r.root_delay = NtpShort::from_bits(2 << 16);
                r.root_dispersion = NtpShort::from_bits(15 << 16);
            },
            R::RootDistance,
        ),
    ];
    for (name, mutate, reason) in cases {
        let mut s = source(config());
        let path = Path::new(t2024());
        let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
        let mut rep = reply_to(&req, path.t2(), path.t3());
        mutate(&mut rep);
        let ev = s.handle_response(secs(1), &rep.to_bytes(), path.t4(), None);
        assert_eq!(ev, SourceEvent::Rejected(*reason), "{name}");
        assert_eq!(s.reach(), 0, "{name}");
        assert_eq!(s.counters().rejected(*reason), 1, "{name}");
        assert_eq!((s.counters().samples, s.counters().rejected_total()), (0, 1), "{name}");
        assert!(!reason.name().is_empty() && reason.rule().starts_with("RFC"), "{name}");
    }
}

#[test]
fn a_reply_over_the_maximum_delay_counts_for_reach_and_gives_no_sample() {
    // The path's round trip is 20 ms (10 ms each way, 1 ms held by the server).
    for (max_ms, sample) in [(19, false), (20, true), (25, true)] {
        let mut s = source(SourceConfig { max_delay: Some(ms(max_ms)), ..config() });
        let path = Path::new(t2024());
        let ev = exchange(&mut s, Instant::ZERO, &path, RANDOM);
        assert_eq!(matches!(ev, SourceEvent::Sample(_)), sample, "max {max_ms} ms: {ev:?}");
        if !sample {
            assert_eq!(ev, SourceEvent::Rejected(R::MaxDelay));
            assert_eq!(s.counters().rejected(R::MaxDelay), 1);
        }
        assert_eq!(s.reach(), 1, "max {max_ms} ms: a valid reply reaches");
    }
    assert!(R::MaxDelay.rule().contains("maxdelay"));
    for bad in [ms(0), ms(-1), NtpDuration::from_seconds(17)] {
        let e = SourceConfig { max_delay: Some(bad), ..config() }.validate().unwrap_err();
        assert!(e.to_string().contains("maximum delay"), "{e}");
    }
    assert!(SourceConfig { max_delay: Some(NtpDuration::from_seconds(16)), ..config() }.validate().is_ok());
}

#[test]
fn a_reply_over_the_delay_ratio_to_the_least_recent_round_trip_gives_no_sample() {
    // chrony's maxdelayratio 2 (round trips of 10 ms back plus `out`): the
    // first reply (20 ms) sets the least; 39 ms is within twice it, 41 ms
    // is not (and is not held, so 41 ms stays out); a 17 ms one lowers the
    // least: 35 ms is then out, 33 ms in.
    let mut s = source(SourceConfig { max_delay_ratio: Some(2.0), ..config() });
    let mut at = Instant::ZERO;
    for (i, (out_ms, sample)) in [(10, true), (29, true), (31, false), (31, false), (7, true), (25, false), (23, true)].into_iter().enumerate() {
        let path = Path { out: ms(out_ms), ..Path::new(t2024() + NtpDuration::from_seconds(64 * i as i64)) };
        let ev = exchange(&mut s, at, &path, RANDOM + at.as_nanos());
        assert_eq!(matches!(ev, SourceEvent::Sample(_)), sample, "{out_ms} ms out: {ev:?}");
        if !sample {
            assert_eq!(ev, SourceEvent::Rejected(R::MaxDelayRatio));
        }
        assert_eq!(s.reach() & 1, 1, "a valid reply reaches");
        at = s.poll_timeout().expect("a next poll");
    }
    assert_eq!(s.counters().rejected(R::MaxDelayRatio), 3);
    assert!(R::MaxDelayRatio.rule().contains("maxdelayratio"));
    for bad in [1.0, 0.5, -2.0, f64::NAN, f64::INFINITY, 2e6] {
        let e = SourceConfig { max_delay_ratio: Some(bad), ..config() }.validate().unwrap_err();
        assert!(e.to_string().contains("maximum delay ratio"), "{e}");
    }
    for bad in [0.0, -2.0, f64::NAN, f64::INFINITY, 2e6] {
        let e = SourceConfig { max_delay_dev_ratio: Some(bad), ..config() }.validate().unwrap_err();
        assert!(e.to_string().contains("maximum delay deviation ratio"), "{e}");
    }
    assert!(SourceConfig { max_delay_ratio: Some(1.5), max_delay_dev_ratio: Some(0.5), ..config() }.validate().is_ok());
}

#[test]
fn header_limits_that_still_pass() {
    type Mutate = fn(&mut Repr);
    let cases: &[(&str, Mutate)] = &[
        ("root distance just under 16 s", |r| {
            r.root_delay = NtpShort::from_bits(2);
            r.root_dispersion = NtpShort::from_bits((16 << 16) - 2);
        }),
        ("reference equal to transmit", |r| r.reference_timestamp = r.transmit_timestamp),
        ("reference unknown (zero)", |r| r.reference_timestamp = NtpTimestamp::ZERO),
        ("stratum 15", |r| r.stratum = 15),
        ("version 1", |r| r.version = 1),
        ("leap insert", |r| r.leap = LeapIndicator::Insert),
    ];
    for (name, mutate) in cases {
        let mut s = source(config());
        let path = Path::new(t2024());
        let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
        let mut rep = reply_to(&req, path.t2(), path.t3());
        mutate(&mut rep);
        let ev = s.handle_response(secs(1), &rep.to_bytes(), path.t4(), None);
        assert!(matches!(ev, SourceEvent::Sample(m) if m.leap == rep.leap), "{name}: {ev:?}");
    }
}

#[test]
fn short_datagrams_are_refused() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    for n in 0..48 {
        assert_matches!(s.handle_response(secs(1), &rep[..n], path.t4(), None), SourceEvent::Rejected(R::TooShort));
    }
    assert_matches!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Sample(_));
}

#[test]
fn crypto_nak_answers_the_request_but_is_no_sample() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    let mut nak = rep.to_vec();
    nak.extend_from_slice(&[0; 4]);
    assert_matches!(s.handle_response(secs(1), &nak, path.t4(), None), SourceEvent::Rejected(R::CryptoNak));
    let other = Repr { transmit_timestamp: (path.t3() + ms(1)).to_timestamp(), ..parse(&rep) }.to_bytes();
    assert_matches!(s.handle_response(secs(1), &other, path.t4(), None), SourceEvent::Rejected(R::AlreadyAnswered));
}

#[test]
fn trailing_extension_fields_do_not_disturb_the_header_checks() {
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let mut rep = reply_to(&req, path.t2(), path.t3()).to_bytes().to_vec();
    rep.extend_from_slice(&[0x01, 0x04, 0x00, 0x1c]);
    rep.extend_from_slice(&[0; 24]);
    assert_matches!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Sample(_));
}

// ---- kiss-o'-death -----------------------------------------------------------

#[test]
fn rate_with_a_forged_origin_is_ignored() {
    let mut s = source(config());
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    let mut kod = kiss_to(&req, *b"RATE", 12);
    kod[24..32].copy_from_slice(&(RANDOM ^ 0xff).to_be_bytes());
    assert_matches!(s.handle_response(secs(1), &kod, t2024(), None), SourceEvent::Rejected(R::Bogus));
    kod[24..32].copy_from_slice(&[0; 8]);
    assert_matches!(s.handle_response(secs(1), &kod, t2024(), None), SourceEvent::Rejected(R::ZeroOrigin));
    assert_eq!(s.poll_log2(), 6);
    assert_eq!(s.poll_timeout(), Some(secs(64)));
    assert_eq!(s.counters().kiss_rate, 0);
}

#[test]
fn rate_raises_the_poll_and_holds_back_the_next_request() {
    let mut s = source(config());
    let mut buf = [0u8; 48];
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    // The server advertises our own poll: at least one step up.
    let ev = s.handle_response(secs(1), &kiss_to(&req, *b"RATE", 6), t2024(), None);
    assert_eq!(ev, SourceEvent::RateLimited { poll_log2: 7, next_poll_at: secs(1 + 128) });
    assert_eq!(s.poll_timeout(), Some(secs(129)));
    assert_eq!(s.handle_timeout(secs(128), t2024(), 1, &mut buf), None);
    let req = poll(&mut s, secs(129), t2024(), RANDOM + 1);
    assert_eq!(parse(&req).poll, 7, "the request says we slowed down");

    // Again: and again one step (RFC 5905 §7.4 b).
    let ev = s.handle_response(secs(130), &kiss_to(&req, *b"RATE", 6), t2024(), None);
    assert_matches!(ev, SourceEvent::RateLimited { poll_log2: 8, .. });

    // A RATE advertising poll 17 is capped at 13 (RFC 8633 §5.4).
    let at = s.poll_timeout().unwrap();
    let req = poll(&mut s, at, t2024(), RANDOM + 2);
    let ev = s.handle_response(at, &kiss_to(&req, *b"RATE", 17), t2024(), None);
    assert_eq!(ev, SourceEvent::RateLimited { poll_log2: 13, next_poll_at: at + Duration::from_secs(8192) });
    assert_eq!(s.counters().kiss_rate, 3);

    // The floor survives valid replies and a lower system poll.
    let at = s.poll_timeout().unwrap();
    assert_matches!(exchange(&mut s, at, &path_at(at), RANDOM + 3), SourceEvent::Sample(_));
    s.set_poll_log2(at, 6);
    assert_eq!(s.poll_log2(), 13);
    assert_eq!(s.poll_timeout(), Some(at + Duration::from_secs(8192)));
}

#[test]
fn rate_hold_survives_rescheduling() {
    // Poll at 64 s, RATE at 65 s: nothing before 65 + 128 s, even though the
    // regular schedule (64 + 128 s) would be a second earlier.
    let mut s = source(config());
    assert_matches!(exchange(&mut s, Instant::ZERO, &path_at(Instant::ZERO), RANDOM), SourceEvent::Sample(_));
    let req = poll(&mut s, secs(64), t2024(), RANDOM + 1);
    assert_matches!(s.handle_response(secs(65), &kiss_to(&req, *b"RATE", 0), t2024(), None), SourceEvent::RateLimited {
        poll_log2: 7,
        ..
    });
    s.set_poll_log2(secs(66), 6);
    assert_eq!(s.poll_timeout(), Some(secs(65 + 128)));
    s.reset(secs(70));
    assert_eq!(s.poll_timeout(), Some(secs(65 + 128)));
}

#[test]
fn rate_ends_a_burst() {
    let mut s = source(SourceConfig { iburst: true, ..config() });
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    assert!(s.in_burst());
    assert_matches!(s.handle_response(secs(1), &kiss_to(&req, *b"RATE", 0), t2024(), None), SourceEvent::RateLimited {
        poll_log2: 7,
        ..
    });
    assert!(!s.in_burst());
    assert_eq!(s.poll_timeout(), Some(secs(129)));
}

#[test]
fn deny_and_rstr_demobilize_for_good() {
    for code in [KissCode::Deny, KissCode::Rstr] {
        let mut s = source(SourceConfig { iburst: true, ..config() });
        let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
        // A forged one first: nothing happens.
        let mut forged = kiss_to(&req, code.to_octets(), 6);
        forged[31] ^= 1;
        assert_matches!(s.handle_response(secs(1), &forged, t2024(), None), SourceEvent::Rejected(R::Bogus));
        assert!(s.poll_timeout().is_some());

        let ev = s.handle_response(secs(1), &kiss_to(&req, code.to_octets(), 6), t2024(), None);
        assert_eq!(ev, SourceEvent::Demobilize(code));
        assert_eq!(s.demobilized_by(), Some(code));
        assert_eq!(s.poll_timeout(), None);
        let mut buf = [0u8; 48];
        for hour in 0..48u64 {
            assert_eq!(s.handle_timeout(secs(hour * 3600), t2024(), hour, &mut buf), None);
        }
        s.set_poll_log2(secs(10), 6);
        s.reset(secs(10));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.counters().requests_sent, 1);
        let path = Path::new(t2024());
        let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
        assert_matches!(s.handle_response(secs(2), &rep, path.t4(), None), SourceEvent::Rejected(R::Demobilized));
    }
}

#[test]
fn ntsn_is_handed_to_the_nts_layer() {
    let mut s = source(config());
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    assert_eq!(s.handle_response(secs(1), &kiss_to(&req, *b"NTSN", 6), t2024(), None), SourceEvent::NtsNak);
    assert_eq!((s.counters().kiss_ntsn, s.poll_log2(), s.poll_timeout()), (1, 6, Some(secs(64))));
}

#[test]
fn stratum_0_without_a_code_is_an_unsynchronized_server_not_a_kiss() {
    let mut s = source(config());
    let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
    let ev = s.handle_response(secs(1), &kiss_to(&req, [0; 4], 12), t2024(), None);
    assert_eq!(ev, SourceEvent::Rejected(RejectReason::StratumUnsynchronized));
    assert_eq!(s.counters().kiss_other, 0);
    assert_eq!((s.poll_log2(), s.reach()), (6, 0));
}

#[test]
fn other_kiss_codes_are_information_only() {
    for code in [*b"INIT", *b"STEP", *b"ACST", *b"XFOO", *b"ZZZZ"] {
        let mut s = source(config());
        let req = poll(&mut s, Instant::ZERO, t2024(), RANDOM);
        let ev = s.handle_response(secs(1), &kiss_to(&req, code, 12), t2024(), None);
        assert_eq!(ev, SourceEvent::Kiss(KissCode::from_octets(code)));
        assert_eq!((s.poll_log2(), s.poll_timeout(), s.reach()), (6, Some(secs(64)), 0));
        assert_eq!(s.counters().kiss_other, 1);
    }
    // A stratum-0 reply with LI 0 and plausible timestamps is still no sample.
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let rep = Repr { stratum: 0, reference_id: ReferenceId(*b"INIT"), ..reply_to(&req, path.t2(), path.t3()) };
    assert_matches!(s.handle_response(secs(1), &rep.to_bytes(), path.t4(), None), SourceEvent::Kiss(KissCode::Init));
}

// ---- poll process ------------------------------------------------------------

/// Drives the source until `until_secs`, answering the requests whose index is
/// in `answered`, and returns the send times in seconds.
fn drive(s: &mut Source, until_secs: u64, answered: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut sent = Vec::new();
    for i in 0..10_000 {
        let Some(at) = s.poll_timeout() else { break };
        if at > secs(until_secs) {
            break;
        }
        let path = path_at(at);
        let req = poll(s, at, path.t1(), RANDOM.wrapping_add(i as u64 * 0x9e37_79b9));
        sent.push(at.as_nanos() as f64 / 1e9);
        if answered(i) {
            let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
            assert_matches!(s.handle_response(at + Duration::from_millis(50), &rep, path.t4(), None), SourceEvent::Sample(_));
        }
    }
    sent
}

#[test]
fn iburst_sends_eight_requests_two_seconds_apart_at_start() {
    let mut s = source(SourceConfig { iburst: true, ..config() });
    let sent = drive(&mut s, 200, |_| false);
    assert_eq!(sent, [0., 2., 4., 6., 8., 10., 12., 14., 64., 128., 192.]);
    // Answered, the burst is the same and the reach register shifts only per poll.
    let mut s = source(SourceConfig { iburst: true, ..config() });
    let sent = drive(&mut s, 200, |_| true);
    assert_eq!(sent, [0., 2., 4., 6., 8., 10., 12., 14., 64., 128., 192.]);
    assert_eq!(s.reach(), 0b1111);
}

#[test]
fn without_iburst_the_first_poll_is_a_single_request() {
    let mut s = source(config());
    assert_eq!(drive(&mut s, 200, |_| false), [0., 64., 128., 192.]);
}

#[test]
fn iburst_again_after_the_server_is_lost() {
    let mut s = source(SourceConfig { iburst: true, ..config() });
    // Burst at 0..14 answered, polls at 64.. answered up to 128, then silence.
    let sent = drive(&mut s, 128, |_| true);
    assert_eq!(sent.len(), 10);
    assert_eq!(s.reach(), 0b111);
    let sent = drive(&mut s, 704, |_| false);
    // The eighth silent poll finds the register empty and starts a new burst.
    assert_eq!(sent[..8], [192., 256., 320., 384., 448., 512., 576., 640.]);
    assert!(!s.is_reachable());
    assert_eq!(sent[8..], [642., 644., 646., 648., 650., 652., 654., 704.]);
}

#[test]
fn reach_register_after_drops() {
    let mut s = source(config());
    let mut reach = Vec::new();
    for i in 0..14usize {
        let answered = matches!(i, 0 | 1 | 2 | 5);
        drive(&mut s, 64 * i as u64, |_| answered);
        reach.push(s.reach());
    }
    assert_eq!(reach[..6], [0b1, 0b11, 0b111, 0b1110, 0b1_1100, 0b11_1001]);
    assert_eq!(reach[12], 0b1000_0000);
    assert!(reach[..13].iter().all(|&r| r != 0));
    assert_eq!(reach[13], 0, "8 unanswered polls after the last reply");
    assert!(!s.is_reachable());
}

#[test]
fn unreachable_server_is_polled_less_and_less() {
    let mut s = source(config());
    let sent = drive(&mut s, 20_000, |_| false);
    let intervals: Vec<f64> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(intervals[..12], [64.; 12]);
    assert_eq!(intervals[12..17], [128., 256., 512., 1024., 1024.]);
    assert_eq!(s.unreach_polls(), UNREACH_POLLS);
    assert_eq!(s.host_poll_log2(), 10);

    // Restored: the first reply is heard at the backed-off interval; the poll
    // after it finds the register non-empty and returns to the system poll
    // (A.5.7 resets hpoll in poll(), not on reception).
    let last = *sent.last().unwrap() as u64;
    let sent = drive(&mut s, last + 2048 + 64, |_| true);
    assert_eq!(sent, [(last + 1024) as f64, (last + 2048) as f64, (last + 2048 + 64) as f64]);
    assert_eq!(s.unreach_polls(), 0);
    assert_eq!(s.host_poll_log2(), 6);
}

#[test]
fn burst_at_each_poll_while_reachable() {
    let mut s = source(SourceConfig { burst: true, ..config() });
    let sent = drive(&mut s, 129, |_| true);
    assert_eq!(sent, [0., 64., 66., 68., 70., 72., 74., 76., 78., 128.]);
}

#[test]
fn system_poll_and_server_poll() {
    let mut s = source(config());
    assert_matches!(exchange(&mut s, Instant::ZERO, &path_at(Instant::ZERO), RANDOM), SourceEvent::Sample(_));
    // The system slows to 2^8 s; the server still advertises the 2^6 we sent,
    // so one more poll comes at 64 s, carrying 8; its echo sets 256 s.
    s.set_poll_log2(secs(1), 8);
    assert_eq!(s.poll_timeout(), Some(secs(64)));
    let path = path_at(secs(64));
    let req = poll(&mut s, secs(64), path.t1(), RANDOM + 1);
    assert_eq!(parse(&req).poll, 8);
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(65), &rep, path.t4(), None), SourceEvent::Sample(_));
    assert_eq!(s.poll_timeout(), Some(secs(64 + 256)));
    // The server asks for 2^6 (RFC 5905 §13.2: oversampling is allowed).
    let path = path_at(secs(320));
    let req = poll(&mut s, secs(320), path.t1(), RANDOM + 2);
    let rep = Repr { poll: 6, ..reply_to(&req, path.t2(), path.t3()) }.to_bytes();
    assert_matches!(s.handle_response(secs(321), &rep, path.t4(), None), SourceEvent::Sample(_));
    assert_eq!(s.poll_timeout(), Some(secs(320 + 64)));
    // Nor below the configured minimum, whatever the server says.
    let path = path_at(secs(384));
    let req = poll(&mut s, secs(384), path.t1(), RANDOM + 3);
    let rep = Repr { poll: 0, ..reply_to(&req, path.t2(), path.t3()) }.to_bytes();
    assert_matches!(s.handle_response(secs(385), &rep, path.t4(), None), SourceEvent::Sample(_));
    assert_eq!(s.poll_timeout(), Some(secs(384 + 64)));
    // System values are clamped to the configured range.
    s.set_poll_log2(secs(390), 2);
    assert_eq!(s.host_poll_log2(), 6);
    s.set_poll_log2(secs(390), 30);
    assert_eq!(s.host_poll_log2(), 10);
}

#[test]
fn a_shortened_interval_never_schedules_into_the_past() {
    let mut s = source(SourceConfig { poll_max_log2: 12, ..config() });
    s.set_poll_log2(Instant::ZERO, 12);
    assert_matches!(exchange(&mut s, Instant::ZERO, &path_at(Instant::ZERO), RANDOM), SourceEvent::Sample(_));
    let at = s.poll_timeout().unwrap();
    let path = path_at(at);
    let req = poll(&mut s, at, path.t1(), RANDOM + 1);
    assert_matches!(s.handle_response(at, &reply_to(&req, path.t2(), path.t3()).to_bytes(), path.t4(), None), SourceEvent::Sample(_));
    assert_eq!(s.poll_timeout(), Some(at + Duration::from_secs(4096)));
    s.set_poll_log2(at + Duration::from_secs(1000), 6);
    assert_eq!(s.poll_timeout(), Some(at + Duration::from_secs(1000) + LATE_POLL_DELAY));
}

#[test]
fn jitter_only_lengthens_intervals_by_at_most_a_sixteenth() {
    let mut s = source(SourceConfig::default());
    let mut intervals = Vec::new();
    let mut last = Instant::ZERO;
    for i in 0..200u64 {
        let now = s.poll_timeout().unwrap();
        let path = path_at(now);
        let req = poll(&mut s, now, path.t1(), splitmix64(i));
        let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
        assert_matches!(s.handle_response(now, &rep, path.t4(), None), SourceEvent::Sample(_));
        if i > 0 {
            intervals.push((now - last).as_secs_f64());
        }
        last = now;
    }
    assert!(intervals.iter().all(|&d| (64.0..64.0 + 4.0).contains(&d)), "{intervals:?}");
    let spread = intervals.iter().cloned().fold(0.0, f64::max) - intervals.iter().cloned().fold(100.0, f64::min);
    assert!(spread > 2.0, "jitter is used: {spread}");
}

#[test]
fn stale_flag_after_three_silent_polls() {
    let mut s = source(config());
    let mut buf = [0u8; 48];
    let tx = s.handle_timeout(Instant::ZERO, t2024(), RANDOM, &mut buf).unwrap();
    assert!(tx.stale, "nothing heard yet");
    let rep = reply_to(&buf, t2024(), t2024()).to_bytes();
    assert_matches!(s.handle_response(secs(1), &rep, t2024(), None), SourceEvent::Sample(_));
    let stale: Vec<bool> =
        (1..=4).map(|i| s.handle_timeout(secs(64 * i), t2024(), RANDOM + i, &mut buf).unwrap().stale).collect();
    assert_eq!(stale, [false, false, true, true]);
}

#[test]
fn the_poll_that_empties_the_reach_register_reports_the_source_unreachable() {
    let mut s = source(config());
    let mut buf = [0u8; 48];
    let tx = s.handle_timeout(Instant::ZERO, t2024(), RANDOM, &mut buf).unwrap();
    assert!(!tx.unreachable, "never reachable: nothing to lose");
    let rep = reply_to(&buf, t2024(), t2024()).to_bytes();
    assert_matches!(s.handle_response(secs(1), &rep, t2024(), None), SourceEvent::Sample(_));
    let next_poll = |s: &mut Source, i: u64, buf: &mut [u8; 48]| {
        let at = s.poll_timeout().unwrap();
        (at, s.handle_timeout(at, t2024(), RANDOM + i, buf).unwrap().unreachable)
    };
    let unreachable: Vec<bool> = (1..=10).map(|i| next_poll(&mut s, i, &mut buf).1).collect();
    // The answer sits in bit 0; the eighth poll after it shifts it out.
    assert_eq!(unreachable, [false, false, false, false, false, false, false, true, false, false]);
    assert!(!s.is_reachable());
    // An answer makes it reachable again, and the next emptying reports again.
    let (at, _) = next_poll(&mut s, 11, &mut buf);
    let later = t2024() + NtpDuration::from_seconds(1);
    let rep = reply_to(&buf, later, later).to_bytes();
    assert_matches!(s.handle_response(at.saturating_add(Duration::from_secs(1)), &rep, t2024(), None), SourceEvent::Sample(_));
    let again: Vec<bool> = (12..20).map(|i| next_poll(&mut s, i, &mut buf).1).collect();
    assert_eq!(again, [false, false, false, false, false, false, false, true]);
}

#[test]
fn reset_starts_over_with_iburst() {
    let mut s = source(SourceConfig { iburst: true, ..config() });
    drive(&mut s, 128, |_| true);
    assert!(s.is_reachable());
    let path = Path::new(t2024());
    let req = poll(&mut s, secs(192), path.t1(), RANDOM);
    s.reset(secs(200));
    assert_eq!((s.reach(), s.poll_timeout()), (0, Some(secs(200))));
    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(200), &rep, path.t4(), None), SourceEvent::Rejected(R::Unsolicited));
    let sent = drive(&mut s, 214, |_| true);
    assert_eq!(sent, [200., 202., 204., 206., 208., 210., 212., 214.]);
}

#[test]
#[should_panic(expected = "at least 48 octets")]
fn a_short_transmit_buffer_is_a_caller_bug() {
    let mut s = source(config());
    let _ = s.handle_timeout(Instant::ZERO, t2024(), RANDOM, &mut [0u8; 47]);
}

#[test]
fn reason_names_are_unique() {
    let mut names: Vec<&str> = RejectReason::ALL.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), RejectReason::ALL.len());
    for (i, r) in RejectReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

// ---- properties --------------------------------------------------------------

fn arb_time() -> impl Strategy<Value = NtpTime> {
    prop_oneof![
        // Within a day of the 2036 era boundary.
        (-86_400i64..86_400, any::<u32>()).prop_map(|(s, f)| NtpTime::new(ERA_SECS + s, f)),
        // Anywhere from 1900 to 2308.
        (0i64..3 * ERA_SECS, any::<u32>()).prop_map(|(s, f)| NtpTime::new(s, f)),
    ]
}

proptest! {
    /// The assertions of `handle_response_never_panics` on samples, for
    /// replies that are valid by construction (random bytes almost never are).
    #[test]
    fn every_valid_reply_gives_a_sane_sample(
        t1 in arb_time(),
        offset_ms in -1_000_000i64..1_000_000,
        forward_us in 0i64..2_000_000,
        residence_us in 0i64..1_000_000,
        back_us in 0i64..2_000_000,
        stratum in 1u8..16,
        leap in 0u8..3,
        precision in -32i8..0,
    ) {
        let mut s = source(SourceConfig { iburst: true, ..config() });
        let req = poll(&mut s, Instant::ZERO, t1, RANDOM);
        let us = |x: i64| NtpDuration::from_nanos(x * 1000);
        let t2 = t1 + ms(offset_ms) + us(forward_us);
        let t3 = t2 + us(residence_us);
        let t4 = t3 + ms(-offset_ms) + us(back_us);
        let leap = [LeapIndicator::NoWarning, LeapIndicator::Insert, LeapIndicator::Delete][usize::from(leap)];
        let rep = Repr { stratum, leap, precision, ..reply_to(&req, t2, t3) }.to_bytes();
        let ev = s.handle_response(secs(1), &rep, t4, None);
        let SourceEvent::Sample(m) = ev else {
            return Err(TestCaseError::fail(format!("a valid reply was not a sample: {ev:?}")));
        };
        let want_delay = (forward_us + back_us) * 1000;
        prop_assert!((m.delay.as_nanos() - want_delay).abs() <= 2, "delay {:?}, want {want_delay} ns", m.delay);
        prop_assert!(m.delay >= NtpDuration::from_bits(1 << 12));
        let want_offset = offset_ms * 1_000_000 + (forward_us - back_us) * 500;
        prop_assert!((m.offset.as_nanos() - want_offset).abs() <= 2, "offset {:?}, want {want_offset} ns", m.offset);
        prop_assert!(m.dispersion > NtpDuration::ZERO);
        prop_assert_eq!((m.stratum, m.leap), (stratum, leap));
        prop_assert!(s.is_reachable());
    }

    #[test]
    fn handle_response_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        patch_origin: bool,
        outstanding: bool,
        rx in arb_time(),
        tx_actual in proptest::option::of(arb_time()),
        t1 in arb_time(),
    ) {
        let mut s = source(SourceConfig { iburst: true, ..config() });
        let mut bytes = bytes;
        if outstanding {
            let req = poll(&mut s, Instant::ZERO, t1, RANDOM);
            if patch_origin && bytes.len() >= 48 {
                bytes[24..32].copy_from_slice(&req[40..48]);
            }
        }
        let ev = s.handle_response(secs(1), &bytes, rx, tx_actual);
        if let SourceEvent::Sample(m) = ev {
            prop_assert!(m.delay >= NtpDuration::from_bits(1 << 12));
            prop_assert!(m.dispersion > NtpDuration::ZERO);
            prop_assert!(s.is_reachable());
        }
        // The source stays drivable.
        match s.poll_timeout() {
            Some(at) => {
                prop_assert!(at > Instant::ZERO || !outstanding);
                let mut buf = [0u8; 48];
                prop_assert!(s.handle_timeout(at, t1, RANDOM + 1, &mut buf).is_some());
            }
            None => prop_assert!(s.demobilized_by().is_some()),
        }
    }

    #[test]
    fn symmetric_paths_measure_the_true_clock_error(
        t0 in arb_time(),
        client_err in -(1i64 << 61)..(1i64 << 61),
        server_err in -(1i64 << 61)..(1i64 << 61),
        one_way in 0i64..(10i64 << 32),
        turn in 0i64..(1i64 << 32),
        random: u64,
    ) {
        // Client and server errors each within ±2^29 s (17 years), so their
        // difference stays well inside the ±68-year range of §6.
        let path = Path {
            t0,
            client_err: NtpDuration::from_bits(client_err),
            server_err: NtpDuration::from_bits(server_err),
            out: NtpDuration::from_bits(one_way),
            back: NtpDuration::from_bits(one_way),
            turn: NtpDuration::from_bits(turn),
        };
        let mut s = source(config());
        let ev = exchange(&mut s, Instant::ZERO, &path, random);
        let SourceEvent::Sample(m) = ev else { return Err(TestCaseError::fail(format!("{ev:?}"))) };
        prop_assert_eq!(m.offset, NtpDuration::from_bits(server_err - client_err));
        prop_assert_eq!(m.delay, NtpDuration::from_bits(2 * one_way).max(NtpDuration::from_bits(1 << 12)));
    }
}

/// One step of a random conversation with the server.
#[derive(Clone, Copy, Debug)]
enum Op {
    Answer,
    Drop,
    Rate(i8),
    Deny,
    SetPoll(i8),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => Just(Op::Answer),
        20 => Just(Op::Drop),
        4 => (-10i8..20).prop_map(Op::Rate),
        4 => (0i8..20).prop_map(Op::SetPoll),
        1 => Just(Op::Deny),
    ]
}

proptest! {
    #[test]
    fn schedule_invariants(ops in proptest::collection::vec(arb_op(), 1..80), iburst: bool, burst: bool, poll_jitter: bool) {
        let mut s = source(SourceConfig { iburst, burst, poll_jitter, ..SourceConfig::default() });
        let mut last_send: Option<Instant> = None;
        let mut last_regular: Option<Instant> = None;
        let mut hold = Instant::ZERO;
        let mut demobilized = false;
        for (i, op) in ops.iter().enumerate() {
            let Some(at) = s.poll_timeout() else {
                prop_assert!(demobilized);
                break;
            };
            prop_assert!(!demobilized, "a demobilized source never polls again");
            prop_assert!(at >= hold, "RATE hold broken: {at:?} < {hold:?}");
            let in_burst = s.in_burst();
            if in_burst {
                prop_assert_eq!(at - last_send.unwrap(), BURST_SPACING);
            } else if let Some(last) = last_regular {
                let gap = at - last;
                prop_assert!(gap >= Duration::from_secs(64), "regular gap {gap:?}");
                prop_assert!(gap <= Duration::from_secs(8192 + 512 + 16), "regular gap {gap:?}");
            }
            let path = path_at(at);
            let req = poll(&mut s, at, path.t1(), splitmix64(i as u64));
            last_send = Some(at);
            if !in_burst {
                last_regular = Some(at);
            }
            let rx = at + Duration::from_millis(50);
            match *op {
                Op::Answer => {
                    let rep = reply_to(&req, path.t2(), path.t3()).to_bytes();
                    let ev = s.handle_response(rx, &rep, path.t4(), None);
                    prop_assert!(matches!(ev, SourceEvent::Sample(_)), "{ev:?}");
                    prop_assert!(s.is_reachable());
                }
                Op::Drop => {}
                Op::Rate(p) => match s.handle_response(rx, &kiss_to(&req, *b"RATE", p), path.t4(), None) {
                    SourceEvent::RateLimited { poll_log2, next_poll_at } => {
                        prop_assert!(poll_log2 <= KOD_RATE_POLL_CAP_LOG2);
                        prop_assert!(next_poll_at >= rx + Duration::from_secs(1 << poll_log2));
                        prop_assert!(!s.in_burst());
                        hold = next_poll_at;
                    }
                    other => prop_assert!(false, "{other:?}"),
                },
                Op::Deny => {
                    let ev = s.handle_response(rx, &kiss_to(&req, *b"DENY", 6), path.t4(), None);
                    prop_assert_eq!(ev, SourceEvent::Demobilize(KissCode::Deny));
                    demobilized = true;
                }
                Op::SetPoll(p) => s.set_poll_log2(rx, p),
            }
            prop_assert!((6..=KOD_RATE_POLL_CAP_LOG2).contains(&s.poll_log2()));
        }
    }
}

#[test]
fn a_reply_with_a_broken_extension_field_is_discarded_whole() {
    // Found by the conformance suite: an extension field whose length runs past
    // the end of the packet (RFC 7822 §3) must not yield a sample.
    let mut s = source(config());
    let path = Path::new(t2024());
    let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
    let mut rep = reply_to(&req, path.t2(), path.t3()).to_bytes().to_vec();
    rep.extend_from_slice(&[0x01, 0x04, 0x00, 0x40]);
    rep.extend_from_slice(&[0; 28]);
    assert_eq!(s.handle_response(secs(1), &rep, path.t4(), None), SourceEvent::Rejected(RejectReason::MalformedExtension));
    assert_eq!(s.counters().rejected(RejectReason::MalformedExtension), 1);
    // A well-formed field of the same size is fine.
    let mut ok = reply_to(&req, path.t2(), path.t3()).to_bytes().to_vec();
    ok.extend_from_slice(&[0x01, 0x04, 0x00, 0x20]);
    ok.extend_from_slice(&[0; 28]);
    let mut s2 = source(config());
    let req2 = poll(&mut s2, Instant::ZERO, path.t1(), RANDOM);
    let mut ok2 = reply_to(&req2, path.t2(), path.t3()).to_bytes().to_vec();
    ok2.extend_from_slice(&ok[48..]);
    assert_matches!(s2.handle_response(secs(1), &ok2, path.t4(), None), SourceEvent::Sample(_));
}

#[test]
fn unsmear_adds_the_smear_correction_back_and_infers_the_leap() {
    use crate::wire::refid::SmearCorrection;
    // The server serves time 0.25 s behind its clock (a smear in progress) and
    // says so in its REFID; the measurement is taken on the last day of December.
    let day = NtpTime::parse_rfc3339("2016-12-31T18:00:00Z").unwrap();
    let c = SmearCorrection::from_duration(NtpDuration::from_seconds_f64(0.25));
    for unsmear in [false, true] {
        let mut s = source(SourceConfig { unsmear, ..config() });
        let path = Path { server_err: ms(-250), ..Path::new(day) };
        let req = poll(&mut s, Instant::ZERO, path.t1(), RANDOM);
        let rep = Repr { stratum: 2, reference_id: ReferenceId::from_smear(c), ..reply_to(&req, path.t2(), path.t3()) };
        let SourceEvent::Sample(m) = s.handle_response(secs(1), &rep.to_bytes(), path.t4(), None) else { panic!("a sample") };
        if unsmear {
            assert!(m.offset.to_seconds_f64().abs() < 1e-6, "undone: {:?}", m.offset);
            assert_eq!(m.leap, LeapIndicator::Insert, "a positive correction on the last day is an inserted second");
        } else {
            assert!((m.offset.to_seconds_f64() + 0.25).abs() < 1e-6, "followed: {:?}", m.offset);
            assert_eq!(m.leap, LeapIndicator::NoWarning);
        }
    }
}

#[test]
fn log2_duration_is_exact_in_range_zero_below_the_unit_and_saturates_above() {
    assert_eq!(log2_duration(-20), NtpDuration::from_bits(1 << 12));
    assert_eq!(log2_duration(-32), NtpDuration::from_bits(1), "2^-32 s is one unit");
    assert_eq!(log2_duration(-33), NtpDuration::ZERO);
    assert_eq!(log2_duration(i8::MIN), NtpDuration::ZERO);
    assert_eq!(log2_duration(30), NtpDuration::from_bits(1 << 62));
    assert_eq!(log2_duration(31), NtpDuration::MAX);
    assert_eq!(log2_duration(i8::MAX), NtpDuration::MAX);
}

#[test]
fn a_smear_correction_implies_a_leap_only_on_the_last_day_of_a_month() {
    use crate::wire::refid::SmearCorrection;
    let at = |s: &str| NtpTime::parse_rfc3339(s).unwrap();
    let last_day = at("2026-12-31T12:00:00Z");
    let other_day = at("2026-12-30T12:00:00Z");
    let (ahead, behind) = (SmearCorrection::from_raw(1000), SmearCorrection::from_raw(-1000));
    assert_eq!(smeared_leap(ahead, last_day), LeapIndicator::Insert);
    assert_eq!(smeared_leap(behind, last_day), LeapIndicator::Delete);
    assert_eq!(smeared_leap(ahead, other_day), LeapIndicator::NoWarning);
    // After midnight: the second half of a centred smear of a leap already applied.
    assert_eq!(smeared_leap(behind, at("2027-01-01T06:00:00Z")), LeapIndicator::NoWarning);
    assert_eq!(smeared_leap(SmearCorrection::from_raw(0), last_day), LeapIndicator::NoWarning);
}

#[test]
fn the_transmit_jitter_mixer_is_splitmix64() {
    // SplitMix64's published first outputs for seeds 0 and 1 (Vigna's
    // reference implementation).
    assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    assert_eq!(splitmix64(1), 0x910a_2dec_8902_5cc1);
}

// ---- interleaved mode (RFC 9769 §2) --------------------------------------------

fn interleaved() -> SourceConfig {
    SourceConfig { interleaved: true, ..config() }
}

/// What a server that keeps the pair of its last reply answers to an
/// interleaved `request`: origin = the request's receive timestamp, receive
/// = `t2` now, transmit = the exact send time `prev_t3` of its previous reply.
fn interleaved_reply_to(request: &[u8], t2: NtpTime, prev_t3: NtpTime) -> [u8; 48] {
    let q = parse(request);
    Repr { origin_timestamp: q.receive_timestamp, transmit_timestamp: prev_t3.to_timestamp(), ..reply_to(request, t2, t2) }.to_bytes()
}

#[test]
fn an_interleaved_source_refers_to_the_last_reply_from_its_second_request_on() {
    let mut s = source(interleaved());
    let p = path_at(secs(0));
    let first = poll(&mut s, secs(0), p.t1(), RANDOM);
    let q = parse(&first);
    assert!(q.origin_timestamp.is_zero() && q.receive_timestamp.is_zero(), "the first request is basic: {q:?}");
    let rep = reply_to(&first, p.t2(), p.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(0), &rep, p.t4(), None), SourceEvent::Sample(m) if !m.interleaved);
    let second = parse(&poll(&mut s, secs(64), path_at(secs(64)).t1(), RANDOM + 1));
    assert_eq!(second.origin_timestamp, p.t2().to_timestamp(), "origin: the reply's receive timestamp");
    assert_eq!(second.receive_timestamp, interleaved_receive_field(RANDOM + 1, second.transmit_timestamp), "receive: random (RFC 9769 §6)");
    assert_ne!(second.receive_timestamp, p.t4().to_timestamp(), "never the reply's local arrival");
    assert_eq!(second.transmit_timestamp, NtpTimestamp::from_bits(RANDOM + 1), "transmit: still the random value");
    // The next request draws another receive timestamp.
    let next = parse(&poll(&mut s, secs(128), path_at(secs(128)).t1(), RANDOM + 2));
    assert_eq!(next.origin_timestamp, p.t2().to_timestamp(), "still naming the only reply");
    assert_ne!(next.receive_timestamp, second.receive_timestamp);
    // A basic source keeps both fields zero.
    let mut b = source(config());
    assert_matches!(exchange(&mut b, secs(0), &p, RANDOM), SourceEvent::Sample(_));
    let basic = parse(&poll(&mut b, secs(64), path_at(secs(64)).t1(), RANDOM + 1));
    assert!(basic.origin_timestamp.is_zero() && basic.receive_timestamp.is_zero());
}

#[test]
fn an_interleaved_reply_measures_the_previous_exchange_with_its_exact_transmit_time() {
    let mut s = source(interleaved());
    // The client is 3 ms behind; the server's reading before the send (T3~)
    // is 40 us early, its exact send time T3 is the path's.
    let p = Path { client_err: ms(-3), ..path_at(secs(0)) };
    let early = p.t3() + NtpDuration::from_nanos(-40_000);
    let first = poll(&mut s, secs(0), p.t1(), RANDOM);
    let rep = reply_to(&first, p.t2(), early).to_bytes();
    let SourceEvent::Sample(basic) = s.handle_response(secs(0), &rep, p.t4(), None) else { panic!("basic sample") };
    // Basic: the early T3 shortens the delay by 40 us and moves the offset by -20 us.
    assert_nanos(basic.delay, 20_000_000 + 40_000);
    assert_nanos(basic.offset, 3_000_000 - 20_000);
    let q = path_at(secs(64));
    let second = poll(&mut s, secs(64), q.t1(), RANDOM + 1);
    let rep = interleaved_reply_to(&second, q.t2(), p.t3());
    let SourceEvent::Sample(m) = s.handle_response(secs(64), &rep, q.t4(), None) else { panic!("interleaved sample") };
    assert!(m.interleaved);
    assert_nanos(m.offset, 3_000_000);
    assert_nanos(m.delay, 20_000_000);
    assert_eq!((m.local_send_time, m.local_receive_time), (p.t1(), p.t4()), "the previous exchange's T1 and T4");
    assert_eq!((m.server_receive_timestamp, m.server_transmit_timestamp), (p.t2().to_timestamp(), p.t3().to_timestamp()));
    // The third request refers to the second exchange.
    let third = parse(&poll(&mut s, secs(128), path_at(secs(128)).t1(), RANDOM + 2));
    assert_eq!(third.origin_timestamp, q.t2().to_timestamp());
}

#[test]
fn an_interleaved_sample_uses_the_true_send_time_of_the_previous_request() {
    let mut s = source(interleaved());
    let p = path_at(secs(0));
    let first = poll(&mut s, secs(0), p.t1() + ms(-1), RANDOM);
    let rep = reply_to(&first, p.t2(), p.t3()).to_bytes();
    let _ = s.handle_response(secs(0), &rep, p.t4(), Some(p.t1()));
    let q = path_at(secs(64));
    let second = poll(&mut s, secs(64), q.t1(), RANDOM + 1);
    let rep = interleaved_reply_to(&second, q.t2(), p.t3());
    let SourceEvent::Sample(m) = s.handle_response(secs(64), &rep, q.t4(), Some(q.t1())) else { panic!("sample") };
    assert_eq!(m.local_send_time, p.t1(), "the kernel's send time of the first request, not the reading before it");
    assert_nanos(m.delay, 20_000_000);
}

#[test]
fn a_basic_reply_to_an_interleaved_request_is_a_basic_sample_and_anything_else_is_bogus() {
    let mut s = source(interleaved());
    assert_matches!(exchange(&mut s, secs(0), &path_at(secs(0)), RANDOM), SourceEvent::Sample(_));
    let q = path_at(secs(64));
    let req = poll(&mut s, secs(64), q.t1(), RANDOM + 1);
    let stray = Repr { origin_timestamp: NtpTimestamp::from_bits(0x77), ..reply_to(&req, q.t2(), q.t3()) }.to_bytes();
    assert_matches!(s.handle_response(secs(64), &stray, q.t4(), None), SourceEvent::Rejected(R::Bogus));
    // The request's origin (the server's own receive timestamp) echoed back is no answer either.
    let echo = Repr { origin_timestamp: parse(&req).origin_timestamp, ..reply_to(&req, q.t2(), q.t3()) }.to_bytes();
    assert_matches!(s.handle_response(secs(64), &echo, q.t4(), None), SourceEvent::Rejected(R::Bogus));
    // So is the previous reply's arrival time, which the request did not carry.
    let arrival = Repr { origin_timestamp: path_at(secs(0)).t4().to_timestamp(), ..reply_to(&req, q.t2(), q.t3()) }.to_bytes();
    assert_matches!(s.handle_response(secs(64), &arrival, q.t4(), None), SourceEvent::Rejected(R::Bogus));
    let basic = reply_to(&req, q.t2(), q.t3()).to_bytes();
    assert_matches!(s.handle_response(secs(64), &basic, q.t4(), None), SourceEvent::Sample(m) if !m.interleaved && m.local_send_time == q.t1());
    // A basic source never takes a reply that echoes a receive timestamp.
    let mut b = source(config());
    assert_matches!(exchange(&mut b, secs(0), &path_at(secs(0)), RANDOM), SourceEvent::Sample(_));
    let req = poll(&mut b, secs(64), q.t1(), RANDOM + 1);
    let mut fake = Repr { origin_timestamp: q.t4().to_timestamp(), ..reply_to(&req, q.t2(), q.t3()) };
    assert_matches!(b.handle_response(secs(64), &fake.to_bytes(), q.t4(), None), SourceEvent::Rejected(R::Bogus));
    fake.origin_timestamp = NtpTimestamp::ZERO;
    assert_matches!(b.handle_response(secs(64), &fake.to_bytes(), q.t4(), None), SourceEvent::Rejected(R::ZeroOrigin));
}

#[test]
fn an_interleaved_reply_with_the_basic_replys_transmit_timestamp_is_no_duplicate() {
    // A server whose exact send time equals its reading before the send
    // repeats the transmit timestamp of the basic reply in the interleaved one.
    let p = path_at(secs(0));
    let q = path_at(secs(64));
    let run = |config: SourceConfig| {
        let mut s = source(config);
        assert_matches!(exchange(&mut s, secs(0), &p, RANDOM), SourceEvent::Sample(_));
        let req = poll(&mut s, secs(64), q.t1(), RANDOM + 1);
        let rep = Repr { origin_timestamp: parse(&req).receive_timestamp, ..reply_to(&req, q.t2(), p.t3()) }.to_bytes();
        s.handle_response(secs(64), &rep, q.t4(), None)
    };
    assert_matches!(run(interleaved()), SourceEvent::Sample(m) if m.interleaved);
    // The same transmit and receive timestamps again are a duplicate.
    let mut s = source(interleaved());
    let req = poll(&mut s, secs(0), p.t1(), RANDOM);
    let rep = reply_to(&req, p.t2(), p.t3()).to_bytes();
    let _ = s.handle_response(secs(0), &rep, p.t4(), None);
    assert_matches!(s.handle_response(secs(0), &rep, p.t4(), None), SourceEvent::Rejected(R::Duplicate));
}

#[test]
fn interleaved_requests_turn_basic_after_four_go_unanswered_and_after_a_step() {
    let mut s = source(interleaved());
    assert_matches!(exchange(&mut s, secs(0), &path_at(secs(0)), RANDOM), SourceEvent::Sample(_));
    let mut at = 64;
    for i in 0..INTERLEAVED_REQUESTS_PER_REPLY {
        let req = parse(&poll(&mut s, secs(at), path_at(secs(at)).t1(), RANDOM + u64::from(i) + 1));
        assert!(!req.origin_timestamp.is_zero(), "request {i} after the reply is interleaved");
        at = s.poll_timeout().unwrap().as_nanos() / 1_000_000_000;
    }
    let req = parse(&poll(&mut s, secs(at), path_at(secs(at)).t1(), RANDOM + 9));
    assert!(req.origin_timestamp.is_zero() && req.receive_timestamp.is_zero(), "the fifth is basic: {req:?}");
    // A reply starts the count again; a step forgets the exchange.
    let mut s = source(interleaved());
    assert_matches!(exchange(&mut s, secs(0), &path_at(secs(0)), RANDOM), SourceEvent::Sample(_));
    s.reset(secs(10));
    let req = parse(&poll(&mut s, secs(10), path_at(secs(10)).t1(), RANDOM + 1));
    assert!(req.origin_timestamp.is_zero() && req.receive_timestamp.is_zero(), "after a step: {req:?}");
}

#[test]
fn an_interleaved_requests_receive_timestamp_is_random_nonzero_and_never_its_transmit() {
    let stream = |random: u64| splitmix64(random ^ 0x9e37_79b9_7f4a_7c15);
    let x = NtpTimestamp::from_bits(RANDOM);
    assert_eq!(interleaved_receive_field(RANDOM, x).to_bits(), stream(RANDOM));
    // The two guards: a zero draw and a draw equal to the transmit timestamp.
    assert_eq!(nonzero_and_not(0, x).to_bits(), 2);
    assert_eq!(nonzero_and_not(0, NtpTimestamp::from_bits(2)).to_bits(), 6);
    assert_eq!(nonzero_and_not(7, NtpTimestamp::from_bits(7)).to_bits(), 3);
    assert_eq!(nonzero_and_not(7, x).to_bits(), 7);
    let clash = NtpTimestamp::from_bits(stream(RANDOM));
    assert_eq!(interleaved_receive_field(RANDOM, clash).to_bits(), stream(RANDOM) ^ 4);
    let two = NtpTimestamp::from_bits(2);
    for random in 0..10_000u64 {
        let xmt = NtpTimestamp::from_bits(random.max(1));
        let r = interleaved_receive_field(random, xmt);
        assert!(!r.is_zero() && r != xmt, "{random}");
        let r2 = interleaved_receive_field(random, two);
        assert!(!r2.is_zero() && r2 != two, "{random}");
    }
}

#[test]
fn interleaved_mode_is_refused_on_ntpv5_sources() {
    let bad = |c: SourceConfig| Source::new(c, Instant::ZERO).unwrap_err();
    assert_eq!(bad(SourceConfig { version: 5, ..interleaved() }), ConfigError::InterleavedNeedsV4);
    assert_eq!(bad(SourceConfig { v5_auto: true, ..interleaved() }), ConfigError::InterleavedNeedsV4);
    assert!(ConfigError::InterleavedNeedsV4.to_string().contains("version = 4"));
    assert!(Source::new(SourceConfig { version: 3, ..interleaved() }, Instant::ZERO).is_ok());
}

#[test]
fn an_interleaved_replys_reference_time_is_judged_against_its_receive_timestamp_and_a_second() {
    // Its transmit timestamp is the previous reply's: a reference time
    // updated since is no reason to reject it, one after its receive time is.
    let p = path_at(secs(0));
    let q = path_at(secs(64));
    let run = |reference: NtpTime| {
        let mut s = source(interleaved());
        assert_matches!(exchange(&mut s, secs(0), &p, RANDOM), SourceEvent::Sample(_));
        let req = poll(&mut s, secs(64), q.t1(), RANDOM + 1);
        let mut rep = Repr::parse(&Packet::new_checked(&interleaved_reply_to(&req, q.t2(), p.t3())[..]).unwrap()).unwrap();
        rep.reference_timestamp = reference.to_timestamp();
        s.handle_response(secs(64), &rep.to_bytes(), q.t4(), None)
    };
    assert_matches!(run(q.t2() + ms(-1)), SourceEvent::Sample(m) if m.interleaved);
    // Set as the reply was built, after the request arrived.
    assert_matches!(run(q.t2() + ms(1)), SourceEvent::Sample(m) if m.interleaved);
    assert_matches!(run(q.t2() + INTERLEAVED_REPLY_SLACK), SourceEvent::Sample(m) if m.interleaved);
    assert_matches!(run(q.t2() + INTERLEAVED_REPLY_SLACK + ms(1)), SourceEvent::Rejected(R::ReferenceAfterTransmit));
}
