//! The rules of a webwire connection as state machines without I/O, the
//! way `quinn-proto` sits under `quinn`: fed what happens (a parsed
//! message, a handler finished, a timer fired, a close asked for, the peer
//! gone), they answer with what to do (frames to write, a handler to run,
//! the next deadline, a close code, events), and never touch a socket, a
//! task or the clock. The server's and the client's connection tasks read
//! and write and perform the answers.
//!
//! - [`server`]: the server's side ([`server::ServerConnection`]);
//! - [`client`]: the client's side ([`client::ClientConnection`]).

pub mod client;
pub mod server;
