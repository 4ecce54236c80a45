//! The AEAD algorithms of NTS and the key material they use (RFC 8915
//! §5.1, §5.6; RFC 5297; RFC 8452).
//!
//! | [`Aead`] | IANA id | key | nonce we send | tag |
//! |---|---|---|---|---|
//! | `AesSivCmac256` (mandatory) | 15 | 32 octets | 16 octets (any length ≥ 1 accepted) | 16, before the ciphertext |
//! | `AesSivCmac512` | 17 | 64 octets | 16 octets (any length ≥ 1 accepted) | 16, before the ciphertext |
//! | `Aes128GcmSiv` | 30 | 16 octets | 12 octets (exactly) | 16, after the ciphertext |
//!
//! For the SIV modes the RFC 5116 interface `(K, N, A, P)` is RFC 5297 §7's:
//! S2V over the two components `A` then `N`. The algorithms come from the
//! RustCrypto `aes-siv` and `aes-gcm-siv` crates.
//!
//! Key material: [`Key`] holds key octets, wipes them when dropped and never
//! prints them (`Debug` shows the length only). The keys of an NTS association
//! come from the TLS exporter of the NTS-KE session: the daemon calls
//! `export_keying_material(out, EXPORTER_LABEL, Some(&exporter_context(..)))`
//! twice, with `out` of [`Aead::key_len`] octets, and hands both outputs to
//! [`SessionKeys::from_exported`].

use crate::wire::ntske::{AeadId, ProtocolId};
use aes_gcm_siv::aead::{Aead as _, AeadInPlace, KeyInit, Payload};
use core::fmt;
use zeroize::Zeroizing;

/// The exporter label of RFC 8915 §4.3/§5.1.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";

/// Length of every tag the supported algorithms produce.
pub const TAG_LEN: usize = 16;

/// An AEAD algorithm this implementation supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aead {
    /// AEAD_AES_SIV_CMAC_256 (15, RFC 5297): mandatory to implement.
    AesSivCmac256,
    /// AEAD_AES_SIV_CMAC_512 (17, RFC 5297).
    AesSivCmac512,
    /// AEAD_AES_128_GCM_SIV (30, RFC 8452).
    Aes128GcmSiv,
}

/// Why an AEAD operation failed. Carries no key material and no detail an
/// attacker could use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// The key has the wrong length for the algorithm.
    KeyLength,
    /// The nonce has a length the algorithm does not allow.
    NonceLength,
    /// Authentication failed: the ciphertext, the associated data, the nonce
    /// or the key is not the one used to seal.
    Authentication,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::KeyLength => "key has the wrong length for the AEAD algorithm",
            CryptoError::NonceLength => "nonce has a length the AEAD algorithm does not allow",
            CryptoError::Authentication => "authentication failed",
        })
    }
}

impl std::error::Error for CryptoError {}

impl Aead {
    /// All supported algorithms, in the default server preference order:
    /// the mandatory AES-SIV-CMAC-256 first, then AES-128-GCM-SIV, then
    /// AES-SIV-CMAC-512.
    pub const ALL: [Aead; 3] = [Aead::AesSivCmac256, Aead::Aes128GcmSiv, Aead::AesSivCmac512];

    /// The algorithm for an IANA id, `None` if unsupported.
    pub const fn from_id(id: AeadId) -> Option<Aead> {
        match id.0 {
            15 => Some(Aead::AesSivCmac256),
            17 => Some(Aead::AesSivCmac512),
            30 => Some(Aead::Aes128GcmSiv),
            _ => None,
        }
    }

    /// The IANA id.
    pub const fn id(self) -> AeadId {
        match self {
            Aead::AesSivCmac256 => AeadId::AES_SIV_CMAC_256,
            Aead::AesSivCmac512 => AeadId::AES_SIV_CMAC_512,
            Aead::Aes128GcmSiv => AeadId::AES_128_GCM_SIV,
        }
    }

