//! The fast server path of `ntplab serve` on real sockets (Linux).
//!
//! The daemon loop ([`crate::daemon`]) serves one datagram at a time through a
//! channel from its receive tasks, which is what the simulator needs (one
//! task, a fixed order, deterministic runs) and what a client needs. On real
//! sockets, with a real clock, the server side instead runs here:
//!
//! * `workers` threads per listen address, each with its own socket bound
//!   with `SO_REUSEPORT` (the kernel spreads clients over them by a hash of
//!   their address and port), a configurable `SO_RCVBUF`, kernel software
//!   receive timestamps (`SO_TIMESTAMPING`) and, on a wildcard address,
//!   `IP_PKTINFO` so replies leave from the address asked;
//! * batches of up to [`BATCH`] datagrams in one `recvmmsg`; every buffer is
//!   allocated once, when the worker starts: nothing is allocated and
//!   nothing crosses a channel per datagram;
//! * in a batch of at most `SEND_ALONE_MAX` (16) datagrams, a reply whose
//!   transmit timestamp is a clock reading (a basic one) is sent on its own
//!   (a `sendmmsg` of one) right after that reading, as chronyd sends each
//!   reply: were it held for the rest of its batch, its timestamp would
//!   lead its transmission by the batch's remaining work, the kernel's
//!   send path of every reply ahead of it, and any preemption in between
//!   (`sendmmsg` itself yields between datagrams). Replies whose transmit
//!   timestamp is not read now (interleaved: the kernel's timestamp of the
//!   previous reply; kiss-o'-death: none) go out together in one
//!   `sendmmsg` after the batch. A larger batch (the worker is behind) is
//!   handled whole, then stamped and sent in groups of `SEND_GROUP` (4),
//!   one reading and one `sendmmsg` a group, saving system calls where the
//!   worker needs them. Each reply
//!   carries its own control data (source address, transmit-timestamp
//!   request);
//! * every datagram still goes through the sans-IO [`Server::handle`] and
//!   [`Server::finish_response_awaiting_tx`]; the workers share only the
//!   responders' client tables (rate limits, interleaved pairs), split into
//!   shards by a keyed hash of the client address, each behind its own lock;
//! * with `[nts]`, every datagram goes through [`Server::handle_nts`],
//!   [`Server::prepare_nts_response`] (the fresh cookies, before the
//!   transmit timestamp is read) and [`Server::finish_nts_response`] (its response marked
//!   [`awaiting_tx`](ntplab_proto::server::NtsResponse::awaiting_tx) in
//!   interleaved mode) instead, on the same workers: the
//!   cookie master keys are shared read-mostly ([`NtsServerShared`]: each
//!   worker keeps the current set as an `Arc` and takes it again only after
//!   a rotation, which a worker also starts when one is due; it serves from
//!   its own copy of that set, since the SIV instance each master key keeps
//!   is written by every cookie sealed or opened), and the nonces
//!   and cookies of replies come from the worker's own CSPRNG ([`WorkerRng`]:
//!   ChaCha12 seeded from the OS and reseeded from it every
//!   [`RESEED_BYTES`] of output), not from one OS call per draw;
//! * with interleaved mode on, the transmit timestamp saved for a client's
//!   next interleaved request is the kernel's software transmit timestamp of
//!   that very reply (`SOF_TIMESTAMPING_TX_SOFTWARE` with `OPT_ID`, read from
//!   the error queue and matched by its ID), never a reading taken before the
//!   send: a reply whose timestamp never turns up leaves a pair that answers
//!   no interleaved request (the next answer is basic). As chronyd does, the
//!   kernel is asked for that timestamp only for replies to requests in
//!   interleaved mode ([`Response::wants_tx_timestamp`]), with a control
//!   message on the send: a basic client costs no timestamp and no
//!   error-queue read, and a new interleaved client's third reply is its
//!   first interleaved one.
//!
//! The loop publishes the served clock state and its clock's conversion from
//! `CLOCK_REALTIME` ([`TimeMap`]) after every event and once a second; the
//! workers copy it when its generation changes. Datagrams served here are
//! counted ([`Counters`]) but not reported one by one as daemon events.

use crate::clock::TimeMap;
use crate::nts::server::NtsServerShared;
use crate::sysclock::realtime_now;
use nix::sys::socket::{
    bind, getsockname, recvmmsg, setsockopt, socket, sockopt, AddressFamily,
    ControlMessageOwned, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrStorage, TimestampingFlag,
};
use ntplab_proto::nts::MasterKeys;
use ntplab_proto::server::{
    NtsReplyKind, NtsServerAction, Response, ResponseReason, Server, ServerAction, ServerClockState, ServerConfig,
    MAX_REQUEST_LEN,
};
use ntplab_proto::time::NtpTime;
use rand::rngs::{OsRng, ReseedingRng};
use rand::RngCore;
use rand_chacha::ChaCha12Core;
use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Datagrams per `recvmmsg` / `sendmmsg`.
pub const BATCH: usize = 32;
/// Replies whose transmit timestamp a worker waits for at most; older ones
/// are given up (their pairs stay without a transmit timestamp).
const PENDING_MAX: usize = 4096;
/// How long a worker blocks in a receive before it checks for shutdown.
const RECV_TIMEOUT_MS: i64 = 100;
/// Octets a worker's CSPRNG gives before it reseeds from the OS (as rand's
/// `ThreadRng`): about 450 NTS replies with AEAD 15 and 8 cookies each.
pub const RESEED_BYTES: u64 = 64 * 1024;

/// A worker's random source for NTS: ChaCha12 (rand_chacha), seeded from the
/// OS generator (`getrandom`) and reseeded from it every [`RESEED_BYTES`].
pub struct WorkerRng(ReseedingRng<ChaCha12Core, OsRng>);

impl WorkerRng {
    /// A generator seeded from the OS.
    pub fn from_os() -> io::Result<WorkerRng> {
        ReseedingRng::new(RESEED_BYTES, OsRng).map(WorkerRng).map_err(|e| io::Error::other(format!("OS random generator: {e}")))
    }
}

impl ntplab_proto::nts::NtsRng for WorkerRng {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
}

/// The fast path's settings (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathSpec {
    /// Threads (and sockets) per listen address.
    pub workers: usize,
    /// `SO_RCVBUF` of each socket, octets; `None`: the kernel's default.
    pub recv_buffer: Option<usize>,
}

impl FastPathSpec {
    /// `workers` (default: the CPU cores) and `recv_buffer` from `[server]`.
    pub fn new(workers: Option<usize>, recv_buffer: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        FastPathSpec { workers: workers.unwrap_or(cores).max(1), recv_buffer }
    }
}

/// What the loop hands the workers: the clock state to serve and how to read
/// the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The served system state.
    pub state: ServerClockState,
    /// The clock's time as a function of `CLOCK_REALTIME`.
    pub map: TimeMap,
}

struct Publication {
    generation: AtomicU64,
    value: RwLock<Published>,
}

