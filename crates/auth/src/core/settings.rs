//! How the flows are configured, and the facts of a request they record.

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    #[default]
    Open,
    /// Only through an invitation (workspace invitations create accounts).
    InviteOnly,
    Closed,
}

/// Settings of the auth flows.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub signup: SignupMode,
    /// Base of links in mails, e.g. `https://app.example.com` (never taken from a request's Host
    /// header: OWASP Forgot Password Cheat Sheet).
    pub link_base_url: String,
    /// Redirect URIs of the native and desktop clients that may sign in through a provider
    /// (RFC 8252: loopback ones match on any port). Empty: no native client may.
    pub native_redirect_uris: Vec<String>,
}

/// Facts about the request, recorded with authentication events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}
