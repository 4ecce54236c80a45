//! NTPv5 responder tests: header fields, drafts, extension fields and their
//! echo and padding rules, interleaved mode, timescales, refusals, the v4
//! upgrade offer, and that no answer is ever longer than its request.

use super::*;
use crate::server::{AccessList, RateLimitConfig, ServerConfig, SmearConfig};
use crate::time::NtpDuration;
use crate::wire::ext::ExtensionArea;
use crate::wire::refid::ReferenceId;
use crate::wire::v5::V5ReferenceId;
use core::net::SocketAddr;
use proptest::prelude::*;

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn synced() -> ServerClockState {
    ServerClockState {
        leap: LeapIndicator::Insert,
        stratum: 2,
        precision_log2: -24,
        root_delay: NtpDuration::from_seconds_f64(0.010),
        root_dispersion: NtpDuration::from_seconds_f64(0.001),
        reference_id: ReferenceId::from_ipv4("192.0.2.7".parse().unwrap()),
        reference_time: Some(t("2025-06-01T12:00:00Z")),
        inserted_second_in_progress: false,
    }
}

fn open() -> ServerConfig {
    ServerConfig { rate_limit: RateLimitConfig { enabled: false, ..Default::default() }, ..Default::default() }
}

fn server(config: ServerConfig) -> Server {
    Server::new(config, [7; 16])
}

fn draft_field(d: Draft) -> FieldRepr {
    FieldBody::DraftIdentification { name: d.name().as_bytes().to_vec() }.to_field()
}

/// A request: header with `flags`, `server_cookie` and timescale, then `fields`.
fn request_with(timescale: Timescale, flags: u16, server_cookie: u64, fields: &[FieldRepr]) -> Vec<u8> {
    let mut r = Repr::request(timescale, 0x1122_3344_5566_7788);
    r.flags = Flags(flags);
    r.server_cookie = server_cookie;
    let mut b = r.to_bytes().to_vec();
    for f in fields {
        b.extend(f.to_bytes());
    }
    b
}

fn request(fields: &[FieldRepr]) -> Vec<u8> {
    request_with(Timescale::Utc, 0, 0, fields)
}

/// handle + finish_response; checks the length rule; returns the action and the response octets.
fn exchange(s: &mut Server, req: &[u8], rx: NtpTime, tx: NtpTime, clock: &ServerClockState) -> (ServerAction, Vec<u8>) {
    let mut out = vec![0xa5u8; 2048];
    let a = s.handle(0, SocketAddr::new(ip("192.0.2.50"), 40000), req, rx, clock, &mut out);
    match a {
        ServerAction::Respond(r) => {
            assert_eq!(r.len, req.len(), "an NTPv5 answer is exactly as long as the request");
            s.finish_response(&r, &mut out, tx, clock);
            (a, out[..r.len].to_vec())
        }
        ServerAction::Ignore(_) => (a, Vec::new()),
    }
}

fn parse(bytes: &[u8]) -> (Repr, ExtensionArea) {
    let p = v5::Packet::new_checked(bytes).unwrap();
    (Repr::parse(&p).unwrap(), v5::parse_extensions(p.payload()))
}

fn bodies(area: &ExtensionArea) -> Vec<FieldBody> {
    area.fields.iter().map(|f| FieldBody::parse(f).unwrap().unwrap()).collect()
}

