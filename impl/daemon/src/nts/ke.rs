//! NTS-KE over TCP and TLS (RFC 8915 §4): the listener that serves it and
//! the client exchange. The messages themselves are the core's business:
//! the listener reads one whole request (framed by
//! [`ntplab_proto::wire::ntske::MessageReader`], size-bounded), hands its
//! octets and the connection's key exporter to a [`KeResponder`], writes
//! what that returns, and closes.
//!
//! Limits, so that no client (slow, hostile or just many) stalls the others:
//! - at most [`KeLimits::connections`] sessions at once; a connection beyond
//!   that is closed at once, without a TLS handshake;
//! - one deadline, [`KeLimits::timeout`], for the whole session (TLS handshake,
//!   request, response, close): a client that sends nothing, or one octet a
//!   second, loses its slot when it passes;
//! - a request longer than [`KeLimits::request_bytes`] is answered with Error
//!   1 (Bad Request) as soon as a record header says it would pass the limit,
//!   so memory per session stays below that bound plus TLS buffers.
//!
//! Each session runs in its own local task; the accept loop never waits on one.

use super::tls::{KeyExporter, ALPN_NTSKE};
use ntplab_proto::wire::ntske::{self, Body, ErrorCode, MessageReader, Progress, Repr};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The NTS-KE port (RFC 8915 §7.1).
pub const DEFAULT_KE_PORT: u16 = 4460;

/// Bounds of the KE listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeLimits {
    /// Sessions at once.
    pub connections: usize,
    /// Deadline of one whole session.
    pub timeout: Duration,
    /// Longest request, octets (RFC 8915 §4: servers MUST accept at least 1024).
    pub request_bytes: usize,
}

impl Default for KeLimits {
    fn default() -> Self {
        KeLimits { connections: 128, timeout: Duration::from_secs(5), request_bytes: 16 * 1024 }
    }
}

/// Answers one NTS-KE request: `request` is a whole message (through End of
/// Message); `exporter` gives the TLS exporter of the connection it came on.
/// Returns the response message's octets.
pub trait KeResponder {
    /// The response.
    fn respond(&self, request: &[u8], exporter: &dyn KeyExporter) -> Vec<u8>;
}

impl<F: Fn(&[u8], &dyn KeyExporter) -> Vec<u8>> KeResponder for F {
    fn respond(&self, request: &[u8], exporter: &dyn KeyExporter) -> Vec<u8> {
        self(request, exporter)
    }
}

/// TCP for NTS-KE: real sockets in production, simulated ones in the simulator.
#[allow(async_fn_in_trait)]
pub trait StreamNetwork {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// A listening socket.
    type Listener: StreamListener<Stream = Self::Stream> + 'static;
    /// Listens on `addr`.
    async fn listen(&self, addr: SocketAddr) -> io::Result<Self::Listener>;
    /// Connects to `addr`.
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream>;
    /// The addresses of `host` (a name or an IP address) at `port`.
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// A listening TCP socket.
#[allow(async_fn_in_trait)]
pub trait StreamListener {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// The address it listens on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next connection.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}

/// tokio's TCP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioStreams;

impl StreamNetwork for TokioStreams {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn listen(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        Ok(tokio::net::lookup_host((bare, port)).await?.collect())
    }
}

impl StreamListener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }

    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        let (stream, from) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, from))
    }
}

/// How one KE session ended, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// A request was answered (the response may be an NTS-KE Error record).
    Answered {
        /// Octets of the request.
        request_len: usize,
        /// Octets of the response.
        response_len: usize,
    },
    /// The request passed the size limit: answered with Error 1 (Bad Request).
    TooLong,
    /// The request broke a record's length rule: answered with Error 1.
    Malformed,
    /// Refused: all session slots were taken.
    Busy,
    /// The TLS handshake failed (TLS 1.2 offered, no common ALPN, ...).
    Handshake(String),
    /// The handshake succeeded without ALPN `ntske/1`: closed (RFC 8915 §4).
    NoAlpn,
    /// The client closed before a whole request arrived.
    Truncated,
    /// The session passed its deadline.
    TimedOut,
    /// Reading or writing failed.
    Io(String),
}

/// Hears how each KE session ended, and with whom.
pub type SessionObserver = Rc<dyn Fn(SocketAddr, &SessionEnd)>;

/// Serves NTS-KE on `listener` until `shutdown` completes; `on_end` hears how
/// each session ended. Must run inside a `tokio::task::LocalSet`.
pub async fn serve<L: StreamListener>(
    listener: L,
    config: Arc<rustls::ServerConfig>,
    limits: KeLimits,
    responder: Rc<dyn KeResponder>,
    on_end: SessionObserver,
    shutdown: impl Future<Output = ()>,
) where
    L::Stream: 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let mut sessions = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, from) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished sessions so the set does not grow.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, do not spin.
                    tracing::warn!(error = %e, "NTS-KE accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            on_end(from, &SessionEnd::Busy);
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let responder = responder.clone();
        let on_end = on_end.clone();
        sessions.spawn_local(async move {
            let end = match tokio::time::timeout(limits.timeout, session(stream, &acceptor, limits, &*responder)).await {
                Ok(end) => end,
                Err(_) => SessionEnd::TimedOut,
            };
            drop(permit);
            on_end(from, &end);
        });
    }
    sessions.shutdown().await;
}

