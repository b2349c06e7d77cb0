//! Every action through the engine on the real embedded backend: snapstorm's
//! REST server and rustic_core clients over HTTP.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::EngineFixture;
use snapstorm::engine::progress::Progress;
use snapstorm::engine::store::FailureKind;
use snapstorm::engine::traits::{
    BackendResult, ClientCredentials, ClientFactory, ClientSnapshotter, Details, GcOptions, Server,
    SnapshotId, Snapshotter,
};
use snapstorm::engine::{Action, ActionParams, ClientId, Outcome};

const SMALL: &str = r#"
description = "small files for action tests"
[options]
max-num-files-per-write = 20
max-file-size = "64KiB"
max-dir-depth = 2
"#;

const C1: ClientId = ClientId(1);

fn exec(f: &EngineFixture, action: Action) -> snapstorm::engine::ActionRecord {
    f.engine.exec_action(C1, action, &ActionParams::default())
}

/// What a test puts in front of the real backend's calls: each hook runs
/// before the call it names, and an error it returns is the call's answer.
trait Hook: Send + Sync + 'static {
    fn before_create(&self, _client: ClientId) {}
    fn before_restore(&self, _client: ClientId, _id: &str) -> BackendResult<()> {
        Ok(())
    }
    fn before_delete(&self, _client: ClientId) -> BackendResult<()> {
        Ok(())
    }
}

/// A client of the real backend with a test's [`Hook`] in front.
struct Hooked<H> {
    inner: Box<dyn ClientSnapshotter>,
    hook: Arc<H>,
}

impl<H: Hook> Snapshotter for Hooked<H> {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &std::path::Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        self.hook.before_create(client);
        self.inner.create_snapshot(client, source, progress)
    }
    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        self.inner.list_snapshots(client)
    }
    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &std::path::Path,
        progress: &Progress,
    ) -> BackendResult<()> {
        self.hook.before_restore(client, id)?;
        self.inner.restore_snapshot(client, id, target, progress)
    }
    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        self.hook.before_delete(client)?;
        self.inner.delete_snapshot(client, id)
    }
    fn run_gc(&self, client: ClientId, options: &GcOptions) -> BackendResult<Details> {
        self.inner.run_gc(client, options)
    }
}

impl<H: Hook> ClientSnapshotter for Hooked<H> {
    fn connect(&self, client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        self.inner.connect(client, credentials)
    }
    fn disconnect(&self, client: ClientId) -> BackendResult<()> {
        self.inner.disconnect(client)
    }
}

/// The backend's clients, each [`Hooked`] with the same hook.
struct HookedClients<H> {
    inner: Arc<dyn ClientFactory>,
    hook: Arc<H>,
}

impl<H: Hook> HookedClients<H> {
    fn over(inner: Arc<dyn ClientFactory>, hook: Arc<H>) -> Arc<dyn ClientFactory> {
        Arc::new(HookedClients { inner, hook })
    }
}

impl<H: Hook> ClientFactory for HookedClients<H> {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(Hooked {
            inner: self.inner.new_client(client)?,
            hook: self.hook.clone(),
        }))
    }
    fn kind(&self, client: ClientId) -> String {
        self.inner.kind(client)
    }
}

