//! NMEA 0183: whatever the bytes, the reader and the parser must not panic.
//!
//! - The input as one line: a sentence that parses must re-emit (canonical
//!   form, `Sentence::to_line`) and re-parse to the same talker and data, and
//!   its time helpers (`fix`, `wnro_correct`) must not panic.
//! - The input as a serial stream, fed to `NmeaReader` in chunks whose size
//!   comes from the first byte: the lines (and reasons for dropped bytes) must
//!   be the same as feeding it in one piece, each line must start with `$`,
//!   hold only printable ASCII and respect the length limit; each line goes
//!   through the same parse checks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::refclock::nmea::{parse_sentence, wnro_correct, NmeaReader};
use ntplab_proto::time::NtpTime;

fn check_line(line: &[u8]) {
    let Ok(sentence) = parse_sentence(line) else {
        return;
    };
    let emitted = sentence.to_line();
    let again = parse_sentence(emitted.as_bytes()).expect("a canonical line must re-parse");
    assert_eq!(again.talker, sentence.talker);
    assert_eq!(again.data, sentence.data);
    assert_eq!(again.to_line(), emitted, "canonical form must be stable");
    let pivot = NtpTime::new(3_944_678_400, 0); // 2025-01-01
    if let Ok(fix) = sentence.fix(pivot) {
        let corrected = wnro_correct(fix.time, pivot);
        assert!(corrected >= fix.time);
    }
    let _ = (sentence.time_of_day(), sentence.date(pivot), sentence.kind());
}

fuzz_target!(|data: &[u8]| {
    check_line(data);

    let chunk_len = usize::from(data.first().copied().unwrap_or(0) % 32) + 1;
    let mut whole = NmeaReader::new();
    let mut expected = whole.push(data);
    expected.extend(whole.finish().map(Err));
    let mut chunked = NmeaReader::new();
    let mut got = Vec::new();
    for chunk in data.chunks(chunk_len) {
        got.extend(chunked.push(chunk));
    }
    got.extend(chunked.finish().map(Err));
    assert_eq!(got, expected, "chunking must not change the output");
    assert_eq!(chunked.skipped_bytes(), whole.skipped_bytes());
    for line in got.into_iter().flatten() {
        assert_eq!(line.first(), Some(&b'$'));
        assert!(line.len() <= chunked.line_len_max());
        assert!(line.iter().all(|b| (0x20..=0x7e).contains(b)));
        check_line(&line);
    }
});
