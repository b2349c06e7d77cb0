//! `delete-random-snapID`: delete a live snapshot, never the last one.

use rand::seq::IndexedRandom;

use super::{Step, preferred};
use crate::engine::exec::Engine;
use crate::engine::record::ActionParams;
use crate::engine::traits::{ActionRng, ClientId};

impl Engine {
    pub(super) fn delete_random_snapshot(
        &self,
        client: ClientId,
        params: &ActionParams,
        rng: &mut ActionRng,
    ) -> Step {
        let live = self.store().live(client);
        if live.len() <= 1 {
            return Step::no_op(format!(
                "{} live snapshot(s): the last one is never deleted",
                live.len()
            ));
        }
        let id = match preferred(params, &live) {
            Some(id) => id,
            None => live.choose(rng).expect("more than one").id.clone(),
        };
        let mut step = match self
            .checker
            .delete_snapshot(self.snapshotter.as_ref(), client, &id)
        {
            Ok(()) => {
                let mut step = Step::ok();
                step.effects.snapshots_deleted = 1;
                step
            }
            Err(error) => Step::checker_error(error),
        };
        step.snapshot = Some(id);
        step
    }
}

impl Engine {
    /// `forget-snapshots`: every live snapshot of the client but its newest,
    /// chosen by the backend's forget policy. A `parallel-forget` fault has
    /// it go in turn with other clients' (it waits for its turn once its
    /// intent is recorded, so that the turn is the tool's work alone).
    pub(super) fn forget_snapshots(&self, client: ClientId) -> Step {
        let intended = self.checker.intend_to_forget(client);
        let waiting = std::time::Instant::now();
        let present = self.meetings.attend(client, || self.is_stopping());
        let waited = waiting.elapsed();
        let deleting = || {
            if let Some(present) = &present {
                present.deleting();
            }
        };
        let mut step = match intended {
            Ok(0) => Step::no_op("1 live snapshot or none: the newest is always kept"),
            Ok(_) => match self.checker.forget_all_but_newest(
                self.snapshotter.as_ref(),
                client,
                &deleting,
            ) {
                Ok(deleted) => {
                    let mut step = Step::ok();
                    step.effects.snapshots_deleted = deleted.len() as u64;
                    step.details
                        .insert("deleted".into(), serde_json::json!(deleted.len()));
                    step
                }
                Err(error) => Step::checker_error(error),
            },
            Err(error) => Step::checker_error(error),
        };
        if let Some(present) = present {
            // When the forget itself began: the action's time less the wait.
            step.details.insert(
                "waited_ms".into(),
                serde_json::json!(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)),
            );
            if let Some(label) = present.leave() {
                self.faults.ended(&label);
            }
        }
        step
    }
}
