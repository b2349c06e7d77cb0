//! The verdict — "the repository gave back what it was given", or not, and
//! why — against the real embedded backend: wrong data is never explained
//! away, a snapshot that stays unrestorable is a failure, and snapstorm's
//! own crashes, resumes and figures never make a false one.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{EngineFixture, KEEP_EVERYTHING, read_json, scenario_file, snapstorm_run};
use snapstorm::engine::store::FailureKind;
use snapstorm::engine::traits::{ClientId, ErrorClass};
use snapstorm::engine::{Action, ActionParams, ActionRecord, Origin, Outcome};

/// `snapstorm run` with a state dir and a report; returns (exit code, output, report).
fn run(state: &Path, report: &Path, extra: &[&str]) -> (i32, String, serde_json::Value) {
    let (code, out, err, json) = snapstorm_run(state, report, extra);
    (code, format!("{out}\n{err}"), json)
}

/// Changes one file hash in every fingerprint of the state dir: what a
/// backup engine that silently corrupts data would look like.
fn tamper_every_fingerprint(state: &Path) -> usize {
    let mut tampered = 0;
    for entry in std::fs::read_dir(state.join("fingerprints")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let mut fingerprint: serde_json::Value = read_json(&path);
        let entries = fingerprint["entries"].as_object_mut().unwrap();
        let Some(hash) = entries.values_mut().find_map(|e| e.get_mut("hash")) else {
            continue;
        };
        let text = hash.as_str().unwrap();
        let flipped = if text.starts_with('0') { "1" } else { "0" };
        *hash = serde_json::Value::String(format!("{flipped}{}", &text[1..]));
        std::fs::write(&path, serde_json::to_vec(&fingerprint).unwrap()).unwrap();
        tampered += 1;
    }
    tampered
}

#[test]
fn different_content_is_never_explained_by_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = scenario_file(dir.path(), "keep.toml", KEEP_EVERYTHING);
    let scenario = scenario.to_str().unwrap();
    let common = ["--clients", "2", "--scenario", scenario, "--seed", "11"];

    let first = dir.path().join("first.json");
    let (code, text, _) = run(
        &state,
        &first,
        &[&common[..], &["--duration", "8s"]].concat(),
    );
    assert_eq!(code, 0, "{text}");
    assert!(tamper_every_fingerprint(&state) >= 2);

    for strict in [false, true] {
        let report = dir.path().join(format!("tampered-{strict}.json"));
        let mut args = [
            &common[..],
            &["--duration", "6s", "--fault", "corrupt-pack@1s"],
        ]
        .concat();
        if strict {
            args.push("--strict");
        }
        let (code, text, report) = run(&state, &report, &args);
        assert_eq!(
            code, 1,
            "restores that differ fail the run (strict {strict})\n{text}"
        );
        let failures = report["failures"].as_array().unwrap();
        let mismatches: Vec<_> = failures
            .iter()
            .filter(|f| f["kind"] == "content-mismatch")
            .collect();
        assert!(!mismatches.is_empty(), "{report:#}");
        for mismatch in mismatches {
            assert_eq!(mismatch["unexpected"], true, "{mismatch}");
            assert_eq!(mismatch["explained_by"], serde_json::Value::Null);
        }
        assert!(text.contains("UNEXPECTED"), "{text}");
    }
}

/// Replaces every data pack with a symlink to itself: the server answers
/// every read of a pack with HTTP 500 — no fault injected, nothing dropped.
fn make_every_pack_unreadable(repo: &Path) -> usize {
    let mut packs = 0;
    for entry in walkdir::WalkDir::new(repo.join("data")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            std::fs::remove_file(entry.path()).unwrap();
            std::os::unix::fs::symlink(entry.path(), entry.path()).unwrap();
            packs += 1;
        }
    }
    packs
}

fn restore(f: &EngineFixture, client: ClientId, id: &str) -> ActionRecord {
    let params = ActionParams {
        snapshot_id: Some(id.to_owned()),
        ..ActionParams::default()
    };
    f.engine
        .exec_action(client, Action::RestoreRandomSnapshot, &params)
}

fn snapshot(f: &EngineFixture, client: ClientId) -> String {
    let exec = |action| {
        f.engine
            .exec_action(client, action, &ActionParams::default())
    };
    assert_eq!(exec(Action::WriteRandomFiles).outcome, Outcome::Ok);
    let record = exec(Action::SnapshotRoot);
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    record.snapshot.unwrap()
}

#[test]
fn a_server_that_fails_every_pack_read_with_no_fault_is_a_failure() {
    let f = EngineFixture::inline(KEEP_EVERYTHING, 5);
    let client = ClientId(1);
    let id = snapshot(&f, client);
    assert!(make_every_pack_unreadable(f.parts.server.repo_dir().expect("a directory")) >= 1);
    // An HTTP 500 nobody injected is the server's own failure, not a request
    // that did not get through; what it means for the data is decided at the end.
    let record = restore(&f, client, &id);
    assert_eq!(record.outcome, Outcome::Error, "{record:?}");
    assert_eq!(record.error_class, Some(ErrorClass::Other));
    let finals = f.engine.retry_unsettled_restores();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].outcome, Outcome::Failure, "{:?}", finals[0]);
    let failure = finals[0].failures.first().unwrap();
    assert_eq!(failure.kind, FailureKind::RestoreFailed);
    assert_eq!(failure.explained_by, None, "no fault was injected");
    assert_eq!(f.engine.report().unexpected_failures(), 1);
}

