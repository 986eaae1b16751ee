//! The cost of an operation: an estimate, before execution, of how much work
//! it asks of the server, in the model of the IBM GraphQL Cost Directive
//! specification that Apollo Router's demand control also uses, so a router
//! in front computes the same figure from the `@cost` and `@listSize`
//! directives of the subgraph SDL:
//!
//! - a field that returns an object costs 1 plus the cost of its selection; a
//!   scalar or enum field costs 0; a declared weight replaces either base;
//! - a list costs its size times the cost of one element, the size being the
//!   value of its slicing argument (`first`, with the variables of the request
//!   and the argument's default) or its assumed size; a connection's slicing
//!   argument sizes its `edges` and `nodes`;
//! - `_entities` is as long as the representations it is sent; an element of
//!   a union costs what its most expensive type condition costs;
//! - a mutation operation costs 10 more, as in Apollo's model;
//! - introspection costs nothing here: it is bounded by its own limit (the
//!   nesting of its lists) and may be turned off for anonymous clients.
//!
//! Fragments are measured once per context and remembered, so the walk is
//! linear in the document even for a "fragment bomb". The same walk checks
//! page sizes against each listing's maximum, so a huge page is refused
//! before execution too.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
    Selection, SelectionSet, ServiceDocument, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::{ConstValue, Value};

/// The extra cost of a mutation operation (Apollo's demand control base).
pub const MUTATION_BASE_COST: u64 = 10;

/// The size assumed for a list that has no rule (a new list field someone
/// forgot to describe): the largest page any listing serves.
pub const UNDESCRIBED_LIST_SIZE: u64 = 100;

/// How a field is costed, beyond the defaults: the schema's own rules table
/// (in `graph::demand`) is a list of these, and the SDL's `@cost` and
/// `@listSize` are printed from the same table.
#[derive(Clone, Copy, Debug)]
pub struct FieldRule {
    /// `Type.field`.
    pub coordinate: &'static str,
    /// Replaces the default weight (1 for objects, 0 for scalars).
    pub weight: Option<u64>,
    pub size: Option<ListSize>,
}

/// How long a list field's answer may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListSize {
    /// A fixed estimate (the field takes no page size).
    Assumed(u64),
    /// The value of an argument, at most `max` (more is refused with
    /// `PAGE_SIZE_EXCEEDED`). When `sized_fields` is not empty the field is a
    /// connection: the size applies to those children, not to the field.
    Slicing {
        argument: &'static str,
        max: u64,
        sized_fields: &'static [&'static str],
    },
    /// As many as the `representations` argument holds (`_entities`).
    Representations,
}

impl FieldRule {
    pub const fn new(coordinate: &'static str) -> FieldRule {
        FieldRule {
            coordinate,
            weight: None,
            size: None,
        }
    }

    pub const fn weight(mut self, weight: u64) -> FieldRule {
        self.weight = Some(weight);
        self
    }

    pub const fn assumed_size(mut self, size: u64) -> FieldRule {
        self.size = Some(ListSize::Assumed(size));
        self
    }

    pub const fn sliced_by(mut self, argument: &'static str, max: u64) -> FieldRule {
        self.size = Some(ListSize::Slicing {
            argument,
            max,
            sized_fields: &[],
        });
        self
    }

    pub const fn connection(mut self, argument: &'static str, max: u64) -> FieldRule {
        self.size = Some(ListSize::Slicing {
            argument,
            max,
            sized_fields: &["edges", "nodes"],
        });
        self
    }

    pub const fn representations(mut self) -> FieldRule {
        self.size = Some(ListSize::Representations);
        self
    }
}

/// What one field of the schema costs.
#[derive(Clone, Debug)]
struct FieldCost {
    /// The named type it returns.
    returns: String,
    list: bool,
    /// Its own cost: the rule's weight, else 1 for composite types, 0 for leaves.
    weight: u64,
    composite: bool,
    size: Option<ListSize>,
    /// The slicing argument's default in the schema, if it has one.
    default_size: Option<u64>,
}

/// The costs of every field of a schema, read from its SDL and a rules table.
#[derive(Clone, Debug, Default)]
pub struct CostModel {
    fields: HashMap<String, HashMap<String, FieldCost>>,
    abstract_types: HashSet<String>,
    query: String,
    mutation: String,
    subscription: String,
}

