//! A source's provider scheme ([`Kind`]) and its non-secret [`Settings`], checked per scheme.

use tenancy::TenancyError;

use crate::{generic, standard};

/// A provider's signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stripe,
    Standard,
    Twilio,
    Generic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stripe => "stripe",
            Kind::Standard => "standard",
            Kind::Twilio => "twilio",
            Kind::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Stripe, Kind::Standard, Kind::Twilio, Kind::Generic].into_iter().find(|k| k.as_str() == s)
    }
}

/// Non-secret settings of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Twilio: the exact public URL configured at Twilio (signatures cover it; never taken from
    /// the request's Host header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Generic: the header carrying the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// Generic: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Generic: a prefix before the signature, such as `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Generic: a header carrying a unix timestamp that is signed as `{timestamp}.{body}` and
    /// must be within 300 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
}

fn header_name_ok(h: &str) -> bool {
    !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Settings {
    pub(super) fn check(&self, kind: Kind) -> Result<(), TenancyError> {
        let generic_fields = self.signature_header.is_some()
            || self.encoding.is_some()
            || self.prefix.is_some()
            || self.timestamp_header.is_some();
        let bad = |message| Err(TenancyError::Rejected { code: "invalid_settings", message });
        match kind {
            Kind::Twilio => match &self.url {
                Some(u) if url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some()) => {}
                _ => return bad("twilio sources need the https url configured at Twilio"),
            },
            Kind::Generic => {
                if !self.signature_header.as_deref().is_some_and(header_name_ok) {
                    return bad("generic sources need a signature_header");
                }
                if !matches!(self.encoding.as_deref(), None | Some("hex") | Some("base64")) {
                    return bad("encoding is hex or base64");
                }
                if self.timestamp_header.as_deref().is_some_and(|h| !header_name_ok(h)) {
                    return bad("header names are letters, digits, - and _");
                }
                if self.prefix.as_ref().is_some_and(|p| p.len() > 32 || p.chars().any(char::is_control)) {
                    return bad("prefix is at most 32 characters");
                }
            }
            Kind::Stripe | Kind::Standard => {}
        }
        if kind != Kind::Twilio && self.url.is_some() || kind != Kind::Generic && generic_fields {
            return bad("a setting this scheme does not take");
        }
        Ok(())
    }

    pub(super) fn scheme(&self) -> generic::Scheme {
        let encoding =
            if self.encoding.as_deref() == Some("base64") { generic::Encoding::Base64 } else { generic::Encoding::Hex };
        let mut scheme = generic::Scheme::new(self.signature_header.clone().unwrap_or_default(), encoding);
        if let Some(prefix) = &self.prefix {
            scheme = scheme.with_prefix(prefix.clone());
        }
        if let Some(header) = &self.timestamp_header {
            scheme = scheme.with_timestamp(header.clone(), standard::DEFAULT_TOLERANCE);
        }
        scheme
    }
}
