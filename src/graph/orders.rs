//! Orders: personal data, visible to their customer and to admins only, and
//! never cached publicly.

use std::collections::HashMap;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::catalog::{timestamp, Money, Product, ProductId};
use super::customers::{Customer, CustomerId};
use super::error::ApiError;
use super::loader::{
    collect_children, group_by_params, loader, require_owner_or_admin, store, viewer, StoreLoader,
};
use super::pagination::{
    decode_id_cursor, encode_id_cursor, page_size, parse_id, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use crate::store::{self, OrderItemRow, OrderPage, OrderRow};

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderId(pub i64);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemsOf(pub i64);
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrdersOfCustomer {
    customer_id: i64,
    page: OrderPage,
}
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderCountOfCustomer {
    customer_id: i64,
    status: Option<String>,
}

impl Loader<OrderId> for StoreLoader {
    type Value = OrderRow;
    type Error = ApiError;

    async fn load(&self, keys: &[OrderId]) -> Result<HashMap<OrderId, OrderRow>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.orders_by_ids(&ids).await?;
        Ok(rows.into_iter().map(|r| (OrderId(r.id), r)).collect())
    }
}

impl Loader<ItemsOf> for StoreLoader {
    type Value = Vec<OrderItemRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ItemsOf],
    ) -> Result<HashMap<ItemsOf, Vec<OrderItemRow>>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.order_items_by_orders(&ids).await?;
        Ok(collect_children(keys.iter().copied(), rows, |r| {
            ItemsOf(r.order_id)
        }))
    }
}

impl Loader<OrdersOfCustomer> for StoreLoader {
    type Value = Vec<OrderRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[OrdersOfCustomer],
    ) -> Result<HashMap<OrdersOfCustomer, Vec<OrderRow>>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for (page, ids) in group_by_params(keys, |k| (k.customer_id, k.page.clone())) {
            let rows = self.store.orders_pages_by_customer(&ids, &page).await?;
            let keys = ids.iter().map(|&customer_id| OrdersOfCustomer {
                customer_id,
                page: page.clone(),
            });
            out.extend(collect_children(keys, rows, |r| OrdersOfCustomer {
                customer_id: r.customer_id,
                page: page.clone(),
            }));
        }
        Ok(out)
    }
}

impl Loader<OrderCountOfCustomer> for StoreLoader {
    type Value = i64;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[OrderCountOfCustomer],
    ) -> Result<HashMap<OrderCountOfCustomer, i64>, ApiError> {
        let mut out = HashMap::with_capacity(keys.len());
        for (status, ids) in group_by_params(keys, |k| (k.customer_id, k.status.clone())) {
            let counts = self.store.orders_count_by_customer(&ids, &status).await?;
            for customer_id in ids {
                let count = counts
                    .iter()
                    .find(|c| c.parent_id == customer_id)
                    .map_or(0, |c| c.count);
                let key = OrderCountOfCustomer {
                    customer_id,
                    status: status.clone(),
                };
                out.insert(key, count);
            }
        }
        Ok(out)
    }
}

/// Where an order is in its life. PENDING → PAID → SHIPPED → DELIVERED;
/// PENDING or PAID → CANCELLED.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where an order connection's `totalCount` comes from.
#[derive(Clone)]
pub enum OrderCountSource {
    All(Option<String>),
    Customer(OrderCountOfCustomer),
}

/// Fields of `OrderConnection` besides edges, nodes and pageInfo.
pub struct OrderConnectionFields {
    count: OrderCountSource,
}

#[Object]
impl OrderConnectionFields {
    /// How many orders the listing has in all pages (one extra statement, run
    /// only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(match &self.count {
            OrderCountSource::All(status) => store(ctx)?
                .orders_count(status)
                .await
                .map_err(ApiError::from)?,
            OrderCountSource::Customer(key) => {
                loader(ctx)?.load_one(key.clone()).await?.unwrap_or(0)
            }
        })
    }
}

pub type OrderConnection = Connection<String, Order, OrderConnectionFields, EmptyFields>;

fn order_page(
    first: i32,
    after: Option<&str>,
    status: Option<OrderStatus>,
) -> Result<(OrderPage, i64), ApiError> {
    let shown = page_size("first", first, MAX_PAGE_SIZE)?;
    let before_id = after
        .map(|c| decode_id_cursor("after", "o", c))
        .transpose()?;
    let page = OrderPage {
        status: status.map(|s| s.as_str().to_string()),
        before_id,
        limit: shown + 1,
    };
    Ok((page, shown))
}

fn order_connection(
    mut rows: Vec<OrderRow>,
    shown: i64,
    has_previous_page: bool,
    count: OrderCountSource,
) -> OrderConnection {
    let has_next_page = rows.len() as i64 > shown;
    rows.truncate(shown as usize);
    let mut connection = Connection::with_additional_fields(
        has_previous_page,
        has_next_page,
        OrderConnectionFields { count },
    );
    connection.edges = rows
        .into_iter()
        .map(|row| Edge::new(encode_id_cursor("o", row.id), Order(row)))
        .collect();
    connection
}

