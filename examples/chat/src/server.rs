//! The chat server: the webwire server mounted in an axum app beside the
//! browser page, on one port.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tower_http::services::ServeDir;
use webwire_server::{FileSessionManager, Server, ServerError};

use crate::room::{self, Room};

/// The largest message, in bytes: room for long messages, a full history
/// reply and a long online list.
pub const MESSAGE_BUFFER_SIZE: usize = 64 * 1024;

const INDEX_HTML: &str = include_str!("../static/index.html");
const CHAT_JS: &str = include_str!("../static/chat.js");
const CHAT_CSS: &str = include_str!("../static/chat.css");

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
    /// The built TypeScript client (`clients/typescript/dist`), served
    /// under `/webwire/`.
    pub client_dir: PathBuf,
}

impl ChatConfig {
    /// Listens on 127.0.0.1:8080, serves the client from
    /// [`default_client_dir`], keeps sessions in `session_dir`.
    pub fn new(session_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            session_dir: session_dir.into(),
            client_dir: default_client_dir(),
        }
    }

    /// Sets the address to listen on.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Sets the folder of the built TypeScript client.
    pub fn client_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.client_dir = dir.into();
        self
    }
}

/// The TypeScript client's `dist/` folder in this repository (where
/// `npm run build` in `clients/typescript` puts it).
///
/// ```
/// assert!(webwire_chat::default_client_dir().ends_with("clients/typescript/dist"));
/// ```
pub fn default_client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("clients/typescript/dist"))
        .unwrap_or_else(|| PathBuf::from("clients/typescript/dist"))
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
        let room = Arc::new(Room::new(MESSAGE_BUFFER_SIZE));
        let webwire = Server::builder(room::router(room.clone()))
            .message_buffer_size(MESSAGE_BUFFER_SIZE)
            .session_manager(Arc::new(FileSessionManager::new(&config.session_dir)))
            .build()?;
        room.set_server(webwire.clone());
        if !config.client_dir.join("index.js").is_file() {
            tracing::warn!(
                dir = %config.client_dir.display(),
                "the TypeScript client is not built (npm ci && npm run build in clients/typescript): the page cannot load it"
            );
        }
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
            .route_service("/ws", webwire.service())
            .nest_service("/webwire", ServeDir::new(&config.client_dir));
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

fn static_file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
