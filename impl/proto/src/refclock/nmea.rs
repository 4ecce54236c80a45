//! NMEA 0183 for time: a streaming line splitter and a parser for the
//! sentences a reference clock needs.
//!
//! # Reading
//!
//! [`NmeaReader`] takes bytes in whatever chunks the serial port delivers and
//! returns complete sentences (`$` up to, not including, the line end). It
//! accepts CR LF, LF, CR and LF CR line ends, skips anything before a `$`
//! (binary protocols mixed into the stream, comment lines, noise), drops a
//! sentence in which a control or non-ASCII byte appears, and refuses lines
//! longer than its limit without buffering them: its memory is bounded by the
//! limit (default [`LINE_LEN_MAX_DEFAULT`] = 120 bytes, more lenient than the
//! standard's 82 including `$` and CR LF, as real receivers exceed it).
//!
//! # Parsing
//!
//! [`parse_sentence`] decodes one line. The checksum (`*hh`, XOR of the bytes
//! between `$` and `*`) is verified when present; a sentence without one is
//! accepted and marked [`Checksum::Missing`]. Talker IDs (`GP`, `GN`, `GL`,
//! `GA`, `BD`, `GB`, …) are kept as they come. Of the sentence types only the
//! time-relevant fields are decoded:
//!
//! | sentence | fields kept |
//! | --- | --- |
//! | RMC | UTC time of day, status (A/V), date (ddmmyy), FAA mode, navigational status |
//! | GGA | UTC time of day, fix quality, satellites in use |
//! | ZDA | UTC time of day, day, month, four-digit year, local zone |
//! | GLL | UTC time of day, status, FAA mode |
//! | GNS | UTC time of day, mode indicators, satellites in use, navigational status |
//!
//! Every other sentence, proprietary ones (`$P…`) included, is kept as
//! [`SentenceData::Other`] with its talker and type. Errors are all the
//! sender's fault and say where ([`Error`]); no input makes the parser panic.
//!
//! # From sentences to time
//!
//! [`Sentence::fix`] builds a [`Fix`] from an RMC (time + two-digit-year date)
//! or a ZDA (time + four-digit year). GGA, GLL and GNS carry only the time of
//! day: combine it with the last date seen through [`Date::at`], as gpsd does.
//!
//! Two-digit years are resolved against a pivot like NTP eras: the year is the
//! one within 50 years of the pivot's ([`resolve_two_digit_year`]).
//!
//! GPS broadcasts a 10-bit week number that wraps every 1024 weeks (about 19.6
//! years; last on 2019-04-06). Receivers whose firmware resolves it against an
//! old base date report dates exactly 1024 weeks in the past after a rollover
//! ("WNRO fault"). [`wnro_suspect`] flags a time more than ten years before a
//! pivot (a date known to be in the past, such as the software's build date or
//! the last good time) and [`wnro_correct`] adds 1024 weeks until it is not.
//! gpsd (its build-date based century and week checks) and ntpsec's NMEA
//! driver (GPS week unfolding against a base date) do the same.
//!
//! What this module does not do: open ports, read clocks or judge the time
//! against other sources.

use core::fmt;

use crate::time::{Civil, NtpDuration, NtpTime};

/// The standard's maximum sentence length, `$` and CR LF included (NMEA 0183 §5.3).
pub const SENTENCE_LEN_MAX_STANDARD: usize = 82;

/// [`NmeaReader`]'s default limit on a line, `$` included, line end excluded.
pub const LINE_LEN_MAX_DEFAULT: usize = 120;

/// The GPS week-number rollover period: 1024 weeks (619 315 200 s, about 19.6 years).
pub const WNRO_PERIOD: NtpDuration = NtpDuration::from_seconds(1024 * 7 * 86_400);

/// How far before the pivot a time must lie for [`wnro_suspect`]: ten years (3653 days).
pub const WNRO_SUSPECT_AGE: NtpDuration = NtpDuration::from_seconds(3653 * 86_400);

// ---------------------------------------------------------------------------
// Streaming reader

/// Why the reader dropped bytes. None of these stop the reader: it goes on
/// with the next sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReaderError {
    /// A line grew beyond the limit; it was dropped up to the next `$` or line end.
    TooLong {
        /// The limit in force, `$` included.
        line_len_max: usize,
    },
    /// A control or non-ASCII byte appeared inside a sentence (binary data on
    /// the line): the partial sentence was dropped.
    BinaryByte {
        /// The offending byte.
        byte: u8,
        /// Bytes of the sentence read before it.
        partial_len: usize,
    },
    /// A `$` started a new sentence before the previous one ended: the
    /// previous one was dropped.
    Interrupted {
        /// Bytes of the dropped sentence.
        partial_len: usize,
    },
    /// At [`NmeaReader::finish`]: the stream ended inside a sentence.
    Unterminated {
        /// Bytes of the dropped sentence.
        partial_len: usize,
    },
}

