//! How long a response may be cached, and by whom, from the fields its
//! document selects, in Apollo Server's cache-control model: every field that
//! returns an object, and every root field, needs a hint (on the field or on
//! the type it returns) or the response is not cacheable; the response's age
//! is the smallest of its fields'; one personal field makes it personal.
//! Unlike async-graphql's own hints, a field nobody described lowers the age
//! to zero instead of being ignored, so a new field is never cached by
//! accident.
//!
//! The HTTP layer turns the [`Policy`] into `Cache-Control`, and adds what
//! the document cannot know: errors and authenticated requests are never
//! public.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};

use crate::limits::cost::CostModel;

/// A cache hint, by type (`Product`) or field (`Customer.email`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Anyone may keep it this many seconds.
    Public(u32),
    /// A value object: it takes the age of the field it hangs from.
    Inherit,
    /// Personal data: never stored anywhere.
    Personal,
    /// The router's `_entities`: as cacheable as the entity types it selects
    /// (their hints apply through the type conditions).
    Entities,
}

/// Catalog data changes when operators edit it, and mutations invalidate
/// the server's own cache; a minute is what a CDN may serve stale.
const CATALOG: u32 = 60;
/// Categories and images change rarely.
const STRUCTURE: u32 = 300;
/// Stock moves with every order.
const STOCK: u32 = 5;

pub const HINTS: &[(&str, Hint)] = &[
    ("Product", Hint::Public(CATALOG)),
    ("Review", Hint::Public(CATALOG)),
    ("Category", Hint::Public(STRUCTURE)),
    ("Image", Hint::Public(STRUCTURE)),
    ("InventoryLevel", Hint::Public(STOCK)),
    // A review's author: the public part of a customer.
    ("Customer", Hint::Public(CATALOG)),
    ("Customer.email", Hint::Personal),
    ("Customer.orders", Hint::Personal),
    ("Money", Hint::Inherit),
    ("PageInfo", Hint::Inherit),
    ("ProductConnection", Hint::Inherit),
    ("ProductEdge", Hint::Inherit),
    ("Order", Hint::Personal),
    ("OrderItem", Hint::Personal),
    ("OrderConnection", Hint::Personal),
    ("OrderEdge", Hint::Personal),
    ("Query.me", Hint::Personal),
    ("PlaceOrderPayload", Hint::Personal),
    ("Query._entities", Hint::Entities),
];

/// What a document allows, before the answer is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Seconds; 0 is not cacheable.
    pub max_age: u32,
    pub personal: bool,
}

impl Policy {
    pub const UNCACHEABLE: Policy = Policy {
        max_age: 0,
        personal: false,
    };

    pub fn is_cacheable(self) -> bool {
        self.max_age > 0 && !self.personal
    }
}

fn hint(key: &str) -> Option<Hint> {
    HINTS.iter().find(|(k, _)| *k == key).map(|(_, h)| *h)
}

/// The policy of the operation a request runs (only queries are cacheable).
pub fn policy(
    model: &CostModel,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Policy {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => &op.node,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => &op.node,
            None => return Policy::UNCACHEABLE,
        },
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => match ops.values().next() {
            Some(op) => &op.node,
            None => return Policy::UNCACHEABLE,
        },
        _ => return Policy::UNCACHEABLE,
    };
    operation_policy(model, document, operation)
}

fn operation_policy(
    model: &CostModel,
    document: &ExecutableDocument,
    operation: &OperationDefinition,
) -> Policy {
    if operation.ty != OperationType::Query {
        return Policy::UNCACHEABLE;
    }
    let mut walk = Walk {
        model,
        document,
        seen: HashSet::new(),
        policy: Policy {
            max_age: u32::MAX,
            personal: false,
        },
    };
    let root = model.root(OperationType::Query);
    walk.selection_set(root, &operation.selection_set.node, None, true);
    if walk.policy.max_age == u32::MAX {
        // Only `__typename`: nothing to protect, nothing worth caching.
        walk.policy.max_age = 0;
    }
    walk.policy
}

struct Walk<'a> {
    model: &'a CostModel,
    document: &'a ExecutableDocument,
    seen: HashSet<&'a str>,
    policy: Policy,
}

impl<'a> Walk<'a> {
    fn apply(&mut self, age: Option<u32>, personal: bool) {
        if let Some(age) = age {
            self.policy.max_age = self.policy.max_age.min(age);
        }
        self.policy.personal |= personal;
    }

