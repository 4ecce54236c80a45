//! NTS-protected NTPv4 packets (RFC 8915 §5): the client's request builder,
//! response verifier and cookie jar, and the server's request processor and
//! reply sealer.
//!
//! # Client ([`ClientSession`])
//!
//! A request is the caller's header (48 octets, or more if it carries
//! extension fields of its own, which are then authenticated), then:
//! Unique Identifier (32 random octets), one NTS Cookie (taken from the jar,
//! never reused), `k` Cookie Placeholders, and the Authenticator (a fresh
//! nonce of [`Aead::nonce_len`], the AEAD tag over everything before it
//! under the C2S key, nothing encrypted). `k` asks for enough cookies to
//! refill the jar to [`JAR_CAPACITY`] (8): `k = 7 − cookies left`, at most 7,
//! fewer if the request would pass [`MAX_CLIENT_REQUEST_LEN`] (1280 octets,
//! no fragmentation).
//!
//! A response is accepted ([`ResponseKind::Time`]) only if it is mode 4,
//! carries exactly one Unique Identifier, equal to the request's, before
//! exactly one Authenticator that verifies under the S2C key; the cookies in
//! its encrypted fields go into the jar. An "NTSN" kiss-o'-death with the
//! request's Unique Identifier is [`ResponseKind::NtsNak`]: it is not
//! authenticated, so the caller keeps the session and the pending request,
//! waits until its next poll for an accepted response and, if none came,
//! re-keys (runs NTS-KE again, then [`ClientSession::rekey`], which drops
//! every old cookie), polling with the old cookies meanwhile (RFC 8915
//! §5.7); another kiss-o'-death with that identifier is
//! [`ResponseKind::Kiss`] (RFC 8915 §5.7: obey it as RFC 5905 §7.4 says).
//! Anything else is an error and must be discarded: unauthenticated
//! replies, wrong or missing identifiers, failed authentication. After a response is
//! accepted the caller forgets the [`PendingRequest`], so a replay of it is
//! not accepted twice.
//!
//! # Server ([`process_request`])
//!
//! [`process_request`] sorts a request: [`NtsRequest::Plain`] (no NTS
//! fields: the plain NTP path), [`NtsRequest::Protected`] (the cookie
//! opened and the authenticator verified), [`NtsRequest::Nak`] (a Unique
//! Identifier is there but the cookie does not open or the request does not
//! authenticate: answer an NTSN kiss-o'-death that echoes the identifier and
//! carries no cookie and no authenticator) or [`NtsRequest::Drop`] (too
//! broken to answer, e.g. no Unique Identifier, or too little nonce padding,
//! which RFC 8915 §5.6 says to discard). Fields after the Authenticator are
//! unauthenticated and ignored.
//!
//! For a protected request the server builds its usual 48-octet reply
//! header (basic or interleaved: the NTS fields go around the same header)
//! and writes the transmit timestamp, then [`ProtectedRequest::seal_reply`]
//! appends the echoed Unique Identifier and the Authenticator whose
//! encrypted fields hold one fresh cookie per cookie and valid placeholder
//! in the request, sealed under the S2C key with a fresh nonce. The reply is
//! never longer than the request: cookies are dropped until it fits.

use super::aead::{Aead, SessionKeys, TAG_LEN};
use super::cookie::MasterKeys;
use super::NtsRng;
use crate::wire::ext::padded_len;
use crate::wire::v4::HEADER_LEN;
use std::collections::VecDeque;

/// Length of the Unique Identifier the client sends (RFC 8915 §5.3 minimum).
pub const UNIQUE_ID_LEN: usize = 32;
/// Cookies the client aims to hold (RFC 8915 §5.7).
pub const JAR_CAPACITY: usize = 8;
/// Most placeholders in one request (RFC 8915 §5.7 SHOULD NOT exceed 7).
pub const MAX_PLACEHOLDERS: usize = 7;
/// Requests are kept at or below this size (the IPv6 minimum MTU) by sending fewer placeholders.
pub const MAX_CLIENT_REQUEST_LEN: usize = 1280;
/// Most cookies a server returns in one reply.
pub const MAX_REPLY_COOKIES: usize = 8;

const T_UID: u16 = 0x0104;
const T_COOKIE: u16 = 0x0204;
const T_PLACEHOLDER: u16 = 0x0304;
const T_AUTH: u16 = 0x0404;
/// NTPv5 Padding field (draft-ietf-ntp-ntpv5-07 §7.2).
const T_V5_PADDING: u16 = 0xF501;
/// NTPv5 Draft Identification field (§7.1).
const T_V5_DRAFT: u16 = 0xF5FF;
/// NTPv5 Authentication NAK flag (§6).
const V5_AUTH_NAK: u16 = 0x0004;

/// One extension field located in a buffer.
#[derive(Clone, Copy, Debug)]
struct RawField {
    field_type: u16,
    /// Offset of the field header.
    start: usize,
    /// Offset just past the field (its Length).
    end: usize,
}

