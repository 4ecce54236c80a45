//! The per-source client association: poll process and peer process of
//! RFC 5905 for one upstream server in client mode (mode 3 requests, mode 4
//! replies).
//!
//! A [`Source`] decides *when* to send a request and *whether* a reply is a
//! usable measurement; it does not filter, select or discipline (that is the
//! system's job, fed with the [`Measurement`]s this produces). It does no I/O
//! and reads no clock: the driver passes monotonic time ([`Instant`]), local
//! clock readings ([`NtpTime`]) and random numbers in, and carries out what
//! comes back.
//!
//! # Call protocol
//!
//! ```text
//!   driver                                     Source
//!   ──────                                     ──────
//!   Source::new(config, now) ────────────────► first poll due at `now`
//!   loop {
//!     wait until poll_timeout() or a datagram from this server
//!     timer:    handle_timeout(now, local_time, random, buf)
//!                 └─ Some(TransmitRequest{len}) ─► send buf[..len], and if the
//!                    socket reports the real send time, keep it for the reply
//!     datagram: handle_response(now, bytes, rx_local, tx_local_actual)
//!                 └─ SourceEvent ─► Sample → clock filter; Demobilize → drop
//!                    the source; RateLimited/NtsNak/Kiss/Rejected → metrics
//!     system:   set_poll_log2(now, poll) after each discipline update
//!   }
//! ```
//!
//! - `now` MUST be monotonic across all calls on one source.
//! - The driver MUST call [`Source::handle_timeout`] no later than it can once
//!   [`Source::poll_timeout`] has passed, and SHOULD call it promptly: the
//!   schedule counts from the `now` it is given. Calling it early is harmless
//!   (it returns `None` and changes nothing).
//! - `poll_timeout()` MUST be re-read after every `handle_*`/`set_*` call; a
//!   reply, a kiss code or a new system poll can move it. `None` means the
//!   source is demobilized and never sends again.
//! - `local_time` in `handle_timeout` is the local clock reading at (or just
//!   before) transmission: it becomes T1. The datagram carries a *random*
//!   transmit timestamp instead, as chrony and ntpd-rs do, so that the reply's
//!   origin timestamp binds it to this request and reveals nothing about the
//!   local clock. If the driver later learns the true send time (kernel or
//!   hardware transmit timestamp), it passes it as `tx_local_actual` with the
//!   reply and it replaces T1.
//! - `rx_local` is the local clock reading at the arrival of the reply (T4),
//!   ideally a kernel receive timestamp.
//! - The driver MUST only hand this source datagrams whose source address and
//!   port are the server's and whose destination is the socket the request
//!   left from (RFC 5905 §9.2, RFC 4330 §5 checks 1–2); this module cannot see
//!   addresses. Authentication (MAC, NTS) also happens before this module:
//!   [`Source::handle_response`] sees only the NTP header and the length of
//!   what follows it.
//!
//! # Packet checks
//!
//! Every reply goes through these checks, in this order; the first that fails
//! names the [`RejectReason`] and bumps its counter ([`SourceCounters`]).
//!
//! | Reason | Rule | Source |
//! |---|---|---|
//! | [`TooShort`](RejectReason::TooShort) | fewer than 48 octets | §7.3, §9.2 format |
//! | [`BadVersion`](RejectReason::BadVersion) | version not 1–4 | §9.2, A.5.1 |
//! | [`BadMode`](RejectReason::BadMode) | mode is not 4 (server) | §9.2 Fig. 20 |
//! | [`Demobilized`](RejectReason::Demobilized) | source stopped by DENY/RSTR | §7.4 a |
//! | [`Duplicate`](RejectReason::Duplicate) | transmit equals the last received transmit | §8, A.5.1 |
//! | [`ZeroOrigin`](RejectReason::ZeroOrigin) | origin timestamp is zero | A.5.1, RFC 8633 §5.3 |
//! | [`AlreadyAnswered`](RejectReason::AlreadyAnswered) | request already answered (xmt cleared) | §8 |
//! | [`Unsolicited`](RejectReason::Unsolicited) | no request outstanding | §9.2 Fig. 20 |
//! | [`Bogus`](RejectReason::Bogus) | origin differs from the outstanding request | §8, A.5.1, 8633 §5.3 |
//!
//! A reply that passes the origin check *answers* the outstanding request: the
//! expected origin is forgotten (so a second, different reply is
//! [`AlreadyAnswered`](RejectReason::AlreadyAnswered)) and its transmit
//! timestamp becomes the duplicate reference. Only then are these applied:
//!
//! | Outcome | Rule | Source |
//! |---|---|---|
//! | [`CryptoNak`](RejectReason::CryptoNak) | a 4-octet MAC follows the header | §9.2, A.5.1 |
//! | kiss-o'-death, see below | stratum 0 | §7.4, 8633 §5.4 |
//! | [`ZeroTransmit`](RejectReason::ZeroTransmit) | transmit timestamp is zero | §8, A.5.1 |
//! | [`ZeroReceive`](RejectReason::ZeroReceive) | receive timestamp is zero | RFC 4330 §5 (as chrony's test 3) |
//! | [`Unsynchronized`](RejectReason::Unsynchronized) | LI = 3 | A.5.1.1 |
//! | [`StratumUnsynchronized`](RejectReason::StratumUnsynchronized) | stratum ≥ 16 | A.5.1.1 |
//! | [`ReferenceAfterTransmit`](RejectReason::ReferenceAfterTransmit) | reference timestamp later than transmit | A.5.1.1 |
//! | [`RootDistance`](RejectReason::RootDistance) | root delay / 2 + root dispersion ≥ MAXDISP (16 s) | A.5.1.1 |
//! | [`MaxDelay`](RejectReason::MaxDelay) | round-trip delay above [`SourceConfig::max_delay`] (after the reply counted for reach and polling) | chrony's `maxdelay` |
//! | [`MaxDelayRatio`](RejectReason::MaxDelayRatio) | round-trip delay above [`SourceConfig::max_delay_ratio`] times the least of the last [`DELAY_HISTORY`] samples' (likewise) | chrony's `maxdelayratio` |
//!
//! Deviation from A.5.1, on purpose: the RFC updates its duplicate reference
//! (`p.org`) from *every* packet, bogus ones included. Here it is updated only
//! by replies that carry our origin, so a spoofed packet cannot poison the
//! duplicate filter.
//!
//! # Kiss-o'-death
//!
//! A stratum-0 reply is a kiss-o'-death and never a sample. It is believed only
//! if it passed the origin check above (RFC 8633 §5.4); its receive and
//! transmit timestamps are not used (§7.4). Reactions:
//!
//! - `RATE`: the poll exponent is raised to at least one step above the
//!   current one and at least to the packet's poll field, capped at
//!   [`KOD_RATE_POLL_CAP_LOG2`] (13, RFC 8633 §5.4) unless the configured
//!   maximum is higher; the raised value stays as a floor for the life of the
//!   source; any burst is cancelled and nothing is sent for one new interval
//!   from the reception ([`SourceEvent::RateLimited`]).
//! - `DENY`, `RSTR`: the source is demobilized: [`SourceEvent::Demobilize`],
//!   `poll_timeout()` becomes `None`, nothing is ever sent again (§7.4 a).
//! - `NTSN`: [`SourceEvent::NtsNak`], for the NTS layer (RFC 8915 §5.7); the
//!   NTS layer must check the Unique Identifier before trusting it.
//! - anything else (including `X…` codes and unregistered codes):
//!   [`SourceEvent::Kiss`], informational, no protocol action (§7.4 c, d).
//!
//! # Poll process
//!
//! This follows A.5.7 `poll()` and `poll_update()`:
//!
//! - At each regular poll the 8-bit reach register shifts left. If it is then
//!   zero the source is unreachable: with `iburst`, the first such poll (unreach
//!   counter zero) starts a burst; the unreach counter counts unanswered polls
//!   up to [`UNREACH_POLLS`], and every further unreachable poll raises the
//!   host poll exponent by one, up to the configured maximum. If the register
//!   is non-zero, the unreach counter resets, the host poll returns to the
//!   system poll, and with `burst` a burst starts.
//! - A burst is [`BCOUNT`] requests in all (the poll's own and 7 more),
//!   [`BURST_SPACING`] apart. Burst requests do not shift the reach register.
//! - The regular interval is `2^max(min(ppoll, hpoll), poll_min)` seconds
//!   counted from the start of the last regular poll, where `ppoll` is the poll
//!   field of the last valid reply (§13.2: oversampling is allowed,
//!   undersampling is not), raised to any RATE floor. With `poll_jitter`, a
//!   random extra of up to 1/16 of the interval is added (ntpd adds up to
//!   255/4096); it never shortens an interval. If a new interval would put the
//!   next poll in the past, it happens one second from now (A.5.7).
//! - NTPv5 associations (draft-ietf-ntp-ntpv5-07 §9) differ: a burst only at
//!   the association's first poll (`iburst`; never again when the server
//!   becomes unreachable or after a clock step, and `burst` is ignored); the
//!   interval after that burst counts from its last request; the server's
//!   Poll field is a floor of the interval (see `source/v5.rs`), kept also
//!   by the poll after a clock step. The start's burst may ignore that floor
//!   ("On start, the client MAY temporarily ignore the server's minimum
//!   polling interval"), but a refusal (stratum 0, higher Poll) ends it.
//!
//! # Pinned constants and RFC 5905 contradictions
//!
//! - MINPOLL is 4 in Fig. 6 but 6 in A.1.1. Here 4 ([`MINPOLL_LOG2`]) is the
//!   lowest configurable poll and 6 ([`DEFAULT_POLL_MIN_LOG2`]) the default.
//! - UNREACH is 24 in Fig. 29 but 12 in A.5.7, whose code also increments the
//!   counter twice per poll. Here the counter goes up once per unreachable
//!   poll and back-off starts after 12 ([`UNREACH_POLLS`]) of them, i.e. on
//!   the 13th consecutive poll that finds the reach register empty.
//! - BCOUNT 8, BTIME 2 s, MAXDISP 16 s, PHI 15 ppm as in A.1.1 and A.5.7.

