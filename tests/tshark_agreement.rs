//! Differential test: `ntplab decode --pcap FILE --format json` against
//! tshark's NTP dissector, field by field, for every NTP packet in every
//! capture under `tests/captures/` (real chrony and ntpd-rs traffic; see
//! tests/captures/README.md).
//!
//! tshark is required: without it the test fails and says so (CI installs it).
//!
//! How tshark's values are read (tshark 4.0, `-T json --no-duplicate-keys -x`):
//! * every field comes as `"name": "value"` plus, with `-x`, `"name_raw":
//!   [hex, offset, length, bitmask, type]`; the hex is the packet's own bytes.
//! * `ntp.flags.li/vn/mode`, `ntp.stratum`: decimal strings.
//! * `ntp.ppoll`, `ntp.precision`: the unsigned octet ("230" for -26); read
//!   as i8 here. (Newer tshark may print them signed; both are accepted.)
//! * `ntp.rootdelay`, `ntp.rootdispersion`: the raw 32-bit short-format word
//!   as a decimal integer (units of 2^-16 s); the tree text rounds to 1 us.
//!   The exact value raw/65536 is the reference (tolerance 1e-6 s).
//! * `ntp.refid`: bytes; compared via `ntp.refid_raw` hex.
//! * `ntp.reftime/org/rec/xmt`: "Nov 23, 2026 21:53:34.415262046 UTC"
//!   (ns, truncated), "NULL" for the zero timestamp; the era follows RFC 4330
//!   (MSB clear means 2036-2104). ntplab resolves eras near each frame's
//!   capture time instead, so a result that differs from tshark's by whole
//!   NTP eras (2^32 s) is accepted when it lies within 2^31 s of the frame
//!   time. Tolerance 1 us; `raw_hex` must equal the packet bytes exactly.
//! * `ntp.ext` (one object, or an array with several): `ntp.ext.type` as
//!   "0x0104", `ntp.ext.length` decimal (wire length incl. the 4-octet header).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const CAPTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures");
/// 2^32 seconds: one NTP era.
const ERA_NS: i128 = (1i128 << 32) * 1_000_000_000;
const TIME_TOLERANCE_NS: i128 = 1_000;
const SHORT_TOLERANCE_S: f64 = 1e-6;
const MAX_REPORTED: usize = 80;

