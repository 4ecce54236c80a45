//! Network Time Security (RFC 8915) in the daemon: TLS and TCP for NTS-KE
//! ([`tls`], [`ke`]). The protocol (KE messages, keys, cookies, protected
//! packets) is the core's; this module carries its bytes.

pub mod client;
pub mod glue;
pub mod ke;
pub mod server;
pub mod tls;

/// The TLS library, for callers that build configurations or providers.
pub use rustls;
