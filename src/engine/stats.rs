//! Counters and latency histograms of a run, and the JSON report built from them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::actions::Action;
use super::progress::ProgressView;
use super::traits::ClientId;

/// The longest latency the histograms hold exactly: a day, in milliseconds.
/// Longer actions are recorded as a day.
const LATENCY_MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    /// Nothing to do (no snapshot to restore, no directory at that depth…).
    NoOp,
    /// The action could not be carried out (backend error, panic, I/O).
    Error,
    /// The repository did not give back what it was given.
    Failure,
}

/// Per-client counters, as they appear in the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    pub actions: u64,
    pub snapshots_created: u64,
    pub snapshots_live: u64,
    pub snapshots_deleted: u64,
    pub restores_verified: u64,
    pub verification_failures: u64,
    /// Failures no injected fault explains.
    pub unexpected_failures: u64,
    pub errors: u64,
    /// Errors an injected fault explains.
    pub expected_errors: u64,
    pub no_ops: u64,
    pub bytes_written: u64,
    pub low_disk_recoveries: u64,
}

impl ClientCounts {
    /// Failures an injected fault explains.
    pub fn expected_failures(&self) -> u64 {
        self.verification_failures - self.unexpected_failures
    }

    fn add(&mut self, other: &ClientCounts) {
        self.actions += other.actions;
        self.snapshots_created += other.snapshots_created;
        self.snapshots_live += other.snapshots_live;
        self.snapshots_deleted += other.snapshots_deleted;
        self.restores_verified += other.restores_verified;
        self.verification_failures += other.verification_failures;
        self.unexpected_failures += other.unexpected_failures;
        self.errors += other.errors;
        self.expected_errors += other.expected_errors;
        self.no_ops += other.no_ops;
        self.bytes_written += other.bytes_written;
        self.low_disk_recoveries += other.low_disk_recoveries;
    }
}

/// What one finished action contributes to the counters (counts, because
/// an action repeated with `repeat-action` can do each several times).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    pub snapshots_created: u64,
    pub snapshots_deleted: u64,
    pub restores_verified: u64,
    pub bytes_written: u64,
    pub low_disk_recoveries: u64,
}

impl Effects {
    pub fn add(&mut self, other: Effects) {
        self.snapshots_created += other.snapshots_created;
        self.snapshots_deleted += other.snapshots_deleted;
        self.restores_verified += other.restores_verified;
        self.bytes_written += other.bytes_written;
        self.low_disk_recoveries += other.low_disk_recoveries;
    }
}

struct ActionStats {
    count: u64,
    errors: u64,
    no_ops: u64,
    failures: u64,
    latency_ms: Histogram<u64>,
}

impl ActionStats {
    fn new() -> Self {
        ActionStats {
            count: 0,
            errors: 0,
            no_ops: 0,
            failures: 0,
            latency_ms: Histogram::new_with_bounds(1, LATENCY_MAX_MS, 3)
                .expect("1 ms to a day at 3 significant digits is valid"),
        }
    }
}

#[derive(Default)]
struct Inner {
    clients: BTreeMap<ClientId, ClientCounts>,
    /// What kind of client each is, where the backend says.
    kinds: BTreeMap<ClientId, String>,
    actions: BTreeMap<Action, ActionStats>,
    gc_runs: u64,
    throughput: Throughput,
}

/// Seconds of throughput the counts carry.
pub const THROUGHPUT_SECONDS: usize = 240;

/// Actions finished in each second, the last [`THROUGHPUT_SECONDS`] of them.
#[derive(Debug)]
struct Throughput {
    /// Second 0 starts here.
    since: Instant,
    /// Counts of the seconds up to `current`, the last one still going.
    seconds: VecDeque<u64>,
    current: u64,
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput {
            since: Instant::now(),
            seconds: VecDeque::from([0]),
            current: 0,
        }
    }
}

impl Throughput {
    /// Moves on to the second `at` falls in.
    fn advance(&mut self, at: Instant) {
        let second = at.saturating_duration_since(self.since).as_secs();
        while self.current < second {
            if self.seconds.len() > THROUGHPUT_SECONDS {
                self.seconds.pop_front();
            }
            self.seconds.push_back(0);
            self.current += 1;
        }
    }

