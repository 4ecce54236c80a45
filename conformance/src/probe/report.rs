//! Probe reports: text (the terminal summary and `summary.txt`), JSON and
//! JUnit XML, built like the suite's (the same requirement table and the
//! same escaping from [`crate::report`]), plus per-case evidence: every
//! datagram sent and received, in hex and decoded.

use super::{hex, CaseResult, ProbeResult, Verdict};
use crate::catalog::Level;
use crate::report::{junit_testcase, xml_escape};
use std::fmt::Write as _;

/// Decodes a datagram to text for the evidence (supplied by the caller: the
/// command line's decoder). Must not panic on any input.
pub type Decoder<'a> = &'a dyn Fn(&[u8]) -> String;

fn word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::NotApplicable => "n/a",
        Verdict::NotExercised => "not exercised",
    }
}

/// The verdict line: PASS unless a MUST failed.
pub fn headline(r: &ProbeResult) -> String {
    let (p, f, na, ne) = r.counts();
    let must = r.must_failures().len();
    format!(
        "{} {}: {} case(s), {} datagrams sent, {} received; requirements: {p} pass, {f} fail ({must} MUST), {na} not applicable, {ne} not exercised (of {})",
        if must == 0 { "PASS" } else { "FAIL" },
        r.target,
        r.cases.len(),
        r.sent,
        r.received,
        r.requirements.len()
    )
}

/// The text report: headline, one line per case, the requirements the run
/// judged (failures first, with the rule broken), then the count of the rest.
pub fn text(r: &ProbeResult) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", headline(r));
    if let Some(s) = &r.stopped {
        let _ = writeln!(o, "stopped early: {s}");
    }
    let _ = writeln!(o, "\ncases:");
    for c in &r.cases {
        let _ = writeln!(o, "  {:<26} {:<14} {}", c.name, word(c.verdict()), c.title);
    }
    let _ = writeln!(o, "\nrequirements judged:");
    let judged = r.requirements.iter().filter(|q| !q.cases.is_empty());
    let mut rows: Vec<_> = judged.collect();
    rows.sort_by_key(|q| match q.verdict {
        Verdict::Fail => 0,
        Verdict::Pass => 1,
        Verdict::NotApplicable => 2,
        Verdict::NotExercised => 3,
    });
    for q in rows {
        let _ = writeln!(o, "  {:<14} {:<8} {:<28} {}", word(q.verdict), q.level.as_str(), q.id, q.reason);
        if let Some(rule) = q.rule {
            let _ = writeln!(o, "  {:<14} {:<8} {:<28} rule: {rule}", "", "", "");
        }
    }
    let rest = r.requirements.iter().filter(|q| q.cases.is_empty()).count();
    let not_impl = r.requirements.iter().filter(|q| q.cases.is_empty() && q.reason == super::GROUP_NOT_IMPLEMENTED).count();
    let _ = writeln!(o, "\n{rest} other catalog requirements not exercised ({not_impl} of them: {}); see report.json", super::GROUP_NOT_IMPLEMENTED);
    o
}

/// The evidence of one case: its findings, then every step's datagrams in
/// hex and decoded.
pub fn evidence(c: &CaseResult, decode: Decoder<'_>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "case {}: {}\nverdict: {}", c.name, c.title, word(c.verdict()));
    for f in &c.findings {
        let _ = writeln!(o, "  {} {}: {}", word(f.verdict), f.requirement, f.reason);
        if let Some(rule) = f.rule {
            let _ = writeln!(o, "    rule: {rule}");
        }
    }
    for (i, s) in c.steps.iter().enumerate() {
        let _ = writeln!(o, "step {}:", i + 1);
        for d in &s.sent {
            let _ = writeln!(o, "  sent {} octets at {}\n    hex {}", d.bytes.len(), d.sent.rfc3339(), hex(&d.bytes));
            push_indented(&mut o, &decode(&d.bytes));
        }
        if s.replies.is_empty() {
            let _ = writeln!(o, "  no reply");
        }
        for d in &s.replies {
            let _ = writeln!(o, "  received {} octets at {}\n    hex {}", d.bytes.len(), d.received.rfc3339(), hex(&d.bytes));
            push_indented(&mut o, &decode(&d.bytes));
        }
    }
    o
}

fn push_indented(o: &mut String, text: &str) {
    for line in text.lines() {
        o.push_str("    ");
        o.push_str(line);
        o.push('\n');
    }
}

