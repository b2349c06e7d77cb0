//! `snapstorm run` end to end: the binary, the real embedded backend, and
//! what a user sees (exit codes, report, messages).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{read_json, snapstorm, snapstorm_run};

fn run(state: &Path, extra: &[&str]) -> (i32, String, String, serde_json::Value) {
    snapstorm_run(state, &state.with_extension("report.json"), extra)
}

fn preset_runs_clean(preset: &str, actions: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, out, err, report) = run(
        &state,
        &[
            "--clients",
            "4",
            "--scenario",
            preset,
            "--actions",
            actions,
            "--seed",
            "5",
        ],
    );
    assert_eq!(code, 0, "{preset}: exit {code}\n{out}\n{err}");
    assert_eq!(report["failures"], serde_json::json!([]), "{preset}");
    assert_eq!(report["clients"].as_array().unwrap().len(), 4);
    assert!(
        report["totals"]["snapshots_created"].as_u64().unwrap() >= 4,
        "{preset}: {report}"
    );
    assert_eq!(report["totals"]["verification_failures"], 0);
    for client in report["clients"].as_array().unwrap() {
        assert_eq!(client["errors"], 0, "{preset}: {client}");
    }
}

#[test]
fn preset_randomized_small_with_4_clients() {
    preset_runs_clean("randomized-small", "10");
}

#[test]
fn preset_many_small_files_with_4_clients() {
    preset_runs_clean("many-small-files", "3");
}

#[test]
fn preset_one_large_file_with_4_clients() {
    preset_runs_clean("one-large-file", "3");
}

#[test]
fn preset_many_small_files_across_directory_tree_with_4_clients() {
    preset_runs_clean("many-small-files-across-directory-tree", "6");
}

#[test]
fn preset_maintenance_with_4_clients() {
    preset_runs_clean("maintenance", "4");
}

#[test]
fn preset_delete_random_snapshot_with_4_clients() {
    preset_runs_clean("delete-random-snapshot", "6");
}

