//! What a lab daemon says about itself, read while it runs: chronyd through
//! `chronyc -c tracking` and `sources` (its command socket), ntpsec through
//! `ntpq` (mode 6 on the host's loopback), ntpd-rs through `ntp-ctl status
//! -f prometheus` (its observation socket). Each reading becomes a
//! [`DaemonReport`]: the same fields whatever the program, each `None` when
//! the program does not give it. The lab writes them as `lab_report` events
//! and takes stratum and poll for `samples.csv` from them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a report command may take before it is killed.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The daemon's state as it reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonReport {
    /// The stratum it would serve (16, or chrony's 0, when unsynchronized).
    pub stratum: Option<u8>,
    /// Its poll interval, log2 s: the selected source's (chrony, ntpsec) or the system's (ntpd-rs).
    pub poll_log2: Option<i8>,
    /// Leap indicator: 0-2, 3 = unsynchronized.
    pub leap: Option<u8>,
    /// Root delay and dispersion, s.
    pub root_delay_s: Option<f64>,
    pub root_dispersion_s: Option<f64>,
    /// One per source.
    pub sources: Vec<SourceReport>,
}

/// One source as the daemon reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceReport {
    /// Address as the program prints it.
    pub address: String,
    /// Whether it is the selected (system) peer; `None` when the program does not say.
    pub selected: Option<bool>,
    /// Its stratum.
    pub stratum: Option<u8>,
    /// Poll interval, log2 s.
    pub poll_log2: Option<i8>,
    /// Reach register.
    pub reach: Option<u8>,
    /// Measured offset (server − local), delay, s.
    pub offset_s: Option<f64>,
    pub delay_s: Option<f64>,
}

impl DaemonReport {
    /// As a JSON object for the trace's events.
    pub fn to_json(&self) -> serde_json::Value {
        let sources: Vec<serde_json::Value> = self
            .sources
            .iter()
            .map(|s| {
                serde_json::json!({"address": s.address, "selected": s.selected, "stratum": s.stratum, "poll_log2": s.poll_log2,
                    "reach": s.reach, "offset_s": s.offset_s, "delay_s": s.delay_s})
            })
            .collect();
        serde_json::json!({"stratum": self.stratum, "poll_log2": self.poll_log2, "leap": self.leap,
            "root_delay_s": self.root_delay_s, "root_dispersion_s": self.root_dispersion_s, "sources": sources})
    }
}

/// How to ask one running daemon.
#[derive(Debug, Clone)]
pub enum Reporter {
    /// `chronyc -h SOCKET -n -c tracking` and `sources`.
    Chronyc { chronyc: PathBuf, socket: PathBuf },
    /// `ip netns exec NS ntpq -n -c rv... -c peers 127.0.0.1`, with `PYTHONPATH`.
    Ntpq { ntpq: PathBuf, python_path: PathBuf, ns: String },
    /// `ntp-ctl -c CONFIG status -f prometheus`.
    NtpCtl { ctl: PathBuf, config: PathBuf },
}

impl Reporter {
    /// The command line, for the events.
    pub fn describe(&self) -> &'static str {
        match self {
            Reporter::Chronyc { .. } => "chronyc -c tracking; chronyc -c sources",
            Reporter::Ntpq { .. } => "ntpq -c 'rv 0 stratum,leap,rootdelay,rootdisp' -c peers",
            Reporter::NtpCtl { .. } => "ntp-ctl status -f prometheus",
        }
    }

    /// Asks the daemon (each command bounded by [`REPORT_TIMEOUT`]).
    pub fn read(&self) -> Result<DaemonReport, String> {
        match self {
            Reporter::Chronyc { chronyc, socket } => {
                let ask = |what: &str| {
                    let mut c = Command::new(chronyc);
                    c.arg("-h").arg(socket).args(["-n", "-c", what]);
                    output_within(c, REPORT_TIMEOUT)
                };
                let tracking = ask("tracking")?;
                let sources = ask("sources")?;
                parse_chronyc(&tracking, &sources)
            }
            Reporter::Ntpq { ntpq, python_path, ns } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(ntpq).args(["-n", "-c", "rv 0 stratum,leap,rootdelay,rootdisp", "-c", "peers", "127.0.0.1"]);
                c.env("PYTHONPATH", python_path);
                parse_ntpq(&output_within(c, REPORT_TIMEOUT)?)
            }
            Reporter::NtpCtl { ctl, config } => {
                let mut c = Command::new(ctl);
                c.arg("-c").arg(config).args(["status", "-f", "prometheus"]);
                parse_prometheus(&output_within(c, REPORT_TIMEOUT)?)
            }
        }
    }
}

