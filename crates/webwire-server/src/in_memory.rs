//! Connections over an in-memory pipe instead of a socket (feature
//! `test-util`), for tests that need neither a port nor real time.
//!
//! The server's end of the pipe goes through exactly what a TCP connection
//! goes through after `accept`: hyper's HTTP/1 handshake, the upgrade checks
//! and hooks, then the connection task. The caller holds the other end and
//! speaks HTTP and WebSocket on it (a WebSocket client's `connect_on`), so
//! a test under `#[tokio::test(start_paused = true)]` runs timeouts in
//! virtual time, and a pipe that nobody reads fills up like a socket whose
//! peer stopped reading.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::DuplexStream;

use crate::listener::serve_http;
use crate::Server;

/// The bytes a pipe holds in each direction by default, like a socket's
/// buffers on loopback.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 * 1024;

impl Server {
    /// Opens a connection to this server over an in-memory pipe and returns
    /// the client's end, before the HTTP upgrade. The connection comes from
    /// `127.0.0.1:0` and each direction holds [`DEFAULT_PIPE_CAPACITY`]
    /// bytes; see [`connect_in_memory_with`](Self::connect_in_memory_with).
    ///
    /// ```
    /// use tokio_websockets::ClientBuilder;
    /// use webwire_server::{MessageRouter, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::builder(MessageRouter::new()).build()?;
    /// let pipe = server.connect_in_memory();
    /// let (_ws, response) = ClientBuilder::new()
    ///     .uri("ws://localhost/")?
    ///     .connect_on(pipe)
    ///     .await?;
    /// assert_eq!(response.status(), 101);
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_in_memory(&self) -> DuplexStream {
        self.connect_in_memory_with(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            DEFAULT_PIPE_CAPACITY,
        )
    }

    /// Like [`connect_in_memory`](Self::connect_in_memory), with the remote
    /// address the server sees (hooks, `ConnectionInfo`) and the bytes the
    /// pipe holds in each direction (a small one makes backpressure quick
    /// to reach).
    pub fn connect_in_memory_with(&self, remote: SocketAddr, capacity: usize) -> DuplexStream {
        let (client, server) = tokio::io::duplex(capacity);
        tokio::spawn(serve_http(self.shared.clone(), server, remote));
        client
    }
}
