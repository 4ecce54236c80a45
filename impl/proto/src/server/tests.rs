//! Responder tests: field mapping, mode/version matrix, access control, rate
//! limiting, interleaved mode, leap smear, robustness.

use super::*;
use crate::wire::v4::Packet;
use core::net::SocketAddr;
use proptest::prelude::*;

const S: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn secs(x: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(x)
}

fn request(version: u8, mode: Mode, poll: i8, org: u64, rx: u64, tx: u64) -> [u8; 48] {
    Repr {
        leap: LeapIndicator::NoWarning,
        version,
        mode,
        stratum: 0,
        poll,
        precision: 0,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: ReferenceId::NONE,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::from_bits(org),
        receive_timestamp: NtpTimestamp::from_bits(rx),
        transmit_timestamp: NtpTimestamp::from_bits(tx),
    }
    .to_bytes()
}

fn client_request(tx: u64) -> [u8; 48] {
    request(4, Mode::Client, 6, 0, 0, tx)
}

fn synced() -> ServerClockState {
    ServerClockState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision_log2: -24,
        root_delay: secs(0.010),
        root_dispersion: secs(0.001),
        reference_id: ReferenceId::from_ipv4("192.0.2.7".parse().unwrap()),
        reference_time: Some(t("2025-06-01T12:00:00Z")),
        inserted_second_in_progress: false,
    }
}

fn open_config() -> ServerConfig {
    ServerConfig { rate_limit: RateLimitConfig { enabled: false, ..Default::default() }, ..Default::default() }
}

fn server(config: ServerConfig) -> Server {
    Server::new(config, [0x42; 16])
}

fn parse(out: &[u8]) -> Repr {
    Repr::parse(&Packet::new_checked(out).unwrap()).unwrap()
}

/// Runs handle + finish_response; returns the action and the parsed response (if any).
fn exchange(
    s: &mut Server,
    now_ns: u64,
    client: IpAddr,
    req: &[u8],
    rx_time: NtpTime,
    tx_time: NtpTime,
    clock: &ServerClockState,
) -> (ServerAction, Option<Repr>) {
    let mut out = [0xa5u8; 1100];
    let action = s.handle(now_ns, SocketAddr::new(client, 123), req, rx_time, clock, &mut out);
    match action {
        ServerAction::Respond(r) => {
            assert!(r.len <= req.len(), "response longer than request");
            assert_eq!(r.len, HEADER_LEN);
            let written = s.finish_response(&r, &mut out, tx_time, clock);
            let repr = parse(&out[..r.len]);
            assert_eq!(repr.transmit_timestamp, written);
            (action, Some(repr))
        }
        ServerAction::Ignore(_) => (action, None),
    }
}

fn reason(a: ServerAction) -> Result<ResponseReason, DropReason> {
    match a {
        ServerAction::Respond(r) => Ok(r.reason),
        ServerAction::Ignore(d) => Err(d),
    }
}

// ---------------------------------------------------------------- basic fields

#[test]
fn every_mode_and_version_combination() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:00:10Z");
    for version in 0..8u8 {
        for mode_bits in 0..8u8 {
            let mode = Mode::from_bits(mode_bits);
            let req = request(version, mode, 6, 0, 0, 0x1234);
            let (action, _) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &synced());
            let expected = match (version, mode) {
                // NTPv5 is answered (server/v5.rs); this bare header names no draft.
                (5, Mode::Client) => Err(DropReason::V5(V5Drop::NoDraft)),
                (5, m) => Err(DropReason::V5(V5Drop::BadMode(m))),
                (0 | 6 | 7, _) => Err(DropReason::BadVersion(version)),
                (_, Mode::Client) => Ok(ResponseReason::Basic),
                (_, m) => Err(DropReason::BadMode(m)),
            };
            assert_eq!(reason(action), expected, "version {version} mode {mode_bits}");
        }
    }
}

#[test]
fn response_fields_follow_fast_xmit() {
    let mut s = server(open_config());
    let clock = synced();
    let rx_time = t("2025-06-01T12:01:00Z");
    let tx_time = rx_time + secs(20e-6);
    for version in 1..=4 {
        let req = request(version, Mode::Client, 7, 0xdead_beef_0000_0001, 0x55, 0x0123_4567_89ab_cdef);
        let (_, resp) = exchange(&mut s, 0, ip("198.51.100.4"), &req, rx_time, tx_time, &clock);
        let r = resp.unwrap();
        assert_eq!(r.version, version, "VN echoed");
        assert_eq!(r.mode, Mode::Server);
        assert_eq!(r.leap, LeapIndicator::NoWarning);
        assert_eq!(r.stratum, 2);
        assert_eq!(r.poll, 7);
        assert_eq!(r.precision, -24);
        assert_eq!(r.reference_id, clock.reference_id);
        assert_eq!(r.reference_timestamp, clock.reference_time.unwrap().to_timestamp());
        assert_eq!(r.origin_timestamp.to_bits(), 0x0123_4567_89ab_cdef, "origin = request transmit, intact");
        assert_eq!(r.receive_timestamp, rx_time.to_timestamp());
        assert_eq!(r.transmit_timestamp, tx_time.to_timestamp());
        assert_eq!(r.root_delay, NtpShort::from_duration(secs(0.010)));
        // 60 s after the reference time: dispersion grew by 15 ppm * 60 s = 0.9 ms.
        let want = 0.001 + 60.0 * 15e-6;
        assert!((r.root_dispersion.to_seconds_f64() - want).abs() < 2.0 / 65536.0, "{:?}", r.root_dispersion);
        assert!(r.root_dispersion.to_seconds_f64() >= want - 1e-9, "rounded up");
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }
}

