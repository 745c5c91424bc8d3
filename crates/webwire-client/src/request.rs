//! What the [`Client`](crate::Client) handle sends to the connection task,
//! what the task's state machine holds for each call, and how a server
//! answer becomes a request's result.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use webwire_proto::{Name, Payload, ServerMessage, StreamId};

use crate::error::{ConnectError, RequestError};

/// Where a request's result goes.
pub(crate) type ReplyTx = oneshot::Sender<Result<Payload, RequestError>>;

/// What a request is for: the connection task updates the session state
/// from the answers of session requests, even if the caller has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An application request.
    Request,
    /// RequestRestoreSession (32).
    RestoreSession,
    /// RequestCloseSession (31).
    CloseSession,
}

/// A command from a `Client` handle to the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a request (already encoded, with its id) and answer on `reply`.
    Request(Outgoing),
    /// Send a signal (already encoded); `done` is answered once it is written.
    Signal {
        frame: Bytes,
        done: oneshot::Sender<Result<(), RequestError>>,
    },
    /// The caller stopped waiting for request `id` (timeout or dropped future).
    Cancel(u64),
    /// Connect now if disconnected; answered with the attempt's result.
    Connect(oneshot::Sender<Result<(), ConnectError>>),
    /// Close gracefully; answered once closed.
    Close(oneshot::Sender<()>),
}

/// An encoded request waiting to be sent.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) frame: Bytes,
    pub(crate) reply: ReplyTx,
    /// An application request's name and payload: sent as a keyed request
    /// (2.1) when the connection has a session.
    pub(crate) parts: Option<(Name, Payload)>,
    /// The session key the client held when the request had to wait: a
    /// keyed request is never sent under another session.
    pub(crate) session: Option<String>,
}

/// What the connection's state machine holds for a caller: handed back
/// with the request's outcome, or with the signal when it is to be written.
#[derive(Debug)]
pub(crate) enum Token {
    Request {
        kind: Kind,
        reply: ReplyTx,
    },
    Signal(oneshot::Sender<Result<(), RequestError>>),
    /// A keyed request (2.1): its caller waits in the connection task's
    /// table of keyed requests, which outlives the connection.
    Keyed {
        seq: u64,
    },
    /// A StreamResume (2.1) of these streams.
    Resume(Vec<StreamId>),
}

impl Token {
    /// Fails the call with `err`.
    pub(crate) fn fail(self, err: RequestError) {
        match self {
            Self::Request { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Self::Signal(done) => {
                let _ = done.send(Err(err));
            }
            Self::Keyed { .. } | Self::Resume(_) => {}
        }
    }
}

/// A request or signal that waits for a connection.
#[derive(Debug)]
pub(crate) enum Queued {
    Request(Outgoing),
    Signal {
        frame: Bytes,
        done: oneshot::Sender<Result<(), RequestError>>,
    },
}

impl Queued {
    /// Whether nobody waits for it any more (timed out or dropped).
    pub(crate) fn is_abandoned(&self) -> bool {
        match self {
            Self::Request(outgoing) => outgoing.reply.is_closed(),
            Self::Signal { done, .. } => done.is_closed(),
        }
    }

    /// Fails it with `err`.
    pub(crate) fn fail(self, err: RequestError) {
        match self {
            Self::Request(outgoing) => {
                let _ = outgoing.reply.send(Err(err));
            }
            Self::Signal { done, .. } => {
                let _ = done.send(Err(err));
            }
        }
    }
}

/// The result a server answer gives its request. `None` for messages
/// that answer no request.
pub(crate) fn result_of(message: ServerMessage) -> Option<(u64, Result<Payload, RequestError>)> {
    let id = message.request_id()?.to_u64();
    let result = match message {
        ServerMessage::Reply(reply) => Ok(reply.payload),
        ServerMessage::Error(error) => Err(RequestError::Request {
            code: error.code.as_str().to_owned(),
            message: error.message_text().into_owned(),
        }),
        ServerMessage::Shutdown(_) => Err(RequestError::ServerShutdown),
        ServerMessage::InternalError(_) => Err(RequestError::InternalError),
        ServerMessage::SessionNotFound(_) => Err(RequestError::SessionNotFound),
        ServerMessage::MaxSessConnsReached(_) => Err(RequestError::MaxSessionConnsReached),
        ServerMessage::SessionsDisabled(_) => Err(RequestError::SessionsDisabled),
        _ => return None,
    };
    Some((id, result))
}

/// Tells the connection task that the caller stopped waiting for request
/// `id`, unless [`disarm`](Self::disarm)ed first: dropping a request's
/// future (or its timeout firing) cancels the request.
#[derive(Debug)]
pub(crate) struct CancelOnDrop<'a> {
    pub(crate) id: u64,
    pub(crate) commands: &'a mpsc::UnboundedSender<Command>,
    pub(crate) armed: bool,
}

impl CancelOnDrop<'_> {
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webwire_proto::{ErrorCode, ErrorReply, Reply, RequestId};

    #[test]
    fn answers_map_to_results() {
        let id = RequestId::from(7);
        let cases = [
            (ServerMessage::Shutdown(id), RequestError::ServerShutdown),
            (
                ServerMessage::InternalError(id),
                RequestError::InternalError,
            ),
            (
                ServerMessage::SessionNotFound(id),
                RequestError::SessionNotFound,
            ),
            (
                ServerMessage::MaxSessConnsReached(id),
                RequestError::MaxSessionConnsReached,
            ),
            (
                ServerMessage::SessionsDisabled(id),
                RequestError::SessionsDisabled,
            ),
            (
                ServerMessage::Error(ErrorReply::new(id, ErrorCode::from_static("E1"), "bad")),
                RequestError::Request {
                    code: "E1".into(),
                    message: "bad".into(),
                },
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(result_of(message), Some((7, Err(expected))));
        }
        let reply = ServerMessage::Reply(Reply::new(id, Payload::utf16("hi")));
        assert_eq!(result_of(reply), Some((7, Ok(Payload::utf16("hi")))));
        assert_eq!(result_of(ServerMessage::SessionClosed), None);
    }
}
