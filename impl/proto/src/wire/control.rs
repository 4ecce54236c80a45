//! NTP control messages (mode 6, ntpq: RFC 9327, RFC 1305 Appendix B) and
//! private messages (mode 7, ntpdc: ntpd's own format, header only).
//!
//! Mode 6 header (12 octets), then `Count` octets of data, then padding to a
//! 32-bit boundary and an optional authenticator:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |LI |  VN |Mode |R|E|M| OpCode  |       Sequence Number         |
//! |            Status             |       Association ID          |
//! |            Offset             |            Count              |
//! |                  Data (up to 468 octets) ...                  |
//! ```
//!
//! Mode 7 header (8 octets), then `Number of items` × `Item size` octets:
//!
//! ```text
//! |R|M| VN  |Mode |A|  Sequence   | Implementation| Request code  |
//! |  Err  |  Number of data items |  MBZ  |   Size of data item   |
//! ```
//!
//! As for every wire format here, `Repr::emit(Repr::parse(x))` gives back `x`.

use super::v4::{LeapIndicator, Mode};
use super::{check_len, read_u16, Error, Problem, Result};

mod field {
    use core::ops::Range;
    pub const LI_VN_MODE: usize = 0;
    pub const R_E_M_OP: usize = 1;
    pub const SEQUENCE: Range<usize> = 2..4;
    pub const STATUS: Range<usize> = 4..6;
    pub const ASSOCIATION_ID: Range<usize> = 6..8;
    pub const OFFSET: Range<usize> = 8..10;
    pub const COUNT: Range<usize> = 10..12;
    pub const DATA: usize = 12;
}

/// Length of the mode 6 header in octets.
pub const HEADER_LEN: usize = field::DATA;
/// Most data octets one mode 6 message carries (RFC 9327 §2).
pub const MAX_DATA_LEN: usize = 468;

const RESPONSE: u8 = 0x80;
const ERROR: u8 = 0x40;
const MORE: u8 = 0x20;

/// A mode 6 operation code (RFC 9327 §3; 8–12 are ntpd's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0: reserved.
    Reserved,
    /// 1: read status.
    ReadStatus,
    /// 2: read variables.
    ReadVariables,
    /// 3: write variables.
    WriteVariables,
    /// 4: read clock variables.
    ReadClockVariables,
    /// 5: write clock variables.
    WriteClockVariables,
    /// 6: set trap address/port.
    SetTrap,
    /// 7: asynchronous message (trap).
    AsyncMessage,
    /// 8: runtime configuration (ntpd).
    Configure,
    /// 9: save configuration to a file (ntpd).
    SaveConfig,
    /// 10: retrieve the MRU list (ntpd).
    ReadMru,
    /// 11: retrieve an ordered list (ntpd).
    ReadOrderedList,
    /// 12: request a client nonce (ntpd).
    RequestNonce,
    /// 31: unset trap address/port.
    UnsetTrap,
    /// Any other value of the five bits.
    Unknown(u8),
}

impl Opcode {
    /// From the five bits.
    pub const fn from_bits(b: u8) -> Self {
        match b & 0x1f {
            0 => Opcode::Reserved,
            1 => Opcode::ReadStatus,
            2 => Opcode::ReadVariables,
            3 => Opcode::WriteVariables,
            4 => Opcode::ReadClockVariables,
            5 => Opcode::WriteClockVariables,
            6 => Opcode::SetTrap,
            7 => Opcode::AsyncMessage,
            8 => Opcode::Configure,
            9 => Opcode::SaveConfig,
            10 => Opcode::ReadMru,
            11 => Opcode::ReadOrderedList,
            12 => Opcode::RequestNonce,
            31 => Opcode::UnsetTrap,
            other => Opcode::Unknown(other),
        }
    }

