//! The catalog: products, categories, inventory, images and reviews. Public
//! data, cacheable by CDNs (see the cache hints).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde_json::Value;

use super::customers::{Customer, CustomerId};
use super::error::ApiError;
use super::federation::{authenticated, entity_or_null};
use super::live;
use super::loader::{
    collect_children, group_by_params, loader, require_admin, require_customer, store, StoreLoader,
};
use super::pagination::{
    decode_cursor, decode_id_cursor, encode_cursor, encode_id_cursor, page_size, parse_id,
    DEFAULT_PAGE_SIZE, MAX_IMAGES, MAX_PAGE_SIZE,
};
use crate::events::Topic;
use crate::store::{
    self, CategoryRow, ImageRow, InventoryRow, ProductPage, ProductRow, ReviewRow, ReviewStatsRow,
    SortValue,
};

// ---- money and timestamps ---------------------------------------------------

/// An amount of money. Never a float: `cents` is exact, `amount` is its decimal
/// text.
#[derive(SimpleObject, Clone)]
#[graphql(shareable)]
pub struct Money {
    /// Decimal text in the currency's major unit, e.g. "19.99".
    pub amount: String,
    /// The amount in the currency's minor unit (cents).
    pub cents: i64,
    /// ISO 4217 code, e.g. "USD".
    pub currency: String,
}

impl Money {
    pub fn new(cents: i64, currency: &str) -> Money {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        Money {
            amount: format!("{sign}{}.{:02}", abs / 100, abs % 100),
            cents,
            currency: currency.to_string(),
        }
    }
}

/// Reads a stored timestamp; a malformed one is a corrupt row, logged.
pub(crate) fn timestamp(table: &'static str, id: i64, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::from(store::StoreError::Corrupt {
                table,
                id,
                problem: format!("timestamp {text:?}: {e}"),
            })
            .into()
        })
}

// ---- loader keys --------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductId(pub i64);
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProductSku(pub String);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CategoryId(pub i64);
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CategorySlug(pub String);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InventoryOf(pub i64);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReviewStatsOf(pub i64);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImagesOf {
    product_id: i64,
    first: i64,
}
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReviewsOf {
    product_id: i64,
    first: i64,
    before: Option<i64>,
}
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProductsOfCategory {
    category_id: i64,
    page: ProductPage,
}
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProductCountOfCategory {
    category_id: i64,
    filter: store::ProductFilter,
}

/// A loaded row is shared (`Arc`), not copied: the loader hands every
/// resolver that asked for a key its own value, and keeps one in its cache.
impl Loader<ProductId> for StoreLoader {
    type Value = Arc<ProductRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ProductId],
    ) -> Result<HashMap<ProductId, Arc<ProductRow>>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.products_by_ids(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| (ProductId(r.id), Arc::new(r)))
            .collect())
    }
}

impl Loader<ProductSku> for StoreLoader {
    type Value = Arc<ProductRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ProductSku],
    ) -> Result<HashMap<ProductSku, Arc<ProductRow>>, ApiError> {
        let skus: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = self.store.products_by_skus(&skus).await?;
        Ok(rows
            .into_iter()
            .map(|r| (ProductSku(r.sku.clone()), Arc::new(r)))
            .collect())
    }
}

impl Loader<CategoryId> for StoreLoader {
    type Value = CategoryRow;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[CategoryId],
    ) -> Result<HashMap<CategoryId, CategoryRow>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.categories_by_ids(&ids).await?;
        Ok(rows.into_iter().map(|r| (CategoryId(r.id), r)).collect())
    }
}

impl Loader<CategorySlug> for StoreLoader {
    type Value = CategoryRow;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[CategorySlug],
    ) -> Result<HashMap<CategorySlug, CategoryRow>, ApiError> {
        let slugs: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = self.store.categories_by_slugs(&slugs).await?;
        Ok(rows
            .into_iter()
            .map(|r| (CategorySlug(r.slug.clone()), r))
            .collect())
    }
}

