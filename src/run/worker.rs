//! One client's worker: takes its turn on an action slot, runs the next
//! action (queued, scripted or planned), pauses and stops when told.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::api::Event;
use super::supervisor::{ClientControl, RunControl};
use crate::engine::actions::Action;
use crate::engine::exec::Engine;
use crate::engine::record::ActionParams;
use crate::engine::traits::ClientId;
use crate::multiclient::MultiClientSnapshotter;
use crate::run::schedule::Gate;

pub(super) struct Worker {
    pub(super) client: ClientId,
    pub(super) engine: Arc<Engine>,
    pub(super) snapshotter: Arc<MultiClientSnapshotter>,
    pub(super) control: watch::Receiver<ClientControl>,
    pub(super) run_control: watch::Receiver<RunControl>,
    pub(super) queue: mpsc::UnboundedReceiver<Queued>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) actions_limit: Option<u64>,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) gate: Option<Arc<Gate>>,
}

/// The places on the recorded schedule of `client`'s fixed sequence, from step `from` on.
pub(super) fn script_places(engine: &Engine, client: ClientId, from: usize) -> Vec<u64> {
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

/// An action a client runs before its next planned one, with what it was asked with.
pub(super) struct Queued {
    pub(super) action: Action,
    pub(super) params: ActionParams,
}

impl Queued {
    /// Asked for through the run's commands (the console's keys): part
    /// of the client's own stream, as a replay runs it.
    pub(super) fn asked(action: Action) -> Queued {
        Queued {
            action,
            params: ActionParams::default(),
        }
    }
}

/// How a wait for a scripted step's turn ended.
enum Turn {
    Go,
    /// A fault asked for this action meanwhile: it goes first.
    Asked(Queued),
    Stop,
}

/// What a worker does next.
pub(super) enum Next {
    Queued(Queued),
    Planned,
    Stop,
}

impl Worker {
    pub(super) async fn run(mut self) -> ClientId {
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
            // Its sequence once, or fewer steps when `--actions` says so.
            let steps = script.as_ref().map_or(0, |s| s.steps.len() as u64);
            self.actions_limit = Some(self.actions_limit.map_or(steps, |limit| limit.min(steps)));
        }
        loop {
            let next = self.next(planned_done).await;
            let mut queued_action = match next {
                Next::Stop => break,
                Next::Queued(asked) => Some(asked),
                Next::Planned => None,
            };
            let mut step = match (&script, queued_action.is_some()) {
                (Some(script), false) => {
                    Some((script.clone(), script.steps[planned_done as usize]))
                }
                _ => None,
            };
            // Its turn first, then a slot: a client holding a slot while it
            // waits for its turn could keep the one whose turn it is out.
            if let (Some(gate), Some((_, step_now))) = (self.gate.clone(), &step)
                && let Some(order) = step_now.order
            {
                match self.wait_turn(&gate, order).await {
                    Turn::Go => {}
                    Turn::Stop => break,
                    Turn::Asked(asked) => (queued_action, step) = (Some(asked), None),
                }
            }
            let queued = queued_action.is_some();
            let Some(slot) = self.slot().await else {
                break;
            };
            if !queued && self.paused() {
                // Paused while it queued for the slot: the planned action waits.
                continue;
            }
            let engine = self.engine.clone();
            let (action, params) = match (queued_action, &step) {
                (Some(asked), _) => (asked.action, asked.params),
                (None, Some((_, step))) => (step.action, ActionParams::default()),
                (None, None) => (engine.next_planned_action(client), ActionParams::default()),
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
                    Some((script, step)) => engine.exec_step(client, &script, &step, || {
                        if let (Some(gate), Some(order)) = (gate, step.order) {
                            gate.started(order);
                        }
                    }),
                    None => engine.exec_action(client, action, &params),
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

    pub(super) fn stopping(&self) -> bool {
        self.control.borrow().stop || self.run_control.borrow().stop
    }

    pub(super) fn paused(&self) -> bool {
        self.control.borrow().paused || self.run_control.borrow().paused
    }

    /// Waits for the run's clock, then for one of the engine's action
    /// slots; `None` if the client or the run stops meanwhile, so a stop
    /// never waits for the queue.
    pub(super) async fn slot(&mut self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = self.engine.action_slots().clone();
        let acquire = slots.acquire_owned();
        tokio::pin!(acquire);
        loop {
            if self.stopping() || self.engine.halted().is_some() {
                return None;
            }
            if !self.run_control.borrow().started {
                tokio::select! {
                    changed = self.control.changed() => changed.ok()?,
                    changed = self.run_control.changed() => changed.ok()?,
                }
                continue;
            }
            tokio::select! {
                slot = &mut acquire => return slot.ok(),
                changed = self.control.changed() => changed.ok()?,
                changed = self.run_control.changed() => changed.ok()?,
            }
        }
    }

    /// Waits for the turn of the scripted step at `order`. An action a
    /// fault asks for meanwhile goes first, as in the recording, where it
    /// came right after the action in hand: a replayed `pause-client`
    /// whose write and snapshot waited for the client's next own turn
    /// froze a backup seconds after the prune it had to race.
    async fn wait_turn(&mut self, gate: &Gate, order: u64) -> Turn {
        let turn = gate.wait_turn(order);
        tokio::pin!(turn);
        let mut queue_open = true;
        loop {
            if self.stopping() || self.engine.halted().is_some() {
                return Turn::Stop;
            }
            tokio::select! {
                _ = &mut turn => return Turn::Go,
                asked = self.queue.recv(), if queue_open => match asked {
                    Some(asked) => return Turn::Asked(asked),
                    None => queue_open = false,
                },
                _ = self.control.changed() => {}
                _ = self.run_control.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }

    /// Waits until there is something to do: a queued action runs even
    /// while paused; a planned one only when not paused and within the limit.
    pub(super) async fn next(&mut self, planned_done: u64) -> Next {
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
                if self.run_control.borrow().faults_to_ask == 0 {
                    return Next::Stop;
                }
                // Its own sequence is done; a planned fault may still ask it.
                tokio::select! {
                    changed = self.run_control.changed() => if changed.is_err() {
                        return Next::Stop;
                    },
                    changed = self.control.changed() => if changed.is_err() {
                        return Next::Stop;
                    },
                    queued = self.queue.recv() => match queued {
                        Some(action) => return Next::Queued(action),
                        None => return Next::Stop,
                    },
                }
                continue;
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
