//! The NTPv5 header and extension fields (draft-ietf-ntp-ntpv5-07 §5–§7).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |LI | VN  |Mode |    Stratum    |     Poll      |  Precision    |
//! |                     Root Delay (time32)                       |
//! |                  Root Dispersion (time32)                     |
//! |   Timescale   |      Era      |             Flags             |
//! |                      Server Cookie (64)                       |
//! |                      Client Cookie (64)                       |
//! |                    Receive Timestamp (64)                     |
//! |                    Transmit Timestamp (64)                    |
//! .                   Extension fields (optional)                 .
//! ```
//!
//! The version bits sit where NTPv4 has them ([`super::v4::version_of`]).
//! Extension fields use the generic machinery of [`super::ext`] with
//! [`Dialect::V5`]: any Length of at least 4, zero padding to a multiple of 4,
//! no legacy MAC. The draft's field types carry temporary code points (0xF5xx)
//! until IANA assigns final ones; [`FieldBody`] types their bodies.
//!
//! Where the -07 text and the editor's copy of 2026-01-14 differ on whether
//! an extension field's Length counts the alignment padding, the decoder
//! accepts both: a Length that includes the padding simply has the zeros in
//! the value.

use super::ext::{Dialect, ExtensionArea, FieldRepr, FieldType};
use super::v4::{LeapIndicator, Mode};
use super::{check_len, read_u16, read_u32, read_u64, Error, Problem, Result};
use crate::time::{NtpDuration, NtpTimestamp};
use core::fmt;

mod bloom;
mod draft;
pub use bloom::{BloomFilter, RemoteBloomFilter, V5ReferenceId};
pub use draft::{draft_of, Draft, DraftId};

mod field {
    use core::ops::Range;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const TIMESCALE: usize = 12;
    pub const ERA: usize = 13;
    pub const FLAGS: Range<usize> = 14..16;
    pub const SERVER_COOKIE: Range<usize> = 16..24;
    pub const CLIENT_COOKIE: Range<usize> = 24..32;
    pub const RECEIVE_TS: Range<usize> = 32..40;
    pub const TRANSMIT_TS: Range<usize> = 40..48;
    pub const PAYLOAD: usize = 48;
}

/// Length of the NTPv5 header in octets.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The version number of NTPv5.
pub const VERSION: u8 = 5;
/// Size of the Reference IDs Bloom filter in octets (§7.4).
pub const BLOOM_FILTER_LEN: usize = 512;

/// The NTPv5 `time32` type (§5): unsigned fixed point, 4 integer and 28 fraction bits (up to 16 s, 3.7 ns steps).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Time32(u32);

impl Time32 {
    /// Zero seconds.
    pub const ZERO: Time32 = Time32(0);
    /// The largest value, just under 16 s.
    pub const MAX: Time32 = Time32(u32::MAX);

    /// From the 32 bits on the wire.
    pub const fn from_bits(bits: u32) -> Self {
        Time32(bits)
    }

    /// The 32 bits on the wire.
    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// In seconds.
    pub fn to_seconds_f64(self) -> f64 {
        f64::from(self.0) / f64::from(1u32 << 28)
    }

    /// From seconds, rounded up (a bound never shrinks) and saturating at both ends; NaN gives zero.
    pub fn from_seconds_f64(secs: f64) -> Self {
        Time32((secs * f64::from(1u32 << 28)).ceil() as u32)
    }

    /// As a duration (exact: 2^-28 s is 16 units of 2^-32 s).
    pub const fn to_duration(self) -> NtpDuration {
        NtpDuration::from_bits((self.0 as i64) << 4)
    }

    /// From a duration, rounded up, saturating; negative durations give zero.
    pub const fn from_duration(d: NtpDuration) -> Self {
        let bits = d.to_bits();
        if bits <= 0 {
            return Time32(0);
        }
        let v = (bits as u64).div_ceil(16);
        if v > u32::MAX as u64 {
            Time32(u32::MAX)
        } else {
            Time32(v as u32)
        }
    }
}

impl fmt::Debug for Time32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.9}s", self.to_seconds_f64())
    }
}

/// The timescale of the timestamps (§6). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timescale {
    /// 0: UTC.
    Utc,
    /// 1: TAI.
    Tai,
    /// 2: UT1.
    Ut1,
    /// 3: leap-smeared UTC.
    LeapSmearedUtc,
    /// Any other value.
    Unknown(u8),
}

impl Timescale {
    /// From the octet.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Timescale::Utc,
            1 => Timescale::Tai,
            2 => Timescale::Ut1,
            3 => Timescale::LeapSmearedUtc,
            v => Timescale::Unknown(v),
        }
    }

    /// The octet.
    pub const fn to_u8(self) -> u8 {
        match self {
            Timescale::Utc => 0,
            Timescale::Tai => 1,
            Timescale::Ut1 => 2,
            Timescale::LeapSmearedUtc => 3,
            Timescale::Unknown(v) => v,
        }
    }

    /// The name as the draft writes it; "Unknown" otherwise.
    pub const fn name(self) -> &'static str {
        match self {
            Timescale::Utc => "UTC",
            Timescale::Tai => "TAI",
            Timescale::Ut1 => "UT1",
            Timescale::LeapSmearedUtc => "Leap-smeared UTC",
            Timescale::Unknown(_) => "Unknown",
        }
    }
}

/// The 16-bit Flags field (§6). Bits the draft does not define are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// 0x1: the server's clock is synchronized.
    pub const SYNCHRONIZED: u16 = 0x1;
    /// 0x2: interleaved mode (requested, or in use in a response).
    pub const INTERLEAVED: u16 = 0x2;
    /// 0x4: the server failed to authenticate the request.
    pub const AUTH_NAK: u16 = 0x4;
    /// All bits the draft defines.
    pub const KNOWN: u16 = Self::SYNCHRONIZED | Self::INTERLEAVED | Self::AUTH_NAK;

    /// The 16 bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Synchronized flag.
    pub const fn synchronized(self) -> bool {
        self.0 & Self::SYNCHRONIZED != 0
    }

    /// Interleaved mode flag.
    pub const fn interleaved(self) -> bool {
        self.0 & Self::INTERLEAVED != 0
    }

    /// Authentication NAK flag.
    pub const fn auth_nak(self) -> bool {
        self.0 & Self::AUTH_NAK != 0
    }

    /// Set bits the draft does not define.
    pub const fn unknown_bits(self) -> u16 {
        self.0 & !Self::KNOWN
    }

    /// Names of the set defined bits, lowest first ("Synchronized", "Interleaved Mode", "Authentication NAK").
    pub fn names(self) -> Vec<&'static str> {
        [(Self::SYNCHRONIZED, "Synchronized"), (Self::INTERLEAVED, "Interleaved Mode"), (Self::AUTH_NAK, "Authentication NAK")]
            .into_iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| n)
            .collect()
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#06x} {:?})", self.0, self.names())
    }
}

