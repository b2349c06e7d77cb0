//! The rules, one by one, on a ledger with no run around it.

use super::*;
use crate::engine::Action;

fn incident(client: u32, action: Action, kind: IncidentKind, started: Instant) -> Incident {
    Incident {
        client: ClientId(client),
        origin: Origin::Action(action),
        kind,
        started,
        ended: Instant::now(),
        unreadable: Unreadable::Unknown,
    }
}

fn explained(ledger: &FaultLedger, incident: &Incident) -> Option<String> {
    ledger.explain(incident).explained_by
}

const MISMATCH: IncidentKind = IncidentKind::Failure(FailureKind::ContentMismatch);
const RESTORE_FAILED: IncidentKind = IncidentKind::Failure(FailureKind::RestoreFailed);
const NOT_THROUGH: IncidentKind = IncidentKind::Error(ErrorClass::NotThrough);
const DATA: IncidentKind = IncidentKind::Error(ErrorClass::Data);
const RACED: IncidentKind = IncidentKind::Error(ErrorClass::Raced);
const LOCKED_OUT: IncidentKind = IncidentKind::Error(ErrorClass::LockedOut);

#[test]
fn wrong_data_is_never_explained() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    for kind in FaultKind::ALL {
        ledger.record(kind, "x", None, Some(Duration::from_secs(60)), None);
    }
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, MISMATCH, before)),
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
    assert_eq!(explained(&ledger, &listed_again), None);
    let lost = Incident {
        origin: Origin::StartupCheck,
        ..incident(
            1,
            restore,
            IncidentKind::Failure(FailureKind::SnapshotLost),
            before,
        )
    };
    assert_eq!(explained(&ledger, &lost), None);
}

#[test]
fn data_damage_explains_only_what_reads_data() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let label = ledger.record(FaultKind::CorruptPack, "data/ab/abcd", None, None, None);
    assert!(label.starts_with("corrupt-pack@"));
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
        Some(label.clone())
    );
    assert_eq!(
        explained(&ledger, &incident(1, Action::SnapshotRoot, DATA, before)),
        Some(label.clone()),
        "a backup that failed on a missing blob"
    );
    assert_eq!(
        explained(
            &ledger,
            &incident(1, Action::SnapshotRoot, NOT_THROUGH, before)
        ),
        None,
        "a refused connection is not damage's doing"
    );
    assert_eq!(
        explained(
            &ledger,
            &incident(1, Action::WriteRandomFiles, DATA, before)
        ),
        None,
        "a local write is not the repository's doing"
    );
    assert_eq!(
        explained(
            &ledger,
            &incident(1, Action::DeleteRandomSnapshot, DATA, before)
        ),
        None,
        "deleting a snapshot reads no data"
    );
    assert_eq!(
        explained(
            &ledger,
            &incident(1, restore, IncidentKind::Error(ErrorClass::Local), before)
        ),
        None
    );
    let reports = ledger.fault_reports();
    assert!(reports[0].detected);
    assert_eq!(reports[0].incidents, 2);
    assert!(ledger.damaged_data());
}

/// The network failing requests, or the storage (`storage-errors`, restic
/// #3646): a request that did not get through is theirs; a backup that
/// reported success and cannot be restored is not, however many failed.
#[test]
fn transport_faults_explain_errors_not_failures() {
    for kind in [FaultKind::Network, FaultKind::StorageErrors] {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        ledger.record(kind, "proxy", None, Some(Duration::from_secs(10)), None);
        let restore = Action::RestoreRandomSnapshot;
        assert!(
            explained(
                &ledger,
                &incident(2, Action::SnapshotRoot, NOT_THROUGH, before)
            )
            .is_some(),
            "{kind}"
        );
        assert_eq!(
            explained(&ledger, &incident(2, restore, RESTORE_FAILED, before)),
            None,
            "{kind}"
        );
        assert_eq!(
            explained(&ledger, &incident(2, restore, DATA, before)),
            None,
            "{kind}"
        );
        assert!(!ledger.damaged_data(), "{kind}");
    }
}

