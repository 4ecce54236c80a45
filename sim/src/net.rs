//! The daemon's network provider inside the simulator: turmoil-net sockets,
//! scoped to their host, with receive and transmit timestamps taken from the
//! host's clock model at the exact (nanosecond) instants the harness decides.
//!
//! turmoil-net keeps no clock and tracks the "current host" only while a
//! socket call runs, so every call here first names its host (also on drop).
//! Transmit timestamps are the host's raw clock at the true send instant;
//! receive timestamps come from a table the harness fills when it delivers a
//! datagram at its exact true arrival time.

use crate::host_clock::HostClock;
use ntplab_daemon::net::{DatagramSocket, Network, Received, Sent};
use ntplab_proto::time::{NtpDuration, NtpTime};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::sync::Notify;
use turmoil_net::shim::tokio::net::UdpSocket;
use turmoil_net::HostId;

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
    /// Sends since the harness last drained egress.
    pub pending_sends: Cell<u64>,
}

impl Shared {
    /// Shared state for a run whose virtual time starts now.
    pub fn new() -> Rc<Shared> {
        Rc::new(Shared {
            start: tokio::time::Instant::now(),
            egress: Notify::new(),
            arrivals: RefCell::new(BTreeMap::new()),
            pending_sends: Cell::new(0),
        })
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
        let tx: NtpTime = self.clock.borrow_mut().read_raw(now);
        Scoped::new(self.host, socket.send_to(buf, to)).await?;
        self.shared.pending_sends.set(self.shared.pending_sends.get() + 1);
        self.shared.egress.notify_one();
        Ok(Sent { tx_time: Some(tx) })
    }
}
