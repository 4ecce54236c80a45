//! `ntplab probe` end to end on loopback:
//! - against a deliberately broken responder (the real sans-IO server core
//!   with one fault switched on at a time): the probe fails exactly the
//!   requirements that fault breaks, and nothing when no fault is on;
//! - certification: against `ntplab serve` and chronyd 4.3 the verdicts
//!   match the committed snapshots in tests/probe/ (a regression in ntplab,
//!   in chrony's packaging or in the probe shows as a diff), for NTPv4 and,
//!   with NTS configured (certificates made per run), for NTS-KE and NTS;
//! - refusals: a non-loopback target without --allow-remote, unknown groups,
//!   and the distinct exit status when nothing answers.
//!
//! Every process started here is stopped by its PID; every responder thread
//! ends when its guard drops.

use ntplab_daemon::sysclock::realtime_now;
use ntplab_proto::server::{Server, ServerAction, ServerClockState, ServerConfig};
use ntplab_proto::time::NtpDuration;
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::LeapIndicator;
mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{free_port, ntplab, start_chronyd_server, start_ntplab_server, temp_dir, wait_for_udp_answer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One fault of the scripted responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The origin timestamp is zeroed instead of copied.
    NoOriginCopy,
    /// 64 octets are appended to every reply.
    Amplify,
    /// Every reply says version 4.
    WrongVersion,
    /// Receive and transmit timestamps swapped (receive > transmit).
    ReceiveAfterTransmit,
    /// Mode-6 queries get a 468-octet answer.
    AnswersMode6,
    /// Requests of version 0, 6 or 7 are answered like version 4.
    AnswersBadVersions,
    /// Datagrams shorter than a header are answered with a header.
    AnswersTruncated,
    /// Over the limit, every request gets a RATE kiss-o'-death.
    KodUnlimited,
    /// Over the limit, one kiss-o'-death with a non-ASCII kiss code, then silence.
    KodMalformed,
    /// Stratum 16 on the wire.
    Stratum16,
    /// Reference ID INIT.
    RefidInit,
    /// LI 1 (leap second announced) on any day.
    LeapAnnounced,
    /// LI 3 in time replies at stratum 1.
    UnsynchronizedLi,
    /// Requests with a malformed extension area are answered.
    AnswersMalformedEf,
}

/// Stops the responder thread on drop.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn clock_state(fault: Fault) -> ServerClockState {
    ServerClockState {
        leap: if fault == Fault::LeapAnnounced { LeapIndicator::Insert } else { LeapIndicator::NoWarning },
        stratum: 1,
        precision_log2: -20,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::from_nanos(1_000_000),
        reference_id: ReferenceId::from_ascii(if fault == Fault::RefidInit { "INIT" } else { "GPS" }),
        reference_time: realtime_now().checked_add(NtpDuration::from_nanos(-1_000_000_000)),
        inserted_second_in_progress: false,
    }
}

fn kod(request: &[u8], code: [u8; 4]) -> Vec<u8> {
    let mut k = vec![0u8; 48];
    k[0] = 0xE4; // LI 3, version 4, mode 4
    k[12..16].copy_from_slice(&code);
    k[24..32].copy_from_slice(&request[40..48]);
    k
}

