//! A running robustness run: the Server, the engine and one worker task per
//! client, driven by commands and observed through events. The console, the
//! headless runner and the tests all drive a run through this one type.
//!
//! Workers are tokio tasks; each action runs on a blocking thread (backend
//! clients are blocking), so a slow backend never stalls the commands or
//! the events. Actions take turns on the engine's slots (two per core), so
//! the work in progress does not grow with the number of clients. Pausing stops new actions from starting; the action in
//! flight always finishes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::engine::actions::Action;
use crate::engine::damage::Damage;
use crate::engine::exec::Engine;
use crate::engine::record::{ActionParams, ActionRecord};
use crate::engine::report::Report;
use crate::engine::scenario::Schedule;
use crate::engine::stats::Counts;
use crate::engine::store::Failure;
use crate::engine::store::now_rfc3339;
use crate::engine::trace::RunStartLine;
use crate::engine::traits::{
    BackendResult, ClientId, FaultHost, FaultInjector, GcDone, GcOptions, InjectError, Injected,
    ServerInfo,
};
use crate::faults::{FaultKind, FaultSpec};
use crate::multiclient::MultiClientSnapshotter;
use crate::multiclient::schedule::Gate;

/// When a run ends on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimit {
    /// Stop starting actions after this long.
    pub duration: Option<Duration>,
    /// Each client stops after this many scenario actions.
    pub actions_per_client: Option<u64>,
}

/// What a person (or a test) can ask of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AddClient,
    RemoveClient(ClientId),
    Gc(GcOptions),
    /// Pause or resume every client.
    TogglePauseAll,
    TogglePauseClient(ClientId),
    /// Run this action next for this client (snapshot now, verify now…).
    Enqueue(ClientId, Action),
    /// Inject a fault now (its `at` is ignored).
    InjectFault(FaultSpec),
    Shutdown,
}

/// What a run reports while it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A client is being connected (`attempt` 1 first, more after a failure).
    ClientConnecting {
        client: ClientId,
        attempt: u32,
    },
    ClientAdded(ClientId),
    /// The client could not be connected, or its worker stopped on an error.
    ClientError(ClientId, String),
    ClientRemoved(ClientId),
    ActionStarted {
        client: ClientId,
        action: Action,
        at: Instant,
    },
    ActionFinished(Box<ActionRecord>),
    GcStarted,
    GcFinished(Result<(), String>),
    PausedAll(bool),
    ClientPaused(ClientId, bool),
    FaultInjected(Injected),
    /// A fault could not be injected (no pack yet, no such client…).
    FaultFailed {
        kind: FaultKind,
        error: String,
    },
    /// Failures found outside any action: the listing checks.
    Failures(Vec<Failure>),
    /// Shutdown began: in-flight actions are finishing.
    Stopping {
        in_flight: usize,
        grace: Duration,
    },
    Finished(Box<Report>),
}

/// Facts about a run, known once it started.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub seed: u64,
    pub scenario: String,
    pub state_dir: PathBuf,
    pub server: ServerInfo,
    pub run_counter: u32,
    pub inherited_snapshots: u64,
    /// Snapshots the repository lost since the metadata recorded them.
    pub startup_failures: Vec<Failure>,
}

/// How long a client that could not connect waits before its next try:
/// doubling from 1 s, at most 30 s.
pub fn connect_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// The most clients a run takes at once: `--clients` and the console's `a` stop here.
pub const MAX_CLIENTS: u32 = 64;

/// How long shutdown waits for in-flight actions before it stops waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// How often a data fault waiting for its first victim looks again.
const VICTIM_POLL: Duration = Duration::from_millis(500);

/// The engine's counts as a front end reads them: the console, the progress
/// line and the summary display these and count nothing themselves.
#[derive(Clone)]
pub struct CountsFeed {
    engine: Arc<Engine>,
    running: Arc<AtomicUsize>,
}

impl CountsFeed {
    pub fn now(&self) -> Counts {
        self.engine.counts()
    }

    /// Inherited snapshots the clients verify at their start (reads the metadata).
    pub fn inherited_to_verify(&self) -> u64 {
        self.engine.inherited_to_verify()
    }

    /// Inherited snapshots verified so far.
    pub fn inherited_verified(&self) -> u64 {
        self.engine.inherited_verified()
    }

