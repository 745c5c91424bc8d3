//! Session storage and session keys (docs/protocol.md section 8): the
//! [`SessionManager`] a server calls when a session is created, looked up
//! (restored) and closed, its [`SessionLookup`] result and its
//! [`SessionStoreError`]; the [`SessionKeyGenerator`] that makes new keys,
//! with the [`DefaultKeyGenerator`]. [`Session`] and [`SessionInfo`] are
//! the wire types of `webwire-proto`, re-exported here.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::SystemTime;

pub use crate::key::{DefaultKeyGenerator, SessionKeyGenerator};
pub use webwire_proto::{KeyDigest, Session, SessionInfo, SessionJsonError};

/// The application's storage of sessions: the server calls it when a
/// session is created, looked up (a client restores it) and closed.
///
/// An async trait without a macro: implement it with `async fn` (the
/// futures must be `Send`). Implementations: `webwire-server`'s
/// `FileSessionManager` (its default, one file per session) and
/// `MemorySessionManager`, and the Redis manager of `webwire-redis`; a
/// server takes one with `ServerBuilder::session_manager(Arc::new(...))`.
///
/// The server judges keys before asking the manager: a restore with a key
/// longer than 255 bytes or with a byte outside 32..=126 is answered with
/// "session not found" without a lookup.
///
/// # Implementing
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::SystemTime;
/// use webwire_core::session::{Session, SessionLookup, SessionManager, SessionStoreError};
///
/// #[derive(Default)]
/// struct Sessions(Mutex<HashMap<String, Session>>);
///
/// // Keys are bearer credentials: Debug shows how many, never which.
/// impl std::fmt::Debug for Sessions {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         let count = self.0.lock().map(|map| map.len()).unwrap_or(0);
///         f.debug_struct("Sessions").field("count", &count).finish()
///     }
/// }
///
/// impl SessionManager for Sessions {
///     async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
///         self.0.lock().unwrap().insert(session.key.clone(), session.clone());
///         Ok(())
///     }
///
///     async fn on_session_lookup(&self, key: &str) -> Result<Option<SessionLookup>, SessionStoreError> {
///         let mut sessions = self.0.lock().unwrap();
///         Ok(sessions.get_mut(key).map(|session| {
///             session.last_lookup = SystemTime::now();
///             SessionLookup::from(session.clone())
///         }))
///     }
///
///     async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), SessionStoreError> {
/// let manager = Sessions::default();
/// manager.on_session_created(&Session::new("key", SystemTime::now(), None)).await?;
/// assert!(manager.on_session_lookup("key").await?.is_some());
/// manager.on_session_closed("key").await?;
/// assert!(manager.on_session_lookup("key").await?.is_none());
/// # Ok(())
/// # }
/// ```
pub trait SessionManager: Send + Sync + fmt::Debug + 'static {
    /// Stores a session that was just created on a connection.
    ///
    /// If this fails the server logs the error and the session stays
    /// active; it just cannot be restored after the client disconnects.
    fn on_session_created(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;

    /// Finds the session with this key, updating its last lookup time to
    /// now; the result carries the updated time.
    ///
    /// `Ok(None)` when there is no such session (or it has expired). An
    /// error is logged by the server and the restore is answered with
    /// ReplyInternalError.
    fn on_session_lookup(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<SessionLookup>, SessionStoreError>> + Send;

    /// Deletes the session with this key: it was closed (destroyed) and must
    /// not be found again. Deleting a session that does not exist succeeds.
    fn on_session_closed(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;
}

/// What [`SessionManager::on_session_lookup`] found: everything of the
/// session but its key.
///
/// ```
/// use std::time::SystemTime;
/// use webwire_core::session::{Session, SessionLookup};
///
/// let session = Session::new("key", SystemTime::now(), None);
/// let found = SessionLookup::from(session.clone());
/// assert_eq!(found.creation, session.creation);
/// assert_eq!(found.into_session("key"), session);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLookup {
    /// When the session was created.
    pub creation: SystemTime,
    /// The session's last lookup time, as updated by this lookup.
    pub last_lookup: SystemTime,
    /// The application's information, if any.
    pub info: Option<SessionInfo>,
}

impl SessionLookup {
    /// The session with this key.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use webwire_core::session::SessionLookup;
    ///
    /// let now = SystemTime::now();
    /// let found = SessionLookup { creation: now, last_lookup: now, info: None };
    /// assert_eq!(found.into_session("key").key, "key");
    /// ```
    pub fn into_session(self, key: impl Into<String>) -> Session {
        Session {
            key: key.into(),
            creation: self.creation,
            last_lookup: self.last_lookup,
            info: self.info,
        }
    }
}

impl From<Session> for SessionLookup {
    fn from(session: Session) -> Self {
        Self {
            creation: session.creation,
            last_lookup: session.last_lookup,
            info: session.info,
        }
    }
}

/// A session manager failed to store, find or delete a session.
///
/// Carries what was being done (its [`Display`](fmt::Display)) and, usually,
/// the underlying error as its [`source`](Error::source): log the whole
/// chain.
///
/// ```
/// use std::error::Error;
/// use std::io;
/// use webwire_core::session::SessionStoreError;
///
/// let err = SessionStoreError::new("writing the session file", io::Error::other("disk full"));
/// assert_eq!(err.to_string(), "writing the session file");
/// assert_eq!(err.source().unwrap().to_string(), "disk full");
///
/// let err = SessionStoreError::msg("the store is read-only");
/// assert!(err.source().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct SessionStoreError {
    context: Cow<'static, str>,
    #[source]
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl SessionStoreError {
    /// An error with its context and underlying cause.
    ///
    /// ```
    /// use webwire_core::session::SessionStoreError;
    ///
    /// let err = SessionStoreError::new(format!("connecting to {}", "redis"), "refused");
    /// assert_eq!(err.context(), "connecting to redis");
    /// ```
    pub fn new(
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// An error without an underlying cause.
    ///
    /// ```
    /// use webwire_core::session::SessionStoreError;
    ///
    /// assert_eq!(SessionStoreError::msg("no space").to_string(), "no space");
    /// ```
    pub fn msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// What was being done.
    ///
    /// ```
    /// use webwire_core::session::SessionStoreError;
    ///
    /// assert_eq!(SessionStoreError::msg("deleting").context(), "deleting");
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_and_chains() {
        assert_send_sync::<SessionStoreError>();
        let err = SessionStoreError::new("outer", std::io::Error::other("inner"));
        let chained: Box<dyn Error + Send + Sync> = Box::new(err);
        assert_eq!(chained.to_string(), "outer");
        assert_eq!(
            chained.source().map(ToString::to_string),
            Some("inner".into())
        );
    }

    #[test]
    fn lookup_session_round_trip() {
        let now = SystemTime::now();
        let info = serde_json::json!({"a": 1}).as_object().cloned();
        let session = Session::new("k", now, info);
        assert_eq!(
            SessionLookup::from(session.clone()).into_session("k"),
            session
        );
    }
}
