//! `restore-random-snapID` and `restore-into-data-dir`: restore and verify
//! against the fingerprint taken when the snapshot was made.

use std::path::PathBuf;

use rand::seq::IndexedRandom;
use serde_json::json;

use super::{Found, Step, preferred};
use crate::engine::actions::{Action, Origin};
use crate::engine::checker::{RestoreAttempt, Verification};
use crate::engine::exec::Engine;
use crate::engine::record::ActionParams;
use crate::engine::store::FailureKind;
use crate::engine::traits::{ActionRng, ClientId};

impl Engine {
    pub(super) fn scratch_target(&self, client: ClientId) -> PathBuf {
        let nonce: u64 = rand::random();
        self.store()
            .layout()
            .scratch()
            .join(format!("{client}-{nonce:016x}"))
    }
    pub(super) fn restore(
        &self,
        client: ClientId,
        params: &ActionParams,
        rng: &mut ActionRng,
        action: Action,
        attempt: RestoreAttempt,
        origin: Origin,
    ) -> Step {
        let into_data_dir = action == Action::RestoreIntoDataDir;
        let live = self.store().live(client);
        let chosen = match &params.snapshot_id {
            Some(id) => Some(id.clone()),
            None => preferred(params, &live).or_else(|| live.choose(rng).map(|s| s.id.clone())),
        };
        let Some(id) = chosen else {
            return Step::no_op("no live snapshot");
        };
        let target = if into_data_dir {
            let sub_path = live
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.sub_path.clone());
            let data_dir = self.writer.data_dir(client);
            sub_path.map(|sub| data_dir.join(sub)).unwrap_or(data_dir)
        } else {
            self.scratch_target(client)
        };
        let verification = self.checker.restore_and_verify(
            self.snapshotter.as_ref(),
            client,
            &id,
            &target,
            attempt,
            &self.progress.begin(client),
        );
        if !into_data_dir {
            let _ = std::fs::remove_dir_all(&target);
        }
        // An error leaves the snapshot to the end of the run; anything
        // else settles it. The last attempt settles it whatever happens.
        let unsettled = verification.is_err() && attempt == RestoreAttempt::DuringRun;
        if let Err(error) = self.store().mark_unsettled(client, &id, unsettled) {
            tracing::error!(%client, snapshot = %id, %error, "cannot record a restore to try again");
        }
        let mut step = match verification {
            Ok(Verification::Verified { entries }) => {
                let mut step = Step::ok().detail("entries", json!(entries));
                step.effects.restores_verified = 1;
                step
            }
            Ok(failed) => self.fail(
                client,
                Some(&id),
                origin,
                failed.failure_kind().unwrap_or_default(),
                failed.failure_summary().unwrap_or_default(),
                failed.failure_details(),
            ),
            Err(error) => Step::checker_error(error),
        };
        step.snapshot = Some(id);
        step
    }
    /// A verification failure; `run_action` attributes and records it.
    pub(super) fn fail(
        &self,
        client: ClientId,
        snapshot: Option<&str>,
        origin: Origin,
        kind: FailureKind,
        summary: String,
        details: String,
    ) -> Step {
        let mut step = Step::failure(summary.clone());
        step.failures.push(Found {
            failure: self
                .checker
                .failure(client, snapshot, origin, kind, summary, details),
            attribution: None,
        });
        step
    }
}
