//! Server cookie decryption (nts::cookie::MasterKeys::open).
//!
//! Arbitrary octets never open (they would have to forge AES-SIV), and
//! neither does a real cookie with any input-chosen byte changed; the real
//! cookie itself opens to the keys sealed into it.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ntplab_proto::nts::{MasterKeyConfig, MasterKeys, SessionKeys};
use std::sync::OnceLock;

struct Fix {
    master: MasterKeys,
    cookies: Vec<(Vec<u8>, SessionKeys)>,
}

fn fix() -> &'static Fix {
    static F: OnceLock<Fix> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = common::rng(3);
        let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
        let cookies = common::AEADS
            .iter()
            .map(|&a| {
                let k = SessionKeys::random(a, &mut rng);
                (master.seal(&k, &mut rng), k)
            })
            .collect();
        Fix { master, cookies }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fix();
    assert!(f.master.open(data).is_err() || f.cookies.iter().any(|(c, _)| c == data), "forged cookie opened");
    let Some((&sel, edits)) = data.split_first() else { return };
    let (cookie, keys) = &f.cookies[usize::from(sel) % f.cookies.len()];
    let mut t = cookie.clone();
    common::mutate(&mut t, edits);
    if sel & 0x80 != 0 {
        t.truncate(usize::from(sel & 0x7f) % (t.len() + 1));
    }
    match f.master.open(&t) {
        Ok(k) => {
            assert_eq!(&t, cookie, "a changed cookie opened");
            assert_eq!(&k, keys);
        }
        Err(_) => assert_ne!(&t, cookie, "the real cookie must open"),
    }
});
