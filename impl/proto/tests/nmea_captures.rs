//! Real GPS captures against gpsd's decoding of them.
//!
//! Each `NAME.log` is raw receiver output from gpsd's regression data and
//! `NAME.log.chk` is what gpsd made of it: every NMEA sentence it recognised,
//! echoed, followed by the JSON reports it produced (see
//! `tests/data/nmea/SOURCE.md`). We feed the raw log through [`NmeaReader`]
//! in small chunks (as from a serial port), parse every sentence, and compare:
//!
//! 1. the sentences: every sentence gpsd echoes must come out of our reader,
//!    in order, and parse (gpsd echoes only sentences whose checksum it
//!    accepted);
//! 2. the times: when a sentence that carries a time is immediately followed
//!    by a gpsd `TPV` report with a `time`, that time must equal ours. Ours is
//!    the RMC/ZDA fix time, or for GGA/GLL/GNS the time of day on the last
//!    date an RMC or ZDA gave, as gpsd does it. gpsd reports milliseconds, so
//!    we compare to the millisecond.
//!
//! `full_corpus` checks every capture in `tests/data/nmea/`; `core_captures`
//! checks the trimmed capture in `tests/data/nmea/trimmed/` that the
//! simulator's GPS model replays.

use std::path::{Path, PathBuf};

use ntplab_proto::refclock::nmea::{parse_sentence, Date, NmeaReader, Sentence, SentenceData, Status};
use ntplab_proto::time::NtpTime;

/// Pivot for two-digit years: the captures span 2001–2023.
fn century_pivot() -> NtpTime {
    NtpTime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Agreement {
    /// Sentences our reader produced.
    sentences: usize,
    /// Sentences that parsed.
    parsed: usize,
    /// Lines the reader or parser refused (with the reasons' text).
    refused: Vec<String>,
    /// Sentences gpsd echoed.
    gpsd_sentences: usize,
    /// gpsd's sentences that we did not produce or parse.
    gpsd_sentences_missed: Vec<String>,
    /// Sentences for which we decoded a full time.
    timed: usize,
    /// Of those, followed by a gpsd TPV time: equal / different.
    time_matches: usize,
    time_mismatches: Vec<String>,
    /// The same for sentences the receiver marked invalid (RMC/GLL status V,
    /// GGA quality 0, GNS mode N): gpsd may hold its last good time there.
    invalid_time_matches: usize,
    invalid_time_mismatches: usize,
}

fn ms(t: NtpTime) -> (i64, u32) {
    let (s, ns) = t.to_unix();
    let ms = (ns + 500_000) / 1_000_000;
    if ms == 1000 {
        (s + 1, 0)
    } else {
        (s, ms)
    }
}

/// gpsd's reports after each echoed sentence: (sentence, first TPV time after it).
fn read_chk(chk: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in chk.lines() {
        if line.starts_with('$') {
            out.push((line.trim_end().to_string(), None));
        } else if line.starts_with("{\"class\":\"TPV\"") {
            let Some(last) = out.last_mut() else { continue };
            if last.1.is_some() {
                continue;
            }
            if let Some(at) = line.find("\"time\":\"") {
                let rest = &line[at + 8..];
                if let Some(end) = rest.find('"') {
                    last.1 = Some(rest[..end].to_string());
                }
            }
        }
    }
    out
}

fn compare(log: &[u8], chk: &str) -> Agreement {
    let mut a = Agreement::default();
    // Chunks of 7 bytes: sentences straddle chunk boundaries everywhere.
    let mut reader = NmeaReader::new();
    // Comment lines ('#' at the start of a line) are the corpus's annotations,
    // not receiver output; gpsd's test harness drops them too.
    let log: Vec<u8> = log
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| line.first() != Some(&b'#'))
        .flatten()
        .copied()
        .collect();
    let mut ours: Vec<(String, Option<Sentence>)> = Vec::new();
    for chunk in log.chunks(7) {
        for item in reader.push(chunk) {
            match item {
                Ok(line) => {
                    a.sentences += 1;
                    let text = String::from_utf8_lossy(&line).into_owned();
                    match parse_sentence(&line) {
                        Ok(s) => {
                            a.parsed += 1;
                            ours.push((text, Some(s)));
                        }
                        Err(e) => {
                            a.refused.push(format!("{text}: {e}"));
                            ours.push((text, None));
                        }
                    }
                }
                Err(e) => a.refused.push(e.to_string()),
            }
        }
    }
    if let Some(e) = reader.finish() {
        a.refused.push(e.to_string());
    }

    // Our times, sentence by sentence, tracking the date like gpsd.
    let mut date: Option<Date> = None;
    let mut times: Vec<Option<(NtpTime, bool)>> = Vec::new();
    for (_, s) in &ours {
        let Some(s) = s else {
            times.push(None);
            continue;
        };
        let valid = match &s.data {
            SentenceData::Rmc(_) => s.fix(century_pivot()).is_ok_and(|f| f.valid),
            SentenceData::Zda(_) | SentenceData::Other { .. } => true,
            SentenceData::Gga(g) => g.quality.is_some_and(|q| q > 0),
            SentenceData::Gll(g) => g.status == Some(Status::Valid),
            SentenceData::Gns(g) => !g.mode.starts_with('N'),
        };
        let time = match &s.data {
            SentenceData::Rmc(_) | SentenceData::Zda(_) => {
                if let Some(d) = s.date(century_pivot()) {
                    date = Some(d);
                }
                s.fix(century_pivot()).ok().map(|f| f.time)
            }
            _ => match (date, s.time_of_day()) {
                (Some(d), Some(tod)) => d.at(tod).ok(),
                _ => None,
            },
        };
        a.timed += usize::from(time.is_some());
        times.push(time.map(|t| (t, valid)));
    }

    let gpsd = read_chk(chk);
    a.gpsd_sentences = gpsd.len();
    let mut at = 0;
    for (sentence, tpv_time) in gpsd {
        let Some(found) = ours[at..].iter().position(|(text, s)| *text == sentence && s.is_some()) else {
            a.gpsd_sentences_missed.push(sentence);
            continue;
        };
        at += found;
        if let (Some((ours_time, valid)), Some(gpsd_time)) = (times[at], tpv_time) {
            let gpsd_time = NtpTime::parse_rfc3339(&gpsd_time).unwrap();
            if !valid {
                if ms(ours_time) == ms(gpsd_time) {
                    a.invalid_time_matches += 1;
                } else {
                    a.invalid_time_mismatches += 1;
                }
            } else if ms(ours_time) == ms(gpsd_time) {
                a.time_matches += 1;
            } else {
                a.time_mismatches.push(format!("{sentence}: ours {:?}, gpsd {:?}", ours_time, gpsd_time));
            }
        }
        at += 1;
    }
    a
}

