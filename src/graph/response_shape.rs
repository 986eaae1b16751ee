//! Gives a response the shape the GraphQL specification prescribes, which
//! async-graphql 7.2 leaves to its callers in two ways:
//!
//! - **Order.** It resolves an object's fields concurrently and assembles the
//!   object in the order they finish, so the same query could answer with
//!   differently ordered bytes from one request to the next: another ETag
//!   each time, which defeats revalidation by browsers and CDNs. Every object
//!   is put in the order its query selected the fields (CollectFields order).
//! - **Errored fields.** A field whose resolver fails is left out of its
//!   object (and an object whose every field failed becomes `null`), where
//!   the specification wants the field present as `null`, and that `null`
//!   carried up to the nearest nullable parent when the field is non-null
//!   ("Handling Field Errors"). Clients rely on it: Apollo and Relay caches
//!   treat a missing key as a broken response. Using the errors' paths and
//!   the schema's types, each errored field is put back as `null`, and a
//!   `null` where the type forbids it makes its parent `null`, up to `data`.
//!
//! `@skip` and `@include` are honoured. Type conditions are not evaluated:
//! on an object type every valid fragment applies, so the order is exact;
//! under a union or interface (`_entities`) the fields of every fragment are
//! merged in the order they first appear, which is still the same order for
//! the same query, and a field's type is read from the fragment whose type
//! the object's `__typename` names (the router always selects it).

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{Name, PathSegment, Response, Value, Variables};
// A value as written in a document (it may name a variable).
use async_graphql_value::Value as DocumentValue;

/// A request's document and variables, kept to shape its response.
pub struct ResponseShape {
    document: ExecutableDocument,
    variables: Variables,
}

/// One response key of an object's selection: the fields it may stand for
/// (the field's name and the type that defines it; more than one only under
/// a union or interface) and the selection sets of its value.
#[derive(Default)]
struct Planned<'d> {
    fields: Vec<(&'d str, &'d str)>,
    sets: Vec<&'d SelectionSet>,
    /// The plan of its value's objects, made once for every object at this
    /// place in the response (W2's 350 prices share one). Used only when the
    /// key stands for one field: then every such object has one type.
    plan: OnceCell<Plan<'d>>,
}

/// The response keys an object's selection sets name, in order.
type Plan<'d> = IndexMap<&'d Name, Planned<'d>>;

/// The paths of a response's errors, as a tree.
#[derive(Default)]
struct ErrorPaths {
    /// An error names this path itself.
    here: bool,
    fields: HashMap<String, ErrorPaths>,
    items: HashMap<usize, ErrorPaths>,
}

impl ErrorPaths {
    /// `None` when no error names a path (the common case: nothing to
    /// complete, only to order).
    fn of(response: &Response) -> Option<ErrorPaths> {
        let mut root = None;
        for error in response.errors.iter().filter(|e| !e.path.is_empty()) {
            let mut node = root.get_or_insert_with(ErrorPaths::default);
            for segment in &error.path {
                node = match segment {
                    PathSegment::Field(name) => node.fields.entry(name.clone()).or_default(),
                    PathSegment::Index(index) => node.items.entry(*index).or_default(),
                };
            }
            node.here = true;
        }
        root
    }

    fn below(&self) -> bool {
        !self.fields.is_empty() || !self.items.is_empty()
    }

    fn field<'e>(paths: Option<&'e ErrorPaths>, name: &str) -> Option<&'e ErrorPaths> {
        paths.and_then(|paths| paths.fields.get(name))
    }

    fn item(paths: Option<&ErrorPaths>, index: usize) -> Option<&ErrorPaths> {
        paths.and_then(|paths| paths.items.get(&index))
    }
}

/// One shaping pass over a response.
struct Shaping<'d> {
    shape: &'d ResponseShape,
    registry: &'d Registry,
}

impl ResponseShape {
    pub fn new(document: ExecutableDocument, variables: Variables) -> ResponseShape {
        ResponseShape {
            document,
            variables,
        }
    }

    /// Shapes `response`, the result of the operation `operation_name`
    /// selects, against the schema `registry` describes.
    pub fn apply(
        &self,
        registry: &Registry,
        operation_name: Option<&str>,
        response: &mut Response,
    ) {
        let Some(operation) = self.operation(operation_name) else {
            return;
        };
        let root = match operation.node.ty {
            OperationType::Query => Some(registry.query_type.as_str()),
            OperationType::Mutation => registry.mutation_type.as_deref(),
            OperationType::Subscription => registry.subscription_type.as_deref(),
        };
        let Some(root) = root else {
            return;
        };
        let errors = ErrorPaths::of(response);
        let shaping = Shaping {
            shape: self,
            registry,
        };
        // `data` is nullable: a non-null root field that is null nulls it.
        shaping.complete(
            &mut response.data,
            root,
            &[&operation.node.selection_set.node],
            errors.as_ref(),
            &OnceCell::new(),
        );
    }

