//! The scale workload of the simulator's benchmarks: N clients against one
//! stratum-1 server, each client on its own link (100 µs + exp(100 µs) each
//! way, 0.1 s and 10 ppm off, wander 1e-9), with a recorder that only counts;
//! and the process memory figures the benchmarks report (Linux `/proc`).
//!
//! `cargo bench -p ntplab-sim --bench scale` measures wall time and peak
//! memory of this workload at several sizes; `--bench sim` times it too.

use crate::harness::{HostRole, HostSetup, LinkSetup, PacketRecord, Recorder, SimEvent, SimSetup};
use crate::host_clock::{ClockSample, ReadNoise};
use crate::link::{Jitter, LinkConfig, PathConfig};
use crate::oscillator::OscillatorConfig;
use ntplab_daemon::config::{DaemonConfig, SourceSpec};
use ntplab_daemon::daemon::DaemonEvent;
use ntplab_proto::server::ServerConfig;
use ntplab_proto::source::SourceConfig;
use ntplab_proto::system::LocalReference;
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Counts what a run produces and keeps the last sampled offset (so the run
/// cannot be optimised away); stores nothing else.
#[derive(Debug, Default)]
pub struct Count {
    /// Datagrams sent.
    pub packets: u64,
    /// Trace-grid samples.
    pub samples: u64,
    /// Daemon events.
    pub events: u64,
    /// The last sample's offset, seconds.
    pub last_offset: f64,
}

impl Recorder for Count {
    fn sample(&mut self, _: usize, s: &ClockSample) {
        self.samples += 1;
        self.last_offset = s.offset_s;
    }
    fn packet(&mut self, _: &PacketRecord) {
        self.packets += 1;
    }
    fn daemon_event(&mut self, _: usize, _: NtpDuration, _: NtpTime, _: &DaemonEvent) {
        self.events += 1;
    }
    fn scenario_event(&mut self, _: NtpDuration, _: &SimEvent) {}
}

/// `clients` clients (iburst; polling fixed at 2^`poll` s when given, else the
/// default range) against one server at 10.0.0.1, for `duration_s` simulated
/// seconds, seed 1, trace grid 60 s.
pub fn star(clients: usize, duration_s: i64, poll: Option<i8>) -> SimSetup {
    let server: SocketAddr = "10.0.0.1:123".parse().expect("a socket address");
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
            precision_log2: None,
            drift_file: None,
            step: Default::default(),
            poll_target: None,
            min_sources: 1,
            max_distance: None,
            max_change: None,
            initial_frequency: None,
            nts: None,
        })),
        oscillator: OscillatorConfig::default(),
        frequency_series: None,
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
                sources: vec![SourceSpec { address: server, config: source, nts: None, select: Default::default() }],
                server: ServerConfig::default(),
                local: None,
                clock_control: false,
                discipline: Default::default(),
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
            })),
            oscillator: OscillatorConfig { offset_s: 0.1, frequency: 1e-5, wander: 1e-9, ..OscillatorConfig::default() },
            frequency_series: None,
        noise: ReadNoise::default(),
            refclock: None,
        });
        links.push(LinkSetup { a: 0, b: i + 1, config: LinkConfig::symmetric(path), attacker: None });
    }
    SimSetup {
        start: NtpTime::parse_rfc3339("2026-01-01T00:00:00Z").expect("a valid time"),
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

/// A `/proc/self/status` field in bytes (`VmRSS`: resident now, `VmHWM`: peak
/// resident), or None where there is no such file (not Linux).
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line[field.len() + 1..].trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// CPU time this thread has run, seconds (`/proc/thread-self/schedstat`), or
/// None where there is no such file. On a busy machine it stays near what the
/// same run takes alone, where wall time does not.
pub fn thread_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_has_one_server_and_a_link_per_client() {
        let s = star(300, 60, Some(4));
        assert_eq!(s.hosts.len(), 301);
        assert_eq!(s.links.len(), 300);
        let mut addresses: Vec<IpAddr> = s.hosts.iter().map(|h| h.address).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 301, "every host has its own address");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn proc_status_reads_resident_and_peak() {
        let rss = proc_status_bytes("VmRSS").expect("VmRSS on Linux");
        let hwm = proc_status_bytes("VmHWM").expect("VmHWM on Linux");
        assert!(rss > 0 && hwm >= rss, "rss {rss} hwm {hwm}");
        assert_eq!(proc_status_bytes("NoSuchField"), None);
        let cpu = thread_cpu_s().expect("schedstat on Linux");
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(0u64);
        }
        assert!(thread_cpu_s().unwrap() > cpu, "CPU time advances while the thread runs");
    }
}
