//! Extension fields (RFC 5905 §7.5 as updated by RFC 7822) and the legacy MAC
//! that may follow them in an NTPv4 packet.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Field Type           |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                            Value                              .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Padding (as needed)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The Length counts the whole field including its 4-octet header. In NTPv4
//! it also counts the padding, so it is a multiple of 4 (RFC 5905 §7.5, RFC
//! 7822 §3); NTPv5 (draft-ietf-ntp-ntpv5-07 §7) allows any length of at least
//! 4 and pads to the next multiple of 4 outside the Length. [`FieldRepr`]
//! keeps both views apart: `value` is the `Length - 4` octets the Length
//! covers, `padding` the 0–3 alignment octets after them.
//!
//! The area after the 48-octet header is decoded by [`ExtensionArea::parse`].
//! For NTPv4 a legacy MAC is told from an extension field by the remaining
//! length, as RFC 7822 prescribes: 4 octets (crypto-NAK), 20 (key ID + MD5 or
//! AES-CMAC) or 24 (key ID + SHA-1) remaining octets are a MAC. Rule breaks
//! that leave the area decodable (a length below 16 or not a multiple of 4,
//! a last field below 28 octets without a MAC) are [`Problem`]s. A Length
//! below 4 or past the end of the packet stops decoding: the fields before it
//! are kept, the rest of the octets are kept undecoded, and the area carries
//! the [`Error`] plus a "bad extension field length" problem. Emitting the
//! area writes every octet back, so `parse` then `emit` reproduces any input.

use super::{read_u16, read_u32, Error, Problem, Result};
use core::fmt;

mod field {
    use core::ops::Range;
    pub const TYPE: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const VALUE: usize = 4;
}

/// Octets of an extension field header (type and length).
pub const FIELD_HEADER_LEN: usize = field::VALUE;
/// Smallest NTPv4 extension field (RFC 7822 §3).
pub const MIN_FIELD_LEN: usize = 16;
/// Smallest NTPv4 extension field when it is the last one and no MAC follows (RFC 7822 §3).
pub const MIN_LAST_FIELD_LEN: usize = 28;
/// Lengths of a legacy MAC: crypto-NAK, key ID + 128-bit digest, key ID + 160-bit digest.
pub const MAC_LENS: [usize; 3] = [4, 20, 24];

const RULE_7822: &str = "RFC 7822 §3";
const RULE_5905_EF: &str = "RFC 5905 §7.5";
const RULE_V5_EF: &str = "draft-ietf-ntp-ntpv5-07 §7";
const RULE_V5_LEN: &str = "draft-ietf-ntp-ntpv5-07 §6";
const RULE_8915_PLAIN: &str = "RFC 8915 §5.6";

/// `n` rounded up to a multiple of 4.
pub const fn padded_len(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The Autokey operations of RFC 5906 §10 (the Code in bits 2–7 of the field type's first octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutokeyMessage {
    /// Code 0: no-operation.
    NoOperation = 0,
    /// Code 1: association message (ASSOC).
    Association = 1,
    /// Code 2: certificate message (CERT).
    Certificate = 2,
    /// Code 3: cookie message (COOKIE).
    Cookie = 3,
    /// Code 4: autokey message (AUTO).
    Autokey = 4,
    /// Code 5: leapseconds values message (LEAP).
    Leapseconds = 5,
    /// Code 6: sign message (SIGN).
    Sign = 6,
    /// Code 7: IFF identity message.
    IffIdentity = 7,
    /// Code 8: GQ identity message.
    GqIdentity = 8,
    /// Code 9: MV identity message.
    MvIdentity = 9,
}

impl AutokeyMessage {
    /// From the 6-bit code; `None` for codes RFC 5906 does not define.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => AutokeyMessage::NoOperation,
            1 => AutokeyMessage::Association,
            2 => AutokeyMessage::Certificate,
            3 => AutokeyMessage::Cookie,
            4 => AutokeyMessage::Autokey,
            5 => AutokeyMessage::Leapseconds,
            6 => AutokeyMessage::Sign,
            7 => AutokeyMessage::IffIdentity,
            8 => AutokeyMessage::GqIdentity,
            9 => AutokeyMessage::MvIdentity,
            _ => return None,
        })
    }

    /// The 6-bit code.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// Request, response or error response: the R and E bits of an Autokey field type (RFC 5906 §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutokeyKind {
    /// R and E clear.
    Request,
    /// R set, E clear.
    Response,
    /// R and E set.
    ErrorResponse,
}

