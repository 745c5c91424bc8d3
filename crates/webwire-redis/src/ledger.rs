//! [`RedisLedger`]: the webwire 2.1 request ledger in Redis, shared by
//! every node, so that a keyed request runs at most once in the cluster
//! however many nodes its retries reach.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{PushKind, RedisResult, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use webwire_core::ledger::{
    Begin, Finish, Lease, LedgerError, LedgerLimits, LedgerRequest, LedgerScope, Lookup,
    RequestDigest, RequestLedger, RunOutcome, RunWait, StoredReply,
};
use webwire_proto::MessageType;

use crate::error::RedisSessionError;
use crate::key::{is_valid_key, redacted};
use crate::manager::resp3_client;
use crate::store_config::{millis, random_nonzero, RedisStoreConfig};

/// Shared by the scripts on one scope. KEYS[1]: the scope's hash. Fields:
/// `h` high-water mark, `a` acknowledged, `b` bytes of the stored replies,
/// `x` set once the session closed; per seq `R{seq}` a run ("token
/// incarnation digest deadline-ms"), `W{seq}` the wake channels of retries
/// waiting for it (separated by newlines: a prefix may hold spaces), `D{seq}` a stored reply (40 hex digits of the digest,
/// the reply's type byte, its bytes after the request id). KEYS[2]: the
/// stored replies' index, a sorted set of seqs (20 digits) scored by
/// finish time. `life(closed)` is how long the scope's keys must live
/// from now: ARGV max_age, lease, idle are at the positions given by the
/// script's `A_AGE`, `A_LEASE`, `A_IDLE`.
const PRELUDE: &str = r"
local S, Z = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_age, lease, idle = tonumber(ARGV[A_AGE]), tonumber(ARGV[A_LEASE]), tonumber(ARGV[A_IDLE])
local function keep(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and ttl < ms) then redis.call('PEXPIRE', key, ms) end
end
local function touch()
  local ms = lease + max_age
  if redis.call('HEXISTS', S, 'x') == 0 then ms = math.max(idle, ms) end
  keep(S, ms)
  keep(Z, ms)
  return ms
end
local function pad(seq) return string.rep('0', 20 - #seq) .. seq end
local function release(member)
  local seq = string.gsub(member, '^0+', '')
  local v = redis.call('HGET', S, 'D' .. seq)
  if v then
    redis.call('HDEL', S, 'D' .. seq)
    redis.call('HINCRBY', S, 'b', 32 - #v)
  end
  redis.call('ZREM', Z, member)
end
local function acknowledge(ack_text)
  local ack = tonumber(ack_text)
  if ack <= tonumber(redis.call('HGET', S, 'a') or '0') then return end
  redis.call('HSET', S, 'a', ack_text)
  for _, m in ipairs(redis.call('ZRANGE', Z, 0, -1)) do
    if tonumber(m) <= ack then release(m) end
  end
end
local function run_of(seq)
  local r = redis.call('HGET', S, 'R' .. seq)
  if not r then return nil end
  local token, inc, digest, deadline = string.match(r, '^(%d+) (%x+) (%x+) (%d+)$')
  return {token = token, inc = inc, digest = digest, deadline = tonumber(deadline)}
end
local function add_waiter(seq, channel)
  local w = redis.call('HGET', S, 'W' .. seq) or ''
  if not string.find('\n' .. w .. '\n', '\n' .. channel .. '\n', 1, true) then
    if w ~= '' then w = w .. '\n' end
    redis.call('HSET', S, 'W' .. seq, w .. channel)
  end
end
local function wake(seq)
  local w = redis.call('HGET', S, 'W' .. seq)
  if not w then return end
  redis.call('HDEL', S, 'W' .. seq)
  for channel in string.gmatch(w, '[^\n]+') do
    redis.call('PUBLISH', channel, seq .. ' ' .. S)
  end
end
";

/// Builds a script from the prelude with the ARGV positions of the
/// bounds.
fn script(age: usize, lease: usize, idle: usize, body: &str) -> redis::Script {
    let prelude = PRELUDE
        .replace("A_AGE", &age.to_string())
        .replace("A_LEASE", &lease.to_string())
        .replace("A_IDLE", &idle.to_string());
    redis::Script::new(&format!("{prelude}\n{body}"))
}

/// The decision table, for `begin` (ARGV[6] `b`) and `lookup` (`l`), in
/// one step so that concurrent begins of one key on several nodes give
/// exactly one run. KEYS: scope, index, epoch, session index, tokens.
/// ARGV: 1 epoch candidate, 2 request epoch, 3 seq, 4 ack, 5 digest (hex),
/// 6 mode, 7 instance, 8 this node's wake channel, 9 incarnation (hex),
/// 10 max age, 11 lease, 12 idle (ms). Answers {code, value}: 1 run
/// (token), 2 stored (the `D` value), 3 running (ms left on its lease),
/// 4 unknown, 5 key reused, 6 not run, 7 unretained. The caller refused
/// bad keys (seq 0, ack >= seq) before.
static BEGIN: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        10,
        11,
        12,
        r"
local lookup = ARGV[6] == 'l'
if lookup and redis.call('EXISTS', S) == 0 then return {7} end
redis.call('SET', KEYS[3], ARGV[1], 'NX')
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return {4} end
local seq = ARGV[3]
local function decide()
  local old = redis.call('ZRANGEBYSCORE', Z, '-inf', now - max_age)
  for _, m in ipairs(old) do release(m) end
  acknowledge(ARGV[4])
  local run = run_of(seq)
  if run and run.deadline <= now then
    redis.call('HDEL', S, 'R' .. seq, 'W' .. seq)
    run = nil
  end
  if run then
    if run.digest ~= ARGV[5] then return {5} end
    add_waiter(seq, ARGV[8])
    return {3, run.deadline - now}
  end
  local d = redis.call('HGET', S, 'D' .. seq)
  if d then
    if string.sub(d, 1, 40) ~= ARGV[5] then return {5} end
    return {2, d}
  end
  local hwm = tonumber(redis.call('HGET', S, 'h') or '0')
  local acked = tonumber(redis.call('HGET', S, 'a') or '0')
  if tonumber(seq) <= math.max(hwm, acked) then return {4} end
  if lookup then return {6} end
  local token = string.format('%d', redis.call('INCR', KEYS[5]))
  redis.call('HSET', S, 'h', seq, 'R' .. seq,
    token .. ' ' .. ARGV[9] .. ' ' .. ARGV[5] .. ' ' .. string.format('%d', now + lease))
  return {1, token}
end
local result = decide()
-- Expiries once the scope exists (a new scope is made by the decision).
-- A lookup (of a closed session's scope) never extends them: the scope
-- goes the age bound after the close, however often it is asked.
if not lookup and redis.call('EXISTS', S) == 1 then
  redis.call('SADD', KEYS[4], ARGV[7])
  keep(KEYS[4], touch())
end
return result
",
    )
});

