//! The client's address behind trusted reverse proxies: read from `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`, and only when the TCP peer is a configured proxy.
//!
//! # How the address is chosen
//!
//! From a peer that is not in `http.trusted_proxies` both headers are ignored completely: anyone
//! can write them, so believing them would let a client pick its own rate-limit bucket and the
//! address its audit records name (OWASP Logging Cheat Sheet, "Event attributes": take the source
//! address from the connection unless a trusted intermediary supplies it).
//!
//! From a trusted peer, `Forwarded` is read when present (all its lines, in order, as one list:
//! RFC 9110 §5.3), otherwise `X-Forwarded-For`. Each proxy appends the address it received the
//! connection from, so only the right-hand end of the list was written by proxies we trust;
//! anything to the left of the first untrusted address may have come from the client itself.
//! The list is therefore walked from the RIGHT, skipping addresses that are themselves trusted
//! proxies, and the first untrusted address is the client (RFC 7239 §8.3 and §5.2; the same
//! walk as nginx's `real_ip_recursive on`). When every address is trusted, the left-most is the
//! client.
//!
//! An obfuscated identifier (`for=_hidden`, RFC 7239 §6.3) or `unknown` (§6.2) is not an address:
//! the walk stops there, and the address nearest to it on its right (a trusted proxy, or the peer)
//! is the client, so nothing left of an unidentifiable hop is believed. A value that does not
//! parse where the walk reads it (a bad address, a broken quoted string, a repeated parameter) is
//! refused whole: the peer is the client. Elements left of the client are never interpreted, so
//! garbage a client puts at the start of the header, which a proxy then appends to, changes
//! nothing.
//!
//! `X-Forwarded-Proto` is not read: HSTS and the cookies' `Secure` attribute are set on every
//! response whatever the scheme (see `middleware::SecurityHeaders`), so no header can turn them
//! off.

use std::net::{IpAddr, Ipv6Addr};

use poem::http::HeaderMap;

use crate::config::TrustedProxies;

/// The client of a request, resolved once in the outermost middleware and kept in the request's
/// extensions; [`crate::middleware::client_ip`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// One hop of a forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier, or a `Forwarded` element without `for=`.
    Hidden,
}

/// A value that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

/// The client address of a request from `peer` carrying `headers`.
pub(crate) fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let (list, forwarded) = match joined(headers, "forwarded") {
        Some(list) => (list, true),
        None => match joined(headers, "x-forwarded-for") {
            Some(list) => (list, false),
            None => return peer,
        },
    };
    walk(peer, &list, forwarded, trusted).unwrap_or(peer)
}

/// Every line of header `name` joined into one list, in order; `None` when absent. A line that is
/// not visible ASCII counts as empty text, so the walk finds nothing readable in it.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    Some(lines.map(|v| v.to_str().unwrap_or("\u{0}")).collect::<Vec<_>>().join(","))
}

/// The right-to-left walk over `list` (see the module documentation).
fn walk(peer: IpAddr, list: &str, forwarded: bool, trusted: &TrustedProxies) -> Result<IpAddr, Malformed> {
    // The address nearest, on the right, to the hop being read.
    let mut nearest = peer;
    for element in ElementsFromRight::new(list) {
        let element = element?.trim_matches(OWS);
        // RFC 9110 §5.6.1: a recipient ignores empty list elements.
        if element.is_empty() {
            continue;
        }
        let hop = if forwarded { forwarded_element(element)? } else { node(element, false)? };
        match hop {
            Hop::Addr(ip) if trusted.contains(ip) => nearest = ip,
            Hop::Addr(ip) => return Ok(ip),
            Hop::Hidden => return Ok(nearest),
        }
    }
    Ok(nearest)
}

const OWS: &[char] = &[' ', '\t'];

/// Comma-separated elements from the right-hand end, commas inside quoted strings kept (RFC 9110
/// §5.6.4). Only as much of the list as is read is split, so text left of the client is never
/// looked at.
struct ElementsFromRight<'a> {
    rest: Option<&'a str>,
}