    /// The five bits.
    pub const fn to_bits(self) -> u8 {
        match self {
            Opcode::Reserved => 0,
            Opcode::ReadStatus => 1,
            Opcode::ReadVariables => 2,
            Opcode::WriteVariables => 3,
            Opcode::ReadClockVariables => 4,
            Opcode::WriteClockVariables => 5,
            Opcode::SetTrap => 6,
            Opcode::AsyncMessage => 7,
            Opcode::Configure => 8,
            Opcode::SaveConfig => 9,
            Opcode::ReadMru => 10,
            Opcode::ReadOrderedList => 11,
            Opcode::RequestNonce => 12,
            Opcode::UnsetTrap => 31,
            Opcode::Unknown(b) => b & 0x1f,
        }
    }

    /// The name Wireshark shows.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Reserved => "reserved",
            Opcode::ReadStatus => "read status",
            Opcode::ReadVariables => "read variables",
            Opcode::WriteVariables => "write variables",
            Opcode::ReadClockVariables => "read clock variables",
            Opcode::WriteClockVariables => "write clock variables",
            Opcode::SetTrap => "set trap address/port",
            Opcode::AsyncMessage => "asynchronous message",
            Opcode::Configure => "runtime configuration",
            Opcode::SaveConfig => "save config to file",
            Opcode::ReadMru => "retrieve MRU (mrulist)",
            Opcode::ReadOrderedList => "retrieve ordered list",
            Opcode::RequestNonce => "request a client nonce",
            Opcode::UnsetTrap => "unset trap address/port",
            Opcode::Unknown(_) => "unknown",
        }
    }
}

/// How a response's 16-bit status word reads (RFC 9327 §4, chosen by opcode,
/// error bit and association ID as Wireshark does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// System status word: leap indicator, clock source, event counter and code.
    System {
        /// Leap indicator.
        leap: LeapIndicator,
        /// Clock source (6 bits).
        clock_source: u8,
        /// System event counter (4 bits).
        event_count: u8,
        /// Last system event code (4 bits).
        event_code: u8,
    },
    /// Peer status word: status flags, selection, event counter and code.
    Peer {
        /// Peer status bits: configured, auth enabled, authentic, reachable, broadcast (5 bits).
        flags: u8,
        /// Selection (3 bits).
        selection: u8,
        /// Peer event counter (4 bits).
        event_count: u8,
        /// Last peer event code (4 bits).
        event_code: u8,
    },
    /// Clock status word: status and last event code.
    Clock {
        /// Clock status (8 bits).
        status: u8,
        /// Last clock event code (8 bits).
        event_code: u8,
    },
    /// Error status word of an error response: the error code.
    Error {
        /// Error code (8 bits).
        code: u8,
    },
    /// A request's or an opcode's status without a defined structure.
    Raw(u16),
}

impl Status {
    /// The name of an error response's code (RFC 9327 §4).
    pub const fn error_name(code: u8) -> &'static str {
        match code {
            0 => "unspecified",
            1 => "authentication failure",
            2 => "invalid message length or format",
            3 => "invalid opcode",
            4 => "unknown association identifier",
            5 => "unknown variable name",
            6 => "invalid variable value",
            7 => "administratively prohibited",
            _ => "unknown",
        }
    }
}

