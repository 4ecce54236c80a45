//! A suite run: every scenario of a directory through the simulator, every
//! check over each trace, and one verdict per catalog requirement.

use crate::baseline::Regression;
use crate::catalog::{Catalog, Deviation, Level};
use crate::checks::{self, Outcome, Status};
use crate::trace::{Context, Trace};
use ntplab_sim::scenario::Scenario;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most points per host kept for the offset plot.
pub const PLOT_POINTS_MAX: usize = 600;

/// One figure of merit of one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Host name.
    pub host: String,
    /// Metric name (see [`crate::baseline::TOLERANCES`]).
    pub metric: String,
    /// Value; None when it never happened (e.g. never synchronized).
    pub value: Option<f64>,
}

/// One scenario expectation's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// Its name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Metric name.
    pub metric: String,
    /// Measured value (None: never happened).
    pub value: Option<f64>,
    /// Why there is no value (e.g. the host never synchronized), when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
    /// The requirement it gives evidence for.
    pub requirement: Option<String>,
    /// Whether it was met.
    pub passed: bool,
}

impl ExpectationResult {
    /// One line: `host metric = value (must be <= max)`.
    pub fn describe(&self) -> String {
        let bound = match (self.min, self.max) {
            (Some(a), Some(b)) => format!("in [{a:e}, {b:e}]"),
            (Some(a), None) => format!(">= {a:e}"),
            (None, Some(b)) => format!("<= {b:e}"),
            (None, None) => "anything".into(),
        };
        let v = match (self.value, &self.missing) {
            (Some(v), _) => format!("{v:e}"),
            (None, Some(why)) => format!("none ({why})"),
            (None, None) => "never".to_string(),
        };
        format!("{} {} = {v} (must be {bound})", self.host, self.metric)
    }
}

/// One check's outcome in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// Check ID.
    pub check: String,
    /// What it verifies.
    pub title: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What one scenario gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// File stem, the scenario's key in reports and baselines.
    pub key: String,
    /// File path.
    pub file: String,
    /// The scenario's name (its one-line description).
    pub name: String,
    /// Seed used.
    pub seed: u64,
    /// Wall-clock seconds the simulation took.
    pub wall_s: f64,
    /// Set when the scenario could not be loaded or run; nothing else is then filled.
    pub error: Option<String>,
    /// Expectations, in file order.
    pub expectations: Vec<ExpectationResult>,
    /// Check outcomes, in [`checks::CHECKS`] order.
    pub checks: Vec<CheckResult>,
    /// Figures per daemon host.
    pub figures: Vec<Figure>,
    /// Offset over time per host, downsampled to at most [`PLOT_POINTS_MAX`] points: (t s, offset s).
    #[serde(skip)]
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    /// Where the trace was written.
    pub trace_dir: Option<String>,
    /// Checks the scenario declares it exercises (`exercises`).
    pub exercises: Vec<DeclaredCheck>,
}

/// One entry of a scenario's `exercises`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredCheck {
    /// Check ID.
    pub check: String,
    /// Where it is declared: `FILE:LINE:COLUMN`.
    pub at: String,
}

impl ScenarioResult {
    /// `KEY (seed N)`: names one run in reports and gate messages.
    pub fn label(&self) -> String {
        format!("{} (seed {})", self.key, self.seed)
    }

    /// Why this run fails the gate, one line each (without the label): it did
    /// not run, an expectation failed, a check failed (unless `excused` names
    /// it: a known deviation), or a check it declares was not exercised.
    pub fn failures(&self, excused: &BTreeSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            out.push(format!("scenario {} did not run: {e}", self.file));
            return out;
        }
        for e in self.expectations.iter().filter(|e| !e.passed) {
            let req = e.requirement.as_ref().map_or(String::new(), |r| format!(" [{r}]"));
            out.push(format!("expectation \"{}\" failed{req}: {}", e.name, e.describe()));
        }
        for c in self.checks.iter().filter(|c| c.outcome.status == Status::Fail && !excused.contains(&c.check)) {
            out.push(format!("check {} failed: {}", c.check, c.outcome.reason));
        }
        for d in &self.exercises {
            match self.checks.iter().find(|c| c.check == d.check) {
                Some(c) if c.outcome.status == Status::NotExercised => {
                    out.push(format!("check {} is declared exercised ({}) but was not: {}", d.check, d.at, c.outcome.reason));
                }
                Some(_) => {}
                None => out.push(format!("check {} is declared exercised ({}) but did not run", d.check, d.at)),
            }
        }
        out
    }

    /// Whether it ran and met everything: expectations, checks (none excused), declared exercises.
    pub fn passed(&self) -> bool {
        self.failures(&BTreeSet::new()).is_empty()
    }
}