#[test]
fn decoder_agrees_with_tshark_on_reference_captures() {
    require_tshark();
    let files = capture_files();
    assert!(!files.is_empty(), "no .pcap/.pcapng files in {CAPTURE_DIR}");
    let mut failures = Vec::new();
    let mut compared = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let theirs = tshark_packets(file);
        assert!(
            !theirs.is_empty(),
            "{name}: tshark found no NTP packets; is the capture intact?"
        );
        let ours = match our_packets(file) {
            Ok(ours) => ours,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for frame in ours.keys().filter(|f| !theirs.contains_key(f)) {
            failures.push(format!(
                "{name} frame {frame}: ntplab decoded it as NTP, tshark did not"
            ));
        }
        for (frame, t) in &theirs {
            let mut check = Check {
                file: &name,
                frame: *frame,
                failures: &mut failures,
            };
            match ours.get(frame) {
                Some(o) => compare_packet(&mut check, o, t),
                None => check.fail(
                    "frame",
                    "tshark decoded an NTP packet here, ntplab output has none",
                ),
            }
            compared += 1;
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&str> = failures
            .iter()
            .take(MAX_REPORTED)
            .map(String::as_str)
            .collect();
        panic!(
            "ntplab and tshark disagree ({} problems in {} NTP packets from {} files):\n  {}{}",
            failures.len(),
            compared,
            files.len(),
            shown.join("\n  "),
            if failures.len() > MAX_REPORTED {
                "\n  ..."
            } else {
                ""
            }
        );
    }
}

/// Guards the corpus itself (tshark only): regenerated captures must still
/// exercise the cases this comparison exists for.
#[test]
fn captures_cover_the_interesting_cases() {
    require_tshark();
    let mut seen = BTreeSet::new();
    for file in capture_files() {
        if file.extension().is_some_and(|e| e == "pcap") {
            seen.insert("classic pcap file".to_string());
        }
        for t in tshark_packets(&file).values() {
            let ntp = &t.ntp;
            if t.src.is_ipv6() {
                seen.insert("IPv6".to_string());
            }
            let stratum = int_field(ntp, "ntp.stratum").unwrap_or(-1);
            if stratum == 0 && matches!(int_field(ntp, "ntp.flags.mode"), Ok(4)) {
                let refid = raw_field(ntp, "ntp.refid").unwrap_or_default();
                seen.insert(format!(
                    "kiss code {}",
                    String::from_utf8_lossy(&hex_bytes(&refid))
                ));
            }
            if (2..=15).contains(&stratum)
                && raw_field(ntp, "ntp.rootdelay").is_ok_and(|h| h != "00000000")
            {
                seen.insert("stratum 2-15 with non-zero root delay".to_string());
            }
            if stratum == 16 {
                seen.insert("stratum 16".to_string());
            }
            for (ty, _) in extension_fields(ntp).into_iter().flatten() {
                seen.insert(format!("extension field 0x{ty:04x}"));
            }
        }
    }
    let wanted = [
        "classic pcap file",
        "IPv6",
        "kiss code DENY",
        "kiss code NTSN",
        "stratum 2-15 with non-zero root delay",
        "stratum 16",
        "extension field 0x0104",
        "extension field 0x0204",
        "extension field 0x0304",
        "extension field 0x0404",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !seen.contains(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "captures no longer contain: {missing:?} (seen: {seen:?})"
    );
}

// ---------------------------------------------------------------- comparison

struct Check<'a> {
    file: &'a str,
    frame: u64,
    failures: &'a mut Vec<String>,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.failures.push(format!(
            "{} frame {}: {field}: {msg}",
            self.file, self.frame
        ));
    }

    fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        field: &str,
        ours: Option<T>,
        tshark: Result<T, String>,
    ) {
        match (ours, tshark) {
            (_, Err(e)) => self.fail(field, format!("cannot read tshark's value: {e}")),
            (None, Ok(t)) => self.fail(
                field,
                format!("missing or wrong type in ntplab output (tshark: {t:?})"),
            ),
            (Some(o), Ok(t)) if o != t => self.fail(field, format!("ntplab {o:?}, tshark {t:?}")),
            _ => {}
        }
    }
}

fn compare_packet(c: &mut Check, ours: &Value, t: &TsharkPacket) {
    let ntp = &t.ntp;
    c.eq("src", ours["src"].as_str(), Ok(t.src.to_string().as_str()));
    c.eq("dst", ours["dst"].as_str(), Ok(t.dst.to_string().as_str()));
    c.eq(
        "version",
        ours["version"].as_i64(),
        int_field(ntp, "ntp.flags.vn"),
    );
    c.eq(
        "mode",
        ours["mode"].as_i64(),
        int_field(ntp, "ntp.flags.mode"),
    );
    c.eq(
        "leap",
        ours["leap"].as_i64(),
        int_field(ntp, "ntp.flags.li"),
    );
    let stratum = int_field(ntp, "ntp.stratum");
    c.eq("stratum", ours["stratum"].as_i64(), stratum.clone());
    c.eq(
        "poll",
        ours["poll"].as_i64(),
        int_field(ntp, "ntp.ppoll").map(as_i8),
    );
    c.eq(
        "precision",
        ours["precision"].as_i64(),
        int_field(ntp, "ntp.precision").map(as_i8),
    );
    compare_short(c, "root_delay", &ours["root_delay"], ntp, "ntp.rootdelay");
    compare_short(
        c,
        "root_dispersion",
        &ours["root_dispersion"],
        ntp,
        "ntp.rootdispersion",
    );
    compare_refid(c, ours, ntp, stratum.unwrap_or(-1));
    for (key, field) in [
        ("reference_timestamp", "ntp.reftime"),
        ("origin_timestamp", "ntp.org"),
        ("receive_timestamp", "ntp.rec"),
        ("transmit_timestamp", "ntp.xmt"),
    ] {
        compare_timestamp(c, key, &ours[key], ntp, field, t.frame_time_ns);
    }
    compare_extensions(c, &ours["extension_fields"], ntp);
    match ours["problems"].as_array() {
        Some(list) if list.iter().all(Value::is_string) => {
            if t.malformed && list.is_empty() {
                c.fail(
                    "problems",
                    "tshark marks the packet malformed, ntplab reports no problem",
                );
            }
        }
        _ => c.fail(
            "problems",
            format!("expected an array of strings, got {}", ours["problems"]),
        ),
    }
}