    fn count(&mut self, at: Instant) {
        self.advance(at);
        *self.seconds.back_mut().expect("never empty") += 1;
    }

    /// The seconds that are over, oldest first.
    fn finished(&mut self, now: Instant) -> Vec<u64> {
        self.advance(now);
        let done = self.seconds.len() - 1;
        self.seconds
            .iter()
            .take(done)
            .skip(done.saturating_sub(THROUGHPUT_SECONDS))
            .copied()
            .collect()
    }
}

/// The run's counts as the engine publishes them: the console, the progress
/// line, the summary and the report all display these and count nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub clients: Vec<ClientReport>,
    pub totals: ClientCounts,
    /// GCs that finished, whoever started them (an action, a key, a fault).
    pub gc_runs: u64,
    pub faults_injected: u64,
    /// Snapshots and restores under way, per client: how far each has got.
    /// Of the moment only, so never in a report.
    #[serde(skip)]
    pub in_progress: BTreeMap<ClientId, ProgressView>,
    /// Actions finished in each of the last seconds, oldest first.
    #[serde(skip)]
    pub throughput: Vec<u64>,
}

impl Counts {
    pub fn client(&self, id: ClientId) -> Option<&ClientCounts> {
        self.clients.iter().find(|c| c.id == id).map(|c| &c.counts)
    }
}