impl RawField {
    fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start + 4..self.end]
    }
}

/// How extension fields are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// NTPv4 (RFC 7822): the Length is a multiple of 4 and counts the padding.
    V4,
    /// NTPv5 (draft-ietf-ntp-ntpv5-07 §7): the Length may be any value from 4
    /// and the next field starts at the next multiple of 4 (for drafts that
    /// count the padding inside the Length it is a multiple of 4 anyway).
    V5,
}

impl Framing {
    /// The framing of the NTP packet `buf` by its version field.
    fn of(buf: &[u8]) -> Framing {
        match buf.first().map(|b| (b >> 3) & 0x07) {
            Some(5) => Framing::V5,
            _ => Framing::V4,
        }
    }
}

/// Walks extension fields from `from` to the end of `buf`. Each needs a
/// Length of at least 4 within the buffer, a multiple of 4 in NTPv4. With
/// `allow_mac` (NTPv4 only), 4, 20 or 24 octets left at a field boundary are
/// a legacy MAC and end the walk. `None` if the octets are not such a
/// sequence; at most `max` fields are accepted.
fn walk(buf: &[u8], from: usize, allow_mac: bool, max: usize, framing: Framing) -> Option<Vec<RawField>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < buf.len() {
        let left = buf.len() - pos;
        if allow_mac && framing == Framing::V4 && matches!(left, 4 | 20 | 24) {
            break;
        }
        if left < 4 || out.len() >= max {
            return None;
        }
        let field_type = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]));
        let step = match framing {
            Framing::V4 if len % 4 != 0 => return None,
            Framing::V4 => len,
            Framing::V5 => padded_len(len),
        };
        if len < 4 || step > left {
            return None;
        }
        out.push(RawField { field_type, start: pos, end: pos + len });
        pos += step;
    }
    Some(out)
}

/// Appends a field of `field_type` whose value is `value` zero-padded to 4.
fn push_field(out: &mut Vec<u8>, field_type: u16, value: &[u8]) {
    let len = 4 + padded_len(value.len());
    out.extend(field_type.to_be_bytes());
    out.extend(u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(value);
    out.resize(out.len() + padded_len(value.len()) - value.len(), 0);
}

/// An Authenticator field value, parsed (offsets into the buffer).
struct AuthParts<'a> {
    nonce: &'a [u8],
    ciphertext: &'a [u8],
    /// Padded nonce length plus additional padding (for the N_REQ rule).
    nonce_room: usize,
}

fn parse_auth(value: &[u8]) -> Option<AuthParts<'_>> {
    if value.len() < 4 {
        return None;
    }
    let n = usize::from(u16::from_be_bytes([value[0], value[1]]));
    let c = usize::from(u16::from_be_bytes([value[2], value[3]]));
    let n_end = 4 + padded_len(n);
    let c_end = n_end + padded_len(c);
    if c_end > value.len() {
        return None;
    }
    Some(AuthParts { nonce: &value[4..4 + n], ciphertext: &value[n_end..n_end + c], nonce_room: value.len() - 4 - padded_len(c) })
}

