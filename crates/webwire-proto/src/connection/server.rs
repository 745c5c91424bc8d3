//! The server's side of a connection: what a message the client sent asks
//! for, when the connection drains and closes, what may still be written,
//! and the read timeout.
//!
//! The machine is fed what happens:
//! [`handle_message`](ServerConnection::handle_message) and the other
//! `handle_*` methods for what was read, [`close`](ServerConnection::close)
//! when a close or shutdown is asked for,
//! [`handle_timeout`](ServerConnection::handle_timeout) when the read
//! timer fires, and [`send`](ServerConnection::send) for every message
//! about to be written (a handler's reply, a signal another task queued).
//! It answers with what to do: run a handler ([`Received::Request`]), answer
//! at once ([`Received::Answer`]), write or drop, close with a code
//! ([`Closing::close_frame`]). It counts the requests it read and the
//! replies written for them, so that every request gets exactly one reply
//! and nothing is written after the close frame.
//!
//! It also keeps the opt-in rules of the 2.1 extensions (docs/protocol.md
//! section 14). A machine made [`with_extensions`](ServerConnection::with_extensions)
//! (the server announced minor version 1) takes an ExtensionHello as the
//! client's first message ([`Received::ExtensionHello`], answered with an
//! [`ExtensionAccept`](crate::ExtensionAccept)); every other extension
//! message from a client that did not opt in, or of a feature not granted,
//! closes the connection with 1002 ([`ExtensionRule`]). It refuses to
//! write an extension message to a connection that did not opt in.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use webwire_proto::connection::server::{Drain, Read, Received, ServerConnection};
//! use webwire_proto::{ClientMessage, Name, Payload, Reply, Request, RequestId, ServerMessage};
//!
//! let start = Instant::now();
//! let mut conn = ServerConnection::new(Duration::from_secs(60), start);
//!
//! // A request named "echo".
//! let hi = Payload::binary(Bytes::from_static(b"hi"));
//! let request = Request::new(RequestId::from(1), Name::from_static("echo"), hi.clone())?;
//! let frame = ClientMessage::Request(request).to_bytes();
//! let Received::Request(request) = conn.handle_message(frame) else { panic!() };
//! assert_eq!(conn.unanswered(), 1);
//!
//! // A close is asked for while its handler runs: the connection drains.
//! conn.close(Drain::Close);
//! assert!(matches!(conn.next_read(true), Read::Wait));
//!
//! // The handler's reply is written, and counted as the request's answer.
//! let reply = ServerMessage::Reply(Reply::new(request.id(), hi));
//! assert!(conn.send(&reply));
//! assert_eq!(conn.unanswered(), 0);
//!
//! // No handler left: what has arrived is read, then the connection closes.
//! assert!(matches!(conn.next_read(false), Read::Arrived));
//! let closing = conn.nothing_arrived();
//! assert_eq!(closing.close_frame(), Some((1000, "")));
//! conn.close_sent();
//! assert!(!conn.send(&ServerMessage::SessionClosed), "nothing after the close frame");
//! # Ok::<(), webwire_proto::ValueError>(())
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    ClientMessage, ExtensionHello, ExtensionRule, FeatureFlags, KeyedRequest, MessageType,
    ParseError, Request, RequestId, ServerMessage, Signal, StreamResume,
};

/// Messages a draining connection still reads, once its handlers have
/// returned, from what has arrived already: requests among them are
/// answered with a shutdown reply instead of being lost with the socket.
pub const MAX_LATE_READS: u32 = 1024;

/// The server's side of one connection, without I/O.
#[derive(Debug)]
pub struct ServerConnection {
    state: State,
    read_timeout: Duration,
    /// When the connection was last seen active, as the task last read the
    /// clock (once per wait, not per message).
    last_activity: Instant,
    /// Whether anything arrived since `last_activity` was taken.
    active: bool,
    /// Reads of a drained connection (see [`MAX_LATE_READS`]).
    late_reads: u32,
    received: u64,
    unanswered: u64,
    discarded: u64,
    /// The first and the last time a message was over the rate limit in
    /// the current run of such messages (see [`over_limit`](ServerConnection::over_limit)).
    over_limit: Option<(Instant, Instant)>,
    extensions: Extensions,
}

