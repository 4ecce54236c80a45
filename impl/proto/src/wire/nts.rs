//! NTS extension fields for NTPv4 (RFC 8915 §5), typed over [`FieldRepr`].
//!
//! | Type   | Field                                              | Body |
//! |--------|----------------------------------------------------|------|
//! | 0x0104 | Unique Identifier (§5.3)                           | ≥ 32 random octets, echoed by the server |
//! | 0x0204 | NTS Cookie (§5.4)                                  | opaque |
//! | 0x0304 | NTS Cookie Placeholder (§5.5)                      | as long as the cookie body, should be zeros |
//! | 0x0404 | NTS Authenticator and Encrypted Extension Fields (§5.6) | see [`Authenticator`] |
//!
//! Each type parses from a [`FieldRepr`] (strictly: sub-lengths past the end
//! of the field are errors) and emits back to one. Rule breaks that do not
//! prevent parsing are listed by [`field_problems`] (one field) and
//! [`packet_problems`] (the combination of fields in a packet). There is no
//! cryptography here; [`spans`] tells the crypto layer where the associated
//! data and the authenticator are.
//!
//! The NTPv5 draft reuses these fields unchanged (draft-ietf-ntp-ntpv5-07 §11).

use super::ext::{padded_len, Dialect, ExtensionArea, FieldRepr, FieldType};
use super::v4::Mode;
use super::{check_len, read_u16, Error, Problem, Result};
use core::ops::Range;

/// Shortest Unique Identifier body a client may send (RFC 8915 §5.3).
pub const MIN_UNIQUE_ID_LEN: usize = 32;
/// N_REQ of RFC 8915 §5.6 for AEADs whose maximum nonce is at least 16 octets (all registered ones).
pub const NONCE_REQ_LEN: usize = 16;
/// The most placeholders a client should send (RFC 8915 §5.7).
pub const MAX_PLACEHOLDERS: usize = 7;

fn wrong_type(what: &'static str) -> Error {
    Error::Malformed { what, offset: 0, reason: "field type does not match" }
}

/// The Unique Identifier extension field (0x0104, RFC 8915 §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UniqueIdentifier {
    /// The identifier: the whole field value.
    pub id: Vec<u8>,
}

impl UniqueIdentifier {
    /// Reads the field; fails only if the type is not 0x0104.
    pub fn parse(field: &FieldRepr) -> Result<Self> {
        if field.field_type != FieldType::UniqueIdentifier {
            return Err(wrong_type("NTS Unique Identifier"));
        }
        Ok(UniqueIdentifier { id: field.value.clone() })
    }

    /// The field, zero-padded to 4 octets inside the Length (NTPv4 style).
    pub fn to_field(&self) -> FieldRepr {
        FieldRepr::new_v4(FieldType::UniqueIdentifier, self.id.clone())
    }

    /// Rule breaks: an identifier shorter than 32 octets.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.id.len() < MIN_UNIQUE_ID_LEN {
            p.push(Problem::new(
                "RFC 8915 §5.3",
                format!("Unique Identifier is {} octets; a client must send at least {MIN_UNIQUE_ID_LEN}", self.id.len()),
            ));
        }
        p
    }
}

/// The NTS Cookie extension field (0x0204, RFC 8915 §5.4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cookie {
    /// The cookie octets (opaque to the client).
    pub cookie: Vec<u8>,
}

impl Cookie {
    /// Reads the field; fails only if the type is not 0x0204.
    pub fn parse(field: &FieldRepr) -> Result<Self> {
        if field.field_type != FieldType::NtsCookie {
            return Err(wrong_type("NTS Cookie"));
        }
        Ok(Cookie { cookie: field.value.clone() })
    }

    /// The field, zero-padded to 4 octets inside the Length.
    pub fn to_field(&self) -> FieldRepr {
        FieldRepr::new_v4(FieldType::NtsCookie, self.cookie.clone())
    }
}