use core::time::Duration;
use std::collections::VecDeque;

use crate::mono::Instant;
use crate::time::{NtpDuration, NtpTime, NtpTimestamp};
use crate::wire::refid::{KissCode, ReferenceId};
use crate::wire::short::NtpShort;
use crate::wire::v4::{LeapIndicator, Mode, Packet, Repr, HEADER_LEN};
use crate::wire::v5::Draft;

mod v5;
pub use v5::{Speaking, UPGRADE_ASKS, V5_FALLBACK_REQUESTS, V5_REQUEST_LEN, V5_UNANSWERED_LIMIT};

/// Lowest configurable poll exponent (16 s), RFC 5905 Fig. 6 MINPOLL.
pub const MINPOLL_LOG2: i8 = 4;
/// Highest configurable poll exponent (36.4 h), RFC 5905 MAXPOLL.
pub const MAXPOLL_LOG2: i8 = 17;
/// Default minimum poll exponent (64 s), RFC 5905 A.1.1 MINPOLL.
pub const DEFAULT_POLL_MIN_LOG2: i8 = 6;
/// Default maximum poll exponent (1024 s), RFC 5905 §7.2.
pub const DEFAULT_POLL_MAX_LOG2: i8 = 10;
/// Requests in a burst, the first included (RFC 5905 §13.2 BCOUNT).
pub const BCOUNT: u8 = 8;
/// Time between the requests of a burst (RFC 5905 A.5.7 BTIME).
pub const BURST_SPACING: Duration = Duration::from_secs(2);
/// Unanswered polls counted before the poll interval starts doubling
/// (RFC 5905 A.5.7 UNREACH; Fig. 29 says 24, see the module docs).
pub const UNREACH_POLLS: u8 = 12;
/// Highest poll exponent a RATE kiss code can push the source to, unless the
/// configured maximum is higher (RFC 8633 §5.4: no more than 13, 2.3 h).
pub const KOD_RATE_POLL_CAP_LOG2: i8 = 13;
/// Maximum dispersion, 16 s (RFC 5905 §7.2 MAXDISP).
pub const MAXDISP: NtpDuration = NtpDuration::from_seconds(16);
/// Frequency tolerance, 15 ppm (RFC 5905 §7.2 PHI).
pub const PHI_PPM: i64 = 15;
/// Default system precision exponent, about 1 µs; see [`SourceConfig::precision_log2`].
pub const DEFAULT_PRECISION_LOG2: i8 = -20;
/// Length of the client request this module writes.
pub const REQUEST_LEN: usize = HEADER_LEN;
/// How far in the future a poll goes when a shortened interval would put it in
/// the past (RFC 5905 A.5.7 `poll_update()`).
pub const LATE_POLL_DELAY: Duration = Duration::from_secs(1);

/// Configuration of one client association.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceConfig {
    /// Lowest poll exponent, log2 seconds; [`MINPOLL_LOG2`]..=`poll_max_log2`.
    /// Default [`DEFAULT_POLL_MIN_LOG2`] (64 s).
    pub poll_min_log2: i8,
    /// Highest poll exponent, log2 seconds; `poll_min_log2`..=[`MAXPOLL_LOG2`].
    /// Default [`DEFAULT_POLL_MAX_LOG2`] (1024 s).
    pub poll_max_log2: i8,
    /// Send a burst of [`BCOUNT`] requests when the server is unreachable (at
    /// start, and again after it is lost). Default off. An NTPv5 association
    /// bursts at its start only (draft-ietf-ntp-ntpv5-07 §9).
    pub iburst: bool,
    /// Send a burst of [`BCOUNT`] requests at each poll while the server is
    /// reachable. Default off; meant for long poll intervals. Ignored while
    /// the association speaks NTPv5 (§9 allows a burst on start only).
    pub burst: bool,
    /// NTP version written in requests, 1–5. Default 4. With 5 the source
    /// speaks NTPv5 (in [`SourceConfig::draft`]) and nothing else.
    pub version: u8,
    /// With version 4: ask the server for NTPv5 (the "NTP5DRFT" reference
    /// timestamp), switch to NTPv5 when it offers it, and fall back to NTPv4
    /// when NTPv5 goes unanswered (draft-ietf-ntp-ntpv5-07 §12; `version =
    /// "auto"` in the daemon configuration). Default off.
    pub v5_auto: bool,
    /// The NTPv5 draft spoken. Default [`Draft::DEFAULT`].
    pub draft: Draft,
    /// The system precision exponent (s.rho of RFC 5905 §11.1), log2 seconds:
    /// the resolution of the local timestamps the driver passes in. It enters
    /// the sample dispersion and is the floor of the sample delay (§8).
    /// Default [`DEFAULT_PRECISION_LOG2`].
    pub precision_log2: i8,
    /// Add a random extra of up to 1/16 of the interval to regular polls so that
    /// many clients do not synchronise their requests. Default on.
    pub poll_jitter: bool,
    /// Undo a leap smear: when a reply carries the smear REFID 254.b1.b2.b3
    /// (draft-stenn-ntp-leap-smear-refid-02), add its correction back so the
    /// sample measures the server's UTC, and infer the pending leap second from
    /// the correction's sign (a smearing server never announces it). Default off.
    pub unsmear: bool,
    /// Ask for the interleaved client/server mode (RFC 9769 §2,
    /// draft-ietf-ntp-interleaved-modes-08 §2; chrony's `xleave`): once a
    /// reply has arrived, each request carries that reply's receive
    /// timestamp as its origin and a random receive timestamp (§6: all bits
    /// random, never the local arrival time, which would help an off-path
    /// attacker), which an interleaved reply echoes as origin. A server that supports the mode then answers with
    /// the transmit timestamp its previous reply really left with (a kernel
    /// or hardware timestamp, not a reading before the send), and the sample
    /// is that previous exchange: its T1, T2 and T4 with this reply's T3
    /// (the draft's first set, which it recommends to clients that filter by
    /// delay). Basic replies are used as always. NTPv4 only. Default off.
    pub interleaved: bool,
    /// The largest round-trip delay a sample may have (chrony's `maxdelay`):
    /// a reply measuring more counts for reachability and polling but gives
    /// no sample ([`RejectReason::MaxDelay`]). Positive, at most MAXDISP (16
    /// s). Default none.
    pub max_delay: Option<NtpDuration>,
    /// The largest ratio of a sample's round-trip delay to the least of the
    /// source's last [`DELAY_HISTORY`] samples (chrony's `maxdelayratio`):
    /// a reply measuring more counts for reachability and polling but gives
    /// no sample ([`RejectReason::MaxDelayRatio`]). Above 1, at most
    /// [`MAX_DELAY_RATIO_LIMIT`]. Default none.
    pub max_delay_ratio: Option<f64>,
    /// How many times the discipline's jitter a sample's half round trip
    /// may exceed the least of this source's held samples before the
    /// regression discipline ignores it (chrony's `maxdelaydevratio`; the
    /// daemon hands it to the system, [`crate::system::System::set_max_delay_dev_ratio`]).
    /// Above 0, at most [`MAX_DELAY_RATIO_LIMIT`]. Default none: 10.
    pub max_delay_dev_ratio: Option<f64>,
}

