//! `webwire`: a command-line webwire client, for poking a server by hand
//! as websocat is for raw WebSockets.
//!
//! - `webwire request URL NAME [PAYLOAD]` prints the reply's payload;
//! - `webwire signal URL NAME [PAYLOAD]` sends a signal;
//! - `webwire listen URL` prints the server's signals as JSON lines.
//!
//! The exit status tells what happened ([`exit`]); `--help` shows the
//! options and examples.

mod args;
mod exit;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use webwire_client::{Client, ClientEvent, Events};

use crate::args::{Cli, Command, ConnectionArgs, ListenArgs, RequestArgs, SignalArgs};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` are not errors.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The client's own logs (for example a failed TLS handshake's details)
    // only when something is wrong; RUST_LOG overrides.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("webwire: cannot start the runtime: {err}");
            return ExitCode::from(exit::USAGE);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("webwire: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Request(args) => request(args).await,
        Command::Signal(args) => signal(args).await,
        Command::Listen(args) => listen(args).await,
    }
}

/// `webwire request`: one request, its reply on standard output.
async fn request(args: RequestArgs) -> Result<(), Failure> {
    let payload = args.payload.read()?;
    let (client, mut events) = connect(&args.url, &args.connection).await?;
    let result = client.request(&args.name, payload).await;
    print_created_sessions(&mut events, &args.connection);
    let reply = result?;
    output::write_reply(&reply, args.base64)?;
    client.close().await;
    Ok(())
}

/// `webwire signal`: one signal, written before the client closes.
async fn signal(args: SignalArgs) -> Result<(), Failure> {
    let payload = args.payload.read()?;
    let (client, mut events) = connect(&args.url, &args.connection).await?;
    client.signal(&args.name, payload).await?;
    // The close handshake comes after the signal on the wire, so the
    // server has it before it sees the connection end.
    client.close().await;
    print_created_sessions(&mut events, &args.connection);
    Ok(())
}

/// `webwire listen`: the requests first, then the server's signals as JSON
/// lines until Ctrl-C or `--count`.
async fn listen(args: ListenArgs) -> Result<(), Failure> {
    let requests = args.requests()?;
    let (client, mut events) = connect(&args.url, &args.connection).await?;
    for (name, payload) in requests {
        if let Err(err) = client.request(&name, payload).await {
            print_created_sessions(&mut events, &args.connection);
            return Err(err.into());
        }
    }
    // Sessions created by the requests and signals they caused are in
    // `events` still, in order.
    let mut seen = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.count.is_none_or(|count| seen < count) {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = &mut interrupted => break,
        };
        match event {
            Some(ClientEvent::Signal(signal)) => {
                output::write_signal_line(signal.name().as_str(), signal.payload())?;
                seen += 1;
            }
            Some(ClientEvent::SessionCreated(session)) => {
                if args.connection.print_session_key {
                    eprintln!("{}", session.key);
                }
            }
            Some(ClientEvent::Lagged(lost)) => {
                eprintln!("webwire: {lost} signals were lost (output too slow)");
            }
            Some(ClientEvent::Disconnected) | None => return Err(Failure::Lost),
            Some(_) => {}
        }
    }
    client.close().await;
    Ok(())
}

/// Connects with the common options and restores `--session-key`; the
/// event receiver has every event since the start.
async fn connect(url: &str, args: &ConnectionArgs) -> Result<(Client, Events), Failure> {
    let client = args.builder(url)?.connect().await?;
    let events = client.events();
    if let Some(key) = &args.session_key {
        client.restore_session(key).await?;
    }
    Ok((client, events))
}

/// `--print-session-key`: the keys of the sessions the server created so
/// far, one a line on standard error (the server announces a session
/// before the reply of the request that made it). Takes every event
/// received so far.
fn print_created_sessions(events: &mut Events, args: &ConnectionArgs) {
    while let Some(event) = events.try_recv() {
        if let ClientEvent::SessionCreated(session) = event
            && args.print_session_key
        {
            eprintln!("{}", session.key);
        }
    }
}