/// One session: handshake, one request, one response, close.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    acceptor: &tokio_rustls::TlsAcceptor,
    limits: KeLimits,
    responder: &dyn KeResponder,
) -> SessionEnd {
    let mut tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(e) => return SessionEnd::Handshake(e.to_string()),
    };
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_NTSKE) {
        // RFC 8915 §4: NTS-KE is only spoken under ALPN ntske/1.
        let _ = tls.shutdown().await;
        return SessionEnd::NoAlpn;
    }
    let reader = MessageReader::with_max_len(limits.request_bytes);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let len = loop {
        match reader.scan(&buf) {
            Ok(Progress::Complete { len }) => break len,
            Ok(Progress::NeedMore { .. }) => {}
            Err(e) => {
                let end = match e {
                    ntplab_proto::wire::Error::Unsupported { .. } => SessionEnd::TooLong,
                    _ => SessionEnd::Malformed,
                };
                return match write_and_close(&mut tls, &bad_request()).await {
                    Ok(()) => end,
                    Err(e) => SessionEnd::Io(e.to_string()),
                };
            }
        }
        // Never read past the limit: the scan above refuses anything longer.
        let room = (limits.request_bytes + 1).saturating_sub(buf.len()).min(chunk.len());
        match tls.read(&mut chunk[..room]).await {
            Ok(0) => return SessionEnd::Truncated,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return SessionEnd::Truncated,
            Err(e) => return SessionEnd::Io(e.to_string()),
        }
    };
    let response = responder.respond(&buf[..len], &**tls.get_ref().1);
    match write_and_close(&mut tls, &response).await {
        Ok(()) => SessionEnd::Answered { request_len: len, response_len: response.len() },
        Err(e) => SessionEnd::Io(e.to_string()),
    }
}

/// An Error 1 (Bad Request) response: for a request the listener could not
/// frame (too long, a record breaking its length rule), before the core saw it.
pub fn bad_request() -> Vec<u8> {
    ntske::message_to_bytes(&[Repr::new(Body::Error(ErrorCode::BAD_REQUEST)), Repr::end_of_message()])
}

async fn write_and_close<S: AsyncWrite + Unpin>(tls: &mut S, bytes: &[u8]) -> io::Result<()> {
    tls.write_all(bytes).await?;
    tls.flush().await?;
    // close_notify, then the TCP FIN: RFC 8915 §4 has the server close after its response.
    tls.shutdown().await
}

/// Why a client exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The TCP connection could not be made.
    Connect(String),
    /// The TLS handshake failed (certificate not trusted, wrong name, expired, no TLS 1.3, ...).
    Handshake(String),
    /// The server did not agree to ALPN `ntske/1`.
    NoAlpn,
    /// The response was longer than the limit, broke a record rule, or ended early.
    BadResponse(String),
    /// The exchange passed its deadline.
    TimedOut,
    /// Reading or writing failed.
    Io(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Connect(e) => write!(f, "cannot connect: {e}"),
            ExchangeError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            ExchangeError::NoAlpn => f.write_str("the server did not negotiate ALPN ntske/1"),
            ExchangeError::BadResponse(e) => write!(f, "bad NTS-KE response: {e}"),
            ExchangeError::TimedOut => f.write_str("timed out"),
            ExchangeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Runs one client exchange on `stream`: TLS handshake with `name` as SNI
/// and the name the certificate must carry, the `request` message, the
/// response (at most `response_bytes` octets, through End of Message); then
/// `finish` gets the response and the connection's key exporter, while the
/// connection is still open. All within `timeout`.
pub async fn exchange<S, T>(
    stream: S,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
    request: &[u8],
    response_bytes: usize,
    timeout: Duration,
    finish: impl FnOnce(&[u8], &dyn KeyExporter) -> T,
) -> Result<T, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let run = async {
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut tls = connector.connect(name, stream).await.map_err(|e| ExchangeError::Handshake(e.to_string()))?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_NTSKE) {
            return Err(ExchangeError::NoAlpn);
        }
        tls.write_all(request).await.map_err(|e| ExchangeError::Io(e.to_string()))?;
        tls.flush().await.map_err(|e| ExchangeError::Io(e.to_string()))?;
        let reader = MessageReader::with_max_len(response_bytes);
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        let len = loop {
            match reader.scan(&buf).map_err(|e| ExchangeError::BadResponse(e.to_string()))? {
                Progress::Complete { len } => break len,
                Progress::NeedMore { .. } => {}
            }
            let room = (response_bytes + 1).saturating_sub(buf.len()).min(chunk.len());
            match tls.read(&mut chunk[..room]).await {
                Ok(0) => return Err(ExchangeError::BadResponse("the server closed before End of Message".into())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ExchangeError::BadResponse("the server closed before End of Message".into()))
                }
                Err(e) => return Err(ExchangeError::Io(e.to_string())),
            }
        };
        let result = finish(&buf[..len], &**tls.get_ref().1);
        // Done: say so (close_notify); the server closes too.
        let _ = tls.shutdown().await;
        Ok(result)
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(Err(ExchangeError::TimedOut))
}

/// Connects over `net` to the first address of `host:port` that accepts, and runs [`exchange`].
#[allow(clippy::too_many_arguments)]
pub async fn connect_and_exchange<N: StreamNetwork, T>(
    net: &N,
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
    response_bytes: usize,
    timeout: Duration,
    finish: impl FnOnce(&[u8], &dyn KeyExporter) -> T,
) -> Result<T, ExchangeError> {
    let name = super::tls::server_name(host).map_err(ExchangeError::Connect)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let connect = async {
        let addrs = net.resolve(host, port).await.map_err(|e| ExchangeError::Connect(format!("{host}: {e}")))?;
        let mut last = ExchangeError::Connect(format!("{host}: no address"));
        for addr in addrs {
            match net.connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = ExchangeError::Connect(format!("{addr}: {e}")),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout_at(deadline, connect).await.unwrap_or(Err(ExchangeError::TimedOut))?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    exchange(stream, config, name, request, response_bytes, left, finish).await
}