/// Appends an Authenticator over `out` (all of it is the associated data).
fn seal_into(out: &mut Vec<u8>, aead: Aead, key: &[u8], plaintext: &[u8], extra_padding: usize, rng: &mut dyn NtsRng) -> bool {
    let mut nonce = [0u8; 16];
    let nonce = &mut nonce[..aead.nonce_len()];
    rng.fill(nonce);
    let Ok(ct) = aead.seal(key, nonce, out, plaintext) else { return false };
    let value_len = 4 + padded_len(nonce.len()) + padded_len(ct.len()) + extra_padding;
    out.extend(T_AUTH.to_be_bytes());
    out.extend(u16::try_from(4 + value_len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(u16::try_from(nonce.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(u16::try_from(ct.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(&*nonce);
    out.resize(out.len() + padded_len(nonce.len()) - nonce.len(), 0);
    out.extend(&ct);
    out.resize(out.len() + padded_len(ct.len()) - ct.len() + extra_padding, 0);
    true
}

/// An NTSN kiss-o'-death (NTPv4), or an NTPv5 response with the
/// Authentication NAK flag (draft-ietf-ntp-ntpv5-07 §6, §11).
fn is_ntsn_kod(packet: &[u8]) -> bool {
    match Framing::of(packet) {
        Framing::V4 => packet[1] == 0 && &packet[12..16] == b"NTSN",
        Framing::V5 => packet[1] == 0 && u16::from_be_bytes([packet[14], packet[15]]) & V5_AUTH_NAK != 0,
    }
}

// ───────────────────────────── client ─────────────────────────────

/// The client's cookies: at most [`JAR_CAPACITY`], oldest used first, each used once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: VecDeque<Vec<u8>>,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        CookieJar::default()
    }

    /// Cookies held.
    pub fn len(&self) -> usize {
        self.cookies.len()
    }

    /// Whether no cookie is left (time to run NTS-KE again).
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Adds a cookie (empty ones are ignored); when full, the oldest is dropped.
    pub fn add(&mut self, cookie: Vec<u8>) {
        if cookie.is_empty() {
            return;
        }
        if self.cookies.len() >= JAR_CAPACITY {
            self.cookies.pop_front();
        }
        self.cookies.push_back(cookie);
    }

    /// Takes the oldest cookie out (it will not be used again).
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.cookies.pop_front()
    }

    /// Drops every cookie.
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// Placeholders to send with the next request after a cookie has been
    /// taken: enough to bring the jar back to [`JAR_CAPACITY`] when the
    /// server returns one cookie per cookie and placeholder.
    pub fn placeholders_wanted(&self) -> usize {
        (JAR_CAPACITY - 1).saturating_sub(self.cookies.len()).min(MAX_PLACEHOLDERS)
    }
}

/// What the client must remember about a request it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    uid: [u8; UNIQUE_ID_LEN],
    placeholders: usize,
}

impl PendingRequest {
    /// What a client must remember of `request`, a protected request as it
    /// was sent (a black-box prober reads it back from the wire): its
    /// Unique Identifier and the placeholders before the authenticator.
    /// `None` unless the extension fields parse and hold exactly one Unique
    /// Identifier of [`UNIQUE_ID_LEN`] octets before exactly one
    /// authenticator.
    pub fn from_request(request: &[u8]) -> Option<PendingRequest> {
        let fields = walk(request, HEADER_LEN, false, 64, Framing::of(request))?;
        let auth = fields.iter().position(|f| f.field_type == T_AUTH)?;
        if fields.iter().filter(|f| f.field_type == T_AUTH).count() != 1 {
            return None;
        }
        let before = &fields[..auth];
        let mut uids = before.iter().filter(|f| f.field_type == T_UID);
        let (Some(u), None) = (uids.next(), uids.next()) else { return None };
        let uid: [u8; UNIQUE_ID_LEN] = request.get(u.start + 4..u.end)?.try_into().ok()?;
        let placeholders = before.iter().filter(|f| f.field_type == T_PLACEHOLDER).count();
        Some(PendingRequest { uid, placeholders })
    }

    /// The Unique Identifier sent.
    pub fn unique_id(&self) -> &[u8] {
        &self.uid
    }

    /// Placeholders sent (so cookies asked for: one more).
    pub fn placeholders(&self) -> usize {
        self.placeholders
    }
}

/// No cookie is left: run NTS-KE again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoCookies;

impl core::fmt::Display for NoCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no NTS cookie left: NTS-KE must run again")
    }
}

impl std::error::Error for NoCookies {}

/// An accepted response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    /// Authentic: process the 48-octet header as usual.
    Time {
        /// Cookies added to the jar.
        new_cookies: usize,
    },
    /// An NTSN kiss-o'-death answering this request. Unauthenticated: re-key
    /// only if no `Time` comes by the next poll (RFC 8915 §5.7).
    NtsNak,
    /// Another kiss-o'-death (stratum 0, no authenticator) carrying this
    /// request's Unique Identifier, e.g. RATE: RFC 8915 §5.7 has the client
    /// obey it as RFC 5905 §7.4 says. It carries no time and adds no cookie.
    /// (An authenticated stratum-0 reply is verified and reported as `Time`;
    /// its header says what it is.)
    Kiss([u8; 4]),
}

/// Why a response was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Shorter than an NTP header.
    TooShort,
    /// Not mode 4.
    NotServerMode,
    /// The extension fields (or the authenticator, or the decrypted fields) do not parse.
    Malformed,
    /// No Unique Identifier (before the authenticator), or more than one.
    MissingUniqueId,
    /// The Unique Identifier is not this request's.
    UniqueIdMismatch,
    /// No authenticator: an unauthenticated reply (also a kiss-o'-death other than NTSN).
    Unauthenticated,
    /// More than one authenticator.
    DuplicateAuthenticator,
    /// The authenticator does not verify under the S2C key.
    AuthenticationFailed,
}

impl core::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ResponseError::TooShort => "shorter than an NTP header",
            ResponseError::NotServerMode => "not a server-mode packet",
            ResponseError::Malformed => "NTS extension fields do not parse",
            ResponseError::MissingUniqueId => "no single authenticated Unique Identifier",
            ResponseError::UniqueIdMismatch => "Unique Identifier does not match the request",
            ResponseError::Unauthenticated => "no NTS Authenticator (unauthenticated reply)",
            ResponseError::DuplicateAuthenticator => "more than one NTS Authenticator",
            ResponseError::AuthenticationFailed => "NTS Authenticator does not verify",
        })
    }
}

impl std::error::Error for ResponseError {}

/// The client side of one NTS association: keys and cookie jar.
#[derive(Clone, Debug)]
pub struct ClientSession {
    keys: SessionKeys,
    jar: CookieJar,
}

