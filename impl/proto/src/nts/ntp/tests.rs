use super::*;
use crate::nts::cookie::{cookie_len, CookieError, MasterKeyConfig};
use crate::nts::tests::TestRng;
use proptest::prelude::*;

/// A client request header: LI 0, VN 4, mode 3, a transmit timestamp.
fn client_header() -> [u8; 48] {
    let mut h = [0u8; 48];
    h[0] = 0x23;
    h[2] = 6;
    h[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    h
}

/// A server reply header (mode 4, stratum 2, refid "GPS\0").
fn server_header() -> [u8; 48] {
    let mut h = [0x5au8; 48];
    h[0] = 0x24;
    h[1] = 2;
    h[12..16].copy_from_slice(b"GPS\0");
    h
}

struct Setup {
    rng: TestRng,
    master: MasterKeys,
    session: ClientSession,
}

fn setup(aead: Aead, seed: u64) -> Setup {
    let mut rng = TestRng::new(seed);
    let master = MasterKeys::new(MasterKeyConfig { rotation_period_s: 100, keep_previous: 1 }, 0, &mut rng);
    let keys = SessionKeys::random(aead, &mut rng);
    let cookies = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
    Setup { session: ClientSession::new(keys, cookies), master, rng }
}

impl Setup {
    fn request(&mut self) -> (Vec<u8>, PendingRequest) {
        self.session.build_request(&client_header(), &mut self.rng).unwrap()
    }

    fn reply_to(&mut self, request: &[u8]) -> Vec<u8> {
        let NtsRequest::Protected(p) = process_request(&self.master, request) else { panic!("not protected") };
        let mut out = vec![0u8; 2048];
        out[..48].copy_from_slice(&server_header());
        let n = p.seal_reply(&mut out, &self.master, &mut self.rng).unwrap();
        out.truncate(n);
        out
    }
}

#[test]
fn round_trip_each_aead() {
    for aead in Aead::ALL {
        let mut s = setup(aead, 1);
        assert_eq!(s.session.jar().len(), 8);
        let (req, pending) = s.request();
        assert_eq!(pending.placeholders(), 0, "7 cookies left: no placeholder needed");
        assert!(crate::wire::nts::packet_problems(
            crate::wire::v4::Mode::Client,
            false,
            &crate::wire::ext::ExtensionArea::parse(&req[48..]).fields
        )
        .is_empty());
        let reply = s.reply_to(&req);
        assert!(reply.len() <= req.len(), "{aead}: reply {} > request {}", reply.len(), req.len());
        assert_eq!(&reply[..48], &server_header(), "the header is untouched (interleaved mode keeps working)");
        assert_eq!(s.session.verify_response(&pending, &reply), Ok(ResponseKind::Time { new_cookies: 1 }));
        assert_eq!(s.session.jar().len(), 8);
        // The wire checks agree the reply is a good NTS response.
        let area = crate::wire::ext::ExtensionArea::parse(&reply[48..]);
        assert!(crate::wire::nts::packet_problems(crate::wire::v4::Mode::Server, false, &area.fields).is_empty());
    }
}

#[test]
fn lost_replies_are_refilled_through_placeholders() {
    for aead in Aead::ALL {
        let mut s = setup(aead, 2);
        // Three requests lost: the jar drops to 5.
        for _ in 0..3 {
            let _ = s.request();
        }
        assert_eq!(s.session.jar().len(), 5);
        let (req, pending) = s.request();
        assert_eq!(pending.placeholders(), 3);
        let reply = s.reply_to(&req);
        assert!(reply.len() <= req.len());
        assert_eq!(s.session.verify_response(&pending, &reply), Ok(ResponseKind::Time { new_cookies: 4 }));
        assert_eq!(s.session.jar().len(), 8);
    }
}

#[test]
fn requests_stay_below_1280_octets() {
    let mut s = setup(Aead::AesSivCmac512, 3);
    for _ in 0..7 {
        let _ = s.request();
    }
    let (req, pending) = s.request();
    assert!(req.len() <= MAX_CLIENT_REQUEST_LEN, "{}", req.len());
    assert_eq!(pending.placeholders(), (MAX_CLIENT_REQUEST_LEN - (48 + 36 + 172 + 40)) / 172);
    assert!(pending.placeholders() < 7);
    let reply = s.reply_to(&req);
    assert!(reply.len() <= req.len());
    assert_eq!(s.session.verify_response(&pending, &reply), Ok(ResponseKind::Time { new_cookies: 1 + pending.placeholders() }));
}

#[test]
fn cookies_are_used_once_and_run_out() {
    let mut s = setup(Aead::AesSivCmac256, 4);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let (req, _) = s.request();
        let NtsRequest::Protected(_) = process_request(&s.master, &req) else { panic!() };
        let fields = walk(&req, 48, false, 64, Framing::V4).unwrap();
        let cookie = fields.iter().find(|f| f.field_type == T_COOKIE).unwrap().value(&req).to_vec();
        assert_eq!(cookie.len(), cookie_len(Aead::AesSivCmac256));
        assert!(seen.insert(cookie), "cookie reused");
    }
    assert_eq!(s.session.build_request(&client_header(), &mut s.rng), Err(NoCookies));
    // Re-keying drops every old cookie.
    let keys = SessionKeys::random(Aead::Aes128GcmSiv, &mut s.rng);
    s.session.rekey(keys.clone(), vec![vec![1; 72]]);
    assert_eq!((s.session.aead(), s.session.jar().len()), (Aead::Aes128GcmSiv, 1));
}

