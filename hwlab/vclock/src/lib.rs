//! A process's virtual kernel clock for the hardware lab.
//!
//! The lab's clock shim (`ntplab-clockshim`, preloaded into a daemon) answers
//! the daemon's clock reads and `adjtimex`-family calls from a
//! [`VirtualClock`] instead of the system clock, which it never touches. The
//! model is the simulator's: the host's free-running oscillator is the real
//! clock plus an initial offset and a frequency error ([`Params::raw_at`]), and
//! the kernel's reaction to `adjtimex` (frequency, tick, PLL phase, steps, leap
//! bits) is the core's [`SteeredClock`], the same model every simulated host
//! runs under. No second clock model exists.
//!
//! Every call that changes the clock is appended to a *journal* (one text line
//! per call, [`JournalOp`]); the lab replays the journal through the same code
//! ([`Replay`]) and so knows the daemon's local time, and its true offset (local
//! time minus the real clock, which the lab takes as true time), at any instant,
//! exactly as the shim computed it.
//!
//! Units in [`Timex`] are the kernel's: `offset` µs (ns with `STA_NANO`),
//! `freq` ppm·2¹⁶, `tick` µs per 1/100 s.

use ntplab_proto::clock::steered::{kernel_pll_time_constant, TICK_MAX_USEC, TICK_MIN_USEC};
use ntplab_proto::clock::{LeapStatus, SteeredClock};
use ntplab_proto::server::smear::LeapKind;
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::v4::LeapIndicator;

/// `adjtimex` mode bits (linux/timex.h).
pub mod modes {
    pub const ADJ_OFFSET: u32 = 0x0001;
    pub const ADJ_FREQUENCY: u32 = 0x0002;
    pub const ADJ_MAXERROR: u32 = 0x0004;
    pub const ADJ_ESTERROR: u32 = 0x0008;
    pub const ADJ_STATUS: u32 = 0x0010;
    pub const ADJ_TIMECONST: u32 = 0x0020;
    pub const ADJ_TAI: u32 = 0x0080;
    pub const ADJ_SETOFFSET: u32 = 0x0100;
    pub const ADJ_MICRO: u32 = 0x1000;
    pub const ADJ_NANO: u32 = 0x2000;
    pub const ADJ_TICK: u32 = 0x4000;
    /// `adjtime(3)`-style call (with `ADJ_OFFSET_READONLY`: only read).
    pub const ADJ_ADJTIME: u32 = 0x8000;
    pub const ADJ_OFFSET_READONLY: u32 = 0x2000;
    pub const ADJ_OFFSET_SINGLESHOT: u32 = 0x8001;
    pub const ADJ_OFFSET_SS_READ: u32 = 0xa001;
}

/// `timex.status` bits (linux/timex.h).
pub mod status {
    pub const STA_PLL: i32 = 0x0001;
    pub const STA_FLL: i32 = 0x0008;
    pub const STA_FREQHOLD: i32 = 0x0080;
    pub const STA_INS: i32 = 0x0010;
    pub const STA_DEL: i32 = 0x0020;
    pub const STA_UNSYNC: i32 = 0x0040;
    pub const STA_CLOCKERR: i32 = 0x1000;
    pub const STA_NANO: i32 = 0x2000;
    /// Read-only: the last PLL offset update used the FLL.
    pub const STA_MODE: i32 = 0x4000;
    /// Bits user space cannot set (`STA_RONLY`).
    pub const STA_RONLY: i32 = 0xff00u32 as i32;
}

/// Clock states `adjtimex` returns.
pub mod state {
    pub const TIME_OK: i32 = 0;
    pub const TIME_INS: i32 = 1;
    pub const TIME_DEL: i32 = 2;
    pub const TIME_WAIT: i32 = 4;
    pub const TIME_ERROR: i32 = 5;
}

/// `NTP_PHASE_LIMIT`: the largest `maxerror`/`esterror`, µs.
pub const MAXERROR_LIMIT: i64 = 16_000_000;

/// `EINVAL`, what the kernel returns for an out-of-range `adjtimex` argument.
pub const EINVAL: i32 = 22;

/// The kernel's `MAXFREQ` in `timex.freq` units: 500 ppm · 2¹⁶.
pub const FREQ_MAX_SCALED: i64 = 500 << 16;
const FREQ_SCALE: f64 = 65536.0;

/// The fields of `struct timex` the model reads and writes, in kernel units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timex {
    pub modes: u32,
    pub offset: i64,
    pub freq: i64,
    pub maxerror: i64,
    pub esterror: i64,
    pub status: i32,
    pub constant: i64,
    pub precision: i64,
    pub tolerance: i64,
    /// `time.tv_sec`.
    pub time_sec: i64,
    /// `time.tv_usec` (ns with `ADJ_NANO`/`STA_NANO`).
    pub time_frac: i64,
    pub tick: i64,
    pub tai: i32,
}

/// The host's free-running oscillator: real clock + offset + frequency error
/// + the random walk of its frequency ([`Wander`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Real time (Unix ns) at which the oscillator is `offset_s` off.
    pub epoch_unix_ns: i128,
    /// The lab's timescale: true time is the real clock plus this many
    /// nanoseconds (0: the real date; a lab run on a scenario's own dates,
    /// e.g. the day of a leap second, sets it to the scenario's start minus
    /// the real time the run began). The oscillator's offset is from true time.
    pub shift_ns: i128,
    /// Initial offset of the oscillator from the real clock, s.
    pub offset_s: f64,
    /// Frequency error of the oscillator, s/s (positive: fast).
    pub frequency: f64,
    /// Random-walk frequency wander, counted from `epoch_unix_ns`; None: none.
    pub wander: Option<Wander>,
    /// Steps and frequency changes of the oscillator itself from the
    /// scenario's timeline (someone else set the clock, a temperature shock),
    /// as the simulator applies them to its host's oscillator.
    pub changes: Changes,
}

