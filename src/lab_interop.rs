//! `ntplab lab interop`: every implementation as client against every
//! implementation as server, in each mode both ends support, each cell a
//! short lab scenario (generated here from one template) run by `ntplab lab
//! run`'s code and judged by its checks; a matrix report in Markdown, HTML,
//! JSON and JUnit.
//!
//! A cell passes when the client got replies of the cell's mode from the
//! server (read from the captured datagrams: basic, interleaved, NTPv5, or
//! NTS: basic replies with an NTS Authenticator to requests with one, and
//! no reply without one, so a client that fell back to plain NTP fails),
//! took the server as its source (its own report says stratum 2; ntplab's
//! daemon, which has no report, has brought its virtual clock from 50 ms
//! off to within [`NTPLAB_SYNC_S`]), and no conformance check failed but
//! the load-dependent timing checks and the peers' known deviations
//! ([`KNOWN_DEVIATIONS`]), which the cell lists.

use crate::cli::CliError;
use crate::lab::{self, PeerPrograms};
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::checks::{nts, Status};
use ntplab_conformance::report::{junit_testcase, md_text, xml_escape};
use ntplab_conformance::suite::{self, ScenarioResult, SuiteResult};
use ntplab_conformance::trace::{PacketRec, Trace};
use ntplab_hwlab::run as hw;
use ntplab_proto::wire::v4;
use ntplab_sim::scenario::{Implementation, Scenario};
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The implementations of the matrix, in its order.
pub const IMPLEMENTATIONS: [Implementation; 4] = [Implementation::Ntplab, Implementation::Chrony, Implementation::Ntpsec, Implementation::NtpdRs];

/// Shortest and longest real time of one cell, s.
pub const CELL_S_MIN: u64 = 20;
pub const CELL_S_MAX: u64 = 600;

/// How close to true time an ntplab client (which has no report command)
/// must be over the second half of its cell, from 50 ms off, to count as
/// having taken the server's time.
pub const NTPLAB_SYNC_S: f64 = 5e-3;

/// Fewest replies of the cell's mode the client must get.
pub const REPLIES_MIN: usize = 2;

/// What a cell exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Plain NTPv4 client/server.
    Basic,
    /// RFC 9769 interleaved client/server.
    Interleaved,
    /// NTS (RFC 8915).
    Nts,
    /// NTPv5 (draft-ietf-ntp-ntpv5-08).
    V5,
}

impl Mode {
    /// Every mode, in the matrix's order.
    pub const ALL: [Mode; 4] = [Mode::Basic, Mode::Interleaved, Mode::Nts, Mode::V5];

    /// As the command line and the reports write it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Basic => "basic",
            Mode::Interleaved => "interleaved",
            Mode::Nts => "nts",
            Mode::V5 => "ntpv5",
        }
    }

    /// A heading for the reports.
    fn title(self) -> &'static str {
        match self {
            Mode::Basic => "plain NTPv4 (basic client/server)",
            Mode::Interleaved => "interleaved (RFC 9769)",
            Mode::Nts => "NTS (RFC 8915)",
            Mode::V5 => "NTPv5 (draft-08)",
        }
    }
}

/// What became of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStatus {
    /// It ran and met every criterion.
    Pass,
    /// It ran and missed one.
    Fail,
    /// The lab could not run it (an error starting or running it).
    Error,
    /// One of the two programs does not do the mode: not run, not failed.
    Unsupported,
    /// One of the two programs is not installed: not run.
    NotInstalled,
    /// The lab does not realize the mode yet, or the matrix was interrupted: not run.
    NotRun,
}

impl CellStatus {
    /// As the reports write it.
    pub fn name(self) -> &'static str {
        match self {
            CellStatus::Pass => "pass",
            CellStatus::Fail => "fail",
            CellStatus::Error => "error",
            CellStatus::Unsupported => "unsupported",
            CellStatus::NotInstalled => "not installed",
            CellStatus::NotRun => "not run",
        }
    }

    /// Whether it counts against the matrix.
    pub fn failed(self) -> bool {
        matches!(self, CellStatus::Fail | CellStatus::Error)
    }
}

/// Conformance check failures of a peer that are known and documented
/// (docs/hwlab.md), each with the program, the role it has in the cell
/// (`"client"` or `"server"`) and why: a cell with them can pass, and lists
/// them. ntplab's own known deviations are the catalog's.
pub const KNOWN_DEVIATIONS: &[(Implementation, &str, &str, &str)] = &[
    (Implementation::Ntpsec, "client", "client-source-port", "ntpsec 1.2.2 sends its requests from port 123 (RFC 9109 §3: a random port)"),
    (Implementation::Ntpsec, "client", "poll-bounds", "ntpsec 1.2.2's requests carry poll 0 (its data minimization)"),
    (Implementation::Chrony, "server", "refid-stratum-1", "chronyd's `local stratum 1` answers with reference ID 127.127.1.1, not ASCII"),
    (Implementation::Ntpsec, "server", "refid-never-init", "ntpsec answers INIT kisses until it has selected its local refclock"),
    (Implementation::NtpdRs, "server", "v5-server-info", "ntpd-rs 1.9.0's NTPv5 replies carry no Server Information field when the request has one"),
];