#[test]
fn poll_is_copied_and_clamped() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    for (sent, served) in [(6i8, 6i8), (4, 4), (17, 17), (0, 4), (-6, 4), (3, 4), (18, 17), (127, 17), (-128, 4)] {
        let req = request(4, Mode::Client, sent, 0, 0, 1);
        let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &synced());
        assert_eq!(r.unwrap().poll, served, "request poll {sent}");
    }
}

#[test]
fn unsynchronized_state_on_the_wire() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    for clock in [
        ServerClockState::unsynchronized(-20),
        ServerClockState { leap: LeapIndicator::Unsynchronized, ..synced() },
        ServerClockState { stratum: 16, ..synced() },
        ServerClockState { stratum: 0, ..synced() },
    ] {
        let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &client_request(9), now, now + secs(1e-5), &clock);
        let r = r.unwrap();
        assert_eq!(r.stratum, 0, "never 16 on the wire");
        assert_eq!(r.leap, LeapIndicator::Unsynchronized);
        assert_ne!(r.reference_id.0, *b"INIT");
        assert_eq!(r.origin_timestamp.to_bits(), 9);
    }
    let fresh = ServerClockState::unsynchronized(-20);
    let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &client_request(9), now, now, &fresh);
    assert_eq!(r.unwrap().reference_timestamp, NtpTimestamp::ZERO);
}

#[test]
fn short_and_malformed_requests_get_nothing() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    let base = client_request(1);
    for n in 0..48 {
        let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &base[..n], now, now, &synced());
        assert_eq!(reason(a), Err(DropReason::TooShort), "{n} octets");
    }
    for extra in [1usize, 2, 3, 8, 12, 15, 17] {
        let mut req = base.to_vec();
        req.resize(48 + extra, 0);
        let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &synced());
        assert_eq!(reason(a), Err(DropReason::MalformedTrailer), "48 + {extra} octets");
    }
    // An extension field claiming more octets than there are.
    let mut req = base.to_vec();
    req.extend_from_slice(&[0x01, 0x04, 0x00, 0x40]);
    req.resize(48 + 28, 0);
    let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &synced());
    assert_eq!(reason(a), Err(DropReason::MalformedTrailer));
    // Output buffer too small is the caller's error, not a panic.
    let mut small = [0u8; 47];
    assert_eq!(s.handle(0, SocketAddr::new(ip("192.0.2.1"), 123), &base, now, &synced(), &mut small), ServerAction::Ignore(DropReason::OutputTooSmall));
}

#[test]
fn response_never_longer_than_request_for_every_length() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    let mut answered = 0;
    for len in 48..=1024usize {
        let mut req = client_request(7).to_vec();
        let extra = len - 48;
        if extra >= 16 && extra % 4 == 0 {
            // One extension field filling the rest (type 0x0104, a NTS cookie).
            req.extend_from_slice(&[0x01, 0x04]);
            req.extend_from_slice(&(extra as u16).to_be_bytes());
        }
        req.resize(len, 0);
        let (a, r) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &synced());
        if let ServerAction::Respond(resp) = a {
            assert!(resp.len <= len);
            assert_eq!(resp.len, 48);
            assert_eq!(r.unwrap().origin_timestamp.to_bits(), 7);
            answered += 1;
        }
    }
    // 48, MAC sizes 4/20/24 (52, 68, 72), and every EF length 16..=976 by 4.
    assert_eq!(answered, 1 + 3 + (976 - 16) / 4 + 1 - 2);
}

#[test]
fn transmit_never_equals_or_precedes_receive() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    // Frozen clock: tx_time == rx_time.
    let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &client_request(1), now, now, &synced());
    let r = r.unwrap();
    assert_ne!(r.transmit_timestamp, r.receive_timestamp);
    assert_eq!(r.transmit_timestamp.wrapping_sub(r.receive_timestamp).to_bits(), 1);
    // Clock stepped back between receive and transmit.
    let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &client_request(2), now, now + secs(-0.5), &synced());
    let r = r.unwrap();
    assert!(r.transmit_timestamp.wrapping_sub(r.receive_timestamp).to_bits() > 0);
}

// ------------------------------------------------------------- access control

#[test]
fn access_control_precedence_and_kod_format() {
    let mut acl = AccessList::new(AccessAction::Deny);
    acl.push_cidr("192.0.2.0/24", AccessAction::Allow).unwrap();
    acl.push_cidr("192.0.2.66/32", AccessAction::KodDeny).unwrap();
    acl.push_cidr("2001:db8::/32", AccessAction::Allow).unwrap();
    acl.push_cidr("2001:db8:ba::/48", AccessAction::Restrict).unwrap();
    let mut s = server(ServerConfig { access: acl, ..open_config() });
    let now = t("2025-06-01T12:01:00Z");
    let clock = synced();
    let req = request(3, Mode::Client, 10, 0, 0, 0xabcdef);
    let cases = [
        ("192.0.2.1", Ok(ResponseReason::Basic)),
        ("::ffff:192.0.2.1", Ok(ResponseReason::Basic)),
        ("192.0.2.66", Ok(ResponseReason::KodSent(KodKind::Deny))),
        ("192.0.3.1", Err(DropReason::Denied)),
        ("2001:db8:1::1", Ok(ResponseReason::Basic)),
        ("2001:db8:ba:7::1", Ok(ResponseReason::KodSent(KodKind::Rstr))),
        ("2001:db9::1", Err(DropReason::Denied)),
    ];
    for (addr, want) in cases {
        let (a, r) = exchange(&mut s, 0, ip(addr), &req, now, now, &clock);
        assert_eq!(reason(a), want, "{addr}");
        if let Ok(ResponseReason::KodSent(kind)) = want {
            let r = r.unwrap();
            assert_eq!(r.stratum, 0);
            assert_eq!(r.leap, LeapIndicator::Unsynchronized);
            assert_eq!(r.reference_id.kiss_code(), kind.kiss_code());
            assert_eq!(r.version, 3);
            assert_eq!(r.origin_timestamp.to_bits(), 0xabcdef);
            assert!(r.receive_timestamp.is_zero() && r.transmit_timestamp.is_zero());
            assert!(r.is_kiss_of_death());
            // The zero transmit timestamp is deliberate in a KoD (RFC 5905 §7.4:
            // KoD timestamps carry no time), so the decoder finds no problem.
            assert!(r.problems().is_empty(), "{:?}", r.problems());
        }
    }
}