impl<'a> ElementsFromRight<'a> {
    fn new(list: &'a str) -> Self {
        ElementsFromRight { rest: Some(list) }
    }
}

impl<'a> Iterator for ElementsFromRight<'a> {
    type Item = Result<&'a str, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        let mut i = bytes.len();
        let mut quoted = false;
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b'"' => {
                    // Inside a quoted string, `"` preceded by an odd run of backslashes is a
                    // quoted-pair, not the opening quote.
                    let backslashes = bytes[..i].iter().rev().take_while(|b| **b == b'\\').count();
                    if !quoted || backslashes % 2 == 0 {
                        quoted = !quoted;
                    }
                }
                b',' if !quoted => {
                    self.rest = Some(&rest[..i]);
                    return Some(Ok(&rest[i + 1..]));
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(if quoted { Err(Malformed) } else { Ok(rest) })
    }
}

/// One `Forwarded` element: `pair *( ";" pair )` with `pair = token "=" ( token / quoted-string )`
/// (RFC 7239 §4). Parameter names are case-insensitive and none may repeat; only `for` is used.
fn forwarded_element(element: &str) -> Result<Hop, Malformed> {
    let mut seen: Vec<String> = Vec::new();
    let mut for_value = None;
    let mut rest = element;
    loop {
        rest = rest.trim_start_matches(OWS);
        // The grammar allows empty pairs: `for=192.0.2.1;` and `;;for=192.0.2.1`.
        if rest.is_empty() {
            break;
        }
        if let Some(next) = rest.strip_prefix(';') {
            rest = next;
            continue;
        }
        let eq = rest.find('=').ok_or(Malformed)?;
        let name = &rest[..eq];
        if !is_token(name) {
            return Err(Malformed);
        }
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(Malformed);
        }
        let (value, after) = value(&rest[eq + 1..])?;
        if name == "for" {
            for_value = Some(value);
        }
        seen.push(name);
        let after = after.trim_start_matches(OWS);
        match after.strip_prefix(';') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return Err(Malformed),
        }
    }
    match for_value {
        Some(v) => node(&v, true),
        None => Ok(Hop::Hidden),
    }
}

/// A token or quoted string at the start of `text`, unquoted, and the text after it.
fn value(text: &str) -> Result<(String, &str), Malformed> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out, &quoted[i + 1..])),
                '\\' => out.push(chars.next().ok_or(Malformed)?.1),
                c if c == '\t' || (' '..='~').contains(&c) => out.push(c),
                _ => return Err(Malformed),
            }
        }
        Err(Malformed)
    } else {
        let end = text.find(|c: char| !is_tchar(c)).unwrap_or(text.len());
        if end == 0 {
            return Err(Malformed);
        }
        Ok((text[..end].to_owned(), &text[end..]))
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// A node (RFC 7239 §6): an IPv4 address, a bracketed IPv6 address, `unknown` or (in `Forwarded`)
/// an obfuscated `_identifier`, each with an optional port (digits or obfuscated). In
/// `X-Forwarded-For` a bare IPv6 address is taken too, as proxies write it there; in `Forwarded`
/// it must be bracketed (RFC 7239 §6), since `2001:db8::17:80` could be an address or one with a
/// port.
fn node(text: &str, forwarded: bool) -> Result<Hop, Malformed> {
    if !forwarded {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Hop::Addr(ip.to_canonical()));
        }
    }
    let (name, port) = if let Some(inner) = text.strip_prefix('[') {
        let close = inner.find(']').ok_or(Malformed)?;
        let ip: Ipv6Addr = inner[..close].parse().map_err(|_| Malformed)?;
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(Malformed),
        };
        (Hop::Addr(IpAddr::V6(ip).to_canonical()), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        let hop = if name.eq_ignore_ascii_case("unknown") || (forwarded && is_obfuscated(name)) {
            Hop::Hidden
        } else {
            Hop::Addr(name.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).map_err(|_| Malformed)?)
        };
        (hop, port)
    };
    match port {
        None => Ok(name),
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => Ok(name),
        Some(p) if is_obfuscated(p) => Ok(name),
        Some(_) => Err(Malformed),
    }
}