/// How many of a source's latest samples' delays [`SourceConfig::max_delay_ratio`]
/// takes the least of (chrony keeps up to 64 samples a source).
pub const DELAY_HISTORY: usize = 64;

/// The largest `max_delay_ratio` and `max_delay_dev_ratio` accepted.
pub const MAX_DELAY_RATIO_LIMIT: f64 = 1e6;

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            poll_min_log2: DEFAULT_POLL_MIN_LOG2,
            poll_max_log2: DEFAULT_POLL_MAX_LOG2,
            iburst: false,
            burst: false,
            version: 4,
            v5_auto: false,
            draft: Draft::DEFAULT,
            precision_log2: DEFAULT_PRECISION_LOG2,
            poll_jitter: true,
            unsmear: false,
            interleaved: false,
            max_delay: None,
            max_delay_ratio: None,
            max_delay_dev_ratio: None,
        }
    }
}

impl SourceConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_min_log2 < MINPOLL_LOG2 {
            return Err(ConfigError::PollMinTooSmall { poll_min_log2: self.poll_min_log2 });
        }
        if self.poll_max_log2 > MAXPOLL_LOG2 {
            return Err(ConfigError::PollMaxTooLarge { poll_max_log2: self.poll_max_log2 });
        }
        if self.poll_min_log2 > self.poll_max_log2 {
            return Err(ConfigError::PollMinAboveMax {
                poll_min_log2: self.poll_min_log2,
                poll_max_log2: self.poll_max_log2,
            });
        }
        if !(1..=5).contains(&self.version) || (self.v5_auto && self.version != 4) {
            return Err(ConfigError::Version { version: self.version });
        }
        if self.interleaved && (self.version == 5 || self.v5_auto) {
            return Err(ConfigError::InterleavedNeedsV4);
        }
        if let Some(max_delay) = self.max_delay {
            if max_delay <= NtpDuration::ZERO || max_delay > MAXDISP {
                return Err(ConfigError::MaxDelay { max_delay });
            }
        }
        if let Some(ratio) = self.max_delay_ratio {
            if !(ratio > 1.0 && ratio <= MAX_DELAY_RATIO_LIMIT) {
                return Err(ConfigError::MaxDelayRatio { ratio });
            }
        }
        if let Some(ratio) = self.max_delay_dev_ratio {
            if !(ratio > 0.0 && ratio <= MAX_DELAY_RATIO_LIMIT) {
                return Err(ConfigError::MaxDelayDevRatio { ratio });
            }
        }
        Ok(())
    }
}

/// A [`SourceConfig`] value out of range. Every variant is the caller's fault.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `poll_min_log2` is below [`MINPOLL_LOG2`].
    PollMinTooSmall {
        /// The configured value.
        poll_min_log2: i8,
    },
    /// `poll_max_log2` is above [`MAXPOLL_LOG2`].
    PollMaxTooLarge {
        /// The configured value.
        poll_max_log2: i8,
    },
    /// `poll_min_log2` is above `poll_max_log2`.
    PollMinAboveMax {
        /// The configured minimum.
        poll_min_log2: i8,
        /// The configured maximum.
        poll_max_log2: i8,
    },
    /// `version` is not 1–5, or `v5_auto` is set with a version other than 4.
    Version {
        /// The configured value.
        version: u8,
    },
    /// `interleaved` is set on a source that speaks (or may upgrade to)
    /// NTPv5, whose interleaved mode is a flag of its own.
    InterleavedNeedsV4,
    /// `max_delay` is not positive or is above MAXDISP (16 s).
    MaxDelay {
        /// The configured value.
        max_delay: NtpDuration,
    },
    /// `max_delay_ratio` is not above 1 or is above [`MAX_DELAY_RATIO_LIMIT`].
    MaxDelayRatio {
        /// The configured value.
        ratio: f64,
    },
    /// `max_delay_dev_ratio` is not above 0 or is above [`MAX_DELAY_RATIO_LIMIT`].
    MaxDelayDevRatio {
        /// The configured value.
        ratio: f64,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::PollMinTooSmall { poll_min_log2 } => {
                write!(f, "minimum poll {poll_min_log2} is below {MINPOLL_LOG2} (16 s, RFC 5905 MINPOLL)")
            }
            ConfigError::PollMaxTooLarge { poll_max_log2 } => {
                write!(f, "maximum poll {poll_max_log2} is above {MAXPOLL_LOG2} (36 h, RFC 5905 MAXPOLL)")
            }
            ConfigError::PollMinAboveMax { poll_min_log2, poll_max_log2 } => {
                write!(f, "minimum poll {poll_min_log2} is above maximum poll {poll_max_log2}")
            }
            ConfigError::Version { version } => write!(f, "NTP version {version} is not 1-5 (or \"auto\", which starts at 4)"),
            ConfigError::InterleavedNeedsV4 => {
                write!(f, "interleaved mode (RFC 9769) is an NTPv4 mode: set version = 4 (or leave it out) on an interleaved source")
            }
            ConfigError::MaxDelay { max_delay } => {
                write!(f, "maximum delay {} s must be above 0 and at most 16 s (RFC 5905 MAXDISP)", max_delay.to_seconds_f64())
            }
            ConfigError::MaxDelayRatio { ratio } => {
                write!(f, "maximum delay ratio {ratio} must be above 1 and at most {MAX_DELAY_RATIO_LIMIT} (chrony's maxdelayratio)")
            }
            ConfigError::MaxDelayDevRatio { ratio } => {
                write!(f, "maximum delay deviation ratio {ratio} must be above 0 and at most {MAX_DELAY_RATIO_LIMIT} (chrony's maxdelaydevratio)")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A request written by [`Source::handle_timeout`]: the driver MUST send the
/// first `len` octets of the buffer to the server.
#[must_use = "the request must be sent, or the poll is wasted"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransmitRequest {
    /// Octets written at the start of the buffer (always [`REQUEST_LEN`]).
    pub len: usize,
    /// The last three regular polls went unanswered. RFC 5905 §13.2 (A.5.7
    /// `poll()`): the caller SHOULD feed the clock filter a dummy sample with
    /// offset 0, delay 0 and dispersion [`MAXDISP`] so the source ages out.
    pub stale: bool,
    /// This poll emptied the reach register: the eight regular polls before
    /// it went unanswered. RFC 5905 A.5.2 `fit()` finds an unreachable
    /// source unfit for selection; the caller SHOULD tell the system
    /// process ([`crate::system::System::handle_unreachable`]), which drops
    /// it as system peer until it answers again.
    pub unreachable: bool,
}

/// One valid on-wire measurement (RFC 5905 §8, §9.2): what the clock filter
/// takes, plus the server's header variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// Server clock minus local clock, θ = ((T2 − T1) + (T3 − T4)) / 2.
    pub offset: NtpDuration,
    /// Round-trip delay δ = (T4 − T1) − (T3 − T2), at least the system precision.
    pub delay: NtpDuration,
    /// Sample dispersion ε = ρ_server + ρ_local + PHI·(T4 − T1).
    pub dispersion: NtpDuration,
    /// Monotonic time at which the reply was handled; the filter ages the
    /// dispersion from here.
    pub received_at: Instant,
    /// T1: local clock when the request left.
    pub local_send_time: NtpTime,
    /// T4: local clock when the reply arrived.
    pub local_receive_time: NtpTime,
    /// T2: server clock when the request arrived.
    pub server_receive_timestamp: NtpTimestamp,
    /// T3: server clock when the reply left.
    pub server_transmit_timestamp: NtpTimestamp,
    /// The server's leap indicator, for the system to propagate (never
    /// [`LeapIndicator::Unsynchronized`] in a sample).
    pub leap: LeapIndicator,
    /// The server's stratum, 1–15.
    pub stratum: u8,
    /// The server's reference ID (loop detection, §7.3).
    pub reference_id: ReferenceId,
    /// The server's reference timestamp.
    pub reference_timestamp: NtpTimestamp,
    /// The server's root delay.
    pub root_delay: NtpShort,
    /// The server's root dispersion.
    pub root_dispersion: NtpShort,
    /// The server's precision exponent, log2 seconds.
    pub precision_log2: i8,
    /// The poll exponent the server advertised, log2 seconds.
    pub poll_log2: i8,
    /// The version of the reply.
    pub version: u8,
    /// An interleaved reply (RFC 9769 §2): the timestamps are the previous
    /// exchange's T1, T2 and T4 and this reply's T3, and the sample is as old
    /// as that exchange (`local_receive_time`).
    pub interleaved: bool,
}

