//! API surface: the committed OpenAPI description matches the code, every operation requires
//! authentication or is listed as public with a reason, and no operation takes an XML body (the
//! premise of the quick-xml advisories ignored in `dependencies.toml`).

use std::path::Path;

use serde_json::Value;

use super::{config_line, read_reasons, Outcome, Violation, CONFIG_DIR};

pub const PUBLIC_OPERATIONS: &str = "public-operations.toml";
pub const DOCUMENT: &str = "openapi/openapi.json";
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// `openapi/openapi.json:line` of an operation, found in the pretty-printed document.
fn operation_place(text: &str, path: &str, method: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let path_key = format!("{}:", serde_json::to_string(path).unwrap_or_default());
    let method_key = format!("\"{method}\":");
    let line = lines.iter().position(|l| l.trim_start().starts_with(&path_key)).and_then(|start| {
        lines[start + 1..].iter().position(|l| l.trim_start().starts_with(&method_key)).map(|i| start + 1 + i + 1)
    });
    match line {
        Some(line) => format!("{DOCUMENT}:{line}"),
        None => DOCUMENT.to_owned(),
    }
}

/// Whether a security requirement list demands a credential: non-empty, and no alternative is the
/// empty requirement `{}` (which makes authentication optional).
fn requires_auth(security: &Value) -> bool {
    match security.as_array() {
        Some(alternatives) => {
            !alternatives.is_empty() && alternatives.iter().all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
        }
        None => false,
    }
}

/// Checks every operation of `doc` against the reviewed list of public operations.
pub fn check_operations(doc: &Value, text: &str, public: &[(String, String)], public_text: &str) -> Outcome {
    let mut out = Outcome::default();
    let list_file = format!("{CONFIG_DIR}/{PUBLIC_OPERATIONS}");
    let listed: Vec<&str> = public.iter().map(|(k, _)| k.as_str()).collect();
    let default_security = doc.get("security").cloned().unwrap_or(Value::Null);
    let (mut total, mut authenticated, mut public_ok, mut xml) = (0, 0, 0, 0);
    let mut seen_public = Vec::new();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            total += 1;
            let key = format!("{} {path}", method.to_ascii_uppercase());
            let place = operation_place(text, path, method);
            let id = op["operationId"].as_str().map(|id| format!(" ({id})")).unwrap_or_default();
            let security = op.get("security").unwrap_or(&default_security);
            if requires_auth(security) {
                authenticated += 1;
            } else if listed.contains(&key.as_str()) {
                public_ok += 1;
                seen_public.push(key.clone());
            } else {
                out.push(Violation::new(
                    &place,
                    format!("{key}{id} requires no authentication and is not listed as a public operation"),
                    format!(
                        "take the principal in the handler (its security scheme then appears here), or, if anyone may call it, add `\"{key}\" = \"<why it is safe without a credential>\"` to {list_file}"
                    ),
                ));
            }
            let content = op["requestBody"]["content"].as_object().cloned().unwrap_or_default();
            for media in content.keys().filter(|m| m.to_ascii_lowercase().contains("xml")) {
                xml += 1;
                out.push(Violation::new(
                    &place,
                    format!("{key}{id} accepts an XML body ({media}): the quick-xml advisories ignored in {CONFIG_DIR}/dependencies.toml assume no XML is parsed"),
                    format!("accept JSON instead, or upgrade past the quick-xml advisories and drop their entries in {CONFIG_DIR}/dependencies.toml first"),
                ));
            }
        }
    }
    for key in &listed {
        if !seen_public.iter().any(|k| k == key) {
            let line = config_line(public_text, key).map(|l| format!(":{l}")).unwrap_or_default();
            out.push(Violation::new(
                format!("{list_file}{line}"),
                format!("lists `{key}`, which is not a public operation of {DOCUMENT} (it requires authentication or no longer exists)"),
                format!("remove `{key}` from {list_file}"),
            ));
        }
    }
    out.summary.push(format!(
        "API surface: {authenticated}/{total} operations require authentication, {public_ok} public with a reason, {} unlisted",
        total - authenticated - public_ok
    ));
    out.summary.push(format!("API surface: {xml} operations accept an XML body"));
    out
}

