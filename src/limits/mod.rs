//! Limits on a query's shape, checked before validation and execution: a
//! crafted document is refused cheaply, with the limit and the measured value.
//!
//! The size, the nesting of brackets and the token count are measured on the
//! text, before parsing.
//! Depth, aliases, root fields and directives are measured on the parsed
//! document, with fragments expanded where they are spread; each fragment is
//! measured once and remembered, so a "fragment bomb" (fragments that spread
//! each other many times over) costs linear time to measure, and spreads that
//! form a cycle are not followed (validation refuses those). The cost and the
//! page sizes are measured against the schema ([`cost`]).
//!
//! Each limit can be set to measure only: a document past it is let through,
//! logged and counted ([`measured_only_counts`]), so operators can tune a
//! limit on real traffic before enforcing it.

pub mod cost;
pub mod rate;
mod tokens;
mod variables;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, Variables};

pub use tokens::{count_tokens, nesting_depth};
pub use variables::MOST_VARIABLES_DEPTH;

/// Deepest nesting of `{`, `[` and `(` a document may have. Fixed, not
/// configured: it keeps the parser and every recursive walk of the document
/// (validation, these limits, dropping the tree) far from the end of the
/// stack whatever the other limits are. async-graphql refuses selection sets
/// nested more than 32 deep anyway, so no query it would run reaches this.
pub const MAX_NESTING: usize = 64;

/// The limits, each with its stable error code and its name in settings
/// (`--limits-measure-only depth,cost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    DocumentBytes,
    /// Always enforced, never measure-only: it guards the stack.
    DocumentNesting,
    Tokens,
    RootFields,
    Depth,
    Fields,
    Aliases,
    Directives,
    IntrospectionDepth,
    PageSize,
    Cost,
    VariablesBytes,
    VariablesDepth,
}

impl Limit {
    pub const ALL: [Limit; 13] = [
        Limit::DocumentBytes,
        Limit::DocumentNesting,
        Limit::Tokens,
        Limit::RootFields,
        Limit::Depth,
        Limit::Fields,
        Limit::Aliases,
        Limit::Directives,
        Limit::IntrospectionDepth,
        Limit::PageSize,
        Limit::Cost,
        Limit::VariablesBytes,
        Limit::VariablesDepth,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Limit::DocumentBytes => "DOCUMENT_TOO_LARGE",
            Limit::DocumentNesting => "DOCUMENT_TOO_NESTED",
            Limit::Tokens => "TOO_MANY_TOKENS",
            Limit::RootFields => "TOO_MANY_ROOT_FIELDS",
            Limit::Depth => "QUERY_TOO_DEEP",
            Limit::Fields => "TOO_MANY_FIELDS",
            Limit::Aliases => "TOO_MANY_ALIASES",
            Limit::Directives => "TOO_MANY_DIRECTIVES",
            Limit::IntrospectionDepth => "INTROSPECTION_TOO_DEEP",
            Limit::PageSize => "PAGE_SIZE_EXCEEDED",
            Limit::Cost => "QUERY_TOO_COMPLEX",
            Limit::VariablesBytes => "VARIABLES_TOO_LARGE",
            Limit::VariablesDepth => "VARIABLES_TOO_DEEP",
        }
    }

    /// The name used in settings and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Limit::DocumentBytes => "document-bytes",
            Limit::DocumentNesting => "document-nesting",
            Limit::Tokens => "tokens",
            Limit::RootFields => "root-fields",
            Limit::Depth => "depth",
            Limit::Fields => "fields",
            Limit::Aliases => "aliases",
            Limit::Directives => "directives",
            Limit::IntrospectionDepth => "introspection-depth",
            Limit::PageSize => "page-size",
            Limit::Cost => "cost",
            Limit::VariablesBytes => "variables-bytes",
            Limit::VariablesDepth => "variables-depth",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Limit::DocumentBytes => "bytes",
            Limit::DocumentNesting => "levels of nested brackets, braces and parentheses",
            Limit::Tokens => "tokens",
            Limit::RootFields => "root fields",
            Limit::Depth => "levels of nesting",
            Limit::Fields => "field selections",
            Limit::Aliases => "aliases",
            Limit::Directives => "directives on one field",
            Limit::IntrospectionDepth => "levels of nested introspection lists",
            Limit::PageSize => "items asked for in one page",
            Limit::Cost => "points of estimated cost",
            Limit::VariablesBytes => "bytes",
            Limit::VariablesDepth => "levels of nested arrays and objects",
        }
    }

    /// Whether the limit may be set to measure only.
    pub fn can_measure_only(self) -> bool {
        self != Limit::DocumentNesting
    }

    /// A limit that may measure only, by its name in settings.
    pub fn parse(name: &str) -> Option<Limit> {
        Limit::ALL
            .into_iter()
            .find(|l| l.name() == name && l.can_measure_only())
    }
}

