//! Stream history (webwire 2.1, docs/protocol.md section 14): the
//! interfaces of `webwire-core` re-exported ([`StreamStore`], its keys,
//! positions, reads and losses), and [`MemoryStreamStore`], the store of a
//! single server.

mod memory;

pub use memory::MemoryStreamStore;
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
