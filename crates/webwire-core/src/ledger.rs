//! The request ledger of webwire 2.1 (docs/protocol.md section 14, "Keyed
//! requests"): what makes a keyed request run **at most once** however
//! often a client resends it, and gives every retry a definite answer.
//!
//! A keyed request is named by its [`LedgerScope`] (the session and the
//! client instance) and a sequence number `seq` (1, 2, 3, ... per scope).
//! Per scope the ledger keeps a high-water mark (the highest seq ever
//! accepted), the client's cumulative acknowledgement, and per seq either a
//! "running" marker held by a [`Lease`] or the stored reply. The decision
//! table of [`RequestLedger::begin`] is the contract's:
//!
//! | condition (in this order) | answer |
//! |---|---|
//! | `seq == 0` or `ack >= seq` | [`Begin::BadKey`] |
//! | `epoch` is not the ledger's | [`Begin::Unknown`] |
//! | an entry with another [`RequestDigest`] | [`Begin::KeyReused`] |
//! | a stored reply | [`Begin::Stored`] |
//! | a run under a live lease | [`Begin::Running`] (await its outcome) |
//! | no entry, `seq <= max(hwm, acked)` | [`Begin::Unknown`] (forgotten) |
//! | otherwise | [`Begin::Run`]: `hwm = seq`, marked running |
//!
//! Stored replies are released when acknowledged and are bounded per scope
//! by count, bytes and age ([`LedgerLimits`]); a released key answers
//! [`Begin::Unknown`], never a second run. After its session is closed a
//! scope stays answerable ([`RequestLedger::lookup`]) for the age bound, so
//! that a retry of the request that closed it (a logout) gets its reply.
//!
//! Implementations: `webwire-server`'s `MemoryLedger` (one process; its
//! epoch is new on every start); a Redis ledger for a cluster.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use webwire_proto::{Encoding, KeyDigest, MessageType, RequestId};

/// Whose keyed requests: one client instance within one session.
///
/// Its `Debug` shows the session key as its digest, never the key.
///
/// ```
/// use webwire_core::ledger::LedgerScope;
///
/// let scope = LedgerScope::new("session-key", "tab-3f9a0c2b7d41e865");
/// assert_eq!(scope.instance, "tab-3f9a0c2b7d41e865");
/// assert!(!format!("{scope:?}").contains("session-key"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LedgerScope {
    /// The session's key.
    pub session: String,
    /// The client instance id from ExtensionHello.
    pub instance: String,
}

impl LedgerScope {
    /// The scope of `instance` within the session `session`.
    ///
    /// ```
    /// use webwire_core::ledger::LedgerScope;
    ///
    /// assert_eq!(LedgerScope::new("s", "i").session, "s");
    /// ```
    pub fn new(session: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            session: session.into(),
            instance: instance.into(),
        }
    }
}

impl fmt::Debug for LedgerScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerScope")
            .field("session", &KeyDigest::new(&self.session))
            .field("instance", &self.instance)
            .finish()
    }
}

/// What a keyed request asks: its name, encoding and payload, hashed, so
/// that a retry is recognised as the same request and a key reused for
/// another request is refused (`KEY_REUSED`).
///
/// A SHA-1 of the three, the same on every node and in every version (so
/// that nodes of a rolling deploy agree). Not a defence against an
/// attacker: a client can only confuse its own keys.
///
/// ```
/// use webwire_core::ledger::RequestDigest;
/// use webwire_proto::Encoding;
///
/// let a = RequestDigest::new(b"pay", Encoding::Utf8, b"{\"cents\":100}");
/// assert_eq!(a, RequestDigest::new(b"pay", Encoding::Utf8, b"{\"cents\":100}"));
/// assert_ne!(a, RequestDigest::new(b"pay", Encoding::Binary, b"{\"cents\":100}"));
/// assert_ne!(a, RequestDigest::new(b"pa", Encoding::Utf8, b"y{\"cents\":100}"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestDigest(pub [u8; 20]);

