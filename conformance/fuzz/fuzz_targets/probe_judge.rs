//! Every probe case's judge, and the probe reports, over arbitrary replies:
//! never a panic. The input picks a case (of every group); the rest becomes
//! reply datagrams spread over the case's steps, some with the origin (and
//! receive) timestamps of the request they answer patched in so the judges
//! go past the "does it answer this request" gate. An NTS-KE step gets the
//! next chunk as what the server sent, an ending picked by its control
//! octet, and (for an NTS case) keys of AEAD 15, so the NTS cases send and
//! judge protected requests.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_conformance::catalog::Catalog;
use ntplab_conformance::probe::{self, report, CaseDef, CaseResult, Gen, KeEnd, KeKeys, KeRecord, ProbeResult, ReceivedDatagram, SentDatagram, StepRecord};
use ntplab_proto::time::NtpTime;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(Catalog::builtin)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let all: Vec<(&'static str, &'static CaseDef)> = probe::GROUPS.iter().flat_map(|g| g.cases.iter().map(move |c| (g.name, c))).collect();
    let (group, case) = all[pick as usize % all.len()];
    let now = NtpTime::new(3_974_000_000, 0);
    let mut gen = Gen::new(now, 1);
    let mut history: Vec<StepRecord> = Vec::new();
    while history.len() < case.steps_max {
        let Some(step) = (case.plan)(&history, &mut gen) else { break };
        let mut rec = StepRecord { sent: step.requests.into_iter().map(|bytes| SentDatagram { bytes, sent: now }).collect(), replies: Vec::new(), ke: None };
        if let Some(attempt) = step.ke {
            let (ctl, len, r) = match rest {
                [c, l, r @ ..] => (*c, *l as usize * 8, r),
                _ => (0, 0, rest),
            };
            let n = len.min(r.len());
            let end = match ctl % 4 {
                0 => KeEnd::Closed,
                1 => KeEnd::StillOpen,
                2 => KeEnd::Error("reset".into()),
                _ => KeEnd::NoSession("handshake".into()),
            };
            let keys = attempt.export.then(|| KeKeys { aead: 15, c2s: vec![ctl; 32], s2c: vec![ctl ^ 0x55; 32] });
            rec.ke = Some(KeRecord { server: "fuzz".into(), tls_version: Some("TLSv1_3".into()), alpn: Some("ntske/1".into()), response: r[..n].to_vec(), end, keys });
            rest = &r[n..];
            history.push(rec);
            continue;
        }
        // Up to 20 replies per step, each: one control byte, one length
        // byte (x4), then the octets.
        while rec.replies.len() < 20 {
            let Some((&ctl, r)) = rest.split_first() else { break };
            let Some((&len, r)) = r.split_first() else { break };
            let n = (len as usize * 4).min(r.len());
            let mut bytes = r[..n].to_vec();
            rest = &r[n..];
            if let Some(req) = rec.sent.get(ctl as usize % rec.sent.len().max(1)) {
                if ctl & 0x80 != 0 && bytes.len() >= 32 && req.bytes.len() >= 48 {
                    bytes[24..32].copy_from_slice(&req.bytes[40..48]);
                }
                if ctl & 0x40 != 0 && bytes.len() >= 32 && req.bytes.len() >= 48 {
                    bytes[24..32].copy_from_slice(&req.bytes[32..40]);
                }
            }
            rec.replies.push(ReceivedDatagram { bytes, received: now });
        }
        history.push(rec);
        if rest.is_empty() && pick & 1 == 0 {
            break;
        }
    }
    let result = CaseResult::judge(group, case, history, 0.0);
    assert!(result.findings.iter().all(|f| case.requirements.contains(&f.requirement)));
    let decode = |b: &[u8]| probe::hex(b);
    let _ = report::evidence(&result, &decode);
    // The whole report (catalog table, JSON, JUnit) for one input in 32:
    // it costs about as much as everything else together.
    if pick & 0xF8 != 0xF8 {
        return;
    }
    let overall = probe::overall_case(std::slice::from_ref(&result));
    let groups: Vec<&'static probe::Group> = probe::GROUPS.iter().collect();
    let r = ProbeResult::new(catalog(), "127.0.0.1:123".into(), &groups, vec![result, overall], None);
    let _ = report::text(&r);
    let _ = report::junit(&r);
    let _ = report::json(&r, &decode);
});