/// A paused client (`pause-client`, rustic docs #144): its own requests
/// that did not get through are the pause's, another client's are not, and
/// a snapshot that cannot be restored after the pause is unexpected — the
/// pause damages nothing; whatever removed the frozen backup's packs did.
#[test]
fn a_pause_explains_its_clients_errors_and_no_lost_data() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let label = ledger.record(
        FaultKind::PauseClient,
        "client-1",
        Some(ClientId(1)),
        Some(Duration::from_secs(10)),
        None,
    );
    let snapshot = Action::SnapshotRoot;
    assert_eq!(
        explained(&ledger, &incident(1, snapshot, NOT_THROUGH, before)),
        Some(label)
    );
    assert_eq!(
        explained(&ledger, &incident(2, snapshot, NOT_THROUGH, before)),
        None
    );
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
        None
    );
    assert_eq!(
        explained(&ledger, &incident(1, restore, DATA, before)),
        None
    );
    assert!(!ledger.damaged_data());
}

/// A stopped OSD (`stop-osd`) explains errors of every client while it
/// lasts, the storage's own errors too, and never lost or wrong data.
#[test]
fn a_stopped_osd_explains_errors_and_no_lost_or_wrong_data() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let label = ledger.record(
        FaultKind::StopOsd,
        "ceph-osd PID 4242",
        None,
        Some(Duration::from_secs(10)),
        None,
    );
    let (snapshot, restore) = (Action::SnapshotRoot, Action::RestoreRandomSnapshot);
    let storage_error = IncidentKind::Error(ErrorClass::Other);
    for client in [1, 2] {
        assert_eq!(
            explained(&ledger, &incident(client, snapshot, NOT_THROUGH, before)),
            Some(label.clone())
        );
        assert_eq!(
            explained(&ledger, &incident(client, snapshot, storage_error, before)),
            Some(label.clone())
        );
    }
    for lost in [RESTORE_FAILED, MISMATCH, DATA, RACED] {
        assert_eq!(
            explained(&ledger, &incident(1, restore, lost, before)),
            None,
            "{lost:?}"
        );
    }
    assert!(!ledger.damaged_data());
}

/// A lock left behind (`stale-lock`) explains the calls that gave up
/// waiting for a lock, until an `unlock` ends it; `unlock` explains
/// nothing, and neither explains data a restore could not read.
#[test]
fn a_stale_lock_explains_lock_waits_until_it_is_removed() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let storm = ledger.record(
        FaultKind::GcStorm,
        "repository",
        None,
        Some(Duration::from_secs(60)),
        None,
    );
    let stale = ledger.record(FaultKind::StaleLock, "locks/ab", None, None, None);
    let snapshot = Action::SnapshotRoot;
    assert_eq!(
        explained(&ledger, &incident(1, snapshot, LOCKED_OUT, before)),
        Some(stale.clone())
    );
    // A race with a GC stays the GC's, however recent the lock.
    assert_eq!(
        explained(&ledger, &incident(1, snapshot, RACED, before)),
        Some(storm)
    );
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
        None
    );
    ledger.record(FaultKind::Unlock, "locks", None, None, None);
    ledger.ended(&stale);
    let long_after = Incident {
        started: Instant::now() + TRANSIENT_SLACK + Duration::from_secs(1),
        ended: Instant::now() + TRANSIENT_SLACK + Duration::from_secs(2),
        ..incident(1, snapshot, LOCKED_OUT, before)
    };
    assert_eq!(explained(&ledger, &long_after), None);
    assert_eq!(
        explained(&ledger, &incident(2, snapshot, NOT_THROUGH, before)),
        None
    );
    assert!(!ledger.damaged_data());
}

