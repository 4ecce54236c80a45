//! Whole packets (`wire::parse_packet`: v1-v4 header + extension fields + MAC,
//! or v5 header + v5 fields): any input with a whole header parses, emits the
//! exact input bytes back, and re-parses to the same value; problems never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::wire::{parse_packet, DecodedPacket};

fuzz_target!(|data: &[u8]| {
    let Ok(first) = parse_packet(data) else {
        return;
    };
    let bytes = first.to_bytes();
    assert_eq!(bytes.len(), first.buffer_len());
    assert_eq!(&bytes[..], data, "emit must reproduce the input");
    let second = DecodedPacket::parse(&bytes).expect("emitted packet must re-parse");
    assert_eq!(first, second);
    assert_eq!(second.to_bytes(), bytes);
    let _ = (first.problems(), first.version(), first.mode(), first.error());
    let _ = ntplab_proto::wire::nts::spans(data);
});
