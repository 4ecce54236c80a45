//! What the daemon loop does for NTS, kept out of the loop itself:
//! - [`NtsRuntime`]: the streams, the crypto provider and the server state;
//! - [`NtsSource`]: a source's key establishment (a local task, retried with
//!   back-off), its cookie jar and session, protecting requests and judging
//!   replies. An unauthenticated or forged reply is nothing: dropped unseen.
//!
//! An NTS NAK (an NTSN kiss-o'-death echoing one of our Unique
//! Identifiers) is unauthenticated: anyone who saw the request can forge
//! one (RFC 8915 §8.7). So it destroys nothing. The source keeps its keys,
//! its cookies and the request it answers (whose authentic reply still
//! counts), and waits until its next poll for authentic time; only if none
//! came by then does NTS-KE start (RFC 8915 §5.7), and until NTS-KE
//! succeeds the source keeps polling with the cookies it has. A successful
//! NTS-KE replaces every old cookie and the keys.

use super::client::{establish, Established, KeFailure};
use super::ke::{self, SessionEnd, StreamNetwork};
use super::server::{provider_rng, NtsServerShared};
use super::tls;
use crate::config::{NtsServerSpec, NtsSourceSpec};
use ntplab_proto::nts::ntp::{ClientSession, PendingRequest, ResponseKind};
use ntplab_proto::wire::ntske::ProtocolId;
use rustls::crypto::CryptoProvider;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Time allowed for one client key establishment (connect, TLS, KE).
pub const KE_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// First interval between a failed key establishment's start and the next
/// one's: RFC 8915 §4.2's initial and minimum retry interval. It doubles
/// with every further failure up to [`KE_RETRY_MAX`] (the RFC's base is 1.5:
/// doubling keeps every interval at or above the RFC's), and it is reset
/// only by authentic time from the NTP server (§4.2: not by a successful
/// key establishment alone). A successful key establishment counts as a
/// failure until authentic time follows it: if the source needs keys again
/// before that (cookies spent, or an NTSN unanswered by the next poll), the
/// next attempt waits as after a failure.
pub const KE_RETRY_MIN: Duration = Duration::from_secs(10);
/// Longest interval between key establishment attempts: RFC 8915 §4.2's
/// suggested maximum, 5 days (reached after 16 failures in a row, some 7.5
/// days after the first).
pub const KE_RETRY_MAX: Duration = Duration::from_secs(5 * 86_400);

/// The back-off after `n` earlier failures: [`KE_RETRY_MIN`] × 2^`n`, at most [`KE_RETRY_MAX`].
pub fn ke_retry_interval(n: u32) -> Duration {
    KE_RETRY_MIN.saturating_mul(1 << n.min(20)).min(KE_RETRY_MAX)
}

/// TCP and TLS for NTS: the stream network and the crypto provider.
#[derive(Clone)]
pub struct NtsRuntime<T> {
    /// TCP.
    pub streams: T,
    /// rustls' crypto, and the random source for keys, nonces and cookies.
    pub provider: Arc<CryptoProvider>,
    /// The clock certificates are judged by; `None`: the system's (a simulation gives its own).
    pub time: Option<Arc<dyn rustls::time_provider::TimeProvider>>,
}

