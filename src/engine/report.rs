//! The machine-readable report of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::actions::Origin;
use super::damage::DataRef;
use super::exec::Engine;
use super::stats::{ActionReport, ClientCounts, ClientReport};
use super::store::{Failure, FailureKind};
use super::traits::ClientId;

impl Engine {
    /// The machine-readable report of this run so far.
    pub fn report(&self) -> Report {
        let store = self.store();
        let state = store.state();
        let run = state.run_counter;
        let counts = self.counts();
        Report {
            seed: self.config.seed,
            scenario: self.config.scenario.name.clone(),
            backend: state.backend.clone(),
            repository: state.repository.clone(),
            state_dir: store.layout().root().display().to_string(),
            run_counter: run,
            inherited_snapshots: self.inherited.values().map(|ids| ids.len() as u64).sum(),
            inherited_verified: self.inherited_verified.load(Ordering::Relaxed),
            duration_ms: self.faults.ms_into_run(std::time::Instant::now()),
            gc_runs: counts.gc_runs,
            clients: counts.clients,
            totals: counts.totals,
            restores_retried_at_end: self.restores_retried_at_end.load(Ordering::Relaxed),
            actions: self.stats.actions(),
            failures: state
                .failures
                .iter()
                .filter(|f| f.run == run)
                .map(FailureReport::from)
                .collect(),
            faults: self.faults.fault_reports(),
            halted: self.halted().map(str::to_owned),
            abandoned_actions: self.abandoned_actions(),
        }
    }
}

/// A failure as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub client: ClientId,
    pub snapshot: Option<String>,
    pub action: Origin,
    pub kind: FailureKind,
    pub summary: String,
    pub details: String,
    pub time: String,
    /// `false` when an injected fault explains it (see `explained_by`).
    pub unexpected: bool,
    pub explained_by: Option<String>,
    /// What it could not read, where the backend named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<BTreeSet<DataRef>>,
}

impl From<&Failure> for FailureReport {
    fn from(f: &Failure) -> Self {
        FailureReport {
            client: f.client,
            snapshot: f.snapshot.clone(),
            action: f.action,
            kind: f.kind,
            summary: f.summary.clone(),
            details: f.details.clone(),
            time: f.time.clone(),
            unexpected: f.explained_by.is_none(),
            explained_by: f.explained_by.clone(),
            unreadable: f.unreadable.clone(),
        }
    }
}

/// The machine-readable report of a run (`--report FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub scenario: String,
    pub backend: String,
    /// The `--repository` location, as the state dir records it (never
    /// with a user or password); none: the state dir's own repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub state_dir: String,
    /// Runs this state directory has seen, this one included.
    pub run_counter: u32,
    /// Live snapshots inherited from earlier runs.
    pub inherited_snapshots: u64,
    /// Inherited snapshots this run restored and verified.
    pub inherited_verified: u64,
    pub duration_ms: u64,
    pub gc_runs: u64,
    pub clients: Vec<ClientReport>,
    pub totals: ClientCounts,
    /// Snapshots whose restore had ended in errors, restored again after
    /// every fault ended.
    pub restores_retried_at_end: u64,
    pub actions: BTreeMap<String, ActionReport>,
    /// Verification failures found by this run.
    pub failures: Vec<FailureReport>,
    /// Faults injected in this run (and those asked for that never took effect).
    pub faults: Vec<FaultReport>,
    /// Why the run stopped early on snapstorm's own side (its trace could
    /// not be written). The run's final checks were not made; the next run
    /// of the state dir makes them. Not a verdict on the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// Actions still running when the grace after the run's end ran out:
    /// the run ended without them (their trace lines, marked `abandoned`,
    /// may come after this report) and skipped its final checks; the next
    /// run of the state dir makes them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned_actions: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl Report {
    /// Failures no injected fault explains: the engine's count, which the
    /// exit code, the console's banner and the summary all show.
    pub fn unexpected_failures(&self) -> u64 {
        self.totals.unexpected_failures
    }

    /// How the run ended, which its exit code and its page say.
    pub fn exit(&self, strict: bool) -> RunExit {
        RunExit::of(
            self.unexpected_failures(),
            self.failures.len(),
            self.halted.is_some(),
            strict,
        )
    }
}

/// How a finished run ended: one decision, which the exit code of `snapstorm
/// run` and the console and the run's page all show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunExit {
    /// No failure that no injected fault explains (strict: no failure).
    Clean,
    /// Failures no fault explains (strict: any failure); found before a
    /// halt, they still stand.
    Failed,
    /// Stopped on snapstorm's own side (its trace could not be written).
    Halted,
}

impl RunExit {
    pub fn of(unexpected: u64, failures: usize, halted: bool, strict: bool) -> RunExit {
        let failed = if strict { failures > 0 } else { unexpected > 0 };
        if failed {
            RunExit::Failed
        } else if halted {
            RunExit::Halted
        } else {
            RunExit::Clean
        }
    }

    /// The process's exit code.
    pub fn code(self) -> u8 {
        match self {
            RunExit::Clean => 0,
            RunExit::Failed => 1,
            RunExit::Halted => 3,
        }
    }
}

/// One injected fault, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReport {
    pub kind: String,
    /// How failures and errors name it (`corrupt-pack@15.2s`).
    pub label: String,
    /// Wall-clock time of the injection.
    pub time: String,
    /// Milliseconds into the run.
    pub at_ms: u64,
    /// What it hit: a file, a client, the server.
    pub target: String,
    pub duration_ms: Option<u64>,
    /// Whether it took effect. A fault asked for that never did (the run
    /// ended before its time, no pack to corrupt yet, no such client) is
    /// listed with `injected: false` and the `reason`; it explains nothing.
    #[serde(default = "injected_by_default")]
    pub injected: bool,
    /// Why it was not injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether any failure or error was attributed to it.
    pub detected: bool,
    /// Milliseconds from injection to the first failure or error it explains.
    pub detection_ms: Option<u64>,
    /// Failures and errors attributed to it.
    pub incidents: u64,
    /// How many packs, blobs and files it damaged, where that is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<u64>,
}

fn injected_by_default() -> bool {
    true
}
