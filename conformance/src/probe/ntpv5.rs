//! The NTPv5 probe cases (draft-ietf-ntp-ntpv5, spoken as draft-08, the
//! draft ntpd-rs 1.9 and ntplab serve answer): a request with the Draft
//! Identification, Server Information and Reference IDs Request fields and
//! what a draft server must answer, drafts it does not know, modes and
//! unknown fields it must drop or ignore, and the NTPv4 upgrade marker.
//!
//! Every case's first request is a valid draft-08 request (the control): a
//! server that does not answer it does not speak NTPv5, and the case's
//! requirements are "not applicable" rather than judged on silence.

use super::{cases, CaseDef, Finding, Gen, Step, StepRecord};
use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::wire::ext::{FieldRepr, FieldType};
use ntplab_proto::wire::v4::{LeapIndicator, Mode};
use ntplab_proto::wire::v5::{self, Draft, FieldBody, Timescale};

/// The draft the probe speaks.
pub const DRAFT: Draft = Draft::D08;

/// The Bloom filter chunk the probe asks for (octets).
pub const CHUNK: usize = 16;

/// An NTPv5 draft name no draft has.
pub const UNKNOWN_DRAFT: &str = "draft-ietf-ntp-ntpv5-99";

/// An extension field type in the NTPv5 draft range that no draft assigns.
pub const UNKNOWN_V5_EF: u16 = 0xF5AA;

/// The NTPv4 upgrade marker of the drafts ("NTP5DRFT", draft-07 §12).
pub const UPGRADE_MARKER: u64 = 0x4E54_5035_4452_4654;

const NOT_V5: &str = "the server does not answer NTPv5 (no reply to a valid draft-08 request)";

fn field(body: FieldBody) -> Vec<u8> {
    body.to_field().to_bytes()
}

/// A draft-08 request: header (UTC, a fresh client cookie, mode `mode`),
/// Draft Identification `draft`, Server Information, a Reference IDs
/// Request for the first chunk, then `extra`.
fn request(gen: &mut Gen, mode: u8, draft: &str, extra: &[u8]) -> Vec<u8> {
    let mut header = v5::Repr::request(Timescale::Utc, gen.next_u64() | 1);
    header.mode = Mode::from_bits(mode);
    let mut out = header.to_bytes().to_vec();
    out.extend(field(FieldBody::DraftIdentification { name: draft.as_bytes().to_vec() }));
    out.extend(field(FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }));
    out.extend(field(FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; CHUNK - 2] }));
    out.extend_from_slice(extra);
    out
}

fn control(gen: &mut Gen) -> Vec<u8> {
    request(gen, 3, DRAFT.name(), &[])
}

/// The NTPv5 replies to request `i` of the step: version 5 and the request's client cookie.
fn replies_to(step: &StepRecord, i: usize) -> Vec<&[u8]> {
    let Some(cookie) = step.sent.get(i).and_then(|s| s.bytes.get(24..32)) else { return Vec::new() };
    step.replies.iter().map(|r| r.bytes.as_slice()).filter(|b| b.len() >= v5::HEADER_LEN && b[0] >> 3 & 7 == 5 && b.get(24..32) == Some(cookie)).collect()
}

fn fields(reply: &[u8]) -> Vec<FieldRepr> {
    v5::parse_extensions(reply.get(v5::HEADER_LEN..).unwrap_or(&[])).fields
}

fn body(reply: &[u8], t: FieldType) -> Option<FieldBody> {
    fields(reply).iter().filter(|f| f.field_type == t).find_map(|f| FieldBody::parse(f).and_then(Result::ok))
}

/// The control's reply, or the findings that say the server speaks no NTPv5.
fn control_reply<'a>(history: &'a [StepRecord], requirements: &[&'static str]) -> Result<(&'a StepRecord, &'a [u8]), Vec<Finding>> {
    let na = || requirements.iter().map(|q| Finding::not_applicable(q, NOT_V5)).collect::<Vec<_>>();
    let step = history.first().ok_or_else(na)?;
    let reply = *replies_to(step, 0).first().ok_or_else(na)?;
    Ok((step, reply))
}

