//! Scenario files: a declarative TOML description of one simulated run, and
//! its validation into a [`Scenario`].
//!
//! A scenario names the run and its seed, the true time span it covers, the
//! hosts (each runs the real daemon or is a scripted peer), the links between
//! them, a timeline of faults, and the expectations a run must meet. Loading
//! checks everything the simulator would otherwise trip over later, and every
//! error names the file, line and column and says what to write instead:
//!
//! ```text
//! scenario.toml:31:17: unknown host `sever`
//!    |
//! 31 |   { host = "sever", iburst = true },
//!    |            ^^^^^^^
//!    = hint: did you mean `server`? hosts are: server, client
//! ```
//!
//! # Format
//!
//! A file is at most [`SCENARIO_BYTES_MAX`] (8 MiB) of UTF-8 text, and the
//! trace it asks for at most [`SAMPLE_ROWS_MAX`] sample rows and
//! [`DATAGRAMS_MAX`] datagrams (estimated from the sources' shortest polls).
//!
//! Top level: `name` (required), `description`, `seed` (default 1; the CLI may
//! override it), `start` (RFC 3339, default 2030-01-01T00:00:00Z), `duration`
//! (required), `sample_interval` (default 1 s), `converged_after` (default a
//! quarter of `duration`), `leap_seconds` (UTC leap seconds during the run, e.g.
//! `["2016-12-31T23:59:60Z"]` to insert or `"...T23:59:59Z"` to delete one:
//! offsets are then measured against UTC on the NTP timescale, and hosts with
//! `local_stratum` announce and apply them), `seeds` (the seeds `ntplab suite`
//! sweeps when its command line names none: `"1..25"`, `"3"` or `"1..5,9"`),
//! `exercises` (IDs of conformance checks every run of the scenario must
//! exercise: a declared check that reports "not exercised" fails the suite),
//! `lab_duration` (the real time `ntplab lab run` runs it, at most `duration`),
//! then arrays of tables `[[host]]`, `[[link]]`, `[[event]]` and `[[expect]]`.
//!
//! Durations are a number of seconds or a string with units (`"250ms"`,
//! `"90s"`, `"15m"`, `"24h"`, `"7d"`, `"1h30m"`; units `ns`, `us`, `ms`, `s`,
//! `m`, `h`, `d`). Clock offsets, step sizes, jitter parameters and time
//! thresholds take the same forms and may be negative where that makes sense.
//! Probabilities are numbers in \[0, 1\].
//!
//! - `[[host]]`: `name`, `address` (an explicit IPv4 or IPv6 address), `role`
//!   (`"ntp"`, the default, runs the daemon; `"scripted"` is a scripted peer),
//!   `clock` (an inline table, all keys default 0: `offset` s, `frequency` s/s,
//!   `wander` (random-walk frequency noise, s/s per √s), `noise` (white
//!   reading noise, s), `precision` (reading resolution, s; its log2,
//!   rounded, is also the precision the host's daemon reports and uses as
//!   its noise floor; with exact readings, 0, the daemon's precision is
//!   2^-23 s, [`crate::host_clock::DEFAULT_PRECISION_LOG2`]), `sine` =
//!   `{ amplitude (s/s, on the frequency), period, phase (radians) }`,
//!   `frequency_file` (a text file, relative to the scenario's directory,
//!   holding the clock's frequency error in s/s for each second of the
//!   run, one number a line, `#` comments and blank lines skipped; the last
//!   value holds after the file's end; it replaces `frequency` and
//!   `wander`, which it excludes: a recorded oscillator, e.g. the raw
//!   frequency clknetsim logs for a node with `-g`)), and
//!   `listen` (`true`: port 123, `false`: serve nobody, or a port number).
//!   Role `ntp` also takes `impl` (`"ntplab"`, the default, `"chrony"`,
//!   `"ntpsec"` or `"ntpd-rs"`: the program the hardware lab runs; the
//!   simulator refuses hosts that are not `"ntplab"`), `local_stratum`,
//!   `interleaved`, `ntpv5` (answer NTPv5 and offer the upgrade, default
//!   true), `sources` (each `{ host, iburst, burst, poll_min, poll_max,
//!   version, draft, interleaved, unsmear, nts, aeads, max_delay,
//!   max_delay_ratio, max_delay_dev_ratio, noselect, prefer, trust, require,
//!   port }`, the host
//!   named by its `name`; `version` 1–5 or `"auto"`, `draft` the NTPv5
//!   draft `"07"`, `"08"` or `"09"`, `interleaved` asks for RFC 9769's
//!   interleaved mode, `max_delay` is chrony's `maxdelay`: a reply with a
//!   longer round trip gives no sample, `max_delay_ratio` chrony's
//!   `maxdelayratio` (a reply whose round trip is above it times the least
//!   of the last 64 gives no sample), `max_delay_dev_ratio` chrony's
//!   `maxdelaydevratio` (the discipline ignores a sample delayed more than
//!   that many jitters beyond the least held; default 10); `noselect`, `prefer`, `trust` and
//!   `require` are the daemon's `[[source]]` selection options, chrony's
//!   words),
//!   `discipline` (`"regression"`, the default, or `"rfc5905"`:
//!   the daemon's `[clock] discipline`), `drift` (the clock's frequency
//!   error as the daemon's drift file holds it, s/s, positive when the
//!   clock gains, within ±0.1005: the daemon starts correcting by minus it,
//!   as from `[clock] drift_file`; `clock = { frequency = 1e-4 }` with
//!   `drift = 1e-4` is a drift file holding the exact error), `step` (`{
//!   threshold, updates, panic_threshold, panic_at_start }`: the daemon's
//!   `[clock]` `step_threshold`, `step_updates`, `panic_threshold` and
//!   `panic_at_start`; e.g. chrony's `makestep 1 -1` is `{ threshold = 1,
//!   updates = -1, panic_threshold = 0 }`), `poll_target` (samples a fit
//!   holds where the poll settles: the daemon's `[clock] poll_target`,
//!   chrony's `polltarget`), `min_sources` (sources that
//!   must agree before the clock is steered: the daemon's `min_sources`,
//!   chrony's `minsources`), `max_distance` (seconds: a source with a
//!   larger root distance is not selectable; the daemon's `max_distance`,
//!   chrony's `maxdistance`), `max_change` (`{ offset, start, ignore }`:
//!   the daemon's `[clock] max_change`, chrony's `maxchange`) and the daemon configuration's `rate_limit`, `access` and
//!   `smear` tables with the same keys as in `ntplab serve`'s file (see
//!   [`ntplab_daemon::config`]). Role `scripted` takes `behavior` (see
//!   [`Behavior`]) and `stratum` (1–15, default 1).
//!   Role `ntp` also takes `refclock`, a GPS receiver and/or PPS output
//!   attached to the host and read by its daemon as a `[[refclock]]`:
//!   `{ kind = "gps-pps" | "gps" | "pps", ... }` with the hardware's
//!   `pps_jitter` (standard deviation, default 20 ns), `pps_delay` (default
//!   50 ns), `pps_dropout` and `pps_outlier` (probabilities), `pps_outlier_max`
//!   (default 1 ms), `gps_latency` (start of the sentences after their
//!   second, default 100 ms) and `gps_latency_jitter` (uniform extra,
//!   default 200 ms), `baud` (default 9600), `fix_loss` and `wnro` (lists of
//!   `{ from, until }` windows, times since the start, when the receiver has
//!   no fix or sends dates 1024 weeks old), and the daemon's settings
//!   `refid`, `offset`, `delay` and `filter` (as in `[[refclock]]`).
//!   With `count = N` (1–10000) the table is a host group: N hosts named
//!   NAME-1..NAME-N at consecutive addresses from `address`, otherwise alike.
//!   A group's name stands for all its members in a link's `between` (one link
//!   per member, or per pair of members of two groups), in `sources`, in an
//!   event's `hosts` and `host` (one event per member), and in `[[expect]]`
//!   with `over`.
//! - `[[link]]`: `between = ["a", "b"]` and the link parameters `delay`,
//!   `jitter` (`{ kind = "none" | "exponential", mean | "normal", sd |
//!   "uniform", max | "pareto", scale, shape }`), `loss`, `duplicate`,
//!   `reorder`, `reorder_delay`, `pass_every` (a deterministic loss
//!   pattern: only every N-th packet gets through, as in chrony's tests);
//!   `forward = { .. }` (from the first named host
//!   to the second) and `backward = { .. }` override them per direction.
//!   `attacker = { modify, strip, append, replay, reorder, forge, forge_kod,
//!   forge_ntsn }` puts an on-path attacker on the link
//!   ([`crate::attacker`]): each a probability per NTS reply (the first
//!   five, sum at most 1) or per NTS request (the last three, sum at most 1).
//!   Hosts without a link cannot talk to each other.
//! - `[[event]]`: `at` (time since the start) and `action`, one of
//!   `partition` (`hosts = [..]` isolates those hosts from all others, or
//!   `link = ["a", "b"]` with optional `direction` = `"both"` | `"forward"` |
//!   `"backward"`; optional `until` schedules the heal), `heal` (same targets,
//!   or none to heal everything), `set_link` (`link` and any link parameter,
//!   `forward`, `backward`; with `after_packets = N` each direction the event
//!   changes takes the new parameters from the packet after the N-th it
//!   carries from `at` on, as chrony's tests count packets with clknetsim's
//!   `(sum 1)`; a later `set_link` of the link cancels a change still pending), `step_clock` (`host`, `by` seconds),
//!   `set_frequency` (`host`, `frequency` s/s), `stop` and `start` (`host`).
//! - `[[expect]]`: `host`, `metric` (see [`Metric`]), `max` and/or `min`,
//!   optional `name`, `after` (default `converged_after` for offset and
//!   frequency statistics, the start otherwise) and `requirement` (a free-form
//!   requirement ID for conformance reports). `within` (`sync_time` and
//!   `synchronized` only) is the |offset| that counts as synchronized (default
//!   1 ms). For a host group, `over = "min" | "max" | "median"` says how its
//!   members' values become one; a member without a value (e.g. never
//!   synchronized for `sync_time`) fails the expectation.
//!
//! The full example (it is `sim/scenarios/format-example.toml`, and a test
//! loads it):
//!
#![doc = concat!("```toml\n", include_str!("../scenarios/format-example.toml"), "```")]

use crate::gps::{GpsFault, PpsModelConfig, SerialTiming};
use crate::refclock::SimRefclockConfig;
use ntplab_daemon::config::{
    AccessSection, ClockSection, ConfigFile, DaemonConfig, LocalSection, NtsSection, RateLimitSection, RefclockKind, RefclockSection,
    SmearSection, SourceSection,
};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Index of a host in [`Scenario::hosts`].
pub type HostId = usize;

/// Index of a link in [`Scenario::links`].
pub type LinkId = usize;

/// The port NTP hosts serve on unless `listen` names another.
pub const NTP_PORT: u16 = 123;

/// Longest run a scenario may describe: 10 years.
pub const DURATION_MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Finest sample grid: 1 ms.
pub const SAMPLE_INTERVAL_MIN: Duration = Duration::from_millis(1);

/// Most rows a run may write to `samples.csv`: hosts × (duration /
/// sample_interval + 1). Ten million rows are about 850 MB of CSV.
pub const SAMPLE_ROWS_MAX: u64 = 10_000_000;

/// Most datagrams a run may be expected to send: for every source of every
/// daemon, requests at its shortest poll interval (8 per poll with `burst`,
/// 8 more for `iburst` at each start) and as many replies, doubled again when
/// a link duplicates. The conformance checks hold every datagram in memory
/// (a few hundred bytes each).
pub const DATAGRAMS_MAX: u64 = 1_000_000;

/// Largest scenario file [`Scenario::load`] reads: 8 MiB (a scenario of
/// 10,000 hosts and their links is about 2 MiB).
pub const SCENARIO_BYTES_MAX: u64 = 8 << 20;

const DEFAULT_START: &str = "2030-01-01T00:00:00Z";

/// Largest `after_packets` of a `set_link` event.
pub const AFTER_PACKETS_MAX: u64 = 1_000_000_000;

/// Values of a host's `discipline` (the daemon's `[clock] discipline`).
pub const DISCIPLINES: [&str; 2] = ["regression", "rfc5905"];

/// Pcap timestamps are unsigned 32-bit Unix seconds: true time must stay in
/// 1970-01-01 .. 2106-02-07T06:28:15Z.
const PCAP_UNIX_SECS_MAX: i64 = u32::MAX as i64;

/// A validated scenario: names resolved to indices, values typed.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from (a path, or what the caller passed to [`Scenario::parse`]).
    pub origin: String,
    /// A one-line name saying what the run shows.
    pub name: String,
    /// Free text; empty when not given.
    pub description: String,
    /// The seed every random stream of the run derives from.
    pub seed: u64,
    /// True time at the start of the run.
    pub start: NtpTime,
    /// Length of the run in true time.
    pub duration: Duration,
    /// Spacing of the trace's sample grid.
    pub sample_interval: Duration,
    /// Time since the start after which offset and frequency statistics count.
    pub converged_after: Duration,
    /// How long the hardware lab runs the scenario in real time (`lab_duration`,
    /// at most `duration`; default `duration`). The simulator ignores it.
    pub lab_duration: Option<Duration>,
    /// Leap seconds of true UTC during the run. Hosts serving their own clock
    /// (`local_stratum`) follow UTC and so announce them; offsets in the trace
    /// are taken against UTC on the NTP timescale.
    pub leap_seconds: Vec<ntplab_proto::system::LeapAnnouncement>,
    /// The hosts, in file order.
    pub hosts: Vec<Host>,
    /// The links, in file order.
    pub links: Vec<Link>,
    /// The fault timeline, sorted by time (file order among equal times).
    pub events: Vec<Event>,
    /// What a run must meet.
    pub expectations: Vec<Expectation>,
    /// Seeds `ntplab suite` sweeps when its command line names none (`seeds`);
    /// empty: only [`Scenario::seed`].
    pub seeds: Vec<u64>,
    /// Conformance checks every run must exercise (`exercises`), in file order.
    pub exercises: Vec<Exercise>,
}

/// One entry of `exercises`: a check ID and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exercise {
    /// The check's ID (checked against the conformance crate's list by `ntplab suite`).
    pub check: String,
    /// 1-based line in the scenario file.
    pub line: usize,
    /// 1-based column in the scenario file.
    pub column: usize,
}

/// Most seeds one seed list may name.
pub const SEEDS_MAX: usize = 10_000;

/// Parses a seed list: `N`, `A..B` (inclusive) or comma-separated items of
/// those, e.g. `1..10`, `7`, `1..5,9`. Duplicates are dropped, order kept.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = |why: &str| format!("seed list `{text}`: {why}; write e.g. \"1..10\" (inclusive), \"7\" or \"1..5,9\"");
    let mut out: Vec<u64> = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let num = |x: &str| x.trim().parse::<u64>().map_err(|_| bad(&format!("`{}` is not a non-negative integer", x.trim())));
        let (a, b) = match item.split_once("..") {
            Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
            None => {
                let v = num(item)?;
                (v, v)
            }
        };
        if a > b {
            return Err(bad(&format!("range {a}..{b} is empty")));
        }
        if b - a >= SEEDS_MAX as u64 || out.len() + (b - a) as usize + 1 > SEEDS_MAX {
            return Err(bad(&format!("more than {SEEDS_MAX} seeds")));
        }
        for v in a..=b {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Unique name.
    pub name: String,
    /// Unique address.
    pub address: IpAddr,
    /// Its oscillator.
    pub clock: ClockSpec,
    /// What runs on it.
    pub role: Role,
    /// Its reference-clock hardware (role `ntp` only).
    pub refclock: Option<SimRefclockConfig>,
    /// Which NTP implementation runs on it (`impl`; role `ntp` only). The
    /// simulator runs only ntplab's daemon; the hardware lab runs the others.
    pub implementation: Implementation,
}

/// A host's `impl`: the NTP program it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Implementation {
    /// ntplab's own daemon (the default).
    #[default]
    Ntplab,
    /// chronyd.
    Chrony,
    /// ntpsec's ntpd.
    Ntpsec,
    /// ntpd-rs.
    NtpdRs,
}

impl Implementation {
    /// The name as a scenario writes it.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Ntplab => "ntplab",
            Implementation::Chrony => "chrony",
            Implementation::Ntpsec => "ntpsec",
            Implementation::NtpdRs => "ntpd-rs",
        }
    }
}

impl Host {
    /// The UDP port it answers NTP on, if it serves.
    pub fn ntp_port(&self) -> Option<u16> {
        match &self.role {
            Role::Ntp(n) => n.daemon.listen.first().map(SocketAddr::port),
            Role::Scripted(s) => Some(s.port),
        }
    }
}

/// What runs on a host.
#[derive(Debug, Clone)]
// A scenario holds a handful of hosts: boxing the daemon configuration would
// only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum Role {
    /// The real daemon.
    Ntp(NtpHost),
    /// A scripted peer (see `crate::peers`).
    Scripted(ScriptedHost),
}

/// A host running the daemon.
#[derive(Debug, Clone)]
pub struct NtpHost {
    /// The daemon's configuration, validated as `ntplab serve` validates its file.
    pub daemon: DaemonConfig,
    /// The host each of `daemon.sources` points at, in the same order.
    pub sources: Vec<HostId>,
    /// The certificate it presents when it serves NTS (`nts = { ... }`).
    pub nts_certificate: Option<crate::nts::CertificateKind>,
}

/// A scripted peer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedHost {
    /// UDP port it answers on.
    pub port: u16,
    /// How it answers.
    pub behavior: Behavior,
    /// Stratum of its (non-kiss) replies, 1–15.
    pub stratum: u8,
}

impl ScriptedHost {
    /// A scenario file of this one peer, named `name` at `address`, that
    /// [`Scenario::parse`] reads back to the same peer: the file the
    /// hardware lab hands to `ntplab lab peer`.
    pub fn scenario_text(&self, name: &str, address: IpAddr) -> String {
        let behavior = match self.behavior {
            Behavior::Falseticker { offset_s } => format!("{{ kind = \"falseticker\", offset = {offset_s:?} }}"),
            Behavior::Kiss { code } => format!("{{ kind = \"kiss\", code = {:?} }}", code.ascii().unwrap_or_default()),
            Behavior::BogusKiss { code } => format!("{{ kind = \"bogus-kiss\", code = {:?} }}", code.ascii().unwrap_or_default()),
            Behavior::Malformed { how } => format!("{{ kind = \"malformed\", how = \"{}\" }}", how.name()),
            Behavior::Replay => "{ kind = \"replay\" }".into(),
            Behavior::Silent => "{ kind = \"silent\" }".into(),
            Behavior::Insane => "{ kind = \"insane\" }".into(),
            Behavior::SecondReply => "{ kind = \"second-reply\" }".into(),
            Behavior::Unsolicited => "{ kind = \"unsolicited\" }".into(),
            Behavior::ZeroOrigin => "{ kind = \"zero-origin\" }".into(),
        };
        format!(
            "# Scripted peer `{name}`, as its scenario says it answers.\nname = {:?}\nduration = \"1s\"\n\n[[host]]\nname = {name:?}\naddress = \"{address}\"\nrole = \"scripted\"\nlisten = {}\nstratum = {}\nbehavior = {behavior}\n",
            format!("scripted peer {name}"),
            self.port,
            self.stratum
        )
    }
}

/// How a scripted peer answers a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behavior {
    /// A correct-looking reply whose timestamps are off by `offset_s`.
    Falseticker {
        /// Offset added to its receive and transmit timestamps, seconds.
        offset_s: f64,
    },
    /// A kiss-o'-death with this code.
    Kiss {
        /// The kiss code as a reference ID (e.g. `RATE`).
        code: ReferenceId,
    },
    /// Its previous reply again (the first request gets a correct reply).
    Replay,
    /// A broken reply.
    Malformed {
        /// How it is broken.
        how: Malformation,
    },
    /// No reply at all.
    Silent,
    /// Replies that answer the request but must give no sample, in turn: LI 3
    /// (unsynchronized), stratum 16, transmit timestamp 0.
    Insane,
    /// A correct reply, then a second, different one (transmit 1 ms later) to the same request.
    SecondReply,
    /// A correct reply, then 1 s later a server-mode datagram answering no request (random origin).
    Unsolicited,
    /// A correct reply except that its origin timestamp is zero.
    ZeroOrigin,
    /// A kiss-o'-death with this code whose origin is not the request's transmit timestamp.
    BogusKiss {
        /// The kiss code as a reference ID (e.g. `DENY`).
        code: ReferenceId,
    },
}

/// How a malformed reply is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Malformation {
    /// A correct reply cut to 47 octets.
    Truncated,
    /// A correct reply with version 0 or 7.
    BadVersion,
    /// A correct reply followed by an extension field whose length runs past the end.
    BadEfLength,
    /// Random octets of random length.
    Garbage,
}

impl Malformation {
    /// Its name in a scenario file (`how = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            Malformation::Truncated => "truncated",
            Malformation::BadVersion => "bad-version",
            Malformation::BadEfLength => "bad-ef-length",
            Malformation::Garbage => "garbage",
        }
    }
}

/// A host's oscillator, as written: the clock model (another module) reads these.
/// All values default to zero: a perfect clock read with infinite resolution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClockSpec {
    /// Initial offset, local minus true, seconds.
    pub offset_s: f64,
    /// Initial frequency error, s/s (1e-6 is 1 ppm fast).
    pub frequency: f64,
    /// Random-walk frequency noise: standard deviation of the frequency change
    /// over one second of true time, s/s per √s.
    pub wander: f64,
    /// White noise added to each reading, standard deviation, seconds.
    pub noise_s: f64,
    /// Reading resolution, seconds (0: exact). The host's daemon reports
    /// its log2, rounded, as its precision; with 0 it reports
    /// [`crate::host_clock::DEFAULT_PRECISION_LOG2`].
    pub precision_s: f64,
    /// A periodic frequency error (e.g. a daily temperature cycle).
    pub sine: SineSpec,
    /// A recorded frequency error, one value a second (`frequency_file`),
    /// in place of `frequency` and `wander`.
    pub frequency_file: Option<FrequencyFile>,
}

