//! The Linux kernel PPS API (RFC 2783 as Linux implements it,
//! `<linux/pps.h>`): pulses from a `/dev/ppsN` device, each stamped by the
//! kernel with `CLOCK_REALTIME` at the interrupt.
//!
//! A reader thread waits for the next assert edge with `PPS_FETCH` (a one
//! second timeout, so that it notices when the daemon lets go of it) and
//! sends each new edge's timestamp to the daemon's loop. Edges are told apart
//! by the kernel's assert sequence number: a fetch that returns the edge
//! already sent (no pulse within the timeout on some drivers) sends nothing.
//!
//! At open the device's parameters are read (`PPS_GETPARAMS`). A device
//! that does not capture assert edges is switched to them with
//! `PPS_SETPARAMS`, which the kernel allows only with `CAP_SYS_TIME`;
//! without it the error says so. Most PPS drivers capture assert edges by
//! default (`pps_register_source` with `PPS_CAPTUREASSERT`), so an
//! observe-only daemon without the capability can read them.

use ntplab_proto::time::NtpTime;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use tokio::sync::mpsc;

/// `struct pps_ktime`: a kernel timestamp or timeout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PpsKtime {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i32,
    /// `PPS_TIME_INVALID` in a timeout: wait without one.
    pub flags: u32,
}

/// `struct pps_kinfo`: the last edges the kernel captured.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PpsKinfo {
    /// Counts assert edges.
    pub assert_sequence: u32,
    /// Counts clear edges.
    pub clear_sequence: u32,
    /// Time of the last assert edge.
    pub assert_tu: PpsKtime,
    /// Time of the last clear edge.
    pub clear_tu: PpsKtime,
    /// The device's current mode bits.
    pub current_mode: i32,
}

/// `struct pps_fdata`: `PPS_FETCH`'s argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PpsFdata {
    /// Filled by the kernel.
    pub info: PpsKinfo,
    /// How long to wait for an edge.
    pub timeout: PpsKtime,
}

/// `struct pps_kparams`: `PPS_GETPARAMS`/`PPS_SETPARAMS`'s argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PpsKparams {
    /// `PPS_API_VERS_1`.
    pub api_version: i32,
    /// Mode bits.
    pub mode: i32,
    /// Offset the kernel adds to assert timestamps.
    pub assert_off_tu: PpsKtime,
    /// Offset the kernel adds to clear timestamps.
    pub clear_off_tu: PpsKtime,
}

/// Capture assert edges.
pub const PPS_CAPTUREASSERT: i32 = 0x01;
/// Timestamps as `struct timespec`.
pub const PPS_TSFMT_TSPEC: i32 = 0x1000;
/// The API version this code speaks.
pub const PPS_API_VERS_1: i32 = 1;
/// Errno of a fetch whose timeout passed without an edge.
const ETIMEDOUT: i32 = libc::ETIMEDOUT;

// The request numbers as `<linux/pps.h>` defines them: `_IOR('p', 0xa1,
// struct pps_kparams *)` and so on, whose size field is a pointer's (8
// octets on 64-bit Linux), not the structure's.
const fn ioc(dir: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | ((b'p' as u64) << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const POINTER: u64 = std::mem::size_of::<*const u8>() as u64;
/// `PPS_GETPARAMS`.
pub const PPS_GETPARAMS: u64 = ioc(IOC_READ, 0xa1, POINTER);
/// `PPS_SETPARAMS`.
pub const PPS_SETPARAMS: u64 = ioc(IOC_WRITE, 0xa2, POINTER);
/// `PPS_FETCH`.
pub const PPS_FETCH: u64 = ioc(IOC_READ | IOC_WRITE, 0xa4, POINTER);

/// Pulses waiting for the loop.
const PULSE_QUEUE: usize = 64;

/// What the reader thread sends: an assert edge's time, or the error that stopped it.
pub type PulseReads = mpsc::Receiver<io::Result<NtpTime>>;

/// An open PPS device.
struct PpsDevice {
    file: File,
}

impl PpsDevice {
    fn open(path: &Path) -> io::Result<PpsDevice> {
        let file = File::open(path)?;
        let device = PpsDevice { file };
        let mut params = device.params().map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTTY) {
                io::Error::new(io::ErrorKind::InvalidInput, "is not a PPS device (PPS_GETPARAMS: not a PPS ioctl)")
            } else {
                io::Error::new(e.kind(), format!("PPS_GETPARAMS: {e}"))
            }
        })?;
        if params.mode & PPS_CAPTUREASSERT == 0 {
            params.mode |= PPS_CAPTUREASSERT | PPS_TSFMT_TSPEC;
            params.api_version = PPS_API_VERS_1;
            // SAFETY: a valid descriptor and a pointer to a live `pps_kparams`.
            if unsafe { libc::ioctl(device.file.as_raw_fd(), PPS_SETPARAMS as _, &params as *const PpsKparams) } != 0 {
                let e = io::Error::last_os_error();
                let why = if e.raw_os_error() == Some(libc::EPERM) {
                    "the device does not capture assert edges, and switching them on (PPS_SETPARAMS) needs CAP_SYS_TIME"
                        .to_string()
                } else {
                    format!("PPS_SETPARAMS (capture assert edges): {e}")
                };
                return Err(io::Error::new(e.kind(), why));
            }
        }
        Ok(device)
    }

    fn params(&self) -> io::Result<PpsKparams> {
        let mut params = PpsKparams::default();
        // SAFETY: a valid descriptor and a pointer to a `pps_kparams` the kernel fills.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), PPS_GETPARAMS as _, &mut params as *mut PpsKparams) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(params)
    }

    /// Waits up to `timeout` for an edge; `Ok(None)` when none came.
    fn fetch(&self, timeout: std::time::Duration) -> io::Result<Option<PpsKinfo>> {
        let mut data = PpsFdata {
            timeout: PpsKtime { sec: timeout.as_secs() as i64, nsec: timeout.subsec_nanos() as i32, flags: 0 },
            ..PpsFdata::default()
        };
        // SAFETY: a valid descriptor and a pointer to a live `pps_fdata`.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), PPS_FETCH as _, &mut data as *mut PpsFdata) } != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(ETIMEDOUT) | Some(libc::EINTR) => Ok(None),
                _ => Err(io::Error::new(e.kind(), format!("PPS_FETCH: {e}"))),
            };
        }
        Ok(Some(data.info))
    }
}

