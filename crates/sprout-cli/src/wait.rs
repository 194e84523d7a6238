//! `--wait`: following a version build or an environment operation to its end.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{tail_lines, Spinner};
use sprout_core::api::{Environment, OperationOutcome, Version};
use sprout_core::{EnvStatus, VersionStatus};
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

/// Follows an environment from the answer that started an operation (`started`) until
/// `until`; fails with the operation's message if it failed.
pub(crate) async fn environment(
    c: &Client,
    env: &str,
    started: &Environment,
    until: Until,
) -> Result<Environment, CliError> {
    let op_id = started.operation.as_ref().map(|o| o.id);
    let mut spinner = Spinner::new(&format!("{env}: {}", started.status));
    let mut retry = Retry(0);
    let mut last_event_id = 0;
    let mut newest_event = String::new();
    let mut current = started.clone();
    loop {
        match check(&current, op_id, until) {
            Some(Ok(())) => {
                spinner.finish();
                return Ok(current);
            }
            Some(Err(e)) => {
                spinner.finish();
                return Err(e);
            }
            None => {}
        }
        tokio::time::sleep(POLL).await;
        match c.get_environment(env).await {
            Ok(d) => {
                retry.0 = 0;
                current = d.environment;
            }
            Err(CliError::Api { status: 404, .. }) if until == Until::Terminated => {
                spinner.finish();
                current.status = EnvStatus::Terminated;
                return Ok(current);
            }
            Err(e) if retry.allow(&e) => continue,
            Err(e) => {
                spinner.finish();
                return Err(e);
            }
        }
        if let Ok(events) = c.events(env, Some(1)).await {
            if let Some(e) = events.last() {
                if e.id != last_event_id {
                    last_event_id = e.id;
                    newest_event = crate::error::one_line(&e.message);
                }
            }
        }
        let msg = if newest_event.is_empty() {
            format!("{env}: {} ({})", current.status, current.health)
        } else {
            format!(
                "{env}: {} ({}) {}",
                current.status,
                current.health,
                trim_to(&newest_event, 100)
            )
        };
        spinner.set(&msg);
    }
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
    use sprout_core::api::Operation;
    use sprout_core::{Bootstrap, InstanceType, Mode, Tier};

    fn env(status: EnvStatus, op: Option<(i64, OperationOutcome)>) -> Environment {
        Environment {
            name: "web".into(),
            app: "shop".into(),
            version: "v1".into(),
            tier: Tier::Web,
            mode: Mode::Dev,
            status,
            health: "Green".into(),
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
}
