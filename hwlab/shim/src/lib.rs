//! `libntplab_clockshim.so`: preloaded into a daemon (`LD_PRELOAD`), it gives
//! the process a virtual clock of its own ([`ntplab_vclock::VirtualClock`])
//! and never changes the system clock.
//!
//! Answered from the model: `clock_gettime` for `CLOCK_REALTIME`,
//! `CLOCK_REALTIME_COARSE`, `CLOCK_REALTIME_ALARM` and `CLOCK_TAI`;
//! `gettimeofday`, `time`; `adjtimex`, `__adjtimex`, `ntp_adjtime`,
//! `clock_adjtime(CLOCK_REALTIME)`, `adjtime`; `clock_settime`,
//! `settimeofday`; and the kernel's receive and transmit timestamps in
//! `recvmsg`/`recvmmsg` control messages (`SCM_TIMESTAMP`,
//! `SCM_TIMESTAMPNS`, `SCM_TIMESTAMPING`, old and `_NEW` layouts), which are
//! taken on the real clock and translated to the process's clock, as are the
//! edge times a kernel PPS device returns to `ioctl(PPS_FETCH)`. Other
//! clocks (`CLOCK_MONOTONIC`, `CLOCK_BOOTTIME`, CPU clocks, PHCs) go to the
//! kernel unchanged: the model's frequency corrections do not show in them
//! (Linux slews `CLOCK_MONOTONIC` with the NTP frequency; programs use it for
//! intervals, which stay within the oscillator's error).
//!
//! Configuration, from the environment at the first clock call:
//! `NTPLAB_VCLOCK_OFFSET` (s, default 0) and `NTPLAB_VCLOCK_FREQUENCY` (s/s,
//! default 0), the oscillator's offset at `NTPLAB_VCLOCK_EPOCH_NS` (real Unix
//! ns, default: now) and its frequency error; `NTPLAB_VCLOCK_WANDER`
//! (`WANDER/SEED/HOST`, default none), the random walk of its frequency as
//! the simulator draws it for that scenario seed and host;
//! `NTPLAB_VCLOCK_SHIFT_NS` (integer ns, default 0): the lab's timescale, true
//! time being the real clock plus this shift (a run on a scenario's own
//! dates; the oscillator's offset is from true time);
//! `NTPLAB_VCLOCK_JOURNAL`, a file
//! every clock-changing call is appended to (see [`ntplab_vclock::JournalOp`]),
//! from which the lab recomputes the clock; `NTPLAB_VCLOCK_CONTROL`, the
//! lab's control page (see [`ntplab_vclock::control`]), mapped read-only,
//! through which the lab steps the oscillator or changes its frequency
//! while the process runs (the scenario's `step_clock` and `set_frequency`):
//! each clock call compares the page's generation with the last one read
//! (one atomic load) and rereads the changes when it moved;
//! `NTPLAB_VCLOCK_RESUME=K` (K ≥ 1), a daemon started again for the K-th
//! time (the scenario's `start` after a `stop`): instead of a fresh clock
//! it takes the host's clock over where the journal leaves it (replayed
//! through [`ntplab_vclock::Replay`], as the lab replays it) and writes a
//! resume line, from which the lab follows its calls.
//! `NTPLAB_VCLOCK_FOLLOW=1` (with `NTPLAB_VCLOCK_JOURNAL`): a helper beside
//! the host's daemon (gpsd), whose clock is the host's as the daemon steers
//! it: before each clock call it reads what the journal gained and applies
//! the daemon's calls ([`ntplab_vclock::Follower`]); it writes no journal and
//! its own clock-changing calls fail with `EPERM`. A bad value
//! stops the process with a message naming the variable.
//!
//! `NTPLAB_SERIAL_DEVICE=PATH`: `stat` of exactly PATH reports a pty slave
//! (Unix98 majors 136-143) as a UART (major 4, minor 64 + the pty's
//! number, /dev/ttyS*). The lab feeds a receiver's NMEA on a pty, and gpsd
//! classifies a device by `stat` and exports no time from a pty (it takes
//! one for its own test harness: `ntpshm_link_activate`); given a path that
//! is not under /dev/pts/ (a link the lab makes) it then takes the pty for
//! the serial line it stands for. Nothing else is changed.

