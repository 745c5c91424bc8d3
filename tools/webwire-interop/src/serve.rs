//! The interop server of docs/interop.md: its options, its [`MessageRouter`] (one small
//! handler per row of the page) and [`start`], which runs it on a port.
//!
//! ```no_run
//! use webwire_interop::serve::{start, ServeOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = start(ServeOptions::new("127.0.0.1:0")).await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use webwire_server::{
    connection::ConnectionId,
    options::{Concurrency, OriginPolicy},
    proto::Encoding,
    session::{FileSessionManager, SessionInfo},
    stream::HistoryLimits,
    Connection, Handler, HandlerError, MessageRouter, Payload, ReplyError, Request, Server,
    ServerBuilder, ServerError, Signal,
};

/// The address `serve` listens on unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9090";
/// The sub-protocol name the interop server announces.
pub const SUB_PROTOCOL: &str = "interop";
/// The read timeout the interop server announces and enforces.
pub const READ_TIMEOUT: Duration = Duration::from_millis(3000);
/// The message buffer size the interop server announces and enforces.
pub const BUFFER_SIZE: usize = 1_048_576;
/// At most this many connections share one session.
pub const MAX_SESSION_CONNECTIONS: usize = 3;
/// The longest `sleep` request.
pub const MAX_SLEEP: Duration = Duration::from_millis(10_000);
/// How long a shutdown waits for running handlers before dropping them
/// (a `sleep` takes at most [`MAX_SLEEP`]).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

/// The error code of the `error` request.
pub const INTEROP_ERROR: &str = "INTEROP_ERROR";
/// The error code of a `sleep` request whose payload is not a number.
pub const BAD_SLEEP: &str = "BAD_SLEEP";
/// The error code of `stream-me` with a count that is not 1 to
/// [`MAX_STREAM_ME`], and of `say` without a room.
pub const BAD_STREAM: &str = "BAD_STREAM";
/// The most signals one `stream-me` sends.
pub const MAX_STREAM_ME: u64 = 1000;
/// The history of every room of the interop server (all have one).
pub const ROOM_HISTORY: HistoryLimits = HistoryLimits::new(1000, Duration::from_secs(600));

/// Where the interop server listens and keeps its sessions.
///
/// ```
/// use webwire_interop::serve::ServeOptions;
///
/// let options = ServeOptions::new("127.0.0.1:0").session_dir("/tmp/sessions");
/// assert_eq!(options.addr, "127.0.0.1:0");
/// assert_eq!(ServeOptions::default().addr, "127.0.0.1:9090");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// `HOST:PORT` to listen on; port 0 picks a free port.
    pub addr: String,
    /// The folder of the file session manager; `None` makes a fresh
    /// temporary folder, removed when the server is dropped.
    pub session_dir: Option<PathBuf>,
    /// A Redis URL: sessions are kept there instead of the session folder,
    /// and the server joins the cluster of nodes using the same Redis
    /// (docs/interop.md, `--redis`).
    pub redis: Option<String>,
    /// This node's id in the cluster (`--node-id`); default `node-PID`.
    pub node_id: Option<String>,
    /// The abuse limits (`--max-connections-per-ip` and the others); all
    /// off by default.
    pub limits: crate::limits::LimitOptions,
    /// `HOST:PORT` to serve the metrics on, in the Prometheus text format
    /// at `/metrics` (`--metrics-addr`). Installs the process's global
    /// metrics recorder: once per process.
    pub metrics_addr: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self::new(DEFAULT_ADDR)
    }
}

impl ServeOptions {
    /// Listen on `addr`, sessions in a fresh temporary folder.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            session_dir: None,
            redis: None,
            node_id: None,
            limits: crate::limits::LimitOptions::default(),
            metrics_addr: None,
        }
    }

    /// Keep the sessions in `dir` (created if missing).
    pub fn session_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.session_dir = Some(dir.into());
        self
    }
}