/// A read/write view of an NTPv5 header in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a whole header.
    pub fn check_len(&self) -> Result<()> {
        check_len("NTPv5 header", self.buffer.as_ref(), HEADER_LEN)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Leap indicator.
    pub fn leap(&self) -> LeapIndicator {
        LeapIndicator::from_bits(self.b()[field::LI_VN_MODE] >> 6)
    }

    /// Version number (5 for NTPv5).
    pub fn version(&self) -> u8 {
        (self.b()[field::LI_VN_MODE] >> 3) & 7
    }

    /// Mode (3 request, 4 response).
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.b()[field::LI_VN_MODE])
    }

    /// Stratum.
    pub fn stratum(&self) -> u8 {
        self.b()[field::STRATUM]
    }

    /// Poll: the minimum polling interval the client must respect, log2 s.
    pub fn poll(&self) -> i8 {
        self.b()[field::POLL] as i8
    }

    /// Precision of the timestamps, log2 s.
    pub fn precision(&self) -> i8 {
        self.b()[field::PRECISION] as i8
    }

    /// Root delay.
    pub fn root_delay(&self) -> Time32 {
        Time32(read_u32(self.b(), field::ROOT_DELAY.start))
    }

    /// Root dispersion.
    pub fn root_dispersion(&self) -> Time32 {
        Time32(read_u32(self.b(), field::ROOT_DISPERSION.start))
    }

    /// Timescale.
    pub fn timescale(&self) -> Timescale {
        Timescale::from_u8(self.b()[field::TIMESCALE])
    }

    /// NTP era of the receive timestamp.
    pub fn era(&self) -> u8 {
        self.b()[field::ERA]
    }

    /// Flags.
    pub fn flags(&self) -> Flags {
        Flags(read_u16(self.b(), field::FLAGS.start))
    }

    /// Server cookie.
    pub fn server_cookie(&self) -> u64 {
        read_u64(self.b(), field::SERVER_COOKIE.start)
    }

    /// Client cookie.
    pub fn client_cookie(&self) -> u64 {
        read_u64(self.b(), field::CLIENT_COOKIE.start)
    }

    /// Receive timestamp.
    pub fn receive_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::RECEIVE_TS.start))
    }

    /// Transmit timestamp.
    pub fn transmit_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::TRANSMIT_TS.start))
    }

    /// The extension fields after the header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets leap indicator, version and mode at once.
    pub fn set_li_vn_mode(&mut self, leap: LeapIndicator, version: u8, mode: Mode) {
        self.bm()[field::LI_VN_MODE] = leap.to_bits() << 6 | (version & 7) << 3 | mode.to_bits();
    }

    /// Sets the stratum.
    pub fn set_stratum(&mut self, v: u8) {
        self.bm()[field::STRATUM] = v;
    }

    /// Sets the poll exponent.
    pub fn set_poll(&mut self, v: i8) {
        self.bm()[field::POLL] = v as u8;
    }

    /// Sets the precision exponent.
    pub fn set_precision(&mut self, v: i8) {
        self.bm()[field::PRECISION] = v as u8;
    }

    /// Sets the root delay.
    pub fn set_root_delay(&mut self, v: Time32) {
        self.bm()[field::ROOT_DELAY].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the root dispersion.
    pub fn set_root_dispersion(&mut self, v: Time32) {
        self.bm()[field::ROOT_DISPERSION].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the timescale.
    pub fn set_timescale(&mut self, v: Timescale) {
        self.bm()[field::TIMESCALE] = v.to_u8();
    }

    /// Sets the era.
    pub fn set_era(&mut self, v: u8) {
        self.bm()[field::ERA] = v;
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, v: Flags) {
        self.bm()[field::FLAGS].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the server cookie.
    pub fn set_server_cookie(&mut self, v: u64) {
        self.bm()[field::SERVER_COOKIE].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the client cookie.
    pub fn set_client_cookie(&mut self, v: u64) {
        self.bm()[field::CLIENT_COOKIE].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the receive timestamp.
    pub fn set_receive_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::RECEIVE_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the transmit timestamp.
    pub fn set_transmit_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::TRANSMIT_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// The octets after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::PAYLOAD..]
    }
}

/// A decoded NTPv5 header; every field is kept as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Leap indicator.
    pub leap: LeapIndicator,
    /// Version number as sent (5).
    pub version: u8,
    /// Mode as sent (3 request, 4 response).
    pub mode: Mode,
    /// Stratum.
    pub stratum: u8,
    /// Poll exponent.
    pub poll: i8,
    /// Precision exponent.
    pub precision: i8,
    /// Root delay.
    pub root_delay: Time32,
    /// Root dispersion.
    pub root_dispersion: Time32,
    /// Timescale.
    pub timescale: Timescale,
    /// Era of the receive timestamp.
    pub era: u8,
    /// Flags.
    pub flags: Flags,
    /// Server cookie.
    pub server_cookie: u64,
    /// Client cookie.
    pub client_cookie: u64,
    /// Receive timestamp.
    pub receive_timestamp: NtpTimestamp,
    /// Transmit timestamp.
    pub transmit_timestamp: NtpTimestamp,
}

impl Repr {
    /// A request as §9 prescribes: all zero except version, mode, timescale and client cookie.
    pub fn request(timescale: Timescale, client_cookie: u64) -> Self {
        Repr {
            leap: LeapIndicator::NoWarning,
            version: VERSION,
            mode: Mode::Client,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: Time32::ZERO,
            root_dispersion: Time32::ZERO,
            timescale,
            era: 0,
            flags: Flags(0),
            server_cookie: 0,
            client_cookie,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: NtpTimestamp::ZERO,
        }
    }

    /// Reads the header; only the length is checked (see [`Repr::problems`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            leap: packet.leap(),
            version: packet.version(),
            mode: packet.mode(),
            stratum: packet.stratum(),
            poll: packet.poll(),
            precision: packet.precision(),
            root_delay: packet.root_delay(),
            root_dispersion: packet.root_dispersion(),
            timescale: packet.timescale(),
            era: packet.era(),
            flags: packet.flags(),
            server_cookie: packet.server_cookie(),
            client_cookie: packet.client_cookie(),
            receive_timestamp: packet.receive_timestamp(),
            transmit_timestamp: packet.transmit_timestamp(),
        })
    }

    /// Octets [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_li_vn_mode(self.leap, self.version, self.mode);
        packet.set_stratum(self.stratum);
        packet.set_poll(self.poll);
        packet.set_precision(self.precision);
        packet.set_root_delay(self.root_delay);
        packet.set_root_dispersion(self.root_dispersion);
        packet.set_timescale(self.timescale);
        packet.set_era(self.era);
        packet.set_flags(self.flags);
        packet.set_server_cookie(self.server_cookie);
        packet.set_client_cookie(self.client_cookie);
        packet.set_receive_timestamp(self.receive_timestamp);
        packet.set_transmit_timestamp(self.transmit_timestamp);
    }

    /// Writes the header to a new 48-octet array.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf
    }

    /// Conformance problems of the header alone (§6, §9, §10), judged by -07.
    pub fn problems(&self) -> Vec<Problem> {
        self.problems_for(Draft::D07)
    }

    /// Conformance problems of the header alone (§6, §9, §10), judged by `draft`.
    pub fn problems_for(&self, draft: Draft) -> Vec<Problem> {
        let rule_hdr = draft.rule("§6");
        let mut p = Vec::new();
        if self.version != VERSION {
            p.push(Problem::new(rule_hdr, format!("version {} in an NTPv5 header", self.version)));
        }
        if !matches!(self.mode, Mode::Client | Mode::Server) {
            p.push(Problem::new(rule_hdr, format!("mode {} ({}) is neither 3 (request) nor 4 (response)", self.mode.to_bits(), self.mode.name())));
        }
        if let Timescale::Unknown(t) = self.timescale {
            p.push(Problem::new(rule_hdr, format!("unknown timescale {t}")));
        }
        if self.flags.unknown_bits() != 0 {
            p.push(Problem::new(rule_hdr, format!("undefined flag bits {:#06x} set", self.flags.unknown_bits())));
        }
        if self.mode == Mode::Client {
            let mut must_be_zero = |name: &str, nonzero: bool| {
                if nonzero {
                    p.push(Problem::new(rule_hdr, format!("request: {name} must be 0")));
                }
            };
            must_be_zero("leap indicator", self.leap != LeapIndicator::NoWarning);
            must_be_zero("stratum", self.stratum != 0);
            must_be_zero("poll", draft.request_poll_must_be_zero() && self.poll != 0);
            must_be_zero("precision", self.precision != 0);
            must_be_zero("root delay", self.root_delay != Time32::ZERO);
            must_be_zero("root dispersion", self.root_dispersion != Time32::ZERO);
            must_be_zero("era", self.era != 0);
            must_be_zero("receive timestamp", !self.receive_timestamp.is_zero());
            must_be_zero("transmit timestamp", !self.transmit_timestamp.is_zero());
            let wrong = self.flags.0 & Flags::KNOWN & !Flags::INTERLEAVED;
            if wrong != 0 {
                p.push(Problem::new(rule_hdr, format!("request: only the interleaved flag may be set, flags are {:#06x}", self.flags.0)));
            }
        }
        if self.mode == Mode::Server {
            if self.flags.auth_nak() && self.stratum != 0 {
                p.push(Problem::new(rule_hdr, format!("Authentication NAK with stratum {} (should be 0)", self.stratum)));
            }
            if self.flags.synchronized() && (self.receive_timestamp.is_zero() || self.transmit_timestamp.is_zero()) {
                p.push(Problem::new(rule_hdr, "synchronized response with a zero (unknown) receive or transmit timestamp"));
            }
        }
        p
    }
}