impl<T> std::fmt::Debug for NtsRuntime<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtsRuntime").finish_non_exhaustive()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl<T: StreamNetwork + Clone + 'static> NtsRuntime<T> {
    /// Starts the NTS-KE listeners of `spec` as local tasks (pushed on
    /// `tasks`); returns the state the NTP server shares with them.
    pub async fn start_server(
        &self,
        spec: &NtsServerSpec,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> io::Result<Arc<NtsServerShared>> {
        let identity = match &spec.identity {
            Some(identity) => identity.clone(),
            None => tls::ServerIdentity::load(&spec.certificate, &spec.key).map_err(|(_, e)| invalid(format!("[nts] {e}")))?,
        };
        let config = identity.server_config(self.provider.clone()).map_err(|e| invalid(format!("[nts] {e}")))?;
        let start = tokio::time::Instant::now();
        let shared = NtsServerShared::new(spec, self.provider.clone(), Arc::new(move || start.elapsed().as_secs()));
        for addr in &spec.ke_listen {
            let listener = self
                .streams
                .listen(*addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for NTS-KE on {addr}: {e}")))?;
            tracing::info!(%addr, "NTS-KE listening");
            tasks.push(tokio::task::spawn_local(ke::serve(
                listener,
                config.clone(),
                spec.limits,
                Rc::new(shared.clone()),
                Rc::new(log_session_end),
                std::future::pending(),
            )));
        }
        Ok(shared)
    }

    /// The TLS client configuration of an NTS source: its trust anchors, or the system's.
    pub fn client_config(&self, spec: &NtsSourceSpec) -> io::Result<Arc<rustls::ClientConfig>> {
        let roots = match (&spec.roots, &spec.trusted_certificates) {
            (Some(roots), _) => (**roots).clone(),
            (None, Some(path)) => tls::roots_from_file(path).map_err(invalid)?,
            (None, None) => tls::system_roots().map_err(invalid)?,
        };
        tls::client_config_at(roots, self.provider.clone(), self.time.clone()).map_err(invalid)
    }
}

fn log_session_end(from: SocketAddr, end: &SessionEnd) {
    match end {
        SessionEnd::Answered { note, .. } => tracing::debug!(client = %from, note, "NTS-KE answered"),
        other => tracing::debug!(client = %from, end = ?other, "NTS-KE session ended"),
    }
}

/// A finished key establishment, handed from its task to the loop.
#[derive(Debug)]
pub struct KeDone {
    /// The source's index in the configuration.
    pub index: usize,
    /// What came of it.
    pub result: Result<Established, KeFailure>,
}

/// One NTS source's state in the loop.
pub struct NtsSource {
    spec: NtsSourceSpec,
    config: Arc<rustls::ClientConfig>,
    /// Where NTP goes when the KE server names no server or port.
    default_ntp: SocketAddr,
    session: Option<ClientSession>,
    pending: Vec<PendingRequest>,
    running: bool,
    /// When the running (or last) key establishment started: the back-off counts from there.
    started: Option<tokio::time::Instant>,
    /// Key establishments since the last authentic time: the failed ones,
    /// and the successful ones that the source needed keys again after
    /// without authentic time in between.
    failures: u32,
    /// The last key establishment succeeded and no authentic time came
    /// since: should the source need keys again, it counts as a failure.
    unproven: bool,
    /// DENY/RSTR disassociations since the last authentic time.
    disassociations: u32,
    /// An NTSN came for one of our requests and no authentic time since:
    /// NTS-KE starts at the next poll (RFC 8915 §5.7).
    nak_unanswered: bool,
    /// A poll wanted NTS-KE while the source still had cookies (after an
    /// NTSN) and the back-off held it: it starts when the back-off ends.
    deferred: bool,
    /// When the next key establishment may start (none: at once).
    retry_at: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for NtsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtsSource")
            .field("ke", &format_args!("{}:{}", self.spec.ke_host, self.spec.ke_port))
            .field("keyed", &self.session.is_some())
            .field("cookies", &self.session.as_ref().map(|s| s.jar().len()))
            .finish_non_exhaustive()
    }
}

/// Requests whose replies are still awaited (a late reply to an earlier one is still good).
const PENDING_MAX: usize = 8;

impl NtsSource {
    /// A source that has not run NTS-KE yet.
    pub fn new(spec: NtsSourceSpec, config: Arc<rustls::ClientConfig>, default_ntp: SocketAddr) -> NtsSource {
        NtsSource {
            spec,
            config,
            default_ntp,
            session: None,
            pending: Vec::new(),
            running: false,
            started: None,
            failures: 0,
            unproven: false,
            disassociations: 0,
            nak_unanswered: false,
            deferred: false,
            retry_at: None,
        }
    }