/// Runs `command` and returns its standard output; killed (and an error)
/// after `limit`; an error with its standard error when it fails.
pub fn output_within(mut command: Command, limit: Duration) -> Result<String, String> {
    let name = format!("{:?}", command.get_program());
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} did not answer within {} s", limit.as_secs_f64()));
            }
        }
    }
    // The outputs are small (a few lines): the pipes cannot have filled.
    let out = child.wait_with_output().map_err(|e| format!("{name}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{name} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn log2_of_seconds(s: f64) -> Option<i8> {
    (s > 0.0 && s.is_finite()).then(|| s.log2().round().clamp(-128.0, 127.0) as i8)
}

/// `chronyc -c tracking` (one CSV line: ref ID, name, stratum, ref time,
/// system time, last offset, RMS offset, frequency, residual frequency, skew,
/// root delay, root dispersion, update interval, leap status) and `chronyc -c
/// sources` (mode, state, name, stratum, poll, reach in octal, last RX, last
/// offset adjusted, measured offset, error).
pub fn parse_chronyc(tracking: &str, sources: &str) -> Result<DaemonReport, String> {
    let t: Vec<&str> = tracking.trim().split(',').collect();
    if t.len() < 14 {
        return Err(format!("chronyc -c tracking: expected 14 fields, got {:?}", tracking.trim()));
    }
    let num = |field: &str, what: &str| field.parse::<f64>().map_err(|_| format!("chronyc -c tracking: {what} {field:?} is not a number"));
    let stratum = t[2].parse::<u8>().map_err(|_| format!("chronyc -c tracking: stratum {:?} is not a number", t[2]))?;
    let leap = match t[13] {
        "Normal" => 0,
        "Insert second" => 1,
        "Delete second" => 2,
        _ => 3,
    };
    let mut report = DaemonReport {
        stratum: Some(stratum),
        leap: Some(leap),
        root_delay_s: Some(num(t[10], "root delay")?),
        root_dispersion_s: Some(num(t[11], "root dispersion")?),
        ..DaemonReport::default()
    };
    for (n, line) in sources.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 10 {
            return Err(format!("chronyc -c sources line {}: expected 10 fields, got {line:?}", n + 1));
        }
        let s = SourceReport {
            address: f[2].to_string(),
            selected: Some(f[1] == "*"),
            stratum: f[3].parse().ok(),
            poll_log2: f[4].parse().ok(),
            reach: u8::from_str_radix(f[5], 8).ok(),
            offset_s: f[8].parse().ok(),
            delay_s: None,
        };
        if s.selected == Some(true) {
            report.poll_log2 = s.poll_log2;
        }
        report.sources.push(s);
    }
    Ok(report)
}