#[test]
fn requests_from_group_broadcast_unspecified_or_port_0_sources_are_dropped_first() {
    // Even a denying access list with KoDs must not answer them, nor may they
    // use up table state: the drop comes before anything else.
    let mut acl = AccessList::new(AccessAction::KodDeny);
    acl.push_cidr("192.0.2.0/24", AccessAction::Allow).unwrap();
    let mut s = server(ServerConfig { access: acl, ..Default::default() });
    let now = t("2025-06-01T12:01:00Z");
    let req = client_request(7);
    let mut out = [0u8; 64];
    for from in [
        "224.0.0.1:123",
        "239.255.255.250:1900",
        "255.255.255.255:123",
        "0.0.0.0:123",
        "192.0.2.1:0",
        "[ff02::1]:123",
        "[::]:123",
        "[::ffff:224.0.0.1]:123",
        "[::ffff:255.255.255.255]:123",
        "[2001:db8::1]:0",
    ] {
        let from: SocketAddr = from.parse().unwrap();
        let a = s.handle(0, from, &req, now, &synced(), &mut out);
        assert_eq!(a, ServerAction::Ignore(DropReason::BadSource), "{from}");
        // Also with bytes that would otherwise be judged malformed.
        assert_eq!(s.handle(0, from, &[0u8; 3], now, &synced(), &mut out), ServerAction::Ignore(DropReason::BadSource));
    }
    assert_eq!(s.rate_limiter().len(), 0, "no state kept for them");
    let ok: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    assert!(matches!(s.handle(0, ok, &req, now, &synced(), &mut out), ServerAction::Respond(_)));
    let kod: SocketAddr = "198.51.100.1:123".parse().unwrap();
    assert!(matches!(s.handle(0, kod, &req, now, &synced(), &mut out), ServerAction::Respond(_)), "a unicast client gets its DENY");
}

#[test]
fn requests_longer_than_the_limit_are_dropped_as_oversize() {
    let mut s = server(open_config());
    let now = t("2025-06-01T12:01:00Z");
    // A header and well-formed extension fields (type 0x0104, each a multiple
    // of 4 octets): answered up to MAX_REQUEST_LEN, dropped beyond it, even
    // when its first MAX_REQUEST_LEN octets would be a well-formed request.
    let with_fields = |fields: &[usize]| {
        let mut req = client_request(5).to_vec();
        for &len in fields {
            req.extend_from_slice(&[0x01, 0x04, (len >> 8) as u8, len as u8]);
            req.resize(req.len() + len - 4, 0);
        }
        req
    };
    let at_limit = with_fields(&[2000]);
    assert_eq!(at_limit.len(), MAX_REQUEST_LEN);
    let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &at_limit, now, now, &synced());
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
    let over = with_fields(&[2000, 952]);
    assert_eq!(over.len(), 3000);
    let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &over, now, now, &synced());
    assert_eq!(reason(a), Err(DropReason::Oversize));
    // What a 2,049-octet receive buffer holds of it: still too long.
    let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &over[..MAX_REQUEST_LEN + 1], now, now, &synced());
    assert_eq!(reason(a), Err(DropReason::Oversize));
}