/// The NTS Cookie Placeholder extension field (0x0304, RFC 8915 §5.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CookiePlaceholder {
    /// The body: its length must equal the cookie body length, its content should be zeros.
    pub body: Vec<u8>,
}

impl CookiePlaceholder {
    /// A placeholder of `len` zero octets.
    pub fn zeroed(len: usize) -> Self {
        CookiePlaceholder { body: vec![0; len] }
    }

    /// Reads the field; fails only if the type is not 0x0304.
    pub fn parse(field: &FieldRepr) -> Result<Self> {
        if field.field_type != FieldType::NtsCookiePlaceholder {
            return Err(wrong_type("NTS Cookie Placeholder"));
        }
        Ok(CookiePlaceholder { body: field.value.clone() })
    }

    /// The field, zero-padded to 4 octets inside the Length.
    pub fn to_field(&self) -> FieldRepr {
        FieldRepr::new_v4(FieldType::NtsCookiePlaceholder, self.body.clone())
    }

    /// Rule breaks: a body that is not all zeros (SHOULD).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.body.iter().any(|&b| b != 0) {
            p.push(Problem::new("RFC 8915 §5.5", "NTS Cookie Placeholder body should be all zeros"));
        }
        p
    }
}

/// The NTS Authenticator and Encrypted Extension Fields extension field (0x0404, RFC 8915 §5.6).
///
/// ```text
/// | Nonce Length (16) | Ciphertext Length (16) |
/// | Nonce, zero-padded to 4 octets              |
/// | Ciphertext, zero-padded to 4 octets         |
/// | Additional Padding                          |
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Authenticator {
    /// The nonce (Nonce Length octets, without its padding).
    pub nonce: Vec<u8>,
    /// The AEAD output (Ciphertext Length octets, without its padding).
    pub ciphertext: Vec<u8>,
    /// Octets after the padded ciphertext up to the end of the field value.
    pub additional_padding: Vec<u8>,
}

impl Authenticator {
    /// Offset of the nonce in the field value.
    const NONCE: usize = 4;

    /// Reads the field. Nonce or ciphertext (with their padding) running past the end of the field are errors;
    /// offsets in errors count from the start of the field value.
    pub fn parse(field: &FieldRepr) -> Result<Self> {
        if field.field_type != FieldType::NtsAuthenticator {
            return Err(wrong_type("NTS Authenticator"));
        }
        let v = &field.value[..];
        check_len("NTS Authenticator", v, Self::NONCE)?;
        let nonce_len = usize::from(read_u16(v, 0));
        let ct_len = usize::from(read_u16(v, 2));
        let nonce_end = Self::NONCE + padded_len(nonce_len);
        if nonce_end > v.len() {
            return Err(Error::Malformed {
                what: "NTS Authenticator",
                offset: 0,
                reason: "Nonce Length runs past the end of the field",
            });
        }
        let ct_end = nonce_end + padded_len(ct_len);
        if ct_end > v.len() {
            return Err(Error::Malformed {
                what: "NTS Authenticator",
                offset: 2,
                reason: "Ciphertext Length runs past the end of the field",
            });
        }
        Ok(Authenticator {
            nonce: v[Self::NONCE..Self::NONCE + nonce_len].to_vec(),
            ciphertext: v[nonce_end..nonce_end + ct_len].to_vec(),
            additional_padding: v[ct_end..].to_vec(),
        })
    }

    /// A field with the given nonce and ciphertext and `additional_padding` zero octets.
    pub fn new(nonce: Vec<u8>, ciphertext: Vec<u8>, additional_padding: usize) -> Self {
        Authenticator { nonce, ciphertext, additional_padding: vec![0; additional_padding] }
    }

    /// The additional padding a client needs for this nonce: `N_REQ - N_LEN` when positive (RFC 8915 §5.6).
    pub fn required_additional_padding(nonce_len: usize) -> usize {
        NONCE_REQ_LEN.saturating_sub(padded_len(nonce_len))
    }

