//! The responder with NTS (RFC 8915 §5.7): [`Server::handle_nts`] and
//! [`Server::finish_nts_response`], the NTS counterparts of `handle` and
//! `finish_response`.
//!
//! ```text
//!   daemon                                              Server
//!   recv datagram; rx_time, now_mono_ns, clock as for handle
//!       ── handle_nts(now_mono_ns, from, request, rx_time, &clock, &master, out) ──►
//!       ◄── NtsServerAction::Respond(resp) | Ignore(DropReason) | IgnoreNts(NtsDropReason)
//!   on Respond:
//!     tx_time = read the clock, as late as possible
//!       ── finish_nts_response(&resp, out, tx_time, &clock, &master, &mut rng) ──► Ok(len)
//!     send out[..len]; transmitted(&resp.response, ..) as for plain responses
//! ```
//!
//! All of `handle`'s checks run first (source, size, version, mode, access
//! control, rate limiting), so no cryptography is spent on a request that
//! would not be answered. Then the request is sorted by
//! [`crate::nts::process_request`]:
//!
//! | request | answer |
//! |---|---|
//! | no NTS fields | the plain response, unchanged |
//! | cookie opens, authenticator verifies | the usual header (basic or interleaved; the interleaved store works as without NTS), then the Unique Identifier echo and the Authenticator with fresh cookies, sealed after the transmit timestamp is written; never longer than the request |
//! | cookie does not open, or the request does not authenticate | an NTSN kiss-o'-death echoing the Unique Identifier, no cookie, no authenticator; nothing is saved for interleaved mode |
//! | NTS fields too broken to answer (no Unique Identifier, bad layout, short nonce padding) | nothing ([`NtsServerAction::IgnoreNts`]) |
//! | rate limit or access control says kiss-o'-death | that kiss-o'-death plus the Unique Identifier echo, so the NTS client can accept it (RFC 8915 §5.7) |

use super::{DropReason, Response, ResponseReason, Server, ServerAction, ServerClockState};
use crate::nts::ntp::append_uid;
use crate::nts::{process_request, MasterKeys, NakReply, NtsDropReason, NtsRequest, NtsRng, ProtectedRequest, ReplyError};
use crate::time::NtpTime;
use core::net::SocketAddr;

/// What [`Server::handle_nts`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum NtsServerAction {
    /// Call [`Server::finish_nts_response`], then send `out[..len]`.
    Respond(NtsResponse),
    /// Send nothing: one of `handle`'s reasons.
    Ignore(DropReason),
    /// Send nothing: the NTS fields are too broken to answer.
    IgnoreNts(NtsDropReason),
}

/// Which kind of answer an [`NtsResponse`] is (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NtsReplyKind {
    /// A request without NTS fields: the plain answer.
    Plain,
    /// An authenticated NTS answer.
    Protected,
    /// An NTSN kiss-o'-death (bad cookie or failed authentication).
    Nak,
    /// A RATE/DENY/RSTR kiss-o'-death to an NTS request, with the identifier echoed.
    Kod,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Inner {
    Plain,
    Protected(ProtectedRequest),
    Nak(NakReply),
    Kod(Vec<u8>),
}

/// A response waiting for [`Server::finish_nts_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "call Server::finish_nts_response, then send out[..len]"]
pub struct NtsResponse {
    /// The plain response underneath (its header is in the output buffer);
    /// pass it to `Server::transmitted` for a kernel transmit timestamp.
    pub response: Response,
    inner: Inner,
}

impl NtsResponse {
    /// What kind of answer this is.
    pub fn kind(&self) -> NtsReplyKind {
        match self.inner {
            Inner::Plain => NtsReplyKind::Plain,
            Inner::Protected(_) => NtsReplyKind::Protected,
            Inner::Nak(_) => NtsReplyKind::Nak,
            Inner::Kod(_) => NtsReplyKind::Kod,
        }
    }
}

