//! The published description as a contract held at the edge, before any handler runs:
//! - a request with more than one `Authorization` header is refused (which one is meant is
//!   ambiguous: RFC 9110 §5.3 allows a repeated field only when it is a list, which this is not);
//! - a path or query string holding a control character once percent-decoded is refused;
//! - a method a known path does not answer gets 405 with `Allow` (RFC 9110 §15.5.6);
//! - a JSON body is read once, strictly: an object naming a key twice is refused, and the
//!   document is validated against the operation's published schema, so a number or boolean is
//!   never coerced into a string, `null` is taken only where the description says `nullable`,
//!   and every bound the description states holds (JSON Schema draft 4, which OpenAPI 3.0's
//!   schema object extends).

use std::sync::Arc;

use poem::{http::header, http::Method, Body, Endpoint, IntoResponse, Request, Response};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

use crate::codes::ErrorCode;
use crate::error::ApiError;

/// The paths of the description, their methods and the validators of their JSON bodies.
pub struct Contract {
    paths: Vec<PathEntry>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").field("paths", &self.paths.len()).finish()
    }
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").field("id", &self.id).field("validates_body", &self.body.is_some()).finish()
    }
}

struct PathEntry {
    segments: Vec<Option<String>>,
    operations: Vec<(Method, Operation)>,
}

/// One operation of the description.
pub struct Operation {
    /// The operation id.
    pub id: String,
    body: Option<jsonschema::Validator>,
}

impl Contract {
    /// The contract of a published description (`describe::finish`'s output), with `extra`
    /// paths served outside it (answering GET only).
    pub fn new(published: &str, extra: &[&str]) -> Contract {
        let spec: Value = serde_json::from_str(published).unwrap_or(Value::Null);
        let components: Map<String, Value> = spec["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, schema)| (name.clone(), json_schema(schema)))
            .collect();
        let components = Value::Object(components);
        let mut paths = Vec::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            let mut operations = Vec::new();
            for (method, op) in item.as_object().into_iter().flatten() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                let body = op["requestBody"]["content"]
                    .as_object()
                    .and_then(|c| c.iter().find(|(media, _)| media.starts_with("application/json")))
                    .map(|(_, media)| body_validator(&media["schema"], &components));
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                operations.push((method, Operation { id, body: body.flatten() }));
            }
            paths.push(PathEntry { segments: template(path), operations });
        }
        for path in extra {
            let id = (*path).to_owned();
            paths.push(PathEntry {
                segments: template(path),
                operations: vec![(Method::GET, Operation { id, body: None })],
            });
        }
        Contract { paths }
    }

    /// The methods `path` answers and their operations; `None` for a path the API does not have.
    /// A literal segment wins over a parameter (`/me/identities` over `/{id}`).
    fn route(&self, path: &str) -> Option<&[(Method, Operation)]> {
        let parts: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter(|entry| {
                entry.segments.len() == parts.len()
                    && entry.segments.iter().zip(&parts).all(|(seg, part)| seg.as_deref().is_none_or(|s| s == *part))
            })
            .max_by_key(|entry| entry.segments.iter().filter(|s| s.is_some()).count())
            .map(|entry| entry.operations.as_slice())
    }

    /// The operation serving `method` (`GET`, `POST`, …) on `path`, if the description has one.
    pub fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let method = if method.eq_ignore_ascii_case("HEAD") { "GET" } else { method };
        self.route(path)?.iter().find(|(m, _)| m.as_str().eq_ignore_ascii_case(method)).map(|(_, op)| op)
    }
}

/// Sees every response an application gives (the test kit holds them to the description).
pub trait Observer: Send + Sync {
    /// One response: the request's method and path, the status, the `Content-Type` and the body.
    fn observe(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]);
}

/// `app` with every response shown to `observer` (its body read whole, then sent on).
pub fn observed(
    app: poem::endpoint::BoxEndpoint<'static>,
    observer: Arc<dyn Observer>,
) -> poem::endpoint::BoxEndpoint<'static> {
    use poem::EndpointExt as _;
    app.around(move |ep, req| {
        let observer = observer.clone();
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let resp = ep.call(req).await?.into_response();
            let (parts, body) = resp.into_parts();
            let bytes = body.into_bytes().await.unwrap_or_default();
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            observer.observe(method.as_str(), &path, parts.status.as_u16(), content_type, &bytes);
            Ok::<Response, poem::Error>(Response::from_parts(parts, Body::from_bytes(bytes)))
        }
    })
    .boxed()
}