/// The figures and evidence of a cell that ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Replies of the server to the client, by kind.
    pub replies: Replies,
    /// The client's last report without error: its stratum.
    pub client_stratum: Option<u8>,
    /// ... whether it said the server is its selected source.
    pub selected: Option<bool>,
    /// ... the server's offset it measured, s.
    pub reported_offset_s: Option<f64>,
    /// Whether the client's daemon gives reports at all (ntplab's does not).
    pub reports: bool,
    /// The client's true offset over the second half of the cell: RMS and max |.|, s.
    pub rms_offset_s: Option<f64>,
    pub max_offset_s: Option<f64>,
    /// When the client first counted as synchronized, s since the start.
    pub sync_s: Option<f64>,
    /// Failed checks: held against the cell, known deviations, and timing checks (load-dependent).
    pub failed_checks: Vec<String>,
    pub known: Vec<String>,
    pub timing: Vec<String>,
}

/// Replies from server to client in a trace, by what they answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replies {
    /// NTPv4 replies whose origin is a request's transmit timestamp.
    pub basic: usize,
    /// NTPv4 replies whose origin is a request's receive timestamp (RFC 9769).
    pub interleaved: usize,
    /// Of the basic replies, those with an NTS Authenticator and Encrypted
    /// Extension Fields field answering a request that had one (RFC 8915 §5.6).
    pub nts: usize,
    /// NTPv5 server-mode messages.
    pub v5: usize,
    /// Kiss-o'-death replies (stratum 0).
    pub kisses: usize,
}