/// A clock's frequency error for each second of a run, read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyFile {
    /// The file, as the scenario names it after resolving it against the scenario's directory.
    pub path: String,
    /// Its values, s/s; at least one, each finite and within ±0.1.
    pub values: Arc<[f64]>,
}

/// Largest `frequency_file`: 64 MiB (a simulated month at one value a second is about 40 MiB).
pub const FREQUENCY_FILE_BYTES_MAX: u64 = 64 << 20;

/// A sinusoidal frequency error `amplitude * sin(2π t / period + phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SineSpec {
    /// Peak frequency error, s/s (0: none).
    pub amplitude: f64,
    /// Period, seconds (positive when `amplitude` is not 0).
    pub period_s: f64,
    /// Phase at the start of the run, radians.
    pub phase_rad: f64,
}

/// A bidirectional link between two hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The hosts as named in `between`; `forward` is from `hosts[0]` to `hosts[1]`.
    pub hosts: [HostId; 2],
    /// Parameters of packets from `hosts[0]` to `hosts[1]`.
    pub forward: LinkParams,
    /// Parameters of packets from `hosts[1]` to `hosts[0]`.
    pub backward: LinkParams,
    /// An on-path attacker on the link (`attacker = { .. }`), if any.
    pub attacker: Option<crate::attacker::AttackerConfig>,
}

/// One direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Random extra delay on top of `delay`.
    pub jitter: Jitter,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet is held back by `reorder_delay`.
    pub reorder: f64,
    /// Extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Only every this many-th packet gets through (1: all; see
    /// [`crate::link::PathConfig::pass_every`]).
    pub pass_every: u32,
}

impl Default for LinkParams {
    /// A perfect direction: no delay, no jitter, every packet delivered once.
    fn default() -> Self {
        LinkParams {
            delay: Duration::ZERO,
            jitter: Jitter::None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            pass_every: 1,
        }
    }
}

/// Changes to one direction of a link (`set_link`): `None` keeps the value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkPatch {
    /// New fixed delay.
    pub delay: Option<Duration>,
    /// New jitter.
    pub jitter: Option<Jitter>,
    /// New loss probability.
    pub loss: Option<f64>,
    /// New duplication probability.
    pub duplicate: Option<f64>,
    /// New reordering probability.
    pub reorder: Option<f64>,
    /// New reordering delay.
    pub reorder_delay: Option<Duration>,
    /// New deterministic loss pattern.
    pub pass_every: Option<u32>,
}

impl LinkPatch {
    /// `params` with this patch applied.
    pub fn apply(&self, params: &LinkParams) -> LinkParams {
        LinkParams {
            delay: self.delay.unwrap_or(params.delay),
            jitter: self.jitter.unwrap_or(params.jitter),
            loss: self.loss.unwrap_or(params.loss),
            duplicate: self.duplicate.unwrap_or(params.duplicate),
            reorder: self.reorder.unwrap_or(params.reorder),
            reorder_delay: self.reorder_delay.unwrap_or(params.reorder_delay),
            pass_every: self.pass_every.unwrap_or(params.pass_every),
        }
    }
}

/// Random extra one-way delay: the link model's own type.
pub use crate::link::Jitter;

/// A timed change to the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Time since the start.
    pub at: Duration,
    /// What happens.
    pub action: Action,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Drop packets across a cut. A `partition` with `until` also yields a
    /// [`Action::Heal`] of the same cut at `until`.
    Partition(Cut),
    /// Restore a cut (`None`: every partition).
    Heal(Option<Cut>),
    /// Change a link's parameters.
    SetLink {
        /// The link.
        link: LinkId,
        /// Changes from `hosts[0]` to `hosts[1]`.
        forward: Box<LinkPatch>,
        /// Changes from `hosts[1]` to `hosts[0]`.
        backward: Box<LinkPatch>,
        /// `after_packets`: each changed direction changes only after carrying
        /// this many more packets from `at` on (`None`: at once).
        after_packets: Option<u64>,
    },
    /// Step a host's clock.
    StepClock {
        /// The host.
        host: HostId,
        /// Step, seconds (positive: the clock jumps ahead).
        by_s: f64,
    },
    /// Set a host oscillator's frequency error.
    SetFrequency {
        /// The host.
        host: HostId,
        /// New frequency error, s/s.
        frequency: f64,
    },
    /// The host goes down: its daemon stops and its packets are dropped.
    Stop {
        /// The host.
        host: HostId,
    },
    /// The host comes up again, its daemon started afresh.
    Start {
        /// The host.
        host: HostId,
    },
    /// The host's NTS-KE (its TCP) becomes unreachable; its NTP still answers.
    KeDown {
        /// The host.
        host: HostId,
    },
    /// The host's NTS-KE is reachable again.
    KeUp {
        /// The host.
        host: HostId,
    },
}

/// Which packets a partition drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Every packet between one of these hosts and a host not listed.
    Hosts(Vec<HostId>),
    /// Packets on one link.
    Link {
        /// The link.
        link: LinkId,
        /// Which way.
        direction: Direction,
    },
}

/// Direction on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// From `hosts[0]` to `hosts[1]`.
    Forward,
    /// From `hosts[1]` to `hosts[0]`.
    Backward,
}

/// A condition a run must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// What it checks, for reports.
    pub name: String,
    /// The host it is about.
    pub host: HostId,
    /// The statistic.
    pub metric: Metric,
    /// Lower bound, in [`Metric::unit`].
    pub min: Option<f64>,
    /// Upper bound, in [`Metric::unit`].
    pub max: Option<f64>,
    /// Only the part of the run after this time since the start counts.
    pub after: Duration,
    /// A requirement ID for conformance reports.
    pub requirement: Option<String>,
    /// For an expectation about a host group: every member (`host` is the
    /// first), and how their values are summarized. Empty for one host.
    pub members: Vec<HostId>,
    /// How a group's per-host values become one (`None` for one host).
    pub over: Option<Over>,
    /// The group's name (`None` for one host).
    pub group: Option<String>,
    /// For `sync_time` and `synchronized`: |true offset| at or below this
    /// counts as synchronized, seconds (`within`; default 1 ms). chrony's
    /// tests use their `time_max_limit` here.
    pub within: Option<f64>,
}

/// How an expectation about a host group summarizes its members' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Over {
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The median (the mean of the two middle values for an even count).
    Median,
}

impl Over {
    /// The name used in scenario files.
    pub const fn name(self) -> &'static str {
        match self {
            Over::Min => "min",
            Over::Max => "max",
            Over::Median => "median",
        }
    }

    /// Summarizes the members' values; a member without a value (e.g. never
    /// synchronized for `sync_time`) makes the summary undefined, so the
    /// expectation fails.
    pub fn summarize(self, values: &[Option<f64>]) -> Option<f64> {
        let mut v: Vec<f64> = values.iter().copied().collect::<Option<Vec<f64>>>()?;
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(match self {
            Over::Min => v[0],
            Over::Max => v[v.len() - 1],
            Over::Median if v.len() % 2 == 1 => v[v.len() / 2],
            Over::Median => (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0,
        })
    }
}

/// A statistic of one host over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Root mean square of the true offset over the samples, seconds.
    RmsOffset,
    /// Largest absolute true offset over the samples, seconds.
    MaxOffset,
    /// Time from the start until the host synchronized for good, seconds: the
    /// later of its daemon's first system peer and the last sample more than
    /// 1 ms off true time. A host that never synchronized (or is more than
    /// 1 ms off at the end) has none, and an expectation on it fails.
    SyncTime,
    /// Largest absolute frequency error over the samples, s/s.
    MaxFrequencyError,
    /// Root mean square of the frequency error over the samples, s/s.
    RmsFrequencyError,
    /// Datagrams the host sent.
    PacketsSent,
    /// Datagrams delivered to the host.
    PacketsReceived,
    /// Clock steps the host's daemon made.
    Steps,
    /// Highest stratum the host's daemon served from `after` on: its system
    /// peer's stratum + 1, or its local reference's stratum while it has no
    /// system peer; time without either (unsynchronized) does not count.
    MaxStratum,
    /// Times the daemon's selection chose a system peer other than the one it
    /// had (none included): chrony's "Selected source" log lines.
    Selections,
    /// Kiss-o'-death replies the daemon received (any code, NTSN included).
    KissCodes,
    /// NTSN kiss codes the daemon received (RFC 8915 §5.7).
    Ntsn,
    /// 1 when the host synchronized for good (its `sync_time` is defined: its
    /// daemon had a system peer, and its |true offset| was at most `within`,
    /// default 1 ms, from some time to the end of the run), else 0. `max = 0`
    /// says the host never synchronizes.
    Synchronized,
    /// Clock updates the daemon refused as above its `max_change` (chrony's
    /// `maxchange`: "exceeds the allowed maximum" log lines, the last of
    /// them the one it exited on).
    MaxChangeExceeded,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 14] = [
        Metric::RmsOffset,
        Metric::MaxOffset,
        Metric::SyncTime,
        Metric::MaxFrequencyError,
        Metric::RmsFrequencyError,
        Metric::PacketsSent,
        Metric::PacketsReceived,
        Metric::Steps,
        Metric::MaxStratum,
        Metric::Selections,
        Metric::KissCodes,
        Metric::Ntsn,
        Metric::Synchronized,
        Metric::MaxChangeExceeded,
    ];

    /// The name used in scenario files.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::RmsOffset => "rms_offset",
            Metric::MaxOffset => "max_offset",
            Metric::SyncTime => "sync_time",
            Metric::MaxFrequencyError => "max_frequency_error",
            Metric::RmsFrequencyError => "rms_frequency_error",
            Metric::PacketsSent => "packets_sent",
            Metric::PacketsReceived => "packets_received",
            Metric::Steps => "steps",
            Metric::MaxStratum => "max_stratum",
            Metric::Selections => "selections",
            Metric::KissCodes => "kiss_codes",
            Metric::Ntsn => "ntsn",
            Metric::Synchronized => "synchronized",
            Metric::MaxChangeExceeded => "max_change_exceeded",
        }
    }

    /// Unit of its thresholds: `"s"`, `"s/s"` or `"count"`.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::RmsOffset | Metric::MaxOffset | Metric::SyncTime => "s",
            Metric::MaxFrequencyError | Metric::RmsFrequencyError => "s/s",
            Metric::PacketsSent
            | Metric::PacketsReceived
            | Metric::Steps
            | Metric::MaxStratum
            | Metric::Selections
            | Metric::KissCodes
            | Metric::Ntsn
            | Metric::Synchronized
            | Metric::MaxChangeExceeded => "count",
        }
    }

    /// Whether it is a statistic over the samples after convergence (so
    /// `after` defaults to `converged_after`).
    pub const fn is_converged_statistic(self) -> bool {
        matches!(self, Metric::RmsOffset | Metric::MaxOffset | Metric::MaxFrequencyError | Metric::RmsFrequencyError)
    }

    /// Whether only a host running the daemon has it.
    pub const fn needs_daemon(self) -> bool {
        matches!(
            self,
            Metric::SyncTime
                | Metric::Steps
                | Metric::MaxStratum
                | Metric::Selections
                | Metric::KissCodes
                | Metric::Ntsn
                | Metric::Synchronized
                | Metric::MaxChangeExceeded
        )
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A scenario that could not be loaded: where, what, and what to do about it.
///
/// Displays as `origin:line:column: message`, then the line with the offending
/// text underlined, then the hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or the origin given to [`Scenario::parse`]).
    pub origin: String,
    /// 1-based line, when the error has a position.
    pub line: Option<usize>,
    /// 1-based column in characters, when the error has a position.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is something to say.
    pub hint: Option<String>,
    excerpt: Option<Box<Excerpt>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Excerpt {
    text: String,
    caret_column: usize,
    caret_width: usize,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.origin, self.message)?,
            _ => write!(f, "{}: {}", self.origin, self.message)?,
        }
        let gutter = self.line.map_or(1, |l| l.to_string().len());
        if let (Some(ex), Some(line)) = (&self.excerpt, self.line) {
            let pad = " ".repeat(gutter);
            write!(f, "\n{pad} |\n{line} | {}\n{pad} | {}{}", ex.text, " ".repeat(ex.caret_column), "^".repeat(ex.caret_width))?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n{} = hint: {h}", " ".repeat(gutter))?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Separates a message from its hint inside serde error strings.
const HINT_SEP: char = '\u{1f}';

const DURATION_FORMS: &str =
    "write a number of seconds (90, 0.25) or a string with units such as \"250ms\", \"90s\", \"15m\", \"24h\", \"7d\" or \"1h30m\" (units ns, us, ms, s, m, h, d)";

struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>, hint: Option<String>) -> ScenarioError {
        let mut e = ScenarioError {
            origin: self.origin.to_string(),
            line: None,
            column: None,
            message: message.into(),
            hint,
            excerpt: None,
        };
        if let Some(span) = span {
            let (line, column, excerpt) = locate(self.text, span);
            e.line = Some(line);
            e.column = Some(column);
            e.excerpt = Some(Box::new(excerpt));
        }
        e
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>, hint: Option<String>) -> ScenarioError {
        self.error(Some(spanned.span()), message, hint)
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Line, column (1-based, in characters) and an excerpt of the line for a byte span.
fn locate(text: &str, span: Range<usize>) -> (usize, usize, Excerpt) {
    const WIDTH_MAX: usize = 100;
    let start = floor_char_boundary(text, span.start);
    let end = floor_char_boundary(text, span.end.max(start));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line_chars: Vec<char> = text[line_start..line_end].trim_end_matches('\r').chars().collect();
    let width = text[start..end.min(line_end)].chars().count().max(1);
    // Show at most WIDTH_MAX characters, keeping the caret in view.
    let first = (column - 1).saturating_sub(WIDTH_MAX / 2).min(line_chars.len());
    let last = (first + WIDTH_MAX).min(line_chars.len());
    let mut shown: String = line_chars[first..last].iter().map(|&c| if c == '\t' || c.is_control() { ' ' } else { c }).collect();
    let mut caret_column = column - 1 - first;
    if first > 0 {
        shown.insert(0, '…');
        caret_column += 1;
    }
    if last < line_chars.len() {
        shown.push('…');
    }
    let caret_width = width.min(WIDTH_MAX.saturating_sub(caret_column).max(1));
    (line, column, Excerpt { text: shown, caret_column, caret_width })
}

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    const LEN_MAX: usize = 64;
    if word.chars().count() > LEN_MAX {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c.chars().count() > LEN_MAX {
            continue;
        }
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        let limit = (c.chars().count() / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of neighbours each cost 1 ("delya" is 1 from "delay").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (i, row) in d.chunks_mut(w).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1).min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// Turns a toml/serde error into a positioned one, with a hint where we can give one.
fn toml_error(src: &Source<'_>, e: &toml::de::Error) -> ScenarioError {
    let raw = e.message().trim_end().to_string();
    let (message, mut hint) = match raw.split_once(HINT_SEP) {
        Some((m, h)) => (m.to_string(), Some(h.to_string())),
        None => (raw.clone(), None),
    };
    let mut message = message;
    // serde: "unknown field `x`, expected one of `a`, `b`" / "unknown variant `x`, expected `a` or `b`".
    for (prefix, noun, list) in [("unknown field `", "key", "allowed keys here"), ("unknown variant `", "value", "allowed values")] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let words: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            let bad = rest.split('`').next().unwrap_or("");
            message = format!("unknown {noun} `{bad}`");
            let allowed = words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ");
            hint = Some(match closest(bad, words.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? {list}: {allowed}"),
                None if words.is_empty() => "this table takes no keys".to_string(),
                None => format!("{list}: {allowed}"),
            });
        }
    }
    src.error(e.span(), message, hint)
}

// ---------------------------------------------------------------------------
// Value types with their own parsing

/// Parses a signed duration text ("-1h30m", "250ms", "1e-4s", "90") into seconds.
fn parse_seconds_text(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (sign, mut rest) = match t.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest.is_empty() {
        return Err("it is empty".into());
    }
    let mut total = 0.0f64;
    let mut pieces = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        // An exponent: e or E followed by an optional sign and a digit.
        if i > 0 && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                i = j;
            }
        }
        if i == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: f64 = rest[..i].parse().map_err(|_| format!("`{}` is not a number", &rest[..i]))?;
        rest = rest[i..].trim_start();
        // The unit: ASCII letters and the micro sign (U+00B5) or Greek mu
        // (U+03BC), measured in bytes at character boundaries.
        let unit_len = rest.char_indices().find(|(_, c)| !(c.is_ascii_alphabetic() || matches!(c, 'µ' | 'μ'))).map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        // Sub-second units divide, so that "100us" is the f64 nearest 1e-4.
        let (mul, div) = match unit {
            "" if pieces == 0 && unit_len == rest.len() => (1.0, 1.0),
            "" if rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                return Err(format!("the number `{}` has no unit", number))
            }
            "" => {
                let word: String = rest.chars().take_while(|c| !c.is_whitespace() && !c.is_ascii_digit()).take(16).collect();
                return Err(format!("unknown unit `{word}`"));
            }
            "ns" => (1.0, 1e9),
            "us" | "µs" | "μs" => (1.0, 1e6),
            "ms" => (1.0, 1e3),
            "s" => (1.0, 1.0),
            "m" | "min" => (60.0, 1.0),
            "h" => (3600.0, 1.0),
            "d" => (86_400.0, 1.0),
            other => return Err(format!("unknown unit `{other}`")),
        };
        total += number * mul / div;
        pieces += 1;
        rest = rest[unit_len..].trim_start();
    }
    if !total.is_finite() {
        return Err("it is not finite".into());
    }
    Ok(sign * total)
}

fn duration_from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 || secs > DURATION_MAX.as_secs_f64() * 10.0 {
        return None;
    }
    let nanos = (secs * 1e9).round();
    Some(Duration::from_nanos(nanos as u64))
}

fn hinted(message: impl fmt::Display, hint: impl fmt::Display) -> String {
    format!("{message}{HINT_SEP}{hint}")
}

