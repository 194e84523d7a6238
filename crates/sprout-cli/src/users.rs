//! The API's users, tokens, audit log and logout, as [`Client`] calls (`sprout user …`,
//! `sprout token …`, `sprout audit`, `sprout logout`).

use crate::client::Client;
use crate::error::CliError;
use reqwest::Method;
use sprout_core::api::{
    ApiToken, AuditEntry, ChangePassword, CreateToken, CreateUser, CreatedToken, PasswordChanged,
    User,
};

impl Client {
    pub async fn create_user(&self, req: &CreateUser) -> Result<User, CliError> {
        self.send_json(Method::POST, &["users"], Some(req)).await
    }
    pub async fn list_users(&self) -> Result<Vec<User>, CliError> {
        self.get_json(&["users"], &[]).await
    }
    pub async fn remove_user(&self, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["users", name])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }
    pub async fn change_password(
        &self,
        name: &str,
        req: &ChangePassword,
    ) -> Result<PasswordChanged, CliError> {
        self.send_json(Method::PUT, &["users", name, "password"], Some(req))
            .await
    }
    pub async fn revoke_user_tokens(&self, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["users", name, "tokens"])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, CliError> {
        self.send_json(Method::POST, &["tokens"], Some(req)).await
    }
    pub async fn list_tokens(&self, all: bool) -> Result<Vec<ApiToken>, CliError> {
        let query = if all {
            vec![("all", "true".to_string())]
        } else {
            vec![]
        };
        self.get_json(&["tokens"], &query).await
    }
    pub async fn revoke_token(&self, token: &str) -> Result<ApiToken, CliError> {
        self.send_json::<(), _>(Method::DELETE, &["tokens", token], None)
            .await
    }
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, CliError> {
        self.get_json(&["audit"], &[("limit", limit.to_string())])
            .await
    }
    pub async fn logout(&self) -> Result<(), CliError> {
        let url = self.api_url(&["logout"])?;
        self.send(self.request(Method::POST, url)).await.map(|_| ())
    }
}