impl Loader<InventoryOf> for StoreLoader {
    type Value = Vec<InventoryRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[InventoryOf],
    ) -> Result<HashMap<InventoryOf, Vec<InventoryRow>>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.inventory_by_products(&ids).await?;
        Ok(collect_children(keys.iter().copied(), rows, |r| {
            InventoryOf(r.product_id)
        }))
    }
}

impl Loader<ReviewStatsOf> for StoreLoader {
    type Value = ReviewStatsRow;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ReviewStatsOf],
    ) -> Result<HashMap<ReviewStatsOf, ReviewStatsRow>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.review_stats_by_products(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| (ReviewStatsOf(r.product_id), r))
            .collect())
    }
}

impl Loader<ImagesOf> for StoreLoader {
    type Value = Vec<ImageRow>;
    type Error = ApiError;

    async fn load(&self, keys: &[ImagesOf]) -> Result<HashMap<ImagesOf, Vec<ImageRow>>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for (first, ids) in group_by_params(keys, |k| (k.product_id, k.first)) {
            let rows = self.store.images_by_products(&ids, first).await?;
            let keys = ids.iter().map(|&product_id| ImagesOf { product_id, first });
            out.extend(collect_children(keys, rows, |r| ImagesOf {
                product_id: r.product_id,
                first,
            }));
        }
        Ok(out)
    }
}

impl Loader<ReviewsOf> for StoreLoader {
    type Value = Vec<ReviewRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ReviewsOf],
    ) -> Result<HashMap<ReviewsOf, Vec<ReviewRow>>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for ((first, before), ids) in group_by_params(keys, |k| (k.product_id, (k.first, k.before)))
        {
            let rows = self.store.reviews_by_products(&ids, first, before).await?;
            let keys = ids.iter().map(|&product_id| ReviewsOf {
                product_id,
                first,
                before,
            });
            out.extend(collect_children(keys, rows, |r| ReviewsOf {
                product_id: r.product_id,
                first,
                before,
            }));
        }
        Ok(out)
    }
}

impl Loader<ProductsOfCategory> for StoreLoader {
    type Value = Vec<ProductRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ProductsOfCategory],
    ) -> Result<HashMap<ProductsOfCategory, Vec<ProductRow>>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for (page, ids) in group_by_params(keys, |k| (k.category_id, k.page.clone())) {
            let rows = self.store.products_pages_by_category(&ids, &page).await?;
            let keys = ids.iter().map(|&category_id| ProductsOfCategory {
                category_id,
                page: page.clone(),
            });
            out.extend(collect_children(keys, rows, |r| ProductsOfCategory {
                category_id: r.category_id,
                page: page.clone(),
            }));
        }
        Ok(out)
    }
}

impl Loader<ProductCountOfCategory> for StoreLoader {
    type Value = i64;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ProductCountOfCategory],
    ) -> Result<HashMap<ProductCountOfCategory, i64>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for (filter, ids) in group_by_params(keys, |k| (k.category_id, k.filter.clone())) {
            let counts = self.store.products_count_by_category(&ids, &filter).await?;
            for category_id in ids {
                let count = counts
                    .iter()
                    .find(|c| c.parent_id == category_id)
                    .map_or(0, |c| c.count);
                let key = ProductCountOfCategory {
                    category_id,
                    filter: filter.clone(),
                };
                out.insert(key, count);
            }
        }
        Ok(out)
    }
}

// ---- product listings ---------------------------------------------------------

/// Which products a listing includes. Conditions combine with AND.
#[derive(InputObject, Clone, Default)]
#[graphql(name = "ProductFilter")]
pub struct ProductFilterInput {
    /// Only products in this category.
    pub category_id: Option<ID>,
    /// Only products priced at least this many cents.
    pub min_price_cents: Option<i64>,
    /// Only products priced at most this many cents.
    pub max_price_cents: Option<i64>,
    /// Only products whose title contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only products with (true) or without (false) stock in some warehouse.
    pub in_stock: Option<bool>,
}

