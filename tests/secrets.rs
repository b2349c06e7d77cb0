//! No secret leaks: a run with faults that make requests fail in every way
//! (dropped, answered 500, refused, the server down), logged at trace
//! level, leaves the clients' passwords nowhere — not in a log line, not in
//! any file of the state dir — and the repository's password only in
//! `state.json`, which needs it to resume.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::KEEP_EVERYTHING;
use snapstorm::backend::embedded::ClientTimeouts;
use snapstorm::engine::progress::Progress;
use snapstorm::engine::scenario::Scenario;
use snapstorm::engine::traits::{
    BackendResult, ClientCredentials, ClientFactory, ClientId, ClientSnapshotter, Details,
    GcOptions, SnapshotId, Snapshotter,
};
use snapstorm::run::launch::{RunSpec, embedded_parts, launch_with};
use snapstorm::run::{Event, RunHandle, RunLimit};

/// Everything the run logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The passwords the server gave the clients, as they connect.
type Passwords = Arc<Mutex<Vec<String>>>;

struct Recording {
    inner: Box<dyn ClientSnapshotter>,
    passwords: Passwords,
}

impl Snapshotter for Recording {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        self.inner.create_snapshot(client, source, progress)
    }
    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        self.inner.list_snapshots(client)
    }
    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        progress: &Progress,
    ) -> BackendResult<()> {
        self.inner.restore_snapshot(client, id, target, progress)
    }
    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        self.inner.delete_snapshot(client, id)
    }
    fn run_gc(&self, client: ClientId, options: &GcOptions) -> BackendResult<Details> {
        self.inner.run_gc(client, options)
    }
}

impl ClientSnapshotter for Recording {
    fn connect(&self, client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        self.passwords
            .lock()
            .unwrap()
            .push(credentials.password.clone());
        self.inner.connect(client, credentials)
    }
    fn disconnect(&self, client: ClientId) -> BackendResult<()> {
        self.inner.disconnect(client)
    }
}

struct RecordingFactory {
    inner: Arc<dyn ClientFactory>,
    passwords: Passwords,
}

impl ClientFactory for RecordingFactory {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(Recording {
            inner: self.inner.new_client(client)?,
            passwords: self.passwords.clone(),
        }))
    }
    fn kind(&self, client: ClientId) -> String {
        self.inner.kind(client)
    }
}

/// Files under `root` (but `except`) that contain `secret`.
fn files_containing(root: &Path, secret: &str, except: &[&Path]) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && !except.contains(&e.path()))
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn no_password_in_any_log_line_or_file() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("this test owns the process's logging");

    let state = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse("keep", KEEP_EVERYTHING, "keep").unwrap();
    let mut spec = RunSpec::new(scenario, state.path().to_path_buf(), 31);
    spec.clients = 2;
    spec.limit = RunLimit {
        duration: Some(Duration::from_secs(20)),
        actions_per_client: None,
    };
    spec.timeouts = ClientTimeouts {
        request_timeout: Duration::from_secs(5),
        retries: 1,
    };
    spec.faults = [
        "network@2s:4s,latency=10ms,drop=50,error=30",
        "revoke-client@6s:5s,client=1",
        // Longer than a restore's own retries: requests fail for sure.
        "server-restart@12s:7s",
    ]
    .iter()
    .map(|f| f.parse().unwrap())
    .collect();
    let passwords: Passwords = Arc::default();
    let runtime = common::runtime();
    let report = runtime.block_on(async {
        let mut parts = embedded_parts(&spec).await.unwrap();
        parts.clients = Arc::new(RecordingFactory {
            inner: parts.clients.clone(),
            passwords: passwords.clone(),
        });
        let RunHandle {
            commands: _commands,
            mut events,
            task,
            ..
        } = launch_with(spec, parts).await.unwrap();
        while let Some(event) = events.recv().await {
            if matches!(event, Event::Finished(_)) {
                break;
            }
        }
        task.await.unwrap()
    });
    assert!(
        report.totals.errors >= 1,
        "the faults made requests fail: {:#?}",
        report.totals
    );

    let passwords = passwords.lock().unwrap().clone();
    assert!(
        passwords.len() >= 2,
        "every client connected: {}",
        passwords.len()
    );
    let repository_password =
        common::read_json(&state.path().join("state.json"))["repository_password"]
            .as_str()
            .unwrap()
            .to_owned();
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(log.lines().count() > 100, "trace-level logging captured");
    for secret in passwords.iter().chain([&repository_password]) {
        assert!(!log.contains(secret.as_str()), "a password is in the log");
    }
    for password in &passwords {
        let found = files_containing(state.path(), password, &[]);
        assert!(found.is_empty(), "a client password is in {found:?}");
    }
    let state_file = state.path().join("state.json");
    let found = files_containing(state.path(), &repository_password, &[&state_file]);
    assert!(found.is_empty(), "the repository password is in {found:?}");
}

/// The binary, as a user runs it at its most verbose: what it prints holds
/// no password either (the clients' are never printed by the engine, which
/// the test above checks at trace level; the repository's is checked here).
#[test]
fn no_password_in_what_the_binary_prints() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = dir.path().join("keep.toml");
    std::fs::write(&scenario, KEEP_EVERYTHING).unwrap();
    let (code, out, err) = common::snapstorm(&[
        "run",
        "-vv",
        "--clients",
        "2",
        "--duration",
        "8s",
        "--scenario",
        scenario.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--fault",
        "network@2s:3s,latency=10ms,drop=30,error=30",
        "--fault",
        "revoke-client@4s:2s,client=1",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.lines().count() > 100, "trace-level output");
    let password = common::read_json(&state.join("state.json"))["repository_password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!out.contains(&password) && !err.contains(&password));
    let state_file = state.join("state.json");
    let found = files_containing(&state, &password, &[&state_file]);
    assert!(found.is_empty(), "the repository password is in {found:?}");
}
