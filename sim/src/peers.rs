//! Scripted peers: sans-IO responders that answer NTP client requests the
//! way a scenario's `role = "scripted"` host is told to.
//!
//! A [`ScriptedPeer`] does no I/O and reads no clock: the harness hands it
//! each request's bytes with the peer's own clock readings at reception and
//! at transmission, and sends whatever bytes come back. Randomness (for
//! `bad-version` and `garbage`) comes from a private stream seeded by the
//! caller, so a run replays exactly.
//!
//! Requests that are not an NTPv1–v4 client-mode packet of at least 48
//! octets get no answer, whatever the behaviour: a real server ignores them.

use crate::scenario::{Behavior, Malformation};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::short::NtpShort;
use ntplab_proto::wire::v4::{self, LeapIndicator, Mode, Packet, Repr};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Precision exponent of a scripted peer's replies (about 1 µs).
pub const PRECISION_LOG2: i8 = -20;

/// Reference ID of a scripted peer's replies above stratum 1 (TEST-NET-1).
pub const UPSTREAM_REFID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Length a `truncated` reply is cut to: one octet short of a header.
pub const TRUNCATED_LEN: usize = v4::HEADER_LEN - 1;

/// Longest `garbage` reply, octets.
pub const GARBAGE_LEN_MAX: usize = 96;

/// How long after its first reply a `second-reply` peer sends the second one.
pub const SECOND_REPLY_AFTER: Duration = Duration::from_millis(1);

/// How long after its reply an `unsolicited` peer sends the datagram that answers nothing.
pub const UNSOLICITED_AFTER: Duration = Duration::from_secs(1);

/// A scripted peer. See the module documentation for its contract.
#[derive(Debug, Clone)]
pub struct ScriptedPeer {
    behavior: Behavior,
    stratum: u8,
    rng: SplitMix64,
    /// The reply a `replay` peer sends next.
    previous: Option<Vec<u8>>,
    replies: u64,
}

impl ScriptedPeer {
    /// A peer with this behaviour; `stratum` (clamped to 1–15) goes into every
    /// reply but a kiss-o'-death, and `rng_seed` seeds its private random stream.
    pub fn new(behavior: Behavior, stratum: u8, rng_seed: u64) -> Self {
        ScriptedPeer { behavior, stratum: stratum.clamp(1, 15), rng: SplitMix64(rng_seed), previous: None, replies: 0 }
    }

    /// Its behaviour.
    pub fn behavior(&self) -> Behavior {
        self.behavior
    }

    /// Replies sent so far.
    pub fn replies(&self) -> u64 {
        self.replies
    }

    /// The reply to `request`, or `None` to stay silent. `rx_true` and
    /// `tx_true` are the peer's own clock readings when the request arrived
    /// and when the reply leaves (the harness's true time plus the peer's
    /// clock model; a scripted peer's idea of time, not necessarily true).
    pub fn respond(&mut self, request: &[u8], rx_true: NtpTime, tx_true: NtpTime) -> Option<Vec<u8>> {
        self.respond_all(request, rx_true, tx_true).into_iter().next().map(|(_, b)| b)
    }

