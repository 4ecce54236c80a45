//! `ntplab serve`'s configuration file (TOML).
//!
//! ```toml
//! listen = ["127.0.0.1:11123", "[::1]:11123"]
//!
//! [local]                  # serve this host's clock when no source is selected
//! stratum = 1              # (like chrony's "local stratum 1")
//! reference_id = "LOCL"
//!
//! [[source]]
//! address = "127.0.0.1:123"
//! iburst = true
//! poll_min = 6             # log2 seconds
//! poll_max = 10
//!
//! [access]
//! default = "allow"        # allow | deny | kod-deny | restrict
//! rules = [ { network = "192.0.2.0/24", action = "restrict" } ]   # longest prefix wins
//!
//! [rate_limit]            # without this section there is no rate limiting
//! enabled = true
//! interval_s_min = 2.0     # average interval a client must keep
//! burst = 8
//! kod = true               # answer excess with RATE kiss codes
//!
//! [smear]
//! style = "before-leap"    # or "centered"
//! leap = "2016-12-31T23:59:60Z"
//!
//! [clock]
//! control = false          # never touch the system clock unless true
//! discipline = "regression" # or "rfc5905" (RFC 5905's PLL/FLL)
//! ```
//!
//! Errors name the line and column and say what was expected.

use ntplab_proto::discipline::DisciplineKind;
use ntplab_proto::server::{AccessAction, AccessList, LeapKind, RateLimitConfig, ServerConfig, SmearConfig, SmearStyle};
use ntplab_proto::source::SourceConfig;
use ntplab_proto::system::LocalReference;
use ntplab_proto::time::{NtpDuration, NtpTime};
use ntplab_proto::wire::refid::ReferenceId;
use serde::Deserialize;
use std::net::SocketAddr;

/// The whole file, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Addresses to serve NTP on.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Local reference.
    pub local: Option<LocalSection>,
    /// Upstream servers.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// Access control.
    #[serde(default)]
    pub access: AccessSection,
    /// Rate limiting; off without this section (as in chrony), on with it.
    pub rate_limit: Option<RateLimitSection>,
    /// Leap smear.
    pub smear: Option<SmearSection>,
    /// Clock control.
    #[serde(default)]
    pub clock: ClockSection,
    /// Answer interleaved requests (RFC 9769); default true.
    pub interleaved: Option<bool>,
}

/// `[local]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// 1–15.
    pub stratum: u8,
    /// Up to four ASCII characters; default "LOCL".
    pub reference_id: Option<String>,
}

/// `[[source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `IP:PORT`.
    pub address: SocketAddr,
    /// Send a burst of 8 requests at start.
    #[serde(default)]
    pub iburst: bool,
    /// Send bursts at every poll.
    #[serde(default)]
    pub burst: bool,
    /// Minimum poll exponent, log2 s (default 6).
    pub poll_min: Option<i8>,
    /// Maximum poll exponent, log2 s (default 10).
    pub poll_max: Option<i8>,
    /// NTP version to send (default 4).
    pub version: Option<u8>,
}

/// `[access]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Action for addresses no rule names (default allow).
    pub default: Option<ActionName>,
    /// CIDR rules; the longest matching prefix wins.
    #[serde(default)]
    pub rules: Vec<AccessRuleSection>,
}

/// One access rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleSection {
    /// `ADDRESS/PREFIX`.
    pub network: String,
    /// What to do.
    pub action: ActionName,
}

/// An access action as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    /// Serve.
    Allow,
    /// Do not answer.
    Deny,
    /// Answer with a DENY kiss code.
    KodDeny,
    /// Answer with an RSTR kiss code.
    Restrict,
}

impl From<ActionName> for AccessAction {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Allow => AccessAction::Allow,
            ActionName::Deny => AccessAction::Deny,
            ActionName::KodDeny => AccessAction::KodDeny,
            ActionName::Restrict => AccessAction::Restrict,
        }
    }
}

/// `[rate_limit]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Default true (when the section is present).
    pub enabled: Option<bool>,
    /// Average interval a client must keep, seconds (default 8).
    pub interval_s_min: Option<f64>,
    /// Requests allowed in a burst (default 8).
    pub burst: Option<u32>,
    /// Answer excess requests with RATE kiss codes (default true).
    pub kod: Option<bool>,
    /// Client table slots (fixed memory; default 16384).
    pub slots: Option<usize>,
}

/// `[smear]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmearSection {
    /// `before-leap` or `centered`.
    pub style: SmearStyleName,
    /// The leap second, e.g. `2016-12-31T23:59:60Z` (insert) or `2016-12-31T23:59:59Z` with `kind = "delete"`.
    pub leap: String,
    /// `insert` (default) or `delete`.
    pub kind: Option<LeapKindName>,
}

/// Smear style as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum SmearStyleName {
    /// 24 h before the leap.
    BeforeLeap,
    /// 12 h before and 12 h after.
    Centered,
}

/// Leap kind as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum LeapKindName {
    /// Insert 23:59:60.
    Insert,
    /// Delete 23:59:59.
    Delete,
}