impl ProductFilterInput {
    fn parse(self) -> Result<store::ProductFilter, ApiError> {
        Ok(store::ProductFilter {
            category_id: self
                .category_id
                .map(|id| parse_id("filter.categoryId", &id))
                .transpose()?,
            min_price_cents: self.min_price_cents,
            max_price_cents: self.max_price_cents,
            title_contains: self.search.filter(|s| !s.is_empty()),
            in_stock: self.in_stock,
        })
    }
}

/// The order of a product listing.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductSort {
    #[default]
    IdAsc,
    IdDesc,
    PriceAsc,
    PriceDesc,
    TitleAsc,
    /// Newest first.
    Newest,
}

impl ProductSort {
    fn to_store(self) -> store::ProductSort {
        match self {
            ProductSort::IdAsc => store::ProductSort::IdAsc,
            ProductSort::IdDesc => store::ProductSort::IdDesc,
            ProductSort::PriceAsc => store::ProductSort::PriceAsc,
            ProductSort::PriceDesc => store::ProductSort::PriceDesc,
            ProductSort::TitleAsc => store::ProductSort::TitleAsc,
            ProductSort::Newest => store::ProductSort::Newest,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ProductSort::IdAsc => "ID_ASC",
            ProductSort::IdDesc => "ID_DESC",
            ProductSort::PriceAsc => "PRICE_ASC",
            ProductSort::PriceDesc => "PRICE_DESC",
            ProductSort::TitleAsc => "TITLE_ASC",
            ProductSort::Newest => "NEWEST",
        }
    }
}

/// A product cursor: `["p", sort, sort value, id]`. A cursor is only valid for
/// the sort it was issued under.
fn product_cursor(sort: ProductSort, row: &ProductRow) -> String {
    let value = match sort.to_store().value_of(row) {
        SortValue::None => Value::Null,
        SortValue::Int(v) => Value::from(v),
        SortValue::Text(v) => Value::from(v),
    };
    encode_cursor(&[
        Value::from("p"),
        Value::from(sort.name()),
        value,
        Value::from(row.id),
    ])
}

fn decode_product_cursor(sort: ProductSort, cursor: &str) -> Result<(SortValue, i64), ApiError> {
    let invalid = ApiError::InvalidCursor { argument: "after" };
    let parts = decode_cursor("after", "p", cursor)?;
    let [Value::String(cursor_sort), value, Value::Number(id)] = parts.as_slice() else {
        return Err(invalid);
    };
    if cursor_sort != sort.name() {
        return Err(invalid);
    }
    let id = id.as_i64().filter(|id| *id > 0).ok_or(invalid.clone())?;
    let value = match (sort.to_store(), value) {
        (store::ProductSort::IdAsc | store::ProductSort::IdDesc, Value::Null) => SortValue::None,
        (store::ProductSort::PriceAsc | store::ProductSort::PriceDesc, Value::Number(n)) => {
            SortValue::Int(n.as_i64().ok_or(invalid.clone())?)
        }
        (store::ProductSort::TitleAsc | store::ProductSort::Newest, Value::String(s)) => {
            SortValue::Text(s.clone())
        }
        _ => return Err(invalid),
    };
    Ok((value, id))
}

/// The page a `(first, after, filter, sort)` argument set asks for.
fn product_page(
    first: i32,
    after: Option<&str>,
    filter: store::ProductFilter,
    sort: ProductSort,
) -> Result<(ProductPage, i64), ApiError> {
    let shown = page_size("first", first, MAX_PAGE_SIZE)?;
    let after = after.map(|c| decode_product_cursor(sort, c)).transpose()?;
    let page = ProductPage {
        filter,
        sort: sort.to_store(),
        after,
        limit: shown + 1,
    };
    Ok((page, shown))
}

