//! NTS Key Establishment records and messages (RFC 8915 §4, Figure 2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C|         Record Type         |          Body Length          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                           Record Body                         .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Unlike an NTP extension field, Body Length counts the body only. An NTS-KE
//! *message* (a request or a response) is a sequence of records ended by an
//! End of Message record; nothing else delimits it.
//!
//! The layers, smallest first:
//! - [`Record`]: a view of one record in a buffer (any type, any body);
//! - [`Repr`]: one decoded record, critical bit plus a typed [`Body`]; the
//!   body-length rules of RFC 8915 §4.1 are enforced here;
//! - [`parse_message`] / [`emit_message`]: a whole message, strictly;
//! - [`MessageReader`]: NTS-KE runs over a TLS stream, so a message arrives in
//!   pieces; [`MessageReader::scan`] says, without allocating, whether a buffer
//!   holds a whole message yet, and refuses messages above a size limit;
//! - [`check_request`], [`check_response`], [`check_exchange`]: the placement
//!   and critical-bit rules of RFC 8915 §4 as [`Problem`]s, for conformance
//!   reports. The parser does not apply them, so a checker can see them.
//!
//! `parse_message` followed by `emit_message` reproduces the input exactly,
//! critical bits, unknown record types and code points included.

use core::fmt;

use super::{check_len, read_u16, Error, Problem, Result};

mod field {
    use core::ops::Range;
    pub const TYPE: Range<usize> = 0..2;
    pub const BODY_LEN: Range<usize> = 2..4;
    pub const BODY: usize = 4;
}

/// Length of a record header (type word and body length) in octets.
pub const HEADER_LEN: usize = field::BODY;

/// The largest body a record can carry: Body Length is 16 bits.
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

/// The most 16-bit IDs a list record can carry.
pub const MAX_LIST_ITEMS: usize = MAX_BODY_LEN / 2;

/// The Critical Bit: the most significant bit of the type word.
pub const CRITICAL_BIT: u16 = 0x8000;

/// Default limit of [`MessageReader`]: 64 KiB. RFC 8915 §4 says servers MUST
/// accept requests of at least 1024 octets and clients SHOULD accept responses
/// of at least 65536 octets.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 65536;

/// Record type numbers (RFC 8915 §7.6, Table 4).
pub mod record_type {
    /// 0: End of Message (RFC 8915 §4.1.1).
    pub const END_OF_MESSAGE: u16 = 0;
    /// 1: NTS Next Protocol Negotiation (RFC 8915 §4.1.2).
    pub const NEXT_PROTOCOL: u16 = 1;
    /// 2: Error (RFC 8915 §4.1.3).
    pub const ERROR: u16 = 2;
    /// 3: Warning (RFC 8915 §4.1.4).
    pub const WARNING: u16 = 3;
    /// 4: AEAD Algorithm Negotiation (RFC 8915 §4.1.5).
    pub const AEAD_ALGORITHM: u16 = 4;
    /// 5: New Cookie for NTPv4 (RFC 8915 §4.1.6).
    pub const NEW_COOKIE: u16 = 5;
    /// 6: NTPv4 Server Negotiation (RFC 8915 §4.1.7).
    pub const SERVER: u16 = 6;
    /// 7: NTPv4 Port Negotiation (RFC 8915 §4.1.8).
    pub const PORT: u16 = 7;
    /// First number of the Private or Experimental Use range (16384–32767).
    pub const PRIVATE_USE_FIRST: u16 = 0x4000;
    /// 0x4001: the NTPv5 draft identity record, which clients implementing a
    /// draft of NTPv5 send non-critical with the draft name in ASCII
    /// (draft-ietf-ntp-ntpv5-07 §11). Private-use range; decoded as
    /// [`super::Body::Unknown`].
    pub const NTPV5_DRAFT_ID: u16 = 0x4001;
    /// The largest record type: the field has 15 bits.
    pub const MAX: u16 = 0x7fff;

    /// The registered (or draft) name of a record type.
    pub fn name(t: u16) -> Option<&'static str> {
        Some(match t {
            END_OF_MESSAGE => "End of Message",
            NEXT_PROTOCOL => "NTS Next Protocol Negotiation",
            ERROR => "Error",
            WARNING => "Warning",
            AEAD_ALGORITHM => "AEAD Algorithm Negotiation",
            NEW_COOKIE => "New Cookie for NTPv4",
            SERVER => "NTPv4 Server Negotiation",
            PORT => "NTPv4 Port Negotiation",
            NTPV5_DRAFT_ID => "NTPv5 draft identity (draft-ietf-ntp-ntpv5)",
            _ => return None,
        })
    }
}

/// A Protocol ID of the "Network Time Security Next Protocols" registry
/// (RFC 8915 §7.7). Any value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId(pub u16);

impl ProtocolId {
    /// 0: NTPv4 (RFC 8915 §7.7, Table 5).
    pub const NTPV4: ProtocolId = ProtocolId(0);
    /// 0x8001: NTPv5 as used by drafts, until IANA assigns a number
    /// (draft-ietf-ntp-ntpv5-07 §11: "[[TBD]] (draft use 0x8001)").
    pub const NTPV5_DRAFT: ProtocolId = ProtocolId(0x8001);

    /// The protocol's name, if known.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("NTPv4"),
            0x8001 => Some("NTPv5 (draft use)"),
            _ => None,
        }
    }
}

/// A Numeric Identifier of the IANA "AEAD Algorithms" registry (RFC 5116 §6),
/// as used in AEAD Algorithm Negotiation records. Any value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AeadId(pub u16);

impl AeadId {
    /// 1: AEAD_AES_128_GCM (RFC 5116).
    pub const AES_128_GCM: AeadId = AeadId(1);
    /// 2: AEAD_AES_256_GCM (RFC 5116).
    pub const AES_256_GCM: AeadId = AeadId(2);
    /// 15: AEAD_AES_SIV_CMAC_256 (RFC 5297); mandatory for NTS servers of
    /// NTPv4 (RFC 8915 §4.1.5).
    pub const AES_SIV_CMAC_256: AeadId = AeadId(15);
    /// 16: AEAD_AES_SIV_CMAC_384 (RFC 5297).
    pub const AES_SIV_CMAC_384: AeadId = AeadId(16);
    /// 17: AEAD_AES_SIV_CMAC_512 (RFC 5297).
    pub const AES_SIV_CMAC_512: AeadId = AeadId(17);
    /// 29: AEAD_CHACHA20_POLY1305 (RFC 8439).
    pub const CHACHA20_POLY1305: AeadId = AeadId(29);
    /// 30: AEAD_AES_128_GCM_SIV (RFC 8452).
    pub const AES_128_GCM_SIV: AeadId = AeadId(30);
    /// 31: AEAD_AES_256_GCM_SIV (RFC 8452).
    pub const AES_256_GCM_SIV: AeadId = AeadId(31);

    /// The registered name, for the identifiers named above.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            1 => Some("AEAD_AES_128_GCM"),
            2 => Some("AEAD_AES_256_GCM"),
            15 => Some("AEAD_AES_SIV_CMAC_256"),
            16 => Some("AEAD_AES_SIV_CMAC_384"),
            17 => Some("AEAD_AES_SIV_CMAC_512"),
            29 => Some("AEAD_CHACHA20_POLY1305"),
            30 => Some("AEAD_AES_128_GCM_SIV"),
            31 => Some("AEAD_AES_256_GCM_SIV"),
            _ => None,
        }
    }
}

/// An error code of the "Network Time Security Error Codes" registry
/// (RFC 8915 §4.1.3, §7.8 Table 6). Any value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 0: Unrecognized Critical Record (the IANA table says "Extension").
    pub const UNRECOGNIZED_CRITICAL_RECORD: ErrorCode = ErrorCode(0);
    /// 1: Bad Request.
    pub const BAD_REQUEST: ErrorCode = ErrorCode(1);
    /// 2: Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: ErrorCode = ErrorCode(2);

    /// The registered name, if any.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("Unrecognized Critical Record"),
            1 => Some("Bad Request"),
            2 => Some("Internal Server Error"),
            _ => None,
        }
    }
}

