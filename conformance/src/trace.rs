//! Reading a run's trace back: `packets.jsonl`, `events.jsonl` and
//! `samples.csv` as written by `ntplab_sim::trace`, plus what the checks need
//! to know about the scenario's hosts ([`Context`]).
//!
//! Checks never read files themselves: they take a [`Trace`], which tests
//! build from hand-made fragments with [`Trace::from_strs`].

use ntplab_proto::time::NtpTime;
use ntplab_proto::wire::{parse_packet, Header};
use ntplab_proto::wire::v4;
use ntplab_sim::scenario::{Behavior, Role, Scenario};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// One datagram of `packets.jsonl`, its payload decoded where possible.
#[derive(Debug, Clone)]
pub struct PacketRec {
    /// 1-based line number in `packets.jsonl`.
    pub line: usize,
    /// Frame number in `packets.pcap` (None: lost).
    pub frame: Option<u64>,
    /// True send time, seconds since the start.
    pub sent_t_s: f64,
    /// True arrival time, seconds since the start (None: lost).
    pub received_t_s: Option<f64>,
    /// True send time.
    pub sent: NtpTime,
    /// True arrival time.
    pub received: Option<NtpTime>,
    /// Sender's clock reading when sending.
    pub sender_local: NtpTime,
    /// Receiver's clock reading at arrival.
    pub receiver_local: Option<NtpTime>,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub bytes: Vec<u8>,
    /// The NTPv1–v4 header, when the payload has one (at least 48 octets, not v5).
    pub header: Option<v4::Repr>,
    /// Whether the octets after the header failed to decode (e.g. an extension
    /// field whose length runs past the end).
    pub ext_error: bool,
    /// What an on-path attacker did to make it (`"modify"`, `"forge"`, ...);
    /// None: its sender sent it as it is.
    pub attack: Option<String>,
}

impl PacketRec {
    /// Where to find it: `packets.jsonl:LINE` and the pcap frame when delivered.
    pub fn cite(&self) -> String {
        match self.frame {
            Some(f) => format!("frame {f} (packets.jsonl:{})", self.line),
            None => format!("lost datagram (packets.jsonl:{})", self.line),
        }
    }

    /// Whether it is an NTPv5 message (version bits 5).
    pub fn is_v5(&self) -> bool {
        self.bytes.first().is_some_and(|b| (b >> 3) & 7 == 5)
    }

    /// Whether it was delivered.
    pub fn delivered(&self) -> bool {
        self.received.is_some()
    }

    /// Mode, when it has a v1–v4 header.
    pub fn mode(&self) -> Option<v4::Mode> {
        self.header.map(|h| h.mode)
    }
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone)]
pub struct EventRec {
    /// 1-based line number in `events.jsonl`.
    pub line: usize,
    /// True time, seconds since the start.
    pub t_s: f64,
    /// Host name (None: a scenario event).
    pub host: Option<String>,
    /// Kind, e.g. `selection`, `step`, `source_reply`.
    pub kind: String,
    /// The details object.
    pub details: serde_json::Value,
}

impl EventRec {
    /// `details.source` parsed as an address, for `source_reply` and `source_dropped`.
    pub fn source(&self) -> Option<SocketAddr> {
        self.details.get("source")?.as_str()?.parse().ok()
    }

