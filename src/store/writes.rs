//! Writes: placing, cancelling and moving orders; reviews; prices; stock.
//!
//! Each write is one transaction whose first statement writes, so SQLite takes
//! its write lock before reading anything (no lock upgrade to fail) and
//! PostgreSQL locks the rows it is about to change. Races are settled by the
//! database, not by check-then-act in Rust: a unique constraint decides which
//! of two concurrent orders with one idempotency key wins, a conditional
//! `UPDATE … WHERE available >= n` decides whether stock can be taken, and a
//! conditional `UPDATE … WHERE status = …` decides whether a status may move.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, FromRow, Transaction};

use super::notices::stock_changed;
use super::{now_timestamp, tags, Backend, InventoryRow, OrderRow, Sql, Store, StoreError};
use crate::events::Event;

/// One line of an order to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrderLine {
    pub product_id: i64,
    pub quantity: i64,
}

/// What `place_order` did.
#[derive(Clone, Debug)]
pub enum Placed {
    /// A new order, as committed.
    Created(OrderRow),
    /// The idempotency key was used before for the same lines: that order.
    Replayed(i64),
}

/// Why a write was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("not enough stock of product {product_id}")]
    OutOfStock { product_id: i64 },
    #[error("the idempotency key was used for a different order")]
    KeyReused,
    #[error("an order cannot move from {from} to {to}")]
    InvalidTransition { from: String, to: &'static str },
    #[error(
        "stock of product {product_id} in {warehouse} would fall below zero (it is {available})"
    )]
    NegativeStock {
        product_id: i64,
        warehouse: String,
        available: i64,
    },
    #[error("products in one order must share a currency")]
    MixedCurrencies,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        WriteError::Store(StoreError::Database(error))
    }
}

/// The fingerprint of an order's lines, independent of their order.
pub fn request_hash(lines: &[NewOrderLine]) -> String {
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|l| l.product_id);
    let canonical: Vec<String> = sorted
        .iter()
        .map(|l| format!("{}x{}", l.product_id, l.quantity))
        .collect();
    format!("{:x}", Sha256::digest(canonical.join(",").as_bytes()))
}

/// The status an order must be in to move to `to` (GRAPH.md's state machine).
pub fn allowed_predecessors(to: &str) -> &'static [&'static str] {
    match to {
        "PAID" => &["PENDING"],
        "SHIPPED" => &["PAID"],
        "DELIVERED" => &["SHIPPED"],
        "CANCELLED" => &["PENDING", "PAID"],
        _ => &[],
    }
}

#[derive(FromRow)]
struct PriceRow {
    id: i64,
    price_cents: i64,
    currency: String,
}

#[derive(FromRow)]
struct StockRow {
    warehouse: String,
    available: i64,
}

#[derive(FromRow)]
struct AllocationRow {
    product_id: i64,
    warehouse: String,
    quantity: i64,
}