/// The responders, one per shard of client addresses.
struct Shards {
    servers: Box<[Mutex<Server>]>,
    key: [u64; 2],
    /// The rate limiter's prefixes: a prefix's clients share one limit, so one shard.
    prefix_len_v4: u8,
    prefix_len_v6: u8,
}

impl Shards {
    /// `count` responders (a power of two) whose tables together hold the
    /// configured number of slots.
    fn new(config: &ServerConfig, count: usize, hash_key: [u8; 16]) -> Self {
        let count = count.next_power_of_two();
        let mut per_shard = config.clone();
        per_shard.interleaved_slots = config.interleaved_slots.div_ceil(count);
        per_shard.rate_limit.slots = config.rate_limit.slots.div_ceil(count);
        let servers = (0..count)
            .map(|i| {
                let mut key = hash_key;
                key[0] ^= i as u8;
                key[1] ^= (i >> 8) as u8;
                let mut server = Server::new(per_shard.clone(), key);
                server.allocate_tables();
                Mutex::new(server)
            })
            .collect();
        let k = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Shards {
            servers,
            key: [k(&hash_key[..8]) ^ 0x9e37_79b9_7f4a_7c15, k(&hash_key[8..])],
            prefix_len_v4: config.rate_limit.prefix_len_v4,
            prefix_len_v6: config.rate_limit.prefix_len_v6,
        }
    }

    /// The shard of a client address: of its rate-limit prefix, so that the
    /// addresses one limit covers meet in one table (IPv4-mapped IPv6 counts
    /// as IPv4, as in the tables).
    fn index(&self, ip: IpAddr) -> usize {
        let [hi, lo] = ntplab_proto::server::table::key_of(ip, self.prefix_len_v4, self.prefix_len_v6);
        let mut h = (lo ^ self.key[0]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= (hi ^ self.key[1]).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        h ^= h >> 29;
        (h as usize) & (self.servers.len() - 1)
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Server> {
        self.servers[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the workers did, summed over all of them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Replies sent.
    pub sent: AtomicU64,
    /// Replies the kernel refused.
    pub send_errors: AtomicU64,
    /// Kernel transmit timestamps matched to their reply.
    pub tx_timestamps: AtomicU64,
    /// Replies whose transmit timestamp never turned up.
    pub tx_timestamps_missed: AtomicU64,
}

/// The running workers; dropping it stops them and closes their sockets.
pub struct FastServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    publication: Arc<Publication>,
    shards: Arc<Shards>,
    local: Vec<SocketAddr>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for FastServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastServer").field("local", &self.local).field("threads", &self.threads.len()).finish()
    }
}

impl FastServer {
    /// Binds `spec.workers` sockets per listen address and starts a thread
    /// for each. A port 0 is chosen once per address and shared by its
    /// workers. A failure names the address it concerns.
    pub fn start(
        listen: &[SocketAddr],
        spec: FastPathSpec,
        config: &ServerConfig,
        hash_key: [u8; 16],
        initial: Published,
        nts: Option<Arc<NtsServerShared>>,
    ) -> Result<FastServer, (SocketAddr, io::Error)> {
        let stop = Arc::new(AtomicBool::new(false));
        let publication = Arc::new(Publication { generation: AtomicU64::new(1), value: RwLock::new(initial) });
        let shards = Arc::new(Shards::new(config, spec.workers * 4, hash_key));
        let counters = Arc::new(Counters::default());
        let mut sockets = Vec::new();
        let mut local = Vec::new();
        for addr in listen {
            let mut bound = *addr;
            for _ in 0..spec.workers {
                let fd = open_socket(bound, spec.recv_buffer, config.interleaved).map_err(|e| (bound, e))?;
                let got = getsockname::<SockaddrStorage>(fd.as_raw_fd()).map_err(|e| (bound, io::Error::from(e)))?;
                bound.set_port(to_socket_addr(&got).map_or(addr.port(), |a| a.port()));
                sockets.push((fd, addr.ip().is_unspecified()));
            }
            local.push(bound);
        }
        let start = std::time::Instant::now();
        let mut threads = Vec::new();
        for (i, (fd, pktinfo)) in sockets.into_iter().enumerate() {
            let rng = match nts {
                Some(_) => Some(WorkerRng::from_os().map_err(|e| (listen[0], e))?),
                None => None,
            };
            let worker = Worker {
                fd,
                pktinfo,
                nts: nts.clone().zip(rng),
                tx_timestamps: config.interleaved,
                stop: stop.clone(),
                publication: publication.clone(),
                shards: shards.clone(),
                counters: counters.clone(),
                start,
            };
            let thread = std::thread::Builder::new()
                .name(format!("ntplab-serve-{i}"))
                .spawn(move || worker.run())
                .map_err(|e| (listen[0], e))?;
            threads.push(thread);
        }
        Ok(FastServer { stop, threads, publication, shards, local, counters })
    }

    /// The addresses served, with the ports chosen for port 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The workers' counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Heap octets of the client tables of all shards once allocated.
    pub fn table_bytes(&self) -> usize {
        (0..self.shards.servers.len()).map(|i| self.shards.lock(i).table_bytes()).sum()
    }

    /// Hands the workers a new clock state and clock conversion, if it differs
    /// from the last one.
    pub fn publish(&self, published: Published) {
        let mut value = self.publication.value.write().unwrap_or_else(|e| e.into_inner());
        if *value != published {
            *value = published;
            self.publication.generation.fetch_add(1, Ordering::Release);
        }
    }
}

impl Drop for FastServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn open_socket(addr: SocketAddr, recv_buffer: Option<usize>, tx_timestamps: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(io::Error::from)?;
    if let Some(bytes) = recv_buffer {
        setsockopt(&fd, sockopt::RcvBuf, &bytes).map_err(io::Error::from)?;
    }
    let timeout = nix::sys::time::TimeVal::new(0, RECV_TIMEOUT_MS * 1000);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(io::Error::from)?;
    let mut flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE;
    if tx_timestamps {
        // Transmit timestamps are asked for per reply (a control message on
        // the send); these say how they come back and how they are numbered.
        flags |= TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID;
    }
    if let Err(e) = setsockopt(&fd, sockopt::Timestamping, &flags) {
        tracing::warn!(%addr, error = %e, "kernel timestamping unavailable; using user-space timestamps");
    }
    set_ipv4_dont_fragment(&fd);
    if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        } else {
            setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        }
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)?;
    Ok(fd)
}

/// Sends IPv4 replies (on an IPv6 socket: to IPv4-mapped clients) with the
/// don't-fragment bit and the interface MTU (`IP_PMTUDISC_PROBE`). With the
/// default (`IP_PMTUDISC_WANT`) an unconnected UDP socket's datagrams may be
/// fragmented, so the kernel draws each one an IP ID from its shared, hashed
/// counters (`__ip_select_ident`: about 4 % of a worker's samples at 100k
/// replies/s); a datagram with DF set carries ID 0 (RFC 6864) and draws
/// nothing. A reply is never longer than its request, which crossed the path
/// the other way. Best effort: without it replies go out as before.
fn set_ipv4_dont_fragment(fd: &OwnedFd) {
    let value: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid socket and a c_int option value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "IP_MTU_DISCOVER not set");
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6().map(|v6| {
        let ip = v6.ip();
        // A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6.
        match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => SocketAddr::from((ip, v6.port())),
        }
    })
}

