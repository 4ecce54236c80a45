//! The daemon's network provider inside the simulator: turmoil-net sockets,
//! scoped to their host, with receive and transmit timestamps taken from the
//! host's clock model at the exact (nanosecond) instants the harness decides.
//!
//! turmoil-net keeps no clock and tracks the "current host" only while a
//! socket call runs, so every call here first names its host (also on drop).
//! Transmit timestamps are the host's raw clock at the true send instant;
//! receive timestamps come from a table the harness fills when it delivers a
//! datagram at its exact true arrival time.
//!
//! Datagrams to other hosts do not go through turmoil-net's send path: its
//! only way out is `egress_all`, which visits every host (and its TCP state)
//! on every call, so a run of N hosts cost O(N) per datagram. [`SimSocket`]
//! makes the packet itself, exactly as turmoil-net 0.1's UDP `send_to` would
//! (same checks, same source address), and queues it in [`Shared`] with its
//! host's index; the harness routes the queue in host order, as `egress_all`
//! did, so traces are unchanged. Datagrams to the host itself or to loopback,
//! which turmoil-net delivers inside the host, still take its path.

use crate::host_clock::HostClock;
use ntplab_daemon::net::{DatagramSocket, Network, Received, Sent};
use ntplab_proto::time::{NtpDuration, NtpTime};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::sync::Notify;
use turmoil_net::shim::tokio::net::UdpSocket;
use turmoil_net::{HostId, Packet, Transport, UdpDatagram};

/// Most arrival times kept per (destination, source, payload) key; older ones
/// belong to datagrams the destination never read (no socket bound).
const ARRIVALS_PER_KEY: usize = 64;

/// State shared by the harness and every simulated socket.
#[derive(Debug)]
pub struct Shared {
    /// Virtual-time origin of the run (tokio's paused clock).
    pub start: tokio::time::Instant,
    /// Signalled whenever a socket sends, so the harness collects the datagram
    /// at the same virtual instant.
    pub egress: Notify,
    /// Exact arrival times of delivered datagrams, by (dst, src, payload hash).
    arrivals: RefCell<BTreeMap<(SocketAddr, SocketAddr, u64), VecDeque<NtpDuration>>>,
    /// Sends through turmoil-net (to the host itself or to loopback) since the
    /// harness last drained its egress.
    pub pending_sends: Cell<u64>,
    /// Datagrams to other hosts since the harness last took them, with the
    /// sending host's index.
    outbox: RefCell<Vec<(usize, Packet)>>,
    /// Largest IP packet on a link (turmoil-net's default MTU).
    mtu: u32,
}

impl Shared {
    /// Shared state for a run whose virtual time starts now.
    pub fn new() -> Rc<Shared> {
        Rc::new(Shared {
            start: tokio::time::Instant::now(),
            egress: Notify::new(),
            arrivals: RefCell::new(BTreeMap::new()),
            pending_sends: Cell::new(0),
            outbox: RefCell::new(Vec::new()),
            mtu: turmoil_net::KernelConfig::default().mtu,
        })
    }

    /// Moves the datagrams sent to other hosts since the last call into `out`,
    /// ordered by sending host (each host's in the order sent), as turmoil-net's
    /// `egress_all` gives them.
    pub fn take_outbox(&self, out: &mut Vec<Packet>) {
        let mut outbox = self.outbox.borrow_mut();
        outbox.sort_by_key(|(host, _)| *host);
        out.extend(outbox.drain(..).map(|(_, p)| p));
    }

    /// A simulated TCP socket was used: turmoil-net may hold segments (or
    /// need to emit an ACK or FIN) that only its egress hands out.
    pub fn tcp_activity(&self) {
        self.pending_sends.set(self.pending_sends.get() + 1);
        self.egress.notify_one();
    }

