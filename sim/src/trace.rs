//! The trace of a run: four files in one output directory.
//!
//! | file | one record per | contents |
//! | --- | --- | --- |
//! | `samples.csv` | host and grid point | `time` (RFC 3339, 9 digits), `t_s` (seconds since the start), `host`, `offset_s` (local − true), `frequency_error` (s/s), `synced`, `stratum`, `poll_log2` |
//! | `events.jsonl` | daemon or scenario event | `time`, `t_s`, `host` (or null), `kind`, `details` (any JSON) |
//! | `packets.jsonl` | datagram sent | `sent`, `sent_t_s`, `received`/`received_t_s` (null if lost), `lost` (null or the reason), `src`, `dst`, `length`, `sender_local`, `receiver_local` (the hosts' clock readings, RFC 3339; null if lost), `frame` (its number in `packets.pcap`, null if lost), `bytes` (hex) |
//! | `packets.pcap` | datagram delivered | Ethernet + IPv4/IPv6 + UDP frames with correct lengths and checksums, nanosecond pcap (magic `a1b23c4d`, little-endian), stamped with the true receive time |
//!
//! Output is deterministic: records appear in call order, maps are never
//! iterated, and numbers have one spelling. Times since the start are exact
//! decimals with nine fractional digits (nanoseconds, rounded to nearest);
//! other floating-point values use Rust's `{:e}`, the shortest text that
//! reads back to the same `f64` (`1.5e-5`, `0e0`; `NaN`, `inf`). JSON
//! `details` are written by `serde_json` (object keys sorted, floats shortest
//! round-trip). The same run therefore yields byte-identical files.
//!
//! Memory stays bounded: each file streams through a `BufWriter`.
//!
//! Call [`TraceWriter::packet`] once a datagram's fate is settled (at delivery
//! or loss) and in true-time order, so the pcap's frames are in time order.
//! Pcap timestamps are unsigned 32-bit Unix seconds: a delivered datagram must
//! arrive between 1970 and 2106 ([`crate::scenario::Scenario::parse`] checks that
//! the run lies there).

use etherparse::PacketBuilder;
use ntplab_proto::time::NtpTime;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the sample grid file.
pub const SAMPLES_FILE: &str = "samples.csv";
/// Name of the event log.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Name of the datagram log.
pub const PACKETS_FILE: &str = "packets.jsonl";
/// Name of the capture.
pub const PCAP_FILE: &str = "packets.pcap";

/// Columns of `samples.csv`.
pub const SAMPLE_COLUMNS: [&str; 8] = ["time", "t_s", "host", "offset_s", "frequency_error", "synced", "stratum", "poll_log2"];

/// Snap length of the capture: every UDP datagram fits.
pub const SNAPLEN: u32 = 65_535;

/// IPv4 TTL and IPv6 hop limit of synthesised frames.
pub const HOP_LIMIT: u8 = 64;

/// One host at one point of the sample grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// True time.
    pub time: NtpTime,
    /// Host name.
    pub host: &'a str,
    /// The host clock's offset from true time, local − true, seconds.
    pub offset_s: f64,
    /// The host clock's frequency error, s/s.
    pub frequency_error: f64,
    /// Whether the daemon considers itself synchronised.
    pub synced: bool,
    /// The daemon's stratum (16: unsynchronised).
    pub stratum: u8,
    /// The daemon's system poll exponent, log2 seconds.
    pub poll_log2: i8,
}

/// A daemon event or a scenario event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// True time.
    pub time: NtpTime,
    /// The host it happened on, if any.
    pub host: Option<&'a str>,
    /// A short kind, e.g. `"step"`, `"partition"`.
    pub kind: &'a str,
    /// Anything else, as JSON (`Null` for nothing).
    pub details: &'a serde_json::Value,
}

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate<'a> {
    /// It arrived.
    Delivered {
        /// True time of arrival.
        received: NtpTime,
        /// The receiver's clock reading at arrival (its receive timestamp).
        receiver_local: NtpTime,
    },
    /// It did not.
    Lost {
        /// Why, e.g. `"loss"`, `"partition"`, `"host-down"`.
        reason: &'a str,
    },
}

