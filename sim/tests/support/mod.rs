//! Helpers shared by the simulator's integration tests.

use ntplab_sim::run::{run, RunReport};
use ntplab_sim::scenario::Scenario;
use std::path::PathBuf;

/// Runs `scenario` with its trace in a fresh temporary directory named by
/// `label`, and returns the run's report and the trace files (name,
/// contents) in name order; the directory is removed.
pub fn run_to_files(scenario: &Scenario, label: &str) -> (RunReport, Vec<(String, Vec<u8>)>) {
    let out = std::env::temp_dir().join(format!("ntplab-test-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let report = run(scenario, Some(&out)).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let contents = files.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap())).collect();
    std::fs::remove_dir_all(&out).ok();
    (report, contents)
}

/// The contents of the trace file `name`.
#[allow(dead_code)] // not every test binary that includes this module reads single files
pub fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
}
