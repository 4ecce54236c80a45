//! Server cookies (RFC 8915 §6, non-normative format) and the master keys
//! that seal them.
//!
//! # Cookie format
//!
//! ```text
//! octets 0..4    key id I, big-endian, in clear
//! octets 4..20   nonce N, 16 random octets
//! octets 20..    AEAD_AES_SIV_CMAC_256 under master key K (32 octets),
//!                nonce N, associated data = octets 0..4 (the key id),
//!                of the plaintext  AEAD id (2 octets, big-endian) | 0x0000 | C2S key | S2C key
//! ```
//!
//! A cookie is `20 + 16 + 4 + 2 × key length` octets: 104 for
//! AES-SIV-CMAC-256, 168 for AES-SIV-CMAC-512, 72 for AES-128-GCM-SIV, a
//! multiple of 4, so the NTS Cookie field needs no padding and a client
//! hands back exactly the octets it got. All
//! cookies of one algorithm have the same length, so a server's fresh
//! cookie always fits in the room the client's cookie or placeholder made.
//!
//! # Rotation
//!
//! [`MasterKeys`] holds the current key and up to
//! [`MasterKeyConfig::keep_previous`] earlier ones. Time is the caller's:
//! [`MasterKeys::rotate_if_due`] takes `now_s`, seconds on any clock the
//! caller keeps monotonic (the daemon's monotonic clock, the simulator's
//! simulated time). Every `rotation_period_s` seconds a new random key with
//! a new random id becomes current, and the oldest key beyond
//! `keep_previous` is erased (its octets wiped). A cookie sealed under the
//! key that was current at time t therefore opens until that key is erased,
//! `keep_previous + 1` rotations later: **at least `keep_previous ×
//! rotation_period_s` seconds and less than `(keep_previous + 1) ×
//! rotation_period_s` after it was issued** (with the defaults, 1 day × 7:
//! between 7 and 8 days). A cookie whose key id is not held, or that does not
//! authenticate, gives a [`CookieError`], which the server answers with an
//! NTS NAK.
//!
//! Memory: 32 key octets plus 4 id octets per key, `keep_previous + 1` keys,
//! and with each key its SIV instance (key schedules and CMAC state, under
//! 1 KiB a key: `a_key_with_its_cipher_stays_under_a_kib`), made when the
//! key is and once more for each copy of the key set (the daemon's workers
//! keep one each).

use super::aead::{Aead, Key, SessionKeys, Siv256, SivOps, TAG_LEN};
use aes_gcm_siv::aead::KeyInit;
use super::NtsRng;
use crate::wire::ntske::AeadId;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Length of a master key (AES-SIV-CMAC-256).
pub const MASTER_KEY_LEN: usize = 32;
/// Length of the key id at the start of a cookie.
pub const KEY_ID_LEN: usize = 4;
/// Length of the cookie nonce.
pub const COOKIE_NONCE_LEN: usize = 16;
/// Default rotation period: one day (RFC 8915 §6 suggests daily).
pub const DEFAULT_ROTATION_PERIOD_S: u64 = 86_400;
/// Default number of earlier keys kept: seven, so cookies stay valid for at
/// least a week with the default period.
pub const DEFAULT_KEEP_PREVIOUS: usize = 7;
/// Most earlier keys that can be kept (bounds memory and lookup time).
pub const MAX_KEEP_PREVIOUS: usize = 64;

/// The cookie length for an algorithm's session keys.
pub const fn cookie_len(aead: Aead) -> usize {
    KEY_ID_LEN + COOKIE_NONCE_LEN + TAG_LEN + 4 + 2 * aead.key_len()
}

/// Rotation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterKeyConfig {
    /// Seconds between rotations (at least 1).
    pub rotation_period_s: u64,
    /// Earlier keys kept after a rotation (at most [`MAX_KEEP_PREVIOUS`]).
    pub keep_previous: usize,
}

impl Default for MasterKeyConfig {
    fn default() -> Self {
        MasterKeyConfig { rotation_period_s: DEFAULT_ROTATION_PERIOD_S, keep_previous: DEFAULT_KEEP_PREVIOUS }
    }
}

