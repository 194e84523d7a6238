use std::path::PathBuf;

/// Everything the Docker driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid Docker endpoint '{0}': expected unix:///path or tcp://host:port")]
    InvalidEndpoint(String),

    #[error("cannot reach the Docker engine at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },

    #[error(
        "image '{image}' is not present locally and cannot be pulled (no registry is configured)"
    )]
    ImageMissing { image: String },

    #[error("building platform image '{image}' failed: {detail}")]
    PlatformBuild { image: String, detail: String },

    #[error("build script for image '{image}' failed with exit code {code}")]
    BuildFailed { image: String, code: i64 },

    #[error("the build step for image '{image}' ran past the build time limit ({secs} s) and was stopped")]
    BuildTimedOut { image: String, secs: u64 },

    #[error("copying image '{image}' to another engine failed: {detail}")]
    ImageCopy { image: String, detail: String },

    #[error("invalid image reference '{0}'")]
    InvalidImage(String),

    #[error("cannot read bundle directory {path}: {source}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("resource container {container}: {step} failed with exit code {code}: {output}")]
    ResourceCommand {
        container: String,
        step: String,
        code: i64,
        output: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("Docker {op} failed: {source}")]
    Docker {
        op: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl RuntimeError {
    pub(crate) fn docker(op: impl Into<String>, source: bollard::errors::Error) -> Self {
        RuntimeError::Docker {
            op: op.into(),
            source,
        }
    }

    /// The exit code of a failed build step, if that is what failed.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            RuntimeError::BuildFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The HTTP status the engine answered with, if it answered at all.
pub(crate) fn status_of(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    status_of(err) == Some(404)
}