/// What a document's selected operation costs, or the page-size excess found
/// on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    pub cost: u64,
    /// The largest excess of a page size over its maximum: `(max, requested)`.
    pub page_size_exceeded: Option<(u64, u64)>,
}

impl CostModel {
    /// Reads the field types from `sdl` (the schema as async-graphql prints
    /// it) and applies `rules`.
    pub fn new(sdl: &str, rules: &[FieldRule]) -> Result<CostModel, String> {
        let document = async_graphql::parser::parse_schema(sdl).map_err(|e| e.to_string())?;
        let mut model = CostModel {
            query: "Query".into(),
            mutation: "Mutation".into(),
            subscription: "Subscription".into(),
            ..CostModel::default()
        };
        let mut leaves = HashSet::from_iter(
            ["Int", "Float", "String", "Boolean", "ID"]
                .into_iter()
                .map(String::from),
        );
        collect_roots_and_leaves(&document, &mut model, &mut leaves);
        let rules: HashMap<&str, &FieldRule> = rules.iter().map(|r| (r.coordinate, r)).collect();
        let mut used = 0;
        for definition in &document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let type_name = ty.node.name.node.as_str();
            let fields = match &ty.node.kind {
                TypeKind::Object(object) => &object.fields,
                TypeKind::Interface(interface) => &interface.fields,
                _ => continue,
            };
            let entry = model.fields.entry(type_name.to_string()).or_default();
            for field in fields {
                let field = &field.node;
                let name = field.name.node.as_str();
                let (returns, list) = named_type(&field.ty.node.base);
                let composite = !leaves.contains(returns);
                let rule = rules.get(format!("{type_name}.{name}").as_str());
                used += usize::from(rule.is_some());
                let size = rule.and_then(|r| r.size);
                let default_size = match size {
                    Some(ListSize::Slicing { argument, .. }) => field
                        .arguments
                        .iter()
                        .find(|a| a.node.name.node == argument)
                        .and_then(|a| a.node.default_value.as_ref())
                        .and_then(|v| as_size(&v.node)),
                    _ => None,
                };
                entry.insert(
                    name.to_string(),
                    FieldCost {
                        returns: returns.to_string(),
                        list,
                        weight: rule.and_then(|r| r.weight).unwrap_or(u64::from(composite)),
                        composite,
                        size,
                        default_size,
                    },
                );
            }
        }
        if used != rules.len() {
            let unknown: Vec<&str> = rules
                .keys()
                .filter(|c| {
                    let (ty, field) = c.split_once('.').unwrap_or((c, ""));
                    !model.fields.get(ty).is_some_and(|f| f.contains_key(field))
                })
                .copied()
                .collect();
            return Err(format!(
                "cost rules name fields the schema lacks: {unknown:?}"
            ));
        }
        Ok(model)
    }

    /// List fields that have no size rule and are not sized by a connection:
    /// each is costed as if it were [`UNDESCRIBED_LIST_SIZE`] long.
    pub fn undescribed_lists(&self) -> Vec<String> {
        let sized_children: HashSet<(&str, &str)> = self
            .fields
            .values()
            .flat_map(|fields| fields.values())
            .filter_map(|f| match f.size {
                Some(ListSize::Slicing { sized_fields, .. }) if !sized_fields.is_empty() => {
                    Some((f.returns.as_str(), sized_fields))
                }
                _ => None,
            })
            .flat_map(|(ty, fields)| fields.iter().map(move |f| (ty, *f)))
            .collect();
        let mut out: Vec<String> = self
            .fields
            .iter()
            .flat_map(|(ty, fields)| fields.iter().map(move |(name, f)| (ty, name, f)))
            .filter(|(ty, name, f)| {
                f.list && f.size.is_none() && !sized_children.contains(&(ty.as_str(), name))
            })
            .map(|(ty, name, _)| format!("{ty}.{name}"))
            .collect();
        out.sort();
        out
    }

    /// Measures the operation the request will run (by `operation_name`), or
    /// the most expensive one when that cannot be told (execution will then
    /// refuse the request anyway).
    pub fn measure(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Measured {
        let selected = match (&document.operations, operation_name) {
            (DocumentOperations::Single(op), _) => Some(&op.node),
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
                ops.values().next().map(|op| &op.node)
            }
            _ => None,
        };
        match selected {
            Some(operation) => self.measure_operation(document, operation, variables, false),
            None => document
                .operations
                .iter()
                .map(|(_, op)| self.measure_operation(document, &op.node, variables, false))
                .max_by_key(|m| m.cost)
                .unwrap_or(Measured {
                    cost: 0,
                    page_size_exceeded: None,
                }),
        }
    }

    /// The most an operation can cost whatever variables it is sent with: a
    /// page size given by a variable is taken at its maximum (a variable's
    /// default does not bound what a client may send). For documents costed
    /// once, at registration.
    pub fn measure_worst_case(
        &self,
        operation: &OperationDefinition,
        document: &ExecutableDocument,
    ) -> u64 {
        self.measure_operation(document, operation, &Variables::default(), true)
            .cost
    }

    fn measure_operation(
        &self,
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        variables: &Variables,
        worst_case: bool,
    ) -> Measured {
        let root = match operation.ty {
            OperationType::Query => &self.query,
            OperationType::Mutation => &self.mutation,
            OperationType::Subscription => &self.subscription,
        };
        let mut walk = Walk {
            model: self,
            document,
            variables,
            worst_case,
            defaults: operation
                .variable_definitions
                .iter()
                .filter(|_| !worst_case)
                .filter_map(|d| {
                    let default = d.node.default_value.as_ref()?;
                    Some((d.node.name.node.as_str(), &default.node))
                })
                .collect(),
            fragments: HashMap::new(),
            visiting: Vec::new(),
            page_size_exceeded: None,
        };
        let base = if operation.ty == OperationType::Mutation {
            MUTATION_BASE_COST
        } else {
            0
        };
        let cost = walk
            .selection_set(root, &operation.selection_set.node, None)
            .saturating_add(base);
        Measured {
            cost,
            page_size_exceeded: walk.page_size_exceeded,
        }
    }

    fn field(&self, parent: &str, name: &str) -> Option<&FieldCost> {
        self.fields.get(parent)?.get(name)
    }

    /// The named type `parent.name` returns, and whether it is composite
    /// (an object, interface or union); `None` for a field the schema lacks.
    pub fn field_type(&self, parent: &str, name: &str) -> Option<(&str, bool)> {
        self.field(parent, name)
            .map(|f| (f.returns.as_str(), f.composite))
    }

    /// The root type of an operation type.
    pub fn root(&self, operation: OperationType) -> &str {
        match operation {
            OperationType::Query => &self.query,
            OperationType::Mutation => &self.mutation,
            OperationType::Subscription => &self.subscription,
        }
    }
}

