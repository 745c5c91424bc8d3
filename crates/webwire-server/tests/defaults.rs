//! What the server does when the application chooses nothing: the default
//! session store says where it writes.

use std::io::Write;
use std::sync::{Arc, Mutex};

use webwire_server::{MemorySessionManager, MessageRouter, Server};

/// Log lines written while `f` runs, at INFO and above.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn the_default_session_folder_is_logged_when_the_server_is_built() {
    let logs = logs_of(|| {
        Server::builder(MessageRouter::new()).build().unwrap();
    });
    let folder = std::env::current_dir().unwrap().join("webwire-sessions");
    assert!(
        logs.contains(&folder.display().to_string()) && logs.contains("INFO"),
        "no INFO line naming {}: {logs}",
        folder.display()
    );
    assert!(
        !folder.exists() || folder.is_dir(),
        "nothing but a folder may be there"
    );
}

#[test]
fn no_folder_is_logged_with_another_store_or_without_sessions() {
    let chosen = logs_of(|| {
        Server::builder(MessageRouter::new())
            .session_manager(Arc::new(MemorySessionManager::new()))
            .build()
            .unwrap();
    });
    assert!(!chosen.contains("webwire-sessions"), "{chosen}");
    let disabled = logs_of(|| {
        Server::builder(MessageRouter::new())
            .sessions_enabled(false)
            .build()
            .unwrap();
    });
    assert!(!disabled.contains("webwire-sessions"), "{disabled}");
}