impl Server {
    /// [`Server::handle`] for a server that offers NTS with cookies sealed
    /// under `master`; see the [module documentation](self). Never panics.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_nts(
        &mut self,
        now_mono_ns: u64,
        from: SocketAddr,
        request: &[u8],
        rx_time: NtpTime,
        clock: &ServerClockState,
        master: &MasterKeys,
        out: &mut [u8],
    ) -> NtsServerAction {
        let response = match self.handle(now_mono_ns, from, request, rx_time, clock, out) {
            ServerAction::Ignore(r) => return NtsServerAction::Ignore(r),
            ServerAction::Respond(r) => r,
        };
        let kod = matches!(response.reason, ResponseReason::KodSent(_));
        let inner = match process_request(master, request) {
            NtsRequest::Plain => Inner::Plain,
            NtsRequest::Drop(r) => return NtsServerAction::IgnoreNts(r),
            NtsRequest::Protected(p) if kod => Inner::Kod(p.unique_id().to_vec()),
            NtsRequest::Nak(n) if kod => Inner::Kod(n.unique_id().to_vec()),
            NtsRequest::Protected(p) => Inner::Protected(p),
            NtsRequest::Nak(n) => Inner::Nak(n),
        };
        NtsServerAction::Respond(NtsResponse { response, inner })
    }

    /// Completes an NTS response: for a time response, writes the transmit
    /// timestamp (as [`Server::finish_response`]) and then seals the NTS
    /// fields after the header; for an NTSN, writes it; for a kiss-o'-death,
    /// appends the identifier echo. Returns the octets to send from the
    /// start of `out`, never more than the request's length; an error only
    /// if `out` is too small.
    pub fn finish_nts_response(
        &mut self,
        response: &NtsResponse,
        out: &mut [u8],
        tx_time: NtpTime,
        clock: &ServerClockState,
        master: &MasterKeys,
        rng: &mut dyn NtsRng,
    ) -> Result<usize, ReplyError> {
        match &response.inner {
            Inner::Plain => {
                self.finish_response(&response.response, out, tx_time, clock);
                Ok(response.response.len)
            }
            Inner::Protected(p) => {
                self.finish_response(&response.response, out, tx_time, clock);
                p.seal_reply(out, master, rng)
            }
            Inner::Nak(n) => n.write(clock.precision_log2, out),
            Inner::Kod(uid) => {
                self.finish_response(&response.response, out, tx_time, clock);
                append_uid(out, uid).ok_or(ReplyError)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RateLimitConfig, ServerConfig};
    use super::*;
    use crate::nts::{Aead, ClientSession, MasterKeyConfig, ResponseKind, SeededRng, SessionKeys};
    use crate::time::NtpDuration;
    use crate::wire::refid::ReferenceId;
    use crate::wire::v4::{LeapIndicator, Packet, Repr};

    fn clock() -> ServerClockState {
        ServerClockState {
            leap: LeapIndicator::NoWarning,
            stratum: 2,
            precision_log2: -24,
            root_delay: NtpDuration::from_seconds_f64(0.01),
            root_dispersion: NtpDuration::from_seconds_f64(0.001),
            reference_id: ReferenceId::from_ipv4("192.0.2.7".parse().unwrap()),
            reference_time: Some(NtpTime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap()),
            inserted_second_in_progress: false,
        }
    }

    fn at(s: f64) -> NtpTime {
        NtpTime::parse_rfc3339("2025-06-01T12:01:00Z").unwrap() + NtpDuration::from_seconds_f64(s)
    }

    /// A v4 client header with origin, receive and transmit timestamps.
    fn header(org: u64, rx: u64, tx: u64) -> [u8; 48] {
        let mut h = [0u8; 48];
        h[0] = 0x23;
        h[2] = 6;
        h[24..32].copy_from_slice(&org.to_be_bytes());
        h[32..40].copy_from_slice(&rx.to_be_bytes());
        h[40..48].copy_from_slice(&tx.to_be_bytes());
        h
    }

    struct Fix {
        server: Server,
        master: MasterKeys,
        session: ClientSession,
        rng: SeededRng,
        from: SocketAddr,
    }

    fn fix(rate_limited: bool) -> Fix {
        let mut rng = SeededRng::new(77);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::Aes128GcmSiv, &mut rng);
        let cookies = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
        let rate_limit = RateLimitConfig { enabled: rate_limited, burst: 1, ..Default::default() };
        let server = Server::new(ServerConfig { rate_limit, ..Default::default() }, [7; 16]);
        Fix { server, master, session: ClientSession::new(keys, cookies), rng, from: "[2001:db8::5]:40000".parse().unwrap() }
    }

    /// [`fix`] after the server's master keys have rotated twice: the
    /// client's cookies no longer open (NTSN).
    fn fix_with_unknown_cookies(rate_limited: bool) -> Fix {
        let mut f = fix(rate_limited);
        f.master.rotate(0, &mut f.rng);
        f.master.rotate_if_due(u64::MAX / 2, &mut f.rng);
        f
    }

    impl Fix {
        /// One exchange; the reply octets and what the client made of them.
        fn exchange(&mut self, h: [u8; 48], now_s: f64) -> (Vec<u8>, NtsReplyKind, Result<ResponseKind, crate::nts::ResponseError>) {
            let (req, pending) = self.session.build_request(&h, &mut self.rng).unwrap();
            let mut out = [0u8; 2048];
            let now_ns = (now_s * 1e9) as u64;
            let action = self.server.handle_nts(now_ns, self.from, &req, at(now_s), &clock(), &self.master, &mut out);
            let NtsServerAction::Respond(r) = action else { panic!("{action:?}") };
            let n = self
                .server
                .finish_nts_response(&r, &mut out, at(now_s + 0.001), &clock(), &self.master, &mut self.rng)
                .unwrap();
            assert!(n <= req.len(), "reply {n} longer than request {}", req.len());
            let verdict = self.session.verify_response(&pending, &out[..n]);
            (out[..n].to_vec(), r.kind(), verdict)
        }
    }

    fn parse(b: &[u8]) -> Repr {
        Repr::parse(&Packet::new_checked(b).unwrap()).unwrap()
    }

    #[test]
    fn nts_request_gets_an_authenticated_reply_and_interleaved_works() {
        let mut f = fix(false);
        let t1 = 0x1111_0000_0000_0001u64;
        let (reply1, kind, verdict) = f.exchange(header(0, 0, t1), 0.0);
        assert_eq!((kind, verdict), (NtsReplyKind::Protected, Ok(ResponseKind::Time { new_cookies: 1 })));
        let p1 = parse(&reply1);
        assert_eq!(p1.origin_timestamp.to_bits(), t1);
        assert!(p1.transmit_timestamp > p1.receive_timestamp, "the sealed header carries the transmit timestamp");
        // Interleaved: origin = the previous reply's receive timestamp, rx != tx.
        let t4 = 0x4444_0000_0000_0004u64;
        let (reply2, kind, verdict) = f.exchange(header(p1.receive_timestamp.to_bits(), t4, t1 + 5), 16.0);
        assert_eq!((kind, verdict), (NtsReplyKind::Protected, Ok(ResponseKind::Time { new_cookies: 1 })));
        let p2 = parse(&reply2);
        assert_eq!(p2.origin_timestamp.to_bits(), t4, "interleaved origin = request receive");
        assert_eq!(p2.transmit_timestamp, p1.transmit_timestamp, "interleaved transmit = previous reply's");
    }

    #[test]
    fn bad_cookie_gets_ntsn_and_plain_requests_stay_plain() {
        let mut f = fix_with_unknown_cookies(false);
        let (reply, kind, verdict) = f.exchange(header(0, 0, 9), 0.0);
        assert_eq!((kind, verdict), (NtsReplyKind::Nak, Ok(ResponseKind::NtsNak)));
        assert_eq!(&reply[12..16], b"NTSN");
        assert_eq!(reply.len(), 48 + 36, "UID only: no cookie, no authenticator");

        let plain = header(0, 0, 5);
        let mut out = [0u8; 128];
        let action = f.server.handle_nts(0, f.from, &plain, at(1.0), &clock(), &f.master, &mut out);
        let NtsServerAction::Respond(r) = action else { panic!() };
        assert_eq!(r.kind(), NtsReplyKind::Plain);
        assert_eq!(f.server.finish_nts_response(&r, &mut out, at(1.1), &clock(), &f.master, &mut f.rng), Ok(48));
        // Broken NTS fields: nothing; and handle's own reasons pass through.
        let mut broken = plain.to_vec();
        broken.extend([0x04, 0x04, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let a = f.server.handle_nts(0, f.from, &broken, at(1.0), &clock(), &f.master, &mut out);
        assert_eq!(a, NtsServerAction::IgnoreNts(NtsDropReason::MissingUniqueId));
        let a = f.server.handle_nts(0, f.from, &plain[..40], at(1.0), &clock(), &f.master, &mut out);
        assert_eq!(a, NtsServerAction::Ignore(DropReason::TooShort));
    }

    #[test]
    fn rate_kod_to_an_nts_client_echoes_the_identifier() {
        let mut f = fix(true);
        let mut kinds = Vec::new();
        for i in 0..2 {
            let (reply, kind, verdict) = f.exchange(header(0, 0, 100 + i), 0.001 * i as f64);
            if kind == NtsReplyKind::Kod {
                assert_eq!(&reply[12..16], b"RATE");
                assert_eq!(verdict, Ok(ResponseKind::Kiss(*b"RATE")));
            }
            kinds.push(kind);
        }
        assert_eq!(kinds[0], NtsReplyKind::Protected);
        assert!(kinds.contains(&NtsReplyKind::Kod), "{kinds:?}");
    }

    #[test]
    fn over_the_rate_a_request_with_an_unknown_cookie_gets_a_rate_kod_not_a_nak() {
        // The rate limit comes first: a client over it gets the RATE KoD
        // (its Unique Identifier echoed) whether or not its cookie opens.
        let mut f = fix_with_unknown_cookies(true);
        let (_, kind, _) = f.exchange(header(0, 0, 9), 0.0);
        assert_eq!(kind, NtsReplyKind::Nak, "within the rate: NTSN");
        let (reply, kind, verdict) = f.exchange(header(0, 0, 10), 0.001);
        assert_eq!((kind, verdict), (NtsReplyKind::Kod, Ok(ResponseKind::Kiss(*b"RATE"))));
        assert_eq!(&reply[12..16], b"RATE");
    }
}