/// Starts the scripted responder on an ephemeral loopback port. It runs the
/// real NTPv4 server core (rate limiting off) and applies `fault` to what it
/// sends; it stops when the returned guard drops (or after 120 s).
fn responder(fault: Fault) -> Responder {
    let std_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    std_socket.set_nonblocking(true).unwrap();
    let addr = std_socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
            let mut config = ServerConfig::default();
            config.rate_limit.enabled = false;
            let mut server = Server::new(config, [7; 16]);
            let start = Instant::now();
            let mut recent: Vec<Instant> = Vec::new();
            let mut kod_sent_at: Option<Instant> = None;
            let mut buf = vec![0u8; 65_536];
            let mut out = vec![0u8; 2048];
            while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
                let Ok(Ok((n, from))) = tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await else { continue };
                let req = &buf[..n];
                let rx = realtime_now();
                let clock = clock_state(fault);
                // The limiter of the KoD faults: more than 8 requests within 40 ms.
                let now = Instant::now();
                recent.retain(|t| now.duration_since(*t) < Duration::from_millis(40));
                recent.push(now);
                let over = recent.len() > 8 && n >= 48;
                let reply: Option<Vec<u8>> = match fault {
                    Fault::KodUnlimited if over => Some(kod(req, *b"RATE")),
                    Fault::KodMalformed if over => {
                        let first = kod_sent_at.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5));
                        if first {
                            kod_sent_at = Some(now);
                        }
                        first.then(|| kod(req, [1, 2, 3, 4]))
                    }
                    Fault::AnswersMode6 if n >= 2 && req[0] & 7 == 6 => Some(vec![0x96; 468]),
                    Fault::AnswersTruncated if (1..48).contains(&n) => {
                        let mut r = vec![0u8; 48];
                        r[0] = 0x24;
                        r[1] = 1;
                        Some(r)
                    }
                    _ => {
                        let mut request = req.to_vec();
                        let version = (req.first().copied().unwrap_or(0) >> 3) & 7;
                        let bad_version = n >= 48 && matches!(version, 0 | 6 | 7);
                        if fault == Fault::AnswersBadVersions && bad_version {
                            // Judge it as a version-4 header.
                            request[0] = (request[0] & 0xC7) | (4 << 3);
                        }
                        if fault == Fault::AnswersMalformedEf {
                            // Judge the header alone, whatever follows it.
                            request.truncate(48);
                        }
                        match server.handle(start.elapsed().as_nanos() as u64, from, &request, rx, &clock, &mut out) {
                            ServerAction::Respond(resp) => {
                                let _ = server.finish_response(&resp, &mut out, realtime_now(), &clock);
                                let mut r = out[..resp.len].to_vec();
                                if fault == Fault::AnswersBadVersions && bad_version {
                                    r[0] = (r[0] & 0xC7) | (version << 3);
                                }
                                Some(r)
                            }
                            ServerAction::Ignore(_) => None,
                        }
                    }
                };
                let Some(mut r) = reply else { continue };
                match fault {
                    Fault::NoOriginCopy => r[24..32].fill(0),
                    Fault::Amplify => r.extend_from_slice(&[0u8; 64]),
                    Fault::WrongVersion => r[0] = (r[0] & 0xC7) | (4 << 3),
                    Fault::ReceiveAfterTransmit if r[1] != 0 => {
                        let rx: [u8; 8] = r[32..40].try_into().unwrap();
                        r.copy_within(40..48, 32);
                        r[40..48].copy_from_slice(&rx);
                    }
                    Fault::Stratum16 => r[1] = 16,
                    Fault::UnsynchronizedLi if r[1] != 0 => r[0] |= 0xC0,
                    _ => {}
                }
                let _ = socket.send_to(&r, from).await;
            }
        });
    });
    Responder { addr, stop, thread: Some(thread) }
}

/// Probes `addr` quickly (rate 100/s, 0.2 s timeout); returns the exit code
/// and the JSON. Only the ntpv4 group unless `extra` names groups (`--only`).
fn probe(addr: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec!["probe", addr, "--format", "json", "--rate", "100", "--timeout", "0.2"];
    if !extra.contains(&"--only") {
        args.extend(["--only", "ntpv4"]);
    }
    args.extend_from_slice(extra);
    let out = ntplab(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {stderr}"));
    (out.status.code(), v, stderr)
}

fn failed(v: &serde_json::Value) -> BTreeSet<String> {
    v["requirements"].as_array().unwrap().iter().filter(|q| q["verdict"] == "fail").map(|q| q["id"].as_str().unwrap().to_string()).collect()
}

fn verdict(v: &serde_json::Value, id: &str) -> String {
    v["requirements"].as_array().unwrap().iter().find(|q| q["id"] == id).map(|q| q["verdict"].as_str().unwrap().to_string()).unwrap()
}

/// Probes a responder with `fault` and checks the failed requirements are exactly `expected`.
fn fails_exactly(fault: Fault, expected: &[&str]) -> serde_json::Value {
    let r = responder(fault);
    let (code, v, stderr) = probe(&r.addr.to_string(), &[]);
    let got = failed(&v);
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "{fault:?}: failed requirements differ\n{stderr}");
    let must = v["must_failures"].as_array().unwrap().len();
    assert_eq!(code, Some(if must > 0 { 1 } else { 0 }), "{fault:?}: exit status with {must} MUST failure(s): {stderr}");
    v
}

