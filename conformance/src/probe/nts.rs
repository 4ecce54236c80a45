//! The NTS-KE and NTS probe cases (RFC 8915 §4, §5): what each sends to the
//! NTS-KE port or, with keys and cookies from a first NTS-KE, to the NTP
//! port, and the rule each verdict rests on.
//!
//! A KE case's step is one TLS connection ([`KeAttempt`]); the driver
//! records what the server sent back and how the connection ended
//! ([`KeRecord`]). An NTS case's first step is a standard NTS-KE that
//! exports the keys; its next step sends NTS-protected requests built with
//! the core's [`ClientSession`] and judges the replies with it. When no
//! NTS-KE server answers, every verdict is "not exercised" with the reason.
//! Judges read everything through fallible parsers and never panic.

use super::{cases, CaseDef, Finding, Gen, KeAttempt, KeEnd, KeRecord, KeTls, Step, StepRecord};
use ntplab_proto::nts::{Aead, ClientSession, NtsRng, PendingRequest, ResponseError, ResponseKind, SessionKeys};
use ntplab_proto::wire::ntske::{self, AeadId, Body, ErrorCode, ProtocolId, Repr as KeRepr, CRITICAL_BIT};

/// The ALPN protocol of NTS-KE (RFC 8915 §4).
pub const ALPN_NTSKE: &str = "ntske/1";

/// A record type in the Private or Experimental Use range that no
/// implementation gives a meaning (RFC 8915 §7.6), for the unknown-record cases.
pub const UNKNOWN_RECORD_TYPE: u16 = 0x7ff0;

/// A protocol ID and an AEAD ID no registry assigns.
pub const UNKNOWN_ID: u16 = 0x7777;

/// How long the missing-End-of-Message case waits for the server to give
/// up on the rest of the request (RFC 8915 §4.1.3 Error 1 "or timeout").
pub const NO_EOM_WAIT_MS: u64 = 6_000;

/// The slow client's pause between the two halves of its request: long for
/// TLS records of one message, short of any KE timeout seen (ntpd-rs: 1 s).
pub const SLOW_CLIENT_PAUSE_MS: u64 = 300;

/// Octets of the long request (RFC 8915 §4: servers MUST accept at least 1024).
pub const LONG_REQUEST_LEN: usize = 1100;

const KE_RULE: &str = "RFC 8915 §4";

