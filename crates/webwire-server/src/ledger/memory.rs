use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Begin, Finish, Lease, LedgerError, LedgerLimits, LedgerRequest, LedgerScope, Lookup,
    RequestDigest, RequestLedger, RunOutcome, RunWait, StoredReply,
};
use crate::stream::random_epoch;

/// How often an operation also sweeps every scope (expired replies,
/// lapsed runs, scopes past their retention), so that scopes nobody
/// touches do not hold memory.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A [`RequestLedger`] in memory: the ledger of one server. Its epoch is
/// random per instance, so a restarted server answers every retry of a
/// request sent before the restart with "outcome unknown", never a second
/// run.
///
/// Bounded per scope by its [`LedgerLimits`]; a scope with nothing stored
/// or running is removed once its session was closed for the age bound, or
/// once it was idle for the idle timeout. Leases last the lease time unless
/// [renewed](RequestLedger::renew); a lease dropped without
/// [`finish`](RequestLedger::finish) (a panic, an abort) gives its run up
/// at once: waiting retries get [`RunOutcome::Unknown`].
///
/// ```
/// use bytes::Bytes;
/// use webwire_server::ledger::{Begin, LedgerRequest, LedgerScope, MemoryLedger, RequestDigest, RequestLedger, StoredReply};
/// use webwire_server::proto::Encoding;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webwire_server::ledger::LedgerError> {
/// let ledger = MemoryLedger::new();
/// let scope = LedgerScope::new("session-key", "instance-0123456789");
/// let request = LedgerRequest {
///     seq: 1,
///     epoch: ledger.epoch().await?,
///     ack: 0,
///     digest: RequestDigest::new(b"pay", Encoding::Utf8, b"100"),
/// };
/// let Begin::Run(lease) = ledger.begin(&scope, &request).await? else { unreachable!() };
/// let reply = StoredReply::from_frame(Bytes::from_static(b"\xc0\x01\x00\x00\x00\x00\x00\x00\x00paid")).unwrap();
/// ledger.finish(lease, reply.clone()).await?;
/// // The retry gets the stored reply; the handler does not run again.
/// assert!(matches!(ledger.begin(&scope, &request).await?, Begin::Stored(stored) if stored == reply));
/// # Ok(())
/// # }
/// ```
pub struct MemoryLedger {
    epoch: u64,
    limits: LedgerLimits,
    state: Mutex<State>,
}

struct State {
    sessions: HashMap<String, SessionLedger>,
    next_token: u64,
    last_sweep: Instant,
}

#[derive(Default)]
struct SessionLedger {
    closed_at: Option<Instant>,
    scopes: HashMap<String, Scope>,
}

struct Scope {
    /// The highest seq ever accepted.
    hwm: u64,
    /// The client has the replies of every seq up to this one.
    acked: u64,
    entries: BTreeMap<u64, Entry>,
    /// The encoded length of the stored replies.
    bytes: usize,
    last_used: Instant,
}

enum Entry {
    Running {
        token: u64,
        digest: RequestDigest,
        state: watch::Receiver<RunState>,
    },
    Done {
        digest: RequestDigest,
        reply: StoredReply,
        at: Instant,
    },
}

impl Entry {
    fn digest(&self) -> RequestDigest {
        match self {
            Self::Running { digest, .. } | Self::Done { digest, .. } => *digest,
        }
    }
}

/// A run as its waiters see it.
#[derive(Clone)]
enum RunState {
    Running { deadline: Instant },
    Done(StoredReply),
    Lost,
}

/// The guard of a [`Lease`] of this ledger: the sender of its run's state.
/// Dropped without a finish (a panic, an abort), it closes the channel: the
/// waiters get Unknown at once, and the entry counts as given up
/// ([`run_is_live`]) and goes with the next access or sweep.
type LeaseGuard = watch::Sender<RunState>;

/// Shows its epoch and how many scopes it holds, not their keys.
impl fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLedger")
            .field("epoch", &self.epoch)
            .field("scopes", &self.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every change is made of single map operations on values that stay
    // valid in between: a panic while it was held leaves a usable state.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn scope_mut(&mut self, scope: &LedgerScope) -> Option<&mut Scope> {
        self.sessions
            .get_mut(&scope.session)?
            .scopes
            .get_mut(&scope.instance)
    }
}

impl Scope {
    fn new(now: Instant) -> Self {
        Self {
            hwm: 0,
            acked: 0,
            entries: BTreeMap::new(),
            bytes: 0,
            last_used: now,
        }
    }

    /// Releases the replies older than the age bound and forgets the runs
    /// given up (lease lapsed, lease dropped).
    fn expire(&mut self, now: Instant, limits: &LedgerLimits) {
        let mut freed = 0;
        self.entries.retain(|_, entry| match entry {
            Entry::Done { reply, at, .. } => {
                let keep = now.duration_since(*at) < limits.max_age;
                if !keep {
                    freed += reply.len();
                }
                keep
            }
            Entry::Running { state, .. } => run_is_live(state, now),
        });
        self.bytes -= freed;
    }