/// A warning code of the "Network Time Security Warning Codes" registry
/// (RFC 8915 §4.1.4, §7.8 Table 7). RFC 8915 defines none, and unrecognized
/// warning codes MUST be treated as errors by clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarningCode(pub u16);

/// Whether a body length is allowed for a record type; the reason if not.
/// Shared by [`Repr::parse`] and [`MessageReader::scan`] so that a message the
/// reader calls complete always parses.
fn body_len_rule(record_type: u16, len: usize) -> core::result::Result<(), &'static str> {
    use record_type::*;
    match record_type {
        END_OF_MESSAGE if len != 0 => Err("End of Message must have an empty body"),
        NEXT_PROTOCOL | AEAD_ALGORITHM if len % 2 != 0 => Err("list of 16-bit IDs has an odd number of octets"),
        ERROR | WARNING | PORT if len != 2 => Err("body must be exactly 2 octets"),
        _ => Ok(()),
    }
}

fn what_of(record_type: u16) -> &'static str {
    record_type::name(record_type).unwrap_or("NTS-KE record")
}

/// A read/write view of one NTS-KE record at the start of a buffer. The buffer
/// may go on past the record (the rest of a message); [`Record::total_len`]
/// says where the record ends.
#[derive(Debug, Clone)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is shorter
    /// than the header, or than the body length says. For buffers the caller sized.
    pub const fn new_unchecked(buffer: T) -> Self {
        Record { buffer }
    }

    /// Wraps a buffer after checking that it holds the header and the whole body.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let r = Record { buffer };
        r.check_len()?;
        Ok(r)
    }

    /// Checks that the buffer holds the header and as many body octets as the
    /// Body Length field says.
    pub fn check_len(&self) -> Result<()> {
        check_len("NTS-KE record header", self.b(), HEADER_LEN)?;
        check_len(what_of(self.record_type()), self.b(), self.total_len())
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The Critical Bit.
    pub fn critical(&self) -> bool {
        read_u16(self.b(), field::TYPE.start) & CRITICAL_BIT != 0
    }

    /// The 15-bit Record Type.
    pub fn record_type(&self) -> u16 {
        read_u16(self.b(), field::TYPE.start) & !CRITICAL_BIT
    }

    /// The Body Length field, in octets.
    pub fn body_len(&self) -> u16 {
        read_u16(self.b(), field::BODY_LEN.start)
    }

    /// Header plus body, in octets: where the next record starts.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.body_len())
    }

    /// The body, as long as Body Length says.
    pub fn body(&self) -> &[u8] {
        &self.b()[field::BODY..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Record<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the Critical Bit and the Record Type (masked to 15 bits) at once.
    pub fn set_type(&mut self, critical: bool, record_type: u16) {
        let word = (record_type & !CRITICAL_BIT) | if critical { CRITICAL_BIT } else { 0 };
        self.bm()[field::TYPE].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the Critical Bit, keeping the Record Type.
    pub fn set_critical(&mut self, critical: bool) {
        let t = self.record_type();
        self.set_type(critical, t);
    }

    /// Sets the Record Type (masked to 15 bits), keeping the Critical Bit.
    pub fn set_record_type(&mut self, record_type: u16) {
        let c = self.critical();
        self.set_type(c, record_type);
    }

    /// Sets the Body Length field.
    pub fn set_body_len(&mut self, len: u16) {
        self.bm()[field::BODY_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// The body, writable, as long as Body Length says.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.bm()[field::BODY..end]
    }
}

/// The typed body of a record. Record types without a variant of their own
/// are kept in [`Body::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Type 0, End of Message: the body is empty.
    EndOfMessage,
    /// Type 1, NTS Next Protocol Negotiation: Protocol IDs, in order.
    NextProtocol(Vec<ProtocolId>),
    /// Type 2, Error.
    Error(ErrorCode),
    /// Type 3, Warning.
    Warning(WarningCode),
    /// Type 4, AEAD Algorithm Negotiation: AEAD IDs, in order of preference.
    AeadAlgorithm(Vec<AeadId>),
    /// Type 5, New Cookie for NTPv4: opaque.
    NewCookie(Vec<u8>),
    /// Type 6, NTPv4 Server Negotiation: the octets as sent. They should be an
    /// ASCII host name or address ([`Body::server_ascii`]); this is checked by
    /// [`check_request`]/[`check_response`], not by the parser.
    Server(Vec<u8>),
    /// Type 7, NTPv4 Port Negotiation: a UDP port.
    Port(u16),
    /// Any other record type, body kept as sent. `record_type` must be at most
    /// 0x7fff and not one of the types above, or the record will not parse back
    /// as `Unknown`.
    Unknown {
        /// The 15-bit record type.
        record_type: u16,
        /// The body octets.
        body: Vec<u8>,
    },
}

impl Body {
    /// The record type number of this body.
    pub fn record_type(&self) -> u16 {
        use record_type::*;
        match self {
            Body::EndOfMessage => END_OF_MESSAGE,
            Body::NextProtocol(_) => NEXT_PROTOCOL,
            Body::Error(_) => ERROR,
            Body::Warning(_) => WARNING,
            Body::AeadAlgorithm(_) => AEAD_ALGORITHM,
            Body::NewCookie(_) => NEW_COOKIE,
            Body::Server(_) => SERVER,
            Body::Port(_) => PORT,
            Body::Unknown { record_type, .. } => *record_type,
        }
    }

    /// The Critical Bit RFC 8915 §4.1 asks a sender to use: set where it MUST
    /// be (End of Message, Next Protocol, Error, Warning) and on AEAD Algorithm
    /// Negotiation (MAY); clear on New Cookie (SHOULD NOT), on Server and Port
    /// Negotiation (clients SHOULD NOT) and on unknown types.
    pub fn recommended_critical(&self) -> bool {
        matches!(
            self,
            Body::EndOfMessage | Body::NextProtocol(_) | Body::Error(_) | Body::Warning(_) | Body::AeadAlgorithm(_)
        )
    }

    /// The Server Negotiation name as text, if this is one and it is ASCII.
    pub fn server_ascii(&self) -> Option<&str> {
        match self {
            Body::Server(b) if b.is_ascii() => core::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Octets the body takes on the wire (bodies over [`MAX_BODY_LEN`] are cut;
    /// see [`Repr::emit`]).
    pub fn wire_len(&self) -> usize {
        match self {
            Body::EndOfMessage => 0,
            Body::NextProtocol(v) => 2 * v.len().min(MAX_LIST_ITEMS),
            Body::AeadAlgorithm(v) => 2 * v.len().min(MAX_LIST_ITEMS),
            Body::Error(_) | Body::Warning(_) | Body::Port(_) => 2,
            Body::NewCookie(b) | Body::Server(b) | Body::Unknown { body: b, .. } => b.len().min(MAX_BODY_LEN),
        }
    }
}

/// One decoded NTS-KE record: the Critical Bit as sent and the typed body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The Critical Bit.
    pub critical: bool,
    /// The record type and body.
    pub body: Body,
}

impl Repr {
    /// A record with the Critical Bit RFC 8915 recommends for its type
    /// ([`Body::recommended_critical`]).
    pub fn new(body: Body) -> Repr {
        Repr { critical: body.recommended_critical(), body }
    }

    /// An End of Message record with the Critical Bit set.
    pub fn end_of_message() -> Repr {
        Repr::new(Body::EndOfMessage)
    }

    /// Decodes one record. Enforces the body-length rules of RFC 8915 §4.1
    /// (End of Message empty; Error, Warning and Port exactly 2 octets; ID
    /// lists an even number of octets) as [`Error::Malformed`], with the
    /// offset of the Body Length field. Placement and critical-bit rules are
    /// left to [`check_request`]/[`check_response`].
    pub fn parse<T: AsRef<[u8]>>(record: &Record<T>) -> Result<Repr> {
        record.check_len()?;
        let t = record.record_type();
        let body = record.body();
        if let Err(reason) = body_len_rule(t, body.len()) {
            return Err(Error::Malformed { what: what_of(t), offset: field::BODY_LEN.start, reason });
        }
        let u16_at = |i: usize| read_u16(body, i);
        let body = match t {
            record_type::END_OF_MESSAGE => Body::EndOfMessage,
            record_type::NEXT_PROTOCOL => Body::NextProtocol((0..body.len()).step_by(2).map(|i| ProtocolId(u16_at(i))).collect()),
            record_type::ERROR => Body::Error(ErrorCode(u16_at(0))),
            record_type::WARNING => Body::Warning(WarningCode(u16_at(0))),
            record_type::AEAD_ALGORITHM => Body::AeadAlgorithm((0..body.len()).step_by(2).map(|i| AeadId(u16_at(i))).collect()),
            record_type::NEW_COOKIE => Body::NewCookie(body.to_vec()),
            record_type::SERVER => Body::Server(body.to_vec()),
            record_type::PORT => Body::Port(u16_at(0)),
            _ => Body::Unknown { record_type: t, body: body.to_vec() },
        };
        Ok(Repr { critical: record.critical(), body })
    }

    /// Octets [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.wire_len()
    }

    /// Writes the record into the first [`Repr::buffer_len`] octets. A body
    /// longer than [`MAX_BODY_LEN`] octets cannot be represented and is cut
    /// to fit (lists to whole IDs); an unknown record type is masked to 15 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, record: &mut Record<T>) {
        let len = self.body.wire_len();
        record.set_type(self.critical, self.body.record_type());
        // wire_len is at most MAX_BODY_LEN, so this never saturates.
        record.set_body_len(u16::try_from(len).unwrap_or(u16::MAX));
        let out = record.body_mut();
        match &self.body {
            Body::EndOfMessage => {}
            Body::NextProtocol(v) => {
                for (chunk, id) in out.chunks_exact_mut(2).zip(v) {
                    chunk.copy_from_slice(&id.0.to_be_bytes());
                }
            }
            Body::AeadAlgorithm(v) => {
                for (chunk, id) in out.chunks_exact_mut(2).zip(v) {
                    chunk.copy_from_slice(&id.0.to_be_bytes());
                }
            }
            Body::Error(ErrorCode(c)) | Body::Warning(WarningCode(c)) | Body::Port(c) => out.copy_from_slice(&c.to_be_bytes()),
            Body::NewCookie(b) | Body::Server(b) | Body::Unknown { body: b, .. } => out.copy_from_slice(&b[..len]),
        }
    }

    /// Writes the record to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut Record::new_unchecked(&mut buf[..]));
        buf
    }

    /// Whether this is a record of a type this module does not know, with the
    /// Critical Bit set: a server MUST answer such a request with error 0
    /// (RFC 8915 §4, §4.1.3).
    pub fn is_unrecognized_critical(&self) -> bool {
        self.critical && matches!(self.body, Body::Unknown { .. })
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.body.record_type();
        write!(f, "{}{}", if self.critical { "critical " } else { "" }, record_type::name(t).unwrap_or("record"))?;
        match &self.body {
            Body::EndOfMessage => Ok(()),
            Body::NextProtocol(v) => {
                let names: Vec<String> = v.iter().map(|p| p.name().map_or_else(|| format!("{}", p.0), String::from)).collect();
                write!(f, " [{}]", names.join(", "))
            }
            Body::AeadAlgorithm(v) => {
                let names: Vec<String> = v.iter().map(|a| a.name().map_or_else(|| format!("{}", a.0), String::from)).collect();
                write!(f, " [{}]", names.join(", "))
            }
            Body::Error(c) => write!(f, " {} ({})", c.0, c.name().unwrap_or("unregistered")),
            Body::Warning(c) => write!(f, " {}", c.0),
            Body::NewCookie(b) => write!(f, " ({} octets)", b.len()),
            Body::Server(b) => write!(f, " {:?}", String::from_utf8_lossy(b)),
            Body::Port(p) => write!(f, " {p}"),
            Body::Unknown { body, .. } => write!(f, " type {t} ({} octets)", body.len()),
        }
    }
}

/// How far a buffer gets towards a whole NTS-KE message; see [`MessageReader::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// The buffer is the start of a message that is not complete yet. The
    /// caller MUST read more from the stream until the buffer holds at least
    /// `needed` octets and scan again. If the stream ends first (TLS
    /// close_notify), the message is truncated: [`parse_message`] on what was
    /// received reports it as [`Error::Truncated`].
    NeedMore {
        /// Octets the buffer must hold before the next scan can progress.
        needed: usize,
    },
    /// The first `len` octets are a whole message ending with End of Message,
    /// and `parse_message(&buf[..len])` succeeds. Octets after `len` are not
    /// part of it: the caller decides what they mean (RFC 8915 §4 allows
    /// only one message each way).
    Complete {
        /// Length of the message in octets.
        len: usize,
    },
}