/// An extension field type code point. Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    /// An Autokey message (RFC 5906 §10, version 2 in the low octet: `0xRC02`).
    Autokey {
        /// Which operation.
        message: AutokeyMessage,
        /// Request, response or error response.
        kind: AutokeyKind,
    },
    /// 0x0104: NTS Unique Identifier (RFC 8915 §5.3).
    UniqueIdentifier,
    /// 0x0204: NTS Cookie (RFC 8915 §5.4).
    NtsCookie,
    /// 0x0304: NTS Cookie Placeholder (RFC 8915 §5.5).
    NtsCookiePlaceholder,
    /// 0x0404: NTS Authenticator and Encrypted Extension Fields (RFC 8915 §5.6).
    NtsAuthenticator,
    /// 0x2005: UDP Checksum Complement (RFC 7821).
    ChecksumComplement,
    /// 0xF323: chrony's experimental monotonic timestamp and root delay/dispersion field.
    ExpMonotonicRoot,
    /// 0xF324: chrony's experimental network (PTP) correction field.
    ExpNetCorrection,
    /// 0xF501: NTPv5 Padding (draft-ietf-ntp-ntpv5-07 §7.2, draft code point).
    V5Padding,
    /// 0xF502: NTPv5 Message Authentication Code (§7.3, draft code point).
    V5Mac,
    /// 0xF503: NTPv5 Reference IDs Request (§7.4, draft code point).
    V5ReferenceIdsRequest,
    /// 0xF504: NTPv5 Reference IDs Response (§7.4, draft code point).
    V5ReferenceIdsResponse,
    /// 0xF505: NTPv5 Server Information (§7.5, draft code point).
    V5ServerInformation,
    /// 0xF506: NTPv5 Correction (§7.6, draft code point).
    V5Correction,
    /// 0xF507: NTPv5 Reference Timestamp (§7.7, draft code point).
    V5ReferenceTimestamp,
    /// 0xF508: NTPv5 Monotonic Receive Timestamp (§7.8, draft code point).
    V5MonotonicReceiveTimestamp,
    /// 0xF509: NTPv5 Secondary Receive Timestamp (§7.9, draft code point).
    V5SecondaryReceiveTimestamp,
    /// 0xF5FF: NTPv5 Draft Identification (§7.1, drafts only).
    V5DraftIdentification,
    /// 0xFEFF: the leap-smear "I-Do" pseudo type of draft-stenn-ntp-leap-smear-refid-02 §4.
    LeapSmearIDo,
    /// Any other value.
    Unknown(u16),
}

impl FieldType {
    /// From the 16 bits on the wire.
    pub const fn from_u16(v: u16) -> Self {
        match v {
            0x0104 => FieldType::UniqueIdentifier,
            0x0204 => FieldType::NtsCookie,
            0x0304 => FieldType::NtsCookiePlaceholder,
            0x0404 => FieldType::NtsAuthenticator,
            0x2005 => FieldType::ChecksumComplement,
            0xF323 => FieldType::ExpMonotonicRoot,
            0xF324 => FieldType::ExpNetCorrection,
            0xF501 => FieldType::V5Padding,
            0xF502 => FieldType::V5Mac,
            0xF503 => FieldType::V5ReferenceIdsRequest,
            0xF504 => FieldType::V5ReferenceIdsResponse,
            0xF505 => FieldType::V5ServerInformation,
            0xF506 => FieldType::V5Correction,
            0xF507 => FieldType::V5ReferenceTimestamp,
            0xF508 => FieldType::V5MonotonicReceiveTimestamp,
            0xF509 => FieldType::V5SecondaryReceiveTimestamp,
            0xF5FF => FieldType::V5DraftIdentification,
            0xFEFF => FieldType::LeapSmearIDo,
            _ => {
                let [hi, lo] = v.to_be_bytes();
                if lo == 0x02 {
                    let kind = match hi & 0xC0 {
                        0x00 => Some(AutokeyKind::Request),
                        0x80 => Some(AutokeyKind::Response),
                        0xC0 => Some(AutokeyKind::ErrorResponse),
                        _ => None,
                    };
                    if let (Some(kind), Some(message)) = (kind, AutokeyMessage::from_code(hi & 0x3F)) {
                        return FieldType::Autokey { message, kind };
                    }
                }
                FieldType::Unknown(v)
            }
        }
    }

    /// The 16 bits on the wire.
    pub const fn to_u16(self) -> u16 {
        match self {
            FieldType::Autokey { message, kind } => {
                let flags: u16 = match kind {
                    AutokeyKind::Request => 0x0000,
                    AutokeyKind::Response => 0x8000,
                    AutokeyKind::ErrorResponse => 0xC000,
                };
                flags | (message.code() as u16) << 8 | 0x02
            }
            FieldType::UniqueIdentifier => 0x0104,
            FieldType::NtsCookie => 0x0204,
            FieldType::NtsCookiePlaceholder => 0x0304,
            FieldType::NtsAuthenticator => 0x0404,
            FieldType::ChecksumComplement => 0x2005,
            FieldType::ExpMonotonicRoot => 0xF323,
            FieldType::ExpNetCorrection => 0xF324,
            FieldType::V5Padding => 0xF501,
            FieldType::V5Mac => 0xF502,
            FieldType::V5ReferenceIdsRequest => 0xF503,
            FieldType::V5ReferenceIdsResponse => 0xF504,
            FieldType::V5ServerInformation => 0xF505,
            FieldType::V5Correction => 0xF506,
            FieldType::V5ReferenceTimestamp => 0xF507,
            FieldType::V5MonotonicReceiveTimestamp => 0xF508,
            FieldType::V5SecondaryReceiveTimestamp => 0xF509,
            FieldType::V5DraftIdentification => 0xF5FF,
            FieldType::LeapSmearIDo => 0xFEFF,
            FieldType::Unknown(v) => v,
        }
    }

    /// Whether this is one of the four NTS field types of RFC 8915 §5.
    pub const fn is_nts(self) -> bool {
        matches!(
            self,
            FieldType::UniqueIdentifier
                | FieldType::NtsCookie
                | FieldType::NtsCookiePlaceholder
                | FieldType::NtsAuthenticator
        )
    }

