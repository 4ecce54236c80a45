//! NTS request handling in the core: `cargo bench -p ntplab-proto --bench nts`.
//!
//! `nts_server/<aead>`: one NTS-protected request as the server handles it:
//! open the cookie, verify the authenticator, seal a reply carrying three
//! fresh cookies (the request has two placeholders). `nts_server_1_cookie/<aead>`:
//! the same for a request without placeholders (one fresh cookie), the shape
//! ntpperf's `-S` requests have. `nts_server_2_threads/{shared,own}_keys`:
//! the one-cookie case on two threads at once, both using one `MasterKeys`
//! (whose keys' SIV instances they then share) or each its own copy, as the
//! daemon's workers do; the time is per request of either thread. `nts_round_trip/<aead>`:
//! the client builds a request, the server handles it, the client verifies
//! the reply (all three steps).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ntplab_proto::nts::{
    process_request, Aead, ClientSession, MasterKeyConfig, MasterKeys, NtsRequest, ResponseKind, SeededRng, SessionKeys,
};

/// The cost of drawing nonces from the OS is the daemon's, not the core's:
/// a seeded generator keeps the figure about the core.
type Rng = SeededRng;

fn setup(aead: Aead) -> (Rng, MasterKeys, ClientSession) {
    let mut rng = Rng::new(1);
    let master = MasterKeys::new(MasterKeyConfig::default(), 0, &mut rng);
    let keys = SessionKeys::random(aead, &mut rng);
    let cookies = (0..8).map(|_| master.seal(&keys, &mut rng)).collect();
    (rng, master, ClientSession::new(keys, cookies))
}

fn header() -> [u8; 48] {
    let mut h = [0u8; 48];
    h[0] = 0x23;
    h
}

fn nts_server(c: &mut Criterion) {
    let mut g = c.benchmark_group("nts_server");
    g.throughput(Throughput::Elements(1));
    for aead in [Aead::AesSivCmac256, Aead::Aes128GcmSiv, Aead::AesSivCmac512] {
        bench_server(&mut g, aead, 2);
    }
    g.finish();
    let mut g = c.benchmark_group("nts_server_1_cookie");
    g.throughput(Throughput::Elements(1));
    for aead in [Aead::AesSivCmac256, Aead::Aes128GcmSiv, Aead::AesSivCmac512] {
        bench_server(&mut g, aead, 0);
    }
    g.finish();
}

/// The server's handling of a request after `earlier` requests have taken
/// cookies from the jar (each one taken asks for one more).
fn bench_server(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, aead: Aead, earlier: usize) {
    let (mut rng, master, mut session) = setup(aead);
    for _ in 0..earlier {
        let _ = session.build_request(&header(), &mut rng);
    }
    let (request, _) = session.build_request(&header(), &mut rng).unwrap();
    let mut out = vec![0u8; 2048];
    g.bench_function(aead.name(), |b| {
        b.iter(|| {
            let NtsRequest::Protected(p) = process_request(&master, black_box(&request)) else { panic!() };
            out[..48].copy_from_slice(&[0x24; 48]);
            p.seal_reply(&mut out, &master, &mut rng).unwrap()
        })
    });
}

fn nts_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("nts_round_trip");
    g.throughput(Throughput::Elements(1));
    for aead in [Aead::AesSivCmac256, Aead::Aes128GcmSiv, Aead::AesSivCmac512] {
        let (mut rng, master, session) = setup(aead);
        g.bench_function(aead.name(), |b| {
            b.iter_batched(
                || session.clone(),
                |mut s| {
                    let (request, pending) = s.build_request(&header(), &mut rng).unwrap();
                    let NtsRequest::Protected(p) = process_request(&master, &request) else { panic!() };
                    let mut out = vec![0x24u8; 2048];
                    let n = p.seal_reply(&mut out, &master, &mut rng).unwrap();
                    assert!(matches!(s.verify_response(&pending, &out[..n]), Ok(ResponseKind::Time { .. })));
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

// A benchmark's own timing of its threads, not the core reading a clock.
#[allow(clippy::disallowed_methods)]
fn nts_server_2_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("nts_server_2_threads");
    g.throughput(Throughput::Elements(1));
    let (mut rng, master, mut session) = setup(Aead::AesSivCmac256);
    let (request, _) = session.build_request(&header(), &mut rng).unwrap();
    for own in [false, true] {
        g.bench_function(if own { "own_keys" } else { "shared_keys" }, |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..2u64 {
                        let (request, master) = (&request, &master);
                        scope.spawn(move || {
                            let copy = own.then(|| master.clone());
                            let keys = copy.as_ref().unwrap_or(master);
                            let mut rng = Rng::new(t + 2);
                            let mut out = vec![0u8; 2048];
                            for _ in 0..iters.div_ceil(2) {
                                let NtsRequest::Protected(p) = process_request(keys, black_box(request)) else { panic!() };
                                out[..48].copy_from_slice(&[0x24; 48]);
                                black_box(p.seal_reply(&mut out, keys, &mut rng).unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, nts_server, nts_round_trip, nts_server_2_threads);
criterion_main!(benches);
