//! A fixed-size, set-associative table keyed by client address, shared by the
//! rate limiter and the interleaved-mode timestamp store.
//!
//! Memory is allocated once, at the first insertion (a daemon that never
//! serves a client never pays for it), and never grows: whatever the number of
//! distinct clients, the table holds `capacity()` slots. A key hashes
//! (SipHash-2-4 under a secret key given at construction, so an attacker cannot
//! aim many addresses at one bucket) to a bucket of `W` slots ([`WAYS`] unless
//! the table says otherwise); a key not
//! present takes a free slot of its bucket or evicts the slot with the smallest
//! age stamp (the least recently used). Every operation looks at one bucket,
//! so every loop is bounded by `W`.
//!
//! Beside the slots, every slot has a one-octet tag: 0 when the slot is free,
//! else eight bits of the key's hash (never 0). A lookup reads its bucket's
//! tags, `W` consecutive octets (one cache line for up to 64 ways), and
//! compares the key only in slots whose tag matches: about one slot, where
//! comparing every key of a 16-way bucket of 40-octet slots would read ten
//! cache lines.

use core::net::IpAddr;

/// Slots per bucket of a table that does not say otherwise (the rate
/// limiter's); a table's `W` parameter sets its own.
pub const WAYS: usize = 4;

/// Largest number of slots a table may have (2^26, 64 Mi slots).
pub const SLOTS_MAX: usize = 1 << 26;

/// The tag of a free slot.
const FREE: u8 = 0;

/// A client key: an address (IPv4 as IPv4-mapped IPv6) masked to a prefix,
/// as two big-endian halves.
pub type Key = [u64; 2];

/// The table key of `addr` masked to `prefix_len_v4` bits for IPv4 or
/// `prefix_len_v6` bits for IPv6. IPv4-mapped IPv6 addresses count as IPv4.
pub fn key_of(addr: IpAddr, prefix_len_v4: u8, prefix_len_v6: u8) -> Key {
    let (bits, prefix_len) = match canonical(addr) {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 96 + u32::from(prefix_len_v4.min(32))),
        IpAddr::V6(v6) => (u128::from(v6), u32::from(prefix_len_v6.min(128))),
    };
    let mask = if prefix_len == 0 { 0 } else { u128::MAX << (128 - prefix_len) };
    let masked = bits & mask;
    [(masked >> 64) as u64, masked as u64]
}

/// `addr` with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) turned into IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Where [`SlotTable::find_or_claim`] put a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was present, in this slot.
    Found(usize),
    /// The key was absent and now has this slot.
    Inserted(usize),
    /// The key is absent and its bucket (this index, below
    /// [`SlotTable::buckets`]) has no slot that may be given up.
    Full(usize),
}

/// One slot: the key and its value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot<V> {
    key: Key,
    value: V,
}

/// The fixed-size table. `V` is the per-client state, `W` the slots per
/// bucket (more ways hold more of the keys that hash together, at the cost of
/// a longer scan per operation).
#[derive(Clone, Debug)]
pub struct SlotTable<V, const W: usize = WAYS> {
    /// Empty until the first insertion, then `capacity` slots.
    slots: Vec<Slot<V>>,
    /// One octet per slot: 0 when the slot is free, else the tag of the key
    /// it holds (see the module's documentation; empty with `slots`).
    tags: Vec<u8>,
    capacity: usize,
    bucket_mask: usize,
    hash_key: [u64; 2],
}

