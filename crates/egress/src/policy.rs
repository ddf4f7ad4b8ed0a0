//! The egress policy: which hosts outbound requests may reach and how, and the URL check that
//! runs before the first request and on every redirect hop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

use crate::error::{origin, EgressError};
use crate::ip::is_forbidden_ip;

/// Deadline for a whole outbound request, connection and redirects included. OWASP ASVS 5.0
/// V13.1.3 asks synchronous HTTP calls to other services for short timeouts so a slow or
/// silent remote cannot pile up waiting work; 30 s is the API's own request timeout
/// (`api::HttpConfig::request_timeout`), so a "test connection" call never outlives the request
/// that started it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Redirects followed before the request fails. Each hop is checked like the first URL; provider
/// APIs redirect once or twice at most, and a low ceiling bounds the work an attacker-controlled
/// redirect chain can cause (the WHATWG Fetch standard's ceiling is 20).
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Where outbound requests may go.
///
/// Build it with [`EgressPolicy::for_domains`]; [`crate::GuardedClient::new`] refuses a policy it
/// cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Host names that may be reached, with their subdomains: `slack.com` allows `slack.com` and
    /// `files.slack.com`, never `evilslack.com` or `slack.com.evil.net`. Case-insensitive, a
    /// trailing dot ignored, ASCII (punycode) names. An empty list allows no host. IP addresses
    /// do not belong here: an IP-literal host is allowed only as one of the `exceptions`.
    pub allowed_domains: Vec<String>,
    /// Allow every host name, not only `allowed_domains` (outbound webhooks go where a workspace
    /// says). Resolved addresses still pass the forbidden-range filter, so this opens the public
    /// internet only; IP literals stay refused.
    pub any_public_domain: bool,
    /// Refuse `http` (the first URL and every redirect). May be false only while `exceptions`
    /// is non-empty, that is in tests.
    pub require_https: bool,
    /// Deadline for the whole request, connection and redirects included.
    pub timeout: Duration,
    /// Redirects followed; one more is [`EgressError::TooManyRedirects`].
    pub max_redirects: usize,
    /// For tests only: exact socket addresses (IP and port) the address filter lets through, so a
    /// test can run a loopback server that is treated as allowed. An IP-literal URL is allowed
    /// only when its address and port are one of these. A host name may resolve to one of them
    /// (the [`crate::StaticResolver`] answer carries the port); while any exception is configured,
    /// a host name with an explicit port in the URL is refused, because the connector would put
    /// that port in place of the one the filter checked. Production policies leave this empty.
    pub exceptions: Vec<SocketAddr>,
    /// Refuse an explicit port other than the scheme's default (443, or 80 for `http`) unless
    /// an exception names it: an internal service on a public name rarely listens on 443, and
    /// webhook receivers have no need of another port (OWASP SSRF Prevention Cheat Sheet).
    pub standard_ports_only: bool,
}

/// Host names that name the platform's own services rather than the public internet: cloud
/// metadata endpoints (AWS `instance-data`, GCP `metadata.google.internal`), and the suffixes
/// reserved for local or private use: `.localhost` (RFC 6761 §6.3), `.local` (RFC 6762),
/// `.home.arpa` (RFC 8375), `.internal` (ICANN's private-use TLD), `.localdomain`. A
/// single-label name resolves through the resolver's search list, so it is internal too.
pub fn is_internal_name(host: &str) -> bool {
    const NAMES: &[&str] = &["metadata", "metadata.google.internal", "metadata.goog", "instance-data", "localhost"];
    const SUFFIXES: &[&str] = &[".localhost", ".local", ".home.arpa", ".internal", ".localdomain"];
    let host = normalise(host);
    !host.contains('.') || NAMES.contains(&host.as_str()) || SUFFIXES.iter().any(|s| host.ends_with(s))
}

impl EgressPolicy {
    /// An https-only policy for `domains` and their subdomains, with [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_REDIRECTS`] and no exceptions.
    pub fn for_domains(domains: &[&str]) -> EgressPolicy {
        EgressPolicy {
            allowed_domains: domains.iter().map(|domain| (*domain).to_owned()).collect(),
            any_public_domain: false,
            require_https: true,
            timeout: DEFAULT_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            exceptions: Vec::new(),
            standard_ports_only: false,
        }
    }

