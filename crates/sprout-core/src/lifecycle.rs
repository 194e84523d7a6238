//! An environment's lifecycle, in one place: its statuses, every operation that can be asked
//! of it (by a user or by a control loop), where each may start, what status it holds while
//! it runs and where it ends. The store applies the transitions this module hands it; the
//! control loops ask it, never compare strings.
//!
//! ```text
//! (launch) ──> Launching ──ready/failed──> Ready ──deploy/configure──> Updating ──done/failed──> Ready
//!                  │                         │                            │ failed, rolls back
//!                  │                         │                            └──> Updating (rollback) ──> Ready
//!                  └───────terminate─────────┴──────terminate─────> Terminating ──done──> Terminated
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

string_enum!(
    /// The kind of a recorded operation (the `kind` of an operation row and of the API's
    /// operations and deployments).
    OpKind, "operation kind", {
        Launch => "launch",
        Deploy => "deploy",
        Configure => "configure",
        Rollback => "rollback",
        Terminate => "terminate",
    }
);

/// Everything that can be asked of an environment, by a user or by a control loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvOp {
    /// Creates the environment (`createEnvironment`).
    Launch,
    /// A new version, rolled out with the deployment policy.
    Deploy,
    /// Settings or properties that need new instances, rolled out with the policy.
    Configure,
    /// Settings that apply at once (health checks, stickiness, public properties).
    ConfigureNow,
    /// New scaling bounds or instance count, asked by a user.
    Scale,
    /// Exchanging the CNAMEs of two web environments.
    Swap,
    /// Replacing every instance, one at a time.
    Restart,
    /// Bringing back what ran before a failed or aborted operation.
    Rollback,
    /// Stopping the running operation; it rolls back.
    Abort,
    Terminate,
    /// A new desired count from the autoscaler.
    Autoscale,
    /// A scheduled scaling action.
    Schedule,
}

/// Where an operation may start, what it holds while it runs, where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRule {
    /// The statuses the operation may start from.
    pub from: &'static [EnvStatus],
    /// The status while it runs; `None`: it applies at once and the status does not change.
    pub during: Option<EnvStatus>,
    /// The status when it succeeds; `None`: unchanged.
    pub success: Option<EnvStatus>,
    /// The status when it fails and does not roll back; `None`: unchanged.
    pub failure: Option<EnvStatus>,
    /// Whether starting it closes a running operation as superseded.
    pub supersedes: bool,
    /// Whether its failure (or abort) rolls back to what ran before (when the environment's
    /// `rollback` setting allows; an abort always does).
    pub rolls_back: bool,
    /// What it is recorded as in the operations table, if anything.
    pub records: Option<OpKind>,
}

use EnvStatus::{Launching, Ready, Terminated, Terminating, Updating};

const READY: &[EnvStatus] = &[Ready];
const LIVE: &[EnvStatus] = &[Launching, Updating, Ready];

/// The whole lifecycle: one row per operation.
#[rustfmt::skip]
pub const RULES: &[(EnvOp, OpRule)] = &[
    //                                 from     during            success           failure           supersedes rolls_back records
    (EnvOp::Launch,       rule(&[],     Some(Launching),   Some(Ready),      Some(Ready),      false, false, Some(OpKind::Launch))),
    (EnvOp::Deploy,       rule(READY,   Some(Updating),    Some(Ready),      Some(Ready),      false, true,  Some(OpKind::Deploy))),
    (EnvOp::Configure,    rule(READY,   Some(Updating),    Some(Ready),      Some(Ready),      false, true,  Some(OpKind::Configure))),
    (EnvOp::ConfigureNow, rule(READY,   None,              None,             None,             false, false, Some(OpKind::Configure))),
    (EnvOp::Scale,        rule(READY,   None,              None,             None,             false, false, Some(OpKind::Configure))),
    (EnvOp::Swap,         rule(READY,   None,              None,             None,             false, false, None)),
    (EnvOp::Restart,      rule(READY,   None,              None,             None,             false, false, None)),
    (EnvOp::Rollback,     rule(&[Updating], Some(Updating), Some(Ready),     Some(Ready),      false, false, Some(OpKind::Rollback))),
    (EnvOp::Abort,        rule(&[Updating], Some(Updating), Some(Ready),     Some(Ready),      false, false, Some(OpKind::Rollback))),
    (EnvOp::Terminate,    rule(LIVE,    Some(Terminating), Some(Terminated), Some(Terminating), true,  false, Some(OpKind::Terminate))),
    (EnvOp::Autoscale,    rule(READY,   None,              None,             None,             false, false, None)),
    (EnvOp::Schedule,     rule(LIVE,    None,              None,             None,             false, false, Some(OpKind::Configure))),
];

#[allow(clippy::too_many_arguments)]
const fn rule(
    from: &'static [EnvStatus],
    during: Option<EnvStatus>,
    success: Option<EnvStatus>,
    failure: Option<EnvStatus>,
    supersedes: bool,
    rolls_back: bool,
    records: Option<OpKind>,
) -> OpRule {
    OpRule {
        from,
        during,
        success,
        failure,
        supersedes,
        rolls_back,
        records,
    }
}