/// Most oscillator changes one clock takes ([`Changes`]).
pub const CHANGES_MAX: usize = 32;

/// One change of an oscillator at real time `at_ns` (Unix ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The oscillator jumps by `by_s` seconds (`step_clock`).
    Step { at_ns: i128, by_s: f64 },
    /// Its base frequency error becomes `frequency` s/s, its reading
    /// continuous (`set_frequency`).
    Frequency { at_ns: i128, frequency: f64 },
}

impl Change {
    /// When it takes effect, real Unix ns.
    pub fn at_ns(&self) -> i128 {
        match *self {
            Change::Step { at_ns, .. } | Change::Frequency { at_ns, .. } => at_ns,
        }
    }
}

/// An oscillator's changes in time order, at most [`CHANGES_MAX`] (a fixed
/// array, so [`Params`] stays `Copy` and the shim allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Changes {
    items: [Change; CHANGES_MAX],
    len: usize,
}

impl Default for Changes {
    fn default() -> Self {
        Changes { items: [Change::Step { at_ns: 0, by_s: 0.0 }; CHANGES_MAX], len: 0 }
    }
}

impl Changes {
    /// The changes, in time order.
    pub fn as_slice(&self) -> &[Change] {
        &self.items[..self.len]
    }

    /// Adds a change (kept in time order; one at the same instant as
    /// another comes after it). Refuses more than [`CHANGES_MAX`] and values
    /// the shim would refuse.
    pub fn push(&mut self, c: Change) -> Result<(), String> {
        match c {
            Change::Step { by_s, .. } if !by_s.is_finite() || by_s.abs() > 1e9 => return Err(format!("a step of {by_s} s is not a finite number within 1e9 s")),
            Change::Frequency { frequency, .. } if !frequency.is_finite() || frequency.abs() > 0.5 => {
                return Err(format!("frequency {frequency} is not a finite number within ±0.5"))
            }
            _ => {}
        }
        if self.len >= CHANGES_MAX {
            return Err(format!("more than {CHANGES_MAX} clock steps and frequency changes on one host"));
        }
        let at = self.as_slice().partition_point(|x| x.at_ns() <= c.at_ns());
        self.items.copy_within(at..self.len, at + 1);
        self.items[at] = c;
        self.len += 1;
        Ok(())
    }

    /// (offset the changes have added, frequency they have added) at
    /// `real_ns` to an oscillator of base frequency `base`.
    fn at(&self, base: f64, real_ns: i128) -> (f64, f64) {
        let (mut offset, mut frequency) = (0.0, 0.0);
        for c in self.as_slice() {
            if c.at_ns() > real_ns {
                break;
            }
            match *c {
                Change::Step { by_s, .. } => offset += by_s,
                Change::Frequency { at_ns, frequency: f } => {
                    // As the simulator's oscillator: the new base frequency from `at` on.
                    let delta = f - (base + frequency);
                    frequency += delta;
                    offset += delta * (real_ns - at_ns) as f64 * 1e-9;
                }
            }
        }
        (offset, frequency)
    }

    /// The control page's text: one line per change, `AT_NS step BY_S` or
    /// `AT_NS frequency F` ([`Changes::parse`] reads it).
    pub fn text(&self) -> String {
        let mut t = String::new();
        for c in self.as_slice() {
            match *c {
                Change::Step { at_ns, by_s } => t += &format!("{at_ns} step {by_s:e}\n"),
                Change::Frequency { at_ns, frequency } => t += &format!("{at_ns} frequency {frequency:e}\n"),
            }
        }
        t
    }

    /// Reads [`Changes::text`]; the error names the line.
    pub fn parse(text: &str) -> Result<Changes, String> {
        let mut out = Changes::default();
        for (n, line) in text.lines().enumerate() {
            let bad = |why: String| format!("line {}: {why}", n + 1);
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let [at, kind, value] = f[..] else { return Err(bad(format!("{line:?} is not `AT_NS step|frequency VALUE`"))) };
            let at_ns: i128 = at.parse().map_err(|_| bad(format!("{at:?} is not an integer of Unix ns")))?;
            let v: f64 = value.parse().map_err(|_| bad(format!("{value:?} is not a number")))?;
            let c = match kind {
                "step" => Change::Step { at_ns, by_s: v },
                "frequency" => Change::Frequency { at_ns, frequency: v },
                _ => return Err(bad(format!("{kind:?} is neither `step` nor `frequency`"))),
            };
            out.push(c).map_err(bad)?;
        }
        Ok(out)
    }
}

/// The lab's control page for a shimmed process: a file of [`CONTROL_BYTES`]
/// octets the shim maps (`NTPLAB_VCLOCK_CONTROL`): a generation counter
/// (u64, little-endian, octets 0..8) and then the oscillator's changes as
/// [`Changes::text`], NUL-padded. The lab writes the text, then a new
/// generation; the shim compares the generation with the one it last read at
/// each clock call (one atomic load: its whole cost on the hot path) and
/// rereads the text when it moved. The lab sends a change ahead of its time
/// (`at_ns` in the future), so the shim's clock and the lab's replay of it
/// agree at every instant. The page carries numbers only: nothing in it can
/// reach the real clock.
pub mod control {
    use super::Changes;

    /// Size of the control page.
    pub const CONTROL_BYTES: usize = 4096;

