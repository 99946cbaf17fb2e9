//! Addresses as upstream reads them: IPs and CIDRs (with `netutils`'
//! sloppy parsers, which keep Go 1.16's `net` behaviour), host:port pairs
//! and domain names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{dns1123_label, dns1123_subdomain, name_by, Errors, Path};

pub(crate) const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
pub(crate) const INVALID_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Go's `parseIPv4` as `netutils.ParseIPSloppy` keeps it: each part any
/// number of digits (leading zeros allowed) up to 255.
fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = part.bytes().try_fold(0u32, |n, b| Some(n * 10 + u32::from(b - b'0')).filter(|n| *n <= 255))?;
        *octet = n as u8;
    }
    Some(Ipv4Addr::from(octets))
}

/// An address in the family it is written in (`::ffff:1.2.3.4` is IPv6
/// here), as `ParseCIDRSloppy` needs it.
fn parse_ip_as_written(s: &str) -> Option<IpAddr> {
    if !s.contains(':') {
        return parse_ipv4_sloppy(s).map(IpAddr::V4);
    }
    // An embedded IPv4 tail is read as sloppily as a bare one.
    let v6 = match s.rsplit_once(':') {
        Some((head, tail)) if tail.contains('.') => format!("{head}:{}", parse_ipv4_sloppy(tail)?),
        _ => s.to_string(),
    };
    v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Go's view of an address: IPv4-mapped IPv6 addresses are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Upstream's `netutils.ParseIPSloppy`, the address as Go holds it (an
/// IPv4-mapped IPv6 address is IPv4).
pub(crate) fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    parse_ip_as_written(s).map(canonical)
}

/// Go's `IsIPv6`: an IPv4-mapped IPv6 address counts as IPv4.
pub(crate) fn is_ipv6(ip: IpAddr) -> bool {
    canonical(ip).is_ipv6()
}

/// Upstream's `netutils.IsDualStackIPs`: at least one address of each family.
pub(crate) fn is_dual_stack(ips: impl IntoIterator<Item = IpAddr>) -> bool {
    let (mut v4, mut v6) = (false, false);
    for ip in ips {
        if is_ipv6(ip) {
            v6 = true;
        } else {
            v4 = true;
        }
    }
    v4 && v6
}

/// A CIDR as `netutils.ParseCIDRSloppy` reads it: its network address (as
/// a number), its prefix length and its family's width in bits.
#[derive(Clone, Copy)]
pub(crate) struct Cidr {
    network: u128,
    pub(crate) prefix: u32,
    bits: u32,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (address, bits) = match parse_ip_as_written(ip)? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let significant = prefix.trim_start_matches('0');
        let prefix = if significant.is_empty() { 0 } else { significant.parse::<u32>().ok().filter(|p| *p <= bits)? };
        let cidr = Cidr { network: 0, prefix, bits };
        Some(Cidr { network: address & cidr.mask(), ..cidr })
    }

    fn mask(&self) -> u128 {
        let width = if self.bits == 128 { u128::MAX } else { (1u128 << self.bits) - 1 };
        if self.prefix == 0 {
            0
        } else {
            width & !((1u128 << (self.bits - self.prefix)) - 1)
        }
    }

    /// Go's `IPNet.Contains` of another network's address.
    pub(crate) fn contains(&self, other: &Cidr) -> bool {
        self.bits == other.bits && other.network & self.mask() == self.network
    }

    /// `netutils.IsIPv6CIDR`: the network address is not IPv4(-mapped).
    pub(crate) fn is_ipv6(&self) -> bool {
        self.bits == 128 && self.network >> 32 != 0xffff
    }
}

/// Upstream's `IsValidIP`.
pub(crate) fn valid_ip(value: &str, path: &Path) -> Errors {
    match parse_ip_sloppy(value) {
        Some(_) => vec![],
        None => vec![path.invalid(value, INVALID_IP)],
    }
}

/// Upstream's `IsValidCIDR`.
pub(crate) fn valid_cidr(value: &str, path: &Path) -> Errors {
    match Cidr::parse(value) {
        Some(_) => vec![],
        None => vec![path.invalid(value, INVALID_CIDR)],
    }
}

