//! The engine: carries out actions for clients, by name (`exec_action`) or
//! as the scenario picks them (`random_action`), and keeps stats, the trace
//! and the checker's metadata as it goes.
//!
//! Every action draws its randomness from a generator derived from the run
//! seed, the client and the action's position in that client's stream, so
//! the same seed gives every client the same actions with the same options,
//! whatever the other clients do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::actions::{Action, Origin};
use super::attribution::{Attribution, FaultLedger, Incident, IncidentKind};
use super::brief::{brief, without_backtrace};
use super::checker::{Checker, CheckerError, RestoreAttempt, Verification};
use super::damage::{Damage, Unreadable};
use super::file_writer::available_space;
use super::fingerprint::CompareOptions;
use super::guard::{catch_panic, guarded};
use super::options::ActionOptions;
use super::progress::ProgressBoard;
use super::scenario::{ClientScript, Plan, Scenario, ScriptStep};
use super::stats::{Counts, Effects, FailureReport, Outcome, Report, Stats};
use super::store::{DamageRecord, Failure, FailureKind, MetadataStore, now_rfc3339};
use super::trace::{FaultLine, Trace};
use super::traits::{
    ActionRng, BackendError, BackendResult, ClientId, Details, ErrorClass, FaultHost, FileWriter,
    GcDone, GcOptions, Server, SnapshotId, Snapshotter, WriteEffect,
};
use crate::faults::{FaultKind, FaultSpec};

/// What the engine runs with besides its parts.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub seed: u64,
    pub scenario: Scenario,
    pub compare: CompareOptions,
    /// Snapshots inherited from earlier runs that each client restores and
    /// verifies before its first action.
    pub verify_inherited_per_client: usize,
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Drawn {
    pub client: ClientId,
    pub run: u32,
    pub seq: u64,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The result of one repetition of an action.
#[derive(Debug, Default)]
struct Step {
    outcome: Option<Outcome>,
    snapshot: Option<SnapshotId>,
    details: Details,
    message: Option<String>,
    error_class: Option<ErrorClass>,
    /// The client whose disturbed process held the error's call up, and
    /// when that process started ([`BackendError::HeldUp`]): attribution
    /// judges the error as that client's, from then.
    held_up: Option<(ClientId, Instant)>,
    effects: Effects,
    failures: Vec<Found>,
}

/// A verification failure a step found, with the verdict on it when the
/// step made it (a check's findings are judged one by one, then grouped).
#[derive(Debug)]
struct Found {
    failure: Failure,
    attribution: Option<Attribution>,
}

impl Step {
    fn ok() -> Self {
        Step {
            outcome: Some(Outcome::Ok),
            ..Step::default()
        }
    }
    fn no_op(reason: impl Into<String>) -> Self {
        Step {
            outcome: Some(Outcome::NoOp),
            message: Some(reason.into()),
            ..Step::default()
        }
    }
    fn error(error: impl std::fmt::Display, class: ErrorClass) -> Self {
        Step {
            outcome: Some(Outcome::Error),
            message: Some(brief(&error.to_string())),
            error_class: Some(class),
            ..Step::default()
        }
    }
    fn checker_error(error: CheckerError) -> Self {
        match error {
            CheckerError::Backend(error) => Step::backend_error(error),
            error => {
                let class = error.class();
                Step::error(error, class)
            }
        }
    }
    fn backend_error(error: BackendError) -> Self {
        match error {
            BackendError::NothingToDo(why) => Step::no_op(why),
            BackendError::HeldUp { by, since, .. } => Step {
                held_up: Some((by, since)),
                ..Step::error(&error, error.class())
            },
            error => {
                let class = error.class();
                Step::error(error, class)
            }
        }
    }
    fn failure(summary: String) -> Self {
        Step {
            outcome: Some(Outcome::Failure),
            message: Some(summary),
            ..Step::default()
        }
    }
    fn detail(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }
    fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Ok)
    }
}

/// Where each client stands in its stream of actions.
struct Cursor {
    /// Picks the next action; advanced only by `random_action`.
    choice: ActionRng,
    next_seq: u64,
    sequence_position: usize,
}

