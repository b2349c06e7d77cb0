//! The engine's side of the verdict: what an incident could not read
//! (asked of the server only when damage could explain it), and the one
//! path every verification failure takes — judged, recorded durably,
//! counted once.

use std::time::Instant;

use super::actions::Found;
use super::attribution::{Attribution, Incident, IncidentKind};
use super::damage::Unreadable;
use super::exec::Engine;
use super::guard::catch_panic;
use super::store::Failure;
use super::traits::SnapshotId;

impl Engine {
    /// Judges a failure (unless its step already did), records it durably
    /// and counts it: the one path every verification failure takes.
    pub(super) fn record_failure(&self, found: Found, started: Instant) -> Failure {
        let Found {
            mut failure,
            attribution,
        } = found;
        let attribution = attribution.unwrap_or_else(|| {
            let kind = IncidentKind::Failure(failure.kind);
            let snapshots: Vec<SnapshotId> = failure.snapshot.iter().cloned().collect();
            self.faults.explain(&Incident {
                client: failure.client,
                origin: failure.action,
                kind,
                started,
                ended: Instant::now(),
                unreadable: self.unreadable_for(kind, &snapshots),
            })
        });
        apply(&mut failure, attribution);
        if let Err(error) = self.store().record_failure(failure.clone()) {
            tracing::error!(%error, "cannot record a verification failure");
        }
        self.stats
            .count_failure(failure.client, failure.explained_by.is_some());
        let expected = failure.explained_by.as_deref().unwrap_or("unexpected");
        tracing::error!(
            client = %failure.client, action = %failure.action,
            snapshot = failure.snapshot.as_deref().unwrap_or("-"),
            "verification failure ({expected}): {}", failure.summary
        );
        failure
    }
    /// What restoring `snapshots` needs that the repository cannot give
    /// back now — asked of the server only when damage was done that could
    /// explain an incident of `kind`; otherwise nothing needs naming.
    pub(super) fn unreadable_for(
        &self,
        kind: IncidentKind,
        snapshots: &[SnapshotId],
    ) -> Unreadable {
        if !kind.about_data() || !self.faults.damage_before(Instant::now()) {
            return Unreadable::Unknown;
        }
        catch_panic(|| self.server.unreadable(snapshots)).unwrap_or_else(|panic| {
            tracing::warn!("finding what a failure could not read panicked: {panic}");
            Unreadable::Unknown
        })
    }
}

/// Puts the verdict on a failure: who explains it, what it could not
/// read, and — for one no fault explains — why not, in its own words.
fn apply(failure: &mut Failure, attribution: Attribution) {
    failure.explained_by = attribution.explained_by;
    failure.unreadable = attribution.unreadable;
    if let Some(note) = attribution.note {
        failure.summary = format!("{}; {note}", failure.summary);
        failure.details = format!("{}\n\n{note}", failure.details);
    }
}
