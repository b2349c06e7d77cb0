//! What the trace, the console and the tests see of a finished action.

use serde::{Deserialize, Serialize};

use super::actions::Action;
use super::stats::Outcome;
use super::store::Failure;
use super::traits::{ClientId, Details, ErrorClass, SnapshotId};

/// Targets for a named action; empty means "pick at random".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActionParams {
    /// `restore-random-snapID` / `restore-into-data-dir`: this snapshot.
    #[serde(
        rename = "snapshot-ID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<SnapshotId>,
    /// `snapshot-root`: only this path under the data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// The fault that asked for it (kill-client's snapshot in flight, a
    /// parallel-forget's forgets). A replay leaves it out of the client's
    /// recorded stream: the replayed fault asks for it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
    /// `restore-random-snapID` / `restore-into-data-dir` /
    /// `delete-random-snapID`: this snapshot while it is live, else one at
    /// random. A replayed step's snapshot by its role (see
    /// [`ScriptStep::picks`](crate::engine::scenario::ScriptStep::picks));
    /// not traced, as the trace's snapshot IDs tell it again.
    #[serde(skip)]
    pub prefer: Option<SnapshotId>,
}

/// One finished action, as the trace, the console and the tests see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub time: String,
    /// The run of the state directory it belongs to (1 for a fresh one).
    pub run: u32,
    pub client: ClientId,
    /// Position in this client's stream of actions in this run (from 0).
    pub seq: u64,
    /// Its place in the order in which this run's actions and faults started.
    #[serde(default)]
    pub order: u64,
    /// When it started, in milliseconds into the run.
    #[serde(default)]
    pub at_ms: u64,
    /// A step of a fixed sequence: whose recorded inputs it drew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawn_as: Option<Drawn>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "is_default")]
    pub params: ActionParams,
    pub outcome: Outcome,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// The options actually used and what came of them.
    pub details: Details,
    /// Why it was a no-op, the error, or the failure summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For an error: what kind of thing went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// A restore of the final checks: the snapshot's restore had ended in
    /// errors during the run, and it gets one more chance after every fault ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_check: bool,
    /// Still running when the run's grace after its end ran out: the run
    /// ended without it (its action counts leave it out), and an error it
    /// met is the run's own doing (see
    /// [`Engine::abandon_in_flight`](crate::engine::Engine::abandon_in_flight)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// For an error or failure: the injected fault that explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained_by: Option<String>,
    /// The client's live and deleted snapshot counts after the action.
    pub live: usize,
    pub deleted: usize,
    /// The verification failures this action found (one for a restore; a
    /// repository check's findings grouped by the fault that explains
    /// them), with their full details (kept in the metadata store, not
    /// repeated in the trace).
    #[serde(skip)]
    pub failures: Vec<Failure>,
}

/// Which recorded action's inputs an action drew: every input (file names,
/// sizes, dedup shares, which snapshot) comes from a generator derived from
/// the seed and these, so the same key draws the same inputs.
impl ActionRecord {
    /// Whose inputs the action drew: its own place, or the one it drew as.
    pub fn drawn(&self) -> Drawn {
        self.drawn_as.unwrap_or(Drawn {
            client: self.client,
            run: self.run,
            seq: self.seq,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Drawn {
    pub client: ClientId,
    pub run: u32,
    pub seq: u64,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
