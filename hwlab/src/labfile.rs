//! The lab file (`ntplab lab run --lab LAB.toml`): the hardware a lab has,
//! and which scenario hosts use it.
//!
//! ```toml
//! [[gps]]                      # a GPS receiver's NMEA output on a serial port
//! name = "gnss0"
//! serial = "/dev/ttyUSB0"
//! baud = 9600
//!
//! [[pps]]                      # a kernel PPS device (RFC 2783, /dev/ppsN)
//! name = "pps0"
//! device = "/dev/pps0"
//!
//! [[interface]]                # a network interface, for the inventory
//! name = "eth1"
//! hw_timestamping = true
//! phc = "/dev/ptp0"
//!
//! [[host]]                     # a scenario host and what it uses
//! name = "gps-server"
//! refclock = { gps = "gnss0", pps = "pps0" }
//! control_real_clock = false   # the default
//! ```
//!
//! [`LabFile::parse`] checks the file's own consistency (keys, names,
//! references, baud rates); [`LabFile::check_devices`] that the devices and
//! interfaces it names exist on this machine; [`LabFile::refusals`] what a
//! scenario asks of them that the lab cannot do.

use ntplab_sim::scenario::{Implementation, Scenario};
use serde::Deserialize;
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Largest lab file read.
pub const LAB_FILE_BYTES_MAX: u64 = 1 << 20;

/// A GPS receiver's NMEA output on a serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gps {
    pub name: String,
    /// The serial port (a character device).
    pub serial: PathBuf,
    /// Its line speed, one of the daemon's [`ntplab_daemon::config::BAUD_RATES`].
    pub baud: u32,
}

/// A kernel PPS device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pps {
    pub name: String,
    /// `/dev/ppsN`.
    pub device: PathBuf,
}

/// A network interface of the lab machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Whether it timestamps packets in hardware.
    pub hw_timestamping: bool,
    /// Its PTP hardware clock (`/dev/ptpN`), where its hardware timestamps are taken.
    pub phc: Option<PathBuf>,
}

/// A scenario host and the lab's resources it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBinding {
    /// The scenario host's name.
    pub name: String,
    /// Its reference clock's NMEA from this receiver (index into [`LabFile::gps`]).
    pub gps: Option<usize>,
    /// Its reference clock's pulses from this device (index into [`LabFile::pps`]).
    pub pps: Option<usize>,
    /// Whether its daemon may control the machine's real clock.
    pub control_real_clock: bool,
}