impl RequestDigest {
    /// The digest of a request with this name, payload encoding and payload
    /// bytes (without the UTF-16 padding byte).
    ///
    /// ```
    /// use webwire_core::ledger::RequestDigest;
    /// use webwire_proto::Encoding;
    ///
    /// let digest = RequestDigest::new(b"logout", Encoding::Binary, b"");
    /// assert_eq!(digest.0.len(), 20);
    /// ```
    pub fn new(name: &[u8], encoding: Encoding, payload: &[u8]) -> Self {
        let mut hash = sha1_smol::Sha1::new();
        let encoding = match encoding {
            Encoding::Binary => 0u8,
            Encoding::Utf8 => 1,
            Encoding::Utf16 => 2,
        };
        // The name's length first: ("ab", "c") and ("a", "bc") differ.
        hash.update(&(name.len() as u64).to_le_bytes());
        hash.update(name);
        hash.update(&[encoding]);
        hash.update(payload);
        Self(hash.digest().bytes())
    }
}

impl fmt::Debug for RequestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestDigest(")?;
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A keyed request as the ledger sees it: the fields of KeyedRequest
/// besides the request id, name and payload, and the digest of those.
///
/// ```
/// use webwire_core::ledger::{LedgerRequest, RequestDigest};
/// use webwire_proto::Encoding;
///
/// let request = LedgerRequest {
///     seq: 4,
///     epoch: 0x5eed,
///     ack: 2,
///     digest: RequestDigest::new(b"pay", Encoding::Binary, b""),
/// };
/// assert!(request.ack < request.seq);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRequest {
    /// The request's sequence number in its scope (from 1).
    pub seq: u64,
    /// The ledger epoch under which the request was first sent.
    pub epoch: u64,
    /// The client has the replies of every seq up to this one.
    pub ack: u64,
    /// What the request asks.
    pub digest: RequestDigest,
}

/// A reply kept for retries: its message type and its bytes after the
/// request id, so that it can be sent again under the id of the retry.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use webwire_core::ledger::StoredReply;
/// use webwire_proto::{Payload, Reply, RequestId};
///
/// let mut frame = BytesMut::new();
/// Reply::new(RequestId::from(1), Payload::utf8("done")).encode(&mut frame);
/// let stored = StoredReply::from_frame(frame.freeze()).unwrap();
/// let again = stored.to_frame(RequestId::from(2));
/// assert_eq!(&again[..], b"\xc0\x02\x00\x00\x00\x00\x00\x00\x00done");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoredReply {
    kind: MessageType,
    body: Bytes,
}

impl fmt::Debug for StoredReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredReply")
            .field("kind", &self.kind)
            .field("len", &self.body.len())
            .finish()
    }
}

impl StoredReply {
    /// The bytes of an encoded 2.0 reply message (types 191 to 193, 0 to
    /// 5) after its type and request id, without copying them. `None` for
    /// any other message, or one shorter than a type and an id.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    ///
    /// // ReplyInternalError (2) with id 7.
    /// let frame = Bytes::from_static(&[2, 7, 0, 0, 0, 0, 0, 0, 0]);
    /// assert_eq!(StoredReply::from_frame(frame).unwrap().len(), 9);
    /// // A signal is not a reply.
    /// assert!(StoredReply::from_frame(Bytes::from_static(&[63, 0, 1])).is_none());
    /// ```
    pub fn from_frame(frame: Bytes) -> Option<Self> {
        let kind = MessageType::from_byte(*frame.first()?)?;
        if !is_reply(kind) || frame.len() < 9 {
            return None;
        }
        Some(Self {
            kind,
            body: frame.slice(9..),
        })
    }

