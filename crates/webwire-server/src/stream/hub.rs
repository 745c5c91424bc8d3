//! The server's side of streams (docs/protocol.md section 14.3): which
//! rooms keep history, the stream store behind them, the per-stream order
//! in which signals are appended and delivered, and the sessions' room
//! memberships.
//!
//! **Order.** The store numbers signals; it does not order deliveries.
//! Every append and its delivery to this node's connections run under the
//! stream's own lock ([`Streams::lock`]). A resume holds the stream's live
//! signals from its connection, reads history under the lock, queues it
//! without the lock (a client that does not read must not stall the
//! stream's senders), and catches up under the lock again, releasing the
//! hold there: nothing appended meanwhile is skipped or queued twice, and
//! no live signal precedes the history it follows.
//!
//! **Memberships.** A session joins rooms with history; the membership is
//! recorded with the room's end at the time (its *join position*), kept in
//! memory on this node (at most [`MAX_SESSION_ROOMS`] rooms per session),
//! and dropped when the session is destroyed or has had no connection on
//! this node for [`MEMBERSHIP_IDLE`]. A connection that restores the
//! session is put back into its rooms. A store that keeps memberships for
//! every node (`StreamStore::session_rooms`) gets each join and leave too,
//! and a restore first takes the session's memberships from it: a client
//! whose reconnection lands on another node is back in its rooms there.
//! With a cluster, joins and leaves are published too, and the nodes
//! holding connections of the session move them at once
//! ([`Streams::membership_from_cluster`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use webwire_proto::{RoomName, ServerMessage, Signal, StreamId, StreamSignal};

use super::hold::Live;
use super::{
    HistoryLimits, MemoryStreamStore, StreamKey, StreamPosition, StreamRead, StreamStore,
    StreamStoreError,
};
use crate::cluster::{ClusterEvent, ErasedCluster};
use crate::error::SignalError;
use crate::outbox::Outbound;
use crate::room::is_valid_room;
use crate::Connection;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most history rooms one session may be a member of.
pub const MAX_SESSION_ROOMS: usize = 256;

/// How long the room memberships of a session that has no connection on
/// this node are kept: the longest a client may be away and still be put
/// back into its rooms (as long as the session itself lives).
pub const MEMBERSHIP_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// How often a membership change also drops the memberships of sessions
/// idle for [`MEMBERSHIP_IDLE`].
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The session streams' history by default: 1000 signals, 10 minutes.
pub const DEFAULT_SESSION_HISTORY: HistoryLimits =
    HistoryLimits::new(1000, Duration::from_secs(10 * 60));

/// The memberships of a session a store keeps for every node, with their
/// join positions (`None`: it keeps none).
type StoredRooms = Option<Vec<(String, StreamPosition)>>;

/// [`StreamStore`] as an object, which the server holds: the application's
/// store type is erased once, when it is given to the builder.
pub(crate) trait ErasedStreamStore: Send + Sync + fmt::Debug + 'static {
    fn append<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
        frame: Bytes,
    ) -> BoxFuture<'a, Result<StreamPosition, StreamStoreError>>;
    fn read<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
        after: Option<StreamPosition>,
    ) -> BoxFuture<'a, Result<StreamRead, StreamStoreError>>;
    fn end<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, StreamStoreError>>;
    fn remove<'a>(&'a self, stream: &'a StreamKey) -> BoxFuture<'a, Result<(), StreamStoreError>>;
    fn session_rooms<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<StoredRooms, StreamStoreError>>;
    fn join_room<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
        joined: StreamPosition,
    ) -> BoxFuture<'a, Result<(), StreamStoreError>>;
    fn leave_room<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<(), StreamStoreError>>;
}

impl<S: StreamStore> ErasedStreamStore for S {
    fn append<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
        frame: Bytes,
    ) -> BoxFuture<'a, Result<StreamPosition, StreamStoreError>> {
        Box::pin(StreamStore::append(self, stream, limits, frame))
    }

    fn read<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
        after: Option<StreamPosition>,
    ) -> BoxFuture<'a, Result<StreamRead, StreamStoreError>> {
        Box::pin(StreamStore::read(self, stream, limits, after))
    }

    fn end<'a>(
        &'a self,
        stream: &'a StreamKey,
        limits: &'a HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, StreamStoreError>> {
        Box::pin(StreamStore::end(self, stream, limits))
    }

    fn remove<'a>(&'a self, stream: &'a StreamKey) -> BoxFuture<'a, Result<(), StreamStoreError>> {
        Box::pin(StreamStore::remove(self, stream))
    }

    fn session_rooms<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<StoredRooms, StreamStoreError>> {
        Box::pin(StreamStore::session_rooms(self, session))
    }

    fn join_room<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
        joined: StreamPosition,
    ) -> BoxFuture<'a, Result<(), StreamStoreError>> {
        Box::pin(StreamStore::join_room(self, session, room, joined))
    }

    fn leave_room<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<(), StreamStoreError>> {
        Box::pin(StreamStore::leave_room(self, session, room))
    }
}

