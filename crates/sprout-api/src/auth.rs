//! Users, passwords (argon2) and bearer tokens (JWT, HS256, key kept in the data directory).

use crate::error::ApiError;
use crate::AppState;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sprout_core::api::{
    ApiToken, CreateToken, CreatedToken, LoginRequest, LoginResponse, PasswordChanged,
};
use sprout_core::auth::{parse_token_ttl, LoginThrottles, Role, TokenKind, DEFAULT_TOKEN_TTL};
use sprout_store::{Store, StoreError, TokenRow};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

const TOKEN_LIFETIME_DAYS: i64 = 7;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
    /// The token's id: what `sprout token revoke` and logout name.
    jti: String,
    /// The user's token epoch when the token was issued; the token dies when the user's
    /// epoch changes (removed and added again, password changed, all tokens revoked).
    /// Tokens from before epochs carry none and match a user whose epoch is still ''.
    #[serde(default)]
    epoch: String,
}

#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    throttle: Arc<Mutex<LoginThrottles>>,
}

/// The client's address, when the server knows it (for the login throttle).
pub struct ClientAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
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
            throttle: Arc::default(),
        })
    }

    /// A session token (from a login), valid for [`TOKEN_LIFETIME_DAYS`].
    pub fn issue(&self, user: &sprout_store::UserRow) -> Result<LoginResponse, ApiError> {
        let (username, role) = (user.username.as_str(), user.role.as_str());
        let now = Utc::now();
        let expires_at = now + Duration::days(TOKEN_LIFETIME_DAYS);
        let (token, _) = self.sign(username, role, &user.token_epoch, now, expires_at)?;
        Ok(LoginResponse {
            token,
            username: username.into(),
            role: role.into(),
            expires_at,
        })
    }

    /// Signs a JWT; returns it and its id.
    fn sign(
        &self,
        username: &str,
        role: &str,
        epoch: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(String, String), ApiError> {
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let claims = Claims {
            sub: username.into(),
            role: role.into(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.clone(),
            epoch: epoch.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok((token, jti))
    }

    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token stops working when it expires, not a minute later.
        validation.leeway = 0;
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("the token has expired; run `sprout login`")
                }
                _ => ApiError::unauthorized(format!("invalid token: {e}; run `sprout login`")),
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

/// Checks a login; the same answer whichever part was wrong. Each attempt counts as a
/// failure before its password is checked, in the same locked step as the check, so parallel
/// guesses cannot overtake the count; a right password takes its attempt back. After five
/// attempts for one user name (or four times as many from one client address) within a
/// minute, further attempts are refused (429) without looking at the password
/// ([`LoginThrottles`]). The REST login and the dashboard's login form both end here.
pub async fn login(
    state: &AppState,
    req: &LoginRequest,
    client: Option<std::net::IpAddr>,
) -> Result<LoginResponse, ApiError> {
    let user_key = req.username.trim().to_lowercase();
    let addr_key = client.map(|ip| ip.to_string());
    let throttle = state.auth.throttle.clone();
    let lock = || throttle.lock().unwrap_or_else(|p| p.into_inner());
    let admitted = lock().begin(&user_key, addr_key.as_deref(), Instant::now());
    if let Err(wait) = admitted {
        let secs = wait.as_secs().max(1);
        tracing::warn!(user = %req.username, ?client, "login throttled");
        return Err(ApiError::too_many_requests(
            format!("too many failed logins; try again in {secs} s"),
            secs,
        ));
    }
    let fail = || ApiError::unauthorized("wrong user name or password");
    let user = state.control.store().get_user(&req.username).await?;
    let password = req.password.clone();
    let Some(user) = user else {
        // Spend the same time as a real check, so timing does not reveal which users exist.
        let _ = tokio::task::spawn_blocking(move || verify_password(&password, "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
        return Err(fail());
    };
    let hash = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::warn!(user = %req.username, "failed login");
        return Err(fail());
    }
    lock().succeeded(&user_key, addr_key.as_deref());
    state.auth.issue(&user)
}

/// Makes a named API token for `caller`, with the caller's role.
pub async fn create_api_token(
    state: &AppState,
    caller: &Caller,
    req: &CreateToken,
) -> Result<CreatedToken, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "a token name is 1 to 64 printable characters",
        ));
    }
    let ttl = parse_token_ttl(req.expires_in.as_deref().unwrap_or(DEFAULT_TOKEN_TTL))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = Utc::now();
    let expires_at = now + Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
    let (token, id) = state.auth.sign(
        &caller.username,
        caller.role.as_str(),
        &caller.token_epoch,
        now,
        expires_at,
    )?;
    let row = TokenRow {
        id,
        name: name.to_string(),
        username: caller.username.clone(),
        role: caller.role.as_str().to_string(),
        kind: TokenKind::Api.as_str().to_string(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    state.control.store().insert_token(&row).await?;
    Ok(CreatedToken {
        token,
        info: token_view(row)?,
    })
}

/// Revokes the caller's own session token (logout); it stops working at once.
pub async fn logout(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let now = Utc::now();
    let row = TokenRow {
        id: caller.token_id.clone(),
        name: format!("session {}", caller.token_id),
        username: caller.username.clone(),
        role: caller.role.as_str().to_string(),
        kind: TokenKind::Session.as_str().to_string(),
        created_at: now,
        expires_at: caller.expires_at,
        revoked_at: Some(now),
    };
    match state.control.store().insert_token(&row).await {
        // Already recorded (an API token, or a second logout): revoke the row in place.
        Err(StoreError::Conflict(_)) => {
            state
                .control
                .store()
                .revoke_token(&caller.token_id, Some(&caller.username))
                .await?;
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Whether `caller` may act on `name`'s account: admins on anyone's, users on their own.
fn require_self_or_admin(caller: &Caller, name: &str) -> Result<(), ApiError> {
    if caller.username == name {
        return Ok(());
    }
    caller.require_admin()
}

/// Checks a new password's length (the same rule as for a new user).
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::invalid("a password has 8 to 1024 characters"));
    }
    Ok(())
}

/// Sets `name`'s password (an admin, or the user itself) and revokes every token the user
/// holds. Users changing their own password get a new session token in place of theirs.
pub async fn change_password(
    state: &AppState,
    caller: &Caller,
    name: &str,
    password: &str,
) -> Result<PasswordChanged, ApiError> {
    require_self_or_admin(caller, name)?;
    check_password(password)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let user = state.control.store().set_password(name, &hash).await?;
    tracing::info!(user = %name, by = %caller.username, "password changed; every token of the user revoked");
    let session = if caller.username == name {
        Some(state.auth.issue(&user)?)
    } else {
        None
    };
    Ok(PasswordChanged {
        username: user.username,
        session,
    })
}

/// Revokes every token `name` holds (an admin, or the user itself): sessions and API tokens.
pub async fn revoke_all_tokens(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(), ApiError> {
    require_self_or_admin(caller, name)?;
    state.control.store().revoke_all_tokens(name).await?;
    tracing::info!(user = %name, by = %caller.username, "every token of the user revoked");
    Ok(())
}

pub fn token_view(row: TokenRow) -> Result<ApiToken, ApiError> {
    let corrupt = |what: &str| ApiError::internal(format!("stored token {}: bad {what}", row.id));
    Ok(ApiToken {
        role: row.role.parse().map_err(|_| corrupt("role"))?,
        kind: row.kind.parse().map_err(|_| corrupt("kind"))?,
        id: row.id,
        name: row.name,
        username: row.username,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    })
}

/// Who made a change, filled in by [`Caller`]'s extractor for the audit middleware.
#[derive(Clone, Default)]
pub struct AuditSlot(pub Arc<OnceLock<String>>);

/// Records every change (any method but GET/HEAD/OPTIONS) made by an authenticated caller,
/// with its outcome, in the store's audit log.
pub async fn audit_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    if matches!(
        method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if let Some(actor) = slot.0.get() {
        let status = response.status().as_u16();
        if let Err(e) = state
            .control
            .store()
            .record_audit(actor, method.as_str(), &path, status)
            .await
        {
            tracing::error!(error = %e, %actor, %path, "could not record an audit entry");
        }
    }
    response
}

/// Who is calling, from a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
    /// The id (`jti`) of the token the call came with.
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
    /// The user's token epoch the token carries (and that it matched).
    pub token_epoch: String,
}

impl Caller {
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "user '{}' has the {} role; this needs {}",
            self.username, self.role, needed
        )))
    }

    /// Viewers read; deployers and admins change things.
    pub fn require_write(&self) -> Result<(), ApiError> {
        self.require(Role::Deployer)
    }

    /// Users, zones and platforms.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(Role::Admin)
    }
}

/// Checks a token: signature, expiry, revocation, and that its user still exists with the
/// role the token carries. The bearer header and the dashboard's session cookie both end here.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims = state.auth.verify(token)?;
    let store = state.control.store();
    if store.token_revoked(&claims.jti).await? {
        return Err(ApiError::unauthorized(
            "the token has been revoked; run `sprout login`",
        ));
    }
    let user = store
        .get_user(&claims.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    if user.token_epoch != claims.epoch {
        return Err(ApiError::unauthorized(
            "the token has been revoked (the user's tokens were revoked, its password changed, \
             or it was removed); run `sprout login`",
        ));
    }
    if user.role != claims.role {
        return Err(ApiError::unauthorized(
            "the user's role has changed since the token was issued; run `sprout login`",
        ));
    }
    let role = claims
        .role
        .parse::<Role>()
        .map_err(|_| ApiError::unauthorized("the token names an unknown role"))?;
    Ok(Caller {
        username: claims.sub,
        role,
        token_id: claims.jti,
        expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now),
        token_epoch: claims.epoch,
    })
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
        let caller = authenticate(state, token.trim()).await?;
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            let _ = slot.0.set(caller.username.clone());
        }
        Ok(caller)
    }
}
