//! The interfaces a backend implements, after the seed (Kopia's robustness
//! framework, which snapstorm re-designs): a `FileWriter` that owns data directories, a `Snapshotter`
//! that snapshots and restores them, a `ClientSnapshotter` that can also
//! connect to a `Server`, and the `Server` that serves the repository.
//!
//! The calling client travels with every call as a [`ClientId`] (the seed
//! carries it in the Go context). The engine knows nothing else about the
//! backend, so another tool can plug in its own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::damage::{Damage, Unreadable};
use super::options::ActionOptions;
use super::progress::Progress;
use crate::faults::{FaultKind, FaultSpec, RacedStep, VictimRole};

/// One client of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client-{}", self.0)
    }
}

/// `client-N`, as [`ClientId`] displays (and the embedded server names its
/// users): what a backend that keeps users' names maps back to clients.
impl std::str::FromStr for ClientId {
    type Err = std::num::ParseIntError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        name.strip_prefix("client-")
            .unwrap_or("")
            .parse()
            .map(ClientId)
    }
}

/// A snapshot id as the backend names it.
pub type SnapshotId = String;

/// The random source an action draws from; derived from the run seed, the
/// client and the action's position, so that runs can be reproduced.
pub type ActionRng = rand_chacha::ChaCha8Rng;

/// What kind of thing went wrong, as attribution and the verdict see it.
/// Backends decide it from evidence and error types, never the engine from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The request did not get through: refused or dropped connection, a
    /// refused user, an injected HTTP error, a timeout. Says nothing about the data.
    NotThrough,
    /// Raced a concurrent change of the repository (a GC replaced an index
    /// file between listing and reading it). Says nothing about the data.
    Raced,
    /// Waited for a lock that no process of this run holds (another host's,
    /// live or left behind) until its patience ran out. Says nothing about
    /// the data.
    LockedOut,
    /// Data the repository should hold is missing or unreadable (a blob not
    /// in any index, a pack gone, a MAC check that failed).
    Data,
    /// snapstorm's own side: its file system, its metadata, a client it did
    /// not connect. Never a verdict on the repository.
    Local,
    /// The backend failed in a way none of the above describes.
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The request did not get through (see [`ErrorClass::NotThrough`]).
    #[error("{0}")]
    NotThrough(String),
    /// Raced a concurrent change (see [`ErrorClass::Raced`]).
    #[error("{0}")]
    Raced(String),
    /// Locked out by a lock of no process of this run (see
    /// [`ErrorClass::LockedOut`]).
    #[error("{0}")]
    LockedOut(String),
    /// Data missing or unreadable (see [`ErrorClass::Data`]).
    #[error("{0}")]
    Data(String),
    /// The client's own file system (restore target, cache).
    #[error("{0}")]
    Local(String),
    /// The operation failed; the text is the backend's own explanation.
    #[error("{0}")]
    Failed(String),
    /// The backend panicked inside the call; caught and reported, never a crash.
    #[error("backend panicked: {0}")]
    Panicked(String),
    /// The client is not (or no longer) connected.
    #[error("{0} is not connected to the server")]
    NotConnected(ClientId),
    /// The backend had nothing to do, as a tool sees it (restic refuses to
    /// snapshot an empty directory): a no-op, not an error.
    #[error("{0}")]
    NothingToDo(String),
    /// The call waited for another client (a lock its process held) whose
    /// requests did not get through while that process ran: a request that
    /// did not get through, and it is judged as that client's, from when
    /// that process started — the fault that cut it off held this call up,
    /// whenever and wherever this call ran.
    #[error("{why}")]
    HeldUp {
        /// The client that held this call up.
        by: ClientId,
        /// When that client's disturbed process started.
        since: std::time::Instant,
        why: String,
    },
}

impl BackendError {
    pub fn failed(error: impl fmt::Display) -> Self {
        BackendError::Failed(error.to_string())
    }

