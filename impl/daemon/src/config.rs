//! `ntplab serve`'s configuration file (TOML).
//!
//! ```toml
//! listen = ["127.0.0.1:11123", "[::1]:11123"]
//!
//! [local]                  # serve this host's clock when no source is selected
//! stratum = 1              # (like chrony's "local stratum 1")
//! reference_id = "LOCL"
//!
//! [[source]]
//! address = "127.0.0.1:123"
//! iburst = true
//! poll_min = 6             # log2 seconds
//! poll_max = 10
//! unsmear = false          # undo this server's leap smear (its smear REFID)
//! interleaved = false      # ask for the interleaved mode (RFC 9769; chrony's xleave)
//! max_delay = 0.1          # s: replies with a longer round trip give no sample (chrony's maxdelay; default none)
//! max_delay_ratio = 3      # replies with a round trip above this times the least of the last 64 give no sample (chrony's maxdelayratio; default none)
//! max_delay_dev_ratio = 10 # samples delayed this many jitters beyond the least held are ignored (chrony's maxdelaydevratio; default 10)
//! prefer = false           # combine the preferred truechimers alone (chrony's and ntpd's prefer)
//! noselect = false         # measure, never select (also trust: only trusted sources outvote it; require: no clock update without it)
//! version = 4              # 1-4, 5 (NTPv5 only) or "auto" (NTPv4, upgraded to NTPv5 when offered)
//! draft = "08"             # the NTPv5 draft spoken: "07", "08" (default, ntpd-rs 1.9) or "09"
//!
//! ntpv5 = true             # answer NTPv5 requests and offer the upgrade (default true)
//! tai_offset = 37          # TAI - UTC, s: serve NTPv5's TAI timescale (default: not served)
//! min_sources = 1          # sources that must agree before the clock is steered (chrony's minsources)
//! max_distance = 1.0       # s: a source whose root distance exceeds this is not selectable (chrony's maxdistance; default 1, RFC 5905's MAXDIST)
//!
//! [access]
//! default = "allow"        # allow | deny | kod-deny | restrict
//! rules = [ { network = "192.0.2.0/24", action = "restrict" } ]   # longest prefix wins
//!
//! [rate_limit]            # without this section there is no rate limiting
//! enabled = true
//! interval_s_min = 2.0     # average interval a client must keep
//! burst = 8
//! kod = true               # answer excess with RATE kiss codes
//! leak = 0                 # answer 1 in 2^leak excess requests anyway (0-4; chrony's leak)
//!
//! [smear]
//! style = "before-leap"    # or "centered"
//! leap = "2016-12-31T23:59:60Z"
//!
//! [clock]
//! control = false          # never touch the system clock unless true
//! precision = 1e-7         # s; default: measured at start (crate::precision)
//! drift_file = "/var/lib/ntplab/drift"   # frequency kept across restarts (crate::drift)
//! step_threshold = 0.125   # s: larger offsets are stepped, not slewed (chrony's makestep threshold)
//! step_updates = 3         # ... at once within the first 3 updates; -1: at every update
//! poll_target = 16         # samples a fit holds where the poll settles (chrony's polltarget, 3-64; its default is 8)
//! panic_threshold = 1000   # s: exit rather than correct larger offsets; 0: none (as chrony)
//! panic_at_start = true    # false: the first update steps any offset (ntpd -g)
//! max_change = { offset = 1000, start = 1, ignore = 2 }   # chrony's maxchange: larger adjustments skipped, then exit (default none)
//!
//! [server]                 # ntplab serve on real sockets (simulated hosts have none)
//! workers = 2              # threads, one SO_REUSEPORT socket each (default: CPU cores)
//! recv_buffer = 4194304    # SO_RCVBUF of each, octets (default: the kernel's)
//! interleaved_slots = 262144   # interleaved-mode table, 41 octets a slot (default 2^18: 100k clients)
//!
//! [nts]                    # serve NTS (RFC 8915): NTS-KE on TCP, protected NTP on `listen`
//! certificate = "/etc/ntplab/cert.pem"   # chain, leaf first (PEM)
//! key = "/etc/ntplab/key.pem"            # its private key (PEM)
//! ke_listen = ["127.0.0.1:4460"]         # default: each `listen` IP at port 4460
//! key_rotation = 86400     # s between new cookie keys (default 1 day)
//! ntp_server = "ntp.example.net"         # hand out another NTP server (default: none)
//! ntp_port = 11123         # hand out this NTP port (default: the first `listen` port unless 123)
//! aeads = [15, 30, 17]     # AEADs accepted, preferred first (15 AES-SIV-CMAC-256, 30 AES-128-GCM-SIV, 17 AES-SIV-CMAC-512)
//!
//! [[source]]               # an NTS source: KE first, then protected NTP
//! address = "127.0.0.1:123"               # NTP, unless the KE server names another
//! nts = true
//! ke_server = "localhost:4460"            # default: the address's IP, port 4460
//! trusted_certificates = "/etc/ntplab/ca.pem"   # default: the system's store
//! aeads = [15, 30]         # AEADs offered, preferred first (default [15, 30, 17])
//!
//! [[refclock]]             # a GPS receiver with a PPS output: serve stratum 1
//! kind = "gps-pps"         # gps-pps | gps | pps
//! serial = "/dev/ttyS0"    # NMEA 0183 (kinds gps, gps-pps)
//! baud = 9600              # default 9600
//! pps_socket = "/run/ntplab.pps0.sock"   # chrony/gpsd SOCK samples (kinds pps, gps-pps)
//! # pps_device = "/dev/pps0"             # or the kernel PPS API (instead of pps_socket)
//! refid = "PPS"            # default "GPS" for kind gps, "PPS" otherwise
//! delay = 1e-9             # assumed round trip, s (default 1 ns)
//! offset = 0.0             # s, added to every measured offset (true - local)
//! filter = 16              # samples per median-filter window (default 16)
//! discipline = "regression" # or "rfc5905" (RFC 5905's PLL/FLL)
//! ```
//!
//! # Reference clocks
//!
//! A `[[refclock]]` is a stratum-0 source: when selected, the daemon serves
//! stratum 1 with its `refid`.
//!
//! - `gps-pps`: PPS pulses give the instant of each second, the NMEA
//!   sentences read from `serial` say which second it is (the pulse and the
//!   sentence naming its second are paired when the sentence is received
//!   within a second of the pulse). Without a valid fix the pulses are not used.
//! - `gps`: NMEA only; the end of the first time sentence of each second, as
//!   read in user space, is the measurement: use `offset` for the receiver's
//!   latency (e.g. `offset = 0.2` for sentences complete 200 ms after their
//!   second). Accuracy is that of the latency's variation (milliseconds).
//! - `pps`: pulses only; each marks the whole second nearest to it, so the
//!   clock must already be within 0.5 s of UTC (set by an NTP source or by hand).
//!
//! `pps_socket` is a Unix datagram socket the daemon creates (removing a stale
//! one) and reads chrony's SOCK refclock samples from: 40-byte `struct
//! sock_sample` (timeval, offset, pulse, leap, pad, magic 0x534f434b) in the
//! host's byte order, as gpsd sends them; only pulse samples are used.
//! `pps_device` instead reads assert edges from a kernel PPS device
//! (`/dev/ppsN`, RFC 2783's API as Linux has it), stamped by the kernel at
//! the interrupt; a device not capturing assert edges is switched to them,
//! which needs `CAP_SYS_TIME` (most drivers capture them already).
//! `offset` also compensates a PPS cable delay (`offset = 5e-8` for 50 ns).
//!
//! Errors name the line and column and say what was expected.

use crate::precision::{log2_of, QUANTUM_MAX_S, QUANTUM_MIN_S};
use ntplab_proto::discipline::{DisciplineConfig, DisciplineKind};
use ntplab_proto::server::ratelimit::LEAK_LOG2_MAX;
use ntplab_proto::server::{AccessAction, AccessList, LeapKind, RateLimitConfig, ServerConfig, SmearConfig, SmearStyle};
use ntplab_proto::source::SourceConfig;
use ntplab_proto::system::{LocalReference, MaxChange};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v5::Draft;
use ntplab_proto::refclock::pps::{PpsConfig, PpsMode};
use ntplab_proto::select::SelectOptions;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole file, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Addresses to serve NTP on.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Local reference.
    pub local: Option<LocalSection>,
    /// Upstream servers.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// Access control.
    #[serde(default)]
    pub access: AccessSection,
    /// Rate limiting; off without this section (as in chrony), on with it.
    pub rate_limit: Option<RateLimitSection>,
    /// Leap smear.
    pub smear: Option<SmearSection>,
    /// Clock control.
    #[serde(default)]
    pub clock: ClockSection,
    /// Answer interleaved requests (RFC 9769); default true.
    pub interleaved: Option<bool>,
    /// Answer NTPv5 requests and offer NTPv4 clients the upgrade; default true.
    pub ntpv5: Option<bool>,
    /// TAI − UTC in seconds: NTPv5 clients asking for TAI get it (default: UTC instead).
    pub tai_offset: Option<i16>,
    /// Sources that must agree (truechimers of the selection) before the
    /// clock is disciplined or a system peer named: chrony's `minsources`,
    /// ntpd's `tos minsane` (RFC 5905's CMIN). 1 to [`MIN_SOURCES_MAX`];
    /// default 1.
    pub min_sources: Option<usize>,
    /// Root distance, seconds, above which a source is not selectable
    /// (plus `PHI · 2^poll`): chrony's `maxdistance`, ntpd's `tos maxdist`.
    /// Above 0, at most [`MAX_DISTANCE_MAX_S`]; default RFC 5905's MAXDIST
    /// (1 s).
    pub max_distance: Option<f64>,
    /// Reference clocks.
    #[serde(default, rename = "refclock")]
    pub refclocks: Vec<RefclockSection>,
    /// Serve NTS (RFC 8915).
    pub nts: Option<NtsSection>,
    /// How `ntplab serve` answers on real sockets (workers, buffers, table sizes).
    pub server: Option<ServerSection>,
}

/// `[server]`: how `ntplab serve` answers on real sockets. Simulated hosts
/// have no such section (their server is the loop's one responder).
#[derive(Debug, Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads, each with its own `SO_REUSEPORT` socket per listen
    /// address (default: one per CPU core).
    pub workers: Option<usize>,
    /// Receive buffer of each worker's socket, octets (`SO_RCVBUF`; default:
    /// the kernel's, which caps it at `net.core.rmem_max`). A larger one
    /// absorbs bursts; under sustained overload it is a queue, and the
    /// requests in it are answered late (docs/throughput.md).
    pub recv_buffer: Option<usize>,
    /// Client slots of the interleaved-mode timestamp table (40 octets each;
    /// default [`INTERLEAVED_SLOTS_SERVE_DEFAULT`]).
    pub interleaved_slots: Option<usize>,
}

/// `ntplab serve`'s interleaved table without `[server] interleaved_slots`:
/// 2^18 slots (10 MiB), which keeps a pair for more than 99.9 % of 100,000
/// clients (16 ways per bucket; see the responder's `interleaved` module).
pub const INTERLEAVED_SLOTS_SERVE_DEFAULT: usize = 1 << 18;

/// Most `[server] workers`.
pub const WORKERS_MAX: usize = 256;

/// `[nts]`: serve NTS-KE and NTS-protected NTP.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct NtsSection {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
    /// TCP addresses of the NTS-KE listener (default: each `listen` IP at 4460).
    pub ke_listen: Option<Vec<SocketAddr>>,
    /// Seconds between new cookie master keys (default 86400).
    pub key_rotation: Option<f64>,
    /// NTP server name or address handed out in the KE response (default: none).
    pub ntp_server: Option<String>,
    /// NTP port handed out in the KE response (default: none, meaning 123).
    pub ntp_port: Option<u16>,
    /// KE sessions at once (default 128).
    pub ke_connections: Option<usize>,
    /// Seconds one KE session may take, handshake to close (default 5).
    pub ke_timeout: Option<f64>,
    /// AEAD algorithm IDs the server accepts, most preferred first (default [15, 30, 17]).
    pub aeads: Option<Vec<u16>>,
}

/// `[[refclock]]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RefclockSection {
    /// What the reference clock is.
    pub kind: RefclockKind,
    /// Serial device of the NMEA output (kinds `gps`, `gps-pps`).
    pub serial: Option<String>,
    /// Serial line speed (default 9600).
    pub baud: Option<u32>,
    /// Unix datagram socket receiving SOCK pulse samples (kinds `pps`, `gps-pps`).
    pub pps_socket: Option<String>,
    /// Kernel PPS device, instead of `pps_socket`.
    pub pps_device: Option<String>,
    /// Reference ID, 1–4 printable ASCII characters.
    pub refid: Option<String>,
    /// Assumed round-trip delay, seconds (default 1e-9).
    pub delay: Option<f64>,
    /// Added to every measured offset, seconds (default 0).
    pub offset: Option<f64>,
    /// Samples per filter window (default 16).
    pub filter: Option<usize>,
}

/// Kind of reference clock.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RefclockKind {
    /// PPS pulses labelled with the seconds of NMEA sentences.
    GpsPps,
    /// NMEA sentences alone.
    Gps,
    /// PPS pulses alone (the clock must be within 0.5 s already).
    Pps,
}

impl RefclockKind {
    /// The name used in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            RefclockKind::GpsPps => "gps-pps",
            RefclockKind::Gps => "gps",
            RefclockKind::Pps => "pps",
        }
    }

    /// Whether it reads NMEA from a serial port.
    pub const fn uses_serial(self) -> bool {
        matches!(self, RefclockKind::GpsPps | RefclockKind::Gps)
    }

    /// Whether it takes PPS pulses.
    pub const fn uses_pps(self) -> bool {
        matches!(self, RefclockKind::GpsPps | RefclockKind::Pps)
    }
}