/// NTP short format (root delay, root dispersion): exact value from the packet bytes.
fn compare_short(c: &mut Check, key: &str, ours: &Value, ntp: &Value, field: &str) {
    let exact = match raw_field(ntp, field).and_then(|h| parse_hex_u64(&h)) {
        Ok(units) => units as f64 / 65536.0,
        Err(e) => return c.fail(key, format!("cannot read tshark's value: {e}")),
    };
    // tshark's own value: the raw word as an integer (4.0), or seconds.
    if let Ok(v) = str_field(ntp, field) {
        let shown = if v.contains('.') {
            v.parse::<f64>().ok()
        } else {
            v.parse::<f64>().ok().map(|u| u / 65536.0)
        };
        if shown.is_none_or(|s| (s - exact).abs() > SHORT_TOLERANCE_S) {
            c.fail(
                key,
                format!("tshark's value {v:?} does not match its raw bytes ({exact} s)"),
            );
        }
    }
    match ours.as_f64() {
        Some(o) if (o - exact).abs() <= SHORT_TOLERANCE_S => {}
        Some(o) => c.fail(key, format!("ntplab {o} s, tshark {exact} s")),
        None => c.fail(key, format!("expected a number, got {ours}")),
    }
}

fn compare_refid(c: &mut Check, ours: &Value, ntp: &Value, stratum: i64) {
    let hex = match raw_field(ntp, "ntp.refid") {
        Ok(h) => h,
        Err(e) => {
            return c.fail(
                "reference_id_hex",
                format!("cannot read tshark's value: {e}"),
            )
        }
    };
    c.eq(
        "reference_id_hex",
        ours["reference_id_hex"].as_str(),
        Ok(hex.as_str()),
    );
    let bytes = hex_bytes(&hex);
    // ASCII code at stratum 0 and 1 (when printable: otherwise only the hex
    // is compared), a dotted quad above.
    let ascii: String = bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| char::from(b))
        .collect();
    let printable = ascii.chars().all(|ch| ch == ' ' || ch.is_ascii_graphic());
    if (0..=1).contains(&stratum) {
        if printable {
            c.eq(
                "reference_id",
                ours["reference_id"].as_str(),
                Ok(ascii.as_str()),
            );
        } else if !ours["reference_id"].is_string() {
            c.fail(
                "reference_id",
                format!("expected a string, got {}", ours["reference_id"]),
            );
        }
    } else if bytes.len() == 4 {
        let quad = format!("{}.{}.{}.{}", bytes[0], bytes[1], bytes[2], bytes[3]);
        c.eq(
            "reference_id",
            ours["reference_id"].as_str(),
            Ok(quad.as_str()),
        );
    }
    // kiss_code: the ASCII code when the stratum is 0 (null/absent/"" for an
    // all-zero reference ID), absent or null otherwise.
    let kiss = &ours["kiss_code"];
    if stratum == 0 && !ascii.is_empty() {
        if printable {
            c.eq("kiss_code", kiss.as_str(), Ok(ascii.as_str()));
        } else if !kiss.is_string() {
            c.fail("kiss_code", format!("expected a string, got {kiss}"));
        }
    } else if stratum == 0 {
        if !(kiss.is_null() || kiss.as_str() == Some("")) {
            c.fail(
                "kiss_code",
                format!("reference ID is zero, expected null, got {kiss}"),
            );
        }
    } else if !kiss.is_null() {
        c.fail(
            "kiss_code",
            format!("stratum {stratum}: expected none, got {kiss}"),
        );
    }
}