/// Where a connection's `totalCount` comes from.
#[derive(Clone)]
pub enum ProductCountSource {
    All(store::ProductFilter),
    Category(ProductCountOfCategory),
}

/// Fields of `ProductConnection` besides edges, nodes and pageInfo.
pub struct ProductConnectionFields {
    count: ProductCountSource,
}

#[Object]
impl ProductConnectionFields {
    /// How many products the listing has in all pages (one extra statement,
    /// run only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(match &self.count {
            ProductCountSource::All(filter) => store(ctx)?
                .products_count(filter)
                .await
                .map_err(ApiError::from)?,
            ProductCountSource::Category(key) => {
                loader(ctx)?.load_one(key.clone()).await?.unwrap_or(0)
            }
        })
    }
}

pub type ProductConnection = Connection<String, Product, ProductConnectionFields, EmptyFields>;

fn product_connection(
    mut rows: Vec<ProductRow>,
    shown: i64,
    sort: ProductSort,
    has_previous_page: bool,
    count: ProductCountSource,
) -> ProductConnection {
    let has_next_page = rows.len() as i64 > shown;
    rows.truncate(shown as usize);
    let mut connection = Connection::with_additional_fields(
        has_previous_page,
        has_next_page,
        ProductConnectionFields { count },
    );
    connection.edges = rows
        .into_iter()
        .map(|row| Edge::new(product_cursor(sort, &row), Product(Arc::new(row))))
        .collect();
    connection
}

// ---- types ----------------------------------------------------------------------

/// Something for sale.
pub struct Product(pub Arc<ProductRow>);

#[Object(cache_control(max_age = 60))]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Stock-keeping unit, unique.
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn price(&self) -> Money {
        Money::new(self.0.price_cents, &self.0.currency)
    }

    async fn category(&self, ctx: &Context<'_>) -> Result<Category> {
        let row = loader(ctx)?
            .load_one(CategoryId(self.0.category_id))
            .await?;
        row.map(Category).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "products",
                id: self.0.id,
                problem: "category does not exist".into(),
            })
            .into()
        })
    }

    /// Stock per warehouse. Changes often: cached for 5 seconds at most.
    #[graphql(cache_control(max_age = 5))]
    async fn inventory(&self, ctx: &Context<'_>) -> Result<Vec<InventoryLevel>> {
        let rows = loader(ctx)?.load_one(InventoryOf(self.0.id)).await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(InventoryLevel)
            .collect())
    }

    /// The first `first` images, in display order (at most 20).
    async fn images(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> Result<Vec<Image>> {
        let first = page_size("first", first, MAX_IMAGES)?;
        let key = ImagesOf {
            product_id: self.0.id,
            first,
        };
        let rows = loader(ctx)?.load_one(key).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Image).collect())
    }

    /// Reviews, newest first (at most 100 per page). `after` takes a review's
    /// `cursor` to continue past it.
    async fn reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
        after: Option<String>,
    ) -> Result<Vec<Review>> {
        let first = page_size("first", first, MAX_PAGE_SIZE)?;
        let before = after
            .map(|c| decode_id_cursor("after", "r", &c))
            .transpose()?;
        let key = ReviewsOf {
            product_id: self.0.id,
            first,
            before,
        };
        let rows = loader(ctx)?.load_one(key).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Review).collect())
    }

    async fn review_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let stats = loader(ctx)?.load_one(ReviewStatsOf(self.0.id)).await?;
        Ok(stats.map_or(0, |s| s.review_count))
    }

    /// Mean rating from 1 to 5; null while the product has no reviews.
    async fn average_rating(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        let stats = loader(ctx)?.load_one(ReviewStatsOf(self.0.id)).await?;
        Ok(stats.and_then(|s| s.average_rating))
    }

    async fn created_at(&self) -> Result<DateTime<Utc>> {
        timestamp("products", self.0.id, &self.0.created_at)
    }

    async fn updated_at(&self) -> Result<DateTime<Utc>> {
        timestamp("products", self.0.id, &self.0.updated_at)
    }
}