#[test]
fn a_faultless_responder_fails_nothing() {
    let v = fails_exactly(Fault::None, &[]);
    assert_eq!(verdict(&v, "R9769-2-server-detect"), "pass", "the core answers interleaved requests");
    assert_eq!(verdict(&v, "R-SRV-ratelimit"), "pass");
}

#[test]
fn a_responder_that_does_not_copy_the_origin_fails_the_echo_rules() {
    // No reply can be matched to its request, so every rule that needs an
    // answered request fails or goes unexercised.
    fails_exactly(Fault::NoOriginCopy, &["R5905-3-mode-map", "R5905-8-server-echo", "R5905-9.2-version"]);
}

#[test]
fn an_amplifying_responder_fails_the_amplification_rule() {
    fails_exactly(Fault::Amplify, &["R-SRV-ratelimit"]);
}

#[test]
fn a_responder_with_the_wrong_version_fails_version_copy() {
    fails_exactly(Fault::WrongVersion, &["R5905-A.5.3-vn-copy"]);
}

#[test]
fn a_responder_with_receive_after_transmit_fails_the_echo_rule() {
    // The unknown-field case judges its reply with the same echo checks.
    fails_exactly(Fault::ReceiveAfterTransmit, &["R5905-8-server-echo", "R7822-unknown-ef"]);
}

#[test]
fn a_responder_answering_mode_6_fails_mode6_and_amplification() {
    fails_exactly(Fault::AnswersMode6, &["R8633-3.4-mode6", "R-SRV-ratelimit"]);
}

#[test]
fn a_responder_answering_bad_versions_fails_the_version_rule() {
    fails_exactly(Fault::AnswersBadVersions, &["R5905-9.2-version"]);
}

#[test]
fn a_responder_answering_truncated_datagrams_fails_the_header_rule() {
    // The 12-octet mode-6 query is short too: answering it breaks RFC 8633 §3.4.
    fails_exactly(Fault::AnswersTruncated, &["R5905-7.3-hdr48", "R-SRV-ratelimit", "R8633-3.4-mode6"]);
}

#[test]
fn a_responder_answering_malformed_extensions_fails_the_extension_rules() {
    fails_exactly(Fault::AnswersMalformedEf, &["R5905-9.2-ef-fuzz", "R7822-3-len-min", "R5905-7.3-hdr48"]);
}

#[test]
fn a_responder_sending_a_kod_for_every_refused_request_fails_the_rate_rule() {
    let v = fails_exactly(Fault::KodUnlimited, &["R-SRV-ratelimit"]);
    assert_eq!(verdict(&v, "R5905-7.4-kod-format"), "pass");
}

#[test]
fn a_responder_sending_a_malformed_kod_fails_the_kod_format() {
    let v = fails_exactly(Fault::KodMalformed, &["R5905-7.4-kod-format"]);
    assert_eq!(verdict(&v, "R-SRV-ratelimit"), "pass");
}

#[test]
fn a_responder_sending_stratum_16_fails_the_stratum_rule() {
    fails_exactly(Fault::Stratum16, &["R5905-7.3-stratum-tx"]);
}

