use std::time::Duration;

/// What went wrong in the Redis session manager.
///
/// Building a manager fails with [`BadUrl`](Self::BadUrl),
/// [`Resp3Required`](Self::Resp3Required), [`Config`](Self::Config), or,
/// when connecting eagerly, [`Timeout`](Self::Timeout) or
/// [`Redis`](Self::Redis).
///
/// The [`SessionManager`](webwire_core::session::SessionManager) hooks return a
/// [`SessionStoreError`](webwire_core::session::SessionStoreError) whose
/// [`source`](std::error::Error::source) is one of these, so a server log
/// shows both what was being done and why it failed.
///
/// ```
/// use std::time::Duration;
/// use webwire_redis::{RedisSessionConfig, RedisSessionError, RedisSessionManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = RedisSessionManager::connect_lazy("http://example.com", RedisSessionConfig::new())
///     .unwrap_err();
/// assert!(matches!(err, RedisSessionError::BadUrl(_)));
///
/// let err = RedisSessionError::Timeout(Duration::from_secs(2));
/// assert_eq!(err.to_string(), "Redis did not answer within 2s");
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSessionError {
    /// The Redis URL could not be read (the URL itself is not repeated: it
    /// may hold a password).
    #[error("invalid Redis URL")]
    BadUrl(#[source] redis::RedisError),
    /// The URL asks for RESP2 (`protocol=resp2`); the manager needs RESP3
    /// (Redis 6 or later, or Valkey).
    #[error("the Redis URL asks for RESP2, but RESP3 is required (leave out the protocol parameter or use protocol=resp3)")]
    Resp3Required,
    /// An invalid [`RedisSessionConfig`](crate::RedisSessionConfig) value.
    #[error("invalid Redis session configuration: {0}")]
    Config(String),
    /// Redis did not answer within the operation timeout, for instance
    /// because it is unreachable and the connection is being re-established.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("Redis failed")]
    Redis(#[from] redis::RedisError),
    /// A session key that cannot be stored: it is not 1 to 255 bytes of
    /// printable ASCII (32..=126).
    #[error("invalid session key: it must be 1 to 255 bytes of printable ASCII (32..=126)")]
    InvalidKey,
    /// A stream name or ledger scope the 2.1 stores cannot key: a room
    /// name or session key that is not 1 to 255 bytes, or a client instance
    /// id that is not 1 to 64 bytes of printable ASCII.
    #[error("cannot key {0} in Redis: it must be 1 to 255 bytes (an instance id 1 to 64 bytes of printable ASCII)")]
    InvalidName(&'static str),
    /// A session that cannot be written (a time outside the years
    /// 0000..=9999).
    #[error("cannot store the session: {0}")]
    Encode(String),
    /// What Redis holds under a session's key is not a session stored by this
    /// crate.
    #[error("malformed session in Redis: {0}")]
    Decode(String),
}