use ntplab_vclock::control::CONTROL_BYTES;
use ntplab_vclock::{JournalOp, Params, Timex, VirtualClock};
use std::ffi::{c_int, c_uint, c_void};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

struct Shim {
    clock: VirtualClock,
    journal: Option<File>,
    control: Option<Control>,
    follow: Option<Follow>,
}

/// The journal a helper follows (`NTPLAB_VCLOCK_FOLLOW`), read where it left off.
struct Follow {
    file: File,
    follower: ntplab_vclock::Follower,
}

impl Follow {
    /// Applies what the journal gained since the last call.
    fn poll(&mut self, clock: &mut VirtualClock) {
        use std::io::Read;
        let mut buf = Vec::new();
        if let Err(e) = self.file.read_to_end(&mut buf) {
            fatal(&format!("ntplab clock shim: reading NTPLAB_VCLOCK_JOURNAL: {e}"));
        }
        if buf.is_empty() {
            return;
        }
        let text = String::from_utf8(buf).unwrap_or_else(|_| fatal("ntplab clock shim: NTPLAB_VCLOCK_JOURNAL is not text"));
        if let Err(e) = self.follower.feed(&text, clock) {
            fatal(&format!("ntplab clock shim: following NTPLAB_VCLOCK_JOURNAL: {e}"));
        }
    }
}

/// The lab's control page, mapped read-only and shared with the lab.
struct Control {
    /// Address of the mapping ([`CONTROL_BYTES`], page-aligned).
    page: usize,
    /// The generation whose changes the clock has.
    seen: u64,
}

impl Control {
    /// Maps the page at `path`.
    fn map(path: &std::ffi::OsStr) -> Control {
        let name = path.to_string_lossy();
        let f = File::open(path).unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_CONTROL {name}: {e}")));
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < CONTROL_BYTES as u64 {
            fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_CONTROL {name}: {len} octets, not {CONTROL_BYTES}"));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a read-only shared mapping of an open file of at least that length; it stays mapped for the process's life.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), CONTROL_BYTES, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_CONTROL {name}: mmap: {}", std::io::Error::last_os_error()));
        }
        Control { page: p as usize, seen: 0 }
    }

    fn generation(&self) -> u64 {
        // SAFETY: the mapping is page-aligned, at least 8 octets, and lives as long as the process.
        unsafe { (*(self.page as *const AtomicU64)).load(Ordering::Acquire) }
    }

    /// The page's changes when its generation moved since the last call
    /// (the lab writes an odd generation, the text, then an even one: a
    /// change is taken only from an even generation that did not move
    /// while the text was read).
    fn poll(&mut self) -> Option<ntplab_vclock::Changes> {
        let g = self.generation();
        if g == self.seen || g % 2 == 1 {
            return None;
        }
        let mut text = [0u8; CONTROL_BYTES - 8];
        for (i, b) in text.iter_mut().enumerate() {
            // SAFETY: within the mapping; volatile, as the lab may be writing.
            *b = unsafe { std::ptr::read_volatile((self.page + 8 + i) as *const u8) };
        }
        std::sync::atomic::fence(Ordering::Acquire);
        if self.generation() != g {
            return None;
        }
        let changes = ntplab_vclock::control::read(&text).unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_CONTROL: {e}")));
        self.seen = g;
        Some(changes)
    }
}

static STATE: Mutex<Option<Shim>> = Mutex::new(None);

const NS: i128 = 1_000_000_000;

