//! A client's StreamResume (docs/protocol.md 14.3.4): for each stream it
//! covers, under the stream's order, the history after the client's
//! position or the loss, queued for the connection; then the empty reply.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use webwire_proto::{
    ErrorCode, ErrorReply, Payload, Reply, RequestId, ServerMessage, StreamId, StreamLoss,
    StreamResume,
};

use super::hold::{CatchUp, Left};
use super::hub::{stream_signal_frame, wire_stream, StreamGuard, Streams};
use super::{HistoryLimits, StreamKey, StreamPosition, StreamRead};
use crate::outbox::Outbound;
use crate::Connection;

/// The error code of a StreamResume (or a keyed request) on a connection
/// without a session.
pub const NO_SESSION: &str = "NO_SESSION";

/// Where a covered stream is read from.
#[derive(Debug, Clone, Copy)]
enum From {
    /// After the client's (or the membership's) position.
    After(StreamPosition),
    /// Everything retained (the session stream not listed).
    Start,
    /// The stream's end: nothing (a membership whose join position was
    /// not read yet).
    End,
}

/// A stream the resume covers.
#[derive(Debug)]
struct Covered {
    key: StreamKey,
    limits: HistoryLimits,
    from: From,
}

/// Why a catch-up stopped before its end.
enum Stopped {
    /// The connection takes no more messages.
    Closed,
    /// Its queue stayed full for the queue timeout.
    Stalled,
    /// The history store could not be read.
    Store,
    /// The connection left the stream (the room, or the session was
    /// closed on it): nothing more of it is written.
    Left,
}

impl std::convert::From<Left> for Stopped {
    fn from(Left: Left) -> Self {
        Self::Left
    }
}

/// Whether `conn` may see `stream` now: it holds the stream's session, or
/// is in its room.
pub(crate) fn may_see(conn: &Connection, stream: &StreamKey) -> bool {
    match stream {
        StreamKey::Session(key) => conn.session_key().as_deref() == Some(key.as_str()),
        StreamKey::Room(room) => conn.inner.membership().contains(room),
    }
}

/// Handles the StreamResume `resume` of `conn`; returns its answer, to be
/// written once everything it queued is.
pub(crate) async fn resume(
    streams: &Streams,
    conn: &Connection,
    resume: StreamResume,
) -> ServerMessage {
    let (id, positions) = resume.into_parts();
    let Some(key) = conn.session_key() else {
        return no_session(id);
    };
    let Ok(tx) = conn.sender() else {
        return ServerMessage::Shutdown(id);
    };
    let tx = tx.clone();
    let timeout = conn.inner.queue_timeout();
    let memberships = streams.session_rooms(&key);
    let mut covered = Vec::with_capacity(positions.len() + memberships.len() + 1);
    let mut unknown = Vec::new();
    let mut listed_session = false;
    let mut listed_rooms = std::collections::HashSet::new();
    for position in positions {
        let at = StreamPosition::new(position.epoch, position.offset);
        match position.stream {
            StreamId::Session => {
                listed_session = true;
                covered.push(Covered {
                    key: StreamKey::session(key.clone()),
                    limits: streams.session_history(),
                    from: From::After(at),
                });
            }
            StreamId::Room(room) => {
                let name = room.as_str();
                listed_rooms.insert(name.to_owned());
                // Rights first: reading a stream would make it (a client
                // must not make streams under names of its choosing).
                let member = memberships.iter().any(|(joined, _)| joined == name);
                match streams.room_history(name).filter(|_| member) {
                    Some(limits) => covered.push(Covered {
                        key: StreamKey::room(name),
                        limits,
                        from: From::After(at),
                    }),
                    None => unknown.push(StreamId::Room(room)),
                }
            }
        }
    }
    for (room, joined) in memberships {
        if listed_rooms.contains(&room) {
            continue;
        }
        if let Some(limits) = streams.room_history(&room) {
            covered.push(Covered {
                key: StreamKey::room(room),
                limits,
                from: joined.map_or(From::End, From::After),
            });
        }
    }
    if !listed_session {
        covered.push(Covered {
            key: StreamKey::session(key.clone()),
            limits: streams.session_history(),
            from: From::Start,
        });
    }
    for stream in unknown {
        let loss = ServerMessage::StreamLoss(StreamLoss {
            stream,
            epoch: 0,
            lost_from: 0,
            lost_to: 0,
            next: 0,
            reason: webwire_proto::LossReason::UnknownStream,
        });
        match reserve(&tx, timeout).await {
            Ok(permit) => permit.send(Outbound::Message(Box::new(loss))),
            Err(stopped) => return stopped_reply(conn, id, stopped),
        }
    }
    for stream in &covered {
        match resume_one(streams, conn, &tx, timeout, stream).await {
            Ok(()) => {}
            // A room left meanwhile: the others go on.
            Err(Stopped::Left) if conn.session_key().as_deref() == Some(key.as_str()) => {}
            Err(stopped) => return stopped_reply(conn, id, stopped),
        }
    }
    conn.inner.stream_state().end_hold();
    ServerMessage::Reply(Reply::new(id, Payload::binary(Bytes::new())))
}

