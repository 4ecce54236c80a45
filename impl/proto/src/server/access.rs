//! Access control by address prefix (CIDR), IPv4 and IPv6.
//!
//! An [`AccessList`] holds rules `prefix -> action` and a default action.
//!
//! **Precedence: the longest matching prefix wins** (as in chrony's
//! `allow`/`deny` and ntpd's `restrict`, which sort by mask): a `/32` rule beats
//! a `/24` rule whatever their order. Between rules with the same prefix (same
//! network and length) the one added last wins, so a later line of a
//! configuration overrides an earlier one. A client no rule matches gets the
//! default action.
//!
//! IPv4 rules match IPv4 clients and IPv4-mapped IPv6 clients
//! (`::ffff:192.0.2.1` is 192.0.2.1); IPv6 rules match other IPv6 clients. A
//! `/0` rule of each family is the way to set a per-family default.

use super::table::canonical;
use core::fmt;
use core::net::IpAddr;

/// What to do with a request from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessAction {
    /// Serve time (subject to rate limiting).
    Allow,
    /// Drop silently: no answer at all.
    Deny,
    /// Answer with a kiss-o'-death `DENY` (RFC 5905 §7.4: the client must
    /// stop), itself rate-limited.
    KodDeny,
    /// Answer with a kiss-o'-death `RSTR` (access restricted by local
    /// policy; the client must stop), itself rate-limited.
    Restrict,
}

/// One rule: a network prefix and the action for clients inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccessRule {
    network: IpAddr,
    prefix_len: u8,
    /// The action for matching clients.
    pub action: AccessAction,
}

/// Why a rule could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessRuleError {
    /// The prefix length exceeds 32 (IPv4) or 128 (IPv6).
    PrefixTooLong {
        /// The length given.
        prefix_len: u8,
        /// The family's maximum.
        max: u8,
    },
    /// The text is not `address/length` or a bare address.
    Syntax(String),
}

impl fmt::Display for AccessRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessRuleError::PrefixTooLong { prefix_len, max } => {
                write!(f, "prefix length /{prefix_len} is longer than /{max} for this address family")
            }
            AccessRuleError::Syntax(s) => {
                write!(f, "invalid network {s:?}: expected an address or address/length such as 192.0.2.0/24 or 2001:db8::/32")
            }
        }
    }
}

impl std::error::Error for AccessRuleError {}

fn bits_of(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// `bits` (a `width`-bit address) with the bits below `prefix_len` cleared.
fn masked(bits: u128, width: u8, prefix_len: u8) -> u128 {
    debug_assert!(prefix_len <= width && width <= 128);
    if prefix_len == 0 {
        return 0;
    }
    // width - prefix_len <= 127 here, so the shift is in range.
    bits & (u128::MAX << (width - prefix_len))
}

impl AccessRule {
    /// A rule for `network/prefix_len`. Host bits below the prefix are cleared.
    /// IPv4-mapped IPv6 networks are taken as IPv4 (their length minus 96).
    pub fn new(network: IpAddr, prefix_len: u8, action: AccessAction) -> Result<Self, AccessRuleError> {
        let (network, prefix_len) = match (network, canonical(network)) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix_len >= 96 => (v4, prefix_len - 96),
            _ => (network, prefix_len),
        };
        let (bits, width) = bits_of(network);
        if prefix_len > width {
            return Err(AccessRuleError::PrefixTooLong { prefix_len, max: width });
        }
        let bits = masked(bits, width, prefix_len);
        let network = match network {
            IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(bits.into()),
        };
        Ok(AccessRule { network, prefix_len, action })
    }

    /// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (a host rule).
    pub fn parse(cidr: &str, action: AccessAction) -> Result<Self, AccessRuleError> {
        let syntax = || AccessRuleError::Syntax(cidr.to_owned());
        let (addr, len) = match cidr.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (cidr, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| syntax())?;
        let len = match len {
            Some(l) => l.trim().parse::<u8>().map_err(|_| syntax())?,
            None => bits_of(addr).1,
        };
        Self::new(addr, len, action)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `client` (already canonical: IPv4-mapped turned into IPv4) lies in this network.
    fn contains(&self, client: IpAddr) -> bool {
        let (net, width) = bits_of(self.network);
        let (c, cwidth) = bits_of(client);
        width == cwidth && masked(c, width, self.prefix_len) == net
    }
}

/// An ordered list of access rules with longest-prefix precedence and a
/// default action. See the module documentation for the exact rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessList {
    rules: Vec<AccessRule>,
    default: AccessAction,
}

