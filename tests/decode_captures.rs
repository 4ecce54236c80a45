//! `ntplab decode --pcap` on captures built here, frame by frame, for the
//! cases real tools produce and the decoder once lost: frames cut by the snap
//! length (`tcpdump -s 200`), pcapng with an `if_tzone` option, a pcap
//! timestamp with ts_usec = 1,000,000, Linux cooked captures of the loopback
//! device (`tcpdump -i any`, ARPHRD 772), ntpq/ntpdc control messages (modes
//! 6 and 7), an undecodable frame among good ones, files that are no capture
//! at all, and a reader that closes the pipe early. Where tshark is installed
//! the same captures are compared with it.

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, TsResolution};
use serde_json::Value;
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `ntplab decode --pcap FILE --format json`: exit status, one JSON value per line, stderr.
fn decode(path: &Path) -> (Option<i32>, Vec<Value>, String) {
    let out = ntplab(&["decode", "--pcap", path.to_str().unwrap(), "--format", "json"]);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out.status.code(), lines, stderr(&out))
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ntplab-decode-captures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An NTPv4 client request, or with `ext` octets of a Unique Identifier field after it.
fn ntp_request(ext: usize) -> Vec<u8> {
    let mut b = vec![0x23, 0, 6, 0xe9];
    b.extend([0; 36]);
    b.extend([0xec, 0xea, 0x8e, 0x10, 0x12, 0x34, 0x56, 0x78]);
    if ext > 0 {
        b.extend([0x01, 0x04]);
        b.extend(((ext + 4) as u16).to_be_bytes());
        b.extend(vec![0x5a; ext]);
    }
    b
}

/// A server reply to [`ntp_request`]: stratum 1, GPS.
fn ntp_reply() -> Vec<u8> {
    let mut b = vec![0x24, 1, 6, 0xe9, 0, 0, 0, 0, 0, 0, 0, 0x10];
    b.extend(b"GPS\0");
    b.extend([0xec, 0xea, 0x8e, 0x00, 0, 0, 0, 0]);
    b.extend([0xec, 0xea, 0x8e, 0x10, 0x12, 0x34, 0x56, 0x78]);
    b.extend([0xec, 0xea, 0x8e, 0x10, 0x80, 0, 0, 0]);
    b.extend([0xec, 0xea, 0x8e, 0x10, 0x80, 0, 0x10, 0]);
    b
}

/// An Ethernet/IPv4/UDP frame from 192.0.2.1:`sport` to 192.0.2.2:`dport`.
fn ethernet(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(sport, dport);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).unwrap();
    frame
}

/// A Linux cooked capture (SLL) frame of the loopback device: ARPHRD 772, IPv4 from and to 127.0.0.1.
fn sll_loopback(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64).udp(sport, dport);
    let mut ip = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut ip, payload).unwrap();
    let mut frame = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    frame.extend(ip);
    frame
}

/// One pcap record: time, the captured octets and the length on the wire.
struct Record {
    secs: u32,
    frac: u32,
    data: Vec<u8>,
    original: u32,
}

impl Record {
    fn whole(secs: u32, data: Vec<u8>) -> Self {
        let original = data.len() as u32;
        Record { secs, frac: 0, data, original }
    }
}