/// What [`Source::handle_response`] made of a datagram. The caller MUST act on
/// [`SourceEvent::Sample`] and [`SourceEvent::Demobilize`]; the others are for
/// metrics and logs (their state changes already happened).
#[must_use = "samples must reach the clock filter and demobilization must drop the source"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// A valid reply: pass the measurement to the clock filter. The reach
    /// register's bit 0 is now set.
    Sample(Measurement),
    /// The datagram was discarded for this reason; nothing else happened
    /// except, for replies that carried our origin, the request now counts as
    /// answered.
    Rejected(RejectReason),
    /// An authentic RATE kiss code: the poll exponent was raised to
    /// `poll_log2` and the next request is not before `next_poll_at`.
    RateLimited {
        /// The new poll exponent, log2 seconds.
        poll_log2: i8,
        /// When the next request is due.
        next_poll_at: Instant,
    },
    /// An authentic DENY or RSTR kiss code: the source sends nothing ever
    /// again; the caller SHOULD drop it (and may replace it, e.g. from a pool).
    Demobilize(KissCode),
    /// An authentic NTSN kiss code (RFC 8915 §5.7): for the NTS layer, which
    /// MUST check the Unique Identifier and may renew cookies. No sample.
    NtsNak,
    /// Another kiss code (registered or not, `X…` included): informational
    /// only, no protocol action (RFC 5905 §7.4 c, d). No sample.
    Kiss(KissCode),
}

/// Why a datagram was not used. See the table in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Shorter than the 48-octet header (format check, RFC 5905 §9.2).
    TooShort,
    /// Version number not 1–4 (format check, RFC 5905 §9.2, A.5.1).
    BadVersion,
    /// Mode other than 4, server (RFC 5905 §9.2 Fig. 20).
    BadMode,
    /// The source was demobilized by a DENY or RSTR kiss code.
    Demobilized,
    /// Transmit timestamp equal to that of the last reply: duplicate or replay
    /// (RFC 5905 §8).
    Duplicate,
    /// Origin timestamp zero (RFC 5905 A.5.1; an attack signature per RFC 8633 §5.3).
    ZeroOrigin,
    /// The request this answers was already answered: the expected origin was
    /// cleared after the first reply (RFC 5905 §8).
    AlreadyAnswered,
    /// No request outstanding and never one with this origin.
    Unsolicited,
    /// Origin timestamp differs from the outstanding request's transmit
    /// timestamp (RFC 5905 §8; an attack signature per RFC 8633 §5.3).
    Bogus,
    /// Extension fields or a MAC that do not parse (a length past the end,
    /// stray octets): the whole packet is discarded (RFC 7822 §3, RFC 5905 §7.5).
    MalformedExtension,
    /// A crypto-NAK (4-octet MAC) answering our request: never a sample
    /// (RFC 5905 §9.2).
    CryptoNak,
    /// Transmit timestamp zero (RFC 5905 §8, A.5.1).
    ZeroTransmit,
    /// Receive timestamp zero (RFC 4330 §5).
    ZeroReceive,
    /// Leap indicator 3: the server is not synchronized (RFC 5905 A.5.1.1).
    Unsynchronized,
    /// Stratum 16 or more: the server is not synchronized (RFC 5905 A.5.1.1).
    StratumUnsynchronized,
    /// Reference timestamp later than the transmit timestamp (RFC 5905 A.5.1.1).
    ReferenceAfterTransmit,
    /// Root delay / 2 + root dispersion ≥ MAXDISP (RFC 5905 A.5.1.1).
    RootDistance,
    /// An NTPv5 reply in another draft than the one spoken, or without the
    /// Draft Identification (draft-ietf-ntp-ntpv5-07 §7.1).
    WrongDraft,
    /// An NTPv5 reply in another timescale than the one asked for
    /// (draft-ietf-ntp-ntpv5-07 §9).
    WrongTimescale,
    /// A valid reply whose round-trip delay is above the source's
    /// [`SourceConfig::max_delay`] (chrony's `maxdelay`): it counts for
    /// reachability and polling, and gives no sample.
    MaxDelay,
    /// A valid reply whose round-trip delay is above the source's
    /// [`SourceConfig::max_delay_ratio`] times the least of its last
    /// [`DELAY_HISTORY`] samples (chrony's `maxdelayratio`): it counts for
    /// reachability and polling, and gives no sample.
    MaxDelayRatio,
}

impl RejectReason {
    /// Every reason, in check order.
    pub const ALL: [RejectReason; 21] = [
        RejectReason::TooShort,
        RejectReason::BadVersion,
        RejectReason::BadMode,
        RejectReason::Demobilized,
        RejectReason::Duplicate,
        RejectReason::ZeroOrigin,
        RejectReason::AlreadyAnswered,
        RejectReason::Unsolicited,
        RejectReason::Bogus,
        RejectReason::MalformedExtension,
        RejectReason::CryptoNak,
        RejectReason::ZeroTransmit,
        RejectReason::ZeroReceive,
        RejectReason::Unsynchronized,
        RejectReason::StratumUnsynchronized,
        RejectReason::ReferenceAfterTransmit,
        RejectReason::RootDistance,
        RejectReason::WrongDraft,
        RejectReason::WrongTimescale,
        RejectReason::MaxDelay,
        RejectReason::MaxDelayRatio,
    ];

