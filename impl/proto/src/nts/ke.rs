//! NTS Key Establishment (RFC 8915 §4) as sans-IO state machines.
//!
//! Both sides take the application data rustls decrypted, in pieces split
//! anywhere, and give back the octets to write. TLS itself (1.3 only, ALPN
//! `ntske/1`, certificates, close_notify, timeouts) is the daemon's.
//!
//! # Server ([`KeServer`])
//!
//! Records are decoded as they complete; the request is judged record by
//! record and at End of Message:
//!
//! | request | answer |
//! |---|---|
//! | a record of unknown type with the Critical Bit | Error 0 (Unrecognized Critical Record) |
//! | no Next Protocol, or an empty one | Error 1 (Bad Request) |
//! | NTPv4 offered without an AEAD record, or with an empty one | Error 1 |
//! | a second Next Protocol, AEAD, Server or Port record | Error 1 |
//! | Error, Warning or New Cookie records (clients must not send them) | Error 1 |
//! | End of Message or Next Protocol without the Critical Bit | Error 1 |
//! | a record whose body breaks its length rule (e.g. a 3-octet Port) | Error 1 |
//! | more than [`KeServerConfig::max_request_len`] octets (default [`KE_MAX_REQUEST_LEN`], 16 KiB) before End of Message | Error 1, at once: nothing past the limit is buffered |
//! | stream ends or the daemon's timeout fires before End of Message | Error 1 ([`KeServer::end_of_input`], [`KeServer::timed_out`]) |
//! | neither NTPv4 nor (with [`KeServerConfig::ntpv5`]) NTPv5 offered | Next Protocol empty, End of Message (no keys) |
//! | no offered AEAD supported | Next Protocol (the one chosen), AEAD empty, End of Message |
//! | otherwise | [`KeServerStep::ExportKeys`], then [`KeServer::respond`]: Next Protocol the client's first of NTPv4 and NTPv5 ([`KeServer::protocol`], the keys are exported for it), the server's preferred offered AEAD, Server and Port if configured, [`KeServerConfig::cookie_count`] New Cookies (default 8), End of Message |
//!
//! Unknown records without the Critical Bit are ignored; the client's Server
//! and Port Negotiation records are accepted (at most one each) and not
//! honoured (the configured ones are sent). Octets after End of Message are
//! ignored. Memory per connection: the octets of the record being received,
//! at most the request limit.
//!
//! # Client ([`KeClient`])
//!
//! [`KeClient::request`] gives the request (Next Protocol NTPv4, the AEADs in
//! preference order, optional Server and Port Negotiation, End of Message);
//! [`KeClient::receive`] checks the response with the same rules seen from
//! the other side, plus: an Error or Warning record ends the exchange with
//! [`KeError::ServerError`]/[`KeError::ServerWarning`] (every warning is an
//! error: RFC 8915 defines none); the protocol and the AEAD must be ones the
//! client offered, exactly one AEAD; at least one non-empty cookie; a Server
//! name must be ASCII, non-empty and without a zone identifier. Responses are
//! limited to [`KE_MAX_RESPONSE_LEN`] (64 KiB, RFC 8915 §4's SHOULD) and at
//! most [`MAX_RESPONSE_COOKIES`] cookies are kept.
//!
//! NTPv5: a server with [`KeServerConfig::ntpv5`] also negotiates Protocol
//! ID 0x8001 ([`supported_protocol`]); a client asks for the one protocol of
//! [`KeClientConfig::protocol`].

use super::aead::{Aead, SessionKeys};
use super::cookie::MasterKeys;
use super::NtsRng;
use crate::wire::ntske::{
    message_to_bytes, record_type, AeadId, Body, ErrorCode, ProtocolId, Record, Repr, WarningCode, HEADER_LEN,
};
use core::fmt;

/// Default limit on a request, octets: 16 KiB (RFC 8915 §4: at least 1024 must be accepted).
pub const KE_MAX_REQUEST_LEN: usize = 16 * 1024;
/// Limit on a response, octets: 64 KiB (RFC 8915 §4: clients SHOULD accept 65536).
pub const KE_MAX_RESPONSE_LEN: usize = 64 * 1024;
/// Cookies a server sends by default (RFC 8915 §4.1.6 SHOULD).
pub const DEFAULT_COOKIE_COUNT: usize = 8;
/// Most cookies a server sends, whatever the configuration.
pub const MAX_COOKIE_COUNT: usize = 64;
/// Most cookies a client keeps from one response.
pub const MAX_RESPONSE_COOKIES: usize = 64;

