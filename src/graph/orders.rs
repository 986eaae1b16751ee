//! Orders: personal data, visible to their customer and to admins only, and
//! never cached publicly.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::Stream;

use super::catalog::{timestamp, Money, Product, ProductId};
use super::customers::{Customer, CustomerId};
use super::error::ApiError;
use super::federation::{authenticated, entity_or_null};
use super::live;
use super::loader::{
    collect_children, group_by_params, loader, require_admin, require_customer,
    require_owner_or_admin, store, viewer, StoreLoader,
};
use super::pagination::{
    decode_id_cursor, encode_id_cursor, page_size, parse_id, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use crate::auth::Viewer;
use crate::events::Topic;
use crate::store::{self, OrderItemRow, OrderPage, OrderRow, ProductRow};

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

/// Shared: the loader's cache and every resolver of the order hold the same
/// rows (an order of W2 has a few, a page of orders some hundreds).
impl Loader<ItemsOf> for StoreLoader {
    type Value = Arc<[OrderItemRow]>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ItemsOf],
    ) -> Result<HashMap<ItemsOf, Arc<[OrderItemRow]>>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.order_items_by_orders(&ids).await?;
        let children = collect_children(keys.iter().copied(), rows, |r| ItemsOf(r.order_id));
        Ok(children
            .into_iter()
            .map(|(key, rows)| (key, rows.into()))
            .collect())
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
    viewer: Viewer,
) -> Result<OrderConnection, ApiError> {
    let has_next_page = rows.len() as i64 > shown;
    rows.truncate(shown as usize);
    let mut connection = Connection::with_additional_fields(
        has_previous_page,
        has_next_page,
        OrderConnectionFields { count },
    );
    connection.edges = rows
        .into_iter()
        .map(|row| {
            Ok(Edge::new(
                encode_id_cursor("o", row.id),
                Order::visible(row, viewer)?,
            ))
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(connection)
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
        viewer(ctx),
    )?)
}

/// An order. Its row is private and the only constructor checks the viewer,
/// so no resolver, loader or entity path can hand out an order its viewer may
/// not see: the rule lives below the resolvers, in the type.
pub struct Order(OrderRow);

impl Order {
    /// The order, if `viewer` is its customer or an admin.
    pub(crate) fn visible(row: OrderRow, viewer: Viewer) -> Result<Order, ApiError> {
        require_owner_or_admin(viewer, row.customer_id)?;
        Ok(Order(row))
    }
}

#[Object(cache_control(private), directive = authenticated::apply())]
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
        let Some(rows) = loader(ctx)?.load_one(ItemsOf(self.0.id)).await? else {
            return Ok(Vec::new());
        };
        // The items' products, when they are asked for, in one look-up for
        // the order rather than one per item (the same batch either way).
        let products = if ctx.look_ahead().field("product").exists() {
            loader(ctx)?
                .load_many(rows.iter().map(|row| ProductId(row.product_id)))
                .await?
        } else {
            HashMap::new()
        };
        // One currency for all the order's items.
        let currency: Arc<str> = self.0.currency.as_str().into();
        Ok(rows
            .iter()
            .map(|row| OrderItem {
                row: row.clone(),
                currency: currency.clone(),
                product: products.get(&ProductId(row.product_id)).cloned(),
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
    currency: Arc<str>,
    /// Its product, if the order already looked it up.
    product: Option<Arc<ProductRow>>,
}

#[Object(cache_control(private))]
impl OrderItem {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        let row = match &self.product {
            Some(row) => Some(row.clone()),
            None => {
                loader(ctx)?
                    .load_one(ProductId(self.row.product_id))
                    .await?
            }
        };
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
    #[graphql(cache_control(private), tag = "personal", directive = authenticated::apply())]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let id = parse_id("id", &id)?;
        load_visible_order(ctx, id).await
    }

    /// Every order, newest first (admin only; null with an error for others).
    #[graphql(cache_control(private), requires_scopes = "admin", tag = "internal")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_PAGE_SIZE")] first: i32,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> Result<Option<OrderConnection>> {
        require_admin(ctx)?;
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
            viewer(ctx),
        )?))
    }

    #[graphql(entity)]
    async fn find_order_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let found = self.order(ctx, id.clone()).await;
        Ok(entity_or_null(ctx, "Order", &id, found))
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
    Ok(Some(Order::visible(row, viewer)?))
}

// ---- writes -------------------------------------------------------------------

/// At most this many lines in one order.
const MAX_ORDER_LINES: usize = 100;
/// At most this many units of one product in one order.
const MAX_QUANTITY: i32 = 1000;
/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

