//! The NTPv4 probe cases: what each sends, what a conforming server does,
//! and the rule each verdict rests on.
//!
//! Every judge reads replies through bounds-checked accessors ([`header`],
//! [`ts`]) and never panics, whatever the server sent (fuzzed by
//! `conformance/fuzz`'s `probe_judge` target).

use super::{CaseDef, Finding, Gen, ReceivedDatagram, Step, StepRecord};
use ntplab_proto::time::{NtpDuration, NtpTime, NtpTimestamp};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::{LeapIndicator, Mode, Packet, Repr};

/// Name of the rate-limiting case (the only one a RATE KoD does not spoil).
pub const RATE_CASE: &str = "rate-limit-burst";

/// Requests in the rate-limiting burst (RFC 8633 §5.4; more than the usual
/// `burst 8` of ntpd and chrony, so a limiting server must refuse some).
pub const BURST_LEN: usize = 16;

/// An extension field type no registry assigns (not Autokey, NTS, NTPv5 or
/// experimental), used for the unknown-field cases.
pub const UNKNOWN_EF_TYPE: u16 = 0x1234;

/// Every NTPv4 case, in run order (the rate-limit burst last, so that a
/// limiting server's memory of it cannot spoil the others).
pub const NTPV4: &[CaseDef] = &[
    CaseDef {
        name: "client-mode",
        title: "three NTPv4 mode-3 requests: each answered once in mode 4, origin = request transmit, 0 < receive <= transmit",
        requirements: &["R5905-3-mode-map", "R5905-8-server-echo", "R5905-7.3-hdr48", "R5905-9.2-reply-addr"],
        plan: plan_client_mode,
        judge: judge_client_mode,
        steps_max: 1,
    },
    CaseDef {
        name: "versions-1-4",
        title: "mode-3 requests of versions 1, 2, 3 and 4: answered with the request's version (3 and 4 must be answered)",
        requirements: &["R5905-A.5.3-vn-copy", "R5905-9.2-version"],
        plan: plan_versions_1_4,
        judge: judge_versions_1_4,
        steps_max: 1,
    },
    CaseDef {
        name: "versions-0-5-6-7",
        title: "mode-3 requests of versions 0, 6 and 7 (and 5 in the NTPv4 layout): dropped as format errors",
        requirements: &["R5905-9.2-version"],
        plan: plan_versions_bad,
        judge: judge_versions_bad,
        steps_max: 1,
    },
    CaseDef {
        name: "modes",
        title: "modes 0, 2, 4 and 5 without an association: dropped; mode 1: answered in mode 2 or refused",
        requirements: &["R5905-9.2-mode-discard", "R5905-3-mode-map"],
        plan: plan_modes,
        judge: judge_modes,
        steps_max: 1,
    },
    CaseDef {
        name: "control-private",
        title: "a mode-6 READSTAT query and a mode-7 MON_GETLIST_1 (monlist) request: not answered by a default server",
        requirements: &["R8633-3.4-mode6", "R8633-3.4-mode7"],
        plan: plan_control_private,
        judge: judge_control_private,
        steps_max: 2,
    },
    CaseDef {
        name: "zero-transmit",
        title: "a request whose transmit timestamp is 0: dropped, or answered with a non-zero transmit timestamp",
        requirements: &["R5905-6-zero"],
        plan: plan_zero_transmit,
        judge: judge_zero_transmit,
        steps_max: 1,
    },
    CaseDef {
        name: "header-fields",
        title: "one request: stratum, LI, reference ID, reference timestamp, root delay and dispersion, precision consistent",
        requirements: &[
            "R5905-7.3-stratum-tx",
            "R5905-11.1-initial",
            "R5905-A.5.1.1-hdr-sanity",
            "R5905-7.3-refid-s1",
            "R5905-7.3-refid-s2",
            "R8633-5.2-noinit",
            "R4330-6-server-fields",
        ],
        plan: plan_one,
        judge: judge_header_fields,
        steps_max: 1,
    },
    CaseDef {
        name: "poll",
        title: "requests with poll 6, 0 and 30: the reply's poll echoes the request's or clamps it into a plausible range",
        requirements: &["R4330-6-server-fields"],
        plan: plan_poll,
        judge: judge_poll,
        steps_max: 1,
    },
    CaseDef {
        name: "no-amplification",
        title: "requests of 48, 112 and 1048 octets (with unknown extension fields): no reply longer than its request, at most one reply each",
        requirements: &["R-SRV-ratelimit"],
        plan: plan_no_amplification,
        judge: judge_no_amplification,
        steps_max: 1,
    },
    CaseDef {
        name: "unknown-extension",
        title: "a request with one unknown 32-octet extension field: the field is ignored (answered), or dropped by local policy",
        requirements: &["R7822-unknown-ef"],
        plan: plan_unknown_ef,
        judge: judge_unknown_ef,
        steps_max: 1,
    },
    CaseDef {
        name: "malformed-extensions",
        title: "extension areas of a too-short field, an unaligned length, a length past the end, a zero length: all dropped",
        requirements: &["R5905-9.2-ef-fuzz", "R7822-3-len-min"],
        plan: plan_malformed_ef,
        judge: judge_malformed_ef,
        steps_max: 1,
    },
    CaseDef {
        name: "legacy-mac-unknown-key",
        title: "requests with a 20-octet (MD5) and a 24-octet (SHA-1) MAC of a key the server cannot have: dropped, crypto-NAK, or an unauthenticated reply",
        requirements: &["R5905-9.2-crypto-nak"],
        plan: plan_mac,
        judge: judge_mac,
        steps_max: 1,
    },
    CaseDef {
        name: "truncated-and-unaligned",
        title: "datagrams of 47, 24 and 1 octets and of 50 octets (header + 2): dropped",
        requirements: &["R5905-7.3-hdr48"],
        plan: plan_truncated,
        judge: judge_truncated,
        steps_max: 4,
    },
    CaseDef {
        name: "oversized",
        title: "a 3000-octet request (header + one well-formed unknown extension field): dropped or answered, never with more octets",
        requirements: &["R-SRV-ratelimit"],
        plan: plan_oversized,
        judge: judge_oversized,
        steps_max: 1,
    },
    CaseDef {
        name: "replay",
        title: "the same request twice: the second is dropped, or answered with fresh receive and transmit timestamps",
        requirements: &["R9769-2-unique"],
        plan: plan_replay,
        judge: judge_replay,
        steps_max: 2,
    },
    CaseDef {
        name: "interleaved",
        title: "RFC 9769 interleaved exchange: detection, the previous response's transmit timestamp, one-shot use, basic fallback",
        requirements: &["R9769-2-server-detect", "R9769-2-one-shot", "R9769-2-fallback", "R9769-2-tx-ne-rx"],
        plan: plan_interleaved,
        judge: judge_interleaved,
        steps_max: 5,
    },
    CaseDef {
        name: "era",
        title: "a request whose transmit timestamp lies in era 1 (after 2036): origin echoed intact, the reply's timestamps in the probe's era",
        requirements: &["R5905-6-era-wrap", "R5905-8-server-echo"],
        plan: plan_era,
        judge: judge_era,
        steps_max: 1,
    },
    CaseDef {
        name: "leap-indicator",
        title: "one request: a leap second announced (LI 1 or 2) only during the last day of a month",
        requirements: &["R8633-3.7-last-day"],
        plan: plan_one,
        judge: judge_leap,
        steps_max: 1,
    },
    CaseDef {
        name: RATE_CASE,
        title: "a bounded burst of 16 back-to-back requests: a limiting server refuses some, by dropping or by well-formed RATE KoDs that are themselves limited",
        requirements: &["R-SRV-ratelimit", "R5905-7.4-kod-format"],
        plan: plan_burst,
        judge: judge_burst,
        steps_max: 1,
    },
];

