//! Guards against clients that hold the balancer's resources: too many connections from one
//! address, and request bodies trickled slower than a minimum rate. The per-address count is
//! also the API's and the SQS endpoint's (`sprout_api::serve`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Open connections per client address.
type OpenCounts = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// Open connections per client address, shared by every serving thread. Touched once when a
/// connection opens and once when it closes, never per request.
#[derive(Default)]
pub struct ClientConns {
    open: OpenCounts,
}

impl ClientConns {
    /// A slot for one more connection from `ip`, or `None` when it already has `max`
    /// (`max` 0: no cap). The slot gives itself back when dropped.
    pub fn admit(&self, ip: IpAddr, max: u32) -> Option<ClientSlot> {
        if max == 0 {
            return Some(ClientSlot(None));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((self.open.clone(), ip))))
    }

    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

/// One open connection counted against its client's address.
pub struct ClientSlot(Option<(OpenCounts, IpAddr)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((open, ip)) = self.0.take() {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            // Removed at zero, so addresses seen once do not accumulate.
            if let Some(count) = open.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

/// Keeps a request body to a minimum average rate: after `grace`, the client must have sent
/// `min_rate` bytes for every further second spent waiting on it. Time spent writing to the
/// instance is not counted against the client.
pub(crate) struct Pace {
    min_rate: u32,
    grace: Duration,
    received: u64,
    waited: Duration,
}

impl Pace {
    pub(crate) fn new(min_rate: u32, grace: Duration) -> Pace {
        Pace {
            min_rate,
            grace,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    /// How long the next read may wait, at most `limit`; `None` when there is no minimum.
    pub(crate) fn allowance(&self, limit: Duration) -> Option<Duration> {
        if self.min_rate == 0 {
            return None;
        }
        let earned = Duration::try_from_secs_f64(self.received as f64 / f64::from(self.min_rate))
            .unwrap_or(Duration::MAX);
        Some(
            self.grace
                .saturating_add(earned)
                .saturating_sub(self.waited)
                .min(limit),
        )
    }

    /// Records one read: `n` bytes after waiting `waited`.
    pub(crate) fn record(&mut self, n: usize, waited: Duration) {
        self.received = self.received.saturating_add(n as u64);
        self.waited = self.waited.saturating_add(waited);
    }

    pub(crate) fn min_rate(&self) -> u32 {
        self.min_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_capped_per_address() {
        let conns = ClientConns::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = conns.admit(a, 2);
        let second = conns.admit(a, 2);
        assert!(first.is_some() && second.is_some());
        assert!(conns.admit(a, 2).is_none());
        assert!(
            conns.admit(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert_eq!(conns.count(a), 1);
        let third = conns.admit(a, 2);
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(conns.count(a), 0);
        assert!(
            conns.open.lock().unwrap().is_empty(),
            "no entry kept at zero"
        );
        let uncapped: Vec<_> = (0..10).map(|_| conns.admit(a, 0)).collect();
        assert!(uncapped.iter().all(Option::is_some));
        assert_eq!(conns.count(a), 0);
    }

    #[test]
    fn pace_earns_time_by_bytes() {
        let limit = Duration::from_secs(60);
        assert_eq!(Pace::new(0, Duration::from_secs(1)).allowance(limit), None);
        let mut pace = Pace::new(100, Duration::from_secs(2));
        assert_eq!(pace.allowance(limit), Some(Duration::from_secs(2)));
        pace.record(1, Duration::from_secs(1));
        assert_eq!(pace.allowance(limit), Some(Duration::from_millis(1010)));
        pace.record(0, Duration::from_secs(2));
        assert_eq!(pace.allowance(limit), Some(Duration::ZERO));
        pace.record(10_000, Duration::ZERO);
        assert_eq!(
            pace.allowance(limit),
            Some(limit),
            "never past the per-read limit"
        );
    }
}
