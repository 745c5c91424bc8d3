//! The Redis metrics, through the `metrics` facade (the server's crate docs
//! list them): `webwire_redis_duration_seconds{op}` for every Redis call,
//! timeouts included, and `webwire_cluster_messages_total{direction}`.
//! Both are rare next to messages: the handles are looked up per call.

use std::future::Future;
use std::time::Instant;

/// Runs `call`, recording how long it took as operation `op`.
pub(crate) async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    metrics::histogram!("webwire_redis_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    out
}

/// Counts `n` cluster messages `direction` (published, received, dropped).
pub(crate) fn cluster_messages(direction: &'static str, n: usize) {
    metrics::counter!("webwire_cluster_messages_total", "direction" => direction)
        .increment(n as u64);
}
