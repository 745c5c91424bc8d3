//! The session registry of a node in a cluster: the local registry for the
//! connections' slots, plus the cluster's count of each session's
//! connections on all nodes, for the per-session limit.
//!
//! Every count change goes, in order, through one queue per server to one
//! task that tells the cluster: creates, leaves and clears without
//! waiting, restores waiting for the answer (whether the session has room).
//! So a node's changes reach Redis in the order they happened, and a
//! restore whose caller stopped waiting cannot leave a count changed
//! halfway: the task gives back a place nobody took.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use webwire_proto::Session;

use super::redacted;
use super::registry::{Leave, Left, LocalRegistry, Refused, SessionRegistry, Ticket};
use crate::{Cluster, ClusterError, Connection};

/// A [`LocalRegistry`] whose per-session limit spans the cluster.
pub(crate) struct ClusteredRegistry {
    local: LocalRegistry,
    cluster: Arc<dyn Cluster>,
    max: usize,
    /// The queue of count changes; its task starts with the first change.
    updates: OnceLock<mpsc::UnboundedSender<Update>>,
}

/// A change of this node's count of a session's connections. Its `Debug`
/// shows the key's digest.
enum Update {
    /// One more (a new session: no limit).
    Join(String),
    /// One more if the session has fewer than `max` connections on all
    /// nodes; the answer goes back to the restore.
    Restore {
        key: String,
        max: usize,
        answer: oneshot::Sender<Result<bool, ClusterError>>,
    },
    /// One less.
    Leave(String),
    /// None any more.
    Clear(String),
}

impl fmt::Debug for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Join(key) => f.debug_tuple("Join").field(&redacted(key)).finish(),
            Self::Restore { key, max, .. } => f
                .debug_struct("Restore")
                .field("key", &redacted(key))
                .field("max", max)
                .finish_non_exhaustive(),
            Self::Leave(key) => f.debug_tuple("Leave").field(&redacted(key)).finish(),
            Self::Clear(key) => f.debug_tuple("Clear").field(&redacted(key)).finish(),
        }
    }
}

/// Tells the cluster about count changes, one after the other.
async fn run_updates(cluster: Arc<dyn Cluster>, mut updates: mpsc::UnboundedReceiver<Update>) {
    while let Some(update) = updates.recv().await {
        let (result, key) = match &update {
            Update::Restore { .. } => {
                let Update::Restore { key, max, answer } = update else {
                    unreachable!("matched above")
                };
                let result = cluster.join_session(&key, max).await;
                if let Err(Ok(true)) = answer.send(result) {
                    // The restore was dropped: give its place back.
                    if let Err(err) = cluster.leave_session(&key).await {
                        tracing::warn!(session = %redacted(&key), error = %err, "the cluster did not take a session count change");
                    }
                }
                continue;
            }
            Update::Join(key) => (cluster.join_session(key, 0).await.map(drop), key),
            Update::Leave(key) => (cluster.leave_session(key).await, key),
            Update::Clear(key) => (cluster.clear_session(key).await, key),
        };
        if let Err(err) = result {
            tracing::warn!(session = %redacted(key), ?update, error = %err, "the cluster did not take a session count change");
        }
    }
}

impl ClusteredRegistry {
    pub(crate) fn new(max: usize, cluster: Arc<dyn Cluster>) -> Self {
        Self {
            local: LocalRegistry::new(max),
            cluster,
            max,
            updates: OnceLock::new(),
        }
    }

    /// Queues a count change (called within the runtime).
    fn update(&self, update: Update) {
        let updates = self.updates.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_updates(self.cluster.clone(), rx));
            tx
        });
        let _ = updates.send(update);
    }

    /// Gives one place of `key` back, in the background.
    fn leave_later(&self, key: &str) {
        self.update(Update::Leave(key.to_owned()));
    }
}

impl fmt::Debug for ClusteredRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusteredRegistry")
            .field("local", &self.local)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// A restore's ticket, given back to the local registry when the restore
/// is dropped while the cluster answers.
struct TicketBack<'a> {
    local: &'a LocalRegistry,
    ticket: &'a Ticket,
    armed: bool,
}

impl Drop for TicketBack<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.local.abandon(self.ticket);
        }
    }
}

#[async_trait]
impl SessionRegistry for ClusteredRegistry {
    async fn create(&self, conn: &Connection, session: Arc<Session>) -> Result<(), Refused> {
        let key = session.key.clone();
        self.local.create(conn, session).await?;
        // Nothing may wait between a create and its notification.
        self.update(Update::Join(key));
        Ok(())
    }

    async fn begin_restore(&self, key: &str) -> Result<Ticket, Refused> {
        self.local.begin_restore(key).await
    }

    async fn join(
        &self,
        ticket: &Ticket,
        conn: &Connection,
        session: Arc<Session>,
    ) -> Result<(), Refused> {
        let key = session.key.clone();
        let mut back = TicketBack {
            local: &self.local,
            ticket,
            armed: true,
        };
        let (answer, answered) = oneshot::channel();
        self.update(Update::Restore {
            key: key.clone(),
            max: self.max,
            answer,
        });
        match answered.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(Refused::Full),
            Ok(Err(err)) => {
                tracing::error!(session = %redacted(&key), error = %err, "the cluster could not count a restored session's connections");
                return Err(Refused::Unavailable);
            }
            Err(_) => return Err(Refused::Unavailable),
        }
        back.armed = false;
        drop(back);
        let joined = self.local.join(ticket, conn, session).await;
        if joined.is_err() {
            self.leave_later(&key);
        }
        joined
    }

    fn abandon(&self, ticket: &Ticket) {
        self.local.abandon(ticket);
    }

    async fn leave(&self, conn: &Connection, how: Leave) -> Option<Left> {
        let left = self.local.leave(conn, how).await?;
        self.leave_later(&left.key);
        Some(left)
    }

    async fn close_everywhere(&self, key: &str) -> Option<Vec<Connection>> {
        let connections = self.local.close_everywhere(key).await?;
        if !connections.is_empty() {
            self.update(Update::Clear(key.to_owned()));
        }
        Some(connections)
    }

    fn destroyed(&self, key: &str) {
        self.local.destroyed(key);
    }

    fn active_sessions(&self) -> usize {
        self.local.active_sessions()
    }

    fn connections(&self, key: &str) -> Vec<Connection> {
        self.local.connections(key)
    }

    fn connection_count(&self, key: &str) -> usize {
        self.local.connection_count(key)
    }

    fn session_counts(&self) -> Vec<(String, usize)> {
        self.local.session_counts()
    }
}
