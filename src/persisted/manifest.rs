//! The manifest formats operators import: Apollo's persisted-query manifest
//! (what `generate-persisted-query-manifest` writes) and Relay's
//! `persisted-queries.json` (what `relay-compiler` writes with
//! `persistConfig.file`).

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One document of a manifest, as the client will refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestDocument {
    pub id: String,
    pub name: Option<String>,
    pub body: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error(
        "neither an Apollo persisted-query manifest ({{\"format\": \"apollo-persisted-query-manifest\", \
         \"version\": 1, \"operations\": [...]}}) nor a Relay persisted-queries.json ({{\"<id>\": \"<query>\"}}): {0}"
    )]
    UnknownFormat(String),
    #[error("the manifest has no operations")]
    Empty,
    #[error("the id {0:?} appears twice with different bodies")]
    DuplicateId(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApolloManifest {
    format: String,
    version: u32,
    operations: Vec<ApolloOperation>,
}

#[derive(Deserialize)]
struct ApolloOperation {
    id: String,
    name: Option<String>,
    // `type` (query, mutation, subscription) is checked against the body
    // when the document is validated; the body is what counts.
    #[allow(dead_code)]
    #[serde(rename = "type")]
    kind: Option<String>,
    body: String,
}

/// The SHA-256 of a document's text, lowercase hex: the APQ hash and the id
/// Apollo's manifest generator gives.
pub fn sha256_hex(body: &str) -> String {
    format!("{:x}", Sha256::digest(body.as_bytes()))
}

/// Reads either format. Ids are taken as given (Relay's may be any string);
/// the same id twice must carry the same body.
pub fn parse(text: &str) -> Result<Vec<ManifestDocument>, ManifestError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let documents = match &value {
        serde_json::Value::Object(map) if map.contains_key("format") => {
            let manifest: ApolloManifest = serde_json::from_value(value.clone())
                .map_err(|e| ManifestError::UnknownFormat(e.to_string()))?;
            if manifest.format != "apollo-persisted-query-manifest" || manifest.version != 1 {
                return Err(ManifestError::UnknownFormat(format!(
                    "format {:?} version {}",
                    manifest.format, manifest.version
                )));
            }
            manifest
                .operations
                .into_iter()
                .map(|op| ManifestDocument {
                    id: op.id,
                    name: op.name,
                    body: op.body,
                })
                .collect::<Vec<_>>()
        }
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(id, body)| match body {
                serde_json::Value::String(body) => Ok(ManifestDocument {
                    id: id.clone(),
                    name: None,
                    body: body.clone(),
                }),
                _ => Err(ManifestError::UnknownFormat(format!(
                    "the value of {id:?} is not a string"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ManifestError::UnknownFormat(
                "the top level is not an object".into(),
            ))
        }
    };
    if documents.is_empty() {
        return Err(ManifestError::Empty);
    }
    let mut seen = std::collections::HashMap::new();
    for document in &documents {
        if let Some(body) = seen.insert(document.id.as_str(), document.body.as_str()) {
            if body != document.body {
                return Err(ManifestError::DuplicateId(document.id.clone()));
            }
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apollo_manifests() {
        let text = r#"{"format":"apollo-persisted-query-manifest","version":1,
            "operations":[{"id":"abc","name":"Cats","type":"query","body":"query Cats { categories { id } }"}]}"#;
        assert_eq!(
            parse(text).unwrap(),
            [ManifestDocument {
                id: "abc".into(),
                name: Some("Cats".into()),
                body: "query Cats { categories { id } }".into(),
            }]
        );
    }

    #[test]
    fn reads_relay_files() {
        let text = r#"{"5c1a": "query A { categories { id } }", "9f2b": "query B { me { id } }"}"#;
        let documents = parse(text).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].id, "5c1a");
        assert_eq!(documents[1].body, "query B { me { id } }");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(parse("{"), Err(ManifestError::NotJson(_))));
        assert!(matches!(parse("[]"), Err(ManifestError::UnknownFormat(_))));
        assert!(matches!(
            parse(r#"{"format":"apollo-persisted-query-manifest","version":2,"operations":[]}"#),
            Err(ManifestError::UnknownFormat(_))
        ));
        assert!(matches!(
            parse(r#"{"a": 1}"#),
            Err(ManifestError::UnknownFormat(_))
        ));
        assert_eq!(parse("{}"), Err(ManifestError::Empty));
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex("{ __typename }"),
            "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b"
        );
    }
}
