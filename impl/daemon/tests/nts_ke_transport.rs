//! The NTS-KE listener and client over real loopback TCP and TLS: what a
//! hostile or careless client gets (TLS 1.2 only, wrong or no ALPN, requests
//! too long or malformed, a slow client holding a slot) and that a good
//! client always gets through. The responder here answers with keys exported
//! from the connection, so the tests also check both ends export the same.

use ntplab_daemon::nts::ke::{self, KeLimits, KeSession, KeSessions, KeStep, SessionEnd, StreamNetwork, TokioStreams};
use ntplab_daemon::nts::tls::{self, KeyExporter, ServerIdentity};
use ntplab_proto::wire::ntske::{self, Body, ErrorCode, MessageReader, Progress, Repr};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LABEL: &[u8] = b"EXPORTER-network-time-security";
const CONTEXT: [u8; 5] = [0, 0, 0, 15, 0];

struct Pki {
    identity: ServerIdentity,
    cert_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert_pem = ck.cert.pem();
    let identity = ServerIdentity::from_pem(cert_pem.as_bytes(), ck.key_pair.serialize_pem().as_bytes()).unwrap();
    Pki { identity, cert_pem }
}

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::certificates_from_pem(pem.as_bytes()).unwrap() {
        roots.add(c).unwrap();
    }
    roots
}

/// A session that answers a whole message with 32 octets exported with the
/// C2S context as a cookie, and a malformed one with Bad Request.
#[derive(Default)]
struct Exporting(Vec<u8>);

impl KeSession for Exporting {
    fn receive(&mut self, data: &[u8], exporter: &dyn KeyExporter) -> KeStep {
        self.0.extend_from_slice(data);
        match MessageReader::new().scan(&self.0) {
            Ok(Progress::NeedMore { .. }) => KeStep::NeedMore,
            Ok(Progress::Complete { .. }) => {
                let mut key = vec![0u8; 32];
                exporter.export(LABEL, &CONTEXT, &mut key).unwrap();
                let response = ntske::message_to_bytes(&[Repr::new(Body::NewCookie(key)), Repr::end_of_message()]);
                KeStep::Respond { response, note: "exported".into() }
            }
            Err(_) => KeStep::Respond { response: ke::bad_request(), note: "malformed".into() },
        }
    }

    fn end_of_input(&mut self) -> Option<Vec<u8>> {
        None
    }

    fn timed_out(&mut self) -> Option<Vec<u8>> {
        None
    }
}

struct ExportingSessions;

impl KeSessions for ExportingSessions {
    fn session(&self) -> Box<dyn KeSession> {
        Box::new(Exporting::default())
    }
}

fn request() -> Vec<u8> {
    ntske::message_to_bytes(&[
        Repr::new(Body::NextProtocol(vec![ntske::ProtocolId::NTPV4])),
        Repr::new(Body::AeadAlgorithm(vec![ntske::AeadId::AES_SIV_CMAC_256])),
        Repr::end_of_message(),
    ])
}

type Ends = Rc<RefCell<Vec<SessionEnd>>>;

/// Starts a listener on 127.0.0.1 (ephemeral port); returns its address and the session ends seen.
async fn start(identity: &ServerIdentity, limits: KeLimits) -> (SocketAddr, Ends) {
    let listener = TokioStreams.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ends: Ends = Rc::default();
    let seen = ends.clone();
    let config = identity.server_config(tls::provider()).unwrap();
    tokio::task::spawn_local(ke::serve(
        listener,
        config,
        limits,
        Rc::new(ExportingSessions),
        Rc::new(move |_, end: &SessionEnd| seen.borrow_mut().push(end.clone())),
        std::future::pending(),
    ));
    (addr, ends)
}

fn client_config(pem: &str) -> Arc<rustls::ClientConfig> {
    tls::client_config(roots(pem), tls::provider()).unwrap()
}

