//! The field's reported failures as presets (`assets/scenarios/field/`),
//! run by the binary with rustic_core and with restic clients: each
//! injects its report's fault, the fault is detected, and every failure of
//! the run is one it explains — what snapstorm finds today (docs/faults.md,
//! "Failures from the field").

mod common;

use serde_json::Value;

/// `snapstorm run --scenario PRESET` with `backend` for 20 s (the preset's
/// fault is at 10 s); the exit code, stderr and the report.
fn run_preset(preset: &str, backend: &str) -> (i32, String, Value) {
    run_preset_for(preset, backend, "20s")
}

/// [`run_preset`] for `duration`.
fn run_preset_for(preset: &str, backend: &str, duration: &str) -> (i32, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let restic = (backend != "embedded").then(|| common::require_program("restic"));
    let (code, _out, err, report) = common::snapstorm_run_with(
        &dir.path().join("state"),
        &dir.path().join("report.json"),
        &[
            "--scenario",
            preset,
            "--backend",
            backend,
            "--clients",
            "2",
            "--duration",
            duration,
            "--seed",
            "1",
        ],
        restic.as_deref(),
    );
    (code, err, report)
}

/// The preset's one fault of `kind` took effect, the run exits 0 and
/// every error is the fault's; the report, for what else the test checks.
fn injected_and_nothing_unexpected(preset: &str, backend: &str, kind: &str) -> Value {
    injected_and_nothing_unexpected_for(preset, backend, kind, "20s")
}

/// [`injected_and_nothing_unexpected`] for a run of `duration`.
fn injected_and_nothing_unexpected_for(
    preset: &str,
    backend: &str,
    kind: &str,
    duration: &str,
) -> Value {
    let (code, err, report) = run_preset_for(preset, backend, duration);
    assert_eq!(code, 0, "{preset} on {backend}: {err}");
    let fault = &report["faults"][0];
    assert_eq!(fault["kind"], kind);
    assert_eq!(fault["injected"], true, "{fault}");
    let totals = &report["totals"];
    assert_eq!(totals["unexpected_failures"], 0, "{totals:#}");
    assert_eq!(totals["errors"], totals["expected_errors"], "{totals:#}");
    report
}

/// The preset's one fault did its damage, was seen, and explains every
/// failure and every error of the run; nothing is unexpected.
fn assert_found_and_explained(preset: &str, backend: &str, kind: &str) {
    let report = injected_and_nothing_unexpected(preset, backend, kind);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    let fault = &faults[0];
    assert_eq!(fault["detected"], true, "{preset} on {backend}: {fault}");
    assert!(
        fault["target"].as_str().unwrap().starts_with("data/"),
        "{fault}"
    );
    let totals = &report["totals"];
    assert!(
        totals["verification_failures"].as_u64().unwrap() >= 1,
        "{totals:#}"
    );
    let label = &fault["label"];
    for failure in report["failures"].as_array().unwrap() {
        assert_eq!(&failure["explained_by"], label, "{failure:#}");
    }
}

#[test]
fn a_pack_cut_at_2_mib_is_found_and_explains_every_failure() {
    for backend in ["embedded", "restic"] {
        assert_found_and_explained("field/restic-3023-truncated-pack", backend, "truncate-pack");
    }
}

#[test]
fn an_emptied_pack_is_found_and_explains_every_failure() {
    for backend in ["embedded", "restic"] {
        assert_found_and_explained("field/restic-2191-empty-pack", backend, "empty-pack");
    }
}

#[test]
fn two_gcs_at_once_lose_nothing_they_do_not_explain() {
    for backend in ["embedded", "restic"] {
        let report = injected_and_nothing_unexpected(
            "field/kopia-1087-overlapping-gc",
            backend,
            "overlapping-gc",
        );
        assert!(report["gc_runs"].as_u64().unwrap() >= 1, "{report:#}");
    }
}