/// One datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// True time it was sent.
    pub sent: NtpTime,
    /// The sender's clock reading when sending (its transmit timestamp).
    pub sender_local: NtpTime,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// What became of it.
    pub fate: Fate<'a>,
    /// The UDP payload.
    pub payload: &'a [u8],
    /// What an on-path attacker did to make it; written only when set.
    pub attack: Option<&'a str>,
}

/// The files a finished trace wrote, and how many records each holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFiles {
    /// `samples.csv`.
    pub samples_path: PathBuf,
    /// `events.jsonl`.
    pub events_path: PathBuf,
    /// `packets.jsonl`.
    pub packets_path: PathBuf,
    /// `packets.pcap`.
    pub pcap_path: PathBuf,
    /// Rows of `samples.csv` (without the header).
    pub samples: u64,
    /// Lines of `events.jsonl`.
    pub events: u64,
    /// Lines of `packets.jsonl`.
    pub packets: u64,
    /// Frames of `packets.pcap` (delivered datagrams).
    pub frames: u64,
}

/// Streams a run's trace to disk. See the module documentation for the files.
pub struct TraceWriter {
    start: NtpTime,
    files: TraceFiles,
    samples: csv::Writer<BufWriter<File>>,
    events: BufWriter<File>,
    packets: BufWriter<File>,
    pcap: PcapFrames<BufWriter<File>>,
    /// Reused for each line.
    line: String,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter").field("start", &self.start).field("files", &self.files).finish_non_exhaustive()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl TraceWriter {
    /// Creates `dir` if needed and the four files in it (replacing old ones).
    /// `start` is the run's start: times since the start count from it.
    pub fn create(dir: impl AsRef<Path>, start: NtpTime) -> io::Result<TraceWriter> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> io::Result<(PathBuf, BufWriter<File>)> {
            let p = dir.join(name);
            let f = File::create(&p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            Ok((p, BufWriter::new(f)))
        };
        let (samples_path, s) = open(SAMPLES_FILE)?;
        let (events_path, events) = open(EVENTS_FILE)?;
        let (packets_path, packets) = open(PACKETS_FILE)?;
        let (pcap_path, p) = open(PCAP_FILE)?;
        let mut samples = csv::WriterBuilder::new().has_headers(false).from_writer(s);
        samples.write_record(SAMPLE_COLUMNS).map_err(io::Error::from)?;
        let pcap = PcapFrames::new(p)?;
        Ok(TraceWriter {
            start,
            files: TraceFiles { samples_path, events_path, packets_path, pcap_path, samples: 0, events: 0, packets: 0, frames: 0 },
            samples,
            events,
            packets,
            pcap,
            line: String::with_capacity(512),
        })
    }

    /// Appends a row to `samples.csv`.
    pub fn sample(&mut self, s: &Sample<'_>) -> io::Result<()> {
        let record = [
            rfc3339(s.time),
            since(self.start, s.time),
            s.host.to_string(),
            format!("{:e}", s.offset_s),
            format!("{:e}", s.frequency_error),
            s.synced.to_string(),
            s.stratum.to_string(),
            s.poll_log2.to_string(),
        ];
        self.samples.write_record(&record).map_err(io::Error::from)?;
        self.files.samples += 1;
        Ok(())
    }

    /// Appends a line to `events.jsonl`.
    pub fn event(&mut self, e: &Event<'_>) -> io::Result<()> {
        let l = &mut self.line;
        l.clear();
        let _ = write!(l, "{{\"time\":\"{}\",\"t_s\":{},\"host\":", rfc3339(e.time), since(self.start, e.time));
        push_opt_str(l, e.host);
        l.push_str(",\"kind\":");
        push_str(l, e.kind);
        l.push_str(",\"details\":");
        l.push_str(&serde_json::to_string(e.details).map_err(io::Error::from)?);
        l.push_str("}\n");
        self.events.write_all(l.as_bytes())?;
        self.files.events += 1;
        Ok(())
    }

