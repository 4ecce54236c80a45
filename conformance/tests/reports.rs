//! Report writers on a fixed small result: JUnit parsed back and checked for
//! structure and escaping; CSV, JSON, HTML and Markdown shapes.

use ntplab_conformance::catalog::Level;
use ntplab_conformance::checks::{Outcome, Status};
use ntplab_conformance::report;
use ntplab_conformance::catalog::Deviation;
use ntplab_conformance::suite::{CheckResult, DeclaredCheck, ExpectationResult, Figure, RequirementVerdict, ScenarioResult, SuiteResult};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::collections::BTreeMap;

fn fixed() -> SuiteResult {
    let mut series = BTreeMap::new();
    series.insert("client".to_string(), vec![(0.0, 0.1), (60.0, 0.01), (120.0, 1e-4)]);
    series.insert("server".to_string(), vec![(0.0, 0.0), (120.0, 0.0)]);
    let s = ScenarioResult {
        key: "tiny <&> \"one\"".into(),
        file: "scenarios/tiny.toml".into(),
        name: "client: tiny".into(),
        seed: 7,
        wall_s: 0.25,
        error: None,
        expectations: vec![ExpectationResult {
            name: "rms < 1 ns & impossible".into(),
            host: "client".into(),
            metric: "rms_offset".into(),
            value: Some(1e-5),
            missing: None,
            min: None,
            max: Some(1e-9),
            requirement: Some("R5905-8-offset-delay".into()),
            passed: false,
        }],
        checks: vec![
            CheckResult { check: "server-echoes-origin".into(), title: "t".into(), outcome: Outcome { status: Status::Pass, reason: "all 3 daemon replies meet it".into(), evidence: vec![] } },
            CheckResult { check: "kod-deny-stops".into(), title: "t".into(), outcome: Outcome::not_exercised("no DENY or RSTR kiss reached a daemon client") },
            CheckResult { check: "client-rejects-bogus".into(), title: "t".into(), outcome: Outcome { status: Status::Fail, reason: "1 of 1 bogus-origin replies violate it; first: frame 2 <x>".into(), evidence: vec!["frame 2 (packets.jsonl:2) \u{1} ctl".into()] } },
        ],
        figures: vec![
            Figure { host: "client".into(), metric: "rms_offset_s".into(), value: Some(1e-5) },
            Figure { host: "client".into(), metric: "sync_time_s".into(), value: None },
        ],
        series,
        trace_dir: None,
        exercises: vec![DeclaredCheck { check: "kod-deny-stops".into(), at: "scenarios/tiny.toml:3:14".into() }],
    };
    SuiteResult {
        scenarios: vec![s],
        requirements: vec![
            RequirementVerdict { id: "R5905-8-bogus".into(), level: Level::Must, source: "5905 §8".into(), statement: "bogus replies are discarded".into(), status: Status::Fail, reason: "tiny: client-rejects-bogus: 1 of 1 violate it".into(), evidence: vec!["tiny: frame 2".into()], deviation: None },
            RequirementVerdict { id: "R5905-7.4-deny-rstr".into(), level: Level::Must, source: "5905 §7.4".into(), statement: "DENY stops".into(), status: Status::NotExercised, reason: "no scenario exercised it".into(), evidence: vec![], deviation: None },
            RequirementVerdict { id: "R5905-8-server-echo".into(), level: Level::Must, source: "5905 §8".into(), statement: "echo".into(), status: Status::Pass, reason: "passed in 1 scenario(s)".into(), evidence: vec![], deviation: None },
        ],
        regressions: vec![],
        baseline_compared: false,
        warnings: vec![],
        excused: Default::default(),
        header: vec![],
    }
}

#[derive(Debug, Default)]
struct Counts {
    suites: usize,
    cases: usize,
    failures: usize,
    skipped: usize,
    declared: Vec<(String, usize, usize, usize)>,
}

