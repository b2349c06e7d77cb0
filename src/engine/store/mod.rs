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

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::damage::Damage;
use super::fingerprint::Fingerprint;
use super::traits::{ClientId, SnapshotId};
use crate::engine::input::{MAX_STATE_BYTES, read_bounded};

mod durable;
mod layout;
mod open;
mod records;

pub use durable::{random_password, write_durably};
pub use layout::StateLayout;
use open::{
    check_fingerprints, check_fresh, create_private_dir, read_fingerprint, warn_if_others_can_read,
};
pub use records::{
    ClientRecord, DamageRecord, Failure, FailureKind, RunRecord, SnapshotRecord, State,
};

const FORMAT: u32 = 1;

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
        "state directory {path} belongs to {found}, not {wanted}; its snapshots are in that repository: choose another --state-dir"
    )]
    OtherRepository {
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
    #[error("state directory: {0}")]
    Input(#[source] crate::engine::input::InputError),
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

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A recorded repository location, as an error names it.
fn described(repository: Option<&str>) -> String {
    match repository {
        Some(location) => format!("the repository {location}"),
        None => "its own repository (no --repository)".into(),
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
    /// This store set the directory up: whether it also made the directory
    /// itself (else it was an empty one given), so a start that fails can
    /// leave it as it found it. `None` for a state dir it only opened.
    set_up: Option<bool>,
}

impl MetadataStore {
    /// Opens the state directory, or sets up a new or empty one, and checks
    /// its metadata. Writes nothing to a directory that holds a state (see
    /// [`MetadataStore::begin_run`]); refuses one that holds snapstorm's data
    /// without its `state.json`, or that is not snapstorm's at all.
    pub fn open(layout: StateLayout, backend: &str) -> Result<Self, StoreError> {
        Self::open_for(layout, backend, None, None)
    }

    /// [`MetadataStore::open`] for the repository at `repository` (as the
    /// state records it; `None`: the state dir's own): a state dir set up
    /// for another repository is refused, nothing written. A new state dir
    /// takes `password` as the repository's, where one is given (a
    /// repository another run made, on a storage several runs share), else
    /// a random one; a state dir that has one keeps it.
    pub fn open_for(
        layout: StateLayout,
        backend: &str,
        repository: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, StoreError> {
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

        let (state, fresh) = match read_bounded(&state_file, MAX_STATE_BYTES) {
            Ok(bytes) => {
                let state =
                    serde_json::from_slice::<State>(&bytes).map_err(|e| StoreError::Corrupt {
                        path: state_file.clone(),
                        message: e.to_string(),
                    })?;
                (state, false)
            }
            Err(e) if e.is_not_found() => {
                // Checked again under the lock: another snapstorm may have
                // set it up since.
                check_fresh(&layout)?;
                let state = State {
                    format: FORMAT,
                    run_counter: 0,
                    backend: backend.to_owned(),
                    repository: repository.map(str::to_owned),
                    repository_password: password.map_or_else(random_password, str::to_owned),
                    host_tag: repository.map(|_| random_password()[..8].to_owned()),
                    clients: BTreeMap::new(),
                    failures: Vec::new(),
                    runs: Vec::new(),
                    damage: Vec::new(),
                };
                (state, true)
            }
            Err(e) => return Err(StoreError::Input(e)),
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
        if state.repository.as_deref() != repository {
            return Err(StoreError::OtherRepository {
                path: root,
                found: described(state.repository.as_deref()),
                wanted: described(repository),
            });
        }
        check_fingerprints(&layout, &state)?;
        let store = MetadataStore {
            layout,
            state: Mutex::new(state),
            _lock: lock,
            set_up: fresh.then_some(created),
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

    /// The host name `client`'s snapshots carry: `client-N`, with this
    /// state dir's tag on a repository other runs may share.
    pub fn host_of(&self, client: ClientId) -> String {
        match &self.state.lock().expect("state lock").host_tag {
            Some(tag) => format!("{client}.{tag}"),
            None => client.to_string(),
        }
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
        self.mark_all_deleting(client, &[id.to_owned()])
    }

    /// [`MetadataStore::mark_deleting`] for several snapshots, in one write.
    pub fn mark_all_deleting(
        &self,
        client: ClientId,
        ids: &[SnapshotId],
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        for snapshot in record.live.iter_mut().filter(|s| ids.contains(&s.id)) {
            snapshot.deleting = true;
        }
        self.save(&state)
    }

    /// Moves a snapshot from live to deleted; its fingerprint is no longer needed.
    pub fn mark_deleted(&self, client: ClientId, id: &str) -> Result<(), StoreError> {
        self.mark_all_deleted(client, &[id.to_owned()])
    }

    /// [`MetadataStore::mark_deleted`] for several snapshots, in one write.
    pub fn mark_all_deleted(&self, client: ClientId, ids: &[SnapshotId]) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("state lock");
        let record = state.clients.entry(client).or_default();
        record.live.retain(|s| !ids.contains(&s.id));
        for id in ids {
            if !record.deleted.contains(id) {
                record.deleted.push(id.clone());
            }
        }
        self.save(&state)?;
        drop(state);
        for id in ids {
            let _ = fs::remove_file(self.layout.fingerprint(id));
        }
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

    /// Undoes the setting up of a fresh state dir whose run never began (a
    /// backend that could not start): a later run finds the directory as
    /// it was — gone if this store made it, empty if it was given empty.
    /// A state dir that was opened, not set up, is left alone.
    pub fn undo_setup(&self) {
        let Some(made_root) = self.set_up else {
            return;
        };
        if self.state.lock().expect("state lock").run_counter > 0 {
            return;
        }
        let root = self.layout.root();
        let result = if made_root {
            fs::remove_dir_all(root)
        } else {
            fs::read_dir(root).and_then(|entries| {
                entries.flatten().try_for_each(|entry| {
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        fs::remove_dir_all(path)
                    } else {
                        fs::remove_file(path)
                    }
                })
            })
        };
        if let Err(error) = result {
            tracing::warn!(%error, dir = %root.display(), "cannot undo the state dir's setup");
        }
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

#[cfg(test)]
mod tests;
