//! Which backup an aggressive prune of a recording raced: the step a
//! replay races it with again (see [`RacedStep`]). Two ways a running
//! backup loses to such a prune, each read off the trace:
//!
//! - **its own packs**: stored before the prune listed the packs, named by
//!   no index yet (the backup writes its index last), so removed as
//!   unused. The prune's trace line names who stored each and when; the
//!   step is the client's action running then.
//! - **data it built on**: it read the index before the prune was done
//!   removing what no snapshot the prune read used, reused some of that
//!   instead of storing it again, and wrote its snapshot after the prune
//!   had read the snapshots. The failures the prune explains name the
//!   snapshots; the step is the one that made the earliest of them while
//!   the prune ran.

use std::collections::BTreeMap;

use crate::engine::actions::Action;
use crate::engine::record::ActionRecord;
use crate::engine::stats::Outcome;
use crate::engine::store::Failure;
use crate::engine::trace::{FaultLine, PruneLine};
use crate::faults::{FaultKind, RacedStep};

/// The backup `fault` (an aggressive GC, its trace line `prune` if it
/// wrote one) raced in a run of `records` (every action of the run), where
/// `failures` are the run's: its own packs first, else data it built on.
pub fn raced_step(
    fault: &FaultLine,
    prune: Option<&PruneLine>,
    records: &[&ActionRecord],
    failures: &[&Failure],
) -> Option<RacedStep> {
    if fault.kind != FaultKind::AggressiveGc {
        return None;
    }
    prune
        .and_then(|prune| stored_by(prune, records))
        .or_else(|| built_on(fault, prune, records, failures))
}

/// A step of a client's own stream that made a snapshot.
fn a_backup(record: &ActionRecord) -> bool {
    record.action == Action::SnapshotRoot
        && record.outcome == Outcome::Ok
        && record.params == Default::default()
        && !record.final_check
}

fn step_of(record: &ActionRecord) -> RacedStep {
    RacedStep {
        client: record.client.0,
        seq: record.drawn().seq,
    }
}

/// The backup that stored the most of the packs the prune removed: for
/// each, the action its client had started last when the storage took it,
/// if that is a backup of its own stream (a backup a fault asked for, or
/// killed, is the fault's, not a step to race).
fn stored_by(prune: &PruneLine, records: &[&ActionRecord]) -> Option<RacedStep> {
    let mut stored: BTreeMap<RacedStep, usize> = BTreeMap::new();
    for upload in &prune.raced {
        let running = records
            .iter()
            .filter(|r| r.client == upload.client && !r.final_check && r.at_ms <= upload.at_ms)
            .max_by_key(|r| (r.at_ms, r.order));
        if let Some(running) = running.filter(|r| a_backup(r)) {
            *stored.entry(step_of(running)).or_default() += 1;
        }
    }
    let most = stored.values().copied().max()?;
    stored
        .into_iter()
        .find(|(_, count)| *count == most)
        .map(|(step, _)| step)
}