/// `[local]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// 1–15.
    pub stratum: u8,
    /// Up to four ASCII characters; default "LOCL".
    pub reference_id: Option<String>,
    /// A leap second this reference follows: `"2016-12-31T23:59:60Z"` inserts
    /// one, `"2015-06-30T23:59:59Z"` deletes that second.
    #[serde(default)]
    pub leap: Option<String>,
}

/// `[[source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `IP:PORT`.
    pub address: SocketAddr,
    /// Send a burst of 8 requests at start (NTPv4: also when the server is
    /// lost; NTPv5: at start only, draft-ietf-ntp-ntpv5-07 §9).
    #[serde(default)]
    pub iburst: bool,
    /// Send bursts at every poll (NTPv4 only: ignored while speaking NTPv5).
    #[serde(default)]
    pub burst: bool,
    /// Minimum poll exponent, log2 s (default 6).
    pub poll_min: Option<i8>,
    /// Maximum poll exponent, log2 s (default 10).
    pub poll_max: Option<i8>,
    /// NTP version to send: 1–5 or "auto" (default 4).
    pub version: Option<VersionSetting>,
    /// NTPv5 draft: "07", "08" or "09" (default "08").
    pub draft: Option<String>,
    /// Undo a leap smear this server applies (its smear REFID), and follow UTC.
    #[serde(default)]
    pub unsmear: bool,
    /// Ask for the interleaved client/server mode (RFC 9769; NTPv4 only).
    #[serde(default)]
    pub interleaved: bool,
    /// Largest round-trip delay of a sample, s (chrony's `maxdelay`): a reply
    /// measuring more counts for reachability and gives no sample.
    pub max_delay: Option<f64>,
    /// Largest ratio of a sample's round trip to the least of the source's
    /// last 64 (chrony's `maxdelayratio`): a reply measuring more counts for
    /// reachability and gives no sample.
    pub max_delay_ratio: Option<f64>,
    /// How many jitters a sample's half round trip may exceed the least of
    /// the source's held samples before the discipline ignores it (chrony's
    /// `maxdelaydevratio`, default 10).
    pub max_delay_dev_ratio: Option<f64>,
    /// Poll and measure it, never select it (chrony's and ntpd's `noselect`).
    #[serde(default)]
    pub noselect: bool,
    /// Among the truechimers, combine the preferred sources alone (chrony's
    /// and ntpd's `prefer`).
    #[serde(default)]
    pub prefer: bool,
    /// Take its time as true: only other trusted sources can outvote it
    /// (chrony's `trust`).
    #[serde(default)]
    pub trust: bool,
    /// Discipline the clock only while a source with `require` is a
    /// truechimer (chrony's `require`).
    #[serde(default)]
    pub require: bool,
    /// Protect the exchanges with NTS (RFC 8915): NTS-KE first.
    #[serde(default)]
    pub nts: bool,
    /// NTS-KE server, `HOST[:PORT]` (default: the address's IP, port 4460).
    pub ke_server: Option<String>,
    /// PEM file of the certificates to trust for NTS-KE (default: the system's store).
    pub trusted_certificates: Option<PathBuf>,
    /// AEAD algorithm IDs to offer in NTS-KE, most preferred first (default [15, 30, 17]).
    pub aeads: Option<Vec<u16>>,
}

/// A `[[source]]`'s `version`: a number, or "auto" (NTPv4 asking for NTPv5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSetting {
    /// This version only.
    Number(u8),
    /// Start with NTPv4 and switch to NTPv5 when the server offers it.
    Auto,
}

impl VersionSetting {
    /// The source configuration's `version` and `v5_auto`.
    pub fn to_config(self) -> (u8, bool) {
        match self {
            VersionSetting::Number(v) => (v, false),
            VersionSetting::Auto => (4, true),
        }
    }
}

impl<'de> Deserialize<'de> for VersionSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = VersionSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an NTP version 1-5 or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u8::try_from(v).map(VersionSetting::Number).map_err(|_| E::custom(format!("NTP version {v} is not 1-5 or \"auto\"")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u8::try_from(v).map(VersionSetting::Number).map_err(|_| E::custom(format!("NTP version {v} is not 1-5 or \"auto\"")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "auto" => Ok(VersionSetting::Auto),
                    _ => Err(E::custom(format!("version {v:?} is neither a number 1-5 nor \"auto\""))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[access]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Action for addresses no rule names (default allow).
    pub default: Option<ActionName>,
    /// CIDR rules; the longest matching prefix wins.
    #[serde(default)]
    pub rules: Vec<AccessRuleSection>,
}

/// One access rule.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleSection {
    /// `ADDRESS/PREFIX`.
    pub network: String,
    /// What to do.
    pub action: ActionName,
}

/// An access action as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    /// Serve.
    Allow,
    /// Do not answer.
    Deny,
    /// Answer with a DENY kiss code.
    KodDeny,
    /// Answer with an RSTR kiss code.
    Restrict,
}

impl From<ActionName> for AccessAction {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Allow => AccessAction::Allow,
            ActionName::Deny => AccessAction::Deny,
            ActionName::KodDeny => AccessAction::KodDeny,
            ActionName::Restrict => AccessAction::Restrict,
        }
    }
}

/// `[rate_limit]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Default true (when the section is present).
    pub enabled: Option<bool>,
    /// Average interval a client must keep, seconds (default 8).
    pub interval_s_min: Option<f64>,
    /// Requests allowed in a burst (default 8).
    pub burst: Option<u32>,
    /// Answer excess requests with RATE kiss codes (default true).
    pub kod: Option<bool>,
    /// Client table slots (fixed memory; default 16384).
    pub slots: Option<usize>,
    /// Answer one in 2^leak requests over the limit anyway, 0-4 (default 0:
    /// none; chrony's `ratelimit leak`).
    pub leak: Option<u8>,
}

/// `[smear]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SmearSection {
    /// `before-leap` or `centered`.
    pub style: SmearStyleName,
    /// The leap second, e.g. `2016-12-31T23:59:60Z` (insert) or `2016-12-31T23:59:59Z` with `kind = "delete"`.
    pub leap: String,
    /// `insert` (default) or `delete`.
    pub kind: Option<LeapKindName>,
}

/// Smear style as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum SmearStyleName {
    /// 24 h before the leap.
    BeforeLeap,
    /// 12 h before and 12 h after.
    Centered,
}

/// Leap kind as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum LeapKindName {
    /// Insert 23:59:60.
    Insert,
    /// Delete 23:59:59.
    Delete,
}

/// `[clock]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClockSection {
    /// Discipline the system clock (needs CAP_SYS_TIME). Default false.
    #[serde(default)]
    pub control: bool,
    /// The clock discipline algorithm: `"regression"` (default; least squares
    /// over recent samples, chrony-like) or `"rfc5905"` (RFC 5905's PLL/FLL).
    pub discipline: Option<String>,
    /// The clock's precision in seconds, 1e-9 to 1 (chrony's
    /// `clockprecision`): sent in every packet as log2 rounded to the
    /// nearest integer, and the floor of the measurement noise. Default:
    /// measured at start ([`crate::precision`]).
    pub precision: Option<f64>,
    /// The drift file ([`crate::drift`]): read at start for the frequency to
    /// start from, written with the measured one every hour and at exit.
    pub drift_file: Option<String>,
    /// Offsets above this (seconds, > 0) are stepped rather than slewed:
    /// at once within the first `step_updates` updates, else after RFC
    /// 5905's 900 s stepout. Default 0.125 (RFC 5905's STEPT; chrony's
    /// `makestep` threshold).
    pub step_threshold: Option<f64>,
    /// The regression discipline's updates within which an offset above
    /// `step_threshold` steps at once (chrony's `makestep` limit): 0 and up,
    /// or -1 for every update (`makestep 1 -1`). Default 3.
    pub step_updates: Option<i64>,
    /// The regression discipline's poll target (chrony's `polltarget`): the
    /// poll rises while the best-predicting span holds more samples than
    /// this, falls while it holds fewer; 3 to 64. Default 16
    /// ([`ntplab_proto::discipline::regression::DEFAULT_POLL_TARGET`]).
    pub poll_target: Option<i64>,
    /// Offsets above this (seconds) make the daemon exit rather than touch
    /// the clock, as ntpd's panic threshold; 0: no threshold (chrony has
    /// none). Default 1000.
    pub panic_threshold: Option<f64>,
    /// Whether the first update, too, exits on an offset above the panic
    /// threshold. `false`: it steps any offset (`ntpd -g`). Default true.
    pub panic_at_start: Option<bool>,
    /// chrony's `maxchange`: the largest adjustment of the clock; default none.
    pub max_change: Option<MaxChangeSection>,
}

/// `[clock] max_change = { offset, start, ignore }`: chrony's `maxchange
/// offset start ignore`. After the first `start` clock updates, one that
/// would adjust the clock by more than `offset` seconds is not made; after
/// `ignore` of them (-1: never) the daemon exits with an error.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaxChangeSection {
    /// Largest adjustment, seconds (above 0).
    pub offset: f64,
    /// Clock updates made before the check starts (0 and up).
    pub start: i64,
    /// Larger adjustments skipped before exiting (0 and up; -1: never exit).
    pub ignore: i64,
}

/// The step and panic settings of `[clock]`, as the discipline takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSettings {
    /// `step_threshold`, seconds.
    pub threshold_s: f64,
    /// `step_updates` (`u32::MAX`: every update); `None`: the discipline's default.
    pub updates: Option<u32>,
    /// `panic_threshold`, seconds; `None`: no threshold.
    pub panic_threshold_s: Option<f64>,
    /// `panic_at_start`.
    pub panic_at_start: bool,
}

impl Default for StepSettings {
    fn default() -> Self {
        let d = DisciplineConfig::default();
        StepSettings {
            threshold_s: d.step_threshold.to_seconds_f64(),
            updates: None,
            panic_threshold_s: d.panic_threshold.map(|p| p.to_seconds_f64()),
            panic_at_start: !d.allow_initial_panic,
        }
    }
}

impl StepSettings {
    /// Writes these settings into a discipline's configuration.
    pub fn apply(&self, c: &mut DisciplineConfig) {
        c.step_threshold = NtpDuration::from_seconds_f64(self.threshold_s);
        c.step_updates = self.updates;
        c.panic_threshold = self.panic_threshold_s.map(NtpDuration::from_seconds_f64);
        c.allow_initial_panic = !self.panic_at_start;
    }

    /// `step_updates` as the configuration writes it (-1: every update);
    /// `None`: not given.
    pub fn updates_written(&self) -> Option<i64> {
        self.updates.map(|n| if n == u32::MAX { -1 } else { i64::from(n) })
    }
}

/// Largest `step_threshold` and `panic_threshold`, seconds: 2^32, an NTP era.
pub const STEP_SETTING_MAX_S: f64 = 4_294_967_296.0;
/// Largest `min_sources`.
pub const MIN_SOURCES_MAX: usize = 64;

/// Largest `max_distance`, seconds: MAXDISP, the largest dispersion a sample can carry.
pub const MAX_DISTANCE_MAX_S: f64 = 16.0;

/// Smallest `poll_target`: a line needs three samples.
pub const POLL_TARGET_MIN: i64 = 3;
/// Largest `poll_target`: the samples the regression holds.
pub const POLL_TARGET_MAX: i64 = 64;

/// Largest `step_updates` besides -1.
pub const STEP_UPDATES_MAX: i64 = 1_000_000;

/// Largest configuration file read: 1 MiB (a configuration of thousands of
/// sources is a few hundred KiB).
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// Why [`read_file_bounded`] read nothing.
#[derive(Debug)]
pub enum BoundedReadError {
    /// Opening, inspecting or reading the file failed.
    Io(std::io::Error),
    /// The path names a directory.
    Directory,
    /// More than the limit: the size of a regular file, or `None` when
    /// reading a device or pipe stopped one byte past the limit.
    TooLarge(Option<u64>),
}

/// The bytes of the file at `path`, if it has at most `max` of them. A regular
/// file's size is checked before reading; anything else (a device, a pipe) is
/// read up to `max + 1` bytes at most, so an endless input such as `/dev/zero`
/// is refused after `max` bytes instead of filling memory. Configurations and
/// scenario files are read through it.
pub fn read_file_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, BoundedReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(BoundedReadError::Io)?;
    let meta = file.metadata().map_err(BoundedReadError::Io)?;
    if meta.is_dir() {
        return Err(BoundedReadError::Directory);
    }
    if meta.is_file() && meta.len() > max {
        return Err(BoundedReadError::TooLarge(Some(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(BoundedReadError::TooLarge(None));
    }
    Ok(bytes)
}

/// The UTF-8 text of the configuration file at `path`, if it has at most
/// `max` bytes ([`read_file_bounded`]).
pub fn read_bounded(path: &std::path::Path, max: u64) -> Result<String, ConfigError> {
    bounded_text(path, max, read_file_bounded(path, max))
}

/// What [`read_bounded`] makes of [`read_file_bounded`]`(path, max)`'s
/// outcome `read`: the UTF-8 text, or the error naming `path`.
pub fn bounded_text(path: &std::path::Path, max: u64, read: Result<Vec<u8>, BoundedReadError>) -> Result<String, ConfigError> {
    let name = path.display();
    let bytes = read.map_err(|e| match e {
        BoundedReadError::Io(e) => ConfigError(format!("cannot read {name}: {e}")),
        BoundedReadError::Directory => ConfigError(format!("cannot read {name}: it is a directory")),
        BoundedReadError::TooLarge(Some(len)) => ConfigError(format!("{name}: {len} bytes is larger than the limit of {max} bytes")),
        BoundedReadError::TooLarge(None) => ConfigError(format!("{name}: more than the limit of {max} bytes (is it a configuration file?)")),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(&String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]), e.utf8_error().valid_up_to());
        ConfigError(format!("{name}:{line}:{column}: not UTF-8 text"))
    })
}