impl fmt::Display for ReaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReaderError::TooLong { line_len_max } => write!(f, "NMEA line longer than {line_len_max} bytes dropped"),
            ReaderError::BinaryByte { byte, partial_len } => {
                write!(f, "byte 0x{byte:02x} inside an NMEA sentence after {partial_len} bytes: sentence dropped")
            }
            ReaderError::Interrupted { partial_len } => {
                write!(f, "NMEA sentence interrupted by '$' after {partial_len} bytes: dropped")
            }
            ReaderError::Unterminated { partial_len } => {
                write!(f, "stream ended inside an NMEA sentence after {partial_len} bytes")
            }
        }
    }
}

impl std::error::Error for ReaderError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReaderState {
    /// Skipping to the next `$`.
    Hunting,
    /// Inside a sentence.
    InLine,
    /// Inside a line that exceeded the limit: skipping to its end or the next `$`.
    Overlong,
}

/// Splits a serial byte stream into NMEA sentences; see the [module docs](self).
///
/// Call [`push`](Self::push) with every chunk as it arrives; at the end of the
/// stream, [`finish`](Self::finish) reports a sentence left unterminated.
/// Memory is bounded by the line limit whatever the input.
#[derive(Clone, Debug)]
pub struct NmeaReader {
    line: Vec<u8>,
    state: ReaderState,
    line_len_max: usize,
    skipped_bytes: u64,
}

impl Default for NmeaReader {
    fn default() -> Self {
        Self::new()
    }
}

impl NmeaReader {
    /// A reader with the default line limit ([`LINE_LEN_MAX_DEFAULT`]).
    pub fn new() -> Self {
        Self::with_line_len_max(LINE_LEN_MAX_DEFAULT)
    }

    /// A reader refusing lines longer than `line_len_max` bytes (`$` included,
    /// line end excluded), clamped to `8..=4096`.
    pub fn with_line_len_max(line_len_max: usize) -> Self {
        let line_len_max = line_len_max.clamp(8, 4096);
        NmeaReader { line: Vec::with_capacity(line_len_max), state: ReaderState::Hunting, line_len_max, skipped_bytes: 0 }
    }

    /// The line limit in force.
    pub fn line_len_max(&self) -> usize {
        self.line_len_max
    }

    /// Bytes skipped so far outside sentences (line ends and spaces not counted)
    /// or dropped with a broken sentence.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    /// Feeds one chunk; returns the sentences it completed (each starting with
    /// `$`, line end removed) and the reasons for any bytes dropped, in stream
    /// order. A sentence split across chunks comes out with the chunk that ends it.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<Vec<u8>, ReaderError>> {
        let mut out = Vec::new();
        for &b in chunk {
            self.byte(b, &mut out);
        }
        out
    }

    /// Ends the stream: reports a sentence still open (and forgets it).
    pub fn finish(&mut self) -> Option<ReaderError> {
        let open = self.state == ReaderState::InLine;
        let partial_len = self.line.len();
        self.line.clear();
        self.state = ReaderState::Hunting;
        if open {
            self.skipped_bytes += partial_len as u64;
            Some(ReaderError::Unterminated { partial_len })
        } else {
            None
        }
    }

    fn start(&mut self) {
        self.line.clear();
        self.line.push(b'$');
        self.state = ReaderState::InLine;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Result<Vec<u8>, ReaderError>>) {
        let line_end = b == b'\r' || b == b'\n';
        match self.state {
            ReaderState::Hunting => {
                if b == b'$' {
                    self.start();
                } else if !line_end && b != b' ' {
                    self.skipped_bytes += 1;
                }
            }
            ReaderState::Overlong => {
                if b == b'$' {
                    self.start();
                } else if line_end {
                    self.state = ReaderState::Hunting;
                } else {
                    self.skipped_bytes += 1;
                }
            }
            ReaderState::InLine => {
                if line_end {
                    out.push(Ok(core::mem::take(&mut self.line)));
                    self.line.reserve(self.line_len_max);
                    self.state = ReaderState::Hunting;
                } else if b == b'$' {
                    self.skipped_bytes += self.line.len() as u64;
                    out.push(Err(ReaderError::Interrupted { partial_len: self.line.len() }));
                    self.start();
                } else if !(0x20..=0x7e).contains(&b) {
                    self.skipped_bytes += self.line.len() as u64 + 1;
                    out.push(Err(ReaderError::BinaryByte { byte: b, partial_len: self.line.len() }));
                    self.line.clear();
                    self.state = ReaderState::Hunting;
                } else if self.line.len() >= self.line_len_max {
                    self.skipped_bytes += self.line.len() as u64 + 1;
                    out.push(Err(ReaderError::TooLong { line_len_max: self.line_len_max }));
                    self.line.clear();
                    self.state = ReaderState::Overlong;
                } else {
                    self.line.push(b);
                }
            }
        }
        debug_assert!(self.line.len() <= self.line_len_max);
    }
}