    /// Appends a line to `packets.jsonl` and, if it was delivered, a frame to
    /// `packets.pcap`. Fails (writing nothing) if source and destination are
    /// of different address families, the payload does not fit a UDP datagram,
    /// or a delivered datagram's arrival is outside pcap's 1970–2106 range.
    pub fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        let frame_no = match p.fate {
            Fate::Delivered { received, .. } => {
                self.pcap.write(received, p.src, p.dst, p.payload)?;
                self.files.frames += 1;
                Some(self.files.frames)
            }
            Fate::Lost { .. } => {
                // Same checks as for a delivered one, so a loss never hides a bad record.
                build_frame(&mut self.pcap.frame, p.src, p.dst, p.payload)?;
                None
            }
        };
        let start = self.start;
        let l = &mut self.line;
        l.clear();
        let _ = write!(l, "{{\"sent\":\"{}\",\"sent_t_s\":{},", rfc3339(p.sent), since(start, p.sent));
        match p.fate {
            Fate::Delivered { received, .. } => {
                let _ = write!(l, "\"received\":\"{}\",\"received_t_s\":{},\"lost\":null,", rfc3339(received), since(start, received));
            }
            Fate::Lost { reason } => {
                l.push_str("\"received\":null,\"received_t_s\":null,\"lost\":");
                push_str(l, reason);
                l.push(',');
            }
        }
        let _ = write!(l, "\"src\":\"{}\",\"dst\":\"{}\",\"length\":{},\"sender_local\":\"{}\",\"receiver_local\":", p.src, p.dst, p.payload.len(), rfc3339(p.sender_local));
        match p.fate {
            Fate::Delivered { receiver_local, .. } => {
                let _ = write!(l, "\"{}\"", rfc3339(receiver_local));
            }
            Fate::Lost { .. } => l.push_str("null"),
        }
        l.push_str(",\"frame\":");
        match frame_no {
            Some(n) => {
                let _ = write!(l, "{n}");
            }
            None => l.push_str("null"),
        }
        if let Some(kind) = p.attack {
            l.push_str(",\"attack\":");
            push_str(l, kind);
        }
        l.push_str(",\"bytes\":\"");
        for b in p.payload {
            let _ = write!(l, "{b:02x}");
        }
        l.push_str("\"}\n");
        self.packets.write_all(l.as_bytes())?;
        self.files.packets += 1;
        Ok(())
    }

    /// Counts so far.
    pub fn files(&self) -> &TraceFiles {
        &self.files
    }

    /// Flushes and closes every file.
    pub fn finish(self) -> io::Result<TraceFiles> {
        let mut s = self.samples.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
        s.flush()?;
        let mut e = self.events;
        e.flush()?;
        let mut p = self.packets;
        p.flush()?;
        self.pcap.finish()?;
        Ok(self.files)
    }
}

/// A pcap file of UDP datagrams with synthesized Ethernet, IPv4/IPv6 and UDP
/// headers (correct lengths and checksums), nanosecond timestamps: the
/// writer of the simulator's `packets.pcap`, also used by `ntplab probe`.
pub struct PcapFrames<W: Write> {
    pcap: PcapWriter<W>,
    /// Reused for each frame.
    frame: Vec<u8>,
}