    /// The page's octets for generation `generation` with `changes`; an
    /// error when the text does not fit.
    pub fn page(generation: u64, changes: &Changes) -> Result<Vec<u8>, String> {
        let text = changes.text();
        if text.len() > CONTROL_BYTES - 9 {
            return Err(format!("{} octets of clock changes do not fit the {CONTROL_BYTES}-octet control page", text.len()));
        }
        let mut p = vec![0u8; CONTROL_BYTES];
        p[..8].copy_from_slice(&generation.to_le_bytes());
        p[8..8 + text.len()].copy_from_slice(text.as_bytes());
        Ok(p)
    }

    /// The lab's end of a control page.
    pub struct Writer {
        file: std::fs::File,
        path: std::path::PathBuf,
        generation: u64,
    }

    impl Writer {
        /// Creates the page at `path` (generation 0, no changes).
        pub fn create(path: &std::path::Path) -> Result<Writer, String> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| format!("cannot create the clock control page {}: {e}", path.display()))?;
            let mut w = Writer { file, path: path.to_path_buf(), generation: 0 };
            w.put(0, &page(0, &Changes::default())?)?;
            Ok(w)
        }

        fn put(&mut self, at: u64, bytes: &[u8]) -> Result<(), String> {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(bytes, at).map_err(|e| format!("cannot write the clock control page {}: {e}", self.path.display()))
        }

        /// Publishes `changes`: an odd generation, the text, the next even one.
        pub fn publish(&mut self, changes: &Changes) -> Result<(), String> {
            let p = page(self.generation + 2, changes)?;
            self.put(0, &(self.generation + 1).to_le_bytes())?;
            self.put(8, &p[8..])?;
            self.put(0, &p[..8])?;
            self.generation += 2;
            Ok(())
        }
    }

    /// The changes in a page's text part (octets 8.. up to the first NUL).
    pub fn read(text_part: &[u8]) -> Result<Changes, String> {
        let end = text_part.iter().position(|&b| b == 0).unwrap_or(text_part.len());
        let text = std::str::from_utf8(&text_part[..end]).map_err(|_| "the control page is not UTF-8".to_string())?;
        Changes::parse(text)
    }
}

/// An oscillator's random-walk frequency wander, drawn exactly as the
/// simulator draws host `host`'s under scenario seed `seed`
/// (`ntplab_sim::oscillator::Oscillator` on the stream
/// `oscillator/<host>`, a 1 s grid from the start): the same scenario gives
/// the same frequency path in the lab as in the simulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wander {
    /// (s/s)/√s, as the scenario's `wander`.
    pub wander: f64,
    /// The scenario's seed.
    pub seed: u64,
    /// The host's index in the scenario.
    pub host: usize,
}

/// Most 1 s cells of a walk kept (32 days); past them the frequency stays.
pub const WALK_CELLS_MAX: usize = 32 * 86_400;

/// A walk's offsets at whole seconds, extended on demand.
struct Walk {
    wander: Wander,
    oscillator: ntplab_sim::oscillator::Oscillator,
    /// Offset the walk has added by second k, s.
    offsets: Vec<f64>,
    /// Its frequency from second k to k + 1, s/s.
    frequencies: Vec<f64>,
}

/// Every walk this process has evaluated (the shim: one; the lab: one per host).
static WALKS: std::sync::Mutex<Vec<Walk>> = std::sync::Mutex::new(Vec::new());

impl Wander {
    /// (offset the walk has added, its frequency) `elapsed_s` after the start.
    pub fn at(&self, elapsed_s: f64) -> (f64, f64) {
        if elapsed_s.is_nan() || elapsed_s <= 0.0 || self.wander == 0.0 {
            return (0.0, 0.0);
        }
        let cell = (elapsed_s.floor() as usize).min(WALK_CELLS_MAX);
        let mut walks = WALKS.lock().unwrap_or_else(|e| e.into_inner());
        let i = match walks.iter().position(|w| w.wander == *self) {
            Some(i) => i,
            None => {
                use ntplab_sim::oscillator::{Oscillator, OscillatorConfig};
                let config = OscillatorConfig { wander: self.wander, ..OscillatorConfig::default() };
                let rng = ntplab_sim::rng::SimRng::derive(self.seed, &format!("oscillator/{}", self.host));
                walks.push(Walk { wander: *self, oscillator: Oscillator::new(config, rng), offsets: vec![0.0], frequencies: vec![0.0] });
                walks.len() - 1
            }
        };
        let w = &mut walks[i];
        while w.offsets.len() <= cell + 1 {
            let t = NtpDuration::from_seconds_f64(w.offsets.len() as f64);
            w.offsets.push(w.oscillator.raw_offset_at(t).to_seconds_f64());
            w.frequencies.push(w.oscillator.frequency_at(t));
        }
        let (a, b) = (w.offsets[cell], w.offsets[cell + 1]);
        // Past the last cell kept, the walk holds its frequency.
        let beyond = (elapsed_s - cell as f64 - 1.0).max(0.0) * w.frequencies[cell];
        (a + (b - a) * (elapsed_s - cell as f64).min(1.0) + beyond, w.frequencies[cell])
    }
}

impl Params {
    /// An oscillator without wander.
    pub fn new(epoch_unix_ns: i128, offset_s: f64, frequency: f64) -> Params {
        Params { epoch_unix_ns, shift_ns: 0, offset_s, frequency, wander: None, changes: Changes::default() }
    }

    /// True time (Unix ns) when the real clock reads `real_ns`.
    pub fn true_unix_ns(&self, real_ns: i128) -> i128 {
        real_ns + self.shift_ns
    }

    /// The oscillator's reading when the real clock reads `real_ns` (Unix ns).
    pub fn raw_at(&self, real_ns: i128) -> NtpTime {
        let elapsed = (real_ns - self.epoch_unix_ns) as f64 * 1e-9;
        let walk = self.wander.map_or(0.0, |w| w.at(elapsed).0);
        let changed = self.changes.at(self.frequency, real_ns).0;
        unix_ns_to_ntp(self.true_unix_ns(real_ns)) + NtpDuration::from_seconds_f64(self.offset_s + self.frequency * elapsed + walk + changed)
    }

