//! Limits on a query's shape, checked before validation and execution: a
//! crafted document is refused cheaply, with the limit and the measured value.
//!
//! The size, the nesting of brackets and the token count are measured on the
//! text, before parsing.
//! Depth, aliases, root fields and directives are measured on the parsed
//! document, with fragments expanded where they are spread; each fragment is
//! measured once and remembered, so a "fragment bomb" (fragments that spread
//! each other many times over) costs linear time to measure, and spreads that
//! form a cycle are not followed (validation refuses those).

mod tokens;
mod variables;

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned};

pub use tokens::{count_tokens, nesting_depth};
pub use variables::VariablesLimits;

/// Deepest nesting of `{`, `[` and `(` a document may have. Fixed, not
/// configured: it keeps the parser and every recursive walk of the document
/// (validation, these limits, dropping the tree) far from the end of the
/// stack whatever the other limits are. async-graphql refuses selection sets
/// nested more than 32 deep anyway, so no query it would run reaches this.
pub const MAX_NESTING: usize = 64;

/// The configured maximums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Nesting of fields below the root (introspection fields are not counted).
    pub max_depth: usize,
    /// Field selections in an operation, counting each use of a fragment
    /// (introspection included): what execution and validation will walk.
    pub max_fields: usize,
    /// Aliased fields in an operation, counting each use of a fragment.
    pub max_aliases: usize,
    /// Fields selected at the root of an operation.
    pub max_root_fields: usize,
    /// Directives on one field, fragment spread or inline fragment.
    pub max_directives: usize,
    /// Bytes of the document text.
    pub max_document_bytes: usize,
    /// Lexical tokens of the document text.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 12,
            max_fields: 1_000,
            max_aliases: 30,
            max_root_fields: 20,
            max_directives: 10,
            max_document_bytes: 32 * 1024,
            max_tokens: 5_000,
        }
    }
}

/// A limit a document broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// Stable code, e.g. `QUERY_TOO_DEEP`.
    pub code: &'static str,
    pub limit: usize,
    pub measured: usize,
    pub what: &'static str,
}

impl Exceeded {
    pub fn message(&self) -> String {
        format!(
            "the document has {} {}, more than the {} allowed",
            self.measured, self.what, self.limit
        )
    }
}

fn check(
    code: &'static str,
    what: &'static str,
    limit: usize,
    measured: usize,
) -> Result<(), Exceeded> {
    if measured > limit {
        Err(Exceeded {
            code,
            limit,
            measured,
            what,
        })
    } else {
        Ok(())
    }
}

impl Limits {
    /// Checks the text: size, nesting, then tokens (measuring stops past the
    /// limit).
    pub fn check_text(&self, query: &str) -> Result<(), Exceeded> {
        check(
            "DOCUMENT_TOO_LARGE",
            "bytes",
            self.max_document_bytes,
            query.len(),
        )?;
        check(
            "DOCUMENT_TOO_NESTED",
            "levels of nested brackets, braces and parentheses",
            MAX_NESTING,
            nesting_depth(query, MAX_NESTING + 1),
        )?;
        check(
            "TOO_MANY_TOKENS",
            "tokens",
            self.max_tokens,
            count_tokens(query, self.max_tokens.saturating_add(1)),
        )
    }

    /// Checks every operation of a parsed document.
    pub fn check_document(&self, document: &ExecutableDocument) -> Result<(), Exceeded> {
        let mut measure = Measure {
            document,
            fragments: HashMap::new(),
            visiting: Vec::new(),
        };
        for (_, operation) in document.operations.iter() {
            let shape = measure.selection_set(&operation.node.selection_set.node);
            check(
                "TOO_MANY_ROOT_FIELDS",
                "root fields",
                self.max_root_fields,
                shape.fields,
            )?;
            check(
                "QUERY_TOO_DEEP",
                "levels of nesting",
                self.max_depth,
                shape.depth,
            )?;
            check(
                "TOO_MANY_FIELDS",
                "field selections",
                self.max_fields,
                shape.selected,
            )?;
            check(
                "TOO_MANY_ALIASES",
                "aliases",
                self.max_aliases,
                shape.aliases,
            )?;
            check(
                "TOO_MANY_DIRECTIVES",
                "directives on one field",
                self.max_directives,
                shape.directives,
            )?;
        }
        Ok(())
    }
}

/// What a selection set (with its fragments expanded) amounts to.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// Fields directly in the set (fragments' fields included).
    fields: usize,
    /// Fields in the set and below it, each fragment counted per use.
    selected: usize,
    /// Deepest nesting of fields below it, itself included.
    depth: usize,
    aliases: usize,
    /// Most directives on any one selection.
    directives: usize,
}

impl Shape {
    fn merge(&mut self, other: Shape) {
        self.fields = self.fields.saturating_add(other.fields);
        self.selected = self.selected.saturating_add(other.selected);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.max(other.directives);
    }
}