impl<W: Write> PcapFrames<W> {
    /// Writes the pcap file header (little-endian, nanosecond, Ethernet).
    pub fn new(w: W) -> io::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        Ok(PcapFrames { pcap: PcapWriter::with_header(w, header).map_err(pcap_err)?, frame: Vec::with_capacity(1600) })
    }

    /// Appends one datagram stamped `at`. Fails (writing nothing) if the
    /// address families differ, the payload does not fit a UDP datagram, or
    /// `at` is outside pcap's 1970–2106 range.
    pub fn write(&mut self, at: NtpTime, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let ts = pcap_timestamp(at)?;
        build_frame(&mut self.frame, src, dst, payload)?;
        let len = u32::try_from(self.frame.len()).map_err(|_| invalid("frame too long"))?;
        self.pcap.write_packet(&PcapPacket::new(ts, len, &self.frame)).map_err(pcap_err)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = self.pcap.into_writer();
        w.flush()?;
        Ok(w)
    }
}

fn invalid(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, m.into())
}

fn rfc3339(t: NtpTime) -> String {
    t.rfc3339().to_string()
}

/// `t - start` as an exact decimal with nine fractional digits.
fn since(start: NtpTime, t: NtpTime) -> String {
    let bits = i128::from(t.duration_since(start).to_bits());
    // Round to the nearest nanosecond, halves away from zero.
    let scaled = bits * 1_000_000_000;
    let half = 1i128 << 31;
    let nanos = if scaled >= 0 { (scaled + half) >> 32 } else { -((-scaled + half) >> 32) };
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

fn push_str(l: &mut String, s: &str) {
    l.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn push_opt_str(l: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(l, s),
        None => l.push_str("null"),
    }
}

fn pcap_timestamp(t: NtpTime) -> io::Result<Duration> {
    let (secs, nanos) = t.to_unix();
    match u32::try_from(secs) {
        Ok(s) => Ok(Duration::new(u64::from(s), nanos)),
        Err(_) => Err(invalid(format!("a datagram arriving at {} is outside pcap's 1970-2106 timestamp range", t.rfc3339()))),
    }
}

/// A locally administered unicast MAC derived from an address: 02:00 and its last four octets.
fn mac_of(ip: IpAddr) -> [u8; 6] {
    let last4 = match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let o = a.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x00, last4[0], last4[1], last4[2], last4[3]]
}

