//! Customer reads.

use super::catalog::MAX_IDS_PER_STATEMENT;
use super::{tags, CustomerRow, Sql, Store, StoreError};

impl Store {
    pub async fn customers_by_ids(&self, ids: &[i64]) -> Result<Vec<CustomerRow>, StoreError> {
        self.tags.read(ids.iter().map(|&id| tags::customer(id)));
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            let mut sql = Sql::new("");
            let list = sql.bind_list(chunk);
            sql.push(&format!(
                "SELECT id, name, email, CASE WHEN verified THEN 1 ELSE 0 END AS verified \
                 FROM customers WHERE id IN ({list})"
            ));
            out.extend(self.fetch_all(sql).await?);
        }
        Ok(out)
    }
}