/// The gate's step: the committed document against the code, then its operations.
pub fn gate(root: &Path) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let text = std::fs::read_to_string(root.join(DOCUMENT)).unwrap_or_default();
    let generated = crate::generate_openapi()?;
    if generated != text.as_bytes() {
        out.push(Violation::new(
            DOCUMENT,
            "differs from the API the code serves",
            "run `cargo xtask openapi` and commit the result",
        ));
        out.summary.push(format!("API surface: {DOCUMENT} is OUT OF DATE"));
    } else {
        out.summary.push(format!("API surface: {DOCUMENT} matches the code"));
    }
    let doc: Value = serde_json::from_slice(&generated)?;
    let (public_text, public) = read_reasons(&root.join(CONFIG_DIR).join(PUBLIC_OPERATIONS), "operations")?;
    out.merge(check_operations(&doc, &String::from_utf8_lossy(&generated), &public, &public_text));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Value, String) {
        let doc = serde_json::json!({
            "openapi": "3.0.0",
            "paths": {
                "/healthz": {"get": {"operationId": "healthz"}},
                "/api/v1/things": {
                    "get": {"operationId": "listThings", "security": [{"BearerAuth": []}]},
                    "post": {"operationId": "createThing", "security": [{}, {"BearerAuth": []}]}
                },
                "/api/v1/import": {
                    "post": {"operationId": "importThings", "security": [{"BearerAuth": []}],
                             "requestBody": {"content": {"application/xml": {}}}}
                }
            }
        });
        let text = serde_json::to_string_pretty(&doc).unwrap();
        (doc, text)
    }

    #[test]
    fn an_undocumented_public_operation_fails_the_gate_naming_the_operation_and_the_fix() {
        let (doc, text) = fixture();
        let public = [("GET /healthz".to_owned(), "liveness probe".to_owned())];
        let out = check_operations(&doc, &text, &public, "");
        let msg = out.text();
        let place = operation_place(&text, "/api/v1/things", "post");
        assert!(place.starts_with("openapi/openapi.json:"), "{place}");
        assert!(msg.contains(&format!("{place}: POST /api/v1/things (createThing) requires no authentication and is not listed as a public operation")), "{msg}");
        assert!(msg.contains("add `\"POST /api/v1/things\" = \"<why it is safe without a credential>\"` to xtask/gate/public-operations.toml"), "{msg}");
        assert!(
            out.summary[0]
                .starts_with("API surface: 2/4 operations require authentication, 1 public with a reason, 1 unlisted"),
            "{:?}",
            out.summary
        );
    }

    #[test]
    fn an_xml_request_body_fails_the_gate() {
        let (doc, text) = fixture();
        let out = check_operations(&doc, &text, &[], "");
        assert!(
            out.text().contains("POST /api/v1/import (importThings) accepts an XML body (application/xml)"),
            "{}",
            out.text()
        );
    }

    #[test]
    fn a_listed_operation_that_requires_authentication_is_a_stale_entry() {
        let (doc, text) = fixture();
        let public_text = "[operations]\n\"GET /healthz\" = \"probe\"\n\"GET /api/v1/things\" = \"was public once\"\n";
        let public = super::super::parse_reasons(public_text, "operations").unwrap();
        let out = check_operations(&doc, &text, &public, public_text);
        assert!(
            out.text().contains(
                "xtask/gate/public-operations.toml:3: lists `GET /api/v1/things`, which is not a public operation"
            ),
            "{}",
            out.text()
        );
    }

    #[test]
    fn the_committed_document_lists_every_public_operation_with_a_reason() {
        let root = crate::workspace_root();
        let text = std::fs::read_to_string(root.join(DOCUMENT)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let (public_text, public) = read_reasons(&root.join(CONFIG_DIR).join(PUBLIC_OPERATIONS), "operations").unwrap();
        let out = check_operations(&doc, &text, &public, &public_text);
        assert!(out.violations.is_empty(), "{}", out.text());
    }
}
