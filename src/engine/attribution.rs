//! Attribution: which injected fault, if any, explains an incident (a
//! verification failure or an action error). It is the engine's verdict, so
//! it lives here; the fault model says what faults are, backends carry them out.
//!
//! The rules (Jepsen's: a fault may excuse lost availability, never a wrong answer):
//! - Restored content that differs from its fingerprint, and a deleted
//!   snapshot that is listed again, are never explained: the restic format
//!   authenticates every blob, so damage shows as an error, never as other bytes.
//! - Damage to data (`corrupt-pack`, `delete-pack`, `delete-index`,
//!   `aggressive-gc`) explains, from its injection to the end of the run,
//!   only incidents that read data it could have touched: restores that
//!   failed, data errors of actions that read data, the full check.
//! - Transport faults (`server-restart`, `network`, `revoke-client`,
//!   `kill-client`) explain errors whose requests did not get through, while
//!   they last (plus a few seconds for retries); client faults only for their client.
//! - GC faults (`gc-storm`, `aggressive-gc`) explain errors that raced a GC.
//! - Among the faults that explain an incident, the most recent wins, and
//!   each fault that explained one is detected.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::actions::Origin;
use super::stats::FaultReport;
use super::store::{FailureKind, now_rfc3339};
use super::traits::{ClientId, ErrorClass};
use crate::faults::{FaultKind, FaultSpec, KILL_ARMED_FOR, KILL_CUT};

/// After a transient fault ends, errors this long after still count as its
/// doing (a retry in flight, a back-off that ends after the fault).
pub const TRANSIENT_SLACK: Duration = Duration::from_secs(5);

/// What happened, as attribution sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// An action that could not be carried out.
    Error(ErrorClass),
    /// The repository did not give back what it was given.
    Failure(FailureKind),
}

/// Something that went wrong during an action or a check.
#[derive(Debug, Clone, Copy)]
pub struct Incident {
    pub client: ClientId,
    pub origin: Origin,
    pub kind: IncidentKind,
    pub started: Instant,
    pub ended: Instant,
}

/// Whether a fault of `fault` kind can cause this kind of incident at all.
fn can_cause(fault: FaultKind, incident: &Incident) -> bool {
    if !incident.origin.touches_repository() {
        return false;
    }
    let transport = matches!(
        fault,
        FaultKind::ServerRestart
            | FaultKind::Network
            | FaultKind::RevokeClient
            | FaultKind::KillClient
    );
    let gc = matches!(fault, FaultKind::GcStorm | FaultKind::AggressiveGc);
    let damage = fault.damages_data() && incident.origin.reads_data();
    match incident.kind {
        IncidentKind::Failure(
            FailureKind::ContentMismatch | FailureKind::DeletedSnapshotPresent,
        ) => false,
        // No fault removes snapshot files: a lost snapshot is always unexpected.
        IncidentKind::Failure(FailureKind::SnapshotLost) => false,
        IncidentKind::Failure(FailureKind::RestoreFailed | FailureKind::RepositoryCheck) => damage,
        IncidentKind::Error(ErrorClass::NotThrough) => transport,
        IncidentKind::Error(ErrorClass::Raced) => gc,
        IncidentKind::Error(ErrorClass::Data | ErrorClass::Other) => damage,
        IncidentKind::Error(ErrorClass::Local) => false,
    }
}

#[derive(Debug, Clone)]
struct Entry {
    kind: FaultKind,
    label: String,
    time: String,
    injected: Instant,
    at: Duration,
    target: String,
    client: Option<ClientId>,
    duration: Option<Duration>,
    /// When it stops explaining; `None`: at the end of the run.
    window_end: Option<Instant>,
    /// When it said it stopped acting (a GC fault's GCs are over): races
    /// with a GC after that are another GC's.
    ended: Option<Instant>,
    /// Its own action failed: it explains only what no fault that took
    /// effect explains.
    failed: bool,
    first_detection: Option<Instant>,
    incidents: u64,
    /// Damage an earlier run of the state dir did: it explains, but it is
    /// not a fault of this run's report.
    inherited: bool,
}