// ---------------------------------------------------------------------------
// Building requests.

/// A 48-octet request: LI 0, the given version and mode, poll 6, precision
/// -20, the given transmit timestamp, everything else zero.
pub fn request(version: u8, mode: u8, tx: NtpTimestamp) -> Vec<u8> {
    let repr = Repr {
        leap: LeapIndicator::NoWarning,
        version,
        mode: Mode::from_bits(mode),
        stratum: 0,
        poll: 6,
        precision: -20,
        root_delay: Default::default(),
        root_dispersion: Default::default(),
        reference_id: ReferenceId::NONE,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::ZERO,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: tx,
    };
    repr.to_bytes().to_vec()
}

/// An NTPv4 client request with a fresh transmit timestamp.
pub fn client(gen: &mut Gen) -> Vec<u8> {
    request(4, 3, gen.transmit())
}

/// Appends an extension field of `total` octets (type, length, zero value).
fn with_ef(mut req: Vec<u8>, field_type: u16, total: usize) -> Vec<u8> {
    req.extend_from_slice(&field_type.to_be_bytes());
    req.extend_from_slice(&(total.min(0xFFFF) as u16).to_be_bytes());
    req.resize(req.len() + total.saturating_sub(4), 0);
    req
}

/// Appends raw octets.
fn with_tail(mut req: Vec<u8>, tail: &[u8]) -> Vec<u8> {
    req.extend_from_slice(tail);
    req
}

// ---------------------------------------------------------------------------
// Reading replies (never panicking).

/// The NTPv4-layout header of a datagram, if it holds 48 octets.
pub fn header(b: &[u8]) -> Option<Repr> {
    Packet::new_checked(b).ok().and_then(|p| Repr::parse(&p).ok())
}

/// The 64-bit timestamp at `offset`, if present.
pub fn ts(b: &[u8], offset: usize) -> Option<NtpTimestamp> {
    let s: [u8; 8] = b.get(offset..offset + 8)?.try_into().ok()?;
    Some(NtpTimestamp::from_bits(u64::from_be_bytes(s)))
}

fn tx_of(b: &[u8]) -> Option<NtpTimestamp> {
    ts(b, 40)
}

/// `later - earlier` in 64-bit two's complement (RFC 5905 §6), seconds.
fn diff_s(later: NtpTimestamp, earlier: NtpTimestamp) -> f64 {
    later.wrapping_sub(earlier).to_seconds_f64()
}

fn step(history: &[StepRecord], i: usize) -> Option<&StepRecord> {
    history.get(i)
}

fn hexts(t: NtpTimestamp) -> String {
    format!("{:016x}", t.to_bits())
}

/// Whether a header says "synchronized": LI not 3, stratum 1-15.
fn synchronized(h: &Repr) -> bool {
    h.leap != LeapIndicator::Unsynchronized && (1..=15).contains(&h.stratum)
}

/// Checks of a time reply to `req` common to several cases: mode 4, the
/// request's version, origin = request transmit, receive and transmit non-zero
/// with receive <= transmit. Returns the problems found.
fn time_reply_problems(req: &[u8], reply: &ReceivedDatagram) -> Vec<String> {
    let mut p = Vec::new();
    let Some(h) = header(&reply.bytes) else {
        return vec![format!("the reply is {} octets, shorter than a 48-octet header", reply.bytes.len())];
    };
    if h.mode != Mode::Server {
        p.push(format!("reply mode {} ({}), not 4 (server)", h.mode.to_bits(), h.mode.name()));
    }
    if let Some(rq) = header(req) {
        if h.version != rq.version {
            p.push(format!("reply version {} to a version-{} request", h.version, rq.version));
        }
        if h.origin_timestamp != rq.transmit_timestamp {
            p.push(format!("origin {} is not the request's transmit {}", hexts(h.origin_timestamp), hexts(rq.transmit_timestamp)));
        }
    }
    if h.receive_timestamp.is_zero() || h.transmit_timestamp.is_zero() {
        p.push("receive or transmit timestamp is 0".into());
    } else if diff_s(h.transmit_timestamp, h.receive_timestamp) < 0.0 {
        p.push(format!(
            "receive {} is later than transmit {} by {:.9} s",
            hexts(h.receive_timestamp),
            hexts(h.transmit_timestamp),
            diff_s(h.receive_timestamp, h.transmit_timestamp)
        ));
    }
    p
}

// ---------------------------------------------------------------------------
// client-mode

fn plan_client_mode(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::answered(vec![client(gen), client(gen), client(gen)]))
}

fn judge_client_mode(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut out = Vec::new();
    let mut mode_bad = Vec::new();
    let mut echo_bad = Vec::new();
    let mut len_bad = Vec::new();
    let mut answered = 0;
    for (i, sent) in s.sent.iter().enumerate() {
        let replies = s.replies_to(i);
        if replies.is_empty() {
            continue;
        }
        answered += 1;
        if replies.len() > 1 {
            echo_bad.push(format!("request {}: {} replies to one request", i + 1, replies.len()));
        }
        for r in replies {
            let problems = time_reply_problems(&sent.bytes, r);
            for p in problems {
                if p.starts_with("reply mode") {
                    mode_bad.push(format!("request {}: {p}", i + 1));
                } else {
                    echo_bad.push(format!("request {}: {p}", i + 1));
                }
            }
            if r.bytes.len() < 48 || r.bytes.len() % 4 != 0 {
                len_bad.push(format!("request {}: reply of {} octets", i + 1, r.bytes.len()));
            }
        }
    }
    let unmatched = s.replies.len() - s.replies.iter().filter(|r| s.sent.iter().any(|q| q.bytes.get(40..48) == r.bytes.get(24..32))).count();
    if answered == 0 {
        let why = if unmatched > 0 {
            format!("{unmatched} datagram(s) came back, none with a request's transmit timestamp as origin")
        } else {
            format!("none of {} NTPv4 client requests was answered", s.sent.len())
        };
        out.push(Finding::fail("R5905-3-mode-map", "RFC 5905 §9.2: a client-mode (3) request is answered in server mode (4)", why.clone()));
        out.push(Finding::fail("R5905-8-server-echo", "RFC 5905 §8: the server copies the request's transmit timestamp into the reply's origin", why));
        return out;
    }
    out.push(Finding::check(
        "R5905-3-mode-map",
        mode_bad.is_empty(),
        "RFC 5905 §9.2: a client-mode (3) request is answered in server mode (4)",
        format!("{answered} of {} requests answered in mode 4", s.sent.len()),
        mode_bad.join("; "),
    ));
    out.push(Finding::check(
        "R5905-8-server-echo",
        echo_bad.is_empty(),
        "RFC 5905 §8: origin = the request's transmit timestamp (all 64 bits); receive = arrival, transmit = departure (receive <= transmit)",
        format!("{answered} replies: origin = request transmit, 0 < receive <= transmit"),
        echo_bad.join("; "),
    ));
    out.push(Finding::check(
        "R5905-7.3-hdr48",
        len_bad.is_empty(),
        "RFC 5905 §7.3: a packet is a 48-octet header plus 32-bit-aligned extension fields",
        "every reply is at least 48 octets and a multiple of 4",
        len_bad.join("; "),
    ));
    out.push(Finding::pass(
        "R5905-9.2-reply-addr",
        "replies came from the address and port the requests went to (the probe's socket is connected: the kernel passes on nothing else)",
    ));
    out
}

// ---------------------------------------------------------------------------
// versions

fn plan_versions_1_4(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::answered((1..=4).map(|v| request(v, 3, gen.transmit())).collect()))
}