/// A read/write view of a mode 6 message in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; for buffers the caller sized.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds the 12-octet header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header.
    pub fn check_len(&self) -> Result<()> {
        check_len("NTP control message header", self.b(), HEADER_LEN)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Leap indicator.
    pub fn leap(&self) -> LeapIndicator {
        LeapIndicator::from_bits(self.b()[field::LI_VN_MODE] >> 6)
    }

    /// Version number.
    pub fn version(&self) -> u8 {
        (self.b()[field::LI_VN_MODE] >> 3) & 7
    }

    /// Mode (6 for a control message).
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.b()[field::LI_VN_MODE])
    }

    /// R: a response.
    pub fn is_response(&self) -> bool {
        self.b()[field::R_E_M_OP] & RESPONSE != 0
    }

    /// E: an error response.
    pub fn is_error(&self) -> bool {
        self.b()[field::R_E_M_OP] & ERROR != 0
    }

    /// M: more fragments follow.
    pub fn more(&self) -> bool {
        self.b()[field::R_E_M_OP] & MORE != 0
    }

    /// Operation code.
    pub fn opcode(&self) -> Opcode {
        Opcode::from_bits(self.b()[field::R_E_M_OP])
    }

    /// Sequence number.
    pub fn sequence(&self) -> u16 {
        read_u16(self.b(), field::SEQUENCE.start)
    }

    /// Status word, raw.
    pub fn status(&self) -> u16 {
        read_u16(self.b(), field::STATUS.start)
    }

    /// Association ID (0: the system).
    pub fn association_id(&self) -> u16 {
        read_u16(self.b(), field::ASSOCIATION_ID.start)
    }

    /// Offset of this fragment's data in the whole response.
    pub fn offset(&self) -> u16 {
        read_u16(self.b(), field::OFFSET.start)
    }

    /// Count: data octets in this message.
    pub fn count(&self) -> u16 {
        read_u16(self.b(), field::COUNT.start)
    }

    /// The data octets present: `count` of them, or fewer if the buffer ends first.
    pub fn data(&self) -> &[u8] {
        let rest = &self.b()[field::DATA..];
        &rest[..rest.len().min(usize::from(self.count()))]
    }

    /// What follows the data: padding and an optional authenticator.
    pub fn trailer(&self) -> &[u8] {
        &self.b()[field::DATA + self.data().len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets leap indicator and version; the mode is always 6.
    pub fn set_li_vn(&mut self, leap: LeapIndicator, version: u8) {
        self.bm()[field::LI_VN_MODE] = leap.to_bits() << 6 | (version & 7) << 3 | Mode::Control.to_bits();
    }

    /// Sets R, E, M and the opcode.
    pub fn set_flags_opcode(&mut self, response: bool, error: bool, more: bool, opcode: Opcode) {
        let flags = if response { RESPONSE } else { 0 } | if error { ERROR } else { 0 } | if more { MORE } else { 0 };
        self.bm()[field::R_E_M_OP] = flags | opcode.to_bits();
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        self.bm()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the sequence number.
    pub fn set_sequence(&mut self, v: u16) {
        self.set_u16(field::SEQUENCE.start, v);
    }

    /// Sets the status word.
    pub fn set_status(&mut self, v: u16) {
        self.set_u16(field::STATUS.start, v);
    }

    /// Sets the association ID.
    pub fn set_association_id(&mut self, v: u16) {
        self.set_u16(field::ASSOCIATION_ID.start, v);
    }

    /// Sets the offset.
    pub fn set_offset(&mut self, v: u16) {
        self.set_u16(field::OFFSET.start, v);
    }

    /// Sets the count.
    pub fn set_count(&mut self, v: u16) {
        self.set_u16(field::COUNT.start, v);
    }

    /// The octets after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bm()[field::DATA..]
    }
}

/// A decoded mode 6 message. Every field is kept as sent (the count too, even
/// when fewer data octets follow), so `emit(parse(x)) == x`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Leap indicator.
    pub leap: LeapIndicator,
    /// Version number.
    pub version: u8,
    /// R: a response.
    pub response: bool,
    /// E: an error response.
    pub error: bool,
    /// M: more fragments follow.
    pub more: bool,
    /// Operation code.
    pub opcode: Opcode,
    /// Sequence number.
    pub sequence: u16,
    /// Status word, raw; see [`Repr::status`].
    pub status: u16,
    /// Association ID.
    pub association_id: u16,
    /// Offset.
    pub offset: u16,
    /// Count as sent.
    pub count: u16,
    /// The data octets present (`count`, or fewer when the message is cut short).
    pub data: Vec<u8>,
    /// Padding and authenticator after the data.
    pub trailer: Vec<u8>,
}