/// The storage failing requests (restic #3646): rustic_core clients meet
/// errors (each the fault's), restic's retries get through; either way,
/// every snapshot that reported success restores: nothing is unexpected.
#[test]
fn a_failing_storage_loses_no_snapshot_that_reported_success() {
    for backend in ["embedded", "restic"] {
        // 35 s: the errors end at 25 s, and restores after them verify
        // on a loaded machine too.
        let report = injected_and_nothing_unexpected_for(
            "field/restic-3646-storage-errors",
            backend,
            "storage-errors",
            "35s",
        );
        let totals = &report["totals"];
        assert_eq!(totals["verification_failures"], 0, "{totals:#}");
        assert!(
            totals["restores_verified"].as_u64().unwrap() >= 1,
            "{totals:#}"
        );
    }
}

/// A frozen lock-free backup and `restic prune` (rustic docs #144): with
/// a rustic_core client frozen (`--backend mixed`, client-1), the prune
/// takes no notice of it and deletes the packs it had uploaded, and the
/// snapshots built on them cannot be restored or checked — unexpected, for
/// the pause damaged nothing. A frozen restic client holds its lock, the prune waits,
/// and nothing is lost.
#[test]
fn a_frozen_lock_free_backup_loses_its_packs_to_restic_prune() {
    let preset = "field/rustic-docs-144-paused-backup";
    // 30 s: the frozen backup goes on at 11 s, and a loaded machine needs
    // the time to restore or check what it saved.
    let (code, err, report) = run_preset_for(preset, "mixed", "30s");
    assert_eq!(code, 1, "{err}");
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults[0]["kind"], "pause-client", "{faults:#?}");
    assert_eq!(faults[0]["injected"], true, "{faults:#?}");
    assert!(
        err.contains("pause-client: holding the client mid-snapshot"),
        "the pause caught client-1 mid-snapshot: {err}"
    );
    let failures = report["failures"].as_array().unwrap();
    for failure in failures {
        assert_eq!(failure["unexpected"], true, "{failure:#}");
        assert_eq!(failure["explained_by"], Value::Null, "{failure:#}");
    }
    assert!(
        failures.iter().any(|failure| {
            let details = failure["details"].as_str().unwrap();
            details.contains("/data/") || details.contains("missing")
        }),
        "a restore or a check misses a data pack: {failures:#?}"
    );
    let totals = &report["totals"];
    assert_eq!(
        totals["unexpected_failures"].as_u64(),
        Some(failures.len() as u64),
        "{totals:#}"
    );

    let (code, err, report) = run_preset(preset, "restic");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("signal=\"SIGSTOP\"") && err.contains("signal=\"SIGCONT\""),
        "the frozen restic process was stopped and let go on: {err}"
    );
    assert_eq!(report["faults"][0]["injected"], true, "{report:#}");
    let totals = &report["totals"];
    assert_eq!(totals["verification_failures"], 0, "{totals:#}");
    assert_eq!(totals["errors"], totals["expected_errors"], "{totals:#}");
}

