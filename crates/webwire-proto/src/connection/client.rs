//! The client side of a connection: [`ClientConnection`].
//!
//! One `ClientConnection` lives as long as one WebSocket connection. Its
//! owner (the client's connection task) feeds it the server's binary
//! messages ([`handle_frame`](ClientConnection::handle_frame)), the
//! callers' requests and signals, cancellations, the close asked for, the
//! end of the transport and the timers it asked for; after each input it
//! takes the frames to write ([`poll_transmit`](ClientConnection::poll_transmit)),
//! the events to deliver ([`poll_event`](ClientConnection::poll_event)) and
//! the next deadline ([`poll_timeout`](ClientConnection::poll_timeout)).
//!
//! Its rules:
//!
//! - every request it takes gets exactly one outcome: its answer, a timeout
//!   at its deadline, [`Outcome::Lost`] when the connection ends first, or
//!   [`Outcome::Closed`] when the client closed it first; unless it is
//!   [cancelled](ClientConnection::cancel), which hands its token back at
//!   once. A reply to an unknown id (late, cancelled, or never sent) is
//!   ignored and counted;
//! - a session restore is a request of the machine's own: nothing else is
//!   sent until it is answered, and its answer is an [`Event::Restore`];
//! - a heartbeat goes out after the heartbeat interval of sending nothing;
//! - closing waits for the requests in flight (up to a grace period), then
//!   sends close code 1000 and waits a short time for the server's close
//!   frame; a protocol violation by the server sends 1002 (1003 for text)
//!   at once. After its close frame the machine transmits nothing more;
//! - the 2.1 opt-in ([`send_extension_hello`](ClientConnection::send_extension_hello)):
//!   the ExtensionHello goes first, only to a server that announced 2.1,
//!   and nothing else is sent until the ExtensionAccept arrives
//!   ([`Event::ExtensionAccepted`]). The server's extension messages are
//!   taken only after that, for a feature granted (a protocol violation
//!   otherwise); [`ServerMessage::OutcomeUnknown`] answers a request like
//!   any reply. A StreamResume may follow the session restore before its
//!   answer (docs/protocol.md 14.3.4).
//!
//! The rules that outlive a connection are here too, as state of their
//! own that the owner keeps from one connection to the next:
//! [`StreamPositions`] (the client's rule per stream) and
//! [`KeyedRequests`] (sequence numbers, acks and resends of keyed requests).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use webwire_proto::connection::client::{
//!     ClientConnection, ConnectionConfig, Event, Outcome, RequestIds, Transmit,
//! };
//! use webwire_proto::{ClientMessage, Name, Payload, Reply, Request, RequestId, ServerMessage};
//!
//! let now = Instant::now();
//! let ids = RequestIds::new();
//! let config = ConnectionConfig::new(8192, Some(Duration::from_secs(45)));
//! let mut conn = ClientConnection::<&str>::new(config, ids.clone(), now);
//!
//! let id = ids.next();
//! let request = Request::new(RequestId::from(id), Name::from_static("echo"), Payload::utf8("hi"))?;
//! conn.send_request(id, ClientMessage::Request(request).to_bytes(), None, "caller")
//!     .map_err(|refused| refused.reason)?;
//! let Some(Transmit::Message { frame, .. }) = conn.poll_transmit(now) else { unreachable!() };
//! assert_eq!(frame[0], 0x80);
//!
//! conn.handle_frame(ServerMessage::Reply(Reply::new(RequestId::from(id), Payload::utf8("hi"))).to_bytes());
//! let Some(Event::Answer { token, outcome: Outcome::Answered(ServerMessage::Reply(reply)), .. }) =
//!     conn.poll_event() else { unreachable!() };
//! assert_eq!((token, reply.payload.to_text()?.as_ref()), ("caller", "hi"));
//! // The next thing to do: the heartbeat, 45 s after the last frame.
//! assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(45)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

mod keyed;
mod streams;

pub use keyed::{
    means_outcome_unknown, KeyedRequests, Link, Resend, BAD_KEY, KEY_REUSED, NO_SESSION,
};
pub use streams::{LossVerdict, StreamPositions, Verdict};

use crate::{
    AcceptConf, ClientMessage, ExtensionAccept, ExtensionHello, ExtensionRule, FeatureFlags,
    MessageType, ParseError, Payload, RequestId, ServerMessage, Session, SessionJsonError, Signal,
    StreamLoss, StreamSignal, TextError,
};