/// Starting the interop server failed.
///
/// ```
/// use webwire_interop::serve::ServeError;
///
/// let err = ServeError::SessionDir {
///     path: "/nope".into(),
///     source: std::io::Error::other("denied"),
/// };
/// assert_eq!(err.to_string(), "cannot use the session folder /nope: denied");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The server could not be built or could not listen.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The metrics (`--metrics-addr`) could not be served.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// Redis (`--redis`) could not be used.
    #[error("Redis: {0}")]
    Redis(#[from] webwire_redis::RedisSessionError),
    /// The session folder could not be created.
    #[error("cannot use the session folder {}: {source}", path.display())]
    SessionDir {
        /// The folder (empty for a temporary folder that could not be made).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// A running interop server, from [`start`].
///
/// Dropping it leaves the server running in the background until the
/// runtime ends (and removes a temporary session folder); call
/// [`shutdown`](Self::shutdown) to stop it gracefully.
pub struct Running {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: Server,
    task: JoinHandle<Result<(), ServerError>>,
    session_dir: PathBuf,
    _temp_dir: Option<TempDir>,
}

impl Running {
    /// The address it listens on (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the metrics are served (`http://ADDR/metrics`), if asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `ws://HOST:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The server handle (connections, broadcast, shutdown).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The folder the sessions are stored in.
    pub fn session_dir(&self) -> &Path {
        &self.session_dir
    }

    /// Shuts down gracefully (docs/protocol.md 9.3): running handlers finish and
    /// are answered, at most [`SHUTDOWN_DEADLINE`]; then the listener stops.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.server.shutdown_with_deadline(SHUTDOWN_DEADLINE).await;
        match self.task.await {
            Ok(result) => result,
            Err(err) => Err(ServerError::Io(io::Error::other(err))),
        }
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .field("session_dir", &self.session_dir)
            .finish_non_exhaustive()
    }
}

/// Starts the interop server: binds `options.addr` and accepts connections
/// in a spawned task before returning.
pub async fn start(options: ServeOptions) -> Result<Running, ServeError> {
    start_with(options, |router| router).await
}

/// Like [`start`], with the interop [`MessageRouter`] wrapped into another
/// [`Handler`] first: for tests that need a server that deviates from
/// docs/interop.md in chosen ways (the wrapper answers some requests itself and
/// passes the rest on to the router).
///
/// ```no_run
/// use webwire_interop::serve::{start_with, ServeOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // The plain router: the same as `start`.
/// let server = start_with(ServeOptions::new("127.0.0.1:0"), |router| router).await?;
/// # Ok(()) }
/// ```
pub async fn start_with<H, F>(options: ServeOptions, wrap: F) -> Result<Running, ServeError>
where
    H: Handler,
    F: FnOnce(MessageRouter) -> H,
{
    let (session_dir, temp_dir) = match options.session_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| ServeError::SessionDir {
                path: dir.clone(),
                source,
            })?;
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("webwire-interop-sessions-")
                .tempdir()
                .map_err(|source| ServeError::SessionDir {
                    path: PathBuf::new(),
                    source,
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    // The recorder before the server: its handles are resolved when it is built.
    let metrics_addr = match &options.metrics_addr {
        Some(addr) => {
            let handle = crate::metrics::install()?;
            Some(crate::metrics::serve(addr, handle).await?)
        }
        None => None,
    };
    let state = State::default();
    let handler = wrap(router(state.clone()));
    let mut builder = options
        .limits
        .apply(configure(Server::builder(handler), &session_dir));
    if let Some(url) = &options.redis {
        let node_id = options
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", std::process::id()));
        let sessions = webwire_redis::RedisSessionManager::connect(url, Default::default()).await?;
        let cluster = webwire_redis::RedisCluster::connect(
            url,
            webwire_redis::RedisClusterConfig::new(node_id),
        )
        .await?;
        // Keyed requests (webwire 2.1) are run at most once across the
        // nodes only if they share one ledger.
        let ledger = webwire_redis::RedisLedger::connect(
            url,
            webwire_redis::RedisStoreConfig::new(),
            webwire_server::ledger::LedgerLimits::default(),
        )
        .await?;
        // Streams (webwire 2.1) resume on any node with one history and
        // one set of session room memberships; each node delivers the
        // others' appends to its own connections.
        let streams =
            webwire_redis::RedisStreamStore::connect(url, webwire_redis::RedisStoreConfig::new())
                .await?;
        cluster.deliver_streams(streams.subscribe().await?);
        builder = builder
            .session_manager(Arc::new(sessions))
            .cluster(Arc::new(cluster))
            .request_ledger(Arc::new(ledger))
            .stream_store(Arc::new(streams));
    }
    let server = builder.build()?;
    // Only now can handlers reach the server (broadcast, close everywhere).
    let _ = state.server.set(server.clone());
    let listener = server.bind(options.addr.as_str()).await?;
    let addr = listener.local_addr();
    let task = tokio::spawn(listener.run());
    tracing::info!(%addr, session_dir = %session_dir.display(), "interop server listening");
    Ok(Running {
        addr,
        metrics_addr,
        server,
        task,
        session_dir,
        _temp_dir: temp_dir,
    })
}

/// The server options of docs/interop.md section 2.
fn configure<H: Handler>(builder: ServerBuilder<H>, session_dir: &Path) -> ServerBuilder<H> {
    builder
        .read_timeout(READ_TIMEOUT)
        .message_buffer_size(BUFFER_SIZE)
        .sub_protocol(SUB_PROTOCOL)
        .concurrency(Concurrency::Unlimited)
        .origin_policy(OriginPolicy::AllowAny)
        .sessions_enabled(true)
        .session_manager(Arc::new(FileSessionManager::new(session_dir)))
        .max_session_connections(MAX_SESSION_CONNECTIONS)
        .room_history(|_| Some(ROOM_HISTORY))
}

/// What the handlers share.
#[derive(Clone, Default)]
struct State {
    /// The server, set once it is built.
    server: Arc<OnceLock<Server>>,
    /// `record` signals per connection.
    records: Arc<Mutex<HashMap<ConnectionId, u64>>>,
    /// The `incr` counters, by name.
    counters: Arc<Mutex<HashMap<String, u64>>>,
}

impl State {
    fn server(&self) -> Result<&Server, HandlerError> {
        self.server
            .get()
            .ok_or_else(|| "the interop server is not running yet".into())
    }

    fn records(&self) -> MutexGuard<'_, HashMap<ConnectionId, u64>> {
        // A counter map cannot be left inconsistent by a panic.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The interop router: requests and signals by name, as docs/interop.md lists them.
fn router(state: State) -> MessageRouter {
    let broadcast_state = state.clone();
    let connections_state = state.clone();
    let everywhere_state = state.clone();
    let record_state = state.clone();
    let recorded_state = state.clone();
    let incr_state = state.clone();
    let counter_state = state.clone();
    let say_state = state.clone();
    let stream_state = state.clone();
    let room_ping_state = state.clone();
    let close_all_state = state.clone();
    let disconnect_state = state;
    MessageRouter::new()
        .request("", echo)
        .request("echo", echo)
        .request("error", error)
        .request("internal", internal)
        .request("login", login)
        .request("logout", logout)
        .request("whoami", whoami)
        .request("signal-me", signal_me)
        .request("sleep", sleep)
        .request("broadcast", move |payload: Payload| {
            broadcast(broadcast_state.clone(), payload)
        })
        .request(
            "session-connections",
            move |conn: Connection, _: Payload| {
                session_connections(connections_state.clone(), conn)
            },
        )
        .request(
            "close-session-everywhere",
            move |conn: Connection, _: Payload| {
                close_session_everywhere(everywhere_state.clone(), conn)
            },
        )
        .request("disconnect-me", disconnect_me)
        .request(
            "close-all-connections",
            move |conn: Connection, _: Payload| {
                close_all_connections(close_all_state.clone(), conn)
            },
        )
        .request("stream-me", move |conn: Connection, payload: Payload| {
            stream_me(stream_state.clone(), conn, payload)
        })
        .request("join", join)
        .request("leave", leave)
        .request("say", move |payload: Payload| {
            say(say_state.clone(), payload)
        })
        .request("recorded", move |conn: Connection, _: Payload| {
            recorded(recorded_state.clone(), conn)
        })
        .request("incr", move |payload: Payload| {
            incr(incr_state.clone(), payload)
        })
        .request("counter", move |payload: Payload| {
            counter(counter_state.clone(), payload)
        })
        .signal("ping", ping)
        .signal("room-ping", move |_: Connection, signal: Signal| {
            room_ping(room_ping_state.clone(), signal)
        })
        .signal("record", move |conn: Connection, _: Payload| {
            record(record_state.clone(), conn)
        })
        .on_disconnect(move |conn, _reason| {
            disconnect_state.records().remove(&conn.id());
            async {}
        })
}

/// The payload as text; invalid text is replaced, not refused.
fn text_lossy(payload: &Payload) -> Cow<'_, str> {
    match payload.to_text() {
        Ok(text) => text,
        Err(_) => match payload.encoding() {
            Encoding::Utf16 => {
                let units: Vec<u16> = payload
                    .as_bytes()
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                    .collect();
                Cow::Owned(String::from_utf16_lossy(&units))
            }
            _ => String::from_utf8_lossy(payload.as_bytes()),
        },
    }
}

/// `echo` and the nameless request: the payload, in its encoding.
async fn echo(request: Request) -> Result<Payload, ReplyError> {
    Ok(request.into_parts().2)
}

/// `error`: a request error with the payload in its message.
async fn error(payload: Payload) -> Result<(), ReplyError> {
    Err(ReplyError::from_static(
        INTEROP_ERROR,
        format!("interop error: {}", text_lossy(&payload)),
    ))
}

/// `internal`: an error that is not a request error.
async fn internal(_: Payload) -> Result<(), HandlerError> {
    Err(io::Error::other("the interop server failed on purpose").into())
}

/// `login`: a session whose info is `{"user": <payload as text>}`; the
/// reply is its key. A connection that has a session already gets an
/// internal error (the session error is not a request error).
async fn login(conn: Connection, payload: Payload) -> Result<String, HandlerError> {
    let mut info = SessionInfo::new();
    info.insert(
        "user".to_owned(),
        serde_json::Value::String(text_lossy(&payload).into_owned()),
    );
    let session = conn.create_session(info).await?;
    Ok(session.key)
}

/// `logout`: closes this connection's session, if any.
async fn logout(conn: Connection, _: Payload) -> Result<&'static str, HandlerError> {
    conn.close_session().await?;
    Ok("ok")
}

/// `whoami`: the session's user, or `anonymous`.
async fn whoami(conn: Connection, _: Payload) -> Result<String, HandlerError> {
    let user: Option<String> = conn.session_info("user")?;
    Ok(user.unwrap_or_else(|| "anonymous".to_owned()))
}

/// `session-connections`: how many connections hold the caller's session.
async fn session_connections(state: State, conn: Connection) -> Result<String, HandlerError> {
    let count = match conn.session_key() {
        Some(key) => {
            state
                .server()?
                .session_connection_count_everywhere(&key)
                .await?
        }
        None => 0,
    };
    Ok(count.to_string())
}

/// `close-session-everywhere`: closes the caller's session on every
/// connection that holds it; the reply is how many there were.
async fn close_session_everywhere(state: State, conn: Connection) -> Result<String, HandlerError> {
    let Some(key) = conn.session_key() else {
        return Ok("0".to_owned());
    };
    let closed = state.server()?.close_session(&key).await;
    for (conn, err) in closed.errors() {
        tracing::warn!(connection = %conn.id(), error = %err, "client not told its session closed");
    }
    if let Some(err) = closed.store_error() {
        tracing::warn!(error = %err, "closed session not deleted");
    }
    Ok(closed.affected().to_string())
}

/// `signal-me`: a `notice` signal with the payload, then the reply.
async fn signal_me(conn: Connection, payload: Payload) -> Result<&'static str, HandlerError> {
    conn.signal("notice", payload).await?;
    Ok("ok")
}

