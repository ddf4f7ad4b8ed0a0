//! `POST /api/v1/pii/redact`: the scanner and redactor of the `pii` crate for any signed-in
//! caller — the same findings and offsets as `rampart pii scan`. Nothing is stored or logged.

use crate::codes::ErrorCode;
use poem_openapi::{payload::Json, Enum, Object, OpenApi};

use super::ApiTags;
use crate::{error::ApiError, principal::Auth};

pub(crate) struct PiiApi;

/// How findings are replaced.
#[derive(Debug, Clone, Copy, Default, Enum)]
#[oai(rename_all = "lowercase")]
enum RedactMode {
    /// `[EMAIL]`, `[CREDIT_CARD]`, …
    #[default]
    Tag,
    /// Letters and digits become `*`, separators stay.
    Mask,
}

/// Text to redact.
#[derive(Debug, Object)]
#[oai(example)]
struct RedactRequest {
    /// At most 256 KiB of UTF-8. The schema states 65,536 characters, the most that always fit
    /// in 256 KiB (a character takes up to 4 bytes).
    #[oai(validator(max_length = 65536))]
    text: String,
    #[oai(default)]
    mode: RedactMode,
}

impl poem_openapi::types::Example for RedactRequest {
    fn example() -> Self {
        RedactRequest { text: "Mail jane.doe@example.com or call +44 20 7946 0958.".into(), mode: RedactMode::Tag }
    }
}

/// One finding, in Unicode scalar values of the input (end exclusive).
#[derive(Debug, Object)]
struct FindingBody {
    /// `email`, `credit_card`, `us_ssn`, `ip_address`, `phone_number`, `iban` or `secret`.
    kind: String,
    start: u64,
    end: u64,
}

/// The redacted text and what was found.
#[derive(Debug, Object)]
struct RedactResponse {
    redacted: String,
    findings: Vec<FindingBody>,
}

/// Longest text accepted, in bytes.
const MAX_TEXT_BYTES: usize = 256 * 1024;

#[OpenApi(prefix_path = "/api/v1")]
impl PiiApi {
    /// Find and replace personal data and secrets (e-mail addresses, payment cards, US SSNs, IP
    /// addresses, phone numbers, IBANs, keys and tokens) in a text. Nothing is stored.
    #[oai(path = "/pii/redact", method = "post", operation_id = "redactPii", tag = "ApiTags::Pii")]
    async fn redact(&self, _auth: Auth, body: Json<RedactRequest>) -> poem::Result<Json<RedactResponse>> {
        if body.text.len() > MAX_TEXT_BYTES {
            return Err(ApiError::new(ErrorCode::TextTooLong, "text is at most 256 KiB").into());
        }
        let redactor = match body.mode {
            RedactMode::Tag => pii::Redactor::tag(),
            RedactMode::Mask => pii::Redactor::new(pii::Mode::Mask),
        };
        let out = redactor.redact(&body.text);
        let findings = pii::char_spans(&body.text, &out.findings)
            .into_iter()
            .map(|s| FindingBody { kind: s.kind.as_str().to_owned(), start: s.start as u64, end: s.end as u64 })
            .collect();
        Ok(Json(RedactResponse { redacted: out.text.into_owned(), findings }))
    }
}
