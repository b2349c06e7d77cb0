//! The engine: carries out actions for clients, by name (`exec_action`) or
//! as the scenario picks them (`random_action`), and keeps stats, the trace
//! and the checker's metadata as it goes.
//!
//! Every action draws its randomness from a generator derived from the run
//! seed, the client and the action's position in that client's stream, so
//! the same seed gives every client the same actions with the same options,
//! whatever the other clients do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;
use serde_json::json;

use super::actions::{Action, Origin, Step};
use super::attribution::{FaultLedger, Incident, IncidentKind};
use super::checker::{Checker, RestoreAttempt};
use super::fingerprint::CompareOptions;
use super::guard::catch_panic;
use super::progress::ProgressBoard;
use super::record::{ActionParams, ActionRecord, Drawn};
use super::scenario::{ClientScript, Plan, Scenario, ScriptStep};
use super::stats::{Counts, Outcome, Stats};
use super::store::{Failure, FailureKind, MetadataStore, now_rfc3339};
use super::together::Meetings;
use super::trace::Trace;
use super::traits::{ActionRng, ClientId, ErrorClass, FileWriter, Server, SnapshotId, Snapshotter};
use crate::faults::RacedStep;

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

/// Where each client stands in its stream of actions.
pub(super) struct Cursor {
    /// Picks the next action; advanced only by `random_action`.
    choice: ActionRng,
    next_seq: u64,
    sequence_position: usize,
    /// Actions of the client under way.
    pub(super) acting: u32,
}

pub struct Engine {
    pub(super) config: EngineConfig,
    pub(super) writer: Arc<dyn FileWriter>,
    pub(super) snapshotter: Arc<dyn Snapshotter>,
    pub(super) server: Arc<dyn Server>,
    pub(super) checker: Checker,
    pub(super) stats: Stats,
    pub(super) trace: Trace,
    /// The state directory's run this engine carries out.
    pub(super) run: u32,
    pub(super) cursors: Mutex<HashMap<ClientId, Cursor>>,
    /// Live snapshots from earlier runs, per client, at start.
    pub(super) inherited: BTreeMap<ClientId, Vec<SnapshotId>>,
    pub(super) inherited_verified: AtomicU64,
    /// Injected faults (and the run's clock, see [`Engine::start_clock`]), and which incident each explains.
    pub(super) faults: FaultLedger,
    /// Listing failures already reported in this run.
    pub(super) listing_reported: Mutex<HashSet<(SnapshotId, FailureKind)>>,
    pub(super) restores_retried_at_end: AtomicU64,
    /// Why the run must stop on snapstorm's own side (the trace cannot be
    /// written); set once. Nothing after it is a verdict on the repository.
    pub(super) halt: OnceLock<String>,
    /// Wakes the run's supervisor when `halt` is set.
    pub(super) halt_notify: tokio::sync::Notify,
    /// The run is ending: repeated actions stop after the repetition in hand.
    pub(super) stopping: AtomicBool,
    /// When the run stopped waiting for the actions in flight, and how
    /// many there were, if it did (see [`Engine::abandon_in_flight`]).
    pub(super) abandoned: OnceLock<(Instant, u64)>,
    /// Actions that may run at once (see [`Engine::action_slots`]).
    pub(super) action_slots: Arc<tokio::sync::Semaphore>,
    /// How many slots there are.
    pub(super) slot_count: usize,
    /// Places handed out in the order in which actions and faults start.
    pub(super) starts: AtomicU64,
    /// How far each client's snapshot or restore under way has got.
    pub(super) progress: ProgressBoard,
    /// Clients' forgets to start at once (parallel-forget).
    pub(super) meetings: Meetings,
    /// The snapshot each step of a fixed sequence made, by the inputs it
    /// drew: what a later step's `picks` names.
    pub(super) made_by_step: Mutex<HashMap<Drawn, SnapshotId>>,
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
            abandoned: OnceLock::new(),
            starts: AtomicU64::new(0),
            halt: OnceLock::new(),
            halt_notify: tokio::sync::Notify::new(),
            action_slots: Arc::new(tokio::sync::Semaphore::new(slot_count)),
            slot_count,
            progress: ProgressBoard::default(),
            meetings: Meetings::default(),
            made_by_step: Mutex::new(HashMap::new()),
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
    pub(super) fn halt(&self, reason: String) {
        tracing::error!("the run stops: {reason}");
        if self.halt.set(reason).is_ok() {
            // A stored permit: the supervisor sees it even if it is not waiting yet.
            self.halt_notify.notify_one();
        }
    }

