use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use crate::error::RedisSessionError;
use crate::shared_config::{check_prefix, connection_manager_config, DEFAULT_OP_TIMEOUT};

/// How a [`RedisCluster`](crate::RedisCluster) node takes part: its id,
/// the key and channel prefix, and its timings.
///
/// Every node of one cluster uses the same prefix and a distinct node id.
/// A node announces itself every `heartbeat_interval`; a node not heard
/// from within `node_timeout` (at least twice the interval) stops
/// counting: requests stop waiting for it and its connections stop
/// counting toward the per-session limit.
///
/// ```
/// use std::time::Duration;
/// use webwire_redis::RedisClusterConfig;
///
/// let config = RedisClusterConfig::new("node-a")
///     .with_prefix("chat:")
///     .with_heartbeat_interval(Duration::from_secs(1))
///     .with_node_timeout(Duration::from_secs(3));
/// assert_eq!(config.node_id(), "node-a");
/// assert_eq!(config.node_timeout(), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisClusterConfig {
    node_id: String,
    prefix: String,
    heartbeat_interval: Duration,
    node_timeout: Duration,
    request_timeout: Duration,
    op_timeout: Duration,
    count_ttl: Duration,
}

impl RedisClusterConfig {
    /// The defaults for the node `node_id` (1 to 64 bytes of
    /// `A-Z a-z 0-9 . _ -`): prefix `webwire:`, a heartbeat every 2 s,
    /// nodes timing out after 6 s, requests waiting at most 2 s, each
    /// Redis call bounded by 2 s, session counts kept 24 h after their last
    /// change.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_redis::RedisClusterConfig;
    ///
    /// let config = RedisClusterConfig::new("a");
    /// assert_eq!(config.prefix(), "webwire:");
    /// assert_eq!(config.heartbeat_interval(), Duration::from_secs(2));
    /// ```
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            prefix: "webwire:".into(),
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(6),
            request_timeout: Duration::from_secs(2),
            op_timeout: DEFAULT_OP_TIMEOUT,
            count_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets the prefix of the cluster's Redis keys and channels.
    ///
    /// ```
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").with_prefix("x:").prefix(), "x:");
    /// ```
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets how often the node announces itself (at least 10 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisClusterConfig::new("a").with_heartbeat_interval(Duration::from_secs(1));
    /// assert_eq!(c.heartbeat_interval(), Duration::from_secs(1));
    /// ```
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets after how long without a word a node stops counting (at least
    /// twice the heartbeat interval).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisClusterConfig::new("a").with_node_timeout(Duration::from_secs(10));
    /// assert_eq!(c.node_timeout(), Duration::from_secs(10));
    /// ```
    pub fn with_node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Sets how long a request to all nodes (close a session everywhere)
    /// waits for their answers.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisClusterConfig::new("a").with_request_timeout(Duration::from_secs(1));
    /// assert_eq!(c.request_timeout(), Duration::from_secs(1));
    /// ```
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the bound on each Redis call.
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisClusterConfig::new("a").with_op_timeout(Duration::from_millis(500));
    /// assert_eq!(c.op_timeout(), Duration::from_millis(500));
    /// ```
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets how long a session's connection count stays in Redis after its
    /// last change (set it to the sessions' TTL, if longer).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = webwire_redis::RedisClusterConfig::new("a").with_count_ttl(Duration::from_secs(60));
    /// assert_eq!(c.count_ttl(), Duration::from_secs(60));
    /// ```
    pub fn with_count_ttl(mut self, ttl: Duration) -> Self {
        self.count_ttl = ttl;
        self
    }

    /// The node id.
    ///
    /// ```
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").node_id(), "a");
    /// ```
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The prefix.
    ///
    /// ```
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").prefix(), "webwire:");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The heartbeat interval.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").heartbeat_interval(), Duration::from_secs(2));
    /// ```
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The node timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").node_timeout(), Duration::from_secs(6));
    /// ```
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// The request timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").request_timeout(), Duration::from_secs(2));
    /// ```
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The bound on each Redis call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").op_timeout(), Duration::from_secs(2));
    /// ```
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// How long a session's count stays after its last change.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(webwire_redis::RedisClusterConfig::new("a").count_ttl(), Duration::from_secs(86400));
    /// ```
    pub fn count_ttl(&self) -> Duration {
        self.count_ttl
    }

    pub(crate) fn validate(&self) -> Result<(), RedisSessionError> {
        let bad = |what: &str| Err(RedisSessionError::Config(what.into()));
        let id_ok = (1..=64).contains(&self.node_id.len())
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return bad("the node id must be 1 to 64 bytes of A-Z, a-z, 0-9, '.', '_', '-'");
        }
        check_prefix(&self.prefix)?;
        if self.heartbeat_interval < Duration::from_millis(10)
            || self.heartbeat_interval > Duration::from_secs(3600)
        {
            return bad("the heartbeat interval must be between 10 ms and 1 h");
        }
        if self.node_timeout < 2 * self.heartbeat_interval {
            return bad("the node timeout must be at least twice the heartbeat interval");
        }
        if self.request_timeout.is_zero() || self.op_timeout.is_zero() {
            return bad("the request and operation timeouts must not be zero");
        }
        if self.count_ttl < Duration::from_secs(1) || self.count_ttl > Duration::from_secs(1 << 40)
        {
            return bad("the count TTL must be at least 1 s");
        }
        Ok(())
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
    fn checks() {
        assert!(RedisClusterConfig::new("node-1.a_b").validate().is_ok());
        let bad = [
            RedisClusterConfig::new(""),
            RedisClusterConfig::new("a b"),
            RedisClusterConfig::new("x".repeat(65)),
            RedisClusterConfig::new("a").with_prefix(""),
            RedisClusterConfig::new("a").with_node_timeout(Duration::from_secs(3)),
            RedisClusterConfig::new("a").with_heartbeat_interval(Duration::ZERO),
            RedisClusterConfig::new("a").with_request_timeout(Duration::ZERO),
            RedisClusterConfig::new("a").with_count_ttl(Duration::ZERO),
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(RedisSessionError::Config(_))),
                "{config:?}"
            );
        }
    }
}