#[test]
fn every_action_including_no_ops() {
    let f = EngineFixture::inline(SMALL, 1);

    // Nothing written, nothing snapshotted: the actions that need something are no-ops.
    for action in [
        Action::RestoreRandomSnapshot,
        Action::RestoreIntoDataDir,
        Action::DeleteRandomSnapshot,
        Action::DeleteRandomSubdirectory,
        Action::DeleteFiles,
    ] {
        let record = exec(&f, action);
        assert_eq!(record.outcome, Outcome::NoOp, "{action}: {record:?}");
        assert!(record.message.is_some(), "a no-op says why");
    }

    let write = exec(&f, Action::WriteRandomFiles);
    assert_eq!(write.outcome, Outcome::Ok, "{write:?}");
    assert!(write.details["files"].as_u64().unwrap() >= 1);

    let snap = exec(&f, Action::SnapshotRoot);
    assert_eq!(snap.outcome, Outcome::Ok, "{snap:?}");
    let first = snap.snapshot.clone().unwrap();
    assert_eq!(first.len(), 64, "full snapshot ids");
    assert_eq!(snap.live, 1);

    // One live snapshot: never delete the last one.
    assert_eq!(
        exec(&f, Action::DeleteRandomSnapshot).outcome,
        Outcome::NoOp
    );

    let restore = exec(&f, Action::RestoreRandomSnapshot);
    assert_eq!(restore.outcome, Outcome::Ok, "{restore:?}");
    assert_eq!(restore.snapshot.as_deref(), Some(first.as_str()));

    // Change the data dir, then restore the snapshot over it: it must match again.
    std::fs::write(f.data_dir(C1).join("stray-file"), b"not in the snapshot").unwrap();
    let into = exec(&f, Action::RestoreIntoDataDir);
    assert_eq!(into.outcome, Outcome::Ok, "{into:?}");
    assert!(
        !f.data_dir(C1).join("stray-file").exists(),
        "restore-into-data-dir replaced the data dir"
    );

    exec(&f, Action::WriteRandomFiles);
    exec(&f, Action::WriteRandomFiles);
    let second = exec(&f, Action::SnapshotRoot);
    assert_eq!(second.live, 2);

    let subdir = exec(&f, Action::DeleteRandomSubdirectory);
    let files = exec(&f, Action::DeleteFiles);
    for record in [&subdir, &files] {
        assert!(
            matches!(record.outcome, Outcome::Ok | Outcome::NoOp),
            "{record:?}"
        );
    }

    let delete = exec(&f, Action::DeleteRandomSnapshot);
    assert_eq!(delete.outcome, Outcome::Ok, "{delete:?}");
    assert_eq!((delete.live, delete.deleted), (1, 1));
    let deleted = delete.snapshot.unwrap();
    let listing = f.parts.server.list_snapshots().unwrap();
    assert!(
        !listing.contains(&deleted),
        "deleted snapshot is gone from the repository"
    );
    assert_eq!(listing.len(), 1);

    let gc = exec(&f, Action::RunGc);
    assert_eq!(gc.outcome, Outcome::Ok, "{gc:?}");
    assert_eq!(f.engine.counts().gc_runs, 1);

    // The remaining snapshot survives the GC.
    assert_eq!(exec(&f, Action::RestoreRandomSnapshot).outcome, Outcome::Ok);
    let verify = exec(&f, Action::VerifyRepo);
    assert_eq!(verify.outcome, Outcome::Ok, "{verify:?}");

    // A named snapshot and a sub-path.
    let dir = write.details["dir"].as_str().unwrap().to_owned();
    if f.data_dir(C1).join(&dir).exists() {
        let params = ActionParams {
            sub_path: Some(dir),
            ..ActionParams::default()
        };
        let sub = f.engine.exec_action(C1, Action::SnapshotRoot, &params);
        assert_eq!(sub.outcome, Outcome::Ok, "{sub:?}");
        let params = ActionParams {
            snapshot_id: sub.snapshot.clone(),
            ..ActionParams::default()
        };
        let restored = f
            .engine
            .exec_action(C1, Action::RestoreRandomSnapshot, &params);
        assert_eq!(restored.outcome, Outcome::Ok, "{restored:?}");
    }

    let report = f.engine.report();
    assert_eq!(report.totals.verification_failures, 0);
    assert!(report.totals.restores_verified >= 3);
    assert!(report.actions["restore-random-snapID"].no_ops >= 1);
    // The trace has one line per action.
    let trace = std::fs::read_to_string(f.state.path().join("trace.jsonl")).unwrap();
    assert_eq!(trace.lines().count() as u64, report.totals.actions);
}

