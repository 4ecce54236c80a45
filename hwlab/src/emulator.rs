//! The userspace link emulator (this kernel has no `tc netem`).
//!
//! Every host namespace reaches the others only through the lab's router
//! namespace, whose policy routing sends each packet arriving from a host into
//! a TUN device. This thread reads it there, looks up the scenario link
//! between source and destination address and hands each UDP datagram to that
//! direction's [`Path`], the simulator's own link model with the simulator's
//! random stream for that direction: the same draws decide loss, the loss
//! pattern (`pass_every`), duplication and reordering (`reorder`,
//! `reorder_delay`) and the jitter of each copy. A datagram is dropped when
//! no link joins the two hosts or a partition cuts them, else held for each
//! delay the path gives (two for a duplicate, which may arrive in either
//! order; a reordered one is held `reorder_delay` longer and so overtaken) and
//! written back into the TUN device, from where the router forwards it.
//! Every copy is recorded with the real times it entered and left the
//! emulator (the capture of the run), one record per arrival as the
//! simulator's trace has it. TCP (NTS-KE) passes as the simulator's harness
//! passes it: never lost, duplicated or overtaken, after the base delay plus
//! the jitter's mean (0 when the mean is infinite), in order; it is dropped
//! to and from a host whose NTS-KE a `ke_down` event took down.

use ntplab_proto::time::NtpDuration;
use ntplab_sim::link::{Fate, LossReason, Path};
use ntplab_sim::rng::SimRng;
use ntplab_sim::scenario::LinkParams;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most datagrams one run records (the simulator's bound on a trace).
pub const RECORDS_MAX: usize = ntplab_sim::scenario::DATAGRAMS_MAX as usize;

/// A UDP datagram that passed the emulator.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Real time it entered the emulator (sent), Unix ns.
    pub sent_ns: i128,
    /// Real time it left (delivered), Unix ns; None when dropped.
    pub delivered_ns: Option<i128>,
    /// Why it was dropped: `"loss"`, `"loss pattern"`, `"no-link"`, `"partition"`, `"ke-down"` or `"host down"`.
    pub lost: Option<&'static str>,
    /// The second arrival of a duplicated datagram (same octets and send
    /// time as the record before it of the same datagram).
    pub copy: bool,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What the emulator did.
#[derive(Debug, Default)]
pub struct Capture {
    pub datagrams: Vec<Datagram>,
    /// Datagrams beyond [`RECORDS_MAX`], passed but not recorded.
    pub unrecorded: u64,
    /// Non-UDP packets passed (TCP for NTS-KE).
    pub other_packets: u64,
    /// How the emulator thread was scheduled ([`raise_priority`]).
    pub scheduling: String,
    /// How late the emulator wrote datagrams back against their due time:
    /// the largest lateness and the sum over `delivered` writes, ns. Its
    /// latency in reading a datagram (behind the TUN device's queue) is not
    /// seen here; both come from the same scheduling.
    pub late_max_ns: i128,
    pub late_sum_ns: i128,
    pub delivered: u64,
}

/// Real-time priority the emulator thread asks for (SCHED_FIFO, 1-99): above
/// every normal process, so that a busy machine (builds, other tests) does
/// not hold datagrams for milliseconds in the TUN queue or past their due
/// time, which would add that much to the scenario's link delay. It never
/// spins (it sleeps until the next datagram is due or one arrives), so it
/// takes a CPU only for the moments it relays.
pub const EMULATOR_PRIORITY: libc::c_int = 50;

/// Puts the calling thread under SCHED_FIFO at [`EMULATOR_PRIORITY`]; when
/// that is refused (no CAP_SYS_NICE, an RT budget of 0 in a container's
/// cgroup) it stays a normal thread with the least timer slack. Says which.
pub fn raise_priority() -> String {
    let param = libc::sched_param { sched_priority: EMULATOR_PRIORITY };
    // SAFETY: plain calls on the calling thread with a valid parameter.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        return format!("SCHED_FIFO priority {EMULATOR_PRIORITY}");
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    format!("normal (SCHED_FIFO refused: {}; timer slack 1 ns)", std::io::Error::from_raw_os_error(rc))
}

/// The links as they are now; the lab changes them while the emulator runs
/// (timeline events: partitions, heals, link changes).
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    /// Parameters of each direction, (from, to).
    pub params: BTreeMap<(IpAddr, IpAddr), LinkParams>,
    /// The path model of each direction with its random stream ([`LinkState::add_link`]).
    pub paths: BTreeMap<(IpAddr, IpAddr), Path>,
    /// Directions cut on their link, (from, to).
    pub down: BTreeSet<(IpAddr, IpAddr)>,
    /// Host partitions: every packet between a member and a non-member is dropped.
    pub cut_sets: Vec<BTreeSet<IpAddr>>,
    /// Hosts whose TCP (NTS-KE) is unreachable while their UDP still flows
    /// (`ke_down`, as the simulator's harness blocks them).
    pub tcp_blocked: BTreeSet<IpAddr>,
    /// Hosts stopped (`stop` until `start`): every packet from or to them is
    /// dropped as `"host down"` before any draw, as in the simulator's harness.
    pub hosts_down: BTreeSet<IpAddr>,
}