impl MasterKeyConfig {
    /// Shortest time a cookie stays valid after it is issued, seconds.
    pub fn min_cookie_lifetime_s(&self) -> u64 {
        self.rotation_period_s.max(1).saturating_mul(self.keep_previous.min(MAX_KEEP_PREVIOUS) as u64)
    }
}

/// Why a cookie did not open. The server answers each with an NTS NAK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieError {
    /// Too short to hold a key id, a nonce and a tag, or a plaintext of the
    /// wrong shape (never from a cookie this server sealed).
    Malformed,
    /// No key with this id is held: it was rotated out (expired) or never existed.
    UnknownKey(u32),
    /// The key id is known but the cookie does not authenticate under it.
    Authentication,
}

impl core::fmt::Display for CookieError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CookieError::Malformed => f.write_str("cookie is malformed"),
            CookieError::UnknownKey(id) => write!(f, "cookie key {id:#010x} is not held (expired or never issued)"),
            CookieError::Authentication => f.write_str("cookie does not authenticate"),
        }
    }
}

impl std::error::Error for CookieError {}

/// Longest cookie plaintext: the AEAD id, two zero octets and both keys of
/// the longest-keyed algorithm (AES-SIV-CMAC-512).
const MAX_COOKIE_PLAIN_LEN: usize = 4 + 2 * 64;

struct MasterKey {
    id: u32,
    key: Key,
    /// The key's SIV instance, made once (key expansion and CMAC subkeys)
    /// instead of for every cookie sealed or opened. A caller that finds it
    /// in use (another worker) makes a fresh one from `key` rather than wait.
    cipher: Mutex<Siv256>,
}

impl MasterKey {
    fn new(id: u32, key: Key) -> MasterKey {
        // The key is MASTER_KEY_LEN octets by construction: the length matches.
        let cipher = Mutex::new(Siv256::new_from_slice(key.as_bytes()).expect("master key is 32 octets"));
        MasterKey { id, key, cipher }
    }

    /// Runs `f` with this key's SIV instance (a fresh one if it is in use).
    fn with_cipher<T>(&self, f: impl FnOnce(&mut Siv256) -> T) -> T {
        match self.cipher.try_lock() {
            Ok(mut cipher) => f(&mut cipher),
            Err(std::sync::TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => f(&mut Siv256::new_from_slice(self.key.as_bytes()).expect("master key is 32 octets")),
        }
    }
}

impl Clone for MasterKey {
    fn clone(&self) -> MasterKey {
        MasterKey::new(self.id, self.key.clone())
    }
}

impl core::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).field("key", &self.key).finish_non_exhaustive()
    }
}

/// The server's cookie keys: current plus earlier ones, rotated by the
/// caller's time. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct MasterKeys {
    config: MasterKeyConfig,
    /// Front: the current key; then older ones.
    keys: VecDeque<MasterKey>,
    next_rotation_s: u64,
}

impl MasterKeys {
    /// A fresh current key drawn from `rng`; the first rotation is due at
    /// `now_s + rotation_period_s`.
    pub fn new(config: MasterKeyConfig, now_s: u64, rng: &mut dyn NtsRng) -> MasterKeys {
        let config = MasterKeyConfig {
            rotation_period_s: config.rotation_period_s.max(1),
            keep_previous: config.keep_previous.min(MAX_KEEP_PREVIOUS),
        };
        let mut m = MasterKeys { config, keys: VecDeque::with_capacity(config.keep_previous + 1), next_rotation_s: 0 };
        m.push_new_key(rng);
        m.next_rotation_s = now_s.saturating_add(config.rotation_period_s);
        m
    }

    /// The settings (as clamped by [`MasterKeys::new`]).
    pub fn config(&self) -> MasterKeyConfig {
        self.config
    }

    /// The id of the key new cookies are sealed with.
    pub fn current_key_id(&self) -> u32 {
        self.keys.front().map_or(0, |k| k.id)
    }