/// Ethernet II + IPv4/IPv6 + UDP around `payload`, checksums computed.
fn build_frame(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
    out.clear();
    let eth = PacketBuilder::ethernet2(mac_of(src.ip()), mac_of(dst.ip()));
    let udp = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), HOP_LIMIT).udp(src.port(), dst.port()),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), HOP_LIMIT).udp(src.port(), dst.port()),
        _ => return Err(invalid(format!("datagram from {src} to {dst}: address families differ"))),
    };
    udp.write(out, payload).map_err(|e| invalid(format!("datagram from {src} to {dst} ({} octets): {e}", payload.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice, UdpHeader};
    use ntplab_proto::time::NtpDuration;
    use pcap_file::pcap::PcapReader;

    fn t(s: &str) -> NtpTime {
        NtpTime::parse_rfc3339(s).unwrap()
    }

    fn ntp_payload(xmt_secs: u32) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0] = 0x23; // LI 0, VN 4, client
        b[40..44].copy_from_slice(&xmt_secs.to_be_bytes());
        b[44] = 0x80;
        b
    }

    struct Written {
        dir: PathBuf,
        files: TraceFiles,
        payloads: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    }

    fn write_small_trace(dir: &Path) -> Written {
        let start = t("2036-02-07T06:00:00Z");
        let mut w = TraceWriter::create(dir, start).unwrap();
        let client: SocketAddr = "10.0.0.2:50123".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let c6: SocketAddr = "[fd00::10]:123".parse().unwrap();
        let s6: SocketAddr = "[fd00::11]:123".parse().unwrap();
        let mut payloads = Vec::new();
        let mut at = start;
        for (i, (src, dst)) in [(client, server), (server, client), (c6, s6), (s6, c6)].into_iter().enumerate() {
            let payload = ntp_payload(0xecea_8e00 + i as u32);
            let sent = at;
            let received = sent + NtpDuration::from_nanos(100_123);
            w.packet(&Packet {
                sent,
                sender_local: sent + NtpDuration::from_seconds_f64(0.1),
                src,
                dst,
                fate: Fate::Delivered { received, receiver_local: received + NtpDuration::from_seconds_f64(-0.25) },
                payload: &payload,
                attack: None,
            })
            .unwrap();
            payloads.push((src, dst, payload));
            at = at + NtpDuration::from_seconds(1);
        }
        w.packet(&Packet { sent: at, sender_local: at, src: client, dst: server, fate: Fate::Lost { reason: "partition" }, payload: &ntp_payload(1), attack: None }).unwrap();
        for (i, host) in ["server", "client, with a comma"].iter().enumerate() {
            w.sample(&Sample {
                time: start + NtpDuration::from_nanos(1_500_000_000),
                host,
                offset_s: if i == 0 { 0.0 } else { -1.25e-5 },
                frequency_error: 1e-7 / 3.0,
                synced: i == 0,
                stratum: 1 + i as u8,
                poll_log2: 4,
            })
            .unwrap();
        }
        let details = serde_json::json!({ "by_s": -0.5, "after": "x\"y" });
        w.event(&Event { time: start + NtpDuration::from_seconds(3), host: Some("client"), kind: "step", details: &details }).unwrap();
        w.event(&Event { time: start, host: None, kind: "start", details: &serde_json::Value::Null }).unwrap();
        assert!(w.packet(&Packet { sent: at, sender_local: at, src: client, dst: s6, fate: Fate::Lost { reason: "x" }, payload: &[], attack: None }).is_err());
        let files = w.finish().unwrap();
        Written { dir: dir.to_path_buf(), files, payloads }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ntplab-sim-trace-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn since_is_exact_and_signed() {
        let s = t("2036-02-07T06:00:00Z");
        assert_eq!(since(s, s), "0.000000000");
        assert_eq!(since(s, s + NtpDuration::from_nanos(12_000_000_001)), "12.000000001");
        assert_eq!(since(s, s + NtpDuration::from_nanos(-1_500_000_000)), "-1.500000000");
        assert_eq!(since(s, t("2036-02-07T06:00:00.999999999Z")), "0.999999999");
    }

    #[test]
    fn files_are_as_documented_and_deterministic() {
        let a = write_small_trace(&temp_dir("a"));
        let b = write_small_trace(&temp_dir("b"));
        assert_eq!((a.files.samples, a.files.events, a.files.packets, a.files.frames), (2, 2, 5, 4));
        for name in [SAMPLES_FILE, EVENTS_FILE, PACKETS_FILE, PCAP_FILE] {
            let x = std::fs::read(a.dir.join(name)).unwrap();
            let y = std::fs::read(b.dir.join(name)).unwrap();
            assert!(!x.is_empty());
            assert_eq!(x, y, "{name} differs between two identical runs");
        }
        let csv = std::fs::read_to_string(&a.files.samples_path).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], SAMPLE_COLUMNS.join(","));
        assert_eq!(lines[1], "2036-02-07T06:00:01.500000000Z,1.500000000,server,0e0,3.3333333333333334e-8,true,1,4");
        assert_eq!(lines[2], "2036-02-07T06:00:01.500000000Z,1.500000000,\"client, with a comma\",-1.25e-5,3.3333333333333334e-8,false,2,4");
        let ev = std::fs::read_to_string(&a.files.events_path).unwrap();
        let ev: Vec<serde_json::Value> = ev.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(ev[0]["kind"], "step");
        assert_eq!(ev[0]["t_s"].as_f64(), Some(3.0));
        assert_eq!(ev[0]["details"]["after"], "x\"y");
        assert!(ev[1]["host"].is_null());
        let pk = std::fs::read_to_string(&a.files.packets_path).unwrap();
        let pk: Vec<serde_json::Value> = pk.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(pk.len(), 5);
        assert_eq!(pk[0]["src"], "10.0.0.2:50123");
        assert_eq!(pk[0]["received"], "2036-02-07T06:00:00.000100123Z");
        assert_eq!(pk[0]["sender_local"], "2036-02-07T06:00:00.100000000Z");
        assert_eq!(pk[0]["receiver_local"], "2036-02-07T05:59:59.750100123Z");
        assert_eq!(pk[0]["frame"], 1);
        assert_eq!(pk[0]["length"], 48);
        assert_eq!(pk[0]["bytes"].as_str().unwrap().len(), 96);
        assert_eq!(pk[2]["dst"], "[fd00::11]:123");
        assert!(pk[4]["received"].is_null() && pk[4]["frame"].is_null() && pk[4]["receiver_local"].is_null());
        assert_eq!(pk[4]["lost"], "partition");
    }

    #[test]
    fn pcap_reads_back_with_correct_headers_and_tshark_decodes_ntp() {
        let w = write_small_trace(&temp_dir("pcap"));
        let bytes = std::fs::read(&w.files.pcap_path).unwrap();
        assert_eq!(&bytes[..4], &[0x4d, 0x3c, 0xb2, 0xa1], "nanosecond magic a1b23c4d, little-endian");
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().ts_resolution, TsResolution::NanoSecond);
        assert_eq!(reader.header().datalink, DataLink::ETHERNET);
        let mut n = 0;
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.unwrap();
            let (src, dst, payload) = &w.payloads[n];
            let expect_ts = t("2036-02-07T06:00:00Z") + NtpDuration::from_seconds(n as i64) + NtpDuration::from_nanos(100_123);
            let (secs, nanos) = expect_ts.to_unix();
            assert_eq!(pkt.timestamp, Duration::new(secs as u64, nanos));
            assert_eq!(pkt.orig_len as usize, pkt.data.len());
            let sliced = SlicedPacket::from_ethernet(&pkt.data).unwrap();
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else { panic!("not UDP") };
            assert_eq!(udp.source_port(), src.port());
            assert_eq!(udp.destination_port(), dst.port());
            assert_eq!(udp.payload(), &payload[..]);
            assert_eq!(usize::from(udp.length()), 8 + payload.len());
            let header = UdpHeader::from_slice(udp.slice()).unwrap().0;
            let expected = match &sliced.net {
                Some(NetSlice::Ipv4(ip)) => {
                    assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
                    assert_eq!(IpAddr::from(ip.header().source_addr()), src.ip());
                    header.calc_checksum_ipv4(&ip.header().to_header(), udp.payload()).unwrap()
                }
                Some(NetSlice::Ipv6(ip)) => {
                    assert_eq!(IpAddr::from(ip.header().source_addr()), src.ip());
                    assert_eq!(usize::from(ip.header().payload_length()), 8 + payload.len());
                    header.calc_checksum_ipv6(&ip.header().to_header(), udp.payload()).unwrap()
                }
                other => panic!("not IP: {other:?}"),
            };
            assert_eq!(udp.checksum(), expected);
            assert_ne!(udp.checksum(), 0);
            n += 1;
        }
        assert_eq!(n, 4);

        // tshark is installed by the project's test script: require it.
        let out = std::process::Command::new("tshark")
            .args(["-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-r"])
            .arg(&w.files.pcap_path)
            .args(["-T", "fields", "-E", "separator=|", "-e", "ntp.xmt", "-e", "udp.checksum.status", "-e", "udp.port"])
            .output()
            .expect("tshark must be on PATH (the project's test script installs it)");
        assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 4, "{text}");
        for row in rows {
            let f: Vec<&str> = row.split('|').collect();
            assert!(!f[0].is_empty(), "frame not decoded as NTP: {row}");
            assert!(f[0].contains("2025"), "transmit timestamp {row}");
            assert_eq!(f[1], "1", "UDP checksum not good (tshark: 0 bad, 1 good, 2 unverified): {row}");
            assert!(f[2].contains("123"), "{row}");
        }
    }
}