    /// The oscillator's frequency error at `real_ns`, s/s.
    pub fn frequency_at(&self, real_ns: i128) -> f64 {
        let elapsed = (real_ns - self.epoch_unix_ns) as f64 * 1e-9;
        self.frequency + self.wander.map_or(0.0, |w| w.at(elapsed).1) + self.changes.at(self.frequency, real_ns).1
    }

    /// Reads the parameters from environment-style values: offset (s),
    /// frequency (s/s) and epoch (Unix ns), each a finite number; and the
    /// wander as `WANDER/SEED/HOST` (empty: none). The timescale's shift is
    /// 0 ([`Params::with_shift`]).
    pub fn parse(offset: &str, frequency: &str, epoch: &str, wander: &str) -> Result<Params, String> {
        let offset_s: f64 = offset.trim().parse().map_err(|_| format!("offset {offset:?} is not a number of seconds"))?;
        let frequency: f64 = frequency.trim().parse().map_err(|_| format!("frequency {frequency:?} is not a number"))?;
        let epoch_unix_ns: i128 = epoch.trim().parse().map_err(|_| format!("epoch {epoch:?} is not an integer of Unix nanoseconds"))?;
        if !offset_s.is_finite() || offset_s.abs() > 1e9 {
            return Err(format!("offset {offset_s} s is not a finite number within 1e9 s"));
        }
        if !frequency.is_finite() || frequency.abs() > 0.5 {
            return Err(format!("frequency {frequency} is not a finite number within ±0.5"));
        }
        let wander = match wander.trim() {
            "" => None,
            w => {
                let bad = || format!("wander {w:?} is not WANDER/SEED/HOST (a non-negative finite number, an integer seed, a host index)");
                let mut parts = w.split('/');
                let (Some(a), Some(b), Some(c), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
                let wander: f64 = a.parse().map_err(|_| bad())?;
                if !wander.is_finite() || wander < 0.0 {
                    return Err(bad());
                }
                Some(Wander { wander, seed: b.parse().map_err(|_| bad())?, host: c.parse().map_err(|_| bad())? })
            }
        };
        Ok(Params { epoch_unix_ns, shift_ns: 0, offset_s, frequency, wander, changes: Changes::default() })
    }

    /// These parameters on a timescale shifted by `shift` (environment-style:
    /// an integer of nanoseconds, empty for none; at most 200 years either way).
    pub fn with_shift(self, shift: &str) -> Result<Params, String> {
        const LIMIT_NS: i128 = 200 * 366 * 86_400 * 1_000_000_000;
        let shift_ns: i128 = match shift.trim() {
            "" => 0,
            s => s.parse().map_err(|_| format!("shift {s:?} is not an integer of nanoseconds"))?,
        };
        if shift_ns.abs() > LIMIT_NS {
            return Err(format!("shift {shift_ns} ns is more than 200 years"));
        }
        Ok(Params { shift_ns, ..self })
    }

    /// The wander as [`Params::parse`] reads it (empty: none).
    pub fn wander_text(&self) -> String {
        self.wander.map_or(String::new(), |w| format!("{:e}/{}/{}", w.wander, w.seed, w.host))
    }
}

/// Unix nanoseconds as an NTP time.
pub fn unix_ns_to_ntp(ns: i128) -> NtpTime {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    NtpTime::from_unix(secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64, nanos)
}

/// An NTP time as Unix (seconds, nanoseconds).
pub fn ntp_to_unix(t: NtpTime) -> (i64, u32) {
    t.to_unix()
}

/// One clock-changing call, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JournalOp {
    /// An `adjtimex`/`ntp_adjtime`/`clock_adjtime` call with these inputs.
    Adjtimex(Timex),
    /// `clock_settime`/`settimeofday`/`stime` to this absolute Unix time (ns).
    SetTime(i128),
}

impl JournalOp {
    /// The journal line (without the newline) for this call by process `pid`
    /// at real time `real_ns`.
    pub fn line(&self, pid: u32, real_ns: i128) -> String {
        match self {
            JournalOp::Adjtimex(t) => format!(
                "{pid} {real_ns} X {} {} {} {} {} {} {} {} {} {} {}",
                t.modes, t.offset, t.freq, t.maxerror, t.esterror, t.status, t.constant, t.time_sec, t.time_frac, t.tick, t.tai
            ),
            JournalOp::SetTime(ns) => format!("{pid} {real_ns} S {ns}"),
        }
    }

    /// Parses a journal line: (pid, real time in Unix ns, call).
    pub fn parse(line: &str) -> Result<(u32, i128, JournalOp), String> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let num = |i: usize| -> Result<i128, String> {
            f.get(i).ok_or_else(|| format!("field {} missing", i + 1))?.parse::<i128>().map_err(|_| format!("field {} ({:?}) is not an integer", i + 1, f[i]))
        };
        let pid = u32::try_from(num(0)?).map_err(|_| "pid out of range".to_string())?;
        let real = num(1)?;
        let op = match f.get(2).copied() {
            Some("X") if f.len() == 14 => {
                let small = |i: usize| -> Result<i64, String> { i64::try_from(num(i)?).map_err(|_| format!("field {} out of range", i + 1)) };
                JournalOp::Adjtimex(Timex {
                    modes: u32::try_from(num(3)?).map_err(|_| "modes out of range".to_string())?,
                    offset: small(4)?,
                    freq: small(5)?,
                    maxerror: small(6)?,
                    esterror: small(7)?,
                    status: i32::try_from(num(8)?).map_err(|_| "status out of range".to_string())?,
                    constant: small(9)?,
                    time_sec: small(10)?,
                    time_frac: small(11)?,
                    tick: small(12)?,
                    tai: i32::try_from(num(13)?).map_err(|_| "tai out of range".to_string())?,
                    ..Timex::default()
                })
            }
            Some("S") if f.len() == 4 => JournalOp::SetTime(num(3)?),
            _ => return Err("expected `PID REAL_NS X <11 timex fields>` or `PID REAL_NS S UNIX_NS`".to_string()),
        };
        Ok((pid, real, op))
    }
}