/// A configuration error, with a position when it comes from the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One upstream source, validated.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Where.
    pub address: SocketAddr,
    /// How to poll it.
    pub config: SourceConfig,
    /// NTS, when the source uses it.
    pub nts: Option<NtsSourceSpec>,
    /// How it takes part in selection (`noselect`, `prefer`, `trust`, `require`).
    pub select: SelectOptions,
}

/// An NTS source's key establishment, validated.
#[derive(Debug, Clone)]
pub struct NtsSourceSpec {
    /// NTS-KE server host: the TLS server name (SNI, certificate check) and where to connect.
    pub ke_host: String,
    /// NTS-KE TCP port.
    pub ke_port: u16,
    /// Trust anchors file; `None`: the system's store.
    pub trusted_certificates: Option<PathBuf>,
    /// The anchors, once read ([`DaemonConfig::load_nts_files`]); `None`: read at start.
    pub roots: Option<std::sync::Arc<rustls::RootCertStore>>,
    /// AEADs offered, most preferred first.
    pub aeads: Vec<ntplab_proto::nts::Aead>,
    /// The source speaks NTPv5 (`version = 5`): NTS-KE asks for Next
    /// Protocol 0x8001 and the keys are exported for it.
    pub ntpv5: bool,
}

/// The NTS server side, validated.
#[derive(Debug, Clone)]
pub struct NtsServerSpec {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The chain and key, once read ([`DaemonConfig::load_nts_files`]); `None`: read at start.
    pub identity: Option<crate::nts::tls::ServerIdentity>,
    /// NTS-KE listen addresses.
    pub ke_listen: Vec<SocketAddr>,
    /// Time between cookie master keys.
    pub key_rotation: std::time::Duration,
    /// NTP server handed out, if any.
    pub ntp_server: Option<String>,
    /// NTP port handed out, if any.
    pub ntp_port: Option<u16>,
    /// The KE listener's bounds.
    pub limits: crate::nts::ke::KeLimits,
    /// AEADs accepted, most preferred first.
    pub aeads: Vec<ntplab_proto::nts::Aead>,
    /// NTS-KE also agrees on NTPv5 (Next Protocol 0x8001) when the client
    /// offers it: the top-level `ntpv5` (default on).
    pub ntpv5: bool,
}

/// One reference clock, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RefclockSpec {
    /// What it is.
    pub kind: RefclockKind,
    /// Serial device (kinds with NMEA).
    pub serial: Option<PathBuf>,
    /// Serial line speed.
    pub baud: u32,
    /// SOCK sample socket (kinds with PPS).
    pub pps_socket: Option<PathBuf>,
    /// Kernel PPS device (kinds with PPS), instead of a SOCK socket.
    pub pps_device: Option<PathBuf>,
    /// Reference ID advertised when it is the system peer.
    pub reference_id: ReferenceId,
    /// Assumed round-trip delay.
    pub delay: NtpDuration,
    /// Added to every measured offset.
    pub offset: NtpDuration,
    /// Samples per filter window.
    pub filter_len: usize,
}

/// Serial speeds accepted for `baud`.
pub const BAUD_RATES: [u32; 10] = [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800];

impl RefclockSpec {
    /// A reference clock of `kind` with default settings and no devices
    /// (the simulator's, whose devices are models).
    pub fn new(kind: RefclockKind) -> RefclockSpec {
        let refid = if kind == RefclockKind::Gps { "GPS" } else { "PPS" };
        RefclockSpec {
            kind,
            serial: None,
            baud: 9600,
            pps_socket: None,
            pps_device: None,
            reference_id: ReferenceId::from_ascii(refid),
            delay: NtpDuration::from_nanos(1),
            offset: NtpDuration::ZERO,
            filter_len: 16,
        }
    }

    /// Log2 of the seconds one filter window takes (one sample a second),
    /// within the protocol's poll range: how often samples come.
    pub fn poll_log2(&self) -> i8 {
        let mut poll = 0i8;
        while (1usize << poll) < self.filter_len && poll < 17 {
            poll += 1;
        }
        poll.clamp(ntplab_proto::constants::MINPOLL, ntplab_proto::constants::MAXPOLL)
    }

    /// The PPS processor's settings: pulses labelled by NMEA (`gps-pps`,
    /// and `gps`, whose sentence arrivals stand in for pulses) or locked to
    /// the local clock (`pps`); `offset` is the pulses' delay to compensate.
    pub fn pps_config(&self) -> PpsConfig {
        PpsConfig {
            mode: if self.kind == RefclockKind::Pps { PpsMode::Locked } else { PpsMode::Labelled },
            filter_len: self.filter_len,
            pulse_delay: self.offset,
            // The NMEA-only kind reads its "pulse" with a user-space
            // timestamp: its spread is milliseconds, not microseconds.
            outlier_threshold_min: if self.kind == RefclockKind::Gps {
                NtpDuration::from_nanos(2_000_000)
            } else {
                PpsConfig::default().outlier_threshold_min
            },
            ..PpsConfig::default()
        }
    }
}

/// The daemon's configuration, validated.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Addresses to serve on (none: client only).
    pub listen: Vec<SocketAddr>,
    /// Upstream sources.
    pub sources: Vec<SourceSpec>,
    /// The responder's settings.
    pub server: ServerConfig,
    /// Local reference, if any.
    pub local: Option<LocalReference>,
    /// Whether the system clock may be adjusted.
    pub clock_control: bool,
    /// Reference clocks.
    pub refclocks: Vec<RefclockSpec>,
    /// The clock discipline algorithm (`[clock] discipline`).
    pub discipline: DisciplineKind,
    /// The clock's precision, log2 s (`[clock] precision`); `None`: the
    /// clock's own ([`crate::clock::DaemonClock::precision_log2`], measured
    /// at start on a real clock).
    pub precision_log2: Option<i8>,
    /// The drift file (`[clock] drift_file`), written while running.
    pub drift_file: Option<std::path::PathBuf>,
    /// The step and panic settings (`[clock] step_threshold`, `step_updates`,
    /// `panic_threshold`, `panic_at_start`).
    pub step: StepSettings,
    /// `[clock] poll_target`, checked; `None`: the discipline's default.
    pub poll_target: Option<usize>,
    /// `min_sources`: truechimers needed to discipline the clock (default 1).
    pub min_sources: usize,
    /// `[clock] max_change` (chrony's `maxchange`), checked.
    pub max_change: Option<MaxChange>,
    /// `max_distance`: the selection's root-distance limit, seconds (None:
    /// RFC 5905's MAXDIST, 1 s; the lab then leaves each program's own).
    pub max_distance: Option<f64>,
    /// The frequency correction (s/s) the discipline starts from: the drift
    /// file's, once [`DaemonConfig::load_drift_file`] has read it.
    pub initial_frequency: Option<f64>,
    /// Serve NTS, when `[nts]` is given.
    pub nts: Option<NtsServerSpec>,
}

impl DaemonConfig {
    /// Parses and validates a TOML file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
        Self::parse_file(text, origin)?.validate_text(text, origin)
    }

    /// Reads a configuration file's text, refusing (without reading them
    /// whole) files over [`CONFIG_BYTES_MAX`] and text that is not UTF-8.
    pub fn read_file(path: &std::path::Path) -> Result<String, ConfigError> {
        read_bounded(path, CONFIG_BYTES_MAX)
    }

    /// Parses a TOML file's text without validating it (to merge command-line options first).
    pub fn parse_file(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format_toml_error(&e, text, origin)))
    }
}

fn format_toml_error(e: &toml::de::Error, text: &str, origin: &str) -> String {
    match e.span() {
        Some(span) if text.is_char_boundary(span.start.min(text.len())) => {
            let (line, column) = line_column(text, span.start.min(text.len()));
            format!("{origin}:{line}:{column}: {}", e.message())
        }
        Some(_) => format!("{origin}: {}", e.message()),
        None => format!("{origin}: {}", e.message()),
    }
}

/// One step of the path from the top of a configuration file to a value,
/// for pointing at the value in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPath {
    /// A key of a table.
    Key(&'static str),
    /// An element of an array (`[[source]]` #1 is `Index(0)`).
    Index(usize),
}

/// A value the types accept but the daemon cannot use: what is wrong, and
/// where in the file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The value's path (as precise as known; a section, at least).
    pub path: Vec<KeyPath>,
    /// What is wrong.
    pub message: String,
}

fn at(path: &[KeyPath], message: String) -> ValueError {
    ValueError { path: path.to_vec(), message }
}

use KeyPath::{Index as I, Key as K};

impl ConfigFile {
    /// Checks values the types cannot; errors start with `origin:` (use
    /// [`ConfigFile::validate_text`] when the file's text is at hand, for line
    /// and column).
    pub fn validate(self, origin: &str) -> Result<DaemonConfig, ConfigError> {
        self.check().map_err(|e| ConfigError(format!("{origin}: {}", e.message)))
    }

    /// Checks values the types cannot; errors name `origin:LINE:COLUMN:` of
    /// the offending value in `text`, the file this was parsed from.
    pub fn validate_text(self, text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
        self.check().map_err(|e| match locate(text, &e.path) {
            Some((line, column)) => ConfigError(format!("{origin}:{line}:{column}: {}", e.message)),
            None => ConfigError(format!("{origin}: {}", e.message)),
        })
    }