    /// The IANA name, e.g. "AEAD_AES_SIV_CMAC_256".
    pub const fn name(self) -> &'static str {
        match self {
            Aead::AesSivCmac256 => "AEAD_AES_SIV_CMAC_256",
            Aead::AesSivCmac512 => "AEAD_AES_SIV_CMAC_512",
            Aead::Aes128GcmSiv => "AEAD_AES_128_GCM_SIV",
        }
    }

    /// Key length in octets (RFC 5297 §6, RFC 8452 §4): the number of
    /// octets to export for each direction.
    pub const fn key_len(self) -> usize {
        match self {
            Aead::AesSivCmac256 => 32,
            Aead::AesSivCmac512 => 64,
            Aead::Aes128GcmSiv => 16,
        }
    }

    /// The nonce length this implementation sends: 16 for the SIV modes
    /// (RFC 8915 §5.6 N_REQ, so no additional padding is needed), 12 for
    /// GCM-SIV (its only length).
    pub const fn nonce_len(self) -> usize {
        match self {
            Aead::AesSivCmac256 | Aead::AesSivCmac512 => 16,
            Aead::Aes128GcmSiv => 12,
        }
    }

    /// Whether a received nonce of `len` octets is allowed: at least 1 for
    /// the SIV modes (RFC 5297 §6.1 N_MIN), exactly 12 for GCM-SIV.
    pub const fn nonce_len_ok(self, len: usize) -> bool {
        match self {
            Aead::AesSivCmac256 | Aead::AesSivCmac512 => len >= 1,
            Aead::Aes128GcmSiv => len == 12,
        }
    }

    /// N_REQ of RFC 8915 §5.6: the lesser of 16 and N_MAX, rounded up to a
    /// multiple of 4: 16 for the SIV modes, 12 for GCM-SIV (N_MAX 12).
    pub const fn nonce_req_len(self) -> usize {
        match self {
            Aead::AesSivCmac256 | Aead::AesSivCmac512 => 16,
            Aead::Aes128GcmSiv => 12,
        }
    }

    /// Octets `seal` adds to the plaintext.
    pub const fn overhead(self) -> usize {
        TAG_LEN
    }

    /// Encrypts and authenticates `plaintext` with associated data `ad`.
    /// The output is the RFC 5116 ciphertext: tag then ciphertext for the
    /// SIV modes, ciphertext then tag for GCM-SIV.
    pub fn seal(self, key: &[u8], nonce: &[u8], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.check(key, nonce)?;
        match self {
            Aead::AesSivCmac256 => siv_seal::<Siv256>(key, &[ad, nonce], plaintext),
            Aead::AesSivCmac512 => siv_seal::<Siv512>(key, &[ad, nonce], plaintext),
            Aead::Aes128GcmSiv => {
                let cipher = aes_gcm_siv::Aes128GcmSiv::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
                cipher
                    .encrypt(aes_gcm_siv::Nonce::from_slice(nonce), Payload { msg: plaintext, aad: ad })
                    .map_err(|_| CryptoError::Authentication)
            }
        }
    }

    /// Verifies and decrypts a ciphertext made by [`Aead::seal`].
    pub fn open(self, key: &[u8], nonce: &[u8], ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.check(key, nonce)?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Authentication);
        }
        match self {
            Aead::AesSivCmac256 => siv_open::<Siv256>(key, &[ad, nonce], ciphertext),
            Aead::AesSivCmac512 => siv_open::<Siv512>(key, &[ad, nonce], ciphertext),
            Aead::Aes128GcmSiv => {
                let cipher = aes_gcm_siv::Aes128GcmSiv::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
                cipher
                    .decrypt(aes_gcm_siv::Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: ad })
                    .map_err(|_| CryptoError::Authentication)
            }
        }
    }

    /// [`Aead::seal`] without allocating: encrypts `buf` in place and
    /// returns the tag, which the RFC 5116 ciphertext puts before the
    /// encrypted octets for the SIV modes and after them for GCM-SIV
    /// ([`Aead::tag_first`]).
    pub fn seal_in_place(self, key: &[u8], nonce: &[u8], ad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        self.check(key, nonce)?;
        match self {
            Aead::AesSivCmac256 => siv_seal_in_place::<Siv256>(key, &[ad, nonce], buf),
            Aead::AesSivCmac512 => siv_seal_in_place::<Siv512>(key, &[ad, nonce], buf),
            Aead::Aes128GcmSiv => {
                let cipher = aes_gcm_siv::Aes128GcmSiv::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
                cipher
                    .encrypt_in_place_detached(aes_gcm_siv::Nonce::from_slice(nonce), ad, buf)
                    .map(Into::into)
                    .map_err(|_| CryptoError::Authentication)
            }
        }
    }

    /// [`Aead::open`] without allocating: verifies `tag` and decrypts `buf`
    /// in place. On failure `buf` holds no plaintext (the SIV modes encrypt
    /// it again, GCM-SIV decrypts only after the tag verified).
    pub fn open_in_place(self, key: &[u8], nonce: &[u8], ad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), CryptoError> {
        self.check(key, nonce)?;
        match self {
            Aead::AesSivCmac256 => siv_open_in_place::<Siv256>(key, &[ad, nonce], buf, tag),
            Aead::AesSivCmac512 => siv_open_in_place::<Siv512>(key, &[ad, nonce], buf, tag),
            Aead::Aes128GcmSiv => {
                let cipher = aes_gcm_siv::Aes128GcmSiv::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
                cipher
                    .decrypt_in_place_detached(aes_gcm_siv::Nonce::from_slice(nonce), ad, buf, tag.into())
                    .map_err(|_| CryptoError::Authentication)
            }
        }
    }

    /// [`Aead::open`] that hands the plaintext to `f` instead of returning
    /// it: decrypted on the stack when it fits in 512 octets (an NTS
    /// request's encrypted fields usually do), otherwise in a `Vec`.
    pub fn open_with<T>(self, key: &[u8], nonce: &[u8], ad: &[u8], ciphertext: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<T, CryptoError> {
        let body_len = ciphertext.len().checked_sub(TAG_LEN).ok_or(CryptoError::Authentication)?;
        let (tag, body) = if self.tag_first() {
            let (t, b) = ciphertext.split_at(TAG_LEN);
            (t, b)
        } else {
            let (b, t) = ciphertext.split_at(body_len);
            (t, b)
        };
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::Authentication)?;
        let mut stack = [0u8; 512];
        let mut heap = Vec::new();
        let buf = if body_len <= stack.len() {
            &mut stack[..body_len]
        } else {
            heap.resize(body_len, 0);
            &mut heap[..]
        };
        buf.copy_from_slice(body);
        self.open_in_place(key, nonce, ad, buf, tag)?;
        Ok(f(buf))
    }

    /// Whether the tag comes before the encrypted octets in the RFC 5116
    /// ciphertext (the SIV modes) or after them (GCM-SIV).
    pub const fn tag_first(self) -> bool {
        matches!(self, Aead::AesSivCmac256 | Aead::AesSivCmac512)
    }

    fn check(self, key: &[u8], nonce: &[u8]) -> Result<(), CryptoError> {
        if key.len() != self.key_len() {
            return Err(CryptoError::KeyLength);
        }
        if !self.nonce_len_ok(nonce.len()) {
            return Err(CryptoError::NonceLength);
        }
        Ok(())
    }
}

