//! The dispatcher: Beanstalk's `sqsd`, played by the control plane for every worker
//! instance. It claims messages for each healthy instance (at most its connection limit in
//! flight), POSTs each to the instance with the sqsd headers, deletes it on `200`, and makes
//! it visible again after the error visibility timeout otherwise. Messages held for an
//! instance that leaves go back to the queue at once.
//!
//! A message cannot steer a request anywhere but its instance: the URL is built from the
//! instance's address and a checked absolute path (`RequestPath`), redirects are not followed
//! and no proxy is used. A message whose path is not one goes to the dead-letter queue.

use super::{attributes_of, ms_to_time, now_ms, Queues};
use sprout_core::queue::{sqsd_request, Delivery, SqsdSettings};
use sprout_core::{RequestPath, Tier};
use sprout_store::EnvironmentStore as _;
use sprout_store::{EnvRow, MessageRow, QueueRow};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// One instance the dispatcher feeds.
struct Slot {
    permits: Arc<Semaphore>,
    connections: u32,
    /// Cancels the instance's requests when it leaves.
    cancel: CancellationToken,
}

const EXPIRE_EVERY: Duration = Duration::from_secs(10);
const IDLE_PASS: Duration = Duration::from_millis(500);
/// Messages claimed for one instance per round of a pass.
const CLAIM_PER_ROUND: usize = 10;
const MAX_ROUNDS: usize = 10;

