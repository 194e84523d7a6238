//! What can go wrong in the control plane, one enum the API turns into problem+json.

use sprout_core::bundle::BundleError;
use sprout_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the bundle is over the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Quota(#[from] sprout_core::queue::QuotaError),
    /// A stored record that does not parse, named (the control plane leaves it alone).
    #[error("{0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<sprout_core::LifecycleError> for ControlError {
    fn from(e: sprout_core::LifecycleError) -> Self {
        ControlError::Conflict(e.to_string())
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ControlError::Conflict(m),
            StoreError::NotFound(m) => ControlError::NotFound(m),
            e @ StoreError::Corrupt { .. } => ControlError::Corrupt(e.to_string()),
            StoreError::Quota(q) => ControlError::Quota(q),
            other => ControlError::Store(other),
        }
    }
}

impl From<sprout_core::NameError> for ControlError {
    fn from(e: sprout_core::NameError) -> Self {
        ControlError::Invalid(e.to_string())
    }
}

impl From<std::io::Error> for ControlError {
    fn from(e: std::io::Error) -> Self {
        ControlError::Internal(format!("i/o: {e}"))
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// A setting that does not parse or fit is the caller's mistake.
pub(crate) fn setting(e: sprout_core::settings::SettingError) -> ControlError {
    ControlError::Invalid(e.to_string())
}
