//! Rooms: named groups of connections that can be signalled together.
//!
//! A connection joins and leaves rooms ([`Connection::join_room`],
//! [`Connection::leave_room`]) and leaves all of them when it closes. The
//! server signals a room ([`Server::room_signal`](crate::Server::room_signal)):
//! the signal is encoded once and the same bytes are queued for every
//! member without waiting, so a member that does not read misses it
//! instead of holding up the room. With a cluster configured, a room
//! signal also reaches the room's members on the other nodes; membership
//! itself stays local to each node.
//!
//! Two locks: each connection's own set of rooms (taken first), then the
//! server's map of rooms. A connection whose set is gone (it closed) can
//! join nothing, so no closed connection stays in a room.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::connection::ConnectionId;
use crate::outbox::Outbound;
use crate::Connection;

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME_LEN: usize = 255;

/// Why a connection could not join a room.
///
/// ```
/// # async fn f(conn: webwire_server::Connection) {
/// use webwire_server::error::RoomError;
///
/// assert_eq!(conn.join_room(""), Err(RoomError::InvalidName));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The name is empty or longer than [`MAX_ROOM_NAME_LEN`] bytes.
    #[error("a room name must be 1 to {MAX_ROOM_NAME_LEN} bytes")]
    InvalidName,
    /// The connection has closed.
    #[error("the connection is closed")]
    Closed,
}

/// Whether `room` may name a room.
pub(crate) fn is_valid_room(room: &str) -> bool {
    (1..=MAX_ROOM_NAME_LEN).contains(&room.len())
}

/// The rooms of one server.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<ConnectionId, Connection>>>,
}

impl Rooms {
    fn map(&self) -> MutexGuard<'_, HashMap<String, HashMap<ConnectionId, Connection>>> {
        // Every change is a single map operation.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This node's members of `room`.
    pub(crate) fn members(&self, room: &str) -> Vec<Connection> {
        self.map()
            .get(room)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many of this node's connections are in `room`.
    pub(crate) fn count(&self, room: &str) -> usize {
        self.map().get(room).map_or(0, HashMap::len)
    }

    /// Queues `frame` for every member of `room` except `except`, without
    /// waiting; returns how many it was queued for.
    pub(crate) fn send(&self, room: &str, frame: &Bytes, except: Option<ConnectionId>) -> usize {
        let mut sent = 0;
        for conn in self.members(room) {
            if Some(conn.id()) == except {
                continue;
            }
            match conn.try_send(Outbound::Frame(frame.clone())) {
                Ok(()) => sent += 1,
                Err(err) => {
                    tracing::debug!(connection = %conn.id(), room, error = %err, "room signal not sent");
                }
            }
        }
        sent
    }
}

/// A connection's rooms: its own set (`None` once it closed) and the
/// server's map.
#[derive(Debug)]
pub(crate) struct Membership {
    rooms: Arc<Rooms>,
    joined: Mutex<Option<HashSet<String>>>,
}

impl Membership {
    pub(crate) fn new(rooms: Arc<Rooms>) -> Self {
        Self {
            rooms,
            joined: Mutex::new(Some(HashSet::new())),
        }
    }

    /// The server's rooms.
    pub(crate) fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    fn joined(&self) -> MutexGuard<'_, Option<HashSet<String>>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn join(&self, conn: &Connection, room: &str) -> Result<bool, RoomError> {
        if !is_valid_room(room) {
            return Err(RoomError::InvalidName);
        }
        let mut joined = self.joined();
        let Some(set) = joined.as_mut() else {
            return Err(RoomError::Closed);
        };
        if !set.insert(room.to_owned()) {
            return Ok(false);
        }
        self.rooms
            .map()
            .entry(room.to_owned())
            .or_default()
            .insert(conn.id(), conn.clone());
        Ok(true)
    }

    pub(crate) fn leave(&self, conn: &Connection, room: &str) -> bool {
        // In one step with the connection's stream hold: a catch-up of the
        // room's history (a resume, a repair) stops writing, so nothing of
        // the room is queued behind the leave.
        conn.inner
            .stream_state()
            .leave_stream(&crate::stream::StreamKey::room(room), || {
                let mut joined = self.joined();
                let Some(set) = joined.as_mut() else {
                    return false;
                };
                if !set.remove(room) {
                    return false;
                }
                remove(&mut self.rooms.map(), room, conn.id());
                true
            })
    }

    /// Whether the connection is in `room`.
    pub(crate) fn contains(&self, room: &str) -> bool {
        self.joined().as_ref().is_some_and(|set| set.contains(room))
    }

    pub(crate) fn list(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .joined()
            .as_ref()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        rooms.sort_unstable();
        rooms
    }