impl NtsRng for Gen {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

// ---------------------------------------------------------------------------
// Building NTS-KE requests.

fn rec(critical: bool, body: Body) -> KeRepr {
    KeRepr { critical, body }
}

fn npn(ids: &[u16]) -> KeRepr {
    rec(true, Body::NextProtocol(ids.iter().map(|i| ProtocolId(*i)).collect()))
}

fn aead(ids: &[u16]) -> KeRepr {
    rec(false, Body::AeadAlgorithm(ids.iter().map(|i| AeadId(*i)).collect()))
}

fn eom() -> KeRepr {
    KeRepr::end_of_message()
}

fn message(records: &[KeRepr]) -> Vec<u8> {
    ntske::message_to_bytes(records)
}

/// The request every NTS client sends: NTPv4, AEADs 15 and 30, End of Message.
pub fn minimal_request() -> Vec<u8> {
    message(&[npn(&[0]), aead(&[15, 30]), eom()])
}

/// An unknown record of `len` octets of body, critical or not (its type
/// field written by hand so the Critical Bit is exactly as asked).
fn unknown_record(critical: bool, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + len);
    let t = UNKNOWN_RECORD_TYPE | if critical { CRITICAL_BIT } else { 0 };
    out.extend(t.to_be_bytes());
    out.extend(u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.resize(4 + len, 0x5a);
    out
}

/// NTPv4 and AEAD 15, then `extra`, then End of Message.
fn request_with(extra: &[u8]) -> Vec<u8> {
    let mut out = message(&[npn(&[0]), aead(&[15])]);
    out.extend_from_slice(extra);
    out.extend(message(&[eom()]));
    out
}

// ---------------------------------------------------------------------------
// Reading what came back.

/// The KE record of `history[i]`, if that step was a KE step.
fn ke_at(history: &[StepRecord], i: usize) -> Option<&KeRecord> {
    history.get(i).and_then(|s| s.ke.as_ref())
}

/// What a KE connection gave, for the judges.
enum KeSeen<'a> {
    /// No TLS session (why).
    NoSession(&'a str),
    /// A session; the response's records (or why they do not parse), the record.
    Session(Result<Vec<KeRepr>, String>, &'a KeRecord),
}

fn seen(r: &KeRecord) -> KeSeen<'_> {
    match &r.end {
        KeEnd::NoSession(why) => KeSeen::NoSession(why),
        _ if r.response.is_empty() => KeSeen::Session(Err("the server sent nothing".into()), r),
        _ => KeSeen::Session(ntske::parse_message(&r.response).map_err(|e| format!("the response does not parse: {e}")), r),
    }
}

fn not_reached(reqs: &[&'static str], why: &str) -> Vec<Finding> {
    reqs.iter().map(|q| Finding::not_exercised(q, format!("no NTS-KE session: {why}"))).collect()
}

fn error_code(records: &[KeRepr]) -> Option<ErrorCode> {
    records.iter().find_map(|r| match r.body {
        Body::Error(c) => Some(c),
        _ => None,
    })
}

fn cookies(records: &[KeRepr]) -> usize {
    records.iter().filter(|r| matches!(r.body, Body::NewCookie(_))).count()
}

/// The response's problems under RFC 8915 §4's placement and critical-bit
/// rules whose rule text starts with `section`.
fn problems(records: &[KeRepr], section: &str) -> Vec<String> {
    ntske::check_response(records).into_iter().filter(|p| p.rule.starts_with(section)).map(|p| p.detail).collect()
}

fn describe(records: &[KeRepr]) -> String {
    records.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------
// The NTS-KE cases.

/// Every NTS-KE case, in run order.
pub const NTS_KE: &[CaseDef] = &[
    CaseDef {
        name: "ke-minimal",
        title: "TLS 1.3 with ALPN ntske/1, NTPv4 and AEADs 15, 30: one Next Protocol (NTPv4), one AEAD, cookies, End of Message last, then the server closes",
        requirements: &[
            "R8915-3-tls13",
            "R8915-3-alpn",
            "R8915-4-one-exchange",
            "R8915-4-npn-once",
            "R8915-4.1.1-eom",
            "R8915-4.1.2-subset",
            "R8915-4.1.5-aead",
            "R8915-4.1.6-cookies",
            "R8915-4.1.7-server",
            "R8915-4.1.8-port",
        ],
        plan: |h, _| h.is_empty().then(|| Step::ke(KeAttempt::standard(minimal_request()))),
        judge: judge_minimal,
        steps_max: 1,
    },
    CaseDef {
        name: "ke-siv-only",
        title: "NTPv4 with AEAD 15 (AES-SIV-CMAC-256) alone: the server must agree to it",
        requirements: &["R8915-4.1.5-siv"],
        plan: |h, _| h.is_empty().then(|| Step::ke(KeAttempt::standard(request_with(&[])))),
        judge: judge_siv_only,
        steps_max: 1,
    },
    CaseDef {
        name: "ke-tls12",
        title: "a TLS 1.2-only client (ALPN ntske/1): the handshake must fail",
        requirements: &["R8915-3-tls13"],
        plan: |h, _| h.is_empty().then(|| Step::ke(KeAttempt { tls: KeTls::Tls12Only, ..KeAttempt::standard(minimal_request()) })),
        judge: judge_tls12,
        steps_max: 1,
    },
    CaseDef {
        name: "ke-alpn",
        title: "TLS 1.3 offering ALPN http/1.1, then no ALPN at all: no NTS-KE response either time",
        requirements: &["R8915-3-alpn"],
        plan: |h, _| {
            let alpn = match h.len() {
                0 => vec!["http/1.1".to_string()],
                1 => Vec::new(),
                _ => return None,
            };
            Some(Step::ke(KeAttempt { tls: KeTls::Alpn(alpn), ..KeAttempt::standard(minimal_request()) }))
        },
        judge: judge_alpn,
        steps_max: 2,
    },
    CaseDef {
        name: "ke-unknown-records",
        title: "an unknown critical record: Error 0 (Unrecognized Critical Record); the same record non-critical: ignored, cookies as usual",
        requirements: &["R8915-4-critical", "R8915-4.1.3-codes"],
        plan: |h, _| match h.len() {
            0 => Some(Step::ke(KeAttempt::standard(request_with(&unknown_record(true, 8))))),
            1 => Some(Step::ke(KeAttempt::standard(request_with(&unknown_record(false, 8))))),
            _ => None,
        },
        judge: judge_unknown_records,
        steps_max: 2,
    },
    CaseDef {
        name: "ke-bad-requests",
        title: "no Next Protocol, two Next Protocol records, an empty Next Protocol, NTPv4 without an AEAD record: Error 1 (Bad Request) each, never cookies",
        requirements: &["R8915-4.1.3-codes", "R8915-4-npn-once"],
        plan: |h, _| {
            let bad = match h.len() {
                0 => message(&[aead(&[15]), eom()]),
                1 => message(&[npn(&[0]), npn(&[0]), aead(&[15]), eom()]),
                2 => message(&[npn(&[]), aead(&[15]), eom()]),
                3 => message(&[npn(&[0]), eom()]),
                _ => return None,
            };
            Some(Step::ke(KeAttempt::standard(bad)))
        },
        judge: judge_bad_requests,
        steps_max: 4,
    },
    CaseDef {
        name: "ke-unknown-ids",
        title: "only an unknown next protocol, then NTPv4 with only an unknown AEAD: the response lists a subset of what was offered and carries no cookies",
        requirements: &["R8915-4.1.2-subset", "R8915-4.1.5-aead"],
        plan: |h, _| match h.len() {
            0 => Some(Step::ke(KeAttempt::standard(message(&[npn(&[UNKNOWN_ID]), aead(&[15]), eom()])))),
            1 => Some(Step::ke(KeAttempt::standard(message(&[npn(&[0]), aead(&[UNKNOWN_ID]), eom()])))),
            _ => None,
        },
        judge: judge_unknown_ids,
        steps_max: 2,
    },
    CaseDef {
        name: "ke-no-end-of-message",
        title: "a request without End of Message, the connection held open: Error 1 or a close, never cookies",
        requirements: &["R8915-4.1.3-codes"],
        plan: |h, _| {
            h.is_empty().then(|| Step::ke(KeAttempt { wait_ms: Some(NO_EOM_WAIT_MS), ..KeAttempt::standard(message(&[npn(&[0]), aead(&[15])])) }))
        },
        judge: judge_no_eom,
        steps_max: 1,
    },
    CaseDef {
        name: "ke-slow-client",
        title: "the minimal request in two parts 300 ms apart: one response after End of Message",
        requirements: &["R8915-4-one-exchange"],
        plan: |h, _| {
            h.is_empty().then(|| {
                let request = minimal_request();
                Step::ke(KeAttempt { split: Some((request.len() / 2, SLOW_CLIENT_PAUSE_MS)), ..KeAttempt::standard(request) })
            })
        },
        judge: judge_slow_client,
        steps_max: 1,
    },
    CaseDef {
        name: "ke-long-request",
        title: "an 1100-octet request (a non-critical unknown record pads it): answered as usual",
        requirements: &["R8915-4-size-limits"],
        plan: |h, _| {
            h.is_empty().then(|| {
                let pad = LONG_REQUEST_LEN - request_with(&[]).len() - 4;
                let request = request_with(&unknown_record(false, pad));
                Step::ke(KeAttempt::standard(request))
            })
        },
        judge: judge_long_request,
        steps_max: 1,
    },
];

fn judge_minimal(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    let (records, r) = match seen(r) {
        KeSeen::NoSession(why) => {
            let mut f = not_reached(&NTS_KE[0].requirements[2..], why);
            f.push(Finding::not_exercised("R8915-3-tls13", format!("no NTS-KE session: {why}")));
            f.push(Finding::not_exercised("R8915-3-alpn", format!("no NTS-KE session: {why}")));
            return f;
        }
        KeSeen::Session(records, r) => (records, r),
    };
    let mut f = Vec::new();
    let version = r.tls_version.as_deref().unwrap_or("unknown");
    f.push(Finding::check(
        "R8915-3-tls13",
        version == "TLSv1_3",
        "RFC 8915 §3: NTS-KE MUST NOT use TLS below 1.3",
        "TLS 1.3 negotiated",
        format!("negotiated {version}"),
    ));
    let alpn = r.alpn.as_deref().unwrap_or("none");
    f.push(Finding::check("R8915-3-alpn", alpn == ALPN_NTSKE, "RFC 8915 §3: ALPN ntske/1", "ALPN ntske/1 negotiated", format!("ALPN {alpn}")));
    let records = match records {
        Ok(v) => v,
        Err(why) => {
            for q in ["R8915-4-npn-once", "R8915-4.1.1-eom", "R8915-4-one-exchange"] {
                f.push(Finding::fail(q, KE_RULE, format!("to a minimal request: {why}")));
            }
            return f;
        }
    };
    let said = describe(&records);
    let one_fail = |q: &'static str, rule: &'static str, section: &str| {
        let p = problems(&records, section);
        Finding::check(q, p.is_empty(), rule, format!("response {said}"), p.join("; "))
    };
    f.push(one_fail("R8915-4-npn-once", "RFC 8915 §4.1.2: exactly one Next Protocol record", "RFC 8915 §4.1.2"));
    f.push(one_fail("R8915-4.1.1-eom", "RFC 8915 §4.1.1: End of Message once, last, critical", "RFC 8915 §4.1.1"));
    f.push(one_fail("R8915-4.1.7-server", "RFC 8915 §4.1.7: at most one Server record, an address or FQDN in ASCII", "RFC 8915 §4.1.7"));
    f.push(Finding::pass("R8915-4.1.8-port", match records.iter().find_map(|r| if let Body::Port(p) = r.body { Some(p) } else { None }) {
        Some(p) => format!("Port record {p} (2 octets)"),
        None => "no Port record: NTP on port 123".to_string(),
    }));
    let protos: Vec<_> = ntske::next_protocols(&records).collect();
    let subset = protos.iter().all(|v| v.iter().all(|p| p.0 == 0));
    f.push(Finding::check(
        "R8915-4.1.2-subset",
        subset,
        "RFC 8915 §4.1.2: the response's protocols are a subset of the request's",
        "Next Protocol lists only NTPv4 (offered)",
        format!("Next Protocol lists {protos:?}, only NTPv4 was offered"),
    ));
    let aeads: Vec<_> = ntske::aead_lists(&records).collect();
    let aead_ok = aeads.len() == 1 && aeads[0].len() == 1 && [15, 30].contains(&aeads[0][0].0);
    f.push(Finding::check(
        "R8915-4.1.5-aead",
        aead_ok,
        "RFC 8915 §4.1.5: exactly one AEAD record, with one of the offered algorithms",
        format!("AEAD {:?}", aeads.first().and_then(|v| v.first()).map(|a| a.0)),
        format!("AEAD records {aeads:?} to an offer of 15, 30"),
    ));
    let n = cookies(&records);
    let critical_cookie = records.iter().any(|r| r.critical && matches!(r.body, Body::NewCookie(_)));
    f.push(Finding::check(
        "R8915-4.1.6-cookies",
        n >= 1 && !critical_cookie,
        "RFC 8915 §4.1.6: at least one New Cookie record, Critical Bit clear",
        format!("{n} cookies{}", if n == 8 { "" } else { " (8 recommended)" }),
        format!("{n} cookies{}", if critical_cookie { ", some with the Critical Bit" } else { "" }),
    ));
    f.push(match &r.end {
        KeEnd::Closed => Finding::pass("R8915-4-one-exchange", "one response, then the server closed the connection"),
        KeEnd::StillOpen => Finding::fail("R8915-4-one-exchange", "RFC 8915 §4: one request and one response per TLS session, then close_notify", "the connection was still open after the response"),
        KeEnd::Error(e) => Finding::pass("R8915-4-one-exchange", format!("one response, then the connection ended ({e})")),
        KeEnd::NoSession(_) => Finding::not_exercised("R8915-4-one-exchange", "no session"),
    });
    f
}

fn judge_siv_only(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    match seen(r) {
        KeSeen::NoSession(why) => not_reached(&["R8915-4.1.5-siv"], why),
        KeSeen::Session(Err(why), _) => vec![Finding::fail("R8915-4.1.5-siv", "RFC 8915 §4.1.5: servers MUST implement AEAD_AES_SIV_CMAC_256", why)],
        KeSeen::Session(Ok(records), _) => {
            let agreed = ntske::aead_lists(&records).next().and_then(|v| v.first()).map(|a| a.0);
            vec![Finding::check(
                "R8915-4.1.5-siv",
                agreed == Some(15) && cookies(&records) > 0,
                "RFC 8915 §4.1.5: servers MUST implement AEAD_AES_SIV_CMAC_256 (15)",
                "AEAD 15 agreed, cookies sent",
                format!("to an offer of AEAD 15 alone: {}", describe(&records)),
            )]
        }
    }
}

fn judge_tls12(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    let rule = "RFC 8915 §3: NTS-KE MUST NOT be offered or accepted over TLS below 1.3";
    vec![match &r.end {
        KeEnd::NoSession(why) if why.starts_with("connect") => Finding::not_exercised("R8915-3-tls13", format!("cannot connect: {why}")),
        KeEnd::NoSession(why) => Finding::pass("R8915-3-tls13", format!("TLS 1.2-only handshake refused: {why}")),
        _ => Finding::fail("R8915-3-tls13", rule, format!("a TLS session with a TLS 1.2-only client ({})", r.tls_version.as_deref().unwrap_or("unknown version"))),
    }]
}

fn judge_alpn(history: &[StepRecord]) -> Vec<Finding> {
    let rule = "RFC 8915 §4, RFC 7301 §3.2: the server accepts only ntske/1, and a server that supports none of the offered protocols ends the handshake (no_application_protocol)";
    let mut f = Vec::new();
    for (i, offered) in ["http/1.1", "no ALPN"].iter().enumerate() {
        let Some(r) = ke_at(history, i) else { continue };
        f.push(match seen(r) {
            KeSeen::NoSession(why) if why.starts_with("connect") => Finding::not_exercised("R8915-3-alpn", format!("cannot connect: {why}")),
            KeSeen::NoSession(why) => Finding::pass("R8915-3-alpn", format!("{offered}: handshake refused ({why})")),
            // RFC 8915 has the client offer ntske/1; neither it nor RFC 7301
            // says what a server does when a client offers no ALPN at all.
            KeSeen::Session(Ok(records), _) if cookies(&records) > 0 && i == 1 => Finding::not_applicable(
                "R8915-3-alpn",
                format!("{offered}: NTS-KE answered with {} cookies (no rule says a server must refuse a client that offers no ALPN)", cookies(&records)),
            ),
            KeSeen::Session(Ok(records), _) if cookies(&records) > 0 => {
                Finding::fail("R8915-3-alpn", rule, format!("{offered}: the handshake went on without ntske/1 and NTS-KE answered with {} cookies", cookies(&records)))
            }
            KeSeen::Session(_, r) => Finding::pass("R8915-3-alpn", format!("{offered}: session (ALPN {}), no cookies", r.alpn.as_deref().unwrap_or("none"))),
        });
    }
    f
}

/// An error response with `want` (and nothing else a refusal may not hold)
/// to a request labelled `what`.
fn expect_error(r: &KeRecord, what: &str, want: ErrorCode) -> Finding {
    let rule = "RFC 8915 §4.1.3: Error 0 for an unrecognized critical record, 1 for a bad request; body 2 octets, Critical Bit set";
    match seen(r) {
        KeSeen::NoSession(why) => Finding::not_exercised("R8915-4.1.3-codes", format!("{what}: no NTS-KE session: {why}")),
        KeSeen::Session(Err(why), r) if r.end != KeEnd::StillOpen && r.response.is_empty() => {
            Finding::fail("R8915-4.1.3-codes", rule, format!("{what}: the server closed without an Error record ({why})"))
        }
        KeSeen::Session(Err(why), _) => Finding::fail("R8915-4.1.3-codes", rule, format!("{what}: {why}")),
        KeSeen::Session(Ok(records), _) => {
            let code = error_code(&records);
            let critical = records.iter().any(|x| x.critical && matches!(x.body, Body::Error(_)));
            if cookies(&records) > 0 {
                Finding::fail("R8915-4.1.3-codes", rule, format!("{what}: answered with {} cookies", cookies(&records)))
            } else if code == Some(want) && critical {
                Finding::pass("R8915-4.1.3-codes", format!("{what}: Error {}", want.0))
            } else {
                Finding::fail("R8915-4.1.3-codes", rule, format!("{what}: {} (want Error {}, critical)", describe(&records), want.0))
            }
        }
    }
}

fn judge_unknown_records(history: &[StepRecord]) -> Vec<Finding> {
    let mut f = Vec::new();
    if let Some(r) = ke_at(history, 0) {
        let e = expect_error(r, "unknown critical record", ErrorCode::UNRECOGNIZED_CRITICAL_RECORD);
        let critical = Finding { requirement: "R8915-4-critical", rule: e.rule.map(|_| "RFC 8915 §4: an unrecognized critical record is an error (Error 0)"), ..e.clone() };
        f.push(e);
        f.push(critical);
    }
    if let Some(r) = ke_at(history, 1) {
        f.push(match seen(r) {
            KeSeen::NoSession(why) => Finding::not_exercised("R8915-4-critical", format!("no NTS-KE session: {why}")),
            KeSeen::Session(Ok(records), _) if cookies(&records) > 0 && error_code(&records).is_none() => {
                Finding::pass("R8915-4-critical", format!("unknown non-critical record ignored: {} cookies", cookies(&records)))
            }
            KeSeen::Session(records, _) => Finding::fail(
                "R8915-4-critical",
                "RFC 8915 §4: an unrecognized record without the Critical Bit is ignored",
                format!("unknown non-critical record: {}", records.map_or_else(|e| e, |r| describe(&r))),
            ),
        });
    }
    f
}

fn judge_bad_requests(history: &[StepRecord]) -> Vec<Finding> {
    let what = ["no Next Protocol record", "two Next Protocol records", "an empty Next Protocol list", "NTPv4 without an AEAD record"];
    let mut f = Vec::new();
    for (i, w) in what.iter().enumerate() {
        let Some(r) = ke_at(history, i) else { continue };
        // An empty list is well formed: an empty Next Protocol record back
        // ("none of those"), without cookies, answers it as well as Error 1.
        if i == 2 {
            if let KeSeen::Session(Ok(records), _) = seen(r) {
                if error_code(&records).is_none() && cookies(&records) == 0 && ntske::next_protocols(&records).all(|v| v.is_empty()) && ntske::next_protocols(&records).next().is_some() {
                    f.push(Finding::pass("R8915-4.1.3-codes", format!("{w}: {} (nothing agreed, no cookies)", describe(&records))));
                    continue;
                }
            }
        }
        let e = expect_error(r, w, ErrorCode::BAD_REQUEST);
        if i == 1 {
            f.push(Finding { requirement: "R8915-4-npn-once", rule: e.rule.map(|_| "RFC 8915 §4.1.2: a request carries exactly one Next Protocol record"), ..e.clone() });
        }
        f.push(e);
    }
    f
}

/// A response to an offer of only [`UNKNOWN_ID`] as `what`: `ok` judges
/// its records (a subset of the offer, no cookies).
fn judge_unknown_offer(r: &KeRecord, requirement: &'static str, what: &str, rule: &'static str, ok: fn(&[KeRepr]) -> bool) -> Finding {
    match seen(r) {
        KeSeen::NoSession(why) => Finding::not_exercised(requirement, format!("no NTS-KE session: {why}")),
        KeSeen::Session(Ok(records), _) => {
            let said = format!("only {what} {UNKNOWN_ID:#06x} offered: {}", describe(&records));
            Finding::check(requirement, ok(&records) && cookies(&records) == 0, rule, said.clone(), said)
        }
        KeSeen::Session(Err(why), _) => Finding::fail(requirement, rule, format!("only {what} {UNKNOWN_ID:#06x} offered: {why} (a response naming what was agreed, if nothing, was due)")),
    }
}

fn judge_unknown_ids(history: &[StepRecord]) -> Vec<Finding> {
    let mut f = Vec::new();
    if let Some(r) = ke_at(history, 0) {
        f.push(judge_unknown_offer(
            r,
            "R8915-4.1.2-subset",
            "protocol",
            "RFC 8915 §4.1.2: the response's protocols are a subset of the request's (empty when none is supported)",
            |records| ntske::next_protocols(records).all(|v| v.iter().all(|p| p.0 == UNKNOWN_ID)),
        ));
    }
    if let Some(r) = ke_at(history, 1) {
        f.push(judge_unknown_offer(
            r,
            "R8915-4.1.5-aead",
            "AEAD",
            "RFC 8915 §4.1.5: the response's AEAD is one the client offered; no cookies without an agreed AEAD",
            |records| ntske::aead_lists(records).all(|v| v.iter().all(|a| a.0 == UNKNOWN_ID)),
        ));
    }
    f
}

fn judge_no_eom(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    if r.end == KeEnd::StillOpen && r.response.is_empty() {
        return vec![Finding::not_exercised(
            "R8915-4.1.3-codes",
            format!("without End of Message the server still waited after {} s (its timeout is longer)", NO_EOM_WAIT_MS / 1000),
        )];
    }
    vec![expect_error(r, "a request without End of Message", ErrorCode::BAD_REQUEST)]
}

fn judge_slow_client(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    vec![match seen(r) {
        KeSeen::NoSession(why) => Finding::not_exercised("R8915-4-one-exchange", format!("no NTS-KE session: {why}")),
        KeSeen::Session(Ok(records), _) if cookies(&records) > 0 && error_code(&records).is_none() => {
            Finding::pass("R8915-4-one-exchange", format!("a request in two parts {SLOW_CLIENT_PAUSE_MS} ms apart: one response, {} cookies", cookies(&records)))
        }
        KeSeen::Session(records, _) => Finding::fail(
            "R8915-4-one-exchange",
            "RFC 8915 §4: one request (its End of Message ends it, however TLS splits it) gets one response",
            format!("a request in two parts {SLOW_CLIENT_PAUSE_MS} ms apart: {}", records.map_or_else(|e| e, |r| describe(&r))),
        ),
    }]
}

fn judge_long_request(history: &[StepRecord]) -> Vec<Finding> {
    let Some(r) = ke_at(history, 0) else { return Vec::new() };
    vec![match seen(r) {
        KeSeen::NoSession(why) => Finding::not_exercised("R8915-4-size-limits", format!("no NTS-KE session: {why}")),
        KeSeen::Session(Ok(records), _) if cookies(&records) > 0 => {
            Finding::pass("R8915-4-size-limits", format!("a {LONG_REQUEST_LEN}-octet request: {} cookies", cookies(&records)))
        }
        KeSeen::Session(records, _) => Finding::fail(
            "R8915-4-size-limits",
            "RFC 8915 §4: servers MUST accept requests of at least 1024 octets",
            format!("a {LONG_REQUEST_LEN}-octet request: {}", records.map_or_else(|e| e, |r| describe(&r))),
        ),
    }]
}

// ---------------------------------------------------------------------------
// The NTS cases: a standard NTS-KE with key export, then NTS-protected NTPv4.

/// The session the first step's NTS-KE gave: keys and cookies.
fn session_of(history: &[StepRecord]) -> Result<(SessionKeys, Vec<Vec<u8>>), String> {
    let r = ke_at(history, 0).ok_or("no NTS-KE step")?;
    if let KeEnd::NoSession(why) = &r.end {
        return Err(format!("no NTS-KE session: {why}"));
    }
    let records = ntske::parse_message(&r.response).map_err(|e| format!("the NTS-KE response does not parse: {e}"))?;
    let cookies: Vec<Vec<u8>> = records
        .iter()
        .filter_map(|r| match &r.body {
            Body::NewCookie(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let k = r.keys.as_ref().ok_or("the NTS-KE response agreed no AEAD the probe can use (or gave no keys)")?;
    let aead = Aead::from_id(AeadId(k.aead)).ok_or_else(|| format!("AEAD {} is not one the probe implements", k.aead))?;
    let keys = SessionKeys::from_exported(aead, &k.c2s, &k.s2c).map_err(|e| format!("{e:?}"))?;
    if cookies.is_empty() {
        return Err("the NTS-KE response carried no cookie".into());
    }
    Ok((keys, cookies))
}

/// A standard NTS-KE exporting the keys, as every NTS case's first step.
fn ke_step() -> Step {
    Step::ke(KeAttempt { export: true, ..KeAttempt::standard(message(&[npn(&[0]), aead(&[15, 30, 17]), eom()])) })
}

/// Plans an NTS case: the NTS-KE, then the datagrams `build` makes from the
/// session (nothing when the KE gave no session).
/// Builds an NTS case's datagrams from the NTS-KE's keys and cookies.
type BuildFn = fn(SessionKeys, Vec<Vec<u8>>, &mut Gen) -> Option<Vec<Vec<u8>>>;

fn plan_nts(history: &[StepRecord], gen: &mut Gen, build: BuildFn) -> Option<Step> {
    match history.len() {
        0 => Some(ke_step()),
        1 => {
            let (keys, cookies) = session_of(history).ok()?;
            let requests = build(keys, cookies, gen)?;
            let n = requests.len();
            Some(Step { requests, burst: false, expect: Some(n), ke: None })
        }
        _ => None,
    }
}

/// A protected request from a session holding `cookies_held` of the KE's
/// cookies (so it asks for `7 - (cookies_held - 1)` placeholders, at most 7).
fn protected(keys: SessionKeys, cookies: Vec<Vec<u8>>, cookies_held: usize, gen: &mut Gen) -> Option<(Vec<u8>, ClientSession)> {
    let mut session = ClientSession::new(keys, cookies.into_iter().take(cookies_held).collect());
    let header = cases::client(gen);
    let (bytes, _) = session.build_request(&header, gen).ok()?;
    Some((bytes, session))
}

const UID_EF: u16 = 0x0104;
const PLACEHOLDER_EF: u16 = 0x0304;

fn push_ef(out: &mut Vec<u8>, t: u16, body: &[u8]) {
    let len = 4 + body.len().div_ceil(4) * 4;
    out.extend(t.to_be_bytes());
    out.extend(u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + len - 4 - body.len(), 0);
}

/// Every NTS case, in run order.
pub const NTS: &[CaseDef] = &[
    CaseDef {
        name: "nts-exchange",
        title: "NTS-KE, then a protected request with 2 placeholders: an authentic reply (keys from the TLS exporter) echoing the Unique Identifier, 1-3 cookies, no longer than the request",
        requirements: &["R8915-4.3-exporter", "R8915-5.3-uid", "R8915-5.3-uid-always", "R8915-5.4-cookie-modes", "R8915-5.6-ad", "R8915-5.7-server-resp", "R8915-8.4-no-amp"],
        plan: |h, g| plan_nts(h, g, |keys, cookies, gen| protected(keys, cookies, 6, gen).map(|(b, _)| vec![b])),
        judge: judge_exchange,
        steps_max: 2,
    },
    CaseDef {
        name: "nts-modified",
        title: "a protected request with one header bit flipped after sealing: no authentic time reply (an NTSN kiss-o'-death, or nothing)",
        requirements: &["R8915-5.6-ad", "R8915-5.7-ntsn", "R8915-5.3-uid-always"],
        plan: |h, g| {
            plan_nts(h, g, |keys, cookies, gen| {
                let (mut b, _) = protected(keys, cookies, 8, gen)?;
                b[2] ^= 0x01;
                Some(vec![b])
            })
        },
        judge: judge_refused,
        steps_max: 2,
    },
    CaseDef {
        name: "nts-garbage-cookie",
        title: "a protected request with a random cookie of the right length: an NTSN kiss-o'-death echoing the Unique Identifier, without cookie or authenticator",
        requirements: &["R8915-5.7-ntsn", "R8915-5.3-uid-always", "R8915-5.6-ad"],
        plan: |h, g| {
            plan_nts(h, g, |keys, cookies, gen| {
                let len = cookies.first().map_or(100, Vec::len);
                let mut garbage = vec![0u8; len];
                gen.fill(&mut garbage);
                protected(keys, vec![garbage], 1, gen).map(|(b, _)| vec![b])
            })
        },
        judge: judge_refused,
        steps_max: 2,
    },
    CaseDef {
        name: "nts-unauthenticated-placeholders",
        title: "a protected request without placeholders, three placeholders appended after the authenticator: an authentic reply with exactly one cookie",
        requirements: &["R8915-5.7-unauth-ef", "R8915-8.4-no-amp"],
        plan: |h, g| {
            plan_nts(h, g, |keys, cookies, gen| {
                let (mut b, _) = protected(keys, cookies, 8, gen)?;
                let len = 100;
                for _ in 0..3 {
                    push_ef(&mut b, PLACEHOLDER_EF, &vec![0u8; len]);
                }
                Some(vec![b])
            })
        },
        judge: judge_unauth_placeholders,
        steps_max: 2,
    },
    CaseDef {
        name: "nts-uid-without-cookie",
        title: "a plain request carrying only a Unique Identifier: any reply echoes it",
        requirements: &["R8915-5.3-uid-always"],
        plan: |h, g| {
            plan_nts(h, g, |_, _, gen| {
                let mut b = cases::client(gen);
                let mut uid = [0u8; 32];
                gen.fill(&mut uid);
                push_ef(&mut b, UID_EF, &uid);
                Some(vec![b])
            })
        },
        judge: judge_uid_alone,
        steps_max: 2,
    },
];

/// An NTS case's request, the replies to it, and a session with its keys.
type Exchange<'a> = (&'a [u8], Vec<&'a [u8]>, ClientSession);

/// The NTS step's request and its replies, or the reason there are none.
fn nts_exchange(history: &[StepRecord]) -> Result<Exchange<'_>, String> {
    let (keys, _) = session_of(history)?;
    let step = history.get(1).ok_or("no NTS request was sent")?;
    let sent = step.sent.first().ok_or("no NTS request was sent")?;
    let replies: Vec<&[u8]> = step.replies.iter().map(|r| r.bytes.as_slice()).filter(|b| b.get(24..32) == sent.bytes.get(40..48)).collect();
    Ok((&sent.bytes, replies, ClientSession::new(keys, Vec::new())))
}

fn uid_of(packet: &[u8]) -> Option<&[u8]> {
    let mut pos = 48;
    while pos + 4 <= packet.len() {
        let t = u16::from_be_bytes([packet[pos], packet[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[pos + 2], packet[pos + 3]]));
        if len < 4 || pos + len > packet.len() {
            return None;
        }
        if t == UID_EF {
            return packet.get(pos + 4..pos + len);
        }
        pos += len;
    }
    None
}

fn judge_exchange(history: &[StepRecord]) -> Vec<Finding> {
    let reqs = NTS[0].requirements;
    let (request, replies, mut session) = match nts_exchange(history) {
        Ok(x) => x,
        Err(why) => return reqs.iter().map(|q| Finding::not_exercised(q, why.clone())).collect(),
    };
    let Some(pending) = PendingRequest::from_request(request) else { return Vec::new() };
    let Some(reply) = replies.first() else {
        let rule = "RFC 8915 §5.7: a valid request gets a response";
        return vec![Finding::fail("R8915-5.7-server-resp", rule, "no reply to a valid NTS request")];
    };
    let mut f = Vec::new();
    let echoed = uid_of(reply) == Some(pending.unique_id());
    f.push(Finding::check("R8915-5.3-uid", echoed, "RFC 8915 §5.3: the server echoes the Unique Identifier verbatim", "Unique Identifier echoed", "Unique Identifier not echoed"));
    f.push(Finding::check("R8915-5.3-uid-always", echoed, "RFC 8915 §5.3: every response to a request with a Unique Identifier carries it", "echoed", "not echoed"));
    let verdict = session.verify_response(&pending, reply);
    let amp = reply.len() <= request.len();
    f.push(Finding::check(
        "R8915-8.4-no-amp",
        amp,
        "RFC 8915 §8.4: the response's NTS fields are no larger than the request's",
        format!("reply {} octets, request {}", reply.len(), request.len()),
        format!("reply {} octets to a request of {}", reply.len(), request.len()),
    ));
    let mode_ok = reply.first().is_some_and(|b| b & 7 == 4);
    f.push(Finding::check("R8915-5.4-cookie-modes", mode_ok, "RFC 8915 §5.4: cookie and authenticator fields only in modes 3 and 4", "mode-4 reply", "the reply is not mode 4"));
    match verdict {
        Ok(ResponseKind::Time { new_cookies }) => {
            let want = 1..=pending.placeholders() + 1;
            f.push(Finding::pass("R8915-4.3-exporter", "the reply authenticates under the S2C key exported with RFC 8915 §5.1's label and context"));
            f.push(Finding::pass("R8915-5.6-ad", "the request's authenticator was accepted and the reply's verifies"));
            f.push(Finding::check(
                "R8915-5.7-server-resp",
                want.contains(&new_cookies),
                "RFC 8915 §5.7: 1 to 1 + placeholders new cookies, encrypted",
                format!("authentic reply, {new_cookies} new cookies for {} placeholders", pending.placeholders()),
                format!("authentic reply with {new_cookies} new cookies for {} placeholders", pending.placeholders()),
            ));
        }
        Ok(other) => {
            let why = format!("to a valid request: {other:?}");
            for q in ["R8915-4.3-exporter", "R8915-5.6-ad", "R8915-5.7-server-resp"] {
                f.push(Finding::fail(q, "RFC 8915 §5.7: a valid request gets an authentic time response", why.clone()));
            }
        }
        Err(e) => {
            let why = format!("the reply to a valid request does not verify: {e}");
            let q: &[&'static str] = if e == ResponseError::AuthenticationFailed { &["R8915-4.3-exporter", "R8915-5.6-ad", "R8915-5.7-server-resp"] } else { &["R8915-5.7-server-resp"] };
            for q in q {
                f.push(Finding::fail(q, "RFC 8915 §5.6, §5.7: the response authenticates under the exported S2C key", why.clone()));
            }
        }
    }
    f
}

/// Whether `reply` is an NTSN kiss-o'-death (stratum 0, "NTSN").
fn is_ntsn(reply: &[u8]) -> bool {
    reply.len() >= 48 && reply[1] == 0 && &reply[12..16] == b"NTSN"
}

fn has_ef(packet: &[u8], t: u16) -> bool {
    let mut pos = 48;
    while pos + 4 <= packet.len() {
        let ft = u16::from_be_bytes([packet[pos], packet[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[pos + 2], packet[pos + 3]]));
        if ft == t {
            return true;
        }
        if len < 4 {
            return false;
        }
        pos += len;
    }
    false
}

/// The modified-request and garbage-cookie cases: no authentic time reply;
/// an NTSN (if any) echoes the identifier and carries no cookie or authenticator.
fn judge_refused(history: &[StepRecord]) -> Vec<Finding> {
    let (request, replies, session) = match nts_exchange(history) {
        Ok(x) => x,
        Err(why) => {
            return ["R8915-5.6-ad", "R8915-5.7-ntsn", "R8915-5.3-uid-always"].iter().map(|q| Finding::not_exercised(q, why.clone())).collect();
        }
    };
    let Some(pending) = PendingRequest::from_request(request) else { return Vec::new() };
    let mut f = Vec::new();
    let authentic = replies.iter().any(|r| matches!(session.clone().verify_response(&pending, r), Ok(ResponseKind::Time { .. })));
    f.push(Finding::check(
        "R8915-5.6-ad",
        !authentic,
        "RFC 8915 §5.6: a request whose authenticator does not verify is not answered with time",
        "no authentic time reply",
        "an authentic time reply to a request that does not verify",
    ));
    let ntsn: Vec<&&[u8]> = replies.iter().filter(|r| is_ntsn(r)).collect();
    let rule = "RFC 8915 §5.7: an NTSN kiss-o'-death without New Cookie or Authenticator fields";
    f.push(match ntsn.first() {
        None if authentic => Finding::fail("R8915-5.7-ntsn", rule, "answered with authentic time instead of NTSN"),
        None if replies.is_empty() => Finding::pass("R8915-5.7-ntsn", "no reply (the request was discarded)"),
        None => Finding::fail("R8915-5.7-ntsn", rule, format!("{} replies, none an NTSN", replies.len())),
        Some(k) => Finding::check(
            "R8915-5.7-ntsn",
            !has_ef(k, 0x0404) && !has_ef(k, 0x0204),
            rule,
            "NTSN without cookie or authenticator",
            "NTSN carries a cookie or an authenticator field",
        ),
    });
    if let Some(k) = ntsn.first() {
        let echoed = uid_of(k) == Some(pending.unique_id());
        f.push(Finding::check("R8915-5.3-uid-always", echoed, "RFC 8915 §5.3, §5.7: an NTSN echoes the Unique Identifier", "NTSN echoes the Unique Identifier", "NTSN without the Unique Identifier"));
    }
    f
}

fn judge_unauth_placeholders(history: &[StepRecord]) -> Vec<Finding> {
    let (request, replies, mut session) = match nts_exchange(history) {
        Ok(x) => x,
        Err(why) => return ["R8915-5.7-unauth-ef", "R8915-8.4-no-amp"].iter().map(|q| Finding::not_exercised(q, why.clone())).collect(),
    };
    let Some(pending) = PendingRequest::from_request(request) else { return Vec::new() };
    let Some(reply) = replies.first() else {
        // Dropping the whole request discards the unauthenticated fields
        // too: nothing acted on them (chronyd 4.3 does this).
        return vec![Finding::pass("R8915-5.7-unauth-ef", "no reply: the server dropped the request with its unauthenticated fields, acting on none of them")];
    };
    let rule = "RFC 8915 §5.7: the server ignores extension fields after the authenticator (one cookie for a request without authenticated placeholders)";
    let mut f = vec![Finding::check(
        "R8915-8.4-no-amp",
        reply.len() <= request.len(),
        "RFC 8915 §8.4: no reply longer than the request",
        format!("reply {} octets, request {}", reply.len(), request.len()),
        format!("reply {} octets to a request of {}", reply.len(), request.len()),
    )];
    f.push(match session.verify_response(&pending, reply) {
        Ok(ResponseKind::Time { new_cookies: 1 }) => Finding::pass("R8915-5.7-unauth-ef", "authentic reply with one cookie: the three unauthenticated placeholders were ignored"),
        Ok(ResponseKind::Time { new_cookies }) => Finding::fail("R8915-5.7-unauth-ef", rule, format!("{new_cookies} cookies: unauthenticated placeholders were honoured")),
        Ok(other) => Finding::fail("R8915-5.7-unauth-ef", rule, format!("{other:?}")),
        Err(e) => Finding::fail("R8915-5.7-unauth-ef", rule, format!("the reply does not verify: {e}")),
    });
    f
}

fn judge_uid_alone(history: &[StepRecord]) -> Vec<Finding> {
    let Some(step) = history.get(1) else {
        let why = session_of(history).err().unwrap_or_else(|| "no request was sent".into());
        return vec![Finding::not_exercised("R8915-5.3-uid-always", why)];
    };
    let Some(sent) = step.sent.first() else { return Vec::new() };
    let uid = uid_of(&sent.bytes);
    let replies: Vec<&[u8]> = step.replies.iter().map(|r| r.bytes.as_slice()).filter(|b| b.get(24..32) == sent.bytes.get(40..48)).collect();
    if replies.is_empty() {
        return vec![Finding::pass("R8915-5.3-uid-always", "no reply to a request with a Unique Identifier but no cookie")];
    }
    let all = replies.iter().all(|r| uid_of(r) == uid && uid.is_some());
    vec![Finding::check(
        "R8915-5.3-uid-always",
        all,
        "RFC 8915 §5.3: a response to a request with a Unique Identifier echoes it, also without NTS",
        "the reply echoes the Unique Identifier",
        "a reply without the request's Unique Identifier",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::KeKeys;
    use ntplab_proto::nts::{process_request, KeServer, KeServerConfig, KeServerStep, MasterKeyConfig, MasterKeys, NtsRequest, SeededRng};
    use ntplab_proto::time::NtpTime;

    fn record(end: KeEnd, response: Vec<u8>, keys: Option<KeKeys>) -> StepRecord {
        let ke = KeRecord { server: "test".into(), tls_version: Some("TLSv1_3".into()), alpn: Some(ALPN_NTSKE.into()), response, end, keys };
        StepRecord { ke: Some(ke), ..StepRecord::default() }
    }

    /// What the core's own NTS-KE server answers to `request`.
    fn core_answer(request: &[u8], keys: &SessionKeys, master: &MasterKeys, rng: &mut SeededRng) -> Vec<u8> {
        let mut server = KeServer::new(&KeServerConfig::default());
        match server.receive(request) {
            KeServerStep::Respond { response, .. } => response,
            KeServerStep::ExportKeys(_) => server.respond(keys, master, rng),
            // No End of Message: what it sends when its timeout expires.
            KeServerStep::NeedMore => server.timed_out().unwrap_or_default(),
            KeServerStep::Finished => Vec::new(),
        }
    }

    /// Runs `case` with KE attempts answered by `ke` and datagrams by `ntp`.
    fn run(case: &CaseDef, ke: &mut dyn FnMut(&KeAttempt) -> StepRecord, ntp: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Vec<Finding> {
        let mut gen = Gen::new(NtpTime::UNIX_EPOCH + ntplab_proto::time::NtpDuration::from_seconds(3_900_000_000), 5);
        let mut history = Vec::new();
        while let Some(step) = (case.plan)(&history, &mut gen) {
            let rec = match &step.ke {
                Some(a) => ke(a),
                None => {
                    let sent: Vec<_> = step.requests.iter().map(|b| super::super::SentDatagram { bytes: b.clone(), sent: gen.now }).collect();
                    let replies = step.requests.iter().filter_map(|b| ntp(b)).map(|bytes| super::super::ReceivedDatagram { bytes, received: gen.now }).collect();
                    StepRecord { sent, replies, ke: None }
                }
            };
            history.push(rec);
            assert!(history.len() <= case.steps_max, "{}: more steps than steps_max", case.name);
        }
        let findings = (case.judge)(&history);
        for f in &findings {
            assert!(case.requirements.contains(&f.requirement), "{}: finding for undeclared {}", case.name, f.requirement);
        }
        findings
    }

    /// The core's KE server and NTS responder as one server: every case passes.
    #[test]
    fn the_cores_own_nts_server_passes_every_case_it_can() {
        let mut rng = SeededRng::new(9);
        let master = MasterKeys::new(MasterKeyConfig { rotation_period_s: 3600, keep_previous: 1 }, 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let mut server = ntplab_proto::server::Server::new(ntplab_proto::server::ServerConfig::default(), [7; 16]);
        let rx = NtpTime::UNIX_EPOCH + ntplab_proto::time::NtpDuration::from_seconds(3_900_000_000);
        let clock = ntplab_proto::server::ServerClockState {
            leap: ntplab_proto::wire::v4::LeapIndicator::NoWarning,
            stratum: 1,
            reference_id: ntplab_proto::wire::refid::ReferenceId::from_ascii("GPS"),
            reference_time: Some(rx),
            ..ntplab_proto::server::ServerClockState::unsynchronized(-20)
        };
        for case in NTS_KE.iter().chain(NTS) {
            let mut ke = |a: &KeAttempt| match a.tls {
                KeTls::Standard => {
                    let response = core_answer(&a.request, &keys, &master, &mut rng.clone());
                    let exported = KeKeys { aead: 15, c2s: keys.key(ntplab_proto::nts::Direction::ClientToServer).as_bytes().to_vec(), s2c: keys.key(ntplab_proto::nts::Direction::ServerToClient).as_bytes().to_vec() };
                    record(KeEnd::Closed, response, a.export.then_some(exported))
                }
                _ => record(KeEnd::NoSession("handshake: refused".into()), Vec::new(), None),
            };
            let mut ntp = |req: &[u8]| {
                let mut out = vec![0u8; 2048];
                let from = "127.0.0.1:40000".parse().unwrap();
                match server.handle_nts(0, from, req, rx, &clock, &master, &mut out) {
                    ntplab_proto::server::NtsServerAction::Respond(r) => {
                        let n = server.finish_nts_response(&r, &mut out, rx, &clock, &master, &mut SeededRng::new(3)).ok()?;
                        out.truncate(n);
                        Some(out)
                    }
                    _ => None,
                }
            };
            for f in run(case, &mut ke, &mut ntp) {
                assert_ne!(f.verdict, crate::probe::Verdict::Fail, "{}: {} {}", case.name, f.requirement, f.reason);
            }
        }
    }

    #[test]
    fn without_an_nts_ke_session_nothing_is_exercised_and_no_datagram_is_sent() {
        for case in NTS_KE.iter().chain(NTS) {
            let mut ke = |_: &KeAttempt| record(KeEnd::NoSession("connect to 127.0.0.1:4460: Connection refused".into()), Vec::new(), None);
            let mut ntp = |_: &[u8]| -> Option<Vec<u8>> { panic!("{}: a datagram without an NTS-KE session", case.name) };
            for f in run(case, &mut ke, &mut ntp) {
                assert_eq!(f.verdict, crate::probe::Verdict::NotExercised, "{}: {} {}", case.name, f.requirement, f.reason);
            }
        }
    }

    #[test]
    fn broken_ke_responses_fail_the_rules_they_break() {
        let judge = |case: &str, response: Vec<u8>, end: KeEnd| {
            let c = NTS_KE.iter().find(|c| c.name == case).unwrap();
            let mut ke = |_: &KeAttempt| record(end.clone(), response.clone(), None);
            let mut failed: Vec<_> = run(c, &mut ke, &mut |_| None).into_iter().filter(|f| f.verdict == crate::probe::Verdict::Fail).map(|f| f.requirement).collect();
            failed.sort_unstable();
            failed
        };
        let cookie = |critical: bool| rec(critical, Body::NewCookie(vec![1; 100]));
        let good = message(&[npn(&[0]), rec(true, Body::AeadAlgorithm(vec![AeadId(15)])), cookie(false), eom()]);
        assert!(judge("ke-minimal", good.clone(), KeEnd::Closed).is_empty());
        assert_eq!(judge("ke-minimal", good.clone(), KeEnd::StillOpen), ["R8915-4-one-exchange"]);
        let critical_cookie = message(&[npn(&[0]), aead(&[15]), cookie(true), eom()]);
        assert_eq!(judge("ke-minimal", critical_cookie, KeEnd::Closed), ["R8915-4.1.6-cookies"]);
        let two_aeads = message(&[npn(&[0]), aead(&[15, 30]), cookie(false), eom()]);
        assert_eq!(judge("ke-minimal", two_aeads, KeEnd::Closed), ["R8915-4.1.5-aead"]);
        let other_protocol = message(&[npn(&[0, 0x8001]), aead(&[15]), cookie(false), eom()]);
        assert_eq!(judge("ke-minimal", other_protocol, KeEnd::Closed), ["R8915-4.1.2-subset"]);
        let no_eom = message(&[npn(&[0]), aead(&[15]), cookie(false)]);
        assert!(judge("ke-minimal", no_eom, KeEnd::Closed).contains(&"R8915-4.1.1-eom"));
        // An Error 1 where an unknown critical record needs Error 0.
        let error1 = message(&[rec(true, Body::Error(ErrorCode::BAD_REQUEST)), eom()]);
        assert_eq!(judge("ke-unknown-records", error1, KeEnd::Closed), ["R8915-4-critical", "R8915-4-critical", "R8915-4.1.3-codes"]);
        // A TLS 1.2 session accepted.
        let c = NTS_KE.iter().find(|c| c.name == "ke-tls12").unwrap();
        let mut tls12 = |_: &KeAttempt| StepRecord { ke: Some(KeRecord { tls_version: Some("TLSv1_2".into()), ..record(KeEnd::Closed, good.clone(), None).ke.unwrap() }), ..StepRecord::default() };
        assert_eq!(run(c, &mut tls12, &mut |_| None)[0].verdict, crate::probe::Verdict::Fail);
    }

    #[test]
    fn a_request_read_back_names_its_identifier_and_an_nts_request_is_well_formed() {
        let mut rng = SeededRng::new(4);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let keys = SessionKeys::random(Aead::AesSivCmac256, &mut rng);
        let cookies: Vec<Vec<u8>> = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
        let mut gen = Gen::new(NtpTime::UNIX_EPOCH, 1);
        let (b, _) = protected(keys, cookies, 6, &mut gen).unwrap();
        assert!(matches!(process_request(&master, &b), NtsRequest::Protected(_)));
        assert_eq!(PendingRequest::from_request(&b).map(|p| p.placeholders()), Some(2));
        assert_eq!(uid_of(&b), PendingRequest::from_request(&b).as_ref().map(PendingRequest::unique_id));
    }
}