/// A customer's orders page; the caller has checked the viewer may see them.
pub(crate) async fn orders_of_customer(
    ctx: &Context<'_>,
    customer_id: i64,
    first: i32,
    after: Option<String>,
    status: Option<OrderStatus>,
) -> Result<OrderConnection> {
    let (page, shown) = order_page(first, after.as_deref(), status)?;
    let count = OrderCountOfCustomer {
        customer_id,
        status: page.status.clone(),
    };
    let rows = loader(ctx)?
        .load_one(OrdersOfCustomer { customer_id, page })
        .await?
        .unwrap_or_default();
    Ok(order_connection(
        rows,
        shown,
        after.is_some(),
        OrderCountSource::Customer(count),
    ))
}

pub struct Order(pub OrderRow);

#[Object(cache_control(private))]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The order number shown to the customer.
    async fn number(&self) -> &str {
        &self.0.number
    }

    async fn status(&self) -> Result<OrderStatus> {
        OrderStatus::parse(&self.0.status).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "orders",
                id: self.0.id,
                problem: format!("unknown status {:?}", self.0.status),
            })
            .into()
        })
    }

    async fn customer(&self, ctx: &Context<'_>) -> Result<Customer> {
        let row = loader(ctx)?
            .load_one(CustomerId(self.0.customer_id))
            .await?;
        row.map(Customer).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "orders",
                id: self.0.id,
                problem: "customer does not exist".into(),
            })
            .into()
        })
    }

    async fn items(&self, ctx: &Context<'_>) -> Result<Vec<OrderItem>> {
        let rows = loader(ctx)?.load_one(ItemsOf(self.0.id)).await?;
        let currency = &self.0.currency;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| OrderItem {
                row,
                currency: currency.clone(),
            })
            .collect())
    }

    async fn total(&self) -> Money {
        Money::new(self.0.total_cents, &self.0.currency)
    }

    async fn created_at(&self) -> Result<DateTime<Utc>> {
        timestamp("orders", self.0.id, &self.0.created_at)
    }

    async fn updated_at(&self) -> Result<DateTime<Utc>> {
        timestamp("orders", self.0.id, &self.0.updated_at)
    }
}

/// One line of an order, at the price paid.
pub struct OrderItem {
    row: OrderItemRow,
    currency: String,
}

#[Object(cache_control(private))]
impl OrderItem {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        let row = loader(ctx)?
            .load_one(ProductId(self.row.product_id))
            .await?;
        row.map(Product).ok_or_else(|| {
            ApiError::from(store::StoreError::Corrupt {
                table: "order_items",
                id: self.row.id,
                problem: "product does not exist".into(),
            })
            .into()
        })
    }

    async fn quantity(&self) -> i64 {
        self.row.quantity
    }

    /// The product's price when the order was placed.
    async fn unit_price(&self) -> Money {
        Money::new(self.row.unit_price_cents, &self.currency)
    }

    async fn line_total(&self) -> Money {
        Money::new(
            self.row.unit_price_cents * self.row.quantity,
            &self.currency,
        )
    }
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// One order: its customer or an admin only.
    #[graphql(cache_control(private))]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let id = parse_id("id", &id)?;
        load_visible_order(ctx, id).await
    }

    /// Every order, newest first (admin only; null with an error for others).
    #[graphql(cache_control(private))]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_PAGE_SIZE")] first: i32,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> Result<Option<OrderConnection>> {
        let viewer = viewer(ctx);
        if !viewer.admin {
            return Err(if viewer.is_authenticated() {
                ApiError::Forbidden("only admins may list all orders")
            } else {
                ApiError::Unauthenticated("sign in with an admin token to list all orders")
            }
            .into());
        }
        let (page, shown) = order_page(first, after.as_deref(), status)?;
        let rows = store(ctx)?
            .orders_page(&page)
            .await
            .map_err(ApiError::from)?;
        Ok(Some(order_connection(
            rows,
            shown,
            after.is_some(),
            OrderCountSource::All(page.status),
        )))
    }

    #[graphql(entity)]
    async fn find_order_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        self.order(ctx, id).await
    }
}

/// Loads an order and checks the viewer may see it. Anonymous viewers are
/// refused before the lookup, so they cannot probe which ids exist.
async fn load_visible_order(ctx: &Context<'_>, id: i64) -> Result<Option<Order>> {
    let viewer = viewer(ctx);
    if !viewer.is_authenticated() {
        return Err(
            ApiError::Unauthenticated("sign in (send a bearer token) to see orders").into(),
        );
    }
    let Some(row) = loader(ctx)?.load_one(OrderId(id)).await? else {
        return Ok(None);
    };
    require_owner_or_admin(viewer, row.customer_id)?;
    Ok(Some(Order(row)))
}
