//! Catalog reads: products, categories, images, inventory, reviews.

use super::{tags, Sql, Store, StoreError};
use super::{CategoryRow, CountRow, ImageRow, InventoryRow, ProductRow, ReviewRow, ReviewStatsRow};

const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.title, p.description, p.price_cents, p.currency, \
     p.category_id, p.created_at, p.updated_at";

/// Which products a listing includes. Every condition is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProductFilter {
    pub category_id: Option<i64>,
    pub min_price_cents: Option<i64>,
    pub max_price_cents: Option<i64>,
    /// Case-insensitive substring of the title.
    pub title_contains: Option<String>,
    pub in_stock: Option<bool>,
}

/// The orders a product listing can have. Each is a total order (the id breaks
/// ties), which keyset pagination needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductSort {
    IdAsc,
    IdDesc,
    PriceAsc,
    PriceDesc,
    TitleAsc,
    Newest,
}

/// The value of the sort column at a cursor position.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SortValue {
    /// Sorting by id alone: the id is the whole position.
    None,
    Int(i64),
    Text(String),
}

impl ProductSort {
    /// The sort column (besides the id) and whether the order is descending.
    fn column(self) -> (Option<&'static str>, bool) {
        match self {
            ProductSort::IdAsc => (None, false),
            ProductSort::IdDesc => (None, true),
            ProductSort::PriceAsc => (Some("price_cents"), false),
            ProductSort::PriceDesc => (Some("price_cents"), true),
            ProductSort::TitleAsc => (Some("title"), false),
            ProductSort::Newest => (Some("created_at"), true),
        }
    }

    /// The sort column's value in `row`, for the cursor of that row.
    pub fn value_of(self, row: &ProductRow) -> SortValue {
        match self {
            ProductSort::IdAsc | ProductSort::IdDesc => SortValue::None,
            ProductSort::PriceAsc | ProductSort::PriceDesc => SortValue::Int(row.price_cents),
            ProductSort::TitleAsc => SortValue::Text(row.title.clone()),
            ProductSort::Newest => SortValue::Text(row.created_at.clone()),
        }
    }
}

/// One page of a product listing: the rows after `after` in `sort` order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProductPage {
    pub filter: ProductFilter,
    pub sort: ProductSort,
    pub after: Option<(SortValue, i64)>,
    /// Rows to fetch; callers ask one more than they show to learn `hasNextPage`.
    pub limit: i64,
}

impl ProductPage {
    /// Appends ` AND …` conditions for the filter and the keyset position.
    fn push_conditions(&self, sql: &mut Sql) {
        push_filter(sql, &self.filter);
        if let Some((value, id)) = &self.after {
            let (column, descending) = self.sort.column();
            let op = if descending { "<" } else { ">" };
            let id = sql.bind(*id);
            let condition = match (column, value) {
                (Some(column), SortValue::Int(v)) => {
                    let v = sql.bind(*v);
                    format!(" AND (p.{column}, p.id) {op} ({v}, {id})")
                }
                (Some(column), SortValue::Text(v)) => {
                    let v = sql.bind(v.clone());
                    format!(" AND (p.{column}, p.id) {op} ({v}, {id})")
                }
                _ => format!(" AND p.id {op} {id}"),
            };
            sql.push(&condition);
        }
    }

    fn order_by(&self) -> String {
        let (column, descending) = self.sort.column();
        let dir = if descending { "DESC" } else { "ASC" };
        match column {
            Some(column) => format!("p.{column} {dir}, p.id {dir}"),
            None => format!("p.id {dir}"),
        }
    }
}

fn push_filter(sql: &mut Sql, filter: &ProductFilter) {
    if let Some(category) = filter.category_id {
        let p = sql.bind(category);
        sql.push(&format!(" AND p.category_id = {p}"));
    }
    if let Some(min) = filter.min_price_cents {
        let p = sql.bind(min);
        sql.push(&format!(" AND p.price_cents >= {p}"));
    }
    if let Some(max) = filter.max_price_cents {
        let p = sql.bind(max);
        sql.push(&format!(" AND p.price_cents <= {p}"));
    }
    if let Some(term) = &filter.title_contains {
        let p = sql.bind(format!("%{}%", escape_like(&term.to_lowercase())));
        sql.push(&format!(" AND LOWER(p.title) LIKE {p} ESCAPE '\\'"));
    }
    if let Some(in_stock) = filter.in_stock {
        let not = if in_stock { "" } else { "NOT " };
        sql.push(&format!(
            " AND {not}EXISTS (SELECT 1 FROM inventory i WHERE i.product_id = p.id AND i.available > 0)"
        ));
    }
}

