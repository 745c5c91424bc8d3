//! Buffers kept per worker thread between batches: a connection holds a
//! read or write buffer only while it has bytes in it (an idle connection
//! holds none), and a busy connection does not allocate one per batch.
//!
//! A read buffer comes back with its payloads possibly still alive
//! (handlers hold slices of it); it is reused in place once they are gone
//! (`BytesMut::reserve` reclaims a buffer nobody else shares), or gives
//! way to a new allocation if they are not.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread and kind: more than the connections one thread
/// reads or writes at the same time, in the usual case.
const KEPT: usize = 16;

/// Buffers larger than this are dropped rather than kept (the bound of
/// what a thread keeps: `KEPT` × this, per kind).
const MAX_KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    static READ: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static WRITE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Which buffers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Read,
    Write,
}

impl Kind {
    fn with<R>(self, f: impl FnOnce(&mut Vec<BytesMut>) -> R) -> R {
        match self {
            Self::Read => READ.with_borrow_mut(f),
            Self::Write => WRITE.with_borrow_mut(f),
        }
    }
}

/// An empty buffer, from the pool if it has one.
pub(super) fn take(kind: Kind) -> BytesMut {
    kind.with(Vec::pop).unwrap_or_default()
}

/// Gives an empty buffer back, whose allocation is `size` bytes (a read
/// buffer whose payloads were all split off has no capacity left, and
/// still its allocation).
pub(super) fn give_back(kind: Kind, buf: BytesMut, size: usize) {
    debug_assert!(buf.is_empty());
    if size == 0 || size > MAX_KEPT_CAPACITY {
        return;
    }
    kind.with(|pool| {
        if pool.len() < KEPT {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let mut buf = take(Kind::Write);
        buf.reserve(100);
        let capacity = buf.capacity();
        give_back(Kind::Write, buf, capacity);
        let again = take(Kind::Write);
        assert_eq!(again.capacity(), capacity, "the same buffer");

        for _ in 0..KEPT + 4 {
            give_back(Kind::Read, BytesMut::with_capacity(64), 64);
        }
        assert_eq!(READ.with_borrow(Vec::len), KEPT);
        give_back(
            Kind::Write,
            BytesMut::with_capacity(MAX_KEPT_CAPACITY + 1),
            MAX_KEPT_CAPACITY + 1,
        );
        assert!(WRITE.with_borrow(|pool| pool.iter().all(|b| b.capacity() <= MAX_KEPT_CAPACITY)));
    }

    #[test]
    fn a_read_buffer_is_reclaimed_once_its_payloads_are_gone() {
        let mut buf = BytesMut::with_capacity(1024);
        let start = buf.as_ptr();
        buf.extend_from_slice(&[1; 1024]);
        // As the socket gives it back: every byte read was split off.
        let payload = buf.split_to(1024).freeze();
        assert_eq!(buf.capacity(), 0);
        give_back(Kind::Read, buf, 1024);
        drop(payload);
        let mut again = take(Kind::Read);
        again.reserve(1000);
        assert!(again.capacity() >= 1000);
        assert!(std::ptr::eq(again.as_ptr(), start), "reused in place");
    }
}