    /// Checks values the types cannot, naming the path of a wrong value.
    pub fn check(self) -> Result<DaemonConfig, ValueError> {
        let local = match self.local {
            Some(l) => {
                if !(1..=15).contains(&l.stratum) {
                    return Err(at(&[K("local"), K("stratum")], format!("[local] stratum {} is outside 1-15", l.stratum)));
                }
                let code = l.reference_id.unwrap_or_else(|| "LOCL".into());
                if code.is_empty() || code.len() > 4 || !code.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(at(
                        &[K("local"), K("reference_id")],
                        format!("[local] reference_id {code:?} must be 1-4 printable ASCII characters"),
                    ));
                }
                let leap = match &l.leap {
                    Some(text) => Some(
                        parse_leap(text).map_err(|m| at(&[K("local"), K("leap")], format!("[local] leap {text:?}: {m}")))?,
                    ),
                    None => None,
                };
                Some(LocalReference { stratum: l.stratum, reference_id: ReferenceId::from_ascii(&code), leap })
            }
            None => None,
        };
        let mut sources = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let name = format!("[[source]] #{} ({})", i + 1, s.address);
            check_source_address(s.address).map_err(|m| at(&[K("source"), I(i), K("address")], format!("{name}: {m}")))?;
            let defaults = SourceConfig::default();
            let config = SourceConfig {
                poll_min_log2: s.poll_min.unwrap_or(defaults.poll_min_log2),
                poll_max_log2: s.poll_max.unwrap_or(defaults.poll_max_log2.max(s.poll_min.unwrap_or(0))),
                iburst: s.iburst,
                burst: s.burst,
                version: s.version.map_or(4, |v| v.to_config().0),
                v5_auto: s.version.is_some_and(|v| v.to_config().1),
                draft: match &s.draft {
                    None => defaults.draft,
                    Some(d) => Draft::parse(d).ok_or_else(|| {
                        at(&[K("source"), I(i), K("draft")], format!("{name}: NTPv5 draft {d:?} is not one of \"07\", \"08\", \"09\""))
                    })?,
                },
                unsmear: s.unsmear,
                interleaved: s.interleaved,
                // The range is SourceConfig::validate's (below); only a
                // number that is no duration is refused here.
                max_delay: match s.max_delay {
                    None => None,
                    Some(d) if d.is_finite() => Some(NtpDuration::from_seconds_f64(d)),
                    Some(d) => {
                        return Err(at(&[K("source"), I(i), K("max_delay")], format!("{name}: maximum delay {d} s must be above 0 and at most 16 s (RFC 5905 MAXDISP)")))
                    }
                },
                max_delay_ratio: s.max_delay_ratio,
                max_delay_dev_ratio: s.max_delay_dev_ratio,
                ..defaults
            };
            config.validate().map_err(|e| {
                let e = e.to_string();
                // Point at the key the message is about, when it names one.
                let key = [("minimum poll", "poll_min"), ("maximum poll", "poll_max"), ("interleaved", "interleaved"), ("version", "version"), ("maximum delay deviation ratio", "max_delay_dev_ratio"), ("maximum delay ratio", "max_delay_ratio"), ("maximum delay", "max_delay")]
                    .into_iter()
                    .find_map(|(words, key)| e.contains(words).then_some(key));
                let mut path = vec![K("source"), I(i)];
                path.extend(key.map(K));
                at(&path, format!("{name}: {e}"))
            })?;
            if s.nts && config.v5_auto {
                return Err(at(&[K("source"), I(i), K("version")], format!("{name}: NTS with version \"auto\" is not supported: NTS-KE agrees on one protocol, use version 4 or 5 with nts = true")));
            }
            let nts = check_nts_source(s, config.version == 5).map_err(|(key, m)| {
                let mut path = vec![K("source"), I(i)];
                path.extend(key.map(K));
                at(&path, format!("{name}: {m}"))
            })?;
            let select = SelectOptions { noselect: s.noselect, prefer: s.prefer, trust: s.trust, require: s.require };
            if s.noselect {
                let other = [(s.prefer, "prefer", "preferred"), (s.trust, "trust", "trusted"), (s.require, "require", "required")]
                    .into_iter()
                    .find_map(|(on, key, word)| on.then_some((key, word)));
                if let Some((key, word)) = other {
                    return Err(at(&[K("source"), I(i), K(key)], format!("{name}: noselect with {key}: a source that is never selected cannot be {word}; drop one of the two")));
                }
            }
            sources.push(SourceSpec { address: s.address, config, nts, select });
        }
        let mut access = AccessList::new(self.access.default.map_or(AccessAction::Allow, Into::into));
        for (i, r) in self.access.rules.iter().enumerate() {
            access
                .push_cidr(&r.network, r.action.into())
                .map_err(|e| at(&[K("access"), K("rules"), I(i), K("network")], format!("[access] rule {:?}: {e}", r.network)))?;
        }
        let defaults = RateLimitConfig::default();
        let section_given = self.rate_limit.is_some();
        let section = self.rate_limit.unwrap_or_default();
        let interval_s = section.interval_s_min.unwrap_or(defaults.interval_ns_min as f64 * 1e-9);
        if !(0.0..=3600.0).contains(&interval_s) {
            return Err(at(
                &[K("rate_limit"), K("interval_s_min")],
                format!("[rate_limit] interval_s_min {interval_s} must be between 0 and 3600 s"),
            ));
        }
        let interval_ns_min = (interval_s * 1e9) as u64;
        let rate_limit = RateLimitConfig {
            enabled: section_given && section.enabled.unwrap_or(true),
            interval_ns_min,
            // A client over the limit hears at most one RATE kiss per interval
            // it is asked to keep (RFC 8633 §5.4: no more KoDs than the limit).
            kod_interval_ns_min: interval_ns_min,
            burst: section.burst.unwrap_or(defaults.burst),
            kod: section.kod.unwrap_or(defaults.kod),
            slots: section.slots.unwrap_or(defaults.slots),
            leak_log2: section.leak.unwrap_or(defaults.leak_log2),
            ..defaults
        };
        if rate_limit.leak_log2 > LEAK_LOG2_MAX {
            return Err(at(
                &[K("rate_limit"), K("leak")],
                format!("[rate_limit] leak {} must be between 0 and {LEAK_LOG2_MAX} (one answer in 2^leak refused requests)", rate_limit.leak_log2),
            ));
        }
        if rate_limit.slots == 0 || rate_limit.slots > 1 << 24 {
            return Err(at(
                &[K("rate_limit"), K("slots")],
                format!("[rate_limit] slots {} must be between 1 and 16777216", rate_limit.slots),
            ));
        }
        let server = self.server.clone().unwrap_or_default();
        if server.workers.is_some_and(|w| !(1..=WORKERS_MAX).contains(&w)) {
            return Err(at(&[K("server"), K("workers")], format!("[server] workers must be between 1 and {WORKERS_MAX}")));
        }
        if server.recv_buffer.is_some_and(|b| !(4096..=1 << 30).contains(&b)) {
            return Err(at(&[K("server"), K("recv_buffer")], "[server] recv_buffer must be between 4096 and 1073741824 octets".into()));
        }
        if server.interleaved_slots.is_some_and(|n| !(1..=1 << 24).contains(&n)) {
            return Err(at(&[K("server"), K("interleaved_slots")], "[server] interleaved_slots must be between 1 and 16777216".into()));
        }
        let smear = match self.smear {
            Some(s) => Some(parse_smear(&s).map_err(|m| at(&[K("smear"), K("leap")], format!("[smear] {m}")))?),
            None => None,
        };
        let discipline = match self.clock.discipline.as_deref() {
            None => DisciplineKind::default(),
            Some(name) => DisciplineKind::from_name(name).ok_or_else(|| {
                at(&[K("clock"), K("discipline")], format!("[clock] discipline {name:?} is not one of \"regression\", \"rfc5905\""))
            })?,
        };
        let precision_log2 = match self.clock.precision {
            None => None,
            Some(p) if p.is_finite() && (QUANTUM_MIN_S..=QUANTUM_MAX_S).contains(&p) => Some(log2_of(p)),
            Some(p) => {
                return Err(at(&[K("clock"), K("precision")], format!("[clock] precision {p} s is outside 1e-9 to 1 s")));
            }
        };
        let step = check_step_settings(&self.clock, discipline)?;
        let poll_target = match self.clock.poll_target {
            None => None,
            Some(_) if discipline != DisciplineKind::Regression => {
                return Err(at(&[K("clock"), K("poll_target")], "[clock] poll_target is the regression discipline's; the rfc5905 discipline polls by RFC 5905's hysteresis".into()));
            }
            Some(n) if (POLL_TARGET_MIN..=POLL_TARGET_MAX).contains(&n) => Some(n as usize),
            Some(n) => {
                return Err(at(&[K("clock"), K("poll_target")], format!("[clock] poll_target = {n}: give {POLL_TARGET_MIN} to {POLL_TARGET_MAX} samples (chrony's polltarget)")));
            }
        };
        let min_sources = match self.min_sources {
            None => 1,
            Some(n @ 1..=MIN_SOURCES_MAX) => n,
            Some(n) => return Err(at(&[K("min_sources")], format!("min_sources = {n}: give 1 to {MIN_SOURCES_MAX} (sources that must agree before the clock is steered)"))),
        };
        let max_change = match self.clock.max_change {
            None => None,
            Some(m) => {
                let offset_ok = m.offset.is_finite() && m.offset > 0.0 && m.offset <= STEP_SETTING_MAX_S;
                let start_ok = (0..=STEP_UPDATES_MAX).contains(&m.start);
                let ignore_ok = (-1..=STEP_UPDATES_MAX).contains(&m.ignore);
                if !(offset_ok && start_ok && ignore_ok) {
                    return Err(at(&[K("clock"), K("max_change")], format!(
                        "[clock] max_change = {{ offset = {}, start = {}, ignore = {} }}: give offset in seconds above 0 and at most {STEP_SETTING_MAX_S}, start 0 to {STEP_UPDATES_MAX} updates, ignore -1 (never exit) or 0 to {STEP_UPDATES_MAX}",
                        m.offset, m.start, m.ignore
                    )));
                }
                Some(MaxChange { offset: m.offset, start: m.start as u32, ignore: m.ignore as i32 })
            }
        };
        let max_distance = match self.max_distance {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d <= MAX_DISTANCE_MAX_S => Some(d),
            Some(d) => return Err(at(&[K("max_distance")], format!("max_distance = {d}: give a root distance above 0 and at most {MAX_DISTANCE_MAX_S} s (default 1 s, RFC 5905's MAXDIST)"))),
        };
        let drift_file = match self.clock.drift_file.as_deref() {
            None => None,
            Some("") => return Err(at(&[K("clock"), K("drift_file")], "[clock] drift_file is empty (give a path, or leave the key out)".into())),
            Some(p) => Some(std::path::PathBuf::from(p)),
        };
        let mut refclocks = Vec::new();
        for (i, r) in self.refclocks.iter().enumerate() {
            refclocks.push(parse_refclock(r).map_err(|(key, m)| {
                let mut path = vec![K("refclock"), I(i)];
                path.extend(key.map(K));
                at(&path, format!("[[refclock]] #{} ({}): {m}", i + 1, r.kind.name()))
            })?);
        }
        let nts = match &self.nts {
            Some(section) => Some(check_nts_server(section, &self.listen, self.ntpv5.unwrap_or(true)).map_err(|(key, m)| {
                let mut path = vec![K("nts")];
                path.extend(key.map(K));
                at(&path, format!("[nts] {m}"))
            })?),
            None => None,
        };
        if self.listen.is_empty() && sources.is_empty() && refclocks.is_empty() {
            return Err(at(
                &[],
                "nothing to do: give `listen` addresses to serve on, `[[source]]`s or `[[refclock]]`s to follow, or both".into(),
            ));
        }
        Ok(DaemonConfig {
            listen: self.listen,
            sources,
            server: ServerConfig {
                access,
                rate_limit,
                smear,
                interleaved: self.interleaved.unwrap_or(true),
                ntpv5: self.ntpv5.unwrap_or(true),
                tai_utc_offset: self.tai_offset,
                interleaved_slots: server.interleaved_slots.unwrap_or(ServerConfig::default().interleaved_slots),
                ..ServerConfig::default()
            },
            local,
            clock_control: self.clock.control,
            refclocks,
            discipline,
            precision_log2,
            drift_file,
            step,
            poll_target,
            min_sources,
            max_change,
            max_distance,
            initial_frequency: None,
            nts,
        })
    }
}

/// `[clock]`'s step and panic keys, checked.
fn check_step_settings(clock: &ClockSection, discipline: DisciplineKind) -> Result<StepSettings, ValueError> {
    let mut step = StepSettings::default();
    let seconds = |key: &'static str, v: f64, zero_ok: bool| -> Result<f64, ValueError> {
        if v.is_finite() && (if zero_ok { v >= 0.0 } else { v > 0.0 }) && v <= STEP_SETTING_MAX_S {
            Ok(v)
        } else {
            let floor = if zero_ok { "0 (none)" } else { "above 0" };
            Err(at(&[K("clock"), K(key)], format!("[clock] {key} = {v} s: give seconds from {floor} to {STEP_SETTING_MAX_S}")))
        }
    };
    if let Some(v) = clock.step_threshold {
        step.threshold_s = seconds("step_threshold", v, false)?;
    }
    if let Some(v) = clock.panic_threshold {
        let v = seconds("panic_threshold", v, true)?;
        step.panic_threshold_s = (v > 0.0).then_some(v);
    }
    if let Some(v) = clock.panic_at_start {
        step.panic_at_start = v;
    }
    if let Some(n) = clock.step_updates {
        if discipline != DisciplineKind::Regression {
            return Err(at(
                &[K("clock"), K("step_updates")],
                "[clock] step_updates is the regression discipline's; the rfc5905 discipline steps by RFC 5905's rules (a first update beyond the step threshold, later ones after the stepout)".into(),
            ));
        }
        step.updates = Some(match n {
            -1 => u32::MAX,
            0..=STEP_UPDATES_MAX => n as u32,
            _ => {
                return Err(at(&[K("clock"), K("step_updates")], format!("[clock] step_updates = {n}: give 0 to {STEP_UPDATES_MAX}, or -1 for every update")));
            }
        });
    }
    Ok(step)
}

/// Line and column (both from 1) of the value at `path` in the TOML `text`:
/// of the deepest part of the path the text has (a section, at least).
pub fn locate(text: &str, path: &[KeyPath]) -> Option<(usize, usize)> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = root.get_ref();
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    for step in path {
        let next = match (step, value) {
            (KeyPath::Key(k), None) => table.get(*k),
            (KeyPath::Key(k), Some(v)) => v.get(*k),
            (KeyPath::Index(i), Some(v)) => v.get(*i),
            (KeyPath::Index(_), None) => None,
        };
        let Some(next) = next else { break };
        // Tables of an array of tables ([[source]]) carry no span of their own.
        if !next.span().is_empty() {
            span = Some(next.span());
        }
        value = Some(next.get_ref());
        if let toml::de::DeValue::Table(t) = next.get_ref() {
            table = t;
        }
    }
    let start = span?.start.min(text.len());
    Some(line_column(text, start))
}

/// Line and column (from 1) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    (line, column)
}

/// Whether `address` can be an upstream server: a unicast address and a port.
pub fn check_source_address(address: SocketAddr) -> Result<(), String> {
    let ip = address.ip();
    if address.port() == 0 {
        return Err("port 0 is not a port a server answers on".into());
    }
    if ip.is_unspecified() {
        return Err(format!("{ip} is the unspecified address, not a server"));
    }
    if ip.is_multicast() {
        return Err(format!("{ip} is a multicast address: give a server's unicast address"));
    }
    if let std::net::IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err(format!("{ip} is the broadcast address: give a server's unicast address"));
        }
    }
    Ok(())
}

/// Largest `key_rotation`: a year.
pub const KEY_ROTATION_S_MAX: f64 = 365.0 * 86_400.0;

/// Validates a source's NTS keys; the failing key and why.
fn check_nts_source(s: &SourceSection, ntpv5: bool) -> Result<Option<NtsSourceSpec>, (Option<&'static str>, String)> {
    if !s.nts {
        for (given, key) in [
            (s.ke_server.is_some(), "ke_server"),
            (s.trusted_certificates.is_some(), "trusted_certificates"),
            (s.aeads.is_some(), "aeads"),
        ] {
            if given {
                return Err((Some(key), format!("`{key}` is for NTS sources: add `nts = true`")));
            }
        }
        return Ok(None);
    }
    let (ke_host, ke_port) = match &s.ke_server {
        Some(text) => parse_host_port(text, crate::nts::ke::DEFAULT_KE_PORT)
            .map_err(|m| (Some("ke_server"), format!("ke_server {text:?}: {m}")))?,
        None => (s.address.ip().to_string(), crate::nts::ke::DEFAULT_KE_PORT),
    };
    if let Some(path) = &s.trusted_certificates {
        if path.as_os_str().is_empty() {
            return Err((Some("trusted_certificates"), "trusted_certificates is empty, not a path".into()));
        }
    }
    let aeads = check_aeads(s.aeads.as_deref()).map_err(|m| (Some("aeads"), m))?;
    Ok(Some(NtsSourceSpec { ke_host, ke_port, trusted_certificates: s.trusted_certificates.clone(), roots: None, aeads, ntpv5 }))
}

