//! The requirement catalog: `catalog.toml`, one `[[requirement]]` per row of
//! the reference catalog, loaded and validated (unique IDs, known levels,
//! known checks, a reason for every requirement without checks, one-line
//! deviations). `catalog.toml` is the source: edit it by hand.
//!
//! Every failed check fails `ntplab suite`, whatever the requirement's level.
//! The only way to accept a failure is a known deviation written here:
//! `deviation = { rule = "...", reason = "..." }` on the requirement (the rule
//! it deviates from and why, one line each). A failed check is excused only
//! when every requirement that names it is a deviation; the reports list the
//! deviations.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The catalog shipped with the crate.
pub const BUILTIN: &str = include_str!("../catalog.toml");

/// A requirement's level, normalised from the catalog's level text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// MUST, MUST NOT, SHALL, REQUIRED (also RFC 5905 §2's "MUST implement").
    #[serde(rename = "MUST")]
    Must,
    /// SHOULD, SHOULD NOT, RECOMMENDED.
    #[serde(rename = "SHOULD")]
    Should,
    /// MAY.
    #[serde(rename = "MAY")]
    May,
    /// Lower-case "must" in the source: intended, not an RFC 2119 keyword.
    #[serde(rename = "must(lc)")]
    MustLc,
    /// Lower-case "should" in the source.
    #[serde(rename = "should(lc)")]
    ShouldLc,
    /// An RFC 5905 algorithm (§2: implement it or produce identical output).
    #[serde(rename = "ALG")]
    Alg,
    /// A definition or constant.
    #[serde(rename = "INFO")]
    Info,
}

impl Level {
    /// The spelling used in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
            Level::MustLc => "must(lc)",
            Level::ShouldLc => "should(lc)",
            Level::Alg => "ALG",
            Level::Info => "INFO",
        }
    }

}

/// One requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Stable ID from the reference catalog, e.g. `R5905-8-server-echo`.
    pub id: String,
    /// The catalog section it is listed under.
    pub group: String,
    /// Document and section, e.g. `5905 §8, §9.2 Fig.21`.
    pub source: String,
    /// Normalised level.
    pub level: Level,
    /// The level as written in the reference catalog.
    pub level_text: String,
    /// The source text was not at hand when the row was written.
    #[serde(default)]
    pub verify: bool,
    /// One-line paraphrase.
    pub statement: String,
    /// Checks (see [`crate::checks::CHECKS`]) that give evidence.
    #[serde(default)]
    pub checks: Vec<String>,
    /// Why it is not exercised, when it has no checks.
    #[serde(default)]
    pub reason: Option<String>,
    /// A known deviation: the implementation does not follow this rule on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviation: Option<Deviation>,
}

/// A requirement the implementation knowingly does not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// The rule deviated from, one line (e.g. `RFC 5905 §8: ...`).
    pub rule: String,
    /// Why, one line.
    pub reason: String,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// In file order.
    #[serde(rename = "requirement")]
    pub requirements: Vec<Requirement>,
}

