//! `webwire-interop`: the interop server of docs/interop.md (`serve`) and the
//! checker that tests any server implementing it (`check URL`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use webwire_interop::{check, serve};

/// The webwire interop server and checker (docs/interop.md).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
                metrics_addr,
            } => {
                let mut options = serve::ServeOptions::new(addr);
                options.session_dir = session_dir;
                options.redis = redis;
                options.node_id = node_id;
                options.metrics_addr = metrics_addr;
                run_serve(options).await
            }
            Command::Check { url, timeout, only } => run_check(&url, timeout, only).await,
        }
    })
}

async fn run_serve(options: serve::ServeOptions) -> ExitCode {
    // Listen for the signals before anybody can learn the address, so that
    // a signal sent right after the line stops the server gracefully.
    let shutdown = match ShutdownSignal::install() {
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
    shutdown.recv().await;
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

    /// Waits for the first of them.
    async fn recv(self) {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
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
