//! A fault-injecting TCP proxy for the webwire 2.1 tests.
//!
//! [`FaultProxy`] sits between a client and one or more servers on
//! 127.0.0.1 and cuts connections at random points in both directions,
//! mid-frame included, discarding whatever it had read and not yet
//! written, as a network that fails would. The cut points are drawn from
//! a seed per connection and direction (see [`cut_points`]), so a failing
//! run is replayed with its seed. While it forwards, an [`Observer`]
//! follows the HTTP upgrade and the WebSocket frames to know, at each cut,
//! whether webwire requests were waiting for their reply and whether a
//! signal was on its way; [`Stats`] counts those cuts, so a test can show
//! that its cuts really hit traffic in flight.
//!
//! # How a test uses it
//!
//! Start the server(s), start a proxy in front of them with a seed and a
//! cut range, point the client at [`FaultProxy::local_addr`], and run the
//! workload while the proxy cuts; with two upstreams connection `k` goes
//! to upstream `k mod 2`, so every reconnect lands on the other node. At
//! the end, turn the cuts off with [`FaultProxy::set_cutting`]`(false)`,
//! let the client catch up, check that nothing was lost or doubled, and
//! assert on [`FaultProxy::stats`] (for example that enough cuts landed
//! with requests in flight). Print the seed in the test's failure message.
//! [`FaultProxy::cut_all`] cuts every open connection at a moment the test
//! chooses.
//!
//! Tests in other languages run the `webwire-faultproxy` binary: it prints
//! `LISTENING 127.0.0.1:PORT`, reads the commands `cut`, `calm`, `wild` and
//! `stats` from stdin (one per line, each answered with one line), and on
//! stdin EOF, SIGTERM or SIGINT prints the stats as one JSON line and exits.
//!
//! ```
//! use webwire_faultproxy::FaultProxy;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), webwire_faultproxy::FaultProxyError> {
//! # let server_addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
//! let proxy = FaultProxy::builder([server_addr])
//!     .seed(42)
//!     .cut_after(1024..=8192)
//!     .start()
//!     .await?;
//! let url = format!("ws://{}/", proxy.local_addr());
//! // ... run the client against `url` while the proxy cuts ...
//! proxy.set_cutting(false);
//! // ... let it settle, check the outcome ...
//! let stats = proxy.stats();
//! println!("seed {}: {} cuts, {} with requests in flight", stats.seed, stats.cuts,
//!          stats.cuts_with_requests_in_flight);
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

mod observer;
mod proxy;
mod rng;

pub use observer::{Completed, CutObservation, Direction, Observer};
pub use proxy::{
    cut_points, CutPoints, CutRecord, CutTrigger, FaultProxy, FaultProxyBuilder, FaultProxyError,
    Stats, DEFAULT_CHUNK_SIZE, DEFAULT_CUT_AFTER, MAX_CUT_LOG,
};
