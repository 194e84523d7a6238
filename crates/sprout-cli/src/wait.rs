//! `--wait`: following a version build or an environment operation to its end.

use crate::client::Client;
use crate::error::CliError;
use crate::output::{tail_lines, Spinner};
use sprout_core::api::{Environment, OperationOutcome, OperationPhase, OperationStatus, Version};
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

/// Follows the operation `started` began (launch, deploy, configure, abort's rollback,
/// terminate) through its resource, `GET /operations/{id}`, keeping a spinner on stderr up
/// to date; then returns the environment (for `until` Terminated, once it is gone). When
/// the operation fails, fails with its message; when a rollback follows it, tells so, waits
/// for the rollback's end and tells how it ended before failing.
pub(crate) async fn environment(
    c: &Client,
    env: &str,
    started: &Environment,
    until: Until,
) -> Result<Environment, CliError> {
    let Some(op) = started.operation.as_ref() else {
        return settle(c, env, started, until).await;
    };
    // An answer that started nothing new (e.g. settings applied at once) names the
    // operation that last ran, already finished.
    if op.outcome == OperationOutcome::Succeeded && until == Until::OperationEnds {
        return Ok(started.clone());
    }
    let mut spinner = Spinner::new(&format!("{env}: {}", started.status));
    let followed = follow(c, env, op.id, &mut spinner).await;
    spinner.finish();
    let op = followed?;
    let failure = || {
        op.message
            .clone()
            .unwrap_or_else(|| format!("{} {} failed", op.kind, op.id))
    };
    match op.phase {
        OperationPhase::RolledBack => {
            if let Ok(e) = c.get_environment(env).await {
                eprintln!("rolled back: {}", summary(&e.environment));
            }
            return Err(CliError::Failed(failure()));
        }
        OperationPhase::RollbackFailed => {
            if let Some(rb) = op.rolled_back_by {
                let why = match c.get_operation(rb).await {
                    Ok(r) => r.message.unwrap_or_else(|| format!("rollback {rb} failed")),
                    Err(e) => e.to_string(),
                };
                eprintln!("rollback {rb} failed: {why}");
            }
            return Err(CliError::Failed(failure()));
        }
        OperationPhase::Succeeded => {}
        _ => return Err(CliError::Failed(failure())),
    }
    match c.get_environment(env).await {
        Ok(d) => Ok(d.environment),
        Err(CliError::Api { status: 404, .. }) if until == Until::Terminated => {
            let mut gone = started.clone();
            gone.status = EnvStatus::Terminated;
            Ok(gone)
        }
        Err(e) => Err(e),
    }
}

/// Follows the deployment or configuration change `started` began (see [`environment`]).
pub(crate) async fn operation(
    c: &Client,
    env: &str,
    started: &Environment,
) -> Result<Environment, CliError> {
    environment(c, env, started, Until::OperationEnds).await
}

/// Polls operation `id` until nothing more will happen to it (its rollback, if one
/// followed, ended too).
async fn follow(
    c: &Client,
    env: &str,
    id: i64,
    spinner: &mut Spinner,
) -> Result<OperationStatus, CliError> {
    let mut retry = Retry(0);
    let mut rolling_back: Option<OperationStatus> = None;
    let mut newest_event = String::new();
    loop {
        tokio::time::sleep(POLL).await;
        let op = match c.get_operation(id).await {
            Ok(op) => {
                retry.0 = 0;
                op
            }
            Err(e) if retry.allow(&e) => continue,
            Err(e) => match rolling_back.take() {
                // The operation failed already: that is what to report.
                Some(last) => {
                    spinner.println(&format!("cannot follow the rollback: {e}"));
                    return Ok(last);
                }
                None => return Err(e),
            },
        };
        if op.phase == OperationPhase::RollingBack && rolling_back.is_none() {
            rolling_back = Some(op.clone());
            let why = op.message.as_deref().unwrap_or("the operation failed");
            spinner.println(&format!("{why}; rolling back"));
        }
        if op.phase.is_final() {
            return Ok(op);
        }
        if let Ok(events) = c.events(env, Some(1)).await {
            if let Some(e) = events.last() {
                newest_event = crate::error::one_line(&e.message);
            }
        }
        spinner.set(&progress_line(env, &op, &newest_event));
    }
}

/// The spinner's line: the environment's status, the instances on the new version, the
/// newest event.
fn progress_line(env: &str, op: &OperationStatus, newest_event: &str) -> String {
    let mut line = format!("{env}: {}", op.environment_status);
    if let Some(p) = &op.progress {
        line.push_str(&format!(
            " ({}/{} on {}, {} healthy)",
            p.on_version,
            p.desired,
            op.version.as_deref().unwrap_or("the new version"),
            p.healthy
        ));
    }
    if !newest_event.is_empty() {
        line.push(' ');
        line.push_str(&trim_to(newest_event, 100));
    }
    line
}

/// Without an operation to follow: waits for the environment to rest (or be gone).
async fn settle(
    c: &Client,
    env: &str,
    started: &Environment,
    until: Until,
) -> Result<Environment, CliError> {
    let mut spinner = Spinner::new(&format!("{env}: {}", started.status));
    let mut retry = Retry(0);
    let mut current = started.clone();
    loop {
        let done = match until {
            Until::Terminated => current.status == EnvStatus::Terminated,
            Until::OperationEnds => !current.status.is_transitional(),
        };
        if done {
            spinner.finish();
            return Ok(current);
        }
        tokio::time::sleep(POLL).await;
        match c.get_environment(env).await {
            Ok(d) => {
                retry.0 = 0;
                current = d.environment;
                spinner.set(&format!("{env}: {} ({})", current.status, current.health));
            }
            Err(e) if retry.allow(&e) => {}
            Err(CliError::Api { status: 404, .. }) if until == Until::Terminated => {
                current.status = EnvStatus::Terminated;
            }
            Err(e) => {
                spinner.finish();
                return Err(e);
            }
        }
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
    use sprout_core::api::OperationProgress;

    #[test]
    fn the_spinner_tells_progress_and_the_newest_event() {
        let mut op = OperationStatus {
            id: 7,
            environment: "web".into(),
            kind: "deploy".into(),
            version: Some("v2".into()),
            policy: None,
            batch: None,
            started_by: None,
            started_at: Utc::now(),
            finished_at: None,
            duration_secs: None,
            outcome: OperationOutcome::Running,
            phase: OperationPhase::InProgress,
            environment_status: EnvStatus::Updating,
            message: None,
            progress: Some(OperationProgress {
                desired: 4,
                on_version: 2,
                healthy: 1,
            }),
            rolled_back_by: None,
            requests: None,
            failed: None,
            step_failures: 0,
            last_error: None,
        };
        assert_eq!(
            progress_line("web", &op, "started instance i-1"),
            "web: Updating (2/4 on v2, 1 healthy) started instance i-1"
        );
        op.progress = None;
        assert_eq!(progress_line("web", &op, ""), "web: Updating");
    }
}