impl<V: Copy + Default, const W: usize> SlotTable<V, W> {
    /// A table of at least `slots_min` slots (rounded up to a power of two, at
    /// least `W`, at most [`SLOTS_MAX`]), hashing under `hash_key`. The
    /// slots are allocated by the first insertion.
    pub fn new(slots_min: usize, hash_key: [u8; 16]) -> Self {
        const { assert!(W.is_power_of_two() && W <= 64, "ways: a power of two up to 64") };
        let slots = slots_min.clamp(W, SLOTS_MAX).next_power_of_two();
        let buckets = slots / W;
        debug_assert!(buckets.is_power_of_two());
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&hash_key[..8]);
        k1.copy_from_slice(&hash_key[8..]);
        SlotTable {
            slots: Vec::new(),
            tags: Vec::new(),
            capacity: slots,
            bucket_mask: buckets - 1,
            hash_key: [u64::from_le_bytes(k0), u64::from_le_bytes(k1)],
        }
    }

    /// Number of slots (fixed at construction).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes one slot takes: its key and value, and its one-octet tag.
    pub const fn bytes_per_slot() -> usize {
        core::mem::size_of::<Slot<V>>() + 1
    }

    /// Heap bytes the table takes once allocated: slots and their tags.
    /// Constant for the life of the table.
    pub fn heap_bytes(&self) -> usize {
        self.capacity * Self::bytes_per_slot()
    }

    /// Heap bytes held now: 0 before the first insertion, then
    /// [`heap_bytes`](Self::heap_bytes).
    pub fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot<V>>() + self.tags.capacity()
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.tags.iter().filter(|&&t| t != FREE).count()
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.tags.iter().all(|&t| t == FREE)
    }

    /// Allocates the slots on first use: a table that never sees a key (a
    /// host that only polls) holds no memory. A server may call it at start
    /// so that the first request does not pay for it.
    pub fn allocate(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![Slot::default(); self.capacity];
            self.tags = vec![FREE; self.capacity];
        }
    }

    /// The first slot of `key`'s bucket and the key's tag: the bucket from
    /// the hash's low bits, the tag from its top eight (a tag of 0, which
    /// marks a free slot, becomes 1).
    fn bucket_and_tag(&self, key: Key) -> (usize, u8) {
        let h = siphash24(self.hash_key, key);
        ((h as usize & self.bucket_mask) * W, ((h >> 56) as u8).max(1))
    }

    /// The slot of the bucket starting at `start` that holds `key` (tag `tag`).
    fn find_in(&self, start: usize, tag: u8, key: Key) -> Option<usize> {
        let tags = &self.tags[start..start + W];
        (0..W).map(|j| start + j).find(|&i| tags[i - start] == tag && self.slots[i].key == key)
    }

    /// The slot index holding `key`, if any.
    pub fn find(&self, key: Key) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let (start, tag) = self.bucket_and_tag(key);
        self.find_in(start, tag, key)
    }

    /// The slot index holding `key`, inserting `init` if it is absent. A full
    /// bucket gives up the slot whose `age` stamp is smallest (oldest), even
    /// if its state mattered: for caches (the interleaved store), not for
    /// limits (see [`SlotTable::find_or_claim`]).
    /// Returns the index and whether the key was already present.
    pub fn find_or_insert(&mut self, key: Key, init: V, age: impl Fn(&V) -> u64) -> (usize, bool) {
        self.allocate();
        let (start, tag) = self.bucket_and_tag(key);
        if let Some(i) = self.find_in(start, tag, key) {
            return (i, true);
        }
        let free = (start..start + W).find(|&i| self.tags[i] == FREE);
        let i = free.unwrap_or_else(|| {
            // A full bucket: the slot with the smallest age goes (the first
            // of equals).
            (start..start + W).min_by_key(|&i| age(&self.slots[i].value)).expect("a bucket has W > 0 slots")
        });
        self.slots[i] = Slot { key, value: init };
        self.tags[i] = tag;
        (i, false)
    }

    /// Number of buckets (`capacity() / W`).
    pub fn buckets(&self) -> usize {
        self.bucket_mask + 1
    }

    /// The slot index holding `key`, or a slot claimed for it with `init`: a
    /// free slot of its bucket, else the slot whose value `idle` says may be
    /// forgotten without loss, the one with the smallest `age` among them.
    /// When every slot of the bucket holds a value that may not be forgotten,
    /// nothing changes and the result names the bucket (see [`Claim::Full`]).
    pub fn find_or_claim(&mut self, key: Key, init: V, idle: impl Fn(&V) -> bool, age: impl Fn(&V) -> u64) -> Claim {
        self.allocate();
        let (start, tag) = self.bucket_and_tag(key);
        if let Some(i) = self.find_in(start, tag, key) {
            return Claim::Found(i);
        }
        let free = (start..start + W).find(|&i| self.tags[i] == FREE);
        let oldest_idle = || {
            (start..start + W).filter(|&i| idle(&self.slots[i].value)).min_by_key(|&i| age(&self.slots[i].value))
        };
        match free.or_else(oldest_idle) {
            Some(i) => {
                self.slots[i] = Slot { key, value: init };
                self.tags[i] = tag;
                Claim::Inserted(i)
            }
            None => Claim::Full(start / W),
        }
    }

    /// The value in slot `i`.
    pub fn value(&self, i: usize) -> &V {
        &self.slots[i].value
    }

    /// The value in slot `i`, writable.
    pub fn value_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i].value
    }

    /// Frees slot `i`.
    pub fn remove(&mut self, i: usize) {
        self.slots[i] = Slot::default();
        self.tags[i] = FREE;
    }
}

