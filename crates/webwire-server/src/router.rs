//! Dispatch by message name, the way axum routes paths: a handler per
//! request or signal name, fallbacks for unknown names, and typed
//! arguments and replies (see [`FromRequest`], [`FromSignal`],
//! [`IntoReply`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use webwire_proto::{Name, Payload, Request, Signal};

use crate::extract::{FromRequest, FromSignal, IntoReply};
use crate::{Connection, DisconnectReason, Handler, HandlerError, RequestError};

type ErasedRequest = Arc<
    dyn Fn(Connection, Request) -> BoxFuture<'static, Result<Payload, HandlerError>> + Send + Sync,
>;
type ErasedSignal = Arc<dyn Fn(Connection, Signal) -> BoxFuture<'static, ()> + Send + Sync>;
type ConnectHook = Arc<dyn Fn(Connection) -> BoxFuture<'static, ()> + Send + Sync>;
type DisconnectHook =
    Arc<dyn Fn(Connection, DisconnectReason) -> BoxFuture<'static, ()> + Send + Sync>;

/// An async function that can handle requests: `Fn(Connection, X)` or
/// `Fn(X)`, where `X` is a [`FromRequest`] value (the whole [`Request`],
/// its [`Payload`], `Bytes`, `String`, or [`Json<T>`](crate::Json)), and
/// the future resolves to a `Result` whose value is a reply
/// ([`IntoReply`]).
///
/// The marker `T` only tells the two shapes apart.
pub trait RequestHandler<T>: Send + Sync + 'static {
    /// Handles one request.
    fn call(
        &self,
        conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>>;
}

impl<F, Fut, X, R> RequestHandler<(Connection, X, R)> for F
where
    F: Fn(Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
{
    fn call(
        &self,
        conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        match X::from_request(request) {
            Ok(x) => self(conn, x).map(IntoReply::into_reply).boxed(),
            Err(err) => futures_util::future::ready(Err(err.into())).boxed(),
        }
    }
}

impl<F, Fut, X, R> RequestHandler<(X, R)> for F
where
    F: Fn(X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    X: FromRequest + Send + 'static,
    R: IntoReply + 'static,
{
    fn call(
        &self,
        _conn: Connection,
        request: Request,
    ) -> BoxFuture<'static, Result<Payload, HandlerError>> {
        match X::from_request(request) {
            Ok(x) => self(x).map(IntoReply::into_reply).boxed(),
            Err(err) => futures_util::future::ready(Err(err.into())).boxed(),
        }
    }
}

/// An async function that can handle signals: `Fn(Connection, X)` or
/// `Fn(X)`, where `X` is a [`FromSignal`] value (the whole [`Signal`], its
/// [`Payload`], `Bytes`, `String`, or [`Json<T>`](crate::Json)). A signal
/// whose payload cannot be extracted is dropped and logged.
pub trait SignalHandler<T>: Send + Sync + 'static {
    /// Handles one signal.
    fn call(&self, conn: Connection, signal: Signal) -> BoxFuture<'static, ()>;
}

