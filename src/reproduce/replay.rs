//! Replay: a recorded run again, on a fresh repository. The state dir's
//! trace holds every client's actions (each draws its inputs from the seed,
//! its client and its position, so the same position draws the same files),
//! the faults that took effect with their settings, and the order in which
//! all of them started; `state.json` holds the failures found.
//!
//! The recorded state dir is only read: every try runs in a state dir of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::backend::location::RepositoryLocation;
use crate::engine::actions::{Action, Origin};
use crate::engine::record::{ActionRecord, Drawn};
use crate::engine::report::{FailureReport, Report};
use crate::engine::scenario::{ClientScript, PlannedGc, Scenario, Schedule, ScriptStep};
use crate::engine::store::{Failure, FailureKind, State, StateLayout};
use crate::engine::trace::{FaultLine, PruneLine, RunStartLine, TraceLine, read_trace};
use crate::engine::traits::{ClientId, SnapshotId};
use crate::faults::{FaultKind, FaultSpec, RacedStep, VictimRole};
use crate::reproduce::races::raced_step;
use crate::run::launch::{LaunchError, RunSpec, launch};
use crate::run::{Command, Event, RunHandle};

/// A state dir that cannot be replayed; the text names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "{0}: no state.json, so this is not a snapstorm state dir; give the --state-dir of a run"
    )]
    NotAStateDir(PathBuf),
    #[error("{path}: cannot read: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "{0}: no run recorded a verification failure, so there is nothing to reproduce; give the state dir of a run that failed"
    )]
    NoFailure(PathBuf),
    #[error(
        "{path}: the trace holds no start line for run {run} (written by an older snapstorm), so its clients and scenario are unknown; record the run again"
    )]
    NoStart { path: PathBuf, run: u32 },
    #[error(
        "{path}: run {run} recorded no action to replay; give the state dir of a run that took actions"
    )]
    NoActions { path: PathBuf, run: u32 },
}

/// What makes two failures the same kind for a replay: what failed, and
/// the kind of fault that explains it (none: unexpected). Which client or
/// which check found it may change from try to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    pub kind: FailureKind,
    pub explained_by: Option<FaultKind>,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&kind)?;
        match self.explained_by {
            Some(fault) => write!(f, " after {fault}"),
            None => f.write_str(" (unexpected)"),
        }
    }
}

/// A failure a try found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub signature: Signature,
    /// The client as the recording numbers it.
    pub client: ClientId,
    pub origin: Origin,
    pub summary: String,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Signature { kind, explained_by } = self.signature;
        let kind = Signature {
            kind,
            explained_by: None,
        }
        .to_string();
        let kind = kind.trim_end_matches(" (unexpected)");
        write!(f, "{kind} on {} in {}", self.client, self.origin)?;
        match explained_by {
            Some(fault) => write!(f, " after {fault}"),
            None => f.write_str(" (unexpected)"),
        }
    }
}

/// A recorded run, ready to run again.
#[derive(Debug, Clone)]
pub struct Recording {
    pub state_dir: PathBuf,
    /// The backend the run was recorded on.
    pub backend: String,
    /// The run of the state dir that is replayed.
    pub recorded: RecordedRun,
    /// What a try must find again, one failure of each kind the run found
    /// (only the unexpected ones, when there are any: those are what matter).
    pub targets: Vec<Found>,
    /// The state dir's runs before this one (it resumed them), oldest first.
    pub before: Vec<RecordedRun>,
}

/// One run of a state dir as its trace recorded it.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    pub run: u32,
    pub seed: u64,
    /// The run's scenario (options, weights); the streams replace its plan.
    pub scenario: Scenario,
    /// Every client's recorded actions, in its own order.
    pub clients: Vec<ClientScript>,
    /// The faults that took effect, at their times and places.
    pub faults: Vec<FaultSpec>,
    /// The GCs asked for outside every client's stream (the console's `g`).
    pub gcs: Vec<PlannedGc>,
}

/// The kind of each fault of a run, by its label.
type FaultKinds = BTreeMap<String, FaultKind>;

