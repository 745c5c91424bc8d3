//! The session registry of a node in a cluster: the local registry for the
//! connections' slots, plus the cluster's count of each session's
//! connections on all nodes, for the per-session limit and for deciding
//! whether a close destroys the session.
//!
//! Every count change goes, in order, through one queue per server to one
//! task that tells the cluster: creates, leaves and clears without
//! waiting, restores waiting for the answer (whether the session has room),
//! and a close on this node's last connection waiting for the session's
//! count on all nodes (it destroys the session only at 0). So a node's
//! changes reach Redis in the order they happened, and a restore whose
//! caller stopped waiting cannot leave a count changed halfway: the task
//! gives back a place nobody took.
//!
//! The task also keeps what this node's count of each session should be.
//! A change whose answer did not arrive (Redis paused or unreachable) may
//! be applied late or never, so its session is marked; the marked counts
//! are then written as values, in one call, until that succeeds. Until
//! then the other changes are only noted (a long outage leaves one value
//! per session to write, not a backlog of calls), and restores fail at
//! once for a moment after a failure rather than each waiting for Redis.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webwire_proto::Session;

use super::redacted;
use super::registry::{Leave, Left, LocalRegistry, Refused, SessionRegistry, Ticket};
use crate::cluster::{ClusterError, ErasedCluster, SessionJoin};
use crate::Connection;

/// How long after a failed cluster call restores and last closes fail at
/// once, and the marked counts are written again.
const RETRY: Duration = Duration::from_secs(1);

/// A [`LocalRegistry`] whose per-session limit spans the cluster.
pub(crate) struct ClusteredRegistry {
    local: LocalRegistry,
    cluster: Arc<dyn ErasedCluster>,
    max: usize,
    /// The queue of count changes; its task starts with the first change.
    updates: OnceLock<mpsc::UnboundedSender<Update>>,
}

/// A change of this node's count of a session's connections.
enum Update {
    /// One more (a new session: no limit).
    Join(String),
    /// One more if the session has fewer than `max` connections on all
    /// nodes; the answer goes back to the restore.
    Restore {
        key: String,
        max: usize,
        answer: oneshot::Sender<Result<SessionJoin, ClusterError>>,
    },
    /// One less.
    Leave(String),
    /// One less, the last of this node: the answer is the session's count
    /// on all nodes after it.
    LeaveLast {
        key: String,
        answer: oneshot::Sender<Result<Option<usize>, ClusterError>>,
    },
    /// None any more.
    Clear(String),
}

/// A change nobody waits for.
#[derive(Clone, Copy)]
enum Change {
    Join,
    Leave,
    Clear,
}

/// The task's state: what this node's counts should be in the cluster.
struct Counter {
    cluster: Arc<dyn ErasedCluster>,
    /// This node's count of each session, as the cluster should hold it:
    /// its connections, and places taken by restores still under way.
    counts: HashMap<String, usize>,
    /// Sessions whose count in the cluster may be wrong: a change was not
    /// answered. Written as values by [`repair`](Self::repair).
    dirty: HashSet<String>,
    /// When a cluster call last failed, while some count is dirty.
    failed: Option<Instant>,
}

impl Counter {
    fn add(&mut self, key: &str) {
        *self.counts.entry(key.to_owned()).or_default() += 1;
    }

    fn remove(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// A call about `key` got no answer: its count is to be written again.
    fn fail(&mut self, key: &str, err: &ClusterError) {
        if self.failed.is_none() {
            tracing::warn!(error = %err, "the cluster did not take a session count change; this node's counts will be written again once it answers");
        }
        self.dirty.insert(key.to_owned());
        self.failed = Some(Instant::now());
    }

    /// Whether a call failed less than [`RETRY`] ago (then restores and
    /// last closes fail at once).
    fn holding_off(&self) -> bool {
        self.failed.is_some_and(|at| at.elapsed() < RETRY)
    }

    /// Writes the dirty counts as values; returns whether the cluster took
    /// them (or none was dirty).
    async fn repair(&mut self) -> bool {
        if self.dirty.is_empty() {
            return true;
        }
        let counts: Vec<(String, usize)> = self
            .dirty
            .iter()
            .map(|key| (key.clone(), self.counts.get(key).copied().unwrap_or(0)))
            .collect();
        match self.cluster.set_session_counts(&counts).await {
            Ok(()) => {
                tracing::info!(
                    sessions = counts.len(),
                    "the cluster took this node's session counts again"
                );
                self.dirty.clear();
                self.failed = None;
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, "writing this node's session counts again failed");
                self.failed = Some(Instant::now());
                false
            }
        }
    }