    /// The field value: lengths, padded nonce, padded ciphertext, additional padding.
    pub fn to_field(&self) -> FieldRepr {
        let n_pad = padded_len(self.nonce.len());
        let c_pad = padded_len(self.ciphertext.len());
        let mut v = Vec::with_capacity(Self::NONCE + n_pad + c_pad + self.additional_padding.len());
        v.extend(u16::try_from(self.nonce.len()).unwrap_or(u16::MAX).to_be_bytes());
        v.extend(u16::try_from(self.ciphertext.len()).unwrap_or(u16::MAX).to_be_bytes());
        v.extend(&self.nonce);
        v.resize(Self::NONCE + n_pad, 0);
        v.extend(&self.ciphertext);
        v.resize(Self::NONCE + n_pad + c_pad, 0);
        v.extend(&self.additional_padding);
        FieldRepr::new_v4(FieldType::NtsAuthenticator, v)
    }

    /// Rule breaks for a packet of `mode`: too little additional padding behind a short client nonce, non-zero padding.
    pub fn problems(&self, mode: Mode) -> Vec<Problem> {
        let mut p = Vec::new();
        let need = Self::required_additional_padding(self.nonce.len());
        if mode == Mode::Client && self.additional_padding.len() < need {
            p.push(Problem::new(
                "RFC 8915 §5.6",
                format!(
                    "client nonce of {} octets needs at least {need} octets of additional padding, has {} (servers must discard)",
                    self.nonce.len(),
                    self.additional_padding.len()
                ),
            ));
        }
        if self.additional_padding.iter().any(|&b| b != 0) {
            p.push(Problem::new("RFC 8915 §5.6", "NTS Authenticator additional padding is not zero"));
        }
        p
    }
}

/// Any of the four NTS fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NtsField {
    /// 0x0104.
    UniqueIdentifier(UniqueIdentifier),
    /// 0x0204.
    Cookie(Cookie),
    /// 0x0304.
    CookiePlaceholder(CookiePlaceholder),
    /// 0x0404.
    Authenticator(Authenticator),
}

impl NtsField {
    /// The typed field, `None` when `field` is not an NTS type.
    pub fn parse(field: &FieldRepr) -> Option<Result<NtsField>> {
        Some(match field.field_type {
            FieldType::UniqueIdentifier => UniqueIdentifier::parse(field).map(NtsField::UniqueIdentifier),
            FieldType::NtsCookie => Cookie::parse(field).map(NtsField::Cookie),
            FieldType::NtsCookiePlaceholder => CookiePlaceholder::parse(field).map(NtsField::CookiePlaceholder),
            FieldType::NtsAuthenticator => Authenticator::parse(field).map(NtsField::Authenticator),
            _ => return None,
        })
    }

    /// Back to a generic field.
    pub fn to_field(&self) -> FieldRepr {
        match self {
            NtsField::UniqueIdentifier(f) => f.to_field(),
            NtsField::Cookie(f) => f.to_field(),
            NtsField::CookiePlaceholder(f) => f.to_field(),
            NtsField::Authenticator(f) => f.to_field(),
        }
    }
}

/// Rule breaks of one field in a packet of `mode`: parse errors and the typed checks, plus non-zero
/// alignment padding inside the authenticator. Non-NTS fields give none.
pub fn field_problems(field: &FieldRepr, mode: Mode) -> Vec<Problem> {
    let Some(parsed) = NtsField::parse(field) else { return Vec::new() };
    match parsed {
        Err(Error::Malformed { reason, .. }) => {
            vec![Problem::new("RFC 8915 §5.6", format!("{}: {reason}", field.field_type))]
        }
        Err(e) => vec![Problem::new("RFC 8915 §5.6", format!("{}: {e}", field.field_type))],
        Ok(NtsField::UniqueIdentifier(u)) => u.problems(),
        Ok(NtsField::Cookie(_)) => Vec::new(),
        Ok(NtsField::CookiePlaceholder(c)) => c.problems(),
        Ok(NtsField::Authenticator(a)) => {
            let mut p = a.problems(mode);
            let n_end = Authenticator::NONCE + a.nonce.len();
            let c_start = Authenticator::NONCE + padded_len(a.nonce.len());
            let c_end = c_start + a.ciphertext.len();
            let c_pad_end = c_start + padded_len(a.ciphertext.len());
            let v = &field.value;
            let pads = v.get(n_end..c_start).into_iter().chain(v.get(c_end..c_pad_end));
            if pads.flatten().any(|&b| b != 0) {
                p.push(Problem::new("RFC 8915 §5.6", "NTS Authenticator nonce or ciphertext padding is not zero"));
            }
            p
        }
    }
}

