use super::*;
use crate::nts::cookie::MasterKeyConfig;
use crate::nts::tests::TestRng;
use crate::wire::ntske::parse_message;
use proptest::prelude::*;

fn rec(critical: bool, body: Body) -> Repr {
    Repr { critical, body }
}

fn np(v: &[u16]) -> Repr {
    Repr::new(Body::NextProtocol(v.iter().map(|&p| ProtocolId(p)).collect()))
}

fn aeads(v: &[u16]) -> Repr {
    Repr::new(Body::AeadAlgorithm(v.iter().map(|&a| AeadId(a)).collect()))
}

fn eom() -> Repr {
    Repr::end_of_message()
}

fn good_request() -> Vec<Repr> {
    vec![np(&[0]), aeads(&[15, 30]), eom()]
}

/// Runs a server over `records` in one piece; the step.
fn serve(records: &[Repr]) -> KeServerStep {
    KeServer::new(&KeServerConfig::default()).receive(&message_to_bytes(records))
}

fn refused_with(records: &[Repr]) -> (ErrorCode, KeError) {
    match serve(records) {
        KeServerStep::Respond { response, outcome: KeServerOutcome::Refused(e) } => {
            let parsed = parse_message(&response).unwrap();
            let code = match parsed[..] {
                [Repr { critical: true, body: Body::Error(c) }, Repr { critical: true, body: Body::EndOfMessage }] => c,
                _ => panic!("not an error response: {parsed:?}"),
            };
            assert_eq!(code, e.error_code());
            (code, e)
        }
        other => panic!("not refused: {other:?}"),
    }
}

struct Exchange {
    master: MasterKeys,
    rng: TestRng,
}

impl Exchange {
    fn new() -> Self {
        let mut rng = TestRng::new(42);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        Exchange { master, rng }
    }