/// The milliseconds of a `sleep` payload: ASCII digits only, at most
/// [`MAX_SLEEP`].
fn sleep_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only digits: a parse error is an overflow, which waits the longest.
    let ms = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_millis(ms).min(MAX_SLEEP))
}

/// `sleep`: waits the payload's milliseconds.
async fn sleep(payload: Payload) -> Result<&'static str, ReplyError> {
    let text = text_lossy(&payload);
    let duration = sleep_duration(&text).ok_or_else(|| {
        ReplyError::from_static(
            BAD_SLEEP,
            format!("sleep takes a non-negative decimal number of milliseconds, not {text:?}"),
        )
    })?;
    tokio::time::sleep(duration).await;
    Ok("ok")
}

/// `broadcast`: a `broadcast` signal with the payload to every client.
async fn broadcast(state: State, payload: Payload) -> Result<&'static str, HandlerError> {
    let sent = state.server()?.signal_all("broadcast", payload)?;
    tracing::debug!(connections = sent, "broadcast");
    Ok("ok")
}

/// `stream-me`: as many `stream` signals on the caller's session stream as
/// the payload text says (1 to [`MAX_STREAM_ME`]), with payloads `1`, `2`,
/// ...; the reply is the offset of the last.
async fn stream_me(
    state: State,
    conn: Connection,
    payload: Payload,
) -> Result<String, HandlerError> {
    let text = text_lossy(&payload);
    let count = text
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_STREAM_ME).contains(n))
        .ok_or_else(|| {
            ReplyError::from_static(
                BAD_STREAM,
                format!("stream-me takes a count from 1 to {MAX_STREAM_ME}, not {text:?}"),
            )
        })?;
    let key = conn.session_key().ok_or_else(|| {
        ReplyError::from_static(
            webwire_server::stream::NO_SESSION,
            "stream-me needs a session",
        )
    })?;
    let server = state.server()?;
    let mut last = 0;
    for i in 1..=count {
        last = server
            .signal_session_stream(&key, "stream", i.to_string())
            .await?
            .offset;
    }
    Ok(last.to_string())
}

