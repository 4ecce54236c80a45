//! Saved receive/transmit timestamp pairs for the interleaved client/server
//! mode (RFC 9769 §2; draft-ietf-ntp-interleaved-modes-08 §2).
//!
//! The server keeps, per client IP address (never per port, so clients that
//! change their source port each request, as RFC 9109 recommends, still get
//! interleaved answers), the pair of the last response it sent that client: the
//! receive timestamp it served and the transmit timestamp of that response as
//! it actually left (first the value written into the packet, then, if the
//! daemon reports it, the kernel or hardware timestamp).
//!
//! One pair per client is kept, in a fixed-size table: memory does not grow
//! with the number of clients, and a pair that was evicted or already used
//! simply makes the next answer basic, which the draft allows ("the server ...
//! will respond in the basic mode and save new timestamps").
//!
//! The table has [`WAYS`] slots per bucket (the rate limiter's has 4): with
//! 4 ways, a table of 2.6 slots per client loses about a third of its
//! clients to buckets that overflow (Poisson, mean 3 keys per bucket), and a
//! bucket holding more active clients than ways evicts each before its next
//! request. With 16 ways and 2.6 slots per client, 5 clients in 100,000 do
//! not fit. Within a bucket the pair saved longest ago goes first, so clients
//! that keep polling keep their slot.
//!
//! A pair may be saved with its transmit timestamp still unknown
//! ([`InterleavedStore::save_pending`]) when the daemon will report the
//! kernel's transmit timestamp of that very datagram: until it does, the pair
//! answers no interleaved request (the answer is basic), so an interleaved
//! transmit timestamp is never a reading taken before the send.

use super::table::{key_of, SlotTable};
use crate::time::NtpTimestamp;
use core::net::IpAddr;

/// One saved pair, with the monotonic time it was saved for eviction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SavedPair {
    rx: u64,
    tx: u64,
    saved_ns: u64,
}

/// Slots per bucket of the interleaved table.
pub const WAYS: usize = 16;

/// The transmit timestamp of a pair whose datagram's kernel timestamp has not
/// been reported yet (0: never a served time, which is after the receive time).
const TX_PENDING: u64 = 0;

/// The fixed-size store of saved pairs.
#[derive(Clone, Debug)]
pub struct InterleavedStore {
    table: SlotTable<SavedPair, WAYS>,
}

impl InterleavedStore {
    /// A store of at least `slots` entries hashing under `hash_key`.
    pub fn new(slots: usize, hash_key: [u8; 16]) -> Self {
        InterleavedStore { table: SlotTable::new(slots, hash_key) }
    }

    fn key(client: IpAddr) -> [u64; 2] {
        key_of(client, 32, 128)
    }

    /// Bytes per client slot: 41 (16 key, 8 receive, 8 transmit, 8 saved-at,
    /// 1 for the slot's tag).
    pub const fn bytes_per_client() -> usize {
        SlotTable::<SavedPair, WAYS>::bytes_per_slot()
    }

    /// Total heap bytes, fixed at construction.
    pub fn table_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// Heap bytes held now: 0 until the first pair is saved.
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    /// Allocates the table now rather than at the first save.
    pub fn allocate(&mut self) {
        self.table.allocate();
    }

    /// Client slots.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Saves (replacing any earlier pair of `client`) the receive timestamp
    /// served to `client` and the transmit timestamp of that response.
    pub fn save(&mut self, now_ns: u64, client: IpAddr, rx: NtpTimestamp, tx: NtpTimestamp) {
        let pair = SavedPair { rx: rx.to_bits(), tx: tx.to_bits(), saved_ns: now_ns };
        let (i, _) = self.table.find_or_insert(Self::key(client), pair, |p| p.saved_ns);
        *self.table.value_mut(i) = pair;
    }

    /// Saves `client`'s receive timestamp with its transmit timestamp still
    /// unknown: the pair answers no interleaved request until
    /// [`update_tx`](Self::update_tx) gives the actual one.
    pub fn save_pending(&mut self, now_ns: u64, client: IpAddr, rx: NtpTimestamp) {
        self.save(now_ns, client, rx, NtpTimestamp::from_bits(TX_PENDING));
    }