impl RecordedRun {
    /// Run `run` of the trace `lines` (of the state dir at `state_dir`).
    /// `failures` are the state dir's (the backup an aggressive prune
    /// raced can be read off what it lost).
    fn read(
        state_dir: &Path,
        layout: &StateLayout,
        lines: &[TraceLine],
        failures: &[Failure],
        run: u32,
    ) -> Result<(RecordedRun, FaultKinds), ReplayError> {
        let failures: Vec<&Failure> = failures.iter().filter(|f| f.run == run).collect();
        let start: RunStartLine = lines
            .iter()
            .find_map(|line| match line {
                TraceLine::Start(start) if start.run == run => Some((**start).clone()),
                _ => None,
            })
            .ok_or_else(|| ReplayError::NoStart {
                path: state_dir.to_path_buf(),
                run,
            })?;
        let scenario = Scenario::parse(
            &start.scenario,
            &start.scenario_toml,
            "the trace's scenario",
        )
        .map_err(|e| ReplayError::Unreadable {
            path: layout.trace(),
            message: e.to_string(),
        })?;

        let in_stream = |record: &ActionRecord| {
            record.run == run && !record.final_check && record.params == Default::default()
        };
        // Which step of its client's stream made each snapshot: a restore
        // or delete of it picks it by that step.
        let made_by: BTreeMap<(ClientId, &SnapshotId), u64> = lines
            .iter()
            .filter_map(|line| match line {
                TraceLine::Action(record)
                    if in_stream(record) && record.action == Action::SnapshotRoot =>
                {
                    let id = record.snapshot.as_ref()?;
                    Some(((record.client, id), record.drawn().seq))
                }
                _ => None,
            })
            .collect();
        // Every action of the run, asked for by faults and final checks too.
        let records: Vec<&ActionRecord> = lines
            .iter()
            .filter_map(|line| match line {
                TraceLine::Action(record) if record.run == run => Some(&**record),
                _ => None,
            })
            .collect();
        // Each recorded client's steps; a step remembers whose inputs it drew.
        let mut streams: BTreeMap<ClientId, (ClientScript, Vec<ScriptStep>)> = BTreeMap::new();
        let mut fault_lines: Vec<FaultLine> = Vec::new();
        let mut prunes: BTreeMap<&str, &PruneLine> = BTreeMap::new();
        let mut gcs: Vec<PlannedGc> = Vec::new();
        for line in lines {
            match line {
                TraceLine::Action(record) if in_stream(record) => {
                    let Drawn {
                        client: ClientId(draws_as),
                        run: draw_run,
                        seq,
                    } = record.drawn();
                    let entry = streams.entry(record.client).or_insert_with(|| {
                        (
                            ClientScript {
                                draws_as,
                                run: draw_run,
                                steps: Vec::new(),
                            },
                            Vec::new(),
                        )
                    });
                    entry.1.push(ScriptStep {
                        action: record.action,
                        seq,
                        order: Some(record.order),
                        at_ms: Some(record.at_ms),
                        picks: match record.action {
                            Action::RestoreRandomSnapshot
                            | Action::RestoreIntoDataDir
                            | Action::DeleteRandomSnapshot => record
                                .snapshot
                                .as_ref()
                                .and_then(|id| made_by.get(&(record.client, id)).copied()),
                            _ => None,
                        },
                    });
                }
                TraceLine::Fault(fault) if fault.run == run => fault_lines.push((**fault).clone()),
                TraceLine::Prune(prune) if prune.run == run => {
                    prunes.insert(&prune.prune, prune);
                }
                TraceLine::Gc(gc) if gc.run == run => gcs.push(PlannedGc {
                    at: std::time::Duration::from_millis(gc.at_ms),
                    after: Some(gc.order),
                    aggressive: gc.aggressive,
                }),
                _ => {}
            }
        }
        if streams.is_empty() {
            return Err(ReplayError::NoActions {
                path: state_dir.to_path_buf(),
                run,
            });
        }
        // Actions are traced as they end; a client's stream is in start order.
        let mut clients: Vec<ClientScript> = streams
            .into_values()
            .map(|(mut script, mut steps)| {
                steps.sort_by_key(|s| s.order);
                script.steps = steps;
                script
            })
            .collect();
        let fault_kinds: FaultKinds = fault_lines
            .iter()
            .map(|f| (f.fault.clone(), f.kind))
            .collect();
        let mut faults: Vec<FaultSpec> = fault_lines
            .iter()
            .map(|line| FaultSpec {
                races: raced_step(
                    line,
                    prunes.get(line.fault.as_str()).copied(),
                    &records,
                    &failures,
                ),
                ..fault_spec(line)
            })
            .collect();
        renumber(&mut clients, &mut faults, &mut gcs);
        let recorded = RecordedRun {
            run,
            seed: start.seed,
            scenario,
            clients,
            faults,
            gcs,
        };
        Ok((recorded, fault_kinds))
    }

