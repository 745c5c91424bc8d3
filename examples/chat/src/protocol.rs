//! The chat's messages: request and signal names, their UTF-8 JSON
//! payloads, the request error codes and the limits (README.md of the
//! example describes the same protocol for other clients).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Request: sign in with a name (payload [`Login`], reply [`LoggedIn`]).
pub const LOGIN: &str = "login";
/// Request: sign out everywhere (payload ignored, reply `{}`).
pub const LOGOUT: &str = "logout";
/// Request: say something to the room (payload [`Say`], reply the
/// [`RoomMessage`]: the message with its place in the room's stream).
pub const SAY: &str = "say";
/// Request: who is online (payload ignored, reply [`Presence`]).
pub const WHO: &str = "who";
/// Request: the last messages of the room's stream (payload
/// [`HistoryQuery`] or empty, reply [`History`]).
pub const HISTORY: &str = "history";

/// Signal on the room's stream: a message was said ([`ChatMessage`]; a
/// 2.1 client gets it with the stream's epoch and offset).
pub const MESSAGE: &str = "message";
/// Signal: who is online changed ([`Presence`]).
pub const PRESENCE: &str = "presence";

/// The session info field holding the signed-in name.
pub const NAME_FIELD: &str = "name";

/// Longest name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 32;
/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The room: a room with history (a stream) that every signed-in session
/// is a member of.
pub const ROOM: &str = "chat:lobby";
/// Messages the room's stream keeps (older ones are trimmed).
pub const HISTORY_CAPACITY: usize = 100;
/// How long the room's stream keeps a message, in seconds.
pub const HISTORY_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// Messages `history` returns when no limit is given.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The codes of the request errors the chat server answers with.
pub mod codes {
    /// The name is empty, too long or has control characters.
    pub const INVALID_NAME: &str = "INVALID_NAME";
    /// The text is empty, too long or has control characters.
    pub const INVALID_TEXT: &str = "INVALID_TEXT";
    /// The request needs a signed-in connection.
    pub const NOT_LOGGED_IN: &str = "NOT_LOGGED_IN";
    /// `login` on a connection that is signed in already.
    pub const ALREADY_LOGGED_IN: &str = "ALREADY_LOGGED_IN";
}

/// The payload of `login`.
///
/// ```
/// let login: webwire_chat::Login = serde_json::from_str(r#"{"name":"ann"}"#)?;
/// assert_eq!(login.name, "ann");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The name to sign in with (see [`check_name`]).
    pub name: String,
}

/// The reply to `login`: the name as the server keeps it (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// The signed-in name.
    pub name: String,
}

/// The payload of `say`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Say {
    /// The text (see [`check_text`]).
    pub text: String,
}

/// The payload of `history`; an empty payload is the default limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// How many of the last messages (at most [`HISTORY_CAPACITY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A message of the room: the payload of the `message` signal, kept in
/// the room's stream.
///
/// ```
/// let m: webwire_chat::ChatMessage =
///     serde_json::from_str(r#"{"id":"k2x1-7","from":"ann","text":"hi","at":1767225600000}"#)?;
/// assert_eq!((m.from.as_str(), m.text.as_str()), ("ann", "hi"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique, also across server restarts (clients use it to skip
    /// messages they have shown already).
    pub id: String,
    /// The sender's name.
    pub from: String,
    /// The text.
    pub text: String,
    /// When the server received it: milliseconds since the Unix epoch (UTC).
    pub at: u64,
}

/// The `presence` signal and the reply to `who`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The distinct names of the sessions that have at least one open
    /// connection, sorted.
    pub online: Vec<String>,
}