/// Close code of a graceful close (RFC 6455: normal closure).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a malformed message from the server.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message from the server (webwire is binary).
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// How long the machine waits for the server's close frame after its own,
/// unless [`ConnectionConfig::close_handshake_timeout`] says otherwise.
pub const DEFAULT_CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The heartbeat message (type 33).
const HEARTBEAT: &[u8] = &[33];

/// Request ids for one client, shared by every connection it makes and by
/// whoever encodes its requests: an id is never given twice, so a late
/// reply can never be taken for another request's.
///
/// ```
/// use webwire_proto::connection::client::RequestIds;
///
/// let ids = RequestIds::new();
/// let other_handle = ids.clone();
/// assert_eq!((ids.next(), other_handle.next()), (1, 2));
/// ```
#[derive(Debug, Clone)]
pub struct RequestIds(Arc<AtomicU64>);

impl RequestIds {
    /// Ids from 1 on.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(1)))
    }

    /// An id never given before by this allocator or its clones.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`ClientConnection`] needs to know of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The largest message the server takes (its announced buffer size):
    /// larger requests and signals are refused before they are sent.
    pub max_message_size: usize,
    /// A heartbeat is sent after this long without sending anything; `None`
    /// for no heartbeats.
    pub heartbeat: Option<Duration>,
    /// How long to wait for the server's close frame after ours.
    pub close_handshake_timeout: Duration,
    /// Whether the server announced the 2.1 extensions (AcceptConf minor
    /// version 1 or more): only then may the client opt in.
    pub extensions_offered: bool,
}

impl ConnectionConfig {
    /// A configuration with the default close handshake timeout.
    pub fn new(max_message_size: usize, heartbeat: Option<Duration>) -> Self {
        Self {
            max_message_size,
            heartbeat,
            close_handshake_timeout: DEFAULT_CLOSE_HANDSHAKE_TIMEOUT,
            extensions_offered: false,
        }
    }

    /// The configuration the server's accept configuration asks for: its
    /// buffer size, and a heartbeat every 3/4 of its read timeout of
    /// silence (as the original clients do; none if it announces no
    /// timeout), and whether it offers the 2.1 extensions.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_proto::AcceptConf;
    /// use webwire_proto::connection::client::ConnectionConfig;
    ///
    /// let conf = AcceptConf::new(Duration::from_secs(60), 4096, "");
    /// let config = ConnectionConfig::from_accept_conf(&conf);
    /// assert_eq!(config.heartbeat, Some(Duration::from_secs(45)));
    /// assert_eq!(config.max_message_size, 4096);
    /// assert!(!config.extensions_offered);
    /// ```
    pub fn from_accept_conf(conf: &AcceptConf) -> Self {
        let mut config = Self::new(
            usize::try_from(conf.buffer_size).unwrap_or(usize::MAX),
            heartbeat_interval(conf.read_timeout()),
        );
        config.extensions_offered = conf.offers_extensions();
        config
    }

    /// The same with another close handshake timeout.
    pub fn with_close_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.close_handshake_timeout = timeout;
        self
    }
}

/// 3/4 of the server's read timeout; none if the server announces none.
fn heartbeat_interval(read_timeout: Duration) -> Option<Duration> {
    (!read_timeout.is_zero()).then(|| read_timeout * 3 / 4)
}

/// Something to write on the connection, in order.
///
/// Its [`Debug`](fmt::Debug) shows a message's type and length, never its
/// bytes (a session restore carries a session key).
#[derive(Clone, PartialEq, Eq)]
pub enum Transmit<T> {
    /// One binary WebSocket message: a request, a signal or a heartbeat.
    Message {
        /// The encoded message.
        frame: Bytes,
        /// For a signal, the token given with it: the caller is told once
        /// it is written.
        signal: Option<T>,
    },
    /// A close frame with this code; nothing follows it.
    Close(u16),
}

impl<T: fmt::Debug> fmt::Debug for Transmit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message { frame, signal } => f
                .debug_struct("Message")
                .field("frame", &FrameSummary(frame))
                .field("signal", signal)
                .finish(),
            Self::Close(code) => f.debug_tuple("Close").field(code).finish(),
        }
    }
}

/// An encoded message's type and length, for `Debug`.
struct FrameSummary<'a>(&'a Bytes);

impl fmt::Debug for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first().copied().and_then(MessageType::from_byte) {
            Some(kind) => write!(f, "{kind} ({} bytes)", self.0.len()),
            None => write!(f, "{} bytes", self.0.len()),
        }
    }
}

