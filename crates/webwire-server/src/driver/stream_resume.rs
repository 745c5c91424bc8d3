//! 2.1 in the connection task: a client's StreamResume (see
//! `stream::resume`).

use super::*;

impl<H, Io> Task<H, Io>
where
    H: Handler,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Answers a StreamResume: the missed signals (or losses) are queued,
    /// then the reply is written after them. The connection's queue is
    /// written meanwhile, so a long history does not wait for this task.
    pub(super) async fn stream_resume(
        &mut self,
        resume: webwire_proto::StreamResume,
    ) -> Result<(), ReadEnd> {
        let id = resume.id();
        let streams = self.shared.sessions().streams().clone();
        let (conn, abort) = (&self.conn, &self.ctx.abort);
        let work = async {
            tokio::select! {
                biased;
                reply = crate::stream::resume::resume(&streams, conn, resume) => reply,
                () = abort.cancelled() => ServerMessage::Shutdown(id),
            }
        };
        let (reply, failed) = self.wire.drive_to_end(work).await;
        if let Some(err) = failed {
            return Err(ReadEnd::Wire(err));
        }
        self.send(reply).await
    }
}