    /// Clients taking actions now (added, not yet removed).
    pub fn running_clients(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// A handle on a running run, to take apart: commands go in, events and
/// counts come out, the task ends with the report. Dropping every sender of
/// `commands` ends the run, as a `Shutdown` would.
pub struct RunHandle {
    pub info: RunInfo,
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub counts: CountsFeed,
    pub task: tokio::task::JoinHandle<Report>,
}

/// How one try to connect a client ended.
struct Connected {
    client: ClientId,
    attempt: u32,
    result: Result<(), String>,
}

/// Per-client control, seen by its worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ClientControl {
    paused: bool,
    stop: bool,
}

/// Run-wide control, seen by every worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RunControl {
    paused: bool,
    stop: bool,
}

struct ClientSlot {
    control: watch::Sender<ClientControl>,
    queue: mpsc::UnboundedSender<Action>,
}

/// Everything a run needs, already set up.
pub struct RunParts {
    pub engine: Arc<Engine>,
    pub snapshotter: Arc<MultiClientSnapshotter>,
    pub initial_clients: u32,
    pub limit: RunLimit,
    pub state_dir: PathBuf,
    /// Injects faults, if the backend can.
    pub faults: Option<Arc<dyn FaultInjector>>,
    /// Faults to inject at their times.
    pub fault_plan: Vec<FaultSpec>,
    /// Awaited once at the very end, after the last client is gone (stops the server).
    pub on_finish: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Starts a run: checks the metadata against the repository, connects the
/// initial clients and starts their workers.
pub async fn start(parts: RunParts) -> Result<RunHandle, String> {
    let engine = parts.engine.clone();
    let check_engine = engine.clone();
    let startup_failures = tokio::task::spawn_blocking(move || check_engine.startup_check())
        .await
        .map_err(|e| format!("start-up check crashed: {e}"))?
        .map_err(|e| format!("cannot list the repository's snapshots: {e}"))?;
    let report = engine.report();
    let info = RunInfo {
        seed: engine.config().seed,
        scenario: engine.config().scenario.name.clone(),
        state_dir: parts.state_dir.clone(),
        server: engine.server().info(),
        run_counter: report.run_counter,
        inherited_snapshots: report.inherited_snapshots,
        startup_failures,
    };
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    let counts = CountsFeed {
        engine: engine.clone(),
        running: running.clone(),
    };
    let task = tokio::spawn(supervise(parts, commands_rx, events_tx, running));
    Ok(RunHandle {
        info,
        commands: commands_tx,
        events: events_rx,
        counts,
        task,
    })
}

struct Supervisor {
    engine: Arc<Engine>,
    snapshotter: Arc<MultiClientSnapshotter>,
    limit: RunLimit,
    events: mpsc::UnboundedSender<Event>,
    run_control: watch::Sender<RunControl>,
    clients: BTreeMap<ClientId, ClientSlot>,
    workers: JoinSet<ClientId>,
    next_client: u32,
    /// Clients being connected (or waiting to retry), each on its own task.
    connecting: JoinSet<Option<Connected>>,
    /// Clients that have connected or failed their first try.
    tried_once: u32,
    /// Set when the run ends: clients waiting to retry stop waiting.
    stop_connects: watch::Sender<bool>,
    /// Connections in progress at once, as many as action slots: opening a
    /// repository derives its key (scrypt: CPU and tens of MiB each), so 64
    /// at once would only share the cores and add up their memory.
    connect_slots: Arc<tokio::sync::Semaphore>,
    in_flight: Arc<AtomicUsize>,
    faults: Option<Arc<dyn FaultInjector>>,
    fault_tasks: JoinSet<()>,
    /// How many clients take actions now, for the counts feed.
    running: Arc<AtomicUsize>,
    /// Paces fixed per-client sequences on the recorded schedule.
    gate: Option<Arc<Gate>>,
}

/// When the next planned fault is due: at a time, or at its turn on the
/// recorded schedule.
enum Due {
    At(tokio::time::Instant),
    Turn(Arc<Gate>, u64),
}

async fn wait_due(due: Option<Due>) {
    match due {
        Some(Due::At(at)) => tokio::time::sleep_until(at).await,
        Some(Due::Turn(gate, order)) => gate.wait_turn(order).await,
        None => std::future::pending().await,
    }
}

async fn supervise(
    parts: RunParts,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    running: Arc<AtomicUsize>,
) -> Report {
    let (run_control, _) = watch::channel(RunControl::default());
    let scenario = parts.engine.config().scenario.clone();
    // A scenario of fixed per-client sequences runs each once, one client each.
    let scripted = !scenario.clients.is_empty();
    let gate = (scripted && scenario.schedule == Schedule::Recorded).then(|| {
        let gate = Gate::default();
        let places: std::collections::BTreeSet<u64> = scenario
            .clients
            .iter()
            .flat_map(|c| c.steps.iter().filter_map(|s| s.order))
            .chain(parts.fault_plan.iter().filter_map(|f| f.after))
            .collect();
        // Numbers nobody holds are no one's turn.
        let last = places.last().copied().unwrap_or(0);
        gate.give_up((0..last).filter(|n| !places.contains(n)));
        Arc::new(gate)
    });
    let initial_clients = if scripted {
        scenario.clients.len() as u32
    } else {
        parts.initial_clients
    };
    let connect_slots = parts.engine.slot_count();
    let mut sup = Supervisor {
        engine: parts.engine,
        snapshotter: parts.snapshotter,
        limit: parts.limit,
        events,
        run_control,
        clients: BTreeMap::new(),
        workers: JoinSet::new(),
        next_client: 1,
        connecting: JoinSet::new(),
        tried_once: 0,
        stop_connects: watch::channel(false).0,
        connect_slots: Arc::new(tokio::sync::Semaphore::new(connect_slots)),
        in_flight: Arc::new(AtomicUsize::new(0)),
        faults: parts.faults,
        fault_tasks: JoinSet::new(),
        running,
        gate: gate.clone(),
    };
    let mut plan = parts.fault_plan;
    match &gate {
        Some(_) => plan.sort_by_key(|spec| spec.after),
        None => plan.sort_by_key(|spec| spec.at),
    }
    sup.engine.trace_event(&RunStartLine {
        time: now_rfc3339(),
        run: sup.engine.store().run_number(),
        start: true,
        seed: sup.engine.config().seed,
        scenario: scenario.name.clone(),
        scenario_toml: scenario.to_toml(),
        clients: initial_clients,
        duration_ms: sup
            .limit
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        actions_per_client: sup.limit.actions_per_client,
        faults: plan.iter().map(ToString::to_string).collect(),
    });
    // The first clients connect at once, not one after another; the clock
    // starts when each has connected or failed its first try.
    for _ in 0..initial_clients {
        sup.add_client();
    }
    let mut gc_tasks: JoinSet<()> = JoinSet::new();
    // Asked to stop while the first clients connected: the run ends at once.
    let mut shut_down = false;
    while !sup.connecting.is_empty() {
        tokio::select! {
            Some(joined) = sup.connecting.join_next() => {
                if let Ok(Some(connected)) = joined {
                    sup.connected(connected);
                }
                if sup.first_tries_done() {
                    break;
                }
            }
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => {
                    sup.stop_connecting().await;
                    shut_down = true;
                    break;
                }
                Some(command) => sup.handle(command, &mut gc_tasks).await,
            },
        }
    }
    let started = tokio::time::Instant::now();
    sup.engine.start_clock(started.into_std());
    let deadline = sup.limit.duration.map(|d| started + d);
    let mut plan = std::collections::VecDeque::from(plan);
    let halting = sup.engine.clone();
    if !shut_down {
        loop {
            // A scenario of fixed sequences ends when every client has run its own.
            if scripted && sup.workers.is_empty() && sup.connecting.is_empty() && plan.is_empty() {
                break;
            }
            let next_fault = plan.front().map(|spec| match (&gate, spec.after) {
                (Some(gate), Some(order)) => Due::Turn(gate.clone(), order),
                _ => Due::At(started + spec.at),
            });
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => sup.handle(command, &mut gc_tasks).await,
                },
                _ = wait_due(next_fault) => {
                    let spec = plan.pop_front().expect("a planned fault is due");
                    sup.inject(spec);
                }
                Some(_) = sup.fault_tasks.join_next(), if !sup.fault_tasks.is_empty() => {}
                Some(joined) = sup.connecting.join_next(), if !sup.connecting.is_empty() => {
                    if let Ok(Some(connected)) = joined {
                        sup.connected(connected);
                    }
                }
                finished = sup.workers.join_next(), if !sup.workers.is_empty() => {
                    if let Some(Ok(client)) = finished {
                        sup.clients.remove(&client);
                        sup.running.store(sup.clients.len(), Ordering::SeqCst);
                    }
                    // With an action limit, the run ends when the last client is done.
                    if sup.workers.is_empty() && sup.limit.actions_per_client.is_some() {
                        break;
                    }
                }
                _ = sleep_until(deadline) => break,
                Some(_) = gc_tasks.join_next(), if !gc_tasks.is_empty() => {}
                _ = halting.wait_halted() => break,
            }
        }
    }
    let ended_at = started.elapsed();
    sup.engine.request_stop();
    // Clients still waiting to connect: stop trying, and let a try in flight end.
    sup.stop_connecting().await;
    for spec in plan {
        // Reported, not only logged: a run that never saw its fault must
        // not read like one that survived it.
        let reason = format!(
            "the run ended at {:.1}s, before its time",
            ended_at.as_secs_f64()
        );
        sup.engine.faults().not_injected(&spec, spec.at, &reason);
    }
    let all_stopped = sup.stop_workers().await;
    while gc_tasks.join_next().await.is_some() {}
    while sup.fault_tasks.join_next().await.is_some() {}
    let faults_ended = match sup.faults.clone() {
        Some(faults) => match tokio::task::spawn_blocking(move || faults.end_all()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::error!(%error, "a fault could not be ended; the restores left to the end wait for the next run");
                false
            }
            Err(error) => {
                tracing::error!(%error, "ending the faults crashed");
                false
            }
        },
        None => true,
    };
    if let Some(reason) = sup.engine.halted() {
        // snapstorm's own side failed: checks made now could not be traced,
        // and no verdict is drawn from a run stopped half-way.
        tracing::error!(
            "the run stopped ({reason}): the final checks are skipped; the next run with this state dir makes them"
        );
    } else if all_stopped {
        sup.final_checks(faults_ended).await;
    } else {
        // A check racing an action still running could report what that
        // action is about to record as lost: no verdict rather than a false one.
        tracing::error!(
            "actions still running after {SHUTDOWN_GRACE:?}: the final checks are skipped; the next run with this state dir makes them"
        );
    }
    sup.disconnect_all().await;
    if let Err(error) = sup.engine.store().finish_run() {
        tracing::error!(%error, "cannot record the end of the run");
    }
    let report = sup.engine.report();
    parts.on_finish.await;
    let _ = sup.events.send(Event::Finished(Box::new(report.clone())));
    report
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn handle(&mut self, command: Command, gc_tasks: &mut JoinSet<()>) {
        match command {
            Command::AddClient => self.add_client(),
            Command::RemoveClient(client) => {
                tracing::info!("{client} is removed after its current action.");
                if let Some(slot) = self.clients.get(&client) {
                    slot.control.send_modify(|c| c.stop = true);
                }
            }
            Command::Gc(options) => {
                let engine = self.engine.clone();
                let events = self.events.clone();
                tracing::info!(
                    "GC started{}.",
                    if options.aggressive {
                        " (aggressive: unused data deleted at once)"
                    } else {
                        ""
                    }
                );
                self.emit(Event::GcStarted);
                gc_tasks.spawn(async move {
                    let result = tokio::task::spawn_blocking(move || engine.gc(&options)).await;
                    let result = match result {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match &result {
                        Ok(()) => tracing::info!("GC finished."),
                        Err(error) => tracing::warn!("GC failed: {error}."),
                    }
                    let _ = events.send(Event::GcFinished(result));
                });
            }
            Command::TogglePauseAll => {
                self.run_control.send_modify(|c| c.paused = !c.paused);
                let paused = self.run_control.borrow().paused;
                if paused {
                    tracing::info!(
                        "All clients paused: actions in flight finish, no new ones start."
                    );
                } else {
                    tracing::info!("All clients resumed.");
                }
                self.emit(Event::PausedAll(paused));
            }
            Command::TogglePauseClient(client) => {
                if let Some(slot) = self.clients.get(&client) {
                    slot.control.send_modify(|c| c.paused = !c.paused);
                    let paused = slot.control.borrow().paused;
                    self.emit(Event::ClientPaused(client, paused));
                }
            }
            Command::Enqueue(client, action) => {
                if let Some(slot) = self.clients.get(&client) {
                    let _ = slot.queue.send(action);
                }
            }
            Command::InjectFault(spec) => self.inject(spec),
            Command::Shutdown => {}
        }
    }

    /// Injects a fault on a blocking thread; its consequences come as events.
    fn inject(&mut self, spec: FaultSpec) {
        // Its place on the recorded schedule, handed on once it starts (or fails to).
        let place = self.gate.clone().zip(spec.after);
        let Some(injector) = self.faults.clone() else {
            if let Some((gate, order)) = &place {
                gate.give_up([*order]);
            }
            let error = "this backend cannot inject faults";
            self.engine.faults().not_injected(
                &spec,
                self.engine.faults().clock_started().elapsed(),
                error,
            );
            self.emit(Event::FaultFailed {
                kind: spec.kind,
                error: error.into(),
            });
            return;
        };
        let clients: Vec<ClientId> = self.clients.keys().copied().collect();
        let events = self.events.clone();
        let engine = self.engine.clone();
        let queues: BTreeMap<ClientId, mpsc::UnboundedSender<Action>> = self
            .clients
            .iter()
            .map(|(id, slot)| (*id, slot.queue.clone()))
            .collect();
        self.fault_tasks.spawn(async move {
            let kind = spec.kind;
            let asked_at = engine.faults().clock_started().elapsed();
            let watched = Arc::new(WatchedHost::new(
                engine.clone(),
                spec.clone(),
                place.clone(),
            ));
            // A data fault with nothing to damage yet waits for its first
            // victim, until the run ends.
            let result = loop {
                let host: Arc<dyn FaultHost> = watched.clone();
                let (attempt, clients, injector) = (spec.clone(), clients.clone(), injector.clone());
                let result =
                    tokio::task::spawn_blocking(move || injector.inject(&attempt, &clients, &host))
                        .await;
                match result {
                    Ok(Err(InjectError::NoVictimYet(why))) if !engine.is_stopping() => {
                        if !watched.waited() {
                            tracing::info!(target: "snapstorm::faults", "{spec}: {why}; it waits for its first victim");
                        }
                        tokio::time::sleep(VICTIM_POLL).await;
                    }
                    Ok(Err(InjectError::NoVictimYet(why))) => {
                        break Ok(Err(InjectError::NoVictimYet(format!(
                            "the run ended first: {why}"
                        ))));
                    }
                    other => break other,
                }
            };
            if let Some((gate, order)) = &place {
                gate.give_up([*order]);
            }
            // Damage it did not report by now is damage nobody can name.
            if let Some(label) = watched.started() {
                engine.faults().settle(&label);
            }
            let error = match result {
                Ok(Ok(injected)) => {
                    for (client, action) in &injected.enqueue {
                        if let Some(queue) = queues.get(client) {
                            let _ = queue.send(*action);
                        }
                    }
                    let _ = events.send(Event::FaultInjected(injected));
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(error) => format!("injecting it crashed: {error}"),
            };
            match watched.started() {
                // It took effect, then its own action failed part-way.
                Some(label) => {
                    tracing::warn!("{label} took effect, then failed: {error}.");
                    engine.fault_failed(&label);
                }
                None => engine.faults().not_injected(&spec, asked_at, &error),
            }
            let _ = events.send(Event::FaultFailed { kind, error });
        });
    }

    /// After the last action and after every fault ended: the restores that
    /// had ended in errors once more, a full repository check if a fault
    /// damaged data (so no injected damage goes unreported), then the
    /// listing compared with the metadata.
    async fn final_checks(&mut self, faults_ended: bool) {
        let engine = self.engine.clone();
        let checker = ClientId(self.next_client.saturating_sub(1).max(1));
        let result = tokio::task::spawn_blocking(move || {
            let mut records = if faults_ended {
                engine.retry_unsettled_restores()
            } else {
                Vec::new()
            };
            if engine.faults().damaged_data() {
                records.push(engine.final_verify_repo(checker));
            }
            (records, engine.final_check())
        })
        .await;
        match result {
            Ok((records, listing)) => {
                for record in records {
                    self.emit(Event::ActionFinished(Box::new(record)));
                }
                match listing {
                    Ok(failures) if failures.is_empty() => {}
                    Ok(failures) => self.emit(Event::Failures(failures)),
                    Err(error) => tracing::warn!("The final listing check failed: {error}."),
                }
            }
            Err(error) => tracing::error!("The final checks crashed: {error}."),
        }
    }

    /// Starts connecting a new client on its own task: commands and events
    /// go on meanwhile, and other clients connect at the same time.
    fn add_client(&mut self) {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.engine.register_client(client);
        self.try_connect(client, 1, Duration::ZERO);
    }

    fn try_connect(&mut self, client: ClientId, attempt: u32, wait: Duration) {
        let snapshotter = self.snapshotter.clone();
        let events = self.events.clone();
        let mut stop = self.stop_connects.subscribe();
        let slots = self.connect_slots.clone();
        self.connecting.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => return None,
            }
            // Said before it queues for a slot: the console counts every
            // client on its way in, not only those connecting this moment.
            let _ = events.send(Event::ClientConnecting { client, attempt });
            let slot = tokio::select! {
                slot = slots.acquire_owned() => slot.ok()?,
                _ = stop.wait_for(|stop| *stop) => return None,
            };
            if *stop.borrow() {
                return None;
            }
            let result = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                snapshotter.connect_client(client)
            })
            .await;
            let result = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(format!("connecting crashed: {error}")),
            };
            Some(Connected {
                client,
                attempt,
                result,
            })
        });
    }

    /// Whether every client has connected or failed at least once.
    fn first_tries_done(&self) -> bool {
        self.tried_once >= self.next_client.saturating_sub(1)
    }

    /// A connection attempt ended: the client starts running, or tries again later.
    fn connected(&mut self, connected: Connected) {
        let Connected {
            client,
            attempt,
            result,
        } = connected;
        if attempt == 1 {
            self.tried_once += 1;
        }
        if let Err(error) = result {
            if let Some(gate) = &self.gate {
                // A recorded schedule cannot wait for a client that may
                // never connect: nobody waits for its places, and it stays out.
                gate.give_up(script_places(&self.engine, client, 0));
                tracing::warn!(
                    "{client} could not connect: {}.",
                    crate::engine::brief::brief(&error)
                );
                self.emit(Event::ClientError(
                    client,
                    format!("cannot connect: {error}"),
                ));
                return;
            }
            let wait = connect_backoff(attempt);
            tracing::warn!(
                "{client} could not connect (try {attempt}): {}; it tries again in {}s.",
                crate::engine::brief::brief(&error),
                wait.as_secs()
            );
            self.emit(Event::ClientError(
                client,
                format!(
                    "cannot connect (try {attempt}): {error}; trying again in {}s",
                    wait.as_secs()
                ),
            ));
            self.try_connect(client, attempt + 1, wait);
            return;
        }
        let (control_tx, control_rx) = watch::channel(ClientControl::default());
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        self.clients.insert(
            client,
            ClientSlot {
                control: control_tx,
                queue: queue_tx,
            },
        );
        self.running.store(self.clients.len(), Ordering::SeqCst);
        let worker = Worker {
            client,
            engine: self.engine.clone(),
            snapshotter: self.snapshotter.clone(),
            control: control_rx,
            run_control: self.run_control.subscribe(),
            queue: queue_rx,
            events: self.events.clone(),
            actions_limit: self.limit.actions_per_client,
            in_flight: self.in_flight.clone(),
            gate: self.gate.clone(),
        };
        self.workers.spawn(worker.run());
        if attempt > 1 {
            tracing::info!("{client} connected after {attempt} tries.");
        } else {
            tracing::info!("{client} connected.");
        }
        self.emit(Event::ClientAdded(client));
    }

    /// Stops the retries; waits for connections in flight (bounded by the
    /// client's timeouts) so none lands after the clients are disconnected.
    async fn stop_connecting(&mut self) {
        self.stop_connects.send_replace(true);
        while let Some(joined) = self.connecting.join_next().await {
            if let Ok(Some(Connected {
                client,
                result: Ok(()),
                ..
            })) = joined
            {
                // Connected too late to run: it is disconnected with the others.
                tracing::info!("{client} connected as the run ended; it takes no action.");
            }
        }
    }

    /// Stops every worker after its current action and waits for them (up
    /// to the grace period); false when some were still running then.
    async fn stop_workers(&mut self) -> bool {
        self.run_control.send_modify(|c| c.stop = true);
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        self.emit(Event::Stopping {
            in_flight,
            grace: SHUTDOWN_GRACE,
        });
        let all_done = async { while self.workers.join_next().await.is_some() {} };
        let stopped = tokio::time::timeout(SHUTDOWN_GRACE, all_done).await.is_ok();
        if !stopped {
            tracing::warn!("actions still running after {SHUTDOWN_GRACE:?}; stopping without them");
            self.workers.abort_all();
        }
        self.clients.clear();
        self.running.store(0, Ordering::SeqCst);
        stopped
    }

    /// Disconnects and revokes every client still connected.
    async fn disconnect_all(&mut self) {
        let remaining: Vec<ClientId> = self.snapshotter.connected_clients();
        for client in remaining {
            let snapshotter = self.snapshotter.clone();
            let _ = tokio::task::spawn_blocking(move || snapshotter.remove_client(client)).await;
        }
    }
}

