//! The NTPv4 packet header (RFC 5905 §7.3, Figure 8).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |LI | VN  |Mode |    Stratum    |     Poll      |   Precision   |
//! |                         Root Delay                            |
//! |                         Root Dispersion                       |
//! |                          Reference ID                         |
//! |                     Reference Timestamp (64)                  |
//! |                      Origin Timestamp (64)                    |
//! |                      Receive Timestamp (64)                   |
//! |                      Transmit Timestamp (64)                  |
//! ```
//!
//! Versions 1 to 4 share this layout; version 5 does not (see [`super::v5`]).

use super::refid::ReferenceId;
use super::short::NtpShort;
use super::{check_len, read_u32, read_u64, Result};
use crate::time::NtpTimestamp;

mod field {
    use core::ops::Range;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const REFERENCE_ID: Range<usize> = 12..16;
    pub const REFERENCE_TS: Range<usize> = 16..24;
    pub const ORIGIN_TS: Range<usize> = 24..32;
    pub const RECEIVE_TS: Range<usize> = 32..40;
    pub const TRANSMIT_TS: Range<usize> = 40..48;
    pub const PAYLOAD: usize = 48;
}

/// Length of the NTPv4 header in octets.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The leap indicator (RFC 5905 Figure 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeapIndicator {
    /// No warning.
    NoWarning = 0,
    /// Last minute of the day has 61 seconds.
    Insert = 1,
    /// Last minute of the day has 59 seconds.
    Delete = 2,
    /// Unknown (clock unsynchronized).
    Unsynchronized = 3,
}

impl LeapIndicator {
    /// From the two bits.
    pub const fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => LeapIndicator::NoWarning,
            1 => LeapIndicator::Insert,
            2 => LeapIndicator::Delete,
            _ => LeapIndicator::Unsynchronized,
        }
    }

    /// The two bits.
    pub const fn to_bits(self) -> u8 {
        self as u8
    }
}

/// The association mode (RFC 5905 Figure 10). All eight values are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// 0: reserved.
    Reserved = 0,
    /// 1: symmetric active.
    SymmetricActive = 1,
    /// 2: symmetric passive.
    SymmetricPassive = 2,
    /// 3: client.
    Client = 3,
    /// 4: server.
    Server = 4,
    /// 5: broadcast.
    Broadcast = 5,
    /// 6: NTP control message (RFC 1305 mode 6).
    Control = 6,
    /// 7: reserved for private use (ntpd's mode 7).
    Private = 7,
}

impl Mode {
    /// From the three bits.
    pub const fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }

    /// The three bits.
    pub const fn to_bits(self) -> u8 {
        self as u8
    }

    /// A lower-case name, as Wireshark shows it.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Reserved => "reserved",
            Mode::SymmetricActive => "symmetric active",
            Mode::SymmetricPassive => "symmetric passive",
            Mode::Client => "client",
            Mode::Server => "server",
            Mode::Broadcast => "broadcast",
            Mode::Control => "control",
            Mode::Private => "private",
        }
    }
}

/// The version number of any NTP packet: bits 2–4 of the first octet. This is
/// how v4 and v5 packets are told apart.
pub fn version_of(buf: &[u8]) -> Option<u8> {
    buf.first().map(|b| (b >> 3) & 7)
}

/// A read/write view of an NTP header in a buffer (versions 1 to 4).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is
    /// shorter than [`HEADER_LEN`]. For buffers the caller sized.
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
        check_len("NTP header", self.buffer.as_ref(), HEADER_LEN)
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

    /// Version number (0–7).
    pub fn version(&self) -> u8 {
        (self.b()[field::LI_VN_MODE] >> 3) & 7
    }

    /// Mode.
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.b()[field::LI_VN_MODE])
    }

    /// Stratum octet as on the wire (0 is unspecified or a kiss-o'-death).
    pub fn stratum(&self) -> u8 {
        self.b()[field::STRATUM]
    }

    /// Poll exponent, log2 seconds.
    pub fn poll(&self) -> i8 {
        self.b()[field::POLL] as i8
    }

    /// Precision exponent, log2 seconds.
    pub fn precision(&self) -> i8 {
        self.b()[field::PRECISION] as i8
    }

    /// Root delay.
    pub fn root_delay(&self) -> NtpShort {
        NtpShort::from_bits(read_u32(self.b(), field::ROOT_DELAY.start))
    }

    /// Root dispersion.
    pub fn root_dispersion(&self) -> NtpShort {
        NtpShort::from_bits(read_u32(self.b(), field::ROOT_DISPERSION.start))
    }

    /// Reference ID.
    pub fn reference_id(&self) -> ReferenceId {
        let mut id = [0; 4];
        id.copy_from_slice(&self.b()[field::REFERENCE_ID]);
        ReferenceId(id)
    }

    /// Reference timestamp.
    pub fn reference_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::REFERENCE_TS.start))
    }

    /// Origin timestamp.
    pub fn origin_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::ORIGIN_TS.start))
    }

    /// Receive timestamp.
    pub fn receive_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::RECEIVE_TS.start))
    }

    /// Transmit timestamp.
    pub fn transmit_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp::from_bits(read_u64(self.b(), field::TRANSMIT_TS.start))
    }

    /// Everything after the header: extension fields and/or a MAC.
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
    pub fn set_root_delay(&mut self, v: NtpShort) {
        self.bm()[field::ROOT_DELAY].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the root dispersion.
    pub fn set_root_dispersion(&mut self, v: NtpShort) {
        self.bm()[field::ROOT_DISPERSION].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the reference ID.
    pub fn set_reference_id(&mut self, v: ReferenceId) {
        self.bm()[field::REFERENCE_ID].copy_from_slice(&v.0);
    }

    /// Sets the reference timestamp.
    pub fn set_reference_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::REFERENCE_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the origin timestamp.
    pub fn set_origin_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::ORIGIN_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the receive timestamp.
    pub fn set_receive_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::RECEIVE_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Sets the transmit timestamp.
    pub fn set_transmit_timestamp(&mut self, v: NtpTimestamp) {
        self.bm()[field::TRANSMIT_TS].copy_from_slice(&v.to_bits().to_be_bytes());
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::PAYLOAD..]
    }
}

