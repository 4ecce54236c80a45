//! The 32-bit reference identifier (RFC 5905 §7.3, Figures 12 and 13) and what
//! it can mean: a clock source code at stratum 1, a kiss code at stratum 0, an
//! upstream IPv4 address or IPv6 address hash above stratum 1, or the leap-smear
//! REFID 254.b1.b2.b3 of draft-stenn-ntp-leap-smear-refid-02.

use crate::time::NtpDuration;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

/// The four reference-ID octets, kept as they came.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReferenceId(pub [u8; 4]);

/// First octet of a leap-smear REFID.
pub const SMEAR_REFID_OCTET: u8 = 254;

impl ReferenceId {
    /// The all-zero reference ID.
    pub const NONE: ReferenceId = ReferenceId([0; 4]);

    /// From an ASCII code of up to four characters, left-justified and zero-padded
    /// (`"GPS"` gives `47 50 53 00`). Longer codes are cut to four octets.
    pub fn from_ascii(code: &str) -> Self {
        let mut b = [0u8; 4];
        for (dst, src) in b.iter_mut().zip(code.bytes()) {
            *dst = src;
        }
        ReferenceId(b)
    }

    /// The reference ID of an upstream IPv4 server.
    pub fn from_ipv4(addr: Ipv4Addr) -> Self {
        ReferenceId(addr.octets())
    }

    /// The reference ID of an upstream IPv6 server: the first four octets of the
    /// MD5 digest of its address (RFC 5905 §7.3).
    pub fn from_ipv6(addr: Ipv6Addr) -> Self {
        use md5::Digest;
        let d = md5::Md5::digest(addr.octets());
        ReferenceId([d[0], d[1], d[2], d[3]])
    }

    /// As a 32-bit number.
    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The octets as an ASCII code with trailing NULs removed, if they are
    /// printable ASCII followed only by NULs (as RFC 5905 requires at stratum 0 and 1).
    pub fn ascii(&self) -> Option<&str> {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(4);
        if self.0[end..].iter().any(|&b| b != 0) {
            return None;
        }
        let code = &self.0[..end];
        if code.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            core::str::from_utf8(code).ok()
        } else {
            None
        }
    }

    /// The kiss code, meaningful only in a stratum-0 packet.
    pub fn kiss_code(&self) -> KissCode {
        KissCode::from_octets(self.0)
    }

    /// The leap-smear correction carried by a 254.b1.b2.b3 reference ID.
    ///
    /// Whether the ID really is a smear REFID depends on context (the server is
    /// above stratum 1 and 254.x.y.z is not a routable unicast address); this
    /// only decodes the octets.
    pub fn smear_correction(&self) -> Option<SmearCorrection> {
        (self.0[0] == SMEAR_REFID_OCTET).then(|| SmearCorrection::from_octets([self.0[1], self.0[2], self.0[3]]))
    }

    /// The smear REFID for a correction.
    pub fn from_smear(c: SmearCorrection) -> Self {
        let [b1, b2, b3] = c.to_octets();
        ReferenceId([SMEAR_REFID_OCTET, b1, b2, b3])
    }

    /// As a dotted quad.
    pub fn to_ipv4(self) -> Ipv4Addr {
        Ipv4Addr::from(self.0)
    }
}

impl fmt::Debug for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ascii() {
            Some(a) if !a.is_empty() => write!(f, "ReferenceId({a:?})"),
            _ => write!(f, "ReferenceId({})", self.to_ipv4()),
        }
    }
}