/// A set of limits (those that only measure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSet(u16);

impl LimitSet {
    /// Every limit that may measure only.
    pub fn all() -> LimitSet {
        Limit::ALL
            .into_iter()
            .filter(|l| l.can_measure_only())
            .collect()
    }

    pub fn contains(self, limit: Limit) -> bool {
        self.0 & (1 << limit as u16) != 0
    }

    pub fn insert(&mut self, limit: Limit) {
        self.0 |= 1 << limit as u16;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Limit> {
        Limit::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl FromIterator<Limit> for LimitSet {
    fn from_iter<I: IntoIterator<Item = Limit>>(iter: I) -> Self {
        let mut set = LimitSet::default();
        for limit in iter {
            set.insert(limit);
        }
        set
    }
}

/// Documents let through past a measure-only limit, and documents refused,
/// per limit, since the process started.
static MEASURED_ONLY: [AtomicU64; Limit::ALL.len()] =
    [const { AtomicU64::new(0) }; Limit::ALL.len()];
static REFUSED: [AtomicU64; Limit::ALL.len()] = [const { AtomicU64::new(0) }; Limit::ALL.len()];

/// How many documents went past each measure-only limit (and ran anyway).
pub fn measured_only_counts() -> Vec<(Limit, u64)> {
    Limit::ALL
        .into_iter()
        .map(|l| (l, MEASURED_ONLY[l as usize].load(Ordering::Relaxed)))
        .collect()
}

/// How many documents each enforced limit refused.
pub fn refused_counts() -> Vec<(Limit, u64)> {
    Limit::ALL
        .into_iter()
        .map(|l| (l, REFUSED[l as usize].load(Ordering::Relaxed)))
        .collect()
}

/// What a document measured, for the response's `cost` extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    pub cost: u64,
}

/// The configured maximums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Estimated cost of the operation ([`cost`]).
    pub max_cost: u64,
    /// Nesting of list fields inside introspection (`types { fields { args } }`
    /// is 3, what GraphiQL asks; the circular `fields { type { fields … } } }`
    /// attack goes deeper).
    pub max_introspection_depth: usize,
    /// Limits that only measure: past them a document is logged and counted,
    /// not refused.
    pub measure_only: LimitSet,
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
    /// Bytes of a request's `variables` JSON text.
    pub max_variables_bytes: usize,
    /// Nesting of arrays and objects in `variables`, the object itself
    /// included (at most [`MOST_VARIABLES_DEPTH`]).
    pub max_variables_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cost: 5_000,
            max_introspection_depth: 3,
            measure_only: LimitSet::default(),
            max_depth: 12,
            max_fields: 1_000,
            max_aliases: 30,
            max_root_fields: 20,
            max_directives: 10,
            max_document_bytes: 32 * 1024,
            max_tokens: 5_000,
            // Far above what any operation of this graph sends (an order of
            // 100 lines is ~5 KB; a router's 1,000 entity representations
            // ~40 KB), far below the request body limit.
            max_variables_bytes: 256 * 1024,
            // Input objects of this graph nest 3 levels at most.
            max_variables_depth: 32,
        }
    }
}

/// A limit a document broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub kind: Limit,
    /// Stable code, e.g. `QUERY_TOO_DEEP`.
    pub code: &'static str,
    pub limit: u64,
    pub measured: u64,
}

impl Exceeded {
    pub fn new(kind: Limit, limit: u64, measured: u64) -> Exceeded {
        Exceeded {
            kind,
            code: kind.code(),
            limit,
            measured,
        }
    }

    pub fn message(&self) -> String {
        match self.kind {
            Limit::PageSize => format!(
                "the document asks for {} items in one page, more than the {} allowed",
                self.measured, self.limit
            ),
            Limit::Cost => format!(
                "the operation's estimated cost is {}, more than the {} allowed",
                self.measured, self.limit
            ),
            Limit::VariablesBytes | Limit::VariablesDepth => format!(
                "`variables` has {} {}, more than the {} allowed",
                self.measured,
                self.kind.what(),
                self.limit
            ),
            kind => format!(
                "the document has {} {}, more than the {} allowed",
                self.measured,
                kind.what(),
                self.limit
            ),
        }
    }
}

fn check(kind: Limit, limit: usize, measured: usize) -> Result<(), Exceeded> {
    if measured > limit {
        Err(Exceeded::new(kind, limit as u64, measured as u64))
    } else {
        Ok(())
    }
}