/// A lab file, parsed and consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabFile {
    /// Where it was read from (for messages).
    pub origin: String,
    pub gps: Vec<Gps>,
    pub pps: Vec<Pps>,
    pub interfaces: Vec<Interface>,
    pub hosts: Vec<HostBinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    #[serde(default)]
    gps: Vec<Spanned<GpsSection>>,
    #[serde(default)]
    pps: Vec<Spanned<PpsSection>>,
    #[serde(default)]
    interface: Vec<Spanned<InterfaceSection>>,
    #[serde(default)]
    host: Vec<Spanned<HostSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpsSection {
    name: Spanned<String>,
    serial: String,
    baud: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PpsSection {
    name: Spanned<String>,
    device: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceSection {
    name: Spanned<String>,
    hw_timestamping: bool,
    phc: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    name: Spanned<String>,
    refclock: Option<Spanned<RefclockBinding>>,
    #[serde(default)]
    control_real_clock: bool,
    /// Recognized only to refuse it with its reason.
    ssh: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefclockBinding {
    gps: Option<Spanned<String>>,
    pps: Option<Spanned<String>>,
}

/// `origin:line:column: message` for a byte span of `text`.
fn at(origin: &str, text: &str, span: Option<Range<usize>>, message: impl std::fmt::Display) -> String {
    match span {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{origin}:{line}:{column}: {message}")
        }
        None => format!("{origin}: {message}"),
    }
}

impl LabFile {
    /// Reads and parses a lab file (not its devices: [`LabFile::check_devices`]).
    pub fn load(path: &Path) -> Result<LabFile, String> {
        let origin = path.display().to_string();
        let len = std::fs::metadata(path).map_err(|e| format!("{origin}: cannot read the lab file: {e}"))?.len();
        if len > LAB_FILE_BYTES_MAX {
            return Err(format!("{origin}: {len} octets: a lab file is at most {LAB_FILE_BYTES_MAX}"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read the lab file: {e}"))?;
        LabFile::parse(&text, &origin)
    }

    /// Parses a lab file's text; every error names `origin`, the line and
    /// column, the key and what to do.
    pub fn parse(text: &str, origin: &str) -> Result<LabFile, String> {
        let f: FileSection = toml::from_str(text).map_err(|e| {
            let m = e.message().trim_end().to_string();
            let hint = if m.starts_with("unknown field") {
                "; a lab file has [[gps]] (name, serial, baud), [[pps]] (name, device), [[interface]] (name, hw_timestamping, phc) and [[host]] (name, refclock, control_real_clock)"
            } else if m.starts_with("missing field") {
                "; add it"
            } else {
                ""
            };
            at(origin, text, e.span(), format!("{m}{hint}"))
        })?;
        let err = |span: Range<usize>, m: String| at(origin, text, Some(span), m);
        // Names are unique within each kind.
        fn unique<'a>(names: impl Iterator<Item = &'a Spanned<String>>, kind: &str, err: &dyn Fn(Range<usize>, String) -> String) -> Result<(), String> {
            let mut seen = std::collections::BTreeSet::new();
            for n in names {
                if n.get_ref().is_empty() {
                    return Err(err(n.span(), format!("{kind} with an empty `name`: give it one")));
                }
                if !seen.insert(n.get_ref().as_str()) {
                    return Err(err(n.span(), format!("a second {kind} named `{}`: names are unique within [[{}]]", n.get_ref(), kind.trim_start_matches("[[").trim_end_matches("]]"))));
                }
            }
            Ok(())
        }
        unique(f.gps.iter().map(|g| &g.get_ref().name), "[[gps]]", &err)?;
        unique(f.pps.iter().map(|p| &p.get_ref().name), "[[pps]]", &err)?;
        unique(f.interface.iter().map(|i| &i.get_ref().name), "[[interface]]", &err)?;
        unique(f.host.iter().map(|h| &h.get_ref().name), "[[host]]", &err)?;

        let mut gps = Vec::new();
        for g in &f.gps {
            let g = g.get_ref();
            let name = g.name.get_ref();
            if g.serial.is_empty() {
                return Err(err(g.name.span(), format!("[[gps]] `{name}`: `serial` is empty: name its serial port (e.g. \"/dev/ttyUSB0\")")));
            }
            let baud = *g.baud.get_ref();
            if !ntplab_daemon::config::BAUD_RATES.contains(&baud) {
                return Err(err(g.baud.span(), format!("[[gps]] `{name}`: baud {baud} is not one of {:?}", ntplab_daemon::config::BAUD_RATES)));
            }
            gps.push(Gps { name: name.clone(), serial: PathBuf::from(&g.serial), baud });
        }
        let mut pps = Vec::new();
        for p in &f.pps {
            let p = p.get_ref();
            let name = p.name.get_ref();
            if p.device.is_empty() {
                return Err(err(p.name.span(), format!("[[pps]] `{name}`: `device` is empty: name its kernel PPS device (e.g. \"/dev/pps0\")")));
            }
            pps.push(Pps { name: name.clone(), device: PathBuf::from(&p.device) });
        }
        let mut interfaces = Vec::new();
        for i in &f.interface {
            let i = i.get_ref();
            let name = i.name.get_ref();
            if i.hw_timestamping && i.phc.is_none() {
                return Err(err(
                    i.name.span(),
                    format!("[[interface]] `{name}`: hw_timestamping = true without `phc`: hardware timestamps are taken on the NIC's PTP clock; name it (e.g. phc = \"/dev/ptp0\")"),
                ));
            }
            interfaces.push(Interface { name: name.clone(), hw_timestamping: i.hw_timestamping, phc: i.phc.as_ref().map(PathBuf::from) });
        }
        let mut hosts = Vec::new();
        for h in &f.host {
            let h = h.get_ref();
            let name = h.name.get_ref();
            if let Some(ssh) = &h.ssh {
                return Err(err(
                    ssh.span(),
                    format!(
                        "[[host]] `{name}`: ssh = {:?}: remote hosts are not supported yet (every host of a lab run is a network namespace on this machine); remove `ssh`",
                        ssh.get_ref()
                    ),
                ));
            }
            let find = |what: &Spanned<String>, names: &[String], kind: &str| -> Result<usize, String> {
                names.iter().position(|n| n == what.get_ref()).ok_or_else(|| {
                    let have = if names.is_empty() { format!("the file has no [[{kind}]]") } else { format!("the file's [[{kind}]] are {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")) };
                    err(what.span(), format!("[[host]] `{name}`: refclock {kind} = {:?}: no [[{kind}]] has that name ({have})", what.get_ref()))
                })
            };
            let (mut g, mut p) = (None, None);
            if let Some(r) = &h.refclock {
                let b = r.get_ref();
                if b.gps.is_none() && b.pps.is_none() {
                    return Err(err(r.span(), format!("[[host]] `{name}`: an empty `refclock`: bind `gps`, `pps` or both, or leave `refclock` out")));
                }
                if let Some(x) = &b.gps {
                    g = Some(find(x, &gps.iter().map(|x: &Gps| x.name.clone()).collect::<Vec<_>>(), "gps")?);
                }
                if let Some(x) = &b.pps {
                    p = Some(find(x, &pps.iter().map(|x: &Pps| x.name.clone()).collect::<Vec<_>>(), "pps")?);
                }
            }
            hosts.push(HostBinding { name: name.clone(), gps: g, pps: p, control_real_clock: h.control_real_clock });
        }
        // A device feeds one host: one reader per serial port, one daemon per PPS device.
        for (kind, of) in [("gps", hosts.iter().map(|h| h.gps).collect::<Vec<_>>()), ("pps", hosts.iter().map(|h| h.pps).collect())] {
            for (i, a) in of.iter().enumerate() {
                if let Some(j) = of[..i].iter().position(|b| a.is_some() && b == a) {
                    let span = f.host[i].get_ref().name.span();
                    let device = if kind == "gps" { &gps[a.unwrap_or(0)].name } else { &pps[a.unwrap_or(0)].name };
                    return Err(err(span, format!("[[host]] `{}`: refclock {kind} `{device}` is already bound to host `{}`: a device feeds one host", hosts[i].name, hosts[j].name)));
                }
            }
        }
        Ok(LabFile { origin: origin.to_string(), gps, pps, interfaces, hosts })
    }

    /// That every device and interface the file names exists on this
    /// machine: serial ports, PPS devices and PHCs as character devices,
    /// interfaces in /sys/class/net.
    pub fn check_devices(&self) -> Result<(), String> {
        let char_device = |what: String, path: &Path, key: &str| -> Result<(), String> {
            match std::fs::metadata(path) {
                Ok(m) if m.file_type().is_char_device() => Ok(()),
                Ok(_) => Err(format!("{}: {what}: {key} {} is not a character device: fix `{key}`", self.origin, path.display())),
                Err(e) => Err(format!("{}: {what}: {key} {}: {e} (is the device attached? fix `{key}`)", self.origin, path.display())),
            }
        };
        for g in &self.gps {
            char_device(format!("[[gps]] `{}`", g.name), &g.serial, "serial")?;
        }
        for p in &self.pps {
            char_device(format!("[[pps]] `{}`", p.name), &p.device, "device")?;
        }
        for i in &self.interfaces {
            if i.name.contains('/') || !Path::new("/sys/class/net").join(&i.name).exists() {
                return Err(format!("{}: [[interface]] `{}`: no such network interface on this machine (`ip link` lists them): fix `name`", self.origin, i.name));
            }
            if let Some(phc) = &i.phc {
                char_device(format!("[[interface]] `{}`", i.name), phc, "phc")?;
            }
            // What the file says against what the kernel reports.
            let what = format!("{}: [[interface]] `{}`", self.origin, i.name);
            let k = timestamping_info(&i.name).map_err(|e| format!("{what}: {e}"))?;
            if i.hw_timestamping && !k.hardware() {
                return Err(format!(
                    "{what}: hw_timestamping = true, but the kernel reports no hardware receive and transmit timestamps on it (ethtool -T {}): fix `hw_timestamping`",
                    i.name
                ));
            }
            if let Some(phc) = &i.phc {
                let kernel = (k.phc_index >= 0).then(|| PathBuf::from(format!("/dev/ptp{}", k.phc_index)));
                if kernel.as_deref() != Some(phc.as_path()) {
                    let says = kernel.map_or_else(|| "it has none".to_string(), |p| format!("it is {}", p.display()));
                    return Err(format!("{what}: phc {}, but the kernel says {says} (ethtool -T {}): fix `phc`", phc.display(), i.name));
                }
            }
        }
        Ok(())
    }

    /// The binding of scenario host `name`, if the file has one.
    pub fn host(&self, name: &str) -> Option<&HostBinding> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The file's hosts that `s` does not have.
    pub fn unknown_hosts(&self, s: &Scenario) -> Vec<String> {
        self.hosts.iter().filter(|b| !s.hosts.iter().any(|h| h.name == b.name)).map(|b| b.name.clone()).collect()
    }

    /// Everything the bindings ask of scenario `s` that the lab cannot do,
    /// each with its reason (empty: it can). Hosts of the file that `s`
    /// does not have are not refused here ([`LabFile::unknown_hosts`]).
    pub fn refusals(&self, s: &Scenario) -> Vec<String> {
        let mut why = Vec::new();
        for b in &self.hosts {
            let Some(h) = s.hosts.iter().find(|h| h.name == b.name) else { continue };
            let n = &h.name;
            if b.control_real_clock {
                why.push(format!(
                    "host `{n}`: {} lets it control its real clock (control_real_clock = true): the virtual lab runs every daemon on a virtual clock on this machine, whose clock is the lab's true time and is never changed; no lab driver here runs a daemon on a real clock",
                    self.origin
                ));
            }
            if b.gps.is_none() && b.pps.is_none() {
                continue;
            }
            let Some(rc) = &h.refclock else {
                why.push(format!("host `{n}`: {} binds a reference clock to it, but the scenario gives it no `refclock`", self.origin));
                continue;
            };
            let kind = rc.kind;
            let kind_name = kind.name();
            if h.implementation != Implementation::Ntplab {
                why.push(format!(
                    "host `{n}`: impl = \"{}\": {} binds a real GPS or PPS device to it, and the lab passes real devices to ntplab's daemon only (its `serial` relayed through a pty, its `pps_device`)",
                    h.implementation.name(),
                    self.origin
                ));
                continue;
            }
            match (kind.uses_serial(), b.gps) {
                (false, Some(g)) => why.push(format!("host `{n}`: its refclock is kind {kind_name} (pulses only): it has no NMEA output to bind to [[gps]] `{}`", self.gps[g].name)),
                (true, None) => why.push(format!(
                    "host `{n}`: its refclock is kind {kind_name}: bind its NMEA too (`refclock = {{ gps = ... }}`): the lab does not mix a real device with the simulated receiver"
                )),
                _ => {}
            }
            match (kind.uses_pps(), b.pps) {
                (false, Some(p)) => why.push(format!("host `{n}`: its refclock is kind {kind_name} (NMEA only): it has no PPS output to bind to [[pps]] `{}`", self.pps[p].name)),
                (true, None) => why.push(format!(
                    "host `{n}`: its refclock is kind {kind_name}: bind its pulses too (`refclock = {{ pps = ... }}`): the lab does not mix a real device with the simulated pulses"
                )),
                _ => {}
            }
            // Faults: realized on the real device where the lab can, else refused.
            let wnro = rc.gps.faults.iter().filter(|f| matches!(f, ntplab_sim::gps::GpsFault::Wnro { .. })).count();
            if wnro > 0 && b.gps.is_some() {
                why.push(format!(
                    "host `{n}`: {wnro} `wnro` window(s): a real receiver cannot be made to send dates 1024 weeks old (the lab relays its bytes as they are)"
                ));
            }
            if b.pps.is_some() {
                let p = &rc.pps;
                for (key, v) in [("pps_dropout", p.dropout_probability), ("pps_outlier", p.outlier_probability)] {
                    if v != 0.0 {
                        why.push(format!("host `{n}`: `{key}` {v}: the daemon reads the real PPS device [[pps]] `{}` itself, the lab cannot drop or displace its pulses", self.pps[b.pps.unwrap_or(0)].name));
                    }
                }
            }
        }
        why
    }

    /// The lab's hardware, one line each, for the report header.
    pub fn inventory(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let user = |kind: &str, i: usize| {
            self.hosts
                .iter()
                .find(|h| if kind == "gps" { h.gps == Some(i) } else { h.pps == Some(i) })
                .map_or_else(|| "unbound".to_string(), |h| format!("host `{}`", h.name))
        };
        for (i, g) in self.gps.iter().enumerate() {
            lines.push(format!("lab {}: gps `{}`: serial {} at {} baud, {}", self.origin, g.name, g.serial.display(), g.baud, user("gps", i)));
        }
        for (i, p) in self.pps.iter().enumerate() {
            lines.push(format!("lab {}: pps `{}`: {} (RFC 2783 kernel PPS), {}", self.origin, p.name, p.device.display(), user("pps", i)));
        }
        for i in &self.interfaces {
            let phc = i.phc.as_ref().map_or_else(|| "no PHC".to_string(), |p| format!("PHC {}", p.display()));
            lines.push(format!("lab {}: interface `{}`: hardware timestamping {}, {phc}", self.origin, i.name, if i.hw_timestamping { "yes" } else { "no" }));
        }
        for h in &self.hosts {
            lines.push(format!("lab {}: host `{}`: local, real clock control {}", self.origin, h.name, if h.control_real_clock { "allowed (refused in the virtual lab)" } else { "no" }));
        }
        lines
    }
}

/// An interface's timestamping capabilities as the kernel reports them
/// (`ETHTOOL_GET_TS_INFO`, what `ethtool -T` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampingInfo {
    /// `SOF_TIMESTAMPING_*` bits the interface supports.
    pub so_timestamping: u32,
    /// Its PTP hardware clock's index (`/dev/ptpN`), or -1.
    pub phc_index: i32,
}

impl TimestampingInfo {
    /// Hardware receive and transmit timestamps.
    pub fn hardware(&self) -> bool {
        const TX_HARDWARE: u32 = 1 << 0;
        const RX_HARDWARE: u32 = 1 << 2;
        self.so_timestamping & (TX_HARDWARE | RX_HARDWARE) == TX_HARDWARE | RX_HARDWARE
    }
}

/// Asks the kernel what timestamping interface `name` has (`SIOCETHTOOL`
/// with `ETHTOOL_GET_TS_INFO`; no privilege needed).
pub fn timestamping_info(name: &str) -> Result<TimestampingInfo, String> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolTsInfo {
        cmd: u32,
        so_timestamping: u32,
        phc_index: i32,
        tx_types: u32,
        tx_reserved: [u32; 3],
        rx_filters: u32,
        rx_reserved: [u32; 3],
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut EthtoolTsInfo,
        _pad: [u8; 16],
    }
    const SIOCETHTOOL: u64 = 0x8946;
    const ETHTOOL_GET_TS_INFO: u32 = 0x41;
    if name.is_empty() || name.len() >= 16 || name.contains('\0') {
        return Err(format!("{name:?} is not an interface name (1 to 15 octets)"));
    }
    let mut info = EthtoolTsInfo { cmd: ETHTOOL_GET_TS_INFO, ..EthtoolTsInfo::default() };
    let mut req = IfReq { name: [0; 16], data: &mut info, _pad: [0; 16] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket only to carry the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: an ifreq naming the interface with a pointer to an ethtool_ts_info, both live across the call.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq) };
    let e = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Err(format!("asking the kernel for its timestamping (ETHTOOL_GET_TS_INFO) failed: {e}"));
    }
    Ok(TimestampingInfo { so_timestamping: info.so_timestamping, phc_index: info.phc_index })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
