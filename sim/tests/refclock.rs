//! A stratum-1 server disciplined by a simulated GPS receiver's PPS output,
//! and a client of it: the real daemon, the refclock path end to end.

use ntplab_daemon::daemon::{DaemonEvent, Peer};
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_sim::harness::{simulate, PacketRecord, Recorder, SimEvent};
use ntplab_sim::host_clock::ClockSample;
use ntplab_sim::scenario::Scenario;
use std::cell::RefCell;
use std::rc::Rc;

/// Pulse jitter (standard deviation) of the receiver, seconds.
const JITTER_S: f64 = 1e-6;

const SCENARIO: &str = r#"
name = "refclock test: GPS + PPS server, one client"
seed = 3
start = "2026-01-01T00:00:00Z"
duration = "6h"

[[host]]
name = "server"
address = "10.0.0.1"
clock = { offset = 0.001, frequency = 1e-6, wander = 1e-10 }
refclock = { kind = "gps-pps", pps_jitter = "1us", pps_dropout = 0.01, pps_outlier = 0.001, gps_latency = "200ms", offset = 5e-8, fix_loss = [ { from = "5h", until = "5h20m" } ] }

[[host]]
name = "client"
address = "10.0.0.2"
listen = false
clock = { offset = -0.002, frequency = -2e-6, wander = 1e-10 }
sources = [ { host = "server", iburst = true, poll_min = 4, poll_max = 6 } ]

[[link]]
between = ["client", "server"]
delay = "100us"
jitter = { kind = "exponential", mean = 1e-5 }
"#;

#[derive(Default)]
struct Record {
    /// (elapsed s, local − true s) per host, on the 1 s grid.
    offsets: [Vec<(f64, f64)>; 2],
    /// (epoch elapsed s, sample offset s, samples used, outliers) of the server's refclock.
    refclock: Vec<(f64, f64, usize, usize)>,
    /// The server's system peer after each selection.
    server_peer: Vec<(f64, Option<Peer>)>,
}

struct Rec(Rc<RefCell<Record>>);

impl Recorder for Rec {
    fn sample(&mut self, host: usize, s: &ClockSample) {
        self.0.borrow_mut().offsets[host].push((s.elapsed.to_seconds_f64(), s.offset_s));
    }
    fn packet(&mut self, _: &PacketRecord) {}
    fn daemon_event(&mut self, host: usize, elapsed: NtpDuration, local: NtpTime, e: &DaemonEvent) {
        let t = elapsed.to_seconds_f64();
        let mut r = self.0.borrow_mut();
        match e {
            DaemonEvent::RefclockSample { sample, .. } if host == 0 => {
                // The sample applies at its epoch (the mean pulse), some seconds ago.
                let epoch = t - (local - sample.time).to_seconds_f64();
                r.refclock.push((epoch, sample.offset.to_seconds_f64(), sample.samples_used, sample.outliers_rejected))
            }
            DaemonEvent::Selection { system_peer, .. } if host == 0 => r.server_peer.push((t, *system_peer)),
            _ => {}
        }
    }
    fn scenario_event(&mut self, _: NtpDuration, _: &SimEvent) {}
}

fn max_abs(v: &[(f64, f64)], from: f64, until: f64) -> f64 {
    v.iter().filter(|(t, _)| (from..until).contains(t)).map(|(_, o)| o.abs()).fold(0.0, f64::max)
}