/// One requirement's verdict over the whole suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequirementVerdict {
    /// ID.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Document and section.
    pub source: String,
    /// One-line statement.
    pub statement: String,
    /// Pass, fail or not exercised.
    pub status: Status,
    /// One line: why.
    pub reason: String,
    /// Evidence, each prefixed with the run's label.
    pub evidence: Vec<String>,
    /// Set when the catalog marks it a known deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviation: Option<Deviation>,
}

/// The whole suite's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteResult {
    /// Per scenario, in run order.
    pub scenarios: Vec<ScenarioResult>,
    /// Per catalog requirement, in catalog order.
    pub requirements: Vec<RequirementVerdict>,
    /// Figures that regressed against the baseline (empty without one).
    pub regressions: Vec<Regression>,
    /// Whether a baseline was compared.
    pub baseline_compared: bool,
    /// Problems that are not verdicts (e.g. an expectation naming an unknown requirement).
    pub warnings: Vec<String>,
    /// Checks whose failures are excused because every requirement naming them
    /// is a known deviation ([`Catalog::excused_checks`]).
    pub excused: BTreeSet<String>,
    /// Lines for the top of the reports: what ran (`ntplab lab suite`: every
    /// program's version and SHA-256). Empty for the simulator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<String>,
}

/// The spread of one figure over the seeds of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// Scenario key.
    pub scenario: String,
    /// Host.
    pub host: String,
    /// Metric.
    pub metric: String,
    /// Seeds that gave a value.
    pub seeds: usize,
    /// Seeds where it never happened (e.g. never synchronized).
    pub missing: usize,
    /// Smallest value.
    pub min: Option<f64>,
    /// Median (mean of the two middle values for an even count).
    pub median: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

/// Median of unsorted values (None when empty).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

impl SuiteResult {
    /// Judges the runs against the catalog and assembles the result.
    pub fn new(catalog: &Catalog, scenarios: Vec<ScenarioResult>, regressions: Vec<Regression>, baseline_compared: bool) -> SuiteResult {
        let (requirements, warnings) = judge(catalog, &scenarios);
        SuiteResult { scenarios, requirements, regressions, baseline_compared, warnings, excused: catalog.excused_checks(), header: Vec::new() }
    }

