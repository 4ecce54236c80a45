//! An on-path attacker on a link: it sees every datagram the link carries
//! and tampers with NTS-protected NTPv4 (RFC 8915 §5) the way RFC 8915 §8
//! expects an attacker to: it modifies replies, strips their authenticator,
//! appends unauthenticated fields, replays and reorders them, and forges
//! replies and kisses-o'-death in answer to the requests it sees.
//!
//! It is sans-IO like the scripted peers: [`Attacker::on_datagram`] gets one
//! datagram's payload and says what to do with it; the harness delivers the
//! results and marks every datagram the attacker made or changed with its
//! [`AttackKind`] in the trace (`"attack"` in `packets.jsonl`), so the
//! conformance checks can count what the client made of them. It has no
//! keys: what it forges cannot authenticate, which is the point.
//!
//! Acts only on NTS packets (a Unique Identifier field after the header);
//! plain NTP passes untouched. Randomness comes from a private stream derived
//! from the run's seed, so an attacked run replays exactly.

use crate::rng::SimRng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Unique Identifier extension field (RFC 8915 §5.3).
const EF_UID: u16 = 0x0104;
/// NTS Cookie (§5.4).
const EF_COOKIE: u16 = 0x0204;
/// NTS Authenticator and Encrypted Extension Fields (§5.6).
const EF_AUTH: u16 = 0x0404;
/// Length of the cookie the attacker appends after a reply's authenticator
/// (the daemon's own cookies are this long, so it would fit the jar).
pub const APPENDED_COOKIE_LEN: usize = 100;
/// How far a forged reply's timestamps are from the request's transmit
/// timestamp: what the attacker would like the client to believe, seconds.
pub const FORGED_SHIFT_S: u32 = 1;

/// How often the attacker does each thing: probabilities per NTS reply
/// (`modify`, `strip`, `append`, `replay`, `reorder`; at most one per reply,
/// their sum at most 1) and per NTS request (`forge`, `forge_kod`,
/// `forge_ntsn`; their sum at most 1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttackerConfig {
    /// Flip one bit of a reply's header (timestamps, stratum, ...) and deliver that instead.
    pub modify: f64,
    /// Remove a reply's authenticator (and what follows it) and deliver that instead.
    pub strip: f64,
    /// Append an unauthenticated NTS Cookie field after a reply's authenticator.
    pub append: f64,
    /// Send again, just before this reply, the previous reply of the same flow.
    pub replay: f64,
    /// Hold a reply back and release it after the next reply of the same flow.
    pub reorder: f64,
    /// Answer a request first with a forged reply: its identifier echoed,
    /// timestamps [`FORGED_SHIFT_S`] ahead, an authenticator of random octets.
    pub forge: f64,
    /// Answer a request first with a forged DENY kiss-o'-death without the
    /// request's identifier (the origin copied, no authenticator).
    pub forge_kod: f64,
    /// Answer a request first with a forged NTSN kiss-o'-death echoing the
    /// request's identifier (the origin copied, no authenticator): RFC 8915
    /// §8.7's way of forcing a client into NTS-KE again.
    pub forge_ntsn: f64,
}

impl AttackerConfig {
    /// Checks the probabilities; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("modify", self.modify),
            ("strip", self.strip),
            ("append", self.append),
            ("replay", self.replay),
            ("reorder", self.reorder),
            ("forge", self.forge),
            ("forge_kod", self.forge_kod),
            ("forge_ntsn", self.forge_ntsn),
        ];
        for (k, p) in all {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("attacker `{k}` = {p} is not a probability (0 to 1)"));
            }
        }
        let replies = self.modify + self.strip + self.append + self.replay + self.reorder;
        if replies > 1.0 + 1e-9 {
            return Err(format!("attacker: modify + strip + append + replay + reorder = {replies}, more than 1 (one action per reply)"));
        }
        let requests = self.forge + self.forge_kod + self.forge_ntsn;
        if requests > 1.0 + 1e-9 {
            return Err(format!("attacker: forge + forge_kod + forge_ntsn = {requests}, more than 1 (one action per request)"));
        }
        Ok(())
    }
}

/// What the attacker did to a datagram (the trace's `"attack"` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttackKind {
    /// A reply with one bit flipped.
    Modify,
    /// A reply without its authenticator.
    Strip,
    /// A reply with an unauthenticated cookie after its authenticator.
    Append,
    /// An earlier reply sent again.
    Replay,
    /// A reply held back and released after the next one.
    Reorder,
    /// A reply forged in answer to a request.
    Forge,
    /// A DENY kiss forged in answer to a request, without its identifier.
    ForgeKod,
    /// An NTSN kiss forged in answer to a request, echoing its identifier.
    ForgeNtsn,
}

