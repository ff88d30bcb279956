//! Which addresses `http` steps may reach. Link-local and cloud metadata
//! addresses are always refused; `--deny-private-network` also refuses
//! loopback, RFC 1918, CGNAT, IPv6 unique-local and unspecified addresses.
//! Names are checked on the addresses they resolve to, at connect time
//! (through the HTTP client's resolver), so DNS rebinding cannot slip past;
//! IP literals and redirect targets are checked before anything is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub deny_private: bool,
}

fn v4_class(ip: Ipv4Addr) -> Option<(&'static str, bool)> {
    let o = ip.octets();
    // (what it is, refused even without --deny-private-network)
    if o[0] == 169 && o[1] == 254 {
        return Some(("a link-local / cloud metadata address", true));
    }
    if ip.is_loopback() {
        return Some(("a loopback address", false));
    }
    if ip.is_private() {
        return Some(("a private (RFC 1918) address", false));
    }
    if o[0] == 100 && (64..128).contains(&o[1]) {
        return Some(("a carrier-grade NAT address", false));
    }
    if o[0] == 0 {
        return Some(("an unspecified address", false));
    }
    None
}

fn v6_class(ip: Ipv6Addr) -> Option<(&'static str, bool)> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some(("a cloud metadata address", true));
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some(("a link-local address", true));
    }
    if ip.is_loopback() {
        return Some(("a loopback address", false));
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some(("a unique-local address", false));
    }
    if ip.is_unspecified() {
        return Some(("an unspecified address", false));
    }
    None
}

impl OutboundPolicy {
    /// `Err` says why `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let class = match ip {
            IpAddr::V4(v4) => v4_class(v4),
            IpAddr::V6(v6) => v6_class(v6),
        };
        match class {
            Some((what, always)) if always || self.deny_private => Err(format!(
                "refused by the outbound policy: {ip} is {what}{}",
                if always {
                    ""
                } else {
                    " (--deny-private-network)"
                }
            )),
            _ => Ok(()),
        }
    }

    /// Check a URL whose host is an IP literal (names are checked when
    /// they are resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        match url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        {
            Some(h) => match h.parse::<IpAddr>() {
                Ok(ip) => self.check(ip),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
    }
}

/// The HTTP client's resolver: resolves, then keeps only allowed addresses.
pub struct PolicyResolver(pub OutboundPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} has no address"));
                return Err(format!("{host}: {why}").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: OutboundPolicy, ip: &str) -> bool {
        p.check(ip.parse().expect("ip")).is_ok()
    }

    #[test]
    fn default_and_strict() {
        let d = OutboundPolicy::default();
        let strict = OutboundPolicy { deny_private: true };
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(!ok(d, ip), "{ip}");
            assert!(!ok(strict, ip), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12::1",
            "0.0.0.0",
            "::ffff:10.0.0.1",
        ] {
            assert!(ok(d, ip), "{ip}");
            assert!(!ok(strict, ip), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(ok(strict, ip), "{ip}");
        }
    }
}
