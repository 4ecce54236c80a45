//! Reading UDP datagrams out of pcap and pcapng captures, streamed.
//!
//! The file is read frame by frame through a fixed-size window: memory does
//! not grow with the file, and a file that does not start with a pcap or
//! pcapng magic number is refused after its first four octets. Link types
//! handled: Ethernet, Linux cooked capture (SLL and SLL2, every ARPHRD
//! including the loopback device, 772), raw IP, BSD loopback (NULL/LOOP).
//! IPv4 and IPv6; fragmented datagrams are reported, not reassembled. Frames
//! cut short by the capture's snap length are decoded as far as they go and
//! flagged. The packet layers are `etherparse`'s (its lax slicer, which
//! accepts a frame cut short).
//!
//! Formats: pcap (microsecond and nanosecond, either byte order;
//! tcpdump/libpcap file format) and pcapng (Section Header, Interface
//! Description with `if_tsresol` and `if_tsoffset`, Enhanced, Simple and the
//! obsolete Packet block; other blocks and options, e.g. `if_tzone`, are
//! skipped).

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest frame kept, as Wireshark's limit for ordinary link types (octets).
pub const MAX_FRAME: u32 = 262_144;

/// Largest pcapng block read into memory; larger blocks are skipped unread.
const MAX_BLOCK: u32 = MAX_FRAME + 64 * 1024;

/// How much of a frame the capture holds, when it holds less than was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Octets of the frame in the file.
    pub captured: u32,
    /// Octets of the frame on the wire.
    pub original: u32,
}

/// One UDP datagram found in a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// 1-based frame number, as Wireshark counts.
    pub frame: u64,
    /// Capture time since the Unix epoch.
    pub time: Duration,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// UDP payload, as far as the capture holds it.
    pub payload: Vec<u8>,
    /// Payload length the UDP header announces.
    pub udp_payload_len: usize,
    /// Set when the frame was cut short by the capture's snap length.
    pub truncated: Option<Truncation>,
}

/// What one frame of a capture held.
#[derive(Debug)]
pub enum Frame {
    /// A UDP datagram (possibly cut short: see [`Datagram::truncated`]).
    Udp(Datagram),
    /// A frame that is not UDP over IP (ARP, TCP, ...): skipped silently.
    Other,
    /// A frame that could not be taken apart, with why; decoding goes on.
    Unreadable {
        /// 1-based frame number.
        frame: u64,
        /// Why.
        reason: String,
    },
}

/// Why a capture file could not be read (on); the frames before stay valid.
#[derive(Debug)]
pub struct CaptureError(pub String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pcapng interface: what its packets need to be read.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: u32,
    tsresol: u8,
    tsoffset: i64,
    snaplen: u32,
}

enum Format {
    Pcap { big_endian: bool, nanos: bool, link: u32 },
    Pcapng { big_endian: bool, interfaces: Vec<Interface> },
}