/// `join`: the caller's session (or, without one, the connection) joins
/// the room named by the payload text.
async fn join(conn: Connection, payload: Payload) -> Result<&'static str, HandlerError> {
    conn.join_session_room(&text_lossy(&payload)).await?;
    Ok("ok")
}

/// `leave`: the connection, and its session, leave the room named by the
/// payload text.
async fn leave(conn: Connection, payload: Payload) -> Result<&'static str, HandlerError> {
    conn.leave_room(&text_lossy(&payload));
    Ok("ok")
}

/// `say`: payload text `ROOM TEXT`; a `said` signal with `TEXT` on the
/// room's stream, to every member; the reply is its offset.
async fn say(state: State, payload: Payload) -> Result<String, HandlerError> {
    let text = text_lossy(&payload);
    let Some((room, said)) = text.split_once(' ') else {
        return Err(ReplyError::from_static(BAD_STREAM, "say takes \"ROOM TEXT\"").into());
    };
    let at = state
        .server()?
        .signal_room_stream(room, "said", said.to_owned())
        .await?;
    Ok(at.offset.to_string())
}

/// `disconnect-me`: the connection closes once this reply is sent.
async fn disconnect_me(conn: Connection, _: Payload) -> Result<&'static str, ReplyError> {
    // A graceful close: running handlers, this one included, are answered first.
    conn.close();
    Ok("ok")
}

