//! The cluster layer: several webwire servers (nodes) sharing one Redis act
//! as one, over Redis pub/sub. See [`RedisCluster`].
//!
//! - `config`: [`RedisClusterConfig`].
//! - `envelope`: the binary message format on the channels.
//!
//! Keys and channels, under the prefix `P` (default `webwire:`):
//!
//! - channel `{P}cluster:all`: every node subscribes; heartbeats, leaving
//!   notices, broadcasts, room and session signals, close requests.
//! - channel `{P}cluster:node:{id}`: the node's own; answers to its requests.
//! - hash `{P}cluster:members`: member (`id/incarnation`) → last heartbeat
//!   (ms, Redis' clock).
//! - hash `{P}conns:{session key}`: member → that member's connections
//!   holding the session; and, once the session is destroyed, the field
//!   `destroyed` (a tombstone: no member joins it again; never a member's
//!   name, which always has a `/`).

mod config;
mod envelope;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use webwire_core::cluster::{
    Cluster, ClusterError, ClusterEvent, ClusterNode, ClusterReply, SessionJoin,
};

pub use config::RedisClusterConfig;
use envelope::{Body, Envelope};

use crate::error::RedisSessionError;
use crate::key::redacted;
use crate::manager::resp3_client;

/// Events waiting to be published; past this, new ones are dropped (and
/// logged): Redis is not keeping up or unreachable.
const OUT_CAPACITY: usize = 16 * 1024;
/// Most messages published in one pipeline.
const BATCH: usize = 256;

/// The sum of a session's connections on live members (Lua, shared by the
/// scripts below). KEYS: conns, members. ARGV: member, max, node timeout ms,
/// TTL ms. `DROP` deletes the counts of members whose heartbeat is too old.
/// This member's own count is always counted; the tombstone (the field
/// `destroyed`) never is.
const SUM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local m, n = all[i], tonumber(all[i + 1])
  if m == ARGV[1] then
    sum = sum + n
  elseif m ~= 'destroyed' then
    local hb = redis.call('HGET', KEYS[2], m)
    if hb then
      if now - tonumber(hb) <= limit then sum = sum + n elseif DROP then redis.call('HDEL', KEYS[1], m) end
    end
  end
end
";

/// Takes a place for one more connection unless the session is full or
/// destroyed: returns the new sum, -1 when full, -2 when destroyed.
static JOIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "if redis.call('HEXISTS', KEYS[1], 'destroyed') == 1 then return -2 end
local DROP = true\n{SUM}
local max = tonumber(ARGV[2])
if max > 0 and sum >= max then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return sum + 1
"
    ))
});

/// The sum, changing nothing.
static COUNT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("local DROP = false\n{SUM}\nreturn sum\n")));

/// Sets this member's count (ARGV[2]; 0 deletes it) and returns the sum,
/// in one step: whether a session closed on a node's last connection is
/// still held elsewhere. Counts of silent members are not deleted (nor
/// counted). At 0 the session will be destroyed: the tombstone is set in
/// the same step, so that a restore on another node which found the
/// session in the store just before cannot join it afterwards.
static LEAVE_LAST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "local DROP = false
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
{SUM}
if sum == 0 then
  redis.call('HSET', KEYS[1], 'destroyed', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return sum
"
    ))
});

/// Writes this member's count of several sessions (0 deletes it); a
/// destroyed session's count is deleted, never written. KEYS: the
/// sessions' conns. ARGV: member, TTL ms, then each session's count.
static SET_COUNTS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 2])
  if n > 0 and redis.call('HEXISTS', key, 'destroyed') == 0 then
    redis.call('HSET', key, ARGV[1], n)
    redis.call('PEXPIRE', key, ARGV[2])
  else
    redis.call('HDEL', key, ARGV[1])
  end
end
return 0
",
    )
});

/// Gives one place back. KEYS: conns. ARGV: member.
static LEAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
",
    )
});

/// Records a heartbeat with Redis' clock, forgets members silent for long,
/// and announces the heartbeat. KEYS: members. ARGV: member, forget after
/// ms, channel, envelope.
static HEARTBEAT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now)
local all = redis.call('HGETALL', KEYS[1])
local old = now - tonumber(ARGV[2])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < old then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return now
",
    )
});

