//! Session storage and session keys (docs/protocol.md section 8).
//!
//! - `manager`: the [`SessionManager`] trait the server calls when a session
//!   is created, looked up (restored) and closed, its [`SessionLookup`]
//!   result and its [`SessionStoreError`].
//! - `file`: [`FileSessionManager`], the default: one file per session.
//! - `memory`: [`MemorySessionManager`]: a map in memory.
//! - `key`: [`SessionKeyGenerator`] and [`DefaultKeyGenerator`].
//! - `registry`: which connections hold which session (the server's
//!   shared state), behind a small internal interface.
//! - `clustered`: the registry of a node in a cluster (the per-session
//!   limit counted on all nodes).
//! - `ops`: what the server does with sessions: create, restore, close on
//!   one connection or everywhere, leave on disconnect; [`ClosedSession`].
//!
//! The storage modules know nothing about connections: the registry and
//! the operations call into them.

mod clustered;
mod file;
mod key;
mod manager;
mod memory;
pub(crate) mod ops;
pub(crate) mod registry;

pub use file::FileSessionManager;
pub use key::{DefaultKeyGenerator, SessionKeyGenerator};
pub use manager::{SessionLookup, SessionManager, SessionStoreError};
pub use memory::MemorySessionManager;
pub use ops::ClosedSession;
pub use webwire_proto::{KeyDigest, Session, SessionInfo, SessionJsonError};

/// How a session key appears in an error message, a log line or a span
/// field: keys are bearer credentials, so only their [`KeyDigest`] is shown.
///
/// [`KeyDigest`]: webwire_proto::KeyDigest
pub(crate) fn redacted(key: &str) -> webwire_proto::KeyDigest {
    webwire_proto::KeyDigest::new(key)
}

/// The age of a session created at `creation`, zero if that is in the future.
pub(crate) fn age(
    creation: std::time::SystemTime,
    now: std::time::SystemTime,
) -> std::time::Duration {
    now.duration_since(creation).unwrap_or_default()
}
