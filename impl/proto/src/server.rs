//! The sans-IO NTPv4 server responder (RFC 5905 §8, §9.2, App. A.5.3).
//!
//! [`Server`] turns one received datagram into either a response written into
//! a caller-supplied buffer or a reason to stay silent. It reads no clock,
//! opens no socket and draws no random numbers: the receive timestamp, the
//! transmit timestamp, a monotonic time and the secret hash key are arguments.
//!
//! # Call protocol (who reads the clock when)
//!
//! ```text
//!   daemon                                         Server
//!   ──────                                         ──────
//!   recv datagram; rx_time = kernel/HW/user
//!   receive timestamp; now_mono_ns = monotonic
//!   clock; clock = current ServerClockState
//!                      ── handle(now_mono_ns, from, request, rx_time, &clock, out) ──►
//!                      ◄── ServerAction::Respond(resp) | ServerAction::Ignore(reason)
//!   on Respond:
//!     tx_time = read the clock, as late as possible
//!                      ── finish_response(&resp, out, tx_time, &clock) ──►
//!                         (writes the transmit timestamp if the response needs one)
//!     send out[..resp.len]
//!     if a kernel/HW transmit timestamp arrives later:
//!                      ── transmitted(&resp, actual_tx_time, &clock) ──►
//!                         (refines the saved timestamp for interleaved mode)
//! ```
//!
//! - `handle` must be called with a non-decreasing `now_mono_ns` (used only
//!   for rate limiting and table eviction, never put on the wire).
//! - `finish_response` must be called exactly once per `Respond`, on the same
//!   buffer, before sending. It never panics; on a buffer shorter than
//!   `resp.len` it writes nothing.
//! - `transmitted` is optional; without it, the interleaved transmit timestamp
//!   is the one `finish_response` wrote (a software timestamp).
//!
//! # What is answered
//!
//! Nothing from a source no client can have (port 0, multicast, broadcast,
//! unspecified: [`is_unicast_source`]) and nothing longer than
//! [`MAX_REQUEST_LEN`] octets. Only NTP versions 1–4 in client mode (3), at
//! least 48 octets, whose octets after the header are well-formed extension fields (RFC 7822: each a multiple
//! of 4 and at least 16 octets) and/or a legacy MAC (4, 20 or 24 octets). The
//! answer is always a 48-octet NTPv4-format header in mode 4 carrying the
//! request's version, so it is never larger than the request (no
//! amplification). Extension fields are not echoed: through `handle`, requests
//! carrying them (or a MAC) get a plain, unauthenticated header, which an
//! authenticating client will discard; a server offering NTS calls
//! [`Server::handle_nts`] instead (see [`nts`]), whose NTS replies carry the
//! Unique Identifier and Authenticator and are still never larger than the request. Version 5 requests go to
//! the NTPv5 responder ([`v5`]), which answers in the request's draft with a
//! reply exactly as long as the request, under the same access control and
//! rate limiting ([`DropReason::NtpV5`] when [`ServerConfig::ntpv5`] is off).
//! An NTPv4 request whose reference timestamp is [`UPGRADE_MARKER`] gets it
//! back (the offer to switch to NTPv5, draft-ietf-ntp-ntpv5-07 §12). Modes 0,
//! 1, 2, 4, 5, 6 and 7 are never answered (no symmetric passive associations,
//! no control or private queries).
//!
//! # Field by field (basic mode)
//!
//! | field | value |
//! |---|---|
//! | LI | system leap; 3 when unsynchronized; 0 when a smear is configured (a smearing server never announces the leap, RFC 8633 §3.7.1) |
//! | VN | the request's |
//! | mode | 4 |
//! | stratum | system stratum; 0 when unsynchronized (16 internally) |
//! | poll | the request's, clamped to `[poll_log2_min, poll_log2_max]` (default 4..=17, RFC 5905 Fig. 6 MINPOLL/MAXPOLL and RFC 4330 §4) |
//! | precision | the clock state's |
//! | root delay | the clock state's |
//! | root dispersion | the clock state's plus PHI (15 ppm) × (receive time − reference time), RFC 5905 §9.2/§12, rounded up |
//! | reference ID | the clock state's; the smear REFID 254.b1.b2.b3 while a smear is active |
//! | reference timestamp | the clock state's (smeared if a smear is active at that instant) |
//! | origin | the request's transmit timestamp, all 64 bits |
//! | receive | `rx_time` (smeared) |
//! | transmit | `tx_time` (smeared), written by `finish_response`; never equal to, or earlier than, the receive timestamp (bumped to receive + 2^-32 s) |
//!
//! In interleaved mode (RFC 9769 §2) the origin is the request's *receive*
//! timestamp and the transmit timestamp is the actual transmit time of the
//! previous response to this client, the one whose receive timestamp the
//! request's origin carries. Kiss-o'-death answers (RATE, DENY, RSTR) have LI
//! 3, stratum 0, the kiss code as reference ID, origin = request transmit,
//! zero root delay, dispersion, reference, receive and transmit timestamps (RFC
//! 5905 §7.4: they carry no time), and for RATE a poll of at least the rate
//! limit's exponent.

