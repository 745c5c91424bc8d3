//! [`RedisStreamStore`]: webwire 2.1 stream history in Redis, shared by
//! every node, and [`StreamPublication`], what it publishes for live
//! delivery on other nodes.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};

use bytes::{Buf as _, Bytes};
use redis::aio::ConnectionManager;
use redis::{PushKind, RedisResult, Value};
use tokio::sync::mpsc;
use webwire_core::stream::{
    HistoryLimits, StreamEntry, StreamKey, StreamPosition, StreamRead, StreamStore,
    StreamStoreError,
};

use crate::error::RedisSessionError;
use crate::manager::resp3_client;
use crate::store_config::{millis, random_nonzero, RedisStoreConfig};

/// The version byte that starts every [`StreamPublication`].
const PUBLICATION_VERSION: u8 = 1;

/// What every stream script does first. KEYS: meta (hash: `e` epoch as 16
/// hex digits, `n` end), hist (a Redis Stream of the retained entries, IDs
/// `offset-0`, fields `t` append time in ms by Redis' clock and `f` the
/// frame). ARGV: 1 a new epoch (hex) in case the stream is made here,
/// 2 max count, 3 max age ms, 4 idle ms. Makes the stream if the meta is
/// missing (dropping any orphaned entries: their offsets belong to a lost
/// epoch), and defines `trim` (by count, then by age: drop while
/// `now - t >= max age`) and `keep_meta` (the meta outlives the entries).
const PRELUDE: &str = r"
local meta, hist = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_count = tonumber(ARGV[2])
local max_age = tonumber(ARGV[3])
local idle = tonumber(ARGV[4])
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', hist)
  redis.call('HSET', meta, 'e', epoch, 'n', 0)
end
local function trim()
  if max_count == 0 then redis.call('DEL', hist) return end
  redis.call('XTRIM', hist, 'MAXLEN', max_count)
  local cutoff = now - max_age
  local from = '-'
  while true do
    local batch = redis.call('XRANGE', hist, from, '+', 'COUNT', 64)
    if #batch == 0 then redis.call('DEL', hist) return end
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) > cutoff then
        redis.call('XTRIM', hist, 'MINID', entry[1])
        return
      end
    end
    from = '(' .. batch[#batch][1]
  end
end
local function keep_meta()
  local want = math.max(idle, max_age)
  local ttl = redis.call('PTTL', meta)
  if ttl == -1 or ttl < want then redis.call('PEXPIRE', meta, want) end
end
";

/// Appends one entry and publishes it, atomically. ARGV 5: the frame,
/// 6: the channel, 7: the publication's header (version, kind, name).
/// Returns {epoch, offset}.
static APPEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{PRELUDE}
local n = redis.call('HINCRBY', meta, 'n', 1)
if max_count > 0 then
  redis.call('XADD', hist, string.format('%d-0', n), 't', now, 'f', ARGV[5])
  redis.call('PEXPIRE', hist, max_age)
end
trim()
keep_meta()
local e = {{}}
for i = 15, 1, -2 do e[#e + 1] = string.char(tonumber(string.sub(epoch, i, i + 1), 16)) end
local o, rest = {{}}, n
for i = 1, 8 do
  local b = rest % 256
  o[i] = string.char(b)
  rest = (rest - b) / 256
end
redis.call('PUBLISH', ARGV[6], ARGV[7] .. table.concat(e) .. table.concat(o) .. ARGV[5])
return {{epoch, n}}
"
    ))
});

/// The retained entries after a position. ARGV 5: the position's offset
/// (empty: none), 6: its epoch (hex). Returns {epoch, end, id, frame, id,
/// frame, ...}: everything retained when the position is not within this
/// epoch and end (the caller works out the loss).
static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{PRELUDE}
trim()
keep_meta()
local n = tonumber(redis.call('HGET', meta, 'n'))
local from = '-'
local out = {{epoch, n}}
if ARGV[5] ~= '' and ARGV[6] == epoch then
  local after = tonumber(ARGV[5])
  if after > n then return out end
  if after > 0 then from = string.format('(%d-0', after) end
end
for _, entry in ipairs(redis.call('XRANGE', hist, from, '+')) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][4]
end
return out
"
    ))
});

