//! A scenario host's GPS receiver and PPS output in the virtual lab, fed in
//! real time from the simulator's models (`ntplab_sim::gps`): the NMEA
//! sentences through a pseudo-terminal pair (the daemon reads the slave side
//! as its serial port: ntplab's daemon, ntpsec's NMEA driver), the pulses as
//! chrony SOCK samples sent to the socket the daemon binds (ntplab's
//! `pps_socket`, chronyd's `refclock SOCK`, ntpd-rs's `sock` source), each
//! in the form its program reads ([`PulseSamples`]).
//!
//! Each true second (the machine's real clock is true time) the feeder draws
//! the receiver's serial chunks and the pulse edge exactly as the
//! simulator's reference clock does, and delivers each at its real time: a
//! chunk is written to the pty master when its last byte has left the
//! receiver; a pulse becomes a SOCK sample stamped with the daemon's own
//! clock at the edge (what the kernel's PPS timestamp would read), which the
//! lab takes from the host's clock journal replayed up to then.
//! A pulse sample sent late by the scheduler still carries the edge's
//! stamp (and ntpd-rs, which stamps a sample when it arrives, the offset at
//! the edge), so scheduling delays only matter to the serial data (as for a
//! real serial port read in user space).

use ntplab_sim::gps::{GpsFault, GpsReceiver, PpsModel, SerialChunk};
use ntplab_sim::refclock::{Draws, SimRefclockConfig};
use ntplab_sim::rng::SimRng;
use ntplab_proto::time::NtpTime;
use ntplab_vclock::{Params, Replay};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A pseudo-terminal pair: the lab writes the master, the daemon opens the slave by its path.
pub struct Pty {
    master: OwnedFd,
    /// Held open so that the master can be written before the daemon opens the slave.
    _slave: OwnedFd,
    /// `/dev/pts/N`.
    pub slave_path: PathBuf,
}

impl Pty {
    /// Opens a pair with the slave in raw mode (no echo, no line editing:
    /// the bytes arrive as a serial port delivers them) and the master
    /// non-blocking.
    pub fn open() -> Result<Pty, String> {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and winsize pointers may be null.
        if unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } != 0 {
            return Err(format!("openpty failed: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let mut buf = [0 as libc::c_char; 128];
        // SAFETY: a valid descriptor and a buffer of the given length.
        if unsafe { libc::ttyname_r(slave.as_raw_fd(), buf.as_mut_ptr(), buf.len()) } != 0 {
            return Err("ttyname_r failed on the pty slave".into());
        }
        // SAFETY: ttyname_r wrote a NUL-terminated name.
        let slave_path = PathBuf::from(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned());
        // SAFETY: termios is plain data; tcgetattr fills it for a valid tty descriptor.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(slave.as_raw_fd(), &mut t) != 0 {
                return Err(format!("tcgetattr on {} failed: {}", slave_path.display(), std::io::Error::last_os_error()));
            }
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) != 0 {
                return Err(format!("tcsetattr on {} failed: {}", slave_path.display(), std::io::Error::last_os_error()));
            }
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Pty { master, _slave: slave, slave_path })
    }

    /// Writes `bytes` to the master; what does not fit (nobody reads) is dropped.
    pub fn write(&self, bytes: &[u8]) -> usize {
        // SAFETY: a valid descriptor and buffer.
        let n = unsafe { libc::write(self.master.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// What a feeder delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Serial bytes written.
    pub serial_bytes: u64,
    /// Pulse samples sent (and not refused by the socket).
    pub pulses: u64,
    /// Pulses the model dropped.
    pub dropouts: u64,
}

/// A host's reference clock being fed; [`Feeder::finish`] stops it.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Fed>>,
}

/// Where a host's daemon reads its reference clock in the lab.
pub struct Devices {
    /// The pty (kinds with NMEA).
    pub pty: Option<Pty>,
    /// The SOCK socket the daemon creates (kinds with pulses).
    pub pps_socket: Option<PathBuf>,
}

impl Devices {
    /// Opens the devices `config` needs; the PPS socket is `dir/NAME.pps.sock`.
    pub fn open(config: &SimRefclockConfig, dir: &Path, name: &str) -> Result<Devices, String> {
        let pty = if config.kind.uses_serial() { Some(Pty::open()?) } else { None };
        let pps_socket = config.kind.uses_pps().then(|| dir.join(format!("{name}.pps.sock")));
        Ok(Devices { pty, pps_socket })
    }
}

/// The random streams of a host's reference clock in the lab: the
/// simulator's names, for the host's first daemon start.
fn streams(seed: u64, host: usize) -> (SimRng, SimRng) {
    let mut base = SimRng::derive(seed, &format!("lab-refclock/{host}"));
    (base.fork("gps"), base.fork("pps"))
}

/// Moves fault windows from the scenario's time scale (starting at
/// `scenario_start`) to the lab's (starting at `lab_start`).
pub fn shift_faults(faults: &[GpsFault], scenario_start: NtpTime, lab_start: NtpTime) -> Vec<GpsFault> {
    let by = lab_start.duration_since(scenario_start);
    faults
        .iter()
        .map(|f| match *f {
            GpsFault::FixLoss { from, until } => GpsFault::FixLoss { from: from + by, until: until + by },
            GpsFault::Wnro { from, until } => GpsFault::Wnro { from: from + by, until: until + by },
        })
        .collect()
}

/// The termios speed of `baud` (one of the daemon's `BAUD_RATES`).
fn speed(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19_200 => libc::B19200,
        38_400 => libc::B38400,
        57_600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        _ => return None,
    })
}