impl Repr {
    /// Reads a mode 6 message; fails only without a whole header or when the mode is not 6.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.mode() != Mode::Control {
            return Err(Error::Unsupported { what: "NTP control message mode", value: u32::from(packet.mode().to_bits()) });
        }
        Ok(Repr {
            leap: packet.leap(),
            version: packet.version(),
            response: packet.is_response(),
            error: packet.is_error(),
            more: packet.more(),
            opcode: packet.opcode(),
            sequence: packet.sequence(),
            status: packet.status(),
            association_id: packet.association_id(),
            offset: packet.offset(),
            count: packet.count(),
            data: packet.data().to_vec(),
            trailer: packet.trailer().to_vec(),
        })
    }

    /// Octets [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len() + self.trailer.len()
    }

    /// Writes the message into the first [`Repr::buffer_len`] octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_li_vn(self.leap, self.version);
        packet.set_flags_opcode(self.response, self.error, self.more, self.opcode);
        packet.set_sequence(self.sequence);
        packet.set_status(self.status);
        packet.set_association_id(self.association_id);
        packet.set_offset(self.offset);
        packet.set_count(self.count);
        let payload = packet.payload_mut();
        payload[..self.data.len()].copy_from_slice(&self.data);
        payload[self.data.len()..self.data.len() + self.trailer.len()].copy_from_slice(&self.trailer);
    }

    /// Writes the message to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf
    }

    /// The status word as its kind of response reads it (requests: raw).
    pub fn status(&self) -> Status {
        let s = self.status;
        if !self.response {
            return Status::Raw(s);
        }
        if self.error {
            return Status::Error { code: (s >> 8) as u8 };
        }
        match self.opcode {
            Opcode::ReadStatus | Opcode::ReadVariables | Opcode::WriteVariables | Opcode::AsyncMessage
                if self.association_id != 0 =>
            {
                Status::Peer {
                    flags: (s >> 11) as u8,
                    selection: ((s >> 8) & 7) as u8,
                    event_count: ((s >> 4) & 0xf) as u8,
                    event_code: (s & 0xf) as u8,
                }
            }
            Opcode::ReadStatus | Opcode::ReadVariables | Opcode::WriteVariables | Opcode::AsyncMessage => {
                Status::System {
                    leap: LeapIndicator::from_bits((s >> 14) as u8),
                    clock_source: ((s >> 8) & 0x3f) as u8,
                    event_count: ((s >> 4) & 0xf) as u8,
                    event_code: (s & 0xf) as u8,
                }
            }
            Opcode::ReadClockVariables | Opcode::WriteClockVariables => {
                Status::Clock { status: (s >> 8) as u8, event_code: s as u8 }
            }
            _ => Status::Raw(s),
        }
    }

    /// Whether the data is text (printable ASCII, tabs and line ends), as the
    /// variable lists of read and write operations are.
    pub fn data_is_text(&self) -> bool {
        self.data.iter().all(|&b| b == b'\t' || b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b))
    }

    /// Problems of the message (RFC 9327 §2).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !(1..=4).contains(&self.version) {
            p.push(Problem::new("RFC 9327 §2", format!("version {} is not an NTPv1-v4 version", self.version)));
        }
        if usize::from(self.count) > self.data.len() {
            p.push(Problem::new(
                "RFC 9327 §2",
                format!("count says {} data octets, but only {} follow the header", self.count, self.data.len()),
            ));
        }
        if usize::from(self.count) > MAX_DATA_LEN {
            p.push(Problem::new("RFC 9327 §2", format!("count {} exceeds the {MAX_DATA_LEN}-octet data limit", self.count)));
        }
        if self.error && !self.response {
            p.push(Problem::new("RFC 9327 §2", "the error bit is set in a request"));
        }
        p
    }
}

mod private_field {
    pub const R_M_VN_MODE: usize = 0;
    pub const AUTH_SEQUENCE: usize = 1;
    pub const IMPLEMENTATION: usize = 2;
    pub const REQUEST_CODE: usize = 3;
    pub const ERR_ITEMS: usize = 4;
    pub const MBZ_SIZE: usize = 6;
    pub const DATA: usize = 8;
}

/// Length of the mode 7 header in octets.
pub const PRIVATE_HEADER_LEN: usize = private_field::DATA;

/// The name of a mode 7 implementation number, as Wireshark shows it.
pub const fn implementation_name(code: u8) -> &'static str {
    match code {
        0 => "UNIV",
        2 => "XNTPD_OLD (pre-IPv6)",
        3 => "XNTPD",
        _ => "unknown",
    }
}