/// The stream's position. Returns {epoch, end}.
static END: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"{PRELUDE}
trim()
keep_meta()
return {{epoch, tonumber(redis.call('HGET', meta, 'n'))}}
"
    ))
});

/// The memberships of a session, keeping them another idle timeout.
/// KEYS: the session's rooms hash. ARGV: idle ms. Returns HGETALL.
static ROOMS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return all
",
    )
});

/// A membership, keeping the first join position. KEYS: the session's
/// rooms hash. ARGV: room, position (`epoch hex:offset`), idle ms.
static JOIN_ROOM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
",
    )
});

/// A [`StreamStore`] in Redis: every node of a cluster numbers, keeps and
/// reads the same history, so a client resumes its streams on whichever
/// node it reaches.
///
/// # Layout
///
/// Under the prefix `P` (default `webwire:`), a stream named `N` (`s:` and
/// the session key for a session stream, `r:` and the room name for a
/// room) has two keys:
///
/// - `{P}stream:m:{N}`, a hash: `e`, the epoch as 16 lowercase hex
///   digits, made once (when the hash is missing) from a random non-zero
///   number; `n`, the stream's end (the last offset given). A Redis that
///   lost the hash (restarted empty, evicted, expired) makes a new epoch,
///   and clients holding the old one are told `EPOCH_CHANGED`.
/// - `{P}stream:h:{N}`, a Redis Stream of the retained signals with the
///   explicit IDs `{offset}-0` and the fields `t` (append time, ms by
///   Redis' clock) and `f` (the encoded 2.0 Signal frame). IDs carry the
///   offsets, so entries lost on their own (evicted, expired) read as
///   trimmed, never as wrong offsets; reads after an offset are one
///   `XRANGE` from it.
///
/// Each append is **one Lua script**: make the stream if missing, `HINCRBY`
/// the end, `XADD`, trim by count (`XTRIM MAXLEN`) and age (`XTRIM MINID`
/// at the first entry younger than the age bound), set expiries, and
/// `PUBLISH` the entry ([`StreamPublication`]) on `{P}stream:signals`, so
/// that numbering, storing and announcing cannot come apart.
///
/// The sessions' room memberships (the rooms with history a session
/// joined, [`StreamStore::session_rooms`]) are kept for every node in
/// `{P}stream:rooms:{session key}`, a hash: room name → join position as
/// `{epoch as 16 hex digits}:{offset}`. It expires the stream idle timeout
/// after its last join or read (each restore reads it), and goes with the
/// session stream when the session is closed.
///
/// **Expiry**: the entries key expires the age bound after the last append
/// (all of it is too old by then); the hash lives at least the
/// [stream idle timeout](RedisStoreConfig::with_stream_idle_timeout)
/// (default 24 h) after the last use, so a quiet stream keeps its epoch and
/// end. [`remove`](StreamStore::remove) deletes both keys.
///
/// Every call is bounded by the operation timeout; an unreachable Redis is
/// a [`StreamStoreError`] (whose source is a [`RedisSessionError`]), and
/// the history signal is then not sent. Needs Redis 6.2 or later (or
/// Valkey). Not for Redis Cluster (the keys of one script may be on
/// different shards). Cheap to clone.
///
/// ```no_run
/// use bytes::Bytes;
/// use webwire_core::stream::{HistoryLimits, StreamKey, StreamStore};
/// use webwire_redis::{RedisStoreConfig, RedisStreamStore};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStreamStore::connect("redis://127.0.0.1:6379/", RedisStoreConfig::new()).await?;
/// let room = StreamKey::room("lobby");
/// let at = store.append(&room, &HistoryLimits::default(), Bytes::from_static(b"\x3f\x01m")).await?;
/// let read = store.read(&room, &HistoryLimits::default(), None).await?;
/// assert_eq!(read.end, at.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStreamStore {
    con: ConnectionManager,
    config: Arc<RedisStoreConfig>,
    channel: Arc<str>,
    /// Random per store (a node): names this store's publications.
    origin: u64,
    /// The client it was connected with, for [`subscribe`](Self::subscribe).
    client: Option<redis::Client>,
}

impl fmt::Debug for RedisStreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamStore")
            .field("prefix", &self.config.prefix())
            .field("channel", &self.channel)
            .field("origin", &format_args!("{:016x}", self.origin))
            .finish_non_exhaustive()
    }
}

