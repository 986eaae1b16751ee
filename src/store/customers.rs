//! Customer reads.

use super::{tags, CustomerRow, Store, StoreError};

impl Store {
    pub async fn customers_by_ids(&self, ids: &[i64]) -> Result<Vec<CustomerRow>, StoreError> {
        self.tags.read(ids.iter().map(|&id| tags::customer(id)));
        self.fetch_in_chunks(ids, |sql, list| {
            sql.push(&format!(
                "SELECT id, name, email, CASE WHEN verified THEN 1 ELSE 0 END AS verified \
             FROM customers WHERE id IN ({list})"
            ));
        })
        .await
    }
}