/// The name of an ntpd mode 7 request code, as Wireshark shows it.
pub const fn request_code_name(code: u8) -> &'static str {
    const NAMES: [&str; 46] = [
        "PEER_LIST", "PEER_LIST_SUM", "PEER_INFO", "PEER_STATS", "SYS_INFO", "SYS_STATS", "IO_STATS", "MEM_STATS",
        "LOOP_INFO", "TIMER_STATS", "CONFIG", "UNCONFIG", "SET_SYS_FLAG", "CLR_SYS_FLAG", "MONITOR", "NOMONITOR",
        "GET_RESTRICT", "RESADDFLAGS", "RESSUBFLAGS", "UNRESTRICT", "MON_GETLIST", "RESET_STATS", "RESET_PEER",
        "REREAD_KEYS", "DO_DIRTY_HACK", "DONT_DIRTY_HACK", "TRUSTKEY", "UNTRUSTKEY", "AUTHINFO", "TRAPS", "ADD_TRAP",
        "CLR_TRAP", "REQUEST_KEY", "CONTROL_KEY", "GET_CTLSTATS", "GET_LEAPINFO", "GET_CLOCKINFO", "SET_CLKFUDGE",
        "GET_KERNEL", "GET_CLKBUGINFO", "UNASSIGNED", "SET_PRECISION", "MON_GETLIST_1", "HOSTNAME_ASSOCID",
        "IF_STATS", "IF_RELOAD",
    ];
    if (code as usize) < NAMES.len() {
        NAMES[code as usize]
    } else {
        "unknown"
    }
}

/// A read/write view of a mode 7 (private) message header in a buffer.
#[derive(Debug, Clone)]
pub struct PrivatePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PrivatePacket<T> {
    /// Wraps a buffer without checking its length; for buffers the caller sized.
    pub const fn new_unchecked(buffer: T) -> Self {
        PrivatePacket { buffer }
    }

    /// Wraps a buffer after checking it holds the 8-octet header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = PrivatePacket { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header.
    pub fn check_len(&self) -> Result<()> {
        check_len("NTP private message header", self.b(), PRIVATE_HEADER_LEN)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// R: a response.
    pub fn is_response(&self) -> bool {
        self.b()[private_field::R_M_VN_MODE] & 0x80 != 0
    }

    /// M: more fragments follow.
    pub fn more(&self) -> bool {
        self.b()[private_field::R_M_VN_MODE] & 0x40 != 0
    }

    /// Version number.
    pub fn version(&self) -> u8 {
        (self.b()[private_field::R_M_VN_MODE] >> 3) & 7
    }

    /// Mode (7 for a private message).
    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.b()[private_field::R_M_VN_MODE])
    }

    /// A: authenticated.
    pub fn authenticated(&self) -> bool {
        self.b()[private_field::AUTH_SEQUENCE] & 0x80 != 0
    }

    /// Sequence number (7 bits).
    pub fn sequence(&self) -> u8 {
        self.b()[private_field::AUTH_SEQUENCE] & 0x7f
    }

    /// Implementation number.
    pub fn implementation(&self) -> u8 {
        self.b()[private_field::IMPLEMENTATION]
    }

    /// Request code.
    pub fn request_code(&self) -> u8 {
        self.b()[private_field::REQUEST_CODE]
    }

    /// Error code (4 bits).
    pub fn error_code(&self) -> u8 {
        self.b()[private_field::ERR_ITEMS] >> 4
    }

    /// Number of data items (12 bits).
    pub fn item_count(&self) -> u16 {
        read_u16(self.b(), private_field::ERR_ITEMS) & 0x0fff
    }

    /// Must-be-zero bits (4).
    pub fn mbz(&self) -> u8 {
        self.b()[private_field::MBZ_SIZE] >> 4
    }

    /// Size of one data item (12 bits).
    pub fn item_size(&self) -> u16 {
        read_u16(self.b(), private_field::MBZ_SIZE) & 0x0fff
    }

    /// Everything after the header: data items and an optional authenticator.
    pub fn payload(&self) -> &[u8] {
        &self.b()[private_field::DATA..]
    }
}