pub struct Engine {
    config: EngineConfig,
    writer: Arc<dyn FileWriter>,
    snapshotter: Arc<dyn Snapshotter>,
    server: Arc<dyn Server>,
    checker: Checker,
    stats: Stats,
    trace: Trace,
    /// The state directory's run this engine carries out.
    run: u32,
    cursors: Mutex<HashMap<ClientId, Cursor>>,
    /// Live snapshots from earlier runs, per client, at start.
    inherited: BTreeMap<ClientId, Vec<SnapshotId>>,
    inherited_verified: AtomicU64,
    /// Injected faults (and the run's clock, see [`Engine::start_clock`]), and which incident each explains.
    faults: FaultLedger,
    /// Listing failures already reported in this run.
    listing_reported: Mutex<HashSet<(SnapshotId, FailureKind)>>,
    restores_retried_at_end: AtomicU64,
    /// Why the run must stop on snapstorm's own side (the trace cannot be
    /// written); set once. Nothing after it is a verdict on the repository.
    halt: OnceLock<String>,
    /// Wakes the run's supervisor when `halt` is set.
    halt_notify: tokio::sync::Notify,
    /// The run is ending: repeated actions stop after the repetition in hand.
    stopping: AtomicBool,
    /// Actions that may run at once (see [`Engine::action_slots`]).
    action_slots: Arc<tokio::sync::Semaphore>,
    /// How many slots there are.
    slot_count: usize,
    /// Places handed out in the order in which actions and faults start.
    starts: AtomicU64,
    /// How far each client's snapshot or restore under way has got.
    progress: ProgressBoard,
}

/// Overrides the number of actions that run at once (default: two per core).
pub const ACTION_SLOTS_ENV: &str = "SNAPSTORM_ACTION_SLOTS";

