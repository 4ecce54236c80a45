//! Network Time Security inside the simulator: the same daemon code as in
//! production (its NTS-KE listener and client, rustls, the core's NTS), with
//! three things swapped so that a run is byte-for-byte the same for a seed:
//!
//! - TCP: [`SimStreams`], turmoil-net's TCP scoped to the host (the harness
//!   routes its segments in order, never dropping one on a live path:
//!   turmoil-net 0.1 has no reassembly and, with the retransmit threshold the
//!   harness sets, no retransmission);
//! - randomness: [`provider`], rustls' `ring` provider whose secure random
//!   source and X25519 key shares come from a seeded stream (every TLS
//!   random, key share, NTS key, nonce and cookie of a host), and whose
//!   signatures are Ed25519 (deterministic);
//! - the TLS clock: [`SimTime`], true simulated UTC, so certificate validity
//!   is judged at the run's dates;
//! - certificates: [`Pki`], made per run from the seed (rcgen, Ed25519 keys
//!   derived from the seed), valid, expired or for another name.
//!
//! Nothing here is secure: it is a simulation.

use crate::net::Shared;
use crate::rng::SimRng;
use ntplab_daemon::nts::ke::{StreamListener, StreamNetwork};
use ntplab_daemon::nts::tls::ServerIdentity;
use ntplab_proto::time::NtpTime;
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SecureRandom, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{NamedGroup, RootCertStore};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil_net::shim::tokio::net::{TcpListener, TcpStream};
use turmoil_net::HostId;

/// A seeded random stream shared by a host's TLS and NTS (rustls wants `Send + Sync`).
#[derive(Debug, Clone)]
pub struct SeededRandom(Arc<Mutex<SimRng>>);

impl SeededRandom {
    /// The stream `label` of the run seeded with `seed`.
    pub fn new(seed: u64, label: &str) -> SeededRandom {
        SeededRandom(Arc::new(Mutex::new(SimRng::derive(seed, label))))
    }

    fn fill_bytes(&self, dest: &mut [u8]) {
        // A poisoned lock only means a panic elsewhere; the state is still a state.
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in dest.chunks_mut(8) {
            let word = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// X25519 with private keys from a [`SeededRandom`] (ring's own X25519 draws
/// from the operating system and cannot be seeded).
#[derive(Debug)]
struct SeededX25519(SeededRandom);

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        self.0.fill_bytes(&mut secret);
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(ActiveX25519 { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct ActiveX25519 {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl ActiveKeyExchange for ActiveX25519 {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let invalid = || rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare);
        let peer: [u8; 32] = peer.try_into().map_err(|_| invalid())?;
        let shared = self.secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(invalid());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// rustls' `ring` provider with its randomness and key exchange drawn from
/// `random`. (rustls keeps key-exchange groups as `&'static`: each call
/// leaks one small group object, once per daemon start.)
pub fn provider(random: SeededRandom) -> Arc<CryptoProvider> {
    let group: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(random.clone())));
    let secure_random: &'static SeededRandom = Box::leak(Box::new(random));
    Arc::new(CryptoProvider { kx_groups: vec![group], secure_random, ..rustls::crypto::ring::default_provider() })
}

/// rustls' clock inside a simulation: true UTC, from tokio's paused clock.
#[derive(Debug)]
pub struct SimTime {
    /// Unix seconds and nanoseconds of the run's start.
    start_unix: Duration,
    /// tokio's instant at the run's start.
    origin: tokio::time::Instant,
}

impl SimTime {
    /// The clock of a run that starts at `start` (true time), now.
    pub fn new(start: NtpTime, origin: tokio::time::Instant) -> SimTime {
        let (s, ns) = start.to_unix();
        SimTime { start_unix: Duration::new(s.max(0) as u64, ns), origin }
    }
}

impl rustls::time_provider::TimeProvider for SimTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(self.start_unix + self.origin.elapsed()))
    }
}

/// Which certificate a simulated NTS server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateKind {
    /// Valid for a year around the run's start, for the host's address and name.
    #[default]
    Valid,
    /// Expired: its notAfter is a day before the run starts.
    Expired,
    /// Valid in time, but for another name (`wrong-name.invalid`).
    WrongName,
}

impl CertificateKind {
    /// Names as scenarios write them.
    pub const NAMES: [&'static str; 3] = ["valid", "expired", "wrong-name"];

    /// From its scenario name.
    pub fn parse(name: &str) -> Option<CertificateKind> {
        match name {
            "valid" => Some(CertificateKind::Valid),
            "expired" => Some(CertificateKind::Expired),
            "wrong-name" => Some(CertificateKind::WrongName),
            _ => None,
        }
    }
}

/// A run's certificates: one self-signed Ed25519 certificate per NTS server,
/// its key derived from the seed; every NTS client trusts them all.
#[derive(Debug, Default)]
pub struct Pki {
    anchors: Vec<CertificateDer<'static>>,
}

/// The PKCS #8 (v1) wrapping of an Ed25519 private key (RFC 8410).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(seed);
    der
}

