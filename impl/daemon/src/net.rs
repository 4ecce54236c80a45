//! Network providers: the daemon's view of UDP sockets.
//!
//! The daemon loop is generic over [`Network`]; production uses
//! [`TokioNetwork`] (tokio sockets with Linux software timestamps), the
//! simulator supplies its own provider with timestamps from its clock models.

use ntplab_proto::time::NtpTime;
use std::io;
use std::net::{IpAddr, SocketAddr};

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
    /// The address the datagram was sent to (this host's), when the provider
    /// knows it: a reply must leave from it (IP_PKTINFO on a wildcard socket).
    pub to: Option<IpAddr>,
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
    /// Sends a reply to a datagram that was sent to `local` (this host's
    /// address, [`Received::to`]), from that address: on a socket bound to
    /// the unspecified address the kernel would otherwise pick the source by
    /// its routes, and the client would drop a reply from another address.
    /// Providers whose sockets have one address need not override it.
    async fn send_reply(&self, buf: &[u8], to: SocketAddr, local: Option<IpAddr>) -> io::Result<Sent> {
        let _ = local;
        self.send_to(buf, to).await
    }
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
        // A wildcard socket learns each datagram's destination, to reply from it.
        let pktinfo = addr.ip().is_unspecified() && linux::enable_pktinfo(&inner, addr.is_ipv6()).is_ok();
        Ok(TimestampedSocket { inner, kernel, pktinfo, sent: std::cell::Cell::new(0) })
    }
}

/// A tokio UDP socket that reports kernel software timestamps.
#[derive(Debug)]
pub struct TimestampedSocket {
    inner: tokio::net::UdpSocket,
    kernel: bool,
    /// Bound to the unspecified address with IP_PKTINFO / IPV6_RECVPKTINFO on.
    pktinfo: bool,
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
        let local = self.inner.local_addr()?.ip();
        if !self.kernel && !self.pktinfo {
            let (len, from) = self.inner.recv_from(buf).await?;
            return Ok(Received { len, from, rx_time: None, to: Some(local).filter(|ip| !ip.is_unspecified()) });
        }
        let mut got =
            self.inner.async_io(tokio::io::Interest::READABLE, || linux::recv_with_timestamp(&self.inner, buf)).await?;
        if !self.pktinfo && !local.is_unspecified() {
            got.to = Some(local);
        }
        Ok(got)
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<Sent> {
        self.send_reply(buf, to, None).await
    }

    async fn send_reply(&self, buf: &[u8], to: SocketAddr, local: Option<IpAddr>) -> io::Result<Sent> {
        match local.filter(|_| self.pktinfo) {
            Some(from) => {
                let sent = self
                    .inner
                    .async_io(tokio::io::Interest::WRITABLE, || linux::send_from(&self.inner, buf, to, from))
                    .await;
                if let Err(e) = sent {
                    // A source address the kernel will not use (an IPv4-mapped
                    // one on some kernels): let it choose rather than not answer.
                    tracing::debug!(%to, %from, error = %e, "cannot reply from the request's destination");
                    self.inner.send_to(buf, to).await?;
                }
            }
            None => {
                self.inner.send_to(buf, to).await?;
            }
        }
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
        recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
        TimestampingFlag,
    };
    use ntplab_proto::time::NtpTime;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::AsRawFd;

    pub fn enable_timestamping(sock: &tokio::net::UdpSocket) -> io::Result<()> {
        let flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID;
        setsockopt(sock, sockopt::Timestamping, &flags).map_err(io::Error::from)
    }

    /// Asks for each datagram's destination address (IP_PKTINFO, IPV6_RECVPKTINFO).
    pub fn enable_pktinfo(sock: &tokio::net::UdpSocket, v6: bool) -> io::Result<()> {
        if v6 {
            setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)
        } else {
            setsockopt(sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)
        }
    }

    /// Sends `buf` to `to` with `from` as its source address.
    pub fn send_from(sock: &tokio::net::UdpSocket, buf: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<usize> {
        let iov = [IoSlice::new(buf)];
        let dest = SockaddrStorage::from(to);
        let sent = match (from, to) {
            (IpAddr::V4(from), SocketAddr::V4(_)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(from).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                sendmsg(sock.as_raw_fd(), &iov, &[ControlMessage::Ipv4PacketInfo(&info)], MsgFlags::MSG_DONTWAIT, Some(&dest))
            }
            (from, SocketAddr::V6(_)) => {
                let from = match from {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: from.octets() }, ipi6_ifindex: 0 };
                sendmsg(sock.as_raw_fd(), &iov, &[ControlMessage::Ipv6PacketInfo(&info)], MsgFlags::MSG_DONTWAIT, Some(&dest))
            }
            (IpAddr::V6(_), SocketAddr::V4(_)) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv6 source for an IPv4 destination")),
        };
        sent.map_err(io::Error::from)
    }

    fn destination(c: &ControlMessageOwned) -> Option<IpAddr> {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)))),
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                let v6 = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        }
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
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::Timestamps, libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
            .map_err(io::Error::from)?;
        let from = msg
            .address
            .as_ref()
            .and_then(to_socket_addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source address"))?;
        let mut rx_time = None;
        let mut to = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmTimestampsns(ts) = &c {
                rx_time = to_time(ts.system);
            }
            to = to.or(destination(&c));
        }
        Ok(Received { len: msg.bytes, from, rx_time, to })
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

    /// Sends a request from `client` to `dst` and returns the reply's source
    /// address, the server replying with `send_reply` on `server`.
    async fn reply_source(server: &TimestampedSocket, client: &tokio::net::UdpSocket, dst: SocketAddr) -> (Received, SocketAddr) {
        client.send_to(&[7; 48], dst).await.unwrap();
        let mut buf = [0u8; 64];
        let got = server.recv(&mut buf).await.unwrap();
        server.send_reply(&buf[..got.len], got.from, got.to).await.unwrap();
        let (_, source) = client.recv_from(&mut buf).await.unwrap();
        (got, source)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wildcard_listener_replies_from_the_address_the_request_was_sent_to() {
        for net in [TokioNetwork::default(), TokioNetwork { user_space_timestamps: true }] {
            let server = net.bind("0.0.0.0:0".parse().unwrap()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for ip in ["127.0.0.9", "127.0.0.1", "127.1.2.3"] {
                let dst = SocketAddr::new(ip.parse().unwrap(), port);
                let (got, source) = reply_source(&server, &client, dst).await;
                assert_eq!(got.to, Some(dst.ip()), "the destination is reported");
                assert_eq!(source, dst, "the reply comes from the address asked");
            }
            // Bound to one address: that address, with or without PKTINFO.
            let one = net.bind("127.0.0.5:0".parse().unwrap()).await.unwrap();
            let (got, source) = reply_source(&one, &client, one.local_addr().unwrap()).await;
            assert_eq!((got.to, source), (Some("127.0.0.5".parse().unwrap()), one.local_addr().unwrap()));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dual_stack_wildcard_listener_replies_to_ipv4_from_the_address_asked() {
        let Ok(server) = TokioNetwork::default().bind("[::]:0".parse().unwrap()).await else {
            return; // no IPv6 on this host
        };
        let port = server.local_addr().unwrap().port();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dst: SocketAddr = SocketAddr::new("127.0.0.9".parse().unwrap(), port);
        let (got, source) = reply_source(&server, &client, dst).await;
        assert_eq!(got.to, Some(dst.ip()));
        assert_eq!(source, dst);
    }
}