/// A process's clock: the oscillator and the kernel's discipline state.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    params: Params,
    steered: SteeredClock,
    status: i32,
    constant: i64,
    maxerror: i64,
    esterror: i64,
    tai: i32,
    /// The clock's time (Unix s) at the last PLL offset update (`time_reftime`; 0 at boot).
    reftime_s: i64,
}

impl VirtualClock {
    /// A clock that reads the oscillator at `real_ns` (no correction, the
    /// kernel's boot state: `STA_UNSYNC`, time constant 2, tick 10000 µs).
    pub fn new(params: Params, real_ns: i128) -> Self {
        VirtualClock {
            params,
            steered: SteeredClock::new(params.raw_at(real_ns)),
            status: status::STA_UNSYNC,
            constant: 2,
            maxerror: MAXERROR_LIMIT,
            esterror: MAXERROR_LIMIT,
            tai: 0,
            reftime_s: 0,
        }
    }

    /// The oscillator parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the oscillator's changes (the lab's control page). Changes
    /// still to come take effect at their time; the clock's past is the
    /// same as long as none of them is earlier than the last reading.
    pub fn set_changes(&mut self, changes: Changes) {
        self.params.changes = changes;
    }

    /// The kernel model.
    pub fn steered(&self) -> &SteeredClock {
        &self.steered
    }

    /// The `timex.status` word.
    pub fn status(&self) -> i32 {
        self.status
    }

    /// Local (`CLOCK_REALTIME`) time when the real clock reads `real_ns`.
    pub fn now(&self, real_ns: i128) -> NtpTime {
        self.steered.time_at(self.params.raw_at(real_ns))
    }

    /// Local time as Unix nanoseconds.
    pub fn now_unix_ns(&self, real_ns: i128) -> i128 {
        let (s, n) = self.now(real_ns).to_unix();
        i128::from(s) * 1_000_000_000 + i128::from(n)
    }

    /// `CLOCK_TAI`: local time plus the TAI offset (`ADJ_TAI`).
    pub fn tai_unix_ns(&self, real_ns: i128) -> i128 {
        self.now_unix_ns(real_ns) + i128::from(self.tai) * 1_000_000_000
    }

    /// Local time minus true time (the real clock on the lab's timescale,
    /// [`Params::shift_ns`]) at `real_ns`, seconds.
    pub fn offset_at(&self, real_ns: i128) -> f64 {
        self.now(real_ns).duration_since(unix_ns_to_ntp(self.params.true_unix_ns(real_ns))).to_seconds_f64()
    }

    /// Frequency error of the disciplined clock, s/s: the oscillator's error
    /// and the frequency correction in force (a phase slew in progress is not
    /// included, as in the simulator's samples).
    pub fn frequency_error(&self, real_ns: i128) -> f64 {
        (1.0 + self.params.frequency_at(real_ns)) * (1.0 + self.steered.frequency()) - 1.0
    }

    /// Sets the clock to `unix_ns` (`clock_settime`, `settimeofday`).
    pub fn set_time(&mut self, real_ns: i128, unix_ns: i128) {
        let raw = self.params.raw_at(real_ns);
        let by = unix_ns_to_ntp(unix_ns).duration_since(self.steered.time_at(raw));
        self.steered.step(raw, by);
        self.clear();
    }

    /// What the kernel's `ntp_clear` does when the clock is set: unsynchronized,
    /// errors at their maximum (chrony checks `maxerror` to tell that
    /// `ADJ_SETOFFSET` is supported). The step has already ended any slew.
    fn clear(&mut self) {
        self.status |= status::STA_UNSYNC;
        self.maxerror = MAXERROR_LIMIT;
        self.esterror = MAXERROR_LIMIT;
    }

    /// Applies one journalled call.
    pub fn apply(&mut self, real_ns: i128, op: &JournalOp) -> Result<i32, i32> {
        match op {
            JournalOp::Adjtimex(t) => {
                let mut t = *t;
                self.adjtimex(real_ns, &mut t)
            }
            JournalOp::SetTime(ns) => {
                self.set_time(real_ns, *ns);
                Ok(0)
            }
        }
    }