impl fmt::Display for Aead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// AEAD_AES_SIV_CMAC_256: RFC 5297 SIV over AES-128 (CMAC and CTR). The
/// encryption-only AES types give the same octets as `aes_siv`'s
/// `Aes128Siv`, whose full `Aes128` also expands the decryption keys, which
/// SIV never uses, on every CTR pass.
pub(crate) type Siv256 = aes_siv::siv::Siv<aes::Aes128Enc, cmac::Cmac<aes::Aes128Enc>>;
/// AEAD_AES_SIV_CMAC_512: SIV over AES-256, encryption keys only.
pub(crate) type Siv512 = aes_siv::siv::Siv<aes::Aes256Enc, cmac::Cmac<aes::Aes256Enc>>;

/// RFC 5297 S2V/CTR over the header components `headers` (the AEAD
/// construction passes `[A, N]`).
pub(crate) fn siv_seal<S: KeyInit + SivOps>(key: &[u8], headers: &[&[u8]], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0; TAG_LEN + plaintext.len()];
    out[TAG_LEN..].copy_from_slice(plaintext);
    let (tag, body) = out.split_at_mut(TAG_LEN);
    tag.copy_from_slice(&siv_seal_in_place::<S>(key, headers, body)?);
    Ok(out)
}

pub(crate) fn siv_open<S: KeyInit + SivOps>(key: &[u8], headers: &[&[u8]], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (tag, body) = ciphertext.split_at_checked(TAG_LEN).ok_or(CryptoError::Authentication)?;
    let mut plain = body.to_vec();
    siv_open_in_place::<S>(key, headers, &mut plain, tag.try_into().map_err(|_| CryptoError::Authentication)?)?;
    Ok(plain)
}

pub(crate) fn siv_seal_in_place<S: KeyInit + SivOps>(key: &[u8], headers: &[&[u8]], buf: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
    S::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?.seal_in_place(headers, buf)
}

pub(crate) fn siv_open_in_place<S: KeyInit + SivOps>(key: &[u8], headers: &[&[u8]], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), CryptoError> {
    S::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?.open_in_place(headers, buf, tag)
}

