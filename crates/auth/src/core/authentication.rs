//! When and how a credential's holder last authenticated, and how long that counts as recent
//! (see [`crate::stepup`] for the flows that renew it).

use chrono::{DateTime, Duration, Utc};

/// How long an authentication counts as recent: five minutes, the `max_age` a sensitive action
/// asks for (RFC 9470 §3, OpenID Connect Core 1.0 §3.1.2.1 `max_age`).
pub const STEP_UP_MAX_AGE: Duration = Duration::minutes(5);

/// How far ahead of this replica's clock another replica's may be.
pub const CLOCK_LEEWAY: Duration = Duration::seconds(60);

/// Authentication method references (RFC 8176 §2).
pub mod amr {
    /// A password.
    pub const PASSWORD: &str = "pwd";
    /// A one-time code: TOTP or a recovery code.
    pub const OTP: &str = "otp";
    /// Sign-in through an OpenID Connect provider. Not in RFC 8176's registry; the value other
    /// identity platforms use for federated sign-in.
    pub const FEDERATED: &str = "fed";
}

/// When and how a credential's holder last authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub at: DateTime<Utc>,
    /// RFC 8176 values, see [`amr`].
    pub amr: Vec<String>,
}

impl Authentication {
    pub fn new(at: DateTime<Utc>, amr: &[&str]) -> Authentication {
        Authentication { at, amr: amr.iter().map(|m| (*m).to_owned()).collect() }
    }

    /// Within [`STEP_UP_MAX_AGE`] of `now`, and not further in the future than replicas' clocks
    /// may differ ([`CLOCK_LEEWAY`]).
    pub fn is_recent(&self, now: DateTime<Utc>) -> bool {
        self.at <= now + CLOCK_LEEWAY && now - self.at <= STEP_UP_MAX_AGE
    }

    /// The sign-in included a second factor.
    pub fn has_second_factor(&self) -> bool {
        self.amr.iter().any(|m| m == amr::OTP)
    }

    /// The `amr` stored with a token family or native code: space-separated.
    pub(crate) fn amr_text(&self) -> String {
        self.amr.join(" ")
    }

    pub(crate) fn from_stored(at: Option<DateTime<Utc>>, amr: Option<String>) -> Option<Authentication> {
        Some(Authentication {
            at: at?,
            amr: amr.unwrap_or_default().split(' ').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
        })
    }
}