#[test]
fn a_restore_that_keeps_failing_after_every_fault_ended_is_a_failure() {
    let f = EngineFixture::inline(KEEP_EVERYTHING, 6);
    let client = ClientId(1);
    let id = snapshot(&f, client);
    // Refused by the server: the request did not get through, so during the
    // run that says nothing about the data — an error, tried again at the end.
    f.parts.server.users().revoke(&client.to_string());
    let record = restore(&f, client, &id);
    assert_eq!(record.outcome, Outcome::Error, "{record:?}");
    assert_eq!(record.error_class, Some(ErrorClass::NotThrough));
    assert_eq!(f.engine.report().failures.len(), 0);

    // At the end it still cannot be restored, and no fault explains why.
    let finals = f.engine.retry_unsettled_restores();
    assert_eq!(finals.len(), 1, "{finals:?}");
    let last = &finals[0];
    assert!(last.final_check);
    assert_eq!(last.outcome, Outcome::Failure, "{last:?}");
    let failure = last.failures.first().unwrap();
    assert_eq!(failure.kind, FailureKind::RestoreFailed);
    assert_eq!(failure.action, Origin::FinalCheck);
    assert_eq!(failure.explained_by, None);
    let report = f.engine.report();
    assert_eq!(report.unexpected_failures(), 1);
    assert_eq!(report.restores_retried_at_end, 1);
}

#[test]
fn a_restore_that_succeeds_at_the_end_leaves_no_failure() {
    let f = EngineFixture::inline(KEEP_EVERYTHING, 7);
    let client = ClientId(1);
    let id = snapshot(&f, client);
    f.parts.server.users().revoke(&client.to_string());
    assert_eq!(restore(&f, client, &id).outcome, Outcome::Error);
    f.parts.server.readmit_client(client).unwrap();
    let finals = f.engine.retry_unsettled_restores();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].outcome, Outcome::Ok, "{:?}", finals[0]);
    assert!(f.engine.report().failures.is_empty());
    assert!(
        f.engine.retry_unsettled_restores().is_empty(),
        "settled once"
    );
}

/// Waits until `dir` exists, then watches it for deletions.
fn watch_deletions(dir: &Path, limit: Duration) -> std::os::fd::OwnedFd {
    use rustix::fs::inotify;
    let deadline = Instant::now() + limit;
    while !dir.is_dir() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&fd, dir, inotify::WatchFlags::DELETE).unwrap();
    fd
}

/// True once a file was deleted in the watched directory.
fn deleted(fd: &std::os::fd::OwnedFd) -> bool {
    use std::mem::MaybeUninit;
    let mut buf = [MaybeUninit::uninit(); 1024];
    let mut reader = rustix::fs::inotify::Reader::new(fd, &mut buf);
    reader.next().is_ok()
}

const DELETE_OFTEN: &str = r#"
description = "snapshots and deletes"
sequence = ["write-random-files", "snapshot-root", "snapshot-root", "delete-random-snapID"]
[options]
max-num-files-per-write = 5
max-file-size = "16KiB"
"#;