/// Which rooms keep history, and how much.
pub(crate) type RoomHistory = Arc<dyn Fn(&str) -> Option<HistoryLimits> + Send + Sync>;

/// The stream options of the builder.
#[derive(Clone)]
pub(crate) struct StreamConfig {
    pub(crate) store: Option<Arc<dyn ErasedStreamStore>>,
    pub(crate) session_history: HistoryLimits,
    pub(crate) room_history: Option<RoomHistory>,
    /// The other nodes, which append to the streams too and are told of
    /// the sessions' joins and leaves.
    pub(crate) cluster: Option<Arc<dyn ErasedCluster>>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            store: None,
            session_history: DEFAULT_SESSION_HISTORY,
            room_history: None,
            cluster: None,
        }
    }
}

impl fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConfig")
            .field("store", &self.store)
            .field("session_history", &self.session_history)
            .field("room_history", &self.room_history.is_some())
            .field("cluster", &self.cluster.is_some())
            .finish()
    }
}

/// A session's history rooms: the join position of each (`None` until it
/// was read, for a join made where no wait is possible).
#[derive(Debug)]
struct SessionRooms {
    rooms: BTreeMap<String, Option<StreamPosition>>,
    /// When a connection of the session last used or left them.
    last_used: Instant,
}

#[derive(Debug)]
struct Memberships {
    sessions: HashMap<String, SessionRooms>,
    last_sweep: Instant,
}

/// A stream signal appended by another node, waiting on this node for
/// its stream's order (see [`Streams::queue_inbound`]).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) at: StreamPosition,
    /// The stored 2.0 Signal, as it goes to 2.0 connections.
    pub(crate) frame: Bytes,
    pub(crate) signal: Signal,
}

/// Why a session could not join a history room.
#[derive(Debug)]
pub(crate) enum JoinRefused {
    NoHistory,
    TooMany,
}

/// The streams of one server: the store, the history options, the order
/// of each stream, and the sessions' memberships.
pub(crate) struct Streams {
    store: Arc<dyn ErasedStreamStore>,
    session_history: HistoryLimits,
    room_history: Option<RoomHistory>,
    locks: Mutex<HashMap<StreamKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Other nodes' signals waiting for their stream's order, in the order
    /// they came; a stream is listed while a task delivers its queue.
    inbound: Mutex<HashMap<StreamKey, VecDeque<Inbound>>>,
    memberships: Mutex<Memberships>,
    cluster: Option<Arc<dyn ErasedCluster>>,
}

