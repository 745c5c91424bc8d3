//! A chat room on webwire, with sessions: the server of the example
//! (`chat-server`), shared by the terminal client (`chat-client`) and the
//! browser page it serves on the same port.
//!
//! # Layout
//!
//! - `protocol`: the request and signal names, their JSON payloads
//!   ([`Login`], [`Say`], [`ChatMessage`], [`Presence`], ...), the error
//!   [`codes`] and limits, [`check_name`] and [`check_text`].
//! - `room`: the webwire router: sign-in with a session whose info holds
//!   the name and which joins the room (a room with history: its messages
//!   are a webwire 2.1 stream, which clients resume after a reconnect),
//!   messages, the history read from the room's stream, who is online.
//! - `server`: [`ChatServer`]: the webwire server with the file session
//!   manager, mounted at `/ws` in an axum app that also serves the page
//!   (`/`) and the TypeScript client (`/webwire/`), both compiled in.
//! - `src/bin/`: the `chat-server` and `chat-client` programs.
//!
//! The example's README.md documents the protocol for other clients.
//!
//! ```no_run
//! use webwire_chat::{ChatConfig, ChatServer};
//!
//! # async fn run() -> Result<(), webwire_chat::ChatError> {
//! let config = ChatConfig::new(".chat-sessions").addr("127.0.0.1:8080".parse().unwrap());
//! let server = ChatServer::bind(config).await?;
//! server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod protocol;
mod room;
mod server;

pub use protocol::{
    check_name, check_text, codes, ChatMessage, History, HistoryQuery, InputError, LoggedIn, Login,
    Presence, RoomMessage, Say, DEFAULT_HISTORY_LIMIT, HISTORY, HISTORY_CAPACITY,
    HISTORY_MAX_AGE_SECS, LOGIN, LOGOUT, MAX_NAME_CHARS, MAX_TEXT_CHARS, MESSAGE, NAME_FIELD,
    PRESENCE, ROOM, SAY, WHO,
};
pub use server::{ChatConfig, ChatError, ChatServer, MESSAGE_BUFFER_SIZE};
