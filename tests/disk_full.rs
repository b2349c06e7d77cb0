//! A disk that really runs full: the state dir on a small tmpfs, clients
//! writing files of megabytes. The engine recovers as DESIGN.md §2 says
//! (purge the data dir, restore a snapshot into it, count it), nothing it
//! recorded is torn, and no verdict on the repository comes of the full
//! disk: the state dir, moved to a roomy disk, verifies every snapshot.
//!
//! Mounting needs root (CI runs as root). Without it the test fails with
//! that said: the forced-limit variant is `tests/engine_actions.rs`
//! (`low_disk_purges_the_data_dir_and_restores_a_snapshot_into_it`).

mod common;

use std::process::Command;

use common::{TmpfsMount, read_json, rerun_verifying_everything, snapstorm_run};

const BIG_WRITES: &str = r#"
description = "writes of megabytes on a small disk"
[weights]
write-random-files = 3
snapshot-root = 2
restore-random-snapID = 1
delete-random-snapID = 1
[options]
min-num-files-per-write = 2
max-num-files-per-write = 6
min-file-size = "2MiB"
max-file-size = "8MiB"
max-dedup-percent = 0
free-space-limit = "96MiB"
"#;

#[test]
fn a_full_disk_is_recovered_from_and_never_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let small = TmpfsMount::new("192m");
    let state = small.path().join("state");
    let scenario = dir.path().join("big.toml");
    std::fs::write(&scenario, BIG_WRITES).unwrap();
    let report = dir.path().join("report.json");
    let (code, out, err, report) = snapstorm_run(
        &state,
        &report,
        &[
            "--clients",
            "2",
            "--duration",
            "25s",
            "--seed",
            "6",
            "--scenario",
            scenario.to_str().unwrap(),
        ],
    );
    assert_eq!(
        code, 0,
        "a full disk is no verdict on the repository\n{out}\n{err}"
    );
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
    assert!(
        report["totals"]["low_disk_recoveries"].as_u64().unwrap() >= 1,
        "the disk ran short and the engine recovered: {report:#}"
    );

    // Nothing torn, and everything it recorded verifies on a roomy disk.
    let roomy = dir.path().join("roomy");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(&roomy)
        .status()
        .unwrap();
    assert!(copied.success());
    let recorded = read_json(&roomy.join("state.json"));
    let trace = std::fs::read_to_string(roomy.join("trace.jsonl")).unwrap();
    for line in trace.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("torn trace line {line}: {e}"));
    }
    let live: u64 = recorded["clients"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["live"].as_array().unwrap().len() as u64)
        .sum();
    assert!(live >= 2, "{recorded:#}");
    let rerun = rerun_verifying_everything(&roomy, &dir.path().join("rerun.json"), 2);
    assert_eq!(rerun["inherited_snapshots"], live);
}
