//! The rules of a webwire connection as state machines without I/O, the
//! way quinn-proto sits under quinn: fed what happens (a parsed message, a
//! timer fired, a close asked for, the peer gone), they answer with what to
//! do (frames to write, the next deadline, events), and never touch a
//! socket, a task or the clock.

pub mod client;