/// Escapes LIKE's wildcards so a search for `50%` means the text `50%`.
fn escape_like(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    pub async fn products_by_ids(&self, ids: &[i64]) -> Result<Vec<ProductRow>, StoreError> {
        self.tags.read(ids.iter().map(|&id| tags::product(id)));
        self.fetch_in_chunks(ids, |sql, list| {
            sql.push(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id IN ({list})"
            ));
        })
        .await
    }

    pub async fn products_by_skus(&self, skus: &[String]) -> Result<Vec<ProductRow>, StoreError> {
        let out = self
            .fetch_in_chunks(skus, |sql, list| {
                sql.push(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.sku IN ({list})"
                ));
            })
            .await?;
        self.tags
            .read(out.iter().map(|row: &ProductRow| tags::product(row.id)));
        Ok(out)
    }

    /// One page of the product listing, in one statement (no OFFSET: the
    /// position is a keyset condition, so deep pages cost what the first does).
    pub async fn products_page(&self, page: &ProductPage) -> Result<Vec<ProductRow>, StoreError> {
        self.tags.read([tags::PRODUCTS.to_string()]);
        let mut sql = Sql::new(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p WHERE 1 = 1"
        ));
        page.push_conditions(&mut sql);
        let limit = sql.bind(page.limit);
        sql.push(&format!(" ORDER BY {} LIMIT {limit}", page.order_by()));
        self.fetch_all(sql).await
    }

    /// The same page of products for each category, in one statement: the
    /// window function numbers each category's rows so one query serves all
    /// parents (`categories { products(first: 5) }` is not N queries).
    pub async fn products_pages_by_category(
        &self,
        category_ids: &[i64],
        page: &ProductPage,
    ) -> Result<Vec<ProductRow>, StoreError> {
        self.tags.read([tags::PRODUCTS.to_string()]);
        self.fetch_in_chunks(category_ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, sku, title, description, price_cents, currency, category_id, \
             created_at, updated_at FROM (SELECT {PRODUCT_COLUMNS}, ROW_NUMBER() OVER \
             (PARTITION BY p.category_id ORDER BY {}) AS rn FROM products p \
             WHERE p.category_id IN ({list})",
                page.order_by()
            ));
            page.push_conditions(sql);
            let limit = sql.bind(page.limit);
            sql.push(&format!(
                ") AS t WHERE t.rn <= {limit} ORDER BY t.category_id, t.rn"
            ));
        })
        .await
    }

    pub async fn products_count(&self, filter: &ProductFilter) -> Result<i64, StoreError> {
        self.tags.read([tags::PRODUCTS.to_string()]);
        let mut sql = Sql::new("SELECT COUNT(*) FROM products p WHERE 1 = 1");
        push_filter(&mut sql, filter);
        let (count,): (i64,) = self.fetch_one(sql).await?;
        Ok(count)
    }

    pub async fn products_count_by_category(
        &self,
        category_ids: &[i64],
        filter: &ProductFilter,
    ) -> Result<Vec<CountRow>, StoreError> {
        self.tags.read([tags::PRODUCTS.to_string()]);
        self.fetch_in_chunks(category_ids, |sql, list| {
            sql.push(&format!(
                "SELECT p.category_id AS parent_id, COUNT(*) AS count FROM products p \
             WHERE p.category_id IN ({list})"
            ));
            push_filter(sql, filter);
            sql.push(" GROUP BY p.category_id");
        })
        .await
    }

    pub async fn categories_all(&self) -> Result<Vec<CategoryRow>, StoreError> {
        self.tags.read([tags::CATEGORIES.to_string()]);
        self.fetch_all(Sql::new(
            "SELECT id, name, slug FROM categories ORDER BY name, id",
        ))
        .await
    }

    pub async fn categories_by_ids(&self, ids: &[i64]) -> Result<Vec<CategoryRow>, StoreError> {
        self.tags.read(ids.iter().map(|&id| tags::category(id)));
        self.fetch_in_chunks(ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, name, slug FROM categories WHERE id IN ({list})"
            ));
        })
        .await
    }

    pub async fn categories_by_slugs(
        &self,
        slugs: &[String],
    ) -> Result<Vec<CategoryRow>, StoreError> {
        self.tags.read([tags::CATEGORIES.to_string()]);
        self.fetch_in_chunks(slugs, |sql, list| {
            sql.push(&format!(
                "SELECT id, name, slug FROM categories WHERE slug IN ({list})"
            ));
        })
        .await
    }

    pub async fn inventory_by_products(
        &self,
        product_ids: &[i64],
    ) -> Result<Vec<InventoryRow>, StoreError> {
        self.tags
            .read(product_ids.iter().map(|&id| tags::inventory(id)));
        self.fetch_in_chunks(product_ids, |sql, list| {
            sql.push(&format!(
                "SELECT product_id, warehouse, available FROM inventory \
             WHERE product_id IN ({list}) ORDER BY product_id, warehouse"
            ));
        })
        .await
    }

    /// The first `limit` images of each product, by position.
    pub async fn images_by_products(
        &self,
        product_ids: &[i64],
        limit: i64,
    ) -> Result<Vec<ImageRow>, StoreError> {
        self.tags
            .read(product_ids.iter().map(|&id| tags::product(id)));
        self.fetch_in_chunks(product_ids, |sql, list| {
            let limit = sql.bind(limit);
            sql.push(&format!(
                "SELECT id, product_id, url, alt, position FROM (SELECT id, product_id, url, \
             alt, position, ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY position, id) \
             AS rn FROM product_images WHERE product_id IN ({list})) AS t \
             WHERE t.rn <= {limit} ORDER BY product_id, rn"
            ));
        })
        .await
    }

    /// Each product's newest reviews (by id, descending), at most `limit`, older
    /// than the review `before` when given: one statement for every product.
    pub async fn reviews_by_products(
        &self,
        product_ids: &[i64],
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<ReviewRow>, StoreError> {
        self.tags
            .read(product_ids.iter().map(|&id| tags::reviews(id)));
        self.fetch_in_chunks(product_ids, |sql, list| {
            let before = match before {
                Some(id) => format!(" AND id < {}", sql.bind(id)),
                None => String::new(),
            };
            let limit = sql.bind(limit);
            sql.push(&format!(
                "SELECT id, product_id, customer_id, rating, body, created_at FROM (SELECT id, \
             product_id, customer_id, rating, body, created_at, ROW_NUMBER() OVER \
             (PARTITION BY product_id ORDER BY id DESC) AS rn FROM reviews \
             WHERE product_id IN ({list}){before}) AS t \
             WHERE t.rn <= {limit} ORDER BY product_id, rn"
            ));
        })
        .await
    }

    pub async fn reviews_by_ids(&self, ids: &[i64]) -> Result<Vec<ReviewRow>, StoreError> {
        self.fetch_in_chunks(ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, product_id, customer_id, rating, body, created_at FROM reviews \
             WHERE id IN ({list})"
            ));
        })
        .await
    }

    pub async fn review_stats_by_products(
        &self,
        product_ids: &[i64],
    ) -> Result<Vec<ReviewStatsRow>, StoreError> {
        self.tags
            .read(product_ids.iter().map(|&id| tags::reviews(id)));
        self.fetch_in_chunks(product_ids, |sql, list| {
            sql.push(&format!(
                "SELECT product_id, COUNT(*) AS review_count, \
             CAST(AVG(rating) AS DOUBLE PRECISION) AS average_rating FROM reviews \
             WHERE product_id IN ({list}) GROUP BY product_id"
            ));
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn keyset_condition_follows_the_sort_direction() {
        let page = ProductPage {
            filter: ProductFilter {
                category_id: Some(3),
                ..Default::default()
            },
            sort: ProductSort::PriceDesc,
            after: Some((SortValue::Int(1999), 42)),
            limit: 21,
        };
        let mut sql = Sql::new("WHERE 1 = 1");
        page.push_conditions(&mut sql);
        assert_eq!(
            sql.text(),
            "WHERE 1 = 1 AND p.category_id = $1 AND (p.price_cents, p.id) < ($3, $2)"
        );
        assert_eq!(page.order_by(), "p.price_cents DESC, p.id DESC");
    }
}