pub mod access;
pub mod interleaved;
pub mod nts;
pub mod ratelimit;
pub mod smear;
pub mod table;
pub mod v5;

pub use access::{AccessAction, AccessList, AccessRule, AccessRuleError};
pub use interleaved::InterleavedStore;
pub use nts::{NtsReplyKind, NtsResponse, NtsServerAction};
pub use ratelimit::{RateLimitConfig, RateLimiter, RateVerdict};
pub use smear::{LeapKind, SmearConfig, SmearStyle, SMEAR_WINDOW_S};
pub use v5::{V5Drop, UPGRADE_MARKER};

use crate::time::{NtpDuration, NtpTime, NtpTimestamp};
use crate::wire::refid::{KissCode, ReferenceId, SmearCorrection};
use crate::wire::short::NtpShort;
use crate::wire::v4::{self, LeapIndicator, Mode, Packet, Repr, HEADER_LEN};
use core::net::{IpAddr, SocketAddr};

/// Frequency tolerance PHI of RFC 5905 (Fig. 6), parts per million: the rate
/// at which the served root dispersion grows since the last clock update.
pub const PHI_PPM: i64 = 15;

/// Stratum meaning "unsynchronized" internally (MAXSTRAT); sent as 0.
pub const STRATUM_UNSYNCHRONIZED: u8 = 16;

/// Longest request answered, octets: a header and extension fields up to
/// 2,000 octets (NTS requests are about 1 KiB). A receiver must read into a
/// buffer of at least `MAX_REQUEST_LEN + 1` octets, so that a longer
/// datagram, truncated by the kernel, still shows as too long
/// ([`DropReason::Oversize`]) instead of being judged by its first part.
pub const MAX_REQUEST_LEN: usize = 2048;

/// Octet offset of the transmit timestamp in the header.
const TRANSMIT_OFFSET: usize = 40;

/// The system state the responder advertises; the caller builds it from its
/// clock discipline for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerClockState {
    /// System leap indicator; [`LeapIndicator::Unsynchronized`] means not synchronized.
    pub leap: LeapIndicator,
    /// System stratum: 1 for a primary server, 2–15 above; 0 or 16 and up mean
    /// unsynchronized.
    pub stratum: u8,
    /// System precision, log2 seconds.
    pub precision_log2: i8,
    /// Root delay to the primary source.
    pub root_delay: NtpDuration,
    /// Root dispersion at the reference time (the responder adds PHI growth).
    pub root_dispersion: NtpDuration,
    /// Reference ID (a clock code at stratum 1, the upstream's ID above). When
    /// unsynchronized, use [`ReferenceId::NONE`]: never `INIT` (RFC 8633 §5.2).
    pub reference_id: ReferenceId,
    /// When the system clock was last set or corrected; `None` before the first update.
    pub reference_time: Option<NtpTime>,
    /// An inserted leap second (23:59:60) is in progress: the clock is
    /// repeating 23:59:59 (Linux `adjtimex` reports `TIME_OOP`). Only matters
    /// while a smear is configured.
    pub inserted_second_in_progress: bool,
}