impl LinkState {
    /// Adds a scenario link between hosts `a` and `b` (scenario index, address)
    /// under scenario seed `seed`: `forward` from `a` to `b`, `backward` back,
    /// each direction drawing from the random stream the simulator's harness
    /// gives it (`link/<lower index>/<higher index>/fwd|bwd`).
    pub fn add_link(&mut self, seed: u64, a: (usize, IpAddr), b: (usize, IpAddr), forward: LinkParams, backward: LinkParams) {
        let (lo, hi) = (a.0.min(b.0), a.0.max(b.0));
        for (from, to, params) in [(a, b, forward), (b, a, backward)] {
            let dir = if from.0 <= to.0 { "fwd" } else { "bwd" };
            let rng = SimRng::derive(seed, &format!("link/{lo}/{hi}/{dir}"));
            self.params.insert((from.1, to.1), params);
            self.paths.insert((from.1, to.1), Path::new(ntplab_sim::run::path_config(&params), rng));
        }
    }

    /// What happens to a packet from `src` to `dst` sent now: its one-way
    /// delays in seconds (none, one, or two for a duplicate), or why it is
    /// dropped. UDP (`udp`) takes the path model's draws; anything else the
    /// base delay plus the jitter's mean, never lost but to a partition or,
    /// TCP (`tcp`), to `ke_down`, and draws nothing (as the simulator's
    /// streams see UDP only).
    fn fate(&mut self, src: IpAddr, dst: IpAddr, udp: bool, tcp: bool) -> Result<Vec<f64>, &'static str> {
        if self.hosts_down.contains(&src) || self.hosts_down.contains(&dst) {
            return Err("host down");
        }
        let Some(params) = self.params.get(&(src, dst)).copied() else { return Err("no-link") };
        if self.cut(src, dst) {
            return Err("partition");
        }
        if !udp {
            if tcp && (self.tcp_blocked.contains(&src) || self.tcp_blocked.contains(&dst)) {
                return Err("ke-down");
            }
            let mean = params.jitter.mean_s();
            return Ok(vec![params.delay.as_secs_f64() + if mean.is_finite() { mean } else { 0.0 }]);
        }
        let Some(path) = self.paths.get_mut(&(src, dst)) else { return Err("no-link") };
        // Link changes (`set_link`) patch `params`; the stream carries on.
        path.set_config(ntplab_sim::run::path_config(&params));
        match path.transmit(NtpDuration::ZERO) {
            Fate::Lost(LossReason::Random) => Err("loss"),
            Fate::Lost(LossReason::Pattern) => Err("loss pattern"),
            Fate::Lost(LossReason::LinkDown) => Err("partition"),
            fate => Ok(fate.delays().map(|d| d.to_seconds_f64()).collect()),
        }
    }

    /// Whether a partition drops packets from `src` to `dst`.
    pub fn cut(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.down.contains(&(src, dst)) || self.cut_sets.iter().any(|set| set.contains(&src) != set.contains(&dst))
    }
}

/// The running emulator thread.
pub struct Emulator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Capture, String>>>,
}

/// The real clock, Unix ns.
pub fn real_now_ns() -> i128 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_nanos() as i128
}

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens TUN device `name` in namespace `ns` (the calling thread enters it for good).
fn open_tun(ns: &str, name: &str) -> Result<OwnedFd, String> {
    let path = format!("/run/netns/{ns}\0");
    // SAFETY: NUL-terminated path; the fds are checked and owned.
    unsafe {
        let nsfd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if nsfd < 0 {
            return Err(format!("cannot open namespace {ns}: {}", std::io::Error::last_os_error()));
        }
        let nsfd = OwnedFd::from_raw_fd(nsfd);
        if libc::setns(nsfd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(format!("cannot enter namespace {ns}: {}", std::io::Error::last_os_error()));
        }
        let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(format!("cannot open /dev/net/tun: {}", std::io::Error::last_os_error()));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
        if libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut ifr) != 0 {
            return Err(format!("TUNSETIFF {name}: {}", std::io::Error::last_os_error()));
        }
        Ok(fd)
    }
}

