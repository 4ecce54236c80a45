//! The NTPv5 client reply path: `source::Source::handle_response` of a
//! source speaking NTPv5 (`version = 5`) and of one upgrading from NTPv4
//! (`v5_auto`).
//!
//! Two inputs: the raw octets as a reply (first octet forced to VN 5), and
//! the real responder's reply to the source's request with input-chosen
//! bytes XORed in. Nothing panics; a reply becomes a sample only if it
//! carries the request's client cookie and the source's draft, is
//! synchronized, of stratum 1–15 and in UTC; the Reference IDs filter only
//! ever holds what the server sent.
//!
//! NTS for NTPv5 (`nts::ClientSession::verify_response` on NTPv5 replies):
//! the raw octets as a reply (VN 5, mode 4) and the real responder's
//! authenticated reply to a protected NTPv5 request with input-chosen bytes
//! XORed in. Nothing panics; only the unchanged reply is authentic time.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::mono::Instant;
use ntplab_proto::server::{RateLimitConfig, Server, ServerAction, ServerClockState, ServerConfig};
use ntplab_proto::source::{Source, SourceConfig, SourceEvent};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::LeapIndicator;
use ntplab_proto::wire::v5::{self, draft_of, BloomFilter, Draft, Timescale, V5ReferenceId};
use ntplab_proto::nts::{Aead, ClientSession, PendingRequest, ResponseKind};
use ntplab_proto::server::NtsServerAction;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// A protected -08 request's session and pending state, and the server's authentic reply.
fn nts_fixture() -> &'static (ClientSession, PendingRequest, Vec<u8>) {
    static F: OnceLock<(ClientSession, PendingRequest, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let mut header = v5::Repr::request(Timescale::Utc, 0x5151_5151_5151_5151).to_bytes().to_vec();
        header.extend(v5::FieldBody::DraftIdentification { name: Draft::D08.name().as_bytes().to_vec() }.to_field().to_bytes());
        header.extend(v5::FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; 14] }.to_field().to_bytes());
        let (master, session, request, pending, mut rng) = common::protected_request(Aead::AesSivCmac256, &header);
        let cfg = ServerConfig { rate_limit: RateLimitConfig { enabled: false, slots: 16, ..Default::default() }, ..Default::default() };
        let mut srv = Server::new(cfg, [3; 16]);
        let t = NtpTime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
        let mut out = vec![0u8; 2048];
        let from = SocketAddr::from(([192, 0, 2, 5], 123));
        let NtsServerAction::Respond(r) = srv.handle_nts(0, from, &request, t, &clock(), &master, &mut out) else { panic!("the fixture is answered") };
        let n = srv.finish_nts_response(&r, &mut out, t, &clock(), &master, &mut rng).expect("the reply fits");
        out.truncate(n);
        let mut check = session.clone();
        assert!(matches!(check.verify_response(&pending, &out), Ok(ResponseKind::Time { .. })), "the fixture reply is authentic");
        (session, pending, out)
    })
}

fn clock() -> ServerClockState {
    ServerClockState {
        leap: LeapIndicator::NoWarning,
        stratum: 1,
        precision_log2: -20,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::from_seconds_f64(0.0001),
        reference_id: ReferenceId(*b"GPS\0"),
        reference_time: Some(NtpTime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()),
        inserted_second_in_progress: false,
    }
}

/// Asserts the sample rules for `reply` answering `request`; whether it was a sample.
fn judge(s: &mut Source, request: &[u8], reply: &[u8], draft: Draft, round: u64) -> bool {
    let t = NtpTime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap() + NtpDuration::from_seconds(16 * round as i64);
    match s.handle_response(Instant::from_secs(16 * round + 1), reply, t, None) {
        SourceEvent::Sample(m) => {
            assert_eq!(m.version, 5);
            assert!((1..16).contains(&m.stratum));
            let p = v5::Packet::new_checked(reply).unwrap();
            let h = v5::Repr::parse(&p).unwrap();
            assert_eq!(h.client_cookie.to_be_bytes(), request[24..32]);
            assert!(h.flags.synchronized() && h.timescale == Timescale::Utc);
            assert_eq!(draft_of(&v5::parse_extensions(p.payload()).fields).draft(), Some(draft));
            true
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let draft = Draft::ALL[usize::from(sel) % 3];
    let config = SourceConfig { version: 5, draft, poll_jitter: false, poll_min_log2: 4, poll_max_log2: 4, ..SourceConfig::default() };
    let mut s = Source::new(config, Instant::ZERO).unwrap();
    let cfg = ServerConfig { interleaved_slots: 16, rate_limit: RateLimitConfig { enabled: false, slots: 16, ..Default::default() }, ..Default::default() };
    let mut srv = Server::new(cfg, [2; 16]);
    let mut filter = BloomFilter::EMPTY;
    filter.add(&V5ReferenceId::from_random([sel; 15]));
    srv.set_reference_ids(filter);
    let mut raw_sampled = false;
    for round in 0..4u64 {
        let now = Instant::from_secs(16 * round);
        let local = NtpTime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap() + NtpDuration::from_seconds(16 * round as i64);
        let mut req = vec![0u8; 512];
        let Some(tx) = s.handle_timeout(now, local, 0x1000 + round, &mut req) else { return };
        req.truncate(tx.len);
        // The raw input as a reply (only in the first round, then the real one).
        if round == 0 {
            let mut raw = rest.to_vec();
            if let Some(b) = raw.first_mut() {
                *b = (*b & 0xc7) | 0x28;
            }
            raw_sampled = judge(&mut s, &req, &raw, draft, round);
        }
        let mut out = vec![0u8; 512];
        let from = SocketAddr::from(([192, 0, 2, 3], 123));
        let ServerAction::Respond(r) = srv.handle(round, from, &req, local, &clock(), &mut out) else { return };
        srv.finish_response(&r, &mut out, local + NtpDuration::from_seconds_f64(1e-5), &clock());
        let mut reply = out[..r.len].to_vec();
        if usize::from(sel) & 4 != 0 {
            common::mutate(&mut reply, rest);
        }
        let _ = judge(&mut s, &req, &reply, draft, round);
    }
    if let Some(f) = s.reference_ids() {
        // Assembled from chunks: equal to the server's unless an edit changed one.
        if usize::from(sel) & 4 == 0 && !raw_sampled {
            assert_eq!(f, &filter);
        }
    }

    let (session, pending, reply) = nts_fixture();
    let mut raw = rest.to_vec();
    if let Some(b) = raw.first_mut() {
        *b = 0x2c;
    }
    let _ = session.clone().verify_response(pending, &raw);
    let mut r = reply.clone();
    common::mutate(&mut r, rest);
    if let Ok(ResponseKind::Time { .. }) = session.clone().verify_response(pending, &r) {
        assert_eq!(&r, reply, "a changed NTPv5 reply authenticated");
    }
});