/// The end of a run: stores its reply if the lease is still held (token
/// and incarnation match, deadline not passed), within the bounds, and
/// wakes the retries waiting for it; a reply not kept is left for them
/// for a while under KEYS[3]. KEYS: scope, index, not-kept key. ARGV:
/// 1 seq, 2 token, 3 incarnation, 4 the reply (type byte and bytes after
/// the id), 5 max replies, 6 max bytes, 7 max age, 8 lease, 9 idle.
/// Answers 1 stored, 2 not kept, 3 lease lost.
static FINISH: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        7,
        8,
        9,
        r"
local seq = ARGV[1]
local run = run_of(seq)
local live, digest = false, nil
if run and run.token == ARGV[2] and run.inc == ARGV[3] then
  redis.call('HDEL', S, 'R' .. seq)
  live = run.deadline > now
  digest = run.digest
end
local outcome = 3
if live then
  local len = #ARGV[4] + 8
  if tonumber(seq) <= tonumber(redis.call('HGET', S, 'a') or '0') or len > tonumber(ARGV[6]) then
    outcome = 2
  else
    redis.call('HSET', S, 'D' .. seq, digest .. ARGV[4])
    redis.call('HINCRBY', S, 'b', len)
    redis.call('ZADD', Z, now, pad(seq))
    local max_replies, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
    while redis.call('ZCARD', Z) > max_replies or tonumber(redis.call('HGET', S, 'b') or '0') > max_bytes do
      local oldest = redis.call('ZRANGE', Z, 0, 0)
      if #oldest == 0 then break end
      release(oldest[1])
    end
    if redis.call('HEXISTS', S, 'D' .. seq) == 1 then outcome = 1 else outcome = 2 end
    touch()
  end
  if outcome == 2 and redis.call('HEXISTS', S, 'W' .. seq) == 1 then
    redis.call('SET', KEYS[3], digest .. ARGV[4], 'PX', math.max(lease, 5000))
  end
end
wake(seq)
return outcome
",
    )
});

/// Extends a lease still held. KEYS: scope, index. ARGV: 1 seq, 2 token,
/// 3 incarnation, 4 max age, 5 lease, 6 idle. Answers 1 or 0.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        4,
        5,
        6,
        r"
local seq = ARGV[1]
local run = run_of(seq)
if not run or run.token ~= ARGV[2] or run.inc ~= ARGV[3] or run.deadline <= now then return 0 end
redis.call('HSET', S, 'R' .. seq,
  run.token .. ' ' .. run.inc .. ' ' .. run.digest .. ' ' .. string.format('%d', now + lease))
touch()
return 1
",
    )
});

/// A lease dropped without a finish: the run is given up, its waiters
/// woken (they find it gone: unknown). KEYS: scope, index. ARGV: 1 seq,
/// 2 token, 3 incarnation, 4..6 bounds.
static GIVE_UP: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        4,
        5,
        6,
        r"