macro_rules! kiss_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal ),* $(,)?) => {
        /// A kiss code (RFC 5905 §7.4 Figure 13; NTSN from RFC 8915 §5.7).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum KissCode {
            $( $(#[$doc])* $name, )*
            /// A code not in the registry, kept as it came.
            Unknown([u8; 4]),
        }

        impl KissCode {
            /// Decodes the four reference-ID octets of a stratum-0 packet.
            pub fn from_octets(b: [u8; 4]) -> Self {
                match &b {
                    $( $code => KissCode::$name, )*
                    _ => KissCode::Unknown(b),
                }
            }

            /// The four octets on the wire.
            pub fn to_octets(self) -> [u8; 4] {
                match self {
                    $( KissCode::$name => *$code, )*
                    KissCode::Unknown(b) => b,
                }
            }

            /// Every registered code.
            pub const ALL: &'static [KissCode] = &[$( KissCode::$name ),*];
        }
    };
}

kiss_codes! {
    /// The association belongs to a unicast server.
    Acst = b"ACST",
    /// Server authentication failed.
    Auth = b"AUTH",
    /// Autokey sequence failed.
    Auto = b"AUTO",
    /// The association belongs to a broadcast server.
    Bcst = b"BCST",
    /// Cryptographic authentication or identification failed.
    Cryp = b"CRYP",
    /// Access denied by remote server: stop using it (RFC 5905 §7.4 a).
    Deny = b"DENY",
    /// Lost peer in symmetric mode.
    Drop = b"DROP",
    /// Access denied due to local policy: stop using it (RFC 5905 §7.4 a).
    Rstr = b"RSTR",
    /// The association has not yet synchronized for the first time.
    Init = b"INIT",
    /// The association belongs to a dynamically discovered server.
    Mcst = b"MCST",
    /// No key found.
    Nkey = b"NKEY",
    /// NTS negative acknowledgement: the cookie could not be used (RFC 8915 §5.7).
    Ntsn = b"NTSN",
    /// Rate exceeded: reduce the polling rate (RFC 5905 §7.4 b).
    Rate = b"RATE",
    /// Alteration of association from a remote host running ntpdc.
    Rmot = b"RMOT",
    /// A step change in system time has occurred, not yet synchronized.
    Step = b"STEP",
}

impl KissCode {
    /// The code as text; unknown codes show printable octets and escape the rest.
    pub fn name(&self) -> String {
        self.to_octets()
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| if b.is_ascii_graphic() { char::from(b).to_string() } else { format!("\\x{b:02x}") })
            .collect()
    }
}

/// A leap-smear correction in the signed 2:22 fixed-point format of
/// draft-stenn-ntp-leap-smear-refid-02 §2: 24 bits, two's complement, 22 of
/// them fractional, so the range is [-2 s, 2 s) in steps of 2^-22 s (238 ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SmearCorrection(i32);

impl SmearCorrection {
    /// Smallest step, 2^-22 s.
    pub const RESOLUTION_SECS: f64 = 1.0 / (1u32 << 22) as f64;

    /// From the three octets b1.b2.b3.
    pub const fn from_octets(b: [u8; 3]) -> Self {
        // Sign-extend the 24-bit value.
        let raw = ((b[0] as i32) << 24 | (b[1] as i32) << 16 | (b[2] as i32) << 8) >> 8;
        SmearCorrection(raw)
    }

    /// The three octets b1.b2.b3.
    pub const fn to_octets(self) -> [u8; 3] {
        let v = self.0 as u32;
        [(v >> 16) as u8, (v >> 8) as u8, v as u8]
    }

    /// From the raw 24-bit count of 2^-22 s, clamped to the representable range.
    pub const fn from_raw(raw: i32) -> Self {
        let lo = -(1 << 23);
        let hi = (1 << 23) - 1;
        SmearCorrection(if raw < lo { lo } else if raw > hi { hi } else { raw })
    }

