//! The CLI's one error type. Every variant displays as a single line; the binary prints
//! `error: {e}` to stderr and exits 1.

use sprout_core::api::Problem;
use std::error::Error as _;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error (`application/problem+json`); shows its `detail`.
    #[error("{}", one_line(&problem.detail))]
    Api { status: u16, problem: Problem },
    /// The request never got an answer (connection refused, timeout, broken stream, …).
    #[error("{}", http_chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("{}", one_line(&.0.to_string()))]
    Io(#[from] std::io::Error),
    /// An I/O error on a named file or directory.
    #[error("{}: {}", path.display(), one_line(&source.to_string()))]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server answered 2xx with a body the CLI cannot read.
    #[error("unexpected response from the server: {}", one_line(.0))]
    Decode(String),
    /// Bad arguments or local input.
    #[error("{}", one_line(.0))]
    Usage(String),
    /// An operation (build, launch, deploy, terminate) ended in failure.
    #[error("{}", one_line(.0))]
    Failed(String),
}

impl CliError {
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::File {
            path: path.into(),
            source,
        }
    }

    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Collapses whitespace runs containing newlines so an error stays on one line.
pub(crate) fn one_line(s: &str) -> String {
    let trimmed = s.trim();
    if !trimmed.contains(['\n', '\r']) {
        return trimmed.to_string();
    }
    trimmed
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// reqwest's own message hides the cause ("error sending request for url …"); add the chain.
fn http_chain(e: &reqwest::Error) -> String {
    let mut msg = if e.is_connect() {
        match e.url() {
            Some(url) => format!("cannot reach the Sprout server at {}", origin(url)),
            None => "cannot reach the Sprout server".to_string(),
        }
    } else if e.is_timeout() {
        "the Sprout server did not answer in time".to_string()
    } else {
        e.to_string()
    };
    let mut source = e.source();
    let mut last = String::new();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && text != last && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    one_line(&msg)
}

fn origin(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_path("");
    u.set_query(None);
    u.to_string().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_shows_detail_on_one_line() {
        let e = CliError::Api {
            status: 404,
            problem: Problem {
                kind: "https://sprout.dev/problems/not-found".into(),
                title: "Not Found".into(),
                status: 404,
                detail: "no application 'x'\nat all".into(),
                instance: None,
            },
        };
        assert_eq!(e.to_string(), "no application 'x' at all");
        assert_eq!(e.status(), Some(404));
    }
}
