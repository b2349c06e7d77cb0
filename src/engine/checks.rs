//! The checks outside the stream of actions: inherited snapshots verified
//! at a client's start, the repository's listing compared with the
//! metadata, interrupted deletes settled, restores retried at the end.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::actions::Found;
use super::actions::{Action, Origin};
use super::checker::{CheckerError, RestoreAttempt};
use super::exec::Engine;
use super::record::{ActionParams, ActionRecord};
use super::stats::Outcome;
use super::store::{Failure, FailureKind};
use super::traits::{ClientId, SnapshotId};

impl Engine {
    /// Restores and verifies up to the configured number of this client's
    /// snapshots from earlier runs (most recent first).
    pub fn verify_inherited(&self, client: ClientId) -> Vec<ActionRecord> {
        self.inherited_to_check(client)
            .into_iter()
            .map(|id| {
                let params = ActionParams {
                    snapshot_id: Some(id),
                    ..ActionParams::default()
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
                    ..ActionParams::default()
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
}