    /// The run as a scenario of fixed per-client sequences.
    pub fn scenario(&self, schedule: Schedule) -> Scenario {
        scripted(
            &self.scenario,
            self.seed,
            schedule,
            &self.clients,
            &self.faults,
            &self.gcs,
        )
    }
}

impl Recording {
    /// Reads the state dir: the last run that found a failure, or else the last run.
    pub fn load(state_dir: &Path) -> Result<Recording, ReplayError> {
        let layout = StateLayout::new(state_dir);
        let state_file = layout.state_file();
        let unreadable = |path: &Path, message: String| ReplayError::Unreadable {
            path: path.to_path_buf(),
            message,
        };
        let bytes = match std::fs::read(&state_file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReplayError::NotAStateDir(state_dir.to_path_buf()));
            }
            Err(e) => return Err(unreadable(&state_file, e.to_string())),
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(&state_file, e.to_string()))?;
        let lines =
            read_trace(&layout.trace()).map_err(|e| unreadable(&layout.trace(), e.to_string()))?;
        let failed_run = state.failures.iter().map(|f| f.run).max();
        let last_run = lines
            .iter()
            .filter_map(|line| match line {
                TraceLine::Start(start) => Some(start.run),
                _ => None,
            })
            .max();
        let run = failed_run
            .or(last_run)
            .ok_or_else(|| ReplayError::NoStart {
                path: state_dir.to_path_buf(),
                run: state.run_counter,
            })?;
        let (recorded, fault_kinds) =
            RecordedRun::read(state_dir, &layout, &lines, &state.failures, run)?;
        // A resumed run began where the runs before it left the repository:
        // those are re-created first, each from its own recorded streams.
        let mut before = Vec::new();
        for earlier in 1..run {
            match RecordedRun::read(state_dir, &layout, &lines, &state.failures, earlier) {
                Ok((earlier, _)) => before.push(earlier),
                // A run that took no action left nothing to re-create but
                // its start: the next run verifies the same repository.
                Err(ReplayError::NoActions { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let found: Vec<Found> = state
            .failures
            .iter()
            .filter(|f| f.run == run)
            .map(|failure| Found {
                signature: Signature {
                    kind: failure.kind,
                    explained_by: failure
                        .explained_by
                        .as_ref()
                        .and_then(|label| fault_kinds.get(label).copied()),
                },
                client: failure.client,
                origin: failure.action,
                summary: failure.summary.clone(),
            })
            .collect();
        let unexpected = found.iter().any(|f| f.signature.explained_by.is_none());
        let mut targets: Vec<Found> = Vec::new();
        for f in found {
            let wanted = !unexpected || f.signature.explained_by.is_none();
            if wanted && !targets.iter().any(|t| t.signature == f.signature) {
                targets.push(f);
            }
        }
        Ok(Recording {
            state_dir: state_dir.to_path_buf(),
            backend: state.backend.clone(),
            recorded,
            targets,
            before,
        })
    }

    /// The runs before this one, each as a scenario of its recorded
    /// streams, in the order they ran: a try runs them first, in its own
    /// state dir, so that this run resumes where they left the repository.
    pub fn runs_before(&self, schedule: Schedule) -> Vec<Scenario> {
        self.before
            .iter()
            .map(|earlier| earlier.scenario(schedule))
            .collect()
    }

    /// The recorded run as a scenario of fixed per-client sequences.
    pub fn scenario(&self, schedule: Schedule) -> Scenario {
        self.recorded.scenario(schedule)
    }

    /// The first failure a try found that is one of the recording's kinds.
    pub fn matches<'a>(&self, found: &'a [Found]) -> Option<&'a Found> {
        found
            .iter()
            .find(|f| self.targets.iter().any(|t| t.signature == f.signature))
    }

    /// Whether a run of `scenario` could find one of the failures looked
    /// for at all: one a fault explains needs a fault of that kind (an
    /// unexpected one needs nothing), so a scenario without it passes
    /// without being run.
    pub fn could_fail(&self, scenario: &Scenario) -> bool {
        self.targets
            .iter()
            .any(|target| match target.signature.explained_by {
                None => true,
                Some(kind) => scenario.faults.iter().any(|fault| fault.kind == kind),
            })
    }

    /// The kinds of failure looked for, for people.
    pub fn looking_for(&self) -> String {
        self.targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Actions in all streams.
    pub fn actions(&self) -> usize {
        self.recorded.clients.iter().map(|c| c.steps.len()).sum()
    }
}

/// `base` with these fixed sequences, faults and GCs instead of its plan.
pub fn scripted(
    base: &Scenario,
    seed: u64,
    schedule: Schedule,
    clients: &[ClientScript],
    faults: &[FaultSpec],
    gcs: &[PlannedGc],
) -> Scenario {
    let mut scenario = base.clone();
    scenario.seed = Some(seed);
    scenario.schedule = schedule;
    scenario.clients = clients.to_vec();
    scenario.faults = aimed_as_numbered(clients, faults);
    scenario.gcs = gcs.to_vec();
    scenario
}

/// `faults`, which name clients as the recording numbered them, aimed at
/// the numbers a run of `clients` gives them: a run numbers its clients
/// by their place in the list (client-1 runs the first), so a fault aimed
/// at a client (`client=`) or at a file one stored (`victim=`) follows it
/// there, and one whose client was left out picks for itself.
pub fn aimed_as_numbered(clients: &[ClientScript], faults: &[FaultSpec]) -> Vec<FaultSpec> {
    let numbered: BTreeMap<u32, u32> = clients
        .iter()
        .zip(1..)
        .map(|(client, number)| (client.draws_as, number))
        .collect();
    faults
        .iter()
        .map(|fault| FaultSpec {
            client: fault.client.and_then(|c| numbered.get(&c).copied()),
            victim: fault.victim.and_then(|victim| {
                Some(VictimRole {
                    client: *numbered.get(&victim.client)?,
                    ..victim
                })
            }),
            // A race with a step left out is no race to keep.
            races: fault.races.and_then(|race| {
                let script = clients.iter().find(|c| c.draws_as == race.client)?;
                script
                    .steps
                    .iter()
                    .any(|s| s.seq == race.seq)
                    .then_some(())?;
                Some(RacedStep {
                    client: *numbered.get(&race.client)?,
                    ..race
                })
            }),
            ..fault.clone()
        })
        .collect()
}

/// Places on the recorded schedule numbered 0, 1, … in the same order, so
/// that no one waits for a place left out.
pub fn renumber(clients: &mut [ClientScript], faults: &mut [FaultSpec], gcs: &mut [PlannedGc]) {
    let places: BTreeSet<u64> = clients
        .iter()
        .flat_map(|c| c.steps.iter().filter_map(|s| s.order))
        .chain(faults.iter().filter_map(|f| f.after))
        .chain(gcs.iter().filter_map(|g| g.after))
        .collect();
    let rank: BTreeMap<u64, u64> = places
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, i as u64))
        .collect();
    for step in clients.iter_mut().flat_map(|c| c.steps.iter_mut()) {
        step.order = step.order.map(|o| rank[&o]);
    }
    for fault in faults.iter_mut() {
        fault.after = fault.after.map(|o| rank[&o]);
    }
    for gc in gcs.iter_mut() {
        gc.after = gc.after.map(|o| rank[&o]);
    }
}

