//! Puts every object of a response in the order its query selected the
//! fields (the GraphQL specification's CollectFields order).
//!
//! async-graphql 7.2 resolves an object's fields concurrently and assembles
//! the object in the order they finish, so the same query could answer with
//! differently ordered bytes from one request to the next: another ETag each
//! time, which defeats revalidation by browsers and CDNs (and a response
//! whose keys move around is harder to read and to diff).
//!
//! `@skip` and `@include` are honoured. Type conditions are not evaluated:
//! on an object type every valid fragment applies, so the order is exact;
//! under a union or interface (`_entities`) the fields of every fragment are
//! merged in the order they first appear, which is still the same order for
//! the same query.

use std::collections::HashSet;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Value, Variables};
// A value as written in a document (it may name a variable).
use async_graphql_value::Value as DocumentValue;

/// A request's document and variables, kept to order its response.
pub struct SelectionOrder {
    document: ExecutableDocument,
    variables: Variables,
}

/// The response keys an object's selection sets name, in order, each with
/// the selection sets of its value.
type Plan<'d> = IndexMap<&'d Name, Vec<&'d SelectionSet>>;

impl SelectionOrder {
    pub fn new(document: ExecutableDocument, variables: Variables) -> SelectionOrder {
        SelectionOrder {
            document,
            variables,
        }
    }

    /// Orders `data`, the result of the operation `operation_name` selects.
    pub fn apply(&self, operation_name: Option<&str>, data: &mut Value) {
        if let Some(operation) = self.operation(operation_name) {
            self.order(data, &[&operation.node.selection_set.node]);
        }
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

    fn order(&self, value: &mut Value, sets: &[&SelectionSet]) {
        if sets.is_empty() || !matches!(value, Value::Object(_) | Value::List(_)) {
            return;
        }
        let plan = self.plan(sets);
        self.arrange(value, &plan);
    }

    /// Applies one plan to an object, or to every object of a list (its
    /// items share the plan).
    fn arrange(&self, value: &mut Value, plan: &Plan<'_>) {
        match value {
            Value::Object(map) => {
                let mut unordered = std::mem::take(map);
                let mut ordered = IndexMap::with_capacity(unordered.len());
                for (key, sets) in plan {
                    if let Some(mut child) = unordered.swap_remove(key.as_str()) {
                        self.order(&mut child, sets);
                        ordered.insert((*key).clone(), child);
                    }
                }
                // Nothing should be left; if anything is, it keeps its place
                // after the rest rather than being lost.
                ordered.extend(unordered);
                *map = ordered;
            }
            Value::List(items) => {
                for item in items {
                    self.arrange(item, plan);
                }
            }
            _ => {}
        }
    }

    fn plan<'d>(&'d self, sets: &[&'d SelectionSet]) -> Plan<'d> {
        let mut plan = Plan::new();
        // A fragment spread twice at one level adds nothing the first spread
        // did not (and a "fragment bomb" must not be walked exponentially).
        let mut spread = HashSet::new();
        for set in sets {
            self.collect(set, &mut plan, &mut spread);
        }
        plan
    }

    fn collect<'d>(
        &'d self,
        set: &'d SelectionSet,
        plan: &mut Plan<'d>,
        spread: &mut HashSet<&'d Name>,
    ) {
        for selection in &set.items {
            if !self.included(&selection.node) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let sets = plan.entry(&field.node.response_key().node).or_default();
                    let sub = &field.node.selection_set.node;
                    if !sub.items.is_empty() && !sets.iter().any(|s| std::ptr::eq(*s, sub)) {
                        sets.push(sub);
                    }
                }
                Selection::FragmentSpread(fragment) => {
                    let name = &fragment.node.fragment_name.node;
                    if spread.insert(name) {
                        if let Some(definition) = self.document.fragments.get(name) {
                            self.collect(&definition.node.selection_set.node, plan, spread);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.collect(&fragment.node.selection_set.node, plan, spread);
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

    fn ordered(query: &str, variables: serde_json::Value, data: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let order = SelectionOrder::new(document, Variables::from_json(variables));
        let mut data = Value::from_json(data).unwrap();
        order.apply(None, &mut data);
        serde_json::to_string(&data).unwrap()
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
    fn fragments_merge_where_they_first_appear_and_skipped_fields_do_not_count() {
        let out = ordered(
            "query ($no: Boolean!) { p { c @skip(if: $no) ...F b { y } c } } fragment F on P { a b { z } ...F }",
            serde_json::json!({ "no": true }),
            serde_json::json!({ "p": { "a": 1, "b": { "y": 1, "z": 2 }, "c": 3 } }),
        );
        assert_eq!(out, r#"{"p":{"a":1,"b":{"z":2,"y":1},"c":3}}"#);
    }
}
