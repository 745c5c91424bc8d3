//! The load run: its timeline and the loop each connection runs.
//!
//! All connections are opened first; then, at one common instant, each
//! sends its `inflight` requests and answers every reply with a new request
//! (a closed loop). One task per connection owns the WebSocket: it waits
//! for a message, takes every further message that is already there, judges
//! them all with one timestamp, queues one new request per answer and
//! flushes once. Replies are counted and their latency recorded while
//! measuring (after the warm-up); when the measured time is over no new
//! requests go out and the task waits up to the grace period for the
//! outstanding ones.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_websockets::Message;
use webwire_proto::{AcceptConf, ClientMessage};

use crate::client::{OpenOptions, Target, Ws};
use crate::report::{seconds, CpuUsage, ErrorCounts, Latency, Report};
use crate::v21::{self, Extra};
use crate::wire::{Incoming, Outcome, Wire};
use crate::{sys, LoadConfig, LoadError, Mode};

/// Handshakes in progress at once while opening the connections.
const OPEN_CONCURRENCY: usize = 32;
/// Time between the last connection opening and the common start, so that
/// every task is waiting when it comes.
const START_DELAY: Duration = Duration::from_millis(20);
/// The most messages judged in one batch before answering them.
const MAX_BATCH: usize = 256;
/// Latencies are recorded in nanoseconds up to this (longer ones as this).
const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// A connection's counters start at `index << COUNTER_BITS`, which keeps
/// them unique within the run.
const COUNTER_BITS: u32 = 40;

/// Runs a request or signal load against a server and reports what it
/// measured.
///
/// Fails only when the run cannot take place (bad configuration, a
/// connection that does not open, a server that sends no AcceptConf);
/// what goes wrong during the run is counted in the [`Report`].
///
/// ```no_run
/// use webwire_load::LoadConfig;
///
/// # async fn example() -> Result<(), webwire_load::LoadError> {
/// let mut config = LoadConfig::new("ws://127.0.0.1:9090/");
/// config.conns = 64;
/// config.inflight = 16;
/// let report = webwire_load::run(&config).await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
pub async fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    let target = Target::resolve(&config.url).await?;
    let options = OpenOptions {
        raw_echo: config.raw_echo,
        accept_timeout: config.accept_timeout,
    };
    let opened = target
        .open_many(config.conns, OPEN_CONCURRENCY, options)
        .await?;
    // The 2.1 modes opt in, log in (and join a room) before the common
    // start; the 2.0 modes have nothing to set up.
    let opened =
        v21::set_up_all(opened, config.mode, OPEN_CONCURRENCY, config.accept_timeout).await?;
    let wire = Arc::new(Wire::new(config));
    for conf in opened.iter().filter_map(|(_, conf, _)| conf.as_ref()) {
        let max = conf.buffer_size as usize;
        if wire.encoded_len() > max {
            return Err(LoadError::MessageTooLarge {
                len: wire.encoded_len(),
                max,
            });
        }
    }

    let start = Instant::now() + START_DELAY;
    let timeline = Timeline {
        start,
        measure_from: start + config.warmup,
        measure_until: start + config.warmup + config.duration,
        grace_until: start + config.warmup + config.duration + config.grace,
    };
    let tasks: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(index, (ws, conf, extra))| {
            let connection =
                Connection::new(ws, conf.as_ref(), extra, index, config, &wire, timeline);
            tokio::spawn(connection.drive())
        })
        .collect();

    let server_cpu = match config.server_pid {
        Some(pid) => {
            tokio::time::sleep_until(timeline.measure_from).await;
            let before = sys::cpu_time(pid)?;
            tokio::time::sleep_until(timeline.measure_until).await;
            Some((pid, sys::cpu_time(pid)?.saturating_sub(before)))
        }
        None => None,
    };

    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.add(&tally),
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    let per_second = total.completed as f64 / seconds(config.duration);
    Ok(Report {
        mode: config.mode,
        url: config.url.clone(),
        conns: config.conns,
        inflight: config.inflight,
        size: config.size,
        seconds: seconds(config.duration),
        completed: total.completed,
        per_second,
        sent: total.sent,
        latency: Latency::from_histogram(&total.latency),
        errors: total.errors,
        mismatches: total.mismatches,
        unanswered: total.unanswered,
        server_cpu: server_cpu.map(|(pid, cpu)| CpuUsage {
            pid,
            seconds: seconds(cpu),
            us_per_op: if total.completed == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / total.completed as f64
            },
        }),
    })
}

