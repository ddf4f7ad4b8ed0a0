//! `/.well-known/security.txt` (RFC 9116).

use poem::web::Data;
use poem_openapi::{
    payload::{Json, PlainText},
    OpenApi,
};

use super::ApiTags;
use crate::{AppState, SecurityTxtConfig};

pub(crate) struct WellKnownApi;

#[OpenApi(tag = "ApiTags::WellKnown")]
impl WellKnownApi {
    /// Security contact information per RFC 9116, served as `text/plain; charset=utf-8`.
    #[oai(path = "/.well-known/security.txt", method = "get", operation_id = "securityTxt")]
    async fn security_txt(&self, state: Data<&AppState>) -> PlainText<String> {
        PlainText(state.security_txt.to_string())
    }

    /// The public keys that verify access tokens (RFC 7517 JWK Set). Keys being rotated out are
    /// listed until their tokens have expired.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self, state: Data<&AppState>) -> Json<serde_json::Value> {
        Json(state.auth.access_tokens().jwks())
    }
}

/// Renders the file. `canonical` is the public URL of the file itself; `expires` is fixed by the
/// caller (from configuration, or start-up time plus the configured number of days).
pub fn render_security_txt(cfg: &SecurityTxtConfig, canonical: &str, expires: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::from("# Security contact for this Rampart deployment (RFC 9116).\n");
    for contact in &cfg.contact {
        out.push_str(&format!("Contact: {contact}\n"));
    }
    out.push_str(&format!("Expires: {}\n", expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    if let Some(policy) = &cfg.policy {
        out.push_str(&format!("Policy: {policy}\n"));
    }
    if !cfg.preferred_languages.trim().is_empty() {
        out.push_str(&format!("Preferred-Languages: {}\n", cfg.preferred_languages.trim()));
    }
    out.push_str(&format!("Canonical: {canonical}\n"));
    out
}