/// `[clock]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClockSection {
    /// Discipline the system clock (needs CAP_SYS_TIME). Default false.
    #[serde(default)]
    pub control: bool,
    /// The clock discipline algorithm: `"regression"` (default; least squares
    /// over recent samples, chrony-like) or `"rfc5905"` (RFC 5905's PLL/FLL).
    pub discipline: Option<String>,
}

/// A configuration error, with a position when it comes from the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One upstream source, validated.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Where.
    pub address: SocketAddr,
    /// How to poll it.
    pub config: SourceConfig,
}

/// The daemon's configuration, validated.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Addresses to serve on (none: client only).
    pub listen: Vec<SocketAddr>,
    /// Upstream sources.
    pub sources: Vec<SourceSpec>,
    /// The responder's settings.
    pub server: ServerConfig,
    /// Local reference, if any.
    pub local: Option<LocalReference>,
    /// Whether the system clock may be adjusted.
    pub clock_control: bool,
    /// The clock discipline algorithm (`[clock] discipline`).
    pub discipline: DisciplineKind,
}

impl DaemonConfig {
    /// Parses and validates a TOML file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
        Self::parse_file(text, origin)?.validate(origin)
    }

    /// Parses a TOML file's text without validating it (to merge command-line options first).
    pub fn parse_file(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format_toml_error(&e, text, origin)))
    }
}

fn format_toml_error(e: &toml::de::Error, text: &str, origin: &str) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{origin}:{line}:{column}: {}", e.message())
        }
        None => format!("{origin}: {}", e.message()),
    }
}

impl ConfigFile {
    /// Checks values the types cannot.
    pub fn validate(self, origin: &str) -> Result<DaemonConfig, ConfigError> {
        let err = |m: String| ConfigError(format!("{origin}: {m}"));
        let local = match self.local {
            Some(l) => {
                if !(1..=15).contains(&l.stratum) {
                    return Err(err(format!("[local] stratum {} is outside 1-15", l.stratum)));
                }
                let code = l.reference_id.unwrap_or_else(|| "LOCL".into());
                if code.is_empty() || code.len() > 4 || !code.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(err(format!("[local] reference_id {code:?} must be 1-4 printable ASCII characters")));
                }
                Some(LocalReference { stratum: l.stratum, reference_id: ReferenceId::from_ascii(&code) })
            }
            None => None,
        };
        let mut sources = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let defaults = SourceConfig::default();
            let config = SourceConfig {
                poll_min_log2: s.poll_min.unwrap_or(defaults.poll_min_log2),
                poll_max_log2: s.poll_max.unwrap_or(defaults.poll_max_log2.max(s.poll_min.unwrap_or(0))),
                iburst: s.iburst,
                burst: s.burst,
                version: s.version.unwrap_or(4),
                ..defaults
            };
            config.validate().map_err(|e| err(format!("[[source]] #{} ({}): {e}", i + 1, s.address)))?;
            sources.push(SourceSpec { address: s.address, config });
        }
        let mut access = AccessList::new(self.access.default.map_or(AccessAction::Allow, Into::into));
        for r in &self.access.rules {
            access
                .push_cidr(&r.network, r.action.into())
                .map_err(|e| err(format!("[access] rule {:?}: {e}", r.network)))?;
        }
        let defaults = RateLimitConfig::default();
        let section_given = self.rate_limit.is_some();
        let section = self.rate_limit.unwrap_or_default();
        let interval_s = section.interval_s_min.unwrap_or(defaults.interval_ns_min as f64 * 1e-9);
        if !(0.0..=3600.0).contains(&interval_s) {
            return Err(err(format!("[rate_limit] interval_s_min {interval_s} must be between 0 and 3600 s")));
        }
        let rate_limit = RateLimitConfig {
            enabled: section_given && section.enabled.unwrap_or(true),
            interval_ns_min: (interval_s * 1e9) as u64,
            burst: section.burst.unwrap_or(defaults.burst),
            kod: section.kod.unwrap_or(defaults.kod),
            slots: section.slots.unwrap_or(defaults.slots),
            ..defaults
        };
        if rate_limit.slots == 0 || rate_limit.slots > 1 << 24 {
            return Err(err(format!("[rate_limit] slots {} must be between 1 and 16777216", rate_limit.slots)));
        }
        let smear = match self.smear {
            Some(s) => Some(parse_smear(&s).map_err(|m| err(format!("[smear] {m}")))?),
            None => None,
        };
        let discipline = match self.clock.discipline.as_deref() {
            None => DisciplineKind::default(),
            Some(name) => DisciplineKind::from_name(name).ok_or_else(|| {
                err(format!("[clock] discipline {name:?} is not one of \"regression\", \"rfc5905\""))
            })?,
        };
        if self.listen.is_empty() && sources.is_empty() {
            return Err(err("nothing to do: give `listen` addresses to serve on, `[[source]]`s to follow, or both".into()));
        }
        Ok(DaemonConfig {
            listen: self.listen,
            sources,
            server: ServerConfig {
                access,
                rate_limit,
                smear,
                interleaved: self.interleaved.unwrap_or(true),
                ..ServerConfig::default()
            },
            local,
            clock_control: self.clock.control,
            discipline,
        })
    }
}

