//! The KE listener driving the core's NTS-KE server, against the core's
//! client and against hostile requests (RFC 8915 §4): records missing,
//! duplicated, of unknown critical types; AEAD negotiation (15 and 30).

use ntplab_daemon::config::DaemonConfig;
use ntplab_daemon::nts::client::{establish, KeFailure};
use ntplab_daemon::nts::ke::{self, SessionEnd, StreamNetwork, TokioStreams};
use ntplab_daemon::nts::server::NtsServerShared;
use ntplab_daemon::nts::tls::{self, ServerIdentity};
use ntplab_proto::nts::{Aead, KeError};
use ntplab_proto::wire::ntske::{self, AeadId, Body, ErrorCode, ProtocolId, Repr};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    addr: SocketAddr,
    cert_pem: String,
    ends: Rc<RefCell<Vec<SessionEnd>>>,
    shared: std::sync::Arc<NtsServerShared>,
}

async fn start(nts_extra: &str) -> Server {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let identity = ServerIdentity::from_pem(ck.cert.pem().as_bytes(), ck.key_pair.serialize_pem().as_bytes()).unwrap();
    let text = format!("listen = [\"127.0.0.1:11123\"]\n[nts]\ncertificate = \"c\"\nkey = \"k\"\n{nts_extra}");
    let spec = DaemonConfig::from_toml(&text, "t.toml").unwrap().nts.unwrap();
    let start = std::time::Instant::now();
    let shared = NtsServerShared::new(&spec, tls::provider(), std::sync::Arc::new(move || start.elapsed().as_secs()));
    let listener = TokioStreams.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ends: Rc<RefCell<Vec<SessionEnd>>> = Rc::default();
    let seen = ends.clone();
    tokio::task::spawn_local(ke::serve(
        listener,
        identity.server_config(tls::provider()).unwrap(),
        spec.limits,
        Rc::new(shared.clone()),
        Rc::new(move |_, e: &SessionEnd| seen.borrow_mut().push(e.clone())),
        std::future::pending(),
    ));
    Server { addr, cert_pem: ck.cert.pem(), ends, shared }
}

fn client_config(pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls::certificates_from_pem(pem.as_bytes()).unwrap().remove(0)).unwrap();
    tls::client_config(roots, tls::provider()).unwrap()
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

async fn ke(s: &Server, aeads: &[Aead]) -> Result<ntplab_daemon::nts::client::Established, KeFailure> {
    let default_ntp: SocketAddr = "127.0.0.1:123".parse().unwrap();
    establish(&TokioStreams, "localhost", s.addr.port(), client_config(&s.cert_pem), aeads, ntplab_proto::wire::ntske::ProtocolId::NTPV4, default_ntp, Duration::from_secs(5)).await
}

#[test]
fn a_client_gets_eight_cookies_for_the_aead_it_asks_for() {
    local(async {
        let s = start("").await;
        for (offer, chosen) in [
            (vec![Aead::AesSivCmac256], Aead::AesSivCmac256),
            (vec![Aead::Aes128GcmSiv], Aead::Aes128GcmSiv),
            (vec![Aead::Aes128GcmSiv, Aead::AesSivCmac256], Aead::AesSivCmac256),
            (vec![Aead::AesSivCmac512], Aead::AesSivCmac512),
        ] {
            let e = ke(&s, &offer).await.unwrap();
            assert_eq!(e.response.aead, chosen, "offered {offer:?}; the server prefers 15");
            assert_eq!(e.keys.aead, chosen);
            assert_eq!(e.response.cookies.len(), 8);
            // The listen port is not 123, so the server hands it out.
            assert_eq!(e.ntp, "127.0.0.1:11123".parse().unwrap());
            // The cookie opens under the server's master key to the very keys the client exported.
            let opened = s.shared.with_master(|m, _| m.open(&e.response.cookies[0])).unwrap();
            assert_eq!(opened, e.keys);
        }
    })
}

#[test]
fn the_server_preference_and_handed_out_server_follow_the_config() {
    local(async {
        let s = start("aeads = [30, 15]\nntp_server = \"127.0.0.1\"\nntp_port = 4123\n").await;
        let e = ke(&s, &[Aead::AesSivCmac256, Aead::Aes128GcmSiv]).await.unwrap();
        assert_eq!(e.response.aead, Aead::Aes128GcmSiv);
        assert_eq!(e.ntp, "127.0.0.1:4123".parse().unwrap());
        let e = ke(&s, &[Aead::AesSivCmac512]).await.unwrap_err();
        assert_eq!(e, KeFailure::Protocol(KeError::NoCommonAead));
    })
}

