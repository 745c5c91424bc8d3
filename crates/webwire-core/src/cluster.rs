//! Several servers (nodes) acting as one: the small interface a cluster
//! adapter implements (`webwire-redis` has one over Redis pub/sub), so that
//! this crate does not depend on any message bus.
//!
//! With a cluster given to `webwire-server`'s `ServerBuilder::cluster`:
//!
//! - `Server::signal_all`, `Server::room_signal` and
//!   `Server::signal_session` deliver locally at once and hand the encoded
//!   signal to [`Cluster::publish`], which the other nodes deliver to their
//!   own connections ([`ClusterNode::deliver`]);
//! - `Server::close_session` also asks every other live node to close the
//!   session ([`Cluster::close_session`], answered by
//!   [`ClusterNode::close_session`]);
//! - the per-session connection limit counts the session's connections on
//!   every node: a restore first takes a place with
//!   [`Cluster::join_session`]; leaving gives it back.
//!
//! The two directions are two interfaces: the adapter implements
//! [`Cluster`] (what the server asks of the other nodes); the server
//! implements [`LocalNode`] (what the adapter asks of the server), handed
//! to the adapter as a [`ClusterNode`].

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;

use bytes::Bytes;

/// What the other nodes are told: a signal (the encoded webwire signal
/// message, and whom it is for), or a change of a session's room
/// memberships.
///
/// ```
/// use webwire_core::cluster::ClusterEvent;
///
/// let event = ClusterEvent::Room { room: "lobby".into(), frame: bytes::Bytes::from_static(b"...") };
/// assert_eq!(event.frame().map(|frame| frame.len()), Some(3));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// For every connection.
    Broadcast {
        /// The encoded signal message.
        frame: Bytes,
    },
    /// For the members of a room.
    Room {
        /// The room.
        room: String,
        /// The encoded signal message.
        frame: Bytes,
    },
    /// For the connections holding a session.
    Session {
        /// The session key.
        key: String,
        /// The encoded signal message.
        frame: Bytes,
    },
    /// 2.1: a signal appended to a stream by another node (a stream store
    /// shared by the cluster publishes each append), for this node's
    /// connections that get the stream: the session's, or the room's
    /// members. The server delivers it in the stream's order on this node.
    Stream {
        /// The stream.
        stream: crate::stream::StreamKey,
        /// The signal's place in it.
        position: crate::stream::StreamPosition,
        /// The encoded 2.0 Signal message, as stored.
        frame: Bytes,
    },
    /// 2.1: the session `key` joined the history room `room` at `joined`
    /// (the room's end when it joined), or left it (`None`), on another
    /// node: this node's connections holding the session join or leave
    /// the room too.
    SessionRoom {
        /// The session key.
        key: String,
        /// The room.
        room: String,
        /// Where the session joined; `None`: it left.
        joined: Option<crate::stream::StreamPosition>,
    },
}

/// Shows a session's key as its digest.
impl fmt::Debug for ClusterEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Broadcast { frame } => f.debug_struct("Broadcast").field("frame", frame).finish(),
            Self::Room { room, frame } => f
                .debug_struct("Room")
                .field("room", room)
                .field("frame", frame)
                .finish(),
            Self::Session { key, frame } => f
                .debug_struct("Session")
                .field("key", &webwire_proto::KeyDigest::new(key))
                .field("frame", frame)
                .finish(),
            // The stream key shows a session key as its digest.
            Self::Stream {
                stream,
                position,
                frame,
            } => f
                .debug_struct("Stream")
                .field("stream", stream)
                .field("position", position)
                .field("frame", frame)
                .finish(),
            Self::SessionRoom { key, room, joined } => f
                .debug_struct("SessionRoom")
                .field("key", &webwire_proto::KeyDigest::new(key))
                .field("room", room)
                .field("joined", joined)
                .finish(),
        }
    }
}

impl ClusterEvent {
    /// The encoded signal message; `None` for a membership change.
    ///
    /// ```
    /// use webwire_core::cluster::ClusterEvent;
    ///
    /// let event = ClusterEvent::Broadcast { frame: bytes::Bytes::from_static(b"x") };
    /// assert_eq!(event.frame().map(|frame| &frame[..]), Some(&b"x"[..]));
    /// ```
    pub fn frame(&self) -> Option<&Bytes> {
        match self {
            Self::Broadcast { frame }
            | Self::Room { frame, .. }
            | Self::Session { frame, .. }
            | Self::Stream { frame, .. } => Some(frame),
            Self::SessionRoom { .. } => None,
        }
    }
}

/// What the other nodes answered to a request sent to all of them.
///
/// ```
/// let reply = webwire_core::cluster::ClusterReply::default();
/// assert_eq!(reply.affected, 0);
/// assert!(reply.is_complete());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterReply {
    /// Connections affected on the nodes that answered.
    pub affected: usize,
    /// The nodes that were alive when the request was sent but did not
    /// answer in time.
    pub unreached: Vec<String>,
    /// Why the request could not be sent at all, if so.
    pub error: Option<String>,
}