#[test]
fn basic_response_in_each_draft() {
    let rx = t("2025-06-01T12:01:00Z");
    let tx = rx + NtpDuration::from_seconds_f64(25e-6);
    for d in Draft::ALL {
        let mut s = server(open());
        let req = request(&[draft_field(d)]);
        let (_, out) = exchange(&mut s, &req, rx, tx, &synced());
        let (h, area) = parse(&out);
        assert_eq!((h.version, h.mode), (5, Mode::Server));
        assert_eq!(h.leap, LeapIndicator::Insert);
        assert_eq!(h.stratum, 2);
        assert_eq!(h.poll, 4, "the lowest poll the client may use");
        assert_eq!(h.precision, -24);
        assert_eq!(h.timescale, Timescale::Utc);
        assert_eq!(h.era, 0);
        assert_eq!(h.flags, Flags(Flags::SYNCHRONIZED));
        assert_eq!(h.server_cookie, 0, "no interleaved mode asked for");
        assert_eq!(h.client_cookie, 0x1122_3344_5566_7788);
        assert_eq!(h.receive_timestamp, rx.to_timestamp());
        assert_eq!(h.transmit_timestamp, tx.to_timestamp());
        assert_eq!(h.root_delay, Time32::from_seconds_f64(0.010));
        assert!(h.root_dispersion.to_seconds_f64() > 0.001, "grew since the reference time");
        assert_eq!(bodies(&area), vec![FieldBody::DraftIdentification { name: d.name().as_bytes().to_vec() }]);
        assert!(h.problems_for(d).is_empty(), "{:?}", h.problems_for(d));
        assert!(v5::field_problems_for(Mode::Server, &area.fields, d).is_empty());
    }
}

#[test]
fn era_follows_the_receive_timestamp() {
    let mut s = server(open());
    let rx = t("2036-02-07T06:28:20Z");
    let (_, out) = exchange(&mut s, &request(&[draft_field(Draft::D09)]), rx, rx, &synced());
    let (h, _) = parse(&out);
    assert_eq!(h.era, 1);
    assert_eq!(NtpTime::from_era_parts(1, h.receive_timestamp.seconds(), h.receive_timestamp.fraction()), rx);
}

#[test]
fn drafts_it_does_not_speak_get_no_answer() {
    let mut s = server(open());
    let now = t("2025-06-01T12:01:00Z");
    let clock = synced();
    let unknown = FieldBody::DraftIdentification { name: b"draft-ietf-ntp-ntpv5-06".to_vec() }.to_field();
    let longer = FieldBody::DraftIdentification { name: b"draft-ietf-ntp-ntpv5-08x".to_vec() }.to_field();
    for (req, why) in [
        (request(&[]), V5Drop::NoDraft),
        (request(&[unknown]), V5Drop::UnknownDraft),
        (request(&[longer]), V5Drop::UnknownDraft),
    ] {
        assert_eq!(exchange(&mut s, &req, now, now, &clock).0, ServerAction::Ignore(DropReason::V5(why)));
    }
    let mut resp = request(&[draft_field(Draft::D08)]);
    resp[0] = 0x2c; // mode 4
    assert_eq!(exchange(&mut s, &resp, now, now, &clock).0, ServerAction::Ignore(DropReason::V5(V5Drop::BadMode(Mode::Server))));
    let mut bad = request(&[draft_field(Draft::D08)]);
    bad.extend([0xf5, 0x01, 0x00, 0x40]); // Padding declaring 64 octets, 4 present
    assert_eq!(exchange(&mut s, &bad, now, now, &clock).0, ServerAction::Ignore(DropReason::V5(V5Drop::Malformed)));
    let off = server(ServerConfig { ntpv5: false, ..open() }).handle(
        0,
        SocketAddr::new(ip("192.0.2.50"), 1),
        &request(&[draft_field(Draft::D08)]),
        now,
        &clock,
        &mut [0; 200],
    );
    assert_eq!(off, ServerAction::Ignore(DropReason::NtpV5));
}

#[test]
fn an_output_buffer_shorter_than_the_request_gets_no_answer() {
    // The answer is exactly as long as the request: a buffer that long is
    // enough, one octet less is too small.
    let mut s = server(open());
    let now = t("2025-06-01T12:01:00Z");
    let req = request(&[draft_field(Draft::D09)]);
    let from = SocketAddr::new(ip("192.0.2.50"), 40000);
    let mut out = vec![0; req.len()];
    let short = s.handle(0, from, &req, now, &synced(), &mut out[..req.len() - 1]);
    assert_eq!(short, ServerAction::Ignore(DropReason::OutputTooSmall));
    assert!(matches!(s.handle(0, from, &req, now, &synced(), &mut out), ServerAction::Respond(r) if r.len == req.len()));
}