/// Whether a Next Protocol is one this implementation negotiates: NTPv4 (0)
/// and the NTPv5 draft (0x8001, draft-ietf-ntp-ntpv5-07 §11; a server only
/// when [`KeServerConfig::ntpv5`] is on).
pub fn supported_protocol(p: ProtocolId) -> bool {
    p == ProtocolId::NTPV4 || p == ProtocolId::NTPV5_DRAFT
}

/// What is wrong with an NTS-KE message (either side) or its exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeError {
    /// A record could not be decoded (e.g. a body-length rule broken).
    Malformed(crate::wire::Error),
    /// The message grew past the limit before End of Message.
    TooLong {
        /// The limit, octets.
        limit: usize,
    },
    /// The stream ended before End of Message.
    Truncated,
    /// The daemon's timeout fired before End of Message.
    Timeout,
    /// A record of unknown type with the Critical Bit set (server: Error 0).
    UnrecognizedCritical {
        /// Its record type.
        record_type: u16,
    },
    /// A record that may appear once appeared again.
    Duplicate {
        /// Its record type.
        record_type: u16,
    },
    /// A record whose Critical Bit must be set arrived without it.
    NotCritical {
        /// Its record type.
        record_type: u16,
    },
    /// A record the sender must not send in this direction (Error, Warning or
    /// New Cookie from a client).
    NotAllowed {
        /// Its record type.
        record_type: u16,
    },
    /// No Next Protocol Negotiation record.
    MissingNextProtocol,
    /// A request whose Next Protocol record lists nothing.
    EmptyNextProtocol,
    /// NTPv4 negotiated without an AEAD Algorithm Negotiation record.
    MissingAead,
    /// A request whose AEAD record lists nothing.
    EmptyAead,
    /// The server answered with an Error record.
    ServerError(ErrorCode),
    /// The server answered with a Warning record (treated as an error).
    ServerWarning(WarningCode),
    /// The server accepts none of the offered protocols (empty Next Protocol).
    NoCommonProtocol,
    /// The server supports none of the offered AEADs (empty AEAD record).
    NoCommonAead,
    /// The server chose a protocol the client did not offer.
    UnexpectedProtocol(ProtocolId),
    /// The server chose an AEAD the client did not offer.
    UnexpectedAead(AeadId),
    /// The server's AEAD record lists more than one algorithm.
    MultipleAeads,
    /// NTPv4 and an AEAD were agreed but no (non-empty) cookie came.
    NoCookies,
    /// The Server Negotiation name is empty, not ASCII or has a zone identifier.
    BadServerName,
}

fn record_name(t: u16) -> String {
    match record_type::name(t) {
        Some(n) => n.to_string(),
        None => format!("record type {t}"),
    }
}

impl fmt::Display for KeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeError::Malformed(e) => write!(f, "malformed NTS-KE record: {e}"),
            KeError::TooLong { limit } => write!(f, "NTS-KE message longer than {limit} octets"),
            KeError::Truncated => f.write_str("NTS-KE stream ended before End of Message"),
            KeError::Timeout => f.write_str("NTS-KE message not complete before the timeout"),
            KeError::UnrecognizedCritical { record_type } => {
                write!(f, "unrecognized critical record (type {record_type})")
            }
            KeError::Duplicate { record_type } => write!(f, "{} appears more than once", record_name(*record_type)),
            KeError::NotCritical { record_type } => {
                write!(f, "{} without the Critical Bit", record_name(*record_type))
            }
            KeError::NotAllowed { record_type } => write!(f, "{} must not be sent by a client", record_name(*record_type)),
            KeError::MissingNextProtocol => f.write_str("no NTS Next Protocol Negotiation record"),
            KeError::EmptyNextProtocol => f.write_str("NTS Next Protocol Negotiation lists no protocol"),
            KeError::MissingAead => f.write_str("NTPv4 offered without an AEAD Algorithm Negotiation record"),
            KeError::EmptyAead => f.write_str("AEAD Algorithm Negotiation lists no algorithm"),
            KeError::ServerError(c) => write!(f, "server sent Error {} ({})", c.0, c.name().unwrap_or("unregistered")),
            KeError::ServerWarning(c) => write!(f, "server sent Warning {}", c.0),
            KeError::NoCommonProtocol => f.write_str("server accepts none of the offered protocols"),
            KeError::NoCommonAead => f.write_str("server supports none of the offered AEAD algorithms"),
            KeError::UnexpectedProtocol(p) => write!(f, "server chose protocol {:#06x}, which was not offered", p.0),
            KeError::UnexpectedAead(a) => write!(f, "server chose AEAD {}, which was not offered", a.0),
            KeError::MultipleAeads => f.write_str("server's AEAD Algorithm Negotiation lists more than one algorithm"),
            KeError::NoCookies => f.write_str("server sent no cookie"),
            KeError::BadServerName => f.write_str("NTPv4 Server Negotiation is empty, not ASCII or has a zone identifier"),
        }
    }
}

