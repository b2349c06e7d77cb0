//! A running robustness run: the Server, the engine and one worker task per
//! client, driven by commands and observed through events. The console, the
//! headless runner and the tests all drive a run through this one type.
//!
//! Workers are tokio tasks; each action runs on a blocking thread (backend
//! clients are blocking), so a slow backend never stalls the commands or
//! the events. Actions take turns on the engine's slots (two per core), so
//! the work in progress does not grow with the number of clients. Pausing stops new actions from starting; the action in
//! flight always finishes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::api::{Command, Event, RunLimit, RunParts, SHUTDOWN_GRACE};
use super::clients::Connected;
use super::worker::Queued;
use crate::engine::exec::Engine;
use crate::engine::report::Report;
use crate::engine::scenario::{PlannedGc, Scenario};
use crate::engine::store::now_rfc3339;
use crate::engine::trace::RunStartLine;
use crate::engine::traits::{BackendError, ClientId, FaultInjector, GcOptions};
use crate::faults::FaultSpec;
use crate::multiclient::MultiClientSnapshotter;
use crate::run::schedule::Gate;

/// Per-client control, seen by its worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ClientControl {
    pub(super) paused: bool,
    pub(super) stop: bool,
}

/// Run-wide control, seen by every worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RunControl {
    pub(super) paused: bool,
    pub(super) stop: bool,
    /// The run's clock has started: no action starts before it, so every
    /// action's `at_ms` counts from the same moment as the faults' times
    /// (a client that connected first waits for the others' first tries).
    pub(super) started: bool,
    /// A scripted run's planned faults that ask clients for actions and
    /// have not asked yet: a client whose own sequence is done stays for
    /// them (a replay's `kill-client` asks a client whose last own action
    /// may end before the fault starts, as it did in the recording).
    pub(super) faults_to_ask: usize,
}

pub(super) struct ClientSlot {
    pub(super) control: watch::Sender<ClientControl>,
    pub(super) queue: mpsc::UnboundedSender<Queued>,
}

pub(super) struct Supervisor {
    pub(super) engine: Arc<Engine>,
    pub(super) snapshotter: Arc<MultiClientSnapshotter>,
    pub(super) limit: RunLimit,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) run_control: watch::Sender<RunControl>,
    pub(super) clients: BTreeMap<ClientId, ClientSlot>,
    pub(super) workers: JoinSet<ClientId>,
    pub(super) next_client: u32,
    /// Clients being connected (or waiting to retry), each on its own task.
    pub(super) connecting: JoinSet<Option<Connected>>,
    /// Clients that have connected or failed their first try.
    pub(super) tried_once: u32,
    /// Set when the run ends: clients waiting to retry stop waiting.
    pub(super) stop_connects: watch::Sender<bool>,
    /// Connections in progress at once, as many as action slots: opening a
    /// repository derives its key (scrypt: CPU and tens of MiB each), so 64
    /// at once would only share the cores and add up their memory.
    pub(super) connect_slots: Arc<tokio::sync::Semaphore>,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) faults: Option<Arc<dyn FaultInjector>>,
    pub(super) fault_tasks: JoinSet<()>,
    /// GCs asked for with the console's key, each on its own task.
    pub(super) gc_tasks: JoinSet<()>,
    /// How many clients take actions now, for the counts feed.
    pub(super) running: Arc<AtomicUsize>,
    /// Paces fixed per-client sequences on the recorded schedule.
    pub(super) gate: Option<Arc<Gate>>,
}

/// When the next planned fault is due: at a time, or at its turn on the
/// recorded schedule.
pub(super) enum Due {
    At(tokio::time::Instant),
    Turn(Arc<Gate>, u64),
}

pub(super) async fn wait_due(due: Option<Due>) {
    match due {
        Some(Due::At(at)) => tokio::time::sleep_until(at).await,
        Some(Due::Turn(gate, order)) => gate.wait_turn(order).await,
        None => std::future::pending().await,
    }
}