#[test]
fn the_minus_07_padded_draft_name_is_answered_with_the_same_octets() {
    let mut s = server(open());
    let now = t("2025-06-01T12:01:00Z");
    let padded = FieldRepr::new(FieldType::V5DraftIdentification, b"draft-ietf-ntp-ntpv5-07\0".to_vec());
    let req = request(std::slice::from_ref(&padded));
    let (_, out) = exchange(&mut s, &req, now, now, &synced());
    let (_, area) = parse(&out);
    assert_eq!(area.fields, vec![padded]);
}

#[test]
fn fields_are_echoed_and_what_is_left_out_is_padded() {
    let mut s = server(open());
    let now = t("2025-06-01T12:01:00Z");
    let mut filter = BloomFilter::EMPTY;
    filter.add(&V5ReferenceId::from_random([3; 15]));
    filter.0[200] = 0x5a;
    s.set_reference_ids(filter);
    assert_eq!(s.reference_ids(), &filter);
    let nts_uid = FieldRepr::new(FieldType::from_u16(0x0104), vec![9; 32]);
    let mac = FieldBody::Mac { key_id: 1, mac: vec![0; 16] }.to_field();
    let fields = [
        draft_field(Draft::D08),
        FieldBody::Padding { body: vec![0; 8] }.to_field(),
        FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field(),
        FieldBody::ReferenceIdsRequest { offset: 192, padding: vec![0; 14] }.to_field(),
        FieldBody::ReferenceIdsRequest { offset: 510, padding: vec![0; 14] }.to_field(),
        nts_uid,
        FieldBody::MonotonicReceiveTimestamp { epoch_id: 0, timestamp: NtpTimestamp::ZERO }.to_field(),
        FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::ZERO }.to_field(),
        FieldBody::SecondaryReceiveTimestamp { timescale: Timescale::Tai, era: 0, reserved: 0, timestamp: NtpTimestamp::ZERO }.to_field(),
        FieldBody::SecondaryReceiveTimestamp { timescale: Timescale::Utc, era: 0, reserved: 0, timestamp: NtpTimestamp::ZERO }.to_field(),
        FieldBody::Correction {
            origin_correction: 0,
            origin_path_id: 0,
            reserved: 0,
            delay_correction: 0x18000,
            delay_path_id: 7,
            checksum_complement: 0xabcd,
        }
        .to_field(),
    ];
    let req = request(&fields);
    let (_, out) = exchange(&mut s, &req, now, now, &synced());
    assert_eq!(out.len(), req.len());
    let (_, area) = parse(&out);
    assert!(area.error.is_none());
    let b = bodies(&area);
    let left_out = fields[4].buffer_len() + fields[5].buffer_len() + fields[6].buffer_len() + fields[8].buffer_len();
    assert_eq!(
        b,
        vec![
            FieldBody::DraftIdentification { name: Draft::D08.name().as_bytes().to_vec() },
            FieldBody::Padding { body: vec![0; 8] },
            FieldBody::ServerInformation { supported_versions: 0x001f, reserved: 0 },
            FieldBody::ReferenceIdsResponse { chunk: filter.0[192..208].to_vec() },
            FieldBody::ReferenceTimestamp { timestamp: t("2025-06-01T12:00:00Z").to_timestamp() },
            FieldBody::SecondaryReceiveTimestamp { timescale: Timescale::Utc, era: 0, reserved: 0, timestamp: now.to_timestamp() },
            FieldBody::Padding { body: vec![0; left_out - 4] },
            FieldBody::Correction {
                origin_correction: 0x18000,
                origin_path_id: 7,
                reserved: 0,
                delay_correction: 0,
                delay_path_id: 0,
                checksum_complement: 0,
            },
        ]
    );
    assert!(v5::field_problems_for(Mode::Server, &area.fields, Draft::D08).is_empty());

    // With a MAC: Authentication NAK, stratum 0, no time, no MAC.
    let mut with_mac = fields[..4].to_vec();
    with_mac.push(mac);
    let (_, out) = exchange(&mut s, &request(&with_mac), now, now, &synced());
    let (h, area) = parse(&out);
    assert!(h.flags.auth_nak());
    assert_eq!((h.stratum, h.receive_timestamp, h.transmit_timestamp), (0, NtpTimestamp::ZERO, NtpTimestamp::ZERO));
    assert!(area.fields.iter().all(|f| matches!(f.field_type, FieldType::V5DraftIdentification | FieldType::V5Padding)));
    assert!(h.problems_for(Draft::D08).is_empty(), "{:?}", h.problems_for(Draft::D08));
}