// ---------------------------------------------------------------------------
// Sentence types

/// Who sent a sentence: the two-character talker ID, or a proprietary sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Talker {
    /// A standard talker ID such as `GP` (GPS), `GN` (multi-GNSS), `GL`
    /// (GLONASS), `GA` (Galileo), `BD`/`GB` (BeiDou), `GQ` (QZSS); kept as sent
    /// (uppercase ASCII letters or digits).
    Id([u8; 2]),
    /// A proprietary sentence (`$P` followed by a manufacturer code and type).
    Proprietary,
}

impl Talker {
    /// GPS.
    pub const GP: Talker = Talker::Id(*b"GP");
    /// Any combination of GNSS.
    pub const GN: Talker = Talker::Id(*b"GN");

    /// The talker as text: `"GP"`, or `"P"` for proprietary sentences.
    pub fn as_str(&self) -> &str {
        match self {
            Talker::Id(id) => core::str::from_utf8(id).unwrap_or("??"),
            Talker::Proprietary => "P",
        }
    }
}

impl fmt::Display for Talker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a sentence carried a checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// It did, and it matched (the value).
    Verified(u8),
    /// It did not (allowed by the standard for some sentences, and sent by some
    /// old receivers); the content is unprotected.
    Missing,
}

/// A UTC time of day as NMEA sends it (`hhmmss` or `hhmmss.sss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–60 (60 during an inserted leap second).
    pub second: u8,
    /// Fraction of the second, 0–999 999 999 ns (digits beyond nine dropped).
    pub nanosecond: u32,
}

impl TimeOfDay {
    /// The time of day as seconds since midnight (leap second 60 included as 60).
    pub fn seconds_of_day(&self) -> u32 {
        u32::from(self.hour) * 3600 + u32::from(self.minute) * 60 + u32::from(self.second)
    }
}

/// A date as RMC sends it: day, month, and the year's last two digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShortDate {
    /// 1–31.
    pub day: u8,
    /// 1–12.
    pub month: u8,
    /// 0–99.
    pub year_two_digit: u8,
}

/// A calendar date with a full year (UTC, proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    /// The year.
    pub year: i64,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
}

impl Date {
    /// The instant of `time` on this date.
    ///
    /// Fails for a date that does not exist (e.g. 31 April) and for a leap
    /// second (second 60), which the NTP timescale cannot name.
    pub fn at(&self, time: TimeOfDay) -> Result<NtpTime, FixError> {
        if time.second == 60 {
            return Err(FixError::LeapSecond);
        }
        let civil = Civil {
            year: self.year,
            month: self.month,
            day: self.day,
            hour: time.hour,
            minute: time.minute,
            second: time.second,
            nanosecond: time.nanosecond,
        };
        NtpTime::from_civil(&civil).ok_or(FixError::InvalidDate)
    }

    /// The date of an instant.
    pub fn of(time: NtpTime) -> Date {
        let c = time.to_civil();
        Date { year: c.year, month: c.month, day: c.day }
    }
}

/// RMC/GLL status field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `A`: data valid.
    Valid,
    /// `V`: navigation receiver warning (no valid fix).
    Warning,
}

/// RMC: recommended minimum specific GNSS data (time-relevant fields).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rmc {
    /// Field 1: UTC time of the position fix.
    pub time: Option<TimeOfDay>,
    /// Field 2: status.
    pub status: Option<Status>,
    /// Field 9: date (two-digit year).
    pub date: Option<ShortDate>,
    /// Field 12 (NMEA 2.3+): FAA mode indicator (`A`, `D`, `E`, `F`, `M`, `N`, `P`, `R`, `S`); `N` means not valid.
    pub mode: Option<u8>,
    /// Field 13 (NMEA 4.1+): navigational status (`S`, `C`, `U`, `V`).
    pub nav_status: Option<u8>,
}