#[test]
fn deny_kods_are_rate_limited() {
    let mut acl = AccessList::new(AccessAction::Allow);
    acl.push_cidr("203.0.113.0/24", AccessAction::KodDeny).unwrap();
    let mut s = server(ServerConfig { access: acl, ..Default::default() });
    let now = t("2025-06-01T12:01:00Z");
    let mut kods = 0;
    // 100 requests per second for 64 s from a denied client.
    for n in 0..6400u64 {
        let (a, _) = exchange(&mut s, n * S / 100, ip("203.0.113.9"), &client_request(n), now, now, &synced());
        match reason(a) {
            Ok(ResponseReason::KodSent(KodKind::Deny)) => kods += 1,
            Err(DropReason::KodLimited(KodKind::Deny)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kods, 8, "one DENY per 8 s");
}

// -------------------------------------------------------------- rate limiting

#[test]
fn well_behaved_client_is_always_served() {
    let mut s = server(ServerConfig::default());
    let now = t("2025-06-01T12:01:00Z");
    // iburst: 8 requests 2 s apart, then one every 16 s for a day.
    let mut at_ns = 0;
    for n in 0..(8 + 86_400 / 16) {
        let (a, _) = exchange(&mut s, at_ns, ip("192.0.2.10"), &client_request(n), now, now, &synced());
        assert_eq!(reason(a), Ok(ResponseReason::Basic), "request {n}");
        at_ns += if n < 8 { 2 * S } else { 16 * S };
    }
}

#[test]
fn flooder_gets_rate_kods_limited_and_others_are_still_served() {
    let mut s = server(ServerConfig::default());
    let now = t("2025-06-01T12:01:00Z");
    let (mut served, mut kods, mut dropped) = (0, 0, 0);
    let flood = 1000 * 60; // 1000 requests per second for 60 s
    for n in 0..flood {
        let at_ns = n * S / 1000;
        let (a, r) = exchange(&mut s, at_ns, ip("2001:db8:f::1"), &request(4, Mode::Client, 0, 0, 0, n), now, now, &synced());
        match reason(a) {
            Ok(ResponseReason::Basic) => served += 1,
            Ok(ResponseReason::KodSent(KodKind::Rate)) => {
                kods += 1;
                let r = r.unwrap();
                assert_eq!(r.reference_id.0, *b"RATE");
                assert_eq!(r.poll, 4, "poll at least the limit (2^3 s) and the configured minimum");
                assert_eq!(r.origin_timestamp.to_bits(), n);
            }
            Err(DropReason::KodLimited(KodKind::Rate)) => dropped += 1,
            other => panic!("{other:?}"),
        }
        if n % 8000 == 0 {
            // A well-behaved neighbour in another /64, once every 8 s, is always served.
            let (b, _) = exchange(&mut s, at_ns, ip("2001:db8:e::1"), &client_request(n), now, now, &synced());
            assert_eq!(reason(b), Ok(ResponseReason::Basic));
        }
    }
    assert_eq!(served + kods + dropped, flood);
    // Burst of 8, then one per 8 s; KoDs at most one per 8 s.
    assert!(served <= 8 + 60 / 8 + 1, "served {served}");
    assert!(kods <= 60 / 8 + 1, "kods {kods}");
    assert!(served + kods < flood / 100, "replies <= requests, and far fewer");
}

#[test]
fn rate_kods_can_be_disabled() {
    let cfg = ServerConfig { rate_limit: RateLimitConfig { kod: false, burst: 1, ..Default::default() }, ..Default::default() };
    let mut s = server(cfg);
    let now = t("2025-06-01T12:01:00Z");
    let (a, _) = exchange(&mut s, 0, ip("192.0.2.1"), &client_request(1), now, now, &synced());
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
    let (a, _) = exchange(&mut s, 1, ip("192.0.2.1"), &client_request(2), now, now, &synced());
    assert_eq!(reason(a), Err(DropReason::RateLimited));
}

#[test]
fn memory_is_bounded_with_a_million_clients() {
    let mut s = server(ServerConfig::default());
    let bytes = s.table_bytes();
    assert_eq!(Server::bytes_per_client(), 74);
    assert_eq!(bytes, 16_384 * 33 + 4096 * 41);
    let now = t("2025-06-01T12:01:00Z");
    let clock = synced();
    let mut out = [0u8; 48];
    for n in 0..1_000_000u64 {
        let client = if n % 2 == 0 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6((u128::from(n) << 64 | 1).into())
        };
        let req = client_request(n + 1);
        if let ServerAction::Respond(r) = s.handle(n * 1000, SocketAddr::new(client, 123), &req, now, &clock, &mut out) {
            let _ = s.finish_response(&r, &mut out, now, &clock);
        }
    }
    // The only growth: the rate limiter's overflow states, 16 octets per
    // table bucket of 4 slots, allocated once when a bucket first overflows.
    assert_eq!(s.table_bytes(), bytes + 16_384 / 4 * 16, "bounded growth");
    assert!(s.rate_limiter().len() <= s.rate_limiter().capacity());
}

#[test]
fn client_tables_are_allocated_by_the_first_request_that_needs_them() {
    // A daemon that only follows sources builds a Server too: it must not pay
    // for the tables (672 KiB by default) until a client asks for time.
    let mut s = server(ServerConfig::default());
    assert_eq!(s.allocated_table_bytes(), 0, "nothing before the first request");
    assert_eq!(s.rate_limiter().allocated_bytes(), 0);
    assert!(s.table_bytes() > 600 * 1024, "the full size is still known: {}", s.table_bytes());
    let now = t("2025-06-01T12:01:00Z");
    let (a, _) = exchange(&mut s, S, ip("192.0.2.1"), &[0u8; 12], now, now, &synced());
    assert!(matches!(a, ServerAction::Ignore(DropReason::TooShort)));
    assert_eq!(s.allocated_table_bytes(), 0, "a refused datagram allocates nothing");
    let (a, _) = exchange(&mut s, S, ip("192.0.2.1"), &client_request(1), now, now, &synced());
    assert!(matches!(a, ServerAction::Respond(_)));
    assert_eq!(s.allocated_table_bytes(), s.table_bytes(), "both tables once served");
    // Without rate limiting and interleaved mode, serving needs no table at all.
    let mut s = server(ServerConfig { interleaved: false, ..open_config() });
    let (a, _) = exchange(&mut s, S, ip("192.0.2.1"), &client_request(1), now, now, &synced());
    assert!(matches!(a, ServerAction::Respond(_)));
    assert_eq!(s.allocated_table_bytes(), 0);
}

// ------------------------------------------------------------ interleaved mode

#[test]
fn interleaved_exchange_follows_the_draft_figure() {
    let mut s = server(open_config());
    let clock = synced();
    let c = ip("2001:db8::77");
    let base = t("2025-06-01T12:01:00Z");
    let at = |x: f64| base + secs(x);
    let mut out = [0u8; 48];

    // Exchange 1, basic: org 0, rx 0, tx t1.
    let t1 = 0x1111_0000_0000_0001u64;
    let a = s.handle(0, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, 0, 0, t1), at(0.0), &clock, &mut out);
    let ServerAction::Respond(r1) = a else { panic!("{a:?}") };
    assert_eq!(r1.reason, ResponseReason::Basic);
    let soft_t3 = s.finish_response(&r1, &mut out, at(0.001), &clock);
    let p1 = parse(&out);
    assert_eq!(p1.origin_timestamp.to_bits(), t1);
    let t2 = p1.receive_timestamp;
    assert_eq!(p1.transmit_timestamp, soft_t3);
    // The daemon learns the real transmit time (t3) from the kernel.
    let t3 = at(0.000_9).to_timestamp();
    s.transmitted(&r1, at(0.000_9), &clock);

    // Exchange 2, interleaved request: org = t2, rx = t4 (client's), tx = t1 (accurate).
    let t4 = 0x4444_0000_0000_0004u64;
    let req2 = request(4, Mode::Client, 6, t2.to_bits(), t4, t1);
    let a = s.handle(16 * S, SocketAddr::new(c, 123), &req2, at(16.0), &clock, &mut out);
    let ServerAction::Respond(r2) = a else { panic!("{a:?}") };
    assert_eq!(r2.reason, ResponseReason::Interleaved);
    let written = s.finish_response(&r2, &mut out, at(16.001), &clock);
    let p2 = parse(&out);
    assert_eq!(p2.origin_timestamp.to_bits(), t4, "origin = request receive");
    assert_eq!(p2.receive_timestamp, at(16.0).to_timestamp(), "receive = this request's");
    assert_eq!(p2.transmit_timestamp, t3, "transmit = previous response's actual transmit");
    assert_eq!(written, t3);

    // Replaying request 2: the saved pair was used once, so basic.
    let a = s.handle(32 * S, SocketAddr::new(c, 123), &req2, at(32.0), &clock, &mut out);
    let ServerAction::Respond(r3) = a else { panic!("{a:?}") };
    assert_eq!(r3.reason, ResponseReason::Basic);
    let _ = s.finish_response(&r3, &mut out, at(32.001), &clock);
    assert_eq!(parse(&out).origin_timestamp.to_bits(), t1, "basic: origin = request transmit");
}

