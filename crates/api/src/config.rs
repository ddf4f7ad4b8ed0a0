//! HTTP settings, deserialised by the binary's configuration loader and passed in explicitly.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::Deserialize;

/// Listener, limits and browser-facing policy for the HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port; the bound port is logged.
    pub listen: SocketAddr,
    /// The public base URL (scheme, host, port) clients use, e.g. `https://api.example.com`.
    /// Required in production (and must be https there).
    pub public_url: Option<url::Url>,
    /// Origins allowed to call the API from a browser. Empty means same-origin only: no CORS
    /// headers are sent (OWASP HTML5 Security Cheat Sheet: never reflect arbitrary origins).
    pub cors_allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (OWASP REST Security Cheat Sheet: reject oversized
    /// requests with 413). Default 1 MiB.
    pub body_limit_bytes: usize,
    /// Time a request may take before it is answered with 503. Default 30 s.
    pub request_timeout_secs: u64,
    /// `Strict-Transport-Security` max-age. Default two years, as the OWASP HTTP Headers Cheat Sheet
    /// recommends (63072000 s).
    pub hsts_max_age_secs: u64,
    /// Serve TLS natively (rustls: TLS 1.2 and 1.3 only) when both files are given.
    pub tls: Option<TlsFiles>,
    /// Requests per second one client address may make (0 disables). Default 20.
    pub rate_limit_per_client_per_sec: u64,
    /// Reverse proxies (CIDRs or single addresses) whose `Forwarded` / `X-Forwarded-For` headers
    /// name the client. Empty (the default): the TCP peer is the client and those headers are
    /// ignored. See [`crate::forwarded`] for how the chain is read.
    pub trusted_proxies: TrustedProxies,
    /// Bearer token a Prometheus scraper presents at `GET /metrics`. Unset: no `/metrics` route.
    pub metrics_token: Option<secrecy::SecretString>,
    /// Set by the binary in `test` mode only: accept client identity headers.
    #[serde(skip)]
    pub test_mode: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            cors_allowed_origins: Vec::new(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            hsts_max_age_secs: 63_072_000,
            tls: None,
            rate_limit_per_client_per_sec: 20,
            trusted_proxies: TrustedProxies::default(),
            metrics_token: None,
            test_mode: false,
        }
    }
}

/// The networks of the reverse proxies allowed to say who the client is (`http.trusted_proxies`).
///
/// Parsed once from the configuration: every entry must be a CIDR with no host bits set
/// (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`192.0.2.10`, taken as `/32` or `/128`).
/// Anything else is refused at start-up, so a typo never silently trusts more, or less, than
/// written. A `/0` range is refused too: it would let every client choose its own address
/// (OWASP Logging Cheat Sheet: the source address of an event must not be taken from a header
/// an untrusted party can set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses the configured entries; the error names the first entry refused and why.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries.iter().map(|entry| parse_range(entry.as_ref())).collect::<Result<_, _>>().map(TrustedProxies)
    }

    /// No proxy is trusted: the TCP peer is always the client.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The ranges as configured (normalised), for logs and tests.
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

fn parse_range(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    let net = if entry.contains('/') {
        let net: IpNet = entry.parse().map_err(|_| {
            format!("`{entry}` is not a CIDR range (write e.g. `10.0.0.0/8`, `2001:db8::/32` or one address)")
        })?;
        if net.trunc() != net {
            return Err(format!("`{entry}` has host bits set; the range it names is `{}`", net.trunc()));
        }
        net
    } else {
        let ip: IpAddr = entry.parse().map_err(|_| {
            format!("`{entry}` is not an IP address or CIDR range (write e.g. `10.0.0.0/8` or `192.0.2.10`)")
        })?;
        IpNet::from(ip.to_canonical())
    };
    if net.prefix_len() == 0 {
        return Err(format!("`{entry}` trusts every address, so any client could choose its own address"));
    }
    Ok(net)
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        TrustedProxies::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// PEM files for native TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
}

/// Fields of `/.well-known/security.txt` (RFC 9116).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityTxtConfig {
    /// `Contact:` URIs in order of preference (`mailto:`, `tel:` or `https://`). RFC 9116 §2.5.3:
    /// at least one is required.
    pub contact: Vec<String>,
    /// `Policy:` URI of the vulnerability disclosure policy (https). Required in production.
    pub policy: Option<String>,
    /// `Preferred-Languages:` (RFC 5646 tags, comma separated).
    pub preferred_languages: String,
    /// `Expires:`; when absent the server uses start-up time plus `expires_after_days`.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 9116 §2.5.5 recommends less than a year; default 180 days.
    pub expires_after_days: u32,
}

impl Default for SecurityTxtConfig {
    fn default() -> Self {
        SecurityTxtConfig {
            contact: Vec::new(),
            policy: None,
            preferred_languages: "en".into(),
            expires: None,
            expires_after_days: 180,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_take_cidrs_and_single_addresses_of_both_families() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.10", "2001:db8::/32", "::1"]).unwrap();
        assert_eq!(proxies.ranges().len(), 4);
        for inside in ["10.1.2.3", "192.0.2.10", "2001:db8::7", "::1", "::ffff:10.9.9.9"] {
            assert!(proxies.contains(inside.parse().unwrap()), "{inside} is trusted");
        }
        for outside in ["11.0.0.1", "192.0.2.11", "2001:db9::1", "127.0.0.1"] {
            assert!(!proxies.contains(outside.parse().unwrap()), "{outside} is not trusted");
        }
        assert!(TrustedProxies::default().is_empty());
    }

    #[test]
    fn a_malformed_or_overly_wide_trusted_proxy_entry_is_refused_with_its_reason() {
        for (entry, reason) in [
            ("10.0.0.0/33", "is not a CIDR range"),
            ("10.0.0/8", "is not a CIDR range"),
            ("proxy.internal", "is not an IP address"),
            ("", "is not an IP address"),
            ("10.0.0.1/8", "has host bits set; the range it names is `10.0.0.0/8`"),
            ("0.0.0.0/0", "trusts every address"),
            ("::/0", "trusts every address"),
        ] {
            let err = TrustedProxies::parse(&["127.0.0.1", entry]).unwrap_err();
            assert!(err.contains(reason) && err.contains(&format!("`{entry}`")), "{entry}: {err}");
        }
    }
}
