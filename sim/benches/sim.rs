//! Simulator speed: `cargo bench -p ntplab-sim --bench sim`.
//!
//! - chrony's default setup (one server, one client: 0.1 s off, 10 ppm,
//!   wander 1e-9, 100 us + exp(100 us) each way) for one simulated week with
//!   polling fixed at 16 s; target: at most 0.5 s of wall time;
//! - 1000 clients (poll 6..10, iburst) against one server for one simulated
//!   hour; target: at most 30 s.
//!
//! Each case runs a few times; the minimum and median wall times are printed
//! with the work done (datagrams), so a regression shows as a figure, not as a
//! flaky test.

use ntplab_daemon::config::{DaemonConfig, SourceSpec};
use ntplab_proto::server::ServerConfig;
use ntplab_proto::source::SourceConfig;
use ntplab_proto::system::LocalReference;
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_sim::harness::{simulate, HostRole, HostSetup, LinkSetup, PacketRecord, Recorder, SimEvent, SimSetup};
use ntplab_sim::host_clock::{ClockSample, ReadNoise};
use ntplab_sim::link::{Jitter, LinkConfig, PathConfig};
use ntplab_sim::oscillator::OscillatorConfig;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

/// Counts, and keeps the last client offset, so the run is not optimised away.
#[derive(Default)]
struct Count {
    packets: u64,
    samples: u64,
    last_offset: f64,
}

impl Recorder for Count {
    fn sample(&mut self, _: usize, s: &ClockSample) {
        self.samples += 1;
        self.last_offset = s.offset_s;
    }
    fn packet(&mut self, _: &PacketRecord) {
        self.packets += 1;
    }
    fn daemon_event(&mut self, _: usize, _: NtpDuration, _: NtpTime, _: &ntplab_daemon::daemon::DaemonEvent) {}
    fn scenario_event(&mut self, _: NtpDuration, _: &SimEvent) {}
}

fn setup(clients: usize, duration_s: i64, poll: Option<i8>) -> SimSetup {
    let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
    let mut hosts = vec![HostSetup {
        name: "server".into(),
        address: server.ip(),
        role: HostRole::Daemon(Box::new(DaemonConfig {
            listen: vec![server],
            sources: vec![],
            server: ServerConfig::default(),
            local: Some(LocalReference { stratum: 1, reference_id: ReferenceId::from_ascii("GPS"), leap: None }),
            clock_control: false,
            discipline: Default::default(),
            refclocks: Vec::new(),
        })),
        oscillator: OscillatorConfig::default(),
        noise: ReadNoise::default(),
        refclock: None,
    }];
    let path = PathConfig { delay_s: 1e-4, jitter: Jitter::Exponential { mean_s: 1e-4 }, ..PathConfig::default() };
    let mut links = Vec::new();
    for i in 0..clients {
        let mut source = SourceConfig { iburst: true, ..SourceConfig::default() };
        if let Some(p) = poll {
            source.poll_min_log2 = p;
            source.poll_max_log2 = p;
        }
        let n = i as u32 + 2;
        hosts.push(HostSetup {
            name: format!("client{i}"),
            address: IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
            role: HostRole::Daemon(Box::new(DaemonConfig {
                listen: vec![],
                sources: vec![SourceSpec { address: server, config: source }],
                server: ServerConfig::default(),
                local: None,
                clock_control: false,
            discipline: Default::default(),
                refclocks: Vec::new(),
            })),
            oscillator: OscillatorConfig { offset_s: 0.1, frequency: 1e-5, wander: 1e-9, ..OscillatorConfig::default() },
            noise: ReadNoise::default(),
            refclock: None,
        });
        links.push(LinkSetup { a: 0, b: i + 1, config: LinkConfig::symmetric(path) });
    }
    SimSetup {
        start: NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        duration: NtpDuration::from_seconds(duration_s),
        seed: 1,
        // The figures need the grid; a coarse one keeps sampling out of the measurement.
        sample_interval: NtpDuration::from_seconds(60),
        hosts,
        links,
        events: vec![],
        utc_shifts: vec![],
    }
}

fn bench(name: &str, runs: usize, target_s: f64, make: impl Fn() -> SimSetup) {
    let mut times = Vec::new();
    let mut packets = 0;
    for _ in 0..runs {
        let count = Rc::new(RefCell::new(Count::default()));
        let t = Instant::now();
        simulate(make(), count.clone()).expect("simulation runs");
        times.push(t.elapsed().as_secs_f64());
        packets = count.borrow().packets;
        assert!(count.borrow().last_offset.is_finite());
    }
    times.sort_by(f64::total_cmp);
    let min = times[0];
    let median = times[times.len() / 2];
    println!(
        "{name}: min {min:.3} s, median {median:.3} s over {runs} runs; {packets} datagrams ({:.0} per wall second); target <= {target_s} s: {}",
        packets as f64 / median,
        if median <= target_s { "met" } else { "MISSED" }
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        bench("smoke: 1 client, 1 hour, poll 16 s", 1, 0.5, || setup(1, 3600, Some(4)));
        return;
    }
    bench("chrony default, 1 week, poll 16 s", 5, 0.5, || setup(1, 7 * 86_400, Some(4)));
    bench("1000 clients, 1 hour, default polling", 3, 30.0, || setup(1000, 3600, None));
}