    fn operation(&self, name: Option<&str>) -> Option<&Positioned<OperationDefinition>> {
        match (&self.document.operations, name) {
            (DocumentOperations::Single(operation), _) => Some(operation),
            (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                operations.values().next()
            }
            _ => None,
        }
    }
}

impl<'d> Shaping<'d> {
    /// Shapes `value`, of the schema type `ty` (written as the registry
    /// writes it: `[Review!]!`) with the selection `sets`. False when the
    /// value ends up `null` though `ty` is non-null: its parent must then be
    /// `null` too. `plan` holds the plan of an object of `ty` once made, so
    /// the items of a list share one.
    fn complete(
        &self,
        value: &mut Value,
        ty: &'d str,
        sets: &[&'d SelectionSet],
        errors: Option<&ErrorPaths>,
        plan: &OnceCell<Plan<'d>>,
    ) -> bool {
        let (non_null, ty) = match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => (true, inner),
            _ => (false, ty),
        };
        let fine = match MetaTypeName::create(ty) {
            MetaTypeName::List(item) => self.list(value, item, sets, errors, plan),
            _ if sets.is_empty() => true,
            _ => self.object(value, Some(ty), sets, errors, plan),
        };
        if !fine {
            *value = Value::Null;
        }
        !(non_null && *value == Value::Null)
    }

    /// False when an item is `null` though the items' type is non-null.
    /// The items share `plan`, their objects' plan.
    fn list(
        &self,
        value: &mut Value,
        item_ty: &'d str,
        sets: &[&'d SelectionSet],
        errors: Option<&ErrorPaths>,
        plan: &OnceCell<Plan<'d>>,
    ) -> bool {
        let Value::List(items) = value else {
            return true;
        };
        items.iter_mut().enumerate().all(|(index, item)| {
            let errors = ErrorPaths::item(errors, index);
            self.complete(item, item_ty, sets, errors, plan)
        })
    }

    /// Orders an object's fields and puts its errored fields back as `null`.
    /// False when one of them is `null` though its type is non-null. `ty` is
    /// `None` under a field the registry does not describe (introspection):
    /// the object is only ordered, and so is every object of a list there.
    fn object(
        &self,
        value: &mut Value,
        ty: Option<&'d str>,
        sets: &[&'d SelectionSet],
        errors: Option<&ErrorPaths>,
        plan: &OnceCell<Plan<'d>>,
    ) -> bool {
        if *value == Value::Null && errors.is_some_and(ErrorPaths::below) {
            // async-graphql makes an object whose every field failed `null`.
            *value = Value::Object(IndexMap::new());
        }
        let map = match value {
            Value::Object(map) => map,
            Value::List(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let errors = ErrorPaths::item(errors, index);
                    self.object(item, ty, sets, errors, plan);
                }
                return true;
            }
            _ => return true,
        };
        let plan = plan.get_or_init(|| self.shape.plan(sets, ty.unwrap_or_default()));
        // Which of a union's or interface's fragments applies matters only
        // where a key stands for more than one field.
        let typename = plan
            .values()
            .any(|planned| planned.fields.len() > 1)
            .then(|| match map.get("__typename") {
                Some(Value::String(name)) => Some(name.clone()),
                _ => None,
            })
            .flatten();
        // Most objects arrive complete and in order (every field resolved,
        // and those that were ready at once in selection order): they are
        // shaped in place, without being built again.
        let in_order = errors.is_none()
            && map.len() == plan.len()
            && map.keys().zip(plan.keys()).all(|(got, want)| got == *want);
        if in_order {
            return map
                .values_mut()
                .zip(plan.values())
                .fold(true, |fine, (child, planned)| {
                    self.child(child, planned, typename.as_deref(), None) && fine
                });
        }
        let mut unordered = std::mem::take(map);
        let mut ordered = IndexMap::with_capacity(unordered.len());
        let mut fine = true;
        for (key, planned) in plan {
            let errors = ErrorPaths::field(errors, key.as_str());
            match unordered.swap_remove(key.as_str()) {
                Some(mut child) => {
                    fine &= self.child(&mut child, planned, typename.as_deref(), errors);
                    ordered.insert((*key).clone(), child);
                }
                None if errors.is_some_and(|errors| errors.here) => {
                    let field_ty = self.field_type(planned, typename.as_deref());
                    fine &= !field_ty.is_some_and(|ty| MetaTypeName::create(ty).is_non_null());
                    ordered.insert((*key).clone(), Value::Null);
                }
                // Not selected on this object's type.
                None => {}
            }
        }
        // Nothing should be left; if anything is, it keeps its place after
        // the rest rather than being lost.
        ordered.extend(unordered);
        *map = ordered;
        fine
    }

    /// Shapes the value of one of an object's keys. False as `complete`.
    fn child(
        &self,
        child: &mut Value,
        planned: &Planned<'d>,
        typename: Option<&str>,
        errors: Option<&ErrorPaths>,
    ) -> bool {
        let fresh = OnceCell::new();
        let plan = if planned.fields.len() == 1 {
            &planned.plan
        } else {
            // Under a union, the same key may hold objects of other types.
            &fresh
        };
        match self.field_type(planned, typename) {
            Some(field_ty) => self.complete(child, field_ty, &planned.sets, errors, plan),
            None => self.object(child, None, &planned.sets, errors, plan),
        }
    }

    /// The schema type of the field a response key stands for.
    fn field_type(&self, planned: &Planned<'d>, typename: Option<&str>) -> Option<&'d str> {
        let (name, parent) = planned
            .fields
            .iter()
            .find(|(_, parent)| Some(*parent) == typename)
            .or(planned.fields.first())?;
        let field = self
            .registry
            .concrete_type_by_name(parent)?
            .field_by_name(name)?;
        Some(field.ty.as_str())
    }
}

impl ResponseShape {
    /// The response keys `sets` select on an object of type `ty`.
    fn plan<'d>(&'d self, sets: &[&'d SelectionSet], ty: &'d str) -> Plan<'d> {
        let mut plan = Plan::new();
        // A fragment spread twice at one level adds nothing the first spread
        // did not (and a "fragment bomb" must not be walked exponentially).
        let mut spread = HashSet::new();
        for set in sets {
            self.collect(set, ty, &mut plan, &mut spread);
        }
        plan
    }

    fn collect<'d>(
        &'d self,
        set: &'d SelectionSet,
        ty: &'d str,
        plan: &mut Plan<'d>,
        spread: &mut HashSet<&'d Name>,
    ) {
        for selection in &set.items {
            if !self.included(&selection.node) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let planned = plan.entry(&field.node.response_key().node).or_default();
                    let candidate = (field.node.name.node.as_str(), ty);
                    if !planned.fields.contains(&candidate) {
                        planned.fields.push(candidate);
                    }
                    let sub = &field.node.selection_set.node;
                    if !sub.items.is_empty() && !planned.sets.iter().any(|s| std::ptr::eq(*s, sub))
                    {
                        planned.sets.push(sub);
                    }
                }
                Selection::FragmentSpread(fragment) => {
                    let name = &fragment.node.fragment_name.node;
                    if spread.insert(name) {
                        if let Some(definition) = self.document.fragments.get(name) {
                            let on = definition.node.type_condition.node.on.node.as_str();
                            self.collect(&definition.node.selection_set.node, on, plan, spread);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(ty, |condition| condition.node.on.node.as_str());
                    self.collect(&fragment.node.selection_set.node, on, plan, spread);
                }
            }
        }
    }