/// Where the 2.1 opt-in of a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extensions {
    /// The server announced 2.0: no extension message either way.
    NotAnnounced,
    /// The server announced 2.1 and supports these features; the client's
    /// first message has not been read yet.
    Offered(FeatureFlags),
    /// The client's first message was no ExtensionHello: a 2.0 connection.
    Declined,
    /// The ExtensionHello was read and these features granted; the
    /// ExtensionAccept is not written yet.
    Accepting(FeatureFlags),
    /// The ExtensionAccept was written.
    Accepted(FeatureFlags),
}

/// The longest quiet time between messages over the rate limit that still
/// counts as one run of them: a client that goes over the limit at least
/// this often keeps exceeding it.
pub const OVER_LIMIT_GAP: Duration = Duration::from_secs(1);

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes new work.
    Open,
    /// A close or a shutdown was asked for: requests are answered with
    /// [`ServerMessage::Shutdown`], signals are dropped, running handlers
    /// finish and their replies are written.
    Draining(Drain),
    /// The connection is to close: what is queued is still written, then
    /// the close frame.
    Closing,
    /// The close frame was written, or the client's was read, or the
    /// transport failed: nothing more is written.
    Closed,
}

/// Why a connection drains. Ordered: when several are asked for, the
/// greatest wins (a shutdown over a restart over a close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drain {
    /// The application closed the connection.
    Close,
    /// The server drains for a restart or a deploy: close code 1012
    /// (service restart), which tells clients to reconnect, after a random
    /// delay, to another node (it wins over a close asked for before).
    Restart,
    /// The server shuts down (it wins over a close or a restart asked for
    /// before).
    Shutdown,
}

/// Why a connection ends, as the rules decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// The client sent its close frame (`code` is `Some`) or ended the
    /// stream (`None`).
    PeerClosed {
        /// The code of the client's close frame.
        code: Option<u16>,
        /// The reason of the client's close frame.
        reason: String,
    },
    /// The client sent a text message; webwire messages are binary.
    TextMessage,
    /// The client sent a message that breaks the protocol.
    ProtocolViolation(ParseError),
    /// Nothing arrived within the read timeout.
    ReadTimeout,
    /// The connection drained after a close or a shutdown was asked for.
    Drained(Drain),
    /// The client kept sending over its rate limit (see
    /// [`ServerConnection::over_limit`]).
    PolicyViolation,
}

impl Closing {
    /// The close frame the server sends for this, as (code, reason);
    /// `None` when the client closed (the WebSocket layer answers its
    /// close frame).
    pub fn close_frame(&self) -> Option<(u16, &'static str)> {
        Some(match self {
            Self::PeerClosed { .. } => return None,
            Self::TextMessage => (1003, "text messages are not supported"),
            Self::ProtocolViolation(_) => (1002, "protocol violation"),
            Self::ReadTimeout => (1001, "read timeout"),
            Self::Drained(Drain::Close) => (1000, ""),
            Self::Drained(Drain::Restart) => (1012, "service restart"),
            Self::Drained(Drain::Shutdown) => (1001, "server shutdown"),
            Self::PolicyViolation => (1008, "rate limit exceeded"),
        })
    }
}

/// What to do for a binary message the client sent.
#[derive(Debug)]
pub enum Received {
    /// Run the request handler; its reply goes through
    /// [`ServerConnection::send`].
    Request(Request),
    /// Run the signal handler.
    Signal(Signal),
    /// Restore the session with this key; answer through
    /// [`ServerConnection::send`].
    RestoreSession {
        /// The request's id.
        id: RequestId,
        /// The session key, as the client sent it.
        key: Bytes,
    },
    /// Close the connection's session; answer through
    /// [`ServerConnection::send`].
    CloseSession(RequestId),
    /// 2.1: the client opted in. Answer with
    /// [`ServerMessage::ExtensionAccept`] carrying exactly `granted` (and
    /// the ledger epoch) through [`ServerConnection::send`], before any
    /// other message: until it is written no other extension message may be.
    ExtensionHello {
        /// The client's hello: the features it asked for, its instance id.
        hello: ExtensionHello,
        /// The features granted: asked for and supported.
        granted: FeatureFlags,
    },
    /// 2.1: run the keyed request (at most once per key); its reply, or
    /// [`ServerMessage::OutcomeUnknown`], goes through
    /// [`ServerConnection::send`].
    KeyedRequest(KeyedRequest),
    /// 2.1: resume the client's streams; the reply goes through
    /// [`ServerConnection::send`].
    StreamResume(StreamResume),
    /// Write this answer at once (through [`ServerConnection::send`]): a
    /// request read while the connection drains.
    Answer(ServerMessage),
    /// Nothing to do (a heartbeat, a signal while draining).
    Nothing,
    /// Close the connection for this.
    Close(Closing),
}

