//! Steady traffic through the balancer, counting what came back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Failures kept per client, as examples.
const KEPT_FAILURES: usize = 5;

/// What a steady load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures of each client.
    pub failures: Vec<String>,
    /// Answers per `X-Sprout-Version`.
    pub versions: BTreeMap<String, u64>,
    /// Answers per `X-Sprout-Instance`.
    pub instances: BTreeMap<String, u64>,
}

/// Steady traffic through the balancer from a few concurrent clients, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// `clients` clients sending `GET path` with `host` as the Host, 5 ms apart each.
    pub fn start(balancer: &str, host: &str, path: &str, clients: usize) -> Self {
        Self::paced(balancer, host, path, clients, Duration::from_millis(5))
    }

    /// Like [`Load::start`], with `pause` between a client's requests.
    pub fn paced(balancer: &str, host: &str, path: &str, clients: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url, host) =
                    (stop.clone(), format!("{balancer}{path}"), host.to_string());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap_or_default();
                    let mut report = LoadReport::default();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).header("host", &host).send().await {
                            Ok(r) if r.status().is_success() => {
                                report.ok += 1;
                                let header = |name: &str| {
                                    r.headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string()
                                };
                                *report
                                    .versions
                                    .entry(header("x-sprout-version"))
                                    .or_default() += 1;
                                *report
                                    .instances
                                    .entry(header("x-sprout-instance"))
                                    .or_default() += 1;
                                let _ = r.bytes().await;
                            }
                            Ok(r) => {
                                report.failed += 1;
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                if report.failures.len() < KEPT_FAILURES {
                                    report.failures.push(format!("{status}: {body}"));
                                }
                            }
                            Err(e) => {
                                report.failed += 1;
                                if report.failures.len() < KEPT_FAILURES {
                                    report.failures.push(e.to_string());
                                }
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                    report
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients and adds up what they saw.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadReport::default();
        for task in self.tasks {
            let Ok(r) = task.await else { continue };
            total.ok += r.ok;
            total.failed += r.failed;
            total.failures.extend(r.failures);
            for (k, v) in r.versions {
                *total.versions.entry(k).or_default() += v;
            }
            for (k, v) in r.instances {
                *total.instances.entry(k).or_default() += v;
            }
        }
        total
    }
}
