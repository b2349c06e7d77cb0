//! The metadata store: what the checker knows, kept durably in the state
//! directory so that a crash loses nothing already reported and a later run
//! resumes where this one stopped.
//!
//! Layout of a state directory:
//!
//! ```text
//! state.json            run counter, live/deleted snapshots per client, failures, runs
//! fingerprints/ID.json  the fingerprint taken when snapshot ID was made
//! repository/           the repository the server serves
//! clients/client-N/     data/ (what the client snapshots) and cache/
//! scratch/              restore targets, emptied after each verification
//! trace.jsonl           one line per action
//! ```
//!
//! Every change is written to a temp file, fsynced and renamed over the old
//! file, then the directory is fsynced: a reader sees the old or the new
//! state, never half of one.
//!
//! Nothing is written before the directory is known to be usable: opening
//! only reads and checks (a fresh directory excepted, which gets its layout
//! and a `state.json` holding the new repository's password before the
//! repository is made); the run is counted and recorded by
//! [`MetadataStore::begin_run`], once the repository opened with that password.
//!
//! The state dir holds the repository's password and everything the clients
//! wrote: a directory snapstorm sets up is made `0700`. An existing one that
//! others can read is left as it is, with a warning (its owner may have
//! opened it on purpose).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::actions::Origin;
use super::damage::{Damage, DataRef};
use super::fingerprint::Fingerprint;
use super::traits::{ClientId, SnapshotId};
use crate::faults::FaultKind;

const FORMAT: u32 = 1;

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn fingerprints(&self) -> PathBuf {
        self.root.join("fingerprints")
    }
    pub fn fingerprint(&self, id: &str) -> PathBuf {
        self.fingerprints().join(format!("{id}.json"))
    }
    pub fn repository(&self) -> PathBuf {
        self.root.join("repository")
    }
    pub fn client_dir(&self, client: ClientId) -> PathBuf {
        self.root.join("clients").join(client.to_string())
    }
    pub fn client_data(&self, client: ClientId) -> PathBuf {
        self.client_dir(client).join("data")
    }
    pub fn client_cache(&self, client: ClientId) -> PathBuf {
        self.client_dir(client).join("cache")
    }
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub fn trace(&self) -> PathBuf {
        self.root.join("trace.jsonl")
    }
    fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }
}

/// A snapshot the checker knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: SnapshotId,
    /// The run that created it.
    pub run: u32,
    pub created: String,
    /// Path under the data dir that was snapshotted, if not the whole of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    pub entries: usize,
    pub bytes: u64,
    /// A delete was asked of the repository and has not been confirmed:
    /// recorded before the delete, so a crash in between is never taken
    /// for a lost snapshot. Such a snapshot is neither restored nor deleted again
    /// until the next listing check settles it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Its last restore ended in an error that said nothing about its data:
    /// it is restored once more at the end of the run (this one, or the next
    /// if this one ended before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsettled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub live: Vec<SnapshotRecord>,
    pub deleted: Vec<SnapshotId>,
    /// Recorded live, then missing from the repository (reported as failures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<SnapshotRecord>,
}

/// What kind of verification failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Restored, but different from what was snapshotted.
    #[default]
    ContentMismatch,
    /// Could not be restored (three attempts).
    RestoreFailed,
    /// Recorded live, but missing from the repository's listing.
    SnapshotLost,
    /// Deleted, but listed again.
    DeletedSnapshotPresent,
    /// The backend's full repository check found problems.
    RepositoryCheck,
}

impl FailureKind {
    /// The kebab-case name the report and the console use.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::ContentMismatch => "content-mismatch",
            FailureKind::RestoreFailed => "restore-failed",
            FailureKind::SnapshotLost => "snapshot-lost",
            FailureKind::DeletedSnapshotPresent => "deleted-snapshot-present",
            FailureKind::RepositoryCheck => "repository-check",
        }
    }
}

/// A verification failure: the repository did not give back what it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub run: u32,
    pub time: String,
    pub client: ClientId,
    pub snapshot: Option<SnapshotId>,
    /// The action that found it (or `startup-check` / `final-check`).
    pub action: Origin,
    #[serde(default)]
    pub kind: FailureKind,
    /// One line.
    pub summary: String,
    /// The readable diff or error, several lines.
    pub details: String,
    /// The injected fault that explains it (`corrupt-pack@15.0s`); `None`: unexpected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained_by: Option<String>,
    /// What it could not read, where the backend named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<BTreeSet<DataRef>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub number: u32,
    pub seed: u64,
    pub scenario: String,
    pub started: String,
    #[serde(default)]
    pub ended: Option<String>,
}