/// What the connection task reads next.
#[derive(Debug)]
pub enum Read {
    /// Wait for the next message, up to the read deadline.
    Wait,
    /// Draining, and every handler has returned: take only a message that
    /// has arrived already, and call
    /// [`nothing_arrived`](ServerConnection::nothing_arrived) when none has.
    Arrived,
    /// Read no more: close for this.
    Close(Closing),
}

impl ServerConnection {
    /// A connection that opened (its accept configuration sent) at `now`.
    pub fn new(read_timeout: Duration, now: Instant) -> Self {
        Self {
            state: State::Open,
            read_timeout,
            last_activity: now,
            active: false,
            late_reads: 0,
            received: 0,
            unanswered: 0,
            discarded: 0,
            over_limit: None,
            extensions: Extensions::NotAnnounced,
        }
    }

    /// The same machine for a connection whose AcceptConf announced
    /// protocol 2.1 (minor version 1), by a server that supports the
    /// features `supported` (bits this crate does not know are never
    /// granted).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use bytes::Bytes;
    /// use webwire_proto::connection::server::{Received, ServerConnection};
    /// use webwire_proto::{ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, ClientMessage, ServerMessage};
    ///
    /// let mut conn = ServerConnection::new(Duration::from_secs(60), Instant::now())
    ///     .with_extensions(FeatureFlags::STREAMS);
    /// let hello = ExtensionHello::new(FeatureFlags::KNOWN, InstanceId::new("0123456789abcdef")?)?;
    /// let Received::ExtensionHello { granted, .. } =
    ///     conn.handle_message(ClientMessage::ExtensionHello(hello).to_bytes()) else { panic!() };
    /// assert_eq!(granted, FeatureFlags::STREAMS);
    /// assert_eq!(conn.granted(), None, "not before the ExtensionAccept is written");
    /// assert!(conn.send(&ServerMessage::ExtensionAccept(ExtensionAccept { flags: granted, ledger_epoch: 1 })));
    /// assert_eq!(conn.granted(), Some(FeatureFlags::STREAMS));
    /// # Ok::<(), webwire_proto::ValueError>(())
    /// ```
    pub fn with_extensions(mut self, supported: FeatureFlags) -> Self {
        self.extensions = Extensions::Offered(supported & FeatureFlags::KNOWN);
        self
    }

    /// The server cannot grant `features` after all, although it offered
    /// them (its request ledger is unreachable, say): the ExtensionAccept
    /// about to be written grants the others. Only between the
    /// [`Received::ExtensionHello`] and that ExtensionAccept; no effect
    /// otherwise.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use webwire_proto::connection::server::{Received, ServerConnection};
    /// use webwire_proto::{ClientMessage, ExtensionAccept, ExtensionHello, FeatureFlags, InstanceId, ServerMessage};
    ///
    /// let mut conn = ServerConnection::new(Duration::from_secs(60), Instant::now())
    ///     .with_extensions(FeatureFlags::KNOWN);
    /// let hello = ExtensionHello::new(FeatureFlags::KNOWN, InstanceId::new("0123456789abcdef")?)?;
    /// conn.handle_message(ClientMessage::ExtensionHello(hello).to_bytes());
    /// conn.withhold(FeatureFlags::KEYED_REQUESTS);
    /// let accept = ExtensionAccept { flags: FeatureFlags::STREAMS, ledger_epoch: 0 };
    /// assert!(conn.send(&ServerMessage::ExtensionAccept(accept)));
    /// assert_eq!(conn.granted(), Some(FeatureFlags::STREAMS));
    /// # Ok::<(), webwire_proto::ValueError>(())
    /// ```
    pub fn withhold(&mut self, features: FeatureFlags) {
        if let Extensions::Accepting(granted) = self.extensions {
            self.extensions = Extensions::Accepting(granted.difference(features));
        }
    }