local seq = ARGV[1]
local run = run_of(seq)
if not run or run.token ~= ARGV[2] or run.inc ~= ARGV[3] then return 0 end
redis.call('HDEL', S, 'R' .. seq)
wake(seq)
return 1
",
    )
});

/// Where a run a retry waits for stands, registering the retry's wake
/// channel while it runs. KEYS: scope, index, not-kept key. ARGV: 1 seq,
/// 2 wake channel, 3..5 bounds. Answers {3, ms left}, {2, reply as `D`},
/// or {4} (given up, lapsed, released: unknown).
static WATCH: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        3,
        4,
        5,
        r"
local seq = ARGV[1]
local run = run_of(seq)
if run then
  if run.deadline > now then
    add_waiter(seq, ARGV[2])
    return {3, run.deadline - now}
  end
  redis.call('HDEL', S, 'R' .. seq, 'W' .. seq)
end
local d = redis.call('HGET', S, 'D' .. seq) or redis.call('GET', KEYS[3])
if d then return {2, d} end
return {4}
",
    )
});

/// An acknowledgement without a request. KEYS: scope, index. ARGV: 1 ack,
/// 2..4 bounds.
static ACKNOWLEDGE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        2,
        3,
        4,
        r"
if redis.call('EXISTS', S) == 0 then return 0 end
acknowledge(ARGV[1])
return 1
",
    )
});

/// A session closed: each of its scopes is marked and expires after the
/// age bound (plus a lease, for a run under way such as the logout that
/// closed it). KEYS: the session index, then each scope and its index.
/// ARGV: 1 ms.
static CLOSE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 2, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'x', 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
",
    )
});

/// The ledger epoch, made once.
static EPOCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
",
    )
});

/// A [`RequestLedger`] in Redis: every node of a cluster decides keyed
/// requests from the same state, so a request runs **at most once** in the
/// cluster, whichever nodes its retries reach, and a retry of a run under
/// way on another node gets that run's reply.
///
/// # Layout
///
/// Under the prefix `P` (default `webwire:`):
///
/// - `{P}ledger:epoch`: the ledger epoch (decimal), set once with `SET NX`
///   from a random non-zero number. A Redis restarted empty makes a new
///   one, so every retry of a request sent before answers "outcome
///   unknown", never a second run.
/// - `{P}ledger:tokens`: a counter giving every run its fencing token.
/// - per scope (session `K`, client instance `I` of length `L`), the hash
///   `{P}ledger:h:{L}:{I}:{K}` (high-water mark, acknowledgement, the runs
///   with their leases, the stored replies; see the crate source for the
///   fields) and the sorted set `{P}ledger:z:{L}:{I}:{K}` of its stored
///   replies by finish time (for the age, count and byte bounds);
/// - `{P}ledger:s:{K}`: the set of the session's instances (to close them
///   with the session);
/// - `{P}ledger:n:{seq}:{L}:{I}:{K}`: briefly, a reply that was not kept
///   (acknowledged while running, or larger than the byte bound) but that
///   a retry was waiting for;
/// - channel `{P}ledger:wake:{incarnation}`: this ledger's own; a run's
///   end is announced there to the retries waiting for it.
///
/// **One script decides** ([`begin`](RequestLedger::begin)): the epoch
/// check, releasing replies past the age bound and acknowledged ones, the
/// table of [`webwire_core::ledger`], and marking a new run: concurrent
/// begins of one key on two nodes give one [`Begin::Run`].
///
/// **Leases**: a run's marker holds its fencing token, this ledger's
/// incarnation (random per instance) and a deadline by Redis' clock, the
/// lease time ahead, moved on by [`renew`](RequestLedger::renew). A reply
/// is stored only by the script that finds the marker with the same token
/// and incarnation and a deadline not passed (compare-and-set), so a slow
/// node whose lease lapsed cannot store one. A lapsed marker is removed by
/// the next script that finds it. A [`Lease`] dropped without
/// [`finish`](RequestLedger::finish) gives its run up at once (a task
/// removes the marker and wakes its waiters).
///
/// **Waiting for a run on another node**: a retry that finds a run under
/// way registers this ledger's wake channel with it in the same script;
/// the run's end publishes there. The waiting retry then reads the outcome
/// from Redis (the stored reply, the reply not kept, or nothing: unknown).
/// It also polls every [poll interval](RedisStoreConfig::with_poll_interval)
/// and when the lease should end, so a notice lost in an outage or a node
/// that died mid-run ends the wait (unknown), never hangs it.
///
/// **Expiry**: the scope's keys live the idle timeout after their last use
/// (at least the age bound and a lease); once the session is
/// [closed](RequestLedger::session_closed), the age bound and a lease.
/// Replies older than the age bound are released when the scope is next
/// used (Redis drops the whole scope when it expires).
///
/// Needs Redis 6.2 or later (or Valkey); not for Redis Cluster. Two Redis
/// connections (one for the wake channel). Cheap to clone.
///
/// ```no_run
/// use webwire_core::ledger::{LedgerLimits, RequestLedger};
/// use webwire_redis::{RedisLedger, RedisStoreConfig};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ledger = RedisLedger::connect("redis://127.0.0.1:6379/", RedisStoreConfig::new(), LedgerLimits::default()).await?;
/// println!("ledger epoch {}", ledger.epoch().await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLedger {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisStoreConfig,
    limits: LedgerLimits,
    incarnation: String,
    wake_channel: String,
    epoch_key: String,
    tokens_key: String,
    cmd: ConnectionManager,
    /// Kept for the subscription's lifetime.
    _bus: ConnectionManager,
    waiters: Arc<Waiters>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The retries of this ledger waiting for runs, by (scope hash key, seq):
