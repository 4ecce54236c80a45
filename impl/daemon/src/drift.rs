//! The drift file (`[clock] drift_file`): the clock's frequency kept across
//! restarts, as ntpd's and chrony's `driftfile`.
//!
//! At start the daemon reads the file and starts its discipline from that
//! frequency (RFC 5905's FSET state) instead of measuring it first. While it
//! runs it writes the frequency correction it has measured back, at most once
//! every [`DRIFT_WRITE_INTERVAL`] and at exit, and only once the discipline has
//! measured it (state SYNC).
//!
//! # Format
//!
//! One line, read in either daemon's format (the sign conventions differ):
//! - **chrony** (`FREQ_PPM SKEW_PPM`, two numbers): FREQ is the rate at which
//!   the clock gains, ppm (positive: the clock runs fast), SKEW the estimate's
//!   error bound (read, checked to be a finite number ≥ 0, not used). The
//!   correction started from is −FREQ.
//! - **ntpd** (one number): the frequency correction, ppm (positive: the clock
//!   is sped up, so it was slow).
//!
//! ntplab writes chrony's format, so chrony reads its files too: FREQ = −the
//! correction, and SKEW = the discipline's frequency uncertainty, both ppm.
//! Values beyond ±(500 ppm + the tick's 10 %) (what a Linux kernel clock can
//! be corrected by: [`MAX_DRIFT_PPM`]) are refused, by one check
//! ([`correction_from_ppm`]) that the parser, the writer and the simulator's
//! `drift` share.
//!
//! # Bad files
//!
//! A missing file (the open fails with `NotFound`: the file, or a directory
//! on its path, does not exist) is a first start: no initial frequency, no
//! message. An
//! unreadable, malformed or out-of-range file is ignored with a warning that
//! names the file, as ntpd and chrony do: the daemon starts as without a drift
//! file (a damaged file should not keep a host from time service), and
//! overwrites the file once it has measured the frequency.
//!
//! The write is atomic: a temporary file in the same directory
//! (`NAME.tmp`), flushed to disk, renamed over the file.

use crate::config::{bounded_text, read_file_bounded, BoundedReadError};
use ntplab_proto::clock::steered::MAX_TICK_RATE;
use ntplab_proto::constants::MAXFREQ;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest frequency a drift file may hold, ppm: the kernel's ±500 ppm
/// frequency plus the tick's ±10 %.
pub const MAX_DRIFT_PPM: f64 = (MAXFREQ + MAX_TICK_RATE) * 1e6;

/// Least time between two writes of the drift file (ntpd's and chrony's hour).
pub const DRIFT_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Largest drift file read, octets (one line of two numbers is under 100).
const DRIFT_BYTES_MAX: u64 = 4096;

/// The range check of every frequency a drift file holds, read or written,
/// and of the simulator's `drift`: a frequency correction of
/// `correction_ppm` ppm (positive: the clock is sped up) can start the
/// discipline if it is a finite number within ±[`MAX_DRIFT_PPM`]. Returns it
/// in s/s; the error says why not and names the frequency as chrony's file
/// holds it (the rate the clock gains, minus the correction), ppm.
pub fn correction_from_ppm(correction_ppm: f64) -> Result<f64, String> {
    if correction_ppm.is_nan() || correction_ppm.is_infinite() {
        return Err(format!("frequency {} ppm is not a finite number", -correction_ppm));
    }
    if correction_ppm.abs() > MAX_DRIFT_PPM {
        return Err(format!("frequency {} ppm is beyond ±{MAX_DRIFT_PPM} ppm (500 ppm plus the tick's 10 %)", -correction_ppm));
    }
    Ok(correction_ppm / 1e6)
}

