use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs;
use std::hash::BuildHasher;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use webwire_proto::Session;

use super::{age, redacted, SessionLookup, SessionManager, SessionStoreError};

/// The longest key the file manager accepts, in bytes (also the longest file
/// name most file systems allow).
const MAX_KEY_LEN: usize = 255;

/// How many locks the keys are spread over.
const LOCK_STRIPES: usize = 64;

/// Whether `key` may name a session file: 1 to 255 bytes of `A-Z a-z 0-9 _ -`.
///
/// Such a name has no separator, no dot and no drive prefix on any system, so
/// the path built from it stays in the folder.
pub(crate) fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The default [`SessionManager`]: one file per session in a folder.
///
/// - Each session is a file named after its key holding the session's wire
///   JSON (`{"k":…,"c":…,"l":…,"i":…}`). The folder is created, with
///   owner-only permissions on Unix, when the first session is stored.
/// - Files are written atomically: a temporary file (owner-only permissions,
///   a name starting with `.tmp`) in the same folder is written, flushed to
///   disk and renamed over the session's file. A reader never sees half a
///   file.
/// - Only keys of 1 to 255 bytes of `A-Z a-z 0-9 _ -` (every key of the
///   [`DefaultKeyGenerator`](crate::session::DefaultKeyGenerator)) are accepted; they
///   are checked before any path is built. Storing a session with another
///   key fails; looking one up finds nothing. A file whose stored key differs
///   from the requested one (as on case-insensitive file systems) is not
///   found either.
/// - A lookup updates the session's last lookup time and rewrites its file.
/// - With a [maximum age](Self::with_max_age), a session created longer ago
///   is not found, and its file is removed.
/// - A file that is not a session (truncated, not JSON) makes the lookup of
///   that key fail; nothing else is affected.
///
/// Operations on one key are serialised within this manager and its clones;
/// use one manager (or clones of it) per folder. File I/O runs on Tokio's
/// blocking thread pool.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use webwire_server::{session::{FileSessionManager, Session, SessionManager}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let folder = dir.path().join("sessions");
/// let manager = FileSessionManager::new(&folder).with_max_age(Duration::from_secs(30 * 24 * 3600));
/// manager.on_session_created(&Session::new("abc123", SystemTime::now(), None)).await?;
/// assert!(folder.join("abc123").is_file());
///
/// let found = manager.on_session_lookup("abc123").await?.expect("stored");
/// assert!(found.info.is_none());
/// assert!(manager.on_session_lookup("../abc123").await?.is_none());
///
/// manager.on_session_closed("abc123").await?;
/// assert!(!folder.join("abc123").exists());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FileSessionManager {
    dir: Arc<Path>,
    max_age: Option<Duration>,
    locks: Arc<KeyLocks>,
}