impl RedisStreamStore {
    /// Connects to the Redis at `url` (as
    /// [`RedisSessionManager::connect`](crate::RedisSessionManager::connect))
    /// and waits for the first connection, at most the operation timeout.
    ///
    /// ```
    /// use webwire_redis::{RedisSessionError, RedisStoreConfig, RedisStreamStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let bad = RedisStoreConfig::new().with_prefix("");
    /// let err = RedisStreamStore::connect("redis://127.0.0.1:6379/", bad).await.unwrap_err();
    /// assert!(matches!(err, RedisSessionError::Config(_)));
    /// # }
    /// ```
    pub async fn connect(url: &str, config: RedisStoreConfig) -> Result<Self, RedisSessionError> {
        config.validate()?;
        let client = resp3_client(url)?;
        let op = config.op_timeout();
        let con = tokio::time::timeout(
            op,
            ConnectionManager::new_with_config(client.clone(), config.connection_manager_config()),
        )
        .await
        .map_err(|_| RedisSessionError::Timeout(op))??;
        let mut store = Self::with_connection(con, config);
        store.client = Some(client);
        Ok(store)
    }

    /// A store using a connection manager made by the application (shared
    /// with a [`RedisSessionManager`](crate::RedisSessionManager), say).
    /// Fails only for a bad configuration.
    ///
    /// ```no_run
    /// use webwire_redis::redis::aio::ConnectionManager;
    /// use webwire_redis::{RedisStoreConfig, RedisStreamStore};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = webwire_redis::redis::Client::open("redis://127.0.0.1:6379/?protocol=resp3")?;
    /// let store = RedisStreamStore::from_connection_manager(ConnectionManager::new(client).await?, RedisStoreConfig::new())?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_connection_manager(
        con: ConnectionManager,
        config: RedisStoreConfig,
    ) -> Result<Self, RedisSessionError> {
        config.validate()?;
        Ok(Self::with_connection(con, config))
    }

    fn with_connection(con: ConnectionManager, config: RedisStoreConfig) -> Self {
        Self {
            con,
            channel: Self::channel_for(config.prefix()).into(),
            config: Arc::new(config),
            origin: random_nonzero(),
            client: None,
        }
    }

    /// Subscribes, on a connection of its own, to the publications of
    /// every store on this Redis with this prefix but this one (its own
    /// appends were delivered where they were made): what a node hands to
    /// its server's connections. Give it to
    /// [`RedisCluster::deliver_streams`](crate::RedisCluster::deliver_streams)
    /// (or, without a cluster, hand each to `Server::deliver_stream_entry`).
    /// Waits at most the operation timeout.
    ///
    /// The connection comes back by itself after an outage and subscribes
    /// again; what was published meanwhile is not received (pub/sub keeps
    /// nothing): the clients see gaps in their offsets and repair them from
    /// history.
    ///
    /// Only for a store made by [`connect`](Self::connect) (one made from a
    /// connection manager has no client to open another connection with:
    /// [`RedisSessionError::Config`]).
    ///
    /// ```no_run
    /// # async fn f(store: webwire_redis::RedisStreamStore) -> Result<(), webwire_redis::RedisSessionError> {
    /// let mut publications = store.subscribe().await?;
    /// while let Some(entry) = publications.next().await {
    ///     println!("{} offset {}", entry.stream, entry.position.offset);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&self) -> Result<StreamSubscription, RedisSessionError> {
        let Some(client) = self.client.clone() else {
            return Err(RedisSessionError::Config(
                "a stream store made from a connection manager cannot open a subscription".into(),
            ));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let config = self
            .config
            .connection_manager_config()
            .set_push_sender(tx)
            .set_automatic_resubscription();
        let op = self.config.op_timeout();
        let mut bus = tokio::time::timeout(op, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| RedisSessionError::Timeout(op))??;
        tokio::time::timeout(op, bus.subscribe(self.channel.as_ref()))
            .await
            .map_err(|_| RedisSessionError::Timeout(op))??;
        Ok(StreamSubscription {
            rx,
            skip_origin: self.origin,
            lost: false,
            _bus: bus,
        })
    }

    /// The origin this store writes into its publications (random, not
    /// 0, new for every store made): a node that delivered its own
    /// appends locally skips the publications of its own store.
    ///
    /// ```no_run
    /// # fn f(store: webwire_redis::RedisStreamStore, message: bytes::Bytes) {
    /// let publication = webwire_redis::StreamPublication::decode(message).unwrap();
    /// if publication.origin != store.origin() {
    ///     // deliver it to this node's connections
    /// }
    /// # }
    /// ```
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The channel every append is published on, `{prefix}stream:signals`.
    ///
    /// ```
    /// use webwire_redis::RedisStreamStore;
    ///
    /// assert_eq!(RedisStreamStore::channel_for("webwire:"), "webwire:stream:signals");
    /// ```
    pub fn channel_for(prefix: &str) -> String {
        format!("{prefix}stream:signals")
    }

    /// The channel this store publishes on.
    ///
    /// ```no_run
    /// # fn f(store: webwire_redis::RedisStreamStore) {
    /// println!("subscribe to {}", store.channel());
    /// # }
    /// ```
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(store: webwire_redis::RedisStreamStore) {
    /// println!("{}", store.config().prefix());
    /// # }
    /// ```
    pub fn config(&self) -> &RedisStoreConfig {
        &self.config
    }

    /// The Redis keys of `stream`: its hash and its entries.
    ///
    /// ```no_run
    /// use webwire_core::stream::StreamKey;
    /// # fn f(store: webwire_redis::RedisStreamStore) {
    /// let (meta, entries) = store.redis_keys(&StreamKey::room("lobby")).unwrap();
    /// assert_eq!((meta.as_str(), entries.as_str()), ("webwire:stream:m:r:lobby", "webwire:stream:h:r:lobby"));
    /// # }
    /// ```
    pub fn redis_keys(&self, stream: &StreamKey) -> Result<(String, String), RedisSessionError> {
        let name = stream_name(stream)?;
        let prefix = self.config.prefix();
        Ok((
            format!("{prefix}stream:m:{name}"),
            format!("{prefix}stream:h:{name}"),
        ))
    }

    /// The Redis key of the room memberships of the session `key`.
    ///
    /// ```no_run
    /// # fn f(store: webwire_redis::RedisStreamStore) {
    /// assert_eq!(store.rooms_key("k").unwrap(), "webwire:stream:rooms:k");
    /// # }
    /// ```
    pub fn rooms_key(&self, key: &str) -> Result<String, RedisSessionError> {
        // The same bounds as the session stream's name.
        stream_name(&StreamKey::session(key))?;
        Ok(format!("{}stream:rooms:{key}", self.config.prefix()))
    }

    async fn memberships(
        &self,
        session: &str,
    ) -> Result<Vec<(String, StreamPosition)>, RedisSessionError> {
        let mut invocation = ROOMS.prepare_invoke();
        invocation
            .key(self.rooms_key(session)?)
            .arg(millis(self.config.stream_idle_timeout()));
        let mut con = self.con.clone();
        let value: Value = self
            .bounded("stream_rooms", invocation.invoke_async(&mut con))
            .await?;
        let pairs: Vec<(&Value, &Value)> = match &value {
            Value::Array(items) => {
                if items.len() % 2 != 0 {
                    return Err(malformed("memberships that are not pairs"));
                }
                items.chunks(2).map(|pair| (&pair[0], &pair[1])).collect()
            }
            Value::Map(pairs) => pairs.iter().map(|(room, at)| (room, at)).collect(),
            _ => return Err(malformed("memberships that are not an array")),
        };
        let mut rooms = Vec::with_capacity(pairs.len());
        for (room, at) in pairs {
            let room = bytes_of(room)
                .and_then(|room| std::str::from_utf8(room).ok())
                .ok_or_else(|| malformed("a room name that is not UTF-8"))?;
            let at = bytes_of(at)
                .and_then(|at| std::str::from_utf8(at).ok())
                .and_then(parse_join_position)
                .ok_or_else(|| malformed("a join position that is not EPOCH:OFFSET"))?;
            rooms.push((room.to_owned(), at));
        }
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(rooms)
    }

    async fn join_membership(
        &self,
        session: &str,
        room: &str,
        joined: StreamPosition,
    ) -> Result<(), RedisSessionError> {
        stream_name(&StreamKey::room(room))?;
        let mut invocation = JOIN_ROOM.prepare_invoke();
        invocation
            .key(self.rooms_key(session)?)
            .arg(room)
            .arg(format!("{:016x}:{}", joined.epoch, joined.offset))
            .arg(millis(self.config.stream_idle_timeout()));
        let mut con = self.con.clone();
        self.bounded("stream_join_room", invocation.invoke_async::<i64>(&mut con))
            .await
            .map(drop)
    }

    async fn leave_membership(&self, session: &str, room: &str) -> Result<(), RedisSessionError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.rooms_key(session)?).arg(room);
        let mut con = self.con.clone();
        self.bounded("stream_leave_room", cmd.query_async::<i64>(&mut con))
            .await
            .map(drop)
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, RedisSessionError> {
        let limit = self.config.op_timeout();
        match crate::metrics::timed(op, tokio::time::timeout(limit, call)).await {
            Ok(result) => result.map_err(RedisSessionError::Redis),
            Err(_) => Err(RedisSessionError::Timeout(limit)),
        }
    }

    /// A script invocation with the keys and ARGV 1..=4 of [`PRELUDE`].
    fn invocation<'a>(
        &self,
        script: &'a redis::Script,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<redis::ScriptInvocation<'a>, RedisSessionError> {
        let (meta, hist) = self.redis_keys(stream)?;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(meta)
            .key(hist)
            .arg(format!("{:016x}", random_nonzero()))
            // Redis counts in i64 and Lua in doubles: "unlimited" is 2^50.
            .arg(limits.max_count.min(1 << 50))
            .arg(millis(limits.max_age))
            .arg(millis(self.config.stream_idle_timeout()));
        Ok(invocation)
    }

    async fn append_entry(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<StreamPosition, RedisSessionError> {
        let mut invocation = self.invocation(&APPEND, stream, limits)?;
        invocation
            .arg(frame.as_ref())
            .arg(self.channel.as_ref())
            .arg(publication_header(stream, self.origin));
        let mut con = self.con.clone();
        let value: Value = self
            .bounded("stream_append", invocation.invoke_async(&mut con))
            .await?;
        position(&value)
    }

    async fn read_entries(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<StreamPosition>,
    ) -> Result<StreamRead, RedisSessionError> {
        let mut invocation = self.invocation(&READ, stream, limits)?;
        match after {
            Some(at) => invocation
                .arg(at.offset.to_string())
                .arg(format!("{:016x}", at.epoch)),
            None => invocation.arg("").arg(""),
        };
        let mut con = self.con.clone();
        let value: Value = self
            .bounded("stream_read", invocation.invoke_async(&mut con))
            .await?;
        let Value::Array(items) = value else {
            return Err(malformed("a read that is not an array"));
        };
        let at = position_of(items.get(..2).unwrap_or_default())?;
        let mut retained = Vec::with_capacity(items.len().saturating_sub(2) / 2);
        for pair in items[2..].chunks(2) {
            let [id, frame] = pair else {
                return Err(malformed("an entry without its frame"));
            };
            let offset = bytes_of(id)
                .and_then(|id| std::str::from_utf8(id).ok())
                .and_then(|id| id.strip_suffix("-0"))
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| malformed("an entry ID that is not OFFSET-0"))?;
            let frame = bytes_of(frame).ok_or_else(|| malformed("an entry frame"))?;
            retained.push(StreamEntry {
                offset,
                frame: Bytes::copy_from_slice(frame),
            });
        }
        let dense = retained
            .iter()
            .zip(retained.iter().skip(1))
            .all(|(a, b)| b.offset == a.offset + 1)
            && retained.last().is_none_or(|last| last.offset == at.offset);
        if !dense {
            return Err(malformed(
                "retained offsets that are not dense up to the end",
            ));
        }
        Ok(StreamRead::answer(at.epoch, at.offset, retained, after))
    }

    async fn end_position(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<StreamPosition, RedisSessionError> {
        let invocation = self.invocation(&END, stream, limits)?;
        let mut con = self.con.clone();
        let value: Value = self
            .bounded("stream_end", invocation.invoke_async(&mut con))
            .await?;
        position(&value)
    }

    async fn delete(&self, stream: &StreamKey) -> Result<(), RedisSessionError> {
        let (meta, hist) = self.redis_keys(stream)?;
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(meta).arg(hist);
        if let StreamKey::Session(key) = stream {
            cmd.arg(self.rooms_key(key)?);
        }
        self.bounded("stream_remove", cmd.query_async::<i64>(&mut con))
            .await
            .map(drop)
    }
}