    /// An https-only policy for any host name on the public internet (every resolved address is
    /// still filtered), for destinations a tenant chooses such as webhook endpoints.
    pub fn public_internet() -> EgressPolicy {
        EgressPolicy { any_public_domain: true, ..EgressPolicy::for_domains(&[]) }
    }

    /// Adds the exceptions of a test's loopback servers and, when there are any, allows plain
    /// http (test servers have no certificate); without any the policy is unchanged. For tests
    /// only, see [`EgressPolicy::exceptions`].
    pub fn with_test_exceptions(mut self, exceptions: &[SocketAddr]) -> EgressPolicy {
        self.exceptions.extend_from_slice(exceptions);
        self.require_https &= exceptions.is_empty();
        self
    }

    /// Adds an exception: for tests only, see [`EgressPolicy::exceptions`].
    pub fn with_exception(mut self, addr: SocketAddr) -> EgressPolicy {
        self.exceptions.push(addr);
        self
    }

    /// True when `host` is an allowed domain or a subdomain of one.
    pub fn allows_domain(&self, host: &str) -> bool {
        let host = normalise(host);
        if self.any_public_domain {
            // `localhost` names loopback by definition (RFC 6761 section 6.3), whatever DNS says;
            // metadata and private-use names are never the public internet.
            return !host.is_empty() && !is_internal_name(&host);
        }
        !host.is_empty()
            && self.allowed_domains.iter().any(|allowed| {
                let allowed = normalise(allowed);
                if allowed.is_empty() {
                    return false;
                }
                host == allowed
                    || (host.len() > allowed.len()
                        && host.ends_with(&allowed)
                        && host.as_bytes()[host.len() - allowed.len() - 1] == b'.')
            })
    }

    /// True when `ip` and `port` are exactly one of the exceptions.
    pub fn is_exception(&self, ip: IpAddr, port: u16) -> bool {
        self.exceptions.iter().any(|exception| exception.ip() == ip && exception.port() == port)
    }

    /// Checks a URL as the client does before the first request and on every redirect hop:
    /// scheme (`https`, or `http` when the policy allows it), no user name or password, the host
    /// an allowed domain, and an IP-literal host only when it is an exact exception. Resolved
    /// addresses are checked later, at connection time.
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        match url.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            scheme => return Err(EgressError::SchemeNotAllowed { scheme: scheme.to_owned() }),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::UserinfoNotAllowed { origin: origin(url) });
        }
        let host = || url.host_str().unwrap_or_default().to_owned();
        match url.host() {
            Some(Host::Domain(domain)) => {
                if !self.allows_domain(domain) {
                    return Err(EgressError::DomainNotAllowed { host: host() });
                }
                // An answer may name an exception with its own port, which an explicit URL port
                // would replace at connection time: the filter could no longer vouch for it.
                if !self.exceptions.is_empty() && url.port().is_some() {
                    return Err(EgressError::ForbiddenAddress { host: host() });
                }
                if self.standard_ports_only && url.port().is_some() {
                    return Err(EgressError::PortNotAllowed { origin: origin(url) });
                }
                Ok(())
            }
            Some(Host::Ipv4(v4)) => self.check_ip_literal(IpAddr::V4(v4), url),
            Some(Host::Ipv6(v6)) => self.check_ip_literal(IpAddr::V6(v6), url),
            None => Err(EgressError::DomainNotAllowed { host: host() }),
        }
    }

    /// IP-literal hosts are connected to without DNS, so this is their only address check.
    fn check_ip_literal(&self, ip: IpAddr, url: &Url) -> Result<(), EgressError> {
        let port = url.port_or_known_default().unwrap_or(0);
        let host = url.host_str().unwrap_or_default().to_owned();
        if self.is_exception(ip, port) {
            Ok(())
        } else if is_forbidden_ip(ip) {
            Err(EgressError::ForbiddenAddress { host })
        } else {
            // A public address is still not on the allow-list, which holds names only.
            Err(EgressError::DomainNotAllowed { host })
        }
    }

    /// Refuses a policy that cannot be enforced as written.
    pub(crate) fn validate(&self) -> Result<(), EgressError> {
        let invalid = |reason| Err(EgressError::InvalidPolicy { reason });
        if !self.require_https && self.exceptions.is_empty() {
            return invalid("plain http is allowed only in tests, with exceptions configured");
        }
        if self.exceptions.iter().any(|exception| exception.port() == 0) {
            return invalid("an exception needs its exact port");
        }
        if self.timeout.is_zero() {
            return invalid("the timeout must be longer than zero");
        }
        for domain in &self.allowed_domains {
            let domain = normalise(domain);
            let well_formed = !domain.is_empty()
                && !domain.starts_with('.')
                && !domain.contains("..")
                && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && matches!(Host::parse(&domain), Ok(Host::Domain(_)));
            if !well_formed {
                return invalid("allowed domains must be ASCII host names, not IP addresses");
            }
        }
        Ok(())
    }
}

