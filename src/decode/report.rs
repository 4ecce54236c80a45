//! The decoded form of one NTP packet, as JSON (a stable contract) and as text.

use ntplab_proto::time::{NtpTime, NtpTimestamp};
use ntplab_proto::wire::control::{self, Status};
use ntplab_proto::wire::{self, v4, v5, Header};
use serde::Serialize;
use std::fmt::Write as _;

/// How wire timestamps get their era.
#[derive(Clone, Copy, Debug)]
pub enum Pivot {
    /// RFC 4330 §3: most significant bit set means 1968–2036, clear 2036–2104.
    Rfc4330,
    /// Within 68 years of this instant (a capture's frame time, or `--pivot`).
    Near(NtpTime),
}

impl Pivot {
    fn resolve(self, ts: NtpTimestamp) -> NtpTime {
        match self {
            Pivot::Rfc4330 => ts.resolve_rfc4330(),
            Pivot::Near(p) => ts.resolve(p),
        }
    }
}

/// A timestamp as the JSON contract shows it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TimestampJson {
    /// The 64 bits as 16 lower-case hex digits.
    pub raw_hex: String,
    /// RFC 3339 with nanoseconds, era resolved; null for the reserved zero value.
    pub utc: Option<String>,
}

impl TimestampJson {
    fn new(ts: NtpTimestamp, pivot: Pivot) -> Self {
        TimestampJson {
            raw_hex: format!("{:016x}", ts.to_bits()),
            utc: (!ts.is_zero()).then(|| pivot.resolve(ts).rfc3339().to_string()),
        }
    }
}

/// One extension field as the JSON contract shows it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ExtensionFieldJson {
    /// Field type code point.
    #[serde(rename = "type")]
    pub field_type: u16,
    /// Registered name, or "Unknown".
    pub name: String,
    /// Length field as sent (octets including the 4-octet header).
    pub length: u16,
}

/// Where in a capture a message was found.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Origin {
    /// Frame number in the capture (captures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u64>,
    /// Source "IP:PORT" (captures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Destination "IP:PORT" (captures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
}

/// One decoded packet: the JSON contract of `ntplab decode`.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct PacketJson {
    /// Where the packet was found (captures only).
    #[serde(flatten)]
    pub origin: Origin,
    /// Version number.
    pub version: u8,
    /// Mode number.
    pub mode: u8,
    /// Leap indicator.
    pub leap: u8,
    /// Stratum octet.
    pub stratum: u8,
    /// Poll exponent (log2 s).
    pub poll: i8,
    /// Precision exponent (log2 s).
    pub precision: i8,
    /// Root delay in seconds.
    pub root_delay: f64,
    /// Root dispersion in seconds.
    pub root_dispersion: f64,
    /// Reference ID: ASCII code at stratum 0 and 1, else a dotted quad (v1–v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// Reference ID as 8 hex digits (v1–v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_id_hex: Option<String>,
    /// Leap-smear correction in seconds when the reference ID is 254.b1.b2.b3 above stratum 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leap_smear_correction: Option<f64>,
    /// Reference timestamp (v1–v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_timestamp: Option<TimestampJson>,
    /// Origin timestamp (v1–v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_timestamp: Option<TimestampJson>,
    /// Receive timestamp.
    pub receive_timestamp: Option<TimestampJson>,
    /// Transmit timestamp.
    pub transmit_timestamp: Option<TimestampJson>,
    /// Kiss code, present when the stratum is 0 (v1–v4); null when the reference ID is all zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiss_code: Option<Option<String>>,
    /// NTPv5 header fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v5: Option<V5Json>,
    /// Extension fields in order.
    pub extension_fields: Vec<ExtensionFieldJson>,
    /// Legacy MAC after the extension fields (v1–v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacJson>,
    /// Conformance problems found, each naming its rule.
    pub problems: Vec<String>,
    /// Set when the capture holds only part of the frame (snap length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<TruncatedJson>,
}

/// How much of a frame cut short by the capture's snap length is there.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TruncatedJson {
    /// Octets of the frame in the capture.
    pub captured_frame: u32,
    /// Octets of the frame on the wire.
    pub original_frame: u32,
    /// Octets of the NTP message in the capture (what was decoded).
    pub ntp_captured: usize,
    /// Octets of the NTP message on the wire, as the UDP header gives them.
    pub ntp_length: usize,
}