#[test]
fn repeat_action_does_the_action_that_many_times_and_counts_each() {
    let f = EngineFixture::inline(
        "description = \"d\"\n[options]\nmax-file-size = \"16KiB\"\n[action-options.snapshot-root]\nrepeat-action = 3\n",
        8,
    );
    exec(&f, Action::WriteRandomFiles);
    let record = exec(&f, Action::SnapshotRoot);
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.details["repeat-action"], serde_json::json!(3));
    assert_eq!(record.live, 3);
    let report = f.engine.report();
    assert_eq!(report.totals.snapshots_created, 3);
    assert_eq!(
        report.actions["snapshot-root"].count, 1,
        "one action, three snapshots"
    );
}

/// The deepest tree a scenario may ask for is snapshotted, restored and
/// verified like any other (paths of some 2,700 bytes).
#[test]
fn the_deepest_allowed_tree_restores_and_verifies() {
    let f = EngineFixture::inline(
        "description = \"d\"\n[options]\nmax-dir-depth = 200\nmax-num-files-per-write = 2\nmax-file-size = \"8KiB\"\n",
        14,
    );
    for _ in 0..6 {
        assert_eq!(exec(&f, Action::WriteRandomFiles).outcome, Outcome::Ok);
    }
    let deepest = walkdir::WalkDir::new(f.data_dir(C1))
        .into_iter()
        .map(|e| e.unwrap().depth())
        .max()
        .unwrap();
    assert!(deepest > 100, "a write went deep: {deepest} levels");
    let snapshot = exec(&f, Action::SnapshotRoot);
    assert_eq!(snapshot.outcome, Outcome::Ok, "{snapshot:?}");
    let restore = exec(&f, Action::RestoreRandomSnapshot);
    assert_eq!(restore.outcome, Outcome::Ok, "{restore:?}");
}

#[test]
fn low_disk_purges_the_data_dir_and_restores_a_snapshot_into_it() {
    // A free-space limit no disk meets: every write turns into the recovery.
    let f = EngineFixture::inline(
        "description = \"d\"\n[options]\nfree-space-limit = \"1000TiB\"\n",
        6,
    );
    let data = f.data_dir(C1);
    std::fs::create_dir_all(data.join("dir")).unwrap();
    std::fs::write(data.join("dir/kept.txt"), b"in the snapshot").unwrap();
    let snapshot = exec(&f, Action::SnapshotRoot);
    assert_eq!(snapshot.outcome, Outcome::Ok);
    std::fs::write(data.join("dir/later.txt"), b"written after the snapshot").unwrap();

    let write = exec(&f, Action::WriteRandomFiles);
    assert_eq!(write.outcome, Outcome::Ok, "{write:?}");
    assert!(write.details.contains_key("low-disk-recovery"), "{write:?}");
    assert_eq!(
        write.snapshot, snapshot.snapshot,
        "the snapshot restored into the data dir"
    );
    assert!(data.join("dir/kept.txt").is_file());
    assert!(
        !data.join("dir/later.txt").exists(),
        "the data dir was purged, then restored"
    );
    assert_eq!(f.engine.report().totals.low_disk_recoveries, 1);
}