fn compare_timestamp(
    c: &mut Check,
    key: &str,
    ours: &Value,
    ntp: &Value,
    field: &str,
    frame_time_ns: i128,
) {
    let raw = match raw_field(ntp, field) {
        Ok(h) => h,
        Err(e) => return c.fail(key, format!("cannot read tshark's value: {e}")),
    };
    c.eq(
        &format!("{key}.raw_hex"),
        ours["raw_hex"].as_str(),
        Ok(raw.as_str()),
    );
    let utc = &ours["utc"];
    if raw.bytes().all(|b| b == b'0') {
        if !utc.is_null() {
            c.fail(
                &format!("{key}.utc"),
                format!("timestamp is zero, expected null, got {utc}"),
            );
        }
        return;
    }
    let shown = str_field(ntp, field).unwrap_or_default();
    let Some(theirs) = parse_tshark_time(&shown) else {
        return c.fail(
            &format!("{key}.utc"),
            format!("cannot parse tshark's time {shown:?}"),
        );
    };
    let Some(mine) = utc.as_str().and_then(parse_rfc3339) else {
        return c.fail(
            &format!("{key}.utc"),
            format!("expected RFC 3339 with 9 fractional digits and Z, got {utc}"),
        );
    };
    let diff = mine - theirs;
    let eras = (diff as f64 / ERA_NS as f64).round() as i128;
    let residual = diff - eras * ERA_NS;
    let near_frame = (mine - frame_time_ns).abs() <= ERA_NS / 2;
    let ok = residual.abs() <= TIME_TOLERANCE_NS && (eras == 0 || near_frame);
    if !ok {
        let note = if residual.abs() <= TIME_TOLERANCE_NS {
            format!(" (differs by {eras} NTP era(s) and is not the era nearest the capture time)")
        } else {
            format!(" (off by {} ns)", residual)
        };
        c.fail(
            &format!("{key}.utc"),
            format!("ntplab {utc}, tshark {shown:?}{note}"),
        );
    }
}

fn compare_extensions(c: &mut Check, ours: &Value, ntp: &Value) {
    let Some(ours) = ours.as_array() else {
        return c.fail("extension_fields", format!("expected an array, got {ours}"));
    };
    let theirs = extension_fields(ntp);
    if ours.len() != theirs.len() {
        let types: Vec<String> = theirs
            .iter()
            .map(|t| match t {
                Ok((ty, len)) => format!("0x{ty:04x}/{len}"),
                Err(e) => e.clone(),
            })
            .collect();
        c.fail(
            "extension_fields",
            format!(
                "ntplab has {}, tshark has {} (type/length: {})",
                ours.len(),
                theirs.len(),
                types.join(", ")
            ),
        );
        return;
    }
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        match t {
            Err(e) => c.fail(
                &format!("extension_fields[{i}]"),
                format!("cannot read tshark's value: {e}"),
            ),
            Ok((ty, len)) => {
                c.eq(
                    &format!("extension_fields[{i}].type"),
                    o["type"].as_i64(),
                    Ok(ty),
                );
                c.eq(
                    &format!("extension_fields[{i}].length"),
                    o["length"].as_i64(),
                    Ok(len),
                );
                if o["name"].as_str().is_none_or(str::is_empty) {
                    c.fail(
                        &format!("extension_fields[{i}].name"),
                        format!("expected a non-empty string, got {}", o["name"]),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- tshark side

struct TsharkPacket {
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    /// Capture time of the frame, ns since the Unix epoch.
    frame_time_ns: i128,
    malformed: bool,
    /// The "ntp" layer of tshark's JSON.
    ntp: Value,
}

fn require_tshark() {
    match Command::new("tshark").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`tshark --version` failed ({}); this test needs a working tshark",
            out.status
        ),
        Err(e) => panic!(
            "tshark is not available ({e}): install it (Debian/Ubuntu: `apt-get install tshark`) \
             to run this test; CI installs it. The test does not skip without it."
        ),
    }
}

fn capture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CAPTURE_DIR)
        .unwrap_or_else(|e| panic!("cannot list {CAPTURE_DIR}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    files
}

/// Every frame tshark decodes as NTP (UDP only; NTP quoted inside ICMP errors is left out).
fn tshark_packets(file: &Path) -> BTreeMap<u64, TsharkPacket> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "json", "--no-duplicate-keys", "-x", "-Y", "ntp"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).expect("tshark -T json output is JSON");
    let mut packets = BTreeMap::new();
    for p in all.as_array().expect("tshark -T json prints an array") {
        let layers = &p["_source"]["layers"];
        if layers.get("icmp").is_some() || layers.get("icmpv6").is_some() {
            continue;
        }
        let frame = int_field(&layers["frame"], "frame.number").expect("frame.number") as u64;
        let (ip, src_key, dst_key) = if layers.get("ipv6").is_some() {
            (&layers["ipv6"], "ipv6.src", "ipv6.dst")
        } else {
            (&layers["ip"], "ip.src", "ip.dst")
        };
        let addr = |ip_key: &str, port_key: &str| -> std::net::SocketAddr {
            let ip: std::net::IpAddr = str_field(ip, ip_key)
                .unwrap()
                .parse()
                .expect("tshark IP address");
            std::net::SocketAddr::new(
                ip,
                int_field(&layers["udp"], port_key).expect("UDP port") as u16,
            )
        };
        let epoch = str_field(&layers["frame"], "frame.time_epoch").expect("frame.time_epoch");
        packets.insert(
            frame,
            TsharkPacket {
                src: addr(src_key, "udp.srcport"),
                dst: addr(dst_key, "udp.dstport"),
                frame_time_ns: parse_decimal_seconds(&epoch)
                    .expect("frame.time_epoch is decimal seconds"),
                malformed: layers.get("_ws.malformed").is_some(),
                ntp: layers["ntp"].clone(),
            },
        );
    }
    packets
}

/// Finds a field anywhere in a tshark JSON layer (fields nest in `*_tree` objects).
fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key)
        .or_else(|| obj.values().find_map(|child| find(child, key)))
}

