//! Customers. Name and verification are public (they sign reviews); email and
//! orders are visible to the customer and to admins only.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, Object, Result, ID};

use super::error::ApiError;
use super::federation::{authenticated, entity_or_null};
use super::loader::{loader, require_owner_or_admin, viewer, StoreLoader};
use super::orders::{orders_of_customer, OrderConnection, OrderStatus};
use super::pagination::{parse_id, DEFAULT_PAGE_SIZE};
use crate::store::CustomerRow;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerId(pub i64);

/// Shared, not copied, as products are (see `catalog`).
impl Loader<CustomerId> for StoreLoader {
    type Value = Arc<CustomerRow>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[CustomerId],
    ) -> Result<HashMap<CustomerId, Arc<CustomerRow>>, ApiError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let rows = self.store.customers_by_ids(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| (CustomerId(r.id), Arc::new(r)))
            .collect())
    }
}

pub struct Customer(pub Arc<CustomerRow>);

#[Object(cache_control(max_age = 60))]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether the customer's identity has been checked.
    async fn verified(&self) -> bool {
        self.0.verified != 0
    }

    /// The customer's email: visible to the customer and admins only (an
    /// error at this path for anyone else).
    #[graphql(cache_control(private), tag = "personal", directive = authenticated::apply())]
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        require_owner_or_admin(viewer(ctx), self.0.id)?;
        Ok(Some(&self.0.email))
    }

    /// The customer's orders, newest first: visible to the customer and admins
    /// only. Null, with an error at this path, for anyone else.
    #[graphql(cache_control(private), tag = "personal", directive = authenticated::apply())]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DEFAULT_PAGE_SIZE")] first: i32,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> Result<Option<OrderConnection>> {
        require_owner_or_admin(viewer(ctx), self.0.id)?;
        Ok(Some(
            orders_of_customer(ctx, self.0.id, first, after, status).await?,
        ))
    }
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// The signed-in customer; null for an admin token that names no customer.
    #[graphql(cache_control(private), tag = "personal", directive = authenticated::apply())]
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        let viewer = viewer(ctx);
        if !viewer.is_authenticated() {
            return Err(
                ApiError::Unauthenticated("sign in (send a bearer token) to see `me`").into(),
            );
        }
        let Some(id) = viewer.customer_id else {
            return Ok(None);
        };
        Ok(loader(ctx)?.load_one(CustomerId(id)).await?.map(Customer))
    }

    #[graphql(entity)]
    async fn find_customer_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Customer>> {
        let found = async {
            let key = CustomerId(parse_id("id", &id)?);
            Ok(loader(ctx)?.load_one(key).await?.map(Customer))
        }
        .await;
        Ok(entity_or_null(ctx, "Customer", &id, found))
    }
}