/// `close-all-connections`: closes every connection of this node at once,
/// gracefully (code 1000, like `disconnect-me`), the caller's once this
/// reply is sent; sessions are kept. The reply is how many connections
/// were closed. The resume benchmark (tools/webwire-load, `resume`) drops
/// all its clients with it.
async fn close_all_connections(state: State, conn: Connection) -> Result<String, HandlerError> {
    let connections = state.server()?.connections();
    for other in connections.iter().filter(|other| other.id() != conn.id()) {
        other.close();
    }
    // Last, so that this reply still goes out before the close.
    conn.close();
    Ok(connections.len().to_string())
}

/// The `room-ping` signal: payload `ROOM` + one space (byte 0x20) + data,
/// binary or UTF-8; a `room-pong` signal with the data, in the same
/// encoding, on the stream of room `ROOM` (to all its members). The
/// history-room counterpart of `ping` (tools/webwire-load, mode `hist`).
async fn room_ping(state: State, signal: Signal) {
    let (_, payload) = signal.into_parts();
    let bytes = payload.as_bytes();
    let split = match payload.encoding() {
        Encoding::Binary | Encoding::Utf8 => bytes.iter().position(|&b| b == b' '),
        Encoding::Utf16 => None,
    };
    let Some((at, room)) = split.and_then(|at| Some((at, std::str::from_utf8(&bytes[..at]).ok()?)))
    else {
        tracing::debug!("room-ping without a room: ignored");
        return;
    };
    let data = match Payload::new(payload.encoding(), bytes.slice(at + 1..)) {
        Ok(data) => data,
        Err(err) => {
            tracing::debug!(error = %err, "room-ping data not valid: ignored");
            return;
        }
    };
    let sent = match state.server() {
        Ok(server) => server.signal_room_stream(room, "room-pong", data).await,
        Err(_) => return,
    };
    if let Err(err) = sent {
        tracing::debug!(room, error = %err, "room-pong not sent");
    }
}