impl ClusterReply {
    /// A reply of nodes that all answered.
    ///
    /// ```
    /// assert_eq!(webwire_core::cluster::ClusterReply::new(3).affected, 3);
    /// ```
    pub fn new(affected: usize) -> Self {
        Self {
            affected,
            ..Self::default()
        }
    }

    /// Whether every node that was asked answered.
    ///
    /// ```
    /// assert!(webwire_core::cluster::ClusterReply::new(1).is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.unreached.is_empty() && self.error.is_none()
    }
}

/// What [`Cluster::join_session`] did with a connection joining a session.
///
/// ```
/// use webwire_core::cluster::SessionJoin;
///
/// assert_ne!(SessionJoin::Counted, SessionJoin::Destroyed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionJoin {
    /// The connection is counted.
    Counted,
    /// The session has the maximum number of connections on all live
    /// nodes: not counted.
    Full,
    /// The session was destroyed (a close on its last connection of all
    /// nodes), maybe after the restore found it in the store: not counted,
    /// and the restore answers that the session does not exist.
    Destroyed,
}

/// A cluster adapter's failure (the bus is unreachable, say).
///
/// ```
/// let err = webwire_core::cluster::ClusterError::msg("Redis did not answer");
/// assert_eq!(err.to_string(), "cluster: Redis did not answer");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cluster: {message}")]
pub struct ClusterError {
    message: String,
    #[source]
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl ClusterError {
    /// An error with a message only.
    ///
    /// ```
    /// let _ = webwire_core::cluster::ClusterError::msg("down");
    /// ```
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and its cause.
    ///
    /// ```
    /// let err = webwire_core::cluster::ClusterError::new("publish failed", std::io::Error::other("reset"));
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    pub fn new(
        message: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// What a server needs from a cluster of nodes. Implemented by cluster
/// adapters (`webwire_redis::RedisCluster`); a server uses one given to
/// `webwire-server`'s `ServerBuilder::cluster`.
///
/// An async trait without a macro: implement it with `async fn` (the
/// futures must be `Send`).
///
/// The adapter must not hand a node its own events back: the server has
/// delivered them locally already.
///
/// ```
/// use webwire_core::cluster::{
///     Cluster, ClusterError, ClusterEvent, ClusterNode, ClusterReply, SessionJoin,
/// };
///
/// /// A cluster of one node: nothing to tell anybody.
/// #[derive(Debug)]
/// struct Alone;
///
/// impl Cluster for Alone {
///     fn attach(&self, _node: ClusterNode) {}
///     fn publish(&self, _event: ClusterEvent) {}
///     async fn close_session(&self, _key: &str) -> ClusterReply {
///         ClusterReply::default()
///     }
///     async fn join_session(&self, _key: &str, _max: usize) -> Result<SessionJoin, ClusterError> {
///         Ok(SessionJoin::Counted)
///     }
///     async fn leave_session(&self, _key: &str) -> Result<(), ClusterError> {
///         Ok(())
///     }
///     async fn clear_session(&self, _key: &str) -> Result<(), ClusterError> {
///         Ok(())
///     }
///     async fn session_connections(&self, _key: &str) -> Result<Option<usize>, ClusterError> {
///         Ok(None)
///     }
/// }
/// ```
pub trait Cluster: Send + Sync + fmt::Debug + 'static {
    /// Called once when the server is built: events and requests from the
    /// other nodes go to `node`.
    fn attach(&self, node: ClusterNode);

    /// Sends `event` to the other nodes without waiting (at most once; the
    /// server already delivered it locally).
    fn publish(&self, event: ClusterEvent);

    /// Asks every other live node to close the session `key` on its
    /// connections ([`ClusterNode::close_session`]) and waits for their
    /// answers, bounded by the adapter's request timeout.
    fn close_session(&self, key: &str) -> impl Future<Output = ClusterReply> + Send;

    /// Counts one more connection of this node for the session `key`,
    /// unless the session has `max` connections or more on all live nodes
    /// together (`max` 0: no limit), or the session was destroyed: once
    /// [`leave_session_last`](Self::leave_session_last) answered `Some(0)`
    /// for it, the adapter must refuse every later join of it
    /// ([`SessionJoin::Destroyed`]), so that a restore which found the
    /// session in the store just before it was deleted holds nothing.
    fn join_session(
        &self,
        key: &str,
        max: usize,
    ) -> impl Future<Output = Result<SessionJoin, ClusterError>> + Send;

    /// Counts one connection of this node less for the session `key`.
    fn leave_session(&self, key: &str) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// This node has no connection holding the session `key` any more.
    fn clear_session(&self, key: &str) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// A connection closed the session `key` and no other connection of
    /// this node holds it: sets this node's count to `count` (its
    /// connections: the server passes 0, restores of this node still under
    /// way having been refused) and returns the session's connections
    /// on all live nodes, this one included, in one atomic step. The server
    /// destroys the session only when that is 0; the adapter then marks it
    /// destroyed in the same step (see [`join_session`](Self::join_session)).
    /// `None`: the adapter does not count (the server decides from its own
    /// connections).
    ///
    /// The default gives one place back
    /// ([`leave_session`](Self::leave_session)) and returns `None`.
    fn leave_session_last(
        &self,
        key: &str,
        count: usize,
    ) -> impl Future<Output = Result<Option<usize>, ClusterError>> + Send {
        let _ = count;
        let leave = self.leave_session(key);
        async move { leave.await.map(|()| None) }
    }

    /// Sets this node's count of each session given (0: none), replacing
    /// what the cluster holds. The server calls it for sessions whose
    /// count changes went unanswered (Redis may apply them late, or never),
    /// until a call succeeds. A session marked destroyed stays uncounted.
    /// The default does nothing.
    fn set_session_counts(
        &self,
        counts: &[(String, usize)],
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        let _ = counts;
        std::future::ready(Ok(()))
    }

    /// The session's connections on all live nodes, if the adapter counts them
    /// (`None`: the server counts its own).
    fn session_connections(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<usize>, ClusterError>> + Send;

    /// The server shuts down: the node leaves the cluster.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// What a cluster adapter can ask of the local server: implemented by
/// `webwire-server` (and by an adapter's tests, to stand in for a server),
/// handed to the adapter as a [`ClusterNode`].
///
/// An async trait without a macro, like [`Cluster`].
pub trait LocalNode: Send + Sync + 'static {
    /// Delivers another node's event to this server's connections, without
    /// waiting (a connection whose queue is full misses it). Returns how
    /// many connections it was queued for.
    fn deliver(&self, event: &ClusterEvent) -> usize;

    /// Closes the session `key` on this server's connections (for another
    /// node's close everywhere); returns how many held it.
    fn close_session(&self, key: &str) -> impl Future<Output = usize> + Send;

    /// Every session held by this server's connections, with how many hold
    /// it.
    fn session_counts(&self) -> Vec<(String, usize)>;
}

/// [`LocalNode`] as an object: what a [`ClusterNode`] holds, so that the
/// node's type does not show in the adapter's.
trait ErasedNode: Send + Sync {
    fn deliver(&self, event: &ClusterEvent) -> usize;
    fn close_session<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = usize> + Send + 'a>>;
    fn session_counts(&self) -> Vec<(String, usize)>;
}

impl<N: LocalNode> ErasedNode for N {
    fn deliver(&self, event: &ClusterEvent) -> usize {
        LocalNode::deliver(self, event)
    }

    fn close_session<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = usize> + Send + 'a>> {
        Box::pin(LocalNode::close_session(self, key))
    }

    fn session_counts(&self) -> Vec<(String, usize)> {
        LocalNode::session_counts(self)
    }
}

/// The server's side of a cluster, handed to [`Cluster::attach`]: what
/// the adapter calls for events and requests from other nodes. It does not
/// keep the server alive: once the server is gone, it does nothing.
///
/// ```
/// use std::sync::Arc;
/// use webwire_core::cluster::{ClusterEvent, ClusterNode, LocalNode};
///
/// /// A server with one connection, which takes every signal.
/// struct OneConnection;
///
/// impl LocalNode for OneConnection {
///     fn deliver(&self, _event: &ClusterEvent) -> usize {
///         1
///     }
///     async fn close_session(&self, _key: &str) -> usize {
///         0
///     }
///     fn session_counts(&self) -> Vec<(String, usize)> {
///         Vec::new()
///     }
/// }
///
/// let server = Arc::new(OneConnection);
/// let node = ClusterNode::new(Arc::downgrade(&server));
/// let event = ClusterEvent::Broadcast { frame: bytes::Bytes::from_static(b"x") };
/// assert_eq!(node.deliver(&event), 1);
/// drop(server);
/// assert_eq!(node.deliver(&event), 0);
/// ```
#[derive(Clone)]
pub struct ClusterNode {
    node: Weak<dyn ErasedNode>,
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("alive", &(self.node.strong_count() > 0))
            .finish()
    }
}

impl ClusterNode {
    /// The handle of the server `node`, which it does not keep alive.
    pub fn new<N: LocalNode>(node: Weak<N>) -> Self {
        Self { node }
    }

    /// Delivers another node's event to this server's connections, without
    /// waiting (a connection whose queue is full misses it). Returns how
    /// many connections it was queued for: 0 once the server is gone.
    pub fn deliver(&self, event: &ClusterEvent) -> usize {
        self.node.upgrade().map_or(0, |node| node.deliver(event))
    }

    /// Closes the session `key` on this server's connections (for another
    /// node's close everywhere); returns how many held it.
    pub async fn close_session(&self, key: &str) -> usize {
        match self.node.upgrade() {
            Some(node) => node.close_session(key).await,
            None => 0,
        }
    }

    /// Every session held by this server's connections, with how many hold
    /// it (for an adapter that rewrites its counts after an outage).
    pub fn session_counts(&self) -> Vec<(String, usize)> {
        self.node
            .upgrade()
            .map(|node| node.session_counts())
            .unwrap_or_default()
    }
}
