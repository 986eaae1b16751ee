//! Order reads. Orders list newest first (id descending); the id is the keyset.

use super::{CountRow, OrderItemRow, OrderRow, Sql, Store, StoreError};

const ORDER_COLUMNS: &str =
    "o.id, o.number, o.customer_id, o.status, o.total_cents, o.currency, o.created_at, o.updated_at";

/// One page of an order listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrderPage {
    /// Only orders in this status (`PENDING`, …) when given.
    pub status: Option<String>,
    /// Only orders older than this id (the cursor) when given.
    pub before_id: Option<i64>,
    /// Rows to fetch; callers ask one more than they show to learn `hasNextPage`.
    pub limit: i64,
}

impl OrderPage {
    fn push_conditions(&self, sql: &mut Sql) {
        push_status(sql, &self.status);
        if let Some(id) = self.before_id {
            let p = sql.bind(id);
            sql.push(&format!(" AND o.id < {p}"));
        }
    }
}

fn push_status(sql: &mut Sql, status: &Option<String>) {
    if let Some(status) = status {
        let p = sql.bind(status.clone());
        sql.push(&format!(" AND o.status = {p}"));
    }
}

impl Store {
    pub async fn orders_by_ids(&self, ids: &[i64]) -> Result<Vec<OrderRow>, StoreError> {
        self.fetch_in_chunks(ids, |sql, list| {
            sql.push(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id IN ({list})"
            ));
        })
        .await
    }

    pub async fn order_items_by_orders(
        &self,
        order_ids: &[i64],
    ) -> Result<Vec<OrderItemRow>, StoreError> {
        self.fetch_in_chunks(order_ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, order_id, product_id, quantity, unit_price_cents FROM order_items \
             WHERE order_id IN ({list}) ORDER BY order_id, id"
            ));
        })
        .await
    }

    /// One page of all orders (the admin listing), newest first.
    pub async fn orders_page(&self, page: &OrderPage) -> Result<Vec<OrderRow>, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE 1 = 1"));
        page.push_conditions(&mut sql);
        let limit = sql.bind(page.limit);
        sql.push(&format!(" ORDER BY o.id DESC LIMIT {limit}"));
        self.fetch_all(sql).await
    }

    /// The same page of orders for each customer, in one statement.
    pub async fn orders_pages_by_customer(
        &self,
        customer_ids: &[i64],
        page: &OrderPage,
    ) -> Result<Vec<OrderRow>, StoreError> {
        self.fetch_in_chunks(customer_ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, number, customer_id, status, total_cents, currency, created_at, \
             updated_at FROM (SELECT {ORDER_COLUMNS}, ROW_NUMBER() OVER \
             (PARTITION BY o.customer_id ORDER BY o.id DESC) AS rn FROM orders o \
             WHERE o.customer_id IN ({list})"
            ));
            page.push_conditions(sql);
            let limit = sql.bind(page.limit);
            sql.push(&format!(
                ") AS t WHERE t.rn <= {limit} ORDER BY t.customer_id, t.rn"
            ));
        })
        .await
    }

    pub async fn orders_count(&self, status: &Option<String>) -> Result<i64, StoreError> {
        let mut sql = Sql::new("SELECT COUNT(*) FROM orders o WHERE 1 = 1");
        push_status(&mut sql, status);
        let (count,): (i64,) = self.fetch_one(sql).await?;
        Ok(count)
    }

    pub async fn orders_count_by_customer(
        &self,
        customer_ids: &[i64],
        status: &Option<String>,
    ) -> Result<Vec<CountRow>, StoreError> {
        self.fetch_in_chunks(customer_ids, |sql, list| {
            sql.push(&format!(
                "SELECT o.customer_id AS parent_id, COUNT(*) AS count FROM orders o \
             WHERE o.customer_id IN ({list})"
            ));
            push_status(sql, status);
            sql.push(" GROUP BY o.customer_id");
        })
        .await
    }
}
