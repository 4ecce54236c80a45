//! `ntplab query` end to end against small fake NTP servers on loopback that
//! misbehave on purpose: garbage before the genuine reply, late replies,
//! kiss-o'-death codes, and no server at all.

use ntplab_proto::time::NtpTimestamp;
use ntplab_proto::wire::refid::ReferenceId;
use ntplab_proto::wire::short::NtpShort;
use ntplab_proto::wire::v4::{LeapIndicator, Mode, Repr};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object ({e}): {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), stderr(o))
    })
}

fn now() -> NtpTimestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    NtpTimestamp::from_parts(secs as u32, frac)
}

/// A stratum-1 server reply to `request`, stamped with this host's clock.
fn reply_to(request: &[u8]) -> Vec<u8> {
    let origin = NtpTimestamp::from_bits(u64::from_be_bytes(request[40..48].try_into().unwrap()));
    let t = now();
    Repr {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Server,
        stratum: 1,
        poll: 4,
        precision: -20,
        root_delay: NtpShort::from_bits(0),
        root_dispersion: NtpShort::from_bits(16),
        reference_id: ReferenceId::from_ascii("TEST"),
        reference_timestamp: t,
        origin_timestamp: origin,
        receive_timestamp: t,
        transmit_timestamp: t,
    }
    .to_bytes()
    .to_vec()
}

/// The same reply as a kiss-o'-death with `code`.
fn kiss_reply(request: &[u8], code: &str) -> Vec<u8> {
    let mut b = reply_to(request);
    b[1] = 0; // stratum 0
    b[12..16].copy_from_slice(code.as_bytes());
    b
}

/// A fake server: for the n-th request (0-based) it sends what `script` returns,
/// each datagram after its delay. It serves until `requests` requests came
/// or 10 s passed, and reports how many requests it saw.
fn fake_server<F>(requests: usize, script: F) -> (SocketAddr, JoinHandle<usize>)
where
    F: Fn(usize, &[u8]) -> Vec<(Duration, Vec<u8>)> + Send + 'static,
{
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let addr = sock.local_addr().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        ready_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            let answers = script(seen, &buf[..n]);
            seen += 1;
            let out = sock.try_clone().unwrap();
            // Answers go out from a helper thread so that the next request is
            // read while a late answer is still pending.
            std::thread::spawn(move || {
                for (delay, bytes) in answers {
                    std::thread::sleep(delay);
                    let _ = out.send_to(&bytes, from);
                }
            });
            if seen >= requests {
                // Keep reading for a moment: requests after the last expected one count too.
                std::thread::sleep(Duration::from_millis(300));
                while sock.recv_from(&mut buf).is_ok() {
                    seen += 1;
                }
                break;
            }
        }
        seen
    });
    ready_rx.recv().unwrap();
    (addr, handle)
}

#[test]
fn garbage_then_the_genuine_reply_is_a_sample() {
    // Each request gets a wrong-origin copy of the reply and a short garbage
    // datagram at once, then the genuine reply 50 ms later.
    let (addr, server) = fake_server(3, |_, req| {
        let good = reply_to(req);
        let mut wrong = good.clone();
        wrong[24..32].copy_from_slice(&[0x11; 8]);
        vec![(Duration::ZERO, wrong), (Duration::ZERO, b"garbage".to_vec()), (Duration::from_millis(50), good)]
    });
    let out = ntplab(&["query", &addr.to_string(), "--samples", "3", "--interval", "0", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "{v}");
    for s in samples {
        assert_eq!(s["fate"], "ok", "{s}");
        assert!(s["offset"].as_f64().unwrap().abs() < 0.5, "{s}");
        let discarded: Vec<(String, u64)> = s["discarded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["reason"].as_str().unwrap().to_string(), d["count"].as_u64().unwrap()))
            .collect();
        assert_eq!(discarded, [("bogus".to_string(), 1), ("too_short".to_string(), 1)], "{s}");
    }
    assert_eq!(v["stratum"], 1);
    assert_eq!(v["reference_id"], "TEST");
    assert_eq!(v["failures"].as_array().unwrap().len(), 0);
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn a_late_reply_does_not_poison_the_next_sample() {
    // The first request is answered only after the client gave up on it (the
    // answer arrives during the second exchange); the others at once.
    let (addr, _server) = fake_server(3, |n, req| {
        let delay = if n == 0 { Duration::from_millis(500) } else { Duration::from_millis(150) };
        vec![(delay, reply_to(req))]
    });
    let out = ntplab(&[
        "query", &addr.to_string(), "--samples", "3", "--interval", "0", "--timeout", "0.4", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let fates: Vec<&str> = v["samples"].as_array().unwrap().iter().map(|s| s["fate"].as_str().unwrap()).collect();
    assert_eq!(fates, ["no_reply", "ok", "ok"], "{v}");
    assert_eq!(v["samples"][1]["discarded"][0]["reason"], "late_reply", "{v}");
    assert_eq!(v["samples"][0]["detail"], "no reply within 0.4 s");
    // The text form shows the failed sample too.
    let out = ntplab(&["query", &addr.to_string(), "--samples", "1", "--timeout", "0.2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sample 1: no reply within 0.2 s"), "{text}");
}

#[test]
fn text_output_lists_every_sample() {
    // Sample 1 is answered by an unsynchronized server (LI 3): rejected; sample 2 is fine.
    let (addr, _server) = fake_server(2, |n, req| {
        let mut b = reply_to(req);
        if n == 0 {
            b[0] |= 0xc0;
        }
        vec![(Duration::ZERO, b)]
    });
    let out = ntplab(&["query", &addr.to_string(), "--samples", "2", "--interval", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("best of 1 usable of 2 samples"), "{text}");
    assert!(text.contains("sample 1: reply rejected: unsynchronized (RFC 5905 A.5.1.1)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("sample 2: offset ")), "{text}");
}

#[test]
fn kiss_of_death_stops_the_query() {
    for (code, meaning) in [("RATE", "rate exceeded"), ("DENY", "access denied"), ("RSTR", "local policy")] {
        let (addr, server) = fake_server(1, move |_, req| vec![(Duration::ZERO, kiss_reply(req, code))]);
        let out = ntplab(&["query", &addr.to_string(), "--samples", "4", "--interval", "0", "--format", "json"]);
        assert_eq!(out.status.code(), Some(4), "{code}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("kiss-o'-death {code}")) && err.contains(meaning), "{code}: {err}");
        let v = json(&out);
        assert_eq!(v["kiss_code"], code);
        assert!(v["kiss_meaning"].as_str().unwrap().contains(meaning), "{v}");
        assert_eq!(v["samples"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["samples"][0]["fate"], "kiss");
        assert_eq!(server.join().unwrap(), 1, "{code}: the client must not send again");
    }
}

#[test]
fn a_closed_port_is_reported_at_once() {
    // A port nobody listens on: bind, note it, close.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = ntplab(&["query", &closed.to_string(), "--samples", "4", "--timeout", "30", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("port unreachable: nothing listens on {closed}")), "{}", stderr(&out));
    let v = json(&out);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1, "one exchange, then stop: {v}");
    assert_eq!(samples[0]["fate"], "port_unreachable");
    assert!(v.get("offset").is_none(), "{v}");
}
