//! The proxy: accepting, forwarding through its own buffers, cutting.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::ReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::observer::{Direction, Observer};
use crate::rng::{stream_rng, SplitMix64};

/// The default range of the byte counts between cuts: a mean of about
/// 4 KiB, so a steady webwire exchange is cut every few dozen messages.
pub const DEFAULT_CUT_AFTER: RangeInclusive<u64> = 512..=8192;

/// The default size of one read (the most the proxy holds per direction).
pub const DEFAULT_CHUNK_SIZE: usize = 16 * 1024;

/// The most cut records [`FaultProxy::cut_log`] keeps (the counters in
/// [`Stats`] go on counting).
pub const MAX_CUT_LOG: usize = 100_000;

/// A pause after a failed accept (such as too many open files), so the
/// accept loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaultProxyError {
    /// The proxy is for loopback tests and refuses any other address.
    #[error("{role} address {addr} is not a loopback address")]
    NotLoopback {
        /// `listen` or `upstream`.
        role: &'static str,
        /// The address given.
        addr: SocketAddr,
    },
    /// No upstream address was given.
    #[error("no upstream address")]
    NoUpstream,
    /// The cut range is empty or starts at 0.
    #[error("cut range {min}..={max} is invalid (need 1 <= min <= max)")]
    BadCutRange {
        /// Its start.
        min: u64,
        /// Its end.
        max: u64,
    },
    /// A read chunk of 0 bytes was asked for.
    #[error("chunk size must be at least 1")]
    BadChunkSize,
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What made a connection be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutTrigger {
    /// The client-to-server direction reached its seeded cut point.
    ClientToServer,
    /// The server-to-client direction reached its seeded cut point.
    ServerToClient,
    /// [`FaultProxy::cut_all`].
    Manual,
}

/// One cut, as [`FaultProxy::cut_log`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CutRecord {
    /// The connection's index (0 for the first one accepted).
    pub connection: u64,
    /// What cut it.
    pub trigger: CutTrigger,
    /// Bytes forwarded from the client before the cut.
    pub client_to_server_bytes: u64,
    /// Bytes forwarded to the client before the cut.
    pub server_to_client_bytes: u64,
    /// Bytes the proxy had read and discarded with the cut.
    pub discarded_bytes: u64,
    /// False when the observer could not follow this connection's traffic.
    pub observed: bool,
    /// Requests without a delivered reply (see
    /// [`CutObservation`](crate::CutObservation)).
    pub requests_in_flight: usize,
    /// A signal was partly forwarded or held.
    pub signal_in_flight: bool,
    /// The cut landed inside a WebSocket frame in at least one direction.
    pub mid_frame: bool,
}

/// Counters of a proxy since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// The seed of the cut points.
    pub seed: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Cuts, seeded and manual (closing a connection in any other way is
    /// not a cut).
    pub cuts: u64,
    /// Cuts made by [`FaultProxy::cut_all`].
    pub manual_cuts: u64,
    /// Cuts while at least one request had no delivered reply.
    pub cuts_with_requests_in_flight: u64,
    /// Cuts while a signal was partly forwarded or held.
    pub cuts_with_signals_in_flight: u64,
    /// Cuts inside a WebSocket frame.
    pub cuts_mid_frame: u64,
    /// Bytes forwarded from clients to servers.
    pub bytes_client_to_server: u64,
    /// Bytes forwarded from servers to clients.
    pub bytes_server_to_client: u64,
    /// Bytes read and discarded by cuts.
    pub bytes_discarded: u64,
    /// Request messages completely forwarded.
    pub requests_forwarded: u64,
    /// Reply messages completely forwarded.
    pub replies_forwarded: u64,
    /// Signal messages completely forwarded.
    pub signals_forwarded: u64,
    /// Connections whose traffic the observer stopped following.
    pub unobserved_connections: u64,
    /// Connections closed because their upstream refused the connection.
    pub upstream_failures: u64,
}

