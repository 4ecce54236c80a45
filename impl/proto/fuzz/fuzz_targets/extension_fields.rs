//! Extension areas in every dialect (NTPv4 with legacy MAC detection, NTPv5,
//! NTS plaintext), and the typed NTS and NTPv5 field bodies inside them: no
//! panic; what parses emits the same bytes and re-parses to the same value;
//! typed bodies survive a trip through the generic field, and in NTPv4 (where a
//! field's padding sits inside its Length) convert back to the very same field.

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
        // Typed NTS fields are written NTPv4 style (zero padding inside the Length), so
        // a well-aligned field comes back unchanged; a misaligned one is canonicalised.
        if let Some(Ok(nts)) = NtsField::parse(field) {
            if field.value.len() % 4 == 0 && field.padding.is_empty() {
                let back = nts.to_field();
                assert_eq!(&back, field, "an aligned NTS field must convert back unchanged");
                assert_eq!(NtsField::parse(&back).map(|r| r.ok()), Some(Some(nts)), "NTS field must re-parse");
            }
        }
        if let Some(Ok(body)) = FieldBody::parse(field) {
            let back = body.to_field();
            assert_eq!(back.field_type, field.field_type);
            assert_eq!(FieldBody::parse(&back).map(|r| r.ok()), Some(Some(body)), "v5 body must re-parse");
        }
    }
});
