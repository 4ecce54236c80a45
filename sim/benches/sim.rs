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

use ntplab_sim::harness::{simulate, SimSetup};
use ntplab_sim::scale::{star as setup, Count};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

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