/// Finds the end of an NTS-KE message in a stream buffer, incrementally and
/// without allocating. Holds only the size limit, so the caller keeps the
/// buffer and rescans it whenever more bytes arrive (each scan costs one step
/// per record header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageReader {
    max_len: usize,
}

impl Default for MessageReader {
    fn default() -> Self {
        MessageReader::new()
    }
}

impl MessageReader {
    /// A reader with the default limit, [`DEFAULT_MAX_MESSAGE_LEN`].
    pub const fn new() -> Self {
        MessageReader { max_len: DEFAULT_MAX_MESSAGE_LEN }
    }

    /// A reader that refuses messages longer than `max_len` octets.
    pub const fn with_max_len(max_len: usize) -> Self {
        MessageReader { max_len }
    }

    /// The limit, in octets.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// Looks at the records at the start of `buf`. Rejects, as soon as their
    /// header has arrived, records that break a body-length rule
    /// ([`Error::Malformed`]) and records that would end past the limit
    /// ([`Error::Unsupported`], with the length the message would need);
    /// otherwise says whether more octets are needed or where the message ends.
    pub fn scan(&self, buf: &[u8]) -> Result<Progress> {
        scan(buf, self.max_len).map(|(p, _)| p)
    }

    /// [`MessageReader::scan`], then [`parse_message`] of a complete message.
    /// `Ok(None)` means more octets are needed; `Ok(Some((records, len)))`
    /// gives the records and the message length.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Vec<Repr>, usize)>> {
        match self.scan(buf)? {
            Progress::NeedMore { .. } => Ok(None),
            Progress::Complete { len } => parse_records(&buf[..len]).map(|r| Some((r, len))),
        }
    }
}

fn too_long(needed: usize) -> Error {
    Error::Unsupported {
        what: "NTS-KE message longer than the reader's limit",
        value: u32::try_from(needed).unwrap_or(u32::MAX),
    }
}

/// The scanner behind [`MessageReader::scan`] and [`parse_message`]; also
/// names what is missing when more octets are needed.
fn scan(buf: &[u8], max_len: usize) -> Result<(Progress, &'static str)> {
    let mut pos = 0usize;
    // Bounded: every pass moves `pos` forward by at least HEADER_LEN, and the
    // loop returns once the next header would end past `buf`.
    loop {
        let header_end = pos.saturating_add(HEADER_LEN);
        if header_end > max_len {
            return Err(too_long(header_end));
        }
        if header_end > buf.len() {
            let what = if pos == buf.len() { "NTS-KE message (no End of Message)" } else { "NTS-KE record header" };
            return Ok((Progress::NeedMore { needed: header_end }, what));
        }
        let record = Record::new_unchecked(&buf[pos..]);
        let t = record.record_type();
        let len = usize::from(record.body_len());
        if let Err(reason) = body_len_rule(t, len) {
            return Err(Error::Malformed { what: what_of(t), offset: pos + field::BODY_LEN.start, reason });
        }
        let end = header_end.saturating_add(len);
        if end > max_len {
            return Err(too_long(end));
        }
        if end > buf.len() {
            return Ok((Progress::NeedMore { needed: end }, what_of(t)));
        }
        if t == record_type::END_OF_MESSAGE {
            return Ok((Progress::Complete { len: end }, ""));
        }
        pos = end;
    }
}

/// Moves a Malformed offset from record-relative to message-relative.
fn shift(e: Error, by: usize) -> Error {
    match e {
        Error::Malformed { what, offset, reason } => Error::Malformed { what, offset: offset + by, reason },
        other => other,
    }
}

/// Decodes records back to back; `buf` must have been scanned complete.
fn parse_records(buf: &[u8]) -> Result<Vec<Repr>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let record = Record::new_checked(&buf[pos..]).map_err(|e| shift(e, pos))?;
        out.push(Repr::parse(&record).map_err(|e| shift(e, pos))?);
        pos += record.total_len();
    }
    Ok(out)
}