#[test]
fn only_replies_to_requests_in_interleaved_mode_want_a_kernel_transmit_timestamp() {
    let mut s = server(open_config());
    let clock = synced();
    let c = ip("192.0.2.78");
    let base = t("2025-06-01T12:01:00Z");
    let at = |x: f64| base + secs(x);
    let mut out = [0u8; 48];
    let t1 = 0x1111_0000_0000_0001u64;
    let ask = |s: &mut Server, origin: u64, now: f64, out: &mut [u8; 48]| {
        let req = request(4, Mode::Client, 6, origin, 0x4444_0000_0000_0004, t1);
        let ServerAction::Respond(r) = s.handle((now * 1e9) as u64, SocketAddr::new(c, 123), &req, at(now), &clock, out) else {
            panic!("answered")
        };
        s.finish_response_awaiting_tx(&r, out, at(now + 0.001), &clock);
        (r, parse(&out[..]).receive_timestamp)
    };
    // A basic request (origin 0): its reply's timestamp would serve nothing.
    let (r1, t2) = ask(&mut s, 0, 0.0, &mut out);
    assert!(!r1.wants_tx_timestamp());
    // A request naming a saved receive timestamp whose transmit timestamp
    // was never reported: in interleaved mode, answered basic, and its
    // reply's kernel timestamp is wanted.
    let (r2, t2) = ask(&mut s, t2.to_bits(), 16.0, &mut out);
    assert_eq!(r2.reason, ResponseReason::Basic);
    assert!(r2.wants_tx_timestamp());
    s.transmitted(&r2, at(16.000_7), &clock);
    let (r3, _) = ask(&mut s, t2.to_bits(), 32.0, &mut out);
    assert_eq!(r3.reason, ResponseReason::Interleaved);
    assert!(r3.wants_tx_timestamp());
    // An origin naming nothing saved (a basic client's previous transmit timestamp).
    let (r4, _) = ask(&mut s, 0x5555_0000_0000_0005, 48.0, &mut out);
    assert!(!r4.wants_tx_timestamp());
}

#[test]
fn awaiting_the_kernel_timestamp_an_interleaved_answer_carries_it_or_none() {
    let mut s = server(open_config());
    let clock = synced();
    let c = ip("192.0.2.77");
    let base = t("2025-06-01T12:01:00Z");
    let at = |x: f64| base + secs(x);
    let mut out = [0u8; 48];
    let t1 = 0x1111_0000_0000_0001u64;
    let interleaved_request = |s: &mut Server, t2: NtpTimestamp, now: f64, out: &mut [u8; 48]| {
        let req = request(4, Mode::Client, 6, t2.to_bits(), 0x4444_0000_0000_0004, t1);
        s.handle((now * 1e9) as u64, SocketAddr::new(c, 123), &req, at(now), &clock, out)
    };

    // Transmit timestamp never reported: the next answer is basic, not the pre-send reading.
    let ServerAction::Respond(r1) = s.handle(0, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, 0, 0, t1), at(0.0), &clock, &mut out) else { panic!() };
    let pre_send = s.finish_response_awaiting_tx(&r1, &mut out, at(0.001), &clock);
    let p1 = parse(&out);
    assert_eq!(p1.transmit_timestamp, pre_send, "a basic answer still carries its transmit time");
    let ServerAction::Respond(r2) = interleaved_request(&mut s, p1.receive_timestamp, 16.0, &mut out) else { panic!() };
    assert_eq!(r2.reason, ResponseReason::Basic);

    // Reported: the next answer is interleaved with exactly the kernel's time.
    s.finish_response_awaiting_tx(&r2, &mut out, at(16.001), &clock);
    let t2 = parse(&out).receive_timestamp;
    s.transmitted(&r2, at(16.000_7), &clock);
    let ServerAction::Respond(r3) = interleaved_request(&mut s, t2, 32.0, &mut out) else { panic!() };
    assert_eq!(r3.reason, ResponseReason::Interleaved);
    s.finish_response_awaiting_tx(&r3, &mut out, at(32.001), &clock);
    assert_eq!(parse(&out).transmit_timestamp, at(16.000_7).to_timestamp());
}

