//! Where a client is: the address its connection comes from or, through a reverse proxy
//! this server trusts (`--trusted-proxy`), the address the proxy puts in
//! `X-Forwarded-For`. Per-address limits (connections, places held in a room) count
//! clients, not the proxy in front of them.

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (like 10.0.0.0/8)"))?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(Self { net, prefix })
    }
}

impl IpRange {
    /// Whether `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => net.to_ipv4_mapped().is_some_and(|net| {
                self.prefix >= 96 && {
                    let range = IpRange {
                        net: IpAddr::V4(net),
                        prefix: self.prefix - 96,
                    };
                    range.contains(IpAddr::V4(ip))
                }
            }),
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|ip| self.contains(IpAddr::V4(ip))),
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

/// The proxies whose `X-Forwarded-For` is believed (none by default: the header is
/// ignored, since any client can send it).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// From `--trusted-proxy` values.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<IpRange>())
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
            .map_err(|e| format!("--trusted-proxy: {e}"))
    }

    /// Whether a connection from `ip` comes through a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The client behind a connection from `peer`: `peer` itself, unless it is a trusted
    /// proxy; then the right-most address of `X-Forwarded-For` that is not one (each
    /// proxy appends the address it saw, so those to the left are the client's word).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .into_iter()
            .flat_map(|header| header.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// What counts as one origin for per-address limits: the IPv4 address, or the /64 an
/// IPv6 host is given. `None` for loopback (this machine: its own tools, or a proxy on it
/// that is not declared trusted), which is not limited.
pub fn origin_of(ip: IpAddr) -> Option<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.200.3.4")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        let one: IpRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpRange>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in ["", "10.0.0.0/33", "proxy", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        // A client sending the header itself is not believed.
        assert_eq!(
            proxies.client_ip(ip("203.0.113.5"), ["198.51.100.1"]),
            ip("203.0.113.5")
        );
        // Through the proxy: the right-most address it did not add itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["198.51.100.1, 203.0.113.9, 10.0.0.3"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["203.0.113.9", "10.1.1.1"]),
            ip("203.0.113.9")
        );
        // No usable header: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["garbage"]),
            ip("10.0.0.2")
        );
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
    }

    #[test]
    fn origins_group_an_ipv6_host_and_leave_loopback_alone() {
        assert_eq!(origin_of(ip("127.0.0.1")), None);
        assert_eq!(origin_of(ip("::1")), None);
        assert_eq!(origin_of(ip("::ffff:127.0.0.1")), None);
        assert_eq!(origin_of(ip("203.0.113.9")).as_deref(), Some("203.0.113.9"));
        assert_eq!(
            origin_of(ip("2001:db8:1:2:aaaa::1")),
            origin_of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            origin_of(ip("2001:db8:1:2::1")),
            origin_of(ip("2001:db8:1:3::1"))
        );
    }
}
