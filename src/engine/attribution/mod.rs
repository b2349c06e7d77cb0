// Over 500 lines: the verdict's rules and the ledger they read are one piece; the tests are in tests.rs.
//! Attribution: which injected fault, if any, explains an incident (a
//! verification failure or an action error). It is the engine's verdict, so
//! it lives here; the fault model says what faults are, backends carry them out.
//!
//! The rules (Jepsen's: a fault may excuse lost availability, never a wrong answer):
//! - Restored content that differs from its fingerprint, and a deleted
//!   snapshot that is listed again, are never explained: the restic format
//!   authenticates every blob, so damage shows as an error, never as other bytes.
//! - Damage to data (`corrupt-pack`, `delete-pack`, `delete-index`,
//!   `aggressive-gc`) is a set, recorded when it is done: the packs, blobs
//!   and index files the fault damaged. It explains an incident that reads
//!   data (a restore that failed, a data error, a check finding) only when
//!   everything the incident could not read lies in damage of faults
//!   injected before it: by cause, not by time. Where the backend cannot
//!   name what an incident could not read, or what a fault damaged, the
//!   fault's time decides instead (the weaker rule, said in the docs).
//! - Transport faults (`server-restart`, `network`, `revoke-client`,
//!   `kill-client`, `pause-client`, and `storage-errors`, the storage
//!   failing requests)
//!   explain errors whose requests did not get through (the proxy or the
//!   server recorded their fate), while they last (plus a few seconds for
//!   retries); client faults only for their client. They damage nothing:
//!   a backup that reported success and cannot be restored is unexpected,
//!   however many requests failed.
//! - GC faults (`gc-storm`, `aggressive-gc`) explain errors that raced a GC.
//! - A lock left behind (`stale-lock`) explains calls locked out by a lock
//!   no process of the run holds, until an `unlock` removes it. `unlock` removes locks, not
//!   data, and explains nothing: a prune that ran beside a backup whose lock
//!   it removed leaves snapshots that cannot be restored, and they are
//!   unexpected.
//! - Among the faults that explain an incident, the most recent wins, and
//!   each fault whose damage it needed is detected.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::actions::{Action, Origin};
use super::damage::{Damage, DataRef, Unreadable};
use super::report::FaultReport;
use super::store::{FailureKind, now_rfc3339};
use super::traits::{ClientId, ErrorClass};
use crate::faults::{FaultKind, FaultSpec, KILL_ARMED_FOR, KILL_CUT};

/// After a transient fault ends, errors this long after still count as its
/// doing (a retry in flight, a back-off that ends after the fault).
pub const TRANSIENT_SLACK: Duration = Duration::from_secs(5);

/// How long an incident waits for the damage of a fault that is still
/// acting (an aggressive GC pruning) before it is judged without it.
const DAMAGE_WAIT: Duration = Duration::from_secs(15 * 60);

/// How many items a note about unreadable data names.
const ITEMS_SHOWN: usize = 4;

/// What happened, as attribution sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// An action that could not be carried out.
    Error(ErrorClass),
    /// The repository did not give back what it was given.
    Failure(FailureKind),
}

impl IncidentKind {
    /// Whether only damage to data can explain it, and then by its evidence.
    pub fn about_data(self) -> bool {
        matches!(
            self,
            IncidentKind::Failure(FailureKind::RestoreFailed | FailureKind::RepositoryCheck)
                | IncidentKind::Error(ErrorClass::Data | ErrorClass::Other)
        )
    }
}

/// Something that went wrong during an action or a check.
#[derive(Debug, Clone)]
pub struct Incident {
    pub client: ClientId,
    pub origin: Origin,
    pub kind: IncidentKind,
    pub started: Instant,
    pub ended: Instant,
    /// What it could not read (for incidents about data).
    pub unreadable: Unreadable,
}

/// The verdict on one incident.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The injected fault that explains it (its label); `None`: unexpected.
    pub explained_by: Option<String>,
    /// What it could not read, where that was named.
    pub unreadable: Option<BTreeSet<DataRef>>,
    /// For an unexpected incident about data, why no damage explains it:
    /// `3 of 5 unreadable items are in no fault's damage: pack 3f2a1b2c, …`.
    pub note: Option<String>,
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
            | FaultKind::StorageErrors
            | FaultKind::PauseClient
    );
    let gc = fault.runs_any_gc();
    // A lock of no process of the run excludes restic calls until it goes.
    let locked_out = fault == FaultKind::StaleLock;
    // A storage that lost a node answers late, or with errors of its own;
    // it never gives back other data.
    let degraded = fault == FaultKind::StopOsd;
    // Forgets started at once race each other's deletes, and nothing else.
    let forgets_raced = fault == FaultKind::ParallelForget
        && incident.origin == Origin::Action(Action::ForgetSnapshots);
    let damage = fault.damages_data() && incident.origin.reads_data();
    match incident.kind {
        IncidentKind::Failure(
            FailureKind::ContentMismatch | FailureKind::DeletedSnapshotPresent,
        ) => false,
        // No fault removes snapshot files: a lost snapshot is always unexpected.
        IncidentKind::Failure(FailureKind::SnapshotLost) => false,
        IncidentKind::Failure(FailureKind::RestoreFailed | FailureKind::RepositoryCheck) => damage,
        IncidentKind::Error(ErrorClass::NotThrough) => transport || degraded,
        IncidentKind::Error(ErrorClass::Raced) => gc || forgets_raced,
        IncidentKind::Error(ErrorClass::LockedOut) => locked_out,
        IncidentKind::Error(ErrorClass::Other) => damage || degraded,
        IncidentKind::Error(ErrorClass::Data) => damage,
        IncidentKind::Error(ErrorClass::Local) => false,
    }
}

