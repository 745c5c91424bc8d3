//! The application's hooks: what the server calls when clients connect,
//! send signals and requests, and disconnect.

use crate::metrics::LazyRouteMetrics;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use webwire_proto::{Name, Payload, Request, Session, Signal};

use crate::error::DisconnectReason;
use crate::{Connection, HandlerError};

/// The application plugged into a server.
///
/// Implement it directly for full control, or use a [`MessageRouter`](crate::MessageRouter),
/// which dispatches by message name. Only [`on_request`](Handler::on_request)
/// is required; the other hooks do nothing by default.
///
/// Requests and signals arrive with their names and payloads as
/// zero-copy [`Bytes`](bytes::Bytes): they may be kept after the hook
/// returns. How many hooks of one connection run at once is the
/// connection's [`Concurrency`](crate::options::Concurrency).
///
/// A request hook returns the reply's payload, or an error: a
/// [`ReplyError`](crate::ReplyError) becomes an error reply with its
/// code and message; any other error, or a panic, becomes an
/// internal-error reply and is logged with `tracing`, never sent.
///
/// ```
/// use webwire_server::{Connection, Handler, HandlerError, Payload, Request, ReplyError};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_request(&self, _conn: &Connection, request: Request) -> Result<Payload, HandlerError> {
///         if request.name() == "fail" {
///             return Err(ReplyError::from_static("FAILED", "as asked").into());
///         }
///         Ok(request.payload().clone())
///     }
/// }
///
/// let server = webwire_server::Server::builder(Echo).build()?;
/// # Ok::<(), webwire_server::ServerError>(())
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A client connected. Called before its first message is read; the
    /// connection's upgrade request and options are on `conn`.
    fn on_connected(&self, conn: &Connection) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// A connection ended, for `reason`. Called once, after its handlers
    /// have returned.
    fn on_disconnected(
        &self,
        conn: &Connection,
        reason: &DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, reason);
        async {}
    }

    /// A client sent a signal. Signals are never answered.
    fn on_signal(&self, conn: &Connection, signal: Signal) -> impl Future<Output = ()> + Send {
        let _ = (conn, signal);
        async {}
    }

    /// A client sent a request; the result is its reply.
    fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> impl Future<Output = Result<Payload, HandlerError>> + Send;

    /// A session was created on `conn`
    /// ([`Connection::create_session`]): called once the client's
    /// notification is queued and the session manager has been asked to
    /// store it, before `create_session` returns.
    ///
    /// ```
    /// use webwire_server::{
    ///     session::Session, Connection, Handler, HandlerError, Payload, Request,
    /// };
    ///
    /// struct App;
    ///
    /// impl Handler for App {
    ///     async fn on_request(&self, _conn: &Connection, req: Request) -> Result<Payload, HandlerError> {
    ///         Ok(req.payload().clone())
    ///     }
    ///
    ///     async fn on_session_created(&self, conn: &Connection, session: &Session) {
    ///         println!("{} signed in: {:?}", conn.id(), session.info);
    ///     }
    /// }
    /// ```
    fn on_session_created(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, session);
        async {}
    }

    /// A client restored `session` on `conn` (its restore request
    /// succeeded): called once the reply is queued, before the
    /// connection's next message is read.
    fn on_session_restored(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> impl Future<Output = ()> + Send {
        let _ = (conn, session);
        async {}
    }

    /// `conn` left its session `key` because it was closed: by the client
    /// (called once the reply is queued), by the server
    /// ([`Connection::close_session`], called before it returns) or
    /// everywhere ([`Server::close_session`](crate::Server::close_session),
    /// once for every connection that held it). Not called when a
    /// connection ends: the session stays stored and
    /// [`on_disconnected`](Self::on_disconnected) can still read it.
    fn on_session_closed(&self, conn: &Connection, key: &str) -> impl Future<Output = ()> + Send {
        let _ = (conn, key);
        async {}
    }

    /// Routes a request to a future that is boxed already and owns what
    /// it needs, with the name of the route that took it; `Err` gives the
    /// request back, and the server calls [`on_request`](Self::on_request).
    ///
    /// A router that boxes its routes' futures anyway (as
    /// [`MessageRouter`](crate::MessageRouter) does, to keep routes of
    /// different types in one table) implements this so that a request
    /// costs one allocation instead of two (the server boxes
    /// `on_request`'s future otherwise) and its name is not copied for the
    /// log. Most handlers leave it alone.
    fn route_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> Result<Routed<'_, Result<Payload, HandlerError>>, Request> {
        let _ = conn;
        Err(request)
    }

    /// As [`route_request`](Self::route_request), for a signal.
    fn route_signal(&self, conn: &Connection, signal: Signal) -> Result<Routed<'_, ()>, Signal> {
        let _ = conn;
        Err(signal)
    }
}

/// A handler's future as a router made it (see
/// [`Handler::route_request`]): boxed once, owning what it needs, and the
/// name of the route that took the message, for the server's log.
pub struct Routed<'a, T> {
    pub(crate) future: BoxFuture<'static, T>,
    pub(crate) route: &'a Name,
    /// The route's metric handles (a [`MessageRouter`](crate::MessageRouter)
    /// route's); `None` counts the request under
    /// [`UNKNOWN_ROUTE`](crate::metrics::UNKNOWN_ROUTE).
    pub(crate) metrics: Option<&'a LazyRouteMetrics>,
}

impl<'a, T> Routed<'a, T> {
    /// The future that handles the message, taken by the route named
    /// `route`. Its requests count in the metrics under
    /// [`UNKNOWN_ROUTE`](crate::metrics::UNKNOWN_ROUTE): only a
    /// [`MessageRouter`](crate::MessageRouter)'s routes have handles of
    /// their own (label values stay bounded).
    pub fn new(future: BoxFuture<'static, T>, route: &'a Name) -> Self {
        Self {
            future,
            route,
            metrics: None,
        }
    }

    /// As [`new`](Self::new), with the route's metric handles.
    pub(crate) fn with_metrics(
        future: BoxFuture<'static, T>,
        route: &'a Name,
        metrics: &'a LazyRouteMetrics,
    ) -> Self {
        Self {
            future,
            route,
            metrics: Some(metrics),
        }
    }
}

impl<T> std::fmt::Debug for Routed<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("route", self.route)
            .finish_non_exhaustive()
    }
}

/// The session hooks of a [`Handler`], callable without knowing its type
/// (the session operations are not generic).
pub(crate) trait SessionHooks: Send + Sync + 'static {
    fn created<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()>;
    fn restored<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()>;
    fn closed<'a>(&'a self, conn: &'a Connection, key: &'a str) -> BoxFuture<'a, ()>;
}

/// A handler's session hooks.
pub(crate) struct HandlerHooks<H>(pub(crate) Arc<H>);

impl<H: Handler> SessionHooks for HandlerHooks<H> {
    fn created<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_created(conn, session))
    }

    fn restored<'a>(&'a self, conn: &'a Connection, session: &'a Session) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_restored(conn, session))
    }

    fn closed<'a>(&'a self, conn: &'a Connection, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.on_session_closed(conn, key))
    }
}