/// ntpq's `rv 0 stratum,leap,rootdelay,rootdisp` (`name=value` separated by
/// commas; delays in ms) followed by `peers` (a header, a rule, then one line
/// per association: tally code and remote, refid, st, t, when, poll, reach in
/// octal, delay, offset, jitter in ms).
pub fn parse_ntpq(text: &str) -> Result<DaemonReport, String> {
    let mut report = DaemonReport::default();
    let mut lines = text.lines();
    let mut vars = String::new();
    for l in lines.by_ref() {
        if l.trim_start().starts_with("remote") {
            break;
        }
        vars.push_str(l);
        vars.push(',');
    }
    let mut seen = false;
    for kv in vars.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else { continue };
        let ms = || v.parse::<f64>().ok().map(|x| x * 1e-3);
        match k {
            "stratum" => report.stratum = v.parse().ok(),
            "leap" => report.leap = u8::from_str_radix(v, 2).ok(),
            "rootdelay" => report.root_delay_s = ms(),
            "rootdisp" => report.root_dispersion_s = ms(),
            _ => continue,
        }
        seen = true;
    }
    if !seen {
        return Err(format!("ntpq: no system variables in {:?}", text.trim()));
    }
    for l in lines.filter(|l| !l.starts_with('=') && !l.trim().is_empty()) {
        let tally = l.chars().next().unwrap_or(' ');
        let f: Vec<&str> = l[tally.len_utf8()..].split_whitespace().collect();
        if f.len() < 10 {
            return Err(format!("ntpq peers: expected 10 columns, got {l:?}"));
        }
        let poll = parse_ntpq_interval(f[5]);
        let s = SourceReport {
            address: f[0].to_string(),
            selected: Some(tally == '*' || tally == 'o'),
            stratum: f[2].parse().ok(),
            poll_log2: poll.and_then(log2_of_seconds),
            reach: u8::from_str_radix(f[6], 8).ok(),
            offset_s: f[8].parse::<f64>().ok().map(|x| x * 1e-3),
            delay_s: f[7].parse::<f64>().ok().map(|x| x * 1e-3),
        };
        if s.selected == Some(true) {
            report.poll_log2 = s.poll_log2;
        }
        report.sources.push(s);
    }
    Ok(report)
}

/// ntpq's `when`/`poll` columns: seconds, or with `m`, `h`, `d` suffixes.
fn parse_ntpq_interval(s: &str) -> Option<f64> {
    let (n, unit) = match s.chars().last()? {
        'm' => (&s[..s.len() - 1], 60.0),
        'h' => (&s[..s.len() - 1], 3600.0),
        'd' => (&s[..s.len() - 1], 86400.0),
        _ => (s, 1.0),
    };
    n.parse::<f64>().ok().map(|v| v * unit)
}

/// `ntp-ctl status -f prometheus`: `ntp_system_*` and `ntp_source_*{...,address="..."}` metrics.
pub fn parse_prometheus(text: &str) -> Result<DaemonReport, String> {
    let mut report = DaemonReport::default();
    let mut seen = false;
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((name_labels, value)) = l.rsplit_once(' ') else { continue };
        let Ok(v) = value.parse::<f64>() else { continue };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        match name {
            "ntp_system_stratum" => report.stratum = Some(v as u8),
            "ntp_system_poll_interval_seconds" => report.poll_log2 = log2_of_seconds(v),
            "ntp_system_leap_indicator" => report.leap = Some(v as u8),
            "ntp_system_root_delay_seconds" => report.root_delay_s = Some(v),
            "ntp_system_root_dispersion_seconds" => report.root_dispersion_s = Some(v),
            n if n.starts_with("ntp_source_") => {
                let Some(address) = label(labels, "address") else { continue };
                let i = match report.sources.iter().position(|s| s.address == address) {
                    Some(i) => i,
                    None => {
                        report.sources.push(SourceReport { address: address.to_string(), ..SourceReport::default() });
                        report.sources.len() - 1
                    }
                };
                let s = &mut report.sources[i];
                match n {
                    "ntp_source_poll_interval_seconds" => s.poll_log2 = log2_of_seconds(v),
                    "ntp_source_offset_seconds" => s.offset_s = Some(v),
                    "ntp_source_delay_seconds" => s.delay_s = Some(v),
                    _ => {}
                }
            }
            _ => continue,
        }
        seen = true;
    }
    if seen {
        Ok(report)
    } else {
        Err(format!("ntp-ctl: no ntp_system_ or ntp_source_ metrics in {:?}", text.chars().take(200).collect::<String>()))
    }
}