impl ClientSession {
    /// A session from NTS-KE: the exported keys and the cookies received.
    pub fn new(keys: SessionKeys, cookies: Vec<Vec<u8>>) -> Self {
        let mut s = ClientSession { keys, jar: CookieJar::new() };
        for c in cookies {
            s.jar.add(c);
        }
        s
    }

    /// After a fresh NTS-KE: new keys and cookies; every old cookie is dropped.
    pub fn rekey(&mut self, keys: SessionKeys, cookies: Vec<Vec<u8>>) {
        *self = ClientSession::new(keys, cookies);
    }

    /// The negotiated AEAD.
    pub fn aead(&self) -> Aead {
        self.keys.aead
    }

    /// The cookie jar.
    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    /// Builds a protected request around `header` (the 48-octet client
    /// header, optionally followed by whole extension fields to
    /// authenticate). Takes one cookie from the jar.
    pub fn build_request(&mut self, header: &[u8], rng: &mut dyn NtsRng) -> Result<(Vec<u8>, PendingRequest), NoCookies> {
        let cookie = self.jar.take().ok_or(NoCookies)?;
        let aead = self.keys.aead;
        let cookie_field = 4 + padded_len(cookie.len());
        let extra_padding = aead.nonce_req_len().saturating_sub(padded_len(aead.nonce_len()));
        let auth_len = 8 + padded_len(aead.nonce_len()) + padded_len(aead.overhead()) + extra_padding;
        let base = header.len() + 4 + UNIQUE_ID_LEN + cookie_field + auth_len;
        let fit = MAX_CLIENT_REQUEST_LEN.saturating_sub(base) / cookie_field;
        let placeholders = self.jar.placeholders_wanted().min(fit);

        let mut uid = [0u8; UNIQUE_ID_LEN];
        rng.fill(&mut uid);
        let mut out = Vec::with_capacity(base + placeholders * cookie_field);
        out.extend_from_slice(header);
        push_field(&mut out, T_UID, &uid);
        push_field(&mut out, T_COOKIE, &cookie);
        let zeros = vec![0u8; cookie.len()];
        for _ in 0..placeholders {
            push_field(&mut out, T_PLACEHOLDER, &zeros);
        }
        // The key length is checked when the keys are made, so sealing succeeds.
        seal_into(&mut out, aead, self.keys.c2s.as_bytes(), &[], extra_padding, rng);
        Ok((out, PendingRequest { uid, placeholders }))
    }

    /// Checks a response to `pending`; see the [module documentation](self).
    /// New cookies go into the jar.
    pub fn verify_response(&mut self, pending: &PendingRequest, packet: &[u8]) -> Result<ResponseKind, ResponseError> {
        if packet.len() < HEADER_LEN {
            return Err(ResponseError::TooShort);
        }
        if packet[0] & 0x07 != 4 {
            return Err(ResponseError::NotServerMode);
        }
        let framing = Framing::of(packet);
        let fields = walk(packet, HEADER_LEN, false, 64, framing).ok_or(ResponseError::Malformed)?;
        let mut auths = fields.iter().filter(|f| f.field_type == T_AUTH);
        let auth = auths.next();
        if auths.next().is_some() {
            return Err(ResponseError::DuplicateAuthenticator);
        }
        let auth_start = auth.map_or(packet.len(), |a| a.start);
        let mut uids = fields.iter().filter(|f| f.field_type == T_UID && f.end <= auth_start);
        let uid = match (uids.next(), uids.next()) {
            (Some(u), None) => u,
            _ => return Err(ResponseError::MissingUniqueId),
        };
        if uid.value(packet) != pending.uid {
            return Err(ResponseError::UniqueIdMismatch);
        }
        if is_ntsn_kod(packet) {
            return Ok(ResponseKind::NtsNak);
        }
        let Some(auth) = auth else {
            // Unauthenticated: only a kiss-o'-death (stratum 0) is acted on;
            // NTPv5 has none (its refusals carry no code).
            if packet[1] == 0 && framing == Framing::V4 {
                return Ok(ResponseKind::Kiss([packet[12], packet[13], packet[14], packet[15]]));
            }
            return Err(ResponseError::Unauthenticated);
        };
        let parts = parse_auth(auth.value(packet)).ok_or(ResponseError::Malformed)?;
        let aead = self.keys.aead;
        let plain = aead
            .open(self.keys.s2c.as_bytes(), parts.nonce, &packet[..auth.start], parts.ciphertext)
            .map_err(|_| ResponseError::AuthenticationFailed)?;
        let inner = walk(&plain, 0, false, 64, framing).ok_or(ResponseError::Malformed)?;
        let mut added = 0;
        for f in inner.iter().filter(|f| f.field_type == T_COOKIE).take(MAX_REPLY_COOKIES) {
            let c = f.value(&plain);
            if !c.is_empty() {
                self.jar.add(c.to_vec());
                added += 1;
            }
        }
        Ok(ResponseKind::Time { new_cookies: added })
    }
}