fn collect_roots_and_leaves(
    document: &ServiceDocument,
    model: &mut CostModel,
    leaves: &mut HashSet<String>,
) {
    for definition in &document.definitions {
        match definition {
            TypeSystemDefinition::Schema(schema) => {
                let schema = &schema.node;
                if let Some(q) = &schema.query {
                    model.query = q.node.to_string();
                }
                if let Some(m) = &schema.mutation {
                    model.mutation = m.node.to_string();
                }
                if let Some(s) = &schema.subscription {
                    model.subscription = s.node.to_string();
                }
            }
            TypeSystemDefinition::Type(ty) => {
                let name = ty.node.name.node.to_string();
                match ty.node.kind {
                    TypeKind::Scalar | TypeKind::Enum(_) => {
                        leaves.insert(name);
                    }
                    TypeKind::Union(_) | TypeKind::Interface(_) => {
                        model.abstract_types.insert(name);
                    }
                    _ => {}
                }
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
}

fn named_type(base: &BaseType) -> (&str, bool) {
    match base {
        BaseType::Named(name) => (name.as_str(), false),
        BaseType::List(inner) => (named_type(&inner.base).0, true),
    }
}

fn as_size<V: AsNumber>(value: &V) -> Option<u64> {
    value.as_number().map(|n| n.max(0) as u64)
}

/// Reads an integer out of a (const or variable-free) GraphQL value.
trait AsNumber {
    fn as_number(&self) -> Option<i64>;
}

fn number(n: &async_graphql::Number) -> Option<i64> {
    n.as_i64()
        .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

impl AsNumber for ConstValue {
    fn as_number(&self) -> Option<i64> {
        match self {
            ConstValue::Number(n) => number(n),
            _ => None,
        }
    }
}

impl AsNumber for Value {
    fn as_number(&self) -> Option<i64> {
        match self {
            Value::Number(n) => number(n),
            _ => None,
        }
    }
}

/// The size the parent connection gives some of its children.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Sized {
    size: u64,
    fields: &'static [&'static str],
}

struct Walk<'a> {
    model: &'a CostModel,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// Page sizes given by variables count at their maximum.
    worst_case: bool,
    defaults: HashMap<&'a str, &'a ConstValue>,
    fragments: HashMap<(&'a str, &'a str, Option<Sized>), u64>,
    visiting: Vec<&'a str>,
    page_size_exceeded: Option<(u64, u64)>,
}

impl<'a> Walk<'a> {
    /// The cost of `set` selected on `parent`. On an abstract parent, the
    /// parts conditioned on different types are alternatives: the most
    /// expensive one counts.
    fn selection_set(
        &mut self,
        parent: &'a str,
        set: &'a SelectionSet,
        sized: Option<Sized>,
    ) -> u64 {
        let mut common = 0u64;
        let mut alternatives: HashMap<&'a str, u64> = HashMap::new();
        let abstract_parent = self.model.abstract_types.contains(parent);
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    common = common.saturating_add(self.field(parent, &field.node, sized));
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(parent, |c| c.node.on.node.as_str());
                    let cost = self.selection_set(
                        on,
                        &fragment.node.selection_set.node,
                        sized_for(on, parent, sized),
                    );
                    add_part(
                        abstract_parent && on != parent,
                        on,
                        cost,
                        &mut common,
                        &mut alternatives,
                    );
                }
                Selection::FragmentSpread(spread) => {
                    let Some((on, cost)) = self.fragment(&spread.node.fragment_name, parent, sized)
                    else {
                        continue;
                    };
                    add_part(
                        abstract_parent && on != parent,
                        on,
                        cost,
                        &mut common,
                        &mut alternatives,
                    );
                }
            }
        }
        common.saturating_add(alternatives.into_values().max().unwrap_or(0))
    }

    fn fragment(
        &mut self,
        name: &'a Positioned<Name>,
        parent: &'a str,
        sized: Option<Sized>,
    ) -> Option<(&'a str, u64)> {
        let name = name.node.as_str();
        let definition = self.document.fragments.get(name)?;
        let on = definition.node.type_condition.node.on.node.as_str();
        let sized = sized_for(on, parent, sized);
        let key = (name, on, sized);
        if let Some(cost) = self.fragments.get(&key) {
            return Some((on, *cost));
        }
        if self.visiting.contains(&name) {
            // A cycle: validation refuses the document.
            return Some((on, 0));
        }
        self.visiting.push(name);
        let cost = self.selection_set(on, &definition.node.selection_set.node, sized);
        self.visiting.pop();
        self.fragments.insert(key, cost);
        Some((on, cost))
    }

    fn field(
        &mut self,
        parent: &'a str,
        field: &'a async_graphql::parser::types::Field,
        sized: Option<Sized>,
    ) -> u64 {
        let name = field.name.node.as_str();
        if name.starts_with("__") {
            return 0;
        }
        let Some(cost) = self.model.field(parent, name) else {
            // Unknown here: validation refuses it.
            return 0;
        };
        let mut count = 1u64;
        let mut child_sized = None;
        match cost.size {
            Some(ListSize::Assumed(n)) => count = n,
            Some(ListSize::Slicing {
                argument,
                max,
                sized_fields,
            }) => {
                let by_variable = matches!(
                    field.get_argument(argument).map(|v| &v.node),
                    Some(Value::Variable(_))
                );
                let requested = match self.argument(field, argument) {
                    Some(size) => size,
                    None if self.worst_case && by_variable => max,
                    None => cost.default_size.unwrap_or(max),
                };
                if requested > max {
                    let worst = self.page_size_exceeded.map_or(0, |(_, r)| r);
                    if requested > worst {
                        self.page_size_exceeded = Some((max, requested));
                    }
                }
                if sized_fields.is_empty() {
                    count = requested;
                } else {
                    child_sized = Some(Sized {
                        size: requested,
                        fields: sized_fields,
                    });
                }
            }
            Some(ListSize::Representations) => {
                count = self.representations(field).unwrap_or(UNDESCRIBED_LIST_SIZE);
            }
            None if cost.list => {
                count = sized
                    .filter(|s| s.fields.contains(&name))
                    .map_or(UNDESCRIBED_LIST_SIZE, |s| s.size);
            }
            None => {}
        }
        let element = if cost.composite {
            cost.weight.saturating_add(self.selection_set(
                &cost.returns,
                &field.selection_set.node,
                child_sized,
            ))
        } else {
            cost.weight
        };
        count.saturating_mul(element)
    }

    /// An argument's value as a size, through the request's variables and
    /// the operation's variable defaults.
    fn argument(&self, field: &async_graphql::parser::types::Field, name: &str) -> Option<u64> {
        let value = &field.get_argument(name)?.node;
        match value {
            Value::Variable(variable) => self
                .variables
                .get(variable)
                .and_then(|v| v.as_number())
                .or_else(|| {
                    self.defaults
                        .get(variable.as_str())
                        .and_then(|v| v.as_number())
                })
                .map(|n| n.max(0) as u64),
            other => as_size(other),
        }
    }

    fn representations(&self, field: &async_graphql::parser::types::Field) -> Option<u64> {
        let value = &field.get_argument("representations")?.node;
        match value {
            Value::Variable(variable) => match self
                .variables
                .get(variable)
                .or_else(|| self.defaults.get(variable.as_str()).copied())
            {
                Some(ConstValue::List(items)) => Some(items.len() as u64),
                _ => None,
            },
            Value::List(items) => Some(items.len() as u64),
            _ => None,
        }
    }
}

