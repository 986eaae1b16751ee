//! Rows as the store returns them: plain data, one struct per table (or query).

use sqlx::FromRow;

#[derive(Clone, Debug, FromRow)]
pub struct CategoryRow {
    pub id: i64,
    pub name: String,
    pub slug: String,
}

#[derive(Clone, Debug, FromRow)]
pub struct ProductRow {
    pub id: i64,
    pub sku: String,
    pub title: String,
    pub description: Option<String>,
    pub price_cents: i64,
    pub currency: String,
    pub category_id: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, FromRow)]
pub struct ImageRow {
    pub id: i64,
    pub product_id: i64,
    pub url: String,
    pub alt: Option<String>,
    pub position: i64,
}

#[derive(Clone, Debug, FromRow)]
pub struct InventoryRow {
    pub product_id: i64,
    pub warehouse: String,
    pub available: i64,
}

#[derive(Clone, Debug, FromRow)]
pub struct ReviewRow {
    pub id: i64,
    pub product_id: i64,
    pub customer_id: i64,
    pub rating: i64,
    pub body: String,
    pub created_at: String,
}

#[derive(Clone, Debug, FromRow)]
pub struct ReviewStatsRow {
    pub product_id: i64,
    pub review_count: i64,
    pub average_rating: Option<f64>,
}

#[derive(Clone, Debug, FromRow)]
pub struct CustomerRow {
    pub id: i64,
    pub name: String,
    pub email: String,
    /// 0 or 1: read through `CASE` so that SQLite integers and PostgreSQL
    /// booleans decode alike.
    pub verified: i64,
}

#[derive(Clone, Debug, FromRow)]
pub struct OrderRow {
    pub id: i64,
    pub number: String,
    pub customer_id: i64,
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, FromRow)]
pub struct OrderItemRow {
    pub id: i64,
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// A `(parent id, count)` pair from a grouped count.
#[derive(Clone, Debug, FromRow)]
pub struct CountRow {
    pub parent_id: i64,
    pub count: i64,
}

/// A document of the operator registry (`persisted_documents`).
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct PersistedDocumentRow {
    pub id: String,
    /// `''` when every client may use it.
    pub client: String,
    pub sha256: String,
    pub name: Option<String>,
    pub operation_type: String,
    pub body: String,
    pub cost: i64,
    pub registered_at: String,
}