#[test]
fn interleaved_falls_back_to_basic() {
    let clock = synced();
    let c = ip("192.0.2.99");
    let now = t("2025-06-01T12:01:00Z");
    let mut out = [0u8; 48];

    // A fresh server has nothing saved: basic.
    let mut s = server(open_config());
    let a = s.handle(0, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, 0xaaaa, 0xbbbb, 0xcccc), now, &clock, &mut out);
    assert!(matches!(a, ServerAction::Respond(Response { reason: ResponseReason::Basic, .. })));
    let ServerAction::Respond(r) = a else { unreachable!() };
    let _ = s.finish_response(&r, &mut out, now + secs(1e-4), &clock);
    let saved_rx = parse(&out).receive_timestamp;

    // Request rx == tx: never interleaved (condition 1), even with a matching origin.
    let a = s.handle(S, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, saved_rx.to_bits(), 5, 5), now + secs(1.0), &clock, &mut out);
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
    let ServerAction::Respond(r) = a else { unreachable!() };
    let _ = s.finish_response(&r, &mut out, now + secs(1.0001), &clock);
    let saved_rx = parse(&out).receive_timestamp;

    // A stale origin (an older receive timestamp): basic.
    let a = s.handle(2 * S, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, saved_rx.to_bits() - 1, 1, 2), now + secs(2.0), &clock, &mut out);
    assert_eq!(reason(a), Ok(ResponseReason::Basic));

    // Another address cannot use this client's pair.
    let mut s = server(open_config());
    let a = s.handle(0, SocketAddr::new(c, 123), &client_request(1), now, &clock, &mut out);
    let ServerAction::Respond(r) = a else { unreachable!() };
    let _ = s.finish_response(&r, &mut out, now, &clock);
    let rx = parse(&out).receive_timestamp.to_bits();
    let a = s.handle(S, SocketAddr::new(ip("192.0.2.100"), 123), &request(4, Mode::Client, 6, rx, 1, 2), now, &clock, &mut out);
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
    // ... but the client itself can, from any port (the key is the address).
    let a = s.handle(S, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, rx, 1, 2), now + secs(1.0), &clock, &mut out);
    assert_eq!(reason(a), Ok(ResponseReason::Interleaved));

    // Interleaved disabled: always basic.
    let mut s = server(ServerConfig { interleaved: false, ..open_config() });
    let a = s.handle(0, SocketAddr::new(c, 123), &client_request(1), now, &clock, &mut out);
    let ServerAction::Respond(r) = a else { unreachable!() };
    let _ = s.finish_response(&r, &mut out, now, &clock);
    let rx = parse(&out).receive_timestamp.to_bits();
    let a = s.handle(S, SocketAddr::new(c, 123), &request(4, Mode::Client, 6, rx, 1, 2), now + secs(1.0), &clock, &mut out);
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
}

// ---------------------------------------------------------------- leap smear

fn smear_server(style: SmearStyle, kind: LeapKind) -> (Server, SmearConfig) {
    let smear = SmearConfig { style, leap_time: t("2017-01-01T00:00:00Z"), kind };
    (server(ServerConfig { smear: Some(smear), ..open_config() }), smear)
}

/// Reference curve in f64, from the documented definition, as the correction
/// in seconds at UTC-clock offset `dt` from the leap (outside 23:59:60).
fn reference_correction(style: SmearStyle, kind: LeapKind, dt: f64) -> f64 {
    let w = 86_400.0;
    let (sigma, e) = match kind {
        LeapKind::Insert => (1.0, 0.0),
        LeapKind::Delete => (-1.0, -1.0),
    };
    let start = match style {
        SmearStyle::BeforeLeap => e - w,
        SmearStyle::Centered => e - w / 2.0,
    };
    let after = dt >= 0.0;
    let u = if after { dt + sigma } else { dt };
    let r = ((u - start) / w).clamp(0.0, 1.0);
    if after {
        sigma * (r - 1.0)
    } else {
        sigma * r
    }
}

#[test]
fn served_time_follows_the_smear_curve_and_refid_carries_it() {
    for style in [SmearStyle::BeforeLeap, SmearStyle::Centered] {
        for kind in [LeapKind::Insert, LeapKind::Delete] {
            let (mut s, smear) = smear_server(style, kind);
            let clock = ServerClockState { leap: if kind == LeapKind::Insert { LeapIndicator::Insert } else { LeapIndicator::Delete }, ..synced() };
            let points = [
                -90_000.0, -86_400.5, -86_399.0, -60_000.0, -43_201.0, -43_200.0, -43_199.0, -30_000.0, -21_600.0,
                -3_600.0, -60.0, -1.5, -1.000_001, -0.5, -0.000_001, 0.0, 0.000_001, 0.5, 1.0, 60.0, 3_600.0,
                21_600.0, 43_198.0, 43_199.5, 43_200.0, 50_000.0, 90_000.0,
            ];
            for (i, dt) in points.into_iter().enumerate() {
                // Skip the deleted second, which a stepping clock never reads.
                if kind == LeapKind::Delete && (-1.0..0.0).contains(&dt) {
                    continue;
                }
                let rx_time = smear.leap_time + secs(dt);
                let tx_time = rx_time + secs(0.000_250);
                let (_, r) = exchange(&mut s, i as u64 * 64 * S, ip("192.0.2.5"), &client_request(1), rx_time, tx_time, &clock);
                let r = r.unwrap();
                let c_rx = reference_correction(style, kind, dt);
                let c_tx = reference_correction(style, kind, dt + 0.000_250);
                let want_rx = rx_time + secs(-c_rx);
                let want_tx = tx_time + secs(-c_tx);
                let err_rx = r.receive_timestamp.wrapping_sub(want_rx.to_timestamp()).to_seconds_f64();
                let err_tx = r.transmit_timestamp.wrapping_sub(want_tx.to_timestamp()).to_seconds_f64();
                assert!(err_rx.abs() < 1e-6, "{style:?} {kind:?} dt {dt}: rx error {err_rx}");
                assert!(err_tx.abs() < 1e-6, "{style:?} {kind:?} dt {dt}: tx error {err_tx}");
                assert_eq!(r.leap, LeapIndicator::NoWarning, "smearing servers never announce the leap");
                let active = smear.is_active(rx_time, false);
                match r.reference_id.smear_correction() {
                    Some(c) => {
                        assert!(active, "{dt}");
                        let err = c.to_seconds_f64() - c_rx;
                        assert!(err.abs() <= SmearCorrection::RESOLUTION_SECS, "{style:?} {kind:?} dt {dt}: refid error {err}");
                    }
                    None => {
                        assert!(!active, "{style:?} {kind:?} dt {dt}: smear active but no smear refid");
                        assert_eq!(r.reference_id, clock.reference_id);
                        assert!(c_rx.abs() < 1e-6);
                    }
                }
            }
        }
    }
}