/// The fault as it took effect: its settings, the time it started, its
/// place, and the client it hit.
fn fault_spec(line: &FaultLine) -> FaultSpec {
    let mut spec = line
        .spec
        .as_deref()
        .and_then(|text| text.parse::<FaultSpec>().ok())
        .unwrap_or_else(|| {
            let mut spec = FaultSpec::new(line.kind, Default::default());
            if line.kind.takes_duration()
                && let Some(ms) = line.duration_ms
            {
                spec.duration = Some(std::time::Duration::from_millis(ms));
            }
            spec
        });
    spec.at = std::time::Duration::from_millis(line.at_ms);
    spec.after = Some(line.order);
    if line.kind.targets_client() {
        spec.client = line.client.map(|c| c.0);
    }
    spec
}

/// The failures of a finished try, with clients numbered as in the recording.
pub fn found_in(report: &Report, scenario: &Scenario) -> Vec<Found> {
    let kinds: BTreeMap<&str, FaultKind> = report
        .faults
        .iter()
        .filter_map(|f| Some((f.label.as_str(), FaultKind::parse(&f.kind)?)))
        .collect();
    report
        .failures
        .iter()
        .map(|failure: &FailureReport| Found {
            signature: Signature {
                kind: failure.kind,
                explained_by: failure
                    .explained_by
                    .as_deref()
                    .and_then(|label| kinds.get(label).copied()),
            },
            client: scenario
                .clients
                .get(failure.client.0 as usize - 1)
                .map(|c| ClientId(c.draws_as))
                .unwrap_or(failure.client),
            origin: failure.action,
            summary: failure.summary.clone(),
        })
        .collect()
}