/// A UDP datagram's source port, destination port and payload range in its packet.
type UdpParts = (u16, u16, std::ops::Range<usize>);

/// Source and destination of an IPv4 or IPv6 packet, its protocol (IPv4's
/// protocol, IPv6's next header: 17 UDP, 6 TCP) and the UDP parts when it
/// is UDP. An IPv6 packet with extension headers counts as not UDP.
fn parse_ip(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, Option<UdpParts>)> {
    let (src, dst, proto, header, total) = match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            (IpAddr::V4(src), IpAddr::V4(dst), p[9], ihl.max(20), total)
        }
        6 if p.len() >= 40 => {
            let total = (40 + usize::from(u16::from_be_bytes([p[4], p[5]]))).min(p.len());
            let addr = |at: usize| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[at..at + 16]).unwrap_or_default()));
            (addr(8), addr(24), p[6], 40, total)
        }
        _ => return None,
    };
    let udp = if proto == 17 && total >= header + 8 {
        let u = &p[header..];
        Some((u16::from_be_bytes([u[0], u[1]]), u16::from_be_bytes([u[2], u[3]]), header + 8..total))
    } else {
        None
    };
    Some((src, dst, proto, udp))
}

impl Emulator {
    /// Starts the emulator on TUN device `tun` in namespace `ns`, with the
    /// links as `links` says at each packet, and returns once the device exists.
    pub fn start(ns: &str, tun: &str, links: Arc<Mutex<LinkState>>) -> Result<Emulator, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, tun) = (ns.to_string(), tun.to_string());
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("link-emulator".into())
            .spawn(move || {
                let fd = match open_tun(&ns, &tun) {
                    Ok(fd) => {
                        let _ = ready_tx.send(Ok(()));
                        fd
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let scheduling = raise_priority();
                relay(&fd, &links, &stop2).map(|c| Capture { scheduling, ..c })
            })
            .map_err(|e| format!("cannot start the link emulator: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Emulator { stop, thread: Some(thread) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the link emulator stopped before it started".into()),
        }
    }

    /// Stops the emulator and returns what it recorded.
    pub fn finish(mut self) -> Result<Capture, String> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the link emulator panicked".into()),
            None => Err("the link emulator was already stopped".into()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(fd: &OwnedFd, links: &Mutex<LinkState>, stop: &AtomicBool) -> Result<Capture, String> {
    let mut capture = Capture::default();
    // (due, seq) → (packet, record index)
    let mut queue: BinaryHeap<Reverse<(i128, u64)>> = BinaryHeap::new();
    let mut held: BTreeMap<u64, (Vec<u8>, Option<usize>)> = BTreeMap::new();
    let mut seq = 0u64;
    // Last TCP delivery per direction: segments keep their order.
    let mut tcp_last: BTreeMap<(IpAddr, IpAddr), i128> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Acquire) {
        let now = real_now_ns();
        // Deliver what is due.
        while let Some(Reverse((due, s))) = queue.peek().copied() {
            if due > now {
                break;
            }
            queue.pop();
            if let Some((p, rec)) = held.remove(&s) {
                // SAFETY: writing an owned buffer to an open fd.
                let _ = unsafe { libc::write(fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
                let at = real_now_ns();
                capture.late_max_ns = capture.late_max_ns.max(at - due);
                capture.late_sum_ns += at - due;
                capture.delivered += 1;
                if let Some(i) = rec {
                    capture.datagrams[i].delivered_ns = Some(at);
                }
            }
        }
        // Sleep to the nanosecond until the next datagram is due (at most
        // 50 ms, to see `stop`), or until one arrives: a whole-millisecond
        // poll would spin for the last millisecond of every delay.
        let wait_ns = match queue.peek() {
            Some(Reverse((due, _))) => (due - real_now_ns()).clamp(0, 50_000_000),
            None => 50_000_000,
        };
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: wait_ns as libc::c_long };
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd and a valid timeout; no signal mask.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &timeout, std::ptr::null()) };
        if n <= 0 {
            continue;
        }
        loop {
            // SAFETY: reading into an owned buffer of its length.
            let len = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if len <= 0 {
                break;
            }
            let sent = real_now_ns();
            let p = &buf[..len as usize];
            let Some((src, dst, proto, udp)) = parse_ip(p) else { continue };
            let tcp = udp.is_none();
            let fate = links.lock().unwrap_or_else(|e| e.into_inner()).fate(src, dst, udp.is_some(), proto == 6);
            let (delays, lost) = match fate {
                Ok(d) => (d, None),
                Err(why) => (Vec::new(), Some(why)),
            };
            let mut records: Vec<Option<usize>> = Vec::new();
            match udp {
                Some((sp, dp, range)) => {
                    // One record per arrival (a lost datagram: one, lost).
                    for copy in 0..delays.len().max(1) {
                        if capture.datagrams.len() >= RECORDS_MAX {
                            capture.unrecorded += 1;
                            records.push(None);
                            continue;
                        }
                        capture.datagrams.push(Datagram {
                            sent_ns: sent,
                            delivered_ns: None,
                            lost,
                            copy: copy > 0,
                            src: SocketAddr::new(src, sp),
                            dst: SocketAddr::new(dst, dp),
                            payload: p[range.clone()].to_vec(),
                        });
                        records.push(Some(capture.datagrams.len() - 1));
                    }
                }
                None => capture.other_packets += 1,
            }
            for (i, delay_s) in delays.iter().enumerate() {
                let mut due = sent + (delay_s * 1e9) as i128;
                if tcp {
                    let last = tcp_last.entry((src, dst)).or_insert(due);
                    due = due.max(*last);
                    *last = due;
                }
                seq += 1;
                held.insert(seq, (p.to_vec(), records.get(i).copied().flatten()));
                queue.push(Reverse((due, seq)));
            }
        }
    }
    Ok(capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `raise_priority` says is what the thread got: SCHED_FIFO at the
    /// emulator's priority, or a normal thread with 1 ns of timer slack.
    #[test]
    fn the_emulator_threads_scheduling_is_what_it_reports() {
        std::thread::spawn(|| {
            let said = raise_priority();
            let mut policy = 0;
            let mut param = libc::sched_param { sched_priority: 0 };
            // SAFETY: reading the calling thread's own parameters.
            assert_eq!(unsafe { libc::pthread_getschedparam(libc::pthread_self(), &mut policy, &mut param) }, 0);
            if said.starts_with("SCHED_FIFO") {
                assert_eq!((policy, param.sched_priority), (libc::SCHED_FIFO, EMULATOR_PRIORITY), "{said}");
            } else {
                assert!(said.starts_with("normal (SCHED_FIFO refused: "), "{said}");
                assert_eq!(policy, libc::SCHED_OTHER, "{said}");
                // SAFETY: prctl with integer arguments.
                assert_eq!(unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) }, 1, "{said}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn partitions_cut_between_members_and_the_rest_and_links_one_way() {
        let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
        let mut s = LinkState::default();
        assert!(!s.cut(ip(1), ip(2)));
        s.cut_sets.push([ip(1)].into_iter().collect());
        assert!(s.cut(ip(1), ip(2)) && s.cut(ip(2), ip(1)));
        assert!(!s.cut(ip(2), ip(3)));
        s.cut_sets.clear();
        s.down.insert((ip(2), ip(3)));
        assert!(s.cut(ip(2), ip(3)) && !s.cut(ip(3), ip(2)));
    }

    /// A stopped host's datagrams, either way, are dropped as the simulator
    /// drops them, before any draw: the link's stream carries on after its
    /// `start` as if they had never been sent.
    #[test]
    fn a_stopped_hosts_datagrams_are_dropped_without_a_draw() {
        use ntplab_sim::link::Jitter;
        let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
        let p = LinkParams {
            delay: std::time::Duration::from_millis(1),
            jitter: Jitter::Exponential { mean_s: 1e-3 },
            loss: 0.3,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: std::time::Duration::ZERO,
            pass_every: 1,
        };
        let fates = |stop: bool| {
            let mut s = LinkState::default();
            s.add_link(3, (0, ip(1)), (1, ip(2)), p, p);
            let mut got = vec![s.fate(ip(2), ip(1), true, false)];
            if stop {
                s.hosts_down.insert(ip(2));
                assert_eq!(s.fate(ip(2), ip(1), true, false), Err("host down"));
                assert_eq!(s.fate(ip(1), ip(2), true, false), Err("host down"));
                assert_eq!(s.fate(ip(1), ip(2), false, true), Err("host down"));
                s.hosts_down.remove(&ip(2));
            }
            got.extend((0..20).map(|_| s.fate(ip(2), ip(1), true, false)));
            got
        };
        assert_eq!(fates(true), fates(false));
    }

    /// The emulator's UDP fates are the simulator's path draws on the
    /// simulator's stream for that direction (host 1 to host 0 is the
    /// backward stream of link 0-1), through a link change; TCP neither
    /// draws nor is lost, doubled or delayed beyond the mean.
    #[test]
    fn datagram_fates_are_the_simulators_draws_and_tcp_keeps_to_the_mean() {
        use ntplab_sim::link::{Jitter, Path};
        let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
        let p = LinkParams {
            delay: std::time::Duration::from_millis(1),
            jitter: Jitter::Exponential { mean_s: 1e-3 },
            loss: 0.2,
            duplicate: 0.4,
            reorder: 0.3,
            reorder_delay: std::time::Duration::from_secs(3),
            pass_every: 1,
        };
        let mut s = LinkState::default();
        // Link between host 1 (10.0.0.2) and host 0 (10.0.0.1), named in that order.
        s.add_link(7, (1, ip(2)), (0, ip(1)), p, LinkParams { pass_every: 3, ..p });
        let mut sim = Path::new(ntplab_sim::run::path_config(&p), SimRng::derive(7, "link/0/1/bwd"));
        let (mut doubled, mut held) = (0, 0);
        for i in 0..400 {
            if i == 200 {
                let q = LinkParams { duplicate: 0.9, ..p };
                s.params.insert((ip(2), ip(1)), q);
                sim.set_config(ntplab_sim::run::path_config(&q));
            }
            let want: Result<Vec<f64>, &str> = match sim.transmit(NtpDuration::ZERO) {
                Fate::Lost(LossReason::Random) => Err("loss"),
                Fate::Lost(_) => Err("other"),
                f => Ok(f.delays().map(|d| d.to_seconds_f64()).collect()),
            };
            let got = s.fate(ip(2), ip(1), true, false);
            assert_eq!(got, want, "datagram {i}");
            let d = got.unwrap_or_default();
            doubled += usize::from(d.len() == 2);
            held += d.iter().filter(|&&x| x >= 3.0).count();
        }
        assert!(doubled > 100 && held > 50, "{doubled} doubled, {held} held back");
        // The other direction passes every third datagram only.
        let fates: Vec<_> = (0..30).map(|_| s.fate(ip(1), ip(2), true, false)).collect();
        let pattern = fates.iter().filter(|f| **f == Err("loss pattern")).count();
        assert_eq!(pattern, 20, "{fates:?}");
        assert!(fates.iter().skip(2).step_by(3).all(|f| *f != Err("loss pattern")), "{fates:?}");
        // TCP: always delivered once, after delay + mean jitter.
        for _ in 0..50 {
            assert_eq!(s.fate(ip(2), ip(1), false, true), Ok(vec![0.002]));
        }
        s.tcp_blocked.insert(ip(1));
        assert_eq!(s.fate(ip(2), ip(1), false, true), Err("ke-down"));
        assert_eq!(s.fate(ip(2), ip(3), true, false), Err("no-link"));
        s.cut_sets.push([ip(2)].into_iter().collect());
        assert_eq!(s.fate(ip(2), ip(1), true, false), Err("partition"));
    }

    #[test]
    fn ip_udp_headers_are_taken_apart_and_short_packets_refused() {
        let mut p = vec![0u8; 20 + 8 + 4];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&123u16.to_be_bytes());
        let (s, d, proto, u) = parse_ip(&p).unwrap();
        assert_eq!((s, d, proto), ("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap(), 17));
        assert_eq!(u, Some((40000, 123, 28..32)));
        assert!(parse_ip(&p[..19]).is_none());
        p[9] = 6;
        assert_eq!(parse_ip(&p).unwrap().3, None);
        // IPv6: 40-octet header, payload length, next header, addresses.
        let mut q = vec![0u8; 40 + 8 + 48];
        q[0] = 0x60;
        q[4..6].copy_from_slice(&56u16.to_be_bytes());
        q[6] = 17;
        q[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        q[24..40].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        q[40..42].copy_from_slice(&40000u16.to_be_bytes());
        q[42..44].copy_from_slice(&123u16.to_be_bytes());
        let (s, d, proto, u) = parse_ip(&q).unwrap();
        assert_eq!((s, d, proto), ("2001:db8::2".parse().unwrap(), "2001:db8::1".parse().unwrap(), 17));
        assert_eq!(u, Some((40000, 123, 48..96)));
        assert!(parse_ip(&q[..39]).is_none());
        // An extension header (hop-by-hop, 0) first: not taken for UDP.
        q[6] = 0;
        assert_eq!(parse_ip(&q).unwrap().3, None);
        q[0] = 0x50;
        assert!(parse_ip(&q).is_none());
        assert!(parse_ip(&[]).is_none());
    }
}
