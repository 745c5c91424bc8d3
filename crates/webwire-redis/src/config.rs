use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use crate::error::RedisSessionError;
use crate::shared_config::{
    check_op_timeout, check_prefix, connection_manager_config, DEFAULT_OP_TIMEOUT,
};

/// The default prefix of the Redis keys holding sessions.
pub(crate) const DEFAULT_PREFIX: &str = "webwire:session:";

/// How a [`RedisSessionManager`](crate::RedisSessionManager) stores
/// sessions: the key prefix, the optional sliding TTL and the bound on each
/// Redis call.
///
/// A builder; the values are checked when the manager is built.
///
/// ```
/// use std::time::Duration;
/// use webwire_redis::RedisSessionConfig;
///
/// let config = RedisSessionConfig::new()
///     .with_prefix("myapp:session:")
///     .with_ttl(Duration::from_secs(7 * 24 * 3600))
///     .with_op_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix(), "myapp:session:");
/// assert_eq!(config.ttl(), Some(Duration::from_secs(7 * 24 * 3600)));
/// assert_eq!(config.op_timeout(), Duration::from_millis(500));
///
/// let defaults = RedisSessionConfig::default();
/// assert_eq!(defaults.prefix(), "webwire:session:");
/// assert_eq!(defaults.ttl(), None);
/// assert_eq!(defaults.op_timeout(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSessionConfig {
    prefix: String,
    ttl: Option<Duration>,
    op_timeout: Duration,
}

impl Default for RedisSessionConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ttl: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }
}

impl RedisSessionConfig {
    /// The defaults: prefix `webwire:session:`, no TTL, 2 s per Redis call.
    ///
    /// ```
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// assert_eq!(RedisSessionConfig::new(), RedisSessionConfig::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the prefix: the session with key `k` is stored under the Redis
    /// key `{prefix}{k}`. 1 to 1024 bytes of printable ASCII.
    ///
    /// Give each application (or each server sharing one Redis but not its
    /// sessions) its own prefix, and make sure no prefix is the beginning of
    /// another one: with prefixes `app:` and `app:admin:`, the session
    /// `admin:x` of the first would be the session `x` of the second.
    ///
    /// ```
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// assert_eq!(RedisSessionConfig::new().with_prefix("chat:s:").prefix(), "chat:s:");
    /// ```
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets a sliding TTL: a session not looked up (restored) for this long
    /// expires and is removed by Redis. Every lookup starts the TTL again.
    /// Redis counts it in whole milliseconds; at least 1 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// let day = Duration::from_secs(24 * 3600);
    /// assert_eq!(RedisSessionConfig::new().with_ttl(day).ttl(), Some(day));
    /// ```
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Removes the TTL: sessions stay until they are closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// let config = RedisSessionConfig::new().with_ttl(Duration::from_secs(60)).without_ttl();
    /// assert_eq!(config.ttl(), None);
    /// ```
    pub fn without_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// Sets the bound on each Redis call (and on the first connection of
    /// [`connect`](crate::RedisSessionManager::connect)). A call that takes
    /// longer fails with [`RedisSessionError::Timeout`]; while Redis is
    /// unreachable every call fails after this long, and a restore is
    /// answered with an internal error. Must not be zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// let config = RedisSessionConfig::new().with_op_timeout(Duration::from_millis(300));
    /// assert_eq!(config.op_timeout(), Duration::from_millis(300));
    /// ```
    pub fn with_op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = op_timeout;
        self
    }

    /// The prefix of the Redis keys holding sessions.
    ///
    /// ```
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// assert_eq!(RedisSessionConfig::new().prefix(), "webwire:session:");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The sliding TTL, if any.
    ///
    /// ```
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// assert_eq!(RedisSessionConfig::new().ttl(), None);
    /// ```
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The bound on each Redis call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::RedisSessionConfig;
    ///
    /// assert_eq!(RedisSessionConfig::new().op_timeout(), Duration::from_secs(2));
    /// ```
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Checks every value; returns the TTL in milliseconds (0 without TTL).
    pub(crate) fn validate(&self) -> Result<i64, RedisSessionError> {
        check_prefix(&self.prefix)?;
        check_op_timeout(self.op_timeout)?;
        match self.ttl {
            None => Ok(0),
            Some(ttl) => match i64::try_from(ttl.as_millis()) {
                Ok(ms) if ms >= 1 => Ok(ms),
                _ => Err(RedisSessionError::Config(format!(
                    "the TTL must be between 1 ms and {} ms, not {ttl:?}",
                    i64::MAX
                ))),
            },
        }
    }

    /// The connection manager's settings (see [`connection_manager_config`]).
    pub(crate) fn connection_manager_config(&self) -> ConnectionManagerConfig {
        connection_manager_config(self.op_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RedisSessionConfig::new().validate().unwrap(), 0);
    }

    #[test]
    fn ttl_in_milliseconds() {
        let config = RedisSessionConfig::new().with_ttl(Duration::from_millis(1500));
        assert_eq!(config.validate().unwrap(), 1500);
        let config = RedisSessionConfig::new().with_ttl(Duration::from_micros(1500));
        assert_eq!(config.validate().unwrap(), 1, "whole milliseconds");
    }

    #[test]
    fn bad_values_are_config_errors() {
        let bad = [
            RedisSessionConfig::new().with_prefix(""),
            RedisSessionConfig::new().with_prefix("a\nb"),
            RedisSessionConfig::new().with_prefix("é"),
            RedisSessionConfig::new().with_ttl(Duration::ZERO),
            RedisSessionConfig::new().with_ttl(Duration::from_micros(999)),
            RedisSessionConfig::new().with_ttl(Duration::MAX),
            RedisSessionConfig::new().with_op_timeout(Duration::ZERO),
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(RedisSessionError::Config(_))),
                "{config:?}"
            );
        }
    }
}