/// Rule breaks of the NTS fields of a packet taken together (RFC 8915 §5.3–§5.7). `kiss_ntsn` says
/// the packet is an "NTSN" kiss-o'-death.
pub fn packet_problems(mode: Mode, kiss_ntsn: bool, fields: &[FieldRepr]) -> Vec<Problem> {
    let mut p = Vec::new();
    let idx = |t: FieldType| -> Vec<usize> {
        fields.iter().enumerate().filter(|(_, f)| f.field_type == t).map(|(i, _)| i).collect()
    };
    let uids = idx(FieldType::UniqueIdentifier);
    let cookies = idx(FieldType::NtsCookie);
    let holders = idx(FieldType::NtsCookiePlaceholder);
    let auths = idx(FieldType::NtsAuthenticator);
    let client_or_server = matches!(mode, Mode::Client | Mode::Server);
    if !cookies.is_empty() && !client_or_server {
        p.push(Problem::new("RFC 8915 §5.4", format!("NTS Cookie in a {} packet (only client and server)", mode.name())));
    }
    if !auths.is_empty() && !client_or_server {
        p.push(Problem::new("RFC 8915 §5.6", format!("NTS Authenticator in a {} packet (only client and server)", mode.name())));
    }
    if !holders.is_empty() && mode != Mode::Client {
        p.push(Problem::new("RFC 8915 §5.5", format!("NTS Cookie Placeholder in a {} packet (only client)", mode.name())));
    }
    if !holders.is_empty() {
        match cookies.first() {
            None => p.push(Problem::new("RFC 8915 §5.5", "NTS Cookie Placeholder without an NTS Cookie")),
            Some(&c) => {
                let cookie_len = fields[c].value.len();
                for &h in &holders {
                    let len = fields[h].value.len();
                    if len != cookie_len {
                        p.push(Problem::new(
                            "RFC 8915 §5.5",
                            format!("NTS Cookie Placeholder body is {len} octets, the cookie body {cookie_len}"),
                        ));
                    }
                }
            }
        }
    }
    if auths.len() > 1 {
        p.push(Problem::new("RFC 8915 §5.7", format!("{} NTS Authenticator fields (exactly one)", auths.len())));
    }
    if kiss_ntsn && (!cookies.is_empty() || !auths.is_empty()) {
        p.push(Problem::new("RFC 8915 §5.7", "NTSN kiss-o'-death carries NTS Cookie or Authenticator fields"));
    }
    if let Some(&auth) = auths.first() {
        if uids.len() != 1 {
            p.push(Problem::new("RFC 8915 §5.7", format!("{} Unique Identifier fields in an NTS packet (exactly one)", uids.len())));
        }
        if uids.iter().any(|&u| u > auth) {
            p.push(Problem::new("RFC 8915 §5.7", "Unique Identifier after the NTS Authenticator is not authenticated"));
        }
        if mode == Mode::Client {
            if cookies.len() != 1 {
                p.push(Problem::new("RFC 8915 §5.7", format!("{} NTS Cookie fields in an NTS request (exactly one)", cookies.len())));
            }
            if cookies.iter().any(|&c| c > auth) {
                p.push(Problem::new("RFC 8915 §5.7", "NTS Cookie after the NTS Authenticator is not authenticated"));
            }
            if holders.iter().any(|&h| h > auth) {
                p.push(Problem::new("RFC 8915 §5.7", "NTS Cookie Placeholder after the NTS Authenticator is not authenticated"));
            }
            if holders.len() > MAX_PLACEHOLDERS {
                p.push(Problem::new(
                    "RFC 8915 §5.7",
                    format!("{} NTS Cookie Placeholders (should not exceed {MAX_PLACEHOLDERS})", holders.len()),
                ));
            }
        }
        if mode == Mode::Server && !cookies.is_empty() {
            p.push(Problem::new("RFC 8915 §5.7", "NTS Cookie outside the encrypted fields of a response (must be encrypted)"));
        }
    }
    p
}

