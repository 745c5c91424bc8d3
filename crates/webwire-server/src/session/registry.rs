//! The session registry: which connections hold which session
//! (docs/protocol.md 8).
//!
//! Two places hold the state, and they change together:
//!
//! - each connection's [`SessionSlot`] (in its shared state) says whether it has a
//!   session, and which;
//! - the registry maps every active key to the connections holding it.
//!
//! A connection is in a key's list exactly when its slot is
//! [`SessionSlot::Active`] with that key. Both are changed under the registry's
//! lock, the slot's lock taken inside it (never the other way round);
//! reading a connection's session takes only the slot's lock. The lock is
//! a `std::sync::Mutex` held for a few map operations, never across an
//! await.
//!
//! The decisions that must not race are each taken in one critical
//! section: joining a session checks the per-session limit and adds the
//! connection; leaving decides whether it was the last connection (then
//! the session is destroyed, once); a restore that looked the session up
//! while it was destroyed is refused (a generation number per key, and a
//! tombstone while the session manager deletes it).
//!
//! [`SessionRegistry`] is the small interface the rest of the server uses,
//! so that a registry spanning several nodes (Redis) can replace
//! [`LocalRegistry`] later: the calls that may need the network are async.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use webwire_proto::Session;

use crate::Connection;

/// A connection's session slot.
#[derive(Debug, Default)]
pub(crate) enum SessionSlot {
    /// No session.
    #[default]
    Empty,
    /// A create or restore is under way on this connection.
    Busy,
    /// The connection holds this session.
    Active(Arc<Session>),
    /// The connection has ended; it keeps the session it held for reading,
    /// but it is in no session's list and never will be.
    Ended(Option<Arc<Session>>),
}

impl SessionSlot {
    /// The session held, or held when the connection ended.
    pub(crate) fn session(&self) -> Option<&Arc<Session>> {
        match self {
            Self::Active(session) | Self::Ended(Some(session)) => Some(session),
            _ => None,
        }
    }
}

/// Why the registry refused a create or a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A session with this key is active (or being destroyed).
    KeyInUse,
    /// The session has the maximum number of connections.
    Full,
    /// The session was destroyed while it was being looked up.
    Gone,
    /// The connection ended (or its slot is not the caller's any more).
    Closed,
    /// The cluster could not count the session's connections.
    Unavailable,
}

/// A restore under way: taken before the session manager's lookup, given
/// back (once) to [`SessionRegistry::join`] or [`SessionRegistry::abandon`].
pub(crate) struct Ticket {
    key: String,
    generation: u64,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &super::redacted(&self.key))
            .field("generation", &self.generation)
            .finish()
    }
}

/// How a connection leaves its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// The session is closed on this connection; the last one destroys it.
    Close,
    /// The connection ended; the session stays in the store.
    Disconnect,
}

/// A connection left a session.
pub(crate) struct Left {
    pub(crate) key: String,
    /// The session is to be destroyed: it was closed on its last
    /// connection. The caller deletes it from the store, then calls
    /// [`SessionRegistry::destroyed`].
    pub(crate) destroy: bool,
    /// No connection of this server holds the session any more.
    pub(crate) last: bool,
}

impl fmt::Debug for Left {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Left")
            .field("key", &super::redacted(&self.key))
            .field("destroy", &self.destroy)
            .finish()
    }
}

/// What the server needs from a session registry.
///
/// Every call takes effect atomically: the async ones complete their
/// change before they first return `Pending`, or are safe to drop.
#[async_trait]
pub(crate) trait SessionRegistry: Send + Sync + fmt::Debug {
    /// Registers a new session held by `conn`, whose slot the caller has
    /// made [`SessionSlot::Busy`].
    async fn create(&self, conn: &Connection, session: Arc<Session>) -> Result<(), Refused>;

    /// Starts a restore of `key`: refused at once when the session is full
    /// or being destroyed.
    async fn begin_restore(&self, key: &str) -> Result<Ticket, Refused>;

    /// Finishes a restore: `conn` (slot [`SessionSlot::Busy`]) joins the session
    /// the manager found, if it has room and was not destroyed meanwhile.
    async fn join(
        &self,
        ticket: &Ticket,
        conn: &Connection,
        session: Arc<Session>,
    ) -> Result<(), Refused>;

    /// Gives a ticket back without joining.
    fn abandon(&self, ticket: &Ticket);

    /// `conn` leaves its session, if it has one.
    async fn leave(&self, conn: &Connection, how: Leave) -> Option<Left>;

    /// Takes the session `key` from every connection holding it and marks
    /// it destroyed; the caller deletes it from the store, then calls
    /// [`destroyed`](Self::destroyed). `None` when it is being destroyed
    /// already.
    async fn close_everywhere(&self, key: &str) -> Option<Vec<Connection>>;