/// Everything in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub run_counter: u32,
    /// The backend this state belongs to; a state dir is not shared between backends.
    pub backend: String,
    /// The repository's encryption password (a test repository's, not a secret worth more).
    pub repository_password: String,
    pub clients: BTreeMap<ClientId, ClientRecord>,
    pub failures: Vec<Failure>,
    pub runs: Vec<RunRecord>,
    /// Faults of any run that damaged the repository's data: the damage
    /// stays, so it explains data incidents of later runs too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<DamageRecord>,
}

/// A fault that damaged the repository's data in some run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageRecord {
    pub run: u32,
    pub kind: FaultKind,
    /// How that run named it (`corrupt-pack@8.0s`).
    pub label: String,
    pub target: String,
    /// What it damaged, read from the repository when it did it; `None`
    /// where the backend could not tell (then its time decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<Damage>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source} (choose a writable --state-dir)")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a snapstorm state file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "state directory {0} is in use by another snapstorm; wait for it or choose another --state-dir"
    )]
    InUse(PathBuf),
    #[error(
        "state directory {path} belongs to the `{found}` backend, not `{wanted}`; choose another --state-dir"
    )]
    OtherBackend {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error(
        "state directory {path}: {what} but state.json is missing, so the repository's password and what its snapshots hold are unknown; restore state.json from a copy, or choose another --state-dir"
    )]
    MissingState { path: PathBuf, what: String },
    #[error(
        "state directory {path} is not empty and holds no state.json, so it is not a snapstorm state dir; give a new or empty directory"
    )]
    NotAStateDir { path: PathBuf },
    #[error("no fingerprint recorded for snapshot {0}")]
    NoFingerprint(SnapshotId),
    #[error(
        "state directory {path}: the fingerprints of {} live snapshot(s) cannot be read, so their restores could not be verified: {}; the state dir's metadata is damaged — restore it from a copy, or start afresh with another --state-dir",
        unreadable.len(),
        unreadable.join("; ")
    )]
    UnreadableFingerprints {
        path: PathBuf,
        unreadable: Vec<String>,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The durable store; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MetadataStore {
    layout: StateLayout,
    state: Mutex<State>,
    /// Held for the store's lifetime: one snapstorm per state directory.
    _lock: fs::File,
}

impl MetadataStore {
    /// Opens the state directory, or sets up a new or empty one, and checks
    /// its metadata. Writes nothing to a directory that holds a state (see
    /// [`MetadataStore::begin_run`]); refuses one that holds snapstorm's data
    /// without its `state.json`, or that is not snapstorm's at all.
    pub fn open(layout: StateLayout, backend: &str) -> Result<Self, StoreError> {
        let root = layout.root().to_path_buf();
        let created = create_private_dir(&root)?;
        let state_file = layout.state_file();
        if !created && !state_file.exists() {
            check_fresh(&layout)?;
        }
        let lock_path = layout.lock_file();
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StoreError::InUse(root.clone()))?;

        let (state, fresh) = match fs::read(&state_file) {
            Ok(bytes) => {
                let state =
                    serde_json::from_slice::<State>(&bytes).map_err(|e| StoreError::Corrupt {
                        path: state_file.clone(),
                        message: e.to_string(),
                    })?;
                (state, false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Checked again under the lock: another snapstorm may have
                // set it up since.
                check_fresh(&layout)?;
                let state = State {
                    format: FORMAT,
                    run_counter: 0,
                    backend: backend.to_owned(),
                    repository_password: random_password(),
                    clients: BTreeMap::new(),
                    failures: Vec::new(),
                    runs: Vec::new(),
                    damage: Vec::new(),
                };
                (state, true)
            }
            Err(e) => return Err(io_error(&state_file)(e)),
        };
        if state.format != FORMAT {
            return Err(StoreError::Corrupt {
                path: state_file,
                message: format!("format {} is not the supported {FORMAT}", state.format),
            });
        }
        if state.backend != backend {
            return Err(StoreError::OtherBackend {
                path: root,
                found: state.backend,
                wanted: backend.to_owned(),
            });
        }
        check_fingerprints(&layout, &state)?;
        let store = MetadataStore {
            layout,
            state: Mutex::new(state),
            _lock: lock,
        };
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            // An empty directory the user gave becomes snapstorm's: private.
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(io_error(&root))?;
            for dir in [
                store.layout.fingerprints(),
                store.layout.scratch(),
                store.layout.repository(),
            ] {
                fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            }
            // The password is durable before any repository is made with it.
            store.save(&store.state.lock().expect("state lock"))?;
        } else {
            warn_if_others_can_read(&root);
            for dir in [store.layout.fingerprints(), store.layout.scratch()] {
                fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            }
        }
        Ok(store)
    }

    /// Counts and records a new run, durably. Call it once the repository
    /// opened with this state's password: a run that cannot start is not
    /// recorded. Returns the run's number.
    pub fn begin_run(&self, seed: u64, scenario: &str) -> Result<u32, StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let mut next = state.clone();
        next.run_counter += 1;
        next.runs.push(RunRecord {
            number: next.run_counter,
            seed,
            scenario: scenario.to_owned(),
            started: now_rfc3339(),
            ended: None,
        });
        self.save(&next)?;
        *state = next;
        drop(state);
        self.clear_scratch();
        Ok(self.run_number())
    }

    /// Removes restore targets a killed run left in `scratch/`: nothing
    /// there outlives the restore that made it.
    fn clear_scratch(&self) {
        let scratch = self.layout.scratch();
        let Ok(entries) = fs::read_dir(&scratch) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(error) = removed {
                tracing::warn!(path = %path.display(), %error, "cannot remove a restore target a killed run left");
            }
        }
    }

    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// A copy of the whole state.
    pub fn state(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }

    pub fn run_number(&self) -> u32 {
        self.state.lock().expect("state lock").run_counter
    }

    pub fn repository_password(&self) -> String {
        self.state
            .lock()
            .expect("state lock")
            .repository_password
            .clone()
    }

    /// The client's live snapshots that may be restored or deleted: those
    /// with a delete in flight are left out.
    pub fn live(&self, client: ClientId) -> Vec<SnapshotRecord> {
        self.state
            .lock()
            .expect("state lock")
            .clients
            .get(&client)
            .map(|c| c.live.iter().filter(|s| !s.deleting).cloned().collect())
            .unwrap_or_default()
    }

    /// Live snapshots per client, deletes in flight included (they are in
    /// the repository until confirmed gone).
    pub fn live_counts(&self) -> BTreeMap<ClientId, u64> {
        self.state
            .lock()
            .expect("state lock")
            .clients
            .iter()
            .map(|(id, c)| (*id, c.live.len() as u64))
            .collect()
    }

    /// Snapshots whose delete was asked and not confirmed, with their clients.
    pub fn pending_deletes(&self) -> Vec<(ClientId, SnapshotId)> {
        self.live_where(|s| s.deleting)
    }

    /// Live snapshots (deletes in flight included) that `keep` keeps, with their clients.
    fn live_where(&self, keep: impl Fn(&SnapshotRecord) -> bool) -> Vec<(ClientId, SnapshotId)> {
        self.state
            .lock()
            .expect("state lock")
            .clients
            .iter()
            .flat_map(|(id, c)| {
                c.live
                    .iter()
                    .filter(|s| keep(s))
                    .map(move |s| (*id, s.id.clone()))
            })
            .collect()
    }

    pub fn deleted_count(&self, client: ClientId) -> usize {
        self.state
            .lock()
            .expect("state lock")
            .clients
            .get(&client)
            .map(|c| c.deleted.len())
            .unwrap_or(0)
    }

    /// Records a new snapshot: first its fingerprint, then the index that
    /// names it, each durably, before the snapshot is reported anywhere.
    pub fn record_snapshot(
        &self,
        client: ClientId,
        record: SnapshotRecord,
        fingerprint: &Fingerprint,
    ) -> Result<(), StoreError> {
        let path = self.layout.fingerprint(&record.id);
        let json = serde_json::to_vec(fingerprint).expect("fingerprints serialize");
        write_durably(&path, &json).map_err(io_error(&path))?;
        let mut state = self.state.lock().expect("state lock");
        state.clients.entry(client).or_default().live.push(record);
        self.save(&state)
    }

    pub fn fingerprint(&self, id: &str) -> Result<Fingerprint, StoreError> {
        read_fingerprint(&self.layout, id)
    }

    /// Records, durably, whether the snapshot's last restore ended in an
    /// error (see [`SnapshotRecord::unsettled`]); writes only on a change.
    pub fn mark_unsettled(
        &self,
        client: ClientId,
        id: &str,
        unsettled: bool,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        match record.live.iter_mut().find(|s| s.id == id) {
            Some(snapshot) if snapshot.unsettled != unsettled => snapshot.unsettled = unsettled,
            _ => return Ok(()),
        }
        self.save(&state)
    }

    /// Live snapshots whose last restore ended in an error, with their clients.
    pub fn unsettled(&self) -> Vec<(ClientId, SnapshotId)> {
        self.live_where(|s| s.unsettled && !s.deleting)
    }

    /// Records, durably, that a delete of the snapshot is about to be asked.
    pub fn mark_deleting(&self, client: ClientId, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        if let Some(snapshot) = record.live.iter_mut().find(|s| s.id == id) {
            snapshot.deleting = true;
        }
        self.save(&state)
    }

    /// Moves a snapshot from live to deleted; its fingerprint is no longer needed.
    pub fn mark_deleted(&self, client: ClientId, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        record.live.retain(|s| s.id != id);
        if !record.deleted.iter().any(|d| d == id) {
            record.deleted.push(id.to_owned());
        }
        self.save(&state)?;
        drop(state);
        let _ = fs::remove_file(self.layout.fingerprint(id));
        Ok(())
    }

    /// Moves a snapshot the repository lost from live to lost: it was
    /// reported, and is not restored or reported again.
    pub fn mark_lost(&self, client: ClientId, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        if let Some(at) = record.live.iter().position(|s| s.id == id) {
            let snapshot = record.live.remove(at);
            record.lost.push(snapshot);
        }
        self.save(&state)
    }

    /// Records, durably, a fault that damaged the repository's data.
    pub fn record_damage(&self, damage: DamageRecord) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        state.damage.push(damage);
        self.save(&state)
    }

    /// Records what the fault of this run labelled `label` damaged.
    pub fn set_damage(&self, label: &str, damage: Damage) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let run = state.run_counter;
        if let Some(record) = state
            .damage
            .iter_mut()
            .find(|d| d.run == run && d.label == label)
        {
            record.damage = Some(damage);
        }
        self.save(&state)
    }

    pub fn record_failure(&self, failure: Failure) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        state.failures.push(failure);
        self.save(&state)
    }

    /// Marks the current run as ended.
    pub fn finish_run(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        if let Some(run) = state.runs.last_mut() {
            run.ended = Some(now_rfc3339());
        }
        self.save(&state)
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.layout.state_file();
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        write_durably(&path, &json).map_err(io_error(&path))
    }
}