    /// The client has every reply up to `ack`.
    fn acknowledge(&mut self, ack: u64) {
        if ack <= self.acked {
            return;
        }
        self.acked = ack;
        let mut freed = 0;
        self.entries.retain(|&seq, entry| match entry {
            Entry::Done { reply, .. } if seq <= ack => {
                freed += reply.len();
                false
            }
            _ => true,
        });
        self.bytes -= freed;
    }

    /// Removes the run of `seq` if it is still the one of `token`.
    fn remove_run(&mut self, seq: u64, token: u64) -> bool {
        let held = matches!(
            self.entries.get(&seq),
            Some(Entry::Running { token: held, .. }) if *held == token
        );
        if held {
            self.entries.remove(&seq);
        }
        held
    }

    /// Releases the oldest replies until the count and byte bounds hold.
    fn enforce_bounds(&mut self, limits: &LedgerLimits) {
        loop {
            let mut stored = 0;
            let mut oldest: Option<(Instant, u64)> = None;
            for (&seq, entry) in &self.entries {
                if let Entry::Done { at, .. } = entry {
                    stored += 1;
                    if oldest.is_none_or(|old| (*at, seq) < old) {
                        oldest = Some((*at, seq));
                    }
                }
            }
            if stored <= limits.max_replies && self.bytes <= limits.max_bytes {
                return;
            }
            let Some((_, seq)) = oldest else { return };
            if let Some(Entry::Done { reply, .. }) = self.entries.remove(&seq) {
                self.bytes -= reply.len();
            }
        }
    }

    /// The decision for `request` on an existing entry or the marks, the
    /// same for [`begin`](MemoryLedger::begin) and
    /// [`lookup`](MemoryLedger::lookup): `None` when the key is new.
    fn known(&self, request: &LedgerRequest) -> Option<Known> {
        match self.entries.get(&request.seq) {
            Some(entry) if entry.digest() != request.digest => Some(Known::KeyReused),
            Some(Entry::Done { reply, .. }) => Some(Known::Stored(reply.clone())),
            Some(Entry::Running { state, .. }) => Some(Known::Running(wait_for(state.clone()))),
            None if request.seq <= self.hwm.max(self.acked) => Some(Known::Unknown),
            None => None,
        }
    }

    /// Whether nothing here needs keeping any more.
    fn is_removable(
        &self,
        closed_at: Option<Instant>,
        now: Instant,
        limits: &LedgerLimits,
    ) -> bool {
        self.entries.is_empty()
            && (closed_at.is_some_and(|closed| now.duration_since(closed) >= limits.max_age)
                || now.duration_since(self.last_used) >= limits.idle_timeout)
    }
}

/// What a scope knows of a key that is not new.
enum Known {
    Stored(StoredReply),
    Running(RunWait),
    Unknown,
    KeyReused,
}

/// Whether a run still holds its lease: not given up, not lapsed.
fn run_is_live(state: &watch::Receiver<RunState>, now: Instant) -> bool {
    // A closed channel whose last value is not Done: the lease was dropped
    // without the guard's help (the ledger was gone then).
    if state.has_changed().is_err() {
        return false;
    }
    matches!(*state.borrow(), RunState::Running { deadline } if now < deadline)
}

/// The outcome of a run for a retry: the reply, or Unknown once the run is
/// given up or its lease lapses, whichever comes first.
fn wait_for(mut state: watch::Receiver<RunState>) -> RunWait {
    RunWait::new(async move {
        loop {
            let deadline = match &*state.borrow_and_update() {
                RunState::Done(reply) => return RunOutcome::Reply(reply.clone()),
                RunState::Lost => return RunOutcome::Unknown,
                RunState::Running { deadline } => *deadline,
            };
            tokio::select! {
                biased;
                changed = state.changed() => {
                    if changed.is_err() {
                        // The sender is gone: a value sent just before
                        // counts; otherwise the run was given up.
                        return match &*state.borrow() {
                            RunState::Done(reply) => RunOutcome::Reply(reply.clone()),
                            _ => RunOutcome::Unknown,
                        };
                    }
                }
                () = tokio::time::sleep_until(deadline) => return RunOutcome::Unknown,
            }
        }
    })
}

/// `seq` 0 and an `ack` not below `seq` are malformed keys.
fn is_bad_key(request: &LedgerRequest) -> bool {
    request.seq == 0 || request.ack >= request.seq
}

impl MemoryLedger {
    /// An empty ledger with a new random epoch and the default bounds.
    ///
    /// ```
    /// use webwire_server::ledger::MemoryLedger;
    ///
    /// assert_ne!(MemoryLedger::new().current_epoch(), MemoryLedger::new().current_epoch());
    /// ```
    pub fn new() -> Self {
        Self::with_limits(LedgerLimits::default())
    }

