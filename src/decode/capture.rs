//! Reading UDP datagrams out of pcap and pcapng captures.
//!
//! Link types handled: Ethernet, Linux cooked capture (SLL and SLL2), raw IP,
//! BSD loopback (NULL/LOOP). IPv4 and IPv6; fragmented datagrams are reported,
//! not reassembled. The pcap parsing itself is the `pcap-file` crate's; the
//! packet layers are `etherparse`'s.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// What one frame of a capture held.
#[derive(Debug)]
pub enum Frame {
    /// A complete UDP datagram.
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

/// Why a capture file could not be read at all.
#[derive(Debug)]
pub struct CaptureError(pub String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads every frame of a pcap or pcapng capture (told apart by their magic numbers).
///
/// Returns the frames read; a file that breaks off in the middle yields the
/// frames before the break and then an error naming the frame where it broke.
pub fn read_frames(mut input: impl Read) -> Result<(Vec<Frame>, Option<CaptureError>), CaptureError> {
    let mut data = Vec::new();
    input.read_to_end(&mut data).map_err(|e| CaptureError(format!("cannot read capture: {e}")))?;
    let magic = data.get(..4).ok_or_else(|| CaptureError("not a capture: the file is shorter than 4 bytes".into()))?;
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(&data),
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] | [0x4d, 0x3c, 0xb2, 0xa1] => read_pcap(&data),
        _ => Err(CaptureError(format!(
            "not a pcap or pcapng capture: magic number {magic:02x?} (expected a1b2c3d4, a1b23c4d or 0a0d0d0a; \
             save the capture as pcap or pcapng, e.g. `tshark -F pcapng -w FILE`)"
        ))),
    }
}

fn read_pcap(data: &[u8]) -> Result<(Vec<Frame>, Option<CaptureError>), CaptureError> {
    let mut reader = PcapReader::new(data).map_err(|e| CaptureError(format!("bad pcap file header: {e}")))?;
    let link = reader.header().datalink;
    let mut frames = Vec::new();
    let mut n = 0u64;
    while let Some(packet) = reader.next_packet() {
        n += 1;
        match packet {
            Ok(p) => frames.push(classify(n, link, p.timestamp, &p.data)),
            Err(e) => return Ok((frames, Some(CaptureError(format!("capture breaks off at frame {n}: {e}"))))),
        }
    }
    Ok((frames, None))
}

fn read_pcapng(data: &[u8]) -> Result<(Vec<Frame>, Option<CaptureError>), CaptureError> {
    let mut reader = PcapNgReader::new(data).map_err(|e| CaptureError(format!("bad pcapng section header: {e}")))?;
    let mut frames = Vec::new();
    let mut n = 0u64;
    while let Some(block) = reader.next_block() {
        let block = match block {
            Ok(b) => b,
            Err(e) => return Ok((frames, Some(CaptureError(format!("capture breaks off after frame {n}: {e}"))))),
        };
        let (interface_id, raw_ts, bytes) = match &block {
            Block::EnhancedPacket(p) => (Some(p.interface_id), p.timestamp.as_nanos(), p.data.to_vec()),
            Block::SimplePacket(p) => (None, 0, p.data.to_vec()),
            Block::Packet(p) => (Some(u32::from(p.interface_id)), u128::from(p.timestamp), p.data.to_vec()),
            _ => continue,
        };
        n += 1;
        let iface = reader.interfaces().get(interface_id.unwrap_or(0) as usize);
        let Some(iface) = iface else {
            frames.push(Frame::Unreadable { frame: n, reason: "packet names an interface the capture never described".into() });
            continue;
        };
        // pcap-file hands the raw timestamp units over as "nanoseconds"; scale them
        // by the interface's if_tsresol (default 10^-6 s, pcapng spec §4.2).
        let tsresol = iface.options.iter().find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        });
        let time = scale_timestamp(raw_ts, tsresol.unwrap_or(6));
        frames.push(classify(n, iface.linktype, time, &bytes));
    }
    Ok((frames, None))
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

fn classify(frame: u64, link: DataLink, time: Duration, bytes: &[u8]) -> Frame {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(bytes),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(bytes),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(bytes),
        DataLink::NULL | DataLink::LOOP => match bytes.get(4..) {
            Some(rest) => SlicedPacket::from_ip(rest),
            None => return Frame::Unreadable { frame, reason: "loopback header truncated".into() },
        },
        DataLink::LINUX_SLL2 => match bytes.get(20..) {
            // SLL2 (20 octets) starts with the EtherType.
            Some(rest) if bytes[0..2] == [0x08, 0x00] || bytes[0..2] == [0x86, 0xdd] => SlicedPacket::from_ip(rest),
            Some(_) => return Frame::Other,
            None => return Frame::Unreadable { frame, reason: "Linux SLL2 header truncated".into() },
        },
        other => {
            return Frame::Unreadable { frame, reason: format!("link type {other:?} is not supported (use Ethernet, Linux SLL/SLL2, raw IP or loopback)") }
        }
    };
    let sliced = match sliced {
        Ok(s) => s,
        Err(e) => return Frame::Unreadable { frame, reason: format!("cannot take the frame apart: {e}") },
    };
    let (src_ip, dst_ip, fragmented) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload().fragmented)
        }
        Some(NetSlice::Ipv6(ip)) => {
            (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload().fragmented)
        }
        None => return Frame::Other,
    };
    if fragmented {
        return match &sliced.transport {
            Some(TransportSlice::Udp(_)) | None => {
                Frame::Unreadable { frame, reason: "fragmented IP datagram (reassembly is not supported)".into() }
            }
            _ => Frame::Other,
        };
    }
    match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => Frame::Udp(Datagram {
            frame,
            time,
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            payload: udp.payload().to_vec(),
        }),
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

    #[test]
    fn garbage_is_refused_with_a_hint() {
        let e = read_frames(&b"hello world"[..]).unwrap_err();
        assert!(e.0.contains("not a pcap or pcapng capture"), "{e}");
        let e = read_frames(&b"ab"[..]).unwrap_err();
        assert!(e.0.contains("shorter than 4 bytes"), "{e}");
        // A pcapng magic followed by nothing.
        assert!(read_frames(&[0x0a, 0x0d, 0x0d, 0x0a][..]).is_err());
    }
}