impl fmt::Debug for FileSessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSessionManager")
            .field("dir", &self.dir)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl FileSessionManager {
    /// A manager storing its sessions in `dir`, without a maximum age.
    ///
    /// Does no I/O: the folder is created when the first session is stored.
    ///
    /// ```
    /// use std::path::Path;
    /// use webwire_server::session::FileSessionManager;
    ///
    /// let manager = FileSessionManager::new("sessions");
    /// assert_eq!(manager.dir(), Path::new("sessions"));
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Arc::from(dir.into()),
            max_age: None,
            locks: Arc::new(KeyLocks::new()),
        }
    }

    /// Sets the maximum age: a session created longer ago than this is not
    /// found, and its file is removed when it is looked up or by
    /// [`remove_expired`](Self::remove_expired).
    ///
    /// ```
    /// use std::time::Duration;
    /// use webwire_server::session::FileSessionManager;
    ///
    /// let week = Duration::from_secs(7 * 24 * 3600);
    /// let manager = FileSessionManager::new("sessions").with_max_age(week);
    /// assert_eq!(manager.max_age(), Some(week));
    /// ```
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The folder holding the session files.
    ///
    /// ```
    /// use std::path::Path;
    /// use webwire_server::session::FileSessionManager;
    ///
    /// assert_eq!(FileSessionManager::new("/var/lib/app/sessions").dir(), Path::new("/var/lib/app/sessions"));
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The maximum age, if any.
    ///
    /// ```
    /// use webwire_server::session::FileSessionManager;
    ///
    /// assert_eq!(FileSessionManager::new("sessions").max_age(), None);
    /// ```
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Removes the file of every session older than the maximum age and
    /// returns how many were removed (0 without a maximum age). Files that
    /// are not sessions are left alone.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use webwire_server::{session::{FileSessionManager, Session, SessionManager}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let manager = FileSessionManager::new(dir.path()).with_max_age(Duration::from_secs(60));
    /// let old = SystemTime::now() - Duration::from_secs(120);
    /// manager.on_session_created(&Session::new("old", old, None)).await?;
    /// manager.on_session_created(&Session::new("new", SystemTime::now(), None)).await?;
    /// assert_eq!(manager.remove_expired().await?, 1);
    /// assert!(manager.on_session_lookup("new").await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn remove_expired(&self) -> Result<usize, SessionStoreError> {
        let Some(max_age) = self.max_age else {
            return Ok(0);
        };
        let this = self.clone();
        blocking(move || this.remove_expired_blocking(max_age, SystemTime::now())).await
    }

    fn path(&self, key: &str) -> PathBuf {
        debug_assert!(is_valid_key(key));
        self.dir.join(key)
    }

    fn lookup_blocking(
        &self,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        let path = self.path(key);
        let _guard = self.locks.lock(key);
        let Some(mut session) = read_session(&path, key)? else {
            return Ok(None);
        };
        if session.key != key {
            return Ok(None);
        }
        if self
            .max_age
            .is_some_and(|max_age| age(session.creation, now) > max_age)
        {
            remove_file(&path, key)?;
            return Ok(None);
        }
        session.last_lookup = now;
        let json = session.to_json().map_err(|err| {
            SessionStoreError::new(format!("encoding the session {}", redacted(key)), err)
        })?;
        write_atomically(&self.dir, &path, json.as_bytes()).map_err(|err| {
            SessionStoreError::new(
                format!("updating the session file of {}", redacted(key)),
                err,
            )
        })?;
        Ok(Some(SessionLookup::from(session)))
    }

    fn remove_expired_blocking(
        &self,
        max_age: Duration,
        now: SystemTime,
    ) -> Result<usize, SessionStoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => {
                return Err(SessionStoreError::new(
                    format!("listing the session folder {}", self.dir.display()),
                    err,
                ))
            }
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|err| {
                SessionStoreError::new(
                    format!("listing the session folder {}", self.dir.display()),
                    err,
                )
            })?;
            let name = entry.file_name();
            let Some(key) = name.to_str().filter(|key| is_valid_key(key)) else {
                continue;
            };
            let path = self.path(key);
            let _guard = self.locks.lock(key);
            // A file that cannot be read or is not a session is left alone.
            let Ok(Some(session)) = read_session(&path, key) else {
                continue;
            };
            if age(session.creation, now) > max_age {
                remove_file(&path, key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl SessionManager for FileSessionManager {
    async fn on_session_created(&self, session: &Session) -> Result<(), SessionStoreError> {
        if !is_valid_key(&session.key) {
            return Err(SessionStoreError::msg(
                "the session key cannot name a file: it must be 1 to 255 bytes of A-Z a-z 0-9 _ -",
            ));
        }
        let json = session.to_json().map_err(|err| {
            SessionStoreError::new(
                format!("encoding the session {}", redacted(&session.key)),
                err,
            )
        })?;
        let this = self.clone();
        let key = session.key.clone();
        blocking(move || {
            let path = this.path(&key);
            let _guard = this.locks.lock(&key);
            write_atomically(&this.dir, &path, json.as_bytes()).map_err(|err| {
                SessionStoreError::new(
                    format!("writing the session file of {}", redacted(&key)),
                    err,
                )
            })
        })
        .await
    }

    async fn on_session_lookup(
        &self,
        key: &str,
    ) -> Result<Option<SessionLookup>, SessionStoreError> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        let this = self.clone();
        let key = key.to_owned();
        let now = SystemTime::now();
        blocking(move || this.lookup_blocking(&key, now)).await
    }

    async fn on_session_closed(&self, key: &str) -> Result<(), SessionStoreError> {
        if !is_valid_key(key) {
            // No file can have been stored under this key.
            return Ok(());
        }
        let this = self.clone();
        let key = key.to_owned();
        blocking(move || {
            let path = this.path(&key);
            let _guard = this.locks.lock(&key);
            remove_file(&path, &key)
        })
        .await
    }
}

/// Runs file work on the blocking pool. Once started it runs to its end even
/// if the caller stops waiting, so a key's lock covers the whole operation.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SessionStoreError> + Send + 'static,
) -> Result<T, SessionStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| SessionStoreError::new("the session file task failed", err))?
}

