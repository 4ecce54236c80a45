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
//! [`RateLimiter::bytes_per_client`]). A client is forgotten only when both
//! its buckets have drained (`tat <= now`): its state is then the same as a
//! new client's, so forgetting it gives nobody anything. A new client whose
//! table bucket holds only clients that have not drained gets no slot;
//! instead it is charged to that table bucket's *overflow* limiter, one
//! shared GCRA state (interval `interval_ns_min`, burst 1, and its own KoD
//! bucket) for every source in that situation. Unknown sources are thus
//! limited, never free, however many addresses collide.
//!
//! **Tolerance.** In any window of `W` seconds a client is answered at most
//! `burst + W / interval` times through its own slot (exactly GCRA, since
//! forgetting is lossless) plus at most `1 + W / interval` times through the
//! overflow limiter it shares: at most `burst + 1 + 2 W / interval` in all,
//! whatever the collisions (plus, with a leak, the leaked answers). It gets at most `1 + W / kod_interval` RATE KoDs
//! through each, so at most `2 + 2 W / kod_interval`. The overflow state
//! (16 octets per table bucket of 4 slots) is allocated when a bucket first
//! overflows.
//!
//! **Leak.** With `leak_log2 = L` (1..=[`LEAK_LOG2_MAX`], chrony's
//! `ratelimit leak L`), a request over the limit is answered anyway with
//! probability 2^-L, and the client's response bucket is then left empty (as
//! chrony zeroes the client's tokens): its next conforming request is one
//! interval later. A client polling faster than the limit thus still hears
//! from the server now and then beyond the limit's rate. The draws come from
//! a generator seeded by the caller's key, so a simulated run stays
//! deterministic.

use super::table::{key_of, Claim, SlotTable};
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
    /// which is 528 KiB).
    pub slots: usize,
    /// Answer one in 2^`leak_log2` requests over the limit anyway (chrony's
    /// `leak`); 0, the default, answers none. At most [`LEAK_LOG2_MAX`].
    pub leak_log2: u8,
}

/// Largest `leak_log2`: one leaked answer in 2^4 = 16 refused requests
/// (chrony's range is 1..=4 as well).
pub const LEAK_LOG2_MAX: u8 = 4;

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
            leak_log2: 0,
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

    /// Whether both buckets have drained at `now_ns`: forgetting the client
    /// then loses nothing (a new client starts from the same state).
    fn drained(&self, now_ns: u64) -> bool {
        self.tat_ns <= now_ns && self.kod_tat_ns <= now_ns
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
    /// Per table bucket: the shared state of sources that found no slot
    /// (empty until a bucket first overflows).
    overflow: Vec<Buckets>,
    /// SplitMix64 state for the leak's draws (seeded from the hash key).
    leak_state: u64,
}