/// Resumes one stream and lets it flow again: its live signals are held
/// from the connection, the history read under the stream's order is
/// queued without it (waiting for room as long as the client reads), and
/// what was appended meanwhile is caught up under the order again, where
/// the hold ends.
async fn resume_one(
    streams: &Streams,
    conn: &Connection,
    tx: &mpsc::Sender<Outbound>,
    timeout: std::time::Duration,
    stream: &Covered,
) -> Result<(), Stopped> {
    let state = conn.inner.stream_state();
    let (catch_up, first) = {
        let _order = streams.lock(&stream.key).await;
        let catch_up = state.begin_catch_up(&stream.key, || may_see(conn, &stream.key))?;
        (catch_up, read_from(streams, conn, stream).await)
    };
    // Where it fails, live signals flow again: the client sees the hole
    // and retries.
    catch_up_with(streams, conn, tx, timeout, stream, catch_up, first).await
}

/// Repairs the stream of `catch_up` for `conn`, whose full queue missed
/// its live signal at `missed` (the stream is held from it, see
/// `Streams::deliver`): the history from `missed` on is queued as a
/// resume's (waiting for room, then caught up under the stream's order,
/// where the hold ends), with no answer. Nothing before `missed` is sent
/// again: the live signals before it were queued under the same order. If
/// the client does not read for the queue timeout, or the history cannot
/// be read, the connection is closed as for a restart: the client
/// reconnects and its restore resumes the stream (from its position, or
/// from the join position or the stream's start when it has none), rather
/// than take a later signal as its first and never learn of the one
/// missed. Once the connection leaves the stream, the repair stops.
pub(crate) async fn repair(
    streams: Arc<Streams>,
    conn: Connection,
    catch_up: CatchUp,
    limits: HistoryLimits,
    missed: StreamPosition,
) {
    let state = conn.inner.stream_state();
    let Ok(tx) = conn.sender().cloned() else {
        state.end_catch_up(catch_up, false);
        return;
    };
    let covered = Covered {
        key: catch_up.stream().clone(),
        limits,
        from: From::After(StreamPosition::new(
            missed.epoch,
            missed.offset.saturating_sub(1),
        )),
    };
    let first = read_from(&streams, &conn, &covered).await;
    let timeout = conn.inner.queue_timeout();
    let Err(stopped) =
        catch_up_with(&streams, &conn, &tx, timeout, &covered, catch_up, first).await
    else {
        return;
    };
    match stopped {
        Stopped::Closed | Stopped::Left => {}
        Stopped::Stalled | Stopped::Store => {
            tracing::debug!(connection = %conn.id(), stream = %covered.key, "a missed stream signal could not be repaired; the connection closes, its client resumes after reconnecting");
            conn.close_for_restart();
        }
    }
}

/// Queues `read` and whatever follows it, until caught up under the
/// stream's order, where `catch_up` ends and the stream flows again (it
/// ends too where this fails).
async fn catch_up_with(
    streams: &Streams,
    conn: &Connection,
    tx: &mpsc::Sender<Outbound>,
    timeout: std::time::Duration,
    stream: &Covered,
    catch_up: CatchUp,
    read: Result<StreamRead, Stopped>,
) -> Result<(), Stopped> {
    let state = conn.inner.stream_state();
    match queue_until_caught_up(streams, conn, tx, timeout, stream, &catch_up, read).await {
        Ok(_order) => {
            state.end_catch_up(catch_up, true);
            Ok(())
        }
        Err(stopped) => {
            state.end_catch_up(catch_up, false);
            Err(stopped)
        }
    }
}

/// The loop of [`catch_up_with`]: returns the stream's order, held, once
/// nothing is left to queue.
async fn queue_until_caught_up<'s>(
    streams: &'s Streams,
    conn: &Connection,
    tx: &mpsc::Sender<Outbound>,
    timeout: std::time::Duration,
    stream: &Covered,
    catch_up: &CatchUp,
    read: Result<StreamRead, Stopped>,
) -> Result<StreamGuard<'s>, Stopped> {
    let state = conn.inner.stream_state();
    let (mut pending, mut last) = frames(conn, &stream.key, read?);
    loop {
        for (at, frame) in pending {
            let permit = reserve(tx, timeout).await?;
            state.send(catch_up, permit, frame)?;
            last = at;
        }
        let order = streams.lock(&stream.key).await;
        let again = Covered {
            key: stream.key.clone(),
            limits: stream.limits,
            from: From::After(last),
        };
        let (more, _) = frames(conn, &stream.key, read_from(streams, conn, &again).await?);
        // What fits in the queue now goes under the order, with the end of
        // the hold; the rest is queued without it, and read after again.
        let mut more = more.into_iter();
        let mut rest = Vec::new();
        for (at, frame) in more.by_ref() {
            match tx.try_reserve() {
                Ok(permit) => {
                    state.send(catch_up, permit, frame)?;
                    last = at;
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    rest.push((at, frame));
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return Err(Stopped::Closed),
            }
        }
        rest.extend(more);
        if rest.is_empty() {
            return Ok(order);
        }
        drop(order);
        pending = rest;
    }
}

