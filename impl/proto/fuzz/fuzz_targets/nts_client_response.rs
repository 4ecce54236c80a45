//! NTS response verification on the client (nts::ntp::ClientSession::verify_response).
//!
//! Two inputs: the raw octets as a response, and the real reply with
//! input-chosen bytes XORed in. Nothing panics; a response is only accepted
//! as time if it is the real reply unchanged; a kiss-o'-death (stratum 0)
//! with the request's UID is the only unauthenticated answer accepted; and
//! anything but the real reply leaves the cookie jar untouched.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::nts::ResponseKind;
use std::sync::OnceLock;

fn fixtures() -> &'static Vec<common::Fixture> {
    static F: OnceLock<Vec<common::Fixture>> = OnceLock::new();
    F.get_or_init(|| common::AEADS.iter().map(|&a| common::fixture(a)).collect())
}

fuzz_target!(|data: &[u8]| {
    let fx = fixtures();
    let mut s = fx[0].session.clone();
    let before = s.jar().len();
    match s.verify_response(&fx[0].pending, data) {
        Ok(ResponseKind::Time { .. }) => assert_eq!(data, &fx[0].reply[..], "a forged response verified"),
        Ok(ResponseKind::NtsNak | ResponseKind::Kiss(_)) => {
            assert_eq!(data[1], 0, "only a kiss-o'-death may be unauthenticated");
            assert_eq!(s.jar().len(), before);
        }
        Err(_) => assert_eq!(s.jar().len(), before, "a rejected response changed the jar"),
    }
    let Some((&sel, edits)) = data.split_first() else { return };
    let f = &fx[usize::from(sel) % fx.len()];
    let mut t = f.reply.clone();
    common::mutate(&mut t, edits);
    let mut s = f.session.clone();
    let before = s.jar().len();
    match s.verify_response(&f.pending, &t) {
        Ok(ResponseKind::Time { new_cookies }) => {
            assert_eq!(t, f.reply, "a changed response verified");
            assert_eq!(new_cookies, 3);
        }
        Ok(ResponseKind::NtsNak | ResponseKind::Kiss(_)) => {
            // Unauthenticated by design (RFC 8915 §5.7): only a kiss-o'-death with our UID.
            assert_eq!(t[1], 0, "a changed reply read as a kiss-o'-death");
            assert_eq!(s.jar().len(), before);
        }
        Err(_) => assert_eq!(s.jar().len(), before),
    }
});