/// Thread-safe statistics of the current run.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats::default()
    }

    /// Makes a client appear in the report even before its first action,
    /// with its kind when the backend names it.
    pub fn register_client(&self, client: ClientId, kind: Option<String>) {
        let mut inner = self.inner.lock().expect("stats lock");
        inner.clients.entry(client).or_default();
        if let Some(kind) = kind {
            inner.kinds.insert(client, kind);
        }
    }

    /// Counts a finished action; `expected`: an injected fault explains its
    /// error. Its failures are counted one by one with [`Stats::count_failure`].
    pub fn record(
        &self,
        client: ClientId,
        action: Action,
        outcome: Outcome,
        duration: Duration,
        effects: Effects,
        expected: bool,
    ) {
        let mut inner = self.inner.lock().expect("stats lock");
        inner.throughput.count(Instant::now());
        let counts = inner.clients.entry(client).or_default();
        counts.actions += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::NoOp => counts.no_ops += 1,
            Outcome::Error => {
                counts.errors += 1;
                counts.expected_errors += u64::from(expected);
            }
            Outcome::Failure => {}
        }
        counts.snapshots_created += effects.snapshots_created;
        counts.snapshots_deleted += effects.snapshots_deleted;
        counts.restores_verified += effects.restores_verified;
        counts.bytes_written += effects.bytes_written;
        counts.low_disk_recoveries += effects.low_disk_recoveries;

        let stats = inner.actions.entry(action).or_insert_with(ActionStats::new);
        stats.count += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::NoOp => stats.no_ops += 1,
            Outcome::Error => stats.errors += 1,
            Outcome::Failure => stats.failures += 1,
        }
        let ms = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, LATENCY_MAX_MS);
        stats.latency_ms.saturating_record(ms);
    }

    /// Counts a GC that finished.
    pub fn record_gc(&self) {
        self.inner.lock().expect("stats lock").gc_runs += 1;
    }

    /// Counts a verification failure, found by an action or a check: the
    /// one count every display, the report and the exit code read.
    pub fn count_failure(&self, client: ClientId, expected: bool) {
        let mut inner = self.inner.lock().expect("stats lock");
        let counts = inner.clients.entry(client).or_default();
        counts.verification_failures += 1;
        counts.unexpected_failures += u64::from(!expected);
    }

    /// Counters per client (with `snapshots_live` filled from `live`).
    pub fn counts(&self, live: impl Fn(ClientId) -> u64, faults_injected: u64) -> Counts {
        let mut inner = self.inner.lock().expect("stats lock");
        let throughput = inner.throughput.finished(Instant::now());
        let mut totals = ClientCounts::default();
        let clients = inner
            .clients
            .iter()
            .map(|(&id, counts)| {
                let mut counts = counts.clone();
                counts.snapshots_live = live(id);
                totals.add(&counts);
                ClientReport {
                    id,
                    kind: inner.kinds.get(&id).cloned(),
                    counts,
                }
            })
            .collect();
        Counts {
            clients,
            totals,
            gc_runs: inner.gc_runs,
            faults_injected,
            in_progress: BTreeMap::new(),
            throughput,
        }
    }

    /// Counters and latency percentiles per action.
    pub fn actions(&self) -> BTreeMap<String, ActionReport> {
        let inner = self.inner.lock().expect("stats lock");
        inner
            .actions
            .iter()
            .map(|(action, s)| {
                let h = &s.latency_ms;
                (
                    action.name().to_owned(),
                    ActionReport {
                        count: s.count,
                        errors: s.errors,
                        no_ops: s.no_ops,
                        failures: s.failures,
                        p50_ms: h.value_at_quantile(0.50),
                        p95_ms: h.value_at_quantile(0.95),
                        p99_ms: h.value_at_quantile(0.99),
                        max_ms: h.max(),
                    },
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReport {
    pub id: ClientId,
    /// What kind of client it is (`rustic`, `restic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub counts: ClientCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    pub count: u64,
    pub errors: u64,
    pub no_ops: u64,
    pub failures: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let stats = Stats::new();
        for ms in 1..=100 {
            stats.record(
                ClientId(1),
                Action::SnapshotRoot,
                Outcome::Ok,
                Duration::from_millis(ms),
                Effects {
                    snapshots_created: 1,
                    ..Effects::default()
                },
                false,
            );
        }
        stats.record(
            ClientId(2),
            Action::DeleteFiles,
            Outcome::NoOp,
            Duration::from_millis(3),
            Effects::default(),
            false,
        );
        stats.record(
            ClientId(2),
            Action::RestoreRandomSnapshot,
            Outcome::Failure,
            Duration::from_millis(3),
            Effects::default(),
            false,
        );
        stats.count_failure(ClientId(2), true);
        let counts = stats.counts(|id| u64::from(id.0) * 10, 0);
        let (clients, totals, actions) = (counts.clients, counts.totals, stats.actions());
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].counts.snapshots_created, 100);
        assert_eq!(clients[0].counts.snapshots_live, 10);
        assert_eq!(totals.actions, 102);
        assert_eq!(totals.no_ops, 1);
        assert_eq!(totals.verification_failures, 1);
        assert_eq!(totals.unexpected_failures, 0, "a fault explained it");
        assert_eq!(totals.snapshots_live, 30);
        let snap = &actions["snapshot-root"];
        assert_eq!(
            (snap.p50_ms, snap.p95_ms, snap.p99_ms, snap.max_ms),
            (50, 95, 99, 100)
        );
        assert_eq!(actions["delete-files"].no_ops, 1);
    }

    /// Actions of minutes and hours keep their latency (a histogram that
    /// clamps would report them as about two seconds).
    #[test]
    fn long_actions_keep_their_latency() {
        let stats = Stats::new();
        for secs in [7u64, 9, 3_600, 90_000] {
            stats.record(
                ClientId(1),
                Action::SnapshotRoot,
                Outcome::Ok,
                Duration::from_secs(secs),
                Effects::default(),
                false,
            );
        }
        let snap = &stats.actions()["snapshot-root"];
        let within = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(within(snap.p50_ms, 9_000), "{snap:?}");
        assert!(within(snap.p95_ms, LATENCY_MAX_MS), "{snap:?}");
        assert!(within(snap.max_ms, LATENCY_MAX_MS), "{snap:?}");
    }

    #[test]
    fn throughput_counts_whole_seconds_and_keeps_the_last_ones() {
        let t0 = Instant::now();
        let mut throughput = Throughput {
            since: t0,
            ..Throughput::default()
        };
        let at = |ms| t0 + Duration::from_millis(ms);
        throughput.count(at(0));
        throughput.count(at(500));
        throughput.count(at(2_100));
        assert_eq!(
            throughput.finished(at(2_900)),
            vec![2, 0],
            "the third second is not over"
        );
        assert_eq!(throughput.finished(at(3_500)), vec![2, 0, 1]);
        let later = throughput.finished(at(1_000 * (THROUGHPUT_SECONDS as u64 + 10)));
        assert_eq!(later.len(), THROUGHPUT_SECONDS);
        assert!(later.iter().all(|&n| n == 0));
    }
}
