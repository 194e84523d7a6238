//! Users, passwords (argon2) and bearer tokens (JWT, HS256, key kept in the data directory).

use crate::error::ApiError;
use crate::AppState;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sprout_core::api::{LoginRequest, LoginResponse};
use sprout_store::Store;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const TOKEN_LIFETIME_DAYS: i64 = 7;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
}

#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("signing key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("password hashing: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] sprout_store::StoreError),
}

impl Auth {
    /// Loads the signing key from `dir/jwt.key`, making one (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join("jwt.key");
        let key_err = |source| AuthError::Key {
            path: path.display().to_string(),
            source,
        };
        let secret = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => bytes,
            _ => {
                let secret: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(key_err)?;
                file.write_all(&secret).map_err(key_err)?;
                secret
            }
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
        })
    }

    pub fn issue(&self, username: &str, role: &str) -> Result<LoginResponse, ApiError> {
        let now = Utc::now();
        let expires_at = now + Duration::days(TOKEN_LIFETIME_DAYS);
        let claims = Claims {
            sub: username.into(),
            role: role.into(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok(LoginResponse {
            token,
            username: username.into(),
            role: role.into(),
            expires_at,
        })
    }

    fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &Validation::new(Algorithm::HS256))
            .map_err(|e| {
                ApiError::unauthorized(format!("invalid token: {e}; run `sprout login`"))
            })?;
        Ok(Caller {
            username: data.claims.sub,
            role: data.claims.role,
        })
    }
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Makes the `admin` user on first start. Returns the password when Sprout generated it, so
/// the caller prints it once.
pub async fn ensure_admin(
    store: &Store,
    configured: Option<&str>,
) -> Result<Option<String>, AuthError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match configured {
        Some(p) if !p.is_empty() => (p.to_string(), false),
        _ => {
            let p: String = (0..20)
                .map(|_| {
                    let chars = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
                    chars[rand::random::<usize>() % chars.len()] as char
                })
                .collect();
            (p, true)
        }
    };
    store
        .create_user("admin", &hash_password(&password)?, "admin")
        .await?;
    Ok(generated.then_some(password))
}

/// Checks a login; the same answer whichever part was wrong.
pub async fn login(state: &AppState, req: &LoginRequest) -> Result<LoginResponse, ApiError> {
    let denied = || ApiError::unauthorized("wrong user name or password");
    let user = state.control.store().get_user(&req.username).await?;
    let password = req.password.clone();
    let Some(user) = user else {
        // Spend the same time as a real check, so timing does not reveal which users exist.
        let _ = tokio::task::spawn_blocking(move || verify_password(&password, "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
        return Err(denied());
    };
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::warn!(user = %req.username, "failed login");
        return Err(denied());
    }
    state.auth.issue(&user.username, &user.role)
}

/// Who is calling, from a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: String,
}

impl Caller {
    /// Viewers read; deployers and admins change things.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == "viewer" {
            return Err(ApiError::forbidden(format!(
                "user '{}' has the viewer role and cannot change anything",
                self.username
            )));
        }
        Ok(())
    }
}

/// Who a token belongs to: a valid signature, not expired, and its user still exists. The
/// bearer header and the dashboard's session cookie both end here.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let caller = state.auth.verify(token)?;
    // A token outlives nothing: its user must still exist.
    if state
        .control
        .store()
        .get_user(&caller.username)
        .await?
        .is_none()
    {
        return Err(ApiError::unauthorized("the token's user no longer exists"));
    }
    Ok(caller)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token; run `sprout login`"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        authenticate(state, token.trim()).await
    }
}
