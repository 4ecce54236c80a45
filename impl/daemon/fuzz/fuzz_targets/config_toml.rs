//! The daemon's configuration file (`DaemonConfig::from_toml`, what `ntplab
//! serve --config` reads): any text either gives a configuration or an error
//! naming the file; neither panics.
//!
//! Run from impl/daemon/: `cargo +nightly fuzz run config_toml fuzz/corpus/config_toml fuzz/seeds/config_toml -- -runs=100000`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_daemon::config::DaemonConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = DaemonConfig::from_toml(&text, "fuzz.toml") {
        let shown = e.to_string();
        assert!(shown.starts_with("fuzz.toml"), "{shown}");
    }
});
