//! Stream history (webwire 2.1, docs/protocol.md section 14): the
//! interfaces of `webwire-core` re-exported ([`StreamStore`], its keys,
//! positions, reads and losses), and [`MemoryStreamStore`], the store of a
//! single server.
//!
//! The server's side: which rooms keep history
//! ([`ServerBuilder::room_history`](crate::ServerBuilder::room_history)),
//! sending on a stream
//! ([`Server::signal_session_stream`](crate::Server::signal_session_stream),
//! [`Server::signal_room_stream`](crate::Server::signal_room_stream)), the
//! sessions' room memberships
//! ([`Server::join_session_room`](crate::Server::join_session_room)), and a
//! client's StreamResume.

mod api;
pub(crate) mod hold;
pub(crate) mod hub;
mod memory;
pub(crate) mod resume;

pub(crate) use api::deliver_from_cluster;
pub use hub::{DEFAULT_SESSION_HISTORY, MAX_SESSION_ROOMS, MEMBERSHIP_IDLE};
pub use memory::MemoryStreamStore;
pub use resume::NO_SESSION;
pub use webwire_core::stream::{
    HistoryLimits, LossReason, StreamEntry, StreamKey, StreamLoss, StreamPosition, StreamRead,
    StreamStore, StreamStoreError,
};

/// A random epoch, never 0 (0 stands for "no stream" on the wire).
///
/// An epoch only has to differ from the epochs a client may still hold, not
/// to be secret: if the operating system's generator fails, a hash with
/// std's randomly keyed hasher of the time and a counter serves.
pub(crate) fn random_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let epoch = getrandom::u64().unwrap_or_else(|_| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                hasher.write_u128(since.as_nanos());
            }
            hasher.finish()
        });
        if epoch != 0 {
            return epoch;
        }
    }
}