    /// `adjtimex(2)` on this clock: applies `tx.modes` as Linux does
    /// (kernel/time/ntp.c: checks first, then the step, status, frequency,
    /// errors, time constant, TAI, PLL offset and tick), fills `tx` with the
    /// state and returns the clock state (`TIME_OK`, `TIME_INS`, ...) or an
    /// errno. Every adjustment is permitted: the clock is the process's own.
    pub fn adjtimex(&mut self, real_ns: i128, tx: &mut Timex) -> Result<i32, i32> {
        use modes::*;
        let m = tx.modes;
        let raw = self.params.raw_at(real_ns);
        if m & ADJ_ADJTIME != 0 {
            // adjtime(3): a linear slew at 500 ppm; the old remainder is returned.
            let old = ns_to_us(self.steered.remaining_phase(raw).as_nanos());
            if m & ADJ_OFFSET_READONLY == 0 {
                let by = NtpDuration::from_nanos(tx.offset.saturating_mul(1000));
                self.steered.slew_phase(raw, by, NtpDuration::ZERO, 500e-6);
            }
            self.fill(raw, tx);
            tx.offset = old;
            return Ok(self.state(raw));
        }
        let nano = if m & ADJ_NANO != 0 {
            true
        } else if m & ADJ_MICRO != 0 {
            false
        } else {
            self.status & status::STA_NANO != 0
        };
        if m & ADJ_TICK != 0 && !(TICK_MIN_USEC..=TICK_MAX_USEC).contains(&tx.tick) {
            return Err(EINVAL);
        }
        if m & ADJ_SETOFFSET != 0 {
            let frac_max = if m & ADJ_NANO != 0 { 1_000_000_000 } else { 1_000_000 };
            if !(0..frac_max).contains(&tx.time_frac) {
                return Err(EINVAL);
            }
            let frac_ns = if m & ADJ_NANO != 0 { tx.time_frac } else { tx.time_frac * 1000 };
            let ns = i128::from(tx.time_sec) * 1_000_000_000 + i128::from(frac_ns);
            let ns = i64::try_from(ns).map_err(|_| EINVAL)?;
            self.steered.step(raw, NtpDuration::from_nanos(ns));
            self.clear();
        }
        // The rest applies at the time after any step.
        let raw = self.params.raw_at(real_ns);
        if m & ADJ_STATUS != 0 {
            self.status = (self.status & status::STA_RONLY) | (tx.status & !status::STA_RONLY);
            let leap = if self.status & status::STA_INS != 0 {
                LeapIndicator::Insert
            } else if self.status & status::STA_DEL != 0 {
                LeapIndicator::Delete
            } else {
                LeapIndicator::NoWarning
            };
            if leap != LeapIndicator::NoWarning || self.steered.leap_status(raw) != LeapStatus::Idle {
                self.steered.set_leap(raw, leap);
            }
        }
        if m & ADJ_NANO != 0 {
            self.status |= status::STA_NANO;
        }
        if m & ADJ_MICRO != 0 {
            self.status &= !status::STA_NANO;
        }
        if m & ADJ_FREQUENCY != 0 {
            let scaled = tx.freq.clamp(-FREQ_MAX_SCALED, FREQ_MAX_SCALED);
            // NaN is impossible here; the model clamps as the kernel does.
            let _ = self.steered.set_frequency(raw, scaled as f64 / FREQ_SCALE * 1e-6);
        }
        if m & ADJ_MAXERROR != 0 {
            self.maxerror = tx.maxerror.clamp(0, MAXERROR_LIMIT);
        }
        if m & ADJ_ESTERROR != 0 {
            self.esterror = tx.esterror.clamp(0, MAXERROR_LIMIT);
        }
        if m & ADJ_TIMECONST != 0 {
            self.constant = tx.constant.clamp(0, 10);
        }
        if m & ADJ_TAI != 0 && tx.constant >= 0 && tx.constant <= i64::from(i32::MAX) {
            self.tai = tx.constant as i32;
        }
        if m & ADJ_OFFSET != 0 && self.status & status::STA_PLL != 0 {
            let ns = if nano { tx.offset } else { tx.offset.saturating_mul(1000) };
            // MAXPHASE: the kernel clamps the PLL offset to ±0.5 s.
            let ns = ns.clamp(-500_000_000, 500_000_000);
            self.update_pll_frequency(raw, ns as f64 * 1e-9);
            let tau = kernel_pll_time_constant(self.constant as u8);
            self.steered.adjust_phase(raw, NtpDuration::from_nanos(ns), NtpDuration::from_seconds_f64(tau));
        }
        if m & ADJ_TICK != 0 {
            self.steered.set_tick(raw, tx.tick).map_err(|_| EINVAL)?;
        }
        self.fill(raw, tx);
        Ok(self.state(raw))
    }

    /// The frequency half of Linux's PLL (kernel/time/ntp.c
    /// `ntp_update_offset`): an offset handed to the kernel PLL also moves
    /// the frequency, by offset × secs / 2^(2·(SHIFT_PLL + 2 + tc)) with secs
    /// since the previous update (at most 2^(SHIFT_PLL + 1 + tc)), plus the
    /// FLL's offset / (2^SHIFT_FLL · secs) when STA_FLL is set and 256 s or
    /// more have passed, or more than 2048 s in any case (then STA_MODE).
    /// ntpd and ntpsec rely on it to correct their clock's frequency in kernel mode.
    fn update_pll_frequency(&mut self, raw: NtpTime, offset_s: f64) {
        const SHIFT_PLL: u32 = 2;
        const SHIFT_FLL: u32 = 2;
        const MINSEC: i64 = 256;
        const MAXSEC: i64 = 2048;
        let now_s = self.steered.time_at(raw).to_unix().0;
        let mut secs = if self.status & status::STA_FREQHOLD != 0 { 0 } else { now_s - self.reftime_s };
        self.reftime_s = now_s;
        self.status &= !status::STA_MODE;
        let mut adjust = 0.0;
        if secs >= MINSEC && (self.status & status::STA_FLL != 0 || secs > MAXSEC) {
            self.status |= status::STA_MODE;
            adjust = offset_s / f64::from(1u32 << SHIFT_FLL) / secs as f64;
        }
        let tc = self.constant.clamp(0, 10) as u32;
        secs = secs.clamp(0, 1 << (SHIFT_PLL + 1 + tc));
        adjust += offset_s * secs as f64 / f64::from(1u32 << (2 * (SHIFT_PLL + 2 + tc)));
        let max = FREQ_MAX_SCALED as f64 / FREQ_SCALE * 1e-6;
        let f = (self.steered.kernel_frequency() + adjust).clamp(-max, max);
        // Finite: both terms are.
        let _ = self.steered.set_frequency(raw, f);
    }