    /// A change that nobody waits for: sent as it is, or, while some count
    /// is dirty (the cluster is not answering), only noted for the repair.
    async fn send(&mut self, kind: Change, key: String) {
        match kind {
            Change::Join => self.add(&key),
            Change::Leave => self.remove(&key),
            Change::Clear => {
                self.counts.remove(&key);
            }
        }
        if !self.dirty.is_empty() {
            self.dirty.insert(key);
            return;
        }
        let result = match kind {
            Change::Join => self.cluster.join_session(&key, 0).await.map(drop),
            Change::Leave => self.cluster.leave_session(&key).await,
            Change::Clear => self.cluster.clear_session(&key).await,
        };
        if let Err(err) = result {
            self.fail(&key, &err);
        }
    }

    async fn handle(&mut self, update: Update) {
        match update {
            Update::Join(key) => self.send(Change::Join, key).await,
            Update::Leave(key) => self.send(Change::Leave, key).await,
            Update::Clear(key) => self.send(Change::Clear, key).await,
            Update::Restore { key, max, answer } => {
                // A dirty count may hold a place nobody has (a join applied
                // after its timeout): written first.
                if self.holding_off() || !self.repair().await {
                    let _ = answer.send(Err(ClusterError::msg(
                        "the cluster did not answer a moment ago",
                    )));
                    return;
                }
                let result = self.cluster.join_session(&key, max).await;
                if let Err(err) = &result {
                    // Redis may apply the join late: this node's count of
                    // the session is written again.
                    self.fail(&key, err);
                }
                let placed = matches!(result, Ok(SessionJoin::Counted));
                if placed {
                    self.add(&key);
                }
                if answer.send(result).is_err() && placed {
                    // The restore was dropped: give its place back.
                    self.send(Change::Leave, key).await;
                }
            }
            Update::LeaveLast { key, answer } => {
                self.remove(&key);
                if self.holding_off() {
                    self.dirty.insert(key);
                    let _ = answer.send(Err(ClusterError::msg(
                        "the cluster did not answer a moment ago",
                    )));
                    return;
                }
                let count = self.counts.get(&key).copied().unwrap_or(0);
                let result = self.cluster.leave_session_last(&key, count).await;
                match &result {
                    // The value was written: the count is right again.
                    Ok(_) => {
                        self.dirty.remove(&key);
                        if self.dirty.is_empty() {
                            self.failed = None;
                        }
                    }
                    Err(err) => self.fail(&key, err),
                }
                let _ = answer.send(result);
            }
        }
    }
}
/// Tells the cluster about count changes, one after the other, and writes
/// dirty counts again every [`RETRY`] until the cluster takes them.
async fn run_updates(
    cluster: Arc<dyn ErasedCluster>,
    mut updates: mpsc::UnboundedReceiver<Update>,
) {
    let mut counter = Counter {
        cluster,
        counts: HashMap::new(),
        dirty: HashSet::new(),
        failed: None,
    };
    loop {
        let retry_at = counter
            .failed
            .filter(|_| !counter.dirty.is_empty())
            .map(|at| at + RETRY);
        let update = match retry_at {
            None => updates.recv().await,
            Some(at) => tokio::select! {
                update = updates.recv() => update,
                () = tokio::time::sleep_until(at) => {
                    counter.repair().await;
                    continue;
                }
            },
        };
        match update {
            Some(update) => counter.handle(update).await,
            None => return,
        }
    }
}

impl ClusteredRegistry {
    pub(crate) fn new(max: usize, cluster: Arc<dyn ErasedCluster>) -> Self {
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
            Ok(Ok(SessionJoin::Counted)) => {}
            Ok(Ok(SessionJoin::Full)) => return Err(Refused::Full),
            // Closed on its last connection of all nodes after the lookup
            // found it: deleted from the store, or about to be.
            Ok(Ok(SessionJoin::Destroyed)) => return Err(Refused::Gone),
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
        // A close on this node's last connection destroys the session only
        // if no other node holds it: decided after the cluster's count.
        let mut left = self.local.leave_now(conn, how, false)?;
        if how == Leave::Disconnect || !left.last {
            self.leave_later(&left.key);
            return Some(left);
        }
        let (answer, answered) = oneshot::channel();
        self.update(Update::LeaveLast {
            key: left.key.clone(),
            answer,
        });
        let held_elsewhere = match answered.await {
            Ok(Ok(None | Some(0))) => false,
            Ok(Ok(Some(connections))) => {
                tracing::debug!(
                    connections,
                    "a session closed on this node's last connection is held on other nodes; it stays"
                );
                true
            }
            // Whether other nodes hold it cannot be known: keep it.
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "the cluster could not count a closed session's connections; it is not deleted");
                true
            }
            Err(_) => true,
        };
        left.destroy = !held_elsewhere && self.local.claim_destroy(&left.key);
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
