//! The checker: fingerprints a directory when it is snapshotted, and proves
//! every later restore of that snapshot against the fingerprint.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::actions::Origin;
use super::brief::{brief, without_backtrace};
use super::fingerprint::{CompareOptions, Fingerprint, FingerprintError, TreeDiff};
use super::progress::{Progress, Stage};
use super::store::{Failure, FailureKind, MetadataStore, SnapshotRecord, StoreError, now_rfc3339};
use super::traits::{BackendError, ClientId, ErrorClass, SnapshotId, Snapshotter};

/// How many entries of each kind a failure's details list.
const DIFF_LINES: usize = 20;
/// A failed restore is tried again after these pauses before it counts as a
/// verification failure: a snapshot that cannot be restored three times,
/// for a reason that says something about its data, is lost.
const RESTORE_RETRY_PAUSES: [Duration; 2] =
    [Duration::from_millis(500), Duration::from_millis(1500)];

#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("fingerprint: {0}")]
    Fingerprint(#[from] FingerprintError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CheckerError {
    /// The backend's own class; everything else is snapstorm's own side.
    pub fn class(&self) -> ErrorClass {
        match self {
            CheckerError::Backend(error) => error.class(),
            CheckerError::Store(_) | CheckerError::Fingerprint(_) | CheckerError::Io { .. } => {
                ErrorClass::Local
            }
        }
    }
}

/// Whether a restore is one of many during the run, or the last chance a
/// snapshot gets, after every fault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreAttempt {
    /// Only data that is missing or unreadable fails the snapshot now; any
    /// other error (the request did not get through, it raced a GC, an error
    /// nobody could classify, snapstorm's own side) is an error of the
    /// action, and the snapshot is restored again at the end of the run.
    DuringRun,
    /// Every fault has ended: a snapshot that still cannot be restored is
    /// lost, unless snapstorm's own side is what failed.
    Last,
}

/// The result of restoring a snapshot and comparing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Byte-for-byte what was snapshotted.
    Verified { entries: usize },
    /// Restored, but different.
    Mismatch(TreeDiff),
    /// Could not be restored, three times, for a reason that says something about the data.
    RestoreFailed(String),
}

impl Verification {
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Verification::Verified { .. } => None,
            Verification::Mismatch(_) => Some(FailureKind::ContentMismatch),
            Verification::RestoreFailed(_) => Some(FailureKind::RestoreFailed),
        }
    }

    /// One line for the UI and the report; `None` when verified.
    pub fn failure_summary(&self) -> Option<String> {
        match self {
            Verification::Verified { .. } => None,
            Verification::Mismatch(diff) => Some(format!("restore differs: {}", diff.summary())),
            Verification::RestoreFailed(error) => Some(format!("restore failed: {}", brief(error))),
        }
    }

    /// The readable diff or error; empty when verified.
    pub fn failure_details(&self) -> String {
        match self {
            Verification::Verified { .. } => String::new(),
            Verification::Mismatch(diff) => diff.render(DIFF_LINES),
            Verification::RestoreFailed(error) => without_backtrace(error).to_owned(),
        }
    }
}

#[derive(Debug)]
pub struct Checker {
    store: Arc<MetadataStore>,
    compare: CompareOptions,
}

impl Checker {
    pub fn new(store: Arc<MetadataStore>, compare: CompareOptions) -> Self {
        Checker { store, compare }
    }

    pub fn store(&self) -> &Arc<MetadataStore> {
        &self.store
    }

    /// Fingerprints `source`, snapshots it, and records both durably.
    /// The caller guarantees that nothing writes to `source` meanwhile.
    pub fn take_snapshot(
        &self,
        snapshotter: &dyn Snapshotter,
        client: ClientId,
        source: &Path,
        sub_path: Option<&str>,
        progress: &Progress,
    ) -> Result<SnapshotRecord, CheckerError> {
        std::fs::create_dir_all(source).map_err(|source_err| CheckerError::Io {
            context: format!("create {}", source.display()),
            source: source_err,
        })?;
        progress.start(Stage::Reading);
        let fingerprint = Fingerprint::of_tree(source)?;
        progress.set_totals(
            Some(fingerprint.file_count()),
            Some(fingerprint.content_bytes()),
        );
        progress.start(Stage::Transfer);
        let id = snapshotter.create_snapshot(client, source, progress)?;
        let record = SnapshotRecord {
            id,
            run: self.store.run_number(),
            created: now_rfc3339(),
            sub_path: sub_path.map(str::to_owned),
            entries: fingerprint.len(),
            bytes: fingerprint.content_bytes(),
            deleting: false,
            unsettled: false,
        };
        self.store
            .record_snapshot(client, record.clone(), &fingerprint)?;
        Ok(record)
    }