// ───────────────────────────── server ─────────────────────────────

/// How the server treats a request; see [`process_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtsRequest {
    /// No NTS fields: the plain NTP path.
    Plain,
    /// Authenticated: answer through [`ProtectedRequest::seal_reply`].
    Protected(ProtectedRequest),
    /// Answer with an NTSN kiss-o'-death ([`NakReply::write`]).
    Nak(NakReply),
    /// Answer nothing.
    Drop(NtsDropReason),
}

/// Why an NTS request gets no answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtsDropReason {
    /// Shorter than the header, or extension fields that do not parse.
    Malformed,
    /// NTS fields without exactly one Unique Identifier before the
    /// authenticator: there is nothing to echo in a NAK.
    MissingUniqueId,
    /// Not exactly one NTS Cookie and one Authenticator, in that order.
    BadFieldLayout,
    /// The nonce plus additional padding is shorter than N_REQ (RFC 8915 §5.6: discard).
    InsufficientPadding,
}

/// Why the server answers with an NTSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NakReason {
    /// The cookie does not open (expired key, unknown key, forged).
    Cookie(super::cookie::CookieError),
    /// The cookie opened but the request does not authenticate under its C2S key.
    Authentication,
}

/// A verified NTS request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedRequest {
    uid: Vec<u8>,
    keys: SessionKeys,
    cookies_wanted: usize,
    request_len: usize,
}

/// The buffer given to [`ProtectedRequest::seal_reply`] or [`NakReply::write`] is too small,
/// or the reply cannot be made no longer than the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyError;

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NTS reply does not fit the buffer or the request's length")
    }
}

impl std::error::Error for ReplyError {}

impl ProtectedRequest {
    /// The keys recovered from the cookie.
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// Cookies the client asked for: one plus its valid placeholders (at most [`MAX_REPLY_COOKIES`]).
    pub fn cookies_wanted(&self) -> usize {
        self.cookies_wanted
    }

    /// The client's Unique Identifier.
    pub fn unique_id(&self) -> &[u8] {
        &self.uid
    }

    /// Completes the reply in `out`, whose first 48 octets are the finished
    /// reply header (after `Server::finish_response`): appends the Unique
    /// Identifier and the Authenticator with fresh cookies sealed under
    /// `master`, and returns the reply length, never more than the request's.
    /// The same as [`Self::prepare_reply`] and then [`Self::seal_prepared`].
    pub fn seal_reply(&self, out: &mut [u8], master: &MasterKeys, rng: &mut dyn NtsRng) -> Result<usize, ReplyError> {
        let prepared = self.prepare_reply(out, master, rng)?;
        self.seal_prepared(out, &prepared)
    }