/// `recorded`: how many `record` signals this connection sent.
async fn recorded(state: State, conn: Connection) -> Result<String, ReplyError> {
    let count = state.records().get(&conn.id()).copied().unwrap_or(0);
    Ok(count.to_string())
}

/// `incr`: adds one to the counter named by the payload text; the reply
/// is its new value. A request run twice shows as a count that skips, so
/// tests of keyed requests (which run at most once) use it.
async fn incr(state: State, payload: Payload) -> Result<String, ReplyError> {
    let mut counters = state
        .counters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = counters
        .entry(text_lossy(&payload).into_owned())
        .or_default();
    *count += 1;
    Ok(count.to_string())
}

/// `counter`: the value of the counter named by the payload text, without
/// adding to it (0 for a counter never incremented). Tests read it on each
/// node to see how often a keyed `incr` really ran.
async fn counter(state: State, payload: Payload) -> Result<String, ReplyError> {
    let counters = state
        .counters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = counters
        .get(text_lossy(&payload).as_ref())
        .copied()
        .unwrap_or(0);
    Ok(count.to_string())
}

/// The `ping` signal: a `pong` with the same payload.
async fn ping(conn: Connection, signal: Signal) {
    let (_, payload) = signal.into_parts();
    if let Err(err) = conn.signal("pong", payload).await {
        tracing::debug!(connection = %conn.id(), error = %err, "pong not sent");
    }
}

/// The `record` signal: one more for this connection.
async fn record(state: State, conn: Connection) {
    *state.records().entry(conn.id()).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_payloads() {
        assert_eq!(sleep_duration("0"), Some(Duration::ZERO));
        assert_eq!(sleep_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(sleep_duration("10001"), Some(MAX_SLEEP));
        assert_eq!(sleep_duration("99999999999999999999999"), Some(MAX_SLEEP));
        for bad in ["", "-5", "soon", "1.5", " 5", "5 ", "+5", "٣"] {
            assert_eq!(sleep_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn text_of_every_encoding() {
        assert_eq!(text_lossy(&Payload::utf16("жж😀")), "жж😀");
        assert_eq!(text_lossy(&Payload::utf8("ж")), "ж");
        assert_eq!(text_lossy(&Payload::binary(vec![b'a', 0xff])), "a\u{fffd}");
        let lone = Payload::new(Encoding::Utf16, vec![0x3d, 0xd8]).unwrap();
        assert_eq!(text_lossy(&lone), "\u{fffd}");
    }
}