    /// An empty ledger with a new random epoch and these bounds.
    ///
    /// ```
    /// use webwire_server::ledger::{LedgerLimits, MemoryLedger};
    ///
    /// let limits = LedgerLimits { max_replies: 8, ..LedgerLimits::default() };
    /// assert_eq!(MemoryLedger::with_limits(limits).limits().max_replies, 8);
    /// ```
    pub fn with_limits(limits: LedgerLimits) -> Self {
        Self {
            epoch: random_epoch(),
            limits,
            state: Mutex::new(State {
                sessions: HashMap::new(),
                next_token: 1,
                last_sweep: Instant::now(),
            }),
        }
    }

    /// The bounds.
    ///
    /// ```
    /// use webwire_server::ledger::{LedgerLimits, MemoryLedger};
    ///
    /// assert_eq!(MemoryLedger::new().limits(), &LedgerLimits::default());
    /// ```
    pub fn limits(&self) -> &LedgerLimits {
        &self.limits
    }

    /// The ledger epoch (never 0), without a future.
    ///
    /// ```
    /// use webwire_server::ledger::MemoryLedger;
    ///
    /// assert_ne!(MemoryLedger::new().current_epoch(), 0);
    /// ```
    pub fn current_epoch(&self) -> u64 {
        self.epoch
    }

    /// How many scopes (session and client instance) are held.
    ///
    /// ```
    /// use webwire_server::ledger::MemoryLedger;
    ///
    /// assert_eq!(MemoryLedger::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        lock(&self.state)
            .sessions
            .values()
            .map(|session| session.scopes.len())
            .sum()
    }

    /// Whether no scope is held.
    ///
    /// ```
    /// use webwire_server::ledger::MemoryLedger;
    ///
    /// assert!(MemoryLedger::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        lock(&self.state).sessions.is_empty()
    }

    /// Releases expired replies, forgets runs given up, and removes the
    /// scopes past their retention; returns how many scopes were removed.
    /// Operations do this on their own every 10 seconds.
    ///
    /// ```
    /// use webwire_server::ledger::MemoryLedger;
    ///
    /// assert_eq!(MemoryLedger::new().remove_expired(), 0);
    /// ```
    pub fn remove_expired(&self) -> usize {
        let now = Instant::now();
        self.sweep(&mut lock(&self.state), now)
    }

    fn sweep(&self, state: &mut State, now: Instant) -> usize {
        state.last_sweep = now;
        let limits = &self.limits;
        let mut removed = 0;
        state.sessions.retain(|_, session| {
            let closed_at = session.closed_at;
            session.scopes.retain(|_, scope| {
                scope.expire(now, limits);
                let keep = !scope.is_removable(closed_at, now, limits);
                removed += usize::from(!keep);
                keep
            });
            !session.scopes.is_empty()
        });
        removed
    }

    /// The state, swept first when it is time.
    fn state(&self, now: Instant) -> MutexGuard<'_, State> {
        let mut state = lock(&self.state);
        if now.duration_since(state.last_sweep) >= SWEEP_EVERY {
            self.sweep(&mut state, now);
        }
        state
    }

    fn begin_now(&self, scope_key: &LedgerScope, request: &LedgerRequest) -> Begin {
        if is_bad_key(request) {
            return Begin::BadKey;
        }
        if request.epoch != self.epoch {
            return Begin::Unknown;
        }
        let now = Instant::now();
        let mut state = self.state(now);
        let token = state.next_token;
        let scope = state
            .sessions
            .entry(scope_key.session.clone())
            .or_default()
            .scopes
            .entry(scope_key.instance.clone())
            .or_insert_with(|| Scope::new(now));
        scope.last_used = now;
        scope.expire(now, &self.limits);
        scope.acknowledge(request.ack);
        match scope.known(request) {
            Some(Known::Stored(reply)) => return Begin::Stored(reply),
            Some(Known::Running(wait)) => return Begin::Running(wait),
            Some(Known::Unknown) => return Begin::Unknown,
            Some(Known::KeyReused) => return Begin::KeyReused,
            None => {}
        }
        scope.hwm = request.seq;
        let (sender, receiver) = watch::channel(RunState::Running {
            deadline: now + self.limits.lease_ttl,
        });
        scope.entries.insert(
            request.seq,
            Entry::Running {
                token,
                digest: request.digest,
                state: receiver,
            },
        );
        state.next_token += 1;
        drop(state);
        Begin::Run(Lease::new(scope_key.clone(), request.seq, token).with_guard(sender))
    }

    fn lookup_now(&self, scope_key: &LedgerScope, request: &LedgerRequest) -> Lookup {
        if is_bad_key(request) {
            return Lookup::BadKey;
        }
        let now = Instant::now();
        let mut state = self.state(now);
        let Some(scope) = state.scope_mut(scope_key) else {
            return Lookup::Unretained;
        };
        if request.epoch != self.epoch {
            return Lookup::Unknown;
        }
        scope.last_used = now;
        scope.expire(now, &self.limits);
        scope.acknowledge(request.ack);
        match scope.known(request) {
            Some(Known::Stored(reply)) => Lookup::Stored(reply),
            Some(Known::Running(wait)) => Lookup::Running(wait),
            Some(Known::Unknown) => Lookup::Unknown,
            Some(Known::KeyReused) => Lookup::KeyReused,
            None => Lookup::NotRun,
        }
    }

    fn renew_now(&self, lease: &Lease) -> bool {
        let now = Instant::now();
        let mut state = self.state(now);
        let Some(scope) = state.scope_mut(lease.scope()) else {
            return false;
        };
        let held = matches!(
            scope.entries.get(&lease.seq()),
            Some(Entry::Running { token, state, .. })
                if *token == lease.token() && run_is_live(state, now)
        );
        if !held {
            return false;
        }
        let Some(sender) = lease.guard::<LeaseGuard>() else {
            return false;
        };
        sender.send_replace(RunState::Running {
            deadline: now + self.limits.lease_ttl,
        });
        true
    }

    fn finish_now(&self, mut lease: Lease, reply: StoredReply) -> Finish {
        let sender = lease.take_guard::<LeaseGuard>();
        let now = Instant::now();
        let mut state = self.state(now);
        let outcome = match state.scope_mut(lease.scope()) {
            None => Finish::LeaseLost,
            Some(scope) => {
                let live = matches!(
                    scope.entries.get(&lease.seq()),
                    Some(Entry::Running { token, state, .. })
                        if *token == lease.token() && run_is_live(state, now)
                );
                let digest = scope.entries.get(&lease.seq()).map(Entry::digest);
                // Removed in every case: replaced by the reply, or a lapsed
                // run of this lease forgotten.
                scope.remove_run(lease.seq(), lease.token());
                match digest {
                    Some(digest) if live => {
                        if lease.seq() <= scope.acked || reply.len() > self.limits.max_bytes {
                            Finish::NotKept
                        } else {
                            scope.bytes += reply.len();
                            scope.entries.insert(
                                lease.seq(),
                                Entry::Done {
                                    digest,
                                    reply: reply.clone(),
                                    at: now,
                                },
                            );
                            scope.enforce_bounds(&self.limits);
                            if scope.entries.contains_key(&lease.seq()) {
                                Finish::Stored
                            } else {
                                Finish::NotKept
                            }
                        }
                    }
                    _ => Finish::LeaseLost,
                }
            }
        };
        drop(state);
        if let Some(sender) = sender {
            sender.send_replace(match outcome {
                Finish::Stored | Finish::NotKept => RunState::Done(reply),
                Finish::LeaseLost => RunState::Lost,
            });
        }
        outcome
    }

    fn acknowledge_now(&self, scope_key: &LedgerScope, ack: u64) {
        let now = Instant::now();
        if let Some(scope) = self.state(now).scope_mut(scope_key) {
            scope.acknowledge(ack);
        }
    }

    fn session_closed_now(&self, session: &str) {
        let now = Instant::now();
        if let Some(session) = self.state(now).sessions.get_mut(session) {
            session.closed_at.get_or_insert(now);
        }
    }
}