/// GGA: fix data (time-relevant fields).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Gga {
    /// Field 1: UTC time of the position.
    pub time: Option<TimeOfDay>,
    /// Field 6: fix quality, 0 (invalid) to 9; 1 GPS, 2 DGPS, 4 RTK fixed, 6 estimated.
    pub quality: Option<u8>,
    /// Field 7: satellites in use.
    pub satellites: Option<u8>,
}

/// ZDA: time and date.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Zda {
    /// Field 1: UTC time of day.
    pub time: Option<TimeOfDay>,
    /// Field 2: day, 1–31.
    pub day: Option<u8>,
    /// Field 3: month, 1–12.
    pub month: Option<u8>,
    /// Field 4: four-digit year.
    pub year: Option<u16>,
    /// Field 5: local zone hours, −23 to 23.
    pub zone_hours: Option<i8>,
    /// Field 6: local zone minutes, 0–59.
    pub zone_minutes: Option<u8>,
}

/// GLL: geographic position (time-relevant fields).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Gll {
    /// Field 5: UTC time of the position.
    pub time: Option<TimeOfDay>,
    /// Field 6: status.
    pub status: Option<Status>,
    /// Field 7 (NMEA 2.3+): FAA mode indicator.
    pub mode: Option<u8>,
}

/// GNS: GNSS fix data (time-relevant fields).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Gns {
    /// Field 1: UTC time of the position.
    pub time: Option<TimeOfDay>,
    /// Field 6: mode indicators, one uppercase letter per constellation (`N` = no fix).
    pub mode: String,
    /// Field 7: satellites in use.
    pub satellites: Option<u8>,
    /// Field 13 (NMEA 4.1+): navigational status.
    pub nav_status: Option<u8>,
}

/// The decoded content of a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentenceData {
    /// RMC.
    Rmc(Rmc),
    /// GGA.
    Gga(Gga),
    /// ZDA.
    Zda(Zda),
    /// GLL.
    Gll(Gll),
    /// GNS.
    Gns(Gns),
    /// Any other sentence: its type (`GSV`, `VTG`, …; for proprietary sentences
    /// the manufacturer code and type, e.g. `GRME`, `MTK705`). Fields are not kept.
    Other {
        /// The sentence type, uppercase ASCII letters and digits.
        kind: String,
    },
}

/// One parsed NMEA sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    /// The talker.
    pub talker: Talker,
    /// The decoded fields.
    pub data: SentenceData,
    /// Whether a checksum protected it.
    pub checksum: Checksum,
}

/// Why a line is not a valid sentence. All variants blame the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not a sentence at all: no leading `$`, a control byte, a malformed
    /// address or checksum suffix.
    Framing {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The stated checksum does not match the content.
    Checksum {
        /// The checksum after `*`.
        stated: u8,
        /// The XOR of the bytes between `$` and `*`.
        computed: u8,
    },
    /// A known sentence has fewer fields than its time fields need.
    TooFewFields {
        /// The sentence type.
        kind: &'static str,
        /// Fields present after the address.
        count: usize,
        /// Fields needed.
        needed: usize,
    },
    /// A field of a known sentence holds a value the standard forbids.
    Field {
        /// The sentence type.
        kind: &'static str,
        /// The field number, 1 for the first field after the address.
        index: usize,
        /// What is wrong, in a few words.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Framing { reason } => write!(f, "not an NMEA sentence: {reason}"),
            Error::Checksum { stated, computed } => {
                write!(f, "NMEA checksum mismatch: sentence says {stated:02X}, content gives {computed:02X}")
            }
            Error::TooFewFields { kind, count, needed } => {
                write!(f, "{kind}: {count} fields, at least {needed} needed")
            }
            Error::Field { kind, index, reason } => write!(f, "{kind} field {index}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a sentence gave no time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FixError {
    /// The sentence is not an RMC or ZDA.
    NotATimeSentence,
    /// The time field is empty (receivers without a fix often send them so).
    NoTime,
    /// The date field(s) are empty.
    NoDate,
    /// The date does not exist in the calendar (e.g. 30 February).
    InvalidDate,
    /// The time is the leap second 23:59:60, which the NTP timescale cannot name.
    LeapSecond,
}

impl fmt::Display for FixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FixError::NotATimeSentence => "not a sentence with time and date (RMC or ZDA)",
            FixError::NoTime => "empty time field",
            FixError::NoDate => "empty date field",
            FixError::InvalidDate => "date does not exist",
            FixError::LeapSecond => "leap second 60 cannot be represented",
        })
    }
}

impl std::error::Error for FixError {}

