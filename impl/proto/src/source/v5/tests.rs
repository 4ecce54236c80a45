//! NTPv5 client tests, most against the real responder ([`crate::server`]):
//! requests, samples, the upgrade and its fall-back, a stripped offer, the
//! server's Reference IDs filter, refusals and draft mismatches.

use super::*;
use crate::server::{Server, ServerAction, ServerClockState, ServerConfig};
use crate::source::Measurement;
use crate::time::NtpDuration;
use crate::wire::v5::{Draft, Time32, V5ReferenceId};
use core::net::SocketAddr;
use proptest::prelude::*;

fn t0() -> NtpTime {
    NtpTime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
}

fn config(version: u8, v5_auto: bool) -> SourceConfig {
    SourceConfig { version, v5_auto, poll_jitter: false, poll_min_log2: 4, poll_max_log2: 4, ..SourceConfig::default() }
}

fn server(ntpv5: bool) -> Server {
    let cfg = ServerConfig {
        ntpv5,
        rate_limit: crate::server::RateLimitConfig { enabled: false, ..Default::default() },
        ..Default::default()
    };
    Server::new(cfg, [1; 16])
}

fn clock() -> ServerClockState {
    ServerClockState {
        leap: LeapIndicator::NoWarning,
        stratum: 1,
        precision_log2: -20,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::from_seconds_f64(0.0001),
        reference_id: ReferenceId(*b"GPS\0"),
        reference_time: Some(t0()),
        inserted_second_in_progress: false,
    }
}