/// Forgets started at once (`parallel-forget`) explain a forget that raced
/// another's delete, on any client, until the last of them ends; never a
/// restore's race, an error about data, or a lost snapshot.
#[test]
fn forgets_at_once_explain_their_own_races_only() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let label = ledger.record(
        FaultKind::ParallelForget,
        "client-1, client-2",
        None,
        None,
        None,
    );
    let forget = Action::ForgetSnapshots;
    for client in [1, 2] {
        assert_eq!(
            explained(&ledger, &incident(client, forget, RACED, before)),
            Some(label.clone())
        );
    }
    let restore = Action::RestoreRandomSnapshot;
    for (action, kind) in [
        (restore, RACED),
        (restore, RESTORE_FAILED),
        (forget, DATA),
        (forget, NOT_THROUGH),
    ] {
        assert_eq!(
            explained(&ledger, &incident(1, action, kind, before)),
            None,
            "{action} {kind:?}"
        );
    }
    let lost = Incident {
        origin: Origin::FinalCheck,
        ..incident(
            1,
            forget,
            IncidentKind::Failure(FailureKind::SnapshotLost),
            before,
        )
    };
    assert_eq!(explained(&ledger, &lost), None);
    ledger.ended(&label);
    let long_after = Incident {
        started: Instant::now() + TRANSIENT_SLACK + Duration::from_secs(1),
        ended: Instant::now() + TRANSIENT_SLACK + Duration::from_secs(2),
        ..incident(1, forget, RACED, before)
    };
    assert_eq!(
        explained(&ledger, &long_after),
        None,
        "its forgets are over"
    );
    assert!(!ledger.damaged_data());
}

#[test]
fn each_fault_gets_its_own_incidents_whatever_the_order() {
    for damage_first in [true, false] {
        let ledger = FaultLedger::new(Instant::now());
        let before = Instant::now();
        let (corrupt, restart) = if damage_first {
            let c = ledger.record(FaultKind::CorruptPack, "data/x", None, None, None);
            let r = ledger.record(
                FaultKind::ServerRestart,
                "server",
                None,
                Some(Duration::from_secs(5)),
                None,
            );
            (c, r)
        } else {
            let r = ledger.record(
                FaultKind::ServerRestart,
                "server",
                None,
                Some(Duration::from_secs(5)),
                None,
            );
            let c = ledger.record(FaultKind::CorruptPack, "data/x", None, None, None);
            (c, r)
        };
        let restore = Action::RestoreRandomSnapshot;
        assert_eq!(
            explained(
                &ledger,
                &incident(1, Action::SnapshotRoot, NOT_THROUGH, before)
            ),
            Some(restart.clone())
        );
        assert_eq!(
            explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
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
    let pruned = ledger.record(FaultKind::AggressiveGc, "repository", None, None, None);
    let failed = ledger.record(FaultKind::AggressiveGc, "repository", None, None, None);
    ledger.failed(&failed);
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
        Some(pruned),
        "the prune that ran, not the later one that failed"
    );
    let only = FaultLedger::new(Instant::now());
    let failed = only.record(FaultKind::AggressiveGc, "repository", None, None, None);
    only.failed(&failed);
    assert_eq!(
        explained(&only, &incident(1, restore, RESTORE_FAILED, before)),
        Some(failed),
        "it may have acted in part: never a false unexpected failure"
    );
}

#[test]
fn the_most_recent_matching_fault_wins() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let first = ledger.record(FaultKind::DeletePack, "data/a", None, None, None);
    let second = ledger.record(FaultKind::DeleteIndex, "index/b", None, None, None);
    let restore = Action::RestoreRandomSnapshot;
    assert_eq!(
        explained(&ledger, &incident(1, restore, RESTORE_FAILED, before)),
        Some(second)
    );
    assert_ne!(first, "");
    assert!(!ledger.fault_reports()[0].detected);
}