#[test]
fn jar_rules() {
    let mut j = CookieJar::new();
    assert_eq!(j.placeholders_wanted(), 7);
    j.add(vec![]);
    assert!(j.is_empty());
    for i in 0..10u8 {
        j.add(vec![i]);
    }
    assert_eq!(j.len(), JAR_CAPACITY);
    assert_eq!(j.take(), Some(vec![2]), "oldest first; the two oldest fell out");
    assert_eq!(j.placeholders_wanted(), 0);
    j.clear();
    assert!(j.take().is_none());
}

#[test]
fn rotated_keys_previous_accepted_expired_naks() {
    let mut s = setup(Aead::AesSivCmac256, 5);
    let (req, pending) = s.request();
    s.master.rotate_if_due(100, &mut s.rng);
    // The previous key still opens the cookie.
    let reply = s.reply_to(&req);
    assert!(s.session.verify_response(&pending, &reply).is_ok());
    // Two rotations later (keep_previous = 1) it does not: NTSN.
    let (req, pending) = s.request();
    s.master.rotate_if_due(200, &mut s.rng);
    let NtsRequest::Nak(nak) = process_request(&s.master, &req) else { panic!() };
    assert!(matches!(nak.reason, NakReason::Cookie(CookieError::UnknownKey(_))));
    let mut out = [0u8; 200];
    let n = nak.write(-20, &mut out).unwrap();
    assert!(n <= req.len());
    let kod = &out[..n];
    assert_eq!(kod[0], 0xe4, "LI 3, VN 4, mode 4");
    assert_eq!((kod[1], &kod[12..16]), (0, &b"NTSN"[..]));
    assert_eq!(&kod[24..32], &client_header()[40..48], "origin = request transmit");
    let fields = walk(kod, 48, false, 8, Framing::V4).unwrap();
    assert_eq!(fields.len(), 1, "only the Unique Identifier: no cookie, no authenticator");
    assert_eq!(fields[0].value(kod), pending.unique_id());
    assert_eq!(s.session.verify_response(&pending, kod), Ok(ResponseKind::NtsNak));
    // An NTSN for another request is not ours.
    let (_, other) = s.request();
    assert_eq!(s.session.verify_response(&other, kod), Err(ResponseError::UniqueIdMismatch));
}