fn str_field(layer: &Value, name: &str) -> Result<String, String> {
    match find(layer, name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{name} is not a single string: {other}")),
        None => Err(format!("{name} not present")),
    }
}

fn int_field(layer: &Value, name: &str) -> Result<i64, String> {
    let s = str_field(layer, name)?;
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{name} = {s:?}: {e}"))
}

/// The packet bytes of a field, as lower-case hex (from `-x`: `name_raw[0]`).
fn raw_field(layer: &Value, name: &str) -> Result<String, String> {
    match find(layer, &format!("{name}_raw")) {
        Some(Value::Array(a)) => a
            .first()
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("{name}_raw has no hex")),
        _ => Err(format!("{name}_raw not present")),
    }
}

/// (type, length) of each extension field, in order.
fn extension_fields(ntp: &Value) -> Vec<Result<(i64, i64), String>> {
    let list = match ntp.get("ntp.ext") {
        None => return Vec::new(),
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
    };
    list.into_iter()
        .map(|ef| {
            Ok((
                int_field(ef, "ntp.ext.type")?,
                int_field(ef, "ntp.ext.length")?,
            ))
        })
        .collect()
}

/// tshark shows the ppoll/precision octets unsigned in 4.0.
fn as_i8(v: i64) -> i64 {
    if v > 127 {
        v - 256
    } else {
        v
    }
}

fn parse_hex_u64(h: &str) -> Result<u64, String> {
    u64::from_str_radix(h, 16).map_err(|e| format!("{h:?}: {e}"))
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

// ---------------------------------------------------------------- time parsing

/// "1795470630.577304516" -> ns since the Unix epoch.
fn parse_decimal_seconds(s: &str) -> Option<i128> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    Some(
        i128::from(secs.parse::<i64>().ok()?) * 1_000_000_000
            + i128::from(parse_fraction_ns(frac)?),
    )
}

/// Up to 9 fractional digits as nanoseconds.
fn parse_fraction_ns(frac: &str) -> Option<u32> {
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    format!("{frac:0<9}").parse().ok()
}

