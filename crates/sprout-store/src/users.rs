use crate::{now, unique_or, Result, Store};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<UserRow> {
        sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING *",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now())
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
}