#[test]
fn a_responder_with_reference_id_init_fails_noinit() {
    fails_exactly(Fault::RefidInit, &["R8633-5.2-noinit"]);
}

#[test]
fn a_responder_with_li_3_at_stratum_1_fails_the_unsynchronized_rule() {
    fails_exactly(Fault::UnsynchronizedLi, &["R5905-11.1-initial"]);
}

#[test]
fn a_leap_announced_outside_the_last_day_of_the_month_fails() {
    let now = realtime_now();
    let last_day = now.checked_add(NtpDuration::from_nanos(86_400_000_000_000)).unwrap().to_civil().day == 1;
    // On the last day of a month the announcement is right.
    let v = fails_exactly(Fault::LeapAnnounced, if last_day { &[] } else { &["R8633-3.7-last-day"] });
    assert_eq!(verdict(&v, "R8633-3.7-last-day"), if last_day { "pass" } else { "fail" });
}

#[test]
fn a_remote_target_needs_allow_remote_and_unknown_groups_are_named() {
    let out = ntplab(&["probe", "192.0.2.1:123"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a loopback address") && err.contains("--allow-remote"), "{err}");
    let out = ntplab(&["probe", "127.0.0.1:9", "--only", "ntpv4,ntp9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown group \"ntp9\"") && err.contains("nts-ke"), "{err}");
    let out = ntplab(&["probe", "127.0.0.1:9", "--only", "nts", "--nts-ke", "192.0.2.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--nts-ke 192.0.2.1:4460 is not a loopback address"), "{err}");
}

#[test]
fn nothing_listening_is_exit_status_5() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, v, err) = probe(&format!("127.0.0.1:{port}"), &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("no reply at all") && err.contains("port unreachable"), "{err}");
    assert_eq!(v["received"], 0);
}

/// Probes with a report directory and compares `verdicts.txt` with the
/// committed snapshot `tests/probe/NAME.verdicts`.
fn certify(port: u16, name: &str, expected_code: i32) {
    certify_with(port, name, expected_code, &["--only", "ntpv4,ntpv5"]);
}

