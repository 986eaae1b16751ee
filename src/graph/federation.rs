//! What the subgraph SDL needs beyond what async-graphql prints.
//!
//! async-graphql marks `@requiresScopes` itself but has no `@authenticated`
//! (Federation 2.5's directive for "any signed-in caller"). It is declared here
//! as a type directive so it is printed on the fields and types it guards, and
//! [`complete_sdl`] turns async-graphql's output into what a router expects:
//! the directive imported from the federation spec instead of defined locally.
//! It also prints the demand-control directives (`@cost`, `@listSize`, from
//! Federation 2.9) from the same table the server enforces its cost limit
//! with ([`super::demand`]).

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

/// The federation version the SDL links: 2.9 brings `@cost` and `@listSize`.
const FEDERATION_URL: &str = "https://specs.apollo.dev/federation/v2.9";

/// Imports `@authenticated`, `@cost` and `@listSize` from the federation spec
/// (dropping the local definition async-graphql prints for the first), and
/// adds the demand-control directives to the fields the cost rules describe.
pub fn complete_sdl(sdl: &str) -> String {
    let mut out = String::with_capacity(sdl.len() + 1024);
    let mut current_type: Option<&str> = None;
    for line in sdl.lines() {
        if line.starts_with("directive @authenticated ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("type ")
            .or_else(|| line.strip_prefix("extend type "))
        {
            current_type = rest.split([' ', '{']).next();
        } else if line.starts_with('}') {
            current_type = None;
        }
        if line.trim_start().starts_with("import: [") && line.contains("\"@requiresScopes\"") {
            out.push_str(&line.replace(
                "\"@requiresScopes\"",
                "\"@requiresScopes\", \"@authenticated\", \"@cost\", \"@listSize\"",
            ));
        } else if line
            .trim_start()
            .starts_with("url: \"https://specs.apollo.dev/federation/v2.")
        {
            out.push_str(&format!("\turl: \"{FEDERATION_URL}\","));
        } else if let Some(field) = current_type.and_then(|ty| field_name(line).map(|f| (ty, f))) {
            out.push_str(line);
            out.push_str(&super::demand::directives(&format!(
                "{}.{}",
                field.0, field.1
            )));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The field a line of a type's body defines (`\treviews(first: Int! = 10): …`).
fn field_name(line: &str) -> Option<&str> {
    let body = line.strip_prefix('\t')?;
    let end = body.find(['(', ':'])?;
    let name = &body[..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
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
        assert!(sdl.contains(
            "import: [\"@key\", \"@requiresScopes\", \"@authenticated\", \"@cost\", \"@listSize\"]"
        ));
        assert!(sdl.contains("me: Customer @authenticated"));
    }

    #[test]
    fn cost_rules_become_demand_control_directives() {
        let raw = "type Product {\n\t\"\"\"\n\tReviews.\n\t\"\"\"\n\
                   \treviews(first: Int! = 10, after: String): [Review!]!\n\treviewCount: Int!\n\
                   \tid: ID!\n}\ntype Query {\n\tproducts(first: Int! = 20): ProductConnection!\n}\n\
                   extend schema @link(\n\turl: \"https://specs.apollo.dev/federation/v2.5\",\n\
                   \timport: [\"@key\", \"@requiresScopes\"]\n)\n";
        let sdl = complete_sdl(raw);
        assert!(sdl.contains(
            "reviews(first: Int! = 10, after: String): [Review!]! \
             @listSize(slicingArguments: [\"first\"], requireOneSlicingArgument: false)\n"
        ));
        assert!(sdl.contains("reviewCount: Int! @cost(weight: 1)\n"));
        assert!(sdl.contains("\tid: ID!\n"));
        assert!(sdl.contains("sizedFields: [\"edges\", \"nodes\"])"));
        assert!(sdl.contains("federation/v2.9"));
        assert!(sdl.contains("\"@cost\", \"@listSize\""));
    }
}
