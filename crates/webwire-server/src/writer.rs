//! The writer task: the only owner of a connection's sending half. It
//! drains the bounded outbound queue, encodes what is not encoded yet into
//! one reusable buffer, writes every message that is ready and flushes
//! once per batch.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_websockets::{CloseCode, Message};
use webwire_proto::ServerMessage;

use crate::connection::ConnectionInner;

/// The most messages written before one flush.
const BATCH: usize = 64;
/// The encode buffer grows by at least this much, so that small messages
/// share allocations.
const ENCODE_CHUNK: usize = 1024;

/// One entry of a connection's outbound queue.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A message the writer encodes (replies, signals).
    Message(ServerMessage),
    /// A message already encoded (shared by many connections, or prepared once).
    Frame(Bytes),
    /// The WebSocket close frame; the writer stops after it.
    Close(CloseCode, &'static str),
}

/// Why the writer stopped.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// The close frame was written (or the stream was already closing).
    Closed,
    /// The queue stayed full while the socket did not take more.
    Stalled,
    /// Told to stop at once.
    Killed,
    /// Writing failed.
    Failed(tokio_websockets::Error),
}

pub(crate) struct Writer<S> {
    pub(crate) sink: S,
    pub(crate) rx: mpsc::Receiver<Outbound>,
    pub(crate) conn: Arc<ConnectionInner>,
    pub(crate) kill: CancellationToken,
    pub(crate) stall_timeout: Duration,
}

impl<S> Writer<S>
where
    S: futures_util::Sink<Message, Error = tokio_websockets::Error> + Unpin,
{
    pub(crate) async fn run(mut self) -> WriterEnd {
        let end = self.write_loop().await;
        // Nothing more will be sent: senders fail from now on.
        self.rx.close();
        end
    }

    async fn write_loop(&mut self) -> WriterEnd {
        let mut buf = BytesMut::new();
        // Whether `buf` holds an allocation larger than `ENCODE_CHUNK`.
        let mut big = false;
        loop {
            // The queue first: with messages waiting the token is not even
            // polled (a write that cannot proceed watches it, see `guarded`).
            let first = tokio::select! {
                biased;
                item = self.rx.recv() => match item {
                    Some(item) => item,
                    None => return WriterEnd::Closed,
                },
                () = self.kill.cancelled() => return WriterEnd::Killed,
            };
            let depth = 1 + self.rx.len();
            self.conn
                .counters
                .max_queued
                .fetch_max(depth, Ordering::Relaxed);

            let mut next = Some(first);
            let mut written = 0u64;
            let mut closing = false;
            let mut yielded = false;
            while let Some(item) = next.take() {
                let message = match item {
                    Outbound::Message(message) => {
                        let len = message.encoded_len();
                        if buf.capacity() < len {
                            // Reuses the allocation in place once the frames
                            // cut from it have been written and dropped.
                            big |= len > ENCODE_CHUNK;
                            buf.reserve(len.max(ENCODE_CHUNK));
                        }
                        message.encode(&mut buf);
                        Message::binary(buf.split().freeze())
                    }
                    Outbound::Frame(frame) => Message::binary(frame),
                    Outbound::Close(code, reason) => {
                        closing = true;
                        Message::close(Some(code), reason)
                    }
                };
                let fed = guarded(
                    self.sink.feed(message),
                    &self.rx,
                    &self.kill,
                    self.stall_timeout,
                )
                .await;
                match fed {
                    Ok(Ok(())) => written += 1,
                    // The stream is closing on its own (the client closed, or
                    // the reader queued a close for a WebSocket error).
                    Ok(Err(tokio_websockets::Error::AlreadyClosed)) => return WriterEnd::Closed,
                    Ok(Err(err)) => return WriterEnd::Failed(err),
                    Err(end) => return end,
                }
                if closing || written as usize >= BATCH {
                    break;
                }
                next = self.rx.try_recv().ok();
                if next.is_none() && !yielded && self.handlers_running() {
                    // Handler tasks of this connection are about to queue
                    // their replies: let them run first, so that one flush
                    // carries them all instead of one flush each.
                    yielded = true;
                    tokio::task::yield_now().await;
                    next = self.rx.try_recv().ok();
                }
            }
            match guarded(self.sink.flush(), &self.rx, &self.kill, self.stall_timeout).await {
                Ok(Ok(())) => {}
                // As above (the split sink reports a refused message when it flushes).
                Ok(Err(tokio_websockets::Error::AlreadyClosed)) => return WriterEnd::Closed,
                Ok(Err(err)) => return WriterEnd::Failed(err),
                Err(end) => return end,
            }
            self.conn
                .counters
                .sent
                .fetch_add(written, Ordering::Relaxed);
            if closing {
                return WriterEnd::Closed;
            }
            // An idle connection keeps no large buffer (a split-off buffer
            // holds on to its whole allocation, however little is left).
            if big && self.rx.is_empty() {
                buf = BytesMut::new();
                big = false;
            }
        }
    }
}

impl<S> Writer<S> {
    /// Whether handler tasks (concurrency above 1) are running; inline
    /// handlers queue their replies from the reading task, which does not
    /// yield between messages, so waiting for them gains nothing.
    fn handlers_running(&self) -> bool {
        self.conn.options.concurrency_limit() != crate::Concurrency::ONE
            && self.conn.counters.handlers.load(Ordering::Relaxed) > 0
    }
}

/// Runs a write, giving up when it does not finish within the stall
/// timeout while the queue is full (the client stopped reading), or when
/// killed. Writes that are ready at once (the usual case) arm no timer.
async fn guarded<T, Fut>(
    write: Fut,
    rx: &mpsc::Receiver<Outbound>,
    kill: &CancellationToken,
    stall_timeout: Duration,
) -> Result<T, WriterEnd>
where
    Fut: Future<Output = T>,
{
    tokio::pin!(write);
    if let Some(out) = (&mut write).now_or_never() {
        return Ok(out);
    }
    loop {
        tokio::select! {
            biased;
            out = &mut write => return Ok(out),
            () = kill.cancelled() => return Err(WriterEnd::Killed),
            () = tokio::time::sleep(stall_timeout) => {
                if rx.capacity() == 0 {
                    return Err(WriterEnd::Stalled);
                }
            }
        }
    }
}