type ClockGettime = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> c_int;
type Recvmsg = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> libc::ssize_t;
type Recvmmsg = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int;
type Ioctl = unsafe extern "C" fn(c_int, std::ffi::c_ulong, *mut c_void) -> c_int;

static REAL_CLOCK_GETTIME: AtomicUsize = AtomicUsize::new(0);
static REAL_RECVMSG: AtomicUsize = AtomicUsize::new(0);
static REAL_RECVMMSG: AtomicUsize = AtomicUsize::new(0);
static REAL_IOCTL: AtomicUsize = AtomicUsize::new(0);
static REAL_STAT: AtomicUsize = AtomicUsize::new(0);
type Stat = unsafe extern "C" fn(*const std::ffi::c_char, *mut libc::stat) -> c_int;

/// The next definition of `name` after this library (libc's).
fn next_symbol(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let p = cache.load(Ordering::Acquire);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if p == 0 {
        fatal(&format!("ntplab clock shim: libc has no {name:?}"));
    }
    cache.store(p, Ordering::Release);
    p
}

fn fatal(msg: &str) -> ! {
    let _ = std::io::stderr().write_all(format!("{msg}\n").as_bytes());
    // SAFETY: _exit ends the process without running anything else.
    unsafe { libc::_exit(70) }
}

unsafe fn real_clock_gettime(clk: libc::clockid_t, ts: *mut libc::timespec) -> c_int {
    let f: ClockGettime = std::mem::transmute(next_symbol(&REAL_CLOCK_GETTIME, c"clock_gettime"));
    f(clk, ts)
}

/// The real `CLOCK_REALTIME`, Unix ns.
fn real_now() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec pointer; CLOCK_REALTIME cannot fail.
    unsafe { real_clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    i128::from(ts.tv_sec) * NS + i128::from(ts.tv_nsec)
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn state() -> MutexGuard<'static, Option<Shim>> {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        let now = real_now();
        let params = Params::parse(
            &env("NTPLAB_VCLOCK_OFFSET", "0"),
            &env("NTPLAB_VCLOCK_FREQUENCY", "0"),
            &env("NTPLAB_VCLOCK_EPOCH_NS", &now.to_string()),
            &env("NTPLAB_VCLOCK_WANDER", ""),
        )
            .and_then(|p| p.with_shift(&env("NTPLAB_VCLOCK_SHIFT_NS", "")))
            .unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_*: {e}")));
        let follows = match std::env::var("NTPLAB_VCLOCK_FOLLOW").as_deref() {
            Err(_) | Ok("0") => false,
            Ok("1") => true,
            Ok(v) => fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_FOLLOW={v:?} is not 0 or 1")),
        };
        let follow = follows.then(|| {
            let p = std::env::var_os("NTPLAB_VCLOCK_JOURNAL").unwrap_or_else(|| fatal("ntplab clock shim: NTPLAB_VCLOCK_FOLLOW without NTPLAB_VCLOCK_JOURNAL"));
            // The daemon may not have written it yet: create it empty, never truncate.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&p)
                .unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_JOURNAL {}: {e}", p.to_string_lossy())));
            Follow { file, follower: ntplab_vclock::Follower::new() }
        });
        let mut journal = std::env::var_os("NTPLAB_VCLOCK_JOURNAL").filter(|_| !follows).map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_JOURNAL {}: {e}", p.to_string_lossy())))
        });
        let epoch = params.epoch_unix_ns;
        let mut params = params;
        let mut control = std::env::var_os("NTPLAB_VCLOCK_CONTROL").map(|p| Control::map(&p));
        if let Some(changes) = control.as_mut().and_then(Control::poll) {
            params.changes = changes;
        }
        let mut clock = VirtualClock::new(params, epoch);
        if let Some(k) = std::env::var_os("NTPLAB_VCLOCK_RESUME") {
            clock = resume(&k, params, now, journal.as_mut());
        }
        *g = Some(Shim { clock, journal, control, follow });
    }
    if let Some(s) = g.as_mut() {
        if let Some(changes) = s.control.as_mut().and_then(Control::poll) {
            s.clock.set_changes(changes);
        }
        if let Some(f) = s.follow.as_mut() {
            f.poll(&mut s.clock);
        }
    }
    g
}