    /// The part of [`Self::seal_reply`] the header does not enter: writes
    /// the Unique Identifier, the Authenticator's header and nonce and the
    /// fresh cookies (sealed under `master`: most of the cryptography) after
    /// the first 48 octets of `out`, which it leaves alone. A server calls it
    /// before it reads the clock for the transmit timestamp, writes the
    /// header, and then [`Self::seal_prepared`], so that the timestamp is
    /// followed only by the Authenticator's encryption, which covers the header.
    pub fn prepare_reply(&self, out: &mut [u8], master: &MasterKeys, rng: &mut dyn NtsRng) -> Result<PreparedReply, ReplyError> {
        // Written in place in `out` (no allocation): the Unique Identifier,
        // the Authenticator's header and nonce, the cookie fields as its
        // plaintext, encrypted where it lies by seal_prepared; the same
        // octets, and the same draws from `rng` (cookies first, then the
        // nonce), as building the reply apart and copying it.
        let aead = self.keys.aead;
        let uid_field = 4 + padded_len(self.uid.len());
        let cookie_field = 4 + padded_len(super::cookie::cookie_len(aead));
        let auth_at = HEADER_LEN + uid_field;
        let fixed = auth_at + 8 + padded_len(aead.nonce_len()) + padded_len(aead.overhead());
        let room = self.request_len.saturating_sub(fixed) / cookie_field;
        let n = self.cookies_wanted.min(room);
        if n == 0 {
            return Err(ReplyError);
        }
        let nonce_len = aead.nonce_len();
        let plain_len = n * cookie_field;
        let ct_len = aead.overhead() + plain_len;
        let nonce_at = auth_at + 8;
        let ct_at = nonce_at + padded_len(nonce_len);
        let total = ct_at + padded_len(ct_len);
        if total > out.len() {
            return Err(ReplyError);
        }
        let reply = &mut out[..total];
        put_field_header(reply, HEADER_LEN, T_UID, uid_field);
        reply[HEADER_LEN + 4..auth_at].fill(0);
        reply[HEADER_LEN + 4..HEADER_LEN + 4 + self.uid.len()].copy_from_slice(&self.uid);
        put_field_header(reply, auth_at, T_AUTH, total - auth_at);
        reply[auth_at + 4..auth_at + 6].copy_from_slice(&u16::try_from(nonce_len).map_err(|_| ReplyError)?.to_be_bytes());
        reply[auth_at + 6..auth_at + 8].copy_from_slice(&u16::try_from(ct_len).map_err(|_| ReplyError)?.to_be_bytes());
        reply[nonce_at..].fill(0);
        let (plain_at, tag_at) = if aead.tag_first() { (ct_at + TAG_LEN, ct_at) } else { (ct_at, ct_at + plain_len) };
        for i in 0..n {
            let at = plain_at + i * cookie_field;
            put_field_header(reply, at, T_COOKIE, cookie_field);
            master.seal_into(&self.keys, rng, &mut reply[at + 4..at + cookie_field]).ok_or(ReplyError)?;
        }
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce[..nonce_len]);
        reply[nonce_at..nonce_at + nonce_len].copy_from_slice(&nonce[..nonce_len]);
        let at = |n: usize| u16::try_from(n).map_err(|_| ReplyError);
        Ok(PreparedReply { total: at(total)?, auth_at: at(auth_at)?, plain_at: at(plain_at)?, plain_len: at(plain_len)?, tag_at: at(tag_at)? })
    }

    /// Encrypts the reply [`Self::prepare_reply`] wrote in `out` (the same
    /// buffer, its header finished since) and returns its length. Fails if
    /// `out` is shorter than the prepared reply.
    pub fn seal_prepared(&self, out: &mut [u8], prepared: &PreparedReply) -> Result<usize, ReplyError> {
        let [total, auth_at, plain_at, plain_len, tag_at] =
            [prepared.total, prepared.auth_at, prepared.plain_at, prepared.plain_len, prepared.tag_at].map(usize::from);
        let reply = out.get_mut(..total).ok_or(ReplyError)?;
        // The nonce prepare_reply drew lies after the Authenticator's header.
        let nonce_len = self.keys.aead.nonce_len();
        let mut nonce = [0u8; 16];
        nonce[..nonce_len].copy_from_slice(reply.get(auth_at + 8..auth_at + 8 + nonce_len).ok_or(ReplyError)?);
        let (ad, rest) = reply.split_at_mut(auth_at);
        let tag = self
            .keys
            .aead
            .seal_in_place(self.keys.s2c.as_bytes(), &nonce[..nonce_len], ad, &mut rest[plain_at - auth_at..plain_at - auth_at + plain_len])
            .map_err(|_| ReplyError)?;
        reply[tag_at..tag_at + TAG_LEN].copy_from_slice(&tag);
        Ok(total)
    }
}

/// An NTS reply written by [`ProtectedRequest::prepare_reply`] and waiting
/// for [`ProtectedRequest::seal_prepared`]: where its parts lie in the
/// buffer (octet offsets; a reply is never longer than its request's
/// datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreparedReply {
    total: u16,
    auth_at: u16,
    plain_at: u16,
    plain_len: u16,
    tag_at: u16,
}

/// Writes an extension field header (type, length) at `at`.
fn put_field_header(buf: &mut [u8], at: usize, field_type: u16, len: usize) {
    buf[at..at + 2].copy_from_slice(&field_type.to_be_bytes());
    buf[at + 2..at + 4].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
}

impl ProtectedRequest {
    /// Completes an NTPv5 reply (draft-ietf-ntp-ntpv5-07 §11): `out[..reply_len]`
    /// holds the plain NTPv5 response, transmit timestamp written (the header
    /// and the answers to the request's fields, padded to the request's
    /// length). Its Padding is replaced by the Unique Identifier echo, a
    /// Padding field that makes the reply exactly as long as the request,
    /// and the Authenticator with fresh cookies, so every field but the
    /// Authenticator is authenticated. Returns the reply length (the
    /// request's).
    pub fn seal_reply_v5(&self, out: &mut [u8], reply_len: usize, master: &MasterKeys, rng: &mut dyn NtsRng) -> Result<usize, ReplyError> {
        let aead = self.keys.aead;
        let mut reply = v5_without_padding(out.get(..reply_len).ok_or(ReplyError)?, |_| true).ok_or(ReplyError)?;
        push_field(&mut reply, T_UID, &self.uid);
        let cookie_field = 4 + padded_len(super::cookie::cookie_len(aead));
        let auth_fixed = 8 + padded_len(aead.nonce_len()) + padded_len(aead.overhead());
        let room = self.request_len.saturating_sub(reply.len() + auth_fixed) / cookie_field;
        let n = self.cookies_wanted.min(room);
        if n == 0 {
            return Err(ReplyError);
        }
        let pad = self.request_len - reply.len() - auth_fixed - n * cookie_field;
        push_v5_padding(&mut reply, pad)?;
        let mut plain = Vec::with_capacity(n * cookie_field);
        for _ in 0..n {
            push_field(&mut plain, T_COOKIE, &master.seal(&self.keys, rng));
        }
        if !seal_into(&mut reply, aead, self.keys.s2c.as_bytes(), &plain, 0, rng) || reply.len() != self.request_len || reply.len() > out.len() {
            return Err(ReplyError);
        }
        out[..reply.len()].copy_from_slice(&reply);
        Ok(reply.len())
    }
}

