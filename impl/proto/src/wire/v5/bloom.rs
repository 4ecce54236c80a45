//! NTPv5 reference IDs and their Bloom filter (draft-ietf-ntp-ntpv5-07 §7.4).
//!
//! A reference ID is 120 bits, read as ten 12-bit bit positions (first
//! position = the first 12 bits, most significant first). The filter is 4096
//! bits in 512 octets; position `i` is bit `i % 8` (least significant first)
//! of octet `i / 8`. The draft does not fix the bit order inside an octet;
//! this is the order ntpd-rs uses, so that filters agree on the wire.

use super::BLOOM_FILTER_LEN;
use core::fmt;
use core::net::IpAddr;
use md5::Digest;

/// A 120-bit NTPv5 reference ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct V5ReferenceId(pub [u8; 15]);

impl V5ReferenceId {
    /// The first 120 bits of the MD5 sum of `bytes`.
    pub fn from_md5(bytes: &[u8]) -> Self {
        let d = md5::Md5::digest(bytes);
        let mut id = [0u8; 15];
        id.copy_from_slice(&d[..15]);
        V5ReferenceId(id)
    }

    /// The ID of an NTPv1–v4 source: MD5 of its address in network order (§7.4).
    pub fn from_address(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self::from_md5(&v4.octets()),
            IpAddr::V6(v6) => Self::from_md5(&v6.octets()),
        }
    }

    /// The ID of a reference clock: MD5 of its 4-octet, zero-padded ASCII
    /// reference identifier code (§7.4).
    pub fn from_refclock_code(code: [u8; 4]) -> Self {
        Self::from_md5(&code)
    }

    /// A server's own ID from 120 random bits. The ten positions are made
    /// distinct (a repeated position would waste a bit of the filter): each
    /// repeat is replaced by the next free position.
    pub fn from_random(bits: [u8; 15]) -> Self {
        let mut pos = Self(bits).positions();
        for i in 1..pos.len() {
            while pos[..i].contains(&pos[i]) {
                pos[i] = (pos[i] + 1) % 4096;
            }
        }
        Self::from_positions(pos)
    }

    /// The ten 12-bit bit positions.
    pub fn positions(&self) -> [u16; 10] {
        let mut out = [0u16; 10];
        for (k, chunk) in self.0.chunks_exact(3).enumerate() {
            let (a, b, c) = (u16::from(chunk[0]), u16::from(chunk[1]), u16::from(chunk[2]));
            out[2 * k] = (a << 4) | (b >> 4);
            out[2 * k + 1] = ((b & 0x0f) << 8) | c;
        }
        out
    }

    /// The ID with these ten 12-bit positions (each taken modulo 4096).
    pub fn from_positions(pos: [u16; 10]) -> Self {
        let mut id = [0u8; 15];
        for k in 0..5 {
            let (x, y) = (pos[2 * k] & 0xfff, pos[2 * k + 1] & 0xfff);
            id[3 * k] = (x >> 4) as u8;
            id[3 * k + 1] = (((x & 0x0f) << 4) | (y >> 8)) as u8;
            id[3 * k + 2] = y as u8;
        }
        V5ReferenceId(id)
    }
}

impl fmt::Debug for V5ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V5ReferenceId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The 4096-bit Bloom filter of reference IDs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BloomFilter(pub [u8; BLOOM_FILTER_LEN]);

impl Default for BloomFilter {
    fn default() -> Self {
        BloomFilter([0; BLOOM_FILTER_LEN])
    }
}

impl BloomFilter {
    /// The empty filter.
    pub const EMPTY: BloomFilter = BloomFilter([0; BLOOM_FILTER_LEN]);

    /// Adds an ID (sets its ten bits).
    pub fn add(&mut self, id: &V5ReferenceId) {
        for p in id.positions() {
            self.0[usize::from(p / 8)] |= 1 << (p % 8);
        }
    }

    /// Whether all ten bits of `id` are set (may be a false positive, never a false negative).
    pub fn contains(&self, id: &V5ReferenceId) -> bool {
        id.positions().iter().all(|&p| self.0[usize::from(p / 8)] & (1 << (p % 8)) != 0)
    }

    /// Adds every bit of `other` (bitwise OR).
    pub fn union_with(&mut self, other: &BloomFilter) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    /// Number of bits set.
    pub fn count_ones(&self) -> u32 {
        self.0.iter().map(|b| b.count_ones()).sum()
    }

    /// The chunk of `len` octets at `offset`, or `None` when it does not fit
    /// the filter (§7.4: then the request field is ignored).
    pub fn chunk(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.0.get(offset..offset.checked_add(len)?)
    }
}

impl fmt::Debug for BloomFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BloomFilter({} bits set)", self.count_ones())
    }
}

/// A server's filter being assembled from the chunks of successive responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteBloomFilter {
    filter: BloomFilter,
    chunk_len: usize,
    next_offset: usize,
    complete: Option<BloomFilter>,
}