/// A first request in `draft` asking for interleaved mode, received at
/// 12:01:00 and answered 30 µs later: those times and the answer's header.
fn first_interleaved_request(s: &mut Server, draft: Draft) -> (NtpTime, NtpTime, Repr) {
    let rx1 = t("2025-06-01T12:01:00Z");
    let tx1 = rx1 + NtpDuration::from_seconds_f64(30e-6);
    let (_, out) = exchange(s, &request_with(Timescale::Utc, Flags::INTERLEAVED, 0, &[draft_field(draft)]), rx1, tx1, &synced());
    (rx1, tx1, parse(&out).0)
}

#[test]
fn interleaved_mode_returns_the_earlier_transmit_timestamp() {
    let mut s = server(open());
    let clock = synced();
    let (rx1, tx1, h1) = first_interleaved_request(&mut s, Draft::D08);
    assert!(!h1.flags.interleaved(), "nothing saved yet: basic");
    assert_eq!(h1.server_cookie, rx1.to_timestamp().to_bits(), "a new cookie whenever interleaved is asked for");
    let req2 = request_with(Timescale::Utc, Flags::INTERLEAVED, h1.server_cookie, &[draft_field(Draft::D08)]);
    let mut out = vec![0u8; 200];
    let other = s.handle(0, SocketAddr::new(ip("192.0.2.51"), 1), &req2, rx1, &clock, &mut out);
    assert_eq!(reason_of(other), ResponseReason::Basic, "cookies are kept per client address");
    let rx2 = rx1 + NtpDuration::from_seconds(16);
    let tx2 = rx2 + NtpDuration::from_seconds_f64(30e-6);
    let (a2, out2) = exchange(&mut s, &req2, rx2, tx2, &clock);
    let (h2, _) = parse(&out2);
    assert_eq!(reason_of(a2), ResponseReason::Interleaved);
    assert!(h2.flags.interleaved());
    assert_eq!(h2.transmit_timestamp, tx1.to_timestamp(), "the first response's transmit time");
    assert_eq!(h2.receive_timestamp, rx2.to_timestamp());
    assert_eq!(h2.server_cookie, rx2.to_timestamp().to_bits());
    // The cookie was used: asking with it again gives a basic answer.
    let (_, out3) = exchange(&mut s, &req2, rx2 + NtpDuration::from_seconds(16), rx2 + NtpDuration::from_seconds(17), &clock);
    assert!(!parse(&out3).0.flags.interleaved());
}

fn reason_of(a: ServerAction) -> ResponseReason {
    match a {
        ServerAction::Respond(r) => r.reason,
        ServerAction::Ignore(d) => panic!("ignored: {d:?}"),
    }
}