/// Why a request, signal or restore was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The encoded message is larger than the server takes.
    #[error("message of {size} bytes exceeds the server's buffer size of {max} bytes")]
    TooLarge {
        /// The encoded message's length.
        size: usize,
        /// The server's buffer size.
        max: usize,
    },
    /// A session restore is waiting for its answer: nothing else may be sent
    /// before it; send this once [`ClientConnection::is_restoring`] is false.
    #[error("a session restore is waiting for its answer")]
    Restoring,
    /// A close was asked for or the connection has ended.
    #[error("the connection is closing or closed")]
    Closed,
    /// A request with this id is in flight already.
    #[error("request {0} is in flight already")]
    DuplicateId(u64),
    /// The ExtensionHello is waiting for the server's ExtensionAccept:
    /// nothing else may be sent before it.
    #[error("the extension opt-in is waiting for the server's answer")]
    OptingIn,
    /// An ExtensionHello to a server that did not announce protocol 2.1.
    #[error("the server does not offer the 2.1 extensions")]
    ExtensionsNotOffered,
    /// An ExtensionHello after another message, or a second one.
    #[error("the ExtensionHello must be the first message, and only one")]
    HelloNotFirst,
    /// An extension message of a feature the server did not grant (or an
    /// ExtensionHello given as a request or signal).
    #[error("{0} is not allowed on this connection")]
    NotGranted(MessageType),
}

/// A request or signal the machine did not take, handed back.
///
/// Its [`Debug`](fmt::Debug) shows the message's type and length, never
/// its bytes.
pub struct Refused<T> {
    /// Why.
    pub reason: Refusal,
    /// The encoded message.
    pub frame: Bytes,
    /// Its token.
    pub token: T,
}

impl<T: fmt::Debug> fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("reason", &self.reason)
            .field("frame", &FrameSummary(&self.frame))
            .field("token", &self.token)
            .finish()
    }
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server's answer: one of the [`ServerMessage`]s that carry a
    /// request id (a reply, an error reply, ReplyShutdown, ...).
    Answered(ServerMessage),
    /// Its deadline passed first.
    TimedOut,
    /// The connection ended first (the server closed it, the transport
    /// failed, or the server broke the protocol).
    Lost,
    /// The client closed the connection first.
    Closed,
}

/// The outcome of the machine's session restore
/// ([`ClientConnection::restore_session`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum RestoreOutcome {
    /// The server restored the session.
    Restored(Session),
    /// The server does not know the session (any more).
    NotFound,
    /// The server is shutting down (ReplyShutdown).
    Shutdown,
    /// Another answer of the server: an error reply, ReplyInternalError,
    /// ReplyMaxSessConnsReached or ReplySessionsDisabled.
    Refused(ServerMessage),
    /// The server's reply is not a valid session.
    InvalidSession(InvalidSessionReply),
    /// The restore message is larger than the server takes; not sent.
    TooLarge {
        /// The encoded message's length.
        size: usize,
        /// The server's buffer size.
        max: usize,
    },
    /// No answer before its deadline.
    TimedOut,
    /// The connection ended (or was closed) before the answer.
    Lost,
}

/// The reply to a session restore is not a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSessionReply {
    /// The payload is not text.
    #[error("the session reply is not text: {0}")]
    Text(#[from] TextError),
    /// The text is not session JSON.
    #[error(transparent)]
    Json(#[from] SessionJsonError),
}

/// The session a reply to RequestRestoreSession carries.
///
/// ```
/// use webwire_proto::{Payload, Session};
/// use webwire_proto::connection::client::session_of_reply;
///
/// let json = Session::new("k", std::time::SystemTime::UNIX_EPOCH, None).to_json()?;
/// assert_eq!(session_of_reply(&Payload::utf8(json))?.key, "k");
/// assert!(session_of_reply(&Payload::utf8("not json")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn session_of_reply(payload: &Payload) -> Result<Session, InvalidSessionReply> {
    let text = payload.to_text()?;
    Ok(Session::from_json(text.as_bytes())?)
}

/// A server message the machine ignored, for the owner to log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ignored {
    /// An answer to a request not in flight (late after a timeout or a
    /// cancel, or never sent).
    UnknownReply(u64),
    /// A NotifySessionCreated whose session is not valid.
    InvalidSession(SessionJsonError),
    /// A second accept configuration.
    AcceptConf,
}