#[derive(InputObject)]
pub struct OrderLineInput {
    pub product_id: ID,
    /// 1 to 1,000.
    pub quantity: i32,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    /// 1 to 100 lines, each product at most once.
    pub items: Vec<OrderLineInput>,
    /// Chosen by the client, unique per order it means to place (a UUID):
    /// retrying with the same key returns the same order instead of placing
    /// another.
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct PlaceOrderPayload {
    pub order: Order,
    /// True when the key had already placed this order (a retry).
    pub replayed: bool,
}

fn parse_lines(input: &PlaceOrderInput) -> Result<Vec<store::NewOrderLine>, ApiError> {
    let invalid = |field: String, message: &str| ApiError::InvalidField {
        field,
        message: message.to_string(),
    };
    if input.items.is_empty() || input.items.len() > MAX_ORDER_LINES {
        return Err(invalid("input.items".into(), "an order has 1 to 100 lines"));
    }
    let key = &input.idempotency_key;
    if key.trim().is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control)
    {
        return Err(invalid(
            "input.idempotencyKey".into(),
            "must be 1 to 128 printable characters",
        ));
    }
    let mut lines: Vec<store::NewOrderLine> = Vec::with_capacity(input.items.len());
    for (i, item) in input.items.iter().enumerate() {
        let product_id = parse_id("productId", &item.product_id)
            .map_err(|_| invalid(format!("input.items[{i}].productId"), "is not a product id"))?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(invalid(
                format!("input.items[{i}].quantity"),
                "must be between 1 and 1000",
            ));
        }
        if lines.iter().any(|l| l.product_id == product_id) {
            return Err(invalid(
                format!("input.items[{i}].productId"),
                "each product may appear once; add up the quantities",
            ));
        }
        lines.push(store::NewOrderLine {
            product_id,
            quantity: i64::from(item.quantity),
        });
    }
    Ok(lines)
}

/// Reads an order again after a write (never from the request's cache, which
/// may hold its state from before the write) and checks the viewer may see it.
async fn reload_order(ctx: &Context<'_>, id: i64) -> Result<Order> {
    let row = order_row(store(ctx)?, id).await?;
    loader(ctx)?.feed_one(OrderId(id), row.clone()).await;
    Ok(Order::visible(row, viewer(ctx))?)
}

#[derive(Default)]
pub struct OrderMutation;

#[Object]
impl OrderMutation {
    /// Places an order for the signed-in customer at the current prices,
    /// taking the stock (all lines or none). Safe to retry with the same
    /// `idempotencyKey`.
    #[graphql(tag = "personal", directive = authenticated::apply())]
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
    ) -> Result<PlaceOrderPayload> {
        let customer_id = require_customer(ctx)?;
        let lines = parse_lines(&input)?;
        let placed = store(ctx)?
            .place_order(customer_id, &input.idempotency_key, &lines)
            .await
            .map_err(ApiError::from)?;
        live::publish_committed(ctx);
        match placed {
            // What the transaction wrote is what committed: no read needed.
            store::Placed::Created(row) => {
                loader(ctx)?.feed_one(OrderId(row.id), row.clone()).await;
                Ok(PlaceOrderPayload {
                    order: Order::visible(row, viewer(ctx))?,
                    replayed: false,
                })
            }
            store::Placed::Replayed(id) => Ok(PlaceOrderPayload {
                order: reload_order(ctx, id).await?,
                replayed: true,
            }),
        }
    }

    /// Cancels a PENDING or PAID order (its customer or an admin) and puts
    /// its stock back.
    #[graphql(tag = "personal", directive = authenticated::apply())]
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<Order> {
        let id = parse_id("id", &id)?;
        if load_visible_order(ctx, id).await?.is_none() {
            return Err(ApiError::NotFound(format!("order {id} does not exist")).into());
        }
        store(ctx)?
            .set_order_status(id, OrderStatus::Cancelled.as_str())
            .await
            .map_err(ApiError::from)?;
        live::publish_committed(ctx);
        reload_order(ctx, id).await
    }

    /// Moves an order along PENDING → PAID → SHIPPED → DELIVERED, or cancels
    /// it (admin only).
    #[graphql(requires_scopes = "admin", tag = "internal")]
    async fn update_order_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: OrderStatus,
    ) -> Result<Order> {
        require_admin(ctx)?;
        let id = parse_id("id", &id)?;
        store(ctx)?
            .set_order_status(id, status.as_str())
            .await
            .map_err(ApiError::from)?;
        live::publish_committed(ctx);
        reload_order(ctx, id).await
    }
}

// ---- subscriptions ------------------------------------------------------------

/// The order as committed, if `viewer` may still see it.
async fn committed_order(store: &store::Store, id: i64, viewer: Viewer) -> Result<Order> {
    Ok(Order::visible(order_row(store, id).await?, viewer)?)
}

/// One order's row, read from the database (not the request's cache).
async fn order_row(store: &store::Store, id: i64) -> Result<OrderRow, ApiError> {
    store
        .orders_by_ids(&[id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("order {id} does not exist")))
}

#[derive(Default)]
pub struct OrderSubscription;

#[Subscription]
impl OrderSubscription {
    /// The order each time its status changes: its customer or an admin
    /// only, like `order`.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> Result<impl Stream<Item = Result<Order>>> {
        let store = live::begin(ctx)?;
        let id = parse_id("orderId", &order_id)?;
        let viewer = viewer(ctx);
        if !viewer.is_authenticated() {
            return Err(ApiError::Unauthenticated(
                "sign in (send a token in connection_init) to watch orders",
            )
            .into());
        }
        let reloads = store.clone();
        let events = live::watch(ctx, &[Topic::Order(id)], move || {
            let store = reloads.clone();
            async move { committed_order(&store, id, viewer).await }
        })?;
        committed_order(&store, id, viewer).await?;
        Ok(events)
    }
}
