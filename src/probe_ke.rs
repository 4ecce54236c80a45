//! The NTS-KE transport of `ntplab probe`: one TCP connection and TLS
//! session per [`KeAttempt`], presenting TLS as the case asks (TLS 1.3 with
//! ALPN `ntske/1`, TLS 1.2 only, other ALPN lists), writing the case's
//! octets (in two parts for a slow client), reading everything the server
//! sends until it closes or the wait ends, and, when asked, exporting the
//! NTPv4 keys of the AEAD the response names (RFC 8915 §5.1).
//!
//! The probe judges a server's NTS behaviour, not its PKI: without
//! `--trusted-certificates` any certificate is accepted (the handshake
//! signatures are still verified); with it, the chain and name are checked
//! as an NTS client does.

use ntplab_conformance::probe::{KeAttempt, KeEnd, KeKeys, KeRecord, KeTls};
use ntplab_daemon::nts::server::export_keys;
use ntplab_daemon::nts::tls;
use ntplab_proto::nts::{Aead, Direction};
use ntplab_proto::wire::ntske::{self, AeadId, Body};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most octets kept of what a server sends on one connection (RFC 8915 §4:
/// clients accept responses of up to 65536 octets; one more shows "longer").
pub const RESPONSE_KEEP: usize = 65_537;

/// Where and how the probe runs NTS-KE.
pub struct KeTarget {
    /// The NTS-KE server's address.
    pub addr: SocketAddr,
    /// As given (for the reports).
    pub display: String,
    name: ServerName<'static>,
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
}

impl std::fmt::Debug for KeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeTarget").field("addr", &self.addr).field("display", &self.display).finish_non_exhaustive()
    }
}

/// Accepts any certificate chain, but verifies the handshake's signatures
/// with the provider's algorithms (the probe judges NTS, not PKI).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl KeTarget {
    /// NTS-KE at `addr`, with `host` as SNI (a name, or the address), the
    /// certificates checked against `trusted` when given.
    pub fn new(addr: SocketAddr, host: &str, display: String, trusted: Option<&Path>) -> Result<KeTarget, String> {
        let provider = tls::provider();
        let name = tls::server_name(host)?;
        let verifier: Arc<dyn ServerCertVerifier> = match trusted {
            None => Arc::new(AnyCertificate(provider.clone())),
            Some(path) => {
                let roots = tls::roots_from_file(path)?;
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        Ok(KeTarget { addr, display, name, provider, verifier })
    }

    fn config(&self, presentation: &KeTls) -> Result<Arc<ClientConfig>, String> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match presentation {
            KeTls::Tls12Only => &[&rustls::version::TLS12],
            _ => &[&rustls::version::TLS13],
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = match presentation {
            KeTls::Alpn(list) => list.iter().map(|a| a.as_bytes().to_vec()).collect(),
            _ => vec![tls::ALPN_NTSKE.to_vec()],
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// Runs one attempt; `default_wait` bounds each phase when the attempt
    /// names no wait of its own. Never fails: what went wrong is in the record.
    pub async fn attempt(&self, a: &KeAttempt, default_wait: Duration) -> KeRecord {
        let wait = a.wait_ms.map_or(default_wait, Duration::from_millis);
        let record = |end: KeEnd| KeRecord { server: self.display.clone(), tls_version: None, alpn: None, response: Vec::new(), end, keys: None };
        let config = match self.config(&a.tls) {
            Ok(c) => c,
            Err(e) => return record(KeEnd::NoSession(format!("client configuration: {e}"))),
        };
        let stream = match tokio::time::timeout(wait, tokio::net::TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return record(KeEnd::NoSession(format!("connect to {}: {e}", self.addr))),
            Err(_) => return record(KeEnd::NoSession(format!("connect to {}: timed out", self.addr))),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut session = match tokio::time::timeout(wait, connector.connect(self.name.clone(), stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return record(KeEnd::NoSession(format!("handshake: {e}"))),
            Err(_) => return record(KeEnd::NoSession("handshake: timed out".into())),
        };
        let mut out = record(KeEnd::StillOpen);
        {
            let c = session.get_ref().1;
            out.tls_version = c.protocol_version().map(|v| format!("{v:?}"));
            out.alpn = c.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        }
        // The server may answer (and close) before everything is written:
        // a write error still leaves its answer to read.
        let pause = a.split.map_or(0, |(_, ms)| ms);
        let write = async {
            match a.split {
                Some((n, ms)) if n < a.request.len() => {
                    session.write_all(&a.request[..n]).await?;
                    session.flush().await?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    session.write_all(&a.request[n..]).await?;
                }
                _ => session.write_all(&a.request).await?,
            }
            session.flush().await
        };
        let _ = tokio::time::timeout(wait + Duration::from_millis(pause), write).await;
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        out.end = loop {
            match tokio::time::timeout_at(deadline, session.read(&mut chunk)).await {
                Err(_) => break KeEnd::StillOpen,
                Ok(Ok(0)) => break KeEnd::Closed,
                Ok(Ok(n)) => {
                    let room = RESPONSE_KEEP.saturating_sub(out.response.len()).min(n);
                    out.response.extend_from_slice(&chunk[..room]);
                    if out.response.len() >= RESPONSE_KEEP {
                        break KeEnd::StillOpen;
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break KeEnd::Closed,
                Ok(Err(e)) => break KeEnd::Error(e.to_string()),
            }
        };
        if a.export {
            out.keys = agreed_aead(&out.response).and_then(|aead| {
                let keys = export_keys(&**session.get_ref().1, ntske::ProtocolId::NTPV4, aead).ok()?;
                Some(KeKeys {
                    aead: aead.id().0,
                    c2s: keys.key(Direction::ClientToServer).as_bytes().to_vec(),
                    s2c: keys.key(Direction::ServerToClient).as_bytes().to_vec(),
                })
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), session.shutdown()).await;
        out
    }
}

/// The AEAD a KE response agreed to, if it parses and names one the core implements.
fn agreed_aead(response: &[u8]) -> Option<Aead> {
    let records = ntske::parse_message(response).ok()?;
    records.iter().find_map(|r| match &r.body {
        Body::AeadAlgorithm(v) if v.len() == 1 => Aead::from_id(AeadId(v[0].0)),
        _ => None,
    })
}