/// The frames of a read, in order, each with the position it brings the
/// client to, and the position after them all.
fn frames(
    conn: &Connection,
    stream: &StreamKey,
    read: StreamRead,
) -> (Vec<(StreamPosition, Outbound)>, StreamPosition) {
    let id = wire_stream(stream);
    let mut frames = Vec::with_capacity(read.entries.len() + 1);
    // Nothing to send: the client is at the end.
    let mut position = StreamPosition::new(read.epoch, read.end);
    if let Some(loss) = read.loss {
        position = StreamPosition::new(read.epoch, loss.next.saturating_sub(1));
        let message = ServerMessage::StreamLoss(StreamLoss {
            stream: id,
            epoch: read.epoch,
            lost_from: loss.lost_from,
            lost_to: loss.lost_to,
            next: loss.next,
            reason: wire_reason(loss.reason),
        });
        frames.push((position, Outbound::Message(Box::new(message))));
    }
    for entry in read.entries {
        let signal = match ServerMessage::parse(entry.frame) {
            Ok(ServerMessage::Signal(signal)) => signal,
            other => {
                // The store gave back what it was not given.
                tracing::error!(connection = %conn.id(), %stream, offset = entry.offset, parsed = ?other.map(|m| m.message_type()), "a stored stream entry is not a signal; skipped");
                continue;
            }
        };
        position = StreamPosition::new(read.epoch, entry.offset);
        if let Some(frame) = stream_signal_frame(stream, position, signal) {
            frames.push((position, Outbound::Frame(frame)));
        }
    }
    (frames, position)
}

/// Reads a covered stream from where it starts.
async fn read_from(
    streams: &Streams,
    conn: &Connection,
    stream: &Covered,
) -> Result<StreamRead, Stopped> {
    let store = streams.store();
    let read = match stream.from {
        From::After(at) => store.read(&stream.key, &stream.limits, Some(at)).await,
        From::Start => store.read(&stream.key, &stream.limits, None).await,
        From::End => match store.end(&stream.key, &stream.limits).await {
            Ok(end) => store.read(&stream.key, &stream.limits, Some(end)).await,
            Err(err) => Err(err),
        },
    };
    read.map_err(|err| {
        tracing::warn!(connection = %conn.id(), stream = %stream.key, error = %crate::session::ops::chain(&err), "stream history could not be read for a resume");
        Stopped::Store
    })
}

/// Room in the queue for one message, waiting at most `timeout` (the
/// connection task writes meanwhile).
async fn reserve(
    tx: &mpsc::Sender<Outbound>,
    timeout: std::time::Duration,
) -> Result<mpsc::Permit<'_, Outbound>, Stopped> {
    match tx.try_reserve() {
        Ok(permit) => return Ok(permit),
        Err(mpsc::error::TrySendError::Closed(())) => return Err(Stopped::Closed),
        Err(mpsc::error::TrySendError::Full(())) => {}
    }
    match tokio::time::timeout(timeout, tx.reserve()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(Stopped::Closed),
        Err(_) => Err(Stopped::Stalled),
    }
}

fn stopped_reply(conn: &Connection, id: RequestId, stopped: Stopped) -> ServerMessage {
    match stopped {
        Stopped::Closed => ServerMessage::Shutdown(id),
        Stopped::Stalled => {
            tracing::debug!(connection = %conn.id(), "a resume stopped: the client does not read");
            ServerMessage::InternalError(id)
        }
        Stopped::Store => ServerMessage::InternalError(id),
        // The session was closed on the connection meanwhile.
        Stopped::Left => no_session(id),
    }
}

fn no_session(id: RequestId) -> ServerMessage {
    ServerMessage::Error(ErrorReply::new(
        id,
        ErrorCode::from_static(NO_SESSION),
        "the connection has no session",
    ))
}

fn wire_reason(reason: super::LossReason) -> webwire_proto::LossReason {
    webwire_proto::LossReason::from_byte(reason.code())
        .unwrap_or(webwire_proto::LossReason::UnknownStream)
}