    /// True time since the start of the run (from tokio's paused clock).
    pub fn elapsed(&self) -> NtpDuration {
        let d = self.start.elapsed();
        NtpDuration::from_nanos(d.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// Records that a datagram reaches `dst` from `src` at true time `at`.
    pub fn record_arrival(&self, dst: SocketAddr, src: SocketAddr, payload: &[u8], at: NtpDuration) {
        let mut table = self.arrivals.borrow_mut();
        let queue = table.entry((dst, src, fnv(payload))).or_default();
        if queue.len() == ARRIVALS_PER_KEY {
            queue.pop_front();
        }
        queue.push_back(at);
    }

    fn take_arrival(&self, dst: SocketAddr, src: SocketAddr, payload: &[u8]) -> Option<NtpDuration> {
        let mut table = self.arrivals.borrow_mut();
        let key = (dst, src, fnv(payload));
        let queue = table.get_mut(&key)?;
        let at = queue.pop_front();
        if queue.is_empty() {
            table.remove(&key);
        }
        at
    }
}

/// FNV-1a: a stable, cheap payload fingerprint (not security relevant).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pin_project_lite::pin_project! {
    /// A future that names its host to turmoil-net before every poll.
    pub struct Scoped<F> {
        host: HostId,
        #[pin]
        inner: F,
    }
}

impl<F> Scoped<F> {
    /// Wraps `inner` for `host`.
    pub fn new(host: HostId, inner: F) -> Self {
        Scoped { host, inner }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        turmoil_net::set_current(*this.host);
        this.inner.poll(cx)
    }
}

/// The network of one simulated host.
#[derive(Clone)]
pub struct SimNetwork {
    host: HostId,
    clock: Rc<RefCell<HostClock>>,
    shared: Rc<Shared>,
}

impl SimNetwork {
    /// The network as `host`, whose timestamps come from `clock`.
    pub fn new(host: HostId, clock: Rc<RefCell<HostClock>>, shared: Rc<Shared>) -> Self {
        SimNetwork { host, clock, shared }
    }
}

impl Network for SimNetwork {
    type Socket = SimSocket;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimSocket> {
        let inner = Scoped::new(self.host, UdpSocket::bind(addr)).await?;
        turmoil_net::set_current(self.host);
        let local = inner.local_addr()?;
        Ok(SimSocket { host: self.host, local, inner: Some(inner), clock: self.clock.clone(), shared: self.shared.clone() })
    }
}

/// A simulated UDP socket.
pub struct SimSocket {
    host: HostId,
    local: SocketAddr,
    inner: Option<UdpSocket>,
    clock: Rc<RefCell<HostClock>>,
    shared: Rc<Shared>,
}

impl SimSocket {
    fn socket(&self) -> io::Result<&UdpSocket> {
        self.inner.as_ref().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "socket closed"))
    }
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            turmoil_net::set_current(self.host);
            drop(inner);
        }
    }
}

impl DatagramSocket for SimSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let socket = self.socket()?;
        let (len, from) = Scoped::new(self.host, socket.recv_from(buf)).await?;
        // Destination as the sender addressed it: our bound address, or the
        // host's address when bound to the unspecified address.
        let arrival = self.shared.take_arrival(self.local, from, &buf[..len]).or_else(|| {
            let host_ip = self.clock.borrow().address();
            self.shared.take_arrival(SocketAddr::new(host_ip, self.local.port()), from, &buf[..len])
        });
        let rx_time = arrival.map(|at| self.clock.borrow_mut().read_raw(at));
        // A simulated host has one address: a datagram was sent to it.
        let to = Some(if self.local.ip().is_unspecified() { self.clock.borrow().address() } else { self.local.ip() });
        Ok(Received { len, from, rx_time, to })
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<Sent> {
        let socket = self.socket()?;
        let now = self.shared.elapsed();
        let (host_ip, index) = {
            let clock = self.clock.borrow();
            (clock.address(), clock.index())
        };
        if to.ip().is_loopback() || to.ip() == host_ip {
            let tx: NtpTime = self.clock.borrow_mut().read_raw(now);
            Scoped::new(self.host, socket.send_to(buf, to)).await?;
            self.shared.pending_sends.set(self.shared.pending_sends.get() + 1);
            self.shared.egress.notify_one();
            return Ok(Sent { tx_time: Some(tx) });
        }
        let packet = outgoing(self.local, host_ip, buf, to, self.shared.mtu)?;
        let tx: NtpTime = self.clock.borrow_mut().read_raw(now);
        self.shared.outbox.borrow_mut().push((index, packet));
        self.shared.egress.notify_one();
        Ok(Sent { tx_time: Some(tx) })
    }
}

