//! Async server for the [webwire] protocol, version 2.0.
//!
//! # Layout
//!
//! - Sessions: [`SessionManager`] (the application's session storage, with
//!   [`FileSessionManager`], the default, and [`MemorySessionManager`]),
//!   [`SessionLookup`], [`SessionStoreError`], and [`SessionKeyGenerator`]
//!   with [`DefaultKeyGenerator`]. [`Session`] and [`SessionInfo`] are the
//!   wire types of `webwire-proto`.
//!
//! [webwire]: https://github.com/qbeon/webwire-go

mod session;

pub use session::{
    DefaultKeyGenerator, FileSessionManager, MemorySessionManager, Session, SessionInfo,
    SessionKeyGenerator, SessionLookup, SessionManager, SessionStoreError,
};
