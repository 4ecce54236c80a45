//! A client's exchange and its `sample` event as trace fragments, shared by
//! `client_sample_checks.rs` and the meta-test table in `checks.rs`.

use ntplab_proto::time::{NtpDuration, NtpTime};

pub const START: &str = "2026-01-01T00:00:00Z";
pub const NONCE: u64 = 0x0123_4567_89ab_cdef;

pub fn time(s: f64) -> NtpTime {
    NtpTime::parse_rfc3339(START).unwrap() + NtpDuration::from_seconds_f64(s)
}

pub fn rfc(s: f64) -> String {
    time(s).rfc3339().to_string()
}

/// A 48-octet NTPv4 header as hex: mode byte, stratum, origin/receive/transmit.
pub fn header(li_vn_mode: u8, stratum: u8, org: u64, rx: u64, tx: u64) -> String {
    let mut b = vec![li_vn_mode, stratum, 6, 0xec];
    b.extend([0u8; 8]);
    b.extend(*b"GPS\0");
    b.extend([0u8; 8]);
    for t in [org, rx, tx] {
        b.extend(t.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One delivered datagram; times in seconds since START, `*_local` the clock readings.
pub fn datagram(frame: u64, sent: (f64, f64), received: (f64, f64), src: &str, dst: &str, bytes: &str) -> String {
    format!(
        r#"{{"sent":"{}","sent_t_s":{},"received":"{}","received_t_s":{},"lost":null,"src":"{src}","dst":"{dst}","length":48,"sender_local":"{}","receiver_local":"{}","frame":{frame},"bytes":"{bytes}"}}"#,
        rfc(sent.0),
        sent.0,
        rfc(received.0),
        received.0,
        rfc(sent.1),
        rfc(received.1),
    )
}

/// The exchange: the client's clock is 10 ms ahead, the server's exact. The
/// request leaves at 1 s and takes 1 ms; the server answers 0.5 ms later and
/// the reply takes 3 ms. So T1 = 1.010, T2 = 1.001, T3 = 1.0015, T4 = 1.0145:
/// the formulas give offset -11 ms (true -10 ms, half the asymmetry 1 ms) and
/// delay 4 ms (the true 4.5 ms round trip minus 0.5 ms residence).
pub fn packets() -> String {
    let ts = |s: f64| time(s).to_timestamp().to_bits();
    let request = datagram(1, (1.0, 1.010), (1.001, 1.001), "10.0.0.2:40000", "10.0.0.1:123", &header(0x23, 0, 0, 0, NONCE));
    let reply = datagram(2, (1.0015, 1.0015), (1.0045, 1.0145), "10.0.0.1:123", "10.0.0.2:40000", &header(0x24, 1, NONCE, ts(1.001), ts(1.0015)));
    format!("{request}\n{reply}\n")
}

/// The client's sample event with these figures and this T4 (dispersion
/// 2 µs, no precision given).
pub fn sample_event(offset_s: f64, delay_s: f64, t4: f64) -> String {
    sample_event_with(offset_s, delay_s, t4, 2e-6, None)
}

/// The sample event with this dispersion and, when given, the client's
/// precision (`local_precision_s`).
pub fn sample_event_with(offset_s: f64, delay_s: f64, t4: f64, dispersion_s: f64, local_precision_s: Option<f64>) -> String {
    let precision = local_precision_s.map_or(String::new(), |p| format!(r#","local_precision_s":{p:e}"#));
    format!(
        r#"{{"t_s":1.005,"host":"client","kind":"sample","details":{{"source":"10.0.0.1:123","offset_s":{offset_s},"delay_s":{delay_s},"dispersion_s":{dispersion_s:e},"t1":"{}","t2":"{}","t3":"{}","t4":"{}"{precision}}}}}"#,
        rfc(1.010),
        rfc(1.001),
        rfc(1.0015),
        rfc(t4)
    )
}

/// The server's precision in the reply's header (0xec), seconds.
pub const SERVER_PRECISION_S: f64 = 1.0 / 1048576.0;

/// What a correct client logs for the exchange.
pub fn correct() -> String {
    sample_event(-0.011, 0.004, 1.0145)
}
