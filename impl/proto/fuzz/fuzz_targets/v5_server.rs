//! The NTPv5 server path: `server::Server::handle` (and `finish_response`,
//! `transmitted`) on version-5 datagrams, through the same entry point the
//! daemon uses.
//!
//! Two inputs: the raw octets as a request (the first octet forced to LI 0,
//! VN 5, mode 3), and a well-formed request of every draft field with
//! input-chosen bytes XORed in. The first input octet picks the
//! configuration (interleaved, rate limit, TAI offset, smear, deny rule).
//! Nothing panics; every answer is exactly as long as its request, parses as
//! an NTPv5 response carrying the request's client cookie and the draft the
//! request named.
//!
//! A third input, NTS for NTPv5 (`Server::handle_nts`): an NTS-protected
//! NTPv5 request (an ntpd-rs-like -08 request with placeholders) with
//! input-chosen bytes XORed in. Every NTPv5 answer is exactly as long as
//! its request; an answer authenticates at the client only if the request
//! was the real one unchanged, and then brings three cookies.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::server::{AccessAction, LeapKind, RateLimitConfig, Server, ServerAction, ServerClockState, ServerConfig, SmearConfig, SmearStyle};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::LeapIndicator;
use ntplab_proto::wire::v5::{self, draft_of, BloomFilter, Draft, FieldBody, Timescale, V5ReferenceId};
use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::nts::{MasterKeys, PendingRequest, ResponseKind};
use ntplab_proto::server::NtsServerAction;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// An NTS-protected -08 request per AEAD, with what verifies its answers.
struct NtsFixture {
    master: MasterKeys,
    session: ntplab_proto::nts::ClientSession,
    request: Vec<u8>,
    pending: PendingRequest,
}

fn nts_fixtures() -> &'static Vec<NtsFixture> {
    static F: OnceLock<Vec<NtsFixture>> = OnceLock::new();
    F.get_or_init(|| {
        let mut header = v5::Repr::request(Timescale::Utc, 0x0a0b_0c0d_0e0f_1011).to_bytes().to_vec();
        header.extend(FieldBody::DraftIdentification { name: Draft::D08.name().as_bytes().to_vec() }.to_field().to_bytes());
        header.extend(FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; 14] }.to_field().to_bytes());
        common::AEADS
            .iter()
            .map(|&a| {
                let (master, session, request, pending, _) = common::protected_request(a, &header);
                NtsFixture { master, session, request, pending }
            })
            .collect()
    })
}

/// `request` through `handle_nts` and `finish_nts_response`: the answer, if any.
fn nts_answer(s: &mut Server, sel: u8, f: &NtsFixture, request: &[u8]) -> Option<Vec<u8>> {
    let clock = clock(sel);
    let rx = NtpTime::parse_rfc3339("2025-06-30T23:59:00Z").unwrap();
    let mut out = vec![0u8; 4096];
    let from = SocketAddr::from(([198, 51, 100, 9], 40000));
    let NtsServerAction::Respond(r) = s.handle_nts(0, from, request, rx, &clock, &f.master, &mut out) else { return None };
    let mut rng = common::rng(request.len() as u64);
    let n = s.finish_nts_response(&r, &mut out, rx + NtpDuration::from_seconds_f64(1e-5), &clock, &f.master, &mut rng).ok()?;
    if request[0] >> 3 & 7 == 5 {
        assert_eq!(n, request.len(), "NTPv5 answer {n} for a request of {}", request.len());
    } else {
        assert!(n <= request.len());
    }
    out.truncate(n);
    Some(out)
}

fn template(draft: Draft) -> Vec<u8> {
    let mut r = v5::Repr::request(Timescale::Utc, 0x0102_0304_0506_0708);
    r.flags = v5::Flags(v5::Flags::INTERLEAVED);
    let mut b = r.to_bytes().to_vec();
    let fields = [
        FieldBody::DraftIdentification { name: draft.name().as_bytes().to_vec() },
        FieldBody::Padding { body: vec![0; 6] },
        FieldBody::ServerInformation { supported_versions: 0, reserved: 0 },
        FieldBody::ReferenceIdsRequest { offset: 496, padding: vec![0; 14] },
        FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::ZERO },
        FieldBody::MonotonicReceiveTimestamp { epoch_id: 0, timestamp: NtpTimestamp::ZERO },
        FieldBody::SecondaryReceiveTimestamp { timescale: Timescale::Tai, era: 0, reserved: 0, timestamp: NtpTimestamp::ZERO },
        FieldBody::Correction { origin_correction: 0, origin_path_id: 0, reserved: 0, delay_correction: 0, delay_path_id: 0, checksum_complement: 0 },
    ];
    for f in fields {
        b.extend(f.to_field().to_bytes());
    }
    b
}