#[test]
fn forged_and_unauthenticated_replies_are_rejected() {
    let mut s = setup(Aead::Aes128GcmSiv, 6);
    let (req, pending) = s.request();
    // A plain reply.
    assert_eq!(s.session.verify_response(&pending, &server_header()), Err(ResponseError::MissingUniqueId));
    // The UID echoed, no authenticator (also a RATE kiss-o'-death).
    let mut plain = server_header().to_vec();
    push_field(&mut plain, T_UID, pending.unique_id());
    assert_eq!(s.session.verify_response(&pending, &plain), Err(ResponseError::Unauthenticated));
    // A RATE kiss-o'-death with our UID is obeyed (RFC 8915 §5.7), without it discarded.
    plain[1] = 0;
    plain[12..16].copy_from_slice(b"RATE");
    assert_eq!(s.session.verify_response(&pending, &plain), Ok(ResponseKind::Kiss(*b"RATE")));
    assert_eq!(s.session.verify_response(&pending, &plain[..48]), Err(ResponseError::MissingUniqueId));
    assert_eq!(s.session.jar().len(), 7);
    // An authenticated reply at stratum 0 (an unsynchronized server) is verified, not a kiss.
    let mut unsynced = server_header();
    unsynced[1] = 0;
    let (req2, pending2) = s.request();
    let NtsRequest::Protected(p) = process_request(&s.master, &req2) else { panic!() };
    let mut out = vec![0u8; 2048];
    out[..48].copy_from_slice(&unsynced);
    let n = p.seal_reply(&mut out, &s.master, &mut s.rng).unwrap();
    assert_eq!(s.session.verify_response(&pending2, &out[..n]), Ok(ResponseKind::Time { new_cookies: 1 + pending2.placeholders() }));
    out[20] ^= 1;
    assert_eq!(s.session.verify_response(&pending2, &out[..n]), Err(ResponseError::AuthenticationFailed));
    // Sealed with the wrong key.
    let wrong = SessionKeys::random(Aead::Aes128GcmSiv, &mut s.rng);
    let mut forged = server_header().to_vec();
    push_field(&mut forged, T_UID, pending.unique_id());
    seal_into(&mut forged, Aead::Aes128GcmSiv, wrong.s2c.as_bytes(), &[], 0, &mut s.rng);
    assert_eq!(s.session.verify_response(&pending, &forged), Err(ResponseError::AuthenticationFailed));
    // Sealed with the client's own C2S key (reflection) fails too.
    let mut reflected = server_header().to_vec();
    push_field(&mut reflected, T_UID, pending.unique_id());
    seal_into(&mut reflected, Aead::Aes128GcmSiv, s.session.keys.c2s.as_bytes(), &[], 0, &mut s.rng);
    assert_eq!(s.session.verify_response(&pending, &reflected), Err(ResponseError::AuthenticationFailed));
    // The request itself bounced back is not a server packet.
    assert_eq!(s.session.verify_response(&pending, &req), Err(ResponseError::NotServerMode));
    // Two authenticators.
    let good = s.reply_to(&req);
    let mut two = good.clone();
    two.extend_from_slice(&good[48 + 36..]);
    assert_eq!(s.session.verify_response(&pending, &two), Err(ResponseError::DuplicateAuthenticator));
    // A UID only after the authenticator is unauthenticated.
    let mut late = server_header().to_vec();
    seal_into(&mut late, Aead::Aes128GcmSiv, s.session.keys.s2c.as_bytes(), &[], 0, &mut s.rng);
    push_field(&mut late, T_UID, pending.unique_id());
    assert_eq!(s.session.verify_response(&pending, &late), Err(ResponseError::MissingUniqueId));
    assert_eq!(s.session.verify_response(&pending, &good[..40]), Err(ResponseError::TooShort));
    // Trailing unauthenticated fields are ignored; the good reply verifies.
    let mut trailing = good.clone();
    push_field(&mut trailing, T_COOKIE, &[9; 72]);
    assert_eq!(s.session.verify_response(&pending, &trailing), Ok(ResponseKind::Time { new_cookies: 1 }));
}