    /// A type condition on another type than the parent's (a member of
    /// `_entities`' union): that type's hint applies to what is selected on it.
    fn enter_type(&mut self, on: &str, parent: &str, inherited: Option<u32>) -> Option<u32> {
        if on == parent {
            return inherited;
        }
        match hint(on) {
            Some(Hint::Public(age)) => {
                self.apply(Some(age), false);
                Some(age)
            }
            Some(Hint::Personal) => {
                self.apply(Some(0), true);
                Some(0)
            }
            _ => inherited,
        }
    }

    /// `inherited`: the age of the field this selection hangs from, for
    /// value objects.
    fn selection_set(
        &mut self,
        parent: &'a str,
        set: &'a SelectionSet,
        inherited: Option<u32>,
        root: bool,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    if name == "__typename" {
                        continue;
                    }
                    if name.starts_with("__") {
                        // Introspection: GraphiQL and tools, never cached.
                        self.apply(Some(0), false);
                        continue;
                    }
                    let Some((returns, composite)) = self.model.field_type(parent, name) else {
                        continue;
                    };
                    let own = hint(&format!("{parent}.{name}"))
                        .or_else(|| composite.then(|| hint(returns)).flatten());
                    let age = match own {
                        Some(Hint::Personal) => {
                            self.apply(Some(0), true);
                            continue;
                        }
                        Some(Hint::Public(age)) => Some(age),
                        Some(Hint::Inherit) | Some(Hint::Entities) => inherited,
                        // A root field or an object without a hint: not
                        // cacheable. A leaf takes its parent's age.
                        None if root || composite => Some(0),
                        None => None,
                    };
                    self.apply(age, false);
                    if composite {
                        self.selection_set(
                            returns,
                            &field.node.selection_set.node,
                            age.or(inherited),
                            false,
                        );
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(parent, |c| c.node.on.node.as_str());
                    let inherited = self.enter_type(on, parent, inherited);
                    self.selection_set(on, &fragment.node.selection_set.node, inherited, root);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    // The policy is a minimum: one visit of each fragment is enough.
                    if !self.seen.insert(name) {
                        continue;
                    }
                    if let Some(fragment) = self.document.fragments.get(name) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        let inherited = self.enter_type(on, parent, inherited);
                        self.selection_set(on, &fragment.node.selection_set.node, inherited, root);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(query: &str) -> Policy {
        let document = async_graphql::parser::parse_query(query).unwrap();
        policy(&crate::graph::cost_model(), &document, None)
    }

    fn public(max_age: u32) -> Policy {
        Policy {
            max_age,
            personal: false,
        }
    }

    #[test]
    fn catalog_data_is_public_for_its_shortest_hint() {
        assert_eq!(policy_of("{ categories { slug } }"), public(300));
        assert_eq!(
            policy_of("{ product(id: 1) { title price { amount } } }"),
            public(60)
        );
        assert_eq!(
            policy_of("{ products(first: 2) { nodes { title inventory { available } } pageInfo { hasNextPage } } }"),
            public(5)
        );
        assert_eq!(
            policy_of("{ product(id: 1) { reviews { author { name } } } }"),
            public(60)
        );
    }

    #[test]
    fn personal_data_anywhere_makes_the_response_personal() {
        assert!(policy_of("{ me { name } }").personal);
        assert!(policy_of("{ product(id: 1) { reviews { author { email } } } }").personal);
        assert!(policy_of("{ categories { slug } order(id: 1) { id } }").personal);
        assert!(
            policy_of("query { ...F } fragment F on Query { me { id } }").personal,
            "through fragments"
        );
    }

    #[test]
    fn entities_are_as_cacheable_as_the_types_selected() {
        let products = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { title price { amount } } } }";
        assert_eq!(policy_of(products), public(60));
        let customers =
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { email } } }";
        assert!(policy_of(customers).personal);
        let orders =
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Order { id } } }";
        assert!(policy_of(orders).personal);
    }

    #[test]
    fn what_has_no_hint_is_not_cacheable() {
        assert_eq!(policy_of("{ __typename }").max_age, 0);
        assert_eq!(policy_of("{ __schema { types { name } } }").max_age, 0);
        assert_eq!(policy_of("{ _service { sdl } }").max_age, 0);
        assert!(!policy_of("mutation { addReview(input: {}) { id } }").is_cacheable());
    }

    #[test]
    fn every_hint_names_a_type_or_field_of_the_schema() {
        let model = crate::graph::cost_model();
        let sdl = crate::graph::schema_builder().finish().sdl();
        for (key, _) in HINTS {
            match key.split_once('.') {
                Some((ty, field)) => assert!(model.field_type(ty, field).is_some(), "{key}"),
                None => assert!(sdl.contains(&format!("type {key} ")), "{key}"),
            }
        }
    }
}
