//! `webwire-interop`: the interop server of docs/interop.md (`serve`) and the
//! checker that tests any server implementing it (`check URL`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use webwire_interop::limits::{parse_rate, LimitOptions};
use webwire_interop::{check, serve};
use webwire_server::limits::{IpNet, Rate};

/// The webwire interop server and checker (docs/interop.md).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the interop server until SIGINT or SIGTERM.
    Serve {
        /// HOST:PORT to listen on (port 0: any free port).
        #[arg(long, default_value = serve::DEFAULT_ADDR)]
        addr: String,
        /// The session folder [default: a fresh temporary folder].
        #[arg(long)]
        session_dir: Option<PathBuf>,
        /// Keep sessions in this Redis (redis://HOST:PORT/) and join the
        /// cluster of nodes sharing it.
        #[arg(long)]
        redis: Option<String>,
        /// This node's id in the cluster [default: node-PID].
        #[arg(long, requires = "redis")]
        node_id: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// On SIGTERM, drain first: refuse new connections, close the open
        /// ones with code 1012 (service restart) spread over this many
        /// seconds, then shut down. SIGINT, or a second signal, shuts down
        /// at once.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        drain_window: Option<Duration>,
        /// Serve the metrics in the Prometheus text format at
        /// http://HOST:PORT/metrics (port 0: any free port).
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
    },
    /// Tests the server at URL (ws://HOST:PORT/) against docs/interop.md.
    Check {
        /// The server's URL.
        url: String,
        /// Seconds each check may take before it fails.
        #[arg(long, default_value_t = check::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
        /// Run only the checks whose name contains this text (or one of
        /// several texts separated by commas).
        #[arg(long)]
        only: Option<String>,
    },
}

/// The abuse limits of `serve`, all off by default (docs/interop.md 1.1).
/// RATE is `N/s` or `N/m`, optionally `:BURST` (default N), e.g. `5/s:20`.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// At most N connections per client address (IPv6: per /64); past it 429.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// New connections per client address; past it 429 with Retry-After.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    handshakes_per_ip: Option<Rate>,
    /// New connections on the whole server; past it 503 with Retry-After.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    handshake_rate: Option<Rate>,
    /// Requests and signals per connection; over it RATE_LIMITED / dropped.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    message_rate: Option<Rate>,
    /// Requests and signals per session (all its connections on this server).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    session_message_rate: Option<Rate>,
    /// Close with 1008 a client that keeps exceeding a message rate this
    /// many seconds [default: 10].
    #[arg(long, value_name = "SECONDS")]
    rate_limit_close_after: Option<u64>,
    /// A reverse proxy (address or network, e.g. 10.0.0.0/8) whose
    /// Forwarded / X-Forwarded-For headers name the client; repeatable.
    #[arg(long, value_name = "NET")]
    trusted_proxy: Vec<IpNet>,
}

impl From<LimitArgs> for LimitOptions {
    fn from(args: LimitArgs) -> Self {
        let mut limits = LimitOptions::default();
        limits.max_connections_per_ip = args.max_connections_per_ip;
        limits.handshakes_per_ip = args.handshakes_per_ip;
        limits.handshake_rate = args.handshake_rate;
        limits.message_rate = args.message_rate;
        limits.session_message_rate = args.session_message_rate;
        limits.rate_limit_close_after = args.rate_limit_close_after.map(Duration::from_secs);
        limits.trusted_proxies = args.trusted_proxy;
        limits
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to standard error: the server's at info level, the checker's
    // (the client's) only when something is wrong. RUST_LOG overrides.
    let level = match cli.command {
        Command::Serve { .. } => "info",
        Command::Check { .. } => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("webwire-interop: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                addr,
                session_dir,
                redis,
                node_id,
                limits,
                drain_window,
                metrics_addr,
            } => {
                let mut options = serve::ServeOptions::new(addr);
                options.session_dir = session_dir;
                options.redis = redis;
                options.node_id = node_id;
                options.limits = limits.into();
                options.metrics_addr = metrics_addr;
                run_serve(options, drain_window).await
            }
            Command::Check { url, timeout, only } => run_check(&url, timeout, only).await,
        }
    })
}

async fn run_serve(options: serve::ServeOptions, drain_window: Option<Duration>) -> ExitCode {
    // Listen for the signals before anybody can learn the address, so that
    // a signal sent right after the line stops the server gracefully.
    let mut shutdown = match ShutdownSignal::install() {
        Ok(shutdown) => shutdown,
        Err(err) => {
            eprintln!("webwire-interop: cannot listen for signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let running = match serve::start(options).await {
        Ok(running) => running,
        Err(err) => {
            eprintln!("webwire-interop: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    // The address first: whoever reads one line learns it.
    let metrics = running.metrics_addr();
    if writeln!(stdout, "listening on {}", running.url())
        .and_then(|()| match metrics {
            Some(addr) => writeln!(stdout, "metrics on http://{addr}/metrics"),
            None => Ok(()),
        })
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody learns the address; keep serving anyway.
        tracing::warn!("could not write the address to standard output");
    }
    drop(stdout);
    let stop = shutdown.recv().await;
    if let (Some(window), Stop::Terminate) = (drain_window, stop) {
        tracing::info!(window = ?window, "SIGTERM: draining");
        tokio::select! {
            () = running.server().drain(window) => {}
            _ = shutdown.recv() => tracing::info!("second signal: the drain is cut short"),
        }
    }
    tracing::info!("shutting down");
    match running.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("webwire-interop: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A duration in seconds, possibly fractional (`0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|err| format!("{err}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{err}"))
}

/// Which signal asked the server to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what process managers and orchestrators send).
    Terminate,
}

/// SIGINT or SIGTERM (Ctrl-C where there are no Unix signals).
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Starts listening: from now on the signals no longer end the process.
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next of them.
    async fn recv(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Stop::Interrupt,
                _ = self.terminate.recv() => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}

async fn run_check(url: &str, timeout: u64, only: Option<String>) -> ExitCode {
    let mut options = check::CheckOptions::default().timeout(Duration::from_secs(timeout));
    options.only = only;
    let summary = check::run(url, &options, |result| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{result}").and_then(|()| stdout.flush());
    })
    .await;
    println!("{summary}");
    if summary.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