/// One node's membership in a cluster of webwire servers sharing a Redis:
/// a [`Cluster`] for `webwire-server`'s `ServerBuilder::cluster`.
///
/// With it, the server's broadcasts (`Server::signal_all`), room signals,
/// session signals and `Server::close_session` reach every node, and the per-session connection limit counts the
/// session's connections on every node (atomically, in Redis).
///
/// - **Membership**: the node announces itself every heartbeat interval
///   (default 2 s); a node not heard from within the node timeout
///   (default 6 s) stops counting. A request to all nodes waits only for
///   the nodes alive when it is sent, at most the request timeout.
/// - **No echo**: a node delivers its own signals locally and drops its own
///   messages when Redis hands them back, so every client gets a signal
///   once.
/// - **Outages**: the connections come back by themselves (100 ms to 1 s
///   between attempts, without limit) and the node resubscribes, logging
///   both; then it writes its session counts again. Delivery is **at most
///   once**: what is published while Redis is unreachable, or while a
///   node is resubscribing, is lost; local delivery never depends on Redis.
///   During an outage, signals reach local connections only, close
///   everywhere closes locally and reports the cluster as unreachable, and
///   restores fail with an internal error.
///
/// Needs Redis 6 or later, or Valkey (RESP3). Two Redis connections per
/// node. Cheap to clone.
///
/// ```no_run
/// use std::sync::Arc;
/// use webwire_redis::{RedisCluster, RedisClusterConfig, RedisSessionConfig, RedisSessionManager};
/// use webwire_server::{MessageRouter, Server};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "redis://127.0.0.1:6379/";
/// let sessions = RedisSessionManager::connect(url, RedisSessionConfig::new()).await?;
/// let cluster = RedisCluster::connect(url, RedisClusterConfig::new("node-a")).await?;
/// let server = Server::builder(MessageRouter::new())
///     .session_manager(Arc::new(sessions))
///     .cluster(Arc::new(cluster))
///     .max_session_connections(3)
///     .build()?;
/// server.signal_all("hello", "every client of every node")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisClusterConfig,
    incarnation: u64,
    /// `id/incarnation`, the field in Redis hashes.
    member: String,
    all_channel: String,
    node_channel_prefix: String,
    members_key: String,
    conns_prefix: String,
    cmd: ConnectionManager,
    bus: ConnectionManager,
    out: mpsc::Sender<(String, Vec<u8>)>,
    node: OnceLock<ClusterNode>,
    peers: Mutex<HashMap<String, Peer>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_request: AtomicU64,
    stop: CancellationToken,
    /// Since when the subscription is lost, if it is.
    lost: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    incarnation: u64,
    last: Instant,
}

