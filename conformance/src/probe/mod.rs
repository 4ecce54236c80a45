//! Black-box probing of an NTP server: crafted requests, judged replies,
//! verdicts per catalog requirement.
//!
//! This module is sans-IO like the rest of the crate: it builds the datagrams
//! a probe case sends ([`CaseDef::plan`]) and judges what came back
//! ([`CaseDef::judge`]); the `ntplab probe` command owns the socket, the
//! clock and the [`pacer::Pacer`] that bounds the traffic.
//!
//! ```text
//!   ntplab probe (driver)                      case (this module)
//!   ─────────────────────                      ──────────────────
//!   loop:                   ── plan(history, gen) ──►
//!                           ◄── Some(Step) | None ──
//!     send the step's requests (paced), collect replies until the
//!     step's wait ends; push a StepRecord onto history
//!   at the end:             ── judge(history) ──► Vec<Finding>
//! ```
//!
//! A case's findings name catalog requirements with a [`Verdict`]; the
//! [`ProbeResult`] folds them into one verdict per requirement of the
//! catalog (fail beats pass beats not applicable beats not exercised).
//! The NTPv4 cases are in [`cases`], the NTS-KE and NTS cases in [`nts`],
//! the NTPv5 cases in [`ntpv5`]. A group without cases would list its
//! requirements as "not exercised", "probe group not implemented yet".

pub mod cases;
pub mod ntpv5;
pub mod nts;
pub mod pacer;
pub mod report;

use crate::catalog::{Catalog, Level};
use ntplab_proto::time::{NtpTime, NtpTimestamp};
use serde::Serialize;
use std::collections::BTreeMap;

/// A requirement's verdict from a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exercised and met.
    Pass,
    /// Exercised and violated.
    Fail,
    /// Exercised, but the server's configuration makes the rule moot (for
    /// example rate limiting turned off); the reason says why.
    NotApplicable,
    /// Not exercised; the reason says why.
    NotExercised,
}

impl Verdict {
    /// `pass`, `fail`, `not applicable` or `not exercised`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not applicable",
            Verdict::NotExercised => "not exercised",
        }
    }

    /// Precedence when several findings name one requirement: fail, pass,
    /// not applicable, not exercised.
    fn rank(self) -> u8 {
        match self {
            Verdict::Fail => 3,
            Verdict::Pass => 2,
            Verdict::NotApplicable => 1,
            Verdict::NotExercised => 0,
        }
    }
}

/// One piece of evidence about one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Catalog requirement ID.
    pub requirement: &'static str,
    /// What the case saw.
    pub verdict: Verdict,
    /// Why, in words (what was sent, what came back).
    pub reason: String,
    /// For a failure: the rule broken, citing the RFC section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
}

impl Finding {
    /// A pass.
    pub fn pass(requirement: &'static str, reason: impl Into<String>) -> Self {
        Finding { requirement, verdict: Verdict::Pass, reason: reason.into(), rule: None }
    }

    /// A failure of `rule`.
    pub fn fail(requirement: &'static str, rule: &'static str, reason: impl Into<String>) -> Self {
        Finding { requirement, verdict: Verdict::Fail, reason: reason.into(), rule: Some(rule) }
    }

    /// Not applicable to this server's configuration.
    pub fn not_applicable(requirement: &'static str, reason: impl Into<String>) -> Self {
        Finding { requirement, verdict: Verdict::NotApplicable, reason: reason.into(), rule: None }
    }

    /// Not exercised.
    pub fn not_exercised(requirement: &'static str, reason: impl Into<String>) -> Self {
        Finding { requirement, verdict: Verdict::NotExercised, reason: reason.into(), rule: None }
    }

    /// Pass or fail by a condition.
    pub fn check(requirement: &'static str, ok: bool, rule: &'static str, pass: impl Into<String>, fail: impl Into<String>) -> Self {
        if ok {
            Finding::pass(requirement, pass)
        } else {
            Finding::fail(requirement, rule, fail)
        }
    }
}

/// What a case sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Datagrams, sent in order.
    pub requests: Vec<Vec<u8>>,
    /// Send them back to back (the rate-limit burst) instead of paced.
    pub burst: bool,
    /// Replies after which the step is complete (the driver then waits a
    /// short grace for extra datagrams); `None`: none are expected, wait the
    /// whole timeout.
    pub expect: Option<usize>,
    /// An NTS-KE connection to make instead of sending datagrams (then
    /// `requests` is empty).
    pub ke: Option<KeAttempt>,
}

