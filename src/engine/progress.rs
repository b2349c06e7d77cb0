//! How far a long snapshot or restore has got. The engine hands the backend
//! a [`Progress`] with each snapshot and restore call and the backend
//! reports into it as it goes; the engine publishes every client's with its
//! counts ([`ProgressBoard`]), so a 2 GiB restore shows `1.2 GiB/2.0 GiB`
//! and not only how long it has been running.
//!
//! Totals start as what the engine knows (the fingerprint of the source, or
//! the one recorded for the snapshot being restored); a backend that counts
//! its own total replaces them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::traits::ClientId;

/// What part of a snapshot or restore is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fingerprinting the source before a snapshot is taken of it.
    Reading,
    /// The backend is snapshotting or restoring.
    Transfer,
    /// Fingerprinting what a restore gave back, to compare it.
    Verifying,
}

impl Stage {
    fn from_u8(value: u8) -> Stage {
        match value {
            0 => Stage::Reading,
            1 => Stage::Transfer,
            _ => Stage::Verifying,
        }
    }
}

/// A count nobody has reported yet.
const UNKNOWN: u64 = u64::MAX;

/// One call's progress, written by the backend from any thread. Clones
/// share it (a backend may hand it to threads or callbacks of its own);
/// every method is an atomic store or two, cheap enough to call per chunk.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    stage: AtomicU8,
    files_done: AtomicU64,
    files_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    /// Whether the backend has said anything: one that cannot tell leaves
    /// only the engine's totals, and `0 %` would then be a guess.
    reported: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stage: AtomicU8::new(Stage::Transfer as u8),
            files_done: AtomicU64::new(UNKNOWN),
            files_total: AtomicU64::new(UNKNOWN),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(UNKNOWN),
            reported: AtomicBool::new(false),
        }
    }
}

fn known(value: u64) -> Option<u64> {
    (value != UNKNOWN).then_some(value)
}

impl Progress {
    /// A progress nobody reads: for calls made outside a run (tests, tools).
    pub fn unobserved() -> Progress {
        Progress::default()
    }

    /// Starts a stage afresh: nothing done yet (a retried restore starts over).
    pub fn start(&self, stage: Stage) {
        self.counters.stage.store(stage as u8, Ordering::Relaxed);
        self.counters.bytes_done.store(0, Ordering::Relaxed);
        self.counters.files_done.store(UNKNOWN, Ordering::Relaxed);
    }

