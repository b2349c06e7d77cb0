//! `delete-random-snapID`: delete a live snapshot, never the last one.

use rand::seq::IndexedRandom;

use super::Step;
use crate::engine::exec::Engine;
use crate::engine::traits::{ActionRng, ClientId};

impl Engine {
    pub(super) fn delete_random_snapshot(&self, client: ClientId, rng: &mut ActionRng) -> Step {
        let live = self.store().live(client);
        if live.len() <= 1 {
            return Step::no_op(format!(
                "{} live snapshot(s): the last one is never deleted",
                live.len()
            ));
        }
        let id = live.choose(rng).expect("more than one").id.clone();
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