impl Step {
    /// Requests each expected to get one reply.
    pub fn answered(requests: Vec<Vec<u8>>) -> Self {
        let n = requests.len();
        Step { requests, burst: false, expect: Some(n), ke: None }
    }

    /// Requests a correct server drops: the driver waits the whole timeout.
    pub fn silent(requests: Vec<Vec<u8>>) -> Self {
        Step { requests, burst: false, expect: None, ke: None }
    }

    /// One NTS-KE connection.
    pub fn ke(attempt: KeAttempt) -> Self {
        Step { requests: Vec::new(), burst: false, expect: None, ke: Some(attempt) }
    }
}

/// How the probe's TLS client presents itself on an NTS-KE connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeTls {
    /// TLS 1.3 with ALPN `ntske/1`, as every NTS client.
    Standard,
    /// TLS 1.2 only (with ALPN `ntske/1`): a server must refuse it.
    Tls12Only,
    /// TLS 1.3 offering exactly these ALPN protocols (none when empty).
    Alpn(Vec<String>),
}

/// One NTS-KE connection a case asks for: TLS as `tls`, then `request`
/// written (in two parts with a pause between when `split` says so), then
/// everything the server sends read until it closes or `wait_ms` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeAttempt {
    /// The TLS client's presentation.
    pub tls: KeTls,
    /// The octets written once the handshake is done.
    #[serde(serialize_with = "hex_bytes")]
    pub request: Vec<u8>,
    /// Write the first `.0` octets, pause `.1` milliseconds, write the rest
    /// (a slow client).
    pub split: Option<(usize, u64)>,
    /// How long to wait for the server's response and close, milliseconds
    /// (`None`: the probe's `--timeout`).
    pub wait_ms: Option<u64>,
    /// Export the NTPv4 keys of the AEAD the response names (for the NTS
    /// cases that follow).
    pub export: bool,
}

impl KeAttempt {
    /// A standard connection sending `request`.
    pub fn standard(request: Vec<u8>) -> Self {
        KeAttempt { tls: KeTls::Standard, request, split: None, wait_ms: None, export: false }
    }
}

/// How an NTS-KE connection ended, as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeEnd {
    /// No TLS session: the TCP connection or the handshake failed (why).
    NoSession(String),
    /// The server closed the connection (close_notify or EOF).
    Closed,
    /// The connection was still open when the wait ended.
    StillOpen,
    /// Reading failed after the handshake (why), e.g. a reset.
    Error(String),
}

/// NTPv4 keys exported from an NTS-KE session (never serialized).
#[derive(Clone, PartialEq, Eq)]
pub struct KeKeys {
    /// The AEAD the response named.
    pub aead: u16,
    /// Client-to-server key.
    pub c2s: Vec<u8>,
    /// Server-to-client key.
    pub s2c: Vec<u8>,
}

impl std::fmt::Debug for KeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeKeys {{ aead: {}, {} + {} octets }}", self.aead, self.c2s.len(), self.s2c.len())
    }
}

/// One NTS-KE connection as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeRecord {
    /// The NTS-KE server connected to.
    pub server: String,
    /// The TLS version negotiated (rustls's name, e.g. `TLSv1_3`).
    pub tls_version: Option<String>,
    /// The ALPN protocol negotiated.
    pub alpn: Option<String>,
    /// Everything the server sent after the handshake (at most 64 KiB + 1).
    #[serde(serialize_with = "hex_bytes")]
    pub response: Vec<u8>,
    /// How it ended.
    pub end: KeEnd,
    /// The exported keys, when the attempt asked and the response named an AEAD.
    #[serde(skip)]
    pub keys: Option<KeKeys>,
}

/// A datagram the probe sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentDatagram {
    /// The UDP payload.
    #[serde(serialize_with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// The probe's clock when it was sent.
    #[serde(serialize_with = "rfc3339")]
    pub sent: NtpTime,
}

/// A datagram the probe received from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedDatagram {
    /// The UDP payload.
    #[serde(serialize_with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// The probe's clock when it arrived.
    #[serde(serialize_with = "rfc3339")]
    pub received: NtpTime,
}