/// Decodes a whole NTS-KE message: records up to and including the first End
/// of Message, which must be the last octets of `buf`.
///
/// - a record (or its body) that runs past the end of `buf`, or a buffer that
///   ends without End of Message: [`Error::Truncated`];
/// - a body-length rule broken (see [`Repr::parse`]), or octets after End of
///   Message: [`Error::Malformed`], offset relative to `buf`.
///
/// For a stream whose end is not known yet, use [`MessageReader`].
pub fn parse_message(buf: &[u8]) -> Result<Vec<Repr>> {
    match scan(buf, usize::MAX)? {
        (Progress::NeedMore { needed }, what) => Err(Error::Truncated { what, needed, available: buf.len() }),
        (Progress::Complete { len }, _) if len != buf.len() => {
            Err(Error::Malformed { what: "NTS-KE message", offset: len, reason: "octets after End of Message" })
        }
        (Progress::Complete { .. }, _) => parse_records(buf),
    }
}

/// Octets [`emit_message`] writes.
pub fn message_len(records: &[Repr]) -> usize {
    records.iter().map(Repr::buffer_len).sum()
}

/// Writes the records back to back, as given (End of Message is not added),
/// into the first [`message_len`] octets of `buf`, and returns that length.
pub fn emit_message(records: &[Repr], buf: &mut [u8]) -> usize {
    let mut pos = 0;
    for r in records {
        r.emit(&mut Record::new_unchecked(&mut buf[pos..]));
        pos += r.buffer_len();
    }
    pos
}

/// Writes the records to a new vector.
pub fn message_to_bytes(records: &[Repr]) -> Vec<u8> {
    let mut buf = vec![0u8; message_len(records)];
    emit_message(records, &mut buf);
    buf
}

