//! The terminal chat client, built on `webwire-client`.
//!
//! ```text
//! cargo run -p webwire-chat --bin chat-client -- ws://127.0.0.1:8080/ws
//! ```
//!
//! Type a line to say it; commands: `/login NAME`, `/logout`, `/who`,
//! `/history [N]`, `/help`, `/quit`. With `--session-file`, the session key
//! is kept in a file, so that the next run is signed in already.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};
use webwire_chat::{ChatMessage, History, HistoryQuery, LoggedIn, Login, Presence, Say};
use webwire_client::{Client, ClientEvent, Payload, RequestError};

/// Terminal client of the webwire chat room.
#[derive(Debug, Parser)]
#[command(name = "chat-client", version)]
struct Args {
    /// The chat server's webwire endpoint.
    #[arg(default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Sign in with this name at start (unless a stored session is restored).
    #[arg(long)]
    name: Option<String>,
    /// Keep the session key in this file and restore it at start.
    #[arg(long)]
    session_file: Option<PathBuf>,
}

/// What the terminal shows already: message ids (the last few hundred),
/// so that the history fetched after a reconnection prints only what was
/// missed, and the online list, printed when it changes.
#[derive(Debug, Default)]
struct Shown {
    order: VecDeque<String>,
    ids: HashSet<String>,
    online: Vec<String>,
}

impl Shown {
    const CAPACITY: usize = 500;