/// An NTP control (mode 6) or private (mode 7) message: the JSON contract of
/// `ntplab decode` for ntpq and ntpdc traffic.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct ControlMessageJson {
    /// Where the packet was found (captures only).
    #[serde(flatten)]
    pub origin: Origin,
    /// Version number.
    pub version: u8,
    /// Mode number: 6 or 7.
    pub mode: u8,
    /// Leap indicator (mode 6 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leap: Option<u8>,
    /// Mode 6 fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlJson>,
    /// Mode 7 fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<PrivateJson>,
    /// Problems found, each naming its rule.
    pub problems: Vec<String>,
    /// Set when the capture holds only part of the frame (snap length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<TruncatedJson>,
}

/// The fields of a mode 6 message (RFC 9327).
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct ControlJson {
    /// R bit: a response.
    pub response: bool,
    /// E bit: an error response.
    pub error: bool,
    /// M bit: more fragments follow.
    pub more: bool,
    /// Operation code.
    pub opcode: u8,
    /// Operation name, as Wireshark shows it.
    pub opcode_name: String,
    /// Sequence number.
    pub sequence: u16,
    /// Status word.
    pub status: u16,
    /// The status word's fields, as its kind of response reads it: `kind`
    /// (`system`, `peer`, `clock`, `error`) and the fields of that kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_fields: Option<serde_json::Value>,
    /// Association ID.
    pub association_id: u16,
    /// Offset of this fragment's data.
    pub offset: u16,
    /// Count of data octets, as sent.
    pub count: u16,
    /// The data as text, when it is text (variable lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The data as hex digits.
    pub data_hex: String,
    /// Padding and authenticator after the data, as hex digits.
    pub trailer_hex: String,
}

/// The header fields of a mode 7 message (ntpd's private format).
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct PrivateJson {
    /// R bit: a response.
    pub response: bool,
    /// M bit: more fragments follow.
    pub more: bool,
    /// A bit: authenticated.
    pub authenticated: bool,
    /// Sequence number.
    pub sequence: u8,
    /// Implementation number.
    pub implementation: u8,
    /// Implementation name.
    pub implementation_name: String,
    /// Request code.
    pub request_code: u8,
    /// Request name.
    pub request_name: String,
    /// Error code.
    pub error_code: u8,
    /// Number of data items.
    pub item_count: u16,
    /// Size of one data item.
    pub item_size: u16,
    /// Octets after the header (items and authenticator).
    pub payload_length: usize,
}

/// One decoded NTP message: a time packet (modes 0-5, and every NTPv5 mode)
/// or a control/private message (modes 6 and 7 of NTPv1-v4).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Decoded {
    /// A time packet.
    Time(Box<PacketJson>),
    /// A mode 6 or 7 message.
    Control(Box<ControlMessageJson>),
}

impl Decoded {
    /// Sets where the message was found in a capture.
    pub fn set_origin(&mut self, frame: u64, src: String, dst: String, truncated: Option<TruncatedJson>) {
        let (o, t) = match self {
            Decoded::Time(p) => (&mut p.origin, &mut p.truncated),
            Decoded::Control(c) => (&mut c.origin, &mut c.truncated),
        };
        (*o, *t) = (Origin { frame: Some(frame), src: Some(src), dst: Some(dst) }, truncated);
    }

    /// Renders the message as an indented, Wireshark-like text block.
    pub fn to_text(&self) -> String {
        match self {
            Decoded::Time(p) => to_text(p),
            Decoded::Control(c) => control_text(c),
        }
    }
}

