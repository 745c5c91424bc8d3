//! What the tests that run server nodes on Redis share (`cluster`,
//! `cluster_streams`, `restarts`): the bounded wait, the test logs, a
//! node's Redis stores and listener, and the checks of what a client is
//! shown.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use webwire_client::{ClientEvent, Events};
use webwire_proto::{StreamId, StreamLoss};
use webwire_redis::{
    RedisCluster, RedisClusterConfig, RedisSessionConfig, RedisSessionManager, RedisStoreConfig,
    RedisStreamStore,
};
use webwire_server::stream::HistoryLimits;
use webwire_server::{Connection, MessageRouter, Payload, Server, ServerError};

/// The longest any wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// Redis calls fail after this while it is unreachable.
pub const OP: Duration = Duration::from_millis(500);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `future`'s output; the test fails if it takes longer than [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits (bounded by [`within`]) until `check` holds, looking every 10 ms.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Logs to the test's output, filtered by `RUST_LOG`.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A router with `login` (creates a session, answers its key) and `join`
/// (joins the session to the room named in the request).
pub fn router() -> MessageRouter {
    MessageRouter::new()
        .request("login", |conn: Connection, _: Payload| async move {
            let session = conn.create_session(None).await?;
            Ok::<_, BoxError>(session.key)
        })
        .request("join", |conn: Connection, room: String| async move {
            conn.join_session_room(&room).await?;
            Ok::<_, BoxError>("ok")
        })
}

/// The history of a room: rooms named `h-...` keep 100 signals for an hour,
/// the others none.
pub fn history(room: &str) -> Option<HistoryLimits> {
    room.starts_with("h-")
        .then(|| HistoryLimits::new(100, Duration::from_secs(3600)))
}

/// A stream store on `redis_url`, its calls bounded by [`OP`].
pub async fn redis_streams(redis_url: &str) -> RedisStreamStore {
    RedisStreamStore::connect(redis_url, RedisStoreConfig::new().with_op_timeout(OP))
        .await
        .expect("stream store")
}

/// A session manager on `redis_url`, its calls bounded by [`OP`].
pub async fn redis_sessions(redis_url: &str) -> RedisSessionManager {
    RedisSessionManager::connect(redis_url, RedisSessionConfig::new().with_op_timeout(OP))
        .await
        .expect("session manager")
}

/// The cluster settings of node `id`: a heartbeat every 200 ms, a node
/// timeout of 1 s, Redis calls bounded by [`OP`].
pub fn cluster_config(id: &str) -> RedisClusterConfig {
    RedisClusterConfig::new(id)
        .with_heartbeat_interval(Duration::from_millis(200))
        .with_node_timeout(Duration::from_secs(1))
        .with_op_timeout(OP)
}

/// A cluster node on `redis_url` that delivers the signals `streams`
/// appends on any node.
pub async fn redis_cluster(
    redis_url: &str,
    config: RedisClusterConfig,
    streams: &RedisStreamStore,
) -> RedisCluster {
    let cluster = RedisCluster::connect(redis_url, config)
        .await
        .expect("cluster");
    cluster.deliver_streams(streams.subscribe().await.expect("subscribe"));
    cluster
}

/// Listens on a free loopback port: the address and the listener's task.
pub async fn serve(server: &Server) -> (SocketAddr, JoinHandle<Result<(), ServerError>>) {
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr();
    (addr, tokio::spawn(listener.run()))
}

/// Shuts the server down and waits for its listener's task.
pub async fn shut_down(server: &Server, run: JoinHandle<Result<(), ServerError>>) {
    within("shutdown", server.shutdown()).await;
    let _ = within("listener", run).await;
}

/// The next stream signal as (stream, offset, payload text), or the next
/// StreamLoss; a plain signal fails the test, other events are skipped.
pub async fn next_stream_event(
    events: &mut Events,
    what: &str,
) -> Result<(StreamId, u64, String), StreamLoss> {
    within(what, async {
        loop {
            match events.recv().await.expect("events") {
                ClientEvent::StreamSignal(signal) => {
                    let (stream, _, offset, signal) = signal.into_parts();
                    let text = signal.payload().to_text().expect("text").into_owned();
                    return Ok((stream, offset, text));
                }
                ClientEvent::StreamLoss(loss) => return Err(loss),
                ClientEvent::Signal(signal) => panic!("a plain signal: {signal:?}"),
                _ => continue,
            }
        }
    })
    .await
}

/// Nothing more arrives for a while: no duplicate, nothing out of place.
pub async fn nothing_more(events: &mut Events) {
    let more = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            match events.recv().await {
                Some(ClientEvent::StreamSignal(signal)) => return format!("{signal:?}"),
                Some(ClientEvent::StreamLoss(loss)) => return format!("{loss:?}"),
                Some(ClientEvent::Signal(signal)) => return format!("{signal:?}"),
                Some(_) => continue,
                None => std::future::pending().await,
            }
        }
    })
    .await;
    if let Ok(more) = more {
        panic!("nothing more was expected, got {more}");
    }
}

/// Waits for a client event that `wanted` picks, skipping the others.
pub async fn wait_for(events: &mut Events, what: &str, wanted: impl Fn(&ClientEvent) -> bool) {
    within(what, async {
        loop {
            if wanted(&events.recv().await.expect("events")) {
                return;
            }
        }
    })
    .await;
}