/// Decodes the extension fields after an NTPv5 header (offsets count from the packet start).
pub fn parse_extensions(payload: &[u8]) -> ExtensionArea {
    ExtensionArea::parse_dialect(payload, HEADER_LEN, Dialect::V5)
}

/// The typed body of an NTPv5 extension field (§7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FieldBody {
    /// 0xF5FF: the draft name in ASCII (§7.1).
    DraftIdentification {
        /// The name octets as sent.
        name: Vec<u8>,
    },
    /// 0xF501: padding, should be zeros (§7.2).
    Padding {
        /// The padding octets as sent.
        body: Vec<u8>,
    },
    /// 0xF502: key ID and MAC over the header and the fields before (§7.3).
    Mac {
        /// Key identifier.
        key_id: u32,
        /// The MAC (16 octets for AES-CMAC-128).
        mac: Vec<u8>,
    },
    /// 0xF503: asks for the Bloom filter chunk at `offset`; the chunk length is the field's value length (§7.4).
    ReferenceIdsRequest {
        /// Octet offset into the 512-octet filter.
        offset: u16,
        /// The octets after the offset.
        padding: Vec<u8>,
    },
    /// 0xF504: a Bloom filter chunk (§7.4).
    ReferenceIdsResponse {
        /// The chunk.
        chunk: Vec<u8>,
    },
    /// 0xF505: supported NTP versions, bit 0 = NTPv1 (§7.5).
    ServerInformation {
        /// The supported-versions bitmask.
        supported_versions: u16,
        /// Reserved, zero.
        reserved: u16,
    },
    /// 0xF506: transparent-clock corrections (§7.6). Corrections are PTP correctionField values: signed ns × 2^16.
    Correction {
        /// Copy of the request's accumulated delay correction.
        origin_correction: i64,
        /// Copy of the request's path ID.
        origin_path_id: u16,
        /// Reserved, zero.
        reserved: u16,
        /// Delay correction accumulated on this packet's path.
        delay_correction: i64,
        /// Path ID of this packet's path.
        delay_path_id: u16,
        /// Checksum complement (RFC 7821).
        checksum_complement: u16,
    },
    /// 0xF507: time of the last clock update (§7.7).
    ReferenceTimestamp {
        /// The reference timestamp.
        timestamp: NtpTimestamp,
    },
    /// 0xF508: receive timestamp of a phase-uncorrected clock (§7.8).
    MonotonicReceiveTimestamp {
        /// Changes when frequency transfer restarts.
        epoch_id: u32,
        /// The monotonic receive timestamp.
        timestamp: NtpTimestamp,
    },
    /// 0xF509: receive timestamp in another timescale (§7.9).
    SecondaryReceiveTimestamp {
        /// Requested / provided timescale.
        timescale: Timescale,
        /// Era of the timestamp.
        era: u8,
        /// Reserved, zero.
        reserved: u16,
        /// The timestamp (0 if unreliable).
        timestamp: NtpTimestamp,
    },
}

