//! The last hour of each environment's figures, for the dashboard's charts: a sampler reads
//! the balancer's metrics and control's environment state every [`SAMPLE_EVERY`] and keeps
//! them in a ring buffer per environment, in memory (a restart starts the charts afresh).
//! The dashboard only reads it.

use crate::{Control, ControlError, Usage};
use sprout_core::auth::Role;
use sprout_store::EnvironmentStore as _;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
const CAPACITY: usize = 360;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_pct: f64,
    pub instances: usize,
}

#[derive(Default)]
pub struct History {
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
    /// The newest CPU/memory reading of each instance, by environment.
    usage: Mutex<HashMap<String, HashMap<String, Usage>>>,
}

impl History {
    pub fn record(&self, env: &str, sample: Sample) {
        if let Ok(mut all) = self.samples.lock() {
            let ring = all.entry(env.to_string()).or_default();
            if ring.len() == CAPACITY {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }

    pub fn samples(&self, env: &str) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|all| {
                all.get(env)
                    .map(|r| r.iter().copied().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    pub fn usage(&self, env: &str) -> HashMap<String, Usage> {
        self.usage
            .lock()
            .map(|all| all.get(env).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn set_usage(&self, env: &str, usage: HashMap<String, Usage>) {
        if let Ok(mut all) = self.usage.lock() {
            all.insert(env.to_string(), usage);
        }
    }

    /// Forgets environments that no longer exist.
    fn retain(&self, live: &[String]) {
        if let Ok(mut all) = self.samples.lock() {
            all.retain(|k, _| live.contains(k));
        }
        if let Ok(mut all) = self.usage.lock() {
            all.retain(|k, _| live.contains(k));
        }
    }

    /// The sampler: runs until `shutdown`.
    pub async fn run(&self, control: Control, shutdown: CancellationToken) {
        tracing::info!(
            every_secs = SAMPLE_EVERY.as_secs(),
            "dashboard sampler started"
        );
        loop {
            if let Err(e) = self.sample_all(&control).await {
                tracing::debug!(error = %e, "dashboard sample failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
        tracing::info!("dashboard sampler stopped");
    }

    async fn sample_all(&self, control: &Control) -> Result<(), ControlError> {
        // Readable environments only: a corrupt one must not stop the others' charts.
        let names: Vec<String> = control
            .store()
            .active_environments()
            .await?
            .envs
            .into_iter()
            .map(|e| e.name)
            .collect();
        self.retain(&names);
        let reads = names.iter().map(|name| async move {
            let metrics = control.balancer().metrics(name);
            let detail = control.get_environment(name, Role::Viewer).await.ok();
            let usage = control.instance_usage(name).await.unwrap_or_default();
            (name.clone(), metrics, detail, usage)
        });
        let now = Instant::now();
        for (name, metrics, detail, usage) in futures_util::future::join_all(reads).await {
            let instances = detail
                .map(|d| d.instances.iter().filter(|i| i.state == "running").count())
                .unwrap_or(0);
            let (rps, p50, p99, err) = metrics
                .map(|m| {
                    let err = if m.count > 0 {
                        m.status_5xx as f64 * 100.0 / m.count as f64
                    } else {
                        0.0
                    };
                    (m.requests_per_sec, m.p50_ms, m.p99_ms, err)
                })
                .unwrap_or_default();
            self.record(
                &name,
                Sample {
                    at: now,
                    requests_per_sec: rps,
                    p50_ms: p50,
                    p99_ms: p99,
                    error_pct: err,
                    instances,
                },
            );
            self.set_usage(&name, usage);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_hour() {
        let h = History::default();
        let s = Sample {
            at: Instant::now(),
            requests_per_sec: 1.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            error_pct: 0.0,
            instances: 1,
        };
        for i in 0..(CAPACITY + 5) {
            h.record("e", Sample { instances: i, ..s });
        }
        let got = h.samples("e");
        assert_eq!(got.len(), CAPACITY);
        assert_eq!(got[0].instances, 5);
        assert!(h.samples("other").is_empty());
    }
}