impl std::error::Error for KeError {}

impl KeError {
    /// The Error code a server answers a request with this problem:
    /// 0 for an unrecognized critical record, 1 (Bad Request) otherwise.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            KeError::UnrecognizedCritical { .. } => ErrorCode::UNRECOGNIZED_CRITICAL_RECORD,
            _ => ErrorCode::BAD_REQUEST,
        }
    }
}

/// An error response: Error `code`, End of Message.
pub fn error_response(code: ErrorCode) -> Vec<u8> {
    message_to_bytes(&[Repr::new(Body::Error(code)), Repr::end_of_message()])
}

/// Records as they complete in a stream, up to a size limit.
#[derive(Clone, Debug)]
struct RecordStream {
    /// Octets of the record(s) not yet complete.
    buf: Vec<u8>,
    /// Octets of complete records already decoded.
    consumed: usize,
    max_len: usize,
    complete: bool,
}

impl RecordStream {
    fn new(max_len: usize) -> Self {
        RecordStream { buf: Vec::new(), consumed: 0, max_len, complete: false }
    }

    /// Feeds `data`; calls `on_record` for each complete record. `Ok(true)`
    /// once End of Message has been decoded (later octets are ignored).
    fn push(&mut self, mut data: &[u8], on_record: &mut dyn FnMut(Repr) -> Result<(), KeError>) -> Result<bool, KeError> {
        if self.complete {
            return Ok(true);
        }
        // Bounded: each pass either takes octets from `data` or returns.
        loop {
            let room = self.max_len.saturating_sub(self.consumed + self.buf.len());
            let take = data.len().min(room);
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let mut pos = 0;
            while self.buf.len() - pos >= HEADER_LEN {
                let rec = Record::new_unchecked(&self.buf[pos..]);
                let total = HEADER_LEN + usize::from(rec.body_len());
                if self.consumed + pos + total > self.max_len {
                    return Err(KeError::TooLong { limit: self.max_len });
                }
                if self.buf.len() - pos < total {
                    break;
                }
                let repr = Record::new_checked(&self.buf[pos..pos + total])
                    .and_then(|r| Repr::parse(&r))
                    .map_err(KeError::Malformed)?;
                pos += total;
                let eom = repr.body == Body::EndOfMessage;
                on_record(repr)?;
                if eom {
                    self.complete = true;
                    self.consumed += pos;
                    self.buf = Vec::new();
                    return Ok(true);
                }
            }
            self.buf.drain(..pos);
            self.consumed += pos;
            if data.is_empty() {
                return Ok(false);
            }
            if take == 0 {
                return Err(KeError::TooLong { limit: self.max_len });
            }
        }
    }
}

/// NTS-KE server settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeServerConfig {
    /// Supported AEADs in the server's preference order (the first one the
    /// client also offers is chosen). Default: [`Aead::ALL`].
    pub aeads: Vec<Aead>,
    /// NTPv4 Server Negotiation to send (host name or address), if any.
    pub ntp_server: Option<String>,
    /// NTPv4 Port Negotiation to send, if any (clients assume 123 without).
    pub ntp_port: Option<u16>,
    /// New Cookie records per response (default 8; clamped to 1..=[`MAX_COOKIE_COUNT`]).
    pub cookie_count: usize,
    /// Request size limit in octets (default [`KE_MAX_REQUEST_LEN`]; at least 1024 is used).
    pub max_request_len: usize,
    /// Also negotiate NTPv5 (Next Protocol 0x8001) when the client offers it
    /// (default off). The client's order decides between NTPv4 and NTPv5.
    pub ntpv5: bool,
}