/// tshark's absolute time, "Nov 23, 2026 21:53:34.415262046 UTC" (also accepts
/// ISO 8601 "2026-11-23T21:53:34.415262046Z" as newer versions print) -> ns
/// since the Unix epoch.
fn parse_tshark_time(s: &str) -> Option<i128> {
    if s.contains('T') && s.ends_with('Z') {
        return parse_iso(s, false);
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, year, time, "UTC"] = parts[..] else {
        return None;
    };
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let day: u32 = day.strip_suffix(',')?.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    instant(year, month, day, time)
}

/// ntplab's RFC 3339 form: exactly 9 fractional digits and "Z".
fn parse_rfc3339(s: &str) -> Option<i128> {
    parse_iso(s, true)
}

fn parse_iso(s: &str, strict: bool) -> Option<i128> {
    let body = s.strip_suffix('Z')?;
    let (date, time) = body.split_once('T')?;
    if strict && (time.len() != "HH:MM:SS.nnnnnnnnn".len() || date.len() != "YYYY-MM-DD".len()) {
        return None;
    }
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    instant(year, month, day, time)
}

/// Date and "HH:MM:SS[.fraction]" -> ns since the Unix epoch.
fn instant(year: i64, month: u32, day: u32, time: &str) -> Option<i128> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut f = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (f.next()??, f.next()??, f.next()??);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(parse_fraction_ns(frac)?))
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------- ntplab side

/// `ntplab decode --pcap FILE --format json`, keyed by frame number.
fn our_packets(file: &Path) -> Result<BTreeMap<u64, Value>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["decode", "--pcap"])
        .arg(file)
        .args(["--format", "json"])
        .output()
        .map_err(|e| format!("cannot run ntplab: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ntplab decode failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut packets = BTreeMap::new();
    for (i, line) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("output line {}: not JSON ({e}): {line}", i + 1))?;
        let frame = v["frame"]
            .as_u64()
            .ok_or_else(|| format!("output line {}: no integer \"frame\": {line}", i + 1))?;
        if packets.insert(frame, v).is_some() {
            return Err(format!("frame {frame} appears twice in ntplab's output"));
        }
    }
    Ok(packets)
}

// ---------------------------------------------------------------- self-tests

#[test]
fn time_parsers_agree() {
    let a = parse_tshark_time("Nov 23, 2026 21:53:34.415262046 UTC").unwrap();
    let b = parse_rfc3339("2026-11-23T21:53:34.415262046Z").unwrap();
    assert_eq!(a, b);
    assert_eq!(a, parse_decimal_seconds("1795470814.415262046").unwrap());
    // Space-padded day, before 1970, after 2036.
    assert_eq!(
        parse_tshark_time("Aug  1, 1969 00:00:00.000000000 UTC").unwrap(),
        parse_rfc3339("1969-08-01T00:00:00.000000000Z").unwrap()
    );
    assert!(parse_tshark_time("Aug  1, 1969 00:00:00.000000000 UTC").unwrap() < 0);
    assert_eq!(
        parse_tshark_time("Feb  7, 2036 06:28:16.000000000 UTC").unwrap(),
        2_085_978_496 * 1_000_000_000
    );
    assert_eq!(parse_tshark_time("NULL"), None);
    // ntplab's contract: exactly 9 digits and Z.
    assert_eq!(parse_rfc3339("2026-11-23T21:53:34.415Z"), None);
    assert_eq!(parse_rfc3339("2026-11-23T21:53:34.415262046+00:00"), None);
    assert_eq!(as_i8(230), -26);
    assert_eq!(as_i8(-26), -26);
}

