//! Password sign-in: a browser session, or an API client's token family (the password grant) —
//! or, when the account has a second factor, the challenge that completes either.

use crate::core::authentication::amr;
use crate::core::context::Core;
use crate::core::error::AuthError;
use crate::core::factors::{Flow, SignIn};
use crate::core::families::TokenPair;
use crate::core::sessions::{NewSession, SESSION_PURPOSE};
use crate::core::settings::RequestMeta;

/// Checks the password (with lockout) and opens a new session — or, when the account has a
/// second factor, answers with the challenge to complete it ([`crate::mfa`]).
/// `previous` is the session the client presented, if any: it is revoked so a planted session
/// id cannot be upgraded (OWASP Session Management: renew the id on authentication).
pub(crate) async fn sign_in(
    core: &Core,
    email: &str,
    password: &str,
    previous: Option<&str>,
    meta: &RequestMeta,
) -> Result<SignIn<NewSession>, AuthError> {
    let user = core.check_password(email, password, meta).await?;
    if let Some(old) = previous {
        let hash = core.tokens.hash(SESSION_PURPOSE, old);
        if let Some(record) = core.kv.get_session(&hash).await? {
            core.kv.delete_session(&hash, record.user_id).await?;
        }
    }
    if let Some(challenge) = core.challenge_if_enrolled(user, Flow::Session, amr::PASSWORD).await? {
        return Ok(SignIn::SecondFactor(challenge));
    }
    let now = core.clock.now();
    core.finish_sign_in(user, meta, &[amr::PASSWORD], Some(now)).await.map(SignIn::Done)
}

/// Password grant for API clients: a new token family — or, when the account has a second
/// factor, the challenge to complete it ([`crate::mfa`]).
pub(crate) async fn password_grant(
    core: &Core,
    email: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<SignIn<TokenPair>, AuthError> {
    let user = core.check_password(email, password, meta).await?;
    if let Some(challenge) = core.challenge_if_enrolled(user, Flow::Token, amr::PASSWORD).await? {
        return Ok(SignIn::SecondFactor(challenge));
    }
    let now = core.clock.now();
    core.finish_password_grant(user, meta, &[amr::PASSWORD], Some(now)).await.map(SignIn::Done)
}