impl Default for KeServerConfig {
    fn default() -> Self {
        KeServerConfig {
            aeads: Aead::ALL.to_vec(),
            ntp_server: None,
            ntp_port: None,
            cookie_count: DEFAULT_COOKIE_COUNT,
            max_request_len: KE_MAX_REQUEST_LEN,
            ntpv5: false,
        }
    }
}

/// What the daemon does next on a KE server connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum KeServerStep {
    /// Read more octets (and keep the timeout running).
    NeedMore,
    /// The request is good and agrees on a protocol ([`KeServer::protocol`]:
    /// NTPv4 or NTPv5) with this AEAD: export the two keys for both and call
    /// [`KeServer::respond`].
    ExportKeys(Aead),
    /// Write `response`, then close (close_notify). No keys are needed.
    Respond {
        /// The octets to write.
        response: Vec<u8>,
        /// Why it is this response (for logs and metrics).
        outcome: KeServerOutcome,
    },
    /// The exchange is over; octets received now are ignored.
    Finished,
}

/// Responses that carry no cookies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeServerOutcome {
    /// The request broke a rule: an Error record was sent.
    Refused(KeError),
    /// No protocol this server speaks was offered: an empty Next Protocol was sent.
    NoCommonProtocol,
    /// None of the offered AEADs is supported: an empty AEAD record was sent.
    NoCommonAead,
}

#[derive(Clone, Debug, Default)]
struct Seen {
    protocols: Option<Vec<ProtocolId>>,
    aeads: Option<Vec<AeadId>>,
    server: bool,
    port: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    Reading,
    AwaitingKeys(ProtocolId, Aead),
    Done,
}

/// One NTS-KE server connection. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct KeServer {
    config: KeServerConfig,
    stream: RecordStream,
    seen: Seen,
    state: ServerState,
}

fn once<T>(slot: &mut Option<T>, value: T, record_type: u16) -> Result<(), KeError> {
    if slot.is_some() {
        return Err(KeError::Duplicate { record_type });
    }
    *slot = Some(value);
    Ok(())
}

fn once_flag(flag: &mut bool, record_type: u16) -> Result<(), KeError> {
    if std::mem::replace(flag, true) {
        return Err(KeError::Duplicate { record_type });
    }
    Ok(())
}

impl KeServer {
    /// A connection with these settings (copied).
    pub fn new(config: &KeServerConfig) -> KeServer {
        let mut config = config.clone();
        config.cookie_count = config.cookie_count.clamp(1, MAX_COOKIE_COUNT);
        config.max_request_len = config.max_request_len.max(1024);
        let stream = RecordStream::new(config.max_request_len);
        KeServer { config, stream, seen: Seen::default(), state: ServerState::Reading }
    }

    fn refuse(&mut self, e: KeError) -> KeServerStep {
        self.state = ServerState::Done;
        KeServerStep::Respond { response: error_response(e.error_code()), outcome: KeServerOutcome::Refused(e) }
    }

    /// Feeds octets of the request as TLS delivered them.
    pub fn receive(&mut self, data: &[u8]) -> KeServerStep {
        if self.state != ServerState::Reading {
            return KeServerStep::Finished;
        }
        let seen = &mut self.seen;
        let mut on_record = |r: Repr| -> Result<(), KeError> {
            let t = r.body.record_type();
            match r.body {
                Body::EndOfMessage | Body::NextProtocol(_) if !r.critical => Err(KeError::NotCritical { record_type: t }),
                Body::EndOfMessage => Ok(()),
                Body::NextProtocol(v) => once(&mut seen.protocols, v, t),
                Body::AeadAlgorithm(v) => once(&mut seen.aeads, v, t),
                Body::Server(_) => once_flag(&mut seen.server, t),
                Body::Port(_) => once_flag(&mut seen.port, t),
                Body::Error(_) | Body::Warning(_) | Body::NewCookie(_) => Err(KeError::NotAllowed { record_type: t }),
                Body::Unknown { record_type, .. } if r.critical => Err(KeError::UnrecognizedCritical { record_type }),
                Body::Unknown { .. } => Ok(()),
            }
        };
        match self.stream.push(data, &mut on_record) {
            Err(e) => self.refuse(e),
            Ok(false) => KeServerStep::NeedMore,
            Ok(true) => self.judge(),
        }
    }