/// a wake notice bumps the counter, the waiter then reads Redis.
#[derive(Default)]
struct Waiters {
    map: Mutex<HashMap<WaitKey, (watch::Sender<u64>, usize)>>,
}

/// A run's scope hash key and its seq (decimal), as the wake notice names it.
type WaitKey = (String, String);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Waiters {
    fn register(self: &Arc<Self>, key: WaitKey) -> (watch::Receiver<u64>, Registration) {
        let mut map = lock(&self.map);
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (watch::channel(0).0, 0));
        entry.1 += 1;
        let rx = entry.0.subscribe();
        (
            rx,
            Registration {
                waiters: Arc::clone(self),
                key,
            },
        )
    }

    fn wake(&self, key: &WaitKey) {
        if let Some((sender, _)) = lock(&self.map).get(key) {
            sender.send_modify(|n| *n += 1);
        }
    }

    fn wake_all(&self) {
        for (sender, _) in lock(&self.map).values() {
            sender.send_modify(|n| *n += 1);
        }
    }
}

/// Takes a waiter's place back when it ends.
struct Registration {
    waiters: Arc<Waiters>,
    key: WaitKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        if let Some(entry) = map.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The guard of a [`Lease`] of this ledger: dropped still armed (the run
/// panicked or was aborted), it gives the run up in the background, so
/// that the retries waiting for it learn "unknown" at once rather than at
/// the lease's end.
struct LeaseGuard {
    inner: Option<Arc<Inner>>,
    scope_key: String,
    index_key: String,
    seq: u64,
    token: u64,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to tell Redis: the lease lapses at its deadline.
            return;
        };
        let scope_key = std::mem::take(&mut self.scope_key);
        let index_key = std::mem::take(&mut self.index_key);
        let (seq, token) = (self.seq, self.token);
        runtime.spawn(async move {
            if let Err(err) = inner.give_up(&scope_key, &index_key, seq, token).await {
                tracing::warn!(error = %err, "ledger: giving up a dropped run failed; its lease will lapse");
            }
        });
    }
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.inner.config.prefix())
            .field("incarnation", &self.inner.incarnation)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Where a run a retry waits for stands.
enum Watch {
    Running(Duration),
    Reply(StoredReply),
    Unknown,
}

impl RedisLedger {
    /// Connects to the Redis at `url` (as
    /// [`RedisSessionManager::connect`](crate::RedisSessionManager::connect)),
    /// subscribes to this ledger's wake channel and starts the task that
    /// listens to it. Waits at most the operation timeout for each step.
    ///
    /// ```
    /// use webwire_core::ledger::LedgerLimits;
    /// use webwire_redis::{RedisLedger, RedisSessionError, RedisStoreConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let bad = RedisStoreConfig::new().with_prefix("");
    /// let err = RedisLedger::connect("redis://127.0.0.1:6379/", bad, LedgerLimits::default()).await.unwrap_err();
    /// assert!(matches!(err, RedisSessionError::Config(_)));
    /// # }
    /// ```
    pub async fn connect(
        url: &str,
        config: RedisStoreConfig,
        limits: LedgerLimits,
    ) -> Result<Self, RedisSessionError> {
        config.validate()?;
        if limits.lease_ttl.is_zero() || limits.max_age.is_zero() || limits.idle_timeout.is_zero() {
            return Err(RedisSessionError::Config(
                "the ledger's lease time, age bound and idle timeout must not be zero".into(),
            ));
        }
        let client = resp3_client(url)?;
        let op = config.op_timeout();
        let cmd = tokio::time::timeout(
            op,
            ConnectionManager::new_with_config(client.clone(), config.connection_manager_config()),
        )
        .await
        .map_err(|_| RedisSessionError::Timeout(op))??;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let bus_config = config
            .connection_manager_config()
            .set_push_sender(push_tx)
            .set_automatic_resubscription();
        let mut bus =
            tokio::time::timeout(op, ConnectionManager::new_with_config(client, bus_config))
                .await
                .map_err(|_| RedisSessionError::Timeout(op))??;
        let incarnation = format!("{:016x}", random_nonzero());
        let prefix = config.prefix();
        let wake_channel = format!("{prefix}ledger:wake:{incarnation}");
        tokio::time::timeout(op, bus.subscribe(&wake_channel))
            .await
            .map_err(|_| RedisSessionError::Timeout(op))??;
        let waiters = Arc::new(Waiters::default());
        let stop = CancellationToken::new();
        tokio::spawn(receive(Arc::clone(&waiters), stop.clone(), push_rx));
        Ok(Self {
            inner: Arc::new(Inner {
                epoch_key: format!("{prefix}ledger:epoch"),
                tokens_key: format!("{prefix}ledger:tokens"),
                incarnation,
                wake_channel,
                config,
                limits,
                cmd,
                _bus: bus,
                waiters,
                stop,
            }),
        })
    }