impl ServerClockState {
    /// The state of a server that has never synchronized (RFC 5905 §11.1: LI 3,
    /// stratum MAXSTRAT), with the given precision.
    pub fn unsynchronized(precision_log2: i8) -> Self {
        ServerClockState {
            leap: LeapIndicator::Unsynchronized,
            stratum: STRATUM_UNSYNCHRONIZED,
            precision_log2,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            reference_id: ReferenceId::NONE,
            reference_time: None,
            inserted_second_in_progress: false,
        }
    }

    /// Whether the state says "synchronized": LI not 3 and stratum 1–15.
    pub fn is_synchronized(&self) -> bool {
        self.leap != LeapIndicator::Unsynchronized && (1..STRATUM_UNSYNCHRONIZED).contains(&self.stratum)
    }

    /// Root dispersion at `t`: the stored value plus PHI × (t − reference
    /// time) when `t` is later than the reference time.
    pub fn root_dispersion_at(&self, t: NtpTime) -> NtpDuration {
        let growth = match self.reference_time {
            Some(r) if t > r => {
                let since = i128::from(t.duration_since(r).to_bits());
                let bits = since * i128::from(PHI_PPM) / 1_000_000;
                NtpDuration::from_bits(bits.clamp(0, i128::from(i64::MAX)) as i64)
            }
            _ => NtpDuration::ZERO,
        };
        self.root_dispersion.saturating_add(growth)
    }
}

/// Responder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Who may be served.
    pub access: AccessList,
    /// Rate limiting and KoD limiting.
    pub rate_limit: RateLimitConfig,
    /// Answer interleaved requests in interleaved mode (RFC 9769 §2).
    pub interleaved: bool,
    /// Client slots of the interleaved timestamp store (rounded up to a power
    /// of two; default 4096, which is 164 KiB).
    pub interleaved_slots: usize,
    /// Lowest poll exponent put in a response (default 4, RFC 5905 MINPOLL).
    pub poll_log2_min: i8,
    /// Highest poll exponent put in a response (default 17, RFC 5905 MAXPOLL).
    pub poll_log2_max: i8,
    /// Leap smear to apply, if any. With a smear configured the responder
    /// never announces the leap (LI is 0 or 3).
    pub smear: Option<SmearConfig>,
    /// Answer NTPv5 requests (drafts -07, -08, -09, see [`v5`]) and offer the
    /// upgrade to NTPv4 clients that ask for it (default on).
    pub ntpv5: bool,
    /// TAI − UTC in seconds, when known: NTPv5 clients may then ask for TAI
    /// (default none: TAI requests are answered in UTC).
    pub tai_utc_offset: Option<i16>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            access: AccessList::default(),
            rate_limit: RateLimitConfig::default(),
            interleaved: true,
            interleaved_slots: 4096,
            poll_log2_min: 4,
            poll_log2_max: 17,
            smear: None,
            ntpv5: true,
            tai_utc_offset: None,
        }
    }
}

/// Which kiss-o'-death was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KodKind {
    /// `RATE`: the client is over the rate limit.
    Rate,
    /// `DENY`: access denied by an access rule.
    Deny,
    /// `RSTR`: access restricted by an access rule.
    Rstr,
}

impl KodKind {
    /// The kiss code on the wire.
    pub fn kiss_code(self) -> KissCode {
        match self {
            KodKind::Rate => KissCode::Rate,
            KodKind::Deny => KissCode::Deny,
            KodKind::Rstr => KissCode::Rstr,
        }
    }
}