    /// The 2.1 features granted to this connection, once its
    /// ExtensionAccept was written; `None` for a 2.0 connection (or before
    /// the ExtensionAccept). Stream signals go to a connection as
    /// [`ServerMessage::StreamSignal`] only when this contains
    /// [`FeatureFlags::STREAMS`], as plain signals otherwise.
    #[inline]
    pub fn granted(&self) -> Option<FeatureFlags> {
        match self.extensions {
            Extensions::Accepted(granted) => Some(granted),
            _ => None,
        }
    }

    /// Where the connection is.
    #[inline]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection takes new work.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether a close or a shutdown was asked for (or the connection is
    /// closing already).
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.state != State::Open
    }

    /// Binary messages received.
    #[inline]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Requests read whose reply has not been written (or dropped after
    /// the close) yet.
    #[inline]
    pub fn unanswered(&self) -> u64 {
        self.unanswered
    }

    /// Replies dropped because the connection had closed.
    #[inline]
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// A binary message arrived: what it asks for.
    #[inline]
    pub fn handle_message(&mut self, data: Bytes) -> Received {
        self.active = true;
        self.received += 1;
        let message = match ClientMessage::parse(data) {
            Ok(message) => message,
            Err(err) => return Received::Close(self.closing_now(Closing::ProtocolViolation(err))),
        };
        if let Err(rule) = self.opt_in(&message) {
            let err = ParseError::NotAllowed {
                kind: message.message_type(),
                rule,
            };
            return Received::Close(self.closing_now(Closing::ProtocolViolation(err)));
        }
        let open = self.is_open();
        match message {
            ClientMessage::Request(request) => {
                self.unanswered += 1;
                if open {
                    Received::Request(request)
                } else {
                    Received::Answer(ServerMessage::Shutdown(request.id()))
                }
            }
            ClientMessage::Signal(signal) if open => Received::Signal(signal),
            ClientMessage::Signal(_) | ClientMessage::Heartbeat => Received::Nothing,
            ClientMessage::RestoreSession { id, key } => {
                self.unanswered += 1;
                if open {
                    Received::RestoreSession { id, key }
                } else {
                    Received::Answer(ServerMessage::Shutdown(id))
                }
            }
            ClientMessage::CloseSession(id) => {
                self.unanswered += 1;
                if open {
                    Received::CloseSession(id)
                } else {
                    Received::Answer(ServerMessage::Shutdown(id))
                }
            }
            ClientMessage::ExtensionHello(hello) => {
                let granted = match self.extensions {
                    Extensions::Accepting(granted) => granted,
                    // opt_in moved to Accepting or refused the hello.
                    _ => FeatureFlags::NONE,
                };
                Received::ExtensionHello { hello, granted }
            }
            ClientMessage::KeyedRequest(request) => {
                self.unanswered += 1;
                if open {
                    Received::KeyedRequest(request)
                } else {
                    Received::Answer(ServerMessage::Shutdown(request.id()))
                }
            }
            ClientMessage::StreamResume(resume) => {
                self.unanswered += 1;
                if open {
                    Received::StreamResume(resume)
                } else {
                    Received::Answer(ServerMessage::Shutdown(resume.id()))
                }
            }
        }
    }

    /// The opt-in rules for a message the client sent (docs/protocol.md
    /// section 14): an ExtensionHello only first and only once, and only
    /// when 2.1 was announced; the other extension messages only on a
    /// connection that opted in, for a feature granted.
    #[inline]
    fn opt_in(&mut self, message: &ClientMessage) -> Result<(), ExtensionRule> {
        let needed = match message {
            ClientMessage::ExtensionHello(hello) => {
                return match self.extensions {
                    Extensions::Offered(supported) => {
                        self.extensions = Extensions::Accepting(hello.flags() & supported);
                        Ok(())
                    }
                    Extensions::NotAnnounced => Err(ExtensionRule::NotAnnounced),
                    Extensions::Declined => Err(ExtensionRule::HelloNotFirst),
                    Extensions::Accepting(_) | Extensions::Accepted(_) => {
                        Err(ExtensionRule::Repeated)
                    }
                };
            }
            ClientMessage::StreamResume(_) => FeatureFlags::STREAMS,
            ClientMessage::KeyedRequest(_) => FeatureFlags::KEYED_REQUESTS,
            ClientMessage::Request(_)
            | ClientMessage::Signal(_)
            | ClientMessage::RestoreSession { .. }
            | ClientMessage::CloseSession(_)
            | ClientMessage::Heartbeat => {
                if let Extensions::Offered(_) = self.extensions {
                    self.extensions = Extensions::Declined;
                }
                return Ok(());
            }
        };
        match self.extensions {
            // A client may not send before the accept arrives; a server
            // cannot tell whether it did, so Accepting counts as opted in.
            Extensions::Accepting(granted) | Extensions::Accepted(granted) => {
                if granted.contains(needed) {
                    Ok(())
                } else {
                    Err(ExtensionRule::NotGranted(needed))
                }
            }
            Extensions::NotAnnounced => Err(ExtensionRule::NotAnnounced),
            Extensions::Offered(_) | Extensions::Declined => Err(ExtensionRule::NotOptedIn),
        }
    }

    /// Whether an extension message may be written: the ExtensionAccept
    /// once, with the granted features, after the hello; the others once
    /// it is written, for a feature granted. Moves to Accepted.
    fn may_send_extension(&mut self, message: &ServerMessage) -> bool {
        match (message, self.extensions) {
            (ServerMessage::ExtensionAccept(accept), Extensions::Accepting(granted)) => {
                let exact = accept.flags == granted;
                if exact {
                    self.extensions = Extensions::Accepted(granted);
                }
                exact
            }
            (ServerMessage::ExtensionAccept(_), _) => false,
            (_, Extensions::Accepted(granted)) => {
                granted.contains(extension_feature(message.message_type()))
            }
            _ => false,
        }
    }

    /// A text message arrived: the connection closes.
    pub fn handle_text(&mut self) -> Closing {
        self.active = true;
        self.received += 1;
        self.closing_now(Closing::TextMessage)
    }

    /// A ping or a pong arrived: it only counts as activity.
    #[inline]
    pub fn handle_control(&mut self) {
        self.active = true;
    }

    /// The client's close frame arrived: nothing more is written (the
    /// WebSocket layer answers it).
    pub fn handle_close_frame(&mut self, code: u16, reason: &str) -> Closing {
        self.state = State::Closed;
        Closing::PeerClosed {
            code: Some(code),
            reason: reason.to_owned(),
        }
    }

    /// The stream ended without a close frame.
    pub fn handle_end(&mut self) -> Closing {
        self.state = State::Closed;
        Closing::PeerClosed {
            code: None,
            reason: String::new(),
        }
    }

    /// The transport failed (or the WebSocket layer refused the stream):
    /// nothing more is written.
    pub fn handle_transport_error(&mut self) {
        self.state = State::Closed;
    }

    /// The message just handled was over the client's rate limit at `now`
    /// (the server answered a request with an error reply, or dropped a
    /// signal): the connection closes with [`Closing::PolicyViolation`]
    /// once the client has kept exceeding the limit for `close_after`,
    /// that is, once messages over the limit have come no more than
    /// [`OVER_LIMIT_GAP`] apart for that long. The answer to the message
    /// may still be written before the close frame.
    pub fn over_limit(&mut self, now: Instant, close_after: Duration) -> Option<Closing> {
        let first = match self.over_limit {
            Some((first, last)) if now.saturating_duration_since(last) <= OVER_LIMIT_GAP => first,
            _ => now,
        };
        self.over_limit = Some((first, now));
        if self.state == State::Open && now.saturating_duration_since(first) >= close_after {
            Some(self.closing_now(Closing::PolicyViolation))
        } else {
            None
        }
    }

    /// A close, a restart or a shutdown was asked for: the connection
    /// drains (the greatest [`Drain`] asked for wins).
    pub fn close(&mut self, drain: Drain) {
        self.state = match self.state {
            State::Open => State::Draining(drain),
            State::Draining(before) => State::Draining(before.max(drain)),
            closing => closing,
        };
    }

    /// What to read next; `handlers_running` says whether handlers of
    /// this connection are still running.
    pub fn next_read(&mut self, handlers_running: bool) -> Read {
        match self.state {
            State::Open => Read::Wait,
            State::Draining(_) if handlers_running => Read::Wait,
            State::Draining(drain) => {
                self.late_reads += 1;
                if self.late_reads > MAX_LATE_READS {
                    Read::Close(self.closing_now(Closing::Drained(drain)))
                } else {
                    Read::Arrived
                }
            }
            // Whoever decided the close has its reason already.
            State::Closing | State::Closed => Read::Close(Closing::Drained(Drain::Close)),
        }
    }

    /// Draining with no handler running, and no message has arrived: the
    /// connection closes.
    pub fn nothing_arrived(&mut self) -> Closing {
        let drain = match self.state {
            State::Draining(drain) => drain,
            _ => Drain::Close,
        };
        self.closing_now(Closing::Drained(drain))
    }

    /// When the read timeout ends, if nothing arrives before; `now` reads
    /// the clock, only when messages arrived since it was last read.
    #[inline]
    pub fn read_deadline(&mut self, now: impl FnOnce() -> Instant) -> Instant {
        if self.active {
            self.last_activity = now();
            self.active = false;
        }
        self.last_activity + self.read_timeout
    }

    /// The read timer fired at `now`: closes for the read timeout when it
    /// has passed, otherwise `None` (wait again, up to
    /// [`read_deadline`](Self::read_deadline)).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Closing> {
        if self.active || now < self.last_activity + self.read_timeout {
            return None;
        }
        Some(self.closing_now(Closing::ReadTimeout))
    }

    /// A message is about to be written: whether it may be (not after the
    /// close frame). A reply is counted as its request's answer, written
    /// or dropped.
    ///
    /// An extension message is refused (`false`, and not counted) unless
    /// the connection opted in and was granted its feature, and the
    /// ExtensionAccept was written first; the ExtensionAccept itself only
    /// once, after the hello, with exactly the granted features. A refusal
    /// is the driver's bug: the rules never ask for such a message.
    #[inline]
    pub fn send(&mut self, message: &ServerMessage) -> bool {
        if let ServerMessage::OutcomeUnknown(_)
        | ServerMessage::StreamLoss(_)
        | ServerMessage::ExtensionAccept(_)
        | ServerMessage::StreamSignal(_) = message
            && !self.may_send_extension(message)
        {
            return false;
        }
        let reply = message.request_id().is_some();
        if reply {
            debug_assert!(self.unanswered > 0, "a reply for no request: {message:?}");
            self.unanswered = self.unanswered.saturating_sub(1);
        }
        if self.state == State::Closed {
            self.discarded += u64::from(reply);
            return false;
        }
        true
    }

    /// Whether a frame encoded already (a broadcast signal) may be
    /// written: not after the close frame, and an extension message only
    /// as [`send`](Self::send) allows it. Of those, only a stream signal or
    /// a StreamLoss may come encoded already (replies and the
    /// ExtensionAccept go through [`send`](Self::send)).
    #[inline]
    pub fn may_send_frame(&self, frame: &[u8]) -> bool {
        if self.state == State::Closed {
            return false;
        }
        match frame.first().copied().and_then(MessageType::from_byte) {
            Some(
                kind @ (MessageType::StreamSignalBinary
                | MessageType::StreamSignalUtf8
                | MessageType::StreamSignalUtf16
                | MessageType::StreamLoss),
            ) => self
                .granted()
                .is_some_and(|granted| granted.contains(extension_feature(kind))),
            Some(kind) => !kind.is_extension(),
            None => true,
        }
    }

    /// The close frame was written: nothing more is.
    pub fn close_sent(&mut self) {
        self.state = State::Closed;
    }

    fn closing_now(&mut self, closing: Closing) -> Closing {
        if self.state != State::Closed {
            self.state = State::Closing;
        }
        closing
    }
}

/// The feature a server's extension message belongs to.
fn extension_feature(kind: MessageType) -> FeatureFlags {
    match kind {
        MessageType::ReplyOutcomeUnknown => FeatureFlags::KEYED_REQUESTS,
        MessageType::StreamLoss
        | MessageType::StreamSignalBinary
        | MessageType::StreamSignalUtf8
        | MessageType::StreamSignalUtf16 => FeatureFlags::STREAMS,
        // Never asked for: not a feature's message.
        _ => FeatureFlags::from_bits(u32::MAX),
    }
}

#[cfg(test)]
mod tests;