/// One step as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StepRecord {
    /// What was sent (possibly fewer than planned if the packet cap was hit).
    pub sent: Vec<SentDatagram>,
    /// Everything the server sent back while the step waited.
    pub replies: Vec<ReceivedDatagram>,
    /// The NTS-KE connection, for a KE step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ke: Option<KeRecord>,
}

impl StepRecord {
    /// Replies whose origin timestamp is request `i`'s transmit timestamp.
    pub fn replies_to(&self, i: usize) -> Vec<&ReceivedDatagram> {
        let Some(tx) = self.sent.get(i).and_then(|s| s.bytes.get(40..48)) else {
            return Vec::new();
        };
        self.replies.iter().filter(|r| r.bytes.get(24..32) == Some(tx)).collect()
    }
}

/// Request builder state: the probe's clock at planning time and a random
/// source for the low bits of transmit timestamps (so each request is unique
/// and a reply can be matched to it by its origin timestamp).
#[derive(Debug, Clone)]
pub struct Gen {
    /// The probe's clock now.
    pub now: NtpTime,
    state: u64,
}

impl Gen {
    /// A generator seeded by `seed`.
    pub fn new(now: NtpTime, seed: u64) -> Self {
        Gen { now, state: seed }
    }

    /// The next pseudo-random 64 bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A transmit timestamp: now's seconds, a random non-zero fraction.
    pub fn transmit(&mut self) -> NtpTimestamp {
        let fraction = (self.next_u64() as u32).max(1);
        NtpTimestamp::from_parts(self.now.to_timestamp().seconds(), fraction)
    }
}

/// The probe groups, in run order. `cases` is empty for groups whose cases
/// are not written yet; their requirements are reported as not exercised.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Name used by `--only`.
    pub name: &'static str,
    /// What it covers.
    pub title: &'static str,
    /// Catalog group prefixes (`"9."`) whose requirements belong to it.
    pub catalog_groups: &'static [&'static str],
    /// Its cases.
    pub cases: &'static [CaseDef],
}

/// Every probe group.
pub const GROUPS: &[Group] = &[
    Group { name: "ntpv4", title: "NTPv4 server behaviour (RFC 5905, 4330, 7822, 8633, 9769)", catalog_groups: &[], cases: cases::NTPV4 },
    Group { name: "nts-ke", title: "NTS Key Establishment (RFC 8915 §4)", catalog_groups: &["9."], cases: nts::NTS_KE },
    Group { name: "nts", title: "NTS-protected NTPv4 (RFC 8915 §5)", catalog_groups: &["10."], cases: nts::NTS },
    Group { name: "ntpv5", title: "NTPv5 (draft-ietf-ntp-ntpv5, spoken as draft-08)", catalog_groups: &["14."], cases: ntpv5::NTPV5 },
];

/// The group named `name`.
pub fn group(name: &str) -> Option<&'static Group> {
    GROUPS.iter().find(|g| g.name == name)
}

/// Reason given for the requirements of a group without cases.
pub const GROUP_NOT_IMPLEMENTED: &str = "probe group not implemented yet";

/// Plans a case's next step from what happened so far.
pub type PlanFn = fn(history: &[StepRecord], gen: &mut Gen) -> Option<Step>;
/// Judges a case's history.
pub type JudgeFn = fn(history: &[StepRecord]) -> Vec<Finding>;

/// One probe case.
#[derive(Clone, Copy)]
pub struct CaseDef {
    /// Stable name, e.g. `origin-echo`.
    pub name: &'static str,
    /// One line: what it sends and expects.
    pub title: &'static str,
    /// Requirements it gives evidence for (its findings name only these).
    pub requirements: &'static [&'static str],
    /// Next step, or `None` when done. Called with the steps so far.
    pub plan: PlanFn,
    /// Verdicts from the steps. Never panics, whatever the replies hold.
    pub judge: JudgeFn,
    /// At most this many steps (a bound on `plan`).
    pub steps_max: usize,
}