/// Parses a drift file's text (`origin` names it in errors): the frequency
/// correction to start from, s/s.
pub fn parse(text: &str, origin: &str) -> Result<f64, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((n, line)) = lines.next() else {
        return Err(format!("{origin}: empty (expected one line: \"FREQ_PPM SKEW_PPM\" as chrony's, or one ppm number as ntpd's)"));
    };
    let n = n + 1;
    if let Some((extra, _)) = lines.next() {
        return Err(format!("{origin}:{}: more than one line (expected one: \"FREQ_PPM SKEW_PPM\" or one ppm number)", extra + 1));
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{origin}:{n}: {what} {s:?} is not a finite number"))
    };
    let correction_ppm = match fields.as_slice() {
        [freq, skew] => {
            let freq = number(freq, "frequency")?;
            let skew = number(skew, "skew")?;
            if skew < 0.0 {
                return Err(format!("{origin}:{n}: skew {skew} ppm is negative"));
            }
            -freq
        }
        [correction] => number(correction, "frequency")?,
        _ => {
            return Err(format!(
                "{origin}:{n}: {} fields (expected \"FREQ_PPM SKEW_PPM\" as chrony's, or one ppm number as ntpd's)",
                fields.len()
            ))
        }
    };
    correction_from_ppm(correction_ppm).map_err(|e| format!("{origin}:{n}: {e}"))
}