/// A decoded NTP header (versions 1 to 4). Every field is kept as sent, so
/// `emit(parse(x)) == x` for the 48 header octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Leap indicator.
    pub leap: LeapIndicator,
    /// Version number as sent (1–4 are defined for this layout).
    pub version: u8,
    /// Mode.
    pub mode: Mode,
    /// Stratum octet as sent.
    pub stratum: u8,
    /// Poll exponent.
    pub poll: i8,
    /// Precision exponent.
    pub precision: i8,
    /// Root delay.
    pub root_delay: NtpShort,
    /// Root dispersion.
    pub root_dispersion: NtpShort,
    /// Reference ID.
    pub reference_id: ReferenceId,
    /// Reference timestamp.
    pub reference_timestamp: NtpTimestamp,
    /// Origin timestamp.
    pub origin_timestamp: NtpTimestamp,
    /// Receive timestamp.
    pub receive_timestamp: NtpTimestamp,
    /// Transmit timestamp.
    pub transmit_timestamp: NtpTimestamp,
}

impl Repr {
    /// Reads the header. Only the length is checked here: values a receiver
    /// should refuse (version, stratum, LI) are judged by the protocol layer and
    /// by [`Repr::problems`], so that a decoder can still show them.
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
            reference_id: packet.reference_id(),
            reference_timestamp: packet.reference_timestamp(),
            origin_timestamp: packet.origin_timestamp(),
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
        packet.set_reference_id(self.reference_id);
        packet.set_reference_timestamp(self.reference_timestamp);
        packet.set_origin_timestamp(self.origin_timestamp);
        packet.set_receive_timestamp(self.receive_timestamp);
        packet.set_transmit_timestamp(self.transmit_timestamp);
    }

    /// Writes the header to a new 48-octet array.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf
    }

    /// The leap-smear correction this header's reference ID carries, if it is a
    /// smear REFID 254.b1.b2.b3 (draft-stenn-ntp-leap-smear-refid-02): above
    /// stratum 1 it stands in for the upstream address; at stratum 1 it stands
    /// in for the clock code, which is then not ASCII; at stratum 0 it never does.
    pub fn smear_correction(&self) -> Option<super::refid::SmearCorrection> {
        match self.stratum {
            0 => None,
            1 if self.reference_id.ascii().is_some() => None,
            _ => self.reference_id.smear_correction(),
        }
    }

    /// Whether this is a kiss-o'-death packet: stratum 0 in a server,
    /// symmetric or broadcast reply (RFC 5905 §7.4).
    pub fn is_kiss_of_death(&self) -> bool {
        self.stratum == 0
            && matches!(self.mode, Mode::Server | Mode::SymmetricActive | Mode::SymmetricPassive | Mode::Broadcast)
    }

    /// Conformance problems of the header alone (RFC 5905 §7.3, §9.2).
    pub fn problems(&self) -> Vec<super::Problem> {
        use super::Problem;
        let mut p = Vec::new();
        if !(1..=4).contains(&self.version) {
            p.push(Problem::new("RFC 5905 §9.2", format!("version {} is not an NTPv1-v4 version", self.version)));
        }
        if self.mode == Mode::Reserved {
            p.push(Problem::new("RFC 5905 §7.3", "mode 0 is reserved"));
        }
        if self.stratum >= 17 {
            p.push(Problem::new("RFC 5905 §7.3", format!("stratum {} is reserved (17-255)", self.stratum)));
        }
        if self.stratum == 16 {
            p.push(Problem::new("RFC 5905 §7.3", "stratum 16 is sent as 0 on the wire"));
        }
        let replying = matches!(self.mode, Mode::Server | Mode::Broadcast | Mode::SymmetricPassive);
        // A kiss-o'-death carries no time (RFC 5905 §7.4), so its zero transmit
        // timestamp is no fault.
        if replying && self.transmit_timestamp.is_zero() && !self.is_kiss_of_death() {
            p.push(Problem::new("RFC 5905 §8", "transmit timestamp is zero"));
        }
        if matches!(self.stratum, 0 | 1) && replying && self.reference_id.ascii().is_none() {
            p.push(Problem::new(
                "RFC 5905 §7.3",
                format!("stratum {} reference ID {:02x?} is not a left-justified ASCII code", self.stratum, self.reference_id.0),
            ));
        }
        if self.is_kiss_of_death() {
            if let super::refid::KissCode::Unknown(_) = self.reference_id.kiss_code() {
                p.push(Problem::new("RFC 5905 §7.4", format!("unregistered kiss code {:?}", self.reference_id.kiss_code().name())));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A chronyd 4.3 server reply (stratum 2, refid 127.127.1.1 style hidden) captured on loopback,
    /// trimmed to the header.
    const SERVER_REPLY: [u8; 48] = [
        0x24, 0x02, 0x03, 0xe8, // LI 0, VN 4, mode 4; stratum 2; poll 3; precision -24
        0x00, 0x00, 0x00, 0x10, // root delay 16/65536 s
        0x00, 0x00, 0x00, 0x20, // root dispersion 32/65536 s
        0xc0, 0x00, 0x02, 0x07, // refid 192.0.2.7
        0xec, 0xea, 0x8e, 0x00, 0x00, 0x00, 0x00, 0x00, // reference
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // origin
        0xec, 0xea, 0x8e, 0x10, 0x80, 0x00, 0x00, 0x00, // receive
        0xec, 0xea, 0x8e, 0x10, 0x80, 0x00, 0x10, 0x00, // transmit
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SERVER_REPLY[..]).unwrap();
        assert_eq!(p.leap(), LeapIndicator::NoWarning);
        assert_eq!(p.version(), 4);
        assert_eq!(p.mode(), Mode::Server);
        assert_eq!(p.stratum(), 2);
        assert_eq!(p.poll(), 3);
        assert_eq!(p.precision(), -24);
        assert_eq!(p.root_delay().to_bits(), 16);
        assert_eq!(p.root_dispersion().to_bits(), 32);
        assert_eq!(p.reference_id().to_ipv4().to_string(), "192.0.2.7");
        assert_eq!(p.origin_timestamp().to_bits(), 0x0102030405060708);
        assert_eq!(p.receive_timestamp().fraction(), 0x8000_0000);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn construct_over_a5_buffer() {
        let repr = Repr::parse(&Packet::new_checked(&SERVER_REPLY[..]).unwrap()).unwrap();
        let mut buf = [0xa5u8; 48];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, SERVER_REPLY);
        assert!(repr.problems().is_empty(), "{:?}", repr.problems());
    }

    #[test]
    fn short_buffers_are_refused_not_panicked() {
        for n in 0..48 {
            assert!(matches!(Packet::new_checked(&SERVER_REPLY[..n]), Err(super::super::Error::Truncated { .. })));
        }
        assert_eq!(version_of(&[]), None);
        assert_eq!(version_of(&[0x2c]), Some(5));
    }

    #[test]
    fn kiss_of_death_is_recognised() {
        let mut b = SERVER_REPLY;
        b[1] = 0;
        b[12..16].copy_from_slice(b"RATE");
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert!(r.is_kiss_of_death());
        assert_eq!(r.reference_id.kiss_code(), super::super::refid::KissCode::Rate);
        assert!(r.problems().is_empty());
        b[12..16].copy_from_slice(b"ZZZZ");
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.problems().len(), 1);
    }

    #[test]
    fn problems_name_their_rule() {
        let mut b = SERVER_REPLY;
        b[0] = 7 << 3; // LI 0, version 7, mode 0
        b[1] = 200;
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        let text: Vec<String> = r.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("version 7") && text[0].contains("RFC 5905 §9.2"));
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Repr> {
        (any::<[u8; 4]>(), any::<[u32; 3]>(), any::<[u64; 4]>()).prop_map(|(b, s, t)| Repr {
            leap: LeapIndicator::from_bits(b[0] >> 6),
            version: (b[0] >> 3) & 7,
            mode: Mode::from_bits(b[0]),
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: NtpShort::from_bits(s[0]),
            root_dispersion: NtpShort::from_bits(s[1]),
            reference_id: ReferenceId(s[2].to_be_bytes()),
            reference_timestamp: NtpTimestamp::from_bits(t[0]),
            origin_timestamp: NtpTimestamp::from_bits(t[1]),
            receive_timestamp: NtpTimestamp::from_bits(t[2]),
            transmit_timestamp: NtpTimestamp::from_bits(t[3]),
        })
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr()) {
            let bytes = repr.to_bytes();
            let back = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(back, repr);
        }

        #[test]
        fn any_bytes_round_trip(bytes: [u8; 48]) {
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(r.to_bytes(), bytes);
        }
    }
}