fn judge_versions_1_4(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut copy_bad = Vec::new();
    let mut seen = Vec::new();
    let mut unanswered = Vec::new();
    for (i, sent) in s.sent.iter().enumerate() {
        let v = header(&sent.bytes).map_or(0, |h| h.version);
        let replies = s.replies_to(i);
        if replies.is_empty() {
            unanswered.push(v);
        }
        for r in replies {
            match header(&r.bytes) {
                Some(h) if h.version == v => seen.push(v),
                Some(h) => copy_bad.push(format!("version-{v} request answered with version {}", h.version)),
                None => copy_bad.push(format!("version-{v} request answered with {} octets", r.bytes.len())),
            }
        }
    }
    let mut out = Vec::new();
    if seen.is_empty() && copy_bad.is_empty() {
        out.push(Finding::fail("R5905-9.2-version", "RFC 5905 §9.2: versions 1-4 are accepted", "no request of versions 1-4 was answered"));
        return out;
    }
    out.push(Finding::check(
        "R5905-A.5.3-vn-copy",
        copy_bad.is_empty(),
        "RFC 5905 App. A.5.3: the reply carries the request's version number",
        format!("versions {seen:?} answered with the request's version"),
        copy_bad.join("; "),
    ));
    let must_answer: Vec<u8> = unanswered.iter().copied().filter(|v| *v >= 3).collect();
    out.push(Finding::check(
        "R5905-9.2-version",
        must_answer.is_empty(),
        "RFC 5905 §9.2: versions 1-4 are accepted (NTPv3 and NTPv4 clients are served)",
        if unanswered.is_empty() {
            "versions 1-4 all answered".to_string()
        } else {
            format!("versions 3 and 4 answered; versions {unanswered:?} not answered (older versions may be refused)")
        },
        format!("versions {must_answer:?} not answered"),
    ));
    out
}

fn plan_versions_bad(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::silent([0, 5, 6, 7].iter().map(|&v| request(v, 3, gen.transmit())).collect()))
}