/// A join position as stored, `{epoch hex}:{offset}`.
fn parse_join_position(text: &str) -> Option<StreamPosition> {
    let (epoch, offset) = text.split_once(':')?;
    let epoch = u64::from_str_radix(epoch, 16).ok().filter(|&e| e != 0)?;
    Some(StreamPosition::new(epoch, offset.parse().ok()?))
}

fn malformed(what: &str) -> RedisSessionError {
    RedisSessionError::Decode(format!("stream script answered {what}"))
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// `{epoch (hex), end}` as a position.
fn position_of(items: &[Value]) -> Result<StreamPosition, RedisSessionError> {
    let [epoch, end] = items else {
        return Err(malformed("no epoch and end"));
    };
    let epoch = bytes_of(epoch)
        .and_then(|hex| std::str::from_utf8(hex).ok())
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .filter(|&epoch| epoch != 0)
        .ok_or_else(|| malformed("an epoch that is not 16 hex digits"))?;
    let Value::Int(end) = end else {
        return Err(malformed("an end that is not an integer"));
    };
    let end = u64::try_from(*end).map_err(|_| malformed("a negative end"))?;
    Ok(StreamPosition::new(epoch, end))
}

fn position(value: &Value) -> Result<StreamPosition, RedisSessionError> {
    match value {
        Value::Array(items) => position_of(items),
        _ => Err(malformed("a position that is not an array")),
    }
}

/// The name of a stream in its keys: `s:` + session key, `r:` + room.
fn stream_name(stream: &StreamKey) -> Result<String, RedisSessionError> {
    let (tag, name, what) = match stream {
        StreamKey::Session(key) => ("s:", key, "a session key"),
        StreamKey::Room(room) => ("r:", room, "a room name"),
    };
    if !(1..=255).contains(&name.len()) {
        return Err(RedisSessionError::InvalidName(what));
    }
    Ok(format!("{tag}{name}"))
}

/// `[version][kind][name length][name][origin]` of a publication.
fn publication_header(stream: &StreamKey, origin: u64) -> Vec<u8> {
    let (kind, name) = match stream {
        StreamKey::Session(key) => (1u8, key.as_bytes()),
        StreamKey::Room(room) => (2u8, room.as_bytes()),
    };
    let mut header = Vec::with_capacity(3 + name.len());
    header.push(PUBLICATION_VERSION);
    header.push(kind);
    // stream_name checked the length before any publication is made.
    header.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    header.extend_from_slice(name);
    header.extend_from_slice(&origin.to_le_bytes());
    header
}

/// One appended history signal as [`RedisStreamStore`] publishes it on
/// `{prefix}stream:signals` ([`RedisStreamStore::channel`]), in the same
/// atomic step as the append, for the nodes that deliver it live to their
/// connections.
///
/// Layout (integers little-endian):
///
/// ```text
/// [version u8 = 1][kind u8: 1 session, 2 room][nl u8][name nl bytes]
/// [origin u64][epoch u64][offset u64][frame: the encoded 2.0 Signal, to the end]
/// ```
///
/// The name is the session key (kind 1) or the room name (kind 2, UTF-8).
/// The origin names the store that appended
/// ([`RedisStreamStore::origin`]): a node skips its own.
/// A subscriber delivers an entry to a connection only in offset order
/// after what it already sent of that stream; pub/sub is at most once, so a
/// missed publication is a gap the client repairs from history.
///
/// ```
/// use bytes::Bytes;
/// use webwire_core::stream::StreamKey;
/// use webwire_redis::StreamPublication;
///
/// let mut message = vec![1, 2, 5];
/// message.extend_from_slice(b"lobby");
/// message.extend_from_slice(&0xabcu64.to_le_bytes());
/// message.extend_from_slice(&7u64.to_le_bytes());
/// message.extend_from_slice(&3u64.to_le_bytes());
/// message.extend_from_slice(b"\x3f\x01m");
/// let publication = StreamPublication::decode(Bytes::from(message)).unwrap();
/// assert_eq!(publication.stream, StreamKey::room("lobby"));
/// assert_eq!(publication.origin, 0xabc);
/// assert_eq!((publication.position.epoch, publication.position.offset), (7, 3));
/// assert_eq!(&publication.frame[..], b"\x3f\x01m");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPublication {
    /// The stream appended to.
    pub stream: StreamKey,
    /// The store that appended it ([`RedisStreamStore::origin`]).
    pub origin: u64,
    /// The signal's epoch and offset.
    pub position: StreamPosition,
    /// The encoded 2.0 Signal message (types 63 to 65), as appended.
    pub frame: Bytes,
}