    /// What a client's snapshotter answers when asked to GC: GC runs on the
    /// [`Server`] (the delegating snapshotter sends it there).
    pub fn gc_is_the_servers() -> Self {
        BackendError::failed("GC runs on the Server, not on a client")
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            BackendError::NotThrough(_) | BackendError::HeldUp { .. } => ErrorClass::NotThrough,
            BackendError::Raced(_) => ErrorClass::Raced,
            BackendError::LockedOut(_) => ErrorClass::LockedOut,
            BackendError::Data(_) => ErrorClass::Data,
            // A no-op never reaches attribution; it is snapstorm's side if it did.
            BackendError::Local(_)
            | BackendError::NotConnected(_)
            | BackendError::NothingToDo(_) => ErrorClass::Local,
            BackendError::Failed(_) | BackendError::Panicked(_) => ErrorClass::Other,
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// Details of what an action did, as named values for the trace and the UI
/// (the seed's "options actually used").
pub type Details = BTreeMap<String, serde_json::Value>;

/// What a file-writer operation did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteEffect {
    Done(Details),
    /// Nothing to do (e.g. no directory at the chosen depth): not an error.
    NoOp(String),
}

/// Owns the data directories the snapshots are taken of.
pub trait FileWriter: Send + Sync {
    /// The directory this client writes into and snapshots.
    fn data_dir(&self, client: ClientId) -> PathBuf;
    /// Writes files at a random depth under a random branch.
    fn write_random_files(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> std::io::Result<WriteEffect>;
    /// Removes a random directory at a random depth in `1..=max_dir_depth`.
    fn delete_random_subdirectory(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> std::io::Result<WriteEffect>;
    /// Removes each entry of a random directory with probability `percent`.
    fn delete_directory_contents(
        &self,
        client: ClientId,
        options: &ActionOptions,
        percent: u8,
        rng: &mut ActionRng,
    ) -> std::io::Result<WriteEffect>;
    /// Empties the data directory.
    fn delete_everything(&self, client: ClientId) -> std::io::Result<()>;
}

/// Snapshots and restores directories; every call names its client.
///
/// The long calls get a [`Progress`] to report how far they got (bytes, and
/// files where the backend counts them); a backend that cannot tell may
/// leave it alone, and the console then shows only the time taken.
pub trait Snapshotter: Send + Sync {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId>;
    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>>;
    /// Restores the snapshot's content so that `target` holds what `source` held.
    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        progress: &Progress,
    ) -> BackendResult<()>;
    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()>;
    /// Forgets the client's snapshots but its newest by policy, as
    /// `forget --host HOST --keep-last 1` does: the tool reads every
    /// snapshot the repository lists to choose (what two hosts' forgets at
    /// once race on: rustic #1421), then deletes. `deleting` is called when
    /// it has chosen and begins deleting, where the backend can tell (else
    /// as the tool starts). Answers the ids it deleted. A backend whose
    /// tool has no such forget says so.
    fn forget_all_but_newest(
        &self,
        _client: ClientId,
        _deleting: &(dyn Fn() + Sync),
    ) -> BackendResult<Vec<SnapshotId>> {
        Err(BackendError::failed(
            "this backend has no forget by policy (forget-snapshots)",
        ))
    }
    fn run_gc(&self, client: ClientId, options: &GcOptions) -> BackendResult<Details>;
    /// What kind of client `client` is (`rustic`, `restic`), for the report
    /// and the console; `None` when the snapshotter does not say.
    fn client_kind(&self, _client: ClientId) -> Option<String> {
        None
    }
}

/// How a client reaches the server: everything it needs to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub user: String,
    pub password: String,
    /// The address the client connects to, in the backend's own form.
    pub url: String,
    /// What the client reads from its environment besides the address
    /// (an S3 storage's keys, as restic reads them): secrets, every value.
    pub environment: Vec<(String, String)>,
}

/// A `Snapshotter` for one client that connects to and disconnects from a server.
pub trait ClientSnapshotter: Snapshotter {
    fn connect(&self, client: ClientId, credentials: &ClientCredentials) -> BackendResult<()>;
    fn disconnect(&self, client: ClientId) -> BackendResult<()>;
}

/// Makes a backend's client snapshotters, one per client, on first use.
pub trait ClientFactory: Send + Sync {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>>;
    /// What kind of client it makes for `client` (`rustic`, `restic`): the
    /// report names it per client.
    fn kind(&self, client: ClientId) -> String;
}

/// Garbage-collection settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcOptions {
    /// Delete unused data at once with no grace period. Without repository
    /// locks this can remove data an in-flight backup relies on.
    pub aggressive: bool,
    /// Run beside any other GC: the server's one-at-a-time lock is not
    /// taken, as two hosts' GCs do not know of each other.
    #[serde(default)]
    pub overlapping: bool,
    /// The backup an aggressive prune of a replay races as it did in the
    /// recording (see [`RacedStep`]): the prune lists the packs only once
    /// that backup's index upload waits, and lets it go then.
    #[serde(skip)]
    pub race: Option<RacedStep>,
}