/// One poll at `at` seconds: the request goes to `srv` (whose clock is 0.25 s
/// ahead), 10 ms each way; `tamper` may change the reply. Returns the request
/// and the event; `None` when the server did not answer.
fn exchange(
    s: &mut Source,
    srv: &mut Server,
    at: u64,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> (Vec<u8>, Option<SourceEvent>) {
    let now = Instant::from_secs(at);
    let local = t0() + NtpDuration::from_seconds(at as i64);
    let mut buf = vec![0u8; 512];
    let req = s.handle_timeout(now, local, 0x5eed_0000 + at, &mut buf).expect("a request is due");
    let request = buf[..req.len].to_vec();
    let ahead = NtpDuration::from_seconds_f64(0.25);
    let rx = local + NtpDuration::from_seconds_f64(0.010) + ahead;
    let mut out = vec![0u8; 512];
    let ServerAction::Respond(r) = srv.handle(0, SocketAddr::from(([192, 0, 2, 1], 123)), &request, rx, &clock(), &mut out) else {
        return (request, None);
    };
    srv.finish_response(&r, &mut out, rx + NtpDuration::from_seconds_f64(0.0001), &clock());
    let mut reply = out[..r.len].to_vec();
    tamper(&mut reply);
    let back = local + NtpDuration::from_seconds_f64(0.0201);
    (request, Some(s.handle_response(now, &reply, back, None)))
}

fn sample(e: Option<SourceEvent>) -> Measurement {
    match e {
        Some(SourceEvent::Sample(m)) => m,
        other => panic!("no sample: {other:?}"),
    }
}

#[test]
fn version_5_requests_and_samples() {
    for (draft, poll) in [(Draft::D07, 0), (Draft::D08, 4), (Draft::D09, 4)] {
        let mut s = Source::new(SourceConfig { draft, ..config(5, false) }, Instant::ZERO).unwrap();
        let mut srv = server(true);
        let (req, e) = exchange(&mut s, &mut srv, 0, |_| {});
        assert_eq!(req.len(), V5_REQUEST_LEN);
        let d = crate::wire::parse_packet(&req).unwrap();
        assert_eq!(d.version(), 5);
        assert_eq!(d.v5_draft(), Some(draft));
        assert!(d.problems().is_empty(), "{draft}: {:?}", d.problems());
        let crate::wire::Header::V5(h) = d.header else { unreachable!() };
        assert_eq!(h.poll, poll, "-07 requests carry poll 0, later drafts the host poll");
        let m = sample(e);
        assert!((m.offset.to_seconds_f64() - 0.25).abs() < 1e-3, "{:?}", m.offset);
        assert!((m.delay.to_seconds_f64() - 0.020).abs() < 1e-3);
        assert_eq!((m.version, m.stratum), (5, 1));
        assert_eq!(s.speaking(), Speaking::V5 { unanswered: 0, upgraded: false });
    }
}

#[test]
fn the_servers_reference_ids_arrive_in_four_polls() {
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    let mut srv = server(true);
    let me = V5ReferenceId::from_random([0x42; 15]);
    let mut filter = BloomFilter::EMPTY;
    filter.add(&me);
    srv.set_reference_ids(filter);
    for k in 0..4u64 {
        assert!(s.reference_ids().is_none(), "poll {k}");
        let (req, e) = exchange(&mut s, &mut srv, 16 * k, |_| {});
        assert_eq!(u16::from_be_bytes([req[88], req[89]]) as u64, 128 * k, "chunk offsets 0, 128, 256, 384 (after the header, Draft Identification and Server Information)");
        sample(e);
    }
    assert_eq!(s.reference_ids(), Some(&filter));
    assert!(s.reference_ids().unwrap().contains(&me));
}

#[test]
fn auto_upgrades_when_the_server_offers_ntpv5() {
    let mut s = Source::new(config(4, true), Instant::ZERO).unwrap();
    let mut srv = server(true);
    let (req, e) = exchange(&mut s, &mut srv, 0, |_| {});
    assert_eq!((req.len(), req[0] >> 3 & 7), (48, 4));
    assert_eq!(&req[16..24], b"NTP5DRFT", "asks in the v4 reference timestamp");
    let m = sample(e);
    assert_eq!(m.reference_timestamp, NtpTimestamp::ZERO, "the echoed marker is no reference time");
    assert_eq!(s.speaking(), Speaking::V5 { unanswered: 0, upgraded: true });
    let (req, e) = exchange(&mut s, &mut srv, 16, |_| {});
    assert_eq!((req.len(), req[0] >> 3 & 7), (V5_REQUEST_LEN, 5));
    assert_eq!(sample(e).version, 5);
}

#[test]
fn auto_stays_on_ntpv4_when_not_offered_and_asks_again_later() {
    let mut s = Source::new(config(4, true), Instant::ZERO).unwrap();
    let mut srv = server(false);
    for k in 0..u64::from(UPGRADE_ASKS) {
        let (req, e) = exchange(&mut s, &mut srv, 16 * k, |_| {});
        assert_eq!(&req[16..24], b"NTP5DRFT");
        assert_eq!(sample(e).version, 4);
    }
    assert_eq!(s.speaking(), Speaking::V4Holdoff { requests_left: V5_FALLBACK_REQUESTS });
    let mut at = 16 * u64::from(UPGRADE_ASKS);
    for _ in 0..V5_FALLBACK_REQUESTS {
        let (req, e) = exchange(&mut s, &mut srv, at, |_| {});
        assert_eq!(&req[16..24], &[0; 8], "plain NTPv4 while holding off");
        sample(e);
        at += 16;
    }
    let (req, _) = exchange(&mut s, &mut srv, at, |_| {});
    assert_eq!(&req[16..24], b"NTP5DRFT", "asks again");
}

#[test]
fn an_on_path_attacker_stripping_the_offer_keeps_the_client_on_ntpv4() {
    let mut s = Source::new(config(4, true), Instant::ZERO).unwrap();
    let mut srv = server(true);
    for k in 0..u64::from(UPGRADE_ASKS) + 2 {
        let (_, e) = exchange(&mut s, &mut srv, 16 * k, |r| r[16..24].fill(0));
        assert_eq!(sample(e).version, 4, "time still flows over NTPv4");
    }
    assert!(!s.speaking().is_v5());
}

#[test]
fn an_upgraded_association_falls_back_when_ntpv5_goes_unanswered() {
    let mut s = Source::new(config(4, true), Instant::ZERO).unwrap();
    let mut srv = server(true);
    sample(exchange(&mut s, &mut srv, 0, |_| {}).1);
    assert!(s.speaking().is_v5());
    // The server stops answering NTPv5 (a middlebox drops it, say).
    let mut v4_only = server(false);
    let (req, e) = exchange(&mut s, &mut v4_only, 16, |_| {});
    assert_eq!((req.len(), e), (V5_REQUEST_LEN, None));
    let (req, e) = exchange(&mut s, &mut v4_only, 32, |_| {});
    assert_eq!((req.len(), e), (V5_REQUEST_LEN, None));
    let (req, e) = exchange(&mut s, &mut v4_only, 48, |_| {});
    assert_eq!(req.len(), 48, "after two unanswered NTPv5 requests: NTPv4");
    assert_eq!(sample(e).version, 4);
    assert!(matches!(s.speaking(), Speaking::V4Holdoff { .. }));
    // Configured for version 5: no fall-back.
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    for k in 0..4 {
        let (req, _) = exchange(&mut s, &mut v4_only, 16 * k, |_| {});
        assert_eq!(req.len(), V5_REQUEST_LEN);
    }
}

#[test]
fn reply_checks() {
    use RejectReason as R;
    let mut srv = server(true);
    let reject = |tamper: fn(&mut Vec<u8>)| {
        let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
        exchange(&mut s, &mut server(true), 0, tamper).1
    };
    assert_eq!(reject(|r| r[24] ^= 1), Some(SourceEvent::Rejected(R::Bogus)), "another client cookie");
    assert_eq!(reject(|r| r[24..32].fill(0)), Some(SourceEvent::Rejected(R::ZeroOrigin)));
    assert_eq!(reject(|r| r[0] = 0x2b), Some(SourceEvent::Rejected(R::BadMode)));
    assert_eq!(reject(|r| r[48 + 4 + 22] = b'9'), Some(SourceEvent::Rejected(R::WrongDraft)), "-08 asked, -09 answered");
    assert_eq!(reject(|r| r[15] &= !1), Some(SourceEvent::Rejected(R::Unsynchronized)));
    assert_eq!(reject(|r| r[12] = 1), Some(SourceEvent::Rejected(R::WrongTimescale)));
    assert_eq!(reject(|r| r[15] |= 4), Some(SourceEvent::Rejected(R::CryptoNak)));
    assert_eq!(reject(|r| r.truncate(40)), Some(SourceEvent::Rejected(R::TooShort)));
    // Root distance: half the root delay (15 s) plus the root dispersion
    // (10 s), 17.5 s, is at least MAXDISP (16 s).
    let far = |r: &mut Vec<u8>| {
        r[4..8].copy_from_slice(&Time32::from_seconds_f64(15.0).to_bits().to_be_bytes());
        r[8..12].copy_from_slice(&Time32::from_seconds_f64(10.0).to_bits().to_be_bytes());
    };
    assert_eq!(reject(far), Some(SourceEvent::Rejected(R::RootDistance)));
    // Found by the v5_client fuzz target: an NTPv4 header over the reply carries
    // the client cookie where NTPv4's origin timestamp is; it is no answer.
    assert_eq!(reject(|r| r[0] = 0x24), Some(SourceEvent::Rejected(R::BadVersion)));
    assert_eq!(reject(|r| r[51] = 0xff), Some(SourceEvent::Rejected(R::MalformedExtension)));
    // Stratum 0: poll 127 ends the association, a higher poll holds it off.
    let refuse = |poll: i8| {
        move |r: &mut Vec<u8>| {
            r[1] = 0;
            r[2] = poll as u8;
        }
    };
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    assert_eq!(exchange(&mut s, &mut srv, 0, refuse(127)).1, Some(SourceEvent::Demobilize(KissCode::Deny)));
    assert_eq!(s.poll_timeout(), None);
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    let held_off = SourceEvent::RateLimited { poll_log2: 9, next_poll_at: Instant::from_secs(512) };
    assert_eq!(exchange(&mut s, &mut srv, 0, refuse(9)).1, Some(held_off), "2^9 s from now, no jitter");
    // A poll below the source's own (4) is an unsynchronized server's: it
    // holds nothing off; one equal to it is a refusal and holds off one
    // interval, ending a burst.
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    assert_eq!(exchange(&mut s, &mut srv, 0, refuse(3)).1, Some(SourceEvent::Rejected(R::StratumUnsynchronized)));
    let mut s = Source::new(SourceConfig { iburst: true, ..config(5, false) }, Instant::ZERO).unwrap();
    let held_off = SourceEvent::RateLimited { poll_log2: 4, next_poll_at: Instant::from_secs(16) };
    assert_eq!(exchange(&mut s, &mut srv, 0, refuse(4)).1, Some(held_off));
    assert!(!s.in_burst());
    // The server's Poll is a floor: poll 6 from a server keeps the source at 64 s.
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    sample(exchange(&mut s, &mut srv, 0, |r| r[2] = 6).1);
    assert_eq!(s.poll_log2(), 6);
    // A v5 reply to a source that does not speak NTPv5.
    let mut s = Source::new(config(4, false), Instant::ZERO).unwrap();
    let mut buf = [0u8; 48];
    let _ = s.handle_timeout(Instant::ZERO, t0(), 1, &mut buf);
    let mut v5reply = buf;
    v5reply[0] = 0x2c;
    assert_eq!(s.handle_response(Instant::ZERO, &v5reply, t0(), None), SourceEvent::Rejected(R::BadVersion));
}

#[test]
fn a_sample_sets_the_reach_bit_and_schedules_the_next_poll_at_the_servers_floor() {
    // The server's Poll (6) is a floor: the next request goes 2^6 s after
    // this one (no jitter), not the 2^4 s planned when it was sent.
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    sample(exchange(&mut s, &mut server(true), 0, |r| r[2] = 6).1);
    assert_eq!(s.reach() & 1, 1);
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(64)));
}