/// `/a/{b}/c` as its segments, `None` for a parameter.
fn template(path: &str) -> Vec<Option<String>> {
    path.split('/').map(|s| if s.starts_with('{') && s.ends_with('}') { None } else { Some(s.to_owned()) }).collect()
}

fn body_validator(schema: &Value, components: &Value) -> Option<jsonschema::Validator> {
    let document = json!({"allOf": [json_schema(schema)], "components": {"schemas": components}});
    match jsonschema::options().with_draft(jsonschema::Draft::Draft4).should_validate_formats(false).build(&document) {
        Ok(validator) => Some(validator),
        Err(err) => {
            tracing::error!(error = %err, "a request schema of the description does not compile");
            None
        }
    }
}

/// An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes `null` among the types.
pub fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), json_schema_member(k, v))).collect();
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(ty)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([ty, "null"]));
                    if let Some(Value::Array(items)) = out.get_mut("enum") {
                        items.push(Value::Null);
                    }
                } else {
                    return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Members whose values are schemas (or maps or lists of them) are converted; others are data.
fn json_schema_member(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("properties", Value::Object(props)) => {
            Value::Object(props.iter().map(|(k, v)| (k.clone(), json_schema(v))).collect())
        }
        ("items" | "additionalProperties" | "not", v) => json_schema(v),
        ("allOf" | "anyOf" | "oneOf", Value::Array(list)) => Value::Array(list.iter().map(json_schema).collect()),
        ("enum" | "default" | "example" | "required", v) => v.clone(),
        _ => value.clone(),
    }
}

/// Holds every request to the contract (see the module documentation).
pub(crate) async fn hold<E: Endpoint>(ep: Arc<E>, mut req: Request, contract: Arc<Contract>) -> poem::Result<Response> {
    if req.headers().get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::new(
            ErrorCode::AmbiguousCredentials,
            "Send one `Authorization` header: with several, which credential is meant is ambiguous.",
        )
        .into());
    }
    refuse_control_characters(&req)?;
    let path = req.uri().path().to_owned();
    let Some(methods) = contract.route(&path) else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    let method = if *req.method() == Method::HEAD { Method::GET } else { req.method().clone() };
    let Some((_, operation)) = methods.iter().find(|(m, _)| *m == method) else {
        return Ok(method_not_allowed(methods));
    };
    if let Some(validator) = &operation.body {
        if is_json(&req) {
            let bytes = req.take_body().into_bytes().await?;
            if !bytes.is_empty() {
                if let Ok(value) = parse_unique(&bytes)? {
                    check(validator, &value)?;
                }
            }
            req.set_body(Body::from_bytes(bytes));
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

fn method_not_allowed(methods: &[(Method, Operation)]) -> Response {
    let mut allowed: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    let mut resp = crate::error::error_response(
        ErrorCode::MethodNotAllowed,
        &format!("This resource answers {} only.", allowed.join(", ")),
    );
    if let Ok(value) = allowed.join(", ").parse() {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    resp
}

fn is_json(req: &Request) -> bool {
    req.content_type().and_then(|ct| ct.parse::<mime::Mime>().ok()).is_some_and(|m| {
        m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
    })
}

/// A control character (C0, DEL or C1) in the percent-decoded path or query is refused: no
/// filter, name or identifier of this API holds one, and passed on it can truncate or split
/// what a store or a log reads.
fn refuse_control_characters(req: &Request) -> Result<(), ApiError> {
    let decoded = |raw: &str| percent_encoding::percent_decode_str(&raw.replace('+', " ")).collect::<Vec<u8>>();
    let path = percent_encoding::percent_decode_str(req.uri().path()).collect::<Vec<u8>>();
    let query = req.uri().query().map(decoded).unwrap_or_default();
    for (part, bytes) in [("path", path), ("query string", query)] {
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("The {part} is not UTF-8 once percent-decoded."),
            ));
        };
        if text.chars().any(char::is_control) {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("The {part} holds a control character (such as NUL) once percent-decoded."),
            ));
        }
    }
    Ok(())
}