/// Stock of a product in one warehouse.
pub struct InventoryLevel(pub InventoryRow);

#[Object(cache_control(max_age = 5))]
impl InventoryLevel {
    async fn warehouse(&self) -> &str {
        &self.0.warehouse
    }

    /// Units that can be ordered now; never negative.
    async fn available(&self) -> i64 {
        self.0.available
    }
}

pub struct Image(pub ImageRow);

#[Object]
impl Image {
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// Text for screen readers.
    async fn alt(&self) -> Option<&str> {
        self.0.alt.as_deref()
    }
}

pub struct Category(pub CategoryRow);

#[Object(cache_control(max_age = 60))]
impl Category {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn slug(&self) -> &str {
        &self.0.slug
    }

    /// The category's products, paginated like `Query.products`.
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        filter: Option<ProductFilterInput>,
        #[graphql(default)] sort: ProductSort,
    ) -> Result<ProductConnection> {
        let mut filter = filter.unwrap_or_default().parse()?;
        // Partitioning by category replaces a category condition; one naming
        // another category selects nothing.
        let other_category = filter.category_id.take().is_some_and(|c| c != self.0.id);
        let (page, shown) = product_page(first, after.as_deref(), filter.clone(), sort)?;
        let count = ProductCountOfCategory {
            category_id: self.0.id,
            filter,
        };
        let rows = if other_category {
            Vec::new()
        } else {
            let key = ProductsOfCategory {
                category_id: self.0.id,
                page,
            };
            loader(ctx)?.load_one(key).await?.unwrap_or_default()
        };
        Ok(product_connection(
            rows,
            shown,
            sort,
            after.is_some(),
            ProductCountSource::Category(count),
        ))
    }
}

/// A customer's review of a product.
pub struct Review(pub ReviewRow);

#[Object(cache_control(max_age = 60))]
impl Review {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// From 1 to 5.
    async fn rating(&self) -> i64 {
        self.0.rating
    }

    async fn text(&self) -> &str {
        &self.0.body
    }

    async fn author(&self, ctx: &Context<'_>) -> Result<Customer> {
        let row = loader(ctx)?
            .load_one(CustomerId(self.0.customer_id))
            .await?;
        row.map(Customer).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "reviews",
                id: self.0.id,
                problem: "author does not exist".into(),
            })
            .into()
        })
    }

    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        let row = loader(ctx)?.load_one(ProductId(self.0.product_id)).await?;
        row.map(Product).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "reviews",
                id: self.0.id,
                problem: "product does not exist".into(),
            })
            .into()
        })
    }

    async fn created_at(&self) -> Result<DateTime<Utc>> {
        timestamp("reviews", self.0.id, &self.0.created_at)
    }

    /// Pass to `Product.reviews(after:)` for the reviews after this one.
    async fn cursor(&self) -> String {
        encode_id_cursor("r", self.0.id)
    }
}

