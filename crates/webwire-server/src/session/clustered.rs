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
//!
//! A last close is decided in the task: it claims the session locally
//! (so a restore of this node still under way answers SessionNotFound if
//! it is destroyed) and asks the cluster for the total of the other
//! nodes, this node counting only its connections. A last close the
//! cluster did not answer is kept undecided (bounded) and decided again
//! once the cluster answers; the task then deletes the session itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webwire_proto::Session;

use super::ops::Deleter;
use super::redacted;
use super::registry::{Leave, Left, LocalRegistry, Refused, SessionRegistry, Ticket};
use crate::cluster::{ClusterError, ErasedCluster, SessionJoin};
use crate::Connection;

/// How long after a failed cluster call restores and last closes fail at
/// once, and the marked counts are written again.
const RETRY: Duration = Duration::from_secs(1);

/// Most last closes kept undecided while the cluster does not answer;
/// beyond, the oldest is forgotten (its session kept until its store TTL).
const MAX_UNDECIDED: usize = 4096;

/// A [`LocalRegistry`] whose per-session limit spans the cluster.
pub(crate) struct ClusteredRegistry {
    local: Arc<LocalRegistry>,
    cluster: Arc<dyn ErasedCluster>,
    /// Deletes sessions whose close the count task decided.
    deleter: Deleter,
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
    /// One less, the last of this node: the answer is whether the session
    /// is destroyed (claimed locally: the closer deletes it).
    LeaveLast {
        key: String,
        answer: oneshot::Sender<Decision>,
    },
    /// None any more.
    Clear(String),
}

/// What became of a session closed on this node's last connection.
#[derive(Debug)]
enum Decision {
    /// No node holds it: claimed locally and tombstoned in the cluster;
    /// to be deleted from the store.
    Destroy,
    /// A connection of this node joined it meanwhile (or it is being
    /// destroyed already).
    HeldHere,
    /// Connections of other nodes hold it.
    HeldElsewhere(usize),
    /// The cluster did not answer: kept, decided again later.
    Unknown(ClusterError),
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
    local: Arc<LocalRegistry>,
    deleter: Deleter,
    /// Sessions closed on this node's last connection while the cluster
    /// did not answer, oldest first: decided again once it answers.
    undecided: VecDeque<String>,
    /// Whether the oldest undecided closes were forgotten (logged once).
    overflowed: bool,
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
                // This close decides now, whatever an earlier one left.
                self.undecided.retain(|other| *other != key);
                let decision = self.decide(&key, true).await;
                if matches!(decision, Decision::Unknown(_)) {
                    self.keep_undecided(key.clone());
                }
                if let Err(Decision::Destroy) = answer.send(decision) {
                    // The close was dropped: nobody else deletes it.
                    delete_later(self.local.clone(), self.deleter.clone(), key);
                }
            }
        }
    }

    /// Decides a close of this node's last connection of `key`: the session
    /// is claimed locally first, so that a restore of this node under way
    /// cannot join it any more (it answers SessionNotFound if the session
    /// is destroyed); the cluster is given this node's count without such
    /// restores' places, and answers the other nodes' total. `left`: the
    /// close's place is still to be given back in the cluster (a decision
    /// taken again has given it back already).
    async fn decide(&mut self, key: &str, left: bool) -> Decision {
        if self.holding_off() {
            self.dirty.insert(key.to_owned());
            return Decision::Unknown(ClusterError::msg("the cluster did not answer a moment ago"));
        }
        let count = self.counts.get(key).copied().unwrap_or(0);
        if !self.local.claim_destroy(key) {
            // Held here after all: a plain leave (or, while counts are
            // dirty, only noted).
            if left && !self.dirty.is_empty() {
                self.dirty.insert(key.to_owned());
            } else if left && let Err(err) = self.cluster.leave_session(key).await {
                self.fail(key, &err);
            }
            return Decision::HeldHere;
        }
        let result = self.cluster.leave_session_last(key, 0).await;
        let decision = match result {
            Ok(None | Some(0)) => Decision::Destroy,
            Ok(Some(total)) => {
                // Not destroyed: the claim is given up (the restores it
                // refused were too early), and the places of restores
                // still under way are counted again until they end.
                self.local.destroyed(key);
                if count > 0
                    && let Err(err) = self
                        .cluster
                        .set_session_counts(&[(key.to_owned(), count)])
                        .await
                {
                    self.fail(key, &err);
                    return Decision::HeldElsewhere(total);
                }
                Decision::HeldElsewhere(total)
            }
            Err(err) => {
                self.local.destroyed(key);
                self.fail(key, &err);
                return Decision::Unknown(err);
            }
        };
        // The value was written: the count is right again.
        self.dirty.remove(key);
        if self.dirty.is_empty() {
            self.failed = None;
        }
        decision
    }

    /// Keeps a last close the cluster did not answer, to decide it again;
    /// beyond [`MAX_UNDECIDED`] the oldest is forgotten.
    fn keep_undecided(&mut self, key: String) {
        if self.undecided.len() >= MAX_UNDECIDED {
            self.undecided.pop_front();
            if !self.overflowed {
                self.overflowed = true;
                tracing::warn!(
                    max = MAX_UNDECIDED,
                    "too many sessions closed while the cluster did not answer; the oldest stay stored until their store TTL"
                );
            }
        }
        self.undecided.push_back(key);
    }

    /// Decides again the last closes the cluster did not answer; a session
    /// no node holds is deleted here.
    async fn decide_again(&mut self) {
        while let Some(key) = self.undecided.pop_front() {
            match self.decide(&key, false).await {
                Decision::Destroy => {
                    tracing::debug!(
                        "a session closed while the cluster did not answer is held nowhere; it is deleted"
                    );
                    delete_later(self.local.clone(), self.deleter.clone(), key);
                }
                Decision::HeldHere | Decision::HeldElsewhere(_) => {}
                Decision::Unknown(_) => {
                    self.undecided.push_front(key);
                    return;
                }
            }
        }
        self.overflowed = false;
    }
}

