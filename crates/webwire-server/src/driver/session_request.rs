//! A client's session requests (restore, close), answered in the
//! connection task whatever the concurrency limit, so that the messages
//! after one see its outcome.

use super::*;

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Answers a session request (docs/protocol.md 8). It runs here, in the
    /// connection task, whatever the concurrency limit: messages that follow
    /// it are handled with its outcome (a request after a restore sees the
    /// session), as the original server did.
    pub(super) async fn session_request(
        &mut self,
        id: RequestId,
        request: SessionRequest,
    ) -> Result<(), ReadEnd> {
        if let SessionRequest::Restore(key) = &request {
            self.note_restore(key);
        }
        let sessions = self.shared.sessions().clone();
        let (conn, abort) = (&self.conn, &self.ctx.abort);
        let work = async {
            match request {
                SessionRequest::Restore(key) => sessions.restore(conn, id, key).await,
                SessionRequest::Close if !sessions.enabled() => {
                    (ServerMessage::SessionsDisabled(id), None)
                }
                SessionRequest::Close => {
                    // The session has left the connection even if the
                    // manager failed to delete it (that is logged): the
                    // client is told it has none.
                    let (event, _) = sessions.close(conn, false).await;
                    (
                        ServerMessage::Reply(Reply::new(id, Payload::default())),
                        event,
                    )
                }
            }
        };
        let work = async {
            tokio::select! {
                biased;
                out = AssertUnwindSafe(work).catch_unwind() => out.unwrap_or_else(|panic| {
                    tracing::error!(connection = %conn.id(), panic = panic_message(&*panic), "session request panicked");
                    (ServerMessage::InternalError(id), None)
                }),
                () = abort.cancelled() => (ServerMessage::Shutdown(id), None),
            }
        };
        let ((reply, event), failed) = self.wire.drive_to_end(work).await;
        if let Some(err) = failed {
            return Err(ReadEnd::Wire(err));
        }
        self.wire.send(reply).await.map_err(ReadEnd::Wire)?;
        // The application hears of it once the reply is written.
        if let Some(event) = event {
            let notify = async {
                tokio::select! {
                    biased;
                    () = sessions.notify(conn, &event) => {}
                    () = abort.cancelled() => {}
                }
            };
            if let ((), Some(err)) = self.wire.drive_to_end(notify).await {
                return Err(ReadEnd::Wire(err));
            }
        }
        Ok(())
    }
}
