//! The metrics the simulator counts from a daemon's own events
//! (`kiss_codes`, `ntsn`, `selections`, `max_stratum`;
//! [`ntplab_sim::run::DaemonTally`]), for lab hosts whose program writes no
//! tally (chronyd, ntpsec, ntpd-rs): the kiss codes from the lab's capture,
//! chronyd's selections from its log ([`chrony_selections`]), the other
//! selections and the stratum served from the daemon's periodic reports.
//!
//! Kiss codes: the simulator counts the kiss-o'-death replies its daemon
//! *receives* and takes as answers ([`ntplab_proto::source`]'s reply
//! checks: a server-mode NTPv1-4 reply with well-formed extension fields,
//! from the address the request went to, echoing the transmit timestamp of
//! the source's one outstanding request (or, answering an interleaved
//! request, its receive timestamp), not a duplicate of the last answer, no
//! crypto-NAK, stratum 0 with a non-zero reference ID; none after the
//! source's DENY or RSTR). [`kisses_received`] applies the same checks to
//! the datagrams the capture saw the host send and receive, whatever
//! program runs there: exact, but for what a capture cannot see (an NTS
//! client's check of the Unique Identifier, which the origin binding
//! already implies for a kiss that echoes the request).

use crate::emulator::Datagram;
use crate::reports::DaemonReport;
use ntplab_proto::time::{NtpTime, NtpTimestamp};
use ntplab_proto::wire::ext::ExtensionArea;
use ntplab_proto::wire::refid::KissCode;
use ntplab_proto::wire::v4::{Mode, Packet, Repr};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Kiss-o'-death replies a host received and took as answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kisses {
    /// Any code, NTSN included (the simulator's `kiss_codes`).
    pub kiss_codes: u64,
    /// NTSN (the simulator's `ntsn`).
    pub ntsn: u64,
}

/// What a client knows of one source, as ntplab's source keeps it.
#[derive(Debug, Default)]
struct SourceState {
    /// The transmit timestamp of the request awaiting its answer, and its
    /// receive field when the request was interleaved (non-zero origin).
    outstanding: Option<(NtpTimestamp, Option<NtpTimestamp>)>,
    /// Transmit and receive timestamps of the last answer.
    last_answer: Option<(NtpTimestamp, NtpTimestamp)>,
    /// Sent DENY or RSTR: the source is demobilized.
    demobilized: bool,
}

/// The kiss codes host `host` received, counted from the capture as the
/// simulator's daemon counts them (module docs): its NTPv4 requests (mode
/// 3) in the order it sent them, the replies addressed to it in the order
/// they were delivered; lost datagrams never arrived. Datagrams that are no
/// NTP packets count for nothing.
pub fn kisses_received(host: IpAddr, datagrams: &[Datagram]) -> Kisses {
    // (real time, 0 = sent by the host / 1 = delivered to it, index)
    let mut seen: Vec<(i128, u8, usize)> = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        if d.src.ip() == host && !d.copy {
            seen.push((d.sent_ns, 0, i));
        }
        if let (true, Some(at)) = (d.dst.ip() == host, d.delivered_ns) {
            seen.push((at, 1, i));
        }
    }
    seen.sort();
    let mut sources: BTreeMap<SocketAddr, SourceState> = BTreeMap::new();
    let mut out = Kisses::default();
    for (_, way, i) in seen {
        let d = &datagrams[i];
        if way == 0 {
            if let Some((xmt, rx)) = request(&d.payload) {
                sources.entry(d.dst).or_default().outstanding = Some((xmt, rx));
            }
            continue;
        }
        let Some(s) = sources.get_mut(&d.src) else { continue };
        match answer(s, &d.payload) {
            Some(KissCode::Ntsn) => {
                out.kiss_codes += 1;
                out.ntsn += 1;
            }
            Some(code) => {
                out.kiss_codes += 1;
                s.demobilized |= matches!(code, KissCode::Deny | KissCode::Rstr);
            }
            None => {}
        }
    }
    out
}

