//! A whole NTP packet: header chosen by the version bits, then the extension area.

use super::ext::{Dialect, ExtensionArea};
use super::refid::KissCode;
use super::v4::{self, Mode};
use super::{check_len, nts, v5, Error, Problem, Result};

/// The header of a decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// Versions 0–4, 6 and 7: the NTPv4 layout (RFC 5905 §7.3).
    V4(v4::Repr),
    /// Version 5: the NTPv5 layout (draft-ietf-ntp-ntpv5-07 §6).
    V5(v5::Repr),
}

/// A decoded NTP packet: header plus everything after it. Emitting it gives back the input octets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedPacket {
    /// The header.
    pub header: Header,
    /// Extension fields, legacy MAC (v4 only) and any octets that did not decode.
    pub extensions: ExtensionArea,
}

/// Decodes a UDP payload as an NTP packet; see [`DecodedPacket::parse`].
pub fn parse_packet(buf: &[u8]) -> Result<DecodedPacket> {
    DecodedPacket::parse(buf)
}

impl DecodedPacket {
    /// Decodes a UDP payload. Fails only when there is no whole 48-octet header, or for
    /// NTP control (mode 6) and private (mode 7) messages of versions other than 5, whose
    /// layout is different. A broken extension area does not fail: see [`DecodedPacket::error`].
    pub fn parse(buf: &[u8]) -> Result<DecodedPacket> {
        let Some(version) = v4::version_of(buf) else {
            return Err(Error::Truncated { what: "NTP header", needed: v4::HEADER_LEN, available: 0 });
        };
        let mode = Mode::from_bits(buf[0]);
        if version != v5::VERSION && matches!(mode, Mode::Control | Mode::Private) {
            return Err(Error::Unsupported { what: "NTP mode (control and private messages are not decoded)", value: u32::from(mode.to_bits()) });
        }
        check_len("NTP header", buf, v4::HEADER_LEN)?;
        let payload = &buf[v4::HEADER_LEN..];
        if version == v5::VERSION {
            let header = v5::Repr::parse(&v5::Packet::new_unchecked(buf))?;
            Ok(DecodedPacket { header: Header::V5(header), extensions: v5::parse_extensions(payload) })
        } else {
            let header = v4::Repr::parse(&v4::Packet::new_unchecked(buf))?;
            let extensions = ExtensionArea::parse_dialect(payload, v4::HEADER_LEN, Dialect::V4);
            Ok(DecodedPacket { header: Header::V4(header), extensions })
        }
    }

    /// The version number.
    pub fn version(&self) -> u8 {
        match &self.header {
            Header::V4(h) => h.version,
            Header::V5(h) => h.version,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        match &self.header {
            Header::V4(h) => h.mode,
            Header::V5(h) => h.mode,
        }
    }

    /// The error that stopped decoding of the extension area, if any.
    pub fn error(&self) -> Option<&Error> {
        self.extensions.error.as_ref()
    }

    /// The NTPv5 draft this packet is judged by: the one its Draft
    /// Identification names, -07 when it names none this crate knows (`None`
    /// for other versions).
    pub fn v5_draft(&self) -> Option<v5::Draft> {
        match self.header {
            Header::V5(_) => Some(v5::draft_of(&self.extensions.fields).draft().unwrap_or(v5::Draft::D07)),
            Header::V4(_) => None,
        }
    }

    /// Every conformance problem found: header, extension area, NTS fields,
    /// NTPv5 fields (judged by the draft the packet names, see [`DecodedPacket::v5_draft`]).
    pub fn problems(&self) -> Vec<Problem> {
        let draft = self.v5_draft().unwrap_or(v5::Draft::D07);
        let mut p = match &self.header {
            Header::V4(h) => h.problems(),
            Header::V5(h) => h.problems_for(draft),
        };
        p.extend(self.extensions.problems.iter().cloned());
        let mode = self.mode();
        let fields = &self.extensions.fields;
        for f in fields {
            p.extend(nts::field_problems(f, mode));
        }
        let ntsn = match &self.header {
            Header::V4(h) => h.is_kiss_of_death() && h.reference_id.kiss_code() == KissCode::Ntsn,
            Header::V5(_) => false,
        };
        p.extend(nts::packet_problems(mode, ntsn, fields));
        if let Header::V5(_) = self.header {
            p.extend(v5::field_problems_for(mode, fields, draft));
        }
        p
    }

    /// Octets [`DecodedPacket::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        v4::HEADER_LEN + self.extensions.buffer_len()
    }

