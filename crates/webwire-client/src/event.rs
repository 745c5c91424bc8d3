//! What the client tells the application: connection changes, server
//! signals and session notifications, through a broadcast channel.

use tokio::sync::broadcast;
use webwire_proto::{Payload, Signal, StreamLoss, StreamSignal};

use crate::{RequestError, Session};

/// Something that happened on the client's connection.
///
/// Received with [`Events::recv`].
///
/// ```
/// use webwire_client::ClientEvent;
///
/// fn describe(event: &ClientEvent) -> String {
///     match event {
///         ClientEvent::Signal(signal) => format!("signal {}", signal.name()),
///         ClientEvent::SessionCreated(session) => format!("session {}", session.key),
///         ClientEvent::Lagged(n) => format!("{n} events lost"),
///         other => format!("{other:?}"),
///     }
/// }
/// assert_eq!(describe(&ClientEvent::Lagged(3)), "3 events lost");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection was established (the first one, or a reconnection; after
    /// a reconnection the session, if any, has been restored already).
    Connected,
    /// The connection was lost. In-flight requests failed with
    /// [`RequestError::Disconnected`](crate::RequestError::Disconnected),
    /// except keyed ones (webwire 2.1), which are sent again after the
    /// reconnection.
    Disconnected,
    /// The server sent a signal. Webwire 2.1: signals of a stream (the
    /// session's, or a room's with history) come here too, in order and
    /// once each, unless
    /// [`ClientBuilder::stream_signal_events`](crate::ClientBuilder::stream_signal_events)
    /// asks for [`StreamSignal`](Self::StreamSignal) instead.
    Signal(Signal),
    /// Webwire 2.1, with
    /// [`ClientBuilder::stream_signal_events`](crate::ClientBuilder::stream_signal_events):
    /// a signal of a stream, with the stream, its epoch and its offset.
    /// Delivered in order, once each (the client repairs gaps from the
    /// server's history).
    StreamSignal(StreamSignal),
    /// Webwire 2.1: signals of a stream are lost for good: the server no
    /// longer has `lost_from..=lost_to` (0 as `lost_from`: the start is
    /// unknown), or, with reason `UnknownStream`, the stream is not one
    /// this session may resume. The application decides what to do (for
    /// example reload the room's state).
    StreamLoss(StreamLoss),
    /// Webwire 2.1: the answer to a keyed request whose caller no longer
    /// waits (its future was dropped or timed out), with the request's
    /// sequence number, so that the application can reconcile.
    OrphanReply {
        /// The request's key: its sequence number.
        seq: u64,
        /// What the caller would have got.
        result: Result<Payload, RequestError>,
    },
    /// The server created a session for this connection.
    SessionCreated(Session),
    /// The server closed this connection's session, or the session could
    /// not be restored after a reconnection.
    SessionClosed,
    /// This receiver was too slow: that many events were dropped.
    Lagged(u64),
}

/// A receiver of [`ClientEvent`]s, from [`Client::events`](crate::Client::events).
///
/// Each receiver gets every event (a broadcast); a receiver that falls more
/// than the builder's
/// [`event_capacity`](crate::ClientBuilder::event_capacity) behind loses the
/// oldest events and gets [`ClientEvent::Lagged`] instead. Slow receivers
/// never hold up the connection.
///
/// ```no_run
/// use webwire_client::{Client, ClientEvent};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect("ws://127.0.0.1:9090/").await?;
/// let mut events = client.events();
/// while let Some(event) = events.recv().await {
///     if let ClientEvent::Signal(signal) = event {
///         println!("{}: {:?}", signal.name(), signal.payload().to_text()?);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<ClientEvent>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the client is closed (or dropped) and
    /// every event before has been received.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(ClientEvent::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(ClientEvent::Lagged(n)),
            Err(_) => None,
        }
    }
}