impl EnvOp {
    pub const ALL: &'static [EnvOp] = &[
        EnvOp::Launch,
        EnvOp::Deploy,
        EnvOp::Configure,
        EnvOp::ConfigureNow,
        EnvOp::Scale,
        EnvOp::Swap,
        EnvOp::Restart,
        EnvOp::Rollback,
        EnvOp::Abort,
        EnvOp::Terminate,
        EnvOp::Autoscale,
        EnvOp::Schedule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvOp::Launch => "launch",
            EnvOp::Deploy => "deploy",
            EnvOp::Configure | EnvOp::ConfigureNow => "configure",
            EnvOp::Scale => "scale",
            EnvOp::Swap => "swap",
            EnvOp::Restart => "restart",
            EnvOp::Rollback => "rollback",
            EnvOp::Abort => "abort",
            EnvOp::Terminate => "terminate",
            EnvOp::Autoscale => "autoscale",
            EnvOp::Schedule => "schedule",
        }
    }

    /// This operation's row of [`RULES`].
    pub fn rule(self) -> OpRule {
        RULES
            .iter()
            .find(|(op, _)| *op == self)
            .map(|(_, r)| *r)
            // Every operation has a row (checked by the tests); a refusal is the safe default.
            .unwrap_or(rule(&[], None, None, None, false, false, None))
    }
}

impl std::fmt::Display for EnvOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OpKind {
    /// The operation a recorded kind stands for (its rules while it runs and ends).
    pub fn op(self) -> EnvOp {
        match self {
            OpKind::Launch => EnvOp::Launch,
            OpKind::Deploy => EnvOp::Deploy,
            OpKind::Configure => EnvOp::Configure,
            OpKind::Rollback => EnvOp::Rollback,
            OpKind::Terminate => EnvOp::Terminate,
        }
    }

    /// Whether a running operation of this kind can be aborted (it rolls back).
    pub fn abortable(self) -> bool {
        self.op().rule().rolls_back
    }
}