/// Decodes one UDP payload: a time packet, or a mode 6/7 message. `cut`
/// says the capture holds only the start of the payload (snap length): then
/// only the problems of the header are listed, since what looks wrong with
/// the rest (a length running past the end) is the capture's doing.
pub fn decode_any(bytes: &[u8], pivot: Pivot, cut: bool) -> Result<Decoded, wire::Error> {
    let version = v4::version_of(bytes);
    let mode = bytes.first().map(|b| b & 7);
    match (version, mode) {
        (Some(v), Some(6)) if v != v5::VERSION => decode_control(bytes, cut).map(|c| Decoded::Control(Box::new(c))),
        (Some(v), Some(7)) if v != v5::VERSION => decode_private(bytes, cut).map(|c| Decoded::Control(Box::new(c))),
        _ => {
            let mut p = decode(bytes, pivot)?;
            if cut {
                let packet = wire::parse_packet(bytes)?;
                let header = match &packet.header {
                    Header::V4(h) => h.problems(),
                    Header::V5(h) => h.problems_for(packet.v5_draft().unwrap_or(v5::Draft::D07)),
                };
                p.problems = header.iter().map(ToString::to_string).collect();
            }
            Ok(Decoded::Time(Box::new(p)))
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_control(bytes: &[u8], cut: bool) -> Result<ControlMessageJson, wire::Error> {
    let r = control::Repr::parse(&control::Packet::new_checked(bytes)?)?;
    // Cut by the capture: the count is not to blame for the missing data.
    let judged = control::Repr { count: if cut { r.count.min(r.data.len() as u16) } else { r.count }, ..r.clone() };
    use serde_json::json;
    let status_fields = match r.status() {
        Status::System { leap, clock_source, event_count, event_code } => Some(
            json!({"kind": "system", "leap": leap.to_bits(), "clock_source": clock_source, "event_count": event_count, "event_code": event_code}),
        ),
        Status::Peer { flags, selection, event_count, event_code } => Some(
            json!({"kind": "peer", "flags": flags, "selection": selection, "event_count": event_count, "event_code": event_code}),
        ),
        Status::Clock { status, event_code } => Some(json!({"kind": "clock", "status": status, "event_code": event_code})),
        Status::Error { code } => Some(json!({"kind": "error", "code": code, "name": Status::error_name(code)})),
        Status::Raw(_) => None,
    };
    Ok(ControlMessageJson {
        version: r.version,
        mode: 6,
        leap: Some(r.leap.to_bits()),
        control: Some(ControlJson {
            response: r.response,
            error: r.error,
            more: r.more,
            opcode: r.opcode.to_bits(),
            opcode_name: r.opcode.name().to_string(),
            sequence: r.sequence,
            status: r.status,
            status_fields,
            association_id: r.association_id,
            offset: r.offset,
            count: r.count,
            data: r.data_is_text().then(|| String::from_utf8_lossy(&r.data).into_owned()),
            data_hex: hex(&r.data),
            trailer_hex: hex(&r.trailer),
        }),
        problems: judged.problems().iter().map(ToString::to_string).collect(),
        ..ControlMessageJson::default()
    })
}

fn decode_private(bytes: &[u8], cut: bool) -> Result<ControlMessageJson, wire::Error> {
    let r = control::PrivateRepr::parse(&control::PrivatePacket::new_checked(bytes)?)?;
    let judged = control::PrivateRepr { item_count: if cut { 0 } else { r.item_count }, ..r.clone() };
    Ok(ControlMessageJson {
        version: r.version,
        mode: 7,
        private: Some(PrivateJson {
            response: r.response,
            more: r.more,
            authenticated: r.authenticated,
            sequence: r.sequence,
            implementation: r.implementation,
            implementation_name: control::implementation_name(r.implementation).to_string(),
            request_code: r.request_code,
            request_name: control::request_code_name(r.request_code).to_string(),
            error_code: r.error_code,
            item_count: r.item_count,
            item_size: r.item_size,
            payload_length: r.payload.len(),
        }),
        problems: judged.problems().iter().map(ToString::to_string).collect(),
        ..ControlMessageJson::default()
    })
}

fn origin_text(s: &mut String, origin: &Origin, t: &Option<TruncatedJson>) {
    if let (Some(frame), Some(src), Some(dst)) = (origin.frame, &origin.src, &origin.dst) {
        let _ = writeln!(s, "Frame {frame}: {src} -> {dst}");
    }
    if let Some(t) = t {
        let _ = writeln!(
            s,
            "[Packet size limited during capture: {} of {} frame octets; {} of {} NTP octets decoded]",
            t.captured_frame, t.original_frame, t.ntp_captured, t.ntp_length
        );
    }
}

fn control_text(c: &ControlMessageJson) -> String {
    let mut s = String::new();
    origin_text(&mut s, &c.origin, &c.truncated);
    if let Some(m) = &c.control {
        let kind = if m.response { "response" } else { "request" };
        let _ = writeln!(s, "Network Time Protocol (NTP Version {}, control, {kind})", c.version);
        if let Some(leap) = c.leap {
            let _ = writeln!(s, "    Leap Indicator: {} ({leap})", LEAP_NAMES[usize::from(leap & 3)]);
        }
        let _ = writeln!(s, "    Version: {}", c.version);
        let _ = writeln!(s, "    Mode: control (6)");
        let _ = writeln!(s, "    Response: {}, Error: {}, More: {}", m.response, m.error, m.more);
        let _ = writeln!(s, "    Opcode: {} ({})", m.opcode_name, m.opcode);
        let _ = writeln!(s, "    Sequence: {}", m.sequence);
        let status = match &m.status_fields {
            Some(fields) => {
                let obj = fields.as_object().expect("status fields are an object");
                let list: Vec<String> = obj.iter().filter(|(k, _)| *k != "kind").map(|(k, v)| format!("{k} {v}")).collect();
                format!(" ({}: {})", obj["kind"].as_str().unwrap_or("?"), list.join(", "))
            }
            None => String::new(),
        };
        let _ = writeln!(s, "    Status: 0x{:04x}{status}", m.status);
        let _ = writeln!(s, "    Association ID: {}", m.association_id);
        let _ = writeln!(s, "    Offset: {}", m.offset);
        let _ = writeln!(s, "    Count: {}", m.count);
        match &m.data {
            Some(text) if !text.is_empty() => {
                let _ = writeln!(s, "    Data: {}", text.escape_debug());
            }
            _ if !m.data_hex.is_empty() => {
                let _ = writeln!(s, "    Data: 0x{}", m.data_hex);
            }
            _ => {}
        }
        if !m.trailer_hex.is_empty() {
            let _ = writeln!(s, "    Padding/Authenticator: 0x{}", m.trailer_hex);
        }
    }
    if let Some(p) = &c.private {
        let kind = if p.response { "response" } else { "request" };
        let _ = writeln!(s, "Network Time Protocol (NTP Version {}, private, {kind})", c.version);
        let _ = writeln!(s, "    Response: {}, More: {}", p.response, p.more);
        let _ = writeln!(s, "    Version: {}", c.version);
        let _ = writeln!(s, "    Mode: private (7)");
        let _ = writeln!(s, "    Authenticated: {}, Sequence: {}", p.authenticated, p.sequence);
        let _ = writeln!(s, "    Implementation: {} ({})", p.implementation_name, p.implementation);
        let _ = writeln!(s, "    Request Code: {} ({})", p.request_name, p.request_code);
        let _ = writeln!(s, "    Error: {}", p.error_code);
        let _ = writeln!(s, "    Items: {} of {} octets ({} octets follow the header)", p.item_count, p.item_size, p.payload_length);
    }
    for problem in &c.problems {
        let _ = writeln!(s, "    Problem: {problem}");
    }
    s
}

/// The NTPv5 fields that have no NTPv4 counterpart.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct V5Json {
    /// Timescale code (0 UTC, 1 TAI, 2 UT1, 3 leap-smeared UTC).
    pub timescale: u8,
    /// Timescale name.
    pub timescale_name: String,
    /// Era of the receive timestamp.
    pub era: u8,
    /// Flags word.
    pub flags: u16,
    /// Names of the set flags.
    pub flag_names: Vec<String>,
    /// Server cookie, 16 hex digits.
    pub server_cookie: String,
    /// Client cookie, 16 hex digits.
    pub client_cookie: String,
    /// The draft named by the Draft Identification field, when the packet has
    /// one (the name as sent, lossy ASCII); the packet is judged by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
}

/// A legacy MAC (or crypto-NAK).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MacJson {
    /// Key identifier.
    pub key_id: u32,
    /// Digest length in octets (0 for a crypto-NAK).
    pub digest_length: usize,
}

/// Decodes one UDP payload. An error means nothing could be decoded.
pub fn decode(bytes: &[u8], pivot: Pivot) -> Result<PacketJson, wire::Error> {
    let packet = wire::parse_packet(bytes)?;
    let mut out = match &packet.header {
        Header::V4(h) => v4_json(h, pivot),
        Header::V5(h) => v5_json(h, pivot),
    };
    let area = &packet.extensions;
    if let Some(v5) = out.v5.as_mut() {
        v5.draft = match v5::draft_of(&area.fields) {
            v5::DraftId::Absent => None,
            v5::DraftId::Known { draft, .. } => Some(draft.name().to_string()),
            v5::DraftId::Unknown(name) => Some(String::from_utf8_lossy(&name).into_owned()),
        };
    }
    out.extension_fields = area
        .fields
        .iter()
        .map(|f| ExtensionFieldJson { field_type: f.field_type.to_u16(), name: f.field_type.name().to_string(), length: f.length() })
        .collect();
    out.mac = area.mac.as_ref().map(|m| MacJson { key_id: m.key_id, digest_length: m.digest.len() });
    out.problems = packet.problems().iter().map(ToString::to_string).collect();
    Ok(out)
}

fn v4_json(repr: &v4::Repr, pivot: Pivot) -> PacketJson {
    let smear = repr.smear_correction();
    PacketJson {
        version: repr.version,
        mode: repr.mode.to_bits(),
        leap: repr.leap.to_bits(),
        stratum: repr.stratum,
        poll: repr.poll,
        precision: repr.precision,
        root_delay: repr.root_delay.to_seconds_f64(),
        root_dispersion: repr.root_dispersion.to_seconds_f64(),
        reference_id: Some(reference_id_text(repr)),
        reference_id_hex: Some(format!("{:08x}", repr.reference_id.to_u32())),
        leap_smear_correction: smear.map(|c| c.to_seconds_f64()),
        reference_timestamp: Some(TimestampJson::new(repr.reference_timestamp, pivot)),
        origin_timestamp: Some(TimestampJson::new(repr.origin_timestamp, pivot)),
        receive_timestamp: Some(TimestampJson::new(repr.receive_timestamp, pivot)),
        transmit_timestamp: Some(TimestampJson::new(repr.transmit_timestamp, pivot)),
        kiss_code: (repr.stratum == 0)
            .then(|| (repr.reference_id.to_u32() != 0).then(|| repr.reference_id.kiss_code().name())),
        ..PacketJson::default()
    }
}

fn v5_json(repr: &v5::Repr, pivot: Pivot) -> PacketJson {
    // The Era field names the receive timestamp's era (draft §6); the transmit
    // timestamp is resolved near the receive timestamp.
    let rx = repr.receive_timestamp;
    let rx_full = (!rx.is_zero()).then(|| NtpTime::from_era_parts(i32::from(repr.era), rx.seconds(), rx.fraction()));
    let tx_pivot = rx_full.map_or(pivot, Pivot::Near);
    PacketJson {
        version: repr.version,
        mode: repr.mode.to_bits(),
        leap: repr.leap.to_bits(),
        stratum: repr.stratum,
        poll: repr.poll,
        precision: repr.precision,
        root_delay: repr.root_delay.to_seconds_f64(),
        root_dispersion: repr.root_dispersion.to_seconds_f64(),
        receive_timestamp: Some(TimestampJson {
            raw_hex: format!("{:016x}", rx.to_bits()),
            utc: rx_full.map(|t| t.rfc3339().to_string()),
        }),
        transmit_timestamp: Some(TimestampJson::new(repr.transmit_timestamp, tx_pivot)),
        v5: Some(V5Json {
            timescale: repr.timescale.to_u8(),
            timescale_name: repr.timescale.name().to_string(),
            era: repr.era,
            flags: repr.flags.0,
            flag_names: repr.flags.names().into_iter().map(str::to_string).collect(),
            server_cookie: format!("{:016x}", repr.server_cookie),
            client_cookie: format!("{:016x}", repr.client_cookie),
            draft: None,
        }),
        ..PacketJson::default()
    }
}

fn reference_id_text(repr: &v4::Repr) -> String {
    let id = repr.reference_id;
    if repr.stratum <= 1 {
        match id.ascii() {
            Some(code) => code.to_string(),
            None => id.0.iter().take_while(|&&b| b != 0).map(|&b| escape_byte(b)).collect(),
        }
    } else {
        id.to_ipv4().to_string()
    }
}

fn escape_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        char::from(b).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

const LEAP_NAMES: [&str; 4] = ["no warning", "last minute of the day has 61 seconds", "last minute of the day has 59 seconds", "unknown (clock unsynchronized)"];

/// Renders a decoded packet as an indented, Wireshark-like text block.
pub fn to_text(p: &PacketJson) -> String {
    let mut s = String::new();
    origin_text(&mut s, &p.origin, &p.truncated);
    let mode = v4::Mode::from_bits(p.mode);
    let _ = writeln!(s, "Network Time Protocol (NTP Version {}, {})", p.version, mode.name());
    let _ = writeln!(s, "    Leap Indicator: {} ({})", LEAP_NAMES[usize::from(p.leap & 3)], p.leap);
    let _ = writeln!(s, "    Version: {}", p.version);
    let _ = writeln!(s, "    Mode: {} ({})", mode.name(), p.mode);
    let stratum_note = match p.stratum {
        0 => "unspecified or invalid",
        1 => "primary reference",
        2..=15 => "secondary reference",
        16 => "unsynchronized",
        _ => "reserved",
    };
    let _ = writeln!(s, "    Stratum: {} ({stratum_note})", p.stratum);
    let _ = writeln!(s, "    Poll: {} ({} s)", p.poll, pow2(p.poll));
    let _ = writeln!(s, "    Precision: {} ({:.9} s)", p.precision, pow2(p.precision));
    let _ = writeln!(s, "    Root Delay: {:.9} s", p.root_delay);
    let _ = writeln!(s, "    Root Dispersion: {:.9} s", p.root_dispersion);
    if let (Some(id), Some(hex)) = (&p.reference_id, &p.reference_id_hex) {
        let id = if id.is_empty() { "(none)" } else { id.as_str() };
        let _ = writeln!(s, "    Reference ID: {id} (0x{hex})");
    }
    if let Some(Some(k)) = &p.kiss_code {
        let _ = writeln!(s, "    Kiss Code: {k}");
    }
    if let Some(c) = p.leap_smear_correction {
        let _ = writeln!(s, "    Leap Smear Correction: {c:+.9} s");
    }
    if let Some(v5) = &p.v5 {
        let _ = writeln!(s, "    Timescale: {} ({})", v5.timescale_name, v5.timescale);
        let _ = writeln!(s, "    Era: {}", v5.era);
        let _ = writeln!(s, "    Flags: 0x{:04x} [{}]", v5.flags, v5.flag_names.join(", "));
        let _ = writeln!(s, "    Server Cookie: {}", v5.server_cookie);
        let _ = writeln!(s, "    Client Cookie: {}", v5.client_cookie);
        if let Some(d) = &v5.draft {
            let _ = writeln!(s, "    Draft: {d}");
        }
    }
    for (name, ts) in [
        ("Reference Timestamp", &p.reference_timestamp),
        ("Origin Timestamp", &p.origin_timestamp),
        ("Receive Timestamp", &p.receive_timestamp),
        ("Transmit Timestamp", &p.transmit_timestamp),
    ] {
        if let Some(ts) = ts {
            let _ = writeln!(s, "    {name}: {} (0x{})", ts.utc.as_deref().unwrap_or("(zero: not set)"), ts.raw_hex);
        }
    }
    for ef in &p.extension_fields {
        let _ = writeln!(s, "    Extension Field: {} (type 0x{:04x}), length {}", ef.name, ef.field_type, ef.length);
    }
    if let Some(mac) = &p.mac {
        let _ = writeln!(s, "    MAC: key ID {}, digest {} octets", mac.key_id, mac.digest_length);
    }
    for problem in &p.problems {
        let _ = writeln!(s, "    Problem: {problem}");
    }
    s
}

fn pow2(exp: i8) -> f64 {
    2f64.powi(i32::from(exp))
}
