//! Reference clocks on Linux: NMEA from a serial port (the `serialport`
//! crate, read in a thread, each read stamped with `CLOCK_REALTIME` as soon as
//! it returns: a user-space timestamp) and PPS edges from a chrony/gpsd-style
//! SOCK Unix datagram socket ([`super::sock`]) or from a kernel PPS device
//! (`/dev/ppsN`, [`super::kpps`]).

use super::sock::{parse_sock_sample, SOCK_SAMPLE_LEN};
use super::{RefclockInput, RefclockProvider, Refclocks};
use crate::config::RefclockSpec;
use crate::sysclock::realtime_now;
use ntplab_proto::time::NtpTime;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use tokio::sync::mpsc;

/// Serial reads waiting for the loop.
const SERIAL_QUEUE: usize = 256;
/// Bytes per serial read.
const SERIAL_READ_MAX: usize = 256;

/// What the serial reader thread sends: bytes read and the clock right after, or the error that stopped it.
type SerialReads = mpsc::Receiver<io::Result<(Vec<u8>, NtpTime)>>;

/// Opens [`LinuxRefclock`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxRefclocks;

/// A serial port and/or a SOCK socket of one reference clock.
#[derive(Debug)]
pub struct LinuxRefclock {
    serial: Option<SerialReads>,
    pps: Option<tokio::net::UnixDatagram>,
    kernel_pps: Option<super::kpps::PulseReads>,
}

impl Refclocks for LinuxRefclocks {
    type Provider = LinuxRefclock;

    async fn open(&self, index: usize, spec: &RefclockSpec) -> io::Result<LinuxRefclock> {
        let name = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            io::Error::other(format!("refclock #{} ({}): {what} {}: {e}", index + 1, spec.kind.name(), path.display()))
        };
        let serial = match &spec.serial {
            Some(path) => Some(open_serial(path, spec.baud).map_err(|e| name("serial port", path, &e))?),
            None => None,
        };
        let pps = match &spec.pps_socket {
            Some(path) => Some(bind_sock(path).map_err(|e| name("PPS socket", path, &e))?),
            None => None,
        };
        let kernel_pps = match &spec.pps_device {
            Some(path) => Some(super::kpps::open_pps_device(path).map_err(|e| name("PPS device", path, &e))?),
            None => None,
        };
        Ok(LinuxRefclock { serial, pps, kernel_pps })
    }
}

/// Opens the port 8N1 without flow control and starts its reader thread.
fn open_serial(path: &Path, baud: u32) -> io::Result<SerialReads> {
    let mut port = serialport::new(path.to_string_lossy(), baud)
        .timeout(std::time::Duration::from_millis(500))
        .open()
        .map_err(io::Error::from)?;
    let (tx, rx) = mpsc::channel(SERIAL_QUEUE);
    std::thread::Builder::new().name(format!("serial {}", path.display())).spawn(move || {
        let mut buf = [0u8; SERIAL_READ_MAX];
        while !tx.is_closed() {
            match port.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let stamp = realtime_now();
                    if tx.blocking_send(Ok((buf[..n].to_vec(), stamp))).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    })?;
    Ok(rx)
}

/// Binds the SOCK socket, replacing a stale socket file (never another kind of file).
fn bind_sock(path: &Path) -> io::Result<tokio::net::UnixDatagram> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket")),
        Err(_) => {}
    }
    tokio::net::UnixDatagram::bind(path)
}

/// The next item a reader thread sends on `rx` (never, without one). A
/// reader that failed or stopped is let go, and its error returned.
async fn from_reader<T>(rx: &mut Option<mpsc::Receiver<io::Result<T>>>, name: &str) -> io::Result<T> {
    let Some(reader) = rx.as_mut() else { return std::future::pending().await };
    let got = reader.recv().await;
    if !matches!(got, Some(Ok(_))) {
        *rx = None;
    }
    got.unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::BrokenPipe, format!("{name} stopped"))))
}

impl RefclockProvider for LinuxRefclock {
    async fn next(&mut self) -> io::Result<RefclockInput> {
        let mut buf = [0u8; SOCK_SAMPLE_LEN + 1];
        loop {
            let serial = from_reader(&mut self.serial, "serial reader");
            let pps = async {
                match self.pps.as_ref() {
                    Some(socket) => socket.recv(&mut buf).await,
                    None => std::future::pending().await,
                }
            };
            let kernel_pps = from_reader(&mut self.kernel_pps, "PPS device reader");
            tokio::select! {
                biased;
                edge = kernel_pps => return edge.map(|edge_time_raw| RefclockInput::Pulse { edge_time_raw }),
                received = pps => {
                    let n = received?;
                    match parse_sock_sample(&buf[..n]) {
                        Ok(s) if s.pulse => return Ok(RefclockInput::Pulse { edge_time_raw: s.pulse_edge() }),
                        Ok(_) => tracing::debug!("SOCK time sample ignored: the PPS socket takes pulses only"),
                        Err(e) => tracing::debug!(error = %e, "bad SOCK sample"),
                    }
                }
                read = serial => return read.map(|(bytes, rx_time_raw)| RefclockInput::Serial { bytes, rx_time_raw }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sock::encode_sock_sample;
    use super::*;
    use crate::config::{RefclockKind, RefclockSpec};

    #[tokio::test]
    async fn pulses_come_from_the_sock_socket_and_garbage_is_skipped() {
        let dir = std::env::temp_dir().join(format!("ntplab-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pps.sock");
        // A stale socket file is replaced.
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
        let spec = RefclockSpec { pps_socket: Some(path.clone()), ..RefclockSpec::new(RefclockKind::Pps) };
        let mut clock = LinuxRefclocks.open(0, &spec).await.unwrap();
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"garbage", &path).unwrap();
        sender.send_to(&encode_sock_sample(1_900_000_000, 5, 0.0, false, 0), &path).unwrap();
        sender.send_to(&encode_sock_sample(1_900_000_000, 5, 5e-6, true, 0), &path).unwrap();
        let input = tokio::time::timeout(std::time::Duration::from_secs(5), clock.next()).await.unwrap().unwrap();
        let RefclockInput::Pulse { edge_time_raw } = input else { panic!("{input:?}") };
        let error = edge_time_raw.duration_since(NtpTime::from_unix(1_900_000_000, 5_000)).abs();
        assert!(error < ntplab_proto::time::NtpDuration::from_nanos(2), "{error:?}");
        drop(clock);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn opening_reports_the_device() {
        let spec = RefclockSpec { serial: Some("/nonexistent/ttyS9".into()), ..RefclockSpec::new(RefclockKind::Gps) };
        let e = LinuxRefclocks.open(0, &spec).await.unwrap_err();
        assert!(e.to_string().contains("refclock #1 (gps): serial port /nonexistent/ttyS9"), "{e}");
        let dir = std::env::temp_dir();
        let file = dir.join(format!("ntplab-notasocket-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let spec = RefclockSpec { pps_socket: Some(file.clone()), ..RefclockSpec::new(RefclockKind::Pps) };
        let e = LinuxRefclocks.open(0, &spec).await.unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert!(file.exists(), "a file that is not a socket is never removed");
        let spec = RefclockSpec { pps_device: Some(file.clone()), ..RefclockSpec::new(RefclockKind::Pps) };
        let e = LinuxRefclocks.open(0, &spec).await.unwrap_err();
        assert!(e.to_string().contains("refclock #1 (pps): PPS device") && e.to_string().contains("is not a PPS device"), "{e}");
        std::fs::remove_file(&file).ok();
    }
}
