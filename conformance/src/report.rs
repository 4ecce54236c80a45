//! Report writers: Markdown summary, HTML with one offset-over-time SVG plot
//! per scenario, JSON, JUnit XML and CSV of the figures. Each is a pure
//! function of a [`SuiteResult`]; [`write_all`] puts them in a directory.

use crate::checks::Status;
use crate::suite::{RequirementVerdict, ScenarioResult, Spread, SuiteResult};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File names written by [`write_all`].
pub const FILES: [&str; 5] = ["summary.md", "report.html", "report.json", "junit.xml", "figures.csv"];

/// Writes every report into `dir` (created if needed); returns the paths.
pub fn write_all(dir: &Path, r: &SuiteResult) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create report directory {}: {e}", dir.display()))?;
    let contents = [markdown(r), html(r), json(r), junit(r), csv(r)];
    let mut out = Vec::new();
    for (name, text) in FILES.iter().zip(contents) {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

/// Escapes user-provided text (scenario names and keys, error messages,
/// expectation names, requirement IDs) for a Markdown table cell or list item:
/// `&`, `<` and `>` become entities (no raw HTML, no autolinks), Markdown
/// punctuation that could emphasise, link, quote code, strike or make a heading
/// or list is backslash-escaped, `|` cannot end a cell, and line breaks and
/// other control characters become spaces.
pub fn md_text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut o = String::with_capacity(s.len() + 8);
    let mut digits_only = true;
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let intraword = prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric);
        // "-", "+" or "1." at the start of an item would make a nested list.
        let list_marker = match c {
            '-' | '+' => i == 0,
            '.' | ')' => i > 0 && digits_only,
            _ => false,
        };
        digits_only &= c.is_ascii_digit();
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\\' | '`' | '*' | '[' | ']' | '|' | '~' | '#' => {
                o.push('\\');
                o.push(c);
            }
            '_' if !intraword => o.push_str("\\_"),
            _ if list_marker => {
                o.push('\\');
                o.push(c);
            }
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::NotExercised => "not exercised",
    }
}

/// Formats seconds with a unit that keeps 3–4 significant digits.
pub fn fmt_seconds(v: Option<f64>) -> String {
    match v {
        None => "never".into(),
        Some(0.0) => "0 s".into(),
        Some(v) if v.abs() < 1e-6 => format!("{:.1} ns", v * 1e9),
        Some(v) if v.abs() < 1e-3 => format!("{:.1} µs", v * 1e6),
        Some(v) if v.abs() < 1.0 => format!("{:.3} ms", v * 1e3),
        Some(v) => format!("{v:.3} s"),
    }
}

/// A figure's value in its unit: seconds with [`fmt_seconds`], counts plainly.
pub fn fmt_figure(metric: &str, v: Option<f64>) -> String {
    if metric.ends_with("_s") {
        return fmt_seconds(v);
    }
    match v {
        None => "never".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v}"),
        Some(v) => format!("{v:.3e}"),
    }
}

/// The verdict word of a requirement, with "(known deviation)" when the catalog says so.
fn requirement_word(q: &RequirementVerdict) -> String {
    match &q.deviation {
        Some(_) => format!("{} (known deviation)", status_word(q.status)),
        None => status_word(q.status).to_string(),
    }
}

/// Per scenario: (key, runs, passing runs, failing seeds, total wall seconds).
fn scenario_rows(r: &SuiteResult) -> Vec<(String, usize, usize, Vec<u64>, f64)> {
    r.keys()
        .into_iter()
        .map(|k| {
            let runs: Vec<&ScenarioResult> = r.runs_of(k).collect();
            let failing: Vec<u64> = runs.iter().filter(|s| !r.run_passed(s)).map(|s| s.seed).collect();
            (k.to_string(), runs.len(), runs.len() - failing.len(), failing, runs.iter().map(|s| s.wall_s).sum())
        })
        .collect()
}

fn run_word(r: &SuiteResult, s: &ScenarioResult) -> String {
    match &s.error {
        Some(e) => format!("ERROR: {}", e.lines().next().unwrap_or("")),
        None if r.run_passed(s) => "PASS".into(),
        None => "FAIL".into(),
    }
}

/// The Markdown summary: verdict, scenarios (per seed), the spread of each
/// figure over the seeds, known deviations, requirement table.
pub fn markdown(r: &SuiteResult) -> String {
    let mut o = String::new();
    let gate = r.gate_failures();
    let (p, f, n) = r.counts();
    let _ = writeln!(o, "# ntplab conformance report\n");
    for h in &r.header {
        let _ = writeln!(o, "- {}", md_text(h));
    }
    if !r.header.is_empty() {
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "**{}**: {} scenario(s), {} run(s); requirements: {p} pass, {f} fail, {n} not exercised (of {}).\n",
        if gate.is_empty() { "PASS" } else { "FAIL" },
        r.keys().len(),
        r.scenarios.len(),
        r.requirements.len()
    );
    if !gate.is_empty() {
        let _ = writeln!(o, "## Why it fails\n");
        for g in &gate {
            let _ = writeln!(o, "- {}", md_text(g));
        }
        o.push('\n');
    }
    for w in &r.warnings {
        let _ = writeln!(o, "> warning: {}\n", md_text(w));
    }
    let _ = writeln!(o, "## Scenarios\n");
    let _ = writeln!(o, "| scenario | seeds | passed | failing seeds | wall |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for (k, runs, ok, failing, wall) in scenario_rows(r) {
        let fs = if failing.is_empty() { "-".to_string() } else { failing.iter().map(u64::to_string).collect::<Vec<_>>().join(", ") };
        let _ = writeln!(o, "| {} | {runs} | {ok}/{runs} | {fs} | {wall:.3} s |", md_text(&k));
    }
    let _ = writeln!(o, "\n## Runs (one per scenario and seed)\n");
    let _ = writeln!(o, "| scenario | seed | expectations | checks pass/fail | wall | result |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for s in &r.scenarios {
        let ok = s.expectations.iter().filter(|e| e.passed).count();
        let cp = s.checks.iter().filter(|c| c.outcome.status == Status::Pass).count();
        let cf = s.checks.iter().filter(|c| c.outcome.status == Status::Fail).count();
        let _ = writeln!(o, "| {} | {} | {ok}/{} | {cp}/{cf} | {:.3} s | {} |", md_text(&s.key), s.seed, s.expectations.len(), s.wall_s, md_text(&run_word(r, s)));
    }
    let _ = writeln!(o, "\n## Figures (daemon hosts; spread over the seeds)\n");
    let _ = writeln!(o, "| scenario | host | metric | seeds | min | median | max |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for sp in r.spread() {
        let never = if sp.missing > 0 { format!(" ({} never)", sp.missing) } else { String::new() };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {}{never} | {} | {} | {} |",
            md_text(&sp.scenario),
            md_text(&sp.host),
            sp.metric,
            sp.seeds,
            fmt_figure(&sp.metric, sp.min),
            fmt_figure(&sp.metric, sp.median),
            fmt_figure(&sp.metric, sp.max)
        );
    }
    let failed_expect: Vec<_> = r.scenarios.iter().flat_map(|s| s.expectations.iter().filter(|e| !e.passed).map(move |e| (s, e))).collect();
    if !failed_expect.is_empty() {
        let _ = writeln!(o, "\n## Failed expectations\n");
        let _ = writeln!(o, "| run | expectation | requirement | result |");
        let _ = writeln!(o, "|---|---|---|---|");
        for (s, e) in failed_expect {
            let _ = writeln!(o, "| {} | {} | {} | FAIL {} |", md_text(&s.label()), md_text(&e.name), md_text(e.requirement.as_deref().unwrap_or("")), md_text(&e.describe()));
        }
    }
    if r.baseline_compared {
        let _ = writeln!(o, "\n## Baseline\n");
        if r.regressions.is_empty() {
            let _ = writeln!(o, "No figure regressed beyond its tolerance.");
        }
        for g in &r.regressions {
            let _ = writeln!(o, "- {}", md_text(&g.describe()));
        }
    }
    let _ = writeln!(o, "\n## Known deviations\n");
    let devs: Vec<&RequirementVerdict> = r.requirements.iter().filter(|q| q.deviation.is_some()).collect();
    if devs.is_empty() {
        let _ = writeln!(o, "None: every failed check fails the run.");
    } else {
        let _ = writeln!(o, "| ID | level | rule deviated from | reason | status |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for q in devs {
            let d = q.deviation.as_ref().unwrap_or_else(|| unreachable!());
            let _ = writeln!(o, "| {} | {} | {} | {} | {} |", md_text(&q.id), q.level.as_str(), md_text(&d.rule), md_text(&d.reason), status_word(q.status));
        }
    }
    let _ = writeln!(o, "\n## Requirements\n");
    let _ = writeln!(o, "| ID | level | status | reason |");
    let _ = writeln!(o, "|---|---|---|---|");
    for q in &r.requirements {
        let _ = writeln!(o, "| {} | {} | {} | {} |", md_text(&q.id), q.level.as_str(), md_text(&requirement_word(q)), md_text(&q.reason));
    }
    o
}

/// Escapes text for XML and HTML content and attribute values; drops characters XML 1.0 forbids.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// An SVG plot of offset over time, one polyline per host, with axes, ticks and a legend.
pub fn svg_plot(s: &ScenarioResult) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 300.0, 70.0, 150.0, 20.0, 40.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let pts: Vec<(f64, f64)> = s.series.values().flatten().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let mut o = String::new();
    let _ = write!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="offset over time for {}">"#, xml_escape(&s.key));
    if pts.is_empty() {
        let _ = write!(o, r#"<text x="{left}" y="{}">no samples</text></svg>"#, h / 2.0);
        return o;
    }
    let (t0, t1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |m, p| (m.0.min(p.0), m.1.max(p.0)));
    let (mut y0, mut y1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |m, p| (m.0.min(p.1), m.1.max(p.1)));
    if y1 - y0 < 1e-9 {
        y0 -= 1e-6;
        y1 += 1e-6;
    }
    let t1 = if t1 > t0 { t1 } else { t0 + 1.0 };
    let x = |t: f64| left + (t - t0) / (t1 - t0) * pw;
    let y = |v: f64| top + (1.0 - (v - y0) / (y1 - y0)) * ph;
    // Axes.
    let _ = write!(o, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##);
    for i in 0..=4 {
        let v = y0 + (y1 - y0) * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(o, r##"<line x1="{}" x2="{left}" y1="{yy:.1}" y2="{yy:.1}" stroke="#888"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##, left - 4.0, left - 6.0, yy + 3.0, xml_escape(&fmt_seconds(Some(v))));
        let t = t0 + (t1 - t0) * f64::from(i) / 4.0;
        let xx = x(t);
        let label = if t1 - t0 > 7200.0 { format!("{:.1} h", t / 3600.0) } else { format!("{t:.0} s") };
        let _ = write!(o, r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="#888"/><text x="{xx:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"##, top + ph, top + ph + 4.0, top + ph + 16.0);
    }
    if y0 < 0.0 && y1 > 0.0 {
        let _ = write!(o, r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ccc" stroke-dasharray="4 3"/>"##, left + pw, y(0.0), y(0.0));
    }
    let _ = write!(o, r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">true time since start</text>"#, left + pw / 2.0, h - 4.0);
    let _ = write!(o, r#"<text x="12" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {})">offset (local − true)</text>"#, top + ph / 2.0, top + ph / 2.0);
    for (i, (host, series)) in s.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut points = String::new();
        for (t, v) in series.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            let _ = write!(points, "{:.1},{:.1} ", x(*t), y(*v));
        }
        let _ = write!(o, r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"><title>{}</title></polyline>"#, points.trim_end(), xml_escape(host));
        let ly = top + 14.0 * i as f64 + 8.0;
        let _ = write!(o, r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}" font-size="11">{}</text>"#, left + pw + 10.0, left + pw + 28.0, left + pw + 32.0, ly + 4.0, xml_escape(host));
    }
    o.push_str("</svg>");
    o
}

/// The HTML report: the Markdown's content as tables plus a plot per scenario.
pub fn html(r: &SuiteResult) -> String {
    let e = xml_escape;
    let gate = r.gate_failures();
    let (p, f, n) = r.counts();
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ntplab conformance report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}.pass{color:#070}.fail{color:#b00;font-weight:bold}.ne{color:#777}</style></head><body>\n");
    let _ = writeln!(o, "<h1>ntplab conformance report</h1><p><b class=\"{}\">{}</b>: {} scenario(s), {} run(s); requirements: {p} pass, {f} fail, {n} not exercised (of {}).</p>", if gate.is_empty() { "pass" } else { "fail" }, if gate.is_empty() { "PASS" } else { "FAIL" }, r.keys().len(), r.scenarios.len(), r.requirements.len());
    if !r.header.is_empty() {
        o.push_str("<ul>");
        for h in &r.header {
            let _ = write!(o, "<li>{}</li>", e(h));
        }
        o.push_str("</ul>\n");
    }
    if !gate.is_empty() {
        o.push_str("<h2>Why it fails</h2><ul>");
        for g in &gate {
            let _ = write!(o, "<li>{}</li>", e(g));
        }
        o.push_str("</ul>\n");
    }
    for w in &r.warnings {
        let _ = writeln!(o, "<p class=\"fail\">warning: {}</p>", e(w));
    }
    o.push_str("<h2>Scenarios</h2>\n");
    let spread = r.spread();
    for key in r.keys() {
        let runs: Vec<&ScenarioResult> = r.runs_of(key).collect();
        let failing = runs.iter().filter(|s| !r.run_passed(s)).count();
        let res = if failing == 0 { ("pass", "PASS".to_string()) } else { ("fail", format!("FAIL ({failing} of {} seeds)", runs.len())) };
        // The plot and the checks shown: the first failing run, else the first.
        let shown = runs.iter().copied().find(|s| !r.run_passed(s)).unwrap_or(runs[0]);
        let _ = writeln!(o, "<h3 id=\"{}\">{} <span class=\"{}\">{}</span></h3><p>{}</p>", e(key), e(key), res.0, e(&res.1), e(&shown.name));
        o.push_str("<table><tr><th>seed</th><th>result</th><th>expectations</th><th>checks pass/fail</th><th>wall</th><th>why it fails</th></tr>");
        for s in &runs {
            let why = s.failures(&r.excused).iter().map(|x| format!("<li>{}</li>", e(x))).collect::<String>();
            let ok = s.expectations.iter().filter(|x| x.passed).count();
            let cp = s.checks.iter().filter(|c| c.outcome.status == Status::Pass).count();
            let cf = s.checks.iter().filter(|c| c.outcome.status == Status::Fail).count();
            let (cls, word) = if r.run_passed(s) { ("pass", "PASS") } else { ("fail", if s.error.is_some() { "ERROR" } else { "FAIL" }) };
            let _ = write!(o, "<tr><td>{}</td><td class=\"{cls}\">{word}</td><td>{ok}/{}</td><td>{cp}/{cf}</td><td>{:.3} s</td><td><ul>{why}</ul></td></tr>", s.seed, s.expectations.len(), s.wall_s);
        }
        o.push_str("</table>\n");
        if shown.error.is_some() {
            continue;
        }
        let _ = writeln!(o, "<p>Offset over time, seed {}:</p>", shown.seed);
        o.push_str(&svg_plot(shown));
        o.push_str("\n<table><tr><th>host</th><th>metric</th><th>seeds</th><th>min</th><th>median</th><th>max</th></tr>");
        for sp in spread.iter().filter(|sp| sp.scenario == key) {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", e(&sp.host), e(&sp.metric), sp.seeds, if sp.missing > 0 { format!(" ({} never)", sp.missing) } else { String::new() }, e(&fmt_figure(&sp.metric, sp.min)), e(&fmt_figure(&sp.metric, sp.median)), e(&fmt_figure(&sp.metric, sp.max)));
        }
        let _ = write!(o, "</table>\n<table><tr><th>expectation (seed {})</th><th>requirement</th><th>result</th></tr>", shown.seed);
        for x in &shown.expectations {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td><td class=\"{}\">{} {}</td></tr>", e(&x.name), e(x.requirement.as_deref().unwrap_or("")), if x.passed { "pass" } else { "fail" }, if x.passed { "PASS" } else { "FAIL" }, e(&x.describe()));
        }
        let _ = write!(o, "</table>\n<details><summary>checks (seed {})</summary><table><tr><th>check</th><th>status</th><th>reason</th></tr>", shown.seed);
        for c in &shown.checks {
            let _ = write!(o, "<tr><td title=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>", e(&c.title), e(&c.check), class(c.outcome.status), status_word(c.outcome.status), e(&c.outcome.reason));
        }
        o.push_str("</table></details>\n");
    }
    if r.baseline_compared {
        o.push_str("<h2>Baseline</h2><ul>");
        if r.regressions.is_empty() {
            o.push_str("<li>No figure regressed beyond its tolerance.</li>");
        }
        for g in &r.regressions {
            let _ = write!(o, "<li class=\"fail\">{}</li>", e(&g.describe()));
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<h2>Known deviations</h2>\n");
    let devs: Vec<&RequirementVerdict> = r.requirements.iter().filter(|q| q.deviation.is_some()).collect();
    if devs.is_empty() {
        o.push_str("<p>None: every failed check fails the run.</p>\n");
    } else {
        o.push_str("<table><tr><th>ID</th><th>level</th><th>rule deviated from</th><th>reason</th><th>status</th></tr>");
        for q in devs {
            let d = q.deviation.as_ref().unwrap_or_else(|| unreachable!());
            let _ = write!(o, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>", e(&q.id), q.level.as_str(), e(&d.rule), e(&d.reason), class(q.status), status_word(q.status));
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h2>Requirements</h2>\n<table><tr><th>ID</th><th>level</th><th>source</th><th>statement</th><th>status</th><th>reason</th></tr>");
    for q in &r.requirements {
        let ev = if q.evidence.is_empty() { String::new() } else { format!("<details><summary>evidence</summary><ul>{}</ul></details>", q.evidence.iter().map(|x| format!("<li>{}</li>", e(x))).collect::<String>()) };
        let _ = write!(o, "<tr id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}{ev}</td></tr>", e(&q.id), e(&q.id), q.level.as_str(), e(&q.source), e(&q.statement), class(q.status), e(&requirement_word(q)), e(&q.reason));
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

fn class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::NotExercised => "ne",
    }
}

/// The whole result as JSON (scenarios with checks, figures and expectations; requirements; regressions).
pub fn json(r: &SuiteResult) -> String {
    let v = serde_json::json!({
        "passed": r.gate_failures().is_empty(),
        "gate_failures": r.gate_failures(),
        "counts": { "pass": r.counts().0, "fail": r.counts().1, "not_exercised": r.counts().2 },
        "runs": r.scenarios.iter().map(|s| serde_json::json!({ "scenario": s.key, "seed": s.seed, "passed": r.run_passed(s), "failures": s.failures(&r.excused), "wall_s": s.wall_s })).collect::<Vec<_>>(),
        "spread": r.spread(),
        "slowest": r.slowest().into_iter().map(|(k, w, n)| serde_json::json!({ "scenario": k, "wall_s": w, "runs": n })).collect::<Vec<_>>(),
        "deviations": r.requirements.iter().filter_map(|q| q.deviation.as_ref().map(|d| serde_json::json!({ "id": q.id, "rule": d.rule, "reason": d.reason, "status": q.status }))).collect::<Vec<_>>(),
        "result": r,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// JUnit XML: `testsuites` → one `testsuite` per run (scenario and seed,
/// named `KEY (seed N)` when the scenario ran with several seeds; a testcase
/// per expectation, per check and per declared `exercises` entry; the run's
/// figures and the scenario's spread over the seeds as properties) plus a
/// `requirements` suite (a testcase per requirement; not exercised =
/// skipped). A failed check excused by a known deviation is skipped with the
/// deviation as its message. Failures carry a one-line `message` and the
/// evidence as text.
pub fn junit(r: &SuiteResult) -> String {
    struct Case {
        name: String,
        classname: String,
        fail: Option<(String, String)>,
        skip: Option<String>,
        time: f64,
    }
    /// name, scenario key, time, properties, cases
    type Suite = (String, String, f64, Vec<(String, String)>, Vec<Case>);
    let mut suites: Vec<Suite> = Vec::new();
    let spread = r.spread();
    for s in &r.scenarios {
        let mut cases = Vec::new();
        let cls = format!("ntplab.scenario.{}", s.key);
        if let Some(err) = &s.error {
            cases.push(Case { name: "load and run".into(), classname: cls.clone(), fail: Some((err.lines().next().unwrap_or("").to_string(), err.clone())), skip: None, time: 0.0 });
        }
        for x in &s.expectations {
            let msg = format!("{}{}", x.describe(), x.requirement.as_ref().map_or(String::new(), |q| format!(" [{q}]")));
            cases.push(Case { name: format!("expect: {}", x.name), classname: cls.clone(), fail: (!x.passed).then(|| (msg.clone(), msg)), skip: None, time: 0.0 });
        }
        for c in &s.checks {
            let (fail, skip) = match c.outcome.status {
                Status::Pass => (None, None),
                Status::Fail if r.excused.contains(&c.check) => (None, Some(format!("known deviation (conformance/catalog.toml): {}", c.outcome.reason))),
                Status::Fail => (Some((c.outcome.reason.clone(), c.outcome.evidence.join("\n"))), None),
                Status::NotExercised => (None, Some(c.outcome.reason.clone())),
            };
            cases.push(Case { name: format!("check: {}", c.check), classname: cls.clone(), fail, skip, time: 0.0 });
        }
        for d in &s.exercises {
            let status = s.checks.iter().find(|c| c.check == d.check).map(|c| (c.outcome.status, c.outcome.reason.clone()));
            let fail = match status {
                Some((Status::NotExercised, why)) => Some((format!("declared at {} but not exercised: {why}", d.at), why)),
                None if s.error.is_none() => Some((format!("declared at {} but did not run", d.at), String::new())),
                _ => None,
            };
            cases.push(Case { name: format!("exercises: {}", d.check), classname: cls.clone(), fail, skip: None, time: 0.0 });
        }
        let several = r.runs_of(&s.key).count() > 1;
        let mut props: Vec<(String, String)> = s.figures.iter().map(|f| (format!("{} {}", f.host, f.metric), f.value.map_or_else(|| "never".into(), |v| format!("{v:e}")))).collect();
        props.push(("seed".into(), s.seed.to_string()));
        if r.runs_of(&s.key).next().is_some_and(|first| std::ptr::eq(first, s)) {
            for sp in spread.iter().filter(|sp| sp.scenario == s.key) {
                props.push((format!("spread {} {} (min/median/max over {} seeds)", sp.host, sp.metric, sp.seeds + sp.missing), spread_text(sp)));
            }
        }
        suites.push((if several { s.label() } else { s.key.clone() }, s.key.clone(), s.wall_s, props, cases));
    }
    let mut reqs = Vec::new();
    for q in &r.requirements {
        let (fail, skip) = match q.status {
            Status::Pass => (None, None),
            Status::Fail => (Some((format!("{} {}: {}", q.level.as_str(), q.id, q.reason), q.evidence.join("\n"))), None),
            Status::NotExercised => (None, Some(q.reason.clone())),
        };
        reqs.push(Case { name: q.id.clone(), classname: "ntplab.requirements".into(), fail, skip, time: 0.0 });
    }
    suites.push(("requirements".into(), String::new(), 0.0, Vec::new(), reqs));
    for g in &r.regressions {
        if let Some(s) = suites.iter_mut().find(|s| s.1 == g.scenario) {
            s.4.push(Case { name: format!("baseline: {} {}", g.host, g.metric), classname: format!("ntplab.scenario.{}", g.scenario), fail: Some((g.describe(), g.describe())), skip: None, time: 0.0 });
        }
    }
    let count = |cs: &[Case]| (cs.len(), cs.iter().filter(|c| c.fail.is_some()).count(), cs.iter().filter(|c| c.skip.is_some()).count());
    let (mut tt, mut tf, mut ts, mut ttime) = (0, 0, 0, 0.0);
    for (_, _, time, _, cs) in &suites {
        let (t, f, s) = count(cs);
        tt += t;
        tf += f;
        ts += s;
        ttime += time;
    }
    let e = xml_escape;
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(o, "<testsuites name=\"ntplab suite\" tests=\"{tt}\" failures=\"{tf}\" errors=\"0\" skipped=\"{ts}\" time=\"{ttime:.3}\">");
    for (i, (name, _, time, props, cs)) in suites.iter().enumerate() {
        let (t, f, s) = count(cs);
        let _ = writeln!(o, "  <testsuite id=\"{i}\" name=\"{}\" tests=\"{t}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{time:.3}\">", e(name));
        if !props.is_empty() {
            o.push_str("    <properties>\n");
            for (k, v) in props {
                let _ = writeln!(o, "      <property name=\"{}\" value=\"{}\"/>", e(k), e(v));
            }
            o.push_str("    </properties>\n");
        }
        for c in cs {
            junit_testcase(&mut o, &c.name, &c.classname, c.time, c.fail.as_ref().map(|(m, b)| (m.as_str(), b.as_str())), c.skip.as_deref());
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

/// One JUnit `testcase` element: passed, failed (one-line message and a
/// body) or skipped (a reason).
pub fn junit_testcase(o: &mut String, name: &str, classname: &str, time: f64, fail: Option<(&str, &str)>, skip: Option<&str>) {
    let e = xml_escape;
    let _ = write!(o, "    <testcase name=\"{}\" classname=\"{}\" time=\"{time:.3}\"", e(name), e(classname));
    match (fail, skip) {
        (Some((msg, body)), _) => {
            let _ = writeln!(o, ">\n      <failure message=\"{}\" type=\"failure\">{}</failure>\n    </testcase>", e(msg), e(body));
        }
        (None, Some(why)) => {
            let _ = writeln!(o, ">\n      <skipped message=\"{}\"/>\n    </testcase>", e(why));
        }
        (None, None) => o.push_str("/>\n"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn spread_text(sp: &Spread) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |v| format!("{v:e}"));
    let never = if sp.missing > 0 { format!(" ({} seed(s) never)", sp.missing) } else { String::new() };
    format!("{} / {} / {}{never}", f(sp.min), f(sp.median), f(sp.max))
}

/// `scenario,host,metric,seed,value`: one row per figure and seed (empty
/// value: never happened), then per figure three rows whose `seed` is `min`,
/// `median` and `max` (the spread over the seeds).
pub fn csv(r: &SuiteResult) -> String {
    let mut o = String::from("scenario,host,metric,seed,value\n");
    let v = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:e}"));
    for s in &r.scenarios {
        for f in &s.figures {
            let _ = writeln!(o, "{},{},{},{},{}", csv_field(&s.key), csv_field(&f.host), csv_field(&f.metric), s.seed, v(f.value));
        }
    }
    for sp in r.spread() {
        for (what, x) in [("min", sp.min), ("median", sp.median), ("max", sp.max)] {
            let _ = writeln!(o, "{},{},{},{what},{}", csv_field(&sp.scenario), csv_field(&sp.host), csv_field(&sp.metric), v(x));
        }
    }
    o
}
