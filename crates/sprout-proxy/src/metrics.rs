//! Request metrics, lock-free on the request path.
//!
//! Every environment and every backend owns a [`Window`]: a ring of ten 1-second slots, each a
//! set of atomic counters plus a log-scale latency histogram (atomic counters too). A slot is
//! reused when its second comes round again; the first recorder of the new second resets it.
//! Environments additionally keep monotonic totals that are never reset (for "requests served
//! during a deployment": the caller diffs two snapshots), and backends keep monotonic
//! per-class counters for the Prometheus exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Number of 1-second slots in a window.
pub(crate) const SLOTS: u64 = 10;
/// Upper bound of the first latency bin, in microseconds.
const FIRST_BOUND_US: f64 = 50.0;
/// Each bin's upper bound is this factor above the previous one.
const GROWTH: f64 = 1.2;
/// Regular bins cover 50 µs · 1.2^0 ..= 50 µs · 1.2^77 ≈ 62 s; the last bin is the overflow.
const BINS: usize = 79;
/// Marks a slot being reset by its first recorder of a new second.
const RESETTING: u64 = u64::MAX;

/// Process-wide origin for slot epochs, so all windows agree on what "second n" is.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Slot tag of the second `at` falls in (1-based so 0 can mean "never used").
fn tag_of(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_secs() + 1
}

/// Histogram bin of a latency.
fn bin_of(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_BOUND_US {
        return 0;
    }
    let i = ((us / FIRST_BOUND_US).ln() / GROWTH.ln()).ceil();
    // `as` saturates for floats; NaN becomes 0.
    (i as usize).min(BINS - 1)
}

/// Upper bound of bin `i` in microseconds (the overflow bin reports its lower bound).
fn bin_upper_us(i: usize) -> f64 {
    FIRST_BOUND_US * GROWTH.powi(i.min(BINS - 2) as i32)
}

fn bin_lower_us(i: usize) -> f64 {
    if i == 0 {
        0.0
    } else {
        bin_upper_us(i - 1)
    }
}

/// Index of a status code's class in the `[2xx, 3xx, 4xx, 5xx]` counters, if it has one.
fn class_index(status: u16) -> Option<usize> {
    match status {
        200..=299 => Some(0),
        300..=399 => Some(1),
        400..=499 => Some(2),
        500..=599 => Some(3),
        _ => None,
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

struct Slot {
    /// Tag of the second this slot currently holds; `RESETTING` while being cleared.
    epoch: AtomicU64,
    count: AtomicU64,
    classes: [AtomicU64; 4],
    failed: AtomicU64,
    hist: [AtomicU64; BINS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            epoch: AtomicU64::new(0),
            count: AtomicU64::new(0),
            classes: zeros(),
            failed: AtomicU64::new(0),
            hist: zeros(),
        }
    }

    /// Makes sure the slot holds second `tag`, resetting it if it holds an older one.
    fn claim(&self, tag: u64) {
        let mut seen = self.epoch.load(Ordering::Acquire);
        if seen == tag {
            return;
        }
        if seen != RESETTING && seen < tag {
            match self
                .epoch
                .compare_exchange(seen, RESETTING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.count.store(0, Ordering::Relaxed);
                    self.failed.store(0, Ordering::Relaxed);
                    for c in self.classes.iter().chain(self.hist.iter()) {
                        c.store(0, Ordering::Relaxed);
                    }
                    self.epoch.store(tag, Ordering::Release);
                    return;
                }
                Err(now) => seen = now,
            }
        }
        // Another recorder is resetting the slot (a few dozen stores): wait briefly so our
        // sample is not wiped, but never block: after the bound, count it anyway.
        let mut spins = 0;
        while seen == RESETTING && spins < 1_000 {
            std::hint::spin_loop();
            seen = self.epoch.load(Ordering::Acquire);
            spins += 1;
        }
    }
}

/// A sliding window of [`SLOTS`] one-second slots.
pub(crate) struct Window {
    slots: Box<[Slot]>,
}