/// The PTP correctionField value "too big to be represented" (§7.6): all bits but the sign set.
pub const CORRECTION_OVERFLOW: i64 = i64::MAX;

/// A Correction field value in nanoseconds (the wire format is ns × 2^16).
pub fn correction_nanos(raw: i64) -> f64 {
    raw as f64 / 65536.0
}

fn fixed_len(t: FieldType, v: &[u8], n: usize) -> Result<()> {
    if v.len() == n {
        Ok(())
    } else {
        Err(Error::Malformed {
            what: t.name(),
            offset: 2,
            reason: match n {
                4 => "length must be 8 octets",
                8 => "length must be 12 octets",
                12 => "length must be 16 octets",
                _ => "length must be 28 octets",
            },
        })
    }
}

fn ts(v: &[u8], at: usize) -> NtpTimestamp {
    NtpTimestamp::from_bits(read_u64(v, at))
}

impl FieldBody {
    /// The typed body; `None` for types that are not NTPv5 draft fields (NTS, unknown, ...).
    /// Errors: a value too short or of the wrong fixed length; offsets count from the field start.
    pub fn parse(field: &FieldRepr) -> Option<Result<FieldBody>> {
        let t = field.field_type;
        let v = &field.value[..];
        let body = match t {
            FieldType::V5DraftIdentification => Ok(FieldBody::DraftIdentification { name: v.to_vec() }),
            FieldType::V5Padding => Ok(FieldBody::Padding { body: v.to_vec() }),
            FieldType::V5Mac => check_len(t.name(), v, 4).map(|_| FieldBody::Mac { key_id: read_u32(v, 0), mac: v[4..].to_vec() }),
            FieldType::V5ReferenceIdsRequest => check_len(t.name(), v, 2)
                .map(|_| FieldBody::ReferenceIdsRequest { offset: read_u16(v, 0), padding: v[2..].to_vec() }),
            FieldType::V5ReferenceIdsResponse => Ok(FieldBody::ReferenceIdsResponse { chunk: v.to_vec() }),
            FieldType::V5ServerInformation => fixed_len(t, v, 4)
                .map(|_| FieldBody::ServerInformation { supported_versions: read_u16(v, 0), reserved: read_u16(v, 2) }),
            FieldType::V5Correction => fixed_len(t, v, 24).map(|_| FieldBody::Correction {
                origin_correction: read_u64(v, 0) as i64,
                origin_path_id: read_u16(v, 8),
                reserved: read_u16(v, 10),
                delay_correction: read_u64(v, 12) as i64,
                delay_path_id: read_u16(v, 20),
                checksum_complement: read_u16(v, 22),
            }),
            FieldType::V5ReferenceTimestamp => fixed_len(t, v, 8).map(|_| FieldBody::ReferenceTimestamp { timestamp: ts(v, 0) }),
            FieldType::V5MonotonicReceiveTimestamp => fixed_len(t, v, 12)
                .map(|_| FieldBody::MonotonicReceiveTimestamp { epoch_id: read_u32(v, 0), timestamp: ts(v, 4) }),
            FieldType::V5SecondaryReceiveTimestamp => fixed_len(t, v, 12).map(|_| FieldBody::SecondaryReceiveTimestamp {
                timescale: Timescale::from_u8(v[0]),
                era: v[1],
                reserved: read_u16(v, 2),
                timestamp: ts(v, 4),
            }),
            _ => return None,
        };
        Some(body)
    }

