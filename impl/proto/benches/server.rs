//! A plain NTPv4 request through the responder as `ntplab serve`'s workers
//! drive it: `cargo bench -p ntplab-proto --bench server`.
//!
//! `server_basic/<clients>`: [`Server::handle`], then
//! [`Server::finish_response_awaiting_tx`] (the interleaved pair saved with its
//! transmit timestamp pending), then [`Server::transmitted`] (the kernel's
//! transmit timestamp reported), for requests from `clients` addresses in
//! turn, on one shard of the fast path's interleaved table (2^18 slots over 8
//! shards: 32,768 slots, 1.3 MB). 12,500 clients are a shard's share of
//! 100,000; 64 stay in the caches; 100,000 on the whole table (2^18 slots,
//! 10 MB) is the case where the caches hold little of it.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ntplab_proto::server::{Server, ServerAction, ServerClockState, ServerConfig};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::LeapIndicator;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn state() -> ServerClockState {
    ServerClockState {
        leap: LeapIndicator::NoWarning,
        stratum: 1,
        precision_log2: -20,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::ZERO,
        reference_id: ReferenceId(*b"LOCL"),
        reference_time: Some(NtpTime::from_unix(1_700_000_000, 0)),
        inserted_second_in_progress: false,
    }
}

/// A basic client request (version 4, mode 3) with transmit timestamp `tx`.
fn request(tx: u64) -> [u8; 48] {
    let mut r = [0u8; 48];
    r[0] = 0x23;
    r[40..48].copy_from_slice(&tx.to_be_bytes());
    r
}

fn server_basic(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_basic");
    g.throughput(Throughput::Elements(1));
    for (clients, slots) in [(64u32, (1 << 18) / 8), (12_500, (1 << 18) / 8), (100_000, 1 << 18)] {
        // As `ntplab serve` without `[rate_limit]`.
        let mut config = ServerConfig { interleaved_slots: slots, ..ServerConfig::default() };
        config.rate_limit.enabled = false;
        let mut server = Server::new(config, [3; 16]);
        server.allocate_tables();
        let state = state();
        let mut out = [0u8; 48];
        let (mut n, mut t) = (0u32, 0u64);
        g.bench_function(clients.to_string(), |b| {
            b.iter(|| {
                n = (n + 1) % clients;
                t += 1_000;
                let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xac1e_0000 + n)), 123);
                let rx = NtpTime::from_unix(1_700_000_000, 0) + NtpDuration::from_nanos(t as i64);
                let req = request(t);
                match server.handle(t, from, black_box(&req), rx, &state, &mut out) {
                    ServerAction::Respond(r) => {
                        let tx = rx + NtpDuration::from_nanos(500);
                        server.finish_response_awaiting_tx(&r, &mut out, tx, &state);
                        server.transmitted(&r, tx + NtpDuration::from_nanos(500), &state);
                        black_box(&out);
                    }
                    ServerAction::Ignore(why) => unreachable!("a plain request is answered: {why:?}"),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, server_basic);
criterion_main!(benches);
