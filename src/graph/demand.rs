//! What each field of this schema costs (see [`crate::limits::cost`] for the
//! model): the list sizes and the weights that differ from the defaults. The
//! server enforces its cost limit with this table, and the subgraph SDL
//! prints the same table as `@listSize` and `@cost`, so a router's demand
//! control computes the same figure.

use crate::limits::cost::FieldRule;

use super::pagination::{MAX_IMAGES, MAX_PAGE_SIZE};

/// Categories are few and made by operators; an estimate, not a page.
const ASSUMED_CATEGORIES: u64 = 50;
/// Warehouses a product is stocked in (the demo data has 2).
const ASSUMED_WAREHOUSES: u64 = 5;
/// Lines of an order: at most 100 may be placed; most orders have a handful.
const ASSUMED_ORDER_LINES: u64 = 10;

const PAGE: u64 = MAX_PAGE_SIZE as u64;

pub const RULES: &[FieldRule] = &[
    FieldRule::new("Query.products").connection("first", PAGE),
    FieldRule::new("Query.orders").connection("first", PAGE),
    FieldRule::new("Query.categories").assumed_size(ASSUMED_CATEGORIES),
    FieldRule::new("Query._entities").representations(),
    FieldRule::new("Category.products").connection("first", PAGE),
    FieldRule::new("Customer.orders").connection("first", PAGE),
    FieldRule::new("Product.inventory").assumed_size(ASSUMED_WAREHOUSES),
    FieldRule::new("Product.images").sliced_by("first", MAX_IMAGES as u64),
    FieldRule::new("Product.reviews").sliced_by("first", PAGE),
    // Aggregates over a product's reviews.
    FieldRule::new("Product.reviewCount").weight(1),
    FieldRule::new("Product.averageRating").weight(1),
    FieldRule::new("Order.items").assumed_size(ASSUMED_ORDER_LINES),
    // Each result of the subscription is one product's stock.
    FieldRule::new("Subscription.inventoryChanged").assumed_size(ASSUMED_WAREHOUSES),
    // A COUNT over the whole listing, one more statement.
    FieldRule::new("ProductConnection.totalCount").weight(10),
    FieldRule::new("OrderConnection.totalCount").weight(10),
];

/// `@cost` and `@listSize` for the field at `coordinate`, as SDL text
/// (empty when the field keeps the defaults).
pub fn directives(coordinate: &str) -> String {
    use crate::limits::cost::ListSize;
    let Some(rule) = RULES.iter().find(|r| r.coordinate == coordinate) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(weight) = rule.weight {
        out.push_str(&format!(" @cost(weight: {weight})"));
    }
    match rule.size {
        Some(ListSize::Assumed(size)) => out.push_str(&format!(" @listSize(assumedSize: {size})")),
        Some(ListSize::Slicing {
            argument,
            sized_fields,
            ..
        }) => {
            out.push_str(&format!(
                " @listSize(slicingArguments: [\"{argument}\"], requireOneSlicingArgument: false"
            ));
            if !sized_fields.is_empty() {
                let fields: Vec<String> = sized_fields.iter().map(|f| format!("\"{f}\"")).collect();
                out.push_str(&format!(", sizedFields: [{}]", fields.join(", ")));
            }
            out.push(')');
        }
        // `_entities` is the router's own field: it is not printed.
        Some(ListSize::Representations) | None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use async_graphql::Variables;

    fn cost(query: &str) -> u64 {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(serde_json::json!({ "id": "1", "c": "1" }));
        crate::graph::cost_model()
            .measure(&document, None, &variables)
            .cost
    }

    /// The figures the README quotes for the workloads of GRAPH.md, all well
    /// inside the default limit of 5,000.
    #[test]
    fn the_workloads_cost_what_the_readme_says() {
        // product 1, price 1, 5 warehouses, 5 images, 10 × (review 1 + author 1)
        let w1 = "query($id: ID!) { product(id: $id) { title price { amount currency } \
            inventory { available warehouse } images(first: 5) { url alt } \
            reviews(first: 10) { rating author { name verified } text } } }";
        assert_eq!(cost(w1), 1 + 1 + 5 + 5 + 10 * 2);
        // 1 + 100 × (order 1 + customer 1 + 10 lines × (line 1 + product 1 + price 1))
        let w2 = "{ orders(first: 100) { nodes { id customer { name } items { product { title \
            price { amount currency } } } } } }";
        assert_eq!(cost(w2), 1 + 100 * (2 + 10 * 3));
        // 1 + 20 × (product 1 + price 1 + averageRating 1 + 5 warehouses) + pageInfo 1
        let w3 = "query($c: ID) { products(first: 20, filter: { categoryId: $c }) { nodes { id \
            title price { amount currency } averageRating inventory { available } } \
            pageInfo { endCursor hasNextPage } } }";
        assert_eq!(cost(w3), 1 + 20 * 8 + 1);
    }
}