/// A decoded mode 7 message: the header fields, and the rest kept as octets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrivateRepr {
    /// R: a response.
    pub response: bool,
    /// M: more fragments follow.
    pub more: bool,
    /// Version number.
    pub version: u8,
    /// A: authenticated.
    pub authenticated: bool,
    /// Sequence number (7 bits).
    pub sequence: u8,
    /// Implementation number.
    pub implementation: u8,
    /// Request code.
    pub request_code: u8,
    /// Error code (4 bits).
    pub error_code: u8,
    /// Number of data items (12 bits).
    pub item_count: u16,
    /// Must-be-zero bits (4).
    pub mbz: u8,
    /// Size of one data item (12 bits).
    pub item_size: u16,
    /// Data items and authenticator, as sent.
    pub payload: Vec<u8>,
}

impl PrivateRepr {
    /// Reads a mode 7 message; fails only without a whole header or when the mode is not 7.
    pub fn parse<T: AsRef<[u8]>>(packet: &PrivatePacket<T>) -> Result<PrivateRepr> {
        packet.check_len()?;
        if packet.mode() != Mode::Private {
            return Err(Error::Unsupported { what: "NTP private message mode", value: u32::from(packet.mode().to_bits()) });
        }
        Ok(PrivateRepr {
            response: packet.is_response(),
            more: packet.more(),
            version: packet.version(),
            authenticated: packet.authenticated(),
            sequence: packet.sequence(),
            implementation: packet.implementation(),
            request_code: packet.request_code(),
            error_code: packet.error_code(),
            item_count: packet.item_count(),
            mbz: packet.mbz(),
            item_size: packet.item_size(),
            payload: packet.payload().to_vec(),
        })
    }