fn server(sel: u8) -> Server {
    let mut config = ServerConfig {
        interleaved: sel & 1 != 0,
        // Small tables: a fresh server per input must be cheap.
        interleaved_slots: 16,
        rate_limit: RateLimitConfig { enabled: sel & 2 != 0, slots: 16, ..Default::default() },
        tai_utc_offset: (sel & 4 != 0).then_some(37),
        smear: (sel & 8 != 0).then(|| SmearConfig {
            style: SmearStyle::Centered,
            leap_time: NtpTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap(),
            kind: LeapKind::Insert,
        }),
        ..Default::default()
    };
    if sel & 16 != 0 {
        config.access.push_cidr("192.0.2.0/24", AccessAction::KodDeny).unwrap();
    }
    let mut s = Server::new(config, [sel; 16]);
    let mut f = BloomFilter::EMPTY;
    f.add(&V5ReferenceId::from_random([sel; 15]));
    s.set_reference_ids(f);
    s
}

fn clock(sel: u8) -> ServerClockState {
    if sel & 32 != 0 {
        return ServerClockState::unsynchronized(-20);
    }
    ServerClockState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision_log2: -20,
        root_delay: NtpDuration::from_seconds_f64(0.01),
        root_dispersion: NtpDuration::from_seconds_f64(0.001),
        reference_id: ReferenceId::from_ipv4("192.0.2.1".parse().unwrap()),
        reference_time: Some(NtpTime::parse_rfc3339("2025-06-30T23:00:00Z").unwrap()),
        inserted_second_in_progress: false,
    }
}

/// Handles `request`; returns the answer's server cookie, if answered.
fn check(s: &mut Server, sel: u8, request: &[u8], round: u64) -> Option<u64> {
    let clock = clock(sel);
    let rx = NtpTime::parse_rfc3339("2025-06-30T23:59:00Z").unwrap() + NtpDuration::from_seconds(round as i64);
    let mut out = vec![0u8; 4096];
    let from = SocketAddr::from(([192, 0, 2, 9], 40000));
    match s.handle(round, from, request, rx, &clock, &mut out) {
        ServerAction::Respond(r) => {
            if request[0] >> 3 & 7 != 5 {
                // An edit turned it into an NTPv4 request: never a longer answer.
                assert!(r.len <= request.len());
                return None;
            }
            assert_eq!(r.len, request.len(), "answer {} for a request of {}", r.len, request.len());
            let tx = rx + NtpDuration::from_seconds_f64(1e-5);
            let _ = s.finish_response(&r, &mut out, tx, &clock);
            s.transmitted(&r, tx, &clock);
            let p = v5::Packet::new_checked(&out[..r.len]).expect("a whole header");
            let h = v5::Repr::parse(&p).unwrap();
            assert_eq!((h.version, h.mode.to_bits()), (5, 4));
            assert_eq!(h.client_cookie, v5::Repr::parse(&v5::Packet::new_checked(request).unwrap()).unwrap().client_cookie);
            let area = v5::parse_extensions(p.payload());
            assert!(area.error.is_none(), "{:?}", area.error);
            let asked = v5::parse_extensions(&request[v5::HEADER_LEN..]);
            assert_eq!(draft_of(&area.fields).draft(), draft_of(&asked.fields).draft());
            assert!(draft_of(&asked.fields).draft().is_some());
            Some(h.server_cookie)
        }
        ServerAction::Ignore(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mut s = server(sel);
    let mut raw = rest.to_vec();
    if let Some(b) = raw.first_mut() {
        *b = 0x2b;
    }
    let _ = check(&mut s, sel, &raw, 0);
    let mut t = template(Draft::ALL[usize::from(sel >> 6) % 3]);
    common::mutate(&mut t, rest);
    // Twice: the second asks to be interleaved on the first's cookie.
    if let Some(cookie) = check(&mut s, sel, &t, 1) {
        t[16..24].copy_from_slice(&cookie.to_be_bytes());
    }
    let _ = check(&mut s, sel, &t, 2);

    let fx = nts_fixtures();
    let f = &fx[usize::from(sel) % fx.len()];
    let mut q = f.request.clone();
    common::mutate(&mut q, rest);
    // Rate limiting and access rules (sel) hold for NTS as for the rest; a fresh server.
    if let Some(reply) = nts_answer(&mut server(sel), sel, f, &q) {
        let mut session = f.session.clone();
        if let Ok(ResponseKind::Time { new_cookies }) = session.verify_response(&f.pending, &reply) {
            assert_eq!(q, f.request, "a changed request was answered with authentic time");
            assert_eq!(new_cookies, 3);
        }
    }
});
