//! [`Client`]: the cheap-to-clone handle the application uses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, oneshot};
use webwire_proto::{AcceptConf, ClientMessage, Name, Payload, Request, RequestId, Signal};

use crate::config::Config;
use crate::connection::{lock, ConnectionTask, Shared};
use crate::dial::dial;
use crate::error::{ConnectError, RequestError};
use crate::request::{CancelOnDrop, Command, Kind, Outgoing};
use crate::{ClientBuilder, Events, Session, SessionJsonError};

/// The state of a [`Client`]'s connection.
///
/// ```
/// use webwire_client::Status;
///
/// assert_eq!(Status::Connected.to_string(), "connected");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Connected: calls are sent at once.
    Connected,
    /// Connecting or reconnecting: calls wait for the connection, up to
    /// their timeout.
    Connecting,
    /// Disconnected without automatic reconnection: calls fail with
    /// [`RequestError::Disconnected`] until [`Client::reconnect`].
    Disconnected,
    /// Closed with [`Client::close`]: calls fail with [`RequestError::Closed`].
    Closed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Disconnected => "disconnected",
            Self::Closed => "closed",
        })
    }
}

/// A webwire client: requests, signals and sessions over one connection
/// that it keeps up.
///
/// Cheap to clone: clones share the connection. Calls from many tasks at
/// once are multiplexed on it, each request matched to its reply by id.
/// When the last clone is dropped, the connection is closed.
///
/// ```no_run
/// use webwire_client::{Client, Payload};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect("ws://127.0.0.1:9090/").await?;
/// let reply = client.request("echo", "hello").await?;
/// assert_eq!(reply.to_text()?, "hello");
/// client.signal("ping", Payload::utf16("hi")).await?;
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Dropped with the last `Client`: then the command channel closes and the
/// connection task closes the connection.
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    config: Arc<Config>,
}