    /// Octets [`PrivateRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        PRIVATE_HEADER_LEN + self.payload.len()
    }

    /// Writes the message into the first [`PrivateRepr::buffer_len`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = u8::from(self.response) << 7 | u8::from(self.more) << 6 | (self.version & 7) << 3 | Mode::Private.to_bits();
        buf[1] = u8::from(self.authenticated) << 7 | (self.sequence & 0x7f);
        buf[2] = self.implementation;
        buf[3] = self.request_code;
        buf[4..6].copy_from_slice(&(u16::from(self.error_code & 0xf) << 12 | (self.item_count & 0x0fff)).to_be_bytes());
        buf[6..8].copy_from_slice(&(u16::from(self.mbz & 0xf) << 12 | (self.item_size & 0x0fff)).to_be_bytes());
        buf[PRIVATE_HEADER_LEN..self.buffer_len()].copy_from_slice(&self.payload);
    }

    /// Writes the message to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }

    /// Problems of the header.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.mbz != 0 {
            p.push(Problem::new("ntpd mode 7", format!("must-be-zero bits are {:#x}", self.mbz)));
        }
        let items = usize::from(self.item_count) * usize::from(self.item_size);
        if items > self.payload.len() {
            p.push(Problem::new(
                "ntpd mode 7",
                format!("{} items of {} octets announced, but only {} octets follow", self.item_count, self.item_size, self.payload.len()),
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ntpq's "rv 0" request (read variables, association 0, sequence 1), NTPv2.
    const READVAR_REQUEST: [u8; 12] = [0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];

    /// A read-variables response: leap 0, clock source 6 (UDP/NTP), 1 event, code 5; data "version=\"x\"".
    fn readvar_response() -> Vec<u8> {
        let data = b"version=\"ntpd 4\", stratum=2";
        let mut b = vec![0x16, 0x82, 0x00, 0x01, 0x06, 0x15, 0, 0, 0, 0, 0, data.len() as u8];
        b.extend_from_slice(data);
        b.extend_from_slice(&[0, 0, 0, 0, 0][..(4 - data.len() % 4) % 4]);
        b
    }

    #[test]
    fn request_fields() {
        let p = Packet::new_checked(&READVAR_REQUEST[..]).unwrap();
        assert_eq!((p.version(), p.mode(), p.is_response(), p.opcode()), (2, Mode::Control, false, Opcode::ReadVariables));
        assert_eq!((p.sequence(), p.association_id(), p.count()), (1, 0, 0));
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.status(), Status::Raw(0));
        assert!(r.problems().is_empty());
        assert_eq!(r.to_bytes(), READVAR_REQUEST);
    }

    #[test]
    fn response_status_words() {
        let b = readvar_response();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert!(r.response && !r.error && !r.more);
        assert_eq!(
            r.status(),
            Status::System { leap: LeapIndicator::NoWarning, clock_source: 6, event_count: 1, event_code: 5 }
        );
        assert!(r.data_is_text());
        assert_eq!(r.data, b"version=\"ntpd 4\", stratum=2");
        assert_eq!(r.trailer.len(), 1);
        assert_eq!(r.to_bytes(), b);
        let mut peer = r.clone();
        peer.association_id = 7;
        peer.status = 0x9614; // configured, reachable; selection 6; 1 event, code 4
        assert_eq!(peer.status(), Status::Peer { flags: 0x12, selection: 6, event_count: 1, event_code: 4 });
        let mut err = r.clone();
        err.error = true;
        err.status = 0x0400;
        assert_eq!(err.status(), Status::Error { code: 4 });
        assert_eq!(Status::error_name(4), "unknown association identifier");
    }

    #[test]
    fn short_data_is_kept_and_flagged() {
        let b = readvar_response();
        let cut = &b[..20];
        let r = Repr::parse(&Packet::new_checked(cut).unwrap()).unwrap();
        assert_eq!(r.data.len(), 8);
        assert!(r.problems()[0].detail.contains("only 8 follow"), "{:?}", r.problems());
        assert_eq!(r.to_bytes(), cut);
        for n in 0..HEADER_LEN {
            assert!(matches!(Packet::new_checked(&b[..n]), Err(Error::Truncated { .. })));
        }
        assert!(Repr::parse(&Packet::new_checked(&[0x23u8; 48][..]).unwrap()).is_err(), "mode 3 is no control message");
    }

    #[test]
    fn private_header() {
        // ntpdc "peers": NTPv2 request, implementation XNTPD, PEER_LIST_SUM.
        let b = [0x17, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00];
        let p = PrivatePacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.mode(), p.implementation(), p.request_code()), (2, Mode::Private, 3, 1));
        let r = PrivateRepr::parse(&p).unwrap();
        assert_eq!(request_code_name(r.request_code), "PEER_LIST_SUM");
        assert_eq!(implementation_name(r.implementation), "XNTPD");
        assert_eq!(r.to_bytes(), b);
        // A response with 2 items of 4 octets but only 4 octets.
        let b = [0x97, 0x81, 0x03, 0x01, 0x00, 0x02, 0x10, 0x04, 1, 2, 3, 4];
        let r = PrivateRepr::parse(&PrivatePacket::new_checked(&b[..]).unwrap()).unwrap();
        assert!(r.response && r.authenticated && r.sequence == 1 && r.item_count == 2 && r.item_size == 4);
        assert_eq!(r.problems().len(), 2, "{:?}", r.problems());
        assert_eq!(r.to_bytes(), b);
    }

    proptest! {
        #[test]
        fn any_control_message_round_trips(mut bytes in proptest::collection::vec(any::<u8>(), 12..600)) {
            bytes[0] = (bytes[0] & !7) | 6;
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(r.to_bytes(), bytes.clone());
            let _ = (r.status(), r.problems(), r.data_is_text());
        }

        #[test]
        fn any_private_message_round_trips(mut bytes in proptest::collection::vec(any::<u8>(), 8..600)) {
            bytes[0] = (bytes[0] & !7) | 7;
            let r = PrivateRepr::parse(&PrivatePacket::new_checked(&bytes[..]).unwrap()).unwrap();
            prop_assert_eq!(r.to_bytes(), bytes.clone());
            let _ = r.problems();
        }
    }
}