    fn state(&self, raw: NtpTime) -> i32 {
        if self.status & (status::STA_UNSYNC | status::STA_CLOCKERR) != 0 {
            return state::TIME_ERROR;
        }
        match self.steered.leap_status(raw) {
            LeapStatus::Idle => state::TIME_OK,
            LeapStatus::Armed { kind: LeapKind::Insert, .. } => state::TIME_INS,
            LeapStatus::Armed { kind: LeapKind::Delete, .. } => state::TIME_DEL,
            LeapStatus::Wait => state::TIME_WAIT,
        }
    }

    fn fill(&self, raw: NtpTime, tx: &mut Timex) {
        let nano = self.status & status::STA_NANO != 0;
        let rem = self.steered.remaining_phase(raw).as_nanos();
        tx.offset = if nano { rem } else { ns_to_us(rem) };
        tx.freq = (self.steered.kernel_frequency() * 1e6 * FREQ_SCALE).round() as i64;
        tx.maxerror = self.maxerror;
        tx.esterror = self.esterror;
        tx.status = self.status;
        tx.constant = self.constant;
        tx.precision = 1;
        tx.tolerance = FREQ_MAX_SCALED;
        let (s, n) = self.steered.time_at(raw).to_unix();
        tx.time_sec = s;
        tx.time_frac = if nano { i64::from(n) } else { i64::from(n / 1000) };
        tx.tick = self.steered.tick_usec();
        tx.tai = self.tai;
    }
}

/// Nanoseconds to the nearest microsecond.
fn ns_to_us(ns: i64) -> i64 {
    (ns as f64 / 1000.0).round() as i64
}

/// Most journal lines [`Replay::parse`] accepts (about 100 MB of text).
pub const JOURNAL_LINES_MAX: usize = 1_000_000;

/// The journal line (without the newline) by which process `pid`, started
/// again on a host whose daemon was stopped (the scenario's `stop` and
/// `start`), takes the host's clock over at real time `real_ns`: `PID
/// REAL_NS R`. [`Replay`] follows that process's calls from this line on.
pub fn resume_line(pid: u32, real_ns: i128) -> String {
    format!("{pid} {real_ns} R")
}

/// How many resume lines ([`resume_line`]) `text` (a journal) holds.
pub fn resumes(text: &str) -> usize {
    text.lines().filter(|l| parse_resume(l).is_some()).count()
}

/// (pid, real time) of a resume line.
fn parse_resume(line: &str) -> Option<(u32, i128)> {
    let mut f = line.split_ascii_whitespace();
    let (Some(pid), Some(real), Some("R"), None) = (f.next(), f.next(), f.next(), f.next()) else { return None };
    Some((pid.parse().ok()?, real.parse().ok()?))
}

/// One line of a journal, as the host's daemon's clock sees it.
enum DaemonLine {
    /// A resume line: process `.0` took the clock over at real time `.1`.
    Resumed(u32, i128),
    /// A call of the daemon (at real time `.0`).
    Call(i128, JournalOp),
    /// Another process's call (a helper that exec'd under the same preload).
    Other,
}

/// Reads `line` for the host's daemon: the first process that wrote a call
/// and, after a resume line, the process that wrote it (`pid` tracks which).
fn daemon_line(pid: &mut Option<u32>, line: &str) -> Result<DaemonLine, String> {
    if let Some((p, real)) = parse_resume(line) {
        *pid = Some(p);
        return Ok(DaemonLine::Resumed(p, real));
    }
    let (p, real, op) = JournalOp::parse(line)?;
    Ok(if *pid.get_or_insert(p) == p { DaemonLine::Call(real, op) } else { DaemonLine::Other })
}

/// A journal replayed: the clock after every call, in time order.
#[derive(Debug, Clone)]
pub struct Replay {
    initial: VirtualClock,
    /// (real time of the call, clock after it, the call).
    changes: Vec<(i128, VirtualClock, JournalOp)>,
    /// The process whose calls were replayed first (the first that wrote one).
    pub pid: Option<u32>,
    /// The processes that took the clock over after a restart ([`resume_line`]), with the real time.
    pub resumed: Vec<(u32, i128)>,
}

impl Replay {
    /// Replays `text` (a journal) over a clock with `params` that started at
    /// `start_ns`. Only the host's daemon is replayed: the first process that
    /// wrote to the journal and, after a resume line ([`resume_line`]: the
    /// daemon was stopped and started again), the process that wrote it,
    /// which carries on with the same clock (a helper that exec'd under the
    /// same preload is another process). A last line without its newline
    /// (being written) is ignored. `origin` names the journal in errors.
    pub fn parse(params: Params, start_ns: i128, text: &str, origin: &str) -> Result<Replay, String> {
        let mut clock = VirtualClock::new(params, start_ns);
        let initial = clock.clone();
        let mut changes = Vec::new();
        let mut pid = None;
        let mut first = None;
        let mut resumed = Vec::new();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        for (n, line) in complete.lines().enumerate() {
            if n >= JOURNAL_LINES_MAX {
                return Err(format!("{origin}: more than {JOURNAL_LINES_MAX} lines"));
            }
            match daemon_line(&mut pid, line).map_err(|e| format!("{origin}:{}: {e}", n + 1))? {
                DaemonLine::Resumed(p, real) => resumed.push((p, real)),
                DaemonLine::Other => {}
                DaemonLine::Call(real, op) => {
                    first = first.or(pid);
                    // A refused call (EINVAL) changed nothing, in the shim as here.
                    let _ = clock.apply(real, &op);
                    changes.push((real, clock.clone(), op));
                }
            }
        }
        Ok(Replay { initial, changes, pid: first, resumed })
    }