// ---- root fields ------------------------------------------------------------------

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        let id = parse_id("id", &id)?;
        Ok(loader(ctx)?.load_one(ProductId(id)).await?.map(Product))
    }

    async fn product_by_sku(&self, ctx: &Context<'_>, sku: String) -> Result<Option<Product>> {
        Ok(loader(ctx)?.load_one(ProductSku(sku)).await?.map(Product))
    }

    /// The catalog, paginated with opaque cursors (keyset pagination: any page
    /// costs what the first does). `first` is 0 to 100.
    #[graphql(cache_control(max_age = 60))]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_PAGE_SIZE")] first: i32,
        after: Option<String>,
        filter: Option<ProductFilterInput>,
        #[graphql(default)] sort: ProductSort,
    ) -> Result<ProductConnection> {
        let filter = filter.unwrap_or_default().parse()?;
        let (page, shown) = product_page(first, after.as_deref(), filter.clone(), sort)?;
        let rows = store(ctx)?
            .products_page(&page)
            .await
            .map_err(ApiError::from)?;
        Ok(product_connection(
            rows,
            shown,
            sort,
            after.is_some(),
            ProductCountSource::All(filter),
        ))
    }

    /// Every category, by name.
    #[graphql(cache_control(max_age = 60))]
    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        let rows = store(ctx)?.categories_all().await.map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Category).collect())
    }

    async fn category(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Category>> {
        Ok(loader(ctx)?
            .load_one(CategorySlug(slug))
            .await?
            .map(Category))
    }

    #[graphql(entity)]
    async fn find_product_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        let found = self.product(ctx, id.clone()).await;
        Ok(entity_or_null(ctx, "Product", &id, found))
    }

    #[graphql(entity)]
    async fn find_product_by_sku(&self, ctx: &Context<'_>, sku: String) -> Result<Option<Product>> {
        let found = self.product_by_sku(ctx, sku.clone()).await;
        Ok(entity_or_null(ctx, "Product", &sku, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_decimal_text() {
        assert_eq!(Money::new(1999, "USD").amount, "19.99");
        assert_eq!(Money::new(5, "USD").amount, "0.05");
        assert_eq!(Money::new(-250, "USD").amount, "-2.50");
    }

    fn row(id: i64, price_cents: i64, title: &str) -> ProductRow {
        ProductRow {
            id,
            sku: format!("SKU-{id}"),
            title: title.into(),
            description: None,
            price_cents,
            currency: "USD".into(),
            category_id: 1,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn product_cursors_round_trip_under_their_own_sort_only() {
        let r = row(42, 1999, "Lamp: \"bright\"");
        for sort in [
            ProductSort::IdAsc,
            ProductSort::PriceDesc,
            ProductSort::TitleAsc,
            ProductSort::Newest,
        ] {
            let cursor = product_cursor(sort, &r);
            let (_, id) = decode_product_cursor(sort, &cursor).unwrap();
            assert_eq!(id, 42);
        }
        let cursor = product_cursor(ProductSort::PriceAsc, &r);
        assert!(decode_product_cursor(ProductSort::TitleAsc, &cursor).is_err());
        assert!(decode_product_cursor(ProductSort::PriceAsc, "bogus").is_err());
    }
}

// ---- writes -------------------------------------------------------------------

/// The longest review text accepted, in characters.
const MAX_REVIEW_CHARS: usize = 2000;
/// The highest price accepted, in cents (a million in the major unit).
const MAX_PRICE_CENTS: i64 = 100_000_000;
/// The largest stock change accepted in one adjustment.
const MAX_STOCK_DELTA: i64 = 1_000_000;

#[derive(InputObject)]
pub struct AddReviewInput {
    pub product_id: ID,
    /// 1 to 5.
    pub rating: i32,
    /// 1 to 2,000 characters.
    pub text: String,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::InvalidField {
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// Reads a product again after a write and refreshes the request's cache.
async fn reload_product(ctx: &Context<'_>, id: i64) -> Result<Product> {
    let row = store(ctx)?
        .products_by_ids(&[id])
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("product {id} does not exist")))?;
    let row = Arc::new(row);
    let loader = loader(ctx)?;
    loader.feed_one(ProductId(id), row.clone()).await;
    loader
        .feed_one(ProductSku(row.sku.clone()), row.clone())
        .await;
    Ok(Product(row))
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Reviews a product as the signed-in customer.
    #[graphql(tag = "personal", directive = authenticated::apply())]
    async fn add_review(&self, ctx: &Context<'_>, input: AddReviewInput) -> Result<Review> {
        let customer_id = require_customer(ctx)?;
        let product_id = parse_id("input.productId", &input.product_id)
            .map_err(|_| invalid("input.productId", "is not a product id"))?;
        if !(1..=5).contains(&input.rating) {
            return Err(invalid("input.rating", "must be between 1 and 5").into());
        }
        let text = input.text.trim();
        if text.is_empty() || text.chars().count() > MAX_REVIEW_CHARS {
            return Err(invalid("input.text", "must be 1 to 2000 characters").into());
        }
        let store = store(ctx)?;
        let id = store
            .add_review(customer_id, product_id, i64::from(input.rating), text)
            .await
            .map_err(ApiError::from)?;
        let row = store
            .reviews_by_ids(&[id])
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .next()
            .ok_or(ApiError::Internal)?;
        Ok(Review(row))
    }

    /// Sets a product's price (admin only). Orders already placed keep theirs.
    #[graphql(requires_scopes = "admin", tag = "internal")]
    async fn set_product_price(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        cents: i64,
    ) -> Result<Product> {
        require_admin(ctx)?;
        let id = parse_id("productId", &product_id)?;
        if !(1..=MAX_PRICE_CENTS).contains(&cents) {
            return Err(invalid("cents", "must be between 1 and 100000000").into());
        }
        store(ctx)?
            .set_product_price(id, cents)
            .await
            .map_err(ApiError::from)?;
        live::publish_committed(ctx);
        reload_product(ctx, id).await
    }

    /// Adds `delta` (negative to remove) to a warehouse's stock (admin only).
    /// Stock never falls below zero; a new warehouse is created by a positive
    /// delta.
    #[graphql(requires_scopes = "admin", tag = "internal")]
    async fn adjust_inventory(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
        warehouse: String,
        delta: i64,
    ) -> Result<InventoryLevel> {
        require_admin(ctx)?;
        let id = parse_id("productId", &product_id)?;
        let valid_name = !warehouse.is_empty()
            && warehouse.len() <= 64
            && warehouse
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            return Err(invalid("warehouse", "must be 1 to 64 of a-z, 0-9, - and _").into());
        }
        if !(-MAX_STOCK_DELTA..=MAX_STOCK_DELTA).contains(&delta) {
            return Err(invalid("delta", "must be between -1000000 and 1000000").into());
        }
        let row = store(ctx)?
            .adjust_inventory(id, &warehouse, delta)
            .await
            .map_err(ApiError::from)?;
        live::publish_committed(ctx);
        Ok(InventoryLevel(row))
    }
}

// ---- subscriptions ------------------------------------------------------------

async fn committed_product(store: &store::Store, id: i64) -> Result<Product> {
    store
        .products_by_ids(&[id])
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .next()
        .map(|row| Product(Arc::new(row)))
        .ok_or_else(|| ApiError::NotFound(format!("product {id} does not exist")).into())
}

async fn committed_inventory(store: &store::Store, id: i64) -> Result<Vec<InventoryLevel>> {
    Ok(store
        .inventory_by_products(&[id])
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(InventoryLevel)
        .collect())
}

#[derive(Default)]
pub struct CatalogSubscription;

#[Subscription]
impl CatalogSubscription {
    /// The product each time its price or stock changes (committed state).
    async fn product_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = Result<Product>>> {
        let store = live::begin(ctx)?;
        let id = parse_id("id", &id)?;
        // Subscribed before the first await: see `live`.
        let reloads = store.clone();
        let events = live::watch(ctx, &[Topic::Product(id)], move || {
            let store = reloads.clone();
            async move { committed_product(&store, id).await }
        })?;
        committed_product(&store, id).await?;
        Ok(events)
    }

    /// The product's stock in every warehouse, each time it changes.
    async fn inventory_changed(
        &self,
        ctx: &Context<'_>,
        product_id: ID,
    ) -> Result<impl Stream<Item = Result<Vec<InventoryLevel>>>> {
        let store = live::begin(ctx)?;
        let id = parse_id("productId", &product_id)?;
        let reloads = store.clone();
        let events = live::watch(ctx, &[Topic::Inventory(id)], move || {
            let store = reloads.clone();
            async move { committed_inventory(&store, id).await }
        })?;
        committed_product(&store, id).await?;
        Ok(events)
    }
}