    /// A reply of type `kind` whose bytes after the request id are `body`
    /// (as a store that kept both hands them back). `None` if `kind` is not
    /// a 2.0 reply type.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    /// use webwire_proto::MessageType;
    ///
    /// let stored = StoredReply::new(MessageType::ReplyBinary, Bytes::from_static(b"x")).unwrap();
    /// assert_eq!((stored.kind(), &stored.body()[..]), (MessageType::ReplyBinary, &b"x"[..]));
    /// assert!(StoredReply::new(MessageType::SignalBinary, Bytes::new()).is_none());
    /// ```
    pub fn new(kind: MessageType, body: Bytes) -> Option<Self> {
        is_reply(kind).then_some(Self { kind, body })
    }

    /// The reply's message type.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    /// use webwire_proto::MessageType;
    ///
    /// let stored = StoredReply::from_frame(Bytes::from_static(&[2, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    /// assert_eq!(stored.kind(), MessageType::ReplyInternalError);
    /// ```
    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The reply's bytes after its type and request id.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    ///
    /// let stored = StoredReply::from_frame(Bytes::from_static(&[191, 0, 0, 0, 0, 0, 0, 0, 0, 1])).unwrap();
    /// assert_eq!(&stored.body()[..], [1]);
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The length of the encoded message (what it counts against the
    /// ledger's byte bound).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    ///
    /// let stored = StoredReply::from_frame(Bytes::from_static(&[191, 0, 0, 0, 0, 0, 0, 0, 0, 1])).unwrap();
    /// assert_eq!(stored.len(), 10);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty: a type and an id at least
    pub fn len(&self) -> usize {
        9 + self.body.len()
    }

    /// The reply message answering the request `id`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use webwire_core::ledger::StoredReply;
    /// use webwire_proto::RequestId;
    ///
    /// let stored = StoredReply::from_frame(Bytes::from_static(&[2, 1, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    /// assert_eq!(&stored.to_frame(RequestId::from(3))[..], [2, 3, 0, 0, 0, 0, 0, 0, 0]);
    /// ```
    pub fn to_frame(&self, id: RequestId) -> Bytes {
        let mut frame = BytesMut::with_capacity(self.len());
        frame.put_u8(self.kind.byte());
        frame.put_slice(&id.0);
        frame.put_slice(&self.body);
        frame.freeze()
    }
}

/// The 2.0 reply types, whose layout is `[type][request id 8][rest]`.
fn is_reply(kind: MessageType) -> bool {
    matches!(
        kind,
        MessageType::ReplyBinary
            | MessageType::ReplyUtf8
            | MessageType::ReplyUtf16
            | MessageType::ReplyError
            | MessageType::ReplyShutdown
            | MessageType::ReplyInternalError
            | MessageType::ReplySessionNotFound
            | MessageType::ReplyMaxSessConnsReached
            | MessageType::ReplySessionsDisabled
    )
}

/// The right to run one keyed request and to store its reply, from
/// [`Begin::Run`]; given back with [`RequestLedger::finish`].
///
/// A ledger stores the reply only while the lease is held: a lease that
/// lapsed (not [renewed](RequestLedger::renew) in time, as when its node
/// hung) or whose entry was removed no longer is, and its `token` (a
/// generation, or a node incarnation) fences the late holder out.
///
/// Dropping a lease without finishing (the run panicked or was aborted)
/// gives the request up: its waiters get [`RunOutcome::Unknown`]. A store
/// that needs to act then attaches a guard with [`with_guard`](Self::with_guard);
/// the guard is dropped with the lease, and taken back by the store's
/// `finish` with [`take_guard`](Self::take_guard).
///
/// ```
/// use webwire_core::ledger::{Lease, LedgerScope};
///
/// struct Disarmed(bool);
///
/// let lease = Lease::new(LedgerScope::new("s", "i"), 3, 42).with_guard(Disarmed(false));
/// assert_eq!((lease.seq(), lease.token()), (3, 42));
/// let mut lease = lease;
/// assert!(lease.take_guard::<Disarmed>().is_some());
/// ```
pub struct Lease {
    scope: LedgerScope,
    seq: u64,
    token: u64,
    guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("scope", &self.scope)
            .field("seq", &self.seq)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease of `seq` in `scope`, with the store's fencing `token`.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// assert_eq!(Lease::new(LedgerScope::new("s", "i"), 1, 7).token(), 7);
    /// ```
    pub fn new(scope: LedgerScope, seq: u64, token: u64) -> Self {
        Self {
            scope,
            seq,
            token,
            guard: None,
        }
    }