    /// The human name, worded as Wireshark's NTP dissector words it where it has one; "Unknown" otherwise.
    pub const fn name(self) -> &'static str {
        use AutokeyKind::*;
        use AutokeyMessage::*;
        match self {
            FieldType::Autokey { message, kind } => match (message, kind) {
                (NoOperation, Request) => "No-Operation Request",
                (NoOperation, Response) => "No-Operation Response",
                (NoOperation, ErrorResponse) => "No-Operation Error Response",
                (Association, Request) => "Association Message Request",
                (Association, Response) => "Association Message Response",
                (Association, ErrorResponse) => "Association Message Error Response",
                (Certificate, Request) => "Certificate Message Request",
                (Certificate, Response) => "Certificate Message Response",
                (Certificate, ErrorResponse) => "Certificate Message Error Response",
                (Cookie, Request) => "Cookie Message Request",
                (Cookie, Response) => "Cookie Message Response",
                (Cookie, ErrorResponse) => "Cookie Message Error Response",
                (Autokey, Request) => "Autokey Message Request",
                (Autokey, Response) => "Autokey Message Response",
                (Autokey, ErrorResponse) => "Autokey Message Error Response",
                (Leapseconds, Request) => "Leapseconds Message Request",
                (Leapseconds, Response) => "Leapseconds Message Response",
                (Leapseconds, ErrorResponse) => "Leapseconds Message Error Response",
                (Sign, Request) => "Sign Message Request",
                (Sign, Response) => "Sign Message Response",
                (Sign, ErrorResponse) => "Sign Message Error Response",
                (IffIdentity, Request) => "IFF Identity Message Request",
                (IffIdentity, Response) => "IFF Identity Message Response",
                (IffIdentity, ErrorResponse) => "IFF Identity Message Error Response",
                (GqIdentity, Request) => "GQ Identity Message Request",
                (GqIdentity, Response) => "GQ Identity Message Response",
                (GqIdentity, ErrorResponse) => "GQ Identity Message Error Response",
                (MvIdentity, Request) => "MV Identity Message Request",
                (MvIdentity, Response) => "MV Identity Message Response",
                (MvIdentity, ErrorResponse) => "MV Identity Message Error Response",
            },
            FieldType::UniqueIdentifier => "Unique Identifier",
            FieldType::NtsCookie => "NTS Cookie",
            FieldType::NtsCookiePlaceholder => "NTS Cookie Placeholder",
            FieldType::NtsAuthenticator => "NTS Authenticator and Encrypted Extension Fields",
            FieldType::ChecksumComplement => "Checksum Complement",
            FieldType::ExpMonotonicRoot => "Monotonic Timestamp & Root Delay/Dispersion (exp)",
            FieldType::ExpNetCorrection => "Network PTP Time correction (exp)",
            FieldType::V5Padding => "Padding",
            FieldType::V5Mac => "Message Authentication Code",
            FieldType::V5ReferenceIdsRequest => "Reference IDs Request",
            FieldType::V5ReferenceIdsResponse => "Reference IDs Response",
            FieldType::V5ServerInformation => "Server Information",
            FieldType::V5Correction => "Correction",
            FieldType::V5ReferenceTimestamp => "Reference Timestamp",
            FieldType::V5MonotonicReceiveTimestamp => "Monotonic Receive Timestamp",
            FieldType::V5SecondaryReceiveTimestamp => "Secondary Receive Timestamp",
            FieldType::V5DraftIdentification => "Draft Identification",
            FieldType::LeapSmearIDo => "Leap Smear I-Do",
            FieldType::Unknown(_) => "Unknown",
        }
    }
}

impl From<u16> for FieldType {
    fn from(v: u16) -> Self {
        FieldType::from_u16(v)
    }
}

impl From<FieldType> for u16 {
    fn from(t: FieldType) -> u16 {
        t.to_u16()
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:04x})", self.name(), self.to_u16())
    }
}

/// A read/write view of one extension field at the start of a buffer.
#[derive(Debug, Clone)]
pub struct Field<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Field<T> {
    /// Wraps a buffer without checks; accessors may panic if the buffer is shorter than the Length says.
    pub const fn new_unchecked(buffer: T) -> Self {
        Field { buffer }
    }