/// A whole good exchange; returns the cookie body and the client's own export.
async fn good_exchange(addr: SocketAddr, pem: &str) -> Result<(Vec<u8>, Vec<u8>), ke::ExchangeError> {
    ke::connect_and_exchange(&TokioStreams, "localhost", addr.port(), client_config(pem), &request(), 65536, Duration::from_secs(5), |resp, exporter| {
        let records = ntske::parse_message(resp).unwrap();
        let Body::NewCookie(cookie) = &records[0].body else { panic!("{records:?}") };
        let mut mine = vec![0u8; 32];
        exporter.export(LABEL, &CONTEXT, &mut mine).unwrap();
        (cookie.clone(), mine)
    })
    .await
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

async fn wait_for(ends: &Ends, n: usize) {
    for _ in 0..200 {
        if ends.borrow().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {:?} sessions ended", ends.borrow());
}

#[test]
fn both_ends_export_the_same_keys() {
    local(async {
        let p = pki(&["localhost", "127.0.0.1"]);
        let (addr, ends) = start(&p.identity, KeLimits::default()).await;
        let (server_key, client_key) = good_exchange(addr, &p.cert_pem).await.unwrap();
        assert_eq!(server_key, client_key);
        assert_ne!(server_key, vec![0u8; 32]);
        wait_for(&ends, 1).await;
        assert!(matches!(ends.borrow()[0], SessionEnd::Answered { request_len: 16, .. }), "{:?}", ends.borrow());
        // Also by IP address: the certificate carries 127.0.0.1 as an IP SAN.
        let by_ip = ke::connect_and_exchange(&TokioStreams, "127.0.0.1", addr.port(), client_config(&p.cert_pem), &request(), 65536, Duration::from_secs(5), |r, _| r.len()).await;
        assert_eq!(by_ip, Ok(4 + 32 + 4));
    })
}

#[test]
fn a_tls12_only_client_is_refused() {
    local(async {
        let p = pki(&["localhost"]);
        let (addr, ends) = start(&p.identity, KeLimits::default()).await;
        let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots(&p.cert_pem))
            .with_no_client_auth();
        config.alpn_protocols = vec![tls::ALPN_NTSKE.to_vec()];
        let stream = TokioStreams.connect(addr).await.unwrap();
        let name = tls::server_name("localhost").unwrap();
        let r = ke::exchange(stream, Arc::new(config), name, &request(), 65536, Duration::from_secs(5), |_, _| ()).await;
        assert!(matches!(&r, Err(ke::ExchangeError::Handshake(e)) if e.contains("ProtocolVersion") || e.contains("version")), "{r:?}");
        wait_for(&ends, 1).await;
        assert!(matches!(&ends.borrow()[0], SessionEnd::Handshake(_)), "{:?}", ends.borrow());
    })
}

#[test]
fn wrong_or_missing_alpn_is_refused() {
    local(async {
        let p = pki(&["localhost"]);
        let (addr, ends) = start(&p.identity, KeLimits::default()).await;
        for alpn in [vec![b"http/1.1".to_vec()], vec![]] {
            let mut config = (*client_config(&p.cert_pem)).clone();
            config.alpn_protocols = alpn;
            let stream = TokioStreams.connect(addr).await.unwrap();
            let name = tls::server_name("localhost").unwrap();
            let r = ke::exchange(stream, Arc::new(config), name, &request(), 65536, Duration::from_secs(5), |_, _| ()).await;
            assert!(r.is_err(), "{r:?}");
        }
        wait_for(&ends, 2).await;
        let ends = ends.borrow();
        // A foreign ALPN fails the handshake (no_application_protocol); none at all is closed after it.
        assert!(matches!(&ends[0], SessionEnd::Handshake(e) if e.contains("known protocol")), "{ends:?}");
        assert_eq!(ends[1], SessionEnd::NoAlpn);
    })
}

#[test]
fn untrusted_or_misnamed_certificates_are_refused() {
    local(async {
        let p = pki(&["localhost"]);
        let other = pki(&["localhost"]);
        let (addr, _ends) = start(&p.identity, KeLimits::default()).await;
        let r = good_exchange(addr, &other.cert_pem).await;
        // Another key under the same subject name: its signature does not verify.
        assert!(matches!(&r, Err(ke::ExchangeError::Handshake(e)) if e.contains("invalid peer certificate")), "{r:?}");
        let r = ke::connect_and_exchange(&TokioStreams, "127.0.0.1", addr.port(), client_config(&p.cert_pem), &request(), 65536, Duration::from_secs(5), |_, _| ()).await;
        assert!(matches!(&r, Err(ke::ExchangeError::Handshake(e)) if e.contains("not valid for name")), "{r:?}");
    })
}

/// Raw TLS client for hostile requests: sends `bytes`, returns what came back.
async fn send_raw(addr: SocketAddr, pem: &str, bytes: &[u8]) -> Vec<u8> {
    let stream = TokioStreams.connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(pem));
    let mut tls = connector.connect(tls::server_name("localhost").unwrap(), stream).await.unwrap();
    // The server may answer (and close) before all is written: ignore write errors.
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    out
}