/// The run, phase by phase: set up, connect the first clients, run until
/// a limit or a stop, wind down (workers, GCs, faults), conclude (the final
/// checks, the report).
pub(super) async fn supervise(
    parts: RunParts,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    running: Arc<AtomicUsize>,
) -> Report {
    let scenario = parts.engine.config().scenario.clone();
    // A scenario of fixed per-client sequences runs each once, one client each.
    let scripted = !scenario.clients.is_empty();
    let gate = recorded_gate(&scenario, &parts.fault_plan);
    let initial_clients = if scripted {
        scenario.clients.len() as u32
    } else {
        parts.initial_clients
    };
    let mut plan = parts.fault_plan;
    match &gate {
        Some(_) => plan.sort_by_key(|spec| spec.after),
        None => plan.sort_by_key(|spec| spec.at),
    }
    let connect_slots = parts.engine.slot_count();
    let mut sup = Supervisor {
        engine: parts.engine,
        snapshotter: parts.snapshotter,
        limit: parts.limit,
        events,
        run_control: watch::channel(RunControl::default()).0,
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
        gc_tasks: JoinSet::new(),
        running,
        gate,
    };
    sup.record_start(&scenario, &plan, initial_clients);
    let shut_down = sup.connect_first(initial_clients, &mut commands).await;
    let started = tokio::time::Instant::now();
    sup.engine.start_clock(started.into_std());
    // Both at once: a worker that started before the count was set could
    // end its sequence and leave before a fault asked it for actions.
    let asking = match scripted {
        true => plan.iter().filter(|s| s.kind.asks_for_actions()).count(),
        false => 0,
    };
    sup.run_control.send_modify(|c| {
        c.faults_to_ask = asking;
        c.started = true;
    });
    let mut plan = VecDeque::from(plan);
    let mut gcs = planned_gcs(&scenario, sup.gate.is_some());
    if !shut_down {
        sup.run_until_done(&mut commands, &mut plan, &mut gcs, started, scripted)
            .await;
    }
    let (all_stopped, faults_ended) = sup.wind_down(plan, started.elapsed()).await;
    let report = sup.conclude(all_stopped, faults_ended).await;
    parts.on_finish.await;
    let _ = sup.events.send(Event::Finished(Box::new(report.clone())));
    report
}

/// The scenario's GCs in the order they come: by place on the recorded
/// schedule, by time on the free one.
fn planned_gcs(scenario: &Scenario, by_place: bool) -> VecDeque<PlannedGc> {
    let mut gcs = scenario.gcs.clone();
    match by_place {
        true => gcs.sort_by_key(|gc| gc.after),
        false => gcs.sort_by_key(|gc| gc.at),
    }
    VecDeque::from(gcs)
}

/// When something planned is due: at its turn on the recorded schedule
/// (`gate`), else at its time.
fn due(gate: &Option<Arc<Gate>>, after: Option<u64>, at: tokio::time::Instant) -> Due {
    match (gate, after) {
        (Some(gate), Some(order)) => Due::Turn(gate.clone(), order),
        _ => Due::At(at),
    }
}

/// For fixed per-client sequences on the recorded schedule: the gate that
/// lets each action and fault start in its recorded place (and, keeping
/// the gaps, no sooner after the start before it than recorded: a step's
/// `at-ms`, a fault's `at`).
fn recorded_gate(scenario: &Scenario, plan: &[FaultSpec]) -> Option<Arc<Gate>> {
    let paced = !scenario.clients.is_empty() && scenario.schedule.keeps_order();
    paced.then(|| {
        let mut recorded_at: BTreeMap<u64, u64> = BTreeMap::new();
        if scenario.schedule.keeps_gaps() {
            let steps = scenario.clients.iter().flat_map(|c| &c.steps);
            recorded_at.extend(steps.filter_map(|s| Some((s.order?, s.at_ms?))));
            let ms = |at: Duration| u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
            recorded_at.extend(plan.iter().filter_map(|f| Some((f.after?, ms(f.at)))));
            recorded_at.extend(
                scenario
                    .gcs
                    .iter()
                    .filter_map(|g| Some((g.after?, ms(g.at)))),
            );
        }
        let gate = Gate::with_gaps(recorded_at);
        let places: std::collections::BTreeSet<u64> = scenario
            .clients
            .iter()
            .flat_map(|c| c.steps.iter().filter_map(|s| s.order))
            .chain(plan.iter().filter_map(|f| f.after))
            .chain(scenario.gcs.iter().filter_map(|g| g.after))
            .collect();
        // Numbers nobody holds are no one's turn.
        let last = places.last().copied().unwrap_or(0);
        gate.give_up((0..last).filter(|n| !places.contains(n)));
        Arc::new(gate)
    })
}