/// The NTPv5 response `reply` without its Padding fields and without the
/// fields `keep` refuses (by type): the header and the other fields as they
/// are, each with its alignment octets. `None` if its fields do not parse.
fn v5_without_padding(reply: &[u8], keep: impl Fn(u16) -> bool) -> Option<Vec<u8>> {
    let fields = walk(reply, HEADER_LEN, false, 128, Framing::V5)?;
    let mut out = reply.get(..HEADER_LEN)?.to_vec();
    for f in fields.iter().filter(|f| f.field_type != T_V5_PADDING && keep(f.field_type)) {
        out.extend_from_slice(reply.get(f.start..f.start + padded_len(f.end - f.start))?);
    }
    Some(out)
}

/// Appends an NTPv5 Padding field of `len` octets (none for 0).
fn push_v5_padding(out: &mut Vec<u8>, len: usize) -> Result<(), ReplyError> {
    match len {
        0 => Ok(()),
        1..=3 => Err(ReplyError),
        _ => {
            out.extend(T_V5_PADDING.to_be_bytes());
            out.extend(u16::try_from(len).map_err(|_| ReplyError)?.to_be_bytes());
            out.resize(out.len() + len - 4, 0);
            Ok(())
        }
    }
}

/// Rewrites the NTPv5 response in `out[..reply_len]` (as long as its
/// request) with its fields that `keep` accepts, then the Unique Identifier
/// echo, then Padding up to `reply_len`: a plain answer or refusal to a
/// request that carried a Unique Identifier (RFC 8915 §5.3). Returns
/// `reply_len`, or `None` if the echo does not fit.
pub(crate) fn echo_uid_v5(out: &mut [u8], reply_len: usize, uid: &[u8], keep: impl Fn(u16) -> bool) -> Option<usize> {
    let mut reply = v5_without_padding(out.get(..reply_len)?, keep)?;
    push_field(&mut reply, T_UID, uid);
    let fill = reply_len.checked_sub(reply.len())?;
    push_v5_padding(&mut reply, fill).ok()?;
    out.get_mut(..reply_len)?.copy_from_slice(&reply);
    Some(reply_len)
}

/// Appends a Unique Identifier field echoing `uid` after the 48-octet
/// header in `out` (a kiss-o'-death answering an NTS request); the total
/// length, or `None` if `out` is too short.
pub(crate) fn append_uid(out: &mut [u8], uid: &[u8]) -> Option<usize> {
    let mut f = Vec::with_capacity(4 + padded_len(uid.len()));
    push_field(&mut f, T_UID, uid);
    let end = HEADER_LEN + f.len();
    out.get_mut(HEADER_LEN..end)?.copy_from_slice(&f);
    Some(end)
}

/// An NTSN answer to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NakReply {
    uid: Vec<u8>,
    version: u8,
    poll: i8,
    transmit: [u8; 8],
    /// Why.
    pub reason: NakReason,
}

impl NakReply {
    /// The client's Unique Identifier, echoed.
    pub fn unique_id(&self) -> &[u8] {
        &self.uid
    }

    /// Turns the plain NTPv5 response in `out[..reply_len]` (not yet given a
    /// transmit timestamp) into the NTPv5 NAK (draft-ietf-ntp-ntpv5-07 §6,
    /// §11): LI 3, stratum 0, the Authentication NAK flag and no other, no
    /// time (root delay and dispersion, timescale, era, server cookie,
    /// timestamps zero), the client cookie and poll kept; then the Draft
    /// Identification, the Unique Identifier and Padding, as long as the
    /// request. No cookie, no authenticator.
    pub fn write_v5(&self, out: &mut [u8], reply_len: usize) -> Result<usize, ReplyError> {
        let h = out.get_mut(..HEADER_LEN).ok_or(ReplyError)?;
        h[0] = 0xc0 | 5 << 3 | 4;
        h[1] = 0;
        h[4..14].fill(0);
        h[14..16].copy_from_slice(&V5_AUTH_NAK.to_be_bytes());
        h[16..24].fill(0);
        h[32..48].fill(0);
        echo_uid_v5(out, reply_len, &self.uid, |t| t == T_V5_DRAFT).ok_or(ReplyError)
    }