#[test]
fn junit_parses_back_with_the_common_schema_shape() {
    let xml = report::junit(&fixed());
    let mut r = Reader::from_str(&xml);
    let mut c = Counts::default();
    let mut stack: Vec<String> = Vec::new();
    let mut failure_messages = Vec::new();
    loop {
        match r.read_event().expect("well-formed XML") {
            ev @ (Event::Start(_) | Event::Empty(_)) => {
                let is_start = matches!(ev, Event::Start(_));
                let (Event::Start(e) | Event::Empty(e)) = ev else { unreachable!() };
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attr = |k: &str| {
                    e.attributes().map(|a| a.unwrap()).find(|a| a.key.as_ref() == k.as_bytes()).map(|a| a.unescape_value().unwrap().into_owned())
                };
                match name.as_str() {
                    "testsuites" => assert!(stack.is_empty()),
                    "testsuite" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testsuites"));
                        c.suites += 1;
                        let n = |k: &str| attr(k).unwrap().parse::<usize>().unwrap();
                        c.declared.push((attr("name").unwrap(), n("tests"), n("failures"), n("skipped")));
                    }
                    "testcase" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testsuite"));
                        assert!(attr("name").is_some() && attr("classname").is_some() && attr("time").is_some());
                        c.cases += 1;
                    }
                    "failure" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testcase"));
                        c.failures += 1;
                        failure_messages.push(attr("message").unwrap());
                    }
                    "skipped" => {
                        assert_eq!(stack.last().map(String::as_str), Some("testcase"));
                        c.skipped += 1;
                    }
                    "properties" => assert_eq!(stack.last().map(String::as_str), Some("testsuite")),
                    "property" => {
                        assert_eq!(stack.last().map(String::as_str), Some("properties"));
                        assert!(attr("name").is_some() && attr("value").is_some());
                    }
                    other => panic!("unexpected element {other}"),
                }
                if is_start {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(c.suites, 2, "{xml}");
    // Scenario suite: 1 expectation + 3 checks + 1 declared exercise; requirements suite: 3.
    assert_eq!(c.declared[0], ("tiny <&> \"one\"".to_string(), 5, 3, 1));
    assert_eq!(c.declared[1], ("requirements".to_string(), 3, 1, 1));
    assert!(failure_messages.iter().any(|m| m.contains("rms_offset = 1e-5 (must be <= 1e-9) [R5905-8-offset-delay]")), "{failure_messages:?}");
    assert!(failure_messages.iter().any(|m| m.starts_with("MUST R5905-8-bogus: ")), "{failure_messages:?}");
    assert!(failure_messages.iter().any(|m| m.starts_with("declared at scenarios/tiny.toml:3:14 but not exercised: no DENY")), "{failure_messages:?}");
    assert!(!xml.contains('\u{1}'), "control characters must not reach the XML");
}

#[test]
fn csv_json_html_markdown() {
    let r = fixed();
    let csv = report::csv(&r);
    assert_eq!(csv.lines().next(), Some("scenario,host,metric,seed,value"));
    assert!(csv.contains("\"tiny <&> \"\"one\"\"\",client,rms_offset_s,7,1e-5\n"), "{csv}");
    assert!(csv.contains(",client,sync_time_s,7,\n"), "{csv}");
    assert!(csv.contains(",client,rms_offset_s,median,1e-5\n") && csv.contains(",client,sync_time_s,max,\n"), "{csv}");
    let json: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["counts"]["fail"], 1);
    let html = report::html(&r);
    assert!(html.contains("<svg") && html.contains("<polyline") && html.contains("tiny &lt;&amp;&gt;"));
    assert_eq!(html.matches("<polyline").count(), 2, "one line per host");
    let md = report::markdown(&r);
    assert!(md.contains("| R5905-8-bogus | MUST | FAIL | tiny: client-rejects-bogus: 1 of 1 violate it |"), "{md}");
    assert!(md.contains("| R5905-7.4-deny-rstr | MUST | not exercised | no scenario exercised it |"), "{md}");
    assert!(md.contains("- tiny &lt;&amp;&gt; \"one\" (seed 7): check kod-deny-stops is declared exercised (scenarios/tiny.toml:3:14) but was not"), "{md}");
    assert!(md.contains("## Known deviations\n\nNone: every failed check fails the run."), "{md}");
}

/// Two seeds of one scenario, one failing only by a check that a known
/// deviation excuses: per-seed rows, the spread, and the deviation listed.
#[test]
fn seeds_spread_and_deviations() {
    let mut r = fixed();
    let mut a = r.scenarios[0].clone();
    a.key = "tiny".into();
    a.exercises.clear();
    a.expectations.clear();
    let mut b = a.clone();
    b.seed = 8;
    b.figures[0].value = Some(3e-5);
    b.checks[2].outcome.status = Status::Pass;
    r.scenarios = vec![a, b];
    r.requirements[0].deviation = Some(Deviation { rule: "RFC 5905 §8: discard bogus replies".into(), reason: "a test of the report".into() });
    r.excused.insert("client-rejects-bogus".into());
    assert!(r.gate_failures().is_empty(), "{:?}", r.gate_failures());
    let md = report::markdown(&r);
    assert!(md.starts_with("# ntplab conformance report\n\n**PASS**: 1 scenario(s), 2 run(s);"), "{md}");
    assert!(md.contains("| tiny | 2 | 2/2 | - | 0.500 s |"), "{md}");
    assert!(md.contains("| tiny | 8 | 0/0 | 2/0 | 0.250 s | PASS |"), "{md}");
    assert!(md.contains("| tiny | client | rms_offset_s | 2 | 10.0 µs | 20.0 µs | 30.0 µs |"), "{md}");
    assert!(md.contains("| tiny | client | sync_time_s | 0 (2 never) | never | never | never |"), "{md}");
    assert!(md.contains("| R5905-8-bogus | MUST | RFC 5905 §8: discard bogus replies | a test of the report | FAIL |"), "{md}");
    assert!(md.contains("| R5905-8-bogus | MUST | FAIL (known deviation) |"), "{md}");
    let junit = report::junit(&r);
    assert!(junit.contains("<testsuite id=\"0\" name=\"tiny (seed 7)\"") && junit.contains("name=\"tiny (seed 8)\""), "{junit}");
    assert!(junit.contains("<skipped message=\"known deviation (conformance/catalog.toml): 1 of 1 bogus-origin"), "{junit}");
    assert!(junit.contains("<property name=\"spread client rms_offset_s (min/median/max over 2 seeds)\" value=\"1e-5 / 2e-5 / 3e-5\"/>"), "{junit}");
    let json: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    assert_eq!(json["deviations"][0]["id"], "R5905-8-bogus");
    assert_eq!(json["spread"][0]["median"], 2e-5);
    let html = report::html(&r);
    assert!(html.contains("<h2>Known deviations</h2>") && html.contains("RFC 5905 §8: discard bogus replies"), "{html}");
    // Without the deviation the excused check fails seed 7.
    r.excused.clear();
    let gate = r.gate_failures();
    assert_eq!(gate.len(), 1, "{gate:?}");
    assert!(gate[0].starts_with("tiny (seed 7): check client-rejects-bogus failed: 1 of 1"), "{gate:?}");
    // Whatever the requirement's level: an ALG-level failure gates as well.
    r.requirements[0].level = Level::Alg;
    r.requirements[0].deviation = None;
    assert_eq!(r.gate_failures(), gate);
}
