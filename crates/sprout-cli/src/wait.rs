//! `--wait`: following a version build or an environment operation to its end.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{tail_lines, Spinner};
use sprout_core::api::{Environment, Operation, OperationOutcome, Version};
use sprout_core::{EnvStatus, OpKind, VersionStatus};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(500);
/// Consecutive connection failures tolerated while polling (a restarting server).
const MAX_HTTP_FAILURES: u32 = 20;
/// Build log lines shown when a build fails.
const LOG_TAIL: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// The environment's operation is no longer running.
    OperationEnds,
    /// The environment is Terminated (or gone).
    Terminated,
}

/// Retries connection failures, passes everything else through.
struct Retry(u32);

impl Retry {
    fn allow(&mut self, e: &CliError) -> bool {
        if matches!(e, CliError::Http(_)) && self.0 < MAX_HTTP_FAILURES {
            self.0 += 1;
            true
        } else {
            false
        }
    }
}

/// Waits for a version to leave `processing`; fails (after printing the build log's tail
/// to stderr) if it failed.
pub(crate) async fn version(c: &Client, app: &str, mut v: Version) -> Result<Version, CliError> {
    let mut spinner = Spinner::new(&format!("building {}: {}", v.label, v.status));
    let mut retry = Retry(0);
    while v.status == VersionStatus::Processing {
        tokio::time::sleep(POLL).await;
        match c.get_version(app, &v.label).await {
            Ok(next) => {
                retry.0 = 0;
                v = next;
                let last = v
                    .build_log
                    .as_deref()
                    .and_then(|l| tail_lines(l, 1).first().map(|s| s.trim().to_string()));
                let msg = match last {
                    Some(line) if !line.is_empty() => {
                        format!("building {}: {}", v.label, trim_to(&line, 100))
                    }
                    _ => format!("building {}: {}", v.label, v.status),
                };
                spinner.set(&msg);
            }
            Err(e) if retry.allow(&e) => continue,
            Err(e) => {
                spinner.finish();
                return Err(e);
            }
        }
    }
    spinner.finish();
    if v.status == VersionStatus::Failed {
        // The upload's answer has no log; fetch the full version for it.
        let log = match &v.build_log {
            Some(log) => Some(log.clone()),
            None => c
                .get_version(app, &v.label)
                .await
                .ok()
                .and_then(|full| full.build_log),
        };
        if let Some(log) = log.filter(|l| !l.trim().is_empty()) {
            eprintln!("--- build log (last {LOG_TAIL} lines) ---");
            for line in tail_lines(&log, LOG_TAIL) {
                eprintln!("{line}");
            }
            eprintln!("---");
        }
        let why = v
            .error
            .clone()
            .unwrap_or_else(|| "the build failed".to_string());
        return Err(CliError::Failed(format!(
            "version {} failed: {why}",
            v.label
        )));
    }
    Ok(v)
}

/// Polls an environment for `--wait`, keeping a spinner on stderr up to date with its
/// status and newest event.
struct Poller<'a> {
    c: &'a Client,
    env: &'a str,
    spinner: Spinner,
    retry: Retry,
    last_event_id: i64,
    newest_event: String,
    current: Environment,
}

impl<'a> Poller<'a> {
    fn new(c: &'a Client, env: &'a str, started: &Environment) -> Self {
        Poller {
            c,
            env,
            spinner: Spinner::new(&format!("{env}: {}", started.status)),
            retry: Retry(0),
            last_event_id: 0,
            newest_event: String::new(),
            current: started.clone(),
        }
    }