    /// A stable snake_case name for metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            RejectReason::TooShort => "too_short",
            RejectReason::BadVersion => "bad_version",
            RejectReason::BadMode => "bad_mode",
            RejectReason::Demobilized => "demobilized",
            RejectReason::Duplicate => "duplicate",
            RejectReason::ZeroOrigin => "zero_origin",
            RejectReason::AlreadyAnswered => "already_answered",
            RejectReason::Unsolicited => "unsolicited",
            RejectReason::Bogus => "bogus",
            RejectReason::MalformedExtension => "malformed_extension",
            RejectReason::CryptoNak => "crypto_nak",
            RejectReason::ZeroTransmit => "zero_transmit",
            RejectReason::ZeroReceive => "zero_receive",
            RejectReason::Unsynchronized => "unsynchronized",
            RejectReason::StratumUnsynchronized => "stratum_unsynchronized",
            RejectReason::ReferenceAfterTransmit => "reference_after_transmit",
            RejectReason::RootDistance => "root_distance",
            RejectReason::WrongDraft => "wrong_draft",
            RejectReason::WrongTimescale => "wrong_timescale",
            RejectReason::MaxDelay => "max_delay",
            RejectReason::MaxDelayRatio => "max_delay_ratio",
        }
    }

    /// Where the check is written.
    pub const fn rule(self) -> &'static str {
        match self {
            RejectReason::TooShort | RejectReason::BadVersion => "RFC 5905 §9.2",
            RejectReason::BadMode => "RFC 5905 §9.2 Fig. 20",
            RejectReason::Demobilized => "RFC 5905 §7.4",
            RejectReason::Duplicate | RejectReason::AlreadyAnswered | RejectReason::ZeroTransmit => "RFC 5905 §8",
            RejectReason::ZeroOrigin | RejectReason::Bogus => "RFC 5905 §8, RFC 8633 §5.3",
            RejectReason::Unsolicited => "RFC 5905 §9.2",
            RejectReason::MalformedExtension => "RFC 7822 §3, RFC 5905 §7.5",
            RejectReason::CryptoNak => "RFC 5905 §9.2",
            RejectReason::ZeroReceive => "RFC 4330 §5",
            RejectReason::Unsynchronized
            | RejectReason::StratumUnsynchronized
            | RejectReason::ReferenceAfterTransmit
            | RejectReason::RootDistance => "RFC 5905 A.5.1.1",
            RejectReason::WrongDraft => "draft-ietf-ntp-ntpv5-07 §7.1",
            RejectReason::WrongTimescale => "draft-ietf-ntp-ntpv5-07 §9",
            RejectReason::MaxDelay => "chrony's maxdelay (not in RFC 5905)",
            RejectReason::MaxDelayRatio => "chrony's maxdelayratio (not in RFC 5905)",
        }
    }

    /// Whether RFC 8633 §5.3 lists this as an attack signature operators
    /// should watch (bogus origin, zero origin).
    pub const fn is_attack_signature(self) -> bool {
        matches!(self, RejectReason::Bogus | RejectReason::ZeroOrigin)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one source, for metrics (RFC 8633 §5.3 asks for observable
/// attack signatures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Requests written by [`Source::handle_timeout`].
    pub requests_sent: u64,
    /// Valid replies turned into samples.
    pub samples: u64,
    /// Authentic RATE kiss codes.
    pub kiss_rate: u64,
    /// Authentic DENY and RSTR kiss codes.
    pub kiss_deny: u64,
    /// Authentic NTSN kiss codes.
    pub kiss_ntsn: u64,
    /// Other authentic kiss codes.
    pub kiss_other: u64,
    rejected: [u64; RejectReason::ALL.len()],
}

impl SourceCounters {
    /// Datagrams rejected for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()]
    }

    /// Datagrams rejected for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// The request in flight.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    /// The random transmit timestamp we sent; the reply must echo it.
    xmt: NtpTimestamp,
    /// T1 as the local clock read it in `handle_timeout`.
    local_send_time: NtpTime,
    /// An NTPv5 request (`xmt` holds its client cookie): the Reference IDs
    /// chunk offset it asked for.
    v5_chunk: Option<usize>,
    /// An interleaved request: the exchange it refers to and the random
    /// receive timestamp it carried, which an interleaved reply echoes as
    /// origin.
    interleaved: Option<(LastExchange, NtpTimestamp)>,
}

/// The exchange of the last valid reply, which an interleaved request refers
/// to (RFC 9769 §2).
#[derive(Clone, Copy, Debug)]
struct LastExchange {
    /// T1 of the request it answered (the true send time when the driver had it).
    t1: NtpTime,
    /// The server's receive timestamp in that reply: an interleaved request's origin.
    t2: NtpTimestamp,
    /// T4, the reply's local arrival.
    t4: NtpTime,
    /// Interleaved requests sent since that reply.
    requests: u8,
}

/// Interleaved requests that may refer to one reply: after these go
/// unanswered, requests are basic until a reply arrives (the draft's
/// "SHOULD limit the number of requests in the interleaved mode between
/// server responses"; the server's saved pair is likely gone by then).
pub const INTERLEAVED_REQUESTS_PER_REPLY: u8 = 4;

/// How long after a request's arrival a server may have built its
/// interleaved reply, for the reference-time check (A.5.1.1): the reply's
/// transmit timestamp is the previous reply's departure, so the request's
/// receive timestamp plus this is the latest the header can be. A server
/// answers within milliseconds; a reference time a second past the
/// arrival is bad data all the same.
pub const INTERLEAVED_REPLY_SLACK: NtpDuration = NtpDuration::from_seconds(1);

/// One upstream server in client mode: poll process and peer process.
/// See the [module docs](self) for the call protocol.
#[derive(Clone, Debug)]
pub struct Source {
    config: SourceConfig,
    /// hpoll: the host poll exponent, within the configured range.
    host_poll_log2: i8,
    /// s.poll: the system's poll exponent, as last set.
    system_poll_log2: i8,
    /// ppoll: the poll field of the last valid reply.
    peer_poll_log2: Option<i8>,
    /// Floor raised by RATE kiss codes (i8::MIN: none).
    kod_poll_floor_log2: i8,
    reach: u8,
    unreach_polls: u8,
    /// Requests still to send in the current burst.
    burst_remaining: u8,
    /// Start of the last regular poll.
    last_poll_at: Instant,
    /// When the next request is due.
    next_send_at: Instant,
    /// Jitter of the current interval, in 1/65536 of 1/16 of the interval.
    jitter_frac16: u16,
    /// No request before this (set by RATE: one new interval after the kiss).
    not_before: Instant,
    outstanding: Option<Outstanding>,
    /// Transmit timestamp of the last request that was answered.
    last_answered_xmt: Option<NtpTimestamp>,
    /// Transmit timestamp of the last reply carrying our origin (RFC p.org).
    last_rx_xmt: Option<NtpTimestamp>,
    last_leap: Option<LeapIndicator>,
    demobilized: Option<KissCode>,
    counters: SourceCounters,
    /// Which protocol the association speaks now (NTPv5 and the upgrade).
    speaking: Speaking,
    /// The lowest poll the NTPv5 server allows (its Poll field; i8::MIN: none).
    v5_poll_floor_log2: i8,
    /// Whether the first regular poll has happened: an NTPv5 association
    /// bursts only before it (draft-ietf-ntp-ntpv5-07 §9, "On start").
    started: bool,
    /// The server's NTPv5 Reference IDs filter, assembled from chunks.
    reference_ids: crate::wire::v5::RemoteBloomFilter,
    /// With `interleaved`: the exchange of the last valid reply.
    last_exchange: Option<LastExchange>,
    /// With `interleaved`: the receive timestamp of the last reply that
    /// carried our origin (the duplicate test compares both, RFC 9769 §2).
    last_rx_rcv: Option<NtpTimestamp>,
    /// With `max_delay_ratio`: the delays of the last [`DELAY_HISTORY`]
    /// samples given, newest last.
    delays: VecDeque<NtpDuration>,
}