/// Opens a real serial port for reading, raw 8N1 at `baud`, without
/// becoming its controlling terminal or waiting for carrier.
pub fn open_serial(path: &Path, baud: u32) -> Result<OwnedFd, String> {
    let speed = speed(baud).ok_or_else(|| format!("{}: baud {baud} is not a serial speed the lab knows", path.display()))?;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("{}: a NUL in the path", path.display()))?;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("cannot open the serial port {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: termios is plain data; the calls get a valid descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd.as_raw_fd(), &mut t) != 0 {
            return Err(format!("{} is not a serial port (tcgetattr: {})", path.display(), std::io::Error::last_os_error()));
        }
        libc::cfmakeraw(&mut t);
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        libc::cfsetispeed(&mut t, speed);
        libc::cfsetospeed(&mut t, speed);
        if libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(format!("cannot set {} to {baud} baud raw: {}", path.display(), std::io::Error::last_os_error()));
        }
    }
    Ok(fd)
}

/// What a serial relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Octets read from the receiver and written to the daemon's pty.
    pub relayed_bytes: u64,
    /// Octets read while the line was cut (a fix loss), not passed on.
    pub cut_bytes: u64,
}

/// A real GPS receiver's serial output relayed into the pty its host's
/// daemon reads, with the line cut (nothing passed on) during the
/// scenario's fix-loss windows; [`SerialRelay::finish`] stops it.
pub struct SerialRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Relayed>>,
}

/// Whether real time `now` (Unix ns) is in one of the `[from, until)` windows.
pub fn cut_at(cuts: &[(i128, i128)], now: i128) -> bool {
    cuts.iter().any(|&(from, until)| from <= now && now < until)
}

/// The fix-loss windows of `faults` in real time (Unix ns).
pub fn fix_loss_windows(faults: &[GpsFault]) -> Vec<(i128, i128)> {
    faults
        .iter()
        .filter_map(|f| match *f {
            GpsFault::FixLoss { from, until } => Some((ntp_to_unix_ns(from), ntp_to_unix_ns(until))),
            GpsFault::Wnro { .. } => None,
        })
        .collect()
}