/// The leap second as written (`...T23:59:60Z` for an insertion, `...T23:59:59Z`
/// for a deletion) to the smear's 00:00:00 at the end of the leap day.
fn parse_smear(s: &SmearSection) -> Result<SmearConfig, String> {
    let kind = match s.kind {
        Some(LeapKindName::Delete) => LeapKind::Delete,
        _ => LeapKind::Insert,
    };
    let (date, time) = s.leap.split_once(['T', 't']).ok_or_else(|| format!("leap {:?}: expected YYYY-MM-DDT23:59:60Z", s.leap))?;
    let expected = match kind {
        LeapKind::Insert => "23:59:60",
        LeapKind::Delete => "23:59:59",
    };
    if !time.starts_with(expected) {
        return Err(format!("leap {:?}: a {} leap second is written {date}T{expected}Z", s.leap, if kind == LeapKind::Insert { "inserted" } else { "deleted" }));
    }
    let midnight = NtpTime::parse_rfc3339(&format!("{date}T00:00:00Z")).map_err(|e| format!("leap {:?}: {e}", s.leap))?;
    let style = match s.style {
        SmearStyleName::BeforeLeap => SmearStyle::BeforeLeap,
        SmearStyleName::Centered => SmearStyle::Centered,
    };
    Ok(SmearConfig { style, leap_time: midnight + NtpDuration::from_seconds(86_400), kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let text = r#"
listen = ["127.0.0.1:11123", "[::1]:11123"]
interleaved = false
[local]
stratum = 1
[[source]]
address = "127.0.0.1:123"
iburst = true
poll_min = 4
poll_max = 6
[access]
default = "allow"
rules = [ { network = "192.0.2.0/24", action = "restrict" }, { network = "2001:db8::/32", action = "kod-deny" } ]
[rate_limit]
interval_s_min = 2.0
burst = 4
[smear]
style = "centered"
leap = "2016-12-31T23:59:60Z"
"#;
        let c = DaemonConfig::from_toml(text, "t.toml").unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.sources[0].config.poll_max_log2, 6);
        assert!(c.sources[0].config.iburst);
        assert_eq!(c.local.unwrap().reference_id.ascii(), Some("LOCL"));
        assert_eq!(c.server.rate_limit.interval_ns_min, 2_000_000_000);
        assert!(c.server.rate_limit.enabled);
        let plain = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n", "p").unwrap();
        assert!(!plain.server.rate_limit.enabled, "no [rate_limit] section: no rate limiting, as in chrony");
        assert!(!c.server.interleaved && !c.clock_control);
        let smear = c.server.smear.unwrap();
        assert_eq!(smear.leap_time, NtpTime::parse_rfc3339("2017-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn errors_name_line_column_and_what_is_wrong() {
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n[local]\nstratum = \"one\"\n", "a.toml").unwrap_err();
        assert!(e.0.starts_with("a.toml:3:11:"), "{e}");
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\nlisten_port = 5\n", "b.toml").unwrap_err();
        assert!(e.0.starts_with("b.toml:2:1:") && e.0.contains("unknown field"), "{e}");
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1\"]\n", "c.toml").unwrap_err();
        assert!(e.0.contains("c.toml:1:"), "{e}");
        let e = DaemonConfig::from_toml("[local]\nstratum = 1\n", "d.toml").unwrap_err();
        assert!(e.0.contains("nothing to do"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[local]\nstratum = 16\n", "e.toml").unwrap_err();
        assert!(e.0.contains("outside 1-15"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[access]\nrules=[{network=\"10.0.0.0/33\",action=\"deny\"}]\n", "f").unwrap_err();
        assert!(e.0.contains("10.0.0.0/33"), "{e}");
        let e = DaemonConfig::from_toml("listen=[\"127.0.0.1:1\"]\n[smear]\nstyle=\"centered\"\nleap=\"2016-12-31T23:59:59Z\"\n", "g").unwrap_err();
        assert!(e.0.contains("23:59:60"), "{e}");
        let e = DaemonConfig::from_toml("[[source]]\naddress=\"127.0.0.1:123\"\npoll_min=2\n", "h").unwrap_err();
        assert!(e.0.contains("#1"), "{e}");
    }

    #[test]
    fn the_discipline_is_chosen_in_the_clock_section() {
        let c = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n", "a").unwrap();
        assert_eq!(c.discipline, DisciplineKind::Regression, "the default");
        for (name, kind) in [("rfc5905", DisciplineKind::Rfc5905), ("regression", DisciplineKind::Regression)] {
            let text = format!("listen = [\"127.0.0.1:123\"]\n[clock]\ndiscipline = \"{name}\"\n");
            assert_eq!(DaemonConfig::from_toml(&text, "b").unwrap().discipline, kind);
        }
        let e = DaemonConfig::from_toml("listen = [\"127.0.0.1:123\"]\n[clock]\ndiscipline = \"pll\"\n", "c").unwrap_err();
        assert!(e.0.contains("\"pll\"") && e.0.contains("rfc5905"), "{e}");
    }
}