struct Pending {
    waiting: HashSet<(String, u64)>,
    affected: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Pending {
    fn check(&mut self) {
        if self.waiting.is_empty()
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("member", &self.inner.member)
            .field("prefix", &self.inner.config.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisCluster {
    /// Connects to the Redis at `url` (as for
    /// [`RedisSessionManager::connect`](crate::RedisSessionManager::connect)),
    /// subscribes, announces the node with a first heartbeat and starts its
    /// tasks. Waits at most the operation timeout for each step.
    ///
    /// Fails with [`RedisSessionError::BadUrl`],
    /// [`Resp3Required`](RedisSessionError::Resp3Required),
    /// [`Config`](RedisSessionError::Config),
    /// [`Timeout`](RedisSessionError::Timeout) or
    /// [`Redis`](RedisSessionError::Redis).
    ///
    /// ```
    /// use webwire_redis::{RedisCluster, RedisClusterConfig, RedisSessionError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = RedisCluster::connect("redis://127.0.0.1:6379/", RedisClusterConfig::new("bad id"))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, RedisSessionError::Config(_)));
    /// # }
    /// ```
    pub async fn connect(url: &str, config: RedisClusterConfig) -> Result<Self, RedisSessionError> {
        config.validate()?;
        let client = resp3_client(url)?;
        let op = config.op_timeout();
        let cmd = bounded(
            "connect",
            op,
            ConnectionManager::new_with_config(client.clone(), config.connection_manager_config()),
        )
        .await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let bus_config = config
            .connection_manager_config()
            .set_push_sender(push_tx)
            .set_automatic_resubscription();
        let mut bus = bounded(
            "connect",
            op,
            ConnectionManager::new_with_config(client, bus_config),
        )
        .await?;
        let prefix = config.prefix();
        let all_channel = format!("{prefix}cluster:all");
        let node_channel_prefix = format!("{prefix}cluster:node:");
        let own_channel = format!("{node_channel_prefix}{}", config.node_id());
        bounded(
            "subscribe",
            op,
            bus.subscribe(&[all_channel.as_str(), own_channel.as_str()]),
        )
        .await?;
        let incarnation = RandomState::new().hash_one((SystemTime::now(), std::process::id()));
        let (out, out_rx) = mpsc::channel(OUT_CAPACITY);
        let inner = Arc::new(Inner {
            member: format!("{}/{incarnation:016x}", config.node_id()),
            incarnation,
            all_channel,
            node_channel_prefix,
            members_key: format!("{prefix}cluster:members"),
            conns_prefix: format!("{prefix}conns:"),
            config,
            cmd,
            bus,
            out,
            node: OnceLock::new(),
            peers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            stop: CancellationToken::new(),
            lost: Mutex::new(None),
        });
        inner.heartbeat().await?;
        tokio::spawn(inner.clone().receive(push_rx));
        tokio::spawn(inner.clone().publish_loop(out_rx));
        tokio::spawn(inner.clone().heartbeat_loop());
        tracing::info!(member = %inner.member, "joined the cluster");
        Ok(Self { inner })
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # async fn f(cluster: webwire_redis::RedisCluster) {
    /// println!("node {}", cluster.config().node_id());
    /// # }
    /// ```
    pub fn config(&self) -> &RedisClusterConfig {
        &self.inner.config
    }

    /// Delivers the stream signals the other nodes append to a shared
    /// [`RedisStreamStore`](crate::RedisStreamStore) to this node's
    /// connections: each publication of `subscription` (from
    /// [`RedisStreamStore::subscribe`](crate::RedisStreamStore::subscribe)
    /// on this node's store, which skips the node's own appends) is handed
    /// to the server as a [`ClusterEvent::Stream`], in the order Redis
    /// published them, until the node leaves the cluster. Call it once,
    /// with the store given to the server.
    ///
    /// Delivery is at most once, as for every cluster message: a
    /// publication missed while the subscription is lost is a gap that
    /// the client repairs from the stream's history.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use webwire_redis::{RedisCluster, RedisClusterConfig, RedisStoreConfig, RedisStreamStore};
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "redis://127.0.0.1:6379/";
    /// let cluster = RedisCluster::connect(url, RedisClusterConfig::new("node-a")).await?;
    /// let streams = RedisStreamStore::connect(url, RedisStoreConfig::new()).await?;
    /// cluster.deliver_streams(streams.subscribe().await?);
    /// let server = Server::builder(MessageRouter::new())
    ///     .cluster(Arc::new(cluster))
    ///     .stream_store(Arc::new(streams))
    ///     .build()?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn deliver_streams(&self, subscription: crate::StreamSubscription) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut subscription = subscription;
            loop {
                let publication = tokio::select! {
                    () = inner.stop.cancelled() => return,
                    publication = subscription.next() => publication,
                };
                let Some(publication) = publication else {
                    return;
                };
                // Before the server is attached it has no connections.
                if let Some(node) = inner.node.get() {
                    crate::metrics::cluster_messages("received", 1);
                    node.deliver(&ClusterEvent::Stream {
                        stream: publication.stream,
                        position: publication.position,
                        frame: publication.frame,
                    });
                }
            }
        });
    }

    /// The other nodes alive now (heard from within the node timeout), by id.
    ///
    /// ```no_run
    /// # async fn f(cluster: webwire_redis::RedisCluster) {
    /// println!("{} other nodes", cluster.peers().len());
    /// # }
    /// ```
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self
            .inner
            .alive_peers()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        peers.sort_unstable();
        peers
    }
}

/// Runs one Redis call within `limit`.
/// Runs one Redis call within `limit`, timed as `op`.
async fn bounded<T>(
    op: &'static str,
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisSessionError> {
    let timed = crate::metrics::timed(op, tokio::time::timeout(limit, call)).await;
    match timed {
        Ok(result) => Ok(result?),
        Err(_) => Err(RedisSessionError::Timeout(limit)),
    }
}

fn cluster_error(what: &str, err: RedisSessionError) -> ClusterError {
    ClusterError::new(what.to_owned(), err)
}

impl Inner {
    fn envelope(&self, request: u64, body: Body) -> Vec<u8> {
        Envelope {
            node: self.config.node_id().to_owned(),
            incarnation: self.incarnation,
            request,
            body,
        }
        .encode()
    }

    fn conns_key(&self, key: &str) -> String {
        format!("{}{key}", self.conns_prefix)
    }

    fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// Queues a message for publishing, without waiting.
    fn enqueue(&self, channel: String, message: Vec<u8>) {
        if let Err(err) = self.out.try_send((channel, message))
            && matches!(err, mpsc::error::TrySendError::Full(_))
        {
            crate::metrics::cluster_messages("dropped", 1);
            tracing::warn!("cluster: the publish queue is full; a message is dropped");
        }
    }

    fn alive_peers(&self) -> Vec<(String, u64)> {
        let timeout = self.config.node_timeout();
        lock(&self.peers)
            .iter()
            .filter(|(_, peer)| peer.last.elapsed() <= timeout)
            .map(|(id, peer)| (id.clone(), peer.incarnation))
            .collect()
    }

    async fn heartbeat(&self) -> Result<(), RedisSessionError> {
        let interval_ms =
            u32::try_from(Self::ms(self.config.heartbeat_interval())).unwrap_or(u32::MAX);
        let envelope = self.envelope(0, Body::Heartbeat { interval_ms });
        let forget = Self::ms(self.config.node_timeout()).saturating_mul(10);
        let mut cmd = self.cmd.clone();
        bounded(
            "heartbeat",
            self.config.op_timeout(),
            HEARTBEAT
                .key(&self.members_key)
                .arg(&self.member)
                .arg(forget)
                .arg(&self.all_channel)
                .arg(envelope)
                .invoke_async::<i64>(&mut cmd),
        )
        .await
        .map(drop)
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.heartbeat_interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.heartbeat().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("cluster: heartbeats reach Redis again");
                        failing = false;
                    }
                    self.resubscribe_if_stuck().await;
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(error = %err, "cluster: a heartbeat failed; Redis is unreachable");
                        failing = true;
                    }
                }
            }
            self.sweep();
        }
    }

    /// Redis answers but the subscription has not come back for a while
    /// (its automatic renewal ignores errors): subscribe again.
    async fn resubscribe_if_stuck(&self) {
        let since = *lock(&self.lost);
        let Some(since) = since else { return };
        if since.elapsed() < 2 * self.config.heartbeat_interval() {
            return;
        }
        let own = format!("{}{}", self.node_channel_prefix, self.config.node_id());
        let mut bus = self.bus.clone();
        match bounded(
            "subscribe",
            self.config.op_timeout(),
            bus.subscribe(&[self.all_channel.as_str(), own.as_str()]),
        )
        .await
        {
            Ok(()) => tracing::info!("cluster: subscribed again by hand"),
            Err(err) => tracing::warn!(error = %err, "cluster: subscribing again failed"),
        }
    }

    /// Forgets nodes not heard from within the timeout; requests stop
    /// waiting for them.
    fn sweep(&self) {
        let timeout = self.config.node_timeout();
        let mut gone = Vec::new();
        lock(&self.peers).retain(|id, peer| {
            let alive = peer.last.elapsed() <= timeout;
            if !alive {
                gone.push((id.clone(), peer.incarnation));
            }
            alive
        });
        for (id, _) in &gone {
            tracing::info!(node = %id, "cluster: node left (timeout)");
        }
        if !gone.is_empty() {
            self.forget_in_requests(&gone);
        }
    }

    fn forget_in_requests(&self, gone: &[(String, u64)]) {
        for pending in lock(&self.pending).values_mut() {
            for member in gone {
                pending.waiting.remove(member);
            }
            pending.check();
        }
    }

    async fn publish_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(String, Vec<u8>)>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut cmd = self.cmd.clone();
        loop {
            let n = tokio::select! {
                () = self.stop.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for (channel, message) in batch.drain(..) {
                pipe.publish(channel, message).ignore();
            }
            if let Err(err) = bounded(
                "publish",
                self.config.op_timeout(),
                pipe.exec_async(&mut cmd),
            )
            .await
            {
                crate::metrics::cluster_messages("dropped", n);
                tracing::warn!(error = %err, messages = n, "cluster: publishing failed; the messages are lost");
            } else {
                crate::metrics::cluster_messages("published", n);
            }
        }
    }

    async fn receive(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<redis::PushInfo>) {
        loop {
            let push = tokio::select! {
                () = self.stop.cancelled() => return,
                push = rx.recv() => match push {
                    Some(push) => push,
                    None => return,
                },
            };
            match push.kind {
                PushKind::Message => {
                    if let Some(Value::BulkString(data)) = push.data.into_iter().nth(1) {
                        self.on_message(Bytes::from(data));
                    }
                }
                PushKind::Disconnection => {
                    let mut lost = lock(&self.lost);
                    if lost.is_none() {
                        *lost = Some(Instant::now());
                        tracing::warn!("cluster: lost the Redis connection; reconnecting");
                    }
                }
                PushKind::Subscribe => {
                    let was_lost = lock(&self.lost).take().is_some();
                    if was_lost {
                        tracing::info!("cluster: resubscribed after reconnecting to Redis");
                        tokio::spawn(self.clone().resync());
                    }
                }
                _ => {}
            }
        }
    }

    /// After an outage: announce the node and write its session counts again
    /// (decrements made during the outage were lost; a restarted Redis
    /// holds nothing).
    async fn resync(self: Arc<Self>) {
        if let Err(err) = self.heartbeat().await {
            tracing::warn!(error = %err, "cluster: heartbeat after reconnecting failed");
        }
        let Some(node) = self.node.get() else { return };
        let counts = node.session_counts();
        if counts.is_empty() {
            return;
        }
        match self.write_counts(&counts).await {
            Ok(()) => tracing::info!(
                sessions = counts.len(),
                "cluster: session counts written again"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "cluster: writing the session counts again failed")
            }
        }
    }

    fn on_message(self: &Arc<Self>, data: Bytes) {
        let envelope = match Envelope::decode(&data) {
            Ok(envelope) => envelope,
            Err(err) => {
                crate::metrics::cluster_messages("dropped", 1);
                tracing::warn!(error = %err, "cluster: an unreadable message; dropped");
                return;
            }
        };
        crate::metrics::cluster_messages("received", 1);
        let from = (envelope.node, envelope.incarnation);
        if from.0 == self.config.node_id() && from.1 == self.incarnation {
            // Our own message, delivered locally when it was sent.
            return;
        }
        if matches!(envelope.body, Body::Leaving) {
            let left = {
                let mut peers = lock(&self.peers);
                match peers.get(&from.0) {
                    Some(peer) if peer.incarnation == from.1 => peers.remove(&from.0).is_some(),
                    _ => false,
                }
            };
            if left {
                tracing::info!(node = %from.0, "cluster: node left");
                self.forget_in_requests(std::slice::from_ref(&from));
            }
            return;
        }
        self.heard(&from.0, from.1);
        let node = self.node.get();
        match envelope.body {
            Body::Heartbeat { .. } | Body::Leaving => {}
            Body::Broadcast { frame } => {
                if let Some(node) = node {
                    node.deliver(&ClusterEvent::Broadcast { frame });
                }
            }
            Body::Room { room, frame } => {
                if let Some(node) = node {
                    node.deliver(&ClusterEvent::Room { room, frame });
                }
            }
            Body::Session { key, frame } => {
                if let Some(node) = node {
                    node.deliver(&ClusterEvent::Session { key, frame });
                }
            }
            Body::SessionRoom { key, room, joined } => {
                if let Some(node) = node {
                    node.deliver(&ClusterEvent::SessionRoom { key, room, joined });
                }
            }
            Body::CloseSession { key } => {
                let this = self.clone();
                let node = node.cloned();
                let request = envelope.request;
                tokio::spawn(async move {
                    let affected = match node {
                        Some(node) => node.close_session(&key).await,
                        None => 0,
                    };
                    tracing::debug!(session = %redacted(&key), affected, node = %from.0, "cluster: closed a session for another node");
                    let reply = this.envelope(
                        request,
                        Body::Reply {
                            affected: u32::try_from(affected).unwrap_or(u32::MAX),
                        },
                    );
                    this.enqueue(format!("{}{}", this.node_channel_prefix, from.0), reply);
                });
            }
            Body::Reply { affected } => {
                if let Some(pending) = lock(&self.pending).get_mut(&envelope.request)
                    && pending.waiting.remove(&from)
                {
                    pending.affected += affected as usize;
                    pending.check();
                }
            }
        }
    }

    fn heard(&self, id: &str, incarnation: u64) {
        let now = Instant::now();
        let mut peers = lock(&self.peers);
        match peers.get_mut(id) {
            Some(peer) if peer.incarnation == incarnation => peer.last = now,
            Some(peer) => {
                tracing::info!(node = %id, "cluster: node restarted");
                *peer = Peer {
                    incarnation,
                    last: now,
                };
            }
            None => {
                if id == self.config.node_id() {
                    tracing::warn!(node = %id, "cluster: another process uses this node's id");
                }
                tracing::info!(node = %id, "cluster: node joined");
                peers.insert(
                    id.to_owned(),
                    Peer {
                        incarnation,
                        last: now,
                    },
                );
            }
        }
    }

    /// Writes this member's count of each session given (0: none), in
    /// calls of at most [`BATCH`] sessions; destroyed sessions stay
    /// uncounted.
    async fn write_counts(&self, counts: &[(String, usize)]) -> Result<(), RedisSessionError> {
        for batch in counts.chunks(BATCH) {
            let mut script = SET_COUNTS.prepare_invoke();
            script
                .arg(&self.member)
                .arg(Self::ms(self.config.count_ttl()));
            for (key, n) in batch {
                script.key(self.conns_key(key)).arg(*n);
            }
            let mut cmd = self.cmd.clone();
            bounded(
                "write_counts",
                self.config.op_timeout(),
                script.invoke_async::<i64>(&mut cmd),
            )
            .await?;
        }
        Ok(())
    }

    async fn count(
        &self,
        script: &redis::Script,
        key: &str,
        max: usize,
    ) -> Result<i64, RedisSessionError> {
        let mut cmd = self.cmd.clone();
        bounded(
            "count",
            self.config.op_timeout(),
            script
                .key(self.conns_key(key))
                .key(&self.members_key)
                .arg(&self.member)
                .arg(max)
                .arg(Self::ms(self.config.node_timeout()))
                .arg(Self::ms(self.config.count_ttl()))
                .invoke_async::<i64>(&mut cmd),
        )
        .await
    }
}

