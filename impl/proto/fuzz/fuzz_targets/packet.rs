//! Whole packets (`wire::parse_packet`: v1-v4 header + extension fields + MAC,
//! or v5 header + v5 fields), and mode 6/7 control and private messages
//! (`wire::control`): any input with a whole header parses, emits the exact
//! input bytes back, and re-parses to the same value; problems never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::wire::control::{Packet as ControlPacket, PrivatePacket, PrivateRepr, Repr as ControlRepr};
use ntplab_proto::wire::{parse_packet, DecodedPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::new_checked(data) {
        if let Ok(first) = ControlRepr::parse(&packet) {
            let bytes = first.to_bytes();
            assert_eq!(&bytes[..], data, "control message: emit must reproduce the input");
            let second = ControlRepr::parse(&ControlPacket::new_checked(&bytes[..]).unwrap()).unwrap();
            assert_eq!(first, second);
            let _ = (first.status(), first.problems(), first.data_is_text());
        }
    }
    if let Ok(packet) = PrivatePacket::new_checked(data) {
        if let Ok(first) = PrivateRepr::parse(&packet) {
            let bytes = first.to_bytes();
            assert_eq!(&bytes[..], data, "private message: emit must reproduce the input");
            assert_eq!(PrivateRepr::parse(&PrivatePacket::new_checked(&bytes[..]).unwrap()).unwrap(), first);
            let _ = first.problems();
        }
    }
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
