//! The hardware lab: scenario files replayed on real processes in real time,
//! writing the simulator's trace so the same checks and reports judge them.
//!
//! The virtual lab (this crate today) runs on one machine: one network
//! namespace per scenario host, all joined through a router namespace whose
//! userspace link emulator ([`emulator`]) realizes the links' delay, jitter
//! and loss (the kernel here has no `tc netem`). Each host runs its
//! implementation (`impl = "ntplab"`: the real `ntplab serve` binary;
//! `"chrony"`: chronyd 4.3) on a virtual clock of its own: the clock shim
//! (`ntplab-clockshim`, preloaded) answers every clock read and adjustment
//! from the simulator's kernel-clock model ([`ntplab_vclock`]) and journals
//! the adjustments, from which the lab recomputes each host's true offset
//! after the run ([`run`]). The daemons run without CAP_SYS_TIME, so a call
//! the shim missed fails instead of touching the system clock.
//!
//! A lab file ([`labfile`], `--lab LAB.toml`) names the machine's real GPS
//! receivers and PPS devices and binds scenario hosts' reference clocks to
//! them: the lab relays a serial receiver into the daemon's pty (cutting
//! the line for a fix loss, [`refclock::SerialRelay`]); a PPS device the
//! daemon reads itself, through the shim.

pub mod emulator;
pub mod labfile;
pub mod netns;
pub mod observed;
pub mod programs;
pub mod refclock;
pub mod reports;
pub mod run;
pub mod safety;