/// The byte positions, counted from the connection's first byte in one
/// direction, at which a connection is cut (while cutting is on): the
/// first is drawn from `range`, each next one lies a further draw beyond.
///
/// They depend only on the seed, the connection's index and the direction,
/// never on how the OS chunks the traffic.
///
/// ```
/// use webwire_faultproxy::{cut_points, Direction};
///
/// let first: Vec<u64> = cut_points(7, 0, Direction::ClientToServer, 100..=200).take(3).collect();
/// assert!((100..=200).contains(&first[0]));
/// assert!(first[1] - first[0] >= 100 && first[2] > first[1]);
/// assert_eq!(first, cut_points(7, 0, Direction::ClientToServer, 100..=200).take(3).collect::<Vec<_>>());
/// ```
pub fn cut_points(
    seed: u64,
    connection: u64,
    direction: Direction,
    range: RangeInclusive<u64>,
) -> CutPoints {
    let rng = stream_rng(seed, connection, direction_code(direction));
    CutPoints {
        rng,
        range,
        position: 0,
    }
}

fn direction_code(direction: Direction) -> u64 {
    match direction {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// The iterator of [`cut_points`].
#[derive(Debug, Clone)]
pub struct CutPoints {
    rng: SplitMix64,
    range: RangeInclusive<u64>,
    position: u64,
}

impl Iterator for CutPoints {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        self.position = self
            .position
            .saturating_add(self.rng.in_range(&self.range).max(1));
        Some(self.position)
    }
}

/// How to start a [`FaultProxy`]; from [`FaultProxy::builder`].
#[derive(Debug, Clone)]
pub struct FaultProxyBuilder {
    upstreams: Vec<SocketAddr>,
    listen: SocketAddr,
    seed: u64,
    cut_after: RangeInclusive<u64>,
    cutting: bool,
    chunk_size: usize,
}

impl FaultProxyBuilder {
    /// The address to listen on; default `127.0.0.1:0`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The seed of the cut points; default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The range (inclusive) the byte count between two cut points of one
    /// direction is drawn from; default [`DEFAULT_CUT_AFTER`].
    pub fn cut_after(mut self, range: RangeInclusive<u64>) -> Self {
        self.cut_after = range;
        self
    }

    /// Whether the proxy cuts from the start (default) or starts calm
    /// until [`FaultProxy::set_cutting`] turns cutting on.
    pub fn cutting(mut self, on: bool) -> Self {
        self.cutting = on;
        self
    }

    /// The most bytes one read takes, which is also the most the proxy
    /// holds per direction; default [`DEFAULT_CHUNK_SIZE`].
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Binds the listening socket and starts accepting.
    pub async fn start(self) -> Result<FaultProxy, FaultProxyError> {
        if self.upstreams.is_empty() {
            return Err(FaultProxyError::NoUpstream);
        }
        if !self.listen.ip().is_loopback() {
            return Err(FaultProxyError::NotLoopback {
                role: "listen",
                addr: self.listen,
            });
        }
        if let Some(&addr) = self.upstreams.iter().find(|a| !a.ip().is_loopback()) {
            return Err(FaultProxyError::NotLoopback {
                role: "upstream",
                addr,
            });
        }
        let (min, max) = (*self.cut_after.start(), *self.cut_after.end());
        if min == 0 || min > max {
            return Err(FaultProxyError::BadCutRange { min, max });
        }
        if self.chunk_size == 0 {
            return Err(FaultProxyError::BadChunkSize);
        }
        let listener =
            TcpListener::bind(self.listen)
                .await
                .map_err(|source| FaultProxyError::Bind {
                    addr: self.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| FaultProxyError::Bind {
                addr: self.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            upstreams: self.upstreams,
            seed: self.seed,
            cut_after: self.cut_after,
            chunk_size: self.chunk_size,
            cutting: AtomicBool::new(self.cutting),
            next_connection: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            cuts: Mutex::new(CutBook::default()),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%local_addr, seed = shared.seed, "fault proxy listening");
        Ok(FaultProxy { local_addr, shared })
    }
}

/// A fault-injecting TCP proxy for loopback tests.
///
/// It forwards every accepted connection to an upstream (connection `k` to
/// upstream `k mod n`, so with two upstreams each reconnect of a client
/// lands on the other one) through buffers of its own, and cuts the
/// connection when one direction has forwarded exactly its next seeded
/// byte count (see [`cut_points`]): both sockets are dropped and whatever
/// the proxy had read but not written is discarded. The cut points lie
/// anywhere in the byte stream, inside the HTTP upgrade, a frame header or
/// a payload alike.
///
/// It also observes the webwire traffic it forwards (see [`Observer`]) and
/// records, for every cut, whether requests or signals were in flight.
/// Dropping the proxy stops it and closes its connections.
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use webwire_faultproxy::FaultProxy;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // An upstream that answers "hi" to every connection.
/// let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let upstream_addr = upstream.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok((mut s, _)) = upstream.accept().await {
///         let _ = s.write_all(b"hi").await;
///     }
/// });
/// // Cut after 1 byte from the server, always.
/// let proxy = FaultProxy::builder([upstream_addr]).seed(1).cut_after(1..=1).start().await?;
/// let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
/// let mut got = Vec::new();
/// client.read_to_end(&mut got).await?;
/// assert_eq!(got, b"h");
/// assert_eq!(proxy.stats().cuts, 1);
///
/// proxy.set_cutting(false);
/// let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
/// let mut got = [0; 2];
/// client.read_exact(&mut got).await?;
/// assert_eq!(&got, b"hi");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A builder forwarding to `upstreams` (at least one, all loopback).
    pub fn builder(upstreams: impl IntoIterator<Item = SocketAddr>) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstreams: upstreams.into_iter().collect(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 0,
            cut_after: DEFAULT_CUT_AFTER,
            cutting: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The seed of the cut points.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The cut points of one direction of connection `connection` (see
    /// [`cut_points`]).
    pub fn cut_points(&self, connection: u64, direction: Direction) -> CutPoints {
        cut_points(
            self.shared.seed,
            connection,
            direction,
            self.shared.cut_after.clone(),
        )
    }

    /// Turns the seeded cuts on or off. While off, connections are
    /// forwarded intact and the cut points they pass are skipped (the
    /// following ones still apply once cutting is back on), so a test can
    /// let everything settle before checking its outcome.
    pub fn set_cutting(&self, on: bool) {
        self.shared.cutting.store(on, Ordering::SeqCst);
    }

    /// Whether the seeded cuts are on.
    pub fn is_cutting(&self) -> bool {
        self.shared.cutting.load(Ordering::SeqCst)
    }

    /// Cuts every open connection now, whether cutting is on or not, and
    /// returns how many were cut once their sockets are closed.
    pub async fn cut_all(&self) -> usize {
        let live = std::mem::take(&mut *lock(&self.shared.live));
        let mut acks = Vec::with_capacity(live.len());
        for (_, cut) in live {
            let (ack, done) = oneshot::channel();
            if cut.send(ack).is_ok() {
                acks.push(done);
            }
        }
        let mut cut = 0;
        for done in acks {
            // An error means the connection ended by itself meanwhile.
            if done.await.is_ok() {
                cut += 1;
            }
        }
        cut
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let book = lock(&self.shared.cuts);
        Stats {
            seed: self.shared.seed,
            connections: c.connections.load(Ordering::Relaxed),
            cuts: book.cuts,
            manual_cuts: book.manual_cuts,
            cuts_with_requests_in_flight: book.with_requests,
            cuts_with_signals_in_flight: book.with_signals,
            cuts_mid_frame: book.mid_frame,
            bytes_client_to_server: c.bytes[0].load(Ordering::Relaxed),
            bytes_server_to_client: c.bytes[1].load(Ordering::Relaxed),
            bytes_discarded: book.discarded,
            requests_forwarded: c.requests.load(Ordering::Relaxed),
            replies_forwarded: c.replies.load(Ordering::Relaxed),
            signals_forwarded: c.signals.load(Ordering::Relaxed),
            unobserved_connections: c.unobserved.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
        }
    }

    /// The cuts so far, in the order they happened (at most
    /// [`MAX_CUT_LOG`]).
    pub fn cut_log(&self) -> Vec<CutRecord> {
        lock(&self.shared.cuts).log.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

#[derive(Debug)]
struct Shared {
    upstreams: Vec<SocketAddr>,
    seed: u64,
    cut_after: RangeInclusive<u64>,
    chunk_size: usize,
    cutting: AtomicBool,
    next_connection: AtomicU64,
    /// Open connections: the channel that cuts one (carrying the sender
    /// it acknowledges on once its sockets are closed).
    live: Mutex<HashMap<u64, oneshot::Sender<oneshot::Sender<()>>>>,
    counters: Counters,
    cuts: Mutex<CutBook>,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes: [AtomicU64; 2],
    requests: AtomicU64,
    replies: AtomicU64,
    signals: AtomicU64,
    unobserved: AtomicU64,
    upstream_failures: AtomicU64,
}

/// The cut counters and log, under one lock so a snapshot is consistent.
#[derive(Debug, Default)]
struct CutBook {
    cuts: u64,
    manual_cuts: u64,
    with_requests: u64,
    with_signals: u64,
    mid_frame: u64,
    discarded: u64,
    log: Vec<CutRecord>,
}

impl CutBook {
    fn record(&mut self, record: CutRecord) {
        self.cuts += 1;
        self.manual_cuts += u64::from(record.trigger == CutTrigger::Manual);
        self.with_requests += u64::from(record.requests_in_flight > 0);
        self.with_signals += u64::from(record.signal_in_flight);
        self.mid_frame += u64::from(record.mid_frame);
        self.discarded += record.discarded_bytes;
        if self.log.len() < MAX_CUT_LOG {
            self.log.push(record);
        }
    }
}

/// A poisoned lock only means another connection task panicked; the
/// counters are still meaningful.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _peer)) => {
                let k = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                let (cut_tx, cut_rx) = oneshot::channel();
                // Registered before the task runs, so a cut_all right after
                // the accept reaches it.
                lock(&shared.live).insert(k, cut_tx);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    connection(&shared, k, client, cut_rx).await;
                    lock(&shared.live).remove(&k);
                });
            }
            Err(e) => {
                tracing::warn!("fault proxy: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One direction of a connection.
#[derive(Debug)]
struct Pipe {
    direction: Direction,
    /// `buf[start..end]` was read from the source and not yet written to
    /// the destination. Allocated at the first read (one chunk), and read
    /// into only when empty, so the proxy holds at most one chunk.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    forwarded: u64,
    cuts: CutPoints,
    next_cut: u64,
    /// The source reached its end.
    eof: bool,
    /// The end was passed on to the destination.
    shut: bool,
}

impl Pipe {
    fn new(shared: &Shared, connection: u64, direction: Direction) -> Self {
        let mut cuts = cut_points(shared.seed, connection, direction, shared.cut_after.clone());
        let next_cut = cuts.next().unwrap_or(u64::MAX);
        Self {
            direction,
            buf: Vec::new(),
            start: 0,
            end: 0,
            forwarded: 0,
            cuts,
            next_cut,
            eof: false,
            shut: false,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads what the source has ready without waiting; `Ok(0)` at its
    /// end, `WouldBlock` when the readiness was spurious.
    fn fill(&mut self, source: &ReadHalf<'_>, chunk_size: usize) -> io::Result<usize> {
        debug_assert!(self.pending().is_empty());
        if self.buf.is_empty() {
            self.buf = vec![0; chunk_size];
        }
        let n = source.try_read(&mut self.buf)?;
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    fn can_read(&self) -> bool {
        !self.eof && self.pending().is_empty()
    }

    /// How many of the held bytes may be written next: never past the next
    /// cut point while cutting, so the cut lands on its exact byte.
    fn write_limit(&mut self, cutting: bool) -> usize {
        // Points passed while calm are skipped.
        while self.next_cut <= self.forwarded {
            self.next_cut = self.cuts.next().unwrap_or(u64::MAX);
        }
        let pending = self.pending().len();
        if cutting {
            let to_cut = usize::try_from(self.next_cut - self.forwarded).unwrap_or(usize::MAX);
            pending.min(to_cut)
        } else {
            pending
        }
    }

    /// Accounts for `n` written bytes; true when they reached the cut
    /// point.
    fn wrote(&mut self, n: usize) -> bool {
        self.start += n;
        self.forwarded += n as u64;
        self.forwarded == self.next_cut
    }
}

enum End {
    /// Both directions finished, or a socket failed: an ordinary close.
    Closed,
    /// Cut; the acknowledgement to send (manual cuts) once the sockets are
    /// closed.
    Cut(CutTrigger, Option<oneshot::Sender<()>>),
    Stopped,
}

async fn connection(
    shared: &Shared,
    k: u64,
    client: TcpStream,
    mut cut_rx: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let upstream = shared.upstreams[(k % shared.upstreams.len() as u64) as usize];
    let server = tokio::select! {
        () = shared.stop.cancelled() => return,
        cut = &mut cut_rx => {
            // Counted before the socket closes, so whoever sees the close
            // finds the cut in the stats.
            record_cut(shared, k, CutTrigger::Manual, &Observer::new(), [0, 0], 0);
            drop(client);
            if let Ok(ack) = cut {
                let _ = ack.send(());
            }
            return;
        }
        server = TcpStream::connect(upstream) => server,
    };
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            tracing::debug!(connection = k, %upstream, "fault proxy: upstream refused: {e}");
            shared
                .counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    // The proxy must not add Nagle delays the real path would not have.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut client = client;
    let mut server = server;
    let mut observer = Observer::new();
    let mut pipes = [
        Pipe::new(shared, k, Direction::ClientToServer),
        Pipe::new(shared, k, Direction::ServerToClient),
    ];
    let end = forward(
        shared,
        &mut client,
        &mut server,
        &mut observer,
        &mut pipes,
        &mut cut_rx,
    )
    .await;
    if !observer.is_observing() {
        shared.counters.unobserved.fetch_add(1, Ordering::Relaxed);
    }
    match end {
        End::Closed | End::Stopped => {}
        End::Cut(trigger, ack) => {
            let observation = observer.at_cut(pipes[0].pending(), pipes[1].pending());
            let discarded = (pipes[0].pending().len() + pipes[1].pending().len()) as u64;
            let forwarded = [pipes[0].forwarded, pipes[1].forwarded];
            // Counted before the sockets close, so whoever sees the close
            // finds the cut in the stats.
            record_cut_observed(shared, k, trigger, observation, forwarded, discarded);
            // Dropping the sockets is the cut; the held bytes go with the
            // pipes.
            drop(client);
            drop(server);
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }
}

/// What woke the forwarding loop; the index is the pipe's (0 = to the
/// server).
enum Step {
    Readable(usize, io::Result<()>),
    Wrote(usize, io::Result<usize>),
    Cut(Result<oneshot::Sender<()>, oneshot::error::RecvError>),
    Stop,
}

async fn forward(
    shared: &Shared,
    client: &mut TcpStream,
    server: &mut TcpStream,
    observer: &mut Observer,
    pipes: &mut [Pipe; 2],
    cut_rx: &mut oneshot::Receiver<oneshot::Sender<()>>,
) -> End {
    let (client_read, mut client_write) = client.split();
    let (server_read, mut server_write) = server.split();
    let [to_server, to_client] = pipes;
    loop {
        // Pass a finished direction's end on once everything held is out.
        for (pipe, write) in [
            (&mut *to_server, &mut server_write),
            (&mut *to_client, &mut client_write),
        ] {
            if pipe.eof && !pipe.shut && pipe.pending().is_empty() {
                pipe.shut = true;
                if write.shutdown().await.is_err() {
                    return End::Closed;
                }
            }
        }
        if to_server.shut && to_client.shut {
            return End::Closed;
        }
        let cutting = shared.cutting.load(Ordering::SeqCst);
        let up_limit = to_server.write_limit(cutting);
        let down_limit = to_client.write_limit(cutting);
        let up_out = &to_server.pending()[..up_limit];
        let down_out = &to_client.pending()[..down_limit];
        let can_read_up = to_server.can_read();
        let can_read_down = to_client.can_read();
        let step = tokio::select! {
            () = shared.stop.cancelled() => Step::Stop,
            cut = &mut *cut_rx => Step::Cut(cut),
            // Readiness only: the handler reads into the pipe's own buffer,
            // which the write branches borrow here.
            r = client_read.readable(), if can_read_up => Step::Readable(0, r),
            r = server_read.readable(), if can_read_down => Step::Readable(1, r),
            r = server_write.write(up_out), if !up_out.is_empty() => Step::Wrote(0, r),
            r = client_write.write(down_out), if !down_out.is_empty() => Step::Wrote(1, r),
        };
        match step {
            Step::Stop => return End::Stopped,
            // The cut handle went away unused, which only happens while
            // the proxy itself is going away; a finished oneshot must not
            // be polled again, so stop here.
            Step::Cut(Err(_)) => return End::Stopped,
            Step::Cut(Ok(ack)) => return End::Cut(CutTrigger::Manual, Some(ack)),
            Step::Readable(i, Ok(())) => {
                let (pipe, source) = if i == 0 {
                    (&mut *to_server, &client_read)
                } else {
                    (&mut *to_client, &server_read)
                };
                match pipe.fill(source, shared.chunk_size) {
                    Ok(0) => pipe.eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return End::Closed,
                }
            }
            Step::Wrote(_, Ok(0)) | Step::Readable(_, Err(_)) | Step::Wrote(_, Err(_)) => {
                return End::Closed;
            }
            Step::Wrote(i, Ok(n)) => {
                let pipe = if i == 0 {
                    &mut *to_server
                } else {
                    &mut *to_client
                };
                let completed = observer.feed(pipe.direction, &pipe.pending()[..n]);
                let c = &shared.counters;
                c.bytes[i].fetch_add(n as u64, Ordering::Relaxed);
                c.requests.fetch_add(completed.requests, Ordering::Relaxed);
                c.replies.fetch_add(completed.replies, Ordering::Relaxed);
                c.signals.fetch_add(completed.signals, Ordering::Relaxed);
                if pipe.wrote(n) && shared.cutting.load(Ordering::SeqCst) {
                    let trigger = match pipe.direction {
                        Direction::ClientToServer => CutTrigger::ClientToServer,
                        Direction::ServerToClient => CutTrigger::ServerToClient,
                    };
                    return End::Cut(trigger, None);
                }
            }
        }
    }
}

fn record_cut(
    shared: &Shared,
    k: u64,
    trigger: CutTrigger,
    observer: &Observer,
    forwarded: [u64; 2],
    discarded: u64,
) {
    record_cut_observed(
        shared,
        k,
        trigger,
        observer.at_cut(&[], &[]),
        forwarded,
        discarded,
    );
}

fn record_cut_observed(
    shared: &Shared,
    k: u64,
    trigger: CutTrigger,
    observation: crate::CutObservation,
    forwarded: [u64; 2],
    discarded: u64,
) {
    let record = CutRecord {
        connection: k,
        trigger,
        client_to_server_bytes: forwarded[0],
        server_to_client_bytes: forwarded[1],
        discarded_bytes: discarded,
        observed: observation.observed,
        requests_in_flight: observation.requests_in_flight,
        signal_in_flight: observation.signal_in_flight,
        mid_frame: observation.mid_frame,
    };
    tracing::debug!(?record, "fault proxy: cut");
    lock(&shared.cuts).record(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(range: RangeInclusive<u64>) -> Shared {
        Shared {
            upstreams: vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            seed: 3,
            cut_after: range,
            chunk_size: 16,
            cutting: AtomicBool::new(true),
            next_connection: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            cuts: Mutex::new(CutBook::default()),
            stop: CancellationToken::new(),
        }
    }

    impl Pipe {
        fn hold(&mut self, bytes: &[u8]) {
            self.buf = bytes.to_vec();
            self.start = 0;
            self.end = bytes.len();
        }
    }

    #[test]
    fn pipe_stops_at_the_cut_point_and_keeps_the_rest_held() {
        let s = shared(10..=20);
        let mut pipe = Pipe::new(&s, 0, Direction::ClientToServer);
        let first = cut_points(3, 0, Direction::ClientToServer, 10..=20)
            .next()
            .unwrap();
        pipe.hold(&[7; 64]);
        let limit = pipe.write_limit(true);
        assert_eq!(limit as u64, first);
        // A short write first: not at the cut yet.
        assert!(!pipe.wrote(1));
        let limit = pipe.write_limit(true);
        assert_eq!(limit as u64, first - 1);
        assert!(pipe.wrote(limit));
        assert_eq!(pipe.forwarded, first);
        // What is left is what a cut discards.
        assert_eq!(pipe.pending().len() as u64, 64 - first);
    }

    #[test]
    fn calm_pipe_skips_cut_points_and_resumes_at_the_next() {
        let s = shared(10..=20);
        let mut pipe = Pipe::new(&s, 1, Direction::ServerToClient);
        let points: Vec<u64> = cut_points(3, 1, Direction::ServerToClient, 10..=20)
            .take(3)
            .collect();
        pipe.hold(&[1; 100]);
        let limit = pipe.write_limit(false);
        assert_eq!(limit, 100);
        // Stop just past the first point: it is skipped.
        let n = points[0] as usize + 1;
        pipe.wrote(n);
        let limit = pipe.write_limit(true);
        assert_eq!(limit as u64, points[1] - points[0] - 1);
        assert!(pipe.wrote(limit));
        assert_eq!(pipe.forwarded, points[1]);
    }
}