impl RemoteBloomFilter {
    /// Assembles the filter in chunks of `chunk_len` octets (rounded to a
    /// divisor of 512 that is a multiple of 4: 4 … 512).
    pub fn new(chunk_len: usize) -> Self {
        let mut c = chunk_len.clamp(4, BLOOM_FILTER_LEN).next_power_of_two();
        if c > BLOOM_FILTER_LEN {
            c = BLOOM_FILTER_LEN;
        }
        RemoteBloomFilter { filter: BloomFilter::EMPTY, chunk_len: c, next_offset: 0, complete: None }
    }

    /// The chunk length in octets.
    pub fn chunk_len(&self) -> usize {
        self.chunk_len
    }

    /// The offset the next request asks for.
    pub fn next_offset(&self) -> usize {
        self.next_offset
    }

    /// Takes the response chunk for the request at `offset`; a chunk of the
    /// wrong length is refused. When the last chunk of a pass arrives, the
    /// assembled filter becomes the complete one.
    pub fn take(&mut self, offset: usize, chunk: &[u8]) -> bool {
        if chunk.len() != self.chunk_len || offset != self.next_offset {
            return false;
        }
        self.filter.0[offset..offset + chunk.len()].copy_from_slice(chunk);
        self.next_offset = (offset + self.chunk_len) % BLOOM_FILTER_LEN;
        if self.next_offset == 0 {
            self.complete = Some(self.filter);
        }
        true
    }

    /// The last complete filter, once one whole pass has arrived.
    pub fn complete(&self) -> Option<&BloomFilter> {
        self.complete.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_are_twelve_bit_groups_msb_first() {
        let id = V5ReferenceId([0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        let p = id.positions();
        assert_eq!(&p[..4], &[0xabc, 0xdef, 0x012, 0x345]);
        assert_eq!(p[9], 0x0ff);
        assert_eq!(V5ReferenceId::from_positions(p), id);
    }

    #[test]
    fn filter_bit_order_is_lsb_first() {
        let mut f = BloomFilter::EMPTY;
        let id = V5ReferenceId::from_positions([0, 9, 4095, 16, 17, 18, 19, 20, 21, 22]);
        f.add(&id);
        assert_eq!(f.0[0], 0x01);
        assert_eq!(f.0[1], 0x02);
        assert_eq!(f.0[511], 0x80);
        assert_eq!(f.0[2], 0x7f);
        assert!(f.contains(&id));
        assert_eq!(f.count_ones(), 10);
    }

    #[test]
    fn address_ids_are_md5_prefixes() {
        // MD5(7f 00 00 01) = e700f669bcfcd9390f4086f128f4c9c5
        let id = V5ReferenceId::from_address("127.0.0.1".parse().unwrap());
        assert_eq!(id.0, [0xe7, 0x00, 0xf6, 0x69, 0xbc, 0xfc, 0xd9, 0x39, 0x0f, 0x40, 0x86, 0xf1, 0x28, 0xf4, 0xc9]);
        assert_ne!(V5ReferenceId::from_refclock_code(*b"GPS\0"), V5ReferenceId::from_refclock_code(*b"PPS\0"));
    }

    #[test]
    fn chunks_assemble_into_the_whole_filter() {
        let mut f = BloomFilter::EMPTY;
        f.add(&V5ReferenceId::from_random([7; 15]));
        let mut r = RemoteBloomFilter::new(128);
        assert_eq!(r.chunk_len(), 128);
        for k in 0..4 {
            assert!(r.complete().is_none());
            let off = r.next_offset();
            assert_eq!(off, k * 128);
            assert!(!r.take(off, &f.0[off..off + 64]), "wrong length");
            assert!(r.take(off, f.chunk(off, 128).unwrap()));
        }
        assert_eq!(r.complete(), Some(&f));
        assert!(f.chunk(500, 16).is_none());
        assert_eq!(RemoteBloomFilter::new(3).chunk_len(), 4);
        assert_eq!(RemoteBloomFilter::new(100).chunk_len(), 128);
        assert_eq!(RemoteBloomFilter::new(9999).chunk_len(), 512);
    }

    proptest! {
        #[test]
        fn random_ids_have_ten_distinct_positions_and_no_false_negatives(bits: [u8; 15], others in proptest::collection::vec(any::<[u8; 15]>(), 0..20)) {
            let id = V5ReferenceId::from_random(bits);
            let mut p = id.positions().to_vec();
            p.sort_unstable();
            p.dedup();
            prop_assert_eq!(p.len(), 10);
            let mut f = BloomFilter::EMPTY;
            for o in &others {
                f.add(&V5ReferenceId(*o));
            }
            f.add(&id);
            prop_assert!(f.contains(&id));
            for o in &others {
                prop_assert!(f.contains(&V5ReferenceId(*o)));
            }
        }
    }
}
