//! The engine as the host of injected faults: it records each fault's
//! start, end and damage for attribution, in the ledger, the trace and the
//! state dir.

use std::time::Duration;

use super::damage::Damage;
use super::exec::Engine;
use super::store::{DamageRecord, now_rfc3339};
use super::trace::{FaultLine, PruneLine, RacedAt};
use super::traits::{BackendResult, ClientId, FaultHost, GcDone, GcOptions};
use crate::faults::{FaultKind, FaultSpec, VictimRole};

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

    /// Not through the run, the fault has no spec for the trace to name
    /// the role in.
    fn fault_starts_on(
        &self,
        kind: FaultKind,
        target: &str,
        _victim: Option<VictimRole>,
    ) -> String {
        self.fault_starts(kind, target, None, None)
    }

    fn fault_ends(&self, label: &str) {
        self.faults.ended(label);
    }

    fn fault_failed(&self, label: &str) {
        self.faults.failed(label);
    }

    fn start_together(&self, label: &str, clients: &[ClientId]) {
        if !self.meetings.arrange(label, clients, self.slot_count) {
            // Nothing starts together: the forgets are any forgets.
            self.faults.ended(label);
        }
    }

    fn fault_damaged(&self, label: &str, damage: Option<Damage>) {
        if let Some(damage) = &damage
            && let Err(error) = self.store().set_damage(label, damage.clone())
        {
            tracing::error!(%error, "cannot record the damage a fault did");
        }
        self.faults.damaged(label, damage);
    }

    fn fault_pruned(&self, label: &str, done: &GcDone) {
        if done.listed.is_none() && done.raced.is_empty() {
            return;
        }
        let into_run = |at| self.faults.ms_into_run(at);
        self.trace_event(&PruneLine {
            time: now_rfc3339(),
            run: self.run,
            prune: label.to_owned(),
            listed_ms: done.listed.map(into_run),
            ended_ms: Some(into_run(std::time::Instant::now())),
            raced: done
                .raced
                .iter()
                .map(|upload| RacedAt {
                    client: upload.client,
                    at_ms: into_run(upload.stored),
                })
                .collect(),
        });
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        self.gc(options)
    }

    fn acting(&self, client: ClientId) -> bool {
        self.cursor_do(client, |c| c.acting > 0)
    }
}
