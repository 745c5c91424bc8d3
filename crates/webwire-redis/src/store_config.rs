use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use crate::error::RedisSessionError;
use crate::shared_config::{
    check_op_timeout, check_prefix, connection_manager_config, DEFAULT_OP_TIMEOUT,
};

/// How the webwire 2.1 stores ([`RedisStreamStore`](crate::RedisStreamStore)
/// and [`RedisLedger`](crate::RedisLedger)) use Redis: the prefix of their
/// keys and channels, the bound on each Redis call, how long a stream with
/// nothing retained keeps its epoch and end, and how often a retry waiting
/// for a run on another node looks at Redis when no notice comes.
///
/// Every node of one cluster uses the same prefix (the same as its
/// [`RedisClusterConfig`](crate::RedisClusterConfig) prefix, usually).
///
/// ```
/// use std::time::Duration;
/// use webwire_redis::RedisStoreConfig;
///
/// let config = RedisStoreConfig::new()
///     .with_prefix("chat:")
///     .with_op_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix(), "chat:");
/// assert_eq!(config.op_timeout(), Duration::from_millis(500));
/// assert_eq!(RedisStoreConfig::default().stream_idle_timeout(), Duration::from_secs(24 * 3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    prefix: String,
    op_timeout: Duration,
    stream_idle_timeout: Duration,
    poll_interval: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            prefix: "webwire:".into(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            stream_idle_timeout: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl RedisStoreConfig {
    /// The defaults: prefix `webwire:`, 2 s per Redis call, streams kept
    /// 24 h after their last use when nothing is retained, retries polling
    /// every second.
    ///
    /// ```
    /// use webwire_redis::RedisStoreConfig;
    ///
    /// assert_eq!(RedisStoreConfig::new(), RedisStoreConfig::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the prefix of the keys and channels (1 to 1024 bytes of
    /// printable ASCII). The stores use `{prefix}stream:…` and
    /// `{prefix}ledger:…`, which no other part of this crate uses.
    ///
    /// ```
    /// assert_eq!(webwire_redis::RedisStoreConfig::new().with_prefix("x:").prefix(), "x:");
    /// ```
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the bound on each Redis call (not zero). A call that takes
    /// longer fails: a history signal is then not sent, a keyed request is
    /// answered with an internal error and not run.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisStoreConfig::new().with_op_timeout(Duration::from_millis(300));
    /// assert_eq!(c.op_timeout(), Duration::from_millis(300));
    /// ```
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets how long a stream keeps its epoch and end after its last use
    /// (at least 1 s; never less than its history's age bound). A stream
    /// made again later gets a new epoch, which a returning client sees as
    /// a loss of unknown extent.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisStoreConfig::new().with_stream_idle_timeout(Duration::from_secs(3600));
    /// assert_eq!(c.stream_idle_timeout(), Duration::from_secs(3600));
    /// ```
    pub fn with_stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.stream_idle_timeout = timeout;
        self
    }

    /// Sets how often a retry waiting for a run under way looks at Redis
    /// when no notice arrives (a notice normally wakes it at once; polling
    /// covers a notice lost in an outage). At least 10 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisStoreConfig::new().with_poll_interval(Duration::from_millis(250));
    /// assert_eq!(c.poll_interval(), Duration::from_millis(250));
    /// ```
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The prefix.
    ///
    /// ```
    /// assert_eq!(webwire_redis::RedisStoreConfig::new().prefix(), "webwire:");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bound on each Redis call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisStoreConfig::new().op_timeout(), Duration::from_secs(2));
    /// ```
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// How long a stream with nothing retained keeps its epoch and end.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisStoreConfig::new().stream_idle_timeout(), Duration::from_secs(86400));
    /// ```
    pub fn stream_idle_timeout(&self) -> Duration {
        self.stream_idle_timeout
    }

    /// How often a waiting retry polls.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisStoreConfig::new().poll_interval(), Duration::from_secs(1));
    /// ```
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    pub(crate) fn validate(&self) -> Result<(), RedisSessionError> {
        let bad = |what: &str| Err(RedisSessionError::Config(what.into()));
        check_prefix(&self.prefix)?;
        check_op_timeout(self.op_timeout)?;
        if self.stream_idle_timeout < Duration::from_secs(1)
            || self.stream_idle_timeout > Duration::from_secs(1 << 40)
        {
            return bad("the stream idle timeout must be at least 1 s");
        }
        if self.poll_interval < Duration::from_millis(10) {
            return bad("the poll interval must be at least 10 ms");
        }
        Ok(())
    }

    /// The connection manager's settings (see [`connection_manager_config`]).
    pub(crate) fn connection_manager_config(&self) -> ConnectionManagerConfig {
        connection_manager_config(self.op_timeout)
    }
}

/// A duration in whole milliseconds for Redis, at least 1 and at most
/// 2^50 (Redis refuses expiries that overflow its clock).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 1 << 50)
}

/// A random number, never 0 (0 means "none" on the wire): epochs and node
/// incarnations. If the system's generator fails, std's randomly keyed
/// hasher of the time and a counter serves (these need to differ, not to
/// be secret).
pub(crate) fn random_nonzero() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = getrandom::u64().unwrap_or_else(|_| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                hasher.write_u128(since.as_nanos());
            }
            hasher.finish()
        });
        if n != 0 {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(RedisStoreConfig::new().validate().is_ok());
        for bad in [
            RedisStoreConfig::new().with_prefix(""),
            RedisStoreConfig::new().with_op_timeout(Duration::ZERO),
            RedisStoreConfig::new().with_stream_idle_timeout(Duration::from_millis(999)),
            RedisStoreConfig::new().with_poll_interval(Duration::from_millis(9)),
        ] {
            assert!(
                matches!(bad.validate(), Err(RedisSessionError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn millis_are_clamped() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), 1 << 50);
    }

    #[test]
    fn random_is_never_zero_and_varies() {
        let a = random_nonzero();
        assert_ne!(a, 0);
        assert_ne!(a, random_nonzero());
    }
}