#[test]
fn requests_over_the_limit_or_malformed_get_bad_request() {
    local(async {
        let p = pki(&["localhost"]);
        let limits = KeLimits { request_bytes: 1024, ..KeLimits::default() };
        let (addr, ends) = start(&p.identity, limits).await;
        let bad = ntske::message_to_bytes(&[Repr::new(Body::Error(ErrorCode::BAD_REQUEST)), Repr::end_of_message()]);
        // One record claiming 2000 octets: refused on its header.
        let big = ntske::message_to_bytes(&[Repr::new(Body::Unknown { record_type: 0x4100, body: vec![7; 2000] }), Repr::end_of_message()]);
        assert_eq!(send_raw(addr, &p.cert_pem, &big).await, bad);
        // Endless small records without End of Message: refused at the limit.
        let many: Vec<u8> = std::iter::repeat_n(ntske::message_to_bytes(&[Repr::new(Body::Port(123))]), 400).flatten().collect();
        assert_eq!(send_raw(addr, &p.cert_pem, &many).await, bad);
        // End of Message with a body: a length rule broken.
        assert_eq!(send_raw(addr, &p.cert_pem, &[0x80, 0, 0, 2, 0, 0]).await, bad);
        wait_for(&ends, 3).await;
        let ends = ends.borrow();
        assert_eq!(&ends[..2], &[SessionEnd::TooLong, SessionEnd::TooLong]);
        assert!(matches!(&ends[2], SessionEnd::Answered { note, .. } if note == "malformed"), "{ends:?}");
    })
}

#[test]
fn a_slow_client_neither_holds_its_slot_forever_nor_stalls_others() {
    local(async {
        let p = pki(&["localhost"]);
        let limits = KeLimits { connections: 2, timeout: Duration::from_millis(700), ..KeLimits::default() };
        let (addr, ends) = start(&p.identity, limits).await;
        // The slow client: a TCP connection that sends one octet of a ClientHello and waits.
        let mut slow = TokioStreams.connect(addr).await.unwrap();
        slow.write_all(&[0x16]).await.unwrap();
        // A second slow client, after the handshake: one octet of a request.
        let stream = TokioStreams.connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(&p.cert_pem));
        let mut slow_tls = connector.connect(tls::server_name("localhost").unwrap(), stream).await.unwrap();
        slow_tls.write_all(&[0x80]).await.unwrap();
        slow_tls.flush().await.unwrap();
        // Both slots are taken: a third client is turned away at once, not queued.
        let started = std::time::Instant::now();
        let r = good_exchange(addr, &p.cert_pem).await;
        assert!(r.is_err() && started.elapsed() < Duration::from_millis(500), "{r:?} after {:?}", started.elapsed());
        // After the deadline both slow sessions are gone and a good client is served.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let (a, b) = good_exchange(addr, &p.cert_pem).await.unwrap();
        assert_eq!(a, b);
        let mut buf = [0u8; 16];
        assert_eq!(slow.read(&mut buf).await.unwrap_or(0), 0, "the server closed the slow connection");
        wait_for(&ends, 4).await;
        let ends = ends.borrow();
        assert_eq!(ends.iter().filter(|e| **e == SessionEnd::TimedOut).count(), 2, "{ends:?}");
        assert_eq!(ends.iter().filter(|e| **e == SessionEnd::Busy).count(), 1, "{ends:?}");
        assert!(matches!(ends.last(), Some(SessionEnd::Answered { .. })), "{ends:?}");
    })
}

#[test]
fn while_one_client_dawdles_another_completes() {
    local(async {
        let p = pki(&["localhost"]);
        let limits = KeLimits { connections: 4, timeout: Duration::from_secs(10), ..KeLimits::default() };
        let (addr, ends) = start(&p.identity, limits).await;
        let mut slow = TokioStreams.connect(addr).await.unwrap();
        slow.write_all(&[0x16, 0x03]).await.unwrap();
        let started = std::time::Instant::now();
        let (a, b) = good_exchange(addr, &p.cert_pem).await.unwrap();
        assert_eq!(a, b);
        assert!(started.elapsed() < Duration::from_secs(2), "the good client waited {:?}", started.elapsed());
        wait_for(&ends, 1).await;
        assert!(matches!(ends.borrow()[0], SessionEnd::Answered { .. }));
    })
}

#[test]
fn the_identity_debug_output_hides_the_key() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key_pem = ck.key_pair.serialize_pem();
    let id = ServerIdentity::from_pem(ck.cert.pem().as_bytes(), key_pem.as_bytes()).unwrap();
    let text = format!("{id:?} {id:#?}");
    assert!(text.contains("<redacted>") && text.contains("1 certificate"), "{text}");
    let der = ck.key_pair.serialize_der();
    let bytes_listed = format!("{:?}", &der[der.len() - 8..]);
    assert!(!text.contains(&bytes_listed[1..bytes_listed.len() - 1]), "{text}");
    // A key that belongs to another certificate is refused at load.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let e = ServerIdentity::from_pem(ck.cert.pem().as_bytes(), other.key_pair.serialize_pem().as_bytes()).unwrap_err();
    assert!(e.contains("does not belong"), "{e}");
    let e = ServerIdentity::from_pem(b"hello", key_pem.as_bytes()).unwrap_err();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = ServerIdentity::from_pem(ck.cert.pem().as_bytes(), b"hello").unwrap_err();
    assert!(e.contains("no PRIVATE KEY"), "{e}");
}
