//! Redis support for `webwire-server`: a session manager
//! that keeps sessions in Redis, so that every server (node) connected to
//! the same Redis can restore them.
//!
//! [`RedisSessionManager`] implements
//! [`SessionManager`](webwire_core::session::SessionManager): one hash per session
//! under a configurable prefix, an optional sliding TTL refreshed by each
//! lookup in one round trip, deletion on close, every Redis call bounded by
//! a timeout, and a connection that comes back by itself after an outage.
//! It needs Redis 6 or later, or Valkey (RESP3).
//!
//! [`RedisCluster`] implements [`Cluster`](webwire_core::cluster::Cluster): several
//! servers sharing one Redis act as one node set over Redis pub/sub
//! (broadcasts, room and session signals, close a session everywhere, the
//! per-session connection limit counted on all nodes).
//!
//! The webwire 2.1 stores (docs/protocol.md section 14), so that a client
//! resumes on any node: [`RedisStreamStore`] implements
//! [`StreamStore`](webwire_core::stream::StreamStore) (stream history: each
//! append numbered, stored, trimmed and published in one Lua script;
//! [`StreamPublication`] is what other nodes receive on
//! `{prefix}stream:signals` to deliver it live, through a
//! [`StreamSubscription`] given to [`RedisCluster::deliver_streams`]; and
//! the sessions' room memberships, so that a restore on any node puts the
//! client back into its rooms), and [`RedisLedger`]
//! implements [`RequestLedger`](webwire_core::ledger::RequestLedger)
//! (keyed requests run at most once in the cluster: the decision in one
//! script, leases fenced by token and node incarnation, retries on another
//! node woken by the run's end). Both take a [`RedisStoreConfig`] and need
//! Redis 6.2 or later.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use webwire_redis::{RedisSessionConfig, RedisSessionManager};
//! use webwire_server::{MessageRouter, Server};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisSessionConfig::new()
//!     .with_prefix("chat:session:")
//!     .with_ttl(Duration::from_secs(7 * 24 * 3600));
//! let sessions = RedisSessionManager::connect("redis://127.0.0.1:6379/", config).await?;
//! let server = Server::builder(MessageRouter::new())
//!     .session_manager(Arc::new(sessions))
//!     .build()?;
//! # let _ = server;
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
//! - `cluster`: [`RedisCluster`] and [`RedisClusterConfig`]: heartbeats and
//!   the live-node table, the binary envelope on the channels, the session
//!   count scripts, requests to all nodes, resubscription after an outage.
//! - `store_config`: [`RedisStoreConfig`] for the 2.1 stores.
//! - `stream`: [`RedisStreamStore`], its scripts and key layout, and the
//!   format of [`StreamPublication`].
//! - `ledger`: [`RedisLedger`], its scripts (the decision table, finish
//!   with compare-and-set, renew, give up, watch) and the wake channel.
//! - `error`: [`RedisSessionError`] (also the cluster's construction errors
//!   and the source of the stores' errors).
//!
//! The integration tests (`tests/`) start their own `redis-server`; see
//! `tests/common/mod.rs`.

// The README is what crates.io shows; its examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod cluster;
mod config;
mod error;
mod key;
mod ledger;
mod manager;
mod metrics;
mod shared_config;
mod store_config;
mod stored;
mod stream;

pub use cluster::{RedisCluster, RedisClusterConfig};
pub use config::RedisSessionConfig;
pub use error::RedisSessionError;
pub use ledger::RedisLedger;
pub use manager::RedisSessionManager;
/// The Redis client crate (`redis` 1.8), for
/// [`RedisSessionManager::from_connection_manager`].
pub use redis;
pub use store_config::RedisStoreConfig;
pub use stream::{PublicationError, RedisStreamStore, StreamPublication, StreamSubscription};