/// The whole result as JSON: verdict, counts, requirements, cases with
/// findings and datagrams (hex, and decoded through `decode`).
pub fn json(r: &ProbeResult, decode: Decoder<'_>) -> String {
    let (p, f, na, ne) = r.counts();
    let cases: Vec<serde_json::Value> = r
        .cases
        .iter()
        .map(|c| {
            let steps: Vec<serde_json::Value> = c
                .steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "sent": s.sent.iter().map(|d| serde_json::json!({ "at": d.sent.rfc3339().to_string(), "hex": hex(&d.bytes), "decoded": decode(&d.bytes) })).collect::<Vec<_>>(),
                        "received": s.replies.iter().map(|d| serde_json::json!({ "at": d.received.rfc3339().to_string(), "hex": hex(&d.bytes), "decoded": decode(&d.bytes) })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::json!({
                "name": c.name, "group": c.group, "title": c.title, "verdict": c.verdict(),
                "requirements": c.requirements, "findings": c.findings, "wall_s": c.wall_s, "steps": steps,
            })
        })
        .collect();
    let v = serde_json::json!({
        "target": r.target,
        "passed": r.must_failures().is_empty(),
        "must_failures": r.must_failures().iter().map(|q| q.id.clone()).collect::<Vec<_>>(),
        "counts": { "pass": p, "fail": f, "not_applicable": na, "not_exercised": ne },
        "groups": r.groups,
        "sent": r.sent,
        "received": r.received,
        "stopped": r.stopped,
        "requirements": r.requirements,
        "cases": cases,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// JUnit XML like the suite's: a `testsuite` per probe group with a testcase
/// per case (a failure carries the failed findings and their rules; a case
/// with nothing but not-applicable or not-exercised findings is skipped), and
/// a `requirements` suite with a testcase per catalog requirement.
pub fn junit(r: &ProbeResult) -> String {
    struct Case {
        name: String,
        class: String,
        fail: Option<(String, String)>,
        skip: Option<String>,
        time: f64,
    }
    let mut suites: Vec<(String, Vec<Case>)> = Vec::new();
    for c in &r.cases {
        let fails: Vec<String> = c.findings.iter().filter(|f| f.verdict == Verdict::Fail).map(|f| format!("{}: {} ({})", f.requirement, f.reason, f.rule.unwrap_or(""))).collect();
        let (fail, skip) = match c.verdict() {
            Verdict::Fail => (Some((fails.first().cloned().unwrap_or_default(), fails.join("\n"))), None),
            Verdict::Pass => (None, None),
            _ => (None, Some(c.findings.first().map_or(String::new(), |f| f.reason.clone()))),
        };
        let case = Case { name: c.name.to_string(), class: format!("ntplab.probe.{}", c.group), fail, skip, time: c.wall_s };
        match suites.iter_mut().find(|s| s.0 == c.group) {
            Some(s) => s.1.push(case),
            None => suites.push((c.group.to_string(), vec![case])),
        }
    }
    let reqs = r
        .requirements
        .iter()
        .map(|q| {
            let (fail, skip) = match q.verdict {
                Verdict::Pass => (None, None),
                Verdict::Fail if q.level == Level::Must => (Some((format!("{} {}: {}", q.level.as_str(), q.id, q.reason), q.rule.unwrap_or("").to_string())), None),
                Verdict::Fail => (None, Some(format!("failed {} (does not fail the probe): {}; {}", q.level.as_str(), q.reason, q.rule.unwrap_or("")))),
                Verdict::NotApplicable | Verdict::NotExercised => (None, Some(q.reason.clone())),
            };
            Case { name: q.id.clone(), class: "ntplab.requirements".into(), fail, skip, time: 0.0 }
        })
        .collect();
    suites.push(("requirements".into(), reqs));
    let e = xml_escape;
    let count = |cs: &[Case]| (cs.len(), cs.iter().filter(|c| c.fail.is_some()).count(), cs.iter().filter(|c| c.skip.is_some()).count());
    let (mut tt, mut tf, mut ts) = (0, 0, 0);
    for (_, cs) in &suites {
        let (t, f, s) = count(cs);
        tt += t;
        tf += f;
        ts += s;
    }
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(o, "<testsuites name=\"ntplab probe {}\" tests=\"{tt}\" failures=\"{tf}\" errors=\"0\" skipped=\"{ts}\">", e(&r.target));
    for (i, (name, cs)) in suites.iter().enumerate() {
        let (t, f, s) = count(cs);
        let time: f64 = cs.iter().map(|c| c.time).sum();
        let _ = writeln!(o, "  <testsuite id=\"{i}\" name=\"{}\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{time:.3}\">", e(name));
        for c in cs {
            junit_testcase(&mut o, &c.name, &c.class, c.time, c.fail.as_ref().map(|(m, b)| (m.as_str(), b.as_str())), c.skip.as_deref());
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

/// Files [`write_all`] writes (besides the pcap, which the driver writes).
pub const FILES: [&str; 4] = ["summary.txt", "report.json", "junit.xml", "verdicts.txt"];

/// Writes the reports and one `evidence/CASE.txt` per case into `dir`.
pub fn write_all(dir: &std::path::Path, r: &ProbeResult, decode: Decoder<'_>) -> Result<Vec<std::path::PathBuf>, String> {
    let ev = dir.join("evidence");
    std::fs::create_dir_all(&ev).map_err(|e| format!("cannot create report directory {}: {e}", ev.display()))?;
    let mut out = Vec::new();
    for (name, text) in FILES.iter().zip([text(r), json(r, decode), junit(r), r.verdict_snapshot()]) {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        out.push(p);
    }
    for c in &r.cases {
        let p = ev.join(format!("{}.txt", c.name));
        std::fs::write(&p, evidence(c, decode)).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    out.push(ev);
    Ok(out)
}