/// What kind of answer was produced (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseReason {
    /// A basic-mode time response.
    Basic,
    /// An interleaved-mode time response.
    Interleaved,
    /// A kiss-o'-death.
    KodSent(KodKind),
}

/// Whether `from` can be a client's address: a unicast, specified address
/// (IPv4-mapped IPv6 judged as IPv4) and a port other than 0. Directed
/// broadcast addresses of a subnet look like unicast without the netmask and
/// are not recognised here.
pub fn is_unicast_source(from: SocketAddr) -> bool {
    let ip = table::canonical(from.ip());
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    from.port() != 0 && !ip.is_multicast() && !ip.is_unspecified() && !broadcast
}

/// Why no answer was produced (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source address is no client's: port 0, multicast, broadcast or
    /// unspecified (see [`is_unicast_source`]).
    BadSource,
    /// Fewer than 48 octets.
    TooShort,
    /// More than [`MAX_REQUEST_LEN`] octets (the receiver's buffer may have
    /// cut the datagram: its end is unknown).
    Oversize,
    /// Version 0, 6 or 7.
    BadVersion(u8),
    /// Version 5, and NTPv5 is switched off ([`ServerConfig::ntpv5`]).
    NtpV5,
    /// An NTPv5 request not answered, and why.
    V5(V5Drop),
    /// Not a client-mode request.
    BadMode(Mode),
    /// The octets after the header are neither extension fields nor a MAC.
    MalformedTrailer,
    /// An access rule (or the default) says deny silently.
    Denied,
    /// Over the rate limit, and KoDs are disabled.
    RateLimited,
    /// A kiss-o'-death was due but the client's KoD limit was reached.
    KodLimited(KodKind),
    /// The output buffer is shorter than 48 octets (caller error).
    OutputTooSmall,
}

/// A response written by [`Server::handle`] into the caller's buffer, waiting
/// for [`Server::finish_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "call Server::finish_response, then send out[..len]"]
pub struct Response {
    /// Octets to send from the start of the output buffer (always 48 today,
    /// never more than the request).
    pub len: usize,
    /// What kind of response it is.
    pub reason: ResponseReason,
    pending: Pending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// Nothing to fill in (kiss-o'-death).
    Nothing,
    /// A time response: the transmit timestamp (basic) and the saved pair.
    /// `xleave_client`: the request was in interleaved mode (see
    /// [`Response::wants_tx_timestamp`]).
    Time { client: IpAddr, rx: NtpTimestamp, rx_time: NtpTime, interleaved: bool, xleave_client: bool, now_ns: u64, scale: Scale },
}

impl Response {
    /// Whether the kernel's transmit timestamp of this reply, reported through
    /// [`Server::transmitted`], can serve the client: its request was in
    /// interleaved mode (NTPv4: its origin timestamp named the receive
    /// timestamp saved for it, even one whose transmit timestamp never came;
    /// NTPv5: it asked for interleaved mode), so its next request will most
    /// likely be too. A basic client's next request never uses the pair.
    ///
    /// A caller that asks the kernel for transmit timestamps of these replies
    /// only (as chronyd does) saves a timestamp and an error-queue read per
    /// basic reply; the pair of a reply it does not stamp stays pending and
    /// answers no interleaved request, so a new interleaved client's first
    /// interleaved answer is its third reply, not its second.
    pub fn wants_tx_timestamp(&self) -> bool {
        matches!(self.pending, Pending::Time { xleave_client: true, .. })
    }
}

/// The timescale of a response's timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    /// What NTPv4 clients get: UTC, leap-smeared when a smear is configured.
    Served,
    /// UTC, never smeared (NTPv5 timescale 0).
    Utc,
    /// TAI: UTC plus this many seconds (NTPv5 timescale 1).
    Tai(i16),
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ServerAction {
    /// A response is in the output buffer. The caller MUST call
    /// [`Server::finish_response`] with the transmit time, then send the first
    /// `len` octets to the request's source address and port, from the address
    /// the request was sent to.
    Respond(Response),
    /// Send nothing. The reason is for metrics (and, for
    /// [`DropReason::NtpV5`], for routing).
    Ignore(DropReason),
}