#[test]
fn tampered_or_swapped_fingerprints_are_verification_failures_with_a_diff() {
    let f = EngineFixture::inline(SMALL, 2);
    exec(&f, Action::WriteRandomFiles);
    let a = exec(&f, Action::SnapshotRoot).snapshot.unwrap();
    exec(&f, Action::WriteRandomFiles);
    let b = exec(&f, Action::SnapshotRoot).snapshot.unwrap();

    // Swap the two fingerprints on disk: each restore now meets the other's record.
    let fingerprints = f.state.path().join("fingerprints");
    let (fa, fb) = (
        fingerprints.join(format!("{a}.json")),
        fingerprints.join(format!("{b}.json")),
    );
    let (ta, tb) = (std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
    std::fs::write(&fa, &tb).unwrap();
    std::fs::write(&fb, &ta).unwrap();

    let params = ActionParams {
        snapshot_id: Some(a.clone()),
        ..ActionParams::default()
    };
    let record = f
        .engine
        .exec_action(C1, Action::RestoreRandomSnapshot, &params);
    assert_eq!(record.outcome, Outcome::Failure, "{record:?}");
    let message = record.message.unwrap();
    // B holds everything A held and more: restoring A against B's record misses B's extra files.
    assert!(message.starts_with("restore differs: "), "{message}");
    assert!(
        !message.starts_with("restore differs: 0 missing"),
        "{message}"
    );
    assert!(
        message.contains(" missing, 0 extra, 0 changed (first: missing "),
        "{message}"
    );

    // Tamper with one entry's hash: the diff names the file.
    let mut print: serde_json::Value = serde_json::from_slice(&tb).unwrap();
    let (path, entry) = print["entries"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .find(|(_, e)| e["kind"] == "file")
        .unwrap();
    let path = path.clone();
    entry["hash"] = serde_json::json!("0".repeat(64));
    std::fs::write(&fb, serde_json::to_vec(&print).unwrap()).unwrap();
    let params = ActionParams {
        snapshot_id: Some(b.clone()),
        ..ActionParams::default()
    };
    let record = f
        .engine
        .exec_action(C1, Action::RestoreRandomSnapshot, &params);
    assert_eq!(record.outcome, Outcome::Failure);
    assert_eq!(
        record.message.as_deref(),
        Some(
            format!(
                "restore differs: 0 missing, 0 extra, 1 changed (first: {path}: content differs)"
            )
            .as_str()
        )
    );

    // Both failures are in the metadata, with readable details, and in the report.
    let state = f.engine.store().state();
    assert_eq!(state.failures.len(), 2);
    assert!(
        state.failures[1]
            .details
            .contains(&format!("changed (1):\n  {path}: content differs"))
    );
    let report = f.engine.report();
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failures[0].snapshot.as_deref(), Some(a.as_str()));
    assert_eq!(report.totals.verification_failures, 2);
}

/// Each client's first snapshot panics inside the backend; then it behaves.
#[derive(Default)]
struct PanicOnce {
    panicked: std::sync::Mutex<std::collections::HashSet<ClientId>>,
}

impl Hook for PanicOnce {
    fn before_create(&self, client: ClientId) {
        if self.panicked.lock().unwrap().insert(client) {
            panic!("injected panic inside the backend");
        }
    }
}

#[test]
fn a_panicking_backend_call_is_that_actions_error_and_the_run_goes_on() {
    let scenario = snapstorm::engine::scenario::Scenario::parse("inline", SMALL, "inline").unwrap();
    let f = EngineFixture::open(tempfile::tempdir().unwrap(), scenario, 3, |inner| {
        HookedClients::over(inner, Arc::new(PanicOnce::default()))
    });
    // Four clients at once through the seed's RunN harness, each panicking once.
    let results = snapstorm::multiclient::run_n(4, |client| {
        let e = &f.engine;
        e.exec_action(client, Action::WriteRandomFiles, &ActionParams::default());
        let panicked = e.exec_action(client, Action::SnapshotRoot, &ActionParams::default());
        let retried = e.exec_action(client, Action::SnapshotRoot, &ActionParams::default());
        let verified = e.exec_action(
            client,
            Action::RestoreRandomSnapshot,
            &ActionParams::default(),
        );
        (panicked, retried, verified)
    });
    for result in results {
        let (panicked, retried, verified) = result.expect("no client thread crashed");
        assert_eq!(panicked.outcome, Outcome::Error);
        assert_eq!(
            panicked.message.as_deref(),
            Some("backend panicked: injected panic inside the backend")
        );
        assert_eq!(retried.outcome, Outcome::Ok, "{retried:?}");
        assert_eq!(verified.outcome, Outcome::Ok, "{verified:?}");
    }
    let report = f.engine.report();
    assert_eq!(report.totals.errors, 4);
    assert_eq!(report.totals.snapshots_created, 4);
    assert_eq!(report.totals.verification_failures, 0);
}

#[test]
fn a_snapshot_removed_behind_the_engines_back_is_lost_on_the_next_start() {
    let f = EngineFixture::inline(SMALL, 4);
    exec(&f, Action::WriteRandomFiles);
    let kept = exec(&f, Action::SnapshotRoot).snapshot.unwrap();
    exec(&f, Action::WriteRandomFiles);
    let lost = exec(&f, Action::SnapshotRoot).snapshot.unwrap();
    assert!(
        f.engine.startup_check().unwrap().is_empty(),
        "consistent metadata: no failure"
    );
    let state = f.close();

    // Directly in the repository, as a failing backend might.
    let file = state.path().join("repository/repo/snapshots").join(&lost);
    std::fs::remove_file(&file).unwrap();

    let scenario = snapstorm::engine::scenario::Scenario::parse("inline", SMALL, "inline").unwrap();
    let f = EngineFixture::open(state, scenario, 4, |c| c);
    let failures = f.engine.startup_check().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].snapshot.as_deref(), Some(lost.as_str()));
    assert!(
        failures[0].summary.starts_with("snapshot lost"),
        "{}",
        failures[0].summary
    );
    let report = f.engine.report();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.totals.verification_failures, 1);
    // The surviving snapshot is still verified.
    let params = ActionParams {
        snapshot_id: Some(kept),
        ..ActionParams::default()
    };
    assert_eq!(
        f.engine
            .exec_action(C1, Action::RestoreRandomSnapshot, &params)
            .outcome,
        Outcome::Ok
    );
}