    /// Wraps a buffer after [`Field::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Field { buffer };
        f.check_len()?;
        Ok(f)
    }

    /// Checks the header is present and the Length is at least 4 and within the buffer.
    /// Error offsets count from the start of this buffer.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < FIELD_HEADER_LEN {
            return Err(Error::Malformed {
                what: "extension field",
                offset: 0,
                reason: "bad extension field length: fewer than 4 octets left for the field header",
            });
        }
        let len = usize::from(read_u16(b, field::LENGTH.start));
        if len < FIELD_HEADER_LEN {
            return Err(Error::Malformed {
                what: "extension field",
                offset: field::LENGTH.start,
                reason: "bad extension field length: Length is below the 4-octet header",
            });
        }
        if len > b.len() {
            return Err(Error::Malformed {
                what: "extension field",
                offset: field::LENGTH.start,
                reason: "bad extension field length: Length runs past the end of the packet",
            });
        }
        Ok(())
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The raw field type.
    pub fn raw_type(&self) -> u16 {
        read_u16(self.b(), field::TYPE.start)
    }

    /// The field type.
    pub fn field_type(&self) -> FieldType {
        FieldType::from_u16(self.raw_type())
    }

    /// The Length field as sent (whole field including the header).
    pub fn length(&self) -> u16 {
        read_u16(self.b(), field::LENGTH.start)
    }

    /// The `Length - 4` octets the Length covers after the header.
    pub fn value(&self) -> &[u8] {
        &self.b()[field::VALUE..usize::from(self.length())]
    }

    /// The alignment octets after the Length up to the next multiple of 4, as far as the buffer holds them.
    pub fn padding(&self) -> &[u8] {
        let len = usize::from(self.length());
        let end = padded_len(len).min(self.b().len());
        &self.b()[len..end]
    }

    /// Octets this field occupies in the buffer: Length plus the padding present.
    pub fn total_len(&self) -> usize {
        usize::from(self.length()) + self.padding().len()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Field<T> {
    /// Sets the field type.
    pub fn set_field_type(&mut self, t: FieldType) {
        self.buffer.as_mut()[field::TYPE].copy_from_slice(&t.to_u16().to_be_bytes());
    }

    /// Sets the Length field.
    pub fn set_length(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// The value octets, writable (the Length must be set first).
    pub fn value_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.length());
        &mut self.buffer.as_mut()[field::VALUE..len]
    }
}

/// One extension field, owned: type, the octets its Length covers, and the alignment padding after them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRepr {
    /// Field type.
    pub field_type: FieldType,
    /// The `Length - 4` octets after the header (in NTPv4 this includes the field's own zero padding).
    pub value: Vec<u8>,
    /// Alignment octets after the Length (0–3; none for a well-formed NTPv4 field).
    pub padding: Vec<u8>,
}

impl FieldRepr {
    /// A field whose Length covers exactly `value`, followed by zero alignment padding (NTPv5 style).
    pub fn new(field_type: FieldType, value: Vec<u8>) -> Self {
        let pad = padded_len(value.len()) - value.len();
        FieldRepr { field_type, value, padding: vec![0; pad] }
    }

    /// A field whose `body` is zero-padded to a multiple of 4 inside the Length (NTPv4 style).
    pub fn new_v4(field_type: FieldType, mut body: Vec<u8>) -> Self {
        body.resize(padded_len(body.len()), 0);
        FieldRepr { field_type, value: body, padding: Vec::new() }
    }

    /// Reads a field from a view (checks the length first).
    pub fn parse<T: AsRef<[u8]>>(field: &Field<T>) -> Result<Self> {
        field.check_len()?;
        Ok(FieldRepr {
            field_type: field.field_type(),
            value: field.value().to_vec(),
            padding: field.padding().to_vec(),
        })
    }

    /// The Length this field sends: 4 plus the value, saturating at 65535.
    pub fn length(&self) -> u16 {
        u16::try_from(FIELD_HEADER_LEN + self.value.len()).unwrap_or(u16::MAX)
    }

    /// The human name of the field type.
    pub fn name(&self) -> &'static str {
        self.field_type.name()
    }

    /// Octets [`FieldRepr::emit`] writes: header, value, padding.
    pub fn buffer_len(&self) -> usize {
        FIELD_HEADER_LEN + self.value.len() + self.padding.len()
    }

    /// Writes the field into the first [`FieldRepr::buffer_len`] octets of the view's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, field: &mut Field<T>) {
        field.set_field_type(self.field_type);
        field.set_length(self.length());
        let b = field.buffer.as_mut();
        let v_end = FIELD_HEADER_LEN + self.value.len();
        b[FIELD_HEADER_LEN..v_end].copy_from_slice(&self.value);
        b[v_end..v_end + self.padding.len()].copy_from_slice(&self.padding);
    }

    /// Writes the field to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut Field::new_unchecked(&mut buf[..]));
        buf
    }
}

/// A legacy NTPv4 MAC (RFC 5905 §7.3): key ID and digest. A 4-octet MAC with
/// key ID 0 and no digest is a crypto-NAK (RFC 5905 §9.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mac {
    /// Key identifier.
    pub key_id: u32,
    /// Message digest (16 octets for MD5 or AES-CMAC, 20 for SHA-1; empty in a crypto-NAK).
    pub digest: Vec<u8>,
}

impl Mac {
    /// The crypto-NAK: key ID 0, no digest.
    pub const CRYPTO_NAK: Mac = Mac { key_id: 0, digest: Vec::new() };

    /// Reads a MAC filling the whole of `buf` (at least 4 octets).
    pub fn parse(buf: &[u8]) -> Result<Mac> {
        super::check_len("MAC", buf, 4)?;
        Ok(Mac { key_id: read_u32(buf, 0), digest: buf[4..].to_vec() })
    }

    /// Whether this is a crypto-NAK.
    pub fn is_crypto_nak(&self) -> bool {
        self.key_id == 0 && self.digest.is_empty()
    }

    /// What the digest length suggests: "crypto-NAK", "MD5 or AES-CMAC", "SHA-1" or "non-standard".
    pub fn kind(&self) -> &'static str {
        match self.digest.len() {
            0 if self.key_id == 0 => "crypto-NAK",
            16 => "MD5 or AES-CMAC",
            20 => "SHA-1",
            _ => "non-standard",
        }
    }

    /// Octets [`Mac::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        4 + self.digest.len()
    }

    /// Writes key ID and digest into the first [`Mac::buffer_len`] octets.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(&self.key_id.to_be_bytes());
        buf[4..4 + self.digest.len()].copy_from_slice(&self.digest);
    }
}