#[test]
fn a_single_wrong_field_is_reported_with_file_frame_and_field() {
    // A tshark-shaped packet and an ntplab object that agree, then one change.
    let ntp: Value = serde_json::json!({
        "ntp.flags_tree": {"ntp.flags.li": "0", "ntp.flags.vn": "4", "ntp.flags.mode": "4"},
        "ntp.stratum": "2", "ntp.ppoll": "6", "ntp.precision": "230",
        "ntp.rootdelay": "1", "ntp.rootdelay_raw": ["00000001", 46, 4, 0, 7],
        "ntp.rootdispersion": "3", "ntp.rootdispersion_raw": ["00000003", 50, 4, 0, 7],
        "ntp.refid": "7f:00:00:01", "ntp.refid_raw": ["7f000001", 54, 4, 0, 30],
        "ntp.reftime": "NULL", "ntp.reftime_raw": ["0000000000000000", 58, 8, 0, 24],
        "ntp.org": "NULL", "ntp.org_raw": ["0000000000000000", 66, 8, 0, 24],
        "ntp.rec": "NULL", "ntp.rec_raw": ["0000000000000000", 74, 8, 0, 24],
        "ntp.xmt": "Nov 23, 2026 21:53:34.415262046 UTC", "ntp.xmt_raw": ["eeaf345e6a4e9d0b", 82, 8, 0, 24],
        "ntp.ext": {"ntp.ext.type": "0x0104", "ntp.ext.length": "36"}
    });
    let t = TsharkPacket {
        src: "127.0.0.1:123".parse().unwrap(),
        dst: "[::1]:40000".parse().unwrap(),
        frame_time_ns: parse_decimal_seconds("1795470814.415262046").unwrap(),
        malformed: false,
        ntp,
    };
    let zero = serde_json::json!({"raw_hex": "0000000000000000", "utc": null});
    let good = serde_json::json!({
        "frame": 7, "src": "127.0.0.1:123", "dst": "[::1]:40000",
        "version": 4, "mode": 4, "leap": 0, "stratum": 2, "poll": 6, "precision": -26,
        "root_delay": 1.0 / 65536.0, "root_dispersion": 3.0 / 65536.0,
        "reference_id": "127.0.0.1", "reference_id_hex": "7f000001",
        "reference_timestamp": zero, "origin_timestamp": zero, "receive_timestamp": zero,
        "transmit_timestamp": {"raw_hex": "eeaf345e6a4e9d0b", "utc": "2026-11-23T21:53:34.415262046Z"},
        "extension_fields": [{"type": 0x0104, "name": "Unique Identifier", "length": 36}],
        "problems": []
    });
    let run = |ours: &Value| {
        let mut failures = Vec::new();
        compare_packet(
            &mut Check {
                file: "x.pcapng",
                frame: 7,
                failures: &mut failures,
            },
            ours,
            &t,
        );
        failures
    };
    assert_eq!(run(&good), Vec::<String>::new());
    let mutations: [(&str, &str, Value); 8] = [
        ("precision", "/precision", serde_json::json!(230)),
        ("root_delay", "/root_delay", serde_json::json!(0.0001)),
        (
            "reference_id",
            "/reference_id",
            serde_json::json!("127.0.0.2"),
        ),
        (
            "transmit_timestamp.raw_hex",
            "/transmit_timestamp/raw_hex",
            serde_json::json!("eeaf345e6a4e9d0c"),
        ),
        (
            "transmit_timestamp.utc",
            "/transmit_timestamp/utc",
            serde_json::json!("2026-11-23T21:53:34.415272046Z"),
        ),
        (
            "extension_fields[0].length",
            "/extension_fields/0/length",
            serde_json::json!(40),
        ),
        ("dst", "/dst", serde_json::json!("[::1]:40001")),
        ("kiss_code", "/kiss_code", serde_json::json!("RATE")),
    ];
    for (field, pointer, value) in mutations {
        let mut bad = good.clone();
        match bad.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => {
                bad.as_object_mut()
                    .unwrap()
                    .insert(pointer.trim_start_matches('/').into(), value);
            }
        }
        let failures = run(&bad);
        assert_eq!(failures.len(), 1, "{field}: {failures:?}");
        assert!(
            failures[0].starts_with(&format!("x.pcapng frame 7: {field}: ")),
            "{failures:?}"
        );
    }
    // An era-shifted time is accepted only if it is the era nearest the frame time.
    let mut shifted = good.clone();
    shifted["transmit_timestamp"]["utc"] = serde_json::json!("2162-12-31T04:21:50.415262046Z");
    assert_eq!(run(&shifted).len(), 1);
}