/// A streaming reader of the frames of one capture.
pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    frames: u64,
    /// Octets consumed so far, for error messages.
    offset: u64,
    done: bool,
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header; fails at once on a wrong magic number or a broken header.
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut input, &mut magic).map_err(|e| CaptureError(format!("cannot read the capture: {e}")))?;
        if got < 4 {
            return Err(CaptureError(format!("not a capture: the file is shorter than 4 bytes ({got})")));
        }
        let mut reader = CaptureReader { input, format: Format::Pcap { big_endian: true, nanos: false, link: 0 }, frames: 0, offset: 4, done: false };
        reader.format = match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let big_endian = reader.read_section_header()?;
                Format::Pcapng { big_endian, interfaces: Vec::new() }
            }
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let big_endian = magic[0] == 0xa1;
                let nanos = magic[2] == 0x3c || magic[1] == 0x3c;
                let mut h = [0u8; 20];
                reader.fill(&mut h).map_err(|_| CaptureError("bad pcap file header: the file ends inside it".into()))?;
                let link = u32_at(&h, 16, big_endian) & 0x03ff_ffff; // LT_LINKTYPE: the upper bits carry FCS information
                Format::Pcap { big_endian, nanos, link }
            }
            _ => {
                return Err(CaptureError(format!(
                    "not a pcap or pcapng capture: magic number {magic:02x?} (expected a1b2c3d4, a1b23c4d or 0a0d0d0a; \
                     save the capture as pcap or pcapng, e.g. `tshark -F pcapng -w FILE`)"
                )))
            }
        };
        Ok(reader)
    }

    /// Reads exactly `buf.len()` octets; `Err(true)` for a clean end of file
    /// before the first octet, `Err(false)` for an end inside.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), bool> {
        let got = read_up_to(&mut self.input, buf).map_err(|_| false)?;
        self.offset += got as u64;
        if got == buf.len() {
            Ok(())
        } else {
            Err(got == 0)
        }
    }

    /// Skips `n` octets without keeping them.
    fn skip(&mut self, n: u64) -> bool {
        let skipped = std::io::copy(&mut (&mut self.input).take(n), &mut std::io::sink()).unwrap_or(0);
        self.offset += skipped;
        skipped == n
    }

    fn broken(&mut self, what: String) -> Option<Result<Frame, CaptureError>> {
        self.done = true;
        Some(Err(CaptureError(what)))
    }

    /// The rest of a Section Header Block after its type: returns the byte order.
    fn read_section_header(&mut self) -> Result<bool, CaptureError> {
        let mut len = [0u8; 4];
        self.fill(&mut len).map_err(|_| CaptureError("bad pcapng section header: the file ends inside it".into()))?;
        self.read_section_header_after_type(&len)
    }

    fn next_pcap(&mut self, big_endian: bool, nanos: bool, link: u32) -> Option<Result<Frame, CaptureError>> {
        let mut h = [0u8; 16];
        match self.fill(&mut h) {
            Ok(()) => {}
            Err(true) => return None,
            Err(false) => return self.broken(format!("capture breaks off in the header of frame {}", self.frames + 1)),
        }
        self.frames += 1;
        let n = self.frames;
        let (secs, frac) = (u32_at(&h, 0, big_endian), u32_at(&h, 4, big_endian));
        let (captured, original) = (u32_at(&h, 8, big_endian), u32_at(&h, 12, big_endian));
        if captured > MAX_FRAME {
            return self.broken(format!(
                "frame {n} (at byte {}) claims {captured} captured octets, more than a frame can hold ({MAX_FRAME}): \
                 the file is corrupt from here",
                self.offset - 16
            ));
        }
        let mut data = vec![0u8; captured as usize];
        if self.fill(&mut data).is_err() {
            return self.broken(format!("capture breaks off at frame {n}: the file ends inside it"));
        }
        // A fraction of a second of 10^6 us (or 10^9 ns) or more is carried
        // into the seconds, as Wireshark does.
        let frac_nanos = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        let time = Duration::from_secs(u64::from(secs)) + Duration::from_nanos(frac_nanos);
        Some(Ok(classify(n, link, time, &data, original)))
    }

    fn next_pcapng(&mut self) -> Option<Result<Frame, CaptureError>> {
        loop {
            let Format::Pcapng { big_endian, .. } = self.format else { unreachable!("pcapng reader") };
            let mut h = [0u8; 8];
            match self.fill(&mut h) {
                Ok(()) => {}
                Err(true) => return None,
                Err(false) => return self.broken(format!("capture breaks off after frame {}: the file ends inside a block header", self.frames)),
            }
            let block_type = u32_at(&h, 0, big_endian);
            if block_type == 0x0a0d_0d0a {
                // A new section: its own byte order and interfaces.
                let big_endian = match self.read_section_header_after_type(&h[4..8]) {
                    Ok(b) => b,
                    Err(e) => return self.broken(format!("after frame {}: {e}", self.frames)),
                };
                self.format = Format::Pcapng { big_endian, interfaces: Vec::new() };
                continue;
            }
            let len = u32_at(&h, 4, big_endian);
            let at = self.offset - 8;
            if len < 12 || len % 4 != 0 {
                return self.broken(format!("capture breaks off after frame {}: block at byte {at} has length {len}", self.frames));
            }
            let body_len = len - 12;
            let is_packet = matches!(block_type, 2 | 3 | 6);
            if len > MAX_BLOCK || !matches!(block_type, 1..=3 | 6) {
                if !self.skip(u64::from(body_len) + 4) {
                    return self.broken(format!("capture breaks off after frame {}: the file ends inside the block at byte {at}", self.frames));
                }
                if is_packet {
                    self.frames += 1;
                    let frame = self.frames;
                    return Some(Ok(Frame::Unreadable { frame, reason: format!("packet block of {len} octets is larger than {MAX_BLOCK}: skipped") }));
                }
                continue;
            }
            let mut body = vec![0u8; body_len as usize + 4];
            if self.fill(&mut body).is_err() {
                return self.broken(format!("capture breaks off after frame {}: the file ends inside the block at byte {at}", self.frames));
            }
            body.truncate(body_len as usize);
            let Format::Pcapng { interfaces, .. } = &mut self.format else { unreachable!("pcapng reader") };
            if block_type == 1 {
                match parse_interface(&body, big_endian) {
                    Some(i) => interfaces.push(i),
                    None => return self.broken(format!("bad interface description block at byte {at}")),
                }
                continue;
            }
            self.frames += 1;
            let frame = self.frames;
            let parsed = match block_type {
                6 if body.len() >= 20 => Some((u32_at(&body, 0, big_endian), ts(&body, 4, big_endian), u32_at(&body, 12, big_endian), u32_at(&body, 16, big_endian), 20)),
                2 if body.len() >= 20 => Some((u32::from(u16_at(&body, 0, big_endian)), ts(&body, 4, big_endian), u32_at(&body, 12, big_endian), u32_at(&body, 16, big_endian), 20)),
                3 if body.len() >= 4 => {
                    let original = u32_at(&body, 0, big_endian);
                    let snaplen = interfaces.first().map_or(u32::MAX, |i| if i.snaplen == 0 { u32::MAX } else { i.snaplen });
                    let captured = original.min(snaplen).min(body_len - 4);
                    Some((0, None, captured, original, 4))
                }
                _ => None,
            };
            let Some((iface, raw_ts, captured, original, data_at)) = parsed else {
                return Some(Ok(Frame::Unreadable { frame, reason: format!("packet block at byte {at} is too short ({len} octets)") }));
            };
            let Some(data) = body.get(data_at..data_at + captured as usize) else {
                return Some(Ok(Frame::Unreadable { frame, reason: format!("packet block at byte {at}: captured length {captured} runs past the block") }));
            };
            let Some(&iface) = interfaces.get(iface as usize) else {
                return Some(Ok(Frame::Unreadable { frame, reason: format!("packet names interface {iface}, which the capture never described") }));
            };
            let time = raw_ts.map_or(Duration::ZERO, |raw| {
                let t = scale_timestamp(raw, iface.tsresol);
                if iface.tsoffset >= 0 {
                    t + Duration::from_secs(iface.tsoffset as u64)
                } else {
                    t.saturating_sub(Duration::from_secs(iface.tsoffset.unsigned_abs()))
                }
            });
            return Some(Ok(classify(frame, iface.link, time, data, original)));
        }
    }

    fn read_section_header_after_type(&mut self, len_bytes: &[u8]) -> Result<bool, CaptureError> {
        let mut bom = [0u8; 4];
        self.fill(&mut bom).map_err(|_| CaptureError("bad pcapng section header: the file ends inside it".into()))?;
        let big_endian = match bom {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => return Err(CaptureError(format!("bad pcapng section header: byte-order magic {bom:02x?}"))),
        };
        let len = u32_at(len_bytes, 0, big_endian);
        if len < 28 || len % 4 != 0 || len > MAX_BLOCK {
            return Err(CaptureError(format!("bad pcapng section header: block length {len}")));
        }
        if !self.skip(u64::from(len) - 12) {
            return Err(CaptureError("bad pcapng section header: the file ends inside it".into()));
        }
        Ok(big_endian)
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    /// A frame, or the error that ends the capture (nothing follows it).
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.format {
            Format::Pcap { big_endian, nanos, link } => self.next_pcap(big_endian, nanos, link),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the octets read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big_endian {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

/// A pcapng timestamp: high word, then low word.
fn ts(b: &[u8], at: usize, big_endian: bool) -> Option<u128> {
    Some(u128::from(u32_at(b, at, big_endian)) << 32 | u128::from(u32_at(b, at + 4, big_endian)))
}

/// Interface Description Block body: link type, snap length and the options that matter.
fn parse_interface(body: &[u8], big_endian: bool) -> Option<Interface> {
    if body.len() < 8 {
        return None;
    }
    let mut iface =
        Interface { link: u32::from(u16_at(body, 0, big_endian)), tsresol: 6, tsoffset: 0, snaplen: u32_at(body, 4, big_endian) };
    let mut at = 8;
    while at + 4 <= body.len() {
        let code = u16_at(body, at, big_endian);
        let len = usize::from(u16_at(body, at + 2, big_endian));
        let value = body.get(at + 4..at + 4 + len)?;
        match (code, len) {
            (0, _) => break,
            (9, 1) => iface.tsresol = value[0],
            (14, 8) => {
                let hi = u64::from(u32_at(value, 0, big_endian));
                let lo = u64::from(u32_at(value, 4, big_endian));
                iface.tsoffset = if big_endian { (hi << 32 | lo) as i64 } else { (lo << 32 | hi) as i64 };
            }
            _ => {} // if_tzone, if_name, ...: not needed
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Some(iface)
}

fn scale_timestamp(raw: u128, tsresol: u8) -> Duration {
    let nanos: u128 = if tsresol & 0x80 == 0 {
        let exp = u32::from(tsresol);
        if exp <= 9 {
            raw.saturating_mul(10u128.pow(9 - exp))
        } else {
            raw / 10u128.saturating_pow(exp - 9)
        }
    } else {
        let exp = u32::from(tsresol & 0x7f);
        (raw.saturating_mul(1_000_000_000)) >> exp.min(127)
    };
    let secs = (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

// Link types (https://www.tcpdump.org/linktypes.html).
const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;
/// ARPHRD_NETLINK: SLL frames of netlink sockets carry no IP.
const ARPHRD_NETLINK: u16 = 824;

fn classify(frame: u64, link: u32, time: Duration, bytes: &[u8], original: u32) -> Frame {
    let captured = bytes.len() as u32;
    let truncated = (original > captured).then_some(Truncation { captured, original });
    let cut = |what: &str| Frame::Unreadable {
        frame,
        reason: match truncated {
            Some(t) => format!("{what} truncated (the capture holds {} of {} octets)", t.captured, t.original),
            None => format!("{what} truncated"),
        },
    };
    // The link-layer header, down to the network layer.
    let sliced = match link {
        LINKTYPE_ETHERNET => match LaxSlicedPacket::from_ethernet(bytes) {
            Ok(s) => s,
            Err(_) => return cut("Ethernet header"),
        },
        LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2 => {
            // SLL: type, ARPHRD, address length, address (8), protocol; SLL2:
            // protocol, reserved, interface, ARPHRD, type, address length, address (8).
            let (header, arphrd_at, proto_at) = if link == LINKTYPE_LINUX_SLL { (16, 2, 14) } else { (20, 8, 0) };
            let Some(rest) = bytes.get(header..) else { return cut("Linux cooked-capture header") };
            if u16::from_be_bytes([bytes[arphrd_at], bytes[arphrd_at + 1]]) == ARPHRD_NETLINK {
                return Frame::Other;
            }
            let proto = u16::from_be_bytes([bytes[proto_at], bytes[proto_at + 1]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), rest)
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => match LaxSlicedPacket::from_ip(bytes) {
            Ok(s) => s,
            Err(e) => return Frame::Unreadable { frame, reason: format!("cannot read the IP header: {e}") },
        },
        LINKTYPE_NULL | LINKTYPE_LOOP => match bytes.get(4..).map(LaxSlicedPacket::from_ip) {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Frame::Unreadable { frame, reason: format!("cannot read the IP header: {e}") },
            None => return cut("loopback header"),
        },
        other => {
            return Frame::Unreadable {
                frame,
                reason: format!("link type {other} is not supported (use Ethernet, Linux SLL/SLL2, raw IP or loopback)"),
            }
        }
    };
    let (src_ip, dst_ip, payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload()),
        Some(LaxNetSlice::Ipv6(ip)) => (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload()),
        None => return Frame::Other,
    };
    let is_udp = payload.ip_number == etherparse::IpNumber::UDP;
    if payload.fragmented {
        return if is_udp {
            Frame::Unreadable { frame, reason: "fragmented IP datagram (reassembly is not supported)".into() }
        } else {
            Frame::Other
        };
    }
    if payload.incomplete && truncated.is_none() && is_udp {
        return Frame::Unreadable {
            frame,
            reason: "the IP length field says more than the frame holds (the frame was not cut by the snap length)".into(),
        };
    }
    match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => Frame::Udp(Datagram {
            frame,
            time,
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            payload: udp.payload().to_vec(),
            udp_payload_len: usize::from(udp.length()).saturating_sub(8),
            truncated,
        }),
        _ if is_udp => cut("UDP header"),
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_scaling() {
        assert_eq!(scale_timestamp(1_500_000, 6), Duration::from_millis(1500));
        assert_eq!(scale_timestamp(1_500_000_000, 9), Duration::from_millis(1500));
        assert_eq!(scale_timestamp(3 << 30, 0x80 | 30), Duration::from_secs(3));
    }

    fn err(bytes: &[u8]) -> String {
        match CaptureReader::new(bytes) {
            Ok(_) => panic!("{bytes:02x?} was taken for a capture"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn garbage_is_refused_with_a_hint() {
        assert!(err(b"hello world").contains("not a pcap or pcapng capture"));
        assert!(err(b"ab").contains("shorter than 4 bytes"));
        // A pcapng magic followed by nothing.
        assert!(err(&[0x0a, 0x0d, 0x0d, 0x0a]).contains("section header"));
        assert!(err(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).contains("pcap file header"));
    }

    /// An endless stream of zeros (as /dev/zero) is refused after its first four octets.
    #[test]
    fn endless_zeros_are_refused_at_once() {
        let mut zeros = std::io::repeat(0).take(u64::MAX);
        let e = match CaptureReader::new(&mut zeros) {
            Ok(_) => panic!("zeros taken for a capture"),
            Err(e) => e.0,
        };
        assert!(e.contains("magic number [00, 00, 00, 00]"), "{e}");
        assert_eq!(u64::MAX - zeros.limit(), 4, "only the magic number was read");
    }

    /// An endless, valid pcap: frames come one by one (the file is never read whole).
    #[test]
    fn an_endless_capture_is_streamed() {
        struct Endless {
            record: Vec<u8>,
            at: usize,
        }
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                for b in buf.iter_mut() {
                    *b = self.record[self.at % self.record.len()];
                    self.at += 1;
                }
                Ok(buf.len())
            }
        }
        let header = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0];
        let ip = etherparse::PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64).udp(40000, 123);
        let mut frame = Vec::new();
        ip.write(&mut frame, &[0x23; 48]).unwrap();
        let mut record = vec![0, 0, 0, 0, 0, 0, 0, 0];
        record.extend((frame.len() as u32).to_le_bytes());
        record.extend((frame.len() as u32).to_le_bytes());
        record.extend(&frame);
        let reader = CaptureReader::new(header.chain(Endless { record, at: 0 })).unwrap();
        let frames: Vec<_> = reader.take(10_000).collect();
        assert_eq!(frames.len(), 10_000);
        assert!(frames.iter().all(|f| matches!(f, Ok(Frame::Udp(d)) if d.payload.len() == 48)));
    }

    proptest::proptest! {
        /// Whatever follows a pcap or pcapng magic number: no panic, and the
        /// frames end (an error ends the iteration).
        #[test]
        fn any_bytes_after_a_magic_number(kind in 0usize..3, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let magic: [u8; 4] = [[0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d], [0x0a, 0x0d, 0x0d, 0x0a]][kind];
            let mut bytes = magic.to_vec();
            bytes.extend(&body);
            if let Ok(reader) = CaptureReader::new(&bytes[..]) {
                let mut n = 0;
                for f in reader {
                    n += 1;
                    proptest::prop_assert!(n <= bytes.len(), "more frames than octets");
                    if f.is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// A pcap whose one record claims 4 GB: refused without allocating it.
    #[test]
    fn a_huge_record_length_breaks_off_without_allocating() {
        let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
        b.extend([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let e = r.next().unwrap().unwrap_err();
        assert!(e.0.contains("claims 4294967295 captured octets"), "{e}");
        assert!(r.next().is_none());
    }
}
