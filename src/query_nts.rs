//! NTS key establishment for `ntplab query --nts` and `ntplab bench server
//! --nts-ke`: TLS 1.3, ALPN ntske/1, the certificate checked against
//! `--trusted-certificates` or the system's store; the daemon's KE client
//! ([`ntplab_daemon::nts::client::establish`]) does the exchange and the
//! core's [`ClientSession`] protects requests and judges replies. Only a
//! reply that authenticates under the session's server-to-client key and
//! echoes the request's Unique Identifier counts.

use crate::cli::CliError;
use crate::query::{NtsJson, QueryArgs};
use ntplab_daemon::config::{check_aeads, parse_host_port};
use ntplab_daemon::nts::client::establish as run_ke;
use ntplab_daemon::nts::glue::KE_CLIENT_TIMEOUT;
use ntplab_daemon::nts::ke::{StreamNetwork, TokioStreams, DEFAULT_KE_PORT};
use ntplab_daemon::nts::rustls::crypto::CryptoProvider;
use ntplab_daemon::nts::rustls::ClientConfig;
use ntplab_daemon::nts::server::provider_rng;
use ntplab_daemon::nts::tls;
use ntplab_proto::nts::ntp::{ClientSession, PendingRequest, ResponseKind};
use ntplab_proto::nts::Aead;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The NTS state of one query.
pub struct QueryNts {
    session: ClientSession,
    /// Where NTP goes.
    pub ntp: SocketAddr,
    provider: Arc<CryptoProvider>,
}

impl QueryNts {
    /// The protected form of a plain request.
    pub fn protect(&mut self, header: &[u8]) -> Result<(Vec<u8>, PendingRequest), CliError> {
        self.session
            .build_request(header, &mut provider_rng(&self.provider))
            .map_err(|e| CliError::input(format!("no NTS request: {e}")))
    }

    /// Whether `packet` is an authentic reply to `pending` (time or NTSN);
    /// otherwise why it is set aside.
    pub fn judge(&mut self, pending: &PendingRequest, packet: &[u8]) -> Result<(), String> {
        match self.session.verify_response(pending, packet) {
            Ok(ResponseKind::Time { .. } | ResponseKind::NtsNak) => Ok(()),
            // Unauthenticated, whatever it echoes: anyone on the path could have sent it.
            Ok(ResponseKind::Kiss(code)) => Err(format!("nts: unauthenticated kiss-o'-death {}", String::from_utf8_lossy(&code))),
            Err(e) => Err(format!("nts: {e}")),
        }
    }

    /// Cookies in the jar.
    pub fn cookies_left(&self) -> usize {
        self.session.jar().len()
    }
}

/// An NTS-KE server and what to offer it, checked once; each
/// [`KeTarget::establish`] is one key establishment.
pub struct KeTarget {
    /// The name given (checked against the certificate) and the port.
    pub host: String,
    /// The KE port.
    pub port: u16,
    /// The first address of `host`.
    pub address: SocketAddr,
    aeads: Vec<Aead>,
    config: Arc<ClientConfig>,
    provider: Arc<CryptoProvider>,
}

/// One successful key establishment.
pub struct Established {
    /// The keys and cookies.
    pub session: ClientSession,
    /// Where NTP goes: the negotiated server and port, else the KE server's address, port 123.
    pub ntp: SocketAddr,
    /// What was agreed, for reports.
    pub json: NtsJson,
    /// The session's client-to-server key and the last cookie, in hex as
    /// ntpperf's -S takes them (`C2S,COOKIE`).
    pub ntpperf_session: String,
}

impl KeTarget {
    /// Checks `ke` (HOST[:PORT], given as `flag`), the trusted certificates
    /// (`None`: the system's store) and the AEAD IDs to offer (empty: 15, 30, 17).
    pub async fn new(flag: &str, ke: &str, trusted: Option<&Path>, aead_ids: &[u16]) -> Result<KeTarget, CliError> {
        let (host, port) = parse_host_port(ke, DEFAULT_KE_PORT).map_err(|e| CliError::usage(format!("{flag} {ke:?}: {e}")))?;
        let aeads = check_aeads((!aead_ids.is_empty()).then_some(aead_ids)).map_err(|e| CliError::usage(format!("--aead: {e}")))?;
        let roots = match trusted {
            Some(path) => tls::roots_from_file(path).map_err(CliError::input)?,
            None => tls::system_roots().map_err(CliError::input)?,
        };
        let provider = tls::provider();
        let config = tls::client_config(roots, provider.clone()).map_err(CliError::internal)?;
        let address = *TokioStreams
            .resolve(&host, port)
            .await
            .map_err(|e| CliError::input(format!("NTS-KE server {host}: {e}")))?
            .first()
            .ok_or_else(|| CliError::input(format!("NTS-KE server {host}: no address")))?;
        Ok(KeTarget { host, port, address, aeads, config, provider })
    }

    /// One NTS-KE exchange, within [`KE_CLIENT_TIMEOUT`].
    pub async fn establish(&self) -> Result<Established, CliError> {
        let (host, port) = (&self.host, self.port);
        // RFC 8915 §4.1.7-8: without negotiation, NTP is at the KE server's address, port 123.
        let default_ntp = SocketAddr::new(self.address.ip(), 123);
        let e = run_ke(&TokioStreams, host, port, self.config.clone(), &self.aeads, ntplab_proto::wire::ntske::ProtocolId::NTPV4, default_ntp, KE_CLIENT_TIMEOUT)
            .await
            .map_err(|e| CliError::input(format!("NTS-KE with {host}:{port} failed: {e}")))?;
        let json = NtsJson {
            ke_server: format!("{host}:{port}"),
            aead: e.response.aead.id().0,
            aead_name: e.response.aead.name(),
            ntp_server: e.ntp.to_string(),
            ntp_server_negotiated: e.response.ntp_server.is_some(),
            ntp_port_negotiated: e.response.ntp_port.is_some(),
            cookies: e.response.cookies.len(),
            cookie_len: e.response.cookies.first().map_or(0, Vec::len),
            cookies_left: e.response.cookies.len(),
        };
        let hex = crate::decode::report::hex;
        let ntpperf_session = format!("{},{}", hex(e.keys.c2s.as_bytes()), hex(e.response.cookies.last().map_or(&[][..], Vec::as_slice)));
        Ok(Established { session: ClientSession::new(e.keys, e.response.cookies), ntp: e.ntp, json, ntpperf_session })
    }
}

/// Runs NTS-KE with `ke` (HOST[:PORT]) for `ntplab query --nts`.
pub async fn establish(args: &QueryArgs, ke: &str) -> Result<(QueryNts, NtsJson), CliError> {
    let target = KeTarget::new("--nts", ke, args.trusted_certificates.as_deref(), &args.aeads).await?;
    let e = target.establish().await?;
    if let Some(path) = &args.ntpperf_session {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        file.and_then(|mut f| f.write_all(e.ntpperf_session.as_bytes()))
            .map_err(|err| CliError::input(format!("--ntpperf-session {}: {err}", path.display())))?;
    }
    Ok((QueryNts { session: e.session, ntp: e.ntp, provider: target.provider }, e.json))
}
