//! Writes: placing, cancelling and moving orders; reviews; prices; stock.
//!
//! Each write is one transaction that locks what it is about to change
//! before it reads it: an order opens with SQLite's write lock (`BEGIN
//! IMMEDIATE`) or locks its stock rows on PostgreSQL (`FOR UPDATE`), and
//! the other writes start by writing. Races are settled by the database, not
//! by check-then-act in Rust: a unique constraint decides which of two
//! concurrent orders with one idempotency key wins, a locked read decides
//! whether stock can be taken, a conditional `UPDATE` (`available + n` at
//! least zero) whether stock may be adjusted, and a conditional `UPDATE …
//! WHERE status = …` whether a status may move.

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
    available: i64,
}

/// A product's stock in one warehouse, as read before an order takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StockLevel {
    product_id: i64,
    warehouse: String,
    available: i64,
}

/// What an order costs and takes, worked out before anything is written.
#[derive(Debug, PartialEq, Eq)]
struct OrderPlan {
    currency: String,
    total: i64,
    /// Each line with its unit price, by product id.
    priced: Vec<(NewOrderLine, i64)>,
    /// (product, warehouse, units taken), one per pair, by product then warehouse.
    taken: Vec<(i64, String, i64)>,
}

/// Prices `sorted` (lines by product id) and takes their stock from the
/// fullest warehouses first (equally full ones by name), all lines or none.
/// Every product must exist and share one currency.
fn plan_order(
    sorted: &[NewOrderLine],
    prices: &[PriceRow],
    stock: &[StockLevel],
) -> Result<OrderPlan, WriteError> {
    // Every product must exist before currencies are compared (the order
    // of refusals PostgreSQL's single statement also follows).
    let mut priced = Vec::with_capacity(sorted.len());
    for line in sorted {
        let price =
            prices
                .iter()
                .find(|p| p.id == line.product_id)
                .ok_or(WriteError::NotFound {
                    what: "product",
                    id: line.product_id,
                })?;
        priced.push((*line, price));
    }
    let currency = priced.first().map_or("USD", |(_, p)| p.currency.as_str());
    if priced.iter().any(|(_, p)| p.currency != currency) {
        return Err(WriteError::MixedCurrencies);
    }
    let total = priced
        .iter()
        .map(|(line, p)| p.price_cents * line.quantity)
        .sum();
    let priced: Vec<(NewOrderLine, i64)> = priced
        .iter()
        .map(|(line, p)| (*line, p.price_cents))
        .collect();
    let mut left: Vec<StockLevel> = stock.to_vec();
    let mut taken: Vec<(i64, String, i64)> = Vec::new();
    for line in sorted {
        let mut levels: Vec<&mut StockLevel> = left
            .iter_mut()
            .filter(|s| s.product_id == line.product_id && s.available > 0)
            .collect();
        // Stable: equally full warehouses stay in name order.
        levels.sort_by_key(|s| std::cmp::Reverse(s.available));
        let mut remaining = line.quantity;
        for level in levels {
            if remaining == 0 {
                break;
            }
            let take = remaining.min(level.available);
            level.available -= take;
            remaining -= take;
            match taken
                .iter_mut()
                .find(|(p, w, _)| *p == line.product_id && *w == level.warehouse)
            {
                Some((_, _, units)) => *units += take,
                None => taken.push((line.product_id, level.warehouse.clone(), take)),
            }
        }
        if remaining > 0 {
            return Err(WriteError::OutOfStock {
                product_id: line.product_id,
            });
        }
    }
    taken.sort();
    Ok(OrderPlan {
        currency: currency.to_string(),
        total,
        priced,
        taken,
    })
}

impl OrderPlan {
    /// Binds `(product, quantity, unit price)` rows for `VALUES`, each led
    /// by `order_id` when it is known.
    fn item_rows(&self, sql: &mut Sql, order_id: Option<i64>) -> String {
        value_rows(sql, order_id, &self.priced, |sql, (line, unit_price)| {
            [
                sql.bind(line.product_id),
                sql.bind(line.quantity),
                sql.bind(*unit_price),
            ]
        })
    }