/// Lower-case, one trailing dot removed.
fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_host_matches_an_allowed_domain_or_its_subdomains_only() {
        let policy = EgressPolicy::for_domains(&["slack.com", "Amazonaws.com.", "r2.cloudflarestorage.com"]);
        let table = [
            ("slack.com", true),
            ("files.slack.com", true),
            ("a.b.slack.com", true),
            ("SLACK.COM", true),
            ("Files.Slack.Com", true),
            ("slack.com.", true),
            ("s3.eu-west-1.amazonaws.com", true),
            ("amazonaws.com", true),
            ("acct.r2.cloudflarestorage.com", true),
            ("evilslack.com", false),
            ("slack.com.evil.net", false),
            ("slack.co", false),
            ("lack.com", false),
            ("com", false),
            ("slack.com..", false),
            ("cloudflarestorage.com", false),
            ("", false),
            (".", false),
        ];
        for (host, allowed) in table {
            assert_eq!(policy.allows_domain(host), allowed, "{host}");
        }
    }

    #[test]
    fn the_public_internet_policy_allows_host_names_but_not_localhost_ip_literals_or_http() {
        let policy = EgressPolicy::public_internet();
        for host in ["example.com", "hooks.customer.io", "Example.COM."] {
            assert!(policy.allows_domain(host), "{host}");
        }
        for host in ["localhost", "LOCALHOST.", "api.localhost", ""] {
            assert!(!policy.allows_domain(host), "{host}");
        }
        assert!(policy.check_url(&url("https://example.com/hook")).is_ok());
        assert_eq!(policy.check_url(&url("http://example.com/hook")).unwrap_err().code(), "egress_scheme_not_allowed");
        assert_eq!(policy.check_url(&url("https://8.8.8.8/hook")).unwrap_err().code(), "egress_domain_not_allowed");
        assert_eq!(policy.check_url(&url("https://10.0.0.1/hook")).unwrap_err().code(), "egress_forbidden_address");
        assert_eq!(
            policy.check_url(&url("https://user:pw@example.com/hook")).unwrap_err().code(),
            "egress_userinfo_not_allowed"
        );
    }

    #[test]
    fn an_empty_allow_list_allows_no_host() {
        let policy = EgressPolicy::for_domains(&[]);
        for host in ["slack.com", "localhost", "a", ""] {
            assert!(!policy.allows_domain(host), "{host}");
        }
        let blank = EgressPolicy::for_domains(&["", "."]);
        assert!(!blank.allows_domain("slack.com"));
    }

    #[track_caller]
    fn check(policy: &EgressPolicy, input: &str, expected: Result<(), &str>) {
        let got = policy.check_url(&url(input)).map_err(|err| err.code());
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_host() {
        let policy = EgressPolicy::for_domains(&["slack.com"]);
        let table = [
            ("https://slack.com/api/auth.test", Ok(())),
            ("https://files.slack.com:8443/x?y=z", Ok(())),
            ("http://slack.com/", Err("egress_scheme_not_allowed")),
            ("ftp://slack.com/", Err("egress_scheme_not_allowed")),
            ("file:///etc/passwd", Err("egress_scheme_not_allowed")),
            ("gopher://slack.com/", Err("egress_scheme_not_allowed")),
            ("data:text/plain,hi", Err("egress_scheme_not_allowed")),
            ("https://user:pass@slack.com/", Err("egress_userinfo_not_allowed")),
            ("https://user@slack.com/", Err("egress_userinfo_not_allowed")),
            ("https://:pass@slack.com/", Err("egress_userinfo_not_allowed")),
            ("https://slack.com@evil.net/", Err("egress_userinfo_not_allowed")),
            ("https://evil.net/", Err("egress_domain_not_allowed")),
            ("https://evilslack.com/", Err("egress_domain_not_allowed")),
            ("https://slack.com.evil.net/", Err("egress_domain_not_allowed")),
            ("https://localhost/", Err("egress_domain_not_allowed")),
            // IP literals, in every spelling the URL parser turns into an address.
            ("https://127.0.0.1/", Err("egress_forbidden_address")),
            ("https://169.254.169.254/latest/meta-data/", Err("egress_forbidden_address")),
            ("https://2130706433/", Err("egress_forbidden_address")),
            ("https://0x7f.1/", Err("egress_forbidden_address")),
            ("https://0177.0.0.1/", Err("egress_forbidden_address")),
            ("https://127.1/", Err("egress_forbidden_address")),
            ("https://0/", Err("egress_forbidden_address")),
            ("https://[::1]/", Err("egress_forbidden_address")),
            ("https://[::ffff:127.0.0.1]/", Err("egress_forbidden_address")),
            ("https://[::ffff:a9fe:a9fe]/", Err("egress_forbidden_address")),
            ("https://[64:ff9b::a00:1]/", Err("egress_forbidden_address")),
            ("https://[fd00::1]/", Err("egress_forbidden_address")),
            ("https://8.8.8.8/", Err("egress_domain_not_allowed")),
            ("https://[2606:4700:4700::1111]/", Err("egress_domain_not_allowed")),
        ];
        for (input, expected) in table {
            check(&policy, input, expected);
        }
    }

    #[test]
    fn decimal_and_hex_hosts_parse_as_loopback_addresses() {
        for input in ["http://2130706433/", "http://0x7f.1/", "http://0x7f000001/", "http://127.0.1/"] {
            assert_eq!(url(input).host(), Some(Host::Ipv4(std::net::Ipv4Addr::LOCALHOST)), "{input}");
        }
    }

    #[test]
    fn an_ip_literal_is_allowed_only_as_an_exact_exception() {
        let exception: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut policy = EgressPolicy::for_domains(&["allowed.test"]).with_exception(exception);
        policy.require_https = false;
        check(&policy, "http://127.0.0.1:4000/", Ok(()));
        check(&policy, "https://127.0.0.1:4000/x", Ok(()));
        check(&policy, "http://127.0.0.1:4001/", Err("egress_forbidden_address"));
        check(&policy, "http://127.0.0.2:4000/", Err("egress_forbidden_address"));
        check(&policy, "http://[::ffff:127.0.0.1]:4000/", Err("egress_forbidden_address"));
        check(&policy, "http://127.0.0.1/", Err("egress_forbidden_address"));
        // A host name with an explicit port cannot be vouched for while exceptions exist.
        check(&policy, "http://api.allowed.test/", Ok(()));
        check(&policy, "http://api.allowed.test:80/", Ok(()));
        check(&policy, "http://api.allowed.test:4001/", Err("egress_forbidden_address"));
    }

    #[test]
    fn policies_that_cannot_be_enforced_are_refused() {
        let exception: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let ok = EgressPolicy::for_domains(&["slack.com"]);
        assert!(ok.validate().is_ok());

        let mut plain = ok.clone();
        plain.require_https = false;
        assert_eq!(plain.validate().unwrap_err().code(), "egress_invalid_policy");
        let plain_with_exception = plain.clone().with_exception(exception);
        assert!(plain_with_exception.validate().is_ok());

        let portless = ok.clone().with_exception("127.0.0.1:0".parse().unwrap());
        assert!(portless.validate().is_err());

        let mut instant = ok.clone();
        instant.timeout = Duration::ZERO;
        assert!(instant.validate().is_err());

        for bad in ["", "127.0.0.1", "2130706433", "*.slack.com", ".slack.com", "slack..com", "sl ack.com"] {
            assert!(EgressPolicy::for_domains(&[bad]).validate().is_err(), "{bad:?}");
        }
        assert!(EgressPolicy::for_domains(&["Slack.com."]).validate().is_ok());
    }
}
