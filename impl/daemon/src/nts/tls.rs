//! TLS for NTS-KE (RFC 8915 §3): TLS 1.3 only, ALPN `ntske/1`, the server's
//! certificate chain and key from PEM files, clients verifying the chain and
//! the name (DNS or IP SAN) against configured roots or the system's store.
//!
//! rustls 0.23 with the `ring` provider does the TLS; this module builds its
//! configurations and reads the key material. Nothing here logs or prints a
//! key: [`ServerIdentity`]'s `Debug` names the certificates and redacts the key.

use crate::config::{read_file_bounded, BoundedReadError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The ALPN protocol ID of NTS-KE (RFC 8915 §4, §7.1).
pub const ALPN_NTSKE: &[u8] = b"ntske/1";

/// Largest PEM file read (a certificate chain of a few certificates is a few KiB).
pub const PEM_BYTES_MAX: u64 = 1 << 20;

/// The crypto provider NTS-KE uses in production: rustls' `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's certificate chain (leaf first) and private key.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain", &format_args!("{} certificate(s)", self.chain.len()))
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

impl ServerIdentity {
    /// From PEM text: `chain` holds one or more CERTIFICATE blocks (leaf
    /// first), `key` one PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<ServerIdentity, String> {
        let chain = certificates_from_pem(chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found (is it a PEM key file?)".to_string(),
            // The error's text names the PEM problem, never the key's bytes.
            e => format!("not a PEM private key: {e}"),
        })?;
        // Checked now, so that a key that does not fit fails at start, not at the first client.
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| format!("the private key cannot be used: {e}"))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|e| format!("the key does not belong to the first certificate: {e}"))?;
        Ok(ServerIdentity { chain, key: Arc::new(key) })
    }

    /// Reads the certificate chain and the key from PEM files.
    pub fn load(chain: &Path, key: &Path) -> Result<ServerIdentity, (Which, String)> {
        let chain_pem = read_pem(chain).map_err(|e| (Which::Certificate, e))?;
        let key_pem = read_pem(key).map_err(|e| (Which::Key, e))?;
        let certs = certificates_from_pem(&chain_pem).map_err(|e| (Which::Certificate, format!("{}: {e}", chain.display())))?;
        Self::from_pem(&chain_pem, &key_pem).map_err(|e| {
            if certs.is_empty() {
                (Which::Certificate, format!("{}: {e}", chain.display()))
            } else {
                (Which::Key, format!("{}: {e}", key.display()))
            }
        })
    }

    /// The rustls server configuration: TLS 1.3 only, ALPN `ntske/1` only.
    pub fn server_config(&self, provider: Arc<CryptoProvider>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3: {e}"))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate and key: {e}"))?;
        config.alpn_protocols = vec![ALPN_NTSKE.to_vec()];
        // No session tickets or resumption state to keep: one exchange per connection.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// Which of the two files of an identity an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The certificate chain.
    Certificate,
    /// The private key.
    Key,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    read_file_bounded(path, PEM_BYTES_MAX).map_err(|e| match e {
        BoundedReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
        BoundedReadError::Directory => format!("cannot read {}: it is a directory", path.display()),
        BoundedReadError::TooLarge(_) => {
            format!("{}: larger than the limit of {PEM_BYTES_MAX} bytes (is it a PEM file?)", path.display())
        }
    })
}

/// The CERTIFICATE blocks of PEM text, in order; at least one.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found (is it a PEM certificate file?)".into());
    }
    Ok(certs)
}

/// Trust anchors read from a PEM file of CA (or self-signed) certificates.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let pem = read_pem(path)?;
    let certs = certificates_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("{}: certificate #{} cannot be a trust anchor: {e}", path.display(), i + 1))?;
    }
    Ok(roots)
}

/// The system's trust anchors (the platform's certificate store).
pub fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!("no system trust anchors ({why}); give trusted_certificates"));
    }
    Ok(roots)
}

/// The rustls client configuration: TLS 1.3 only, ALPN `ntske/1`, the
/// server's chain and name verified against `roots`.
pub fn client_config(roots: RootCertStore, provider: Arc<CryptoProvider>) -> Result<Arc<ClientConfig>, String> {
    client_config_at(roots, provider, None)
}

/// [`client_config`] judging certificate validity at the times `time` gives
/// (a simulation's clock); `None`: the system's clock.
pub fn client_config_at(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
    time: Option<Arc<dyn rustls::time_provider::TimeProvider>>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = match time {
        Some(time) => ClientConfig::builder_with_details(provider, time),
        None => ClientConfig::builder_with_provider(provider),
    };
    let mut config = builder
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_NTSKE.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name a client sends as SNI and checks the certificate against: a DNS
/// name, or an IP address (checked against the certificate's IP SANs).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(bare.to_string()).map_err(|_| format!("{host:?} is neither a DNS name nor an IP address"))
}

/// Keying material from a finished TLS connection (RFC 5705 exporter).
pub trait KeyExporter {
    /// Fills `out` with the exporter's output for `label` and `context`.
    fn export(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), String>;
    /// The TLS version negotiated (e.g. `TLSv1_3`), for the trace.
    fn tls_version(&self) -> Option<String> {
        None
    }
    /// The ALPN protocol negotiated, for the trace.
    fn alpn(&self) -> Option<String> {
        None
    }
}

impl<Data> KeyExporter for rustls::ConnectionCommon<Data> {
    fn export(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), String> {
        self.export_keying_material(out, label, Some(context)).map(|_| ()).map_err(|e| e.to_string())
    }
    fn tls_version(&self) -> Option<String> {
        self.protocol_version().map(|v| format!("{v:?}"))
    }
    fn alpn(&self) -> Option<String> {
        self.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned())
    }
}