/// Deletes a session claimed for destruction from the store, in a task of
/// its own, then tells the local registry.
fn delete_later(local: Arc<LocalRegistry>, deleter: Deleter, key: String) {
    tokio::spawn(async move {
        let _ = deleter.delete(&key).await;
        local.destroyed(&key);
    });
}

/// Tells the cluster about count changes, one after the other, and writes
/// dirty counts again every [`RETRY`] until the cluster takes them.
async fn run_updates(
    cluster: Arc<dyn ErasedCluster>,
    local: Arc<LocalRegistry>,
    deleter: Deleter,
    mut updates: mpsc::UnboundedReceiver<Update>,
) {
    let mut counter = Counter {
        cluster,
        local,
        deleter,
        undecided: VecDeque::new(),
        overflowed: false,
        counts: HashMap::new(),
        dirty: HashSet::new(),
        failed: None,
    };
    loop {
        // Once the counts are right again, the undecided closes.
        if !counter.undecided.is_empty() && counter.dirty.is_empty() && !counter.holding_off() {
            counter.decide_again().await;
        }
        let retry_at = counter
            .failed
            .filter(|_| !counter.dirty.is_empty() || !counter.undecided.is_empty())
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
    pub(crate) fn new(max: usize, cluster: Arc<dyn ErasedCluster>, deleter: Deleter) -> Self {
        Self {
            local: Arc::new(LocalRegistry::new(max)),
            cluster,
            deleter,
            max,
            updates: OnceLock::new(),
        }
    }

    /// Queues a count change (called within the runtime).
    fn update(&self, update: Update) {
        let updates = self.updates.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_updates(
                self.cluster.clone(),
                self.local.clone(),
                self.deleter.clone(),
                rx,
            ));
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

/// The answer to a last close: if the close is dropped before reading a
/// decision to destroy, the session is deleted anyway (it is claimed).
struct Answered<'a> {
    answered: Option<oneshot::Receiver<Decision>>,
    local: &'a Arc<LocalRegistry>,
    deleter: &'a Deleter,
    key: String,
}

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        if let Some(mut answered) = self.answered.take()
            && let Ok(Decision::Destroy) = answered.try_recv()
        {
            delete_later(
                self.local.clone(),
                self.deleter.clone(),
                std::mem::take(&mut self.key),
            );
        }
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
                // The outage itself is logged once (WARN) by the count task;
                // every restore refused meanwhile would flood the log.
                tracing::debug!(session = %redacted(&key), error = %err, "the cluster could not count a restored session's connections");
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
        // If this close is dropped after the decision was sent, the
        // guard deletes a destroyed session.
        let mut answered = Answered {
            answered: Some(answered),
            local: &self.local,
            deleter: &self.deleter,
            key: left.key.clone(),
        };
        let decision = match answered.answered.as_mut() {
            Some(rx) => rx.await,
            None => return Some(left),
        };
        answered.answered = None;
        left.destroy = match decision {
            Ok(Decision::Destroy) => true,
            Ok(Decision::HeldHere) => {
                tracing::debug!(
                    "a session closed on this node's last connection was restored on it meanwhile; it stays"
                );
                false
            }
            Ok(Decision::HeldElsewhere(connections)) => {
                tracing::debug!(
                    connections,
                    "a session closed on this node's last connection is held on other nodes; it stays"
                );
                false
            }
            // Whether other nodes hold it cannot be known: kept for now,
            // decided again once the cluster answers.
            Ok(Decision::Unknown(err)) => {
                tracing::warn!(error = %err, "the cluster could not count a closed session's connections; it is not deleted until the cluster answers");
                false
            }
            Err(_) => false,
        };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::SystemTime;

    use tokio::sync::Notify;
    use webwire_core::cluster::{Cluster, ClusterNode};

    use super::*;
    use crate::cluster::{ClusterEvent, ClusterReply};
    use crate::session::registry::SessionSlot;
    use crate::session::{MemorySessionManager, SessionManager};

    /// One node's counts, as the Redis scripts keep them, with a join that
    /// can be held after it took its place.
    #[derive(Debug, Default)]
    struct HeldJoin {
        counts: Mutex<HashMap<String, usize>>,
        destroyed: Mutex<HashSet<String>>,
        armed: AtomicBool,
        joined: Notify,
        release: Notify,
    }

    impl HeldJoin {
        fn count(&self, key: &str) -> usize {
            self.counts.lock().unwrap().get(key).copied().unwrap_or(0)
        }
    }

    impl Cluster for HeldJoin {
        fn attach(&self, _node: ClusterNode) {}
        fn publish(&self, _event: ClusterEvent) {}
        async fn close_session(&self, _key: &str) -> ClusterReply {
            ClusterReply::default()
        }
        async fn join_session(&self, key: &str, _max: usize) -> Result<SessionJoin, ClusterError> {
            if self.destroyed.lock().unwrap().contains(key) {
                return Ok(SessionJoin::Destroyed);
            }
            *self
                .counts
                .lock()
                .unwrap()
                .entry(key.to_owned())
                .or_default() += 1;
            if self.armed.swap(false, Ordering::SeqCst) {
                self.joined.notify_one();
                self.release.notified().await;
            }
            Ok(SessionJoin::Counted)
        }
        async fn leave_session(&self, key: &str) -> Result<(), ClusterError> {
            let mut counts = self.counts.lock().unwrap();
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
            }
            Ok(())
        }
        async fn clear_session(&self, key: &str) -> Result<(), ClusterError> {
            self.counts.lock().unwrap().remove(key);
            Ok(())
        }
        async fn leave_session_last(
            &self,
            key: &str,
            count: usize,
        ) -> Result<Option<usize>, ClusterError> {
            self.counts.lock().unwrap().insert(key.to_owned(), count);
            if count == 0 {
                self.destroyed.lock().unwrap().insert(key.to_owned());
            }
            Ok(Some(count))
        }
        async fn set_session_counts(&self, counts: &[(String, usize)]) -> Result<(), ClusterError> {
            for (key, n) in counts {
                if !self.destroyed.lock().unwrap().contains(key) {
                    self.counts.lock().unwrap().insert(key.clone(), *n);
                }
            }
            Ok(())
        }
        async fn session_connections(&self, key: &str) -> Result<Option<usize>, ClusterError> {
            Ok(Some(self.count(key)))
        }
    }

    fn busy(conn: &Connection) {
        *conn.session_slot() = SessionSlot::Busy;
    }

    /// A restore that took its place in the cluster's count but then fails
    /// (its connection ended) must not make the close of the session's
    /// last connection keep it: nobody would delete it afterwards.
    #[tokio::test]
    async fn a_restore_under_way_does_not_keep_a_closed_session() {
        let store = Arc::new(MemorySessionManager::new());
        let cluster = Arc::new(HeldJoin::default());
        let registry = Arc::new(ClusteredRegistry::new(
            3,
            cluster.clone(),
            Deleter::new(store.clone()),
        ));
        let session = Arc::new(Session::new("k", SystemTime::now(), None));
        store.on_session_created(&session).await.unwrap();
        let (a, b) = (Connection::detached(), Connection::detached());
        busy(&a);
        registry.create(&a, session.clone()).await.unwrap();

        // b's restore takes its place in the cluster's count, then waits.
        busy(&b);
        let ticket = registry.begin_restore("k").await.unwrap();
        cluster.armed.store(true, Ordering::SeqCst);
        let joining = tokio::spawn({
            let (registry, b, session) = (registry.clone(), b.clone(), session.clone());
            async move { registry.join(&ticket, &b, session).await }
        });
        cluster.joined.notified().await;

        // a, the only holder, closes it; b ends before its restore joins.
        let closing = tokio::spawn({
            let (registry, a) = (registry.clone(), a.clone());
            async move { registry.leave(&a, Leave::Close).await }
        });
        while registry.connection_count("k") > 0 {
            tokio::task::yield_now().await;
        }
        assert!(registry.leave(&b, Leave::Disconnect).await.is_none());
        cluster.release.notify_one();

        assert!(joining.await.unwrap().is_err(), "b's restore failed");
        let left = closing.await.unwrap().unwrap();
        assert!(
            left.destroy,
            "no connection holds the session: the close destroys it"
        );
        // The restore's place is given back; nothing joins it any more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while cluster.count("k") > 0 {
            assert!(
                Instant::now() < deadline,
                "the restore's place is given back"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(
            Cluster::join_session(&*cluster, "k", 3).await.unwrap(),
            SessionJoin::Destroyed
        );
        assert_eq!(
            registry.begin_restore("k").await.unwrap_err(),
            Refused::Gone,
            "being destroyed until the closer deleted it"
        );
    }
}