    /// `details.event` (the daemon's source event, e.g. `Rejected(Bogus)`).
    pub fn source_event(&self) -> &str {
        self.details.get("event").and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// One row of `samples.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRec {
    /// True time, seconds since the start.
    pub t_s: f64,
    /// Host name.
    pub host: String,
    /// Local − true, seconds.
    pub offset_s: f64,
    /// Frequency error, s/s.
    pub frequency_error: f64,
    /// Whether the daemon considered itself synchronized.
    pub synced: bool,
    /// The daemon's stratum.
    pub stratum: u8,
    /// The daemon's poll exponent.
    pub poll_log2: i8,
}

/// What a host is, as far as the checks care.
#[derive(Debug, Clone, PartialEq)]
pub enum HostKind {
    /// Runs the daemon under test.
    Daemon {
        /// Whether it serves (listens).
        serves: bool,
        /// Whether it has upstream sources.
        has_sources: bool,
        /// Whether interleaved mode is enabled.
        interleaved: bool,
        /// Whether it has a local reference (`local_stratum`): it serves its
        /// own clock, synchronized to that reference, from the start.
        local_reference: bool,
    },
    /// A scripted peer: `Falseticker` carries its offset, `Kiss` its code.
    Scripted {
        /// The behaviour name (e.g. `falseticker`, `kiss`, `replay`).
        behavior: String,
        /// Offset of a falseticker, seconds.
        falseticker_offset_s: Option<f64>,
    },
}

/// A host of the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    /// Name.
    pub name: String,
    /// Address.
    pub address: IpAddr,
    /// Role.
    pub kind: HostKind,
    /// Standard deviation of its clock's reading noise, seconds.
    pub noise_s: f64,
}

/// The scenario facts the checks need besides the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// True time at the start.
    pub start: NtpTime,
    /// Run length, seconds.
    pub duration_s: f64,
    /// The hosts.
    pub hosts: Vec<HostInfo>,
}

impl Context {
    /// From a loaded scenario.
    pub fn from_scenario(s: &Scenario) -> Context {
        let hosts = s
            .hosts
            .iter()
            .map(|h| HostInfo {
                name: h.name.clone(),
                address: h.address,
                noise_s: h.clock.noise_s,
                kind: match &h.role {
                    Role::Ntp(n) => HostKind::Daemon {
                        serves: !n.daemon.listen.is_empty(),
                        has_sources: !n.sources.is_empty(),
                        interleaved: n.daemon.server.interleaved,
                        local_reference: n.daemon.local.is_some(),
                    },
                    Role::Scripted(p) => HostKind::Scripted {
                        behavior: match p.behavior {
                            Behavior::Falseticker { .. } => "falseticker",
                            Behavior::Kiss { .. } => "kiss",
                            Behavior::Replay => "replay",
                            Behavior::Malformed { .. } => "malformed",
                            Behavior::Silent => "silent",
                            Behavior::Insane => "insane",
                            Behavior::SecondReply => "second-reply",
                            Behavior::Unsolicited => "unsolicited",
                            Behavior::ZeroOrigin => "zero-origin",
                            Behavior::BogusKiss { .. } => "bogus-kiss",
                        }
                        .to_string(),
                        falseticker_offset_s: match p.behavior {
                            Behavior::Falseticker { offset_s } => Some(offset_s),
                            _ => None,
                        },
                    },
                },
            })
            .collect();
        Context { start: s.start, duration_s: s.duration.as_secs_f64(), hosts }
    }

    /// The host with this address.
    pub fn host_at(&self, a: IpAddr) -> Option<&HostInfo> {
        self.hosts.iter().find(|h| h.address == a)
    }

    /// The host with this name.
    pub fn host_named(&self, name: &str) -> Option<&HostInfo> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Whether the address belongs to a host running the daemon.
    pub fn is_daemon(&self, a: IpAddr) -> bool {
        matches!(self.host_at(a).map(|h| &h.kind), Some(HostKind::Daemon { .. }))
    }

    /// The host's name, or the address as text.
    pub fn name(&self, a: IpAddr) -> String {
        self.host_at(a).map_or_else(|| a.to_string(), |h| h.name.clone())
    }
}

/// A run's trace, parsed. Datagrams and events are held in memory (the
/// scenario loader bounds how many a run makes); sample rows, whose number
/// grows with the run's length and sample grid, are read again from their
/// file each time a check walks them ([`Trace::samples`]), so memory does not
/// grow with them.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Every datagram its sender sent, in file order.
    pub packets: Vec<PacketRec>,
    /// Every datagram an on-path attacker made or changed (`"attack"` set),
    /// in file order. Kept apart so that the checks of what servers send and
    /// of how clients treat their servers' replies see only real traffic;
    /// the attack checks read these.
    pub attacks: Vec<PacketRec>,
    /// Every event, in file order.
    pub events: Vec<EventRec>,
    /// Where the sample rows are.
    samples: SampleSource,
    /// Sample rows per host (every row was checked when the trace was read).
    pub sample_counts: BTreeMap<String, usize>,
}