#[test]
fn timescales_served() {
    let now = t("2016-12-31T23:50:00Z");
    let smear = SmearConfig { style: crate::server::SmearStyle::Centered, leap_time: t("2017-01-01T00:00:00Z"), kind: crate::server::LeapKind::Insert };
    let mut s = server(ServerConfig { tai_utc_offset: Some(37), smear: Some(smear), ..open() });
    let clock = synced();
    let ask = |s: &mut Server, ts| {
        let later = now + NtpDuration::from_seconds_f64(0.001);
        let (_, out) = exchange(s, &request_with(ts, 0, 0, &[draft_field(Draft::D08)]), now, later, &clock);
        parse(&out).0
    };
    let tai = ask(&mut s, Timescale::Tai);
    assert_eq!(tai.timescale, Timescale::Tai);
    assert_eq!(tai.receive_timestamp, (now + NtpDuration::from_seconds(37)).to_timestamp());
    assert_eq!(tai.transmit_timestamp, (now + NtpDuration::from_seconds_f64(37.001)).to_timestamp());
    let utc = ask(&mut s, Timescale::Utc);
    assert_eq!((utc.timescale, utc.receive_timestamp, utc.leap), (Timescale::Utc, now.to_timestamp(), LeapIndicator::Insert));
    let smeared = ask(&mut s, Timescale::LeapSmearedUtc);
    assert_eq!(smeared.timescale, Timescale::LeapSmearedUtc);
    assert_eq!(smeared.leap, LeapIndicator::NoWarning, "a smeared timescale hides the leap");
    assert!(smeared.receive_timestamp != now.to_timestamp(), "10 min before a centered smear's leap the time is smeared");
    let ut1 = ask(&mut s, Timescale::Ut1);
    assert_eq!(ut1.timescale, Timescale::Utc, "UT1 is not served: the answer says UTC");
    let mut plain = server(open());
    assert_eq!(ask(&mut plain, Timescale::Tai).timescale, Timescale::Utc, "no TAI offset configured");
    assert_eq!(ask(&mut plain, Timescale::LeapSmearedUtc).timescale, Timescale::Utc);
}

#[test]
fn unsynchronized_rate_limited_and_denied() {
    let now = t("2025-06-01T12:01:00Z");
    let mut s = server(open());
    let (_, out) = exchange(&mut s, &request(&[draft_field(Draft::D08)]), now, now, &ServerClockState::unsynchronized(-20));
    let (h, _) = parse(&out);
    assert_eq!((h.leap, h.stratum, h.flags.synchronized()), (LeapIndicator::Unsynchronized, 0, false));

    let mut access = AccessList::default();
    access.push_cidr("192.0.2.0/24", AccessAction::KodDeny).unwrap();
    let mut s = server(ServerConfig { access, ..open() });
    let (a, out) = exchange(&mut s, &request(&[draft_field(Draft::D08), FieldBody::Padding { body: vec![0; 4] }.to_field()]), now, now, &synced());
    assert_eq!(reason_of(a), ResponseReason::KodSent(KodKind::Deny));
    let (h, area) = parse(&out);
    assert_eq!((h.poll, h.stratum, h.transmit_timestamp), (POLL_NEVER, 0, NtpTimestamp::ZERO));
    assert_eq!(h.client_cookie, 0x1122_3344_5566_7788);
    assert_eq!(area.fields.len(), 2);

    let mut s = server(ServerConfig::default());
    let clock = synced();
    let req = request(&[draft_field(Draft::D08)]);
    let mut kods = 0;
    for i in 0..20u64 {
        let mut out = vec![0u8; 200];
        if let ServerAction::Respond(r) = s.handle(i, SocketAddr::new(ip("192.0.2.60"), 1), &req, now, &clock, &mut out) {
            if r.reason == ResponseReason::KodSent(KodKind::Rate) {
                kods += 1;
                let (h, _) = parse(&out[..r.len]);
                assert_eq!(h.stratum, 0);
                assert!(h.poll >= s.config().rate_limit.poll_log2_min());
            }
        }
    }
    assert!(kods > 0, "20 requests in 20 ns are over the limit");
}

