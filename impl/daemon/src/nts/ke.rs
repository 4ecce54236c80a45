//! NTS-KE over TCP and TLS (RFC 8915 §4): the listener that serves it and
//! the client exchange. The messages themselves are the core's business:
//! the listener feeds the octets TLS decrypted, and the connection's key
//! exporter, to a [`KeSession`] (the core's KE server state machine) until
//! it answers, writes the answer, and closes.
//!
//! Limits, so that no client (slow, hostile or just many) stalls the others:
//! - at most [`KeLimits::connections`] sessions at once; a connection beyond
//!   that is closed at once, without a TLS handshake;
//! - one deadline, [`KeLimits::timeout`], for the whole session (TLS handshake,
//!   request, response, close): a client that sends nothing, or one octet a
//!   second, loses its slot when it passes;
//! - a request longer than [`KeLimits::request_bytes`] is answered with Error
//!   1 (Bad Request) as soon as one octet more than that has arrived, whatever
//!   the session makes of it; the session holds at most that much.
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

/// What a KE session does next after octets of the request arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeStep {
    /// Read more.
    NeedMore,
    /// Write `response`, then close.
    Respond {
        /// The response message's octets.
        response: Vec<u8>,
        /// What it is, for logs (never key material).
        note: String,
    },
}

/// The protocol side of one KE connection: the core's NTS-KE server state
/// machine, fed the octets TLS decrypted.
pub trait KeSession {
    /// Octets of the request; `exporter` is the connection's TLS exporter.
    fn receive(&mut self, data: &[u8], exporter: &dyn KeyExporter) -> KeStep;
    /// The client closed before the request was whole: a response to try, if any.
    fn end_of_input(&mut self) -> Option<Vec<u8>>;
    /// The session's deadline passed: a response to try, if any.
    fn timed_out(&mut self) -> Option<Vec<u8>>;
}

/// Makes one [`KeSession`] per accepted connection.
pub trait KeSessions {
    /// A fresh session.
    fn session(&self) -> Box<dyn KeSession>;
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

/// No TCP at all: for networks without streams (a simulation that does not
/// model them). Listening and connecting fail with `Unsupported`, so a
/// configuration with NTS fails at start, saying why.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStreams;

fn no_streams() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "NTS-KE needs TCP, and this network provides none")
}

impl StreamNetwork for NoStreams {
    type Stream = tokio::io::DuplexStream;
    type Listener = NoStreams;

    async fn listen(&self, _: SocketAddr) -> io::Result<NoStreams> {
        Err(no_streams())
    }

    async fn connect(&self, _: SocketAddr) -> io::Result<tokio::io::DuplexStream> {
        Err(no_streams())
    }

    async fn resolve(&self, _: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        Err(no_streams())
    }
}

impl StreamListener for NoStreams {
    type Stream = tokio::io::DuplexStream;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(no_streams())
    }

    async fn accept(&self) -> io::Result<(tokio::io::DuplexStream, SocketAddr)> {
        Err(no_streams())
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
        /// What the response is ([`KeStep::Respond`]'s note).
        note: String,
    },
    /// The request passed the size limit: answered with Error 1 (Bad Request).
    TooLong,
    /// Refused: all session slots were taken.
    Busy,
    /// The TLS handshake failed (TLS 1.2 offered, no common ALPN, ...).
    Handshake(String),
    /// The handshake succeeded without ALPN `ntske/1`: closed (RFC 8915 §4).
    NoAlpn,
    /// The client closed before a whole request arrived.
    Truncated,
    /// The session passed its deadline (before its response was written).
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
    sessions: Rc<dyn KeSessions>,
    on_end: SessionObserver,
    shutdown: impl Future<Output = ()>,
) where
    L::Stream: 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let mut running = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, from) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished sessions so the set does not grow.
            Some(_) = running.join_next(), if !running.is_empty() => continue,
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
        let mut session = sessions.session();
        let on_end = on_end.clone();
        running.spawn_local(async move {
            let deadline = tokio::time::Instant::now() + limits.timeout;
            let end = run_session(stream, &acceptor, limits, deadline, &mut *session).await;
            drop(permit);
            on_end(from, &end);
        });
    }
    running.shutdown().await;
}

/// Time allowed, after the deadline, to write a last error response.
const LAST_WORD: Duration = Duration::from_millis(200);

/// One session: handshake, one request, one response, close; all before `deadline`.
async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    acceptor: &tokio_rustls::TlsAcceptor,
    limits: KeLimits,
    deadline: tokio::time::Instant,
    session: &mut dyn KeSession,
) -> SessionEnd {
    use tokio::time::timeout_at;
    let mut tls = match timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return SessionEnd::Handshake(e.to_string()),
        Err(_) => return SessionEnd::TimedOut,
    };
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_NTSKE) {
        // RFC 8915 §4: NTS-KE is only spoken under ALPN ntske/1.
        let _ = timeout_at(deadline, tls.shutdown()).await;
        return SessionEnd::NoAlpn;
    }
    let mut received = 0usize;
    let mut chunk = [0u8; 4096];
    loop {
        // Never more than the limit: one octet past it is enough to know.
        let room = (limits.request_bytes + 1 - received).min(chunk.len());
        let n = match timeout_at(deadline, tls.read(&mut chunk[..room])).await {
            Err(_) => {
                if let Some(last) = session.timed_out() {
                    let _ = timeout_at(tokio::time::Instant::now() + LAST_WORD, write_and_close(&mut tls, &last)).await;
                }
                return SessionEnd::TimedOut;
            }
            Ok(Ok(0)) => None,
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Ok(Err(e)) => return SessionEnd::Io(e.to_string()),
        };
        let Some(n) = n else {
            if let Some(last) = session.end_of_input() {
                let _ = timeout_at(deadline, write_and_close(&mut tls, &last)).await;
            }
            return SessionEnd::Truncated;
        };
        received += n;
        if received > limits.request_bytes {
            return match timeout_at(deadline, write_and_close(&mut tls, &bad_request())).await {
                Ok(Ok(())) => SessionEnd::TooLong,
                Ok(Err(e)) => SessionEnd::Io(e.to_string()),
                Err(_) => SessionEnd::TimedOut,
            };
        }
        match session.receive(&chunk[..n], &**tls.get_ref().1) {
            KeStep::NeedMore => continue,
            KeStep::Respond { response, note } => {
                return match timeout_at(deadline, write_and_close(&mut tls, &response)).await {
                    Ok(Ok(())) => SessionEnd::Answered { request_len: received, response_len: response.len(), note },
                    Ok(Err(e)) => SessionEnd::Io(e.to_string()),
                    Err(_) => SessionEnd::TimedOut,
                };
            }
        }
    }
}

/// An Error 1 (Bad Request) response, for a request longer than the limit.
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
