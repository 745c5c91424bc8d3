//! Redis support for [`webwire-server`](webwire_server): a session manager
//! that keeps sessions in Redis, so that every server (node) connected to
//! the same Redis can restore them.
//!
//! [`RedisSessionManager`] implements
//! [`SessionManager`](webwire_server::SessionManager): one hash per session
//! under a configurable prefix, an optional sliding TTL refreshed by each
//! lookup in one round trip, deletion on close, every Redis call bounded by
//! a timeout, and a connection that comes back by itself after an outage.
//! It needs Redis 6 or later, or Valkey (RESP3). The cluster layer (signals
//! and session counts across nodes over Redis pub/sub) is not here yet.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use webwire_redis::{RedisSessionConfig, RedisSessionManager};
//! use webwire_server::SessionManager;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), webwire_redis::RedisSessionError> {
//! let config = RedisSessionConfig::new()
//!     .with_prefix("chat:session:")
//!     .with_ttl(Duration::from_secs(7 * 24 * 3600));
//! let sessions: Arc<dyn SessionManager> =
//!     Arc::new(RedisSessionManager::connect("redis://127.0.0.1:6379/", config).await?);
//! # let _ = sessions;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `manager`: [`RedisSessionManager`], the `SessionManager` hooks and the
//!   Lua lookup script; building the RESP3 client from a URL.
//! - `config`: [`RedisSessionConfig`] (prefix, TTL, operation timeout) and
//!   the connection manager's reconnection settings.
//! - `stored`: how a session is laid out in its Redis hash (fields `c`, `l`,
//!   `i`) and the time and info encodings.
//! - `key`: which session keys are accepted (1 to 255 bytes of printable
//!   ASCII) and how they appear in errors (redacted).
//! - `error`: [`RedisSessionError`].
//!
//! The integration tests (`tests/`) start their own `redis-server`; see
//! `tests/common/mod.rs`.

mod config;
mod error;
mod key;
mod manager;
mod stored;

pub use config::RedisSessionConfig;
pub use error::RedisSessionError;
pub use manager::RedisSessionManager;
/// The Redis client crate (`redis` 1.8), for
/// [`RedisSessionManager::from_connection_manager`].
pub use redis;
