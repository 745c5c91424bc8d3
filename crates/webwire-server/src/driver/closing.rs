//! Closing a connection: the close frame for its reason after what is
//! queued, the client's close frame awaited, a lingering close after a
//! violation, the handlers still running awaited.

use super::*;
use crate::wire::FrameError;

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Sends the close frame for `end` after what is queued, waits for the
    /// client's close frame and for the handlers still running.
    pub(super) async fn finish(mut self, end: ReadEnd) -> DisconnectReason {
        self.conn.inner.lifecycle().advance(Phase::Closed);
        let close_timeout = self.shared.config().close_timeout;
        let mut wire_end = None;
        // A reason, or the write failure that ended the read loop.
        let end = match end {
            ReadEnd::Closing(closing) => Ok(disconnect_reason(closing)),
            ReadEnd::Reason(reason) => Ok(reason),
            ReadEnd::Wire(err) => Err(err),
        };
        if let Ok(reason) = &end {
            // Reasons without a close code of ours: the WebSocket stream
            // has queued its own close frame already (or the client is
            // gone); it only has to be written.
            let closed = match reason.close_frame() {
                Some((code, text)) => {
                    tokio::time::timeout(close_timeout, self.wire.close(code, text)).await
                }
                None => tokio::time::timeout(close_timeout, self.wire.flush()).await,
            };
            match closed {
                Ok(Ok(())) => {
                    // Until the client's close frame (or the end of the
                    // stream), so that the socket closes cleanly; messages
                    // are not handled now.
                    let deadline = Instant::now() + close_timeout;
                    let handshake = tokio::time::timeout_at(deadline, self.wire.read_to_end())
                        .await
                        .unwrap_or(false);
                    // A client closed for a violation may still be sending
                    // (the rest of an oversized message, which the stream
                    // cannot read past) if its close frame did not come:
                    // what it sends is read and dropped, within the same
                    // time, so that the close frame is not lost in a reset.
                    if !handshake && lingers(reason) {
                        let linger = self.wire.linger(LINGER_BYTES, LINGER_IDLE);
                        let _ = tokio::time::timeout_at(deadline, linger).await;
                    }
                }
                Ok(Err(err)) => wire_end = Some(err),
                Err(_) => {}
            }
        }
        self.wire.close_queue();
        tracing::trace!(connection = %self.conn.id(), ?wire_end, "closing");
        // Close the socket, then wait for the handlers still running (their
        // replies have nowhere to go now).
        let Self {
            wire, tasks, keyed, ..
        } = self;
        drop(wire);
        if let Some(keyed) = keyed {
            keyed.socket_closed();
        }
        if let Some(tasks) = tasks {
            tasks.close();
            tasks.wait().await;
        }
        match end {
            Ok(reason) => reason,
            Err(WireError::Stalled) => DisconnectReason::QueueStalled,
            Err(WireError::Failed(err)) => DisconnectReason::ConnectionLost(err.to_string()),
            Err(WireError::Closed) => DisconnectReason::ConnectionLost("the stream closed".into()),
        }
    }
}

/// What a lingering close reads and drops at most (within the close
/// timeout): far more than a client has in flight when it is refused.
pub(super) const LINGER_BYTES: usize = 1 << 20;

/// A lingering close ends when the client sent nothing for this long (it
/// has stopped sending; the close frame is not lost once nothing is left
/// unread).
pub(super) const LINGER_IDLE: Duration = Duration::from_secs(1);

/// Whether the connection's close lingers (see `Wire::linger`): after a
/// violation, when the client may still be sending.
pub(super) fn lingers(reason: &DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::ProtocolViolation(_)
            | DisconnectReason::TextMessage
            | DisconnectReason::RateLimited
            | DisconnectReason::MessageTooBig { .. }
            | DisconnectReason::WebSocketError(_)
    )
}

/// What the application is told of a close the rules decided.
fn disconnect_reason(closing: Closing) -> DisconnectReason {
    match closing {
        Closing::PeerClosed { code, reason } => DisconnectReason::ClientClosed { code, reason },
        Closing::TextMessage => DisconnectReason::TextMessage,
        Closing::ProtocolViolation(err) => DisconnectReason::ProtocolViolation(err),
        Closing::ReadTimeout => DisconnectReason::ReadTimeout,
        Closing::Drained(Drain::Close) => DisconnectReason::ClosedByServer,
        Closing::Drained(Drain::Restart) => DisconnectReason::ServiceRestart,
        Closing::Drained(Drain::Shutdown) => DisconnectReason::Shutdown,
        Closing::PolicyViolation => DisconnectReason::RateLimited,
    }
}

/// The disconnect reason for an error of the WebSocket stream.
pub(super) fn stream_error(err: WsError) -> DisconnectReason {
    match err {
        WsError::Frame(
            FrameError::TooBig { len, max } | FrameError::FragmentsTooBig { len, max },
        ) => DisconnectReason::MessageTooBig { len, max },
        WsError::Frame(FrameError::Protocol(err)) => {
            DisconnectReason::WebSocketError(err.to_string())
        }
        err => DisconnectReason::ConnectionLost(err.to_string()),
    }
}