impl RateLimiter {
    /// A limiter whose table hashes under `hash_key` (secret, random, given by
    /// the caller: the core has no random source).
    pub fn new(config: RateLimitConfig, hash_key: [u8; 16]) -> Self {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&hash_key[8..]);
        // Apart from the table's hash, which keys on the whole key.
        let leak_state = u64::from_le_bytes(seed) ^ 0x6c65_616b_6c65_616b;
        RateLimiter { config, table: SlotTable::new(config.slots, hash_key), overflow: Vec::new(), leak_state }
    }

    /// The settings.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Bytes of state per client slot: 33 (16 for the key, 16 for the two
    /// buckets, 1 for the slot's tag).
    pub const fn bytes_per_client() -> usize {
        SlotTable::<Buckets>::bytes_per_slot()
    }

    /// Total heap bytes of the table and of the overflow states.
    pub fn table_bytes(&self) -> usize {
        self.table.heap_bytes() + self.overflow.capacity() * core::mem::size_of::<Buckets>()
    }

    /// Allocates the client table now rather than at the first request.
    pub fn allocate(&mut self) {
        self.table.allocate();
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

    /// The state `client` is judged by, and the burst it may use: its own
    /// slot, or its table bucket's overflow state (burst 1).
    fn state(&mut self, now_ns: u64, client: IpAddr) -> (&mut Buckets, u32) {
        let key = key_of(client, self.config.prefix_len_v4, self.config.prefix_len_v6);
        match self.table.find_or_claim(key, Buckets::default(), |b| b.drained(now_ns), Buckets::age) {
            Claim::Found(i) | Claim::Inserted(i) => (self.table.value_mut(i), self.config.burst.max(1)),
            Claim::Full(bucket) => {
                if self.overflow.is_empty() {
                    self.overflow = vec![Buckets::default(); self.table.buckets()];
                }
                (&mut self.overflow[bucket], 1)
            }
        }
    }

    /// Judges a time request from `client` at monotonic time `now_ns`.
    pub fn check_request(&mut self, now_ns: u64, client: IpAddr) -> RateVerdict {
        if !self.config.enabled {
            return RateVerdict::Serve;
        }
        let interval_ns = self.config.interval_ns_min;
        let kod_interval_ns = self.config.kod_interval_ns_min;
        let kod = self.config.kod;
        let leak_log2 = self.config.leak_log2.min(LEAK_LOG2_MAX);
        let mut leak_state = self.leak_state;
        let (b, burst) = self.state(now_ns, client);
        let tolerance_ns = u64::from(burst - 1).saturating_mul(interval_ns);
        let tat_ns = b.tat_ns.max(now_ns);
        if tat_ns - now_ns <= tolerance_ns {
            b.tat_ns = tat_ns.saturating_add(interval_ns);
            return RateVerdict::Serve;
        }
        let b = if leak_log2 > 0 {
            let leaked = splitmix64(&mut leak_state) % (1u64 << leak_log2) == 0;
            if leaked {
                // chrony zeroes the client's tokens: the bucket is left
                // empty, the next conforming request one interval from now.
                b.tat_ns = now_ns.saturating_add(tolerance_ns).saturating_add(interval_ns);
            }
            self.leak_state = leak_state;
            if leaked {
                return RateVerdict::Serve;
            }
            self.state(now_ns, client).0
        } else {
            b
        };
        if kod && take(&mut b.kod_tat_ns, now_ns, kod_interval_ns) {
            RateVerdict::SendKod
        } else {
            RateVerdict::Drop
        }
    }

    /// Takes one KoD from `client`'s KoD bucket: true when a KoD may be sent
    /// now (at most one per `kod_interval_ns_min`).
    pub fn take_kod(&mut self, now_ns: u64, client: IpAddr) -> bool {
        let interval_ns = self.config.kod_interval_ns_min;
        let (b, _) = self.state(now_ns, client);
        take(&mut b.kod_tat_ns, now_ns, interval_ns)
    }
}

