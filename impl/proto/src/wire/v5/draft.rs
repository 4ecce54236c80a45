//! The NTPv5 drafts spoken side by side, told apart by the Draft
//! Identification extension field (draft-ietf-ntp-ntpv5-07 §7.1).
//!
//! A packet is judged by the draft it names; see `docs/ntpv5.md` for every
//! difference between the drafts this code implements, where each comes from,
//! and the test that covers it. In short:
//!
//! | rule | -07 | -08 | -09 |
//! |---|---|---|---|
//! | Draft Identification string | `draft-ietf-ntp-ntpv5-07` | `…-08` | `…-09` |
//! | Poll in a request | must be 0 (§6) | the client's polling interval, any value | as -08 |
//! | extension field Length and alignment padding | not said: zero alignment octets inside the Length are accepted | Length excludes the alignment padding: zeros inside it are part of the value | as -08 |

use super::super::ext::{FieldRepr, FieldType};

/// One of the NTPv5 drafts this crate speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Draft {
    /// draft-ietf-ntp-ntpv5-07 (October 2025; the text in the repository's references).
    D07,
    /// draft-ietf-ntp-ntpv5-08 (March 2026; ntpd-rs 1.9).
    D08,
    /// draft-ietf-ntp-ntpv5-09 (ntpd-rs main, beevik/ntp 1.6).
    D09,
}

impl Draft {
    /// Every draft, oldest first.
    pub const ALL: [Draft; 3] = [Draft::D07, Draft::D08, Draft::D09];

    /// The draft a client speaks unless configured otherwise: -08, the draft
    /// of the released ntpd-rs (1.9), the most widely deployed peer.
    pub const DEFAULT: Draft = Draft::D08;

    /// The full name, as the Draft Identification field carries it.
    pub const fn name(self) -> &'static str {
        match self {
            Draft::D07 => "draft-ietf-ntp-ntpv5-07",
            Draft::D08 => "draft-ietf-ntp-ntpv5-08",
            Draft::D09 => "draft-ietf-ntp-ntpv5-09",
        }
    }

    /// The draft whose full name is exactly `name` (§7.1: compared over the
    /// whole length; a longer string holding the name is not a match).
    pub fn from_name(name: &[u8]) -> Option<Draft> {
        Draft::ALL.into_iter().find(|d| d.name().as_bytes() == name)
    }

    /// The draft named by a short form: "07", "-07", "7" or the full name.
    pub fn parse(s: &str) -> Option<Draft> {
        let s = s.trim();
        let n = s.strip_prefix("draft-ietf-ntp-ntpv5").unwrap_or(s).trim_start_matches('-');
        match n.trim_start_matches('0') {
            "7" => Some(Draft::D07),
            "8" => Some(Draft::D08),
            "9" => Some(Draft::D09),
            _ => None,
        }
    }

    /// Whether a request's Poll field must be 0 (-07 §6) rather than carry the
    /// client's polling interval (-08, -09).
    pub const fn request_poll_must_be_zero(self) -> bool {
        matches!(self, Draft::D07)
    }

    /// Whether zero octets inside an extension field's Length may be the
    /// alignment padding (-07 does not say whether the Length counts it); from
    /// -08 on the Length excludes the alignment padding, so zeros inside it are
    /// part of the value.
    pub const fn padding_may_be_inside_length(self) -> bool {
        matches!(self, Draft::D07)
    }

    /// Where a section of this draft is, for problem reports (`section` one of
    /// "§6", "§7", "§7.1" … "§7.9").
    pub fn rule(self, section: &str) -> &'static str {
        const SECTIONS: [&str; 11] = ["§6", "§7", "§7.1", "§7.2", "§7.3", "§7.4", "§7.5", "§7.6", "§7.7", "§7.8", "§7.9"];
        const D07: [&str; 11] = [
            "draft-ietf-ntp-ntpv5-07 §6",
            "draft-ietf-ntp-ntpv5-07 §7",
            "draft-ietf-ntp-ntpv5-07 §7.1",
            "draft-ietf-ntp-ntpv5-07 §7.2",
            "draft-ietf-ntp-ntpv5-07 §7.3",
            "draft-ietf-ntp-ntpv5-07 §7.4",
            "draft-ietf-ntp-ntpv5-07 §7.5",
            "draft-ietf-ntp-ntpv5-07 §7.6",
            "draft-ietf-ntp-ntpv5-07 §7.7",
            "draft-ietf-ntp-ntpv5-07 §7.8",
            "draft-ietf-ntp-ntpv5-07 §7.9",
        ];
        const D08: [&str; 11] = [
            "draft-ietf-ntp-ntpv5-08 §6",
            "draft-ietf-ntp-ntpv5-08 §7",
            "draft-ietf-ntp-ntpv5-08 §7.1",
            "draft-ietf-ntp-ntpv5-08 §7.2",
            "draft-ietf-ntp-ntpv5-08 §7.3",
            "draft-ietf-ntp-ntpv5-08 §7.4",
            "draft-ietf-ntp-ntpv5-08 §7.5",
            "draft-ietf-ntp-ntpv5-08 §7.6",
            "draft-ietf-ntp-ntpv5-08 §7.7",
            "draft-ietf-ntp-ntpv5-08 §7.8",
            "draft-ietf-ntp-ntpv5-08 §7.9",
        ];
        const D09: [&str; 11] = [
            "draft-ietf-ntp-ntpv5-09 §6",
            "draft-ietf-ntp-ntpv5-09 §7",
            "draft-ietf-ntp-ntpv5-09 §7.1",
            "draft-ietf-ntp-ntpv5-09 §7.2",
            "draft-ietf-ntp-ntpv5-09 §7.3",
            "draft-ietf-ntp-ntpv5-09 §7.4",
            "draft-ietf-ntp-ntpv5-09 §7.5",
            "draft-ietf-ntp-ntpv5-09 §7.6",
            "draft-ietf-ntp-ntpv5-09 §7.7",
            "draft-ietf-ntp-ntpv5-09 §7.8",
            "draft-ietf-ntp-ntpv5-09 §7.9",
        ];
        let i = SECTIONS.iter().position(|s| *s == section).unwrap_or(0);
        match self {
            Draft::D07 => D07[i],
            Draft::D08 => D08[i],
            Draft::D09 => D09[i],
        }
    }
}