    /// Writes a line of the trace; a trace that cannot be written halts the run.
    pub(super) fn trace_line(&self, line: &impl Serialize) {
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

    /// The run's grace for the actions in flight ran out: it ends without
    /// them, then kills what they run or stops the server under them. How
    /// an action ends after this is the run's doing, not the repository's:
    /// it is traced as abandoned, an error it meets is snapstorm's own
    /// (`local`), and the run's action counts leave it out; only what it
    /// saw whole (a restore that came back different) stands. The final
    /// checks are skipped, and the next run of the state dir makes them.
    pub fn abandon_in_flight(&self) {
        let in_flight: u32 = {
            let cursors = self.cursors.lock().expect("cursors lock");
            cursors.values().map(|c| c.acting).sum()
        };
        let _ = self.abandoned.set((Instant::now(), u64::from(in_flight)));
    }

    /// How many actions the run ended without (see [`Engine::abandon_in_flight`]).
    pub fn abandoned_actions(&self) -> u64 {
        self.abandoned.get().map_or(0, |&(_, in_flight)| in_flight)
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

    /// Makes the client known (to stats and the cursor table) before its first action.
    pub fn register_client(&self, client: ClientId) {
        self.stats
            .register_client(client, self.snapshotter.client_kind(client));
        self.cursor_do(client, |_| ());
    }

    pub(super) fn cursor_do<T>(&self, client: ClientId, f: impl FnOnce(&mut Cursor) -> T) -> T {
        let mut cursors = self.cursors.lock().expect("cursor lock");
        let (seed, run) = (self.config.seed, self.run);
        let cursor = cursors.entry(client).or_insert_with(|| Cursor {
            choice: derive_rng(seed, run, client, "choice", 0),
            next_seq: 0,
            sequence_position: 0,
            acting: 0,
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

    pub(super) fn exec_attempt(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
        attempt: RestoreAttempt,
    ) -> ActionRecord {
        self.run_action(client, action, params, attempt, None, || {})
    }

    /// Carries out a step of `client`'s fixed sequence, drawing the inputs
    /// the step's recorded action drew. `placed` is called the moment the
    /// step takes its place in the order of starts, before anything else
    /// can take the next: a schedule that lets the next step go only then
    /// gets the trace's order it asked for, not the order in which the
    /// threads happened to reach the engine.
    pub fn exec_step(
        &self,
        client: ClientId,
        script: &ClientScript,
        step: &ScriptStep,
        placed: impl FnOnce(),
    ) -> ActionRecord {
        let drawn = Drawn {
            client: ClientId(script.draws_as),
            run: script.run,
            seq: step.seq,
        };
        // The backup an aggressive prune raced in the recording: its index
        // waits for that prune, which waits for it (see `RacedStep`).
        let race = RacedStep {
            client: client.0,
            seq: step.seq,
        };
        if self
            .config
            .scenario
            .faults
            .iter()
            .any(|f| f.races == Some(race))
            && !self.server.hold_for_gc(race)
        {
            tracing::info!(%race, "this backend cannot hold a backup for the prune it raced: the race goes as it comes");
        }
        let prefer = step.picks.and_then(|seq| {
            let made = self.made_by_step.lock().expect("made-by-step lock");
            made.get(&Drawn { seq, ..drawn }).cloned()
        });
        self.run_action(
            client,
            step.action,
            &ActionParams {
                prefer,
                ..ActionParams::default()
            },
            RestoreAttempt::DuringRun,
            Some(drawn),
            placed,
        )
    }

    /// The next place in the order in which actions and faults start.
    pub(super) fn take_start(&self) -> (u64, u64) {
        let order = self.starts.fetch_add(1, Ordering::SeqCst);
        (order, self.faults.ms_into_run(Instant::now()))
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

    pub(super) fn run_action(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
        attempt: RestoreAttempt,
        drawn_as: Option<Drawn>,
        placed: impl FnOnce(),
    ) -> ActionRecord {
        let seq = self.cursor_do(client, |c| {
            c.next_seq += 1;
            c.acting += 1;
            c.next_seq - 1
        });
        let time = now_rfc3339();
        let started = Instant::now();
        let (order, at_ms) = self.take_start();
        placed();
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
        // Its step is done (a panic in it is caught above): nothing more of it comes.
        let step_ended = Instant::now();
        self.cursor_do(client, |c| c.acting -= 1);
        if repeats > 1 {
            total.details.insert("repeat-action".into(), json!(repeats));
            if total.effects.bytes_written > 0 {
                total
                    .details
                    .insert("bytes".into(), json!(total.effects.bytes_written));
            }
        }
        // Ended after the run gave up on it; one that ended just before is
        // the repository's to answer for, as ever.
        let abandoned = self
            .abandoned
            .get()
            .is_some_and(|&(given_up, _)| given_up <= step_ended);
        if abandoned {
            total.abandon();
        }
        let outcome = total.outcome();
        if let (Some(drawn), Action::SnapshotRoot, Some(id)) = (drawn_as, action, &total.snapshot)
            && outcome == Outcome::Ok
        {
            let mut made = self.made_by_step.lock().expect("made-by-step lock");
            made.insert(drawn, id.clone());
        }
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
        if !abandoned {
            self.stats.record(
                client,
                action,
                outcome,
                duration,
                total.effects,
                explained_by.is_some(),
            );
        }
        let record = ActionRecord {
            time,
            run: self.run,
            client,
            seq,
            order,
            at_ms,
            drawn_as,
            action,
            params: ActionParams {
                prefer: None,
                ..params.clone()
            },
            outcome,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            snapshot: total.snapshot,
            details: total.details,
            message: total.message,
            error_class,
            final_check: attempt == RestoreAttempt::Last,
            abandoned,
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

    /// Writes a line that is not an action (an injected fault) into the trace.
    pub fn trace_event(&self, event: &impl Serialize) {
        self.trace_line(event);
    }
}