/// Whether the receiver called its time valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FixStatus {
    /// RMC status `A` (and FAA mode other than `N`).
    Valid,
    /// RMC status `V`, or FAA mode `N`.
    Invalid,
    /// The sentence has no status (ZDA, or an RMC with an empty status field):
    /// judge it by the RMC/GGA of the same cycle.
    NotReported,
}

/// A time from one sentence: the UTC instant the sentence names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fix {
    /// The UTC time the sentence names (for RMC the time of the position fix,
    /// which receivers align with the second their PPS marks).
    pub time: NtpTime,
    /// The receiver said the fix is valid ([`FixStatus::Valid`]).
    pub valid: bool,
    /// The validity as reported.
    pub status: FixStatus,
    /// Who sent it.
    pub talker: Talker,
}

// ---------------------------------------------------------------------------
// Time helpers

/// The year ending in `year_two_digit` that lies in the 100-year window
/// `[pivot year − 50, pivot year + 50)`.
///
/// With a pivot in 2025, `99` is 1999 and `74` is 2074.
pub fn resolve_two_digit_year(year_two_digit: u8, pivot: NtpTime) -> i64 {
    let base = pivot.to_civil().year - 50;
    base + (i64::from(year_two_digit) - base).rem_euclid(100)
}

/// Whether `time` looks like a week-number-rollover fault: more than
/// [`WNRO_SUSPECT_AGE`] (ten years) before `pivot`, a date known to be in the
/// past (build date, last good time).
pub fn wnro_suspect(time: NtpTime, pivot: NtpTime) -> bool {
    time < pivot + (-WNRO_SUSPECT_AGE)
}

/// Undoes a week-number-rollover fault: adds 1024 weeks ([`WNRO_PERIOD`])
/// until `time` is no longer [`wnro_suspect`] (at most 16 times, enough for
/// three centuries). A time that is not suspect comes back unchanged.
pub fn wnro_correct(time: NtpTime, pivot: NtpTime) -> NtpTime {
    let mut t = time;
    for _ in 0..16 {
        if !wnro_suspect(t, pivot) {
            break;
        }
        t = t + WNRO_PERIOD;
    }
    t
}

// ---------------------------------------------------------------------------
// Parsing

/// The NMEA checksum: XOR of all bytes (those between `$` and `*`).
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0, |acc, b| acc ^ b)
}

/// Frames a sentence body (`GPRMC,...`, without `$`): `$`, the body, `*`, the
/// checksum in two uppercase hex digits, CR LF.
pub fn frame(body: &str) -> String {
    format!("${body}*{:02X}\r\n", checksum(body.as_bytes()))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Parses one sentence (from `$` to the checksum; a trailing CR/LF is ignored).
pub fn parse_sentence(line: &[u8]) -> Result<Sentence, Error> {
    let framing = |reason| Error::Framing { reason };
    let mut line = line;
    while let [rest @ .., b'\r' | b'\n'] = line {
        line = rest;
    }
    let Some((&b'$', rest)) = line.split_first() else {
        return Err(framing("does not start with '$'"));
    };
    if rest.iter().any(|b| !(0x20..=0x7e).contains(b)) {
        return Err(framing("control or non-ASCII byte"));
    }
    let (body, checksum_state) = match rest.iter().position(|&b| b == b'*') {
        None => (rest, Checksum::Missing),
        Some(star) => {
            let (body, suffix) = (&rest[..star], &rest[star + 1..]);
            let stated = match suffix {
                [h, l] => match (hex_digit(*h), hex_digit(*l)) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Err(framing("'*' not followed by two hex digits")),
                },
                _ => return Err(framing("'*' not followed by exactly two hex digits")),
            };
            let computed = checksum(body);
            if stated != computed {
                return Err(Error::Checksum { stated, computed });
            }
            (body, Checksum::Verified(stated))
        }
    };
    if body.contains(&b'$') {
        return Err(framing("'$' inside the sentence"));
    }
    let mut fields = body.split(|&b| b == b',');
    let address = fields.next().unwrap_or_default();
    let fields: Vec<&[u8]> = fields.collect();
    if address.is_empty() || !address.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(framing("address is not uppercase letters and digits"));
    }
    let (talker, kind) = if address[0] == b'P' {
        if address.len() < 2 || address.len() > 10 {
            return Err(framing("proprietary address must have 2 to 10 characters"));
        }
        (Talker::Proprietary, &address[1..])
    } else {
        if address.len() != 5 {
            return Err(framing("address must be a 2-character talker and a 3-character type"));
        }
        (Talker::Id([address[0], address[1]]), &address[2..])
    };
    let data = match (talker, kind) {
        (Talker::Proprietary, _) => other(kind),
        (_, b"RMC") => SentenceData::Rmc(parse_rmc(&fields)?),
        (_, b"GGA") => SentenceData::Gga(parse_gga(&fields)?),
        (_, b"ZDA") => SentenceData::Zda(parse_zda(&fields)?),
        (_, b"GLL") => SentenceData::Gll(parse_gll(&fields)?),
        (_, b"GNS") => SentenceData::Gns(parse_gns(&fields)?),
        _ => other(kind),
    };
    Ok(Sentence { talker, data, checksum: checksum_state })
}

