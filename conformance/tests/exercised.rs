//! Every check is exercised by at least one shipped scenario: the union of the
//! scenarios' `exercises` lists covers `CHECKS`, and every name in them is a
//! check. (That a declared check really is exercised is the suite's gate: a
//! declared check reporting "not exercised" fails the run.)

use ntplab_conformance::checks::{check, CHECKS};
use ntplab_conformance::suite::discover;
use ntplab_sim::scenario::Scenario;
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_check_is_declared_by_a_shipped_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut declared = BTreeSet::new();
    let files = discover(&dir).unwrap();
    assert!(files.len() >= 20, "{files:?}");
    for f in files {
        let s = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        for x in s.exercises {
            assert!(check(&x.check).is_some(), "{}:{}:{}: unknown check `{}`", f.display(), x.line, x.column, x.check);
            declared.insert(x.check);
        }
    }
    let missing: Vec<&str> = CHECKS.iter().map(|c| c.id).filter(|id| !declared.contains(*id)).collect();
    assert!(missing.is_empty(), "checks no shipped scenario declares in `exercises`: {missing:?}");
}
