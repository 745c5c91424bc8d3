//! Load generator for webwire servers (2.0, and the 2.1 extensions), and the
//! raw WebSocket echo server it is measured against.
//!
//! Four jobs, each a library function with a thin binary around it:
//!
//! - **Request and signal load** ([`run`]): `conns` connections, each keeping
//!   `inflight` requests (or `ping` signals) outstanding; every reply is
//!   matched to its request by id and its payload compared byte for byte with
//!   what was sent. The [`Report`] holds operations per second, latency
//!   percentiles (hdrhistogram), errors by kind, mismatches and unanswered
//!   requests.
//! - **Idle connections** ([`run_connect`]): opens many connections at a
//!   bounded concurrency, holds them with heartbeats, and reports how many
//!   stayed open and the server's resident memory per connection (2.0
//!   connections, or 2.1 ones with a session and a stream).
//! - **Resume** ([`run_resume`]): webwire 2.1 sessions whose connections
//!   the server drops at once; the time until all have reconnected,
//!   restored and received every missed signal, verified once each and in
//!   order ([`ResumeReport`]).
//! - **Raw echo baseline** ([`EchoServer`]): the fastest answer the
//!   WebSocket library gives without any webwire logic.
//!
//! # Layout
//!
//! - `config`: [`LoadConfig`], [`ConnectConfig`], [`Mode`].
//! - `run`: the per-connection load loop and the run's timeline (warm-up,
//!   measurement, grace period for late replies).
//! - `connect`: the idle-connection mode.
//! - `report`: [`Report`], [`ConnectReport`] and their parts; text and JSON.
//! - `wire`: how requests and signals are encoded and how their payloads are
//!   generated and verified.
//! - `client`: opening one WebSocket connection and reading the AcceptConf.
//! - `v21`: the webwire 2.1 set-up of a connection (opt-in, login, join).
//! - `resume`: [`ResumeConfig`], [`run_resume`], [`ResumeReport`].
//! - `echo`: [`EchoServer`].
//! - `sys`: `/proc` readings (resident memory, CPU time), the file
//!   descriptor limit and the binaries' start-up ([`start_process`]).
//!
//! The binaries are `webwire-load` (load and `connect` modes) and
//! `webwire-echo`.
//!
//! # Example
//!
//! A short run against the raw echo server:
//!
//! ```
//! use std::time::Duration;
//! use webwire_load::{EchoServer, LoadConfig};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let server = EchoServer::bind("127.0.0.1:0".parse()?).await?;
//! let url = format!("ws://{}/", server.local_addr()?);
//! tokio::spawn(server.run());
//!
//! let mut config = LoadConfig::new(url);
//! config.raw_echo = true;
//! config.duration = Duration::from_millis(100);
//! config.warmup = Duration::ZERO;
//! let report = webwire_load::run(&config).await?;
//! assert!(report.completed > 0);
//! assert_eq!(report.failures(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod config;
mod connect;
mod echo;
mod error;
mod report;
mod resume;
mod run;
mod sys;
mod v21;
mod wire;

pub use config::{ConnectConfig, LoadConfig, Mode};
pub use connect::run_connect;
pub use echo::EchoServer;
pub use error::LoadError;
pub use report::{ConnectReport, CpuUsage, ErrorCounts, Latency, Report};
pub use resume::{run_resume, ResumeConfig, ResumeReport, ServerCpu};
pub use run::run;
pub use sys::{raise_fd_limit, start_process, vm_rss_kib};