#[test]
fn server_sorts_requests() {
    let mut s = setup(Aead::AesSivCmac256, 7);
    assert_eq!(process_request(&s.master, &client_header()), NtsRequest::Plain);
    assert_eq!(process_request(&s.master, &client_header()[..47]), NtsRequest::Drop(NtsDropReason::Malformed));
    let mut mac = client_header().to_vec();
    mac.extend([0u8; 20]);
    assert_eq!(process_request(&s.master, &mac), NtsRequest::Plain, "legacy MAC");
    let mut uid_only = client_header().to_vec();
    push_field(&mut uid_only, T_UID, &[1; 32]);
    assert_eq!(process_request(&s.master, &uid_only), NtsRequest::Plain, "a standalone Unique Identifier is not NTS");

    let (req, _) = s.request();
    let fields = walk(&req, 48, false, 64, Framing::V4).unwrap();
    let [uid, cookie, auth] = [0, 1, 2].map(|i| fields[i]);
    let part = |f: RawField| req[f.start..f.end].to_vec();
    let build = |parts: &[Vec<u8>]| [client_header().to_vec(), parts.concat()].concat();
    // No UID: nothing to echo.
    let r = build(&[part(cookie), part(auth)]);
    assert_eq!(process_request(&s.master, &r), NtsRequest::Drop(NtsDropReason::MissingUniqueId));
    // No cookie, two cookies, cookie after the authenticator, no authenticator.
    assert_eq!(process_request(&s.master, &build(&[part(uid), part(auth)])), NtsRequest::Drop(NtsDropReason::BadFieldLayout));
    let r = build(&[part(uid), part(cookie), part(cookie), part(auth)]);
    assert_eq!(process_request(&s.master, &r), NtsRequest::Drop(NtsDropReason::BadFieldLayout));
    let r = build(&[part(uid), part(auth), part(cookie)]);
    assert_eq!(process_request(&s.master, &r), NtsRequest::Drop(NtsDropReason::BadFieldLayout));
    assert_eq!(process_request(&s.master, &build(&[part(uid), part(cookie)])), NtsRequest::Drop(NtsDropReason::BadFieldLayout));
    // A garbage cookie: NTSN.
    let mut bad_cookie = part(cookie);
    bad_cookie[10] ^= 1;
    let r = build(&[part(uid), bad_cookie, part(auth)]);
    assert!(matches!(process_request(&s.master, &r), NtsRequest::Nak(NakReply { reason: NakReason::Cookie(CookieError::Authentication), .. })));
}

/// A SIV request with a 4-octet nonce and `extra` octets of additional padding.
fn short_nonce_request(s: &mut Setup, extra: usize) -> Vec<u8> {
    let keys = s.session.keys.clone();
    let cookie = s.master.seal(&keys, &mut s.rng);
    let mut r = client_header().to_vec();
    push_field(&mut r, T_UID, &[3; 32]);
    push_field(&mut r, T_COOKIE, &cookie);
    let nonce = [1u8, 2, 3, 4];
    let ct = keys.aead.seal(keys.c2s.as_bytes(), &nonce, &r, &[]).unwrap();
    let mut v = vec![0, 4, 0, ct.len() as u8];
    v.extend(nonce);
    v.extend(ct);
    v.extend(vec![0; extra]);
    push_field(&mut r, T_AUTH, &v);
    r
}

#[test]
fn short_nonces_need_additional_padding() {
    let mut s = setup(Aead::AesSivCmac256, 8);
    let r = short_nonce_request(&mut s, 0);
    assert_eq!(process_request(&s.master, &r), NtsRequest::Drop(NtsDropReason::InsufficientPadding));
    let r = short_nonce_request(&mut s, 12);
    let NtsRequest::Protected(p) = process_request(&s.master, &r) else { panic!() };
    let mut out = vec![0u8; 1024];
    let n = p.seal_reply(&mut out, &s.master, &mut s.rng).unwrap();
    assert!(n <= r.len(), "reply {n} > request {}", r.len());
    assert_eq!(p.seal_reply(&mut out[..100], &s.master, &mut s.rng), Err(ReplyError));
}