    /// Starts key establishment as a local task unless one runs or a retry
    /// is not due yet; its result arrives on `done`. One held by the
    /// back-off starts when the back-off ends ([`NtsSource::retry_due`]).
    pub fn start_ke<T: StreamNetwork + Clone + 'static>(
        &mut self,
        index: usize,
        runtime: &NtsRuntime<T>,
        done: &mpsc::Sender<KeDone>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.running {
            return None;
        }
        self.settle();
        if self.retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            self.deferred = true;
            return None;
        }
        self.running = true;
        self.deferred = false;
        self.started = Some(tokio::time::Instant::now());
        let streams = runtime.streams.clone();
        let (host, port, config, aeads, default_ntp) =
            (self.spec.ke_host.clone(), self.spec.ke_port, self.config.clone(), self.spec.aeads.clone(), self.default_ntp);
        let protocol = if self.spec.ntpv5 { ProtocolId::NTPV5_DRAFT } else { ProtocolId::NTPV4 };
        let done = done.clone();
        Some(tokio::task::spawn_local(async move {
            let result = establish(&streams, &host, port, config, &aeads, protocol, default_ntp, KE_CLIENT_TIMEOUT).await;
            let _ = done.send(KeDone { index, result }).await;
        }))
    }

    /// Takes a finished key establishment; returns the NTP address to use
    /// when it succeeded.
    pub fn ke_done(&mut self, result: Result<Established, KeFailure>) -> Result<SocketAddr, KeFailure> {
        self.running = false;
        match result {
            Ok(e) => {
                // Not a success for the back-off until authentic time follows
                // (RFC 8915 §4.2): should the source need keys again before
                // that, the next attempt waits as after a failure
                // ([`NtsSource::settle`]), so a server whose NTP side NAKs
                // every request is not asked for keys at every poll.
                self.retry_at = None;
                self.unproven = true;
                self.pending.clear();
                // New keys and cookies: whatever an NTSN said of the old ones is moot.
                self.nak_unanswered = false;
                match &mut self.session {
                    Some(s) => s.rekey(e.keys, e.response.cookies),
                    None => self.session = Some(ClientSession::new(e.keys, e.response.cookies)),
                }
                Ok(e.ntp)
            }
            Err(e) => {
                // From the failed attempt's start, as RFC 8915 §4.2's retry
                // interval is between attempts: a KE that timed out after
                // 10 s waited that long already. The loop starts the next
                // attempt when this passes ([`NtsSource::retry_due`]).
                self.back_off();
                Err(e)
            }
        }
    }

    /// The source needs keys again: if the last key establishment succeeded
    /// and no authentic time followed, it counts as a failure now (RFC 8915
    /// §4.2: the interval is not reset before a successful key establishment
    /// has been followed by a successful use of the Next Protocol).
    fn settle(&mut self) {
        if std::mem::take(&mut self.unproven) {
            self.back_off();
        }
    }

    /// The next attempt may start [`ke_retry_interval`]`(failures)` after
    /// the last one started; the count goes up.
    fn back_off(&mut self) {
        let wait = ke_retry_interval(self.failures);
        self.failures += 1;
        self.retry_at = Some(self.started.unwrap_or_else(tokio::time::Instant::now) + wait);
    }

    /// When the loop should start key establishment on its own: the source
    /// has no keys to use (or a poll wanted NTS-KE and the back-off held
    /// it), none runs, and a back-off (after a failure, a successful
    /// attempt that no authentic time followed, or a forced disassociation)
    /// ends then. `None`: nothing to do (keyed, or running, or waiting for
    /// its next poll to need keys).
    pub fn retry_due(&self) -> Option<tokio::time::Instant> {
        if self.running || (self.keyed() && !self.deferred) {
            return None;
        }
        self.retry_at
    }

    /// Whether a poll of this source, now due, should start NTS-KE (the
    /// loop then calls [`NtsSource::start_ke`], which keeps to the back-off):
    /// there is no session or no cookie left, or an NTSN came for one of
    /// our requests and no authentic time has come since, by this poll
    /// (RFC 8915 §5.7). In the latter case the poll still sends its request
    /// with the cookies the source has.
    pub fn ke_wanted_at_poll(&self) -> bool {
        !self.keyed() || self.nak_unanswered
    }

    /// Whether an NTSN came for one of our requests and no authentic time since.
    pub fn nak_unanswered(&self) -> bool {
        self.nak_unanswered
    }

    /// Whether a session with cookies is ready.
    pub fn keyed(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.jar().is_empty())
    }

    /// Cookies in the jar.
    pub fn cookies(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.jar().len())
    }

    /// The protected form of the plain request `header` (48 octets), or
    /// `None` when there is no session or no cookie left (NTS-KE must run).
    pub fn protect(&mut self, header: &[u8], provider: &CryptoProvider) -> Option<Vec<u8>> {
        let session = self.session.as_mut()?;
        let (request, pending) = session.build_request(header, &mut provider_rng(provider)).ok()?;
        if self.pending.len() == PENDING_MAX {
            self.pending.remove(0);
        }
        self.pending.push(pending);
        Some(request)
    }

    /// Judges a reply. `None`: not authentic or not ours (drop it: it is
    /// nothing). An NTSN for one of its requests is [`Judgement::Nak`]: it
    /// is unauthenticated, so it changes nothing but a mark that makes the
    /// next poll start NTS-KE unless authentic time comes first; the
    /// session, its cookies and the pending request stay (RFC 8915 §5.7).
    /// A kiss-o'-death that echoes the Unique Identifier of an outstanding
    /// request is [`Judgement::Kiss`]: RFC 8915 §5.7 says the client then
    /// complies with RFC 5905 §7.4 (RATE backs off, DENY and RSTR end the
    /// association; see [`NtsSource::disassociate`]). Any other reply
    /// without a valid authenticator is nothing.
    pub fn judge(&mut self, packet: &[u8]) -> Option<Judgement> {
        let session = self.session.as_mut()?;
        let mut last_error = None;
        for i in (0..self.pending.len()).rev() {
            match session.verify_response(&self.pending[i], packet) {
                Ok(ResponseKind::Time { .. }) => {
                    self.pending.remove(i);
                    // Key establishment and its Next Protocol both worked:
                    // the back-offs start afresh (RFC 8915 §4.2, §5.7).
                    self.disassociations = 0;
                    self.failures = 0;
                    self.unproven = false;
                    self.retry_at = None;
                    self.deferred = false;
                    self.nak_unanswered = false;
                    return Some(Judgement::Time);
                }
                Ok(ResponseKind::Kiss(code)) => {
                    self.pending.remove(i);
                    tracing::debug!(ke = %self.spec.ke_host, code = %String::from_utf8_lossy(&code), "kiss-o'-death echoing our identifier");
                    return Some(Judgement::Kiss);
                }
                Ok(ResponseKind::NtsNak) => {
                    // Kept pending: a forged NTSN raced ahead of the server's
                    // reply must not make that reply unacceptable.
                    tracing::debug!(ke = %self.spec.ke_host, "NTSN echoing our identifier: NTS-KE at the next poll unless authentic time comes first");
                    self.nak_unanswered = true;
                    return Some(Judgement::Nak);
                }
                Err(e) => last_error = Some(e),
            }
        }
        tracing::debug!(ke = %self.spec.ke_host, error = ?last_error, "NTS reply discarded");
        None
    }

    /// A DENY or RSTR ended the association (RFC 5905 §7.4): the keys and
    /// cookies go, and NTS-KE may run again (RFC 8915 §5.7 allows it after a
    /// forced disassociation) only after a wait that doubles with every
    /// disassociation not followed by authentic time, from [`KE_RETRY_MIN`]
    /// up to [`KE_RETRY_MAX`], so the client never loops quickly between the
    /// KE and NTP servers. A key establishment's own back-off (no authentic
    /// time followed it) is kept if it ends later. Returns the wait.
    pub fn disassociate(&mut self) -> Duration {
        self.session = None;
        self.pending.clear();
        self.nak_unanswered = false;
        self.settle();
        let now = tokio::time::Instant::now();
        let wait = ke_retry_interval(self.disassociations);
        self.disassociations += 1;
        let at = self.retry_at.map_or(now + wait, |t| t.max(now + wait));
        self.retry_at = Some(at);
        at - now
    }
}