    /// Ids of all keys held, current first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// When the next rotation is due, in the caller's seconds.
    pub fn next_rotation_s(&self) -> u64 {
        self.next_rotation_s
    }

    fn push_new_key(&mut self, rng: &mut dyn NtsRng) {
        // A random id, different from every id held (bounded retries; the
        // fallback walks to a free id, which exists since at most 65 are held).
        let mut id = 0u32;
        for _ in 0..8 {
            let mut b = [0u8; 4];
            rng.fill(&mut b);
            id = u32::from_be_bytes(b);
            if !self.keys.iter().any(|k| k.id == id) {
                break;
            }
        }
        while self.keys.iter().any(|k| k.id == id) {
            id = id.wrapping_add(1);
        }
        self.keys.push_front(MasterKey::new(id, Key::random(MASTER_KEY_LEN, rng)));
        self.keys.truncate(self.config.keep_previous + 1);
    }

    /// Rotates now, whatever the schedule (an operator's or a scenario's
    /// forced rotation); the next scheduled rotation is one period later.
    pub fn rotate(&mut self, now_s: u64, rng: &mut dyn NtsRng) {
        self.push_new_key(rng);
        self.next_rotation_s = now_s.saturating_add(self.config.rotation_period_s);
    }

    /// Rotates if a rotation is due at `now_s`; returns how many rotations
    /// happened (more than one if the caller was away for several periods,
    /// at most `keep_previous + 1`, which already replaces every key).
    pub fn rotate_if_due(&mut self, now_s: u64, rng: &mut dyn NtsRng) -> usize {
        let mut n = 0;
        while now_s >= self.next_rotation_s && n <= self.config.keep_previous {
            self.push_new_key(rng);
            self.next_rotation_s = self.next_rotation_s.saturating_add(self.config.rotation_period_s);
            n += 1;
        }
        if now_s >= self.next_rotation_s {
            // Away longer than every key's life: restart the schedule from now.
            self.next_rotation_s = now_s.saturating_add(self.config.rotation_period_s);
        }
        n
    }