#[test]
fn client_faults_explain_only_their_client_and_gc_only_races() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    ledger.record(
        FaultKind::RevokeClient,
        "client-2",
        Some(ClientId(2)),
        None,
        None,
    );
    assert!(
        explained(
            &ledger,
            &incident(2, Action::SnapshotRoot, NOT_THROUGH, before)
        )
        .is_some()
    );
    assert_eq!(
        explained(
            &ledger,
            &incident(1, Action::SnapshotRoot, NOT_THROUGH, before)
        ),
        None
    );

    let ledger = FaultLedger::new(Instant::now());
    let aggressive = ledger.record(FaultKind::AggressiveGc, "repository", None, None, None);
    assert_eq!(
        explained(&ledger, &incident(1, Action::SnapshotRoot, RACED, before)),
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
        explained(&ledger, &late_race),
        None,
        "a race long after its GC ended is another GC's"
    );
    let late_loss = Incident {
        kind: RESTORE_FAILED,
        origin: Origin::Action(Action::RestoreRandomSnapshot),
        ..late_race
    };
    assert_eq!(
        explained(&ledger, &late_loss),
        Some(aggressive),
        "its damage stays"
    );

    let ledger = FaultLedger::new(Instant::now());
    ledger.record(
        FaultKind::GcStorm,
        "server",
        None,
        Some(Duration::from_secs(5)),
        None,
    );
    assert!(explained(&ledger, &incident(1, Action::SnapshotRoot, RACED, before)).is_some());
    assert_eq!(
        explained(
            &ledger,
            &incident(1, Action::RestoreRandomSnapshot, RESTORE_FAILED, before)
        ),
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
        explained(
            &ledger,
            &incident(1, Action::RestoreRandomSnapshot, RESTORE_FAILED, before)
        ),
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

fn named(items: &[DataRef]) -> Unreadable {
    Unreadable::named(items.iter().cloned())
}

fn pack(id: &str) -> DataRef {
    DataRef::Pack(id.into())
}

fn blob(id: &str) -> DataRef {
    DataRef::Blob(id.into())
}

fn restore_failed(unreadable: Unreadable, before: Instant) -> Incident {
    Incident {
        unreadable,
        ..incident(1, Action::RestoreRandomSnapshot, RESTORE_FAILED, before)
    }
}

#[test]
fn damage_explains_only_what_it_damaged() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let corrupt = ledger.record(FaultKind::CorruptPack, "data/aa", None, None, None);
    ledger.damaged(&corrupt, Some([pack("aa"), blob("a1")].into()));

    let only_its_pack = ledger.explain(&restore_failed(named(&[pack("aa")]), before));
    assert_eq!(only_its_pack.explained_by, Some(corrupt.clone()));
    assert_eq!(only_its_pack.note, None);

    let another_pack = ledger.explain(&restore_failed(named(&[pack("bb")]), before));
    assert_eq!(another_pack.explained_by, None, "a pack no fault touched");
    assert_eq!(
        another_pack.note.as_deref(),
        Some("1 of 1 unreadable item(s) are in no fault's damage: pack bb")
    );

    let both = ledger.explain(&restore_failed(
        named(&[pack("aa"), pack("bb"), blob("b2")]),
        before,
    ));
    assert_eq!(both.explained_by, None, "part of it is no fault's doing");
    assert_eq!(
        both.note.as_deref(),
        Some("2 of 3 unreadable item(s) are in no fault's damage: pack bb, blob b2")
    );

    let nothing = ledger.explain(&restore_failed(named(&[]), before));
    assert_eq!(nothing.explained_by, None);
    assert!(
        nothing
            .note
            .unwrap()
            .contains("nothing it needs is unreadable")
    );

    let reports = ledger.fault_reports();
    assert_eq!(reports[0].incidents, 1);
    assert_eq!(reports[0].damaged, Some(2));
}

#[test]
fn the_damage_of_several_faults_together_explains_and_each_is_detected() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let index = ledger.record(FaultKind::DeleteIndex, "index/ii", None, None, None);
    ledger.damaged(
        &index,
        Some([DataRef::File("index/ii".into()), blob("b1")].into()),
    );
    let corrupt = ledger.record(FaultKind::CorruptPack, "data/aa", None, None, None);
    ledger.damaged(&corrupt, Some([pack("aa")].into()));
    let unrelated = ledger.record(FaultKind::DeletePack, "data/cc", None, None, None);
    ledger.damaged(&unrelated, Some([pack("cc")].into()));

    let verdict = ledger.explain(&restore_failed(named(&[blob("b1"), pack("aa")]), before));
    assert_eq!(
        verdict.explained_by,
        Some(corrupt),
        "the most recent of its causes"
    );
    let reports = ledger.fault_reports();
    assert!(reports[0].detected && reports[1].detected, "{reports:?}");
    assert!(!reports[2].detected, "a fault whose damage it did not need");
}