/// Actions that run at once: `SNAPSTORM_ACTION_SLOTS` if set to a positive
/// number, else two per core — an action also waits for the server's disk
/// writes, and the second one uses the core meanwhile.
fn action_slot_count() -> usize {
    std::env::var(ACTION_SLOTS_ENV)
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A generator for one purpose of one client, derived from the seed and the
/// state directory's run: a resumed run draws a fresh stream (new file
/// names, new choices) instead of repeating the first run's.
fn derive_rng(seed: u64, run: u32, client: ClientId, purpose: &str, n: u64) -> ActionRng {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&run.to_le_bytes());
    hasher.update(&client.0.to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.update(&n.to_le_bytes());
    ActionRng::from_seed(*hasher.finalize().as_bytes())
}

impl Engine {
    pub fn new(
        config: EngineConfig,
        writer: Arc<dyn FileWriter>,
        snapshotter: Arc<dyn Snapshotter>,
        server: Arc<dyn Server>,
        store: Arc<MetadataStore>,
    ) -> std::io::Result<Self> {
        let trace = Trace::open(&store.layout().trace())?;
        let run = store.run_number();
        let slot_count = action_slot_count();
        let inherited = store
            .state()
            .clients
            .into_iter()
            .map(|(client, record)| {
                let ids = record
                    .live
                    .into_iter()
                    // A snapshot whose delete was in flight is being deleted, not inherited.
                    .filter(|s| s.run < run && !s.deleting)
                    .map(|s| s.id)
                    .collect::<Vec<_>>();
                (client, ids)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        let faults = FaultLedger::new(Instant::now());
        for damage in store.state().damage.iter().filter(|d| d.run < run) {
            let label = format!("{} (run {})", damage.label, damage.run);
            faults.inherit_damage(damage.kind, label, &damage.target, damage.damage.clone());
        }
        Ok(Engine {
            checker: Checker::new(store, config.compare),
            config,
            writer,
            snapshotter,
            server,
            stats: Stats::new(),
            trace,
            run,
            cursors: Mutex::new(HashMap::new()),
            inherited,
            inherited_verified: AtomicU64::new(0),
            faults,
            listing_reported: Mutex::new(HashSet::new()),
            restores_retried_at_end: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            starts: AtomicU64::new(0),
            halt: OnceLock::new(),
            halt_notify: tokio::sync::Notify::new(),
            action_slots: Arc::new(tokio::sync::Semaphore::new(slot_count)),
            slot_count,
            progress: ProgressBoard::default(),
        })
    }

    /// The slots that actions take turns on. A backend call is mostly
    /// CPU work (compression, encryption, hashing) on this machine, and
    /// rustic starts threads of its own for each call: with one action per
    /// client at once, 64 clients would run hundreds of threads on a few
    /// cores, and the time would go to switching between them. A client
    /// holds a slot for one action and queues for it otherwise, so the
    /// work in progress stays at the machine's size whatever the client
    /// count. An action's duration counts from when it holds its slot.
    pub fn action_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.action_slots
    }

    /// How many actions may run at once.
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Why the run had to stop on snapstorm's own side, if it had to.
    pub fn halted(&self) -> Option<&str> {
        self.halt.get().map(String::as_str)
    }

    /// Resolves once the run has to stop (see [`Engine::halted`]).
    pub async fn wait_halted(&self) {
        if self.halted().is_none() {
            self.halt_notify.notified().await;
        }
    }

    /// Stops the run on snapstorm's own problem; the first reason is kept.
    fn halt(&self, reason: String) {
        tracing::error!("the run stops: {reason}");
        if self.halt.set(reason).is_ok() {
            // A stored permit: the supervisor sees it even if it is not waiting yet.
            self.halt_notify.notify_one();
        }
    }

    /// Writes a line of the trace; a trace that cannot be written halts the run.
    fn trace_line(&self, line: &impl Serialize) {
        if let Err(error) = self.trace.write(line) {
            self.halt(error.to_string());
        }
    }

    /// The faults injected into this run.
    pub fn faults(&self) -> &FaultLedger {
        &self.faults
    }

    /// The run is ending: an action repeated with `repeat-action` stops after
    /// the repetition in hand, so a stop never waits for a billion of them.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the run is ending (see [`Engine::request_stop`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Starts the run's clock at `at`: the run's duration, fault times and
    /// labels count from here (the first clients connected; the schedule starts).
    pub fn start_clock(&self, at: Instant) {
        self.faults.start_clock(at);
    }

    /// Judges a failure (unless its step already did), records it durably
    /// and counts it: the one path every verification failure takes.
    fn record_failure(&self, found: Found, started: Instant) -> Failure {
        let Found {
            mut failure,
            attribution,
        } = found;
        let attribution = attribution.unwrap_or_else(|| {
            let kind = IncidentKind::Failure(failure.kind);
            let snapshots: Vec<SnapshotId> = failure.snapshot.iter().cloned().collect();
            self.faults.explain(&Incident {
                client: failure.client,
                origin: failure.action,
                kind,
                started,
                ended: Instant::now(),
                unreadable: self.unreadable_for(kind, &snapshots),
            })
        });
        apply(&mut failure, attribution);
        if let Err(error) = self.store().record_failure(failure.clone()) {
            tracing::error!(%error, "cannot record a verification failure");
        }
        self.stats
            .count_failure(failure.client, failure.explained_by.is_some());
        let expected = failure.explained_by.as_deref().unwrap_or("unexpected");
        tracing::error!(
            client = %failure.client, action = %failure.action,
            snapshot = failure.snapshot.as_deref().unwrap_or("-"),
            "verification failure ({expected}): {}", failure.summary
        );
        failure
    }

    /// What restoring `snapshots` needs that the repository cannot give
    /// back now — asked of the server only when damage was done that could
    /// explain an incident of `kind`; otherwise nothing needs naming.
    fn unreadable_for(&self, kind: IncidentKind, snapshots: &[SnapshotId]) -> Unreadable {
        if !kind.about_data() || !self.faults.damage_before(Instant::now()) {
            return Unreadable::Unknown;
        }
        catch_panic(|| self.server.unreadable(snapshots)).unwrap_or_else(|panic| {
            tracing::warn!("finding what a failure could not read panicked: {panic}");
            Unreadable::Unknown
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<MetadataStore> {
        self.checker.store()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn server(&self) -> &Arc<dyn Server> {
        &self.server
    }

    /// The run's counts: the one source every display reads.
    pub fn counts(&self) -> Counts {
        let live = self.store().live_counts();
        let mut counts = self.stats.counts(
            |id| live.get(&id).copied().unwrap_or(0),
            self.faults.injected() as u64,
        );
        counts.in_progress = self.progress.views();
        counts
    }

    /// Garbage-collects on the server now (the console's key, a GC fault),
    /// counted with the GCs of `run-gc` actions.
    pub fn gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let done = guarded(|| self.server.run_gc(options))?;
        self.stats.record_gc();
        Ok(done)
    }

    /// Makes the client known (to stats and the cursor table) before its first action.
    pub fn register_client(&self, client: ClientId) {
        self.stats
            .register_client(client, self.snapshotter.client_kind(client));
        self.cursor_do(client, |_| ());
    }

    fn cursor_do<T>(&self, client: ClientId, f: impl FnOnce(&mut Cursor) -> T) -> T {
        let mut cursors = self.cursors.lock().expect("cursor lock");
        let (seed, run) = (self.config.seed, self.run);
        let cursor = cursors.entry(client).or_insert_with(|| Cursor {
            choice: derive_rng(seed, run, client, "choice", 0),
            next_seq: 0,
            sequence_position: 0,
        });
        f(cursor)
    }

    /// Carries out a named action for `client`.
    pub fn exec_action(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
    ) -> ActionRecord {
        self.exec_attempt(client, action, params, RestoreAttempt::DuringRun)
    }

    fn exec_attempt(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
        attempt: RestoreAttempt,
    ) -> ActionRecord {
        let seq = self.cursor_do(client, |c| {
            c.next_seq += 1;
            c.next_seq - 1
        });
        self.run_action(client, seq, action, params, attempt, None)
    }

    /// Carries out a step of `client`'s fixed sequence, drawing the inputs
    /// the step's recorded action drew.
    pub fn exec_step(
        &self,
        client: ClientId,
        script: &ClientScript,
        step: &ScriptStep,
    ) -> ActionRecord {
        let seq = self.cursor_do(client, |c| {
            c.next_seq += 1;
            c.next_seq - 1
        });
        let drawn = Drawn {
            client: ClientId(script.draws_as),
            run: script.run,
            seq: step.seq,
        };
        self.run_action(
            client,
            seq,
            step.action,
            &ActionParams::default(),
            RestoreAttempt::DuringRun,
            Some(drawn),
        )
    }

    /// The next place in the order in which actions and faults start.
    fn take_start(&self) -> (u64, u64) {
        let order = self.starts.fetch_add(1, Ordering::SeqCst);
        let at = self.faults.clock_started().elapsed();
        (order, u64::try_from(at.as_millis()).unwrap_or(u64::MAX))
    }

    /// The action the scenario picks next for `client`, without running it.
    pub fn next_planned_action(&self, client: ClientId) -> Action {
        let plan = &self.config.scenario.plan;
        self.cursor_do(client, |c| match plan {
            Plan::Weighted(weights) => weights
                .pick(&mut c.choice)
                .expect("scenarios have a non-zero weight"),
            Plan::Sequence(sequence) => {
                let action = sequence[c.sequence_position % sequence.len()];
                c.sequence_position += 1;
                action
            }
        })
    }

    /// Carries out the action the scenario picks next for `client`.
    pub fn random_action(&self, client: ClientId) -> ActionRecord {
        let action = self.next_planned_action(client);
        self.exec_action(client, action, &ActionParams::default())
    }

    /// Restores and verifies up to the configured number of this client's
    /// snapshots from earlier runs (most recent first).
    pub fn verify_inherited(&self, client: ClientId) -> Vec<ActionRecord> {
        self.inherited_to_check(client)
            .into_iter()
            .map(|id| {
                let params = ActionParams {
                    snapshot_id: Some(id),
                    sub_path: None,
                };
                let record = self.exec_action(client, Action::RestoreRandomSnapshot, &params);
                if record.outcome == Outcome::Ok {
                    self.inherited_verified.fetch_add(1, Ordering::Relaxed);
                }
                record
            })
            .collect()
    }

    /// The inherited snapshots `client` restores and verifies at its start:
    /// its most recent ones still live.
    fn inherited_to_check(&self, client: ClientId) -> Vec<SnapshotId> {
        let ids = self.inherited.get(&client).cloned().unwrap_or_default();
        let live: Vec<SnapshotId> = self
            .store()
            .live(client)
            .into_iter()
            .map(|s| s.id)
            .collect();
        ids.into_iter()
            .rev()
            .filter(|id| live.contains(id))
            .take(self.config.verify_inherited_per_client)
            .collect()
    }

    /// How many inherited snapshots this run verifies at the start of its
    /// clients, all of them together.
    pub fn inherited_to_verify(&self) -> u64 {
        self.inherited
            .keys()
            .map(|client| self.inherited_to_check(*client).len() as u64)
            .sum()
    }

    /// How many inherited snapshots were verified so far.
    pub fn inherited_verified(&self) -> u64 {
        self.inherited_verified.load(Ordering::Relaxed)
    }

    /// Compares the metadata with the repository's listing, as sets; every
    /// snapshot the repository lost becomes a verification failure.
    pub fn startup_check(&self) -> Result<Vec<Failure>, CheckerError> {
        self.listing_check(Origin::StartupCheck)
    }

    /// The same comparison at the end of a run: deleted snapshots must be
    /// gone and live ones present.
    pub fn final_check(&self) -> Result<Vec<Failure>, CheckerError> {
        self.listing_check(Origin::FinalCheck)
    }

    fn listing_check(&self, origin: Origin) -> Result<Vec<Failure>, CheckerError> {
        let started = Instant::now();
        let mut listing = self.server.list_snapshots()?;
        if self.settle_pending_deletes(&listing) {
            listing = self.server.list_snapshots()?;
        }
        let mut reported = self.listing_reported.lock().expect("listing lock");
        let mut found = Vec::new();
        for failure in self.checker.check_listing(&listing, origin) {
            let Some(snapshot) = failure.snapshot.clone() else {
                continue;
            };
            // A deleted snapshot still listed would be found again at the end of the run.
            if !reported.insert((snapshot.clone(), failure.kind)) {
                continue;
            }
            if failure.kind == FailureKind::SnapshotLost {
                self.store().mark_lost(failure.client, &snapshot)?;
            }
            let found_now = Found {
                failure,
                attribution: None,
            };
            found.push(self.record_failure(found_now, started));
        }
        Ok(found)
    }

    /// Deletes whose outcome was never recorded (snapstorm was killed, or
    /// the delete request failed): gone from the listing, the delete
    /// happened; still listed, it is asked again. Returns whether one was
    /// asked again (the listing is then out of date).
    fn settle_pending_deletes(&self, listing: &[SnapshotId]) -> bool {
        let mut asked_again = false;
        for (client, id) in self.store().pending_deletes() {
            if listing.contains(&id) {
                asked_again = true;
                match self
                    .checker
                    .delete_snapshot(self.snapshotter.as_ref(), client, &id)
                {
                    Ok(()) => {
                        tracing::info!(%client, snapshot = %id, "an interrupted delete is carried out now")
                    }
                    Err(error) => {
                        tracing::warn!(%client, snapshot = %id, %error, "an interrupted delete failed again; it is tried at the next check")
                    }
                }
            } else if let Err(error) = self.store().mark_deleted(client, &id) {
                tracing::error!(%client, snapshot = %id, %error, "cannot record a delete");
            } else {
                tracing::info!(%client, snapshot = %id, "an interrupted delete had been carried out");
            }
        }
        asked_again
    }

    /// Restores again every snapshot whose restore ended in errors during
    /// the run. Call it once every fault has ended: a snapshot that still
    /// cannot be restored is lost (`restore-failed`), unless snapstorm's own
    /// side is what failed.
    pub fn retry_unsettled_restores(&self) -> Vec<ActionRecord> {
        self.store()
            .unsettled()
            .into_iter()
            .map(|(client, id)| {
                self.restores_retried_at_end.fetch_add(1, Ordering::Relaxed);
                let params = ActionParams {
                    snapshot_id: Some(id),
                    sub_path: None,
                };
                self.exec_attempt(
                    client,
                    Action::RestoreRandomSnapshot,
                    &params,
                    RestoreAttempt::Last,
                )
            })
            .collect()
    }

    fn run_action(
        &self,
        client: ClientId,
        seq: u64,
        action: Action,
        params: &ActionParams,
        attempt: RestoreAttempt,
        drawn_as: Option<Drawn>,
    ) -> ActionRecord {
        let time = now_rfc3339();
        let started = Instant::now();
        let (order, at_ms) = self.take_start();
        let mut rng = match drawn_as {
            Some(d) => derive_rng(self.config.seed, d.run, d.client, "action", d.seq),
            None => derive_rng(self.config.seed, self.run, client, "action", seq),
        };
        let origin = match attempt {
            RestoreAttempt::DuringRun => Origin::Action(action),
            RestoreAttempt::Last => Origin::FinalCheck,
        };
        let options = self.config.scenario.options_for(action).clone();
        let repeats = options.repeat_action.max(1);

        let mut total = Step::default();
        for done in 0..repeats {
            // A run that ends does not wait for the rest of a long repetition.
            if done > 0 && self.stopping.load(Ordering::SeqCst) {
                total
                    .details
                    .insert("repeat-action-stopped-at".into(), json!(done));
                break;
            }
            let step = catch_panic(|| {
                self.step(client, action, params, &options, &mut rng, attempt, origin)
            })
            // A panic outside the backend's calls (those are guarded) is snapstorm's own.
            .unwrap_or_else(|panic| Step::error(format!("panicked: {panic}"), ErrorClass::Local));
            let outcome = step.outcome();
            total.effects.add(step.effects);
            total.snapshot = step.snapshot.or(total.snapshot);
            total.details = step.details;
            total.message = step.message;
            total.error_class = step.error_class;
            total.held_up = step.held_up;
            total.failures.extend(step.failures);
            total.outcome = Some(match (total.outcome, outcome) {
                (None, o) => o,
                // An error or failure ends the repetitions; no-ops only count if all were.
                (_, Outcome::Error | Outcome::Failure) => outcome,
                (Some(Outcome::NoOp), Outcome::Ok) => Outcome::Ok,
                (Some(previous), _) => previous,
            });
            if matches!(outcome, Outcome::Error | Outcome::Failure) {
                break;
            }
        }
        if repeats > 1 {
            total.details.insert("repeat-action".into(), json!(repeats));
            if total.effects.bytes_written > 0 {
                total
                    .details
                    .insert("bytes".into(), json!(total.effects.bytes_written));
            }
        }
        let outcome = total.outcome();
        let duration = started.elapsed();
        let failures: Vec<Failure> = std::mem::take(&mut total.failures)
            .into_iter()
            .map(|found| self.record_failure(found, started))
            .collect();
        let error_class = total.error_class.filter(|_| outcome == Outcome::Error);
        let explained_by = match (failures.first(), error_class) {
            // Expected only if every failure it found is.
            (Some(_), _) => failures
                .iter()
                .map(|f| f.explained_by.clone())
                .collect::<Option<Vec<String>>>()
                .and_then(|labels| labels.into_iter().next()),
            (None, Some(class)) => {
                let kind = IncidentKind::Error(class);
                // A data error of a restore is about its snapshot; of a
                // backup, about the snapshots it builds on.
                let snapshots: Vec<SnapshotId> = match &total.snapshot {
                    Some(id) => vec![id.clone()],
                    None => self
                        .store()
                        .live(client)
                        .into_iter()
                        .map(|s| s.id)
                        .collect(),
                };
                // Held up by another client's disturbed process: its
                // client and its time are what a fault could have cut off.
                let (incident_client, incident_started) = match total.held_up {
                    Some((by, since)) => (by, since.min(started)),
                    None => (client, started),
                };
                self.faults
                    .explain(&Incident {
                        client: incident_client,
                        origin,
                        kind,
                        started: incident_started,
                        ended: Instant::now(),
                        unreadable: self.unreadable_for(kind, &snapshots),
                    })
                    .explained_by
            }
            _ => None,
        };
        self.stats.record(
            client,
            action,
            outcome,
            duration,
            total.effects,
            explained_by.is_some(),
        );
        let record = ActionRecord {
            time,
            run: self.run,
            client,
            seq,
            order,
            at_ms,
            drawn_as,
            action,
            params: params.clone(),
            outcome,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            snapshot: total.snapshot,
            details: total.details,
            message: total.message,
            error_class,
            final_check: attempt == RestoreAttempt::Last,
            explained_by,
            live: self.store().live(client).len(),
            deleted: self.store().deleted_count(client),
            failures,
        };
        self.trace_line(&record);
        match outcome {
            // Failures were logged when recorded.
            Outcome::Failure => {}
            Outcome::Error => tracing::warn!(
                client = %client, action = %action,
                "action failed{}: {}",
                record.explained_by.as_deref().map(|f| format!(" (expected: {f})")).unwrap_or_default(),
                record.message.as_deref().unwrap_or("")
            ),
            _ => {
                tracing::debug!(client = %client, action = %action, ?outcome, ms = record.duration_ms, "action done")
            }
        }
        record
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
        options: &ActionOptions,
        rng: &mut ActionRng,
        attempt: RestoreAttempt,
        origin: Origin,
    ) -> Step {
        match action {
            Action::SnapshotRoot => self.snapshot_root(client, params),
            Action::RestoreRandomSnapshot | Action::RestoreIntoDataDir => {
                self.restore(client, params, rng, action, attempt, origin)
            }
            Action::DeleteRandomSnapshot => self.delete_random_snapshot(client, rng),
            Action::RunGc => self.run_gc(),
            Action::WriteRandomFiles => self.write_random_files(client, options, rng),
            Action::DeleteRandomSubdirectory => {
                writer_step(self.writer.delete_random_subdirectory(client, options, rng))
            }
            Action::DeleteFiles => writer_step(self.writer.delete_directory_contents(
                client,
                options,
                options.delete_contents_percent,
                rng,
            )),
            Action::VerifyRepo => self.verify_repo(client, origin),
        }
    }

    fn snapshot_root(&self, client: ClientId, params: &ActionParams) -> Step {
        let data_dir = self.writer.data_dir(client);
        let source = match &params.sub_path {
            Some(sub) => data_dir.join(sub),
            None => data_dir,
        };
        match self.checker.take_snapshot(
            self.snapshotter.as_ref(),
            client,
            &source,
            params.sub_path.as_deref(),
            &self.progress.begin(client),
        ) {
            Ok(record) => {
                let mut step = Step::ok()
                    .detail("entries", json!(record.entries))
                    .detail("bytes", json!(record.bytes));
                step.snapshot = Some(record.id);
                step.effects.snapshots_created = 1;
                step
            }
            Err(error) => Step::checker_error(error),
        }
    }

    fn scratch_target(&self, client: ClientId) -> PathBuf {
        let nonce: u64 = rand::random();
        self.store()
            .layout()
            .scratch()
            .join(format!("{client}-{nonce:016x}"))
    }

    fn restore(
        &self,
        client: ClientId,
        params: &ActionParams,
        rng: &mut ActionRng,
        action: Action,
        attempt: RestoreAttempt,
        origin: Origin,
    ) -> Step {
        let into_data_dir = action == Action::RestoreIntoDataDir;
        let live = self.store().live(client);
        let chosen = match &params.snapshot_id {
            Some(id) => Some(id.clone()),
            None => live.choose(rng).map(|s| s.id.clone()),
        };
        let Some(id) = chosen else {
            return Step::no_op("no live snapshot");
        };
        let target = if into_data_dir {
            let sub_path = live
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.sub_path.clone());
            let data_dir = self.writer.data_dir(client);
            sub_path.map(|sub| data_dir.join(sub)).unwrap_or(data_dir)
        } else {
            self.scratch_target(client)
        };
        let verification = self.checker.restore_and_verify(
            self.snapshotter.as_ref(),
            client,
            &id,
            &target,
            attempt,
            &self.progress.begin(client),
        );
        if !into_data_dir {
            let _ = std::fs::remove_dir_all(&target);
        }
        // An error leaves the snapshot to the end of the run; anything
        // else settles it. The last attempt settles it whatever happens.
        let unsettled = verification.is_err() && attempt == RestoreAttempt::DuringRun;
        if let Err(error) = self.store().mark_unsettled(client, &id, unsettled) {
            tracing::error!(%client, snapshot = %id, %error, "cannot record a restore to try again");
        }
        let mut step = match verification {
            Ok(Verification::Verified { entries }) => {
                let mut step = Step::ok().detail("entries", json!(entries));
                step.effects.restores_verified = 1;
                step
            }
            Ok(failed) => self.fail(
                client,
                Some(&id),
                origin,
                failed.failure_kind().unwrap_or_default(),
                failed.failure_summary().unwrap_or_default(),
                failed.failure_details(),
            ),
            Err(error) => Step::checker_error(error),
        };
        step.snapshot = Some(id);
        step
    }

    /// A verification failure; `run_action` attributes and records it.
    fn fail(
        &self,
        client: ClientId,
        snapshot: Option<&str>,
        origin: Origin,
        kind: FailureKind,
        summary: String,
        details: String,
    ) -> Step {
        let mut step = Step::failure(summary.clone());
        step.failures.push(Found {
            failure: self
                .checker
                .failure(client, snapshot, origin, kind, summary, details),
            attribution: None,
        });
        step
    }

    fn delete_random_snapshot(&self, client: ClientId, rng: &mut ActionRng) -> Step {
        let live = self.store().live(client);
        if live.len() <= 1 {
            return Step::no_op(format!(
                "{} live snapshot(s): the last one is never deleted",
                live.len()
            ));
        }
        let id = live.choose(rng).expect("more than one").id.clone();
        let mut step = match self
            .checker
            .delete_snapshot(self.snapshotter.as_ref(), client, &id)
        {
            Ok(()) => {
                let mut step = Step::ok();
                step.effects.snapshots_deleted = 1;
                step
            }
            Err(error) => Step::checker_error(error),
        };
        step.snapshot = Some(id);
        step
    }

    fn run_gc(&self) -> Step {
        match self.gc(&GcOptions::default()) {
            Ok(done) => {
                let mut step = Step::ok();
                step.details = done.details;
                step
            }
            Err(error) => Step::backend_error(error),
        }
    }

    /// Writes a line that is not an action (an injected fault) into the trace.
    pub fn trace_event(&self, event: &impl Serialize) {
        self.trace_line(event);
    }

    fn write_random_files(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> Step {
        let data_dir = self.writer.data_dir(client);
        let free = available_space(&data_dir).unwrap_or(u64::MAX);
        if free < options.free_space_limit.as_u64() {
            return self.recover_low_disk(client, free, rng);
        }
        match self.writer.write_random_files(client, options, rng) {
            Ok(effect) => {
                let mut step = writer_step(Ok(effect));
                step.effects.bytes_written = step
                    .details
                    .get("bytes")
                    .and_then(|b| b.as_u64())
                    .unwrap_or(0);
                step
            }
            Err(error) => Step::error(error, ErrorClass::Local),
        }
    }

    /// The disk runs short: purge the data dir and restore a snapshot into it.
    fn recover_low_disk(&self, client: ClientId, free: u64, rng: &mut ActionRng) -> Step {
        tracing::warn!(%client, free, "low disk space: purging the data dir and restoring a snapshot into it");
        if let Err(error) = self.writer.delete_everything(client) {
            return Step::error(format!("low-disk recovery: {error}"), ErrorClass::Local);
        }
        let mut step = self.restore(
            client,
            &ActionParams::default(),
            rng,
            Action::RestoreIntoDataDir,
            RestoreAttempt::DuringRun,
            // What reads the repository here is the restore.
            Origin::Action(Action::RestoreIntoDataDir),
        );
        if step.outcome() == Outcome::NoOp {
            step = Step::ok();
        }
        step.effects.low_disk_recoveries += 1;
        step.detail("low-disk-recovery", json!({ "free-bytes": free }))
    }

    /// The backend's full check. Each problem it finds is judged on its own
    /// (a pack missing that no fault deleted is unexpected even when another
    /// pack's corruption is explained); problems explained by the same fault
    /// make one failure, the unexpected ones another.
    fn verify_repo(&self, client: ClientId, origin: Origin) -> Step {
        let started = Instant::now();
        let check = match guarded(|| self.server.verify_repo()) {
            Ok(check) if check.healthy => return Step::ok().detail("problems", json!(0)),
            Ok(check) => check,
            Err(error) => return Step::backend_error(error),
        };
        let problems = check.problems.len();
        let kind = IncidentKind::Failure(FailureKind::RepositoryCheck);
        let mut groups: BTreeMap<Option<String>, Vec<(String, Attribution)>> = BTreeMap::new();
        for problem in check.problems {
            let attribution = self.faults.explain(&Incident {
                client,
                origin,
                kind,
                started,
                ended: Instant::now(),
                unreadable: problem.unreadable,
            });
            groups
                .entry(attribution.explained_by.clone())
                .or_default()
                .push((problem.text, attribution));
        }
        // Unexpected problems (the `None` group) come first.
        let mut failures = Vec::new();
        for (explained_by, found) in groups {
            let summary = format!(
                "repository check found {} problem(s){}: {}",
                found.len(),
                if problems > found.len() {
                    format!(" of {problems}")
                } else {
                    String::new()
                },
                brief(&found[0].0)
            );
            let details = found
                .iter()
                .map(|(text, attribution)| match &attribution.note {
                    Some(note) => format!("{} — {note}", without_backtrace(text)),
                    None => without_backtrace(text).to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let unreadable = found
                .iter()
                .map(|(_, a)| a.unreadable.clone())
                .collect::<Option<Vec<_>>>()
                .map(|sets| sets.into_iter().flatten().collect());
            failures.push(Found {
                failure: self.checker.failure(
                    client,
                    None,
                    origin,
                    FailureKind::RepositoryCheck,
                    summary,
                    details,
                ),
                attribution: Some(Attribution {
                    explained_by,
                    unreadable,
                    note: None,
                }),
            });
        }
        let mut step = Step::failure(failures[0].failure.summary.clone());
        step.failures = failures;
        step.detail("problems", json!(problems))
    }

    /// Runs the full repository check as one of the final checks (after a
    /// fault damaged data, so no injected damage goes unreported).
    pub fn final_verify_repo(&self, client: ClientId) -> ActionRecord {
        self.exec_attempt(
            client,
            Action::VerifyRepo,
            &ActionParams::default(),
            RestoreAttempt::Last,
        )
    }

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
            state_dir: store.layout().root().display().to_string(),
            run_counter: run,
            inherited_snapshots: self.inherited.values().map(|ids| ids.len() as u64).sum(),
            inherited_verified: self.inherited_verified.load(Ordering::Relaxed),
            duration_ms: u64::try_from(self.faults.clock_started().elapsed().as_millis())
                .unwrap_or(u64::MAX),
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
        }
    }
}

impl Engine {
    /// Records that a fault takes effect now (see [`FaultHost::fault_starts`]);
    /// `spec`, when known, goes into the trace whole, for a replay. A fault
    /// that waited for something to damage is named by `asked`, the time it
    /// was asked for; the trace and the report keep the time it took effect.
    pub fn fault_starts_as(
        &self,
        spec: Option<&FaultSpec>,
        asked: Option<Duration>,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        let (order, at_ms) = self.take_start();
        let label = self.faults.record(kind, target, client, duration, asked);
        if kind.damages_data() {
            let damage = DamageRecord {
                run: self.run,
                kind,
                label: label.clone(),
                target: target.to_owned(),
                damage: None,
            };
            if let Err(error) = self.store().record_damage(damage) {
                tracing::error!(%error, "cannot record the damage a fault did");
            }
        }
        self.trace_event(&FaultLine {
            time: now_rfc3339(),
            run: self.run,
            fault: label.clone(),
            kind,
            target: target.to_owned(),
            client,
            duration_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            spec: spec.map(ToString::to_string),
            at_ms,
            order,
        });
        label
    }
}

impl FaultHost for Engine {
    fn fault_starts(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        self.fault_starts_as(None, None, kind, target, client, duration)
    }

    fn fault_ends(&self, label: &str) {
        self.faults.ended(label);
    }

    fn fault_failed(&self, label: &str) {
        self.faults.failed(label);
    }

    fn fault_damaged(&self, label: &str, damage: Option<Damage>) {
        if let Some(damage) = &damage
            && let Err(error) = self.store().set_damage(label, damage.clone())
        {
            tracing::error!(%error, "cannot record the damage a fault did");
        }
        self.faults.damaged(label, damage);
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        self.gc(options)
    }
}

/// Puts the verdict on a failure: who explains it, what it could not
/// read, and — for one no fault explains — why not, in its own words.
fn apply(failure: &mut Failure, attribution: Attribution) {
    failure.explained_by = attribution.explained_by;
    failure.unreadable = attribution.unreadable;
    if let Some(note) = attribution.note {
        failure.summary = format!("{}; {note}", failure.summary);
        failure.details = format!("{}\n\n{note}", failure.details);
    }
}

fn writer_step(result: std::io::Result<WriteEffect>) -> Step {
    match result {
        Ok(WriteEffect::Done(details)) => {
            let mut step = Step::ok();
            step.details = details;
            step
        }
        Ok(WriteEffect::NoOp(reason)) => Step::no_op(reason),
        Err(error) => Step::error(error, ErrorClass::Local),
    }
}