fn judge_versions_bad(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut bad = Vec::new();
    let mut v5 = None;
    for (i, sent) in s.sent.iter().enumerate() {
        let v = header(&sent.bytes).map_or(0, |h| h.version);
        for r in s.replies_to(i) {
            let rv = r.bytes.first().map_or(0, |b| (b >> 3) & 7);
            if v == 5 && rv == 5 {
                v5 = Some(r.bytes.len());
            } else {
                bad.push(format!("version-{v} request answered ({} octets, version {rv})", r.bytes.len()));
            }
        }
    }
    // Replies that match no request (a server that zeroes the origin) are
    // answers to one of these format errors all the same.
    let matched: usize = (0..s.sent.len()).map(|i| s.replies_to(i).len()).sum();
    if s.replies.len() > matched {
        bad.push(format!("{} unmatched datagram(s) came back", s.replies.len() - matched));
    }
    let mut out = vec![Finding::check(
        "R5905-9.2-version",
        bad.is_empty(),
        "RFC 5905 §9.2: a version of 0 or above the server's is a format error: the packet is discarded",
        "versions 0, 6 and 7 dropped",
        bad.join("; "),
    )];
    if let Some(len) = v5 {
        out.push(Finding::not_applicable(
            "R5905-9.2-version",
            format!("a version-5 request got a version-5 reply ({len} octets): the server speaks NTPv5, judged by the ntpv5 group"),
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// modes

fn plan_modes(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::silent([0, 1, 2, 4, 5].iter().map(|&m| request(4, m, gen.transmit())).collect()))
}

fn judge_modes(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut discard_bad = Vec::new();
    let mut map_bad = Vec::new();
    let mut sym = "mode 1 (symmetric active) refused: no reply".to_string();
    for (i, sent) in s.sent.iter().enumerate() {
        let m = sent.bytes.first().map_or(0, |b| b & 7);
        for r in s.replies_to(i) {
            let rm = r.bytes.first().map_or(0, |b| b & 7);
            match m {
                0 | 4 => discard_bad.push(format!("mode-{m} request answered in mode {rm}")),
                1 if rm == 2 => sym = "mode 1 (symmetric active) answered in mode 2 (symmetric passive)".into(),
                _ => map_bad.push(format!("mode-{m} request answered in mode {rm}")),
            }
        }
    }
    vec![
        Finding::check(
            "R5905-9.2-mode-discard",
            discard_bad.is_empty(),
            "RFC 5905 §9.2: mode 0 and mode 4 packets matching no association are discarded without a reply",
            "modes 0 and 4 dropped",
            discard_bad.join("; "),
        ),
        Finding::check(
            "R5905-3-mode-map",
            map_bad.is_empty(),
            "RFC 5905 §9.2 (dispatch table): symmetric active is answered in symmetric passive or refused; passive and broadcast without an association are discarded",
            format!("modes 2 and 5 dropped; {sym}"),
            map_bad.join("; "),
        ),
    ]
}

// ---------------------------------------------------------------------------
// control and private

/// A mode-6 READSTAT request (RFC 1305 App. B / RFC 9327): 12 octets.
pub const MODE6_READSTAT: [u8; 12] = [0x16, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];

/// A mode-7 MON_GETLIST_1 request (ntpdc monlist, the classic amplifier): 48 octets.
pub fn mode7_monlist() -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[..4].copy_from_slice(&[0x17, 0x00, 0x03, 0x2a]);
    b
}

fn plan_control_private(history: &[StepRecord], _gen: &mut Gen) -> Option<Step> {
    match history.len() {
        0 => Some(Step::silent(vec![MODE6_READSTAT.to_vec()])),
        1 => Some(Step::silent(vec![mode7_monlist()])),
        _ => None,
    }
}

fn judge_control_private(history: &[StepRecord]) -> Vec<Finding> {
    let mut out = Vec::new();
    let describe = |s: &StepRecord| {
        let sent: usize = s.sent.iter().map(|d| d.bytes.len()).sum();
        let got: usize = s.replies.iter().map(|d| d.bytes.len()).sum();
        format!("{} reply datagram(s), {got} octets, to a {sent}-octet request", s.replies.len())
    };
    let rules = [
        ("R8633-3.4-mode6", "RFC 8633 §3.4: servers block mode-6 control queries (anything beyond basic monitoring needs authentication)", "mode-6 READSTAT query"),
        ("R8633-3.4-mode7", "RFC 8633 §3.4: amplifying legacy mode-7 queries (monlist) are not answered", "mode-7 monlist request"),
    ];
    for (s, (id, rule, what)) in history.iter().zip(rules) {
        out.push(Finding::check(id, s.replies.is_empty(), rule, format!("the {what} was not answered"), format!("the {what} was answered: {}", describe(s))));
    }
    out
}

// ---------------------------------------------------------------------------
// zero transmit

fn plan_zero_transmit(history: &[StepRecord], _gen: &mut Gen) -> Option<Step> {
    // Answered or not, both conform: wait the whole timeout.
    history.is_empty().then(|| Step::silent(vec![request(4, 3, NtpTimestamp::ZERO)]))
}

fn judge_zero_transmit(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let Some(r) = s.replies.first() else {
        return vec![Finding::pass("R5905-6-zero", "dropped (a zero transmit timestamp means \"unknown\")")];
    };
    let zero_tx = tx_of(&r.bytes).is_none_or(|t| t.is_zero());
    vec![Finding::check(
        "R5905-6-zero",
        !zero_tx && s.replies.len() == 1,
        "RFC 5905 §6, §8: timestamp 0 means unknown; a reply's transmit timestamp is never 0",
        "answered with a non-zero transmit timestamp",
        format!("{} reply datagram(s); the first's transmit timestamp is zero or missing", s.replies.len()),
    )]
}

// ---------------------------------------------------------------------------
// header fields

fn plan_one(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::answered(vec![client(gen)]))
}

/// The first reply to request 0 of step 0, parsed.
fn first_reply(history: &[StepRecord]) -> Option<(Repr, &ReceivedDatagram)> {
    let r = step(history, 0)?.replies_to(0).into_iter().next()?;
    Some((header(&r.bytes)?, r))
}

fn no_reply(ids: &[&'static str]) -> Vec<Finding> {
    ids.iter().map(|id| Finding::not_exercised(id, "no reply to the request")).collect()
}

fn judge_header_fields(history: &[StepRecord]) -> Vec<Finding> {
    let Some((h, _)) = first_reply(history) else {
        return no_reply(&["R5905-7.3-stratum-tx", "R5905-11.1-initial", "R5905-A.5.1.1-hdr-sanity", "R5905-7.3-refid-s1", "R5905-7.3-refid-s2", "R8633-5.2-noinit", "R4330-6-server-fields"]);
    };
    let mut out = Vec::new();
    let li = h.leap.to_bits();
    let refid = h.reference_id;
    let refid_text = match refid.ascii() {
        Some(a) if !a.is_empty() => format!("\"{a}\""),
        _ => refid.to_ipv4().to_string(),
    };
    out.push(Finding::check(
        "R5905-7.3-stratum-tx",
        h.stratum <= 15,
        "RFC 5905 §7.3: stratum 16 (unsynchronized) is sent as 0; 17-255 are reserved",
        format!("stratum {}", h.stratum),
        format!("stratum {} on the wire", h.stratum),
    ));
    let unsync_li = h.leap == LeapIndicator::Unsynchronized;
    if unsync_li || h.stratum == 0 {
        out.push(Finding::check(
            "R5905-11.1-initial",
            unsync_li && h.stratum == 0,
            "RFC 5905 §11.1, §7.3: an unsynchronized server sends LI 3 and stratum 0",
            format!("unsynchronized: LI 3, stratum 0, reference ID {refid_text}"),
            format!("LI {li} with stratum {}: LI 3 and stratum 0 go together", h.stratum),
        ));
    } else {
        out.push(Finding::not_applicable(
            "R5905-11.1-initial",
            format!("the server is synchronized (LI {li}, stratum {}): its unsynchronized state cannot be seen", h.stratum),
        ));
    }
    if synchronized(&h) {
        let rd = h.root_delay.to_seconds_f64();
        let rdisp = h.root_dispersion.to_seconds_f64();
        let mut bad = Vec::new();
        if rd / 2.0 + rdisp >= 16.0 {
            bad.push(format!("root delay/2 + root dispersion = {:.6} s >= MAXDISP 16 s", rd / 2.0 + rdisp));
        }
        if h.reference_timestamp.is_zero() {
            bad.push("reference timestamp 0 while synchronized".into());
        } else if diff_s(h.transmit_timestamp, h.reference_timestamp) < 0.0 {
            bad.push(format!("reference timestamp {} is later than transmit {}", hexts(h.reference_timestamp), hexts(h.transmit_timestamp)));
        }
        out.push(Finding::check(
            "R5905-A.5.1.1-hdr-sanity",
            bad.is_empty(),
            "RFC 5905 App. A.5.1.1: a synchronized reply has root delay/2 + root dispersion < 16 s and a reference timestamp not later than its transmit timestamp",
            format!("root delay {rd:.6} s, root dispersion {rdisp:.6} s, reference timestamp set and not later than transmit"),
            bad.join("; "),
        ));
    } else {
        out.push(Finding::not_applicable("R5905-A.5.1.1-hdr-sanity", format!("the server is unsynchronized (LI {li}, stratum {})", h.stratum)));
    }
    if h.stratum == 1 {
        let b = refid.0;
        let end = b.iter().position(|&x| x == 0).unwrap_or(4);
        let ok = end > 0 && b[..end].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) && b[end..].iter().all(|&x| x == 0);
        out.push(Finding::check(
            "R5905-7.3-refid-s1",
            ok,
            "RFC 5905 §7.3: at stratum 1 the reference ID is a left-justified, zero-padded ASCII clock code (e.g. \"GPS\", \"LOCL\")",
            format!("stratum 1, reference ID {refid_text}"),
            format!("stratum 1 with reference ID {:02x}{:02x}{:02x}{:02x} ({}): not an ASCII clock code", b[0], b[1], b[2], b[3], refid.to_ipv4()),
        ));
    } else {
        out.push(Finding::not_applicable("R5905-7.3-refid-s1", format!("stratum {}, not 1", h.stratum)));
    }
    if (2..=15).contains(&h.stratum) {
        out.push(Finding::check(
            "R5905-7.3-refid-s2",
            refid != ReferenceId::NONE,
            "RFC 5905 §7.3: above stratum 1 the reference ID identifies the upstream server",
            format!("stratum {}, reference ID {refid_text} (which server it names cannot be seen from outside)", h.stratum),
            format!("stratum {} with reference ID 0", h.stratum),
        ));
    } else {
        out.push(Finding::not_applicable("R5905-7.3-refid-s2", format!("stratum {}, not 2-15", h.stratum)));
    }
    out.push(Finding::check(
        "R8633-5.2-noinit",
        &refid.0 != b"INIT",
        "RFC 8633 §5.2: do not put \"INIT\" in the reference ID",
        format!("reference ID {refid_text}, not INIT"),
        "reference ID INIT",
    ));
    out.push(Finding::check(
        "R4330-6-server-fields",
        (-32..=-4).contains(&h.precision),
        "RFC 5905 §7.3: precision is log2 of the clock's resolution; a time server's lies between 2^-32 s and 2^-4 s",
        format!("precision 2^{} s", h.precision),
        format!("precision 2^{} s is implausible", h.precision),
    ));
    out
}

// ---------------------------------------------------------------------------
// poll

/// Poll exponents the poll case sends.
pub const POLLS: [i8; 3] = [6, 0, 30];

fn plan_poll(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| {
        Step::answered(
            POLLS
                .iter()
                .map(|&p| {
                    let mut r = client(gen);
                    r[2] = p as u8;
                    r
                })
                .collect(),
        )
    })
}

fn judge_poll(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for (i, sent) in s.sent.iter().enumerate() {
        let asked = sent.bytes.get(2).map_or(0, |&b| b as i8);
        for r in s.replies_to(i) {
            let Some(h) = header(&r.bytes) else { continue };
            let got = h.poll;
            // Echoed, or clamped into a range [lo, hi] with MINPOLL-like lo in
            // 1..=6 and MAXPOLL-like hi in 10..=17.
            let ok = got == asked || (asked < 6 && (1..=6).contains(&got)) || (asked > 10 && (10..=17).contains(&got)) || (asked == 6 && got == 6);
            seen.push(format!("{asked} -> {got}"));
            if !ok {
                bad.push(format!("request poll {asked} answered with poll {got}"));
            }
        }
    }
    if seen.is_empty() {
        return vec![Finding::not_exercised("R4330-6-server-fields", "no reply to the poll requests")];
    }
    vec![Finding::check(
        "R4330-6-server-fields",
        bad.is_empty(),
        "RFC 4330 §5, RFC 5905 §7.3: the server copies the request's poll (or clamps it to its MINPOLL/MAXPOLL)",
        format!("poll echoed or clamped: {}", seen.join(", ")),
        bad.join("; "),
    )]
}

// ---------------------------------------------------------------------------
// amplification and extension fields

fn plan_no_amplification(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::answered(vec![client(gen), with_ef(client(gen), UNKNOWN_EF_TYPE, 64), with_ef(client(gen), UNKNOWN_EF_TYPE, 1000)]))
}

