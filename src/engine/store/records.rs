//! What `state.json` holds: snapshots per client, failures, runs, damage.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::actions::Origin;
use crate::engine::damage::{Damage, DataRef};
use crate::engine::traits::{ClientId, SnapshotId};
use crate::faults::FaultKind;

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
    /// The repository location this state belongs to (as `--repository`
    /// names it, without user or password); none: the embedded directory.
    /// A state dir's fingerprints describe one repository's snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The repository's encryption password (a test repository's, not a secret worth more).
    pub repository_password: String,
    /// What this state dir's clients add to their host name
    /// (`client-1.TAG`) on a repository outside the state dir, where other
    /// runs may save snapshots too: a new state dir's own, random. None on
    /// the state dir's own repository, and in state dirs made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_tag: Option<String>,
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