impl std::fmt::Debug for CaseDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseDef").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A case as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case name.
    pub name: &'static str,
    /// Group name.
    pub group: &'static str,
    /// Case title.
    pub title: &'static str,
    /// Requirements the case gives evidence for.
    pub requirements: &'static [&'static str],
    /// Its verdicts.
    pub findings: Vec<Finding>,
    /// What was sent and received.
    pub steps: Vec<StepRecord>,
    /// Wall time of the case, seconds.
    pub wall_s: f64,
}

impl CaseResult {
    /// Judges a finished case. Findings that name a requirement the case does
    /// not declare are a bug in the case and are dropped (the fuzz target and
    /// a unit test check none are produced). A RATE kiss-o'-death in reply to
    /// a case that is not about rate limiting turns its failures into "not
    /// exercised": the server limited the probe itself.
    pub fn judge(group: &'static str, case: &CaseDef, steps: Vec<StepRecord>, wall_s: f64) -> Self {
        let mut findings: Vec<Finding> = (case.judge)(&steps).into_iter().filter(|f| case.requirements.contains(&f.requirement)).collect();
        let limited = case.name != cases::RATE_CASE && steps.iter().flat_map(|s| &s.replies).any(|r| is_rate_kod(&r.bytes));
        if limited {
            for f in &mut findings {
                *f = Finding::not_exercised(f.requirement, "the server answered the probe with a RATE kiss-o'-death: probe it with a lower --rate or exempt the probe's address from rate limiting");
            }
        }
        for r in case.requirements {
            if !findings.iter().any(|f| f.requirement == *r) {
                findings.push(Finding::not_exercised(r, format!("case {} gave no evidence", case.name)));
            }
        }
        CaseResult { name: case.name, group, title: case.title, requirements: case.requirements, findings, steps, wall_s }
    }

    /// The case's overall verdict: the highest-ranked of its findings.
    pub fn verdict(&self) -> Verdict {
        self.findings.iter().map(|f| f.verdict).max_by_key(|v| v.rank()).unwrap_or(Verdict::NotExercised)
    }
}

/// Whether a datagram is a RATE kiss-o'-death (mode 4, stratum 0, "RATE").
pub fn is_rate_kod(b: &[u8]) -> bool {
    b.len() >= 48 && b[0] & 7 == 4 && b[1] == 0 && &b[12..16] == b"RATE"
}

/// A requirement's verdict over the whole probe.
#[derive(Debug, Clone, Serialize)]
pub struct RequirementVerdict {
    /// Catalog ID.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Catalog source.
    pub source: String,
    /// Statement.
    pub statement: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Why: the deciding finding's reason, naming the case.
    pub reason: String,
    /// The rule broken, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    /// Cases that gave evidence.
    pub cases: Vec<&'static str>,
}