#[test]
fn encrypted_placeholders_count_and_bad_ones_do_not() {
    let mut s = setup(Aead::AesSivCmac256, 9);
    let keys = s.session.keys.clone();
    let cookie = s.master.seal(&keys, &mut s.rng);
    let mut r = client_header().to_vec();
    push_field(&mut r, T_UID, &[3; 32]);
    push_field(&mut r, T_COOKIE, &cookie);
    push_field(&mut r, T_PLACEHOLDER, &vec![0; cookie.len()]);
    push_field(&mut r, T_PLACEHOLDER, &[0; 8]); // wrong length: not counted
    let mut inner = Vec::new();
    push_field(&mut inner, T_PLACEHOLDER, &vec![0; cookie.len()]);
    seal_into(&mut r, keys.aead, keys.c2s.as_bytes(), &inner, 0, &mut s.rng);
    push_field(&mut r, T_PLACEHOLDER, &vec![0; cookie.len()]); // after the authenticator: ignored
    let NtsRequest::Protected(p) = process_request(&s.master, &r) else { panic!() };
    assert_eq!(p.cookies_wanted(), 3);
    assert_eq!(p.unique_id(), &[3; 32]);
}

fn tamper_setup() -> (Setup, Vec<u8>, PendingRequest, Vec<u8>) {
    let mut s = setup(Aead::AesSivCmac256, 10);
    for _ in 0..2 {
        let _ = s.request();
    }
    let (req, pending) = s.request();
    let reply = s.reply_to(&req);
    (s, req, pending, reply)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_tampered_request_byte_is_rejected(pos in 0usize..2000, flip in 1u8..=255) {
        let (s, req, _, _) = tamper_setup();
        let pos = pos % req.len();
        let mut t = req.clone();
        t[pos] ^= flip;
        let out = process_request(&s.master, &t);
        prop_assert!(!matches!(out, NtsRequest::Protected(_)), "byte {} accepted", pos);
    }

    #[test]
    fn any_tampered_reply_byte_is_rejected(pos in 0usize..2000, flip in 1u8..=255) {
        let (mut s, _, pending, reply) = tamper_setup();
        let pos = pos % reply.len();
        let mut t = reply.clone();
        t[pos] ^= flip;
        let before = s.session.jar().len();
        prop_assert!(s.session.verify_response(&pending, &t).is_err(), "byte {} accepted", pos);
        prop_assert_eq!(s.session.jar().len(), before);
    }

    #[test]
    fn reply_never_longer_than_request(aead_i in 0usize..3, lost in 0usize..8) {
        let mut s = setup(Aead::ALL[aead_i], 11);
        for _ in 0..lost {
            let _ = s.request();
        }
        let (req, pending) = s.request();
        let reply = s.reply_to(&req);
        prop_assert!(reply.len() <= req.len());
        prop_assert_eq!(s.session.verify_response(&pending, &reply), Ok(ResponseKind::Time { new_cookies: 1 + pending.placeholders() }));
    }

    #[test]
    fn random_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (mut s, _, pending, _) = tamper_setup();
        let _ = process_request(&s.master, &data);
        let _ = s.session.verify_response(&pending, &data);
    }
}

/// A chronyd 4.3 NTS request (tests/captures/chrony-nts.pcapng, in the fuzz
/// seeds): its layout is recognised, and since its cookie is not ours the
/// answer is an NTSN echoing its Unique Identifier.
#[test]
fn chrony_request_is_recognised_and_naked() {
    let chrony: &[u8] = include_bytes!("../../../fuzz/seeds/packet/nts-0.bin");
    let s = setup(Aead::AesSivCmac256, 12);
    let NtsRequest::Nak(nak) = process_request(&s.master, chrony) else { panic!("{:?}", process_request(&s.master, chrony)) };
    assert!(matches!(nak.reason, NakReason::Cookie(CookieError::UnknownKey(_))));
    assert_eq!(nak.unique_id(), &chrony[52..52 + 32]);
    let mut out = [0u8; 128];
    assert!(nak.write(-20, &mut out).unwrap() <= chrony.len());
}