/// The engine as a fault's host, noting whether the fault took effect
/// (`fault_starts`) before an error: a fault that failed before it started
/// is reported as not injected, one that failed after as a fault whose
/// action failed.
struct WatchedHost {
    engine: Arc<Engine>,
    label: std::sync::Mutex<Option<String>>,
    /// What was asked, for the trace.
    spec: FaultSpec,
    /// It waited for something to damage: named by the time it was asked for.
    waited: std::sync::atomic::AtomicBool,
    /// Its place on the recorded schedule: the next may start once it did.
    place: Option<(Arc<Gate>, u64)>,
}

impl WatchedHost {
    fn new(engine: Arc<Engine>, spec: FaultSpec, place: Option<(Arc<Gate>, u64)>) -> Self {
        WatchedHost {
            engine,
            label: std::sync::Mutex::new(None),
            spec,
            waited: std::sync::atomic::AtomicBool::new(false),
            place,
        }
    }

    fn started(&self) -> Option<String> {
        self.label.lock().expect("label lock").clone()
    }

    /// Notes that it has to wait; returns whether it had waited before.
    fn waited(&self) -> bool {
        self.waited.swap(true, Ordering::SeqCst)
    }
}

impl FaultHost for WatchedHost {
    fn fault_starts(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        let asked = self.waited.load(Ordering::SeqCst).then_some(self.spec.at);
        let label =
            self.engine
                .fault_starts_as(Some(&self.spec), asked, kind, target, client, duration);
        *self.label.lock().expect("label lock") = Some(label.clone());
        if let Some((gate, order)) = &self.place {
            gate.started(*order);
        }
        label
    }

