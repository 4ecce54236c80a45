//! The harness end to end: the real daemon on two simulated hosts.

use ntplab_daemon::config::{DaemonConfig, SourceSpec};
use ntplab_proto::discipline::DisciplineKind;
use ntplab_proto::server::ServerConfig;
use ntplab_proto::source::SourceConfig;
use ntplab_proto::system::LocalReference;
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_sim::harness::{simulate, HostRole, HostSetup, LinkSetup, PacketRecord, Recorder, SimEvent, SimSetup};
use ntplab_sim::host_clock::{ClockSample, ReadNoise};
use ntplab_sim::link::{Jitter, LinkConfig, PathConfig};
use ntplab_sim::oscillator::OscillatorConfig;
use ntplab_sim::stats::HostStats;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

struct Stats {
    hosts: Vec<HostStats>,
    packets: u64,
}

impl Recorder for Stats {
    fn sample(&mut self, host: usize, sample: &ClockSample) {
        if host == 1 && std::env::var("SIM_DEBUG").is_ok() && sample.elapsed.to_bits() % (NtpDuration::from_seconds(300).to_bits()) == 0 {
            eprintln!("t={:>6} offset={:+.6} freq_err={:+.3e}", sample.elapsed.to_seconds_f64(), sample.offset_s, sample.frequency_error);
        }
        self.hosts[host].add(sample);
    }
    fn packet(&mut self, _: &PacketRecord) {
        self.packets += 1;
    }
    fn daemon_event(&mut self, host: usize, t: NtpDuration, _: NtpTime, e: &ntplab_daemon::daemon::DaemonEvent) {
        if host == 1 && std::env::var("SIM_DEBUG").is_ok() {
            if let ntplab_daemon::daemon::DaemonEvent::PollChanged { poll_log2 } = e {
                eprintln!("  t={:.1} poll {poll_log2}", t.to_seconds_f64());
            }
            if let ntplab_daemon::daemon::DaemonEvent::Clock { action, .. } = e {
                if t.to_seconds_f64() < 1200.0 || std::env::var("SIM_DEBUG_ALL").is_ok() || (t.to_bits() / NtpDuration::from_seconds(1).to_bits()) % 600 < 20 {
                    eprintln!("  t={:.1} {:?}", t.to_seconds_f64(), action);
                }
            }
        }
    }
    fn scenario_event(&mut self, _: NtpDuration, _: &SimEvent) {}
}

fn chrony_default(discipline: DisciplineKind, poll: Option<i8>, hours: i64) -> SimSetup {
    let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
    let server_config = DaemonConfig {
        listen: vec![server],
        sources: vec![],
        server: ServerConfig::default(),
        local: Some(LocalReference { stratum: 1, reference_id: ReferenceId::from_ascii("GPS"), leap: None }),
        clock_control: false,
        refclocks: Vec::new(),
        precision_log2: None,
        drift_file: None,
        step: Default::default(),
        poll_target: None,
        min_sources: 1,
        max_distance: None,
        max_change: None,
        initial_frequency: None,
        nts: None,
        discipline,
    };
    let mut source = SourceConfig { iburst: true, ..SourceConfig::default() };
    if let Some(p) = poll {
        source.poll_min_log2 = p;
        source.poll_max_log2 = p;
    }
    let client_config = DaemonConfig {
        listen: vec![],
        sources: vec![SourceSpec { address: server, config: source, nts: None, select: Default::default() }],
        server: ServerConfig::default(),
        local: None,
        clock_control: false,
        refclocks: Vec::new(),
        precision_log2: None,
        drift_file: None,
        step: Default::default(),
        poll_target: None,
        min_sources: 1,
        max_distance: None,
        max_change: None,
        initial_frequency: None,
        nts: None,
        discipline,
    };
    let path = PathConfig { delay_s: 1e-4, jitter: Jitter::Exponential { mean_s: 1e-4 }, ..PathConfig::default() };
    SimSetup {
        start: NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        duration: NtpDuration::from_seconds(hours * 3600),
        seed: 1,
        sample_interval: NtpDuration::from_seconds(1),
        hosts: vec![
            HostSetup {
                name: "server".into(),
                address: server.ip(),
                role: HostRole::Daemon(Box::new(server_config)),
                oscillator: OscillatorConfig::default(),
                frequency_series: None,
                noise: ReadNoise::default(),
                refclock: None,
            },
            HostSetup {
                name: "client".into(),
                address: "10.0.0.2".parse().unwrap(),
                role: HostRole::Daemon(Box::new(client_config)),
                oscillator: OscillatorConfig { offset_s: 0.1, frequency: 1e-5, wander: 1e-9, ..OscillatorConfig::default() },
                frequency_series: None,
                noise: ReadNoise::default(),
                refclock: None,
            },
        ],
        links: vec![LinkSetup { a: 0, b: 1, config: LinkConfig::symmetric(path), attacker: None }],
        events: vec![],
        utc_shifts: vec![],
    }
}

/// Figures of one run: RMS and max |offset| after a quarter of the run, sync
/// time (last time above 1 ms), packets.
struct Figures {
    rms_us: f64,
    max_us: f64,
    sync_s: Option<f64>,
    packets: u64,
}

fn run_figures(discipline: DisciplineKind, poll: Option<i8>, hours: i64, seed: u64) -> Figures {
    let converged = NtpDuration::from_seconds(hours * 3600 / 4);
    let stats = Rc::new(RefCell::new(Stats {
        hosts: vec![HostStats::new(converged, 1e-3), HostStats::new(converged, 1e-3)],
        packets: 0,
    }));
    let mut setup = chrony_default(discipline, poll, hours);
    setup.seed = seed;
    simulate(setup, stats.clone()).unwrap();
    let s = stats.borrow();
    let c = &s.hosts[1];
    Figures {
        rms_us: c.rms_offset().unwrap() * 1e6,
        max_us: c.max_offset().unwrap() * 1e6,
        sync_s: c.sync_time(),
        packets: s.packets,
    }
}