/// Why the connection ended: the last event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum End {
    /// Closed on purpose ([`ClientConnection::close`]): the handshake
    /// completed, timed out, or the connection broke meanwhile.
    Closed,
    /// The server closed the connection, or the transport failed.
    Lost,
    /// The server broke the protocol; the machine sent close code `code`.
    Violation {
        /// The close code sent.
        code: u16,
        /// The malformed message's error; `None` for a text message.
        error: Option<ParseError>,
    },
}

/// What the owner is told, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// A request's outcome.
    Answer {
        /// The request's id.
        id: u64,
        /// Its token.
        token: T,
        /// How it ended.
        outcome: Outcome,
    },
    /// The server sent a signal.
    Signal(Signal),
    /// 2.1: the server accepted the ExtensionHello with these features and
    /// its ledger epoch; requests and signals may be sent again.
    ExtensionAccepted(ExtensionAccept),
    /// 2.1: the server sent a signal of a stream.
    StreamSignal(StreamSignal),
    /// 2.1: the server says signals of a stream are lost.
    StreamLoss(StreamLoss),
    /// The server created a session for this connection.
    SessionCreated(Session),
    /// The server closed this connection's session.
    SessionClosed,
    /// The session restore was answered (or could not be).
    Restore(RestoreOutcome),
    /// A server message was ignored.
    Ignored(Ignored),
    /// The connection ended; no event follows.
    Ended(End),
}

/// Who waits for a request's answer.
#[derive(Debug)]
enum Waiter<T> {
    Caller(T),
    /// The machine's own session restore.
    Restore,
}

#[derive(Debug)]
struct InFlight<T> {
    waiter: Waiter<T>,
    deadline: Option<Instant>,
}

/// Where the 2.1 opt-in of a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptIn {
    /// No ExtensionHello sent: a 2.0 connection.
    No,
    /// The ExtensionHello asking for these features is sent.
    Asked(FeatureFlags),
    /// The ExtensionAccept granting these features arrived.
    Accepted(FeatureFlags),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close was asked: requests in flight may be answered until `deadline`.
    Closing {
        deadline: Instant,
    },
    /// Our close frame is queued; `deadline` (set when it is taken) ends the
    /// wait for the server's.
    CloseSent {
        deadline: Option<Instant>,
    },
    Ended,
}

/// The rules of one client connection, without I/O (see the
/// [module](self)). `T` is the caller's token for a request or signal,
/// handed back with its outcome.
pub struct ClientConnection<T> {
    config: ConnectionConfig,
    ids: RequestIds,
    state: State,
    /// A close was asked for (requests then end as `Closed`, not `Lost`).
    close_asked: bool,
    in_flight: HashMap<u64, InFlight<T>>,
    /// Request deadlines, earliest first; entries whose request has ended
    /// are skipped when they come up.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The id of the session restore in flight.
    restore: Option<u64>,
    transmits: VecDeque<Transmit<T>>,
    events: VecDeque<Event<T>>,
    /// When the last frame was taken: the heartbeat timer starts there.
    last_sent: Instant,
    ignored_replies: u64,
    /// Whether any message was queued (the ExtensionHello must be first).
    sent_any: bool,
    opt_in: OptIn,
}

impl<T> ClientConnection<T> {
    /// A machine for a connection that has just been established at `now`
    /// (the server's accept configuration received).
    pub fn new(config: ConnectionConfig, ids: RequestIds, now: Instant) -> Self {
        Self {
            config,
            ids,
            state: State::Open,
            close_asked: false,
            in_flight: HashMap::new(),
            deadlines: BinaryHeap::new(),
            restore: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_sent: now,
            ignored_replies: 0,
            sent_any: false,
            opt_in: OptIn::No,
        }
    }

