//! The NTPv4 header: whatever the bytes, `Repr::parse` must not panic, and a
//! header that parses must emit, re-parse to the same value and re-emit the
//! same bytes, which are the input's first 48 octets (every field is kept).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::wire::v4::{Packet, Repr, HEADER_LEN};

fn emit(repr: &Repr) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    buf
}

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(data.len() < HEADER_LEN);
        return;
    };
    let Ok(first) = Repr::parse(&packet) else {
        return;
    };
    let bytes = emit(&first);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(&bytes[..], &data[..HEADER_LEN], "emit must reproduce the header");
    let second = Repr::parse(&Packet::new_checked(&bytes[..]).expect("emitted header has a valid length"))
        .expect("emitted header must re-parse");
    assert_eq!(first, second);
    assert_eq!(emit(&second), bytes);
    assert_eq!(first.to_bytes()[..], bytes[..]);
    let _ = (first.problems(), first.is_kiss_of_death());
});