#[test]
fn a_request_read_back_from_the_wire_verifies_its_reply_as_the_pending_state_does() {
    let mut s = setup(Aead::AesSivCmac256, 7);
    for _ in 0..4 {
        let _ = s.session.jar.take();
    }
    let (req, pending) = s.request();
    assert_eq!(pending.placeholders(), 4, "3 cookies left after this one: 4 to get back to 8");
    let read = PendingRequest::from_request(&req).expect("a request build_request made");
    assert_eq!(read, pending);
    let reply = s.reply_to(&req);
    assert!(matches!(s.session.verify_response(&read, &reply), Ok(ResponseKind::Time { .. })));
    // Not a protected request: no identifier, two identifiers, no authenticator, a short identifier.
    assert_eq!(PendingRequest::from_request(&client_header()), None);
    let uid_end = 48 + 4 + UNIQUE_ID_LEN;
    let mut two = req[..uid_end].to_vec();
    two.extend_from_slice(&req[48..]);
    assert_eq!(PendingRequest::from_request(&two), None);
    assert_eq!(PendingRequest::from_request(&req[..uid_end]), None);
    let mut short = client_header().to_vec();
    push_field(&mut short, T_UID, &[7u8; 16]);
    short.extend_from_slice(&req[uid_end..]);
    assert_eq!(PendingRequest::from_request(&short), None);
    // Placeholders after the authenticator are not counted.
    let mut trailing = req.clone();
    push_field(&mut trailing, T_PLACEHOLDER, &[0u8; 100]);
    assert_eq!(PendingRequest::from_request(&trailing).map(|p| p.placeholders()), Some(4));
}

/// The in-place `seal_reply` writes the octets the earlier one did, which
/// built the reply in a `Vec` (`push_field`, `MasterKeys::seal`,
/// `seal_into`, kept here as the reference) and copied it: for every
/// algorithm, 1-8 cookies asked for, Unique Identifiers of 32-64 octets and
/// requests too short for all the cookies asked, with the same random draws.
#[test]
fn in_place_reply_is_the_octets_of_the_reference_reply() {
    fn reference(p: &ProtectedRequest, header: &[u8], master: &MasterKeys, rng: &mut dyn NtsRng) -> Option<Vec<u8>> {
        let aead = p.keys.aead;
        let mut reply = header.to_vec();
        push_field(&mut reply, T_UID, &p.uid);
        let cookie_field = 4 + padded_len(cookie_len(aead));
        let fixed = reply.len() + 8 + padded_len(aead.nonce_len()) + padded_len(aead.overhead());
        let n = p.cookies_wanted.min(p.request_len.saturating_sub(fixed) / cookie_field);
        if n == 0 {
            return None;
        }
        let mut plain = Vec::new();
        for _ in 0..n {
            push_field(&mut plain, T_COOKIE, &master.seal(&p.keys, rng));
        }
        seal_into(&mut reply, aead, p.keys.s2c.as_bytes(), &plain, 0, rng).then_some(reply)
    }
    let mut cases = 0;
    for aead in Aead::ALL {
        let s = setup(aead, 11);
        let keys = SessionKeys::random(aead, &mut TestRng::new(12));
        for cookies_wanted in 1..=MAX_REPLY_COOKIES {
            for uid_len in [32, 36, 64] {
                for request_len in [200, 232, 400, 1280] {
                    let p = ProtectedRequest { uid: vec![0xa5; uid_len], keys: keys.clone(), cookies_wanted, request_len };
                    let want = reference(&p, &server_header(), &s.master, &mut TestRng::new(5));
                    let mut out = vec![0xeeu8; 2048];
                    out[..48].copy_from_slice(&server_header());
                    let got = p.seal_reply(&mut out, &s.master, &mut TestRng::new(5)).ok().map(|n| out[..n].to_vec());
                    assert_eq!(got, want, "{aead} cookies {cookies_wanted} uid {uid_len} request {request_len}");
                    cases += usize::from(got.is_some());
                }
            }
        }
    }
    assert!(cases > 100, "{cases} replies compared");
}