impl Catalog {
    /// The catalog compiled into the crate.
    pub fn builtin() -> Catalog {
        Catalog::parse(BUILTIN, "conformance/catalog.toml").unwrap_or_else(|e| panic!("the built-in catalog is invalid: {e}"))
    }

    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Catalog::parse(&text, &path.display().to_string())
    }

    /// Parses and validates catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, String> {
        let c: Catalog = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        c.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(c)
    }

    /// Checks unique IDs, known checks, and a reason for every requirement without checks.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for r in &self.requirements {
            if r.id.trim().is_empty() {
                return Err("a requirement has an empty `id`".into());
            }
            if !seen.insert(r.id.as_str()) {
                return Err(format!("requirement `{}` is listed twice; IDs must be unique", r.id));
            }
            if r.statement.contains('\n') {
                return Err(format!("requirement `{}`: `statement` must be one line", r.id));
            }
            if let Some(d) = &r.deviation {
                for (key, v) in [("rule", &d.rule), ("reason", &d.reason)] {
                    if v.trim().is_empty() || v.contains('\n') {
                        return Err(format!("requirement `{}`: deviation `{key}` must be one non-empty line", r.id));
                    }
                }
            }
            for c in &r.checks {
                if crate::checks::check(c).is_none() {
                    let known: Vec<&str> = crate::checks::CHECKS.iter().map(|c| c.id).collect();
                    return Err(format!("requirement `{}` names unknown check `{c}`; known checks: {}", r.id, known.join(", ")));
                }
            }
            match (&r.checks.is_empty(), &r.reason) {
                (true, None) => {
                    return Err(format!("requirement `{}` has no `checks` and no `reason`: add a one-line reason why it is not exercised", r.id))
                }
                (false, Some(_)) => {
                    return Err(format!("requirement `{}` has checks and a `reason`: drop the stale reason", r.id))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The requirement with this ID.
    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.requirements.iter().find(|r| r.id == id)
    }

    /// Checks whose failure is excused: every requirement naming them is a
    /// known deviation. A check named by no requirement is never excused.
    pub fn excused_checks(&self) -> BTreeSet<String> {
        let mut named: BTreeSet<&str> = BTreeSet::new();
        let mut strict: BTreeSet<&str> = BTreeSet::new();
        for r in &self.requirements {
            for c in &r.checks {
                named.insert(c);
                if r.deviation.is_none() {
                    strict.insert(c);
                }
            }
        }
        named.difference(&strict).map(|c| c.to_string()).collect()
    }

    /// The known deviations, in catalog order.
    pub fn deviations(&self) -> impl Iterator<Item = (&Requirement, &Deviation)> {
        self.requirements.iter().filter_map(|r| r.deviation.as_ref().map(|d| (r, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_complete() {
        let c = Catalog::builtin();
        assert_eq!(c.requirements.len(), 178);
        assert!(c.get("R5905-8-server-echo").is_some_and(|r| r.level == Level::Must));
    }

    #[test]
    fn duplicate_ids_and_unknown_levels_are_named() {
        let one = "[[requirement]]\nid = \"A\"\ngroup = \"g\"\nsource = \"s\"\nlevel = \"MUST\"\nlevel_text = \"MUST\"\nstatement = \"x\"\nreason = \"r\"\n";
        let e = Catalog::parse(&format!("{one}{one}"), "t.toml").unwrap_err();
        assert!(e.contains("`A` is listed twice"), "{e}");
        let e = Catalog::parse(&one.replace("level = \"MUST\"", "level = \"OUGHT\""), "t.toml").unwrap_err();
        assert!(e.contains("t.toml") && e.contains("OUGHT"), "{e}");
        let e = Catalog::parse(&one.replace("reason = \"r\"\n", ""), "t.toml").unwrap_err();
        assert!(e.contains("no `checks` and no `reason`"), "{e}");
        let e = Catalog::parse(&one.replace("reason = \"r\"", "checks = [\"nope\"]"), "t.toml").unwrap_err();
        assert!(e.contains("unknown check `nope`"), "{e}");
        let e = Catalog::parse(&format!("{one}deviation = {{ rule = \"\", reason = \"why\" }}\n"), "t.toml").unwrap_err();
        assert!(e.contains("deviation `rule` must be one non-empty line"), "{e}");
        let e = Catalog::parse(&format!("{one}deviation = {{ rule = \"x\" }}\n"), "t.toml").unwrap_err();
        assert!(e.contains("reason"), "{e}");
    }

    #[test]
    fn a_check_is_excused_only_when_every_requirement_naming_it_deviates() {
        let req = |id: &str, checks: &str, dev: bool| {
            let d = if dev { "deviation = { rule = \"RFC 5905 §8\", reason = \"on purpose\" }\n" } else { "" };
            format!("[[requirement]]\nid = \"{id}\"\ngroup = \"g\"\nsource = \"s\"\nlevel = \"ALG\"\nlevel_text = \"ALG\"\nstatement = \"x\"\nchecks = [{checks}]\n{d}")
        };
        let text = [
            req("A", "\"poll-bounds\"", true),
            req("B", "\"client-rejects-insane\"", true),
            req("C", "\"client-rejects-insane\"", false),
            req("D", "\"kod-deny-stops\"", false),
        ]
        .concat();
        let c = Catalog::parse(&text, "t.toml").unwrap();
        assert_eq!(c.excused_checks().into_iter().collect::<Vec<_>>(), vec!["poll-bounds".to_string()]);
        assert_eq!(c.deviations().map(|(r, d)| (r.id.as_str(), d.rule.as_str())).collect::<Vec<_>>(), vec![("A", "RFC 5905 §8"), ("B", "RFC 5905 §8")]);
        assert!(Catalog::builtin().deviations().all(|(r, _)| !r.checks.is_empty() || r.reason.is_some()));
    }
}
