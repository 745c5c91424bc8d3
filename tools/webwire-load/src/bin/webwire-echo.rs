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
    let result = webwire_load::start_process(cli.threads).and_then(|runtime| {
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