impl Default for AccessList {
    /// Allow everyone.
    fn default() -> Self {
        AccessList::new(AccessAction::Allow)
    }
}

impl AccessList {
    /// An empty list: every client gets `default`.
    pub fn new(default: AccessAction) -> Self {
        AccessList { rules: Vec::new(), default }
    }

    /// Appends a rule (it overrides earlier rules for the same network and length).
    pub fn push(&mut self, rule: AccessRule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Appends a rule given as text (see [`AccessRule::parse`]).
    pub fn push_cidr(&mut self, cidr: &str, action: AccessAction) -> Result<&mut Self, AccessRuleError> {
        let rule = AccessRule::parse(cidr, action)?;
        Ok(self.push(rule))
    }

    /// The rules in the order they were added.
    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// The action for clients no rule matches.
    pub fn default_action(&self) -> AccessAction {
        self.default
    }

    /// The action for `client`: the longest matching prefix's, the last added
    /// among equally long ones, or the default. Looks at each rule once.
    pub fn decide(&self, client: IpAddr) -> AccessAction {
        let client = canonical(client);
        let mut best: Option<&AccessRule> = None;
        for rule in &self.rules {
            if rule.contains(client) && best.is_none_or(|b| rule.prefix_len >= b.prefix_len) {
                best = Some(rule);
            }
        }
        best.map_or(self.default, |r| r.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessAction::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let mut acl = AccessList::new(Deny);
        acl.push_cidr("192.0.2.7/32", Restrict).unwrap();
        acl.push_cidr("192.0.2.0/24", Allow).unwrap();
        acl.push_cidr("0.0.0.0/0", KodDeny).unwrap();
        assert_eq!(acl.decide(ip("192.0.2.7")), Restrict, "/32 beats the later /24");
        assert_eq!(acl.decide(ip("192.0.2.8")), Allow);
        assert_eq!(acl.decide(ip("198.51.100.1")), KodDeny, "/0 is the IPv4 default");
        assert_eq!(acl.decide(ip("2001:db8::1")), Deny, "IPv4 rules never match IPv6");
    }

    #[test]
    fn same_prefix_later_rule_wins() {
        let mut acl = AccessList::new(Allow);
        acl.push_cidr("10.0.0.0/8", Deny).unwrap();
        acl.push_cidr("10.1.2.3/8", Allow).unwrap(); // host bits cleared: the same network
        assert_eq!(acl.rules()[1].network(), ip("10.0.0.0"));
        assert_eq!(acl.decide(ip("10.9.9.9")), Allow);
    }

    #[test]
    fn ipv6_prefixes_and_mapped_ipv4() {
        let mut acl = AccessList::new(Deny);
        acl.push_cidr("2001:db8::/32", Allow).unwrap();
        acl.push_cidr("2001:db8:bad::/48", KodDeny).unwrap();
        acl.push_cidr("2001:db8:bad:1::/64", Restrict).unwrap();
        acl.push_cidr("198.51.100.0/24", Allow).unwrap();
        assert_eq!(acl.decide(ip("2001:db8:1::1")), Allow);
        assert_eq!(acl.decide(ip("2001:db8:bad:2::1")), KodDeny);
        assert_eq!(acl.decide(ip("2001:db8:bad:1:ffff::1")), Restrict);
        assert_eq!(acl.decide(ip("2001:db9::1")), Deny);
        assert_eq!(acl.decide(ip("::ffff:198.51.100.9")), Allow, "mapped IPv4 matches IPv4 rules");
        // A mapped-IPv4 rule is an IPv4 rule.
        let r = AccessRule::parse("::ffff:203.0.113.0/120", Deny).unwrap();
        assert_eq!((r.network(), r.prefix_len()), (ip("203.0.113.0"), 24));
    }

    #[test]
    fn rule_errors() {
        assert!(matches!(AccessRule::parse("10.0.0.0/33", Allow), Err(AccessRuleError::PrefixTooLong { max: 32, .. })));
        assert!(matches!(AccessRule::parse("::/129", Allow), Err(AccessRuleError::PrefixTooLong { max: 128, .. })));
        assert!(matches!(AccessRule::parse("nonsense/8", Allow), Err(AccessRuleError::Syntax(_))));
        assert!(AccessRule::parse("10.0.0.0/x", Allow).unwrap_err().to_string().contains("192.0.2.0/24"));
        let host = AccessRule::parse("2001:db8::5", Deny).unwrap();
        assert_eq!(host.prefix_len(), 128);
        let all = AccessRule::parse("::/0", Deny).unwrap();
        assert!(all.contains(ip("2001:db8::1")));
    }
}
