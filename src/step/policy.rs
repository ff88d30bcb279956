//! Which addresses `http` steps may reach. Link-local and cloud metadata
//! addresses are always refused; `--deny-private-network` also refuses
//! loopback, RFC 1918, CGNAT, IPv6 unique-local and unspecified addresses.
//! An IPv6 address that carries an IPv4 address (mapped, compatible, SIIT,
//! NAT64, 6to4, Teredo) is judged by the IPv4 address it carries, since
//! that is where a translator delivers it. Names are checked on the
//! addresses they resolve to, at connect time (through the HTTP client's
//! resolver), so DNS rebinding cannot slip past; IP literals (in whatever
//! spelling the URL parser accepts: decimal, octal, hex) and redirect
//! targets are checked before anything is sent. The clients use no proxy
//! (see [`crate::step::http::Sender::live`]): a proxy would connect on our
//! behalf to addresses this policy never sees.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub deny_private: bool,
}

/// What kind of special address a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A cloud's instance metadata service (credentials live there).
    Metadata,
    /// 169.254.0.0/16 and fe80::/10: where most clouds put metadata too.
    LinkLocal,
    Loopback,
    Private,
    CarrierNat,
    UniqueLocal,
    Unspecified,
}

impl Class {
    fn describe(self) -> &'static str {
        match self {
            Class::Metadata => "a cloud metadata address",
            Class::LinkLocal => "a link-local / cloud metadata address",
            Class::Loopback => "a loopback address",
            Class::Private => "a private (RFC 1918) address",
            Class::CarrierNat => "a carrier-grade NAT address",
            Class::UniqueLocal => "a unique-local address",
            Class::Unspecified => "an unspecified address",
        }
    }

    /// Refused even without `--deny-private-network`.
    fn always_refused(self) -> bool {
        match self {
            Class::Metadata | Class::LinkLocal => true,
            Class::Loopback
            | Class::Private
            | Class::CarrierNat
            | Class::UniqueLocal
            | Class::Unspecified => false,
        }
    }
}

/// Metadata services outside 169.254.0.0/16, as their clouds document
/// them: Alibaba Cloud (100.100.100.200), Oracle Cloud (192.0.0.192) and
/// Azure's platform endpoint (168.63.129.16, the WireServer).
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// AWS's IPv6 instance metadata endpoint.
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

fn v4_class(ip: Ipv4Addr) -> Option<Class> {
    let o = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Some(Class::Metadata);
    }
    if o[0] == 169 && o[1] == 254 {
        return Some(Class::LinkLocal);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    if ip.is_private() {
        return Some(Class::Private);
    }
    if o[0] == 100 && (64..128).contains(&o[1]) {
        return Some(Class::CarrierNat);
    }
    if o[0] == 0 {
        return Some(Class::Unspecified);
    }
    None
}

/// The IPv4 addresses an IPv6 address may deliver to. Several for the
/// NAT64 local-use prefix, whose operator picks where the IPv4 address
/// sits (RFC 6052 §2.2): every placement whose suffix is zero counts.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let b = ip.octets();
    let s = ip.segments();
    let v4 = |i: [usize; 4]| Ipv4Addr::new(b[i[0]], b[i[1]], b[i[2]], b[i[3]]);
    let last = v4([12, 13, 14, 15]);
    let zero = |range: std::ops::Range<usize>| b[range].iter().all(|x| *x == 0);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and SIIT ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => vec![last],
        // IPv4-compatible ::a.b.c.d (:: and ::1 are IPv6's own).
        [0, 0, 0, 0, 0, 0, _, _] => vec![last],
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![last],
        // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215).
        [0x64, 0xff9b, 1, ..] => {
            let mut out = vec![last];
            // Bits 64..72 (byte 8) are zero in every RFC 6052 placement.
            if b[8] == 0 {
                if zero(11..16) {
                    out.push(v4([6, 7, 9, 10]));
                }
                if zero(12..16) {
                    out.push(v4([7, 9, 10, 11]));
                }
                if zero(13..16) {
                    out.push(v4([9, 10, 11, 12]));
                }
            }
            out
        }
        // 6to4 2002:a.b.c.d::/48.
        [0x2002, ..] => vec![v4([2, 3, 4, 5])],
        // Teredo 2001:0::/32: the client's address, bits inverted.
        [0x2001, 0, ..] => vec![Ipv4Addr::from(!u32::from(last))],
        _ => Vec::new(),
    }
}