/// Sums of a window's live slots.
pub(crate) struct WindowSnap {
    pub(crate) count: u64,
    pub(crate) classes: [u64; 4],
    pub(crate) failed: u64,
    hist: [u64; BINS],
}

impl Window {
    fn new() -> Window {
        // Pin the origin before any sample can be taken, so no sample predates it.
        let _ = origin();
        Window {
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }

    fn record(&self, at: Instant, class: Option<usize>, failed: bool, latency: Option<Duration>) {
        let tag = tag_of(at);
        let Some(slot) = self.slots.get((tag % SLOTS) as usize) else {
            return;
        };
        slot.claim(tag);
        slot.count.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = class.and_then(|c| slot.classes.get(c)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            slot.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bin) = latency.and_then(|l| slot.hist.get(bin_of(l))) {
            bin.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self, now: Instant) -> WindowSnap {
        let current = tag_of(now);
        let mut snap = WindowSnap {
            count: 0,
            classes: [0; 4],
            failed: 0,
            hist: [0; BINS],
        };
        for slot in self.slots.iter() {
            let epoch = slot.epoch.load(Ordering::Acquire);
            if epoch == 0 || epoch == RESETTING || epoch > current || epoch + SLOTS <= current {
                continue;
            }
            snap.count += slot.count.load(Ordering::Relaxed);
            snap.failed += slot.failed.load(Ordering::Relaxed);
            for (s, c) in snap.classes.iter_mut().zip(slot.classes.iter()) {
                *s += c.load(Ordering::Relaxed);
            }
            for (s, c) in snap.hist.iter_mut().zip(slot.hist.iter()) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        snap
    }
}

impl WindowSnap {
    /// Latency quantile `q` (0..1) in milliseconds, interpolated inside its bin; 0 when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut below = 0u64;
        for (i, &n) in self.hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if below + n >= rank {
                let (lo, hi) = (bin_lower_us(i), bin_upper_us(i));
                let frac = (rank - below) as f64 / n as f64;
                return (lo + (hi - lo) * frac) / 1000.0;
            }
            below += n;
        }
        bin_upper_us(BINS - 1) / 1000.0
    }

    fn latency_samples(&self) -> u64 {
        self.hist.iter().sum()
    }
}

/// Seconds a snapshot taken at `now` covers for an object created at `created`.
fn window_secs(created: Instant, now: Instant) -> f64 {
    let since_origin = now.saturating_duration_since(origin());
    // The live slots span the nine completed seconds plus the current partial one.
    let span = (SLOTS - 1) as f64 + f64::from(since_origin.subsec_nanos()) / 1e9;
    let age = now.saturating_duration_since(created).as_secs_f64();
    // Below one second the rate would be a wild extrapolation.
    age.clamp(1.0, span.max(1.0))
}

/// Metrics of one environment.
pub(crate) struct EnvStats {
    created: Instant,
    window: Window,
    total_requests: AtomicU64,
    total_5xx: AtomicU64,
    total_failed: AtomicU64,
    total_latency_us: AtomicU64,
    /// Proxy-generated failures no backend can be blamed for (no healthy backend).
    unrouted_failed: AtomicU64,
    /// The totals as last checkpointed to the store (see `take_unsaved`).
    saved: std::sync::Mutex<Totals>,
}

impl EnvStats {
    pub(crate) fn new() -> EnvStats {
        EnvStats {
            created: Instant::now(),
            window: Window::new(),
            total_requests: AtomicU64::new(0),
            total_5xx: AtomicU64::new(0),
            total_failed: AtomicU64::new(0),
            total_latency_us: AtomicU64::new(0),
            unrouted_failed: AtomicU64::new(0),
            saved: std::sync::Mutex::new(Totals::default()),
        }
    }

