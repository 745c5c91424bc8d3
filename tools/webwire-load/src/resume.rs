//! The resume benchmark ([`run_resume`]): how long until many webwire 2.1
//! sessions, whose connections the server dropped all at once, have all
//! reconnected, restored their session and received every signal of their
//! history room that they missed, once each and in order.
//!
//! Against the interop server (docs/interop.md): each session is a
//! connection that opts in to 2.1 (`STREAMS`), logs in and joins a history
//! room of its own (`load-INDEX`). Then:
//!
//! 1. **before**: sender connections `say` `before` signals into every room
//!    (payload `INDEX:K`, K from 1); every session receives them live.
//! 2. **drop**: the `close-all-connections` request closes every connection
//!    of the first node at once. The clock starts when it is sent.
//! 3. **during**: at once, new sender connections `say` `during` more
//!    signals into every room, while the sessions reconnect (to the
//!    resume URL: the same node, or another node sharing its Redis), each
//!    sending RequestRestoreSession and right behind it a StreamResume with
//!    its position (docs/protocol.md 14.5). Signals said before a session's
//!    resume come from history, later ones live.
//! 4. A session is **complete** when its resume was answered and it has
//!    delivered all `before + during` signals. The result is the time from
//!    the drop until the last session is complete.
//! 5. **settle**: the sessions keep reading for a while longer, so that a
//!    signal delivered twice after completion is still seen.
//!
//! Every delivered signal is checked: the signal `said`, the payload
//! `INDEX:K` for the next K (so nothing missing, doubled or out of order at
//! the application's level), and the stream rules of docs/protocol.md
//! 14.3.3 (an offset at or below the position is a duplicate, counted and
//! dropped; an offset beyond it is a gap, repaired by a StreamResume and
//! counted). StreamLoss, failed restores, mismatches and sessions not
//! complete at the timeout are counted, not hidden.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_websockets::Message;
use webwire_proto::{
    AcceptConf, ClientMessage, FeatureFlags, InstanceId, LossReason, Name, Payload, Request,
    RequestId, RoomName, ServerMessage, StreamId, StreamPosition, StreamResume, StreamSignal,
};

use crate::client::{OpenOptions, Target, Ws};
use crate::report::seconds;
use crate::v21::{self, Setup};
use crate::{sys, LoadError};

/// The signal the interop server's `say` sends on a room's stream.
const SAID: &str = "said";
/// The admin request that drops every connection of a node.
const CLOSE_ALL: &str = "close-all-connections";
/// Wait between two failed reconnection attempts of one session.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// A resume benchmark: see [`run_resume`].
///
/// ```
/// use webwire_load::ResumeConfig;
///
/// let mut config = ResumeConfig::new("ws://127.0.0.1:9090/");
/// config.sessions = 100;
/// assert_eq!((config.before, config.during), (1, 2));
/// config.validate()?;
/// # Ok::<(), webwire_load::LoadError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResumeConfig {
    /// The node the sessions first connect to, whose connections are
    /// dropped, and where the signals are said.
    pub url: String,
    /// The node the sessions reconnect to (default: `url`): another node
    /// sharing the first one's Redis for the two-node case.
    pub resume_url: Option<String>,
    /// Sessions, each one connection with a room of its own (default
    /// 10 000). The load generator needs one file descriptor per session.
    pub sessions: usize,
    /// Signals said into each room before the drop (default 1, so that
    /// every session has a position to resume from).
    pub before: u64,
    /// Signals said into each room from the drop on (default 2).
    pub during: u64,
    /// Set-ups, and reconnections (from the TCP connect to the resume's
    /// answer), in progress at once (default 256).
    pub concurrency: usize,
    /// Connections that say the signals (default 4).
    pub senders: usize,
    /// `say` requests outstanding per sender connection (default 64;
    /// fewer when a sender has fewer rooms, so that each room's signals
    /// are said in order).
    pub sender_inflight: usize,
    /// How long to wait for each phase (set-up, before, resume) before
    /// giving up (default 120 s).
    pub timeout: Duration,
    /// How long the sessions keep reading once all are complete, to catch
    /// late duplicates (default 1 s).
    pub settle: Duration,
    /// Server processes whose CPU time from the drop to the last
    /// completion is reported.
    pub server_pids: Vec<u32>,
    /// How long to wait for each AcceptConf and each set-up answer
    /// (default 10 s).
    pub accept_timeout: Duration,
}