    /// `@skip(if:)` and `@include(if:)`, with literals or variables.
    fn included(&self, selection: &Selection) -> bool {
        selection.directives().iter().all(|directive| {
            let condition = || {
                directive
                    .node
                    .get_argument("if")
                    .map(|value| match &value.node {
                        DocumentValue::Boolean(b) => *b,
                        DocumentValue::Variable(name) => {
                            self.variables.get(name.as_str()) == Some(&Value::Boolean(true))
                        }
                        _ => false,
                    })
                    .unwrap_or(false)
            };
            match directive.node.name.node.as_str() {
                "skip" => !condition(),
                "include" => condition(),
                _ => true,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Orders `data` for `query` without a schema (no types: nothing is
    /// completed, every object is ordered).
    fn ordered(query: &str, variables: serde_json::Value, data: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let shape = ResponseShape::new(document, Variables::from_json(variables));
        let mut response = Response::new(Value::from_json(data).unwrap());
        shape.apply(&Registry::default(), None, &mut response);
        serde_json::to_string(&response.data).unwrap()
    }

    #[test]
    fn objects_and_list_items_follow_the_selection() {
        // serde_json without `preserve_order` sorts keys, so the input
        // arrives alphabetical: the selection order is something else.
        let out = ordered(
            "{ b { z y } a: c { x w } }",
            serde_json::json!({}),
            serde_json::json!({ "a": [{ "w": 1, "x": 2 }, { "w": 3, "x": 4 }], "b": { "y": 1, "z": 2 } }),
        );
        assert_eq!(
            out,
            r#"{"b":{"z":2,"y":1},"a":[{"x":2,"w":1},{"x":4,"w":3}]}"#
        );
    }

    #[test]
    fn an_object_already_in_order_still_has_its_children_ordered() {
        // Each item arrives in order (`a` before `n`), each item's `n` does
        // not: the items are shaped in place, their `n` is reordered, and
        // every item's `n` follows one plan made once.
        let out = ordered(
            "{ l { a n { z y } } }",
            serde_json::json!({}),
            serde_json::json!({ "l": [
                { "a": 1, "n": { "y": 1, "z": 2 } },
                { "a": 2, "n": { "y": 3, "z": 4 } },
            ] }),
        );
        assert_eq!(
            out,
            r#"{"l":[{"a":1,"n":{"z":2,"y":1}},{"a":2,"n":{"z":4,"y":3}}]}"#
        );
    }

    #[test]
    fn fragments_merge_where_they_first_appear_and_skipped_fields_do_not_count() {
        let out = ordered(
            "query ($no: Boolean!) { p { c @skip(if: $no) ...F b { y } c } } fragment F on P { a b { z } ...F }",
            serde_json::json!({ "no": true }),
            serde_json::json!({ "p": { "a": 1, "b": { "y": 1, "z": 2 }, "c": 3 } }),
        );
        assert_eq!(out, r#"{"p":{"a":1,"b":{"z":2,"y":1},"c":3}}"#);
    }

    mod errored_fields {
        use async_graphql::{EmptyMutation, EmptySubscription, Object, Result, Schema, Union};

        use super::super::super::conventions::Conventions;
        use crate::limits::Limits;

        struct Query;

        #[Object]
        impl Query {
            async fn strict(&self) -> Strict {
                Strict
            }
            async fn maybe(&self) -> Option<Strict> {
                Some(Strict)
            }
            async fn list(&self) -> Vec<Strict> {
                vec![Strict, Strict]
            }
            async fn maybe_items(&self) -> Vec<Option<Strict>> {
                vec![Some(Strict), Some(Strict)]
            }
            async fn things(&self) -> Vec<Option<Thing>> {
                vec![Some(Thing::Strict(Strict)), Some(Thing::Other(Other))]
            }
        }

        struct Strict;

        #[Object]
        impl Strict {
            async fn ok(&self) -> i32 {
                1
            }
            /// Non-null, and fails.
            async fn fails(&self) -> Result<i32> {
                Err("strict fails".into())
            }
            /// Nullable, and fails.
            async fn soft(&self) -> Result<Option<i32>> {
                Err("soft fails".into())
            }
        }

        struct Other;

        #[Object]
        impl Other {
            /// The same name as `Strict.fails`, nullable here.
            async fn fails(&self) -> Result<Option<i32>> {
                Err("other fails".into())
            }
        }

        #[derive(Union)]
        enum Thing {
            Strict(Strict),
            Other(Other),
        }

        /// The response's `data` as sent (`serde_json::Value` would sort
        /// the keys), and how many errors it has.
        async fn run(query: &str) -> (String, usize) {
            let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
                .extension(Conventions)
                .data(Limits::default())
                .finish();
            let response = schema.execute(query).await;
            let errors = response.errors.len();
            (serde_json::to_string(&response.data).unwrap(), errors)
        }

        #[tokio::test]
        async fn a_failed_nullable_field_is_null_beside_its_siblings() {
            let (data, errors) = run("{ maybe { ok soft } }").await;
            assert_eq!(data, r#"{"maybe":{"ok":1,"soft":null}}"#);
            assert_eq!(errors, 1);
        }

        #[tokio::test]
        async fn an_object_whose_only_field_failed_is_still_an_object() {
            let (data, _) = run("{ strict { soft } x: maybe { b: soft a: soft } }").await;
            assert_eq!(data, r#"{"strict":{"soft":null},"x":{"b":null,"a":null}}"#);
        }

        #[tokio::test]
        async fn a_failed_non_null_field_nulls_the_nearest_nullable_parent() {
            let (data, errors) =
                run("{ strict { ok } maybe { ok fails } maybeItems { fails } }").await;
            assert_eq!(
                data,
                r#"{"strict":{"ok":1},"maybe":null,"maybeItems":[null,null]}"#
            );
            assert_eq!(errors, 3);
        }

        #[tokio::test]
        async fn with_no_nullable_parent_data_is_null() {
            let (data, _) = run("{ maybe { ok } list { ok fails } }").await;
            assert_eq!(data, "null");
            let (data, _) = run("{ maybe { ok } strict { fails } }").await;
            assert_eq!(data, "null");
        }

        #[tokio::test]
        async fn under_a_union_the_fragment_of_the_objects_type_decides() {
            let query =
                "{ things { __typename ... on Strict { ok fails } ... on Other { fails } } }";
            let (data, errors) = run(query).await;
            assert_eq!(
                data,
                r#"{"things":[null,{"__typename":"Other","fails":null}]}"#
            );
            assert_eq!(errors, 2);
        }
    }
}