impl Supervisor {
    /// The trace's first line of the run: everything a replay needs.
    fn record_start(&self, scenario: &Scenario, plan: &[FaultSpec], initial_clients: u32) {
        self.engine.trace_event(&RunStartLine {
            time: now_rfc3339(),
            run: self.engine.store().run_number(),
            start: true,
            seed: self.engine.config().seed,
            scenario: scenario.name.clone(),
            scenario_toml: scenario.to_toml(),
            clients: initial_clients,
            duration_ms: self
                .limit
                .duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            actions_per_client: self.limit.actions_per_client,
            faults: plan.iter().map(ToString::to_string).collect(),
        });
    }

    /// Connects the first clients side by side, not one after another;
    /// returns once each has connected or failed its first try. Returns
    /// whether the run was asked to stop meanwhile (it then ends at once).
    async fn connect_first(
        &mut self,
        clients: u32,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        for _ in 0..clients {
            self.add_client();
        }
        while !self.connecting.is_empty() {
            tokio::select! {
                Some(joined) = self.connecting.join_next() => {
                    if let Ok(Some(connected)) = joined {
                        self.connected(connected);
                    }
                    if self.first_tries_done() {
                        break;
                    }
                }
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        self.stop_connecting().await;
                        return true;
                    }
                    Some(command) => self.handle(command).await,
                },
            }
        }
        false
    }

    /// A GC outside every client's stream (the console's `g`, a replayed
    /// one), traced with its place; the run goes on while it runs.
    fn start_gc(&mut self, options: GcOptions, place: Option<(Arc<Gate>, u64)>) {
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
        self.gc_tasks.spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                engine.gc_asked(&options, || {
                    if let Some((gate, order)) = place {
                        gate.started(order);
                    }
                })
            })
            .await;
            let result = match result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(crashed) => Err(BackendError::Panicked(crashed.to_string())),
            };
            match &result {
                Ok(()) => tracing::info!("GC finished."),
                Err(error) => tracing::warn!("GC failed: {error}."),
            }
            let _ = events.send(Event::GcFinished(result));
        });
    }

    /// The run proper: commands, planned faults, clients that finish,
    /// until its duration is up, its actions are done, it is asked to stop,
    /// or snapstorm's own side halts it. Faults not yet due stay in `plan`.
    async fn run_until_done(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        plan: &mut VecDeque<FaultSpec>,
        gcs: &mut VecDeque<PlannedGc>,
        started: tokio::time::Instant,
        scripted: bool,
    ) {
        let deadline = self.limit.duration.map(|d| started + d);
        let halting = self.engine.clone();
        loop {
            // A scenario of fixed sequences ends when every client has run
            // its own, and every fault and GC has started.
            let all_started = plan.is_empty() && gcs.is_empty();
            if scripted && self.workers.is_empty() && self.connecting.is_empty() && all_started {
                return;
            }
            let next_fault = plan
                .front()
                .map(|spec| due(&self.gate, spec.after, started + spec.at));
            let next_gc = gcs
                .front()
                .map(|gc| due(&self.gate, gc.after, started + gc.at));
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => return,
                    Some(command) => self.handle(command).await,
                },
                _ = wait_due(next_fault) => {
                    let spec = plan.pop_front().expect("a planned fault is due");
                    self.inject_planned(spec);
                }
                _ = wait_due(next_gc) => {
                    let gc = gcs.pop_front().expect("a planned GC is due");
                    let place = self.gate.clone().zip(gc.after);
                    let options = GcOptions {
                        aggressive: gc.aggressive,
                        ..GcOptions::default()
                    };
                    self.start_gc(options, place);
                }
                Some(_) = self.fault_tasks.join_next(), if !self.fault_tasks.is_empty() => {}
                Some(joined) = self.connecting.join_next(), if !self.connecting.is_empty() => {
                    if let Ok(Some(connected)) = joined {
                        self.connected(connected);
                    }
                }
                finished = self.workers.join_next(), if !self.workers.is_empty() => {
                    if let Some(Ok(client)) = finished {
                        self.clients.remove(&client);
                        self.running.store(self.clients.len(), Ordering::SeqCst);
                    }
                    // With an action limit, the run ends when the last client is done.
                    if self.workers.is_empty() && self.limit.actions_per_client.is_some() {
                        return;
                    }
                }
                _ = sleep_until(deadline) => return,
                Some(_) = self.gc_tasks.join_next(), if !self.gc_tasks.is_empty() => {}
                _ = halting.wait_halted() => return,
            }
        }
    }

    /// No new action starts; the ones in flight finish, GCs and fault
    /// injections end, every fault is ended. Returns whether every worker
    /// stopped within the grace and whether every fault could be ended.
    async fn wind_down(&mut self, plan: VecDeque<FaultSpec>, ended_at: Duration) -> (bool, bool) {
        self.engine.request_stop();
        // Clients still waiting to connect: stop trying, and let a try in flight end.
        self.stop_connecting().await;
        for spec in plan {
            // Reported, not only logged: a run that never saw its fault must
            // not read like one that survived it.
            let reason = format!(
                "the run ended at {:.1}s, before its time",
                ended_at.as_secs_f64()
            );
            self.engine.faults().not_injected(&spec, spec.at, &reason);
        }
        let all_stopped = self.stop_workers().await;
        while self.gc_tasks.join_next().await.is_some() {}
        while self.fault_tasks.join_next().await.is_some() {}
        let faults_ended = match self.faults.clone() {
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
        (all_stopped, faults_ended)
    }

    /// The final checks when a verdict can be drawn, the clients
    /// disconnected, the run recorded as ended; returns the report.
    async fn conclude(&mut self, all_stopped: bool, faults_ended: bool) -> Report {
        if let Some(reason) = self.engine.halted() {
            // snapstorm's own side failed: checks made now could not be traced,
            // and no verdict is drawn from a run stopped half-way.
            tracing::error!(
                "the run stopped ({reason}): the final checks are skipped; the next run with this state dir makes them"
            );
        } else if all_stopped {
            self.final_checks(faults_ended).await;
        } else {
            // A check racing an action still running could report what that
            // action is about to record as lost: no verdict rather than a false one.
            tracing::error!(
                "actions still running after {SHUTDOWN_GRACE:?}: the final checks are skipped; the next run with this state dir makes them"
            );
        }
        self.disconnect_all().await;
        if let Err(error) = self.engine.store().finish_run() {
            tracing::error!(%error, "cannot record the end of the run");
        }
        self.engine.report()
    }
}

pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    pub(super) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::AddClient => self.add_client(),
            Command::RemoveClient(client) => {
                tracing::info!("{client} is removed after its current action.");
                if let Some(slot) = self.clients.get(&client) {
                    slot.control.send_modify(|c| c.stop = true);
                }
            }
            Command::Gc(options) => self.start_gc(options, None),
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
                    let _ = slot.queue.send(Queued::asked(action));
                }
            }
            Command::InjectFault(spec) => self.inject(spec),
            Command::Shutdown => {}
        }
    }

    /// After the last action and after every fault ended: the restores that
    /// had ended in errors once more, a full repository check if a fault
    /// damaged data (so no injected damage goes unreported), then the
    /// listing compared with the metadata.
    pub(super) async fn final_checks(&mut self, faults_ended: bool) {
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
}