/// AEAD IDs as written: known to the core, no repeats, at least one (none given: all).
pub fn check_aeads(ids: Option<&[u16]>) -> Result<Vec<ntplab_proto::nts::Aead>, String> {
    use ntplab_proto::nts::Aead;
    let Some(ids) = ids else { return Ok(Aead::ALL.to_vec()) };
    if ids.is_empty() {
        return Err("aeads is empty: give at least one of 15, 30, 17".into());
    }
    let mut out = Vec::new();
    for &id in ids {
        let aead = Aead::from_id(ntplab_proto::wire::ntske::AeadId(id))
            .ok_or_else(|| format!("AEAD {id} is not supported: use 15 (AES-SIV-CMAC-256), 30 (AES-128-GCM-SIV) or 17 (AES-SIV-CMAC-512)"))?;
        if out.contains(&aead) {
            return Err(format!("AEAD {id} is listed twice"));
        }
        out.push(aead);
    }
    Ok(out)
}

/// `HOST`, `HOST:PORT`, `IPv4:PORT`, `IPV6`, `[IPV6]:PORT`: the host (as a
/// TLS server name: a DNS name or an IP address) and the port.
pub fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("a `[` without its `]`")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("expected `:PORT` after `]`")?)),
        }
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        (text, None)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not a port number 1-65535")),
            Ok(p) => p,
        },
    };
    if host.is_empty() {
        return Err("no host name".into());
    }
    crate::nts::tls::server_name(host)?;
    Ok((host.to_string(), port))
}

/// Validates `[nts]`; the failing key and why.
fn check_nts_server(n: &NtsSection, listen: &[SocketAddr], ntpv5: bool) -> Result<NtsServerSpec, (Option<&'static str>, String)> {
    for (path, key) in [(&n.certificate, "certificate"), (&n.key, "key")] {
        if path.as_os_str().is_empty() {
            return Err((Some(key), format!("{key} is empty, not a path")));
        }
    }
    let ke_listen = match &n.ke_listen {
        Some(list) if list.is_empty() => return Err((Some("ke_listen"), "ke_listen is empty: give at least one address".into())),
        Some(list) => list.clone(),
        None if listen.is_empty() => {
            return Err((None, "needs `listen` addresses (NTS-protected NTP is served there), or `ke_listen`".into()))
        }
        None => {
            let mut ips: Vec<SocketAddr> = Vec::new();
            for a in listen {
                let ke = SocketAddr::new(a.ip(), crate::nts::ke::DEFAULT_KE_PORT);
                if !ips.contains(&ke) {
                    ips.push(ke);
                }
            }
            ips
        }
    };
    let key_rotation = n.key_rotation.unwrap_or(86_400.0);
    if !(key_rotation.is_finite() && (1.0..=KEY_ROTATION_S_MAX).contains(&key_rotation)) {
        return Err((Some("key_rotation"), format!("key_rotation {key_rotation} must be between 1 and {KEY_ROTATION_S_MAX} s (a year)")));
    }
    if let Some(server) = &n.ntp_server {
        if server.is_empty() || server.len() > 255 || !server.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((Some("ntp_server"), format!("ntp_server {server:?} must be a host name or address of 1-255 printable ASCII characters")));
        }
    }
    if n.ntp_port == Some(0) {
        return Err((Some("ntp_port"), "ntp_port 0 is not a port a server answers on".into()));
    }
    // Clients assume port 123 unless told: a server listening elsewhere says where.
    let ntp_port = n.ntp_port.or_else(|| listen.first().map(SocketAddr::port).filter(|&p| p != 123));
    let aeads = check_aeads(n.aeads.as_deref()).map_err(|m| (Some("aeads"), m))?;
    let defaults = crate::nts::ke::KeLimits::default();
    let connections = n.ke_connections.unwrap_or(defaults.connections);
    if !(1..=65_536).contains(&connections) {
        return Err((Some("ke_connections"), format!("ke_connections {connections} must be between 1 and 65536")));
    }
    let timeout = n.ke_timeout.unwrap_or(defaults.timeout.as_secs_f64());
    if !(timeout.is_finite() && (0.01..=600.0).contains(&timeout)) {
        return Err((Some("ke_timeout"), format!("ke_timeout {timeout} must be between 0.01 and 600 s")));
    }
    Ok(NtsServerSpec {
        certificate: n.certificate.clone(),
        key: n.key.clone(),
        identity: None,
        ke_listen,
        key_rotation: std::time::Duration::from_secs_f64(key_rotation),
        ntp_server: n.ntp_server.clone(),
        ntp_port,
        limits: crate::nts::ke::KeLimits {
            connections,
            timeout: std::time::Duration::from_secs_f64(timeout),
            ..defaults
        },
        aeads,
        ntpv5,
    })
}

impl DaemonConfig {
    /// Reads the drift file `[clock] drift_file` names, if any, into
    /// [`DaemonConfig::initial_frequency`]. A missing file leaves it unset (a
    /// first start); an unreadable, malformed or out-of-range one too, and is
    /// returned as the warning to log (naming the file and, in `text`, the
    /// key's line): the daemon starts as without it ([`crate::drift`]).
    pub fn load_drift_file(&mut self, text: &str, origin: &str) -> Option<String> {
        let path = self.drift_file.as_ref()?;
        match crate::drift::read(path) {
            Ok(frequency) => {
                self.initial_frequency = frequency;
                None
            }
            Err(e) => {
                let (line, column) = locate(text, &[KeyPath::Key("clock"), KeyPath::Key("drift_file")]).unwrap_or((1, 1));
                Some(format!("{e} ([clock] drift_file at {origin}:{line}:{column}); ignored: starting without a saved frequency"))
            }
        }
    }

    /// Reads the NTS files the configuration names (the server's certificate
    /// chain and key, each NTS source's `trusted_certificates`), so that a
    /// missing or wrong file is reported at start with the position of the
    /// key naming it in `text` (the file parsed, called `origin`).
    pub fn load_nts_files(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let position = |path: &[KeyPath]| match locate(text, path) {
            Some((line, column)) => format!("{origin}:{line}:{column}"),
            None => origin.to_string(),
        };
        if let Some(nts) = &mut self.nts {
            let identity = crate::nts::tls::ServerIdentity::load(&nts.certificate, &nts.key).map_err(|(which, e)| {
                let key = match which {
                    crate::nts::tls::Which::Certificate => "certificate",
                    crate::nts::tls::Which::Key => "key",
                };
                ConfigError(format!("{}: [nts] {key}: {e}", position(&[K("nts"), K(key)])))
            })?;
            nts.identity = Some(identity);
        }
        for (i, source) in self.sources.iter_mut().enumerate() {
            let Some(nts) = &mut source.nts else { continue };
            let Some(path) = &nts.trusted_certificates else { continue };
            let roots = crate::nts::tls::roots_from_file(path).map_err(|e| {
                let at = position(&[K("source"), I(i), K("trusted_certificates")]);
                ConfigError(format!("{at}: [[source]] #{} ({}): trusted_certificates: {e}", i + 1, source.address))
            })?;
            nts.roots = Some(std::sync::Arc::new(roots));
        }
        Ok(())
    }
}

/// Validates one `[[refclock]]`.
fn parse_refclock(r: &RefclockSection) -> Result<RefclockSpec, (Option<&'static str>, String)> {
    let kind = r.kind;
    let mut spec = RefclockSpec::new(kind);
    type Failure = (Option<&'static str>, String);
    let path = |value: &Option<String>, key: &'static str, needed: bool| -> Result<Option<PathBuf>, Failure> {
        match value {
            Some(_) if !needed => Err((Some(key), format!("kind \"{}\" takes no `{key}`", kind.name()))),
            Some(p) if p.is_empty() || p.contains('\0') => Err((Some(key), format!("`{key}` {p:?} is not a path"))),
            Some(p) => Ok(Some(PathBuf::from(p))),
            None if needed => Err((None, format!("kind \"{}\" needs `{key}`", kind.name()))),
            None => Ok(None),
        }
    };
    spec.serial = path(&r.serial, "serial", kind.uses_serial())?;
    if r.pps_socket.is_some() && r.pps_device.is_some() {
        return Err((Some("pps_device"), "give `pps_socket` or `pps_device`, not both".to_string()));
    }
    if r.pps_device.is_some() {
        spec.pps_device = path(&r.pps_device, "pps_device", kind.uses_pps())?;
    } else {
        spec.pps_socket = path(&r.pps_socket, "pps_socket", kind.uses_pps())?;
    }
    if let Some(baud) = r.baud {
        if !kind.uses_serial() {
            return Err((Some("baud"), format!("kind \"{}\" takes no `baud`", kind.name())));
        }
        if !BAUD_RATES.contains(&baud) {
            return Err((Some("baud"), format!("baud {baud} is not one of {BAUD_RATES:?}")));
        }
        spec.baud = baud;
    }
    if let Some(code) = &r.refid {
        if code.is_empty() || code.len() > 4 || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((Some("refid"), format!("refid {code:?} must be 1-4 printable ASCII characters")));
        }
        spec.reference_id = ReferenceId::from_ascii(code);
    }
    if let Some(delay) = r.delay {
        if !(delay.is_finite() && (0.0..=1.0).contains(&delay)) {
            return Err((Some("delay"), format!("delay {delay} s must be between 0 and 1 s")));
        }
        spec.delay = NtpDuration::from_seconds_f64(delay).max(NtpDuration::from_nanos(1));
    }
    if let Some(offset) = r.offset {
        if !(offset.is_finite() && offset.abs() < 1.0) {
            return Err((Some("offset"), format!("offset {offset} s must be within ±1 s")));
        }
        spec.offset = NtpDuration::from_seconds_f64(offset);
    }
    if let Some(filter) = r.filter {
        if !(1..=1024).contains(&filter) {
            return Err((Some("filter"), format!("filter {filter} must be between 1 and 1024 samples")));
        }
        spec.filter_len = filter;
    }
    Ok(spec)
}

/// A leap second as written: `...T23:59:60Z` inserts, `...T23:59:59Z` deletes.
pub fn parse_leap(text: &str) -> Result<ntplab_proto::system::LeapAnnouncement, String> {
    use ntplab_proto::wire::v4::LeapIndicator;
    let (at, time) = split_leap(text)?;
    let kind = match time {
        "23:59:60" => LeapIndicator::Insert,
        "23:59:59" => LeapIndicator::Delete,
        _ => return Err("a leap second is 23:59:60Z (inserted) or 23:59:59Z (deleted)".into()),
    };
    Ok(ntplab_proto::system::LeapAnnouncement { at, kind })
}

/// `YYYY-MM-DDTHH:MM:SSZ` naming a leap second: the 00:00:00 UTC that ends
/// its day, which must be the last of a month, and the time of day as
/// written. Nothing may follow the `Z`.
fn split_leap(text: &str) -> Result<(NtpTime, &str), String> {
    const FORM: &str = "expected YYYY-MM-DDT23:59:60Z (insert) or YYYY-MM-DDT23:59:59Z (delete)";
    let (date, time) = text.split_once(['T', 't']).ok_or(FORM)?;
    let time = time.strip_suffix(['Z', 'z']).ok_or_else(|| format!("{FORM}: the time must end in Z (UTC) and nothing after it"))?;
    let well_formed = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
        && time.len() == 8
        && time.bytes().enumerate().all(|(i, b)| if i == 2 || i == 5 { b == b':' } else { b.is_ascii_digit() });
    if !well_formed {
        return Err(FORM.into());
    }
    let midnight = NtpTime::parse_rfc3339(&format!("{date}T00:00:00Z")).map_err(|e| e.to_string())?;
    let at = midnight + NtpDuration::from_seconds(86_400);
    if at.to_civil().day != 1 {
        return Err(format!("{date} is not the last day of a month: leap seconds happen at the end of a month"));
    }
    Ok((at, time))
}