/// Where the NTS Authenticator sits in a packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spans {
    /// The associated data: packet start to the end of the field before the authenticator (RFC 8915 §5.6 "A").
    pub associated_data: Range<usize>,
    /// The whole authenticator field, header and padding included.
    pub authenticator: Range<usize>,
}

/// Locates the first NTS Authenticator of a whole NTP packet (v1–v4, or v5 by its version bits).
/// `Ok(None)` if there is none; an error if the packet or the fields before it do not decode.
pub fn spans(packet: &[u8]) -> Result<Option<Spans>> {
    let header = super::v4::HEADER_LEN;
    check_len("NTP header", packet, header)?;
    let dialect = if super::v4::version_of(packet) == Some(5) { Dialect::V5 } else { Dialect::V4 };
    let area = ExtensionArea::parse_dialect(&packet[header..], header, dialect);
    let found = area
        .fields
        .iter()
        .zip(area.field_offsets())
        .find(|(f, _)| f.field_type == FieldType::NtsAuthenticator);
    match found {
        Some((f, off)) => {
            let start = header + off;
            Ok(Some(Spans { associated_data: 0..start, authenticator: start..start + f.buffer_len() }))
        }
        None => area.result().map(|_| None),
    }
}

/// The associated data of the first NTS Authenticator in `packet`, if it has one.
pub fn associated_data(packet: &[u8]) -> Result<Option<&[u8]>> {
    Ok(spans(packet)?.and_then(|s| packet.get(s.associated_data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ext::Field;
    use proptest::prelude::*;

    /// Unique Identifier (RFC 8915 §5.3): type 0x0104, Length 36, 32 octets 0xa0..0xbf.
    fn uid_bytes() -> Vec<u8> {
        let mut v = vec![0x01, 0x04, 0x00, 0x24];
        v.extend(0xa0u8..0xc0);
        v
    }

    /// NTS Cookie (RFC 8915 §5.4): type 0x0204, Length 12, 8 opaque octets.
    const COOKIE: [u8; 12] = [0x02, 0x04, 0x00, 0x0c, 0xc0, 0x0c, 0x1e, 0x00, 0x01, 0x02, 0x03, 0x04];

    /// NTS Cookie Placeholder (RFC 8915 §5.5): type 0x0304, Length 12, 8 zero octets.
    const PLACEHOLDER: [u8; 12] = [0x03, 0x04, 0x00, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0];

    /// NTS Authenticator (RFC 8915 §5.6, Figure 4): type 0x0404, Length 40,
    /// Nonce Length 13 (padded to 16), Ciphertext Length 16, no additional padding.
    fn auth_bytes() -> Vec<u8> {
        let mut v = vec![0x04, 0x04, 0x00, 0x28, 0x00, 0x0d, 0x00, 0x10];
        v.extend([0x11; 13]); // nonce
        v.extend([0, 0, 0]); // nonce padding
        v.extend([0x22; 16]); // ciphertext (the SIV tag alone)
        v
    }

    fn repr(b: &[u8]) -> FieldRepr {
        FieldRepr::parse(&Field::new_checked(b).unwrap()).unwrap()
    }

    #[test]
    fn parse_each_static_field() {
        let u = UniqueIdentifier::parse(&repr(&uid_bytes())).unwrap();
        assert_eq!(u.id.len(), 32);
        assert!(u.problems().is_empty());
        assert_eq!(u.to_field().to_bytes(), uid_bytes());

        let c = Cookie::parse(&repr(&COOKIE)).unwrap();
        assert_eq!(c.cookie, &COOKIE[4..]);
        assert_eq!(c.to_field().to_bytes(), COOKIE);

        let p = CookiePlaceholder::parse(&repr(&PLACEHOLDER)).unwrap();
        assert!(p.problems().is_empty());
        assert_eq!(CookiePlaceholder::zeroed(8), p);
        assert_eq!(p.to_field().to_bytes(), PLACEHOLDER);

        let a = Authenticator::parse(&repr(&auth_bytes())).unwrap();
        assert_eq!(a.nonce, [0x11; 13]);
        assert_eq!(a.ciphertext, [0x22; 16]);
        assert!(a.additional_padding.is_empty());
        assert_eq!(a.to_field().to_bytes(), auth_bytes());
        assert!(a.problems(Mode::Server).is_empty());
        assert!(a.problems(Mode::Client).is_empty(), "16-octet padded nonce needs no extra padding");
        assert!(field_problems(&repr(&auth_bytes()), Mode::Client).is_empty());
    }

    #[test]
    fn construct_over_a5_buffer() {
        let a = Authenticator::new(vec![0x11; 13], vec![0x22; 16], 0).to_field();
        let mut buf = vec![0xa5u8; a.buffer_len()];
        a.emit(&mut Field::new_unchecked(&mut buf[..]));
        assert_eq!(buf, auth_bytes());
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert!(Cookie::parse(&repr(&PLACEHOLDER)).is_err());
        assert!(UniqueIdentifier::parse(&repr(&COOKIE)).is_err());
        assert!(NtsField::parse(&FieldRepr::new(FieldType::V5Padding, vec![])).is_none());
    }

    #[test]
    fn authenticator_length_errors() {
        let f = |v: Vec<u8>| FieldRepr::new(FieldType::NtsAuthenticator, v);
        assert!(matches!(Authenticator::parse(&f(vec![0, 0])), Err(Error::Truncated { .. })), "under 4 octets");
        // Nonce Length 13 needs 16 octets after the lengths; only 12.
        let e = Authenticator::parse(&f([vec![0, 13, 0, 0], vec![0; 12]].concat())).unwrap_err();
        assert!(matches!(e, Error::Malformed { offset: 0, .. }), "{e:?}");
        // Ciphertext Length 17 needs 20 octets after the nonce; only 16.
        let e = Authenticator::parse(&f([vec![0, 4, 0, 17], vec![0; 4], vec![0; 16]].concat())).unwrap_err();
        assert!(matches!(e, Error::Malformed { offset: 2, .. }), "{e:?}");
        let p = field_problems(&f([vec![0, 4, 0, 17], vec![0; 20]].concat()), Mode::Client);
        assert_eq!(p.len(), 1);
        assert!(p[0].detail.contains("Ciphertext Length runs past"));
    }

    #[test]
    fn short_client_nonce_needs_additional_padding() {
        let a = Authenticator::new(vec![1; 4], vec![2; 16], 0);
        assert_eq!(Authenticator::required_additional_padding(4), 12);
        assert_eq!(a.problems(Mode::Client).len(), 1);
        assert!(a.problems(Mode::Server).is_empty(), "servers never need additional padding");
        let a = Authenticator::new(vec![1; 4], vec![2; 16], 12);
        assert!(a.problems(Mode::Client).is_empty());
        let back = Authenticator::parse(&a.to_field()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn padding_and_content_problems() {
        let mut b = auth_bytes();
        b[4 + 4 + 13] = 9; // non-zero nonce padding
        assert_eq!(field_problems(&repr(&b), Mode::Server).len(), 1);
        let mut b = PLACEHOLDER;
        b[5] = 1;
        assert_eq!(field_problems(&repr(&b), Mode::Client).len(), 1);
        let short = FieldRepr::new_v4(FieldType::UniqueIdentifier, vec![7; 16]);
        assert_eq!(field_problems(&short, Mode::Client)[0].rule, "RFC 8915 §5.3");
    }

    fn request_fields() -> Vec<FieldRepr> {
        vec![repr(&uid_bytes()), repr(&COOKIE), repr(&PLACEHOLDER), repr(&auth_bytes())]
    }

    #[test]
    fn packet_rules() {
        assert!(packet_problems(Mode::Client, false, &request_fields()).is_empty());
        // Placeholder in a response, cookie in plaintext in a response.
        let p = packet_problems(Mode::Server, false, &request_fields());
        assert_eq!(p.len(), 2, "{p:?}");
        // Placeholder length mismatch and placeholder without cookie.
        let mut f = request_fields();
        f[2] = CookiePlaceholder::zeroed(12).to_field();
        assert_eq!(packet_problems(Mode::Client, false, &f).len(), 1);
        f.remove(1);
        let p = packet_problems(Mode::Client, false, &f);
        assert!(p.iter().any(|p| p.detail.contains("without an NTS Cookie")));
        assert!(p.iter().any(|p| p.detail.contains("0 NTS Cookie fields")));
        // UID after the authenticator, NTS fields in a broadcast packet, NTSN with an authenticator.
        let mut f = request_fields();
        f.swap(0, 3);
        assert!(!packet_problems(Mode::Client, false, &f).is_empty());
        assert!(packet_problems(Mode::Broadcast, false, &request_fields()).len() >= 3);
        let resp = vec![repr(&uid_bytes()), repr(&auth_bytes())];
        assert!(packet_problems(Mode::Server, false, &resp).is_empty());
        assert_eq!(packet_problems(Mode::Server, true, &resp).len(), 1);
    }

    #[test]
    fn associated_data_span() {
        let mut pkt = vec![0x23u8; 48]; // LI 0, VN 4, mode 3 header octet, rest filler
        pkt.extend(uid_bytes());
        pkt.extend(COOKIE);
        let ad_end = pkt.len();
        pkt.extend(auth_bytes());
        pkt.extend(PLACEHOLDER); // after the authenticator: unauthenticated
        let s = spans(&pkt).unwrap().unwrap();
        assert_eq!(s.associated_data, 0..ad_end);
        assert_eq!(s.authenticator, ad_end..ad_end + 40);
        assert_eq!(associated_data(&pkt).unwrap().unwrap().len(), ad_end);
        assert_eq!(spans(&pkt[..48]).unwrap(), None);
        assert!(spans(&pkt[..40]).is_err());
        // A broken field before any authenticator is an error.
        let mut bad = pkt[..48].to_vec();
        bad.extend([0x01, 0x04, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(spans(&bad).is_err());
    }

    proptest! {
        #[test]
        fn authenticator_round_trip(
            nonce in proptest::collection::vec(any::<u8>(), 0..40),
            ct in proptest::collection::vec(any::<u8>(), 0..60),
            pad in 0usize..16,
        ) {
            let a = Authenticator::new(nonce, ct, pad);
            let f = a.to_field();
            let back = Authenticator::parse(&FieldRepr::parse(&Field::new_checked(&f.to_bytes()[..]).unwrap()).unwrap()).unwrap();
            // Additional padding absorbs the field's own alignment only when it is a multiple of 4.
            prop_assert_eq!(&back.nonce, &a.nonce);
            prop_assert_eq!(&back.ciphertext, &a.ciphertext);
            prop_assert_eq!(back.additional_padding.len(), padded_len(pad));
        }

        #[test]
        fn any_value_parse_emit_parse(t in 1u16..5, value in proptest::collection::vec(any::<u8>(), 0..80)) {
            let field = FieldRepr::new_v4(FieldType::from_u16(t << 8 | 4), value);
            if let Some(Ok(parsed)) = NtsField::parse(&field) {
                let again = NtsField::parse(&parsed.to_field()).unwrap().unwrap();
                prop_assert_eq!(again, parsed);
            }
            let _ = field_problems(&field, Mode::Client);
        }
    }
}