    fn judge(&mut self) -> KeServerStep {
        let protocols = match self.seen.protocols.take() {
            None => return self.refuse(KeError::MissingNextProtocol),
            Some(p) if p.is_empty() => return self.refuse(KeError::EmptyNextProtocol),
            Some(p) => p,
        };
        // The client's first protocol this server speaks (both need an AEAD).
        let ntpv5 = self.config.ntpv5;
        let protocol = protocols.into_iter().find(|&p| supported_protocol(p) && (ntpv5 || p == ProtocolId::NTPV4));
        let aeads = self.seen.aeads.take();
        if protocol.is_some() {
            match &aeads {
                None => return self.refuse(KeError::MissingAead),
                Some(a) if a.is_empty() => return self.refuse(KeError::EmptyAead),
                Some(_) => {}
            }
        }
        let Some(protocol) = protocol else {
            self.state = ServerState::Done;
            let response = message_to_bytes(&[Repr::new(Body::NextProtocol(vec![])), Repr::end_of_message()]);
            return KeServerStep::Respond { response, outcome: KeServerOutcome::NoCommonProtocol };
        };
        let offered = aeads.unwrap_or_default();
        let chosen = self.config.aeads.iter().copied().find(|a| offered.contains(&a.id()));
        match chosen {
            Some(aead) => {
                self.state = ServerState::AwaitingKeys(protocol, aead);
                KeServerStep::ExportKeys(aead)
            }
            None => {
                self.state = ServerState::Done;
                let response = message_to_bytes(&[
                    Repr::new(Body::NextProtocol(vec![protocol])),
                    Repr::new(Body::AeadAlgorithm(vec![])),
                    Repr::end_of_message(),
                ]);
                KeServerStep::Respond { response, outcome: KeServerOutcome::NoCommonAead }
            }
        }
    }

    /// The response after [`KeServerStep::ExportKeys`]: `keys` exported for
    /// that AEAD, cookies sealed under `master`'s current key. Called at any
    /// other time, or with keys of another AEAD, it gives an Internal Server
    /// Error response (Error 2) instead.
    pub fn respond(&mut self, keys: &SessionKeys, master: &MasterKeys, rng: &mut dyn NtsRng) -> Vec<u8> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        let (protocol, aead) = match state {
            ServerState::AwaitingKeys(p, a) if a == keys.aead => (p, a),
            _ => return error_response(ErrorCode::INTERNAL_SERVER_ERROR),
        };
        let mut records = vec![
            Repr::new(Body::NextProtocol(vec![protocol])),
            Repr::new(Body::AeadAlgorithm(vec![aead.id()])),
        ];
        if let Some(s) = &self.config.ntp_server {
            records.push(Repr::new(Body::Server(s.as_bytes().to_vec())));
        }
        if let Some(p) = self.config.ntp_port {
            records.push(Repr::new(Body::Port(p)));
        }
        for _ in 0..self.config.cookie_count {
            records.push(Repr::new(Body::NewCookie(master.seal(keys, rng))));
        }
        records.push(Repr::end_of_message());
        message_to_bytes(&records)
    }

    /// The protocol agreed on, from [`KeServerStep::ExportKeys`] until
    /// [`KeServer::respond`]: the keys are exported for it (RFC 8915 §5.1).
    pub fn protocol(&self) -> Option<ProtocolId> {
        match self.state {
            ServerState::AwaitingKeys(p, _) => Some(p),
            _ => None,
        }
    }

    /// The daemon's timeout fired: the Bad Request response to write before
    /// closing, if the request was still incomplete.
    pub fn timed_out(&mut self) -> Option<Vec<u8>> {
        self.close_early(KeError::Timeout)
    }

    /// The stream ended (close_notify or EOF): the Bad Request response, if
    /// the request was incomplete (the client may no longer read it).
    pub fn end_of_input(&mut self) -> Option<Vec<u8>> {
        self.close_early(KeError::Truncated)
    }

    fn close_early(&mut self, e: KeError) -> Option<Vec<u8>> {
        match self.state {
            ServerState::Reading => match self.refuse(e) {
                KeServerStep::Respond { response, .. } => Some(response),
                _ => None,
            },
            _ => None,
        }
    }
}