    /// Every datagram the peer sends for `request`, each with its delay after
    /// the first: one reply for most behaviours, two for `second-reply` and
    /// `unsolicited`, none for `silent` and for what is not a request.
    pub fn respond_all(&mut self, request: &[u8], rx_true: NtpTime, tx_true: NtpTime) -> Vec<(Duration, Vec<u8>)> {
        let Some(req) = Packet::new_checked(request).ok().and_then(|p| Repr::parse(&p).ok()) else { return Vec::new() };
        if req.mode != Mode::Client || !(1..=4).contains(&req.version) {
            return Vec::new();
        }
        let reply = match self.behavior {
            Behavior::Silent => return Vec::new(),
            Behavior::Insane => {
                let good = self.good_reply(&req, rx_true, tx_true, 0.0);
                let bad = match self.replies % 4 {
                    0 => Repr { leap: LeapIndicator::Unsynchronized, ..good },
                    1 => Repr { stratum: 16, ..good },
                    2 => Repr { transmit_timestamp: ntplab_proto::time::NtpTimestamp::ZERO, ..good },
                    // Root distance δ/2 + ε = 1 + 15 s: at MAXDISP, rejected
                    // (δ + ε/2 would be 9.5 s and pass).
                    _ => Repr {
                        root_delay: ntplab_proto::wire::short::NtpShort::from_bits(2 << 16),
                        root_dispersion: ntplab_proto::wire::short::NtpShort::from_bits(15 << 16),
                        ..good
                    },
                };
                bad.to_bytes().to_vec()
            }
            Behavior::SecondReply => {
                let first = self.good_reply(&req, rx_true, tx_true, 0.0);
                let later = tx_true + NtpDuration::from_seconds_f64(SECOND_REPLY_AFTER.as_secs_f64());
                let second = Repr { transmit_timestamp: later.to_timestamp(), ..first };
                self.replies += 2;
                return vec![(Duration::ZERO, first.to_bytes().to_vec()), (SECOND_REPLY_AFTER, second.to_bytes().to_vec())];
            }
            Behavior::Unsolicited => {
                let good = self.good_reply(&req, rx_true, tx_true, 0.0);
                let later = tx_true + NtpDuration::from_seconds_f64(UNSOLICITED_AFTER.as_secs_f64());
                let origin = ntplab_proto::time::NtpTimestamp::from_bits(self.rng.next() | 1);
                let stray = Repr { origin_timestamp: origin, receive_timestamp: later.to_timestamp(), transmit_timestamp: later.to_timestamp(), ..good };
                self.replies += 2;
                return vec![(Duration::ZERO, good.to_bytes().to_vec()), (UNSOLICITED_AFTER, stray.to_bytes().to_vec())];
            }
            Behavior::ZeroOrigin => {
                let good = self.good_reply(&req, rx_true, tx_true, 0.0);
                Repr { origin_timestamp: ntplab_proto::time::NtpTimestamp::ZERO, ..good }.to_bytes().to_vec()
            }
            Behavior::BogusKiss { code } => {
                let kiss = kiss_reply(&req, code, rx_true, tx_true);
                // Any origin but the request's (and never zero).
                let bits = req.transmit_timestamp.to_bits() ^ (self.rng.next() | 1);
                let origin = ntplab_proto::time::NtpTimestamp::from_bits(if bits == 0 { 1 } else { bits });
                Repr { origin_timestamp: origin, ..kiss }.to_bytes().to_vec()
            }
            Behavior::Falseticker { offset_s } => self.good_reply(&req, rx_true, tx_true, offset_s).to_bytes().to_vec(),
            Behavior::Kiss { code } => kiss_reply(&req, code, rx_true, tx_true).to_bytes().to_vec(),
            Behavior::Replay => {
                let fresh = self.good_reply(&req, rx_true, tx_true, 0.0).to_bytes().to_vec();
                match self.previous.replace(fresh.clone()) {
                    Some(old) => old,
                    None => fresh,
                }
            }
            Behavior::Malformed { how } => {
                let good = self.good_reply(&req, rx_true, tx_true, 0.0);
                match how {
                    Malformation::Truncated => good.to_bytes()[..TRUNCATED_LEN].to_vec(),
                    Malformation::BadVersion => {
                        let version = if self.rng.next() & 1 == 0 { 0 } else { 7 };
                        Repr { version, ..good }.to_bytes().to_vec()
                    }
                    Malformation::BadEfLength => {
                        let mut b = good.to_bytes().to_vec();
                        // A Unique Identifier field (type 0x0104) claiming 256
                        // octets, of which only 28 follow.
                        b.extend_from_slice(&[0x01, 0x04, 0x01, 0x00]);
                        b.extend((0..24).map(|_| self.rng.next() as u8));
                        b
                    }
                    Malformation::Garbage => {
                        let len = 1 + (self.rng.next() % GARBAGE_LEN_MAX as u64) as usize;
                        (0..len).map(|_| self.rng.next() as u8).collect()
                    }
                }
            }
        };
        self.replies += 1;
        vec![(Duration::ZERO, reply)]
    }