fn certify_with(port: u16, name: &str, expected_code: i32, extra: &[&str]) {
    let dir = temp_dir(&format!("probe-{name}"));
    let mut args = vec!["--report", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, _v, err) = probe(&format!("127.0.0.1:{port}"), &args);
    assert_eq!(code, Some(expected_code), "{err}");
    let got = std::fs::read_to_string(dir.join("verdicts.txt")).unwrap();
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe").join(format!("{name}.verdicts"));
    let want = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(got, want, "verdicts of {name} differ from {} (the report is in {})", snapshot.display(), dir.display());
    let first_case = if extra.contains(&"nts-ke,nts") { "evidence/ke-minimal.txt" } else { "evidence/client-mode.txt" };
    for f in ["summary.txt", "report.json", "junit.xml", "probe.pcap", first_case] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn certification_ntplab_serve() {
    let port = free_port();
    let _server = start_ntplab_server(port);
    certify(port, "ntplab-serve", 0);
}

#[test]
fn certification_chronyd() {
    let dir = temp_dir("probe-chronyd-run");
    let port = free_port();
    let _server = start_chronyd_server(&dir, port);
    wait_for_udp_answer(port);
    // chrony's `local` reference ID 127.127.1.1 at stratum 1 breaks RFC 5905 §7.3: exit 1.
    certify(port, "chronyd-4.3", 1);
    std::fs::remove_dir_all(&dir).ok();
}

/// A private directory with a self-signed certificate for localhost and
/// 127.0.0.1 (`cert.pem`, `key.pem`).
fn nts_pki(name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    dir
}

fn wait_for_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens for NTS-KE on 127.0.0.1:{port} after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Probes the NTS-KE and NTS groups of a server on `ntp`/`ke` and compares
/// the verdicts with `tests/probe/NAME.verdicts` (certificates trusted).
fn certify_nts(dir: &Path, ntp: u16, ke: u16, name: &str, expected_code: i32) {
    let ke = format!("127.0.0.1:{ke}");
    let trusted = dir.join("cert.pem");
    certify_with(ntp, name, expected_code, &["--only", "nts-ke,nts", "--nts-ke", &ke, "--trusted-certificates", trusted.to_str().unwrap()]);
}

#[test]
fn certification_ntplab_serve_nts() {
    let dir = nts_pki("probe-serve-nts");
    let (ntp, ke) = (free_port(), tcp_port());
    let conf = dir.join("serve.toml");
    let pem = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        &conf,
        format!("listen = [\"127.0.0.1:{ntp}\"]\n[local]\nstratum = 1\n[nts]\ncertificate = {:?}\nkey = {:?}\nke_listen = [\"127.0.0.1:{ke}\"]\n", pem("cert.pem"), pem("key.pem")),
    )
    .unwrap();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--duration", "120", "--config", conf.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ntplab serve");
    let _guard = support::Guard(server);
    wait_for_tcp(ke);
    wait_for_udp_answer(ntp);
    certify_nts(&dir, ntp, ke, "ntplab-serve-nts", 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn certification_chronyd_nts() {
    let dir = nts_pki("probe-chronyd-nts");
    let (ntp, ke) = (free_port(), tcp_port());
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {ntp}\nbindaddress 127.0.0.1\ncmdport 0\nlocal stratum 1\nallow 127.0.0.1\nntsserverkey {d}/key.pem\nntsservercert {d}/cert.pem\nntsport {ke}\n\
             ntsdumpdir {d}\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // -x: never touch the clock; setpriv: and no CAP_SYS_TIME to do it with.
    let child = std::process::Command::new("setpriv")
        .args(["--inh-caps=-sys_time", "--bounding-set=-sys_time", "chronyd", "-n", "-x", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chronyd");
    let _guard = support::Guard(child);
    wait_for_tcp(ke);
    wait_for_udp_answer(ntp);
    certify_nts(&dir, ntp, ke, "chronyd-4.3-nts", 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_pcap_reads_back_with_one_frame_per_datagram() {
    let r = responder(Fault::None);
    let dir = temp_dir("probe-pcap");
    let (code, v, err) = probe(&r.addr.to_string(), &["--report", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let file = std::fs::File::open(dir.join("probe.pcap")).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut frames = 0;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        // Ethernet 14 + IPv4 20 + UDP 8 before the NTP payload.
        assert!(p.data.len() > 42);
        frames += 1;
    }
    let n = v["sent"].as_u64().unwrap() + v["received"].as_u64().unwrap();
    assert_eq!(frames, n);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ntplab_serve_with_rate_limiting_passes_the_burst_case() {
    // interval 0.05 s, burst 8: the probe's paced traffic (10/s) stays under
    // the limit, its burst of 16 does not; the KoD bucket (one per 0.05 s)
    // lets one RATE through.
    let dir = temp_dir("probe-ratelimit");
    let port = free_port();
    let conf = dir.join("serve.toml");
    std::fs::write(&conf, format!("listen = [\"127.0.0.1:{port}\"]\n\n[local]\nstratum = 1\n\n[rate_limit]\ninterval_s_min = 0.05\nburst = 8\n")).unwrap();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_ntplab"))
        .args(["serve", "--config", conf.to_str().unwrap(), "--duration", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ntplab serve");
    let _server = support::Guard(server);
    wait_for_udp_answer(port);
    let out = ntplab(&["probe", &format!("127.0.0.1:{port}"), "--format", "json", "--rate", "10", "--timeout", "0.2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict(&v, "R5905-7.4-kod-format"), "pass");
    assert_eq!(verdict(&v, "R-SRV-ratelimit"), "pass");
    let burst = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == "rate-limit-burst").unwrap();
    let reason = burst["findings"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("8 of 16 answered with time, 1 kiss-o'-death(s), 7 dropped"), "{reason}");
    std::fs::remove_dir_all(&dir).ok();
}
