//! The committed `openapi.json` is the one the code generates.

#[test]
fn committed_openapi_document_is_current() {
    let generated = machi::api::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != generated {
        panic!(
            "openapi.json is stale: run `cargo run -p machi -- openapi --output openapi.json` and commit it"
        );
    }
}