/// What an NTS source makes of a reply that is its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Authentic time: a sample candidate.
    Time,
    /// An NTSN for one of its requests: nothing is dropped; the next poll
    /// starts NTS-KE unless authentic time comes first (RFC 8915 §5.7).
    Nak,
    /// A kiss-o'-death (not NTSN) echoing an outstanding request's Unique
    /// Identifier: the source's kiss-code rules apply to it.
    Kiss,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::nts::ntp::{process_request, NtsRequest};
    use ntplab_proto::nts::{Aead, KeResponse, MasterKeyConfig, MasterKeys, SeededRng, SessionKeys};
    use ntplab_proto::wire::ntske::ProtocolId;

    fn header(mode: u8, transmit: u8) -> [u8; 48] {
        let mut h = [0u8; 48];
        h[0] = (4 << 3) | mode;
        // Stratum 1 in replies: stratum 0 would make them kiss-o'-deaths.
        h[1] = u8::from(mode == 4);
        h[2] = 6;
        h[40..48].fill(transmit);
        h
    }

    #[test]
    fn only_authentic_replies_count_and_an_ntsn_marks_the_session() {
        let provider = tls::provider();
        let mut rng = provider_rng(&provider);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let cookies: Vec<Vec<u8>> = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
        let addr: SocketAddr = "127.0.0.1:123".parse().unwrap();
        let spec = NtsSourceSpec { ke_host: "localhost".into(), ke_port: 4460, trusted_certificates: None, roots: None, aeads: Aead::ALL.to_vec(), ntpv5: false };
        let config = tls::client_config(rustls::RootCertStore::empty(), provider.clone()).unwrap();
        let mut source = NtsSource::new(spec, config, addr);
        assert!(!source.keyed());
        assert!(source.protect(&header(3, 1), &provider).is_none(), "no plain request without keys");
        let response = KeResponse { protocol: ProtocolId::NTPV4, aead: Aead::AesSivCmac256, cookies, ntp_server: None, ntp_port: None };
        assert_eq!(source.ke_done(Ok(Established { response, keys, ntp: addr, transcript: Default::default() })), Ok(addr));
        assert_eq!((source.keyed(), source.cookies()), (true, 8));
        // Debug output names no key.
        assert!(!format!("{source:?}").contains("c2s"), "{source:?}");

        let request = source.protect(&header(3, 1), &provider).unwrap();
        assert_eq!(source.cookies(), 7, "each request spends one cookie");
        let NtsRequest::Protected(protected) = process_request(&master, &request) else { panic!("the server cannot read it") };
        let mut reply = vec![0u8; 2048];
        reply[..48].copy_from_slice(&header(4, 2));
        let len = protected.seal_reply(&mut reply, &master, &mut rng).unwrap();
        assert!(len <= request.len(), "a reply is never longer than its request");
        // A plain reply, or the real one with one header bit changed, is nothing.
        assert_eq!(source.judge(&reply[..48]), None);
        let mut forged = reply[..len].to_vec();
        forged[47] ^= 1;
        assert_eq!(source.judge(&forged), None);
        // The real one is time, and brings a cookie back.
        assert_eq!(source.judge(&reply[..len]), Some(Judgement::Time));
        assert_eq!(source.cookies(), 8);
        // Its replay answers no pending request: nothing.
        assert_eq!(source.judge(&reply[..len]), None);

        // A server that cannot open the cookie (its keys rotated away) answers NTSN.
        let request = source.protect(&header(3, 3), &provider).unwrap();
        let other = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let NtsRequest::Nak(nak) = process_request(&other, &request) else { panic!("expected a NAK") };
        let mut out = vec![0u8; 2048];
        let n = nak.write(-20, &mut out).unwrap();
        // The same kiss-o'-death saying DENY instead echoes our identifier:
        // a kiss for the source's rules (RFC 8915 §5.7), and it answers that
        // request, so it cannot be played twice.
        let mut deny = out[..n].to_vec();
        deny[12..16].copy_from_slice(b"DENY");
        assert_eq!(source.judge(&deny), Some(Judgement::Kiss));
        assert_eq!(source.judge(&deny), None);
        assert!(source.keyed());
        // A DENY naming no request of ours is nothing.
        let mut stranger = deny.clone();
        stranger[48 + 4] ^= 0xff;
        let request = source.protect(&header(3, 4), &provider).unwrap();
        let NtsRequest::Nak(nak) = process_request(&other, &request) else { panic!("expected a NAK") };
        let n = nak.write(-20, &mut out).unwrap();
        assert_eq!(source.judge(&stranger), None);
        assert!(!source.ke_wanted_at_poll());
        assert_eq!(source.judge(&out[..n]), Some(Judgement::Nak));
        assert!(source.keyed(), "NTSN: unauthenticated, so the session stays");
        assert!(source.ke_wanted_at_poll(), "NTSN: NTS-KE at the next poll unless authentic time comes");
    }

    /// A source keyed with 8 cookies of the server's `master`, and a
    /// seeded random source for the rest.
    fn keyed_source() -> (Arc<CryptoProvider>, SeededRng, MasterKeys, NtsSource) {
        let provider = tls::provider();
        let mut rng = SeededRng::new(27);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let mut source = unkeyed_source(&provider);
        assert_eq!(source.ke_done(Ok(established(&master, &keys, &mut rng))), Ok("127.0.0.1:123".parse().unwrap()));
        (provider, rng, master, source)
    }

    /// A source for localhost that has not run NTS-KE.
    fn unkeyed_source(provider: &Arc<CryptoProvider>) -> NtsSource {
        let spec = NtsSourceSpec { ke_host: "localhost".into(), ke_port: 4460, trusted_certificates: None, roots: None, aeads: Aead::ALL.to_vec(), ntpv5: false };
        let config = tls::client_config(rustls::RootCertStore::empty(), provider.clone()).unwrap();
        NtsSource::new(spec, config, "127.0.0.1:123".parse().unwrap())
    }

    fn established(master: &MasterKeys, keys: &SessionKeys, rng: &mut dyn ntplab_proto::nts::NtsRng) -> Established {
        let cookies: Vec<Vec<u8>> = (0..8).map(|_| master.seal(keys, &mut *rng)).collect();
        let response = KeResponse { protocol: ProtocolId::NTPV4, aead: Aead::AesSivCmac256, cookies, ntp_server: None, ntp_port: None };
        Established { response, keys: keys.clone(), ntp: "127.0.0.1:123".parse().unwrap(), transcript: Default::default() }
    }

    /// The NTSN anyone who saw `request` can send: its identifier echoed, no authenticator.
    fn forged_ntsn(request: &[u8], rng: &mut dyn ntplab_proto::nts::NtsRng) -> Vec<u8> {
        let stranger = MasterKeys::new(MasterKeyConfig::default(), 0, rng);
        let NtsRequest::Nak(nak) = process_request(&stranger, request) else { panic!("expected a NAK") };
        let mut out = vec![0u8; 2048];
        let n = nak.write(-20, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// The server's authentic reply to `request`.
    fn authentic_reply(master: &MasterKeys, request: &[u8], rng: &mut dyn ntplab_proto::nts::NtsRng) -> Vec<u8> {
        let NtsRequest::Protected(protected) = process_request(master, request) else { panic!("the server cannot read it") };
        let mut reply = vec![0u8; 2048];
        reply[..48].copy_from_slice(&header(4, 2));
        let len = protected.seal_reply(&mut reply, master, rng).unwrap();
        reply.truncate(len);
        reply
    }

    #[test]
    fn a_spoofed_ntsn_then_the_authentic_reply_keeps_session_and_cookies() {
        let (provider, mut rng, master, mut source) = keyed_source();
        let request = source.protect(&header(3, 1), &provider).unwrap();
        assert_eq!(source.cookies(), 7);
        // An attacker who saw the request races the server with an NTSN.
        let ntsn = forged_ntsn(&request, &mut rng);
        assert_eq!(source.judge(&ntsn), Some(Judgement::Nak));
        assert_eq!((source.keyed(), source.cookies(), source.nak_unanswered()), (true, 7, true), "nothing discarded");
        // A replay of it changes nothing more.
        assert_eq!(source.judge(&ntsn), Some(Judgement::Nak));
        assert_eq!(source.cookies(), 7);
        // The server's reply to the same request still counts, and answers the NTSN.
        let reply = authentic_reply(&master, &request, &mut rng);
        assert_eq!(source.judge(&reply), Some(Judgement::Time));
        assert_eq!((source.cookies(), source.nak_unanswered(), source.ke_wanted_at_poll()), (8, false, false));
        // The old cookies and keys still work at the next poll.
        let request = source.protect(&header(3, 3), &provider).unwrap();
        let reply = authentic_reply(&master, &request, &mut rng);
        assert_eq!(source.judge(&reply), Some(Judgement::Time));
        assert_eq!(source.cookies(), 8);
    }

    #[test]
    fn an_ntsn_then_authentic_time_from_a_later_request_keeps_the_session() {
        let (provider, mut rng, master, mut source) = keyed_source();
        let first = source.protect(&header(3, 1), &provider).unwrap();
        assert_eq!(source.judge(&forged_ntsn(&first, &mut rng)), Some(Judgement::Nak));
        // A burst's next request goes out with the old cookies, and its reply is authentic.
        let second = source.protect(&header(3, 2), &provider).unwrap();
        assert_eq!(source.cookies(), 6);
        assert_eq!(source.judge(&authentic_reply(&master, &second, &mut rng)), Some(Judgement::Time));
        assert!(!source.ke_wanted_at_poll(), "authentic time came before the next poll: no NTS-KE");
        assert_eq!(source.cookies(), 8, "the old session refills its jar");
    }

    #[test]
    fn an_ntsn_unanswered_by_the_next_poll_starts_nts_ke_and_polling_goes_on() {
        let (provider, mut rng, master, mut source) = keyed_source();
        let runtime = NtsRuntime { streams: ke::NoStreams, provider: provider.clone(), time: None };
        let (tx, mut rx) = mpsc::channel(4);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            // Keyed and no NTSN: a poll does not run NTS-KE.
            assert!(!source.ke_wanted_at_poll());
            // The session gave authentic time, so the next NTS-KE needs no wait.
            let request = source.protect(&header(3, 0), &provider).unwrap();
            assert_eq!(source.judge(&authentic_reply(&master, &request, &mut rng)), Some(Judgement::Time));
            let request = source.protect(&header(3, 1), &provider).unwrap();
            // The server lost its cookie key: a genuine NTSN; nothing authentic follows.
            let rotated = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
            let NtsRequest::Nak(nak) = process_request(&rotated, &request) else { panic!("expected a NAK") };
            let mut out = vec![0u8; 2048];
            let n = nak.write(-20, &mut out).unwrap();
            assert_eq!(source.judge(&out[..n]), Some(Judgement::Nak));
            // The next poll: NTS-KE starts, and the poll's request still goes out with an old cookie.
            assert!(source.ke_wanted_at_poll());
            let task = source.start_ke(0, &runtime, &tx).expect("NTS-KE starts at the next poll");
            assert!(source.start_ke(0, &runtime, &tx).is_none(), "one at a time");
            assert!(source.protect(&header(3, 2), &provider).is_some(), "polling goes on until NTS-KE succeeds");
            assert_eq!(source.cookies(), 6);
            task.await.unwrap();
            // This NTS-KE fails (no TCP here): the old cookies stay, the mark
            // too, and the next attempt waits for the back-off.
            let done = rx.recv().await.unwrap();
            assert!(source.ke_done(done.result).is_err());
            assert_eq!((source.keyed(), source.cookies()), (true, 6));
            assert!(source.ke_wanted_at_poll());
            assert!(source.start_ke(0, &runtime, &tx).is_none(), "back-off");
        });
        // A successful NTS-KE replaces every old cookie and the keys.
        let fresh_master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let fresh_keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        assert!(source.ke_done(Ok(established(&fresh_master, &fresh_keys, &mut rng))).is_ok());
        assert_eq!((source.cookies(), source.ke_wanted_at_poll()), (8, false));
        let request = source.protect(&header(3, 3), &provider).unwrap();
        assert!(matches!(process_request(&master, &request), NtsRequest::Nak(_)), "no old cookie is used");
        assert_eq!(source.judge(&authentic_reply(&fresh_master, &request, &mut rng)), Some(Judgement::Time));
    }

    /// `secs` one-second polls of `source`, as the loop makes them, against
    /// an NTP server that cannot open the cookies (its keys are not its KE
    /// server's `master`) and answers every request with a genuine NTSN,
    /// while NTS-KE always succeeds. A poll starts NTS-KE when it wants it
    /// (an NTSN unanswered by this poll) and the back-off allows; one the
    /// back-off held starts when it ends ([`NtsSource::retry_due`]). Returns
    /// when attempts started, seconds from the first poll.
    async fn poll_a_naking_server(source: &mut NtsSource, master: &MasterKeys, rng: &mut SeededRng, secs: u32) -> Vec<f64> {
        let provider = tls::provider();
        let runtime = NtsRuntime { streams: ke::NoStreams, provider: provider.clone(), time: None };
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let origin = tokio::time::Instant::now();
        let mut starts = Vec::new();
        for t in 0..secs {
            let now = tokio::time::Instant::now();
            if source.retry_due().is_some_and(|at| at <= now) || source.ke_wanted_at_poll() {
                if let Some(task) = source.start_ke(0, &runtime, &tx) {
                    // Its own (TCP-less) result is not used: this NTS-KE succeeds.
                    task.abort();
                    starts.push((now - origin).as_secs_f64());
                    let keys = SessionKeys::random(Aead::AesSivCmac256, &mut *rng);
                    assert!(source.ke_done(Ok(established(master, &keys, &mut *rng))).is_ok());
                }
            }
            if let Some(request) = source.protect(&header(3, t as u8), &provider) {
                let stranger = MasterKeys::new(MasterKeyConfig::default(), 0, &mut *rng);
                let NtsRequest::Nak(nak) = process_request(&stranger, &request) else { panic!("expected a NAK") };
                let mut out = vec![0u8; 2048];
                let n = nak.write(-20, &mut out).unwrap();
                assert_eq!(source.judge(&out[..n]), Some(Judgement::Nak));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        starts
    }

    #[test]
    fn a_server_that_naks_every_request_gets_nts_ke_on_the_failure_back_off_not_at_every_poll() {
        let (provider, mut rng, master, _) = keyed_source();
        let mut source = unkeyed_source(&provider);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            // The first poll has no keys: NTS-KE at 0 s. Its session gives
            // no authentic time, so when the NTSN's next poll (1 s) wants
            // keys again it counts as failed: the retry waits 10 s from its
            // start, the next 20 s, and so on (before 2026-12-05: every
            // other poll, at 1, 2, 3 … s here).
            let starts = poll_a_naking_server(&mut source, &master, &mut rng, 635).await;
            assert_eq!(starts, vec![0.0, 10.0, 30.0, 70.0, 150.0, 310.0, 630.0]);
            // Authentic time resets the count: the next NTSN's next poll
            // re-keys at once, and the one after that waits 10 s again.
            let request = source.protect(&header(3, 1), &provider).unwrap();
            assert_eq!(source.judge(&authentic_reply(&master, &request, &mut rng)), Some(Judgement::Time));
            let starts = poll_a_naking_server(&mut source, &master, &mut rng, 40).await;
            assert_eq!(starts, vec![1.0, 11.0, 31.0]);
        });
    }

    #[test]
    fn forced_disassociations_drop_the_keys_and_back_off() {
        let provider = tls::provider();
        let mut rng = provider_rng(&provider);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let spec = NtsSourceSpec { ke_host: "localhost".into(), ke_port: 4460, trusted_certificates: None, roots: None, aeads: Aead::ALL.to_vec(), ntpv5: false };
        let config = tls::client_config(rustls::RootCertStore::empty(), provider.clone()).unwrap();
        let addr: SocketAddr = "127.0.0.1:123".parse().unwrap();
        let mut source = NtsSource::new(spec, config, addr);
        let established = |keys: &SessionKeys, rng: &mut dyn ntplab_proto::nts::NtsRng| {
            let cookies: Vec<Vec<u8>> = (0..8).map(|_| master.seal(keys, &mut *rng)).collect();
            let response = KeResponse { protocol: ProtocolId::NTPV4, aead: Aead::AesSivCmac256, cookies, ntp_server: None, ntp_port: None };
            Established { response, keys: keys.clone(), ntp: addr, transcript: Default::default() }
        };
        let mut waits = Vec::new();
        for _ in 0..3 {
            assert_eq!(source.ke_done(Ok(established(&keys, &mut rng))), Ok(addr));
            assert!(source.keyed());
            let wait = source.disassociate();
            assert!(!source.keyed(), "a DENY takes the keys and cookies");
            assert!(source.protect(&header(3, 1), &provider).is_none(), "and no request leaves without them");
            assert!(source.retry_at.is_some_and(|t| t > tokio::time::Instant::now()), "NTS-KE waits");
            waits.push(wait);
        }
        // Re-keying in between does not reset the back-off: only authentic time does.
        assert_eq!(waits, vec![KE_RETRY_MIN, 2 * KE_RETRY_MIN, 4 * KE_RETRY_MIN]);
        // Failed key establishments back off on their own count, which a
        // successful one does not reset either (RFC 8915 §4.2).
        let fail = |source: &mut NtsSource| {
            let before = tokio::time::Instant::now();
            assert!(source.ke_done(Err(KeFailure::Exchange(ke::ExchangeError::TimedOut))).is_err());
            source.retry_at.unwrap() - before
        };
        let (first, second) = (fail(&mut source), fail(&mut source));
        assert_eq!(source.ke_done(Ok(established(&keys, &mut rng))), Ok(addr));
        assert_eq!(source.retry_due(), None, "keyed: nothing to retry");
        let third = fail(&mut source);
        assert!(first >= KE_RETRY_MIN && second >= 2 * KE_RETRY_MIN && third >= 4 * KE_RETRY_MIN, "{first:?} {second:?} {third:?}");
        assert_eq!(source.ke_done(Ok(established(&keys, &mut rng))), Ok(addr));
        let request = source.protect(&header(3, 1), &provider).unwrap();
        let NtsRequest::Protected(protected) = process_request(&master, &request) else { panic!("the server cannot read it") };
        let mut reply = vec![0u8; 2048];
        reply[..48].copy_from_slice(&header(4, 2));
        let len = protected.seal_reply(&mut reply, &master, &mut rng).unwrap();
        assert_eq!(source.judge(&reply[..len]), Some(Judgement::Time));
        assert_eq!(source.disassociate(), KE_RETRY_MIN);
        // Authentic time reset the key establishment back-off too.
        let wait = fail(&mut source);
        assert!(wait >= KE_RETRY_MIN && wait < 2 * KE_RETRY_MIN, "{wait:?}");
    }

    #[test]
    fn failed_key_establishments_back_off() {
        let provider = tls::provider();
        let spec = NtsSourceSpec { ke_host: "localhost".into(), ke_port: 4460, trusted_certificates: None, roots: None, aeads: Aead::ALL.to_vec(), ntpv5: false };
        let config = tls::client_config(rustls::RootCertStore::empty(), provider).unwrap();
        let mut source = NtsSource::new(spec, config, "127.0.0.1:123".parse().unwrap());
        let fail = || Err(KeFailure::Exchange(ke::ExchangeError::TimedOut));
        let before = tokio::time::Instant::now();
        assert!(source.ke_done(fail()).is_err());
        let first = source.retry_at.unwrap() - before;
        // Not keyed and not running: the loop retries when the back-off ends.
        assert_eq!(source.retry_due(), source.retry_at);
        assert!(source.ke_done(fail()).is_err());
        let second = source.retry_at.unwrap() - before;
        assert!(first >= KE_RETRY_MIN && second >= 2 * KE_RETRY_MIN, "{first:?} {second:?}");
        for _ in 0..40 {
            let _ = source.ke_done(fail());
        }
        let last = source.retry_at.unwrap() - tokio::time::Instant::now();
        assert!(last <= KE_RETRY_MAX && last > KE_RETRY_MAX - Duration::from_secs(1), "{last:?}");
        // The schedule: 10 s doubling (never below RFC 8915 §4.2's 10 × 1.5^(n-1)) up to 5 days.
        let schedule: Vec<u64> = (0..18).map(|n| ke_retry_interval(n).as_secs()).collect();
        assert_eq!(&schedule[..5], &[10, 20, 40, 80, 160]);
        assert_eq!(&schedule[15..], &[327_680, 432_000, 432_000]);
        for (n, s) in schedule.iter().enumerate() {
            assert!(*s as f64 >= (10.0 * 1.5f64.powi(n as i32)).min(432_000.0), "retry {n}: {s} s");
        }
    }
}