impl core::fmt::Display for Draft {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the Draft Identification field of a packet says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DraftId {
    /// No Draft Identification field (a final-RFC packet, or none at all).
    Absent,
    /// A draft this crate speaks. `padded` says the name was followed by zero
    /// octets inside the Length (the -07 reading of the Length, see
    /// [`Draft::padding_may_be_inside_length`]).
    Known {
        /// The draft.
        draft: Draft,
        /// Zero alignment octets inside the Length.
        padded: bool,
    },
    /// A name this crate does not speak (a server must not answer it, §7.1).
    Unknown(Vec<u8>),
}

impl DraftId {
    /// The draft, when known.
    pub fn draft(&self) -> Option<Draft> {
        match self {
            DraftId::Known { draft, .. } => Some(*draft),
            _ => None,
        }
    }
}

/// The draft named by the first Draft Identification field among `fields`.
/// A name followed by 1–3 zero octets that end at a multiple of 4 is the
/// draft with its alignment padding inside the Length (`padded`).
pub fn draft_of(fields: &[FieldRepr]) -> DraftId {
    let Some(f) = fields.iter().find(|f| f.field_type == FieldType::V5DraftIdentification) else {
        return DraftId::Absent;
    };
    if let Some(draft) = Draft::from_name(&f.value) {
        return DraftId::Known { draft, padded: false };
    }
    let trimmed = f.value.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let zeros = f.value.len() - trimmed;
    if (1..=3).contains(&zeros) && (4 + f.value.len()) % 4 == 0 {
        if let Some(draft) = Draft::from_name(&f.value[..trimmed]) {
            return DraftId::Known { draft, padded: true };
        }
    }
    DraftId::Unknown(f.value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_over_their_full_length() {
        for d in Draft::ALL {
            assert_eq!(Draft::from_name(d.name().as_bytes()), Some(d));
            assert_eq!(Draft::parse(d.name()), Some(d));
        }
        assert_eq!(Draft::from_name(b"draft-ietf-ntp-ntpv5-080"), None, "a longer string holding the name");
        assert_eq!(Draft::from_name(b"draft-ietf-ntp-ntpv5-0"), None);
        assert_eq!(Draft::from_name(b"draft-ietf-ntp-ntpv5-06"), None);
        assert_eq!(Draft::parse("08"), Some(Draft::D08));
        assert_eq!(Draft::parse("-9"), Some(Draft::D09));
        assert_eq!(Draft::parse("10"), None);
        assert_eq!(Draft::D09.rule("§7.4"), "draft-ietf-ntp-ntpv5-09 §7.4");
    }

    #[test]
    fn draft_of_reads_the_first_identification() {
        let id = |v: &[u8]| FieldRepr::new(FieldType::V5DraftIdentification, v.to_vec());
        assert_eq!(draft_of(&[]), DraftId::Absent);
        assert_eq!(draft_of(&[id(b"draft-ietf-ntp-ntpv5-08")]), DraftId::Known { draft: Draft::D08, padded: false });
        assert_eq!(draft_of(&[id(b"draft-ietf-ntp-ntpv5-07\0")]), DraftId::Known { draft: Draft::D07, padded: true });
        // 23 + 2 zeros: 4 + 25 is no multiple of 4, so not alignment padding.
        assert_eq!(draft_of(&[id(b"draft-ietf-ntp-ntpv5-07\0\0")]), DraftId::Unknown(b"draft-ietf-ntp-ntpv5-07\0\0".to_vec()));
        assert_eq!(draft_of(&[id(b"draft-x"), id(b"draft-ietf-ntp-ntpv5-07")]), DraftId::Unknown(b"draft-x".to_vec()));
    }
}