/// The class of an IPv6 address, and the IPv4 address that decided it
/// when it carries one.
fn v6_class(ip: Ipv6Addr) -> Option<(Class, Option<Ipv4Addr>)> {
    if METADATA_V6.contains(&ip) {
        return Some((Class::Metadata, None));
    }
    if ip.is_loopback() {
        return Some((Class::Loopback, None));
    }
    if ip.is_unspecified() {
        return Some((Class::Unspecified, None));
    }
    // The most restrictive verdict over every address it may deliver to.
    let mut worst: Option<(Class, Option<Ipv4Addr>)> = None;
    for v4 in embedded_v4(ip) {
        if let Some(c) = v4_class(v4) {
            if worst.is_none_or(|(w, _)| c.always_refused() && !w.always_refused()) {
                worst = Some((c, Some(v4)));
            }
        }
    }
    if worst.is_some() {
        return worst;
    }
    let s = ip.segments();
    if s[0] & 0xffc0 == 0xfe80 {
        return Some((Class::LinkLocal, None));
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some((Class::UniqueLocal, None));
    }
    None
}

impl OutboundPolicy {
    /// `Err` says why `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let (class, carried) = match ip {
            IpAddr::V4(v4) => match v4_class(v4) {
                Some(c) => (c, None),
                None => return Ok(()),
            },
            IpAddr::V6(v6) => match v6_class(v6) {
                Some(found) => found,
                None => return Ok(()),
            },
        };
        let always = class.always_refused();
        if !always && !self.deny_private {
            return Ok(());
        }
        Err(format!(
            "refused by the outbound policy: {ip} is {}{}{}",
            match carried {
                Some(v4) => format!("{v4} carried in IPv6, "),
                None => String::new(),
            },
            class.describe(),
            if always {
                ""
            } else {
                " (--deny-private-network)"
            }
        ))
    }

    /// Check a URL whose host is an IP literal (names are checked when
    /// they are resolved). The parsed host is used, so every spelling the
    /// URL parser turns into an address (`2130706433`, `0x7f.1`, `0177.1`)
    /// is judged as the address it is.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => Ok(()),
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

    /// Every spelling of an address the policy must see through: IPv4
    /// embedded in IPv6 (mapped, compatible, SIIT, NAT64 well-known and
    /// local-use, 6to4, Teredo), other clouds' metadata addresses, and
    /// IPv4 literals written in decimal, octal or hex inside a URL.
    #[test]
    fn every_address_form() {
        const REFUSED: Verdict = Verdict::Refused;
        const STRICT: Verdict = Verdict::RefusedWhenStrict;
        const OPEN: Verdict = Verdict::Allowed;
        // (address or URL, verdict)
        let table: &[(&str, Verdict)] = &[
            // Plain IPv4 and IPv6.
            ("169.254.169.254", REFUSED),
            ("169.254.0.23", REFUSED),
            ("100.100.100.200", REFUSED),
            ("192.0.0.192", REFUSED),
            ("168.63.129.16", REFUSED),
            ("fd00:ec2::254", REFUSED),
            ("fe80::1", REFUSED),
            ("127.0.0.1", STRICT),
            ("10.1.2.3", STRICT),
            ("100.64.0.1", STRICT),
            ("100.100.100.201", STRICT),
            ("0.0.0.0", STRICT),
            ("::1", STRICT),
            ("::", STRICT),
            ("fd12::1", STRICT),
            ("93.184.216.34", OPEN),
            ("192.0.0.193", OPEN),
            ("2606:2800:220:1::1", OPEN),
            // IPv4-mapped ::ffff:a.b.c.d.
            ("::ffff:169.254.169.254", REFUSED),
            ("::ffff:100.100.100.200", REFUSED),
            ("::ffff:127.0.0.1", STRICT),
            ("::ffff:93.184.216.34", OPEN),
            // IPv4-compatible ::a.b.c.d (deprecated, still routable by some stacks).
            ("::169.254.169.254", REFUSED),
            ("::192.0.0.192", REFUSED),
            ("::127.0.0.1", STRICT),
            ("::10.0.0.1", STRICT),
            ("::93.184.216.34", OPEN),
            // SIIT IPv4-translated ::ffff:0:a.b.c.d.
            ("::ffff:0:169.254.169.254", REFUSED),
            ("::ffff:0:127.0.0.1", STRICT),
            // NAT64 well-known prefix 64:ff9b::/96.
            ("64:ff9b::169.254.169.254", REFUSED),
            ("64:ff9b::a9fe:a9fe", REFUSED),
            ("64:ff9b::100.100.100.200", REFUSED),
            ("64:ff9b::127.0.0.1", STRICT),
            ("64:ff9b::10.0.0.1", STRICT),
            ("64:ff9b::93.184.216.34", OPEN),
            // NAT64 local-use prefix 64:ff9b:1::/48, at each RFC 6052 length.
            ("64:ff9b:1::169.254.169.254", REFUSED),
            ("64:ff9b:1:a9fe:a9:fe00::", REFUSED),
            ("64:ff9b:1:a9:fe:a9fe::", REFUSED),
            ("64:ff9b:1:0:a9:fea9:fe00:0", REFUSED),
            ("64:ff9b:1::10.0.0.1", STRICT),
            ("64:ff9b:1::93.184.216.34", OPEN),
            // 6to4 2002:a.b.c.d::/48.
            ("2002:a9fe:a9fe::1", REFUSED),
            ("2002:6464:64c8::", REFUSED),
            ("2002:7f00:1::1", STRICT),
            ("2002:c0a8:101::1", STRICT),
            ("2002:5db8:d822::1", OPEN),
            // Teredo 2001:0::/32: the client is the last 32 bits, inverted.
            ("2001:0:4136:e378:8000:63bf:5601:5601", REFUSED),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", STRICT),
            ("2001:0:4136:e378:8000:63bf:a247:27dd", OPEN),
            // IPv4 literals in a URL, in every spelling the URL parser takes.
            ("http://169.254.169.254/latest", REFUSED),
            ("http://2852039166/", REFUSED),
            ("http://0xa9fea9fe/", REFUSED),
            ("http://0251.0376.0251.0376/", REFUSED),
            ("http://0xa9.0xfe.0xa9.0xfe/", REFUSED),
            ("http://169.254.43518/", REFUSED),
            ("http://169.254.169.254./", REFUSED),
            ("http://[::ffff:a9fe:a9fe]/", REFUSED),
            ("http://[64:ff9b::a9fe:a9fe]:8080/", REFUSED),
            ("http://[2002:a9fe:a9fe::1]/", REFUSED),
            ("http://[fd00:ec2::254]/", REFUSED),
            ("http://2130706433/", STRICT),
            ("http://0x7f.1/", STRICT),
            ("http://017700000001/", STRICT),
            ("http://127.1/", STRICT),
            ("http://[::ffff:7f00:1]/", STRICT),
            ("http://93.184.216.34/", OPEN),
            // Names are judged when they resolve, not here.
            ("http://example.com/", OPEN),
        ];
        let default = OutboundPolicy::default();
        let strict = OutboundPolicy { deny_private: true };
        for (input, verdict) in table {
            let judge = |p: OutboundPolicy| -> Result<(), String> {
                if input.contains("://") {
                    p.check_url(&reqwest::Url::parse(input).expect("a valid URL"))
                } else {
                    p.check(input.parse().expect("a valid IP address"))
                }
            };
            let (by_default, when_strict) = (judge(default), judge(strict));
            let got = match (&by_default, &when_strict) {
                (Err(_), Err(_)) => Verdict::Refused,
                (Ok(()), Err(_)) => Verdict::RefusedWhenStrict,
                (Ok(()), Ok(())) => Verdict::Allowed,
                (Err(_), Ok(())) => panic!("{input}: refused by default but not when strict"),
            };
            assert_eq!(got, *verdict, "{input}: {by_default:?} / {when_strict:?}");
            if let Err(e) = by_default.and(when_strict) {
                assert!(
                    e.starts_with("refused by the outbound policy: "),
                    "{input}: {e}"
                );
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        Refused,
        RefusedWhenStrict,
        Allowed,
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