    /// Waits a moment, then refreshes `current` (retrying connection failures) and the
    /// spinner. Errors other than tolerated connection failures pass through.
    async fn next(&mut self) -> Result<(), CliError> {
        loop {
            tokio::time::sleep(POLL).await;
            match self.c.get_environment(self.env).await {
                Ok(d) => {
                    self.retry.0 = 0;
                    self.current = d.environment;
                    break;
                }
                Err(e) if self.retry.allow(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        if let Ok(events) = self.c.events(self.env, Some(1)).await {
            if let Some(e) = events.last() {
                if e.id != self.last_event_id {
                    self.last_event_id = e.id;
                    self.newest_event = crate::error::one_line(&e.message);
                }
            }
        }
        let cur = &self.current;
        let msg = if self.newest_event.is_empty() {
            format!("{}: {} ({})", self.env, cur.status, cur.health)
        } else {
            format!(
                "{}: {} ({}) {}",
                self.env,
                cur.status,
                cur.health,
                trim_to(&self.newest_event, 100)
            )
        };
        self.spinner.set(&msg);
        Ok(())
    }
}

/// Follows an environment from the answer that started an operation (`started`) until
/// `until`; fails with the operation's message if it failed.
pub(crate) async fn environment(
    c: &Client,
    env: &str,
    started: &Environment,
    until: Until,
) -> Result<Environment, CliError> {
    let op_id = started.operation.as_ref().map(|o| o.id);
    let mut p = Poller::new(c, env, started);
    loop {
        match check(&p.current, op_id, until) {
            Some(Ok(())) => {
                p.spinner.finish();
                return Ok(p.current);
            }
            Some(Err(e)) => {
                p.spinner.finish();
                return Err(e);
            }
            None => {}
        }
        match p.next().await {
            Ok(()) => {}
            Err(CliError::Api { status: 404, .. }) if until == Until::Terminated => {
                p.spinner.finish();
                p.current.status = EnvStatus::Terminated;
                return Ok(p.current);
            }
            Err(e) => {
                p.spinner.finish();
                return Err(e);
            }
        }
    }
}

/// Where the operation we follow stands, seen from the environment.
#[derive(Debug, PartialEq)]
pub(crate) enum Ours {
    Running,
    Succeeded,
    /// Failed, with its message.
    Failed(String),
    /// A later operation replaced it (a rollback, after a failure): ask its record.
    Superseded,
}

pub(crate) fn ours(e: &Environment, op_id: i64) -> Ours {
    match &e.operation {
        Some(op) if op.id == op_id => match op.outcome {
            OperationOutcome::Running => Ours::Running,
            OperationOutcome::Succeeded => Ours::Succeeded,
            OperationOutcome::Failed => Ours::Failed(failure_message(op)),
        },
        Some(op) if op.id > op_id => Ours::Superseded,
        // Not visible (yet): go by the status.
        _ if e.status.is_transitional() => Ours::Running,
        _ => Ours::Succeeded,
    }
}

fn failure_message(op: &Operation) -> String {
    op.message
        .clone()
        .unwrap_or_else(|| format!("{} {} failed", op.kind, op.id))
}

/// Follows the operation `started` began (deploy, configure, …) to its end. When it fails
/// and the server rolls back (the environment stays Updating under a `rollback`
/// operation), keeps following until the environment is no longer Updating, tells the
/// rollback's outcome on stderr, then fails with the operation's message.
pub(crate) async fn operation(
    c: &Client,
    env: &str,
    started: &Environment,
) -> Result<Environment, CliError> {
    let Some(op) = started.operation.clone() else {
        return environment(c, env, started, Until::OperationEnds).await;
    };
    let mut p = Poller::new(c, env, started);
    let failure = loop {
        match ours(&p.current, op.id) {
            Ours::Running => {}
            Ours::Succeeded => {
                p.spinner.finish();
                return Ok(p.current);
            }
            Ours::Failed(msg) => break msg,
            Ours::Superseded => {
                let record = c
                    .deployments(env)
                    .await
                    .ok()
                    .and_then(|ds| ds.into_iter().find(|d| d.id == op.id));
                let later_is_rollback = p
                    .current
                    .operation
                    .as_ref()
                    .is_some_and(|o| o.kind == OpKind::Rollback.as_str());
                match record {
                    Some(d) if d.outcome == OperationOutcome::Failed => {
                        break d
                            .message
                            .unwrap_or_else(|| format!("{} {} failed", op.kind, op.id))
                    }
                    Some(d) if d.outcome == OperationOutcome::Running => {}
                    None if later_is_rollback => break format!("{} {} failed", op.kind, op.id),
                    _ => {
                        p.spinner.finish();
                        return Ok(p.current);
                    }
                }
            }
        }
        if let Err(e) = p.next().await {
            p.spinner.finish();
            return Err(e);
        }
    };
    if p.current.status == EnvStatus::Updating {
        p.spinner.println(&format!("{failure}; rolling back"));
        while p.current.status == EnvStatus::Updating {
            if let Err(e) = p.next().await {
                p.spinner.finish();
                eprintln!("cannot follow the rollback: {e}");
                return Err(CliError::Failed(failure));
            }
        }
    }
    p.spinner.finish();
    if let Some(line) = rollback_outcome(&p.current, op.id) {
        eprintln!("{line}");
    }
    Err(CliError::Failed(failure))
}

/// What became of the rollback that followed operation `op_id`, if one did.
pub(crate) fn rollback_outcome(e: &Environment, op_id: i64) -> Option<String> {
    let rb = e
        .operation
        .as_ref()
        .filter(|o| o.id > op_id && o.kind == OpKind::Rollback.as_str())?;
    Some(match rb.outcome {
        OperationOutcome::Succeeded => format!(
            "rolled back: environment {} is {} ({}), running version {}",
            e.name, e.status, e.health, e.version
        ),
        OperationOutcome::Failed => format!("rollback {} failed: {}", rb.id, failure_message(rb)),
        OperationOutcome::Running => format!(
            "rollback {} is still running (environment {} is {})",
            rb.id, e.name, e.status
        ),
    })
}

/// `None` while still going; `Some(Ok)` when done; `Some(Err)` when the operation failed.
pub(crate) fn check(
    e: &Environment,
    op_id: Option<i64>,
    until: Until,
) -> Option<Result<(), CliError>> {
    // The operation we started (or a later one, if the server replaced it).
    let op = e
        .operation
        .as_ref()
        .filter(|o| !matches!(op_id, Some(id) if o.id < id));
    if let Some(op) = op {
        if op.outcome == OperationOutcome::Failed
            && (op_id.is_some() || !e.status.is_transitional())
        {
            let msg = op
                .message
                .clone()
                .unwrap_or_else(|| format!("{} failed", op.kind));
            return Some(Err(CliError::Failed(msg)));
        }
    }
    match until {
        Until::Terminated => (e.status == EnvStatus::Terminated).then_some(Ok(())),
        Until::OperationEnds => match op {
            // Without the started operation's id, an older finished one could be stale:
            // also ask for a resting status.
            Some(op) => (op.outcome != OperationOutcome::Running
                && (op_id.is_some() || !e.status.is_transitional()))
            .then_some(Ok(())),
            // No operation to follow: wait for a resting status.
            None if op_id.is_none() => (!e.status.is_transitional()).then_some(Ok(())),
            // Our operation is not visible (yet): keep waiting, unless the status rests.
            None => (!e.status.is_transitional() && e.operation.is_none()).then_some(Ok(())),
        },
    }
}

/// The line printed when an environment operation succeeded.
pub(crate) fn summary(e: &Environment) -> String {
    let mut s = format!(
        "environment {} is {} ({}), running version {}",
        e.name, e.status, e.health, e.version
    );
    if let Some(url) = &e.url {
        s.push_str(&format!(" at {url}"));
    }
    s
}

fn trim_to(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sprout_core::{Bootstrap, HealthStatus, InstanceType, Mode, Policy, Tier};

    fn env(status: EnvStatus, op: Option<(i64, OperationOutcome)>) -> Environment {
        Environment {
            name: "web".into(),
            app: "shop".into(),
            version: "v1".into(),
            tier: Tier::Web,
            mode: Mode::Dev,
            status,
            health: "Green".into(),
            health_status: HealthStatus::Ok,
            policy: Policy::AllAtOnce,
            cname: "web".into(),
            url: None,
            instance_type: InstanceType::Micro,
            bootstrap: Bootstrap::Golden,
            min: 1,
            max: 1,
            desired: 1,
            env: Default::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            operation: op.map(|(id, outcome)| Operation {
                id,
                kind: "deploy".into(),
                version: None,
                started_by: None,
                started_at: Utc::now(),
                finished_at: None,
                outcome,
                message: Some("health check failed".into()),
            }),
        }
    }

    #[test]
    fn waiting_for_operations() {
        use OperationOutcome::*;
        let w = Until::OperationEnds;
        assert!(check(&env(EnvStatus::Updating, Some((2, Running))), Some(2), w).is_none());
        assert!(matches!(
            check(&env(EnvStatus::Ready, Some((2, Succeeded))), Some(2), w),
            Some(Ok(()))
        ));
        let failed = check(&env(EnvStatus::Ready, Some((2, Failed))), Some(2), w);
        assert_eq!(
            failed.unwrap().unwrap_err().to_string(),
            "health check failed"
        );
        // An older, finished operation is not ours.
        assert!(check(&env(EnvStatus::Updating, Some((1, Failed))), Some(2), w).is_none());
        assert!(check(&env(EnvStatus::Launching, None), None, w).is_none());
        assert!(matches!(
            check(&env(EnvStatus::Ready, None), None, w),
            Some(Ok(()))
        ));
    }

    #[test]
    fn waiting_for_termination() {
        use OperationOutcome::*;
        let w = Until::Terminated;
        assert!(check(&env(EnvStatus::Terminating, Some((3, Running))), Some(3), w).is_none());
        assert!(check(
            &env(EnvStatus::Terminating, Some((3, Succeeded))),
            Some(3),
            w
        )
        .is_none());
        assert!(matches!(
            check(
                &env(EnvStatus::Terminated, Some((3, Succeeded))),
                Some(3),
                w
            ),
            Some(Ok(()))
        ));
        assert!(matches!(
            check(&env(EnvStatus::Terminating, Some((3, Failed))), Some(3), w),
            Some(Err(_))
        ));
    }

    #[test]
    fn following_an_operation_through_a_rollback() {
        use OperationOutcome::*;
        assert_eq!(
            ours(&env(EnvStatus::Updating, Some((7, Running))), 7),
            Ours::Running
        );
        assert_eq!(
            ours(&env(EnvStatus::Ready, Some((7, Succeeded))), 7),
            Ours::Succeeded
        );
        assert_eq!(
            ours(&env(EnvStatus::Ready, Some((7, Failed))), 7),
            Ours::Failed("health check failed".into())
        );
        // The failure and the rollback's start are one step on the server: the deploy may
        // never be seen failed, only replaced.
        let mut rolling = env(EnvStatus::Updating, Some((8, Running)));
        rolling.operation.as_mut().unwrap().kind = "rollback".into();
        assert_eq!(ours(&rolling, 7), Ours::Superseded);
        assert_eq!(
            rollback_outcome(&rolling, 7).unwrap(),
            "rollback 8 is still running (environment web is Updating)"
        );
        let mut done = env(EnvStatus::Ready, Some((8, Succeeded)));
        done.operation.as_mut().unwrap().kind = "rollback".into();
        assert_eq!(
            rollback_outcome(&done, 7).unwrap(),
            "rolled back: environment web is Ready (Green), running version v1"
        );
        let mut failed = env(EnvStatus::Ready, Some((8, Failed)));
        failed.operation.as_mut().unwrap().kind = "rollback".into();
        assert_eq!(
            rollback_outcome(&failed, 7).unwrap(),
            "rollback 8 failed: health check failed"
        );
        // Not a rollback, or not a later one: nothing to tell.
        assert!(rollback_outcome(&env(EnvStatus::Ready, Some((8, Succeeded))), 7).is_none());
        assert!(rollback_outcome(&done, 8).is_none());
        // No operation in sight: the status decides.
        assert_eq!(ours(&env(EnvStatus::Updating, None), 7), Ours::Running);
        assert_eq!(ours(&env(EnvStatus::Ready, None), 7), Ours::Succeeded);
    }
}