/// A microsecond pcap written with pcap-file's raw-record writer (which checks nothing).
fn write_pcap(name: &str, link: DataLink, snaplen: u32, records: &[Record]) -> PathBuf {
    let path = temp_file(name);
    let header = PcapHeader { datalink: link, snaplen, ts_resolution: TsResolution::MicroSecond, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
    for r in records {
        w.write_raw_packet(&RawPcapPacket {
            ts_sec: r.secs,
            ts_frac: r.frac,
            incl_len: r.data.len() as u32,
            orig_len: r.original,
            data: Cow::Borrowed(&r.data),
        })
        .unwrap();
    }
    path
}

const T0: u32 = 1_795_470_000; // 2026-11-23

#[test]
fn frames_cut_by_the_snap_length_are_decoded_and_flagged() {
    // tcpdump -s 200: an NTS-sized request cut at 200 octets, then a whole reply.
    let request = ethernet(40000, 123, &ntp_request(200));
    let cut = Record { secs: T0, frac: 0, data: request[..200].to_vec(), original: request.len() as u32 };
    let path = write_pcap("snaplen.pcap", DataLink::ETHERNET, 200, &[cut, Record::whole(T0, ethernet(123, 40000, &ntp_reply()))]);
    let (code, packets, err) = decode(&path);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(packets.len(), 2, "both frames: {err}");
    let t = &packets[0]["truncated"];
    assert_eq!(t["captured_frame"], 200);
    assert_eq!(t["original_frame"], request.len());
    assert_eq!(t["ntp_captured"], 200 - 42);
    assert_eq!(t["ntp_length"], 48 + 204);
    assert_eq!(packets[0]["mode"], 3, "the captured header is decoded");
    assert_eq!(packets[0]["problems"], serde_json::json!([]), "the cut is not the sender's fault");
    assert!(packets[1].get("truncated").is_none());
    assert_eq!(packets[1]["reference_id"], "GPS");
    compare_with_tshark(&path, &packets);
    // The text form says so too.
    let out = ntplab(&["decode", "--pcap", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[Packet size limited during capture: 200 of 294 frame octets; 158 of 252 NTP octets decoded]"), "{text}");
}

#[test]
fn a_microsecond_field_of_one_million_is_carried_into_the_seconds() {
    let odd = Record { secs: T0, frac: 1_000_000, data: ethernet(40000, 123, &ntp_request(0)), original: 90 };
    let path = write_pcap("usec.pcap", DataLink::ETHERNET, 65535, &[odd, Record::whole(T0 + 1, ethernet(123, 40000, &ntp_reply()))]);
    let (code, packets, err) = decode(&path);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(packets.len(), 2, "{err}");
    compare_with_tshark(&path, &packets);
}

#[test]
fn linux_cooked_capture_of_the_loopback_device() {
    let path = write_pcap(
        "sll-lo.pcap",
        DataLink::LINUX_SLL,
        262144,
        &[Record::whole(T0, sll_loopback(40000, 123, &ntp_request(0))), Record::whole(T0, sll_loopback(123, 40000, &ntp_reply()))],
    );
    let (code, packets, err) = decode(&path);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(packets.len(), 2, "{err}");
    assert_eq!(packets[0]["src"], "127.0.0.1:40000");
    assert_eq!(packets[1]["dst"], "127.0.0.1:40000");
    compare_with_tshark(&path, &packets);
}

#[test]
fn pcapng_with_a_time_zone_option() {
    let path = temp_file("tzone.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfTzone(0),
            InterfaceDescriptionOption::IfTsResol(9),
            InterfaceDescriptionOption::IfName("eth0".into()),
        ],
    })
    .unwrap();
    for (i, frame) in [ethernet(40000, 123, &ntp_request(0)), ethernet(123, 40000, &ntp_reply())].into_iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            // With if_tsresol 9 the raw units are nanoseconds; pcap-file takes them as given.
            timestamp: Duration::from_nanos(u64::from(T0) * 1_000_000_000 + i as u64 * 1000),
            original_len: frame.len() as u32,
            data: Cow::Owned(frame),
            options: vec![],
        })
        .unwrap();
    }
    drop(w);
    let (code, packets, err) = decode(&path);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(packets.len(), 2, "{err}");
    compare_with_tshark(&path, &packets);
}

