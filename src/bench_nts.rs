//! The NTS side of `ntplab bench server --nts-ke`: one NTS-KE per client
//! socket before the send phase (the KE client of `ntplab query --nts`,
//! [`crate::query_nts::KeTarget`]), then every request protected by that
//! socket's [`ClientSession`] (the core's: Unique Identifier, one cookie,
//! placeholders so that the jar refills, Authenticator), and a reply judged
//! by that session before the bench's [`crate::bench::Tracker`] sees it. A
//! reply counts as a response only when it arrives on the socket its request
//! left from, echoes the request's Unique Identifier and authenticates under
//! the session's server-to-client key; an NTSN or other kiss-o'-death that
//! echoes the identifier is a kiss-o'-death, as without NTS; anything else
//! that answers a waiting request is *unauthenticated* and the request stays
//! waiting (and is lost unless the real reply comes).
//!
//! A socket whose jar is empty (its replies were lost, so no cookie came
//! back) cannot send: each request the schedule wanted from it is counted
//! as *no cookie* instead, and a ramp counts it as offered and unanswered.
//! Unique Identifiers and nonces come from a fast seeded generator (the
//! OS's seed): a load generator needs them distinct, not secret.

use crate::cli::CliError;
use crate::query_nts::KeTarget;
use ntplab_proto::nts::ntp::{ClientSession, PendingRequest, ResponseKind};
use ntplab_proto::nts::SeededRng;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// What NTS did in a run: the report's `nts`.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub(crate) struct NtsReport {
    /// The NTS-KE server, HOST:PORT.
    pub ke_server: String,
    /// The AEAD agreed (IANA ID) and its name.
    pub aead: u16,
    pub aead_name: &'static str,
    /// Octets of the cookies the KE server handed out.
    pub cookie_len: usize,
    /// Key establishments before the send phase: one per client socket.
    pub key_establishments: usize,
    /// Wall time they took, seconds (not part of the send phase).
    pub ke_s: f64,
    /// Replies to a waiting request that did not authenticate (or came to another socket).
    pub unauthenticated: u64,
    /// Requests the schedule wanted but a socket could not send: its cookie jar was empty.
    pub no_cookie: u64,
    /// Cookies left in all jars after the run.
    pub cookies_left: usize,
}

/// How an NTS client judged a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Authentic time, or a kiss-o'-death echoing the request's identifier: the tracker classifies its header.
    Echoed,
    /// It answers a remembered request but does not authenticate.
    Unauthenticated,
    /// It answers no remembered request.
    NotPending,
}

/// The NTS state of one run: a session per client socket and what each
/// remembered request sent, by transmit timestamp.
#[derive(Debug)]
pub(crate) struct NtsClients {
    sessions: Vec<ClientSession>,
    pending: HashMap<u64, (usize, PendingRequest)>,
    rng: SeededRng,
    pub(crate) report: NtsReport,
}

impl NtsClients {
    /// Sessions for sockets 0, 1, ... (one each), with what the KE agreed in `report`.
    pub(crate) fn new(sessions: Vec<ClientSession>, report: NtsReport, seed: u64) -> Self {
        NtsClients { sessions, pending: HashMap::new(), rng: SeededRng::new(seed), report }
    }

    /// The protected form of `header` (a client request with transmit
    /// timestamp `transmit`) from `socket`, remembered until [`Self::forget`]
    /// or an authentic reply; `None` (counted) if the socket has no cookie.
    pub(crate) fn protect(&mut self, socket: usize, transmit: u64, header: &[u8]) -> Option<Vec<u8>> {
        let session = self.sessions.get_mut(socket)?;
        match session.build_request(header, &mut self.rng) {
            Ok((bytes, pending)) => {
                self.pending.insert(transmit, (socket, pending));
                Some(bytes)
            }
            Err(_) => {
                self.report.no_cookie += 1;
                None
            }
        }
    }

    /// Forgets a request (given up long ago, or never sent).
    pub(crate) fn forget(&mut self, transmit: u64) {
        self.pending.remove(&transmit);
    }

    /// Judges a datagram that arrived on `socket`.
    pub(crate) fn judge(&mut self, socket: usize, datagram: &[u8]) -> Judgement {
        let Some(origin) = datagram.get(24..32) else { return Judgement::NotPending };
        let origin = u64::from_be_bytes(origin.try_into().unwrap_or_default());
        let Some((from, pending)) = self.pending.get(&origin) else { return Judgement::NotPending };
        let verdict = match self.sessions.get_mut(socket) {
            Some(session) if *from == socket => session.verify_response(pending, datagram),
            _ => Err(ntplab_proto::nts::ntp::ResponseError::UniqueIdMismatch),
        };
        match verdict {
            Ok(ResponseKind::Time { .. } | ResponseKind::NtsNak | ResponseKind::Kiss(_)) => {
                self.pending.remove(&origin);
                Judgement::Echoed
            }
            Err(_) => {
                self.report.unauthenticated += 1;
                Judgement::Unauthenticated
            }
        }
    }