/// A lock left behind and another host's `unlock --remove-all` (restic
/// #3126/#3182), with restic clients: the unlock removes the stale lock and
/// the live lock of the frozen client-1 with it, `restic prune` then runs
/// beside that backup and deletes its packs, and the check finds a pack
/// the index names missing — unexpected, for the unlock removed locks, not
/// data. (The same run without the unlock loses nothing: the prune waits
/// for the frozen client's lock, as the paused-backup preset's restic run
/// shows.)
#[test]
fn unlock_beside_a_frozen_backup_lets_prune_take_its_packs() {
    let (code, err, report) =
        run_preset_for("field/restic-3126-stale-lock-and-unlock", "restic", "30s");
    assert_eq!(code, 1, "{err}");
    let faults = report["faults"].as_array().unwrap();
    let kinds: Vec<_> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["pause-client", "stale-lock", "unlock", "gc-storm"],
        "{faults:#?}"
    );
    assert!(faults.iter().all(|f| f["injected"] == true), "{faults:#?}");
    let removed: u32 = err
        .split("successfully removed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the unlock says what it removed: {err}"));
    assert!(
        removed >= 2,
        "the unlock removed the stale lock and a live one: {err}"
    );
    let failures = report["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "{report:#}");
    for failure in failures {
        assert_eq!(failure["unexpected"], true, "{failure:#}");
        assert_eq!(failure["explained_by"], Value::Null, "{failure:#}");
    }
    assert!(
        failures.iter().any(|failure| {
            let details = failure["details"].as_str().unwrap();
            details.contains("missing") || details.contains("/data/")
        }),
        "a pack the index names is gone: {failures:#?}"
    );
}

/// Forgets at once (rustic #1421): at 10 s every client forgets all but its
/// newest snapshot, the forgets started together, each reading every
/// snapshot the repository lists. What a forget raced is the fault's to
/// explain; what the forgets deleted is gone and nothing else is (the
/// final listing check), so nothing is unexpected.
#[test]
fn forgets_at_once_delete_what_they_chose_and_explain_their_races() {
    for backend in ["embedded", "restic"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let restic = (backend != "embedded").then(|| common::require_program("restic"));
        let (code, _out, err, report) = common::snapstorm_run_with(
            &state,
            &dir.path().join("report.json"),
            &[
                "--scenario",
                "field/rustic-1421-parallel-forget",
                "--backend",
                backend,
                "--clients",
                "2",
                "--duration",
                "16s",
                "--seed",
                "1",
            ],
            restic.as_deref(),
        );
        assert_eq!(code, 0, "{backend}: {err}");
        let fault = &report["faults"][0];
        assert_eq!(fault["kind"], "parallel-forget");
        assert_eq!(fault["injected"], true, "{fault}");
        let totals = &report["totals"];
        assert_eq!(totals["unexpected_failures"], 0, "{totals:#}");
        assert_eq!(totals["errors"], totals["expected_errors"], "{totals:#}");
        let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
        let forgets: Vec<Value> = trace
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["action"] == "forget-snapshots")
            .collect();
        assert_eq!(forgets.len(), 2, "one forget per client: {forgets:#?}");
        // Each forget's own work (after it waited for the other) overlaps
        // the other's.
        let work: Vec<(u64, u64)> = forgets
            .iter()
            .map(|forget| {
                let at = forget["at_ms"].as_u64().unwrap();
                let waited = forget["details"]["waited_ms"].as_u64().expect("met");
                (at + waited, at + forget["duration_ms"].as_u64().unwrap())
            })
            .collect();
        let began = work.iter().map(|w| w.0).max().unwrap();
        let ended = work.iter().map(|w| w.1).min().unwrap();
        assert!(began <= ended, "the forgets ran at once: {forgets:#?}");
        for forget in &forgets {
            match forget["outcome"].as_str().unwrap() {
                "ok" => assert!(
                    forget["details"]["deleted"].as_u64().unwrap() >= 1,
                    "snapshots piled up by 10 s: {forget:#}"
                ),
                "error" => assert_eq!(forget["error_class"], "raced", "{forget:#}"),
                other => panic!("{other}: {forget:#}"),
            }
        }
    }
}

#[test]
fn scenarios_lists_the_field_group_under_its_own_heading() {
    let (code, out, _) = common::snapstorm(&["scenarios"]);
    assert_eq!(code, 0);
    let (seed, field) = out
        .split_once("failures reported from the field")
        .expect("a heading of its own");
    assert!(
        seed.contains("randomized-small") && !seed.contains("field/"),
        "{out}"
    );
    for preset in [
        "field/restic-3023-truncated-pack",
        "field/restic-2191-empty-pack",
        "field/kopia-1087-overlapping-gc",
        "field/restic-3646-storage-errors",
        "field/rustic-docs-144-paused-backup",
        "field/restic-3126-stale-lock-and-unlock",
        "field/rustic-1421-parallel-forget",
    ] {
        assert!(field.contains(preset), "{out}");
    }
    assert!(
        field.contains("restic #3023") && field.contains("restic #2191"),
        "{out}"
    );
}