    /// Opts in to the 2.1 extensions: queues the ExtensionHello, which must
    /// be the connection's first message to a server that announced 2.1
    /// ([`ConnectionConfig::extensions_offered`]). Until the
    /// [`Event::ExtensionAccepted`], requests, signals and the session
    /// restore are refused ([`Refusal::OptingIn`]).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use webwire_proto::connection::client::{ClientConnection, ConnectionConfig, Event, RequestIds};
    /// use webwire_proto::{AcceptConf, ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, ServerMessage};
    ///
    /// let now = Instant::now();
    /// let conf = AcceptConf::new(Duration::from_secs(60), 8192, "").with_minor(1);
    /// let mut conn = ClientConnection::<()>::new(ConnectionConfig::from_accept_conf(&conf), RequestIds::new(), now);
    /// let hello = ExtensionHello::new(FeatureFlags::KNOWN, InstanceId::new("0123456789abcdef")?)?;
    /// conn.send_extension_hello(&hello)?;
    /// assert!(conn.is_opting_in());
    ///
    /// let accept = ExtensionAccept { flags: FeatureFlags::STREAMS, ledger_epoch: 5 };
    /// conn.handle_frame(ServerMessage::ExtensionAccept(accept).to_bytes());
    /// assert!(matches!(conn.poll_event(), Some(Event::ExtensionAccepted(a)) if a == accept));
    /// assert_eq!(conn.granted(), Some(FeatureFlags::STREAMS));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_extension_hello(&mut self, hello: &ExtensionHello) -> Result<(), Refusal> {
        if self.state != State::Open {
            return Err(Refusal::Closed);
        }
        if !self.config.extensions_offered {
            return Err(Refusal::ExtensionsNotOffered);
        }
        if self.sent_any || self.opt_in != OptIn::No {
            return Err(Refusal::HelloNotFirst);
        }
        let frame = ClientMessage::ExtensionHello(hello.clone()).to_bytes();
        let max = self.config.max_message_size;
        if frame.len() > max {
            return Err(Refusal::TooLarge {
                size: frame.len(),
                max,
            });
        }
        self.opt_in = OptIn::Asked(hello.flags());
        self.queue(frame, None);
        Ok(())
    }

    /// The 2.1 features the server granted, once its ExtensionAccept
    /// arrived; `None` on a 2.0 connection (or before).
    pub fn granted(&self) -> Option<FeatureFlags> {
        match self.opt_in {
            OptIn::Accepted(granted) => Some(granted),
            OptIn::No | OptIn::Asked(_) => None,
        }
    }

    /// Whether the ExtensionHello waits for the server's ExtensionAccept.
    pub fn is_opting_in(&self) -> bool {
        matches!(self.opt_in, OptIn::Asked(_))
    }

    /// Sends a request: `frame` is the encoded request (or session request)
    /// whose id is `id`. Its outcome comes as an [`Event::Answer`] with
    /// `token`; `deadline`, if any, times it out.
    pub fn send_request(
        &mut self,
        id: u64,
        frame: Bytes,
        deadline: Option<Instant>,
        token: T,
    ) -> Result<(), Refused<T>> {
        debug_assert!(
            frame.get(1..9) == Some(&id.to_le_bytes()[..]),
            "the frame of request {id} carries another id"
        );
        if let Err(reason) = self.may_send_frame(&frame) {
            return Err(Refused {
                reason,
                frame,
                token,
            });
        }
        if self.in_flight.contains_key(&id) {
            return Err(Refused {
                reason: Refusal::DuplicateId(id),
                frame,
                token,
            });
        }
        self.track(id, Waiter::Caller(token), deadline);
        self.queue(frame, None);
        Ok(())
    }

    /// Sends a signal: `frame` is the encoded signal. It comes back out of
    /// [`poll_transmit`](Self::poll_transmit) with `token`.
    pub fn send_signal(&mut self, frame: Bytes, token: T) -> Result<(), Refused<T>> {
        if let Err(reason) = self.may_send_frame(&frame) {
            return Err(Refused {
                reason,
                frame,
                token,
            });
        }
        self.queue(frame, Some(token));
        Ok(())
    }

    /// Restores the session `key` (after a reconnection): a request with an
    /// id of the machine's [`RequestIds`], answered by an
    /// [`Event::Restore`] (also when it cannot be sent). Until then requests
    /// and signals are refused with [`Refusal::Restoring`], except a
    /// StreamResume (2.1), which the server handles after the restore. After an
    /// ExtensionHello, call it once the ExtensionAccept has arrived (it is
    /// lost before).
    pub fn restore_session(&mut self, key: Bytes, deadline: Instant) {
        let id = self.ids.next();
        let frame = ClientMessage::RestoreSession {
            id: RequestId::from(id),
            key,
        }
        .to_bytes();
        match self.may_send(frame.len()) {
            Ok(()) => {}
            Err(Refusal::TooLarge { size, max }) => {
                self.events
                    .push_back(Event::Restore(RestoreOutcome::TooLarge { size, max }));
                return;
            }
            // Closed, or a restore already waiting: this one cannot be sent.
            Err(_) => {
                self.events.push_back(Event::Restore(RestoreOutcome::Lost));
                return;
            }
        }
        self.track(id, Waiter::Restore, Some(deadline));
        self.restore = Some(id);
        self.queue(frame, None);
    }

    /// The caller stopped waiting for request `id`: its token, if it was in
    /// flight (a later answer is ignored). The machine's restore cannot be
    /// cancelled.
    pub fn cancel(&mut self, id: u64) -> Option<T> {
        match self.in_flight.get(&id)?.waiter {
            Waiter::Restore => None,
            Waiter::Caller(_) => {
                let entry = self.in_flight.remove(&id)?;
                self.close_if_settled();
                match entry.waiter {
                    Waiter::Caller(token) => Some(token),
                    Waiter::Restore => None,
                }
            }
        }
    }

    /// Takes a binary WebSocket message from the server.
    pub fn handle_frame(&mut self, frame: Bytes) {
        if self.state == State::Ended {
            return;
        }
        let message = match ServerMessage::parse(frame) {
            Ok(message) => message,
            Err(err) => return self.violation(CLOSE_PROTOCOL_ERROR, Some(err)),
        };
        if message.message_type().is_extension() {
            return self.handle_extension(message);
        }
        match message {
            ServerMessage::Signal(signal) => self.events.push_back(Event::Signal(signal)),
            ServerMessage::SessionCreated(json) => {
                self.events.push_back(match Session::from_json(&json) {
                    Ok(session) => Event::SessionCreated(session),
                    Err(err) => Event::Ignored(Ignored::InvalidSession(err)),
                });
            }
            ServerMessage::SessionClosed => self.events.push_back(Event::SessionClosed),
            ServerMessage::AcceptConf(_) => {
                self.events.push_back(Event::Ignored(Ignored::AcceptConf));
            }
            answer => {
                if let Some(id) = answer.request_id() {
                    self.answer(id.to_u64(), answer);
                }
            }
        }
    }

    /// A 2.1 message of the server: taken only after the opt-in, for a
    /// feature granted.
    fn handle_extension(&mut self, message: ServerMessage) {
        let kind = message.message_type();
        let granted = match (self.opt_in, &message) {
            (OptIn::Asked(asked), ServerMessage::ExtensionAccept(accept)) => {
                let unasked = accept.flags.difference(asked);
                if !unasked.is_empty() {
                    return self.not_allowed(kind, ExtensionRule::NotAsked(unasked));
                }
                self.opt_in = OptIn::Accepted(accept.flags);
                self.events.push_back(Event::ExtensionAccepted(*accept));
                return;
            }
            (OptIn::Accepted(_), ServerMessage::ExtensionAccept(_)) => {
                return self.not_allowed(kind, ExtensionRule::Repeated)
            }
            (OptIn::Accepted(granted), _) => granted,
            (OptIn::No | OptIn::Asked(_), _) => {
                return self.not_allowed(kind, ExtensionRule::NotOptedIn)
            }
        };
        let needed = match message {
            ServerMessage::OutcomeUnknown(_) => FeatureFlags::KEYED_REQUESTS,
            _ => FeatureFlags::STREAMS,
        };
        if !granted.contains(needed) {
            return self.not_allowed(kind, ExtensionRule::NotGranted(needed));
        }
        match message {
            ServerMessage::StreamSignal(signal) => {
                self.events.push_back(Event::StreamSignal(signal));
            }
            ServerMessage::StreamLoss(loss) => self.events.push_back(Event::StreamLoss(loss)),
            answer => {
                if let Some(id) = answer.request_id() {
                    self.answer(id.to_u64(), answer);
                }
            }
        }
    }

    fn not_allowed(&mut self, kind: MessageType, rule: ExtensionRule) {
        self.violation(
            CLOSE_PROTOCOL_ERROR,
            Some(ParseError::NotAllowed { kind, rule }),
        );
    }

    /// Takes a text WebSocket message from the server: a protocol violation.
    pub fn handle_text(&mut self) {
        if self.state != State::Ended {
            self.violation(CLOSE_UNSUPPORTED_DATA, None);
        }
    }

    /// Acts on every deadline reached at `now`: request timeouts, the end
    /// of the close grace period or handshake, the heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.in_flight.get(&id).map(|entry| entry.deadline) != Some(Some(deadline)) {
                continue;
            }
            if let Some(entry) = self.in_flight.remove(&id) {
                self.finish(id, entry.waiter, Outcome::TimedOut);
            }
        }
        match self.state {
            State::Closing { deadline } if deadline <= now => {
                self.fail_all(Outcome::Closed);
                self.send_close(CLOSE_NORMAL);
            }
            State::CloseSent {
                deadline: Some(deadline),
            } if deadline <= now => self.end(End::Closed),
            _ => {}
        }
        self.close_if_settled();
        if let Some(heartbeat) = self.heartbeat_deadline() {
            let idle = self.transmits.is_empty();
            if heartbeat <= now && idle {
                self.queue(Bytes::from_static(HEARTBEAT), None);
            }
        }
    }

    /// Closes gracefully: requests and signals are refused from now on,
    /// requests in flight may be answered for `grace`, then (or as soon as
    /// none is left) close code 1000 is sent. A second call changes nothing.
    pub fn close(&mut self, now: Instant, grace: Duration) {
        if self.state != State::Open {
            return;
        }
        self.close_asked = true;
        self.state = State::Closing {
            deadline: now.checked_add(grace).unwrap_or(now),
        };
        self.close_if_settled();
    }

    /// The transport ended: the server's close frame, the end of the stream
    /// or a transport error. After our close frame this completes the
    /// close; before it, requests in flight are lost.
    pub fn peer_closed(&mut self) {
        match self.state {
            State::Ended => {}
            State::CloseSent { .. } => self.end(End::Closed),
            State::Open | State::Closing { .. } => {
                let (outcome, end) = if self.close_asked {
                    (Outcome::Closed, End::Closed)
                } else {
                    (Outcome::Lost, End::Lost)
                };
                self.fail_all(outcome);
                self.end(end);
            }
        }
    }

    /// The next thing to write, taken at `now` (which starts the heartbeat
    /// interval, or the close handshake timeout for a close frame).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit<T>> {
        let transmit = self.transmits.pop_front()?;
        match &transmit {
            Transmit::Message { .. } => self.last_sent = now,
            Transmit::Close(_) => {
                if let State::CloseSent { deadline: None } = self.state {
                    self.state = State::CloseSent {
                        deadline: Some(
                            now.checked_add(self.config.close_handshake_timeout)
                                .unwrap_or(now),
                        ),
                    };
                }
            }
        }
        Some(transmit)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is to be called next;
    /// `None` when nothing is timed.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if self.in_flight.get(&id).map(|entry| entry.deadline) == Some(Some(deadline)) {
                break;
            }
            self.deadlines.pop();
        }
        let request = self
            .deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline);
        let state = match self.state {
            State::Closing { deadline } => Some(deadline),
            State::CloseSent { deadline } => deadline,
            State::Open | State::Ended => None,
        };
        [request, state, self.heartbeat_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the session restore waits for its answer.
    pub fn is_restoring(&self) -> bool {
        self.restore.is_some()
    }

    /// Whether the connection has ended ([`Event::Ended`] was queued).
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The callers' requests in flight (not the machine's restore).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() - usize::from(self.restore.is_some())
    }

    /// How many answers to unknown ids were ignored.
    pub fn ignored_replies(&self) -> u64 {
        self.ignored_replies
    }

    fn queue(&mut self, frame: Bytes, signal: Option<T>) {
        self.sent_any = true;
        self.transmits
            .push_back(Transmit::Message { frame, signal });
    }

    /// [`may_send`](Self::may_send), and an extension message only for a
    /// feature granted.
    fn may_send_frame(&self, frame: &[u8]) -> Result<(), Refusal> {
        let kind = frame.first().copied().and_then(MessageType::from_byte);
        match self.may_send(frame.len()) {
            // The server handles a StreamResume after the restore read
            // before it, so it may follow the restore at once.
            Err(Refusal::Restoring) if kind == Some(MessageType::StreamResume) => {
                let max = self.config.max_message_size;
                if frame.len() > max {
                    return Err(Refusal::TooLarge {
                        size: frame.len(),
                        max,
                    });
                }
            }
            result => result?,
        }
        match kind {
            Some(kind) if kind.is_extension() => {
                let needed = match kind {
                    MessageType::StreamResume => FeatureFlags::STREAMS,
                    MessageType::KeyedRequestBinary
                    | MessageType::KeyedRequestUtf8
                    | MessageType::KeyedRequestUtf16 => FeatureFlags::KEYED_REQUESTS,
                    // The ExtensionHello has its own method.
                    _ => return Err(Refusal::NotGranted(kind)),
                };
                match self.granted() {
                    Some(granted) if granted.contains(needed) => Ok(()),
                    _ => Err(Refusal::NotGranted(kind)),
                }
            }
            _ => Ok(()),
        }
    }

    fn may_send(&self, size: usize) -> Result<(), Refusal> {
        if self.state != State::Open {
            return Err(Refusal::Closed);
        }
        if self.is_opting_in() {
            return Err(Refusal::OptingIn);
        }
        if self.restore.is_some() {
            return Err(Refusal::Restoring);
        }
        let max = self.config.max_message_size;
        if size > max {
            return Err(Refusal::TooLarge { size, max });
        }
        Ok(())
    }

    fn track(&mut self, id: u64, waiter: Waiter<T>, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            self.deadlines.push(Reverse((deadline, id)));
        }
        self.in_flight.insert(id, InFlight { waiter, deadline });
    }

    fn answer(&mut self, id: u64, answer: ServerMessage) {
        match self.in_flight.remove(&id) {
            Some(entry) => self.finish(id, entry.waiter, Outcome::Answered(answer)),
            None => {
                self.ignored_replies += 1;
                self.events
                    .push_back(Event::Ignored(Ignored::UnknownReply(id)));
            }
        }
        self.close_if_settled();
    }

    /// Queues the outcome of a request taken out of the table.
    fn finish(&mut self, id: u64, waiter: Waiter<T>, outcome: Outcome) {
        match waiter {
            Waiter::Caller(token) => self.events.push_back(Event::Answer { id, token, outcome }),
            Waiter::Restore => {
                self.restore = None;
                let restored = match outcome {
                    Outcome::Answered(ServerMessage::Reply(reply)) => {
                        match session_of_reply(&reply.payload) {
                            Ok(session) => RestoreOutcome::Restored(session),
                            Err(err) => RestoreOutcome::InvalidSession(err),
                        }
                    }
                    Outcome::Answered(ServerMessage::SessionNotFound(_)) => {
                        RestoreOutcome::NotFound
                    }
                    Outcome::Answered(ServerMessage::Shutdown(_)) => RestoreOutcome::Shutdown,
                    Outcome::Answered(other) => RestoreOutcome::Refused(other),
                    Outcome::TimedOut => RestoreOutcome::TimedOut,
                    Outcome::Lost | Outcome::Closed => RestoreOutcome::Lost,
                };
                self.events.push_back(Event::Restore(restored));
            }
        }
    }

    fn fail_all(&mut self, outcome: Outcome) {
        let mut ended: Vec<_> = self.in_flight.drain().collect();
        // In id order, so that outcomes come in the order requests were made.
        ended.sort_unstable_by_key(|(id, _)| *id);
        for (id, entry) in ended {
            self.finish(id, entry.waiter, outcome.clone());
        }
        self.deadlines.clear();
    }

    /// Sends the close frame once a close was asked and no request is left.
    fn close_if_settled(&mut self) {
        if matches!(self.state, State::Closing { .. }) && self.in_flight.is_empty() {
            self.send_close(CLOSE_NORMAL);
        }
    }

    fn send_close(&mut self, code: u16) {
        self.transmits.push_back(Transmit::Close(code));
        self.state = State::CloseSent { deadline: None };
    }

    fn violation(&mut self, code: u16, error: Option<ParseError>) {
        match self.state {
            // Our close frame is out: nothing more is written; the
            // handshake's end decides.
            State::CloseSent { .. } | State::Ended => {}
            State::Open | State::Closing { .. } => {
                let outcome = if self.close_asked {
                    Outcome::Closed
                } else {
                    Outcome::Lost
                };
                self.fail_all(outcome);
                self.transmits.push_back(Transmit::Close(code));
                self.end(End::Violation { code, error });
            }
        }
    }

    fn end(&mut self, end: End) {
        self.state = State::Ended;
        self.restore = None;
        self.events.push_back(Event::Ended(end));
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        if self.is_opting_in() {
            // Nothing but the hello until the server's answer.
            return None;
        }
        match self.state {
            State::Open | State::Closing { .. } => {
                self.last_sent.checked_add(self.config.heartbeat?)
            }
            State::CloseSent { .. } | State::Ended => None,
        }
    }
}

impl<T> fmt::Debug for ClientConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConnection")
            .field("state", &self.state)
            .field("in_flight", &self.in_flight.len())
            .field("restoring", &self.restore.is_some())
            .field("opt_in", &self.opt_in)
            .field("transmits", &self.transmits.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}