impl Limits {
    /// Lets `checked` through when its limit only measures (logging and
    /// counting it), refuses it otherwise.
    pub fn enforce(&self, checked: Result<(), Exceeded>) -> Result<(), Exceeded> {
        let Err(exceeded) = checked else {
            return Ok(());
        };
        if self.measure_only.contains(exceeded.kind) && exceeded.kind.can_measure_only() {
            MEASURED_ONLY[exceeded.kind as usize].fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                code = exceeded.code,
                limit = exceeded.limit,
                measured = exceeded.measured,
                "measure-only limit exceeded: the document would have been refused"
            );
            Ok(())
        } else {
            REFUSED[exceeded.kind as usize].fetch_add(1, Ordering::Relaxed);
            Err(exceeded)
        }
    }

    /// Checks the text: size, nesting, then tokens (measuring stops past the
    /// limit, unless the limit only measures).
    pub fn check_text(&self, query: &str) -> Result<(), Exceeded> {
        self.enforce(check(
            Limit::DocumentBytes,
            self.max_document_bytes,
            query.len(),
        ))?;
        self.enforce(check(
            Limit::DocumentNesting,
            MAX_NESTING,
            nesting_depth(query, MAX_NESTING + 1),
        ))?;
        let stop = if self.measure_only.contains(Limit::Tokens) {
            usize::MAX
        } else {
            self.max_tokens.saturating_add(1)
        };
        self.enforce(check(
            Limit::Tokens,
            self.max_tokens,
            count_tokens(query, stop),
        ))
    }

    /// Checks the shape of every operation of a parsed document.
    pub fn check_document(&self, document: &ExecutableDocument) -> Result<(), Exceeded> {
        let mut measure = Measure {
            document,
            fragments: HashMap::new(),
            visiting: Vec::new(),
        };
        for (_, operation) in document.operations.iter() {
            let shape = measure.selection_set(&operation.node.selection_set.node, false);
            self.enforce(check(Limit::RootFields, self.max_root_fields, shape.fields))?;
            self.enforce(check(Limit::Depth, self.max_depth, shape.depth))?;
            self.enforce(check(Limit::Fields, self.max_fields, shape.selected))?;
            self.enforce(check(Limit::Aliases, self.max_aliases, shape.aliases))?;
            self.enforce(check(
                Limit::Directives,
                self.max_directives,
                shape.directives,
            ))?;
            self.enforce(check(
                Limit::IntrospectionDepth,
                self.max_introspection_depth,
                shape.introspection_lists,
            ))?;
        }
        Ok(())
    }

    /// Checks the page sizes and the cost of the operation that will run.
    pub fn check_cost(
        &self,
        model: &cost::CostModel,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Result<Inspection, Exceeded> {
        let measured = model.measure(document, operation_name, variables);
        if let Some((max, requested)) = measured.page_size_exceeded {
            self.enforce(Err(Exceeded::new(Limit::PageSize, max, requested)))?;
        }
        if measured.cost > self.max_cost {
            self.enforce(Err(Exceeded::new(
                Limit::Cost,
                self.max_cost,
                measured.cost,
            )))?;
        }
        Ok(Inspection {
            cost: measured.cost,
        })
    }
}

/// Whether a parsed document asks for the schema (`__schema` or `__type`;
/// `__typename` is not introspection of the schema).
pub fn uses_introspection(document: &ExecutableDocument) -> bool {
    fn walk(document: &ExecutableDocument, set: &SelectionSet, seen: &mut Vec<String>) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
                    || walk(document, &field.node.selection_set.node, seen)
            }
            Selection::InlineFragment(fragment) => {
                walk(document, &fragment.node.selection_set.node, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if seen.iter().any(|s| s == name) {
                    return false;
                }
                seen.push(name.to_string());
                document
                    .fragments
                    .get(name)
                    .is_some_and(|f| walk(document, &f.node.selection_set.node, seen))
            }
        })
    }
    let mut seen = Vec::new();
    document
        .operations
        .iter()
        .any(|(_, op)| walk(document, &op.node.selection_set.node, &mut seen))
}

/// Introspection fields whose values are lists: their nesting is bounded.
const INTROSPECTION_LISTS: &[&str] = &[
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

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
    /// Deepest nesting of introspection list fields below it.
    introspection_lists: usize,
}

impl Shape {
    fn merge(&mut self, other: Shape) {
        self.fields = self.fields.saturating_add(other.fields);
        self.selected = self.selected.saturating_add(other.selected);
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.max(other.directives);
        self.introspection_lists = self.introspection_lists.max(other.introspection_lists);
    }
}

struct Measure<'a> {
    document: &'a ExecutableDocument,
    /// Fragments measured, by name and by whether they are used inside
    /// introspection (where list fields nest differently).
    fragments: HashMap<(&'a str, bool), Shape>,
    visiting: Vec<&'a str>,
}