/// Which rules the extension area follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// NTPv4 (RFC 5905 §7.5, RFC 7822): Length covers padding, a trailing 4/20/24 octets is a MAC.
    V4,
    /// NTPv5 (draft-ietf-ntp-ntpv5-07 §7): any Length ≥ 4, alignment padding outside it, no legacy MAC.
    V5,
    /// Decrypted NTS plaintext (RFC 8915 §5.6): RFC 7822 format without the 16/28-octet minimums, no MAC.
    NtsPlaintext,
}

/// Everything after an NTP header: extension fields, an optional legacy MAC
/// (NTPv4 only), octets that could not be decoded, and the rule breaks found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExtensionArea {
    /// The fields decoded, in order.
    pub fields: Vec<FieldRepr>,
    /// The legacy MAC, if the area ends in one.
    pub mac: Option<Mac>,
    /// Octets from the first field that could not be decoded to the end (empty when all decoded).
    pub undecoded: Vec<u8>,
    /// Why decoding stopped early; `None` when the whole area was decoded.
    pub error: Option<Error>,
    /// Rule breaks that did not stop decoding (and the "bad extension field length" of `error`).
    pub problems: Vec<Problem>,
}

impl ExtensionArea {
    /// Decodes the octets after a 48-octet NTPv4 header. Never fails: see the fields.
    /// Offsets in errors and problems count from the start of the packet.
    pub fn parse(payload: &[u8]) -> ExtensionArea {
        Self::parse_dialect(payload, super::v4::HEADER_LEN, Dialect::V4)
    }

    /// Decodes `payload` by the rules of `dialect`; `base` is the payload's offset in the packet.
    pub fn parse_dialect(payload: &[u8], base: usize, dialect: Dialect) -> ExtensionArea {
        let mut area = ExtensionArea::default();
        let mut pos = 0;
        while pos < payload.len() {
            let rest = &payload[pos..];
            if dialect == Dialect::V4 && MAC_LENS.contains(&rest.len()) {
                // RFC 7822: a remaining length of 4, 20 or 24 octets is a MAC.
                if let Ok(mac) = Mac::parse(rest) {
                    if rest.len() == 4 && mac.key_id != 0 {
                        area.problems.push(Problem::new(
                            "RFC 5905 §9.2",
                            format!("4-octet MAC at octet {} has key ID {} instead of the crypto-NAK's 0", base + pos, mac.key_id),
                        ));
                    }
                    area.mac = Some(mac);
                }
                break;
            }
            let view = Field::new_unchecked(rest);
            match FieldRepr::parse(&view) {
                Ok(f) => {
                    area.check_field(&f, area.fields.len(), base + pos, dialect);
                    pos += f.buffer_len();
                    area.fields.push(f);
                }
                Err(e) => {
                    let (offset, reason) = match e {
                        Error::Malformed { offset, reason, .. } => (offset, reason),
                        _ => (0, "bad extension field length"),
                    };
                    let detail = if rest.len() < FIELD_HEADER_LEN {
                        format!("bad extension field length: {} trailing octets at octet {} are neither a MAC nor an extension field", rest.len(), base + pos)
                    } else {
                        format!(
                            "bad extension field length: field {} ({}) at octet {} declares {} octets but {} remain",
                            area.fields.len(),
                            FieldType::from_u16(read_u16(rest, 0)),
                            base + pos,
                            read_u16(rest, 2),
                            rest.len()
                        )
                    };
                    area.problems.push(Problem::new(Self::rule(dialect), detail));
                    area.error = Some(Error::Malformed { what: "extension field", offset: base + pos + offset, reason });
                    area.undecoded = rest.to_vec();
                    break;
                }
            }
        }
        if dialect == Dialect::V4 && area.mac.is_none() && area.error.is_none() {
            if let Some(last) = area.fields.last() {
                let len = last.buffer_len();
                if len < MIN_LAST_FIELD_LEN {
                    area.problems.push(Problem::new(
                        RULE_7822,
                        format!(
                            "last extension field ({}) is {} octets with no MAC after it; without a MAC the last field must be at least {}",
                            last.field_type, len, MIN_LAST_FIELD_LEN
                        ),
                    ));
                }
            }
        }
        if dialect != Dialect::V4 && payload.len() % 4 != 0 {
            let rule = if dialect == Dialect::V5 { RULE_V5_LEN } else { RULE_8915_PLAIN };
            area.problems.push(Problem::new(
                rule,
                format!("message length {} is not a multiple of 4", base + payload.len()),
            ));
        }
        area
    }

