use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, IntoConnectionInfo as _, ProtocolVersion, RedisResult};
use webwire_core::session::{Session, SessionLookup, SessionManager, SessionStoreError};

use crate::config::RedisSessionConfig;
use crate::error::RedisSessionError;
use crate::key::{is_valid_key, redacted, VALID_KEY};
use crate::stored::{
    format_info, format_time, parse_info, parse_time, CREATION, INFO, LAST_LOOKUP,
};

/// The lookup, in one round trip: reads the creation time and info, and, if
/// the session exists, sets its last lookup time (ARGV[1]) and restarts its
/// TTL (ARGV[2] ms, 0 = none). Returns nil when there is no session. Being
/// atomic, it cannot bring back a session deleted meanwhile.
static LOOKUP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'c', 'i')
if not v[1] then return false end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return v
",
    )
});

/// A [`SessionManager`] keeping sessions in Redis, so that every server
/// connected to the same Redis can restore them.
///
/// - **One key per session**: the session with key `k` is a hash under the
///   Redis key `{prefix}{k}` (default prefix `webwire:session:`) with the
///   fields `c` (creation) and `l` (last lookup), RFC 3339 in UTC with nine
///   fractional digits, and `i` (the info as JSON text; absent without
///   info).
/// - **Keys are checked before they reach Redis**: a key that is not 1 to
///   255 bytes of printable ASCII (32..=126) is refused by
///   [`on_session_created`](SessionManager::on_session_created), not found
///   by [`on_session_lookup`](SessionManager::on_session_lookup) and
///   ignored by [`on_session_closed`](SessionManager::on_session_closed).
///   A key is only ever the suffix of the prefix in a key argument, never a
///   pattern, so no key can read or write outside the prefix.
/// - **Sliding TTL** (optional, [`RedisSessionConfig::with_ttl`]): a lookup
///   sets the last lookup time and restarts the TTL in one round trip (a
///   Lua script); a session not looked up within the TTL is gone.
/// - **Close** deletes the key.
/// - **Bounded calls**: every Redis call is wrapped in the
///   [operation timeout](RedisSessionConfig::with_op_timeout) (default
///   2 s). While Redis is unreachable each call fails after that long with
///   a [`SessionStoreError`] (the server answers a restore with an internal
///   error); the connection manager keeps reconnecting in the background,
///   100 ms to 1 s apart and without limit, and the same manager works
///   again once Redis is back.
///
/// Cheap to clone: clones share one multiplexed connection.
///
/// Needs Redis 6 or later (or Valkey): the connection speaks RESP3.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
/// use webwire_core::session::{Session, SessionManager};
/// use webwire_server::{MessageRouter, Server};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = RedisSessionConfig::new().with_ttl(Duration::from_secs(30 * 24 * 3600));
/// let manager = RedisSessionManager::connect("redis://127.0.0.1:6379/", config).await?;
///
/// manager.on_session_created(&Session::new("abc123", SystemTime::now(), None)).await?;
/// let found = manager.on_session_lookup("abc123").await?.expect("stored");
/// assert!(found.info.is_none());
/// manager.on_session_closed("abc123").await?;
///
/// // Hand it to the server as its session manager.
/// let server = Server::builder(MessageRouter::new())
///     .session_manager(Arc::new(manager))
///     .build()?;
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSessionManager {
    con: ConnectionManager,
    config: Arc<RedisSessionConfig>,
    /// The TTL in milliseconds, 0 without a TTL.
    ttl_ms: i64,
}

impl fmt::Debug for RedisSessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionManager")
            .field("prefix", &self.config.prefix())
            .field("ttl", &self.config.ttl())
            .field("op_timeout", &self.config.op_timeout())
            .finish_non_exhaustive()
    }
}

