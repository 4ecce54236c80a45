//! `ntplab decode`: NTP packets from hex or from pcap/pcapng captures, as JSON or text.

pub mod capture;
pub mod report;

use crate::cli::{CliError, OutputFormat};
use capture::Frame;
use ntplab_proto::time::NtpTime;
use report::{Decoded, Pivot, TruncatedJson};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `ntplab decode`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["hex", "pcap"])))]
pub struct DecodeArgs {
    /// One NTP packet (the UDP payload) as hex; spaces, colons and a 0x prefix are ignored.
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A pcap or pcapng capture; every NTP packet in it is decoded (UDP over IPv4 and IPv6).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Decode only UDP datagrams to or from this port (default: port 123, plus any
    /// datagram that looks like NTP).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Output format: JSON (JSON Lines for captures) or indented text.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Resolve timestamp eras near this RFC 3339 time instead of by RFC 4330's rule
    /// (for --hex) or near each frame's capture time (for --pcap).
    #[arg(long, value_name = "RFC3339")]
    pub pivot: Option<String>,
}

/// Runs `ntplab decode`.
///
/// Exit status (through [`CliError`]): 0 when the packet (`--hex`) was decoded,
/// or the capture (`--pcap`) was read to its end and held NTP traffic; frames
/// that cannot be decoded are reported on stderr and do not change the
/// status. 1 when the packet cannot be decoded, or the file cannot be opened,
/// is not a capture, breaks off before its end (the frames before the break
/// are printed), or holds no NTP traffic at all.
pub fn run(args: &DecodeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let pivot = match &args.pivot {
        Some(p) => Some(NtpTime::parse_rfc3339(p).map_err(|e| CliError::usage(format!("--pivot: {e}")))?),
        None => None,
    };
    if let Some(hex) = &args.hex {
        let bytes = parse_hex(hex).map_err(CliError::usage)?;
        let packet = report::decode_any(&bytes, pivot.map_or(Pivot::Rfc4330, Pivot::Near), false)
            .map_err(|e| CliError::input(format!("cannot decode the packet: {e}")))?;
        write_packet(out, &packet, args.format)?;
        return Ok(());
    }
    let path = args.pcap.as_ref().expect("clap requires --hex or --pcap");
    let file = std::fs::File::open(path).map_err(|e| CliError::input(format!("cannot open {}: {e}", path.display())))?;
    let frames = capture::CaptureReader::new(std::io::BufReader::new(file))
        .map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    let mut found = 0usize;
    for frame in frames {
        let dgram = match frame {
            Ok(Frame::Udp(d)) => d,
            Ok(Frame::Other) => continue,
            Ok(Frame::Unreadable { frame, reason }) => {
                note(path, &format!("frame {frame}: {reason}"));
                continue;
            }
            Err(e) => {
                return Err(CliError::input(format!(
                    "{}: {e} ({found} NTP messages before the break were printed)",
                    path.display()
                )))
            }
        };
        let port_match = |p: u16| dgram.src.port() == p || dgram.dst.port() == p;
        let chosen = match args.port {
            Some(p) => port_match(p),
            None => port_match(123) || looks_like_ntp(&dgram.payload),
        };
        if !chosen {
            continue;
        }
        found += 1;
        let frame_pivot = pivot.unwrap_or_else(|| {
            NtpTime::from_unix(dgram.time.as_secs() as i64, dgram.time.subsec_nanos())
        });
        let truncated = dgram.truncated.map(|t| TruncatedJson {
            captured_frame: t.captured,
            original_frame: t.original,
            ntp_captured: dgram.payload.len(),
            ntp_length: dgram.udp_payload_len,
        });
        let cut = dgram.payload.len() < dgram.udp_payload_len;
        match report::decode_any(&dgram.payload, Pivot::Near(frame_pivot), cut) {
            Ok(mut p) => {
                p.set_origin(dgram.frame, dgram.src.to_string(), dgram.dst.to_string(), truncated);
                write_packet(out, &p, args.format)?;
            }
            Err(e) => {
                let cut = match truncated {
                    Some(t) => format!(" (the capture holds {} of its {} octets)", t.ntp_captured, t.ntp_length),
                    None => String::new(),
                };
                note(path, &format!("frame {} ({} -> {}): cannot decode: {e}{cut}", dgram.frame, dgram.src, dgram.dst));
            }
        }
    }
    if found == 0 {
        return Err(CliError::input(format!(
            "{}: no NTP packets found (if NTP runs on an unusual port, name it with --port N)",
            path.display()
        )));
    }
    Ok(())
}

/// A frame that could not be decoded: said on stderr, decoding goes on.
fn note(path: &std::path::Path, what: &str) {
    eprintln!("ntplab: {}: {what}", path.display());
}

/// A UDP payload that is plausibly NTP on a port other than 123: at least a
/// header, a multiple of 4 octets, version 1 to 5, and a time-exchange mode (1–5).
fn looks_like_ntp(p: &[u8]) -> bool {
    p.len() >= 48 && p.len() % 4 == 0 && matches!((p[0] >> 3) & 7, 1..=5) && matches!(p[0] & 7, 1..=5)
}

fn write_packet(out: &mut dyn Write, p: &Decoded, format: OutputFormat) -> Result<(), CliError> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string(p).map_err(|e| CliError::internal(e.to_string()))? + "\n",
        OutputFormat::Text => p.to_text() + "\n",
    };
    out.write_all(text.as_bytes()).map_err(CliError::from_io)
}

/// Parses hex digits, ignoring white space, ':' and '-' separators and a leading `0x`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let body = s.trim();
    let body = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")).unwrap_or(body);
    let mut nibbles = Vec::with_capacity(body.len());
    for (i, c) in body.char_indices() {
        match c.to_digit(16) {
            Some(d) => nibbles.push(d as u8),
            None if c.is_whitespace() || c == ':' || c == '-' => {}
            None => return Err(format!("--hex: '{c}' at position {i} is not a hex digit")),
        }
    }
    if nibbles.len() % 2 != 0 {
        return Err(format!("--hex: odd number of hex digits ({}); each byte needs two", nibbles.len()));
    }
    if nibbles.is_empty() {
        return Err("--hex: no hex digits given".to_string());
    }
    Ok(nibbles.chunks(2).map(|c| c[0] << 4 | c[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex("0x2304 00:ff").unwrap(), vec![0x23, 0x04, 0x00, 0xff]);
        assert!(parse_hex("abc").unwrap_err().contains("odd number"));
        assert!(parse_hex("zz").unwrap_err().contains("position 0"));
        assert!(parse_hex("  ").unwrap_err().contains("no hex digits"));
    }

    #[test]
    fn ntp_heuristic() {
        let mut p = [0u8; 48];
        p[0] = 0x23;
        assert!(looks_like_ntp(&p));
        p[0] = 0x26; // mode 6
        assert!(!looks_like_ntp(&p));
        assert!(!looks_like_ntp(&p[..47]));
    }
}