    /// Seals `keys` into a new cookie under the current key.
    pub fn seal(&self, keys: &SessionKeys, rng: &mut dyn NtsRng) -> Vec<u8> {
        let mut out = vec![0; cookie_len(keys.aead)];
        let n = self.seal_into(keys, rng, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }

    /// [`MasterKeys::seal`] into `out` without allocating: the cookie's
    /// length ([`cookie_len`]), or `None` if `out` is shorter.
    pub fn seal_into(&self, keys: &SessionKeys, rng: &mut dyn NtsRng, out: &mut [u8]) -> Option<usize> {
        let current = self.keys.front()?;
        let len = cookie_len(keys.aead);
        let out = out.get_mut(..len)?;
        let (id, rest) = out.split_at_mut(KEY_ID_LEN);
        let (nonce, rest) = rest.split_at_mut(COOKIE_NONCE_LEN);
        let (tag, plain) = rest.split_at_mut(TAG_LEN);
        id.copy_from_slice(&current.id.to_be_bytes());
        rng.fill(nonce);
        let k = keys.aead.key_len();
        plain[..2].copy_from_slice(&keys.aead.id().0.to_be_bytes());
        plain[2..4].fill(0);
        plain[4..4 + k].copy_from_slice(keys.c2s.as_bytes());
        plain[4 + k..].copy_from_slice(keys.s2c.as_bytes());
        // The headers are short and few, so sealing cannot fail; if it did,
        // the keys would not be left in the clear.
        match current.with_cipher(|siv| siv.seal_in_place(&[&id[..], &nonce[..]], plain)) {
            Ok(t) => tag.copy_from_slice(&t),
            Err(_) => {
                plain.fill(0);
                return None;
            }
        }
        Some(len)
    }

    /// Opens a cookie: the session keys it carries, or why not.
    pub fn open(&self, cookie: &[u8]) -> Result<SessionKeys, CookieError> {
        if cookie.len() < KEY_ID_LEN + COOKIE_NONCE_LEN + TAG_LEN {
            return Err(CookieError::Malformed);
        }
        let (id_bytes, rest) = cookie.split_at(KEY_ID_LEN);
        let (nonce, rest) = rest.split_at(COOKIE_NONCE_LEN);
        let (tag, ct) = rest.split_at(TAG_LEN);
        let id = u32::from_be_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]);
        let key = self.keys.iter().find(|k| k.id == id).ok_or(CookieError::UnknownKey(id))?;
        // Longer than any cookie this server seals: it cannot authenticate.
        if ct.len() > MAX_COOKIE_PLAIN_LEN {
            return Err(CookieError::Authentication);
        }
        let mut buf = zeroize::Zeroizing::new([0u8; MAX_COOKIE_PLAIN_LEN]);
        let plain = &mut buf[..ct.len()];
        plain.copy_from_slice(ct);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| CookieError::Malformed)?;
        key.with_cipher(|siv| siv.open_in_place(&[id_bytes, nonce], plain, tag)).map_err(|_| CookieError::Authentication)?;
        if plain.len() < 4 || plain[2..4] != [0, 0] {
            return Err(CookieError::Malformed);
        }
        let aead = Aead::from_id(AeadId(u16::from_be_bytes([plain[0], plain[1]]))).ok_or(CookieError::Malformed)?;
        let k = aead.key_len();
        if plain.len() != 4 + 2 * k {
            return Err(CookieError::Malformed);
        }
        SessionKeys::from_exported(aead, &plain[4..4 + k], &plain[4 + k..]).map_err(|_| CookieError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nts::tests::TestRng;

    fn keys(aead: Aead, rng: &mut TestRng) -> SessionKeys {
        SessionKeys::random(aead, rng)
    }

    #[test]
    fn seal_open_round_trip_each_aead() {
        let mut rng = TestRng::new(1);
        let m = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        for aead in Aead::ALL {
            let k = keys(aead, &mut rng);
            let c = m.seal(&k, &mut rng);
            assert_eq!(c.len(), cookie_len(aead));
            assert_eq!(m.open(&c).unwrap(), k);
            assert_eq!(&c[..4], &m.current_key_id().to_be_bytes());
            // Two cookies for the same keys differ (fresh nonce): unlinkable.
            assert_ne!(m.seal(&k, &mut rng), c);
        }
        assert_eq!(cookie_len(Aead::AesSivCmac256), 104);
        assert_eq!(cookie_len(Aead::Aes128GcmSiv), 72);
        assert_eq!(cookie_len(Aead::AesSivCmac512), 168);
    }

    /// A key's SIV instance in use (another worker sealing) is not waited
    /// for: a fresh one seals and opens the same cookies.
    #[test]
    fn a_busy_key_cipher_gives_the_same_cookies() {
        let mut rng = TestRng::new(8);
        let m = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let k = keys(Aead::AesSivCmac256, &mut rng);
        let free = m.seal(&k, &mut TestRng::new(9));
        let _busy = m.keys[0].cipher.lock().unwrap();
        assert_eq!(m.seal(&k, &mut TestRng::new(9)), free);
        assert_eq!(m.open(&free).unwrap(), k);
        // A clone has its own instance.
        assert_eq!(m.clone().open(&free).unwrap(), k);
    }

    /// The memory bound of the module documentation: a key with its SIV
    /// instance stays under 1 KiB (the AES state is sized for both of the
    /// `aes` crate's backends, AES-NI and the portable one).
    #[test]
    fn a_key_with_its_cipher_stays_under_a_kib() {
        let size = std::mem::size_of::<MasterKey>() + MASTER_KEY_LEN;
        assert!(size < 1024, "{size} octets");
    }

    #[test]
    fn bad_cookies_are_refused() {
        let mut rng = TestRng::new(2);
        let m = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let c = m.seal(&keys(Aead::AesSivCmac256, &mut rng), &mut rng);
        assert_eq!(m.open(&c[..35]), Err(CookieError::Malformed));
        assert_eq!(m.open(&[]), Err(CookieError::Malformed));
        for i in 4..c.len() {
            let mut t = c.clone();
            t[i] ^= 0x40;
            assert_eq!(m.open(&t), Err(CookieError::Authentication), "octet {i}");
        }
        let mut t = c.clone();
        t[0] ^= 1;
        assert!(matches!(m.open(&t), Err(CookieError::UnknownKey(_))));
        // Another server's key (same id space, different key) does not open it.
        let other = MasterKeys::new(MasterKeyConfig::default(), 0, &mut TestRng::new(3));
        assert!(other.open(&c).is_err());
    }

    #[test]
    fn rotation_keeps_previous_keys_then_expires_them() {
        let mut rng = TestRng::new(4);
        let cfg = MasterKeyConfig { rotation_period_s: 100, keep_previous: 2 };
        assert_eq!(cfg.min_cookie_lifetime_s(), 200);
        let mut m = MasterKeys::new(cfg, 1000, &mut rng);
        let k = keys(Aead::Aes128GcmSiv, &mut rng);
        let c = m.seal(&k, &mut rng);
        assert_eq!(m.rotate_if_due(1099, &mut rng), 0);
        assert_eq!(m.rotate_if_due(1100, &mut rng), 1);
        assert_eq!(m.open(&c).unwrap(), k, "cookie from the previous key still opens");
        assert_eq!(m.rotate_if_due(1200, &mut rng), 1);
        assert_eq!(m.open(&c).unwrap(), k, "two rotations later, still held (keep_previous = 2)");
        assert_eq!(m.key_ids().len(), 3);
        assert_eq!(m.rotate_if_due(1300, &mut rng), 1);
        assert!(matches!(m.open(&c), Err(CookieError::UnknownKey(_))), "rotated out");
        // A new cookie opens; ids are distinct.
        let c2 = m.seal(&k, &mut rng);
        assert_eq!(m.open(&c2).unwrap(), k);
        let mut ids = m.key_ids();
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn long_absence_rotates_a_bounded_number_of_times() {
        let mut rng = TestRng::new(5);
        let cfg = MasterKeyConfig { rotation_period_s: 10, keep_previous: 3 };
        let mut m = MasterKeys::new(cfg, 0, &mut rng);
        let c = m.seal(&keys(Aead::AesSivCmac256, &mut rng), &mut rng);
        assert_eq!(m.rotate_if_due(u64::MAX / 2, &mut rng), 4);
        assert!(m.open(&c).is_err());
        assert_eq!(m.next_rotation_s(), u64::MAX / 2 + 10);
        // A forced rotation moves the schedule.
        m.rotate(u64::MAX / 2 + 5, &mut rng);
        assert_eq!(m.next_rotation_s(), u64::MAX / 2 + 15);
    }

    /// The memory bound of the module documentation: never more than
    /// `keep_previous + 1` keys of 32 octets, however many rotations.
    #[test]
    fn rotations_never_hold_more_than_keep_previous_plus_one_keys() {
        let mut rng = TestRng::new(7);
        for keep_previous in [0, DEFAULT_KEEP_PREVIOUS, MAX_KEEP_PREVIOUS, 1000] {
            let mut m = MasterKeys::new(MasterKeyConfig { rotation_period_s: 1, keep_previous }, 0, &mut rng);
            for now_s in 1..=200 {
                m.rotate_if_due(now_s, &mut rng);
                m.rotate(now_s, &mut rng);
                assert!(m.key_ids().len() <= keep_previous.min(MAX_KEEP_PREVIOUS) + 1);
                assert!(m.keys.iter().all(|k| k.key.as_bytes().len() == MASTER_KEY_LEN));
            }
            assert_eq!(m.key_ids().len(), keep_previous.min(MAX_KEEP_PREVIOUS) + 1, "full after 400 rotations");
        }
    }

    #[test]
    fn config_is_clamped() {
        let mut rng = TestRng::new(6);
        let m = MasterKeys::new(MasterKeyConfig { rotation_period_s: 0, keep_previous: 1000 }, 0, &mut rng);
        assert_eq!(m.config(), MasterKeyConfig { rotation_period_s: 1, keep_previous: MAX_KEEP_PREVIOUS });
    }
}
