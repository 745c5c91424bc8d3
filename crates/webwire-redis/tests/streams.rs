//! `RedisStreamStore` against a real redis-server: the behaviour of the
//! in-memory store (dense offsets, trims by count and age, the losses),
//! and what only Redis has: two stores (nodes) sharing one stream, a Redis
//! restarted empty, the publication of each entry, expiries, a paused
//! Redis.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use webwire_core::stream::{
    HistoryLimits, LossReason, StreamKey, StreamPosition, StreamRead, StreamStore,
};
use webwire_redis::redis::{self, AsyncCommands as _};
use webwire_redis::{RedisSessionError, RedisStoreConfig, RedisStreamStore, StreamPublication};

const OP_TIMEOUT: Duration = Duration::from_millis(500);

fn config() -> RedisStoreConfig {
    RedisStoreConfig::new()
        .with_prefix("t:")
        .with_op_timeout(OP_TIMEOUT)
}

async fn store(server: &common::RedisServer) -> RedisStreamStore {
    RedisStreamStore::connect(&server.url(), config())
        .await
        .unwrap()
}

fn limits(max_count: usize, max_age: Duration) -> HistoryLimits {
    HistoryLimits::new(max_count, max_age)
}

const HOUR: Duration = Duration::from_secs(3600);

/// A frame that says its number, with bytes Lua must keep as they are.
fn frame(n: u64) -> Bytes {
    let mut frame = vec![63, 0, 0xff, b'\n'];
    frame.extend_from_slice(&n.to_le_bytes());
    Bytes::from(frame)
}

fn offsets(read: &StreamRead) -> Vec<u64> {
    read.entries.iter().map(|entry| entry.offset).collect()
}

fn loss(read: &StreamRead) -> Option<(LossReason, u64, u64, u64)> {
    read.loss
        .map(|loss| (loss.reason, loss.lost_from, loss.lost_to, loss.next))
}

async fn append_n(
    store: &RedisStreamStore,
    key: &StreamKey,
    limits: &HistoryLimits,
    n: u64,
) -> StreamPosition {
    let mut last = None;
    for i in 1..=n {
        last = Some(store.append(key, limits, frame(i)).await.unwrap());
    }
    last.unwrap()
}

#[tokio::test]
async fn offsets_trims_and_losses_as_in_memory() {
    let server = redis_or_skip!();
    let store = store(&server).await;
    let all = HistoryLimits::default();

    // Dense offsets per stream, each with its own epoch; frames kept
    // byte for byte.
    let (a, b) = (StreamKey::room("a:h"), StreamKey::session("k"));
    let joined = store.end(&a, &all).await.unwrap();
    assert_eq!(joined.offset, 0);
    let a1 = store.append(&a, &all, frame(1)).await.unwrap();
    let b1 = store.append(&b, &all, frame(1)).await.unwrap();
    let a2 = store.append(&a, &all, frame(2)).await.unwrap();
    assert_eq!((a1.offset, a2.offset, b1.offset), (1, 2, 1));
    assert_eq!((a1.epoch, a2.epoch), (joined.epoch, joined.epoch));
    assert_ne!(a1.epoch, b1.epoch);
    let read = store.read(&a, &all, None).await.unwrap();
    assert_eq!((read.epoch, read.end, read.loss), (a1.epoch, 2, None));
    assert_eq!(offsets(&read), vec![1, 2]);
    assert_eq!(read.entries[1].frame, frame(2));
    // From the join position: everything since.
    let read = store.read(&a, &all, Some(joined)).await.unwrap();
    assert_eq!((loss(&read), offsets(&read)), (None, vec![1, 2]));
    assert_eq!(store.end(&a, &all).await.unwrap(), a2);
    // Caught up: nothing.
    let read = store.read(&a, &all, Some(a2)).await.unwrap();
    assert!(read.entries.is_empty() && read.loss.is_none());

    // Trimmed by count: 3 kept of 6.
    let room = StreamKey::room("counted");
    let three = limits(3, HOUR);
    let first = store.append(&room, &three, frame(1)).await.unwrap();
    append_n(&store, &room, &three, 5).await;
    let read = store.read(&room, &three, Some(first)).await.unwrap();
    assert_eq!(loss(&read), Some((LossReason::Trimmed, 2, 3, 4)));
    assert_eq!(offsets(&read), vec![4, 5, 6]);
    let at3 = StreamPosition::new(first.epoch, 3);
    let read = store.read(&room, &three, Some(at3)).await.unwrap();
    assert_eq!((loss(&read), offsets(&read)), (None, vec![4, 5, 6]));
    let at5 = StreamPosition::new(first.epoch, 5);
    assert_eq!(
        offsets(&store.read(&room, &three, Some(at5)).await.unwrap()),
        vec![6]
    );

    // "Unlimited" counts work.
    let unlimited = limits(usize::MAX, Duration::MAX);
    let at = append_n(&store, &StreamKey::room("unlimited"), &unlimited, 2).await;
    assert_eq!(at.offset, 2);

    // No history at all still numbers signals.
    let none = limits(0, HOUR);
    let bare = StreamKey::room("bare");
    let at = append_n(&store, &bare, &none, 3).await;
    assert_eq!(at.offset, 3);
    let read = store
        .read(&bare, &none, Some(StreamPosition::new(at.epoch, 1)))
        .await
        .unwrap();
    assert_eq!(loss(&read), Some((LossReason::Trimmed, 2, 3, 4)));

    // Another epoch: everything retained after the loss.
    let two = limits(2, HOUR);
    let epochs = StreamKey::room("epochs");
    let end = append_n(&store, &epochs, &two, 5).await;
    let stale = StreamPosition::new(end.epoch ^ 1, 3);
    let read = store.read(&epochs, &two, Some(stale)).await.unwrap();
    assert_eq!(loss(&read), Some((LossReason::EpochChanged, 0, 3, 4)));
    assert_eq!(offsets(&read), vec![4, 5]);

    // Ahead of the end (a lost tail), and huge offsets.
    for claimed in [7, u64::MAX] {
        let ahead = StreamPosition::new(end.epoch, claimed);
        let read = store.read(&epochs, &two, Some(ahead)).await.unwrap();
        assert_eq!(loss(&read), Some((LossReason::Ahead, 6, claimed, 6)));
        assert!(read.entries.is_empty());
    }
    assert_eq!(
        store.append(&epochs, &two, frame(6)).await.unwrap().offset,
        6
    );
}