#[test]
fn inserted_second_in_progress_is_served_continuously() {
    let (mut s, smear) = smear_server(SmearStyle::Centered, LeapKind::Insert);
    let clock = ServerClockState { inserted_second_in_progress: true, ..synced() };
    // Clock reads 23:59:59.25 for the second time (real time is 23:59:60.25).
    let rx_time = smear.leap_time + secs(-0.75);
    let (_, r) = exchange(&mut s, 0, ip("192.0.2.5"), &client_request(1), rx_time, rx_time, &clock);
    let r = r.unwrap();
    // Served = t + 0.5 - 0.25/W.
    let want = rx_time + secs(0.5 - 0.25 / 86_400.0);
    assert!(r.receive_timestamp.wrapping_sub(want.to_timestamp()).to_seconds_f64().abs() < 1e-6);
    let c = r.reference_id.smear_correction().unwrap().to_seconds_f64();
    assert!((c - (-0.5 + 0.25 / 86_400.0)).abs() <= SmearCorrection::RESOLUTION_SECS);
}

#[test]
fn no_smear_refid_when_unsynchronized_or_outside_the_window() {
    let (mut s, smear) = smear_server(SmearStyle::BeforeLeap, LeapKind::Insert);
    let rx_time = smear.leap_time + secs(-100.0);
    let (_, r) = exchange(&mut s, 0, ip("192.0.2.5"), &client_request(1), rx_time, rx_time, &ServerClockState::unsynchronized(-20));
    let r = r.unwrap();
    assert_eq!((r.stratum, r.leap), (0, LeapIndicator::Unsynchronized));
    assert!(r.reference_id.smear_correction().is_none());
    let far = smear.leap_time + secs(-200_000.0);
    let (_, r) = exchange(&mut s, 64 * S, ip("192.0.2.5"), &client_request(1), far, far, &synced());
    assert_eq!(r.unwrap().reference_id, synced().reference_id);
}

// --------------------------------------------------------------- robustness

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<u32>().prop_map(|a| IpAddr::V4(a.into())), any::<u128>().prop_map(|a| IpAddr::V6(a.into())),]
}

proptest! {
    #[test]
    fn handle_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..1100),
        addr in arb_addr(),
        now_ns: u64,
        rx_secs in -(1i64 << 40)..(1i64 << 40),
        tx_delta: i64,
        out_len in 0usize..100,
        smear: bool,
        in_inserted_second: bool,
    ) {
        let mut cfg = ServerConfig::default();
        cfg.access.push_cidr("10.0.0.0/8", AccessAction::KodDeny).unwrap();
        if smear {
            cfg.smear = Some(SmearConfig { style: SmearStyle::Centered, leap_time: NtpTime::new(rx_secs, 0), kind: LeapKind::Insert });
        }
        let mut s = server(cfg);
        let clock = ServerClockState { inserted_second_in_progress: in_inserted_second, ..synced() };
        let rx_time = NtpTime::new(rx_secs, 0);
        let mut out = vec![0u8; out_len];
        let a = s.handle(now_ns, SocketAddr::new(addr, 123), &bytes, rx_time, &clock, &mut out);
        if let ServerAction::Respond(r) = a {
            prop_assert!(r.len <= bytes.len());
            prop_assert!(r.len <= out.len());
            let _ = s.finish_response(&r, &mut out, rx_time + NtpDuration::from_bits(tx_delta), &clock);
            s.transmitted(&r, rx_time + NtpDuration::from_bits(tx_delta), &clock);
            let p = parse(&out[..r.len]);
            prop_assert_eq!(p.mode, Mode::Server);
            prop_assert!((1..=4).contains(&p.version));
            prop_assert_eq!(p.version, bytes[0] >> 3 & 7);
        }
        // finish_response on a short or foreign buffer never panics either.
        let fake = Response { len: 48, reason: ResponseReason::Basic, pending: Pending::Time { client: addr, rx: NtpTimestamp::ZERO, rx_time, interleaved: true, xleave_client: true, now_ns, scale: Scale::Served } };
        let _ = s.finish_response(&fake, &mut out, rx_time, &clock);
    }

    #[test]
    fn origin_is_always_the_request_transmit_in_basic_mode(tx: u64, poll: i8, version in 1u8..=4) {
        let mut s = server(open_config());
        let now = t("2025-06-01T12:01:00Z");
        let (_, r) = exchange(&mut s, 0, ip("192.0.2.1"), &request(version, Mode::Client, poll, 0, 0, tx), now, now, &synced());
        let r = r.unwrap();
        prop_assert_eq!(r.origin_timestamp.to_bits(), tx);
        prop_assert_eq!(r.poll, poll.clamp(4, 17));
        prop_assert_eq!(r.version, version);
    }
}

