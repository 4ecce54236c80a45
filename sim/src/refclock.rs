//! The simulated reference clock a host's daemon reads: the GPS receiver and
//! PPS models of [`crate::gps`], delivered at their true times with raw
//! timestamps from the host's clock model.
//!
//! [`SimRefclocks`] is the daemon's [`Refclocks`] in the simulator. Each
//! provider generates the models' output second by second, a couple of
//! seconds ahead, into a queue ordered by true time; `next` sleeps on the
//! paused tokio clock until the earliest item's true time and returns it
//! stamped with [`HostClock::read_raw`] at that exact instant (nanoseconds,
//! not tokio's millisecond grid): a serial chunk at the instant its last
//! byte arrives (what a user-space read would see, without scheduling
//! delay), a pulse at its edge (as a kernel PPS timestamp would). Reading
//! noise of the host clock applies to both.
//!
//! Each (re)start of a daemon gets its own random streams, derived from the
//! run's seed, so runs are reproducible.

use crate::gps::{GpsConfig, GpsReceiver, PpsModel, PpsModelConfig};
use crate::host_clock::HostClock;
use crate::net::Shared;
use crate::rng::SimRng;
use ntplab_daemon::config::{RefclockKind, RefclockSpec};
use ntplab_daemon::refclock::{RefclockInput, RefclockProvider, Refclocks};
use ntplab_proto::time::{NtpDuration, NtpTime};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

/// The reference-clock hardware of a simulated host.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRefclockConfig {
    /// Which outputs exist: serial NMEA (`gps`), pulses (`pps`) or both.
    pub kind: RefclockKind,
    /// The receiver's NMEA output (kinds with serial data).
    pub gps: GpsConfig,
    /// The receiver's PPS output (kinds with pulses).
    pub pps: PpsModelConfig,
}

impl SimRefclockConfig {
    /// Models of `kind` with the models' default settings.
    pub fn new(kind: RefclockKind) -> Self {
        SimRefclockConfig { kind, gps: GpsConfig::default(), pps: PpsModelConfig::default() }
    }
}

/// Opens the simulated reference clock of one host.
pub struct SimRefclocks {
    /// The host's hardware (none: opening fails, as without a device).
    pub model: Option<SimRefclockConfig>,
    /// The host's clock.
    pub clock: Rc<RefCell<HostClock>>,
    /// The run's shared state (virtual time).
    pub shared: Rc<Shared>,
    /// True time at the start of the run.
    pub start: NtpTime,
    /// Seed of this daemon start's random streams.
    pub seed: u64,
}

/// Items of the queue.
#[derive(Debug)]
enum Item {
    Serial(Vec<u8>),
    Pulse,
}

/// One simulated reference clock; see the [module docs](self).
pub struct SimRefclock {
    gps: Option<GpsReceiver>,
    pps: Option<PpsModel>,
    gps_rng: SimRng,
    pps_rng: SimRng,
    clock: Rc<RefCell<HostClock>>,
    shared: Rc<Shared>,
    start: NtpTime,
    /// The next true second to generate.
    next_second: NtpTime,
    /// By true time since the start, then generation order.
    queue: BTreeMap<(NtpDuration, u64), Item>,
    seq: u64,
}

/// `rand_core` view of a [`SimRng`] for the GPS models (the hardware lab
/// draws its GPS and PPS models through it too).
pub struct Draws<'a>(pub &'a mut SimRng);

impl rand_core::RngCore for Draws<'_> {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl Refclocks for SimRefclocks {
    type Provider = SimRefclock;

    async fn open(&self, index: usize, spec: &RefclockSpec) -> io::Result<SimRefclock> {
        let Some(model) = &self.model else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("refclock #{} ({}): this simulated host has no reference clock", index + 1, spec.kind.name()),
            ));
        };
        let now = self.start + self.shared.elapsed();
        Ok(SimRefclock {
            gps: model.kind.uses_serial().then(|| GpsReceiver::new(model.gps.clone())),
            pps: model.kind.uses_pps().then(|| PpsModel::new(model.pps)),
            gps_rng: SimRng::derive(self.seed, &format!("refclock/{index}/gps")),
            pps_rng: SimRng::derive(self.seed, &format!("refclock/{index}/pps")),
            clock: self.clock.clone(),
            shared: self.shared.clone(),
            start: self.start,
            // The first whole second after the next one: nothing generated lies in the past.
            next_second: NtpTime::new(now.secs_since_1900().saturating_add(2), 0),
            queue: BTreeMap::new(),
            seq: 0,
        })
    }
}

impl SimRefclock {
    fn push(&mut self, true_time: NtpTime, item: Item) {
        self.seq += 1;
        self.queue.insert((true_time.duration_since(self.start), self.seq), item);
    }

    /// Generates the output of the next true second.
    fn generate_second(&mut self) {
        let second = self.next_second;
        self.next_second = second + NtpDuration::from_seconds(1);
        if let Some(gps) = &self.gps {
            let chunks = gps.emit_second(second, &mut Draws(&mut self.gps_rng));
            for c in chunks {
                self.push(c.true_time, Item::Serial(c.bytes));
            }
        }
        if let Some(pps) = &self.pps {
            if let Some(edge) = pps.pulse(second, &mut Draws(&mut self.pps_rng)) {
                self.push(edge, Item::Pulse);
            }
        }
    }
}

impl RefclockProvider for SimRefclock {
    async fn next(&mut self) -> io::Result<RefclockInput> {
        if self.gps.is_none() && self.pps.is_none() {
            return std::future::pending().await;
        }
        // Serial output of a second may come after the next second's pulse:
        // keep two seconds generated beyond the earliest queued item.
        let horizon = NtpDuration::from_seconds(2);
        while self.queue.first_key_value().is_none_or(|(&(t, _), _)| self.next_second.duration_since(self.start) <= t + horizon) {
            self.generate_second();
        }
        let Some(((at, _), item)) = self.queue.pop_first() else {
            return std::future::pending().await;
        };
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(0);
        tokio::time::sleep_until(self.shared.start + std::time::Duration::from_nanos(nanos)).await;
        let raw = self.clock.borrow_mut().read_raw(at);
        Ok(match item {
            Item::Serial(bytes) => RefclockInput::Serial { bytes, rx_time_raw: raw },
            Item::Pulse => RefclockInput::Pulse { edge_time_raw: raw },
        })
    }
}