fn read_fingerprint(layout: &StateLayout, id: &str) -> Result<Fingerprint, StoreError> {
    let path = layout.fingerprint(id);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::NoFingerprint(id.to_owned()));
        }
        Err(e) => return Err(io_error(&path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path,
        message: e.to_string(),
    })
}

/// Checks that the fingerprint of every live snapshot can be read, before a
/// run starts: one that cannot is snapstorm's own problem, said up front,
/// never a restore that silently cannot be verified.
fn check_fingerprints(layout: &StateLayout, state: &State) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let live: Vec<(ClientId, &str)> = state
        .clients
        .iter()
        .flat_map(|(id, c)| c.live.iter().map(move |s| (*id, s.id.as_str())))
        .collect();
    let mut unreadable: Vec<String> = live
        .par_iter()
        .filter_map(|(client, id)| {
            read_fingerprint(layout, id)
                .err()
                .map(|e| format!("{client} snapshot {id}: {e}"))
        })
        .collect();
    if unreadable.is_empty() {
        return Ok(());
    }
    unreadable.sort();
    Err(StoreError::UnreadableFingerprints {
        path: layout.root().to_path_buf(),
        unreadable,
    })
}

/// Creates `root` (its parents as usual, itself `0700`) if missing; says whether it did.
fn create_private_dir(root: &Path) -> Result<bool, StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if root.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && root.is_dir() => Ok(false),
        Err(e) => Err(io_error(root)(e)),
    }
}