    /// The field type of this body.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldBody::DraftIdentification { .. } => FieldType::V5DraftIdentification,
            FieldBody::Padding { .. } => FieldType::V5Padding,
            FieldBody::Mac { .. } => FieldType::V5Mac,
            FieldBody::ReferenceIdsRequest { .. } => FieldType::V5ReferenceIdsRequest,
            FieldBody::ReferenceIdsResponse { .. } => FieldType::V5ReferenceIdsResponse,
            FieldBody::ServerInformation { .. } => FieldType::V5ServerInformation,
            FieldBody::Correction { .. } => FieldType::V5Correction,
            FieldBody::ReferenceTimestamp { .. } => FieldType::V5ReferenceTimestamp,
            FieldBody::MonotonicReceiveTimestamp { .. } => FieldType::V5MonotonicReceiveTimestamp,
            FieldBody::SecondaryReceiveTimestamp { .. } => FieldType::V5SecondaryReceiveTimestamp,
        }
    }

    /// The value octets of this body.
    pub fn value(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            FieldBody::DraftIdentification { name } => v.extend(name),
            FieldBody::Padding { body } => v.extend(body),
            FieldBody::Mac { key_id, mac } => {
                v.extend(key_id.to_be_bytes());
                v.extend(mac);
            }
            FieldBody::ReferenceIdsRequest { offset, padding } => {
                v.extend(offset.to_be_bytes());
                v.extend(padding);
            }
            FieldBody::ReferenceIdsResponse { chunk } => v.extend(chunk),
            FieldBody::ServerInformation { supported_versions, reserved } => {
                v.extend(supported_versions.to_be_bytes());
                v.extend(reserved.to_be_bytes());
            }
            FieldBody::Correction {
                origin_correction,
                origin_path_id,
                reserved,
                delay_correction,
                delay_path_id,
                checksum_complement,
            } => {
                v.extend(origin_correction.to_be_bytes());
                v.extend(origin_path_id.to_be_bytes());
                v.extend(reserved.to_be_bytes());
                v.extend(delay_correction.to_be_bytes());
                v.extend(delay_path_id.to_be_bytes());
                v.extend(checksum_complement.to_be_bytes());
            }
            FieldBody::ReferenceTimestamp { timestamp } => v.extend(timestamp.to_bits().to_be_bytes()),
            FieldBody::MonotonicReceiveTimestamp { epoch_id, timestamp } => {
                v.extend(epoch_id.to_be_bytes());
                v.extend(timestamp.to_bits().to_be_bytes());
            }
            FieldBody::SecondaryReceiveTimestamp { timescale, era, reserved, timestamp } => {
                v.push(timescale.to_u8());
                v.push(*era);
                v.extend(reserved.to_be_bytes());
                v.extend(timestamp.to_bits().to_be_bytes());
            }
        }
        v
    }

    /// The generic field: Length covers the value, zero alignment padding after it.
    pub fn to_field(&self) -> FieldRepr {
        FieldRepr::new(self.field_type(), self.value())
    }

    /// Rule breaks of this body in a packet of `mode`, judged by -07.
    pub fn problems(&self, mode: Mode) -> Vec<Problem> {
        self.problems_for(mode, Draft::D07)
    }

    /// Rule breaks of this body in a packet of `mode`, judged by `draft`.
    pub fn problems_for(&self, mode: Mode, draft: Draft) -> Vec<Problem> {
        let mut p = Vec::new();
        let request = mode == Mode::Client;
        let name = self.field_type().name();
        let mut zero_in_request = |rule: &'static str, nonzero: bool| {
            if request && nonzero {
                p.push(Problem::new(rule, format!("{name}: data must be 0 in a request")));
            }
        };
        match self {
            FieldBody::DraftIdentification { name } => {
                // -07 does not say whether the Length counts the alignment
                // padding: a known name followed by its alignment zeros is the
                // -07 reading, not a NUL-terminated name.
                let aligned = draft.padding_may_be_inside_length()
                    && matches!(draft_of(&[self.to_field()]), DraftId::Known { padded: true, .. });
                if name.contains(&0) && !aligned {
                    p.push(Problem::new(draft.rule("§7.1"), "Draft Identification contains NUL octets (must not be NUL-terminated)"));
                }
                if name.iter().any(|b| !b.is_ascii()) {
                    p.push(Problem::new(draft.rule("§7.1"), "Draft Identification is not ASCII"));
                }
            }
            FieldBody::Padding { body } => {
                if body.iter().any(|&b| b != 0) {
                    p.push(Problem::new(draft.rule("§7.2"), "Padding data should be zeros"));
                }
            }
            FieldBody::Mac { .. } => {}
            FieldBody::ReferenceIdsRequest { offset, padding } => {
                let chunk = 2 + padding.len();
                if usize::from(*offset) + chunk > BLOOM_FILTER_LEN {
                    p.push(Problem::new(
                        draft.rule("§7.4"),
                        format!("Reference IDs Request offset {offset} with chunk length {chunk} is past the {BLOOM_FILTER_LEN}-octet filter (field is ignored)"),
                    ));
                }
            }
            FieldBody::ReferenceIdsResponse { chunk } => {
                if chunk.len() > BLOOM_FILTER_LEN {
                    p.push(Problem::new(
                        draft.rule("§7.4"),
                        format!("Reference IDs Response chunk of {} octets exceeds the {BLOOM_FILTER_LEN}-octet filter", chunk.len()),
                    ));
                }
            }
            FieldBody::ServerInformation { supported_versions, reserved } => {
                zero_in_request(draft.rule("§7.5"), *supported_versions != 0 || *reserved != 0);
                if *reserved != 0 {
                    p.push(Problem::new(draft.rule("§7.5"), "Server Information reserved field is not zero"));
                }
            }
            FieldBody::Correction { origin_correction, origin_path_id, reserved, .. } => {
                // Network devices update the delay fields of a request in flight; only the origin fields stay zero.
                zero_in_request(draft.rule("§7.6"), *origin_correction != 0 || *origin_path_id != 0);
                if *reserved != 0 {
                    p.push(Problem::new(draft.rule("§7.6"), "Correction reserved field is not zero"));
                }
            }
            FieldBody::ReferenceTimestamp { timestamp } => {
                zero_in_request(draft.rule("§7.7"), !timestamp.is_zero());
            }
            FieldBody::MonotonicReceiveTimestamp { epoch_id, timestamp } => {
                zero_in_request(draft.rule("§7.8"), *epoch_id != 0 || !timestamp.is_zero());
            }
            FieldBody::SecondaryReceiveTimestamp { timescale, era, reserved, timestamp } => {
                zero_in_request(draft.rule("§7.9"), *era != 0 || *reserved != 0 || !timestamp.is_zero());
                if let Timescale::Unknown(t) = timescale {
                    p.push(Problem::new(draft.rule("§7.9"), format!("Secondary Receive Timestamp: unknown timescale {t}")));
                }
                if !request && *reserved != 0 {
                    p.push(Problem::new(draft.rule("§7.9"), "Secondary Receive Timestamp reserved field is not zero"));
                }
            }
        }
        p
    }
}

/// Rule breaks of the NTPv5 fields of a packet of `mode`: typed parse errors and checks,
/// placement of the MAC and Correction fields, repeated secondary timescales; judged by -07.
pub fn field_problems(mode: Mode, fields: &[FieldRepr]) -> Vec<Problem> {
    field_problems_for(mode, fields, Draft::D07)
}