/// (seq, action, outcome, details) per client, from a run's trace.
fn sequences(state: &Path) -> BTreeMap<u64, Vec<String>> {
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let mut per_client: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for line in trace.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        // A run's start line and fault lines are not actions.
        if record.get("action").is_none() {
            continue;
        }
        let client = record["client"].as_u64().unwrap();
        let seq = record["seq"].as_u64().unwrap();
        let summary = format!(
            "{} {} {}",
            record["action"], record["outcome"], record["details"]
        );
        per_client.entry(client).or_default().push((seq, summary));
    }
    per_client
        .into_iter()
        .map(|(client, mut records)| {
            records.sort();
            (
                client,
                records
                    .into_iter()
                    .map(|(seq, s)| format!("{seq} {s}"))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_every_client_the_same_actions() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--clients", "2", "--actions", "12"];
    let mut runs = Vec::new();
    for (name, seed) in [("a", "42"), ("b", "42"), ("c", "43")] {
        let state = dir.path().join(name);
        let mut extra = args.to_vec();
        extra.extend(["--seed", seed]);
        let (code, out, err, _) = run(&state, &extra);
        assert_eq!(code, 0, "{out}\n{err}");
        runs.push(sequences(&state));
    }
    assert_eq!(runs[0].len(), 2);
    assert_eq!(runs[0][&1].len(), 12);
    assert_eq!(
        runs[0], runs[1],
        "same seed, same per-client actions, options and outcomes"
    );
    assert_ne!(runs[0], runs[2], "another seed gives other actions");
}

#[test]
fn a_second_run_resumes_and_verifies_inherited_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let snapshot_first = r#"
description = "snapshot first"
sequence = ["write-random-files", "snapshot-root", "restore-random-snapID"]
[options]
max-num-files-per-write = 10
max-file-size = "64KiB"
"#;
    let scenario = dir.path().join("snapshot-first.toml");
    std::fs::write(&scenario, snapshot_first).unwrap();
    let scenario = scenario.to_str().unwrap();
    let run_with_seed = |seed: &str| {
        run(
            &state,
            &[
                "--clients",
                "2",
                "--actions",
                "3",
                "--scenario",
                scenario,
                "--seed",
                seed,
            ],
        )
    };
    let (code, out, err, first) = run_with_seed("1");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(first["run_counter"], 1);
    assert_eq!(first["inherited_snapshots"], 0);
    let live_after_first = first["totals"]["snapshots_live"].as_u64().unwrap();
    assert_eq!(live_after_first, 2);

    let (code, out, err, second) = run_with_seed("2");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(second["run_counter"], 2);
    assert_eq!(second["inherited_snapshots"], live_after_first);
    assert!(
        second["inherited_verified"].as_u64().unwrap() >= 1,
        "{second}"
    );
    assert!(out.contains("inherited snapshots 2"), "{out}");
}

#[test]
fn a_snapshot_deleted_in_the_repository_fails_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, _, err, first) = run(
        &state,
        &[
            "--clients",
            "1",
            "--actions",
            "4",
            "--scenario",
            "one-large-file",
            "--seed",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(first["totals"]["snapshots_live"].as_u64().unwrap() >= 1);
    let snapshots = state.join("repository/repo/snapshots");
    let victim = std::fs::read_dir(&snapshots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let id = victim.file_name().to_string_lossy().into_owned();
    std::fs::remove_file(victim.path()).unwrap();

    let (code, out, err, second) = run(
        &state,
        &[
            "--clients",
            "1",
            "--actions",
            "1",
            "--scenario",
            "one-large-file",
        ],
    );
    assert_eq!(
        code, 1,
        "a lost snapshot is a verification failure\n{out}\n{err}"
    );
    let failures = second["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{second}");
    assert_eq!(failures[0]["snapshot"], id.as_str());
    assert_eq!(failures[0]["action"], "startup-check");
    assert!(err.contains("FAILURE client-1 snapshot"), "{err}");
    assert!(out.contains("1 VERIFICATION FAILURE(S)"), "{out}");

    // Reported once: the metadata now records it as lost, and the next run is clean.
    let state_json = read_json(&state.join("state.json"));
    assert_eq!(state_json["clients"]["1"]["lost"][0]["id"], id.as_str());
    let (code, out, err, third) = run(
        &state,
        &[
            "--clients",
            "1",
            "--actions",
            "1",
            "--scenario",
            "one-large-file",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(third["failures"], serde_json::json!([]));
}

#[test]
fn without_a_terminal_the_console_runs_headless_and_ctrl_c_stops_it_cleanly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("state");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args([
            "--clients",
            "1",
            "--seed",
            "4",
            "--state-dir",
            report_dir.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // Keep reading stderr to the end, so the process never writes into a closed pipe.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if line.starts_with("snapstorm: run 1") {
                let _ = started_tx.send(());
            }
            seen.push(line);
        }
        seen
    });
    started_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the run started");
    std::thread::sleep(std::time::Duration::from_secs(3));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let seen = reader.join().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.contains("standard output is not a terminal; running headless")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("interrupted; finishing the actions in flight")),
        "{seen:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "a clean interrupted run exits 0: {seen:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("no verification failures"),
        "summary on stdout:\n{stdout}"
    );
    let state: serde_json::Value = read_json(&report_dir.join("state.json"));
    assert!(
        state["runs"][0]["ended"].is_string(),
        "the run was closed properly: {state}"
    );
}