/// An NTPv1-4 client request's transmit timestamp, and its receive field
/// when it is interleaved (non-zero origin and receive fields).
fn request(payload: &[u8]) -> Option<(NtpTimestamp, Option<NtpTimestamp>)> {
    let repr = Repr::parse(&Packet::new_checked(payload).ok()?).ok()?;
    if !(1..=4).contains(&repr.version) || repr.mode != Mode::Client {
        return None;
    }
    let interleaved = !repr.origin_timestamp.is_zero() && !repr.receive_timestamp.is_zero();
    Some((repr.transmit_timestamp, interleaved.then_some(repr.receive_timestamp)))
}

/// A reply from source `s` taken as ntplab's source takes it: its kiss
/// code when it is a kiss-o'-death answering the outstanding request.
/// Updates `s` (the answer clears the outstanding request).
fn answer(s: &mut SourceState, payload: &[u8]) -> Option<KissCode> {
    let packet = Packet::new_checked(payload).ok()?;
    let repr = Repr::parse(&packet).ok()?;
    if !(1..=4).contains(&repr.version) || repr.mode != Mode::Server || ExtensionArea::parse(packet.payload()).error.is_some() || s.demobilized {
        return None;
    }
    let interleaved_answer = s.outstanding.and_then(|(_, rx)| rx).is_some();
    if !repr.transmit_timestamp.is_zero()
        && s.last_answer.is_some_and(|(x, r)| x == repr.transmit_timestamp && (!interleaved_answer || r == repr.receive_timestamp))
    {
        return None; // a duplicate
    }
    if repr.origin_timestamp.is_zero() {
        return None;
    }
    let (xmt, rx) = s.outstanding?;
    if repr.origin_timestamp != xmt && rx != Some(repr.origin_timestamp) {
        return None; // bogus: not the answer to the outstanding request
    }
    s.outstanding = None;
    s.last_answer = Some((repr.transmit_timestamp, repr.receive_timestamp));
    if packet.payload().len() == 4 || repr.stratum != 0 || repr.reference_id.to_u32() == 0 {
        return None; // a crypto-NAK, time, or an unsynchronized server's answer
    }
    Some(repr.reference_id.kiss_code())
}

/// The selections and the stratum served, as the daemon's reports say
/// them at each reading (real time, Unix ns): a selection counts when a
/// report names a selected source other than the last report that named
/// one or none (as the simulator counts a system peer other than the one
/// it had, none between included); the stratum served is the reported
/// stratum when the daemon says it is synchronized (leap indicator not 3,
/// stratum 1 to 15), else none. A reading that failed says nothing.
/// Sampled at the report period: selections between two readings, and a
/// stratum held for less than a period, are not seen.
pub fn from_reports<'a>(readings: impl IntoIterator<Item = (i128, &'a DaemonReport)>) -> Vec<(i128, u64, Option<u8>)> {
    let mut selected: Option<String> = None;
    let mut selections = 0u64;
    let mut out = Vec::new();
    for (at, r) in readings {
        let now: BTreeSet<&str> = r.sources.iter().filter(|s| s.selected == Some(true)).map(|s| s.address.as_str()).collect();
        let now = now.into_iter().next().map(str::to_string);
        if now.is_some() && now != selected {
            selections += 1;
        }
        selected = now;
        let served = r.stratum.filter(|s| (1..16).contains(s) && r.leap != Some(3));
        out.push((at, selections, served));
    }
    out
}

/// What a line of chronyd's log says about its source selection. chronyd
/// run in the foreground (`-d`) writes each message to stderr as
/// `YYYY-MM-DDTHH:MM:SSZ MESSAGE`, the time read from its own clock (in the
/// lab the host's virtual clock, through the shim's `time`) to the second.
/// chrony 4.3's sources.c (`SRC_SelectSource`) logs "Selected source NAME"
/// (NAME the address, a refclock's name, or "ADDRESS (HOSTNAME)") exactly
/// when the source it selects is not the one it had selected, none
/// included, and "Can't synchronise: WHY" when it loses its selection;
/// main.c logs "chronyd version V starting" first thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChronyLine {
    /// "chronyd version ... starting": a start of the daemon.
    Started,
    /// "Selected source NAME": the source's name as logged (its first word).
    Selected(String),
    /// "Can't synchronise: ...": no source selected.
    Lost,
}

