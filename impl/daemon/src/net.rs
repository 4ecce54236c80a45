//! Network providers: the daemon's view of UDP sockets.
//!
//! The daemon loop is generic over [`Network`]; production uses
//! [`TokioNetwork`] (tokio sockets with Linux software timestamps), the
//! simulator supplies its own provider with timestamps from its clock models.

use ntplab_proto::time::NtpTime;
use std::io;
use std::net::SocketAddr;

/// One datagram received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Payload length written into the caller's buffer.
    pub len: usize,
    /// Sender.
    pub from: SocketAddr,
    /// Kernel receive timestamp, when the provider has one; otherwise the caller
    /// reads its clock right after the receive returns.
    pub rx_time: Option<NtpTime>,
}

/// A datagram sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Kernel transmit timestamp, when the provider has one.
    pub tx_time: Option<NtpTime>,
}

/// A bound UDP socket.
#[allow(async_fn_in_trait)]
pub trait DatagramSocket {
    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for one datagram.
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received>;
    /// Sends one datagram.
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<Sent>;
}

/// Creates sockets.
#[allow(async_fn_in_trait)]
pub trait Network {
    /// The socket type.
    type Socket: DatagramSocket;
    /// Binds a UDP socket.
    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Socket>;
}

/// Real sockets through tokio, with `SO_TIMESTAMPING` software receive and
/// transmit timestamps where the kernel offers them (it does on Linux for
/// loopback and veth), and user-space timestamps otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNetwork {
    /// Do not ask the kernel for timestamps (use the caller's clock reads).
    pub user_space_timestamps: bool,
}

impl Network for TokioNetwork {
    type Socket = TimestampedSocket;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TimestampedSocket> {
        let inner = tokio::net::UdpSocket::bind(addr).await?;
        let kernel = !self.user_space_timestamps && linux::enable_timestamping(&inner).is_ok();
        if !kernel && !self.user_space_timestamps {
            tracing::warn!(%addr, "kernel timestamping unavailable; using user-space timestamps");
        }
        Ok(TimestampedSocket { inner, kernel, sent: std::cell::Cell::new(0) })
    }
}

/// A tokio UDP socket that reports kernel software timestamps.
#[derive(Debug)]
pub struct TimestampedSocket {
    inner: tokio::net::UdpSocket,
    kernel: bool,
    /// Datagrams sent so far: the kernel numbers transmit timestamps this way (OPT_ID).
    sent: std::cell::Cell<u32>,
}

impl TimestampedSocket {
    /// Whether kernel timestamps are on.
    pub fn kernel_timestamps(&self) -> bool {
        self.kernel
    }

    /// Connects the socket to one peer. The kernel then delivers only that
    /// peer's datagrams, and an ICMP port or host unreachable for it turns into
    /// an error (`ConnectionRefused`, ...) on the next receive, which
    /// [`TimestampedSocket::recv_or_error`] reports at once. For one-shot
    /// clients such as `ntplab query`; the daemon's sockets stay unconnected.
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.inner.connect(peer).await
    }

    /// Like [`DatagramSocket::recv`], but a pending socket error (`SO_ERROR`)
    /// ends the wait too, so that on a connected socket an ICMP unreachable is
    /// reported at once instead of as a timeout.
    pub async fn recv_or_error(&self, buf: &mut [u8]) -> io::Result<Received> {
        // Two single-interest waits: tokio clears readiness per interest, and
        // the error queue (transmit timestamps) raises EPOLLERR too, which
        // must not wake a reader that then finds nothing.
        let error = self.inner.async_io(tokio::io::Interest::ERROR, || match self.inner.take_error()? {
            Some(e) => Ok(e),
            None => Err(io::ErrorKind::WouldBlock.into()),
        });
        tokio::select! {
            received = self.recv(buf) => received,
            e = error => Err(e?),
        }
    }
}

impl DatagramSocket for TimestampedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        if !self.kernel {
            let (len, from) = self.inner.recv_from(buf).await?;
            return Ok(Received { len, from, rx_time: None });
        }
        self.inner.async_io(tokio::io::Interest::READABLE, || linux::recv_with_timestamp(&self.inner, buf)).await
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<Sent> {
        self.inner.send_to(buf, to).await?;
        if !self.kernel {
            return Ok(Sent { tx_time: None });
        }
        let id = self.sent.get();
        self.sent.set(id.wrapping_add(1));
        // Software transmit timestamps are queued on the error queue while the
        // datagram is handed to the device, which on loopback, veth and most
        // drivers happens before sendmsg returns: one non-blocking read finds
        // it. If it is not there yet the caller falls back to its clock read; a
        // late timestamp is skipped by the next read (its ID does not match).
        Ok(Sent { tx_time: linux::recv_tx_timestamp(&self.inner, id).ok() })
    }
}