#[test]
fn over_the_rate_a_drop_says_whether_a_kod_was_held_back() {
    // Burst 1: a second request at the same instant is over the limit (a
    // RATE KoD when KoDs are on), and a third is dropped: "KoD limited" when a KoD was
    // held back by the KoD bucket, "rate limited" when KoDs are off.
    let now = t("2025-06-01T12:01:00Z");
    let req = request(&[draft_field(Draft::D09)]);
    for (kod, third) in [(true, DropReason::KodLimited(KodKind::Rate)), (false, DropReason::RateLimited)] {
        let mut s = server(ServerConfig { rate_limit: RateLimitConfig { burst: 1, kod, ..Default::default() }, ..Default::default() });
        let mut actions = (0..3).map(|_| exchange(&mut s, &req, now, now, &synced()).0);
        assert_eq!(reason_of(actions.next().unwrap()), ResponseReason::Basic);
        let second = actions.next().unwrap();
        if kod {
            assert_eq!(reason_of(second), ResponseReason::KodSent(KodKind::Rate));
        } else {
            assert_eq!(second, ServerAction::Ignore(DropReason::RateLimited));
        }
        assert_eq!(actions.next(), Some(ServerAction::Ignore(third)), "KoDs on: {kod}");
    }
}

#[test]
fn a_server_cookie_without_the_interleaved_flag_gets_a_basic_answer() {
    let mut s = server(open());
    let clock = synced();
    let (rx1, _, h1) = first_interleaved_request(&mut s, Draft::D09);
    let cookie = h1.server_cookie;
    assert_ne!(cookie, 0);
    let rx2 = rx1 + NtpDuration::from_seconds(16);
    let tx2 = rx2 + NtpDuration::from_seconds_f64(30e-6);
    let (a, out) = exchange(&mut s, &request_with(Timescale::Utc, 0, cookie, &[draft_field(Draft::D09)]), rx2, tx2, &clock);
    let (h, _) = parse(&out);
    assert_eq!(reason_of(a), ResponseReason::Basic);
    assert!(!h.flags.interleaved());
    assert_eq!((h.transmit_timestamp, h.server_cookie), (tx2.to_timestamp(), 0));
}

#[test]
fn the_draft_names_alignment_octets_are_answered_as_zeros() {
    // "draft-ietf-ntp-ntpv5-09" is 23 octets: one alignment octet follows,
    // here 0xff in the request. Answers and refusals both send 0.
    let name = Draft::D09.name().len();
    assert_eq!(name % 4, 3);
    let at = v5::HEADER_LEN + 4 + name;
    let mut req = request(&[draft_field(Draft::D09)]);
    req[at] = 0xff;
    let now = t("2025-06-01T12:01:00Z");
    let (_, out) = exchange(&mut server(open()), &req, now, now, &synced());
    assert_eq!(out[at], 0, "a time answer");
    let mut access = AccessList::default();
    access.push_cidr("192.0.2.0/24", AccessAction::Restrict).unwrap();
    let (a, out) = exchange(&mut server(ServerConfig { access, ..open() }), &req, now, now, &synced());
    assert_eq!(reason_of(a), ResponseReason::KodSent(KodKind::Rstr));
    assert_eq!(out[at], 0, "a refusal");
}

#[test]
fn a_refusal_echoes_padding_in_place_and_pads_for_what_it_leaves_out() {
    // Padding first, then the draft, then a Reference Timestamp the refusal
    // leaves out (it would carry time): the Padding answered where it was,
    // the draft, and a new Padding for the 12 octets left out.
    let mut access = AccessList::default();
    access.push_cidr("192.0.2.0/24", AccessAction::KodDeny).unwrap();
    let mut s = server(ServerConfig { access, ..open() });
    let fields = [
        FieldBody::Padding { body: vec![0; 8] }.to_field(),
        draft_field(Draft::D09),
        FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::ZERO }.to_field(),
    ];
    let now = t("2025-06-01T12:01:00Z");
    let (_, out) = exchange(&mut s, &request(&fields), now, now, &synced());
    let (_, area) = parse(&out);
    assert_eq!(
        bodies(&area),
        vec![
            FieldBody::Padding { body: vec![0; 8] },
            FieldBody::DraftIdentification { name: Draft::D09.name().as_bytes().to_vec() },
            FieldBody::Padding { body: vec![0; 8] },
        ]
    );
}