impl Pki {
    /// The identity of a server named `names` (DNS names or IP addresses) for
    /// a run seeded with `seed` starting at `start`; its certificate becomes
    /// one of the run's trust anchors.
    pub fn server(&mut self, seed: u64, label: &str, names: &[String], kind: CertificateKind, start: NtpTime) -> Result<ServerIdentity, String> {
        let random = SeededRandom::new(seed, &format!("pki/{label}"));
        let mut key_seed = [0u8; 32];
        random.fill_bytes(&mut key_seed);
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(ed25519_pkcs8(&key_seed));
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(|e| format!("key: {e}"))?;
        let names: Vec<String> = match kind {
            CertificateKind::WrongName => vec!["wrong-name.invalid".to_string()],
            _ => names.to_vec(),
        };
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| format!("names: {e}"))?;
        let (start_s, _) = start.to_unix();
        let day = 86_400;
        let (from, until) = match kind {
            CertificateKind::Expired => (start_s - 365 * day, start_s - day),
            _ => (start_s - 30 * day, start_s + 365 * day),
        };
        let at = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).map_err(|e| format!("validity: {e}"));
        params.not_before = at(from)?;
        params.not_after = at(until)?;
        let mut serial = [0u8; 8];
        random.fill_bytes(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("ntplab simulated NTS server {label}"));
        let cert = params.self_signed(&key).map_err(|e| format!("certificate: {e}"))?;
        self.anchors.push(cert.der().clone());
        ServerIdentity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
    }

    /// Trust anchors: every server certificate made so far.
    pub fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for cert in &self.anchors {
            roots.add(cert.clone()).map_err(|e| format!("trust anchor: {e}"))?;
        }
        Ok(roots)
    }
}

/// A future, or a socket, that belongs to a host: turmoil-net is told which
/// before every poll and before it is dropped (a dropped connect closes its
/// half-open socket in the host's kernel).
struct OnHost<T> {
    host: HostId,
    shared: Rc<Shared>,
    inner: Option<T>,
}

impl<T> OnHost<T> {
    fn new(host: HostId, shared: Rc<Shared>, inner: T) -> OnHost<T> {
        OnHost { host, shared, inner: Some(inner) }
    }

    /// The inner value with the host current; and the harness told that
    /// segments may wait (turmoil-net emits TCP segments when it egresses).
    fn with<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        turmoil_net::set_current(self.host);
        let r = f(self.inner.as_mut().expect("used after drop"));
        self.shared.tcp_activity();
        r
    }
}

impl<T> Drop for OnHost<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            turmoil_net::set_current(self.host);
            drop(inner);
            self.shared.tcp_activity();
        }
    }
}

impl<F: Future + Unpin> Future for OnHost<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.with(|f| Pin::new(f).poll(cx))
    }
}

/// A simulated TCP connection.
pub struct SimTcpStream(OnHost<TcpStream>);

impl AsyncRead for SimTcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.with(|s| Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for SimTcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().0.with(|s| Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.with(|s| Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.with(|s| Pin::new(s).poll_shutdown(cx))
    }
}

/// A simulated TCP listener.
pub struct SimTcpListener(std::cell::RefCell<OnHost<TcpListener>>);

impl StreamListener for SimTcpListener {
    type Stream = SimTcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.borrow_mut().with(|l| l.local_addr())
    }

    async fn accept(&self) -> io::Result<(SimTcpStream, SocketAddr)> {
        let (host, shared) = {
            let l = self.0.borrow();
            (l.host, l.shared.clone())
        };
        let (stream, from) = std::future::poll_fn(|cx| self.0.borrow_mut().with(|l| l.poll_accept(cx))).await?;
        Ok((SimTcpStream(OnHost::new(host, shared, stream)), from))
    }
}

/// TCP for a simulated host's daemon.
#[derive(Clone)]
pub struct SimStreams {
    host: HostId,
    shared: Rc<Shared>,
}

impl SimStreams {
    /// The streams of `host`.
    pub fn new(host: HostId, shared: Rc<Shared>) -> SimStreams {
        SimStreams { host, shared }
    }
}

impl StreamNetwork for SimStreams {
    type Stream = SimTcpStream;
    type Listener = SimTcpListener;

    async fn listen(&self, addr: SocketAddr) -> io::Result<SimTcpListener> {
        let listener = OnHost::new(self.host, self.shared.clone(), Box::pin(TcpListener::bind(addr))).await?;
        Ok(SimTcpListener(std::cell::RefCell::new(OnHost::new(self.host, self.shared.clone(), listener))))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<SimTcpStream> {
        let stream = OnHost::new(self.host, self.shared.clone(), Box::pin(TcpStream::connect(addr))).await?;
        Ok(SimTcpStream(OnHost::new(self.host, self.shared.clone(), stream)))
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        // Simulated hosts are named by address (no DNS in a run).
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        bare.parse()
            .map(|ip| vec![SocketAddr::new(ip, port)])
            .map_err(|_| io::Error::new(io::ErrorKind::NotFound, format!("{host:?}: simulated hosts are reached by address")))
    }
}
