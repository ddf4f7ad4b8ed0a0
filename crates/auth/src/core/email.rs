//! E-mail addresses, parsed once and compared in normalised form.

use crate::core::error::AuthError;

/// A syntactically plausible address, trimmed and lower-cased (RFC 5321 §4.5.3.1: at most 254
/// characters in practice). Delivery is what proves it; this only refuses obvious garbage.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl std::fmt::Debug for EmailAddress {
    // Personal data: masked in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        write!(f, "EmailAddress(***@{domain})")
    }
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<EmailAddress, AuthError> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@').ok_or(AuthError::InvalidEmail)?;
        let ok = email.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
            && !local.contains('@');
        if !ok {
            return Err(AuthError::InvalidEmail);
        }
        Ok(EmailAddress(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_garbage_refused() {
        assert_eq!(EmailAddress::parse("  Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@example.com",
            "<a@example.com>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_local_part() {
        let e = EmailAddress::parse("alice@example.com").unwrap();
        assert_eq!(format!("{e:?}"), "EmailAddress(***@example.com)");
    }
}