/// The next draw of a SplitMix64 generator (Steele, Lea and Flood 2014).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One KoD from a bucket whose next KoD is due at `*due_ns`.
fn take(due_ns: &mut u64, now_ns: u64, interval_ns: u64) -> bool {
    if *due_ns <= now_ns {
        *due_ns = now_ns.saturating_add(interval_ns);
        true
    } else {
        false
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

    /// Floods `rl` for `window_s` seconds: `addresses` distinct sources,
    /// each sending every `gap_ns` (round robin, so every table bucket sees
    /// many colliding sources). Returns the answers (Serve) and KoDs each got.
    fn flood(rl: &mut RateLimiter, addresses: u32, window_s: u64, gap_ns: u64) -> Vec<(u32, u32)> {
        let mut got = vec![(0u32, 0u32); addresses as usize];
        let start = 1_000 * S;
        let step = gap_ns / u64::from(addresses);
        let rounds = window_s * S / gap_ns;
        for r in 0..rounds {
            for a in 0..addresses {
                let now = start + r * gap_ns + u64::from(a) * step;
                let client = IpAddr::V4((0x0a00_0000 + a).into());
                match rl.check_request(now, client) {
                    RateVerdict::Serve => got[a as usize].0 += 1,
                    RateVerdict::SendKod => got[a as usize].1 += 1,
                    RateVerdict::Drop => {}
                }
            }
        }
        got
    }

    /// The documented bound for a window of `w_s` seconds: burst + 1 + 2 W/T.
    fn bound(c: &RateLimitConfig, w_s: u64) -> u32 {
        let per = (w_s * S).div_ceil(c.interval_ns_min) as u32;
        c.burst + 1 + 2 * per
    }

    #[test]
    fn colliding_flooders_never_exceed_their_allowance() {
        // The outside test's setting: interval 2 s, burst 8, 1024 slots, 1000
        // and then 5000 flooding sources for 8 s (the old table let a new
        // flooder evict the newest entry and start afresh: up to 463 answers).
        let config = RateLimitConfig {
            interval_ns_min: 2 * S,
            kod_interval_ns_min: 2 * S,
            burst: 8,
            slots: 1024,
            ..Default::default()
        };
        for (addresses, gap_ns, key) in [(200u32, 10_000_000u64, 5u8), (1000, 10_000_000, 6), (5000, 50_000_000, 7)] {
            let mut rl = RateLimiter::new(config, [key; 16]);
            let got = flood(&mut rl, addresses, 8, gap_ns);
            let worst = got.iter().map(|g| g.0).max().unwrap();
            assert!(worst <= bound(&config, 8), "{addresses} sources: one was answered {worst} times in 8 s");
            let kods = got.iter().map(|g| g.1).max().unwrap();
            println!("{addresses} sources, 1024 slots: at most {worst} answers and {kods} KoDs per source in 8 s (bound {})", bound(&config, 8));
            assert!(kods <= 2 + 2 * 4, "{addresses} sources: one got {kods} KoDs in 8 s");
            // Everyone is limited: no source is answered every time.
            let sent = (8 * S / gap_ns) as u32;
            assert!(got.iter().all(|g| g.0 < sent), "{addresses}");
        }
    }

    #[test]
    fn a_client_that_keeps_its_rate_is_served_among_idle_colliders() {
        // 4 ways per bucket, 4 slots in all: one bucket. Sources that came once
        // and drained are forgotten for a newcomer; a client keeping its rate
        // is never refused by them.
        let config = RateLimitConfig { interval_ns_min: 2 * S, burst: 2, slots: 4, ..Default::default() };
        let mut rl = RateLimiter::new(config, [8; 16]);
        let polite = ip("192.0.2.200");
        for n in 0..500u64 {
            let now = 10 * S + n * 3 * S;
            // A new source each time, once each: they drain after 2 s.
            assert_eq!(rl.check_request(now, IpAddr::V4((0x0a00_0000 + n as u32).into())), RateVerdict::Serve, "newcomer {n}");
            assert_eq!(rl.check_request(now + 1, polite), RateVerdict::Serve, "poll {n}");
        }
        assert!(rl.len() <= 4);
    }

    #[test]
    fn sources_without_a_slot_share_one_limited_allowance() {
        // One bucket of 4 slots held by 4 clients that keep sending: a fifth
        // source gets no slot, and all newcomers share burst 1 at 1 / 2 s.
        let config = RateLimitConfig { interval_ns_min: 2 * S, kod_interval_ns_min: 2 * S, burst: 4, slots: 4, ..Default::default() };
        let mut rl = RateLimiter::new(config, [9; 16]);
        for a in 1..=4u8 {
            assert_eq!(rl.check_request(S, IpAddr::V4([10, 0, 0, a].into())), RateVerdict::Serve);
        }
        let mut served = 0;
        for n in 0..1000u32 {
            if rl.check_request(S + u64::from(n) * 1_000_000, IpAddr::V4((0x0b00_0000 + n).into())) == RateVerdict::Serve {
                served += 1;
            }
        }
        // 1 s of newcomers: the overflow's burst of 1 only (the four held
        // slots have not drained within the second).
        assert_eq!(served, 1);
        assert_eq!(rl.len(), 4);
    }

    #[test]
    fn once_every_client_has_drained_a_newcomer_gets_a_slot_and_the_full_burst() {
        // One bucket of 4 slots, each held by a client that sent once at 1 s
        // (never a KoD): both its buckets have drained by 10 s, so it may be
        // forgotten, and a newcomer then gets a slot of its own (burst 4),
        // not the overflow's shared burst of 1.
        let config = RateLimitConfig { interval_ns_min: 2 * S, kod_interval_ns_min: 2 * S, burst: 4, slots: 4, ..Default::default() };
        let mut rl = RateLimiter::new(config, [9; 16]);
        assert_eq!(rl.config(), &config);
        assert!(rl.is_empty());
        for a in 1..=4u8 {
            assert_eq!(rl.check_request(S, IpAddr::V4([10, 0, 0, a].into())), RateVerdict::Serve);
        }
        assert!(!rl.is_empty());
        assert_eq!(rl.len(), 4);
        let newcomer = ip("10.0.0.5");
        for n in 0..4 {
            assert_eq!(rl.check_request(10 * S + n, newcomer), RateVerdict::Serve, "burst request {n}");
        }
        assert_eq!(rl.check_request(10 * S + 4, newcomer), RateVerdict::SendKod);
        assert_eq!(rl.len(), 4);
    }

    /// chrony's test/simulation/135-ratelimit: `ratelimit interval 6 burst 2
    /// leak 4`, a client polling every 8 s for 10000 s; chrony requires 180-220
    /// answers. The answered count is a renewal process: after an answer the
    /// bucket is empty and 8 requests refill it, unless one of the 7 refused
    /// ones leaks (1 in 16) and empties it again: 6.45 requests per answer on
    /// average, 194 answers. Leaked answers that left the bucket as it was
    /// would give 157 + 1093/16 = 225.
    #[test]
    fn a_leak_of_4_answers_what_chronys_135_ratelimit_test_requires() {
        let config = RateLimitConfig {
            interval_ns_min: 64 * S,
            kod_interval_ns_min: 64 * S,
            burst: 2,
            kod: false,
            leak_log2: 4,
            ..Default::default()
        };
        let client = ip("192.0.2.1");
        let mut total = 0u32;
        for key in 0..20u8 {
            let mut rl = RateLimiter::new(config, [key; 16]);
            let answered = (0..1250u64).filter(|n| rl.check_request(S + n * 8 * S, client) == RateVerdict::Serve).count() as u32;
            assert!((170..=230).contains(&answered), "key {key}: {answered} answers");
            total += answered;
        }
        let mean = f64::from(total) / 20.0;
        assert!((185.0..=205.0).contains(&mean), "mean {mean} answers over 20 keys (expected about 194)");
        // Without a leak: the burst of 2, then one answer per 64 s.
        let mut rl = RateLimiter::new(RateLimitConfig { leak_log2: 0, ..config }, [1; 16]);
        let answered = (0..1250u64).filter(|n| rl.check_request(S + n * 8 * S, client) == RateVerdict::Serve).count();
        assert_eq!(answered, 2 + (1249 * 8 - 64) / 64 + 1);
    }

    #[test]
    fn a_leaked_answer_empties_the_bucket_and_the_leak_is_capped() {
        // Leak 1 (half the refused requests) against a limit of one per
        // 100 s, burst 3: every answer after the burst is either the one
        // conforming answer per 100 s or a leak, and a leak leaves the
        // bucket empty, so no two answers in a row conform from stored burst.
        let config = RateLimitConfig { interval_ns_min: 100 * S, kod: false, burst: 3, leak_log2: 1, ..Default::default() };
        let mut rl = RateLimiter::new(config, [7; 16]);
        let client = ip("192.0.2.9");
        let answers: Vec<u64> = (0..10_000u64).filter(|n| rl.check_request(S + n * S, client) == RateVerdict::Serve).collect();
        // Half of the ~9,900 refused requests leak; with the bucket emptied
        // by each leak no conforming answer comes for the rest of the run
        // but the first burst (the leaks come faster than one per 100 s).
        let leaked = answers.len() - 3;
        assert!((4_700..=5_200).contains(&leaked), "{leaked} leaked answers");
        // A leak above the cap counts as the cap (1 in 16).
        let mut rl = RateLimiter::new(RateLimitConfig { leak_log2: 200, ..config }, [7; 16]);
        let answered = (0..16_000u64).filter(|n| rl.check_request(S + n * S, client) == RateVerdict::Serve).count();
        assert!((850..=1_200).contains(&answered), "{answered} answers at leak 4");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]
        #[test]
        fn no_source_exceeds_the_bound_whatever_the_collisions(
            key in proptest::prelude::any::<[u8; 16]>(),
            addresses in 50u32..3000,
            slots in 4usize..512,
            burst in 1u32..10,
            interval_s in 1u64..4,
        ) {
            let config = RateLimitConfig { interval_ns_min: interval_s * S, kod_interval_ns_min: interval_s * S, burst, slots, ..Default::default() };
            let mut rl = RateLimiter::new(config, key);
            let got = flood(&mut rl, addresses, 6, 100_000_000);
            let worst = got.iter().map(|g| g.0).max().unwrap();
            proptest::prop_assert!(worst <= bound(&config, 6), "worst {}", worst);
        }
    }
}