    /// Why the suite fails, one line each: runs that did not run, failed
    /// expectations, failed checks of any requirement level (known deviations
    /// excepted), declared checks not exercised (every seed's run on its own),
    /// and regressions. Empty: the suite passes.
    pub fn gate_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.scenarios {
            for f in s.failures(&self.excused) {
                out.push(format!("{}: {f}", s.label()));
            }
        }
        for r in &self.regressions {
            out.push(r.describe());
        }
        out
    }

    /// Whether one run passes the gate (known deviations excused).
    pub fn run_passed(&self, s: &ScenarioResult) -> bool {
        s.failures(&self.excused).is_empty()
    }

    /// Scenario keys in run order, each once.
    pub fn keys(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for s in &self.scenarios {
            if !v.contains(&s.key.as_str()) {
                v.push(&s.key);
            }
        }
        v
    }

    /// The runs of one scenario (one per seed).
    pub fn runs_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ScenarioResult> + 'a {
        self.scenarios.iter().filter(move |s| s.key == key)
    }

    /// Min, median and max of every figure over each scenario's seeds.
    pub fn spread(&self) -> Vec<Spread> {
        let mut out = Vec::new();
        for key in self.keys() {
            // ((host, metric), value per seed)
            type PerFigure = ((String, String), Vec<Option<f64>>);
            let mut per: Vec<PerFigure> = Vec::new();
            for s in self.runs_of(key).filter(|s| s.error.is_none()) {
                for f in &s.figures {
                    let k = (f.host.clone(), f.metric.clone());
                    match per.iter_mut().find(|p| p.0 == k) {
                        Some(p) => p.1.push(f.value),
                        None => per.push((k, vec![f.value])),
                    }
                }
            }
            for ((host, metric), vals) in per {
                let v: Vec<f64> = vals.iter().flatten().copied().collect();
                out.push(Spread {
                    scenario: key.to_string(),
                    host,
                    metric,
                    seeds: v.len(),
                    missing: vals.len() - v.len(),
                    min: v.iter().copied().reduce(f64::min),
                    median: median(&v),
                    max: v.iter().copied().reduce(f64::max),
                });
            }
        }
        out
    }

    /// Total wall-clock seconds per scenario over its seeds, slowest first.
    pub fn slowest(&self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<(String, f64, usize)> =
            self.keys().into_iter().map(|k| (k.to_string(), self.runs_of(k).map(|s| s.wall_s).sum(), self.runs_of(k).count())).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Counts of requirement verdicts: (pass, fail, not exercised).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s: Status| self.requirements.iter().filter(|r| r.status == s).count();
        (n(Status::Pass), n(Status::Fail), n(Status::NotExercised))
    }
}

/// The `*.toml` files of `dir`, sorted by path.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list scenario directory {}: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    v.sort();
    Ok(v)
}

/// Shard `k` (1-based) of `n`: the files whose 0-based index i has i mod n = k − 1.
pub fn shard<T: Clone>(items: &[T], k: usize, n: usize) -> Vec<T> {
    items.iter().enumerate().filter(|(i, _)| n > 0 && i % n == k.saturating_sub(1)).map(|(_, x)| x.clone()).collect()
}

/// Parses `K/N` (1 ≤ K ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard wants K/N with 1 <= K <= N (e.g. 2/4), got `{s}`");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

fn key_of(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// Which seeds a sweep runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedChoice {
    /// Each scenario's own: its `seeds` list, else its `seed`.
    Scenario,
    /// These, for every scenario (`--seed`, `--seeds`).
    These(Vec<u64>),
}

/// Runs one scenario file once per seed ([`SeedChoice`]). The traces go to
/// `trace_root/KEY` for a single seed and `trace_root/KEY/seed-N` for several;
/// with several seeds, a passing run's trace is deleted unless `keep_traces`
/// (a sweep's traces would fill the disk: about 0.5 GB per seed of the shipped
/// scenarios). A file that does not load gives one result carrying the error.
pub fn run_sweep(path: &Path, seeds: &SeedChoice, trace_root: &Path, keep_traces: bool, mut progress: impl FnMut(&str)) -> Vec<ScenarioResult> {
    let key = key_of(path);
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            let mut r = empty_result(path);
            r.error = Some(e.to_string());
            return vec![r];
        }
    };
    let list = match seeds {
        SeedChoice::These(v) => v.clone(),
        SeedChoice::Scenario if scenario.seeds.is_empty() => vec![scenario.seed],
        SeedChoice::Scenario => scenario.seeds.clone(),
    };
    let several = list.len() > 1;
    list.iter()
        .map(|&seed| {
            progress(&format!("{key} seed {seed}"));
            let dir = if several { trace_root.join(&key).join(format!("seed-{seed}")) } else { trace_root.join(&key) };
            let mut r = run_loaded(path, scenario.clone().with_seed(seed), &dir);
            if several && !keep_traces && r.passed() && std::fs::remove_dir_all(&dir).is_ok() {
                r.trace_dir = None;
            }
            r
        })
        .collect()
}

fn empty_result(path: &Path) -> ScenarioResult {
    ScenarioResult {
        key: key_of(path),
        file: path.display().to_string(),
        name: String::new(),
        seed: 0,
        wall_s: 0.0,
        error: None,
        expectations: Vec::new(),
        checks: Vec::new(),
        figures: Vec::new(),
        series: BTreeMap::new(),
        trace_dir: None,
        exercises: Vec::new(),
    }
}