fn assert_usage_error(args: &[&str], expected: &str) {
    let (code, out, err) = snapstorm(args);
    assert_eq!(code, 2, "{args:?}: {out}\n{err}");
    assert!(
        err.contains(expected),
        "{args:?}: expected `{expected}` in:\n{err}"
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    assert_usage_error(
        &["run", "--clients", "0", "--state-dir", s],
        "0 is not in 1..=64",
    );
    assert_usage_error(
        &["run", "--scenario", "no-such-preset", "--state-dir", s],
        "unknown scenario `no-such-preset`: run `snapstorm scenarios`",
    );
    assert_usage_error(
        &["run", "--duration", "soon", "--state-dir", s],
        "write e.g. 30s",
    );

    let malformed = dir.path().join("bad.toml");
    std::fs::write(
        &malformed,
        "description = \"x\"\n\n[options]\nmax-file-size = \"huge\"\n",
    )
    .unwrap();
    let expected = format!("{}:3:1:", malformed.display());
    assert_usage_error(
        &[
            "run",
            "--scenario",
            malformed.to_str().unwrap(),
            "--state-dir",
            s,
        ],
        &expected,
    );

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "description = \"x\"\n[weights]\nsnapshot-everything = 1\n",
    )
    .unwrap();
    assert_usage_error(
        &[
            "run",
            "--scenario",
            unknown.to_str().unwrap(),
            "--state-dir",
            s,
        ],
        "unknown variant `snapshot-everything`",
    );

    // Options this machine cannot carry out are refused up front: they would
    // fail on snapstorm's own file system, never in the repository.
    let too_deep = dir.path().join("deep.toml");
    std::fs::write(
        &too_deep,
        "description = \"x\"\n\n[options]\nmax-dir-depth = 100000\n",
    )
    .unwrap();
    assert_usage_error(
        &[
            "run",
            "--scenario",
            too_deep.to_str().unwrap(),
            "--state-dir",
            s,
        ],
        &format!(
            "{}:3:1: option `max-dir-depth`: 100000 is deeper than paths on this machine allow; give at most 200",
            too_deep.display()
        ),
    );
    assert!(!state.exists(), "nothing was written for bad arguments");

    // A state dir that cannot be a directory: a file is in the way.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "keep me").unwrap();
    assert_usage_error(
        &["run", "--state-dir", blocker.to_str().unwrap()],
        "not a directory",
    );
    let nested = blocker.join("state");
    assert_usage_error(
        &[
            "run",
            "--state-dir",
            nested.to_str().unwrap(),
            "--actions",
            "1",
        ],
        "choose a writable --state-dir",
    );
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "keep me");

    let report = dir.path().join("missing-dir/r.json");
    assert_usage_error(
        &[
            "run",
            "--report",
            report.to_str().unwrap(),
            "--state-dir",
            s,
        ],
        "does not exist; create it",
    );
    assert!(!state.exists());
}

/// A fingerprint snapstorm cannot read is its own problem: the next start
/// says so and stops, the state dir untouched, instead of a run whose
/// restores silently cannot be verified.
#[test]
fn damaged_metadata_stops_the_next_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, _, err, first) = run(
        &state,
        &[
            "--clients",
            "1",
            "--actions",
            "4",
            "--scenario",
            "one-large-file",
            "--seed",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let live = first["totals"]["snapshots_live"].as_u64().unwrap();
    assert!(live >= 1);
    let fingerprints: Vec<_> = std::fs::read_dir(state.join("fingerprints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(fingerprints.len() as u64, live);
    std::fs::write(&fingerprints[0], b"").unwrap();
    let before = common::disk_state(&state);

    let (code, out, err) = snapstorm(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--actions",
        "1",
    ]);
    assert_eq!(
        code, 2,
        "{out}
{err}"
    );
    assert!(
        err.contains("cannot be read, so their restores could not be verified")
            && err.contains("the state dir's metadata is damaged"),
        "{err}"
    );
    assert_eq!(
        common::disk_state(&state),
        before,
        "nothing in the state dir changed"
    );
}

#[test]
fn scenarios_lists_every_preset() {
    let (code, out, _) = snapstorm(&["scenarios"]);
    assert_eq!(code, 0);
    for preset in [
        "randomized-small",
        "many-small-files",
        "one-large-file",
        "many-small-files-across-directory-tree",
        "maintenance",
        "delete-random-snapshot",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(preset)),
            "{preset} missing:\n{out}"
        );
    }
}