    /// The bounds.
    ///
    /// ```no_run
    /// # fn f(ledger: webwire_redis::RedisLedger) {
    /// println!("{:?}", ledger.limits().max_age);
    /// # }
    /// ```
    pub fn limits(&self) -> &LedgerLimits {
        &self.inner.limits
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(ledger: webwire_redis::RedisLedger) {
    /// println!("{}", ledger.config().prefix());
    /// # }
    /// ```
    pub fn config(&self) -> &RedisStoreConfig {
        &self.inner.config
    }
}

/// Listens to the wake channel: wakes the retries a notice names, and all
/// of them when the connection was lost or came back (a notice may have
/// been lost: they read Redis again).
async fn receive(
    waiters: Arc<Waiters>,
    stop: CancellationToken,
    mut rx: mpsc::UnboundedReceiver<redis::PushInfo>,
) {
    loop {
        let push = tokio::select! {
            () = stop.cancelled() => return,
            push = rx.recv() => match push {
                Some(push) => push,
                None => return,
            },
        };
        match push.kind {
            PushKind::Message => {
                let Some(Value::BulkString(data)) = push.data.into_iter().nth(1) else {
                    continue;
                };
                let Ok(text) = String::from_utf8(data) else {
                    continue;
                };
                if let Some((seq, scope)) = text.split_once(' ') {
                    waiters.wake(&(scope.to_owned(), seq.to_owned()));
                }
            }
            PushKind::Disconnection | PushKind::Subscribe => waiters.wake_all(),
            _ => {}
        }
    }
}

/// The keys of a scope: its hash and its index. Session keys and instance
/// ids are printable ASCII; the instance's length makes the split
/// unambiguous.
fn scope_keys(prefix: &str, scope: &LedgerScope) -> Result<(String, String), RedisSessionError> {
    check_scope(scope)?;
    let (len, instance, session) = (scope.instance.len(), &scope.instance, &scope.session);
    Ok((
        format!("{prefix}ledger:h:{len}:{instance}:{session}"),
        format!("{prefix}ledger:z:{len}:{instance}:{session}"),
    ))
}

fn check_scope(scope: &LedgerScope) -> Result<(), RedisSessionError> {
    if !is_valid_key(&scope.session) {
        return Err(RedisSessionError::InvalidName("a session key"));
    }
    let instance_ok = (1..=64).contains(&scope.instance.len())
        && scope.instance.bytes().all(|b| (32..=126).contains(&b));
    if !instance_ok {
        return Err(RedisSessionError::InvalidName("a client instance id"));
    }
    Ok(())
}

fn hex(digest: &RequestDigest) -> String {
    digest.0.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn malformed(what: &str) -> RedisSessionError {
    RedisSessionError::Decode(format!("ledger script answered {what}"))
}

/// A stored reply as the scripts keep it: digest (40 hex digits), type
/// byte, bytes after the request id.
fn stored_reply(value: &Value) -> Result<StoredReply, RedisSessionError> {
    let Value::BulkString(bytes) = value else {
        return Err(malformed("a reply that is not a string"));
    };
    let kind = bytes
        .get(40)
        .copied()
        .and_then(MessageType::from_byte)
        .ok_or_else(|| malformed("a reply of no known type"))?;
    StoredReply::new(kind, Bytes::copy_from_slice(&bytes[41..]))
        .ok_or_else(|| malformed("a stored message that is not a reply"))
}

fn int(value: Option<&Value>) -> Result<i64, RedisSessionError> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::BulkString(text)) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| malformed("a number that is not one")),
        _ => Err(malformed("no number")),
    }
}

/// `seq` 0 and an `ack` not below `seq` are malformed keys.
fn is_bad_key(request: &LedgerRequest) -> bool {
    request.seq == 0 || request.ack >= request.seq
}

impl Inner {
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

    fn bounds(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation
            .arg(millis(self.limits.max_age))
            .arg(millis(self.limits.lease_ttl))
            .arg(millis(self.limits.idle_timeout));
    }

    fn not_kept_key(&self, scope: &LedgerScope, seq: u64) -> String {
        let (len, instance, session) = (scope.instance.len(), &scope.instance, &scope.session);
        format!(
            "{}ledger:n:{seq}:{len}:{instance}:{session}",
            self.config.prefix()
        )
    }