    /// Binds `(product, warehouse, units)` rows for `VALUES`, each led by
    /// `order_id` when it is known.
    fn allocation_rows(&self, sql: &mut Sql, order_id: Option<i64>) -> String {
        value_rows(
            sql,
            order_id,
            &self.taken,
            |sql, (product_id, warehouse, units)| {
                [
                    sql.bind(*product_id),
                    sql.bind(warehouse.clone()),
                    sql.bind(*units),
                ]
            },
        )
    }
}

/// Binds one `VALUES` row per item (`bind` gives its placeholders), each
/// led by `order_id` when it is known: `($1, $2, $3), ($4, …)`.
fn value_rows<T, const N: usize>(
    sql: &mut Sql,
    order_id: Option<i64>,
    items: &[T],
    bind: impl Fn(&mut Sql, &T) -> [String; N],
) -> String {
    let rows: Vec<String> = items
        .iter()
        .map(|item| {
            let mut row: Vec<String> = order_id.iter().map(|id| sql.bind(*id)).collect();
            row.extend(bind(sql, item));
            format!("({})", row.join(", "))
        })
        .collect();
    rows.join(", ")
}

/// The one row an `INSERT … RETURNING` gave back.
fn returned<T>(rows: Vec<T>) -> Result<T, WriteError> {
    rows.into_iter()
        .next()
        .ok_or(WriteError::Store(StoreError::Config(
            "INSERT returned no id".into(),
        )))
}

/// The columns an order is inserted with, `id` and `number` first (see
/// [`NewOrder::values`]).
const ORDER_COLUMNS: &str = "id, number, customer_id, status, total_cents, currency, \
                             idempotency_key, request_hash, created_at, updated_at";

/// An order about to be placed: who places it, with which key, and when.
struct NewOrder<'a> {
    customer_id: i64,
    key: &'a str,
    hash: &'a str,
    now: &'a str,
}

/// What placing an order wrote: the order's id, number, total and currency.
struct Written {
    id: i64,
    number: String,
    total: i64,
    currency: String,
}

impl NewOrder<'_> {
    /// Binds the values of [`ORDER_COLUMNS`] after `id` and `number`, for
    /// an order that costs what `plan` says.
    fn values(&self, sql: &mut Sql, plan: &OrderPlan) -> String {
        [
            sql.bind(self.customer_id),
            "'PENDING'".to_string(),
            sql.bind(plan.total),
            sql.bind(plan.currency.clone()),
            sql.bind(self.key.to_string()),
            sql.bind(self.hash.to_string()),
            sql.bind(self.now.to_string()),
            sql.bind(self.now.to_string()),
        ]
        .join(", ")
    }
}

#[derive(FromRow)]
struct AllocationRow {
    product_id: i64,
    warehouse: String,
    quantity: i64,
}