impl<F, Fut, X> SignalHandler<(Connection, X)> for F
where
    F: Fn(Connection, X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
{
    fn call(&self, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        let name = signal.name().clone();
        match X::from_signal(signal) {
            Ok(x) => self(conn, x).boxed(),
            Err(err) => {
                tracing::warn!(connection = %conn.id(), signal = %name, error = %err, "signal dropped: payload not readable");
                futures_util::future::ready(()).boxed()
            }
        }
    }
}

impl<F, Fut, X> SignalHandler<(X,)> for F
where
    F: Fn(X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    X: FromSignal + Send + 'static,
{
    fn call(&self, conn: Connection, signal: Signal) -> BoxFuture<'static, ()> {
        let name = signal.name().clone();
        match X::from_signal(signal) {
            Ok(x) => self(x).boxed(),
            Err(err) => {
                tracing::warn!(connection = %conn.id(), signal = %name, error = %err, "signal dropped: payload not readable");
                futures_util::future::ready(()).boxed()
            }
        }
    }
}

/// A [`Handler`] that dispatches requests and signals by name.
///
/// Unknown request names go to the request fallback, by default an error
/// reply with code [`RequestError::UNKNOWN_REQUEST`]; unknown signals go to
/// the signal fallback, by default ignored. The empty name is a name like
/// any other (`request("", ...)`).
///
/// ```
/// use webwire_server::{Connection, Json, Payload, Request, RequestError, Router, Signal};
///
/// let router = Router::new()
///     // The raw request: name, id and payload with its encoding.
///     .request("echo", |_conn: Connection, req: Request| async move {
///         Ok::<_, RequestError>(req.payload().clone())
///     })
///     // The payload as text (UTF-8 or UTF-16); a `String` reply is UTF-8.
///     .request("greet", |name: String| async move {
///         Ok::<_, RequestError>(format!("hello, {name}"))
///     })
///     // Typed JSON in and out.
///     .request("double", |Json(n): Json<i64>| async move {
///         Ok::<_, RequestError>(Json(n * 2))
///     })
///     .signal("typing", |conn: Connection, _: Payload| async move {
///         println!("{} is typing", conn.id());
///     })
///     .request_fallback(|req: Request| async move {
///         Err::<(), _>(RequestError::from_static("NOPE", format!("no {}", req.name())))
///     });
/// ```
#[derive(Clone, Default)]
pub struct Router {
    requests: HashMap<Name, ErasedRequest>,
    signals: HashMap<Name, ErasedSignal>,
    request_fallback: Option<ErasedRequest>,
    signal_fallback: Option<ErasedSignal>,
    on_connect: Option<ConnectHook>,
    on_disconnect: Option<DisconnectHook>,
}

fn route_name(name: &str) -> Name {
    match Name::try_from(name) {
        Ok(name) => name,
        Err(err) => panic!("invalid webwire route name {name:?}: {err}"),
    }
}

impl Router {
    /// A router without routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes requests named `name` to `handler`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid name (longer than 255 bytes or not
    /// printable ASCII) or already has a request handler: programming
    /// errors, as in axum.
    pub fn request<T, H: RequestHandler<T>>(mut self, name: &str, handler: H) -> Self {
        let name = route_name(name);
        let erased: ErasedRequest = Arc::new(move |conn, request| handler.call(conn, request));
        if self.requests.insert(name.clone(), erased).is_some() {
            panic!("request {name:?} is routed twice");
        }
        self
    }

    /// Routes signals named `name` to `handler`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid name or already has a signal handler.
    pub fn signal<T, H: SignalHandler<T>>(mut self, name: &str, handler: H) -> Self {
        let name = route_name(name);
        let erased: ErasedSignal = Arc::new(move |conn, signal| handler.call(conn, signal));
        if self.signals.insert(name.clone(), erased).is_some() {
            panic!("signal {name:?} is routed twice");
        }
        self
    }

    /// Handles requests whose name has no route.
    pub fn request_fallback<T, H: RequestHandler<T>>(mut self, handler: H) -> Self {
        self.request_fallback = Some(Arc::new(move |conn, request| handler.call(conn, request)));
        self
    }

    /// Handles signals whose name has no route.
    pub fn signal_fallback<T, H: SignalHandler<T>>(mut self, handler: H) -> Self {
        self.signal_fallback = Some(Arc::new(move |conn, signal| handler.call(conn, signal)));
        self
    }

    /// Called when a client connects, before its first message is read.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |conn| hook(conn).boxed()));
        self
    }

    /// Called when a connection has ended, with the reason.
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Arc::new(move |conn, reason| hook(conn, reason).boxed()));
        self
    }
}

impl Handler for Router {
    fn on_connected(&self, conn: &Connection) -> impl Future<Output = ()> + Send {
        let hook = self.on_connect.as_ref().map(|hook| hook(conn.clone()));
        async move {
            if let Some(hook) = hook {
                hook.await;
            }
        }
    }

    fn on_disconnected(
        &self,
        conn: &Connection,
        reason: &DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let hook = self
            .on_disconnect
            .as_ref()
            .map(|hook| hook(conn.clone(), reason.clone()));
        async move {
            if let Some(hook) = hook {
                hook.await;
            }
        }
    }

    fn on_signal(&self, conn: &Connection, signal: Signal) -> impl Future<Output = ()> + Send {
        match self
            .signals
            .get(signal.name())
            .or(self.signal_fallback.as_ref())
        {
            Some(handler) => handler(conn.clone(), signal),
            None => {
                tracing::debug!(connection = %conn.id(), signal = %signal.name(), "signal without a route ignored");
                futures_util::future::ready(()).boxed()
            }
        }
    }

    fn on_request(
        &self,
        conn: &Connection,
        request: Request,
    ) -> impl Future<Output = Result<Payload, HandlerError>> + Send {
        match self
            .requests
            .get(request.name())
            .or(self.request_fallback.as_ref())
        {
            Some(handler) => handler(conn.clone(), request),
            None => {
                let err = RequestError::from_static(
                    RequestError::UNKNOWN_REQUEST,
                    format!("no handler for request {:?}", request.name().as_str()),
                );
                futures_util::future::ready(Err(err.into())).boxed()
            }
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut requests: Vec<_> = self.requests.keys().map(Name::as_str).collect();
        requests.sort_unstable();
        let mut signals: Vec<_> = self.signals.keys().map(Name::as_str).collect();
        signals.sort_unstable();
        f.debug_struct("Router")
            .field("requests", &requests)
            .field("signals", &signals)
            .field("request_fallback", &self.request_fallback.is_some())
            .field("signal_fallback", &self.signal_fallback.is_some())
            .finish_non_exhaustive()
    }
}