#[tokio::test]
async fn trimmed_by_age_by_redis_clock() {
    let server = redis_or_skip!();
    let store = store(&server).await;
    let short = limits(100, Duration::from_millis(400));
    let room = StreamKey::room("aged");
    let first = append_n(&store, &room, &short, 2).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    append_n(&store, &room, &short, 2).await;
    let start = StreamPosition::new(first.epoch, 0);
    let read = store.read(&room, &short, Some(start)).await.unwrap();
    // Unless the machine stalled for 150 ms, all four are there.
    if read.loss.is_none() {
        assert_eq!(offsets(&read), vec![1, 2, 3, 4]);
    }
    // The first two are older than 400 ms, the last two not yet (they
    // are 200 ms old, give or take).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = store.read(&room, &short, Some(start)).await.unwrap();
    let (reason, from, to, next) = loss(&read).expect("the oldest expired");
    assert_eq!((reason, from), (LossReason::Trimmed, 1));
    assert!(to >= 2, "{to}");
    assert_eq!(read.entries.first().map_or(5, |e| e.offset), next);
    // All gone: the stream keeps its epoch and end, and the entries key
    // is deleted.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let read = store.read(&room, &short, Some(start)).await.unwrap();
    assert_eq!(loss(&read), Some((LossReason::Trimmed, 1, 4, 5)));
    assert_eq!(read.epoch, first.epoch);
    let mut raw = server.raw().await;
    assert!(!raw.exists::<_, bool>("t:stream:h:r:aged").await.unwrap());
    let next = store.append(&room, &short, frame(5)).await.unwrap();
    assert_eq!(next, StreamPosition::new(first.epoch, 5));
}

