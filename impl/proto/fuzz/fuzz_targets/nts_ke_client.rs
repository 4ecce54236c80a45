//! NTS-KE client state machine (nts::ke::KeClient).
//!
//! The input is a server response, fed whole and in chunks of input-derived
//! sizes: both runs must give the same result. An accepted response has an
//! offered AEAD, at least one non-empty cookie and an ASCII server name; a
//! response refused as too long is one the wire scanner refuses under the
//! same limit.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::nts::{KeClient, KeClientConfig, KeClientStep, KeError};
use ntplab_proto::wire::ntske::MessageReader;

fn run(pieces: &[&[u8]]) -> KeClientStep {
    let mut c = KeClient::new(KeClientConfig::default());
    for p in pieces {
        match c.receive(p) {
            KeClientStep::NeedMore => {}
            KeClientStep::Finished => panic!("Finished before a result"),
            done => return done,
        }
    }
    match c.end_of_input() {
        Some(e) => KeClientStep::Done(Err(e)),
        None => panic!("end_of_input after NeedMore must report the truncation"),
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let split = run(&common::chunks(data, data.last().copied().unwrap_or(0)));
    assert_eq!(whole, split, "the result must not depend on how the bytes were split");
    match whole {
        KeClientStep::Done(Ok(resp)) => {
            assert!(KeClientConfig::default().aeads.contains(&resp.aead));
            assert!(!resp.cookies.is_empty() && resp.cookies.iter().all(|c| !c.is_empty()));
            if let Some(s) = &resp.ntp_server {
                assert!(!s.is_empty() && s.is_ascii() && !s.contains('%'));
            }
        }
        KeClientStep::Done(Err(e)) => {
            assert!(!e.to_string().is_empty());
            if let KeError::TooLong { limit } = e {
                // The wire scanner under the same limit refuses it too (as too long, or
                // malformed where the oversize record also breaks a length rule).
                assert!(MessageReader::with_max_len(limit).scan(data).is_err(), "refused as too long below the limit");
            }
        }
        other => panic!("{other:?}"),
    }
});