/// The assert edge of `info` as an NTP time, `None` when the kernel's
/// timestamp is out of range (nanoseconds of a second or more, or before 1970).
pub fn assert_time(info: &PpsKinfo) -> Option<NtpTime> {
    let t = info.assert_tu;
    let secs = Some(t.sec).filter(|s| *s >= 0)?;
    let nanos = u32::try_from(t.nsec).ok().filter(|n| *n < 1_000_000_000)?;
    Some(NtpTime::from_unix(secs, nanos))
}

/// Which edges to send: a new assert sequence number with a valid time.
/// Returns the time to send and updates `last`.
pub fn new_edge(info: &PpsKinfo, last: &mut Option<u32>) -> Option<NtpTime> {
    if *last == Some(info.assert_sequence) || info.assert_sequence == 0 {
        return None;
    }
    *last = Some(info.assert_sequence);
    assert_time(info)
}

/// Opens `path` as a PPS device and starts its reader thread.
pub fn open_pps_device(path: &Path) -> io::Result<PulseReads> {
    let device = PpsDevice::open(path)?;
    let (tx, rx) = mpsc::channel(PULSE_QUEUE);
    std::thread::Builder::new().name(format!("pps {}", path.display())).spawn(move || {
        // The edge captured before the daemon started is not sent.
        // (A fetch without a timeout returns the last capture at once.)
        let mut last = None;
        if let Ok(Some(info)) = device.fetch(std::time::Duration::ZERO) {
            last = Some(info.assert_sequence);
        }
        while !tx.is_closed() {
            match device.fetch(std::time::Duration::from_secs(1)) {
                Ok(Some(info)) => {
                    if let Some(edge) = new_edge(&info, &mut last) {
                        if tx.blocking_send(Ok(edge)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structures_and_request_numbers_match_linux_pps_h() {
        // Sizes on 64-bit Linux (pps_ktime 16, pps_kinfo 48 with its
        // padding, pps_fdata 64, pps_kparams 40).
        assert_eq!(std::mem::size_of::<PpsKtime>(), 16);
        assert_eq!(std::mem::size_of::<PpsKinfo>(), 48);
        assert_eq!(std::mem::size_of::<PpsFdata>(), 64);
        assert_eq!(std::mem::size_of::<PpsKparams>(), 40);
        assert_eq!(std::mem::offset_of!(PpsKinfo, assert_tu), 8);
        assert_eq!(std::mem::offset_of!(PpsKinfo, current_mode), 40);
        assert_eq!(std::mem::offset_of!(PpsFdata, timeout), 48);
        // As the kernel headers' _IOR/_IOW/_IOWR give them on x86-64 and arm64.
        assert_eq!(PPS_GETPARAMS, 0x8008_70a1);
        assert_eq!(PPS_SETPARAMS, 0x4008_70a2);
        assert_eq!(PPS_FETCH, 0xc008_70a4);
    }

    #[test]
    fn an_edge_is_sent_once_per_sequence_number_with_its_nanoseconds() {
        let info = |seq, sec, nsec| PpsKinfo {
            assert_sequence: seq,
            assert_tu: PpsKtime { sec, nsec, flags: 0 },
            ..PpsKinfo::default()
        };
        let mut last = Some(6);
        assert_eq!(new_edge(&info(6, 1_900_000_000, 5), &mut last), None);
        let t = new_edge(&info(7, 1_900_000_001, 123_456_789), &mut last).unwrap();
        assert_eq!(t, NtpTime::from_unix(1_900_000_001, 123_456_789));
        assert_eq!(last, Some(7));
        assert_eq!(new_edge(&info(7, 1_900_000_001, 123_456_789), &mut last), None);
        // Nothing captured yet, or a timestamp out of range: nothing sent.
        assert_eq!(new_edge(&info(0, 5, 0), &mut None), None);
        assert_eq!(new_edge(&info(8, 1_900_000_002, 1_000_000_000), &mut last), None);
        assert_eq!(new_edge(&info(9, -1, 0), &mut last), None);
    }

    #[test]
    fn a_file_that_is_not_a_pps_device_is_refused_with_the_reason() {
        let file = std::env::temp_dir().join(format!("ntplab-notpps-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let e = open_pps_device(&file).unwrap_err();
        assert!(e.to_string().contains("is not a PPS device"), "{e}");
        std::fs::remove_file(&file).ok();
        let e = open_pps_device(Path::new("/nonexistent/pps9")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }
}