#[tokio::test]
async fn keys_expire_and_remove_deletes_them() {
    let server = redis_or_skip!();
    let config = config().with_stream_idle_timeout(Duration::from_secs(600));
    let store = RedisStreamStore::connect(&server.url(), config)
        .await
        .unwrap();
    let mut raw = server.raw().await;
    let session = StreamKey::session("secret-session-key");
    let (meta, hist) = store.redis_keys(&session).unwrap();
    assert_eq!(meta, "t:stream:m:s:secret-session-key");
    let before = append_n(&store, &session, &limits(10, Duration::from_secs(60)), 2).await;
    let meta_ttl: i64 = raw.pttl(&meta).await.unwrap();
    let hist_ttl: i64 = raw.pttl(&hist).await.unwrap();
    assert!((599_000..=600_000).contains(&meta_ttl), "{meta_ttl}");
    assert!((59_000..=60_000).contains(&hist_ttl), "{hist_ttl}");
    // An age bound above the idle timeout: the hash outlives the entries.
    append_n(&store, &session, &limits(10, Duration::from_secs(900)), 1).await;
    let meta_ttl: i64 = raw.pttl(&meta).await.unwrap();
    assert!(meta_ttl > 899_000, "{meta_ttl}");

    store.remove(&session).await.unwrap();
    store.remove(&session).await.unwrap();
    let left: Vec<String> = raw.keys("t:stream:*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let after = store
        .append(&session, &HistoryLimits::default(), frame(1))
        .await
        .unwrap();
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.epoch);
    assert!(!format!("{store:?}").contains("secret"));
}

#[tokio::test]
async fn two_nodes_share_numbering_and_a_restart_is_a_new_epoch() {
    let mut server = redis_or_skip!();
    let (a, b) = (store(&server).await, store(&server).await);
    let limits = HistoryLimits::default();
    let room = StreamKey::room("shared");
    // Concurrent appends from both nodes: every offset given once.
    let tasks = (0..40u64)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            let room = room.clone();
            tokio::spawn(async move { node.append(&room, &limits, frame(i)).await.unwrap() })
        })
        .collect::<Vec<_>>();
    let mut given = Vec::new();
    for task in tasks {
        given.push(task.await.unwrap());
    }
    let epoch = given[0].epoch;
    assert!(given.iter().all(|at| at.epoch == epoch));
    let mut numbers: Vec<u64> = given.iter().map(|at| at.offset).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    let read = b.read(&room, &limits, None).await.unwrap();
    assert_eq!(offsets(&read), (1..=40).collect::<Vec<_>>());

    // Redis restarted empty: a new epoch, the loss of unknown extent, and
    // numbering from 1 so the client's new position continues.
    server.restart();
    let held = StreamPosition::new(epoch, 40);
    let read = wait_for(|| a.read(&room, &limits, Some(held))).await;
    assert_ne!(read.epoch, epoch);
    assert_eq!(loss(&read), Some((LossReason::EpochChanged, 0, 0, 1)));
    let next = b.append(&room, &limits, frame(1)).await.unwrap();
    assert_eq!(next, StreamPosition::new(read.epoch, 1));
}

/// Retries `call` until Redis answers again (after a restart).
async fn wait_for<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    mut call: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(err) => assert!(
                Instant::now() < deadline,
                "Redis did not come back: {err:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_append_is_published_with_its_position() {
    let server = redis_or_skip!();
    let store = store(&server).await;
    assert_eq!(store.channel(), "t:stream:signals");
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut sub = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    sub.subscribe(store.channel()).await.unwrap();
    let limits = HistoryLimits::default();
    let room = StreamKey::room("ünïcode");
    let session = StreamKey::session("key");
    let r1 = store.append(&room, &limits, frame(1)).await.unwrap();
    let s1 = store.append(&session, &limits, frame(7)).await.unwrap();
    let r2 = store.append(&room, &limits, frame(2)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let push = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a publication in time")
            .unwrap();
        if push.kind != redis::PushKind::Message {
            continue;
        }
        let Some(redis::Value::BulkString(data)) = push.data.into_iter().nth(1) else {
            panic!("a message without data");
        };
        got.push(StreamPublication::decode(Bytes::from(data)).unwrap());
    }
    let expected = [(room.clone(), r1, 1), (session, s1, 7), (room, r2, 2)];
    for (publication, (stream, at, n)) in got.iter().zip(expected) {
        assert_eq!(publication.stream, stream);
        assert_eq!(publication.origin, store.origin());
        assert_eq!(publication.position, at);
        assert_eq!(publication.frame, frame(n));
    }
}