    /// Writes the NTSN kiss-o'-death into `out`: LI 3, the request's
    /// version, mode 4, stratum 0, the request's poll, `precision_log2`,
    /// reference ID "NTSN", origin = the request's transmit timestamp, other
    /// times zero; then the Unique Identifier, and no cookie or
    /// authenticator. Returns its length (never more than the request's).
    pub fn write(&self, precision_log2: i8, out: &mut [u8]) -> Result<usize, ReplyError> {
        let len = HEADER_LEN + 4 + padded_len(self.uid.len());
        if out.len() < len {
            return Err(ReplyError);
        }
        let mut v = Vec::with_capacity(len);
        v.push(0xc0 | (self.version & 0x07) << 3 | 4);
        v.extend([0, self.poll as u8, precision_log2 as u8]);
        v.extend([0u8; 8]); // root delay, root dispersion
        v.extend(b"NTSN");
        v.extend([0u8; 8]); // reference
        v.extend(self.transmit); // origin
        v.extend([0u8; 16]); // receive, transmit
        push_field(&mut v, T_UID, &self.uid);
        out[..len].copy_from_slice(&v);
        Ok(len)
    }
}

/// The Unique Identifier of a request without NTS fields (RFC 8915 §5.3:
/// the field "MAY also be used standalone, without NTS"): the value of its
/// one Unique Identifier field, if the extension fields parse and hold
/// exactly one; `None` otherwise (none, several, or not extension fields).
pub fn plain_unique_id(request: &[u8]) -> Option<Vec<u8>> {
    let fields = walk(request, HEADER_LEN, true, 128, Framing::of(request))?;
    exactly_one(fields.iter().filter(|f| f.field_type == T_UID)).map(|u| u.value(request).to_vec())
}

/// The one item of `items`; `None` if there is none or more than one
/// (without collecting them: no allocation per request).
fn exactly_one<T>(mut items: impl Iterator<Item = T>) -> Option<T> {
    match (items.next(), items.next()) {
        (Some(item), None) => Some(item),
        _ => None,
    }
}

/// Sorts and, if it is NTS, verifies a client request; see the
/// [module documentation](self). Never panics, whatever the octets.
pub fn process_request(master: &MasterKeys, request: &[u8]) -> NtsRequest {
    if request.len() < HEADER_LEN {
        return NtsRequest::Drop(NtsDropReason::Malformed);
    }
    let framing = Framing::of(request);
    let Some(fields) = walk(request, HEADER_LEN, true, 128, framing) else {
        return NtsRequest::Plain; // not extension fields at all: the plain path judges it
    };
    let is_nts = |t: u16| t == T_COOKIE || t == T_AUTH || t == T_PLACEHOLDER;
    if !fields.iter().any(|f| is_nts(f.field_type)) {
        return NtsRequest::Plain;
    }
    let Some(auth) = exactly_one(fields.iter().filter(|f| f.field_type == T_AUTH)) else {
        return NtsRequest::Drop(NtsDropReason::BadFieldLayout);
    };
    let before = |f: &&RawField| f.end <= auth.start;
    let Some(uid) = exactly_one(fields.iter().filter(|f| f.field_type == T_UID).filter(before)) else {
        return NtsRequest::Drop(NtsDropReason::MissingUniqueId);
    };
    let Some(cookie) = exactly_one(fields.iter().filter(|f| f.field_type == T_COOKIE)) else {
        return NtsRequest::Drop(NtsDropReason::BadFieldLayout);
    };
    if cookie.end > auth.start {
        return NtsRequest::Drop(NtsDropReason::BadFieldLayout);
    }
    let uid_value = uid.value(request).to_vec();
    let nak = |reason| {
        NtsRequest::Nak(NakReply {
            uid: uid_value.clone(),
            version: (request[0] >> 3) & 0x07,
            poll: request[2] as i8,
            transmit: request[40..48].try_into().unwrap_or([0; 8]),
            reason,
        })
    };
    let Some(parts) = parse_auth(auth.value(request)) else {
        return NtsRequest::Drop(NtsDropReason::Malformed);
    };
    let cookie_value = cookie.value(request);
    let keys = match master.open(cookie_value) {
        Ok(k) => k,
        Err(e) => return nak(NakReason::Cookie(e)),
    };
    if parts.nonce_room < keys.aead.nonce_req_len() {
        return NtsRequest::Drop(NtsDropReason::InsufficientPadding);
    }
    // Valid placeholders: authenticated (before the authenticator or encrypted), body as long as the cookie's.
    let valid = |buf: &[u8], f: &RawField| f.field_type == T_PLACEHOLDER && f.value(buf).len() == cookie_value.len();
    let inner_placeholders = |plain: &[u8]| walk(plain, 0, false, 64, framing).map_or(0, |inner| inner.iter().filter(|f| valid(plain, f)).count());
    let Ok(encrypted) = keys.aead.open_with(keys.c2s.as_bytes(), parts.nonce, &request[..auth.start], parts.ciphertext, inner_placeholders)
    else {
        return nak(NakReason::Authentication);
    };
    let placeholders = encrypted + fields.iter().filter(before).filter(|f| valid(request, f)).count();
    NtsRequest::Protected(ProtectedRequest {
        uid: uid_value,
        keys,
        cookies_wanted: (1 + placeholders).min(MAX_REPLY_COOKIES),
        request_len: request.len(),
    })
}

#[cfg(test)]
mod tests;
