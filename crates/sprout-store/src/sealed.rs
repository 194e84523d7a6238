//! Where the store meets [`SecretBox`](crate::SecretBox): which columns hold secrets, and the pass that seals
//! rows an older Sprout wrote in plaintext.
//!
//! Upgrade rule: every read opens (a value without the sealed prefix passes as it is), every
//! write seals, and [`Store::open_with`] seals all plaintext left in the secret columns
//! before the store is used, in one transaction, then truncates the WAL. With
//! `secure_delete` on, the plaintext does not survive in free pages either.

use crate::operations::BeforeState;
use crate::{Result, Store};

/// `environments.properties`, `saved_configs.properties` and the properties inside
/// `operations.before_state`: the JSON object of an environment's properties.
pub(crate) const PROPERTIES: &str = "properties";
/// `access_keys.secret`: the SQS secret access key.
pub(crate) const SQS_SECRET: &str = "sqs-secret";

impl Store {
    pub(crate) fn seal(&self, purpose: &str, plaintext: &str) -> Result<String> {
        Ok(self.secrets.seal(purpose, plaintext)?)
    }

    pub(crate) fn open_secret(&self, purpose: &str, stored: &str) -> Result<String> {
        Ok(self.secrets.open(purpose, stored)?)
    }

    /// Seals a stored value that may still be plaintext.
    pub(crate) fn reseal(&self, purpose: &str, stored: &str) -> Result<String> {
        Ok(self.secrets.reseal(purpose, stored)?)
    }

    /// Seals every secret an older Sprout stored in plaintext (see the module's comment).
    pub(crate) async fn seal_plaintext_rows(&self) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let mut sealed = 0usize;
        for (table, key, column, purpose) in [
            ("environments", "id", "properties", PROPERTIES),
            ("saved_configs", "id", "properties", PROPERTIES),
            ("access_keys", "access_key_id", "secret", SQS_SECRET),
        ] {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT CAST({key} AS TEXT), {column} FROM {table} WHERE {column} NOT LIKE 'sealed:%'"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for (id, plain) in rows {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = ? WHERE CAST({key} AS TEXT) = ?"
                ))
                .bind(self.seal(purpose, &plain)?)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                sealed += 1;
            }
        }
        let befores: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, before_state FROM operations WHERE before_state IS NOT NULL \
             AND before_state NOT LIKE '%\"properties\":\"sealed:%'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, json) in befores {
            let Ok(mut before) = serde_json::from_str::<BeforeState>(&json) else {
                continue;
            };
            before.properties = self.reseal(PROPERTIES, &before.properties)?;
            let json = crate::to_json("operation before-state", &before)?;
            sqlx::query("UPDATE operations SET before_state = ? WHERE id = ?")
                .bind(json)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sealed += 1;
        }
        tx.commit().await?;
        if sealed > 0 {
            // The WAL still holds the pages as they were; fold it in and empty it.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(self.pool())
                .await?;
            tracing::info!(
                rows = sealed,
                "sealed secrets an older Sprout stored in plaintext"
            );
        }
        Ok(())
    }
}
