//! Per-client rate limiting in bounded memory (RFC 8633 §5.4, §2.1).
//!
//! Each client (an IPv4 address or, by default, an IPv6 /64 prefix: one host
//! on a LAN usually owns a whole /64, so per-address limits would be trivial to
//! dodge) has two leaky buckets kept as GCRA "theoretical arrival times":
//!
//! - the *response* bucket admits on average one request per
//!   `interval_ns_min` with bursts of up to `burst` requests;
//! - the *KoD* bucket admits at most one kiss-o'-death per
//!   `kod_interval_ns_min`, so the server never sends a client more KoDs than
//!   its own limit, whatever the flood (no reflection amplification).
//!
//! GCRA with emission interval `T` and burst `b`: a request at `now` conforms
//! when `max(tat, now) - now <= (b - 1) T`, and then `tat = max(tat, now) + T`;
//! a refused request leaves `tat` alone. A client polling at `T` or slower is
//! therefore never refused, and a flooder is served at exactly `1/T`.
//!
//! State lives in a [`SlotTable`] of fixed size (see
//! [`RateLimiter::bytes_per_client`]); when a bucket of the table is full the
//! client whose buckets drained longest ago is forgotten, which can only make
//! limiting more lenient for it, never refuse a well-behaved client.

use super::table::{key_of, SlotTable};
use core::net::IpAddr;

/// Rate-limiting settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Whether time responses are rate-limited at all. KoDs (including the
    /// DENY/RSTR of access control) are always limited by the KoD bucket.
    pub enabled: bool,
    /// Average minimum interval between served requests, nanoseconds
    /// (default 8 s, ntpd's `discard average 3` and chrony's `ratelimit interval 3`).
    pub interval_ns_min: u64,
    /// Requests a client may send back to back (default 8: an `iburst`).
    pub burst: u32,
    /// Send a RATE kiss-o'-death to a client over the limit (if its KoD
    /// bucket allows); otherwise drop silently.
    pub kod: bool,
    /// Minimum interval between two KoDs to one client, nanoseconds (default:
    /// the same as `interval_ns_min`).
    pub kod_interval_ns_min: u64,
    /// IPv4 clients are aggregated by this prefix length (default 32).
    pub prefix_len_v4: u8,
    /// IPv6 clients are aggregated by this prefix length (default 64).
    pub prefix_len_v6: u8,
    /// Slots in the client table (rounded up to a power of two; default 16384,
    /// which is 512 KiB).
    pub slots: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            interval_ns_min: 8_000_000_000,
            burst: 8,
            kod: true,
            kod_interval_ns_min: 8_000_000_000,
            prefix_len_v4: 32,
            prefix_len_v6: 64,
            slots: 16_384,
        }
    }
}

impl RateLimitConfig {
    /// The poll exponent that says the limit: the smallest `p` with
    /// `2^p s >= interval_ns_min` (what a RATE KoD's poll field carries).
    pub fn poll_log2_min(&self) -> i8 {
        let mut p: i8 = -30;
        // Bounded: at most 64 + 30 steps.
        while p < 63 && pow2_ns(p) < u128::from(self.interval_ns_min) {
            p += 1;
        }
        p
    }
}

/// `2^p` seconds in nanoseconds, for -30 <= p <= 63.
fn pow2_ns(p: i8) -> u128 {
    if p >= 0 {
        1_000_000_000u128 << p
    } else {
        1_000_000_000u128 >> (-p)
    }
}

/// Per-client GCRA state: 16 octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Theoretical arrival time of the next conforming request, ns.
    tat_ns: u64,
    /// Earliest time of the next allowed KoD, ns.
    kod_tat_ns: u64,
}

impl Buckets {
    fn age(&self) -> u64 {
        self.tat_ns.max(self.kod_tat_ns)
    }
}

/// What the rate limiter says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit: serve.
    Serve,
    /// Over the limit; the KoD bucket allows a RATE kiss-o'-death.
    SendKod,
    /// Over the limit and no KoD allowed (or KoDs disabled): drop.
    Drop,
}

/// The per-client rate limiter.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    table: SlotTable<Buckets>,
}

impl RateLimiter {
    /// A limiter whose table hashes under `hash_key` (secret, random, given by
    /// the caller: the core has no random source).
    pub fn new(config: RateLimitConfig, hash_key: [u8; 16]) -> Self {
        RateLimiter { config, table: SlotTable::new(config.slots, hash_key) }
    }