/// The value of `key="..."` in a Prometheus label list.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real outputs: chronyc 4.3, ntpq of ntpsec 1.2.2 and ntp-ctl of ntpd-rs 1.9.0, each a client of one server.

    #[test]
    fn chronyc_tracking_and_sources() {
        let r = parse_chronyc(
            "0A630001,10.99.0.1,2,1796403164.675029330,-0.000000016,0.000000068,0.000000241,49.804,0.002,0.130,0.000008870,0.000001421,1.0,Normal\n",
            "^,*,10.99.0.1,1,0,377,0,0.000000005,0.000000013,0.000004302\n^,?,10.99.0.3,0,6,0,-,0.0,0.0,0.0\n",
        )
        .unwrap();
        assert_eq!((r.stratum, r.leap, r.poll_log2), (Some(2), Some(0), Some(0)));
        assert_eq!(r.root_delay_s, Some(0.00000887));
        assert_eq!(r.sources.len(), 2);
        assert_eq!(r.sources[0].reach, Some(0o377));
        assert_eq!(r.sources[0].offset_s, Some(0.000000013));
        assert_eq!((r.sources[1].selected, r.sources[1].poll_log2), (Some(false), Some(6)));
        let e = parse_chronyc("506 Cannot talk to daemon", "").unwrap_err();
        assert!(e.contains("expected 14 fields"), "{e}");
        let e = parse_chronyc("0,x,two,0,0,0,0,0,0,0,0,0,0,Normal", "").unwrap_err();
        assert!(e.contains("stratum \"two\""), "{e}");
    }

    #[test]
    fn ntpq_variables_and_peers() {
        let text = "leap=00, stratum=2, rootdelay=0.041,\nrootdisp=42.982\n     remote           refid      st t when poll reach   delay   offset   jitter\n\
            ===============================================================================\n\
            *10.99.0.1       ....             1 u    1   16  377   0.0411 -42.9383   4.0263\n 10.99.0.3       .INIT.          16 u    -  68m    0   0.0000   0.0000   0.0002\n";
        let r = parse_ntpq(text).unwrap();
        assert_eq!((r.stratum, r.leap, r.poll_log2), (Some(2), Some(0), Some(4)));
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
        assert!(close(r.root_dispersion_s, 0.042982), "{r:?}");
        assert_eq!(r.sources[0].address, "10.99.0.1");
        assert!(close(r.sources[0].offset_s, -0.0429383), "{r:?}");
        assert!(close(r.sources[0].delay_s, 0.0000411), "{r:?}");
        assert_eq!((r.sources[1].selected, r.sources[1].poll_log2, r.sources[1].reach), (Some(false), Some(12), Some(0)));
        let r = parse_ntpq("leap=11, stratum=16, rootdelay=0.0, rootdisp=0.12\n").unwrap();
        assert_eq!((r.stratum, r.leap, r.sources.len()), (Some(16), Some(3), 0));
        assert!(parse_ntpq("ntpq: read: Connection refused\n").unwrap_err().contains("no system variables"));
        assert!(parse_ntpq("stratum=2\n  remote refid\n==\n*10.0.0.1 x\n").unwrap_err().contains("expected 10 columns"));
    }

    #[test]
    fn ntp_ctl_prometheus() {
        let text = "# HELP ntp_system_stratum x\nntp_uptime_seconds{version=\"1.9.0\"} 5.98\nntp_system_poll_interval_seconds 1.0000000002328306\n\
            ntp_system_leap_indicator 0\nntp_system_root_delay_seconds 0.0000266\nntp_system_root_dispersion_seconds 8.2\nntp_system_stratum 2\n\
            ntp_source_poll_interval_seconds{name=\"127.0.0.1:11123\",address=\"127.0.0.1:11123\",id=\"1\"} 16.000000003\n\
            ntp_source_offset_seconds{name=\"127.0.0.1:11123\",address=\"127.0.0.1:11123\",id=\"1\"} -0.0052\n\
            ntp_source_delay_seconds{name=\"127.0.0.1:11123\",address=\"127.0.0.1:11123\",id=\"1\"} 0.0000266\n";
        let r = parse_prometheus(text).unwrap();
        assert_eq!((r.stratum, r.leap, r.poll_log2), (Some(2), Some(0), Some(0)));
        assert_eq!(r.sources.len(), 1);
        let s = &r.sources[0];
        assert_eq!((s.address.as_str(), s.poll_log2, s.offset_s, s.delay_s, s.selected), ("127.0.0.1:11123", Some(4), Some(-0.0052), Some(0.0000266), None));
        assert!(parse_prometheus("Could not open socket").unwrap_err().contains("no ntp_system_"));
    }

    #[test]
    fn a_command_that_hangs_is_killed() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let started = Instant::now();
        let e = output_within(c, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not answer within 0.2 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo why >&2; exit 3"]);
        let e = output_within(c, REPORT_TIMEOUT).unwrap_err();
        assert!(e.contains("why"), "{e}");
    }
}