    /// Attaches a value dropped with the lease (unless taken back).
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// let mut lease = Lease::new(LedgerScope::new("s", "i"), 1, 7).with_guard(5u8);
    /// assert_eq!(lease.take_guard::<u8>(), Some(5));
    /// assert_eq!(lease.take_guard::<u8>(), None);
    /// ```
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// Takes the guard back, if it is a `G`.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// let mut lease = Lease::new(LedgerScope::new("s", "i"), 1, 7).with_guard(5u8);
    /// assert_eq!(lease.take_guard::<u16>(), None);
    /// assert_eq!(lease.take_guard::<u8>(), Some(5));
    /// ```
    pub fn take_guard<G: Any>(&mut self) -> Option<G> {
        match self.guard.take()?.downcast::<G>() {
            Ok(guard) => Some(*guard),
            Err(other) => {
                self.guard = Some(other);
                None
            }
        }
    }

    /// The guard, if it is a `G`.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// let lease = Lease::new(LedgerScope::new("s", "i"), 1, 7).with_guard(5u8);
    /// assert_eq!(lease.guard::<u8>(), Some(&5));
    /// ```
    pub fn guard<G: Any>(&self) -> Option<&G> {
        self.guard.as_ref()?.downcast_ref()
    }

    /// The scope of the request.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// assert_eq!(Lease::new(LedgerScope::new("s", "i"), 1, 7).scope().instance, "i");
    /// ```
    pub fn scope(&self) -> &LedgerScope {
        &self.scope
    }

    /// The request's seq.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// assert_eq!(Lease::new(LedgerScope::new("s", "i"), 1, 7).seq(), 1);
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The store's fencing token.
    ///
    /// ```
    /// use webwire_core::ledger::{Lease, LedgerScope};
    ///
    /// assert_eq!(Lease::new(LedgerScope::new("s", "i"), 1, 7).token(), 7);
    /// ```
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// How a run that another retry found under way ended, for that retry.
///
/// ```
/// use webwire_core::ledger::RunOutcome;
///
/// assert_eq!(RunOutcome::Unknown, RunOutcome::Unknown);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run finished with this reply.
    Reply(StoredReply),
    /// The run was given up (it panicked, was aborted, or its lease
    /// lapsed): whether it had an effect is not known.
    Unknown,
}

/// The outcome of a run under way, for a retry that found it
/// ([`Begin::Running`]): a future that always ends, with the run's reply or
/// [`RunOutcome::Unknown`] (never hangs on a run that was given up).
///
/// ```
/// use webwire_core::ledger::{RunOutcome, RunWait};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let wait = RunWait::new(async { RunOutcome::Unknown });
/// assert_eq!(wait.await, RunOutcome::Unknown);
/// # }
/// ```
pub struct RunWait(Pin<Box<dyn Future<Output = RunOutcome> + Send + 'static>>);

impl RunWait {
    /// Waits for `outcome`. The store's future must end once the run ends,
    /// however it ends.
    ///
    /// ```
    /// use webwire_core::ledger::{RunOutcome, RunWait};
    ///
    /// let wait = RunWait::new(std::future::ready(RunOutcome::Unknown));
    /// assert_eq!(format!("{wait:?}"), "RunWait");
    /// ```
    pub fn new(outcome: impl Future<Output = RunOutcome> + Send + 'static) -> Self {
        Self(Box::pin(outcome))
    }
}

impl fmt::Debug for RunWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunWait")
    }
}

