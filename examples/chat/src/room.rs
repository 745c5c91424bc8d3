//! The room: the webwire router of the chat's requests, the room's
//! messages on a webwire 2.1 stream, and who is online.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use webwire_server::proto::ServerMessage;
use webwire_server::stream::{
    HistoryLimits, MemoryStreamStore, StreamEntry, StreamKey, StreamStore,
};
use webwire_server::{
    session::Session, Connection, HandlerError, Json, MessageRouter, Payload, ReplyError, Server,
    State,
};

use crate::protocol::{
    self, codes, ChatMessage, History, HistoryQuery, LoggedIn, Login, Presence, RoomMessage, Say,
    DEFAULT_HISTORY_LIMIT, HISTORY_CAPACITY, HISTORY_MAX_AGE_SECS, NAME_FIELD, ROOM,
};

/// How much of the room's stream is kept: the server's room-history
/// option answers this for [`ROOM`], and `history` reads with it.
pub(crate) const ROOM_HISTORY: HistoryLimits =
    HistoryLimits::new(HISTORY_CAPACITY, Duration::from_secs(HISTORY_MAX_AGE_SECS));

/// The room's state, shared by its handlers. The messages are not kept
/// here: they are the room's stream, in the server's stream store.
#[derive(Debug)]
pub(crate) struct Room {
    /// The webwire server; set right after it is built from the router.
    server: OnceLock<Server>,
    /// The server's stream store, read by `history`.
    store: Arc<MemoryStreamStore>,
    /// Distinguishes message ids of this run from those of earlier runs.
    boot: String,
    next_seq: AtomicU64,
    /// Largest reply payload, in bytes (below the message buffer size).
    reply_budget: usize,
    state: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The online list last sent out.
    online: Vec<String>,
}

impl Room {
    pub(crate) fn new(buffer_size: usize, store: Arc<MemoryStreamStore>) -> Self {
        Self {
            server: OnceLock::new(),
            store,
            boot: base36(now_millis()),
            next_seq: AtomicU64::new(0),
            // Room for the reply's header (type and id) and some slack.
            reply_budget: buffer_size.saturating_sub(64),
            state: Mutex::new(Shared::default()),
        }
    }

