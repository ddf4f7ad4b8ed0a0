//! The API description as published. poem-openapi derives the operations and schemas from the
//! handlers; this finishes the document with what the derive cannot say, so that SDKs generated
//! from it need no hand-written request:
//! - every error response an operation can answer, from the error table ([`ErrorCode`]), with
//!   the shared error schema and the codes each status can carry;
//! - `nullable` on every field the server may send as `null`, and `required` on every field of
//!   a response object (the server always sends each one, `null` when it has no value);
//! - a plain `$ref` where the derive wrapped one in `allOf` with a default or a description.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::codes::ErrorCode;

/// Codes an operation answers beyond those its shape implies ([`shape_codes`]): the refusals of
/// its own rules, by operation id.
const OPERATION_CODES: &[(&str, &[ErrorCode])] = {
    use ErrorCode as C;
    &[
        ("readyz", &[C::NotReady]),
        ("signUp", &[C::InvalidEmail, C::WeakPassword, C::SignupClosed]),
        ("verifyEmail", &[C::InvalidToken]),
        ("signIn", &[C::InvalidCredentials, C::EmailNotVerified]),
        ("completeSignIn", &[C::InvalidToken, C::InvalidCode, C::InvalidRequest]),
        ("issueToken", &[C::InvalidCredentials, C::EmailNotVerified]),
        ("completeTokenGrant", &[C::InvalidToken, C::InvalidCode, C::InvalidRequest]),
        ("enrolTotp", &[C::MfaAlreadyEnabled, C::InsufficientUserAuthentication]),
        ("confirmTotp", &[C::InvalidCode, C::InvalidRequest, C::MfaAlreadyEnabled]),
        ("regenerateRecoveryCodes", &[C::InvalidCode, C::InvalidRequest, C::InsufficientUserAuthentication]),
        ("disableMfa", &[C::InvalidCode, C::InvalidRequest, C::InsufficientUserAuthentication]),
        ("refreshToken", &[C::InvalidToken, C::RefreshTokenReused, C::TokenFamilyEnded, C::Unauthenticated]),
        (
            "changePassword",
            &[C::InvalidCredentials, C::WeakPassword, C::ReauthenticateWithProvider, C::InsufficientUserAuthentication],
        ),
        ("requestPasswordReset", &[C::InvalidEmail]),
        ("confirmPasswordReset", &[C::InvalidToken, C::WeakPassword]),
        ("revokeSession", &[C::InsufficientUserAuthentication]),
        ("revokeOtherSessions", &[C::InsufficientUserAuthentication]),
        ("revokeAllSessions", &[C::InsufficientUserAuthentication]),
        ("startOidcSignIn", &[C::UnknownProvider]),
        ("startNativeOidcSignIn", &[C::UnknownProvider, C::InvalidNativeRequest]),
        ("completeOidcSignIn", &[C::Unauthenticated, C::InvalidRequest, C::ProviderRefused]),
        ("exchangeNativeOidcCode", &[C::InvalidToken, C::InvalidNativeRequest]),
        ("linkIdentity", &[C::UnknownProvider, C::InsufficientUserAuthentication]),
        ("unlinkIdentity", &[C::LastSignInMethod, C::InsufficientUserAuthentication]),
        ("reauthenticate", &[C::InvalidCredentials, C::InvalidCode, C::ReauthenticateWithProvider]),
        ("reauthenticateWithProvider", &[C::UnknownProvider, C::ReauthenticateLocally]),
        ("createWorkspace", &[C::InvalidRequest]),
        ("renameWorkspace", &[C::InvalidRequest]),
        ("deleteWorkspace", &[C::InsufficientUserAuthentication]),
        ("setWorkspaceMfaRequirement", &[C::MfaRequiredFirst, C::InsufficientUserAuthentication]),
        ("changeMemberRole", &[C::InvalidPermission, C::LastOwner, C::InsufficientUserAuthentication]),
        ("removeMember", &[C::LastOwner, C::InsufficientUserAuthentication]),
        ("revokeMemberSessions", &[C::InsufficientUserAuthentication]),
        ("createRole", &[C::InvalidRequest, C::InvalidPermission, C::Conflict]),
        ("invite", &[C::InvalidEmail, C::InvalidPermission, C::InvalidRequest, C::Conflict]),
        ("acceptInvitation", &[C::InvalidToken, C::Conflict]),
        ("createGrant", &[C::InvalidRequest, C::InvalidPermission, C::Conflict]),
        ("exchangeWorkspaceToken", &[C::InvalidScope]),
        (
            "createApiKey",
            &[C::InvalidApiKeySettings, C::TooManyApiKeys, C::InvalidPermission, C::InsufficientUserAuthentication],
        ),
        ("listAuditEvents", &[C::InvalidRequest]),
        ("listProjects", &[]),
        ("createProject", &[C::InvalidRequest]),
        ("updateProject", &[C::InvalidRequest]),
        ("recordActivity", &[C::InvalidRequest]),
        ("setActivityWindows", &[C::InvalidRequest]),
        (
            "createConnection",
            &[
                C::InvalidField,
                C::UnknownField,
                C::MissingField,
                C::InvalidPath,
                C::UnknownScope,
                C::WriteScopeNotEnabled,
            ],
        ),
        ("rotateConnectionSecret", &[C::InvalidField, C::UnknownField, C::MissingField]),
        ("setConnectionScopes", &[C::UnknownScope, C::WriteScopeNotEnabled]),
        ("redactPii", &[C::TextTooLong]),
        (
            "receiveWebhook",
            &[
                C::UnsupportedMediaType,
                C::PayloadTooLarge,
                C::WebhookSignatureMissing,
                C::WebhookSignatureMalformed,
                C::WebhookSignatureStale,
                C::WebhookSignatureFuture,
                C::WebhookSignatureMismatch,
                C::WebhookSecretMissing,
            ],
        ),
        ("createWebhookSource", &[C::InvalidSettings, C::InvalidSecrets]),
        ("setWebhookSourceSecrets", &[C::InvalidSecrets]),
        ("createWebhookEndpoint", &[C::InvalidEndpointUrl, C::UnknownEventType, C::TooManyEndpoints]),
        ("updateWebhookEndpoint", &[C::InvalidEndpointUrl, C::UnknownEventType]),
        ("testWebhookEndpoint", &[C::EndpointDisabled]),
        ("replayWebhookDelivery", &[C::EndpointDisabled, C::DeliveryPending]),
        ("listOutboxActions", &[C::Forbidden, C::InvalidRequest]),
        ("retryOutboxAction", &[C::Forbidden, C::Conflict]),
        ("cancelOutboxAction", &[C::Forbidden, C::Conflict]),
    ]
};

