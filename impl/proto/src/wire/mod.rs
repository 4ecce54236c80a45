//! Wire formats, smoltcp style.
//!
//! Each format has a *packet* view, `Packet<T: AsRef<[u8]>>`, that gives raw
//! field access over a borrowed buffer, and a *repr*, a validated owned
//! representation that can be emitted again. The contract:
//!
//! - `Packet::new_checked` checks the length once; after that no accessor panics,
//!   whatever the bytes are. `Packet::new_unchecked` is for buffers the caller
//!   sized itself (emitting).
//! - `Repr::parse` never panics on any input. It keeps code points it does not
//!   know (as `Unknown(..)` variants or raw numbers) so that emit reproduces them.
//! - `Repr::emit` writes exactly `Repr::buffer_len()` bytes and cannot panic when
//!   given a buffer of at least that length.
//!
//! Errors are grouped by who is to blame: everything here is the sender's fault
//! ([`Error`]), and problems that do not stop decoding are reported as
//! [`Problem`]s so a conformance checker can list them.

pub mod control;
pub mod ext;
pub mod nts;
pub mod ntske;
mod packet;
pub mod refid;
pub mod short;
pub mod v4;
pub mod v5;

pub use packet::{parse_packet, DecodedPacket, Header};

use core::fmt;

/// Why bytes could not be decoded. Every variant blames the sender of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the structure does.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// A field holds a value the format forbids.
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Byte offset of the offending field within the buffer given to the parser.
        offset: usize,
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// Well-formed, but a version or kind this parser does not handle.
    Unsupported {
        /// What was being read.
        what: &'static str,
        /// The value that is not supported.
        value: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, needed, available } => {
                write!(f, "{what}: truncated, needs {needed} bytes but only {available} are present")
            }
            Error::Malformed { what, offset, reason } => write!(f, "{what}: malformed at byte {offset}: {reason}"),
            Error::Unsupported { what, value } => write!(f, "{what}: unsupported value {value}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for wire results.
pub type Result<T> = core::result::Result<T, Error>;

/// A conformance problem found while decoding: the bytes were decodable, but
/// break a rule of the named document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the rule is written, e.g. `"RFC 7822 §3"`.
    pub rule: &'static str,
    /// What is wrong with this packet.
    pub detail: String,
}

impl Problem {
    /// A problem against `rule`.
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Problem { rule, detail: detail.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.rule)
    }
}

pub(crate) fn check_len(what: &'static str, buf: &[u8], needed: usize) -> Result<()> {
    if buf.len() < needed {
        Err(Error::Truncated { what, needed, available: buf.len() })
    } else {
        Ok(())
    }
}

pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}
