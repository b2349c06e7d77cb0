//! Faults in a run: injected on a blocking thread (a data fault with nothing
//! to damage yet waits for its first victim), with the engine as their host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::api::Event;
use super::supervisor::{RunControl, Supervisor};
use super::worker::Queued;
use crate::engine::damage::Damage;
use crate::engine::exec::Engine;
use crate::engine::record::ActionParams;
use crate::engine::traits::{BackendResult, ClientId, FaultHost, GcDone, GcOptions, InjectError};
use crate::faults::{FaultKind, FaultSpec, VictimRole};
use crate::run::schedule::Gate;

/// How often a data fault waiting for its first victim looks again.
pub(super) const VICTIM_POLL: Duration = Duration::from_millis(500);

/// The engine as a fault's host, noting whether the fault took effect
/// (`fault_starts`) before an error: a fault that failed before it started
/// is reported as not injected, one that failed after as a fault whose
/// action failed.
pub(super) struct WatchedHost {
    pub(super) engine: Arc<Engine>,
    pub(super) label: std::sync::Mutex<Option<String>>,
    /// What was asked, for the trace.
    pub(super) spec: FaultSpec,
    /// It waited for something to damage: named by the time it was asked for.
    pub(super) waited: std::sync::atomic::AtomicBool,
    /// Its place on the recorded schedule: the next may start once it did.
    pub(super) place: Option<(Arc<Gate>, u64)>,
}

impl WatchedHost {
    pub(super) fn new(
        engine: Arc<Engine>,
        spec: FaultSpec,
        place: Option<(Arc<Gate>, u64)>,
    ) -> Self {
        WatchedHost {
            engine,
            label: std::sync::Mutex::new(None),
            spec,
            waited: std::sync::atomic::AtomicBool::new(false),
            place,
        }
    }

    pub(super) fn started(&self) -> Option<String> {
        self.label.lock().expect("label lock").clone()
    }

    /// Notes that it has to wait; returns whether it had waited before.
    pub(super) fn waited(&self) -> bool {
        self.waited.swap(true, Ordering::SeqCst)
    }

    /// The fault takes effect as `spec` (what was asked, with anything
    /// the injector found out that a replay needs).
    fn starts_as(
        &self,
        spec: &FaultSpec,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        let asked = self.waited.load(Ordering::SeqCst).then_some(self.spec.at);
        let label = self
            .engine
            .fault_starts_as(Some(spec), asked, kind, target, client, duration);
        *self.label.lock().expect("label lock") = Some(label.clone());
        if let Some((gate, order)) = &self.place {
            gate.started(*order);
        }
        label
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
        self.starts_as(&self.spec, kind, target, client, duration)
    }

    fn fault_starts_on(&self, kind: FaultKind, target: &str, victim: Option<VictimRole>) -> String {
        // The role it damaged, which can differ from the one asked for
        // (see the backend's injector), or none it can tell.
        let spec = FaultSpec {
            victim,
            ..self.spec.clone()
        };
        self.starts_as(&spec, kind, target, None, None)
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

    fn fault_pruned(&self, label: &str, done: &GcDone) {
        self.engine.fault_pruned(label, done);
    }

    fn start_together(&self, label: &str, clients: &[ClientId]) {
        self.engine.start_together(label, clients);
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        self.engine.run_gc(options)
    }

    fn acting(&self, client: ClientId) -> bool {
        self.engine.acting(client)
    }
}

/// A planned fault that has not yet asked clients for the actions it asks
/// for: once it has (or cannot), clients whose own sequences are done may
/// end ([`RunControl::faults_to_ask`]).
struct StillToAsk(watch::Sender<RunControl>);

impl Drop for StillToAsk {
    fn drop(&mut self) {
        self.0
            .send_modify(|c| c.faults_to_ask = c.faults_to_ask.saturating_sub(1));
    }
}

impl Supervisor {
    /// Injects a fault asked for now (the console's fault menu).
    pub(super) fn inject(&mut self, spec: FaultSpec) {
        self.inject_as(spec, false);
    }

    /// Injects a fault the run planned, whose actions, if it asks for
    /// any, a scripted run's clients stay for.
    pub(super) fn inject_planned(&mut self, spec: FaultSpec) {
        self.inject_as(spec, true);
    }

    /// Injects a fault on a blocking thread; its consequences come as events.
    fn inject_as(&mut self, spec: FaultSpec, planned: bool) {
        let mut to_ask =
            (planned && spec.kind.asks_for_actions()).then(|| StillToAsk(self.run_control.clone()));
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
        let queues: BTreeMap<ClientId, mpsc::UnboundedSender<Queued>> = self
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
                        // Waiting, it asks nothing yet: the clients need not stay.
                        to_ask.take();
                        if !watched.waited() {
                            tracing::info!(target: "snapstorm::faults", "{spec}: {why}; it waits for its victim");
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
                            let _ = queue.send(Queued {
                                action: *action,
                                params: ActionParams {
                                    asked_by: Some(injected.label.clone()),
                                    ..ActionParams::default()
                                },
                            });
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
}
