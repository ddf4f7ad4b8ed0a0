//! The address filter: IP ranges no outbound request may reach.
//!
//! The ranges come from the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
//! its updates) plus multicast and the reserved IPv4 block: everything that is not a globally
//! reachable unicast address, and in particular everything that reaches this host, its private
//! network or a cloud metadata service (OWASP SSRF Prevention Cheat Sheet, "Available
//! protections": block private and link-local ranges).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Forbidden IPv4 networks: (network, prefix length).
const FORBIDDEN_V4: &[(Ipv4Addr, u8)] = &[
    // "This network" (RFC 791); connecting to 0.0.0.0 reaches the local host on Linux.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // Private (RFC 1918).
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // Shared address space for carrier-grade NAT (RFC 6598).
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // Loopback (RFC 1122).
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local (RFC 3927), including the 169.254.169.254 metadata service of AWS, GCP and Azure.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // Private (RFC 1918).
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890), including DS-Lite and NAT64 discovery.
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation, TEST-NET-1 (RFC 5737).
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    // Deprecated 6to4 relay anycast (RFC 7526).
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    // Private (RFC 1918).
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking (RFC 2544).
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Documentation, TEST-NET-2 (RFC 5737).
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    // Documentation, TEST-NET-3 (RFC 5737).
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // Multicast (RFC 5771).
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved (RFC 1112), including the limited broadcast 255.255.255.255 (RFC 919).
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Forbidden IPv6 networks: (network, prefix length). The forms that embed an IPv4 address are
/// judged by that address instead (see [`embedded_v4`]); `::` and `::1` are refused before.
const FORBIDDEN_V6: &[(Ipv6Addr, u8)] = &[
    // Local-use NAT64 (RFC 8215): translates to an IPv4 network of the operator's choosing.
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // Discard-only (RFC 6666).
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    // Teredo (RFC 4380): tunnels to an IPv4 client whose address is obfuscated in the last 32 bits.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    // Benchmarking (RFC 5180).
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48),
    // ORCHID (RFC 4843, deprecated) and ORCHIDv2 (RFC 7343): identifiers, not routable.
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28),
    // Documentation (RFC 3849 and RFC 9637).
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    // Segment-routing SIDs (RFC 9602): not globally reachable.
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16),
    // Unique local (RFC 4193).
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    // Link-local (RFC 4291).
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // Site-local (RFC 3879, deprecated but still routed inside some networks).
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    // Multicast (RFC 4291).
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// IPv6 forms that carry an IPv4 address in their low 32 bits: (network, prefix length).
const EMBEDDING_V6: &[(Ipv6Addr, u8)] = &[
    // IPv4-mapped, ::ffff:a.b.c.d (RFC 4291): the socket layer connects to the IPv4 address.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    // IPv4-translated, ::ffff:0:a.b.c.d (RFC 2765).
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96),
    // IPv4-compatible, ::a.b.c.d (RFC 4291, deprecated).
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
    // NAT64 well-known prefix, 64:ff9b::a.b.c.d (RFC 6052): the translator connects to a.b.c.d.
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
];

/// 6to4, 2002:aabb:ccdd::/48 (RFC 3056): the relay delivers to the IPv4 address aa.bb.cc.dd.
const SIX_TO_FOUR: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// True when no outbound request may connect to `ip`: loopback, private, link-local (with the
/// metadata service), carrier-grade NAT, "this network", unspecified, broadcast, multicast,
/// documentation, benchmarking, IETF-reserved and the IPv6 equivalents (unique local, site-local,
/// link-local, discard-only). IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4
/// addresses are judged by the IPv4 address they carry.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    FORBIDDEN_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        bits & mask == u32::from(net) & mask
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    FORBIDDEN_V6.iter().any(|&(net, len)| in_v6(ip, net, len))
}

/// The IPv4 address an IPv6 address stands for, if it is one of the embedding forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if EMBEDDING_V6.iter().any(|&(net, len)| in_v6(ip, net, len)) {
        // The low 32 bits; the truncation is the point.
        return Some(Ipv4Addr::from(bits as u32));
    }
    let (net, len) = SIX_TO_FOUR;
    if in_v6(ip, net, len) {
        // Bits 16..48 from the top.
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(ip: &str, forbidden: bool) {
        let parsed: IpAddr = ip.parse().unwrap();
        assert_eq!(
            is_forbidden_ip(parsed),
            forbidden,
            "{ip} should be {}",
            if forbidden { "forbidden" } else { "allowed" }
        );
    }

    #[test]
    fn forbidden_and_allowed_ipv4_addresses_are_told_apart() {
        let table = [
            // IPv4: loopback, "this network", unspecified.
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            // RFC 1918, edges included.
            ("10.0.0.5", true),
            ("10.255.255.255", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.15.255.255", false),
            ("172.32.0.0", false),
            ("192.168.1.1", true),
            // Link-local and the metadata service.
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            // Carrier-grade NAT, edges included.
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.63.255.255", false),
            ("100.128.0.0", false),
            // IETF, documentation, benchmarking, relay anycast.
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("192.88.99.1", true),
            // Multicast, reserved, broadcast.
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            // Public IPv4.
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("93.184.215.14", false),
            ("192.0.1.1", false),
            ("223.255.255.255", false),
        ];
        for (ip, forbidden) in table {
            check(ip, forbidden);
        }
    }

    #[test]
    fn forbidden_and_allowed_ipv6_addresses_are_told_apart() {
        let table = [
            // IPv6 loopback, unspecified, link-local, site-local, unique local, multicast.
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("fc00::1", true),
            ("fd12:3456:789a::1", true),
            ("ff02::1", true),
            // IPv6 discard-only, documentation, benchmarking, Teredo, ORCHIDv2, SRv6.
            ("100::1", true),
            ("100::1:0:0:1", true),
            ("2001:db8::1", true),
            ("3fff::1", true),
            ("2001:2::1", true),
            ("2001::1", true),
            ("2001:20::1", true),
            ("5f00::1", true),
            // IPv4-mapped and IPv4-translated, judged by the IPv4 address.
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::ffff:0:127.0.0.1", true),
            ("::ffff:0:8.8.8.8", false),
            // IPv4-compatible.
            ("::127.0.0.1", true),
            ("::10.1.2.3", true),
            ("::8.8.8.8", false),
            // NAT64, well-known prefix by the IPv4 address; local-use prefix always.
            ("64:ff9b::127.0.0.1", true),
            ("64:ff9b::169.254.169.254", true),
            ("64:ff9b::192.168.0.1", true),
            ("64:ff9b::8.8.8.8", false),
            ("64:ff9b:1::8.8.8.8", true),
            // 6to4 by the IPv4 address in bits 16..48.
            ("2002:7f00:1::", true),
            ("2002:a9fe:a9fe::1", true),
            ("2002:c0a8:101::1", true),
            ("2002:808:808::1", false),
            // Public IPv6.
            ("2606:4700:4700::1111", false),
            ("2001:4860:4860::8888", false),
            ("2a00:1450:4001:82b::200e", false),
        ];
        for (ip, forbidden) in table {
            check(ip, forbidden);
        }
    }
}