/// The result of a run of `scenario` (file `path`) before it runs: its name,
/// seed and the checks it declares it exercises, or an error naming an
/// unknown check.
pub fn declared(path: &Path, scenario: &Scenario) -> ScenarioResult {
    let mut r = empty_result(path);
    r.name = scenario.name.clone();
    r.seed = scenario.seed;
    for x in &scenario.exercises {
        let at = format!("{}:{}:{}", path.display(), x.line, x.column);
        if checks::check(&x.check).is_none() {
            let known: Vec<&str> = checks::CHECKS.iter().map(|c| c.id).collect();
            r.error = Some(format!("{at}: `exercises` names unknown check `{}`; known checks: {}", x.check, known.join(", ")));
            return r;
        }
        r.exercises.push(DeclaredCheck { check: x.check.clone(), at });
    }
    r
}

/// Runs one scenario file, writes its trace under `trace_dir` and runs every check on it.
pub fn run_scenario(path: &Path, seed: Option<u64>, trace_dir: &Path) -> ScenarioResult {
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            let mut r = empty_result(path);
            r.error = Some(e.to_string());
            return r;
        }
    };
    let scenario = match seed {
        Some(s) => scenario.with_seed(s),
        None => scenario,
    };
    run_loaded(path, scenario, trace_dir)
}