impl Queues {
    /// Runs until `shutdown`. Messages a previous process held are released first: their
    /// requests died with it.
    pub(crate) async fn run_dispatcher(&self, shutdown: CancellationToken) {
        match self.shared.store().release_all_held(now_ms()).await {
            Ok(n) if n > 0 => {
                tracing::info!(
                    messages = n,
                    "messages in flight before the restart are back in their queues"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release held messages"),
        }
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A 3xx is an answer like any other non-200 (retried), never a new destination;
            // and the request goes straight to the instance, whatever HTTP_PROXY says.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(100)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "dispatcher cannot build its HTTP client");
                return;
            }
        };
        tracing::info!("dispatcher started");
        let mut slots: HashMap<String, Slot> = HashMap::new();
        let mut queues: HashMap<i64, (chrono::DateTime<chrono::Utc>, QueueRow)> = HashMap::new();
        let mut last_expire = Instant::now();
        loop {
            if let Err(e) = self.dispatch_pass(&http, &mut slots, &mut queues).await {
                tracing::warn!(error = %e, "dispatch pass failed");
            }
            if last_expire.elapsed() > EXPIRE_EVERY {
                last_expire = Instant::now();
                match self.shared.store().expire_messages(now_ms()).await {
                    Ok(n) if n > 0 => tracing::info!(messages = n, "expired messages dropped"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiring messages failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(IDLE_PASS) => {}
                _ = self.signals.dispatch.notified() => {}
            }
        }
        for slot in slots.values() {
            slot.cancel.cancel();
        }
        // A clean stop hands its messages back now rather than after their visibility.
        if let Err(e) = self.shared.store().release_all_held(now_ms()).await {
            tracing::warn!(error = %e, "could not release held messages at stop");
        }
        tracing::info!("dispatcher stopped");
    }

    async fn dispatch_pass(
        &self,
        http: &reqwest::Client,
        slots: &mut HashMap<String, Slot>,
        queues: &mut HashMap<i64, (chrono::DateTime<chrono::Utc>, QueueRow)>,
    ) -> crate::error::Result<()> {
        let envs: Vec<EnvRow> = self
            .shared
            .store()
            .active_environments()
            .await?
            .envs
            .into_iter()
            .filter(|e| e.tier == Tier::Worker && e.status.is_live())
            .collect();
        let mut present: HashSet<String> = HashSet::new();
        for env in &envs {
            let settings = match Self::sqsd_settings(env) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(env = %env.name, error = %e, "bad sqsd settings; not dispatching");
                    continue;
                }
            };
            let queue = match queues.get(&env.id) {
                Some((at, q)) if *at == env.updated_at => q.clone(),
                _ => {
                    let q = self.ensure_worker_queue(env).await?;
                    queues.insert(env.id, (env.updated_at, q.clone()));
                    q
                }
            };
            let now = now_ms();
            if self.shared.store().move_dead(&queue, now).await? > 0 {
                self.dead_letter_event(&queue).await;
            }
            let backends = self.shared.balancer().backends(&env.name);
            for backend in &backends {
                present.insert(backend.id.clone());
                if backend.healthy && !slots.contains_key(&backend.id) {
                    slots.insert(
                        backend.id.clone(),
                        Slot {
                            permits: Arc::new(Semaphore::new(settings.http_connections as usize)),
                            connections: settings.http_connections,
                            cancel: CancellationToken::new(),
                        },
                    );
                }
            }
            // Rounds of at most CLAIM_PER_ROUND per instance, so work spreads evenly.
            for _round in 0..MAX_ROUNDS {
                let mut claimed_any = false;
                for backend in backends.iter().filter(|b| b.healthy) {
                    let Some(slot) = slots.get_mut(&backend.id) else {
                        continue;
                    };
                    if slot.connections != settings.http_connections {
                        // The limit changed: a fresh semaphore; requests in flight finish on the old.
                        slot.permits = Arc::new(Semaphore::new(settings.http_connections as usize));
                        slot.connections = settings.http_connections;
                    }
                    let free = slot.permits.available_permits().min(CLAIM_PER_ROUND);
                    if free == 0 {
                        continue;
                    }
                    let claimed = self
                        .shared
                        .store()
                        .claim(
                            &queue,
                            free as i64,
                            i64::from(settings.dispatch_visibility_secs()) * 1000,
                            Some(&backend.id),
                            now,
                        )
                        .await?;
                    claimed_any |= !claimed.is_empty();
                    for message in claimed {
                        let Ok(permit) = slot.permits.clone().try_acquire_owned() else {
                            break;
                        };
                        let job = Job {
                            queues: self.clone(),
                            http: http.clone(),
                            addr: backend.addr,
                            instance: backend.id.clone(),
                            queue: queue.clone(),
                            settings: settings.clone(),
                            message,
                            cancel: slot.cancel.clone(),
                        };
                        tokio::spawn(async move {
                            job.run().await;
                            drop(permit);
                        });
                    }
                }
                if !claimed_any {
                    break;
                }
            }
        }
        // Instances that left (drained, replaced, dead): their messages go back now.
        let gone: Vec<String> = slots
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(slot) = slots.remove(&id) {
                slot.cancel.cancel();
            }
            let n = self.shared.store().release_holder(&id, now_ms()).await?;
            if n > 0 {
                tracing::info!(instance = %id, messages = n, "instance left; its messages are back in the queue");
                self.queue_changed();
            }
        }
        queues.retain(|id, _| envs.iter().any(|e| e.id == *id));
        Ok(())
    }
}

/// One message on its way to one instance.
struct Job {
    queues: Queues,
    http: reqwest::Client,
    addr: SocketAddr,
    instance: String,
    queue: QueueRow,
    settings: SqsdSettings,
    message: MessageRow,
    cancel: CancellationToken,
}

