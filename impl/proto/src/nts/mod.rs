//! Network Time Security (RFC 8915), sans-IO: NTS-KE client and server
//! state machines over byte buffers, key derivation inputs, the AEADs,
//! server cookies with key rotation, and NTS-protected NTPv4 packets.
//!
//! Nothing here does I/O, reads a clock or draws OS randomness: TLS bytes,
//! the TLS exporter's output, the time (`now_s`) and a random source
//! ([`NtsRng`]) are arguments. The wire codecs are in
//! [`crate::wire::ntske`] (records) and [`crate::wire::nts`] (extension
//! fields).
//!
//! # What the daemon calls, in order
//!
//! **NTS-KE server** (one [`ke::KeServer`] per accepted TLS connection;
//! ALPN `ntske/1`, TLS 1.3, done by the daemon):
//! ```text
//! at start:  master = MasterKeys::new(MasterKeyConfig, now_s, &mut rng)
//!            (and before each use: master.rotate_if_due(now_s, &mut rng))
//! per conn:  ke = KeServer::new(&KeServerConfig)
//!            loop { read decrypted bytes from TLS;
//!                   match ke.receive(bytes) {
//!                     KeServerStep::NeedMore => continue,
//!                     KeServerStep::ExportKeys(aead) => {
//!                        c2s = export_keying_material([0; aead.key_len()], EXPORTER_LABEL,
//!                                 exporter_context(ProtocolId::NTPV4, aead, Direction::ClientToServer))
//!                        s2c = … Direction::ServerToClient
//!                        keys = SessionKeys::from_exported(aead, &c2s, &s2c)   (Err → error_response(2))
//!                        write ke.respond(&keys, &master, &mut rng); close_notify }
//!                     KeServerStep::Respond { response, outcome } => { write response; close_notify }
//!                     KeServerStep::Finished => {}
//!                   } }
//!            timeout:      if let Some(r) = ke.timed_out()   { write r }; close
//!            EOF early:    if let Some(r) = ke.end_of_input() { try to write r }; close
//! ```
//! **NTS-KE client** ([`ke::KeClient`]):
//! ```text
//! ke = KeClient::new(KeClientConfig); write ke.request()
//! loop { read bytes (EOF: ke.end_of_input() gives the error); match ke.receive(bytes) {
//!          KeClientStep::NeedMore => continue,
//!          KeClientStep::Done(Ok(resp)) => { export c2s/s2c for resp.aead as above;
//!                                           session = ClientSession::new(keys, resp.cookies);
//!                                           NTP server = resp.ntp_server/ntp_port or the KE host:123 }
//!          KeClientStep::Done(Err(e)) => report e (KeError says which §4 rule)
//!          KeClientStep::Finished => {} } }
//! ```
//! **NTS-protected NTPv4 client** ([`ntp::ClientSession`]):
//! ```text
//! (req, pending) = session.build_request(&header48, &mut rng)?   // NoCookies → run NTS-KE
//! send req; keep pending with the request
//! match session.verify_response(&pending, &datagram) {
//!     Ok(ResponseKind::Time { .. }) => forget pending; process datagram[..48] as usual
//!     Ok(ResponseKind::NtsNak)      => unauthenticated: drop nothing, keep pending; if no Time by the
//!                                      next poll, NTS-KE, then session.rekey(keys, cookies) (RFC 8915 §5.7)
//!     Ok(ResponseKind::Kiss(code))  => forget pending; obey the kiss-o'-death (RATE: back off; DENY/RSTR: stop)
//!     Err(e) => discard the datagram (forged, unauthenticated, not ours)
//! }
//! ```
//! **NTS-protected NTPv4 server** ([`ntp::process_request`]):
//! ```text
//! match ntp::process_request(&master, request) {
//!     NtsRequest::Plain => the plain Server::handle path
//!     NtsRequest::Protected(p) => Server::handle(.., out) then finish_response(.., out, tx_time, ..)
//!            as usual (basic or interleaved), then
//!            len = p.seal_reply(&mut out, &master, &mut rng)?; send out[..len]
//!     NtsRequest::Nak(nak) => len = nak.write(precision_log2, &mut out)?; send out[..len] (NTSN)
//!     NtsRequest::Drop(reason) => send nothing
//! }
//! ```
//!
//! NTPv5: the Protocol ID travels through [`aead::exporter_context`] and
//! [`ke::supported_protocol`]; a KE server may agree on NTPv5 (0x8001), whose
//! requests [`ntp::process_request`] sorts too (draft-ietf-ntp-ntpv5-07 §11).

pub mod aead;
pub mod cookie;
pub mod ke;
pub mod ntp;

pub use aead::{exporter_context, Aead, CryptoError, Direction, Key, SessionKeys, EXPORTER_LABEL};
pub use cookie::{CookieError, MasterKeyConfig, MasterKeys};
pub use ke::{summarize_records, KeClient, KeClientConfig, KeClientStep, KeError, KeResponse, KeServer, KeServerConfig, KeServerOutcome, KeServerStep, RecordSummary};
pub use ntp::{
    process_request, ClientSession, CookieJar, NakReason, NakReply, NoCookies, NtsDropReason, NtsRequest, PendingRequest, PreparedReply,
    ProtectedRequest, ReplyError, ResponseError, ResponseKind,
};

/// A source of cryptographically secure random octets, injected by the
/// caller: the daemon passes the OS generator, the simulator a seeded one.
/// Any `FnMut(&mut [u8])` is one.
pub trait NtsRng {
    /// Fills `dest` with random octets.
    fn fill(&mut self, dest: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> NtsRng for F {
    fn fill(&mut self, dest: &mut [u8]) {
        self(dest)
    }
}

/// A deterministic generator (splitmix64) for tests, benchmarks, fuzzing
/// and simulations whose runs must replay from a seed. **Not
/// cryptographically secure**: production keys and nonces come from the OS
/// generator.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
}

impl NtsRng for SeededRng {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    pub use super::SeededRng as TestRng;

    #[test]
    fn seeded_rng_replays_and_differs_by_seed() {
        use super::NtsRng;
        let (mut a, mut b, mut c) = (TestRng::new(1), TestRng::new(1), TestRng::new(2));
        let (mut x, mut y, mut z) = ([0u8; 13], [0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(x, [0; 13]);
    }
}
