//! The rules of a connection as state machines without I/O, the way
//! `quinn-proto` sits under `quinn`: they are told what happened (a
//! message arrived, a handler finished, a timer fired, a close was asked
//! for) and answer with what to do (write this, run that handler, close
//! with this code). They never read a socket or a clock: the server's and
//! the client's tasks do that and perform the answers.

pub mod server;