#[test]
fn corrupt_pack_run_is_clean_unless_strict() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--clients",
        "4",
        "--duration",
        "20s",
        "--seed",
        "3",
        "--fault",
        "corrupt-pack@8s",
    ];
    let (code, out, err, report) = run(&dir.path().join("lenient"), &base);
    assert_eq!(code, 0, "expected failures only: exit 0\n{out}\n{err}");
    let fault = &report["faults"][0];
    assert_eq!(fault["kind"], "corrupt-pack");
    assert_eq!(fault["detected"], true, "{report}");
    assert!(fault["detection_ms"].as_u64().is_some());
    let failures = report["failures"].as_array().unwrap();
    assert!(!failures.is_empty());
    assert!(failures.iter().all(|f| {
        f["unexpected"] == false
            && f["explained_by"]
                .as_str()
                .unwrap()
                .starts_with("corrupt-pack@")
    }));
    assert_eq!(report["totals"]["unexpected_failures"], 0);
    assert!(out.contains("0 unexpected"), "{out}");

    let mut strict = base.to_vec();
    strict.push("--strict");
    let (code, out, err, _) = run(&dir.path().join("strict"), &strict);
    assert_eq!(code, 1, "--strict fails on any failure\n{out}\n{err}");
}

#[test]
fn a_bad_fault_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, _, err) = snapstorm(&[
        "run",
        "--fault",
        "meteor@1s",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown kind `meteor`; one of: corrupt-pack"),
        "{err}"
    );
    let (code, _, err) = snapstorm(&[
        "run",
        "--fault",
        "network@soon",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("`soon` is not a duration"), "{err}");
    assert!(!state.exists());
}

/// Every action counts from the run's clock, the one fault times count
/// from: no client starts before it (a client that connected first waits
/// for the others' first tries), so each client's actions start in the
/// order of their `seq`, and none starts after the run's duration.
#[test]
fn every_action_starts_on_the_runs_clock_in_its_clients_order() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, out, err, _) = run(
        &state,
        &["--clients", "8", "--duration", "6s", "--seed", "9"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let mut starts: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for line in trace.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if record.get("action").is_none() || record["final_check"] == true {
            continue;
        }
        starts
            .entry(record["client"].as_u64().unwrap())
            .or_default()
            .push((
                record["seq"].as_u64().unwrap(),
                record["at_ms"].as_u64().unwrap(),
            ));
    }
    assert_eq!(starts.len(), 8, "every client ran");
    for (client, mut records) in starts {
        records.sort();
        let at: Vec<u64> = records.iter().map(|(_, at)| *at).collect();
        assert!(
            at.windows(2).all(|pair| pair[0] <= pair[1]),
            "client-{client}'s actions start out of their order: {records:?}"
        );
        assert!(
            at.iter().all(|ms| *ms < 6_000),
            "client-{client}: {records:?}"
        );
    }
}

/// A restic backup frozen past the run's end (`pause-client` outlasting
/// the run) is still running when the 60 s grace after the stop runs out:
/// the run ends without it, says so on stderr and in the report, and the
/// backup's trace line is marked abandoned — killed by the run, it is
/// never an error of the repository, nor counted.
#[test]
fn a_backup_frozen_past_the_grace_is_abandoned_by_the_run_not_failed_by_the_repository() {
    common::require_program("restic");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, out, err, report) = snapstorm_run(
        &state,
        &dir.path().join("r.json"),
        &[
            "--backend",
            "restic",
            "--clients",
            "1",
            "--duration",
            "6s",
            "--seed",
            "5",
            "--fault",
            "pause-client@2s:600s,client=1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(report["abandoned_actions"], 1, "{report:#}\n{err}");
    assert!(
        err.contains("the run ended without 1 action(s) still running after its grace"),
        "{err}"
    );
    assert_eq!(
        report["totals"]["errors"], report["totals"]["expected_errors"],
        "{report:#}"
    );
    let lines = common::trace_of(&state);
    let unexplained: Vec<_> = lines
        .iter()
        .filter(|l| l["outcome"] == "error" && l["explained_by"].is_null())
        .filter(|l| l["abandoned"] != true)
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
    // The backup's line, if the run's end let it be written, says whose it is.
    for line in lines.iter().filter(|l| l["abandoned"] == true) {
        assert_eq!(line["action"], "snapshot-root", "{line}");
        assert!(
            line["outcome"] != "error" || line["error_class"] == "local",
            "{line}"
        );
    }
}