impl<'a> Measure<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, introspecting: bool) -> Shape {
        let mut shape = Shape::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let introspection = introspecting || matches!(name, "__schema" | "__type");
                    let children = self.selection_set(&field.selection_set.node, introspection);
                    // Introspection's depth is measured by its own limit,
                    // the nesting of its lists (GraphiQL's query nests type
                    // references 8 deep); its size counts with the rest.
                    let depth = if introspection {
                        0
                    } else {
                        children.depth.saturating_add(1)
                    };
                    let introspection_lists = children.introspection_lists.saturating_add(
                        usize::from(introspecting && INTROSPECTION_LISTS.contains(&name)),
                    );
                    shape.merge(Shape {
                        fields: 1,
                        selected: children.selected.saturating_add(1),
                        depth,
                        aliases: children
                            .aliases
                            .saturating_add(usize::from(field.alias.is_some())),
                        directives: children.directives.max(field.directives.len()),
                        introspection_lists,
                    });
                }
                Selection::InlineFragment(fragment) => {
                    let mut inner =
                        self.selection_set(&fragment.node.selection_set.node, introspecting);
                    inner.directives = inner.directives.max(fragment.node.directives.len());
                    shape.merge(inner);
                }
                Selection::FragmentSpread(spread) => {
                    let mut inner = self.fragment(&spread.node.fragment_name, introspecting);
                    inner.directives = inner.directives.max(spread.node.directives.len());
                    shape.merge(inner);
                }
            }
        }
        shape
    }

    fn fragment(&mut self, name: &'a Positioned<Name>, introspecting: bool) -> Shape {
        let name = name.node.as_str();
        if let Some(shape) = self.fragments.get(&(name, introspecting)) {
            return *shape;
        }
        if self.visiting.contains(&name) {
            return Shape::default();
        }
        let Some(definition) = self.document.fragments.get(name) else {
            return Shape::default();
        };
        self.visiting.push(name);
        let mut shape = self.selection_set(&definition.node.selection_set.node, introspecting);
        shape.directives = shape.directives.max(definition.node.directives.len());
        self.visiting.pop();
        self.fragments.insert((name, introspecting), shape);
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
            ..Limits::default()
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
    fn introspection_lists_nest_at_most_three_deep() {
        let limits = Limits::default();
        let check =
            |q: &str| limits.check_document(&async_graphql::parser::parse_query(q).unwrap());
        assert!(check("{ __schema { types { fields { args { name } } } } }").is_ok());
        let err = check(
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
        )
        .unwrap_err();
        assert_eq!((err.code, err.measured), ("INTROSPECTION_TOO_DEEP", 4));
        // `fields` outside introspection is an ordinary field.
        assert!(check("{ fields { fields { fields { fields { a } } } } }").is_ok());
    }

    #[test]
    fn measure_only_limits_let_documents_through_and_count_them() {
        let limits = Limits {
            max_aliases: 1,
            measure_only: [Limit::Aliases].into_iter().collect(),
            ..Limits::default()
        };
        let before = measured_only_counts()[Limit::Aliases as usize].1;
        let document = async_graphql::parser::parse_query("{ a: x b: x c: x }").unwrap();
        assert!(limits.check_document(&document).is_ok());
        assert!(measured_only_counts()[Limit::Aliases as usize].1 > before);
        let enforced = Limits {
            max_aliases: 1,
            ..Limits::default()
        };
        assert_eq!(
            enforced.check_document(&document).unwrap_err().code,
            "TOO_MANY_ALIASES"
        );
    }

    #[test]
    fn introspection_is_found_through_fragments() {
        let uses = |q: &str| uses_introspection(&async_graphql::parser::parse_query(q).unwrap());
        assert!(uses("{ __schema { types { name } } }"));
        assert!(uses(
            "{ a { ...F } } fragment F on T { __type(name: \"T\") { name } }"
        ));
        assert!(!uses("{ __typename a { __typename } }"));
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
        assert_eq!(
            (err.code, err.measured),
            ("TOO_MANY_FIELDS", (1u64 << 40) + 1)
        );
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
            ("DOCUMENT_TOO_NESTED", 64, 65)
        );
        assert!(limits.check_text(&"{ a ".repeat(40)).is_ok());
        // It guards the stack: measure-only does not apply to it.
        let measuring = Limits {
            measure_only: Limit::ALL.into_iter().collect(),
            ..limits
        };
        assert_eq!(
            measuring.check_text(&brackets).unwrap_err().code,
            "DOCUMENT_TOO_NESTED"
        );
        assert!(!LimitSet::all().contains(Limit::DocumentNesting));
        assert_eq!(Limit::parse("document-nesting"), None);
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
