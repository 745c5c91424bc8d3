//! Session storage and session keys (PROTOCOL.md section 5).
//!
//! - `manager`: the [`SessionManager`] trait the server calls when a session
//!   is created, looked up (restored) and closed, its [`SessionLookup`]
//!   result and its [`SessionStoreError`].
//! - `memory`: [`MemorySessionManager`]: a map in memory.
//! - `key`: [`SessionKeyGenerator`] and [`DefaultKeyGenerator`].
//!
//! This module knows nothing about connections: the server's session
//! registry (which connections hold which session) calls into it.

mod key;
mod manager;
mod memory;

pub use key::{DefaultKeyGenerator, SessionKeyGenerator};
pub use manager::{SessionLookup, SessionManager, SessionStoreError};
pub use memory::MemorySessionManager;
pub use webwire_proto::{Session, SessionInfo};

/// The age of a session created at `creation`, zero if that is in the future.
pub(crate) fn age(
    creation: std::time::SystemTime,
    now: std::time::SystemTime,
) -> std::time::Duration {
    now.duration_since(creation).unwrap_or_default()
}