    /// The raw count of 2^-22 s.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// From a duration, rounded to the nearest 2^-22 s and clamped to [-2 s, 2 s).
    pub fn from_duration(d: NtpDuration) -> Self {
        // 2^-32 units to 2^-22 units: divide by 2^10, rounding to nearest.
        let bits = d.to_bits();
        let raw = (bits.saturating_add(1 << 9)) >> 10;
        Self::from_raw(raw.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }

    /// As a duration.
    pub const fn to_duration(self) -> NtpDuration {
        NtpDuration::from_bits((self.0 as i64) << 10)
    }

    /// In seconds.
    pub fn to_seconds_f64(self) -> f64 {
        f64::from(self.0) * Self::RESOLUTION_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_codes() {
        assert_eq!(ReferenceId::from_ascii("GPS").0, [0x47, 0x50, 0x53, 0x00]);
        assert_eq!(ReferenceId::from_ascii("GPS").ascii(), Some("GPS"));
        assert_eq!(ReferenceId(*b"LOCL").ascii(), Some("LOCL"));
        assert_eq!(ReferenceId([0x7f, 0, 0, 1]).ascii(), None);
        assert_eq!(ReferenceId([b'G', 0, b'S', 0]).ascii(), None, "NUL inside the code");
    }

    #[test]
    fn kiss_codes_round_trip_and_unknown_is_kept() {
        for &k in KissCode::ALL {
            assert_eq!(KissCode::from_octets(k.to_octets()), k);
        }
        assert_eq!(ReferenceId(*b"RATE").kiss_code(), KissCode::Rate);
        assert_eq!(ReferenceId(*b"NTSN").kiss_code(), KissCode::Ntsn);
        assert_eq!(ReferenceId(*b"XYZW").kiss_code(), KissCode::Unknown(*b"XYZW"));
        assert_eq!(KissCode::Unknown([b'A', 1, 0, 0]).name(), "A\\x01");
    }

    #[test]
    fn ipv6_refid_is_md5_prefix() {
        // MD5 of the 16 octets of ::1 starts cf 40 4d c8 (python3 hashlib).
        let id = ReferenceId::from_ipv6("::1".parse().unwrap());
        assert_eq!(id.0, [0xcf, 0x40, 0x4d, 0xc8]);
    }

    #[test]
    fn smear_refid_signed_2_22() {
        // +0.5 s: 0.5 * 2^22 = 0x200000.
        let c = SmearCorrection::from_duration(NtpDuration::from_seconds_f64(0.5));
        assert_eq!(c.to_octets(), [0x20, 0x00, 0x00]);
        assert_eq!(ReferenceId::from_smear(c).0, [254, 0x20, 0x00, 0x00]);
        // -0.5 s is 0xE00000.
        let c = SmearCorrection::from_duration(NtpDuration::from_seconds_f64(-0.5));
        assert_eq!(c.to_octets(), [0xE0, 0x00, 0x00]);
        assert_eq!(ReferenceId([254, 0xE0, 0, 0]).smear_correction().unwrap().to_seconds_f64(), -0.5);
        // One full second and the clamp at the top of the range.
        assert_eq!(SmearCorrection::from_octets([0x40, 0, 0]).to_seconds_f64(), 1.0);
        assert_eq!(SmearCorrection::from_duration(NtpDuration::from_seconds(5)).to_octets(), [0x7f, 0xff, 0xff]);
        assert_eq!(SmearCorrection::from_duration(NtpDuration::from_seconds(-5)).to_octets(), [0x80, 0, 0]);
        assert!(ReferenceId([10, 0, 0, 1]).smear_correction().is_none());
    }

    proptest! {
        #[test]
        fn smear_octets_round_trip(b: [u8; 3]) {
            let c = SmearCorrection::from_octets(b);
            prop_assert_eq!(c.to_octets(), b);
            prop_assert_eq!(SmearCorrection::from_duration(c.to_duration()), c);
        }

        #[test]
        fn smear_from_duration_within_half_step(secs in -1.99f64..1.99) {
            let c = SmearCorrection::from_duration(NtpDuration::from_seconds_f64(secs));
            prop_assert!((c.to_seconds_f64() - secs).abs() <= SmearCorrection::RESOLUTION_SECS / 2.0 + 2f64.powi(-32));
        }
    }
}