    fn fault_ends(&self, label: &str) {
        self.engine.fault_ends(label);
    }

    fn fault_failed(&self, label: &str) {
        self.engine.fault_failed(label);
    }

    fn fault_damaged(&self, label: &str, damage: Option<Damage>) {
        self.engine.fault_damaged(label, damage);
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        self.engine.run_gc(options)
    }
}

struct Worker {
    client: ClientId,
    engine: Arc<Engine>,
    snapshotter: Arc<MultiClientSnapshotter>,
    control: watch::Receiver<ClientControl>,
    run_control: watch::Receiver<RunControl>,
    queue: mpsc::UnboundedReceiver<Action>,
    events: mpsc::UnboundedSender<Event>,
    actions_limit: Option<u64>,
    in_flight: Arc<AtomicUsize>,
    gate: Option<Arc<Gate>>,
}

/// The places on the recorded schedule of `client`'s fixed sequence, from step `from` on.
fn script_places(engine: &Engine, client: ClientId, from: usize) -> Vec<u64> {
    engine
        .config()
        .scenario
        .clients
        .get(client.0 as usize - 1)
        .map(|script| {
            script
                .steps
                .iter()
                .skip(from)
                .filter_map(|s| s.order)
                .collect()
        })
        .unwrap_or_default()
}

