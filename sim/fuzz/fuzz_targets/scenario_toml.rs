//! The scenario loader (`Scenario::parse`): any text either loads or gives a
//! positioned error; neither panics, and rendering the error never panics.
//!
//! Run from sim/: `cargo +nightly fuzz run scenario_toml fuzz/corpus/scenario_toml fuzz/seeds/scenario_toml -- -runs=100000`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_sim::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Scenario::parse(&text, "fuzz.toml") {
        Ok(s) => {
            assert!(!s.hosts.is_empty());
            assert!(s.events.windows(2).all(|w| w[0].at <= w[1].at), "events are sorted");
            assert!(s.events.iter().all(|e| e.at <= s.duration));
            let _ = s.end();
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml"), "{shown}");
        }
    }
});
