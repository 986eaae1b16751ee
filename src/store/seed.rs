//! Deterministic demo data: `commerce-graph seed --scale S`, and the first
//! start of `serve` on an empty database.
//!
//! Every value comes from a fixed-seed SplitMix64 generator and fixed base
//! dates, never from the clock or hash-map order, so the same scale produces
//! the same rows on every machine and on every backend. Ids are explicit
//! (1..=N per table) so foreign keys are known while generating. Everything is
//! written in one transaction with multi-row INSERTs.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::any::AnyArguments;
use sqlx::{Any, Transaction};

use super::{format_timestamp, Backend, Sql, Store, StoreError};

/// Rows per INSERT statement: at most 9 columns × 500 = 4,500 bound
/// parameters, far below SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 500;

const CATEGORIES: [(&str, &str); 20] = [
    ("Kitchen", "kitchen"),
    ("Garden", "garden"),
    ("Outdoor", "outdoor"),
    ("Office", "office"),
    ("Toys", "toys"),
    ("Books", "books"),
    ("Music", "music"),
    ("Electronics", "electronics"),
    ("Computers", "computers"),
    ("Photography", "photography"),
    ("Sports", "sports"),
    ("Fitness", "fitness"),
    ("Beauty", "beauty"),
    ("Health", "health"),
    ("Pets", "pets"),
    ("Baby", "baby"),
    ("Automotive", "automotive"),
    ("Tools", "tools"),
    ("Furniture", "furniture"),
    ("Lighting", "lighting"),
];

const ADJECTIVES: [&str; 16] = [
    "Classic",
    "Compact",
    "Deluxe",
    "Ergonomic",
    "Rustic",
    "Sleek",
    "Sturdy",
    "Vintage",
    "Modern",
    "Portable",
    "Premium",
    "Handmade",
    "Lightweight",
    "Smart",
    "Organic",
    "Quiet",
];
const NOUNS: [&str; 16] = [
    "Lamp",
    "Chair",
    "Kettle",
    "Backpack",
    "Speaker",
    "Notebook",
    "Blender",
    "Jacket",
    "Camera",
    "Drill",
    "Mug",
    "Tent",
    "Watch",
    "Headphones",
    "Desk",
    "Bottle",
];
const FIRST_NAMES: [&str; 16] = [
    "Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Maya", "Noor", "Oskar", "Priya",
];
const LAST_NAMES: [&str; 16] = [
    "Adams", "Bauer", "Chen", "Diallo", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov",
];
const REVIEW_TEXTS: [&str; 8] = [
    "Exactly as described.",
    "Great value for the price.",
    "Works well, would buy again.",
    "Arrived quickly and well packed.",
    "Decent, but the finish could be better.",
    "Not what I expected.",
    "Excellent quality, highly recommended.",
    "Stopped working after a month.",
];
/// Ratings skew positive, as real shops' do.
const RATINGS: [i64; 10] = [1, 2, 3, 4, 4, 4, 5, 5, 5, 5];
const STATUSES: [&str; 5] = ["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"];
const WAREHOUSES: [&str; 2] = ["east", "west"];

/// How many rows `seed` wrote, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub categories: u64,
    pub products: u64,
    pub images: u64,
    pub inventory: u64,
    pub customers: u64,
    pub reviews: u64,
    pub orders: u64,
    pub order_items: u64,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} categories, {} products, {} images, {} inventory rows, {} customers, \
             {} reviews, {} orders, {} order items",
            self.categories,
            self.products,
            self.images,
            self.inventory,
            self.customers,
            self.reviews,
            self.orders,
            self.order_items
        )
    }
}

/// SplitMix64: tiny, fast and fully specified, so the sequence never changes
/// with a dependency's version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = (high - low + 1) as u64;
        low + (self.next_u64() % span) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// One value of a row to insert.
enum Cell {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// Collects rows of one table and writes them in multi-row INSERTs.
struct Inserter<'t> {
    table: &'static str,
    columns: &'static str,
    rows: Vec<Vec<Cell>>,
    written: u64,
    tx: &'t mut Transaction<'static, Any>,
}