    fn rule(dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::V4 => RULE_7822,
            Dialect::V5 => RULE_V5_EF,
            Dialect::NtsPlaintext => RULE_8915_PLAIN,
        }
    }

    fn check_field(&mut self, f: &FieldRepr, index: usize, offset: usize, dialect: Dialect) {
        let len = usize::from(f.length());
        let at = || format!("extension field {index} ({}) at octet {offset}", f.field_type);
        if dialect != Dialect::V5 && len % 4 != 0 {
            self.problems.push(Problem::new(Self::rule(dialect), format!("{}: length {len} is not a multiple of 4", at())));
        }
        if dialect == Dialect::V4 && len < MIN_FIELD_LEN {
            self.problems.push(Problem::new(RULE_7822, format!("{}: length {len} is below the {MIN_FIELD_LEN}-octet minimum", at())));
        }
        if f.padding.iter().any(|&b| b != 0) {
            let rule = if dialect == Dialect::V5 { RULE_V5_EF } else { RULE_5905_EF };
            self.problems.push(Problem::new(rule, format!("{}: padding octets are not zero", at())));
        }
    }

    /// The error that stopped decoding, if any, as a result.
    pub fn result(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Whether the area decoded without error and without problems.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.problems.is_empty()
    }

    /// Offset of each field from the start of the payload, in order.
    pub fn field_offsets(&self) -> Vec<usize> {
        let mut pos = 0;
        self.fields
            .iter()
            .map(|f| {
                let at = pos;
                pos += f.buffer_len();
                at
            })
            .collect()
    }

    /// The fields of one type, in order.
    pub fn fields_of(&self, t: FieldType) -> impl Iterator<Item = &FieldRepr> {
        self.fields.iter().filter(move |f| f.field_type == t)
    }

    /// Octets [`ExtensionArea::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.fields.iter().map(FieldRepr::buffer_len).sum::<usize>()
            + self.mac.as_ref().map_or(0, Mac::buffer_len)
            + self.undecoded.len()
    }

    /// Writes fields, MAC and undecoded octets into the first [`ExtensionArea::buffer_len`] octets.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut pos = 0;
        for f in &self.fields {
            let n = f.buffer_len();
            f.emit(&mut Field::new_unchecked(&mut buf[pos..pos + n]));
            pos += n;
        }
        if let Some(mac) = &self.mac {
            mac.emit(&mut buf[pos..pos + mac.buffer_len()]);
            pos += mac.buffer_len();
        }
        buf[pos..pos + self.undecoded.len()].copy_from_slice(&self.undecoded);
    }

    /// Writes the area to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An NTS Unique Identifier field as RFC 8915 §5.3 describes it: type 0x0104,
    /// Length 36 (4 header + 32 random octets), body 0x00..0x1f.
    fn uid_field_bytes() -> Vec<u8> {
        let mut v = vec![0x01, 0x04, 0x00, 0x24]; // type 0x0104, length 36
        v.extend(0u8..32); // 32 octets of "random" body
        v
    }

    /// Key ID 7 followed by a 16-octet digest: a 20-octet MD5/AES-CMAC MAC (RFC 5905 Figure 8).
    const MAC20: [u8; 20] = [
        0x00, 0x00, 0x00, 0x07, // key ID 7
        0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, // digest
        0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e,
    ];

    #[test]
    fn field_view_deconstruct() {
        let b = uid_field_bytes();
        let f = Field::new_checked(&b[..]).unwrap();
        assert_eq!(f.field_type(), FieldType::UniqueIdentifier);
        assert_eq!(f.length(), 36);
        assert_eq!(f.value().len(), 32);
        assert_eq!(f.value()[31], 31);
        assert!(f.padding().is_empty());
        assert_eq!(f.total_len(), 36);
    }

    #[test]
    fn field_construct_over_a5_buffer() {
        let repr = FieldRepr::parse(&Field::new_checked(&uid_field_bytes()[..]).unwrap()).unwrap();
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Field::new_unchecked(&mut buf[..]));
        assert_eq!(buf, uid_field_bytes());
    }

    #[test]
    fn padding_styles() {
        // NTPv5 style: Length 9 covers 5 value octets, 3 zero octets align it.
        let f = FieldRepr::new(FieldType::V5Padding, vec![1, 2, 3, 4, 5]);
        assert_eq!(f.to_bytes(), [0xf5, 0x01, 0x00, 0x09, 1, 2, 3, 4, 5, 0, 0, 0]);
        // NTPv4 style: the padding is inside the Length (12).
        let f = FieldRepr::new_v4(FieldType::NtsCookie, vec![1, 2, 3, 4, 5]);
        assert_eq!(f.to_bytes(), [0x02, 0x04, 0x00, 0x0c, 1, 2, 3, 4, 5, 0, 0, 0]);
        let v = Field::new_checked(&[0xf5, 0x01, 0x00, 0x09, 1, 2, 3, 4, 5, 0, 0][..]).unwrap();
        assert_eq!(v.padding(), &[0, 0], "padding cut by the end of the buffer");
    }

    #[test]
    fn field_length_errors() {
        assert!(matches!(Field::new_checked(&[0x01, 0x04, 0x00][..]), Err(Error::Malformed { offset: 0, .. })));
        assert!(matches!(Field::new_checked(&[0x01, 0x04, 0x00, 0x03][..]), Err(Error::Malformed { offset: 2, .. })));
        assert!(matches!(Field::new_checked(&[0x01, 0x04, 0x00, 0x08, 0, 0, 0][..]), Err(Error::Malformed { offset: 2, .. })));
        assert!(Field::new_checked(&[0x01, 0x04, 0x00, 0x04][..]).is_ok(), "empty value is a valid TLV");
    }

    #[test]
    fn field_type_names() {
        assert_eq!(FieldType::from_u16(0x0104).name(), "Unique Identifier");
        assert_eq!(FieldType::from_u16(0x0204).name(), "NTS Cookie");
        assert_eq!(FieldType::from_u16(0x0304).name(), "NTS Cookie Placeholder");
        assert_eq!(FieldType::from_u16(0x0404).name(), "NTS Authenticator and Encrypted Extension Fields");
        assert_eq!(FieldType::from_u16(0x0002).name(), "No-Operation Request");
        assert_eq!(FieldType::from_u16(0x8102).name(), "Association Message Response");
        assert_eq!(FieldType::from_u16(0xC902).name(), "MV Identity Message Error Response");
        assert_eq!(FieldType::from_u16(0x0502).name(), "Leapseconds Message Request");
        assert_eq!(FieldType::from_u16(0x4102), FieldType::Unknown(0x4102), "E without R is not an Autokey type");
        assert_eq!(FieldType::from_u16(0x0A02), FieldType::Unknown(0x0A02), "code 10 is not defined");
        assert_eq!(FieldType::from_u16(0x2005).name(), "Checksum Complement");
        assert_eq!(FieldType::from_u16(0xF506).name(), "Correction");
        assert_eq!(FieldType::from_u16(0xFEFF), FieldType::LeapSmearIDo);
        assert_eq!(FieldType::from_u16(0x7777).name(), "Unknown");
        assert_eq!(FieldType::UniqueIdentifier.to_string(), "Unique Identifier (0x0104)");
    }

    #[test]
    fn field_type_round_trips_every_value() {
        for v in 0..=u16::MAX {
            let t = FieldType::from_u16(v);
            assert_eq!(t.to_u16(), v);
            assert_eq!(matches!(t, FieldType::Unknown(_)), t.name() == "Unknown", "{v:#06x}");
        }
    }

    fn area_bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn area_with_field_and_mac() {
        let b = area_bytes(&[&uid_field_bytes(), &MAC20]);
        let a = ExtensionArea::parse(&b);
        assert!(a.is_clean(), "{:?}", a.problems);
        assert_eq!(a.fields.len(), 1);
        let mac = a.mac.as_ref().unwrap();
        assert_eq!(mac.key_id, 7);
        assert_eq!(mac.kind(), "MD5 or AES-CMAC");
        assert_eq!(a.to_bytes(), b);
        assert_eq!(a.field_offsets(), vec![0]);
    }

    #[test]
    fn mac_only_and_crypto_nak() {
        let a = ExtensionArea::parse(&MAC20);
        assert!(a.fields.is_empty() && a.is_clean());
        let a = ExtensionArea::parse(&[0, 0, 0, 0]);
        assert!(a.mac.as_ref().unwrap().is_crypto_nak());
        assert_eq!(a.mac.as_ref().unwrap().kind(), "crypto-NAK");
        assert!(a.is_clean());
        let a = ExtensionArea::parse(&[0, 0, 0, 9]);
        assert_eq!(a.problems.len(), 1, "4-octet MAC with a key ID");
        // 24 octets: key ID + SHA-1.
        let mut sha = vec![0, 0, 0, 1];
        sha.extend([0x11; 20]);
        let a = ExtensionArea::parse(&sha);
        assert_eq!(a.mac.as_ref().unwrap().kind(), "SHA-1");
        assert_eq!(a.to_bytes(), sha);
    }

    #[test]
    fn remaining_mac_length_wins_over_a_field() {
        // A 24-octet field with nothing after it reads as a SHA-1 MAC (RFC 7822).
        let mut f = vec![0x01, 0x04, 0x00, 0x18];
        f.extend([0; 20]);
        let a = ExtensionArea::parse(&f);
        assert!(a.fields.is_empty());
        assert_eq!(a.mac.as_ref().unwrap().key_id, 0x0104_0018);
    }

    #[test]
    fn short_last_field_without_mac_is_a_problem() {
        let mut f = vec![0x01, 0x04, 0x00, 0x10]; // 16 octets, last, no MAC
        f.extend([0; 12]);
        let a = ExtensionArea::parse(&f);
        assert_eq!(a.fields.len(), 1);
        assert!(a.error.is_none());
        assert_eq!(a.problems.len(), 1);
        assert_eq!(a.problems[0].rule, "RFC 7822 §3");
        assert!(a.problems[0].detail.contains("at least 28"));
        // The same field followed by a MAC is fine.
        let b = area_bytes(&[&f, &MAC20]);
        assert!(ExtensionArea::parse(&b).is_clean());
    }

    #[test]
    fn length_rules_are_problems() {
        // Length 8 (below 16) followed by a 28-octet field.
        let mut b = vec![0x77, 0x77, 0x00, 0x08, 1, 2, 3, 4];
        b.extend(uid_field_bytes());
        let a = ExtensionArea::parse(&b);
        assert_eq!(a.fields.len(), 2);
        assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
        assert!(a.problems[0].detail.contains("below the 16-octet minimum"));
        // Length 30 (not a multiple of 4): its 2 alignment octets are kept as padding.
        let mut b = vec![0x77, 0x77, 0x00, 0x1e];
        b.extend([0; 26]);
        b.extend([0, 0]);
        b.extend(&MAC20);
        let a = ExtensionArea::parse(&b);
        assert_eq!(a.fields.len(), 1);
        assert_eq!(a.fields[0].padding, vec![0, 0]);
        assert!(a.mac.is_some());
        assert_eq!(a.problems.len(), 1);
        assert!(a.problems[0].detail.contains("not a multiple of 4"));
        assert_eq!(a.to_bytes(), b);
    }

    #[test]
    fn length_past_end_keeps_earlier_fields() {
        let mut b = uid_field_bytes();
        b.extend([0x02, 0x04, 0x01, 0x00]); // cookie claiming 256 octets
        b.extend([0xee; 40]);
        let a = ExtensionArea::parse(&b);
        assert_eq!(a.fields.len(), 1);
        assert_eq!(a.fields[0].field_type, FieldType::UniqueIdentifier);
        assert_eq!(
            a.error,
            Some(Error::Malformed {
                what: "extension field",
                offset: 48 + 36 + 2,
                reason: "bad extension field length: Length runs past the end of the packet"
            })
        );
        assert!(a.problems.iter().any(|p| p.detail.starts_with("bad extension field length")));
        assert_eq!(a.undecoded.len(), 44);
        assert_eq!(a.to_bytes(), b, "undecoded octets are emitted back");
        assert!(a.result().is_err());
    }

    #[test]
    fn length_below_header_and_trailing_octets_are_errors() {
        let mut b = uid_field_bytes();
        b.extend([0x02, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        let a = ExtensionArea::parse(&b);
        assert_eq!(a.fields.len(), 1);
        assert!(a.error.is_some());
        let mut b = uid_field_bytes();
        b.extend([1, 2, 3]);
        let a = ExtensionArea::parse(&b);
        assert_eq!(a.fields.len(), 1);
        assert!(matches!(a.error, Some(Error::Malformed { offset: 84, .. })));
        assert!(a.problems[0].detail.contains("neither a MAC nor an extension field"));
    }

    #[test]
    fn v5_dialect() {
        // Padding field of Length 5 (one value octet) plus 3 alignment octets; no MAC detection.
        let b = [0xf5, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00];
        let a = ExtensionArea::parse_dialect(&b, 48, Dialect::V5);
        assert!(a.is_clean(), "{:?}", a.problems);
        assert_eq!(a.fields[0].value, vec![0]);
        assert_eq!(a.fields[0].padding, vec![0, 0, 0]);
        // Padding cut short by the end of the message: length not a multiple of 4.
        let a = ExtensionArea::parse_dialect(&b[..6], 48, Dialect::V5);
        assert!(a.error.is_none());
        assert_eq!(a.problems.len(), 1);
        assert_eq!(a.problems[0].rule, "draft-ietf-ntp-ntpv5-07 §6");
        // A 20-octet area is a field, not a MAC, in v5.
        let mut f = vec![0xf5, 0x01, 0x00, 0x14];
        f.extend([0; 16]);
        let a = ExtensionArea::parse_dialect(&f, 48, Dialect::V5);
        assert_eq!(a.fields.len(), 1);
        assert!(a.mac.is_none());
        // Non-zero alignment padding.
        let a = ExtensionArea::parse_dialect(&[0xf5, 0x01, 0x00, 0x05, 0, 1, 0, 0], 48, Dialect::V5);
        assert_eq!(a.problems.len(), 1);
    }

    #[test]
    fn nts_plaintext_dialect_allows_short_fields() {
        let b = [0x02, 0x04, 0x00, 0x08, 1, 2, 3, 4];
        let a = ExtensionArea::parse_dialect(&b, 0, Dialect::NtsPlaintext);
        assert!(a.is_clean());
        let a = ExtensionArea::parse_dialect(&[0x02, 0x04, 0x00, 0x06, 1, 2, 0, 0], 0, Dialect::NtsPlaintext);
        assert_eq!(a.problems.len(), 1);
    }

    pub(crate) fn arb_field() -> impl Strategy<Value = FieldRepr> {
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(t, body)| FieldRepr::new_v4(FieldType::from_u16(t), body))
    }

    fn arb_area() -> impl Strategy<Value = ExtensionArea> {
        (
            proptest::collection::vec(arb_field(), 0..4),
            proptest::option::of((any::<u32>(), prop_oneof![Just(0usize), Just(16), Just(20)])),
        )
            .prop_map(|(mut fields, mac)| {
                // Keep well-formed: every field at least 16 octets, the last one at least 28 without a MAC.
                for f in &mut fields {
                    if f.value.len() < 12 {
                        f.value.resize(12, 0);
                    }
                }
                let mac = mac.map(|(k, n)| Mac { key_id: if n == 0 { 0 } else { k }, digest: vec![0x5a; n] });
                // A 16- or 20-octet last field plus a 4-octet crypto-NAK would leave 20 or 24
                // octets, which RFC 7822 reads as a MAC: keep such a last field at 28 octets too.
                if mac.as_ref().is_none_or(|m| m.digest.is_empty()) {
                    if let Some(last) = fields.last_mut() {
                        if last.value.len() < 24 {
                            last.value.resize(24, 0);
                        }
                    }
                }
                ExtensionArea { fields, mac, ..Default::default() }
            })
    }

    proptest! {
        #[test]
        fn area_repr_round_trip(area in arb_area()) {
            let bytes = area.to_bytes();
            let back = ExtensionArea::parse(&bytes);
            prop_assert_eq!(&back, &area);
        }

        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for d in [Dialect::V4, Dialect::V5, Dialect::NtsPlaintext] {
                let a = ExtensionArea::parse_dialect(&bytes, 48, d);
                let out = a.to_bytes();
                prop_assert_eq!(&out, &bytes);
                prop_assert_eq!(ExtensionArea::parse_dialect(&out, 48, d), a);
            }
        }
    }
}