impl SerialRelay {
    /// Relays `device` into `pty` from now until real time `until` (Unix
    /// ns), cut during `cuts`. What the receiver sent before is discarded:
    /// its times are past.
    pub fn start(device: OwnedFd, pty: Pty, cuts: Vec<(i128, i128)>, until: i128) -> SerialRelay {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || relay(&device, &pty, &cuts, until, &flag));
        SerialRelay { stop, thread: Some(thread) }
    }

    /// Stops the relay and says what it passed on.
    pub fn finish(mut self) -> Relayed {
        self.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for SerialRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(device: &OwnedFd, pty: &Pty, cuts: &[(i128, i128)], until: i128, stop: &AtomicBool) -> Relayed {
    let mut done = Relayed::default();
    // SAFETY: a valid descriptor.
    unsafe { libc::tcflush(device.as_raw_fd(), libc::TCIFLUSH) };
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Acquire) && crate::emulator::real_now_ns() < until {
        let mut p = libc::pollfd { fd: device.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; 50 ms so that a stop is seen.
        let ready = unsafe { libc::poll(&mut p, 1, 50) };
        if ready <= 0 || p.revents & libc::POLLIN == 0 {
            if ready > 0 {
                // Hung up or in error (a pty whose other end closed): wait for it to come back.
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        // SAFETY: a valid descriptor and buffer.
        let n = unsafe { libc::read(device.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // An error (EIO: a line whose other end is gone) or an end of file
        // comes back at once from poll: wait before asking again.
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if cut_at(cuts, crate::emulator::real_now_ns()) {
            done.cut_bytes += n as u64;
        } else {
            done.relayed_bytes += pty.write(&buf[..n]) as u64;
        }
    }
    done
}

/// One item to deliver: its real time (Unix ns) and what.
enum Delivery {
    Serial(Vec<u8>),
    /// A pulse edge (its real time is the item's).
    Pulse,
}

/// The deliveries of the true second `second`, in time order.
fn second_plan(second: NtpTime, gps: Option<&GpsReceiver>, pps: Option<&PpsModel>, gps_rng: &mut SimRng, pps_rng: &mut SimRng, fed: &mut Fed) -> Vec<(i128, Delivery)> {
    let mut plan = Vec::new();
    if let Some(p) = pps {
        match p.pulse(second, &mut Draws(pps_rng)) {
            Some(edge) => plan.push((ntp_to_unix_ns(edge), Delivery::Pulse)),
            None => fed.dropouts += 1,
        }
    }
    if let Some(g) = gps {
        for SerialChunk { true_time, bytes } in g.emit_second(second, &mut Draws(gps_rng)) {
            plan.push((ntp_to_unix_ns(true_time), Delivery::Serial(bytes)));
        }
    }
    plan.sort_by_key(|(t, _)| *t);
    plan
}

fn ntp_to_unix_ns(t: NtpTime) -> i128 {
    let (s, n) = t.to_unix();
    i128::from(s) * 1_000_000_000 + i128::from(n)
}

/// The host's clock reading (Unix ns) at real time `real_ns`, from its
/// journal so far (a journal not yet written: the free-running oscillator).
fn local_at(params: Params, epoch: i128, journal: &Path, real_ns: i128) -> i128 {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    match Replay::parse(params, epoch, &text, &journal.display().to_string()) {
        Ok(r) => r.clock_at(real_ns).now_unix_ns(real_ns),
        Err(_) => ntp_to_unix_ns(params.raw_at(real_ns)),
    }
}

/// How a feeder writes a pulse as a SOCK sample: as the program reading
/// the socket takes one. `tv` is the edge's stamp on the host's clock in
/// every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulseSamples {
    /// `pulse` = 1, `offset` = the stamp's fraction of a second, in [0, 1)
    /// (to the nanosecond): chronyd passes a pulse sample's offset to
    /// `RCL_AddPulse` as the `second` its PPS driver passes (`1e-9 *
    /// ts.tv_nsec` of the kernel's edge stamp; refclock_sock.c,
    /// refclock_pps.c), and takes the pulse's offset as minus that, modulo
    /// one second. ntplab's daemon reads it the same way
    /// ([`ntplab_daemon::refclock::sock::SockSample::pulse_edge`]).
    ChronyPulse,
    /// `pulse` = 0, `offset` = the whole second nearest the stamp − the
    /// stamp, in (−0.5, 0.5]: a time sample saying what a pulse alone says
    /// when the clock is within half a second (ntplab's `pps` kind assumes
    /// as much). For ntpd-rs 1.9, whose `sock` source refuses pulse samples
    /// (sock_source.rs: `WrongPulse`) and stamps a sample with its clock
    /// when it arrives (it ignores `tv`).
    NearestSecond,
}

impl PulseSamples {
    /// The sample for an edge stamped `local` (Unix ns on the host's
    /// clock): every form says where in the host's second the edge came,
    /// not which true second it marks (the reader knows that from its own
    /// time).
    pub fn sample(self, local: i128) -> [u8; ntplab_daemon::refclock::sock::SOCK_SAMPLE_LEN] {
        let (secs, micros) = (local.div_euclid(1_000_000_000) as i64, (local.rem_euclid(1_000_000_000) / 1000) as i64);
        let fraction = local.rem_euclid(1_000_000_000);
        let (offset, pulse) = match self {
            PulseSamples::ChronyPulse => (fraction as f64 * 1e-9, true),
            PulseSamples::NearestSecond => {
                let to_nearest = if fraction >= 500_000_000 { 1_000_000_000 - fraction } else { -fraction };
                (to_nearest as f64 * 1e-9, false)
            }
        };
        ntplab_daemon::refclock::sock::encode_sock_sample(secs, micros, offset, pulse, 0)
    }
}

/// What a feeder needs to know about its host.
pub struct FeedSpec {
    pub config: SimRefclockConfig,
    /// The scenario's start and the lab's (for fault windows).
    pub scenario_start: NtpTime,
    pub lab_start: NtpTime,
    /// The host's oscillator and clock journal, to stamp pulses with its clock.
    pub params: Params,
    pub epoch: i128,
    pub journal: PathBuf,
    /// The scenario's seed and the host's index (random streams).
    pub seed: u64,
    pub host: usize,
    /// Real time (Unix ns) after which nothing more is sent.
    pub until: i128,
    /// How pulses are written for the host's program.
    pub samples: PulseSamples,
}

impl Feeder {
    /// Starts feeding `devices` from the models of `spec`, from the next
    /// whole real second on.
    pub fn start(spec: FeedSpec, devices: Devices) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || feed(spec, devices, &flag));
        Feeder { stop, thread: Some(thread) }
    }

    /// Stops the feeder and says what it delivered.
    pub fn finish(mut self) -> Fed {
        self.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps until real time `at` (Unix ns), in steps of at most 50 ms so
/// that a stop is seen; false when stopped or past `until`.
fn sleep_until(at: i128, until: i128, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        let now = crate::emulator::real_now_ns();
        if now >= at {
            return at <= until;
        }
        let left = u64::try_from(at - now).unwrap_or(0);
        std::thread::sleep(Duration::from_nanos(left.min(50_000_000)));
    }
}

fn feed(spec: FeedSpec, devices: Devices, stop: &AtomicBool) -> Fed {
    let mut fed = Fed::default();
    let mut gps_config = spec.config.gps.clone();
    gps_config.faults = shift_faults(&gps_config.faults, spec.scenario_start, spec.lab_start);
    let gps = devices.pty.as_ref().map(|_| GpsReceiver::new(gps_config));
    let pps = devices.pps_socket.as_ref().map(|_| PpsModel::new(spec.config.pps));
    let socket = std::os::unix::net::UnixDatagram::unbound().ok();
    let (mut gps_rng, mut pps_rng) = streams(spec.seed, spec.host);
    let first = crate::emulator::real_now_ns().div_euclid(1_000_000_000) + 1;
    // One iteration per second: bounded by the run's end.
    let last = spec.until.div_euclid(1_000_000_000);
    for s in first..=last {
        let second = crate::run::lab_start(s * 1_000_000_000);
        for (at, what) in second_plan(second, gps.as_ref(), pps.as_ref(), &mut gps_rng, &mut pps_rng, &mut fed) {
            if !sleep_until(at, spec.until, stop) {
                return fed;
            }
            match what {
                Delivery::Serial(bytes) => {
                    if let Some(p) = &devices.pty {
                        fed.serial_bytes += p.write(&bytes) as u64;
                    }
                }
                Delivery::Pulse => {
                    let (Some(sock), Some(path)) = (&socket, &devices.pps_socket) else { continue };
                    let local = local_at(spec.params, spec.epoch, &spec.journal, at);
                    let sample = spec.samples.sample(local);
                    if sock.send_to(&sample, path).is_ok() {
                        fed.pulses += 1;
                    }
                }
            }
        }
    }
    fed
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_daemon::config::RefclockKind;
    use ntplab_proto::time::NtpDuration;
    use std::io::Read;

    #[test]
    fn fault_windows_move_to_the_lab_time_scale() {
        let s = NtpTime::from_unix(1_767_225_600, 0);
        let l = NtpTime::from_unix(1_800_000_000, 0);
        let f = [GpsFault::FixLoss { from: s + NtpDuration::from_seconds_f64(10.0), until: s + NtpDuration::from_seconds_f64(20.0) }];
        assert_eq!(shift_faults(&f, s, l), vec![GpsFault::FixLoss { from: l + NtpDuration::from_seconds_f64(10.0), until: l + NtpDuration::from_seconds_f64(20.0) }]);
    }

    #[test]
    fn a_second_brings_the_pulse_first_then_the_sentences_naming_it() {
        let config = SimRefclockConfig::new(RefclockKind::GpsPps);
        let (mut g, mut p) = streams(1, 0);
        let second = NtpTime::from_unix(1_800_000_000, 0);
        let mut fed = Fed::default();
        let plan = second_plan(second, Some(&GpsReceiver::new(config.gps.clone())), Some(&PpsModel::new(config.pps)), &mut g, &mut p, &mut fed);
        let start = ntp_to_unix_ns(second);
        assert!(matches!(plan[0].1, Delivery::Pulse));
        // The edge 50 ns (+ 20 ns jitter) after the second.
        assert!((plan[0].0 - start - 50).abs() < 1000, "{}", plan[0].0 - start);
        let serial: Vec<u8> = plan.iter().filter_map(|(_, d)| if let Delivery::Serial(b) = d { Some(b.clone()) } else { None }).flatten().collect();
        let text = String::from_utf8(serial).unwrap();
        assert!(text.starts_with("$GPRMC,") && text.contains("GGA,") && text.ends_with("\r\n"), "{text}");
        // 100-300 ms after the second, as the simulator's default receiver.
        assert!(plan[1..].iter().all(|(t, _)| *t - start > 100_000_000 && *t - start < 600_000_000));
    }

    #[test]
    fn a_pulse_is_written_as_each_program_reads_it() {
        use ntplab_daemon::refclock::sock::parse_sock_sample;
        let marked = 1_800_000_000 * 1_000_000_000i128;
        // The host's clock 1.25 us ahead at the edge, then 0.3 s behind.
        for (local, fraction_s, to_nearest_s) in [(marked + 1_250, 1.25e-6, -1.25e-6), (marked - 300_000_000, 0.7, 0.3)] {
            // chronyd and ntplab's daemon: the stamp's fraction of a second,
            // as chrony's PPS driver passes it; the daemon finds the edge's
            // stamp again to the nanosecond.
            let chrony = parse_sock_sample(&PulseSamples::ChronyPulse.sample(local)).unwrap();
            assert!(chrony.pulse);
            assert_eq!(chrony.time, NtpTime::from_unix((local.div_euclid(1_000_000_000)) as i64, ((local.rem_euclid(1_000_000_000) / 1000) * 1000) as u32));
            assert!((chrony.offset - fraction_s).abs() < 1e-12, "{chrony:?}");
            let edge = chrony.pulse_edge();
            let stamp = NtpTime::from_unix(local.div_euclid(1_000_000_000) as i64, local.rem_euclid(1_000_000_000) as u32);
            assert!(edge.duration_since(stamp).abs() < ntplab_proto::time::NtpDuration::from_nanos(2), "{:?}", edge.duration_since(stamp));
            // ntpd-rs: a time sample to the nearest second, whatever second the pulse marked.
            let rs = parse_sock_sample(&PulseSamples::NearestSecond.sample(local)).unwrap();
            assert!(!rs.pulse);
            assert!((rs.offset - to_nearest_s).abs() < 1e-12, "{rs:?}");
        }
        // Half a second exactly: (-0.5, 0.5], as ntplab's locked pulses.
        let half = parse_sock_sample(&PulseSamples::NearestSecond.sample(marked + 500_000_000)).unwrap();
        assert_eq!(half.offset, 0.5);
    }

    #[test]
    fn the_shims_pps_fetch_layout_is_the_daemons() {
        use ntplab_daemon::refclock::kpps::{PpsFdata, PpsKinfo, PPS_FETCH};
        use ntplab_vclock::pps;
        assert_eq!(pps::PPS_FETCH, PPS_FETCH);
        assert_eq!(std::mem::size_of::<PpsFdata>(), pps::FDATA_BYTES);
        assert_eq!(std::mem::offset_of!(PpsFdata, info) + std::mem::offset_of!(PpsKinfo, assert_tu), pps::ASSERT_TU_OFFSET);
        assert_eq!(std::mem::offset_of!(PpsFdata, info) + std::mem::offset_of!(PpsKinfo, clear_tu), pps::CLEAR_TU_OFFSET);
    }

    #[test]
    fn a_serial_relay_passes_the_receivers_bytes_on_and_cuts_the_line_in_a_fix_loss() {
        // The "receiver": a pty whose slave the relay opens as a serial port.
        let receiver = Pty::open().unwrap();
        let device = open_serial(&receiver.slave_path, 4800).unwrap();
        let to_daemon = Pty::open().unwrap();
        let mut daemon = std::fs::File::open(&to_daemon.slave_path).unwrap();
        let now = crate::emulator::real_now_ns();
        // Cut from 0.4 s to 0.8 s from now.
        let cuts = vec![(now + 400_000_000, now + 800_000_000)];
        assert!(!cut_at(&cuts, now) && cut_at(&cuts, now + 500_000_000) && !cut_at(&cuts, now + 800_000_000));
        let relay = SerialRelay::start(device, to_daemon, cuts, now + 5_000_000_000);
        std::thread::sleep(Duration::from_millis(100));
        let sentence = b"$GPZDA,000000.00,01,01,2027,00,00*6A\r\n";
        assert_eq!(receiver.write(sentence), sentence.len());
        let mut got = vec![0u8; sentence.len()];
        daemon.read_exact(&mut got).unwrap();
        assert_eq!(&got, sentence);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(receiver.write(b"$GPRMC,cut\r\n"), 12);
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(receiver.write(sentence), sentence.len());
        daemon.read_exact(&mut got).unwrap();
        assert_eq!(&got, sentence, "the line is back after the cut, and what was sent during it never arrives");
        assert_eq!(relay.finish(), Relayed { relayed_bytes: 2 * sentence.len() as u64, cut_bytes: 12 });
        let plain = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        let e = open_serial(plain, 9600).unwrap_err();
        assert!(e.contains(&format!("{} is not a serial port", plain.display())), "{e}");
        assert!(open_serial(Path::new("/dev/null"), 9601).unwrap_err().contains("baud 9601"));
    }

    #[test]
    fn a_pty_carries_the_bytes_as_they_are() {
        let pty = Pty::open().unwrap();
        assert!(pty.slave_path.starts_with("/dev/pts"), "{}", pty.slave_path.display());
        let mut reader = std::fs::File::open(&pty.slave_path).unwrap();
        let line = b"$GPZDA,000000.00,01,01,2027,00,00*6A\r\n";
        assert_eq!(pty.write(line), line.len());
        let mut got = vec![0u8; line.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, line, "raw mode: no echo, CR LF kept");
    }
}