#[test]
fn after_the_answer_a_replay_is_a_duplicate_a_second_answer_already_answered_and_another_cookie_unsolicited() {
    use RejectReason as R;
    let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
    let mut reply = Vec::new();
    sample(exchange(&mut s, &mut server(true), 0, |r| reply = r.clone()).1);
    let mut again = |bytes: &[u8]| s.handle_response(Instant::from_secs(1), bytes, t0() + NtpDuration::from_seconds(1), None);
    assert_eq!(again(&reply), SourceEvent::Rejected(R::Duplicate), "the same transmit timestamp");
    reply[47] ^= 1;
    assert_eq!(again(&reply), SourceEvent::Rejected(R::AlreadyAnswered), "another transmit timestamp, the same cookie");
    reply[31] ^= 1;
    assert_eq!(again(&reply), SourceEvent::Rejected(R::Unsolicited), "a cookie this source never sent");
}

proptest! {
    #[test]
    fn any_v5_reply_bytes_are_judged_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        keep_cookie: bool,
    ) {
        let mut s = Source::new(config(5, false), Instant::ZERO).unwrap();
        let mut buf = vec![0u8; V5_REQUEST_LEN];
        let _ = s.handle_timeout(Instant::ZERO, t0(), 77, &mut buf);
        let mut reply = bytes;
        if let Some(b) = reply.first_mut() {
            *b = (*b & 0xc7) | 0x28;
        }
        if keep_cookie && reply.len() >= 32 {
            reply[24..32].copy_from_slice(&buf[24..32]);
        }
        let e = s.handle_response(Instant::from_secs(1), &reply, t0(), None);
        if let SourceEvent::Sample(m) = e {
            prop_assert_eq!(m.version, 5);
            prop_assert!(m.stratum >= 1 && m.stratum < 16);
        }
    }
}

