//! Why a command failed, and its exit status.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done (the reply printed, the signal sent, `--count` signals printed or Ctrl-C) |
//! | 1 | the server answered with an error reply (code and message on standard error), or refused the session restore |
//! | 2 | could not connect (refused, TLS, handshake, dial timeout), or the connection was lost |
//! | 3 | no reply within `--timeout` |
//! | 4 | the server answered with an internal error or a shutdown reply |
//! | 64 | bad command line or input (unreadable file, malformed header, payload too large) |

use webwire_client::{ConnectError, RequestError};

/// The exit status of an error reply.
pub(crate) const ERROR_REPLY: u8 = 1;
/// The exit status when the server could not be reached or was lost.
pub(crate) const NO_CONNECTION: u8 = 2;
/// The exit status when no reply came in time.
pub(crate) const TIMEOUT: u8 = 3;
/// The exit status of an internal-error or shutdown reply.
pub(crate) const SERVER_FAULT: u8 = 4;
/// The exit status of a bad command line (`EX_USAGE` of sysexits.h, clear
/// of the statuses above, unlike clap's own 2).
pub(crate) const USAGE: u8 = 64;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command line or its input is unusable.
    #[error("{0}")]
    Usage(String),
    /// Connecting failed.
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// A request, signal or session restore failed.
    #[error("{}", describe(.0))]
    Request(#[from] RequestError),
    /// The server closed the connection while listening.
    #[error("the connection was closed")]
    Lost,
    /// Standard output is gone (for example a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Failure {
    /// The process's exit status for this failure.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Output(_) => USAGE,
            Self::Connect(_) | Self::Lost => NO_CONNECTION,
            Self::Request(err) => request_code(err),
        }
    }
}

fn request_code(err: &RequestError) -> u8 {
    match err {
        RequestError::Request { .. }
        | RequestError::SessionNotFound
        | RequestError::MaxSessionConnsReached
        | RequestError::SessionsDisabled => ERROR_REPLY,
        RequestError::TimedOut => TIMEOUT,
        RequestError::InternalError | RequestError::ServerShutdown => SERVER_FAULT,
        RequestError::Disconnected | RequestError::Closed => NO_CONNECTION,
        RequestError::MessageTooLarge { .. } | RequestError::InvalidMessage(_) => USAGE,
        // An invalid session from the server, and what later versions add.
        _ => SERVER_FAULT,
    }
}

fn describe(err: &RequestError) -> String {
    match err {
        RequestError::Request { code, message } => format!("error reply {code}: {message}"),
        RequestError::TimedOut => "no reply in time (--timeout)".to_owned(),
        RequestError::Disconnected => "the connection was lost".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let reply = Failure::from(RequestError::Request {
            code: "NOPE".into(),
            message: "not here".into(),
        });
        assert_eq!(reply.code(), 1);
        assert_eq!(reply.to_string(), "error reply NOPE: not here");
        assert_eq!(Failure::from(RequestError::SessionNotFound).code(), 1);
        assert_eq!(Failure::from(ConnectError::Closed).code(), 2);
        assert_eq!(Failure::Lost.code(), 2);
        assert_eq!(Failure::from(RequestError::Disconnected).code(), 2);
        assert_eq!(Failure::from(RequestError::TimedOut).code(), 3);
        assert_eq!(Failure::from(RequestError::InternalError).code(), 4);
        assert_eq!(Failure::from(RequestError::ServerShutdown).code(), 4);
        assert_eq!(Failure::Usage("bad".into()).code(), 64);
    }
}