    /// Full exchange; the request and response are fed in `split`-octet pieces.
    fn run(&mut self, server_cfg: &KeServerConfig, client_cfg: KeClientConfig, split: usize) -> (Result<KeResponse, KeError>, Option<SessionKeys>) {
        let mut client = KeClient::new(client_cfg);
        let request = client.request();
        let mut server = KeServer::new(server_cfg);
        let mut step = KeServerStep::NeedMore;
        for chunk in request.chunks(split) {
            assert_eq!(step, KeServerStep::NeedMore);
            step = server.receive(chunk);
        }
        let (response, keys) = match step {
            KeServerStep::ExportKeys(aead) => {
                let keys = SessionKeys::random(aead, &mut self.rng);
                (server.respond(&keys, &self.master, &mut self.rng), Some(keys))
            }
            KeServerStep::Respond { response, .. } => (response, None),
            other => panic!("{other:?}"),
        };
        assert_eq!(server.receive(b"late"), KeServerStep::Finished);
        let mut out = KeClientStep::NeedMore;
        for chunk in response.chunks(split) {
            assert_eq!(out, KeClientStep::NeedMore);
            out = client.receive(chunk);
        }
        assert_eq!(client.receive(b"late"), KeClientStep::Finished);
        match out {
            KeClientStep::Done(r) => (r, keys),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn round_trip_each_aead_any_split() {
    let mut ex = Exchange::new();
    for aead in Aead::ALL {
        for split in [1, 3, 7, 1000] {
            let client = KeClientConfig { aeads: vec![aead], ..Default::default() };
            let (resp, keys) = ex.run(&KeServerConfig::default(), client, split);
            let resp = resp.unwrap();
            assert_eq!(resp.aead, aead);
            assert_eq!(resp.protocol, ProtocolId::NTPV4);
            assert_eq!(resp.cookies.len(), DEFAULT_COOKIE_COUNT, "8 cookies by default");
            let keys = keys.unwrap();
            for c in &resp.cookies {
                assert_eq!(ex.master.open(c).unwrap(), keys);
            }
            assert_eq!((resp.ntp_server, resp.ntp_port), (None, None));
        }
    }
}

#[test]
fn server_preference_server_and_port_and_cookie_count() {
    let mut ex = Exchange::new();
    let cfg = KeServerConfig {
        aeads: vec![Aead::Aes128GcmSiv, Aead::AesSivCmac256],
        ntp_server: Some("ntp.example".into()),
        ntp_port: Some(1123),
        cookie_count: 3,
        ..Default::default()
    };
    let client = KeClientConfig { ntp_server: Some("wish.example".into()), ntp_port: Some(9), ..Default::default() };
    let resp = ex.run(&cfg, client, 5).0.unwrap();
    assert_eq!(resp.aead, Aead::Aes128GcmSiv, "server's order wins");
    assert_eq!(resp.ntp_server.as_deref(), Some("ntp.example"));
    assert_eq!(resp.ntp_port, Some(1123));
    assert_eq!(resp.cookies.len(), 3);
    // Cookie count is clamped to at least one.
    let cfg = KeServerConfig { cookie_count: 0, ..Default::default() };
    assert_eq!(ex.run(&cfg, KeClientConfig::default(), 64).0.unwrap().cookies.len(), 1);
}

#[test]
fn request_shape() {
    let c = KeClient::new(KeClientConfig { ntp_server: Some("a.example".into()), ntp_port: Some(5), ..Default::default() });
    let r = parse_message(&c.request()).unwrap();
    assert!(crate::wire::ntske::check_request(&r).is_empty(), "{:?}", crate::wire::ntske::check_request(&r));
    assert_eq!(r[1], aeads(&[15, 30, 17]));
    assert_eq!(r[3], rec(false, Body::Port(5)));
}

#[test]
fn response_passes_the_wire_checks() {
    let mut ex = Exchange::new();
    let mut client = KeClient::new(KeClientConfig::default());
    let req = parse_message(&client.request()).unwrap();
    let mut server = KeServer::new(&KeServerConfig { ntp_server: Some("x.example".into()), ..Default::default() });
    let KeServerStep::ExportKeys(aead) = server.receive(&message_to_bytes(&req)) else { panic!() };
    let keys = SessionKeys::random(aead, &mut ex.rng);
    let bytes = server.respond(&keys, &ex.master, &mut ex.rng);
    let resp = parse_message(&bytes).unwrap();
    assert!(crate::wire::ntske::check_response(&resp).is_empty());
    assert!(crate::wire::ntske::check_exchange(&req, &resp).is_empty());
    assert!(matches!(client.receive(&bytes), KeClientStep::Done(Ok(_))));
    // A second respond, or one with the wrong keys, is an internal error.
    assert_eq!(server.respond(&keys, &ex.master, &mut ex.rng), error_response(ErrorCode::INTERNAL_SERVER_ERROR));
    let mut s2 = KeServer::new(&KeServerConfig::default());
    assert_eq!(s2.receive(&message_to_bytes(&req)), KeServerStep::ExportKeys(Aead::AesSivCmac256));
    let wrong = SessionKeys::random(Aead::Aes128GcmSiv, &mut ex.rng);
    assert_eq!(s2.respond(&wrong, &ex.master, &mut ex.rng), error_response(ErrorCode::INTERNAL_SERVER_ERROR));
}

#[test]
fn section4_request_errors() {
    let unknown_crit = rec(true, Body::Unknown { record_type: 0x1234, body: vec![1] });
    let unknown = rec(false, Body::Unknown { record_type: 0x1234, body: vec![1] });
    // Error 0 for an unrecognized critical record, wherever it is.
    let (code, e) = refused_with(&[np(&[0]), unknown_crit.clone(), aeads(&[15]), eom()]);
    assert_eq!((code, e), (ErrorCode(0), KeError::UnrecognizedCritical { record_type: 0x1234 }));
    // An unknown non-critical record is ignored.
    assert_eq!(serve(&[unknown, np(&[0]), aeads(&[15]), eom()]), KeServerStep::ExportKeys(Aead::AesSivCmac256));

    let bad = |records: &[Repr], want: KeError| {
        let (code, e) = refused_with(records);
        assert_eq!(code, ErrorCode::BAD_REQUEST, "{records:?}");
        assert_eq!(e, want, "{records:?}");
    };
    bad(&[aeads(&[15]), eom()], KeError::MissingNextProtocol);
    bad(&[np(&[]), aeads(&[15]), eom()], KeError::EmptyNextProtocol);
    bad(&[np(&[0]), eom()], KeError::MissingAead);
    bad(&[np(&[0]), aeads(&[]), eom()], KeError::EmptyAead);
    bad(&[np(&[0]), np(&[0]), aeads(&[15]), eom()], KeError::Duplicate { record_type: 1 });
    bad(&[np(&[0]), aeads(&[15]), aeads(&[15]), eom()], KeError::Duplicate { record_type: 4 });
    let server = Repr::new(Body::Server(b"a".to_vec()));
    bad(&[np(&[0]), aeads(&[15]), server.clone(), server, eom()], KeError::Duplicate { record_type: 6 });
    let port = Repr::new(Body::Port(1));
    bad(&[np(&[0]), aeads(&[15]), port.clone(), port, eom()], KeError::Duplicate { record_type: 7 });
    bad(&[np(&[0]), aeads(&[15]), Repr::new(Body::Error(ErrorCode(2))), eom()], KeError::NotAllowed { record_type: 2 });
    bad(&[np(&[0]), aeads(&[15]), Repr::new(Body::Warning(WarningCode(0))), eom()], KeError::NotAllowed { record_type: 3 });
    bad(&[np(&[0]), aeads(&[15]), Repr::new(Body::NewCookie(vec![1])), eom()], KeError::NotAllowed { record_type: 5 });
    bad(&[rec(false, Body::NextProtocol(vec![ProtocolId(0)])), aeads(&[15]), eom()], KeError::NotCritical { record_type: 1 });
    bad(&[np(&[0]), aeads(&[15]), rec(false, Body::EndOfMessage)], KeError::NotCritical { record_type: 0 });
    // A Port record with a 3-octet body breaks its length rule.
    let mut bytes = message_to_bytes(&[np(&[0]), aeads(&[15])]);
    bytes.extend([0x00, 0x07, 0x00, 0x03, 1, 2, 3]);
    bytes.extend(message_to_bytes(&[eom()]));
    let step = KeServer::new(&KeServerConfig::default()).receive(&bytes);
    assert!(matches!(step, KeServerStep::Respond { outcome: KeServerOutcome::Refused(KeError::Malformed(_)), .. }), "{step:?}");
    // The AEAD record may be non-critical (MAY), Server/Port critical or not.
    let ok = [np(&[0]), rec(false, Body::AeadAlgorithm(vec![AeadId(15)])), rec(true, Body::Port(4)), eom()];
    assert_eq!(serve(&ok), KeServerStep::ExportKeys(Aead::AesSivCmac256));
}

#[test]
fn no_common_protocol_or_aead() {
    // Only the NTPv5 draft: an empty Next Protocol, no AEAD needed.
    let KeServerStep::Respond { response, outcome } = serve(&[np(&[0x8001]), eom()]) else { panic!() };
    assert_eq!(outcome, KeServerOutcome::NoCommonProtocol);
    assert_eq!(parse_message(&response).unwrap(), vec![np(&[]), eom()]);
    // No supported AEAD: NTPv4 with an empty AEAD record.
    let KeServerStep::Respond { response, outcome } = serve(&[np(&[0]), aeads(&[1, 2, 16]), eom()]) else { panic!() };
    assert_eq!(outcome, KeServerOutcome::NoCommonAead);
    assert_eq!(parse_message(&response).unwrap(), vec![np(&[0]), aeads(&[]), eom()]);
    // The client reports both precisely.
    let mut c = KeClient::new(KeClientConfig::default());
    assert_eq!(c.receive(&response), KeClientStep::Done(Err(KeError::NoCommonAead)));
    let mut c = KeClient::new(KeClientConfig::default());
    assert_eq!(c.receive(&message_to_bytes(&[np(&[]), eom()])), KeClientStep::Done(Err(KeError::NoCommonProtocol)));
}

#[test]
fn long_requests_are_refused_not_buffered() {
    // One record announcing a 20 KiB body: refused as soon as its header arrives.
    let mut s = KeServer::new(&KeServerConfig::default());
    assert_eq!(s.receive(&message_to_bytes(&[np(&[0])])), KeServerStep::NeedMore);
    let step = s.receive(&[0x40, 0x00, 0x50, 0x00]);
    assert!(matches!(step, KeServerStep::Respond { outcome: KeServerOutcome::Refused(KeError::TooLong { limit: KE_MAX_REQUEST_LEN }), .. }));
    assert!(s.stream.buf.capacity() <= KE_MAX_REQUEST_LEN);
    // Many small records past the limit, in one big write.
    let filler = rec(false, Body::Unknown { record_type: 0x4000, body: vec![0; 96] });
    let mut many = vec![np(&[0]), aeads(&[15])];
    many.extend(std::iter::repeat_n(filler.clone(), 200));
    many.push(eom());
    let (code, e) = refused_with(&many);
    assert_eq!((code, e), (ErrorCode::BAD_REQUEST, KeError::TooLong { limit: KE_MAX_REQUEST_LEN }));
    // The same one octet at a time: refused at the limit, having held at most one record.
    let bytes = message_to_bytes(&many);
    let mut s = KeServer::new(&KeServerConfig::default());
    let mut refused_at = None;
    for (i, b) in bytes.iter().enumerate() {
        match s.receive(&[*b]) {
            KeServerStep::NeedMore => assert!(s.stream.buf.len() <= 100),
            KeServerStep::Respond { outcome: KeServerOutcome::Refused(KeError::TooLong { .. }), .. } => {
                refused_at = Some(i);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let at = refused_at.unwrap();
    assert!((KE_MAX_REQUEST_LEN - 100..=KE_MAX_REQUEST_LEN).contains(&at), "{at}");
    // A request of 1024 octets is accepted (RFC 8915 §4 MUST), up to the limit too.
    let mut ok = vec![np(&[0]), aeads(&[15])];
    ok.extend(std::iter::repeat_n(filler, 12));
    ok.push(eom());
    assert!(message_to_bytes(&ok).len() > 1024);
    assert_eq!(serve(&ok), KeServerStep::ExportKeys(Aead::AesSivCmac256));
    // The limit is configurable but never below 1024.
    let s = KeServer::new(&KeServerConfig { max_request_len: 10, ..Default::default() });
    assert_eq!(s.config.max_request_len, 1024);
}

#[test]
fn truncated_and_timed_out_requests() {
    let bytes = message_to_bytes(&good_request());
    let mut s = KeServer::new(&KeServerConfig::default());
    assert_eq!(s.receive(&bytes[..bytes.len() - 1]), KeServerStep::NeedMore);
    assert_eq!(s.end_of_input(), Some(error_response(ErrorCode::BAD_REQUEST)));
    assert_eq!(s.end_of_input(), None);
    let mut s = KeServer::new(&KeServerConfig::default());
    assert_eq!(s.timed_out(), Some(error_response(ErrorCode::BAD_REQUEST)));
    assert_eq!(s.receive(&bytes), KeServerStep::Finished);
    // Once the request is complete, a timeout has nothing to add.
    let mut s = KeServer::new(&KeServerConfig::default());
    assert!(matches!(s.receive(&bytes), KeServerStep::ExportKeys(_)));
    assert_eq!(s.timed_out(), None);
    // Octets after End of Message in the same write are ignored.
    let mut more = bytes.clone();
    more.extend([0xff; 9]);
    assert!(matches!(serve(&parse_message(&bytes).unwrap()), KeServerStep::ExportKeys(_)));
    assert!(matches!(KeServer::new(&KeServerConfig::default()).receive(&more), KeServerStep::ExportKeys(_)));
}

fn cookie() -> Repr {
    Repr::new(Body::NewCookie(vec![7; 20]))
}

fn client_result(records: &[Repr]) -> Result<KeResponse, KeError> {
    let mut c = KeClient::new(KeClientConfig { aeads: vec![Aead::AesSivCmac256, Aead::Aes128GcmSiv], ..Default::default() });
    match c.receive(&message_to_bytes(records)) {
        KeClientStep::Done(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_validates_the_response() {
    let good = [np(&[0]), aeads(&[30]), cookie(), cookie(), eom()];
    let r = client_result(&good).unwrap();
    assert_eq!((r.aead, r.cookies.len()), (Aead::Aes128GcmSiv, 2));
    let err = |records: &[Repr], want: KeError| assert_eq!(client_result(records), Err(want), "{records:?}");
    err(&[Repr::new(Body::Error(ErrorCode(1))), eom()], KeError::ServerError(ErrorCode(1)));
    err(&[np(&[0]), Repr::new(Body::Warning(WarningCode(9))), eom()], KeError::ServerWarning(WarningCode(9)));
    err(&[aeads(&[15]), cookie(), eom()], KeError::MissingNextProtocol);
    err(&[np(&[0]), np(&[0]), aeads(&[15]), cookie(), eom()], KeError::Duplicate { record_type: 1 });
    err(&[np(&[0, 0x8001]), aeads(&[15]), cookie(), eom()], KeError::UnexpectedProtocol(ProtocolId(0x8001)));
    err(&[np(&[0]), cookie(), eom()], KeError::MissingAead);
    err(&[np(&[0]), aeads(&[15, 30]), cookie(), eom()], KeError::MultipleAeads);
    err(&[np(&[0]), aeads(&[17]), cookie(), eom()], KeError::UnexpectedAead(AeadId(17)));
    err(&[np(&[0]), aeads(&[2]), cookie(), eom()], KeError::UnexpectedAead(AeadId(2)));
    err(&[np(&[0]), aeads(&[15]), eom()], KeError::NoCookies);
    err(&[np(&[0]), aeads(&[15]), Repr::new(Body::NewCookie(vec![])), eom()], KeError::NoCookies);
    let srv = |s: &[u8]| Repr::new(Body::Server(s.to_vec()));
    err(&[np(&[0]), aeads(&[15]), srv(b"fe80::1%eth0"), cookie(), eom()], KeError::BadServerName);
    err(&[np(&[0]), aeads(&[15]), srv("bücher.example".as_bytes()), cookie(), eom()], KeError::BadServerName);
    err(&[np(&[0]), aeads(&[15]), srv(b""), cookie(), eom()], KeError::BadServerName);
    err(&[np(&[0]), aeads(&[15]), srv(b"a"), srv(b"a"), cookie(), eom()], KeError::Duplicate { record_type: 6 });
    err(&[np(&[0]), aeads(&[15]), rec(true, Body::Unknown { record_type: 99, body: vec![] }), cookie(), eom()], KeError::UnrecognizedCritical { record_type: 99 });
    err(&[np(&[0]), aeads(&[15]), cookie(), rec(false, Body::EndOfMessage)], KeError::NotCritical { record_type: 0 });
    let r = client_result(&[np(&[0]), aeads(&[15]), srv(b"192.0.2.1"), rec(true, Body::Port(4123)), cookie(), eom()]).unwrap();
    assert_eq!((r.ntp_server.as_deref(), r.ntp_port), (Some("192.0.2.1"), Some(4123)));
    // Truncated and oversize responses.
    let mut c = KeClient::new(KeClientConfig::default());
    assert_eq!(c.receive(&message_to_bytes(&good[..2])), KeClientStep::NeedMore);
    assert_eq!(c.end_of_input(), Some(KeError::Truncated));
    let mut c = KeClient::new(KeClientConfig::default());
    let big = rec(false, Body::Unknown { record_type: 0x4000, body: vec![0; 60000] });
    let bytes = message_to_bytes(&[np(&[0]), big.clone(), big, eom()]);
    assert_eq!(c.receive(&bytes), KeClientStep::Done(Err(KeError::TooLong { limit: KE_MAX_RESPONSE_LEN })));
    // At most MAX_RESPONSE_COOKIES cookies are kept.
    let mut many = vec![np(&[0]), aeads(&[15])];
    many.extend(std::iter::repeat_n(cookie(), 100));
    many.push(eom());
    assert_eq!(client_result(&many).unwrap().cookies.len(), MAX_RESPONSE_COOKIES);
}

#[test]
fn errors_display_precisely() {
    assert_eq!(KeError::Duplicate { record_type: 4 }.to_string(), "AEAD Algorithm Negotiation appears more than once");
    assert_eq!(KeError::ServerError(ErrorCode(0)).to_string(), "server sent Error 0 (Unrecognized Critical Record)");
    assert_eq!(KeError::UnrecognizedCritical { record_type: 77 }.to_string(), "unrecognized critical record (type 77)");
}

proptest! {
    #[test]
    fn any_split_gives_the_same_answer(cuts in proptest::collection::vec(1usize..40, 1..20), extra in any::<bool>()) {
        let mut records = good_request();
        if extra {
            records.insert(1, rec(false, Body::Unknown { record_type: 0x4444, body: vec![3; 50] }));
        }
        let bytes = message_to_bytes(&records);
        let mut s = KeServer::new(&KeServerConfig::default());
        let mut pos = 0;
        let mut step = KeServerStep::NeedMore;
        for c in cuts.iter().cycle() {
            if pos >= bytes.len() { break; }
            let end = (pos + c).min(bytes.len());
            prop_assert_eq!(&step, &KeServerStep::NeedMore);
            step = s.receive(&bytes[pos..end]);
            pos = end;
        }
        prop_assert_eq!(step, KeServerStep::ExportKeys(Aead::AesSivCmac256));
    }

    #[test]
    fn random_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
        let cut = cut.min(data.len());
        let mut s = KeServer::new(&KeServerConfig::default());
        let _ = s.receive(&data[..cut]);
        let _ = s.receive(&data[cut..]);
        let _ = s.end_of_input();
        let mut c = KeClient::new(KeClientConfig::default());
        let _ = c.receive(&data[..cut]);
        let _ = c.receive(&data[cut..]);
        let _ = c.end_of_input();
    }
}

#[test]
fn summaries_show_lists_and_names_but_never_cookies() {
    let client = KeClient::new(KeClientConfig::default());
    let req = summarize_records(&client.request());
    assert_eq!(req.first().map(|r| (r.kind, r.critical, r.values.clone())), Some((record_type::NEXT_PROTOCOL, true, vec![0])));
    assert_eq!(req.last().map(|r| (r.kind, r.critical, r.body_len)), Some((record_type::END_OF_MESSAGE, true, 0)));
    assert!(req.iter().any(|r| r.kind == record_type::AEAD_ALGORITHM && !r.values.is_empty()));
    // A response with a cookie and a server name; a record cut short ends the list.
    let mut msg = vec![0x80, 1, 0, 2, 0, 0, 0, 5, 0, 4, 0xde, 0xad, 0xbe, 0xef, 0, 6, 0, 3, b'a', b'.', b'b', 0x80, 0, 0, 0, 0, 7, 0, 9];
    let s = summarize_records(&msg);
    assert_eq!(s.len(), 4);
    assert_eq!((s[1].kind, s[1].body_len, s[1].values.is_empty(), s[1].text.is_none()), (record_type::NEW_COOKIE, 4, true, true));
    assert_eq!(s[2].text.as_deref(), Some("a.b"));
    assert!(!format!("{s:?}").contains("222"), "no cookie octet (0xde = 222)");
    msg.truncate(3);
    assert!(summarize_records(&msg).is_empty());
}

#[test]
fn ntpv5_is_negotiated_in_the_clients_order_only_when_switched_on() {
    let mut ex = Exchange::new();
    let v5 = KeServerConfig { ntpv5: true, ..KeServerConfig::default() };
    let agreed = |cfg: &KeServerConfig, offer: &[u16], ex: &mut Exchange| {
        let mut server = KeServer::new(cfg);
        match server.receive(&message_to_bytes(&[np(offer), aeads(&[15]), eom()])) {
            KeServerStep::ExportKeys(aead) => {
                let chosen = server.protocol().expect("a protocol while awaiting keys");
                let keys = SessionKeys::random(aead, &mut ex.rng);
                let resp = parse_message(&server.respond(&keys, &ex.master, &mut ex.rng)).unwrap();
                assert_eq!(resp[0], np(&[chosen.0]), "the response names the protocol the keys are for");
                assert_eq!(server.protocol(), None);
                Some(chosen.0)
            }
            KeServerStep::Respond { outcome: KeServerOutcome::NoCommonProtocol, response } => {
                assert_eq!(parse_message(&response).unwrap()[0], np(&[]));
                None
            }
            other => panic!("{other:?}"),
        }
    };
    // ntpd-rs 1.9's "auto" order (NTPv5 first), its v5 offer, and NTPv4 first.
    assert_eq!(agreed(&v5, &[0x8001, 0], &mut ex), Some(0x8001));
    assert_eq!(agreed(&v5, &[0x8001], &mut ex), Some(0x8001));
    assert_eq!(agreed(&v5, &[0, 0x8001], &mut ex), Some(0));
    assert_eq!(agreed(&v5, &[0x8002, 0x8001], &mut ex), Some(0x8001));
    // Off (the default): NTPv4 only.
    let v4 = KeServerConfig::default();
    assert_eq!(agreed(&v4, &[0x8001, 0], &mut ex), Some(0));
    assert_eq!(agreed(&v4, &[0x8001], &mut ex), None);
    // NTPv5 needs an AEAD as NTPv4 does.
    let mut server = KeServer::new(&v5);
    assert!(matches!(
        server.receive(&message_to_bytes(&[np(&[0x8001]), eom()])),
        KeServerStep::Respond { outcome: KeServerOutcome::Refused(KeError::MissingAead), .. }
    ));
}

#[test]
fn a_client_asking_for_ntpv5_gets_it_or_nothing() {
    let mut ex = Exchange::new();
    let v5 = KeClientConfig { protocol: ProtocolId::NTPV5_DRAFT, ..KeClientConfig::default() };
    assert_eq!(parse_message(&KeClient::new(v5.clone()).request()).unwrap()[0], np(&[0x8001]));
    let (r, keys) = ex.run(&KeServerConfig { ntpv5: true, ..KeServerConfig::default() }, v5.clone(), 7);
    assert_eq!(r.unwrap().protocol, ProtocolId::NTPV5_DRAFT);
    assert!(keys.is_some());
    // A server without NTPv5 has no common protocol.
    let (r, _) = ex.run(&KeServerConfig::default(), v5.clone(), 7);
    assert_eq!(r, Err(KeError::NoCommonProtocol));
    // A server answering NTPv4 to an NTPv5 request: refused.
    let mut c = KeClient::new(v5);
    let _ = c.request();
    let resp = message_to_bytes(&[np(&[0]), aeads(&[15]), Repr::new(Body::NewCookie(vec![1; 16])), eom()]);
    assert_eq!(c.receive(&resp), KeClientStep::Done(Err(KeError::UnexpectedProtocol(ProtocolId::NTPV4))));
}
