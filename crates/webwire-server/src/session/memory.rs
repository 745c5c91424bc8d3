use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use webwire_proto::Session;

use super::{age, SessionLookup, SessionManager, SessionStoreError};

/// A [`SessionManager`] that keeps sessions in a map in memory: they are
/// lost when the process ends. For tests, and for servers whose sessions
/// need not survive a restart.
///
/// Any key is accepted. With a [maximum age](Self::with_max_age), a session
/// older than that (since its creation) is not found and is removed.
///
/// ```
/// use std::time::SystemTime;
/// use webwire_server::{session::{MemorySessionManager, Session, SessionManager}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webwire_server::session::SessionStoreError> {
/// let manager = MemorySessionManager::new();
/// manager.on_session_created(&Session::new("key", SystemTime::now(), None)).await?;
/// let found = manager.on_session_lookup("key").await?.expect("stored");
/// assert!(found.info.is_none());
/// manager.on_session_closed("key").await?;
/// assert!(manager.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct MemorySessionManager {
    sessions: Mutex<HashMap<String, Session>>,
    max_age: Option<Duration>,
}

/// Shows how many sessions it holds, not their keys.
impl std::fmt::Debug for MemorySessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionManager")
            .field("sessions", &self.lock().len())
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl MemorySessionManager {
    /// An empty store without a maximum age.
    ///
    /// ```
    /// use webwire_server::session::MemorySessionManager;
    ///
    /// assert_eq!(MemorySessionManager::new().len(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the maximum age: a session created longer ago than this is not
    /// found and is removed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::session::MemorySessionManager;
    ///
    /// let manager = MemorySessionManager::new().with_max_age(Duration::from_secs(24 * 3600));
    /// assert_eq!(manager.max_age(), Some(Duration::from_secs(24 * 3600)));
    /// ```
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The maximum age, if any.
    ///
    /// ```
    /// use webwire_server::session::MemorySessionManager;
    ///
    /// assert_eq!(MemorySessionManager::new().max_age(), None);
    /// ```
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// How many sessions are stored, expired ones included until they are
    /// looked up or [removed](Self::remove_expired).
    ///
    /// ```
    /// use webwire_server::session::MemorySessionManager;
    ///
    /// assert_eq!(MemorySessionManager::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is stored.
    ///
    /// ```
    /// use webwire_server::session::MemorySessionManager;
    ///
    /// assert!(MemorySessionManager::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Removes every session older than the maximum age and returns how
    /// many were removed (0 without a maximum age).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use webwire_server::{session::{MemorySessionManager, Session, SessionManager}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webwire_server::session::SessionStoreError> {
    /// let manager = MemorySessionManager::new().with_max_age(Duration::from_secs(60));
    /// let old = SystemTime::now() - Duration::from_secs(120);
    /// manager.on_session_created(&Session::new("old", old, None)).await?;
    /// manager.on_session_created(&Session::new("new", SystemTime::now(), None)).await?;
    /// assert_eq!(manager.remove_expired(), 1);
    /// assert_eq!(manager.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove_expired(&self) -> usize {
        let Some(max_age) = self.max_age else {
            return 0;
        };
        let now = SystemTime::now();
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, session| age(session.creation, now) <= max_age);
        before - sessions.len()
    }

    /// The map; a panic while it was held cannot leave it half-changed, as
    /// every change is a single map operation.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionManager for MemorySessionManager {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        self.lock().insert(session.key.clone(), session.clone());
        Ok(())
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        let now = SystemTime::now();
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(key) else {
            return Ok(None);
        };
        if self
            .max_age
            .is_some_and(|max_age| age(session.creation, now) > max_age)
        {
            sessions.remove(key);
            return Ok(None);
        }
        session.last_lookup = now;
        Ok(Some(SessionLookup::from(session.clone())))
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn session(key: &str, creation: SystemTime) -> Session {
        Session::new(key, creation, json!({"user": key}).as_object().cloned())
    }

    #[tokio::test]
    async fn create_lookup_close() {
        let m = MemorySessionManager::new();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        m.on_session_created(&session("a", created)).await.unwrap();
        assert_eq!(m.len(), 1);

        let before = SystemTime::now();
        let found = m.on_session_lookup("a").await.unwrap().unwrap();
        assert_eq!(found.creation, created);
        assert!(found.last_lookup >= before, "last lookup updated");
        assert_eq!(found.info, json!({"user": "a"}).as_object().cloned());
        // The stored session carries the new last lookup too.
        let again = m.on_session_lookup("a").await.unwrap().unwrap();
        assert!(again.last_lookup >= found.last_lookup);

        assert_eq!(m.on_session_lookup("b").await.unwrap(), None);
        m.on_session_closed("a").await.unwrap();
        m.on_session_closed("a").await.unwrap();
        assert_eq!(m.on_session_lookup("a").await.unwrap(), None);
        assert!(m.is_empty());
    }

    #[tokio::test]
    async fn any_key_is_accepted() {
        let m = MemorySessionManager::new();
        for key in ["", "../x", "a/b", "é", "a\nb"] {
            m.on_session_created(&session(key, SystemTime::now()))
                .await
                .unwrap();
            assert!(m.on_session_lookup(key).await.unwrap().is_some(), "{key:?}");
        }
    }

    #[tokio::test]
    async fn max_age_expires_on_lookup() {
        let m = MemorySessionManager::new().with_max_age(Duration::from_secs(3600));
        let now = SystemTime::now();
        m.on_session_created(&session("old", now - Duration::from_secs(7200)))
            .await
            .unwrap();
        m.on_session_created(&session("young", now - Duration::from_secs(1800)))
            .await
            .unwrap();
        m.on_session_created(&session("future", now + Duration::from_secs(1800)))
            .await
            .unwrap();
        assert_eq!(m.on_session_lookup("old").await.unwrap(), None);
        assert_eq!(m.len(), 2, "the expired session is removed");
        assert!(m.on_session_lookup("young").await.unwrap().is_some());
        assert!(m.on_session_lookup("future").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn remove_expired_sweeps() {
        let m = MemorySessionManager::new();
        let old = SystemTime::now() - Duration::from_secs(7200);
        m.on_session_created(&session("old", old)).await.unwrap();
        assert_eq!(m.remove_expired(), 0, "no maximum age, nothing expires");

        let m = MemorySessionManager::new().with_max_age(Duration::from_secs(3600));
        m.on_session_created(&session("old", old)).await.unwrap();
        m.on_session_created(&session("new", SystemTime::now()))
            .await
            .unwrap();
        assert_eq!(m.remove_expired(), 1);
        assert_eq!(m.on_session_lookup("old").await.unwrap(), None);
        assert!(m.on_session_lookup("new").await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_use_stays_consistent() {
        let m = Arc::new(MemorySessionManager::new());
        let mut tasks = Vec::new();
        for i in 0..64 {
            let m = Arc::clone(&m);
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                m.on_session_created(&session(&key, SystemTime::now()))
                    .await
                    .unwrap();
                for _ in 0..10 {
                    let found = m.on_session_lookup(&key).await.unwrap().unwrap();
                    assert_eq!(found.info, json!({"user": key}).as_object().cloned());
                    // The shared key is created, looked up and closed by everybody.
                    m.on_session_created(&session("shared", SystemTime::now()))
                        .await
                        .unwrap();
                    let _ = m.on_session_lookup("shared").await.unwrap();
                    m.on_session_closed("shared").await.unwrap();
                }
                if i % 2 == 0 {
                    m.on_session_closed(&key).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(m.len(), 32);
        assert_eq!(m.on_session_lookup("shared").await.unwrap(), None);
        for i in 0..64 {
            let found = m.on_session_lookup(&format!("k{i}")).await.unwrap();
            assert_eq!(found.is_some(), i % 2 == 1, "k{i}");
        }
    }
}
