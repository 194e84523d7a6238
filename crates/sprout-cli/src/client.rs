//! A typed client of Sprout's REST API (`/api/v1`), usable by the CLI and by tests.

use crate::error::CliError;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sprout_core::api::{
    App, ConfigUpdate, ConfigView, CreateApp, CreateEnvironment, DeployRequest, Deployment,
    Environment, EnvironmentDetail, Event, HealthReport, LoginRequest, LoginResponse,
    OperationStatus, Problem, SaveConfig, SavedConfig, SetProperties, SwapRequest, Version,
    API_PREFIX, HEALTHZ,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A client of one Sprout server, with an optional bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// `base_url` is the server's root (`http://127.0.0.1:8080`); a trailing `/` is fine.
    pub fn new(base_url: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sprout-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client {
            base: crate::config::normalize_server(base_url),
            token,
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The URL of an API route: `segments` are percent-encoded path segments after `/api/v1`.
    pub fn api_url(&self, segments: &[&str]) -> Result<Url, CliError> {
        let mut url = Url::parse(&format!("{}{}", self.base, API_PREFIX))
            .map_err(|e| CliError::Usage(format!("invalid server URL '{}': {e}", self.base)))?;
        if url.cannot_be_a_base() {
            return Err(CliError::Usage(format!(
                "invalid server URL '{}'",
                self.base
            )));
        }
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request and turns an error status into [`CliError::Api`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, CliError> {
        let resp = req.send().await?;
        check(resp).await
    }

    /// `GET` an API route and decode its JSON as `T` (use `serde_json::Value` for raw JSON).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let url = self.api_url(segments)?;
        let resp = self
            .send(self.request(Method::GET, url).query(query))
            .await?;
        decode(resp).await
    }

    pub(crate) async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let url = self.api_url(segments)?;
        let mut req = self.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        decode(self.send(req).await?).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<(), CliError> {
        let url = Url::parse(&format!("{}{}", self.base, HEALTHZ))
            .map_err(|e| CliError::Usage(format!("invalid server URL '{}': {e}", self.base)))?;
        self.send(self.http.get(url)).await.map(|_| ())
    }

    /// `POST /login`. Does not store the token; see [`Client::set_token`].
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginResponse, CliError> {
        let body = LoginRequest {
            username: username.to_string(),
            password: password.to_string(),
        };
        let url = self.api_url(&["login"])?;
        decode(self.send(self.http.post(url).json(&body)).await?).await
    }

    /// `GET /apps`.
    pub async fn list_apps(&self) -> Result<Vec<App>, CliError> {
        self.get_json(&["apps"], &[]).await
    }

    /// `POST /apps`.
    pub async fn create_app(&self, name: &str) -> Result<App, CliError> {
        self.send_json(
            Method::POST,
            &["apps"],
            Some(&CreateApp {
                name: name.to_string(),
            }),
        )
        .await
    }

    /// `DELETE /apps/{app}`.
    pub async fn delete_app(&self, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["apps", name])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// `GET /apps/{app}/versions`.
    pub async fn list_versions(&self, app: &str) -> Result<Vec<Version>, CliError> {
        self.get_json(&["apps", app, "versions"], &[]).await
    }

    /// `DELETE /apps/{app}/versions/{label}`.
    pub async fn delete_version(&self, app: &str, label: &str) -> Result<(), CliError> {
        let url = self.api_url(&["apps", app, "versions", label])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// `GET /apps/{app}/versions/{label}` (with the build log).
    pub async fn get_version(&self, app: &str, label: &str) -> Result<Version, CliError> {
        self.get_json(&["apps", app, "versions", label], &[]).await
    }

    /// `POST /apps/{app}/versions?label=L`, streaming the archive at `archive` as the body
    /// (`application/gzip` for `.tar.gz`/`.tgz`, `application/zip` for `.zip`). `progress`,
    /// if given, gets its length set to the file size and advances as bytes are sent.
    /// Answers the new version, still `processing`.
    pub async fn upload_version(
        &self,
        app: &str,
        label: &str,
        archive: &Path,
        progress: Option<ProgressBar>,
    ) -> Result<Version, CliError> {
        let kind = crate::archive::ArchiveKind::from_path(archive).ok_or_else(|| {
            CliError::Usage(format!(
                "{}: expected a .tar.gz, .tgz or .zip archive",
                archive.display()
            ))
        })?;
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| CliError::file(archive, e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| CliError::file(archive, e))?
            .len();
        if let Some(pb) = &progress {
            pb.set_length(len);
            pb.set_position(0);
        }
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).inspect(move |chunk| {
                if let (Some(pb), Ok(bytes)) = (&progress, chunk) {
                    pb.inc(bytes.len() as u64);
                }
            });
        let url = self.api_url(&["apps", app, "versions"])?;
        let req = self
            .request(Method::POST, url)
            .query(&[("label", label)])
            .header(CONTENT_TYPE, kind.content_type())
            .header(CONTENT_LENGTH, HeaderValue::from(len))
            .body(reqwest::Body::wrap_stream(stream));
        decode(self.send(req).await?).await
    }

    /// `GET /environments[?app=APP]`.
    pub async fn list_environments(&self, app: Option<&str>) -> Result<Vec<Environment>, CliError> {
        let query: Vec<(&str, String)> = app.map(|a| ("app", a.to_string())).into_iter().collect();
        self.get_json(&["environments"], &query).await
    }

    /// `POST /environments` (the launch goes on in the background).
    pub async fn create_environment(
        &self,
        req: &CreateEnvironment,
    ) -> Result<Environment, CliError> {
        self.send_json(Method::POST, &["environments"], Some(req))
            .await
    }

    /// `GET /environments/{env}`: the environment and its instances.
    pub async fn get_environment(&self, env: &str) -> Result<EnvironmentDetail, CliError> {
        self.get_json(&["environments", env], &[]).await
    }

    /// `POST /environments/{env}/deploy`.
    pub async fn deploy(&self, env: &str, version: &str) -> Result<Environment, CliError> {
        let body = DeployRequest {
            version: version.to_string(),
            ..Default::default()
        };
        self.deploy_with(env, &body).await
    }

    /// `POST /environments/{env}/deploy` with a policy, batch, canary settings.
    pub async fn deploy_with(
        &self,
        env: &str,
        body: &DeployRequest,
    ) -> Result<Environment, CliError> {
        self.send_json(Method::POST, &["environments", env, "deploy"], Some(body))
            .await
    }

    /// `POST /environments/{env}/abort`: fails the running deployment and starts rolling
    /// back; answers the environment with the rollback as its operation.
    pub async fn abort(&self, env: &str) -> Result<Environment, CliError> {
        self.send_json::<(), _>(Method::POST, &["environments", env, "abort"], None)
            .await
    }

    /// `GET /environments/{env}/health`: enhanced health, like `eb health`.
    pub async fn health_report(&self, env: &str) -> Result<HealthReport, CliError> {
        self.get_json(&["environments", env, "health"], &[]).await
    }

    /// `GET /environments/{env}/config`: every setting and the environment properties.
    pub async fn get_config(&self, env: &str) -> Result<ConfigView, CliError> {
        self.get_json(&["environments", env, "config"], &[]).await
    }

    /// `PATCH /environments/{env}/config`: changes settings; an operation runs when
    /// instances have to be replaced.
    pub async fn configure(
        &self,
        env: &str,
        set: BTreeMap<String, String>,
    ) -> Result<Environment, CliError> {
        self.send_json(
            Method::PATCH,
            &["environments", env, "config"],
            Some(&ConfigUpdate { set }),
        )
        .await
    }

    /// `POST /environments/{env}/config/save`: saves the environment's configuration under
    /// `name` for its application.
    pub async fn save_config(&self, env: &str, name: &str) -> Result<SavedConfig, CliError> {
        self.send_json(
            Method::POST,
            &["environments", env, "config", "save"],
            Some(&SaveConfig {
                name: name.to_string(),
            }),
        )
        .await
    }

    /// `POST /environments/{env}/properties`: sets and removes environment properties.
    pub async fn set_properties(
        &self,
        env: &str,
        body: &SetProperties,
    ) -> Result<Environment, CliError> {
        self.send_json(
            Method::POST,
            &["environments", env, "properties"],
            Some(body),
        )
        .await
    }

    /// `POST /environments/{env}/swap`: exchanges CNAMEs with `other`.
    pub async fn swap(&self, env: &str, other: &str) -> Result<(), CliError> {
        let url = self.api_url(&["environments", env, "swap"])?;
        let body = SwapRequest {
            with: other.to_string(),
        };
        self.send(self.request(Method::POST, url).json(&body))
            .await
            .map(|_| ())
    }

    /// `POST /environments/{env}/scale`.
    pub async fn scale(
        &self,
        env: &str,
        req: &sprout_core::api::ScaleRequest,
    ) -> Result<Environment, CliError> {
        self.send_json(Method::POST, &["environments", env, "scale"], Some(req))
            .await
    }

    /// `GET /zones`.
    pub async fn zones(&self) -> Result<Vec<sprout_core::api::Zone>, CliError> {
        self.get_json(&["zones"], &[]).await
    }

    /// `POST /zones/{zone}/fail` or `/restore`.
    pub async fn zone_action(
        &self,
        zone: &str,
        action: &str,
    ) -> Result<Vec<sprout_core::api::Zone>, CliError> {
        self.send_json::<(), _>(Method::POST, &["zones", zone, action], None)
            .await
    }

    /// `GET /environments/{env}/schedules`.
    pub async fn schedules(
        &self,
        env: &str,
    ) -> Result<Vec<sprout_core::api::ScheduledAction>, CliError> {
        self.get_json(&["environments", env, "schedules"], &[])
            .await
    }

    /// `POST /environments/{env}/schedules`.
    pub async fn add_schedule(
        &self,
        env: &str,
        action: &sprout_core::api::ScheduledAction,
    ) -> Result<sprout_core::api::ScheduledAction, CliError> {
        self.send_json(
            Method::POST,
            &["environments", env, "schedules"],
            Some(action),
        )
        .await
    }

    /// `DELETE /environments/{env}/schedules/{name}`.
    pub async fn remove_schedule(&self, env: &str, name: &str) -> Result<(), CliError> {
        let url = self.api_url(&["environments", env, "schedules", name])?;
        self.send(self.request(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// `GET /environments/{env}/deployments`, newest first.
    pub async fn deployments(&self, env: &str) -> Result<Vec<Deployment>, CliError> {
        self.get_json(&["environments", env, "deployments"], &[])
            .await
    }

    /// `GET /operations/{id}`: where an operation stands and how it ended.
    pub async fn get_operation(&self, id: i64) -> Result<OperationStatus, CliError> {
        self.get_json(&["operations", &id.to_string()], &[]).await
    }

    /// `GET /metrics` (at the server's root, with the token): Prometheus text.
    pub async fn metrics(&self) -> Result<String, CliError> {
        let url = Url::parse(&format!("{}/metrics", self.base))
            .map_err(|e| CliError::Usage(format!("invalid server URL '{}': {e}", self.base)))?;
        let resp = self.send(self.request(Method::GET, url)).await?;
        Ok(resp.text().await?)
    }

    /// `DELETE /environments/{env}`: starts terminating it.
    pub async fn terminate(&self, env: &str) -> Result<Environment, CliError> {
        self.send_json::<(), _>(Method::DELETE, &["environments", env], None)
            .await
    }

    /// `GET /environments/{env}/events[?limit=N]`, oldest first.
    pub async fn events(&self, env: &str, limit: Option<u32>) -> Result<Vec<Event>, CliError> {
        let query: Vec<(&str, String)> = limit
            .map(|n| ("limit", n.to_string()))
            .into_iter()
            .collect();
        self.get_json(&["environments", env, "events"], &query)
            .await
    }

    /// `GET /environments/{env}/logs[?tail=N]`: plain text, lines prefixed with the instance id.
    pub async fn logs(&self, env: &str, tail: Option<u32>) -> Result<String, CliError> {
        let query: Vec<(&str, String)> =
            tail.map(|n| ("tail", n.to_string())).into_iter().collect();
        let url = self.api_url(&["environments", env, "logs"])?;
        let resp = self
            .send(self.request(Method::GET, url).query(&query))
            .await?;
        Ok(resp.text().await?)
    }

    /// `POST /platforms/{name}/build`: calls `on_chunk` with the build log as it streams.
    pub async fn build_platform(
        &self,
        name: &str,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<(), CliError> {
        let url = self.api_url(&["platforms", name, "build"])?;
        // A platform build takes minutes: no overall timeout, only the connect one.
        let resp = self.send(self.request(Method::POST, url)).await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            on_chunk(&chunk?);
        }
        Ok(())
    }
}

/// Passes a 2xx response through; turns any other into [`CliError::Api`], reading the
/// `application/problem+json` body (or making one up from a body that is not one).
pub async fn check(resp: Response) -> Result<Response, CliError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(CliError::Api {
        status: status.as_u16(),
        problem: problem_from(status, &body),
    })
}

pub(crate) fn problem_from(status: StatusCode, body: &str) -> Problem {
    if let Ok(problem) = serde_json::from_str::<Problem>(body) {
        if !problem.detail.trim().is_empty() {
            return problem;
        }
        let detail = if problem.title.trim().is_empty() {
            fallback_detail(status, "")
        } else {
            problem.title.clone()
        };
        return Problem { detail, ..problem };
    }
    Problem {
        kind: "about:blank".to_string(),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail: fallback_detail(status, body),
        instance: None,
    }
}

fn fallback_detail(status: StatusCode, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("error");
    let first = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let first: String = first.chars().take(200).collect();
    if first.is_empty() {
        format!("the server answered {} {reason}", status.as_u16())
    } else {
        format!("the server answered {} {reason}: {first}", status.as_u16())
    }
}

pub(crate) async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, CliError> {
    let url = resp.url().path().to_string();
    let bytes = resp.bytes().await?;
    // A 204 (or an empty body) decodes as JSON null, so `()` and `Option<_>` work.
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| CliError::Decode(format!("{url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded_segments() {
        let c = Client::new("http://127.0.0.1:8080/", Some("t".into()));
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
        let u = c.api_url(&["apps", "my app", "versions", "v/1"]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/api/v1/apps/my%20app/versions/v%2F1"
        );
        let c = Client::new("localhost:9", None);
        assert_eq!(
            c.api_url(&["apps"]).unwrap().as_str(),
            "http://localhost:9/api/v1/apps"
        );
        let c = Client::new("http://host/prefix", None);
        assert_eq!(
            c.api_url(&["apps"]).unwrap().as_str(),
            "http://host/prefix/api/v1/apps"
        );
    }

    #[test]
    fn problems_are_read_or_made_up() {
        let body = r#"{"type":"https://sprout.dev/problems/not-found","title":"Not Found","status":404,"detail":"no application 'x'"}"#;
        let p = problem_from(StatusCode::NOT_FOUND, body);
        assert_eq!(p.detail, "no application 'x'");
        let p = problem_from(StatusCode::BAD_GATEWAY, "<html>\n<h1>bad gateway</h1>");
        assert_eq!(p.detail, "the server answered 502 Bad Gateway: <html>");
        let p = problem_from(StatusCode::UNAUTHORIZED, "");
        assert_eq!(p.detail, "the server answered 401 Unauthorized");
    }
}