/// Reads the drift file at `path`: `Ok(None)` when it does not exist (a first
/// start), `Ok(Some(correction))` in s/s, `Err` (naming the file) when it
/// cannot be read or holds no valid frequency. One bounded read: whether
/// the file exists is what opening it says (no separate look that the file
/// could change after).
pub fn read(path: &Path) -> Result<Option<f64>, String> {
    let bytes = match read_file_bounded(path, DRIFT_BYTES_MAX) {
        Err(BoundedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other,
    };
    let text = bounded_text(path, DRIFT_BYTES_MAX, bytes).map_err(|e| format!("drift file {e}"))?;
    parse(&text, &format!("drift file {}", path.display())).map(Some)
}

/// The drift file's text for a frequency `correction` (s/s) known to
/// ±`uncertainty` (s/s): chrony's `FREQ_PPM SKEW_PPM`.
pub fn format(correction: f64, uncertainty: f64) -> String {
    format!("{:.6} {:.6}\n", -correction * 1e6, uncertainty.abs() * 1e6)
}

/// The temporary file [`write`] goes through: `NAME.tmp` next to `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `correction` (s/s, ± `uncertainty`) to the drift file at `path`
/// atomically: to [`temporary_path`], synced, then renamed over `path`.
pub fn write(path: &Path, correction: f64, uncertainty: f64) -> std::io::Result<()> {
    if let Err(e) = correction_from_ppm(correction * 1e6) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("frequency correction {correction} s/s: {e}")));
    }
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(format(correction, if uncertainty.is_finite() { uncertainty } else { 0.0 }).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ntplab-drift-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn chrony_and_ntpd_formats_have_their_own_signs() {
        // chrony's 102-iburst: "100 1.0" for a clock 100 ppm fast.
        assert!((parse("100 1.0\n", "f").unwrap() + 1e-4).abs() < 1e-15);
        // ntpd's: the correction itself.
        assert!((parse("-12.5\n", "f").unwrap() + 12.5e-6).abs() < 1e-15);
        assert!((parse("  \n 3 0.2 \n\n", "f").unwrap() + 3e-6).abs() < 1e-15);
        assert!((parse("-100500 0", "f").unwrap() - 0.1005).abs() < 1e-12);
    }

    #[test]
    fn malformed_and_out_of_range_files_are_named() {
        for (text, says) in [
            ("", "f: empty"),
            ("abc 1", "f:1: frequency \"abc\" is not a finite number"),
            ("1 nan", "f:1: skew \"nan\" is not a finite number"),
            ("1 -1", "f:1: skew -1 ppm is negative"),
            ("1 2 3", "f:1: 3 fields"),
            ("1 0\n2 0", "f:2: more than one line"),
            ("100501 0", "f:1: frequency 100501 ppm is beyond"),
            ("inf", "f:1: frequency \"inf\" is not a finite number"),
        ] {
            let e = parse(text, "f").unwrap_err();
            assert!(e.starts_with(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_missing_file_is_a_first_start_and_a_bad_one_an_error_naming_it() {
        let d = dir("read");
        assert_eq!(read(&d.join("none")).unwrap(), None);
        std::fs::write(d.join("bad"), "x y\n").unwrap();
        let e = read(&d.join("bad")).unwrap_err();
        assert!(e.contains("drift file") && e.contains("bad:1:"), "{e}");
        let e = read(&d).unwrap_err();
        assert!(e.contains("directory"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_range_check_takes_finite_frequencies_up_to_the_kernels_limit() {
        assert_eq!(correction_from_ppm(0.0), Ok(0.0));
        assert_eq!(correction_from_ppm(-12.5), Ok(-12.5e-6));
        assert_eq!(correction_from_ppm(MAX_DRIFT_PPM), Ok(MAX_DRIFT_PPM / 1e6));
        assert_eq!(correction_from_ppm(-MAX_DRIFT_PPM), Ok(-MAX_DRIFT_PPM / 1e6));
        for bad in [MAX_DRIFT_PPM + 1e-6, -MAX_DRIFT_PPM - 1e-6, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let e = correction_from_ppm(bad).unwrap_err();
            let says = if bad.is_finite() { "is beyond ±100500 ppm" } else { "is not a finite number" };
            assert!(e.contains(says), "{bad}: {e}");
        }
        // The frequency named is the clock's gain, as chrony's file holds it.
        assert!(correction_from_ppm(-200_000.0).unwrap_err().starts_with("frequency 200000 ppm"));
        // What the parser refuses for range is what the check refuses.
        assert_eq!(parse("-100500 0", "f"), correction_from_ppm(100_500.0));
        assert_eq!(parse("100500.5", "f").unwrap_err(), format!("f:1: {}", correction_from_ppm(100_500.5).unwrap_err()));
    }

    #[test]
    fn not_found_is_a_first_start_other_failures_are_errors() {
        let d = dir("notfound");
        // No file, no directory it would be in, a symbolic link to nothing: no file yet.
        assert_eq!(read(&d.join("drift")), Ok(None));
        assert_eq!(read(&d.join("no-dir").join("drift")), Ok(None));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("gone"), d.join("dangling")).unwrap();
            assert_eq!(read(&d.join("dangling")), Ok(None));
        }
        // A file where a directory should be is not "not found": reported, naming the path.
        std::fs::write(d.join("file"), "1 0\n").unwrap();
        let e = read(&d.join("file").join("drift")).unwrap_err();
        assert!(e.starts_with("drift file cannot read ") && e.contains("file/drift"), "{e}");
        // Too large, and not UTF-8: reported as before.
        std::fs::write(d.join("big"), vec![b' '; 5000]).unwrap();
        let e = read(&d.join("big")).unwrap_err();
        assert!(e.contains("5000 bytes is larger than the limit of 4096 bytes"), "{e}");
        std::fs::write(d.join("latin1"), b"1\xe9 0\n").unwrap();
        let e = read(&d.join("latin1")).unwrap_err();
        assert!(e.contains("latin1:1:2: not UTF-8 text"), "{e}");
        // Once written, it is read.
        write(&d.join("drift"), 2e-6, 0.0).unwrap();
        assert!((read(&d.join("drift")).unwrap().unwrap() - 2e-6).abs() < 1e-15);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_replaces_the_file_atomically_and_reads_back() {
        let d = dir("write");
        let path = d.join("drift");
        std::fs::write(&path, "old contents").unwrap();
        write(&path, -1.234_567e-4, 2e-8).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "123.456700 0.020000\n");
        assert!(!temporary_path(&path).exists(), "the temporary file is renamed away");
        assert!((read(&path).unwrap().unwrap() + 1.234_567e-4).abs() < 1e-12);
        // A write that cannot happen leaves the old file whole.
        assert!(write(&path, f64::NAN, 0.0).is_err());
        assert!(write(&d.join("no-dir").join("drift"), 1e-6, 0.0).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "123.456700 0.020000\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
