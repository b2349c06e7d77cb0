//! `snapshot-root`: fingerprint the data dir, snapshot it, record both.

use serde_json::json;

use super::Step;
use crate::engine::exec::Engine;
use crate::engine::record::ActionParams;
use crate::engine::traits::ClientId;

impl Engine {
    pub(super) fn snapshot_root(&self, client: ClientId, params: &ActionParams) -> Step {
        let data_dir = self.writer.data_dir(client);
        let source = match &params.sub_path {
            Some(sub) => data_dir.join(sub),
            None => data_dir,
        };
        match self.checker.take_snapshot(
            self.snapshotter.as_ref(),
            client,
            &source,
            params.sub_path.as_deref(),
            &self.progress.begin(client),
        ) {
            Ok(record) => {
                let mut step = Step::ok()
                    .detail("entries", json!(record.entries))
                    .detail("bytes", json!(record.bytes));
                step.snapshot = Some(record.id);
                step.effects.snapshots_created = 1;
                step
            }
            Err(error) => Step::checker_error(error),
        }
    }
}