#[tokio::test]
async fn a_subscription_gets_the_other_nodes_appends_in_order() {
    let server = redis_or_skip!();
    let (a, b) = (store(&server).await, store(&server).await);
    assert_ne!(a.origin(), b.origin());
    let mut from_others = b.subscribe().await.unwrap();
    let limits = HistoryLimits::default();
    let room = StreamKey::room("lobby");
    let a1 = a.append(&room, &limits, frame(1)).await.unwrap();
    // B's own append: B delivered it where it was made.
    b.append(&room, &limits, frame(2)).await.unwrap();
    let a3 = a.append(&room, &limits, frame(3)).await.unwrap();
    for (at, n) in [(a1, 1), (a3, 3)] {
        let entry = tokio::time::timeout(Duration::from_secs(5), from_others.next())
            .await
            .expect("a publication in time")
            .unwrap();
        assert_eq!((entry.stream.clone(), entry.position), (room.clone(), at));
        assert_eq!((entry.origin, entry.frame), (a.origin(), frame(n)));
    }
}

#[tokio::test]
async fn a_paused_redis_fails_calls_in_time() {
    let server = redis_or_skip!();
    let store = store(&server).await;
    let room = StreamKey::room("r");
    let limits = HistoryLimits::default();
    store.append(&room, &limits, frame(1)).await.unwrap();
    server.pause();
    let started = Instant::now();
    let err = store.append(&room, &limits, frame(2)).await.unwrap_err();
    let elapsed = started.elapsed();
    server.resume();
    assert!(elapsed < OP_TIMEOUT + Duration::from_secs(2), "{elapsed:?}");
    assert!(err.to_string().contains("appending to room r"), "{err}");
    let source = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<RedisSessionError>());
    // The operation timeout, or the connection's response timeout (the
    // same length) that fires first.
    assert!(
        matches!(
            source,
            Some(RedisSessionError::Timeout(_) | RedisSessionError::Redis(_))
        ),
        "{source:?}"
    );
    // The late append was applied when Redis resumed (the caller was told
    // it failed: the server did not deliver it; a resume will). The store
    // works again.
    let at = wait_for(|| store.append(&room, &limits, frame(3))).await;
    assert!(at.offset >= 2);
}

#[tokio::test]
async fn invalid_names_never_reach_redis() {
    // Nothing listens on port 1.
    let client = redis::Client::open("redis://127.0.0.1:1/?protocol=resp3").unwrap();
    let con = redis::aio::ConnectionManager::new_lazy_with_config(
        client,
        redis::aio::ConnectionManagerConfig::new(),
    )
    .unwrap();
    let store = RedisStreamStore::from_connection_manager(con, config()).unwrap();
    assert!(matches!(
        store.subscribe().await,
        Err(RedisSessionError::Config(_))
    ));
    let err = store
        .append(&StreamKey::room(""), &HistoryLimits::default(), frame(1))
        .await
        .unwrap_err();
    let source = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<RedisSessionError>());
    assert!(
        matches!(source, Some(RedisSessionError::InvalidName(_))),
        "{source:?}"
    );
}

/// A deterministic mix of appends and reads on two streams against a
/// model: offsets dense, no duplicate, every loss where the count bound
/// pushed signals out, each reader caught up after every read.
#[tokio::test]
async fn readers_stay_dense_against_a_model() {
    let server = redis_or_skip!();
    let (a, b) = (store(&server).await, store(&server).await);
    let limits = limits(4, HOUR);
    let room = StreamKey::room("model");
    let mut end = 0u64;
    let mut readers: [Option<StreamPosition>; 3] = [None; 3];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for step in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let node = if step % 3 == 0 { &a } else { &b };
        if seed % 5 < 3 {
            end += 1;
            let at = node.append(&room, &limits, frame(end)).await.unwrap();
            assert_eq!(at.offset, end);
            continue;
        }
        let reader = &mut readers[(seed % 3) as usize];
        let read = node.read(&room, &limits, *reader).await.unwrap();
        assert_eq!(read.end, end);
        let first = end.saturating_sub(4) + 1;
        let expected = match *reader {
            Some(at) if at.offset + 1 < first => {
                Some((LossReason::Trimmed, at.offset + 1, first - 1, first))
            }
            _ => None,
        };
        assert_eq!(loss(&read), expected, "step {step}");
        let mut last = match (*reader, read.loss) {
            (_, Some(loss)) => loss.next - 1,
            (Some(at), None) => at.offset,
            (None, None) => first - 1,
        };
        for entry in &read.entries {
            assert_eq!(entry.offset, last + 1, "dense, no duplicate");
            assert_eq!(entry.frame, frame(entry.offset));
            last = entry.offset;
        }
        assert_eq!(last, end);
        *reader = Some(StreamPosition::new(read.epoch, last));
    }
}
