//! The daemon's NTS server state: the cookie master keys (shared by the KE
//! listener, which seals cookies under them, and the NTP server, which opens
//! them), rotated on the configured period, and the KE sessions that drive
//! the core's [`KeServer`] for each connection.

use super::ke::{KeSession, KeSessions, KeStep};
use super::tls::KeyExporter;
use crate::config::NtsServerSpec;
use ntplab_proto::nts::ke::error_response;
use ntplab_proto::nts::{
    exporter_context, Aead, Direction, KeServer, KeServerConfig, KeServerStep, MasterKeyConfig, MasterKeys, NtsRng,
    SessionKeys, EXPORTER_LABEL,
};
use ntplab_proto::wire::ntske::{ErrorCode, ProtocolId};
use rustls::crypto::CryptoProvider;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Random octets from a rustls provider's secure generator (the OS's in
/// production; a seeded one in a simulation that installs one).
pub fn provider_rng(provider: &CryptoProvider) -> impl FnMut(&mut [u8]) + '_ {
    move |dest: &mut [u8]| {
        // Without randomness no key or nonce can be made: nothing sensible goes on.
        provider.secure_random.fill(dest).expect("the secure random generator failed")
    }
}

/// Seconds on a monotonic scale, for key rotation.
pub type SecondsNow = Rc<dyn Fn() -> u64>;

/// What the KE listener and the NTP server share.
pub struct NtsServerShared {
    master: RefCell<MasterKeys>,
    provider: Arc<CryptoProvider>,
    ke: KeServerConfig,
    now_s: SecondsNow,
}

impl std::fmt::Debug for NtsServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // MasterKeys' own Debug shows key IDs only; say no more here.
        f.debug_struct("NtsServerShared").field("ke", &self.ke).finish_non_exhaustive()
    }
}

impl NtsServerShared {
    /// Fresh master keys for `spec`, rotating every `spec.key_rotation`.
    pub fn new(spec: &NtsServerSpec, provider: Arc<CryptoProvider>, now_s: SecondsNow) -> Rc<NtsServerShared> {
        let config = MasterKeyConfig {
            rotation_period_s: spec.key_rotation.as_secs().max(1),
            ..MasterKeyConfig::default()
        };
        let master = MasterKeys::new(config, now_s(), &mut provider_rng(&provider));
        let ke = KeServerConfig {
            aeads: spec.aeads.clone(),
            ntp_server: spec.ntp_server.clone(),
            ntp_port: spec.ntp_port,
            max_request_len: spec.limits.request_bytes,
            ntpv5: spec.ntpv5,
            ..KeServerConfig::default()
        };
        Rc::new(NtsServerShared { master: RefCell::new(master), provider, ke, now_s })
    }

    /// Rotates the master key if its period is over; how many rotations happened.
    pub fn rotate_if_due(&self) -> usize {
        self.master.borrow_mut().rotate_if_due((self.now_s)(), &mut provider_rng(&self.provider))
    }

    /// Runs `f` with the master keys (rotated first, if due) and a random source.
    pub fn with_master<T>(&self, f: impl FnOnce(&MasterKeys, &mut dyn NtsRng) -> T) -> T {
        self.rotate_if_due();
        let mut rng = provider_rng(&self.provider);
        f(&self.master.borrow(), &mut rng)
    }

    /// The current master key's ID.
    pub fn current_key_id(&self) -> u32 {
        self.master.borrow().current_key_id()
    }
}

/// Exports the two keys of `aead` for `protocol` (NTPv4 or NTPv5) from a
/// finished TLS connection (RFC 8915 §5.1).
pub fn export_keys(exporter: &dyn KeyExporter, protocol: ProtocolId, aead: Aead) -> Result<SessionKeys, String> {
    let mut c2s = vec![0u8; aead.key_len()];
    let mut s2c = vec![0u8; aead.key_len()];
    let context = |d| exporter_context(protocol, aead, d);
    exporter.export(EXPORTER_LABEL, &context(Direction::ClientToServer), &mut c2s)?;
    exporter.export(EXPORTER_LABEL, &context(Direction::ServerToClient), &mut s2c)?;
    let keys = SessionKeys::from_exported(aead, &c2s, &s2c).map_err(|e| format!("{e:?}"));
    zeroize::Zeroize::zeroize(&mut c2s);
    zeroize::Zeroize::zeroize(&mut s2c);
    keys
}

/// One KE connection on the server: the core's state machine.
struct Session {
    ke: KeServer,
    shared: Rc<NtsServerShared>,
}

impl KeSession for Session {
    fn receive(&mut self, data: &[u8], exporter: &dyn KeyExporter) -> KeStep {
        match self.ke.receive(data) {
            KeServerStep::NeedMore => KeStep::NeedMore,
            KeServerStep::Respond { response, outcome } => KeStep::Respond { response, note: format!("{outcome:?}") },
            KeServerStep::Finished => KeStep::Respond { response: Vec::new(), note: "finished".into() },
            KeServerStep::ExportKeys(aead) => match export_keys(exporter, self.ke.protocol().unwrap_or(ProtocolId::NTPV4), aead) {
                Ok(keys) => {
                    let response = self.shared.with_master(|master, rng| self.ke.respond(&keys, master, rng));
                    KeStep::Respond { response, note: format!("cookies for AEAD {}", aead.id().0) }
                }
                Err(e) => KeStep::Respond {
                    response: error_response(ErrorCode::INTERNAL_SERVER_ERROR),
                    note: format!("key export failed: {e}"),
                },
            },
        }
    }

    fn end_of_input(&mut self) -> Option<Vec<u8>> {
        self.ke.end_of_input()
    }

    fn timed_out(&mut self) -> Option<Vec<u8>> {
        self.ke.timed_out()
    }
}

impl KeSessions for Rc<NtsServerShared> {
    fn session(&self) -> Box<dyn KeSession> {
        Box::new(Session { ke: KeServer::new(&self.ke), shared: self.clone() })
    }
}