impl AttackKind {
    /// The trace's name for it.
    pub fn label(self) -> &'static str {
        match self {
            AttackKind::Modify => "modify",
            AttackKind::Strip => "strip",
            AttackKind::Append => "append",
            AttackKind::Replay => "replay",
            AttackKind::Reorder => "reorder",
            AttackKind::Forge => "forge",
            AttackKind::ForgeKod => "forge_kod",
            AttackKind::ForgeNtsn => "forge_ntsn",
        }
    }
}

/// A datagram the attacker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// What it is.
    pub kind: AttackKind,
    /// Payload.
    pub payload: Vec<u8>,
    /// Goes back to the sender of the datagram seen (a forged answer to a
    /// request), rather than on to its receiver.
    pub back: bool,
    /// Arrives just after the datagram seen (true) or just before it (false).
    pub after: bool,
}

/// The attacker's decision about one datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Deliver this instead of the datagram (which is then not delivered).
    pub replace: Option<(AttackKind, Vec<u8>)>,
    /// Do not deliver the datagram now (the attacker holds it).
    pub hold: bool,
    /// Extra datagrams.
    pub inject: Vec<Injected>,
}

/// The attacker of one link. See the module documentation.
#[derive(Debug, Clone)]
pub struct Attacker {
    config: AttackerConfig,
    rng: SimRng,
    /// Per flow (reply source, reply destination): the last reply seen.
    last: BTreeMap<(SocketAddr, SocketAddr), Vec<u8>>,
    /// Per flow: a reply held back.
    held: BTreeMap<(SocketAddr, SocketAddr), Vec<u8>>,
}

/// The extension fields after the header: (type, start, end); None when they do not decode.
fn fields(p: &[u8]) -> Option<Vec<(u16, usize, usize)>> {
    let mut out = Vec::new();
    let mut at = 48;
    while at < p.len() {
        let h = p.get(at..at + 4)?;
        let kind = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 16 || len % 4 != 0 || at + len > p.len() {
            return None;
        }
        out.push((kind, at, at + len));
        at += len;
    }
    Some(out)
}