/// A directory without `state.json` may be set up only if it holds nothing
/// of value: it is empty but for what a set-up cut short leaves (the lock,
/// a temp file, empty layout directories). One whose `repository/` or
/// fingerprints hold data lost its `state.json`: starting afresh would make
/// a new password the repository refuses, and every later run would fail.
fn check_fresh(layout: &StateLayout) -> Result<(), StoreError> {
    let root = layout.root();
    let entries = fs::read_dir(root).map_err(io_error(root))?;
    let mut found = Vec::new();
    let mut other = false;
    for entry in entries {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_empty_dir =
            path.is_dir() && fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        match name.as_str() {
            ".lock" => {}
            _ if name.starts_with(".tmp-") => {}
            "fingerprints" | "scratch" | "repository" if is_empty_dir => {}
            "repository" => found.push("repository/ holds a repository"),
            "fingerprints" => found.push("fingerprints/ holds fingerprints"),
            "trace.jsonl" => found.push("trace.jsonl holds a trace"),
            "clients" => found.push("clients/ holds client data"),
            _ => other = true,
        }
    }
    if !found.is_empty() {
        return Err(StoreError::MissingState {
            path: root.to_path_buf(),
            what: found.join(", "),
        });
    }
    if other {
        return Err(StoreError::NotAStateDir {
            path: root.to_path_buf(),
        });
    }
    Ok(())
}