/// Polls `s` whenever due until `until` s, through `srv` while the time is
/// below `answer_until` s (no reply after: the server is gone); returns the
/// send times in whole seconds (no jitter: they are whole).
fn send_times(s: &mut Source, srv: &mut Server, answer_until: u64, until: u64) -> Vec<u64> {
    let mut times = Vec::new();
    while let Some(due) = s.poll_timeout() {
        let at = due.as_nanos() / 1_000_000_000;
        if at >= until {
            break;
        }
        assert_eq!(due.as_nanos() % 1_000_000_000, 0, "whole seconds without jitter");
        if at < answer_until {
            let _ = exchange(s, srv, at, |_| {});
        } else {
            let mut buf = vec![0u8; 512];
            let _sent = s.handle_timeout(due, t0() + NtpDuration::from_seconds(at as i64), 0x5eed_0000 + at, &mut buf).expect("a request is due");
        }
        times.push(at);
    }
    times
}

fn gaps(times: &[u64]) -> Vec<u64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn ntpv5_bursts_on_start_only_and_counts_the_next_interval_from_the_bursts_last_request() {
    // -07 §9: a burst of up to 8 requests 2 s apart "On start", and polls at
    // least 2^6 s apart otherwise. The server answers for 1000 s, then is
    // gone: NTPv4 bursts again (RFC 5905 A.5.7 iburst), NTPv5 does not.
    let cfg = |version| SourceConfig { iburst: true, poll_min_log2: 6, poll_max_log2: 6, ..config(version, false) };
    let mut v5 = Source::new(cfg(5), Instant::ZERO).unwrap();
    let times = send_times(&mut v5, &mut server(true), 1000, 3000);
    let g = gaps(&times);
    assert_eq!(&times[..8], &[0, 2, 4, 6, 8, 10, 12, 14], "the start's burst");
    assert_eq!(times[8], 14 + 64, "one interval after the burst's last request");
    assert!(g[7..].iter().all(|d| *d == 64), "no burst after the start, also when the server is gone: {g:?}");
    assert!(times.iter().any(|t| *t > 2000), "it goes on polling");

    let mut v4 = Source::new(cfg(4), Instant::ZERO).unwrap();
    let times = send_times(&mut v4, &mut server(true), 1000, 3000);
    let g = gaps(&times);
    assert_eq!(times[8], 64, "NTPv4 counts the interval from the burst's start (A.5.7)");
    assert_eq!(g.iter().filter(|d| **d == 2).count(), 14, "NTPv4 bursts at start and again once the server is lost: {g:?}");
}

