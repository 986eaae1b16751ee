//! What the subgraph SDL needs beyond what async-graphql prints.
//!
//! async-graphql marks `@requiresScopes` itself but has no `@authenticated`
//! (Federation 2.5's directive for "any signed-in caller"). It is declared here
//! as a type directive so it is printed on the fields and types it guards, and
//! [`complete_sdl`] turns async-graphql's output into what a router expects:
//! the directive imported from the federation spec instead of defined locally.

use async_graphql::{Context, ErrorExtensions, TypeDirective};

use super::error::ApiError;

// Requires a valid bearer token (Federation's `@authenticated`). A plain
// comment: a doc comment would be printed as the description of a definition
// that `complete_sdl` removes.
#[TypeDirective(location = "FieldDefinition", location = "Object")]
pub fn authenticated() {}

/// The answer for one representation of `_entities`. async-graphql fails the
/// whole list when one resolver fails, so an error (a forbidden order, an id
/// that does not parse) is reported beside the data and the representation
/// resolves to `null`; an unknown id is `null` with a `NOT_FOUND` error. The
/// other representations are unaffected.
pub(crate) fn entity_or_null<T>(
    ctx: &Context<'_>,
    typename: &str,
    id: &str,
    result: async_graphql::Result<Option<T>>,
) -> Option<T> {
    let error = match result {
        Ok(Some(entity)) => return Some(entity),
        Ok(None) => {
            async_graphql::Error::from(ApiError::NotFound(format!("no {typename} with id {id:?}")))
        }
        Err(error) => error,
    };
    let error = error.extend_with(|_, e| e.set("representation", format!("{typename}:{id}")));
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
    None
}

/// Imports `@authenticated` from the federation spec and drops the local
/// definition async-graphql prints for it.
pub fn complete_sdl(sdl: &str) -> String {
    let mut out = String::with_capacity(sdl.len() + 32);
    for line in sdl.lines() {
        if line.starts_with("directive @authenticated ") {
            continue;
        }
        if line.trim_start().starts_with("import: [") && line.contains("\"@requiresScopes\"") {
            out.push_str(&line.replace(
                "\"@requiresScopes\"",
                "\"@requiresScopes\", \"@authenticated\"",
            ));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticated_is_imported_not_defined() {
        let raw = "type Query {\n\tme: Customer @authenticated\n}\n\
                   directive @authenticated on FIELD_DEFINITION | OBJECT\n\
                   extend schema @link(\n\turl: \"https://specs.apollo.dev/federation/v2.5\",\n\
                   \timport: [\"@key\", \"@requiresScopes\"]\n)\n";
        let sdl = complete_sdl(raw);
        assert!(!sdl.contains("directive @authenticated"));
        assert!(sdl.contains("import: [\"@key\", \"@requiresScopes\", \"@authenticated\"]"));
        assert!(sdl.contains("me: Customer @authenticated"));
    }
}