fn is_unique_violation(error: &WriteError) -> bool {
    matches!(
        error,
        WriteError::Store(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation()
    )
}

impl Store {
    async fn tx_execute(
        &self,
        tx: &mut Transaction<'static, Any>,
        sql: Sql,
    ) -> Result<u64, WriteError> {
        self.count_statement();
        let (text, args) = sql.finish();
        Ok(sqlx::query_with(&text, args)
            .execute(&mut **tx)
            .await?
            .rows_affected())
    }

    async fn tx_fetch_all<T>(
        &self,
        tx: &mut Transaction<'static, Any>,
        sql: Sql,
    ) -> Result<Vec<T>, WriteError>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        self.count_statement();
        let (text, args) = sql.finish();
        Ok(sqlx::query_as_with(&text, args)
            .fetch_all(&mut **tx)
            .await?)
    }

    /// Places an order for `customer_id`, or returns the order already placed
    /// with `key`. Prices come from the database; stock is taken from the
    /// fullest warehouses first, all lines or none.
    pub async fn place_order(
        &self,
        customer_id: i64,
        key: &str,
        lines: &[NewOrderLine],
    ) -> Result<Placed, WriteError> {
        let hash = request_hash(lines);
        // Stock of these products may change (a refused order changes nothing,
        // and a purge of too much is harmless).
        self.tags
            .wrote(lines.iter().map(|line| tags::inventory(line.product_id)));
        match self.insert_order(customer_id, key, &hash, lines).await {
            Err(error) if is_unique_violation(&error) => {
                // Another call with this key committed first (or earlier):
                // its order is the answer, if it was the same order.
                let mut sql = Sql::new("SELECT id, request_hash FROM orders WHERE customer_id = ");
                let c = sql.bind(customer_id);
                let k = sql.bind(key.to_string());
                sql.push(&format!("{c} AND idempotency_key = {k}"));
                let existing: Vec<(i64, Option<String>)> = self.fetch_all(sql).await?;
                match existing.into_iter().next() {
                    Some((id, Some(previous))) if previous == hash => Ok(Placed::Replayed(id)),
                    Some(_) => Err(WriteError::KeyReused),
                    None => Err(error),
                }
            }
            other => other,
        }
    }

    async fn insert_order(
        &self,
        customer_id: i64,
        key: &str,
        hash: &str,
        lines: &[NewOrderLine],
    ) -> Result<Placed, WriteError> {
        let now = now_timestamp();
        // Prices are read before the key is claimed (the total goes into
        // the claim), in a transaction that can write what it read.
        let mut tx = self.begin_write().await?;

        let mut sorted = lines.to_vec();
        sorted.sort_by_key(|l| l.product_id);
        let ids: Vec<i64> = sorted.iter().map(|l| l.product_id).collect();
        let mut sql = Sql::new("");
        let list = sql.bind_list(&ids);
        sql.push(&format!(
            "SELECT id, price_cents, currency FROM products WHERE id IN ({list})"
        ));
        let prices: Vec<PriceRow> = self.tx_fetch_all(&mut tx, sql).await?;
        let mut currency = None;
        let mut total = 0_i64;
        let mut priced = Vec::with_capacity(sorted.len());
        for line in &sorted {
            let price =
                prices
                    .iter()
                    .find(|p| p.id == line.product_id)
                    .ok_or(WriteError::NotFound {
                        what: "product",
                        id: line.product_id,
                    })?;
            if *currency.get_or_insert(price.currency.clone()) != price.currency {
                return Err(WriteError::MixedCurrencies);
            }
            total += price.price_cents * line.quantity;
            priced.push((*line, price.price_cents));
        }
        let currency = currency.unwrap_or_else(|| "USD".into());

        // Claim the key: the unique (customer_id, idempotency_key) constraint
        // makes a concurrent duplicate wait here, then fail. The order's
        // number is made from its id in the same statement.
        let mut sql = Sql::new("");
        let values = [
            sql.bind(customer_id),
            "'PENDING'".to_string(),
            sql.bind(total),
            sql.bind(currency.clone()),
            sql.bind(key.to_string()),
            sql.bind(hash.to_string()),
            sql.bind(now.clone()),
            sql.bind(now.clone()),
        ]
        .join(", ");
        let columns = "id, number, customer_id, status, total_cents, currency, \
                       idempotency_key, request_hash, created_at, updated_at";
        sql.push(&match self.backend {
            Backend::Postgres => format!(
                "WITH next AS (SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id) \
                 INSERT INTO orders ({columns}) SELECT next.id, 'CG-' || CASE \
                 WHEN next.id < 100000000 THEN lpad(next.id::text, 8, '0') \
                 ELSE next.id::text END, {values} FROM next RETURNING id, number"
            ),
            // The id SQLite would choose (an INTEGER PRIMARY KEY without
            // AUTOINCREMENT): the writer holds the database's write lock.
            Backend::Sqlite => format!(
                "WITH next AS (SELECT coalesce(max(id), 0) + 1 AS id FROM orders) \
                 INSERT INTO orders ({columns}) SELECT next.id, 'CG-' || \
                 printf('%08d', next.id), {values} FROM next RETURNING id, number"
            ),
        });
        let (order_id, number): (i64, String) = self
            .tx_fetch_all(&mut tx, sql)
            .await?
            .into_iter()
            .next()
            .ok_or(WriteError::Store(StoreError::Config(
                "INSERT returned no id".into(),
            )))?;

        let mut items = Sql::new(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ",
        );
        let mut allocations = Sql::new(
            "INSERT INTO stock_allocations (order_id, product_id, warehouse, quantity) VALUES ",
        );
        let mut first_allocation = true;
        for (i, (line, unit_price)) in priced.iter().enumerate() {
            for (warehouse, taken) in self.take_stock(&mut tx, *line).await? {
                let row = [
                    allocations.bind(order_id),
                    allocations.bind(line.product_id),
                    allocations.bind(warehouse),
                    allocations.bind(taken),
                ];
                let sep = if first_allocation { "" } else { ", " };
                first_allocation = false;
                allocations.push(&format!("{sep}({})", row.join(", ")));
            }
            let row = [
                items.bind(order_id),
                items.bind(line.product_id),
                items.bind(line.quantity),
                items.bind(*unit_price),
            ];
            let sep = if i == 0 { "" } else { ", " };
            items.push(&format!("{sep}({})", row.join(", ")));
        }
        self.tx_execute(&mut tx, items).await?;
        self.tx_execute(&mut tx, allocations).await?;

        let events: Vec<Event> = sorted
            .iter()
            .flat_map(|line| stock_changed(line.product_id))
            .collect();
        self.notify(&mut tx, &events, false).await?;
        tx.commit().await?;
        self.committed(&events);
        Ok(Placed::Created(OrderRow {
            id: order_id,
            number,
            customer_id,
            status: "PENDING".into(),
            total_cents: total,
            currency,
            created_at: now.clone(),
            updated_at: now,
        }))
    }

    /// Takes `line.quantity` units from the product's warehouses, fullest
    /// first. Each decrement is conditional on the stock still being there,
    /// so concurrent orders can never drive it below zero. On PostgreSQL the
    /// product's stock rows are locked first (`FOR UPDATE`, by warehouse
    /// name), so what is read is what is taken, and concurrent writers lock
    /// rows in one order (products by id, then warehouses by name) and
    /// cannot deadlock; SQLite's write lock already serialises writers.
    async fn take_stock(
        &self,
        tx: &mut Transaction<'static, Any>,
        line: NewOrderLine,
    ) -> Result<Vec<(String, i64)>, WriteError> {
        let mut sql = Sql::new("SELECT warehouse, available FROM inventory WHERE product_id = ");
        let p = sql.bind(line.product_id);
        sql.push(&format!("{p} AND available > 0 ORDER BY warehouse"));
        if self.backend == Backend::Postgres {
            sql.push(" FOR UPDATE");
        }
        let mut stock: Vec<StockRow> = self.tx_fetch_all(tx, sql).await?;
        // Stable: equally full warehouses stay in name order.
        stock.sort_by_key(|row| std::cmp::Reverse(row.available));
        let mut remaining = line.quantity;
        let mut taken = Vec::new();
        for row in stock {
            if remaining == 0 {
                break;
            }
            let take = remaining.min(row.available);
            let mut sql = Sql::new("UPDATE inventory SET available = available - ");
            let t = sql.bind(take);
            let p = sql.bind(line.product_id);
            let w = sql.bind(row.warehouse.clone());
            sql.push(&format!(
                "{t} WHERE product_id = {p} AND warehouse = {w} AND available >= {t}"
            ));
            if self.tx_execute(tx, sql).await? == 1 {
                remaining -= take;
                taken.push((row.warehouse, take));
            }
        }
        if remaining > 0 {
            return Err(WriteError::OutOfStock {
                product_id: line.product_id,
            });
        }
        Ok(taken)
    }

    /// Moves an order to `to` if the state machine allows it from its current
    /// status; a cancellation puts the order's stock back.
    pub async fn set_order_status(
        &self,
        order_id: i64,
        to: &'static str,
    ) -> Result<(), WriteError> {
        let from = allowed_predecessors(to);
        let mut tx = self.begin().await?;
        let mut sql = Sql::new("UPDATE orders SET status = ");
        let status = sql.bind(to.to_string());
        let now = sql.bind(now_timestamp());
        let id = sql.bind(order_id);
        let mut allowed: Vec<String> = Vec::new();
        for s in from {
            allowed.push(sql.bind(s.to_string()));
        }
        let allowed = if allowed.is_empty() {
            "NULL".to_string()
        } else {
            allowed.join(", ")
        };
        sql.push(&format!(
            "{status}, updated_at = {now} WHERE id = {id} AND status IN ({allowed})"
        ));
        if self.tx_execute(&mut tx, sql).await? == 0 {
            drop(tx);
            let current = self.orders_by_ids(&[order_id]).await?;
            return Err(match current.into_iter().next() {
                None => WriteError::NotFound {
                    what: "order",
                    id: order_id,
                },
                Some(order) => WriteError::InvalidTransition {
                    from: order.status,
                    to,
                },
            });
        }
        let mut events = vec![Event::OrderStatusChanged { order_id }];
        if to == "CANCELLED" {
            let mut sql = Sql::new(
                "SELECT product_id, warehouse, quantity FROM stock_allocations WHERE order_id = ",
            );
            let id = sql.bind(order_id);
            // The lock order of `take_stock`: products by id, warehouses by name.
            sql.push(&format!("{id} ORDER BY product_id, warehouse"));
            let allocations: Vec<AllocationRow> = self.tx_fetch_all(&mut tx, sql).await?;
            self.tags
                .wrote(allocations.iter().map(|a| tags::inventory(a.product_id)));
            for allocation in allocations {
                if !events.contains(&Event::InventoryChanged {
                    product_id: allocation.product_id,
                }) {
                    events.extend(stock_changed(allocation.product_id));
                }
                let mut sql = Sql::new("UPDATE inventory SET available = available + ");
                let q = sql.bind(allocation.quantity);
                let p = sql.bind(allocation.product_id);
                let w = sql.bind(allocation.warehouse);
                sql.push(&format!("{q} WHERE product_id = {p} AND warehouse = {w}"));
                self.tx_execute(&mut tx, sql).await?;
            }
        }
        self.notify(&mut tx, &events, false).await?;
        tx.commit().await?;
        self.committed(&events);
        Ok(())
    }

    /// Adds a review by `customer_id`; returns its id.
    pub async fn add_review(
        &self,
        customer_id: i64,
        product_id: i64,
        rating: i64,
        body: &str,
    ) -> Result<i64, WriteError> {
        self.tags.wrote([tags::reviews(product_id)]);
        let mut sql = Sql::new(
            "INSERT INTO reviews (product_id, customer_id, rating, body, created_at) SELECT ",
        );
        let values = [
            sql.bind(product_id),
            sql.bind(customer_id),
            sql.bind(rating),
            sql.bind(body.to_string()),
            sql.bind(now_timestamp()),
        ];
        let p = sql.bind(product_id);
        sql.push(&format!(
            "{} WHERE EXISTS (SELECT 1 FROM products WHERE id = {p}) RETURNING id",
            values.join(", ")
        ));
        let mut tx = self.begin().await?;
        let rows: Vec<(i64,)> = self.tx_fetch_all(&mut tx, sql).await?;
        let id = rows
            .into_iter()
            .next()
            .map(|(id,)| id)
            .ok_or(WriteError::NotFound {
                what: "product",
                id: product_id,
            })?;
        // No subscription watches reviews; the notice purges caches.
        self.notify(&mut tx, &[], false).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn set_product_price(&self, product_id: i64, cents: i64) -> Result<(), WriteError> {
        self.tags
            .wrote([tags::product(product_id), tags::PRODUCTS.to_string()]);
        let mut sql = Sql::new("UPDATE products SET price_cents = ");
        let c = sql.bind(cents);
        let now = sql.bind(now_timestamp());
        let id = sql.bind(product_id);
        sql.push(&format!("{c}, updated_at = {now} WHERE id = {id}"));
        let mut tx = self.begin().await?;
        if self.tx_execute(&mut tx, sql).await? == 0 {
            return Err(WriteError::NotFound {
                what: "product",
                id: product_id,
            });
        }
        let events = [Event::ProductUpdated { product_id }];
        self.notify(&mut tx, &events, false).await?;
        tx.commit().await?;
        self.committed(&events);
        Ok(())
    }

    /// Changes a warehouse's stock by `delta`; a warehouse not stocked yet is
    /// created by a positive delta. Stock never falls below zero.
    pub async fn adjust_inventory(
        &self,
        product_id: i64,
        warehouse: &str,
        delta: i64,
    ) -> Result<InventoryRow, WriteError> {
        self.tags.wrote([tags::inventory(product_id)]);
        let mut tx = self.begin().await?;
        let mut sql = Sql::new("UPDATE inventory SET available = available + ");
        let d = sql.bind(delta);
        let p = sql.bind(product_id);
        let w = sql.bind(warehouse.to_string());
        sql.push(&format!(
            "{d} WHERE product_id = {p} AND warehouse = {w} AND available + {d} >= 0"
        ));
        if self.tx_execute(&mut tx, sql).await? == 0 {
            let mut sql =
                Sql::new("SELECT warehouse, available FROM inventory WHERE product_id = ");
            let p = sql.bind(product_id);
            let w = sql.bind(warehouse.to_string());
            sql.push(&format!("{p} AND warehouse = {w}"));
            let existing: Vec<StockRow> = self.tx_fetch_all(&mut tx, sql).await?;
            if let Some(row) = existing.into_iter().next() {
                return Err(WriteError::NegativeStock {
                    product_id,
                    warehouse: warehouse.to_string(),
                    available: row.available,
                });
            }
            if delta < 0 {
                return Err(WriteError::NegativeStock {
                    product_id,
                    warehouse: warehouse.to_string(),
                    available: 0,
                });
            }
            let mut sql =
                Sql::new("INSERT INTO inventory (product_id, warehouse, available) SELECT ");
            let p = sql.bind(product_id);
            let w = sql.bind(warehouse.to_string());
            let d = sql.bind(delta);
            // A concurrent call may create the same warehouse first: then
            // this adds to it (the same text on SQLite and PostgreSQL).
            sql.push(&format!(
                "{p}, {w}, {d} WHERE EXISTS (SELECT 1 FROM products WHERE id = {p}) \
                 ON CONFLICT (product_id, warehouse) \
                 DO UPDATE SET available = inventory.available + excluded.available"
            ));
            if self.tx_execute(&mut tx, sql).await? == 0 {
                return Err(WriteError::NotFound {
                    what: "product",
                    id: product_id,
                });
            }
        }
        let mut sql =
            Sql::new("SELECT product_id, warehouse, available FROM inventory WHERE product_id = ");
        let p = sql.bind(product_id);
        let w = sql.bind(warehouse.to_string());
        sql.push(&format!("{p} AND warehouse = {w}"));
        let row: Vec<InventoryRow> = self.tx_fetch_all(&mut tx, sql).await?;
        let events = stock_changed(product_id);
        self.notify(&mut tx, &events, false).await?;
        tx.commit().await?;
        self.committed(&events);
        row.into_iter().next().ok_or(WriteError::NotFound {
            what: "product",
            id: product_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_hash_ignores_line_order() {
        let a = [
            NewOrderLine {
                product_id: 1,
                quantity: 2,
            },
            NewOrderLine {
                product_id: 5,
                quantity: 1,
            },
        ];
        let b = [a[1], a[0]];
        assert_eq!(request_hash(&a), request_hash(&b));
        let c = [
            NewOrderLine {
                product_id: 1,
                quantity: 3,
            },
            a[1],
        ];
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    #[test]
    fn the_state_machine_matches_graph_md() {
        assert_eq!(allowed_predecessors("PAID"), ["PENDING"]);
        assert_eq!(allowed_predecessors("SHIPPED"), ["PAID"]);
        assert_eq!(allowed_predecessors("DELIVERED"), ["SHIPPED"]);
        assert_eq!(allowed_predecessors("CANCELLED"), ["PENDING", "PAID"]);
        assert!(allowed_predecessors("PENDING").is_empty());
    }
}
