//! Requests to the providers a workspace connects (`tenancy::connections`): the connection test,
//! one authenticated request to the provider through the SSRF-guarded egress client — the
//! provider's own domains only, every resolved address and redirect checked, 30 seconds at most —
//! with the providers' request signing (AWS Signature Version 4, a Google service account's
//! signed JWT grant). URLs are built here from validated settings (bucket, region, account).
//!
//! This crate never takes a URL from a stored secret (a service account's `token_uri` is
//! ignored), never stores anything, and never reaches a provider except through `egress`.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tenancy::connections::{Opened, Provider};

/// Tests the opened connection at `now`, resolving through `resolver`; `exceptions` are exact
/// addresses let through the private-address refusal (tests only). `Err` carries the stable code
/// of the failure.
pub async fn probe(
    opened: &Opened,
    resolver: std::sync::Arc<dyn egress::Resolver>,
    exceptions: &[std::net::SocketAddr],
    now: chrono::DateTime<Utc>,
) -> Result<(), String> {
    let spec = opened.connection.provider.spec();
    let mut policy = egress::EgressPolicy::for_domains(spec.domains);
    for addr in exceptions {
        policy = policy.with_exception(*addr);
    }
    let client = egress::GuardedClient::new(policy, resolver).map_err(|e| e.code().to_owned())?;
    let request = request(&client, opened, now).await?;
    let response = client.send(request).await.map_err(|e| e.code().to_owned())?;
    judge(opened.connection.provider, response).await
}

fn config<'a>(opened: &'a Opened, name: &str) -> Result<&'a str, String> {
    opened.connection.config.get(name).map(String::as_str).ok_or_else(|| "invalid_connection".to_owned())
}

fn secret<'a>(opened: &'a Opened, name: &str) -> Result<&'a str, String> {
    opened.secret.get(name).ok_or_else(|| "invalid_connection".to_owned())
}

fn bad(_: impl std::fmt::Debug) -> String {
    "invalid_connection".to_owned()
}

/// A request with `headers` and, when given, a form body (`application/x-www-form-urlencoded`).
fn build(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Result<reqwest::Request, String> {
    let mut request = reqwest::Request::new(method, reqwest::Url::parse(url).map_err(bad)?);
    for (name, value) in headers {
        let mut value = reqwest::header::HeaderValue::from_str(value).map_err(bad)?;
        value.set_sensitive(true);
        request.headers_mut().insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(bad)?, value);
    }
    if let Some(pairs) = form {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        request.headers_mut().insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        *request.body_mut() = Some(body.into());
    }
    Ok(request)
}

/// The provider's cheapest authenticated read.
async fn request(
    client: &egress::GuardedClient,
    opened: &Opened,
    now: chrono::DateTime<Utc>,
) -> Result<reqwest::Request, String> {
    use reqwest::Method;
    match opened.connection.provider {
        Provider::Slack => {
            let bearer = format!("Bearer {}", secret(opened, "bot_token")?);
            build(Method::POST, "https://slack.com/api/auth.test", &[("authorization", &bearer)], None)
        }
        Provider::Google => build(
            Method::POST,
            "https://oauth2.googleapis.com/tokeninfo",
            &[],
            Some(&[("access_token", secret(opened, "access_token")?)]),
        ),
        Provider::S3 | Provider::R2 => {
            let (host, path, region) = if opened.connection.provider == Provider::S3 {
                let region = config(opened, "region")?;
                (format!("{}.s3.{region}.amazonaws.com", config(opened, "bucket")?), "/".to_owned(), region)
            } else {
                (
                    format!("{}.r2.cloudflarestorage.com", config(opened, "account_id")?),
                    format!("/{}", config(opened, "bucket")?),
                    "auto",
                )
            };
            const QUERY: &str = "list-type=2&max-keys=1";
            let creds = SigV4Credentials {
                key_id: secret(opened, "access_key_id")?,
                secret: secret(opened, "secret_access_key")?,
            };
            let headers = sigv4_get(&creds, region, &host, &path, QUERY, now);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            build(Method::GET, &format!("https://{host}{path}?{QUERY}"), &headers, None)
        }
        Provider::Gcs | Provider::Firebase => {
            let token = google_service_token(client, secret(opened, "service_account_json")?, now).await?;
            let bearer = zeroize::Zeroizing::new(format!("Bearer {}", token.as_str()));
            let url = format!("https://storage.googleapis.com/storage/v1/b/{}?fields=name", config(opened, "bucket")?);
            build(Method::GET, &url, &[("authorization", &bearer)], None)
        }
    }
}