    /// The clock a daemon started again at real time `real_ns` takes over:
    /// the host's clock as the journal `text` leaves it (the same replay the
    /// lab makes of it), running on from there.
    pub fn resume(params: Params, start_ns: i128, text: &str, real_ns: i128) -> Result<VirtualClock, String> {
        Ok(Replay::parse(params, start_ns, text, "the journal")?.clock_at(real_ns).clone())
    }

    /// The clock in force at real time `real_ns`.
    pub fn clock_at(&self, real_ns: i128) -> &VirtualClock {
        let i = self.changes.partition_point(|(t, _, _)| *t <= real_ns);
        if i == 0 {
            &self.initial
        } else {
            &self.changes[i - 1].1
        }
    }

    /// The calls, with their real times.
    pub fn calls(&self) -> impl Iterator<Item = (i128, &JournalOp)> {
        self.changes.iter().map(|(t, _, op)| (*t, op))
    }

    /// Real time of the first call that cleared `STA_UNSYNC` (the program
    /// declared its clock synchronized), if any.
    pub fn first_synchronized(&self) -> Option<i128> {
        self.changes.iter().find(|(_, c, _)| c.status() & status::STA_UNSYNC == 0).map(|(t, _, _)| *t)
    }

    /// Real time of the first call that changed the clock's frequency,
    /// phase or time, if any.
    pub fn first_adjustment(&self) -> Option<i128> {
        self.changes
            .iter()
            .find(|(_, _, op)| match op {
                JournalOp::Adjtimex(t) => t.modes & (modes::ADJ_FREQUENCY | modes::ADJ_OFFSET | modes::ADJ_SETOFFSET | modes::ADJ_TICK) != 0,
                JournalOp::SetTime(_) => true,
            })
            .map(|(t, _, _)| *t)
    }

    /// How many calls stepped the clock (by a nonzero amount).
    pub fn steps(&self) -> u64 {
        // Counted on the calls as made, which the shim accepted.
        self.changes
            .iter()
            .filter(|(_, _, op)| match op {
                // chrony probes ADJ_SETOFFSET with a zero step: not a step.
                JournalOp::Adjtimex(t) => t.modes & modes::ADJ_ADJTIME == 0 && t.modes & modes::ADJ_SETOFFSET != 0 && (t.time_sec, t.time_frac) != (0, 0),
                JournalOp::SetTime(_) => true,
            })
            .count() as u64
    }
}

/// A clock that follows the host's daemon through its journal as another
/// process writes it: a helper on the same host (gpsd beside chronyd) whose
/// clock must be the host's, not a free-running copy of the oscillator.
/// The same lines as [`Replay::parse`] replays are applied, in the order
/// they were written: the first writer's calls, after a resume line the
/// resumed process's; a line not yet complete waits for its newline.
#[derive(Debug, Clone, Default)]
pub struct Follower {
    pid: Option<u32>,
    partial: String,
}

impl Follower {
    /// A follower that has read nothing yet.
    pub fn new() -> Follower {
        Follower::default()
    }

    /// Applies to `clock` the complete lines of `text`, the journal's
    /// octets appended since the last call (with any incomplete line kept
    /// from before).
    pub fn feed(&mut self, text: &str, clock: &mut VirtualClock) -> Result<(), String> {
        self.partial.push_str(text);
        let Some(end) = self.partial.rfind('\n') else { return Ok(()) };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines() {
            if let DaemonLine::Call(real, op) = daemon_line(&mut self.pid, line)? {
                let _ = clock.apply(real, &op);
            }
        }
        Ok(())
    }
}

/// The Linux kernel PPS API's `PPS_FETCH` (`<linux/pps.h>`), whose edge
/// timestamps the kernel takes on the real `CLOCK_REALTIME`: the shim
/// translates them to the process's clock, as it translates socket
/// timestamps, so a daemon reading a real `/dev/ppsN` under the shim times
/// the pulses on its own clock.
pub mod pps {
    /// `_IOWR('p', 0xa4, struct pps_fdata *)`: the size field is a pointer's.
    pub const PPS_FETCH: u64 = (3 << 30) | ((std::mem::size_of::<*const u8>() as u64) << 16) | ((b'p' as u64) << 8) | 0xa4;
    /// Offset of `info.assert_tu` (`struct pps_ktime`: `i64` seconds, `i32`
    /// nanoseconds, `u32` flags) in `struct pps_fdata`.
    pub const ASSERT_TU_OFFSET: usize = 8;
    /// Offset of `info.clear_tu`.
    pub const CLEAR_TU_OFFSET: usize = 24;
    /// Size of `struct pps_fdata` (`pps_kinfo`, padded to 48, and the timeout).
    pub const FDATA_BYTES: usize = 64;

    /// Rewrites the assert and clear edge times of the `struct pps_fdata`
    /// in `fdata` with `f` (real Unix ns to the process's clock); an edge
    /// never captured (zero) is left as it is.
    pub fn translate_fdata(fdata: &mut [u8; FDATA_BYTES], f: impl Fn(i128) -> i128) {
        for at in [ASSERT_TU_OFFSET, CLEAR_TU_OFFSET] {
            let sec = i64::from_ne_bytes(fdata[at..at + 8].try_into().unwrap_or([0; 8]));
            let nsec = i32::from_ne_bytes(fdata[at + 8..at + 12].try_into().unwrap_or([0; 4]));
            if sec == 0 && nsec == 0 {
                continue;
            }
            let t = f(i128::from(sec) * 1_000_000_000 + i128::from(nsec));
            fdata[at..at + 8].copy_from_slice(&(t.div_euclid(1_000_000_000) as i64).to_ne_bytes());
            fdata[at + 8..at + 12].copy_from_slice(&(t.rem_euclid(1_000_000_000) as i32).to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