fn other(kind: &[u8]) -> SentenceData {
    // The address was checked to be ASCII.
    SentenceData::Other { kind: kind.iter().map(|&b| char::from(b)).collect() }
}

/// Field accessor for one sentence type: 1-based indices, absent = empty.
struct Fields<'a, 'b> {
    kind: &'static str,
    fields: &'b [&'a [u8]],
}

impl<'a> Fields<'a, '_> {
    fn new<'b>(kind: &'static str, fields: &'b [&'a [u8]], needed: usize) -> Result<Fields<'a, 'b>, Error> {
        if fields.len() < needed {
            return Err(Error::TooFewFields { kind, count: fields.len(), needed });
        }
        Ok(Fields { kind, fields })
    }

    fn get(&self, index: usize) -> &'a [u8] {
        self.fields.get(index.wrapping_sub(1)).copied().unwrap_or_default()
    }

    fn err(&self, index: usize, reason: &'static str) -> Error {
        Error::Field { kind: self.kind, index, reason }
    }

    fn time(&self, index: usize) -> Result<Option<TimeOfDay>, Error> {
        let f = self.get(index);
        if f.is_empty() {
            return Ok(None);
        }
        let (whole, frac) = match f.iter().position(|&b| b == b'.') {
            Some(dot) => (&f[..dot], Some(&f[dot + 1..])),
            None => (f, None),
        };
        let bad = || self.err(index, "time is not hhmmss[.sss]");
        if whole.len() != 6 || !whole.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let two = |i: usize| (whole[i] - b'0') * 10 + (whole[i + 1] - b'0');
        let (hour, minute, second) = (two(0), two(2), two(4));
        if hour > 23 || minute > 59 || second > 60 {
            return Err(self.err(index, "time of day out of range"));
        }
        let mut nanosecond = 0u32;
        if let Some(frac) = frac {
            if !frac.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let mut scale = 100_000_000u32;
            for &d in frac.iter().take(9) {
                nanosecond += u32::from(d - b'0') * scale;
                scale /= 10;
            }
        }
        Ok(Some(TimeOfDay { hour, minute, second, nanosecond }))
    }

    fn status(&self, index: usize) -> Result<Option<Status>, Error> {
        match self.get(index) {
            b"" => Ok(None),
            b"A" => Ok(Some(Status::Valid)),
            b"V" => Ok(Some(Status::Warning)),
            _ => Err(self.err(index, "status is not A or V")),
        }
    }

    fn letter(&self, index: usize) -> Result<Option<u8>, Error> {
        match self.get(index) {
            b"" => Ok(None),
            [c] if c.is_ascii_uppercase() => Ok(Some(*c)),
            _ => Err(self.err(index, "not a single uppercase letter")),
        }
    }

    /// An unsigned decimal of `digits_min..=digits_max` digits within `range`.
    fn number(&self, index: usize, digits: (usize, usize), max: u32) -> Result<Option<u32>, Error> {
        let f = self.get(index);
        if f.is_empty() {
            return Ok(None);
        }
        if f.len() < digits.0 || f.len() > digits.1 || !f.iter().all(u8::is_ascii_digit) {
            return Err(self.err(index, "not a number of the expected number of digits"));
        }
        let v = f.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
        if v > max {
            return Err(self.err(index, "number out of range"));
        }
        Ok(Some(v))
    }

    fn satellites(&self, index: usize) -> Result<Option<u8>, Error> {
        Ok(self.number(index, (1, 3), 255)?.map(|v| v as u8))
    }

    fn date(&self, index: usize) -> Result<Option<ShortDate>, Error> {
        let f = self.get(index);
        if f.is_empty() {
            return Ok(None);
        }
        if f.len() != 6 || !f.iter().all(u8::is_ascii_digit) {
            return Err(self.err(index, "date is not ddmmyy"));
        }
        let two = |i: usize| (f[i] - b'0') * 10 + (f[i + 1] - b'0');
        let (day, month, year_two_digit) = (two(0), two(2), two(4));
        if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
            return Err(self.err(index, "day or month out of range"));
        }
        Ok(Some(ShortDate { day, month, year_two_digit }))
    }
}

