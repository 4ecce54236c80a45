//! `ntplab decode` end to end: snapshots of its output for every committed
//! capture and for hand-made packets, and its errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn captures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 output")
}

#[test]
fn every_capture_decodes_as_json_lines() {
    let mut names: Vec<_> = std::fs::read_dir(captures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "expected the committed captures, found {names:?}");
    for path in names {
        let out = ntplab(&["decode", "--pcap", path.to_str().unwrap(), "--format", "json"]);
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        let text = stdout(&out);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("each line is one JSON object");
            for key in ["frame", "src", "dst", "version", "mode", "leap", "stratum", "poll", "precision", "root_delay",
                "root_dispersion", "receive_timestamp", "transmit_timestamp", "extension_fields", "problems"]
            {
                assert!(v.get(key).is_some(), "{}: key {key} missing in {line}", path.display());
            }
        }
        let name = path.file_name().unwrap().to_str().unwrap().replace('.', "_");
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn text_output_of_a_capture() {
    let path = captures_dir().join("chrony-stratum2.pcapng");
    let out = ntplab(&["decode", "--pcap", path.to_str().unwrap(), "--format", "text"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first_two: String = text.split("\n\n").take(2).collect::<Vec<_>>().join("\n\n");
    insta::assert_snapshot!(first_two);
}

/// A stratum-0 RATE kiss-o'-death reply in era 1 (after 2036-02-07), by hand.
const KOD_ERA1: &str = "24 00 0a ec 00000000 00000000 52415445 \
    0000000000000000 0000001000000000 0000000000000000 0000002080000000";

#[test]
fn hex_kod_in_era_1() {
    let out = ntplab(&["decode", "--hex", KOD_ERA1, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["kiss_code"], "RATE");
    assert_eq!(v["reference_id"], "RATE");
    assert_eq!(v["transmit_timestamp"]["utc"], "2036-02-07T06:28:48.500000000Z");
    assert_eq!(v["origin_timestamp"]["utc"], "2036-02-07T06:28:32.000000000Z");
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn pivot_option_moves_the_era() {
    // The same bits, resolved near 1900: era 0.
    let out = ntplab(&["decode", "--hex", KOD_ERA1, "--format", "json", "--pivot", "1900-01-01T00:00:00Z"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["transmit_timestamp"]["utc"], "1900-01-01T00:00:32.500000000Z");
    let out = ntplab(&["decode", "--hex", KOD_ERA1, "--pivot", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pivot"), "{}", stderr(&out));
}

#[test]
fn bad_input_is_a_clear_error_with_non_zero_exit() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["decode", "--hex", "2304"], 1, "truncated, needs 48 bytes but only 2"),
        (&["decode", "--hex", "23q4"], 2, "'q' at position 2 is not a hex digit"),
        (&["decode", "--hex", "230"], 2, "odd number of hex digits"),
        (&["decode", "--pcap", "/nonexistent/capture.pcap"], 1, "cannot open /nonexistent/capture.pcap"),
        (&["decode", "--pcap", file!()], 1, "not a pcap or pcapng capture"),
        (&["decode"], 2, "--hex"),
    ];
    for (args, code, needle) in cases {
        let out = ntplab(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: stderr lacks {needle:?}: {}", stderr(&out));
    }
}

#[test]
fn truncated_capture_keeps_the_packets_before_the_break() {
    let whole = std::fs::read(captures_dir().join("chrony-basic.pcap")).unwrap();
    let dir = std::env::temp_dir().join(format!("ntplab-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 30]).unwrap();
    let out = ntplab(&["decode", "--pcap", cut.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let full = ntplab(&["decode", "--pcap", captures_dir().join("chrony-basic.pcap").to_str().unwrap(), "--format", "json"]);
    let n_full = stdout(&full).lines().count();
    assert_eq!(stdout(&out).lines().count(), n_full - 1, "all but the cut packet are printed");
    assert!(stderr(&out).contains("breaks off"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_json(bytes: &[u8]) -> serde_json::Value {
    let out = ntplab(&["decode", "--hex", &hex(bytes), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

#[test]
fn ntpv5_response_shows_its_own_fields() {
    use ntplab_proto::time::NtpTimestamp;
    use ntplab_proto::wire::v4::{LeapIndicator, Mode};
    use ntplab_proto::wire::v5::{Flags, Repr, Time32, Timescale};
    let repr = Repr {
        leap: LeapIndicator::NoWarning,
        version: 5,
        mode: Mode::Server,
        stratum: 2,
        poll: 6,
        precision: -20,
        root_delay: Time32::from_seconds_f64(0.25),
        root_dispersion: Time32::from_seconds_f64(0.001),
        timescale: Timescale::Tai,
        era: 1,
        flags: Flags(Flags::SYNCHRONIZED),
        server_cookie: 0,
        client_cookie: 0x0123_4567_89ab_cdef,
        receive_timestamp: NtpTimestamp::from_parts(100, 0),
        transmit_timestamp: NtpTimestamp::from_parts(101, 1 << 31),
    };
    let v = decode_json(&repr.to_bytes());
    assert_eq!(v["version"], 5);
    assert_eq!(v["root_delay"], 0.25);
    assert_eq!(v["v5"]["timescale_name"], "TAI");
    assert_eq!(v["v5"]["client_cookie"], "0123456789abcdef");
    assert_eq!(v["v5"]["flag_names"][0], "Synchronized");
    // Era 1 from the header, not from a pivot.
    assert_eq!(v["receive_timestamp"]["utc"], "2036-02-07T06:29:56.000000000Z");
    assert_eq!(v["transmit_timestamp"]["utc"], "2036-02-07T06:29:57.500000000Z");
    assert!(v.get("reference_id").is_none() && v.get("origin_timestamp").is_none());
    insta::assert_json_snapshot!(v);
}

#[test]
fn smear_refid_mac_and_bad_extension_length() {
    use ntplab_proto::wire::refid::{ReferenceId, SmearCorrection};
    use ntplab_proto::time::NtpDuration;
    let header = hex_to_bytes(KOD_ERA1);
    let mut p = header.clone();
    p[1] = 2; // stratum 2: the reference ID names an upstream, here a smear REFID
    let smear = ReferenceId::from_smear(SmearCorrection::from_duration(NtpDuration::from_seconds_f64(-0.25)));
    p[12..16].copy_from_slice(&smear.0);
    // A legacy MAC: key ID 7 and a 16-octet digest.
    let mut with_mac = p.clone();
    with_mac.extend_from_slice(&[0, 0, 0, 7]);
    with_mac.extend_from_slice(&[0xab; 16]);
    let v = decode_json(&with_mac);
    assert_eq!(v["leap_smear_correction"], -0.25);
    assert_eq!(v["reference_id"], "254.240.0.0");
    assert_eq!(v["mac"]["key_id"], 7);
    assert_eq!(v["mac"]["digest_length"], 16);
    // An extension field whose length runs past the packet: decoded as far as it goes.
    let mut bad = p.clone();
    bad.extend_from_slice(&[0x01, 0x04, 0x00, 0x40]);
    bad.extend_from_slice(&[0; 28]);
    let v = decode_json(&bad);
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p.as_str().unwrap().contains("bad extension field length")),
        "{problems:?}"
    );
}

fn hex_to_bytes(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap()).collect()
}