impl Future for RunWait {
    type Output = RunOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        self.0.as_mut().poll(cx)
    }
}

/// What [`RequestLedger::begin`] decided for a keyed request on a
/// connection with a session (see the module's table).
///
/// ```
/// use webwire_core::ledger::Begin;
///
/// let begin = Begin::Unknown;
/// assert!(matches!(begin, Begin::Unknown));
/// ```
#[derive(Debug)]
pub enum Begin {
    /// New: run the handler (detached from the connection), then
    /// [`finish`](RequestLedger::finish) with this lease.
    Run(Lease),
    /// Finished before: send this reply under the retry's request id.
    Stored(StoredReply),
    /// Under way: send its outcome under the retry's request id when it
    /// ends.
    Running(RunWait),
    /// The ledger cannot know the outcome (another ledger epoch, a key it
    /// released or forgot, a run given up): answer ReplyOutcomeUnknown,
    /// never run.
    Unknown,
    /// The key belongs to another request: answer ReplyError `KEY_REUSED`.
    KeyReused,
    /// `seq` 0, or an `ack` not below `seq`: answer ReplyError `BAD_KEY`.
    BadKey,
}

/// What [`RequestLedger::lookup`] found for a keyed request on a
/// connection without a session, which is answered from the ledger of the
/// session it last restored and never run.
///
/// ```
/// use webwire_core::ledger::Lookup;
///
/// assert!(matches!(Lookup::Unretained, Lookup::Unretained));
/// ```
#[derive(Debug)]
pub enum Lookup {
    /// Finished: send this reply.
    Stored(StoredReply),
    /// Under way: send its outcome when it ends.
    Running(RunWait),
    /// Accepted once, but its outcome is not known: ReplyOutcomeUnknown.
    Unknown,
    /// The key belongs to another request: ReplyError `KEY_REUSED`.
    KeyReused,
    /// `seq` 0, or an `ack` not below `seq`: ReplyError `BAD_KEY`.
    BadKey,
    /// The scope is retained, but this seq was never accepted: it never
    /// ran (ReplyError `NO_SESSION`).
    NotRun,
    /// The ledger holds nothing of this scope (ReplyError `NO_SESSION`).
    Unretained,
}

/// What [`RequestLedger::finish`] did with a reply.
///
/// ```
/// use webwire_core::ledger::Finish;
///
/// assert_ne!(Finish::Stored, Finish::LeaseLost);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Stored for retries; the run's waiters have it.
    Stored,
    /// The run's waiters have it, but it is not kept (already
    /// acknowledged, or larger than the byte bound): a retry gets
    /// ReplyOutcomeUnknown.
    NotKept,
    /// The lease was no longer held (it lapsed, or the entry was removed):
    /// nothing stored; the waiters were told [`RunOutcome::Unknown`].
    LeaseLost,
}

/// The bounds of a request ledger, per scope (session and client
/// instance). Defaults: 1024 replies, 1 MiB, 5 minutes; leases of 30 s;
/// scopes idle (nothing stored or running) for 24 hours are forgotten.
///
/// ```
/// use std::time::Duration;
/// use webwire_core::ledger::LedgerLimits;
///
/// let limits = LedgerLimits { max_replies: 16, ..LedgerLimits::default() };
/// assert_eq!(limits.max_bytes, 1 << 20);
/// assert_eq!(limits.max_age, Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// The most stored replies; beyond, the lowest seqs are released.
    pub max_replies: usize,
    /// The most bytes of stored replies (their encoded length); beyond,
    /// the lowest seqs are released. A larger reply is not kept.
    pub max_bytes: usize,
    /// How long a reply is kept after its run finished; also how long the
    /// scope of a closed session stays answerable.
    pub max_age: Duration,
    /// How long a lease lasts unless renewed.
    pub lease_ttl: Duration,
    /// How long the marks (high-water mark, acknowledgement) of a scope
    /// of a live session with nothing stored or running are kept after it
    /// was last used. A retry arriving later than that could run again:
    /// keep this well above any time a client stays away.
    pub idle_timeout: Duration,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            max_replies: 1024,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(5 * 60),
            lease_ttl: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where a server keeps what keyed requests ran and answered.