    /// Adds the counts of previous servers (from the store) to the totals, as saved already.
    pub(crate) fn restore(&self, earlier: Totals) {
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        self.total_requests
            .fetch_add(earlier.requests, Ordering::Relaxed);
        self.total_5xx
            .fetch_add(earlier.status_5xx, Ordering::Relaxed);
        self.total_failed
            .fetch_add(earlier.failed, Ordering::Relaxed);
        saved.requests += earlier.requests;
        saved.status_5xx += earlier.status_5xx;
        saved.failed += earlier.failed;
    }

    /// What was counted since the last call (or the restore), now marked saved.
    pub(crate) fn take_unsaved(&self) -> Totals {
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.totals();
        let unsaved = Totals {
            requests: now.requests.saturating_sub(saved.requests),
            status_5xx: now.status_5xx.saturating_sub(saved.status_5xx),
            failed: now.failed.saturating_sub(saved.failed),
        };
        *saved = now;
        unsaved
    }

    /// Records the outcome the client saw. `failed` = the balancer generated the error.
    pub(crate) fn record(&self, at: Instant, latency: Duration, status: u16, failed: bool) {
        let class = class_index(status);
        self.window.record(at, class, failed, Some(latency));
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        if class == Some(3) {
            self.total_5xx.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.total_failed.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.total_latency_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn record_unrouted(&self) {
        self.unrouted_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            requests: self.total_requests.load(Ordering::Relaxed),
            status_5xx: self.total_5xx.load(Ordering::Relaxed),
            failed: self.total_failed.load(Ordering::Relaxed),
        }
    }
}

/// Metrics of one backend of an environment.
pub(crate) struct BackendStats {
    window: Window,
    in_flight: AtomicU64,
    /// Monotonic counts by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    total_classes: [AtomicU64; 5],
    total_failed: AtomicU64,
}

impl BackendStats {
    pub(crate) fn new() -> BackendStats {
        BackendStats {
            window: Window::new(),
            in_flight: AtomicU64::new(0),
            total_classes: zeros(),
            total_failed: AtomicU64::new(0),
        }
    }