fn ef(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

impl Attacker {
    /// An attacker doing what `config` says, with its own random stream.
    pub fn new(config: AttackerConfig, rng: SimRng) -> Self {
        Attacker { config, rng, last: BTreeMap::new(), held: BTreeMap::new() }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.next_u64() as u8).collect()
    }

    /// What to do with a datagram from `src` to `dst` that the link is about to deliver.
    pub fn on_datagram(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Verdict {
        let mut v = Verdict::default();
        if payload.len() < 48 {
            return v;
        }
        let Some(f) = fields(payload) else { return v };
        let Some(&(_, uid_start, uid_end)) = f.iter().find(|e| e.0 == EF_UID) else { return v };
        match payload[0] & 7 {
            3 => {
                let r = self.rng.uniform();
                let c = self.config;
                let mut reply = payload[..48].to_vec();
                reply[0] = 0x24; // LI 0, v4, mode 4
                reply[24..32].copy_from_slice(&payload[40..48]); // origin = the request's transmit
                let uid = &payload[uid_start + 4..uid_end];
                if r < c.forge {
                    reply[1] = 1;
                    reply[3] = 0xec;
                    reply[4..12].fill(0);
                    reply[12..16].copy_from_slice(b"GPS\0");
                    let xmt = u64::from_be_bytes(payload[40..48].try_into().unwrap_or_default());
                    let shifted = xmt.wrapping_add(u64::from(FORGED_SHIFT_S) << 32).to_be_bytes();
                    reply[16..24].copy_from_slice(&xmt.wrapping_add(u64::from(FORGED_SHIFT_S) << 32).wrapping_sub(16 << 32).to_be_bytes());
                    reply[32..40].copy_from_slice(&shifted);
                    reply[40..48].copy_from_slice(&shifted);
                    reply.extend(ef(EF_UID, uid));
                    // Authenticator: nonce length 16, ciphertext length 48, random octets.
                    let mut body = vec![0, 16, 0, 48];
                    body.extend(self.bytes(64));
                    reply.extend(ef(EF_AUTH, &body));
                    v.inject.push(Injected { kind: AttackKind::Forge, payload: reply, back: true, after: false });
                } else if r < c.forge + c.forge_kod + c.forge_ntsn {
                    // A kiss-o'-death: DENY without the identifier, or NTSN
                    // echoing it as a server's would (RFC 8915 §5.7).
                    let ntsn = r >= c.forge + c.forge_kod;
                    reply[0] = 0xe4; // LI 3, v4, mode 4
                    reply[1] = 0;
                    reply[4..24].fill(0);
                    reply[12..16].copy_from_slice(if ntsn { b"NTSN" } else { b"DENY" });
                    reply[32..48].fill(0);
                    if ntsn {
                        reply.extend(ef(EF_UID, uid));
                    }
                    let kind = if ntsn { AttackKind::ForgeNtsn } else { AttackKind::ForgeKod };
                    v.inject.push(Injected { kind, payload: reply, back: true, after: false });
                }
            }
            4 if payload[1] != 0 => {
                let flow = (src, dst);
                if let Some(old) = self.held.remove(&flow) {
                    v.inject.push(Injected { kind: AttackKind::Reorder, payload: old, back: false, after: true });
                }
                let previous = self.last.insert(flow, payload.to_vec());
                let c = self.config;
                let r = self.rng.uniform();
                let auth = f.iter().find(|e| e.0 == EF_AUTH).copied();
                if r < c.modify {
                    let mut m = payload.to_vec();
                    // One bit of the header: stratum, root delay/dispersion, reference ID or a timestamp.
                    let bit = 8 + (self.rng.next_u64() % (40 * 8)) as usize;
                    m[bit / 8] ^= 1 << (bit % 8);
                    v.replace = Some((AttackKind::Modify, m));
                } else if r < c.modify + c.strip {
                    if let Some((_, start, _)) = auth {
                        v.replace = Some((AttackKind::Strip, payload[..start].to_vec()));
                    }
                } else if r < c.modify + c.strip + c.append {
                    let mut m = payload.to_vec();
                    let cookie = self.bytes(APPENDED_COOKIE_LEN);
                    m.extend(ef(EF_COOKIE, &cookie));
                    v.replace = Some((AttackKind::Append, m));
                } else if r < c.modify + c.strip + c.append + c.replay {
                    if let Some(old) = previous {
                        v.inject.push(Injected { kind: AttackKind::Replay, payload: old, back: false, after: false });
                    }
                } else if r < c.modify + c.strip + c.append + c.replay + c.reorder {
                    self.held.insert(flow, payload.to_vec());
                    v.hold = true;
                }
            }
            _ => {}
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const C: &str = "10.0.0.2:40000";
    const S: &str = "10.0.0.1:123";

    fn request() -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x23;
        p[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        p.extend(ef(EF_UID, &[7; 32]));
        p.extend(ef(EF_COOKIE, &[9; 100]));
        p.extend(ef(EF_AUTH, &[0, 16, 0, 16].iter().copied().chain([1; 32]).collect::<Vec<u8>>()));
        p
    }

    fn reply(tx: u8) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x24;
        p[1] = 1;
        p[24..32].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        p[40] = tx;
        p.extend(ef(EF_UID, &[7; 32]));
        p.extend(ef(EF_AUTH, &[0, 16, 0, 16].iter().copied().chain([1; 32]).collect::<Vec<u8>>()));
        p
    }

    fn only(c: AttackerConfig) -> Attacker {
        Attacker::new(c, SimRng::derive(1, "attacker-test"))
    }

    /// The one datagram an attacker doing `c` injects on seeing [`request`]
    /// (checked to be of `kind`, to go back to the client ahead of the
    /// request, and the request itself to go on), and its extension fields.
    fn one_answer(c: AttackerConfig, kind: AttackKind) -> (Vec<u8>, Vec<(u16, usize, usize)>) {
        let v = only(c).on_datagram(addr(C), addr(S), &request());
        let [inj] = v.inject.as_slice() else { panic!("{v:?}") };
        assert_eq!((inj.kind, inj.back, inj.after), (kind, true, false));
        assert!(v.replace.is_none() && !v.hold, "the request itself goes on");
        let p = inj.payload.clone();
        assert_eq!(&p[24..32], &request()[40..48], "origin copied");
        let f = fields(&p).unwrap();
        (p, f)
    }

    #[test]
    fn forged_reply_echoes_uid_and_origin_but_cannot_authenticate() {
        let (p, f) = one_answer(AttackerConfig { forge: 1.0, ..Default::default() }, AttackKind::Forge);
        assert_eq!((p[0] & 7, p[1]), (4, 1));
        assert_eq!(f.iter().map(|e| e.0).collect::<Vec<_>>(), vec![EF_UID, EF_AUTH]);
        assert_eq!(&p[f[0].1 + 4..f[0].2], &[7; 32]);
        let xmt = u64::from_be_bytes(p[40..48].try_into().unwrap());
        assert_eq!(xmt >> 32, (0x1122_3344u64 + u64::from(FORGED_SHIFT_S)));
    }

    #[test]
    fn forged_ntsn_echoes_the_identifier_without_cookie_or_authenticator() {
        let (p, f) = one_answer(AttackerConfig { forge_ntsn: 1.0, ..Default::default() }, AttackKind::ForgeNtsn);
        assert_eq!((p[0], p[1], &p[12..16]), (0xe4, 0, &b"NTSN"[..]));
        assert_eq!(f.iter().map(|e| e.0).collect::<Vec<_>>(), vec![EF_UID]);
        assert_eq!(&p[f[0].1 + 4..f[0].2], &[7; 32]);
        // One action per request: forge, forge_kod and forge_ntsn share the 1.
        let e = AttackerConfig { forge: 0.5, forge_kod: 0.25, forge_ntsn: 0.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("forge + forge_kod + forge_ntsn = 1.25"), "{e}");
        assert!(AttackerConfig { forge_ntsn: 1.5, ..Default::default() }.validate().unwrap_err().contains("`forge_ntsn`"));
    }

    #[test]
    fn forged_kiss_has_no_identifier() {
        let mut a = only(AttackerConfig { forge_kod: 1.0, ..Default::default() });
        let v = a.on_datagram(addr(C), addr(S), &request());
        let p = &v.inject[0].payload;
        assert_eq!(v.inject[0].kind, AttackKind::ForgeKod);
        assert_eq!((p.len(), p[1], &p[12..16]), (48, 0, &b"DENY"[..]));
        assert_eq!(&p[24..32], &request()[40..48]);
    }

    #[test]
    fn reply_tampering() {
        let mut a = only(AttackerConfig { modify: 1.0, ..Default::default() });
        let (k, m) = a.on_datagram(addr(S), addr(C), &reply(1)).replace.unwrap();
        assert_eq!(k, AttackKind::Modify);
        let diff: u32 = m.iter().zip(reply(1)).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(diff, 1, "one bit flipped");
        assert_eq!(m[48..], reply(1)[48..], "in the header");

        let mut a = only(AttackerConfig { strip: 1.0, ..Default::default() });
        let (k, m) = a.on_datagram(addr(S), addr(C), &reply(1)).replace.unwrap();
        assert_eq!((k, m.len()), (AttackKind::Strip, 48 + 36));

        let mut a = only(AttackerConfig { append: 1.0, ..Default::default() });
        let (k, m) = a.on_datagram(addr(S), addr(C), &reply(1)).replace.unwrap();
        assert_eq!(k, AttackKind::Append);
        let f = fields(&m).unwrap();
        assert_eq!(f.last().map(|e| (e.0, e.2 - e.1)), Some((EF_COOKIE, 4 + APPENDED_COOKIE_LEN)));
        assert_eq!(m[..reply(1).len()], reply(1)[..]);
    }

    #[test]
    fn replay_and_reorder_use_earlier_replies() {
        let mut a = only(AttackerConfig { replay: 1.0, ..Default::default() });
        assert!(a.on_datagram(addr(S), addr(C), &reply(1)).inject.is_empty(), "nothing to replay yet");
        let v = a.on_datagram(addr(S), addr(C), &reply(2));
        assert_eq!(v.inject, vec![Injected { kind: AttackKind::Replay, payload: reply(1), back: false, after: false }]);

        let mut a = only(AttackerConfig { reorder: 1.0, ..Default::default() });
        let v = a.on_datagram(addr(S), addr(C), &reply(1));
        assert!(v.hold && v.inject.is_empty());
        let v = a.on_datagram(addr(S), addr(C), &reply(2));
        assert!(v.hold);
        assert_eq!(v.inject, vec![Injected { kind: AttackKind::Reorder, payload: reply(1), back: false, after: true }]);
    }

    #[test]
    fn plain_ntp_and_kisses_pass_untouched() {
        let all = AttackerConfig { modify: 0.2, strip: 0.2, append: 0.2, replay: 0.2, reorder: 0.2, forge: 0.4, forge_kod: 0.3, forge_ntsn: 0.3 };
        let mut a = only(all);
        for _ in 0..50 {
            assert_eq!(a.on_datagram(addr(C), addr(S), &request()[..48]), Verdict::default());
            assert_eq!(a.on_datagram(addr(S), addr(C), &reply(1)[..48]), Verdict::default());
            let mut ntsn = reply(1);
            ntsn[1] = 0;
            assert_eq!(a.on_datagram(addr(S), addr(C), &ntsn), Verdict::default());
            assert_eq!(a.on_datagram(addr(S), addr(C), &[0xff; 20]), Verdict::default());
        }
    }

    #[test]
    fn validate_names_the_key() {
        assert!(AttackerConfig { modify: 0.5, strip: 0.5, ..Default::default() }.validate().is_ok());
        let e = AttackerConfig { modify: 0.6, strip: 0.6, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("modify + strip"), "{e}");
        let e = AttackerConfig { forge_kod: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("forge_kod"), "{e}");
    }
}