/// Every NTPv5 case, in run order.
pub const NTPV5: &[CaseDef] = &[
    CaseDef {
        name: "v5-basic",
        title: "a draft-08 request with Draft Identification, Server Information and a Reference IDs Request: a version-5 mode-4 reply of the same length with the cookie, UTC, the era, the synchronized flag, the draft echoed, the versions supported and the chunk",
        requirements: &[
            "RV5-6-header",
            "RV5-6-client-cookie",
            "RV5-6-li",
            "RV5-6-stratum",
            "RV5-6-flags",
            "RV5-6-timescale",
            "RV5-6-era",
            "RV5-7-ef-echo-pad",
            "RV5-7-server-efs",
            "RV5-7.1-draft-id",
            "RV5-7.5-server-info",
            "RV5-7.4-refid-bloom",
        ],
        plan: |h, gen| h.is_empty().then(|| Step::answered(vec![control(gen)])),
        judge: judge_basic,
        steps_max: 1,
    },
    CaseDef {
        name: "v5-unknown-draft",
        title: "a request naming draft -99: not answered (a server answers only drafts it knows)",
        requirements: &["RV5-7.1-draft-id"],
        plan: |h, gen| h.is_empty().then(|| Step::answered(vec![control(gen), request(gen, 3, UNKNOWN_DRAFT, &[])])),
        judge: |h| judge_dropped(h, "RV5-7.1-draft-id", "a request naming draft -99", "draft-ietf-ntp-ntpv5 §7.1: a server answers only the drafts it implements"),
        steps_max: 1,
    },
    CaseDef {
        name: "v5-modes",
        title: "version-5 requests in modes 1 and 4: dropped",
        requirements: &["RV5-10-drop"],
        plan: |h, gen| h.is_empty().then(|| Step::answered(vec![control(gen), request(gen, 1, DRAFT.name(), &[]), request(gen, 4, DRAFT.name(), &[])])),
        judge: |h| judge_dropped(h, "RV5-10-drop", "a version-5 request in mode 1 or 4", "draft-ietf-ntp-ntpv5 §10: requests of a mode other than 3 are dropped"),
        steps_max: 1,
    },
    CaseDef {
        name: "v5-unknown-field",
        title: "a request with an extension field of an unassigned type: answered as without it, the reply as long as the request",
        requirements: &["RV5-10-drop", "RV5-7-ef-echo-pad"],
        plan: |h, gen| {
            h.is_empty().then(|| {
                let mut unknown = UNKNOWN_V5_EF.to_be_bytes().to_vec();
                unknown.extend(16u16.to_be_bytes());
                unknown.extend([0x5a; 12]);
                Step::answered(vec![control(gen), request(gen, 3, DRAFT.name(), &unknown)])
            })
        },
        judge: judge_unknown_field,
        steps_max: 1,
    },
    CaseDef {
        name: "v5-upgrade-offer",
        title: "an NTPv4 request with the \"NTP5DRFT\" reference timestamp: a server that speaks NTPv5 echoes it",
        requirements: &["RV5-12-negotiation"],
        plan: |h, gen| {
            h.is_empty().then(|| {
                let mut v4 = cases::client(gen);
                v4[16..24].copy_from_slice(&UPGRADE_MARKER.to_be_bytes());
                Step::answered(vec![control(gen), v4])
            })
        },
        judge: judge_upgrade,
        steps_max: 1,
    },
];