    /// A correct server reply whose timestamps are off by `offset_s`.
    fn good_reply(&self, req: &Repr, rx: NtpTime, tx: NtpTime, offset_s: f64) -> Repr {
        let off = NtpDuration::from_seconds_f64(offset_s);
        let reference_id = if self.stratum == 1 { ReferenceId::from_ascii("GPS") } else { ReferenceId::from_ipv4(UPSTREAM_REFID) };
        let root_delay = if self.stratum == 1 { 0.0 } else { 1e-3 * f64::from(self.stratum - 1) };
        Repr {
            leap: LeapIndicator::NoWarning,
            version: req.version,
            mode: Mode::Server,
            stratum: self.stratum,
            poll: req.poll,
            precision: PRECISION_LOG2,
            root_delay: NtpShort::from_seconds_f64(root_delay),
            root_dispersion: NtpShort::from_seconds_f64(1e-4),
            reference_id,
            reference_timestamp: (tx + off + NtpDuration::from_seconds(-16)).to_timestamp(),
            origin_timestamp: req.transmit_timestamp,
            receive_timestamp: (rx + off).to_timestamp(),
            transmit_timestamp: (tx + off).to_timestamp(),
        }
    }
}

/// A kiss-o'-death: stratum 0, LI 3, the code as reference ID, origin copied.
fn kiss_reply(req: &Repr, code: ReferenceId, rx: NtpTime, tx: NtpTime) -> Repr {
    Repr {
        leap: LeapIndicator::Unsynchronized,
        version: req.version,
        mode: Mode::Server,
        stratum: 0,
        poll: req.poll,
        precision: PRECISION_LOG2,
        root_delay: NtpShort::from_bits(0),
        root_dispersion: NtpShort::from_bits(0),
        reference_id: code,
        reference_timestamp: ntplab_proto::time::NtpTimestamp::ZERO,
        origin_timestamp: req.transmit_timestamp,
        receive_timestamp: rx.to_timestamp(),
        transmit_timestamp: tx.to_timestamp(),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed private stream.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntplab_proto::time::NtpTimestamp;
    use ntplab_proto::wire::refid::KissCode;
    use ntplab_proto::wire::{parse_packet, Header};

    fn t(s: &str) -> NtpTime {
        NtpTime::parse_rfc3339(s).unwrap()
    }

    fn request(xmt: u64) -> Vec<u8> {
        Repr {
            leap: LeapIndicator::Unsynchronized,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::from_bits(0),
            root_dispersion: NtpShort::from_bits(0),
            reference_id: ReferenceId::NONE,
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: NtpTimestamp::from_bits(xmt),
        }
        .to_bytes()
        .to_vec()
    }

    fn header(bytes: &[u8]) -> Repr {
        match parse_packet(bytes).unwrap().header {
            Header::V4(h) => h,
            Header::V5(_) => panic!("v5"),
        }
    }

    const RX: &str = "2036-02-07T06:00:00.25Z";
    const TX: &str = "2036-02-07T06:00:00.25001Z";

    #[test]
    fn falseticker_is_correct_but_off() {
        let mut p = ScriptedPeer::new(Behavior::Falseticker { offset_s: 2.0 }, 3, 1);
        let reply = p.respond(&request(0x1234_5678_9abc_def0), t(RX), t(TX)).unwrap();
        assert_eq!(reply.len(), 48);
        let d = parse_packet(&reply).unwrap();
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        let h = header(&reply);
        assert_eq!((h.mode, h.stratum, h.version, h.poll, h.leap), (Mode::Server, 3, 4, 6, LeapIndicator::NoWarning));
        assert_eq!(h.origin_timestamp.to_bits(), 0x1234_5678_9abc_def0);
        assert_eq!(h.reference_id, ReferenceId::from_ipv4(UPSTREAM_REFID));
        let era = t(RX);
        let rx_off = h.receive_timestamp.resolve(era).duration_since(t(RX)).to_seconds_f64();
        let tx_off = h.transmit_timestamp.resolve(era).duration_since(t(TX)).to_seconds_f64();
        assert!((rx_off - 2.0).abs() < 1e-9 && (tx_off - 2.0).abs() < 1e-9, "{rx_off} {tx_off}");
        assert_eq!(p.replies(), 1);
        // Stratum 1: an ASCII source code.
        let mut p1 = ScriptedPeer::new(Behavior::Falseticker { offset_s: -0.5 }, 1, 1);
        let h1 = header(&p1.respond(&request(1), t(RX), t(TX)).unwrap());
        assert_eq!(h1.reference_id.ascii(), Some("GPS"));
        assert!(h1.transmit_timestamp.resolve(era) < t(TX));
    }

    #[test]
    fn kiss_carries_the_code_and_copies_origin() {
        let mut p = ScriptedPeer::new(Behavior::Kiss { code: ReferenceId::from_ascii("RATE") }, 2, 1);
        let reply = p.respond(&request(0xabcdef), t(RX), t(TX)).unwrap();
        let h = header(&reply);
        assert!(h.is_kiss_of_death());
        assert_eq!(h.reference_id.kiss_code(), KissCode::Rate);
        assert_eq!(h.leap, LeapIndicator::Unsynchronized);
        assert_eq!(h.origin_timestamp.to_bits(), 0xabcdef);
        assert!(parse_packet(&reply).unwrap().problems().is_empty());
    }

    #[test]
    fn replay_sends_the_previous_reply_verbatim() {
        let mut p = ScriptedPeer::new(Behavior::Replay, 1, 1);
        let first = p.respond(&request(1), t(RX), t(TX)).unwrap();
        assert_eq!(header(&first).origin_timestamp.to_bits(), 1, "the first request gets a correct reply");
        let second = p.respond(&request(2), t("2036-02-07T06:01:00Z"), t("2036-02-07T06:01:00.00001Z")).unwrap();
        assert_eq!(second, first, "verbatim");
        assert_ne!(header(&second).origin_timestamp.to_bits(), 2, "its origin no longer matches");
        let third = p.respond(&request(3), t("2036-02-07T06:02:00Z"), t("2036-02-07T06:02:00.00001Z")).unwrap();
        assert_eq!(header(&third).origin_timestamp.to_bits(), 2, "the reply meant for the second request");
    }

    #[test]
    fn malformed_replies() {
        let mk = |how| ScriptedPeer::new(Behavior::Malformed { how }, 1, 7);
        let r = mk(Malformation::Truncated).respond(&request(1), t(RX), t(TX)).unwrap();
        assert_eq!(r.len(), TRUNCATED_LEN);
        assert!(matches!(parse_packet(&r), Err(ntplab_proto::wire::Error::Truncated { .. })));

        let mut p = mk(Malformation::BadVersion);
        let mut seen = Vec::new();
        for i in 0..16 {
            let r = p.respond(&request(i + 1), t(RX), t(TX)).unwrap();
            let v = v4::version_of(&r).unwrap();
            assert!(v == 0 || v == 7, "version {v}");
            seen.push(v);
            assert!(!parse_packet(&r).unwrap().problems().is_empty());
        }
        assert!(seen.contains(&0) && seen.contains(&7), "{seen:?}");

        let r = mk(Malformation::BadEfLength).respond(&request(1), t(RX), t(TX)).unwrap();
        assert_eq!(r.len(), 48 + 28);
        let d = parse_packet(&r).unwrap();
        assert!(d.error().is_some(), "the field's length runs past the end");
        assert_eq!(header(&r).origin_timestamp.to_bits(), 1);

        let mut g = mk(Malformation::Garbage);
        let a = g.respond(&request(1), t(RX), t(TX)).unwrap();
        let b = g.respond(&request(1), t(RX), t(TX)).unwrap();
        assert!((1..=GARBAGE_LEN_MAX).contains(&a.len()) && (1..=GARBAGE_LEN_MAX).contains(&b.len()));
        assert_ne!(a, b);
        let again = mk(Malformation::Garbage).respond(&request(1), t(RX), t(TX)).unwrap();
        assert_eq!(a, again, "same seed, same bytes");
    }

    #[test]
    fn insane_replies_cycle_through_the_four_faults() {
        let mut p = ScriptedPeer::new(Behavior::Insane, 2, 1);
        let hs: Vec<Repr> = (1..=4).map(|i| header(&p.respond(&request(i), t(RX), t(TX)).unwrap())).collect();
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(h.origin_timestamp.to_bits(), i as u64 + 1, "each answers its request");
            assert_eq!(h.mode, Mode::Server);
        }
        assert_eq!((hs[0].leap, hs[0].stratum), (LeapIndicator::Unsynchronized, 2));
        assert_eq!((hs[1].leap, hs[1].stratum), (LeapIndicator::NoWarning, 16));
        assert!(hs[2].transmit_timestamp.is_zero() && hs[2].stratum == 2 && hs[2].leap == LeapIndicator::NoWarning);
        assert_eq!((hs[3].root_delay.to_bits(), hs[3].root_dispersion.to_bits()), (2 << 16, 15 << 16));
        assert!(!hs[3].transmit_timestamp.is_zero() && hs[3].stratum == 2, "only the root distance is insane");
    }

    #[test]
    fn second_and_unsolicited_replies_follow_a_good_one() {
        let mut p = ScriptedPeer::new(Behavior::SecondReply, 1, 1);
        let out = p.respond_all(&request(9), t(RX), t(TX));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[1].0), (Duration::ZERO, SECOND_REPLY_AFTER));
        let (a, b) = (header(&out[0].1), header(&out[1].1));
        assert_eq!((a.origin_timestamp.to_bits(), b.origin_timestamp.to_bits()), (9, 9), "both answer the request");
        assert_ne!(out[0].1, out[1].1, "different octets: not a duplicate");
        assert_eq!(p.replies(), 2);

        let mut u = ScriptedPeer::new(Behavior::Unsolicited, 1, 1);
        let out = u.respond_all(&request(9), t(RX), t(TX));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, UNSOLICITED_AFTER);
        let (a, b) = (header(&out[0].1), header(&out[1].1));
        assert_eq!(a.origin_timestamp.to_bits(), 9);
        assert!(b.origin_timestamp.to_bits() != 9 && !b.origin_timestamp.is_zero() && b.mode == Mode::Server);
    }

    #[test]
    fn zero_origin_and_bogus_kiss() {
        let h = header(&ScriptedPeer::new(Behavior::ZeroOrigin, 1, 1).respond(&request(5), t(RX), t(TX)).unwrap());
        assert!(h.origin_timestamp.is_zero() && h.stratum == 1 && !h.transmit_timestamp.is_zero());
        let mut k = ScriptedPeer::new(Behavior::BogusKiss { code: ReferenceId::from_ascii("DENY") }, 1, 1);
        for x in [5, 0xffff_ffff_ffff_fffe] {
            let h = header(&k.respond(&request(x), t(RX), t(TX)).unwrap());
            assert!(h.is_kiss_of_death() && h.reference_id.kiss_code() == KissCode::Deny);
            assert!(h.origin_timestamp.to_bits() != x && !h.origin_timestamp.is_zero());
        }
    }

    #[test]
    fn silent_and_non_requests() {
        let mut s = ScriptedPeer::new(Behavior::Silent, 1, 1);
        assert_eq!(s.respond(&request(1), t(RX), t(TX)), None);
        let mut f = ScriptedPeer::new(Behavior::Falseticker { offset_s: 0.0 }, 1, 1);
        assert_eq!(f.respond(&request(1)[..47], t(RX), t(TX)), None);
        assert_eq!(f.respond(&[], t(RX), t(TX)), None);
        let mut server_mode = request(1);
        server_mode[0] = (server_mode[0] & !7) | 4;
        assert_eq!(f.respond(&server_mode, t(RX), t(TX)), None);
        let mut v5 = request(1);
        v5[0] = (v5[0] & 0xc7) | (5 << 3);
        assert_eq!(f.respond(&v5, t(RX), t(TX)), None);
        assert_eq!(f.replies(), 0);
    }
}
