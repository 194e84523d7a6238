use crate::{now, unique_or, Result, Store, StoreError};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    /// Tokens carry it; one that carries another is refused (migration 0010).
    pub token_epoch: String,
}

/// A random epoch: never the same twice, so a user added again under an old name does not
/// accept the old user's tokens.
fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Store {
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<UserRow> {
        sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, password_hash, role, created_at, token_epoch) \
             VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now())
        .bind(new_epoch())
        .fetch_one(self.pool())
        .await
        .map_err(|e| unique_or(e, || format!("user '{username}' already exists")))
    }

    pub async fn get_user(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE username = ?")
                .bind(username)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn count_users(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query_as::<_, UserRow>("SELECT * FROM users ORDER BY username")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Removes a user and, with it, every token it holds. Refuses to remove the last admin, so
    /// the server never locks everyone out; the check and the delete are one statement.
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM users WHERE username = ?1 AND (role <> 'admin' \
             OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)",
        )
        .bind(username)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match self.get_user(username).await? {
            None => Err(StoreError::NotFound(format!("user '{username}' not found"))),
            Some(_) => Err(StoreError::Conflict(format!(
                "'{username}' is the last admin; add another admin first"
            ))),
        }
    }

    /// Sets a user's password and revokes every token it holds (a new epoch; its named API
    /// tokens are marked revoked), in one transaction.
    pub async fn set_password(&self, username: &str, password_hash: &str) -> Result<UserRow> {
        self.renew_epoch(username, Some(password_hash)).await
    }

    /// Revokes every token a user holds: sessions and named API tokens alike.
    pub async fn revoke_all_tokens(&self, username: &str) -> Result<UserRow> {
        self.renew_epoch(username, None).await
    }

    async fn renew_epoch(&self, username: &str, password_hash: Option<&str>) -> Result<UserRow> {
        let mut tx = self.pool().begin().await?;
        let user = sqlx::query_as::<_, UserRow>(
            "UPDATE users SET token_epoch = ?1, password_hash = COALESCE(?2, password_hash) \
             WHERE username = ?3 RETURNING *",
        )
        .bind(new_epoch())
        .bind(password_hash)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user '{username}' not found")))?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND kind = 'api' \
             AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(username)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Records a token (a named API token, or a session token being revoked).
    pub async fn insert_token(&self, token: &TokenRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, username, role, kind, created_at, expires_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.username)
        .bind(&token.role)
        .bind(&token.kind)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            unique_or(e, || {
                format!(
                    "user '{}' already has a token named '{}'",
                    token.username, token.name
                )
            })
        })?;
        Ok(())
    }

    pub async fn token_revoked(&self, id: &str) -> Result<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM api_tokens WHERE id = ? AND revoked_at IS NOT NULL")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Named API tokens, of one user or of everyone.
    pub async fn list_tokens(&self, username: Option<&str>) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as::<_, TokenRow>(
            "SELECT * FROM api_tokens WHERE kind = 'api' AND (?1 IS NULL OR username = ?1) \
             ORDER BY username, created_at",
        )
        .bind(username)
        .fetch_all(self.pool())
        .await?)
    }

    /// Revokes a named token by id or name; `owner` limits it to that user's tokens.
    pub async fn revoke_token(&self, id_or_name: &str, owner: Option<&str>) -> Result<TokenRow> {
        sqlx::query_as::<_, TokenRow>(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?1) \
             WHERE kind = 'api' AND (id = ?2 OR name = ?2) AND (?3 IS NULL OR username = ?3) \
             RETURNING *",
        )
        .bind(now())
        .bind(id_or_name)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no token '{id_or_name}'")))
    }

    pub async fn record_audit(
        &self,
        actor: &str,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (actor, method, path, status, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(actor)
        .bind(method)
        .bind(path)
        .bind(i64::from(status))
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, oldest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRow>> {
        Ok(sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub role: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub created_at: DateTime<Utc>,
}
