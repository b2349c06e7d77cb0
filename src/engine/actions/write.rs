//! The actions on a client's own data dir: write random files (and
//! recover when the disk runs short), delete a subdirectory, delete files.

use serde_json::json;

use super::Step;
use super::step::writer_step;
use crate::engine::actions::{Action, Origin};
use crate::engine::checker::RestoreAttempt;
use crate::engine::exec::Engine;
use crate::engine::file_writer::available_space;
use crate::engine::options::ActionOptions;
use crate::engine::record::ActionParams;
use crate::engine::stats::Outcome;
use crate::engine::traits::{ActionRng, ClientId, ErrorClass};

impl Engine {
    pub(super) fn write_random_files(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> Step {
        let data_dir = self.writer.data_dir(client);
        let free = available_space(&data_dir).unwrap_or(u64::MAX);
        if free < options.free_space_limit.as_u64() {
            return self.recover_low_disk(client, free, rng);
        }
        match self.writer.write_random_files(client, options, rng) {
            Ok(effect) => {
                let mut step = writer_step(Ok(effect));
                step.effects.bytes_written = step
                    .details
                    .get("bytes")
                    .and_then(|b| b.as_u64())
                    .unwrap_or(0);
                step
            }
            Err(error) => Step::error(error, ErrorClass::Local),
        }
    }
    /// The disk runs short: purge the data dir and restore a snapshot into it.
    pub(super) fn recover_low_disk(
        &self,
        client: ClientId,
        free: u64,
        rng: &mut ActionRng,
    ) -> Step {
        tracing::warn!(%client, free, "low disk space: purging the data dir and restoring a snapshot into it");
        if let Err(error) = self.writer.delete_everything(client) {
            return Step::error(format!("low-disk recovery: {error}"), ErrorClass::Local);
        }
        let mut step = self.restore(
            client,
            &ActionParams::default(),
            rng,
            Action::RestoreIntoDataDir,
            RestoreAttempt::DuringRun,
            // What reads the repository here is the restore.
            Origin::Action(Action::RestoreIntoDataDir),
        );
        if step.outcome() == Outcome::NoOp {
            step = Step::ok();
        }
        step.effects.low_disk_recoveries += 1;
        step.detail("low-disk-recovery", json!({ "free-bytes": free }))
    }
}
