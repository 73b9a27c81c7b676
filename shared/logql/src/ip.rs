//! `ip("…")` operands of line and label filters: a single address, a CIDR prefix or an
//! inclusive `a-b` range, IPv4 or IPv6.

use std::net::IpAddr;

/// A parsed `ip("…")` operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPattern {
    /// One address.
    Single(IpAddr),
    /// Host bits are ignored, as Go's `netip.Prefix.Masked` does.
    Cidr {
        /// The network address.
        addr: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// Inclusive; both ends have the same family and `start <= end`.
    Range {
        /// The first address.
        start: IpAddr,
        /// The last address.
        end: IpAddr,
    },
}

/// The pattern text (held as given) was not an address, CIDR or range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ip: invalid pattern: {0:?}")]
pub struct IpPatternError(pub String);

impl IpPattern {
    /// Parses an address, CIDR or `a-b` range as Loki does.
    pub fn parse(s: &str) -> Result<IpPattern, IpPatternError> {
        let err = || IpPatternError(s.to_string());
        let t = s.trim();
        if let Some((addr, bits)) = t.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| err())?;
            // Go accepts only plain decimal prefix lengths.
            if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
                return Err(err());
            }
            let prefix: u8 = bits.parse().map_err(|_| err())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(err());
            }
            return Ok(IpPattern::Cidr { addr, prefix });
        }
        if let Some((a, b)) = t.split_once('-') {
            let start: IpAddr = a.trim().parse().map_err(|_| err())?;
            let end: IpAddr = b.trim().parse().map_err(|_| err())?;
            if start.is_ipv4() != end.is_ipv4() || start > end {
                return Err(err());
            }
            return Ok(IpPattern::Range { start, end });
        }
        t.parse().map(IpPattern::Single).map_err(|_| err())
    }

    /// True if `ip` falls in the pattern. Addresses of the other family never match; an
    /// IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match *self {
            IpPattern::Single(a) => a.to_canonical() == ip,
            IpPattern::Range { start, end } => {
                start.is_ipv4() == ip.is_ipv4() && start <= ip && ip <= end
            }
            IpPattern::Cidr { addr, prefix } => match (addr, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        let p = IpPattern::parse("10.0.0.0/8").unwrap();
        assert!(p.contains(ip("10.1.2.3")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(
            IpPattern::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("1.2.3.4"))
        );
        let r = IpPattern::parse("192.168.0.1-192.168.0.10").unwrap();
        assert!(r.contains(ip("192.168.0.5")));
        assert!(!r.contains(ip("192.168.0.11")));
        let v6 = IpPattern::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(IpPattern::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            IpPattern::parse("1.2.3.4")
                .unwrap()
                .contains(ip("::ffff:1.2.3.4"))
        );
    }

    #[test]
    fn invalid() {
        for s in [
            "",
            "foo",
            "10.0.0.0/33",
            "10.0.0.0/",
            "1.2.3.4-::1",
            "1.2.3.9-1.2.3.1",
            "1.2.3",
        ] {
            assert!(IpPattern::parse(s).is_err(), "{s}");
        }
    }
}