/// An accepted operation: the status it starts from and the ones it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub op: EnvOp,
    /// The status the environment must still be in when the change is written.
    pub from: EnvStatus,
    /// The status while the operation runs (`from` when it applies at once).
    pub during: EnvStatus,
    /// The status when it succeeds.
    pub success: EnvStatus,
    /// The status when it fails without rolling back.
    pub failure: EnvStatus,
    /// Whether it closes a running operation as superseded.
    pub supersedes: bool,
    /// Whether its failure rolls back.
    pub rolls_back: bool,
    /// What it is recorded as, if anything.
    pub records: Option<OpKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot {op} while the environment is {status}: wait until it is Ready")]
    Busy { op: &'static str, status: EnvStatus },
    #[error("the environment is {status}")]
    Gone { status: EnvStatus },
    #[error("cannot {op} an environment that already exists")]
    Exists { op: &'static str },
}

/// The status a new environment starts in, and the transition of its launch.
pub fn launch() -> Transition {
    let r = EnvOp::Launch.rule();
    let during = r.during.unwrap_or(Launching);
    Transition {
        op: EnvOp::Launch,
        from: during,
        during,
        success: r.success.unwrap_or(Ready),
        failure: r.failure.unwrap_or(Ready),
        supersedes: r.supersedes,
        rolls_back: r.rolls_back,
        records: r.records,
    }
}

impl EnvStatus {
    /// Whether the control plane is still moving this environment (not a resting state).
    pub fn is_transitional(self) -> bool {
        matches!(self, Launching | Updating | Terminating)
    }

    /// Whether the environment still owns (or should own) instances.
    pub fn is_live(self) -> bool {
        !matches!(self, Terminating | Terminated)
    }

    /// Whether `op` may start in this status.
    pub fn allows(self, op: EnvOp) -> bool {
        self.begin(op).is_ok()
    }

    /// The transition `op` makes from this status, or why it is refused.
    pub fn begin(self, op: EnvOp) -> Result<Transition, LifecycleError> {
        let r = op.rule();
        if !r.from.contains(&self) {
            return Err(if op == EnvOp::Launch {
                LifecycleError::Exists { op: op.as_str() }
            } else if self.is_live() {
                LifecycleError::Busy {
                    op: op.as_str(),
                    status: self,
                }
            } else {
                LifecycleError::Gone { status: self }
            });
        }
        Ok(Transition {
            op,
            from: self,
            during: r.during.unwrap_or(self),
            success: r.success.unwrap_or(self),
            failure: r.failure.unwrap_or(self),
            supersedes: r.supersedes,
            rolls_back: r.rolls_back,
            records: r.records,
        })
    }

    /// Where the running operation of kind `kind` (None: no operation on record) leaves the
    /// environment when it succeeds.
    pub fn success(self, kind: Option<OpKind>) -> EnvStatus {
        kind.and_then(|k| k.op().rule().success)
            .unwrap_or_else(|| self.settled())
    }

    /// Where the running operation of kind `kind` leaves the environment when it fails
    /// without rolling back.
    pub fn failure(self, kind: Option<OpKind>) -> EnvStatus {
        kind.and_then(|k| k.op().rule().failure)
            .unwrap_or_else(|| self.settled())
    }

    /// The resting status of a transitional one, for an environment with no operation on
    /// record (rows from before operations were recorded). A failed launch still ends
    /// Ready: the environment exists and reports why in its events.
    fn settled(self) -> EnvStatus {
        match self {
            Launching | Updating | Ready => Ready,
            Terminating | Terminated => Terminated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_exactly_one_rule() {
        for op in EnvOp::ALL {
            assert_eq!(
                RULES.iter().filter(|(o, _)| o == op).count(),
                1,
                "{op} has one row"
            );
        }
        assert_eq!(RULES.len(), EnvOp::ALL.len());
    }

    /// Every status × every operation, against the expected table written out here.
    #[test]
    fn every_status_by_every_operation() {
        use EnvOp::*;
        // (op, status) -> Some((during, success, failure)) when allowed.
        let expect = |op: EnvOp, s: EnvStatus| -> Option<(EnvStatus, EnvStatus, EnvStatus)> {
            match (op, s) {
                (Launch, _) => None,
                (Deploy | Configure, Ready) => Some((Updating, Ready, Ready)),
                (ConfigureNow | Scale | Swap | Restart | Autoscale, Ready) => {
                    Some((Ready, Ready, Ready))
                }
                (Schedule, Launching | Updating | Ready) => Some((s, s, s)),
                (Rollback | Abort, Updating) => Some((Updating, Ready, Ready)),
                (Terminate, Launching | Updating | Ready) => {
                    Some((Terminating, Terminated, Terminating))
                }
                _ => None,
            }
        };
        for &op in EnvOp::ALL {
            for &status in EnvStatus::ALL {
                let got = status.begin(op);
                match expect(op, status) {
                    Some((during, success, failure)) => {
                        let t = got.unwrap_or_else(|e| panic!("{op} from {status}: {e}"));
                        assert_eq!(
                            (t.from, t.during, t.success, t.failure),
                            (status, during, success, failure),
                            "{op} from {status}"
                        );
                        assert_eq!(t.supersedes, op == Terminate, "{op} supersedes");
                        assert_eq!(
                            t.rolls_back,
                            matches!(op, Deploy | Configure),
                            "{op} rolls back"
                        );
                        assert!(status.allows(op));
                    }
                    None => {
                        let e = got.expect_err("refused");
                        let gone = matches!(status, Terminating | Terminated);
                        match e {
                            LifecycleError::Exists { .. } => assert_eq!(op, Launch),
                            LifecycleError::Gone { status: s } => {
                                assert!(gone && s == status, "{op} from {status}")
                            }
                            LifecycleError::Busy { status: s, .. } => {
                                assert!(!gone && s == status, "{op} from {status}")
                            }
                        }
                        assert!(!status.allows(op));
                    }
                }
            }
        }
    }

    #[test]
    fn a_launch_starts_launching_and_ends_ready() {
        let t = launch();
        assert_eq!(
            (t.from, t.during, t.success, t.failure),
            (Launching, Launching, Ready, Ready)
        );
        assert_eq!(t.records, Some(OpKind::Launch));
    }

    #[test]
    fn recorded_kinds_end_where_their_operation_says() {
        for &kind in OpKind::ALL {
            for &status in EnvStatus::ALL {
                let (ok, failed) = (status.success(Some(kind)), status.failure(Some(kind)));
                if kind == OpKind::Terminate {
                    // A failed terminate stays Terminating: its instances are still removed.
                    assert_eq!((ok, failed), (Terminated, Terminating));
                } else {
                    assert_eq!((ok, failed), (Ready, Ready));
                }
            }
            assert_eq!(kind.as_str().parse::<OpKind>(), Ok(kind));
            assert_eq!(
                kind.abortable(),
                matches!(kind, OpKind::Deploy | OpKind::Configure)
            );
        }
        assert!("bogus".parse::<OpKind>().is_err());
        assert_eq!(Launching.success(None), Ready);
        assert_eq!(Updating.failure(None), Ready);
        assert_eq!(Terminating.success(None), Terminated);
    }

    #[test]
    fn every_kind_is_recorded_by_some_operation() {
        for &kind in OpKind::ALL {
            assert!(
                RULES.iter().any(|(_, r)| r.records == Some(kind)),
                "{kind} is recorded by an operation"
            );
        }
    }

    #[test]
    fn transitional_and_live() {
        assert!(Updating.is_transitional());
        assert!(!Ready.is_transitional());
        assert!(Launching.is_live() && !Terminating.is_live());
    }
}