#[test]
fn the_access_list_and_the_smear_can_be_replaced_while_running() {
    let mut s = server(open_config());
    let now = t("2016-12-31T18:00:00Z");
    let clock = synced();
    let req = client_request(0xabcdef);
    let (a, plain) = exchange(&mut s, 0, ip("192.0.2.1"), &req, now, now, &clock);
    assert_eq!(reason(a), Ok(ResponseReason::Basic));
    assert_eq!(plain.unwrap().reference_id, clock.reference_id);
    // A smear announced later: the next reply carries the smear REFID.
    let smear = SmearConfig { style: SmearStyle::Centered, leap_time: t("2017-01-01T00:00:00Z"), kind: LeapKind::Insert };
    s.set_smear(Some(smear));
    assert_eq!(s.config().smear, Some(smear));
    let (_, smeared) = exchange(&mut s, 1, ip("192.0.2.1"), &req, now, now, &clock);
    assert_ne!(smeared.unwrap().reference_id, clock.reference_id, "a smearing server names its correction");
    // A new access list that denies the client: no reply.
    s.set_access(AccessList::new(AccessAction::Deny));
    let (a, r) = exchange(&mut s, 2, ip("192.0.2.1"), &req, now, now, &clock);
    assert_eq!((reason(a), r), (Err(DropReason::Denied), None));
}

#[test]
fn the_root_dispersion_grows_at_phi_only_after_the_reference_time() {
    let clock = synced();
    let r = clock.reference_time.unwrap();
    assert_eq!(clock.root_dispersion_at(r), clock.root_dispersion);
    assert_eq!(clock.root_dispersion_at(r + secs(-100.0)), clock.root_dispersion, "no shrinking before it");
    let grown = clock.root_dispersion_at(r + secs(1000.0)) - clock.root_dispersion;
    assert!((grown.to_seconds_f64() - 15e-6 * 1000.0).abs() < 1e-9, "{grown:?}");
}

#[test]
fn only_a_rate_kod_raises_the_poll_to_the_rate_limit() {
    // With the server's poll floor at 2^0 s, a DENY KoD echoes the clamped
    // poll, while a RATE KoD asks for at least the limit's interval (2^3 s).
    let mut acl = AccessList::new(AccessAction::Allow);
    acl.push_cidr("203.0.113.0/24", AccessAction::KodDeny).unwrap();
    let mut s = server(ServerConfig { access: acl, poll_log2_min: 0, ..Default::default() });
    assert_eq!(s.config().rate_limit.poll_log2_min(), 3);
    let now = t("2025-06-01T12:01:00Z");
    let req = request(4, Mode::Client, 0, 0, 0, 7);
    let (a, r) = exchange(&mut s, 0, ip("203.0.113.9"), &req, now, now, &synced());
    assert_eq!(reason(a), Ok(ResponseReason::KodSent(KodKind::Deny)));
    assert_eq!(r.unwrap().poll, 0);
    let mut rate_poll = None;
    for n in 0..100u64 {
        let (a, r) = exchange(&mut s, n * S / 100, ip("192.0.2.1"), &req, now, now, &synced());
        if reason(a) == Ok(ResponseReason::KodSent(KodKind::Rate)) {
            rate_poll = r.map(|r| r.poll);
            break;
        }
    }
    assert_eq!(rate_poll, Some(3));
}

#[test]
fn allocate_tables_allocates_what_the_configuration_uses() {
    let mut s = server(ServerConfig::default());
    assert_eq!(s.allocated_table_bytes(), 0, "tables are allocated lazily");
    s.allocate_tables();
    assert!(s.allocated_table_bytes() > 0);
    assert_eq!(s.allocated_table_bytes(), s.table_bytes());
}

#[test]
fn a_trailer_is_whole_extension_fields_then_an_optional_legacy_mac() {
    let field = |len: u16| {
        let mut v = vec![0u8; usize::from(len)];
        v[0] = 0x01;
        v[2..4].copy_from_slice(&len.to_be_bytes());
        v
    };
    assert!(trailer_is_well_formed(&[]));
    assert!(trailer_is_well_formed(&field(16)));
    assert!(trailer_is_well_formed(&[field(16), field(16)].concat()), "two fields and nothing after");
    assert!(trailer_is_well_formed(&[field(16), field(16), field(16)].concat()));
    assert!(trailer_is_well_formed(&[field(16), field(16), vec![0; 20]].concat()), "then an MD5 MAC");
    assert!(!trailer_is_well_formed(&[field(16), vec![0; 12]].concat()), "12 octets are neither a field nor a MAC");
    // A field claiming 12 octets (below the 16 minimum, though a multiple of
    // 4) is malformed even when what follows would parse.
    let mut short = field(16);
    short[2..4].copy_from_slice(&12u16.to_be_bytes());
    assert!(!trailer_is_well_formed(&[short, vec![0; 16]].concat()));
    let mut odd = field(28);
    odd[2..4].copy_from_slice(&18u16.to_be_bytes());
    assert!(!trailer_is_well_formed(&odd));
    let mut long = field(16);
    long[2..4].copy_from_slice(&32u16.to_be_bytes());
    assert!(!trailer_is_well_formed(&long), "longer than the packet");
}
