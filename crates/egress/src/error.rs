//! The crate's one error type, with a stable code per kind of refusal or failure.

use std::sync::Arc;

use url::Url;

/// Why an outbound request was refused or failed.
///
/// Messages name the origin (`scheme://host[:port]`) or the host only: never a path, a query
/// string or credentials, so they are safe to log and to show to the workspace that configured
/// the URL. The refusals are `Clone` so the client can recover them from deep inside a transport
/// error's cause chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EgressError {
    /// The scheme is not `https` (or `http` where the policy allows it).
    #[error("outbound request refused: the scheme `{scheme}` is not allowed")]
    SchemeNotAllowed { scheme: String },
    /// The URL carries a user name or password (`https://user:pass@host/`).
    #[error("outbound request refused: the URL for {origin} carries credentials")]
    UserinfoNotAllowed { origin: String },
    /// The host is not an allowed domain or a subdomain of one, or is an IP literal that is not
    /// an exception.
    #[error("outbound request refused: `{host}` is not an allowed host")]
    DomainNotAllowed { host: String },
    /// The host is, or resolves only to, addresses in forbidden ranges (loopback, private,
    /// link-local, metadata and the rest of [`crate::is_forbidden_ip`]).
    #[error("outbound request refused: `{host}` is or resolves only to forbidden addresses")]
    ForbiddenAddress { host: String },
    /// The URL names a port other than the scheme's default where the policy allows only that.
    #[error("outbound request refused: {origin} is not on the scheme's standard port")]
    PortNotAllowed { origin: String },
    /// A redirect went past the policy's hop limit.
    #[error("outbound request refused: more than {max} redirects")]
    TooManyRedirects { max: usize },
    /// The request, connection included, outlived the policy's timeout.
    #[error("outbound request to {origin} timed out")]
    Timeout { origin: String },
    /// Connecting, TLS or HTTP failed. The source has its URL removed.
    #[error("outbound request to {origin} failed")]
    Transport {
        origin: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The policy cannot be enforced as written (see [`crate::GuardedClient::new`]).
    #[error("invalid egress policy: {reason}")]
    InvalidPolicy { reason: &'static str },
}

impl EgressError {
    /// A stable machine-readable code for API responses, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            EgressError::SchemeNotAllowed { .. } => "egress_scheme_not_allowed",
            EgressError::UserinfoNotAllowed { .. } => "egress_userinfo_not_allowed",
            EgressError::DomainNotAllowed { .. } => "egress_domain_not_allowed",
            EgressError::ForbiddenAddress { .. } => "egress_forbidden_address",
            EgressError::PortNotAllowed { .. } => "egress_port_not_allowed",
            EgressError::TooManyRedirects { .. } => "egress_too_many_redirects",
            EgressError::Timeout { .. } => "egress_timeout",
            EgressError::Transport { .. } => "egress_transport",
            EgressError::InvalidPolicy { .. } => "egress_invalid_policy",
        }
    }

    /// Turns a reqwest error into the specific error: a refusal made by this crate's redirect
    /// policy or DNS hook is found in the cause chain and returned as itself; a timeout is
    /// [`EgressError::Timeout`]; anything else is [`EgressError::Transport`] without its URL.
    pub(crate) fn from_reqwest(err: reqwest::Error, origin: String) -> EgressError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(current) = cause {
            if let Some(own) = current.downcast_ref::<EgressError>() {
                return own.clone();
            }
            cause = current.source();
        }
        let origin = err.url().map(self::origin).unwrap_or(origin);
        if err.is_timeout() {
            EgressError::Timeout { origin }
        } else {
            EgressError::Transport { origin, source: Arc::new(err.without_url()) }
        }
    }
}

/// `scheme://host[:port]` of a URL: what error messages may name (no path, query or credentials).
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_stable_code() {
        let cases = [
            (EgressError::SchemeNotAllowed { scheme: "ftp".into() }, "egress_scheme_not_allowed"),
            (EgressError::UserinfoNotAllowed { origin: "https://a.test".into() }, "egress_userinfo_not_allowed"),
            (EgressError::DomainNotAllowed { host: "a.test".into() }, "egress_domain_not_allowed"),
            (EgressError::ForbiddenAddress { host: "a.test".into() }, "egress_forbidden_address"),
            (EgressError::TooManyRedirects { max: 5 }, "egress_too_many_redirects"),
            (EgressError::Timeout { origin: "https://a.test".into() }, "egress_timeout"),
            (EgressError::InvalidPolicy { reason: "x" }, "egress_invalid_policy"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
    }
}