    /// Records a request this backend answered (or failed to: `failed`).
    pub(crate) fn record(&self, at: Instant, latency: Duration, status: u16, failed: bool) {
        let class = class_index(status);
        self.window.record(at, class, failed, Some(latency));
        let total = match status {
            100..=199 => self.total_classes.first(),
            _ => class.and_then(|c| self.total_classes.get(c + 1)),
        };
        if let Some(t) = total {
            t.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.total_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records an attempt that failed and was retried elsewhere: the client never saw it.
    pub(crate) fn record_retried_failure(&self, at: Instant) {
        self.window.record(at, None, true, None);
        self.total_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts one request in flight to a backend for as long as it lives.
///
/// Created when the upstream request starts and moved into the response body, so a streamed
/// body counts until it has been sent (or the client went away and the body was dropped).
pub(crate) struct InFlight {
    stats: Arc<BackendStats>,
}

impl InFlight {
    pub(crate) fn enter(stats: &Arc<BackendStats>) -> InFlight {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: stats.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Monotonic counters of an environment since its route was first installed; never reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub status_5xx: u64,
    pub failed: u64,
}

/// Metrics of one environment over the sliding window (see [`crate::Balancer::metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvMetrics {
    /// Seconds the window actually covers (≤ 10; less for a young environment).
    pub window_secs: f64,
    pub requests_per_sec: f64,
    /// Requests answered in the window (including the balancer's own 502s).
    pub count: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    /// Includes `failed`.
    pub status_5xx: u64,
    /// Errors generated by the balancer: backend unreachable, no healthy backend.
    pub failed: u64,
    /// Latency (until response headers) quantiles in milliseconds; 0 without samples.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub totals: Totals,
    pub backends: Vec<BackendMetrics>,
}

/// Metrics of one backend over the sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendMetrics {
    pub id: String,
    pub version: String,
    pub requests_per_sec: f64,
    /// Attempts sent to this backend, including failed ones that were retried elsewhere.
    pub count: u64,
    pub status_5xx: u64,
    /// Attempts that failed at the connection level (including retried ones).
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests being proxied to it right now (until their response body has been sent).
    pub in_flight: u64,
}

/// What the metrics read of one route: its environment, its counters and its backends'.
/// The routing table lends it (`Route::stats`), so this file needs nothing
/// of the table.
pub(crate) struct RouteStats<'a> {
    pub(crate) env: &'a str,
    pub(crate) stats: &'a EnvStats,
    pub(crate) backends: Vec<BackendRef<'a>>,
}

/// One backend of a [`RouteStats`].
pub(crate) struct BackendRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) version: &'a str,
    /// In rotation (not pending, unhealthy or draining).
    pub(crate) healthy: bool,
    pub(crate) stats: &'a BackendStats,
}

pub(crate) fn env_metrics(route: &RouteStats<'_>) -> EnvMetrics {
    let now = Instant::now();
    let secs = window_secs(route.stats.created, now);
    let snap = route.stats.window.snapshot(now);
    let backends = route
        .backends
        .iter()
        .map(|b| {
            let s = b.stats.window.snapshot(now);
            BackendMetrics {
                id: b.id.to_string(),
                version: b.version.to_string(),
                requests_per_sec: s.count as f64 / secs,
                count: s.count,
                status_5xx: s.classes[3],
                failed: s.failed,
                p50_ms: s.quantile_ms(0.5),
                p99_ms: s.quantile_ms(0.99),
                in_flight: b.stats.in_flight(),
            }
        })
        .collect();
    EnvMetrics {
        window_secs: secs,
        requests_per_sec: snap.count as f64 / secs,
        count: snap.count,
        status_2xx: snap.classes[0],
        status_3xx: snap.classes[1],
        status_4xx: snap.classes[2],
        status_5xx: snap.classes[3],
        failed: snap.failed,
        p50_ms: snap.quantile_ms(0.5),
        p90_ms: snap.quantile_ms(0.9),
        p99_ms: snap.quantile_ms(0.99),
        p999_ms: snap.quantile_ms(0.999),
        totals: route.stats.totals(),
        backends,
    }
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        std::borrow::Cow::Owned(
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        )
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

fn prom_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

/// Prometheus text exposition (format 0.0.4) of all routes, sorted by environment.
pub(crate) fn prometheus(routes: &[RouteStats<'_>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(1024);
    let now = Instant::now();

    let _ = writeln!(
        out,
        "# HELP sprout_requests_total Requests answered, by environment, backend and status class (backend=\"\": no healthy backend)."
    );
    let _ = writeln!(out, "# TYPE sprout_requests_total counter");
    for r in routes {
        let env = label(r.env);
        for b in &r.backends {
            let id = label(b.id);
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let n = b
                    .stats
                    .total_classes
                    .get(i)
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                if i == 0 && n == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "sprout_requests_total{{env=\"{env}\",backend=\"{id}\",class=\"{class}\"}} {n}"
                );
            }
        }
        let unrouted = r.stats.unrouted_failed.load(Ordering::Relaxed);
        if unrouted > 0 {
            let _ = writeln!(
                out,
                "sprout_requests_total{{env=\"{env}\",backend=\"\",class=\"5xx\"}} {unrouted}"
            );
        }
    }

    let _ = writeln!(
        out,
        "# HELP sprout_failed_total Requests or attempts the balancer could not deliver (502/504), by backend."
    );
    let _ = writeln!(out, "# TYPE sprout_failed_total counter");
    for r in routes {
        let env = label(r.env);
        for b in &r.backends {
            let n = b.stats.total_failed.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "sprout_failed_total{{env=\"{env}\",backend=\"{}\"}} {n}",
                label(b.id)
            );
        }
        let unrouted = r.stats.unrouted_failed.load(Ordering::Relaxed);
        if unrouted > 0 {
            let _ = writeln!(
                out,
                "sprout_failed_total{{env=\"{env}\",backend=\"\"}} {unrouted}"
            );
        }
    }