impl<'t> Inserter<'t> {
    fn new(
        tx: &'t mut Transaction<'static, Any>,
        table: &'static str,
        columns: &'static str,
    ) -> Self {
        Inserter {
            table,
            columns,
            rows: Vec::with_capacity(ROWS_PER_INSERT),
            written: 0,
            tx,
        }
    }

    async fn push(&mut self, row: Vec<Cell>) -> Result<(), StoreError> {
        self.rows.push(row);
        if self.rows.len() >= ROWS_PER_INSERT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(&format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table, self.columns
        ));
        let mut values = String::new();
        for (i, row) in self.rows.drain(..).enumerate() {
            values.push_str(if i == 0 { "(" } else { ", (" });
            for (j, cell) in row.into_iter().enumerate() {
                if j > 0 {
                    values.push_str(", ");
                }
                values.push_str(&match cell {
                    Cell::Int(v) => sql.bind(v),
                    Cell::Bool(v) => sql.bind(v),
                    Cell::Text(v) => sql.bind(v),
                });
            }
            values.push(')');
            self.written += 1;
        }
        sql.push(&values);
        let (text, args): (String, AnyArguments<'static>) = sql.finish();
        sqlx::query_with(&text, args)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, StoreError> {
        self.flush().await?;
        Ok(self.written)
    }
}

fn text(value: impl Into<String>) -> Cell {
    Cell::Text(value.into())
}

fn at(base: DateTime<Utc>, offset: Duration) -> Cell {
    Cell::Text(format_timestamp(base + offset))
}

/// `customers.verified` as bound: a boolean on PostgreSQL, 0 or 1 on SQLite
/// (which has no boolean type).
fn verified_cell(backend: Backend, verified: bool) -> Cell {
    match backend {
        Backend::Postgres => Cell::Bool(verified),
        Backend::Sqlite => Cell::Int(i64::from(verified)),
    }
}

/// Tables whose ids the seed wrote explicitly. PostgreSQL's identity
/// sequences did not see those ids, so each is moved past the largest one
/// before anything else inserts (SQLite takes the next rowid from the table).
const TABLES_WITH_IDS: [&str; 7] = [
    "categories",
    "products",
    "product_images",
    "customers",
    "reviews",
    "orders",
    "order_items",
];

fn base_date(year: i32, month: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Fills an empty database with the demo data at `scale` (1 = 1,000 products).
pub async fn seed(store: &Store, scale: u32) -> Result<SeedReport, StoreError> {
    if scale == 0 || scale > 1000 {
        return Err(StoreError::Config(format!(
            "the seed scale must be between 1 and 1000, got {scale}"
        )));
    }
    if !store.is_empty().await? {
        return Err(StoreError::Config(
            "the database already has products: seed fills an empty database only".into(),
        ));
    }
    let scale = i64::from(scale);
    let products = 1_000 * scale;
    let customers = 2_000 * scale;
    let reviews = 20_000 * scale;
    let orders = 10_000 * scale;
    let mut rng = Rng(0x5EED_C0DE_2026);
    let mut report = SeedReport::default();
    let mut tx = store.begin().await?;

    let mut insert = Inserter::new(&mut tx, "categories", "id, name, slug");
    for (i, (name, slug)) in CATEGORIES.iter().enumerate() {
        insert
            .push(vec![Cell::Int(i as i64 + 1), text(*name), text(*slug)])
            .await?;
    }
    report.categories = insert.finish().await?;

    // Products, remembering each price for the order lines.
    let product_epoch = base_date(2025, 1);
    let mut prices = Vec::with_capacity(products as usize);
    let mut insert = Inserter::new(
        &mut tx,
        "products",
        "id, sku, title, description, price_cents, currency, category_id, created_at, updated_at",
    );
    for id in 1..=products {
        let adjective = rng.pick(&ADJECTIVES);
        let noun = rng.pick(&NOUNS);
        let price = rng.range(199, 49_999);
        let category = rng.range(1, CATEGORIES.len() as i64);
        let created = Duration::minutes(rng.range(0, 365 * 24 * 60));
        let updated = created + Duration::minutes(rng.range(0, 30 * 24 * 60));
        prices.push(price);
        insert
            .push(vec![
                Cell::Int(id),
                text(format!("SKU-{id:07}")),
                text(format!("{adjective} {noun} {id}")),
                text(format!(
                    "A {} {} for everyday use.",
                    adjective.to_lowercase(),
                    noun.to_lowercase()
                )),
                Cell::Int(price),
                text("USD"),
                Cell::Int(category),
                at(product_epoch, created),
                at(product_epoch, updated),
            ])
            .await?;
    }
    report.products = insert.finish().await?;

    let mut insert = Inserter::new(
        &mut tx,
        "product_images",
        "id, product_id, url, alt, position",
    );
    let mut image_id = 0;
    for product in 1..=products {
        for position in 0..3 {
            image_id += 1;
            insert
                .push(vec![
                    Cell::Int(image_id),
                    Cell::Int(product),
                    text(format!("/images/products/{product}/{position}.jpg")),
                    text(format!("Product {product}, view {}", position + 1)),
                    Cell::Int(position),
                ])
                .await?;
        }
    }
    report.images = insert.finish().await?;

    let mut insert = Inserter::new(&mut tx, "inventory", "product_id, warehouse, available");
    for product in 1..=products {
        for warehouse in WAREHOUSES {
            // About one warehouse in twelve is out of stock.
            let available = if rng.range(0, 11) == 0 {
                0
            } else {
                rng.range(1, 300)
            };
            insert
                .push(vec![
                    Cell::Int(product),
                    text(warehouse),
                    Cell::Int(available),
                ])
                .await?;
        }
    }
    report.inventory = insert.finish().await?;

    let mut insert = Inserter::new(&mut tx, "customers", "id, name, email, verified");
    for id in 1..=customers {
        let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
        let verified = rng.range(0, 2) != 0;
        insert
            .push(vec![
                Cell::Int(id),
                text(name),
                text(format!("customer{id}@example.test")),
                verified_cell(store.backend(), verified),
            ])
            .await?;
    }
    report.customers = insert.finish().await?;

    // Reviews come after every product was created and their ids grow with
    // time, so "newest first" and "highest id first" agree.
    let review_epoch = base_date(2026, 1);
    let mut insert = Inserter::new(
        &mut tx,
        "reviews",
        "id, product_id, customer_id, rating, body, created_at",
    );
    for id in 1..=reviews {
        insert
            .push(vec![
                Cell::Int(id),
                Cell::Int(rng.range(1, products)),
                Cell::Int(rng.range(1, customers)),
                Cell::Int(*rng.pick(&RATINGS)),
                text(*rng.pick(&REVIEW_TEXTS)),
                at(review_epoch, Duration::seconds(id * 60)),
            ])
            .await?;
    }
    report.reviews = insert.finish().await?;

    // Orders and their lines: lines first in memory, since the order's total
    // is their sum.
    let order_epoch = base_date(2026, 3);
    let mut order_rows = Vec::with_capacity(orders as usize);
    let mut item_rows = Vec::with_capacity(orders as usize * 4);
    let mut item_id = 0;
    for id in 1..=orders {
        let customer = rng.range(1, customers);
        let status = *rng.pick(&STATUSES);
        let lines = rng.range(1, 6);
        let mut chosen: Vec<i64> = Vec::with_capacity(lines as usize);
        let mut total = 0;
        while (chosen.len() as i64) < lines {
            let product = rng.range(1, products);
            if chosen.contains(&product) {
                continue;
            }
            chosen.push(product);
            let quantity = rng.range(1, 3);
            let unit_price = prices[product as usize - 1];
            total += quantity * unit_price;
            item_id += 1;
            item_rows.push(vec![
                Cell::Int(item_id),
                Cell::Int(id),
                Cell::Int(product),
                Cell::Int(quantity),
                Cell::Int(unit_price),
            ]);
        }
        let created = Duration::seconds(id * 30);
        let updated = if status == "PENDING" {
            created
        } else {
            created + Duration::minutes(rng.range(1, 7 * 24 * 60))
        };
        order_rows.push(vec![
            Cell::Int(id),
            text(format!("CG-{id:08}")),
            Cell::Int(customer),
            text(status),
            Cell::Int(total),
            text("USD"),
            text(format!("seed-{id}")),
            at(order_epoch, created),
            at(order_epoch, updated),
        ]);
    }
    let mut insert = Inserter::new(
        &mut tx,
        "orders",
        "id, number, customer_id, status, total_cents, currency, idempotency_key, created_at, updated_at",
    );
    for row in order_rows {
        insert.push(row).await?;
    }
    report.orders = insert.finish().await?;
    let mut insert = Inserter::new(
        &mut tx,
        "order_items",
        "id, order_id, product_id, quantity, unit_price_cents",
    );
    for row in item_rows {
        insert.push(row).await?;
    }
    report.order_items = insert.finish().await?;

    if store.backend() == Backend::Postgres {
        for table in TABLES_WITH_IDS {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 (SELECT MAX(id) FROM {table}))"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }

    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PoolSettings;

    async fn fresh_store(dir: &tempfile::TempDir, name: &str) -> Store {
        let url = format!("sqlite://{}/{name}.db", dir.path().display());
        let store = Store::connect(&url, &PoolSettings::with_max_connections(2))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[test]
    fn the_generator_sequence_is_pinned() {
        let mut rng = Rng(0);
        // SplitMix64's published first outputs for seed 0.
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[tokio::test]
    async fn scale_one_has_the_documented_rows_and_is_the_same_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let a = fresh_store(&dir, "a").await;
        let b = fresh_store(&dir, "b").await;
        let report = seed(&a, 1).await.unwrap();
        assert_eq!(seed(&b, 1).await.unwrap(), report);
        assert_eq!(report.categories, 20);
        assert_eq!(report.products, 1_000);
        assert_eq!(report.images, 3_000);
        assert_eq!(report.inventory, 2_000);
        assert_eq!(report.customers, 2_000);
        assert_eq!(report.reviews, 20_000);
        assert_eq!(report.orders, 10_000);
        assert!((10_000..=60_000).contains(&report.order_items));

        // Same rows, not only the same counts.
        let digest = |store: Store| async move {
            let rows: Vec<(i64, String, i64, String)> = store
                .fetch_all(Sql::new(
                    "SELECT o.id, o.number, o.total_cents, o.created_at FROM orders o \
                     WHERE o.id % 97 = 0 ORDER BY o.id",
                ))
                .await
                .unwrap();
            let products: Vec<(i64, String, i64)> = store
                .fetch_all(Sql::new(
                    "SELECT id, title, price_cents FROM products WHERE id % 13 = 0 ORDER BY id",
                ))
                .await
                .unwrap();
            (rows, products)
        };
        assert_eq!(digest(a.clone()).await, digest(b).await);

        // Every order's total is the sum of its lines.
        let mismatched: (i64,) = a
            .fetch_one(Sql::new(
                "SELECT COUNT(*) FROM orders o WHERE o.total_cents <> (SELECT \
                 SUM(i.quantity * i.unit_price_cents) FROM order_items i WHERE i.order_id = o.id)",
            ))
            .await
            .unwrap();
        assert_eq!(mismatched.0, 0);
    }

    #[tokio::test]
    async fn a_database_with_data_is_not_seeded_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(&dir, "c").await;
        seed(&store, 1).await.unwrap();
        assert!(matches!(seed(&store, 1).await, Err(StoreError::Config(_))));
        assert!(matches!(seed(&store, 0).await, Err(StoreError::Config(_))));
    }
}