/// The two SIV instances behind one interface, in place (no allocation).
pub(crate) trait SivOps {
    fn seal_in_place(&mut self, headers: &[&[u8]], buf: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError>;
    fn open_in_place(&mut self, headers: &[&[u8]], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), CryptoError>;
}

macro_rules! siv_ops {
    ($t:ty) => {
        impl SivOps for $t {
            fn seal_in_place(&mut self, headers: &[&[u8]], buf: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
                self.encrypt_in_place_detached(headers, buf).map(Into::into).map_err(|_| CryptoError::Authentication)
            }
            fn open_in_place(&mut self, headers: &[&[u8]], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), CryptoError> {
                self.decrypt_in_place_detached(headers, buf, tag.into()).map_err(|_| CryptoError::Authentication)
            }
        }
    };
}
siv_ops!(Siv256);
siv_ops!(Siv512);

/// Secret key octets: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Zeroizing<Vec<u8>>);

impl Key {
    /// A key holding `bytes` (copied).
    pub fn from_slice(bytes: &[u8]) -> Key {
        Key(Zeroizing::new(bytes.to_vec()))
    }

    /// A key of `len` octets from `rng`.
    pub fn random(len: usize, rng: &mut dyn super::NtsRng) -> Key {
        let mut k = Zeroizing::new(vec![0u8; len]);
        rng.fill(&mut k);
        Key(k)
    }

    /// The key octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in octets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} octets, redacted)", self.0.len())
    }
}

/// Which of the two keys of RFC 8915 §5.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (context octet 0x00).
    ClientToServer,
    /// Server to client (context octet 0x01).
    ServerToClient,
}

/// The five-octet exporter context of RFC 8915 §5.1: the Protocol ID, the
/// AEAD id and 0x00 (C2S) or 0x01 (S2C). The protocol is the one NTS-KE
/// agreed on: NTPv4 (0) or the NTPv5 draft (0x8001), whose draft uses the
/// same layout with its own Protocol ID (draft-ietf-ntp-ntpv5-07 §11).
pub fn exporter_context(protocol: ProtocolId, aead: Aead, direction: Direction) -> [u8; 5] {
    let [p0, p1] = protocol.0.to_be_bytes();
    let [a0, a1] = aead.id().0.to_be_bytes();
    let d = match direction {
        Direction::ClientToServer => 0x00,
        Direction::ServerToClient => 0x01,
    };
    [p0, p1, a0, a1, d]
}

/// The keys of one NTS association: the algorithm and both directions' keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    /// The negotiated algorithm.
    pub aead: Aead,
    /// Client-to-server key.
    pub c2s: Key,
    /// Server-to-client key.
    pub s2c: Key,
}

/// Exported key material of the wrong length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLengthError {
    /// The algorithm.
    pub aead: Aead,
    /// The length given.
    pub got: usize,
}

impl fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} needs {}-octet keys, got {} octets", self.aead, self.aead.key_len(), self.got)
    }
}

impl std::error::Error for KeyLengthError {}

impl SessionKeys {
    /// The keys from the two TLS exporter outputs (each [`Aead::key_len`]
    /// octets, exported with [`EXPORTER_LABEL`] and [`exporter_context`]).
    pub fn from_exported(aead: Aead, c2s: &[u8], s2c: &[u8]) -> Result<SessionKeys, KeyLengthError> {
        for k in [c2s, s2c] {
            if k.len() != aead.key_len() {
                return Err(KeyLengthError { aead, got: k.len() });
            }
        }
        Ok(SessionKeys { aead, c2s: Key::from_slice(c2s), s2c: Key::from_slice(s2c) })
    }

    /// Fresh random keys (tests, benchmarks and the simulator's forgeries).
    pub fn random(aead: Aead, rng: &mut dyn super::NtsRng) -> SessionKeys {
        SessionKeys { aead, c2s: Key::random(aead.key_len(), rng), s2c: Key::random(aead.key_len(), rng) }
    }