impl Job {
    async fn run(self) {
        let Some(receipt) = self.message.receipt.clone() else {
            return;
        };
        let attributes = attributes_of(&self.message);
        let first = ms_to_time(self.message.first_received_at.unwrap_or_else(now_ms))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let delivery = Delivery {
            message_id: &self.message.message_id,
            queue: &self.queue.name,
            receive_count: self.message.receive_count,
            first_received_at: &first,
            attributes: &attributes,
        };
        let url = sqsd_request(&self.settings, &delivery).and_then(|(path, headers)| {
            let url = instance_url(self.addr, &path).ok_or_else(|| {
                sprout_core::queue::QueueError::BadAttribute {
                    name: sprout_core::queue::ATTR_PATH.into(),
                    reason: format!("'{path}' does not make a URL of the instance"),
                }
            })?;
            Ok((url, headers))
        });
        let (url, headers) = match url {
            Ok(u) => u,
            Err(e) => {
                self.undeliverable(&receipt, &e.to_string()).await;
                return;
            }
        };
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, &self.settings.mime_type)
            .timeout(Duration::from_secs(u64::from(
                self.settings.inactivity_timeout_secs,
            )))
            .body(self.message.body.clone());
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => return,
            r = async {
                let resp = req.send().await?;
                let status = resp.status();
                let _ = resp.bytes().await;
                Ok::<_, reqwest::Error>(status)
            } => r,
        };
        let store = self.queues.shared.store();
        match outcome {
            Ok(status) if status == reqwest::StatusCode::OK => {
                match store.delete_by_receipt(self.queue.id, &receipt).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(message = %self.message.message_id, "processed, but its receipt had expired")
                    }
                    Err(e) => {
                        tracing::warn!(message = %self.message.message_id, error = %e, "could not delete a processed message")
                    }
                }
                tracing::debug!(instance = %self.instance, message = %self.message.message_id, ms = started.elapsed().as_millis() as u64, "message processed");
            }
            other => {
                let why = match &other {
                    Ok(status) => format!("status {}", status.as_u16()),
                    Err(e) if e.is_timeout() => {
                        "no answer within the inactivity timeout".to_string()
                    }
                    Err(e) => format!("request failed: {e}"),
                };
                tracing::info!(instance = %self.instance, message = %self.message.message_id, receive_count = self.message.receive_count, %why, "message not processed; it will be retried");
                let visible_at =
                    now_ms() + i64::from(self.settings.error_visibility_timeout_secs) * 1000;
                if let Err(e) = store
                    .change_visibility(self.queue.id, &receipt, visible_at)
                    .await
                {
                    tracing::warn!(message = %self.message.message_id, error = %e, "could not return a message to the queue");
                }
            }
        }
        self.queues.signals.dispatch.notify_one();
    }

    /// A message no retry can deliver goes to the dead-letter queue at once, with an event.
    async fn undeliverable(&self, receipt: &str, why: &str) {
        tracing::warn!(instance = %self.instance, message = %self.message.message_id, %why, "message cannot be delivered; moved to the dead-letter queue");
        let store = self.queues.shared.store();
        match store.dead_letter(&self.queue, receipt, now_ms()).await {
            Ok(true) => {
                if let Some(env_id) = self.queue.env_id {
                    let _ = store
                        .add_event(
                            env_id,
                            sprout_core::Severity::Warn,
                            &format!(
                                "message {} of queue {} cannot be delivered ({why}); moved to its dead-letter queue",
                                self.message.message_id, self.queue.name
                            ),
                        )
                        .await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(message = %self.message.message_id, error = %e, "could not move an undeliverable message")
            }
        }
    }
}

/// The URL of `path` on the instance at `addr`, built from its parts (never by joining
/// strings), and only if it names exactly that address.
fn instance_url(addr: SocketAddr, path: &RequestPath) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse("http://127.0.0.1/").ok()?;
    url.set_ip_host(addr.ip()).ok()?;
    url.set_port(Some(addr.port())).ok()?;
    url.set_path(path.path());
    url.set_query(path.query());
    let only_the_instance = url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && url.socket_addrs(|| None).ok()? == [addr];
    only_the_instance.then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_instance_only() {
        let addr: SocketAddr = "172.18.0.3:8080".parse().expect("address");
        let url = |p: &str| {
            RequestPath::parse(p)
                .ok()
                .and_then(|p| instance_url(addr, &p))
                .map(|u| u.to_string())
        };
        assert_eq!(url("/").as_deref(), Some("http://172.18.0.3:8080/"));
        assert_eq!(
            url("/tasks/a@b:c?x=1").as_deref(),
            Some("http://172.18.0.3:8080/tasks/a@b:c?x=1")
        );
        // What used to become `http://172.18.0.3:8080@127.0.0.1:9999/ssrf` is no path at all.
        assert_eq!(url("@127.0.0.1:9999/ssrf"), None);
        let v6: SocketAddr = "[::1]:81".parse().expect("address");
        let p = RequestPath::root();
        assert_eq!(
            instance_url(v6, &p).map(|u| u.to_string()).as_deref(),
            Some("http://[::1]:81/")
        );
    }
}