/// The other half of the listing check: a snapshot the engine deleted
/// that is back in the repository (its file put back, as a backend that
/// writes a deleted snapshot back leaves it) is an unexpected failure of
/// the next start, and only it is.
#[test]
fn a_deleted_snapshot_back_in_the_repository_is_a_failure_on_the_next_start() {
    let f = EngineFixture::inline(SMALL, 4);
    exec(&f, Action::WriteRandomFiles);
    exec(&f, Action::SnapshotRoot);
    exec(&f, Action::WriteRandomFiles);
    exec(&f, Action::SnapshotRoot);
    let snapshots = f.state.path().join("repository/repo/snapshots");
    let saved = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.clone(), std::fs::read(&path).unwrap())
        })
        .collect::<Vec<_>>();
    let delete = exec(&f, Action::DeleteRandomSnapshot);
    assert_eq!(delete.outcome, Outcome::Ok, "{delete:?}");
    let deleted = delete.snapshot.unwrap();
    assert!(
        f.engine.startup_check().unwrap().is_empty(),
        "consistent metadata: no failure"
    );
    let state = f.close();

    // Written back, directly in the repository.
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }

    let scenario = snapstorm::engine::scenario::Scenario::parse("inline", SMALL, "inline").unwrap();
    let f = EngineFixture::open(state, scenario, 4, |c| c);
    let failures = f.engine.startup_check().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].snapshot.as_deref(), Some(deleted.as_str()));
    assert_eq!(failures[0].kind, FailureKind::DeletedSnapshotPresent);
    assert_eq!(
        failures[0].summary,
        "deleted snapshot is still in the repository"
    );
    assert!(failures[0].explained_by.is_none(), "{:?}", failures[0]);
    assert_eq!(f.engine.report().totals.unexpected_failures, 1);
}

/// Deletes wait for another client's lock and are held up by it (what a
/// restic client reports when the holder's requests did not get through):
/// `BackendError::HeldUp`.
struct HeldUpDeletes {
    /// The holder's client, and when its process started.
    holder: Arc<std::sync::Mutex<Option<(ClientId, std::time::Instant)>>>,
}

