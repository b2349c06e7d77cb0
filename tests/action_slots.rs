//! Actions take turns on the engine's slots: with `SNAPSTORM_ACTION_SLOTS`
//! set, no more actions than that run at once, whatever the client count,
//! and every client still gets its turns. Checked on the real binary and
//! backend through the trace, where each action has its start and duration
//! (the same run with four slots has four actions at once).

mod common;

use std::time::SystemTime;

use common::read_json;

/// Start and end of every action in the trace, in milliseconds.
fn action_intervals(trace: &str) -> Vec<(u128, u128)> {
    trace
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line.get("action").is_some())
        .map(|line| {
            let start: SystemTime =
                humantime::parse_rfc3339(line["time"].as_str().unwrap()).unwrap();
            let start = start
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            let took = u128::from(line["duration_ms"].as_u64().unwrap());
            (start, start + took)
        })
        .collect()
}

/// The most intervals that overlap at one instant. Starts and durations
/// are truncated to the millisecond, so ends and starts within 1 ms of
/// each other do not count as overlapping.
fn most_at_once(intervals: &[(u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = Vec::new();
    for &(start, end) in intervals {
        events.push((start + 1, 1));
        events.push((end, -1));
    }
    // At the same instant, ends before starts.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn overlap_counting_tells_turns_from_overlaps() {
    assert_eq!(most_at_once(&[(0, 10), (10, 20), (20, 30)]), 1);
    assert_eq!(most_at_once(&[(0, 10), (5, 20), (21, 30)]), 2);
    assert_eq!(most_at_once(&[(0, 100), (5, 20), (10, 30)]), 3);
}

#[test]
fn one_slot_runs_every_clients_actions_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (state, report) = (dir.path().join("state"), dir.path().join("report.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .env("SNAPSTORM_ACTION_SLOTS", "1")
        .args(["run", "--clients", "4", "--actions", "10", "--seed", "3"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report = read_json(&report);
    assert_eq!(report["totals"]["verification_failures"], 0, "{report}");
    for client in report["clients"].as_array().unwrap() {
        assert_eq!(
            client["actions"], 10,
            "every client had its turns: {client}"
        );
    }
    let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    let intervals = action_intervals(&trace);
    assert_eq!(intervals.len(), 40, "{trace}");
    assert!(
        intervals.iter().any(|(start, end)| end - start > 0),
        "actions that take time: {trace}"
    );
    assert_eq!(most_at_once(&intervals), 1, "{trace}");
}