/// The index of the first record with an unknown type and the Critical Bit
/// set; a server MUST answer such a request with Error 0 (RFC 8915 §4.1.3).
pub fn first_unrecognized_critical(records: &[Repr]) -> Option<usize> {
    records.iter().position(Repr::is_unrecognized_critical)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

impl Side {
    fn noun(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// The protocol lists of a message's NTS Next Protocol Negotiation records, in order.
pub fn next_protocols(records: &[Repr]) -> impl Iterator<Item = &Vec<ProtocolId>> {
    records.iter().filter_map(|r| match &r.body {
        Body::NextProtocol(v) => Some(v),
        _ => None,
    })
}

/// The AEAD lists of a message's AEAD Algorithm Negotiation records, in order.
pub fn aead_lists(records: &[Repr]) -> impl Iterator<Item = &Vec<AeadId>> {
    records.iter().filter_map(|r| match &r.body {
        Body::AeadAlgorithm(v) => Some(v),
        _ => None,
    })
}

fn is_error_response(records: &[Repr]) -> bool {
    records.iter().any(|r| matches!(r.body, Body::Error(_)))
}

fn check(records: &[Repr], side: Side) -> Vec<Problem> {
    let mut p = Vec::new();
    let noun = side.noun();

    // §4.1.1 End of Message: exactly once, last, critical.
    let eom: Vec<usize> = records.iter().enumerate().filter(|(_, r)| r.body == Body::EndOfMessage).map(|(i, _)| i).collect();
    if eom.is_empty() {
        p.push(Problem::new("RFC 8915 §4.1.1", format!("the {noun} has no End of Message record")));
    } else {
        if eom.len() > 1 {
            p.push(Problem::new("RFC 8915 §4.1.1", format!("the {noun} has {} End of Message records; exactly one is allowed", eom.len())));
        }
        if eom.last() != Some(&(records.len() - 1)) {
            p.push(Problem::new("RFC 8915 §4.1.1", format!("End of Message is not the last record of the {noun}")));
        }
    }
    for &i in &eom {
        if !records[i].critical {
            p.push(Problem::new("RFC 8915 §4.1.1", format!("End of Message (record {i}) does not have the Critical Bit set")));
        }
    }

    // §4 and §4.1.2 Next Protocol Negotiation: exactly once (error responses
    // are exempt, §4), critical, and non-empty in a request.
    let error_response = side == Side::Response && is_error_response(records);
    let nps: Vec<&Vec<ProtocolId>> = next_protocols(records).collect();
    if nps.is_empty() && !error_response {
        p.push(Problem::new("RFC 8915 §4.1.2", format!("the {noun} has no NTS Next Protocol Negotiation record")));
    }
    if nps.len() > 1 {
        p.push(Problem::new(
            "RFC 8915 §4.1.2",
            format!("the {noun} has {} NTS Next Protocol Negotiation records; exactly one is allowed", nps.len()),
        ));
    }
    if side == Side::Request && nps.first().is_some_and(|v| v.is_empty()) {
        p.push(Problem::new("RFC 8915 §4.1.2", "the request's NTS Next Protocol Negotiation lists no protocol"));
    }

    // Critical bits that MUST be set, and records a client MUST NOT send.
    for (i, r) in records.iter().enumerate() {
        let (section, must_be_critical, client_must_not) = match r.body {
            Body::NextProtocol(_) => ("RFC 8915 §4.1.2", true, false),
            Body::Error(_) => ("RFC 8915 §4.1.3", true, true),
            Body::Warning(_) => ("RFC 8915 §4.1.4", true, true),
            Body::NewCookie(_) => ("RFC 8915 §4.1.6", false, true),
            _ => continue,
        };
        let name = what_of(r.body.record_type());
        if must_be_critical && !r.critical {
            p.push(Problem::new(section, format!("{name} (record {i}) does not have the Critical Bit set")));
        }
        if client_must_not && side == Side::Request {
            p.push(Problem::new(section, format!("clients MUST NOT send {name} records (record {i})")));
        }
    }

    // §4.1.5 AEAD Algorithm Negotiation: exactly once when NTPv4 is offered;
    // at least one algorithm in a request, at most one in a response.
    let offers_ntpv4 = nps.first().is_some_and(|v| v.contains(&ProtocolId::NTPV4));
    let aeads: Vec<&Vec<AeadId>> = aead_lists(records).collect();
    if offers_ntpv4 && aeads.len() != 1 {
        p.push(Problem::new(
            "RFC 8915 §4.1.5",
            format!("the {noun} lists NTPv4 but has {} AEAD Algorithm Negotiation records; exactly one is required", aeads.len()),
        ));
    }
    for v in &aeads {
        match side {
            Side::Request if v.is_empty() => {
                p.push(Problem::new("RFC 8915 §4.1.5", "the request's AEAD Algorithm Negotiation lists no algorithm"))
            }
            Side::Response if v.len() > 1 => p.push(Problem::new(
                "RFC 8915 §4.1.5",
                format!("the response's AEAD Algorithm Negotiation lists {} algorithms; at most one is allowed", v.len()),
            )),
            _ => {}
        }
    }

    // §4.1.6 New Cookie for NTPv4.
    let cookies: Vec<&Repr> = records.iter().filter(|r| matches!(r.body, Body::NewCookie(_))).collect();
    if side == Side::Response && !error_response && offers_ntpv4 && aeads.first().is_some_and(|v| !v.is_empty()) {
        if cookies.is_empty() {
            p.push(Problem::new("RFC 8915 §4.1.6", "the response accepts NTPv4 with an AEAD algorithm but sends no New Cookie record"));
        } else if cookies.len() != 8 {
            p.push(Problem::new("RFC 8915 §4.1.6", format!("the response sends {} cookies; servers SHOULD send eight", cookies.len())));
        }
    }
    if cookies.iter().any(|r| r.critical) {
        p.push(Problem::new("RFC 8915 §4.1.6", "New Cookie records SHOULD NOT have the Critical Bit set"));
    }

    // §4.1.7 NTPv4 Server Negotiation: at most one; ASCII address or FQDN.
    let servers: Vec<&Repr> = records.iter().filter(|r| matches!(r.body, Body::Server(_))).collect();
    if servers.len() > 1 {
        p.push(Problem::new("RFC 8915 §4.1.7", format!("the {noun} has {} NTPv4 Server Negotiation records; at most one is allowed", servers.len())));
    }
    for r in &servers {
        let Body::Server(name) = &r.body else { continue };
        if name.is_empty() {
            p.push(Problem::new("RFC 8915 §4.1.7", "NTPv4 Server Negotiation is empty; it must be an address or an FQDN"));
        } else if !name.is_ascii() {
            p.push(Problem::new("RFC 8915 §4.1.7", "NTPv4 Server Negotiation is not ASCII (internationalized names must use A-labels)"));
        } else if name.contains(&b'%') {
            p.push(Problem::new("RFC 8915 §4.1.7", "NTPv4 Server Negotiation holds an IPv6 zone identifier, which MUST NOT be included"));
        }
        if side == Side::Request && r.critical {
            p.push(Problem::new("RFC 8915 §4.1.7", "clients SHOULD NOT set the Critical Bit on NTPv4 Server Negotiation"));
        }
    }

    // §4.1.8 NTPv4 Port Negotiation.
    if side == Side::Request && records.iter().any(|r| r.critical && matches!(r.body, Body::Port(_))) {
        p.push(Problem::new("RFC 8915 §4.1.8", "clients SHOULD NOT set the Critical Bit on NTPv4 Port Negotiation"));
    }

    // draft-ietf-ntp-ntpv5-07 §11: draft clients identify the draft in a
    // non-critical ASCII record of type 0x4001.
    let draft_ids: Vec<&Repr> =
        records.iter().filter(|r| r.body.record_type() == record_type::NTPV5_DRAFT_ID && matches!(r.body, Body::Unknown { .. })).collect();
    if side == Side::Request && nps.first().is_some_and(|v| v.contains(&ProtocolId::NTPV5_DRAFT)) && draft_ids.is_empty() {
        p.push(Problem::new(
            "draft-ietf-ntp-ntpv5-07 §11",
            "the request offers NTPv5 (0x8001) without a draft identity record (type 0x4001)",
        ));
    }
    for r in &draft_ids {
        let Body::Unknown { body, .. } = &r.body else { continue };
        if r.critical {
            p.push(Problem::new("draft-ietf-ntp-ntpv5-07 §11", "the NTPv5 draft identity record has the Critical Bit set"));
        }
        if !body.is_ascii() || body.last() == Some(&0) {
            p.push(Problem::new("draft-ietf-ntp-ntpv5-07 §11", "the NTPv5 draft identity must be ASCII without trailing zero octets"));
        }
    }
    p
}

/// Checks the RFC 8915 §4 rules for a client's request, one [`Problem`] per
/// broken rule, each citing its section (e.g. "RFC 8915 §4.1.1"):
/// End of Message exactly once, last and critical (§4.1.1); Next Protocol
/// exactly once, critical, listing at least one protocol (§4.1.2); no Error,
/// Warning or New Cookie records (§4.1.3, §4.1.4, §4.1.6); exactly one AEAD
/// record with at least one algorithm when NTPv4 is offered (§4.1.5); at most
/// one Server Negotiation, ASCII, no zone identifier, not critical (§4.1.7);
/// Port Negotiation not critical (§4.1.8); and the NTPv5 draft identity record
/// when NTPv5 (0x8001) is offered (draft-ietf-ntp-ntpv5-07 §11).
pub fn check_request(records: &[Repr]) -> Vec<Problem> {
    check(records, Side::Request)
}

/// Checks the RFC 8915 §4 rules for a server's response: End of Message
/// (§4.1.1); Next Protocol exactly once and critical unless the response
/// carries an Error (§4, §4.1.2); Error and Warning critical (§4.1.3, §4.1.4);
/// exactly one AEAD record with at most one algorithm when NTPv4 is accepted
/// (§4.1.5); at least one (SHOULD: eight) non-critical New Cookie when NTPv4
/// and an AEAD algorithm are accepted (§4.1.6); at most one Server
/// Negotiation, ASCII, no zone identifier (§4.1.7).
pub fn check_response(records: &[Repr]) -> Vec<Problem> {
    check(records, Side::Response)
}

/// Checks the rules that tie a response to its request (RFC 8915 §4.1.2,
/// §4.1.5): the response's protocols are a subset of the request's; its AEAD
/// algorithm is one the client offered; and if the client offered
/// AEAD_AES_SIV_CMAC_256 and the server accepts NTPv4, the server's AEAD
/// list is not empty. Responses carrying an Error are not checked.
pub fn check_exchange(request: &[Repr], response: &[Repr]) -> Vec<Problem> {
    let mut p = Vec::new();
    if is_error_response(response) {
        return p;
    }
    let offered: Vec<ProtocolId> = next_protocols(request).flatten().copied().collect();
    let accepted: Vec<ProtocolId> = next_protocols(response).flatten().copied().collect();
    for id in accepted.iter().filter(|id| !offered.contains(id)) {
        p.push(Problem::new("RFC 8915 §4.1.2", format!("the response accepts protocol {} that the request did not offer", id.0)));
    }
    let offered_aead: Vec<AeadId> = aead_lists(request).flatten().copied().collect();
    let chosen: Vec<AeadId> = aead_lists(response).flatten().copied().collect();
    for id in chosen.iter().filter(|id| !offered_aead.contains(id)) {
        p.push(Problem::new("RFC 8915 §4.1.5", format!("the response chooses AEAD algorithm {} that the request did not offer", id.0)));
    }
    if offered_aead.contains(&AeadId::AES_SIV_CMAC_256) && accepted.contains(&ProtocolId::NTPV4) && chosen.is_empty() {
        p.push(Problem::new(
            "RFC 8915 §4.1.5",
            "the client offered AEAD_AES_SIV_CMAC_256 and the server accepts NTPv4, but the server chose no AEAD algorithm",
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Every vector below is hand-built from RFC 8915 Figure 2: a 16-bit word of
    // Critical Bit (0x8000) plus Record Type, a 16-bit Body Length counting
    // the body only, then the body as the record's section in §4.1 defines it.

    /// §4.1.1: type 0 with the Critical Bit, empty body.
    const END_OF_MESSAGE: [u8; 4] = [0x80, 0x00, 0x00, 0x00];
    /// §4.1.2: type 1, critical, body = Protocol IDs 0 (NTPv4) and 0x8001 (NTPv5 draft).
    const NEXT_PROTOCOL: [u8; 8] = [0x80, 0x01, 0x00, 0x04, 0x00, 0x00, 0x80, 0x01];
    /// §4.1.3: type 2, critical, body = error code 1 (Bad Request).
    const ERROR: [u8; 6] = [0x80, 0x02, 0x00, 0x02, 0x00, 0x01];
    /// §4.1.4: type 3, critical, body = warning code 0x8000 (private use).
    const WARNING: [u8; 6] = [0x80, 0x03, 0x00, 0x02, 0x80, 0x00];
    /// §4.1.5: type 4, critical (MAY), body = AEAD IDs 15 (AES_SIV_CMAC_256), 17, 30.
    const AEAD: [u8; 10] = [0x80, 0x04, 0x00, 0x06, 0x00, 0x0f, 0x00, 0x11, 0x00, 0x1e];
    /// §4.1.6: type 5, not critical (SHOULD NOT), body = 5 opaque octets.
    const NEW_COOKIE: [u8; 9] = [0x00, 0x05, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x01];
    /// §4.1.7: type 6, critical (servers MAY), body = ASCII "ntp.example".
    const SERVER: [u8; 15] = [0x80, 0x06, 0x00, 0x0b, b'n', b't', b'p', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e'];
    /// §4.1.8: type 7, not critical, body = port 123.
    const PORT: [u8; 6] = [0x00, 0x07, 0x00, 0x02, 0x00, 0x7b];
    /// An unassigned type, 0x1234, critical, 3-octet body.
    const UNKNOWN: [u8; 7] = [0x92, 0x34, 0x00, 0x03, 0x01, 0x02, 0x03];
    /// draft-ietf-ntp-ntpv5-07 §11: type 0x4001, not critical, ASCII draft name.
    const DRAFT_ID: [u8; 13] = [0x40, 0x01, 0x00, 0x09, b'd', b'r', b'a', b'f', b't', b'-', b'0', b'7', b'x'];

    /// A client request as Figure 3 draws it: Next Protocol [NTPv4], AEAD
    /// [AES_SIV_CMAC_256, AES_SIV_CMAC_512], Server "ntp.example", Port 123,
    /// End of Message. 44 octets.
    const REQUEST: [u8; 44] = [
        0x80, 0x01, 0x00, 0x02, 0x00, 0x00, // Next Protocol: critical, 2 octets, NTPv4
        0x80, 0x04, 0x00, 0x04, 0x00, 0x0f, 0x00, 0x11, // AEAD: critical, 15 and 17
        0x00, 0x06, 0x00, 0x0b, b'n', b't', b'p', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e', // Server
        0x00, 0x07, 0x00, 0x02, 0x00, 0x7b, // Port 123
        0x80, 0x00, 0x00, 0x00, // End of Message
        // five octets after the message, for the trailing-octets tests
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    const REQUEST_LEN: usize = 39;

    fn request() -> &'static [u8] {
        &REQUEST[..REQUEST_LEN]
    }

    fn one(bytes: &[u8]) -> Repr {
        Repr::parse(&Record::new_checked(bytes).unwrap()).unwrap()
    }

    #[test]
    fn deconstruct_every_record_type() {
        let r = Record::new_checked(&NEXT_PROTOCOL[..]).unwrap();
        assert!(r.critical());
        assert_eq!(r.record_type(), record_type::NEXT_PROTOCOL);
        assert_eq!(r.body_len(), 4);
        assert_eq!(r.total_len(), 8);
        assert_eq!(r.body(), &[0, 0, 0x80, 0x01]);

        assert_eq!(one(&END_OF_MESSAGE), Repr::end_of_message());
        assert_eq!(one(&NEXT_PROTOCOL), Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV4, ProtocolId::NTPV5_DRAFT])));
        assert_eq!(one(&ERROR), Repr::new(Body::Error(ErrorCode::BAD_REQUEST)));
        assert_eq!(one(&WARNING), Repr::new(Body::Warning(WarningCode(0x8000))));
        assert_eq!(
            one(&AEAD),
            Repr::new(Body::AeadAlgorithm(vec![AeadId::AES_SIV_CMAC_256, AeadId::AES_SIV_CMAC_512, AeadId::AES_128_GCM_SIV]))
        );
        assert_eq!(one(&NEW_COOKIE), Repr::new(Body::NewCookie(vec![0xde, 0xad, 0xbe, 0xef, 0x01])));
        let server = one(&SERVER);
        assert!(server.critical);
        assert_eq!(server.body.server_ascii(), Some("ntp.example"));
        assert_eq!(one(&PORT), Repr::new(Body::Port(123)));
        assert_eq!(one(&UNKNOWN), Repr { critical: true, body: Body::Unknown { record_type: 0x1234, body: vec![1, 2, 3] } });
        let draft = one(&DRAFT_ID);
        assert_eq!(draft.body.record_type(), record_type::NTPV5_DRAFT_ID);
        assert!(!draft.critical);
        assert_eq!(AeadId(15).name(), Some("AEAD_AES_SIV_CMAC_256"));
        assert_eq!(ErrorCode(0).name(), Some("Unrecognized Critical Record"));
        assert_eq!(record_type::name(7), Some("NTPv4 Port Negotiation"));
    }

    #[test]
    fn construct_every_record_type_over_a5_buffer() {
        let all: [&[u8]; 10] = [&END_OF_MESSAGE, &NEXT_PROTOCOL, &ERROR, &WARNING, &AEAD, &NEW_COOKIE, &SERVER, &PORT, &UNKNOWN, &DRAFT_ID];
        for bytes in all {
            let repr = one(bytes);
            assert_eq!(repr.buffer_len(), bytes.len());
            let mut buf = vec![0xa5u8; bytes.len()];
            repr.emit(&mut Record::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes, "{repr}");
            assert_eq!(repr.to_bytes(), bytes);
        }
    }

    #[test]
    fn setters_write_only_their_field() {
        let mut buf = [0xa5u8; 6];
        let mut r = Record::new_unchecked(&mut buf[..]);
        r.set_type(false, 0xffff);
        assert_eq!(r.record_type(), 0x7fff);
        assert!(!r.critical());
        r.set_critical(true);
        assert_eq!(r.record_type(), 0x7fff);
        r.set_record_type(record_type::PORT);
        assert!(r.critical());
        r.set_body_len(2);
        r.body_mut().copy_from_slice(&[0x11, 0x94]);
        assert_eq!(buf, [0x80, 0x07, 0x00, 0x02, 0x11, 0x94]);
    }

    #[test]
    fn whole_request_parses_checks_clean_and_re_emits() {
        let records = parse_message(request()).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[0].body, Body::NextProtocol(vec![ProtocolId::NTPV4]));
        assert_eq!(records[2].body.server_ascii(), Some("ntp.example"));
        assert_eq!(records[4], Repr::end_of_message());
        assert_eq!(message_len(&records), REQUEST_LEN);
        let mut buf = [0xa5u8; REQUEST_LEN];
        assert_eq!(emit_message(&records, &mut buf), REQUEST_LEN);
        assert_eq!(&buf[..], request());
        assert_eq!(check_request(&records), vec![]);
        assert_eq!(first_unrecognized_critical(&records), None);
    }

    fn malformed(bytes: &[u8]) -> (usize, &'static str) {
        match parse_message(bytes) {
            Err(Error::Malformed { offset, reason, .. }) => (offset, reason),
            other => panic!("expected Malformed for {bytes:02x?}, got {other:?}"),
        }
    }

    #[test]
    fn every_body_length_rule_is_malformed() {
        // End of Message with a body (§4.1.1).
        assert_eq!(malformed(&[0x80, 0, 0, 1, 0]).0, 2);
        // ID lists with an odd number of octets (§4.1.2, §4.1.5).
        for t in [record_type::NEXT_PROTOCOL, record_type::AEAD_ALGORITHM] {
            for len in [1u8, 3, 5] {
                let mut m = vec![0x80, t as u8, 0, len];
                m.extend(std::iter::repeat_n(0, len as usize));
                m.extend(END_OF_MESSAGE);
                assert_eq!(malformed(&m), (2, "list of 16-bit IDs has an odd number of octets"));
            }
        }
        // Fixed two-octet bodies (§4.1.3, §4.1.4, §4.1.8), after a valid first record.
        for t in [record_type::ERROR, record_type::WARNING, record_type::PORT] {
            for len in [0u8, 1, 3, 4] {
                let mut m = NEXT_PROTOCOL.to_vec();
                m.extend([0x80, t as u8, 0, len]);
                m.extend(std::iter::repeat_n(0, len as usize));
                m.extend(END_OF_MESSAGE);
                assert_eq!(malformed(&m), (NEXT_PROTOCOL.len() + 2, "body must be exactly 2 octets"));
            }
        }
        // Single records too.
        assert!(matches!(Repr::parse(&Record::new_checked(&[0, 7, 0, 1, 0][..]).unwrap()), Err(Error::Malformed { offset: 2, .. })));
        // Octets after End of Message.
        assert_eq!(malformed(&REQUEST[..REQUEST_LEN + 1]), (REQUEST_LEN, "octets after End of Message"));
        // Bodies of any length are fine for opaque types.
        for t in [record_type::NEW_COOKIE, record_type::SERVER, 0x4001, 0x7fff] {
            for len in 0..4u8 {
                let mut m = vec![(t >> 8) as u8, t as u8, 0, len];
                m.extend(std::iter::repeat_n(0x41, len as usize));
                m.extend(END_OF_MESSAGE);
                assert_eq!(message_to_bytes(&parse_message(&m).unwrap()), m);
            }
        }
    }

    #[test]
    fn truncation_is_reported_with_what_is_missing() {
        // Body length past the end of the buffer.
        assert_eq!(
            parse_message(&[0x00, 0x05, 0x00, 0x10, 1, 2, 3]),
            Err(Error::Truncated { what: "New Cookie for NTPv4", needed: 20, available: 7 })
        );
        // A partial header.
        assert_eq!(parse_message(&[0x80]), Err(Error::Truncated { what: "NTS-KE record header", needed: 4, available: 1 }));
        // No End of Message in a buffer that ends on a record boundary, and an empty buffer.
        let no_eom = &REQUEST[..REQUEST_LEN - 4];
        assert_eq!(
            parse_message(no_eom),
            Err(Error::Truncated { what: "NTS-KE message (no End of Message)", needed: REQUEST_LEN, available: REQUEST_LEN - 4 })
        );
        assert!(matches!(parse_message(&[]), Err(Error::Truncated { needed: 4, available: 0, .. })));
        // The record view refuses the same.
        assert!(Record::new_checked(&[0x00, 0x05, 0x00, 0x10, 1][..]).is_err());
        assert!(Record::new_checked(&[0x00, 0x05, 0x00][..]).is_err());
    }

    #[test]
    fn incremental_scan_at_every_split_point() {
        let reader = MessageReader::new();
        let req = request();
        let mut last_needed = 0;
        for k in 0..req.len() {
            match reader.scan(&req[..k]).unwrap() {
                Progress::NeedMore { needed } => {
                    assert!(needed > k && needed <= req.len(), "k={k} needed={needed}");
                    assert!(needed >= last_needed);
                    last_needed = needed;
                }
                Progress::Complete { len } => panic!("complete at {k} with {len}"),
            }
            assert_eq!(reader.decode(&req[..k]).unwrap(), None);
        }
        assert_eq!(reader.scan(req).unwrap(), Progress::Complete { len: REQUEST_LEN });
        // Extra octets after the message (the next message, or junk) are left alone.
        assert_eq!(reader.scan(&REQUEST).unwrap(), Progress::Complete { len: REQUEST_LEN });
        let (records, len) = reader.decode(&REQUEST).unwrap().unwrap();
        assert_eq!((records.len(), len), (5, REQUEST_LEN));

        // Streaming in two pieces at every split point gives the same records.
        let whole = parse_message(req).unwrap();
        for k in 0..=req.len() {
            let mut buf = req[..k].to_vec();
            let mut got = reader.decode(&buf).unwrap();
            if got.is_none() {
                buf.extend_from_slice(&req[k..]);
                got = reader.decode(&buf).unwrap();
            }
            assert_eq!(got, Some((whole.clone(), REQUEST_LEN)), "split at {k}");
        }
    }

    #[test]
    fn incremental_scan_rejects_early_and_enforces_the_limit() {
        // A broken length is refused as soon as the header is in, before the body.
        let bad = [0x80, 0x02, 0x00, 0x03];
        assert!(matches!(MessageReader::new().scan(&bad), Err(Error::Malformed { offset: 2, .. })));
        // Exactly at the limit is fine; one below is refused.
        assert_eq!(MessageReader::with_max_len(REQUEST_LEN).scan(request()).unwrap(), Progress::Complete { len: REQUEST_LEN });
        let small = MessageReader::with_max_len(REQUEST_LEN - 1);
        assert_eq!(small.max_len(), REQUEST_LEN - 1);
        assert!(matches!(small.scan(request()), Err(Error::Unsupported { value, .. }) if value as usize == REQUEST_LEN));
        // A record announcing a body past the limit is refused from its header alone.
        let huge_cookie = [0x00, 0x05, 0xff, 0xff];
        assert_eq!(MessageReader::with_max_len(70_000).scan(&huge_cookie).unwrap(), Progress::NeedMore { needed: 65539 });
        assert!(matches!(MessageReader::new().scan(&huge_cookie), Err(Error::Unsupported { value: 65539, .. })));
        // A stream of records without End of Message hits the limit and stops.
        let many_ports: Vec<u8> = std::iter::repeat_n(PORT, 200).flatten().collect();
        assert!(MessageReader::with_max_len(1024).scan(&many_ports).is_err());
        assert_eq!(MessageReader::default().scan(&many_ports).unwrap(), Progress::NeedMore { needed: many_ports.len() + 4 });
    }

    fn response(cookies: usize) -> Vec<Repr> {
        let mut r = vec![
            Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV4])),
            Repr::new(Body::AeadAlgorithm(vec![AeadId::AES_SIV_CMAC_256])),
            Repr::new(Body::Server(b"192.0.2.1".to_vec())),
            Repr::new(Body::Port(123)),
        ];
        r.extend((0..cookies).map(|i| Repr::new(Body::NewCookie(vec![i as u8; 100]))));
        r.push(Repr::end_of_message());
        r
    }

    fn rules(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(|p| p.rule).collect()
    }

    #[test]
    fn good_response_and_exchange_have_no_problems() {
        let req = parse_message(request()).unwrap();
        let resp = response(8);
        assert_eq!(check_response(&resp), vec![]);
        assert_eq!(check_exchange(&req, &resp), vec![]);
        let bytes = message_to_bytes(&resp);
        assert_eq!(parse_message(&bytes).unwrap(), resp);
        // An error response needs no Next Protocol (§4).
        let err = vec![Repr::new(Body::Error(ErrorCode::BAD_REQUEST)), Repr::end_of_message()];
        assert_eq!(check_response(&err), vec![]);
        assert_eq!(check_exchange(&req, &err), vec![]);
    }

    #[test]
    fn placement_rules_are_reported_with_their_section() {
        // §4.1.1: missing, not last, duplicated, not critical.
        let mut req = parse_message(request()).unwrap();
        req.pop();
        assert_eq!(rules(&check_request(&req)), ["RFC 8915 §4.1.1"]);
        req.insert(0, Repr { critical: false, body: Body::EndOfMessage });
        let p = check_request(&req);
        assert_eq!(rules(&p), ["RFC 8915 §4.1.1", "RFC 8915 §4.1.1"], "{p:?}");
        req.push(Repr::end_of_message());
        assert_eq!(rules(&check_request(&req)), ["RFC 8915 §4.1.1"; 2]);

        // §4.1.2: missing, duplicated, empty in a request, not critical.
        let base = parse_message(request()).unwrap();
        let mut r = base.clone();
        r.remove(0);
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.2"]);
        let mut r = base.clone();
        r.insert(0, Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV4])));
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.2"]);
        let mut r = base.clone();
        r[0] = Repr { critical: false, body: Body::NextProtocol(vec![]) };
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.2", "RFC 8915 §4.1.2"]);

        // §4.1.3/§4.1.4/§4.1.6: records a client must not send; critical bits.
        let mut r = base.clone();
        r.insert(1, Repr { critical: false, body: Body::Error(ErrorCode(0)) });
        r.insert(1, Repr::new(Body::Warning(WarningCode(1))));
        r.insert(1, Repr::new(Body::NewCookie(vec![1])));
        let p = check_request(&r);
        assert_eq!(rules(&p), ["RFC 8915 §4.1.6", "RFC 8915 §4.1.4", "RFC 8915 §4.1.3", "RFC 8915 §4.1.3"], "{p:?}");

        // §4.1.5: AEAD missing or empty in a request; more than one in a response.
        let mut r = base.clone();
        r.remove(1);
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.5"]);
        let mut r = base.clone();
        r[1] = Repr::new(Body::AeadAlgorithm(vec![]));
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.5"]);
        let mut resp = response(8);
        resp[1] = Repr::new(Body::AeadAlgorithm(vec![AeadId(15), AeadId(17)]));
        assert_eq!(rules(&check_response(&resp)), ["RFC 8915 §4.1.5"]);

        // §4.1.6: no cookie, fewer than eight, critical cookie.
        assert_eq!(rules(&check_response(&response(0))), ["RFC 8915 §4.1.6"]);
        assert!(check_response(&response(2))[0].detail.contains("SHOULD send eight"));
        let mut resp = response(8);
        resp[4].critical = true;
        assert_eq!(rules(&check_response(&resp)), ["RFC 8915 §4.1.6"]);

        // §4.1.7: two servers; non-ASCII; zone id; empty; critical from a client.
        let mut resp = response(8);
        resp.insert(2, Repr::new(Body::Server(b"fe80::1%eth0".to_vec())));
        assert_eq!(rules(&check_response(&resp)), ["RFC 8915 §4.1.7"; 2]);
        let mut resp = response(8);
        resp[2] = Repr::new(Body::Server("ntp.bücher.example".as_bytes().to_vec()));
        assert_eq!(rules(&check_response(&resp)), ["RFC 8915 §4.1.7"]);
        resp[2] = Repr::new(Body::Server(vec![]));
        assert_eq!(rules(&check_response(&resp)), ["RFC 8915 §4.1.7"]);
        let mut r = base.clone();
        r[2].critical = true;
        r[3].critical = true;
        assert_eq!(rules(&check_request(&r)), ["RFC 8915 §4.1.7", "RFC 8915 §4.1.8"]);

        // draft-ietf-ntp-ntpv5-07 §11: NTPv5 offered without the draft id, and a bad id.
        let mut r = base.clone();
        r[0] = Repr::new(Body::NextProtocol(vec![ProtocolId::NTPV5_DRAFT, ProtocolId::NTPV4]));
        assert_eq!(rules(&check_request(&r)), ["draft-ietf-ntp-ntpv5-07 §11"]);
        r.insert(1, one(&DRAFT_ID));
        assert_eq!(check_request(&r), vec![]);
        r[1] = Repr { critical: true, body: Body::Unknown { record_type: record_type::NTPV5_DRAFT_ID, body: b"d\0".to_vec() } };
        assert_eq!(rules(&check_request(&r)), ["draft-ietf-ntp-ntpv5-07 §11"; 2]);
        assert_eq!(first_unrecognized_critical(&r), Some(1));
    }

    #[test]
    fn exchange_rules_are_reported() {
        let req = parse_message(request()).unwrap();
        let mut resp = response(8);
        resp[0] = Repr::new(Body::NextProtocol(vec![ProtocolId(7)]));
        resp[1] = Repr::new(Body::AeadAlgorithm(vec![AeadId::AES_128_GCM_SIV]));
        assert_eq!(rules(&check_exchange(&req, &resp)), ["RFC 8915 §4.1.2", "RFC 8915 §4.1.5"]);
        let mut resp = response(8);
        resp[1] = Repr::new(Body::AeadAlgorithm(vec![]));
        let p = check_exchange(&req, &resp);
        assert_eq!(rules(&p), ["RFC 8915 §4.1.5"]);
        assert!(p[0].to_string().contains("AEAD_AES_SIV_CMAC_256"));
    }

    #[test]
    fn display_names_records() {
        let records = parse_message(request()).unwrap();
        let text: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "critical NTS Next Protocol Negotiation [NTPv4]",
                "critical AEAD Algorithm Negotiation [AEAD_AES_SIV_CMAC_256, AEAD_AES_SIV_CMAC_512]",
                "NTPv4 Server Negotiation \"ntp.example\"",
                "NTPv4 Port Negotiation 123",
                "critical End of Message",
            ]
        );
    }

    #[test]
    fn oversized_bodies_are_cut_to_fit() {
        let r = Repr::new(Body::NewCookie(vec![7; MAX_BODY_LEN + 10]));
        assert_eq!(r.buffer_len(), HEADER_LEN + MAX_BODY_LEN);
        let bytes = r.to_bytes();
        assert_eq!(&bytes[2..4], &[0xff, 0xff]);
        let r = Repr::new(Body::AeadAlgorithm(vec![AeadId(1); MAX_LIST_ITEMS + 3]));
        assert_eq!(r.buffer_len(), HEADER_LEN + 2 * MAX_LIST_ITEMS);
        assert_eq!(one(&r.to_bytes()), Repr::new(Body::AeadAlgorithm(vec![AeadId(1); MAX_LIST_ITEMS])));
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        use proptest::collection::vec;
        prop_oneof![
            vec(any::<u16>().prop_map(ProtocolId), 0..6).prop_map(Body::NextProtocol),
            any::<u16>().prop_map(|c| Body::Error(ErrorCode(c))),
            any::<u16>().prop_map(|c| Body::Warning(WarningCode(c))),
            vec(any::<u16>().prop_map(AeadId), 0..6).prop_map(Body::AeadAlgorithm),
            vec(any::<u8>(), 0..40).prop_map(Body::NewCookie),
            vec(any::<u8>(), 0..20).prop_map(Body::Server),
            any::<u16>().prop_map(Body::Port),
            (8u16..=record_type::MAX, vec(any::<u8>(), 0..20)).prop_map(|(record_type, body)| Body::Unknown { record_type, body }),
        ]
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (any::<bool>(), prop_oneof![1 => Just(Body::EndOfMessage), 9 => arb_body()]).prop_map(|(critical, body)| Repr { critical, body })
    }

    fn arb_message() -> impl Strategy<Value = Vec<Repr>> {
        (proptest::collection::vec((any::<bool>(), arb_body()), 0..8), any::<bool>()).prop_map(|(v, eom_critical)| {
            let mut m: Vec<Repr> = v.into_iter().map(|(critical, body)| Repr { critical, body }).collect();
            m.push(Repr { critical: eom_critical, body: Body::EndOfMessage });
            m
        })
    }

    /// Raw record sequences: random type words (mostly the defined types) and
    /// bodies of random length, framed correctly or not, so that every
    /// length rule and the truncation paths are exercised.
    fn arb_raw() -> impl Strategy<Value = Vec<u8>> {
        let rec = (any::<bool>(), prop_oneof![4 => 0u16..10, 1 => any::<u16>()], proptest::collection::vec(any::<u8>(), 0..7));
        (proptest::collection::vec(rec, 0..8), any::<bool>(), any::<u8>()).prop_map(|(recs, eom, cut)| {
            let mut out = Vec::new();
            for (critical, t, body) in recs {
                let word = (t & 0x7fff) | if critical { 0x8000 } else { 0 };
                out.extend(word.to_be_bytes());
                out.extend((body.len() as u16).to_be_bytes());
                out.extend(body);
            }
            if eom {
                out.extend(END_OF_MESSAGE);
            }
            // Sometimes cut the end or append an octet.
            match cut % 4 {
                0 if !out.is_empty() => {
                    out.pop();
                }
                1 => out.push(cut),
                _ => {}
            }
            out
        })
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr()) {
            let bytes = repr.to_bytes();
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(one(&bytes), repr);
        }

        #[test]
        fn message_round_trip(m in arb_message()) {
            let bytes = message_to_bytes(&m);
            prop_assert_eq!(parse_message(&bytes).unwrap(), m.clone());
            prop_assert_eq!(MessageReader::new().decode(&bytes).unwrap(), Some((m, bytes.len())));
        }

        #[test]
        fn bytes_parse_emit_parse_is_stable(bytes in prop_oneof![arb_raw(), proptest::collection::vec(any::<u8>(), 0..64)]) {
            let parsed = parse_message(&bytes);
            let scanned = MessageReader::with_max_len(usize::MAX).scan(&bytes);
            if let Ok(records) = parsed {
                // parse -> emit is byte-identical, and parses to the same records.
                let out = message_to_bytes(&records);
                prop_assert_eq!(&out, &bytes);
                prop_assert_eq!(&parse_message(&out).unwrap(), &records);
                prop_assert_eq!(scanned, Ok(Progress::Complete { len: bytes.len() }));
                // Checks never panic.
                let _ = (check_request(&records), check_response(&records), check_exchange(&records, &records));
            } else {
                // The scanner agrees with the parser: a complete message is a strict prefix.
                if let Ok(Progress::Complete { len }) = scanned {
                    prop_assert!(len < bytes.len());
                    prop_assert!(parse_message(&bytes[..len]).is_ok());
                }
            }
        }

        #[test]
        fn scan_never_panics_and_is_monotonic(bytes in arb_raw(), max in 0usize..80) {
            let reader = MessageReader::with_max_len(max);
            let mut prev_needed = 0;
            for k in 0..=bytes.len() {
                match reader.scan(&bytes[..k]) {
                    Ok(Progress::NeedMore { needed }) => {
                        prop_assert!(needed > k && needed <= max && needed >= prev_needed);
                        prev_needed = needed;
                    }
                    Ok(Progress::Complete { len }) => {
                        prop_assert!(len <= k && len <= max);
                        prop_assert!(parse_message(&bytes[..len]).is_ok());
                        break;
                    }
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn single_record_view_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(r) = Record::new_checked(&bytes[..]) {
                let _ = (r.critical(), r.record_type(), r.body());
                if let Ok(repr) = Repr::parse(&r) {
                    prop_assert_eq!(repr.to_bytes(), &bytes[..r.total_len()]);
                }
            }
        }
    }
}