fn parse_rmc(fields: &[&[u8]]) -> Result<Rmc, Error> {
    let f = Fields::new("RMC", fields, 9)?;
    Ok(Rmc { time: f.time(1)?, status: f.status(2)?, date: f.date(9)?, mode: f.letter(12)?, nav_status: f.letter(13)? })
}

fn parse_gga(fields: &[&[u8]]) -> Result<Gga, Error> {
    let f = Fields::new("GGA", fields, 6)?;
    Ok(Gga {
        time: f.time(1)?,
        quality: f.number(6, (1, 1), 9)?.map(|v| v as u8),
        satellites: f.satellites(7)?,
    })
}

fn parse_zda(fields: &[&[u8]]) -> Result<Zda, Error> {
    let f = Fields::new("ZDA", fields, 4)?;
    let day = f.number(2, (1, 2), 31)?.map(|v| v as u8);
    if day == Some(0) {
        return Err(f.err(2, "day 0"));
    }
    let month = f.number(3, (1, 2), 12)?.map(|v| v as u8);
    if month == Some(0) {
        return Err(f.err(3, "month 0"));
    }
    let year = f.number(4, (4, 4), 9999)?.map(|v| v as u16);
    let zone_hours = match f.get(5) {
        b"" => None,
        z => {
            let (sign, digits) = match z {
                [b'-', rest @ ..] => (-1i8, rest),
                [b'+', rest @ ..] => (1, rest),
                _ => (1, z),
            };
            if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(f.err(5, "zone hours are not [+-]hh"));
            }
            let v = digits.iter().fold(0i8, |acc, &d| acc * 10 + (d - b'0') as i8);
            if v > 23 {
                return Err(f.err(5, "zone hours beyond 23"));
            }
            Some(sign * v)
        }
    };
    let zone_minutes = f.number(6, (1, 2), 59)?.map(|v| v as u8);
    Ok(Zda { time: f.time(1)?, day, month, year, zone_hours, zone_minutes })
}

fn parse_gll(fields: &[&[u8]]) -> Result<Gll, Error> {
    let f = Fields::new("GLL", fields, 4)?;
    Ok(Gll { time: f.time(5)?, status: f.status(6)?, mode: f.letter(7)? })
}

fn parse_gns(fields: &[&[u8]]) -> Result<Gns, Error> {
    let f = Fields::new("GNS", fields, 6)?;
    let mode = f.get(6);
    if mode.len() > 8 || !mode.iter().all(u8::is_ascii_uppercase) {
        return Err(f.err(6, "mode is not up to 8 uppercase letters"));
    }
    Ok(Gns {
        time: f.time(1)?,
        mode: mode.iter().map(|&b| char::from(b)).collect(),
        satellites: f.satellites(7)?,
        nav_status: f.letter(13)?,
    })
}

// ---------------------------------------------------------------------------
// Sentence accessors and emitting

impl Sentence {
    /// The sentence type: `RMC`, `GGA`, … or the [`SentenceData::Other`] kind.
    pub fn kind(&self) -> &str {
        match &self.data {
            SentenceData::Rmc(_) => "RMC",
            SentenceData::Gga(_) => "GGA",
            SentenceData::Zda(_) => "ZDA",
            SentenceData::Gll(_) => "GLL",
            SentenceData::Gns(_) => "GNS",
            SentenceData::Other { kind } => kind,
        }
    }

    /// The UTC time of day the sentence carries, if any.
    pub fn time_of_day(&self) -> Option<TimeOfDay> {
        match &self.data {
            SentenceData::Rmc(s) => s.time,
            SentenceData::Gga(s) => s.time,
            SentenceData::Zda(s) => s.time,
            SentenceData::Gll(s) => s.time,
            SentenceData::Gns(s) => s.time,
            SentenceData::Other { .. } => None,
        }
    }

    /// The date the sentence carries (RMC, two-digit year resolved against
    /// `century_pivot`; ZDA), if complete.
    pub fn date(&self, century_pivot: NtpTime) -> Option<Date> {
        match &self.data {
            SentenceData::Rmc(Rmc { date: Some(d), .. }) => {
                Some(Date { year: resolve_two_digit_year(d.year_two_digit, century_pivot), month: d.month, day: d.day })
            }
            SentenceData::Zda(Zda { day: Some(day), month: Some(month), year: Some(year), .. }) => {
                Some(Date { year: i64::from(*year), month: *month, day: *day })
            }
            _ => None,
        }
    }