/// A chronyd log line's time (the Unix second its clock read) and what it
/// says about the selection; `None` for other lines.
pub fn chrony_line(line: &str) -> Option<(i64, ChronyLine)> {
    let (time, message) = line.split_once(' ')?;
    if !time.ends_with('Z') {
        return None;
    }
    let (secs, _) = NtpTime::parse_rfc3339(time).ok()?.to_unix();
    if let Some(name) = message.strip_prefix("Selected source ") {
        let name = name.split_whitespace().next()?;
        return Some((secs, ChronyLine::Selected(name.to_string())));
    }
    if message.starts_with("Can't synchronise: ") {
        return Some((secs, ChronyLine::Lost));
    }
    (message.starts_with("chronyd version ") && message.contains(" starting")).then_some((secs, ChronyLine::Started))
}

/// The clock updates chronyd's log `log` says `maxchange` refused: chrony
/// 4.3's reference.c (`is_offset_ok`) logs "Adjustment of X seconds exceeds
/// the allowed maximum of Y seconds (ignored)" for each one it skips and
/// "(exiting)" for the one that ends it, as the simulator's daemon counts
/// them (every refusal, the last included).
pub fn chrony_max_change_refusals(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(time, message)| {
            time.ends_with('Z') && message.starts_with("Adjustment of ") && message.contains(" exceeds the allowed maximum of ")
        })
        .count() as u64
}

/// The selections chronyd's log `log` says it made, as the simulator counts
/// them (a system peer other than the one it had, none between included):
/// within one start of the daemon, one per "Selected source" line
/// ([`ChronyLine`]: chronyd writes one exactly then, also after it dropped
/// its source without a word, as it does when the source it would switch
/// to has no new sample yet). The simulator's host keeps its system peer
/// while its daemon is stopped and started again, so the first selection
/// of a later start counts only when it names another source than the
/// last one selected before the stop (or the daemon had lost it). The
/// running count at each counted line, placed at the real instant (Unix
/// ns) `real_of` gives the line's virtual second (never before the line
/// before it: a clock stepped back does not reorder them).
pub fn chrony_selections(log: &str, real_of: impl Fn(i64) -> i128) -> Vec<(i128, u64)> {
    let mut out: Vec<(i128, u64)> = Vec::new();
    let (mut selected, mut restarted, mut starts) = (None::<String>, false, 0);
    for (secs, line) in log.lines().filter_map(chrony_line) {
        match line {
            ChronyLine::Started => {
                starts += 1;
                restarted = starts > 1;
            }
            ChronyLine::Lost => {
                selected = None;
                restarted = false;
            }
            ChronyLine::Selected(name) => {
                if !(restarted && selected.as_ref() == Some(&name)) {
                    let at = real_of(secs).max(out.last().map_or(i128::MIN, |l| l.0));
                    out.push((at, out.last().map_or(0, |l| l.1) + 1));
                }
                (selected, restarted) = (Some(name), false);
            }
        }
    }
    out
}

