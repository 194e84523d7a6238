//! The part of the store the control plane's environment and operation work depends on, as
//! a trait: the seam for a second backend (Postgres). [`crate::Store`] is the SQLite one.
//!
//! Every status change is the [`Transition`] the lifecycle (`sprout_core::lifecycle`) hands
//! over, written conditionally (`WHERE status = from`): a change that lost a race is refused
//! ([`StoreError::Conflict`](crate::StoreError::Conflict)) or reported as not applied.

use crate::environment_row::{ActiveEnvironments, EnvRow, NewEnvironment};
use crate::operations::{OperationEnd, OperationRow, OperationStart};
use crate::Result;
use sprout_core::{EnvSettings, Severity, Transition};
use std::collections::HashMap;
use std::future::Future;

pub trait EnvironmentStore: Send + Sync {
    /// Creates an environment in the launch's status with its launch operation and first
    /// event, atomically.
    fn create_environment(
        &self,
        new: &NewEnvironment,
    ) -> impl Future<Output = Result<(EnvRow, OperationRow)>> + Send;

    fn environment_by_id(&self, id: i64) -> impl Future<Output = Result<EnvRow>> + Send;

    /// The live environment of that name, or else the most recently terminated one.
    fn get_environment(&self, name: &str) -> impl Future<Output = Result<Option<EnvRow>>> + Send;

    /// Environments (of one application), parsed; a corrupt row fails the listing, naming it.
    fn list_environments(
        &self,
        app: Option<&str>,
        include_terminated: bool,
    ) -> impl Future<Output = Result<Vec<EnvRow>>> + Send;

    /// Every environment the control loops must look after, and the corrupt ones apart.
    fn active_environments(&self) -> impl Future<Output = Result<ActiveEnvironments>> + Send;

    /// Starts a recorded operation if the environment is still in `transition.from`: moves
    /// it to `transition.during`, applies what the operation changes while remembering the
    /// state before, records the operation and an event. A running operation is closed as
    /// superseded when the transition says so.
    fn begin_operation(
        &self,
        env: &EnvRow,
        transition: &Transition,
        start: &OperationStart<'_>,
    ) -> impl Future<Output = Result<OperationRow>> + Send;

    /// Closes a failed (or aborted) operation and starts its rollback (`rollback`, the
    /// lifecycle's transition for it) in one transaction: the environment gets back the
    /// version, settings, properties and count it had before. None when the state moved on.
    fn fail_and_roll_back(
        &self,
        env: &EnvRow,
        operation: &OperationRow,
        rollback: &Transition,
        totals: Option<(i64, i64)>,
        message: &str,
    ) -> impl Future<Output = Result<Option<OperationRow>>> + Send;

    /// Applies settings that need no new instances at once, recorded (as the transition
    /// says) as a finished operation, and an event.
    fn apply_settings(
        &self,
        env: &EnvRow,
        transition: &Transition,
        settings: &EnvSettings,
        by: Option<&str>,
        message: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records a new health verdict and the event that says so.
    fn set_health(
        &self,
        env: &EnvRow,
        health: &str,
        severity: Severity,
        message: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Exchanges two environments' CNAMEs in one transaction, both still in
    /// `transition.from`.
    fn swap_cnames(
        &self,
        a: &EnvRow,
        b: &EnvRow,
        transition: &Transition,
        by: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// An environment's operations, newest first.
    fn operations(
        &self,
        env_id: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OperationRow>>> + Send;

    /// Changes the desired count (bounded by the caller), with an event, if the environment
    /// is still in `transition.from`.
    fn set_desired(
        &self,
        env: &EnvRow,
        transition: &Transition,
        desired: i64,
        message: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Ends the running operation as `end` says; false (and nothing changed) when the state
    /// moved on.
    fn finish_operation(
        &self,
        env: &EnvRow,
        end: &OperationEnd<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The newest operation of an environment.
    fn current_operation(
        &self,
        env_id: i64,
    ) -> impl Future<Output = Result<Option<OperationRow>>> + Send;

    /// The newest operation of each environment, by environment id.
    fn latest_operations(&self) -> impl Future<Output = Result<HashMap<i64, OperationRow>>> + Send;
}
