//! A fault explains only the damage it did: through the real embedded
//! backend, a data fault is injected and then the test itself damages the
//! repository where no fault did (what a repository bug, a broken disk or a
//! bad prune looks like). Failures that need only the fault's damage are
//! explained; failures that need what the test removed are unexpected, and
//! say which items no fault damaged. The engine's one count of unexpected
//! failures is what the report lists.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{EngineFixture, KEEP_EVERYTHING};
use snapstorm::backend::embedded::EmbeddedFaults;
use snapstorm::backend::embedded::stored::StoredKind;
use snapstorm::engine::damage::DataRef;
use snapstorm::engine::store::FailureKind;
use snapstorm::engine::traits::{ClientId, FaultHost, FaultInjector, InjectError};
use snapstorm::engine::{Action, ActionParams, ActionRecord, Outcome};
use snapstorm::faults::{FaultKind, FaultSpec, VictimRole};

/// Every pack file of the repository, by id.
fn packs(repo: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(repo.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn pack_path(repo: &Path, id: &str) -> PathBuf {
    repo.join("data").join(&id[..2]).join(id)
}

struct Bench {
    f: EngineFixture,
    faults: EmbeddedFaults,
    host: Arc<dyn FaultHost>,
}

impl Bench {
    fn new(seed: u64) -> Self {
        let f = EngineFixture::inline(KEEP_EVERYTHING, seed);
        let faults = EmbeddedFaults::new(f.parts.server.clone(), f.runtime.handle().clone(), seed);
        let host: Arc<dyn FaultHost> = f.engine.clone();
        Bench { f, faults, host }
    }

    fn repo(&self) -> PathBuf {
        self.f
            .parts
            .server
            .repo_dir()
            .expect("a directory")
            .to_path_buf()
    }

    fn exec(&self, client: u32, action: Action, snapshot_id: Option<&str>) -> ActionRecord {
        let params = ActionParams {
            snapshot_id: snapshot_id.map(str::to_owned),
            ..ActionParams::default()
        };
        self.f.engine.exec_action(ClientId(client), action, &params)
    }

    /// Writes and snapshots for `client`; returns the snapshot and the packs it added.
    fn snapshot(&self, client: u32) -> (String, BTreeSet<String>) {
        let before = packs(&self.repo());
        assert_eq!(
            self.exec(client, Action::WriteRandomFiles, None).outcome,
            Outcome::Ok
        );
        let record = self.exec(client, Action::SnapshotRoot, None);
        assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
        let added = packs(&self.repo()).difference(&before).cloned().collect();
        (record.snapshot.unwrap(), added)
    }

    fn inject(&self, kind: FaultKind) -> String {
        self.inject_spec(&FaultSpec::new(kind, Duration::ZERO))
    }

    fn inject_spec(&self, spec: &FaultSpec) -> String {
        let injected = self
            .faults
            .inject(spec, &[ClientId(1), ClientId(2)], &self.host)
            .unwrap();
        // As the run does once an injection returns.
        self.f.engine.faults().settle(&injected.label);
        injected.label
    }

    /// Removes packs behind snapstorm's back.
    fn remove(&self, ids: &BTreeSet<String>) {
        for id in ids {
            std::fs::remove_file(pack_path(&self.repo(), id)).unwrap();
        }
    }

    /// Restores with an empty cache, so every pack is read from the
    /// repository (a client's cache keeps tree packs it has read before).
    fn restore(&self, client: u32, id: &str) -> ActionRecord {
        let cache = self
            .f
            .engine
            .store()
            .layout()
            .client_cache(ClientId(client));
        let _ = std::fs::remove_dir_all(cache);
        self.exec(client, Action::RestoreRandomSnapshot, Some(id))
    }

    /// The engine's one count, the report's list and the report's totals agree.
    fn assert_one_count(&self, unexpected: u64) {
        let report = self.f.engine.report();
        let listed = report.failures.iter().filter(|f| f.unexpected).count() as u64;
        assert_eq!(listed, unexpected, "{:#?}", report.failures);
        assert_eq!(report.unexpected_failures(), unexpected);
        assert_eq!(
            self.f.engine.counts().totals.unexpected_failures,
            unexpected
        );
        assert_eq!(
            report.totals.verification_failures,
            report.failures.len() as u64
        );
    }
}

fn failure_of(record: &ActionRecord) -> &snapstorm::engine::store::Failure {
    assert_eq!(record.outcome, Outcome::Failure, "{record:#?}");
    record.failures.first().unwrap()
}

fn items(failure: &snapstorm::engine::store::Failure) -> BTreeSet<DataRef> {
    failure
        .unreadable
        .clone()
        .expect("what it could not read is named")
}

#[test]
fn a_corrupted_pack_explains_its_own_failures_and_none_of_the_packs_removed_after() {
    let b = Bench::new(41);
    let (first, first_packs) = b.snapshot(1);
    // The only packs there are: the fault damages one of the first snapshot's.
    let corrupt = b.inject(FaultKind::CorruptPack);
    let (second, second_packs) = b.snapshot(2);
    assert!(first_packs.is_disjoint(&second_packs));
    b.remove(&second_packs);

    let explained = failure_of(&b.restore(1, &first)).clone();
    assert_eq!(explained.kind, FailureKind::RestoreFailed);
    assert_eq!(explained.explained_by.as_deref(), Some(corrupt.as_str()));
    assert!(
        items(&explained)
            .iter()
            .all(|item| matches!(item, DataRef::Pack(p) if first_packs.contains(p))),
        "{explained:#?}"
    );

    let unexpected = failure_of(&b.restore(2, &second)).clone();
    assert_eq!(unexpected.explained_by, None, "{unexpected:#?}");
    let removed: BTreeSet<DataRef> = second_packs.iter().cloned().map(DataRef::Pack).collect();
    assert!(items(&unexpected).is_subset(&removed), "{unexpected:#?}");
    assert!(
        unexpected
            .summary
            .contains("unreadable item(s) are in no fault's damage: pack"),
        "the failure says which items no fault damaged: {}",
        unexpected.summary
    );

    // The check: the corrupted pack explained, the removed ones not.
    let check = b.f.engine.final_verify_repo(ClientId(1));
    assert_eq!(check.outcome, Outcome::Failure);
    assert_eq!(
        check.explained_by, None,
        "part of what it found is unexpected"
    );
    let (surprises, explained_findings): (Vec<_>, Vec<_>) = check
        .failures
        .iter()
        .partition(|f| f.explained_by.is_none());
    assert_eq!(surprises.len(), 1, "{:#?}", check.failures);
    assert!(
        surprises[0]
            .details
            .contains("is named by the index but missing"),
        "{}",
        surprises[0].details
    );
    assert!(items(surprises[0]).is_superset(&removed));
    assert_eq!(explained_findings.len(), 1, "{:#?}", check.failures);
    assert_eq!(
        explained_findings[0].explained_by.as_deref(),
        Some(corrupt.as_str())
    );
    assert!(
        explained_findings[0]
            .details
            .contains("content does not match its id")
    );
    let report = b.f.engine.report();
    assert!(report.faults[0].detected);
    assert_eq!(
        report.faults[0].damaged.map(|n| n > 1),
        Some(true),
        "the pack and its blobs"
    );
    b.assert_one_count(2);
}

#[test]
fn a_deleted_index_explains_what_it_named_and_not_a_pack_removed_beside_it() {
    let b = Bench::new(42);
    let (first, _) = b.snapshot(1);
    let index = b.inject(FaultKind::DeleteIndex);
    let (second, second_packs) = b.snapshot(2);
    let one: BTreeSet<String> = second_packs.iter().take(1).cloned().collect();
    b.remove(&one);

    let explained = failure_of(&b.restore(1, &first)).clone();
    assert_eq!(explained.explained_by.as_deref(), Some(index.as_str()));
    assert!(
        items(&explained)
            .iter()
            .all(|item| matches!(item, DataRef::Blob(_))),
        "blobs no index names any more: {explained:#?}"
    );

    let unexpected = failure_of(&b.restore(2, &second)).clone();
    assert_eq!(unexpected.explained_by, None, "{unexpected:#?}");
    assert!(items(&unexpected).contains(&DataRef::Pack(one.first().unwrap().clone())));

    let check = b.f.engine.final_verify_repo(ClientId(1));
    assert_eq!(check.outcome, Outcome::Failure);
    let labels: Vec<Option<&str>> = check
        .failures
        .iter()
        .map(|f| f.explained_by.as_deref())
        .collect();
    assert_eq!(
        labels,
        vec![None, Some(index.as_str())],
        "{:#?}",
        check.failures
    );
    b.assert_one_count(2);
}

#[test]
fn an_aggressive_gc_explains_the_packs_it_removed_and_not_one_removed_by_hand() {
    let b = Bench::new(43);
    let (first, first_packs) = b.snapshot(1);
    let (second, second_packs) = b.snapshot(2);
    // The first snapshot is out of sight while the GC runs, as a backup in
    // flight is: its packs look unused, and an aggressive GC removes them.
    let snapshot_file = b.repo().join("snapshots").join(&first);
    let aside = b.repo().join("aside");
    std::fs::rename(&snapshot_file, &aside).unwrap();
    let gc = b.inject(FaultKind::AggressiveGc);
    std::fs::rename(&aside, &snapshot_file).unwrap();
    let left = packs(&b.repo());
    assert!(
        first_packs.is_disjoint(&left),
        "the GC removed the first snapshot's packs"
    );
    let one: BTreeSet<String> = second_packs.iter().take(1).cloned().collect();
    b.remove(&one);

    let explained = failure_of(&b.restore(1, &first)).clone();
    assert_eq!(
        explained.explained_by.as_deref(),
        Some(gc.as_str()),
        "{explained:#?}"
    );

    let unexpected = failure_of(&b.restore(2, &second)).clone();
    assert_eq!(unexpected.explained_by, None, "{unexpected:#?}");
    assert_eq!(
        items(&unexpected),
        [DataRef::Pack(one.first().unwrap().clone())].into()
    );
    let report = b.f.engine.report();
    assert!(report.faults[0].detected);
    b.assert_one_count(1);
}

#[test]
fn a_data_fault_before_anything_exists_waits_for_its_first_victim() {
    let b = Bench::new(44);
    let error = b
        .faults
        .inject(
            &FaultSpec::new(FaultKind::CorruptPack, Duration::ZERO),
            &[ClientId(1)],
            &b.host,
        )
        .unwrap_err();
    assert!(matches!(error, InjectError::NoVictimYet(_)), "{error:?}");
}

/// A host that says every client is in an action, and otherwise is the engine.
struct EveryClientActs(Arc<dyn FaultHost>);

impl FaultHost for EveryClientActs {
    fn fault_starts(
        &self,
        kind: FaultKind,
        target: &str,
        client: Option<ClientId>,
        duration: Option<Duration>,
    ) -> String {
        self.0.fault_starts(kind, target, client, duration)
    }
    fn fault_starts_on(&self, kind: FaultKind, target: &str, victim: Option<VictimRole>) -> String {
        self.0.fault_starts_on(kind, target, victim)
    }
    fn fault_ends(&self, label: &str) {
        self.0.fault_ends(label)
    }
    fn fault_failed(&self, label: &str) {
        self.0.fault_failed(label)
    }
    fn fault_damaged(&self, label: &str, damage: Option<snapstorm::engine::damage::Damage>) {
        self.0.fault_damaged(label, damage)
    }
    fn fault_pruned(&self, label: &str, done: &snapstorm::engine::traits::GcDone) {
        self.0.fault_pruned(label, done)
    }
    fn start_together(&self, label: &str, clients: &[ClientId]) {
        self.0.start_together(label, clients)
    }
    fn run_gc(
        &self,
        options: &snapstorm::engine::traits::GcOptions,
    ) -> snapstorm::engine::traits::BackendResult<snapstorm::engine::traits::GcDone> {
        self.0.run_gc(options)
    }
    fn acting(&self, _: ClientId) -> bool {
        true
    }
}

/// A fault whose role (`victim=`) names a pack its client has not stored
/// waits for it only while the client is in an action, which may still
/// store it; a client between actions stores nothing more, so the fault
/// takes that client's newest pack at once. Through the real embedded
/// backend and the engine as the host.
#[test]
fn a_role_not_stored_yet_is_waited_for_only_while_its_client_acts() {
    let b = Bench::new(45);
    b.snapshot(1);
    b.snapshot(2);
    let spec: FaultSpec = "corrupt-pack@0s,victim=client-1/50".parse().unwrap();
    let acting: Arc<dyn FaultHost> = Arc::new(EveryClientActs(b.host.clone()));
    let error = b
        .faults
        .inject(&spec, &[ClientId(1), ClientId(2)], &acting)
        .unwrap_err();
    assert!(
        matches!(error, InjectError::NoVictimYet(_)),
        "a client in an action may still store its 50th pack: {error:?}"
    );

    let injected = b
        .faults
        .inject(&spec, &[ClientId(1), ClientId(2)], &b.host)
        .unwrap();
    let newest =
        b.f.parts
            .server
            .proxy()
            .stored_by("client-1", StoredKind::Pack)
            .last()
            .cloned()
            .expect("client-1 stored a pack");
    assert!(
        injected.target.ends_with(&newest),
        "the idle client's newest pack, {newest}, not {}",
        injected.target
    );
}

/// The issue's own measurement, scaled down, through the binary: one pack
/// corrupted by a fault, then every other pack removed behind the run's
/// back. Before, every failure went to the fault and the run exited 0.
#[test]
fn a_run_whose_other_packs_are_removed_behind_its_back_fails() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report_path = dir.path().join("report.json");
    let scenario = dir.path().join("keep.toml");
    std::fs::write(&scenario, KEEP_EVERYTHING).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(["run", "--clients", "3", "--duration", "16s", "--seed", "12"])
        .args(["--fault", "corrupt-pack@2s", "--scenario"])
        .arg(&scenario)
        .arg("--state-dir")
        .arg(&state)
        .arg("--report")
        .arg(&report_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the fault in the trace, then remove every pack but its victim.
    let trace = state.join("trace.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let target = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no fault in the trace"
        );
        let found = std::fs::read_to_string(&trace).unwrap_or_default();
        let fault = found
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["kind"] == "corrupt-pack");
        if let Some(fault) = fault {
            break fault["target"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3));
    let repo = state.join("repository").join("repo");
    let victim = target.rsplit('/').next().unwrap().to_owned();
    let others: BTreeSet<String> = packs(&repo)
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    assert!(!others.is_empty());
    for id in &others {
        let _ = std::fs::remove_file(pack_path(&repo, id));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let failures = report["failures"].as_array().unwrap();
    let unexpected = failures.iter().filter(|f| f["unexpected"] == true).count();
    let explained = failures
        .iter()
        .filter(|f| {
            f["explained_by"]
                .as_str()
                .is_some_and(|by| by.starts_with("corrupt-pack@"))
        })
        .count();
    assert!(unexpected >= 1, "{report:#}");
    assert!(
        explained >= 1,
        "the corrupted pack is still the fault's: {report:#}"
    );
    assert_eq!(report["totals"]["unexpected_failures"], unexpected);
    assert_eq!(report["totals"]["verification_failures"], failures.len());
    assert!(
        stdout.contains(&format!(
            "{} VERIFICATION FAILURE(S), {unexpected} unexpected:",
            failures.len()
        )),
        "the summary shows the engine's count: {stdout}"
    );
    assert!(stdout.contains("UNEXPECTED"), "{stdout}");
    // Backends panicked on the missing packs: one line each on stderr, never
    // a backtrace (the whole text is in the trace).
    assert!(
        !stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Backtrace")
                || l.trim_start().starts_with("0: ")
                || l.contains("stack backtrace")),
        "{stderr}"
    );
}

/// The pack a data fault damaged, by its file's size now: the one of
/// `packs` whose file is `len` bytes long.
fn pack_of_len(repo: &Path, packs: &BTreeSet<String>, len: u64) -> String {
    let cut: Vec<&String> = packs
        .iter()
        .filter(|id| std::fs::metadata(pack_path(repo, id)).unwrap().len() == len)
        .collect();
    assert_eq!(cut.len(), 1, "one pack is {len} bytes long: {cut:?}");
    cut[0].clone()
}

#[test]
fn a_pack_cut_short_explains_its_own_failures_and_not_a_pack_removed_by_hand() {
    let b = Bench::new(43);
    // No pack is longer than the 2 MiB restic #3023 cut at yet: no victim.
    let (first, first_packs) = b.snapshot(1);
    let error = b
        .faults
        .inject(
            &FaultSpec::new(FaultKind::TruncatePack, Duration::ZERO),
            &[ClientId(1)],
            &b.host,
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no data pack longer than 2MiB yet"),
        "{error}"
    );
    let spec: FaultSpec = "truncate-pack@0s,size=1KiB".parse().unwrap();
    let cut = b.inject_spec(&spec);
    let victim = pack_of_len(&b.repo(), &first_packs, 1024);
    let (second, second_packs) = b.snapshot(2);
    b.remove(&second_packs);

    // rustic_core 0.13 panics restoring from a pack shorter than its index
    // says (restore.rs: "range end index … out of range"): caught, the
    // restore is an error, and the cut explains it by what it needed.
    let restored = b.restore(1, &first);
    assert_eq!(restored.outcome, Outcome::Error, "{restored:#?}");
    assert!(
        restored
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("panicked"),
        "{restored:#?}"
    );
    assert_eq!(
        restored.explained_by.as_deref(),
        Some(cut.as_str()),
        "{restored:#?}"
    );
    let unexpected = failure_of(&b.restore(2, &second)).clone();
    assert_eq!(unexpected.explained_by, None, "{unexpected:#?}");
    // The check reads the cut pack: a finding the cut explains.
    let check = b.f.engine.final_verify_repo(ClientId(1));
    let by_cut: Vec<_> = check
        .failures
        .iter()
        .filter(|f| f.explained_by.as_deref() == Some(cut.as_str()))
        .collect();
    assert_eq!(by_cut.len(), 1, "{:#?}", check.failures);
    assert!(
        items(by_cut[0]).contains(&DataRef::Pack(victim.clone())),
        "{:#?}",
        by_cut[0]
    );

    let report = b.f.engine.report();
    let fault = &report.faults[0];
    assert_eq!(fault.kind, "truncate-pack");
    assert!(fault.detected, "{fault:#?}");
    assert!(fault.target.ends_with(&victim), "{fault:#?}");
    // The restore of the second snapshot and the check's finding about
    // the packs removed by hand.
    b.assert_one_count(2);
}

#[test]
fn an_emptied_pack_is_stored_as_nothing_and_explains_only_what_needed_it() {
    let b = Bench::new(47);
    let (first, first_packs) = b.snapshot(1);
    let emptied = b.inject(FaultKind::EmptyPack);
    let victim = pack_of_len(&b.repo(), &first_packs, 0);
    let (second, _) = b.snapshot(2);

    // rustic_core 0.13 panics here too (the read of a range past the end
    // fails, and the restore unwraps it): an error the emptying explains.
    let restored = b.restore(1, &first);
    assert_eq!(restored.outcome, Outcome::Error, "{restored:#?}");
    assert_eq!(
        restored.explained_by.as_deref(),
        Some(emptied.as_str()),
        "{restored:#?}"
    );
    // The snapshot made after it needs none of it: restored as it was.
    assert_eq!(b.restore(2, &second).outcome, Outcome::Ok);

    let check = b.f.engine.final_verify_repo(ClientId(1));
    assert_eq!(check.outcome, Outcome::Failure);
    assert_eq!(
        check.explained_by.as_deref(),
        Some(emptied.as_str()),
        "{:#?}",
        check.failures
    );
    assert!(
        check
            .failures
            .iter()
            .all(|f| items(f).contains(&DataRef::Pack(victim.clone()))),
        "{:#?}",
        check.failures
    );
    let report = b.f.engine.report();
    assert!(report.faults[0].detected);
    b.assert_one_count(0);
}
