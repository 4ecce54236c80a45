//! User-provided text (scenario file names and names, error messages,
//! expectation names, requirement IDs, warnings) reaches summary.md and
//! report.html as text: no raw HTML, no Markdown formatting or links, no
//! broken tables.

use ntplab_conformance::baseline::Regression;
use ntplab_conformance::catalog::Level;
use ntplab_conformance::checks::{Outcome, Status};
use ntplab_conformance::report::{self, md_text};
use ntplab_conformance::suite::{CheckResult, ExpectationResult, Figure, RequirementVerdict, ScenarioResult, SuiteResult};
use std::collections::BTreeMap;

const HOSTILE: &str = "<img src=x onerror=alert(1)> *bold* _em_ [link](javascript:x) | pipe `code` ~~gone~~ # head \\ <script>alert(2)</script>\nnext";

fn hostile() -> SuiteResult {
    let mut series = BTreeMap::new();
    series.insert(HOSTILE.to_string(), vec![(0.0, 1e-4), (60.0, 0.0)]);
    let ran = ScenarioResult {
        key: format!("k{HOSTILE}"),
        file: format!("scenarios/{HOSTILE}.toml"),
        name: HOSTILE.into(),
        seed: 1,
        wall_s: 0.1,
        error: None,
        expectations: vec![ExpectationResult {
            name: HOSTILE.into(),
            host: HOSTILE.into(),
            metric: "sync_time".into(),
            value: None,
            missing: Some(HOSTILE.into()),
            min: None,
            max: Some(1.0),
            requirement: Some(HOSTILE.into()),
            passed: false,
        }],
        checks: vec![CheckResult {
            check: "server-echoes-origin".into(),
            title: HOSTILE.into(),
            outcome: Outcome { status: Status::Fail, reason: HOSTILE.into(), evidence: vec![HOSTILE.into()] },
        }],
        figures: vec![Figure { host: HOSTILE.into(), metric: "rms_offset_s".into(), value: Some(1e-5) }],
        series,
        trace_dir: None,
        exercises: vec![],
    };
    let failed = ScenarioResult {
        key: format!("-{HOSTILE}"),
        file: format!("{HOSTILE}.toml"),
        name: String::new(),
        seed: 0,
        wall_s: 0.0,
        error: Some(format!("{HOSTILE}.toml:1:1: {HOSTILE}")),
        expectations: vec![],
        checks: vec![],
        figures: vec![],
        series: BTreeMap::new(),
        trace_dir: None,
        exercises: vec![],
    };
    SuiteResult {
        scenarios: vec![ran, failed],
        requirements: vec![RequirementVerdict {
            id: HOSTILE.into(),
            level: Level::Must,
            source: HOSTILE.into(),
            statement: HOSTILE.into(),
            status: Status::Fail,
            reason: HOSTILE.into(),
            evidence: vec![HOSTILE.into()],
            deviation: None,
        }],
        regressions: vec![Regression { scenario: HOSTILE.into(), host: HOSTILE.into(), metric: "rms_offset_s".into(), what: HOSTILE.into(), baseline: Some(1.0), current: Some(2.0), limit: 1.2 }],
        baseline_compared: true,
        warnings: vec![HOSTILE.into()],
        excused: Default::default(),
        header: vec![HOSTILE.into()],
    }
}

/// `|` not escaped by a backslash.
fn cell_separators(line: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => n += 1,
            _ => escaped = false,
        }
    }
    n
}

#[test]
fn summary_md_renders_user_text_as_text() {
    let md = report::markdown(&hostile());
    for raw in ["<img", "<script", "</script", "[link](", "*bold*", "`code`", "~~gone~~", "_em_"] {
        assert!(!md.contains(raw), "{raw} reached summary.md:\n{md}");
    }
    assert!(md.contains("&lt;img src=x onerror=alert(1)&gt; \\*bold\\* \\_em\\_ \\[link\\](javascript:x) \\| pipe \\`code\\` \\~\\~gone\\~\\~ \\# head \\\\ &lt;script&gt;"), "{md}");
    // Every table row has as many cells as its header: no `|` from the text splits one.
    let mut header = None;
    for line in md.lines() {
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let n = cell_separators(line);
        match header {
            None => header = Some(n),
            Some(h) => assert_eq!(n, h, "row with a different cell count: {line}"),
        }
    }
    // A text that starts like a list item or heading stays in its item.
    assert!(md.contains("\\-k&lt;img") || md.contains("\\-&lt;img"), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("next")), "a line break in the text ended its line:\n{md}");
}

#[test]
fn report_html_renders_user_text_as_text() {
    let html = report::html(&hostile());
    for raw in ["<img", "<script", "</script"] {
        assert!(!html.contains(raw), "{raw} reached report.html");
    }
    assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
}

#[test]
fn md_text_leaves_plain_text_alone() {
    assert_eq!(md_text("R5905-8-server-echo"), "R5905-8-server-echo");
    assert_eq!(md_text("client rms_offset = 1e-5 (must be <= 1e-9)"), "client rms_offset = 1e-5 (must be &lt;= 1e-9)");
    assert_eq!(md_text("2. place"), "2\\. place");
    assert_eq!(md_text("+1 s"), "\\+1 s");
    assert_eq!(md_text("a\tb\u{1}c"), "a b c");
}