    async fn epoch(&self) -> Result<u64, RedisSessionError> {
        let mut invocation = EPOCH.prepare_invoke();
        invocation
            .key(&self.epoch_key)
            .arg(random_nonzero().to_string());
        let mut cmd = self.cmd.clone();
        let epoch: String = self
            .bounded("ledger_epoch", invocation.invoke_async(&mut cmd))
            .await?;
        epoch
            .parse()
            .ok()
            .filter(|&epoch| epoch != 0)
            .ok_or_else(|| RedisSessionError::Decode("a ledger epoch that is not a number".into()))
    }

    /// The decision script; the answer's code and value.
    async fn decide(
        self: &Arc<Self>,
        scope: &LedgerScope,
        request: &LedgerRequest,
        lookup: bool,
    ) -> Result<Decision, RedisSessionError> {
        let (scope_key, index_key) = scope_keys(self.config.prefix(), scope)?;
        let prefix = self.config.prefix();
        let mut invocation = BEGIN.prepare_invoke();
        invocation
            .key(&scope_key)
            .key(&index_key)
            .key(&self.epoch_key)
            .key(format!("{prefix}ledger:s:{}", scope.session))
            .key(&self.tokens_key)
            .arg(random_nonzero().to_string())
            .arg(request.epoch.to_string())
            .arg(request.seq.to_string())
            .arg(request.ack.to_string())
            .arg(hex(&request.digest))
            .arg(if lookup { "l" } else { "b" })
            .arg(&scope.instance)
            .arg(&self.wake_channel)
            .arg(&self.incarnation);
        self.bounds(&mut invocation);
        // Registered before the script, so that a run ending just after it
        // answered "running" finds this retry to wake.
        let (woken, registration) = self
            .waiters
            .register((scope_key.clone(), request.seq.to_string()));
        let mut cmd = self.cmd.clone();
        let value: Value = self
            .bounded(
                if lookup {
                    "ledger_lookup"
                } else {
                    "ledger_begin"
                },
                invocation.invoke_async(&mut cmd),
            )
            .await?;
        let Value::Array(items) = value else {
            return Err(malformed("a decision that is not an array"));
        };
        Ok(match int(items.first())? {
            1 => {
                let token =
                    u64::try_from(int(items.get(1))?).map_err(|_| malformed("a negative token"))?;
                let guard = LeaseGuard {
                    inner: Some(Arc::clone(self)),
                    scope_key,
                    index_key,
                    seq: request.seq,
                    token,
                };
                Decision::Run(Lease::new(scope.clone(), request.seq, token).with_guard(guard))
            }
            2 => Decision::Stored(stored_reply(
                items.get(1).ok_or_else(|| malformed("no reply"))?,
            )?),
            3 => {
                let left = u64::try_from(int(items.get(1))?).unwrap_or(0);
                Decision::Running(self.wait(
                    WaitFor {
                        not_kept: self.not_kept_key(scope, request.seq),
                        scope_key,
                        index_key,
                        seq: request.seq,
                    },
                    (woken, registration),
                    Duration::from_millis(left),
                ))
            }
            4 => Decision::Unknown,
            5 => Decision::KeyReused,
            6 => Decision::NotRun,
            7 => Decision::Unretained,
            _ => return Err(malformed("an unknown decision")),
        })
    }

    /// The outcome of a run under way for a retry: woken by the run's
    /// end, polling meanwhile, unknown once the lease passed without a
    /// reply (or Redis stayed unreachable past it).
    fn wait(
        self: &Arc<Self>,
        what: WaitFor,
        (mut woken, registration): (watch::Receiver<u64>, Registration),
        left: Duration,
    ) -> RunWait {
        let inner = Arc::clone(self);
        RunWait::new(async move {
            let _registration = registration;
            // A little after the lease's end by Redis' clock, in ours.
            let margin = Duration::from_millis(20);
            let mut lease_end = Instant::now() + left + margin;
            loop {
                let next = (Instant::now() + inner.config.poll_interval()).min(lease_end);
                // The sender stays in the map while this is registered.
                tokio::select! {
                    _ = woken.changed() => {}
                    () = tokio::time::sleep_until(next) => {}
                }
                match inner.watch(&what).await {
                    Ok(Watch::Reply(reply)) => return RunOutcome::Reply(reply),
                    Ok(Watch::Unknown) => return RunOutcome::Unknown,
                    Ok(Watch::Running(left)) => lease_end = Instant::now() + left + margin,
                    Err(err) => {
                        if Instant::now() >= lease_end {
                            tracing::warn!(error = %err, "ledger: a retry's wait for a run ends unknown: Redis unreachable past the lease");
                            return RunOutcome::Unknown;
                        }
                    }
                }
            }
        })
    }