/// A stop that says yes once `stop` does, or once `at` comes: what stops a
/// shrink's runs in hand when its budget runs out. Call it inside a
/// runtime; its watcher ends with the runs (when the receiver goes).
pub fn stop_at(
    mut stop: tokio::sync::watch::Receiver<bool>,
    at: Option<std::time::Instant>,
) -> tokio::sync::watch::Receiver<bool> {
    let (stops, stopped) = tokio::sync::watch::channel(*stop.borrow());
    tokio::spawn(async move {
        let comes = async {
            match at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // A dropped sender asks nothing.
            Ok(_) = stop.wait_for(|stop| *stop) => {}
            () = comes => {}
            () = stops.closed() => return,
        }
        let _ = stops.send(true);
    });
    stopped
}

/// Runs `scenario` (fixed per-client sequences) on the embedded backend in
/// `state_dir`, a fresh directory, with its repository at `repository` (a
/// fresh one), until every sequence is done; `stop` ends it early (the
/// report then covers what ran), and so does a failure of a kind in
/// `enough` (none: the run goes to its end): the run then winds down as
/// on a stop, its final checks included, and its report has that failure.
pub async fn run_scenario(
    scenario: Scenario,
    state_dir: PathBuf,
    repository: RepositoryLocation,
    stop: tokio::sync::watch::Receiver<bool>,
    enough: &[Signature],
) -> Result<Report, LaunchError> {
    let seed = scenario.seed.unwrap_or_default();
    let mut spec = RunSpec::new(scenario.clone(), state_dir, seed);
    spec.repository = repository;
    spec.clients = scenario.clients.len() as u32;
    spec.faults = scenario.faults.clone();
    let RunHandle {
        commands,
        mut events,
        task,
        ..
    } = launch(spec).await?;
    let mut stop = stop;
    let drain = async {
        let mut asked = false;
        while let Some(event) = events.recv().await {
            let failures = match &event {
                Event::ActionFinished(record) => &record.failures,
                Event::Failures(failures) => failures,
                _ => continue,
            };
            // A fault's failures can come before the run hears it was
            // injected (an aggressive GC's), so its kind is read off its label.
            let signature = |failure: &Failure| {
                let explained_by = match &failure.explained_by {
                    Some(label) => Some(FaultKind::of_label(label)?),
                    None => None,
                };
                Some(Signature {
                    kind: failure.kind,
                    explained_by,
                })
            };
            let looked_for = |f: &Failure| signature(f).is_some_and(|s| enough.contains(&s));
            if !asked && failures.iter().any(looked_for) {
                asked = true;
                let _ = commands.send(Command::Shutdown);
            }
        }
    };
    let watch_stop = async {
        // A dropped sender asks nothing: the run goes on.
        if stop.wait_for(|stop| *stop).await.is_ok() {
            let _ = commands.send(Command::Shutdown);
        }
        std::future::pending::<()>().await;
    };
    let report = tokio::select! {
        report = task => report,
        _ = async { tokio::join!(drain, watch_stop) } => unreachable!("waits for the task"),
    };
    report.map_err(LaunchError::Crashed)
}
