//! Which URLs an endpoint may name: the egress policy of deliveries, the URL check when an endpoint
//! is created or changed, and the screen of what its host name resolves to then.

use std::{net::SocketAddr, time::Duration as StdDuration};

use tenancy::TenancyError;

/// Deadline of one delivery request (Standard Webhooks recommends 15–30 s).
pub const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// The egress policy of deliveries: any public host name over https, no redirects (a `POST`
/// that is redirected is a failed delivery, never re-sent elsewhere), [`REQUEST_TIMEOUT`].
/// `exceptions` (tests only) let a loopback receiver through and with it plain http.
pub fn delivery_policy(exceptions: &[SocketAddr]) -> egress::EgressPolicy {
    egress::EgressPolicy {
        timeout: REQUEST_TIMEOUT,
        max_redirects: 0,
        standard_ports_only: true,
        ..egress::EgressPolicy::public_internet()
    }
    .with_test_exceptions(exceptions)
}

/// How long the creation-time screen waits for DNS before judging the URL at delivery only.
pub const SCREEN_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Judges an endpoint URL as far as it can be judged when it is created or changed, before any
/// transaction opens: everything [`check_url`] refuses, and a host name that resolves now into
/// forbidden ranges (private, loopback, link-local, metadata: [`egress::is_forbidden_ip`]).
/// A name that does not resolve now (or not within [`SCREEN_RESOLVE_TIMEOUT`]) is accepted: it
/// is judged again at every delivery, on the addresses it resolves to then, which is what
/// protects against a name repointed later (DNS rebinding).
pub async fn screen_url(
    policy: &egress::EgressPolicy,
    resolver: &dyn egress::Resolver,
    url: &str,
) -> Result<(), TenancyError> {
    let checked = check_url(policy, url)?;
    let Ok(parsed) = url::Url::parse(&checked) else { return Ok(()) };
    let (Some(url::Host::Domain(host)), Some(port)) = (parsed.host(), parsed.port_or_known_default()) else {
        return Ok(());
    };
    let resolved = tokio::time::timeout(SCREEN_RESOLVE_TIMEOUT, resolver.resolve(host, port)).await;
    let Ok(Ok(addrs)) = resolved else { return Ok(()) };
    let forbidden = |a: &SocketAddr| egress::is_forbidden_ip(a.ip()) && !policy.is_exception(a.ip(), a.port());
    if addrs.iter().any(forbidden) {
        return Err(TenancyError::Rejected {
            code: "invalid_endpoint_url",
            message: "the endpoint URL's host resolves to a private or reserved address",
        });
    }
    Ok(())
}

pub(super) fn check_url(policy: &egress::EgressPolicy, url: &str) -> Result<String, TenancyError> {
    let bad = |message| TenancyError::Rejected { code: "invalid_endpoint_url", message };
    if url.len() > MAX_URL_LEN {
        return Err(bad("the endpoint URL is longer than 2,048 characters"));
    }
    // The URL parser silently drops leading and trailing control characters: refused instead,
    // so what is stored is what was sent.
    if url.chars().any(char::is_control) {
        return Err(bad("the endpoint URL holds a control character"));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|_| bad("the endpoint URL is not a URL"))?;
    if parsed.fragment().is_some() {
        return Err(bad("the endpoint URL has a fragment"));
    }
    policy.check_url(&parsed).map_err(|err| match err.code() {
        "egress_scheme_not_allowed" => bad("the endpoint URL must be https"),
        "egress_userinfo_not_allowed" => bad("the endpoint URL must not carry a user name or password"),
        "egress_forbidden_address" => bad("the endpoint URL names a private or reserved address"),
        "egress_port_not_allowed" => bad("the endpoint URL must use the standard https port (443)"),
        _ => bad("the endpoint URL must name a public host (IP addresses, localhost, metadata and private-use names are refused)"),
    })?;
    Ok(parsed.to_string())
}
