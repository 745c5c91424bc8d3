use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    random_epoch, HistoryLimits, StreamEntry, StreamKey, StreamPosition, StreamRead, StreamStore,
    StreamStoreError,
};

/// How often an operation also sweeps every stream (trims by age, removes
/// idle empty streams), so that streams nobody touches do not hold memory.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A [`StreamStore`] in memory: the history of one server, lost when the
/// process ends (every stream then starts over under a new epoch, and a
/// returning client is told [`LossReason::EpochChanged`](super::LossReason::EpochChanged)).
///
/// Each stream keeps its signals within the [`HistoryLimits`] given with
/// each call. A stream with nothing retained is kept for the idle timeout
/// (default 24 hours) after it was last used, so that its epoch and end
/// survive quiet times (a stream made again gets a new epoch, which a
/// returning client sees as a loss of unknown extent); then it is removed.
/// It never fails.
///
/// ```
/// use bytes::Bytes;
/// use webwire_server::stream::{HistoryLimits, MemoryStreamStore, StreamKey, StreamPosition, StreamStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webwire_server::stream::StreamStoreError> {
/// let store = MemoryStreamStore::new();
/// let room = StreamKey::room("lobby");
/// let limits = HistoryLimits::default();
/// let first = store.append(&room, &limits, Bytes::from_static(b"\x3f\x01a")).await?;
/// let second = store.append(&room, &limits, Bytes::from_static(b"\x3f\x01b")).await?;
/// assert_eq!((first.offset, second.offset), (1, 2));
/// let read = store.read(&room, &limits, Some(first)).await?;
/// assert_eq!(read.entries.len(), 1);
/// assert_eq!(read.entries[0].offset, 2);
/// assert!(read.loss.is_none());
/// # Ok(())
/// # }
/// ```
pub struct MemoryStreamStore {
    streams: Mutex<Streams>,
    idle_timeout: Duration,
}

struct Streams {
    map: HashMap<StreamKey, Stream>,
    last_sweep: Instant,
}

struct Stream {
    epoch: u64,
    /// The offset of the last signal appended (0: none).
    end: u64,
    /// The retained signals, oldest first, offsets dense and ending at `end`.
    entries: VecDeque<Stored>,
    /// The limits of the last call, by which a sweep trims.
    limits: HistoryLimits,
    last_used: Instant,
}

struct Stored {
    offset: u64,
    at: Instant,
    frame: Bytes,
}

impl Stream {
    fn new(limits: HistoryLimits, now: Instant) -> Self {
        Self {
            epoch: random_epoch(),
            end: 0,
            entries: VecDeque::new(),
            limits,
            last_used: now,
        }
    }

    fn trim(&mut self, now: Instant) {
        while self.entries.len() > self.limits.max_count {
            self.entries.pop_front();
        }
        while self
            .entries
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.at) >= self.limits.max_age)
        {
            self.entries.pop_front();
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition::new(self.epoch, self.end)
    }
}

