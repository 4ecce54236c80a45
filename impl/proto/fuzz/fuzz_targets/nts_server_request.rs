//! NTS request processing on the server (nts::ntp::process_request and the
//! reply writers).
//!
//! Two inputs: the raw octets as a request, and a real NTS request with
//! input-chosen bytes XORed in. Nothing panics; a request only verifies if
//! it is the real one unchanged; every reply (sealed or NTSN) is no longer
//! than the request, and a sealed reply verifies at the client.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::nts::{process_request, NtsRequest, ResponseKind};
use std::sync::OnceLock;

fn fixtures() -> &'static Vec<common::Fixture> {
    static F: OnceLock<Vec<common::Fixture>> = OnceLock::new();
    F.get_or_init(|| common::AEADS.iter().map(|&a| common::fixture(a)).collect())
}

fn answer(f: &common::Fixture, request: &[u8]) -> Option<Vec<u8>> {
    let mut rng = common::rng(request.len() as u64);
    let mut out = vec![0u8; 2048];
    out[0] = 0x24;
    out[1] = 2;
    match process_request(&f.master, request) {
        NtsRequest::Protected(p) => {
            let n = p.seal_reply(&mut out, &f.master, &mut rng).ok()?;
            assert!(n <= request.len(), "reply {n} longer than request {}", request.len());
            out.truncate(n);
            Some(out)
        }
        NtsRequest::Nak(nak) => {
            let n = nak.write(-20, &mut out).expect("NTSN fits");
            assert!(n <= request.len());
            None
        }
        NtsRequest::Plain | NtsRequest::Drop(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixtures();
    let _ = answer(&fx[0], data);
    let Some((&sel, edits)) = data.split_first() else { return };
    let f = &fx[usize::from(sel) % fx.len()];
    let mut t = f.request.clone();
    common::mutate(&mut t, edits);
    if let Some(reply) = answer(f, &t) {
        assert_eq!(t, f.request, "a changed request verified");
        let mut session = f.session.clone();
        assert_eq!(session.verify_response(&f.pending, &reply), Ok(ResponseKind::Time { new_cookies: 3 }));
    }
});