impl GcOptions {
    /// Takes a server's one-at-a-time GC lock, unless this GC is to
    /// overlap the others: the one rule every server's GC keeps.
    pub fn one_at_a_time<'a>(
        &self,
        gc_lock: &'a std::sync::Mutex<()>,
    ) -> Option<std::sync::MutexGuard<'a, ()>> {
        (!self.overlapping).then(|| gc_lock.lock().expect("gc lock"))
    }
}

/// What a repository check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoCheck {
    pub healthy: bool,
    /// Problems found, each attributed on its own.
    pub problems: Vec<Problem>,
}

/// One finding of a repository check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// In the backend's words.
    pub text: String,
    /// What it names as unreadable, for attribution by cause.
    pub unreadable: Unreadable,
}

impl Problem {
    /// A finding the backend cannot tie to repository items.
    pub fn unnamed(text: impl Into<String>) -> Self {
        Problem {
            text: text.into(),
            unreadable: Unreadable::Unknown,
        }
    }
}

/// What a GC did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcDone {
    /// Named values for the trace and the UI.
    pub details: Details,
    /// The packs it removed and the blobs in them; `None` when the backend
    /// cannot tell. A GC fault's damage is this.
    pub removed: Option<Damage>,
    /// When it listed the packs, after it had read the index and the
    /// snapshots: a backup that read the index before then and wrote its
    /// snapshot after the GC began may have built on data the GC took for
    /// unused. `None` where the backend cannot tell.
    pub listed: Option<std::time::Instant>,
    /// The packs it removed that clients had stored and the index did not
    /// name when it began: running backups' (their index, or their
    /// snapshot, still to be written), which raced it. Empty where the
    /// backend cannot tell.
    pub raced: Vec<RacedUpload>,
}

/// A pack a GC removed while the backup that stored it raced the GC: who
/// stored it, and when the storage took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RacedUpload {
    pub client: ClientId,
    pub stored: std::time::Instant,
}

/// What the console shows about a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Backend name, e.g. `embedded`.
    pub backend: String,
    /// Where clients connect.
    pub address: String,
    /// The server's own address, when clients reach it through snapstorm's
    /// fault proxy (at `address`).
    #[serde(default)]
    pub behind_proxy: Option<String>,
    /// Where the repository lives on disk.
    pub repository: PathBuf,
}

/// Serves the repository to clients and runs commands on it directly.
pub trait Server: Send + Sync {
    fn info(&self) -> ServerInfo;
    /// Allows a client in (a user with a fresh password) and says how to connect.
    fn authorize_client(&self, client: ClientId) -> BackendResult<ClientCredentials>;
    /// Revokes the client's permission; its next request is refused.
    fn remove_client(&self, client: ClientId) -> BackendResult<()>;
    /// The backup of `race` starts now, and an aggressive prune is to race
    /// it (see [`RacedStep`]): its first index or snapshot upload waits
    /// for that prune. Whether the backend can hold it there; one that cannot
    /// replays the race as it comes.
    fn hold_for_gc(&self, _race: RacedStep) -> bool {
        false
    }
    /// GC directly on the repository, while the server keeps serving.
    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone>;
    /// Every snapshot the repository holds.
    fn list_snapshots(&self) -> BackendResult<Vec<SnapshotId>>;
    /// A full check, reading all data.
    fn verify_repo(&self) -> BackendResult<RepoCheck>;
    /// What restoring these snapshots needs that the repository cannot
    /// give back now: the evidence of a failure that named nothing itself.
    /// Blocking; a backend that cannot tell answers `Unknown`.
    fn unreadable(&self, _snapshots: &[SnapshotId]) -> Unreadable {
        Unreadable::Unknown
    }
    /// Bytes the repository takes on disk.
    fn repository_size(&self) -> u64;
}