impl ResumeConfig {
    /// The defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            resume_url: None,
            sessions: 10_000,
            before: 1,
            during: 2,
            concurrency: 256,
            senders: 4,
            sender_inflight: 64,
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(1),
            server_pids: Vec::new(),
            accept_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the values that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), LoadError> {
        let fail = |reason: &str| Err(LoadError::Config(reason.to_owned()));
        if self.sessions == 0 {
            return fail("--sessions must be at least 1");
        }
        if self.before == 0 {
            return fail("--before must be at least 1: a session resumes from a position");
        }
        if self.concurrency == 0 || self.senders == 0 || self.sender_inflight == 0 {
            return fail("--concurrency, --senders and --sender-inflight must be at least 1");
        }
        Ok(())
    }
}

/// What the resume benchmark measured. Times are seconds from the drop
/// (the `close-all-connections` request being sent).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ResumeReport {
    /// The node dropped.
    pub url: String,
    /// The node the sessions reconnected to.
    pub resume_url: String,
    /// Sessions.
    pub sessions: usize,
    /// Signals per room before the drop.
    pub before: u64,
    /// Signals per room from the drop on.
    pub during: u64,
    /// Reconnections in progress at once, at most.
    pub concurrency: usize,
    /// Seconds the set-up took (connect, opt in, login, join).
    pub setup_seconds: f64,
    /// Connections the dropped node closed (the sessions, the admin
    /// connection, and any other client of that node).
    pub dropped: u64,
    /// Until every session's resume was answered; `None` if some never was.
    pub all_resumed_seconds: Option<f64>,
    /// **The result**: until every session had all its signals; `None` if
    /// some never had them within the timeout.
    pub all_complete_seconds: Option<f64>,
    /// Sessions complete within the timeout.
    pub complete: usize,
    /// Per session, seconds from the drop to completion: median, 99th
    /// percentile, largest.
    pub complete_p50_seconds: f64,
    /// See `complete_p50_seconds`.
    pub complete_p99_seconds: f64,
    /// See `complete_p50_seconds`.
    pub complete_max_seconds: f64,
    /// Until the senders had every `during` signal said (answered).
    pub said_seconds: f64,
    /// Connection attempts after the drop (one per session when none
    /// failed).
    pub reconnect_attempts: u64,
    /// Attempts that failed (connect, handshake or opt-in) and were
    /// retried.
    pub failed_attempts: u64,
    /// Sessions whose connection ended before the drop.
    pub early_disconnects: u64,
    /// Restores not answered with the session (ReplySessionNotFound or
    /// another failure).
    pub restore_failures: u64,
    /// Signals never delivered: per session, `before + during` minus what
    /// it delivered.
    pub missing: u64,
    /// Signals delivered twice to the application: payloads for a K
    /// already delivered that passed the stream rule.
    pub doubled: u64,
    /// Stream signals at or below the position, which the client's stream
    /// rule drops (docs/protocol.md 14.3.3): not a failure. Across nodes a
    /// live copy from another node can follow the resume that already
    /// brought it from history.
    pub duplicates_dropped: u64,
    /// Gaps in the offsets, each repaired by a StreamResume.
    pub gaps: u64,
    /// StreamLoss messages (any reason).
    pub losses: u64,
    /// Signals they announced as lost (UNKNOWN_STREAM counts none).
    pub lost_signals: u64,
    /// Delivered signals with another name, another payload, or out of
    /// order.
    pub mismatches: u64,
    /// Messages that were not expected (unparsable, another room's, ...).
    pub protocol: u64,
    /// `say` requests not answered with an offset.
    pub say_errors: u64,
    /// Server CPU seconds from the drop to the last completion (or the
    /// timeout), per pid given.
    pub server_cpu: Vec<ServerCpu>,
}

/// A server process's CPU time during the resume.
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct ServerCpu {
    /// The process id.
    pub pid: u32,
    /// User and system time, seconds.
    pub seconds: f64,
}