/// `"_" 1*( ALPHA / DIGIT / "." / "_" / "-" )` (RFC 7239 §6.3).
fn is_obfuscated(s: &str) -> bool {
    s.len() > 1 && s.starts_with('_') && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    const PEER: &str = "10.0.0.2";

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "2001:db8:cafe::/48"]).unwrap()
    }

    /// The client address for a request from `peer` with these header lines.
    fn client(peer: &str, lines: &[(&'static str, &str)]) -> String {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        client_addr(peer.parse().unwrap(), &headers, &proxies()).to_string()
    }

    fn xff(value: &str) -> String {
        client(PEER, &[("x-forwarded-for", value)])
    }

    fn fwd(value: &str) -> String {
        client(PEER, &[("forwarded", value)])
    }

    #[test]
    fn the_right_most_untrusted_address_of_x_forwarded_for_is_the_client() {
        assert_eq!(xff("203.0.113.7"), "203.0.113.7");
        assert_eq!(xff("198.51.100.1, 203.0.113.7"), "203.0.113.7", "the left part may be the client's own");
        assert_eq!(xff("  198.51.100.1 ,203.0.113.7  "), "203.0.113.7");
    }

    #[test]
    fn trusted_hops_are_skipped_walking_from_the_right() {
        assert_eq!(xff("198.51.100.1, 203.0.113.7, 10.1.1.1, 10.2.2.2"), "203.0.113.7");
        assert_eq!(fwd("for=198.51.100.1, for=203.0.113.7, for=10.1.1.1"), "203.0.113.7");
        assert_eq!(fwd(r#"for=203.0.113.7, for="[2001:db8:cafe::17]:4711""#), "203.0.113.7");
    }

    #[test]
    fn when_every_hop_is_trusted_the_left_most_is_the_client() {
        assert_eq!(xff("10.9.9.9, 10.1.1.1"), "10.9.9.9");
        assert_eq!(fwd("for=10.9.9.9"), "10.9.9.9");
    }

    #[test]
    fn forged_headers_from_an_untrusted_peer_are_ignored() {
        let forged = [
            ("x-forwarded-for", "198.51.100.99"),
            ("forwarded", "for=198.51.100.99;proto=https"),
            ("x-real-ip", "198.51.100.99"),
        ];
        assert_eq!(client("203.0.113.50", &forged), "203.0.113.50");
        assert_eq!(client("2001:db8:beef::1", &forged), "2001:db8:beef::1");
        let none_trusted = client_addr(
            PEER.parse().unwrap(),
            &[("x-forwarded-for", "198.51.100.99")]
                .into_iter()
                .map(|(n, v)| (poem::http::HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            &TrustedProxies::default(),
        );
        assert_eq!(none_trusted.to_string(), PEER, "with no proxy configured the headers are never read");
    }

    #[test]
    fn without_forwarding_headers_a_trusted_peer_is_the_client() {
        assert_eq!(client(PEER, &[]), PEER);
        assert_eq!(client("::ffff:10.0.0.2", &[]), PEER, "an IPv4-mapped peer is its IPv4 address");
    }

    #[test]
    fn forwarded_takes_quoted_ipv6_with_ports_and_ipv4_with_ports() {
        assert_eq!(fwd(r#"for="[2001:db8::17]:4711""#), "2001:db8::17");
        assert_eq!(fwd(r#"for="[2001:db8::17]""#), "2001:db8::17");
        assert_eq!(fwd(r#"for="[::1]:8080""#), "::1");
        assert_eq!(fwd(r#"for="203.0.113.7:443""#), "203.0.113.7");
        assert_eq!(fwd(r#"For="203.0.113.7";proto=https;by=_lb"#), "203.0.113.7", "names are case-insensitive");
        assert_eq!(fwd(r#"proto=https; for="[2001:db8::17]:_port" ;host=example.com"#), "2001:db8::17");
        assert_eq!(fwd(r#"for="[::ffff:203.0.113.7]""#), "203.0.113.7");
    }

    #[test]
    fn forwarded_is_preferred_to_x_forwarded_for() {
        let lines = [("x-forwarded-for", "198.51.100.1"), ("forwarded", "for=203.0.113.7")];
        assert_eq!(client(PEER, &lines), "203.0.113.7");
    }

    #[test]
    fn several_header_lines_are_one_list_in_their_order() {
        let lines = [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "198.51.100.1, 10.1.1.1")];
        assert_eq!(client(PEER, &lines), "198.51.100.1");
        let lines = [("forwarded", "for=198.51.100.1"), ("forwarded", "for=203.0.113.7;proto=https")];
        assert_eq!(client(PEER, &lines), "203.0.113.7");
    }

    #[test]
    fn obfuscated_and_unknown_identifiers_are_not_addresses_and_nothing_left_of_them_is_believed() {
        assert_eq!(fwd("for=_hidden"), PEER);
        assert_eq!(fwd("for=unknown"), PEER);
        assert_eq!(fwd(r#"for="_gazonk""#), PEER);
        assert_eq!(fwd("for=198.51.100.1, for=_hidden, for=10.1.1.1"), "10.1.1.1");
        assert_eq!(fwd("for=198.51.100.1, for=UNKNOWN"), PEER);
        assert_eq!(fwd("for=198.51.100.1, proto=https"), PEER, "an element without `for` names no one");
        assert_eq!(xff("198.51.100.1, unknown"), PEER);
        assert_eq!(xff("198.51.100.1, _hidden"), PEER, "obfuscated identifiers belong to `Forwarded` only");
    }

    #[test]
    fn malformed_values_fall_back_to_the_peer() {
        for bad in [
            "for=203.0.113.300",
            "for=[2001:db8::17]",
            "for=\"[2001:db8::17\"",
            "for=\"[2001:db8::17]x\"",
            "for=\"203.0.113.7:99999x\"",
            "for=\"203.0.113.7:123456\"",
            "for=203.0.113.7;for=198.51.100.1",
            "for=\"203.0.113.7",
            "for=",
            "=203.0.113.7",
            "for 203.0.113.7",
            "for=203.0.113.7 junk",
            "for=a.b.c.d",
            "for=\"2001:db8::17:80\"x",
            "for=\"2001:db8::17\"",
        ] {
            assert_eq!(fwd(bad), PEER, "Forwarded: {bad}");
        }
        for bad in ["203.0.113.7/24", "not-an-ip", "203.0.113", "203.0.113.7:port", "[2001:db8::17", "::1]"] {
            assert_eq!(xff(bad), PEER, "X-Forwarded-For: {bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap());
        let got = client_addr(PEER.parse().unwrap(), &headers, &proxies());
        assert_eq!(got.to_string(), PEER, "a value that is not ASCII is refused");
    }

    #[test]
    fn garbage_left_of_the_client_is_never_read() {
        assert_eq!(xff("not an address, 203.0.113.7"), "203.0.113.7");
        assert_eq!(fwd(r#"for="unterminated, for=203.0.113.7"#), "203.0.113.7");
        assert_eq!(fwd(r#"for=garbage;;, for="[2001:db8::17]:1""#), "2001:db8::17");
        assert_eq!(xff("203.0.113.7, not an address"), PEER, "but not right of it");
    }

    #[test]
    fn empty_list_elements_are_ignored() {
        assert_eq!(xff("203.0.113.7, ,"), "203.0.113.7");
        assert_eq!(fwd(",for=203.0.113.7,,"), "203.0.113.7");
        assert_eq!(fwd(";for=203.0.113.7;;proto=http;"), "203.0.113.7", "and so are empty pairs");
        assert_eq!(xff(""), PEER);
    }

    #[test]
    fn quoted_strings_may_hold_commas_and_escaped_quotes() {
        assert_eq!(fwd(r#"for=203.0.113.7;host="a,b", for=10.1.1.1;by="x\"y,z""#), "203.0.113.7");
        assert_eq!(fwd(r#"for="\2\0\3.0.113.7""#), "203.0.113.7", "a quoted-pair stands for its character");
    }
}