/// Replies longer than what they answer, or more replies than requests.
fn amplification(s: &StepRecord) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, sent) in s.sent.iter().enumerate() {
        let replies = s.replies_to(i);
        if replies.len() > 1 {
            bad.push(format!("{} replies to one request", replies.len()));
        }
        for r in replies {
            if r.bytes.len() > sent.bytes.len() {
                bad.push(format!("a {}-octet reply to a {}-octet request", r.bytes.len(), sent.bytes.len()));
            }
        }
    }
    let sent: usize = s.sent.iter().map(|d| d.bytes.len()).sum();
    let got: usize = s.replies.iter().map(|d| d.bytes.len()).sum();
    if got > sent {
        bad.push(format!("{got} octets back for {sent} sent"));
    }
    if s.replies.len() > s.sent.len() {
        bad.push(format!("{} datagrams back for {} sent", s.replies.len(), s.sent.len()));
    }
    bad
}

const AMP_RULE: &str = "RFC 8633 §3.4, RFC 7822 §6: a server never sends more or larger packets than it received (no amplification)";

fn judge_no_amplification(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    if s.replies.is_empty() {
        return vec![Finding::not_exercised("R-SRV-ratelimit", "no reply to any request")];
    }
    let bad = amplification(s);
    let sizes: Vec<String> = (0..s.sent.len())
        .map(|i| format!("{} -> {}", s.sent[i].bytes.len(), s.replies_to(i).first().map_or("none".to_string(), |r| r.bytes.len().to_string())))
        .collect();
    vec![Finding::check("R-SRV-ratelimit", bad.is_empty(), AMP_RULE, format!("request -> reply octets: {}", sizes.join(", ")), bad.join("; "))]
}

/// The no-amplification rule over every step of a run (all cases): a case of
/// its own, `all-exchanges`, appended by the driver.
pub fn amplification_over(steps: &[&StepRecord]) -> Vec<Finding> {
    let mut bad = Vec::new();
    let (mut sent, mut got, mut replies) = (0usize, 0usize, 0usize);
    for s in steps {
        sent += s.sent.iter().map(|d| d.bytes.len()).sum::<usize>();
        got += s.replies.iter().map(|d| d.bytes.len()).sum::<usize>();
        replies += s.replies.len();
        bad.extend(amplification(s));
    }
    if replies == 0 {
        return vec![Finding::not_exercised("R-SRV-ratelimit", "no replies in the whole run")];
    }
    vec![Finding::check("R-SRV-ratelimit", bad.is_empty(), AMP_RULE, format!("over the run: {got} octets in {replies} replies for {sent} octets sent, no reply longer than its request"), bad.join("; "))]
}

fn plan_unknown_ef(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    // A server may drop it by local policy: wait the whole timeout if so.
    history.is_empty().then(|| Step::answered(vec![with_ef(client(gen), UNKNOWN_EF_TYPE, 32)]))
}

fn judge_unknown_ef(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let Some(sent) = s.sent.first() else { return Vec::new() };
    let replies = s.replies_to(0);
    let Some(r) = replies.first() else {
        return vec![Finding::not_applicable("R7822-unknown-ef", "dropped: RFC 7822 §3 lets local policy drop a packet with an unknown extension field")];
    };
    let problems = time_reply_problems(&sent.bytes, r);
    vec![Finding::check(
        "R7822-unknown-ef",
        problems.is_empty(),
        "RFC 7822 §3: an unknown extension field is ignored (the request is served as if it were absent)",
        format!("answered ({} octets): the unknown field was ignored", r.bytes.len()),
        problems.join("; "),
    )]
}

/// The malformed extension areas, each after a fresh 48-octet header.
pub fn malformed_tails() -> Vec<(&'static str, Vec<u8>)> {
    let t = UNKNOWN_EF_TYPE.to_be_bytes();
    let mut long_claim = vec![t[0], t[1], 0x00, 0x40];
    long_claim.resize(32, 0);
    let mut unaligned = vec![t[0], t[1], 0x00, 0x22];
    unaligned.resize(36, 0);
    let mut zero = vec![t[0], t[1], 0x00, 0x00];
    zero.resize(32, 0);
    vec![
        ("an 8-octet field (below the 16-octet minimum)", vec![t[0], t[1], 0x00, 0x08, 0, 0, 0, 0]),
        ("a field whose length (34) is not a multiple of 4", unaligned),
        ("a field claiming 64 octets with 32 present", long_claim),
        ("a field of length 0", zero),
    ]
}

fn plan_malformed_ef(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::silent(malformed_tails().into_iter().map(|(_, tail)| with_tail(client(gen), &tail)).collect()))
}

fn judge_malformed_ef(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let tails = malformed_tails();
    let mut bad = Vec::new();
    let mut short_bad = false;
    for i in 0..s.sent.len() {
        let n = s.replies_to(i).len();
        if n > 0 {
            bad.push(format!("{} answered", tails.get(i).map_or("a malformed request", |t| t.0)));
            short_bad |= i == 0;
        }
    }
    let matched: usize = (0..s.sent.len()).map(|i| s.replies_to(i).len()).sum();
    if s.replies.len() > matched {
        bad.push(format!("{} unmatched datagram(s) came back", s.replies.len() - matched));
    }
    vec![
        Finding::check(
            "R5905-9.2-ef-fuzz",
            bad.is_empty(),
            "RFC 5905 §9.2, RFC 7822 §3: format checks include extension field syntax; a malformed extension area is discarded",
            format!("all {} malformed extension areas dropped", s.sent.len()),
            bad.join("; "),
        ),
        Finding::check(
            "R7822-3-len-min",
            !short_bad,
            "RFC 7822 §3: an extension field is at least 16 octets and a multiple of 4",
            "the 8-octet field was refused",
            "a request with an 8-octet extension field was answered",
        ),
    ]
}

fn plan_mac(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| {
        let mut md5 = vec![0x00, 0x00, 0xA5, 0xA5];
        let mut sha1 = vec![0x00, 0x00, 0x5A, 0x5A];
        for _ in 0..4 {
            md5.extend_from_slice(&(gen.next_u64() as u32).to_be_bytes());
        }
        for _ in 0..5 {
            sha1.extend_from_slice(&(gen.next_u64() as u32).to_be_bytes());
        }
        // Dropping is allowed: wait the whole timeout.
        Step::silent(vec![with_tail(client(gen), &md5), with_tail(client(gen), &sha1)])
    })
}

fn judge_mac(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for (i, sent) in s.sent.iter().enumerate() {
        for r in s.replies_to(i) {
            let tail = r.bytes.get(48..).unwrap_or(&[]);
            match tail.len() {
                0 => seen.push("an unauthenticated reply".to_string()),
                4 if tail == [0, 0, 0, 0] => seen.push("a crypto-NAK".to_string()),
                _ if tail.len() >= 20 && tail.get(..4) == sent.bytes.get(48..52) => bad.push(format!(
                    "a reply with a {}-octet MAC under the request's key {:02x?} (which the server cannot hold)",
                    tail.len(),
                    tail.get(..4).unwrap_or(&[])
                )),
                n => seen.push(format!("a reply with {n} octets after the header")),
            }
        }
    }
    let what = if seen.is_empty() { "both requests dropped".to_string() } else { seen.join(", ") };
    vec![Finding::check(
        "R5905-9.2-crypto-nak",
        bad.is_empty(),
        "RFC 5905 §9.2: a request failing authentication is dropped or answered with a crypto-NAK, never with a MAC under that key",
        what,
        bad.join("; "),
    )]
}

// ---------------------------------------------------------------------------
// truncated, unaligned, oversized

fn plan_truncated(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    let full = client(gen);
    let d = match history.len() {
        0 => full[..47].to_vec(),
        1 => full[..24].to_vec(),
        2 => full[..1].to_vec(),
        3 => with_tail(full, &[0, 0]),
        _ => return None,
    };
    Some(Step::silent(vec![d]))
}

