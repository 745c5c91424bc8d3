//! Sending on streams and joining sessions to history rooms: the
//! application's side of docs/protocol.md section 14.3.

use bytes::Bytes;
use webwire_proto::{Payload, ServerMessage, Signal};

use super::hub::{Inbound, JoinRefused, Streams};
use super::{HistoryLimits, StreamKey, StreamPosition};
use crate::connection::IntoName;
use crate::error::{SignalError, StreamError};
use crate::room::is_valid_room;
use crate::server::Shared;
use crate::session::ops::is_valid_key;
use crate::{Connection, Server};

impl Server {
    /// Sends a signal on the session stream of the session `key`: the
    /// signal gets the stream's next offset, is kept in its history, and
    /// is queued for every connection of this server holding the session
    /// (without waiting; a connection whose queue is full misses it live,
    /// and the server queues it from history there as soon as the queue
    /// has room, before any later signal of the stream). A client that
    /// reconnects and restores the session gets what it missed, in order,
    /// once, or is told what is lost (docs/protocol.md 14.3). Connections
    /// of 2.0 clients get it as a plain signal. Returns the signal's
    /// position.
    ///
    /// Unlike the fire-and-forget [`signal_session`](Self::signal_session),
    /// which stays as it is for 2.0 users, this waits for the stream store:
    /// when the store fails (one in Redis that is unreachable, say), the
    /// signal is sent to nobody and the error says so, rather than
    /// delivered without its place in the stream. Use this one for what a
    /// client must not miss across reconnects, `signal_session` for what it
    /// may.
    ///
    /// With a stream store shared by several nodes, the store hands the
    /// signal to the other nodes' connections (see
    /// [`deliver_stream_entry`](Self::deliver_stream_entry)).
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, key: &str) -> Result<(), webwire_server::error::StreamError> {
    /// let at = server.signal_session_stream(key, "order-shipped", "#1234").await?;
    /// println!("offset {} of epoch {:x}", at.offset, at.epoch);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn signal_session_stream(
        &self,
        key: &str,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<StreamPosition, StreamError> {
        if !is_valid_key(key.as_bytes()) {
            return Err(StreamError::InvalidKey);
        }
        let sessions = self.shared.sessions();
        let name = name.into_name().map_err(SignalError::from)?;
        send(
            sessions,
            self.shared.rooms(),
            self.shared.config().buffer_size,
            StreamKey::session(key),
            name,
            payload.into(),
        )
        .await
    }

    /// Sends a signal on the stream of the room `room`, which must have
    /// history ([`ServerBuilder::room_history`](crate::ServerBuilder::room_history)):
    /// as [`signal_session_stream`](Self::signal_session_stream), for the
    /// room's members on this server. Every member gets it, the sender's
    /// own connection too (skipping it would leave a hole in its offsets).
    ///
    /// [`room_signal`](Self::room_signal) stays fire-and-forget, for plain
    /// rooms and 2.0 users; for a room with history, use this one, or the
    /// signals sent with `room_signal` are not in its history.
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server) -> Result<(), webwire_server::error::StreamError> {
    /// server.signal_room_stream("chat:lobby", "message", "hello").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn signal_room_stream(
        &self,
        room: &str,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<StreamPosition, StreamError> {
        let name = name.into_name().map_err(SignalError::from)?;
        send(
            self.shared.sessions(),
            self.shared.rooms(),
            self.shared.config().buffer_size,
            StreamKey::room(room),
            name,
            payload.into(),
        )
        .await
    }

    /// Delivers a stream signal appended elsewhere (by another node, to a
    /// stream store shared by the cluster) to this server's connections:
    /// the hook through which such a store hands over what it publishes.
    /// `frame` is the stored 2.0 Signal. Returns how many connections it
    /// was queued for.
    ///
    /// It takes the stream's order like a local send, so it never
    /// interleaves with a resume on this node. A connection may still see
    /// another node's signal before an earlier one of this node; its
    /// client treats that as a gap and repairs it from history.
    pub async fn deliver_stream_entry(
        &self,
        stream: &StreamKey,
        at: StreamPosition,
        frame: Bytes,
    ) -> usize {
        let Some(signal) = entry_signal(&self.shared, stream, at, &frame) else {
            return 0;
        };
        let streams = self.shared.sessions().streams();
        let _order = streams.lock(stream).await;
        let targets = stream_targets(self.shared.sessions(), self.shared.rooms(), stream);
        streams.deliver(targets, stream, at, &frame, &signal)
    }

    /// Makes the session `key` a member of the history room `room`: every
    /// connection of this server holding the session joins the room, and
    /// so will every connection that restores the session later (on this
    /// server, or on any node with a store that keeps memberships), without
    /// the application joining it again. The membership
    /// is recorded with the room's current end: a client that reconnects
    /// without a position in the room gets the room's signals from there.
    /// Returns whether the session was not a member yet.
    ///
    /// Memberships are kept in memory by this server, for as long as the
    /// session lives, and at most
    /// [`MAX_SESSION_ROOMS`](crate::stream::MAX_SESSION_ROOMS) per session.
    /// With a stream store that keeps them for every node
    /// ([`StreamStore::session_rooms`](crate::stream::StreamStore::session_rooms),
    /// as `webwire_redis::RedisStreamStore` does), they are stored there
    /// too (a failure to store is the error), and a connection that
    /// restores the session on any node is put back into its rooms. With
    /// a cluster, the other nodes' connections holding the session join
    /// the room at once too.
    ///
    /// ```
    /// # async fn f(server: webwire_server::Server, key: &str) -> Result<(), webwire_server::error::StreamError> {
    /// server.join_session_room(key, "chat:lobby").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn join_session_room(&self, key: &str, room: &str) -> Result<bool, StreamError> {
        if !is_valid_key(key.as_bytes()) {
            return Err(StreamError::InvalidKey);
        }
        join_session_room(self.shared.sessions(), key, room).await
    }

    /// Ends the membership of the session `key` in the room `room`: this
    /// server's connections holding the session leave the room, and with
    /// a cluster every other node's (a store that keeps memberships
    /// forgets it, in a task). Returns whether the session was a member
    /// here.
    ///
    /// ```
    /// # fn f(server: webwire_server::Server, key: &str) {
    /// server.leave_session_room(key, "chat:lobby");
    /// # }
    /// ```
    pub fn leave_session_room(&self, key: &str, room: &str) -> bool {
        let sessions = self.shared.sessions();
        let was = sessions.streams().record_leave(key, room);
        // Told to the other nodes after the joins under way (in order).
        sessions.streams().forget_membership(key, room, true);
        for conn in sessions.registry().connections(key) {
            conn.inner.membership().leave(&conn, room);
        }
        was
    }

    /// The history rooms the session `key` is a member of, sorted, as
    /// this server knows them (with a store that keeps memberships for
    /// every node, as read on the session's last restore here, with the
    /// joins and leaves made here since).
    ///
    /// ```
    /// # fn f(server: webwire_server::Server, key: &str) {
    /// for room in server.session_rooms(key) {
    ///     println!("member of {room}");
    /// }
    /// # }
    /// ```
    pub fn session_rooms(&self, key: &str) -> Vec<String> {
        self.shared
            .sessions()
            .streams()
            .session_rooms(key)
            .into_iter()
            .map(|(room, _)| room)
            .collect()
    }
}

