//! The drift file (`drift::parse`, chrony's `FREQ SKEW` or ntpd's one
//! number): any text gives a finite correction within the clock's range, or
//! an error naming the file; neither panics.
//!
//! Run from impl/daemon/: `cargo +nightly fuzz run drift_file fuzz/corpus/drift_file fuzz/seeds/drift_file -- -runs=100000`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_daemon::drift;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match drift::parse(&text, "fuzz.drift") {
        Ok(correction) => {
            assert!(correction.is_finite());
            assert!(correction.abs() <= drift::MAX_DRIFT_PPM / 1e6, "{correction}");
        }
        Err(e) => assert!(e.starts_with("fuzz.drift"), "{e}"),
    }
});
