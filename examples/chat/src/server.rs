//! The chat server: the webwire server mounted in an axum app beside the
//! browser page, on one port.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tower_http::services::ServeDir;
use webwire_server::stream::MemoryStreamStore;
use webwire_server::{session::FileSessionManager, Server, ServerError};

use crate::room::{self, Room};

/// The largest message, in bytes: room for long messages, a full history
/// reply and a long online list.
pub const MESSAGE_BUFFER_SIZE: usize = 64 * 1024;

const INDEX_HTML: &str = include_str!("../static/index.html");
const CHAT_JS: &str = include_str!("../static/chat.js");
const CHAT_CSS: &str = include_str!("../static/chat.css");

/// The TypeScript client's modules as the page imports them
/// (`/webwire/NAME`): a committed copy of `clients/typescript/dist/*.js`,
/// made by `examples/chat/e2e/sync-client.mjs`, so that the binary serves
/// them wherever it runs and `cargo build` needs no npm. The e2e suite
/// checks that the copy matches a fresh build; a unit test below, that
/// every file of the folder is listed here.
const CLIENT_FILES: &[(&str, &str)] = &[
    ("client.js", include_str!("../static/webwire/client.js")),
    ("codec.js", include_str!("../static/webwire/codec.js")),
    ("errors.js", include_str!("../static/webwire/errors.js")),
    ("index.js", include_str!("../static/webwire/index.js")),
    ("keyed.js", include_str!("../static/webwire/keyed.js")),
    ("payload.js", include_str!("../static/webwire/payload.js")),
    ("resume.js", include_str!("../static/webwire/resume.js")),
    ("session.js", include_str!("../static/webwire/session.js")),
    ("streams.js", include_str!("../static/webwire/streams.js")),
];

/// Where the chat server listens and keeps its sessions.
///
/// ```
/// use webwire_chat::ChatConfig;
///
/// let config = ChatConfig::new(".chat-sessions").addr("127.0.0.1:0".parse()?);
/// assert_eq!(config.session_dir, std::path::Path::new(".chat-sessions"));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The session folder of the file session manager.
    pub session_dir: PathBuf,
    /// A folder to serve the TypeScript client from under `/webwire/`
    /// (a `clients/typescript/dist` being worked on) instead of the copy
    /// compiled in; `None` (the default) serves the compiled-in copy.
    pub client_dir: Option<PathBuf>,
}

impl ChatConfig {
    /// Listens on 127.0.0.1:8080, serves the compiled-in client, keeps
    /// sessions in `session_dir`.
    pub fn new(session_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            session_dir: session_dir.into(),
            client_dir: None,
        }
    }

    /// Sets the address to listen on.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Serves the TypeScript client from this folder (its built `dist/`)
    /// instead of the compiled-in copy.
    pub fn client_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.client_dir = Some(dir.into());
        self
    }
}

/// Starting or running the chat server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The webwire server could not be built.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Serving HTTP failed.
    #[error("serving failed: {0}")]
    Io(#[from] io::Error),
}

/// A bound chat server: `/` the page, `/ws` the webwire endpoint,
/// `/webwire/` the TypeScript client's files.
///
/// ```no_run
/// use webwire_chat::{ChatConfig, ChatServer};
///
/// # async fn run() -> Result<(), webwire_chat::ChatError> {
/// let server = ChatServer::bind(ChatConfig::new(".chat-sessions")).await?;
/// println!("open http://{}/", server.local_addr());
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChatServer {
    webwire: Server,
    tcp: tokio::net::TcpListener,
    local_addr: SocketAddr,
    app: axum::Router,
}

impl ChatServer {
    /// Builds the room and binds the address; nothing is served until
    /// [`run_until`](Self::run_until).
    pub async fn bind(config: ChatConfig) -> Result<Self, ChatError> {
        // The room's messages live in this store, as its stream; `history`
        // reads them from there. In memory: a restart of the server starts
        // the stream again under a new epoch, and returning clients are
        // told (a StreamLoss) and reload the history.
        let store = Arc::new(MemoryStreamStore::new());
        let room = Arc::new(Room::new(MESSAGE_BUFFER_SIZE, store.clone()));
        let webwire = Server::builder(room::router(room.clone()))
            .message_buffer_size(MESSAGE_BUFFER_SIZE)
            .session_manager(Arc::new(FileSessionManager::new(&config.session_dir)))
            .stream_store(store)
            .room_history(|name| (name == crate::protocol::ROOM).then_some(room::ROOM_HISTORY))
            .build()?;
        room.set_server(webwire.clone());
        let app = axum::Router::new()
            .route("/", get(|| async { Html(INDEX_HTML) }))
            .route(
                "/chat.js",
                get(|| async { static_file("text/javascript; charset=utf-8", CHAT_JS) }),
            )
            .route(
                "/chat.css",
                get(|| async { static_file("text/css; charset=utf-8", CHAT_CSS) }),
            )
            .route_service("/ws", webwire.service());
        let app = match &config.client_dir {
            Some(dir) => {
                if !dir.join("index.js").is_file() {
                    tracing::warn!(
                        dir = %dir.display(),
                        "no index.js in the client folder (npm ci && npm run build in clients/typescript): the page cannot load it"
                    );
                }
                app.nest_service("/webwire", ServeDir::new(dir))
            }
            None => app.route("/webwire/{file}", get(client_file)),
        };
        let tcp = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ChatError::Bind {
                addr: config.addr,
                source,
            })?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            webwire,
            tcp,
            local_addr,
            app,
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The webwire server (connections, sessions, shutdown).
    pub fn webwire(&self) -> &Server {
        &self.webwire
    }

    /// Serves until `signal` completes, then shuts down gracefully: the
    /// WebSocket connections are closed (their sessions stay stored) and
    /// the HTTP server stops.
    pub async fn run_until<F>(self, signal: F) -> Result<(), ChatError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            webwire, tcp, app, ..
        } = self;
        axum::serve(tcp, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                signal.await;
                webwire.shutdown().await;
            })
            .await
            .map_err(ChatError::Io)
    }
}

/// A module of the compiled-in TypeScript client.
async fn client_file(Path(name): Path<String>) -> axum::response::Response {
    match CLIENT_FILES.iter().find(|(file, _)| *file == name) {
        Some((_, body)) => static_file("text/javascript; charset=utf-8", body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn static_file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::CLIENT_FILES;

    /// A module added to (or removed from) the TypeScript client is copied
    /// into static/webwire/ by sync-client.mjs; it must be compiled in too.
    #[test]
    fn every_copied_client_module_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/webwire");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".js"))
            .collect();
        on_disk.sort();
        let compiled_in: Vec<&str> = CLIENT_FILES.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, compiled_in, "update CLIENT_FILES in server.rs");
    }
}
