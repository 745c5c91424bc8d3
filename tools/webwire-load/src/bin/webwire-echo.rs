//! `webwire-echo`: the raw WebSocket echo server, the baseline webwire
//! servers are measured against. Prints `listening on ws://HOST:PORT/` once
//! it accepts connections; stops on SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use webwire_load::EchoServer;

/// Raw WebSocket echo server (no webwire logic).
#[derive(Debug, Parser)]
#[command(name = "webwire-echo", version)]
struct Cli {
    /// Address to listen on (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:9091")]
    addr: SocketAddr,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match webwire_load::raise_fd_limit() {
        Ok(limit) => tracing::debug!("open file limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads);
    }
    let result = runtime.enable_all().build().and_then(|runtime| {
        runtime.block_on(async {
            let server = EchoServer::bind(cli.addr).await?;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening on ws://{}/", server.local_addr()?)?;
            stdout.flush()?;
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            server
                .run_until(async {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                })
                .await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webwire-echo: {e}");
            ExitCode::from(2)
        }
    }
}