    /// The session manager has deleted `key` (or failed to).
    fn destroyed(&self, key: &str);

    /// Sessions with at least one connection.
    fn active_sessions(&self) -> usize;

    /// The connections holding `key`.
    fn connections(&self, key: &str) -> Vec<Connection>;

    /// How many connections hold `key`.
    fn connection_count(&self, key: &str) -> usize;

    /// Every session with connections, and how many.
    fn session_counts(&self) -> Vec<(String, usize)>;
}

/// The registry of one server, in memory.
pub(crate) struct LocalRegistry {
    /// Connections per session, 0 for no limit.
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Entries with at least one connection.
    active: usize,
}

#[derive(Default)]
struct Entry {
    connections: Vec<Connection>,
    /// Restores between their ticket and their join.
    restoring: usize,
    /// Bumped when the session is destroyed.
    generation: u64,
    /// Destroyed, and the manager is deleting it.
    destroying: bool,
}

impl Entry {
    fn is_unused(&self) -> bool {
        self.connections.is_empty() && self.restoring == 0 && !self.destroying
    }

    fn is_full(&self, max: usize) -> bool {
        max != 0 && self.connections.len() >= max
    }
}

impl State {
    /// Removes the entry of `key` if nothing refers to it any more.
    fn tidy(&mut self, key: &str) {
        if self.entries.get(key).is_some_and(Entry::is_unused) {
            self.entries.remove(key);
        }
    }
}