/// The NTPv4 server responder. See the [module documentation](self) for the
/// call protocol and the fields it writes.
#[derive(Clone, Debug)]
pub struct Server {
    config: ServerConfig,
    rate: RateLimiter,
    interleaved: InterleavedStore,
    /// The NTPv5 Reference IDs filter served (§7.4): this server's own ID and
    /// those of its selected sources.
    reference_ids: Box<crate::wire::v5::BloomFilter>,
}

impl Server {
    /// A responder. `hash_key` is a secret random key (from the caller's
    /// random source) for the client tables' hash, so that clients cannot pick
    /// addresses that collide. Each table is allocated once, by the first
    /// request that needs it: a daemon that only follows sources never holds them.
    pub fn new(config: ServerConfig, hash_key: [u8; 16]) -> Self {
        let mut key2 = hash_key;
        // A different key for the second table: its layout must not mirror the first.
        for b in key2.iter_mut() {
            *b ^= 0x5a;
        }
        Server {
            rate: RateLimiter::new(config.rate_limit, hash_key),
            interleaved: InterleavedStore::new(config.interleaved_slots, key2),
            reference_ids: Box::default(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Replaces the access list (tables are kept).
    pub fn set_access(&mut self, access: AccessList) {
        self.config.access = access;
    }

    /// Replaces the smear (e.g. when the leap-second file announces a leap).
    pub fn set_smear(&mut self, smear: Option<SmearConfig>) {
        self.config.smear = smear;
    }

    /// Bytes of per-client state per slot: 33 in the rate table plus 41 in
    /// the interleaved table (each with its slot's one-octet tag).
    pub const fn bytes_per_client() -> usize {
        RateLimiter::bytes_per_client() + InterleavedStore::bytes_per_client()
    }

    /// Total heap bytes of both client tables: fixed at construction, whatever
    /// the number of clients, plus the rate limiter's overflow states (4
    /// octets per rate-table slot) once a table bucket first overflows.
    pub fn table_bytes(&self) -> usize {
        self.rate.table_bytes() + self.interleaved.table_bytes()
    }

    /// Heap bytes both client tables hold now: 0 until a request needs them,
    /// at most [`table_bytes`](Self::table_bytes).
    pub fn allocated_table_bytes(&self) -> usize {
        self.rate.allocated_bytes() + self.interleaved.allocated_bytes()
    }

    /// Allocates the client tables this configuration uses now, so that the
    /// first request's answer does not wait for it (a server with many
    /// slots would otherwise zero megabytes between reading its transmit
    /// time and sending).
    pub fn allocate_tables(&mut self) {
        if self.config.interleaved {
            self.interleaved.allocate();
        }
        if self.config.rate_limit.enabled {
            self.rate.allocate();
        }
    }

    /// The rate limiter (read-only, for inspection).
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.rate
    }

    /// Handles one datagram from `from` (the client's address and port)
    /// received at `rx_time`; see the module documentation. Never panics,
    /// whatever the bytes.
    ///
    /// A datagram from a source no client can have — port 0, a multicast
    /// address, the IPv4 limited broadcast address or the unspecified
    /// address — is dropped first ([`DropReason::BadSource`]): an answer
    /// would go to a whole group or nowhere, and a forged source of that
    /// kind is a reflection attempt.
    pub fn handle(
        &mut self,
        now_mono_ns: u64,
        from: SocketAddr,
        request: &[u8],
        rx_time: NtpTime,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        if !is_unicast_source(from) {
            return ServerAction::Ignore(DropReason::BadSource);
        }
        if request.len() > MAX_REQUEST_LEN {
            return ServerAction::Ignore(DropReason::Oversize);
        }
        let client = from.ip();
        let Ok(packet) = Packet::new_checked(request) else {
            return ServerAction::Ignore(DropReason::TooShort);
        };
        match packet.version() {
            1..=4 => {}
            5 if self.config.ntpv5 => return self.handle_v5(now_mono_ns, client, request, rx_time, clock, out),
            5 => return ServerAction::Ignore(DropReason::NtpV5),
            v => return ServerAction::Ignore(DropReason::BadVersion(v)),
        }
        if packet.mode() != Mode::Client {
            return ServerAction::Ignore(DropReason::BadMode(packet.mode()));
        }
        if !trailer_is_well_formed(packet.payload()) {
            return ServerAction::Ignore(DropReason::MalformedTrailer);
        }
        if out.len() < HEADER_LEN {
            return ServerAction::Ignore(DropReason::OutputTooSmall);
        }
        let Ok(req) = Repr::parse(&packet) else {
            return ServerAction::Ignore(DropReason::TooShort);
        };
        let client = table::canonical(client);

        match self.config.access.decide(client) {
            AccessAction::Allow => {}
            AccessAction::Deny => return ServerAction::Ignore(DropReason::Denied),
            AccessAction::KodDeny => return self.kod(now_mono_ns, client, &req, KodKind::Deny, clock, out),
            AccessAction::Restrict => return self.kod(now_mono_ns, client, &req, KodKind::Rstr, clock, out),
        }
        match self.rate.check_request(now_mono_ns, client) {
            RateVerdict::Serve => {}
            RateVerdict::SendKod => {
                let r = self.write_kod(&req, KodKind::Rate, clock, out);
                return ServerAction::Respond(r);
            }
            RateVerdict::Drop if self.config.rate_limit.kod => {
                return ServerAction::Ignore(DropReason::KodLimited(KodKind::Rate))
            }
            RateVerdict::Drop => return ServerAction::Ignore(DropReason::RateLimited),
        }
        ServerAction::Respond(self.write_time_response(now_mono_ns, client, &req, rx_time, clock, out))
    }

    fn kod(
        &mut self,
        now_ns: u64,
        client: IpAddr,
        req: &Repr,
        kind: KodKind,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> ServerAction {
        if !self.rate.take_kod(now_ns, client) {
            return ServerAction::Ignore(DropReason::KodLimited(kind));
        }
        ServerAction::Respond(self.write_kod(req, kind, clock, out))
    }

    fn clamp_poll(&self, poll: i8) -> i8 {
        let lo = self.config.poll_log2_min;
        let hi = self.config.poll_log2_max.max(lo);
        poll.clamp(lo, hi)
    }

    fn write_kod(&self, req: &Repr, kind: KodKind, clock: &ServerClockState, out: &mut [u8]) -> Response {
        let mut poll = self.clamp_poll(req.poll);
        if kind == KodKind::Rate {
            poll = poll.max(self.config.rate_limit.poll_log2_min());
        }
        let repr = Repr {
            leap: LeapIndicator::Unsynchronized,
            version: req.version,
            mode: Mode::Server,
            stratum: 0,
            poll,
            precision: clock.precision_log2,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId(kind.kiss_code().to_octets()),
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: req.transmit_timestamp,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: NtpTimestamp::ZERO,
        };
        repr.emit(&mut Packet::new_unchecked(&mut out[..HEADER_LEN]));
        Response { len: HEADER_LEN, reason: ResponseReason::KodSent(kind), pending: Pending::Nothing }
    }

    /// The smeared time served for UTC-clock reading `t`.
    fn served(&self, t: NtpTime, clock: &ServerClockState) -> NtpTime {
        match &self.config.smear {
            Some(s) => s.served_time(t, clock.inserted_second_in_progress),
            None => t,
        }
    }

    /// UTC-clock reading `t` in the timescale `scale`.
    fn in_scale(&self, t: NtpTime, scale: Scale, clock: &ServerClockState) -> NtpTime {
        match scale {
            Scale::Served => self.served(t, clock),
            Scale::Utc => t,
            Scale::Tai(offset) => t + NtpDuration::from_seconds(i64::from(offset)),
        }
    }

    fn write_time_response(
        &mut self,
        now_ns: u64,
        client: IpAddr,
        req: &Repr,
        rx_time: NtpTime,
        clock: &ServerClockState,
        out: &mut [u8],
    ) -> Response {
        let synced = clock.is_synchronized();
        let served_rx_time = self.served(rx_time, clock);
        let rx = served_rx_time.to_timestamp();

        let (leap, stratum) = match (synced, self.config.smear.is_some()) {
            (false, _) => (LeapIndicator::Unsynchronized, 0),
            (true, true) => (LeapIndicator::NoWarning, clock.stratum),
            (true, false) => (clock.leap, clock.stratum),
        };
        let reference_id = match &self.config.smear {
            Some(s) if synced && s.is_active(rx_time, clock.inserted_second_in_progress) => {
                let c = s.correction_at(rx_time, clock.inserted_second_in_progress);
                ReferenceId::from_smear(SmearCorrection::from_duration(c))
            }
            _ => clock.reference_id,
        };
        let mut reference_timestamp = clock.reference_time.map_or(NtpTimestamp::ZERO, |r| self.served(r, clock).to_timestamp());
        if self.config.ntpv5 && req.reference_timestamp == UPGRADE_MARKER {
            // draft-ietf-ntp-ntpv5-07 §12: a client that speaks NTPv5 too
            // asks with the marker; a server that does echoes it.
            reference_timestamp = UPGRADE_MARKER;
        }

        // Interleaved detection (RFC 9769 §2): request rx != tx, and its origin
        // is the receive timestamp we saved for this address.
        let mut previous_tx = None;
        let mut xleave_client = false;
        if self.config.interleaved
            && req.receive_timestamp != req.transmit_timestamp
            && !req.origin_timestamp.is_zero()
        {
            if let Some(saved) = self.interleaved.take_matched(client, req.origin_timestamp) {
                xleave_client = true;
                previous_tx = saved.filter(|tx| *tx != rx);
            }
        }
        let interleaved = previous_tx.is_some();

        let repr = Repr {
            leap,
            version: req.version,
            mode: Mode::Server,
            stratum,
            poll: self.clamp_poll(req.poll),
            precision: clock.precision_log2,
            root_delay: NtpShort::from_duration(clock.root_delay),
            root_dispersion: NtpShort::from_duration(clock.root_dispersion_at(rx_time)),
            reference_id,
            reference_timestamp,
            origin_timestamp: if interleaved { req.receive_timestamp } else { req.transmit_timestamp },
            receive_timestamp: rx,
            transmit_timestamp: previous_tx.unwrap_or(NtpTimestamp::ZERO),
        };
        repr.emit(&mut Packet::new_unchecked(&mut out[..HEADER_LEN]));
        Response {
            len: HEADER_LEN,
            reason: if interleaved { ResponseReason::Interleaved } else { ResponseReason::Basic },
            pending: Pending::Time { client, rx, rx_time: served_rx_time, interleaved, xleave_client, now_ns, scale: Scale::Served },
        }
    }

    /// The transmit timestamp served for `tx_time`: smeared, and strictly
    /// later than the served receive time (bumped by 2^-32 s if not).
    fn served_tx(&self, rx_time: NtpTime, tx_time: NtpTime, scale: Scale, clock: &ServerClockState) -> NtpTimestamp {
        let served = self.in_scale(tx_time, scale, clock);
        let min = rx_time + NtpDuration::from_bits(1);
        served.max(min).to_timestamp()
    }

    /// Completes a response just before it is sent: for a basic time
    /// response, writes the transmit timestamp for `tx_time` (the clock read as
    /// late as possible); for an interleaved one leaves the previous
    /// transmission's timestamp in place. Saves this exchange's receive and
    /// transmit timestamps for the client's next interleaved request. Returns
    /// the transmit timestamp written (or already there).
    pub fn finish_response(
        &mut self,
        response: &Response,
        out: &mut [u8],
        tx_time: NtpTime,
        clock: &ServerClockState,
    ) -> NtpTimestamp {
        self.finish(response, out, tx_time, clock, false)
    }

    /// [`finish_response`](Self::finish_response) for a caller that will
    /// report the kernel's transmit timestamp of this very datagram through
    /// [`transmitted`](Self::transmitted): the pair saved for the client's
    /// next interleaved request has no transmit timestamp until then, and
    /// answers no interleaved request while it has none. `tx_time` is only
    /// written into a basic response (its transmit timestamp), never saved.
    pub fn finish_response_awaiting_tx(
        &mut self,
        response: &Response,
        out: &mut [u8],
        tx_time: NtpTime,
        clock: &ServerClockState,
    ) -> NtpTimestamp {
        self.finish(response, out, tx_time, clock, true)
    }

    fn finish(
        &mut self,
        response: &Response,
        out: &mut [u8],
        tx_time: NtpTime,
        clock: &ServerClockState,
        awaiting_tx: bool,
    ) -> NtpTimestamp {
        let Some(field) = out.get_mut(TRANSMIT_OFFSET..HEADER_LEN) else {
            return NtpTimestamp::ZERO;
        };
        let Pending::Time { client, rx, rx_time, interleaved, now_ns, scale, .. } = response.pending else {
            return NtpTimestamp::from_bits(u64::from_be_bytes(field.try_into().unwrap_or([0; 8])));
        };
        let tx = self.served_tx(rx_time, tx_time, scale, clock);
        debug_assert_ne!(tx, rx, "RFC 9769 §2: transmit must differ from receive");
        let written = if interleaved {
            NtpTimestamp::from_bits(u64::from_be_bytes(field.try_into().unwrap_or([0; 8])))
        } else {
            field.copy_from_slice(&tx.to_bits().to_be_bytes());
            tx
        };
        if self.config.interleaved {
            if awaiting_tx {
                self.interleaved.save_pending(now_ns, client, rx);
            } else {
                self.interleaved.save(now_ns, client, rx, tx);
            }
        }
        written
    }

    /// Reports the actual transmit time of a sent response (a kernel or
    /// hardware timestamp), so the next interleaved response to this client
    /// carries it. Ignored for kiss-o'-death responses and when the client's
    /// saved pair has since been replaced or used.
    pub fn transmitted(&mut self, response: &Response, tx_time: NtpTime, clock: &ServerClockState) {
        if let Pending::Time { client, rx, rx_time, scale, .. } = response.pending {
            if self.config.interleaved {
                let tx = self.served_tx(rx_time, tx_time, scale, clock);
                self.interleaved.update_tx(client, rx, tx);
            }
        }
    }
}

/// Whether the octets after the header are a sequence of RFC 7822 extension
/// fields (length a multiple of 4, at least 16, within the packet) optionally
/// followed by a legacy MAC of 4 (crypto-NAK), 20 (MD5) or 24 (SHA-1) octets.
fn trailer_is_well_formed(mut rest: &[u8]) -> bool {
    // Each step consumes at least 16 octets, so this bound is never reached.
    for _ in 0..=rest.len() / 16 + 1 {
        match rest.len() {
            0 | 4 | 20 | 24 => return true,
            n if n < 16 => return false,
            _ => {}
        }
        let len = usize::from(crate::wire::read_u16(rest, 2));
        if len < 16 || len % 4 != 0 || len > rest.len() {
            return false;
        }
        rest = &rest[len..];
    }
    false
}

/// The length of a plain NTPv4 response (the header alone). NTPv5 and NTS
/// responses are longer, as long as their request at most: size output
/// buffers by [`MAX_REQUEST_LEN`] to answer every version.
pub const RESPONSE_LEN: usize = v4::HEADER_LEN;

#[cfg(test)]
mod tests;
