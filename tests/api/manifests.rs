//! The persisted-query manifests shipped in `persisted-queries/` are valid:
//! their ids are the SHA-256 of their bodies and every body runs against the
//! schema without errors.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;

#[tokio::test]
async fn shipped_manifests_hash_correctly_and_run_cleanly() {
    let app = TestApp::spawn().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/persisted-queries");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(manifest["format"], "apollo-persisted-query-manifest");
        for operation in manifest["operations"].as_array().unwrap() {
            let body = operation["body"].as_str().unwrap();
            let hash = format!("{:x}", Sha256::digest(body.as_bytes()));
            assert_eq!(operation["id"], hash, "{}", operation["name"]);
            let reply = app
                .query(
                    body,
                    json!({ "id": "1", "c": "1" }),
                    Some(&app.admin_token()),
                )
                .await;
            reply.data();
            checked += 1;
        }
    }
    assert!(checked >= 3);
}
