//! HTTP settings, deserialised by the binary's configuration loader and passed in explicitly.

use std::net::SocketAddr;

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
            metrics_token: None,
            test_mode: false,
        }
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
