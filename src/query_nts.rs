//! `ntplab query --nts`: NTS key establishment (TLS 1.3, ALPN ntske/1, the
//! certificate checked against `--trusted-certificates` or the system's
//! store), then NTS-protected exchanges: each request carries a cookie and
//! is authenticated; only a reply that authenticates under the session's
//! server-to-client key and echoes the request's Unique Identifier counts.

use crate::cli::CliError;
use crate::query::{NtsJson, QueryArgs};
use ntplab_daemon::config::{check_aeads, parse_host_port};
use ntplab_daemon::nts::client::establish as run_ke;
use ntplab_daemon::nts::glue::KE_CLIENT_TIMEOUT;
use ntplab_daemon::nts::ke::{StreamNetwork, TokioStreams, DEFAULT_KE_PORT};
use ntplab_daemon::nts::server::provider_rng;
use ntplab_daemon::nts::tls;
use ntplab_proto::nts::ntp::{ClientSession, PendingRequest, ResponseKind};
use std::net::SocketAddr;
use std::sync::Arc;

/// The NTS state of one query.
pub struct QueryNts {
    session: ClientSession,
    /// Where NTP goes.
    pub ntp: SocketAddr,
    provider: Arc<ntplab_daemon::nts::rustls::crypto::CryptoProvider>,
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

/// Runs NTS-KE with `ke` (HOST[:PORT]).
pub async fn establish(args: &QueryArgs, ke: &str) -> Result<(QueryNts, NtsJson), CliError> {
    let (host, port) = parse_host_port(ke, DEFAULT_KE_PORT).map_err(|e| CliError::usage(format!("--nts {ke:?}: {e}")))?;
    let aeads = check_aeads((!args.aeads.is_empty()).then_some(&args.aeads[..])).map_err(|e| CliError::usage(format!("--aead: {e}")))?;
    let roots = match &args.trusted_certificates {
        Some(path) => tls::roots_from_file(path).map_err(CliError::input)?,
        None => tls::system_roots().map_err(CliError::input)?,
    };
    let provider = tls::provider();
    let config = tls::client_config(roots, provider.clone()).map_err(CliError::internal)?;
    let ke_addr = *TokioStreams
        .resolve(&host, port)
        .await
        .map_err(|e| CliError::input(format!("NTS-KE server {host}: {e}")))?
        .first()
        .ok_or_else(|| CliError::input(format!("NTS-KE server {host}: no address")))?;
    // RFC 8915 §4.1.7-8: without negotiation, NTP is at the KE server's address, port 123.
    let default_ntp = SocketAddr::new(ke_addr.ip(), 123);
    let e = run_ke(&TokioStreams, &host, port, config, &aeads, default_ntp, KE_CLIENT_TIMEOUT)
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
    let session = ClientSession::new(e.keys, e.response.cookies);
    Ok((QueryNts { session, ntp: e.ntp, provider }, json))
}