fn judge_truncated(history: &[StepRecord]) -> Vec<Finding> {
    let mut bad = Vec::new();
    for s in history {
        if !s.replies.is_empty() {
            bad.push(format!("a {}-octet datagram was answered", s.sent.first().map_or(0, |d| d.bytes.len())));
        }
    }
    if history.is_empty() {
        return Vec::new();
    }
    vec![Finding::check(
        "R5905-7.3-hdr48",
        bad.is_empty(),
        "RFC 5905 §7.3, §9.2: a packet shorter than the 48-octet header or not 32-bit aligned fails the format checks and is discarded",
        "datagrams of 47, 24, 1 and 50 octets dropped",
        bad.join("; "),
    )]
}

fn plan_oversized(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::silent(vec![with_ef(client(gen), UNKNOWN_EF_TYPE, 3000 - 48)]))
}

fn judge_oversized(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let bad = amplification(s);
    let what = match s.replies.first() {
        None => "the 3000-octet request was dropped".to_string(),
        Some(r) => format!("the 3000-octet request was answered with {} octets", r.bytes.len()),
    };
    vec![Finding::check("R-SRV-ratelimit", bad.is_empty(), AMP_RULE, what, bad.join("; "))]
}

// ---------------------------------------------------------------------------
// replay

fn plan_replay(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    match history.len() {
        0 => Some(Step::answered(vec![client(gen)])),
        1 => history[0].sent.first().map(|d| Step::answered(vec![d.bytes.clone()])),
        _ => None,
    }
}

fn judge_replay(history: &[StepRecord]) -> Vec<Finding> {
    let first = history.first().and_then(|s| s.replies_to(0).into_iter().next()).and_then(|r| header(&r.bytes));
    let second = history.get(1).and_then(|s| s.replies_to(0).into_iter().next()).and_then(|r| header(&r.bytes));
    match (first, second) {
        (None, _) => vec![Finding::not_exercised("R9769-2-unique", "no reply to the first request")],
        (Some(_), None) => vec![Finding::pass("R9769-2-unique", "the repeated request was dropped")],
        (Some(a), Some(b)) => vec![Finding::check(
            "R9769-2-unique",
            a.receive_timestamp != b.receive_timestamp && a.transmit_timestamp != b.transmit_timestamp,
            "RFC 9769 §2: receive and transmit timestamps handed out are unique (a replayed request gets fresh ones)",
            "the repeated request got fresh receive and transmit timestamps",
            format!("the repeated request got the same receive {} or transmit {}", hexts(b.receive_timestamp), hexts(b.transmit_timestamp)),
        )],
    }
}

// ---------------------------------------------------------------------------
// interleaved (RFC 9769 §2)

/// An interleaved-style request: the given origin and receive timestamps.
fn xleave_request(gen: &mut Gen, origin: NtpTimestamp, receive: NtpTimestamp) -> Vec<u8> {
    let mut r = client(gen);
    r[24..32].copy_from_slice(&origin.to_bits().to_be_bytes());
    r[32..40].copy_from_slice(&receive.to_bits().to_be_bytes());
    r
}

fn plan_interleaved(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    // Step 0: basic request A. Step 1: B with origin = A's server receive
    // timestamp and receive = the probe's arrival time of A's reply. A server
    // that asks for a reply's kernel transmit timestamp only once the client
    // is in interleaved mode (chronyd; ntplab serve's workers) answers B in
    // basic mode: then B2, with origin = B's server receive timestamp, is the
    // detection request (step 2), and the steps below come one later. Then C
    // with the detection request's (already used) origin, and D with an
    // origin the server never handed out.
    let detect = detection_step(history);
    let last_arrival = || history.last().and_then(|s| s.replies.last()).map(|r| r.received.to_timestamp());
    match history.len() {
        0 => Some(Step::answered(vec![client(gen)])),
        n if n == 1 || n == detect => {
            // The reply to the previous request (its origin that request's transmit).
            let previous = history.get(n - 1)?.replies_to(0).into_iter().next()?;
            let server_rx = ts(&previous.bytes, 32)?;
            Some(Step::answered(vec![xleave_request(gen, server_rx, last_arrival()?)]))
        }
        n if n == detect + 1 => {
            let origin = header(&history.get(detect)?.sent.first()?.bytes)?.origin_timestamp;
            Some(Step::answered(vec![xleave_request(gen, origin, last_arrival()?)]))
        }
        n if n == detect + 2 => {
            let origin = NtpTimestamp::from_bits(gen.next_u64() | 1);
            let receive = gen.now.to_timestamp();
            Some(Step::answered(vec![xleave_request(gen, origin, receive)]))
        }
        _ => None,
    }
}

/// The step of the interleaved case whose request the detection is judged
/// on: 1 (B), or 2 (B2) when B got a basic reply.
fn detection_step(history: &[StepRecord]) -> usize {
    if answer_of(history.get(1)).0 == Answer::Basic {
        2
    } else {
        1
    }
}

/// How a reply to an interleaved-style request answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Basic,
    Interleaved,
    Other,
    None,
}

fn answer_of(s: Option<&StepRecord>) -> (Answer, Option<Repr>) {
    let Some(s) = s else { return (Answer::None, None) };
    let (Some(req), Some(reply)) = (s.sent.first().and_then(|d| header(&d.bytes)), s.replies.first().and_then(|r| header(&r.bytes))) else {
        return (Answer::None, None);
    };
    let kind = if reply.origin_timestamp == req.transmit_timestamp {
        Answer::Basic
    } else if reply.origin_timestamp == req.receive_timestamp {
        Answer::Interleaved
    } else {
        Answer::Other
    };
    (kind, Some(reply))
}

