//! The one error type of the crate and the value a successful verification returns.

/// Why a webhook was refused, or why it could not be checked at all.
///
/// The details are fixed phrases chosen here: a message never contains a secret, the expected
/// signature or any part of the request. Every variant except [`VerifyError::SecretMissing`] is
/// the sender's fault (the caller refuses the request); `SecretMissing` is the operator's (the
/// caller answers 500 and processes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent or empty, or holds no signature of the scheme checked.
    #[error("webhook signature missing: {0}")]
    SignatureMissing(&'static str),
    /// A header is present but cannot be parsed, or a signature does not decode.
    #[error("webhook signature malformed: {0}")]
    SignatureMalformed(&'static str),
    /// The signature matches but its timestamp is older than the tolerance allows.
    #[error("webhook timestamp is older than the tolerance allows")]
    SignatureStale,
    /// The signature matches but its timestamp is further ahead than the tolerance allows.
    #[error("webhook timestamp is further in the future than the tolerance allows")]
    SignatureFuture,
    /// Well-formed signatures were sent, and none matches the payload under any secret.
    #[error("no webhook signature matches the payload")]
    SignatureMismatch,
    /// No usable secret is configured, so nothing can be verified (fail closed).
    #[error("no usable webhook secret is configured: {0}")]
    SecretMissing(&'static str),
}

impl VerifyError {
    /// The stable machine-readable code of this error (API responses, metrics labels).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::SignatureMissing(_) => "webhook_signature_missing",
            VerifyError::SignatureMalformed(_) => "webhook_signature_malformed",
            VerifyError::SignatureStale => "webhook_signature_stale",
            VerifyError::SignatureFuture => "webhook_signature_future",
            VerifyError::SignatureMismatch => "webhook_signature_mismatch",
            VerifyError::SecretMissing(_) => "webhook_secret_missing",
        }
    }

    /// True when the fault is the server's configuration, not the request
    /// ([`VerifyError::SecretMissing`]): answer 500 and process nothing.
    pub fn is_configuration_error(&self) -> bool {
        matches!(self, VerifyError::SecretMissing(_))
    }
}

/// A webhook whose signature matched and whose timestamp, where the scheme has one, is inside
/// the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Index, in the slice of secrets passed in, of the first secret that matched. During a
    /// rotation, a count of index 0 against index 1 shows when senders have moved over.
    pub secret_index: usize,
}

impl Verified {
    pub(crate) fn new(secret_index: usize) -> Self {
        Verified { secret_index }
    }
}