/// Shows how many streams it holds, not their keys.
impl fmt::Debug for MemoryStreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStreamStore")
            .field("streams", &self.lock().map.len())
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Default for MemoryStreamStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStreamStore {
    /// An empty store; streams with nothing retained are removed 24 hours
    /// after they were last used.
    ///
    /// ```
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// assert!(MemoryStreamStore::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            streams: Mutex::new(Streams {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            idle_timeout: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets how long a stream with nothing retained is kept after it was
    /// last used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// let store = MemoryStreamStore::new().with_idle_timeout(Duration::from_secs(3600));
    /// assert_eq!(store.idle_timeout(), Duration::from_secs(3600));
    /// ```
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// How long a stream with nothing retained is kept after it was last
    /// used.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// assert_eq!(MemoryStreamStore::new().idle_timeout(), Duration::from_secs(24 * 3600));
    /// ```
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// How many streams are held.
    ///
    /// ```
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// assert_eq!(MemoryStreamStore::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no stream is held.
    ///
    /// ```
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// assert!(MemoryStreamStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }

    /// Trims every stream by age and removes the streams with nothing
    /// retained that were idle for the idle timeout; returns how many were
    /// removed. Operations do this on their own every 10 seconds.
    ///
    /// ```
    /// use webwire_server::stream::MemoryStreamStore;
    ///
    /// assert_eq!(MemoryStreamStore::new().remove_expired(), 0);
    /// ```
    pub fn remove_expired(&self) -> usize {
        let now = Instant::now();
        let mut streams = self.lock();
        self.sweep(&mut streams, now)
    }

    fn sweep(&self, streams: &mut Streams, now: Instant) -> usize {
        streams.last_sweep = now;
        let before = streams.map.len();
        streams.map.retain(|_, stream| {
            stream.trim(now);
            !stream.entries.is_empty() || now.duration_since(stream.last_used) < self.idle_timeout
        });
        before - streams.map.len()
    }

    /// The stream `key` (made if missing), trimmed, marked used now; the
    /// whole store swept first when it is time.
    fn with_stream<T>(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        op: impl FnOnce(&mut Stream, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let mut streams = self.lock();
        if now.duration_since(streams.last_sweep) >= SWEEP_EVERY {
            self.sweep(&mut streams, now);
        }
        let stream = match streams.map.get_mut(key) {
            Some(stream) => stream,
            None => streams
                .map
                .entry(key.clone())
                .or_insert_with(|| Stream::new(*limits, now)),
        };
        stream.limits = *limits;
        stream.last_used = now;
        stream.trim(now);
        op(stream, now)
    }

    /// The map; a panic while it was held cannot leave a stream
    /// half-changed: an append pushes after numbering, and trimming only
    /// pops whole entries.
    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(&self, key: &StreamKey, limits: &HistoryLimits, frame: Bytes) -> StreamPosition {
        self.with_stream(key, limits, |stream, now| {
            stream.end += 1;
            stream.entries.push_back(Stored {
                offset: stream.end,
                at: now,
                frame,
            });
            stream.trim(now);
            stream.position()
        })
    }

    fn read_now(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        after: Option<StreamPosition>,
    ) -> StreamRead {
        self.with_stream(key, limits, |stream, _| {
            // Copy only what the client may get: after its offset when it
            // is within this epoch and history, everything otherwise.
            let skip_to = match after {
                Some(at) if at.epoch == stream.epoch && at.offset <= stream.end => at.offset,
                _ => 0,
            };
            let retained = stream
                .entries
                .iter()
                .skip_while(|entry| entry.offset <= skip_to)
                .map(|entry| StreamEntry {
                    offset: entry.offset,
                    frame: entry.frame.clone(),
                })
                .collect::<Vec<_>>();
            // `answer` reckons the first retained offset from what it is
            // given: when everything is skipped, that is the end + 1; when
            // some is, the client is within history anyway.
            StreamRead::answer(stream.epoch, stream.end, retained, after)
        })
    }
}

impl StreamStore for MemoryStreamStore {
    async fn append(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        frame: Bytes,
    ) -> Result<StreamPosition, StreamStoreError> {
        Ok(self.append_now(stream, limits, frame))
    }

    async fn read(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
        after: Option<StreamPosition>,
    ) -> Result<StreamRead, StreamStoreError> {
        Ok(self.read_now(stream, limits, after))
    }

    async fn end(
        &self,
        stream: &StreamKey,
        limits: &HistoryLimits,
    ) -> Result<StreamPosition, StreamStoreError> {
        Ok(self.with_stream(stream, limits, |stream, _| stream.position()))
    }

    async fn remove(&self, stream: &StreamKey) -> Result<(), StreamStoreError> {
        self.lock().map.remove(stream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::LossReason;

    fn limits(max_count: usize, max_age_secs: u64) -> HistoryLimits {
        HistoryLimits::new(max_count, Duration::from_secs(max_age_secs))
    }

    fn frame(n: u64) -> Bytes {
        Bytes::from(n.to_le_bytes().to_vec())
    }

    fn offsets(read: &StreamRead) -> Vec<u64> {
        read.entries.iter().map(|entry| entry.offset).collect()
    }

    fn loss(read: &StreamRead) -> Option<(LossReason, u64, u64, u64)> {
        read.loss
            .map(|loss| (loss.reason, loss.lost_from, loss.lost_to, loss.next))
    }

    async fn append_n(
        store: &MemoryStreamStore,
        key: &StreamKey,
        limits: &HistoryLimits,
        n: u64,
    ) -> StreamPosition {
        let mut last = None;
        for i in 0..n {
            last = Some(store.append(key, limits, frame(i)).await.unwrap());
        }
        last.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn offsets_are_dense_per_stream_with_their_own_epochs() {
        let store = MemoryStreamStore::new();
        let limits = HistoryLimits::default();
        let (a, b) = (StreamKey::room("a"), StreamKey::session("k"));
        let a1 = store.append(&a, &limits, frame(1)).await.unwrap();
        let b1 = store.append(&b, &limits, frame(1)).await.unwrap();
        let a2 = store.append(&a, &limits, frame(2)).await.unwrap();
        assert_eq!((a1.offset, a2.offset, b1.offset), (1, 2, 1));
        assert_eq!(a1.epoch, a2.epoch);
        assert_ne!(a1.epoch, b1.epoch);
        assert_ne!(a1.epoch, 0);
        let read = store.read(&a, &limits, None).await.unwrap();
        assert_eq!(offsets(&read), vec![1, 2]);
        assert_eq!(read.entries[1].frame, frame(2));
        assert_eq!((read.epoch, read.end, read.loss), (a1.epoch, 2, None));
    }

    #[tokio::test(start_paused = true)]
    async fn trimmed_by_count() {
        let store = MemoryStreamStore::new();
        let limits = limits(3, 3600);
        let room = StreamKey::room("r");
        let first = store.append(&room, &limits, frame(0)).await.unwrap();
        append_n(&store, &room, &limits, 5).await;
        // Retained: 4, 5, 6. The client has 1: 2 and 3 are lost.
        let read = store.read(&room, &limits, Some(first)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::Trimmed, 2, 3, 4)));
        assert_eq!(offsets(&read), vec![4, 5, 6]);
        // The client has 3: nothing lost.
        let at3 = StreamPosition::new(first.epoch, 3);
        let read = store.read(&room, &limits, Some(at3)).await.unwrap();
        assert_eq!((loss(&read), offsets(&read)), (None, vec![4, 5, 6]));
    }

    #[tokio::test(start_paused = true)]
    async fn trimmed_by_age() {
        let store = MemoryStreamStore::new();
        let limits = limits(100, 60);
        let room = StreamKey::room("r");
        let first = append_n(&store, &room, &limits, 2).await;
        tokio::time::advance(Duration::from_secs(30)).await;
        append_n(&store, &room, &limits, 2).await;
        tokio::time::advance(Duration::from_secs(29)).await;
        let start = StreamPosition::new(first.epoch, 0);
        assert_eq!(
            offsets(&store.read(&room, &limits, Some(start)).await.unwrap()),
            vec![1, 2, 3, 4]
        );
        // 60 s after the first two: they are gone.
        tokio::time::advance(Duration::from_secs(1)).await;
        let read = store.read(&room, &limits, Some(start)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::Trimmed, 1, 2, 3)));
        assert_eq!(offsets(&read), vec![3, 4]);
        // And the last two 30 s later: the stream keeps its epoch and end.
        tokio::time::advance(Duration::from_secs(30)).await;
        let read = store.read(&room, &limits, Some(start)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::Trimmed, 1, 4, 5)));
        assert!(read.entries.is_empty());
        assert_eq!(read.epoch, first.epoch);
        let next = store.append(&room, &limits, frame(5)).await.unwrap();
        assert_eq!(next, StreamPosition::new(first.epoch, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_history_at_all_still_numbers_signals() {
        let store = MemoryStreamStore::new();
        let limits = limits(0, 60);
        let room = StreamKey::room("r");
        let at = append_n(&store, &room, &limits, 3).await;
        assert_eq!(at.offset, 3);
        let read = store
            .read(&room, &limits, Some(StreamPosition::new(at.epoch, 1)))
            .await
            .unwrap();
        assert_eq!(loss(&read), Some((LossReason::Trimmed, 2, 3, 4)));
    }

    #[tokio::test(start_paused = true)]
    async fn another_epoch_gets_everything_retained_after_a_loss() {
        let store = MemoryStreamStore::new();
        let limits = limits(2, 3600);
        let room = StreamKey::room("r");
        let end = append_n(&store, &room, &limits, 5).await;
        let stale = StreamPosition::new(end.epoch ^ 1, 3);
        let read = store.read(&room, &limits, Some(stale)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::EpochChanged, 0, 3, 4)));
        assert_eq!(offsets(&read), vec![4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_store_is_a_new_epoch() {
        // A restart: the same stream in a new store.
        let limits = HistoryLimits::default();
        let room = StreamKey::room("r");
        let before = append_n(&MemoryStreamStore::new(), &room, &limits, 4).await;
        let store = MemoryStreamStore::new();
        let read = store.read(&room, &limits, Some(before)).await.unwrap();
        assert_ne!(read.epoch, before.epoch);
        assert_eq!(loss(&read), Some((LossReason::EpochChanged, 0, 0, 1)));
        // The read made the stream: the next signal is 1 of that epoch, so
        // the client's new position (epoch, 0) continues without a gap.
        let next = store.append(&room, &limits, frame(1)).await.unwrap();
        assert_eq!(next, StreamPosition::new(read.epoch, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn ahead_of_the_end() {
        let store = MemoryStreamStore::new();
        let limits = HistoryLimits::default();
        let room = StreamKey::room("r");
        let end = append_n(&store, &room, &limits, 3).await;
        let ahead = StreamPosition::new(end.epoch, 7);
        let read = store.read(&room, &limits, Some(ahead)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::Ahead, 4, 7, 4)));
        assert!(read.entries.is_empty());
        // The client continues from 3: the next signal is 4.
        assert_eq!(
            store.append(&room, &limits, frame(4)).await.unwrap().offset,
            4
        );
    }

    #[tokio::test(start_paused = true)]
    async fn end_is_a_join_position() {
        let store = MemoryStreamStore::new();
        let limits = HistoryLimits::default();
        let room = StreamKey::room("r");
        let joined = store.end(&room, &limits).await.unwrap();
        assert_eq!(joined.offset, 0);
        append_n(&store, &room, &limits, 2).await;
        let read = store.read(&room, &limits, Some(joined)).await.unwrap();
        assert_eq!((loss(&read), offsets(&read)), (None, vec![1, 2]));
        let joined = store.end(&room, &limits).await.unwrap();
        assert_eq!(joined, StreamPosition::new(read.epoch, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn removed_streams_start_over_under_a_new_epoch() {
        let store = MemoryStreamStore::new();
        let limits = HistoryLimits::default();
        let session = StreamKey::session("k");
        let before = append_n(&store, &session, &limits, 2).await;
        store.remove(&session).await.unwrap();
        store.remove(&session).await.unwrap();
        assert!(store.is_empty());
        let after = store.append(&session, &limits, frame(0)).await.unwrap();
        assert_eq!(after.offset, 1);
        assert_ne!(after.epoch, before.epoch);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_empty_streams_are_removed_and_busy_ones_kept() {
        let store = MemoryStreamStore::new().with_idle_timeout(Duration::from_secs(600));
        let short = limits(10, 60);
        let long = limits(10, 7200);
        append_n(&store, &StreamKey::room("quiet"), &short, 1).await;
        append_n(&store, &StreamKey::room("kept"), &long, 1).await;
        store.end(&StreamKey::room("empty"), &short).await.unwrap();
        assert_eq!(store.len(), 3);
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(store.remove_expired(), 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        // "quiet" retains nothing after 60 s and was idle for 600 s; so was
        // "empty"; "kept" still holds a signal.
        assert_eq!(store.remove_expired(), 2);
        assert_eq!(store.len(), 1);
        // Operations sweep on their own.
        append_n(&store, &StreamKey::room("other"), &short, 1).await;
        tokio::time::advance(Duration::from_secs(7200)).await;
        store.end(&StreamKey::room("new"), &short).await.unwrap();
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn debug_shows_no_session_key() {
        let store = MemoryStreamStore::new();
        append_n(
            &store,
            &StreamKey::session("secret"),
            &HistoryLimits::default(),
            1,
        )
        .await;
        assert!(!format!("{store:?}").contains("secret"));
    }

    mod model {
        //! Random appends, reads and waits on one stream against a model
        //! of what was appended when: every read of a client that applies
        //! it gets dense offsets with no duplicate, and a loss exactly
        //! where signals expired or were pushed out.

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append,
            Wait(u64),
            /// A reader catches up (0..3: one of three readers).
            Read(usize),
            /// The store is lost (a restart): a new store.
            Restart,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => Just(Op::Append),
                2 => (1u64..40).prop_map(Op::Wait),
                4 => (0usize..3).prop_map(Op::Read),
                1 => Just(Op::Restart),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn readers_see_dense_offsets_and_exact_losses(
                ops in proptest::collection::vec(op(), 1..120),
                max_count in 0usize..6,
                max_age in 1u64..100,
            ) {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                runtime.block_on(run(ops, HistoryLimits::new(max_count, Duration::from_secs(max_age))))?;
            }
        }

        /// What a client holds of the stream: its position.
        #[derive(Default)]
        struct Reader {
            at: Option<StreamPosition>,
        }

        async fn run(ops: Vec<Op>, limits: HistoryLimits) -> Result<(), TestCaseError> {
            let room = StreamKey::room("r");
            let mut store = MemoryStreamStore::new();
            // The model: append times of the current epoch's signals (offset i+1).
            let mut appended: Vec<Instant> = Vec::new();
            let mut epoch = store.end(&room, &limits).await.unwrap().epoch;
            let mut readers: Vec<Reader> = (0..3).map(|_| Reader::default()).collect();
            for op in ops {
                match op {
                    Op::Append => {
                        let at = store
                            .append(&room, &limits, frame(appended.len() as u64 + 1))
                            .await
                            .unwrap();
                        appended.push(Instant::now());
                        prop_assert_eq!(at, StreamPosition::new(epoch, appended.len() as u64));
                    }
                    Op::Wait(secs) => tokio::time::advance(Duration::from_secs(secs)).await,
                    Op::Restart => {
                        store = MemoryStreamStore::new();
                        appended.clear();
                        let new_epoch = store.end(&room, &limits).await.unwrap().epoch;
                        prop_assert_ne!(new_epoch, epoch);
                        epoch = new_epoch;
                    }
                    Op::Read(i) => {
                        let reader = &mut readers[i];
                        let read = store.read(&room, &limits, reader.at).await.unwrap();
                        let end = appended.len() as u64;
                        prop_assert_eq!((read.epoch, read.end), (epoch, end));
                        let now = Instant::now();
                        // The model's first retained offset.
                        let oldest_by_count = end.saturating_sub(limits.max_count as u64) + 1;
                        let first = (oldest_by_count..=end)
                            .find(|&offset| {
                                now.duration_since(appended[offset as usize - 1]) < limits.max_age
                            })
                            .unwrap_or(end + 1);
                        let expected_loss = match reader.at {
                            None => None,
                            Some(at) if at.epoch != epoch => {
                                Some((LossReason::EpochChanged, 0, first - 1, first))
                            }
                            Some(at) if at.offset + 1 < first => {
                                Some((LossReason::Trimmed, at.offset + 1, first - 1, first))
                            }
                            Some(at) => {
                                prop_assert!(
                                    at.offset <= end,
                                    "a reader of this store is never ahead"
                                );
                                None
                            }
                        };
                        prop_assert_eq!(loss(&read), expected_loss);
                        // Apply it as the client does.
                        let mut last = match (reader.at, read.loss) {
                            (_, Some(loss)) => loss.next - 1,
                            (Some(at), None) => at.offset,
                            (None, None) => first - 1,
                        };
                        for entry in &read.entries {
                            prop_assert_eq!(entry.offset, last + 1, "dense, no duplicate");
                            prop_assert_eq!(&entry.frame, &frame(entry.offset));
                            last = entry.offset;
                        }
                        prop_assert_eq!(last, end, "caught up to the end");
                        reader.at = Some(StreamPosition::new(epoch, last));
                    }
                }
            }
            Ok(())
        }
    }
}