/// Whether the provider accepted the credentials.
async fn judge(provider: Provider, response: reqwest::Response) -> Result<(), String> {
    let status = response.status();
    if provider == Provider::Slack {
        // Slack answers 200 with `{"ok": false, "error": …}` for bad tokens.
        let body: serde_json::Value = response.json().await.map_err(|_| "provider_unexpected_answer".to_owned())?;
        return if body.get("ok") == Some(&serde_json::Value::Bool(true)) {
            Ok(())
        } else {
            Err("provider_rejected".into())
        };
    }
    match status.as_u16() {
        200..=299 => Ok(()),
        400 | 401 | 403 | 404 => Err("provider_rejected".into()),
        _ => Err("provider_unavailable".into()),
    }
}

/// An OAuth access token for a Google service account (RFC 7523 JWT bearer grant), from
/// Google's token endpoint only.
async fn google_service_token(
    client: &egress::GuardedClient,
    json: &str,
    now: chrono::DateTime<Utc>,
) -> Result<zeroize::Zeroizing<String>, String> {
    #[derive(serde::Deserialize)]
    struct Account {
        client_email: String,
        private_key: secrecy::SecretString,
    }
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        scope: &'a str,
        aud: &'a str,
        iat: i64,
        exp: i64,
    }
    const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
    let account: Account = serde_json::from_str(json).map_err(bad)?;
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(secrecy::ExposeSecret::expose_secret(&account.private_key).as_bytes())
            .map_err(bad)?;
    let now = now.timestamp();
    let claims = Claims {
        iss: &account.client_email,
        scope: "https://www.googleapis.com/auth/devstorage.read_only",
        aud: TOKEN_URL,
        iat: now,
        // At most one hour (RFC 7523 §3; Google refuses longer).
        exp: now + 3600,
    };
    let assertion =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).map_err(bad)?;
    let request = build(
        reqwest::Method::POST,
        TOKEN_URL,
        &[],
        Some(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())]),
    )?;
    let response = client.send(request).await.map_err(|e| e.code().to_owned())?;
    if !response.status().is_success() {
        return Err("provider_rejected".into());
    }
    let body: serde_json::Value = response.json().await.map_err(|_| "provider_unexpected_answer".to_owned())?;
    body.get("access_token")
        .and_then(|t| t.as_str())
        .map(|t| zeroize::Zeroizing::new(t.to_owned()))
        .ok_or_else(|| "provider_unexpected_answer".to_owned())
}

struct SigV4Credentials<'a> {
    key_id: &'a str,
    secret: &'a str,
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Headers of an AWS Signature Version 4 GET with an empty body to S3 (or an S3-compatible
/// service): `x-amz-date`, `x-amz-content-sha256` and `Authorization` ("Authenticating Requests:
/// Using the Authorization Header", Amazon S3 API reference). `query` is already canonical
/// (parameters sorted, URI-encoded).
fn sigv4_get(
    creds: &SigV4Credentials<'_>,
    region: &str,
    host: &str,
    path: &str,
    query: &str,
    now: chrono::DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = now.format("%Y%m%d").to_string();
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "GET\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{EMPTY_SHA256}"
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", creds.secret).as_bytes(), day.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    vec![
        ("x-amz-date", amz_date),
        ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
                creds.key_id
            ),
        ),
    ]
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length (RFC 2104), so this never fails.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Amazon S3 API reference, "Example: GET Bucket (List Objects)" of Signature Version 4
    /// with the Authorization header.
    #[test]
    fn sigv4_matches_the_published_list_objects_example() {
        let creds =
            SigV4Credentials { key_id: "AKIAIOSFODNN7EXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };
        let at = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z").unwrap().with_timezone(&Utc);
        let headers = sigv4_get(&creds, "us-east-1", "examplebucket.s3.amazonaws.com", "/", "max-keys=2&prefix=J", at);
        let auth = &headers.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }
}