/// The host's clock for a daemon started again (`NTPLAB_VCLOCK_RESUME=K`,
/// its K-th start after the first): the journal replayed to now, as the lab
/// replays it. The daemon itself (the journal holds K - 1 resume lines)
/// writes the K-th, from which the lab follows its calls; a helper it
/// starts under the same preload finds K and only reads the clock.
fn resume(k: &std::ffi::OsStr, params: Params, now: i128, journal: Option<&mut File>) -> VirtualClock {
    let k: usize = k.to_str().and_then(|k| k.parse().ok()).filter(|&k| k >= 1).unwrap_or_else(|| fatal("ntplab clock shim: NTPLAB_VCLOCK_RESUME is not a start count of 1 or more"));
    let path = std::env::var_os("NTPLAB_VCLOCK_JOURNAL").unwrap_or_else(|| fatal("ntplab clock shim: NTPLAB_VCLOCK_RESUME without NTPLAB_VCLOCK_JOURNAL"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| fatal(&format!("ntplab clock shim: NTPLAB_VCLOCK_JOURNAL {}: {e}", path.to_string_lossy())));
    let clock = ntplab_vclock::Replay::resume(params, params.epoch_unix_ns, &text, now).unwrap_or_else(|e| fatal(&format!("ntplab clock shim: resuming: {e}")));
    if ntplab_vclock::resumes(&text) + 1 == k {
        if let Some(j) = journal {
            let line = format!("{}\n", ntplab_vclock::resume_line(std::process::id(), now));
            if let Err(e) = j.write_all(line.as_bytes()) {
                fatal(&format!("ntplab clock shim: writing the journal: {e}"));
            }
        }
    }
    clock
}

/// Applies a clock-changing call and journals it.
fn change(op: JournalOp) -> Result<(i32, Timex), i32> {
    let mut g = state();
    let s = g.as_mut().unwrap_or_else(|| fatal("ntplab clock shim: no state"));
    if s.follow.is_some() {
        return Err(libc::EPERM);
    }
    let now = real_now();
    let result = match op {
        JournalOp::Adjtimex(t) => {
            let mut out = t;
            s.clock.adjtimex(now, &mut out).map(|r| (r, out))
        }
        JournalOp::SetTime(ns) => {
            s.clock.set_time(now, ns);
            Ok((0, Timex::default()))
        }
    };
    if result.is_ok() {
        if let Some(j) = s.journal.as_mut() {
            let line = format!("{}\n", op.line(std::process::id(), now));
            if let Err(e) = j.write_all(line.as_bytes()) {
                fatal(&format!("ntplab clock shim: writing the journal: {e}"));
            }
        }
    }
    result
}

fn local_ns(tai: bool) -> i128 {
    let g = state();
    let s = g.as_ref().unwrap_or_else(|| fatal("ntplab clock shim: no state"));
    let now = real_now();
    if tai {
        s.clock.tai_unix_ns(now)
    } else {
        s.clock.now_unix_ns(now)
    }
}

/// Translates a real-clock timestamp to the process's clock.
fn translate(real_ns: i128) -> i128 {
    let g = state();
    let s = g.as_ref().unwrap_or_else(|| fatal("ntplab clock shim: no state"));
    s.clock.now_unix_ns(real_ns)
}

fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local and always valid.
    unsafe { *libc::__errno_location() = e };
}

fn split(ns: i128) -> (i64, i64) {
    (ns.div_euclid(NS) as i64, ns.rem_euclid(NS) as i64)
}

const REALTIME_CLOCKS: [libc::clockid_t; 3] = [libc::CLOCK_REALTIME, libc::CLOCK_REALTIME_COARSE, libc::CLOCK_REALTIME_ALARM];