/// What a capture must give.
struct Expected {
    name: &'static str,
    /// Sentences out of the reader.
    sentences: usize,
    /// Of those, parsed.
    parsed: usize,
    /// Valid times compared with gpsd's, all equal.
    time_matches: usize,
    /// Times of sentences marked invalid where gpsd reported an older time.
    invalid_time_mismatches: usize,
}

const fn e(name: &'static str, sentences: usize, parsed: usize, time_matches: usize, invalid_time_mismatches: usize) -> Expected {
    Expected { name, sentences, parsed, time_matches, invalid_time_mismatches }
}

fn check_dir(dir: &Path, expected: &[Expected]) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    assert_eq!(names.len(), expected.len(), "captures in {}: {names:?}", dir.display());
    println!("| capture | sentences | parsed | refused | gpsd sentences found | timed | valid times equal to gpsd | invalid times equal |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, path) in names.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let log = std::fs::read(path).unwrap();
        let chk = std::fs::read_to_string(path.with_extension("log.chk")).unwrap();
        let a = compare(&log, &chk);
        println!(
            "| {name} | {} | {} | {} | {}/{} | {} | {}/{} | {}/{} |",
            a.sentences,
            a.parsed,
            a.refused.len(),
            a.gpsd_sentences - a.gpsd_sentences_missed.len(),
            a.gpsd_sentences,
            a.timed,
            a.time_matches,
            a.time_matches + a.time_mismatches.len(),
            a.invalid_time_matches,
            a.invalid_time_matches + a.invalid_time_mismatches,
        );
        for r in &a.refused {
            println!("    refused: {r}");
        }
        let e = &expected[i];
        assert_eq!(name, e.name);
        assert!(a.gpsd_sentences_missed.is_empty(), "{name}: gpsd decoded sentences we missed: {:?}", a.gpsd_sentences_missed);
        assert!(a.time_mismatches.is_empty(), "{name}: times differ from gpsd: {:#?}", a.time_mismatches);
        assert_eq!(
            (a.sentences, a.parsed, a.time_matches, a.invalid_time_mismatches),
            (e.sentences, e.parsed, e.time_matches, e.invalid_time_mismatches),
            "{name}: (sentences, parsed, valid times equal to gpsd's, invalid times where gpsd held an older one)"
        );
    }
}

#[test]
fn core_captures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nmea/trimmed");
    check_dir(&dir, CORE_EXPECTED);
}

/// The whole corpus, kept in the repository (`tests/data/nmea/SOURCE.md`).
#[test]
fn full_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nmea");
    check_dir(&dir, FULL_EXPECTED);
}

// Per capture: sentences out of the reader, parsed, valid times equal to
// gpsd's (all compared ones must be), invalid-fix times where gpsd held an
// older time. Refusals: firefly-II's 23 GGA carry wrong checksums (an empty
// quality field; gpsd drops them too); garmin48 has one GSV with a one-digit
// checksum; ublox-8's last line is cut short (7 fields). meinberg-gps164
// sends 20 RMC with status V after losing its fix; gpsd keeps reporting its
// last valid time (22:10:14) while we decode the time each sentence names and
// mark it invalid.
const CORE_EXPECTED: &[Expected] = &[e("ublox-8-trimmed.log", 42, 42, 5, 0)];

const FULL_EXPECTED: &[Expected] = &[
    e("bu353-glonass.log", 112, 112, 19, 0),
    e("firefly-II.log", 69, 46, 23, 0),
    e("garmin48.log", 92, 91, 9, 0),
    e("gp-320fw-2019-03-28.log", 137, 137, 29, 0),
    e("haicom-305N.log", 325, 325, 134, 0),
    e("hemi.log", 753, 753, 127, 0),
    e("meinberg-gps164.log", 90, 90, 70, 20),
    e("mt3339.log", 138, 138, 30, 0),
    e("nmea-fuzzy-cases.log", 28, 28, 14, 0),
    e("quectel-L70.log", 115, 115, 17, 0),
    e("sirfstarv-nmea.log", 367, 367, 59, 0),
    e("ublox-8.log", 1009, 1008, 74, 0),
];