/// The packet turmoil-net 0.1's UDP `send_to` would queue for a socket bound to
/// `local` on a host whose address is `host_ip` (the daemon never sets
/// SO_BROADCAST, nor sends to loopback through here), or its error.
fn outgoing(local: SocketAddr, host_ip: IpAddr, buf: &[u8], to: SocketAddr, mtu: u32) -> io::Result<Packet> {
    if local.is_ipv4() != to.is_ipv4() {
        return Err(io::Error::from_raw_os_error(EAFNOSUPPORT));
    }
    if let IpAddr::V4(v4) = to.ip() {
        if v4.is_broadcast() || v4.octets()[3] == 255 {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
    }
    let ip_header = if to.is_ipv4() { 20 } else { 40 };
    if buf.len() as u64 > u64::from(mtu.saturating_sub(ip_header + 8)) {
        return Err(io::Error::from_raw_os_error(EMSGSIZE));
    }
    let src = if local.ip().is_unspecified() && host_ip.is_ipv4() == to.is_ipv4() { host_ip } else { local.ip() };
    Ok(Packet {
        src,
        dst: to.ip(),
        ttl: 64,
        payload: Transport::Udp(UdpDatagram { src_port: local.port(), dst_port: to.port(), payload: buf.to_vec().into() }),
    })
}

/// Linux's errno for "message too long", as turmoil-net reports it.
const EMSGSIZE: i32 = 90;
/// Linux's errno for "address family not supported", as turmoil-net reports it.
const EAFNOSUPPORT: i32 = 97;

#[cfg(test)]
mod tests {
    use super::*;
    use turmoil_net::Net;

    /// `outgoing` must give the packet (or the error) turmoil-net's own UDP
    /// send path gives, or traces would change with the bypass.
    #[test]
    fn outgoing_matches_turmoil_net_send_path() {
        let host_ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mtu = turmoil_net::KernelConfig::default().mtu;
        let mut net = Net::new();
        let host = net.add_host(host_ip);
        let guard = net.enter();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let payload = vec![0x5au8; 2000];
        let cases: [(&str, &str, usize); 9] = [
            ("0.0.0.0:0", "10.0.0.2:123", 48),
            ("10.0.0.1:123", "10.0.0.9:40000", 48),
            ("0.0.0.0:123", "192.0.2.1:123", 0),
            ("0.0.0.0:0", "10.0.0.255:123", 48),
            ("0.0.0.0:0", "255.255.255.255:123", 48),
            ("0.0.0.0:0", "10.0.0.2:123", 1472),
            ("0.0.0.0:0", "10.0.0.2:123", 1473),
            ("0.0.0.0:0", "[2001:db8::1]:123", 48),
            ("[::]:0", "[2001:db8::1]:123", 48),
        ];
        runtime.block_on(async {
            for (bind, to, len) in cases {
                let to: SocketAddr = to.parse().unwrap();
                turmoil_net::set_current(host);
                let socket = UdpSocket::bind(bind.parse::<SocketAddr>().unwrap()).await.unwrap();
                let local = socket.local_addr().unwrap();
                let theirs = socket.send_to(&payload[..len], to).await;
                let mut sent = Vec::new();
                guard.egress_all(&mut sent);
                let ours = outgoing(local, host_ip, &payload[..len], to, mtu);
                match (theirs, ours) {
                    (Ok(_), Ok(packet)) => assert_eq!(sent, vec![packet], "{bind} -> {to}, {len} bytes"),
                    (Err(a), Err(b)) => {
                        assert_eq!((a.kind(), a.raw_os_error()), (b.kind(), b.raw_os_error()), "{bind} -> {to}");
                        assert!(sent.is_empty());
                    }
                    (a, b) => panic!("{bind} -> {to}, {len} bytes: turmoil-net {a:?}, ours {b:?}"),
                }
                drop(socket);
            }
        });
        drop(guard);
    }
}