impl Source {
    /// A new association; its first request is due at `now`.
    pub fn new(config: SourceConfig, now: Instant) -> Result<Source, ConfigError> {
        config.validate()?;
        Ok(Source {
            config,
            host_poll_log2: config.poll_min_log2,
            system_poll_log2: config.poll_min_log2,
            peer_poll_log2: None,
            kod_poll_floor_log2: i8::MIN,
            reach: 0,
            unreach_polls: 0,
            burst_remaining: 0,
            last_poll_at: now,
            next_send_at: now,
            jitter_frac16: 0,
            not_before: now,
            outstanding: None,
            last_answered_xmt: None,
            last_rx_xmt: None,
            last_leap: None,
            demobilized: None,
            counters: SourceCounters::default(),
            speaking: Speaking::initial(&config),
            v5_poll_floor_log2: i8::MIN,
            started: false,
            reference_ids: crate::wire::v5::RemoteBloomFilter::new(v5::REFERENCE_IDS_CHUNK),
            last_exchange: None,
            last_rx_rcv: None,
            delays: VecDeque::new(),
        })
    }

    /// With `max_delay_ratio`: whether `delay` is above the ratio times the
    /// least of the last [`DELAY_HISTORY`] samples' delays (none before the
    /// first sample, as chrony's test with no samples held); a delay within
    /// it joins them.
    pub(crate) fn delay_ratio_exceeded(&mut self, delay: NtpDuration) -> bool {
        let Some(ratio) = self.config.max_delay_ratio else { return false };
        let least = self.delays.iter().min().copied();
        if least.is_some_and(|l| delay.to_seconds_f64() > ratio * l.to_seconds_f64()) {
            return true;
        }
        if self.delays.len() == DELAY_HISTORY {
            self.delays.pop_front();
        }
        self.delays.push_back(delay);
        false
    }

    // ---- getters ----------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The 8-bit reach register: bit 0 is the latest regular poll.
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// Whether any of the last 8 regular polls was answered (RFC 5905 §9.2).
    pub fn is_reachable(&self) -> bool {
        self.reach != 0
    }

    /// Consecutive regular polls that found the reach register empty, up to
    /// [`UNREACH_POLLS`].
    pub fn unreach_polls(&self) -> u8 {
        self.unreach_polls
    }

    /// The poll exponent of the regular interval now in force, log2 seconds:
    /// host poll, lowered by the server's advertised poll down to the
    /// configured minimum, raised to any RATE floor.
    pub fn poll_log2(&self) -> i8 {
        let mut e = self.host_poll_log2;
        if let Some(peer) = self.peer_poll_log2 {
            e = e.min(peer);
        }
        e.max(self.config.poll_min_log2).max(self.kod_poll_floor_log2).max(self.v5_poll_floor_capped())
    }

    /// The NTPv5 server's Poll floor, capped (-07 §9: "only up to a
    /// reasonable maximum value") at [`KOD_RATE_POLL_CAP_LOG2`] or the
    /// configured maximum if higher; `i8::MIN` when there is none.
    fn v5_poll_floor_capped(&self) -> i8 {
        self.v5_poll_floor_log2.min(self.config.poll_max_log2.max(KOD_RATE_POLL_CAP_LOG2))
    }

    /// The host poll exponent (hpoll), log2 seconds: the system poll, or more
    /// while backing off from an unreachable server.
    pub fn host_poll_log2(&self) -> i8 {
        self.host_poll_log2
    }

    /// Whether a burst is under way.
    pub fn in_burst(&self) -> bool {
        self.burst_remaining > 0
    }

    /// The leap indicator of the last valid reply, for the system to propagate.
    pub fn leap(&self) -> Option<LeapIndicator> {
        self.last_leap
    }

    /// The kiss code that demobilized this source, if one did.
    pub fn demobilized_by(&self) -> Option<KissCode> {
        self.demobilized
    }

    /// Counters for metrics.
    pub fn counters(&self) -> &SourceCounters {
        &self.counters
    }