/// A message on the stream channel that is not a [`StreamPublication`].
///
/// ```
/// use bytes::Bytes;
/// use webwire_redis::StreamPublication;
///
/// let err = StreamPublication::decode(Bytes::from_static(&[9, 0, 0])).unwrap_err();
/// assert_eq!(err.to_string(), "unreadable stream publication: unknown version");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable stream publication: {0}")]
pub struct PublicationError(&'static str);

impl StreamPublication {
    /// Reads a message of the stream channel, without copying the frame.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_redis::StreamPublication;
    ///
    /// // Truncated: no name, origin, epoch or offset.
    /// assert!(StreamPublication::decode(Bytes::from_static(&[1, 1, 0])).is_err());
    /// ```
    pub fn decode(mut message: Bytes) -> Result<Self, PublicationError> {
        let need = |message: &Bytes, n: usize| {
            if message.len() < n {
                Err(PublicationError("truncated"))
            } else {
                Ok(())
            }
        };
        need(&message, 3)?;
        let version = message.get_u8();
        if version != PUBLICATION_VERSION {
            return Err(PublicationError("unknown version"));
        }
        let kind = message.get_u8();
        let len = usize::from(message.get_u8());
        need(&message, len + 24)?;
        let name = message.split_to(len);
        let name = std::str::from_utf8(&name)
            .map_err(|_| PublicationError("a name that is not UTF-8"))?
            .to_owned();
        if name.is_empty() {
            return Err(PublicationError("an empty name"));
        }
        let stream = match kind {
            1 => StreamKey::Session(name),
            2 => StreamKey::Room(name),
            _ => return Err(PublicationError("unknown stream kind")),
        };
        let origin = message.get_u64_le();
        let epoch = message.get_u64_le();
        let offset = message.get_u64_le();
        if epoch == 0 || offset == 0 {
            return Err(PublicationError("epoch or offset 0"));
        }
        Ok(Self {
            stream,
            origin,
            position: StreamPosition::new(epoch, offset),
            frame: message,
        })
    }
}

/// The publications of the other stores on one Redis and prefix, from
/// [`RedisStreamStore::subscribe`], in the order Redis published them
/// (per stream, offset order).
pub struct StreamSubscription {
    rx: mpsc::UnboundedReceiver<redis::PushInfo>,
    skip_origin: u64,
    lost: bool,
    /// Kept for the subscription's lifetime.
    _bus: ConnectionManager,
}

impl fmt::Debug for StreamSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSubscription")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl StreamSubscription {
    /// The next publication of another store; `None` once the connection
    /// is gone for good (it never is while the subscription is held: it
    /// reconnects without limit). Unreadable messages are dropped with a
    /// warning; the loss and the return of the connection are logged.
    ///
    /// ```no_run
    /// # async fn f(mut publications: webwire_redis::StreamSubscription) {
    /// if let Some(entry) = publications.next().await {
    ///     println!("{:?}", entry.position);
    /// }
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<StreamPublication> {
        loop {
            let push = self.rx.recv().await?;
            match push.kind {
                PushKind::Message => {
                    let Some(Value::BulkString(data)) = push.data.into_iter().nth(1) else {
                        continue;
                    };
                    match StreamPublication::decode(Bytes::from(data)) {
                        Ok(entry) if entry.origin == self.skip_origin => {}
                        Ok(entry) => return Some(entry),
                        Err(err) => tracing::warn!(error = %err, "stream subscription: dropped"),
                    }
                }
                PushKind::Disconnection if !self.lost => {
                    self.lost = true;
                    tracing::warn!("stream subscription: lost the Redis connection; publications until it is back are missed (clients repair the gaps from history)");
                }
                PushKind::Subscribe if self.lost => {
                    self.lost = false;
                    tracing::info!("stream subscription: subscribed again");
                }
                _ => {}
            }
        }
    }
}