    let _ = writeln!(
        out,
        "# HELP sprout_request_duration_seconds Time to response headers; quantiles over the last {SLOTS} s."
    );
    let _ = writeln!(out, "# TYPE sprout_request_duration_seconds summary");
    for r in routes {
        let env = label(r.env);
        let snap = r.stats.window.snapshot(now);
        let empty = snap.latency_samples() == 0;
        for (q, name) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")] {
            let v = if empty {
                f64::NAN
            } else {
                snap.quantile_ms(q) / 1000.0
            };
            let _ = writeln!(
                out,
                "sprout_request_duration_seconds{{env=\"{env}\",quantile=\"{name}\"}} {}",
                prom_f64(v)
            );
        }
        let sum = r.stats.total_latency_us.load(Ordering::Relaxed) as f64 / 1e6;
        let count = r.stats.total_requests.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "sprout_request_duration_seconds_sum{{env=\"{env}\"}} {}",
            prom_f64(sum)
        );
        let _ = writeln!(
            out,
            "sprout_request_duration_seconds_count{{env=\"{env}\"}} {count}"
        );
    }

    let _ = writeln!(
        out,
        "# HELP sprout_backend_healthy Whether the backend is in rotation (1) or not (0: pending, unhealthy or draining)."
    );
    let _ = writeln!(out, "# TYPE sprout_backend_healthy gauge");
    for r in routes {
        let env = label(r.env);
        for b in &r.backends {
            let _ = writeln!(
                out,
                "sprout_backend_healthy{{env=\"{env}\",backend=\"{}\"}} {}",
                label(b.id),
                u8::from(b.healthy)
            );
        }
    }

    let _ = writeln!(
        out,
        "# HELP sprout_in_flight Requests being proxied to the backend right now."
    );
    let _ = writeln!(out, "# TYPE sprout_in_flight gauge");
    for r in routes {
        let env = label(r.env);
        for b in &r.backends {
            let _ = writeln!(
                out,
                "sprout_in_flight{{env=\"{env}\",backend=\"{}\"}} {}",
                label(b.id),
                b.stats.in_flight()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_cover_the_range() {
        assert_eq!(bin_of(Duration::from_micros(10)), 0);
        assert_eq!(bin_of(Duration::from_micros(50)), 0);
        assert_eq!(bin_of(Duration::from_micros(51)), 1);
        assert_eq!(bin_of(Duration::from_secs(3600)), BINS - 1);
        let mut last = 0;
        for us in (0..2_000_000).step_by(997) {
            let b = bin_of(Duration::from_micros(us));
            assert!(b >= last);
            assert!(us as f64 <= bin_upper_us(b) + 1e-6, "{us} in bin {b}");
            last = b;
        }
        assert!(bin_upper_us(BINS - 2) >= 60e6);
    }

    #[test]
    fn quantiles_are_within_a_bin() {
        let w = Window::new();
        let now = Instant::now();
        for _ in 0..900 {
            w.record(now, Some(0), false, Some(Duration::from_millis(1)));
        }
        for _ in 0..100 {
            w.record(now, Some(3), false, Some(Duration::from_millis(100)));
        }
        let s = w.snapshot(now);
        assert_eq!(s.count, 1000);
        assert_eq!(s.classes, [900, 0, 0, 100]);
        let p50 = s.quantile_ms(0.5);
        assert!((0.8..=1.25).contains(&p50), "{p50}");
        let p99 = s.quantile_ms(0.99);
        assert!((80.0..=125.0).contains(&p99), "{p99}");
    }

    #[test]
    fn old_slots_leave_the_window() {
        let w = Window::new();
        let t0 = Instant::now();
        w.record(t0, Some(0), false, None);
        assert_eq!(w.snapshot(t0).count, 1);
        let later = t0 + Duration::from_secs(SLOTS);
        assert_eq!(w.snapshot(later).count, 0);
        // Reusing the slot resets it.
        w.record(later, Some(0), true, None);
        let s = w.snapshot(later);
        assert_eq!((s.count, s.failed), (1, 1));
    }
}