    /// The settings.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Bytes of state per client slot: 32 (16 for the key, 16 for the two
    /// buckets) plus one occupancy bit.
    pub const fn bytes_per_client() -> usize {
        SlotTable::<Buckets>::bytes_per_slot()
    }

    /// Total heap bytes of the table, fixed at construction.
    pub fn table_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// Heap bytes held now: 0 until the first request needs a slot.
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    /// Client slots (fixed at construction).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Clients currently remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&mut self, client: IpAddr) -> usize {
        let key = key_of(client, self.config.prefix_len_v4, self.config.prefix_len_v6);
        self.table.find_or_insert(key, Buckets::default(), Buckets::age).0
    }

    /// Judges a time request from `client` at monotonic time `now_ns`.
    pub fn check_request(&mut self, now_ns: u64, client: IpAddr) -> RateVerdict {
        if !self.config.enabled {
            return RateVerdict::Serve;
        }
        let interval_ns = self.config.interval_ns_min;
        let tolerance_ns = u64::from(self.config.burst.max(1) - 1).saturating_mul(interval_ns);
        let i = self.slot(client);
        let b = self.table.value_mut(i);
        let tat_ns = b.tat_ns.max(now_ns);
        if tat_ns - now_ns <= tolerance_ns {
            b.tat_ns = tat_ns.saturating_add(interval_ns);
            return RateVerdict::Serve;
        }
        if self.config.kod && self.take_kod(now_ns, client) {
            RateVerdict::SendKod
        } else {
            RateVerdict::Drop
        }
    }

    /// Takes one KoD from `client`'s KoD bucket: true when a KoD may be sent
    /// now (at most one per `kod_interval_ns_min`).
    pub fn take_kod(&mut self, now_ns: u64, client: IpAddr) -> bool {
        let interval_ns = self.config.kod_interval_ns_min;
        let i = self.slot(client);
        let b = self.table.value_mut(i);
        if b.kod_tat_ns <= now_ns {
            b.kod_tat_ns = now_ns.saturating_add(interval_ns);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn poll_exponent_of_the_limit() {
        let mut c = RateLimitConfig::default();
        assert_eq!(c.poll_log2_min(), 3);
        c.interval_ns_min = 9 * S;
        assert_eq!(c.poll_log2_min(), 4);
        c.interval_ns_min = S / 2;
        assert_eq!(c.poll_log2_min(), -1);
        c.interval_ns_min = 0;
        assert_eq!(c.poll_log2_min(), -30);
    }

    #[test]
    fn burst_then_steady_rate() {
        let mut rl = RateLimiter::new(RateLimitConfig::default(), [1; 16]);
        let c = ip("192.0.2.1");
        for n in 0..8 {
            assert_eq!(rl.check_request(100 * S + n, c), RateVerdict::Serve, "burst request {n}");
        }
        assert_eq!(rl.check_request(100 * S + 9, c), RateVerdict::SendKod);
        assert_eq!(rl.check_request(100 * S + 10, c), RateVerdict::Drop, "KoDs are limited too");
        // Another client is unaffected.
        assert_eq!(rl.check_request(100 * S + 11, ip("192.0.2.2")), RateVerdict::Serve);
    }

    #[test]
    fn ipv6_clients_aggregate_by_64() {
        let mut rl = RateLimiter::new(RateLimitConfig { burst: 1, ..Default::default() }, [2; 16]);
        assert_eq!(rl.check_request(S, ip("2001:db8:0:1::1")), RateVerdict::Serve);
        assert_eq!(rl.check_request(S, ip("2001:db8:0:1::2")), RateVerdict::SendKod, "same /64");
        assert_eq!(rl.check_request(S, ip("2001:db8:0:2::1")), RateVerdict::Serve, "other /64");
    }

    #[test]
    fn disabled_limiter_serves_everything_but_still_limits_kods() {
        let mut rl = RateLimiter::new(RateLimitConfig { enabled: false, ..Default::default() }, [3; 16]);
        for n in 0..1000 {
            assert_eq!(rl.check_request(n, ip("192.0.2.1")), RateVerdict::Serve);
        }
        assert!(rl.take_kod(0, ip("192.0.2.1")));
        assert!(!rl.take_kod(S, ip("192.0.2.1")));
        assert!(rl.take_kod(8 * S, ip("192.0.2.1")));
    }
}