/// Runs a loaded scenario (its `seed`), writes its trace under `trace_dir` and runs every check on it.
pub fn run_loaded(path: &Path, scenario: Scenario, trace_dir: &Path) -> ScenarioResult {
    let mut r = declared(path, &scenario);
    if r.error.is_some() {
        return r;
    }
    let report = match ntplab_sim::run::run(&scenario, Some(trace_dir)) {
        Ok(rep) => rep,
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    judge_run(r, &scenario, &report, trace_dir)
}

/// Judges a finished run of `scenario` whose trace is in `trace_dir`, the
/// simulator's or the hardware lab's (`ntplab lab`): its expectations'
/// verdicts and figures from `report`, every conformance check on the trace,
/// the offset series. `r` holds the file's name and declared checks.
pub fn judge_run(mut r: ScenarioResult, scenario: &Scenario, report: &ntplab_sim::run::RunReport, trace_dir: &Path) -> ScenarioResult {
    r.name = scenario.name.clone();
    r.seed = scenario.seed;
    r.trace_dir = Some(trace_dir.display().to_string());
    r.wall_s = report.wall.as_secs_f64();
    r.expectations = report
        .verdicts
        .iter()
        .map(|v| ExpectationResult {
            name: v.expectation.name.clone(),
            host: v.host.clone(),
            metric: v.expectation.metric.name().to_string(),
            value: v.value,
            missing: v.missing.clone(),
            min: v.expectation.min,
            max: v.expectation.max,
            requirement: v.expectation.requirement.clone(),
            passed: v.passed,
        })
        .collect();
    for h in report.hosts.iter().filter(|h| h.daemon) {
        let f = |m: &str, v: Option<f64>| Figure { host: h.name.clone(), metric: m.to_string(), value: v };
        r.figures.extend([
            f("rms_offset_s", h.stats.rms_offset()),
            f("max_offset_s", h.stats.max_offset()),
            f("sync_time_s", h.sync_time()),
            f("rms_frequency_error", h.stats.rms_frequency_error()),
            f("steps", Some(h.stats.steps as f64)),
            f("packets_sent", Some(h.stats.packets_sent as f64)),
            f("packets_received", Some(h.packets_received as f64)),
        ]);
    }
    match Trace::load(trace_dir) {
        Ok(trace) => {
            let ctx = Context::from_scenario(scenario);
            r.checks = checks::run_all(&ctx, &trace)
                .into_iter()
                .map(|(c, outcome)| CheckResult { check: c.id.to_string(), title: c.title.to_string(), outcome })
                .collect();
            r.series = series(&trace);
        }
        Err(e) => r.error = Some(format!("cannot read back the trace: {e}")),
    }
    r
}

/// Offset over time per host, downsampled for plotting: every k-th row of a
/// host with k chosen so that at most [`PLOT_POINTS_MAX`] remain, and its last
/// row. One pass over the rows; only the kept points are held.
pub fn series(trace: &Trace) -> BTreeMap<String, Vec<(f64, f64)>> {
    let step = |host: &str| trace.sample_counts.get(host).map_or(1, |n| n.div_ceil(PLOT_POINTS_MAX).max(1));
    /// Rows seen, points kept, the last row.
    type Thinned = (usize, Vec<(f64, f64)>, Option<(f64, f64)>);
    let mut all: BTreeMap<String, Thinned> = BTreeMap::new();
    for s in trace.samples() {
        let k = step(&s.host);
        let (seen, kept, last) = all.entry(s.host).or_default();
        if *seen % k == 0 {
            kept.push((s.t_s, s.offset_s));
        }
        *seen += 1;
        *last = Some((s.t_s, s.offset_s));
    }
    all.into_iter()
        .map(|(host, (_, mut kept, last))| {
            if let Some(l) = last.filter(|l| kept.last() != Some(l)) {
                kept.push(l);
            }
            (host, kept)
        })
        .collect()
}

/// One verdict per catalog requirement from the scenarios' check outcomes and expectations.
pub fn judge(catalog: &Catalog, scenarios: &[ScenarioResult]) -> (Vec<RequirementVerdict>, Vec<String>) {
    let mut warnings = Vec::new();
    for s in scenarios {
        for e in &s.expectations {
            if let Some(id) = &e.requirement {
                if catalog.get(id).is_none() {
                    warnings.push(format!("{}: expectation \"{}\" names requirement `{id}`, which is not in the catalog", s.key, e.name));
                }
            }
        }
    }
    let verdicts = catalog
        .requirements
        .iter()
        .map(|req| {
            // (scenario, status, reason, evidence)
            let mut found: Vec<(String, Status, String, Vec<String>)> = Vec::new();
            for s in scenarios {
                for c in s.checks.iter().filter(|c| req.checks.contains(&c.check)) {
                    found.push((s.label(), c.outcome.status, format!("{}: {}", c.check, c.outcome.reason), c.outcome.evidence.clone()));
                }
                for e in s.expectations.iter().filter(|e| e.requirement.as_deref() == Some(req.id.as_str())) {
                    let status = if e.passed { Status::Pass } else { Status::Fail };
                    let line = format!("expectation \"{}\": {}", e.name, e.describe());
                    found.push((s.label(), status, line.clone(), vec![line]));
                }
            }
            let pick = |st: Status| found.iter().filter(|f| f.1 == st).collect::<Vec<_>>();
            let (fails, passes) = (pick(Status::Fail), pick(Status::Pass));
            let evidence_of = |v: &[&(String, Status, String, Vec<String>)]| {
                v.iter().flat_map(|f| f.3.iter().take(2).map(move |e| format!("{}: {e}", f.0))).take(checks::EVIDENCE_MAX).collect()
            };
            let (status, reason, evidence) = if let Some(f) = fails.first() {
                let more = if fails.len() > 1 { format!(" (and {} more failing)", fails.len() - 1) } else { String::new() };
                (Status::Fail, format!("{}: {}{more}", f.0, f.2), evidence_of(&fails))
            } else if let Some(p) = passes.first() {
                let runs: BTreeSet<&str> = passes.iter().map(|p| p.0.as_str()).collect();
                (Status::Pass, format!("passed in {} run(s); e.g. {}: {}", runs.len(), p.0, p.2), evidence_of(&passes))
            } else if let Some(n) = found.first() {
                (Status::NotExercised, format!("no scenario exercised it ({})", n.2), Vec::new())
            } else if !req.checks.is_empty() {
                (Status::NotExercised, "no scenario ran".to_string(), Vec::new())
            } else {
                (Status::NotExercised, req.reason.clone().unwrap_or_default(), Vec::new())
            };
            RequirementVerdict {
                id: req.id.clone(),
                level: req.level,
                source: req.source.clone(),
                statement: req.statement.clone(),
                status,
                reason,
                evidence,
                deviation: req.deviation.clone(),
            }
        })
        .collect();
    (verdicts, warnings)
}