[[gps]]
name = "gnss0"
serial = "/dev/ttyS0"
baud = 9600

[[pps]]
name = "pps0"
device = "/dev/pps0"

[[interface]]
name = "lo"
hw_timestamping = false

[[host]]
name = "gps-server"
refclock = { gps = "gnss0", pps = "pps0" }
"#;

    fn scenario(kind: &str, extra: &str) -> Scenario {
        let text = format!(
            "name = \"s\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"60s\"\n\n[[host]]\nname = \"gps-server\"\naddress = \"10.0.0.1\"\n\
             refclock = {{ kind = \"{kind}\"{extra} }}\n\n[[host]]\nname = \"client\"\naddress = \"10.0.0.2\"\nlisten = false\nsources = [ {{ host = \"gps-server\" }} ]\n\n\
             [[link]]\nbetween = [\"client\", \"gps-server\"]\n"
        );
        Scenario::parse(&text, "s.toml").unwrap()
    }

    #[test]
    fn a_lab_file_parses_into_its_resources_and_bindings() {
        let l = LabFile::parse(LAB, "LAB.toml").unwrap();
        assert_eq!(l.gps, vec![Gps { name: "gnss0".into(), serial: "/dev/ttyS0".into(), baud: 9600 }]);
        assert_eq!(l.pps, vec![Pps { name: "pps0".into(), device: "/dev/pps0".into() }]);
        assert_eq!(l.hosts, vec![HostBinding { name: "gps-server".into(), gps: Some(0), pps: Some(0), control_real_clock: false }]);
        let inv = l.inventory();
        assert_eq!(inv.len(), 4, "{inv:?}");
        assert!(inv[0].contains("serial /dev/ttyS0 at 9600 baud, host `gps-server`") && inv[2].contains("interface `lo`: hardware timestamping no, no PHC"), "{inv:?}");
        assert_eq!(LabFile::parse("", "empty.toml").unwrap().inventory(), Vec::<String>::new());
    }

    #[test]
    fn the_example_lab_file_parses_and_fits_the_gps_pps_scenario() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let l = LabFile::load(&root.join("docs/lab.example.toml")).unwrap();
        assert_eq!((l.gps.len(), l.pps.len(), l.interfaces.len(), l.hosts.len()), (1, 1, 2, 1));
        assert_eq!(l.interfaces[0], Interface { name: "eth1".into(), hw_timestamping: true, phc: Some("/dev/ptp0".into()) });
        let s = Scenario::load(root.join("tests/lab/gps-pps-short.toml")).unwrap();
        assert_eq!(l.refusals(&s), Vec::<String>::new());
        assert_eq!(l.unknown_hosts(&s), Vec::<String>::new());
    }

    #[test]
    fn mistakes_in_a_lab_file_are_named_with_file_line_and_key() {
        let bad = |text: &str| LabFile::parse(text, "LAB.toml").unwrap_err();
        let e = bad(&LAB.replace("baud = 9600", "baud = 9600\nparity = \"none\""));
        assert!(e.starts_with("LAB.toml:6:1: unknown field `parity`"), "{e}");
        let e = bad(&LAB.replace("serial = \"/dev/ttyS0\"\n", ""));
        assert!(e.starts_with("LAB.toml:2:1: missing field `serial`"), "{e}");
        let e = bad(&LAB.replace("device = \"/dev/pps0\"", "device = \"\""));
        assert!(e.contains("[[pps]] `pps0`: `device` is empty"), "{e}");
        let e = bad(&LAB.replace("baud = 9600", "baud = 9601"));
        assert!(e.starts_with("LAB.toml:5:8: [[gps]] `gnss0`: baud 9601 is not one of"), "{e}");
        let e = bad(&LAB.replace("gps = \"gnss0\"", "gps = \"gnss9\""));
        assert!(e.starts_with("LAB.toml:17:") && e.contains("refclock gps = \"gnss9\": no [[gps]] has that name (the file's [[gps]] are `gnss0`)"), "{e}");
        let e = bad(&LAB.replace("pps = \"pps0\"", "pps = \"pps1\""));
        assert!(e.contains("no [[pps]] has that name"), "{e}");
        let e = bad(&LAB.replace("refclock = { gps = \"gnss0\", pps = \"pps0\" }", "refclock = { }"));
        assert!(e.contains("an empty `refclock`"), "{e}");
        let e = bad(&format!("{LAB}\n[[host]]\nname = \"other\"\nrefclock = {{ gps = \"gnss0\" }}\n"));
        assert!(e.contains("[[host]] `other`: refclock gps `gnss0` is already bound to host `gps-server`"), "{e}");
        let e = bad(&format!("{LAB}\n[[gps]]\nname = \"gnss0\"\nserial = \"/dev/ttyS1\"\nbaud = 4800\n"));
        assert!(e.contains("a second [[gps]] named `gnss0`"), "{e}");
        let e = bad(&LAB.replace("hw_timestamping = false", "hw_timestamping = true"));
        assert!(e.contains("hw_timestamping = true without `phc`"), "{e}");
        let e = bad(&LAB.replace("name = \"gps-server\"", "name = \"gps-server\"\nssh = \"root@lab2\""));
        assert!(e.contains("ssh = \"root@lab2\": remote hosts are not supported yet"), "{e}");
        let e = bad("[[gps]]\nname = \"g\"\nserial = \"/dev/x\"\nbaud = \"fast\"\n");
        assert!(e.starts_with("LAB.toml:4:8: invalid type"), "{e}");
        assert!(bad("[gps]\nname = 1").starts_with("LAB.toml:1:1:"));
    }

    #[test]
    fn devices_that_are_not_on_this_machine_are_named() {
        let l = LabFile::parse(&LAB.replace("/dev/pps0", "/dev/ntplab-no-such-pps"), "LAB.toml").unwrap();
        let e = l.check_devices().unwrap_err();
        assert!(e.starts_with("LAB.toml: [[pps]] `pps0`: device /dev/ntplab-no-such-pps: No such file") && e.contains("fix `device`"), "{e}");
        let plain = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let l = LabFile::parse(&LAB.replace("/dev/ttyS0", plain), "LAB.toml").unwrap();
        let e = l.check_devices().unwrap_err();
        assert!(e.contains(&format!("[[gps]] `gnss0`: serial {plain} is not a character device")), "{e}");
        let l = LabFile::parse("[[interface]]\nname = \"ntplab-no-nic\"\nhw_timestamping = false\n", "LAB.toml").unwrap();
        assert!(l.check_devices().unwrap_err().contains("[[interface]] `ntplab-no-nic`: no such network interface"));
        // The kernel's word against the file's: lo timestamps in software only and has no PHC.
        let lo = timestamping_info("lo").unwrap();
        assert!(!lo.hardware() && lo.phc_index == -1, "{lo:?}");
        let l = LabFile::parse("[[interface]]\nname = \"lo\"\nhw_timestamping = true\nphc = \"/dev/null\"\n", "LAB.toml").unwrap();
        let e = l.check_devices().unwrap_err();
        assert!(e.contains("[[interface]] `lo`: hw_timestamping = true, but the kernel reports no hardware") && e.contains("fix `hw_timestamping`"), "{e}");
        let l = LabFile::parse("[[interface]]\nname = \"lo\"\nhw_timestamping = false\nphc = \"/dev/null\"\n", "LAB.toml").unwrap();
        let e = l.check_devices().unwrap_err();
        assert!(e.contains("phc /dev/null, but the kernel says it has none") && e.contains("fix `phc`"), "{e}");
        assert!(timestamping_info("ntplab-no-nic").unwrap_err().contains("ETHTOOL_GET_TS_INFO"));
        assert!(timestamping_info("a-name-far-too-long").is_err());
        // /dev/null is a character device; lo exists everywhere.
        let l = LabFile::parse("[[gps]]\nname = \"g\"\nserial = \"/dev/null\"\nbaud = 4800\n[[interface]]\nname = \"lo\"\nhw_timestamping = false\n", "LAB.toml").unwrap();
        assert_eq!(l.check_devices(), Ok(()));
    }

    #[test]
    fn bindings_that_do_not_fit_the_scenarios_refclock_are_refused_with_the_reason() {
        let l = LabFile::parse(LAB, "LAB.toml").unwrap();
        assert_eq!(l.refusals(&scenario("gps-pps", "")), Vec::<String>::new());
        // Kind mismatches, each way.
        let r = l.refusals(&scenario("gps", ""));
        assert!(r.len() == 1 && r[0].contains("kind gps (NMEA only): it has no PPS output to bind to [[pps]] `pps0`"), "{r:?}");
        let r = l.refusals(&scenario("pps", ""));
        assert!(r.len() == 1 && r[0].contains("kind pps (pulses only): it has no NMEA output to bind to [[gps]] `gnss0`"), "{r:?}");
        let only_gps = LabFile::parse(&LAB.replace(", pps = \"pps0\"", ""), "LAB.toml").unwrap();
        let r = only_gps.refusals(&scenario("gps-pps", ""));
        assert!(r.len() == 1 && r[0].contains("bind its pulses too"), "{r:?}");
        assert_eq!(only_gps.refusals(&scenario("gps", "")), Vec::<String>::new());
        // Faults: a fix loss is realized (the line is cut), the others refused.
        assert_eq!(l.refusals(&scenario("gps-pps", ", fix_loss = [ { from = \"10s\", until = \"20s\" } ]")), Vec::<String>::new());
        let r = l.refusals(&scenario("gps-pps", ", wnro = [ { from = \"10s\", until = \"20s\" } ], pps_dropout = 0.1, pps_outlier = 0.01"));
        assert!(r.len() == 3 && r[0].contains("1 `wnro` window(s): a real receiver cannot") && r[1].contains("`pps_dropout` 0.1") && r[2].contains("`pps_outlier` 0.01"), "{r:?}");
        // A real device bound to another program's host.
        let mut chrony = scenario("pps", "");
        chrony.hosts[0].implementation = Implementation::Chrony;
        let r = l.refusals(&chrony);
        assert!(r.len() == 1 && r[0].contains("host `gps-server`: impl = \"chrony\": LAB.toml binds a real GPS or PPS device to it") && r[0].contains("ntplab's daemon only"), "{r:?}");
        // A host without a refclock, and one that may control its real clock.
        let no_refclock = Scenario::parse(&scenario_text_without_refclock(), "s.toml").unwrap();
        let r = l.refusals(&no_refclock);
        assert!(r.len() == 1 && r[0].contains("binds a reference clock to it, but the scenario gives it no `refclock`"), "{r:?}");
        let clock = LabFile::parse(&LAB.replace("pps = \"pps0\" }", "pps = \"pps0\" }\ncontrol_real_clock = true"), "LAB.toml").unwrap();
        let r = clock.refusals(&scenario("gps-pps", ""));
        assert!(r.len() == 1 && r[0].contains("control_real_clock = true") && r[0].contains("never changed"), "{r:?}");
        assert!(clock.inventory().iter().any(|l| l.contains("real clock control allowed (refused in the virtual lab)")));
        // Hosts of the file the scenario does not have: not refused, but listed.
        let other = LabFile::parse(&LAB.replace("name = \"gps-server\"", "name = \"elsewhere\""), "LAB.toml").unwrap();
        assert_eq!(other.refusals(&scenario("gps-pps", "")), Vec::<String>::new());
        assert_eq!(other.unknown_hosts(&scenario("gps-pps", "")), vec!["elsewhere".to_string()]);
    }

    fn scenario_text_without_refclock() -> String {
        "name = \"s\"\nseed = 1\nstart = \"2026-01-01T00:00:00Z\"\nduration = \"60s\"\n\n[[host]]\nname = \"gps-server\"\naddress = \"10.0.0.1\"\nlocal_stratum = 1\n".into()
    }
}