/// Warns when others can read or enter an existing state dir (it holds the
/// repository's password); it is not changed behind its owner's back.
fn warn_if_others_can_read(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(root) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "state directory {} is open to others (mode {mode:o}) and holds the repository's password; make it private with `chmod 700 {}`",
                root.display(),
                root.display()
            );
        }
    }
}

/// Replaces `path` atomically and durably with `bytes`.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A bare file name's parent is the empty path: the working directory.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

fn random_password() -> String {
    use rand::RngExt;
    let bytes: [u8; 24] = rand::rng().random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the state dir and begins a run in it, as a launch does.
    fn open_run(layout: StateLayout, seed: u64) -> Result<MetadataStore, StoreError> {
        let store = MetadataStore::open(layout, "embedded")?;
        store.begin_run(seed, "x")?;
        Ok(store)
    }

    fn record(id: &str) -> SnapshotRecord {
        SnapshotRecord {
            id: id.into(),
            run: 1,
            created: now_rfc3339(),
            sub_path: None,
            entries: 0,
            bytes: 0,
            deleting: false,
            unsettled: false,
        }
    }

    #[test]
    fn state_survives_reopening_and_counts_runs() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("state"));
        {
            let store = open_run(layout.clone(), 1).unwrap();
            assert_eq!(store.run_number(), 1);
            store
                .record_snapshot(ClientId(1), record("aa"), &Fingerprint::default())
                .unwrap();
            store
                .record_snapshot(ClientId(1), record("bb"), &Fingerprint::default())
                .unwrap();
            store.mark_deleted(ClientId(1), "aa").unwrap();
            assert!(!layout.fingerprint("aa").exists());
        }
        let store = open_run(layout.clone(), 2).unwrap();
        assert_eq!(store.run_number(), 2);
        let live: Vec<_> = store.live(ClientId(1)).into_iter().map(|s| s.id).collect();
        assert_eq!(live, vec!["bb"]);
        assert_eq!(store.deleted_count(ClientId(1)), 1);
        assert!(store.fingerprint("bb").is_ok());
        assert!(matches!(
            store.fingerprint("aa"),
            Err(StoreError::NoFingerprint(_))
        ));
        // No temp files are left behind.
        let leftovers: Vec<_> = fs::read_dir(layout.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_run_begins_with_an_empty_scratch_dir() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("state"));
        let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
        store.begin_run(1, "x").unwrap();
        let left = layout.scratch().join("client-1-0123456789abcdef");
        fs::create_dir_all(left.join("deep")).unwrap();
        fs::write(left.join("deep/file"), b"restored").unwrap();
        drop(store);
        let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
        assert!(left.exists(), "opening alone writes nothing");
        store.begin_run(1, "x").unwrap();
        assert!(!left.exists());
        assert!(layout.scratch().is_dir());
    }

    #[test]
    fn a_delete_in_flight_is_neither_restored_nor_lost() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let store = open_run(layout.clone(), 1).unwrap();
        for id in ["aa", "bb"] {
            store
                .record_snapshot(ClientId(1), record(id), &Fingerprint::default())
                .unwrap();
        }
        store.mark_deleting(ClientId(1), "aa").unwrap();
        drop(store);
        let store = open_run(layout, 2).unwrap();
        let live: Vec<_> = store.live(ClientId(1)).into_iter().map(|s| s.id).collect();
        assert_eq!(live, vec!["bb"]);
        assert_eq!(
            store.pending_deletes(),
            vec![(ClientId(1), "aa".to_owned())]
        );
        assert_eq!(store.live_counts()[&ClientId(1)], 2);
        store.mark_deleted(ClientId(1), "aa").unwrap();
        assert!(store.pending_deletes().is_empty());
    }

    #[test]
    fn unreadable_fingerprints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let store = open_run(layout.clone(), 1).unwrap();
        for id in ["aa", "bb", "cc"] {
            store
                .record_snapshot(ClientId(1), record(id), &Fingerprint::default())
                .unwrap();
        }
        drop(store);
        fs::write(layout.fingerprint("aa"), b"").unwrap();
        fs::write(layout.fingerprint("bb"), b"garbage").unwrap();
        let state_before = fs::read(layout.state_file()).unwrap();
        let err = open_run(layout.clone(), 2).unwrap_err().to_string();
        assert_eq!(
            fs::read(layout.state_file()).unwrap(),
            state_before,
            "nothing is written when the metadata is refused"
        );
        assert!(err.contains("2 live snapshot(s)"), "{err}");
        assert!(err.contains("client-1 snapshot aa"), "{err}");
        assert!(err.contains("client-1 snapshot bb"), "{err}");
        assert!(!err.contains("snapshot cc"), "{err}");
    }

    #[test]
    fn a_state_dir_is_used_by_one_snapstorm_and_one_backend() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        let first = open_run(layout.clone(), 1).unwrap();
        assert!(matches!(
            open_run(layout.clone(), 1),
            Err(StoreError::InUse(_))
        ));
        drop(first);
        assert!(matches!(
            MetadataStore::open(layout, "restic"),
            Err(StoreError::OtherBackend { .. })
        ));
    }

    #[test]
    fn opening_writes_nothing_until_the_run_begins() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("state"));
        drop(open_run(layout.clone(), 1).unwrap());
        let before = fs::read(layout.state_file()).unwrap();
        let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
        assert_eq!(store.run_number(), 1);
        drop(store);
        assert_eq!(fs::read(layout.state_file()).unwrap(), before);
        let store = open_run(layout.clone(), 2).unwrap();
        assert_eq!(store.run_number(), 2);
        assert_eq!(store.state().runs.len(), 2);
    }

    #[test]
    fn a_new_state_dir_is_private_and_keeps_its_password_before_any_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("new/state"));
        let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
        let mode = fs::metadata(layout.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        let saved: State = serde_json::from_slice(&fs::read(layout.state_file()).unwrap()).unwrap();
        assert_eq!(saved.repository_password, store.repository_password());
        assert_eq!((saved.run_counter, saved.runs.len()), (0, 0));
        // An empty directory the user made is set up the same way.
        let empty = tempfile::tempdir().unwrap();
        fs::set_permissions(empty.path(), fs::Permissions::from_mode(0o755)).unwrap();
        MetadataStore::open(StateLayout::new(empty.path()), "embedded").unwrap();
        let mode = fs::metadata(empty.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_repository_without_its_state_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path());
        drop(open_run(layout.clone(), 1).unwrap());
        fs::create_dir_all(layout.repository().join("repo/keys")).unwrap();
        fs::write(layout.repository().join("repo/config"), b"x").unwrap();
        fs::remove_file(layout.state_file()).unwrap();
        let before: Vec<_> = walkdir::WalkDir::new(dir.path())
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        let err = MetadataStore::open(layout.clone(), "embedded").unwrap_err();
        assert!(matches!(err, StoreError::MissingState { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("repository/ holds a repository but state.json is missing"),
            "{text}"
        );
        let after: Vec<_> = walkdir::WalkDir::new(dir.path())
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        assert_eq!(before, after, "nothing created");
    }

    #[test]
    fn a_directory_that_is_not_a_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let err = MetadataStore::open(StateLayout::new(dir.path()), "embedded").unwrap_err();
        assert!(matches!(err, StoreError::NotAStateDir { .. }), "{err}");
        assert!(!dir.path().join("state.json").exists());
        assert!(!dir.path().join(".lock").exists());
    }
}