impl Client {
    /// Connects to `url` (`ws://` or `wss://`) with the default options.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), webwire_client::ConnectError> {
    /// let client = webwire_client::Client::connect("ws://127.0.0.1:9090/").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::builder(url).connect().await
    }

    /// A builder to set options before connecting to `url`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), webwire_client::ConnectError> {
    /// let client = webwire_client::Client::builder("ws://127.0.0.1:9090/")
    ///     .auto_reconnect(false)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Dials, then starts the connection task.
    pub(crate) async fn start(config: Arc<Config>) -> Result<Self, ConnectError> {
        let conn = dial(&config).await?;
        let (events, _) = broadcast::channel(config.options.event_capacity);
        let shared = Arc::new(Shared::new(events.clone()));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let mut task =
            ConnectionTask::new(Arc::clone(&config), Arc::clone(&shared), command_rx, events);
        task.connected(&conn.conf);
        tokio::spawn(task.run(conn));
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                shared,
                config,
            }),
        })
    }

    /// Sends a request and waits for its reply, within the default request
    /// timeout (see [`ClientBuilder::request_timeout`]).
    ///
    /// The name is 0 to 255 bytes of printable ASCII; the payload is
    /// anything that converts into a [`Payload`] (`&str` and `String` as
    /// UTF-8, `Vec<u8>` and `Bytes` as binary, or a `Payload` of any
    /// encoding). The reply keeps the encoding the server chose.
    ///
    /// While the client is reconnecting the request waits for the
    /// connection. Dropping the returned future cancels the request; a
    /// reply that comes later is discarded.
    ///
    /// Webwire 2.1: on a connection that holds a session, the request is
    /// keyed. If the connection drops before the answer, it is sent again
    /// with its key after the reconnection (the server runs it at most
    /// once) instead of failing with [`RequestError::Disconnected`]; when
    /// that cannot be done it fails with [`RequestError::OutcomeUnknown`].
    /// Its future may still be dropped or time out: the server may run it
    /// anyway, and its answer then comes as a
    /// [`ClientEvent::OrphanReply`](crate::ClientEvent::OrphanReply).
    ///
    /// ```no_run
    /// use webwire_client::{Client, RequestError};
    ///
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// match client.request("login", "ann").await {
    ///     Ok(reply) => println!("session key {}", reply.to_text()?),
    ///     Err(RequestError::Request { code, message }) => println!("refused: {code}: {message}"),
    ///     Err(err) => return Err(err.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        name: &str,
        payload: impl Into<Payload>,
    ) -> Result<Payload, RequestError> {
        let timeout = self.inner.config.options.request_timeout;
        self.request_timeout(name, payload, timeout).await
    }

    /// [`request`](Self::request) with its own timeout.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use webwire_client::{Client, RequestError};
    ///
    /// # async fn run(client: Client) {
    /// let result = client.request_timeout("sleep", "5000", Duration::from_millis(100)).await;
    /// assert_eq!(result, Err(RequestError::TimedOut));
    /// # }
    /// ```
    pub async fn request_timeout(
        &self,
        name: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, RequestError> {
        let name = Name::try_from(name)?;
        let id = self.inner.shared.next_id();
        let payload = payload.into();
        let request = Request::new(RequestId::from(id), name.clone(), payload.clone())?;
        let frame = ClientMessage::Request(request).to_bytes();
        self.call(id, Kind::Request, frame, Some((name, payload)), timeout)
            .await
    }

    /// Sends a signal: one-way, never answered. Returns once it is written
    /// to the connection (waiting for a connection while reconnecting, up
    /// to the default request timeout).
    ///
    /// ```no_run
    /// # async fn run(client: webwire_client::Client) -> Result<(), webwire_client::RequestError> {
    /// client.signal("typing", "").await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal(
        &self,
        name: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), RequestError> {
        let signal = Signal::new(Name::try_from(name)?, payload.into())?;
        let frame = ClientMessage::Signal(signal).to_bytes();
        let (done, written) = oneshot::channel();
        self.command(Command::Signal { frame, done })?;
        match tokio::time::timeout(self.inner.config.options.request_timeout, written).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(RequestError::TimedOut),
        }
    }

    /// The client's events: connection changes, the server's signals and
    /// session notifications.
    ///
    /// The first call returns a receiver that has every event since the
    /// client was built (so the first [`ClientEvent::Connected`] and any
    /// signal that came right after connecting are not missed); later calls
    /// return receivers of the events from then on.
    ///
    /// ```no_run
    /// use webwire_client::{Client, ClientEvent};
    ///
    /// # async fn run(client: Client) {
    /// let mut events = client.events();
    /// tokio::spawn(async move {
    ///     while let Some(event) = events.recv().await {
    ///         match event {
    ///             ClientEvent::Signal(signal) => println!("signal {}", signal.name()),
    ///             ClientEvent::Disconnected => println!("connection lost, reconnecting"),
    ///             other => println!("{other:?}"),
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    ///
    /// [`ClientEvent::Connected`]: crate::ClientEvent::Connected
    pub fn events(&self) -> Events {
        if let Some(first) = lock(&self.inner.shared.first_events).take() {
            return Events::new(first);
        }
        match lock(&self.inner.shared.events).as_ref() {
            Some(events) => Events::new(events.subscribe()),
            // Closed: a receiver that ends at once.
            None => Events::new(broadcast::channel(1).0.subscribe()),
        }
    }

    /// The connection's state now.
    ///
    /// ```no_run
    /// use webwire_client::{Client, Status};
    ///
    /// # async fn run(client: Client) {
    /// if client.status() == Status::Connecting {
    ///     println!("reconnecting...");
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> Status {
        self.inner.shared.status()
    }

    /// The accept configuration of the current connection (read timeout,
    /// message buffer size, sub-protocol), `None` while not connected.
    ///
    /// ```no_run
    /// # fn run(client: webwire_client::Client) {
    /// if let Some(conf) = client.server_config() {
    ///     println!("messages up to {} bytes", conf.buffer_size);
    /// }
    /// # }
    /// ```
    pub fn server_config(&self) -> Option<AcceptConf> {
        lock(&self.inner.shared.server_conf).clone()
    }

    /// Webwire 2.1: this client instance's id, random and made once per
    /// `Client` (its clones share it). With the session and a sequence
    /// number it keys the requests the server runs at most once.
    ///
    /// ```no_run
    /// # fn run(client: webwire_client::Client) {
    /// assert_eq!(client.instance_id().len(), 22);
    /// # }
    /// ```
    pub fn instance_id(&self) -> &str {
        self.inner.shared.instance_id.as_str()
    }

    /// How many requests were sent and wait for their reply.
    ///
    /// ```no_run
    /// # fn run(client: webwire_client::Client) {
    /// println!("{} requests in flight", client.pending_requests());
    /// # }
    /// ```
    pub fn pending_requests(&self) -> usize {
        self.inner
            .shared
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A copy of the client's session, if it has one.
    ///
    /// ```no_run
    /// # fn run(client: webwire_client::Client) {
    /// if let Some(session) = client.session() {
    ///     println!("logged in since {:?}", session.creation);
    /// }
    /// # }
    /// ```
    pub fn session(&self) -> Option<Session> {
        self.inner.shared.session().clone()
    }

    /// A field of the session's info object, deserialized: `Ok(None)` when
    /// there is no session, no info or no such field.
    ///
    /// ```no_run
    /// # fn run(client: webwire_client::Client) -> Result<(), webwire_client::SessionJsonError> {
    /// let user: Option<String> = client.session_info("user")?;
    /// # Ok(()) }
    /// ```
    pub fn session_info<T: DeserializeOwned>(
        &self,
        field: &str,
    ) -> Result<Option<T>, SessionJsonError> {
        match self.inner.shared.session().as_ref() {
            Some(session) => session.info_field(field),
            None => Ok(None),
        }
    }

    /// Restores the session with `key` on this connection (for example a
    /// key saved before the application restarted). After a reconnection
    /// the client restores its session by itself.
    ///
    /// ```no_run
    /// # async fn run(client: webwire_client::Client, saved_key: &str) -> Result<(), webwire_client::RequestError> {
    /// let session = client.restore_session(saved_key).await?;
    /// assert_eq!(session.key, saved_key);
    /// # Ok(()) }
    /// ```
    pub async fn restore_session(&self, key: &str) -> Result<Session, RequestError> {
        if key.is_empty() {
            // No session has an empty key, and the message needs one.
            return Err(RequestError::SessionNotFound);
        }
        let id = self.inner.shared.next_id();
        let frame = ClientMessage::RestoreSession {
            id: RequestId::from(id),
            key: Bytes::copy_from_slice(key.as_bytes()),
        }
        .to_bytes();
        let timeout = self.inner.config.options.request_timeout;
        let payload = self
            .call(id, Kind::RestoreSession, frame, None, timeout)
            .await?;
        // The connection task checked it already.
        let text = payload
            .to_text()
            .map_err(|err| RequestError::InvalidSession(err.to_string()))?;
        Session::from_json(text.as_bytes())
            .map_err(|err| RequestError::InvalidSession(err.to_string()))
    }

    /// Closes the client's session on the server (on this connection; the
    /// session is destroyed if no other connection has it). Does nothing
    /// without a session.
    ///
    /// ```no_run
    /// # async fn run(client: webwire_client::Client) -> Result<(), webwire_client::RequestError> {
    /// client.close_session().await?;
    /// assert!(client.session().is_none());
    /// # Ok(()) }
    /// ```
    pub async fn close_session(&self) -> Result<(), RequestError> {
        if self.inner.shared.session().is_none() {
            return Ok(());
        }
        let id = self.inner.shared.next_id();
        let frame = ClientMessage::CloseSession(RequestId::from(id)).to_bytes();
        let timeout = self.inner.config.options.request_timeout;
        self.call(id, Kind::CloseSession, frame, None, timeout)
            .await
            .map(drop)
    }

    /// Connects again after the connection was lost with automatic
    /// reconnection off; returns at once if connected. With automatic
    /// reconnection on, waits for the next attempt's result.
    ///
    /// ```no_run
    /// use webwire_client::{Client, Status};
    ///
    /// # async fn run(client: Client) -> Result<(), webwire_client::ConnectError> {
    /// if client.status() == Status::Disconnected {
    ///     client.reconnect().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reconnect(&self) -> Result<(), ConnectError> {
        let (done, result) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Connect(done))
            .map_err(|_| ConnectError::Closed)?;
        result.await.unwrap_or(Err(ConnectError::Closed))
    }

    /// Closes the client gracefully: new calls fail with
    /// [`RequestError::Closed`], requests in flight get their replies (up
    /// to [`ClientBuilder::close_timeout`]; those still unanswered then fail
    /// with `Closed`), then the WebSocket is closed with code 1000. Returns
    /// once closed; calling it again returns at once.
    ///
    /// ```no_run
    /// # async fn run(client: webwire_client::Client) {
    /// client.close().await;
    /// assert_eq!(client.status(), webwire_client::Status::Closed);
    /// # }
    /// ```
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    /// Sends an encoded request and waits for its answer; dropping this
    /// future or its timeout cancels it.
    async fn call(
        &self,
        id: u64,
        kind: Kind,
        frame: Bytes,
        parts: Option<(Name, Payload)>,
        timeout: Duration,
    ) -> Result<Payload, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Request(Outgoing {
            id,
            kind,
            frame,
            reply,
            parts,
            session: None,
        }))?;
        let mut cancel = CancelOnDrop {
            id,
            commands: &self.inner.commands,
            armed: true,
        };
        let result = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.gone()),
            // `cancel` tells the connection task.
            Err(_) => return Err(RequestError::TimedOut),
        };
        cancel.disarm();
        result
    }

    fn command(&self, command: Command) -> Result<(), RequestError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| RequestError::Closed)
    }

    /// The error for a call the connection task dropped unanswered.
    fn gone(&self) -> RequestError {
        match self.status() {
            Status::Closed => RequestError::Closed,
            _ => RequestError::Disconnected,
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.config.target.uri)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
