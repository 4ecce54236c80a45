use super::*;
use proptest::prelude::*;

fn t(s: &str) -> NtpTime {
    NtpTime::parse_rfc3339(s).unwrap()
}

fn pivot() -> NtpTime {
    t("2025-01-01T00:00:00Z")
}

fn parse(s: &str) -> Sentence {
    parse_sentence(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn rmc_from_a_garmin_48() {
    let s = parse("$GPRMC,225308,A,4527.458,S,16709.165,E,000.0,094.5,060601,024.1,E*6D");
    assert_eq!(s.talker, Talker::GP);
    assert_eq!(s.checksum, Checksum::Verified(0x6D));
    assert_eq!(s.kind(), "RMC");
    let fix = s.fix(pivot()).unwrap();
    assert_eq!(fix.time, t("2001-06-06T22:53:08Z"));
    assert!(fix.valid);
    assert_eq!(fix.status, FixStatus::Valid);
}

#[test]
fn rmc_with_fraction_mode_and_gn_talker() {
    let s = parse("$GNRMC,132827.20,A,4134.49941239,N,09345.03495785,W,0.482,33.532,180320,11.5985,E,D*01");
    assert_eq!(s.talker, Talker::GN);
    let SentenceData::Rmc(rmc) = &s.data else { panic!() };
    assert_eq!(rmc.mode, Some(b'D'));
    assert_eq!(s.fix(pivot()).unwrap().time, t("2020-03-18T13:28:27.2Z"));
}

#[test]
fn rmc_status_v_and_mode_n_are_invalid() {
    let s = parse("$GPRMC,095255.810,V,2712.6404,S,15303.1201,E,0.00,0.00,080407,,,A*6E");
    let fix = s.fix(pivot()).unwrap();
    assert!(!fix.valid);
    assert_eq!(fix.time, t("2007-04-08T09:52:55.81Z"));
    let line = frame("GPRMC,120000,A,,,,,,,010125,,,N");
    let fix = parse(&line).fix(pivot()).unwrap();
    assert_eq!(fix.status, FixStatus::Invalid);
}

#[test]
fn gga_without_fix() {
    let s = parse("$GPGGA,,,,,,0,,,,M,,M,,*66");
    assert_eq!(s.data, SentenceData::Gga(Gga { time: None, quality: Some(0), satellites: None }));
    assert_eq!(s.fix(pivot()), Err(FixError::NotATimeSentence));
    let s = parse("$GPGGA,150119.000,5104.0859,N,11405.7387,W,2,8,0.94,1102.4,M,-17.5,M,,*53");
    assert_eq!(
        s.data,
        SentenceData::Gga(Gga {
            time: Some(TimeOfDay { hour: 15, minute: 1, second: 19, nanosecond: 0 }),
            quality: Some(2),
            satellites: Some(8)
        })
    );
}

#[test]
fn zda_with_and_without_zone() {
    let s = parse("$GPZDA,005947.00,08,07,2010,+00,00*4E");
    let fix = s.fix(pivot()).unwrap();
    assert_eq!(fix.time, t("2010-07-08T00:59:47Z"));
    assert_eq!(fix.status, FixStatus::NotReported);
    assert!(!fix.valid);
    let s = parse("$GPZDA,150119.000,09,03,2022,,*53");
    assert_eq!(s.fix(pivot()).unwrap().time, t("2022-03-09T15:01:19Z"));
    let SentenceData::Zda(z) = s.data else { panic!() };
    assert_eq!((z.zone_hours, z.zone_minutes), (None, None));
}

#[test]
fn gll_and_gns_carry_time_of_day() {
    let s = parse("$GPGLL,4527.458,S,16709.165,E,225309,A*3E");
    let date = Date { year: 2001, month: 6, day: 6 };
    assert_eq!(date.at(s.time_of_day().unwrap()).unwrap(), t("2001-06-06T22:53:09Z"));
    let line = frame("GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,,V");
    let s = parse(&line);
    let SentenceData::Gns(g) = &s.data else { panic!() };
    assert_eq!(g.mode, "RR");
    assert_eq!(g.satellites, Some(13));
    assert_eq!(g.nav_status, Some(b'V'));
}

#[test]
fn other_and_proprietary_sentences_are_kept() {
    let s = parse("$GPGSV,3,3,11,25,20,108,00,27,08,281,00,28,17,339,39,,,,*4C");
    assert_eq!(s.data, SentenceData::Other { kind: "GSV".into() });
    assert_eq!(s.talker, Talker::GP);
    let s = parse("$PGRME,9.1,M,15.0,M,12.0,M*21");
    assert_eq!((s.talker, s.kind()), (Talker::Proprietary, "GRME"));
    let s = parse("$BDGSA,A,3,,,,,,,,,,,,,1.0,1.0,1.0");
    assert_eq!((s.talker.as_str(), s.kind(), s.checksum), ("BD", "GSA", Checksum::Missing));
}

#[test]
fn missing_checksum_is_accepted_and_flagged() {
    let s = parse("$GPRMC,225308,A,4527.458,S,16709.165,E,000.0,094.5,060601,024.1,E");
    assert_eq!(s.checksum, Checksum::Missing);
    assert_eq!(s.fix(pivot()).unwrap().time, t("2001-06-06T22:53:08Z"));
}

#[test]
fn errors_say_who_and_where() {
    let e = |s: &str| parse_sentence(s.as_bytes()).unwrap_err();
    assert_eq!(
        e("$GPRMC,225308,A,4527.458,S,16709.165,E,000.0,094.5,060601,024.1,E*6E"),
        Error::Checksum { stated: 0x6E, computed: 0x6D }
    );
    assert!(matches!(e("GPRMC,225308"), Error::Framing { .. }));
    assert!(matches!(e("$GPRMC,225308*6"), Error::Framing { .. }));
    assert!(matches!(e("$GPRMC,225308*6DX"), Error::Framing { .. }));
    assert!(matches!(e("$gprmc,1"), Error::Framing { .. }));
    assert!(matches!(e("$GPRM,1"), Error::Framing { .. }));
    assert!(matches!(e("$GP\u{7f}RMC"), Error::Framing { .. }));
    assert_eq!(e("$GPRMC,225308,A"), Error::TooFewFields { kind: "RMC", count: 2, needed: 9 });
    assert_eq!(e(&frame("GPRMC,2253,A,,,,,,,060601")), Error::Field { kind: "RMC", index: 1, reason: "time is not hhmmss[.sss]" });
    assert_eq!(e(&frame("GPRMC,245308,A,,,,,,,060601")), Error::Field { kind: "RMC", index: 1, reason: "time of day out of range" });
    assert_eq!(e(&frame("GPRMC,225308,X,,,,,,,060601")), Error::Field { kind: "RMC", index: 2, reason: "status is not A or V" });
    assert_eq!(e(&frame("GPRMC,225308,A,,,,,,,061301")), Error::Field { kind: "RMC", index: 9, reason: "day or month out of range" });
    assert!(matches!(e(&frame("GPZDA,225308,1,1,99")), Error::Field { kind: "ZDA", index: 4, .. }));
    assert!(matches!(e(&frame("GPGGA,225308,,,,,12")), Error::Field { kind: "GGA", index: 6, .. }));
}

#[test]
fn impossible_dates_and_leap_seconds_give_no_fix() {
    assert_eq!(parse(&frame("GPRMC,120000,A,,,,,,,310425")).fix(pivot()), Err(FixError::InvalidDate));
    assert_eq!(parse(&frame("GPRMC,235960,A,,,,,,,311216")).fix(pivot()), Err(FixError::LeapSecond));
    assert_eq!(parse(&frame("GPRMC,,V,,,,,,,")).fix(pivot()), Err(FixError::NoTime));
    assert_eq!(parse(&frame("GPRMC,120000,V,,,,,,,")).fix(pivot()), Err(FixError::NoDate));
}

#[test]
fn two_digit_years_resolve_around_the_pivot() {
    assert_eq!(resolve_two_digit_year(99, pivot()), 1999);
    assert_eq!(resolve_two_digit_year(74, pivot()), 2074);
    assert_eq!(resolve_two_digit_year(75, pivot()), 1975);
    assert_eq!(resolve_two_digit_year(1, pivot()), 2001);
    assert_eq!(resolve_two_digit_year(5, t("2090-01-01T00:00:00Z")), 2105);
}

#[test]
fn wnro_fault_is_detected_and_corrected() {
    // A receiver with the 2019-04-06 rollover bug reports 1999-08-22 for 2019-04-07.
    let truth = t("2019-04-07T12:00:00Z");
    let faulty = truth + (-WNRO_PERIOD);
    assert_eq!(faulty, t("1999-08-22T12:00:00Z"));
    let build_date = t("2018-01-01T00:00:00Z");
    assert!(wnro_suspect(faulty, build_date));
    assert!(!wnro_suspect(truth, build_date));
    assert_eq!(wnro_correct(faulty, build_date), truth);
    assert_eq!(wnro_correct(truth, build_date), truth);
    // Two periods back (a 1999 base date seen in 2038) takes two corrections.
    assert_eq!(wnro_correct(truth + (-WNRO_PERIOD) + (-WNRO_PERIOD), build_date), truth);
}

#[test]
fn reader_splits_chunks_and_line_end_variants() {
    let stream = b"$GPGGA,1*00\r\n$GPGGA,2*00\n$GPGGA,3*00\r$GPGGA,4*00\n\r\r\n$GPGGA,5*00\r\n";
    for chunk_len in 1..stream.len() {
        let mut r = NmeaReader::new();
        let lines: Vec<_> = stream.chunks(chunk_len).flat_map(|c| r.push(c)).collect();
        let want: Vec<Result<Vec<u8>, ReaderError>> =
            (1..=5).map(|i| Ok(format!("$GPGGA,{i}*00").into_bytes())).collect();
        assert_eq!(lines, want, "chunk length {chunk_len}");
        assert_eq!(r.finish(), None);
        assert_eq!(r.skipped_bytes(), 0);
    }
}

#[test]
fn reader_skips_garbage_and_binary_and_refuses_long_lines() {
    let mut r = NmeaReader::new();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\xb5\x62\x01\x07garbage");
    stream.extend_from_slice(b"$GPZDA,1\x00\x01binary$GPZDA,2\r\n");
    stream.extend_from_slice(b"$GPZDA,3$GPZDA,4\r\n");
    stream.push(b'$');
    stream.extend(core::iter::repeat_n(b'A', 200));
    stream.extend_from_slice(b"\r\n$GPZDA,5");
    let out = r.push(&stream);
    assert_eq!(
        out,
        vec![
            Err(ReaderError::BinaryByte { byte: 0, partial_len: 8 }),
            Ok(b"$GPZDA,2".to_vec()),
            Err(ReaderError::Interrupted { partial_len: 8 }),
            Ok(b"$GPZDA,4".to_vec()),
            Err(ReaderError::TooLong { line_len_max: 120 }),
        ]
    );
    assert_eq!(r.finish(), Some(ReaderError::Unterminated { partial_len: 8 }));
    assert!(r.skipped_bytes() > 200);
}

#[test]
fn reader_accepts_a_line_of_exactly_the_limit() {
    let mut r = NmeaReader::with_line_len_max(10);
    assert_eq!(r.push(b"$123456789\r\n$1234567890\r\n"), vec![Ok(b"$123456789".to_vec()), Err(ReaderError::TooLong { line_len_max: 10 })]);
}

#[test]
fn canonical_lines_round_trip() {
    for line in [
        "$GPRMC,225308,A,4527.458,S,16709.165,E,000.0,094.5,060601,024.1,E*6D",
        "$GNRMC,132827.20,A,4134.49941239,N,09345.03495785,W,0.482,33.532,180320,11.5985,E,D*01",
        "$GPGGA,,,,,,0,,,,M,,M,,*66",
        "$GPZDA,005947.00,08,07,2010,+00,00*4E",
        "$GPGLL,4527.458,S,16709.165,E,225309,A*3E",
        "$PGRME,9.1,M,15.0,M,12.0,M*21",
    ] {
        let s = parse(line);
        let again = parse(&s.to_line());
        assert_eq!((again.talker, &again.data), (s.talker, &s.data), "{line} -> {}", s.to_line());
    }
}

proptest! {
    #[test]
    fn parser_and_reader_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_sentence(&bytes);
        let mut r = NmeaReader::new();
        for line in r.push(&bytes).into_iter().flatten() {
            prop_assert!(line.len() <= r.line_len_max());
            if let Ok(s) = parse_sentence(&line) {
                let _ = s.fix(pivot());
                let again = parse_sentence(s.to_line().as_bytes()).unwrap();
                prop_assert_eq!(again.data, s.data);
            }
        }
        let _ = r.finish();
    }

    #[test]
    fn rmc_times_round_trip(secs in 0i64..4_000_000_000, millis in 0u32..1000) {
        let time = NtpTime::from_unix(secs, millis * 1_000_000);
        let c = time.to_civil();
        let body = format!(
            "GNRMC,{:02}{:02}{:02}.{:03},A,,,,,,,{:02}{:02}{:02}",
            c.hour, c.minute, c.second, millis, c.day, c.month, c.year % 100
        );
        let s = parse_sentence(frame(&body).as_bytes()).unwrap();
        let fix = s.fix(time).unwrap();
        prop_assert_eq!(fix.time, time);
    }
}