/// The refusals of a provider's answer (state, issuer, code, ID token, the identity it names),
/// shared by the operations that redeem one.
const PROVIDER_ANSWER: (&[&str], &[ErrorCode]) = {
    use ErrorCode as C;
    (
        &["completeOidcSignIn", "exchangeNativeOidcCode"],
        &[
            C::InvalidOidcState,
            C::OidcIssuerMismatch,
            C::OidcCodeRejected,
            C::InvalidIdToken,
            C::ProviderEmailUnverified,
            C::ProviderEmailUntrusted,
            C::IdentityMismatch,
            C::AccountExists,
            C::IdentityInUse,
            C::ProviderUnavailable,
        ],
    )
};

/// What the codes of an operation depend on: its method, parameters, body and credentials.
struct Shape<'a> {
    method: &'a str,
    path: &'a str,
    schemes: BTreeSet<&'a str>,
    path_params: bool,
    query_params: bool,
    json_body: bool,
}

impl<'a> Shape<'a> {
    fn of(path: &'a str, method: &'a str, op: &'a Value) -> Shape<'a> {
        let schemes = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
        let located = |at: &str| params.iter().any(|p| p["in"] == at);
        Shape {
            method,
            path,
            schemes,
            path_params: located("path"),
            query_params: located("query"),
            json_body: op["requestBody"]["content"].as_object().is_some_and(|c| c.keys().any(|k| k.contains("json"))),
        }
    }
}

/// The codes every operation of a given shape can answer, whatever its own rules.
fn shape_codes(shape: &Shape<'_>) -> BTreeSet<ErrorCode> {
    use ErrorCode as C;
    // Every request: the per-client limit, the request timeout, the stores' faults, refusals
    // of ambiguous or forged credentials and of control characters in the target.
    let mut codes: BTreeSet<ErrorCode> = [
        C::RateLimited,
        C::Timeout,
        C::StorageBusy,
        C::StorageUnavailable,
        C::AmbiguousCredentials,
        C::IdentityHeaderRejected,
        C::InvalidParameter,
        // A cross-origin request from an origin not on the allow-list (CORS).
        C::Forbidden,
    ]
    .into();
    let unsafe_method = !matches!(shape.method, "get" | "head" | "options");
    if unsafe_method {
        codes.insert(C::CrossSiteRequest);
    }
    if !shape.schemes.is_empty() {
        codes.extend([C::Unauthenticated, C::SessionStoreUnavailable]);
    }
    if shape.schemes.contains("CookieAuth") && unsafe_method {
        codes.insert(C::CsrfFailed);
    }
    if shape.schemes.contains("ApiKeyAuth") {
        codes.insert(C::ApiKeyQuotaExceeded);
    }
    if shape.path_params {
        codes.insert(C::NotFound);
    }
    if shape.json_body {
        codes.extend([C::InvalidBody, C::DuplicateKey, C::InvalidValue, C::UnsupportedMediaType, C::PayloadTooLarge]);
    }
    if !shape.schemes.is_empty() && shape.path.contains("{workspace_id}") {
        codes.extend([C::Forbidden, C::WorkspaceRequiresMfa]);
    }
    let _ = shape.query_params;
    codes
}

/// Every code the operation `id` of `shape` can answer.
fn operation_codes(id: &str, shape: &Shape<'_>) -> BTreeSet<ErrorCode> {
    let mut codes = shape_codes(shape);
    if let Some((_, own)) = OPERATION_CODES.iter().find(|(op, _)| *op == id) {
        codes.extend(own.iter().copied());
    }
    let (redeemers, answer) = PROVIDER_ANSWER;
    if redeemers.contains(&id) {
        codes.extend(answer.iter().copied());
    }
    codes
}

/// The documented error codes of every operation, by operation id: what the description lists.
pub fn documented_codes(spec: &Value) -> BTreeMap<String, BTreeSet<ErrorCode>> {
    let mut all = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let id = op["operationId"].as_str().unwrap_or_default();
            all.insert(id.to_owned(), operation_codes(id, &Shape::of(path, method, op)));
        }
    }
    all
}

