//! The vectors that batches of frames are collected in, kept per thread
//! between batches: a connection holds one only while its batch is being
//! written (an idle connection holds none), and a busy connection does not
//! allocate one per batch.

use std::cell::RefCell;

use tokio_websockets::Message;

/// Vectors kept per thread: more than the connections one thread writes
/// at the same time, in the usual case.
const KEPT: usize = 16;

/// Vectors larger than this are dropped rather than kept.
const MAX_KEPT_CAPACITY: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<Message>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector for a new batch, from the pool if it has one.
pub(super) fn take() -> Vec<Message> {
    POOL.with_borrow_mut(Vec::pop).unwrap_or_default()
}

/// Gives a batch's vector back once its frames were handed to the stream.
pub(super) fn give_back(mut batch: Vec<Message>) {
    if batch.capacity() == 0 || batch.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    batch.clear();
    POOL.with_borrow_mut(|pool| {
        if pool.len() < KEPT {
            pool.push(batch);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_reused_and_the_pool_is_bounded() {
        let mut batch = take();
        batch.push(Message::binary(&b"x"[..]));
        let capacity = batch.capacity();
        give_back(batch);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), capacity, "the same vector");

        for _ in 0..KEPT + 4 {
            give_back(Vec::with_capacity(4));
        }
        assert_eq!(POOL.with_borrow(Vec::len), KEPT);
        give_back(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        assert!(POOL.with_borrow(|pool| pool.iter().all(|v| v.capacity() <= MAX_KEPT_CAPACITY)));
    }
}