#[test]
fn the_server_locks_to_pps_and_the_client_follows() {
    let scenario = Scenario::parse(SCENARIO, "refclock.toml").unwrap();
    let record = Rc::new(RefCell::new(Record::default()));
    simulate(ntplab_sim::run::setup(&scenario), Rc::new(RefCell::new(Rec(record.clone())))).unwrap();
    let r = record.borrow();
    let server = &r.offsets[0];

    // Every filtered sample measures the server's true offset to within a few
    // σ of its mean of ~16 pulses (σ/4 = 0.25 µs), dropouts and outliers
    // notwithstanding: RMS below σ/2, none beyond 2σ (8 of the mean's σ).
    assert!(r.refclock.len() > 1000, "{} samples", r.refclock.len());
    let mut worst: f64 = 0.0;
    let mut square_sum = 0.0;
    for &(t, offset, used, _) in &r.refclock {
        // A sample is the mean over the pulses it used, about one a second
        // around its epoch; the clock moves meanwhile (the discipline slews it),
        // so the truth to compare with is the true offset averaged over that
        // window, not its value at the epoch.
        let half = f64::from(used as u32) / 2.0;
        let window: Vec<f64> = server.iter().filter(|(g, _)| (t - half..=t + half).contains(g)).map(|(_, o)| *o).collect();
        let truth = if window.is_empty() {
            let i = server.partition_point(|(g, _)| *g < t).clamp(1, server.len() - 1);
            let ((t0, o0), (t1, o1)) = (server[i - 1], server[i]);
            o0 + (o1 - o0) * (t - t0) / (t1 - t0)
        } else {
            window.iter().sum::<f64>() / window.len() as f64
        };
        // The first half hour is the lock-in, where the clock slews fastest and a
        // 16 s average can differ from the grid's average by several µs.
        if t > 1800.0 {
            worst = worst.max((offset + truth).abs());
        }
        square_sum += (offset + truth).powi(2);
        assert!(used >= 12, "at {t}: {used} pulses used");
    }
    let rms = (square_sum / r.refclock.len() as f64).sqrt();
    eprintln!("{} samples, error RMS {rms:e} s, worst {worst:e} s", r.refclock.len());
    assert!(rms < JITTER_S / 2.0, "sample error RMS {rms:e} s");
    assert!(worst < 2.0 * JITTER_S, "worst sample error {worst:e} s");
    assert!(r.refclock.iter().any(|s| s.3 > 0), "outliers are rejected");

    // The server selects its refclock (stratum 0: it serves stratum 1) and
    // keeps it (while the receiver has no fix, 5h-5h20m, it may age out).
    let (from, until) = (5.0 * 3600.0, 5.0 * 3600.0 + 1200.0);
    let (t_first, _) = r.server_peer.iter().find(|(_, p)| p.is_some()).copied().unwrap();
    assert!(t_first < 120.0, "selected after {t_first} s");
    for (t, peer) in r.server_peer.iter().filter(|(t, _)| *t > t_first) {
        let in_outage = (from..until + 120.0).contains(t);
        assert!(matches!(peer, Some(Peer::Refclock { .. })) || (in_outage && peer.is_none()), "at {t}: {peer:?}");
    }

    // The fix loss: no samples from 16 s into it until it ends; samples again after.
    assert!(r.refclock.iter().all(|s| !(from + 16.0..until).contains(&s.0)));
    assert!(r.refclock.iter().any(|s| (until..until + 120.0).contains(&s.0)));

    // The discipline locks the server to within a few jitters. The client
    // follows, but its RFC 5905 PLL is slow to undo the frequency it measured
    // while the server itself was still converging (hours at poll 4-6): that,
    // not the link (10 us jitter) or the server, sets its bound (measured:
    // 159 us at seed 3).
    let settled = 3.0 * 3600.0;
    let server_max = max_abs(server, settled, from);
    let client_max = max_abs(&r.offsets[1], settled, from);
    eprintln!("server max |offset| 3h-5h: {server_max:e} s; client: {client_max:e} s; worst sample error {worst:e} s");
    assert!(server_max < 10.0 * JITTER_S, "server max |offset| {server_max:e} s");
    assert!(client_max < 300e-6, "client max |offset| {client_max:e} s");
    // Holdover through the 20-minute outage and relock.
    let after = max_abs(server, until + 1800.0, 6.0 * 3600.0);
    assert!(after < 10.0 * JITTER_S, "server max |offset| after relock {after:e} s");
}