fn store_error(what: &str, stream: &StreamKey, err: RedisSessionError) -> StreamStoreError {
    StreamStoreError::new(format!("{what} {stream} in Redis"), err)
}

impl StreamStore for RedisStreamStore {
    async fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<StreamPosition, StreamStoreError> {
        self.append_entry(stream, limits, frame)
            .await
            .map_err(|err| store_error("appending to", stream, err))
    }

    async fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<StreamPosition>,
    ) -> Result<StreamRead, StreamStoreError> {
        self.read_entries(stream, limits, after)
            .await
            .map_err(|err| store_error("reading", stream, err))
    }

    async fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<StreamPosition, StreamStoreError> {
        self.end_position(stream, limits)
            .await
            .map_err(|err| store_error("reading the end of", stream, err))
    }

    async fn remove(&self, stream: &StreamKey) -> Result<(), StreamStoreError> {
        self.delete(stream)
            .await
            .map_err(|err| store_error("removing", stream, err))
    }

    async fn session_rooms(
        &self,
        session: &str,
    ) -> Result<Option<Vec<(String, StreamPosition)>>, StreamStoreError> {
        self.memberships(session).await.map(Some).map_err(|err| {
            store_error(
                "reading the room memberships of",
                &StreamKey::session(session),
                err,
            )
        })
    }

    async fn join_room(
        &self,
        session: &str,
        room: &str,
        joined: StreamPosition,
    ) -> Result<(), StreamStoreError> {
        self.join_membership(session, room, joined)
            .await
            .map_err(|err| {
                store_error(
                    "storing a room membership of",
                    &StreamKey::session(session),
                    err,
                )
            })
    }

    async fn leave_room(&self, session: &str, room: &str) -> Result<(), StreamStoreError> {
        self.leave_membership(session, room).await.map_err(|err| {
            store_error(
                "ending a room membership of",
                &StreamKey::session(session),
                err,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(stream: &StreamKey, epoch: u64, offset: u64, frame: &[u8]) -> Bytes {
        let mut message = publication_header(stream, 0x1234);
        message.extend_from_slice(&epoch.to_le_bytes());
        message.extend_from_slice(&offset.to_le_bytes());
        message.extend_from_slice(frame);
        Bytes::from(message)
    }

    #[test]
    fn publications_round_trip() {
        for stream in [
            StreamKey::session("k".repeat(255)),
            StreamKey::room("ünïcode room"),
        ] {
            let message = encode(&stream, u64::MAX, 1 << 40, b"\x40\x00\x00");
            let publication = StreamPublication::decode(message).unwrap();
            assert_eq!(publication.stream, stream);
            assert_eq!(publication.origin, 0x1234);
            assert_eq!(publication.position, StreamPosition::new(u64::MAX, 1 << 40));
            assert_eq!(&publication.frame[..], b"\x40\x00\x00");
        }
    }

    #[test]
    fn bad_publications_are_refused() {
        let good = encode(&StreamKey::room("r"), 1, 1, b"x");
        for cut in 0..(good.len() - 1) {
            assert!(
                StreamPublication::decode(good.slice(..cut)).is_err(),
                "{cut}"
            );
        }
        let mut wrong_kind = good.to_vec();
        wrong_kind[1] = 3;
        let mut zero_epoch = good.to_vec();
        zero_epoch[12..20].fill(0);
        let mut not_utf8 = good.to_vec();
        not_utf8[3] = 0xff;
        for bad in [wrong_kind, zero_epoch, not_utf8, vec![2, 2, 0]] {
            assert!(StreamPublication::decode(Bytes::from(bad)).is_err());
        }
    }

    #[test]
    fn names_are_tagged_and_bounded() {
        assert_eq!(stream_name(&StreamKey::room("a:b")).unwrap(), "r:a:b");
        assert_eq!(stream_name(&StreamKey::session("k")).unwrap(), "s:k");
        for bad in [StreamKey::room(""), StreamKey::session("k".repeat(256))] {
            assert!(matches!(
                stream_name(&bad),
                Err(RedisSessionError::InvalidName(_))
            ));
        }
    }
}