    /// Whether the message id is new; remembers it.
    fn new_message(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

type View = Arc<Mutex<Shown>>;

fn view(view: &View) -> std::sync::MutexGuard<'_, Shown> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-client: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder(&args.url)
        .reconnect_interval(Duration::from_millis(250))
        .max_reconnect_interval(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    println!("* connected to {} (type /help)", args.url);
    let shown: View = Arc::default();
    tokio::spawn(print_events(
        client.clone(),
        shown.clone(),
        args.session_file.clone(),
    ));

    if let Some(file) = &args.session_file
        && let Ok(key) = std::fs::read_to_string(file)
    {
        match client.restore_session(key.trim()).await {
            Ok(_) => {
                let name: Option<String> = client.session_info("name").unwrap_or(None);
                println!("* welcome back, {}", name.unwrap_or_default());
                sync(&client, &shown).await;
            }
            Err(RequestError::SessionNotFound) => {
                let _ = std::fs::remove_file(file);
            }
            Err(err) => println!("! cannot restore the session: {err}"),
        }
    }
    if client.session().is_none() {
        match &args.name {
            Some(name) => login(&client, &shown, name).await,
            None => println!("* sign in with /login NAME"),
        }
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim_end();
        let (command, rest) = match line.strip_prefix('/') {
            Some(command) => {
                let (command, rest) = command.split_once(' ').unwrap_or((command, ""));
                (Some(command), rest.trim())
            }
            None => (None, line),
        };
        match command {
            None if line.trim().is_empty() => {}
            None => {
                let say = Say {
                    text: line.to_owned(),
                };
                // The message comes back as a signal, printed there.
                if let Err(err) = request::<ChatMessage>(&client, webwire_chat::SAY, &say).await {
                    println!("! {err}");
                }
            }
            Some("login") => login(&client, &shown, rest).await,
            Some("logout") => {
                match request::<serde_json::Value>(&client, webwire_chat::LOGOUT, &()).await {
                    Ok(_) => {}
                    Err(err) => println!("! {err}"),
                }
            }
            Some("who") => match request::<Presence>(&client, webwire_chat::WHO, &()).await {
                Ok(presence) => print_presence(&presence),
                Err(err) => println!("! {err}"),
            },
            Some("history") => {
                let query = HistoryQuery {
                    limit: rest.parse().ok(),
                };
                match request::<History>(&client, webwire_chat::HISTORY, &query).await {
                    Ok(history) => {
                        for message in &history.messages {
                            print_message(&message.message);
                        }
                    }
                    Err(err) => println!("! {err}"),
                }
            }
            Some("quit") | Some("exit") => break,
            Some("help") => print_help(),
            Some(other) => println!("! unknown command /{other} (try /help)"),
        }
    }
    client.close().await;
    Ok(())
}

fn print_help() {
    println!("  text        say it to the room");
    println!("  /login NAME sign in");
    println!("  /logout     sign out (every connection of the session)");
    println!("  /who        who is online");
    println!("  /history N  the last N messages");
    println!("  /quit       leave (the session stays; see --session-file)");
}

/// A request with a JSON payload and a JSON reply.
async fn request<T: serde::de::DeserializeOwned>(
    client: &Client,
    name: &str,
    payload: &impl serde::Serialize,
) -> Result<T, Box<dyn std::error::Error>> {
    let json = serde_json::to_string(payload)?;
    let reply = client.request(name, Payload::utf8(json)).await?;
    Ok(serde_json::from_slice(reply.as_bytes())?)
}

async fn login(client: &Client, shown: &View, name: &str) {
    let login = Login {
        name: name.to_owned(),
    };
    match request::<LoggedIn>(client, webwire_chat::LOGIN, &login).await {
        Ok(_) => sync(client, shown).await,
        Err(err) => println!("! {err}"),
    }
}

/// After signing in or reconnecting: the messages not shown yet, and who is online.
async fn sync(client: &Client, shown: &View) {
    if client.session().is_none() {
        return;
    }
    if let Ok(history) =
        request::<History>(client, webwire_chat::HISTORY, &HistoryQuery::default()).await
    {
        for message in &history.messages {
            print_new(shown, &message.message);
        }
    }
    if let Ok(presence) = request::<Presence>(client, webwire_chat::WHO, &()).await {
        print_changed_presence(shown, presence);
    }
}

async fn print_events(client: Client, shown: View, session_file: Option<PathBuf>) {
    let mut events = client.events();
    let mut was_connected = false;
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Signal(signal) => {
                let bytes = signal.payload().as_bytes();
                match signal.name().as_str() {
                    webwire_chat::MESSAGE => {
                        if let Ok(message) = serde_json::from_slice::<ChatMessage>(bytes) {
                            print_new(&shown, &message);
                        }
                    }
                    webwire_chat::PRESENCE => {
                        if let Ok(presence) = serde_json::from_slice::<Presence>(bytes) {
                            print_changed_presence(&shown, presence);
                        }
                    }
                    _ => {}
                }
            }
            ClientEvent::Connected => {
                if was_connected {
                    println!("* reconnected");
                    let (client, shown) = (client.clone(), shown.clone());
                    tokio::spawn(async move { sync(&client, &shown).await });
                }
                was_connected = true;
            }
            ClientEvent::Disconnected => println!("* connection lost, reconnecting..."),
            ClientEvent::SessionCreated(session) => {
                let name: Option<String> = session.info_field("name").unwrap_or(None);
                println!("* signed in as {}", name.unwrap_or_default());
                if let Some(file) = &session_file
                    && let Err(err) = std::fs::write(file, &session.key)
                {
                    println!("! cannot write {}: {err}", file.display());
                }
            }
            ClientEvent::SessionClosed => {
                println!("* signed out (sign in with /login NAME)");
                view(&shown).online.clear();
                if let Some(file) = &session_file {
                    let _ = std::fs::remove_file(file);
                }
            }
            _ => {}
        }
    }
}

fn print_new(shown: &View, message: &ChatMessage) {
    if view(shown).new_message(&message.id) {
        print_message(message);
    }
}

fn print_changed_presence(shown: &View, presence: Presence) {
    let mut shown = view(shown);
    if shown.online != presence.online {
        print_presence(&presence);
        shown.online = presence.online;
    }
}

fn print_message(message: &ChatMessage) {
    let secs = (message.at / 1000) % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    println!("[{h:02}:{m:02}:{s:02}] {}: {}", message.from, message.text);
}

fn print_presence(presence: &Presence) {
    println!("* online: {}", presence.online.join(", "));
}