/// The body as JSON, refusing an object that names a key twice. `Ok(Err(_))` for a body that is
/// not JSON at all: the operation's own parser answers it.
fn parse_unique(bytes: &[u8]) -> Result<Result<Value, ()>, ApiError> {
    match serde_json::from_slice::<Unique>(bytes) {
        Ok(Unique(value)) => Ok(Ok(value)),
        Err(err) if err.to_string().starts_with(DUPLICATE) => {
            Err(ApiError::new(ErrorCode::DuplicateKey, format!("The body's JSON {err}: send each key once.")))
        }
        Err(_) => Ok(Err(())),
    }
}

const DUPLICATE: &str = "names a key twice";

/// A JSON value read with a refusal of duplicate keys (serde_json keeps the last one).
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Unique, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}: `{key}`")));
            }
            let Unique(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// Validates `value` against the operation's schema: a missing required field is 400
/// `invalid_body` (as the operation's parser says it), every other mismatch 422 `invalid_value`.
/// Messages name the field and the rule, never the value sent (it may be a secret).
fn check(validator: &jsonschema::Validator, value: &Value) -> Result<(), ApiError> {
    use jsonschema::error::ValidationErrorKind as K;
    let Some(err) = validator.iter_errors(value).next() else { return Ok(()) };
    let at = err.instance_path().as_str().trim_start_matches('/').replace('/', ".");
    let field = |name: &str| if name.is_empty() { "the body".to_owned() } else { format!("`{name}`") };
    let rule = match err.kind() {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let full = if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
            return Err(ApiError::new(ErrorCode::InvalidBody, format!("{} is required.", field(&full))));
        }
        K::Type { kind } => {
            let types: Vec<&str> = match kind {
                jsonschema::error::TypeKind::Single(t) => vec![t.as_str()],
                jsonschema::error::TypeKind::Multiple(set) => set.iter().map(|t| t.as_str()).collect(),
            };
            format!("must be of JSON type {} (values are not converted)", types.join(" or "))
        }
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be more than {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::MinItems { limit } => format!("must hold at least {limit} items"),
        K::MaxItems { limit } => format!("must hold at most {limit} items"),
        K::Enum { options } => format!("must be one of {options}"),
        K::Pattern { pattern } => format!("must match the pattern {pattern}"),
        K::UniqueItems => "must not repeat an item".to_owned(),
        _ => "does not match the operation's schema".to_owned(),
    };
    Err(ApiError::new(ErrorCode::InvalidValue, format!("{} {rule}.", field(&at))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_at_any_depth_is_told_from_malformed_json() {
        assert!(matches!(parse_unique(br#"{"a":1,"b":{"c":1}}"#), Ok(Ok(_))));
        let err = parse_unique(br#"{"a":1,"b":{"c":1,"c":2}}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::DuplicateKey);
        assert!(err.message.contains("`c`"), "{}", err.message);
        assert!(parse_unique(br#"[{"email":"a"},{"email":"b","email":"c"}]"#).is_err());
        assert!(matches!(parse_unique(br#"{"a":"#), Ok(Err(()))));
    }

    #[test]
    fn nullable_becomes_a_null_type_and_references_an_any_of() {
        let converted = json_schema(&json!({"properties": {
            "a": {"type": "string", "nullable": true},
            "b": {"anyOf": [{"$ref": "#/components/schemas/X"}], "nullable": true},
            "c": {"type": "string", "enum": ["x"], "nullable": true},
        }}));
        assert_eq!(converted["properties"]["a"]["type"], json!(["string", "null"]));
        assert_eq!(converted["properties"]["b"]["anyOf"][1], json!({"type": "null"}));
        assert_eq!(converted["properties"]["c"]["enum"], json!(["x", null]));
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter_and_unknown_paths_are_not_routed() {
        let spec = json!({"paths": {
            "/a/{id}": {"get": {"operationId": "byId", "responses": {}}},
            "/a/me": {"get": {"operationId": "me", "responses": {}}, "post": {"operationId": "meToo", "responses": {}}},
        }});
        let contract = Contract::new(&spec.to_string(), &["/docs"]);
        assert_eq!(contract.operation("GET", "/a/me").map(|o| o.id.as_str()), Some("me"));
        assert_eq!(contract.operation("GET", "/a/42").map(|o| o.id.as_str()), Some("byId"));
        assert_eq!(contract.operation("HEAD", "/docs").map(|o| o.id.as_str()), Some("/docs"));
        assert!(contract.operation("DELETE", "/a/me").is_none());
        assert!(contract.route("/b").is_none());
    }
}