/// Where [`Trace::samples`] reads the rows from.
#[derive(Debug, Clone)]
enum SampleSource {
    File(PathBuf),
    Text(String),
}

fn time_field(v: &serde_json::Value, key: &str, line: usize, file: &str) -> Result<Option<NtpTime>, String> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => NtpTime::parse_rfc3339(s)
            .map(Some)
            .map_err(|e| format!("{file}:{line}: `{key}` is not an RFC 3339 time: {e}")),
        Some(other) => Err(format!("{file}:{line}: `{key}` should be a time string, found {other}")),
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl Trace {
    fn push_packet(&mut self, p: PacketRec) {
        if p.attack.is_some() {
            self.attacks.push(p);
        } else {
            self.packets.push(p);
        }
    }

    /// Reads a trace directory: `packets.jsonl` and `events.jsonl` line by
    /// line into memory, and `samples.csv` once to check every row and count
    /// them (the rows stay in the file).
    pub fn load(dir: &Path) -> Result<Trace, String> {
        let open = |name: &str| {
            let p = dir.join(name);
            std::fs::File::open(&p).map(std::io::BufReader::new).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let mut t = Trace { packets: Vec::new(), attacks: Vec::new(), events: Vec::new(), samples: SampleSource::File(dir.join(ntplab_sim::trace::SAMPLES_FILE)), sample_counts: BTreeMap::new() };
        for (i, l) in open(ntplab_sim::trace::PACKETS_FILE)?.lines().enumerate() {
            let l = l.map_err(|e| format!("packets.jsonl:{}: {e}", i + 1))?;
            if let Some(p) = parse_packet_line(i + 1, &l)? {
                t.push_packet(p);
            }
        }
        for (i, l) in open(ntplab_sim::trace::EVENTS_FILE)?.lines().enumerate() {
            let l = l.map_err(|e| format!("events.jsonl:{}: {e}", i + 1))?;
            if let Some(e) = parse_event_line(i + 1, &l)? {
                t.events.push(e);
            }
        }
        for (i, l) in open(ntplab_sim::trace::SAMPLES_FILE)?.lines().enumerate() {
            let l = l.map_err(|e| format!("samples.csv:{}: {e}", i + 1))?;
            if let Some(row) = parse_sample_line(i, &l)? {
                *t.sample_counts.entry(row.host).or_default() += 1;
            }
        }
        Ok(t)
    }

    /// Parses the contents of `packets.jsonl`, `events.jsonl` and `samples.csv`
    /// (the header line of the CSV is optional).
    pub fn from_strs(packets: &str, events: &str, samples: &str) -> Result<Trace, String> {
        let mut t = Trace { packets: Vec::new(), attacks: Vec::new(), events: Vec::new(), samples: SampleSource::Text(samples.to_string()), sample_counts: BTreeMap::new() };
        for (i, l) in packets.lines().enumerate() {
            if let Some(p) = parse_packet_line(i + 1, l)? {
                t.push_packet(p);
            }
        }
        for (i, l) in events.lines().enumerate() {
            if let Some(e) = parse_event_line(i + 1, l)? {
                t.events.push(e);
            }
        }
        for (i, l) in samples.lines().enumerate() {
            if let Some(row) = parse_sample_line(i, l)? {
                *t.sample_counts.entry(row.host).or_default() += 1;
            }
        }
        Ok(t)
    }

    /// Every sample row, in file order, read anew from the file (or text) on
    /// each call. Rows were checked when the trace was read; should the file
    /// have become unreadable since, the rows end there.
    pub fn samples(&self) -> Box<dyn Iterator<Item = SampleRec> + '_> {
        match &self.samples {
            SampleSource::Text(text) => Box::new(text.lines().enumerate().filter_map(|(i, l)| parse_sample_line(i, l).ok().flatten())),
            SampleSource::File(path) => match std::fs::File::open(path) {
                Ok(f) => Box::new(
                    std::io::BufReader::new(f).lines().map_while(Result::ok).enumerate().filter_map(|(i, l)| parse_sample_line(i, &l).ok().flatten()),
                ),
                Err(_) => Box::new(std::iter::empty()),
            },
        }
    }
}

