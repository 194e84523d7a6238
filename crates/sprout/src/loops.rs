//! The control loops of `sprout server` as one unit that can stop and start again: a server
//! handing over to the next one stops them first, so two servers never reconcile at once,
//! and starts them again if the next server goes away before taking over.

use std::sync::Arc;

use sprout_control::history::History;
use sprout_control::Control;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often request counts go to the store: what a crash can lose of a deployment's
/// record (see `Control::checkpoint_counts`).
const COUNTS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

pub struct Loops {
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    control: Control,
}

impl Loops {
    /// Starts the reconciler, autoscaler, dispatcher, cron, the scheduled actions, the
    /// dashboard's sampler and the checkpoints of request counts.
    pub async fn start(control: &Control, history: &Arc<History>) -> anyhow::Result<Loops> {
        control.start_schedules().await?;
        let token = CancellationToken::new();
        let mut tasks = Vec::new();
        {
            let (token, control, history) = (token.clone(), control.clone(), history.clone());
            tasks.push(tokio::spawn(
                async move { history.run(control, token).await },
            ));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(
                async move { control.run_reconciler(token).await },
            ));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(
                async move { control.run_autoscaler(token).await },
            ));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(
                async move { control.run_dispatcher(token).await },
            ));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(async move { control.run_cron(token).await }));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(async move {
                control.run_resource_upkeep(token).await
            }));
        }
        {
            let (token, control) = (token.clone(), control.clone());
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(COUNTS_INTERVAL);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    if let Err(e) = control.checkpoint_counts().await {
                        tracing::warn!(error = %e, "could not record request counts");
                    }
                }
            }));
        }
        Ok(Loops {
            token,
            tasks,
            control: control.clone(),
        })
    }

    /// Stops them and waits until they have (a reconcile pass under way finishes first).
    pub async fn stop(self) {
        self.token.cancel();
        self.control.stop_schedules().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
