//! Cluster benchmark, run by hand (ignored by default):
//!
//! ```sh
//! cargo test --release -p webwire-redis \
//!     --test cluster_bench -- --ignored --nocapture
//! ```
//!
//! Two server nodes in this process on one real redis-server (the test
//! harness starts it), a client of node B in room `r`: room signals per
//! second from node A to that client (at most 1024 in flight), and the latency of one signal from
//! A's `room_signal` call until B's client has it (p50/p99), beside the same
//! with the client on node A itself (no Redis on the way).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use webwire_client::{Client, ClientEvent, Events};
use webwire_redis::{RedisCluster, RedisClusterConfig, RedisSessionConfig, RedisSessionManager};
use webwire_server::{Connection, MessageRouter, Payload, Server};

const THROUGHPUT_SIGNALS: usize = 50_000;
const LATENCY_SAMPLES: usize = 2_000;
const WARMUP: usize = 200;
/// Signals sent but not yet received, at most.
const WINDOW: usize = 1024;

/// A node of the cluster on `redis_url`, or a server alone (`None`).
async fn node(redis_url: Option<&str>, id: &str) -> (Server, String) {
    let router =
        MessageRouter::new().request("join", |conn: Connection, room: String| async move {
            conn.join_room(&room)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
        });
    let mut builder = Server::builder(router).queue_capacity(8192);
    if let Some(redis_url) = redis_url {
        let sessions = RedisSessionManager::connect(redis_url, RedisSessionConfig::new())
            .await
            .expect("sessions");
        let cluster = RedisCluster::connect(redis_url, RedisClusterConfig::new(id))
            .await
            .expect("cluster");
        builder = builder
            .session_manager(Arc::new(sessions))
            .cluster(Arc::new(cluster));
    }
    let server = builder.build().expect("server");
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr());
    tokio::spawn(listener.run());
    (server, url)
}

async fn member(url: &str) -> (Client, Events) {
    let client = Client::builder(url.to_owned())
        .event_capacity(1 << 17)
        .connect()
        .await
        .expect("client");
    let events = client.events();
    client.request("join", "r").await.expect("join");
    (client, events)
}

/// Waits for the next signal; `None` after `wait` without one.
async fn next_signal(events: &mut Events, wait: Duration) -> Option<()> {
    tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Signal(_)) => return,
                Some(ClientEvent::Lagged(n)) => panic!("the client's receiver lagged by {n}"),
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .ok()
}

/// Sends `n` room signals from `sender`, at most [`WINDOW`] ahead of what
/// the client has received (so that no queue overflows and nothing is
/// dropped), and counts what `events` receives: (received, seconds from the
/// first send to the last receipt).
async fn throughput(sender: &Server, events: &mut Events, n: usize) -> (usize, f64) {
    let received = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let server = sender.clone();
    let seen = received.clone();
    let send = tokio::spawn(async move {
        for sent in 0..n {
            while sent - seen.load(Ordering::Acquire) >= WINDOW {
                tokio::task::yield_now().await;
            }
            server
                .room_signal("r", "bench", Payload::binary(vec![0u8; 16]), None)
                .expect("signal");
        }
    });
    let mut last = started;
    let mut count = 0;
    while count < n {
        if next_signal(events, Duration::from_secs(2)).await.is_none() {
            break;
        }
        count += 1;
        received.store(count, Ordering::Release);
        last = Instant::now();
    }
    if count < n {
        // Lost signals: let the sender finish.
        received.store(n, Ordering::Release);
    }
    send.await.expect("sender");
    (count, (last - started).as_secs_f64())
}

/// One signal at a time: microseconds from the send to the receipt.
async fn latency(sender: &Server, events: &mut Events) -> (u64, u64, usize) {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let mut lost = 0;
    for i in 0..WARMUP + LATENCY_SAMPLES {
        let started = Instant::now();
        sender
            .room_signal("r", "bench", Payload::binary(vec![0u8; 16]), None)
            .expect("signal");
        if next_signal(events, Duration::from_secs(1)).await.is_none() {
            lost += 1;
            continue;
        }
        if i >= WARMUP {
            samples.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand with --release"]
async fn cluster_room_signals() {
    let redis = redis_or_skip!();
    let url = redis.url();
    let (a, _) = node(Some(&url), "bench-a").await;
    let (_b, b_url) = node(Some(&url), "bench-b").await;
    // The same server without a cluster: the one-node figures.
    let (alone, alone_url) = node(None, "alone").await;
    // Let the nodes hear each other's heartbeats (not needed for signals).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Node A has no member in room r: each of its room signals goes
    // through Redis to node B's client.
    let (_remote, mut remote_events) = member(&b_url).await;
    let (_local, mut local_events) = member(&alone_url).await;
    let drain = |events: &mut Events| while events.try_recv().is_some() {};

    let (got, secs) = throughput(&a, &mut remote_events, THROUGHPUT_SIGNALS).await;
    println!(
        "cross-node throughput: {got}/{THROUGHPUT_SIGNALS} received in {secs:.3} s = {:.0} signals/s",
        got as f64 / secs
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut local_events);
    drain(&mut remote_events);

    let (got, secs) = throughput(&alone, &mut local_events, THROUGHPUT_SIGNALS).await;
    println!(
        "one-node throughput:   {got}/{THROUGHPUT_SIGNALS} received in {secs:.3} s = {:.0} signals/s",
        got as f64 / secs
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut local_events);
    drain(&mut remote_events);

    let (p50, p99, lost) = latency(&a, &mut remote_events).await;
    println!(
        "cross-node latency: p50 {p50} us, p99 {p99} us ({LATENCY_SAMPLES} samples, {lost} lost)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut local_events);
    drain(&mut remote_events);

    let (p50, p99, lost) = latency(&alone, &mut local_events).await;
    println!(
        "one-node latency:   p50 {p50} us, p99 {p99} us ({LATENCY_SAMPLES} samples, {lost} lost)"
    );
}