impl ResumeReport {
    /// Everything that went wrong: sessions not complete, signals missing
    /// or doubled, losses, mismatches, failed restores, unexpected
    /// messages, failed `say`s.
    pub fn failures(&self) -> u64 {
        (self.sessions - self.complete) as u64
            + self.missing
            + self.doubled
            + self.losses
            + self.mismatches
            + self.restore_failures
            + self.protocol
            + self.say_errors
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl std::fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |s: Option<f64>| s.map_or_else(|| "never".to_owned(), |s| format!("{s:.3} s"));
        writeln!(
            f,
            "{} sessions dropped by {} ({} connections closed), resumed on {}; {} + {} signals per room; set-up {:.2} s",
            self.sessions, self.url, self.dropped, self.resume_url, self.before, self.during, self.setup_seconds
        )?;
        writeln!(
            f,
            "  all complete   {}  ({} of {} sessions; per session p50 {:.3} s, p99 {:.3} s, max {:.3} s)",
            opt(self.all_complete_seconds),
            self.complete,
            self.sessions,
            self.complete_p50_seconds,
            self.complete_p99_seconds,
            self.complete_max_seconds
        )?;
        writeln!(
            f,
            "  all resumed    {}; signals said by {:.3} s",
            opt(self.all_resumed_seconds),
            self.said_seconds
        )?;
        writeln!(
            f,
            "  reconnects     {} attempts, {} failed and retried, {} early disconnects, {} restores failed",
            self.reconnect_attempts, self.failed_attempts, self.early_disconnects, self.restore_failures
        )?;
        for cpu in &self.server_cpu {
            writeln!(f, "  server CPU     pid {}: {:.2} s", cpu.pid, cpu.seconds)?;
        }
        write!(
            f,
            "  verified       missing {}, doubled {}, losses {} ({} signals), mismatches {}, gaps repaired {}, duplicates dropped by the stream rule {}, protocol {}, say errors {}",
            self.missing,
            self.doubled,
            self.losses,
            self.lost_signals,
            self.mismatches,
            self.gaps,
            self.duplicates_dropped,
            self.protocol,
            self.say_errors
        )
    }
}

/// What a session tells the benchmark, once each (but `SetUp` or
/// `SetUpFailed`).
#[derive(Debug)]
enum Event {
    SetUp,
    SetUpFailed(String),
    /// It delivered the `before` signals.
    Caught,
    /// Its resume after the drop was answered.
    Resumed(Instant),
    /// It has everything.
    Complete(Instant),
}

/// What one session counted.
#[derive(Debug, Default)]
struct SessionTally {
    delivered: u64,
    doubled: u64,
    duplicates_dropped: u64,
    gaps: u64,
    losses: u64,
    lost_signals: u64,
    mismatches: u64,
    protocol: u64,
    restore_failures: u64,
    early_disconnects: u64,
    attempts: u64,
    failed_attempts: u64,
}

/// What all sessions share.
struct Shared {
    first: Target,
    resume: Target,
    options: OpenOptions,
    permits: Arc<Semaphore>,
    dropped: AtomicBool,
    stop: CancellationToken,
    before: u64,
    total: u64,
}