/// The selections counted from a daemon's log (`selections`, a running
/// count at real instants) in place of the sampled ones of
/// [`from_reports`]' `reports`, whose stratum served stays: the points of
/// both, in time order, each with the count and the stratum in force then
/// (no selection and nothing served before the first of each).
pub fn with_selections(reports: &[(i128, u64, Option<u8>)], selections: &[(i128, u64)]) -> Vec<(i128, u64, Option<u8>)> {
    let mut times: Vec<i128> = reports.iter().map(|r| r.0).chain(selections.iter().map(|s| s.0)).collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .map(|t| {
            let count = selections.iter().rev().find(|s| s.0 <= t).map_or(0, |s| s.1);
            let served = reports.iter().rev().find(|r| r.0 <= t).and_then(|r| r.2);
            (t, count, served)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::SourceReport;

    const H: &str = "10.0.0.2:40000";
    const S: &str = "10.0.0.1:123";

    fn packet(mode: u8, stratum: u8, refid: &[u8; 4], origin: u64, receive: u64, transmit: u64) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = (4 << 3) | mode;
        p[1] = stratum;
        p[12..16].copy_from_slice(refid);
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&receive.to_be_bytes());
        p[40..48].copy_from_slice(&transmit.to_be_bytes());
        p
    }

    fn d(at: i128, src: &str, dst: &str, payload: Vec<u8>) -> Datagram {
        Datagram { sent_ns: at, delivered_ns: Some(at + 1), lost: None, copy: false, src: src.parse().unwrap(), dst: dst.parse().unwrap(), payload }
    }
    fn req(at: i128, xmt: u64) -> Datagram {
        d(at, H, S, packet(3, 0, &[0; 4], 0, 0, xmt))
    }
    fn kiss(at: i128, code: &[u8; 4], origin: u64) -> Datagram {
        d(at, S, H, packet(4, 0, code, origin, 0, 0))
    }
    fn count(ds: &[Datagram]) -> Kisses {
        kisses_received("10.0.0.2".parse().unwrap(), ds)
    }

    #[test]
    fn kisses_answering_the_hosts_requests_count() {
        let k = count(&[req(0, 11), kiss(10, b"RATE", 11), req(20, 12), kiss(30, b"NTSN", 12), req(40, 13), d(50, S, H, packet(4, 2, b"GPS\0", 13, 5, 6))]);
        assert_eq!(k, Kisses { kiss_codes: 2, ntsn: 1 });
        // A time reply counts nothing; nor an unsynchronized server's (stratum 0, no code).
        assert_eq!(count(&[req(0, 11), d(5, S, H, packet(4, 0, &[0; 4], 11, 0, 0))]), Kisses::default());
    }

    #[test]
    fn kisses_that_answer_nothing_do_not_count() {
        // Unsolicited, an old request's, a second answer to one request (a
        // duplicate delivered twice), one from another address, one lost,
        // one sent by the host rather than to it, a request rather than a reply.
        let mut dup = kiss(15, b"RATE", 12);
        dup.copy = true;
        let mut lost = kiss(40, b"RATE", 13);
        (lost.delivered_ns, lost.lost) = (None, Some("loss"));
        let ds = [
            kiss(1, b"RATE", 99),
            req(2, 11),
            req(3, 12),
            kiss(10, b"RATE", 11),
            kiss(12, b"RATE", 12),
            dup,
            req(20, 13),
            d(21, "10.0.0.9:123", H, packet(4, 0, b"RATE", 13, 0, 0)),
            lost,
            d(41, H, S, packet(4, 0, b"RATE", 13, 0, 0)),
            d(42, S, H, packet(3, 0, b"RATE", 13, 0, 0)),
        ];
        assert_eq!(count(&ds), Kisses { kiss_codes: 1, ntsn: 0 });
        // A reply delivered before the request was sent answers nothing.
        assert_eq!(count(&[kiss(0, b"RATE", 11), req(5, 11)]), Kisses::default());
    }

    #[test]
    fn after_deny_or_rstr_the_source_is_demobilized() {
        for code in [b"DENY", b"RSTR"] {
            let ds = [req(0, 1), kiss(1, code, 1), req(10, 2), kiss(11, code, 2), req(20, 3), kiss(21, b"RATE", 3)];
            assert_eq!(count(&ds), Kisses { kiss_codes: 1, ntsn: 0 });
        }
        // A kiss of another kind (informational) leaves it be.
        assert_eq!(count(&[req(0, 1), kiss(1, b"XXXX", 1), req(10, 2), kiss(11, b"RATE", 2)]), Kisses { kiss_codes: 2, ntsn: 0 });
    }

    #[test]
    fn interleaved_answers_crypto_naks_and_bad_input() {
        // An interleaved request (origin and receive set): its answer echoes the receive field.
        let ds = [d(0, H, S, packet(3, 0, &[0; 4], 7, 8, 9)), kiss(5, b"RATE", 8)];
        assert_eq!(count(&ds).kiss_codes, 1);
        // A crypto-NAK (4 octets after the header) is no kiss.
        let mut nak = packet(4, 0, b"RATE", 1, 0, 0);
        nak.extend_from_slice(&[0; 4]);
        assert_eq!(count(&[req(0, 1), d(1, S, H, nak)]), Kisses::default());
        // Short, empty, NTPv5 and garbage datagrams count nothing and do not panic.
        let mut v5 = packet(4, 0, b"RATE", 1, 0, 0);
        v5[0] = (5 << 3) | 4;
        for junk in [vec![], vec![0x23; 10], v5, vec![0xff; 300]] {
            assert_eq!(count(&[req(0, 1), d(1, S, H, junk)]), Kisses::default());
        }
    }

    fn report(leap: u8, stratum: u8, selected: &[(&str, bool)]) -> DaemonReport {
        DaemonReport {
            stratum: Some(stratum),
            leap: Some(leap),
            sources: selected.iter().map(|(a, s)| SourceReport { address: a.to_string(), selected: Some(*s), ..SourceReport::default() }).collect(),
            ..DaemonReport::default()
        }
    }

    #[test]
    fn selections_and_stratum_from_the_reports() {
        let rs = [
            report(3, 0, &[("a", false), ("b", false)]),
            report(0, 2, &[("a", true), ("b", false)]),
            report(0, 2, &[("a", true), ("b", false)]),
            report(0, 3, &[("a", false), ("b", true)]),
            report(3, 16, &[("a", false), ("b", false)]),
            report(0, 3, &[("a", false), ("b", true)]),
            report(0, 1, &[]),
        ];
        let t = from_reports(rs.iter().enumerate().map(|(i, r)| (i as i128, r)));
        let got: Vec<(u64, Option<u8>)> = t.iter().map(|(_, n, s)| (*n, *s)).collect();
        assert_eq!(got, [(0, None), (1, Some(2)), (1, Some(2)), (2, Some(3)), (2, None), (3, Some(3)), (3, Some(1))]);
        // chrony's stratum 0 and ntpd-rs's local stratum with an unsynchronized leap serve nothing.
        assert_eq!(from_reports([(0, &report(0, 0, &[])), (1, &report(3, 5, &[]))]).iter().map(|t| t.2).collect::<Vec<_>>(), [None, None]);
        // A report without selection marks (ntp-ctl) counts none.
        let mut r = report(0, 2, &[("a", true)]);
        r.sources[0].selected = None;
        assert_eq!(from_reports([(0, &r)])[0].1, 0);
    }

    /// chronyd 4.3's log (stderr, `-d`) of the client of
    /// tests/lab/reselect-chrony.toml, a lab run of 2026-12-05 17:02 UTC:
    /// it selected server1, whose clock jumped 1 s at 5 s, then server2.
    const RESELECT_LOG: &str = "\
2026-12-05T17:02:10Z chronyd version 4.3 starting (+CMDMON +NTP +REFCLOCK +RTC +PRIVDROP +SCFILTER +SIGND +ASYNCDNS +NTS +SECHASH +IPV6 -DEBUG)
2026-12-05T17:02:10Z CAP_SYS_TIME not present
2026-12-05T17:02:10Z Running with root privileges
2026-12-05T17:02:14Z Selected source 10.0.0.1
2026-12-05T17:02:16Z Selected source 10.0.0.2
2026-12-05T17:02:40Z chronyd exiting
";

    /// The same without server3 (the same day, 17:02 UTC): the jump left
    /// no majority, twice; the lab's reports (10.7, 20.7 and 30.7 s in)
    /// named no selected source.
    const NO_MAJORITY_LOG: &str = "\
2026-12-05T17:02:45Z chronyd version 4.3 starting (+CMDMON +NTP +REFCLOCK +RTC +PRIVDROP +SCFILTER +SIGND +ASYNCDNS +NTS +SECHASH +IPV6 -DEBUG)
2026-12-05T17:02:45Z CAP_SYS_TIME not present
2026-12-05T17:02:45Z Running with root privileges
2026-12-05T17:02:49Z Selected source 10.0.0.1
2026-12-05T17:02:51Z Can't synchronise: no majority
2026-12-05T17:03:07Z Selected source 10.0.0.2
2026-12-05T17:03:08Z Can't synchronise: no majority
2026-12-05T17:03:15Z chronyd exiting
";

    const T0: i64 = 1_796_490_130; // 2026-12-05T17:02:10Z

    fn real(secs: i64) -> i128 {
        i128::from(secs) * 1_000_000_000
    }

    /// chronyd 4.3 with `maxchange 0.1 1 3` in the lab (2026-12-06, a
    /// shortened chrony-131-max-change: polls of 16 s, its clock stepped by
    /// 1 s at 40 s).
    const MAX_CHANGE_LOG: &str = "\
2026-12-06T13:44:23Z chronyd version 4.3 starting (+CMDMON +NTP +REFCLOCK +RTC +PRIVDROP +SCFILTER +SIGND +ASYNCDNS +NTS +SECHASH +IPV6 -DEBUG)
2026-12-06T13:44:23Z CAP_SYS_TIME not present
2026-12-06T13:44:23Z Running with root privileges
2026-12-06T13:44:56Z Selected source 10.0.0.1
2026-12-06T13:44:56Z System clock wrong by -2.003307 seconds
2026-12-06T13:45:12Z Adjustment of -0.663 seconds exceeds the allowed maximum of 0.100 seconds (ignored) 
2026-12-06T13:45:28Z Adjustment of -0.962 seconds exceeds the allowed maximum of 0.100 seconds (ignored) 
2026-12-06T13:45:44Z Adjustment of -1.119 seconds exceeds the allowed maximum of 0.100 seconds (ignored) 
2026-12-06T13:46:00Z Adjustment of -1.197 seconds exceeds the allowed maximum of 0.100 seconds (exiting) 
2026-12-06T13:46:00Z chronyd exiting
";

    #[test]
    fn refused_adjustments_from_chronyds_log_the_last_one_included() {
        assert_eq!(chrony_max_change_refusals(MAX_CHANGE_LOG), 4);
        assert_eq!(chrony_max_change_refusals(RESELECT_LOG), 0);
        // Without chronyd's time, or only mentioning it: not a refusal.
        assert_eq!(chrony_max_change_refusals("Adjustment of -1.197 seconds exceeds the allowed maximum of 0.100 seconds (exiting)"), 0);
        assert_eq!(chrony_max_change_refusals("2026-12-06T13:46:00Z Source 10.0.0.1 exceeds the allowed maximum of something"), 0);
    }

    #[test]
    fn chronyd_log_lines_about_the_selection() {
        let lines: Vec<Option<(i64, ChronyLine)>> = RESELECT_LOG.lines().chain(NO_MAJORITY_LOG.lines()).map(chrony_line).collect();
        assert_eq!(lines[0], Some((T0, ChronyLine::Started)));
        assert_eq!(lines[1..3], [None, None]);
        assert_eq!(lines[3], Some((T0 + 4, ChronyLine::Selected("10.0.0.1".into()))));
        assert_eq!(lines[4], Some((T0 + 6, ChronyLine::Selected("10.0.0.2".into()))));
        assert_eq!(lines[5], None);
        assert_eq!(lines[9], Some((T0 + 39, ChronyLine::Selected("10.0.0.1".into()))));
        assert_eq!(lines[10], Some((T0 + 41, ChronyLine::Lost)));
        assert_eq!(lines[11..], [Some((T0 + 57, ChronyLine::Selected("10.0.0.2".into()))), Some((T0 + 58, ChronyLine::Lost)), None]);
        // A source given by name ("ADDRESS (NAME)", sources.c) and a refclock.
        assert_eq!(chrony_line("2026-12-05T17:02:14Z Selected source 10.0.0.1 (server1)"), Some((T0 + 4, ChronyLine::Selected("10.0.0.1".into()))));
        assert_eq!(chrony_line("2026-12-05T17:02:14Z Selected source PPS0"), Some((T0 + 4, ChronyLine::Selected("PPS0".into()))));
        // Not chronyd's: no time, a time without its Z (ntpsec's), no name, garbage.
        for line in ["Selected source 10.0.0.1", "2026-12-05T17:02:14 Selected source 10.0.0.1", "2026-12-05T17:02:14Z Selected source ", "", "\u{fffd}Z x"] {
            assert_eq!(chrony_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn selections_from_chronyds_log_where_the_reports_saw_fewer() {
        // Both selections came before the lab's first report (10.8 s in),
        // and every report (10.8, 20.9 and 30.8 s in) named server2.
        assert_eq!(chrony_selections(RESELECT_LOG, real), [(real(T0 + 4), 1), (real(T0 + 6), 2)]);
        let reports: Vec<(i128, DaemonReport)> = [108, 209, 308].map(|ds| (real(T0) + ds * 100_000_000, report(0, 2, &[("10.0.0.1", false), ("10.0.0.2", true), ("10.0.0.3", false)]))).into();
        let sampled = from_reports(reports.iter().map(|(t, r)| (*t, r)));
        assert_eq!(sampled.last().map(|s| s.1), Some(1));
        // The log's count, the reports' stratum served.
        let merged = with_selections(&sampled, &chrony_selections(RESELECT_LOG, real));
        let expected = [(real(T0 + 4), 1, None), (real(T0 + 6), 2, None), (reports[0].0, 2, Some(2)), (reports[1].0, 2, Some(2)), (reports[2].0, 2, Some(2))];
        assert_eq!(merged, expected);
        // Two selections, each lost within 2 s, that no report saw; losing one counts nothing.
        assert_eq!(chrony_selections(NO_MAJORITY_LOG, real), [(real(T0 + 39), 1), (real(T0 + 57), 2)]);
        let none = [107, 207, 307].map(|ds| (real(T0 + 35) + ds * 100_000_000, report(3, 0, &[("10.0.0.1", false), ("10.0.0.2", false)])));
        assert_eq!(from_reports(none.iter().map(|(t, r)| (*t, r))).last().map(|s| s.1), Some(0));
    }

    #[test]
    fn a_restarted_chronyd_counts_as_the_simulators_host_does() {
        // Stopped and started again, chronyd selects the same source anew:
        // the simulator's host kept it as its system peer (no selection).
        let same: String = NO_MAJORITY_LOG.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert_eq!(chrony_selections(&format!("{same}{same}"), real).len(), 1);
        // Server2 was the last before the stop: server1 after it counts, and server2 again.
        let again = format!("{RESELECT_LOG}{RESELECT_LOG}");
        assert_eq!(chrony_selections(&again, real).last().map(|s| s.1), Some(4));
        // It lost its source before the stop: selecting the same again counts.
        assert_eq!(chrony_selections(&format!("{NO_MAJORITY_LOG}{NO_MAJORITY_LOG}"), real).len(), 4);
        assert_eq!(chrony_selections(&format!("{same}2026-12-05T17:02:51Z Can't synchronise: no majority\n{same}"), real).len(), 2);
        // Another source after the restart counts; within one start every "Selected source" does.
        let other = same.replace("10.0.0.1", "10.0.0.2");
        assert_eq!(chrony_selections(&format!("{same}{other}"), real).len(), 2);
        let twice = format!("{same}2026-12-05T17:02:50Z Selected source 10.0.0.1\n");
        assert_eq!(chrony_selections(&twice, real).len(), 2);
        // A clock stepped back between two lines does not reorder the counts.
        let back = format!("{same}2026-12-05T17:02:40Z Selected source 10.0.0.2\n");
        assert_eq!(chrony_selections(&back, real), [(real(T0 + 39), 1), (real(T0 + 39), 2)]);
    }
}