impl Hook for HeldUpDeletes {
    fn before_delete(&self, _: ClientId) -> BackendResult<()> {
        match *self.holder.lock().unwrap() {
            Some((by, since)) => Err(snapstorm::engine::traits::BackendError::HeldUp {
                by,
                since,
                why: format!("held up by the lock of {by}'s process"),
            }),
            None => Ok(()),
        }
    }
}

/// An error held up by another client is judged as that client's, from
/// when its process started: a fault aimed at that client, over before the
/// waiting call began, explains it; the same call held up by nobody does
/// not get that fault's excuse.
#[test]
fn an_error_held_up_by_another_client_is_judged_as_that_clients() {
    use snapstorm::engine::traits::FaultHost;
    use snapstorm::faults::FaultKind;
    let scenario = snapstorm::engine::scenario::Scenario::parse("inline", SMALL, "inline").unwrap();
    let holder = Arc::new(std::sync::Mutex::new(None));
    let f = EngineFixture::open(tempfile::tempdir().unwrap(), scenario, 3, {
        let holder = holder.clone();
        move |inner| HookedClients::over(inner, Arc::new(HeldUpDeletes { holder }))
    });
    let c4 = ClientId(4);
    let exec4 = |action| f.engine.exec_action(c4, action, &ActionParams::default());
    for _ in 0..3 {
        assert_eq!(exec4(Action::WriteRandomFiles).outcome, Outcome::Ok);
        assert_eq!(exec4(Action::SnapshotRoot).outcome, Outcome::Ok);
    }
    let host: Arc<dyn FaultHost> = f.engine.clone();
    let label = host.fault_starts(
        FaultKind::RevokeClient,
        "client-2",
        Some(ClientId(2)),
        Some(std::time::Duration::ZERO),
    );
    let holder_started = std::time::Instant::now();
    // The revoke explains client-2's errors for 5 s more; the wait is later.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    *holder.lock().unwrap() = Some((ClientId(2), holder_started));
    let held = exec4(Action::DeleteRandomSnapshot);
    assert_eq!(held.outcome, Outcome::Error, "{held:?}");
    assert_eq!(
        held.error_class,
        Some(snapstorm::engine::traits::ErrorClass::NotThrough)
    );
    assert_eq!(
        held.explained_by.as_deref(),
        Some(label.as_str()),
        "{held:?}"
    );
    // Held up by a process of client-3's, which no fault touched: unexplained.
    *holder.lock().unwrap() = Some((ClientId(3), holder_started));
    let raced = exec4(Action::DeleteRandomSnapshot);
    assert_eq!(raced.outcome, Outcome::Error, "{raced:?}");
    assert_eq!(raced.explained_by, None, "{raced:?}");
    let report = f.engine.report();
    assert_eq!(report.totals.errors, 2);
    assert_eq!(report.totals.expected_errors, 1);
}

/// Holds the clients' snapshots and restores at the door until the test
/// lets them through: a backup then goes on to the real server; a restore
/// answers that data is missing while `refuse_restores` (as a cut-off
/// restore's process may).
#[derive(Default)]
struct Door {
    armed: AtomicBool,
    refuse_restores: AtomicBool,
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    open: (std::sync::Mutex<bool>, std::sync::Condvar),
}