/// What is known of a fault's damage.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DamageState {
    /// Not a fault that damages data.
    NotData,
    /// Still being done or read (an aggressive GC pruning).
    Pending,
    Known(Damage),
    /// The backend cannot tell what it damaged: its time decides.
    Unknown,
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
    damage: DamageState,
    first_detection: Option<Instant>,
    incidents: u64,
    /// Damage an earlier run of the state dir did: it explains, but it is
    /// not a fault of this run's report.
    inherited: bool,
}

impl Entry {
    /// Whether its kind, window and client fit the incident (for an
    /// incident about data, its damage decides the rest).
    fn fits(&self, incident: &Incident) -> bool {
        let window_end = match incident.kind {
            // A GC fault's GCs, a lock left behind: over when it said so.
            IncidentKind::Error(ErrorClass::Raced | ErrorClass::LockedOut) => self
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

    /// The order in which fitting faults explain: one that took effect
    /// before one whose action failed, then the most recent.
    fn rank(&self) -> (bool, Instant) {
        (!self.failed, self.injected)
    }

    fn detected(&mut self, at: Instant) {
        self.first_detection.get_or_insert(at);
        self.incidents += 1;
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
    /// Signalled when a fault's damage becomes known.
    damage_known: Condvar,
    /// Faults asked for that never took effect; they explain nothing.
    not_injected: Mutex<Vec<NotInjected>>,
}

impl FaultLedger {
    pub fn new(started: Instant) -> Self {
        FaultLedger {
            started: Mutex::new(started),
            entries: Mutex::new(Vec::new()),
            damage_known: Condvar::new(),
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

    /// Milliseconds from the run's clock start to `at` (0 for before it):
    /// how the trace and the report say when something happened.
    pub fn ms_into_run(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.clock_started());
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a fault that takes effect now; returns its label
    /// (`corrupt-pack@15.2s`, or with `asked`, the time it was asked for:
    /// a data fault that waited for something to damage keeps that name).
    /// A data fault's damage is pending until [`FaultLedger::damaged`] or
    /// [`FaultLedger::settle`].
    pub fn record(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
        asked: Option<Duration>,
    ) -> String {
        let now = Instant::now();
        let at = now.saturating_duration_since(*self.started.lock().expect("clock lock"));
        let label = format!("{kind}@{:.1}s", asked.unwrap_or(at).as_secs_f64());
        let window_end = match kind {
            _ if kind.damages_data() => None,
            FaultKind::RevokeClient if duration.is_none() => None,
            // Until an `unlock` removes the lock (it ends the fault then),
            // until the last of the forgets it started ends.
            FaultKind::StaleLock | FaultKind::ParallelForget => None,
            // The cut starts when the client's upload reaches it, at the latest
            // when the kill stops waiting, and lasts KILL_CUT.
            FaultKind::KillClient => Some(now + KILL_ARMED_FOR + KILL_CUT + TRANSIENT_SLACK),
            // The hold starts as the cut does and lasts its duration.
            FaultKind::PauseClient => {
                Some(now + KILL_ARMED_FOR + duration.unwrap_or_default() + TRANSIENT_SLACK)
            }
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
            damage: if kind.damages_data() {
                DamageState::Pending
            } else {
                DamageState::NotData
            },
            first_detection: None,
            incidents: 0,
            inherited: false,
        });
        tracing::warn!(target: "snapstorm::faults", fault = %label, target, "fault injected");
        label
    }

    /// Takes over damage an earlier run did (`label` names it, run
    /// included): it explains the incidents that damage can cause, from the
    /// start of this run. `None`: that run could not tell what it damaged.
    pub fn inherit_damage(
        &self,
        kind: FaultKind,
        label: String,
        target: &str,
        damage: Option<Damage>,
    ) {
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
            damage: damage.map_or(DamageState::Unknown, DamageState::Known),
            first_detection: None,
            incidents: 0,
            inherited: true,
        });
    }

    /// Records what the data fault labelled `label` damaged (`None`: the
    /// backend cannot tell); incidents waiting for it are judged now.
    pub fn damaged(&self, label: &str, damage: Option<Damage>) {
        self.update(label, |entry| {
            if entry.damage != DamageState::NotData {
                entry.damage = damage.map_or(DamageState::Unknown, DamageState::Known);
            }
        });
        self.damage_known.notify_all();
    }

    /// The fault labelled `label` is done acting: damage it never reported
    /// is unknown from now on, so nothing waits for it.
    pub fn settle(&self, label: &str) {
        self.update(label, |entry| {
            if entry.damage == DamageState::Pending {
                entry.damage = DamageState::Unknown;
            }
        });
        self.damage_known.notify_all();
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

    /// Whether any damage to data (of this run or an earlier one) was done
    /// before `at`: only then is it worth finding out what an incident
    /// could not read.
    pub fn damage_before(&self, at: Instant) -> bool {
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .any(|e| e.kind.damages_data() && e.injected <= at)
    }

    /// The entries, once no fault that could explain `incident` is still
    /// reading its damage (or [`DAMAGE_WAIT`] has passed).
    fn entries_for(&self, incident: &Incident) -> MutexGuard<'_, Vec<Entry>> {
        let entries = self.entries.lock().expect("ledger lock");
        if !incident.kind.about_data() || !incident.unreadable.is_known() {
            return entries;
        }
        let pending = |entries: &mut Vec<Entry>| {
            entries
                .iter()
                .any(|e| e.damage == DamageState::Pending && e.fits(incident))
        };
        self.damage_known
            .wait_timeout_while(entries, DAMAGE_WAIT, pending)
            .expect("ledger lock")
            .0
    }

    /// The verdict on `incident`: the fault that explains it, if any (see
    /// the rules at the top), counted as that fault's detection.
    pub fn explain(&self, incident: &Incident) -> Attribution {
        let mut entries = self.entries_for(incident);
        let fitting: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].fits(incident))
            .collect();
        let best = |candidates: &[usize], entries: &[Entry]| {
            candidates
                .iter()
                .copied()
                .max_by_key(|&i| entries[i].rank())
        };
        let by_time = |entries: &mut Vec<Entry>, candidates: &[usize]| {
            let i = best(candidates, entries)?;
            entries[i].detected(incident.ended);
            Some(entries[i].label.clone())
        };
        let items = match (&incident.unreadable, incident.kind.about_data()) {
            (Unreadable::Named(items), true) => items,
            // Not about data, or the backend cannot say what was unreadable.
            _ => {
                return Attribution {
                    explained_by: by_time(&mut entries, &fitting),
                    ..Attribution::default()
                };
            }
        };
        let unknown: Vec<usize> = fitting
            .iter()
            .copied()
            .filter(|&i| !matches!(entries[i].damage, DamageState::Known(_)))
            .collect();
        let damaged = |i: usize, item: &DataRef| match &entries[i].damage {
            DamageState::Known(damage) => damage.contains(item),
            _ => false,
        };
        let outside: BTreeSet<DataRef> = items
            .iter()
            .filter(|item| !fitting.iter().any(|&i| damaged(i, item)))
            .cloned()
            .collect();
        let mut attribution = Attribution {
            unreadable: Some(items.clone()),
            ..Attribution::default()
        };
        if items.is_empty() {
            attribution.note = (!fitting.is_empty())
                .then(|| "nothing it needs is unreadable now, so no damage explains it".to_owned());
            return attribution;
        }
        if outside.is_empty() {
            let causes: Vec<usize> = fitting
                .iter()
                .copied()
                .filter(|&i| items.iter().any(|item| damaged(i, item)))
                .collect();
            let chosen = best(&causes, &entries).expect("some damage holds each item");
            for &i in &causes {
                entries[i].detected(incident.ended);
            }
            attribution.explained_by = Some(entries[chosen].label.clone());
            return attribution;
        }
        // A fault whose damage is unknown may have done the rest.
        if let Some(label) = by_time(&mut entries, &unknown) {
            attribution.explained_by = Some(label);
            return attribution;
        }
        if !fitting.is_empty() {
            attribution.note = Some(format!(
                "{} of {} unreadable item(s) are in no fault's damage: {}",
                outside.len(),
                items.len(),
                Unreadable::describe(&outside, ITEMS_SHOWN)
            ));
        }
        attribution
    }

    /// What the fault labelled `label` damaged, when known.
    pub fn damage_of(&self, label: &str) -> Option<Damage> {
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .find(|e| e.label == label)
            .and_then(|e| match &e.damage {
                DamageState::Known(damage) => Some(damage.clone()),
                _ => None,
            })
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
                damaged: None,
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
                damaged: match &e.damage {
                    DamageState::Known(damage) => Some(damage.len() as u64),
                    _ => None,
                },
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
mod tests;
