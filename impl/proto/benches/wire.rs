//! Parse and emit costs of the wire formats: `cargo bench -p ntplab-proto --bench wire`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ntplab_proto::wire::v4;

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

criterion_group!(benches, v4_header);
criterion_main!(benches);