/// Seconds as a number or a duration string; may be negative.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Secs {
    value: f64,
    /// Written as a string with units.
    textual: bool,
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds or a duration string such as \"250ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                Ok(Secs { value: v as f64, textual: false })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs { value: v as f64, textual: false })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                if v.is_finite() {
                    Ok(Secs { value: v, textual: false })
                } else {
                    Err(E::custom(hinted(format!("{v} is not a finite number of seconds"), DURATION_FORMS)))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                parse_seconds_text(v)
                    .map(|value| Secs { value, textual: true })
                    .map_err(|why| E::custom(hinted(format!("invalid duration {v:?}: {why}"), DURATION_FORMS)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-negative duration as a number of seconds or a string with units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Secs::deserialize(d)?;
        if s.value < 0.0 {
            return Err(de::Error::custom(hinted(format!("a duration cannot be negative ({})", s.value), DURATION_FORMS)));
        }
        duration_from_secs(s.value)
            .map(Dur)
            .ok_or_else(|| de::Error::custom(hinted(format!("duration {} s is too long", s.value), "durations are at most 3650d")))
    }
}

/// `pass_every`: a whole number of packets, at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PassEvery(u32);

impl<'de> Deserialize<'de> for PassEvery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PassEvery;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of packets, at least 1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PassEvery, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(PassEvery(n)),
                    _ => Err(E::custom(hinted(
                        format!("pass_every = {v} is not a packet count from 1 to {}", u32::MAX),
                        "pass_every = 4 lets the 4th, 8th, ... packet through and drops the others; 1 drops none",
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PassEvery, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// A probability in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probability(f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Probability;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a probability between 0 and 1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Probability, E> {
                if (0.0..=1.0).contains(&v) {
                    Ok(Probability(v))
                } else {
                    Err(E::custom(hinted(
                        format!("probability {v} is outside [0, 1]"),
                        "probabilities are fractions: 0.01 is 1 %, 1 is always",
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `listen`: a bool or a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    Off,
    Port(u16),
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a UDP port number 1-65535")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Listen, E> {
                Ok(if v { Listen::Port(NTP_PORT) } else { Listen::Off })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Listen, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(Listen::Port(p)),
                    _ => Err(E::custom(hinted(format!("port {v} is outside 1-65535"), "write true (port 123), false or a port number"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Listen, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// The file as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Spanned<String>,
    description: Option<String>,
    seed: Option<u64>,
    seeds: Option<Spanned<String>>,
    #[serde(default)]
    exercises: Vec<Spanned<String>>,
    start: Option<Spanned<String>>,
    duration: Spanned<Dur>,
    sample_interval: Option<Spanned<Dur>>,
    converged_after: Option<Spanned<Dur>>,
    lab_duration: Option<Spanned<Dur>>,
    #[serde(default)]
    leap_seconds: Vec<Spanned<String>>,
    #[serde(default)]
    host: Vec<Spanned<HostSection>>,
    #[serde(default)]
    link: Vec<Spanned<LinkSection>>,
    #[serde(default)]
    event: Vec<Spanned<EventSection>>,
    #[serde(default)]
    expect: Vec<Spanned<ExpectSection>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RoleName {
    Ntp,
    Scripted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    name: Spanned<String>,
    address: Spanned<IpAddr>,
    /// A host group: `count` hosts NAME-1..NAME-count at consecutive addresses.
    count: Option<Spanned<u32>>,
    role: Option<Spanned<RoleName>>,
    #[serde(rename = "impl")]
    implementation: Option<Spanned<Implementation>>,
    clock: Option<HostClockSection>,
    listen: Option<Spanned<Listen>>,
    // role = "ntp"
    local_stratum: Option<Spanned<u8>>,
    interleaved: Option<Spanned<bool>>,
    /// Answer NTPv5 and offer the upgrade (the daemon's `ntpv5`, default true).
    ntpv5: Option<Spanned<bool>>,
    sources: Option<Spanned<Vec<Spanned<SourceEntry>>>>,
    rate_limit: Option<Spanned<RateLimitSection>>,
    access: Option<Spanned<AccessSection>>,
    smear: Option<Spanned<SmearSection>>,
    refclock: Option<Spanned<RefclockModelSection>>,
    discipline: Option<Spanned<String>>,
    /// The clock's frequency error as its daemon's drift file holds it, s/s
    /// (positive: the clock gains; the daemon starts correcting by minus it).
    drift: Option<Spanned<f64>>,
    /// The daemon's step and panic settings (`[clock]`'s `step_threshold`,
    /// `step_updates`, `panic_threshold`, `panic_at_start`).
    step: Option<Spanned<StepSection>>,
    /// The regression discipline's poll target (the daemon's `[clock] poll_target`).
    poll_target: Option<Spanned<i64>>,
    /// Sources that must agree before the clock is steered (the daemon's `min_sources`).
    min_sources: Option<Spanned<usize>>,
    /// The selection's root-distance limit, s (the daemon's `max_distance`).
    max_distance: Option<Spanned<f64>>,
    /// The daemon's `[clock] max_change` (chrony's `maxchange`).
    max_change: Option<Spanned<ntplab_daemon::config::MaxChangeSection>>,
    nts: Option<Spanned<NtsHostSection>>,
    // role = "scripted"
    behavior: Option<Spanned<BehaviorSection>>,
    stratum: Option<Spanned<u8>>,
}

/// A host's `step`: `{ threshold, updates, panic_threshold, panic_at_start }`,
/// the daemon's `[clock]` `step_threshold`, `step_updates`,
/// `panic_threshold` and `panic_at_start`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSection {
    threshold: Option<f64>,
    updates: Option<i64>,
    panic_threshold: Option<f64>,
    panic_at_start: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefclockModelSection {
    kind: RefclockKind,
    pps_jitter: Option<Dur>,
    pps_delay: Option<Dur>,
    pps_dropout: Option<Probability>,
    pps_outlier: Option<Probability>,
    pps_outlier_max: Option<Dur>,
    gps_latency: Option<Dur>,
    gps_latency_jitter: Option<Dur>,
    baud: Option<u32>,
    #[serde(default)]
    fix_loss: Vec<Spanned<WindowSection>>,
    #[serde(default)]
    wnro: Vec<Spanned<WindowSection>>,
    // The daemon's side.
    refid: Option<String>,
    offset: Option<Secs>,
    delay: Option<Dur>,
    filter: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSection {
    from: Dur,
    until: Dur,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HostClockSection {
    offset: Option<Spanned<Secs>>,
    frequency: Option<Spanned<f64>>,
    wander: Option<Spanned<f64>>,
    noise: Option<Spanned<Secs>>,
    precision: Option<Spanned<Secs>>,
    sine: Option<Spanned<SineSection>>,
    frequency_file: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SineSection {
    amplitude: Option<Spanned<f64>>,
    period: Option<Spanned<Dur>>,
    phase: Option<Spanned<f64>>,
}

/// `nts = { ... }` on a host: it serves NTS-KE (port 4460) and NTS-protected NTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NtsHostSection {
    /// Time between cookie master keys (default a day).
    key_rotation: Option<Spanned<Dur>>,
    /// "valid" (default), "expired" (notAfter a day before the run starts) or
    /// "wrong-name" (issued for another name).
    certificate: Option<Spanned<String>>,
    /// AEAD IDs accepted, most preferred first.
    aeads: Option<Spanned<Vec<u16>>>,
    /// NTP server named in NTS-KE responses (Server Negotiation record).
    ntp_server: Option<String>,
    /// NTP port named in NTS-KE responses (Port Negotiation record).
    ntp_port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    host: Spanned<String>,
    #[serde(default)]
    iburst: bool,
    #[serde(default)]
    burst: bool,
    poll_min: Option<i8>,
    poll_max: Option<i8>,
    /// 1–5 or "auto" (NTPv4, upgraded to NTPv5 when offered).
    version: Option<ntplab_daemon::config::VersionSetting>,
    /// The NTPv5 draft: "07", "08" or "09".
    draft: Option<String>,
    #[serde(default)]
    unsmear: bool,
    /// Ask the host for the interleaved mode (RFC 9769; NTPv4 only).
    #[serde(default)]
    interleaved: bool,
    /// NTS-KE with the host, then NTS-protected NTP (the host needs `nts = { ... }`).
    #[serde(default)]
    nts: bool,
    /// AEAD IDs offered (NTS only).
    aeads: Option<Vec<u16>>,
    /// Largest round-trip delay of a sample (chrony's `maxdelay`).
    max_delay: Option<Secs>,
    /// Largest ratio of a round trip to the least of the last 64 (chrony's `maxdelayratio`).
    max_delay_ratio: Option<f64>,
    /// The discipline's delay test ratio (chrony's `maxdelaydevratio`).
    max_delay_dev_ratio: Option<f64>,
    /// Selection options (chrony's `noselect`, `prefer`, `trust`, `require`).
    #[serde(default)]
    noselect: bool,
    #[serde(default)]
    prefer: bool,
    #[serde(default)]
    trust: bool,
    #[serde(default)]
    require: bool,
    /// The port the client is configured with (default: the host's); with
    /// NTS, a Port Negotiation record of the host's NTS-KE overrides it.
    port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum BehaviorSection {
    Falseticker { offset: Secs },
    Kiss { code: String },
    Replay {},
    Malformed { how: Malformation },
    Silent {},
    Insane {},
    SecondReply {},
    Unsolicited {},
    ZeroOrigin {},
    BogusKiss { code: String },
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum JitterSection {
    None {},
    Exponential { mean: Dur },
    Normal { sd: Dur },
    Uniform { max: Dur },
    Pareto { scale: Dur, shape: f64 },
}

impl JitterSection {
    fn typed(self) -> Result<Jitter, String> {
        Ok(match self {
            JitterSection::None {} => Jitter::None,
            JitterSection::Exponential { mean } => Jitter::Exponential { mean_s: mean.0.as_secs_f64() },
            JitterSection::Normal { sd } => Jitter::Normal { sd_s: sd.0.as_secs_f64() },
            JitterSection::Uniform { max } => Jitter::Uniform { max_s: max.0.as_secs_f64() },
            JitterSection::Pareto { scale, shape } => {
                if !(shape.is_finite() && shape > 0.0) {
                    return Err(format!("pareto shape {shape} must be a positive number"));
                }
                if scale.0.is_zero() {
                    return Err("pareto scale must be positive".into());
                }
                Jitter::Pareto { scale_s: scale.0.as_secs_f64(), shape }
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LinkParamsSection {
    delay: Option<Dur>,
    jitter: Option<Spanned<JitterSection>>,
    loss: Option<Probability>,
    duplicate: Option<Probability>,
    reorder: Option<Probability>,
    reorder_delay: Option<Dur>,
    pass_every: Option<PassEvery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSection {
    between: Spanned<Vec<Spanned<String>>>,
    delay: Option<Dur>,
    jitter: Option<Spanned<JitterSection>>,
    loss: Option<Probability>,
    duplicate: Option<Probability>,
    reorder: Option<Probability>,
    reorder_delay: Option<Dur>,
    pass_every: Option<PassEvery>,
    forward: Option<Spanned<LinkParamsSection>>,
    backward: Option<Spanned<LinkParamsSection>>,
    attacker: Option<Spanned<AttackerSection>>,
}

/// `attacker = { .. }` on a `[[link]]`: probabilities of each tampering.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttackerSection {
    modify: Option<Probability>,
    strip: Option<Probability>,
    append: Option<Probability>,
    replay: Option<Probability>,
    reorder: Option<Probability>,
    forge: Option<Probability>,
    forge_kod: Option<Probability>,
    forge_ntsn: Option<Probability>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    Partition,
    Heal,
    SetLink,
    StepClock,
    SetFrequency,
    Stop,
    Start,
    KeDown,
    KeUp,
}

impl ActionName {
    const fn name(self) -> &'static str {
        match self {
            ActionName::Partition => "partition",
            ActionName::Heal => "heal",
            ActionName::SetLink => "set_link",
            ActionName::StepClock => "step_clock",
            ActionName::SetFrequency => "set_frequency",
            ActionName::Stop => "stop",
            ActionName::Start => "start",
            ActionName::KeDown => "ke_down",
            ActionName::KeUp => "ke_up",
        }
    }

    /// Keys besides `at` and `action`.
    const fn keys(self) -> &'static [&'static str] {
        match self {
            ActionName::Partition => &["hosts", "link", "direction", "until"],
            ActionName::Heal => &["hosts", "link", "direction"],
            ActionName::SetLink => &["link", "delay", "jitter", "loss", "duplicate", "reorder", "reorder_delay", "pass_every", "forward", "backward", "after_packets"],
            ActionName::StepClock => &["host", "by"],
            ActionName::SetFrequency => &["host", "frequency"],
            ActionName::Stop | ActionName::Start | ActionName::KeDown | ActionName::KeUp => &["host"],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSection {
    at: Spanned<Dur>,
    action: Spanned<ActionName>,
    hosts: Option<Spanned<Vec<Spanned<String>>>>,
    link: Option<Spanned<Vec<Spanned<String>>>>,
    direction: Option<Spanned<Direction>>,
    until: Option<Spanned<Dur>>,
    host: Option<Spanned<String>>,
    by: Option<Spanned<Secs>>,
    frequency: Option<Spanned<f64>>,
    delay: Option<Spanned<Dur>>,
    jitter: Option<Spanned<JitterSection>>,
    loss: Option<Spanned<Probability>>,
    duplicate: Option<Spanned<Probability>>,
    reorder: Option<Spanned<Probability>>,
    reorder_delay: Option<Spanned<Dur>>,
    pass_every: Option<Spanned<PassEvery>>,
    forward: Option<Spanned<LinkParamsSection>>,
    backward: Option<Spanned<LinkParamsSection>>,
    after_packets: Option<Spanned<u64>>,
}

impl EventSection {
    /// The keys given besides `at` and `action`, with their spans.
    fn given(&self) -> Vec<(&'static str, Range<usize>)> {
        fn s<T>(name: &'static str, v: &Option<Spanned<T>>) -> Option<(&'static str, Range<usize>)> {
            v.as_ref().map(|v| (name, v.span()))
        }
        [
            s("hosts", &self.hosts),
            s("link", &self.link),
            s("direction", &self.direction),
            s("until", &self.until),
            s("host", &self.host),
            s("by", &self.by),
            s("frequency", &self.frequency),
            s("delay", &self.delay),
            s("jitter", &self.jitter),
            s("loss", &self.loss),
            s("duplicate", &self.duplicate),
            s("reorder", &self.reorder),
            s("reorder_delay", &self.reorder_delay),
            s("pass_every", &self.pass_every),
            s("forward", &self.forward),
            s("backward", &self.backward),
            s("after_packets", &self.after_packets),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    name: Option<String>,
    host: Spanned<String>,
    metric: Spanned<Metric>,
    max: Option<Spanned<Secs>>,
    min: Option<Spanned<Secs>>,
    after: Option<Spanned<Dur>>,
    requirement: Option<String>,
    over: Option<Spanned<Over>>,
    within: Option<Spanned<Secs>>,
}

// ---------------------------------------------------------------------------
// Validation

impl Scenario {
    /// Reads and validates a scenario file. At most [`SCENARIO_BYTES_MAX`]
    /// bytes are read, whatever the file is (a device, a FIFO): a larger one
    /// is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = read_bounded(path, SCENARIO_BYTES_MAX).map_err(|(message, hint)| ScenarioError {
            origin: origin.clone(),
            line: None,
            column: None,
            message,
            hint,
            excerpt: None,
        })?;
        let text = match String::from_utf8(text) {
            Ok(t) => t,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
                let src = Source { text: &prefix, origin: &origin };
                return Err(src.error(Some(valid..valid), format!("the scenario is not UTF-8 text: invalid byte 0x{:02x} at offset {valid}", e.as_bytes()[valid]), Some("scenario files are TOML, which is UTF-8".into())));
            }
        };
        Scenario::parse(&text, &origin)
    }

    /// Parses and validates a scenario's text; `origin` names it in errors.
    /// Never panics, whatever the text.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let src = Source { text, origin };
        let file: ScenarioFile = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
        Validator {
            src: &src,
            names: BTreeMap::new(),
            hosts: Vec::new(),
            link_index: BTreeMap::new(),
            link_pairs: Vec::new(),
            start: NtpTime::UNIX_EPOCH,
            groups: BTreeMap::new(),
            nts_servers: Default::default(),
        }
        .run(file)
    }

    /// This scenario with another seed (the CLI's `--seed`).
    pub fn with_seed(mut self, seed: u64) -> Scenario {
        self.seed = seed;
        self
    }

    /// The host with this name.
    pub fn host_id(&self, name: &str) -> Option<HostId> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The link between two hosts, and whether `from` is its first host.
    pub fn link_between(&self, from: HostId, to: HostId) -> Option<(LinkId, Direction)> {
        self.links.iter().enumerate().find_map(|(i, l)| match l.hosts {
            [a, b] if a == from && b == to => Some((i, Direction::Forward)),
            [a, b] if a == to && b == from => Some((i, Direction::Backward)),
            _ => None,
        })
    }

    /// True time at the end of the run.
    pub fn end(&self) -> NtpTime {
        self.start + ntplab_proto::time::NtpDuration::from_nanos(i64::try_from(self.duration.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// Reads at most `limit` bytes of `path` (the daemon's bounded reader, which
/// reads configurations too); an error says what is wrong and what to do.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, (String, Option<String>)> {
    use ntplab_daemon::config::{read_file_bounded, BoundedReadError};
    let limit_hint = || Some(format!("scenario files are at most {} MiB; describe the run with fewer hosts, links or events", SCENARIO_BYTES_MAX >> 20));
    read_file_bounded(path, limit).map_err(|e| match e {
        BoundedReadError::Io(e) => (format!("cannot read the scenario: {e}"), None),
        BoundedReadError::Directory => ("cannot read the scenario: it is a directory".into(), Some("name a .toml file (`ntplab suite DIR` runs a directory)".into())),
        BoundedReadError::TooLarge(Some(len)) => (format!("the scenario is {len} bytes, more than the limit of {limit}"), limit_hint()),
        BoundedReadError::TooLarge(None) => (format!("the scenario is larger than the limit of {limit} bytes (reading stopped there)"), limit_hint()),
    })
}

struct Validator<'a> {
    src: &'a Source<'a>,
    names: BTreeMap<String, HostId>,
    /// Name span and role of each host so far.
    hosts: Vec<(Range<usize>, RoleName, IpAddr, Option<u16>)>,
    /// (lower id, higher id) -> link id.
    link_index: BTreeMap<(HostId, HostId), LinkId>,
    /// Each link's hosts in the order written.
    link_pairs: Vec<[HostId; 2]>,
    /// True time at the start (once known).
    start: NtpTime,
    /// Host groups (`count`): name -> member names.
    groups: BTreeMap<String, Vec<String>>,
    /// Hosts with `nts = { ... }`.
    nts_servers: std::collections::BTreeSet<HostId>,
}

type VResult<T> = Result<T, ScenarioError>;

impl Validator<'_> {
    fn err<T>(&self, spanned: &Spanned<T>, message: impl Into<String>, hint: Option<String>) -> ScenarioError {
        self.src.at(spanned, message, hint)
    }

    /// An error about a value inside the table `spanned`, pointing at the value the message names.
    fn err_at_value<T>(&self, spanned: &Spanned<T>, message: impl Into<String>, hint: Option<String>) -> ScenarioError {
        let message = message.into();
        let span = value_span_in(self.src.text, spanned.span(), &message);
        self.src.error(Some(span), message, hint)
    }

    fn run(mut self, mut file: ScenarioFile) -> VResult<Scenario> {
        let src = self.src;
        self.expand_groups(&mut file)?;
        let name = file.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(self.err(&file.name, "the scenario's name is empty", Some("say what the run shows, e.g. \"client: rejects a falseticker\"".into())));
        }
        let start = match &file.start {
            Some(s) => NtpTime::parse_rfc3339(s.get_ref()).map_err(|e| {
                self.err(s, format!("invalid start time {:?}: {e}", s.get_ref()), Some("write an RFC 3339 time such as \"2036-02-07T06:00:00Z\"".into()))
            })?,
            None => NtpTime::parse_rfc3339(DEFAULT_START).unwrap_or(NtpTime::UNIX_EPOCH),
        };
        let duration = file.duration.get_ref().0;
        if duration.is_zero() || duration > DURATION_MAX {
            return Err(self.err(&file.duration, format!("duration {duration:?} is outside (0, 3650d]"), Some(DURATION_FORMS.into())));
        }
        let (unix_start, _) = start.to_unix();
        let unix_end = unix_start.saturating_add(duration.as_secs() as i64 + 1);
        if unix_start < 0 || unix_end > PCAP_UNIX_SECS_MAX {
            let span = file.start.as_ref().map(|s| s.span()).unwrap_or(file.duration.span());
            return Err(src.error(
                Some(span),
                "the run must lie between 1970-01-01 and 2106-02-07T06:28:15Z",
                Some("packets.pcap timestamps are unsigned 32-bit Unix seconds; move `start` or shorten `duration`".into()),
            ));
        }
        let sample_interval = match &file.sample_interval {
            Some(s) => {
                let v = s.get_ref().0;
                if v < SAMPLE_INTERVAL_MIN || v > duration {
                    return Err(self.err(s, format!("sample_interval {v:?} must be between 1ms and the duration ({duration:?})"), None));
                }
                v
            }
            None => Duration::from_secs(1).min(duration),
        };
        let converged_after = match &file.converged_after {
            Some(c) => {
                if c.get_ref().0 > duration {
                    return Err(self.err(c, format!("converged_after {:?} is after the end of the run ({duration:?})", c.get_ref().0), None));
                }
                c.get_ref().0
            }
            None => duration / 4,
        };
        let lab_duration = match &file.lab_duration {
            Some(l) => {
                let v = l.get_ref().0;
                if v.is_zero() || v > duration {
                    return Err(self.err(l, format!("lab_duration {v:?} must be positive and at most the duration ({duration:?})"), None));
                }
                Some(v)
            }
            None => None,
        };
        let mut leap_seconds = Vec::new();
        for l in &file.leap_seconds {
            let leap = ntplab_daemon::config::parse_leap(l.get_ref()).map_err(|m| {
                self.err(l, format!("leap second {:?}: {m}", l.get_ref()), Some("write e.g. \"2016-12-31T23:59:60Z\" (inserted) or \"2015-06-30T23:59:59Z\" (deleted)".into()))
            })?;
            leap_seconds.push(leap);
        }
        self.start = start;
        if file.host.is_empty() {
            return Err(src.error(Some(0..0), "the scenario has no hosts", Some("add [[host]] tables with `name` and `address`".into())));
        }

        // Names and addresses first: sources may name hosts defined later.
        let mut addresses: BTreeMap<IpAddr, HostId> = BTreeMap::new();
        for (i, h) in file.host.iter().enumerate() {
            let n = h.get_ref().name.get_ref();
            if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(self.err(&h.get_ref().name, format!("invalid host name {n:?}"), Some("use 1-64 letters, digits, `-`, `_` or `.`".into())));
            }
            if let Some(&other) = self.names.get(n) {
                let (line, _, _) = locate(src.text, self.hosts[other].0.clone());
                return Err(self.err(&h.get_ref().name, format!("a second host is named `{n}`"), Some(format!("the first is on line {line}; host names must be unique"))));
            }
            let addr = *h.get_ref().address.get_ref();
            if addr.is_unspecified() || addr.is_multicast() || addr == IpAddr::from([255, 255, 255, 255]) {
                return Err(self.err(&h.get_ref().address, format!("{addr} cannot be a host's address"), Some("give a unicast address such as 10.0.0.1 or fd00::1".into())));
            }
            if let Some(&other) = addresses.get(&addr) {
                return Err(self.err(
                    &h.get_ref().address,
                    format!("address {addr} of host `{n}` is already host `{}`'s", file.host[other].get_ref().name.get_ref()),
                    Some("every host needs its own address".into()),
                ));
            }
            addresses.insert(addr, i);
            self.names.insert(n.clone(), i);
            let role = h.get_ref().role.as_ref().map_or(RoleName::Ntp, |r| *r.get_ref());
            let port = match h.get_ref().listen.as_ref().map(|l| *l.get_ref()) {
                Some(Listen::Off) => None,
                Some(Listen::Port(p)) => Some(p),
                None => Some(NTP_PORT),
            };
            if h.get_ref().nts.is_some() {
                self.nts_servers.insert(self.hosts.len());
            }
            self.hosts.push((h.get_ref().name.span(), role, addr, port));
        }

        // Links before hosts: a source needs a link to its server.
        let mut links = Vec::new();
        for l in &file.link {
            let link = self.link(l.get_ref(), links.len())?;
            links.push(link);
        }

        let mut hosts = Vec::new();
        for (i, h) in file.host.into_iter().enumerate() {
            hosts.push(self.host(i, h.into_inner())?);
        }

        let mut events = Vec::new();
        for e in &file.event {
            self.event(e, duration, &mut events)?;
        }
        events.sort_by_key(|e: &Event| e.at);
        self.check_up_down(&events, &file.event)?;

        let mut expectations = Vec::new();
        for x in file.expect {
            expectations.push(self.group_expectation(x.get_ref(), duration, converged_after)?);
        }
        self.check_trace_volume(&file.duration, file.sample_interval.as_ref(), sample_interval, &hosts, &links, &events)?;
        let seeds = match &file.seeds {
            Some(s) => parse_seeds(s.get_ref()).map_err(|m| self.err(s, m, None))?,
            None => Vec::new(),
        };
        let mut exercises: Vec<Exercise> = Vec::new();
        for x in &file.exercises {
            let (line, column, _) = locate(src.text, x.span());
            if exercises.iter().any(|e| e.check == *x.get_ref()) {
                return Err(self.err(x, format!("check `{}` is listed twice in `exercises`", x.get_ref()), None));
            }
            exercises.push(Exercise { check: x.get_ref().clone(), line, column });
        }

        Ok(Scenario {
            origin: src.origin.to_string(),
            name,
            description: file.description.unwrap_or_default().trim().to_string(),
            seed: file.seed.unwrap_or(1),
            start,
            duration,
            sample_interval,
            converged_after,
            lab_duration,
            leap_seconds,
            hosts,
            links,
            events,
            expectations,
            seeds,
            exercises,
        })
    }

    /// Refuses runs whose trace would outgrow [`SAMPLE_ROWS_MAX`] or [`DATAGRAMS_MAX`].
    fn check_trace_volume(
        &self,
        duration_key: &Spanned<Dur>,
        interval_key: Option<&Spanned<Dur>>,
        interval: Duration,
        hosts: &[Host],
        links: &[Link],
        events: &[Event],
    ) -> VResult<()> {
        let duration = duration_key.get_ref().0;
        let grid = duration.as_nanos() / interval.as_nanos().max(1) + 1;
        let rows = grid.saturating_mul(hosts.len() as u128);
        if rows > u128::from(SAMPLE_ROWS_MAX) {
            let span = interval_key.map_or(duration_key.span(), |k| k.span());
            return Err(self.src.error(
                Some(span),
                format!("`duration` / `sample_interval` gives {grid} sample times × {} hosts = {rows} rows of samples.csv, more than {SAMPLE_ROWS_MAX}", hosts.len()),
                Some(format!("raise `sample_interval` (at least {:?} here) or shorten `duration`", duration * hosts.len() as u32 / SAMPLE_ROWS_MAX as u32)),
            ));
        }
        let starts = 1 + events.iter().filter(|e| matches!(e.action, Action::Start { .. })).count() as u128;
        let duplicating = links.iter().any(|l| l.forward.duplicate > 0.0 || l.backward.duplicate > 0.0)
            || events.iter().any(|e| matches!(&e.action, Action::SetLink { forward, backward, .. } if forward.duplicate.is_some_and(|d| d > 0.0) || backward.duplicate.is_some_and(|d| d > 0.0)));
        let mut datagrams: u128 = 0;
        for h in hosts {
            let Role::Ntp(n) = &h.role else { continue };
            for src in &n.daemon.sources {
                let c = &src.config;
                let interval_ns = 1_000_000_000u128 << i32::from(c.poll_min_log2).clamp(0, 17);
                let per_poll = if c.burst { 8 } else { 1 };
                let polls = duration.as_nanos() / interval_ns + 1;
                let requests = polls * per_poll + if c.iburst { 8 * starts } else { 0 };
                datagrams = datagrams.saturating_add(2 * requests);
            }
        }
        if duplicating {
            datagrams = datagrams.saturating_mul(2);
        }
        if datagrams > u128::from(DATAGRAMS_MAX) {
            return Err(self.src.error(
                Some(duration_key.span()),
                format!("`duration` and the sources' `poll_min` give up to {datagrams} datagrams, more than {DATAGRAMS_MAX}"),
                Some("shorten `duration`, raise the sources' `poll_min`, drop `burst`, or use fewer clients".into()),
            ));
        }
        Ok(())
    }

    fn host_ref(&self, name: &Spanned<String>) -> VResult<HostId> {
        let n = name.get_ref();
        if let Some(&id) = self.names.get(n) {
            return Ok(id);
        }
        let mut by_id: Vec<(&HostId, &String)> = self.names.iter().map(|(n, id)| (id, n)).collect();
        by_id.sort();
        let all: Vec<&str> = by_id.into_iter().map(|(_, n)| n.as_str()).collect();
        let listing = if all.len() <= 12 { all.join(", ") } else { format!("{}, … ({} in all)", all[..12].join(", "), all.len()) };
        let hint = match closest(n, all.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? hosts are: {listing}"),
            None => format!("hosts are: {listing}"),
        };
        Err(self.err(name, format!("unknown host `{n}`"), Some(hint)))
    }

    fn pair(&self, between: &Spanned<Vec<Spanned<String>>>, what: &str) -> VResult<[HostId; 2]> {
        let v = between.get_ref();
        if v.len() != 2 {
            return Err(self.err(between, format!("{what} names {} hosts", v.len()), Some(format!("write {what} = [\"a\", \"b\"] with exactly two host names"))));
        }
        let a = self.host_ref(&v[0])?;
        let b = self.host_ref(&v[1])?;
        if a == b {
            return Err(self.err(&v[1], format!("{what} names host `{}` twice", v[0].get_ref()), Some("a link joins two different hosts".into())));
        }
        Ok([a, b])
    }

    fn find_link(&self, pair: [HostId; 2], spanned: &Spanned<Vec<Spanned<String>>>) -> VResult<LinkId> {
        let key = (pair[0].min(pair[1]), pair[0].max(pair[1]));
        match self.link_index.get(&key) {
            Some(&id) => Ok(id),
            None => {
                let names = spanned.get_ref();
                Err(self.err(
                    spanned,
                    format!("there is no [[link]] between `{}` and `{}`", names[0].get_ref(), names[1].get_ref()),
                    Some(format!("add [[link]] between = [\"{}\", \"{}\"]", names[0].get_ref(), names[1].get_ref())),
                ))
            }
        }
    }

    fn link(&mut self, l: &LinkSection, id: LinkId) -> VResult<Link> {
        let pair = self.pair(&l.between, "between")?;
        let key = (pair[0].min(pair[1]), pair[0].max(pair[1]));
        if let Some(&other) = self.link_index.get(&key) {
            return Err(self.err(&l.between, format!("a second [[link]] joins these hosts (the first is [[link]] #{})", other + 1), Some("merge them; use forward/backward for per-direction values".into())));
        }
        let (fa, fb) = (self.hosts[pair[0]].2, self.hosts[pair[1]].2);
        if fa.is_ipv4() != fb.is_ipv4() {
            return Err(self.err(&l.between, format!("this link joins an IPv4 host ({fa}) and an IPv6 host ({fb})"), Some("give both hosts addresses of the same family".into())));
        }
        let jitter = match &l.jitter {
            Some(j) => Some(j.get_ref().typed().map_err(|m| self.err(j, m, None))?),
            None => None,
        };
        let base = LinkParams {
            delay: l.delay.map_or(Duration::ZERO, |d| d.0),
            jitter: jitter.unwrap_or_default(),
            loss: l.loss.map_or(0.0, |p| p.0),
            duplicate: l.duplicate.map_or(0.0, |p| p.0),
            reorder: l.reorder.map_or(0.0, |p| p.0),
            reorder_delay: l.reorder_delay.map_or(Duration::ZERO, |d| d.0),
            pass_every: l.pass_every.map_or(1, |n| n.0),
        };
        let forward = self.params_patch(l.forward.as_ref())?.apply(&base);
        let backward = self.params_patch(l.backward.as_ref())?.apply(&base);
        for (p, dir) in [(&forward, "forward"), (&backward, "backward")] {
            if p.reorder > 0.0 && p.reorder_delay.is_zero() {
                return Err(self.err(&l.between, format!("the {dir} direction reorders packets (reorder = {}) but reorder_delay is 0", p.reorder), Some("set reorder_delay, e.g. reorder_delay = \"2ms\"".into())));
            }
        }
        let attacker = match &l.attacker {
            Some(a) => {
                let x = a.get_ref();
                let p = |v: Option<Probability>| v.map_or(0.0, |p| p.0);
                let c = crate::attacker::AttackerConfig {
                    modify: p(x.modify),
                    strip: p(x.strip),
                    append: p(x.append),
                    replay: p(x.replay),
                    reorder: p(x.reorder),
                    forge: p(x.forge),
                    forge_kod: p(x.forge_kod),
                    forge_ntsn: p(x.forge_ntsn),
                };
                c.validate().map_err(|m| self.err(a, m, Some("each is a probability per NTS reply (modify, strip, append, replay, reorder) or per NTS request (forge, forge_kod, forge_ntsn)".into())))?;
                Some(c)
            }
            None => None,
        };
        self.link_index.insert(key, id);
        self.link_pairs.push(pair);
        Ok(Link { hosts: pair, forward, backward, attacker })
    }

    fn params_patch(&self, p: Option<&Spanned<LinkParamsSection>>) -> VResult<LinkPatch> {
        let Some(p) = p else { return Ok(LinkPatch::default()) };
        let s = p.get_ref();
        let jitter = match &s.jitter {
            Some(j) => Some(j.get_ref().typed().map_err(|m| self.err(j, m, None))?),
            None => None,
        };
        Ok(LinkPatch {
            delay: s.delay.map(|d| d.0),
            jitter,
            loss: s.loss.map(|p| p.0),
            duplicate: s.duplicate.map(|p| p.0),
            reorder: s.reorder.map(|p| p.0),
            reorder_delay: s.reorder_delay.map(|d| d.0),
            pass_every: s.pass_every.map(|n| n.0),
        })
    }

    fn clock(&self, c: &HostClockSection) -> VResult<ClockSpec> {
        fn finite(v: &Option<Spanned<f64>>, limit: f64, what: &str, v_err: &Validator<'_>) -> VResult<f64> {
            match v {
                Some(s) if !(s.get_ref().is_finite() && s.get_ref().abs() <= limit) => {
                    Err(v_err.err(s, format!("clock {what} {} is outside ±{limit:e}", s.get_ref()), None))
                }
                Some(s) => Ok(*s.get_ref()),
                None => Ok(0.0),
            }
        }
        let non_negative = |v: &Option<Spanned<Secs>>, what: &str| -> VResult<f64> {
            match v {
                Some(s) if s.get_ref().value < 0.0 || s.get_ref().value > 1.0 => {
                    Err(self.err(s, format!("clock {what} {} s must be between 0 and 1 s", s.get_ref().value), None))
                }
                Some(s) => Ok(s.get_ref().value),
                None => Ok(0.0),
            }
        };
        let offset_s = match &c.offset {
            Some(s) if s.get_ref().value.abs() >= 2f64.powi(31) => {
                return Err(self.err(s, format!("clock offset {} s is beyond ±68 years", s.get_ref().value), None))
            }
            Some(s) => s.get_ref().value,
            None => 0.0,
        };
        let frequency = finite(&c.frequency, 0.1, "frequency", self)?;
        let wander = finite(&c.wander, 0.1, "wander", self)?;
        if wander < 0.0 {
            return Err(self.err(c.wander.as_ref().expect("negative only when given"), "clock wander cannot be negative", Some("wander is a standard deviation (s/s per √s)".into())));
        }
        let sine = match &c.sine {
            Some(s) => {
                let sr = s.get_ref();
                let amplitude = finite(&sr.amplitude, 0.1, "sine amplitude", self)?;
                let phase_rad = finite(&sr.phase, 1e6, "sine phase", self)?;
                let period_s = sr.period.as_ref().map_or(0.0, |p| p.get_ref().0.as_secs_f64());
                if amplitude != 0.0 && period_s <= 0.0 {
                    return Err(self.err(s, "a clock sine with an amplitude needs a positive period", Some("e.g. sine = { amplitude = 1e-7, period = \"24h\" }".into())));
                }
                SineSpec { amplitude, period_s, phase_rad }
            }
            None => SineSpec::default(),
        };
        let frequency_file = match &c.frequency_file {
            Some(f) => {
                for (key, given) in [("frequency", &c.frequency), ("wander", &c.wander)] {
                    if let Some(v) = given {
                        return Err(self.err(v, format!("clock `{key}` and `frequency_file` both give the frequency"), Some(format!("the file holds the whole frequency error, one value a second; drop `{key}`"))));
                    }
                }
                Some(self.frequency_file(f)?)
            }
            None => None,
        };
        Ok(ClockSpec {
            offset_s,
            frequency,
            wander,
            noise_s: non_negative(&c.noise, "noise")?,
            precision_s: non_negative(&c.precision, "precision")?,
            sine,
            frequency_file,
        })
    }

    /// Reads a clock's `frequency_file`, relative to the scenario's directory.
    fn frequency_file(&self, f: &Spanned<String>) -> VResult<FrequencyFile> {
        let dir = Path::new(self.src.origin).parent().unwrap_or(Path::new(""));
        let path = dir.join(f.get_ref());
        let shown = path.display().to_string();
        let text = match ntplab_daemon::config::read_file_bounded(&path, FREQUENCY_FILE_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(e) => {
                use ntplab_daemon::config::BoundedReadError;
                let why = match e {
                    BoundedReadError::Io(e) => e.to_string(),
                    BoundedReadError::Directory => "it is a directory".into(),
                    BoundedReadError::TooLarge(_) => format!("it is larger than {} MiB", FREQUENCY_FILE_BYTES_MAX >> 20),
                };
                return Err(self.err(f, format!("cannot read the clock's frequency_file {shown}: {why}"), Some("a text file of frequency errors (s/s), one a line, for each second of the run; a relative path starts at the scenario's directory".into())));
            }
        };
        let text = String::from_utf8_lossy(&text);
        let mut values = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<f64>() {
                Ok(v) if v.is_finite() && v.abs() <= 0.1 => values.push(v),
                _ => {
                    let shown_line: String = line.chars().take(40).collect();
                    return Err(self.err(f, format!("frequency_file {shown}, line {}: `{shown_line}` is not a frequency error within ±0.1 s/s", n + 1), Some("one number a line, e.g. 1.0000234e-4".into())));
                }
            }
        }
        if values.is_empty() {
            return Err(self.err(f, format!("frequency_file {shown} holds no value"), Some("one frequency error (s/s) a line, for each second of the run".into())));
        }
        Ok(FrequencyFile { path: shown, values: values.into() })
    }

    /// The hardware of a host's `refclock`.
    fn refclock_model(&self, r: &Spanned<RefclockModelSection>) -> VResult<SimRefclockConfig> {
        let m = r.get_ref();
        let mut config = SimRefclockConfig::new(m.kind);
        let ns = |d: Duration| NtpDuration::from_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let long = |what: &str, v: Duration| -> VResult<()> {
            if v >= Duration::from_secs(1) {
                return Err(self.err_at_value(r, format!("refclock {what} {v:?} must be below 1 s"), None));
            }
            Ok(())
        };
        let defaults = PpsModelConfig::default();
        config.pps = PpsModelConfig {
            delay: m.pps_delay.map_or(defaults.delay, |d| ns(d.0)),
            jitter_sd: m.pps_jitter.map_or(defaults.jitter_sd, |d| ns(d.0)),
            dropout_probability: m.pps_dropout.map_or(0.0, |p| p.0),
            outlier_probability: m.pps_outlier.map_or(0.0, |p| p.0),
            outlier_offset_max: m.pps_outlier_max.map_or(defaults.outlier_offset_max, |d| ns(d.0)),
        };
        for (what, v) in [("pps_delay", m.pps_delay), ("pps_jitter", m.pps_jitter), ("pps_outlier_max", m.pps_outlier_max)] {
            if let Some(v) = v {
                long(what, v.0)?;
            }
        }
        let timing = SerialTiming::default();
        let latency = m.gps_latency.map_or(timing.latency_min, |d| ns(d.0));
        let spread = m.gps_latency_jitter.map_or(timing.latency_max - timing.latency_min, |d| ns(d.0));
        if (latency + spread).to_seconds_f64() >= 1.0 {
            return Err(self.err(r, "refclock gps_latency + gps_latency_jitter must be below 1 s", Some("sentences must arrive within the second they name".into())));
        }
        let baud = m.baud.unwrap_or(timing.baud_rate_bps);
        if !ntplab_daemon::config::BAUD_RATES.contains(&baud) {
            return Err(self.err_at_value(r, format!("refclock baud {baud} is not one of {:?}", ntplab_daemon::config::BAUD_RATES), None));
        }
        config.gps.timing = SerialTiming { latency_min: latency, latency_max: latency + spread, baud_rate_bps: baud, ..timing };
        for (list, fix_loss) in [(&m.fix_loss, true), (&m.wnro, false)] {
            for w in list {
                let (from, until) = (w.get_ref().from.0, w.get_ref().until.0);
                if from >= until {
                    return Err(self.err(w, format!("window from {from:?} until {until:?} is empty"), Some("`until` comes after `from`; both are times since the start".into())));
                }
                let (from, until) = (self.start + ns(from), self.start + ns(until));
                config.gps.faults.push(if fix_loss { GpsFault::FixLoss { from, until } } else { GpsFault::Wnro { from, until } });
            }
        }
        Ok(config)
    }

    fn host(&self, id: HostId, h: HostSection) -> VResult<Host> {
        let (_, role, address, port) = self.hosts[id].clone();
        let name = h.name.get_ref().clone();
        let implementation_key = h.implementation.clone();
        let clock = self.clock(h.clock.as_ref().unwrap_or(&HostClockSection::default()))?;
        let wrong_role = |key: &str, span: Range<usize>, takes: &str| {
            let (is, other) = match role {
                RoleName::Ntp => ("ntp", "scripted"),
                RoleName::Scripted => ("scripted", "ntp"),
            };
            self.src.error(Some(span), format!("host `{name}` has role \"{is}\", which takes no `{key}`"), Some(format!("`{key}` belongs to role \"{other}\"; role \"{is}\" takes {takes}")))
        };
        const NTP_KEYS: &str = "listen, local_stratum, interleaved, ntpv5, sources, rate_limit, access, smear, refclock, discipline, drift, step, poll_target, min_sources, max_distance, max_change, nts";
        const SCRIPTED_KEYS: &str = "listen, behavior, stratum";
        let refclock = match (&h.refclock, role) {
            (Some(r), RoleName::Ntp) => Some(self.refclock_model(r)?),
            _ => None,
        };
        let role = match role {
            RoleName::Ntp => {
                if let Some(b) = &h.behavior {
                    return Err(wrong_role("behavior", b.span(), NTP_KEYS));
                }
                if let Some(s) = &h.stratum {
                    return Err(wrong_role("stratum", s.span(), "local_stratum for its own clock's stratum"));
                }
                Role::Ntp(self.ntp_host(id, &name, address, port, h)?)
            }
            RoleName::Scripted => {
                let given = [
                    ("local_stratum", h.local_stratum.as_ref().map(|s| s.span())),
                    ("interleaved", h.interleaved.as_ref().map(|s| s.span())),
                    ("ntpv5", h.ntpv5.as_ref().map(|s| s.span())),
                    ("sources", h.sources.as_ref().map(|s| s.span())),
                    ("rate_limit", h.rate_limit.as_ref().map(|s| s.span())),
                    ("access", h.access.as_ref().map(|s| s.span())),
                    ("smear", h.smear.as_ref().map(|s| s.span())),
                    ("refclock", h.refclock.as_ref().map(|s| s.span())),
                    ("discipline", h.discipline.as_ref().map(|s| s.span())),
                    ("drift", h.drift.as_ref().map(|s| s.span())),
                    ("step", h.step.as_ref().map(|s| s.span())),
                    ("poll_target", h.poll_target.as_ref().map(|s| s.span())),
                    ("min_sources", h.min_sources.as_ref().map(|s| s.span())),
                    ("max_distance", h.max_distance.as_ref().map(|s| s.span())),
                    ("max_change", h.max_change.as_ref().map(|s| s.span())),
                    ("nts", h.nts.as_ref().map(|s| s.span())),
                ];
                if let Some((key, Some(span))) = given.into_iter().find(|(_, s)| s.is_some()) {
                    return Err(wrong_role(key, span, SCRIPTED_KEYS));
                }
                let Some(port) = port else {
                    let l = h.listen.as_ref().expect("no port only when listen = false");
                    return Err(self.err(l, format!("scripted host `{name}` must listen"), Some("write listen = true (port 123) or a port number".into())));
                };
                let Some(b) = &h.behavior else {
                    return Err(self.err(&h.name, format!("scripted host `{name}` has no `behavior`"), Some("add e.g. behavior = { kind = \"falseticker\", offset = 2.0 }; kinds: falseticker, kiss, replay, malformed, silent, insane, second-reply, unsolicited, zero-origin, bogus-kiss".into())));
                };
                let behavior = match b.get_ref() {
                    BehaviorSection::Falseticker { offset } => {
                        if offset.value.abs() >= 2f64.powi(31) {
                            return Err(self.err(b, format!("falseticker offset {} s is beyond ±68 years", offset.value), None));
                        }
                        Behavior::Falseticker { offset_s: offset.value }
                    }
                    BehaviorSection::Kiss { code } | BehaviorSection::BogusKiss { code } => {
                        if code.is_empty() || code.len() > 4 || !code.bytes().all(|c| c.is_ascii_graphic()) {
                            return Err(self.err(b, format!("kiss code {code:?} must be 1-4 printable ASCII characters"), Some("e.g. RATE, DENY, RSTR, INIT, STEP".into())));
                        }
                        let code = ReferenceId::from_ascii(code);
                        if matches!(b.get_ref(), BehaviorSection::Kiss { .. }) {
                            Behavior::Kiss { code }
                        } else {
                            Behavior::BogusKiss { code }
                        }
                    }
                    BehaviorSection::Replay {} => Behavior::Replay,
                    BehaviorSection::Malformed { how } => Behavior::Malformed { how: *how },
                    BehaviorSection::Silent {} => Behavior::Silent,
                    BehaviorSection::Insane {} => Behavior::Insane,
                    BehaviorSection::SecondReply {} => Behavior::SecondReply,
                    BehaviorSection::Unsolicited {} => Behavior::Unsolicited,
                    BehaviorSection::ZeroOrigin {} => Behavior::ZeroOrigin,
                };
                let stratum = match &h.stratum {
                    Some(s) if !(1..=15).contains(s.get_ref()) => return Err(self.err(s, format!("stratum {} is outside 1-15", s.get_ref()), None)),
                    Some(s) => *s.get_ref(),
                    None => 1,
                };
                Role::Scripted(ScriptedHost { port, behavior, stratum })
            }
        };
        let implementation = match &implementation_key {
            Some(i) if *i.get_ref() != Implementation::Ntplab && !matches!(role, Role::Ntp(_)) => {
                return Err(self.err(i, format!("`impl = \"{}\"` is for role \"ntp\" hosts; a scripted peer is ntplab's own", i.get_ref().name()), None));
            }
            Some(i) => *i.get_ref(),
            None => Implementation::Ntplab,
        };
        Ok(Host { name, address, clock, role, refclock, implementation })
    }

    /// `host` for an NTS-KE event: it must serve NTS.
    fn nts_server_ref(&self, host: HostId, action: &Spanned<ActionName>) -> VResult<HostId> {
        if self.nts_servers.contains(&host) {
            return Ok(host);
        }
        Err(self.err(action, format!("`{}` is about NTS-KE, and this host does not serve NTS", action.get_ref().name()), Some("give the host nts = {}".into())))
    }

    /// `nts = { ... }`: the daemon's [nts] section (the certificate and key
    /// are made per run, see [`crate::nts::Pki`]) and which certificate.
    fn nts_host(&self, name: &str, n: Option<&Spanned<NtsHostSection>>, port: Option<u16>) -> VResult<(Option<NtsSection>, Option<crate::nts::CertificateKind>)> {
        let Some(n) = n else { return Ok((None, None)) };
        if port.is_none() {
            return Err(self.err(n, format!("host `{name}` serves NTS but listens for no NTP (listen = false)"), Some("remove `listen = false`".into())));
        }
        let section = n.get_ref();
        let kind = match &section.certificate {
            None => crate::nts::CertificateKind::Valid,
            Some(c) => crate::nts::CertificateKind::parse(c.get_ref()).ok_or_else(|| {
                self.err(c, format!("certificate {:?} is not one of {}", c.get_ref(), crate::nts::CertificateKind::NAMES.map(|x| format!("{x:?}")).join(", ")), None)
            })?,
        };
        if let Some(aeads) = &section.aeads {
            ntplab_daemon::config::check_aeads(Some(aeads.get_ref())).map_err(|m| self.err(aeads, m, Some("IDs 15, 17, 30".into())))?;
        }
        let key_rotation = match &section.key_rotation {
            Some(k) if k.get_ref().0 < Duration::from_secs(1) => return Err(self.err(k, "key_rotation must be at least 1s", None)),
            Some(k) => Some(k.get_ref().0.as_secs_f64()),
            None => None,
        };
        let nts = NtsSection {
            certificate: "sim:certificate".into(),
            key: "sim:key".into(),
            ke_listen: None,
            key_rotation,
            ntp_server: section.ntp_server.clone(),
            ntp_port: section.ntp_port,
            ke_connections: None,
            ke_timeout: None,
            aeads: section.aeads.as_ref().map(|a| a.get_ref().clone()),
        };
        Ok((Some(nts), Some(kind)))
    }

    fn ntp_host(&self, id: HostId, name: &str, address: IpAddr, port: Option<u16>, h: HostSection) -> VResult<NtpHost> {
        let (nts, nts_certificate) = self.nts_host(name, h.nts.as_ref(), port)?;
        let mut sources = Vec::new();
        let mut specs = Vec::new();
        let entries = h.sources.map(|s| s.into_inner()).unwrap_or_default();
        for entry in &entries {
            let e = entry.get_ref();
            let target = self.host_ref(&e.host)?;
            let tname = e.host.get_ref();
            if target == id {
                return Err(self.err(&e.host, format!("host `{name}` lists itself as a source"), None));
            }
            if sources.contains(&target) {
                return Err(self.err(&e.host, format!("host `{name}` lists source `{tname}` twice"), None));
            }
            let key = (id.min(target), id.max(target));
            if !self.link_index.contains_key(&key) {
                return Err(self.err(
                    &e.host,
                    format!("host `{name}` lists source `{tname}`, but no [[link]] connects them"),
                    Some(format!("add [[link]] between = [\"{name}\", \"{tname}\"]")),
                ));
            }
            let (_, _, taddr, tport) = self.hosts[target];
            if e.nts && !self.nts_servers.contains(&target) {
                return Err(self.err(
                    &e.host,
                    format!("host `{name}` uses NTS with `{tname}`, which does not serve NTS"),
                    Some(format!("add nts = {{}} to host `{tname}`")),
                ));
            }
            let Some(tport) = tport else {
                return Err(self.err(&e.host, format!("source `{tname}` serves nobody (listen = false)"), Some(format!("remove `listen = false` from host `{tname}`"))));
            };
            sources.push(target);
            specs.push((entry.span(), SourceSection {
                address: SocketAddr::new(taddr, e.port.unwrap_or(tport)),
                iburst: e.iburst,
                burst: e.burst,
                poll_min: e.poll_min,
                poll_max: e.poll_max,
                version: e.version,
                draft: e.draft.clone(),
                unsmear: e.unsmear,
                interleaved: e.interleaved,
                nts: e.nts,
                ke_server: None,
                trusted_certificates: None,
                aeads: e.aeads.clone(),
                max_delay: e.max_delay.map(|d| d.value),
                max_delay_ratio: e.max_delay_ratio,
                max_delay_dev_ratio: e.max_delay_dev_ratio,
                noselect: e.noselect,
                prefer: e.prefer,
                trust: e.trust,
                require: e.require,
            }));
        }
        // The daemon reads the host's simulated hardware: its device paths only name it.
        let refclocks: Vec<RefclockSection> = h
            .refclock
            .as_ref()
            .map(|r| {
                let r = r.get_ref();
                RefclockSection {
                    kind: r.kind,
                    serial: r.kind.uses_serial().then(|| "sim:gps".to_string()),
                    baud: r.baud.filter(|_| r.kind.uses_serial()),
                    pps_socket: r.kind.uses_pps().then(|| "sim:pps".to_string()),
                    pps_device: None,
                    refid: r.refid.clone(),
                    delay: r.delay.map(|d| d.0.as_secs_f64()),
                    offset: r.offset.map(|o| o.value),
                    filter: r.filter,
                }
            })
            .into_iter()
            .collect();
        if let Some(d) = &h.discipline {
            if !DISCIPLINES.contains(&d.get_ref().as_str()) {
                return Err(self.err(d, format!("discipline {:?} is not one of {}", d.get_ref(), DISCIPLINES.map(|x| format!("{x:?}")).join(", ")), Some("as the daemon's [clock] discipline".into())));
            }
        }
        // The drift file the daemon would read (chrony's FREQ = the error
        // in ppm), checked by the daemon's own range check, with its sign.
        let initial_frequency = match &h.drift {
            None => None,
            Some(d) => Some(
                ntplab_daemon::drift::correction_from_ppm(-(d.get_ref() * 1e6))
                    .map_err(|m| self.err(d, format!("drift: {m} (s/s: {})", d.get_ref()), Some("the clock's frequency error as the daemon's drift file holds it, s/s (positive: the clock gains), within ±0.1005".into())))?,
            ),
        };
        let mut span_of_source = Vec::new();
        let mut source_sections = Vec::new();
        for (span, s) in specs {
            span_of_source.push(span);
            source_sections.push(s);
        }
        // Where the daemon's tables are written, for its messages ("[rate_limit] slots 0 ...").
        let sections = [
            ("[rate_limit]", h.rate_limit.as_ref().map(|s| s.span())),
            ("[access]", h.access.as_ref().map(|s| s.span())),
            ("[smear]", h.smear.as_ref().map(|s| s.span())),
            ("[[refclock]]", h.refclock.as_ref().map(|s| s.span())),
            ("[local]", h.local_stratum.as_ref().map(|s| s.span())),
            ("[clock] step_", h.step.as_ref().map(|s| s.span())),
            ("[clock] panic_", h.step.as_ref().map(|s| s.span())),
            ("[clock] poll_target", h.poll_target.as_ref().map(|s| s.span())),
            ("min_sources = ", h.min_sources.as_ref().map(|s| s.span())),
            ("max_distance = ", h.max_distance.as_ref().map(|s| s.span())),
            ("[clock] max_change", h.max_change.as_ref().map(|s| s.span())),
        ];
        let step = h.step.as_ref().map(|s| *s.get_ref());
        let file = ConfigFile {
            listen: port.map(|p| SocketAddr::new(address, p)).into_iter().collect(),
            local: h.local_stratum.as_ref().map(|s| LocalSection { stratum: *s.get_ref(), reference_id: None, leap: None }),
            sources: source_sections,
            access: h.access.map(Spanned::into_inner).unwrap_or_default(),
            rate_limit: h.rate_limit.map(Spanned::into_inner),
            smear: h.smear.map(Spanned::into_inner),
            clock: ClockSection {
                discipline: h.discipline.as_ref().map(|d| d.get_ref().clone()),
                step_threshold: step.and_then(|s| s.threshold),
                step_updates: step.and_then(|s| s.updates),
                panic_threshold: step.and_then(|s| s.panic_threshold),
                panic_at_start: step.and_then(|s| s.panic_at_start),
                poll_target: h.poll_target.as_ref().map(|n| *n.get_ref()),
                max_change: h.max_change.as_ref().map(|m| *m.get_ref()),
                ..ClockSection::default()
            },
            interleaved: h.interleaved.map(Spanned::into_inner),
            ntpv5: h.ntpv5.map(Spanned::into_inner),
            tai_offset: None,
            min_sources: h.min_sources.as_ref().map(|n| *n.get_ref()),
            max_distance: h.max_distance.as_ref().map(|d| *d.get_ref()),
            refclocks,
            nts: nts.clone(),
            server: None,
        };
        let mut daemon = file.validate(&format!("host `{name}`")).map_err(|e| {
            // Point at the offending value where the daemon's message names its table.
            let m = e.0.clone();
            let section = span_for_daemon_error(&m, &span_of_source)
                .or_else(|| sections.iter().find(|(tag, _)| m.contains(tag)).and_then(|(_, span)| span.clone()));
            let span = section.map_or_else(|| h.name.span(), |s| value_span_in(self.src.text, s, &m));
            let hint = m.contains("nothing to do").then(|| "give the host `sources`, `local_stratum` with a listening port, or both".to_string());
            self.src.error(Some(span), m, hint)
        })?;
        daemon.initial_frequency = initial_frequency;
        Ok(NtpHost { daemon, sources, nts_certificate })
    }

    fn event(&self, e: &Spanned<EventSection>, duration: Duration, out: &mut Vec<Event>) -> VResult<()> {
        let s = e.get_ref();
        let action = *s.action.get_ref();
        let at = s.at.get_ref().0;
        if at > duration {
            return Err(self.err(&s.at, format!("event at {at:?} is after the end of the run ({duration:?})"), None));
        }
        let allowed = action.keys();
        for (key, span) in s.given() {
            if !allowed.contains(&key) {
                return Err(self.src.error(
                    Some(span),
                    format!("a `{}` event takes no `{key}`", action.name()),
                    Some(format!("`{}` takes: at, action, {}", action.name(), allowed.join(", "))),
                ));
            }
        }
        let need_host = |what: &str| -> VResult<HostId> {
            match &s.host {
                Some(h) => self.host_ref(h),
                None => Err(self.err(&s.action, format!("a `{}` event needs `host`", action.name()), Some(format!("add host = \"…\"{what}")))),
            }
        };
        let cut = |required: bool| -> VResult<Option<Cut>> {
            match (&s.hosts, &s.link) {
                (Some(h), Some(_)) => Err(self.err(h, "give `hosts` or `link`, not both", None)),
                (Some(h), None) => {
                    if let Some(d) = &s.direction {
                        return Err(self.err(d, "`direction` applies to a `link`, not to `hosts`", None));
                    }
                    if h.get_ref().is_empty() {
                        return Err(self.err(h, "`hosts` is empty", Some("name the hosts to isolate".into())));
                    }
                    let mut ids = Vec::new();
                    for n in h.get_ref() {
                        let id = self.host_ref(n)?;
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    Ok(Some(Cut::Hosts(ids)))
                }
                (None, Some(l)) => {
                    let pair = self.pair(l, "link")?;
                    let link = self.find_link(pair, l)?;
                    let direction = s.direction.as_ref().map_or(Direction::Both, |d| *d.get_ref());
                    // `direction` is relative to the order written here; store it relative to the link.
                    let direction = match (direction, self.same_order(link, pair)) {
                        (d, true) | (d @ Direction::Both, false) => d,
                        (Direction::Forward, false) => Direction::Backward,
                        (Direction::Backward, false) => Direction::Forward,
                    };
                    Ok(Some(Cut::Link { link, direction }))
                }
                (None, None) if required => Err(self.err(
                    &s.action,
                    format!("a `{}` event needs `hosts` or `link`", action.name()),
                    Some("write hosts = [\"a\"] to isolate hosts or link = [\"a\", \"b\"] to cut one link".into()),
                )),
                (None, None) => Ok(None),
            }
        };
        let action_value = match action {
            ActionName::Partition => {
                let c = cut(true)?.expect("required");
                if let Some(u) = &s.until {
                    let until = u.get_ref().0;
                    if until <= at || until > duration {
                        return Err(self.err(u, format!("until {until:?} must be after `at` ({at:?}) and no later than the end ({duration:?})"), Some("`until` is a time since the start, like `at`".into())));
                    }
                    out.push(Event { at: until, action: Action::Heal(Some(c.clone())) });
                }
                Action::Partition(c)
            }
            ActionName::Heal => Action::Heal(cut(false)?),
            ActionName::SetLink => {
                let Some(l) = &s.link else {
                    return Err(self.err(&s.action, "a `set_link` event needs `link`", Some("add link = [\"a\", \"b\"]".into())));
                };
                let pair = self.pair(l, "link")?;
                let link = self.find_link(pair, l)?;
                let jitter = match &s.jitter {
                    Some(j) => Some(j.get_ref().typed().map_err(|m| self.err(j, m, None))?),
                    None => None,
                };
                let both = LinkPatch {
                    delay: s.delay.as_ref().map(|d| d.get_ref().0),
                    jitter,
                    loss: s.loss.as_ref().map(|p| p.get_ref().0),
                    duplicate: s.duplicate.as_ref().map(|p| p.get_ref().0),
                    reorder: s.reorder.as_ref().map(|p| p.get_ref().0),
                    reorder_delay: s.reorder_delay.as_ref().map(|d| d.get_ref().0),
                    pass_every: s.pass_every.as_ref().map(|n| n.get_ref().0),
                };
                let mut fwd = self.params_patch(s.forward.as_ref())?;
                let mut bwd = self.params_patch(s.backward.as_ref())?;
                for p in [&mut fwd, &mut bwd] {
                    p.delay = p.delay.or(both.delay);
                    p.jitter = p.jitter.or(both.jitter);
                    p.loss = p.loss.or(both.loss);
                    p.duplicate = p.duplicate.or(both.duplicate);
                    p.reorder = p.reorder.or(both.reorder);
                    p.reorder_delay = p.reorder_delay.or(both.reorder_delay);
                    p.pass_every = p.pass_every.or(both.pass_every);
                }
                if fwd == LinkPatch::default() && bwd == LinkPatch::default() {
                    return Err(self.err(&s.action, "this `set_link` event changes nothing", Some(format!("give some of: {}", ActionName::SetLink.keys()[1..].join(", ")))));
                }
                if !self.same_order(link, pair) {
                    std::mem::swap(&mut fwd, &mut bwd);
                }
                let after_packets = match &s.after_packets {
                    Some(n) if !(1..=AFTER_PACKETS_MAX).contains(n.get_ref()) => {
                        return Err(self.err(
                            n,
                            format!("after_packets {} must be between 1 and {AFTER_PACKETS_MAX}", n.get_ref()),
                            Some("the change applies from the packet after the N-th one each changed direction carries from `at` on".into()),
                        ))
                    }
                    n => n.as_ref().map(|n| *n.get_ref()),
                };
                Action::SetLink { link, forward: Box::new(fwd), backward: Box::new(bwd), after_packets }
            }
            ActionName::StepClock => {
                let host = need_host(", by = 0.5")?;
                let Some(by) = &s.by else {
                    return Err(self.err(&s.action, "a `step_clock` event needs `by`", Some("add by = 0.5 (seconds; negative steps back)".into())));
                };
                if by.get_ref().value.abs() >= 2f64.powi(31) {
                    return Err(self.err(by, "a step beyond ±68 years", None));
                }
                Action::StepClock { host, by_s: by.get_ref().value }
            }
            ActionName::SetFrequency => {
                let host = need_host(", frequency = 1e-5")?;
                let Some(f) = &s.frequency else {
                    return Err(self.err(&s.action, "a `set_frequency` event needs `frequency`", Some("add frequency = 1e-5 (s/s)".into())));
                };
                if !(f.get_ref().is_finite() && f.get_ref().abs() <= 0.1) {
                    return Err(self.err(f, format!("frequency {} is outside ±0.1", f.get_ref()), None));
                }
                Action::SetFrequency { host, frequency: *f.get_ref() }
            }
            ActionName::Stop => Action::Stop { host: need_host("")? },
            ActionName::Start => Action::Start { host: need_host("")? },
            ActionName::KeDown => Action::KeDown { host: self.nts_server_ref(need_host("")?, &s.action)? },
            ActionName::KeUp => Action::KeUp { host: self.nts_server_ref(need_host("")?, &s.action)? },
        };
        out.push(Event { at, action: action_value });
        Ok(())
    }

    /// Whether `pair` names the link's hosts in the order its [[link]] does.
    fn same_order(&self, link: LinkId, pair: [HostId; 2]) -> bool {
        self.link_pairs.get(link).is_some_and(|p| p[0] == pair[0])
    }

    /// `stop` of a stopped host or `start` of a running one is a mistake in the timeline.
    fn check_up_down(&self, events: &[Event], sections: &[Spanned<EventSection>]) -> VResult<()> {
        let mut down: BTreeMap<HostId, ()> = BTreeMap::new();
        for e in events {
            let (host, stopping) = match e.action {
                Action::Stop { host } => (host, true),
                Action::Start { host } => (host, false),
                _ => continue,
            };
            let name = self.names.iter().find(|(_, &id)| id == host).map_or("", |(n, _)| n.as_str());
            let is_down = down.contains_key(&host);
            if stopping == is_down {
                let span = sections
                    .iter()
                    .find(|s| s.get_ref().at.get_ref().0 == e.at && s.get_ref().host.as_ref().is_some_and(|h| h.get_ref() == name))
                    .map(|s| s.get_ref().action.span());
                let msg = if stopping { format!("host `{name}` is stopped twice") } else { format!("host `{name}` is started while it runs") };
                return Err(self.src.error(span, msg, Some("hosts run from the start; alternate `stop` and `start`".into())));
            }
            if stopping {
                down.insert(host, ());
            } else {
                down.remove(&host);
            }
        }
        Ok(())
    }

    fn expectation(&self, x: &ExpectSection, duration: Duration, converged_after: Duration) -> VResult<Expectation> {
        let host = self.host_ref(&x.host)?;
        let metric = *x.metric.get_ref();
        if metric.needs_daemon() && self.hosts[host].1 == RoleName::Scripted {
            return Err(self.err(&x.metric, format!("`{}` needs a host running the daemon; `{}` is scripted", metric.name(), x.host.get_ref()), None));
        }
        let bound = |b: &Option<Spanned<Secs>>| -> VResult<Option<f64>> {
            let Some(b) = b else { return Ok(None) };
            let v = b.get_ref();
            if metric.unit() != "s" && v.textual {
                return Err(self.err(b, format!("`{}` is in {}, not a duration", metric.name(), metric.unit()), Some("write a plain number".into())));
            }
            if v.value < 0.0 {
                return Err(self.err(b, format!("a bound on `{}` cannot be negative", metric.name()), None));
            }
            Ok(Some(v.value))
        };
        let max = bound(&x.max)?;
        let min = bound(&x.min)?;
        let within = match &x.within {
            None => None,
            Some(w) if !matches!(metric, Metric::SyncTime | Metric::Synchronized) => {
                return Err(self.err(w, format!("`within` applies to sync_time and synchronized, not `{}`", metric.name()), None));
            }
            Some(w) if !(w.get_ref().value > 0.0 && w.get_ref().value.is_finite()) => {
                return Err(self.err(w, format!("`within` must be a positive offset, not {}", w.get_ref().value), Some("e.g. within = \"5ms\"".into())));
            }
            Some(w) => Some(w.get_ref().value),
        };
        match (min, max) {
            (None, None) => {
                return Err(self.err(&x.metric, "this expectation has neither `max` nor `min`", Some(format!("add max = … (in {})", metric.unit()))));
            }
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(self.err(x.min.as_ref().expect("given"), format!("min {lo} is above max {hi}"), None));
            }
            _ => {}
        }
        let after = match &x.after {
            Some(a) if a.get_ref().0 >= duration => {
                return Err(self.err(a, format!("after {:?} leaves nothing of the run ({duration:?})", a.get_ref().0), None));
            }
            Some(a) => a.get_ref().0,
            None if metric.is_converged_statistic() => converged_after,
            None => Duration::ZERO,
        };
        let name = x.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            let mut n = format!("{} {}", x.host.get_ref(), metric.name());
            if let Some(lo) = min {
                n += &format!(" >= {lo}");
            }
            if let Some(hi) = max {
                n += &format!(" <= {hi}");
            }
            n
        });
        Ok(Expectation { name, host, metric, min, max, after, requirement: x.requirement.clone(), members: Vec::new(), over: None, group: None, within })
    }
}

/// Most hosts one `count` may make.
pub const GROUP_COUNT_MAX: u32 = 10_000;

/// `base` plus `i` (the `i`-th address of a group), if it stays in its family.
fn nth_address(base: IpAddr, i: u32) -> Option<IpAddr> {
    match base {
        IpAddr::V4(a) => u32::from(a).checked_add(i).map(|v| IpAddr::from(std::net::Ipv4Addr::from(v))),
        IpAddr::V6(a) => u128::from(a).checked_add(u128::from(i)).map(|v| IpAddr::from(std::net::Ipv6Addr::from(v))),
    }
}

/// Host groups: a `[[host]]` with `count = N` stands for N hosts named
/// NAME-1..NAME-N at consecutive addresses from `address`. A group's name may
/// stand for all its members wherever a list of hosts is meant: in a link's
/// `between` (one link per member, or per pair of members of two groups), in
/// `sources`, in an event's `hosts` or `host` (one event per member), and in an
/// `[[expect]]` together with `over`.
impl Validator<'_> {
    fn expand_groups(&mut self, file: &mut ScenarioFile) -> VResult<()> {
        if file.host.iter().all(|h| h.get_ref().count.is_none()) {
            return Ok(());
        }
        let mut hosts = Vec::with_capacity(file.host.len());
        for h in std::mem::take(&mut file.host) {
            let Some(count) = h.get_ref().count.clone() else {
                hosts.push(h);
                continue;
            };
            let n = *count.get_ref();
            if n == 0 || n > GROUP_COUNT_MAX {
                return Err(self.err(&count, format!("a host group's count must be 1-{GROUP_COUNT_MAX}, not {n}"), None));
            }
            let name = h.get_ref().name.clone();
            if self.groups.contains_key(name.get_ref()) {
                return Err(self.err(&name, format!("a second host group is named `{}`", name.get_ref()), Some("group names must be unique".into())));
            }
            let base = h.get_ref().address.clone();
            let mut members = Vec::with_capacity(n as usize);
            for i in 0..n {
                let Some(addr) = nth_address(*base.get_ref(), i) else {
                    return Err(self.err(&base, format!("the {n} addresses of group `{}` from {} run past the end of the address space", name.get_ref(), base.get_ref()), None));
                };
                let member = format!("{}-{}", name.get_ref(), i + 1);
                let mut m = h.clone();
                m.get_mut().name = Spanned::new(name.span(), member.clone());
                m.get_mut().address = Spanned::new(base.span(), addr);
                m.get_mut().count = None;
                members.push(member);
                hosts.push(m);
            }
            self.groups.insert(name.into_inner(), members);
        }
        file.host = hosts;
        if let Some((n, span)) = file.host.iter().find_map(|h| self.groups.get_key_value(h.get_ref().name.get_ref()).map(|(n, _)| (n.clone(), h.get_ref().name.span()))) {
            return Err(self.src.error(Some(span), format!("a host is named `{n}` like a host group"), Some("rename the host or the group".into())));
        }

        // Sources naming a group: one source per member.
        for h in &mut file.host {
            if let Some(sources) = h.get_mut().sources.as_mut() {
                let list = std::mem::take(sources.get_mut());
                for e in list {
                    self.each_member(&e.get_ref().host, |name| {
                        let mut c = e.clone();
                        c.get_mut().host = name;
                        sources.get_mut().push(c);
                    });
                }
            }
        }
        // Links naming a group: one link per pair of members.
        let mut links = Vec::with_capacity(file.link.len());
        for l in std::mem::take(&mut file.link) {
            let between = l.get_ref().between.clone();
            let Some([a, b]) = between.get_ref().get(..2).and_then(|p| <&[Spanned<String>; 2]>::try_from(p).ok()).filter(|_| between.get_ref().len() == 2) else {
                links.push(l);
                continue;
            };
            let mut left = Vec::new();
            self.each_member(a, |n| left.push(n));
            for x in left {
                self.each_member(b, |y| {
                    let mut c = l.clone();
                    c.get_mut().between = Spanned::new(between.span(), vec![x.clone(), y]);
                    links.push(c);
                });
            }
        }
        file.link = links;
        // Events naming a group: its members in `hosts`; one event per member for `host`.
        let mut events = Vec::with_capacity(file.event.len());
        for e in std::mem::take(&mut file.event) {
            let mut e = e;
            if let Some(hs) = e.get_mut().hosts.as_mut() {
                let list = std::mem::take(hs.get_mut());
                for n in list {
                    self.each_member(&n, |m| hs.get_mut().push(m));
                }
            }
            match e.get_ref().host.clone() {
                Some(h) if self.groups.contains_key(h.get_ref()) => self.each_member(&h, |m| {
                    let mut c = e.clone();
                    c.get_mut().host = Some(m);
                    events.push(c);
                }),
                _ => events.push(e),
            }
        }
        file.event = events;
        Ok(())
    }

    /// Calls `f` with each member of the group `name` names (with `name`'s
    /// span), or with `name` itself when it is not a group.
    fn each_member(&self, name: &Spanned<String>, mut f: impl FnMut(Spanned<String>)) {
        match self.groups.get(name.get_ref()) {
            Some(members) => members.iter().for_each(|m| f(Spanned::new(name.span(), m.clone()))),
            None => f(name.clone()),
        }
    }

    /// An expectation about one host, or (with `over`) about a host group.
    fn group_expectation(&self, x: &ExpectSection, duration: Duration, converged_after: Duration) -> VResult<Expectation> {
        let Some(members) = self.groups.get(x.host.get_ref()) else {
            if let Some(o) = &x.over {
                return Err(self.err(o, format!("`over` summarizes a host group; `{}` is one host", x.host.get_ref()), Some("drop `over`, or name a group (a [[host]] with `count`)".into())));
            }
            return self.expectation(x, duration, converged_after);
        };
        let Some(over) = &x.over else {
            return Err(self.err(&x.host, format!("`{}` is a group of {} hosts: say how to summarize them", x.host.get_ref(), members.len()), Some("add over = \"max\", \"min\" or \"median\"".into())));
        };
        let mut ids = Vec::with_capacity(members.len());
        let mut first = None;
        for m in members {
            let mut one = self.expectation(&ExpectSection { host: Spanned::new(x.host.span(), m.clone()), over: None, ..x.clone() }, duration, converged_after)?;
            ids.push(one.host);
            if first.is_none() {
                one.name = x.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
                    let mut n = format!("{} {} over {:?}", x.host.get_ref(), one.metric.name(), over.get_ref()).to_lowercase();
                    if let Some(lo) = one.min {
                        n += &format!(" >= {lo}");
                    }
                    if let Some(hi) = one.max {
                        n += &format!(" <= {hi}");
                    }
                    n
                });
                first = Some(one);
            }
        }
        let mut e = first.expect("a group has at least one member");
        e.members = ids;
        e.over = Some(*over.get_ref());
        e.group = Some(x.host.get_ref().clone());
        Ok(e)
    }
}

/// Inside `section` of `text`, the value a validation message is about: the
/// first quoted text of the message where the section has it (`rule
/// "banana"`), else the value of the first key the message names that the
/// section sets (`slots 0 ...` → `slots = 0`), else the whole section.
fn value_span_in(text: &str, section: Range<usize>, message: &str) -> Range<usize> {
    let Some(body) = text.get(section.clone()) else { return section };
    let at = |r: Range<usize>| section.start + r.start..section.start + r.end;
    if let Some(quoted) = message.split('"').nth(1).filter(|q| !q.is_empty()) {
        let needle = format!("\"{quoted}\"");
        if let Some(i) = body.find(&needle) {
            return at(i..i + needle.len());
        }
    }
    // Words after the table's name ("host `c`: [[source]] #1 (…): maximum poll 99 …"),
    // with the source messages' phrases spelled as their keys.
    let tail = message.find("] ").map_or(message, |i| &message[i + 1..]);
    let tail = tail.replace("minimum poll", "poll_min").replace("maximum poll", "poll_max").replace("NTP version", "version");
    let words = tail.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with(|c: char| c.is_ascii_lowercase()));
    words.filter_map(|w| key_value_span(body, w)).next().map_or(section.clone(), at)
}

/// The span of the value in `key = value` within `body`, `key` a whole word.
fn key_value_span(body: &str, key: &str) -> Option<Range<usize>> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = body[from..].find(key) {
        let start = from + i;
        from = start + key.len();
        if body[..start].chars().next_back().is_some_and(is_word) {
            continue;
        }
        let Some(after_eq) = body[from..].trim_start_matches([' ', '\t']).strip_prefix('=') else { continue };
        let value = after_eq.trim_start_matches([' ', '\t']);
        let value_start = body.len() - value.len();
        let len = value.find([',', '}', ']', '\n', '#']).unwrap_or(value.len());
        let len = value[..len].trim_end().len().max(1).min(value.len());
        return Some(value_start..value_start + len);
    }
    None
}

/// The span of the `[[source]]` entry a daemon validation message names (`#N`).
fn span_for_daemon_error(message: &str, sources: &[Range<usize>]) -> Option<Range<usize>> {
    let rest = message.split("[[source]] #").nth(1)?;
    let n: usize = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    sources.get(n.checked_sub(1)?).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../scenarios/format-example.toml");

    fn err(text: &str) -> ScenarioError {
        match Scenario::parse(text, "t.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn refclock_hosts_load_and_their_mistakes_are_named() {
        let base = "name = \"r\"\nduration = \"1h\"\n[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\n";
        let ok = Scenario::parse(
            &format!("{base}refclock = {{ kind = \"gps-pps\", pps_jitter = \"1us\", pps_dropout = 0.01, gps_latency = \"200ms\", offset = 5e-8, fix_loss = [ {{ from = \"10m\", until = \"20m\" }} ] }}\n"),
            "t.toml",
        )
        .unwrap();
        let h = &ok.hosts[0];
        let model = h.refclock.as_ref().unwrap();
        assert_eq!(model.pps.jitter_sd, NtpDuration::from_nanos(1000));
        assert_eq!(model.gps.faults.len(), 1);
        let Role::Ntp(n) = &h.role else { panic!("ntp role") };
        assert_eq!(n.daemon.refclocks.len(), 1);
        assert_eq!(n.daemon.refclocks[0].offset, NtpDuration::from_seconds_f64(5e-8));
        let e = err(&format!("{base}refclock = {{ kind = \"gps\", fix_loss = [ {{ from = \"20m\", until = \"10m\" }} ] }}\n"));
        assert!(e.message.contains("is empty"), "{e}");
        let e = err(&format!("{base}refclock = {{ kind = \"gps\", gps_latency = \"900ms\" }}\n"));
        assert!(e.message.contains("below 1 s"), "{e}");
        let e = err(&format!("{base}refclock = {{ kind = \"pps\", refid = \"TOOLONG\" }}\n"));
        assert!(e.message.contains("refid") && e.line == Some(6), "{e}");
        let e = err(&format!("{base}role = \"scripted\"\nbehavior = {{ kind = \"silent\" }}\nrefclock = {{ kind = \"pps\" }}\n"));
        assert!(e.message.contains("takes no `refclock`"), "{e}");
        let e = err(&format!("{base}refclock = {{ kind = \"pps\", pps_jiter = 1 }}\n"));
        assert!(e.hint.as_deref().unwrap_or("").contains("pps_jitter"), "{e}");
    }

    #[test]
    fn seeds_exercises_and_discipline_load_and_their_mistakes_are_named() {
        assert_eq!(parse_seeds("1..3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("7").unwrap(), vec![7]);
        assert_eq!(parse_seeds("1..=2, 9,2").unwrap(), vec![1, 2, 9]);
        assert!(parse_seeds("3..1").unwrap_err().contains("is empty"));
        assert!(parse_seeds("a..2").unwrap_err().contains("`a` is not"));
        assert!(parse_seeds("0..99999999999").unwrap_err().contains("more than 10000 seeds"));
        let base = "name = \"r\"\nduration = \"1h\"\n";
        let host = "[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n";
        let s = Scenario::parse(&format!("{base}seeds = \"1..4\"\nexercises = [\"poll-bounds\", \"kod-deny-stops\"]\n{host}discipline = \"rfc5905\"\n"), "t.toml").unwrap();
        assert_eq!(s.seeds, vec![1, 2, 3, 4]);
        assert_eq!(s.exercises.iter().map(|e| (e.check.as_str(), e.line, e.column)).collect::<Vec<_>>(), vec![("poll-bounds", 4, 14), ("kod-deny-stops", 4, 29)]);
        let Role::Ntp(n) = &s.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.discipline, ntplab_proto::discipline::DisciplineKind::Rfc5905);
        let plain = Scenario::parse(&format!("{base}{host}"), "t.toml").unwrap();
        assert!(plain.seeds.is_empty() && plain.exercises.is_empty());
        let Role::Ntp(n) = &plain.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.discipline, ntplab_proto::discipline::DisciplineKind::Regression);
        let e = err(&format!("{base}seeds = \"5..1\"\n{host}"));
        assert!(e.message.contains("5..1 is empty") && e.line == Some(3), "{e}");
        let e = err(&format!("{base}exercises = [\"a\", \"a\"]\n{host}"));
        assert!(e.message.contains("listed twice") && e.line == Some(3) && e.column == Some(19), "{e}");
        let e = err(&format!("{base}{host}discipline = \"pll\"\n"));
        assert!(e.message.contains("\"pll\" is not one of \"regression\", \"rfc5905\"") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\ndiscipline = \"rfc5905\"\n"));
        assert!(e.message.contains("takes no `discipline`"), "{e}");
    }

    #[test]
    fn step_sets_the_daemons_step_and_panic_settings_and_its_mistakes_are_named() {
        let base = "name = \"r\"\nduration = \"1h\"\n";
        let host = "[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n";
        let s = Scenario::parse(&format!("{base}{host}step = {{ threshold = 1, updates = -1, panic_threshold = 0, panic_at_start = false }}\n"), "t.toml").unwrap();
        let Role::Ntp(n) = &s.hosts[0].role else { panic!("ntp role") };
        let want = ntplab_daemon::config::StepSettings { threshold_s: 1.0, updates: Some(u32::MAX), panic_threshold_s: None, panic_at_start: false };
        assert_eq!(n.daemon.step, want);
        let plain = Scenario::parse(&format!("{base}{host}"), "t.toml").unwrap();
        let Role::Ntp(n) = &plain.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.step, ntplab_daemon::config::StepSettings::default());
        // The daemon's own check, pointed at the table.
        let e = err(&format!("{base}{host}step = {{ threshold = 0 }}\n"));
        assert!(e.message.contains("step_threshold = 0 s") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}{host}step = {{ updates = -3 }}\n"));
        assert!(e.message.contains("step_updates = -3") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}{host}step = {{ limit = 1 }}\n"));
        assert!(e.message.contains("limit") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}{host}discipline = \"rfc5905\"\nstep = {{ updates = 1 }}\n"));
        assert!(e.message.contains("regression discipline's"), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\nstep = {{ threshold = 1 }}\n"));
        assert!(e.message.contains("takes no `step`"), "{e}");
    }

    #[test]
    fn poll_target_sets_the_daemons_and_its_mistakes_are_named() {
        let base = "name = \"r\"\nduration = \"1h\"\n";
        let host = "[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n";
        let s = Scenario::parse(&format!("{base}{host}poll_target = 8\n"), "t.toml").unwrap();
        let Role::Ntp(n) = &s.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.poll_target, Some(8));
        let e = err(&format!("{base}{host}poll_target = 100\n"));
        assert!(e.message.contains("poll_target = 100: give 3 to 64") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}{host}discipline = \"rfc5905\"\npoll_target = 8\n"));
        assert!(e.message.contains("regression discipline's") && e.line == Some(8), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\npoll_target = 8\n"));
        assert!(e.message.contains("takes no `poll_target`"), "{e}");
    }

    #[test]
    fn max_distance_sets_the_selections_limit_and_its_mistakes_are_named() {
        let base = "name = \"r\"\nduration = \"1h\"\n";
        let host = "[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n";
        let s = Scenario::parse(&format!("{base}{host}max_distance = 3\n"), "t.toml").unwrap();
        let Role::Ntp(n) = &s.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.max_distance, Some(3.0));
        let e = err(&format!("{base}{host}max_distance = 0\n"));
        assert!(e.message.contains("max_distance = 0: give a root distance") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\nmax_distance = 3\n"));
        assert!(e.message.contains("takes no `max_distance`"), "{e}");
    }

    #[test]
    fn drift_starts_the_daemon_from_its_frequency_and_its_mistakes_are_named() {
        let base = "name = \"r\"\nduration = \"1h\"\n";
        let host = "[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n";
        let s = Scenario::parse(&format!("{base}{host}drift = 1e-4\n"), "t.toml").unwrap();
        let Role::Ntp(n) = &s.hosts[0].role else { panic!("ntp role") };
        let f = n.daemon.initial_frequency.expect("an initial frequency");
        assert!((f + 1e-4).abs() < 1e-15, "a clock that gains is corrected by minus its error: {f}");
        let plain = Scenario::parse(&format!("{base}{host}"), "t.toml").unwrap();
        let Role::Ntp(n) = &plain.hosts[0].role else { panic!("ntp role") };
        assert_eq!(n.daemon.initial_frequency, None);
        let e = err(&format!("{base}{host}drift = 0.2\n"));
        assert!(e.message.contains("is beyond") && e.line == Some(7) && e.column == Some(9), "{e}");
        let e = err(&format!("{base}{host}drift = nan\n"));
        assert!(e.message.contains("not a finite number") && e.line == Some(7), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"insane\" }}\ndrift = 1e-4\n"));
        assert!(e.message.contains("takes no `drift`"), "{e}");
    }

    #[test]
    fn new_scripted_behaviors_load() {
        let base = "name = \"r\"\nduration = \"1h\"\n[[host]]\nname = \"p\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\n";
        for (text, want) in [
            ("{ kind = \"insane\" }", Behavior::Insane),
            ("{ kind = \"second-reply\" }", Behavior::SecondReply),
            ("{ kind = \"unsolicited\" }", Behavior::Unsolicited),
            ("{ kind = \"zero-origin\" }", Behavior::ZeroOrigin),
            ("{ kind = \"bogus-kiss\", code = \"DENY\" }", Behavior::BogusKiss { code: ReferenceId::from_ascii("DENY") }),
        ] {
            let s = Scenario::parse(&format!("{base}behavior = {text}\n"), "t.toml").unwrap_or_else(|e| panic!("{text}: {e}"));
            let Role::Scripted(p) = &s.hosts[0].role else { panic!("scripted") };
            assert_eq!(p.behavior, want);
        }
        let e = err(&format!("{base}behavior = {{ kind = \"bogus-kiss\", code = \"TOOLONG\" }}\n"));
        assert!(e.message.contains("1-4 printable ASCII"), "{e}");
    }

    #[test]
    fn a_scripted_peers_own_file_reads_back_as_the_same_peer() {
        let behaviors = [
            Behavior::Falseticker { offset_s: 0.5 },
            Behavior::Falseticker { offset_s: -1.25e-5 },
            Behavior::Falseticker { offset_s: 1234.000001 },
            Behavior::Kiss { code: ReferenceId::from_ascii("RATE") },
            Behavior::Kiss { code: ReferenceId::from_ascii("X") },
            Behavior::BogusKiss { code: ReferenceId::from_ascii("A\"\\B") },
            Behavior::Replay,
            Behavior::Malformed { how: Malformation::Truncated },
            Behavior::Malformed { how: Malformation::BadVersion },
            Behavior::Malformed { how: Malformation::BadEfLength },
            Behavior::Malformed { how: Malformation::Garbage },
            Behavior::Silent,
            Behavior::Insane,
            Behavior::SecondReply,
            Behavior::Unsolicited,
            Behavior::ZeroOrigin,
        ];
        for (k, behavior) in behaviors.into_iter().enumerate() {
            let peer = ScriptedHost { port: 123 + k as u16, behavior, stratum: 1 + (k % 15) as u8 };
            for address in ["10.0.0.7", "2001:db8::7"] {
                let text = peer.scenario_text("liar-1", address.parse().unwrap());
                let s = Scenario::parse(&text, "peer.toml").unwrap_or_else(|e| panic!("{text}\n{e}"));
                let h = &s.hosts[0];
                assert_eq!((h.name.as_str(), h.address.to_string()), ("liar-1", address.to_string()), "{text}");
                let Role::Scripted(back) = &h.role else { panic!("{text}: not scripted") };
                assert_eq!(back, &peer, "{text}");
            }
        }
    }

    #[test]
    fn full_example_loads() {
        let s = Scenario::parse(EXAMPLE, "format-example.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, "client: follows a good server, rejects a falseticker, survives a partition");
        assert!(s.description.starts_with("A client polls"));
        assert_eq!(s.seed, 42);
        assert_eq!(s.with_seed(7).seed, 7);
        let s = Scenario::parse(EXAMPLE, "format-example.toml").unwrap();
        assert_eq!(s.start, NtpTime::parse_rfc3339("2036-02-07T06:00:00Z").unwrap());
        assert_eq!(s.end(), NtpTime::parse_rfc3339("2036-02-07T12:00:00Z").unwrap());
        assert_eq!((s.duration, s.sample_interval, s.converged_after), (Duration::from_secs(6 * 3600), Duration::from_secs(1), Duration::from_secs(3600)));
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["server", "client", "liar", "kisser", "replayer", "probe", "mangler", "mute", "backup", "fleet-1", "fleet-2", "fleet-3"]);

        let server = &s.hosts[0];
        let Role::Ntp(n) = &server.role else { panic!("server runs the daemon") };
        assert_eq!(n.daemon.listen, vec!["10.0.0.1:123".parse::<SocketAddr>().unwrap()]);
        assert_eq!(n.daemon.local.unwrap().stratum, 1);
        assert!(n.daemon.server.rate_limit.enabled);
        assert_eq!(n.daemon.server.rate_limit.interval_ns_min, 2_000_000_000);
        assert!(n.daemon.server.smear.is_some());
        assert!(!n.daemon.clock_control, "the simulator owns the clock");
        assert_eq!(server.clock, ClockSpec { precision_s: 1e-9, ..ClockSpec::default() });

        let client = &s.hosts[1];
        let Role::Ntp(c) = &client.role else { panic!() };
        assert!(c.daemon.listen.is_empty());
        assert!(!c.daemon.server.interleaved);
        assert_eq!(c.sources, vec![0, 2, 3, 4, 8]);
        assert_eq!(c.daemon.sources[0].address, "10.0.0.1:123".parse::<SocketAddr>().unwrap());
        assert!(c.daemon.sources[0].config.iburst);
        assert_eq!((c.daemon.sources[0].config.poll_min_log2, c.daemon.sources[0].config.poll_max_log2), (4, 6));
        assert_eq!(client.clock.offset_s, 0.1);
        assert_eq!(client.clock.sine, SineSpec { amplitude: 1e-7, period_s: 86_400.0, phase_rad: 0.0 });
        assert_eq!((client.clock.frequency, client.clock.wander, client.clock.noise_s), (1e-5, 1e-9, 1e-8));

        let behaviors: Vec<Behavior> = s.hosts.iter().filter_map(|h| match &h.role {
            Role::Scripted(x) => Some(x.behavior),
            Role::Ntp(_) => None,
        }).collect();
        assert_eq!(behaviors, [
            Behavior::Falseticker { offset_s: 2.0 },
            Behavior::Kiss { code: ReferenceId::from_ascii("RATE") },
            Behavior::Replay,
            Behavior::Malformed { how: Malformation::BadEfLength },
            Behavior::Silent,
        ]);
        let Role::Ntp(probe) = &s.hosts[5].role else { panic!() };
        assert_eq!(probe.daemon.listen[0].port(), 1123);
        assert_eq!(probe.daemon.sources[0].address, "[fd00::11]:123".parse::<SocketAddr>().unwrap());

        assert_eq!(s.links.len(), 10);
        let l0 = &s.links[0];
        assert_eq!(l0.hosts, [1, 0]);
        assert_eq!(l0.forward.delay, Duration::from_micros(100));
        assert_eq!(l0.forward.jitter, Jitter::Exponential { mean_s: 1e-4 });
        assert_eq!(l0.forward.loss, 0.01);
        assert_eq!(l0.backward.delay, Duration::from_micros(150));
        assert_eq!(l0.backward.jitter, Jitter::Normal { sd_s: 2e-5 });
        assert_eq!(l0.backward.loss, 0.01, "unset per-direction keys keep the link's values");
        assert_eq!(s.links[1].forward.reorder_delay, Duration::from_millis(2));
        assert_eq!(s.links[3].forward.loss, 0.1);
        assert_eq!(s.links[3].backward.loss, 0.0);
        assert_eq!(s.links[3].forward.jitter, Jitter::Pareto { scale_s: 1e-5, shape: 1.5 });
        assert_eq!(s.link_between(0, 1), Some((0, Direction::Backward)));
        assert_eq!(s.link_between(0, 2), None);

        let h = |secs: u64| Duration::from_secs(secs);
        let timeline: Vec<(Duration, &Action)> = s.events.iter().map(|e| (e.at, &e.action)).collect();
        assert_eq!(timeline.len(), 9, "8 events and the partition's heal");
        assert_eq!(timeline[0], (h(7200), &Action::Partition(Cut::Hosts(vec![0]))));
        assert_eq!(timeline[1], (h(9000), &Action::Heal(Some(Cut::Hosts(vec![0])))));
        assert_eq!(timeline[2], (h(10800), &Action::Partition(Cut::Link { link: 1, direction: Direction::Forward })));
        assert_eq!(timeline[3], (h(11400), &Action::Heal(None)));
        let Action::SetLink { link: 0, forward, backward, after_packets: None } = timeline[4].1 else { panic!("{:?}", timeline[4]) };
        assert_eq!(forward.delay, Some(Duration::from_millis(5)));
        assert_eq!(backward.delay, Some(Duration::from_millis(5)));
        assert_eq!((forward.loss, backward.loss), (None, Some(0.2)));
        assert_eq!(timeline[5], (h(16200), &Action::StepClock { host: 1, by_s: -0.0005 }));
        assert_eq!(timeline[6], (h(18000), &Action::SetFrequency { host: 1, frequency: 5e-6 }));
        assert_eq!(timeline[7], (h(18600), &Action::Stop { host: 0 }));
        assert_eq!(timeline[8], (h(19200), &Action::Start { host: 0 }));

        let x = &s.expectations;
        assert_eq!(x.len(), 7);
        assert_eq!((x[4].metric, x[4].over, x[4].members.as_slice()), (Metric::SyncTime, Some(Over::Max), &[9, 10, 11][..]));
        assert_eq!((x[5].metric, x[6].metric), (Metric::Synchronized, Metric::Selections));
        assert_eq!((x[0].metric, x[0].max, x[0].after), (Metric::MaxOffset, Some(1e-3), h(3600)));
        assert_eq!(x[0].requirement.as_deref(), Some("SIM-OFFSET-1"));
        assert_eq!((x[1].metric, x[1].max, x[1].after), (Metric::SyncTime, Some(300.0), Duration::ZERO));
        assert_eq!(x[1].name, "client sync_time <= 300");
        assert_eq!(x[2].after, h(7200));
        assert_eq!((x[3].host, x[3].min, x[3].max), (5, Some(10.0), None));
    }

    #[test]
    fn minimal_scenario_and_defaults() {
        let s = Scenario::parse(
            "name = \"two hosts\"\nduration = 600\n[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n[[host]]\nname = \"c\"\naddress = \"10.0.0.2\"\nsources = [{ host = \"s\" }]\n[[link]]\nbetween = [\"s\", \"c\"]\n",
            "m",
        )
        .unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.start, NtpTime::parse_rfc3339(DEFAULT_START).unwrap());
        assert_eq!(s.converged_after, Duration::from_secs(150));
        assert_eq!(s.links[0].forward, LinkParams::default());
        assert_eq!(s.hosts[1].clock, ClockSpec::default());
        assert_eq!(s.hosts[1].ntp_port(), Some(123));
        assert!(s.events.is_empty() && s.expectations.is_empty());
    }

    #[test]
    fn durations() {
        let ok = |t: &str, secs: f64| assert_eq!(parse_seconds_text(t).unwrap(), secs, "{t}");
        ok("90", 90.0);
        ok("90s", 90.0);
        ok("15m", 900.0);
        ok("24h", 86_400.0);
        ok("7d", 604_800.0);
        ok("1h30m", 5400.0);
        ok("1h 30m", 5400.0);
        ok("250ms", 0.25);
        ok("1e-4s", 1e-4);
        ok("-2s", -2.0);
        ok("100us", 1e-4);
        ok("5µs", 5e-6);
        ok("5μs", 5e-6);
        assert_eq!(parse_seconds_text("1§"), Err("unknown unit `§`".to_string()));
        assert_eq!(parse_seconds_text("2µ"), Err("unknown unit `µ`".to_string()));
        for bad in ["", "-", "s", "1x", "1h30", "1..2s", "nan", "1e400s", "90 parsecs", "1e", "1§", "1 §s", "3¡", "2µ", "7秒", "1h30m€"] {
            assert!(parse_seconds_text(bad).is_err(), "{bad:?} accepted");
        }
    }

    const TWO: &str = "name = \"x\"\nduration = \"1h\"\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n[[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\n";

    #[test]
    fn a_pass_pattern_is_set_per_link_per_direction_and_by_events() {
        let link = "[[link]]\nbetween = [\"client\", \"server\"]\npass_every = 2\nforward = { pass_every = 4 }\n";
        let event = "[[event]]\nat = \"10m\"\naction = \"set_link\"\nlink = [\"client\", \"server\"]\npass_every = 20\n";
        let s = Scenario::parse(&format!("{TWO}{link}{event}"), "t").unwrap();
        assert_eq!((s.links[0].forward.pass_every, s.links[0].backward.pass_every), (4, 2));
        let Action::SetLink { forward, backward, .. } = &s.events[0].action else { panic!("{:?}", s.events[0].action) };
        assert_eq!((forward.pass_every, backward.pass_every), (Some(20), Some(20)));
        let s = Scenario::parse(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\n"), "t").unwrap();
        assert_eq!(s.links[0].forward.pass_every, 1, "every packet by default");
    }

    #[test]
    fn a_link_change_after_n_packets_parses_and_bad_counts_name_their_place() {
        let link = "[[link]]\nbetween = [\"client\", \"server\"]\n";
        let event = "[[event]]\nat = 0\naction = \"set_link\"\nlink = [\"client\", \"server\"]\nafter_packets = 6\nforward = { reorder = 0.7, reorder_delay = \"150ms\" }\n";
        let s = Scenario::parse(&format!("{TWO}{link}{event}"), "t").unwrap();
        let Action::SetLink { forward, backward, after_packets, .. } = &s.events[0].action else { panic!("{:?}", s.events[0].action) };
        assert_eq!((forward.reorder, forward.reorder_delay, **backward), (Some(0.7), Some(Duration::from_millis(150)), LinkPatch::default()));
        assert_eq!(*after_packets, Some(6));
        for (bad, column) in [("after_packets = 0", 17), ("after_packets = 1000000001", 17)] {
            let text = format!("{TWO}{link}[[event]]\nat = 0\naction = \"set_link\"\nlink = [\"client\", \"server\"]\n{bad}\nloss = 0.1\n");
            let e = Scenario::parse(&text, "t").unwrap_err();
            assert!(e.message.contains("after_packets") && e.message.contains("between 1 and"), "{e}");
            assert_eq!((e.line, e.column), (Some(16), Some(column)), "{e}");
        }
        let text = format!("{TWO}{link}[[event]]\nat = 0\naction = \"stop\"\nhost = \"client\"\nafter_packets = 3\n");
        let e = Scenario::parse(&text, "t").unwrap_err();
        assert!(e.message.contains("a `stop` event takes no `after_packets`"), "{e}");
    }

    #[test]
    fn errors_have_positions_and_hints() {
        let e = err(&format!("{TWO}sources = [ {{ host = \"sever\", iburst = true }} ]\n[[link]]\nbetween = [\"client\", \"server\"]\n"));
        assert_eq!((e.line, e.column), (Some(10), Some(22)));
        assert_eq!(e.message, "unknown host `sever`");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `server`?"), "{e}");
        assert!(e.to_string().starts_with("t.toml:10:22: unknown host `sever`\n   |\n10 | sources"), "{e}");
        assert!(e.to_string().contains("\n   |                      ^^^^^^^\n"), "{e}");

        let e = err(&format!("{TWO}sources = [ {{ host = \"server\" }} ]\n"));
        assert!(e.message.contains("no [[link]] connects them"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("between = [\"client\", \"server\"]"), "{e}");

        let e = err("name = \"x\"\nduration = \"1x\"\n");
        assert_eq!((e.line, e.column), (Some(2), Some(12)));
        assert!(e.hint.as_deref().unwrap().contains("\"15m\""), "{e}");

        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\ndelya = 1\n"));
        assert_eq!(e.message, "unknown key `delya`");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `delay`? allowed keys here: `between`, `delay`"), "{e}");

        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\nloss = 1.5\n"));
        assert!(e.message.contains("probability 1.5 is outside [0, 1]") && e.line == Some(12), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\nbackward = {{ duplicate = -0.1 }}\n"));
        assert!(e.message.contains("outside [0, 1]"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\nforward = {{ pass_every = 0 }}\n"));
        assert!(e.message.contains("pass_every = 0 is not a packet count") && e.line == Some(12), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("4th, 8th"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\npass_every = 2.5\n"));
        assert!(e.line == Some(12), "{e}");

        let e = err(&format!("{TWO}[[host]]\nname = \"client\"\naddress = \"10.0.0.3\"\n"));
        assert!(e.message.contains("second host is named `client`") && e.hint.as_deref().unwrap().contains("line 8"), "{e}");
        let e = err(&format!("{TWO}[[host]]\nname = \"other\"\naddress = \"10.0.0.2\"\n"));
        assert!(e.message.contains("address 10.0.0.2 of host `other` is already host `client`'s"), "{e}");

        let e = err(&format!("{TWO}role = \"scripted\"\nbehavior = {{ kind = \"falsticker\", offset = 2 }}\n"));
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `falseticker`?"), "{e}");
        let e = err(&format!("{TWO}role = \"scripted\"\nbehavior = {{ kind = \"kiss\", code = \"TOOLONG\" }}\n"));
        assert!(e.message.contains("1-4 printable ASCII"), "{e}");
        let e = err(&format!("{TWO}role = \"scripted\"\n"));
        assert!(e.message.contains("has no `behavior`"), "{e}");
        let e = err(&format!("{TWO}role = \"scripted\"\nbehavior = {{ kind = \"silent\" }}\nsources = []\n"));
        assert!(e.message.contains("takes no `sources`"), "{e}");
        let e = err(&format!("{TWO}stratum = 2\n"));
        assert!(e.message.contains("takes no `stratum`") && e.hint.as_deref().unwrap().contains("local_stratum"), "{e}");
        let e = err(&format!("{TWO}listen = 0\n"));
        assert!(e.message.contains("port 0"), "{e}");
        let e = err(&format!("{TWO}listen = false\n"));
        assert!(e.message.contains("nothing to do") && e.line == Some(8), "{e}");
        let e = err(&format!("{TWO}clock = {{ noise = -1 }}\n"));
        assert!(e.message.contains("noise"), "{e}");
        let e = err(&format!("{TWO}clock = {{ sine = {{ amplitude = 1e-6 }} }}\n"));
        assert!(e.message.contains("positive period"), "{e}");

        let e = err(&format!("{TWO}sources = [{{ host = \"server\", poll_min = 2 }}]\n[[link]]\nbetween = [\"client\", \"server\"]\n"));
        assert!(e.message.starts_with("host `client`: [[source]] #1") && e.line == Some(10), "{e}");

        let e = err(&format!("{TWO}[[host]]\nname = \"v6\"\naddress = \"fd00::1\"\nlocal_stratum = 1\n[[link]]\nbetween = [\"v6\", \"server\"]\n"));
        assert!(e.message.contains("IPv4 host") && e.message.contains("IPv6 host"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\n[[link]]\nbetween = [\"server\", \"client\"]\n"));
        assert!(e.message.contains("second [[link]]"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\"]\n"));
        assert!(e.message.contains("names 1 hosts"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\nreorder = 0.1\n"));
        assert!(e.hint.as_deref().unwrap().contains("reorder_delay"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\njitter = {{ kind = \"normal\", mean = 1 }}\n"));
        assert!(e.message.contains("unknown key `mean`") && e.hint.as_deref().unwrap().contains("`sd`"), "{e}");
        let e = err(&format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\njitter = {{ kind = \"pareto\", scale = 1e-4, shape = 0 }}\n"));
        assert!(e.message.contains("shape"), "{e}");
    }

    #[test]
    fn value_errors_point_at_the_value() {
        // (a line of the server host, the message's start, the column of the value on line 7)
        let cases = [
            ("rate_limit = { interval_s_min = -1.0, burst = 8 }", "host `server`: [rate_limit] interval_s_min", 33),
            ("rate_limit = { burst = 8, slots = 0 }", "host `server`: [rate_limit] slots 0", 35),
            ("access = { default = \"allow\", rules = [ { network = \"10.0.0.0/99\", action = \"deny\" } ] }", "host `server`: [access] rule \"10.0.0.0/99\"", 53),
            ("access = { rules = [ { network = \"banana\", action = \"deny\" } ] }", "host `server`: [access] rule \"banana\"", 34),
            ("smear = { style = \"before-leap\", leap = \"banana\" }", "host `server`: [smear] leap \"banana\"", 41),
            ("refclock = { kind = \"pps\", filter = 0 }", "host `server`: [[refclock]] #1 (pps): filter 0", 37),
            ("refclock = { kind = \"pps\", refid = \"TOOLONG\" }", "host `server`: [[refclock]] #1 (pps): refid \"TOOLONG\"", 36),
            ("refclock = { kind = \"gps\", gps_latency = \"1ms\", baud = 1234 }", "refclock baud 1234", 56),
            ("refclock = { kind = \"gps\", pps_delay = \"2s\" }", "refclock pps_delay 2s", 40),
            ("clock = { frequency = 1.0 }", "clock frequency 1", 23),
        ];
        for (line, message, column) in cases {
            let e = err(&format!("name = \"x\"\nduration = \"1h\"\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n{line}\n"));
            assert!(e.message.starts_with(message), "{e}");
            assert_eq!((e.line, e.column), (Some(7), Some(column)), "{e}");
        }
        // A source's poll bounds: the value inside the `sources` entry.
        let e = err(&format!("{TWO}sources = [{{ host = \"server\", poll_max = 99 }}]\n[[link]]\nbetween = [\"client\", \"server\"]\n"));
        assert_eq!((e.line, e.column), (Some(10), Some(42)), "{e}");
    }

    #[test]
    fn trace_volume_is_bounded_at_load_time() {
        // 1 h on a 1 ms grid for 2 hosts: 7.2 million rows, accepted.
        let ok = |text: &str| Scenario::parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
        ok(&format!("{}sample_interval = \"1ms\"\n{}", &TWO[..27], &TWO[27..]));
        // 2 h: 14.4 million rows; the error names the keys and says what to do.
        let e = err(&format!("name = \"x\"\nduration = \"2h\"\nsample_interval = \"1ms\"\n{}", &TWO[27..]));
        assert_eq!((e.line, e.column), (Some(3), Some(19)), "{e}");
        assert!(e.message.starts_with("`duration` / `sample_interval` gives 7200001 sample times × 2 hosts = 14400002 rows of samples.csv, more than 10000000"), "{e}");
        assert!(e.hint.as_deref().unwrap().starts_with("raise `sample_interval` (at least 1.44ms here)"), "{e}");
        // Ten years at the default 1 s grid: refused at `duration`.
        let e = err(&format!("name = \"x\"\nduration = \"3650d\"\n{}", &TWO[27..]));
        assert_eq!((e.line, e.column), (Some(2), Some(12)), "{e}");
        assert!(e.message.contains("rows of samples.csv"), "{e}");
        // Datagrams: 200 clients polling every 16 s in bursts of 8 for 10 days.
        let mut text = String::from("name = \"x\"\nduration = \"10d\"\nsample_interval = \"1h\"\n[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n");
        for i in 0..200 {
            text += &format!("[[host]]\nname = \"c{i}\"\naddress = \"10.0.1.{}\"\nlisten = false\nsources = [{{ host = \"s\", burst = true, poll_min = 4 }}]\n[[link]]\nbetween = [\"c{i}\", \"s\"]\n", i + 1);
        }
        let e = err(&text);
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("datagrams, more than 1000000") && e.hint.as_deref().unwrap().contains("poll_min"), "{e}");
        ok(&text.replace("burst = true", "burst = false").replace("10d", "6h"));
    }

    #[test]
    fn event_errors() {
        let base = format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\n");
        let ev = |body: &str| err(&format!("{base}[[event]]\n{body}\n"));
        let e = ev("at = \"10m\"\naction = \"step_clock\"\nhost = \"client\"\nhosts = [\"client\"]\nby = 1");
        assert_eq!(e.message, "a `step_clock` event takes no `hosts`");
        assert!(e.hint.as_deref().unwrap().contains("at, action, host, by"), "{e}");
        let e = ev("at = \"10m\"\naction = \"step_clock\"\nhost = \"client\"");
        assert!(e.message.contains("needs `by`"), "{e}");
        let e = ev("at = \"10m\"\naction = \"partiton\"\nhosts = [\"client\"]");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `partition`?"), "{e}");
        let e = ev("at = \"2h\"\naction = \"stop\"\nhost = \"client\"");
        assert!(e.message.contains("after the end of the run"), "{e}");
        let e = ev("at = \"10m\"\naction = \"partition\"\nlink = [\"client\", \"nobody\"]");
        assert!(e.message.contains("unknown host `nobody`"), "{e}");
        let e = ev("at = \"10m\"\naction = \"partition\"");
        assert!(e.message.contains("needs `hosts` or `link`"), "{e}");
        let e = ev("at = \"10m\"\naction = \"partition\"\nhosts = [\"client\"]\nuntil = \"5m\"");
        assert!(e.message.contains("must be after `at`"), "{e}");
        let e = ev("at = \"10m\"\naction = \"set_link\"\nlink = [\"client\", \"server\"]");
        assert!(e.message.contains("changes nothing"), "{e}");
        let e = ev("at = \"10m\"\naction = \"start\"\nhost = \"client\"");
        assert!(e.message.contains("started while it runs"), "{e}");
        let e = ev("at = \"10m\"\naction = \"stop\"\nhost = \"client\"\n[[event]]\nat = \"11m\"\naction = \"stop\"\nhost = \"client\"");
        assert!(e.message.contains("stopped twice") && e.line == Some(18), "{e}");
        let e = err(&format!("{base}[[host]]\nname = \"x\"\naddress = \"10.0.0.9\"\nlocal_stratum = 1\n[[event]]\nat = 1\naction = \"partition\"\nlink = [\"x\", \"server\"]\n"));
        assert!(e.message.contains("no [[link]] between `x` and `server`"), "{e}");

        // Direction is relative to the order written in the event.
        let s = Scenario::parse(&format!("{base}[[event]]\nat = 1\naction = \"partition\"\nlink = [\"server\", \"client\"]\ndirection = \"forward\"\n"), "t").unwrap();
        assert_eq!(s.events[0].action, Action::Partition(Cut::Link { link: 0, direction: Direction::Backward }));
        let s = Scenario::parse(&format!("{base}[[event]]\nat = 1\naction = \"set_link\"\nlink = [\"server\", \"client\"]\nforward = {{ loss = 0.5 }}\n"), "t").unwrap();
        let Action::SetLink { forward, backward, .. } = &s.events[0].action else { panic!() };
        assert_eq!((forward.loss, backward.loss), (None, Some(0.5)));
    }

    const GROUPS: &str = r#"
name = "groups"
duration = "1h"

[[host]]
name = "srv"
address = "10.0.0.1"
count = 2
local_stratum = 1

[[host]]
name = "cl"
address = "10.0.0.255"
count = 3
listen = false
sources = [ { host = "srv", poll_min = 4 } ]

[[link]]
between = ["cl", "srv"]
delay = "1ms"

[[event]]
at = "10m"
action = "stop"
host = "cl"

[[event]]
at = "20m"
action = "partition"
hosts = ["srv", "cl-1"]

[[expect]]
host = "cl"
over = "median"
metric = "sync_time"
max = "10m"
"#;

    #[test]
    fn host_groups_expand_to_numbered_hosts_links_sources_and_events() {
        let s = Scenario::parse(GROUPS, "g.toml").unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["srv-1", "srv-2", "cl-1", "cl-2", "cl-3"]);
        let addrs: Vec<String> = s.hosts.iter().map(|h| h.address.to_string()).collect();
        // Consecutive addresses carry over octet boundaries.
        assert_eq!(addrs, ["10.0.0.1", "10.0.0.2", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
        // One link per pair of members, each client polling both servers.
        assert_eq!(s.links.len(), 6);
        for h in &s.hosts[2..] {
            let Role::Ntp(n) = &h.role else { panic!("ntp") };
            assert_eq!(n.sources, [0, 1]);
        }
        let stops = s.events.iter().filter(|e| matches!(e.action, Action::Stop { .. })).count();
        assert_eq!(stops, 3);
        assert!(s.events.iter().any(|e| e.action == Action::Partition(Cut::Hosts(vec![0, 1, 2]))));
        let x = &s.expectations[0];
        assert_eq!((x.host, x.members.as_slice(), x.over, x.group.as_deref()), (2, &[2, 3, 4][..], Some(Over::Median), Some("cl")));
    }

    #[test]
    fn host_group_mistakes_are_named() {
        for (from, to, needle) in [
            ("count = 3\n", "count = 0\n", "count must be 1-10000"),
            ("over = \"median\"\n", "", "is a group of 3 hosts"),
            ("over = \"median\"\n", "over = \"mean\"\n", "unknown value `mean`"),
            ("address = \"10.0.0.255\"\ncount = 3", "address = \"255.255.255.254\"\ncount = 3", "run past the end"),
            ("name = \"cl\"\n", "name = \"srv-2\"\n", "a host is named `srv-2` like a host group"),
        ] {
            let text = GROUPS.replacen(from, to, 1);
            assert_ne!(text, GROUPS, "{from:?}");
            let e = err(&text);
            assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
            assert!(e.line.is_some(), "{e}");
        }
        let wrong = GROUPS.replace("metric = \"sync_time\"\n", "metric = \"rms_offset\"\nwithin = \"1ms\"\n");
        assert!(err(&wrong).to_string().contains("`within` applies to sync_time and synchronized"));
        let zero = GROUPS.replace("metric = \"sync_time\"\n", "metric = \"sync_time\"\nwithin = 0\n");
        assert!(err(&zero).to_string().contains("`within` must be a positive offset"));
        let one = GROUPS.replace("host = \"cl\"\nover", "host = \"srv-1\"\nover");
        assert!(err(&one).to_string().contains("`over` summarizes a host group"));
    }

    #[test]
    fn over_summarizes_and_a_missing_value_fails_the_group() {
        let v = [Some(3.0), Some(1.0), Some(2.0), Some(10.0)];
        assert_eq!(Over::Min.summarize(&v), Some(1.0));
        assert_eq!(Over::Max.summarize(&v), Some(10.0));
        assert_eq!(Over::Median.summarize(&v), Some(2.5));
        assert_eq!(Over::Median.summarize(&v[..3]), Some(2.0));
        assert_eq!(Over::Max.summarize(&[Some(1.0), None]), None);
        assert_eq!(Over::Min.summarize(&[]), None);
    }

    #[test]
    fn event_count_metrics_parse_and_need_a_daemon() {
        for m in ["selections", "kiss_codes", "ntsn", "synchronized"] {
            let ok = format!("name = \"m\"\nduration = \"1h\"\n[[host]]\nname = \"a\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n[[host]]\nname = \"b\"\naddress = \"10.0.0.2\"\nrole = \"scripted\"\nbehavior = {{ kind = \"silent\" }}\n[[expect]]\nhost = \"a\"\nmetric = \"{m}\"\nmax = 0\n");
            let s = Scenario::parse(&ok, "m.toml").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.expectations[0].metric.name(), m);
            assert_eq!(s.expectations[0].metric.unit(), "count");
            let e = err(&ok.replace("host = \"a\"\nmetric", "host = \"b\"\nmetric"));
            assert!(e.to_string().contains("needs a host running the daemon"), "{e}");
        }
    }

    #[test]
    fn expectation_errors() {
        let base = format!("{TWO}[[link]]\nbetween = [\"client\", \"server\"]\n");
        let x = |body: &str| err(&format!("{base}[[expect]]\n{body}\n"));
        let e = x("host = \"client\"\nmetric = \"max_ofset\"\nmax = 1");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `max_offset`?"), "{e}");
        let e = x("host = \"client\"\nmetric = \"max_offset\"");
        assert!(e.message.contains("neither `max` nor `min`"), "{e}");
        let e = x("host = \"client\"\nmetric = \"packets_sent\"\nmax = \"10s\"");
        assert!(e.message.contains("not a duration"), "{e}");
        let e = x("host = \"client\"\nmetric = \"rms_offset\"\nmax = 1\nmin = 2");
        assert!(e.message.contains("above max"), "{e}");
        let e = x("host = \"cleint\"\nmetric = \"rms_offset\"\nmax = 1");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `client`?"), "{e}");
    }

    #[test]
    fn top_level_errors() {
        let e = err("name = \"x\"\n");
        assert!(e.message.contains("missing field `duration`"), "{e}");
        let e = err("name = \"x\"\nduration = 60\n");
        assert!(e.message.contains("no hosts"), "{e}");
        let e = err("name = \"x\"\nduration = 60\nstart = \"yesterday\"\n[[host]]\nname=\"a\"\naddress=\"10.0.0.1\"\nlocal_stratum=1\n");
        assert!(e.message.contains("invalid start time") && e.line == Some(3), "{e}");
        let e = err("name = \"x\"\nduration = 60\nstart = \"2200-01-01T00:00:00Z\"\n[[host]]\nname=\"a\"\naddress=\"10.0.0.1\"\nlocal_stratum=1\n");
        assert!(e.message.contains("2106"), "{e}");
        let e = err("name = \"x\"\nduration = \"0s\"\n");
        assert!(e.message.contains("outside"), "{e}");
        let e = err("name = \"x\"\nduration = 60\nseeed = 1\n");
        assert!(e.hint.as_deref().unwrap().starts_with("did you mean `seed`?"), "{e}");
        let e = err("name = \"x\"\nduration = 60\n[[host]]\nname=\"a b\"\naddress=\"10.0.0.1\"\n");
        assert!(e.message.contains("invalid host name"), "{e}");
        let e = err("name = \"x\"\nduration = 60\n[[host]]\nname=\"a\"\naddress=\"10.0.0.256\"\n");
        assert_eq!(e.line, Some(5), "{e}");
        let e = Scenario::load("/nonexistent/scenario.toml").unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/scenario.toml: cannot read the scenario"), "{e}");
    }

    #[test]
    fn load_reads_a_bounded_amount_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("ntplab-scenario-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A (sparse) regular file over the limit: refused from its metadata.
        let big = dir.join("big.toml");
        std::fs::File::create(&big).unwrap().set_len(SCENARIO_BYTES_MAX + 1).unwrap();
        let e = Scenario::load(&big).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: the scenario is {} bytes, more than the limit", big.display(), SCENARIO_BYTES_MAX + 1)), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("at most 8 MiB"), "{e}");
        // An endless device: reading stops at the limit.
        if Path::new("/dev/zero").exists() {
            let e = Scenario::load("/dev/zero").unwrap_err();
            assert!(e.to_string().starts_with("/dev/zero: the scenario is larger than the limit of 8388608 bytes"), "{e}");
        }
        let e = Scenario::load(&dir).unwrap_err();
        assert!(e.message.contains("it is a directory"), "{e}");
        // Not UTF-8: the position of the first bad byte.
        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"name = \"x\"\nduration = \"1\xa7\"\n").unwrap();
        let e = Scenario::load(&latin1).unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(14)), "{e}");
        assert!(e.message.contains("not UTF-8 text: invalid byte 0xa7 at offset 24"), "{e}");
        // Exactly the limit is read; one byte more is not.
        let edge = dir.join("edge.toml");
        std::fs::write(&edge, [b'#'; 100]).unwrap();
        assert_eq!(read_bounded(&edge, 100).map(|b| b.len()), Ok(100));
        assert!(read_bounded(&edge, 99).unwrap_err().0.contains("100 bytes, more than the limit of 99"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_frequency_file_is_read_beside_the_scenario_and_its_mistakes_are_named() {
        let dir = std::env::temp_dir().join(format!("ntplab-scenario-freqfile-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let origin = dir.join("s.toml").display().to_string();
        let scenario = |clock: &str| {
            format!("name = \"x\"\nduration = 60\n[[host]]\nname = \"s\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n[[host]]\nname = \"c\"\naddress = \"10.0.0.2\"\nclock = {clock}\nsources = [{{ host = \"s\" }}]\n[[link]]\nbetween = [\"s\", \"c\"]\n")
        };
        std::fs::write(dir.join("sub/f.txt"), "# clknetsim -g, node 2\n1.0e-4\n\n 1.5e-4 \n-2e-5\n").unwrap();
        let s = Scenario::parse(&scenario("{ offset = 0.1, frequency_file = \"sub/f.txt\" }"), &origin).unwrap();
        let f = s.hosts[1].clock.frequency_file.as_ref().unwrap();
        assert_eq!(&f.values[..], &[1.0e-4, 1.5e-4, -2e-5]);
        assert_eq!(f.path, dir.join("sub/f.txt").display().to_string());
        assert_eq!(s.hosts[1].clock.offset_s, 0.1);
        let e = Scenario::parse(&scenario("{ frequency = 1e-5, frequency_file = \"sub/f.txt\" }"), &origin).unwrap_err();
        assert!(e.message.contains("clock `frequency` and `frequency_file` both give the frequency"), "{e}");
        assert_eq!(e.line, Some(10), "{e}");
        let e = Scenario::parse(&scenario("{ wander = 1e-9, frequency_file = \"sub/f.txt\" }"), &origin).unwrap_err();
        assert!(e.message.contains("clock `wander` and `frequency_file`"), "{e}");
        let e = Scenario::parse(&scenario("{ frequency_file = \"missing.txt\" }"), &origin).unwrap_err();
        assert!(e.message.contains(&format!("cannot read the clock's frequency_file {}", dir.join("missing.txt").display())), "{e}");
        assert_eq!(e.line, Some(10), "{e}");
        std::fs::write(dir.join("bad.txt"), "1e-4\n2e-4 3e-4\n").unwrap();
        let e = Scenario::parse(&scenario("{ frequency_file = \"bad.txt\" }"), &origin).unwrap_err();
        assert!(e.message.contains("bad.txt, line 2: `2e-4 3e-4` is not a frequency error within ±0.1 s/s"), "{e}");
        std::fs::write(dir.join("big.txt"), "0.2\n").unwrap();
        assert!(Scenario::parse(&scenario("{ frequency_file = \"big.txt\" }"), &origin).unwrap_err().message.contains("line 1: `0.2`"));
        std::fs::write(dir.join("empty.txt"), "# nothing\n").unwrap();
        assert!(Scenario::parse(&scenario("{ frequency_file = \"empty.txt\" }"), &origin).unwrap_err().message.contains("holds no value"));
        let e = Scenario::parse(&scenario("{ frequency_file = \"sub\" }"), &origin).unwrap_err();
        assert!(e.message.contains("it is a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn excerpts_survive_odd_text() {
        // Multibyte characters, tabs and very long lines keep the caret in place and never panic.
        let e = err("name = \"é\"\nduration = 60\n[[host]]\nname=\"ü\"\naddress=\"10.0.0.1\"\n");
        assert!(e.to_string().contains("^"), "{e}");
        let long = format!("name = \"x\"\nduration = 60\n{}zz = 1\n", "a = 1, ".repeat(0));
        let _ = err(&long).to_string();
        let line = format!("name = \"{}\"\nduration = \"1q\"\n", "x".repeat(500));
        let _ = err(&line).to_string();
        let line = format!("name = \"x\"\nduration = 60\nhost = [{}{{ nam = 1 }}]\n", "{ name = \"a\", address = \"10.0.0.1\" }, ".repeat(20));
        let e = err(&line);
        assert!(e.to_string().lines().nth(2).unwrap().chars().count() < 130, "{e}");
    }

    mod fuzzish {
        use super::*;
        use proptest::prelude::*;

        /// A valid scenario per key that takes a duration or a number with a unit, with `@` for its value.
        fn duration_fields() -> Vec<String> {
            let scenario = |top: &str, server: &str, link: &str, tail: &str| {
                format!("name = \"x\"\n{top}\n[[host]]\nname = \"server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n{server}\n[[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nsources = [{{ host = \"server\" }}]\n[[link]]\nbetween = [\"client\", \"server\"]\n{link}\n{tail}\n")
            };
            let d = "duration = \"1h\"";
            let mut v = vec![
                scenario("duration = @", "", "", ""),
                scenario(&format!("{d}\nsample_interval = @"), "", "", ""),
                scenario(&format!("{d}\nconverged_after = @"), "", "", ""),
            ];
            for server in [
                "clock = { offset = @ }",
                "clock = { noise = @ }",
                "clock = { precision = @ }",
                "clock = { sine = { amplitude = 1e-7, period = @ } }",
                "refclock = { kind = \"gps-pps\", pps_jitter = @ }",
                "refclock = { kind = \"gps-pps\", pps_delay = @ }",
                "refclock = { kind = \"gps-pps\", pps_outlier_max = @ }",
                "refclock = { kind = \"gps\", gps_latency = @ }",
                "refclock = { kind = \"gps\", gps_latency_jitter = @ }",
                "refclock = { kind = \"pps\", offset = @ }",
                "refclock = { kind = \"pps\", delay = @ }",
                "refclock = { kind = \"gps\", fix_loss = [{ from = @, until = \"1m\" }] }",
                "refclock = { kind = \"gps\", wnro = [{ from = 0, until = @ }] }",
            ] {
                v.push(scenario(d, server, "", ""));
            }
            for link in [
                "delay = @",
                "reorder = 0.1\nreorder_delay = @",
                "jitter = { kind = \"exponential\", mean = @ }",
                "jitter = { kind = \"normal\", sd = @ }",
                "jitter = { kind = \"uniform\", max = @ }",
                "jitter = { kind = \"pareto\", scale = @, shape = 1.5 }",
                "forward = { delay = @ }",
                "backward = { reorder = 0.1, reorder_delay = @ }",
            ] {
                v.push(scenario(d, "", link, ""));
            }
            for tail in [
                "[[event]]\nat = @\naction = \"heal\"",
                "[[event]]\nat = 0\naction = \"partition\"\nhosts = [\"client\"]\nuntil = @",
                "[[event]]\nat = 1\naction = \"step_clock\"\nhost = \"client\"\nby = @",
                "[[event]]\nat = 1\naction = \"set_link\"\nlink = [\"client\", \"server\"]\ndelay = @",
                "[[event]]\nat = 1\naction = \"set_link\"\nlink = [\"client\", \"server\"]\nreorder = 0.1\nreorder_delay = @",
                "[[event]]\nat = 1\naction = \"set_link\"\nlink = [\"client\", \"server\"]\nbackward = { delay = @ }",
                "[[expect]]\nhost = \"client\"\nmetric = \"max_offset\"\nmax = @",
                "[[expect]]\nhost = \"client\"\nmetric = \"sync_time\"\nmin = @",
                "[[expect]]\nhost = \"client\"\nmetric = \"rms_offset\"\nmax = 1\nafter = @",
                "[[host]]\nname = \"liar\"\naddress = \"10.0.0.3\"\nrole = \"scripted\"\nbehavior = { kind = \"falseticker\", offset = @ }",
            ] {
                v.push(scenario(d, "", "", tail));
            }
            v
        }

        /// `s` as a TOML basic string.
        fn toml_quote(s: &str) -> String {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        o.push('\\');
                        o.push(c);
                    }
                    c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }

        #[test]
        fn every_duration_field_template_loads_with_a_valid_value() {
            for t in duration_fields() {
                let text = t.replace('@', "\"2ms\"");
                if let Err(e) = Scenario::parse(&text, "t") {
                    panic!("{e}\n{text}");
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn random_text_never_panics(text in "\\PC{0,300}") {
                if let Err(e) = Scenario::parse(&text, "p") { let _ = e.to_string(); }
            }

            #[test]
            fn tomlish_text_never_panics(parts in proptest::collection::vec(prop_oneof![
                Just("[[host]]\n"), Just("[[link]]\n"), Just("[[event]]\n"), Just("[[expect]]\n"),
                Just("name = \"a\"\n"), Just("name = \"b\"\n"), Just("address = \"10.0.0.1\"\n"), Just("address = \"fd00::1\"\n"),
                Just("duration = \"1h\"\n"), Just("duration = -1\n"), Just("at = \"30m\"\n"), Just("until = 1e300\n"),
                Just("between = [\"a\", \"b\"]\n"), Just("between = [\"a\", \"a\"]\n"), Just("action = \"partition\"\n"),
                Just("action = \"set_link\"\n"), Just("action = \"stop\"\n"), Just("host = \"a\"\n"), Just("hosts = [\"b\"]\n"),
                Just("link = [\"a\", \"b\"]\n"), Just("role = \"scripted\"\n"), Just("behavior = { kind = \"replay\" }\n"),
                Just("sources = [{ host = \"b\" }]\n"), Just("listen = false\n"), Just("local_stratum = 1\n"),
                Just("metric = \"sync_time\"\n"), Just("max = \"1ms\"\n"), Just("loss = 2\n"), Just("jitter = { kind = \"pareto\", scale = 0, shape = -1 }\n"),
                Just("clock = { offset = 1e308, sine = { period = 0 } }\n"), Just("start = \"1969-12-31T23:59:59Z\"\n"),
                Just("sample_interval = \"1ns\"\n"), Just("forward = { delay = \"1d\" }\n"), Just("é\t\"\n"),
            ], 0..40)) {
                let text: String = parts.concat();
                if let Err(e) = Scenario::parse(&text, "p") { let _ = e.to_string(); }
            }

            /// Any text in any key that takes a duration or a number with a
            /// unit is an error with a position, or a value; never a panic.
            #[test]
            fn any_text_in_a_duration_field_is_a_positioned_error(
                text in prop_oneof!["[-+]?[0-9.eE]{0,4}[ a-zµμ]{0,2}\\PC{0,4}", "\\PC{0,12}", "[0-9]{1,3}[^0-9a-zA-Z ]{1,3}"],
                field in 0..duration_fields().len(),
            ) {
                let quoted = toml_quote(&text);
                let scenario = duration_fields()[field].replace('@', &quoted);
                let result = Scenario::parse(&scenario, "p");
                if let Err(e) = &result {
                    let _ = e.to_string();
                }
                if parse_seconds_text(&text).is_err() {
                    let e = result.expect_err("an invalid duration was accepted");
                    prop_assert!(e.line.is_some() && e.column.is_some(), "no position: {e}\n{scenario}");
                    prop_assert!(e.message.contains("invalid duration"), "{e}\n{scenario}");
                }
            }

            #[test]
            fn mutated_example_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8)) {
                let mut bytes = EXAMPLE.as_bytes().to_vec();
                for (at, op, b) in edits {
                    if bytes.is_empty() { break; }
                    let i = at.index(bytes.len());
                    match op {
                        0 => { bytes.remove(i); }
                        1 => bytes.insert(i, b),
                        _ => bytes[i] = b,
                    }
                }
                let text = String::from_utf8_lossy(&bytes);
                if let Err(e) = Scenario::parse(&text, "p") { let _ = e.to_string(); }
            }
        }
    }
}