/// A connection's sizing passes into fragments on the connection itself.
fn sized_for(on: &str, parent: &str, sized: Option<Sized>) -> Option<Sized> {
    if on == parent {
        sized
    } else {
        None
    }
}

fn add_part<'a>(
    alternative: bool,
    on: &'a str,
    cost: u64,
    common: &mut u64,
    alternatives: &mut HashMap<&'a str, u64>,
) {
    if alternative {
        let entry = alternatives.entry(on).or_default();
        *entry = entry.saturating_add(cost);
    } else {
        *common = common.saturating_add(cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
        type Query { shop: Shop! items(first: Int! = 10): [Item!]! page(first: Int! = 5): ItemConnection!
                     all: [Item!]! _entities(representations: [_Any!]!): [_Entity]! }
        type Mutation { buy(id: ID!): Item! }
        type Shop { name: String! rating: Float }
        type Item { id: ID! name: String! shop: Shop! tags: [String!]! }
        type ItemConnection { nodes: [Item!]! edges: [ItemEdge!]! total: Int! }
        type ItemEdge { node: Item! cursor: String! }
        union _Entity = Item | Shop
        scalar _Any
    "#;

    const RULES: &[FieldRule] = &[
        FieldRule::new("Query.items").sliced_by("first", 50),
        FieldRule::new("Query.page").connection("first", 50),
        FieldRule::new("Query.all").assumed_size(7),
        FieldRule::new("Query._entities").representations(),
        FieldRule::new("Shop.rating").weight(3),
        FieldRule::new("Item.tags").weight(2).assumed_size(4),
        FieldRule::new("ItemConnection.total").weight(10),
    ];

    fn measure(query: &str, variables: serde_json::Value) -> Measured {
        let model = CostModel::new(SDL, RULES).unwrap();
        let document = async_graphql::parser::parse_query(query).unwrap();
        model.measure(&document, None, &Variables::from_json(variables))
    }

    fn cost(query: &str) -> u64 {
        measure(query, serde_json::json!({})).cost
    }

    #[test]
    fn objects_cost_one_scalars_nothing_unless_weighted() {
        assert_eq!(cost("{ shop { name } }"), 1);
        assert_eq!(cost("{ shop { name rating } }"), 4);
        assert_eq!(cost("{ __typename shop { __typename } }"), 1);
    }

    #[test]
    fn lists_multiply_by_their_page_size_default_or_assumed_size() {
        // 10 items by default, each 1 + shop 1.
        assert_eq!(cost("{ items { name shop { name } } }"), 20);
        assert_eq!(cost("{ items(first: 3) { id } }"), 3);
        assert_eq!(cost("{ all { id tags } }"), 7 * (1 + 4 * 2));
        assert_eq!(
            measure(
                "query Q($n: Int!) { items(first: $n) { id } }",
                serde_json::json!({"n": 4})
            )
            .cost,
            4
        );
        assert_eq!(cost("query Q($n: Int! = 6) { items(first: $n) { id } }"), 6);
    }

    #[test]
    fn the_worst_case_takes_pages_sized_by_variables_at_their_maximum() {
        let model = CostModel::new(SDL, RULES).unwrap();
        let worst = |query: &str| {
            let document = async_graphql::parser::parse_query(query).unwrap();
            let (_, operation) = document.operations.iter().next().unwrap();
            model.measure_worst_case(&operation.node, &document)
        };
        // A default does not bound what a client may send.
        assert_eq!(
            worst("query Q($n: Int! = 6) { items(first: $n) { id } }"),
            50
        );
        assert_eq!(
            worst("query Q($n: Int!) { page(first: $n) { nodes { id } } }"),
            51
        );
        // Literal sizes and argument defaults are what they say.
        assert_eq!(worst("{ items(first: 3) { id } }"), 3);
        assert_eq!(worst("{ items { id } }"), 10);
    }

    #[test]
    fn aliases_are_more_calls_of_the_field() {
        assert_eq!(
            cost("{ a: items(first: 2) { id } b: items(first: 2) { id } }"),
            4
        );
    }

    #[test]
    fn connections_size_their_nodes_and_edges() {
        assert_eq!(
            cost("{ page(first: 4) { nodes { id } edges { node { id } } total } }"),
            1 + 4 + 4 * 2 + 10
        );
        // Through a fragment on the connection, too.
        assert_eq!(
            cost("{ page(first: 3) { ...P } } fragment P on ItemConnection { nodes { id } }"),
            1 + 3
        );
    }

    #[test]
    fn mutations_have_a_base_cost() {
        assert_eq!(
            cost("mutation { buy(id: 1) { id } }"),
            MUTATION_BASE_COST + 1
        );
    }

    #[test]
    fn entities_count_their_representations_and_the_dearest_type() {
        let query = "query E($r: [_Any!]!) { _entities(representations: $r) { \
                     ... on Item { shop { name } } ... on Shop { rating } } }";
        let measured = measure(query, serde_json::json!({"r": [{}, {}, {}]}));
        // Each element: 1 for the entity, then max(Item: shop 1, Shop: rating 3).
        assert_eq!(measured.cost, 3 * (1 + 3));
    }

    #[test]
    fn page_sizes_over_the_maximum_are_reported() {
        let measured = measure(
            "{ items(first: 80) { id } page(first: 60) { total } }",
            serde_json::json!({}),
        );
        assert_eq!(measured.page_size_exceeded, Some((50, 80)));
        assert_eq!(
            measure("{ items(first: 50) { id } }", serde_json::json!({})).page_size_exceeded,
            None
        );
    }

    #[test]
    fn fragment_bombs_cost_linear_time_and_saturate() {
        let mut query = String::from("{ items(first: 50) { ...F0 } }");
        for i in 0..64 {
            query.push_str(&format!(" fragment F{i} on Item {{ shop {{ ...G{i} }} ...F{n} ...F{n} }} fragment G{i} on Shop {{ name }}", n = i + 1));
        }
        query.push_str(" fragment F64 on Item { id }");
        assert_eq!(cost(&query), u64::MAX);
    }

    #[test]
    fn unknown_rules_and_undescribed_lists_are_reported() {
        assert!(CostModel::new(SDL, &[FieldRule::new("Query.nope").weight(1)]).is_err());
        let model = CostModel::new(SDL, &RULES[..1]).unwrap();
        assert!(model.undescribed_lists().contains(&"Query.all".to_string()));
        let model = CostModel::new(SDL, RULES).unwrap();
        assert!(
            model.undescribed_lists().is_empty(),
            "{:?}",
            model.undescribed_lists()
        );
    }
}