/// Upstream's `ValidateEndpointIP` (once `ValidateNonSpecialIP`), for
/// endpoints, endpoint slices and external IPs: no unspecified, loopback
/// or link-local addresses.
pub(crate) fn endpoint_ip(value: &str, path: &Path) -> Errors {
    let Some(ip) = parse_ip_sloppy(value) else {
        return vec![path.invalid(value, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0 == 0xfe80, v6.segments()[0] & 0xff0f == 0xff02),
    };
    if ip.is_unspecified() {
        errs.push(path.invalid(value, &format!("may not be unspecified ({value})")));
    }
    if ip.is_loopback() {
        errs.push(path.invalid(value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    if link_local {
        errs.push(path.invalid(value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_multicast {
        errs.push(path.invalid(value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"));
    }
    errs
}

/// Whether Go's `net.SplitHostPort` accepts `pair`: `host:port` or
/// `[host]:port`, with no other colon or bracket.
pub(crate) fn host_port_pair(pair: &str) -> bool {
    match pair.strip_prefix('[') {
        Some(rest) => rest.split_once(']').is_some_and(|(host, port)| !host.contains('[') && port.starts_with(':') && !port[1..].contains([':', '[', ']'])),
        None => pair.rsplit_once(':').is_some_and(|(host, _)| !host.contains(':')) && !pair.contains(['[', ']']),
    }
}

/// What `IsFullyQualifiedName` and `IsFullyQualifiedDomainName` share: a
/// DNS subdomain (a final dot allowed, and dropped) of at least `min`
/// (`words`) labels.
fn qualified_domain<'a>(name: &'a str, min: usize, words: &str, path: &Path) -> Result<&'a str, Errors> {
    if name.is_empty() {
        return Err(vec![path.required("")]);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Err(why) = dns1123_subdomain(name) {
        return Err(vec![path.invalid(name, &why)]);
    }
    if name.split('.').count() < min {
        return Err(vec![path.invalid(name, &format!("should be a domain with at least {words} segments separated by dots"))]);
    }
    Ok(name)
}

/// Upstream's `IsFullyQualifiedName`: at least three labels.
pub(crate) fn fully_qualified_name(name: &str, path: &Path) -> Errors {
    qualified_domain(name, 3, "three", path).err().unwrap_or_default()
}

/// Upstream's `IsFullyQualifiedDomainName`: at least two labels, each a
/// DNS label.
pub(crate) fn fully_qualified_domain_name(name: &str, path: &Path) -> Errors {
    let name = match qualified_domain(name, 2, "two", path) {
        Ok(name) => name,
        Err(errs) => return errs,
    };
    name.split('.').find_map(|label| dns1123_label(label).err().map(|why| vec![path.invalid(label, &why)])).unwrap_or_default()
}

/// A load balancer's hostname (Services' and Ingresses' status): a DNS
/// name, not an IP address.
pub(crate) fn load_balancer_hostname(hostname: &str, path: &Path) -> Errors {
    let mut errs = name_by(dns1123_subdomain, hostname, path);
    if parse_ip_sloppy(hostname).is_some() {
        errs.push(path.invalid(hostname, "must be a DNS name, not an IP address"));
    }
    errs
}

const HTTP_PATH_FMT: &str = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+";

/// Upstream's `IsDomainPrefixedPath` ("acme.io/foo"): a DNS subdomain, a
/// slash, and an HTTP path.
pub(crate) fn domain_prefixed_path(value: &str, path: &Path) -> Errors {
    if value.is_empty() {
        return vec![path.required("")];
    }
    let Some((host, rest)) = value.split_once('/').filter(|(h, r)| !h.is_empty() && !r.is_empty()) else {
        return vec![path.invalid(value, "must be a domain-prefixed path (such as \"acme.io/foo\")")];
    };
    let mut errs = name_by(dns1123_subdomain, host, path);
    if !rest.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c)) {
        errs.push(path.invalid(rest, &format!("Invalid path (regex used for validation is '{HTTP_PATH_FMT}')")));
    }
    errs
}