fn judge_basic(history: &[StepRecord]) -> Vec<Finding> {
    let (step, reply) = match control_reply(history, NTPV5[0].requirements) {
        Ok(x) => x,
        Err(f) => return f,
    };
    let Some(sent) = step.sent.first().map(|s| s.bytes.as_slice()) else { return Vec::new() };
    let Ok(h) = v5::Packet::new_checked(reply).and_then(|p| v5::Repr::parse(&p)) else {
        return vec![Finding::fail("RV5-6-header", "draft-ietf-ntp-ntpv5 §6: a 48-octet header", "the reply does not parse as NTPv5")];
    };
    let mut f = Vec::new();
    f.push(Finding::check(
        "RV5-6-header",
        h.mode == Mode::Server && reply.len() % 4 == 0,
        "draft-ietf-ntp-ntpv5 §6: version 5, mode 4, a length that is a multiple of 4",
        format!("version 5, mode 4, {} octets", reply.len()),
        format!("mode {:?}, {} octets", h.mode, reply.len()),
    ));
    f.push(Finding::pass("RV5-6-client-cookie", "the reply carries the request's client cookie"));
    let synced = h.flags.synchronized();
    f.push(Finding::check(
        "RV5-6-flags",
        !synced || (1..=15).contains(&h.stratum),
        "draft-ietf-ntp-ntpv5 §6: only a synchronized server sets the Synchronized flag",
        format!("flags {:?}, stratum {}", h.flags, h.stratum),
        format!("Synchronized flag at stratum {}", h.stratum),
    ));
    f.push(Finding::check(
        "RV5-6-li",
        !synced || h.leap != LeapIndicator::Unsynchronized,
        "draft-ietf-ntp-ntpv5 §6: LI 3 only without leap information",
        format!("LI {:?}", h.leap),
        "LI 3 with the Synchronized flag",
    ));
    f.push(Finding::check(
        "RV5-6-stratum",
        h.stratum <= 15,
        "draft-ietf-ntp-ntpv5 §6: stratum above 15 only when configured",
        format!("stratum {}", h.stratum),
        format!("stratum {}", h.stratum),
    ));
    f.push(Finding::check(
        "RV5-6-timescale",
        h.timescale == Timescale::Utc,
        "draft-ietf-ntp-ntpv5 §6: the requested timescale (UTC) when supported",
        "UTC, as asked",
        format!("timescale {:?} to a request for UTC", h.timescale),
    ));
    let era_ok = h.receive_timestamp.is_zero() || h.era == sent_era(history);
    f.push(Finding::check(
        "RV5-6-era",
        era_ok,
        "draft-ietf-ntp-ntpv5 §6: the era of the receive timestamp",
        format!("era {}", h.era),
        format!("era {} (the probe's clock is in era {})", h.era, sent_era(history)),
    ));
    f.push(Finding::check(
        "RV5-7-ef-echo-pad",
        reply.len() == sent.len(),
        "draft-ietf-ntp-ntpv5 §7: the response is as long as the request (padding makes up for fields left out)",
        format!("{} octets to {}", reply.len(), sent.len()),
        format!("{} octets to a request of {}", reply.len(), sent.len()),
    ));
    let draft = body(reply, FieldType::V5DraftIdentification);
    f.push(Finding::check(
        "RV5-7.1-draft-id",
        draft == Some(FieldBody::DraftIdentification { name: DRAFT.name().as_bytes().to_vec() }),
        "draft-ietf-ntp-ntpv5 §7.1: the reply identifies the same draft",
        format!("Draft Identification {}", DRAFT.name()),
        format!("Draft Identification {draft:?}"),
    ));
    let info = body(reply, FieldType::V5ServerInformation);
    let versions = match info {
        Some(FieldBody::ServerInformation { supported_versions, .. }) => Some(supported_versions),
        _ => None,
    };
    f.push(Finding::check(
        "RV5-7.5-server-info",
        versions.is_some_and(|v| v & (1 << 4) != 0),
        "draft-ietf-ntp-ntpv5-07 §7.5 (and the editors' copy of 2026-01): Server Information lists the versions served (bit 4: NTPv5)",
        format!("supported versions {:#06x}", versions.unwrap_or(0)),
        format!("Server Information {info:?}"),
    ));
    f.push(Finding::check(
        "RV5-7-server-efs",
        versions.is_some(),
        "draft-ietf-ntp-ntpv5-07 §7 (and the editors' copy of 2026-01): servers MUST support Padding, Server Information and Reference IDs",
        "Server Information answered",
        "no Server Information in the reply",
    ));
    let chunk = match body(reply, FieldType::V5ReferenceIdsResponse) {
        Some(FieldBody::ReferenceIdsResponse { chunk }) => Some(chunk.len()),
        _ => None,
    };
    f.push(match chunk {
        Some(n) => Finding::check(
            "RV5-7.4-refid-bloom",
            n == CHUNK,
            "draft-ietf-ntp-ntpv5 §7.4: the response chunk is as long as the request's",
            format!("a {n}-octet chunk of the Reference IDs filter"),
            format!("a {n}-octet chunk to a {CHUNK}-octet request"),
        ),
        None => Finding::not_applicable("RV5-7.4-refid-bloom", "no Reference IDs Response (a server that synchronizes to no other server need not send one)"),
    });
    f
}

/// The era of the probe's clock when it sent the step's first request.
fn sent_era(history: &[StepRecord]) -> u8 {
    history.first().and_then(|s| s.sent.first()).map_or(0, |s| s.sent.era().rem_euclid(256) as u8)
}

/// Cases whose requests after the control must go unanswered.
fn judge_dropped(history: &[StepRecord], requirement: &'static str, what: &str, rule: &'static str) -> Vec<Finding> {
    let (step, _) = match control_reply(history, &[requirement]) {
        Ok(x) => x,
        Err(f) => return f,
    };
    let answered: usize = (1..step.sent.len()).map(|i| replies_to(step, i).len()).sum();
    vec![Finding::check(requirement, answered == 0, rule, format!("{what}: not answered"), format!("{what}: {answered} replies"))]
}

fn judge_unknown_field(history: &[StepRecord]) -> Vec<Finding> {
    let (step, _) = match control_reply(history, &["RV5-10-drop", "RV5-7-ef-echo-pad"]) {
        Ok(x) => x,
        Err(f) => return f,
    };
    let Some(sent) = step.sent.get(1) else { return Vec::new() };
    let Some(reply) = replies_to(step, 1).first().copied() else {
        return vec![Finding::fail("RV5-10-drop", "draft-ietf-ntp-ntpv5 §10: unknown extension fields are ignored", "a request with an unassigned field type went unanswered")];
    };
    vec![
        Finding::pass("RV5-10-drop", "a request with an unassigned field type was answered"),
        Finding::check(
            "RV5-7-ef-echo-pad",
            reply.len() == sent.bytes.len() && !fields(reply).iter().any(|f| f.field_type.to_u16() == UNKNOWN_V5_EF),
            "draft-ietf-ntp-ntpv5 §7: a field the server does not support is not echoed; padding keeps the length",
            format!("{} octets to {}, the unknown field not echoed", reply.len(), sent.bytes.len()),
            format!("{} octets to {} (or the unknown field echoed)", reply.len(), sent.bytes.len()),
        ),
    ]
}