impl Entry {
    fn explains(&self, incident: &Incident) -> bool {
        let window_end = match incident.kind {
            IncidentKind::Error(ErrorClass::Raced) => self
                .ended
                .map(|ended| ended + TRANSIENT_SLACK)
                .or(self.window_end),
            _ => self.window_end,
        };
        let overlaps =
            incident.ended >= self.injected && window_end.is_none_or(|end| incident.started <= end);
        let right_client = self.client.is_none_or(|c| c == incident.client);
        overlaps && right_client && can_cause(self.kind, incident)
    }
}

/// A fault that was asked for and never took effect: reported as such, so a
/// run that "survived" a fault which never happened does not look like one
/// that survived it.
#[derive(Debug, Clone)]
struct NotInjected {
    kind: FaultKind,
    /// The spec as a user writes it (`corrupt-pack@999h`).
    label: String,
    time: String,
    at: Duration,
    duration: Option<Duration>,
    reason: String,
}

/// Every fault injected in a run, in order, and what each explained.
#[derive(Debug)]
pub struct FaultLedger {
    /// When the run's clock started: labels and `at_ms` count from here.
    started: Mutex<Instant>,
    entries: Mutex<Vec<Entry>>,
    /// Faults asked for that never took effect; they explain nothing.
    not_injected: Mutex<Vec<NotInjected>>,
}

impl FaultLedger {
    pub fn new(started: Instant) -> Self {
        FaultLedger {
            started: Mutex::new(started),
            entries: Mutex::new(Vec::new()),
            not_injected: Mutex::new(Vec::new()),
        }
    }

    /// Records that `spec`, due `at` into the run, never took effect, and why.
    pub fn not_injected(&self, spec: &FaultSpec, at: Duration, reason: &str) {
        tracing::warn!(target: "snapstorm::faults", fault = %spec, reason, "fault not injected");
        self.not_injected
            .lock()
            .expect("ledger lock")
            .push(NotInjected {
                kind: spec.kind,
                label: spec.to_string(),
                time: now_rfc3339(),
                at,
                duration: spec.duration,
                reason: reason.to_owned(),
            });
    }

    /// Starts the run's clock again (once the first clients are connected,
    /// when the fault schedule starts too).
    pub fn start_clock(&self, at: Instant) {
        *self.started.lock().expect("clock lock") = at;
    }

    /// When the run's clock started.
    pub fn clock_started(&self) -> Instant {
        *self.started.lock().expect("clock lock")
    }

    /// Records a fault that takes effect now; returns its label (`corrupt-pack@15.2s`).
    pub fn record(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        let now = Instant::now();
        let at = now.saturating_duration_since(*self.started.lock().expect("clock lock"));
        let label = format!("{kind}@{:.1}s", at.as_secs_f64());
        let window_end = match kind {
            _ if kind.damages_data() => None,
            FaultKind::RevokeClient if duration.is_none() => None,
            // The cut starts when the client's upload reaches it, at the latest
            // when the kill stops waiting, and lasts KILL_CUT.
            FaultKind::KillClient => Some(now + KILL_ARMED_FOR + KILL_CUT + TRANSIENT_SLACK),
            _ => Some(now + duration.unwrap_or_default() + TRANSIENT_SLACK),
        };
        self.entries.lock().expect("ledger lock").push(Entry {
            kind,
            label: label.clone(),
            time: now_rfc3339(),
            injected: now,
            at,
            target: target.to_owned(),
            client,
            duration,
            window_end,
            ended: None,
            failed: false,
            first_detection: None,
            incidents: 0,
            inherited: false,
        });
        tracing::warn!(target: "snapstorm::faults", fault = %label, target, "fault injected");
        label
    }

    /// Takes over damage an earlier run did (`label` names it, run
    /// included): it explains the incidents that damage can cause, from the
    /// start of this run.
    pub fn inherit_damage(&self, kind: FaultKind, label: String, target: &str) {
        let started = self.clock_started();
        self.entries.lock().expect("ledger lock").push(Entry {
            kind,
            label,
            time: String::new(),
            injected: started,
            at: Duration::ZERO,
            target: target.to_owned(),
            client: None,
            duration: None,
            window_end: None,
            ended: None,
            failed: false,
            first_detection: None,
            incidents: 0,
            inherited: true,
        });
    }