/// ntpq's "rv 0" (read variables, association 0) and ntpd's answer; ntpdc's "peers".
fn control_messages() -> Vec<Vec<u8>> {
    let request = vec![0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
    let data = b"version=\"ntpd 4.2.8p15\", leap=00, stratum=2, refid=192.0.2.7";
    let mut response = vec![0x16, 0x82, 0x00, 0x01, 0x06, 0x15, 0, 0, 0, 0, 0, data.len() as u8];
    response.extend_from_slice(data);
    response.resize(response.len().div_ceil(4) * 4, 0);
    let error = vec![0x16, 0xc2, 0x00, 0x02, 0x04, 0x00, 0x00, 0x07, 0, 0, 0, 0];
    let private = vec![0x17, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00];
    vec![request, response, error, private]
}

#[test]
fn control_and_private_messages_are_decoded() {
    let msgs = control_messages();
    let records: Vec<Record> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (s, d) = if i % 2 == 0 { (40000, 123) } else { (123, 40000) };
            Record::whole(T0, ethernet(s, d, m))
        })
        .collect();
    let path = write_pcap("control.pcap", DataLink::ETHERNET, 65535, &records);
    let (code, packets, err) = decode(&path);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(packets.len(), 4, "{err}");
    let c = &packets[0]["control"];
    assert_eq!((packets[0]["mode"].as_u64(), packets[0]["version"].as_u64()), (Some(6), Some(2)));
    assert_eq!((c["response"].as_bool(), c["opcode_name"].as_str()), (Some(false), Some("read variables")));
    let c = &packets[1]["control"];
    assert_eq!(c["status_fields"]["kind"], "system");
    assert_eq!(c["status_fields"]["clock_source"], 6);
    assert!(c["data"].as_str().unwrap().starts_with("version=\"ntpd 4.2.8p15\""), "{c}");
    let c = &packets[2]["control"];
    assert_eq!((c["error"].as_bool(), c["status_fields"]["name"].as_str()), (Some(true), Some("unknown association identifier")));
    assert_eq!(c["association_id"], 7);
    let p = &packets[3]["private"];
    assert_eq!((packets[3]["mode"].as_u64(), p["request_name"].as_str()), (Some(7), Some("PEER_LIST_SUM")));
    assert_eq!(p["implementation_name"], "XNTPD");
    compare_with_tshark(&path, &packets);
    let out = ntplab(&["decode", "--pcap", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("    Opcode: read variables (2)"), "{text}");
    assert!(text.contains("    Request Code: PEER_LIST_SUM (1)"), "{text}");
    // From hex, too.
    let hex: String = msgs[0].iter().map(|b| format!("{b:02x}")).collect();
    let out = ntplab(&["decode", "--hex", &hex, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_undecodable_frame_is_reported_and_does_not_change_the_status() {
    let good = [ethernet(40000, 123, &ntp_request(0)), ethernet(123, 40000, &ntp_reply())];
    let clean = write_pcap("clean.pcap", DataLink::ETHERNET, 65535, &good.clone().map(|f| Record::whole(T0, f)));
    let with_bad = write_pcap(
        "with-bad.pcap",
        DataLink::ETHERNET,
        65535,
        &[
            Record::whole(T0, good[0].clone()),
            Record::whole(T0, ethernet(40001, 123, b"not NTP at all")),
            Record::whole(T0, vec![0xff; 6]),
            Record::whole(T0, good[1].clone()),
        ],
    );
    let (clean_code, clean_packets, _) = decode(&clean);
    let (code, packets, err) = decode(&with_bad);
    assert_eq!(code, clean_code, "the status does not depend on the other frames: {err}");
    assert_eq!(code, Some(0));
    assert_eq!(packets.len(), clean_packets.len(), "{err}");
    assert!(err.contains("frame 2 (192.0.2.1:40001 -> 192.0.2.2:123): cannot decode"), "{err}");
    assert!(err.contains("frame 3: Ethernet header truncated"), "{err}");
}

#[test]
fn a_file_that_is_no_capture_is_refused_at_once_naming_it() {
    // /dev/zero never ends: only its first four octets may be read.
    let out = ntplab(&["decode", "--pcap", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("/dev/zero: not a pcap or pcapng capture: magic number [00, 00, 00, 00]"), "{err}");
}

#[test]
fn a_closed_pipe_ends_decode_quietly() {
    // Enough output to fill any pipe buffer many times over.
    let records: Vec<Record> = (0..3000).map(|i| Record::whole(T0 + i, ethernet(40000, 123, &ntp_request(0)))).collect();
    let path = write_pcap("many.pcap", DataLink::ETHERNET, 65535, &records);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["decode", "--pcap", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take()); // as `head -1` does
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no complaint about the closed pipe");
}

// ------------------------------------------------------------------ tshark

fn tshark_available() -> bool {
    Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Every NTP layer tshark 4.0 decodes in `path`, in frame order, flattened to
/// `field -> value` (nested `*_tree` objects included).
fn tshark_ntp(path: &Path) -> Vec<(u64, serde_json::Map<String, Value>)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "json", "--no-duplicate-keys", "-Y", "ntp"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    fn flatten(v: &Value, into: &mut serde_json::Map<String, Value>) {
        if let Some(obj) = v.as_object() {
            for (k, child) in obj {
                if child.is_object() {
                    flatten(child, into);
                } else {
                    into.insert(k.clone(), child.clone());
                }
            }
        }
    }
    all.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let layers = &p["_source"]["layers"];
            let frame = layers["frame"]["frame.number"].as_str().unwrap().parse().unwrap();
            let mut fields = serde_json::Map::new();
            flatten(&layers["ntp"], &mut fields);
            (frame, fields)
        })
        .collect()
}

fn int(fields: &serde_json::Map<String, Value>, key: &str) -> Option<u64> {
    let s = fields.get(key)?.as_str()?;
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Where tshark is installed: it finds NTP in the same frames, and the
/// header fields agree (time packets: version, mode, stratum; mode 6: flags,
/// opcode, sequence, status, association ID, count; mode 7: implementation
/// and request code). Time-packet fields in full are the business of
/// tests/tshark_agreement.rs.
fn compare_with_tshark(path: &Path, ours: &[Value]) {
    if !tshark_available() {
        eprintln!("tshark not installed: {} not compared with it", path.display());
        return;
    }
    let theirs = tshark_ntp(path);
    let frames: Vec<u64> = theirs.iter().map(|(f, _)| *f).collect();
    let our_frames: Vec<u64> = ours.iter().map(|v| v["frame"].as_u64().unwrap()).collect();
    assert_eq!(our_frames, frames, "{}: frames with NTP", path.display());
    for ((frame, t), o) in theirs.iter().zip(ours) {
        let ctx = format!("{} frame {frame}: tshark {t:?}\nntplab {o}", path.display());
        assert_eq!(int(t, "ntp.flags.vn"), o["version"].as_u64(), "version: {ctx}");
        match o["mode"].as_u64() {
            Some(6) => {
                let c = &o["control"];
                assert_eq!(int(t, "ntp.flags.mode"), Some(6), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.flags2.r"), Some(u64::from(c["response"].as_bool().unwrap())), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.flags2.error"), Some(u64::from(c["error"].as_bool().unwrap())), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.flags2.more"), Some(u64::from(c["more"].as_bool().unwrap())), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.flags2.opcode"), c["opcode"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.sequence"), c["sequence"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.status"), c["status"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.associd"), c["association_id"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.ctrl.count"), c["count"].as_u64(), "{ctx}");
            }
            Some(7) => {
                let p = &o["private"];
                assert_eq!(int(t, "ntp.flags.mode"), Some(7), "{ctx}");
                assert_eq!(int(t, "ntp.priv.impl"), p["implementation"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.priv.reqcode"), p["request_code"].as_u64(), "{ctx}");
                assert_eq!(int(t, "ntp.priv.seq"), p["sequence"].as_u64(), "{ctx}");
            }
            mode => {
                assert_eq!(int(t, "ntp.flags.mode"), mode, "{ctx}");
                assert_eq!(int(t, "ntp.stratum"), o["stratum"].as_u64(), "{ctx}");
            }
        }
    }
}
