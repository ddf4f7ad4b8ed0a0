//! The guarded client: reqwest with the URL check, the filtering DNS hook, the checked redirect
//! policy, no environment proxies and the policy's deadline.

use std::sync::Arc;

use reqwest::redirect::{Action, Attempt};
use reqwest::{Method, Request, Response, Url};

use crate::error::{origin, EgressError};
use crate::policy::EgressPolicy;
use crate::resolve::{GuardedResolve, Resolver};

/// An HTTP client that only reaches what its [`EgressPolicy`] allows.
///
/// Every request, and every redirect hop, passes [`EgressPolicy::check_url`]; every host name is
/// resolved through the [`Resolver`] and only addresses outside [`crate::is_forbidden_ip`] (or
/// exact exceptions) are handed to the connector. Cheap to clone; connections are pooled per
/// client.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    policy: Arc<EgressPolicy>,
    http: reqwest::Client,
}

impl GuardedClient {
    /// Builds the client, refusing with [`EgressError::InvalidPolicy`] a policy that cannot be
    /// enforced: plain http without exceptions, an exception without a port, a zero timeout, or
    /// an allowed domain that is not an ASCII host name.
    ///
    /// TLS is rustls with the aws-lc-rs provider and the Mozilla root certificates
    /// (`webpki-roots`), HTTP/1.1 only.
    pub fn new(policy: EgressPolicy, resolver: Arc<dyn Resolver>) -> Result<GuardedClient, EgressError> {
        policy.validate()?;
        let policy = Arc::new(policy);
        let redirects = {
            let policy = policy.clone();
            reqwest::redirect::Policy::custom(move |attempt| check_hop(&policy, attempt))
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            // Environment proxies (HTTP_PROXY, ALL_PROXY…) would connect on our behalf to
            // addresses this crate never sees.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolve::new(policy.clone(), resolver)))
            .redirect(redirects)
            // A Referer would carry the previous hop's path and query to the next host.
            .referer(false)
            // ASVS 5.0 V13.1.3: synchronous calls fail rather than retry.
            .retry(reqwest::retry::never())
            .https_only(policy.require_https)
            .http1_only()
            .timeout(policy.timeout)
            .build()
            .map_err(|_| EgressError::InvalidPolicy { reason: "the HTTP client could not be built" })?;
        Ok(GuardedClient { policy, http })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Sends `request` after checking its URL; follows allowed redirects. A per-request timeout
    /// longer than the policy's is shortened to it. Reading the body afterwards returns reqwest's
    /// own errors and stays under the same deadline.
    pub async fn send(&self, mut request: Request) -> Result<Response, EgressError> {
        self.policy.check_url(request.url())?;
        let limit = self.policy.timeout;
        let timeout = match request.timeout() {
            Some(requested) if *requested < limit => *requested,
            _ => limit,
        };
        *request.timeout_mut() = Some(timeout);
        let origin = origin(request.url());
        self.http.execute(request).await.map_err(|err| EgressError::from_reqwest(err, origin))
    }

    /// `GET url`.
    pub async fn get(&self, url: Url) -> Result<Response, EgressError> {
        self.send(Request::new(Method::GET, url)).await
    }
}

/// The redirect policy: the hop limit, then the same URL check as the first request. The next
/// connection's resolved addresses are checked by the DNS hook; IP-literal hops only here.
fn check_hop(policy: &EgressPolicy, attempt: Attempt) -> Action {
    // `previous` holds the first URL and every URL redirected from so far.
    if attempt.previous().len() > policy.max_redirects {
        return attempt.error(EgressError::TooManyRedirects { max: policy.max_redirects });
    }
    match policy.check_url(attempt.url()) {
        Ok(()) => attempt.follow(),
        Err(refusal) => attempt.error(refusal),
    }
}

/// rustls with an explicit provider, so nothing depends on a process-wide default being
/// installed, and the Mozilla roots.
fn tls_config() -> Result<rustls::ClientConfig, EgressError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| EgressError::InvalidPolicy { reason: "the TLS provider supports no safe protocol version" })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::SystemResolver;

    #[test]
    fn a_policy_that_cannot_be_enforced_builds_no_client() {
        let mut policy = EgressPolicy::for_domains(&["slack.com"]);
        policy.require_https = false;
        let err = GuardedClient::new(policy, Arc::new(SystemResolver)).unwrap_err();
        assert_eq!(err.code(), "egress_invalid_policy");
    }

    #[test]
    fn a_production_policy_builds_a_client_with_its_own_tls_provider() {
        // No process-wide rustls provider is installed in this test binary.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let client = GuardedClient::new(EgressPolicy::for_domains(&["slack.com"]), Arc::new(SystemResolver)).unwrap();
        assert_eq!(client.policy().allowed_domains, vec!["slack.com".to_owned()]);
    }

    #[test]
    fn the_client_uses_no_environment_proxy_and_sends_no_referer() {
        // reqwest lists its proxies (the environment's included) and a Referer setting in its
        // debug output; a default client shows both, the guarded one neither.
        let default = format!("{:?}", reqwest::Client::builder().build().unwrap());
        assert!(default.contains("proxies") && default.contains("referer"), "{default}");
        let guarded = GuardedClient::new(EgressPolicy::for_domains(&["slack.com"]), Arc::new(SystemResolver)).unwrap();
        let guarded = format!("{:?}", guarded.http);
        assert!(!guarded.contains("proxies") && !guarded.contains("referer"), "{guarded}");
    }
}