/// A fault that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// `corrupt-pack@15.2s`: how failures name it.
    pub label: String,
    pub kind: FaultKind,
    /// What it hit.
    pub target: String,
    pub duration: Option<Duration>,
    /// Actions the run should queue for a client (kill-client needs a snapshot in flight).
    pub enqueue: Vec<(ClientId, super::actions::Action)>,
}

/// Why a fault could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// Nothing it could damage exists yet (no data pack): the run tries
    /// again until something does.
    #[error("{0}")]
    NoVictimYet(String),
    /// It cannot happen (no such client, the backend failed).
    #[error("{0}")]
    Failed(String),
}

/// What an injector reports to the run it injects into; the engine is one.
pub trait FaultHost: Send + Sync {
    /// Records that a fault takes effect now and returns its label. Called
    /// before the fault acts, so everything it causes comes after it.
    fn fault_starts(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String;
    /// [`FaultHost::fault_starts`] for a data fault whose victim a replay
    /// can find again by its role (`victim`, where the backend can tell
    /// one): the trace names the fault with it, as `victim=` names it.
    fn fault_starts_on(&self, kind: FaultKind, target: &str, victim: Option<VictimRole>) -> String;
    /// Records that the fault labelled `label` stopped acting now (a GC
    /// fault's GCs are over): what happens after is not its doing.
    fn fault_ends(&self, label: &str);
    /// Records that the fault's own action failed (an aggressive GC that
    /// could not prune). It may have acted in part, so it still explains
    /// what it could have caused, but only after faults that took effect.
    fn fault_failed(&self, label: &str);
    /// Records what a data fault damaged, read from the repository when it
    /// did it (`None`: the backend cannot tell). Until then, incidents that
    /// it could explain wait for it.
    fn fault_damaged(&self, label: &str, damage: Option<Damage>);
    /// Records what an aggressive GC fault's prune met of the backups
    /// beside it ([`GcDone::listed`], [`GcDone::raced`]), for a replay to
    /// race the same backup again.
    fn fault_pruned(&self, label: &str, done: &GcDone);
    /// Makes the next `forget-snapshots` of each of `clients` overlap: each
    /// waits there until all have come, then they go in turn, each as the
    /// one before begins deleting (every wait capped). When all of them are
    /// done, the fault labelled `label` ends.
    fn start_together(&self, label: &str, clients: &[ClientId]);
    /// Garbage-collects on the server, counted with every other GC.
    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone>;
    /// Whether `client` is carrying out an action now: a fault waiting for
    /// a file the client is to store waits only while it may still store it.
    fn acting(&self, client: ClientId) -> bool;
}

/// Injects faults into a running run; each backend that can brings its own.
pub trait FaultInjector: Send + Sync {
    /// Puts `spec` into effect now (its `at` is the caller's business);
    /// anything that ends later is scheduled. `clients` run now. Blocking:
    /// call it off the async threads.
    fn inject(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
    ) -> Result<Injected, InjectError>;
    /// Ends every fault still in effect — storms stopped, revoked clients
    /// let in again, the server serving, the network clean — and waits for
    /// that, so the run's final checks see the repository as it is. An error
    /// says what could not be undone: the final restores are then left to
    /// the next run rather than judged against a server that is not back.
    /// Blocking.
    fn end_all(&self) -> Result<(), InjectError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_reads_back_as_it_displays() {
        assert_eq!("client-12".parse::<ClientId>(), Ok(ClientId(12)));
        assert_eq!(ClientId(3).to_string().parse::<ClientId>(), Ok(ClientId(3)));
        assert!("snapstorm-gc".parse::<ClientId>().is_err());
        assert!("client-".parse::<ClientId>().is_err());
        assert!("12".parse::<ClientId>().is_err());
    }

    #[test]
    fn a_call_held_up_by_another_client_did_not_get_through() {
        let held = BackendError::HeldUp {
            by: ClientId(2),
            since: std::time::Instant::now(),
            why: "waited for client-2's lock".into(),
        };
        assert_eq!(held.class(), ErrorClass::NotThrough);
        assert_eq!(held.to_string(), "waited for client-2's lock");
    }
}