/// Implemented in memory by `webwire-server` (`MemoryLedger`), in Redis
/// for a cluster.
///
/// An async trait without a macro: implement it with `async fn` (the
/// futures must be `Send`). Every call is fallible: a remote ledger may be
/// unreachable; a keyed request is then answered ReplyInternalError and
/// not run.
///
/// # Using one
///
/// ```
/// use webwire_core::ledger::{Begin, LedgerError, LedgerRequest, LedgerScope, RequestLedger, RunOutcome, StoredReply};
///
/// /// What a keyed request is answered: `None` for ReplyOutcomeUnknown.
/// async fn keyed<L: RequestLedger>(
///     ledger: &L,
///     scope: &LedgerScope,
///     request: &LedgerRequest,
///     run: impl std::future::Future<Output = StoredReply>,
/// ) -> Result<Option<StoredReply>, LedgerError> {
///     Ok(match ledger.begin(scope, request).await? {
///         Begin::Run(lease) => {
///             let reply = run.await; // a real server renews the lease meanwhile
///             ledger.finish(lease, reply.clone()).await?;
///             Some(reply)
///         }
///         Begin::Stored(reply) => Some(reply),
///         Begin::Running(wait) => match wait.await {
///             RunOutcome::Reply(reply) => Some(reply),
///             RunOutcome::Unknown => None,
///         },
///         Begin::Unknown => None,
///         Begin::KeyReused | Begin::BadKey => unimplemented!("ReplyError"),
///     })
/// }
/// ```
pub trait RequestLedger: Send + Sync + fmt::Debug + 'static {
    /// The ledger epoch, sent in ExtensionAccept: a request first sent
    /// under another epoch is answered [`Begin::Unknown`]. Changes only
    /// when the ledger lost its state.
    fn epoch(&self) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// Decides a keyed request on a connection with a session (the
    /// module's table), applying its `ack` first when its epoch is the
    /// ledger's. At most one caller ever gets [`Begin::Run`] for a key.
    fn begin(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> impl Future<Output = Result<Begin, LedgerError>> + Send;

    /// Answers a keyed request on a connection without a session from the
    /// ledger of `scope` (the session it last restored, now closed),
    /// without ever running it.
    fn lookup(
        &self,
        scope: &LedgerScope,
        request: &LedgerRequest,
    ) -> impl Future<Output = Result<Lookup, LedgerError>> + Send;

    /// Extends the lease by the lease time; `false` if it is no longer
    /// held (the run may go on, but its reply will not be stored).
    fn renew(&self, lease: &Lease) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// The run of `lease` ended with `reply`: stores it if the lease is
    /// still held, and hands it to the run's waiters.
    fn finish(
        &self,
        lease: Lease,
        reply: StoredReply,
    ) -> impl Future<Output = Result<Finish, LedgerError>> + Send;

    /// The client has the replies of every seq up to `ack` in `scope`:
    /// they are released.
    fn acknowledge(
        &self,
        scope: &LedgerScope,
        ack: u64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The session `session` was closed: its scopes stay answerable by
    /// [`lookup`](Self::lookup) for the age bound, then are removed.
    fn session_closed(&self, session: &str)
        -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// A request ledger failed (unreachable, say).
///
/// Carries what was being done (its [`Display`](fmt::Display)) and, usually,
/// the underlying error as its [`source`](Error::source): log the whole
/// chain.
///
/// ```
/// use std::error::Error;
/// use webwire_core::ledger::LedgerError;
///
/// let err = LedgerError::new("storing a reply", std::io::Error::other("reset"));
/// assert_eq!(err.to_string(), "storing a reply");
/// assert!(err.source().is_some());
/// assert_eq!(LedgerError::msg("down").context(), "down");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct LedgerError {
    context: Cow<'static, str>,
    #[source]
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl LedgerError {
    /// An error with its context and underlying cause.
    ///
    /// ```
    /// use webwire_core::ledger::LedgerError;
    ///
    /// assert_eq!(LedgerError::new("renewing", "timed out").context(), "renewing");
    /// ```
    pub fn new(
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// An error without an underlying cause.
    ///
    /// ```
    /// use webwire_core::ledger::LedgerError;
    ///
    /// assert_eq!(LedgerError::msg("x").to_string(), "x");
    /// ```
    pub fn msg(context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// What was being done.
    ///
    /// ```
    /// use webwire_core::ledger::LedgerError;
    ///
    /// assert_eq!(LedgerError::msg("y").context(), "y");
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webwire_proto::{ErrorCode, ErrorReply, Payload, Reply};

    #[test]
    fn stored_reply_re_encodes_every_reply_under_a_new_id() {
        let old = RequestId::from(1);
        let new = RequestId::from(0x0102_0304_0506_0708);
        let messages = [
            webwire_proto::ServerMessage::Reply(Reply::new(old, Payload::binary(vec![1, 2]))),
            webwire_proto::ServerMessage::Reply(Reply::new(old, Payload::utf8("ok"))),
            webwire_proto::ServerMessage::Reply(Reply::new(
                old,
                Payload::new(Encoding::Utf16, vec![b'o', 0, b'k', 0]).unwrap(),
            )),
            webwire_proto::ServerMessage::Error(ErrorReply::new(
                old,
                ErrorCode::from_static("E"),
                "bad",
            )),
            webwire_proto::ServerMessage::InternalError(old),
            webwire_proto::ServerMessage::Shutdown(old),
        ];
        for message in messages {
            let stored = StoredReply::from_frame(message.to_bytes()).unwrap();
            let again = webwire_proto::ServerMessage::parse(stored.to_frame(new)).unwrap();
            assert_eq!(again.request_id(), Some(new));
            assert_eq!(again.message_type(), message.message_type());
            let mut expected = message.to_bytes().to_vec();
            expected[1..9].copy_from_slice(&new.0);
            assert_eq!(stored.to_frame(new).to_vec(), expected);
        }
    }

    #[test]
    fn only_replies_are_stored() {
        assert!(StoredReply::from_frame(Bytes::new()).is_none());
        assert!(StoredReply::from_frame(Bytes::from_static(&[191, 0, 0])).is_none());
        // A signal, AcceptConf, an unknown type.
        for byte in [63u8, 23, 250] {
            let mut frame = vec![byte];
            frame.extend([0; 12]);
            assert!(StoredReply::from_frame(Bytes::from(frame)).is_none());
        }
    }

    #[test]
    fn digest_separates_name_encoding_and_payload() {
        let base = RequestDigest::new(b"ab", Encoding::Utf8, b"c");
        assert_ne!(base, RequestDigest::new(b"a", Encoding::Utf8, b"bc"));
        assert_ne!(base, RequestDigest::new(b"ab", Encoding::Utf16, b"c"));
        assert_ne!(base, RequestDigest::new(b"ab", Encoding::Utf8, b"d"));
        assert_eq!(base, RequestDigest::new(b"ab", Encoding::Utf8, b"c"));
    }

    #[test]
    fn scope_never_shows_the_session_key() {
        let scope = LedgerScope::new("very-secret", "instance");
        let lease = Lease::new(scope.clone(), 1, 1);
        let shown = format!("{scope:?} {lease:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn a_guard_is_dropped_with_its_lease() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let lease =
            Lease::new(LedgerScope::new("s", "i"), 1, 1).with_guard(Flag(Arc::clone(&dropped)));
        assert!(lease.guard::<Flag>().is_some());
        drop(lease);
        assert!(dropped.load(Ordering::SeqCst));
    }
}
