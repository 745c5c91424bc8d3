//! The request ledger (webwire 2.1, docs/protocol.md section 14): the
//! interfaces of `webwire-core` re-exported ([`RequestLedger`] with its
//! scopes, decisions, leases and bounds), and [`MemoryLedger`], the ledger
//! of a single server.

mod memory;

pub use memory::MemoryLedger;
pub use webwire_core::ledger::{
    Begin, Finish, Lease, LedgerError, LedgerLimits, LedgerRequest, LedgerScope, Lookup,
    RequestDigest, RequestLedger, RunOutcome, RunWait, StoredReply,
};