    /// What the whole call will cover, as far as it is known.
    pub fn set_totals(&self, files: Option<u64>, bytes: Option<u64>) {
        self.counters
            .files_total
            .store(files.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.counters
            .bytes_total
            .store(bytes.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// The backend's own count of the bytes it will cover.
    pub fn set_bytes_total(&self, bytes: u64) {
        self.counters.bytes_total.store(bytes, Ordering::Relaxed);
        self.counters.reported.store(true, Ordering::Relaxed);
    }

    /// `bytes` more are done (a backend that reports chunk by chunk).
    pub fn add_bytes(&self, bytes: u64) {
        self.counters.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.counters.reported.store(true, Ordering::Relaxed);
    }

    /// How much is done so far (a backend that reports running totals).
    pub fn set_done(&self, files: Option<u64>, bytes: u64) {
        self.counters.reported.store(true, Ordering::Relaxed);
        self.counters
            .files_done
            .store(files.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.counters.bytes_done.store(bytes, Ordering::Relaxed);
    }

    /// What it says now.
    pub fn view(&self) -> ProgressView {
        ProgressView {
            stage: Stage::from_u8(self.counters.stage.load(Ordering::Relaxed)),
            files_done: known(self.counters.files_done.load(Ordering::Relaxed)),
            files_total: known(self.counters.files_total.load(Ordering::Relaxed)),
            bytes_done: self.counters.bytes_done.load(Ordering::Relaxed),
            bytes_total: known(self.counters.bytes_total.load(Ordering::Relaxed)),
            reported: self.counters.reported.load(Ordering::Relaxed),
        }
    }
}

/// A call's progress at one moment, as displays show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressView {
    pub stage: Stage,
    /// Only where the backend counts finished files (restic's backup).
    pub files_done: Option<u64>,
    pub files_total: Option<u64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// The backend reported into it (else only the totals are known).
    pub reported: bool,
}

impl ProgressView {
    /// Share of the bytes done, 0–100, when the total is known. A backend
    /// may count some bytes twice (a retried upload), so it stops at 100.
    pub fn percent(&self) -> Option<u64> {
        let total = self.bytes_total.filter(|&t| t > 0)?;
        Some((self.bytes_done.saturating_mul(100) / total).min(100))
    }
}

/// The progress of every client's snapshot or restore under way.
#[derive(Debug, Default)]
pub struct ProgressBoard {
    calls: Mutex<BTreeMap<ClientId, Progress>>,
}

impl ProgressBoard {
    /// Puts up a fresh progress for `client`; it comes down when the
    /// returned guard is dropped.
    pub fn begin(&self, client: ClientId) -> InProgress<'_> {
        let progress = Progress::default();
        self.calls
            .lock()
            .expect("progress lock")
            .insert(client, progress.clone());
        InProgress {
            board: self,
            client,
            progress,
        }
    }

    /// Every call under way, as it stands.
    pub fn views(&self) -> BTreeMap<ClientId, ProgressView> {
        self.calls
            .lock()
            .expect("progress lock")
            .iter()
            .map(|(&client, progress)| (client, progress.view()))
            .collect()
    }
}

/// A progress on the board while it lives.
pub struct InProgress<'a> {
    board: &'a ProgressBoard,
    client: ClientId,
    progress: Progress,
}

impl std::ops::Deref for InProgress<'_> {
    type Target = Progress;

    fn deref(&self) -> &Progress {
        &self.progress
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut calls = self.board.calls.lock().expect("progress lock");
        // Only its own: a later call of the same client may have replaced it.
        if calls
            .get(&self.client)
            .is_some_and(|p| Arc::ptr_eq(&p.counters, &self.progress.counters))
        {
            calls.remove(&self.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_shows_on_the_board_while_it_runs_and_no_longer() {
        let board = ProgressBoard::default();
        {
            let progress = board.begin(ClientId(3));
            progress.set_totals(Some(4), Some(1000));
            assert!(
                !board.views()[&ClientId(3)].reported,
                "totals are the engine's"
            );
            progress.add_bytes(250);
            let views = board.views();
            let view = views[&ClientId(3)];
            assert_eq!(view.bytes_done, 250);
            assert_eq!(view.bytes_total, Some(1000));
            assert_eq!(view.files_total, Some(4));
            assert_eq!(view.files_done, None);
            assert_eq!(view.percent(), Some(25));
            assert!(view.reported);
        }
        assert!(board.views().is_empty());
    }

    #[test]
    fn an_earlier_call_ending_late_leaves_the_later_one_up() {
        let board = ProgressBoard::default();
        let first = board.begin(ClientId(1));
        let second = board.begin(ClientId(1));
        second.add_bytes(7);
        drop(first);
        assert_eq!(board.views()[&ClientId(1)].bytes_done, 7);
        drop(second);
        assert!(board.views().is_empty());
    }

    #[test]
    fn starting_a_stage_again_starts_from_nothing() {
        let progress = Progress::unobserved();
        progress.set_totals(None, Some(10));
        progress.set_done(Some(2), 30);
        // Counted twice (a retried upload): never past 100 %.
        assert_eq!(progress.view().percent(), Some(100));
        progress.start(Stage::Verifying);
        let view = progress.view();
        assert_eq!(view.stage, Stage::Verifying);
        assert_eq!((view.bytes_done, view.files_done), (0, None));
        assert_eq!(view.bytes_total, Some(10));
        assert_eq!(
            ProgressView {
                bytes_total: None,
                ..view
            }
            .percent(),
            None
        );
    }
}
