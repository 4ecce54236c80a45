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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Random octets from a rustls provider's secure generator (the OS's in
/// production; a seeded one in a simulation that installs one).
pub fn provider_rng(provider: &CryptoProvider) -> impl FnMut(&mut [u8]) + '_ {
    move |dest: &mut [u8]| {
        // Without randomness no key or nonce can be made: nothing sensible goes on.
        provider.secure_random.fill(dest).expect("the secure random generator failed")
    }
}

/// Seconds on a monotonic scale, for key rotation.
pub type SecondsNow = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the KE listener and the NTP server (the daemon loop or the fast
/// path's worker threads) share. The master keys are read-mostly: readers
/// take the current set as an `Arc` ([`NtsServerShared::keys`]) and keep it
/// until [`NtsServerShared::generation`] moves on; a rotation builds a new set
/// and swaps it in under a short write lock, so a reader never waits for a
/// rotation's random draws and never sees half a rotation.
pub struct NtsServerShared {
    master: RwLock<Arc<MasterKeys>>,
    /// Bumped after every change of `master`.
    generation: AtomicU64,
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
    pub fn new(spec: &NtsServerSpec, provider: Arc<CryptoProvider>, now_s: SecondsNow) -> Arc<NtsServerShared> {
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
        Arc::new(NtsServerShared { master: RwLock::new(Arc::new(master)), generation: AtomicU64::new(1), provider, ke, now_s })
    }

    /// The current master keys (as of the last rotation).
    pub fn keys(&self) -> Arc<MasterKeys> {
        self.master.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes with every rotation: a reader holding [`NtsServerShared::keys`]
    /// of an older generation takes them again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Rotates the master key if its period is over; how many rotations happened.
    pub fn rotate_if_due(&self) -> usize {
        let now = (self.now_s)();
        if now < self.keys().next_rotation_s() {
            return 0;
        }
        let mut master = self.master.write().unwrap_or_else(|e| e.into_inner());
        // Another thread may have rotated since the check: then nothing is due.
        let mut next = MasterKeys::clone(&master);
        let n = next.rotate_if_due(now, &mut provider_rng(&self.provider));
        if n > 0 {
            *master = Arc::new(next);
            self.generation.fetch_add(1, Ordering::Release);
        }
        n
    }

    /// Brings a reader's copy of the keys (with the generation it was taken
    /// at) up to date: rotates first if the copy says a rotation is due, and
    /// takes the keys again if they changed. Costs one atomic load when
    /// nothing is due and nothing changed, besides reading the seconds.
    pub fn refresh(&self, cached: &mut (u64, Arc<MasterKeys>)) {
        if (self.now_s)() >= cached.1.next_rotation_s() {
            self.rotate_if_due();
        }
        let generation = self.generation();
        if generation != cached.0 {
            *cached = (generation, self.keys());
        }
    }

    /// Runs `f` with the master keys (rotated first, if due) and a random
    /// source (the provider's: the OS generator, or a simulation's seeded one).
    pub fn with_master<T>(&self, f: impl FnOnce(&MasterKeys, &mut dyn NtsRng) -> T) -> T {
        self.rotate_if_due();
        let mut rng = provider_rng(&self.provider);
        f(&self.keys(), &mut rng)
    }

    /// The current master key's ID.
    pub fn current_key_id(&self) -> u32 {
        self.keys().current_key_id()
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
    shared: Arc<NtsServerShared>,
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

impl KeSessions for Arc<NtsServerShared> {
    fn session(&self) -> Box<dyn KeSession> {
        Box::new(Session { ke: KeServer::new(&self.ke), shared: self.clone() })
    }
}