/// The session stored at `path`, `None` if there is no file.
fn read_session(path: &Path, key: &str) -> Result<Option<Session>, SessionStoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(SessionStoreError::new(
                format!("reading the session file of {}", redacted(key)),
                err,
            ))
        }
    };
    Session::from_json(&bytes).map(Some).map_err(|err| {
        SessionStoreError::new(
            format!("the session file of {} is not a session", redacted(key)),
            err,
        )
    })
}

/// Removes the file at `path`; a missing file is fine.
fn remove_file(path: &Path, key: &str) -> Result<(), SessionStoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(SessionStoreError::new(
            format!("removing the session file of {}", redacted(key)),
            err,
        )),
    }
}

/// Replaces the file at `path` (in `dir`) with `contents` so that readers see
/// either the old or the new file, never a mix: temporary file, fsync, rename.
fn write_atomically(dir: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    create_dir(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|err| err.error)?;
    // Make the rename itself durable; not every file system can sync a folder.
    #[cfg(unix)]
    if let Ok(folder) = fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// Creates the session folder and its parents if missing (owner-only on Unix).
fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Striped locks serialising the operations on each key.
struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl KeyLocks {
    fn new() -> Self {
        Self {
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        // The remainder is below LOCK_STRIPES, so it fits in usize.
        let stripe = (self.hasher.hash_one(key) % LOCK_STRIPES as u64) as usize;
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use serde_json::json;
    use tempfile::TempDir;

    use super::*;

    fn session(key: &str, creation: SystemTime) -> Session {
        Session::new(key, creation, json!({"user": key}).as_object().cloned())
    }

    #[test]
    fn default_keys_are_valid_file_keys() {
        use crate::session::SessionKeyGenerator as _;
        let key = crate::session::DefaultKeyGenerator.generate();
        assert!(is_valid_key(&key));
    }

    /// A temporary folder and a manager whose session folder is `store` in it
    /// (not yet created).
    fn setup() -> (TempDir, FileSessionManager) {
        let tmp = tempfile::tempdir().unwrap();
        let manager = FileSessionManager::new(tmp.path().join("store"));
        (tmp, manager)
    }

    /// The names in the session folder, sorted.
    fn files(manager: &FileSessionManager) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(manager.dir()) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => panic!("{err}"),
        };
        names.sort();
        names
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key("a"));
        assert!(is_valid_key("AZaz09_-"));
        assert!(is_valid_key(&"k".repeat(255)));
        for bad in [
            "",
            "../x",
            "a/b",
            "..\\x",
            "..",
            ".",
            "a.b",
            "C:x",
            "a b",
            "é",
            "\0",
            "a\nb",
            "\u{7f}",
            &"k".repeat(256),
            &"k".repeat(300),
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn create_lookup_close() {
        let (_tmp, m) = setup();
        let created = SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789);
        let s = session("abc-_XYZ09", created);
        m.on_session_created(&s).await.unwrap();
        assert_eq!(files(&m), ["abc-_XYZ09"]);
        let stored = fs::read(m.dir().join("abc-_XYZ09")).unwrap();
        assert_eq!(stored, s.to_json().unwrap().as_bytes());

        let before = SystemTime::now();
        let found = m.on_session_lookup("abc-_XYZ09").await.unwrap().unwrap();
        assert_eq!(found.creation, created);
        assert_eq!(found.info, s.info);
        assert!(found.last_lookup >= before, "last lookup updated");
        // The file was rewritten with the new last lookup time.
        let stored = Session::from_json(&fs::read(m.dir().join("abc-_XYZ09")).unwrap()).unwrap();
        assert_eq!(stored, found.clone().into_session("abc-_XYZ09"));
        assert_eq!(files(&m), ["abc-_XYZ09"], "no temporary file left");

        assert_eq!(m.on_session_lookup("other").await.unwrap(), None);
        m.on_session_closed("abc-_XYZ09").await.unwrap();
        m.on_session_closed("abc-_XYZ09").await.unwrap();
        assert_eq!(m.on_session_lookup("abc-_XYZ09").await.unwrap(), None);
        assert!(files(&m).is_empty());
    }

    #[tokio::test]
    async fn creating_again_replaces() {
        let (_tmp, m) = setup();
        m.on_session_created(&session("k", SystemTime::UNIX_EPOCH))
            .await
            .unwrap();
        let newer = session("k", SystemTime::now());
        m.on_session_created(&newer).await.unwrap();
        let found = m.on_session_lookup("k").await.unwrap().unwrap();
        assert_eq!(found.creation, newer.creation);
    }

    #[tokio::test]
    async fn folder_is_created_with_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let m = FileSessionManager::new(&dir);
        assert_eq!(m.on_session_lookup("k").await.unwrap(), None);
        assert_eq!(m.remove_expired().await.unwrap(), 0);
        m.on_session_closed("k").await.unwrap();
        assert!(!dir.exists(), "only storing creates the folder");
        m.on_session_created(&session("k", SystemTime::now()))
            .await
            .unwrap();
        assert!(dir.join("k").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("k")), 0o600);
        }
    }

    #[tokio::test]
    async fn keys_that_could_leave_the_folder_are_refused() {
        let (tmp, m) = setup();
        let long = "k".repeat(300);
        let bad_keys = [
            "../x",
            "a/b",
            "..\\x",
            "..",
            ".",
            "",
            "a\nb",
            "\u{7f}",
            "é",
            "a\0b",
            "/etc/passwd",
            &long,
        ];
        for key in bad_keys {
            let err = m
                .on_session_created(&session(key, SystemTime::now()))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("cannot name a file"), "{err}");
            assert_eq!(m.on_session_lookup(key).await.unwrap(), None, "{key:?}");
            m.on_session_closed(key).await.unwrap();
        }
        // Nothing was written anywhere: not in the folder, not beside it.
        assert!(!m.dir().exists());
        let beside: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert!(beside.is_empty(), "{beside:?}");
    }

    #[tokio::test]
    async fn lookup_of_a_traversal_key_does_not_read_outside() {
        let (tmp, m) = setup();
        m.on_session_created(&session("inside", SystemTime::now()))
            .await
            .unwrap();
        // A valid session file just outside the folder.
        let outside = session("x", SystemTime::now()).to_json().unwrap();
        fs::write(tmp.path().join("x"), &outside).unwrap();
        assert_eq!(m.on_session_lookup("../x").await.unwrap(), None);
        m.on_session_closed("../x").await.unwrap();
        assert!(tmp.path().join("x").exists(), "close did not remove it");
    }

    #[tokio::test]
    async fn broken_files_fail_only_their_own_lookup() {
        let (_tmp, m) = setup();
        m.on_session_created(&session("good", SystemTime::now()))
            .await
            .unwrap();
        let full = session("broken-session", SystemTime::now())
            .to_json()
            .unwrap();
        let contents: [&[u8]; 5] = [
            &full.as_bytes()[..full.len() / 2],
            b"",
            b"not json",
            b"\xff\xfe\x00",
            br#"{"k":"broken-session","c":"yesterday","l":"2026-01-02T03:04:05Z"}"#,
        ];
        for content in contents {
            fs::write(m.dir().join("broken-session"), content).unwrap();
            let err = m.on_session_lookup("broken-session").await.unwrap_err();
            assert!(err.to_string().contains("is not a session"), "{err}");
            assert!(err.source().is_some());
            assert!(
                !err.to_string().contains("broken-session"),
                "the key is redacted: {err}"
            );
            // Everything else still works.
            assert!(m.on_session_lookup("good").await.unwrap().is_some());
            m.on_session_created(&session("other", SystemTime::now()))
                .await
                .unwrap();
        }
        // The broken file can still be closed (deleted), and is skipped by sweeps.
        let m = m.with_max_age(Duration::from_secs(1));
        assert_eq!(m.remove_expired().await.unwrap(), 0);
        m.on_session_closed("broken-session").await.unwrap();
        assert_eq!(m.on_session_lookup("broken-session").await.unwrap(), None);
    }

    #[tokio::test]
    async fn file_with_another_key_is_not_found() {
        let (_tmp, m) = setup();
        fs::create_dir_all(m.dir()).unwrap();
        // As if "ABC" and "abc" were the same file (case-insensitive file systems).
        let other = session("ABC", SystemTime::now()).to_json().unwrap();
        fs::write(m.dir().join("abc"), other).unwrap();
        assert_eq!(m.on_session_lookup("abc").await.unwrap(), None);
    }

    #[tokio::test]
    async fn reads_sessions_written_by_the_go_server() {
        let (_tmp, m) = setup();
        fs::create_dir_all(m.dir()).unwrap();
        fs::write(
            m.dir().join("go"),
            r#"{"k":"go","c":"2026-01-02T04:04:05.5+01:00","l":"2026-01-02T04:04:05+01:00","i":{"n":1}}"#,
        )
        .unwrap();
        let found = m.on_session_lookup("go").await.unwrap().unwrap();
        assert_eq!(
            found.creation,
            SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 500_000_000)
        );
        assert_eq!(found.info, json!({"n": 1}).as_object().cloned());
    }

    #[tokio::test]
    async fn max_age_expires_and_removes() {
        let (_tmp, m) = setup();
        let m = m.with_max_age(Duration::from_secs(3600));
        let now = SystemTime::now();
        m.on_session_created(&session("old", now - Duration::from_secs(7200)))
            .await
            .unwrap();
        m.on_session_created(&session("young", now - Duration::from_secs(1800)))
            .await
            .unwrap();
        m.on_session_created(&session("future", now + Duration::from_secs(1800)))
            .await
            .unwrap();
        assert_eq!(m.on_session_lookup("old").await.unwrap(), None);
        assert_eq!(files(&m), ["future", "young"]);
        assert!(m.on_session_lookup("young").await.unwrap().is_some());
        assert!(m.on_session_lookup("future").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn remove_expired_sweeps_only_expired_sessions() {
        let (_tmp, m) = setup();
        let old = SystemTime::now() - Duration::from_secs(7200);
        m.on_session_created(&session("old", old)).await.unwrap();
        m.on_session_created(&session("new", SystemTime::now()))
            .await
            .unwrap();
        assert_eq!(m.remove_expired().await.unwrap(), 0, "no maximum age");
        fs::write(m.dir().join("not-json"), "x").unwrap();
        fs::write(m.dir().join("a.txt"), "x").unwrap();

        let m = m.with_max_age(Duration::from_secs(3600));
        assert_eq!(m.remove_expired().await.unwrap(), 1);
        assert_eq!(files(&m), ["a.txt", "new", "not-json"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_different_keys() {
        let (_tmp, m) = setup();
        let mut tasks = Vec::new();
        for i in 0..48 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                m.on_session_created(&session(&key, SystemTime::now()))
                    .await
                    .unwrap();
                for _ in 0..3 {
                    let found = m.on_session_lookup(&key).await.unwrap().unwrap();
                    assert_eq!(found.info, json!({"user": key}).as_object().cloned());
                }
                if i % 2 == 0 {
                    m.on_session_closed(&key).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut expected: Vec<String> = (0..48)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("k{i}"))
            .collect();
        expected.sort();
        assert_eq!(
            files(&m),
            expected,
            "exactly the open sessions, no temporary files"
        );
        for i in 0..48 {
            let found = m.on_session_lookup(&format!("k{i}")).await.unwrap();
            assert_eq!(found.is_some(), i % 2 == 1, "k{i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_same_key_never_tears_or_resurrects() {
        let (_tmp, m) = setup();
        for round in 0..5 {
            m.on_session_created(&session("shared", SystemTime::now()))
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for i in 0..24 {
                let m = m.clone();
                tasks.push(tokio::spawn(async move {
                    if i == 12 {
                        m.on_session_closed("shared").await.unwrap();
                    } else {
                        // Found or not (closed meanwhile), but never a torn file.
                        if let Some(found) = m.on_session_lookup("shared").await.unwrap() {
                            assert_eq!(found.info, json!({"user": "shared"}).as_object().cloned());
                        }
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            // A lookup that raced with the close must not have written the file back.
            assert_eq!(
                m.on_session_lookup("shared").await.unwrap(),
                None,
                "round {round}"
            );
            assert!(files(&m).is_empty(), "round {round}: {:?}", files(&m));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_create_lookup_close_mix() {
        let (_tmp, m) = setup();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    m.on_session_created(&session("mix", SystemTime::now()))
                        .await
                        .unwrap();
                    let _ = m.on_session_lookup("mix").await.unwrap();
                    m.on_session_closed("mix").await.unwrap();
                }
                let own = format!("own{i}");
                m.on_session_created(&session(&own, SystemTime::now()))
                    .await
                    .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Every task closed "mix" after its last create, so the last operation was a close.
        assert_eq!(m.on_session_lookup("mix").await.unwrap(), None);
        assert_eq!(files(&m).len(), 16);
        assert!(files(&m).iter().all(|f| f.starts_with("own")));
    }
}
