//! An environment's lifecycle, in one place: its statuses, the operations a user may ask
//! for in each, and where each transition leads.
//!
//! ```text
//! Launching ──ready──> Ready ──deploy──> Updating ──done/rolled back──> Ready
//!     │                  │ terminate                                     │
//!     └──terminate──> Terminating ──done──> Terminated <─────────────────┘ (via Terminating)
//! ```

use crate::model::string_enum;
use serde::{Deserialize, Serialize};

string_enum!(
    EnvStatus, "environment status", {
        Launching => "Launching",
        Updating => "Updating",
        Ready => "Ready",
        Terminating => "Terminating",
        Terminated => "Terminated",
    }
);

/// What a user can ask of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvOp {
    Deploy,
    Scale,
    Configure,
    Terminate,
}

impl EnvOp {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvOp::Deploy => "deploy",
            EnvOp::Scale => "scale",
            EnvOp::Configure => "configure",
            EnvOp::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot {op} while the environment is {status}: wait until it is Ready")]
    Busy { op: &'static str, status: EnvStatus },
    #[error("the environment is {status}")]
    Gone { status: EnvStatus },
}

impl EnvStatus {
    /// Whether the control plane is still moving this environment (not a resting state).
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            EnvStatus::Launching | EnvStatus::Updating | EnvStatus::Terminating
        )
    }

    /// Whether the environment still owns (or should own) instances.
    pub fn is_live(self) -> bool {
        !matches!(self, EnvStatus::Terminating | EnvStatus::Terminated)
    }

    /// The status the environment moves to when `op` is accepted, or why it is refused.
    pub fn begin(self, op: EnvOp) -> Result<EnvStatus, LifecycleError> {
        use EnvStatus::*;
        match (self, op) {
            (Terminated, _) | (Terminating, _) => Err(LifecycleError::Gone { status: self }),
            (_, EnvOp::Terminate) => Ok(Terminating),
            (Ready, EnvOp::Deploy) | (Ready, EnvOp::Configure) => Ok(Updating),
            (Ready, EnvOp::Scale) => Ok(Updating),
            (Launching | Updating, op) => Err(LifecycleError::Busy {
                op: op.as_str(),
                status: self,
            }),
        }
    }

    /// The status after the control loop finished the work of a transitional status.
    /// A failed launch still ends Ready: the environment exists and reports why in its events.
    pub fn finish(self) -> EnvStatus {
        match self {
            EnvStatus::Launching | EnvStatus::Updating | EnvStatus::Ready => EnvStatus::Ready,
            EnvStatus::Terminating | EnvStatus::Terminated => EnvStatus::Terminated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_accepts_everything() {
        assert_eq!(
            EnvStatus::Ready.begin(EnvOp::Deploy),
            Ok(EnvStatus::Updating)
        );
        assert_eq!(
            EnvStatus::Ready.begin(EnvOp::Terminate),
            Ok(EnvStatus::Terminating)
        );
        assert_eq!(
            EnvStatus::Ready.begin(EnvOp::Scale),
            Ok(EnvStatus::Updating)
        );
    }

    #[test]
    fn busy_refuses_deploys_but_not_terminate() {
        for status in [EnvStatus::Launching, EnvStatus::Updating] {
            assert!(matches!(
                status.begin(EnvOp::Deploy),
                Err(LifecycleError::Busy { .. })
            ));
            assert_eq!(status.begin(EnvOp::Terminate), Ok(EnvStatus::Terminating));
        }
    }

    #[test]
    fn gone_refuses_all() {
        for status in [EnvStatus::Terminating, EnvStatus::Terminated] {
            for op in [
                EnvOp::Deploy,
                EnvOp::Scale,
                EnvOp::Configure,
                EnvOp::Terminate,
            ] {
                assert!(matches!(status.begin(op), Err(LifecycleError::Gone { .. })));
            }
        }
    }

    #[test]
    fn finishing() {
        assert_eq!(EnvStatus::Launching.finish(), EnvStatus::Ready);
        assert_eq!(EnvStatus::Updating.finish(), EnvStatus::Ready);
        assert_eq!(EnvStatus::Terminating.finish(), EnvStatus::Terminated);
        assert!(EnvStatus::Updating.is_transitional());
        assert!(!EnvStatus::Ready.is_transitional());
    }
}