fn to_time(ts: nix::sys::time::TimeSpec) -> Option<NtpTime> {
    let (s, ns) = (ts.tv_sec(), ts.tv_nsec());
    (s != 0 || ns != 0).then(|| NtpTime::from_unix(s, ns.clamp(0, 999_999_999) as u32))
}

/// One received datagram's particulars.
#[derive(Clone, Copy)]
struct Meta {
    len: usize,
    from: SocketAddr,
    rx_raw: Option<NtpTime>,
    to: Option<IpAddr>,
}

/// A reply ready to send, or sent and waiting for its transmit timestamp.
#[derive(Clone, Copy)]
struct Reply {
    slot: usize,
    /// Octets to send from the slot's output buffer.
    len: usize,
    to: SocketAddr,
    local: Option<IpAddr>,
    shard: usize,
    response: Response,
    /// Whether its kernel transmit timestamp is asked for: in interleaved
    /// mode, for a reply to a request in interleaved mode
    /// ([`Response::wants_tx_timestamp`]; never an NTSN).
    stamp: bool,
}

/// Octets of control data per reply: a transmit-timestamp request (`u32`)
/// and an `IPV6_PKTINFO` (the larger packet info), each with its header.
const CONTROL_LEN: usize = 64;

/// A worker's `sendmmsg` arguments, allocated once: per reply its header,
/// iovec, destination and control data (a request for the kernel's transmit
/// timestamp, the source address with `IP_PKTINFO`), so that one call sends
/// a batch whatever each reply needs.
struct SendBufs {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    control: Box<[[u64; CONTROL_LEN / 8]]>,
}

impl SendBufs {
    fn new() -> SendBufs {
        // SAFETY: these are plain C structs for which all-zero is a valid value.
        let (hdr, iov, name) = unsafe { (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed()) };
        SendBufs {
            hdrs: vec![hdr; BATCH].into_boxed_slice(),
            iovs: vec![iov; BATCH].into_boxed_slice(),
            names: vec![name; BATCH].into_boxed_slice(),
            control: vec![[0; CONTROL_LEN / 8]; BATCH].into_boxed_slice(),
        }
    }

    /// Points one header per reply (at most [`BATCH`]) at its octets in
    /// `outbuf`, its destination and its control data; returns how many.
    fn fill(&mut self, outbuf: &[[u8; MAX_REQUEST_LEN]; BATCH], replies: &[Reply]) -> usize {
        let n = replies.len().min(BATCH);
        for (i, r) in replies[..n].iter().enumerate() {
            self.iovs[i] = libc::iovec { iov_base: outbuf[r.slot].as_ptr() as *mut libc::c_void, iov_len: r.len };
            let name_len = write_sockaddr(&mut self.names[i], r.to);
            let control = self.control[i].as_mut_ptr().cast::<u8>();
            // SAFETY: `control` is CONTROL_LEN octets, aligned for cmsghdr,
            // which holds the two messages written (24 + 40 octets at most).
            let control_len = unsafe { write_control(control, r.stamp, r.local, r.to) };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = name_len;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = if control_len > 0 { control.cast() } else { std::ptr::null_mut() };
            h.msg_hdr.msg_controllen = control_len as _;
            h.msg_hdr.msg_flags = 0;
        }
        n
    }
}

/// Writes `to` as a `sockaddr_in` or `sockaddr_in6`; returns its length.
fn write_sockaddr(name: &mut libc::sockaddr_storage, to: SocketAddr) -> libc::socklen_t {
    match to {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
            sin.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Writes a reply's control messages at `control`: a request for its
/// software transmit timestamp if `stamp`, and the source address `local`
/// (`IP_PKTINFO` towards an IPv4 client, `IPV6_PKTINFO` towards an IPv6 one,
/// an IPv4 source then IPv4-mapped). Returns the octets written.
///
/// # Safety
///
/// `control` must point to [`CONTROL_LEN`] writable octets aligned for
/// `cmsghdr`.
unsafe fn write_control(control: *mut u8, stamp: bool, local: Option<IpAddr>, to: SocketAddr) -> usize {
    let mut len = 0usize;
    // SAFETY (every block below): each message takes CMSG_SPACE of its data,
    // at most 24 + 40 octets together, within the CONTROL_LEN the caller
    // gives; the offsets keep the cmsghdr alignment, as CMSG_SPACE pads.
    let mut push = |level: libc::c_int, kind: libc::c_int, data: &[u8]| unsafe {
        let hdr = control.add(len).cast::<libc::cmsghdr>();
        (*hdr).cmsg_level = level;
        (*hdr).cmsg_type = kind;
        (*hdr).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
        std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(hdr), data.len());
        len += libc::CMSG_SPACE(data.len() as u32) as usize;
    };
    if stamp {
        let flags = libc::SOF_TIMESTAMPING_TX_SOFTWARE;
        push(libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &flags.to_ne_bytes());
    }
    match (local, to) {
        (Some(IpAddr::V4(from)), SocketAddr::V4(_)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: u32::from(from).to_be() },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            // SAFETY: in_pktinfo is plain data, read as its octets.
            let octets = unsafe {
                std::slice::from_raw_parts((&info as *const libc::in_pktinfo).cast::<u8>(), std::mem::size_of::<libc::in_pktinfo>())
            };
            push(libc::IPPROTO_IP, libc::IP_PKTINFO, octets);
        }
        (Some(from), SocketAddr::V6(_)) => {
            let from = match from {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: from.octets() }, ipi6_ifindex: 0 };
            // SAFETY: in6_pktinfo is plain data, read as its octets.
            let octets = unsafe {
                std::slice::from_raw_parts((&info as *const libc::in6_pktinfo).cast::<u8>(), std::mem::size_of::<libc::in6_pktinfo>())
            };
            push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, octets);
        }
        _ => {}
    }
    len
}

/// A batch of at most this many datagrams has each basic reply sent alone,
/// right after the clock reading it carries; a larger one (the worker is
/// behind) is answered with one reading and one send
/// ([`Worker::serve_batch`]). Sending alone costs a system call per reply:
/// where that makes the worker fall behind, its batches grow past this and
/// it catches up with one call per batch.
const SEND_ALONE_MAX: usize = BATCH / 2;
/// In a batch larger than [`SEND_ALONE_MAX`], replies are stamped and sent
/// in groups of this many, one reading and one `sendmmsg` a group: reply
/// `k` of a group leads by the kernel's sends of the `k` ahead of it (about
/// 3 µs each here), and a preemption inside the call (`sendmmsg` yields
/// between datagrams) delays at most the rest of one group.
const SEND_GROUP: usize = 4;

