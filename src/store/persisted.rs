//! The operator registry of persisted documents. An import is one
//! transaction: either every document of a manifest is registered or none.

use super::{now_timestamp, PersistedDocumentRow, Sql, Store, StoreError};

const COLUMNS: &str = "id, client, sha256, name, operation_type, body, cost, registered_at";

impl Store {
    /// Registers `documents` (replacing any with the same id and client) in
    /// one transaction.
    pub async fn register_documents(
        &self,
        documents: &[PersistedDocumentRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let registered_at = now_timestamp();
        for document in documents {
            let mut sql = Sql::new("");
            let id = sql.bind(document.id.clone());
            let client = sql.bind(document.client.clone());
            let sha256 = sql.bind(document.sha256.clone());
            let name = sql.bind(document.name.clone());
            let operation_type = sql.bind(document.operation_type.clone());
            let body = sql.bind(document.body.clone());
            let cost = sql.bind(document.cost);
            let at = sql.bind(registered_at.clone());
            // Delete then insert: the same text on SQLite and PostgreSQL, and
            // atomic inside the transaction.
            let mut delete = Sql::new("");
            let did = delete.bind(document.id.clone());
            let dclient = delete.bind(document.client.clone());
            delete.push(&format!(
                "DELETE FROM persisted_documents WHERE id = {did} AND client = {dclient}"
            ));
            sql.push(&format!(
                "INSERT INTO persisted_documents ({COLUMNS}) \
                 VALUES ({id}, {client}, {sha256}, {name}, {operation_type}, {body}, {cost}, {at})"
            ));
            for statement in [delete, sql] {
                self.count_statement();
                let (text, args) = statement.finish();
                sqlx::query_with(&text, args).execute(&mut *tx).await?;
            }
        }
        // Every replica forgets what it cached of the registry.
        self.notify(&mut tx, &[], true).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every registered document, by id then client.
    pub async fn persisted_documents(&self) -> Result<Vec<PersistedDocumentRow>, StoreError> {
        self.fetch_all(Sql::new(&format!(
            "SELECT {COLUMNS} FROM persisted_documents ORDER BY id, client"
        )))
        .await
    }

    /// The documents a client may refer to by `key`: its id or the SHA-256 of
    /// its body, registered for every client or for this one.
    pub async fn persisted_documents_by_key(
        &self,
        key: &str,
        client: &str,
    ) -> Result<Vec<PersistedDocumentRow>, StoreError> {
        let mut sql = Sql::new("");
        let by_id = sql.bind(key.to_string());
        let by_hash = sql.bind(key.to_string());
        let client = sql.bind(client.to_string());
        sql.push(&format!(
            "SELECT {COLUMNS} FROM persisted_documents \
             WHERE (id = {by_id} OR sha256 = {by_hash}) AND (client = '' OR client = {client}) \
             ORDER BY client DESC"
        ));
        self.fetch_all(sql).await
    }

    /// Removes the document `id` (for every client it was registered for,
    /// or only for `client`). Returns how many rows went.
    pub async fn remove_persisted_document(
        &self,
        id: &str,
        client: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut sql = Sql::new("");
        let id = sql.bind(id.to_string());
        sql.push(&format!("DELETE FROM persisted_documents WHERE id = {id}"));
        if let Some(client) = client {
            let client = sql.bind(client.to_string());
            sql.push(&format!(" AND client = {client}"));
        }
        self.count_statement();
        let (text, args) = sql.finish();
        let mut tx = self.begin().await?;
        let removed = sqlx::query_with(&text, args)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed > 0 {
            self.notify(&mut tx, &[], true).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }
}