    /// The connection closed: it leaves every room and can join none.
    pub(crate) fn leave_all(&self, id: ConnectionId) {
        let Some(set) = self.joined().take() else {
            return;
        };
        let mut map = self.rooms.map();
        for room in &set {
            remove(&mut map, room, id);
        }
    }
}

fn remove(
    map: &mut HashMap<String, HashMap<ConnectionId, Connection>>,
    room: &str,
    id: ConnectionId,
) {
    if let Some(members) = map.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            map.remove(room);
        }
    }
}

impl Connection {
    /// Joins the room `room` (1 to 255 bytes); returns whether the
    /// connection was not in it yet. The connection leaves all its rooms
    /// when it closes.
    ///
    /// ```
    /// use webwire_server::{Connection, Payload, MessageRouter};
    ///
    /// let router = MessageRouter::new().request("join", |conn: Connection, room: String| async move {
    ///     conn.join_room(&room)?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>("ok")
    /// });
    /// ```
    ///
    /// A room with history ([`ServerBuilder::room_history`](crate::ServerBuilder::room_history))
    /// joined by a connection that has a session makes the session a
    /// member (see [`join_session_room`](Self::join_session_room), which
    /// also records where in the room the session joined, and joins the
    /// session's other connections).
    pub fn join_room(&self, room: &str) -> Result<bool, RoomError> {
        let joined = self.inner.membership().join(self, room)?;
        if self.inner.sessions().streams().room_history(room).is_some() {
            self.joined_history_room(room);
        }
        Ok(joined)
    }

    /// Leaves the room `room`; returns whether the connection was in it.
    ///
    /// ```
    /// # fn f(conn: webwire_server::Connection) {
    /// conn.leave_room("lobby");
    /// # }
    /// ```
    ///
    /// A room with history left by a connection that has a session ends
    /// the session's membership (its other connections stay in the room
    /// until they close; see [`Server::leave_session_room`](crate::Server::leave_session_room)).
    pub fn leave_room(&self, room: &str) -> bool {
        if self.inner.sessions().streams().room_history(room).is_some() {
            self.left_history_room(room);
        }
        self.inner.membership().leave(self, room)
    }

    /// The rooms this connection is in, sorted (none once it closed).
    ///
    /// ```
    /// # fn f(conn: webwire_server::Connection) {
    /// for room in conn.rooms() {
    ///     println!("in {room}");
    /// }
    /// # }
    /// ```
    pub fn rooms(&self) -> Vec<String> {
        self.inner.membership().list()
    }

    pub(crate) fn leave_all_rooms(&self) {
        self.inner.membership().leave_all(self.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_and_close() {
        let rooms = Arc::new(Rooms::default());
        let (a, _ra) = Connection::detached_in(rooms.clone(), 1);
        let (b, _rb) = Connection::detached_in(rooms.clone(), 2);
        assert_eq!(a.join_room("r"), Ok(true));
        assert_eq!(a.join_room("r"), Ok(false));
        assert_eq!(b.join_room("r"), Ok(true));
        assert_eq!(b.join_room("s"), Ok(true));
        assert_eq!(rooms.count("r"), 2);
        assert_eq!(b.rooms(), ["r", "s"]);
        assert!(a.leave_room("r"));
        assert!(!a.leave_room("r"));
        assert_eq!(rooms.count("r"), 1);
        b.leave_all_rooms();
        assert_eq!(rooms.count("r"), 0);
        assert_eq!(rooms.count("s"), 0);
        assert!(rooms.map().is_empty(), "empty rooms are removed");
        assert_eq!(b.join_room("r"), Err(RoomError::Closed));
        assert!(b.rooms().is_empty());
    }

    #[test]
    fn names_are_checked() {
        let (a, _ra) = Connection::detached_in(Arc::default(), 1);
        assert_eq!(a.join_room(""), Err(RoomError::InvalidName));
        assert_eq!(
            a.join_room(&"x".repeat(MAX_ROOM_NAME_LEN + 1)),
            Err(RoomError::InvalidName)
        );
        assert_eq!(a.join_room(&"x".repeat(MAX_ROOM_NAME_LEN)), Ok(true));
    }

    #[test]
    fn send_skips_the_excepted_and_full_queues() {
        let rooms = Arc::new(Rooms::default());
        let (a, _ra) = Connection::detached_in(rooms.clone(), 1);
        let (b, _rb) = Connection::detached_in(rooms.clone(), 2);
        a.join_room("r").unwrap();
        b.join_room("r").unwrap();
        let frame = Bytes::from_static(b"x");
        assert_eq!(rooms.send("r", &frame, Some(a.id())), 1);
        // The detached connections' queues hold 2 messages and nobody reads them.
        assert_eq!(rooms.send("r", &frame, None), 2);
        assert_eq!(rooms.send("r", &frame, None), 1, "b's full queue misses it");
        assert_eq!(rooms.send("r", &frame, None), 0, "both queues are full");
    }
}