/// Removes a request's entry when the request ends, however it ends.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

impl Cluster for RedisCluster {
    fn attach(&self, node: ClusterNode) {
        if self.inner.node.set(node).is_err() {
            tracing::warn!("cluster: attached to a second server; events go to the first");
        }
    }

    fn publish(&self, event: ClusterEvent) {
        let body = match event {
            ClusterEvent::Broadcast { frame } => Body::Broadcast { frame },
            ClusterEvent::Room { room, frame } => Body::Room { room, frame },
            ClusterEvent::Session { key, frame } => Body::Session { key, frame },
            ClusterEvent::SessionRoom { key, room, joined } => {
                Body::SessionRoom { key, room, joined }
            }
            other => {
                tracing::warn!(?other, "cluster: an event this version cannot send");
                return;
            }
        };
        let message = self.inner.envelope(0, body);
        self.inner.enqueue(self.inner.all_channel.clone(), message);
    }

    async fn close_session(&self, key: &str) -> ClusterReply {
        let inner = &*self.inner;
        let targets: HashSet<(String, u64)> = inner.alive_peers().into_iter().collect();
        if targets.is_empty() {
            return ClusterReply::default();
        }
        let id = inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (done, finished) = oneshot::channel();
        lock(&inner.pending).insert(
            id,
            Pending {
                waiting: targets,
                affected: 0,
                done: Some(done),
            },
        );
        let _guard = PendingGuard { inner, id };
        let message = inner.envelope(
            id,
            Body::CloseSession {
                key: key.to_owned(),
            },
        );
        let mut cmd = inner.cmd.clone();
        if let Err(err) = bounded(
            "publish",
            inner.config.op_timeout(),
            cmd.publish::<_, _, usize>(&inner.all_channel, message),
        )
        .await
        {
            let mut reply = ClusterReply::default();
            reply.error = Some(format!("the cluster is unreachable: {err}"));
            return reply;
        }
        let _ = tokio::time::timeout(inner.config.request_timeout(), finished).await;
        let Some(pending) = lock(&inner.pending).remove(&id) else {
            return ClusterReply::default();
        };
        let mut reply = ClusterReply::new(pending.affected);
        reply.unreached = pending.waiting.into_iter().map(|(id, _)| id).collect();
        reply.unreached.sort_unstable();
        reply
    }

