//! The committed API description is exactly what the code generates.

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = format!("{}\n", api::openapi_json());
    assert!(
        committed == generated,
        "openapi/openapi.json differs from the code: run `cargo xtask openapi` and commit the result"
    );
}
