//! The webwire interop server and its checker (docs/interop.md).
//!
//! The interop server's behaviour is fixed by docs/interop.md, so that any
//! webwire client can be tested against it, and any server implementing
//! that page can be tested by any client. This crate is both sides:
//!
//! - [`serve`]: the server, on this project's `webwire-server` and its
//!   [`MessageRouter`](webwire_server::MessageRouter); [`serve::start`] runs it in-process
//!   (port 0 for tests), the `webwire-interop serve` command runs it alone.
//! - [`check`]: the checker, which drives every row of docs/interop.md through
//!   this project's Rust client (`webwire-client`) against a server at a
//!   URL and reports `PASS name` / `FAIL name: reason` per check
//!   ([`check::run`]); the `webwire-interop check URL` command prints it.
//!
//! # Example
//!
//! ```no_run
//! use webwire_interop::{check, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = serve::start(serve::ServeOptions::new("127.0.0.1:0")).await?;
//! let summary = check::run(&server.url(), &check::CheckOptions::default(), |result| {
//!     println!("{result}");
//! })
//! .await;
//! println!("{summary}");
//! assert!(summary.success());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod check;
pub mod limits;
pub mod metrics;
pub mod serve;