#[test]
fn a_reference_ids_request_gets_the_whole_filter_but_never_more() {
    let mut s = server(open());
    let mut filter = BloomFilter::EMPTY;
    filter.0[0] = 0x11;
    filter.0[BLOOM_FILTER_LEN - 1] = 0x22;
    s.set_reference_ids(filter);
    let now = t("2025-06-01T12:01:00Z");
    let chunks = |s: &mut Server, asked: usize| {
        let req = request(&[draft_field(Draft::D09), FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; asked - 2] }.to_field()]);
        let (_, out) = exchange(s, &req, now, now, &synced());
        let (_, area) = parse(&out);
        bodies(&area).into_iter().filter(|b| matches!(b, FieldBody::ReferenceIdsResponse { .. })).collect::<Vec<_>>()
    };
    assert_eq!(chunks(&mut s, BLOOM_FILTER_LEN), vec![FieldBody::ReferenceIdsResponse { chunk: filter.0.to_vec() }]);
    assert_eq!(chunks(&mut s, BLOOM_FILTER_LEN + 4), vec![], "more than the filter: left out");
}

#[test]
fn the_upgrade_is_offered_to_v4_clients_that_ask() {
    use crate::wire::v4;
    let now = t("2025-06-01T12:01:00Z");
    let mut req = v4::Repr::parse(&v4::Packet::new_checked(&[0x23u8; 48][..]).unwrap()).unwrap();
    req.leap = LeapIndicator::NoWarning;
    req.stratum = 0;
    req.transmit_timestamp = NtpTimestamp::from_bits(0x1234);
    req.reference_timestamp = UPGRADE_MARKER;
    let bytes = req.to_bytes();
    assert_eq!(&bytes[16..24], b"NTP5DRFT");
    for (ntpv5, offered) in [(true, true), (false, false)] {
        let mut s = server(ServerConfig { ntpv5, ..open() });
        let mut out = [0u8; 48];
        let ServerAction::Respond(r) = s.handle(0, SocketAddr::new(ip("192.0.2.9"), 5), &bytes, now, &synced(), &mut out) else {
            panic!("a v4 request is answered")
        };
        let _ = s.finish_response(&r, &mut out, now, &synced());
        let resp = v4::Repr::parse(&v4::Packet::new_checked(&out[..]).unwrap()).unwrap();
        assert_eq!(resp.reference_timestamp == UPGRADE_MARKER, offered);
    }
    // Without the marker nothing changes.
    req.reference_timestamp = NtpTimestamp::from_bits(u64::from_be_bytes(*b"NTP5NTP5"));
    let mut s = server(open());
    let mut out = [0u8; 48];
    let ServerAction::Respond(_) = s.handle(0, SocketAddr::new(ip("192.0.2.9"), 5), &req.to_bytes(), now, &synced(), &mut out) else {
        panic!()
    };
    assert_eq!(&out[16..24], &synced().reference_time.unwrap().to_timestamp().to_bits().to_be_bytes());
}

fn arb_field() -> impl Strategy<Value = FieldRepr> {
    prop_oneof![
        (0xf501u16..0xf50a, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(t, v)| FieldRepr::new(FieldType::from_u16(t), v)),
        (0u16..600, 0usize..80).prop_map(|(offset, n)| FieldBody::ReferenceIdsRequest { offset, padding: vec![0; n] }.to_field()),
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(|v| FieldRepr::new(FieldType::from_u16(0x0104), v)),
        Just(draft_field(Draft::D07)),
    ]
}

