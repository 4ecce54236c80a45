//! The client side of NTS-KE in the daemon and `ntplab query --nts`: one
//! TLS exchange that runs the core's [`KeClient`], exports the session keys
//! and says where to send NTP.

use super::ke::{connect_and_exchange, ExchangeError, StreamNetwork};
use super::server::export_keys;
use ntplab_proto::nts::ke::KE_MAX_RESPONSE_LEN;
use ntplab_proto::nts::{summarize_records, Aead, KeClient, KeClientConfig, KeClientStep, KeError, KeResponse, RecordSummary, SessionKeys};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A successful key establishment.
#[derive(Debug)]
pub struct Established {
    /// What the server agreed to: AEAD, cookies, NTP server and port.
    pub response: KeResponse,
    /// The two session keys (their `Debug` shows lengths only).
    pub keys: SessionKeys,
    /// Where to send NTP: the negotiated server and port, or the defaults.
    pub ntp: SocketAddr,
    /// What was said, without key material, for the trace.
    pub transcript: KeTranscript,
}

/// One NTS-KE exchange as a trace shows it: the records each way (lists and
/// names, never cookie or key octets), the TLS version and the ALPN protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeTranscript {
    /// The records of the request sent.
    pub request: Vec<RecordSummary>,
    /// The records of the response received.
    pub response: Vec<RecordSummary>,
    /// TLS version negotiated (rustls's name, e.g. `TLSv1_3`).
    pub tls_version: Option<String>,
    /// ALPN protocol negotiated.
    pub alpn: Option<String>,
}

/// Why key establishment failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeFailure {
    /// TCP, TLS, timeout or framing.
    Exchange(ExchangeError),
    /// The server's records broke a rule, or it refused (Error record, no common AEAD, ...).
    Protocol(KeError),
    /// The keys could not be exported.
    Export(String),
    /// The negotiated NTP server could not be resolved to an address of the right family.
    Resolve(String),
}

impl std::fmt::Display for KeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeFailure::Exchange(e) => write!(f, "NTS-KE: {e}"),
            KeFailure::Protocol(e) => write!(f, "NTS-KE refused or broken: {e}"),
            KeFailure::Export(e) => write!(f, "NTS-KE key export failed: {e}"),
            KeFailure::Resolve(e) => write!(f, "NTS-KE: {e}"),
        }
    }
}

impl std::error::Error for KeFailure {}

/// Runs NTS-KE with `host:port` asking for `protocol` (NTPv4 or NTPv5) and
/// offering `aeads`, within `timeout`. The NTP
/// server is the one the server names (resolved over `net`, an address of
/// `default_ntp`'s family preferred), else `default_ntp`'s address; the port
/// the one it names, else `default_ntp`'s port.
#[allow(clippy::too_many_arguments)]
pub async fn establish<N: StreamNetwork>(
    net: &N,
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    aeads: &[Aead],
    protocol: ntplab_proto::wire::ntske::ProtocolId,
    default_ntp: SocketAddr,
    timeout: Duration,
) -> Result<Established, KeFailure> {
    let mut client = KeClient::new(KeClientConfig { aeads: aeads.to_vec(), protocol, ..KeClientConfig::default() });
    let request = client.request();
    let outcome = connect_and_exchange(net, host, port, config, &request, KE_MAX_RESPONSE_LEN, timeout, |response, exporter| {
        let transcript = KeTranscript {
            request: summarize_records(&request),
            response: summarize_records(response),
            tls_version: exporter.tls_version(),
            alpn: exporter.alpn(),
        };
        let step = client.receive(response);
        let response = match step {
            KeClientStep::Done(Ok(r)) => r,
            KeClientStep::Done(Err(e)) => return Err(KeFailure::Protocol(e)),
            // The exchange hands over a whole message: the client cannot want more.
            KeClientStep::NeedMore | KeClientStep::Finished => return Err(KeFailure::Protocol(KeError::Truncated)),
        };
        let keys = export_keys(exporter, response.protocol, response.aead).map_err(KeFailure::Export)?;
        Ok((response, keys, transcript))
    })
    .await
    .map_err(KeFailure::Exchange)?;
    let (response, keys, transcript) = outcome?;
    let ntp_port = response.ntp_port.unwrap_or(default_ntp.port());
    let ntp = match &response.ntp_server {
        None => SocketAddr::new(default_ntp.ip(), ntp_port),
        Some(name) => {
            let found = net
                .resolve(name, ntp_port)
                .await
                .map_err(|e| KeFailure::Resolve(format!("NTP server {name:?}: {e}")))?;
            found
                .iter()
                .find(|a| a.is_ipv4() == default_ntp.is_ipv4())
                .or(found.first())
                .copied()
                .ok_or_else(|| KeFailure::Resolve(format!("NTP server {name:?}: no address")))?
        }
    };
    Ok(Established { response, keys, ntp, transcript })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::wire::ntske::AeadId;

    // An operator reads this in logs and in `ntplab query`'s error: it must
    // say what the server did (ntpsec 1.2.2 answers an offer of AEAD 30
    // alone with 15), not print the enum.
    #[test]
    fn a_refused_key_establishment_reads_as_a_sentence() {
        let e = KeFailure::Protocol(KeError::UnexpectedAead(AeadId(15)));
        assert_eq!(e.to_string(), "NTS-KE refused or broken: server chose AEAD 15, which was not offered");
        let e = KeFailure::Protocol(KeError::NoCommonAead);
        assert_eq!(e.to_string(), "NTS-KE refused or broken: server supports none of the offered AEAD algorithms");
    }
}