/// An order refused for what it asks (not for a failure of the database).
fn is_refusal(error: &WriteError) -> bool {
    matches!(
        error,
        WriteError::NotFound { .. } | WriteError::OutOfStock { .. } | WriteError::MixedCurrencies
    )
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
        let refused = match self.insert_order(customer_id, key, &hash, lines).await {
            Ok(Some(placed)) => return Ok(placed),
            // The key was claimed first (PostgreSQL's `ON CONFLICT`).
            Ok(None) => None,
            // SQLite's unique index said the same. A refusal is checked
            // against the key too: a retry of an order that took the last
            // units finds none left, but has its answer.
            Err(error) if is_unique_violation(&error) || is_refusal(&error) => Some(error),
            Err(error) => return Err(error),
        };
        // Another call with this key committed first (or earlier): its order
        // is the answer, if it was the same order.
        let mut sql = Sql::new("SELECT id, request_hash FROM orders WHERE customer_id = ");
        let c = sql.bind(customer_id);
        let k = sql.bind(key.to_string());
        sql.push(&format!("{c} AND idempotency_key = {k}"));
        let existing: Vec<(i64, Option<String>)> = self.fetch_all(sql).await?;
        match (existing.into_iter().next(), refused) {
            (Some((id, Some(previous))), _) if previous == hash => Ok(Placed::Replayed(id)),
            (Some(_), _) => Err(WriteError::KeyReused),
            (None, Some(error)) => Err(error),
            (None, None) => Err(WriteError::Store(StoreError::Config(
                "the idempotency key was claimed by no order".into(),
            ))),
        }
    }

    /// Places the order, or returns `None` when `key` was claimed first (by
    /// a committed order, or one that commits while this one waits).
    async fn insert_order(
        &self,
        customer_id: i64,
        key: &str,
        hash: &str,
        lines: &[NewOrderLine],
    ) -> Result<Option<Placed>, WriteError> {
        let now = now_timestamp();
        let mut sorted = lines.to_vec();
        sorted.sort_by_key(|l| l.product_id);
        let events: Vec<Event> = sorted
            .iter()
            .flat_map(|line| stock_changed(line.product_id))
            .collect();
        let order = NewOrder {
            customer_id,
            key,
            hash,
            now: &now,
        };
        let placed = match self.backend {
            Backend::Postgres => self.place_order_postgres(&order, &sorted, &events).await?,
            Backend::Sqlite => Some(self.place_order_sqlite(&order, &sorted).await?),
        };
        let Some(written) = placed else {
            return Ok(None);
        };
        self.committed(&events);
        Ok(Some(Placed::Created(OrderRow {
            id: written.id,
            number: written.number,
            customer_id,
            status: "PENDING".into(),
            total_cents: written.total,
            currency: written.currency,
            created_at: now.clone(),
            updated_at: now,
        })))
    }

    /// Places an order in one statement, run on its own (its implicit
    /// transaction is the order's): it locks the products' stock rows
    /// (`FOR UPDATE`, products by id, then warehouses by name: the lock
    /// order cancellations use), decides what to take as [`plan_order`]
    /// does (fullest warehouse first, equally full ones by name), and only
    /// if every product exists, shares one currency and is in stock, writes
    /// the order (claiming the key; its number is made from its id), its
    /// items, its allocations, the stock it takes and the notice to other
    /// replicas. One round trip, where a transaction would take four.
    ///
    /// A row locked after waiting for another order is read as that order
    /// left it (PostgreSQL re-reads a row it had to wait for), so what is
    /// planned is what is taken. `None`: the key was claimed first.
    async fn place_order_postgres(
        &self,
        order: &NewOrder<'_>,
        sorted: &[NewOrderLine],
        events: &[Event],
    ) -> Result<Option<Written>, WriteError> {
        // Each product once, with all it is wanted for (`sorted` is by product).
        let mut wanted: Vec<(i64, i64)> = Vec::with_capacity(sorted.len());
        for line in sorted {
            match wanted.last_mut() {
                Some((product, quantity)) if *product == line.product_id => {
                    *quantity += line.quantity
                }
                _ => wanted.push((line.product_id, line.quantity)),
            }
        }
        let ids: Vec<i64> = wanted.iter().map(|(product, _)| *product).collect();
        let mut sql = Sql::new("");
        let lines = value_rows(&mut sql, None, sorted, |sql, line| {
            [sql.bind(line.product_id), sql.bind(line.quantity)]
        });
        let wanted = value_rows(&mut sql, None, &wanted, |sql, (product, quantity)| {
            [sql.bind(*product), sql.bind(*quantity)]
        });
        let list = sql.bind_list(&ids);
        let customer = sql.bind(order.customer_id);
        let key = sql.bind(order.key.to_string());
        let hash = sql.bind(order.hash.to_string());
        let now = sql.bind(order.now.to_string());
        let notices = self.notices_sql(&mut sql, events)?;
        sql.push(&format!(
            "WITH lines (product_id, quantity) AS (VALUES {lines}), \
             wanted (product_id, quantity) AS (VALUES {wanted}), \
             priced AS (SELECT id, price_cents, currency FROM products WHERE id IN ({list})), \
             locked AS MATERIALIZED (SELECT product_id, warehouse, available FROM inventory \
             WHERE product_id IN ({list}) AND available > 0 \
             ORDER BY product_id, warehouse FOR UPDATE), \
             ranked AS (SELECT l.product_id, l.warehouse, l.available, w.quantity AS wanted, \
             coalesce(sum(l.available) OVER (PARTITION BY l.product_id \
             ORDER BY l.available DESC, l.warehouse \
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::bigint AS before, \
             sum(l.available) OVER (PARTITION BY l.product_id)::bigint AS in_stock \
             FROM locked l JOIN wanted w USING (product_id)), \
             taken AS (SELECT product_id, warehouse, least(available, wanted - before) AS units \
             FROM ranked WHERE before < wanted), \
             verdict AS (SELECT \
             min(w.product_id) FILTER (WHERE p.id IS NULL) AS unknown, \
             count(DISTINCT p.currency) > 1 AS mixed, \
             min(w.product_id) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ranked r \
             WHERE r.product_id = w.product_id AND r.in_stock >= w.quantity)) AS short, \
             sum(p.price_cents * w.quantity)::bigint AS total, min(p.currency) AS currency \
             FROM wanted w LEFT JOIN priced p ON p.id = w.product_id), \
             next AS (SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id FROM verdict \
             WHERE unknown IS NULL AND NOT mixed AND short IS NULL), \
             placed AS (INSERT INTO orders ({ORDER_COLUMNS}) SELECT next.id, 'CG-' || CASE \
             WHEN next.id < 100000000 THEN lpad(next.id::text, 8, '0') ELSE next.id::text END, \
             {customer}, 'PENDING', verdict.total, verdict.currency, {key}, {hash}, {now}, {now} \
             FROM next, verdict ON CONFLICT (customer_id, idempotency_key) DO NOTHING \
             RETURNING id, number), \
             items AS (INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
             SELECT placed.id, l.product_id, l.quantity, p.price_cents \
             FROM placed, lines l JOIN priced p ON p.id = l.product_id ORDER BY l.product_id), \
             allocations AS (INSERT INTO stock_allocations (order_id, product_id, warehouse, quantity) \
             SELECT placed.id, t.product_id, t.warehouse, t.units FROM placed, taken t), \
             stock AS (UPDATE inventory SET available = inventory.available - t.units \
             FROM placed, taken t WHERE inventory.product_id = t.product_id \
             AND inventory.warehouse = t.warehouse) \
             SELECT verdict.unknown, verdict.mixed, verdict.short, verdict.total, verdict.currency, \
             placed.id, placed.number, {notices} FROM verdict LEFT JOIN placed ON TRUE"
        ));
        type Outcome = (
            Option<i64>,
            bool,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<String>,
            i64,
        );
        let (unknown, mixed, short, total, currency, id, number, _notified): Outcome =
            returned(self.fetch_all(sql).await?)?;
        if let Some(id) = unknown {
            return Err(WriteError::NotFound {
                what: "product",
                id,
            });
        }
        if mixed {
            return Err(WriteError::MixedCurrencies);
        }
        if let Some(product_id) = short {
            return Err(WriteError::OutOfStock { product_id });
        }
        Ok(id.zip(number).map(|(id, number)| Written {
            id,
            number,
            total: total.unwrap_or(0),
            currency: currency.unwrap_or_default(),
        }))
    }

    /// A scalar subquery that sends `events`' notices to the other replicas
    /// once per placed order (`0` when there are none).
    fn notices_sql(&self, sql: &mut Sql, events: &[Event]) -> Result<String, WriteError> {
        let payloads = self.notice_payloads(events, false)?;
        if payloads.is_empty() {
            return Ok("0".to_string());
        }
        let channel = sql.bind(super::notices::CHANNEL.to_string());
        let rows: Vec<String> = payloads
            .into_iter()
            .map(|payload| format!("({})", sql.bind(payload)))
            .collect();
        Ok(format!(
            "(SELECT count(pg_notify({channel}, n.column1)) FROM placed, (VALUES {}) AS n)",
            rows.join(", ")
        ))
    }

    /// Places an order in a transaction under SQLite's write lock: reads
    /// the prices and the stock, plans the order ([`plan_order`]), then
    /// writes it statement by statement (SQLite has no data-modifying CTEs,
    /// and no round trips to save).
    async fn place_order_sqlite(
        &self,
        order: &NewOrder<'_>,
        sorted: &[NewOrderLine],
    ) -> Result<Written, WriteError> {
        let mut tx = self.begin_write().await?;
        let (prices, stock) = self.read_for_order(&mut tx, sorted).await?;
        let plan = plan_order(sorted, &prices, &stock)?;
        let (id, number) = self.write_order_sqlite(&mut tx, order, &plan).await?;
        tx.commit().await?;
        Ok(Written {
            id,
            number,
            total: plan.total,
            currency: plan.currency,
        })
    }

    /// The prices of `lines`' products and their stock, in one statement
    /// (under SQLite's write lock, which serialises writers). A product
    /// without stock has no row in the join; its price is read on its own,
    /// to tell an unknown product from one that is sold out.
    async fn read_for_order(
        &self,
        tx: &mut Transaction<'static, Any>,
        sorted: &[NewOrderLine],
    ) -> Result<(Vec<PriceRow>, Vec<StockLevel>), WriteError> {
        let ids: Vec<i64> = sorted.iter().map(|l| l.product_id).collect();
        let mut sql = Sql::new("");
        let list = sql.bind_list(&ids);
        sql.push(&format!(
            "SELECT p.id, p.price_cents, p.currency, i.warehouse, i.available \
             FROM products p JOIN inventory i ON i.product_id = p.id \
             WHERE p.id IN ({list}) AND i.available > 0 ORDER BY p.id, i.warehouse"
        ));
        let rows: Vec<(i64, i64, String, String, i64)> = self.tx_fetch_all(tx, sql).await?;
        let mut prices: Vec<PriceRow> = Vec::with_capacity(ids.len());
        let mut stock = Vec::with_capacity(rows.len());
        for (id, price_cents, currency, warehouse, available) in rows {
            if prices.last().is_none_or(|p| p.id != id) {
                prices.push(PriceRow {
                    id,
                    price_cents,
                    currency,
                });
            }
            stock.push(StockLevel {
                product_id: id,
                warehouse,
                available,
            });
        }
        let unstocked: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !prices.iter().any(|p| p.id == *id))
            .collect();
        if !unstocked.is_empty() {
            let mut sql = Sql::new("");
            let list = sql.bind_list(&unstocked);
            sql.push(&format!(
                "SELECT id, price_cents, currency FROM products WHERE id IN ({list})"
            ));
            prices.extend(self.tx_fetch_all::<PriceRow>(tx, sql).await?);
        }
        Ok((prices, stock))
    }

    /// Writes a planned order statement by statement: SQLite has no
    /// data-modifying CTEs, and no round trips to save.
    async fn write_order_sqlite(
        &self,
        tx: &mut Transaction<'static, Any>,
        order: &NewOrder<'_>,
        plan: &OrderPlan,
    ) -> Result<(i64, String), WriteError> {
        let mut sql = Sql::new("");
        let values = order.values(&mut sql, plan);
        // The id SQLite would choose (an INTEGER PRIMARY KEY without
        // AUTOINCREMENT): the writer holds the database's write lock.
        sql.push(&format!(
            "WITH next AS (SELECT coalesce(max(id), 0) + 1 AS id FROM orders) \
             INSERT INTO orders ({ORDER_COLUMNS}) SELECT next.id, 'CG-' || \
             printf('%08d', next.id), {values} FROM next RETURNING id, number"
        ));
        let (id, number): (i64, String) = returned(self.tx_fetch_all(tx, sql).await?)?;
        let mut sql = Sql::new("");
        let rows = plan.item_rows(&mut sql, Some(id));
        sql.push(&format!(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES {rows}"
        ));
        self.tx_execute(tx, sql).await?;
        let mut sql = Sql::new("");
        let rows = plan.allocation_rows(&mut sql, Some(id));
        sql.push(&format!(
            "INSERT INTO stock_allocations (order_id, product_id, warehouse, quantity) VALUES {rows}"
        ));
        self.tx_execute(tx, sql).await?;
        for (product_id, warehouse, quantity) in &plan.taken {
            let mut sql = Sql::new("UPDATE inventory SET available = available - ");
            let q = sql.bind(*quantity);
            let p = sql.bind(*product_id);
            let w = sql.bind(warehouse.clone());
            sql.push(&format!("{q} WHERE product_id = {p} AND warehouse = {w}"));
            self.tx_execute(tx, sql).await?;
        }
        Ok((id, number))
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
            // The lock order of `read_for_order`: products by id, warehouses by name.
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
            let mut sql = Sql::new("SELECT available FROM inventory WHERE product_id = ");
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

    fn line(product_id: i64, quantity: i64) -> NewOrderLine {
        NewOrderLine {
            product_id,
            quantity,
        }
    }

    fn price(id: i64, price_cents: i64, currency: &str) -> PriceRow {
        PriceRow {
            id,
            price_cents,
            currency: currency.into(),
        }
    }

    fn level(product_id: i64, warehouse: &str, available: i64) -> StockLevel {
        StockLevel {
            product_id,
            warehouse: warehouse.into(),
            available,
        }
    }

    #[test]
    fn an_order_takes_from_the_fullest_warehouses_first() {
        let prices = [price(1, 250, "EUR"), price(2, 1000, "EUR")];
        let stock = [
            level(1, "ams", 2),
            level(1, "ber", 5),
            level(2, "ams", 3),
            level(2, "ber", 3),
        ];
        let plan = plan_order(&[line(1, 6), line(2, 1)], &prices, &stock).unwrap();
        assert_eq!(plan.total, 6 * 250 + 1000);
        assert_eq!(plan.currency, "EUR");
        assert_eq!(plan.priced, [(line(1, 6), 250), (line(2, 1), 1000)]);
        // Product 1: all 5 from ber, then 1 from ams; product 2: a tie, so ams.
        assert_eq!(
            plan.taken,
            [
                (1, "ams".to_string(), 1),
                (1, "ber".to_string(), 5),
                (2, "ams".to_string(), 1),
            ]
        );
    }

    #[test]
    fn an_order_is_refused_whole_when_one_line_cannot_be_met() {
        let prices = [price(1, 100, "USD"), price(2, 100, "USD")];
        let stock = [level(1, "ams", 9), level(2, "ams", 1), level(2, "ber", 1)];
        let refused = plan_order(&[line(1, 1), line(2, 3)], &prices, &stock);
        assert!(matches!(
            refused,
            Err(WriteError::OutOfStock { product_id: 2 })
        ));
        // Sold out everywhere: the product exists, so it is stock, not a 404.
        let refused = plan_order(&[line(2, 1)], &prices, &[]);
        assert!(matches!(
            refused,
            Err(WriteError::OutOfStock { product_id: 2 })
        ));
    }

    #[test]
    fn an_order_names_an_unknown_product_and_refuses_mixed_currencies() {
        let prices = [price(1, 100, "USD"), price(2, 100, "EUR")];
        let stock = [level(1, "ams", 9), level(2, "ams", 9)];
        assert!(matches!(
            plan_order(&[line(1, 1), line(7, 1)], &prices, &stock),
            Err(WriteError::NotFound {
                what: "product",
                id: 7
            })
        ));
        assert!(matches!(
            plan_order(&[line(1, 1), line(2, 1)], &prices, &stock),
            Err(WriteError::MixedCurrencies)
        ));
        // An unknown product is named even after two currencies.
        assert!(matches!(
            plan_order(&[line(1, 1), line(2, 1), line(7, 1)], &prices, &stock),
            Err(WriteError::NotFound { id: 7, .. })
        ));
    }

    #[test]
    fn lines_of_one_product_share_its_stock() {
        let prices = [price(1, 100, "USD")];
        let stock = [level(1, "ams", 3), level(1, "ber", 2)];
        let plan = plan_order(&[line(1, 3), line(1, 2)], &prices, &stock).unwrap();
        assert_eq!(
            plan.taken,
            [(1, "ams".to_string(), 3), (1, "ber".to_string(), 2)]
        );
        assert!(plan_order(&[line(1, 3), line(1, 3)], &prices, &stock).is_err());
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