/// The outcome of a probe run.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The server probed.
    pub target: String,
    /// Groups run.
    pub groups: Vec<&'static str>,
    /// Cases in run order.
    pub cases: Vec<CaseResult>,
    /// One verdict per catalog requirement, in catalog order.
    pub requirements: Vec<RequirementVerdict>,
    /// Datagrams sent and received over the whole run.
    pub sent: usize,
    /// Datagrams received.
    pub received: usize,
    /// Why the run stopped early (packet or time cap), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl ProbeResult {
    /// Folds the cases into the catalog's requirements. `selected` are the
    /// groups that ran.
    pub fn new(catalog: &Catalog, target: String, selected: &[&'static Group], cases: Vec<CaseResult>, stopped: Option<String>) -> Self {
        let mut best: BTreeMap<&str, (&Finding, &'static str)> = BTreeMap::new();
        let mut named: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
        for c in &cases {
            for f in &c.findings {
                let slot = named.entry(f.requirement).or_default();
                if !slot.contains(&c.name) {
                    slot.push(c.name);
                }
                match best.get(f.requirement) {
                    Some((b, _)) if b.verdict.rank() >= f.verdict.rank() => {}
                    _ => {
                        best.insert(f.requirement, (f, c.name));
                    }
                }
            }
        }
        let requirements = catalog
            .requirements
            .iter()
            .map(|q| {
                let (verdict, reason, rule) = match best.get(q.id.as_str()) {
                    Some((f, case)) => (f.verdict, format!("{case}: {}", f.reason), f.rule),
                    None => (Verdict::NotExercised, unexercised_reason(&q.group, &q.id, selected), None),
                };
                RequirementVerdict {
                    id: q.id.clone(),
                    level: q.level,
                    source: q.source.clone(),
                    statement: q.statement.clone(),
                    verdict,
                    reason,
                    rule,
                    cases: named.get(q.id.as_str()).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let sent = cases.iter().flat_map(|c| &c.steps).map(|s| s.sent.len()).sum();
        let received = cases.iter().flat_map(|c| &c.steps).map(|s| s.replies.len()).sum();
        ProbeResult { target, groups: selected.iter().map(|g| g.name).collect(), cases, requirements, sent, received, stopped }
    }

    /// (pass, fail, not applicable, not exercised) over the requirements.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |v: Verdict| self.requirements.iter().filter(|q| q.verdict == v).count();
        (n(Verdict::Pass), n(Verdict::Fail), n(Verdict::NotApplicable), n(Verdict::NotExercised))
    }

    /// Failed requirements of level MUST: these fail the probe.
    pub fn must_failures(&self) -> Vec<&RequirementVerdict> {
        self.requirements.iter().filter(|q| q.verdict == Verdict::Fail && q.level == Level::Must).collect()
    }

    /// `ID verdict` per line for every requirement some case names: the
    /// expected-verdict snapshot format of the certification runs.
    pub fn verdict_snapshot(&self) -> String {
        let mut o = String::new();
        for q in self.requirements.iter().filter(|q| !q.cases.is_empty()) {
            o.push_str(&q.id);
            o.push(' ');
            o.push_str(q.verdict.label());
            o.push('\n');
        }
        o
    }
}

fn unexercised_reason(catalog_group: &str, _id: &str, selected: &[&'static Group]) -> String {
    match GROUPS.iter().find(|g| g.catalog_groups.iter().any(|p| catalog_group.starts_with(p))) {
        Some(g) if g.cases.is_empty() => GROUP_NOT_IMPLEMENTED.to_string(),
        Some(g) if !selected.iter().any(|s| s.name == g.name) => format!("group {} not selected (--only)", g.name),
        _ if !selected.iter().any(|s| s.name == "ntpv4") => "group ntpv4 not selected (--only)".to_string(),
        _ => "no probe case: not observable from outside the server (a client-side or internal rule)".to_string(),
    }
}

fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(b))
}

fn rfc3339<S: serde::Serializer>(t: &NtpTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.rfc3339().to_string())
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut o = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(o, "{x:02x}");
    }
    o
}

/// Name of the case that judges every exchange of the run together.
pub const OVERALL_CASE: &str = "all-exchanges";