/// NTS-KE client settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeClientConfig {
    /// AEADs to offer, most preferred first. Default: AES-SIV-CMAC-256,
    /// AES-128-GCM-SIV, AES-SIV-CMAC-512.
    pub aeads: Vec<Aead>,
    /// NTPv4 Server Negotiation to send (the NTP server the client wishes), if any.
    pub ntp_server: Option<String>,
    /// NTPv4 Port Negotiation to send, if any (only sent with a server).
    pub ntp_port: Option<u16>,
    /// The one protocol asked for: NTPv4 (the default) or the NTPv5 draft
    /// (0x8001, draft-ietf-ntp-ntpv5-07 §11). The response must name it.
    pub protocol: ProtocolId,
}

impl Default for KeClientConfig {
    fn default() -> Self {
        KeClientConfig { aeads: Aead::ALL.to_vec(), ntp_server: None, ntp_port: None, protocol: ProtocolId::NTPV4 }
    }
}

/// What the client learned from a good response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeResponse {
    /// The agreed protocol (NTPv4).
    pub protocol: ProtocolId,
    /// The agreed AEAD: export keys for it.
    pub aead: Aead,
    /// The cookies, in the order received (at most [`MAX_RESPONSE_COOKIES`]).
    pub cookies: Vec<Vec<u8>>,
    /// The NTP server to use, if the server named one (else the KE server's address).
    pub ntp_server: Option<String>,
    /// The NTP port to use, if the server named one (else 123).
    pub ntp_port: Option<u16>,
}

/// What the daemon does next on a KE client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum KeClientStep {
    /// Read more octets.
    NeedMore,
    /// The response is complete (or broke a rule): close the connection.
    Done(Result<KeResponse, KeError>),
    /// The exchange is already over; octets received now are ignored.
    Finished,
}

#[derive(Clone, Debug, Default)]
struct ResponseSeen {
    protocols: Option<Vec<ProtocolId>>,
    aeads: Option<Vec<AeadId>>,
    server: Option<Vec<u8>>,
    port: Option<u16>,
    cookies: Vec<Vec<u8>>,
}

/// One NTS-KE client connection. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct KeClient {
    config: KeClientConfig,
    stream: RecordStream,
    seen: ResponseSeen,
    done: bool,
}

impl KeClient {
    /// A client with these settings.
    pub fn new(config: KeClientConfig) -> KeClient {
        KeClient { config, stream: RecordStream::new(KE_MAX_RESPONSE_LEN), seen: ResponseSeen::default(), done: false }
    }

    /// The request to write after the TLS handshake.
    pub fn request(&self) -> Vec<u8> {
        let mut records = vec![
            Repr::new(Body::NextProtocol(vec![self.config.protocol])),
            Repr::new(Body::AeadAlgorithm(self.config.aeads.iter().map(|a| a.id()).collect())),
        ];
        if let Some(s) = &self.config.ntp_server {
            records.push(Repr::new(Body::Server(s.as_bytes().to_vec())));
            if let Some(p) = self.config.ntp_port {
                records.push(Repr::new(Body::Port(p)));
            }
        }
        records.push(Repr::end_of_message());
        message_to_bytes(&records)
    }

