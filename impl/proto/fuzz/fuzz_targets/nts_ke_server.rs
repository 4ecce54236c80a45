//! NTS-KE server state machine (nts::ke::KeServer).
//!
//! The input is fed whole and in chunks of input-derived sizes: both runs
//! must give the same answer. Every answer parses as an NTS-KE message that
//! passes the response checks; an Error response carries the code the
//! KeError names; a request that reaches ExportKeys gets a response whose
//! cookies open under the master keys to the exported keys.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::nts::{KeServer, KeServerConfig, KeServerOutcome, KeServerStep, MasterKeyConfig, MasterKeys, SessionKeys};
use ntplab_proto::wire::ntske::{check_response, parse_message, Body};

fn run(pieces: &[&[u8]]) -> (KeServerStep, Option<Vec<u8>>) {
    let mut s = KeServer::new(&KeServerConfig::default());
    let mut last = KeServerStep::NeedMore;
    for p in pieces {
        match s.receive(p) {
            KeServerStep::NeedMore => {}
            KeServerStep::Finished => panic!("Finished before an answer"),
            step => {
                last = step;
                break;
            }
        }
    }
    let early = if last == KeServerStep::NeedMore { s.end_of_input() } else { None };
    (last, early)
}

fuzz_target!(|data: &[u8]| {
    let (whole, early_whole) = run(&[data]);
    let pieces = common::chunks(data, data.first().copied().unwrap_or(0));
    let (split, early_split) = run(&pieces);
    assert_eq!(whole, split, "the answer must not depend on how the bytes were split");
    assert_eq!(early_whole, early_split);
    let mut rng = common::rng(7);
    match whole {
        KeServerStep::NeedMore => {
            let r = parse_message(&early_whole.expect("an incomplete request gets Bad Request")).unwrap();
            assert_eq!(r[0].body, Body::Error(ntplab_proto::wire::ntske::ErrorCode::BAD_REQUEST));
        }
        KeServerStep::Respond { response, outcome } => {
            let r = parse_message(&response).expect("responses parse");
            assert!(check_response(&r).is_empty(), "{:?}", check_response(&r));
            if let KeServerOutcome::Refused(e) = outcome {
                assert_eq!(r[0].body, Body::Error(e.error_code()));
            }
        }
        KeServerStep::ExportKeys(aead) => {
            let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
            let keys = SessionKeys::random(aead, &mut rng);
            let mut s = KeServer::new(&KeServerConfig::default());
            assert_eq!(s.receive(data), KeServerStep::ExportKeys(aead));
            let r = parse_message(&s.respond(&keys, &master, &mut rng)).expect("responses parse");
            assert!(check_response(&r).is_empty());
            let cookies: Vec<_> = r.iter().filter_map(|r| match &r.body { Body::NewCookie(c) => Some(c), _ => None }).collect();
            assert_eq!(cookies.len(), 8);
            for c in cookies {
                assert_eq!(master.open(c).expect("own cookie opens"), keys);
            }
        }
        KeServerStep::Finished => unreachable!(),
    }
});