    /// When [`Source::handle_timeout`] should next be called; `None` once
    /// demobilized.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.demobilized.is_none().then_some(self.next_send_at)
    }

    // ---- inputs -----------------------------------------------------------

    /// Sets the system poll exponent (s.poll, from the discipline), clamped to
    /// the configured range. A reachable source uses it at once: the next
    /// regular poll is rescheduled from the last one.
    pub fn set_poll_log2(&mut self, now: Instant, poll_log2: i8) {
        let p = poll_log2.clamp(self.config.poll_min_log2, self.config.poll_max_log2);
        self.system_poll_log2 = p;
        if self.reach != 0 {
            self.host_poll_log2 = p;
            if self.burst_remaining == 0 {
                self.schedule_regular(now);
            }
        }
    }

    /// Starts over after a clock step (RFC 5905 §11.2.3): clears the reach
    /// register, the unreach counter, any burst and the outstanding request
    /// (its T1 predates the step), and polls at `now` (with a new iburst if
    /// configured). Kiss-code state (RATE floor and hold, demobilization) is
    /// kept.
    pub fn reset(&mut self, now: Instant) {
        self.reach = 0;
        self.unreach_polls = 0;
        self.burst_remaining = 0;
        self.host_poll_log2 = self.system_poll_log2;
        self.peer_poll_log2 = None;
        self.outstanding = None;
        // Its timestamps predate the step.
        self.last_exchange = None;
        // NTPv5: the server's floor still counts from the last request.
        let floor = if self.speaking.is_v5() && self.v5_poll_floor_log2 != i8::MIN { self.last_poll_at + poll_interval(self.v5_poll_floor_capped(), 0) } else { now };
        self.last_poll_at = now;
        self.next_send_at = now.max(self.not_before).max(floor);
    }

    /// Runs the poll process if a request is due (`now >= poll_timeout()`).
    ///
    /// `local_time` is the local clock now (T1); `random` is 64 fresh random
    /// bits, which become the request's transmit timestamp (zero is replaced by
    /// one) and, with `poll_jitter`, the interval jitter. Returns the request
    /// written into `buf`, or `None` if nothing is due or the source is
    /// demobilized (then nothing changes).
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`REQUEST_LEN`] (48 octets) and a request is due.
    pub fn handle_timeout(&mut self, now: Instant, local_time: NtpTime, random: u64, buf: &mut [u8]) -> Option<TransmitRequest> {
        if self.demobilized.is_some() || now < self.next_send_at {
            return None;
        }
        let needed = self.request_len();
        assert!(buf.len() >= needed, "Source::handle_timeout needs a buffer of at least {needed} octets");
        let mut stale = false;
        let mut unreachable = false;
        // NTPv5 (-07 §9) allows a burst on start only, and no burst at every
        // poll; the start's burst may ignore the server's Poll.
        let v5 = self.speaking.is_v5();
        let may_burst = !v5 || !self.started;
        if self.burst_remaining > 0 {
            // A.5.7: inside a burst only count down.
            self.burst_remaining -= 1;
            if v5 && self.burst_remaining == 0 {
                // NTPv5: the next interval counts from the burst's last
                // request, not from its first as in A.5.7.
                self.last_poll_at = now;
            }
        } else {
            self.started = true;
            self.last_poll_at = now;
            self.jitter_frac16 = if self.config.poll_jitter { (splitmix64(random) >> 48) as u16 } else { 0 };
            unreachable = self.reach == 0b1000_0000;
            self.reach <<= 1;
            stale = self.reach & 0b111 == 0;
            if self.reach == 0 {
                if self.config.iburst && self.unreach_polls == 0 && may_burst {
                    self.burst_remaining = BCOUNT - 1;
                }
                if self.unreach_polls < UNREACH_POLLS {
                    self.unreach_polls += 1;
                } else {
                    self.host_poll_log2 = (self.host_poll_log2 + 1).min(self.config.poll_max_log2);
                }
            } else {
                self.unreach_polls = 0;
                self.host_poll_log2 = self.system_poll_log2;
                if self.config.burst && !v5 {
                    self.burst_remaining = BCOUNT - 1;
                }
            }
        }
        let xmt = NtpTimestamp::from_bits(if random == 0 { 1 } else { random });
        let (len, v5_chunk) = self.write_any_request(xmt, buf);
        let interleaved = self.interleaved_reference().filter(|_| v5_chunk.is_none()).map(|x| (x, interleaved_receive_field(random, xmt)));
        if let Some((x, rx_field)) = interleaved {
            buf[24..32].copy_from_slice(&x.t2.to_bits().to_be_bytes());
            buf[32..40].copy_from_slice(&rx_field.to_bits().to_be_bytes());
            if let Some(last) = self.last_exchange.as_mut() {
                last.requests += 1;
            }
        }
        self.outstanding = Some(Outstanding { xmt, local_send_time: local_time, v5_chunk, interleaved });
        self.counters.requests_sent += 1;
        if self.burst_remaining > 0 {
            self.next_send_at = now + BURST_SPACING;
        } else {
            self.schedule_regular(now);
        }
        debug_assert!(self.next_send_at > now || now == Instant::MAX);
        Some(TransmitRequest { len, stale, unreachable })
    }

    /// Judges a datagram from the server (see the [module docs](self) for the
    /// checks and kiss-code reactions, in order).
    ///
    /// `rx_local` is the local clock at arrival (T4); `tx_local_actual`, if the
    /// driver has it, the true local send time of the outstanding request,
    /// which replaces the `local_time` given to `handle_timeout` as T1. Never
    /// panics, whatever `bytes` hold.
    pub fn handle_response(
        &mut self,
        now: Instant,
        bytes: &[u8],
        rx_local: NtpTime,
        tx_local_actual: Option<NtpTime>,
    ) -> SourceEvent {
        let event = self.process_response(now, bytes, rx_local, tx_local_actual);
        match event {
            SourceEvent::Sample(_) => self.counters.samples += 1,
            SourceEvent::Rejected(reason) => self.counters.rejected[reason.index()] += 1,
            SourceEvent::RateLimited { .. } => self.counters.kiss_rate += 1,
            SourceEvent::Demobilize(_) => self.counters.kiss_deny += 1,
            SourceEvent::NtsNak => self.counters.kiss_ntsn += 1,
            SourceEvent::Kiss(_) => self.counters.kiss_other += 1,
        }
        event
    }

    // ---- internals --------------------------------------------------------

    fn process_response(
        &mut self,
        now: Instant,
        bytes: &[u8],
        rx_local: NtpTime,
        tx_local_actual: Option<NtpTime>,
    ) -> SourceEvent {
        use RejectReason as R;
        let reject = SourceEvent::Rejected;

        // Format checks.
        if crate::wire::v4::version_of(bytes) == Some(crate::wire::v5::VERSION) {
            return self.process_v5_response(now, bytes, rx_local, tx_local_actual);
        }
        let Ok(packet) = Packet::new_checked(bytes) else { return reject(R::TooShort) };
        let Ok(repr) = Repr::parse(&packet) else { return reject(R::TooShort) };
        // An NTPv4 reply to an NTPv5 request is no answer, even with the
        // client cookie where NTPv4 has the origin timestamp.
        if !(1..=4).contains(&repr.version) || self.outstanding.is_some_and(|o| o.v5_chunk.is_some()) {
            return reject(R::BadVersion);
        }
        if repr.mode != Mode::Server {
            return reject(R::BadMode);
        }
        if crate::wire::ext::ExtensionArea::parse(packet.payload()).error.is_some() {
            return reject(R::MalformedExtension);
        }
        if self.demobilized.is_some() {
            return reject(R::Demobilized);
        }

        // On-wire checks (§8): duplicate, then origin binding.
        // An interleaved client compares the receive timestamps too: an
        // interleaved reply may carry the transmit timestamp of the basic
        // reply before it (RFC 9769 §2).
        if !repr.transmit_timestamp.is_zero()
            && Some(repr.transmit_timestamp) == self.last_rx_xmt
            && (!self.config.interleaved || Some(repr.receive_timestamp) == self.last_rx_rcv)
        {
            return reject(R::Duplicate);
        }
        if repr.origin_timestamp.is_zero() {
            return reject(R::ZeroOrigin);
        }
        let Some(out) = self.outstanding else {
            return if Some(repr.origin_timestamp) == self.last_answered_xmt {
                reject(R::AlreadyAnswered)
            } else {
                reject(R::Unsolicited)
            };
        };
        // Basic replies echo our transmit timestamp, interleaved ones the
        // receive timestamp of an interleaved request (RFC 9769 §2).
        let interleaved = match out.interleaved {
            _ if repr.origin_timestamp == out.xmt => None,
            Some((x, rx_field)) if repr.origin_timestamp == rx_field => Some(x),
            _ => return reject(R::Bogus),
        };

        // The reply answers our request: clear the expected origin (§8
        // xmt-clear) and remember its transmit timestamp for the duplicate test.
        self.outstanding = None;
        self.last_answered_xmt = Some(out.xmt);
        self.last_rx_xmt = Some(repr.transmit_timestamp);
        self.last_rx_rcv = Some(repr.receive_timestamp);
        // An answer to an upgrade request: the server offers NTPv5 when it
        // echoes the marker, which is then no reference time.
        let mut repr = repr;
        if self.v4_answered(repr.reference_timestamp == crate::server::UPGRADE_MARKER) {
            repr.reference_timestamp = NtpTimestamp::ZERO;
        }

        if packet.payload().len() == 4 {
            return reject(R::CryptoNak);
        }
        // Stratum 0 with a zero reference ID carries no kiss code: it is how an
        // unsynchronized server (chrony, ntpd, ours) answers (RFC 5905 §7.3/§7.4).
        if repr.stratum == 0 && repr.reference_id.to_u32() == 0 {
            return reject(R::StratumUnsynchronized);
        }
        if repr.stratum == 0 {
            return self.handle_kiss(now, &repr);
        }

        // Header checks (A.5.1, A.5.1.1).
        if repr.transmit_timestamp.is_zero() {
            return reject(R::ZeroTransmit);
        }
        if repr.receive_timestamp.is_zero() {
            return reject(R::ZeroReceive);
        }
        if repr.leap == LeapIndicator::Unsynchronized {
            return reject(R::Unsynchronized);
        }
        if repr.stratum >= 16 {
            return reject(R::StratumUnsynchronized);
        }
        // A zero reference timestamp is "unknown", never "after" (as the
        // unsigned comparison of A.5.1.1 treats it).
        // An interleaved reply's transmit timestamp is its previous reply's
        // and it carries none of its own departure: the header is bounded
        // by the request's arrival plus the time a server takes to answer.
        let header_time = match interleaved {
            Some(_) => repr.receive_timestamp.wrapping_add(INTERLEAVED_REPLY_SLACK),
            None => repr.transmit_timestamp,
        };
        if !repr.reference_timestamp.is_zero() && repr.reference_timestamp.wrapping_sub(header_time) > NtpDuration::ZERO {
            return reject(R::ReferenceAfterTransmit);
        }
        let root_distance = repr.root_delay.to_duration().half() + repr.root_dispersion.to_duration();
        if root_distance >= MAXDISP {
            return reject(R::RootDistance);
        }

        let local_send_time = tx_local_actual.unwrap_or(out.local_send_time);
        let m = match interleaved {
            None => self.measure(now, &repr, Stamps::basic(local_send_time, &repr, rx_local), false),
            Some(x) => self.measure(now, &repr, Stamps { t1: x.t1, t2: x.t2, t3: repr.transmit_timestamp, t4: x.t4 }, true),
        };
        if self.config.interleaved {
            self.last_exchange = Some(LastExchange { t1: local_send_time, t2: repr.receive_timestamp, t4: rx_local, requests: 0 });
        }

        // Peer process bookkeeping (§9.2, A.5.1.1): reach, ppoll, leap, poll_update.
        self.reach |= 1;
        self.peer_poll_log2 = Some(repr.poll);
        self.last_leap = Some(repr.leap);
        if self.burst_remaining == 0 {
            self.schedule_regular(now);
        }
        if self.config.max_delay.is_some_and(|max| m.delay > max) {
            return reject(R::MaxDelay);
        }
        if self.delay_ratio_exceeded(m.delay) {
            return reject(R::MaxDelayRatio);
        }
        SourceEvent::Sample(m)
    }

    fn handle_kiss(&mut self, now: Instant, repr: &Repr) -> SourceEvent {
        let code = repr.reference_id.kiss_code();
        match code {
            KissCode::Deny | KissCode::Rstr => {
                self.demobilized = Some(code);
                self.burst_remaining = 0;
                self.next_send_at = Instant::MAX;
                SourceEvent::Demobilize(code)
            }
            KissCode::Rate => {
                let current = self.poll_log2();
                let cap = KOD_RATE_POLL_CAP_LOG2.max(self.config.poll_max_log2);
                let wanted = current.saturating_add(1).max(repr.poll.min(KOD_RATE_POLL_CAP_LOG2));
                let raised = wanted.min(cap).max(current);
                self.kod_poll_floor_log2 = self.kod_poll_floor_log2.max(raised);
                self.burst_remaining = 0;
                let poll_log2 = self.poll_log2();
                self.not_before = now + poll_interval(poll_log2, self.jitter_frac16);
                self.next_send_at = self.not_before;
                SourceEvent::RateLimited { poll_log2, next_poll_at: self.next_send_at }
            }
            KissCode::Ntsn => SourceEvent::NtsNak,
            other => SourceEvent::Kiss(other),
        }
    }

    /// Offset, delay and dispersion from the four timestamps (§8, §9.2), with
    /// first-order differences in 64-bit two's complement so that the 2036 era
    /// wrap is harmless, and second-order sums in 128 bits.
    fn measure(&self, now: Instant, repr: &Repr, stamps: Stamps, interleaved: bool) -> Measurement {
        let Stamps { t1, t2, t3, t4 } = stamps;
        let t1_ts = t1.to_timestamp();
        let t4_ts = t4.to_timestamp();
        let d21 = i128::from(t2.wrapping_sub(t1_ts).to_bits());
        let d34 = i128::from(t3.wrapping_sub(t4_ts).to_bits());
        let d41 = i128::from(t4_ts.wrapping_sub(t1_ts).to_bits());
        let d32 = i128::from(t3.wrapping_sub(t2).to_bits());
        let offset = saturate((d21 + d34) >> 1);
        let precision = log2_duration(self.config.precision_log2);
        let delay = saturate(d41 - d32).max(precision);
        let elapsed = d41.max(0);
        let phi_part = saturate(elapsed * i128::from(PHI_PPM) / 1_000_000);
        let dispersion = log2_duration(repr.precision) + precision + phi_part;
        let (offset, leap) = match (self.config.unsmear, repr.smear_correction()) {
            (true, Some(c)) => (offset + c.to_duration(), smeared_leap(c, t4)),
            _ => (offset, repr.leap),
        };
        Measurement {
            offset,
            delay,
            dispersion,
            received_at: now,
            local_send_time: t1,
            local_receive_time: t4,
            server_receive_timestamp: t2,
            server_transmit_timestamp: t3,
            leap,
            stratum: repr.stratum,
            reference_id: repr.reference_id,
            reference_timestamp: repr.reference_timestamp,
            root_delay: repr.root_delay,
            root_dispersion: repr.root_dispersion,
            precision_log2: repr.precision,
            poll_log2: repr.poll,
            version: repr.version,
            interleaved,
        }
    }

    /// The exchange the next request refers to in interleaved mode, if it
    /// is to be interleaved.
    fn interleaved_reference(&self) -> Option<LastExchange> {
        self.last_exchange.filter(|x| self.config.interleaved && x.requests < INTERLEAVED_REQUESTS_PER_REPLY)
    }

    /// A.5.7 `poll_update()` outside a burst: next regular poll one interval
    /// after the last, but never in the past nor inside a RATE hold.
    fn schedule_regular(&mut self, now: Instant) {
        let next = self.last_poll_at + poll_interval(self.poll_log2(), self.jitter_frac16);
        let next = if next <= now { now + LATE_POLL_DELAY } else { next };
        self.next_send_at = next.max(self.not_before);
    }

    /// The client request: all zero but LI 0, version, mode 3, host poll and
    /// the random transmit timestamp (RFC 4330 §5; as little as possible about
    /// us).
    fn write_request(&self, xmt: NtpTimestamp, buf: &mut [u8]) {
        let repr = Repr {
            leap: LeapIndicator::NoWarning,
            version: self.config.version,
            mode: Mode::Client,
            stratum: 0,
            // A.5.7.3 sends hpoll, not the interval in force: servers echo
            // the field back as ppoll, which would otherwise pin us to it.
            poll: self.host_poll_log2.max(self.kod_poll_floor_log2),
            precision: 0,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId::NONE,
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: xmt,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..REQUEST_LEN]));
    }
}

