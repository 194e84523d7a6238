//! What Sprout's integration tests (`crates/sprout/tests/it`) and its benchmark
//! (`sprout-bench`) share: the real `sprout server` started as production starts it, on free
//! ports; steady traffic through its balancer; polling; Docker look-ups and clean-up.
//!
//! Nothing here panics: the tests turn errors into assertions, the benchmark into reports.

mod docker;
mod load;
mod server;

pub use docker::{docker_lines, docker_ready, remove_server_objects, DockerMissing};
pub use load::{Load, LoadReport};
pub use server::{server_command, StartError, Started};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops a child process: SIGTERM (so it can take its own children down), then SIGKILL
/// if it has not exited within `grace`.
pub fn stop_process(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A random number, different in each call and each process (for unique names).
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    h.finish() as u32
}

/// Calls `check` every `every` until it returns Some or `timeout` passes.
pub async fn poll<T, F, Fut>(every: Duration, timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}