impl Replies {
    /// Those of `mode`.
    pub fn of(&self, mode: Mode) -> usize {
        match mode {
            Mode::Basic => self.basic,
            Mode::Nts => self.nts,
            Mode::Interleaved => self.interleaved,
            Mode::V5 => self.v5,
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Cell {
    pub client: Implementation,
    pub server: Implementation,
    pub mode: Mode,
    pub status: CellStatus,
    /// Why it is not a pass (or what did not run), empty for a pass.
    pub reason: String,
    /// What the run showed, when it ran.
    pub evidence: Option<Evidence>,
    /// Where its scenario and trace are.
    pub dir: Option<PathBuf>,
    /// Real time it took, s.
    pub wall_s: f64,
}

impl Cell {
    /// `client-server-mode`, its directory's name.
    pub fn key(&self) -> String {
        cell_key(self.client, self.server, self.mode)
    }

    /// The cell's text in a matrix table: status and the figures that show it.
    pub fn summary(&self) -> String {
        let mut s = self.status.name().to_string();
        if let Some(e) = &self.evidence {
            let mut parts = vec![format!("{} replies", e.replies.of(self.mode))];
            if let Some(st) = e.client_stratum {
                parts.push(format!("stratum {st}"));
            }
            if let Some(m) = e.max_offset_s {
                parts.push(format!("max {:.0} us", m * 1e6));
            }
            if !e.known.is_empty() {
                parts.push(format!("known: {}", e.known.join(", ")));
            }
            let _ = write!(s, " ({})", parts.join("; "));
        }
        s
    }

    /// As JSON for matrix.json.
    pub fn to_json(&self) -> serde_json::Value {
        let ev = self.evidence.as_ref().map(|e| {
            serde_json::json!({
                "replies": {"basic": e.replies.basic, "interleaved": e.replies.interleaved, "nts": e.replies.nts, "ntpv5": e.replies.v5, "kisses": e.replies.kisses},
                "client_stratum": e.client_stratum, "selected": e.selected, "reported_offset_s": e.reported_offset_s, "reports": e.reports,
                "rms_offset_s": e.rms_offset_s, "max_offset_s": e.max_offset_s, "sync_s": e.sync_s,
                "failed_checks": e.failed_checks, "known_deviations": e.known, "timing_checks_failed": e.timing,
            })
        });
        serde_json::json!({
            "client": self.client.name(), "server": self.server.name(), "mode": self.mode.name(),
            "status": self.status.name(), "reason": self.reason, "evidence": ev,
            "dir": self.dir.as_ref().map(|d| d.display().to_string()), "wall_s": self.wall_s,
        })
    }
}

/// `client-server-mode`.
pub fn cell_key(client: Implementation, server: Implementation, mode: Mode) -> String {
    format!("{}-{}-{}", client.name(), server.name(), mode.name())
}

/// The scenario of a cell: an ntplab-style stratum-1 server (`impl` =
/// `server`, its own clock) and one client (`impl` = `client`) whose virtual
/// clock starts 50 ms ahead, polling every 16 s after an initial burst (64 s
/// for an ntplab NTPv5 client), on
/// chrony's default simulation link (100 us one way plus exponential jitter
/// of mean 100 us each way); the mode's settings on both ends.
pub fn cell_text(client: Implementation, server: Implementation, mode: Mode, seconds: u64) -> String {
    let (server_extra, source_extra) = match mode {
        Mode::Interleaved => (if server == Implementation::Ntplab { "interleaved = true\n" } else { "" }, ", interleaved = true"),
        Mode::V5 => ("", ", version = 5"),
        Mode::Nts => ("nts = { key_rotation = \"1d\" }\n", ", nts = true"),
        Mode::Basic => ("", ""),
    };
    // NTPv5 clients keep to the draft's public poll floor, 2^6 s, outside
    // their start-up burst (check v5-poll-public); ntplab's honours a poll
    // range of 4, so its cells poll at 6: the burst's eight requests fill a
    // cell of under a minute.
    let poll = if mode == Mode::V5 && client == Implementation::Ntplab { 6 } else { 4 };
    let (c, sv, m) = (client.name(), server.name(), mode.name());
    format!(
        "# Generated by `ntplab lab interop` (src/lab_interop.rs): one cell of the matrix.
name = \"interop: {c} client of a {sv} server, {m}\"
seed = 1
start = \"2026-01-01T00:00:00Z\"
duration = \"{seconds}s\"
converged_after = \"{half}s\"

[[host]]
name = \"server\"
address = \"10.0.0.1\"
impl = \"{sv}\"
local_stratum = 1
{server_extra}
[[host]]
name = \"client\"
address = \"10.0.0.2\"
impl = \"{c}\"
listen = false
clock = {{ offset = 0.05 }}
sources = [ {{ host = \"server\", iburst = true, poll_min = {poll}, poll_max = {poll}{source_extra} }} ]

[[link]]
between = [\"client\", \"server\"]
delay = \"100us\"
jitter = {{ kind = \"exponential\", mean = 0.0001 }}
",
        half = seconds / 2
    )
}

/// Why a server program does not answer `mode` (the client side is the
/// lab's refusals: what its configuration cannot say).
pub fn server_lacks(server: Implementation, mode: Mode) -> Option<&'static str> {
    match (mode, server) {
        (Mode::Interleaved, Implementation::Ntpsec) => Some("ntpsec 1.2 has no interleaved mode: its server answers in basic mode only"),
        (Mode::Interleaved, Implementation::NtpdRs) => Some("ntpd-rs 1.9 has no interleaved mode: its server answers in basic mode only"),
        (Mode::V5, Implementation::Chrony) => Some("chrony 4.3 does not speak NTPv5"),
        (Mode::V5, Implementation::Ntpsec) => Some("ntpsec 1.2 does not speak NTPv5"),
        _ => None,
    }
}

/// Counts the replies of `server` to `client` in a trace: a v4 reply is
/// basic when its origin is a request's transmit timestamp, interleaved when
/// it is a request's (nonzero) receive timestamp distinct from that
/// request's transmit timestamp; NTPv5 server messages are counted apart.
/// A basic reply is also NTS when it carries an NTS Authenticator and so
/// did its request (the extension fields read from the octets).
pub fn count_replies(packets: &[PacketRec], client: IpAddr, server: IpAddr) -> Replies {
    let authenticated = |p: &PacketRec| nts::fields(&p.bytes).is_some_and(|f| f.iter().any(|e| e.kind == nts::EF_AUTH));
    let requests: Vec<(&v4::Repr, bool)> = packets
        .iter()
        .filter(|p| p.src.ip() == client && p.dst.ip() == server)
        .filter_map(|p| p.header.as_ref().map(|h| (h, authenticated(p))))
        .filter(|(h, _)| h.mode == v4::Mode::Client)
        .collect();
    let mut r = Replies::default();
    for p in packets.iter().filter(|p| p.src.ip() == server && p.dst.ip() == client && p.delivered()) {
        if p.is_v5() {
            if p.bytes.first().is_some_and(|b| b & 7 == 4) {
                r.v5 += 1;
            }
            continue;
        }
        let Some(h) = &p.header else { continue };
        if h.mode != v4::Mode::Server {
            continue;
        }
        if h.stratum == 0 {
            r.kisses += 1;
        } else if let Some((_, with_auth)) = requests.iter().find(|(q, _)| q.transmit_timestamp == h.origin_timestamp) {
            r.basic += 1;
            if *with_auth && authenticated(p) {
                r.nts += 1;
            }
        } else if requests.iter().any(|(q, _)| {
            q.receive_timestamp == h.origin_timestamp && q.receive_timestamp != q.transmit_timestamp && q.receive_timestamp != ntplab_proto::time::NtpTimestamp::ZERO
        }) {
            r.interleaved += 1;
        }
    }
    r
}

/// The verdict of a cell that ran, from its evidence.
pub fn verdict(mode: Mode, e: &Evidence) -> (CellStatus, String) {
    let mut why = Vec::new();
    let n = e.replies.of(mode);
    if n < REPLIES_MIN {
        why.push(format!(
            "{n} {} replies (at least {REPLIES_MIN} needed; basic {}, interleaved {}, NTS {}, NTPv5 {}, kisses {})",
            mode.name(),
            e.replies.basic,
            e.replies.interleaved,
            e.replies.nts,
            e.replies.v5,
            e.replies.kisses
        ));
    }
    if mode == Mode::Nts && e.replies.basic > e.replies.nts {
        why.push(format!(
            "{} of {} replies carried no NTS Authenticator to an NTS request (the client used unauthenticated NTP)",
            e.replies.basic - e.replies.nts,
            e.replies.basic
        ));
    }
    if e.reports {
        if e.client_stratum != Some(2) {
            why.push(format!("the client's last report says stratum {}, not 2 (it did not take the server as its source)", e.client_stratum.map_or("-".into(), |s| s.to_string())));
        }
    } else if e.max_offset_s.is_none_or(|m| m > NTPLAB_SYNC_S) {
        why.push(format!(
            "the client's virtual clock was up to {} off over the cell's second half (from 50 ms; at most {:.0} ms needed)",
            e.max_offset_s.map_or("-".into(), |m| format!("{:.3} ms", m * 1e3)),
            NTPLAB_SYNC_S * 1e3
        ));
    }
    if !e.failed_checks.is_empty() {
        why.push(format!("failed checks: {}", e.failed_checks.join(", ")));
    }
    if why.is_empty() {
        (CellStatus::Pass, String::new())
    } else {
        (CellStatus::Fail, why.join("; "))
    }
}

/// Arguments of `ntplab lab interop`.
#[derive(clap::Args, Debug)]
pub struct LabInteropArgs {
    /// Each cell's scenario and trace go to DIR/CLIENT-SERVER-MODE/; the matrix to DIR/matrix.{md,html,json} and DIR/junit.xml; every cell's conformance reports to DIR/checks/.
    #[arg(long, value_name = "DIR", default_value = "target/ntplab-lab-interop")]
    pub out: PathBuf,
    /// Clients to run, comma-separated (ntplab, chrony, ntpsec, ntpd-rs; default all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub client: Vec<String>,
    /// Servers to run, comma-separated (default all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub server: Vec<String>,
    /// Modes to run, comma-separated (basic, interleaved, nts, ntpv5; default all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub mode: Vec<String>,
    /// Real time each cell runs, s (20 to 600).
    #[arg(long, value_name = "S", default_value_t = 40)]
    pub cell_seconds: u64,
    /// The clock shim library (default: libntplab_clockshim.so next to this executable, or $NTPLAB_SHIM).
    #[arg(long, value_name = "FILE")]
    pub shim: Option<PathBuf>,
    #[command(flatten)]
    pub programs: PeerPrograms,
}

fn parse_list<T: Copy>(flag: &str, given: &[String], all: &[T], name: fn(T) -> &'static str) -> Result<Vec<T>, CliError> {
    if given.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for g in given {
        let g = g.trim();
        match all.iter().find(|x| name(**x) == g) {
            Some(x) => out.push(*x),
            None => {
                let known: Vec<&str> = all.iter().map(|x| name(*x)).collect();
                return Err(CliError::usage(format!("{flag} `{g}`: unknown; one of {}", known.join(", "))));
            }
        }
    }
    Ok(out)
}

/// Runs `ntplab lab interop`.
pub fn run(args: &LabInteropArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let clients = parse_list("--client", &args.client, &IMPLEMENTATIONS, Implementation::name)?;
    let servers = parse_list("--server", &args.server, &IMPLEMENTATIONS, Implementation::name)?;
    let modes = parse_list("--mode", &args.mode, &Mode::ALL, Mode::name)?;
    if !(CELL_S_MIN..=CELL_S_MAX).contains(&args.cell_seconds) {
        return Err(CliError::usage(format!("--cell-seconds {}: must be between {CELL_S_MIN} and {CELL_S_MAX}", args.cell_seconds)));
    }
    let catalog = Catalog::builtin();
    let excused = catalog.excused_checks();
    let started = chrono_like_now();
    let wall = Instant::now();
    let mut cells = Vec::new();
    let mut judged: Vec<ScenarioResult> = Vec::new();
    let mut header = Vec::new();
    let to_run = modes.len() * clients.len() * servers.len();
    for &mode in &modes {
        for &client in &clients {
            for &server in &servers {
                let key = cell_key(client, server, mode);
                let text = cell_text(client, server, mode, args.cell_seconds);
                let origin = format!("lab interop cell {key}");
                let scenario = Scenario::parse(&text, &origin).map_err(|e| CliError::internal(format!("{origin}: the generated scenario does not load: {e}")))?;
                let scenario = Scenario { lab_duration: Some(scenario.duration), ..scenario };
                let not_run = |status: CellStatus, reason: String| Cell { client, server, mode, status, reason, evidence: None, dir: None, wall_s: 0.0 };
                let mut refused: Vec<String> = hw::refusals(&scenario).into_iter().map(|r| r.replace("host `client`: ", "client: ")).collect();
                if let Some(why) = server_lacks(server, mode) {
                    refused.push(format!("server: {why}"));
                }
                let cell = if !refused.is_empty() {
                    not_run(CellStatus::Unsupported, refused.join("; "))
                } else if let Some(why) = args.programs.missing_for(&scenario) {
                    not_run(CellStatus::NotInstalled, why)
                } else if lab::interrupted() {
                    not_run(CellStatus::NotRun, "interrupted".into())
                } else {
                    let dir = args.out.join(&key);
                    let cell_wall = Instant::now();
                    let cell = run_cell(&scenario, &text, &dir, args, client, server, mode, &excused, &mut judged, &mut header);
                    Cell { wall_s: cell_wall.elapsed().as_secs_f64(), dir: Some(dir), ..cell }
                };
                writeln!(out, "[{}/{to_run}] {key}: {}{}", cells.len() + 1, cell.summary(), if cell.reason.is_empty() { String::new() } else { format!(": {}", cell.reason) })
                    .map_err(CliError::from_io)?;
                out.flush().map_err(CliError::from_io)?;
                cells.push(cell);
            }
        }
    }
    header.sort();
    header.dedup();
    let matrix = Matrix { cells, clients, servers, modes, header, started, wall_s: wall.elapsed().as_secs_f64(), cell_seconds: args.cell_seconds };
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::internal(format!("cannot create {}: {e}", args.out.display())))?;
    let mut written = Vec::new();
    for (name, text) in [("matrix.md", matrix.markdown()), ("matrix.html", matrix.html()), ("matrix.json", matrix.json().to_string()), ("junit.xml", matrix.junit())] {
        let p = args.out.join(name);
        std::fs::write(&p, text).map_err(|e| CliError::internal(format!("cannot write {}: {e}", p.display())))?;
        written.push(p.display().to_string());
    }
    if !judged.is_empty() {
        let mut result = SuiteResult::new(&catalog, judged, Vec::new(), false);
        result.header = matrix.header.clone();
        ntplab_conformance::report::write_all(&args.out.join("checks"), &result).map_err(CliError::internal)?;
        written.push(args.out.join("checks").display().to_string());
    }
    let counts = matrix.counts();
    writeln!(out, "{}; reports: {}", counts, written.join(", ")).map_err(CliError::from_io)?;
    let failed = matrix.cells.iter().filter(|c| c.status.failed()).count();
    if lab::interrupted() {
        return Err(CliError::input("interrupted"));
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::input(format!("{failed} of {} interop cell(s) failed", matrix.cells.len())))
    }
}

/// Runs one cell in the lab and judges it.
#[allow(clippy::too_many_arguments)]
fn run_cell(
    scenario: &Scenario,
    text: &str,
    dir: &Path,
    args: &LabInteropArgs,
    client: Implementation,
    server: Implementation,
    mode: Mode,
    excused: &std::collections::BTreeSet<String>,
    judged: &mut Vec<ScenarioResult>,
    header: &mut Vec<String>,
) -> Cell {
    let error = |reason: String| Cell { client, server, mode, status: CellStatus::Error, reason, evidence: None, dir: None, wall_s: 0.0 };
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join("scenario.toml"), text)) {
        return error(format!("cannot write {}: {e}", dir.join("scenario.toml").display()));
    }
    let path = dir.join("scenario.toml");
    let report = match lab::run_one(scenario, dir, args.shim.as_deref(), &args.programs, None) {
        Ok(r) => r,
        Err(e) => {
            let mut r = suite::declared(&path, scenario);
            r.error = Some(e.message.clone());
            judged.push(r);
            return error(e.message);
        }
    };
    for p in &report.inventory {
        header.push(format!("{} {} ({}, sha256 {})", p.implementation, p.version, p.program, p.sha256));
    }
    let j = lab::judge(&path, scenario, &report, dir);
    let trace = match Trace::load(dir) {
        Ok(t) => t,
        Err(e) => return error(format!("cannot read the cell's trace back: {e}")),
    };
    let addr = |name: &str| scenario.hosts.iter().find(|h| h.name == name).map(|h| h.address);
    let (Some(c_ip), Some(s_ip)) = (addr("client"), addr("server")) else { return error("the cell's scenario lacks its hosts".into()) };
    let mut e = Evidence { replies: count_replies(&trace.packets, c_ip, s_ip), reports: client != Implementation::Ntplab, ..Evidence::default() };
    if let Some(last) = trace.events.iter().rev().find(|ev| ev.kind == "lab_report" && ev.host.as_deref() == Some("client") && ev.details.get("error").is_none()) {
        let d = &last.details;
        e.client_stratum = d["stratum"].as_u64().and_then(|s| u8::try_from(s).ok());
        e.selected = d["sources"][0]["selected"].as_bool();
        e.reported_offset_s = d["sources"][0]["offset_s"].as_f64();
    }
    if let Some(h) = report.run.hosts.iter().find(|h| h.name == "client") {
        e.rms_offset_s = h.stats.rms_offset();
        e.max_offset_s = h.stats.max_offset();
        e.sync_s = h.first_synced_s;
    }
    for c in j.checks.iter().filter(|c| c.outcome.status == Status::Fail) {
        let known = KNOWN_DEVIATIONS.iter().any(|(imp, role, check, _)| {
            *check == c.check && ((*role == "client" && *imp == client) || (*role == "server" && *imp == server))
        });
        let ntplabs = excused.contains(&c.check) && (client == Implementation::Ntplab || server == Implementation::Ntplab);
        if known || ntplabs {
            // ntplab's own known deviations are the catalog's.
            e.known.push(c.check.clone());
        } else if hw::TIMING_CHECKS.contains(&c.check.as_str()) {
            e.timing.push(c.check.clone());
        } else {
            e.failed_checks.push(c.check.clone());
        }
    }
    judged.push(j);
    let (status, reason) = verdict(mode, &e);
    Cell { client, server, mode, status, reason, evidence: Some(e), dir: None, wall_s: 0.0 }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`, for the report header.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let s = ntplab_proto::time::NtpTime::from_unix(secs as i64, 0).rfc3339().to_string();
    format!("{} {} UTC", s.get(..10).unwrap_or(""), s.get(11..16).unwrap_or(""))
}

/// A finished matrix.
pub struct Matrix {
    pub cells: Vec<Cell>,
    pub clients: Vec<Implementation>,
    pub servers: Vec<Implementation>,
    pub modes: Vec<Mode>,
    /// Every program that ran, with its version and hash.
    pub header: Vec<String>,
    /// When it started (UTC).
    pub started: String,
    pub wall_s: f64,
    pub cell_seconds: u64,
}

impl Matrix {
    fn cell(&self, client: Implementation, server: Implementation, mode: Mode) -> Option<&Cell> {
        self.cells.iter().find(|c| c.client == client && c.server == server && c.mode == mode)
    }

    /// `N cells: P pass, F fail, ...`.
    pub fn counts(&self) -> String {
        let statuses = [CellStatus::Pass, CellStatus::Fail, CellStatus::Error, CellStatus::Unsupported, CellStatus::NotInstalled, CellStatus::NotRun];
        let parts: Vec<String> = statuses
            .iter()
            .map(|s| (s, self.cells.iter().filter(|c| c.status == *s).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.name()))
            .collect();
        format!("{} cell(s): {}", self.cells.len(), parts.join(", "))
    }

    /// The matrix as Markdown: one table per mode (clients down, servers
    /// across), then why each cell that is not a pass is what it is.
    pub fn markdown(&self) -> String {
        let mut o = String::from("# ntplab lab interop\n\n");
        let _ = writeln!(o, "Started {}; {:.0} s of real time; each cell {} s. {}.\n", self.started, self.wall_s, self.cell_seconds, self.counts());
        for h in &self.header {
            let _ = writeln!(o, "- {}", md_text(h));
        }
        for &mode in &self.modes {
            let _ = writeln!(o, "\n## {}\n", mode.title());
            o.push_str("| client ↓ / server → |");
            for s in &self.servers {
                let _ = write!(o, " {} |", s.name());
            }
            o.push_str("\n|---|");
            o.push_str(&"---|".repeat(self.servers.len()));
            o.push('\n');
            for &c in &self.clients {
                let _ = write!(o, "| {} |", c.name());
                for &s in &self.servers {
                    let text = self.cell(c, s, mode).map_or(String::new(), |cell| md_text(&cell.summary()));
                    let _ = write!(o, " {text} |");
                }
                o.push('\n');
            }
        }
        let notes: Vec<&Cell> = self.cells.iter().filter(|c| !c.reason.is_empty()).collect();
        if !notes.is_empty() {
            o.push_str("\n## Why\n\n");
            for c in notes {
                let _ = writeln!(o, "- {} ({}): {}", c.key(), c.status.name(), md_text(&c.reason));
            }
        }
        let timing: Vec<&Cell> = self.cells.iter().filter(|c| c.evidence.as_ref().is_some_and(|e| !e.timing.is_empty())).collect();
        if !timing.is_empty() {
            o.push_str("\nTiming checks that failed on this machine's load (not held against a cell; docs/hwlab.md):\n\n");
            for c in timing {
                let _ = writeln!(o, "- {}: {}", c.key(), c.evidence.as_ref().map_or(String::new(), |e| e.timing.join(", ")));
            }
        }
        o
    }

    /// The matrix as one HTML page.
    pub fn html(&self) -> String {
        let e = xml_escape;
        let mut o = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ntplab lab interop</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}.pass{background:#dfd}.fail,.error{background:#fdd}.unsupported,.not-installed,.not-run{background:#eee;color:#555}</style></head><body>\n");
        let _ = writeln!(o, "<h1>ntplab lab interop</h1><p>Started {}; {:.0} s of real time; each cell {} s. {}.</p>", e(&self.started), self.wall_s, self.cell_seconds, e(&self.counts()));
        if !self.header.is_empty() {
            o.push_str("<ul>");
            for h in &self.header {
                let _ = write!(o, "<li>{}</li>", e(h));
            }
            o.push_str("</ul>\n");
        }
        for &mode in &self.modes {
            let _ = write!(o, "<h2>{}</h2><table><tr><th>client ↓ / server →</th>", e(mode.title()));
            for s in &self.servers {
                let _ = write!(o, "<th>{}</th>", e(s.name()));
            }
            o.push_str("</tr>\n");
            for &c in &self.clients {
                let _ = write!(o, "<tr><th>{}</th>", e(c.name()));
                for &s in &self.servers {
                    match self.cell(c, s, mode) {
                        Some(cell) => {
                            let _ = write!(o, "<td class=\"{}\" title=\"{}\">{}</td>", cell.status.name().replace(' ', "-"), e(&cell.reason), e(&cell.summary()));
                        }
                        None => o.push_str("<td></td>"),
                    }
                }
                o.push_str("</tr>\n");
            }
            o.push_str("</table>\n");
        }
        let notes: Vec<&Cell> = self.cells.iter().filter(|c| !c.reason.is_empty()).collect();
        if !notes.is_empty() {
            o.push_str("<h2>Why</h2><ul>");
            for c in notes {
                let _ = write!(o, "<li>{} ({}): {}</li>", e(&c.key()), e(c.status.name()), e(&c.reason));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("</body></html>\n");
        o
    }

    /// The matrix as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "started": self.started, "wall_s": self.wall_s, "cell_seconds": self.cell_seconds,
            "clients": self.clients.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "servers": self.servers.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "modes": self.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "programs": self.header, "summary": self.counts(),
            "cells": self.cells.iter().map(Cell::to_json).collect::<Vec<_>>(),
        })
    }

    /// The matrix as JUnit XML: a test case per cell; unsupported, not
    /// installed and not run cells are skipped, with the reason.
    pub fn junit(&self) -> String {
        let skipped = |c: &Cell| matches!(c.status, CellStatus::Unsupported | CellStatus::NotInstalled | CellStatus::NotRun);
        let (t, f, s) = (self.cells.len(), self.cells.iter().filter(|c| c.status.failed()).count(), self.cells.iter().filter(|c| skipped(c)).count());
        let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(o, "<testsuites name=\"ntplab lab interop\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{:.3}\">", self.wall_s);
        let _ = writeln!(o, "  <testsuite id=\"0\" name=\"lab interop\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{:.3}\">", self.wall_s);
        for c in &self.cells {
            let name = format!("{} client, {} server, {}", c.client.name(), c.server.name(), c.mode.name());
            let fail = c.status.failed().then(|| (c.status.name(), c.reason.as_str()));
            let skip = skipped(c).then(|| format!("{}: {}", c.status.name(), c.reason));
            junit_testcase(&mut o, &name, "lab.interop", c.wall_s, fail, skip.as_deref());
        }
        o.push_str("  </testsuite>\n</testsuites>\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_scenario_loads_and_the_lab_refuses_what_a_client_cannot_say() {
        for mode in Mode::ALL {
            for c in IMPLEMENTATIONS {
                for s in IMPLEMENTATIONS {
                    let text = cell_text(c, s, mode, 40);
                    let sc = Scenario::parse(&text, "cell").unwrap_or_else(|e| panic!("{}: {e}\n{text}", cell_key(c, s, mode)));
                    assert_eq!(sc.duration.as_secs(), 40);
                    let refused = hw::refusals(&sc);
                    let lacks = match (mode, c) {
                        (Mode::Interleaved, Implementation::Ntpsec | Implementation::NtpdRs) => "no interleaved mode",
                        (Mode::V5, Implementation::Chrony | Implementation::Ntpsec) => "NTPv5",
                        _ => "",
                    };
                    if lacks.is_empty() {
                        assert!(refused.is_empty(), "{}: {refused:?}", cell_key(c, s, mode));
                    } else {
                        assert!(refused.iter().any(|r| r.contains(lacks)), "{}: {refused:?}", cell_key(c, s, mode));
                    }
                }
            }
        }
        assert!(cell_text(Implementation::Ntplab, Implementation::Ntplab, Mode::Interleaved, 40).contains("local_stratum = 1\ninterleaved = true\n"));
        assert!(server_lacks(Implementation::Chrony, Mode::Interleaved).is_none());
        assert!(server_lacks(Implementation::NtpdRs, Mode::V5).is_none());
        assert!(server_lacks(Implementation::Ntpsec, Mode::V5).is_some());
    }

    fn packet(src: &str, dst: &str, header: v4::Repr) -> String {
        packet_bytes(src, dst, &header.to_bytes())
    }

    fn packet_bytes(src: &str, dst: &str, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{{\"sent\":\"2026-01-01T00:00:01Z\",\"sender_local\":\"2026-01-01T00:00:01Z\",\"src\":\"{src}\",\"dst\":\"{dst}\",\"received\":\"2026-01-01T00:00:01Z\",\"receiver_local\":\"2026-01-01T00:00:01Z\",\"bytes\":\"{hex}\"}}"
        )
    }

    fn header(mode: v4::Mode, stratum: u8, origin: u64, receive: u64, transmit: u64) -> v4::Repr {
        use ntplab_proto::time::NtpTimestamp;
        v4::Repr {
            leap: v4::LeapIndicator::NoWarning,
            version: 4,
            mode,
            stratum,
            poll: 4,
            precision: -20,
            root_delay: Default::default(),
            root_dispersion: Default::default(),
            reference_id: ntplab_proto::wire::refid::ReferenceId::NONE,
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::from_bits(origin),
            receive_timestamp: NtpTimestamp::from_bits(receive),
            transmit_timestamp: NtpTimestamp::from_bits(transmit),
        }
    }

    #[test]
    fn replies_are_told_apart_by_their_origin_timestamp() {
        let req = |rx: u64, tx: u64| header(v4::Mode::Client, 0, 0, rx, tx);
        let rep = |origin: u64, stratum: u8| header(v4::Mode::Server, stratum, origin, 5, 6);
        let (c, s) = ("10.0.0.2:40000", "10.0.0.1:123");
        let lines = [
            packet(c, s, req(0, 100)),
            packet(s, c, rep(100, 1)), // basic
            packet(c, s, req(300, 200)),
            packet(s, c, rep(300, 1)), // interleaved: origin = the request's receive timestamp
            packet(s, c, rep(999, 1)), // answers nothing sent
            packet(s, c, rep(200, 0)), // a kiss
            packet(c, "10.0.0.9:123", req(0, 400)),
        ];
        let trace = Trace::from_strs(&lines.join("\n"), "", "").unwrap();
        let r = count_replies(&trace.packets, "10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert_eq!(r, Replies { basic: 1, interleaved: 1, nts: 0, v5: 0, kisses: 1 });
        assert_eq!((r.of(Mode::Basic), r.of(Mode::Interleaved), r.of(Mode::V5)), (1, 1, 0));
    }

    /// The header followed by extension fields of `kinds`, 16 octets of body each.
    fn with_fields(h: v4::Repr, kinds: &[u16]) -> Vec<u8> {
        let mut b = h.to_bytes().to_vec();
        for k in kinds {
            b.extend(k.to_be_bytes());
            b.extend(20u16.to_be_bytes());
            b.extend([0u8; 16]);
        }
        b
    }

    #[test]
    fn nts_replies_carry_an_authenticator_and_answer_a_request_with_one() {
        let req = |tx: u64| header(v4::Mode::Client, 0, 0, 0, tx);
        let rep = |origin: u64| header(v4::Mode::Server, 1, origin, 5, 6);
        let (c, s) = ("10.0.0.2:40000", "10.0.0.1:123");
        let (uid, cookie, auth) = (nts::EF_UID, nts::EF_COOKIE, nts::EF_AUTH);
        let lines = [
            packet_bytes(c, s, &with_fields(req(100), &[uid, cookie, auth])),
            packet_bytes(s, c, &with_fields(rep(100), &[uid, auth])), // NTS
            packet_bytes(c, s, &with_fields(req(200), &[uid, cookie, auth])),
            packet_bytes(s, c, &with_fields(rep(200), &[uid])), // no authenticator
            packet(c, s, req(300)),
            packet_bytes(s, c, &with_fields(rep(300), &[uid, auth])), // answers a plain request
        ];
        let trace = Trace::from_strs(&lines.join("\n"), "", "").unwrap();
        let r = count_replies(&trace.packets, "10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert_eq!((r.basic, r.nts, r.of(Mode::Nts)), (3, 1, 1));
        // A cell whose client fell back to plain NTP fails even with enough NTS replies.
        let e = Evidence { replies: Replies { basic: 6, nts: 4, ..Replies::default() }, client_stratum: Some(2), reports: true, ..Evidence::default() };
        let (st, why) = verdict(Mode::Nts, &e);
        assert_eq!(st, CellStatus::Fail);
        assert!(why.contains("2 of 6 replies carried no NTS Authenticator"), "{why}");
        let all = Evidence { replies: Replies { basic: 4, nts: 4, ..Replies::default() }, ..e.clone() };
        assert_eq!(verdict(Mode::Nts, &all).0, CellStatus::Pass);
        let none = Evidence { replies: Replies { basic: 4, nts: 0, ..Replies::default() }, ..e };
        assert!(verdict(Mode::Nts, &none).1.contains("0 nts replies"));
    }

    #[test]
    fn a_cell_passes_only_with_replies_of_its_mode_a_synchronized_client_and_no_unexcused_check_failure() {
        let good = Evidence { replies: Replies { basic: 5, ..Replies::default() }, client_stratum: Some(2), reports: true, ..Evidence::default() };
        assert_eq!(verdict(Mode::Basic, &good).0, CellStatus::Pass);
        let (st, why) = verdict(Mode::Interleaved, &good);
        assert_eq!(st, CellStatus::Fail);
        assert!(why.contains("0 interleaved replies"), "{why}");
        let unsynced = Evidence { client_stratum: Some(16), ..good.clone() };
        assert!(verdict(Mode::Basic, &unsynced).1.contains("stratum 16, not 2"));
        let checks = Evidence { failed_checks: vec!["refid-upstream".into()], ..good.clone() };
        assert!(verdict(Mode::Basic, &checks).1.contains("failed checks: refid-upstream"));
        let known = Evidence { known: vec!["poll-bounds".into()], timing: vec!["offset-delay-formula".into()], ..good.clone() };
        assert_eq!(verdict(Mode::Basic, &known).0, CellStatus::Pass);
        // ntplab's client has no report: its clock must have come within 5 ms.
        let ntplab = Evidence { reports: false, client_stratum: None, max_offset_s: Some(0.2e-3), ..good.clone() };
        assert_eq!(verdict(Mode::Basic, &ntplab).0, CellStatus::Pass);
        let far = Evidence { max_offset_s: Some(0.04), ..ntplab.clone() };
        assert!(verdict(Mode::Basic, &far).1.contains("40.000 ms off"));
        let never = Evidence { max_offset_s: None, ..ntplab };
        assert_eq!(verdict(Mode::Basic, &never).0, CellStatus::Fail);
    }

    #[test]
    fn the_reports_show_every_cell_and_why() {
        let cell = |client, server, mode, status, reason: &str, evidence| Cell { client, server, mode, status, reason: reason.into(), evidence, dir: None, wall_s: 1.0 };
        let ev = Evidence { replies: Replies { basic: 4, ..Replies::default() }, client_stratum: Some(2), reports: true, max_offset_s: Some(80e-6), known: vec!["poll-bounds".into()], ..Evidence::default() };
        let m = Matrix {
            cells: vec![
                cell(Implementation::Chrony, Implementation::Ntplab, Mode::Basic, CellStatus::Pass, "", Some(ev)),
                cell(Implementation::Chrony, Implementation::Ntplab, Mode::V5, CellStatus::Unsupported, "client: chrony 4.3 does not speak NTPv5 <x>", None),
                cell(Implementation::Chrony, Implementation::Ntplab, Mode::Interleaved, CellStatus::Fail, "failed checks: a|b", None),
            ],
            clients: vec![Implementation::Chrony],
            servers: vec![Implementation::Ntplab],
            modes: vec![Mode::Basic, Mode::Interleaved, Mode::V5],
            header: vec!["chrony chronyd (chrony) version 4.3".into()],
            started: "2026-12-04 20:00 UTC".into(),
            wall_s: 3.0,
            cell_seconds: 40,
        };
        let md = m.markdown();
        assert!(md.contains("| chrony | pass (4 replies; stratum 2; max 80 us; known: poll-bounds) |"), "{md}");
        assert!(md.contains("| chrony | unsupported |"), "{md}");
        assert!(md.contains("chrony-ntplab-interleaved (fail): failed checks: a\\|b"), "{md}");
        assert!(md.contains("3 cell(s): 1 pass, 1 fail, 1 unsupported"), "{md}");
        let html = m.html();
        assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"), "{html}");
        assert!(html.contains("<td class=\"unsupported\""), "{html}");
        let junit = m.junit();
        assert!(junit.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""), "{junit}");
        assert!(junit.contains("<skipped message=\"unsupported: client: chrony 4.3 does not speak NTPv5 &lt;x&gt;\"/>"), "{junit}");
        let j = m.json();
        assert_eq!(j["cells"][0]["evidence"]["replies"]["basic"], 4);
        assert_eq!(j["cells"][1]["status"], "unsupported");
    }
}