    /// Replaces the transmit timestamp of `client`'s pair if that pair is still
    /// the one for receive timestamp `rx` (a later exchange may have replaced it).
    pub fn update_tx(&mut self, client: IpAddr, rx: NtpTimestamp, tx: NtpTimestamp) -> bool {
        match self.table.find(Self::key(client)) {
            Some(i) if self.table.value(i).rx == rx.to_bits() => {
                self.table.value_mut(i).tx = tx.to_bits();
                true
            }
            _ => false,
        }
    }

    /// If `client`'s saved receive timestamp equals `origin`, removes the pair
    /// (a receive timestamp is used at most once) and returns its transmit
    /// timestamp; a pair whose transmit timestamp is still pending is removed
    /// too, and gives `None`.
    pub fn take(&mut self, client: IpAddr, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        self.take_matched(client, origin).flatten()
    }

    /// [`take`](Self::take), telling a pair whose transmit timestamp is
    /// pending (`Some(None)`: the request is in interleaved mode, the answer
    /// basic) from no pair for `origin` (`None`).
    pub fn take_matched(&mut self, client: IpAddr, origin: NtpTimestamp) -> Option<Option<NtpTimestamp>> {
        let i = self.table.find(Self::key(client))?;
        let pair = *self.table.value(i);
        if pair.rx != origin.to_bits() {
            return None;
        }
        self.table.remove(i);
        Some((pair.tx != TX_PENDING).then(|| NtpTimestamp::from_bits(pair.tx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_is_one_shot_and_keyed_by_address() {
        let mut s = InterleavedStore::new(16, [9; 16]);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let rx = NtpTimestamp::from_bits(100);
        let tx = NtpTimestamp::from_bits(200);
        s.save(1, a, rx, tx);
        assert_eq!(s.take(b, rx), None, "same /64, other address");
        assert_eq!(s.take(a, NtpTimestamp::from_bits(101)), None);
        assert!(s.update_tx(a, rx, NtpTimestamp::from_bits(201)));
        assert!(!s.update_tx(a, NtpTimestamp::from_bits(1), NtpTimestamp::from_bits(5)));
        assert_eq!(s.take(a, rx), Some(NtpTimestamp::from_bits(201)));
        assert_eq!(s.take(a, rx), None, "one shot");
    }

    #[test]
    fn a_pending_pair_answers_only_after_its_transmit_timestamp_is_reported() {
        let mut s = InterleavedStore::new(16, [9; 16]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let rx = NtpTimestamp::from_bits(100);
        s.save_pending(1, a, rx);
        assert_eq!(s.take(a, rx), None, "no transmit timestamp yet: basic answer");
        assert!(!s.update_tx(a, rx, NtpTimestamp::from_bits(300)), "taken: gone");
        s.save_pending(2, a, rx);
        assert!(s.update_tx(a, rx, NtpTimestamp::from_bits(300)));
        assert_eq!(s.take(a, rx), Some(NtpTimestamp::from_bits(300)), "the reported timestamp, never a guess");
    }

    #[test]
    fn sixteen_ways_keep_all_of_a_hundred_thousand_clients_that_keep_polling() {
        // The default of `ntplab serve`: 2^18 slots for 100,000 clients.
        let mut s = InterleavedStore::new(1 << 18, [3; 16]);
        let client = |i: u32| IpAddr::V4(core::net::Ipv4Addr::from(0x0a00_0000 + i));
        let rx = |i: u32, round: u64| NtpTimestamp::from_bits((u64::from(i) << 8) + round + 1);
        let n = 100_000u32;
        let mut now = 0;
        for round in 0..3u64 {
            for i in 0..n {
                now += 1;
                s.save(now, client(i), rx(i, round), NtpTimestamp::from_bits(7));
            }
        }
        let kept = (0..n).filter(|&i| s.take(client(i), rx(i, 2)).is_some()).count();
        assert!(kept as f64 >= 0.999 * f64::from(n), "{kept} of {n} clients kept their pair");
        assert_eq!(s.capacity(), 1 << 18);
        assert_eq!(s.table_bytes(), (1 << 18) * 41, "41 octets a slot, its tag included");
    }
}