/// When things happen, the same for every connection.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// Every connection sends its first requests.
    start: Instant,
    /// Answers from here on are counted.
    measure_from: Instant,
    /// No new requests from here on.
    measure_until: Instant,
    /// Outstanding requests are unanswered from here on.
    grace_until: Instant,
}

/// What one connection counted.
#[derive(Debug)]
struct Tally {
    completed: u64,
    sent: u64,
    latency: Histogram<u64>,
    errors: ErrorCounts,
    mismatches: u64,
    unanswered: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            completed: 0,
            sent: 0,
            // Three significant digits; the bounds are constants that
            // hdrhistogram accepts.
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .unwrap_or_else(|e| unreachable!("histogram bounds: {e}")),
            errors: ErrorCounts::default(),
            mismatches: 0,
            unanswered: 0,
        }
    }

    fn add(&mut self, other: &Self) {
        self.completed += other.completed;
        self.sent += other.sent;
        // Same bounds on both sides: adding cannot run out of range.
        if let Err(e) = self.latency.add(&other.latency) {
            tracing::warn!("merging latency histograms: {e}");
        }
        self.errors.add(&other.errors);
        self.mismatches += other.mismatches;
        self.unanswered += other.unanswered;
    }
}

/// One connection's state during the run.
struct Connection {
    ws: Ws,
    wire: Arc<Wire>,
    timeline: Timeline,
    mode: Mode,
    inflight: usize,
    /// The next counter (request id, or ping number).
    next_counter: u64,
    /// Outstanding requests by counter, with the time they were sent.
    pending: HashMap<u64, Instant, BuildHasherDefault<CounterHasher>>,
    /// 3/4 of the server's read timeout, `None` for a raw echo server.
    heartbeat: Option<Duration>,
    last_send: Instant,
    tally: Tally,
    /// What the 2.1 modes keep per connection.
    v21: V21State,
}

/// Per-connection state of the 2.1 modes.
enum V21State {
    /// A 2.0 mode.
    None,
    /// Mode `keyed`: seq = counter - base + 1; `low` is the lowest counter
    /// that may still be outstanding (the cumulative ack is below it).
    Keyed { epoch: u64, base: u64, low: u64 },
    /// Mode `hist`: the room, and the last (epoch, offset) of its stream
    /// seen on this connection.
    Hist {
        room: Bytes,
        position: Option<(u64, u64)>,
    },
}

/// What became of the messages taken in one batch.
enum Taken {
    /// The connection goes on.
    Open,
    /// The connection is over (closed, failed).
    Ended,
}

impl Connection {
    fn new(
        ws: Ws,
        conf: Option<&AcceptConf>,
        extra: Extra,
        index: usize,
        config: &LoadConfig,
        wire: &Arc<Wire>,
        timeline: Timeline,
    ) -> Self {
        Self {
            ws,
            wire: Arc::clone(wire),
            timeline,
            mode: config.mode,
            inflight: config.inflight,
            next_counter: (index as u64) << COUNTER_BITS,
            v21: match extra {
                Extra::None => V21State::None,
                Extra::Keyed { ledger_epoch } => V21State::Keyed {
                    epoch: ledger_epoch,
                    base: (index as u64) << COUNTER_BITS,
                    low: (index as u64) << COUNTER_BITS,
                },
                Extra::Hist { room } => V21State::Hist {
                    room,
                    position: None,
                },
            },
            pending: HashMap::with_capacity_and_hasher(config.inflight, Default::default()),
            heartbeat: conf.map(|conf| conf.read_timeout() * 3 / 4),
            last_send: timeline.start,
            tally: Tally::new(),
        }
    }