/// SipHash-2-4 of the 16-octet message `key[0] ‖ key[1]` (big-endian halves,
/// fed as little-endian words as the algorithm reads bytes) under `k`.
fn siphash24(k: [u64; 2], key: Key) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&key[0].to_be_bytes());
    bytes[8..].copy_from_slice(&key[1].to_be_bytes());
    let words = [
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
        16u64 << 56, // final block: no tail bytes, message length 16 in the top octet
    ];
    for m in words {
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4: a reference implementation for the test.
    fn siphash_matches_std_siphash24() {
        use core::hash::Hasher;
        let k = [0x0706_0504_0302_0100u64, 0x0f0e_0d0c_0b0a_0908];
        for key in [[0u64, 0], [0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f], [u64::MAX, 42]] {
            let mut h = std::hash::SipHasher::new_with_keys(k[0], k[1]);
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&key[0].to_be_bytes());
            bytes[8..].copy_from_slice(&key[1].to_be_bytes());
            h.write(&bytes);
            assert_eq!(siphash24(k, key), h.finish());
        }
        // Published SipHash-2-4 vector: key 00..0f, message 00..0f -> 3f2acc7f57c29bdb (LE bytes db 9b c2 57 7f cc 2a 3f).
        assert_eq!(siphash24(k, [0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f]), 0x3f2a_cc7f_57c2_9bdb);
    }

    #[test]
    fn keys_mask_prefixes_and_unmap_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key_of(a, 32, 64), key_of(b, 32, 64));
        assert_ne!(key_of(a, 32, 64), key_of(c, 32, 64));
        assert_ne!(key_of(a, 32, 128), key_of(b, 32, 128));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key_of(v4, 32, 64), key_of(mapped, 32, 64));
        assert_eq!(key_of(v4, 24, 64), key_of("192.0.2.200".parse().unwrap(), 24, 64));
        assert_eq!(canonical(mapped), v4);
    }

    #[test]
    fn table_never_grows_and_evicts_oldest_in_bucket() {
        let mut t: SlotTable<u64> = SlotTable::new(64, [7; 16]);
        let bytes = t.heap_bytes();
        assert_eq!(t.capacity(), 64);
        assert_eq!(t.allocated_bytes(), 0, "nothing allocated before the first insertion");
        assert_eq!(t.find([1, 0]), None);
        assert!(t.is_empty());
        for n in 0..10_000u64 {
            let (i, present) = t.find_or_insert([n, 0], n, |v| *v);
            assert!(!present);
            assert_eq!(*t.value(i), n);
        }
        assert_eq!(t.heap_bytes(), bytes);
        assert_eq!(t.allocated_bytes(), bytes);
        assert!(t.len() <= t.capacity());
        // The newest key is still present; a re-insert finds it.
        assert!(t.find([9_999, 0]).is_some());
        let (i, present) = t.find_or_insert([9_999, 0], 0, |v| *v);
        assert!(present);
        t.remove(i);
        assert!(t.find([9_999, 0]).is_none());
    }

    /// A table of one bucket (4 slots) holding keys 1..=4 with ages 40, 10,
    /// 30, 20 (the oldest neither first nor last).
    fn one_full_bucket() -> SlotTable<u64> {
        let mut t: SlotTable<u64> = SlotTable::new(4, [7; 16]);
        for (k, age) in [(1, 40), (2, 10), (3, 30), (4, 20)] {
            assert!(matches!(t.find_or_claim([k, 0], age, |_| false, |v| *v), Claim::Inserted(_)));
        }
        t
    }

    #[test]
    fn a_full_bucket_gives_up_its_oldest_slot_or_for_a_claim_its_oldest_idle_one() {
        let present = |t: &SlotTable<u64>| (1..=5).filter(|&k| t.find([k, 0]).is_some()).collect::<Vec<_>>();
        let mut t = one_full_bucket();
        let (_, found) = t.find_or_insert([5, 0], 50, |v| *v);
        assert!(!found);
        assert_eq!(present(&t), [1, 3, 4, 5], "key 2 (age 10) evicted");
        // A claim gives up only a slot `idle` allows: here not age 10.
        let mut t = one_full_bucket();
        assert!(matches!(t.find_or_claim([5, 0], 50, |v| *v != 10, |v| *v), Claim::Inserted(_)));
        assert_eq!(present(&t), [1, 2, 3, 5], "key 4 (age 20, the oldest idle) given up");
    }

    #[test]
    fn a_claim_that_finds_no_slot_names_the_keys_own_bucket() {
        // 8 slots, 2 buckets, every slot held by a value that may not be
        // given up: a new key's claim fails and names its bucket, the one
        // whose slots (i / 4) the key would take if it could evict.
        let mut t: SlotTable<u64> = SlotTable::new(8, [7; 16]);
        let mut k = 0;
        while t.len() < 8 {
            let _ = t.find_or_claim([k, 0], k, |_| false, |v| *v);
            k += 1;
        }
        let mut buckets_seen = [false; 2];
        for key in k..k + 16 {
            let Claim::Full(b) = t.find_or_claim([key, 0], 0, |_| false, |v| *v) else { panic!("a slot for {key} in a full table") };
            let (i, _) = t.clone().find_or_insert([key, 0], 0, |v| *v);
            assert_eq!(b, i / 4, "key {key}");
            buckets_seen[b] = true;
        }
        assert_eq!(buckets_seen, [true, true], "new keys in both buckets");
    }

    #[test]
    fn a_table_is_empty_until_a_key_is_inserted_and_again_once_it_is_removed() {
        let mut t: SlotTable<u64> = SlotTable::new(64, [7; 16]);
        assert!(t.is_empty());
        t.allocate();
        assert!(t.is_empty(), "allocated, no key yet");
        let (i, _) = t.find_or_insert([1, 0], 5, |v| *v);
        assert!(!t.is_empty());
        assert_eq!(t.len(), 1);
        t.remove(i);
        assert!(t.is_empty());
    }

    #[test]
    fn lookups_agree_with_a_model_when_keys_share_a_bucket_and_a_tag() {
        // One bucket of 16 slots and 40 keys: any 16 held at once share
        // tags often (8 bits for 16 keys), so only the key comparison tells
        // them apart. Every key's presence must match a model of the table.
        let mut t: SlotTable<u64, 16> = SlotTable::new(16, [5; 16]);
        let mut held = std::collections::BTreeMap::new(); // key -> age
        let mut tags_shared = 0;
        for n in 0..1_000u64 {
            let key = [n * 7919 % 40, 0];
            let (i, present) = t.find_or_insert(key, n, |v| *v);
            assert_eq!(present, held.contains_key(&key[0]), "key {key:?}");
            if !present && held.len() == 16 {
                let (&oldest, _) = held.iter().min_by_key(|(_, &age)| age).unwrap();
                held.remove(&oldest);
            }
            *t.value_mut(i) = n;
            held.insert(key[0], n);
            let tags: Vec<u8> = t.tags.clone();
            tags_shared += usize::from((1..tags.len()).any(|j| tags[..j].contains(&tags[j])));
            for probe in 0..40u64 {
                assert_eq!(t.find([probe, 0]).is_some(), held.contains_key(&probe), "after {n}: key {probe}");
            }
        }
        assert!(tags_shared > 100, "keys sharing a tag at once in only {tags_shared} of 1,000 states");
    }

    #[test]
    fn a_fresh_table_allocates_on_its_first_claim() {
        // The first request of a rate-limited server reaches find_or_claim
        // before any find_or_insert: it must allocate, not index nothing.
        let mut t: SlotTable<u64> = SlotTable::new(64, [7; 16]);
        assert_eq!(t.allocated_bytes(), 0);
        let Claim::Inserted(i) = t.find_or_claim([1, 0], 5, |_| false, |v| *v) else {
            panic!("a free table gives a free slot");
        };
        assert_eq!(*t.value(i), 5);
        assert_eq!(t.allocated_bytes(), t.heap_bytes());
        assert!(matches!(t.find_or_claim([1, 0], 6, |_| false, |v| *v), Claim::Found(j) if j == i));
    }
}