/// The no-amplification rule over every step of every case that ran: never
/// more datagrams or octets back than were sent, no reply longer than its
/// request (RFC 8633 §3.4).
pub fn overall_case(cases: &[CaseResult]) -> CaseResult {
    let steps: Vec<&StepRecord> = cases.iter().flat_map(|c| &c.steps).collect();
    let mut findings = cases::amplification_over(&steps);
    if cases.iter().flat_map(|c| &c.steps).flat_map(|s| &s.replies).any(|r| is_rate_kod(&r.bytes)) && !cases.iter().any(|c| c.name == cases::RATE_CASE) {
        findings.retain(|f| f.verdict != Verdict::Fail);
    }
    CaseResult {
        name: OVERALL_CASE,
        group: "ntpv4",
        title: "every exchange of the run: no reply longer than its request, never more datagrams or octets back than sent",
        requirements: &["R-SRV-ratelimit"],
        findings,
        steps: Vec::new(),
        wall_s: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(bytes: Vec<u8>) -> ReceivedDatagram {
        ReceivedDatagram { bytes, received: NtpTime::UNIX_EPOCH }
    }

    fn case(name: &'static str) -> &'static CaseDef {
        cases::NTPV4.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn fail_beats_pass_beats_not_applicable_beats_not_exercised() {
        let catalog = Catalog::builtin();
        let mk = |name: &'static str, verdict: Verdict| CaseResult {
            name,
            group: "ntpv4",
            title: "",
            requirements: &["R5905-8-server-echo"],
            findings: vec![Finding { requirement: "R5905-8-server-echo", verdict, reason: name.into(), rule: None }],
            steps: Vec::new(),
            wall_s: 0.0,
        };
        let groups: Vec<&Group> = GROUPS.iter().collect();
        for (order, want) in [
            (vec![Verdict::NotExercised, Verdict::NotApplicable, Verdict::Pass, Verdict::Fail], Verdict::Fail),
            (vec![Verdict::Pass, Verdict::NotApplicable, Verdict::NotExercised], Verdict::Pass),
            (vec![Verdict::NotExercised, Verdict::NotApplicable], Verdict::NotApplicable),
        ] {
            let names = ["a", "b", "c", "d"];
            let cases = order.iter().zip(names).map(|(v, n)| mk(n, *v)).collect();
            let r = ProbeResult::new(&catalog, "t".into(), &groups, cases, None);
            let q = r.requirements.iter().find(|q| q.id == "R5905-8-server-echo").unwrap();
            assert_eq!(q.verdict, want, "{order:?}");
            assert_eq!(q.cases.len(), order.len());
        }
        let r = ProbeResult::new(&catalog, "t".into(), &groups, Vec::new(), None);
        let nts = r.requirements.iter().find(|q| q.id == "R8915-4.2-backoff").unwrap();
        assert_eq!(nts.verdict, Verdict::NotExercised);
        assert!(nts.reason.contains("not observable from outside the server"), "{}", nts.reason);
        let only_nts: Vec<&Group> = vec![group("nts-ke").unwrap()];
        let r = ProbeResult::new(&catalog, "t".into(), &only_nts, Vec::new(), None);
        let echo = r.requirements.iter().find(|q| q.id == "R5905-8-server-echo").unwrap();
        assert!(echo.reason.contains("not selected"), "{}", echo.reason);
    }

    #[test]
    fn a_rate_kod_outside_the_burst_case_makes_the_case_not_exercised() {
        let c = case("header-fields");
        let mut gen = Gen::new(NtpTime::UNIX_EPOCH, 3);
        let step = (c.plan)(&[], &mut gen).unwrap();
        let req = step.requests[0].clone();
        let mut kod = vec![0u8; 48];
        kod[0] = 0xE4;
        kod[12..16].copy_from_slice(b"RATE");
        kod[24..32].copy_from_slice(&req[40..48]);
        let rec = StepRecord { sent: vec![SentDatagram { bytes: req, sent: NtpTime::UNIX_EPOCH }], replies: vec![datagram(kod)], ke: None };
        let r = CaseResult::judge("ntpv4", c, vec![rec.clone()], 0.0);
        assert!(r.findings.iter().all(|f| f.verdict == Verdict::NotExercised && f.reason.contains("RATE")), "{:?}", r.findings);
        // Without the kiss code the same reply is judged, as an unsynchronized server's.
        let mut plain = rec;
        plain.replies[0].bytes[12..16].copy_from_slice(b"GPS\0");
        let r = CaseResult::judge("ntpv4", c, vec![plain], 0.0);
        assert!(r.findings.iter().any(|f| f.verdict != Verdict::NotExercised));
    }

    #[test]
    fn every_case_declares_what_its_findings_name_and_stops_within_steps_max() {
        for c in cases::NTPV4 {
            let mut gen = Gen::new(NtpTime::UNIX_EPOCH, 1);
            let mut history = Vec::new();
            while let Some(step) = (c.plan)(&history, &mut gen) {
                assert!(!step.requests.is_empty(), "{}", c.name);
                assert!(step.requests.len() <= cases::BURST_LEN, "{}", c.name);
                // A reply to every request: the echo of its header with mode 4.
                let replies = step
                    .requests
                    .iter()
                    .filter(|r| r.len() >= 48)
                    .map(|r| {
                        let mut b = r[..48].to_vec();
                        b[0] = (b[0] & 0x38) | 4;
                        b[24..32].copy_from_slice(&r[40..48]);
                        datagram(b)
                    })
                    .collect();
                history.push(StepRecord { sent: step.requests.into_iter().map(|bytes| SentDatagram { bytes, sent: NtpTime::UNIX_EPOCH }).collect(), replies, ke: None });
                assert!(history.len() <= c.steps_max, "{}: more steps than steps_max", c.name);
            }
            for f in (c.judge)(&history) {
                assert!(c.requirements.contains(&f.requirement), "{}: finding for undeclared {}", c.name, f.requirement);
            }
        }
    }
}
