//! Verification: an inbound delivery as received, and each arrival's signature checked against
//! its source's scheme, settings and secrets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crypto_vault::Vault;
use ids::SourceId;
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tenancy::{TenancyError, TenantTx};

use super::secrets::{open_sealed, SourceSecrets};
use super::settings::{Kind, Settings};
use crate::{generic, standard, stripe, twilio, VerifyError};

/// One inbound delivery as the HTTP layer received it.
#[derive(Debug)]
pub struct Delivery {
    /// Header values by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// The request's query string exactly as received, without the `?` (Twilio signs it).
    pub query: Option<String>,
    pub body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// A verified delivery, ready for the inbox.
pub(super) struct Event {
    pub(super) event_id: String,
    pub(super) event_type: Option<String>,
    pub(super) body_sha256: String,
}

/// A source's kind, and each arrival's time and verdict.
pub(super) struct Checked {
    pub(super) kind: Kind,
    pub(super) verdicts: Vec<(DateTime<Utc>, Result<Event, VerifyError>)>,
}

/// Reads the source once and verifies every arrival against it; `None` when there is no such
/// live source.
pub(super) async fn check(
    tx: &TenantTx,
    vault: &Vault,
    source: SourceId,
    arrivals: &[(&Delivery, DateTime<Utc>)],
) -> Result<Option<Checked>, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            "SELECT s.kind, s.settings, s.secrets_ciphertext FROM webhook_sources s JOIN workspaces w ON w.id = s.tenant_id
              WHERE s.tenant_id = $1 AND s.id = $2 AND w.deleted_at IS NULL",
            vec![tx.tenant().0.into(), source.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let kind: String = row.try_get("", "kind")?;
    let Some(kind) = Kind::parse(&kind) else { return Ok(None) };
    let settings: String = row.try_get("", "settings")?;
    let settings: Settings =
        serde_json::from_str(&settings).map_err(|_| TenancyError::Internal("webhook settings are not JSON".into()))?;
    let sealed: Option<Vec<u8>> = row.try_get("", "secrets_ciphertext")?;
    let secrets = open_sealed(tx, vault, source, sealed.as_deref()).await?.unwrap_or(SourceSecrets(Vec::new()));
    let verdicts = arrivals
        .iter()
        .map(|(delivery, now)| {
            let verdict = verify(kind, &settings, &secrets, delivery, *now).map(|(event_id, event_type)| Event {
                event_id,
                event_type,
                body_sha256: hex::encode(Sha256::digest(&delivery.body)),
            });
            (*now, verdict)
        })
        .collect();
    Ok(Some(Checked { kind, verdicts }))
}

/// Checks the delivery's signature; the event id (and type) it carries.
fn verify(
    kind: Kind,
    settings: &Settings,
    secrets: &SourceSecrets,
    d: &Delivery,
    now: DateTime<Utc>,
) -> Result<(String, Option<String>), VerifyError> {
    let body_id = || format!("sha256:{}", hex::encode(Sha256::digest(&d.body)));
    let json_field = |field: &str| {
        serde_json::from_slice::<serde_json::Value>(&d.body)
            .ok()
            .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(|s| s.chars().take(200).collect::<String>()))
    };
    let raw: Vec<&str> = secrets.0.iter().map(|s| s.expose_secret()).collect();
    match kind {
        Kind::Stripe => {
            let keys = raw.iter().filter_map(|s| stripe::SigningSecret::parse(s).ok()).collect::<Vec<_>>();
            stripe::verify(d.header(stripe::SIGNATURE_HEADER), &d.body, &keys, now)?;
            Ok((json_field("id").unwrap_or_else(body_id), json_field("type")))
        }
        Kind::Standard => {
            let keys = raw.iter().filter_map(|s| standard::Secret::parse(s).ok()).collect::<Vec<_>>();
            let headers = standard::Headers {
                id: d.header(standard::ID_HEADER),
                timestamp: d.header(standard::TIMESTAMP_HEADER),
                signature: d.header(standard::SIGNATURE_HEADER),
            };
            standard::verify(&headers, &d.body, &keys, now)?;
            Ok((headers.id.unwrap_or_default().to_owned(), json_field("type")))
        }
        Kind::Twilio => {
            let keys = raw.iter().filter_map(|s| twilio::AuthToken::parse(s).ok()).collect::<Vec<_>>();
            let url = twilio_url(settings.url.as_deref().unwrap_or_default(), d.query.as_deref());
            let headers = twilio::Headers {
                signature: d.header(twilio::SIGNATURE_HEADER),
                settings: d.header(twilio::SIGNATURE_SETTINGS_HEADER),
            };
            twilio::verify(&headers, &url, &d.body, &keys)?;
            Ok((twilio_event_id(&url, &d.body), None))
        }
        Kind::Generic => {
            let keys = raw.iter().filter_map(|s| generic::Secret::parse(s).ok()).collect::<Vec<_>>();
            let scheme = settings.scheme();
            let headers = generic::Headers {
                signature: settings.signature_header.as_deref().and_then(|h| d.header(h)),
                timestamp: settings.timestamp_header.as_deref().and_then(|h| d.header(h)),
            };
            generic::verify(&scheme, &headers, &d.body, &keys, now)?;
            // The signed material names the event: the timestamp (when signed) and the body.
            let id = match headers.timestamp {
                Some(t) => {
                    let mut h = Sha256::new();
                    h.update(t.as_bytes());
                    h.update(b".");
                    h.update(&d.body);
                    format!("sha256:{}", hex::encode(h.finalize()))
                }
                None => body_id(),
            };
            Ok((id, None))
        }
    }
}

/// The event id of a verified Twilio delivery to `url` (as [`twilio_url`] rebuilt it).
fn twilio_event_id(url: &str, body: &[u8]) -> String {
    // Only signed material names the event: the URL (its query included) and the
    // parameters as signed (sorted, decoded), or the body that `bodySHA256` in the signed
    // URL pins. An unsigned header such as `I-Twilio-Idempotency-Token` or the signature
    // settings, or a re-encoded or reordered body, must not make a replay look new.
    let signed = if twilio::has_body_hash(url) {
        body.to_vec()
    } else {
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        params.sort();
        params.into_iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>().join("\n").into_bytes()
    };
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update([0]);
    h.update(&signed);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The URL Twilio requested, as it signed it: the source's configured URL up to its path (scheme,
/// host, port and path are the configured ones, never the request's `Host` header) followed by the
/// request's own query string as received. The query is Twilio's to choose — it appends
/// `bodySHA256` to JSON deliveries — and is signed, so a query the configured URL carries is not
/// used: a delivery to it arrives with that query anyway.
fn twilio_url(configured: &str, query: Option<&str>) -> String {
    let base = configured.split(['?', '#']).next().unwrap_or_default();
    match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{base}?{query}"),
        None => base.to_owned(),
    }
}