/// The receive timestamp of an interleaved request: random in all its bits
/// (RFC 9769 §6), from another stream of `random` than the transmit
/// timestamp `xmt` and the poll jitter, never zero and never equal to `xmt`
/// (§2: or the server could not tell the modes apart).
fn interleaved_receive_field(random: u64, xmt: NtpTimestamp) -> NtpTimestamp {
    nonzero_and_not(splitmix64(random ^ 0x9e37_79b9_7f4a_7c15), xmt)
}

/// `r` as a timestamp, moved off zero and off `xmt`.
fn nonzero_and_not(mut r: u64, xmt: NtpTimestamp) -> NtpTimestamp {
    if r == 0 {
        r = 2;
    }
    if r == xmt.to_bits() {
        r ^= 4;
    }
    NtpTimestamp::from_bits(r)
}

/// The four timestamps of a measurement.
#[derive(Clone, Copy, Debug)]
struct Stamps {
    t1: NtpTime,
    t2: NtpTimestamp,
    t3: NtpTimestamp,
    t4: NtpTime,
}

impl Stamps {
    /// A basic exchange: T2 and T3 from the reply that answers the request sent at `t1`.
    fn basic(t1: NtpTime, repr: &Repr, t4: NtpTime) -> Self {
        Stamps { t1, t2: repr.receive_timestamp, t3: repr.transmit_timestamp, t4 }
    }
}

/// 2^log2 seconds plus `jitter_frac16`/65536 of a sixteenth of that.
fn poll_interval(log2: i8, jitter_frac16: u16) -> Duration {
    let base = Duration::from_secs(1u64 << log2.clamp(0, 40));
    let extra_nanos = (base.as_nanos() * u128::from(jitter_frac16)) >> 20;
    base + Duration::from_nanos(u64::try_from(extra_nanos).unwrap_or(u64::MAX))
}

/// 2^log2 seconds as a duration, saturating; zero below the 2^-32 s unit.
fn log2_duration(log2: i8) -> NtpDuration {
    match i32::from(log2) + 32 {
        e if e < 0 => NtpDuration::ZERO,
        e if e >= 63 => NtpDuration::MAX,
        e => NtpDuration::from_bits(1i64 << e),
    }
}

/// The leap second a smear implies, seen at local time `now`: a positive
/// correction is an inserted second still to come (before it, served time runs
/// behind); a negative one on the last day of a month is a deleted second to
/// come, while one after midnight is the second half of a centred smear of a
/// leap already applied.
fn smeared_leap(c: crate::wire::refid::SmearCorrection, now: NtpTime) -> LeapIndicator {
    let last_day_of_month = (now + NtpDuration::from_seconds(86_400)).to_civil().day == 1;
    match c.raw() {
        r if r > 0 && last_day_of_month => LeapIndicator::Insert,
        r if r < 0 && last_day_of_month => LeapIndicator::Delete,
        _ => LeapIndicator::NoWarning,
    }
}

fn saturate(bits: i128) -> NtpDuration {
    NtpDuration::from_bits(bits.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// SplitMix64 finaliser: decorrelates the jitter from the transmitted value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