    async fn drive(mut self) -> Tally {
        tokio::time::sleep_until(self.timeline.start).await;
        let mut sending = true;
        let now = Instant::now();
        if self.send_new(self.inflight, now).await.is_err() {
            return self.finish(true);
        }
        let timer = tokio::time::sleep_until(self.next_wake(sending));
        tokio::pin!(timer);
        let mut batch: Vec<Bytes> = Vec::with_capacity(self.inflight.min(MAX_BATCH));
        loop {
            let first = tokio::select! {
                biased;
                m = self.ws.next() => m,
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= self.timeline.measure_until {
                        sending = false;
                    }
                    if !sending && (self.pending.is_empty() || now >= self.timeline.grace_until) {
                        return self.finish(false);
                    }
                    if self.heartbeat_due(now) && self.send_heartbeat(now).await.is_err() {
                        return self.finish(true);
                    }
                    timer.as_mut().reset(self.next_wake(sending));
                    continue;
                }
            };
            let mut state = self.take(first, &mut batch);
            while matches!(state, Taken::Open) && batch.len() < MAX_BATCH {
                match self.ws.next().now_or_never() {
                    Some(m) => state = self.take(m, &mut batch),
                    None => break,
                }
            }

            let now = Instant::now();
            let measuring = now >= self.timeline.measure_from && now < self.timeline.measure_until;
            if now >= self.timeline.measure_until {
                sending = false;
            }
            let mut answered = 0;
            for frame in batch.drain(..) {
                answered += usize::from(self.handle(frame, now, measuring));
            }
            if matches!(state, Taken::Ended) {
                return self.finish(true);
            }
            if sending && answered > 0 && self.send_new(answered, now).await.is_err() {
                return self.finish(true);
            }
            if !sending && self.pending.is_empty() {
                return self.finish(false);
            }
        }
    }

    /// Sorts one item of the WebSocket stream: binary messages into
    /// `batch`, the rest counted or ignored.
    fn take(
        &mut self,
        item: Option<Result<Message, tokio_websockets::Error>>,
        batch: &mut Vec<Bytes>,
    ) -> Taken {
        match item {
            Some(Ok(message)) if message.is_binary() => {
                batch.push(Bytes::from(message.into_payload()));
                Taken::Open
            }
            Some(Ok(message)) if message.is_text() => {
                self.tally.errors.protocol += 1;
                Taken::Open
            }
            // Pings are answered by the library; a close is answered too,
            // and the stream ends right after it.
            Some(Ok(_control)) => Taken::Open,
            Some(Err(tokio_websockets::Error::Io(e))) => {
                tracing::debug!("connection failed: {e}");
                Taken::Ended
            }
            Some(Err(e)) => {
                // A WebSocket protocol violation or an oversized message:
                // the library closes the connection, and the stream ends.
                tracing::debug!("WebSocket error: {e}");
                self.tally.errors.protocol += 1;
                Taken::Open
            }
            None => Taken::Ended,
        }
    }

    /// Judges one message; true when it answered an outstanding request.
    fn handle(&mut self, frame: Bytes, now: Instant, measuring: bool) -> bool {
        let tally = &mut self.tally;
        let (key, outcome) = match self.wire.judge(frame) {
            Incoming::Answer { key, outcome } => (key, outcome),
            Incoming::Stream {
                epoch,
                offset,
                key,
                outcome,
            } => {
                if let V21State::Hist { position, .. } = &mut self.v21 {
                    // Each room-pong must follow the previous one in the
                    // room's stream: anything else is a signal missing
                    // or delivered twice.
                    if position.is_some_and(|(e, last)| e != epoch || offset != last + 1) {
                        tally.errors.stream_gaps += 1;
                    }
                    *position = Some((epoch, offset));
                }
                match key {
                    Some(key) => (key, outcome),
                    None => {
                        tally.mismatches += 1;
                        return false;
                    }
                }
            }
            Incoming::StrayPong => {
                tally.mismatches += 1;
                return false;
            }
            Incoming::Protocol => {
                tally.errors.protocol += 1;
                return false;
            }
        };
        let Some(sent) = self.pending.remove(&key) else {
            match self.mode {
                // A reply to an id that is not outstanding.
                Mode::Request | Mode::Keyed => tally.errors.protocol += 1,
                // A pong whose payload names no outstanding ping.
                Mode::Signal | Mode::Hist => tally.mismatches += 1,
            }
            return false;
        };
        match outcome {
            Outcome::Ok => {
                if measuring {
                    tally.completed += 1;
                    let ns = u64::try_from((now - sent).as_nanos()).unwrap_or(u64::MAX);
                    tally.latency.saturating_record(ns.max(1));
                }
            }
            Outcome::Mismatch => tally.mismatches += 1,
            Outcome::ErrorReply => tally.errors.error_reply += 1,
            Outcome::InternalError => tally.errors.internal_error += 1,
            Outcome::Shutdown => tally.errors.shutdown += 1,
            Outcome::Unknown => tally.errors.outcome_unknown += 1,
            Outcome::Unexpected => tally.errors.protocol += 1,
        }
        true
    }

    /// Queues `n` new requests (or pings) and flushes once.
    async fn send_new(&mut self, n: usize, now: Instant) -> Result<(), tokio_websockets::Error> {
        for _ in 0..n {
            let counter = self.next_counter;
            self.next_counter += 1;
            let frame = match &mut self.v21 {
                V21State::None => self.wire.encode(counter),
                V21State::Keyed { epoch, base, low } => {
                    // The cumulative ack: every seq below the lowest one
                    // still outstanding has its answer.
                    while *low < counter && !self.pending.contains_key(low) {
                        *low += 1;
                    }
                    let seq = counter - *base + 1;
                    self.wire.encode_keyed(counter, seq, *epoch, *low - *base)
                }
                V21State::Hist { room, .. } => self.wire.encode_hist(counter, room),
            };
            self.ws.feed(Message::binary(frame)).await?;
            self.pending.insert(counter, now);
            self.tally.sent += 1;
        }
        self.ws.flush().await?;
        self.last_send = now;
        Ok(())
    }

    fn heartbeat_due(&self, now: Instant) -> bool {
        self.heartbeat
            .is_some_and(|interval| now >= self.last_send + interval)
    }

    async fn send_heartbeat(&mut self, now: Instant) -> Result<(), tokio_websockets::Error> {
        self.ws
            .send(Message::binary(ClientMessage::Heartbeat.to_bytes()))
            .await?;
        self.last_send = now;
        Ok(())
    }

    /// The next time the loop must act without a message: the end of the
    /// current phase, or a heartbeat.
    fn next_wake(&self, sending: bool) -> Instant {
        let phase_end = if sending {
            self.timeline.measure_until
        } else {
            self.timeline.grace_until
        };
        match self.heartbeat {
            Some(interval) => phase_end.min(self.last_send + interval),
            None => phase_end,
        }
    }

    fn finish(mut self, disconnected: bool) -> Tally {
        if disconnected {
            self.tally.errors.disconnected += 1;
        }
        self.tally.unanswered = self.pending.len() as u64;
        self.tally
    }
}

/// Hashes the counters of outstanding requests: one multiplication (they
/// are sequential, and not chosen by anybody hostile).
#[derive(Debug, Default)]
struct CounterHasher(u64);

impl Hasher for CounterHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
