//! `ntplab bench server` end to end, against a tiny NTP responder thread on
//! 127.0.0.1 that answers only some requests. Assertions are on counts that
//! must add up, with generous bounds on anything that depends on timing, so
//! that a loaded 2-core machine cannot make them fail.

use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::v4::{self, Mode};
use serde_json::Value;
use std::net::UdpSocket;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

/// A loopback NTP server that answers every `every`-th client request (the
/// 1st, `every+1`-th, ...) with a stratum-1 mode-4 reply and ignores the rest.
struct Responder {
    port: u16,
    received: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(every: u64) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the responder");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let received = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, a, s) = (received.clone(), answered.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            // Bounded: 50 ms read timeouts, at most 60 s in all, and the stop flag.
            for _ in 0..1200 {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                // Serve what is queued, then look at the stop flag again.
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let Ok(packet) = v4::Packet::new_checked(&buf[..len]) else { continue };
                    let Ok(request) = v4::Repr::parse(&packet) else { continue };
                    if request.mode != Mode::Client {
                        continue;
                    }
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    if n % every != 0 {
                        continue;
                    }
                    let reply = v4::Repr {
                        mode: Mode::Server,
                        stratum: 1,
                        poll: request.poll,
                        precision: -20,
                        reference_id: ReferenceId::from_ascii("LOCL"),
                        reference_timestamp: NtpTimestamp::from_parts(3_990_000_000, 0),
                        origin_timestamp: request.transmit_timestamp,
                        receive_timestamp: NtpTimestamp::from_parts(3_990_000_001, 0),
                        transmit_timestamp: NtpTimestamp::from_parts(3_990_000_001, 1),
                        ..request
                    };
                    if socket.send_to(&reply.to_bytes(), from).is_ok() {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        });
        Responder { port, received, answered, stop, thread: Some(thread) }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_report(out: &Output) -> Value {
    assert!(out.status.success(), "ntplab failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8 output");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing or not a count in {v}"))
}

#[test]
fn half_answered_load_reports_half_loss() {
    let responder = Responder::start(2);
    let out = ntplab(&["bench", "server", &responder.target(), "--duration", "1", "--format", "json"]);
    let v = json_report(&out);
    let received = responder.received.load(Ordering::SeqCst);
    let answered_by_responder = responder.answered.load(Ordering::SeqCst);
    drop(responder);

    let sent = count(&v, "sent");
    let responses = count(&v, "responses");
    let late = count(&v, "late");
    let lost = count(&v, "lost");
    let kod: u64 = v["kiss_o_death"].as_object().expect("kiss_o_death is an object").values().map(|n| n.as_u64().unwrap()).sum();
    // The identity the report promises, exactly.
    assert_eq!(sent, responses + kod + late + lost, "{v}");
    assert_eq!(kod, 0, "{v}");
    assert_eq!(count(&v, "invalid"), 0, "{v}");
    assert_eq!(count(&v, "unmatched"), 0, "{v}");
    // Even on a slow machine a 64-request window gives dozens of requests a second.
    assert!(sent >= 20, "too few requests sent: {v}");
    // The bench cannot see more replies than the responder sent, nor the
    // responder receive more than was sent.
    assert!(responses + late <= answered_by_responder, "{v}; responder answered {answered_by_responder}");
    assert!(received <= sent, "{v}; responder received {received}");
    // About half answered, half lost (loopback loses nothing by itself).
    let answered = (responses + late) as f64;
    assert!(answered >= 0.35 * sent as f64 && answered <= 0.65 * sent as f64, "{v}");
    let loss = v["loss_percent"].as_f64().unwrap();
    assert!((35.0..=65.0).contains(&loss), "{v}");
    assert!((loss - lost as f64 * 100.0 / sent as f64).abs() < 1e-6, "{v}");
    // Rates are counts over the send phase, which lasted about the 1 s asked for.
    let send_s = v["send_s"].as_f64().unwrap();
    assert!((0.9..=5.0).contains(&send_s), "{v}");
    assert!((v["responses_per_s"].as_f64().unwrap() - responses as f64 / send_s).abs() < 1e-6, "{v}");
    // Round trips: one per response, ordered percentiles.
    let l = &v["latency_us"];
    assert_eq!(count(l, "count"), responses, "{v}");
    let (p50, p99, max) = (l["p50"].as_f64().unwrap(), l["p99"].as_f64().unwrap(), l["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{v}");
    assert!(max < 10_000_000.0, "no round trip can exceed the run: {v}");
}

#[test]
fn count_bounds_the_run_and_text_output_shows_it() {
    let responder = Responder::start(1);
    let out = ntplab(&["bench", "server", &responder.target(), "--count", "25", "--duration", "30"]);
    drop(responder);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sent           25 "), "{text}");
    assert!(text.contains("responses      25 "), "{text}");
    assert!(text.contains("lost           0 (0.000 %)"), "{text}");
    assert!(text.contains("round trip     p50 "), "{text}");
}

#[test]
fn paced_run_sends_at_about_the_rate() {
    let responder = Responder::start(1);
    let out = ntplab(&["bench", "server", &responder.target(), "--rate", "200", "--duration", "1", "--format", "json"]);
    drop(responder);
    let v = json_report(&out);
    let sent = count(&v, "sent");
    // 200 requests are due in 1 s; a stalled machine may send fewer, never more.
    assert!((20..=202).contains(&sent), "{v}");
    assert_eq!(v["window"], Value::Null, "{v}");
    assert_eq!(sent, count(&v, "responses") + count(&v, "late") + count(&v, "lost"), "{v}");
}

#[test]
fn non_loopback_targets_are_refused() {
    for target in ["192.0.2.1:123", "[2001:db8::1]:123"] {
        let out = ntplab(&["bench", "server", target, "--duration", "1"]);
        assert_eq!(out.status.code(), Some(2), "{target}");
        assert!(out.stdout.is_empty(), "nothing is sent or reported");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("not a loopback address") && err.contains("--allow-remote"), "{err}");
    }
}

#[test]
fn out_of_range_settings_are_usage_errors() {
    for args in [["--duration", "61"], ["--rate", "0"], ["--clients", "0"], ["--timeout-ms", "0"]] {
        let mut all = vec!["bench", "server", "127.0.0.1:9"];
        all.extend(args);
        let out = ntplab(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_closed_port_is_reported() {
    // A port that was just free; nothing listens there.
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = ntplab(&["bench", "server", &format!("127.0.0.1:{port}"), "--duration", "0.5", "--format", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no server answered") && err.contains("port-unreachable"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(v["loss_percent"].as_f64(), Some(100.0));
}