fn judge_interleaved(history: &[StepRecord]) -> Vec<Finding> {
    const IDS: [&str; 4] = ["R9769-2-server-detect", "R9769-2-one-shot", "R9769-2-fallback", "R9769-2-tx-ne-rx"];
    if history.first().and_then(|s| s.replies.first()).and_then(|r| header(&r.bytes)).is_none() {
        return no_reply(&IDS);
    }
    // `a`: the reply before the detection request (A's, or B's after a basic B).
    let detect = detection_step(history);
    let Some(a) = history.get(detect - 1).and_then(|s| s.replies.first()).and_then(|r| header(&r.bytes)) else {
        return no_reply(&IDS);
    };
    let (b_kind, b) = answer_of(history.get(detect));
    let (c_kind, _) = answer_of(history.get(detect + 1));
    let (d_kind, _) = answer_of(history.get(detect + 2));
    let mut out = Vec::new();
    match (b_kind, b) {
        (Answer::Interleaved, Some(b)) => {
            out.push(Finding::pass("R9769-2-server-detect", "a request whose origin was the server's last receive timestamp was answered in interleaved mode"));
            // B's transmit is the departure of A's reply: after A arrived,
            // before B arrived, close to A's own (software) transmit stamp.
            let after_a = diff_s(b.transmit_timestamp, a.receive_timestamp) >= 0.0;
            let before_b = diff_s(b.receive_timestamp, b.transmit_timestamp) >= 0.0;
            let near = diff_s(b.transmit_timestamp, a.transmit_timestamp).abs() < 1.0;
            let one_shot = c_kind == Answer::Basic || c_kind == Answer::None;
            let mut bad = Vec::new();
            if !(after_a && before_b && near) {
                bad.push(format!(
                    "interleaved transmit {} is not the departure of the previous reply (its receive {}, transmit {}; this request's receive {})",
                    hexts(b.transmit_timestamp),
                    hexts(a.receive_timestamp),
                    hexts(a.transmit_timestamp),
                    hexts(b.receive_timestamp)
                ));
            }
            if !one_shot {
                bad.push("a second request with the same, already used origin was answered in interleaved mode again".into());
            }
            out.push(Finding::check(
                "R9769-2-one-shot",
                bad.is_empty(),
                "RFC 9769 §2: the interleaved reply carries the transmit timestamp of the response whose receive timestamp matched, and that one is not used again",
                "the interleaved transmit timestamp is the previous reply's departure; the used origin then got a basic reply",
                bad.join("; "),
            ));
            out.push(match d_kind {
                Answer::Basic => Finding::pass("R9769-2-fallback", "a request with an origin the server never handed out got a basic reply"),
                Answer::None => Finding::not_exercised("R9769-2-fallback", "no reply to the request with an unknown origin"),
                _ => Finding::fail("R9769-2-fallback", "RFC 9769 §2: when detection fails the server answers in basic mode", "a request with an origin the server never handed out was not answered in basic mode"),
            });
            let same: Vec<String> = history
                .iter()
                .flat_map(|s| &s.replies)
                .filter_map(|r| header(&r.bytes))
                .filter(|h| !h.receive_timestamp.is_zero() && h.receive_timestamp == h.transmit_timestamp)
                .map(|h| hexts(h.receive_timestamp))
                .collect();
            out.push(Finding::check(
                "R9769-2-tx-ne-rx",
                same.is_empty(),
                "RFC 9769 §2: an interleaved-capable server never sends a packet whose transmit timestamp equals its receive timestamp",
                "no reply had transmit = receive",
                format!("replies with transmit = receive: {}", same.join(", ")),
            ));
        }
        (Answer::Basic, _) => {
            for id in IDS {
                out.push(Finding::not_applicable(id, "two interleaved requests in a row got basic replies: the server does not offer interleaved mode to this client (optional, RFC 9769)"));
            }
            if d_kind == Answer::Basic {
                out.retain(|f| f.requirement != "R9769-2-fallback");
                out.push(Finding::pass("R9769-2-fallback", "requests that are not a valid interleaved exchange got basic replies"));
            }
        }
        (Answer::Other, Some(b)) => out.push(Finding::fail(
            "R9769-2-server-detect",
            "RFC 9769 §2: the reply's origin is the request's transmit (basic) or its receive timestamp (interleaved)",
            format!("reply origin {} is neither", hexts(b.origin_timestamp)),
        )),
        _ => out.extend(IDS.iter().map(|id| Finding::not_exercised(id, "no reply to the interleaved request"))),
    }
    out
}

// ---------------------------------------------------------------------------
// era

/// The era-1 transmit timestamp's seconds (2036-02-07 + 4096 s).
const ERA1_SECONDS: u32 = 0x0000_1000;

fn plan_era(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| Step::answered(vec![request(4, 3, NtpTimestamp::from_parts(ERA1_SECONDS, (gen.next_u64() as u32) | 1))]))
}

fn judge_era(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let Some(sent) = s.sent.first() else { return Vec::new() };
    let Some(r) = s.replies_to(0).into_iter().next() else {
        let why = if s.replies.is_empty() { "no reply to a request with an era-1 transmit timestamp" } else { "the reply's origin is not the era-1 transmit timestamp" };
        return vec![
            Finding::fail("R5905-8-server-echo", "RFC 5905 §8: origin = the request's transmit timestamp, all 64 bits", why),
            Finding::not_exercised("R5905-6-era-wrap", why),
        ];
    };
    let mut out = vec![Finding::pass("R5905-8-server-echo", "the era-1 transmit timestamp came back as the origin, all 64 bits")];
    let Some(h) = header(&r.bytes) else { return out };
    if !synchronized(&h) {
        out.push(Finding::not_applicable("R5905-6-era-wrap", "the server is unsynchronized: its timestamps need not be near the probe's clock"));
        return out;
    }
    let local = r.received.to_timestamp();
    let off = diff_s(h.receive_timestamp, local);
    let _ = sent;
    out.push(Finding::check(
        "R5905-6-era-wrap",
        off.abs() < 86_400.0,
        "RFC 5905 §6: timestamps are era-relative; a client timestamp from the next era does not move the server's own timestamps",
        format!("the reply's receive timestamp is {off:+.3} s from the probe's clock (same era)"),
        format!("the reply's receive timestamp is {off:+.0} s from the probe's clock: another era or a broken clock"),
    ));
    out
}

// ---------------------------------------------------------------------------
// leap indicator

/// Whether `t` (UTC) falls on the last day of its month.
pub fn last_day_of_month(t: NtpTime) -> bool {
    let tomorrow = t.checked_add(NtpDuration::from_nanos(86_400_000_000_000)).unwrap_or(t);
    tomorrow.to_civil().day == 1
}

fn judge_leap(history: &[StepRecord]) -> Vec<Finding> {
    let Some((h, r)) = first_reply(history) else { return no_reply(&["R8633-3.7-last-day"]) };
    match h.leap {
        LeapIndicator::Insert | LeapIndicator::Delete => {
            let when = h.transmit_timestamp.resolve(r.received);
            vec![Finding::check(
                "R8633-3.7-last-day",
                last_day_of_month(when),
                "RFC 8633 §3.7: a server announces a pending leap second only during the last day of the month",
                format!("LI {} on {}, the last day of the month", h.leap.to_bits(), when.rfc3339()),
                format!("LI {} announced on {}, not the last day of a month", h.leap.to_bits(), when.rfc3339()),
            )]
        }
        _ => vec![Finding::not_applicable("R8633-3.7-last-day", format!("LI {}: the server announces no leap second", h.leap.to_bits()))],
    }
}

// ---------------------------------------------------------------------------
// rate limiting burst (RFC 8633 §5.4)

fn plan_burst(history: &[StepRecord], gen: &mut Gen) -> Option<Step> {
    history.is_empty().then(|| {
        let requests: Vec<Vec<u8>> = (0..BURST_LEN).map(|_| client(gen)).collect();
        Step { requests, burst: true, expect: Some(BURST_LEN), ke: None }
    })
}

/// Whether a stratum-0 reply is a kiss-o'-death rather than the time reply
/// of an unsynchronized server (also stratum 0): a kiss code of four
/// upper-case letters, or no transmit timestamp (RFC 5905 §7.4: a KoD
/// carries no time).
fn is_kod(h: &Repr) -> bool {
    h.stratum == 0 && (h.reference_id.0.iter().all(|c| c.is_ascii_uppercase()) || h.transmit_timestamp.is_zero())
}

