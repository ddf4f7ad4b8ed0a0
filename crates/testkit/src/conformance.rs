//! Every response a test server gives is held to the published description: its status is one
//! the operation documents, an error's `code` is one that status lists, and a JSON body matches
//! the documented schema. A test whose server answered otherwise fails when its [`TestApp`]
//! drops, with each mismatch named.
//!
//! [`TestApp`]: crate::TestApp

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The description and the mismatches seen so far.
pub struct Conformance {
    spec: Value,
    contract: api::contract::Contract,
    components: Value,
    validators: Mutex<HashMap<(String, u16), Arc<jsonschema::Validator>>>,
    mismatches: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance").field("mismatches", &self.mismatches).finish_non_exhaustive()
    }
}

impl api::contract::Observer for Conformance {
    fn observe(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
        self.check(method, path, status, content_type, body);
    }
}

impl Conformance {
    /// Checks against the description the code publishes.
    pub fn new() -> Arc<Conformance> {
        let published = api::openapi_json();
        let spec: Value = serde_json::from_str(&published).expect("the description is JSON");
        let components = spec["components"]["schemas"]
            .as_object()
            .expect("component schemas")
            .iter()
            .map(|(name, schema)| (name.clone(), api::contract::json_schema(schema)))
            .collect();
        Arc::new(Conformance {
            contract: api::contract::Contract::new(&published, &["/openapi.json", "/docs", "/metrics"]),
            spec,
            components: Value::Object(components),
            validators: Mutex::new(HashMap::new()),
            mismatches: Mutex::new(Vec::new()),
        })
    }

    /// The mismatches seen, emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.mismatches.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn check(&self, method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
        let json_body = content_type
            .is_some_and(|v| v.starts_with("application/json"))
            .then(|| serde_json::from_slice::<Value>(body).ok())
            .flatten();
        let Some(op) = self.contract.operation(method, path) else {
            // Outside the description (an unknown path, or a method a known path lacks): only
            // the error shape is promised.
            if status >= 400 && json_body.as_ref().is_none_or(|b| b["code"].as_str().is_none()) {
                self.note(format!("{method} {path}: {status} without the JSON error shape"));
            }
            return;
        };
        let Some(documented) = self.operation_json(&op.id) else { return };
        let Some(response) = documented["responses"].get(status.to_string()) else {
            let code = json_body.as_ref().and_then(|b| b["code"].as_str().map(str::to_owned)).unwrap_or_default();
            self.note(format!("{} ({method} {path}): status {status} `{code}` is not documented", op.id));
            return;
        };
        if status >= 400 {
            let code = json_body.as_ref().and_then(|b| b["code"].as_str()).unwrap_or("(no code)");
            let listed = response["x-error-codes"].as_array().is_some_and(|codes| codes.iter().any(|c| c == code));
            if !listed {
                self.note(format!(
                    "{} ({method} {path}): {status} `{code}` is not among the codes documented for {status}",
                    op.id
                ));
            }
        }
        let schema = response["content"]
            .as_object()
            .and_then(|c| c.iter().find(|(media, _)| media.starts_with("application/json")))
            .map(|(_, media)| media["schema"].clone());
        if let (Some(schema), Some(value)) = (schema, json_body.as_ref()) {
            let validator = self.validator(&op.id, status, &schema);
            for err in validator.iter_errors(value) {
                self.note(format!(
                    "{} ({method} {path}): {status} body at `{}`: {err}",
                    op.id,
                    err.instance_path().as_str()
                ));
            }
        }
    }

    fn validator(&self, id: &str, status: u16, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .entry((id.to_owned(), status))
            .or_insert_with(|| {
                let document =
                    json!({"allOf": [api::contract::json_schema(schema)], "components": {"schemas": self.components}});
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .should_validate_formats(true)
                    .build(&document)
                    .expect("a response schema of the description compiles");
                Arc::new(validator)
            })
            .clone()
    }

    fn operation_json(&self, id: &str) -> Option<&Value> {
        self.spec["paths"]
            .as_object()?
            .values()
            .flat_map(|item| item.as_object().into_iter().flat_map(|o| o.values()))
            .find(|op| op["operationId"] == id)
    }

    fn note(&self, mismatch: String) {
        self.mismatches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(mismatch);
    }
}