/// snapstorm killed right after the repository removed a snapshot and
/// before the metadata said so: the rerun finds the recorded intent and
/// reports no loss.
#[test]
fn a_kill_at_the_first_snapshot_deletion_is_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(dir.path(), "delete.toml", DELETE_OFTEN);
    let mut windows_hit = 0;
    for attempt in 0..6 {
        let state = dir.path().join(format!("state-{attempt}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
            .args(["run", "--clients", "1", "--duration", "60s", "--seed", "4"])
            .args(["--scenario", scenario.to_str().unwrap()])
            .arg("--state-dir")
            .arg(&state)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let fd = watch_deletions(
            &state.join("repository/repo/snapshots"),
            Duration::from_secs(60),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !deleted(&fd) {
            assert!(Instant::now() < deadline, "no snapshot was deleted");
            std::thread::sleep(Duration::from_micros(100));
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let state_json = read_json(&state.join("state.json"));
        let client = &state_json["clients"]["1"];
        let intent_left = client["live"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["deleting"] == true);
        windows_hit += usize::from(intent_left);

        let report = dir.path().join(format!("rerun-{attempt}.json"));
        let (code, text, report) = run(
            &state,
            &report,
            &[
                "--clients",
                "1",
                "--actions",
                "1",
                "--scenario",
                scenario.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{text}");
        assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
        let after = read_json(&state.join("state.json"));
        assert!(
            after["clients"]["1"]["live"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s.get("deleting").is_none()),
            "the rerun settled every interrupted delete: {after:#}"
        );
        if windows_hit >= 2 {
            break;
        }
    }
    assert!(
        windows_hit >= 1,
        "the kill never landed between the delete and its record"
    );
}

#[test]
fn two_runs_with_the_same_seed_on_one_state_dir_write_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = scenario_file(dir.path(), "keep.toml", KEEP_EVERYTHING);
    let args = [
        "--clients",
        "2",
        "--actions",
        "8",
        "--seed",
        "5",
        "--scenario",
        scenario.to_str().unwrap(),
    ];
    for round in 1..=2 {
        let report = dir.path().join(format!("round-{round}.json"));
        let (code, text, report) = run(&state, &report, &args);
        assert_eq!(code, 0, "{text}");
        assert_eq!(report["run_counter"], round);
        assert_eq!(report["totals"]["errors"], 0, "round {round}: {report:#}");
    }
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    assert!(!trace.contains("File exists"), "{trace}");
    let writes_per_run = |run: u64| {
        trace
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["run"] == run && l["action"] == "write-random-files")
            .map(|l| l["details"]["dir"].clone())
            .collect::<Vec<_>>()
    };
    assert!(!writes_per_run(2).is_empty());
    assert_ne!(
        writes_per_run(1),
        writes_per_run(2),
        "a resumed run draws a fresh stream"
    );
}

/// The value at quantile `q` of sorted `values`, by nearest rank.
fn nearest_rank(values: &[u64], q: f64) -> u64 {
    let rank = (q * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

#[test]
fn report_percentiles_match_the_trace_for_actions_of_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = scenario_file(dir.path(), "keep.toml", KEEP_EVERYTHING);
    let report = dir.path().join("report.json");
    // Every request waits a second on its way: repository actions take seconds.
    let (code, text, report) = run(
        &state,
        &report,
        &[
            "--clients",
            "2",
            "--duration",
            "12s",
            "--seed",
            "3",
            "--scenario",
            scenario.to_str().unwrap(),
            "--fault",
            "network@0s:10m,latency=1s,drop=0,error=0",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let mut durations: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for line in trace.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(action) = line["action"].as_str() {
            durations
                .entry(action.to_owned())
                .or_default()
                // The report counts an action of under a millisecond as 1 ms.
                .push(line["duration_ms"].as_u64().unwrap().max(1));
        }
    }
    let longest = durations.values().flatten().max().copied().unwrap();
    assert!(
        longest >= 3_000,
        "actions took seconds: longest {longest} ms"
    );
    for (action, mut values) in durations {
        values.sort_unstable();
        let reported = &report["actions"][&action];
        assert_eq!(reported["count"], values.len() as u64, "{action}");
        // Nearest rank, as the histogram takes it; it keeps 3 significant
        // digits and reports the top of a value's bucket: up to 0.1 % more.
        for (key, q) in [
            ("p50_ms", 0.50),
            ("p95_ms", 0.95),
            ("p99_ms", 0.99),
            ("max_ms", 1.0),
        ] {
            let got = reported[key].as_u64().unwrap();
            let want = nearest_rank(&values, q);
            assert!(
                got >= want && got <= want + want / 1000 + 1,
                "{action} {key}: report {got} ms, trace {want} ms ({values:?})"
            );
        }
    }
}

/// Damage a fault did in one run stays in the repository: a later run on the
/// same state dir, with no fault of its own, attributes what that damage
/// causes to it instead of calling it unexpected.
#[test]
fn damage_from_an_earlier_run_explains_what_it_causes_later() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = scenario_file(dir.path(), "keep.toml", KEEP_EVERYTHING);
    let scenario = scenario.to_str().unwrap();
    let first = dir.path().join("first.json");
    let (code, text, first) = run(
        &state,
        &first,
        &[
            "--clients",
            "1",
            "--duration",
            "8s",
            "--seed",
            "12",
            "--scenario",
            scenario,
            "--fault",
            "delete-pack@4s",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let label = first["faults"][0]["label"].as_str().unwrap().to_owned();
    // The lost pack may hold trees the client cached; a client without its
    // cache (a new machine) reads every pack from the repository.
    std::fs::remove_dir_all(state.join("clients/client-1/cache")).unwrap();

    let second = dir.path().join("second.json");
    let (code, text, second) = run(
        &state,
        &second,
        &[
            "--clients",
            "1",
            "--actions",
            "1",
            "--scenario",
            scenario,
            "--verify-inherited",
            "all",
        ],
    );
    assert_eq!(
        code, 0,
        "the earlier run's damage explains the lost pack\n{text}"
    );
    let failures = second["failures"].as_array().unwrap();
    assert!(
        !failures.is_empty(),
        "a snapshot needed the deleted pack: {second:#}"
    );
    for failure in failures {
        assert_eq!(
            failure["explained_by"],
            format!("{label} (run 1)"),
            "{failure}"
        );
    }
    assert_eq!(
        second["faults"],
        serde_json::json!([]),
        "no fault of its own"
    );
}