fn judge_upgrade(history: &[StepRecord]) -> Vec<Finding> {
    let (step, _) = match control_reply(history, &["RV5-12-negotiation"]) {
        Ok(x) => x,
        Err(f) => return f,
    };
    let Some(tx) = step.sent.get(1).and_then(|s| s.bytes.get(40..48)) else { return Vec::new() };
    let reply = step.replies.iter().map(|r| r.bytes.as_slice()).find(|b| b.len() >= 48 && b[0] >> 3 & 7 == 4 && b.get(24..32) == Some(tx));
    let marker = UPGRADE_MARKER.to_be_bytes();
    vec![match reply {
        None => Finding::fail("RV5-12-negotiation", "draft-ietf-ntp-ntpv5 §12: the NTPv4 request is answered", "the NTPv4 request with the upgrade marker went unanswered"),
        Some(r) => Finding::check(
            "RV5-12-negotiation",
            r.get(16..24) == Some(&marker[..]),
            "draft-ietf-ntp-ntpv5 §12: a server that speaks NTPv5 echoes the upgrade marker in the reference timestamp",
            "the marker \"NTP5DRFT\" echoed",
            format!("reference timestamp {:016x}, not the marker", r.get(16..24).map_or(0, |b| NtpTimestamp::from_bits(u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))).to_bits())),
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ReceivedDatagram, SentDatagram, Verdict};
    use ntplab_proto::server::{Server, ServerAction, ServerClockState, ServerConfig};
    use ntplab_proto::time::{NtpDuration, NtpTime};

    fn run(case: &CaseDef, answer: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Vec<Finding> {
        let now = NtpTime::UNIX_EPOCH + NtpDuration::from_seconds(3_950_000_000);
        let mut gen = Gen::new(now, 3);
        let mut history = Vec::new();
        while let Some(step) = (case.plan)(&history, &mut gen) {
            let replies = step.requests.iter().filter_map(|r| answer(r)).map(|bytes| ReceivedDatagram { bytes, received: now }).collect();
            history.push(StepRecord { sent: step.requests.into_iter().map(|bytes| SentDatagram { bytes, sent: now }).collect(), replies, ke: None });
            assert!(history.len() <= case.steps_max, "{}", case.name);
        }
        let f = (case.judge)(&history);
        assert!(f.iter().all(|x| case.requirements.contains(&x.requirement)), "{}: undeclared finding", case.name);
        f
    }

    #[test]
    fn a_server_without_ntpv5_makes_every_case_not_applicable() {
        for case in NTPV5 {
            for f in run(case, &mut |_| None) {
                assert_eq!(f.verdict, Verdict::NotApplicable, "{}: {}", case.name, f.reason);
            }
        }
    }

    #[test]
    fn the_cores_own_responder_passes_every_case_and_a_v4_only_one_is_told_apart() {
        let now = NtpTime::UNIX_EPOCH + NtpDuration::from_seconds(3_950_000_000);
        let clock = ServerClockState {
            leap: LeapIndicator::NoWarning,
            stratum: 1,
            reference_id: ntplab_proto::wire::refid::ReferenceId::from_ascii("GPS"),
            reference_time: Some(now),
            ..ServerClockState::unsynchronized(-20)
        };
        for ntpv5 in [true, false] {
            let mut server = Server::new(ServerConfig { ntpv5, ..ServerConfig::default() }, [1; 16]);
            for case in NTPV5 {
                let mut answer = |req: &[u8]| {
                    let mut out = vec![0u8; 2048];
                    match server.handle(0, "127.0.0.1:4000".parse().unwrap(), req, now, &clock, &mut out) {
                        ServerAction::Respond(r) => {
                            server.finish_response(&r, &mut out, now, &clock);
                            out.truncate(r.len);
                            Some(out)
                        }
                        ServerAction::Ignore(_) => None,
                    }
                };
                for f in run(case, &mut answer) {
                    let want = if ntpv5 { Verdict::Pass } else { Verdict::NotApplicable };
                    assert_eq!(f.verdict, want, "ntpv5 {ntpv5}, {}: {} {}", case.name, f.requirement, f.reason);
                }
            }
        }
    }
}