    /// Restores `id` into `target` (which must not exist or be empty) and
    /// compares it with the fingerprint recorded when it was made.
    pub fn restore_and_verify(
        &self,
        snapshotter: &dyn Snapshotter,
        client: ClientId,
        id: &str,
        target: &Path,
        attempt_kind: RestoreAttempt,
        progress: &Progress,
    ) -> Result<Verification, CheckerError> {
        let expected = self.store.fingerprint(id)?;
        empty_dir(target)?;
        progress.set_totals(Some(expected.file_count()), Some(expected.content_bytes()));
        progress.start(Stage::Transfer);
        let mut attempt = snapshotter.restore_snapshot(client, id, target, progress);
        for pause in RESTORE_RETRY_PAUSES {
            if attempt.is_ok() {
                break;
            }
            std::thread::sleep(pause);
            empty_dir(target)?;
            progress.start(Stage::Transfer);
            attempt = snapshotter.restore_snapshot(client, id, target, progress);
        }
        match attempt {
            Ok(()) => {}
            Err(error) => {
                let says_nothing = match attempt_kind {
                    RestoreAttempt::DuringRun => error.class() != ErrorClass::Data,
                    RestoreAttempt::Last => error.class() == ErrorClass::Local,
                };
                if says_nothing {
                    return Err(error.into());
                }
                return Ok(Verification::RestoreFailed(error.to_string()));
            }
        }
        progress.start(Stage::Verifying);
        let actual = Fingerprint::of_tree(target)?;
        let diff = expected.diff(&actual, self.compare);
        Ok(if diff.is_empty() {
            Verification::Verified {
                entries: actual.len(),
            }
        } else {
            Verification::Mismatch(diff)
        })
    }

    /// Deletes a snapshot: the intent first, durably, then the repository,
    /// then the metadata. A crash in between leaves the intent, which the
    /// next listing check settles; a delete that failed leaves it too (the
    /// request may have been carried out all the same).
    pub fn delete_snapshot(
        &self,
        snapshotter: &dyn Snapshotter,
        client: ClientId,
        id: &str,
    ) -> Result<(), CheckerError> {
        self.store.mark_deleting(client, id)?;
        snapshotter.delete_snapshot(client, id)?;
        self.store.mark_deleted(client, id)?;
        Ok(())
    }

    /// The intent to forget every live snapshot of the client but its
    /// newest, durably, before the backend is asked
    /// ([`Checker::forget_all_but_newest`]); how many that is.
    pub fn intend_to_forget(&self, client: ClientId) -> Result<usize, CheckerError> {
        let live = self.store.live(client);
        let Some((_newest, older)) = live.split_last() else {
            return Ok(0);
        };
        let ids: Vec<SnapshotId> = older.iter().map(|s| s.id.clone()).collect();
        self.store.mark_all_deleting(client, &ids)?;
        Ok(ids.len())
    }

    /// Forgets the client's live snapshots but its newest by the backend's
    /// policy (see [`Snapshotter::forget_all_but_newest`]), its intent
    /// recorded first ([`Checker::intend_to_forget`]); then the metadata
    /// for those the backend says it deleted. One it was meant to delete
    /// and did not keeps its intent, which the next listing check settles.
    pub fn forget_all_but_newest(
        &self,
        snapshotter: &dyn Snapshotter,
        client: ClientId,
        deleting: &(dyn Fn() + Sync),
    ) -> Result<Vec<SnapshotId>, CheckerError> {
        let deleted = snapshotter.forget_all_but_newest(client, deleting)?;
        let recorded: BTreeSet<SnapshotId> = self
            .store
            .state()
            .clients
            .get(&client)
            .map(|record| record.live.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        // Another client's snapshot deleted by this one's policy is the
        // tool's doing; the listing check finds it lost.
        let ours: Vec<SnapshotId> = deleted
            .into_iter()
            .filter(|id| recorded.contains(id))
            .collect();
        self.store.mark_all_deleted(client, &ours)?;
        Ok(ours)
    }

    /// A verification failure found now (not yet recorded).
    pub fn failure(
        &self,
        client: ClientId,
        snapshot: Option<&str>,
        action: Origin,
        kind: FailureKind,
        summary: String,
        details: String,
    ) -> Failure {
        Failure {
            run: self.store.run_number(),
            time: now_rfc3339(),
            client,
            snapshot: snapshot.map(str::to_owned),
            action,
            kind,
            summary,
            details,
            explained_by: None,
            unreadable: None,
        }
    }

    /// Compares, as sets, the snapshots the metadata holds with the
    /// repository's listing. A live snapshot missing from the repository is
    /// a failure, and so is a deleted one that is listed again; one whose
    /// delete was in flight is neither (the caller settles it). The failures
    /// are returned, not yet recorded.
    pub fn check_listing(&self, listing: &[SnapshotId], action: Origin) -> Vec<Failure> {
        let listed: BTreeSet<&str> = listing.iter().map(String::as_str).collect();
        let state = self.store.state();
        let mut failures = Vec::new();
        for (client, record) in &state.clients {
            for snapshot in &record.live {
                if !snapshot.deleting && !listed.contains(snapshot.id.as_str()) {
                    let summary = format!(
                        "snapshot lost: recorded live (run {}) but not in the repository",
                        snapshot.run
                    );
                    failures.push(self.failure(
                        *client,
                        Some(&snapshot.id),
                        action,
                        FailureKind::SnapshotLost,
                        summary.clone(),
                        summary,
                    ));
                }
            }
            for id in &record.deleted {
                if listed.contains(id.as_str()) {
                    let summary = "deleted snapshot is still in the repository".to_owned();
                    failures.push(self.failure(
                        *client,
                        Some(id),
                        action,
                        FailureKind::DeletedSnapshotPresent,
                        summary.clone(),
                        summary,
                    ));
                }
            }
        }
        failures
    }
}
/// Makes `dir` an empty directory.
pub fn empty_dir(dir: &Path) -> Result<(), CheckerError> {
    let io = |context: String| move |source| CheckerError::Io { context, source };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!("clear {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))
}
