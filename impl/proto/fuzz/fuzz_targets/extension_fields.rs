//! Extension areas in every dialect (NTPv4 with legacy MAC detection, NTPv5,
//! NTS plaintext), and the typed NTS and NTPv5 field bodies inside them: no
//! panic; what parses emits the same bytes and re-parses to the same value;
//! typed NTS fields reach a stable canonical form; typed NTPv5 bodies re-parse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ntplab_proto::wire::ext::{Dialect, ExtensionArea};
use ntplab_proto::wire::nts::NtsField;
use ntplab_proto::wire::v5::FieldBody;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let dialect = match selector % 3 {
        0 => Dialect::V4,
        1 => Dialect::V5,
        _ => Dialect::NtsPlaintext,
    };
    let area = ExtensionArea::parse_dialect(payload, 48, dialect);
    let bytes = area.to_bytes();
    assert_eq!(bytes.len(), area.buffer_len());
    assert_eq!(&bytes[..], payload, "emit must reproduce the area");
    let again = ExtensionArea::parse_dialect(&bytes, 48, dialect);
    assert_eq!(area, again);
    for field in &area.fields {
        // Typed NTS fields are written in canonical form (NTPv4 zero padding inside
        // the Length, zero alignment octets), so the generic field carries the bytes
        // and the typed form must be a fixed point: field -> typed -> field -> typed.
        if let Some(Ok(nts)) = NtsField::parse(field) {
            let canonical = nts.to_field();
            let again = NtsField::parse(&canonical).expect("NTS type").expect("canonical field re-parses");
            assert_eq!(again.to_field(), canonical, "canonical NTS field must be stable");
        }
        if let Some(Ok(body)) = FieldBody::parse(field) {
            let back = body.to_field();
            assert_eq!(back.field_type, field.field_type);
            assert_eq!(FieldBody::parse(&back).map(|r| r.ok()), Some(Some(body)), "v5 body must re-parse");
        }
    }
});
