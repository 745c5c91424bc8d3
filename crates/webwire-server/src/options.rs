//! Per-connection options, chosen before the upgrade (docs/protocol.md 2 and 6.2), and
//! the refusal a before-upgrade hook may answer with, and the server's
//! [`OriginPolicy`].

pub use crate::origin::OriginPolicy;

use std::num::NonZeroUsize;

use http::StatusCode;

/// How many request and signal handlers of one connection run at once
/// (docs/protocol.md 6.2).
///
/// - `Limited(1)`, the default: handlers run one at a time, in order,
///   inline in the connection's task (no task is spawned per message).
/// - `Limited(n)`: up to `n` at once, each in its own task; the connection
///   reads its next message only when fewer than `n` of its handlers run.
/// - `Unlimited`: every message gets its own task. Requests are still
///   bounded: each running request holds its reply's place in the
///   outbound queue, so at most the queue's capacity run at once.
///
/// ```
/// use webwire_server::options::Concurrency;
///
/// assert_eq!(Concurrency::default(), Concurrency::ONE);
/// assert_eq!(Concurrency::limited(0), Concurrency::ONE); // 0 is taken as 1
/// assert_eq!(Concurrency::limited(8).limit(), Some(8));
/// assert_eq!(Concurrency::Unlimited.limit(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concurrency {
    /// At most this many handlers at once.
    Limited(NonZeroUsize),
    /// No per-connection limit on handlers.
    Unlimited,
}

impl Concurrency {
    /// One handler at a time, in order (the default).
    pub const ONE: Self = Self::Limited(NonZeroUsize::MIN);

    /// At most `n` handlers at once; `0` is taken as `1`.
    pub fn limited(n: usize) -> Self {
        Self::Limited(NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN))
    }

    /// The limit, `None` when unlimited.
    pub fn limit(self) -> Option<usize> {
        match self {
            Self::Limited(n) => Some(n.get()),
            Self::Unlimited => None,
        }
    }
}

impl Default for Concurrency {
    fn default() -> Self {
        Self::ONE
    }
}

/// The options of one connection, set by the before-upgrade hook
/// ([`ServerBuilder::before_upgrade`](crate::ServerBuilder::before_upgrade))
/// or taken from the server's defaults.
///
/// ```
/// use webwire_server::{options::{Concurrency, ConnectionOptions}};
///
/// let options = ConnectionOptions::new().concurrency(Concurrency::limited(4));
/// assert_eq!(options.concurrency_limit(), Concurrency::limited(4));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionOptions {
    concurrency: Concurrency,
}

impl ConnectionOptions {
    /// The default options: one handler at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the concurrency limit of the connection's handlers.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The concurrency limit of the connection's handlers.
    pub fn concurrency_limit(&self) -> Concurrency {
        self.concurrency
    }
}

/// A refused upgrade: the HTTP status the client gets instead of the
/// WebSocket (403 Forbidden by default).
///
/// ```
/// use http::StatusCode;
/// use webwire_server::options::Refusal;
///
/// assert_eq!(Refusal::default().status(), StatusCode::FORBIDDEN);
/// assert_eq!(Refusal::new(StatusCode::UNAUTHORIZED).status(), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
}

impl Refusal {
    /// Refuses with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self { status }
    }

    /// Refuses with 403 Forbidden.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN)
    }

    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl Default for Refusal {
    fn default() -> Self {
        Self::forbidden()
    }
}