/// The leap second as written (`...T23:59:60Z` for an insertion, `...T23:59:59Z`
/// for a deletion) to the smear's 00:00:00 at the end of the leap day.
fn parse_smear(s: &SmearSection) -> Result<SmearConfig, String> {
    let kind = match s.kind {
        Some(LeapKindName::Delete) => LeapKind::Delete,
        _ => LeapKind::Insert,
    };
    let (leap_time, time) = split_leap(&s.leap).map_err(|m| format!("leap {:?}: {m}", s.leap))?;
    let expected = match kind {
        LeapKind::Insert => "23:59:60",
        LeapKind::Delete => "23:59:59",
    };
    if time != expected {
        let date = s.leap.split_once(['T', 't']).map_or("", |(d, _)| d);
        let what = if kind == LeapKind::Insert { "inserted" } else { "deleted" };
        return Err(format!("leap {:?}: a {what} leap second is written {date}T{expected}Z", s.leap));
    }
    let style = match s.style {
        SmearStyleName::BeforeLeap => SmearStyle::BeforeLeap,
        SmearStyleName::Centered => SmearStyle::Centered,
    };
    Ok(SmearConfig { style, leap_time, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_file_is_read_at_start_and_the_discipline_starts_in_fset_from_it() {
        use ntplab_proto::discipline::State;
        use ntplab_proto::system::{System, SystemConfig};
        let dir = std::env::temp_dir().join(format!("ntplab-config-drift-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("drift");
        let text = format!("[[source]]\naddress = \"127.0.0.1:123\"\n[clock]\ndrift_file = {:?}\n", path.display().to_string());
        // Missing: a first start, no frequency, no warning.
        let mut c = DaemonConfig::from_toml(&text, "t.toml").unwrap();
        assert_eq!(c.drift_file.as_deref(), Some(path.as_path()));
        assert_eq!(c.load_drift_file(&text, "t.toml"), None);
        assert_eq!(c.initial_frequency, None);
        // chrony's "100 1.0": a clock 100 ppm fast, corrected by -100 ppm.
        std::fs::write(&path, "100 1.0\n").unwrap();
        assert_eq!(c.load_drift_file(&text, "t.toml"), None);
        assert_eq!(c.initial_frequency, Some(-1e-4));
        for algorithm in [DisciplineKind::Regression, DisciplineKind::Rfc5905] {
            let system: System<u32> = System::new(SystemConfig { algorithm, initial_frequency: c.initial_frequency, ..SystemConfig::default() });
            assert_eq!(system.discipline().state(), State::Fset, "{algorithm:?}");
            assert_eq!(system.discipline().frequency(), -1e-4, "{algorithm:?}");
        }
        // Malformed: a warning naming the drift file and the key's line; no frequency.
        std::fs::write(&path, "100 ppm\n").unwrap();
        let mut c = DaemonConfig::from_toml(&text, "t.toml").unwrap();
        let w = c.load_drift_file(&text, "t.toml").expect("a warning");
        assert!(w.contains(&format!("drift file {}:1: skew \"ppm\"", path.display())) && w.contains("t.toml:4:"), "{w}");
        assert_eq!(c.initial_frequency, None);
        std::fs::write(&path, "200000 1.0\n").unwrap();
        assert!(c.load_drift_file(&text, "t.toml").unwrap().contains("is beyond"));
        assert_eq!(c.initial_frequency, None);
        // No file named: nothing read.
        let mut c = DaemonConfig::from_toml("[[source]]\naddress = \"127.0.0.1:123\"\n", "t.toml").unwrap();
        assert_eq!(c.load_drift_file("", "t.toml"), None);
        assert_eq!((c.drift_file, c.initial_frequency), (None, None));
        let e = DaemonConfig::from_toml("[[source]]\naddress = \"127.0.0.1:123\"\n[clock]\ndrift_file = \"\"\n", "t.toml").unwrap_err();
        assert!(e.0.contains("t.toml:4:") && e.0.contains("drift_file is empty"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
listen = ["127.0.0.1:11123", "[::1]:11123"]
interleaved = false
[local]
stratum = 1
[[source]]
address = "127.0.0.1:123"
iburst = true
poll_min = 4
poll_max = 6
[access]
default = "allow"
rules = [ { network = "192.0.2.0/24", action = "restrict" }, { network = "2001:db8::/32", action = "kod-deny" } ]
[rate_limit]
interval_s_min = 2.0
burst = 4
[smear]
style = "centered"
leap = "2016-12-31T23:59:60Z"
"#;
        let c = DaemonConfig::from_toml(text, "t.toml").unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.sources[0].config.poll_max_log2, 6);
        assert!(c.sources[0].config.iburst);
        assert_eq!(c.local.unwrap().reference_id.ascii(), Some("LOCL"));
        assert_eq!(c.server.rate_limit.interval_ns_min, 2_000_000_000);
        assert!(c.server.rate_limit.enabled);
        let plain = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n", "p").unwrap();
        assert!(!plain.server.rate_limit.enabled, "no [rate_limit] section: no rate limiting, as in chrony");
        assert!(!c.server.interleaved && !c.clock_control);
        let smear = c.server.smear.unwrap();
        assert_eq!(smear.leap_time, NtpTime::parse_rfc3339("2017-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn errors_name_line_column_and_what_is_wrong() {
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n[local]\nstratum = \"one\"\n", "a.toml").unwrap_err();
        assert!(e.0.starts_with("a.toml:3:11:"), "{e}");
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\nlisten_port = 5\n", "b.toml").unwrap_err();
        assert!(e.0.starts_with("b.toml:2:1:") && e.0.contains("unknown field"), "{e}");
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1\"]\n", "c.toml").unwrap_err();
        assert!(e.0.contains("c.toml:1:"), "{e}");
        let e = DaemonConfig::from_toml("[local]\nstratum = 1\n", "d.toml").unwrap_err();
        assert!(e.0.contains("nothing to do"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[local]\nstratum = 16\n", "e.toml").unwrap_err();
        assert!(e.0.contains("outside 1-15"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[access]\nrules=[{network=\"10.0.0.0/33\",action=\"deny\"}]\n", "f").unwrap_err();
        assert!(e.0.contains("10.0.0.0/33"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[smear]\nstyle=\"centered\"\nleap=\"2016-12-31T23:59:59Z\"\n", "g").unwrap_err();
        assert!(e.0.contains("23:59:60"), "{e}");
        let e = DaemonConfig::from_toml("[[source]]\naddress=\"127.0.0.1:123\"\npoll_min=2\n", "h").unwrap_err();
        assert!(e.0.contains("#1"), "{e}");
    }

    #[test]
    fn ntpv5_keys() {
        let text = "listen = [\"127.0.0.1:11123\"]\nntpv5 = false\ntai_offset = 37\n[[source]]\naddress = \"127.0.0.1:123\"\nversion = \"auto\"\n[[source]]\naddress = \"127.0.0.2:123\"\nversion = 5\ndraft = \"09\"\n";
        let c = DaemonConfig::from_toml(text, "v5.toml").unwrap();
        assert!(!c.server.ntpv5);
        assert_eq!(c.server.tai_utc_offset, Some(37));
        assert_eq!((c.sources[0].config.version, c.sources[0].config.v5_auto, c.sources[0].config.draft), (4, true, Draft::DEFAULT));
        assert_eq!((c.sources[1].config.version, c.sources[1].config.v5_auto, c.sources[1].config.draft), (5, false, Draft::D09));
        assert!(DaemonConfig::from_toml("listen = [\"127.0.0.1:1\"]\n", "d").unwrap().server.ntpv5, "on by default");
        // NTS with NTPv5: the source's NTS-KE asks for 0x8001; an [nts] server agrees to it unless ntpv5 = false.
        let c = DaemonConfig::from_toml("[[source]]\naddress = \"127.0.0.1:123\"\nversion = 5\nnts = true\n[[source]]\naddress = \"127.0.0.2:123\"\nnts = true\n", "n").unwrap();
        assert_eq!((c.sources[0].nts.as_ref().unwrap().ntpv5, c.sources[1].nts.as_ref().unwrap().ntpv5), (true, false));
        let server = |extra: &str| {
            let text = format!("listen = [\"127.0.0.1:1\"]\n{extra}[nts]\ncertificate = \"c\"\nkey = \"k\"\n");
            DaemonConfig::from_toml(&text, "s").unwrap().nts.unwrap().ntpv5
        };
        assert!(server(""));
        assert!(!server("ntpv5 = false\n"));
        for (bad, says) in [
            ("version = \"sometimes\"", "neither a number 1-5 nor \"auto\""),
            ("version = 6", "not 1-5"),
            ("version = 5\ndraft = \"06\"", "\"07\", \"08\", \"09\""),
            ("version = \"auto\"\nnts = true", "NTS with version \"auto\" is not supported"),
        ] {
            let e = DaemonConfig::from_toml(&format!("[[source]]\naddress = \"127.0.0.1:123\"\n{bad}\n"), "e.toml").unwrap_err();
            assert!(e.0.starts_with("e.toml:3:") || e.0.starts_with("e.toml:4:"), "{e}");
            assert!(e.0.contains(says), "{e}");
        }
    }

    #[test]
    fn refclocks_parse_with_defaults_per_kind() {
        let text = r#"
listen = ["127.0.0.1:123"]
[[refclock]]
kind = "gps-pps"
serial = "/dev/ttyS0"
pps_socket = "/run/ntplab.pps0.sock"
[[refclock]]
kind = "gps"
serial = "/dev/ttyUSB0"
baud = 4800
offset = 0.2
delay = 0.001
filter = 8
refid = "NMEA"
"#;
        let c = DaemonConfig::from_toml(text, "r.toml").unwrap();
        let [a, b] = &c.refclocks[..] else { panic!("two refclocks: {:?}", c.refclocks) };
        assert_eq!(a.kind, RefclockKind::GpsPps);
        assert_eq!(a.serial.as_deref(), Some(std::path::Path::new("/dev/ttyS0")));
        assert_eq!((a.baud, a.filter_len, a.poll_log2()), (9600, 16, 4));
        assert_eq!(a.reference_id.ascii(), Some("PPS"));
        assert_eq!(a.pps_config().mode, PpsMode::Labelled);
        assert_eq!(b.reference_id.ascii(), Some("NMEA"));
        assert_eq!((b.baud, b.filter_len), (4800, 8));
        assert_eq!(b.offset, NtpDuration::from_seconds_f64(0.2));
        assert_eq!(b.pps_config().pulse_delay, b.offset);
        assert_eq!(RefclockSpec::new(RefclockKind::Gps).reference_id.ascii(), Some("GPS"));
        assert_eq!(RefclockSpec::new(RefclockKind::Pps).pps_config().mode, PpsMode::Locked);
        let only = DaemonConfig::from_toml("[[refclock]]\nkind = \"pps\"\npps_socket = \"/run/p\"\n", "o").unwrap();
        assert_eq!(only.refclocks.len(), 1, "a refclock alone is something to do");
    }

    #[test]
    fn refclock_errors_say_what_is_wrong() {
        let bad = |body: &str| {
            DaemonConfig::from_toml(&format!("listen = [\"127.0.0.1:1\"]\n[[refclock]]\n{body}"), "x.toml").unwrap_err().0
        };
        let e = bad("kind = \"gps-pps\"\nserial = \"/dev/ttyS0\"\n");
        assert!(e.contains("[[refclock]] #1 (gps-pps)") && e.contains("needs `pps_socket`"), "{e}");
        let e = bad("kind = \"pps\"\npps_socket = \"/p\"\nserial = \"/dev/ttyS0\"\n");
        assert!(e.contains("takes no `serial`"), "{e}");
        let e = bad("kind = \"pps\"\npps_socket = \"/p\"\npps_device = \"/dev/pps0\"\n");
        assert!(e.contains("not both"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/dev/ttyS0\"\npps_device = \"/dev/pps0\"\n");
        assert!(e.contains("takes no `pps_device`"), "{e}");
        let ok = DaemonConfig::from_toml("[[refclock]]\nkind = \"gps-pps\"\nserial = \"/dev/ttyS0\"\npps_device = \"/dev/pps0\"\n", "k").unwrap();
        assert_eq!(ok.refclocks[0].pps_device.as_deref(), Some(std::path::Path::new("/dev/pps0")));
        assert_eq!(ok.refclocks[0].pps_socket, None);
        let e = bad("kind = \"pps\"\npps_socket = \"/p\"\nbaud = 9600\n");
        assert!(e.contains("takes no `baud`"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/dev/ttyS0\"\nbaud = 9601\n");
        assert!(e.contains("baud 9601"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"\"\n");
        assert!(e.contains("not a path"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/s\"\nrefid = \"TOOLONG\"\n");
        assert!(e.contains("refid"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/s\"\ndelay = -1\n");
        assert!(e.contains("delay -1"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/s\"\noffset = nan\n");
        assert!(e.contains("offset NaN"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/s\"\nfilter = 0\n");
        assert!(e.contains("filter 0"), "{e}");
        let e = bad("kind = \"glonass\"\n");
        assert!(e.contains("x.toml:3:8") && e.contains("unknown variant"), "{e}");
        let e = bad("kind = \"gps\"\nserial = \"/s\"\nport = 3\n");
        assert!(e.contains("unknown field"), "{e}");
        let e = bad("serial = \"/s\"\n");
        assert!(e.contains("missing field `kind`"), "{e}");
    }

    #[test]
    fn the_discipline_is_chosen_in_the_clock_section() {
        let c = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n", "a").unwrap();
        assert_eq!(c.discipline, DisciplineKind::Regression, "the default");
        for (name, kind) in [("rfc5905", DisciplineKind::Rfc5905), ("regression", DisciplineKind::Regression)] {
            let text = format!("listen = [\"127.0.0.1:123\"]\n[clock]\ndiscipline = \"{name}\"\n");
            assert_eq!(DaemonConfig::from_toml(&text, "b").unwrap().discipline, kind);
        }
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n[clock]\ndiscipline = \"pll\"\n", "c").unwrap_err();
        assert!(e.0.contains("\"pll\"") && e.0.contains("rfc5905"), "{e}");
    }

    #[test]
    fn step_and_panic_settings_reach_the_discipline_and_their_mistakes_are_named() {
        let base = "listen = [\"127.0.0.1:123\"]\n[clock]\n";
        let c = DaemonConfig::from_toml(base, "a").unwrap();
        assert_eq!(c.step, StepSettings::default());
        let mut d = DisciplineConfig::default();
        c.step.apply(&mut d);
        assert_eq!(d, DisciplineConfig::default(), "the defaults are the discipline's");
        // chrony's `makestep 2 -1` with no panic threshold, and ntpd -g.
        let text = format!("{base}step_threshold = 2\nstep_updates = -1\npanic_threshold = 0\npanic_at_start = false\n");
        let c = DaemonConfig::from_toml(&text, "b").unwrap();
        assert_eq!(c.step, StepSettings { threshold_s: 2.0, updates: Some(u32::MAX), panic_threshold_s: None, panic_at_start: false });
        c.step.apply(&mut d);
        assert_eq!((d.step_threshold, d.step_updates, d.panic_threshold, d.allow_initial_panic), (NtpDuration::from_seconds(2), Some(u32::MAX), None, true));
        let c = DaemonConfig::from_toml(&format!("{base}step_updates = 1\npanic_threshold = 5e4\n"), "c").unwrap();
        assert_eq!((c.step.updates, c.step.panic_threshold_s), (Some(1), Some(5e4)));
        for (line, says) in [
            ("step_threshold = 0", "step_threshold = 0 s"),
            ("step_threshold = -1", "step_threshold = -1 s"),
            ("step_threshold = nan", "step_threshold = NaN s"),
            ("step_threshold = 1e10", "step_threshold = 10000000000 s"),
            ("panic_threshold = -0.5", "panic_threshold = -0.5 s"),
            ("step_updates = -2", "step_updates = -2"),
            ("step_updates = 1000001", "step_updates = 1000001"),
            ("discipline = \"rfc5905\"\nstep_updates = 1", "step_updates is the regression discipline's"),
        ] {
            let e = DaemonConfig::from_toml(&format!("{base}{line}\n"), "v.toml").unwrap_err();
            assert!(e.0.starts_with("v.toml:") && e.0.contains(says), "{line}: {e}");
        }
        let e = DaemonConfig::from_toml(&format!("{base}panic_at_start = 1\n"), "t.toml").unwrap_err();
        assert!(e.0.contains("panic_at_start") || e.0.contains("bool"), "{e}");
    }

    #[test]
    fn the_poll_target_reaches_the_discipline_and_its_mistakes_are_named() {
        let base = "listen = [\"127.0.0.1:123\"]\n[clock]\n";
        assert_eq!(DaemonConfig::from_toml(base, "a").unwrap().poll_target, None, "the discipline's default");
        assert_eq!(DaemonConfig::from_toml(&format!("{base}poll_target = 8\n"), "b").unwrap().poll_target, Some(8));
        for (line, says) in [
            ("poll_target = 2", "poll_target = 2: give 3 to 64"),
            ("poll_target = 65", "poll_target = 65"),
            ("poll_target = -1", "poll_target = -1"),
            ("discipline = \"rfc5905\"\npoll_target = 8", "poll_target is the regression discipline's"),
        ] {
            let e = DaemonConfig::from_toml(&format!("{base}{line}\n"), "v.toml").unwrap_err();
            assert!(e.0.starts_with("v.toml:") && e.0.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn min_sources_is_the_selections_minimum_and_its_mistakes_are_named() {
        let base = "listen = [\"127.0.0.1:123\"]\n";
        assert_eq!(DaemonConfig::from_toml(base, "a").unwrap().min_sources, 1, "RFC 5905's CMIN");
        assert_eq!(DaemonConfig::from_toml(&format!("min_sources = 3\n{base}"), "b").unwrap().min_sources, 3);
        for n in ["0", "65"] {
            let e = DaemonConfig::from_toml(&format!("min_sources = {n}\n{base}"), "m.toml").unwrap_err();
            assert!(e.0.starts_with("m.toml:1:") && e.0.contains(&format!("min_sources = {n}: give 1 to 64")), "{e}");
        }
    }

    #[test]
    fn max_change_is_chronys_maxchange_and_its_mistakes_are_named() {
        let base = "listen = [\"127.0.0.1:123\"]\n";
        assert_eq!(DaemonConfig::from_toml(base, "a").unwrap().max_change, None);
        let c = DaemonConfig::from_toml(&format!("{base}[clock]\nmax_change = {{ offset = 0.1, start = 1, ignore = 3 }}\n"), "b").unwrap();
        assert_eq!(c.max_change, Some(MaxChange { offset: 0.1, start: 1, ignore: 3 }));
        let c = DaemonConfig::from_toml(&format!("{base}[clock]\nmax_change = {{ offset = 1000, start = 0, ignore = -1 }}\n"), "b").unwrap();
        assert_eq!(c.max_change, Some(MaxChange { offset: 1000.0, start: 0, ignore: -1 }));
        for bad in ["offset = 0, start = 1, ignore = 3", "offset = 0.1, start = -1, ignore = 3", "offset = 0.1, start = 1, ignore = -2", "offset = nan, start = 1, ignore = 3"] {
            let e = DaemonConfig::from_toml(&format!("{base}[clock]\nmax_change = {{ {bad} }}\n"), "m.toml").unwrap_err();
            assert!(e.0.starts_with("m.toml:3:") && e.0.contains("give offset in seconds above 0"), "{e}");
        }
        let e = DaemonConfig::from_toml(&format!("{base}[clock]\nmax_change = {{ offset = 0.1 }}\n"), "m.toml").unwrap_err();
        assert!(e.0.starts_with("m.toml:3:") && e.0.contains("start"), "{e}");
    }

    #[test]
    fn max_distance_is_the_selections_root_distance_limit_and_its_mistakes_are_named() {
        let base = "listen = [\"127.0.0.1:123\"]\n";
        assert_eq!(DaemonConfig::from_toml(base, "a").unwrap().max_distance, None, "RFC 5905's MAXDIST");
        assert_eq!(DaemonConfig::from_toml(&format!("max_distance = 3\n{base}"), "b").unwrap().max_distance, Some(3.0));
        assert_eq!(DaemonConfig::from_toml(&format!("max_distance = 16.0\n{base}"), "b").unwrap().max_distance, Some(16.0));
        for d in ["0", "-1", "16.5", "nan", "inf"] {
            let e = DaemonConfig::from_toml(&format!("max_distance = {d}\n{base}"), "m.toml").unwrap_err();
            assert!(e.0.starts_with("m.toml:1:") && e.0.contains("give a root distance above 0 and at most 16 s"), "{e}");
        }
    }

    #[test]
    fn a_sources_max_delay_is_chronys_maxdelay_and_its_mistakes_are_named() {
        let source = |extra: &str| format!("[[source]]\naddress = \"127.0.0.1:123\"\n{extra}");
        let c = DaemonConfig::from_toml(&source(""), "a").unwrap();
        assert_eq!(c.sources[0].config.max_delay, None);
        let c = DaemonConfig::from_toml(&source("max_delay = 3e-5\n"), "b").unwrap();
        assert_eq!(c.sources[0].config.max_delay, Some(NtpDuration::from_seconds_f64(3e-5)));
        for bad in ["0", "-1", "17", "nan", "inf"] {
            let e = DaemonConfig::from_toml(&source(&format!("max_delay = {bad}\n")), "d.toml").unwrap_err();
            assert!(e.0.starts_with("d.toml:3:13:") && e.0.contains("maximum delay") && e.0.contains("at most 16 s"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_sources_delay_ratios_are_chronys_and_their_mistakes_are_named() {
        let source = |extra: &str| format!("[[source]]\naddress = \"127.0.0.1:123\"\n{extra}");
        let c = DaemonConfig::from_toml(&source(""), "a").unwrap();
        assert_eq!((c.sources[0].config.max_delay_ratio, c.sources[0].config.max_delay_dev_ratio), (None, None));
        let c = DaemonConfig::from_toml(&source("max_delay_ratio = 2\nmax_delay_dev_ratio = 2.5\n"), "b").unwrap();
        assert_eq!((c.sources[0].config.max_delay_ratio, c.sources[0].config.max_delay_dev_ratio), (Some(2.0), Some(2.5)));
        for bad in ["1", "0.5", "-1", "nan", "inf", "2e6"] {
            let e = DaemonConfig::from_toml(&source(&format!("max_delay_ratio = {bad}\n")), "d.toml").unwrap_err();
            assert!(e.0.starts_with("d.toml:3:") && e.0.contains("maximum delay ratio") && e.0.contains("maxdelayratio"), "{bad}: {e}");
            assert!(!e.0.contains("deviation"), "{bad}: {e}");
        }
        for bad in ["0", "-1", "nan", "inf", "2e6"] {
            let e = DaemonConfig::from_toml(&source(&format!("max_delay_dev_ratio = {bad}\n")), "d.toml").unwrap_err();
            assert!(e.0.starts_with("d.toml:3:") && e.0.contains("maximum delay deviation ratio") && e.0.contains("maxdelaydevratio"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_sources_selection_options_are_chronys_words_and_noselect_excludes_the_others() {
        let source = |extra: &str| format!("[[source]]\naddress = \"127.0.0.1:123\"\n{extra}");
        let c = DaemonConfig::from_toml(&source(""), "a").unwrap();
        assert_eq!(c.sources[0].select, SelectOptions::default());
        let c = DaemonConfig::from_toml(&source("prefer = true\ntrust = true\nrequire = true\n"), "b").unwrap();
        assert_eq!(c.sources[0].select, SelectOptions { noselect: false, prefer: true, trust: true, require: true });
        let c = DaemonConfig::from_toml(&source("noselect = true\n"), "c").unwrap();
        assert!(c.sources[0].select.noselect);
        for (key, word) in [("prefer", "preferred"), ("trust", "trusted"), ("require", "required")] {
            let e = DaemonConfig::from_toml(&source(&format!("noselect = true\n{key} = true\n")), "d.toml").unwrap_err();
            assert!(e.0.starts_with("d.toml:4:") && e.0.contains(&format!("noselect with {key}")) && e.0.contains(word), "{e}");
        }
        let e = DaemonConfig::from_toml(&source("prefer = 1\n"), "e.toml").unwrap_err();
        assert!(e.0.starts_with("e.toml:3:"), "{e}");
    }

    #[test]
    fn the_precision_is_given_in_seconds_or_measured() {
        let c = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n", "a").unwrap();
        assert_eq!(c.precision_log2, None, "measured by the clock when not given");
        for (text, log2) in [("1e-7", -23), ("8e-9", -27), ("1e-9", -30), ("1", 0), ("0.001", -10)] {
            let c = DaemonConfig::from_toml(&format!("listen = [\"127.0.0.1:123\"]\n[clock]\nprecision = {text}\n"), "b").unwrap();
            assert_eq!(c.precision_log2, Some(log2), "{text} s");
        }
        for bad in ["0", "-1e-6", "2", "1e-10", "nan", "inf"] {
            let e = DaemonConfig::from_toml(&format!("listen = [\"127.0.0.1:123\"]\n[clock]\nprecision = {bad}\n"), "c.toml").unwrap_err();
            assert!(e.0.starts_with("c.toml:3:13:") && e.0.contains("[clock] precision"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_server_section_sets_workers_buffers_and_the_interleaved_table() {
        let text = "listen=[\"127.0.0.1:1\"]\n[server]\nworkers = 3\nrecv_buffer = 8388608\ninterleaved_slots = 100000\n";
        let file = DaemonConfig::parse_file(text, "s").unwrap();
        let section = file.server.clone().unwrap();
        assert_eq!((section.workers, section.recv_buffer), (Some(3), Some(8_388_608)));
        let c = file.validate_text(text, "s").unwrap();
        assert_eq!(c.server.interleaved_slots, 100_000);
        let plain = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n", "s").unwrap();
        assert_eq!(plain.server.interleaved_slots, ServerConfig::default().interleaved_slots, "the simulator's size without [server]");
        for (text, position, what) in [
            ("listen=[\"127.0.0.1:1\"]\n[server]\nworkers = 0\n", "v.toml:3:11:", "workers"),
            ("listen=[\"127.0.0.1:1\"]\n[server]\nrecv_buffer = 10\n", "v.toml:3:15:", "recv_buffer"),
            ("listen=[\"127.0.0.1:1\"]\n[server]\ninterleaved_slots = 0\n", "v.toml:3:21:", "interleaved_slots"),
            ("listen=[\"127.0.0.1:1\"]\n[server]\nthreads = 2\n", "v.toml:3:1:", "threads"),
        ] {
            let e = DaemonConfig::from_toml(text, "v.toml").unwrap_err().0;
            assert!(e.starts_with(position) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn value_errors_name_the_line_and_column_of_the_value() {
        let cases: [(&str, &str, &str); 10] = [
            ("listen = [\"127.0.0.1:1\"]\n[local]\nstratum = 16\n", "v.toml:3:11:", "outside 1-15"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\n[[source]]\naddress = \"127.0.0.1:0\"\n", "v.toml:4:11:", "#2"),
            ("[[source]]\naddress=\"127.0.0.1:123\"\npoll_min=2\n", "v.toml:3:10:", "#1"),
            ("listen=[\"127.0.0.1:1\"]\n[access]\nrules=[{network=\"10.0.0.0/8\",action=\"deny\"},\n {network=\"10.0.0.0/33\",action=\"deny\"}]\n", "v.toml:4:11:", "10.0.0.0/33"),
            ("listen=[\"127.0.0.1:1\"]\n[rate_limit]\nslots = 0\n", "v.toml:3:9:", "slots 0"),
            ("listen=[\"127.0.0.1:1\"]\n[rate_limit]\ninterval_s_min = -1.0\n", "v.toml:3:18:", "interval_s_min"),
            ("listen=[\"127.0.0.1:1\"]\n[rate_limit]\nleak = 5\n", "v.toml:3:8:", "leak 5 must be between 0 and 4"),
            ("listen=[\"127.0.0.1:1\"]\n[smear]\nstyle=\"centered\"\nleap = \"2016-12-30T23:59:60Z\"\n", "v.toml:4:8:", "last day"),
            ("listen=[\"127.0.0.1:1\"]\n[clock]\ndiscipline = \"pll\"\n", "v.toml:3:14:", "pll"),
            ("listen=[\"127.0.0.1:1\"]\n[[refclock]]\nkind = \"gps\"\nserial = \"/s\"\nbaud = 9601\n", "v.toml:5:8:", "baud 9601"),
        ];
        for (text, position, what) in cases {
            let e = DaemonConfig::from_toml(text, "v.toml").unwrap_err().0;
            assert!(e.starts_with(position) && e.contains(what), "{text:?}: {e}");
        }
        // Without the text (a scenario's generated file) the origin still leads.
        let file = DaemonConfig::parse_file("listen=[\"127.0.0.1:1\"]\n[local]\nstratum = 0\n", "w").unwrap();
        assert!(file.validate("host `a`").unwrap_err().0.starts_with("host `a`: [local] stratum 0"));
        // A position counts characters, not bytes.
        assert_eq!(line_column("a\n§§x", 6), (2, 3));
    }

    #[test]
    fn the_leak_reaches_the_rate_limiter() {
        let c = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[rate_limit]\nleak = 4\n", "k").unwrap();
        assert_eq!(c.server.rate_limit.leak_log2, 4);
        let c = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[rate_limit]\n", "k").unwrap();
        assert_eq!(c.server.rate_limit.leak_log2, 0, "no leak unless asked");
    }

    #[test]
    fn the_kod_interval_follows_the_rate_limit_interval() {
        let c = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[rate_limit]\ninterval_s_min = 2.0\n", "k").unwrap();
        assert_eq!(c.server.rate_limit.kod_interval_ns_min, 2_000_000_000);
        let c = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[rate_limit]\ninterval_s_min = 32\n", "k").unwrap();
        assert_eq!(c.server.rate_limit.kod_interval_ns_min, 32_000_000_000);
    }

    #[test]
    fn smear_leaps_must_end_a_month_and_nothing_may_follow() {
        let smear = |leap: &str, kind: &str| {
            let text = format!("listen=[\"127.0.0.1:1\"]\n[smear]\nstyle=\"centered\"\nleap=\"{leap}\"\n{kind}");
            DaemonConfig::from_toml(&text, "s").map(|c| c.server.smear.unwrap().leap_time)
        };
        assert_eq!(smear("2016-12-31T23:59:60Z", "").unwrap(), NtpTime::parse_rfc3339("2017-01-01T00:00:00Z").unwrap());
        assert_eq!(smear("2015-06-30T23:59:59Z", "kind=\"delete\"\n").unwrap(), NtpTime::parse_rfc3339("2015-07-01T00:00:00Z").unwrap());
        for (leap, what) in [
            ("2016-12-30T23:59:60Z", "not the last day of a month"),
            ("2016-02-28T23:59:60Z", "not the last day of a month"),
            ("2016-12-31T23:59:60Zjunk", "nothing after it"),
            ("2016-12-31T23:59:60.5Z", "expected YYYY-MM-DD"),
            ("2016-12-31T23:59:60", "must end in Z"),
            ("2016-12-31x T23:59:60Z", "expected YYYY-MM-DD"),
            ("2016-12-31T23:59:59Z", "23:59:60"),
        ] {
            let e = smear(leap, "").unwrap_err().0;
            assert!(e.contains(what), "{leap}: {e}");
        }
        assert!(smear("2016-02-29T23:59:60Z", "").is_ok(), "a leap year's February ends on the 29th");
        assert!(parse_leap("2016-12-31T23:59:60ZZ").is_err() && parse_leap("2016-12-30T23:59:60Z").is_err());
    }

    #[test]
    fn sources_must_be_unicast_addresses_with_a_port() {
        for (address, what) in [
            ("192.0.2.1:0", "port 0"),
            ("255.255.255.255:123", "broadcast"),
            ("224.0.1.1:123", "multicast"),
            ("[ff02::101]:123", "multicast"),
            ("0.0.0.0:123", "unspecified"),
            ("[::]:123", "unspecified"),
        ] {
            let e = DaemonConfig::from_toml(&format!("[[source]]\naddress = \"{address}\"\n"), "a.toml").unwrap_err().0;
            assert!(e.starts_with("a.toml:2:11:") && e.contains(what), "{address}: {e}");
        }
        assert!(DaemonConfig::from_toml("[[source]]\naddress = \"[2001:db8::1]:123\"\n", "a").is_ok());
    }

    #[test]
    fn config_files_are_read_with_a_size_bound() {
        let dir = std::env::temp_dir().join(format!("ntplab-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.toml");
        std::fs::write(&ok, "listen = [\"127.0.0.1:1\"]\n").unwrap();
        assert_eq!(DaemonConfig::read_file(&ok).unwrap(), "listen = [\"127.0.0.1:1\"]\n");
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; CONFIG_BYTES_MAX as usize + 1]).unwrap();
        let e = DaemonConfig::read_file(&big).unwrap_err().0;
        assert!(e.contains("big.toml") && e.contains("larger than the limit of 1048576 bytes"), "{e}");
        let binary = dir.join("bin.toml");
        std::fs::write(&binary, b"a = 1\n\xff\xfe").unwrap();
        let e = DaemonConfig::read_file(&binary).unwrap_err().0;
        assert!(e.contains("bin.toml:2:1: not UTF-8"), "{e}");
        let e = DaemonConfig::read_file(&dir).unwrap_err().0;
        assert!(e.contains("directory"), "{e}");
        // An endless device is refused after the limit, not read to exhaustion.
        let e = read_bounded(std::path::Path::new("/dev/zero"), 4096).unwrap_err().0;
        assert!(e.contains("/dev/zero") && e.contains("more than the limit of 4096 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nts_sections_parse_with_defaults() {
        let text = "listen = [\"127.0.0.1:11123\", \"[::1]:11123\"]\n[nts]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n\
                    [[source]]\naddress = \"127.0.0.1:123\"\nnts = true\n\
                    [[source]]\naddress = \"127.0.0.1:124\"\nnts = true\nke_server = \"localhost:14460\"\ntrusted_certificates = \"ca.pem\"\n\
                    [[source]]\naddress = \"[::1]:123\"\nnts = true\nke_server = \"[::1]\"\n";
        let c = DaemonConfig::from_toml(text, "n.toml").unwrap();
        let nts = c.nts.as_ref().unwrap();
        assert_eq!(nts.ke_listen, vec!["127.0.0.1:4460".parse().unwrap(), "[::1]:4460".parse::<SocketAddr>().unwrap()]);
        assert_eq!(nts.key_rotation, std::time::Duration::from_secs(86_400));
        assert_eq!((nts.ntp_server.as_deref(), nts.ntp_port), (None, Some(11123)), "a port other than 123 is handed out");
        assert_eq!(nts.aeads, ntplab_proto::nts::Aead::ALL.to_vec());
        assert_eq!(nts.limits, crate::nts::ke::KeLimits::default());
        let s: Vec<_> = c.sources.iter().map(|s| s.nts.as_ref().unwrap()).collect();
        assert_eq!((s[0].ke_host.as_str(), s[0].ke_port, s[0].trusted_certificates.is_none()), ("127.0.0.1", 4460, true));
        assert_eq!((s[1].ke_host.as_str(), s[1].ke_port), ("localhost", 14460));
        assert_eq!(s[1].trusted_certificates.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!((s[2].ke_host.as_str(), s[2].ke_port), ("::1", 4460));
        let full = "listen = [\"127.0.0.1:1\"]\n[nts]\ncertificate = \"c\"\nkey = \"k\"\nke_listen = [\"127.0.0.1:14460\"]\n\
                    key_rotation = 3600\nntp_server = \"ntp.example.net\"\nntp_port = 11123\nke_connections = 8\nke_timeout = 1.5\n";
        let nts = DaemonConfig::from_toml(full, "f").unwrap().nts.unwrap();
        assert_eq!(nts.ke_listen, vec!["127.0.0.1:14460".parse::<SocketAddr>().unwrap()]);
        assert_eq!((nts.key_rotation.as_secs(), nts.ntp_server.as_deref(), nts.ntp_port), (3600, Some("ntp.example.net"), Some(11123)));
        assert_eq!((nts.limits.connections, nts.limits.timeout.as_millis()), (8, 1500));
        assert!(DaemonConfig::from_toml("[[source]]\naddress = \"127.0.0.1:123\"\n", "p").unwrap().sources[0].nts.is_none());
    }

    #[test]
    fn nts_errors_name_line_column_and_what_is_wrong() {
        let head = "listen = [\"127.0.0.1:1\"]\n[nts]\ncertificate = \"c\"\nkey = \"k\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (format!("{head}key_rotation = 0\n"), "v.toml:5:16:", "key_rotation 0"),
            (format!("{head}ntp_port = 0\n"), "v.toml:5:12:", "ntp_port 0"),
            (format!("{head}ntp_server = \"a b\"\n"), "v.toml:5:14:", "ntp_server"),
            (format!("{head}ke_listen = []\n"), "v.toml:5:13:", "ke_listen is empty"),
            (format!("{head}ke_connections = 0\n"), "v.toml:5:18:", "ke_connections 0"),
            (format!("{head}ke_timeout = -1\n"), "v.toml:5:14:", "ke_timeout -1"),
            (format!("{head}certificates = \"x\"\n"), "v.toml:5:1:", "unknown field"),
            ("listen = [\"127.0.0.1:1\"]\n[nts]\nkey = \"k\"\n".into(), "v.toml:2:1:", "missing field `certificate`"),
            ("[[refclock]]\nkind = \"pps\"\npps_socket = \"/p\"\n[nts]\ncertificate = \"c\"\nkey = \"k\"\n".into(), "v.toml:4:1:", "needs `listen`"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nke_server = \"x\"\n".into(), "v.toml:3:13:", "add `nts = true`"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\ntrusted_certificates = \"x\"\n".into(), "v.toml:3:24:", "add `nts = true`"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nnts = true\nke_server = \"host:0\"\n".into(), "v.toml:4:13:", "not a port number"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nnts = true\nke_server = \"bad name!:4460\"\n".into(), "v.toml:4:13:", "neither a DNS name"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nnts = true\nke_server = \"[::1\"\n".into(), "v.toml:4:13:", "without its `]`"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nnts = \"yes\"\n".into(), "v.toml:3:7:", "invalid type"),
            (format!("{head}aeads = [15, 1]\n"), "v.toml:5:9:", "AEAD 1 is not supported"),
            (format!("{head}aeads = []\n"), "v.toml:5:9:", "aeads is empty"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\nnts = true\naeads = [30, 30]\n".into(), "v.toml:4:9:", "listed twice"),
            ("[[source]]\naddress = \"127.0.0.1:123\"\naeads = [30]\n".into(), "v.toml:3:9:", "add `nts = true`"),
        ];
        for (text, position, what) in cases {
            let e = DaemonConfig::from_toml(&text, "v.toml").unwrap_err().0;
            assert!(e.starts_with(position) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn nts_files_are_read_at_load_and_errors_point_at_their_keys() {
        let dir = std::env::temp_dir().join(format!("ntplab-nts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key, junk) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("junk.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        std::fs::write(&junk, "not pem\n").unwrap();
        let text = |c: &std::path::Path, k: &std::path::Path, ca: &std::path::Path| {
            format!(
                "listen = [\"127.0.0.1:1\"]\n[nts]\ncertificate = {:?}\nkey = {:?}\n[[source]]\naddress = \"127.0.0.1:2\"\nnts = true\ntrusted_certificates = {:?}\n",
                c.display().to_string(),
                k.display().to_string(),
                ca.display().to_string()
            )
        };
        let good = text(&cert, &key, &cert);
        let mut c = DaemonConfig::from_toml(&good, "g.toml").unwrap();
        c.load_nts_files(&good, "g.toml").unwrap();
        assert!(c.nts.as_ref().unwrap().identity.is_some());
        assert_eq!(c.sources[0].nts.as_ref().unwrap().roots.as_ref().unwrap().len(), 1);
        // Key material never reaches Debug output (logs print configurations with {:?}).
        let debug = format!("{c:?}");
        let key_der = ck.key_pair.serialize_der();
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains(format!("{:?}", &key_der[key_der.len() - 6..]).trim_matches(['[', ']'])), "{debug}");
        for (t, position, what) in [
            (text(&junk, &key, &cert), "b.toml:3:15:", "no CERTIFICATE block"),
            (text(&cert, &junk, &cert), "b.toml:4:7:", "no PRIVATE KEY block"),
            (text(&dir.join("missing.pem"), &key, &cert), "b.toml:3:15:", "cannot read"),
            (text(&cert, &cert, &cert), "b.toml:4:7:", "no PRIVATE KEY block"),
            (text(&cert, &key, &junk), "b.toml:8:24:", "trusted_certificates"),
            (text(&cert, &key, &dir), "b.toml:8:24:", "directory"),
        ] {
            let mut c = DaemonConfig::from_toml(&t, "b.toml").unwrap();
            let e = c.load_nts_files(&t, "b.toml").unwrap_err().0;
            assert!(e.starts_with(position) && e.contains(what), "{t}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("ntp.example.net", 4460).unwrap(), ("ntp.example.net".into(), 4460));
        assert_eq!(parse_host_port("ntp.example.net:123", 4460).unwrap(), ("ntp.example.net".into(), 123));
        assert_eq!(parse_host_port("192.0.2.1:4461", 4460).unwrap(), ("192.0.2.1".into(), 4461));
        assert_eq!(parse_host_port("2001:db8::1", 4460).unwrap(), ("2001:db8::1".into(), 4460));
        assert_eq!(parse_host_port("[2001:db8::1]:5", 4460).unwrap(), ("2001:db8::1".into(), 5));
        for bad in ["", ":4460", "[::1]x", "host:port", "host:70000"] {
            assert!(parse_host_port(bad, 4460).is_err(), "{bad}");
        }
    }

}