    async fn join_session(&self, key: &str, max: usize) -> Result<SessionJoin, ClusterError> {
        let sum = self
            .inner
            .count(&JOIN, key, max)
            .await
            .map_err(|err| cluster_error("counting a session's connections failed", err))?;
        Ok(match sum {
            -2 => SessionJoin::Destroyed,
            -1 => SessionJoin::Full,
            _ => SessionJoin::Counted,
        })
    }

    async fn leave_session(&self, key: &str) -> Result<(), ClusterError> {
        let mut cmd = self.inner.cmd.clone();
        bounded(
            "leave",
            self.inner.config.op_timeout(),
            LEAVE
                .key(self.inner.conns_key(key))
                .arg(&self.inner.member)
                .invoke_async::<i64>(&mut cmd),
        )
        .await
        .map(drop)
        .map_err(|err| cluster_error("uncounting a session's connection failed", err))
    }

    async fn clear_session(&self, key: &str) -> Result<(), ClusterError> {
        let mut cmd = self.inner.cmd.clone();
        bounded(
            "clear",
            self.inner.config.op_timeout(),
            cmd.hdel::<_, _, usize>(self.inner.conns_key(key), &self.inner.member),
        )
        .await
        .map(drop)
        .map_err(|err| cluster_error("clearing a session's count failed", err))
    }