/// Sends `records` (as given) over a good TLS connection; returns the response records.
async fn raw(s: &Server, records: &[Repr]) -> Vec<Repr> {
    let stream = TokioStreams.connect(s.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&s.cert_pem));
    let mut tls = connector.connect(tls::server_name("localhost").unwrap(), stream).await.unwrap();
    tls.write_all(&ntske::message_to_bytes(records)).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.unwrap().unwrap();
    ntske::parse_message(&out).unwrap()
}

fn error(code: ErrorCode) -> Vec<Repr> {
    vec![Repr::new(Body::Error(code)), Repr::end_of_message()]
}

#[test]
fn hostile_requests_get_the_errors_rfc_8915_names() {
    local(async {
        let s = start("").await;
        let next = Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV4]));
        let aead = Repr::new(Body::AeadAlgorithm(vec![AeadId::AES_SIV_CMAC_256]));
        let eom = Repr::end_of_message();
        let unknown_critical = Repr { critical: true, body: Body::Unknown { record_type: 0x4321, body: vec![1, 2] } };
        let unknown = Repr { critical: false, body: Body::Unknown { record_type: 0x4321, body: vec![1, 2] } };
        // No Next Protocol: Bad Request.
        assert_eq!(raw(&s, &[aead.clone(), eom.clone()]).await, error(ErrorCode::BAD_REQUEST));
        // Duplicated records: Bad Request.
        assert_eq!(raw(&s, &[next.clone(), next.clone(), aead.clone(), eom.clone()]).await, error(ErrorCode::BAD_REQUEST));
        assert_eq!(raw(&s, &[next.clone(), aead.clone(), aead.clone(), eom.clone()]).await, error(ErrorCode::BAD_REQUEST));
        // An unknown record with the Critical Bit: Unrecognized Critical Record.
        assert_eq!(
            raw(&s, &[next.clone(), unknown_critical, aead.clone(), eom.clone()]).await,
            error(ErrorCode::UNRECOGNIZED_CRITICAL_RECORD)
        );
        // Without it, ignored: a normal answer.
        let ok = raw(&s, &[next.clone(), unknown, aead.clone(), eom.clone()]).await;
        assert_eq!(ok.iter().filter(|r| matches!(r.body, Body::NewCookie(_))).count(), 8, "{ok:?}");
        // An Error record from a client: not allowed.
        let bad = raw(&s, &[next.clone(), aead.clone(), Repr::new(Body::Error(ErrorCode::BAD_REQUEST)), eom.clone()]).await;
        assert_eq!(bad, error(ErrorCode::BAD_REQUEST));
        // No NTPv4 offered: an empty Next Protocol record, no cookies.
        let v5 = raw(&s, &[Repr::new(Body::NextProtocol(vec![ProtocolId(0x7777)])), aead.clone(), eom.clone()]).await;
        assert_eq!(v5, vec![Repr::new(Body::NextProtocol(vec![])), eom.clone()]);
        assert!(s.ends.borrow().iter().all(|e| matches!(e, SessionEnd::Answered { .. })), "{:?}", s.ends.borrow());
    })
}

#[test]
fn a_request_cut_short_is_answered_with_bad_request_when_the_client_half_closes() {
    local(async {
        let s = start("ke_timeout = 0.5\n").await;
        let stream = TokioStreams.connect(s.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config(&s.cert_pem));
        let mut tls = connector.connect(tls::server_name("localhost").unwrap(), stream).await.unwrap();
        let full = ntske::message_to_bytes(&[Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV4])), Repr::end_of_message()]);
        tls.write_all(&full[..5]).await.unwrap();
        tls.flush().await.unwrap();
        // Nothing more: at the deadline the server gives its last word and closes.
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await.unwrap().ok();
        assert_eq!(ntske::parse_message(&out).unwrap(), error(ErrorCode::BAD_REQUEST));
        assert_eq!(s.ends.borrow().last(), Some(&SessionEnd::TimedOut));
    })
}
