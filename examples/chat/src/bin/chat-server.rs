//! The chat server: the page at `/`, the webwire endpoint at `/ws`, the
//! TypeScript client at `/webwire/`, all on one port; sessions in a
//! folder, so that people stay signed in across restarts.
//!
//! ```text
//! cargo run -p webwire-chat --bin chat-server -- --addr 127.0.0.1:8080 --session-dir .chat-sessions
//! ```

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use webwire_chat::{ChatConfig, ChatError, ChatServer};

/// A chat room on webwire: a browser page and a WebSocket endpoint on one port.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CHAT_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Folder of the session files (created when the first session is stored).
    #[arg(long, env = "CHAT_SESSION_DIR", default_value = ".chat-sessions")]
    session_dir: PathBuf,
    /// Serve the TypeScript client from this folder (clients/typescript/dist
    /// after npm run build) instead of the copy compiled in.
    #[arg(long)]
    client_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let mut config = ChatConfig::new(&args.session_dir).addr(args.addr);
    if let Some(dir) = &args.client_dir {
        config = config.client_dir(dir);
    }
    let server = match ChatServer::bind(config).await {
        Ok(server) => server,
        Err(ChatError::Bind { addr, source }) => {
            // One line a person can act on: the usual cause is a second
            // demo, or another program, on the same port.
            let reason = match source.kind() {
                io::ErrorKind::AddrInUse => "address already in use".to_owned(),
                io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
                _ => source.to_string(),
            };
            eprintln!(
                "chat-server: cannot listen on {addr}: {reason} (set CHAT_ADDR or pass --addr)"
            );
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("chat-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    println!("listening on http://{addr}/ (webwire endpoint ws://{addr}/ws)");
    println!("sessions in {}", args.session_dir.display());
    match server.run_until(stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