/// # Safety
/// `ts` must be a valid pointer, as for libc's `clock_gettime`.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clk: libc::clockid_t, ts: *mut libc::timespec) -> c_int {
    let tai = clk == libc::CLOCK_TAI;
    if !tai && !REALTIME_CLOCKS.contains(&clk) {
        return real_clock_gettime(clk, ts);
    }
    if ts.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    let (s, n) = split(local_ns(tai));
    *ts = libc::timespec { tv_sec: s, tv_nsec: n };
    0
}

/// # Safety
/// As for libc's `gettimeofday`.
#[no_mangle]
pub unsafe extern "C" fn gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> c_int {
    if !tv.is_null() {
        let (s, n) = split(local_ns(false));
        *tv = libc::timeval { tv_sec: s, tv_usec: n / 1000 };
    }
    if !tz.is_null() {
        std::ptr::write_bytes(tz as *mut u8, 0, 8);
    }
    0
}

/// # Safety
/// As for libc's `time`.
#[no_mangle]
pub unsafe extern "C" fn time(t: *mut libc::time_t) -> libc::time_t {
    let (s, _) = split(local_ns(false));
    if !t.is_null() {
        *t = s;
    }
    s
}

/// Sets the clock to `ns` (the shim's `clock_settime` and `settimeofday`):
/// 0, or -1 with `errno` (a helper following the daemon's clock: EPERM).
fn set_time(ns: i128) -> c_int {
    match change(JournalOp::SetTime(ns)) {
        Ok(_) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// # Safety
/// As for libc's `clock_settime`.
#[no_mangle]
pub unsafe extern "C" fn clock_settime(clk: libc::clockid_t, ts: *const libc::timespec) -> c_int {
    if clk != libc::CLOCK_REALTIME {
        // Other clocks cannot be set on Linux either.
        set_errno(libc::EINVAL);
        return -1;
    }
    if ts.is_null() || !(0..1_000_000_000).contains(&(*ts).tv_nsec) {
        set_errno(libc::EINVAL);
        return -1;
    }
    let ns = i128::from((*ts).tv_sec) * NS + i128::from((*ts).tv_nsec);
    set_time(ns)
}

/// # Safety
/// As for libc's `settimeofday`.
#[no_mangle]
pub unsafe extern "C" fn settimeofday(tv: *const libc::timeval, _tz: *const c_void) -> c_int {
    if tv.is_null() {
        return 0;
    }
    if !(0..1_000_000).contains(&(*tv).tv_usec) {
        set_errno(libc::EINVAL);
        return -1;
    }
    let ns = i128::from((*tv).tv_sec) * NS + i128::from((*tv).tv_usec) * 1000;
    set_time(ns)
}

fn from_libc(tx: &libc::timex) -> Timex {
    Timex {
        modes: tx.modes,
        offset: tx.offset,
        freq: tx.freq,
        maxerror: tx.maxerror,
        esterror: tx.esterror,
        status: tx.status,
        constant: tx.constant,
        precision: tx.precision,
        tolerance: tx.tolerance,
        time_sec: tx.time.tv_sec,
        time_frac: tx.time.tv_usec,
        tick: tx.tick,
        tai: tx.tai,
    }
}

fn to_libc(t: &Timex, tx: &mut libc::timex) {
    tx.offset = t.offset;
    tx.freq = t.freq;
    tx.maxerror = t.maxerror;
    tx.esterror = t.esterror;
    tx.status = t.status;
    tx.constant = t.constant;
    tx.precision = t.precision;
    tx.tolerance = t.tolerance;
    tx.time.tv_sec = t.time_sec;
    tx.time.tv_usec = t.time_frac;
    tx.tick = t.tick;
    tx.tai = t.tai;
    // No PPS discipline in the model.
    tx.ppsfreq = 0;
    tx.jitter = 0;
    tx.shift = 0;
    tx.stabil = 0;
    tx.jitcnt = 0;
    tx.calcnt = 0;
    tx.errcnt = 0;
    tx.stbcnt = 0;
}

unsafe fn virtual_adjtimex(tx: *mut libc::timex) -> c_int {
    if tx.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    match change(JournalOp::Adjtimex(from_libc(&*tx))) {
        Ok((state, out)) => {
            to_libc(&out, &mut *tx);
            state
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// # Safety
/// As for libc's `adjtimex`.
#[no_mangle]
pub unsafe extern "C" fn adjtimex(tx: *mut libc::timex) -> c_int {
    virtual_adjtimex(tx)
}

/// # Safety
/// As for libc's `__adjtimex`.
#[no_mangle]
pub unsafe extern "C" fn __adjtimex(tx: *mut libc::timex) -> c_int {
    virtual_adjtimex(tx)
}

/// # Safety
/// As for libc's `ntp_adjtime`.
#[no_mangle]
pub unsafe extern "C" fn ntp_adjtime(tx: *mut libc::timex) -> c_int {
    virtual_adjtimex(tx)
}

/// # Safety
/// As for libc's `clock_adjtime`. Clocks other than `CLOCK_REALTIME` (PHCs)
/// go to the kernel, which refuses changes without CAP_SYS_TIME.
#[no_mangle]
pub unsafe extern "C" fn clock_adjtime(clk: libc::clockid_t, tx: *mut libc::timex) -> c_int {
    if clk == libc::CLOCK_REALTIME {
        virtual_adjtimex(tx)
    } else {
        libc::syscall(libc::SYS_clock_adjtime, clk, tx) as c_int
    }
}

/// # Safety
/// As for libc's `adjtime`.
#[no_mangle]
pub unsafe extern "C" fn adjtime(delta: *const libc::timeval, old: *mut libc::timeval) -> c_int {
    let mut t = Timex { modes: ntplab_vclock::modes::ADJ_OFFSET_SS_READ, ..Timex::default() };
    if !delta.is_null() {
        let us = i128::from((*delta).tv_sec) * 1_000_000 + i128::from((*delta).tv_usec);
        // The kernel's adjtime limit.
        if us.abs() > i128::from(i32::MAX) {
            set_errno(libc::EINVAL);
            return -1;
        }
        t = Timex { modes: ntplab_vclock::modes::ADJ_OFFSET_SINGLESHOT, offset: us as i64, ..Timex::default() };
    }
    match change(JournalOp::Adjtimex(t)) {
        Ok((_, out)) => {
            if !old.is_null() {
                *old = libc::timeval { tv_sec: out.offset.div_euclid(1_000_000), tv_usec: out.offset.rem_euclid(1_000_000) };
            }
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

const SO_TIMESTAMP_OLD: c_int = 29;
const SO_TIMESTAMPNS_OLD: c_int = 35;
const SO_TIMESTAMPING_OLD: c_int = 37;
const SO_TIMESTAMP_NEW: c_int = 63;
const SO_TIMESTAMPNS_NEW: c_int = 64;
const SO_TIMESTAMPING_NEW: c_int = 65;

/// Rewrites kernel timestamps in `msg`'s control messages to the process's clock.
unsafe fn translate_cmsgs(msg: *mut libc::msghdr) {
    if msg.is_null() || (*msg).msg_control.is_null() {
        return;
    }
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        if (*c).cmsg_level == libc::SOL_SOCKET {
            let data = libc::CMSG_DATA(c) as *mut i64;
            let len = (*c).cmsg_len as usize - (data as usize - c as usize);
            let (pairs, micro) = match (*c).cmsg_type {
                SO_TIMESTAMP_OLD | SO_TIMESTAMP_NEW => (1, true),
                SO_TIMESTAMPNS_OLD | SO_TIMESTAMPNS_NEW => (1, false),
                // Software stamp first; the hardware stamps (PHC time) are left alone.
                SO_TIMESTAMPING_OLD | SO_TIMESTAMPING_NEW => (1, false),
                _ => (0, false),
            };
            if pairs == 1 && len >= 16 {
                let sec = data.read_unaligned();
                let frac = data.add(1).read_unaligned();
                if sec != 0 || frac != 0 {
                    let real = i128::from(sec) * NS + i128::from(frac) * if micro { 1000 } else { 1 };
                    let (s, n) = split(translate(real));
                    data.write_unaligned(s);
                    data.add(1).write_unaligned(if micro { n / 1000 } else { n });
                }
            }
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
}

/// # Safety
/// As for libc's `recvmsg`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> libc::ssize_t {
    let f: Recvmsg = std::mem::transmute(next_symbol(&REAL_RECVMSG, c"recvmsg"));
    let r = f(fd, msg, flags);
    if r >= 0 {
        translate_cmsgs(msg);
    }
    r
}

/// # Safety
/// As for libc's `recvmmsg`.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(fd: c_int, msgs: *mut libc::mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int {
    let f: Recvmmsg = std::mem::transmute(next_symbol(&REAL_RECVMMSG, c"recvmmsg"));
    let r = f(fd, msgs, vlen, flags, timeout);
    for i in 0..r.max(0) as usize {
        translate_cmsgs(&mut (*msgs.add(i)).msg_hdr);
    }
    r
}

/// `ioctl`, passed through; the edge times of a kernel PPS device's
/// `PPS_FETCH` are translated to the process's clock.
///
/// libc declares `ioctl(int, unsigned long, ...)`. Every request takes at
/// most one argument, an integer or a pointer, which a variadic call passes
/// in the same register as a third fixed argument on the 64-bit Linux ABIs
/// (x86-64 System V, AArch64), so it is taken as one and handed on as is.
///
/// # Safety
/// As for libc's `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: std::ffi::c_ulong, arg: *mut c_void) -> c_int {
    let f: Ioctl = std::mem::transmute(next_symbol(&REAL_IOCTL, c"ioctl"));
    let r = f(fd, request, arg);
    if r == 0 && request == ntplab_vclock::pps::PPS_FETCH as std::ffi::c_ulong && !arg.is_null() {
        let fdata = &mut *(arg as *mut [u8; ntplab_vclock::pps::FDATA_BYTES]);
        ntplab_vclock::pps::translate_fdata(fdata, translate);
    }
    r
}

/// The path whose `stat` reports a pty as a UART (`NTPLAB_SERIAL_DEVICE`).
fn serial_device() -> Option<&'static std::ffi::CStr> {
    static PATH: std::sync::OnceLock<Option<std::ffi::CString>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        use std::os::unix::ffi::OsStringExt;
        std::env::var_os("NTPLAB_SERIAL_DEVICE").and_then(|p| std::ffi::CString::new(p.into_vec()).ok())
    })
    .as_deref()
}

/// `stat`, passed through; for `NTPLAB_SERIAL_DEVICE` a pty slave's device
/// number is reported as a UART's (see the crate documentation).
///
/// # Safety
/// As for libc's `stat`.
#[no_mangle]
pub unsafe extern "C" fn stat(path: *const std::ffi::c_char, buf: *mut libc::stat) -> c_int {
    let f: Stat = std::mem::transmute(next_symbol(&REAL_STAT, c"stat"));
    let r = f(path, buf);
    if r == 0 && !path.is_null() && !buf.is_null() {
        if let Some(serial) = serial_device() {
            if std::ffi::CStr::from_ptr(path) == serial {
                let st = &mut *buf;
                let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                if (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && (136..=143).contains(&major) {
                    st.st_rdev = libc::makedev(4, 64 + ((major - 136) << 8 | minor));
                }
            }
        }
    }
    r
}