    async fn watch(&self, what: &WaitFor) -> Result<Watch, RedisSessionError> {
        let mut invocation = WATCH.prepare_invoke();
        invocation
            .key(&what.scope_key)
            .key(&what.index_key)
            .key(&what.not_kept)
            .arg(what.seq.to_string())
            .arg(&self.wake_channel);
        self.bounds(&mut invocation);
        let mut cmd = self.cmd.clone();
        let value: Value = self
            .bounded("ledger_watch", invocation.invoke_async(&mut cmd))
            .await?;
        let Value::Array(items) = value else {
            return Err(malformed("a watch that is not an array"));
        };
        Ok(match int(items.first())? {
            2 => Watch::Reply(stored_reply(
                items.get(1).ok_or_else(|| malformed("no reply"))?,
            )?),
            3 => Watch::Running(Duration::from_millis(
                u64::try_from(int(items.get(1))?).unwrap_or(0),
            )),
            4 => Watch::Unknown,
            _ => return Err(malformed("an unknown watch answer")),
        })
    }
}

enum Decision {
    Run(Lease),
    Stored(StoredReply),
    Running(RunWait),
    Unknown,
    KeyReused,
    NotRun,
    Unretained,
}

/// The run a retry waits for: its keys and seq.
struct WaitFor {
    scope_key: String,
    index_key: String,
    not_kept: String,
    seq: u64,
}

impl Inner {
    async fn give_up(
        &self,
        scope_key: &str,
        index_key: &str,
        seq: u64,
        token: u64,
    ) -> Result<(), RedisSessionError> {
        let mut invocation = GIVE_UP.prepare_invoke();
        invocation
            .key(scope_key)
            .key(index_key)
            .arg(seq.to_string())
            .arg(token.to_string())
            .arg(&self.incarnation);
        self.bounds(&mut invocation);
        let mut cmd = self.cmd.clone();
        self.bounded("ledger_give_up", invocation.invoke_async::<i64>(&mut cmd))
            .await
            .map(drop)
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, RedisSessionError> {
        let (scope_key, index_key) = scope_keys(self.config.prefix(), lease.scope())?;
        let mut invocation = RENEW.prepare_invoke();
        invocation
            .key(scope_key)
            .key(index_key)
            .arg(lease.seq().to_string())
            .arg(lease.token().to_string())
            .arg(&self.incarnation);
        self.bounds(&mut invocation);
        let mut cmd = self.cmd.clone();
        let held: i64 = self
            .bounded("ledger_renew", invocation.invoke_async(&mut cmd))
            .await?;
        Ok(held == 1)
    }

    async fn finish(
        &self,
        mut lease: Lease,
        reply: &StoredReply,
    ) -> Result<Finish, RedisSessionError> {
        if let Some(mut guard) = lease.take_guard::<LeaseGuard>() {
            // Finished: nothing to give up, whatever Redis answers (if it
            // does not, the marker lapses and waiters learn "unknown").
            guard.inner = None;
        }
        let scope = lease.scope();
        let (scope_key, index_key) = scope_keys(self.config.prefix(), scope)?;
        let mut stored = Vec::with_capacity(1 + reply.body().len());
        stored.push(reply.kind().byte());
        stored.extend_from_slice(reply.body());
        let mut invocation = FINISH.prepare_invoke();
        invocation
            .key(scope_key)
            .key(index_key)
            .key(self.not_kept_key(scope, lease.seq()))
            .arg(lease.seq().to_string())
            .arg(lease.token().to_string())
            .arg(&self.incarnation)
            .arg(stored)
            .arg(self.limits.max_replies)
            .arg(self.limits.max_bytes);
        self.bounds(&mut invocation);
        let mut cmd = self.cmd.clone();
        let outcome: i64 = self
            .bounded("ledger_finish", invocation.invoke_async(&mut cmd))
            .await?;
        match outcome {
            1 => Ok(Finish::Stored),
            2 => Ok(Finish::NotKept),
            3 => Ok(Finish::LeaseLost),
            _ => Err(malformed("an unknown finish")),
        }
    }

    async fn acknowledge(&self, scope: &LedgerScope, ack: u64) -> Result<(), RedisSessionError> {
        let (scope_key, index_key) = scope_keys(self.config.prefix(), scope)?;
        let mut invocation = ACKNOWLEDGE.prepare_invoke();
        invocation
            .key(scope_key)
            .key(index_key)
            .arg(ack.to_string());
        self.bounds(&mut invocation);
        let mut cmd = self.cmd.clone();
        self.bounded(
            "ledger_acknowledge",
            invocation.invoke_async::<i64>(&mut cmd),
        )
        .await
        .map(drop)
    }

    async fn session_closed(&self, session: &str) -> Result<(), RedisSessionError> {
        if !is_valid_key(session) {
            // Nothing can have been kept under it.
            return Ok(());
        }
        let index = format!("{}ledger:s:{session}", self.config.prefix());
        let mut cmd = self.cmd.clone();
        let instances: Vec<String> = self
            .bounded(
                "ledger_close",
                redis::cmd("SMEMBERS").arg(&index).query_async(&mut cmd),
            )
            .await?;
        let mut invocation = CLOSE.prepare_invoke();
        invocation.key(&index);
        for instance in instances {
            let scope = LedgerScope::new(session, instance);
            // An instance id this ledger never stored is not in the set.
            if let Ok((scope_key, index_key)) = scope_keys(self.config.prefix(), &scope) {
                invocation.key(scope_key).key(index_key);
            }
        }
        invocation.arg(millis(self.limits.max_age + self.limits.lease_ttl));
        self.bounded("ledger_close", invocation.invoke_async::<i64>(&mut cmd))
            .await
            .map(drop)
    }
}

fn ledger_error(what: &str, scope: &LedgerScope, err: RedisSessionError) -> LedgerError {
    LedgerError::new(
        format!(
            "{what} (session {}, instance {}) in Redis",
            redacted(&scope.session),
            scope.instance
        ),
        err,
    )
}

impl RequestLedger for RedisLedger {
    async fn epoch(&self) -> Result<u64, LedgerError> {
        self.inner
            .epoch()
            .await
            .map_err(|err| LedgerError::new("reading the ledger epoch from Redis", err))
    }