    pub(crate) fn set_server(&self, server: Server) {
        let _ = self.server.set(server);
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        // Every change of the state is complete before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The distinct names of signed-in open connections, sorted.
    fn online_now(&self) -> Vec<String> {
        let Some(server) = self.server.get() else {
            return Vec::new();
        };
        let names: BTreeSet<String> = server
            .connections()
            .iter()
            .filter(|conn| conn.is_active())
            .filter_map(signed_in_name)
            .collect();
        names.into_iter().collect()
    }

    /// Recomputes who is online and, if that changed, tells every
    /// signed-in connection (`presence`). Returns the list. The router's
    /// session and disconnect hooks call it whenever the list may change.
    pub(crate) fn refresh_presence(&self) -> Vec<String> {
        let mut state = self.state();
        let online = self.online_now();
        if online != state.online {
            state.online = online.clone();
            tracing::info!(online = ?online, "presence");
            self.broadcast(
                protocol::PRESENCE,
                &Presence {
                    online: online.clone(),
                },
            );
        }
        online
    }

    /// Sends a signal to every signed-in connection, without waiting: a
    /// client whose queue is full misses it. Called with the state locked,
    /// so that every client gets the signals in the same order.
    fn broadcast<T: Serialize>(&self, name: &'static str, value: &T) {
        let Some(server) = self.server.get() else {
            return;
        };
        let payload = match serde_json::to_string(value) {
            Ok(json) => Payload::utf8(json),
            Err(err) => {
                tracing::error!(signal = name, error = %err, "cannot serialize a signal");
                return;
            }
        };
        for conn in server.connections() {
            if !conn.has_session() {
                continue;
            }
            if let Err(err) = conn.try_signal(name, payload.clone()) {
                tracing::debug!(connection = %conn.id(), signal = name, error = %err, "signal not sent");
            }
        }
    }

    async fn login(&self, conn: Connection, login: Login) -> Result<Json<LoggedIn>, HandlerError> {
        let name = protocol::check_name(&login.name).map_err(|err| {
            ReplyError::from_static(codes::INVALID_NAME, format!("the name {err}"))
        })?;
        if let Some(current) = signed_in_name(&conn) {
            return Err(ReplyError::from_static(
                codes::ALREADY_LOGGED_IN,
                format!("signed in as {current:?} already; log out first"),
            )
            .into());
        }
        let mut info = webwire_server::session::SessionInfo::new();
        info.insert(NAME_FIELD.into(), name.clone().into());
        // The session hook has refreshed presence when this returns.
        conn.create_session(info).await?;
        // The session, not this connection, is the member: its other tabs
        // and every later connection that restores it are in the room too.
        conn.join_session_room(ROOM).await?;
        tracing::info!(connection = %conn.id(), name = %name, "signed in");
        Ok(Json(LoggedIn { name }))
    }

    async fn logout(&self, conn: Connection) -> Result<Json<serde_json::Value>, HandlerError> {
        if let (Some(key), Some(server)) = (conn.session_key(), self.server.get()) {
            // Every tab of the session signs out (the session hook
            // refreshes presence).
            let closed = server.close_session(&key).await;
            if let Some(err) = closed.store_error() {
                tracing::warn!(error = %err, "the session could not be deleted");
            }
            tracing::info!(connection = %conn.id(), tabs = closed.connections().len(), "signed out");
        }
        Ok(Json(serde_json::json!({})))
    }

    /// Appends the message to the room's stream, which delivers it to
    /// the members (the sender too) in the stream's order. Once a session
    /// exists this is a keyed request for a 2.1 client: the server runs it
    /// at most once per key, whatever the connection does.
    async fn say(&self, conn: &Connection, say: Say) -> Result<Json<RoomMessage>, HandlerError> {
        let from = require_name(conn)?;
        let text = protocol::check_text(&say.text).map_err(|err| {
            ReplyError::from_static(codes::INVALID_TEXT, format!("the text {err}"))
        })?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let message = ChatMessage {
            id: format!("{}-{seq}", self.boot),
            from,
            text,
            at: now_millis(),
        };
        let json = serde_json::to_string(&message)?;
        // Fails (nothing delivered) when the stream store cannot append:
        // the sender gets an error rather than a message out of order.
        let at = conn
            .signal_room_stream(ROOM, protocol::MESSAGE, Payload::utf8(json))
            .await?;
        Ok(Json(RoomMessage {
            epoch: at.epoch,
            offset: at.offset,
            message,
        }))
    }

    /// The newest messages of the room's stream that fit the reply.
    async fn history(
        &self,
        conn: &Connection,
        query: HistoryQuery,
    ) -> Result<Json<History>, HandlerError> {
        require_name(conn)?;
        let limit = query
            .limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .min(HISTORY_CAPACITY);
        let read = self
            .store
            .read(&StreamKey::room(ROOM), &ROOM_HISTORY, None)
            .await?;
        let mut size = r#"{"messages":[]}"#.len();
        let mut messages = Vec::new();
        for entry in read.entries.iter().rev().take(limit) {
            let Some(message) = stored_message(entry) else {
                tracing::warn!(
                    offset = entry.offset,
                    "a message of the room's stream does not read; skipped"
                );
                continue;
            };
            let message = RoomMessage {
                epoch: read.epoch,
                offset: entry.offset,
                message,
            };
            let len = serde_json::to_string(&message)?.len() + 1;
            if size + len > self.reply_budget {
                break;
            }
            size += len;
            messages.push(message);
        }
        messages.reverse();
        Ok(Json(History { messages }))
    }

    /// A restored session that is not in the room joins it again: the
    /// server keeps memberships in memory, so after a restart of the
    /// server the sessions from the session folder have none.
    async fn rejoin(&self, conn: &Connection) {
        let (Some(key), Some(server)) = (conn.session_key(), self.server.get()) else {
            return;
        };
        if server.session_rooms(&key).iter().any(|room| room == ROOM) {
            return;
        }
        if let Err(err) = server.join_session_room(&key, ROOM).await {
            tracing::warn!(connection = %conn.id(), error = %err, "a restored session could not join the room");
        }
    }
}

/// The chat message of a stream entry (an encoded 2.0 Signal).
fn stored_message(entry: &StreamEntry) -> Option<ChatMessage> {
    match ServerMessage::parse(entry.frame.clone()) {
        Ok(ServerMessage::Signal(signal)) => {
            serde_json::from_slice(signal.payload().as_bytes()).ok()
        }
        _ => None,
    }
}

/// The name of the connection's session, if it is signed in.
fn signed_in_name(conn: &Connection) -> Option<String> {
    conn.session_info::<String>(NAME_FIELD).ok().flatten()
}

fn require_name(conn: &Connection) -> Result<String, ReplyError> {
    signed_in_name(conn)
        .ok_or_else(|| ReplyError::from_static(codes::NOT_LOGGED_IN, "log in first"))
}

/// Reads an optional JSON payload, refusing what does not parse.
fn query<T: serde::de::DeserializeOwned + Default>(text: &str) -> Result<T, ReplyError> {
    protocol::json_or_default(text.as_bytes())
        .map_err(|err| ReplyError::from_static(ReplyError::INVALID_PAYLOAD, err.to_string()))
}

/// The room as the router's state.
type RoomState = State<Arc<Room>>;

/// The webwire router of the room. Presence is refreshed by the hooks of
/// every change: a session created (`login`), restored (a reconnection) or
/// closed (`logout`), and a connection ended.
pub(crate) fn router(room: Arc<Room>) -> MessageRouter<Arc<Room>> {
    MessageRouter::with_state(room)
        .request(
            protocol::LOGIN,
            |State(room): RoomState, conn: Connection, Json(login): Json<Login>| async move {
                room.login(conn, login).await
            },
        )
        .request(
            protocol::LOGOUT,
            |State(room): RoomState, conn: Connection, _: Payload| async move {
                room.logout(conn).await
            },
        )
        .request(
            protocol::SAY,
            |State(room): RoomState, conn: Connection, Json(say): Json<Say>| async move {
                room.say(&conn, say).await
            },
        )
        .request(
            protocol::WHO,
            |State(room): RoomState, _: Payload| async move {
                Ok::<_, HandlerError>(Json(Presence {
                    online: room.refresh_presence(),
                }))
            },
        )
        .request(
            protocol::HISTORY,
            |State(room): RoomState, conn: Connection, text: String| async move {
                room.history(&conn, query(&text)?).await
            },
        )
        .on_session_created(
            |State(room): RoomState, _: Connection, _: Session| async move {
                room.refresh_presence();
            },
        )
        .on_session_restored(
            |State(room): RoomState, conn: Connection, _: Session| async move {
                room.rejoin(&conn).await;
                room.refresh_presence();
            },
        )
        .on_session_closed(
            |State(room): RoomState, _: Connection, _: String| async move {
                room.refresh_presence();
            },
        )
        .on_disconnect_with_state(|State(room): RoomState, _conn, _reason| async move {
            room.refresh_presence();
        })
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