/// The earliest backup whose snapshot a failure the prune explains names,
/// that read the index before the prune was done (or, where the trace does
/// not say when, began before the prune) and wrote its snapshot after the
/// prune began.
fn built_on(
    fault: &FaultLine,
    prune: Option<&PruneLine>,
    records: &[&ActionRecord],
    failures: &[&Failure],
) -> Option<RacedStep> {
    let read_before = prune
        .and_then(|p| p.ended_ms.or(p.listed_ms))
        .unwrap_or(fault.at_ms.saturating_add(1));
    failures
        .iter()
        .filter(|f| f.explained_by.as_deref() == Some(fault.fault.as_str()))
        .filter_map(|f| f.snapshot.as_ref())
        .filter_map(|lost| {
            records
                .iter()
                .find(|r| a_backup(r) && r.snapshot.as_ref() == Some(lost))
        })
        .filter(|r| r.at_ms < read_before && r.at_ms + r.duration_ms > fault.at_ms)
        .min_by_key(|r| (r.at_ms, r.order))
        .map(|r| step_of(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::actions::Origin;
    use crate::engine::store::FailureKind;
    use crate::engine::trace::RacedAt;
    use crate::engine::traits::ClientId;

    fn record(client: u32, seq: u64, action: Action, at_ms: u64, duration_ms: u64) -> ActionRecord {
        ActionRecord {
            time: String::new(),
            run: 1,
            client: ClientId(client),
            seq,
            order: at_ms,
            at_ms,
            drawn_as: None,
            action,
            params: Default::default(),
            outcome: Outcome::Ok,
            duration_ms,
            snapshot: (action == Action::SnapshotRoot).then(|| format!("snap-{client}-{seq}")),
            details: Default::default(),
            message: None,
            error_class: None,
            final_check: false,
            abandoned: false,
            explained_by: None,
            live: 0,
            deleted: 0,
            failures: Vec::new(),
        }
    }

    fn fault(at_ms: u64) -> FaultLine {
        FaultLine {
            time: String::new(),
            run: 1,
            fault: "aggressive-gc@30.0s".into(),
            kind: FaultKind::AggressiveGc,
            target: String::new(),
            client: None,
            duration_ms: None,
            spec: None,
            at_ms,
            order: 0,
        }
    }

    fn prune(listed_ms: u64, raced: &[(u32, u64)]) -> PruneLine {
        PruneLine {
            time: String::new(),
            run: 1,
            prune: "aggressive-gc@30.0s".into(),
            listed_ms: Some(listed_ms),
            ended_ms: None,
            raced: raced
                .iter()
                .map(|&(client, at_ms)| RacedAt {
                    client: ClientId(client),
                    at_ms,
                })
                .collect(),
        }
    }

    fn lost(snapshot: &str) -> Failure {
        Failure {
            run: 1,
            time: String::new(),
            client: ClientId(4),
            snapshot: Some(snapshot.to_owned()),
            action: Origin::Action(Action::RestoreRandomSnapshot),
            kind: FailureKind::RestoreFailed,
            summary: String::new(),
            details: String::new(),
            explained_by: Some("aggressive-gc@30.0s".into()),
            unreadable: None,
        }
    }

    /// The packs a prune removed name the backup that stored them: the
    /// action their client ran then, a backup of its stream, the one that
    /// stored the most; not a later snapshot that reused them.
    #[test]
    fn removed_packs_name_the_backup_that_stored_them() {
        let records = [
            record(3, 91, Action::WriteRandomFiles, 28_995, 94),
            record(3, 92, Action::SnapshotRoot, 29_090, 1_021),
            record(3, 95, Action::SnapshotRoot, 30_333, 1_063),
            record(2, 40, Action::SnapshotRoot, 29_500, 900),
        ];
        let records: Vec<&ActionRecord> = records.iter().collect();
        let prune = prune(30_400, &[(3, 29_800), (3, 29_950), (2, 29_700)]);
        assert_eq!(
            raced_step(
                &fault(30_023),
                Some(&prune),
                &records,
                &[&lost("snap-3-95")]
            ),
            Some(RacedStep { client: 3, seq: 92 })
        );
    }

    /// A pack a killed backup left (its backup the fault's, not the
    /// stream's) or one stored while no backup ran names no step.
    #[test]
    fn leftovers_name_no_backup() {
        let mut asked = record(1, 7, Action::SnapshotRoot, 10_000, 500);
        asked.params.asked_by = Some("kill-client@10.0s".into());
        let write = record(2, 3, Action::WriteRandomFiles, 10_000, 500);
        let records = [&asked, &write];
        let prune = prune(20_400, &[(1, 10_200), (2, 10_300)]);
        assert_eq!(
            raced_step(&fault(20_000), Some(&prune), &records, &[]),
            None
        );
    }

    /// With no pack of its own removed, the backup that built on data the
    /// prune removed is the earliest lost snapshot made while the prune
    /// ran: begun before the prune was done (before it listed the packs,
    /// where the trace does not say), written after it began.
    #[test]
    fn a_lost_snapshot_made_while_the_prune_ran_names_the_backup_that_built_on_it() {
        let records = [
            record(1, 60, Action::SnapshotRoot, 20_000, 1_000),
            record(1, 64, Action::SnapshotRoot, 26_072, 9_376),
            record(1, 70, Action::SnapshotRoot, 31_000, 500),
            record(1, 80, Action::SnapshotRoot, 42_000, 500),
        ];
        let records: Vec<&ActionRecord> = records.iter().collect();
        let failures = [
            lost("snap-1-60"),
            lost("snap-1-64"),
            lost("snap-1-70"),
            lost("snap-1-80"),
        ];
        let failures: Vec<&Failure> = failures.iter().collect();
        assert_eq!(
            raced_step(&fault(30_005), None, &records, &failures),
            Some(RacedStep { client: 1, seq: 64 }),
            "started before the prune, written after it began"
        );
        // The prune was done at 31.5 s: the backup at 31 s, begun after it
        // listed the packs, read the old index still.
        let done_at = |ended_ms| PruneLine {
            ended_ms: Some(ended_ms),
            ..prune(29_500, &[])
        };
        assert_eq!(
            raced_step(
                &fault(30_005),
                Some(&done_at(31_500)),
                &records[2..],
                &failures
            ),
            Some(RacedStep { client: 1, seq: 70 })
        );
        assert_eq!(
            raced_step(
                &fault(30_005),
                Some(&done_at(30_900)),
                &records[2..],
                &failures
            ),
            None,
            "a backup that began after the prune was done is no race"
        );
    }
}
