//! Clients coming and going: each connects on its own task (tries again
//! with back-off when it cannot), then runs its worker; at the end the
//! workers are stopped and every client disconnected.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::api::{Event, SHUTDOWN_GRACE, connect_backoff};
use super::supervisor::{ClientControl, ClientSlot, Supervisor};
use super::worker::{Worker, script_places};
use crate::engine::traits::{BackendError, ClientId};

/// How one try to connect a client ended.
pub(super) struct Connected {
    pub(super) client: ClientId,
    pub(super) attempt: u32,
    pub(super) result: Result<(), BackendError>,
}

impl Supervisor {
    /// Starts connecting a new client on its own task: commands and events
    /// go on meanwhile, and other clients connect at the same time.
    pub(super) fn add_client(&mut self) {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.engine.register_client(client);
        self.try_connect(client, 1, Duration::ZERO);
    }
    pub(super) fn try_connect(&mut self, client: ClientId, attempt: u32, wait: Duration) {
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
                Ok(Err(error)) => Err(error),
                Err(crashed) => Err(BackendError::Panicked(format!(
                    "connecting crashed: {crashed}"
                ))),
            };
            Some(Connected {
                client,
                attempt,
                result,
            })
        });
    }
    /// Whether every client has connected or failed at least once.
    pub(super) fn first_tries_done(&self) -> bool {
        self.tried_once >= self.next_client.saturating_sub(1)
    }
    /// A connection attempt ended: the client starts running, or tries again later.
    pub(super) fn connected(&mut self, connected: Connected) {
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
                    crate::engine::brief::brief(&error.to_string())
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
                crate::engine::brief::brief(&error.to_string()),
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
    pub(super) async fn stop_connecting(&mut self) {
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
    pub(super) async fn stop_workers(&mut self) -> bool {
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
            // Before anything cuts them off: how they end is the run's doing.
            self.engine.abandon_in_flight();
            self.workers.abort_all();
        }
        self.clients.clear();
        self.running.store(0, Ordering::SeqCst);
        stopped
    }
    /// Disconnects and revokes every client still connected.
    pub(super) async fn disconnect_all(&mut self) {
        let remaining: Vec<ClientId> = self.snapshotter.connected_clients();
        for client in remaining {
            let snapshotter = self.snapshotter.clone();
            let _ = tokio::task::spawn_blocking(move || snapshotter.remove_client(client)).await;
        }
    }
}