/// [`field_problems`] judged by `draft`.
pub fn field_problems_for(mode: Mode, fields: &[FieldRepr], draft: Draft) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut secondary: Vec<u8> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        match FieldBody::parse(f) {
            None => {}
            Some(Err(Error::Malformed { reason, .. })) => {
                p.push(Problem::new(draft.rule("§7"), format!("extension field {i} ({}): {reason}", f.field_type)))
            }
            Some(Err(e)) => p.push(Problem::new(draft.rule("§7"), format!("extension field {i} ({}): {e}", f.field_type))),
            Some(Ok(body)) => {
                if let FieldBody::SecondaryReceiveTimestamp { timescale, .. } = &body {
                    if mode == Mode::Client && secondary.contains(&timescale.to_u8()) {
                        p.push(Problem::new(
                            draft.rule("§7.9"),
                            format!("timescale {} requested more than once", timescale.name()),
                        ));
                    }
                    secondary.push(timescale.to_u8());
                }
                p.extend(body.problems_for(mode, draft));
            }
        }
        let rest = &fields[i + 1..];
        if f.field_type == FieldType::V5Mac && rest.iter().any(|g| g.field_type != FieldType::V5Correction) {
            p.push(Problem::new(draft.rule("§7.3"), format!("extension field {i} (MAC) is followed by fields other than Correction")));
        }
        if f.field_type == FieldType::V5Correction && !rest.is_empty() {
            p.push(Problem::new(draft.rule("§7.6"), format!("extension field {i} (Correction) is not the last field")));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ext::Field;
    use proptest::prelude::*;

    /// A v5 request per §6 and §9: LI 0, VN 5, mode 3, all zero but timescale TAI,
    /// the interleaved flag and the client cookie.
    const REQUEST: [u8; 48] = [
        0x2b, 0x00, 0x00, 0x00, // LI 0, VN 5, mode 3 (0b00_101_011); stratum, poll, precision 0
        0x00, 0x00, 0x00, 0x00, // root delay
        0x00, 0x00, 0x00, 0x00, // root dispersion
        0x01, 0x00, 0x00, 0x02, // timescale 1 (TAI), era 0, flags 0x0002 (interleaved)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // server cookie
        0x0c, 0x0c, 0x1e, 0x0c, 0x11, 0x0e, 0x0e, 0x7d, // client cookie
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // receive timestamp
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // transmit timestamp
    ];

    /// The matching response: LI 0, VN 5, mode 4, stratum 2, poll 6, precision -20,
    /// root delay 0.5 s and dispersion 1/256 s in time32, TAI, era 0, flags synchronized|interleaved.
    const RESPONSE: [u8; 48] = [
        0x2c, 0x02, 0x06, 0xec, // LI 0, VN 5, mode 4; stratum 2; poll 6; precision -20
        0x08, 0x00, 0x00, 0x00, // root delay 0x08000000 = 0.5 s in 4.28
        0x00, 0x10, 0x00, 0x00, // root dispersion 0x00100000 = 2^-8 s
        0x01, 0x00, 0x00, 0x03, // timescale TAI, era 0, flags 0x0003
        0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, // server cookie
        0x0c, 0x0c, 0x1e, 0x0c, 0x11, 0x0e, 0x0e, 0x7d, // client cookie (copied)
        0xec, 0xea, 0x8e, 0x10, 0x80, 0x00, 0x00, 0x00, // receive
        0xec, 0xea, 0x8e, 0x10, 0x80, 0x00, 0x10, 0x00, // transmit
    ];

    /// Extension fields of §7.1–§7.9 with the draft code points, as a request would carry them.
    fn request_fields() -> Vec<u8> {
        let mut b = Vec::new();
        // §7.1 Draft Identification, Length 27 = 4 + 23 ASCII octets, 1 octet alignment padding.
        b.extend([0xf5, 0xff, 0x00, 0x1b]);
        b.extend(b"draft-ietf-ntp-ntpv5-07");
        b.push(0);
        // §7.5 Server Information, Length 8, zeros in a request.
        b.extend([0xf5, 0x05, 0x00, 0x08, 0, 0, 0, 0]);
        // §7.4 Reference IDs Request, Length 12: offset 256, 6 octets of padding -> chunk of 8 octets.
        b.extend([0xf5, 0x03, 0x00, 0x0c, 0x01, 0x00, 0, 0, 0, 0, 0, 0]);
        // §7.9 Secondary Receive Timestamp, Length 16: timescale UTC, rest 0.
        b.extend([0xf5, 0x09, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        // §7.8 Monotonic Receive Timestamp, Length 16, zeros in a request.
        b.extend([0xf5, 0x08, 0x00, 0x10]);
        b.extend([0; 12]);
        // §7.7 Reference Timestamp, Length 12, zero in a request.
        b.extend([0xf5, 0x07, 0x00, 0x0c]);
        b.extend([0; 8]);
        // §7.2 Padding, Length 8.
        b.extend([0xf5, 0x01, 0x00, 0x08, 0, 0, 0, 0]);
        // §7.3 MAC, Length 24: key ID 1, 16-octet AES-CMAC.
        b.extend([0xf5, 0x02, 0x00, 0x18, 0, 0, 0, 1]);
        b.extend([0xcc; 16]);
        // §7.6 Correction, Length 28, last; the network added delay correction 1.5 ns (0x18000) and path ID 7.
        b.extend([0xf5, 0x06, 0x00, 0x1c]);
        b.extend([0; 8]); // origin correction
        b.extend([0, 0, 0, 0]); // origin path ID, reserved
        b.extend([0, 0, 0, 0, 0, 0x01, 0x80, 0x00]); // delay correction
        b.extend([0x00, 0x07, 0xab, 0xcd]); // delay path ID, checksum complement
        b
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&RESPONSE[..]).unwrap();
        assert_eq!(p.version(), 5);
        assert_eq!(p.mode(), Mode::Server);
        assert_eq!(p.stratum(), 2);
        assert_eq!(p.poll(), 6);
        assert_eq!(p.precision(), -20);
        assert_eq!(p.root_delay().to_seconds_f64(), 0.5);
        assert_eq!(p.root_dispersion().to_seconds_f64(), 1.0 / 256.0);
        assert_eq!(p.timescale(), Timescale::Tai);
        assert_eq!(p.era(), 0);
        assert!(p.flags().synchronized() && p.flags().interleaved() && !p.flags().auth_nak());
        assert_eq!(p.server_cookie(), 0x5152535455565758);
        assert_eq!(p.client_cookie(), 0x0c0c1e0c110e0e7d);
        assert_eq!(p.transmit_timestamp().fraction(), 0x8000_1000);
        assert!(p.payload().is_empty());
        let r = Repr::parse(&p).unwrap();
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }

    #[test]
    fn construct_over_a5_buffer() {
        for bytes in [REQUEST, RESPONSE] {
            let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            let mut buf = [0xa5u8; 48];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
        }
        let mut r = Repr::request(Timescale::Tai, 0x0c0c1e0c110e0e7d);
        r.flags = Flags(Flags::INTERLEAVED);
        assert_eq!(r.to_bytes(), REQUEST);
        assert!(r.problems().is_empty());
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..48 {
            assert!(matches!(Packet::new_checked(&REQUEST[..n]), Err(Error::Truncated { .. })));
        }
    }

    #[test]
    fn time32_conversions() {
        assert_eq!(Time32::from_bits(0x1000_0000).to_seconds_f64(), 1.0);
        assert_eq!(Time32::from_seconds_f64(0.5).to_bits(), 0x0800_0000);
        assert_eq!(Time32::from_seconds_f64(1e-12).to_bits(), 1, "rounds up");
        assert_eq!(Time32::from_seconds_f64(100.0), Time32::MAX);
        assert_eq!(Time32::from_seconds_f64(-1.0), Time32::ZERO);
        assert_eq!(Time32::from_bits(1).to_duration().to_bits(), 16);
        assert_eq!(Time32::from_duration(NtpDuration::from_bits(17)).to_bits(), 2);
        assert_eq!(Time32::from_duration(NtpDuration::from_seconds(20)), Time32::MAX);
        assert_eq!(Time32::from_duration(NtpDuration::from_seconds(-1)), Time32::ZERO);
    }

    #[test]
    fn timescale_and_flags() {
        for v in 0..=255u8 {
            assert_eq!(Timescale::from_u8(v).to_u8(), v);
        }
        assert_eq!(Timescale::from_u8(3).name(), "Leap-smeared UTC");
        assert_eq!(Timescale::from_u8(9), Timescale::Unknown(9));
        let f = Flags(0x8005);
        assert_eq!(f.unknown_bits(), 0x8000);
        assert_eq!(f.names(), ["Synchronized", "Authentication NAK"]);
    }

    #[test]
    fn header_problems() {
        let mut b = REQUEST;
        b[1] = 3; // stratum in a request
        b[12] = 7; // unknown timescale
        b[14] = 0x40; // undefined flag
        b[15] = 0x03; // synchronized in a request
        b[40] = 1; // transmit timestamp in a request
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        let p = r.problems();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.iter().all(|p| p.rule == "draft-ietf-ntp-ntpv5-07 §6"));
        let mut b = RESPONSE;
        b[15] = 0x05; // synchronized + auth NAK with stratum 2
        b[0] = 0x2d; // mode 5
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.problems().len(), 1, "mode 5; the NAK rule is for responses only");
        b[0] = 0x2c;
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.problems().len(), 1);
    }

    #[test]
    fn every_draft_field_parses_and_round_trips() {
        let b = request_fields();
        let area = parse_extensions(&b);
        assert!(area.is_clean(), "{:?}", area.problems);
        assert_eq!(area.fields.len(), 9);
        assert!(field_problems(Mode::Client, &area.fields).is_empty(), "{:?}", field_problems(Mode::Client, &area.fields));
        let bodies: Vec<FieldBody> = area.fields.iter().map(|f| FieldBody::parse(f).unwrap().unwrap()).collect();
        assert_eq!(bodies[0], FieldBody::DraftIdentification { name: b"draft-ietf-ntp-ntpv5-07".to_vec() });
        assert_eq!(bodies[1], FieldBody::ServerInformation { supported_versions: 0, reserved: 0 });
        assert_eq!(bodies[2], FieldBody::ReferenceIdsRequest { offset: 256, padding: vec![0; 6] });
        assert!(matches!(bodies[3], FieldBody::SecondaryReceiveTimestamp { timescale: Timescale::Utc, .. }));
        assert!(matches!(bodies[7], FieldBody::Mac { key_id: 1, ref mac } if mac.len() == 16));
        match &bodies[8] {
            FieldBody::Correction { delay_correction, delay_path_id, checksum_complement, .. } => {
                assert_eq!(correction_nanos(*delay_correction), 1.5);
                assert_eq!(*delay_path_id, 7);
                assert_eq!(*checksum_complement, 0xabcd);
            }
            other => panic!("{other:?}"),
        }
        let rebuilt: Vec<u8> = bodies.iter().flat_map(|b| b.to_field().to_bytes()).collect();
        assert_eq!(rebuilt, b);
    }

    #[test]
    fn response_field_values() {
        // §7.5 Server Information in a response: versions 4 and 5 -> 0x0018.
        let si = FieldBody::ServerInformation { supported_versions: 0x0018, reserved: 0 };
        assert_eq!(si.to_field().to_bytes(), [0xf5, 0x05, 0x00, 0x08, 0x00, 0x18, 0x00, 0x00]);
        assert!(si.problems(Mode::Server).is_empty());
        assert_eq!(si.problems(Mode::Client).len(), 1);
        let rt = FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::from_bits(5) };
        assert_eq!(rt.problems(Mode::Client).len(), 1);
        let resp = FieldBody::ReferenceIdsResponse { chunk: vec![0xff; 8] };
        assert_eq!(resp.to_field().buffer_len(), 12);
    }

    #[test]
    fn field_length_errors() {
        let f = |t: u16, v: Vec<u8>| FieldRepr::new(FieldType::from_u16(t), v);
        for (t, n) in [(0xf505u16, 4usize), (0xf506, 24), (0xf507, 8), (0xf508, 12), (0xf509, 12)] {
            assert!(FieldBody::parse(&f(t, vec![0; n])).unwrap().is_ok());
            assert!(matches!(FieldBody::parse(&f(t, vec![0; n + 4])), Some(Err(Error::Malformed { .. }))), "{t:#x}");
            assert!(FieldBody::parse(&f(t, vec![0; n - 1])).unwrap().is_err());
        }
        assert!(matches!(FieldBody::parse(&f(0xf502, vec![0; 3])), Some(Err(Error::Truncated { .. }))));
        assert!(FieldBody::parse(&f(0xf503, vec![0; 1])).unwrap().is_err());
        assert!(FieldBody::parse(&f(0x0104, vec![])).is_none());
        let p = field_problems(Mode::Client, &[f(0xf505, vec![0; 8])]);
        assert_eq!(p.len(), 1);
        assert!(p[0].detail.contains("must be 8 octets"));
    }

    #[test]
    fn placement_and_content_rules() {
        let mac = FieldBody::Mac { key_id: 1, mac: vec![0; 16] }.to_field();
        let corr = FieldBody::Correction {
            origin_correction: 0,
            origin_path_id: 0,
            reserved: 0,
            delay_correction: 0,
            delay_path_id: 0,
            checksum_complement: 0,
        }
        .to_field();
        let pad = FieldBody::Padding { body: vec![0; 4] }.to_field();
        assert!(field_problems(Mode::Client, &[pad.clone(), mac.clone(), corr.clone()]).is_empty());
        assert_eq!(field_problems(Mode::Client, &[mac.clone(), pad.clone()]).len(), 1);
        assert_eq!(field_problems(Mode::Client, &[corr.clone(), mac.clone()]).len(), 1);
        let sec = |t: u8| FieldBody::SecondaryReceiveTimestamp {
            timescale: Timescale::from_u8(t),
            era: 0,
            reserved: 0,
            timestamp: NtpTimestamp::ZERO,
        }
        .to_field();
        assert_eq!(field_problems(Mode::Client, &[sec(1), sec(1)]).len(), 1);
        assert!(field_problems(Mode::Server, &[sec(1), sec(1)]).is_empty());
        assert_eq!(field_problems(Mode::Client, &[sec(9)]).len(), 1);
        let refreq = FieldBody::ReferenceIdsRequest { offset: 510, padding: vec![0; 6] };
        assert_eq!(refreq.problems(Mode::Client).len(), 1);
        // A NUL after the name: the alignment padding inside the Length, which
        // -07 allows (it does not say whether the Length counts it) and -08 does not.
        let draft = FieldBody::DraftIdentification { name: b"draft-ietf-ntp-ntpv5-07\0".to_vec() };
        assert!(draft.problems(Mode::Client).is_empty());
        let draft = FieldBody::DraftIdentification { name: b"draft-ietf-ntp-ntpv5-08\0".to_vec() };
        assert_eq!(draft.problems_for(Mode::Client, Draft::D08).len(), 1);
        let nul = FieldBody::DraftIdentification { name: b"draft\0x".to_vec() };
        assert_eq!(nul.problems(Mode::Client).len(), 1, "a NUL inside the name is never padding");
        let nonzero_pad = FieldBody::Padding { body: vec![1] };
        assert_eq!(nonzero_pad.problems(Mode::Server).len(), 1);
    }

    #[test]
    fn draft_identification_padded_inside_length_round_trips() {
        // The -07 reading where the Length includes the alignment zero: Length 28.
        let mut b = vec![0xf5, 0xff, 0x00, 0x1c];
        b.extend(b"draft-ietf-ntp-ntpv5-07\0");
        let f = FieldRepr::parse(&Field::new_checked(&b[..]).unwrap()).unwrap();
        let body = FieldBody::parse(&f).unwrap().unwrap();
        assert_eq!(body.to_field().to_bytes(), b);
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        (any::<[u8; 6]>(), any::<[u32; 2]>(), any::<u16>(), any::<[u64; 4]>()).prop_map(|(b, s, flags, t)| Repr {
            leap: LeapIndicator::from_bits(b[0] >> 6),
            version: (b[0] >> 3) & 7,
            mode: Mode::from_bits(b[0]),
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: Time32::from_bits(s[0]),
            root_dispersion: Time32::from_bits(s[1]),
            timescale: Timescale::from_u8(b[4]),
            era: b[5],
            flags: Flags(flags),
            server_cookie: t[0],
            client_cookie: t[1],
            receive_timestamp: NtpTimestamp::from_bits(t[2]),
            transmit_timestamp: NtpTimestamp::from_bits(t[3]),
        })
    }

    fn arb_body() -> impl Strategy<Value = FieldBody> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..20);
        prop_oneof![
            bytes().prop_map(|name| FieldBody::DraftIdentification { name }),
            bytes().prop_map(|body| FieldBody::Padding { body }),
            (any::<u32>(), bytes()).prop_map(|(key_id, mac)| FieldBody::Mac { key_id, mac }),
            (any::<u16>(), bytes()).prop_map(|(offset, padding)| FieldBody::ReferenceIdsRequest { offset, padding }),
            bytes().prop_map(|chunk| FieldBody::ReferenceIdsResponse { chunk }),
            (any::<u16>(), any::<u16>()).prop_map(|(supported_versions, reserved)| FieldBody::ServerInformation { supported_versions, reserved }),
            (any::<[i64; 2]>(), any::<[u16; 4]>()).prop_map(|(c, w)| FieldBody::Correction {
                origin_correction: c[0],
                origin_path_id: w[0],
                reserved: w[1],
                delay_correction: c[1],
                delay_path_id: w[2],
                checksum_complement: w[3],
            }),
            any::<u64>().prop_map(|t| FieldBody::ReferenceTimestamp { timestamp: NtpTimestamp::from_bits(t) }),
            (any::<u32>(), any::<u64>()).prop_map(|(epoch_id, t)| FieldBody::MonotonicReceiveTimestamp {
                epoch_id,
                timestamp: NtpTimestamp::from_bits(t)
            }),
            (any::<[u8; 2]>(), any::<u16>(), any::<u64>()).prop_map(|(b, reserved, t)| FieldBody::SecondaryReceiveTimestamp {
                timescale: Timescale::from_u8(b[0]),
                era: b[1],
                reserved,
                timestamp: NtpTimestamp::from_bits(t)
            }),
        ]
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr()) {
            let bytes = repr.to_bytes();
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn any_header_bytes_round_trip(bytes: [u8; 48]) {
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(r.to_bytes(), bytes);
            let _ = r.problems();
        }

        #[test]
        fn bodies_round_trip(bodies in proptest::collection::vec(arb_body(), 0..6)) {
            let bytes: Vec<u8> = bodies.iter().flat_map(|b| b.to_field().to_bytes()).collect();
            let area = parse_extensions(&bytes);
            prop_assert!(area.error.is_none());
            let back: Vec<FieldBody> = area.fields.iter().map(|f| FieldBody::parse(f).unwrap().unwrap()).collect();
            prop_assert_eq!(back, bodies);
            prop_assert_eq!(area.to_bytes(), bytes);
        }

        #[test]
        fn any_field_bytes_parse_emit_parse(t in 0xf501u16..0xf50a, value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let f = FieldRepr::new(FieldType::from_u16(t), value);
            if let Some(Ok(body)) = FieldBody::parse(&f) {
                prop_assert_eq!(body.to_field(), f.clone());
                let _ = body.problems(Mode::Client);
            }
            let _ = field_problems(Mode::Server, &[f]);
        }
    }
}