mod linux {
    use super::Received;
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage, TimestampingFlag,
    };
    use ntplab_proto::time::NtpTime;
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    pub fn enable_timestamping(sock: &tokio::net::UdpSocket) -> io::Result<()> {
        let flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID;
        setsockopt(sock, sockopt::Timestamping, &flags).map_err(io::Error::from)
    }

    fn to_time(ts: nix::sys::time::TimeSpec) -> Option<NtpTime> {
        let (s, ns) = (ts.tv_sec(), ts.tv_nsec());
        (s != 0 || ns != 0).then(|| NtpTime::from_unix(s, ns.clamp(0, 999_999_999) as u32))
    }

    fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::from((v4.ip(), v4.port())));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
    }

    pub fn recv_with_timestamp(sock: &tokio::net::UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::Timestamps);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
            .map_err(io::Error::from)?;
        let from = msg
            .address
            .as_ref()
            .and_then(to_socket_addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source address"))?;
        let mut rx_time = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmTimestampsns(ts) = c {
                rx_time = to_time(ts.system);
            }
        }
        Ok(Received { len: msg.bytes, from, rx_time })
    }

    /// Reads transmit timestamps off the error queue until the one numbered `id`
    /// turns up (earlier ones were given up on by their senders).
    pub fn recv_tx_timestamp(sock: &tokio::net::UdpSocket, id: u32) -> io::Result<NtpTime> {
        for _ in 0..64 {
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::Timestamps, libc::sock_extended_err, libc::sockaddr_in6);
            let mut data = [0u8; 0];
            let mut iov = [IoSliceMut::new(&mut data)];
            let msg = recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            let mut time = None;
            let mut key = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                match c {
                    ControlMessageOwned::ScmTimestampsns(ts) => time = to_time(ts.system),
                    ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _)
                        if e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING =>
                    {
                        key = Some(e.ee_data);
                    }
                    _ => {}
                }
            }
            if let (Some(t), Some(k)) = (time, key) {
                if k == id {
                    return Ok(t);
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::WouldBlock, "transmit timestamp not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sysclock::realtime_now as now;

    #[tokio::test(flavor = "current_thread")]
    async fn loopback_kernel_timestamps_are_ordered_and_current() {
        let net = TokioNetwork::default();
        let a = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let b = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(a.kernel_timestamps(), "Linux offers software timestamps on loopback");
        let mut buf = [0u8; 64];
        // Linux turns receive timestamping on through deferred work the first time a
        // socket asks for it; datagrams in that window arrive unstamped (the daemon
        // then falls back to a clock read). Warm up first.
        a.send_to(&[0; 48], b.local_addr().unwrap()).await.unwrap();
        b.recv(&mut buf).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let before = now();
        for i in 0..5u8 {
            let sent = a.send_to(&[i; 48], b.local_addr().unwrap()).await.unwrap();
            let got = b.recv(&mut buf).await.unwrap();
            assert_eq!((got.len, got.from, buf[0]), (48, a.local_addr().unwrap(), i));
            let (tx, rx) = (sent.tx_time.expect("tx timestamp"), got.rx_time.expect("rx timestamp"));
            assert!(tx <= rx, "sent {tx:?} after received {rx:?}");
            assert!(tx >= before && rx <= now(), "timestamps are from CLOCK_REALTIME");
            assert!((rx - tx).to_seconds_f64() < 0.1);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connected_socket_reports_port_unreachable_at_once() {
        // A port nobody listens on: bind, note the port, close.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        for user_space_timestamps in [true, false] {
            let net = TokioNetwork { user_space_timestamps };
            let a = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            a.connect(closed).await.unwrap();
            a.send_to(&[0; 48], closed).await.unwrap();
            let mut buf = [0u8; 64];
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), a.recv_or_error(&mut buf)).await;
            let err = got.expect("the ICMP error ends the wait, no timeout").expect_err("nothing can answer");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn user_space_mode_reports_no_timestamps() {
        let net = TokioNetwork { user_space_timestamps: true };
        let a = net.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let b = net.bind("[::1]:0".parse().unwrap()).await;
        let sent = a.send_to(&[0; 48], a.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 64];
        let got = a.recv(&mut buf).await.unwrap();
        assert!(sent.tx_time.is_none() && got.rx_time.is_none());
        drop(b);
    }
}
