//! Native and desktop clients (RFC 8252): their redirects, their PKCE challenge, and the
//! one-minute code they exchange for tokens.

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::core::authentication::amr;
use crate::core::context::{stmt, Core};
use crate::core::error::AuthError;
use crate::core::factors::{Flow, SignIn};
use crate::core::families::TokenPair;
use crate::core::settings::RequestMeta;

/// The code a native client exchanges lives one minute and works once (RFC 6749 §4.1.2).
pub const NATIVE_CODE_TTL: Duration = Duration::minutes(1);
pub(super) const NATIVE_CODE_PURPOSE: &str = "oidc_native_code";

/// RFC 8252 §7.3 (loopback IP, any port; `localhost` is not recommended, §8.3) or §7.1 (a
/// private-use scheme in reverse domain name form, such as `com.example.app:/callback`).
pub(super) fn native_redirect_ok(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    native_redirect_shape_ok(&url)
}

/// A registered native client's redirect: the same URI, or for loopback the same URI on any port
/// (RFC 8252 §7.3: the port is chosen when the client runs).
pub(super) fn native_redirect_registered(uri: &str, registered: &[String]) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    let portless = |u: &url::Url| {
        let mut u = u.clone();
        if u.scheme() == "http" {
            let _ = u.set_port(None);
        }
        u.to_string()
    };
    let wanted = portless(&url);
    registered.iter().filter_map(|r| url::Url::parse(r).ok()).any(|r| portless(&r) == wanted)
}

fn native_redirect_shape_ok(url: &url::Url) -> bool {
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "http" => {
            matches!(
                url.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        }
        "https" | "javascript" | "data" | "file" => false,
        scheme => scheme.contains('.') && url.host().is_none(),
    }
}

/// A PKCE S256 challenge: 43 base64url characters (RFC 7636 §4.2).
pub(super) fn challenge_ok(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time (RFC 7636 §4.6).
pub(super) fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine as _;
    // RFC 7636 §4.1: 43 to 128 unreserved characters.
    let shape = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shape & bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A native client exchanges its code and PKCE verifier for tokens (or the second-factor
/// challenge that completes them).
pub(crate) async fn native_token(
    core: &Core,
    code: &str,
    code_verifier: &str,
    redirect_uri: &str,
    meta: &RequestMeta,
) -> Result<SignIn<TokenPair>, AuthError> {
    let now = core.clock.now();
    let row = core
        .db
        .conn()
        .query_one(stmt(
            core.db.conn(),
            "DELETE FROM oidc_native_codes WHERE code_hash = $1 RETURNING user_id, challenge, redirect_uri, auth_time, expires_at",
            vec![core.tokens.hash(NATIVE_CODE_PURPOSE, code).into()],
        ))
        .await?
        .ok_or(AuthError::InvalidToken)?;
    let expires: DateTime<Utc> = row.try_get("", "expires_at")?;
    let challenge: String = row.try_get("", "challenge")?;
    let expected_redirect: String = row.try_get("", "redirect_uri")?;
    // RFC 6749 §4.1.3: the same redirect URI as the request; RFC 7636 §4.6: the verifier.
    if expires <= now || expected_redirect != redirect_uri || !verifier_matches(code_verifier, &challenge) {
        return Err(AuthError::InvalidToken);
    }
    let user: Uuid = row.try_get("", "user_id")?;
    core.ensure_active(ids::UserId(user)).await?;
    if let Some(challenge) = core.challenge_if_enrolled(user, Flow::Token, amr::FEDERATED).await? {
        return Ok(SignIn::SecondFactor(challenge));
    }
    let at: Option<DateTime<Utc>> = row.try_get("", "auth_time")?;
    core.finish_password_grant(user, meta, &[amr::FEDERATED], at).await.map(SignIn::Done)
}