    /// Records that the fault labelled `label` stopped acting now.
    pub fn ended(&self, label: &str) {
        self.update(label, |entry| entry.ended = Some(Instant::now()));
    }

    /// Records that the fault labelled `label` failed to carry out its action.
    pub fn failed(&self, label: &str) {
        self.update(label, |entry| entry.failed = true);
    }

    fn update(&self, label: &str, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.entries.lock().expect("ledger lock");
        if let Some(entry) = entries.iter_mut().find(|e| e.label == label) {
            change(entry);
        }
    }

    /// Whether a fault of this run damaged the repository's data.
    pub fn damaged_data(&self) -> bool {
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .any(|e| e.kind.damages_data() && !e.inherited)
    }

    /// The fault that best explains `incident`: one whose kind causes such
    /// incidents, whose window and client match; one that took effect before
    /// one whose action failed; the most recent first.
    pub fn explain(&self, incident: &Incident) -> Option<String> {
        let mut entries = self.entries.lock().expect("ledger lock");
        let entry = entries
            .iter_mut()
            .filter(|e| e.explains(incident))
            .max_by_key(|e| (!e.failed, e.injected))?;
        entry.first_detection.get_or_insert(incident.ended);
        entry.incidents += 1;
        Some(entry.label.clone())
    }

    /// The faults injected so far, with what they were seen to cause, then
    /// those that were asked for and never took effect.
    pub fn fault_reports(&self) -> Vec<FaultReport> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let not_injected: Vec<FaultReport> = self
            .not_injected
            .lock()
            .expect("ledger lock")
            .iter()
            .map(|n| FaultReport {
                kind: n.kind.name().to_owned(),
                label: n.label.clone(),
                time: n.time.clone(),
                at_ms: millis(n.at),
                target: "-".to_owned(),
                duration_ms: n.duration.map(millis),
                injected: false,
                reason: Some(n.reason.clone()),
                detected: false,
                detection_ms: None,
                incidents: 0,
            })
            .collect();
        let mut reports: Vec<FaultReport> = self
            .entries
            .lock()
            .expect("ledger lock")
            .iter()
            .filter(|e| !e.inherited)
            .map(|e| FaultReport {
                kind: e.kind.name().to_owned(),
                label: e.label.clone(),
                time: e.time.clone(),
                at_ms: millis(e.at),
                target: e.target.clone(),
                duration_ms: e.duration.map(millis),
                injected: true,
                reason: None,
                detected: e.first_detection.is_some(),
                detection_ms: e
                    .first_detection
                    .map(|d| millis(d.saturating_duration_since(e.injected))),
                incidents: e.incidents,
            })
            .collect();
        reports.extend(not_injected);
        reports
    }

    /// Faults of this run that took effect (those never injected, and damage
    /// inherited from earlier runs, not counted).
    pub fn injected(&self) -> usize {
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .filter(|e| !e.inherited)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Action;

    fn incident(client: u32, action: Action, kind: IncidentKind, started: Instant) -> Incident {
        Incident {
            client: ClientId(client),
            origin: Origin::Action(action),
            kind,
            started,
            ended: Instant::now(),
        }
    }

    const MISMATCH: IncidentKind = IncidentKind::Failure(FailureKind::ContentMismatch);
    const RESTORE_FAILED: IncidentKind = IncidentKind::Failure(FailureKind::RestoreFailed);
    const NOT_THROUGH: IncidentKind = IncidentKind::Error(ErrorClass::NotThrough);
    const DATA: IncidentKind = IncidentKind::Error(ErrorClass::Data);
    const RACED: IncidentKind = IncidentKind::Error(ErrorClass::Raced);

    #[test]
    fn wrong_data_is_never_explained() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        for kind in FaultKind::ALL {
            ledger.record(kind, "x", None, Some(Duration::from_secs(60)));
        }
        let restore = Action::RestoreRandomSnapshot;
        assert_eq!(
            ledger.explain(&incident(1, restore, MISMATCH, before)),
            None
        );
        let listed_again = Incident {
            origin: Origin::FinalCheck,
            ..incident(
                1,
                restore,
                IncidentKind::Failure(FailureKind::DeletedSnapshotPresent),
                before,
            )
        };
        assert_eq!(ledger.explain(&listed_again), None);
        let lost = Incident {
            origin: Origin::StartupCheck,
            ..incident(
                1,
                restore,
                IncidentKind::Failure(FailureKind::SnapshotLost),
                before,
            )
        };
        assert_eq!(ledger.explain(&lost), None);
    }

    #[test]
    fn data_damage_explains_only_what_reads_data() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let label = ledger.record(FaultKind::CorruptPack, "data/ab/abcd", None, None);
        assert!(label.starts_with("corrupt-pack@"));
        let restore = Action::RestoreRandomSnapshot;
        assert_eq!(
            ledger.explain(&incident(1, restore, RESTORE_FAILED, before)),
            Some(label.clone())
        );
        assert_eq!(
            ledger.explain(&incident(1, Action::SnapshotRoot, DATA, before)),
            Some(label.clone()),
            "a backup that failed on a missing blob"
        );
        assert_eq!(
            ledger.explain(&incident(1, Action::SnapshotRoot, NOT_THROUGH, before)),
            None,
            "a refused connection is not damage's doing"
        );
        assert_eq!(
            ledger.explain(&incident(1, Action::WriteRandomFiles, DATA, before)),
            None,
            "a local write is not the repository's doing"
        );
        assert_eq!(
            ledger.explain(&incident(1, Action::DeleteRandomSnapshot, DATA, before)),
            None,
            "deleting a snapshot reads no data"
        );
        assert_eq!(
            ledger.explain(&incident(
                1,
                restore,
                IncidentKind::Error(ErrorClass::Local),
                before
            )),
            None
        );
        let reports = ledger.fault_reports();
        assert!(reports[0].detected);
        assert_eq!(reports[0].incidents, 2);
        assert!(ledger.damaged_data());
    }

    #[test]
    fn transport_faults_explain_errors_not_failures() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        ledger.record(
            FaultKind::Network,
            "proxy",
            None,
            Some(Duration::from_secs(10)),
        );
        let restore = Action::RestoreRandomSnapshot;
        assert!(
            ledger
                .explain(&incident(2, Action::SnapshotRoot, NOT_THROUGH, before))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(2, restore, RESTORE_FAILED, before)),
            None
        );
        assert_eq!(ledger.explain(&incident(2, restore, DATA, before)), None);
        assert!(!ledger.damaged_data());
    }

    #[test]
    fn each_fault_gets_its_own_incidents_whatever_the_order() {
        for damage_first in [true, false] {
            let ledger = FaultLedger::new(Instant::now());
            let before = Instant::now();
            let (corrupt, restart) = if damage_first {
                let c = ledger.record(FaultKind::CorruptPack, "data/x", None, None);
                let r = ledger.record(
                    FaultKind::ServerRestart,
                    "server",
                    None,
                    Some(Duration::from_secs(5)),
                );
                (c, r)
            } else {
                let r = ledger.record(
                    FaultKind::ServerRestart,
                    "server",
                    None,
                    Some(Duration::from_secs(5)),
                );
                let c = ledger.record(FaultKind::CorruptPack, "data/x", None, None);
                (c, r)
            };
            let restore = Action::RestoreRandomSnapshot;
            assert_eq!(
                ledger.explain(&incident(1, Action::SnapshotRoot, NOT_THROUGH, before)),
                Some(restart.clone())
            );
            assert_eq!(
                ledger.explain(&incident(1, restore, RESTORE_FAILED, before)),
                Some(corrupt.clone())
            );
            let reports = ledger.fault_reports();
            assert!(reports.iter().all(|r| r.detected), "{reports:?}");
        }
    }

    #[test]
    fn a_fault_whose_action_failed_explains_last() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let pruned = ledger.record(FaultKind::AggressiveGc, "repository", None, None);
        let failed = ledger.record(FaultKind::AggressiveGc, "repository", None, None);
        ledger.failed(&failed);
        let restore = Action::RestoreRandomSnapshot;
        assert_eq!(
            ledger.explain(&incident(1, restore, RESTORE_FAILED, before)),
            Some(pruned),
            "the prune that ran, not the later one that failed"
        );
        let only = FaultLedger::new(Instant::now());
        let failed = only.record(FaultKind::AggressiveGc, "repository", None, None);
        only.failed(&failed);
        assert_eq!(
            only.explain(&incident(1, restore, RESTORE_FAILED, before)),
            Some(failed),
            "it may have acted in part: never a false unexpected failure"
        );
    }

    #[test]
    fn the_most_recent_matching_fault_wins() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let first = ledger.record(FaultKind::DeletePack, "data/a", None, None);
        let second = ledger.record(FaultKind::DeleteIndex, "index/b", None, None);
        let restore = Action::RestoreRandomSnapshot;
        assert_eq!(
            ledger.explain(&incident(1, restore, RESTORE_FAILED, before)),
            Some(second)
        );
        assert_ne!(first, "");
        assert!(!ledger.fault_reports()[0].detected);
    }

    #[test]
    fn client_faults_explain_only_their_client_and_gc_only_races() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        ledger.record(FaultKind::RevokeClient, "client-2", Some(ClientId(2)), None);
        assert!(
            ledger
                .explain(&incident(2, Action::SnapshotRoot, NOT_THROUGH, before))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(1, Action::SnapshotRoot, NOT_THROUGH, before)),
            None
        );

        let ledger = FaultLedger::new(Instant::now());
        let aggressive = ledger.record(FaultKind::AggressiveGc, "repository", None, None);
        assert_eq!(
            ledger.explain(&incident(1, Action::SnapshotRoot, RACED, before)),
            Some(aggressive.clone()),
            "a race while its GC runs"
        );
        ledger.ended(&aggressive);
        let later = Instant::now() + TRANSIENT_SLACK + Duration::from_secs(1);
        let late_race = Incident {
            started: later,
            ended: later,
            ..incident(1, Action::SnapshotRoot, RACED, before)
        };
        assert_eq!(
            ledger.explain(&late_race),
            None,
            "a race long after its GC ended is another GC's"
        );
        let late_loss = Incident {
            kind: RESTORE_FAILED,
            origin: Origin::Action(Action::RestoreRandomSnapshot),
            ..late_race
        };
        assert_eq!(
            ledger.explain(&late_loss),
            Some(aggressive),
            "its damage stays"
        );

        let ledger = FaultLedger::new(Instant::now());
        ledger.record(
            FaultKind::GcStorm,
            "server",
            None,
            Some(Duration::from_secs(5)),
        );
        assert!(
            ledger
                .explain(&incident(1, Action::SnapshotRoot, RACED, before))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(
                1,
                Action::RestoreRandomSnapshot,
                RESTORE_FAILED,
                before
            )),
            None,
            "the safe GC must not lose data: a failure during a gc-storm is unexpected"
        );
    }

    #[test]
    fn a_fault_never_injected_is_reported_and_explains_nothing() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let spec: FaultSpec = "corrupt-pack@999h".parse().unwrap();
        ledger.not_injected(&spec, spec.at, "the run ended at 5.0s, before its time");
        assert_eq!(
            ledger.explain(&incident(
                1,
                Action::RestoreRandomSnapshot,
                RESTORE_FAILED,
                before
            )),
            None
        );
        assert_eq!(ledger.injected(), 0);
        assert!(!ledger.damaged_data());
        let reports = ledger.fault_reports();
        assert_eq!(reports.len(), 1);
        assert!(!reports[0].injected);
        assert_eq!(reports[0].label, "corrupt-pack@999h");
        assert_eq!(
            reports[0].reason.as_deref(),
            Some("the run ended at 5.0s, before its time")
        );
    }

    #[test]
    fn an_incident_before_the_fault_is_not_its_doing() {
        let ledger = FaultLedger::new(Instant::now());
        let early = incident(1, Action::SnapshotRoot, DATA, Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        ledger.record(FaultKind::DeletePack, "x", None, None);
        assert_eq!(ledger.explain(&early), None);
        assert!(!ledger.fault_reports()[0].detected);
    }
}
