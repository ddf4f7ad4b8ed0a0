//! The claims of an access token, whom it is for, and the claims and header as received.

use ids::{SessionId, UserId, WorkspaceId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::JwtError;

/// The claims of an access token.
///
/// Times are NumericDate values: whole seconds since the Unix epoch (RFC 7519 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user the token was issued to (RFC 7519 §4.1.2).
    pub sub: UserId,
    /// The session, or refresh-token family, the token belongs to; callers use it for revocation.
    pub sid: SessionId,
    /// The issuer (RFC 7519 §4.1.1).
    pub iss: String,
    /// The single intended audience (RFC 7519 §4.1.3).
    pub aud: String,
    /// When the token was issued (RFC 7519 §4.1.6).
    pub iat: i64,
    /// When the token starts to be valid (RFC 7519 §4.1.5).
    pub nbf: i64,
    /// When the token stops being valid (RFC 7519 §4.1.4).
    pub exp: i64,
    /// A unique token id (RFC 7519 §4.1.7).
    pub jti: Uuid,
    /// When the user last authenticated, at sign-in or step-up (OpenID Connect Core 1.0 §2
    /// `auth_time`); absent on tokens that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// How they authenticated (RFC 8176 `amr` values, such as `pwd` and `otp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The user's credential generation when the token was issued (a private claim). Every
    /// event that ends a user's credentials raises it, and a token of an older generation is
    /// refused on its next request: `iat`, whole seconds, cannot order events within a second.
    pub gen: i64,
    /// The one workspace a token made by exchange acts in (a private claim); absent on the
    /// tokens of a sign-in, which act wherever their user may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WorkspaceId>,
    /// The permissions an exchanged token is narrowed to, space-separated (RFC 8693 §4.2
    /// `scope`); absent: the user's own in that workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Whom an access token is for: the user, the session or token family, and the user's
/// credential generation at issue; for an exchanged token, its workspace and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: UserId,
    pub sid: SessionId,
    pub generation: i64,
    pub workspace: Option<WorkspaceId>,
    pub scope: Option<String>,
}

impl Holder {
    /// The holder of a sign-in's tokens: no workspace binding.
    pub fn signed_in(user: UserId, sid: SessionId, generation: i64) -> Holder {
        Holder { user, sid, generation, workspace: None, scope: None }
    }
}

/// The claims as received, before the check that every one of them is present.
///
/// Duplicate members make deserialisation fail, so a payload such as
/// `{"aud":"a","aud":"b"}` is refused rather than read ambiguously.
#[derive(Deserialize)]
pub(super) struct ReceivedClaims {
    sub: Option<UserId>,
    sid: Option<SessionId>,
    iss: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<Uuid>,
    auth_time: Option<i64>,
    amr: Option<Vec<String>>,
    gen: Option<i64>,
    ws: Option<WorkspaceId>,
    scope: Option<String>,
}

impl ReceivedClaims {
    /// Turns the received claims into [`AccessClaims`], naming the first one that is absent.
    pub(super) fn require_all(self) -> Result<AccessClaims, JwtError> {
        Ok(AccessClaims {
            sub: self.sub.ok_or(JwtError::MissingClaim("sub"))?,
            sid: self.sid.ok_or(JwtError::MissingClaim("sid"))?,
            iss: self.iss.ok_or(JwtError::MissingClaim("iss"))?,
            aud: self.aud.ok_or(JwtError::MissingClaim("aud"))?,
            iat: self.iat.ok_or(JwtError::MissingClaim("iat"))?,
            nbf: self.nbf.ok_or(JwtError::MissingClaim("nbf"))?,
            exp: self.exp.ok_or(JwtError::MissingClaim("exp"))?,
            jti: self.jti.ok_or(JwtError::MissingClaim("jti"))?,
            auth_time: self.auth_time,
            amr: self.amr.unwrap_or_default(),
            gen: self.gen.ok_or(JwtError::MissingClaim("gen"))?,
            ws: self.ws,
            scope: self.scope,
        })
    }
}

/// The header parameters this module reads itself, before `jsonwebtoken` sees the token.
///
/// Duplicate members make deserialisation fail, as for [`ReceivedClaims`]. Header
/// parameters that point at keys (`jku`, `jwk`, `x5u`, `x5c`) are never read: keys are only
/// ever chosen among the ones this service holds (RFC 8725 §3.10).
#[derive(Deserialize)]
pub(super) struct ReceivedHeader {
    pub(super) alg: Option<String>,
    pub(super) typ: Option<String>,
    pub(super) kid: Option<String>,
    pub(super) crit: Option<serde_json::Value>,
}
