//! What the run reports, applied to the console's state: every count is
//! the engine's, kept as it comes; the console counts nothing itself.

use std::time::Instant;

use crate::engine::Action;
use crate::engine::stats::Counts;
use crate::run::Event;

use super::*;

/// What an action made or touched, in a few words (see [`StreamEntry::made`]).
pub(super) fn made_by(record: &crate::engine::record::ActionRecord) -> Option<String> {
    let snapshot = record
        .snapshot
        .as_deref()
        .map(|id| crate::engine::damage::short_id(id).to_owned());
    match record.action {
        // The snapshot it made, restored or deleted: its id says which.
        Action::SnapshotRoot | Action::RestoreRandomSnapshot | Action::DeleteRandomSnapshot => {
            snapshot
        }
        Action::WriteRandomFiles => {
            let files = record.details.get("files")?.as_u64()?;
            let bytes = record.details.get("bytes")?.as_u64()?;
            Some(format!(
                "{files} file{}, {}",
                if files == 1 { "" } else { "s" },
                crate::console::format::bytes(bytes)
            ))
        }
        _ => None,
    }
}

impl App {
    /// Takes the counts the engine publishes now.
    pub fn set_counts(&mut self, counts: Counts, running_clients: usize) {
        if counts.totals.unexpected_failures > 0 && !self.bell_rung {
            self.bell_rung = true;
            self.bell_due = self.bell;
        }
        self.counts = counts;
        self.running_clients = running_clients;
    }
    /// Moves the clock (time left of faults, how long actions have run).
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
    }
    /// Applies one event from the engine.
    pub fn apply_event(&mut self, event: Event) {
        match event {
            Event::ClientConnecting { client, attempt } => {
                if attempt == 1 {
                    self.pending_adds = self.pending_adds.saturating_sub(1);
                }
                let view = self
                    .clients
                    .entry(client)
                    .or_insert_with(|| ClientView::new(client));
                view.state = ClientState::Connecting;
                self.select_first(client);
            }
            Event::ClientAdded(id) => {
                let view = self
                    .clients
                    .entry(id)
                    .or_insert_with(|| ClientView::new(id));
                view.state = ClientState::Running;
                view.message = None;
                self.select_first(id);
            }
            Event::ClientError(id, message) => {
                let client = self
                    .clients
                    .entry(id)
                    .or_insert_with(|| ClientView::new(id));
                client.message = Some(message.clone());
                let acted = self.counts.client(id).is_some_and(|c| c.actions > 0);
                if client.state != ClientState::Connecting && client.running.is_none() && !acted {
                    client.state = ClientState::Broken;
                }
                self.selected.get_or_insert(id);
                self.notify(format!("{id}: {message}"));
            }
            Event::ClientRemoved(id) => {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.state = ClientState::Removed;
                    client.running = None;
                }
                if self.selected == Some(id) && !self.show_removed {
                    self.selected = self.nearest_visible(id);
                }
            }
            Event::ActionStarted { client, action, at } => {
                if let Some(view) = self.clients.get_mut(&client) {
                    view.running = Some((action, at));
                }
            }
            Event::ActionFinished(record) => {
                if let Some(stopping) = self.stopping.as_mut() {
                    stopping.in_flight = stopping.in_flight.saturating_sub(1);
                }
                self.failures.extend(record.failures.iter().cloned());
                let Some(view) = self.clients.get_mut(&record.client) else {
                    return;
                };
                view.running = None;
                let expected = record.explained_by.is_some();
                let made = made_by(&record);
                if view.stream.len() == STREAM_CAPACITY {
                    view.stream.pop_front();
                }
                view.stream.push_back(StreamEntry {
                    action: record.action,
                    outcome: record.outcome,
                    duration_ms: record.duration_ms,
                    note: match &record.explained_by {
                        Some(fault) => Some(format!(
                            "(expected: {fault}) {}",
                            record.message.as_deref().unwrap_or("")
                        )),
                        None => record.message.clone(),
                    },
                    made,
                    expected,
                });
            }
            Event::GcStarted => self.gc_running += 1,
            Event::GcFinished(result) => {
                self.gc_running = self.gc_running.saturating_sub(1);
                if let Err(error) = result {
                    self.notify(format!("GC failed: {error}"));
                }
            }
            Event::PausedAll(paused) => self.paused_all = paused,
            Event::ClientPaused(id, paused) => {
                if let Some(view) = self.clients.get_mut(&id) {
                    view.state = if paused {
                        ClientState::Paused
                    } else {
                        ClientState::Running
                    };
                }
            }
            Event::Stopping { in_flight, grace } => {
                self.stopping = Some(Stopping {
                    deadline: self.now + grace,
                    in_flight,
                });
            }
            Event::FaultInjected(injected) => {
                self.notify(format!(
                    "Injected {} into {}.",
                    injected.label, injected.target
                ));
                if let Some(duration) = injected.duration {
                    self.active_faults
                        .retain(|f| f.until + RESTARTING_FOR > self.now);
                    self.active_faults.push(ActiveFault {
                        label: injected.label.clone(),
                        kind: injected.kind,
                        until: self.now + duration,
                    });
                }
                self.faults.push(injected);
            }
            Event::FaultFailed { kind, error } => {
                self.notify(format!("{kind} was not injected: {error}"))
            }
            Event::Failures(failures) => self.failures.extend(failures),
            Event::Finished(_) => self.finished = true,
        }
    }
}
