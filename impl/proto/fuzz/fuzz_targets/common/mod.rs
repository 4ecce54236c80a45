//! Shared by the NTS fuzz targets: a deterministic random source (so a
//! crash replays from its file), fixed keys, and splitting/mutation helpers.
#![allow(dead_code)]

use ntplab_proto::nts::{
    Aead, ClientSession, MasterKeyConfig, MasterKeys, PendingRequest, SeededRng, SessionKeys,
};

/// The core's seeded generator: deterministic, so a crash replays from its file.
pub fn rng(seed: u64) -> SeededRng {
    SeededRng::new(seed)
}

/// Chunk sizes from the input's own bytes: mostly small, sometimes large.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut s = 0x2545_f491_4f6c_dd1du64 ^ u64::from(seed) ^ data.len() as u64;
    let mut pos = 0;
    while pos < data.len() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = if s & 7 == 0 { 1 + (s >> 8) as usize % 512 } else { 1 + (s >> 8) as usize % 9 };
        let end = (pos + n).min(data.len());
        out.push(&data[pos..end]);
        pos = end;
    }
    out
}

/// XORs (position, value) pairs taken from `edits` into `buf`.
pub fn mutate(buf: &mut [u8], edits: &[u8]) {
    if buf.is_empty() {
        return;
    }
    for e in edits.chunks_exact(3) {
        let pos = usize::from(u16::from_be_bytes([e[0], e[1]])) % buf.len();
        buf[pos] ^= e[2];
    }
}

/// A server's master keys and a client session holding cookies from them,
/// for one AEAD, always the same.
pub struct Fixture {
    pub master: MasterKeys,
    pub session: ClientSession,
    pub request: Vec<u8>,
    pub pending: PendingRequest,
    pub reply: Vec<u8>,
}

pub fn fixture(aead: Aead) -> Fixture {
    let mut header = [0u8; 48];
    header[0] = 0x23;
    let (master, session, request, pending, mut rng) = protected_request(aead, &header);
    let ntplab_proto::nts::NtsRequest::Protected(p) = ntplab_proto::nts::process_request(&master, &request) else {
        panic!("fixture request must verify")
    };
    let mut out = vec![0u8; 2048];
    out[0] = 0x24;
    out[1] = 2;
    let n = p.seal_reply(&mut out, &master, &mut rng).expect("reply fits");
    out.truncate(n);
    Fixture { master, session, request, pending, reply: out }
}

pub const AEADS: [Aead; 3] = [Aead::AesSivCmac256, Aead::Aes128GcmSiv, Aead::AesSivCmac512];

/// Master keys, a client session holding cookies from them for `aead`, and
/// a protected request around `header` (a client header, NTPv4 or NTPv5 with
/// its fields) carrying placeholders (two requests before it were lost);
/// always the same, and the random source as it is after them.
pub fn protected_request(aead: Aead, header: &[u8]) -> (MasterKeys, ClientSession, Vec<u8>, PendingRequest, SeededRng) {
    let mut rng = rng(aead.id().0 as u64);
    let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
    let keys = SessionKeys::random(aead, &mut rng);
    let cookies = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
    let mut session = ClientSession::new(keys, cookies);
    for _ in 0..2 {
        let _ = session.build_request(header, &mut rng);
    }
    let (request, pending) = session.build_request(header, &mut rng).expect("cookies left");
    (master, session, request, pending, rng)
}
