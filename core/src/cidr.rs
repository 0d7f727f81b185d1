//! `dynpage_predeploy_allow`: which client addresses may see pre-release versions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One allowed network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, bits: u8 },
    V6 { net: u128, bits: u8 },
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`, `::1`. Host bits set below the
    /// mask are refused, as nginx's `allow` warns about them: the operator probably meant
    /// something else.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{s}\" is not an IP address or CIDR network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max && !b.starts_with('+') => n,
                _ => return Err(format!("\"{s}\" has an invalid prefix length")),
            },
        };
        let cidr = match ip {
            IpAddr::V4(a) => Cidr::V4 {
                net: u32::from(a),
                bits,
            },
            IpAddr::V6(a) => Cidr::V6 {
                net: u128::from(a),
                bits,
            },
        };
        if !cidr.is_network_address() {
            return Err(format!(
                "\"{s}\" has bits set to the right of the /{bits} mask"
            ));
        }
        Ok(cidr)
    }

    fn is_network_address(&self) -> bool {
        match *self {
            Cidr::V4 { net, bits } => net & !mask32(bits) == 0,
            Cidr::V6 { net, bits } => net & !mask128(bits) == 0,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, normalize(ip)) {
            (Cidr::V4 { net, bits }, IpAddr::V4(a)) => u32::from(a) & mask32(bits) == net,
            (Cidr::V6 { net, bits }, IpAddr::V6(a)) => u128::from(a) & mask128(bits) == net,
            _ => false,
        }
    }
}

fn mask32(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    }
}

fn mask128(bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(bits))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, from a dual-stack listener) is its IPv4.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// The whole list of one configuration level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// `all` was given.
    pub all: bool,
    pub networks: Vec<Cidr>,
}

impl AllowList {
    /// Adds one directive argument: `all`, `none`, or a network.
    pub fn add(&mut self, arg: &str) -> Result<(), String> {
        match arg {
            "all" => self.all = true,
            "none" => {}
            _ => self.networks.push(Cidr::parse(arg)?),
        }
        Ok(())
    }

    pub fn allows(&self, ip: Option<IpAddr>) -> bool {
        self.all || ip.is_some_and(|ip| self.networks.iter().any(|n| n.contains(ip)))
    }
}

/// Builds an address from the raw bytes of a socket address (4 or 16 bytes).
pub fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        ))),
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(octets);
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn list(args: &[&str]) -> AllowList {
        let mut l = AllowList::default();
        for a in args {
            l.add(a).unwrap();
        }
        l
    }

    #[test]
    fn v4_networks_and_hosts() {
        let l = list(&["10.0.0.0/8", "192.168.1.7"]);
        assert!(l.allows(ip("10.200.3.4")));
        assert!(l.allows(ip("192.168.1.7")));
        assert!(!l.allows(ip("192.168.1.8")));
        assert!(!l.allows(ip("11.0.0.1")));
        assert!(!l.allows(None));
        assert!(l.allows(ip("::ffff:10.1.1.1")), "v4-mapped v6 is v4");
    }

    #[test]
    fn v6_networks() {
        let l = list(&["2001:db8::/32", "::1"]);
        assert!(l.allows(ip("2001:db8:ffff::1")));
        assert!(!l.allows(ip("2001:db9::1")));
        assert!(l.allows(ip("::1")));
        assert!(!l.allows(ip("127.0.0.1")));
        assert!(list(&["::/0"]).allows(ip("fe80::1")));
        assert!(list(&["0.0.0.0/0"]).allows(ip("8.8.8.8")));
    }

    #[test]
    fn all_none_and_default() {
        assert!(!AllowList::default().allows(ip("127.0.0.1")));
        assert!(list(&["all"]).allows(None));
        assert!(!list(&["none"]).allows(ip("127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "example.com",
            "300.1.1.1",
            "::1/129",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn octets() {
        assert_eq!(ip_from_octets(&[127, 0, 0, 1]), ip("127.0.0.1"));
        assert_eq!(ip_from_octets(&[0; 16]), ip("::"));
        assert_eq!(ip_from_octets(&[1, 2]), None);
    }
}
