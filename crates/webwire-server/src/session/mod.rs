//! Session storage and session keys (docs/protocol.md section 8).
//!
//! - The interfaces, defined in `webwire-core` and re-exported here: the
//!   [`SessionManager`] trait the server calls when a session is created,
//!   looked up (restored) and closed, its [`SessionLookup`] result and its
//!   [`SessionStoreError`]; [`SessionKeyGenerator`] and
//!   [`DefaultKeyGenerator`].
//! - `file`: [`FileSessionManager`], the default: one file per session.
//! - `memory`: [`MemorySessionManager`]: a map in memory.
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
mod memory;
pub(crate) mod ops;
pub(crate) mod registry;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use file::FileSessionManager;
pub use memory::MemorySessionManager;
pub use ops::ClosedSession;
pub use webwire_core::session::{
    DefaultKeyGenerator, KeyDigest, Session, SessionInfo, SessionJsonError, SessionKeyGenerator,
    SessionLookup, SessionManager, SessionStoreError,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`SessionManager`] as an object, which the server holds (`Arc<dyn
/// ErasedSessionManager>`): the application's manager type is erased once,
/// when it is given to the builder, and each call boxes its future, as
/// `async-trait` did.
pub(crate) trait ErasedSessionManager: Send + Sync + fmt::Debug + 'static {
    fn on_session_created<'a>(
        &'a self,
        session: &'a Session,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>>;
    fn on_session_lookup<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionLookup>, SessionStoreError>>;
    fn on_session_closed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>>;
}

impl<M: SessionManager> ErasedSessionManager for M {
    fn on_session_created<'a>(
        &'a self,
        session: &'a Session,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>> {
        Box::pin(SessionManager::on_session_created(self, session))
    }

    fn on_session_lookup<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionLookup>, SessionStoreError>> {
        Box::pin(SessionManager::on_session_lookup(self, key))
    }

    fn on_session_closed<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>> {
        Box::pin(SessionManager::on_session_closed(self, key))
    }
}

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