fn judge_burst(history: &[StepRecord]) -> Vec<Finding> {
    let Some(s) = step(history, 0) else { return Vec::new() };
    let n = s.sent.len();
    let mut times = 0;
    let mut kods = Vec::new();
    let mut kod_bad = Vec::new();
    for (i, sent) in s.sent.iter().enumerate() {
        for r in s.replies_to(i) {
            let Some(h) = header(&r.bytes) else { continue };
            if is_kod(&h) {
                kods.push(h.reference_id);
                let code = h.reference_id.ascii().unwrap_or("");
                if code.len() != 4 || !code.bytes().all(|c| c.is_ascii_uppercase()) || h.mode != Mode::Server {
                    kod_bad.push(format!("stratum-0 reply with reference ID {:02x?} in mode {}", h.reference_id.0, h.mode.to_bits()));
                }
                let _ = sent;
            } else {
                times += 1;
            }
        }
    }
    // A KoD whose origin is not the request's transmit is useless to a
    // client (RFC 8633 §5.4: accept a KoD only with a valid origin).
    let unmatched: Vec<&ReceivedDatagram> = s.replies.iter().filter(|r| !s.sent.iter().any(|q| q.bytes.get(40..48) == r.bytes.get(24..32))).collect();
    for r in &unmatched {
        if header(&r.bytes).is_some_and(|h| is_kod(&h)) {
            kod_bad.push("a kiss-o'-death whose origin is not the request's transmit timestamp".into());
        }
    }
    let refused = n.saturating_sub(times);
    if times == 0 && kods.is_empty() && kod_bad.is_empty() {
        let why = format!("none of the {n} requests of the burst was answered: the server does not serve this client at all");
        return vec![Finding::not_exercised("R-SRV-ratelimit", why.clone()), Finding::not_exercised("R5905-7.4-kod-format", why)];
    }
    if refused == 0 {
        let why = format!("the server does not rate-limit: it answered {times} of {n} back-to-back requests (rate limiting is configuration)");
        return vec![Finding::not_applicable("R-SRV-ratelimit", why.clone()), Finding::not_applicable("R5905-7.4-kod-format", why)];
    }
    let mut out = Vec::new();
    // KoDs must be limited too: one per refused request reflects a spoofed
    // flood one for one.
    let unlimited = refused >= 4 && kods.len() >= refused;
    out.push(Finding::check(
        "R-SRV-ratelimit",
        !unlimited && unmatched.iter().all(|r| header(&r.bytes).is_some_and(|h| is_kod(&h))) && s.replies.len() <= n,
        "RFC 8633 §5.4, RFC 5905 §7.4: a limiting server drops or sends RATE, and limits its kiss-o'-death packets as well",
        format!("{times} of {n} answered with time, {} kiss-o'-death(s), {} dropped", kods.len(), refused.saturating_sub(kods.len())),
        format!("{refused} refused requests got {} kiss-o'-death(s): KoDs are not limited", kods.len()),
    ));
    if kods.is_empty() && kod_bad.is_empty() {
        out.push(Finding::not_applicable("R5905-7.4-kod-format", format!("{refused} refused requests dropped silently: no kiss-o'-death to judge")));
    } else {
        out.push(Finding::check(
            "R5905-7.4-kod-format",
            kod_bad.is_empty(),
            "RFC 5905 §7.4: a kiss-o'-death is a mode-4 reply with stratum 0 and a four-letter ASCII kiss code as reference ID, origin = the request's transmit",
            format!("{} well-formed kiss-o'-death(s): {}", kods.len(), kods.iter().map(|k| k.ascii().unwrap_or("?").to_string()).collect::<Vec<_>>().join(", ")),
            kod_bad.join("; "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn now() -> NtpTime {
        NtpTime::parse_rfc3339("2026-12-03T12:00:00Z").unwrap()
    }

    /// Runs a case against a function that answers each request (in-memory).
    pub(crate) fn run_case(case: &CaseDef, mut answer: impl FnMut(&[u8]) -> Vec<Vec<u8>>) -> Vec<Finding> {
        let mut gen = Gen::new(now(), 7);
        let mut history: Vec<StepRecord> = Vec::new();
        for _ in 0..case.steps_max + 1 {
            let Some(step) = (case.plan)(&history, &mut gen) else { break };
            let mut rec = StepRecord::default();
            for req in step.requests {
                for reply in answer(&req) {
                    rec.replies.push(ReceivedDatagram { bytes: reply, received: now() });
                }
                rec.sent.push(SentDatagram { bytes: req, sent: now() });
            }
            history.push(rec);
        }
        assert!((case.plan)(&history, &mut gen).is_none(), "{}: more than steps_max steps", case.name);
        CaseResult::judge("ntpv4", case, history, 0.0).findings
    }

    /// A correct basic server at stratum 1 ("GPS"), no interleaved mode.
    fn good(req: &[u8]) -> Vec<Vec<u8>> {
        let Some(h) = header(req) else { return vec![] };
        if req.len() % 4 != 0 || !(1..=4).contains(&h.version) || h.mode != Mode::Client {
            return vec![];
        }
        let ext = ntplab_proto::wire::ext::ExtensionArea::parse(&req[48..]);
        if !ext.is_clean() || req.len() > 2048 {
            return vec![];
        }
        static TICK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let tick = TICK.fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
        let t = NtpTimestamp::from_bits(now().to_timestamp().to_bits() + tick);
        let reply = Repr {
            leap: LeapIndicator::NoWarning,
            version: h.version,
            mode: Mode::Server,
            stratum: 1,
            poll: h.poll,
            precision: -20,
            root_delay: Default::default(),
            root_dispersion: Default::default(),
            reference_id: ReferenceId::from_ascii("GPS"),
            reference_timestamp: t,
            origin_timestamp: h.transmit_timestamp,
            receive_timestamp: t,
            transmit_timestamp: NtpTimestamp::from_bits(t.to_bits() + 1000),
        };
        vec![reply.to_bytes().to_vec()]
    }

    #[test]
    fn a_correct_server_fails_no_case() {
        for case in NTPV4 {
            for f in run_case(case, good) {
                assert_ne!(f.verdict, Verdict::Fail, "{}: {f:?}", case.name);
                assert!(case.requirements.contains(&f.requirement));
            }
        }
    }

    #[test]
    fn a_server_that_does_not_copy_the_origin_fails_the_echo_rule() {
        let case = NTPV4.iter().find(|c| c.name == "client-mode").unwrap();
        let f = run_case(case, |r| {
            let mut v = good(r);
            if let Some(x) = v.first_mut() {
                x[24..32].fill(0);
            }
            v
        });
        assert!(f.iter().any(|f| f.requirement == "R5905-8-server-echo" && f.verdict == Verdict::Fail), "{f:?}");
    }

    #[test]
    fn a_silent_server_gives_no_pass() {
        for case in NTPV4 {
            for f in run_case(case, |_| vec![]) {
                let silent_ok = ["control-private", "modes", "versions-0-5-6-7", "zero-transmit", "malformed-extensions", "legacy-mac-unknown-key", "truncated-and-unaligned", "oversized"];
                if !silent_ok.contains(&case.name) {
                    assert_ne!(f.verdict, Verdict::Pass, "{}: {f:?}", case.name);
                }
            }
        }
    }

    #[test]
    fn an_unsynchronized_servers_stratum_0_time_replies_are_not_kods() {
        // LI 3, stratum 0, reference ID 0, timestamps set: time replies of an
        // unsynchronized server, not kiss-o'-death packets (once counted as
        // 16 malformed, unlimited KoDs).
        let case = NTPV4.iter().find(|c| c.name == RATE_CASE).unwrap();
        let f = run_case(case, |r| {
            let mut v = good(r);
            for x in &mut v {
                x[0] |= 0xC0;
                x[1] = 0;
                x[12..16].fill(0);
            }
            v
        });
        assert!(f.iter().all(|f| f.verdict == Verdict::NotApplicable), "{f:?}");
    }

    #[test]
    fn last_day_of_month_knows_month_lengths() {
        let t = |s: &str| NtpTime::parse_rfc3339(s).unwrap();
        assert!(last_day_of_month(t("2016-12-31T23:59:59Z")));
        assert!(last_day_of_month(t("2024-02-29T00:00:00Z")));
        assert!(last_day_of_month(t("2023-02-28T00:00:00Z")));
        assert!(!last_day_of_month(t("2024-02-28T00:00:00Z")));
        assert!(!last_day_of_month(t("2026-12-03T12:00:00Z")));
    }

    #[test]
    fn case_names_are_unique_and_requirements_exist_in_the_catalog() {
        let catalog = crate::catalog::Catalog::builtin();
        let mut names = std::collections::BTreeSet::new();
        for case in NTPV4 {
            assert!(names.insert(case.name), "{} twice", case.name);
            for r in case.requirements {
                assert!(catalog.get(r).is_some(), "{}: {r} is not in the catalog", case.name);
            }
        }
    }
}