/// Where a worker's finished replies go, and the clock their transmit
/// timestamps are read from: the worker's socket and the published clock
/// ([`SocketOutlet`]); in tests, a recorder.
trait Outlet {
    /// The served clock now, for a reply's transmit timestamp.
    fn now(&mut self, map: &TimeMap) -> NtpTime;
    /// Sends `replies` (their octets in `outbuf`, at most [`BATCH`]) in one call.
    fn send(&mut self, outbuf: &[[u8; MAX_REQUEST_LEN]; BATCH], replies: &[Reply]);
}

/// A worker's socket: one `sendmmsg` per [`Outlet::send`] (more only after a
/// refused reply), the timestamp IDs of the sent replies whose kernel
/// transmit timestamps were asked for noted in `pending`. The replies sent
/// and refused are counted here and added to the shared [`Counters`] once, by
/// [`SocketOutlet::count`], not per send: a basic reply is a send of its own,
/// and the counters' cache line is shared by the workers.
struct SocketOutlet<'a> {
    fd: std::os::fd::RawFd,
    bufs: &'a mut SendBufs,
    pending: &'a mut VecDeque<(u32, Reply)>,
    next_id: &'a mut u32,
    counters: &'a Counters,
    sent: u64,
    refused: u64,
}

impl SocketOutlet<'_> {
    /// Adds the replies sent and refused so far to the shared counters.
    fn count(self) {
        if self.sent > 0 {
            self.counters.sent.fetch_add(self.sent, Ordering::Relaxed);
        }
        if self.refused > 0 {
            self.counters.send_errors.fetch_add(self.refused, Ordering::Relaxed);
        }
    }
}

impl Outlet for SocketOutlet<'_> {
    fn now(&mut self, map: &TimeMap) -> NtpTime {
        map.now()
    }

    fn send(&mut self, outbuf: &[[u8; MAX_REQUEST_LEN]; BATCH], replies: &[Reply]) {
        let n = self.bufs.fill(outbuf, replies);
        let mut sent = [false; BATCH];
        let mut first = 0;
        // Each pass sends at least one reply or skips one: at most n passes.
        while first < n {
            // SAFETY: `fill` pointed the first n headers at live buffers
            // (addresses, control data, the iovecs and `outbuf`), none of
            // which moves or changes before this call returns.
            let r = unsafe { libc::sendmmsg(self.fd, self.bufs.hdrs[first..].as_mut_ptr(), (n - first) as u32, libc::MSG_DONTWAIT) };
            if r <= 0 {
                // The first one was refused (or the socket buffer is full):
                // given up, and the rest tried again.
                tracing::debug!(error = %io::Error::last_os_error(), "reply not sent");
                first += 1;
                continue;
            }
            let r = r as usize;
            sent[first..first + r].fill(true);
            first += r;
        }
        let count = sent[..n].iter().filter(|&&s| s).count();
        self.sent += count as u64;
        self.refused += (n - count) as u64;
        // The kernel numbers the datagrams it stamps (OPT_ID), in send order.
        for (r, _) in replies[..n].iter().zip(&sent[..n]).filter(|(r, &ok)| ok && r.stamp) {
            if self.pending.len() == PENDING_MAX {
                self.pending.pop_front();
                self.counters.tx_timestamps_missed.fetch_add(1, Ordering::Relaxed);
            }
            self.pending.push_back((*self.next_id, *r));
            *self.next_id = self.next_id.wrapping_add(1);
        }
    }
}

struct Worker {
    fd: OwnedFd,
    pktinfo: bool,
    /// With `[nts]`: the shared keys and this worker's random source.
    nts: Option<(Arc<NtsServerShared>, WorkerRng)>,
    tx_timestamps: bool,
    stop: Arc<AtomicBool>,
    publication: Arc<Publication>,
    shards: Arc<Shards>,
    counters: Arc<Counters>,
    start: std::time::Instant,
}

