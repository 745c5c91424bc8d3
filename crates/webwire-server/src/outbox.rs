//! A connection's outbound queue: the bounded channel through which
//! everybody but the connection task (handler tasks, other connections,
//! the server) sends to the client, made on first use. The connection
//! task takes its receiver (see `wire`).

use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use webwire_proto::ServerMessage;

// The queue entry stays as small as a `Bytes`.
const _: () = assert!(std::mem::size_of::<Outbound>() <= 32);

/// One entry of a connection's outbound queue.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A message the connection task encodes (replies, signals). Boxed:
    /// the queue's storage is allocated in blocks of 32 entries with the
    /// channel, so every idle connection pays for the entry's size.
    Message(Box<ServerMessage>),
    /// A message already encoded (shared by many connections, or prepared once).
    Frame(Bytes),
}

/// The sending side of a connection's outbound queue. The channel (tokio
/// allocates its storage with it: 1.5 KiB with the entries' first block)
/// is made when the first message is queued: a connection nobody sends to
/// holds none.
pub(crate) struct Outbox {
    capacity: usize,
    tx: OnceLock<mpsc::Sender<Outbound>>,
    /// Made and closed under this lock, so that no channel is made once
    /// the connection task has stopped taking from it.
    state: Mutex<OutboxState>,
}

struct OutboxState {
    /// The receiving side, until the connection task takes it.
    rx: Option<mpsc::Receiver<Outbound>>,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tx: OnceLock::new(),
            state: Mutex::new(OutboxState {
                rx: None,
                closed: false,
            }),
        }
    }

    /// The queue's sender, the channel made if need be (the connection
    /// task, woken through `task`, takes its receiver); `None` once the
    /// connection takes no more messages.
    pub(crate) fn sender(&self, task: &AtomicWaker) -> Option<&mpsc::Sender<Outbound>> {
        if let Some(tx) = self.tx.get() {
            return Some(tx);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return None;
        }
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.capacity);
            state.rx = Some(rx);
            tx
        });
        drop(state);
        task.wake();
        Some(tx)
    }

    /// The sender, if the channel was made.
    pub(crate) fn existing(&self) -> Option<&mpsc::Sender<Outbound>> {
        self.tx.get()
    }

    /// The queue's capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The receiver, for the connection task, once the channel exists.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Outbound>> {
        self.tx.get()?;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rx
            .take()
    }

    /// No channel is made from now on, and one not taken yet is closed.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        state.rx = None;
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("capacity", &self.capacity)
            .field("made", &self.tx.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_is_made_on_first_use_and_never_after_closing() {
        let task = AtomicWaker::new();
        let outbox = Outbox::new(4);
        assert!(outbox.existing().is_none());
        assert!(outbox.take_receiver().is_none());

        let tx = outbox.sender(&task).expect("open");
        tx.try_send(Outbound::Frame(Bytes::from_static(b"x")))
            .unwrap();
        assert!(outbox.existing().is_some());
        let mut rx = outbox.take_receiver().expect("made");
        assert!(outbox.take_receiver().is_none(), "taken once");
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(_))));

        // Closing while the receiver was taken: the task closes it.
        outbox.close();
        rx.close();
        assert!(outbox.sender(&task).unwrap().try_send(frame()).is_err());

        // Closed before anything was sent: no channel is made at all.
        let outbox = Outbox::new(4);
        outbox.close();
        assert!(outbox.sender(&task).is_none());
        assert!(outbox.existing().is_none());

        // Made but not taken when closed: its receiver is dropped.
        let outbox = Outbox::new(4);
        let tx = outbox.sender(&task).unwrap().clone();
        outbox.close();
        assert!(tx.try_send(frame()).is_err());
        assert!(outbox.take_receiver().is_none());
    }

    fn frame() -> Outbound {
        Outbound::Frame(Bytes::from_static(b"x"))
    }
}