    /// Writes the packet into the first [`DecodedPacket::buffer_len`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        match &self.header {
            Header::V4(h) => h.emit(&mut v4::Packet::new_unchecked(&mut buf[..])),
            Header::V5(h) => h.emit(&mut v5::Packet::new_unchecked(&mut buf[..])),
        }
        self.extensions.emit(&mut buf[v4::HEADER_LEN..]);
    }

    /// Writes the packet to a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ext::FieldType;
    use proptest::prelude::*;

    /// An NTS-protected NTPv4 client request (RFC 8915 §5.7, Figure 5): header, Unique Identifier (36),
    /// NTS Cookie (16), NTS Authenticator (40: nonce 16, AES-SIV tag 16).
    fn nts_request() -> Vec<u8> {
        let mut b = vec![0x23, 0, 0, 0x20]; // LI 0, VN 4, mode 3; stratum 0; poll 0; precision 32 (as ntpd-rs sends)
        b.extend([0; 36]); // root delay .. origin, receive
        b.extend([0xec, 0xea, 0x8e, 0x10, 0x12, 0x34, 0x56, 0x78]); // transmit
        b.extend([0x01, 0x04, 0x00, 0x24]);
        b.extend([0x5a; 32]);
        b.extend([0x02, 0x04, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        b.extend([0x04, 0x04, 0x00, 0x28, 0x00, 0x10, 0x00, 0x10]);
        b.extend([0x11; 16]);
        b.extend([0x22; 16]);
        b
    }

    #[test]
    fn v4_nts_request() {
        let b = nts_request();
        let d = parse_packet(&b).unwrap();
        assert_eq!(d.version(), 4);
        assert_eq!(d.mode(), Mode::Client);
        assert_eq!(d.extensions.fields.len(), 3);
        assert_eq!(d.extensions.fields[2].name(), "NTS Authenticator and Encrypted Extension Fields");
        assert!(d.error().is_none());
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        assert_eq!(d.to_bytes(), b);
        let mut buf = vec![0xa5; d.buffer_len()];
        d.emit(&mut buf);
        assert_eq!(buf, b);
    }

    #[test]
    fn v4_broken_area_keeps_header_and_good_fields() {
        let mut b = nts_request();
        b[48 + 36 + 3] = 0xff; // cookie Length 255 runs past the end
        let d = parse_packet(&b).unwrap();
        assert_eq!(d.extensions.fields.len(), 1);
        assert!(d.error().is_some());
        assert!(d.problems().iter().any(|p| p.detail.starts_with("bad extension field length")));
        assert_eq!(d.to_bytes(), b);
    }

    #[test]
    fn v5_request_with_fields() {
        let mut r = v5::Repr::request(v5::Timescale::Utc, 0x1122334455667788);
        r.flags = v5::Flags(v5::Flags::INTERLEAVED);
        let mut b = r.to_bytes().to_vec();
        b.extend(v5::FieldBody::ServerInformation { supported_versions: 0, reserved: 0 }.to_field().to_bytes());
        b.extend(v5::FieldBody::Padding { body: vec![0; 12] }.to_field().to_bytes());
        let d = parse_packet(&b).unwrap();
        assert!(matches!(d.header, Header::V5(h) if h == r));
        assert_eq!(d.extensions.fields[0].field_type, FieldType::V5ServerInformation);
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        assert_eq!(d.to_bytes(), b);
        // v5 message length not a multiple of 4.
        b.push(0);
        let d = parse_packet(&b).unwrap();
        assert!(!d.problems().is_empty());
        assert_eq!(d.to_bytes(), b);
    }

    /// A request as ntpd-rs 1.9 (draft-ietf-ntp-ntpv5-08) sends it: Poll 4
    /// (its polling interval), Draft Identification with Length 27 and one
    /// alignment zero after it, Reference IDs Request for 16 octets at offset 0.
    fn ntpd_rs_08_request(draft: &[u8]) -> Vec<u8> {
        let mut r = v5::Repr::request(v5::Timescale::Utc, 0x0102030405060708);
        r.poll = 4;
        let mut b = r.to_bytes().to_vec();
        b.extend(v5::FieldBody::DraftIdentification { name: draft.to_vec() }.to_field().to_bytes());
        b.extend(v5::FieldBody::ReferenceIdsRequest { offset: 0, padding: vec![0; 14] }.to_field().to_bytes());
        b
    }

    #[test]
    fn v5_packets_are_judged_by_the_draft_they_name() {
        let d = DecodedPacket::parse(&ntpd_rs_08_request(b"draft-ietf-ntp-ntpv5-08")).unwrap();
        assert_eq!(d.v5_draft(), Some(v5::Draft::D08));
        assert!(d.problems().is_empty(), "-08 lets a request carry the poll interval: {:?}", d.problems());
        let d = DecodedPacket::parse(&ntpd_rs_08_request(b"draft-ietf-ntp-ntpv5-09")).unwrap();
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        let d = DecodedPacket::parse(&ntpd_rs_08_request(b"draft-ietf-ntp-ntpv5-07")).unwrap();
        assert_eq!(d.v5_draft(), Some(v5::Draft::D07));
        let p = d.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].rule, "draft-ietf-ntp-ntpv5-07 §6");
        assert!(p[0].detail.contains("poll"));
        // No or an unknown Draft Identification: judged by -07.
        let d = DecodedPacket::parse(&ntpd_rs_08_request(b"draft-ietf-ntp-ntpv5-99")).unwrap();
        assert_eq!(d.v5_draft(), Some(v5::Draft::D07));
        assert_eq!(d.problems().len(), 1);
        // The alignment zero inside the Length: -07's reading is accepted, -08's is not.
        let d = DecodedPacket::parse(&ntpd_rs_08_request(b"draft-ietf-ntp-ntpv5-08\0")).unwrap();
        assert_eq!(d.v5_draft(), Some(v5::Draft::D08));
        assert_eq!(d.problems().len(), 1, "{:?}", d.problems());
        assert!(d.problems()[0].detail.contains("NUL"));
    }

    #[test]
    fn refused_inputs() {
        assert!(matches!(parse_packet(&[]), Err(Error::Truncated { .. })));
        assert!(matches!(parse_packet(&[0x23; 47]), Err(Error::Truncated { .. })));
        // NTPv2 mode 6 (control) message of 12 octets.
        assert!(matches!(parse_packet(&[0x16, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), Err(Error::Unsupported { value: 6, .. })));
    }

    #[test]
    fn ntsn_kiss_with_authenticator_is_flagged() {
        let mut b = nts_request();
        b[0] = 0x24; // mode 4
        b[1] = 0; // stratum 0
        b[12..16].copy_from_slice(b"NTSN");
        b[40..48].copy_from_slice(&[0xec, 0, 0, 0, 0, 0, 0, 1]);
        let d = parse_packet(&b).unwrap();
        let p = d.problems();
        assert!(p.iter().any(|p| p.detail.contains("NTSN")), "{p:?}");
    }

    proptest! {
        #[test]
        fn any_packet_parse_emit_parse(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(d) = parse_packet(&bytes) {
                let out = d.to_bytes();
                prop_assert_eq!(&out, &bytes);
                prop_assert_eq!(parse_packet(&out).unwrap(), d.clone());
                let _ = d.problems();
            }
        }

        #[test]
        fn any_v5_packet(mut bytes in proptest::collection::vec(any::<u8>(), 48..160)) {
            bytes[0] = (bytes[0] & 0xc7) | (5 << 3);
            let d = parse_packet(&bytes).unwrap();
            prop_assert_eq!(d.to_bytes(), bytes);
            let _ = d.problems();
            let _ = nts::spans(&d.to_bytes());
        }
    }
}