impl Worker {
    fn run(mut self) {
        let mut keys: Option<(u64, Arc<MasterKeys>)> = self.nts.as_ref().map(|(shared, _)| (shared.generation(), shared.keys()));
        // This worker's own copy of the keys: each master key keeps an SIV
        // instance that every cookie sealed or opened writes to, and a copy
        // shared by the workers would move between their cores' caches on
        // every request. Copied again (new instances) after each rotation.
        let mut own_keys: Option<(u64, MasterKeys)> = keys.as_ref().map(|(g, k)| (*g, MasterKeys::clone(k)));
        let mut inbuf = Box::new([[0u8; MAX_REQUEST_LEN + 1]; BATCH]);
        // Replies are never longer than their request, and an NTPv5 reply is
        // as long as it (48 octets do for NTPv4 only).
        let mut outbuf = Box::new([[0u8; MAX_REQUEST_LEN]; BATCH]);
        let mut rx_headers = MultiHeaders::<SockaddrStorage>::preallocate(
            BATCH,
            Some(nix::cmsg_space!(nix::sys::socket::Timestamps, libc::in6_pktinfo)),
        );
        let mut tx_bufs = SendBufs::new();
        let mut err_headers = MultiHeaders::<SockaddrStorage>::preallocate(
            BATCH,
            Some(nix::cmsg_space!(nix::sys::socket::Timestamps, libc::sock_extended_err, libc::sockaddr_in6)),
        );
        let mut errbuf = [[0u8; 64]; BATCH];
        let mut metas = [Meta { len: 0, from: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), rx_raw: None, to: None }; BATCH];
        let mut replies: Vec<Reply> = Vec::with_capacity(BATCH);
        let mut pending: VecDeque<(u32, Reply)> = VecDeque::with_capacity(PENDING_MAX);
        let mut next_id: u32 = 0;
        let mut generation = 0;
        let mut published = self.publication.value.read().unwrap_or_else(|e| e.into_inner()).clone();
        let fd = self.fd.as_raw_fd();
        let counters = self.counters.clone();
        // Bounded by the stop flag, checked at least every RECV_TIMEOUT_MS.
        while !self.stop.load(Ordering::Relaxed) {
            let n = {
                let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = inbuf.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                match recvmmsg(fd, &mut rx_headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                    Ok(results) => {
                        let mut n = 0;
                        for (meta, msg) in metas.iter_mut().zip(results) {
                            let Some(from) = msg.address.as_ref().and_then(to_socket_addr) else { continue };
                            let mut rx_raw = None;
                            let mut to = None;
                            if let Ok(cmsgs) = msg.cmsgs() {
                                for c in cmsgs {
                                    match c {
                                        ControlMessageOwned::ScmTimestampsns(ts) => rx_raw = to_time(ts.system),
                                        ControlMessageOwned::Ipv4PacketInfo(info) => {
                                            to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))))
                                        }
                                        ControlMessageOwned::Ipv6PacketInfo(info) => {
                                            let v6 = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                                            to = Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4));
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            *meta = Meta { len: msg.bytes, from, rx_raw, to };
                            n += 1;
                        }
                        n
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "receive failed");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        0
                    }
                }
            };
            if !pending.is_empty() {
                self.collect_tx_timestamps(&mut err_headers, &mut errbuf, &mut pending, &published);
            }
            if n == 0 {
                continue;
            }
            self.counters.received.fetch_add(n as u64, Ordering::Relaxed);
            let g = self.publication.generation.load(Ordering::Acquire);
            if g != generation {
                generation = g;
                published = self.publication.value.read().unwrap_or_else(|e| e.into_inner()).clone();
            }
            if let (Some((shared, _)), Some(cached), Some(own)) = (&self.nts, &mut keys, &mut own_keys) {
                shared.refresh(cached);
                if own.0 != cached.0 {
                    *own = (cached.0, MasterKeys::clone(&cached.1));
                }
            }
            let mut outlet = SocketOutlet {
                fd,
                bufs: &mut tx_bufs,
                pending: &mut pending,
                next_id: &mut next_id,
                counters: &counters,
                sent: 0,
                refused: 0,
            };
            let master = own_keys.as_ref().map(|(_, k)| k);
            self.serve_batch(&metas[..n], &inbuf, &mut outbuf, &published, master, &mut replies, &mut outlet);
            outlet.count();
            if !pending.is_empty() {
                self.collect_tx_timestamps(&mut err_headers, &mut errbuf, &mut pending, &published);
            }
        }
    }

    /// Answers the datagrams of one batch (`metas[i]` for `inbuf[i]`, the
    /// reply written to `outbuf[i]`), each through the sans-IO responder.
    ///
    /// A batch of at most [`SEND_ALONE_MAX`] datagrams (the worker keeps up):
    /// a reply whose transmit timestamp is a clock reading (basic) is
    /// finished right after that reading and sent at once, alone, so that
    /// between the reading and its send there is no other reply's work and
    /// no other reply's send; the others (interleaved replies, whose
    /// transmit timestamp is the kernel's of an earlier reply, and
    /// kiss-o'-death) go out together at the end.
    ///
    /// A larger batch (the worker is behind, and a send per reply would
    /// cost it a system call each, about 0.65 µs here, on top of 4 µs): every
    /// request is handled first, then per group of [`SEND_GROUP`] replies
    /// the clock is read once, the group finished with that reading and
    /// sent in one call; reply `k` of a group then leads its transmission
    /// by the kernel's sends of the `k` ahead of it.
    ///
    /// With NTS each reply is sealed over its transmit timestamp (about 5
    /// µs) right after the reading, and sent alone in a small batch.
    #[allow(clippy::too_many_arguments)]
    fn serve_batch(
        &mut self,
        metas: &[Meta],
        inbuf: &[[u8; MAX_REQUEST_LEN + 1]; BATCH],
        outbuf: &mut [[u8; MAX_REQUEST_LEN]; BATCH],
        published: &Published,
        master: Option<&MasterKeys>,
        replies: &mut Vec<Reply>,
        outlet: &mut impl Outlet,
    ) {
        let Published { state, map } = published;
        let alone = metas.len() <= SEND_ALONE_MAX;
        // Datagrams without a kernel timestamp (rare: the first ones after
        // the socket opens) are stamped with one reading after the receive.
        let fallback = metas.iter().any(|m| m.rx_raw.is_none()).then(realtime_now);
        replies.clear();
        // Replies handled but not finished yet (a large batch, plain NTP).
        let mut unfinished = 0;
        for (slot, meta) in metas.iter().enumerate().take(BATCH) {
            let rx_time = map.local_time_of(meta.rx_raw.or(fallback).unwrap_or_else(realtime_now));
            let shard = self.shards.index(meta.from.ip());
            let mut server = self.shards.lock(shard);
            let now_ns = self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            let (request, out) = (&inbuf[slot][..meta.len], &mut outbuf[slot]);
            // The transmit timestamp is read as late as possible: after the
            // request is handled (in a large batch, after all are), just
            // before the reply is finished (with NTS sealed) and sent.
            let answer = match (&mut self.nts, master) {
                (Some((_, rng)), Some(master)) => match server.handle_nts(now_ns, meta.from, request, rx_time, state, master, out) {
                    NtsServerAction::Respond(r) => {
                        let mut r = if self.tx_timestamps { r.awaiting_tx() } else { r };
                        // The fresh cookies before the clock is read: after
                        // it, only the header and the Authenticator's
                        // encryption (which covers the header) are left.
                        server.prepare_nts_response(&mut r, out, master, rng);
                        let tx_now = outlet.now(map);
                        let sealed = server.finish_nts_response(&r, out, tx_now, state, master, rng);
                        // An NTSN saves nothing for interleaved mode.
                        let stamp = self.tx_timestamps && r.kind() != NtsReplyKind::Nak && r.response.wants_tx_timestamp();
                        sealed.ok().map(|len| (r.response, len, stamp, true))
                    }
                    NtsServerAction::Ignore(_) | NtsServerAction::IgnoreNts(_) => None,
                },
                _ => match server.handle(now_ns, meta.from, request, rx_time, state, out) {
                    ServerAction::Respond(response) if alone => {
                        let tx_now = outlet.now(map);
                        if self.tx_timestamps {
                            server.finish_response_awaiting_tx(&response, out, tx_now, state);
                        } else {
                            server.finish_response(&response, out, tx_now, state);
                        }
                        Some((response, response.len, self.tx_timestamps && response.wants_tx_timestamp(), true))
                    }
                    ServerAction::Respond(response) => Some((response, response.len, self.tx_timestamps && response.wants_tx_timestamp(), false)),
                    ServerAction::Ignore(_) => None,
                },
            };
            drop(server);
            if let Some((response, len, stamp, finished)) = answer {
                let local = meta.to.filter(|_| self.pktinfo);
                let reply = Reply { slot, len, to: meta.from, local, shard, response, stamp };
                if finished && alone && response.reason == ResponseReason::Basic {
                    outlet.send(outbuf, std::slice::from_ref(&reply));
                } else {
                    unfinished += usize::from(!finished);
                    replies.push(reply);
                }
            }
        }
        if unfinished > 0 {
            // Every request is handled: each group of SEND_GROUP replies is
            // stamped with one reading and sent right after it.
            debug_assert_eq!(unfinished, replies.len(), "a large plain batch: all of them");
            for group in replies.chunks(SEND_GROUP) {
                let tx_now = outlet.now(map);
                for reply in group {
                    let mut server = self.shards.lock(reply.shard);
                    let out = &mut outbuf[reply.slot];
                    if self.tx_timestamps {
                        server.finish_response_awaiting_tx(&reply.response, out, tx_now, state);
                    } else {
                        server.finish_response(&reply.response, out, tx_now, state);
                    }
                }
                outlet.send(outbuf, group);
            }
        } else if !replies.is_empty() {
            outlet.send(outbuf, replies);
        }
    }

    /// Reads the transmit timestamps the kernel has queued and hands each to
    /// the responder of the reply it belongs to.
    fn collect_tx_timestamps(
        &self,
        headers: &mut MultiHeaders<SockaddrStorage>,
        errbuf: &mut [[u8; 64]; BATCH],
        pending: &mut VecDeque<(u32, Reply)>,
        published: &Published,
    ) {
        let fd = self.fd.as_raw_fd();
        // Each pass takes up to BATCH timestamps; at most as many as are pending.
        for _ in 0..PENDING_MAX.div_ceil(BATCH) {
            if pending.is_empty() {
                return;
            }
            let mut stamps = [(0u32, None::<NtpTime>); BATCH];
            let n = {
                let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = errbuf.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
                match recvmmsg(fd, headers, iovs.iter_mut(), flags, None) {
                    Ok(results) => {
                        let mut n = 0;
                        for (stamp, msg) in stamps.iter_mut().zip(results) {
                            let (mut time, mut key) = (None, None);
                            if let Ok(cmsgs) = msg.cmsgs() {
                                for c in cmsgs {
                                    match c {
                                        ControlMessageOwned::ScmTimestampsns(ts) => time = to_time(ts.system),
                                        ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _)
                                            if e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING =>
                                        {
                                            key = Some(e.ee_data)
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            if let Some(k) = key {
                                *stamp = (k, time);
                                n += 1;
                            }
                        }
                        n
                    }
                    Err(_) => return,
                }
            };
            if n == 0 {
                return;
            }
            for &(key, time) in &stamps[..n] {
                // Replies sent before this one whose timestamps were skipped are given up.
                while let Some(&(id, _)) = pending.front() {
                    if (key.wrapping_sub(id) as i32) <= 0 {
                        break;
                    }
                    pending.pop_front();
                    self.counters.tx_timestamps_missed.fetch_add(1, Ordering::Relaxed);
                }
                if pending.front().is_some_and(|&(id, _)| id == key) {
                    let Some((_, reply)) = pending.pop_front() else { break };
                    if let Some(raw) = time {
                        let tx = published.map.local_time_of(raw);
                        self.shards.lock(reply.shard).transmitted(&reply.response, tx, &published.state);
                        self.counters.tx_timestamps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::wire::refid::ReferenceId;
    use ntplab_proto::wire::v4::LeapIndicator;
    use std::net::UdpSocket;

    fn state() -> ServerClockState {
        ServerClockState {
            leap: LeapIndicator::NoWarning,
            stratum: 1,
            precision_log2: -20,
            root_delay: ntplab_proto::time::NtpDuration::ZERO,
            root_dispersion: ntplab_proto::time::NtpDuration::ZERO,
            reference_id: ReferenceId::from_ascii("LOCL"),
            reference_time: Some(realtime_now()),
            inserted_second_in_progress: false,
        }
    }

    fn request(origin: u64, receive: u64, transmit: u64) -> [u8; 48] {
        let mut r = [0u8; 48];
        r[0] = 0x23; // LI 0, version 4, mode 3
        r[24..32].copy_from_slice(&origin.to_be_bytes());
        r[32..40].copy_from_slice(&receive.to_be_bytes());
        r[40..48].copy_from_slice(&transmit.to_be_bytes());
        r
    }

    fn field(reply: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(reply[at..at + 8].try_into().unwrap())
    }

    fn exchange(client: &UdpSocket, server: SocketAddr, req: &[u8; 48]) -> [u8; 48] {
        client.send_to(req, server).unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = client.recv_from(&mut buf).unwrap_or_else(|e| panic!("no reply to {req:x?}: {e}"));
        assert_eq!((len, from), (48, server));
        buf[..48].try_into().unwrap()
    }

    fn start(workers: usize) -> FastServer {
        start_with(workers, None)
    }

    fn start_with(workers: usize, nts: Option<Arc<NtsServerShared>>) -> FastServer {
        let rate_limit = ntplab_proto::server::RateLimitConfig { enabled: false, ..Default::default() };
        let config = ServerConfig { interleaved_slots: 1 << 12, rate_limit, ..ServerConfig::default() };
        let published = Published { state: state(), map: TimeMap::Identity };
        FastServer::start(&["127.0.0.1:0".parse().unwrap()], FastPathSpec { workers, recv_buffer: Some(1 << 20) }, &config, [5; 16], published, nts)
            .unwrap_or_else(|(addr, e)| panic!("{addr}: {e}"))
    }

    /// What a worker did with a batch, in order: clock readings and sends
    /// (each send: per reply its destination and its 48 octets).
    #[derive(Debug, Clone, PartialEq)]
    enum Event {
        Read(NtpTime),
        Sent(Vec<(SocketAddr, [u8; 48])>),
    }

    /// An [`Outlet`] that records, with a clock that moves 1 µs a reading.
    struct Recorder {
        clock: NtpTime,
        events: Vec<Event>,
    }

    impl Outlet for Recorder {
        fn now(&mut self, _: &TimeMap) -> NtpTime {
            self.clock = self.clock + ntplab_proto::time::NtpDuration::from_nanos(1_000);
            self.events.push(Event::Read(self.clock));
            self.clock
        }

        fn send(&mut self, outbuf: &[[u8; MAX_REQUEST_LEN]; BATCH], replies: &[Reply]) {
            let sent = replies.iter().map(|r| (r.to, outbuf[r.slot][..48].try_into().unwrap())).collect();
            self.events.push(Event::Sent(sent));
        }
    }

    /// A worker on a socket it never uses (the batch goes to a [`Recorder`]).
    fn worker(config: &ServerConfig, tx_timestamps: bool) -> Worker {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let published = Published { state: state(), map: TimeMap::Identity };
        Worker {
            fd: OwnedFd::from(socket),
            pktinfo: false,
            nts: None,
            tx_timestamps,
            stop: Arc::new(AtomicBool::new(false)),
            publication: Arc::new(Publication { generation: AtomicU64::new(1), value: RwLock::new(published) }),
            shards: Arc::new(Shards::new(config, 4, [5; 16])),
            counters: Arc::new(Counters::default()),
            start: std::time::Instant::now(),
        }
    }

    /// Serves one batch of `requests` (from `10.0.0.1+i:123`, received at
    /// `rx`) through `worker`; returns what it did.
    fn serve(worker: &mut Worker, requests: &[[u8; 48]], rx: NtpTime, clock: NtpTime) -> Vec<Event> {
        let mut inbuf = Box::new([[0u8; MAX_REQUEST_LEN + 1]; BATCH]);
        let mut outbuf = Box::new([[0u8; MAX_REQUEST_LEN]; BATCH]);
        let metas: Vec<Meta> = requests
            .iter()
            .enumerate()
            .map(|(i, req)| {
                inbuf[i][..48].copy_from_slice(req);
                let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1 + i as u8), 123));
                Meta { len: 48, from, rx_raw: Some(rx), to: None }
            })
            .collect();
        let published = worker.publication.value.read().unwrap().clone();
        let mut recorder = Recorder { clock, events: Vec::new() };
        let mut replies = Vec::new();
        worker.serve_batch(&metas, &inbuf, &mut outbuf, &published, None, &mut replies, &mut recorder);
        recorder.events
    }

    #[test]
    fn a_basic_reply_is_sent_alone_right_after_the_clock_reading_it_carries() {
        // A small batch of basic requests: each reply's transmit timestamp
        // is the last reading before its send, and its send holds it alone.
        // (Until h30 the worker read the clock for every reply of a batch and
        // sent them together: reply i's timestamp then led its transmission
        // by the rest of the batch and the kernel's sends of the replies
        // ahead of it.)
        let rate_limit = ntplab_proto::server::RateLimitConfig { enabled: false, ..Default::default() };
        for interleaved in [false, true] {
            let config = ServerConfig { interleaved, interleaved_slots: 1 << 10, rate_limit, ..ServerConfig::default() };
            let mut w = worker(&config, interleaved);
            let rx = NtpTime::from_unix(1_800_000_000, 0);
            let requests: Vec<_> = (0..SEND_ALONE_MAX as u64).map(|i| request(0, 0, 0x1000 + i)).collect();
            let events = serve(&mut w, &requests, rx, rx);
            assert_eq!(events.len(), 2 * SEND_ALONE_MAX, "{events:?}");
            for (i, pair) in events.chunks(2).enumerate() {
                let (Event::Read(t), Event::Sent(sent)) = (&pair[0], &pair[1]) else { panic!("read then send: {pair:?}") };
                assert_eq!(sent.len(), 1, "reply {i} sent alone");
                let (to, reply) = &sent[0];
                assert_eq!(*to, SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1 + i as u8), 123)));
                assert_eq!(field(reply, 24), 0x1000 + i as u64, "the reply to request {i}");
                assert_eq!(field(reply, 40), t.to_timestamp().to_bits(), "reply {i}: T3 is the reading just before its send");
            }
        }
    }

    #[test]
    fn a_large_batch_is_stamped_per_group_after_every_request_is_handled() {
        // A worker that is behind: the batch is handled first, then per
        // group of SEND_GROUP one reading and one send. (Until h30 each reply's reading was taken
        // as it was finished, before the rest of the batch was handled.)
        for interleaved in [false, true] {
            let rate_limit = ntplab_proto::server::RateLimitConfig { enabled: false, ..Default::default() };
            let config = ServerConfig { interleaved, interleaved_slots: 1 << 10, rate_limit, ..ServerConfig::default() };
            let mut w = worker(&config, interleaved);
            let rx = NtpTime::from_unix(1_800_000_000, 0);
            let n = BATCH as u64;
            let requests: Vec<_> = (0..n).map(|i| request(0, 0, 0x1000 + i)).collect();
            let events = serve(&mut w, &requests, rx, rx);
            assert_eq!(events.len(), 2 * BATCH / SEND_GROUP, "{events:?}");
            for (g, pair) in events.chunks(2).enumerate() {
                let (Event::Read(t), Event::Sent(sent)) = (&pair[0], &pair[1]) else { panic!("a reading, then a send: {pair:?}") };
                assert_eq!(sent.len(), SEND_GROUP);
                for (j, (_, reply)) in sent.iter().enumerate() {
                    let i = g * SEND_GROUP + j;
                    assert_eq!(field(reply, 24), 0x1000 + i as u64, "the reply to request {i}");
                    assert_eq!(field(reply, 40), t.to_timestamp().to_bits(), "reply {i}: T3 is its group's reading");
                }
            }
        }
    }

    #[test]
    fn interleaved_replies_of_a_batch_go_out_together_after_it() {
        // Their transmit timestamps are the kernel's of the previous replies,
        // whatever the moment of this send: one sendmmsg for all of them.
        let rate_limit = ntplab_proto::server::RateLimitConfig { enabled: false, ..Default::default() };
        let config = ServerConfig { interleaved: true, interleaved_slots: 1 << 10, rate_limit, ..ServerConfig::default() };
        // Without kernel timestamps the pair saved holds the reading.
        let mut w = worker(&config, false);
        let rx = NtpTime::from_unix(1_800_000_000, 0);
        let first: Vec<_> = (0..6u64).map(|i| request(0, 0, 0x1000 + i)).collect();
        let previous: Vec<[u8; 48]> = serve(&mut w, &first, rx, rx)
            .into_iter()
            .flat_map(|e| match e {
                Event::Sent(s) => s.into_iter().map(|(_, reply)| reply).collect(),
                Event::Read(_) => Vec::new(),
            })
            .collect();
        assert_eq!(previous.len(), 6);
        let next: Vec<_> = (0..6u64).map(|i| request(field(&previous[i as usize], 32), 0x4444_0000 + i, 0x2000 + i)).collect();
        let rx2 = NtpTime::from_unix(1_800_000_001, 0);
        let events = serve(&mut w, &next, rx2, rx2);
        let sends: Vec<_> = events.iter().filter_map(|e| if let Event::Sent(s) = e { Some(s) } else { None }).collect();
        assert_eq!(sends.len(), 1, "one send for the batch: {events:?}");
        assert_eq!(sends[0].len(), 6);
        for (i, (_, reply)) in sends[0].iter().enumerate() {
            assert_eq!(field(reply, 24), 0x4444_0000 + i as u64, "interleaved: origin = the client's receive time");
            assert_eq!(field(reply, 40), field(&previous[i], 40), "T3 = the previous reply's transmit time");
        }
        assert!(matches!(events.last(), Some(Event::Sent(_))), "sent after the batch");
    }

    #[test]
    fn a_wildcard_socket_answers_from_the_address_asked_with_interleaved_replies_stamped() {
        // [::] takes IPv4 clients too (IPv4-mapped): each reply carries its
        // source address (IP_PKTINFO / IPV6_PKTINFO) in the same control data
        // as the request for its transmit timestamp.
        let rate_limit = ntplab_proto::server::RateLimitConfig { enabled: false, ..Default::default() };
        let config = ServerConfig { interleaved_slots: 1 << 12, rate_limit, ..ServerConfig::default() };
        let published = Published { state: state(), map: TimeMap::Identity };
        let Ok(server) = FastServer::start(&["[::]:0".parse().unwrap()], FastPathSpec { workers: 1, recv_buffer: None }, &config, [5; 16], published, None)
        else {
            eprintln!("no IPv6 here: skipped");
            return;
        };
        let port = server.local_addrs()[0].port();
        for (client, to) in [("127.0.0.1:0", SocketAddr::from((Ipv4Addr::LOCALHOST, port))), ("[::1]:0", SocketAddr::from((Ipv6Addr::LOCALHOST, port)))] {
            let client = UdpSocket::bind(client).unwrap();
            client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            client.connect(to).unwrap();
            let t1 = 0x1111_0000_0000_0001u64;
            let mut previous = exchange(&client, to, &request(0, 0, t1));
            let mut interleaved = 0;
            for k in 0..6u64 {
                let reply = exchange(&client, to, &request(field(&previous, 32), 0x4444_0000_0000_0000 + k, t1 + k + 1));
                interleaved += u32::from(field(&reply, 24) == 0x4444_0000_0000_0000 + k);
                previous = reply;
            }
            // The reply came from the address asked (a connected socket takes no other).
            assert!(interleaved >= 2, "{to}: {interleaved} of 6 interleaved");
        }
        assert!(server.counters().tx_timestamps.load(Ordering::Relaxed) >= 4);
        assert_eq!(server.counters().send_errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_addresses_of_one_rate_limit_prefix_share_a_shard() {
        let shards = Shards::new(&ServerConfig::default(), 64, [1; 16]);
        let a = shards.index("2001:db8:1:2::1".parse().unwrap());
        assert!((2..200u16).all(|i| shards.index(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0, 0, 9))) == a), "one /64, one shard");
        let spread: std::collections::HashSet<_> = (0..200u8).map(|i| shards.index(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))).collect();
        assert!(spread.len() > 32, "IPv4 clients spread over the shards: {}", spread.len());
        assert_eq!(shards.index("::ffff:10.0.0.7".parse().unwrap()), shards.index("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn workers_answer_many_clients_through_the_responder() {
        let server = start(2);
        let addr = server.local_addrs()[0];
        assert_ne!(addr.port(), 0, "the chosen port is reported");
        for i in 1..=20u8 {
            // Clients from several loopback addresses spread over the shards.
            let client = UdpSocket::bind((Ipv4Addr::new(127, 0, 1, i), 0)).unwrap();
            client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let t1 = 0x1234_5678_0000_0000 + u64::from(i);
            let reply = exchange(&client, addr, &request(0, 0, t1));
            assert_eq!(reply[0] & 7, 4, "mode 4");
            assert_eq!(reply[1], 1, "stratum 1");
            assert_eq!(field(&reply, 24), t1, "origin = the request's transmit");
            assert!(field(&reply, 40) > field(&reply, 32), "transmit after receive");
        }
        // Not a request: no answer, and the workers go on.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(&[0u8; 10], addr).unwrap();
        // The last reply may arrive before its worker counts it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let counted = |s: &FastServer| s.counters().sent.load(Ordering::Relaxed) >= 20 && s.counters().received.load(Ordering::Relaxed) >= 21;
        while !counted(&server) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(server.counters().sent.load(Ordering::Relaxed), 20);
        assert_eq!(server.counters().received.load(Ordering::Relaxed), 21, "the stray datagram too");
        drop(server);
        // Dropped: the workers are gone and the port is free again.
        assert!(UdpSocket::bind(addr).is_ok());
    }

    #[test]
    fn workers_answer_nts_requests_and_follow_key_rotations() {
        use ntplab_proto::nts::{Aead, ClientSession, ResponseKind, SeededRng, SessionKeys};
        let text = "listen = [\"127.0.0.1:11123\"]\n[nts]\ncertificate = \"c\"\nkey = \"k\"\nkey_rotation = 1\n";
        let spec = crate::config::DaemonConfig::from_toml(text, "t.toml").unwrap().nts.unwrap();
        let now_s = Arc::new(AtomicU64::new(0));
        let clock = now_s.clone();
        let shared = NtsServerShared::new(&spec, crate::nts::tls::provider(), Arc::new(move || clock.load(Ordering::Relaxed)));
        let first_key = shared.current_key_id();
        let server = start_with(2, Some(shared.clone()));
        let addr = server.local_addrs()[0];
        let mut rng = SeededRng::new(3);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let cookies = (0..8).map(|_| shared.keys().seal(&keys, &mut rng)).collect();
        let mut session = ClientSession::new(keys, cookies);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut exchange = |t1: u64| {
            let (req, pending) = session.build_request(&request(0, 0, t1), &mut rng).unwrap();
            client.send_to(&req, addr).unwrap();
            let mut buf = [0u8; 2048];
            let (len, _) = client.recv_from(&mut buf).expect("a reply to an NTS request");
            assert!(len <= req.len(), "never longer than the request");
            (session.verify_response(&pending, &buf[..len]), buf[..len].to_vec())
        };
        let mut sealed = Vec::new();
        for t1 in 1..=3 {
            let (verdict, reply) = exchange(t1);
            assert_eq!(verdict, Ok(ResponseKind::Time { new_cookies: 1 }), "authentic, with a fresh cookie");
            assert_eq!(field(&reply, 24), t1);
            sealed.push(reply[48..].to_vec());
        }
        assert!(sealed[0] != sealed[1] && sealed[1] != sealed[2], "fresh nonces and cookies in every reply");
        // Every key the cookies were sealed under rotates away: the workers
        // take the new keys and answer the old cookies with an NTSN.
        now_s.store(100, Ordering::Relaxed);
        let (verdict, reply) = exchange(4);
        assert_eq!(verdict, Ok(ResponseKind::NtsNak));
        assert_eq!(&reply[12..16], b"NTSN");
        assert_ne!(shared.current_key_id(), first_key, "rotated");
    }

    #[test]
    fn workers_answer_ntpv5_requests_as_long_as_they_are() {
        use ntplab_proto::wire::v5::{self, Draft, FieldBody, Timescale};
        let server = start(1);
        let addr = server.local_addrs()[0];
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut req = v5::Repr::request(Timescale::Utc, 0x0123_4567_89ab_cdef).to_bytes().to_vec();
        req.extend(FieldBody::DraftIdentification { name: Draft::D08.name().as_bytes().to_vec() }.to_field().to_bytes());
        req.extend(FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field().to_bytes());
        client.send_to(&req, addr).unwrap();
        let mut buf = [0u8; 256];
        let (len, _) = client.recv_from(&mut buf).expect("an NTPv5 reply");
        assert_eq!(len, req.len(), "as long as the request");
        assert_eq!((buf[0] >> 3 & 7, buf[0] & 7), (5, 4), "version 5, mode 4");
        assert_eq!(field(&buf, 24), 0x0123_4567_89ab_cdef, "the client cookie");
    }

    #[test]
    fn an_interleaved_answer_carries_the_kernel_transmit_time_of_the_previous_reply() {
        let server = start(1);
        let addr = server.local_addrs()[0];
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let t1 = 0x1111_0000_0000_0001u64;
        let mut previous = exchange(&client, addr, &request(0, 0, t1));
        let mut interleaved = 0;
        for k in 0..20u64 {
            // The interleaved request: origin = the server's receive timestamp,
            // receive = when the client got the reply (any value other than transmit).
            let (t2, basic_t3) = (field(&previous, 32), field(&previous, 40));
            let reply = exchange(&client, addr, &request(t2, 0x4444_0000_0000_0000 + k, t1 + k + 1));
            if field(&reply, 24) == 0x4444_0000_0000_0000 + k {
                interleaved += 1;
                let t3 = field(&reply, 40);
                // The kernel stamps the datagram after the responder's reading
                // that went into the basic reply: a later time, never that one.
                assert!(t3 > basic_t3, "interleaved T3 {t3:x} is the pre-send reading {basic_t3:x}");
                assert!(t3 > t2 && t3 - basic_t3 < 1 << 32, "after the receive, within a second of the send");
            }
            previous = reply;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Alternate replies are interleaved: every other one saved a pair
        // the next one used (a pair is used once).
        assert!(interleaved >= 9, "{interleaved} of 20 interleaved");
        assert!(server.counters().tx_timestamps.load(Ordering::Relaxed) >= 10);
    }
}
