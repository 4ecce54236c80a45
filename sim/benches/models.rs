//! Cost of the clock and link models: `cargo bench -p ntplab-sim --bench models`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ntplab_proto::time::NtpDuration;
use ntplab_sim::link::{Direction, Jitter, Link, LinkConfig, PathConfig};
use ntplab_sim::oscillator::{Oscillator, OscillatorConfig, SineConfig};
use ntplab_sim::rng::SimRng;
use std::time::Duration;

const WEEK_S: i64 = 7 * 86_400;

/// chrony's simulation-test client clock: 0.1 s off, 1e-4 fast, wander 1e-9.
fn chrony_client() -> OscillatorConfig {
    OscillatorConfig {
        offset_s: 0.1,
        frequency: 1e-4,
        wander: 1e-9,
        noise_s: 1e-7,
        ..Default::default()
    }
}

fn oscillator(c: &mut Criterion) {
    let mut g = c.benchmark_group("oscillator");
    g.bench_function("week_1s_grid_one_query", |b| {
        b.iter(|| {
            let mut o = Oscillator::new(chrony_client(), SimRng::derive(1, "bench"));
            black_box(o.raw_offset_at(NtpDuration::from_seconds(WEEK_S)))
        })
    });
    g.bench_function("week_1s_grid_read_every_16s", |b| {
        let config = OscillatorConfig {
            sine: Some(SineConfig {
                amplitude: 1e-7,
                period_s: 86_400.0,
                phase_rad: 0.0,
            }),
            ..chrony_client()
        };
        b.iter(|| {
            let mut o = Oscillator::new(config, SimRng::derive(1, "bench"));
            let mut acc = NtpDuration::ZERO;
            for s in (0..=WEEK_S).step_by(16) {
                acc = acc + o.read(NtpDuration::from_seconds(s));
            }
            black_box(acc)
        })
    });
    g.bench_function("1000_oscillators_hour_read_every_16s", |b| {
        b.iter(|| {
            let mut clocks: Vec<Oscillator> = (0..1000)
                .map(|i| Oscillator::new(chrony_client(), SimRng::derive(1, &format!("node{i}"))))
                .collect();
            let mut acc = NtpDuration::ZERO;
            for s in (0..=3600).step_by(16) {
                for o in &mut clocks {
                    acc = acc + o.read(NtpDuration::from_seconds(s));
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn link(c: &mut Criterion) {
    let config = LinkConfig::symmetric(PathConfig {
        delay_s: 1e-4,
        jitter: Jitter::Exponential { mean_s: 1e-4 },
        loss: 0.01,
        duplicate: 0.001,
        reorder: 0.001,
        reorder_delay_s: 1e-3,
        pass_every: 1,
    });
    c.bench_function("link/transmit_1000", |b| {
        let mut link = Link::new(config, SimRng::derive(1, "bench"));
        b.iter(|| {
            for i in 0..1000 {
                let _ = black_box(link.transmit(Direction::Forward, NtpDuration::from_seconds(i)));
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = oscillator, link
}
criterion_main!(benches);
