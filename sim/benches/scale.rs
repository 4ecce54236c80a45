//! Simulator memory and wall time at scale:
//! `cargo bench -p ntplab-sim --bench scale [-- CLIENTSxSECONDS ...]`.
//!
//! Each case is N clients (default polling, iburst) against one server for a
//! simulated duration (the workload of [`ntplab_sim::scale::star`]). Cases run
//! one per process (the bench runs itself again with `--case N S`), since the
//! peak resident size is a per-process figure. For each it prints:
//!
//! - wall time of `simulate` (setup included), and the CPU time the thread
//!   ran meanwhile (`/proc/thread-self/schedstat`: the figure to trust on a
//!   busy machine);
//! - peak RSS: `VmHWM` of `/proc/self/status` at the end;
//! - per host: (peak RSS − RSS before the setup was built) / hosts, i.e. all
//!   memory the run added, shared parts included, divided by server + clients;
//! - peak heap per host: the largest number of live heap bytes (counted by
//!   this binary's allocator) minus those before the setup, / hosts;
//! - datagrams and harness wake-ups (the work done).
//!
//! Targets (issue 9): at most 50 KB per host (judged from 1000 clients up,
//! where fixed costs are small beside the hosts'); 10,000 clients for one hour
//! within 60 s of wall time and 2 GB of peak RSS. The default cases are
//! 1000x600, 3000x600, 1000x3600, 3000x3600 and 10000x3600.
//! `cargo test --benches` runs one small case in-process instead.

use ntplab_sim::harness::simulate;
use ntplab_sim::scale::{proc_status_bytes, star, thread_cpu_s, Count};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting live and peak live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KB: f64 = 1024.0;
const MB: f64 = 1024.0 * 1024.0;
const HOST_BYTES_MAX: f64 = 50.0 * KB;
const PER_HOST_CLIENTS_MIN: usize = 1000;
const TARGET_CLIENTS: usize = 10_000;
const TARGET_SECONDS: i64 = 3600;
const TARGET_WALL_S: f64 = 60.0;
const TARGET_PEAK_BYTES: f64 = 2.0 * 1024.0 * MB;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Runs one case in this process and prints its line.
fn case(clients: usize, seconds: i64) {
    let rss_before = proc_status_bytes("VmRSS").unwrap_or(0) as f64;
    let heap_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(heap_before, Ordering::Relaxed);
    let count = Rc::new(RefCell::new(Count::default()));
    let cpu_before = thread_cpu_s();
    let t = Instant::now();
    let counters = simulate(star(clients, seconds, None), count.clone()).expect("simulation runs");
    let wall = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_s().zip(cpu_before).map(|(a, b)| a - b);
    assert!(count.borrow().last_offset.is_finite());
    let hosts = (clients + 1) as f64;
    let peak = proc_status_bytes("VmHWM").map(|b| b as f64);
    let heap_per_host = (PEAK.load(Ordering::Relaxed) - heap_before) as f64 / hosts;
    let per_host = peak.map(|p| (p - rss_before) / hosts);
    let mut line = format!(
        "{clients} clients x {seconds} s: wall {wall:.2} s (CPU {}); peak RSS {}; per host {} (peak heap {:.1} KB); {} datagrams, {} wake-ups",
        cpu.map_or("n/a".into(), |c| format!("{c:.2} s")),
        peak.map_or("n/a".into(), |p| format!("{:.0} MB", p / MB)),
        per_host.map_or("n/a".into(), |b| format!("{:.1} KB", b / KB)),
        heap_per_host / KB,
        count.borrow().packets,
        counters.wakeups,
    );
    // Fixed costs (runtime, allocator arenas) are spread over the hosts too:
    // the per-host target is judged where they are small beside N hosts.
    if let Some(b) = per_host.filter(|_| clients >= PER_HOST_CLIENTS_MIN) {
        line += &format!("; <= 50 KB/host: {}", verdict(b <= HOST_BYTES_MAX));
    }
    if clients >= TARGET_CLIENTS && seconds >= TARGET_SECONDS {
        line += &format!("; <= {TARGET_WALL_S} s: {}", verdict(wall <= TARGET_WALL_S));
        if let Some(p) = peak {
            line += &format!("; <= 2 GB: {}", verdict(p <= TARGET_PEAK_BYTES));
        }
    }
    println!("{line}");
}

fn parse_case(s: &str) -> Option<(usize, i64)> {
    let (n, d) = s.split_once('x')?;
    Some((n.parse().ok()?, d.parse().ok()?))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let n = args.get(i + 1).and_then(|a| a.parse().ok()).expect("--case N SECONDS");
        let s = args.get(i + 2).and_then(|a| a.parse().ok()).expect("--case N SECONDS");
        case(n, s);
        return;
    }
    // `cargo test --benches` runs this without --bench: one small case, in-process.
    if !args.iter().any(|a| a == "--bench") {
        case(50, 600);
        return;
    }
    let mut cases: Vec<(usize, i64)> = args.iter().filter_map(|a| parse_case(a)).collect();
    if cases.is_empty() {
        cases = vec![(1000, 600), (3000, 600), (1000, 3600), (3000, 3600), (TARGET_CLIENTS, TARGET_SECONDS)];
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    for (n, s) in cases {
        let status = Command::new(&exe).args(["--case", &n.to_string(), &s.to_string()]).status();
        match status {
            Ok(st) if st.success() => {}
            Ok(st) => println!("{n} clients x {s} s: FAILED ({st})"),
            Err(e) => println!("{n} clients x {s} s: cannot start: {e}"),
        }
    }
}
