//! Cache tags: names for the data a request read and the data it changed,
//! recorded by the store as it runs statements. A cached response is tagged
//! with what it read; a write purges the responses tagged with what it
//! changed (and a CDN can purge by the same names: `Surrogate-Key`).
//!
//! `product:{id}` a product's own row and images; `products` any listing or
//! count of products (a new price can reorder or refilter it);
//! `category:{id}`, `categories`; `inventory:{product}` its stock;
//! `reviews:{product}` its reviews and their aggregates; `customer:{id}` a
//! review author's public name.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct TagLog {
    read: Arc<Mutex<BTreeSet<String>>>,
    written: Arc<Mutex<BTreeSet<String>>>,
}

impl TagLog {
    pub(super) fn read(&self, tags: impl IntoIterator<Item = String>) {
        lock(&self.read).extend(tags);
    }

    pub(super) fn wrote(&self, tags: impl IntoIterator<Item = String>) {
        lock(&self.written).extend(tags);
    }

    pub fn tags_read(&self) -> Vec<String> {
        lock(&self.read).iter().cloned().collect()
    }

    pub fn tags_written(&self) -> Vec<String> {
        lock(&self.written).iter().cloned().collect()
    }
}

fn lock(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

pub const PRODUCTS: &str = "products";
pub const CATEGORIES: &str = "categories";

pub fn product(id: i64) -> String {
    format!("product:{id}")
}

pub fn category(id: i64) -> String {
    format!("category:{id}")
}

pub fn inventory(product_id: i64) -> String {
    format!("inventory:{product_id}")
}

pub fn reviews(product_id: i64) -> String {
    format!("reviews:{product_id}")
}

pub fn customer(id: i64) -> String {
    format!("customer:{id}")
}
