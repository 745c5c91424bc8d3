//! Publish-subscribe with webwire: the server signals the subscribers of a
//! topic.
//!
//! ```sh
//! cargo run -p webwire-examples --example pubsub                      # server and three clients
//! cargo run -p webwire-examples --example pubsub -- server [ADDR]     # the server (default 127.0.0.1:9090)
//! cargo run -p webwire-examples --example pubsub -- client URL TOPIC  # a subscriber, e.g. ws://127.0.0.1:9090/ news
//! ```
//!
//! The code is in `src/pubsub.rs`.

use std::process::ExitCode;

use webwire_examples::pubsub;

const USAGE: &str = "usage: pubsub [server [ADDR] | client URL TOPIC]";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    webwire_examples::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => {
            pubsub::run_demo().await?;
        }
        ["server"] => pubsub::serve("127.0.0.1:9090").await?,
        ["server", addr] => pubsub::serve(addr).await?,
        ["client", url, topic] => pubsub::run_client(url, topic).await?,
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}