/// A message with its place in the room's stream: the reply to `say` and
/// an element of [`History`]. `(epoch, offset)` names it for good, so a
/// client merges the history with the stream's signals by it, exactly.
///
/// ```
/// let m: webwire_chat::RoomMessage = serde_json::from_str(
///     r#"{"epoch":"18446744073709551615","offset":3,"id":"k2x1-7","from":"ann","text":"hi","at":1}"#,
/// )?;
/// assert_eq!((m.epoch, m.offset, m.message.text.as_str()), (u64::MAX, 3, "hi"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// The stream's epoch, as a decimal string (it does not fit the
    /// integers of JavaScript numbers).
    #[serde(with = "decimal")]
    pub epoch: u64,
    /// The message's offset in the stream (1, 2, 3, ...).
    pub offset: u64,
    /// The message.
    #[serde(flatten)]
    pub message: ChatMessage,
}

/// The reply to `history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The last messages the room's stream holds, oldest first.
    pub messages: Vec<RoomMessage>,
}

/// A u64 as a decimal JSON string.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a name or text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Nothing but white space.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed.
    #[error("must be at most {max} characters, not {len}")]
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// It has a control character (only line breaks and tabs are allowed
    /// in texts, none in names).
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// The name as the server keeps it: trimmed, 1 to [`MAX_NAME_CHARS`]
/// characters, no control characters.
///
/// ```
/// use webwire_chat::{check_name, InputError};
///
/// assert_eq!(check_name("  Zoë "), Ok("Zoë".to_string()));
/// assert_eq!(check_name(" "), Err(InputError::Empty));
/// assert!(check_name(&"x".repeat(33)).is_err());
/// ```
pub fn check_name(name: &str) -> Result<String, InputError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InputError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(InputError::TooLong {
            len,
            max: MAX_NAME_CHARS,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(InputError::ControlCharacter);
    }
    Ok(name.to_owned())
}

/// The text as the server keeps it: trailing white space removed, not
/// blank, at most [`MAX_TEXT_CHARS`] characters, no control characters
/// other than line breaks and tabs.
///
/// ```
/// use webwire_chat::check_text;
///
/// assert_eq!(check_text("hello\n"), Ok("hello".to_string()));
/// assert!(check_text("\u{7}").is_err());
/// ```
pub fn check_text(text: &str) -> Result<String, InputError> {
    let text = text.trim_end();
    if text.trim_start().is_empty() {
        return Err(InputError::Empty);
    }
    let len = text.chars().count();
    if len > MAX_TEXT_CHARS {
        return Err(InputError::TooLong {
            len,
            max: MAX_TEXT_CHARS,
        });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(InputError::ControlCharacter);
    }
    Ok(text.to_owned())
}

/// Reads a JSON payload; an empty one is `T::default()`.
pub(crate) fn json_or_default<T: DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<T, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("ann"), Ok("ann".into()));
        assert_eq!(check_name(&"é".repeat(32)), Ok("é".repeat(32)));
        assert_eq!(
            check_name(&"é".repeat(33)),
            Err(InputError::TooLong { len: 33, max: 32 })
        );
        assert_eq!(check_name("a\nb"), Err(InputError::ControlCharacter));
        assert_eq!(check_name(""), Err(InputError::Empty));
    }

    #[test]
    fn texts() {
        assert_eq!(check_text("  two\nlines\t"), Ok("  two\nlines".into()));
        assert_eq!(check_text(" \n "), Err(InputError::Empty));
        assert_eq!(check_text(&"x".repeat(1000)).map(|t| t.len()), Ok(1000));
        assert!(matches!(
            check_text(&"x".repeat(1001)),
            Err(InputError::TooLong { len: 1001, .. })
        ));
        assert_eq!(check_text("nul\0"), Err(InputError::ControlCharacter));
    }

    #[test]
    fn empty_payloads_are_defaults() {
        assert_eq!(
            json_or_default::<HistoryQuery>(b"").unwrap(),
            HistoryQuery::default()
        );
        assert_eq!(
            json_or_default::<HistoryQuery>(br#"{"limit":3}"#).unwrap(),
            HistoryQuery { limit: Some(3) }
        );
        assert!(json_or_default::<HistoryQuery>(b"{").is_err());
    }
}