/// chrony's reference simulation (FINDINGS.md: clknetsim, 1 day, 11.8 µs RMS
/// at poll 4) under the RFC 5905 discipline (the default one is
/// `client_converges_to_the_server_in_the_chrony_default_setup`): 6 h at poll
/// 4, figures from 1.5 h on.
#[test]
fn rfc5905_discipline_converges_in_the_chrony_default_setup() {
    let f = run_figures(DisciplineKind::Rfc5905, Some(4), 6, 1);
    eprintln!("rfc5905 poll 4: rms {:.1} us, max {:.1} us, sync {:?} s, {} packets", f.rms_us, f.max_us, f.sync_s, f.packets);
    assert!(f.packets > 2600, "two datagrams per 16 s: {}", f.packets);
    let sync = f.sync_s.expect("the client never came within 1 ms");
    assert!(sync < 3600.0, "sync {sync} s");
    // Seed 1 measured 92.2 us RMS, 138.9 us max, sync at 1538 s: room for
    // seed spread, none for a PLL that does not settle.
    assert!(f.rms_us < 200.0 && f.max_us < 1000.0, "rms {:.1} us, max {:.1} us", f.rms_us, f.max_us);
}

#[test]
fn client_converges_to_the_server_in_the_chrony_default_setup() {
    let converged = NtpDuration::from_seconds(1800);
    let stats = Rc::new(RefCell::new(Stats {
        hosts: vec![HostStats::new(converged, 1e-3), HostStats::new(converged, 1e-3)],
        packets: 0,
    }));
    let counters = simulate(chrony_default(DisciplineKind::default(), Some(4), 2), stats.clone()).unwrap();
    let s = stats.borrow();
    let client = &s.hosts[1];
    eprintln!("{counters:?}");
    eprintln!(
        "client: rms {:?} max {:?} sync {:?} packets {}",
        client.rms_offset(),
        client.max_offset(),
        client.sync_time(),
        s.packets
    );
    assert!(s.packets > 400, "about one exchange per 16 s: {}", s.packets);
    assert!(client.sync_time().is_some(), "the client never came within 1 ms");
    // The default (regression) discipline: measured 8.2 µs RMS over 0.5-2 h
    // and sync at 208 s (seed 1); over a day it holds 7.8-8.8 µs (seeds 1-3,
    // chrony: 11.8 µs). 25 µs leaves room for seed-to-seed spread while
    // failing anything RFC-PLL-like (42.7 µs over a day, 1541 s to sync).
    assert!(client.rms_offset().unwrap() < 25e-6, "rms {:?}", client.rms_offset());
    assert!(client.sync_time().unwrap() < 400.0, "sync {:?}", client.sync_time());
    // The server's clock is perfect and never adjusted.
    assert_eq!(s.hosts[0].max_offset(), Some(0.0));
}

#[test]
fn steered_slew_matches_the_exponential() {
    use ntplab_proto::clock::SteeredClock;
    let t0 = NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let mut c = SteeredClock::new(t0);
    c.adjust_phase(t0, NtpDuration::from_seconds_f64(-0.1), NtpDuration::from_seconds(1024));
    let t = t0 + NtpDuration::from_seconds(919);
    let applied = (c.time_at(t) - t).to_seconds_f64();
    let expected = -0.1 * (1.0 - (-919.0f64 / 1024.0).exp());
    assert!((applied - expected).abs() < 1e-9, "applied {applied}, expected {expected}");
}

/// The server's replies' precision octets, and the precision the client's
/// samples say it measured with.
#[derive(Default)]
struct Precisions {
    replies: Vec<i8>,
    client: Vec<i8>,
}

impl Recorder for Precisions {
    fn sample(&mut self, _: usize, _: &ClockSample) {}
    fn packet(&mut self, r: &PacketRecord) {
        if r.src_host == 0 && r.payload.len() >= 48 {
            self.replies.push(r.payload[3] as i8);
        }
    }
    fn daemon_event(&mut self, host: usize, _: NtpDuration, _: NtpTime, e: &ntplab_daemon::daemon::DaemonEvent) {
        if let (1, ntplab_daemon::daemon::DaemonEvent::Sample { sample, .. }) = (host, e) {
            self.client.push(sample.local_precision_log2);
        }
    }
    fn scenario_event(&mut self, _: NtpDuration, _: &SimEvent) {}
}

#[test]
fn the_configured_precision_overrides_the_clocks_and_goes_in_every_reply() {
    let mut setup = chrony_default(DisciplineKind::Regression, Some(6), 1);
    if let HostRole::Daemon(server) = &mut setup.hosts[0].role {
        server.precision_log2 = Some(-10);
    }
    let rec = Rc::new(RefCell::new(Precisions::default()));
    simulate(setup, rec.clone()).unwrap();
    let rec = rec.borrow();
    assert!(rec.replies.len() > 40, "{} replies", rec.replies.len());
    assert!(rec.replies.iter().all(|&p| p == -10), "{:?}", rec.replies);
    // The client's clock reads exactly: the simulator's default precision.
    assert_eq!(rec.client.len(), rec.replies.len());
    assert!(rec.client.iter().all(|&p| p == ntplab_sim::host_clock::DEFAULT_PRECISION_LOG2), "{:?}", rec.client);
}