    /// Feeds octets of the response as TLS delivered them.
    pub fn receive(&mut self, data: &[u8]) -> KeClientStep {
        if self.done {
            return KeClientStep::Finished;
        }
        let seen = &mut self.seen;
        let mut on_record = |r: Repr| -> Result<(), KeError> {
            let t = r.body.record_type();
            match r.body {
                Body::EndOfMessage | Body::NextProtocol(_) if !r.critical => Err(KeError::NotCritical { record_type: t }),
                Body::EndOfMessage => Ok(()),
                Body::Error(c) => Err(KeError::ServerError(c)),
                Body::Warning(c) => Err(KeError::ServerWarning(c)),
                Body::NextProtocol(v) => once(&mut seen.protocols, v, t),
                Body::AeadAlgorithm(v) => once(&mut seen.aeads, v, t),
                Body::Server(s) => once(&mut seen.server, s, t),
                Body::Port(p) => once(&mut seen.port, p, t),
                Body::NewCookie(c) => {
                    if !c.is_empty() && seen.cookies.len() < MAX_RESPONSE_COOKIES {
                        seen.cookies.push(c);
                    }
                    Ok(())
                }
                Body::Unknown { record_type, .. } if r.critical => Err(KeError::UnrecognizedCritical { record_type }),
                Body::Unknown { .. } => Ok(()),
            }
        };
        match self.stream.push(data, &mut on_record) {
            Ok(false) => KeClientStep::NeedMore,
            Ok(true) => {
                self.done = true;
                KeClientStep::Done(self.judge())
            }
            Err(e) => {
                self.done = true;
                KeClientStep::Done(Err(e))
            }
        }
    }

    /// The stream ended: if the response was incomplete, the error.
    pub fn end_of_input(&mut self) -> Option<KeError> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(KeError::Truncated)
    }

    fn judge(&mut self) -> Result<KeResponse, KeError> {
        let seen = std::mem::take(&mut self.seen);
        let protocols = seen.protocols.ok_or(KeError::MissingNextProtocol)?;
        if let Some(&p) = protocols.iter().find(|&&p| p != self.config.protocol) {
            return Err(KeError::UnexpectedProtocol(p));
        }
        if protocols.is_empty() {
            return Err(KeError::NoCommonProtocol);
        }
        let aeads = seen.aeads.ok_or(KeError::MissingAead)?;
        let id = match aeads[..] {
            [] => return Err(KeError::NoCommonAead),
            [one] => one,
            _ => return Err(KeError::MultipleAeads),
        };
        let aead = Aead::from_id(id).filter(|a| self.config.aeads.contains(a)).ok_or(KeError::UnexpectedAead(id))?;
        let ntp_server = match seen.server {
            None => None,
            Some(b) => {
                let ok = !b.is_empty() && b.iter().all(|c| c.is_ascii_graphic()) && !b.contains(&b'%');
                Some(String::from_utf8(b).ok().filter(|_| ok).ok_or(KeError::BadServerName)?)
            }
        };
        if seen.cookies.is_empty() {
            return Err(KeError::NoCookies);
        }
        Ok(KeResponse { protocol: self.config.protocol, aead, cookies: seen.cookies, ntp_server, ntp_port: seen.port })
    }
}

/// One NTS-KE record as a trace may show it: type, Critical Bit, body
/// length, and the body only where it is public and short (the lists of
/// Next Protocol, Error, Warning, AEAD Algorithm and Port records, the name
/// of a Server record). Cookie octets never appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// Record type (Critical Bit cleared).
    pub kind: u16,
    /// The Critical Bit.
    pub critical: bool,
    /// Body length, octets.
    pub body_len: usize,
    /// The body as 16-bit values (types 1, 2, 3, 4 and 7).
    pub values: Vec<u16>,
    /// The body as text (type 6), lossy.
    pub text: Option<String>,
}

/// The records of one NTS-KE message, read straight from its octets (not
/// through the state machines, so a trace check does not rely on them), up
/// to the first record that runs past the end. Octets after End of Message
/// are reported as more records, so a check can see them.
pub fn summarize_records(msg: &[u8]) -> Vec<RecordSummary> {
    let mut out = Vec::new();
    let mut rest = msg;
    while rest.len() >= HEADER_LEN {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(body) = rest.get(HEADER_LEN..HEADER_LEN + len) else { break };
        let kind = t & !crate::wire::ntske::CRITICAL_BIT;
        let listed = matches!(kind, record_type::NEXT_PROTOCOL | record_type::ERROR | record_type::WARNING | record_type::AEAD_ALGORITHM | record_type::PORT);
        let values = if listed { body.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect() } else { Vec::new() };
        let text = (kind == record_type::SERVER).then(|| String::from_utf8_lossy(body).into_owned());
        out.push(RecordSummary { kind, critical: t & crate::wire::ntske::CRITICAL_BIT != 0, body_len: len, values, text });
        rest = &rest[HEADER_LEN + len..];
    }
    out
}

#[cfg(test)]
mod tests;
