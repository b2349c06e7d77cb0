//! Hostile and impossible input, and snapstorm's own limits: every one ends
//! in one line naming the problem and the fix, writes nothing it should not,
//! and never turns into a verdict on the repository.

mod common;

use common::{
    TmpfsMount, assert_one_line_usage_error, available_space, disk_state, mode, read_json,
    scenario_file, snapstorm, snapstorm_run, state_after_one_run,
};

#[test]
fn usage_errors_are_one_line_with_the_fix_and_help_stays_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let err = assert_one_line_usage_error(
        &["run", "--clients", "0", "--state-dir", s],
        &["0 is not in 1..=64"],
    );
    assert_eq!(
        err.trim_end(),
        "snapstorm: --clients: 0 is not in 1..=64 (run `snapstorm run --help`)"
    );
    assert_one_line_usage_error(
        &["run", "--client", "2"],
        &[
            "unexpected argument `--client`; did you mean `--clients`?",
            "(run `snapstorm run --help`)",
        ],
    );
    assert_one_line_usage_error(
        &["rnu"],
        &["unknown command `rnu`", "(run `snapstorm --help`)"],
    );
    assert_one_line_usage_error(
        &["run", "--duration", "soon"],
        &[
            "--duration: `soon` is not a duration",
            "write e.g. 30s",
            "(run `snapstorm run --help`)",
        ],
    );
    assert_one_line_usage_error(
        &["run", "--clients"],
        &["--clients needs a value", "(run `snapstorm run --help`)"],
    );
    assert_one_line_usage_error(
        &["run", "--fault", "meteor@1s"],
        &["unknown kind `meteor`; one of: corrupt-pack"],
    );
    assert!(!state.exists(), "nothing written for bad arguments");

    // --help and --version are clap's, unchanged, and exit 0.
    let (code, out, _) = snapstorm(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: snapstorm run [OPTIONS]"), "{out}");
    assert!(out.lines().count() > 10, "{out}");
    let (code, out, _) = snapstorm(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("snapstorm {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn faults_that_cannot_happen_in_the_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    assert_one_line_usage_error(
        &[
            "run",
            "--duration",
            "5s",
            "--fault",
            "corrupt-pack@999h",
            "--state-dir",
            s,
        ],
        &[
            "fault `corrupt-pack@999h`: at 999h the run is over (it lasts 5s); give a time under 5s, or a longer --duration",
        ],
    );
    // Without --duration a run lasts 30 s.
    assert_one_line_usage_error(
        &["run", "--fault", "delete-pack@30s", "--state-dir", s],
        &["fault `delete-pack@30s`: at 30s the run is over (it lasts 30s)"],
    );
    assert_one_line_usage_error(
        &[
            "run",
            "--clients",
            "4",
            "--fault",
            "revoke-client@1s,client=99",
            "--state-dir",
            s,
        ],
        &[
            "fault `revoke-client@1s,client=99`: the run has 4 client(s), client-1 to client-4; give client=1 to 4, or --clients 99",
        ],
    );
    assert_one_line_usage_error(
        &["run", "--fault", "network@1s:0s", "--state-dir", s],
        &[
            "fault `network@1s:0s`: a duration of 0s does nothing; give one longer than 0s, e.g. network@1s:15s",
        ],
    );
    assert_one_line_usage_error(
        &["run", "--fault", "corrupt-pack@1s:5s", "--state-dir", s],
        &["corrupt-pack acts once and takes no duration; write corrupt-pack@1s"],
    );
    // A scenario's faults are held to the same bounds, and named as written.
    let late = scenario_file(
        dir.path(),
        "late.toml",
        "description = \"d\"\n[[faults]]\nkind = \"server-restart\"\nat = \"2m\"\nduration = \"5s\"\n",
    );
    assert_one_line_usage_error(
        &[
            "run",
            "--duration",
            "1m",
            "--scenario",
            late.to_str().unwrap(),
            "--state-dir",
            s,
        ],
        &["fault `server-restart@2m:5s`: at 2m the run is over (it lasts 1m)"],
    );
    assert!(!state.exists(), "nothing written for refused faults");
}

/// Where the run's end is not known up front (an action limit), a fault
/// that never comes to pass is in the report as not injected, with why —
/// as is one that could not be carried out.
#[test]
fn a_fault_that_never_took_effect_is_reported_as_not_injected() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is ever backed up: there is no index file to delete.
    let scenario = scenario_file(
        dir.path(),
        "write.toml",
        "description = \"write only\"\nsequence = [\"write-random-files\"]\n\
         [options]\nmax-num-files-per-write = 2\nmax-file-size = \"4KiB\"\n",
    );
    let (code, out, err, report) = snapstorm_run(
        &dir.path().join("state"),
        &dir.path().join("report.json"),
        &[
            "--clients",
            "1",
            "--actions",
            "2",
            "--seed",
            "2",
            "--scenario",
            scenario.to_str().unwrap(),
            "--fault",
            "corrupt-pack@999h",
            "--fault",
            "delete-index@0s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{report}");
    let by_label = |label: &str| {
        faults
            .iter()
            .find(|f| f["label"] == label)
            .unwrap_or_else(|| panic!("{label} not reported: {report}"))
    };
    let late = by_label("corrupt-pack@999h");
    assert_eq!(late["injected"], false, "{late}");
    assert_eq!(late["detected"], false);
    assert!(
        late["reason"].as_str().unwrap().contains("before its time"),
        "{late}"
    );
    // It waited for an index file to delete, and the run ended first.
    let early = by_label("delete-index@0s");
    assert_eq!(early["injected"], false, "{early}");
    assert_eq!(
        early["reason"], "the run ended first: the repository has no index file yet",
        "{early}"
    );
    assert!(
        out.contains("corrupt-pack@999h NOT INJECTED: the run ended at"),
        "{out}"
    );
    assert_eq!(report["failures"], serde_json::json!([]));
}

/// A data fault due before anything exists to damage waits for its first
/// victim: here the index the first snapshot writes. It keeps the name of
/// the time it was asked for; the report says when it happened.
#[test]
fn a_data_fault_due_before_its_victim_exists_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(
        dir.path(),
        "snapshot.toml",
        "description = \"write, snapshot\"\nsequence = [\"write-random-files\", \"snapshot-root\"]\n\
         [options]\nmax-num-files-per-write = 2\nmax-file-size = \"4KiB\"\n",
    );
    let (code, out, err, report) = snapstorm_run(
        &dir.path().join("state"),
        &dir.path().join("report.json"),
        &[
            "--clients",
            "1",
            "--actions",
            "2",
            "--seed",
            "2",
            "--scenario",
            scenario.to_str().unwrap(),
            "--fault",
            "delete-index@0s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let fault = &report["faults"][0];
    assert_eq!(fault["injected"], true, "{report}");
    assert_eq!(fault["label"], "delete-index@0.0s", "{fault}");
    assert!(fault["at_ms"].as_u64().unwrap() > 0, "{fault}");
    assert!(fault["target"].as_str().unwrap().starts_with("index/"));
    // The final check finds the snapshot's blobs in no index: its doing.
    let failures = report["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "{report}");
    for failure in failures {
        assert_eq!(failure["explained_by"], "delete-index@0.0s", "{failure}");
    }
    assert_eq!(fault["detected"], true);
}

#[test]
fn a_wrong_repository_password_exits_2_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    let state_file = state.join("state.json");
    let mut json = read_json(&state_file);
    json["repository_password"] = serde_json::json!("not-the-password");
    std::fs::write(&state_file, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let before = disk_state(&state);

    let (code, out, err) = snapstorm(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--actions",
        "1",
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        disk_state(&state) == before,
        "the state dir is unchanged: no run counted, nothing recorded"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not accept the password in this state dir's state.json")
            && err.contains("restore state.json from a copy, or choose another --state-dir"),
        "{err}"
    );
}

#[test]
fn a_state_dir_that_lost_its_state_json_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    std::fs::remove_file(state.join("state.json")).unwrap();
    let before = disk_state(&state);

    let (code, out, err) = snapstorm(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--actions",
        "1",
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("repository/ holds a repository")
            && err.contains("but state.json is missing")
            && err.contains("restore state.json from a copy, or choose another --state-dir"),
        "{err}"
    );
    assert!(!state.join("state.json").exists(), "no new state.json");
    assert!(disk_state(&state) == before, "nothing created or changed");

    // A directory of something else is not taken over either.
    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let (code, _, err) = snapstorm(&["run", "--state-dir", other.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not empty and holds no state.json, so it is not a snapstorm state dir"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn the_state_dir_snapstorm_creates_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    assert_eq!(mode(&state), 0o700, "state dir");
    assert_eq!(mode(&state.join("trace.jsonl")) & 0o077, 0, "trace");
    assert_eq!(mode(&state.join(".lock")) & 0o077, 0, "lock");
    assert_eq!(mode(&state.join("state.json")) & 0o077, 0, "state.json");
}

#[test]
fn a_scenario_file_without_end_is_refused_after_a_bounded_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    assert_one_line_usage_error(
        &["run", "--scenario", "/dev/zero", "--state-dir", s],
        &[
            "cannot read the scenario file: /dev/zero: is a device, not a regular file; give the file itself",
        ],
    );
    let big = dir.path().join("big.toml");
    let mut text = String::from("description = \"d\"\n");
    while text.len() <= 5 * 1024 * 1024 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, text).unwrap();
    assert_one_line_usage_error(
        &["run", "--scenario", big.to_str().unwrap(), "--state-dir", s],
        &[&format!(
            "{}: a scenario file is at most 4 MiB",
            big.display()
        )],
    );
    assert!(!state.exists());
}

/// A write stops where free space would drop below `free-space-limit`, and
/// its record says it was cut short. The limit is set so that only 8 MiB
/// are free above it: nothing near a full disk is ever written. On a tmpfs
/// of its own when the test can mount one (no other writer shares it),
/// else on the temp dir's file system.
#[test]
fn a_huge_file_stops_at_the_free_space_limit() {
    let mount = TmpfsMount::try_new("256m");
    let fallback;
    let root = match &mount {
        Ok(mount) => mount.path(),
        Err(_) => {
            fallback = tempfile::tempdir().unwrap();
            fallback.path()
        }
    };
    let room: u64 = 8 * 1024 * 1024;
    let limit = available_space(root) - room;
    let scenario = scenario_file(
        root,
        "huge.toml",
        &format!(
            "description = \"one huge file\"\nsequence = [\"write-random-files\", \"snapshot-root\"]\n\
             [options]\nmin-num-files-per-write = 1\nmax-num-files-per-write = 1\n\
             min-file-size = \"100GiB\"\nmax-file-size = \"100GiB\"\nfree-space-limit = {limit}\n"
        ),
    );
    let state = root.join("state");
    let (code, out, err, report) = snapstorm_run(
        &state,
        &root.join("report.json"),
        &[
            "--clients",
            "1",
            "--actions",
            "2",
            "--seed",
            "3",
            "--scenario",
            scenario.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let totals = &report["totals"];
    let written = totals["bytes_written"].as_u64().unwrap();
    assert!(
        written > 0 && written <= room,
        "wrote {written} bytes with {room} free above the limit: {report}"
    );
    assert_eq!(totals["low_disk_recoveries"], 0, "{report}");
    assert_eq!(totals["snapshots_created"], 1, "{report}");
    assert_eq!(report["failures"], serde_json::json!([]));
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let write: serde_json::Value = trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["action"] == "write-random-files")
        .unwrap();
    assert_eq!(write["outcome"], "ok", "{write}");
    assert_eq!(
        write["details"]["cut-short"]["reason"], "free space reached free-space-limit",
        "{write}"
    );
    assert_eq!(write["details"]["cut-short"]["free-space-limit"], limit);
}

/// The trace lives on a tiny file system that fills up in the middle of
/// the run: the run stops with exit code 3 and a line naming the trace,
/// the trace holds whole lines only, and the run is closed properly.
#[test]
fn a_trace_that_cannot_be_written_stops_the_run_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    let tiny = TmpfsMount::new("16k");
    let trace = state.join("trace.jsonl");
    let moved = tiny.path().join("trace.jsonl");
    std::fs::copy(&trace, &moved).unwrap();
    std::fs::remove_file(&trace).unwrap();
    std::os::unix::fs::symlink(&moved, &trace).unwrap();

    let scenario = dir.path().join("local.toml");
    let (code, out, err, report) = snapstorm_run(
        &state,
        &dir.path().join("second.json"),
        &[
            "--clients",
            "2",
            "--actions",
            "2000",
            "--seed",
            "4",
            "--scenario",
            scenario.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{out}\n{err}");
    let said = format!(
        "the run stopped early: cannot write the action trace {}",
        trace.display()
    );
    assert!(
        err.contains(&said) && err.contains("No space left on device"),
        "expected `{said}` in:\n{err}"
    );
    assert!(
        report["halted"]
            .as_str()
            .unwrap()
            .starts_with("cannot write the action trace"),
        "{report}"
    );
    assert!(
        report["totals"]["actions"].as_u64().unwrap() < 4000,
        "the run stopped early: {report}"
    );
    let text = std::fs::read_to_string(&moved).unwrap();
    assert!(text.ends_with('\n'), "no torn last line");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a torn line in the trace ({e}): {line}"));
    }
    let state_json = read_json(&state.join("state.json"));
    assert_eq!(state_json["run_counter"], 2);
    assert!(
        state_json["runs"][1]["ended"].is_string(),
        "the run was closed: {state_json}"
    );
}

/// Times past a year would overflow the clock they are added to: refused
/// when parsed, before anything is written.
#[test]
fn times_longer_than_a_year_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    assert_one_line_usage_error(
        &[
            "run",
            "--duration",
            "18446744073709551615s",
            "--state-dir",
            s,
        ],
        &["--duration", "longer than a year"],
    );
    assert_one_line_usage_error(
        &[
            "run",
            "--duration",
            "5s",
            "--fault",
            "network@1s:99999999h",
            "--state-dir",
            s,
        ],
        &["--fault", "longer than a year"],
    );
    assert!(!state.exists(), "nothing was written");
}

/// An action repeated a billion times does not hold the run past its
/// deadline: the repetitions stop with the run.
#[test]
fn a_run_ends_whatever_repeat_action_asks() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(
        dir.path(),
        "forever.toml",
        "description = \"a write repeated forever\"\nsequence = [\"write-random-files\"]\n\
         [options]\nmax-num-files-per-write = 1\nmax-file-size = \"4KiB\"\n\
         [action-options.write-random-files]\nrepeat-action = 1000000000\n",
    );
    let state = dir.path().join("state");
    let report = dir.path().join("report.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(["run", "--clients", "1", "--duration", "3s"])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--state-dir")
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A hang, not a speed: the run would go on for years without the fix.
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > limit {
            let _ = child.kill();
            panic!("the run did not end two minutes after its 3 s deadline");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let report = read_json(&report);
    assert_eq!(
        report["actions"]["write-random-files"]["count"], 1,
        "{report:#}"
    );
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let write: serde_json::Value = trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["action"] == "write-random-files")
        .unwrap();
    assert!(
        write["details"]["repeat-action-stopped-at"]
            .as_u64()
            .unwrap()
            >= 1,
        "{write}"
    );
}
