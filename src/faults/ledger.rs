//! The ledger of injected faults, and attribution: which fault, if any,
//! explains a failure or an error.
//!
//! - Damage to data (`corrupt-pack`, `delete-pack`, `delete-index`,
//!   `aggressive-gc`) stays: from the injection on, it explains verification
//!   failures and errors of actions that touch the repository.
//! - Transient faults (`server-restart`, `network`) explain errors, and
//!   restores that failed, of actions that overlap the fault (plus a few
//!   seconds for retries). Restored content that *differs* is never
//!   explained by a transient fault.
//! - `revoke-client` and `kill-client` explain the same, for their client only.
//! - `gc-storm` runs the safe GC: it explains errors (a backup racing a
//!   prune), never a failure — safe GC losing data is exactly what to find.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::exec::{Attribution, Incident};
use crate::engine::stats::FaultReport;
use crate::engine::store::{FailureKind, now_rfc3339};
use crate::engine::traits::ClientId;

use super::FaultKind;

/// After a transient fault ends, errors of this long still count as its doing
/// (a retry in flight, a backoff that ends after the fault).
pub const TRANSIENT_SLACK: Duration = Duration::from_secs(5);

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
    /// When it stops explaining; `None`: never.
    window_end: Option<Instant>,
    first_detection: Option<Instant>,
}

/// Every fault injected in a run, in order.
#[derive(Debug)]
pub struct FaultLedger {
    started: Instant,
    entries: Mutex<Vec<Entry>>,
}

/// Actions that touch only the client's own data directory.
fn local_only(action: &str) -> bool {
    matches!(
        action,
        "write-random-files" | "delete-random-subdirectory" | "delete-files"
    )
}

impl FaultLedger {
    pub fn new(started: Instant) -> Self {
        FaultLedger {
            started,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Records an injection made now; returns its label (`corrupt-pack@15.2s`).
    pub fn record(
        &self,
        kind: FaultKind,
        target: String,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        let now = Instant::now();
        let at = now.duration_since(self.started);
        let label = format!("{kind}@{:.1}s", at.as_secs_f64());
        let window_end = match kind {
            _ if kind.damages_data() => None,
            FaultKind::RevokeClient if duration.is_none() => None,
            FaultKind::KillClient => Some(now + super::inject::KILL_WINDOW + TRANSIENT_SLACK),
            _ => Some(now + duration.unwrap_or_default() + TRANSIENT_SLACK),
        };
        self.entries.lock().expect("ledger lock").push(Entry {
            kind,
            label: label.clone(),
            time: now_rfc3339(),
            injected: now,
            at,
            target,
            client,
            duration,
            window_end,
            first_detection: None,
        });
        tracing::warn!(target: "snapstorm::faults", fault = %label, "fault injected");
        label
    }

    /// Whether any injected fault damaged the repository's data.
    pub fn damaged_data(&self) -> bool {
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .any(|e| e.kind.damages_data())
    }
}

fn explains(kind: FaultKind, incident: &Incident<'_>) -> bool {
    if local_only(incident.action) {
        return false;
    }
    match (kind, incident.failure) {
        (kind, _) if kind.damages_data() => true,
        (
            FaultKind::ServerRestart
            | FaultKind::Network
            | FaultKind::RevokeClient
            | FaultKind::KillClient,
            None | Some(FailureKind::RestoreFailed),
        ) => true,
        (FaultKind::GcStorm, None) => true,
        _ => false,
    }
}

impl Attribution for FaultLedger {
    fn explain(&self, incident: &Incident<'_>) -> Option<String> {
        let mut entries = self.entries.lock().expect("ledger lock");
        let entry = entries.iter_mut().find(|e| {
            let overlaps = incident.ended >= e.injected
                && e.window_end.is_none_or(|end| incident.started <= end);
            let right_client = e.client.is_none_or(|c| c == incident.client);
            overlaps && right_client && explains(e.kind, incident)
        })?;
        entry.first_detection.get_or_insert(incident.ended);
        Some(entry.label.clone())
    }

    fn fault_reports(&self) -> Vec<FaultReport> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.entries
            .lock()
            .expect("ledger lock")
            .iter()
            .map(|e| FaultReport {
                kind: e.kind.name().to_owned(),
                time: e.time.clone(),
                at_ms: millis(e.at),
                target: e.target.clone(),
                duration_ms: e.duration.map(millis),
                detected: e.first_detection.is_some(),
                detection_ms: e
                    .first_detection
                    .map(|d| millis(d.duration_since(e.injected))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(
        client: u32,
        action: &str,
        failure: Option<FailureKind>,
        started: Instant,
    ) -> Incident<'_> {
        Incident {
            client: ClientId(client),
            action,
            failure,
            started,
            ended: Instant::now(),
        }
    }

    #[test]
    fn data_damage_explains_what_follows_for_good() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let label = ledger.record(FaultKind::CorruptPack, "data/ab/abcd".into(), None, None);
        assert!(label.starts_with("corrupt-pack@"));
        let mismatch = incident(
            1,
            "restore-random-snapID",
            Some(FailureKind::ContentMismatch),
            before,
        );
        assert_eq!(ledger.explain(&mismatch), Some(label.clone()));
        let local = incident(1, "write-random-files", None, before);
        assert_eq!(
            ledger.explain(&local),
            None,
            "a local write error is not the repository's doing"
        );
        let reports = ledger.fault_reports();
        assert!(reports[0].detected);
        assert!(ledger.damaged_data());
    }

    #[test]
    fn transient_faults_never_explain_different_content() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        ledger.record(
            FaultKind::Network,
            "proxy".into(),
            None,
            Some(Duration::from_secs(10)),
        );
        assert!(
            ledger
                .explain(&incident(2, "snapshot-root", None, before))
                .is_some()
        );
        assert!(
            ledger
                .explain(&incident(
                    2,
                    "restore-random-snapID",
                    Some(FailureKind::RestoreFailed),
                    before
                ))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(
                2,
                "restore-random-snapID",
                Some(FailureKind::ContentMismatch),
                before
            )),
            None
        );
        assert!(!ledger.damaged_data());
    }

    #[test]
    fn client_faults_explain_only_their_client_and_safe_gc_no_failure() {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        ledger.record(
            FaultKind::RevokeClient,
            "client-2".into(),
            Some(ClientId(2)),
            None,
        );
        assert!(
            ledger
                .explain(&incident(2, "snapshot-root", None, before))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(1, "snapshot-root", None, before)),
            None
        );

        let ledger = FaultLedger::new(Instant::now());
        ledger.record(
            FaultKind::GcStorm,
            "server".into(),
            None,
            Some(Duration::from_secs(5)),
        );
        assert!(
            ledger
                .explain(&incident(1, "snapshot-root", None, before))
                .is_some()
        );
        assert_eq!(
            ledger.explain(&incident(
                1,
                "restore-random-snapID",
                Some(FailureKind::RestoreFailed),
                before
            )),
            None,
            "the safe GC must not lose data: a failure during a gc-storm is unexpected"
        );
    }

    #[test]
    fn an_incident_before_the_fault_is_not_its_doing() {
        let ledger = FaultLedger::new(Instant::now());
        let early = Incident {
            client: ClientId(1),
            action: "snapshot-root",
            failure: None,
            started: Instant::now(),
            ended: Instant::now(),
        };
        std::thread::sleep(Duration::from_millis(5));
        ledger.record(FaultKind::DeletePack, "x".into(), None, None);
        assert_eq!(ledger.explain(&early), None);
        assert!(!ledger.fault_reports()[0].detected);
    }
}