impl RedisSessionManager {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/`,
    /// `redis://:password@host:6379/2`, `redis+unix:///run/redis.sock`) and
    /// waits for the first connection, at most the operation timeout.
    ///
    /// RESP3 is used whether or not the URL says `protocol=resp3`; a URL
    /// asking for RESP2 is refused. Fails with
    /// [`BadUrl`](RedisSessionError::BadUrl),
    /// [`Resp3Required`](RedisSessionError::Resp3Required),
    /// [`Config`](RedisSessionError::Config), or, when Redis cannot be
    /// reached in time, [`Timeout`](RedisSessionError::Timeout) or
    /// [`Redis`](RedisSessionError::Redis). To start while Redis may be
    /// down, use [`connect_lazy`](Self::connect_lazy).
    ///
    /// ```no_run
    /// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), webwire_redis::RedisSessionError> {
    /// let manager = RedisSessionManager::connect("redis://127.0.0.1:6379/", RedisSessionConfig::new()).await?;
    /// println!("{manager:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str, config: RedisSessionConfig) -> Result<Self, RedisSessionError> {
        let ttl_ms = config.validate()?;
        let client = resp3_client(url)?;
        let op_timeout = config.op_timeout();
        let con = tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config.connection_manager_config()),
        )
        .await
        .map_err(|_| RedisSessionError::Timeout(op_timeout))??;
        Ok(Self::with_connection(con, config, ttl_ms))
    }

    /// Like [`connect`](Self::connect), but returns at once without
    /// connecting: the first call connects. A server can start while Redis
    /// is down; its session calls fail (after the operation timeout) until
    /// Redis is reachable.
    ///
    /// Needs a Tokio runtime. Fails only for a bad URL or configuration.
    ///
    /// ```
    /// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webwire_redis::RedisSessionError> {
    /// // Nothing is contacted yet.
    /// let manager = RedisSessionManager::connect_lazy("redis://127.0.0.1:6379/", RedisSessionConfig::new())?;
    /// assert_eq!(manager.config().prefix(), "webwire:session:");
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_lazy(url: &str, config: RedisSessionConfig) -> Result<Self, RedisSessionError> {
        let ttl_ms = config.validate()?;
        let client = resp3_client(url)?;
        let con =
            ConnectionManager::new_lazy_with_config(client, config.connection_manager_config())?;
        Ok(Self::with_connection(con, config, ttl_ms))
    }

    /// A manager using a connection manager made by the application (to
    /// share it, or for settings this crate does not offer).
    ///
    /// The calls are still bounded by the operation timeout, but whether and
    /// how the connection comes back after an outage is up to `con`'s
    /// settings: the default `ConnectionManagerConfig` gives up reconnecting
    /// after about 6 attempts until the next call. Fails only for a bad
    /// configuration.
    ///
    /// ```no_run
    /// use webwire_redis::redis::aio::ConnectionManager;
    /// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = webwire_redis::redis::Client::open("redis://127.0.0.1:6379/?protocol=resp3")?;
    /// let con = ConnectionManager::new(client).await?;
    /// let manager = RedisSessionManager::from_connection_manager(con, RedisSessionConfig::new())?;
    /// # let _ = manager;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_connection_manager(
        con: ConnectionManager,
        config: RedisSessionConfig,
    ) -> Result<Self, RedisSessionError> {
        let ttl_ms = config.validate()?;
        Ok(Self::with_connection(con, config, ttl_ms))
    }

    fn with_connection(con: ConnectionManager, config: RedisSessionConfig, ttl_ms: i64) -> Self {
        Self {
            con,
            config: Arc::new(config),
            ttl_ms,
        }
    }

    /// The configuration.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webwire_redis::RedisSessionError> {
    /// let config = RedisSessionConfig::new().with_ttl(Duration::from_secs(60));
    /// let manager = RedisSessionManager::connect_lazy("redis://127.0.0.1/", config.clone())?;
    /// assert_eq!(manager.config(), &config);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> &RedisSessionConfig {
        &self.config
    }

    /// The Redis key holding the session with this key: the prefix followed
    /// by the key; `None` for a key this manager refuses (not 1 to 255 bytes
    /// of printable ASCII).
    ///
    /// ```
    /// use webwire_redis::{RedisSessionConfig, RedisSessionManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webwire_redis::RedisSessionError> {
    /// let manager = RedisSessionManager::connect_lazy("redis://127.0.0.1/", RedisSessionConfig::new())?;
    /// assert_eq!(manager.redis_key("abc").as_deref(), Some("webwire:session:abc"));
    /// assert_eq!(manager.redis_key("a\nb"), None);
    /// assert_eq!(manager.redis_key(""), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn redis_key(&self, key: &str) -> Option<String> {
        is_valid_key(key).then(|| format!("{}{key}", self.config.prefix()))
    }

    /// Runs one Redis call within the operation timeout.
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, RedisSessionError> {
        let op_timeout = self.config.op_timeout();
        match crate::metrics::timed(op, tokio::time::timeout(op_timeout, call)).await {
            Ok(result) => result.map_err(RedisSessionError::Redis),
            Err(_) => Err(RedisSessionError::Timeout(op_timeout)),
        }
    }

    async fn store(&self, session: &Session) -> Result<(), RedisSessionError> {
        let redis_key = self
            .redis_key(&session.key)
            .ok_or(RedisSessionError::InvalidKey)?;
        let mut fields = vec![
            (CREATION, format_time(session.creation)?),
            (LAST_LOOKUP, format_time(session.last_lookup)?),
        ];
        if let Some(info) = &session.info {
            fields.push((INFO, format_info(info)?));
        }
        // Replaces any earlier session under this key as a whole, TTL included.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&redis_key)
            .ignore()
            .hset_multiple(&redis_key, &fields)
            .ignore();
        if self.ttl_ms > 0 {
            pipe.pexpire(&redis_key, self.ttl_ms).ignore();
        }
        let mut con = self.con.clone();
        self.bounded("store", pipe.exec_async(&mut con)).await
    }

    async fn lookup(&self, key: &str) -> Result<Option<SessionLookup>, RedisSessionError> {
        let Some(redis_key) = self.redis_key(key) else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let now_text = format_time(now)?;
        let mut con = self.con.clone();
        let mut invocation = LOOKUP.key(&redis_key);
        invocation.arg(&now_text).arg(self.ttl_ms);
        let found: Option<(String, Option<String>)> = self
            .bounded("lookup", invocation.invoke_async(&mut con))
            .await?;
        let Some((creation, info)) = found else {
            return Ok(None);
        };
        Ok(Some(SessionLookup {
            creation: parse_time(&creation, CREATION)?,
            last_lookup: now,
            info: info.as_deref().map(parse_info).transpose()?,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), RedisSessionError> {
        let Some(redis_key) = self.redis_key(key) else {
            // Nothing can have been stored under this key.
            return Ok(());
        };
        let mut con = self.con.clone();
        self.bounded("delete", con.del::<_, usize>(&redis_key))
            .await?;
        Ok(())
    }
}

impl SessionManager for RedisSessionManager {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.store(session).await.map_err(|err| match err {
            RedisSessionError::InvalidKey => SessionStoreError::new(
                format!("cannot store the session in Redis: the key must be {VALID_KEY}"),
                err,
            ),
            err => SessionStoreError::new(
                format!("storing the session {} in Redis", redacted(&session.key)),
                err,
            ),
        })
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        self.lookup(key).await.map_err(|err| {
            SessionStoreError::new(
                format!("looking up the session {} in Redis", redacted(key)),
                err,
            )
        })
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.delete(key).await.map_err(|err| {
            SessionStoreError::new(
                format!("deleting the session {} from Redis", redacted(key)),
                err,
            )
        })
    }
}

/// A client for `url` speaking RESP3.
pub(crate) fn resp3_client(url: &str) -> Result<redis::Client, RedisSessionError> {
    let parsed = redis::parse_redis_url(url).ok_or_else(|| {
        RedisSessionError::BadUrl(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "not a redis://, rediss://, valkey:// or unix URL",
        )))
    })?;
    let asks_resp2 = parsed
        .query_pairs()
        .any(|(name, value)| name == "protocol" && (value == "2" || value == "resp2"));
    if asks_resp2 {
        return Err(RedisSessionError::Resp3Required);
    }
    let info = parsed
        .into_connection_info()
        .map_err(RedisSessionError::BadUrl)?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(RedisSessionError::BadUrl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_resp3() {
        for url in [
            "redis://127.0.0.1:6379/",
            "redis://127.0.0.1",
            "redis://:secret@127.0.0.1:6379/2",
            "redis://127.0.0.1:6379/?protocol=resp3",
            "redis://127.0.0.1:6379/?protocol=3",
            "redis+unix:///run/redis.sock",
            "valkey://127.0.0.1:6379/",
        ] {
            let client = resp3_client(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                client.get_connection_info().redis_settings().protocol(),
                ProtocolVersion::RESP3,
                "{url}"
            );
        }
        let client = resp3_client("redis://:secret@127.0.0.1:6379/2").unwrap();
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(settings.password(), Some("secret"));
        assert_eq!(settings.db(), 2);
    }

    #[test]
    fn resp2_is_refused() {
        for url in [
            "redis://127.0.0.1:6379/?protocol=resp2",
            "redis://127.0.0.1:6379/?protocol=2",
        ] {
            assert!(
                matches!(resp3_client(url), Err(RedisSessionError::Resp3Required)),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_urls_do_not_repeat_the_url() {
        for url in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1/",
            "redis://:hunter2@/",
            "redis://127.0.0.1:6379/?protocol=resp9&x=hunter2",
            "redis://127.0.0.1:6379/notanumber",
        ] {
            match resp3_client(url) {
                Err(err @ RedisSessionError::BadUrl(_)) => {
                    let chain = format!("{err} {:?}", std::error::Error::source(&err));
                    assert!(!chain.contains("hunter2"), "{url}: {chain}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bad_configuration_is_refused_before_connecting() {
        let config = RedisSessionConfig::new().with_prefix("");
        assert!(matches!(
            RedisSessionManager::connect_lazy("redis://127.0.0.1/", config.clone()),
            Err(RedisSessionError::Config(_))
        ));
        assert!(matches!(
            RedisSessionManager::connect("redis://127.0.0.1/", config).await,
            Err(RedisSessionError::Config(_))
        ));
    }

    #[tokio::test]
    async fn invalid_keys_never_reach_redis() {
        // Nothing listens on port 1: a call that reached Redis would fail.
        let m = RedisSessionManager::connect_lazy(
            "redis://127.0.0.1:1/",
            RedisSessionConfig::new().with_op_timeout(std::time::Duration::from_millis(200)),
        )
        .unwrap();
        for key in ["", "a\nb", "\u{7f}", "é", &"k".repeat(256)] {
            assert_eq!(m.on_session_lookup(key).await.unwrap(), None, "{key:?}");
            m.on_session_closed(key).await.unwrap();
            let err = m
                .on_session_created(&Session::new(key, SystemTime::now(), None))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("printable ASCII"), "{err}");
            let source = std::error::Error::source(&err).unwrap();
            assert!(source.downcast_ref::<RedisSessionError>().is_some());
        }
        // A valid key does reach (the missing) Redis and fails in time.
        let err = m.on_session_lookup("valid").await.unwrap_err();
        assert!(err.to_string().contains("looking up"), "{err}");
    }

    #[test]
    fn debug_shows_no_connection_details() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let m = RedisSessionManager::connect_lazy(
            "redis://:hunter2@127.0.0.1/",
            RedisSessionConfig::new(),
        )
        .unwrap();
        let debug = format!("{m:?}");
        assert!(debug.contains("webwire:session:"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