/// What a worker does next.
enum Next {
    Queued(Action),
    Planned,
    Stop,
}

impl Worker {
    async fn run(mut self) -> ClientId {
        let client = self.client;
        // No slot when the run stops first: nothing to verify then.
        if let Some(slot) = self.slot().await {
            let engine = self.engine.clone();
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let records = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                engine.verify_inherited(client)
            })
            .await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            for record in records.unwrap_or_default() {
                let _ = self.events.send(Event::ActionFinished(Box::new(record)));
            }
        }
        let mut planned_done = 0u64;
        // A scenario of fixed per-client sequences: this client's, run once.
        let scenario = &self.engine.config().scenario;
        let scripted = !scenario.clients.is_empty();
        let script = scenario.clients.get(client.0 as usize - 1).cloned();
        if scripted {
            self.actions_limit = Some(script.as_ref().map_or(0, |s| s.steps.len() as u64));
        }
        loop {
            let next = self.next(planned_done).await;
            let (action, queued) = match next {
                Next::Stop => break,
                Next::Queued(action) => (Some(action), true),
                Next::Planned => (None, false),
            };
            let step = match (&script, queued) {
                (Some(script), false) => {
                    Some((script.clone(), script.steps[planned_done as usize]))
                }
                _ => None,
            };
            // Its turn first, then a slot: a client holding a slot while it
            // waits for its turn could keep the one whose turn it is out.
            if let (Some(gate), Some((_, step))) = (self.gate.clone(), &step)
                && let Some(order) = step.order
            {
                tokio::select! {
                    _ = gate.wait_turn(order) => {}
                    _ = self.stopped() => break,
                }
            }
            let Some(slot) = self.slot().await else {
                break;
            };
            if !queued && self.paused() {
                // Paused while it queued for the slot: the planned action waits.
                continue;
            }
            let engine = self.engine.clone();
            let action = match (action, &step) {
                (Some(action), _) => action,
                (None, Some((_, step))) => step.action,
                (None, None) => engine.next_planned_action(client),
            };
            let _ = self.events.send(Event::ActionStarted {
                client,
                action,
                at: Instant::now(),
            });
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let gate = self.gate.clone();
            let result = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                match step {
                    Some((script, step)) => {
                        if let (Some(gate), Some(order)) = (gate, step.order) {
                            gate.started(order);
                        }
                        engine.exec_step(client, &script, &step)
                    }
                    None => engine.exec_action(client, action, &ActionParams::default()),
                }
            })
            .await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(record) => {
                    let _ = self.events.send(Event::ActionFinished(Box::new(record)));
                }
                Err(error) => {
                    let _ = self.events.send(Event::ClientError(
                        client,
                        format!("action crashed: {error}"),
                    ));
                }
            }
            if !queued {
                planned_done += 1;
            }
        }
        if let Some(gate) = &self.gate {
            gate.give_up(script_places(&self.engine, client, planned_done as usize));
        }
        let removed = self.control.borrow().stop;
        if removed {
            let snapshotter = self.snapshotter.clone();
            let result =
                tokio::task::spawn_blocking(move || snapshotter.remove_client(client)).await;
            if let Ok(Err(error)) = result {
                tracing::warn!(%client, %error, "removing the client failed");
            }
            tracing::info!(%client, "client removed and revoked");
            let _ = self.events.send(Event::ClientRemoved(client));
        }
        client
    }

    fn stopping(&self) -> bool {
        self.control.borrow().stop || self.run_control.borrow().stop
    }

    /// Resolves once this worker is to stop.
    async fn stopped(&mut self) {
        while !self.stopping() && self.engine.halted().is_none() {
            tokio::select! {
                _ = self.control.changed() => {}
                _ = self.run_control.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }

    fn paused(&self) -> bool {
        self.control.borrow().paused || self.run_control.borrow().paused
    }

    /// Waits for one of the engine's action slots; `None` if the client or
    /// the run stops meanwhile, so a stop never waits for the queue.
    async fn slot(&mut self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = self.engine.action_slots().clone();
        let acquire = slots.acquire_owned();
        tokio::pin!(acquire);
        loop {
            if self.stopping() || self.engine.halted().is_some() {
                return None;
            }
            tokio::select! {
                slot = &mut acquire => return slot.ok(),
                changed = self.control.changed() => changed.ok()?,
                changed = self.run_control.changed() => changed.ok()?,
            }
        }
    }

    /// Waits until there is something to do: a queued action runs even
    /// while paused; a planned one only when not paused and within the limit.
    async fn next(&mut self, planned_done: u64) -> Next {
        loop {
            if self.stopping() || self.engine.halted().is_some() {
                return Next::Stop;
            }
            if let Ok(action) = self.queue.try_recv() {
                return Next::Queued(action);
            }
            let limit_reached = self
                .actions_limit
                .is_some_and(|limit| planned_done >= limit);
            if limit_reached {
                return Next::Stop;
            }
            if !self.paused() {
                return Next::Planned;
            }
            tokio::select! {
                _ = self.control.changed() => {}
                _ = self.run_control.changed() => {}
                queued = self.queue.recv() => if let Some(action) = queued {
                    return Next::Queued(action);
                },
            }
        }
    }
}