    async fn leave_session_last(
        &self,
        key: &str,
        count: usize,
    ) -> Result<Option<usize>, ClusterError> {
        let sum = self
            .inner
            .count(&LEAVE_LAST, key, count)
            .await
            .map_err(|err| cluster_error("counting a closed session's connections failed", err))?;
        Ok(Some(usize::try_from(sum).unwrap_or(0)))
    }

    async fn set_session_counts(&self, counts: &[(String, usize)]) -> Result<(), ClusterError> {
        self.inner
            .write_counts(counts)
            .await
            .map_err(|err| cluster_error("writing this node's session counts failed", err))
    }

    async fn session_connections(&self, key: &str) -> Result<Option<usize>, ClusterError> {
        let sum = self
            .inner
            .count(&COUNT, key, 0)
            .await
            .map_err(|err| cluster_error("counting a session's connections failed", err))?;
        Ok(Some(usize::try_from(sum).unwrap_or(0)))
    }

    async fn shutdown(&self) {
        let inner = &*self.inner;
        if inner.stop.is_cancelled() {
            return;
        }
        inner.stop.cancel();
        let message = inner.envelope(0, Body::Leaving);
        let mut cmd = inner.cmd.clone();
        let op = inner.config.op_timeout();
        let _ = bounded(
            "publish",
            op,
            cmd.publish::<_, _, usize>(&inner.all_channel, message),
        )
        .await;
        let _ = bounded(
            "leave_cluster",
            op,
            cmd.hdel::<_, _, usize>(&inner.members_key, &inner.member),
        )
        .await;
        tracing::info!(member = %inner.member, "left the cluster");
    }
}
