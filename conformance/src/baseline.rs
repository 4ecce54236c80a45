//! Baselines: the figures of a suite run stored as JSON, and the comparison
//! that flags figures which got worse than their tolerance allows.
//!
//! Format (written by `ntplab suite --write-baseline FILE`):
//!
//! ```json
//! {"version": 1, "figures": {"SCENARIO": {"HOST": {"rms_offset_s": 8.8e-5, "sync_time_s": null}}}}
//! ```
//!
//! Every metric is "lower is better". A figure regresses when
//! `current > baseline * (1 + relative) + absolute` (see [`TOLERANCES`]), or
//! when the baseline had a value and the run has none (e.g. never
//! synchronized any more). Figures missing on either side (a scenario of
//! another shard, a new host) are not compared.

use crate::suite::ScenarioResult;
use serde::Serialize;
use std::collections::BTreeMap;

/// Allowed growth of one metric: `relative` of the baseline plus `absolute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Metric name.
    pub metric: &'static str,
    /// Fraction of the baseline value.
    pub relative: f64,
    /// In the metric's unit.
    pub absolute: f64,
}

/// The tolerances. Metrics not listed (e.g. `packets_received`) are recorded but never gate.
pub const TOLERANCES: &[Tolerance] = &[
    Tolerance { metric: "rms_offset_s", relative: 0.20, absolute: 1e-6 },
    Tolerance { metric: "max_offset_s", relative: 0.20, absolute: 1e-6 },
    Tolerance { metric: "sync_time_s", relative: 0.20, absolute: 60.0 },
    Tolerance { metric: "rms_frequency_error", relative: 0.20, absolute: 1e-9 },
    Tolerance { metric: "steps", relative: 0.0, absolute: 0.0 },
    Tolerance { metric: "packets_sent", relative: 0.10, absolute: 2.0 },
];

/// Figures per scenario, host and metric.
pub type Figures = BTreeMap<String, BTreeMap<String, BTreeMap<String, Option<f64>>>>;

/// A figure that got worse than its tolerance allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    /// Scenario key.
    pub scenario: String,
    /// Host.
    pub host: String,
    /// Metric.
    pub metric: String,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// This run's value.
    pub current: Option<f64>,
    /// Largest value allowed.
    pub limit: f64,
}

impl Regression {
    /// One line for the summary and the gate message.
    pub fn describe(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |v| format!("{v:e}"));
        format!(
            "{}: {} {} regressed: {} (baseline {}, allowed up to {:e})",
            self.scenario,
            self.host,
            self.metric,
            f(self.current),
            f(self.baseline),
            self.limit
        )
    }
}

/// The figures of a suite run.
pub fn figures(scenarios: &[ScenarioResult]) -> Figures {
    let mut m = Figures::new();
    for s in scenarios.iter().filter(|s| s.error.is_none()) {
        let sc = m.entry(s.key.clone()).or_default();
        for f in &s.figures {
            sc.entry(f.host.clone()).or_default().insert(f.metric.clone(), f.value);
        }
    }
    m
}

/// The baseline file's text.
pub fn to_json(figures: &Figures) -> String {
    let v = serde_json::json!({ "version": 1, "figures": figures });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// Reads a baseline file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Figures, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{origin}: not a baseline (JSON): {e}"))?;
    if v.get("version").and_then(|x| x.as_u64()) != Some(1) {
        return Err(format!("{origin}: expected \"version\": 1; write a new baseline with --write-baseline"));
    }
    let figs = v.get("figures").cloned().ok_or_else(|| format!("{origin}: no \"figures\" object"))?;
    serde_json::from_value(figs).map_err(|e| format!("{origin}: \"figures\" should map scenario -> host -> metric -> number or null: {e}"))
}

/// Figures of `current` that regressed against `baseline`.
pub fn compare(baseline: &Figures, current: &Figures) -> Vec<Regression> {
    let mut out = Vec::new();
    for (scen, hosts) in current {
        let Some(bh) = baseline.get(scen) else { continue };
        for (host, metrics) in hosts {
            let Some(bm) = bh.get(host) else { continue };
            for tol in TOLERANCES {
                let (Some(b), Some(c)) = (bm.get(tol.metric), metrics.get(tol.metric)) else { continue };
                let Some(bv) = *b else { continue };
                let limit = bv.abs() * (1.0 + tol.relative) + tol.absolute;
                let regressed = match c {
                    Some(cv) => *cv > limit,
                    None => true,
                };
                if regressed {
                    out.push(Regression { scenario: scen.clone(), host: host.clone(), metric: tol.metric.to_string(), baseline: *b, current: *c, limit });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(v: Option<f64>, metric: &str) -> Figures {
        let mut m = Figures::new();
        m.entry("s".into()).or_default().entry("client".into()).or_default().insert(metric.into(), v);
        m
    }

    #[test]
    fn rms_offset_may_grow_by_20_percent_plus_1_us() {
        let base = figs(Some(100e-6), "rms_offset_s");
        assert!(compare(&base, &figs(Some(120.9e-6), "rms_offset_s")).is_empty());
        let r = compare(&base, &figs(Some(121.1e-6), "rms_offset_s"));
        assert_eq!(r.len(), 1);
        assert!(r[0].describe().contains("client rms_offset_s regressed"), "{}", r[0].describe());
    }

    #[test]
    fn losing_sync_regresses_and_missing_figures_are_skipped() {
        assert_eq!(compare(&figs(Some(100.0), "sync_time_s"), &figs(None, "sync_time_s")).len(), 1);
        assert!(compare(&figs(None, "sync_time_s"), &figs(None, "sync_time_s")).is_empty());
        assert!(compare(&Figures::new(), &figs(Some(1.0), "steps")).is_empty());
        assert!(compare(&figs(Some(1.0), "packets_received"), &figs(Some(100.0), "packets_received")).is_empty());
    }

    #[test]
    fn round_trip_and_errors() {
        let f = figs(Some(1.5e-5), "rms_offset_s");
        assert_eq!(parse(&to_json(&f), "b.json").unwrap(), f);
        assert!(parse("{}", "b.json").unwrap_err().contains("version"));
        assert!(parse("nope", "b.json").unwrap_err().starts_with("b.json: not a baseline"));
    }
}