    /// Requests remembered (waiting, or given up and not yet forgotten).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.pending.len()
    }

    /// The report, with the cookies left in the jars.
    pub(crate) fn finish(&self) -> NtsReport {
        NtsReport { cookies_left: self.sessions.iter().map(|s| s.jar().len()).sum(), ..self.report.clone() }
    }
}

/// Key establishment for a run: the KE server, checked once, and a runtime for the exchanges.
pub(crate) struct NtsKe {
    runtime: tokio::runtime::Runtime,
    target: KeTarget,
}

impl NtsKe {
    /// Checks `--nts-ke` and its companions; refuses a KE server that is not
    /// on loopback unless `allow_remote`.
    pub(crate) fn new(ke: &str, trusted: Option<&std::path::Path>, aeads: &[u16], allow_remote: bool) -> Result<NtsKe, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
        let target = runtime.block_on(KeTarget::new("--nts-ke", ke, trusted, aeads))?;
        if !crate::bench::is_loopback(target.address.ip()) && !allow_remote {
            return Err(CliError::usage(format!(
                "refusing NTS-KE with {}: it is not a loopback address; pass --allow-remote only for a server you operate",
                target.address
            )));
        }
        Ok(NtsKe { runtime, target })
    }

    /// One key establishment per client socket, in turn (each bounded by
    /// the KE client's timeout; the first failure ends them). The NTP server
    /// the KE names must be `ntp`, the bench's target.
    pub(crate) fn sessions(&self, clients: usize, ntp: SocketAddr) -> Result<(Vec<ClientSession>, NtsReport), CliError> {
        #[allow(clippy::disallowed_methods)] // the bench is an adapter: it owns its clock
        let start = Instant::now();
        let mut sessions = Vec::with_capacity(clients);
        let mut report = NtsReport::default();
        for _ in 0..clients {
            let e = self.runtime.block_on(self.target.establish())?;
            if e.ntp != ntp {
                return Err(CliError::usage(format!(
                    "NTS-KE with {} names the NTP server {}, but the target is {ntp}: give {} as ADDR:PORT",
                    e.json.ke_server, e.ntp, e.ntp
                )));
            }
            report = NtsReport {
                ke_server: e.json.ke_server,
                aead: e.json.aead,
                aead_name: e.json.aead_name,
                cookie_len: e.json.cookie_len,
                ..NtsReport::default()
            };
            sessions.push(e.session);
        }
        report.key_establishments = sessions.len();
        report.ke_s = start.elapsed().as_secs_f64();
        Ok((sessions, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{build_request, Reply, Tracker};
    use ntplab_proto::nts::cookie::{MasterKeyConfig, MasterKeys};
    use ntplab_proto::nts::ntp::{process_request, NtsRequest};
    use ntplab_proto::nts::{Aead, SessionKeys};
    use std::time::Duration;

    /// The core's NTS server (its master keys and a generator), which also
    /// hands out client sessions with 8 of its cookies.
    struct Server {
        master: MasterKeys,
        rng: SeededRng,
    }

    impl Server {
        fn new() -> Self {
            let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut SeededRng::new(12));
            Server { master, rng: SeededRng::new(11) }
        }

        fn session(&mut self, aead: Aead) -> ClientSession {
            let keys = SessionKeys::random(aead, &mut self.rng);
            let cookies = (0..8).map(|_| self.master.seal(&keys, &mut self.rng)).collect();
            ClientSession::new(keys, cookies)
        }

        /// The server's reply: the request's transmit as origin, stratum 1, sealed.
        fn reply(&mut self, request: &[u8]) -> Vec<u8> {
            let NtsRequest::Protected(p) = process_request(&self.master, request) else { panic!("not a protected request") };
            let mut out = vec![0u8; 2048];
            out[0] = 0x24;
            out[1] = 1;
            out[12..16].copy_from_slice(b"LOCL");
            out[24..32].copy_from_slice(&request[40..48]);
            out[40] = 1;
            let n = p.seal_reply(&mut out, &self.master, &mut self.rng).unwrap();
            out.truncate(n);
            out
        }

        /// An NTSN kiss answering `request`, as a server that lost its keys sends.
        fn nak(&mut self, request: &[u8]) -> Vec<u8> {
            // Another server's keys: the cookie does not open.
            let other = MasterKeys::new(MasterKeyConfig::default(), 0, &mut self.rng);
            let NtsRequest::Nak(n) = process_request(&other, request) else { panic!("not a NAK") };
            let mut out = vec![0u8; 2048];
            let len = n.write(-20, &mut out).unwrap();
            out.truncate(len);
            out
        }
    }

    fn tracker(server: &mut Server, sockets: usize) -> Tracker {
        let sessions = (0..sockets).map(|_| server.session(Aead::AesSivCmac256)).collect();
        Tracker::with_nts(Duration::from_millis(100), NtsClients::new(sessions, NtsReport::default(), 5))
    }

    /// Registers a request from `socket` and returns its protected octets.
    fn send(t: &mut Tracker, socket: usize, transmit: u64, now_ns: u64) -> Option<Vec<u8>> {
        t.prepare(socket, transmit, now_ns).ok()
    }

    #[test]
    fn only_authentic_replies_on_the_right_socket_are_responses() {
        let mut server = Server::new();
        let mut t = tracker(&mut server, 2);
        let a = send(&mut t, 0, 100, 1_000).unwrap();
        let b = send(&mut t, 1, 200, 2_000).unwrap();
        assert!(a.len() > 48 && b.len() > 48, "protected requests carry extension fields");
        let reply_a = server.reply(&a);
        let reply_b = server.reply(&b);
        // A plain reply echoing the transmit timestamp: unauthenticated, the request still waits.
        assert_eq!(t.on_datagram_from(0, &reply_a[..48], 5_000), Reply::Unauthenticated);
        // The right reply on the wrong socket: not authentic for that socket's session.
        assert_eq!(t.on_datagram_from(1, &reply_a, 5_000), Reply::Unauthenticated);
        // A flipped bit in the authenticated header.
        let mut forged = reply_a.clone();
        forged[20] ^= 1;
        assert_eq!(t.on_datagram_from(0, &forged, 5_000), Reply::Unauthenticated);
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.on_datagram_from(0, &reply_a, 6_000), Reply::Response { rtt_ns: 5_000 });
        assert_eq!(t.on_datagram_from(0, &reply_a, 7_000), Reply::Unmatched, "a replay");
        assert_eq!(t.on_datagram_from(1, &reply_b, 8_000), Reply::Response { rtt_ns: 6_000 });
        assert_eq!((t.sent, t.responses, t.unmatched, t.in_flight()), (2, 2, 1, 0));
        let nts = t.nts_report().unwrap();
        assert_eq!((nts.unauthenticated, nts.no_cookie), (3, 0));
        assert_eq!(nts.cookies_left, 16, "each reply brought its cookie back");
    }

    #[test]
    fn an_ntsn_kiss_is_a_kiss_o_death_and_lost_replies_are_refilled() {
        let mut server = Server::new();
        let mut t = tracker(&mut server, 1);
        let r1 = send(&mut t, 0, 1, 0).unwrap();
        assert_eq!(t.on_datagram_from(0, &server.nak(&r1), 10), Reply::KissOfDeath { code: "NTSN".into() });
        // Seven requests whose replies are lost empty the jar; the last one
        // asked for the missing cookies with placeholders.
        let mut last = Vec::new();
        for x in 2..=8 {
            last = send(&mut t, 0, x, 0).unwrap();
        }
        assert!(send(&mut t, 0, 9, 0).is_none(), "the jar is empty");
        assert_eq!(t.sent, 8, "a request without a cookie is not sent");
        let nts = t.nts_report().unwrap();
        assert_eq!((nts.no_cookie, nts.cookies_left), (1, 0));
        let ms = 1_000_000;
        t.expire(100 * ms);
        assert_eq!(t.in_flight(), 0, "all given up");
        // The late reply to the last one still authenticates and refills the jar.
        assert_eq!(t.on_datagram_from(0, &server.reply(&last), 150 * ms), Reply::Late { rtt_ns: 150 * ms });
        assert_eq!(t.nts_report().unwrap().cookies_left, 8);
        // Given-up requests are forgotten after the late horizon: memory stays bounded.
        assert_eq!(t.nts_remembered(), 6);
        t.expire(2000 * ms);
        assert_eq!(t.nts_remembered(), 0);
    }

    #[test]
    fn a_request_whose_send_failed_is_forgotten() {
        let mut server = Server::new();
        let mut t = tracker(&mut server, 1);
        let r = send(&mut t, 0, 42, 0).unwrap();
        t.unregister(42);
        assert_eq!(t.nts_remembered(), 0);
        assert_eq!(t.on_datagram_from(0, &server.reply(&r), 1), Reply::Unmatched);
        assert_eq!(t.sent, 0);
        assert_eq!(build_request(42).len(), 48);
    }
}