/// The description as published, from poem-openapi's document (pretty JSON in, pretty JSON out).
pub(crate) fn finish(raw: &str) -> String {
    let Ok(mut spec) = serde_json::from_str::<Value>(raw) else {
        return raw.to_owned();
    };
    let codes = documented_codes(&spec);
    add_error_responses(&mut spec, &codes);
    exact_schemas(&mut spec);
    serde_json::to_string_pretty(&spec).unwrap_or_else(|_| raw.to_owned())
}

fn add_error_responses(spec: &mut Value, codes: &BTreeMap<String, BTreeSet<ErrorCode>>) {
    let Some(paths) = spec["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        for op in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
            for code in codes.get(&id).into_iter().flatten() {
                by_status.entry(code.status().as_u16()).or_default().push(*code);
            }
            let Some(responses) = op["responses"].as_object_mut() else { continue };
            for (status, codes) in by_status {
                responses.insert(status.to_string(), error_response(status, &codes));
            }
        }
    }
}

/// One status's error response: the shared body, the codes it can carry, and the headers that
/// come with it.
fn error_response(status: u16, codes: &[ErrorCode]) -> Value {
    let mut description = String::from("Error: the body's `code` is one of:\n");
    for code in codes {
        description.push_str(&format!("- `{}`: {}\n", code.as_str(), code.meaning()));
    }
    let mut response = json!({
        "description": description,
        "content": {"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        "x-error-codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    });
    let mut headers = Map::new();
    if status == 429 || status == 503 {
        headers.insert(
            "Retry-After".into(),
            json!({"description": "Seconds to wait before retrying (RFC 9110 §10.2.3).", "schema": {"type": "integer", "minimum": 0}}),
        );
    }
    if codes.contains(&ErrorCode::InsufficientUserAuthentication) {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({"description": "On `insufficient_user_authentication`: the `max_age` the action needs (RFC 9470 §3).", "schema": {"type": "string"}}),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

/// `nullable`, `required` and plain `$ref`s, as described in the module documentation.
fn exact_schemas(spec: &mut Value) {
    let responses =
        reachable(spec, |op| op["responses"].as_object().map(|r| r.values().cloned().collect()).unwrap_or_default());
    let requests = reachable(spec, |op| vec![op["requestBody"].clone()]);
    let Some(schemas) = spec["components"]["schemas"].as_object_mut() else { return };
    for (name, schema) in schemas.iter_mut() {
        let response_only = responses.contains(name) && !requests.contains(name);
        let required: BTreeSet<String> =
            schema["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else { continue };
        let mut all = Vec::new();
        for (field, property) in properties.iter_mut() {
            all.push(Value::String(field.clone()));
            let optional = !required.contains(field) && property.get("default").is_none();
            unwrap_all_of(property);
            if optional {
                make_nullable(property);
            }
        }
        if response_only && !all.is_empty() {
            schema["required"] = Value::Array(all);
        }
    }
}

/// `{allOf: [{$ref}, {default…}], …}` (the derive's way to attach a default or a description to
/// a reference) becomes the plain `{$ref}`, with the default the server applies kept beside it.
fn unwrap_all_of(property: &mut Value) {
    let Some(mut reference) = property
        .get("allOf")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|s| s.get("$ref").is_some()))
        .cloned()
    else {
        return;
    };
    if let Some(default) = property.get("default") {
        reference["default"] = default.clone();
    }
    *property = reference;
}

/// Marks a property the server may send as `null`. A reference cannot carry `nullable` beside
/// it in OpenAPI 3.0, so it is wrapped in a one-member `anyOf`.
fn make_nullable(property: &mut Value) {
    if property.get("$ref").is_some() {
        let reference = property.take();
        *property = json!({"anyOf": [reference], "nullable": true});
    } else if let Some(map) = property.as_object_mut() {
        map.insert("nullable".into(), Value::Bool(true));
    }
}

/// Names of the component schemas reachable from what `roots` picks out of each operation.
fn reachable(spec: &Value, roots: impl Fn(&Value) -> Vec<Value>) -> BTreeSet<String> {
    let mut stack: Vec<Value> = spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .flat_map(|item| item.as_object().into_iter().flat_map(|o| o.values()))
        .flat_map(&roots)
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(name) =
                    map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    if seen.insert(name.to_owned()) {
                        stack.push(spec["components"]["schemas"][name].clone());
                    }
                }
                stack.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Value {
        serde_json::from_str(&crate::openapi_json()).unwrap()
    }

    fn operations(spec: &Value) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((path.clone(), method.clone(), op.clone()));
            }
        }
        ops
    }

    #[test]
    fn every_operation_with_a_credential_documents_401_and_every_one_documents_429_and_503() {
        let spec = published();
        for (path, method, op) in operations(&spec) {
            let responses = op["responses"].as_object().unwrap();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                let codes = &responses["401"]["x-error-codes"];
                assert!(codes.as_array().unwrap().iter().any(|c| c == "unauthenticated"), "{method} {path}");
            }
            for status in ["429", "503"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                assert!(responses[status]["headers"].get("Retry-After").is_some(), "{method} {path} {status}");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_description_has_no_all_of_wrappers_and_every_optional_field_is_nullable() {
        let spec = published();
        let text = spec.to_string();
        assert!(!text.contains("\"allOf\""), "an allOf wrapper is left");
        for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                if !required.contains(&field.as_str()) && property.get("default").is_none() {
                    assert_eq!(property["nullable"], true, "{name}.{field}");
                }
            }
        }
        // A response object lists every field as required: the server always sends each one.
        let key = &spec["components"]["schemas"]["ApiKeyBody"];
        assert!(key["required"].as_array().unwrap().iter().any(|f| f == "expires_at"));
        assert_eq!(key["properties"]["expires_at"]["nullable"], true);
    }

    #[test]
    fn documented_codes_come_from_the_table_and_carry_their_own_status() {
        let spec = published();
        for (path, method, op) in operations(&spec) {
            for (status, response) in op["responses"].as_object().unwrap() {
                for code in response["x-error-codes"].as_array().into_iter().flatten() {
                    let code = ErrorCode::from_wire(code.as_str().unwrap()).unwrap();
                    assert_eq!(code.status().as_u16().to_string(), *status, "{method} {path}: {code:?}");
                }
            }
        }
    }
}