    /// The key for `direction`.
    pub fn key(&self, direction: Direction) -> &Key {
        match direction {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 5297 Appendix A.1: deterministic mode, one header component.
    #[test]
    fn rfc5297_a1_deterministic() {
        let key = hex("fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff");
        let ad = hex("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627");
        let pt = hex("11223344 55667788 99aabbcc ddee");
        let out = hex("85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c");
        let sealed = siv_seal::<Siv256>(&key, &[&ad], &pt).unwrap();
        assert_eq!(sealed, out);
        assert_eq!(siv_open::<Siv256>(&key, &[&ad], &out).unwrap(), pt);
    }

    /// RFC 5297 Appendix A.2: nonce-based, two associated data components
    /// then the nonce as the last component.
    #[test]
    fn rfc5297_a2_nonce_based() {
        let key = hex("7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f");
        let ad1 = hex("00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100");
        let ad2 = hex("10203040 50607080 90a0");
        let nonce = hex("09f91102 9d74e35b d84156c5 635688c0");
        let pt = hex("74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553");
        let out = hex(
            "7bdb6e3b 432667eb 06f4d14b ff2fbd0f cb900f2f ddbe4043 26601965 c889bf17 dba77ceb 094fa663 b7a3f748 ba8af829 ea64ad54 4a272e9c 485b62a3 fd5c0d",
        );
        let sealed = siv_seal::<Siv256>(&key, &[&ad1, &ad2, &nonce], &pt).unwrap();
        assert_eq!(sealed, out);
    }

    /// RFC 8452 Appendix C.1, the first two AEAD_AES_128_GCM_SIV vectors.
    #[test]
    fn rfc8452_c1_gcm_siv() {
        let key = hex("01000000000000000000000000000000");
        let nonce = hex("030000000000000000000000");
        let a = Aead::Aes128GcmSiv;
        assert_eq!(a.seal(&key, &nonce, &[], &[]).unwrap(), hex("dc20e2d83f25705bb49e439eca56de25"));
        let pt = hex("0100000000000000");
        let ct = hex("b5d839330ac7b786578782fff6013b815b287c22493a364c");
        assert_eq!(a.seal(&key, &nonce, &[], &pt).unwrap(), ct);
        assert_eq!(a.open(&key, &nonce, &[], &ct).unwrap(), pt);
    }

    #[test]
    fn round_trip_and_tamper_every_algorithm() {
        for aead in Aead::ALL {
            let key = vec![7u8; aead.key_len()];
            let nonce = vec![9u8; aead.nonce_len()];
            let ct = aead.seal(&key, &nonce, b"header", b"secret fields").unwrap();
            assert_eq!(ct.len(), 13 + aead.overhead());
            assert_eq!(aead.open(&key, &nonce, b"header", &ct).unwrap(), b"secret fields");
            assert_eq!(aead.open(&key, &nonce, b"headeR", &ct), Err(CryptoError::Authentication));
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(aead.open(&key, &nonce, b"header", &bad), Err(CryptoError::Authentication));
            assert_eq!(aead.open(&key[1..], &nonce, b"header", &ct), Err(CryptoError::KeyLength));
            assert_eq!(aead.open(&key, &[], b"header", &ct), Err(CryptoError::NonceLength));
            assert_eq!(aead.open(&key, &nonce, b"header", &ct[..15]), Err(CryptoError::Authentication));
            assert_eq!(Aead::from_id(aead.id()), Some(aead));
        }
        assert_eq!(Aead::from_id(AeadId(16)), None);
        // SIV accepts any nonce length; GCM-SIV only 12.
        assert!(Aead::AesSivCmac256.seal(&[0; 32], &[1; 5], b"", b"").is_ok());
        assert_eq!(Aead::Aes128GcmSiv.seal(&[0; 16], &[1; 16], b"", b""), Err(CryptoError::NonceLength));
    }

    #[test]
    fn exporter_inputs() {
        assert_eq!(EXPORTER_LABEL, b"EXPORTER-network-time-security");
        assert_eq!(exporter_context(ProtocolId::NTPV4, Aead::AesSivCmac256, Direction::ClientToServer), [0, 0, 0, 15, 0]);
        assert_eq!(exporter_context(ProtocolId::NTPV4, Aead::Aes128GcmSiv, Direction::ServerToClient), [0, 0, 0, 30, 1]);
        assert_eq!(exporter_context(ProtocolId::NTPV5_DRAFT, Aead::AesSivCmac512, Direction::ServerToClient), [0x80, 1, 0, 17, 1]);
        let k = SessionKeys::from_exported(Aead::Aes128GcmSiv, &[1; 16], &[2; 16]).unwrap();
        assert_eq!(k.key(Direction::ServerToClient).as_bytes(), &[2; 16]);
        let e = SessionKeys::from_exported(Aead::AesSivCmac256, &[1; 16], &[2; 32]).unwrap_err();
        assert_eq!(e.to_string(), "AEAD_AES_SIV_CMAC_256 needs 32-octet keys, got 16 octets");
        assert!(!format!("{k:?}").contains("1, 1"), "keys are not printed: {k:?}");
    }
}