impl Connection {
    /// Sends a signal on the session stream of this connection's session,
    /// as [`Server::signal_session_stream`] does (every connection of the
    /// session gets it, this one too). Fails with
    /// [`StreamError::NoSession`] without a session.
    ///
    /// ```
    /// use webwire_server::{Connection, MessageRouter, Payload};
    ///
    /// let router = MessageRouter::new().request("order", |conn: Connection, item: String| async move {
    ///     // ... place the order, then tell every tab of the user, for good:
    ///     conn.signal_session_stream("ordered", item).await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
    /// });
    /// ```
    pub async fn signal_session_stream(
        &self,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<StreamPosition, StreamError> {
        let key = self.session_key().ok_or(StreamError::NoSession)?;
        let name = name.into_name().map_err(SignalError::from)?;
        send(
            self.inner.sessions(),
            self.inner.membership().rooms(),
            self.inner.buffer_size(),
            StreamKey::session(key),
            name,
            payload.into(),
        )
        .await
    }

    /// Sends a signal on the stream of the history room `room`, as
    /// [`Server::signal_room_stream`] does (every member gets it, this
    /// connection too if it is one).
    ///
    /// ```
    /// use webwire_server::{Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("say", |conn: Connection, text: String| async move {
    ///     conn.signal_room_stream("chat:lobby", "message", text).await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
    /// });
    /// ```
    pub async fn signal_room_stream(
        &self,
        room: &str,
        name: impl IntoName,
        payload: impl Into<Payload>,
    ) -> Result<StreamPosition, StreamError> {
        let name = name.into_name().map_err(SignalError::from)?;
        send(
            self.inner.sessions(),
            self.inner.membership().rooms(),
            self.inner.buffer_size(),
            StreamKey::room(room),
            name,
            payload.into(),
        )
        .await
    }

    /// Makes this connection's session a member of the history room
    /// `room`, as [`Server::join_session_room`] does (every connection of
    /// the session joins it, and every connection that restores the
    /// session later). Without a session, the connection alone joins the
    /// room, as [`join_room`](Self::join_room) does. Returns whether the
    /// session (or the connection) was not a member yet.
    ///
    /// ```
    /// use webwire_server::{Connection, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("enter", |conn: Connection, room: String| async move {
    ///     conn.join_session_room(&room).await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
    /// });
    /// ```
    pub async fn join_session_room(&self, room: &str) -> Result<bool, StreamError> {
        let sessions = self.inner.sessions();
        match self.session_key() {
            Some(key) => join_session_room(sessions, &key, room).await,
            None => {
                room_limits(sessions.streams(), room)?;
                Ok(self.inner.membership().join(self, room)?)
            }
        }
    }

    /// A history room joined with [`join_room`](Self::join_room) by a
    /// connection that has a session: the session becomes a member, from
    /// the room's end as soon as it is read (it cannot be waited for
    /// here).
    pub(crate) fn joined_history_room(&self, room: &str) {
        let Some(key) = self.session_key() else {
            return;
        };
        let sessions = self.inner.sessions().clone();
        let streams = sessions.streams().clone();
        let recorded = streams.record_join(&key, room, None, |key| {
            sessions.registry().connection_count(key) > 0
        });
        if !matches!(recorded, Ok(true)) {
            return;
        }
        let Some(limits) = streams.room_history(room) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let room = room.to_owned();
        runtime.spawn(async move {
            let stream = StreamKey::room(room.clone());
            let _order = streams.lock(&stream).await;
            match streams.store().end(&stream, &limits).await {
                Ok(end) => {
                    streams.set_join_position(&key, &room, end);
                    if let Err(err) = streams.store().join_room(&key, &room, end).await {
                        tracing::warn!(%stream, error = %crate::session::ops::chain(&err), "a session's room membership could not be stored; only this node puts the session back into the room");
                    }
                }
                Err(err) => {
                    tracing::warn!(%stream, error = %crate::session::ops::chain(&err), "the join position of a session's room could not be read; it resumes from the room's end then");
                }
            }
        });
    }

    /// A history room left with [`leave_room`](Self::leave_room) by a
    /// connection that has a session: the session's membership ends.
    pub(crate) fn left_history_room(&self, room: &str) {
        if let Some(key) = self.session_key() {
            let streams = self.inner.sessions().streams();
            streams.record_leave(&key, room);
            streams.forget_membership(&key, room, false);
        }
    }
}

/// The signal of a stream entry from elsewhere; `None` (logged) for a
/// frame that is no signal or too large.
fn entry_signal(
    shared: &Shared,
    stream: &StreamKey,
    at: StreamPosition,
    frame: &Bytes,
) -> Option<Signal> {
    let signal = match ServerMessage::parse(frame.clone()) {
        Ok(ServerMessage::Signal(signal)) => signal,
        _ => {
            tracing::warn!(%stream, offset = at.offset, "a stream entry from the cluster is not a signal; dropped");
            return None;
        }
    };
    if frame.len() > shared.config().buffer_size {
        tracing::warn!(%stream, len = frame.len(), "a stream entry from the cluster exceeds the message buffer size; dropped");
        return None;
    }
    Some(signal)
}

/// This node's connections that get `stream`: the session's, or the
/// room's members.
fn stream_targets(
    sessions: &crate::session::ops::Sessions,
    rooms: &crate::room::Rooms,
    stream: &StreamKey,
) -> Vec<Connection> {
    match stream {
        StreamKey::Session(key) => sessions.registry().connections(key),
        StreamKey::Room(room) => rooms.members(room),
    }
}

/// Delivers a [`ClusterEvent::Stream`](crate::cluster::ClusterEvent::Stream)
/// without waiting, in the order the cluster hands them over: at once when
/// the stream's order is free and no earlier entry of the stream waits
/// (the usual case), otherwise behind the waiting ones, which a task
/// delivers under the stream's order (a resume or a send of this node
/// holds it). Returns how many connections it was queued for at once.
pub(crate) fn deliver_from_cluster(
    shared: &Shared,
    stream: &StreamKey,
    at: StreamPosition,
    frame: &Bytes,
) -> usize {
    let Some(signal) = entry_signal(shared, stream, at, frame) else {
        return 0;
    };
    let streams = shared.sessions().streams();
    let entry = Inbound {
        at,
        frame: frame.clone(),
        signal,
    };
    let Some(entry) = streams.queue_inbound(stream, entry) else {
        return 0;
    };
    if let Some(_order) = streams.try_lock(stream) {
        let targets = stream_targets(shared.sessions(), shared.rooms(), stream);
        return streams.deliver(targets, stream, entry.at, &entry.frame, &entry.signal);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return 0;
    };
    streams.start_inbound(stream, entry);
    let (sessions, rooms, stream) = (
        shared.sessions().clone(),
        shared.rooms().clone(),
        stream.clone(),
    );
    runtime.spawn(async move {
        let streams = sessions.streams();
        let _order = streams.lock(&stream).await;
        while let Some(entry) = streams.next_inbound(&stream) {
            let targets = stream_targets(&sessions, &rooms, &stream);
            streams.deliver(targets, &stream, entry.at, &entry.frame, &entry.signal);
        }
    });
    0
}

/// Appends a signal to `stream` and delivers it to this node's
/// connections of the stream, under the stream's order.
async fn send(
    sessions: &crate::session::ops::Sessions,
    rooms: &crate::room::Rooms,
    buffer_size: usize,
    stream: StreamKey,
    name: webwire_proto::Name,
    payload: Payload,
) -> Result<StreamPosition, StreamError> {
    let streams = sessions.streams();
    let limits = match &stream {
        StreamKey::Session(_) => streams.session_history(),
        StreamKey::Room(room) => room_limits(streams, room)?,
    };
    let signal = Signal::new(name, payload).map_err(SignalError::from)?;
    let sl = match &stream {
        StreamKey::Session(_) => 0,
        StreamKey::Room(room) => room.len(),
    };
    // A StreamSignal's header is 17 + sl bytes longer than the Signal's,
    // and its padding may differ by one byte: checked as the larger.
    let len = signal.encoded_len() + 18 + sl;
    if len > buffer_size {
        return Err(SignalError::TooLarge {
            len,
            max: buffer_size,
        }
        .into());
    }
    let plain = ServerMessage::Signal(signal.clone()).to_bytes();
    let _order = streams.lock(&stream).await;
    let at = streams
        .store()
        .append(&stream, &limits, plain.clone())
        .await
        .map_err(StreamError::Store)?;
    let targets = stream_targets(sessions, rooms, &stream);
    streams.deliver(targets, &stream, at, &plain, &signal);
    Ok(at)
}

/// The history of `room`, or why it has none.
fn room_limits(streams: &Streams, room: &str) -> Result<HistoryLimits, StreamError> {
    if !is_valid_room(room) {
        return Err(StreamError::NoHistory {
            room: room.to_owned(),
        });
    }
    streams
        .room_history(room)
        .ok_or_else(|| StreamError::NoHistory {
            room: room.to_owned(),
        })
}

/// Joins the session `key` to the history room `room` under the room's
/// order: the join position and the connections' joins happen with no
/// signal of the room in between.
async fn join_session_room(
    sessions: &crate::session::ops::Sessions,
    key: &str,
    room: &str,
) -> Result<bool, StreamError> {
    let streams = sessions.streams();
    let limits = room_limits(streams, room)?;
    let stream = StreamKey::room(room);
    let _order = streams.lock(&stream).await;
    let end = streams
        .store()
        .end(&stream, &limits)
        .await
        .map_err(StreamError::Store)?;
    let joined = streams
        .record_join(key, room, Some(end), |key| {
            sessions.registry().connection_count(key) > 0
        })
        .map_err(|refused| match refused {
            JoinRefused::NoHistory => StreamError::NoHistory {
                room: room.to_owned(),
            },
            JoinRefused::TooMany => StreamError::TooManyRooms {
                max: super::MAX_SESSION_ROOMS,
            },
        })?;
    // Stored for every node (a member keeps its first join position).
    if let Err(err) = streams.store().join_room(key, room, end).await {
        if joined {
            streams.record_leave(key, room);
        }
        return Err(StreamError::Store(err));
    }
    if joined {
        streams.publish_membership(key, room, Some(end));
    }
    for conn in sessions.registry().connections(key) {
        match conn.inner.membership().join(&conn, room) {
            // Under the stream's order: its first live signal follows the
            // join position.
            Ok(true) => streams.expect_first(&conn, &stream, Some(end.epoch), end.offset + 1),
            Ok(false) => {}
            Err(err) => {
                tracing::debug!(connection = %conn.id(), room, error = %err, "a connection of the session did not join its room");
            }
        }
    }
    Ok(joined)
}