impl fmt::Debug for Streams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streams")
            .field("store", &self.store)
            .field("session_history", &self.session_history)
            .field("room_history", &self.room_history.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Streams {
    fn default() -> Self {
        Self::new(StreamConfig::default())
    }
}

impl Streams {
    pub(crate) fn new(config: StreamConfig) -> Self {
        Self {
            store: config
                .store
                .unwrap_or_else(|| Arc::new(MemoryStreamStore::new())),
            session_history: config.session_history,
            room_history: config.room_history,
            locks: Mutex::default(),
            inbound: Mutex::default(),
            memberships: Mutex::new(Memberships {
                sessions: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            cluster: config.cluster,
        }
    }

    /// Records that `conn` starts getting `stream` live from `next` (see
    /// [`ConnStreams::expect`](super::hold::ConnStreams::expect)); call it
    /// before the connection can get a signal of the stream from `next`
    /// on (under the stream's order, or before it joins). Only in a cluster: on one node, appends
    /// and their deliveries run under the stream's order, so a
    /// connection's first signal is never overtaken.
    pub(crate) fn expect_first(
        &self,
        conn: &Connection,
        stream: &StreamKey,
        epoch: Option<u64>,
        next: u64,
    ) {
        if self.cluster.is_some() && conn.streams_granted() {
            conn.inner.stream_state().expect(stream, epoch, next);
        }
    }

    /// Tells the other nodes that the session `key` joined the history
    /// room `room` at `joined` (`None`: left it), so that their
    /// connections of the session join or leave it too.
    pub(crate) fn publish_membership(&self, key: &str, room: &str, joined: Option<StreamPosition>) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(ClusterEvent::SessionRoom {
                key: key.to_owned(),
                room: room.to_owned(),
                joined,
            });
        }
    }

    /// Another node's join (`Some`: where) or leave of the session `key`
    /// in `room`, for `connections`, this node's of the session: recorded,
    /// and they join or leave the room. A connection that joins expects
    /// the room's first signal after `joined` before it is in the room,
    /// so whatever reaches it is either before the join (not written) or
    /// checked against it. Returns how many connections joined or left.
    pub(crate) fn membership_from_cluster(
        self: &Arc<Self>,
        connections: Vec<Connection>,
        key: &str,
        room: &str,
        joined: Option<StreamPosition>,
        registry_alive: impl Fn(&str) -> bool,
    ) -> usize {
        if self.room_history(room).is_none() {
            tracing::debug!(
                room,
                "a membership from the cluster for a room without history here; ignored"
            );
            return 0;
        }
        if connections.is_empty() {
            // Nothing to move (and nothing kept for sessions held on other
            // nodes only); a restore here reads the session's memberships
            // from the store.
            if joined.is_none() {
                self.record_leave(key, room);
            }
            return 0;
        }
        let Some(at) = joined else {
            self.record_leave(key, room);
            return connections
                .iter()
                .filter(|conn| conn.inner.membership().leave(conn, room))
                .count();
        };
        if let Err(refused) = self.record_join(key, room, Some(at), registry_alive) {
            tracing::debug!(session = %crate::session::redacted(key), room, ?refused, "a membership from the cluster not taken");
            return 0;
        }
        let stream = StreamKey::room(room);
        let mut changed = 0;
        for conn in connections {
            let membership = conn.inner.membership();
            if membership.contains(room) {
                continue;
            }
            let first = StreamPosition::new(at.epoch, at.offset.saturating_add(1));
            self.expect_first(&conn, &stream, Some(first.epoch), first.offset);
            match membership.join(&conn, room) {
                Ok(_) => {
                    changed += 1;
                    // Signals after the join can have come before this
                    // event (another channel): they are queued from
                    // history now, not when a later one shows the hole.
                    if conn.streams_granted() {
                        self.repair_later(conn, &stream, first);
                    }
                }
                Err(err) => {
                    tracing::debug!(connection = %conn.id(), room, error = %err, "a connection of the session did not join its room");
                }
            }
        }
        changed
    }

    /// The stream store.
    pub(crate) fn store(&self) -> &dyn ErasedStreamStore {
        &*self.store
    }

    /// The history of the session streams.
    pub(crate) fn session_history(&self) -> HistoryLimits {
        self.session_history
    }

    /// The history of `room`; `None`: the room has none (no stream).
    pub(crate) fn room_history(&self, room: &str) -> Option<HistoryLimits> {
        if !is_valid_room(room) {
            return None;
        }
        self.room_history.as_ref().and_then(|history| history(room))
    }

    /// Takes the order of `stream`: appends with their deliveries, and
    /// resumes with their queueing, run one at a time per stream.
    pub(crate) async fn lock(&self, stream: &StreamKey) -> StreamGuard<'_> {
        let mutex = self.lock_map().entry(stream.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        StreamGuard {
            streams: self,
            key: stream.clone(),
            guard: Some(guard),
        }
    }

    /// The order of `stream` if nobody holds it, without waiting.
    pub(crate) fn try_lock(&self, stream: &StreamKey) -> Option<StreamGuard<'_>> {
        let mutex = self.lock_map().entry(stream.clone()).or_default().clone();
        let Ok(guard) = mutex.clone().try_lock_owned() else {
            // As a guard's drop: the lock is forgotten if its holder let
            // go meanwhile.
            let mut map = self.lock_map();
            drop(mutex);
            if map
                .get(stream)
                .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
            {
                map.remove(stream);
            }
            return None;
        };
        drop(mutex);
        Some(StreamGuard {
            streams: self,
            key: stream.clone(),
            guard: Some(guard),
        })
    }

    fn inbound_map(&self) -> MutexGuard<'_, HashMap<StreamKey, VecDeque<Inbound>>> {
        // Every change is a single map or queue operation.
        self.inbound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues another node's `entry` behind the entries of `stream`
    /// already waiting for its order, so that it cannot overtake them;
    /// gives it back when none waits (deliver it now if the order is free,
    /// else start a queue with [`start_inbound`](Self::start_inbound)).
    pub(crate) fn queue_inbound(&self, stream: &StreamKey, entry: Inbound) -> Option<Inbound> {
        match self.inbound_map().get_mut(stream) {
            Some(waiting) => {
                waiting.push_back(entry);
                None
            }
            None => Some(entry),
        }
    }

    /// Starts the queue of `stream` with `entry`; the caller then delivers
    /// the queue under the stream's order ([`next_inbound`](Self::next_inbound)).
    pub(crate) fn start_inbound(&self, stream: &StreamKey, entry: Inbound) {
        self.inbound_map()
            .entry(stream.clone())
            .or_default()
            .push_back(entry);
    }

    /// The next waiting entry of `stream`; `None` ends its queue (later
    /// entries start a new one). Call it under the stream's order.
    pub(crate) fn next_inbound(&self, stream: &StreamKey) -> Option<Inbound> {
        let mut map = self.inbound_map();
        let next = map.get_mut(stream).and_then(VecDeque::pop_front);
        if next.is_none() {
            map.remove(stream);
        }
        next
    }

    fn lock_map(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<tokio::sync::Mutex<()>>>> {
        // Every change is a single map operation.
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn memberships(&self) -> MutexGuard<'_, Memberships> {
        // Every change is complete when the guard is dropped.
        self.memberships
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The history rooms of the session `key`, with their join positions.
    pub(crate) fn session_rooms(&self, key: &str) -> Vec<(String, Option<StreamPosition>)> {
        let mut memberships = self.memberships();
        match memberships.sessions.get_mut(key) {
            Some(rooms) => {
                rooms.last_used = Instant::now();
                rooms
                    .rooms
                    .iter()
                    .map(|(room, at)| (room.clone(), *at))
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// Whether the session `key` is a member of the history room `room`.
    #[cfg(test)]
    pub(crate) fn is_member(&self, key: &str, room: &str) -> bool {
        self.memberships()
            .sessions
            .get(key)
            .is_some_and(|rooms| rooms.rooms.contains_key(room))
    }

    /// Records the session `key` as a member of `room` from `at` (`None`:
    /// read later). Returns whether it was not a member yet; a member
    /// keeps its first join position (a later `Some` fills a `None`).
    pub(crate) fn record_join(
        &self,
        key: &str,
        room: &str,
        at: Option<StreamPosition>,
        registry_alive: impl Fn(&str) -> bool,
    ) -> Result<bool, JoinRefused> {
        if self.room_history(room).is_none() {
            return Err(JoinRefused::NoHistory);
        }
        let now = Instant::now();
        let mut memberships = self.memberships();
        if now.duration_since(memberships.last_sweep) >= SWEEP_EVERY {
            memberships.last_sweep = now;
            memberships.sessions.retain(|key, rooms| {
                now.duration_since(rooms.last_used) < MEMBERSHIP_IDLE || registry_alive(key)
            });
        }
        let rooms = memberships
            .sessions
            .entry(key.to_owned())
            .or_insert_with(|| SessionRooms {
                rooms: BTreeMap::new(),
                last_used: now,
            });
        rooms.last_used = now;
        let full = rooms.rooms.len() >= MAX_SESSION_ROOMS;
        match rooms.rooms.get_mut(room) {
            Some(existing) => {
                if existing.is_none() {
                    *existing = at;
                }
                Ok(false)
            }
            None if full => Err(JoinRefused::TooMany),
            None => {
                rooms.rooms.insert(room.to_owned(), at);
                Ok(true)
            }
        }
    }

    /// Fills the join position of a membership recorded without one.
    pub(crate) fn set_join_position(&self, key: &str, room: &str, at: StreamPosition) {
        if let Some(existing) = self
            .memberships()
            .sessions
            .get_mut(key)
            .and_then(|rooms| rooms.rooms.get_mut(room))
        {
            existing.get_or_insert(at);
        }
    }

    /// Removes the session `key` from `room`; whether it was a member.
    pub(crate) fn record_leave(&self, key: &str, room: &str) -> bool {
        let mut memberships = self.memberships();
        let Some(rooms) = memberships.sessions.get_mut(key) else {
            return false;
        };
        let was = rooms.rooms.remove(room).is_some();
        if rooms.rooms.is_empty() {
            memberships.sessions.remove(key);
        }
        was
    }

    /// The session `key` was destroyed: its memberships and its session
    /// stream go.
    pub(crate) async fn session_destroyed(&self, key: &str) {
        self.memberships().sessions.remove(key);
        let stream = StreamKey::session(key);
        if let Err(err) = self.store.remove(&stream).await {
            tracing::warn!(%stream, error = %crate::session::ops::chain(&err), "the session stream of a closed session could not be removed");
        }
    }

    /// Takes the memberships of the session `key` from a store that keeps
    /// them for every node (made on another node, or ended there): they
    /// replace this node's, but for joins of this node whose position is
    /// still being read. A store that keeps none, or fails (logged), leaves
    /// this node's as they are.
    pub(crate) async fn load_memberships(&self, key: &str) {
        let stored = match self.store.session_rooms(key).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(session = %crate::session::redacted(key), error = %crate::session::ops::chain(&err), "the session's room memberships could not be read from the stream store; this node's are used");
                return;
            }
        };
        let now = Instant::now();
        let mut memberships = self.memberships();
        let pending: Vec<String> = memberships
            .sessions
            .get(key)
            .map(|rooms| {
                rooms
                    .rooms
                    .iter()
                    .filter(|(_, at)| at.is_none())
                    .map(|(room, _)| room.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut rooms: BTreeMap<String, Option<StreamPosition>> = stored
            .into_iter()
            .filter(|(room, _)| self.room_history(room).is_some())
            .take(MAX_SESSION_ROOMS)
            .map(|(room, at)| (room, Some(at)))
            .collect();
        for room in pending {
            if rooms.len() < MAX_SESSION_ROOMS {
                rooms.entry(room).or_insert(None);
            }
        }
        if rooms.is_empty() {
            memberships.sessions.remove(key);
        } else {
            memberships.sessions.insert(
                key.to_owned(),
                SessionRooms {
                    rooms,
                    last_used: now,
                },
            );
        }
    }

    /// Ends the stored membership of the session `key` in `room`, in a
    /// task (logged if it fails), after the room's signals and joins under
    /// way.
    pub(crate) fn forget_membership(self: &Arc<Self>, key: &str, room: &str, publish: bool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if publish {
                self.publish_membership(key, room, None);
            }
            return;
        };
        let (streams, key, room) = (self.clone(), key.to_owned(), room.to_owned());
        runtime.spawn(async move {
            let _order = streams.lock(&StreamKey::room(room.clone())).await;
            if publish {
                // After any join of the room under way, which publishes
                // under the same order: the other nodes see them in order.
                streams.publish_membership(&key, &room, None);
            }
            if let Err(err) = streams.store.leave_room(&key, &room).await {
                tracing::warn!(session = %crate::session::redacted(&key), room, error = %crate::session::ops::chain(&err), "the end of a session's room membership could not be stored; another node may still put the session back into the room");
            }
        });
    }

    /// Puts `conn`, which now holds the session `key`, into the session's
    /// history rooms (a restore, or a session created on it).
    pub(crate) fn rejoin(&self, conn: &Connection, key: &str) {
        for (room, _) in self.session_rooms(key) {
            if let Err(err) = conn.inner.membership().join(conn, &room) {
                tracing::debug!(connection = %conn.id(), room, error = %err, "not put back into a session's room");
            }
        }
    }

    /// `conn` left the session `key` (a close): the session stream's
    /// catch-ups stop writing to it, and it leaves the session's history
    /// rooms (stopping theirs).
    pub(crate) fn left_session(&self, conn: &Connection, key: &str) {
        conn.inner
            .stream_state()
            .left_session(&StreamKey::session(key));
        for (room, _) in self.session_rooms(key) {
            conn.inner.membership().leave(conn, &room);
        }
    }

    /// Queues a stream signal for `targets` without waiting: a connection
    /// with streams granted gets the StreamSignal (none while its hold
    /// keeps the stream from it), any other the plain signal. A 2.1
    /// connection whose queue is full misses it live: the stream is held
    /// from it at once, and a task queues the stream's history from the
    /// missed signal on as soon as there is room (see
    /// [`repair`](super::resume::repair)). The client could not tell the
    /// miss of the first signal it would get of a stream (it has no offset
    /// to see a gap from), so the server repairs every miss itself. Call
    /// it under the stream's lock.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        targets: impl IntoIterator<Item = Connection>,
        stream: &StreamKey,
        at: StreamPosition,
        plain: &Bytes,
        signal: &Signal,
    ) -> usize {
        let mut extended: Option<Option<Bytes>> = None;
        let mut sent = 0;
        for conn in targets {
            let frame = if conn.streams_granted() {
                match conn.inner.stream_state().on_live(stream, at) {
                    Live::Deliver => {}
                    Live::Held | Live::Before => continue,
                    Live::Missed(first) => {
                        tracing::debug!(connection = %conn.id(), %stream, offset = at.offset, first = first.offset, "stream signal came before the connection's first; repaired from history");
                        self.repair_later(conn, stream, first);
                        continue;
                    }
                }
                let frame =
                    extended.get_or_insert_with(|| stream_signal_frame(stream, at, signal.clone()));
                match frame {
                    Some(frame) => frame.clone(),
                    None => continue,
                }
            } else {
                plain.clone()
            };
            match conn.try_send(Outbound::Frame(frame)) {
                Ok(()) => sent += 1,
                Err(SignalError::QueueFull) if conn.streams_granted() => {
                    tracing::debug!(connection = %conn.id(), %stream, offset = at.offset, "stream signal not sent live (queue full); repaired from history");
                    self.repair_later(conn, stream, at);
                }
                Err(err) => {
                    tracing::debug!(connection = %conn.id(), %stream, offset = at.offset, error = %err, "stream signal not sent live");
                }
            }
        }
        sent
    }

    /// Holds `stream` from `conn`, whose full queue missed its signal at
    /// `missed`, and queues the history from there in a task, under the
    /// stream's order as a resume does. Call it under the stream's lock,
    /// so that no later live signal reaches the connection before the
    /// repair, or where the connection expects `missed` first (a join from
    /// the cluster), so that such a signal is repaired too.
    fn repair_later(
        self: &Arc<Self>,
        conn: Connection,
        stream: &StreamKey,
        missed: StreamPosition,
    ) {
        let limits = match stream {
            StreamKey::Session(_) => Some(self.session_history),
            StreamKey::Room(room) => self.room_history(room),
        };
        let (Some(limits), Ok(runtime)) = (limits, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let Ok(catch_up) = conn
            .inner
            .stream_state()
            .begin_catch_up(stream, || super::resume::may_see(&conn, stream))
        else {
            // It left the stream meanwhile: nothing to repair.
            return;
        };
        runtime.spawn(super::resume::repair(
            self.clone(),
            conn,
            catch_up,
            limits,
            missed,
        ));
    }
}

/// The StreamSignal of `signal` at `at` of `stream`, encoded; `None`
/// (logged) for a position with epoch or offset 0, which no store gives.
pub(crate) fn stream_signal_frame(
    stream: &StreamKey,
    at: StreamPosition,
    signal: Signal,
) -> Option<Bytes> {
    match StreamSignal::new(wire_stream(stream), at.epoch, at.offset, signal) {
        Ok(message) => Some(ServerMessage::StreamSignal(message).to_bytes()),
        Err(err) => {
            tracing::error!(%stream, epoch = at.epoch, offset = at.offset, error = %err, "a stream signal without a valid position; not sent");
            None
        }
    }
}

/// The stream as the wire names it.
pub(crate) fn wire_stream(stream: &StreamKey) -> StreamId {
    match stream {
        StreamKey::Session(_) => StreamId::Session,
        // A room with history has a valid name (checked before any append).
        StreamKey::Room(room) => match RoomName::new(room.clone()) {
            Ok(name) => StreamId::Room(name),
            Err(_) => StreamId::Session,
        },
    }
}

/// The order of one stream, held (see [`Streams::lock`]); the stream's
/// lock is forgotten when nobody holds or waits for it.
pub(crate) struct StreamGuard<'a> {
    streams: &'a Streams,
    key: StreamKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.streams.lock_map();
        // Under the map's lock nobody takes a new handle of this mutex.
        drop(self.guard.take());
        if map
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_rooms() -> Streams {
        Streams::new(StreamConfig {
            room_history: Some(Arc::new(|room: &str| {
                room.starts_with("h-").then(HistoryLimits::default)
            })),
            ..StreamConfig::default()
        })
    }

    #[tokio::test]
    async fn stream_locks_are_forgotten_when_free() {
        let streams = Streams::default();
        let first = streams.lock(&StreamKey::room("r")).await;
        assert_eq!(streams.lock_map().len(), 1);
        drop(first);
        assert!(streams.lock_map().is_empty());
    }

    #[tokio::test]
    async fn try_lock_takes_a_free_stream_only() {
        let streams = Streams::default();
        let key = StreamKey::room("r");
        let held = streams.try_lock(&key).expect("free");
        assert!(streams.try_lock(&key).is_none());
        drop(held);
        assert!(streams.lock_map().is_empty());
        assert!(streams.try_lock(&key).is_some());
        assert!(streams.lock_map().is_empty());
    }

    #[tokio::test]
    async fn one_holder_at_a_time_per_stream() {
        let streams = Arc::new(Streams::default());
        let key = StreamKey::room("r");
        let held = streams.lock(&key).await;
        let other = tokio::spawn({
            let streams = streams.clone();
            async move {
                let _guard = streams.lock(&StreamKey::room("r")).await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!other.is_finished(), "waits for the holder");
        // Another stream is not held up.
        drop(streams.lock(&StreamKey::room("s")).await);
        drop(held);
        other.await.unwrap();
        assert!(streams.lock_map().is_empty());
    }

    #[test]
    fn entries_from_the_cluster_wait_behind_the_earlier_ones_of_their_stream() {
        let streams = Streams::default();
        let (r, s) = (StreamKey::room("r"), StreamKey::room("s"));
        let entry = |offset| Inbound {
            at: StreamPosition::new(1, offset),
            frame: Bytes::new(),
            signal: Signal::new(webwire_proto::Name::from_static("x"), Default::default()).unwrap(),
        };
        // Nothing waits: the entry comes back, to be delivered at once.
        let first = streams.queue_inbound(&r, entry(1)).expect("none waits");
        streams.start_inbound(&r, first);
        assert!(streams.queue_inbound(&r, entry(2)).is_none());
        assert!(streams.queue_inbound(&r, entry(3)).is_none());
        // Another stream is not held up.
        assert!(streams.queue_inbound(&s, entry(1)).is_some());
        let order: Vec<u64> = std::iter::from_fn(|| streams.next_inbound(&r))
            .map(|entry| entry.at.offset)
            .collect();
        assert_eq!(order, [1, 2, 3]);
        // The queue is gone: the next entry is delivered at once again.
        assert!(streams.inbound_map().is_empty());
        assert!(streams.queue_inbound(&r, entry(4)).is_some());
    }

    #[test]
    fn memberships_are_bounded_and_only_for_history_rooms() {
        let streams = with_rooms();
        assert!(matches!(
            streams.record_join("k", "plain", None, |_| true),
            Err(JoinRefused::NoHistory)
        ));
        for i in 0..MAX_SESSION_ROOMS {
            assert!(streams
                .record_join("k", &format!("h-{i}"), None, |_| true)
                .unwrap());
        }
        assert!(matches!(
            streams.record_join("k", "h-more", None, |_| true),
            Err(JoinRefused::TooMany)
        ));
        assert!(!streams.record_join("k", "h-0", None, |_| true).unwrap());
        streams.set_join_position("k", "h-0", StreamPosition::new(5, 3));
        streams.set_join_position("k", "h-0", StreamPosition::new(5, 9));
        let rooms = streams.session_rooms("k");
        assert_eq!(rooms[0], ("h-0".into(), Some(StreamPosition::new(5, 3))));
        assert!(streams.record_leave("k", "h-0"));
        assert!(!streams.is_member("k", "h-0"));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_memberships_of_sessions_without_connections_go() {
        let streams = with_rooms();
        streams.record_join("idle", "h-a", None, |_| false).unwrap();
        streams.record_join("held", "h-a", None, |_| true).unwrap();
        tokio::time::advance(MEMBERSHIP_IDLE).await;
        streams
            .record_join("other", "h-a", None, |key| key == "held")
            .unwrap();
        assert!(!streams.is_member("idle", "h-a"));
        assert!(streams.is_member("held", "h-a"));
    }
}