struct Measure<'a> {
    document: &'a ExecutableDocument,
    fragments: HashMap<&'a str, Shape>,
    visiting: Vec<&'a str>,
}

impl<'a> Measure<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Shape {
        let mut shape = Shape::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let children = self.selection_set(&field.selection_set.node);
                    // Introspection's depth is bounded by the schema, not by
                    // the client; its size is not, so it counts there.
                    let depth = if field.name.node.starts_with("__") {
                        0
                    } else {
                        children.depth.saturating_add(1)
                    };
                    shape.merge(Shape {
                        fields: 1,
                        selected: children.selected.saturating_add(1),
                        depth,
                        aliases: children
                            .aliases
                            .saturating_add(usize::from(field.alias.is_some())),
                        directives: children.directives.max(field.directives.len()),
                    });
                }
                Selection::InlineFragment(fragment) => {
                    let mut inner = self.selection_set(&fragment.node.selection_set.node);
                    inner.directives = inner.directives.max(fragment.node.directives.len());
                    shape.merge(inner);
                }
                Selection::FragmentSpread(spread) => {
                    let mut inner = self.fragment(&spread.node.fragment_name);
                    inner.directives = inner.directives.max(spread.node.directives.len());
                    shape.merge(inner);
                }
            }
        }
        shape
    }

    fn fragment(&mut self, name: &'a Positioned<Name>) -> Shape {
        let name = name.node.as_str();
        if let Some(shape) = self.fragments.get(name) {
            return *shape;
        }
        if self.visiting.contains(&name) {
            return Shape::default();
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Shape::default();
        };
        self.visiting.push(name);
        let mut shape = self.selection_set(&definition.node.selection_set.node);
        shape.directives = shape.directives.max(definition.node.directives.len());
        self.visiting.pop();
        self.fragments.insert(name, shape);
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(query: &str) -> Result<(), Exceeded> {
        let limits = Limits {
            max_depth: 3,
            max_fields: 20,
            max_aliases: 2,
            max_root_fields: 2,
            max_directives: 2,
            max_document_bytes: 10_000,
            max_tokens: 1_000,
        };
        limits.check_text(query)?;
        limits.check_document(&async_graphql::parser::parse_query(query).unwrap())
    }

    fn code(query: &str) -> &'static str {
        measure(query).unwrap_err().code
    }

    #[test]
    fn depth_counts_nesting_through_fragments() {
        assert!(measure("{ a { b { c } } }").is_ok());
        assert_eq!(code("{ a { b { c { d } } } }"), "QUERY_TOO_DEEP");
        assert_eq!(
            code("{ a { ...F } } fragment F on T { b { c { d } } }"),
            "QUERY_TOO_DEEP"
        );
        assert!(measure("{ a { __typename __schema { types { fields { name } } } } }").is_ok());
    }

    #[test]
    fn aliases_count_every_use_of_a_fragment() {
        assert!(measure("{ a: x b: x }").is_ok());
        assert_eq!(code("{ r { a: x b: x c: x } }"), "TOO_MANY_ALIASES");
        let err = measure("{ r { ...F ...F } } fragment F on T { a: x b: x }").unwrap_err();
        assert_eq!((err.code, err.measured), ("TOO_MANY_ALIASES", 4));
    }

    #[test]
    fn root_fields_and_directives_are_bounded() {
        assert_eq!(code("{ a b c }"), "TOO_MANY_ROOT_FIELDS");
        assert_eq!(
            code("{ a @skip(if: false) @include(if: true) @skip(if: false) }"),
            "TOO_MANY_DIRECTIVES"
        );
    }

    #[test]
    fn fragment_bombs_and_cycles_are_measured_quickly() {
        // Each level doubles the uses of the one below: 2^40 without memory.
        let mut query = String::from("{ r { ...F0 } }");
        for i in 0..40 {
            query.push_str(&format!(
                " fragment F{i} on T {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F40 on T { x }");
        let err = measure(&query).unwrap_err();
        assert_eq!((err.code, err.measured), ("TOO_MANY_FIELDS", (1 << 40) + 1));
        assert!(
            measure("{ r { ...A } } fragment A on T { ...B } fragment B on T { ...A }").is_ok()
        );
    }

    #[test]
    fn nesting_is_refused_before_parsing_whatever_the_token_limit() {
        let limits = Limits {
            max_tokens: usize::MAX,
            max_document_bytes: usize::MAX,
            ..Limits::default()
        };
        let brackets = format!(
            "{{ products(filter: {}{}) {{ id }} }}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let err = limits.check_text(&brackets).unwrap_err();
        assert_eq!(
            (err.code, err.limit, err.measured),
            ("DOCUMENT_TOO_NESTED", MAX_NESTING, MAX_NESTING + 1)
        );
        assert!(limits.check_text(&"{ a ".repeat(40)).is_ok());
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let limits = Limits {
            max_document_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            limits.check_text("{ products { id } }").unwrap_err().code,
            "DOCUMENT_TOO_LARGE"
        );
    }
}
