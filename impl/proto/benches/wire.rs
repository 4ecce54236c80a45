//! Parse and emit costs of the wire formats: `cargo bench -p ntplab-proto --bench wire`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ntplab_proto::wire::ext::{FieldRepr, FieldType};
use ntplab_proto::wire::{parse_packet, v4, v5};

/// A chronyd 4.3 server reply captured on loopback (tests/captures/chrony-stratum2.pcapng, frame 2).
const V4_REPLY: [u8; 48] = [
    0x24, 0x02, 0x06, 0xe6, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x7f, 0x00, 0x00, 0x01, 0xee, 0xaf, 0x34,
    0x54, 0x7c, 0x46, 0xc2, 0xf6, 0x39, 0xa8, 0x37, 0x29, 0x33, 0x1e, 0x2c, 0xe5, 0xee, 0xaf, 0x34, 0x55, 0x1a, 0x2b,
    0x3c, 0x4d, 0xee, 0xaf, 0x34, 0x55, 0x1a, 0x2c, 0x3d, 0x4e,
];

fn v4_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("v4_header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| v4::Repr::parse(&v4::Packet::new_checked(black_box(&V4_REPLY[..])).unwrap()).unwrap())
    });
    let repr = v4::Repr::parse(&v4::Packet::new_checked(&V4_REPLY[..]).unwrap()).unwrap();
    let mut buf = [0u8; 48];
    g.bench_function("emit", |b| b.iter(|| black_box(&repr).emit(&mut v4::Packet::new_unchecked(&mut buf[..]))));
    g.finish();
}

/// A chronyd 4.3 NTS client request from tests/captures/chrony-nts.pcapng: header,
/// Unique Identifier, NTS Cookie and Authenticator (228 octets).
const V4_NTS_REQUEST: &[u8] = include_bytes!("../fuzz/seeds/packet/nts-0.bin");

fn v4_nts_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("v4_nts_packet");
    g.throughput(Throughput::Bytes(V4_NTS_REQUEST.len() as u64));
    assert_eq!(parse_packet(V4_NTS_REQUEST).unwrap().extensions.fields.len(), 3);
    g.bench_function("parse", |b| b.iter(|| parse_packet(black_box(V4_NTS_REQUEST)).unwrap()));
    let packet = parse_packet(V4_NTS_REQUEST).unwrap();
    let mut buf = vec![0u8; packet.buffer_len()];
    g.bench_function("emit", |b| b.iter(|| black_box(&packet).emit(&mut buf)));
    g.finish();
}

fn v5_request() -> Vec<u8> {
    let header = v5::Repr::request(v5::Timescale::Utc, 0x0123_4567_89ab_cdef);
    let mut bytes = header.to_bytes().to_vec();
    // Draft Identification and Server Information, as a draft client sends them.
    bytes.extend(FieldRepr::new(FieldType::V5DraftIdentification, b"draft-ietf-ntp-ntpv5-07".to_vec()).to_bytes());
    bytes.extend(FieldRepr::new(FieldType::V5ServerInformation, vec![0; 4]).to_bytes());
    bytes
}

fn v5_packet(c: &mut Criterion) {
    let bytes = v5_request();
    let mut g = c.benchmark_group("v5_packet");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse", |b| b.iter(|| parse_packet(black_box(&bytes)).unwrap()));
    let packet = parse_packet(&bytes).unwrap();
    assert_eq!(packet.version(), 5);
    let mut buf = vec![0u8; packet.buffer_len()];
    g.bench_function("emit", |b| b.iter(|| black_box(&packet).emit(&mut buf)));
    g.finish();
}

criterion_group!(benches, v4_header, v4_nts_packet, v5_packet);
criterion_main!(benches);
