//! The request ledger (webwire 2.1, docs/protocol.md section 14): the
//! interfaces of `webwire-core` re-exported ([`RequestLedger`] with its
//! scopes, decisions, leases and bounds), [`MemoryLedger`], the ledger
//! of a single server, and the error codes of keyed requests.

mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use memory::MemoryLedger;
pub use webwire_core::ledger::{
    Begin, Finish, Lease, LedgerError, LedgerLimits, LedgerRequest, LedgerScope, Lookup,
    RequestDigest, RequestLedger, RunOutcome, RunWait, StoredReply,
};

/// The ReplyError code of a keyed request whose seq is remembered for
/// another request (another name, type or payload): not run.
pub const KEY_REUSED: &str = "KEY_REUSED";
/// The ReplyError code of a keyed request whose `ack` is not below its
/// `seq`: not run.
pub const BAD_KEY: &str = "BAD_KEY";
/// The ReplyError code of a keyed request (or a StreamResume) on a
/// connection without a session, with no closed session's ledger to
/// answer from: not run.
pub const NO_SESSION: &str = "NO_SESSION";

/// A ledger operation's future, boxed.
pub(crate) type LedgerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// [`RequestLedger`] as a trait object: the server keeps one ledger of any
/// type without being generic over it (a boxed future per keyed request,
/// next to a handler's run, costs nothing that matters).
pub(crate) trait ErasedLedger: Send + Sync + fmt::Debug + 'static {
    fn epoch(&self) -> LedgerFuture<'_, u64>;
    fn begin<'a>(
        &'a self,
        scope: &'a LedgerScope,
        request: &'a LedgerRequest,
    ) -> LedgerFuture<'a, Begin>;
    fn lookup<'a>(
        &'a self,
        scope: &'a LedgerScope,
        request: &'a LedgerRequest,
    ) -> LedgerFuture<'a, Lookup>;
    fn renew<'a>(&'a self, lease: &'a Lease) -> LedgerFuture<'a, bool>;
    fn finish(&self, lease: Lease, reply: StoredReply) -> LedgerFuture<'_, Finish>;
    fn session_closed<'a>(&'a self, session: &'a str) -> LedgerFuture<'a, ()>;
}

impl<L: RequestLedger> ErasedLedger for L {
    fn epoch(&self) -> LedgerFuture<'_, u64> {
        Box::pin(RequestLedger::epoch(self))
    }

    fn begin<'a>(
        &'a self,
        scope: &'a LedgerScope,
        request: &'a LedgerRequest,
    ) -> LedgerFuture<'a, Begin> {
        Box::pin(RequestLedger::begin(self, scope, request))
    }

    fn lookup<'a>(
        &'a self,
        scope: &'a LedgerScope,
        request: &'a LedgerRequest,
    ) -> LedgerFuture<'a, Lookup> {
        Box::pin(RequestLedger::lookup(self, scope, request))
    }

    fn renew<'a>(&'a self, lease: &'a Lease) -> LedgerFuture<'a, bool> {
        Box::pin(RequestLedger::renew(self, lease))
    }

    fn finish(&self, lease: Lease, reply: StoredReply) -> LedgerFuture<'_, Finish> {
        Box::pin(RequestLedger::finish(self, lease, reply))
    }

    fn session_closed<'a>(&'a self, session: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(RequestLedger::session_closed(self, session))
    }
}
