//! Where a login with a key may come from (`apikey generate --from`): IPv4
//! and IPv6 networks in CIDR notation, checked against the remote host PAM
//! reports. Only an address can match: a host name (sshd with `UseDNS
//! yes` puts the client's name there) or an empty remote host (a local
//! login) never does, because a name is whatever the client's DNS says.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Networks one key may name.
pub const MAX_SOURCES: usize = 32;

/// What `--from` takes, for messages and help.
pub const SOURCE_RULE: &str = "an IPv4 or IPv6 address or network in CIDR notation \
    (10.1.0.0/16, 2001:db8::/32, 192.0.2.7)";

/// One network: an address whose bits past the prefix are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `addr/prefix`, or one address alone (all its bits). An address with
    /// bits set past its prefix is refused rather than guessed at: it is
    /// most often a typo for another network.
    pub fn parse(text: &str) -> Result<Network, String> {
        let bad = |why: &str| format!("'{text}' is not {SOURCE_RULE}: {why}");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an address"))?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| bad(&format!("the prefix length is at most {max}")))?,
            Some(_) => return Err(bad("the prefix length is a number")),
        };
        let net = Network { addr, prefix };
        if net.masked(addr) != addr {
            return Err(bad(&format!(
                "bits are set past the prefix; the network is {}",
                Network {
                    addr: net.masked(addr),
                    prefix
                }
            )));
        }
        Ok(net)
    }

    /// True when `ip` is in this network. An IPv4 address written as
    /// IPv6 (`::ffff:192.0.2.7`, as dual-stack servers report IPv4
    /// clients) is the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.masked(ip) == self.addr
            }
            _ => false,
        }
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A `--from` list (comma-separated, blanks around items ignored) in its
/// canonical form (see [`canonical_list`]).
pub fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(format!("an empty item in '{text}'"));
    }
    canonical_list(&items)
}

/// Networks as they are stored: each as `addr/prefix`, duplicates
/// dropped, in the order given; between 1 and [`MAX_SOURCES`] of them.
pub fn canonical_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<String>, String> {
    check_count(items.len())?;
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let canonical = Network::parse(item.as_ref())?.to_string();
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

fn check_count(n: usize) -> Result<(), String> {
    match n {
        0 => Err("give at least one network".into()),
        n if n > MAX_SOURCES => Err(format!("at most {MAX_SOURCES} networks, not {n}")),
        _ => Ok(()),
    }
}

/// The remote host PAM reported, as an address; `None` for a name, an
/// empty value or anything else.
pub fn rhost_address(rhost: &str) -> Option<IpAddr> {
    // Some services bracket IPv6 addresses.
    let bare = rhost
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(rhost);
    bare.parse().ok()
}

/// May a login from `rhost` use a key limited to `sources`? A key without
/// limits may come from anywhere; a limited one only from an address
/// inside one of its networks. A stored item that does not parse matches
/// nothing (fail closed).
pub fn allows(sources: &[String], rhost: &str) -> bool {
    if sources.is_empty() {
        return true;
    }
    let Some(ip) = rhost_address(rhost) else {
        return false;
    };
    sources
        .iter()
        .filter_map(|s| Network::parse(s).ok())
        .any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_to_one_canonical_form() {
        for (given, canonical) in [
            ("10.1.0.0/16", "10.1.0.0/16"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("2001:db8:0:0::1", "2001:db8::1/128"),
            ("::/0", "::/0"),
            ("10.0.0.0/008", "10.0.0.0/8"),
        ] {
            assert_eq!(
                Network::parse(given).unwrap().to_string(),
                canonical,
                "{given}"
            );
        }
    }

    #[test]
    fn what_is_no_network_is_refused_with_the_reason() {
        for (given, says) in [
            ("10.1.2.3/16", "the network is 10.1.0.0/16"),
            ("10.0.0.0/33", "at most 32"),
            ("2001:db8::/129", "at most 128"),
            ("10.0.0.0/", "a number"),
            ("10.0.0.0/-1", "a number"),
            ("10.0.0.0/1234", "a number"),
            ("10.0.0.0/+8", "a number"),
            ("example.org", "not an address"),
            ("10.0.0", "not an address"),
            ("", "not an address"),
            ("fe80::1%eth0", "not an address"),
        ] {
            let e = Network::parse(given).unwrap_err();
            assert!(e.contains(says), "{given}: {e}");
        }
    }

    #[test]
    fn addresses_inside_match_and_others_do_not() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.0.0")));
        assert!(net.contains(ip("10.1.255.255")));
        assert!(!net.contains(ip("10.2.0.0")));
        assert!(!net.contains(ip("10.0.255.255")));
        // IPv4 clients of a dual-stack server.
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("::10.1.2.3")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        let one = Network::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.6")));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("255.255.255.255")) && !all.contains(ip("::1")));
        let edge = Network::parse("128.0.0.0/1").unwrap();
        assert!(edge.contains(ip("255.0.0.1")) && !edge.contains(ip("127.255.255.255")));
    }

    #[test]
    fn a_limited_key_is_used_from_an_address_inside_only() {
        let limited = parse_list("10.1.0.0/16, 2001:db8::/32").unwrap();
        assert!(allows(&limited, "10.1.9.9"));
        assert!(allows(&limited, "2001:db8::5"));
        assert!(allows(&limited, "[2001:db8::5]"));
        for refused in [
            "127.0.0.1",
            "",
            "host.example.org",
            "10.1.9.9.nip.io",
            "2001:db9::5",
        ] {
            assert!(!allows(&limited, refused), "{refused}");
        }
        assert!(allows(&[], "anything"));
        assert!(!allows(&["garbage".to_string()], "10.1.9.9"));
    }

    #[test]
    fn lists_are_canonical_without_duplicates_and_capped() {
        assert_eq!(
            parse_list("10.1.2.3,10.1.2.3/32, ::1").unwrap(),
            ["10.1.2.3/32", "::1/128"]
        );
        assert!(parse_list("10.0.0.0/8,,10.1.0.0/16")
            .unwrap_err()
            .contains("empty"));
        let many: Vec<String> = (0..=MAX_SOURCES).map(|i| format!("10.0.0.{i}")).collect();
        assert!(parse_list(&many.join(","))
            .unwrap_err()
            .contains("at most 32"));
        assert!(parse_list(&many[..MAX_SOURCES].join(",")).is_ok());
        assert_eq!(
            canonical_list(&["10.0.0.0/08", "10.0.0.0/8", "192.0.2.1"]).unwrap(),
            ["10.0.0.0/8", "192.0.2.1/32"]
        );
        assert!(canonical_list::<&str>(&[]).is_err());
        assert!(canonical_list(&["10.0.0.1/8"]).is_err());
    }
}
