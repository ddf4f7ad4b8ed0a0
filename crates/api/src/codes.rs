//! Every error code the API answers, with its HTTP status and meaning: one table. The wire
//! strings are stable (clients branch on them); the API description renders this table into
//! each operation's error responses (`describe`), and a code absent from it cannot be answered.

use poem::http::StatusCode;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($status:literal, $wire:literal, $meaning:literal), )*) => {
        /// A stable error code (the `code` of every error body) and the status it is answered with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The string clients see and branch on.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }

            /// The HTTP status the code is answered with.
            pub fn status(self) -> StatusCode {
                let status: u16 = match self { $(ErrorCode::$variant => $status,)* };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// What the code means, for the API description.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    // Reading the request.
    BadRequest = (400, "bad_request", "The request could not be read as HTTP: a malformed header, request line or path."),
    InvalidBody = (400, "invalid_body", "The body is not a JSON document of the expected shape (malformed JSON, or a required field missing)."),
    DuplicateKey = (400, "duplicate_key", "A JSON object in the body names the same key twice; which one was meant is ambiguous, so neither is taken."),
    InvalidParameter = (400, "invalid_parameter", "A path or query parameter is malformed, out of bounds, or holds a control character."),
    AmbiguousCredentials = (400, "ambiguous_credentials", "The request carries more than one `Authorization` header."),
    IdentityHeaderRejected = (400, "identity_header_rejected", "A header that would assert an identity (such as `X-User-Id`) was sent; identity comes from verified credentials only."),
    InvalidRequest = (400, "invalid_request", "The request is well formed but breaks a rule stated in the operation's description."),
    InvalidValue = (422, "invalid_value", "A field's value does not match the description: a JSON type other than the one declared (no coercion), `null` where none is allowed, a value out of bounds or not among the allowed values. `message` names the field."),
    // Identity.
    InvalidEmail = (400, "invalid_email", "The address is not a valid email address."),
    WeakPassword = (400, "weak_password", "The password breaks the password rules (NIST SP 800-63B §3.1.1.2: length, breached or context-specific words)."),
    InvalidToken = (400, "invalid_token", "The link or refresh token is unknown, expired or already used."),
    InvalidScope = (400, "invalid_scope", "`scope` is not a space-separated list of permissions the caller holds."),
    InvalidNativeRequest = (400, "invalid_native_request", "The native sign-in request breaks RFC 8252/7636 (for example a `code_challenge_method` other than S256)."),
    InvalidOidcState = (400, "invalid_oidc_state", "The sign-in flow's state is unknown, expired or already used."),
    ProviderRefused = (400, "provider_refused", "The identity provider ended the sign-in with an error (RFC 6749 §4.1.2.1)."),
    OidcIssuerMismatch = (400, "oidc_issuer_mismatch", "The provider's answer names another issuer (RFC 9207)."),
    Unauthenticated = (401, "unauthenticated", "No valid credential: sign in, or send a valid bearer token, session cookie or API key."),
    InsufficientUserAuthentication = (401, "insufficient_user_authentication", "The action needs a recent authentication: re-authenticate, then retry (RFC 9470; see `WWW-Authenticate`)."),
    InvalidCredentials = (401, "invalid_credentials", "The email address and password do not match an account."),
    InvalidCode = (401, "invalid_code", "The one-time or recovery code is wrong or already used."),
    RefreshTokenReused = (401, "refresh_token_reused", "A refresh token was used twice; its whole family is revoked (RFC 9700 §4.14.2)."),
    TokenFamilyEnded = (401, "token_family_ended", "The refresh token's family was ended (sign-out, revocation, password change or suspension)."),
    OidcCodeRejected = (401, "oidc_code_rejected", "The identity provider refused the authorization code."),
    InvalidIdToken = (401, "invalid_id_token", "The identity provider's ID token failed verification."),
    EmailNotVerified = (403, "email_not_verified", "The account's email address is not verified yet."),
    SignupClosed = (403, "signup_closed", "Sign-up is closed on this deployment (invitation only)."),
    ProviderEmailUnverified = (403, "provider_email_unverified", "The identity provider does not vouch for the email address."),
    ProviderEmailUntrusted = (403, "provider_email_untrusted", "The identity provider is not trusted for this email address's domain."),
    IdentityMismatch = (403, "identity_mismatch", "The provider signed in another identity than the one linked to this account."),
    MfaRequiredFirst = (409, "mfa_required_first", "Set up a second factor and sign in with it before requiring one of every member."),
    MfaAlreadyEnabled = (409, "mfa_already_enabled", "Two-factor authentication is already on."),
    ReauthenticateWithProvider = (409, "reauthenticate_with_provider", "This account has no password: re-authenticate through its identity provider."),
    ReauthenticateLocally = (409, "reauthenticate_locally", "Re-authenticate with the account's password."),
    AccountExists = (409, "account_exists", "An account with this email address exists: sign in to it and link the provider."),
    IdentityInUse = (409, "identity_in_use", "The provider identity is linked to another account."),
    LastSignInMethod = (409, "last_sign_in_method", "Unlinking would leave the account with no way to sign in."),
    UnknownProvider = (404, "unknown_provider", "No identity provider of this name is configured."),
    // Access.
    Forbidden = (403, "forbidden", "The caller lacks the permission the operation needs; or, where cross-origin requests are allowed from listed origins only, a request from another origin (CORS)."),
    WorkspaceRequiresMfa = (403, "workspace_requires_mfa", "The workspace requires two-factor authentication and the caller has not turned it on."),
    CsrfFailed = (403, "csrf_failed", "A state-changing request with a session cookie lacks the matching `X-CSRF-Token` header."),
    CrossSiteRequest = (403, "cross_site_request", "A state-changing request from another site (`Sec-Fetch-Site: cross-site`) from an origin not allowed."),
    NotFound = (404, "not_found", "No such resource, or one the caller may not see (its existence is not revealed)."),
    // Workspace data.
    InvalidPermission = (400, "invalid_permission", "A role or permission name is malformed or unknown."),
    InvalidApiKeySettings = (400, "invalid_api_key_settings", "The API key's scopes, limits or expiry are out of bounds."),
    TooManyApiKeys = (400, "too_many_api_keys", "The workspace holds the most API keys allowed."),
    InvalidEndpointUrl = (400, "invalid_endpoint_url", "The endpoint URL is not an https URL on a public address and standard port (or allowed by the egress policy)."),
    UnknownEventType = (400, "unknown_event_type", "An event type is not in the catalogue."),
    TooManyEndpoints = (400, "too_many_endpoints", "The workspace holds the most webhook endpoints allowed."),
    InvalidSettings = (400, "invalid_settings", "The webhook source's settings do not fit its kind."),
    InvalidSecrets = (400, "invalid_secrets", "A webhook source holds 1 to 5 secrets, each in its scheme's format."),
    InvalidField = (400, "invalid_field", "A connection field's value is malformed."),
    UnknownField = (400, "unknown_field", "A connection field is not one of the provider's."),
    MissingField = (400, "missing_field", "A connection field the provider needs is missing."),
    InvalidPath = (400, "invalid_path", "The connection's path prefix is malformed."),
    UnknownScope = (400, "unknown_scope", "A connection scope is not one of the provider's."),
    WriteScopeNotEnabled = (400, "write_scope_not_enabled", "A write scope was asked for a connection whose writes are not enabled."),
    TextTooLong = (400, "text_too_long", "The text is longer than the operation accepts."),
    LastOwner = (409, "last_owner", "The change would leave the workspace without an owner."),
    Conflict = (409, "conflict", "The resource exists already or changed meanwhile (a concurrent request won); reload and retry."),
    EndpointDisabled = (409, "endpoint_disabled", "The webhook endpoint is disabled."),
    DeliveryPending = (409, "delivery_pending", "The delivery is still pending; it can be replayed once it ended."),
    // Inbound webhooks.
    WebhookSignatureMissing = (401, "webhook_signature_missing", "The delivery carries no signature header."),
    WebhookSignatureMalformed = (401, "webhook_signature_malformed", "The signature header cannot be parsed."),
    WebhookSignatureStale = (401, "webhook_signature_stale", "The signed timestamp is older than the tolerance (replay protection)."),
    WebhookSignatureFuture = (401, "webhook_signature_future", "The signed timestamp is further in the future than the tolerance."),
    WebhookSignatureMismatch = (401, "webhook_signature_mismatch", "No configured secret produces the signature."),
    WebhookSecretMissing = (500, "webhook_secret_missing", "The source has no signing secret configured; the delivery is refused (fail closed)."),
    // Protocol and limits.
    MethodNotAllowed = (405, "method_not_allowed", "The resource does not answer this method; `Allow` lists those it does."),
    NotAcceptable = (406, "not_acceptable", "No representation the client accepts."),
    RequestTimeout = (408, "request_timeout", "The request was not received in time."),
    LengthRequired = (411, "length_required", "The body's length must be declared."),
    PayloadTooLarge = (413, "payload_too_large", "The body is larger than the server accepts."),
    UriTooLong = (414, "uri_too_long", "The request target is longer than the server accepts."),
    UnsupportedMediaType = (415, "unsupported_media_type", "The body's `Content-Type` is not one the operation accepts (JSON, `application/json`)."),
    RateLimited = (429, "rate_limited", "Too many requests from this client or for this account; retry after `Retry-After` seconds."),
    ApiKeyQuotaExceeded = (429, "api_key_quota_exceeded", "The API key used its requests for this minute or month; retry after `Retry-After` seconds."),
    HeadersTooLarge = (431, "headers_too_large", "The request's header section is larger than the server accepts."),
    // Server side.
    Internal = (500, "internal", "An unexpected failure; quote the request id when reporting it."),
    ProviderUnavailable = (502, "provider_unavailable", "The identity provider could not be reached or answered wrongly."),
    Unavailable = (503, "unavailable", "The service cannot answer now; retry after `Retry-After` seconds."),
    Timeout = (503, "timeout", "The request took longer than the server allows; nothing partial was kept."),
    StorageBusy = (503, "storage_busy", "The data store was busy with other writes; nothing was changed. Retry after `Retry-After` seconds."),
    StorageUnavailable = (503, "storage_unavailable", "The data store could not be reached; nothing was changed. Retry after `Retry-After` seconds."),
    SessionStoreUnavailable = (503, "session_store_unavailable", "The session store could not be reached; nothing was changed. Retry after `Retry-After` seconds."),
    NotReady = (503, "not_ready", "A dependency of the service is unavailable (readiness probe)."),
}

impl ErrorCode {
    /// The code of a given wire string, for codes chosen by the domain crates.
    pub fn from_wire(wire: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == wire)
    }

    /// The code for a status when nothing more specific is known.
    pub fn for_status(status: StatusCode) -> ErrorCode {
        match status.as_u16() {
            400 => ErrorCode::BadRequest,
            // One code for every 401, whichever credential scheme failed.
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            406 => ErrorCode::NotAcceptable,
            408 => ErrorCode::RequestTimeout,
            409 => ErrorCode::Conflict,
            411 => ErrorCode::LengthRequired,
            413 => ErrorCode::PayloadTooLarge,
            414 => ErrorCode::UriTooLong,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::InvalidValue,
            429 => ErrorCode::RateLimited,
            431 => ErrorCode::HeadersTooLarge,
            503 => ErrorCode::Unavailable,
            s if s >= 500 => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_string_names_one_code_with_an_error_status_and_a_meaning() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} appears twice", code.as_str());
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code:?}");
            assert!(!code.meaning().is_empty());
        }
    }

    #[test]
    fn every_code_a_domain_crate_chooses_is_in_the_table() {
        // The domain crates pick codes for their refusals as string literals
        // (`TenancyError::Rejected { code: "…" }`, `VerifyError::code`): each must be here.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = Vec::new();
        for krate in ["tenancy", "auth", "webhooks", "pii", "rbac", "audit", "scheduler", "egress", "crypto-vault"] {
            let mut stack = vec![root.join(krate).join("src")];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for (i, _) in text.match_indices("code: \"") {
                        let rest = &text[i + "code: \"".len()..];
                        let wire = &rest[..rest.find('"').unwrap_or(0)];
                        if ErrorCode::from_wire(wire).is_none() {
                            missing.push(format!("{}: {wire}", path.display()));
                        }
                    }
                }
            }
        }
        for wire in ["webhook_signature_missing", "webhook_signature_malformed", "webhook_signature_mismatch"] {
            assert!(ErrorCode::from_wire(wire).is_some(), "{wire}");
        }
        assert!(missing.is_empty(), "codes missing from the table: {missing:?}");
    }
}