#[test]
fn a_fault_injected_after_the_incident_explains_nothing_of_it() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let failure = restore_failed(named(&[pack("aa")]), before);
    std::thread::sleep(Duration::from_millis(5));
    let late = ledger.record(FaultKind::DeletePack, "data/aa", None, None, None);
    ledger.damaged(&late, Some([pack("aa")].into()));
    assert_eq!(ledger.explain(&failure).explained_by, None);
}

#[test]
fn damage_a_backend_cannot_name_explains_by_time() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    let label = ledger.record(FaultKind::CorruptPack, "p", None, None, None);
    ledger.damaged(&label, None);
    assert_eq!(
        ledger
            .explain(&restore_failed(named(&[pack("zz")]), before))
            .explained_by,
        Some(label.clone()),
        "it may have damaged zz: never a false unexpected"
    );
    assert_eq!(
        ledger
            .explain(&restore_failed(Unreadable::Unknown, before))
            .explained_by,
        Some(label)
    );
}

#[test]
fn an_incident_waits_for_the_damage_of_a_fault_still_acting() {
    let ledger = std::sync::Arc::new(FaultLedger::new(Instant::now()));
    let before = Instant::now();
    let gc = ledger.record(FaultKind::AggressiveGc, "repository", None, None, None);
    let pruning = {
        let ledger = ledger.clone();
        let gc = gc.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            ledger.damaged(&gc, Some([pack("gone"), blob("g1")].into()));
        })
    };
    let verdict = ledger.explain(&restore_failed(named(&[blob("g1")]), before));
    pruning.join().unwrap();
    assert_eq!(verdict.explained_by, Some(gc.clone()));
    // A fault settled without damage reported explains by time.
    let other = ledger.record(FaultKind::DeletePack, "x", None, None, None);
    ledger.settle(&other);
    ledger.settle(&gc);
    assert_eq!(
        ledger.damage_of(&gc).map(|d| d.len()),
        Some(2),
        "settling keeps what is known"
    );
    assert_eq!(ledger.damage_of(&other), None);
}

#[test]
fn inherited_damage_keeps_its_set() {
    let ledger = FaultLedger::new(Instant::now());
    let before = Instant::now();
    ledger.inherit_damage(
        FaultKind::DeletePack,
        "delete-pack@3.0s (run 1)".into(),
        "data/aa",
        Some([pack("aa")].into()),
    );
    assert_eq!(
        ledger
            .explain(&restore_failed(named(&[pack("aa")]), before))
            .explained_by
            .as_deref(),
        Some("delete-pack@3.0s (run 1)")
    );
    assert_eq!(
        ledger
            .explain(&restore_failed(named(&[pack("bb")]), before))
            .explained_by,
        None
    );
    assert_eq!(ledger.injected(), 0);
}

#[test]
fn a_fault_that_waited_keeps_the_time_it_was_asked_for() {
    let ledger = FaultLedger::new(Instant::now());
    let label = ledger.record(
        FaultKind::CorruptPack,
        "p",
        None,
        None,
        Some(Duration::from_secs(15)),
    );
    assert_eq!(label, "corrupt-pack@15.0s");
}

#[test]
fn an_incident_before_the_fault_is_not_its_doing() {
    let ledger = FaultLedger::new(Instant::now());
    let early = incident(1, Action::SnapshotRoot, DATA, Instant::now());
    std::thread::sleep(Duration::from_millis(5));
    ledger.record(FaultKind::DeletePack, "x", None, None, None);
    assert_eq!(explained(&ledger, &early), None);
    assert!(!ledger.fault_reports()[0].detected);
}