    /// The time an RMC or ZDA names. Two-digit RMC years are resolved against
    /// `century_pivot` ([`resolve_two_digit_year`]); no WNRO correction is
    /// applied (see [`wnro_correct`]).
    pub fn fix(&self, century_pivot: NtpTime) -> Result<Fix, FixError> {
        let status = match &self.data {
            SentenceData::Rmc(rmc) => match (rmc.status, rmc.mode) {
                (_, Some(b'N')) | (Some(Status::Warning), _) => FixStatus::Invalid,
                (Some(Status::Valid), _) => FixStatus::Valid,
                (None, _) => FixStatus::NotReported,
            },
            SentenceData::Zda(_) => FixStatus::NotReported,
            _ => return Err(FixError::NotATimeSentence),
        };
        let time = self.time_of_day().ok_or(FixError::NoTime)?;
        let date = self.date(century_pivot).ok_or(FixError::NoDate)?;
        let time = date.at(time)?;
        Ok(Fix { time, valid: status == FixStatus::Valid, status, talker: self.talker })
    }

    /// The sentence in canonical form, framed with a checksum and CR LF.
    ///
    /// Only the kept fields are written (position fields are left empty), so
    /// this is not the line that was parsed, but parsing it gives back the
    /// same talker and data.
    pub fn to_line(&self) -> String {
        let mut body = String::from(match self.talker {
            Talker::Proprietary => "P",
            Talker::Id(_) => self.talker.as_str(),
        });
        body.push_str(self.kind());
        let mut fields: Vec<String> = Vec::new();
        match &self.data {
            SentenceData::Rmc(s) => {
                fields.push(fmt_time(s.time));
                fields.push(fmt_status(s.status));
                fields.extend(core::iter::repeat_n(String::new(), 6));
                fields.push(s.date.map(|d| format!("{:02}{:02}{:02}", d.day, d.month, d.year_two_digit)).unwrap_or_default());
                if s.mode.is_some() || s.nav_status.is_some() {
                    fields.extend([String::new(), String::new(), fmt_letter(s.mode)]);
                }
                if s.nav_status.is_some() {
                    fields.push(fmt_letter(s.nav_status));
                }
            }
            SentenceData::Gga(s) => {
                fields.push(fmt_time(s.time));
                fields.extend(core::iter::repeat_n(String::new(), 4));
                fields.push(fmt_num(s.quality.map(u32::from)));
                fields.push(fmt_num(s.satellites.map(u32::from)));
            }
            SentenceData::Zda(s) => {
                fields.push(fmt_time(s.time));
                fields.push(s.day.map(|v| format!("{v:02}")).unwrap_or_default());
                fields.push(s.month.map(|v| format!("{v:02}")).unwrap_or_default());
                fields.push(s.year.map(|v| format!("{v:04}")).unwrap_or_default());
                if s.zone_hours.is_some() || s.zone_minutes.is_some() {
                    fields.push(s.zone_hours.map(|v| format!("{v:+03}")).unwrap_or_default());
                    fields.push(s.zone_minutes.map(|v| format!("{v:02}")).unwrap_or_default());
                }
            }
            SentenceData::Gll(s) => {
                fields.extend(core::iter::repeat_n(String::new(), 4));
                fields.push(fmt_time(s.time));
                fields.push(fmt_status(s.status));
                if s.mode.is_some() {
                    fields.push(fmt_letter(s.mode));
                }
            }
            SentenceData::Gns(s) => {
                fields.push(fmt_time(s.time));
                fields.extend(core::iter::repeat_n(String::new(), 4));
                fields.push(s.mode.clone());
                fields.push(fmt_num(s.satellites.map(u32::from)));
                if s.nav_status.is_some() {
                    fields.extend(core::iter::repeat_n(String::new(), 5));
                    fields.push(fmt_letter(s.nav_status));
                }
            }
            SentenceData::Other { .. } => {}
        }
        for f in fields {
            body.push(',');
            body.push_str(&f);
        }
        frame(&body)
    }
}

fn fmt_time(t: Option<TimeOfDay>) -> String {
    let Some(t) = t else { return String::new() };
    let mut s = format!("{:02}{:02}{:02}", t.hour, t.minute, t.second);
    if t.nanosecond != 0 {
        let frac = format!("{:09}", t.nanosecond);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

fn fmt_status(s: Option<Status>) -> String {
    match s {
        None => String::new(),
        Some(Status::Valid) => "A".into(),
        Some(Status::Warning) => "V".into(),
    }
}

fn fmt_letter(c: Option<u8>) -> String {
    c.map(|c| char::from(c).to_string()).unwrap_or_default()
}

fn fmt_num(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