/// One line of `packets.jsonl` (1-based `line`); None for a blank line.
fn parse_packet_line(line: usize, l: &str) -> Result<Option<PacketRec>, String> {
    if l.trim().is_empty() {
        return Ok(None);
    }
    let f = "packets.jsonl";
    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("{f}:{line}: not JSON: {e}"))?;
    let addr = |k: &str| -> Result<SocketAddr, String> {
        v.get(k).and_then(|x| x.as_str()).and_then(|x| x.parse().ok()).ok_or_else(|| format!("{f}:{line}: `{k}` should be an address:port"))
    };
    let bytes = v.get("bytes").and_then(|b| b.as_str()).and_then(hex).ok_or_else(|| format!("{f}:{line}: `bytes` should be hex octets"))?;
    let (header, ext_error) = match parse_packet(&bytes) {
        Ok(p) => {
            let err = p.error().is_some();
            match p.header {
                Header::V4(h) => (Some(h), err),
                Header::V5(_) => (None, err),
            }
        }
        Err(_) => (None, false),
    };
    let sent = time_field(&v, "sent", line, f)?.ok_or_else(|| format!("{f}:{line}: `sent` missing"))?;
    Ok(Some(PacketRec {
        line,
        frame: v.get("frame").and_then(|x| x.as_u64()),
        sent_t_s: v.get("sent_t_s").and_then(|x| x.as_f64()).unwrap_or(0.0),
        received_t_s: v.get("received_t_s").and_then(|x| x.as_f64()),
        sent,
        received: time_field(&v, "received", line, f)?,
        sender_local: time_field(&v, "sender_local", line, f)?.ok_or_else(|| format!("{f}:{line}: `sender_local` missing"))?,
        receiver_local: time_field(&v, "receiver_local", line, f)?,
        src: addr("src")?,
        dst: addr("dst")?,
        bytes,
        header,
        ext_error,
        attack: v.get("attack").and_then(|x| x.as_str()).map(str::to_string),
    }))
}

/// One line of `events.jsonl` (1-based `line`); None for a blank line.
fn parse_event_line(line: usize, l: &str) -> Result<Option<EventRec>, String> {
    if l.trim().is_empty() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("events.jsonl:{line}: not JSON: {e}"))?;
    Ok(Some(EventRec {
        line,
        t_s: v.get("t_s").and_then(|x| x.as_f64()).ok_or_else(|| format!("events.jsonl:{line}: `t_s` missing"))?,
        host: v.get("host").and_then(|x| x.as_str()).map(str::to_string),
        kind: v.get("kind").and_then(|x| x.as_str()).unwrap_or("").to_string(),
        details: v.get("details").cloned().unwrap_or(serde_json::Value::Null),
    }))
}

/// Line `index` (0-based) of `samples.csv`; None for a blank line or the header.
fn parse_sample_line(index: usize, l: &str) -> Result<Option<SampleRec>, String> {
    if l.trim().is_empty() || (index == 0 && l.starts_with("time,")) {
        return Ok(None);
    }
    let line = index + 1;
    let c: Vec<&str> = l.split(',').collect();
    let bad = || format!("samples.csv:{line}: expected 8 columns (time,t_s,host,offset_s,frequency_error,synced,stratum,poll_log2)");
    if c.len() != 8 {
        return Err(bad());
    }
    Ok(Some(SampleRec {
        t_s: c[1].parse().map_err(|_| bad())?,
        host: c[2].to_string(),
        offset_s: c[3].parse().map_err(|_| bad())?,
        frequency_error: c[4].parse().map_err(|_| bad())?,
        synced: c[5] == "true",
        stratum: c[6].parse().map_err(|_| bad())?,
        poll_log2: c[7].parse().map_err(|_| bad())?,
    }))
}