#[test]
fn ntpv5_ignores_burst_at_every_poll() {
    let cfg = SourceConfig { burst: true, poll_min_log2: 6, poll_max_log2: 6, ..config(5, false) };
    let mut s = Source::new(cfg, Instant::ZERO).unwrap();
    let g = gaps(&send_times(&mut s, &mut server(true), 2000, 2000));
    assert!(g.len() > 20 && g.iter().all(|d| *d == 64), "{g:?}");
    // NTPv4 with the same setting bursts at each poll after the first.
    let mut s = Source::new(SourceConfig { version: 4, ..cfg }, Instant::ZERO).unwrap();
    let g = gaps(&send_times(&mut s, &mut server(true), 2000, 2000));
    assert!(g.iter().filter(|d| **d == 2).count() > 20, "{g:?}");
}

#[test]
fn after_a_clock_step_ntpv5_neither_bursts_nor_polls_below_the_servers_floor() {
    // The server asks for 2^7 s; a step 10 s after a poll restarts the
    // association (RFC 5905 §11.2.3), but its next request still waits for
    // the floor, and no burst follows.
    let cfg = SourceConfig { iburst: true, poll_min_log2: 6, poll_max_log2: 6, ..config(5, false) };
    let mut s = Source::new(cfg, Instant::ZERO).unwrap();
    let mut srv = server(true);
    let mut at = 0;
    for _ in 0..12 {
        let due = s.poll_timeout().unwrap();
        at = due.as_nanos() / 1_000_000_000;
        let _ = exchange(&mut s, &mut srv, at, |r| r[2] = 7);
    }
    assert_eq!(s.poll_log2(), 7);
    s.reset(Instant::from_secs(at + 10));
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(at + 128)));
    let g = gaps(&send_times(&mut s, &mut srv, 0, at + 2000));
    assert!(g.iter().all(|d| *d >= 128), "{g:?}");
}