impl LocalRegistry {
    /// An empty registry; `max` connections per session, 0 for no limit.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(State::default()),
        }
    }

    /// `conn` leaves its session; with `decide`, its close on the last
    /// connection destroys the session, else the caller decides later
    /// ([`claim_destroy`](Self::claim_destroy)).
    pub(crate) fn leave_now(&self, conn: &Connection, how: Leave, decide: bool) -> Option<Left> {
        let mut state = self.state();
        let state = &mut *state;
        let session = {
            let mut slot = conn.session_slot();
            match (how, &*slot) {
                (Leave::Close, SessionSlot::Active(_)) => match std::mem::take(&mut *slot) {
                    SessionSlot::Active(session) => session,
                    _ => unreachable!("matched above"),
                },
                (Leave::Close, _) => return None,
                (Leave::Disconnect, SessionSlot::Active(session)) => {
                    let session = session.clone();
                    *slot = SessionSlot::Ended(Some(session.clone()));
                    session
                }
                (Leave::Disconnect, SessionSlot::Ended(_)) => return None,
                (Leave::Disconnect, SessionSlot::Empty | SessionSlot::Busy) => {
                    *slot = SessionSlot::Ended(None);
                    return None;
                }
            }
        };
        let key = session.key.clone();
        let Some(entry) = state.entries.get_mut(&key) else {
            debug_assert!(false, "an active slot's session is not registered");
            return None;
        };
        entry.connections.retain(|other| other != conn);
        let mut destroy = false;
        let last = entry.connections.is_empty();
        if last {
            state.active -= 1;
            if how == Leave::Close && decide {
                entry.destroying = true;
                entry.generation += 1;
                destroy = true;
            }
        }
        state.tidy(&key);
        Some(Left { key, destroy, last })
    }

    /// After an undecided close of the last connection: destroys the
    /// session `key` (as that close would have) unless a connection of this
    /// server joined it meanwhile or it is being destroyed already. Returns
    /// whether the caller is to delete it.
    pub(crate) fn claim_destroy(&self, key: &str) -> bool {
        let mut state = self.state();
        let entry = state.entries.entry(key.to_owned()).or_default();
        if !entry.connections.is_empty() || entry.destroying {
            state.tidy(key);
            return false;
        }
        entry.destroying = true;
        entry.generation += 1;
        true
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change below leaves the maps consistent before anything
        // that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for LocalRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRegistry")
            .field("max", &self.max)
            .field("active", &self.state().active)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SessionRegistry for LocalRegistry {
    async fn create(&self, conn: &Connection, session: Arc<Session>) -> Result<(), Refused> {
        let mut state = self.state();
        if state.entries.contains_key(&session.key) {
            return Err(Refused::KeyInUse);
        }
        let key = session.key.clone();
        {
            let mut slot = conn.session_slot();
            if !matches!(*slot, SessionSlot::Busy) {
                return Err(Refused::Closed);
            }
            *slot = SessionSlot::Active(session);
        }
        state.entries.insert(
            key,
            Entry {
                connections: vec![conn.clone()],
                ..Entry::default()
            },
        );
        state.active += 1;
        Ok(())
    }

    async fn begin_restore(&self, key: &str) -> Result<Ticket, Refused> {
        let max = self.max;
        let mut state = self.state();
        let entry = state.entries.entry(key.to_owned()).or_default();
        if entry.destroying {
            return Err(Refused::Gone);
        }
        if entry.is_full(max) {
            return Err(Refused::Full);
        }
        entry.restoring += 1;
        Ok(Ticket {
            key: key.to_owned(),
            generation: entry.generation,
        })
    }

    async fn join(
        &self,
        ticket: &Ticket,
        conn: &Connection,
        session: Arc<Session>,
    ) -> Result<(), Refused> {
        let max = self.max;
        let mut state = self.state();
        let state = &mut *state;
        let Some(entry) = state.entries.get_mut(&ticket.key) else {
            // A ticket keeps its entry: this cannot happen.
            debug_assert!(false, "a restore's entry is gone");
            return Err(Refused::Gone);
        };
        entry.restoring -= 1;
        let outcome = if entry.generation != ticket.generation || entry.destroying {
            Err(Refused::Gone)
        } else if entry.is_full(max) {
            Err(Refused::Full)
        } else {
            let mut slot = conn.session_slot();
            if matches!(*slot, SessionSlot::Busy) {
                *slot = SessionSlot::Active(session);
                drop(slot);
                if entry.connections.is_empty() {
                    state.active += 1;
                }
                entry.connections.push(conn.clone());
                Ok(())
            } else {
                Err(Refused::Closed)
            }
        };
        state.tidy(&ticket.key);
        outcome
    }

    fn abandon(&self, ticket: &Ticket) {
        let mut state = self.state();
        if let Some(entry) = state.entries.get_mut(&ticket.key) {
            entry.restoring -= 1;
        }
        state.tidy(&ticket.key);
    }

    async fn leave(&self, conn: &Connection, how: Leave) -> Option<Left> {
        self.leave_now(conn, how, true)
    }

    async fn close_everywhere(&self, key: &str) -> Option<Vec<Connection>> {
        let mut state = self.state();
        let state = &mut *state;
        let entry = state.entries.entry(key.to_owned()).or_default();
        if entry.destroying {
            return None;
        }
        let connections = std::mem::take(&mut entry.connections);
        for conn in &connections {
            let mut slot = conn.session_slot();
            if matches!(&*slot, SessionSlot::Active(session) if session.key == key) {
                *slot = SessionSlot::Empty;
            }
        }
        if !connections.is_empty() {
            state.active -= 1;
        }
        entry.destroying = true;
        entry.generation += 1;
        Some(connections)
    }

    fn destroyed(&self, key: &str) {
        let mut state = self.state();
        if let Some(entry) = state.entries.get_mut(key) {
            entry.destroying = false;
        }
        state.tidy(key);
    }

    fn active_sessions(&self) -> usize {
        self.state().active
    }

    fn connections(&self, key: &str) -> Vec<Connection> {
        self.state()
            .entries
            .get(key)
            .map(|entry| entry.connections.clone())
            .unwrap_or_default()
    }

    fn connection_count(&self, key: &str) -> usize {
        self.state()
            .entries
            .get(key)
            .map_or(0, |entry| entry.connections.len())
    }

    fn session_counts(&self) -> Vec<(String, usize)> {
        self.state()
            .entries
            .iter()
            .filter(|(_, entry)| !entry.connections.is_empty())
            .map(|(key, entry)| (key.clone(), entry.connections.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn session(key: &str) -> Arc<Session> {
        Arc::new(Session::new(key, SystemTime::now(), None))
    }

    fn busy(conn: &Connection) {
        *conn.session_slot() = SessionSlot::Busy;
    }

    fn entries(registry: &LocalRegistry) -> usize {
        registry.state().entries.len()
    }

    /// A registry without a limit, session "k" created on `a`, and `b`
    /// busy (about to restore or create).
    async fn k_on_a_and_b_busy() -> (LocalRegistry, Connection, Connection) {
        let registry = LocalRegistry::new(0);
        let (a, b) = (Connection::detached(), Connection::detached());
        busy(&a);
        registry.create(&a, session("k")).await.unwrap();
        busy(&b);
        (registry, a, b)
    }

    #[tokio::test]
    async fn create_join_leave_destroy() {
        let (registry, a, b) = k_on_a_and_b_busy().await;
        let ticket = registry.begin_restore("k").await.unwrap();
        registry.join(&ticket, &b, session("k")).await.unwrap();
        assert_eq!(registry.connection_count("k"), 2);
        assert_eq!(registry.active_sessions(), 1);

        let left = registry.leave(&a, Leave::Close).await.unwrap();
        assert!(!left.destroy);
        assert!(registry.leave(&a, Leave::Close).await.is_none());
        let left = registry.leave(&b, Leave::Close).await.unwrap();
        assert!(left.destroy);
        assert_eq!(registry.active_sessions(), 0);
        // A tombstone until the store has deleted it.
        assert_eq!(
            registry.begin_restore("k").await.unwrap_err(),
            Refused::Gone
        );
        registry.destroyed("k");
        assert_eq!(entries(&registry), 0);
    }

    #[tokio::test]
    async fn a_restore_racing_a_destroy_is_refused() {
        let (registry, a, b) = k_on_a_and_b_busy().await;
        let ticket = registry.begin_restore("k").await.unwrap();
        // Destroyed while b's lookup runs, and deleted before it returns.
        assert!(registry.leave(&a, Leave::Close).await.unwrap().destroy);
        registry.destroyed("k");
        assert_eq!(entries(&registry), 1, "the ticket keeps the entry");
        assert_eq!(
            registry.join(&ticket, &b, session("k")).await,
            Err(Refused::Gone)
        );
        assert!(matches!(*b.session_slot(), SessionSlot::Busy));
        assert_eq!(entries(&registry), 0);
    }

    #[tokio::test]
    async fn the_limit_is_checked_again_when_joining() {
        let registry = LocalRegistry::new(2);
        let conns: Vec<_> = (0..4).map(|_| Connection::detached()).collect();
        busy(&conns[0]);
        registry.create(&conns[0], session("k")).await.unwrap();
        let mut tickets = Vec::new();
        for conn in &conns[1..3] {
            busy(conn);
            tickets.push(registry.begin_restore("k").await.unwrap());
        }
        let second = tickets.pop().unwrap();
        let first = tickets.pop().unwrap();
        registry
            .join(&first, &conns[1], session("k"))
            .await
            .unwrap();
        assert_eq!(
            registry.join(&second, &conns[2], session("k")).await,
            Err(Refused::Full)
        );
        assert_eq!(
            registry.begin_restore("k").await.unwrap_err(),
            Refused::Full
        );
        assert_eq!(registry.connection_count("k"), 2);
    }

    #[tokio::test]
    async fn disconnect_keeps_the_session_and_ends_the_slot() {
        let (registry, a, b) = k_on_a_and_b_busy().await;
        let ticket = registry.begin_restore("k").await.unwrap();
        let left = registry.leave(&a, Leave::Disconnect).await.unwrap();
        assert!(!left.destroy);
        assert_eq!(a.session_slot().session().unwrap().key, "k");
        // b ends while its lookup runs: it does not join.
        assert!(registry.leave(&b, Leave::Disconnect).await.is_none());
        assert_eq!(
            registry.join(&ticket, &b, session("k")).await,
            Err(Refused::Closed)
        );
        assert_eq!(registry.active_sessions(), 0);
        assert_eq!(entries(&registry), 0);
    }

    #[tokio::test]
    async fn close_everywhere_takes_every_connection_once() {
        let (registry, a, b) = k_on_a_and_b_busy().await;
        let ticket = registry.begin_restore("k").await.unwrap();
        registry.join(&ticket, &b, session("k")).await.unwrap();
        let taken = registry.close_everywhere("k").await.unwrap();
        assert_eq!(taken.len(), 2);
        assert!(matches!(*a.session_slot(), SessionSlot::Empty));
        assert!(registry.close_everywhere("k").await.is_none());
        assert!(registry.leave(&a, Leave::Close).await.is_none());
        registry.destroyed("k");
        assert_eq!(registry.active_sessions(), 0);
        assert_eq!(entries(&registry), 0);
        // Without connections: still destroyed (deleted from the store).
        assert_eq!(registry.close_everywhere("other").await.unwrap().len(), 0);
        registry.destroyed("other");
        assert_eq!(entries(&registry), 0);
    }

    #[tokio::test]
    async fn debug_shows_no_key() {
        let (registry, a, _b) = k_on_a_and_b_busy().await;
        let ticket = registry.begin_restore("k").await.unwrap();
        let left = registry.leave(&a, Leave::Close).await.unwrap();
        for debug in [format!("{ticket:?}"), format!("{left:?}")] {
            assert!(!debug.contains("\"k\""), "{debug}");
            assert!(
                debug.contains(&super::super::redacted("k").to_string()),
                "{debug}"
            );
        }
        let event = crate::ClusterEvent::Session {
            key: "secret-key".into(),
            frame: bytes::Bytes::new(),
        };
        assert!(!format!("{event:?}").contains("secret-key"));
    }

    #[tokio::test]
    async fn keys_are_unique() {
        let (registry, _a, b) = k_on_a_and_b_busy().await;
        assert_eq!(
            registry.create(&b, session("k")).await,
            Err(Refused::KeyInUse)
        );
        let ended = Connection::detached();
        assert!(registry.leave(&ended, Leave::Disconnect).await.is_none());
        assert_eq!(
            registry.create(&ended, session("j")).await,
            Err(Refused::Closed)
        );
    }
}