/// Runs the resume benchmark (module documentation above). Fails when it
/// cannot take place (bad configuration, a session that cannot be set up,
/// signals before the drop that do not arrive, no `close-all-connections`
/// on the server); what goes wrong from the drop on is counted in the
/// report.
pub async fn run_resume(config: &ResumeConfig) -> Result<ResumeReport, LoadError> {
    config.validate()?;
    let resume_url = config
        .resume_url
        .clone()
        .unwrap_or_else(|| config.url.clone());
    let options = OpenOptions {
        raw_echo: false,
        accept_timeout: config.accept_timeout,
    };
    let shared = Arc::new(Shared {
        first: Target::resolve(&config.url).await?,
        resume: Target::resolve(&resume_url).await?,
        options,
        permits: Arc::new(Semaphore::new(config.concurrency)),
        dropped: AtomicBool::new(false),
        stop: CancellationToken::new(),
        before: config.before,
        total: config.before + config.during,
    });
    // Every session task ends with the benchmark, however it ends.
    let _stop_guard = shared.stop.clone().drop_guard();

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.sessions)
        .map(|index| tokio::spawn(session(index, Arc::clone(&shared), events_tx.clone())))
        .collect();
    drop(events_tx);

    // Set-up.
    let mut set_up = 0;
    let deadline = Instant::now() + config.timeout;
    while set_up < config.sessions {
        match recv_until(&mut events, deadline, "the set-up").await? {
            (_, Event::SetUp) => set_up += 1,
            (index, Event::SetUpFailed(reason)) => {
                return Err(LoadError::Setup(format!("session {index}: {reason}")))
            }
            _ => {}
        }
    }
    let setup_seconds = seconds(started.elapsed());

    // Before the drop: every session gets `before` signals live.
    let rooms = config.sessions;
    let said = say_all(&shared.first, config, rooms, 1..=config.before).await?;
    if said.errors > 0 {
        return Err(LoadError::Setup(format!(
            "{} `say` requests before the drop failed",
            said.errors
        )));
    }
    let deadline = Instant::now() + config.timeout;
    let mut caught = 0;
    while caught < config.sessions {
        if let (_, Event::Caught) =
            recv_until(&mut events, deadline, "the signals before the drop").await?
        {
            caught += 1;
        }
    }

    // The drop.
    let mut admin = admin_connection(&shared.first, options).await?;
    let cpu_before = config
        .server_pids
        .iter()
        .map(|&pid| sys::cpu_time(pid).map(|cpu| (pid, cpu)))
        .collect::<Result<Vec<_>, _>>()?;
    shared.dropped.store(true, Ordering::Release);
    let drop_at = Instant::now();
    let dropped = {
        let mut setup = Setup::new(&mut admin, config.accept_timeout);
        let reply = setup.call(CLOSE_ALL, "").await?;
        String::from_utf8_lossy(reply.as_bytes())
            .parse::<u64>()
            .map_err(|_| LoadError::Setup(format!("`{CLOSE_ALL}` did not answer a count")))?
    };
    drop(admin);

    // During: the senders start at once, while the sessions reconnect.
    let during = {
        let first = shared.first.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let said = say_all(
                &first,
                &config,
                rooms,
                config.before + 1..=config.before + config.during,
            )
            .await;
            (said, Instant::now())
        })
    };

    let deadline = drop_at + config.timeout;
    let (mut resumed, mut complete) = (0, 0);
    let (mut last_resumed, mut last_complete) = (None, None);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| unreachable!("histogram bounds: {e}"));
    while complete < config.sessions {
        let event = tokio::select! {
            e = events.recv() => e,
            () = tokio::time::sleep_until(deadline) => None,
        };
        match event {
            Some((_, Event::Resumed(at))) => {
                resumed += 1;
                last_resumed = Some(at);
            }
            Some((_, Event::Complete(at))) => {
                complete += 1;
                last_complete = Some(at);
                let us = u64::try_from((at - drop_at).as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(us.max(1));
            }
            Some(_) => {}
            None => break,
        }
    }
    let cpu_end = Instant::now();
    let server_cpu = cpu_before
        .into_iter()
        .map(|(pid, before)| {
            sys::cpu_time(pid).map(|after| ServerCpu {
                pid,
                seconds: seconds(after.saturating_sub(before)),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(elapsed = ?(cpu_end - drop_at), complete, resumed, "resume phase over");

    // Settle, then stop everything and count.
    if complete == config.sessions {
        tokio::time::sleep(config.settle).await;
    }
    let (said_during, said_at) = match tokio::time::timeout(config.timeout, during).await {
        Ok(Ok((said, at))) => (
            said.unwrap_or_else(|e| {
                tracing::warn!("saying the signals after the drop failed: {e}");
                Said {
                    errors: rooms as u64 * config.during,
                }
            }),
            at,
        ),
        Ok(Err(join_error)) => std::panic::resume_unwind(join_error.into_panic()),
        Err(_) => (
            Said {
                errors: rooms as u64 * config.during,
            },
            Instant::now(),
        ),
    };
    shared.stop.cancel();
    let mut total = SessionTally::default();
    let mut missing = 0;
    for task in tasks {
        match task.await {
            Ok(t) => {
                missing += shared.total.saturating_sub(t.delivered);
                total.doubled += t.doubled;
                total.duplicates_dropped += t.duplicates_dropped;
                total.gaps += t.gaps;
                total.losses += t.losses;
                total.lost_signals += t.lost_signals;
                total.mismatches += t.mismatches;
                total.protocol += t.protocol;
                total.restore_failures += t.restore_failures;
                total.early_disconnects += t.early_disconnects;
                total.attempts += t.attempts;
                total.failed_attempts += t.failed_attempts;
            }
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    let since_drop = |at: Option<Instant>| at.map(|at| seconds(at - drop_at));
    let quantile = |q: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            histogram.value_at_quantile(q) as f64 / 1e6
        }
    };
    Ok(ResumeReport {
        url: config.url.clone(),
        resume_url,
        sessions: config.sessions,
        before: config.before,
        during: config.during,
        concurrency: config.concurrency,
        setup_seconds,
        dropped,
        all_resumed_seconds: if resumed == config.sessions {
            since_drop(last_resumed)
        } else {
            None
        },
        all_complete_seconds: if complete == config.sessions {
            since_drop(last_complete)
        } else {
            None
        },
        complete,
        complete_p50_seconds: quantile(0.5),
        complete_p99_seconds: quantile(0.99),
        complete_max_seconds: if histogram.is_empty() {
            0.0
        } else {
            histogram.max() as f64 / 1e6
        },
        said_seconds: seconds(said_at - drop_at),
        reconnect_attempts: total.attempts,
        failed_attempts: total.failed_attempts,
        early_disconnects: total.early_disconnects,
        restore_failures: total.restore_failures,
        missing,
        doubled: total.doubled,
        duplicates_dropped: total.duplicates_dropped,
        gaps: total.gaps,
        losses: total.losses,
        lost_signals: total.lost_signals,
        mismatches: total.mismatches,
        protocol: total.protocol,
        say_errors: said_during.errors,
        server_cpu,
    })
}

/// The next event before `deadline`, or an error naming the phase.
async fn recv_until(
    events: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    deadline: Instant,
    phase: &str,
) -> Result<(usize, Event), LoadError> {
    tokio::select! {
        e = events.recv() => e.ok_or_else(|| LoadError::Setup(format!("the sessions ended during {phase}"))),
        () = tokio::time::sleep_until(deadline) => Err(LoadError::Setup(format!("{phase} did not finish in time"))),
    }
}

/// A plain 2.0 connection to `target`, for the admin request.
async fn admin_connection(target: &Target, options: OpenOptions) -> Result<Ws, LoadError> {
    let (ws, _conf) = target.open(usize::MAX, options).await?;
    Ok(ws)
}

/// What the senders counted.
#[derive(Debug, Clone, Copy)]
struct Said {
    /// `say` requests not answered with a Reply.
    errors: u64,
}

/// Says signals `ks` into each of the rooms `0..rooms` (`say load-I I:K`),
/// K by K, from `config.senders` connections (room I on sender
/// `I % senders`), each with a window small enough that a room's K+1 is
/// said only after its K was answered (so appended).
async fn say_all(
    target: &Target,
    config: &ResumeConfig,
    rooms: usize,
    ks: std::ops::RangeInclusive<u64>,
) -> Result<Said, LoadError> {
    let senders = config.senders.min(rooms);
    let options = OpenOptions {
        raw_echo: false,
        accept_timeout: config.accept_timeout,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let (ws, conf) = target.open(usize::MAX - 1 - sender, options).await?;
        let mine: Vec<usize> = (sender..rooms).step_by(senders).collect();
        let window = config.sender_inflight.min(mine.len()).max(1);
        let heartbeat = conf.map(|conf: AcceptConf| conf.read_timeout() * 3 / 4);
        let ks = ks.clone();
        tasks.spawn(say_on(ws, heartbeat, mine, ks, window));
    }
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(e)) => errors += e,
            Ok(Err(e)) => return Err(e),
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    Ok(Said { errors })
}

/// One sender: its rooms' `say` requests, `window` outstanding; returns
/// how many were not answered with a Reply.
async fn say_on(
    mut ws: Ws,
    heartbeat: Option<Duration>,
    rooms: Vec<usize>,
    ks: std::ops::RangeInclusive<u64>,
    window: usize,
) -> Result<u64, LoadError> {
    let name = Name::from_static("say");
    let work: Vec<(usize, u64)> = ks
        .flat_map(|k| rooms.iter().map(move |&i| (i, k)))
        .collect();
    let mut work = work.into_iter();
    let mut next_id: u64 = 1;
    let mut outstanding = 0usize;
    let mut errors = 0;
    let mut exhausted = false;
    let interval = heartbeat.unwrap_or(Duration::from_secs(86_400));
    let mut last_send = Instant::now();
    let io = |e: tokio_websockets::Error| LoadError::Setup(format!("sender: {e}"));
    loop {
        while !exhausted && outstanding < window {
            match work.next() {
                Some((i, k)) => {
                    let text = format!("{} {i}:{k}", v21::room_name(i));
                    let request =
                        Request::new(RequestId::from(next_id), name.clone(), Payload::utf8(text))
                            .map_err(|e| LoadError::Setup(e.to_string()))?;
                    next_id += 1;
                    ws.feed(Message::binary(ClientMessage::Request(request).to_bytes()))
                        .await
                        .map_err(io)?;
                    outstanding += 1;
                }
                None => exhausted = true,
            }
        }
        ws.flush().await.map_err(io)?;
        last_send = last_send.max(Instant::now());
        if exhausted && outstanding == 0 {
            return Ok(errors);
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(m)) if m.is_binary() => match ServerMessage::parse(Bytes::from(m.into_payload())) {
                    Ok(ServerMessage::Reply(_)) => outstanding -= 1,
                    Ok(other) if other.request_id().is_some() => {
                        outstanding -= 1;
                        errors += 1;
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io(e)),
                None => return Err(LoadError::Setup("a sender's connection ended".into())),
            },
            () = tokio::time::sleep_until(last_send + interval) => {
                ws.send(Message::binary(ClientMessage::Heartbeat.to_bytes())).await.map_err(io)?;
                last_send = Instant::now();
            }
        }
    }
}

/// One session's life: set-up on the first node, live signals, then
/// reconnections to the resume node whenever its connection ends, until
/// the benchmark stops.
async fn session(
    index: usize,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(usize, Event)>,
) -> SessionTally {
    let mut s = Session::new(index, shared, events);
    let mut ws = match s.set_up().await {
        Ok(ws) => {
            s.tell(Event::SetUp);
            ws
        }
        Err(e) => {
            s.tell(Event::SetUpFailed(e.to_string()));
            return s.tally;
        }
    };
    loop {
        s.hold(&mut ws).await;
        if s.shared.stop.is_cancelled() {
            return s.tally;
        }
        if !s.shared.dropped.load(Ordering::Acquire) {
            s.tally.early_disconnects += 1;
        }
        drop(ws);
        match s.reconnect().await {
            Some(new) => ws = new,
            None => return s.tally,
        }
    }
}

/// One session's state.
struct Session {
    index: usize,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(usize, Event)>,
    instance: InstanceId,
    room: RoomName,
    key: Bytes,
    /// (epoch, last offset) of the room's stream.
    position: Option<(u64, u64)>,
    /// A StreamResume is unanswered.
    resuming: Option<RequestId>,
    /// The restore after the last reconnect is unanswered.
    restoring: Option<RequestId>,
    /// The StreamResume sent with the restore on the last reconnection.
    reconnect_resume: Option<RequestId>,
    /// A resume sent on a reconnection after the drop was answered.
    resumed: bool,
    told_caught: bool,
    told_complete: bool,
    next_id: u64,
    heartbeat: Duration,
    last_send: Instant,
    /// Held from a reconnection's start until its resume is answered.
    permit: Option<OwnedSemaphorePermit>,
    tally: SessionTally,
}

impl Session {
    fn new(
        index: usize,
        shared: Arc<Shared>,
        events: mpsc::UnboundedSender<(usize, Event)>,
    ) -> Self {
        let room =
            RoomName::new(v21::room_name(index)).unwrap_or_else(|e| unreachable!("room name: {e}"));
        Self {
            index,
            shared,
            events,
            instance: v21::instance_id(index),
            room,
            key: Bytes::new(),
            position: None,
            resuming: None,
            restoring: None,
            reconnect_resume: None,
            resumed: false,
            told_caught: false,
            told_complete: false,
            next_id: 1,
            heartbeat: Duration::from_secs(86_400),
            last_send: Instant::now(),
            permit: None,
            tally: SessionTally::default(),
        }
    }

    fn tell(&self, event: Event) {
        // The benchmark may have stopped listening: nothing to do then.
        let _ = self.events.send((self.index, event));
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId::from(self.next_id)
    }

    async fn set_up(&mut self) -> Result<Ws, LoadError> {
        let _permit = Arc::clone(&self.shared.permits).acquire_owned().await;
        let (mut ws, conf) = self
            .shared
            .first
            .open(self.index, self.shared.options)
            .await?;
        v21::require_21(conf.as_ref())?;
        if let Some(conf) = &conf {
            self.heartbeat = conf.read_timeout() * 3 / 4;
        }
        let mut setup = Setup::new(&mut ws, self.shared.options.accept_timeout);
        setup
            .opt_in(FeatureFlags::STREAMS, self.instance.clone())
            .await?;
        self.key = setup
            .call("login", &format!("resume-{}", self.index))
            .await?
            .as_bytes()
            .clone();
        setup.call("join", self.room.as_str()).await?;
        self.last_send = Instant::now();
        Ok(ws)
    }

    /// Reads the connection until it ends or the benchmark stops.
    async fn hold(&mut self, ws: &mut Ws) {
        loop {
            tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => return,
                m = ws.next() => match m {
                    Some(Ok(m)) if m.is_binary() => {
                        if let Some(resume) = self.handle(Bytes::from(m.into_payload())) {
                            if ws.send(Message::binary(resume)).await.is_err() {
                                return;
                            }
                            self.last_send = Instant::now();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        self.permit = None;
                        return;
                    }
                },
                () = tokio::time::sleep_until(self.last_send + self.heartbeat) => {
                    if ws.send(Message::binary(ClientMessage::Heartbeat.to_bytes())).await.is_err() {
                        return;
                    }
                    self.last_send = Instant::now();
                }
            }
        }
    }

    /// Handles one message; returns a StreamResume to send when a gap
    /// needs repair.
    fn handle(&mut self, frame: Bytes) -> Option<Bytes> {
        let message = match ServerMessage::parse(frame) {
            Ok(m) => m,
            Err(_) => {
                self.tally.protocol += 1;
                return None;
            }
        };
        match message {
            ServerMessage::StreamSignal(signal)
                if *signal.stream() == StreamId::Room(self.room.clone()) =>
            {
                return self.stream_signal(signal);
            }
            ServerMessage::StreamLoss(loss) if loss.stream == StreamId::Room(self.room.clone()) => {
                self.tally.losses += 1;
                if loss.reason == LossReason::UnknownStream {
                    self.position = None;
                } else {
                    if loss.lost_from > 0 {
                        self.tally.lost_signals += loss.lost_to.saturating_sub(loss.lost_from) + 1;
                    }
                    self.position = Some((loss.epoch, loss.next.saturating_sub(1)));
                }
            }
            ServerMessage::Reply(reply) if Some(reply.id) == self.restoring => {
                self.restoring = None;
            }
            ServerMessage::Reply(reply) if Some(reply.id) == self.resuming => {
                self.resuming = None;
                if Some(reply.id) == self.reconnect_resume {
                    self.reconnect_resume = None;
                    // This reconnection's work is done: another may start.
                    self.permit = None;
                    if self.shared.dropped.load(Ordering::Acquire) && !self.resumed {
                        self.resumed = true;
                        self.tell(Event::Resumed(Instant::now()));
                    }
                }
                self.check_progress();
            }
            other if other.request_id().is_some() && other.request_id() == self.restoring => {
                self.restoring = None;
                self.tally.restore_failures += 1;
            }
            other if other.request_id().is_some() && other.request_id() == self.resuming => {
                // The resume failed (no session, shutdown): what it would
                // have brought stays missing and is counted at the end.
                self.resuming = None;
                self.reconnect_resume = None;
                self.permit = None;
                self.tally.protocol += 1;
            }
            ServerMessage::SessionCreated(_) | ServerMessage::SessionClosed => {}
            _ => self.tally.protocol += 1,
        }
        None
    }

    /// The stream rule of docs/protocol.md 14.3.3, then the payload check.
    fn stream_signal(&mut self, signal: StreamSignal) -> Option<Bytes> {
        let (epoch, offset) = (signal.epoch(), signal.offset());
        match self.position {
            Some((e, last)) if e == epoch && offset <= last => {
                self.tally.duplicates_dropped += 1;
                return None;
            }
            Some((e, last)) if e != epoch || offset != last + 1 => {
                self.tally.gaps += 1;
                if self.resuming.is_some() {
                    return None;
                }
                let id = self.id();
                self.resuming = Some(id);
                let resume = StreamResume::new(
                    id,
                    vec![StreamPosition {
                        stream: StreamId::Room(self.room.clone()),
                        epoch: e,
                        offset: last,
                    }],
                )
                .unwrap_or_else(|e| unreachable!("one stream: {e}"));
                return Some(ClientMessage::StreamResume(resume).to_bytes());
            }
            _ => {}
        }
        self.position = Some((epoch, offset));
        let expected = format!("{}:{}", self.index, self.tally.delivered + 1);
        let inner = signal.signal();
        if inner.name() != SAID || inner.payload().as_bytes().as_ref() != expected.as_bytes() {
            let seen = String::from_utf8_lossy(inner.payload().as_bytes());
            match seen
                .rsplit_once(':')
                .and_then(|(_, k)| k.parse::<u64>().ok())
            {
                Some(k) if k <= self.tally.delivered => self.tally.doubled += 1,
                _ => self.tally.mismatches += 1,
            }
            return None;
        }
        self.tally.delivered += 1;
        self.check_progress();
        None
    }

    fn check_progress(&mut self) {
        if !self.told_caught && self.tally.delivered >= self.shared.before {
            self.told_caught = true;
            self.tell(Event::Caught);
        }
        if !self.told_complete && self.resumed && self.tally.delivered >= self.shared.total {
            self.told_complete = true;
            self.tell(Event::Complete(Instant::now()));
        }
    }

    /// Connects to the resume node until it works (or the benchmark
    /// stops), opts in and sends the restore and, right behind it, the
    /// StreamResume with the room's position.
    async fn reconnect(&mut self) -> Option<Ws> {
        let stop = self.shared.stop.clone();
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.shared.permits).acquire_owned() => p.ok()?,
                () = stop.cancelled() => return None,
            };
            self.tally.attempts += 1;
            let attempt = tokio::select! {
                r = self.resume_on_new_connection() => r,
                () = stop.cancelled() => return None,
            };
            match attempt {
                Ok(ws) => {
                    self.permit = Some(permit);
                    return Some(ws);
                }
                Err(e) => {
                    tracing::debug!(session = self.index, error = %e, "reconnect failed");
                    self.tally.failed_attempts += 1;
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => {}
                        () = stop.cancelled() => return None,
                    }
                }
            }
        }
    }

    async fn resume_on_new_connection(&mut self) -> Result<Ws, LoadError> {
        let (mut ws, conf) = self
            .shared
            .resume
            .open(self.index, self.shared.options)
            .await?;
        v21::require_21(conf.as_ref())?;
        if let Some(conf) = &conf {
            self.heartbeat = conf.read_timeout() * 3 / 4;
        }
        let mut setup = Setup::new(&mut ws, self.shared.options.accept_timeout);
        setup
            .opt_in(FeatureFlags::STREAMS, self.instance.clone())
            .await?;
        let restore = self.id();
        let resume = self.id();
        let positions = self
            .position
            .map(|(epoch, offset)| StreamPosition {
                stream: StreamId::Room(self.room.clone()),
                epoch,
                offset,
            })
            .into_iter()
            .collect();
        let resume_message = StreamResume::new(resume, positions)
            .unwrap_or_else(|e| unreachable!("one stream: {e}"));
        let io = |e: tokio_websockets::Error| LoadError::Setup(format!("restore: {e}"));
        ws.feed(Message::binary(
            ClientMessage::RestoreSession {
                id: restore,
                key: self.key.clone(),
            }
            .to_bytes(),
        ))
        .await
        .map_err(io)?;
        ws.feed(Message::binary(
            ClientMessage::StreamResume(resume_message).to_bytes(),
        ))
        .await
        .map_err(io)?;
        ws.flush().await.map_err(io)?;
        self.restoring = Some(restore);
        self.resuming = Some(resume);
        self.reconnect_resume = Some(resume);
        self.last_send = Instant::now();
        Ok(ws)
    }
}
