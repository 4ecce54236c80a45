//! NTS-KE records and messages (wire::ntske).
//!
//! 1. Round trip, as ntpd-rs's packet_parsing_sound: if `parse_message`
//!    accepts the input, emitting gives the input back, re-parsing gives the
//!    same records and re-emitting the same bytes; the rule checks run.
//! 2. One record: a record view that parses emits its own octets.
//! 3. The scanner agrees with the parser on the whole input.
//! 4. Incremental: the input is fed to `MessageReader::scan` in chunks whose
//!    sizes come from a PRNG seeded by the input's own bytes, under a limit
//!    also chosen by the input; every answer must be consistent with scanning
//!    the whole input at once, `needed` must grow and exceed what is buffered,
//!    and a complete message must decode to what `parse_message` gives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::wire::ntske::{
    check_exchange, check_request, check_response, message_to_bytes, parse_message, MessageReader, Progress, Record,
    Repr, DEFAULT_MAX_MESSAGE_LEN,
};

fn round_trip(bytes: &[u8]) {
    let Ok(first) = parse_message(bytes) else {
        return;
    };
    let out = message_to_bytes(&first);
    assert_eq!(out, bytes, "emit must reproduce a parsed message");
    let second = parse_message(&out).expect("emitted message must re-parse");
    assert_eq!(first, second);
    assert_eq!(message_to_bytes(&second), out);
    let _ = (check_request(&first), check_response(&first), check_exchange(&first, &second));
    for r in &first {
        let _ = r.to_string();
    }
}

/// xorshift64*, seeded from the input, so that a crash replays from its file.
struct Splits(u64);

impl Splits {
    fn new(data: &[u8]) -> Self {
        let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ data.len() as u64;
        for &b in data.iter().rev().take(8) {
            s = s.rotate_left(8) ^ u64::from(b);
        }
        Splits(s | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly small chunks (TLS records get split anywhere), sometimes large.
    fn chunk(&mut self) -> usize {
        let r = self.next();
        if r & 7 == 0 {
            1 + (r >> 8) as usize % 512
        } else {
            1 + (r >> 8) as usize % 9
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // 1.
    round_trip(data);

    // 2.
    if let Ok(record) = Record::new_checked(data) {
        if let Ok(repr) = Repr::parse(&record) {
            assert_eq!(repr.to_bytes(), &data[..record.total_len()]);
        }
    }

    // 3.
    let unlimited = MessageReader::with_max_len(usize::MAX).scan(data);
    match (&unlimited, parse_message(data)) {
        (Ok(Progress::Complete { len }), Ok(_)) => assert_eq!(*len, data.len()),
        (Ok(Progress::Complete { len }), Err(_)) => {
            assert!(*len < data.len(), "only trailing octets may make a complete message fail");
            assert!(parse_message(&data[..*len]).is_ok());
            round_trip(&data[..*len]);
        }
        (_, Ok(_)) => panic!("parse_message accepted what scan did not call complete: {unlimited:?}"),
        _ => {}
    }

    // 4.
    let mut splits = Splits::new(data);
    let max_len = match splits.next() % 4 {
        0 => DEFAULT_MAX_MESSAGE_LEN,
        1 => usize::MAX,
        2 => data.len(),
        _ => (splits.next() % 256) as usize,
    };
    let reader = MessageReader::with_max_len(max_len);
    let one_shot = reader.scan(data);
    let mut have = 0usize;
    let mut last_needed = 0usize;
    // Bounded: `have` grows by at least one octet per pass up to data.len().
    loop {
        match reader.scan(&data[..have]) {
            Ok(Progress::NeedMore { needed }) => {
                assert!(needed > have && needed <= max_len && needed >= last_needed, "{needed} {have} {last_needed}");
                last_needed = needed;
                if have == data.len() {
                    assert_eq!(one_shot, Ok(Progress::NeedMore { needed }));
                    break;
                }
            }
            Ok(Progress::Complete { len }) => {
                assert!(len <= have && len <= max_len);
                assert_eq!(one_shot, Ok(Progress::Complete { len }));
                let (records, decoded_len) = reader.decode(&data[..have]).expect("complete decodes").expect("complete");
                assert_eq!(decoded_len, len);
                assert_eq!(records, parse_message(&data[..len]).expect("complete message parses"));
                break;
            }
            Err(e) => {
                assert_eq!(one_shot, Err(e));
                break;
            }
        }
        have = (have + splits.chunk()).min(data.len());
    }
});