proptest! {
    #[test]
    fn answers_are_never_longer_than_requests_and_parse_in_the_clients_draft(
        draft in 0usize..3,
        before in proptest::collection::vec(arb_field(), 0..4),
        after in proptest::collection::vec(arb_field(), 0..6),
        flags: u16,
        cookie: u64,
        scale in 0u8..5,
        rx_secs in 1i64..(1i64 << 34),
        filter: [u8; 32],
    ) {
        let d = Draft::ALL[draft];
        let mut fields = before;
        fields.push(draft_field(d));
        fields.extend(after);
        let req = request_with(Timescale::from_u8(scale), flags, cookie, &fields);
        let mut s = server(ServerConfig { tai_utc_offset: Some(37), ..open() });
        let mut bloom = BloomFilter::EMPTY;
        for (i, b) in filter.iter().enumerate() {
            bloom.0[i * 16] = *b;
        }
        s.set_reference_ids(bloom);
        let rx = NtpTime::new(rx_secs, 0);
        let mut out = vec![0u8; 4096];
        let a = s.handle(1, SocketAddr::new(ip("192.0.2.70"), 9), &req, rx, &synced(), &mut out);
        if let ServerAction::Respond(r) = a {
            prop_assert_eq!(r.len, req.len());
            let _ = s.finish_response(&r, &mut out, rx + NtpDuration::from_seconds(1), &synced());
            let (h, area) = parse(&out[..r.len]);
            prop_assert!(area.error.is_none());
            prop_assert_eq!(h.client_cookie, 0x1122_3344_5566_7788);
            prop_assert_eq!(draft_of(&area.fields).draft(), draft_of(&fields).draft());
            let answered = draft_of(&fields).draft().unwrap();
            prop_assert!(h.problems_for(answered).is_empty(), "{:?}", h.problems_for(answered));
            let p = v5::field_problems_for(Mode::Server, &area.fields, answered);
            prop_assert!(p.iter().all(|p| p.detail.contains("Draft Identification")), "{:?}", p);
        }
    }
}

#[test]
fn the_poll_is_the_floor_the_rate_limit_enforces() {
    // A limit of one request per 100 s on average: the Poll of every reply
    // says 2^7 s, so a client keeping to it is never refused; without a
    // limit (or a looser one) it is the configured minimum, 2^4 s.
    let now = t("2025-06-01T12:01:00Z");
    let req = request(&[draft_field(Draft::D08)]);
    for (limit, poll) in [(None, 4), (Some(8_000_000_000), 4), (Some(100_000_000_000), 7)] {
        let rate_limit = match limit {
            None => RateLimitConfig { enabled: false, ..Default::default() },
            Some(ns) => RateLimitConfig { interval_ns_min: ns, kod_interval_ns_min: ns, ..Default::default() },
        };
        let mut s = server(ServerConfig { rate_limit, ..open() });
        let (_, out) = exchange(&mut s, &req, now, now, &synced());
        let (h, _) = parse(&out);
        assert_eq!((h.stratum, h.poll), (2, poll), "limit {limit:?}");
    }
}

#[test]
fn refusals_answer_server_information_and_reference_ids_but_no_time() {
    // -07 §7: "If a request contains an extension field, the server MUST
    // include this extension field in the response" unless it does not
    // support it. A refusal is a response too; the fields that would carry
    // time (here a Reference Timestamp) stay out, made up for by Padding.
    let now = t("2025-06-01T12:01:00Z");
    let mut access = AccessList::default();
    access.push_cidr("192.0.2.0/24", AccessAction::KodDeny).unwrap();
    let mut s = server(ServerConfig { access, ..open() });
    let req = request(&[
        draft_field(Draft::D08),
        FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field(),
        FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; 14] }.to_field(),
        FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::ZERO }.to_field(),
    ]);
    let (a, out) = exchange(&mut s, &req, now, now, &synced());
    assert_eq!(reason_of(a), ResponseReason::KodSent(KodKind::Deny));
    let (h, area) = parse(&out);
    assert_eq!((h.poll, h.stratum, h.receive_timestamp, h.transmit_timestamp), (POLL_NEVER, 0, NtpTimestamp::ZERO, NtpTimestamp::ZERO));
    let b = bodies(&area);
    assert!(matches!(b[0], FieldBody::DraftIdentification { .. }), "{b:?}");
    assert!(matches!(b[1], FieldBody::ServerInformation { supported_versions, .. } if supported_versions & 0x10 != 0), "{b:?}");
    assert!(matches!(&b[2], FieldBody::ReferenceIdsResponse { chunk } if chunk.len() == 16), "{b:?}");
    assert!(matches!(b[3], FieldBody::Padding { .. }), "no Reference Timestamp in a refusal: {b:?}");
    assert_eq!(b.len(), 4);
}