    async fn begin(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<Begin, LedgerError> {
        if is_bad_key(request) {
            return Ok(Begin::BadKey);
        }
        let decision = self
            .inner
            .decide(scope, request, false)
            .await
            .map_err(|err| ledger_error("deciding a keyed request", scope, err))?;
        Ok(match decision {
            Decision::Run(lease) => Begin::Run(lease),
            Decision::Stored(reply) => Begin::Stored(reply),
            Decision::Running(wait) => Begin::Running(wait),
            Decision::KeyReused => Begin::KeyReused,
            Decision::Unknown | Decision::NotRun | Decision::Unretained => Begin::Unknown,
        })
    }

    async fn lookup(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<Lookup, LedgerError> {
        if is_bad_key(request) {
            return Ok(Lookup::BadKey);
        }
        let decision = self
            .inner
            .decide(scope, request, true)
            .await
            .map_err(|err| ledger_error("looking up a keyed request", scope, err))?;
        Ok(match decision {
            Decision::Stored(reply) => Lookup::Stored(reply),
            Decision::Running(wait) => Lookup::Running(wait),
            Decision::KeyReused => Lookup::KeyReused,
            Decision::NotRun => Lookup::NotRun,
            Decision::Unretained => Lookup::Unretained,
            Decision::Unknown => Lookup::Unknown,
            Decision::Run(_) => return Err(LedgerError::msg("a lookup was told to run")),
        })
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, LedgerError> {
        self.inner
            .renew(lease)
            .await
            .map_err(|err| ledger_error("renewing a lease", lease.scope(), err))
    }

    async fn finish(&self, lease: Lease, reply: StoredReply) -> Result<Finish, LedgerError> {
        let scope = lease.scope().clone();
        self.inner
            .finish(lease, &reply)
            .await
            .map_err(|err| ledger_error("storing a reply", &scope, err))
    }

    async fn acknowledge(&self, scope: &LedgerScope, ack: u64) -> Result<(), LedgerError> {
        self.inner
            .acknowledge(scope, ack)
            .await
            .map_err(|err| ledger_error("acknowledging replies", scope, err))
    }

    async fn session_closed(&self, session: &str) -> Result<(), LedgerError> {
        self.inner.session_closed(session).await.map_err(|err| {
            LedgerError::new(
                format!(
                    "closing the ledger of session {} in Redis",
                    redacted(session)
                ),
                err,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_are_unambiguous_and_checked() {
        let a = scope_keys("p:", &LedgerScope::new("b:c", "a")).unwrap();
        let b = scope_keys("p:", &LedgerScope::new("c", "a:b")).unwrap();
        assert_eq!(a.0, "p:ledger:h:1:a:b:c");
        assert_eq!(b.0, "p:ledger:h:3:a:b:c");
        assert_ne!(a, b);
        for bad in [
            LedgerScope::new("", "instance"),
            LedgerScope::new("s\n", "instance"),
            LedgerScope::new("s", ""),
            LedgerScope::new("s", "i".repeat(65)),
            LedgerScope::new("s", "é"),
        ] {
            assert!(matches!(
                scope_keys("p:", &bad),
                Err(RedisSessionError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn digests_are_hex() {
        let digest = RequestDigest([0xab; 20]);
        assert_eq!(hex(&digest), "ab".repeat(20));
    }

    #[test]
    fn stored_replies_parse() {
        let mut value = "0".repeat(40).into_bytes();
        value.push(191);
        value.extend_from_slice(b"ok");
        let reply = stored_reply(&Value::BulkString(value)).unwrap();
        assert_eq!(
            (reply.kind(), &reply.body()[..]),
            (MessageType::ReplyBinary, &b"ok"[..])
        );
        assert!(stored_reply(&Value::BulkString(vec![b'0'; 40])).is_err());
        let mut signal = vec![b'0'; 40];
        signal.push(63);
        assert!(stored_reply(&Value::BulkString(signal)).is_err());
    }
}