impl Door {
    /// The next call to come waits here until [`Door::open`].
    fn arm(&self) -> std::sync::mpsc::Receiver<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        *self.entered.lock().unwrap() = Some(tx);
        *self.open.0.lock().unwrap() = false;
        self.armed.store(true, Ordering::SeqCst);
        rx
    }
    fn wait(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(entered) = self.entered.lock().unwrap().take() {
            let _ = entered.send(());
        }
        let (open, turned) = &self.open;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            is_open = turned.wait(is_open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl Hook for Door {
    fn before_create(&self, _: ClientId) {
        self.wait();
    }
    fn before_restore(&self, _: ClientId, id: &str) -> BackendResult<()> {
        self.wait();
        if self.refuse_restores.load(Ordering::SeqCst) {
            return Err(snapstorm::engine::traits::BackendError::Data(format!(
                "{id}: pack not found"
            )));
        }
        Ok(())
    }
}

/// Runs `action` for client-1 held at the door; once it waits there, the
/// run gives up on it (its grace ran out) and `meanwhile` cuts it off.
fn abandoned(
    f: &EngineFixture,
    door: &Door,
    action: Action,
    meanwhile: impl FnOnce(),
) -> snapstorm::engine::ActionRecord {
    let entered = door.arm();
    std::thread::scope(|scope| {
        let running = scope.spawn(|| exec(f, action));
        entered
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the action reached the door");
        f.engine.abandon_in_flight();
        meanwhile();
        door.open();
        running.join().unwrap()
    })
}

/// An action the run stopped waiting for, then cut off, ends after the
/// run's verdict: its error is the run's own doing (here: the server
/// stopped under a backup), not the repository's, unexplained; a restore
/// it cut off is no failure. The trace marks both, the counts leave them
/// out, and the report says how many actions the run ended without.
#[test]
fn an_action_the_run_abandoned_is_the_runs_doing_not_the_repositorys() {
    use snapstorm::engine::traits::ErrorClass;
    let scenario = snapstorm::engine::scenario::Scenario::parse("inline", SMALL, "inline").unwrap();
    let door = Arc::new(Door::default());
    let f = EngineFixture::open(tempfile::tempdir().unwrap(), scenario, 3, {
        let door = door.clone();
        move |inner| HookedClients::over(inner, door)
    });
    assert_eq!(exec(&f, Action::WriteRandomFiles).outcome, Outcome::Ok);
    assert_eq!(exec(&f, Action::SnapshotRoot).outcome, Outcome::Ok);
    let before = f.engine.report();

    // Restored while the run had given up on it: "missing data" is no failure.
    door.refuse_restores.store(true, Ordering::SeqCst);
    let restore = abandoned(&f, &door, Action::RestoreRandomSnapshot, || {});
    door.refuse_restores.store(false, Ordering::SeqCst);
    assert_eq!(restore.outcome, Outcome::Error, "{restore:?}");
    assert_eq!(restore.error_class, Some(ErrorClass::Local), "{restore:?}");
    assert!(
        restore.abandoned && restore.failures.is_empty(),
        "{restore:?}"
    );

    // The server stops under a backup: the real request does not get through.
    assert_eq!(exec(&f, Action::WriteRandomFiles).outcome, Outcome::Ok);
    let backup = abandoned(&f, &door, Action::SnapshotRoot, || {
        f.runtime.block_on(f.parts.server.stop());
    });
    assert_eq!(backup.outcome, Outcome::Error, "{backup:?}");
    assert_eq!(backup.error_class, Some(ErrorClass::Local), "{backup:?}");
    assert_eq!(backup.explained_by, None);
    assert!(backup.abandoned, "{backup:?}");
    assert!(
        backup
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("abandoned at the run's end: ")),
        "{backup:?}"
    );

    let report = f.engine.report();
    assert_eq!(
        report.abandoned_actions, 1,
        "in flight when the run gave up"
    );
    assert_eq!(report.totals.errors, before.totals.errors);
    assert_eq!(report.totals.verification_failures, 0);
    assert_eq!(report.failures, []);
    let trace = std::fs::read_to_string(f.engine.store().layout().trace()).unwrap();
    // Everything that ended after the run gave up is marked, a write too.
    let marked: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["abandoned"] == true && l["outcome"] == "error")
        .collect();
    assert_eq!(marked.len(), 2, "{trace}");
    assert!(
        marked
            .iter()
            .all(|l| l["error_class"] == "local" && l["explained_by"].is_null()),
        "{marked:#?}"
    );
}