impl RequestLedger for MemoryLedger {
    async fn epoch(&self) -> Result<u64, LedgerError> {
        Ok(self.epoch)
    }

    async fn begin(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<Begin, LedgerError> {
        Ok(self.begin_now(scope, request))
    }

    async fn lookup(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> Result<Lookup, LedgerError> {
        Ok(self.lookup_now(scope, request))
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, LedgerError> {
        Ok(self.renew_now(lease))
    }

    async fn finish(&self, lease: Lease, reply: StoredReply) -> Result<Finish, LedgerError> {
        Ok(self.finish_now(lease, reply))
    }

    async fn acknowledge(&self, scope: &LedgerScope, ack: u64) -> Result<(), LedgerError> {
        self.acknowledge_now(scope, ack);
        Ok(())
    }

    async fn session_closed(&self, session: &str) -> Result<(), LedgerError> {
        self.session_closed_now(session);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use webwire_proto::Encoding;

    use super::*;

    const SESSION: &str = "session-key";
    const INSTANCE: &str = "instance-0123456789";

    fn scope() -> LedgerScope {
        LedgerScope::new(SESSION, INSTANCE)
    }

    fn digest(name: &str) -> RequestDigest {
        RequestDigest::new(name.as_bytes(), Encoding::Utf8, b"payload")
    }

    fn request(ledger: &MemoryLedger, seq: u64, ack: u64) -> LedgerRequest {
        LedgerRequest {
            seq,
            epoch: ledger.current_epoch(),
            ack,
            digest: digest("pay"),
        }
    }

    /// A binary reply whose payload is `body`.
    fn reply(body: &[u8]) -> StoredReply {
        let mut frame = vec![191, 9, 9, 9, 9, 9, 9, 9, 9];
        frame.extend_from_slice(body);
        StoredReply::from_frame(Bytes::from(frame)).unwrap()
    }

    async fn run(ledger: &MemoryLedger, request: &LedgerRequest) -> Lease {
        match ledger.begin(&scope(), request).await.unwrap() {
            Begin::Run(lease) => lease,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    /// Runs `request` to completion with `body` as its reply.
    async fn complete(ledger: &MemoryLedger, request: &LedgerRequest, body: &[u8]) -> Finish {
        let lease = run(ledger, request).await;
        ledger.finish(lease, reply(body)).await.unwrap()
    }

    async fn begin(ledger: &MemoryLedger, request: &LedgerRequest) -> Begin {
        ledger.begin(&scope(), request).await.unwrap()
    }

    async fn lookup(ledger: &MemoryLedger, request: &LedgerRequest) -> Lookup {
        ledger.lookup(&scope(), request).await.unwrap()
    }

    fn stored(begin: &Begin) -> Option<&[u8]> {
        match begin {
            Begin::Stored(reply) => Some(&reply.body()[..]),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bad_keys_are_refused_before_anything() {
        let ledger = MemoryLedger::new();
        for (seq, ack) in [(0, 0), (3, 3), (3, 4)] {
            let request = request(&ledger, seq, ack);
            assert!(matches!(begin(&ledger, &request).await, Begin::BadKey));
            assert!(matches!(lookup(&ledger, &request).await, Lookup::BadKey));
        }
        // Even under another epoch: the key itself is malformed.
        let other = LedgerRequest {
            epoch: ledger.current_epoch() ^ 1,
            ..request(&ledger, 2, 2)
        };
        assert!(matches!(begin(&ledger, &other).await, Begin::BadKey));
        assert!(ledger.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn another_epoch_is_unknown_and_never_runs() {
        let ledger = MemoryLedger::new();
        let old = LedgerRequest {
            epoch: ledger.current_epoch() ^ 1,
            ..request(&ledger, 1, 0)
        };
        assert!(matches!(begin(&ledger, &old).await, Begin::Unknown));
        assert!(ledger.is_empty(), "nothing recorded for it");
        // A restarted server: a new ledger, a new epoch.
        let restarted = MemoryLedger::new();
        assert_ne!(restarted.current_epoch(), ledger.current_epoch());
        let before_restart = request(&ledger, 1, 0);
        assert!(matches!(
            begin(&restarted, &before_restart).await,
            Begin::Unknown
        ));
        assert_eq!(restarted.epoch().await.unwrap(), restarted.current_epoch());
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_request_answers_its_retries_from_the_store() {
        let ledger = MemoryLedger::new();
        let first = request(&ledger, 1, 0);
        assert_eq!(complete(&ledger, &first, b"paid").await, Finish::Stored);
        assert_eq!(stored(&begin(&ledger, &first).await), Some(&b"paid"[..]));
        // Again, under the retry's id: the stored reply re-encodes.
        let Begin::Stored(again) = begin(&ledger, &first).await else {
            panic!("stored");
        };
        assert_eq!(
            &again.to_frame(webwire_proto::RequestId::from(5))[..9],
            [191, 5, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_reused_for_another_request_is_refused() {
        let ledger = MemoryLedger::new();
        let pay = request(&ledger, 1, 0);
        let other = LedgerRequest {
            digest: digest("refund"),
            ..pay
        };
        // While running.
        let lease = run(&ledger, &pay).await;
        assert!(matches!(begin(&ledger, &other).await, Begin::KeyReused));
        assert!(matches!(lookup(&ledger, &other).await, Lookup::KeyReused));
        // Once done.
        ledger.finish(lease, reply(b"ok")).await.unwrap();
        assert!(matches!(begin(&ledger, &other).await, Begin::KeyReused));
        assert_eq!(stored(&begin(&ledger, &pay).await), Some(&b"ok"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_of_a_running_request_waits_for_its_reply() {
        let ledger = MemoryLedger::new();
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        let Begin::Running(first) = begin(&ledger, &pay).await else {
            panic!("running");
        };
        let Begin::Running(second) = begin(&ledger, &pay).await else {
            panic!("running");
        };
        let waiting = tokio::spawn(async move { (first.await, second.await) });
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());
        assert_eq!(
            ledger.finish(lease, reply(b"r")).await.unwrap(),
            Finish::Stored
        );
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first, RunOutcome::Reply(reply(b"r")));
        assert_eq!(second, RunOutcome::Reply(reply(b"r")));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_below_the_marks_without_an_entry_are_unknown() {
        let ledger = MemoryLedger::new();
        complete(&ledger, &request(&ledger, 1, 0), b"a").await;
        complete(&ledger, &request(&ledger, 2, 1), b"b").await;
        // 1 was acknowledged with 2 and released: forgotten, never run again.
        assert!(matches!(
            begin(&ledger, &request(&ledger, 1, 0)).await,
            Begin::Unknown
        ));
        // A key skipped by the client (3) below the high-water mark (4).
        complete(&ledger, &request(&ledger, 4, 1), b"d").await;
        assert!(matches!(
            begin(&ledger, &request(&ledger, 3, 1)).await,
            Begin::Unknown
        ));
        // Above the high-water mark (4) but acknowledged (7): the client
        // says it has it, so it never runs.
        ledger.acknowledge(&scope(), 7).await.unwrap();
        assert!(matches!(
            begin(&ledger, &request(&ledger, 6, 5)).await,
            Begin::Unknown
        ));
        assert!(matches!(
            lookup(&ledger, &request(&ledger, 7, 5)).await,
            Lookup::Unknown
        ));
        assert!(matches!(
            begin(&ledger, &request(&ledger, 8, 7)).await,
            Begin::Run(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledged_replies_are_released() {
        let ledger = MemoryLedger::new();
        for seq in 1..=3 {
            complete(&ledger, &request(&ledger, seq, 0), b"x").await;
        }
        ledger.acknowledge(&scope(), 2).await.unwrap();
        assert!(matches!(
            begin(&ledger, &request(&ledger, 2, 0)).await,
            Begin::Unknown
        ));
        assert_eq!(
            stored(&begin(&ledger, &request(&ledger, 3, 0)).await),
            Some(&b"x"[..])
        );
        // An ack carried by a request releases too.
        complete(&ledger, &request(&ledger, 4, 3), b"y").await;
        assert!(matches!(
            begin(&ledger, &request(&ledger, 3, 0)).await,
            Begin::Unknown
        ));
        // Acknowledging a scope the ledger does not hold does nothing.
        ledger
            .acknowledge(&LedgerScope::new("other", INSTANCE), 9)
            .await
            .unwrap();
        assert_eq!(ledger.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_acknowledged_while_running_is_not_kept() {
        let ledger = MemoryLedger::new();
        let lease = run(&ledger, &request(&ledger, 1, 0)).await;
        let Begin::Running(wait) = begin(&ledger, &request(&ledger, 1, 0)).await else {
            panic!("running");
        };
        ledger.acknowledge(&scope(), 1).await.unwrap();
        assert_eq!(
            ledger.finish(lease, reply(b"z")).await.unwrap(),
            Finish::NotKept
        );
        assert_eq!(wait.await, RunOutcome::Reply(reply(b"z")));
        assert!(matches!(
            begin(&ledger, &request(&ledger, 1, 0)).await,
            Begin::Unknown
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn count_bound_releases_the_oldest() {
        let ledger = MemoryLedger::with_limits(LedgerLimits {
            max_replies: 2,
            ..LedgerLimits::default()
        });
        // 1 finishes last: it is the newest reply, 2 the oldest.
        let one = run(&ledger, &request(&ledger, 1, 0)).await;
        complete(&ledger, &request(&ledger, 2, 0), b"2").await;
        tokio::time::advance(Duration::from_secs(1)).await;
        complete(&ledger, &request(&ledger, 3, 0), b"3").await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            ledger.finish(one, reply(b"1")).await.unwrap(),
            Finish::Stored
        );
        assert!(matches!(
            begin(&ledger, &request(&ledger, 2, 0)).await,
            Begin::Unknown
        ));
        assert_eq!(
            stored(&begin(&ledger, &request(&ledger, 1, 0)).await),
            Some(&b"1"[..])
        );
        assert_eq!(
            stored(&begin(&ledger, &request(&ledger, 3, 0)).await),
            Some(&b"3"[..])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn byte_bound_releases_the_oldest_and_refuses_a_reply_too_large() {
        // Each reply is 9 + 10 bytes.
        let ledger = MemoryLedger::with_limits(LedgerLimits {
            max_bytes: 40,
            ..LedgerLimits::default()
        });
        let body = [7u8; 10];
        for seq in 1..=3 {
            assert_eq!(
                complete(&ledger, &request(&ledger, seq, 0), &body).await,
                Finish::Stored
            );
        }
        assert!(matches!(
            begin(&ledger, &request(&ledger, 1, 0)).await,
            Begin::Unknown
        ));
        assert!(stored(&begin(&ledger, &request(&ledger, 2, 0)).await).is_some());
        assert!(stored(&begin(&ledger, &request(&ledger, 3, 0)).await).is_some());
        // A reply larger than the bound: its caller has it, retries do not.
        let lease = run(&ledger, &request(&ledger, 4, 0)).await;
        let Begin::Running(wait) = begin(&ledger, &request(&ledger, 4, 0)).await else {
            panic!("running");
        };
        let big = [1u8; 41];
        assert_eq!(
            ledger.finish(lease, reply(&big)).await.unwrap(),
            Finish::NotKept
        );
        assert_eq!(wait.await, RunOutcome::Reply(reply(&big)));
        assert!(matches!(
            begin(&ledger, &request(&ledger, 4, 0)).await,
            Begin::Unknown
        ));
        assert!(stored(&begin(&ledger, &request(&ledger, 3, 0)).await).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn age_bound_releases_replies() {
        let ledger = MemoryLedger::new();
        let max_age = ledger.limits().max_age;
        complete(&ledger, &request(&ledger, 1, 0), b"a").await;
        tokio::time::advance(max_age / 2).await;
        complete(&ledger, &request(&ledger, 2, 0), b"b").await;
        tokio::time::advance(max_age / 2 - Duration::from_millis(1)).await;
        assert!(stored(&begin(&ledger, &request(&ledger, 1, 0)).await).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(
            begin(&ledger, &request(&ledger, 1, 0)).await,
            Begin::Unknown
        ));
        assert!(stored(&begin(&ledger, &request(&ledger, 2, 0)).await).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_lease_stores_nothing_and_its_retries_are_unknown() {
        let ledger = MemoryLedger::new();
        let ttl = ledger.limits().lease_ttl;
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        let Begin::Running(wait) = begin(&ledger, &pay).await else {
            panic!("running");
        };
        let waiting = tokio::spawn(tokio::time::timeout(ttl * 2, wait));
        tokio::time::advance(ttl).await;
        // The waiter gives up at the lease's end (before the timeout's),
        // never hangs.
        assert_eq!(waiting.await.unwrap(), Ok(RunOutcome::Unknown));
        assert!(!ledger.renew(&lease).await.unwrap());
        assert!(matches!(begin(&ledger, &pay).await, Begin::Unknown));
        assert_eq!(
            ledger.finish(lease, reply(b"late")).await.unwrap(),
            Finish::LeaseLost
        );
        assert!(matches!(begin(&ledger, &pay).await, Begin::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_finish_is_fenced_out() {
        // A lease shorter than the sweep interval: no sweep forgets the
        // lapsed run before the finish comes.
        let ledger = MemoryLedger::with_limits(LedgerLimits {
            lease_ttl: SWEEP_EVERY / 2,
            ..LedgerLimits::default()
        });
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        tokio::time::advance(ledger.limits().lease_ttl).await;
        // Nothing looked at the entry since it lapsed: the finish itself
        // must see that the lease is no longer held.
        assert_eq!(
            ledger.finish(lease, reply(b"late")).await.unwrap(),
            Finish::LeaseLost
        );
        assert!(matches!(begin(&ledger, &pay).await, Begin::Unknown));
        assert!(matches!(lookup(&ledger, &pay).await, Lookup::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_lease_outlives_the_lease_time() {
        let ledger = MemoryLedger::new();
        let ttl = ledger.limits().lease_ttl;
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        let Begin::Running(wait) = begin(&ledger, &pay).await else {
            panic!("running");
        };
        let waiting = tokio::spawn(wait);
        for _ in 0..4 {
            tokio::time::advance(ttl - Duration::from_secs(1)).await;
            assert!(ledger.renew(&lease).await.unwrap());
        }
        assert!(!waiting.is_finished());
        assert!(matches!(begin(&ledger, &pay).await, Begin::Running(_)));
        assert_eq!(
            ledger.finish(lease, reply(b"ok")).await.unwrap(),
            Finish::Stored
        );
        assert_eq!(waiting.await.unwrap(), RunOutcome::Reply(reply(b"ok")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_lease_gives_the_run_up() {
        let ledger = MemoryLedger::new();
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        let Begin::Running(wait) = begin(&ledger, &pay).await else {
            panic!("running");
        };
        drop(lease);
        assert_eq!(wait.await, RunOutcome::Unknown);
        assert!(matches!(begin(&ledger, &pay).await, Begin::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_panics_or_is_aborted_answers_its_waiters_unknown() {
        let ledger = MemoryLedger::new();
        for seq in [1, 2] {
            let pay = request(&ledger, seq, 0);
            let lease = run(&ledger, &pay).await;
            let Begin::Running(wait) = begin(&ledger, &pay).await else {
                panic!("running");
            };
            let handler = tokio::spawn(async move {
                let _lease = lease;
                if seq == 1 {
                    panic!("the handler failed");
                }
                std::future::pending::<()>().await;
            });
            if seq == 2 {
                tokio::task::yield_now().await;
                handler.abort();
            }
            let joined = handler.await.unwrap_err();
            assert_eq!(
                (joined.is_panic(), joined.is_cancelled()),
                (seq == 1, seq == 2)
            );
            assert_eq!(wait.await, RunOutcome::Unknown);
            assert!(matches!(begin(&ledger, &pay).await, Begin::Unknown));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_session_stays_answerable_for_the_age_bound() {
        let ledger = MemoryLedger::new();
        let max_age = ledger.limits().max_age;
        // The logout request closes its own session while it runs.
        let logout = request(&ledger, 1, 0);
        let lease = run(&ledger, &logout).await;
        ledger.session_closed(SESSION).await.unwrap();
        assert_eq!(
            ledger.finish(lease, reply(b"bye")).await.unwrap(),
            Finish::Stored
        );
        // The retry comes on a connection without a session.
        let Lookup::Stored(again) = lookup(&ledger, &logout).await else {
            panic!("stored");
        };
        assert_eq!(&again.body()[..], b"bye");
        // A key this scope never accepted never ran; one of another epoch
        // is unknown; a scope never seen is not retained.
        assert!(matches!(
            lookup(&ledger, &request(&ledger, 2, 1)).await,
            Lookup::NotRun
        ));
        let old = LedgerRequest {
            epoch: ledger.current_epoch() ^ 1,
            ..logout
        };
        assert!(matches!(lookup(&ledger, &old).await, Lookup::Unknown));
        assert!(matches!(
            ledger
                .lookup(&LedgerScope::new(SESSION, "another-instance-id"), &logout)
                .await
                .unwrap(),
            Lookup::Unretained
        ));
        // Past the age bound, nothing is left.
        tokio::time::advance(max_age).await;
        assert_eq!(ledger.remove_expired(), 1);
        assert!(ledger.is_empty());
        assert!(matches!(lookup(&ledger, &logout).await, Lookup::Unretained));
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_never_runs_and_sees_runs_under_way() {
        let ledger = MemoryLedger::new();
        let pay = request(&ledger, 1, 0);
        let lease = run(&ledger, &pay).await;
        let Lookup::Running(wait) = lookup(&ledger, &pay).await else {
            panic!("running");
        };
        // A new key through lookup: not run, not recorded.
        assert!(matches!(
            lookup(&ledger, &request(&ledger, 2, 0)).await,
            Lookup::NotRun
        ));
        assert!(matches!(
            begin(&ledger, &request(&ledger, 2, 0)).await,
            Begin::Run(_)
        ));
        ledger.finish(lease, reply(b"p")).await.unwrap();
        assert_eq!(wait.await, RunOutcome::Reply(reply(b"p")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_begins_of_one_key_run_it_once() {
        use std::sync::Arc;

        let ledger = Arc::new(MemoryLedger::new());
        let pay = request(&ledger, 1, 0);
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks = (0..16)
            .map(|_| {
                let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    match ledger.begin(&scope(), &pay).await.unwrap() {
                        Begin::Run(lease) => {
                            tokio::task::yield_now().await;
                            ledger.finish(lease, reply(b"once")).await.unwrap();
                            (1, RunOutcome::Reply(reply(b"once")))
                        }
                        Begin::Running(wait) => (0, wait.await),
                        Begin::Stored(reply) => (0, RunOutcome::Reply(reply)),
                        other => panic!("unexpected {other:?}"),
                    }
                })
            })
            .collect::<Vec<_>>();
        let mut runs = 0;
        for task in tasks {
            let (ran, outcome) = task.await.unwrap();
            runs += ran;
            assert_eq!(outcome, RunOutcome::Reply(reply(b"once")));
        }
        assert_eq!(runs, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_scopes_of_live_sessions_are_removed_after_the_idle_timeout() {
        let ledger = MemoryLedger::with_limits(LedgerLimits {
            idle_timeout: Duration::from_secs(3600),
            ..LedgerLimits::default()
        });
        complete(&ledger, &request(&ledger, 1, 0), b"a").await;
        // A run under way keeps its scope however long it lasts.
        let other = LedgerScope::new("other-session", INSTANCE);
        let lease = match ledger.begin(&other, &request(&ledger, 1, 0)).await.unwrap() {
            Begin::Run(lease) => lease,
            other => panic!("{other:?}"),
        };
        for _ in 0..(3600 / 20) {
            tokio::time::advance(Duration::from_secs(20)).await;
            assert!(ledger.renew(&lease).await.unwrap());
        }
        // The reply aged out at 5 min; the marks stayed until the idle
        // timeout, then went with the sweep an operation makes.
        assert_eq!(ledger.len(), 1);
        assert_eq!(
            ledger.finish(lease, reply(b"b")).await.unwrap(),
            Finish::Stored
        );
        tokio::time::advance(ledger.limits().max_age).await;
        assert_eq!(ledger.remove_expired(), 1);
        assert!(ledger.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_marks_of_a_quiet_live_scope_outlast_its_replies() {
        let ledger = MemoryLedger::new();
        complete(&ledger, &request(&ledger, 1, 0), b"a").await;
        tokio::time::advance(ledger.limits().max_age).await;
        assert_eq!(ledger.remove_expired(), 0);
        // The reply is gone, the key still known as old.
        assert!(matches!(
            begin(&ledger, &request(&ledger, 1, 0)).await,
            Begin::Unknown
        ));
        assert_eq!(ledger.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn debug_shows_no_session_key() {
        let ledger = MemoryLedger::new();
        let lease = run(&ledger, &request(&ledger, 1, 0)).await;
        let shown = format!("{ledger:?} {lease:?}");
        assert!(!shown.contains(SESSION), "{shown}");
    }
}
