//! Scenarios as users write them, good and bad.

use super::*;

#[test]
fn every_preset_parses() {
    let presets = Scenario::presets();
    assert_eq!(presets.len(), PRESETS.len());
    let randomized = Scenario::resolve(DEFAULT_SCENARIO).unwrap();
    let Plan::Weighted(weights) = &randomized.plan else {
        panic!("randomized-small is weighted");
    };
    assert_eq!(weights.0[&Action::SnapshotRoot], 2);
    assert_eq!(weights.0[&Action::DeleteFiles], 1);
}

#[test]
fn action_options_override_the_common_ones() {
    let tree = Scenario::resolve("many-small-files-across-directory-tree").unwrap();
    assert_eq!(
        tree.options_for(Action::WriteRandomFiles).repeat_action,
        100
    );
    assert_eq!(tree.options_for(Action::WriteRandomFiles).max_dir_depth, 15);
    assert_eq!(tree.options_for(Action::SnapshotRoot).repeat_action, 1);

    let text = "description = \"d\"\n[action-options.write-random-files]\nrepeat-actoin = 2\n";
    let err = Scenario::parse("x", text, "x.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.toml:2:1: unknown field `repeat-actoin`"),
        "{err}"
    );
}

#[test]
fn faults_in_a_scenario() {
    let text = "description = \"d\"\n[[faults]]\nkind = \"network\"\nat = \"10s\"\nduration = \"20s\"\ndrop-percent = 30\n";
    let scenario = Scenario::parse("x", text, "x.toml").unwrap();
    assert_eq!(scenario.faults.len(), 1);
    assert_eq!(scenario.faults[0].network.drop_percent, 30);
    let bad = "description = \"d\"\n\n[[faults]]\nkind = \"network\"\nat = \"later\"\n";
    let err = Scenario::parse("x", bad, "x.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("x.toml:3:1: `later` is not a duration"),
        "{err}"
    );
    let unknown = "description = \"d\"\n[[faults]]\nkind = \"meteor\"\nat = \"1s\"\n";
    let err = Scenario::parse("x", unknown, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `meteor`"), "{err}");
}

#[test]
fn per_client_sequences_round_trip_through_a_file() {
    let text = r#"description = "two clients"
seed = 42
schedule = "recorded"
[options]
max-file-size = "64KiB"
[action-options.write-random-files]
repeat-action = 2
[[clients]]
draws-as = 3
sequence = [
  { action = "write-random-files", seq = 4, order = 0 },
  { action = "snapshot-root", seq = 7, order = 2, at-ms = 1480 },
  { action = "restore-random-snapID", seq = 9, order = 5, picks = 7 },
]
[[clients]]
sequence = [{ action = "run-gc", seq = 0, order = 1 }]
[[faults]]
kind = "network"
at = "2s"
duration = "5s"
drop-percent = 30
after = 3
[[gcs]]
at = "1.5s"
after = 4
"#;
    let scenario = Scenario::parse("x", text, "x.toml").unwrap();
    assert_eq!(scenario.seed, Some(42));
    assert_eq!(scenario.schedule, Schedule::Recorded);
    assert_eq!(scenario.clients.len(), 2);
    assert_eq!(scenario.clients[0].draws_as, 3);
    assert_eq!(scenario.clients[1].draws_as, 2, "its own number by default");
    assert_eq!(
        scenario.clients[0].steps[1],
        ScriptStep {
            action: Action::SnapshotRoot,
            seq: 7,
            order: Some(2),
            at_ms: Some(1480),
            picks: None,
        }
    );
    assert_eq!(scenario.clients[0].steps[2].picks, Some(7));
    assert_eq!(scenario.faults[0].after, Some(3));
    assert_eq!(
        scenario.gcs,
        [PlannedGc {
            at: std::time::Duration::from_millis(1500),
            after: Some(4),
            aggressive: false,
        }]
    );
    let written = scenario.to_toml();
    let again = Scenario::parse("x", &written, "x.toml").unwrap();
    assert_eq!(again, scenario, "{written}");

    let plain = "description = \"d\"\n[[clients]]\nsequence = [\"write-random-files\", \"snapshot-root\"]\n";
    let plain = Scenario::parse("x", plain, "x.toml").unwrap();
    assert_eq!(
        plain.clients[0]
            .steps
            .iter()
            .map(|s| s.seq)
            .collect::<Vec<_>>(),
        vec![0, 1],
        "plain names draw as positions"
    );
    assert_eq!(plain.schedule, Schedule::Free);
    let written = Scenario::resolve(DEFAULT_SCENARIO).unwrap().to_toml();
    let preset = Scenario::parse(DEFAULT_SCENARIO, &written, "x.toml").unwrap();
    assert_eq!(preset, Scenario::resolve(DEFAULT_SCENARIO).unwrap());
}

#[test]
fn per_client_sequences_are_checked() {
    let both =
        "description = \"d\"\nsequence = [\"run-gc\"]\n[[clients]]\nsequence = [\"run-gc\"]\n";
    let err = Scenario::parse("x", both, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("x.toml: give either `[[clients]]`"),
        "{err}"
    );
    let unordered =
        "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [\"run-gc\"]\n";
    let err = Scenario::parse("x", unordered, "x.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "x.toml: client 1: on the recorded schedule every step needs its `order`, and `run-gc` has none"
    );
    // The order alone is paced as strictly.
    let order_only = unordered.replace("\"recorded\"", "\"order\"");
    let err = Scenario::parse("x", &order_only, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("every step needs its `order`"), "{err}");
    let twice = "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [{ action = \"run-gc\", seq = 0, order = 1 }, { action = \"run-gc\", seq = 1, order = 1 }]\n";
    let err = Scenario::parse("x", twice, "x.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "x.toml: order 1 is given twice; each place is taken once"
    );
    let empty = "description = \"d\"\n[[clients]]\nsequence = []\n";
    let err = Scenario::parse("x", empty, "x.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "x.toml: client 1: `sequence` is empty: list at least one action"
    );
}

#[test]
fn errors_name_file_line_and_problem() {
    let err = Scenario::parse(
        "x",
        "description = \"d\"\n[options]\nmax-dir-dpth = 3\n",
        "x.toml",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("x.toml:2:1: unknown field `max-dir-dpth`"),
        "{text}"
    );

    let err = Scenario::parse("x", "description = 5\n", "x.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.toml:1:15: invalid type: integer `5`, expected a string"),
        "{err}"
    );

    let err = Scenario::parse(
        "x",
        "description = \"d\"\n[weights]\nsnapshot-all = 1\n",
        "x.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.toml:3:1: unknown variant `snapshot-all`"),
        "{err}"
    );

    let err = Scenario::parse(
        "x",
        "description = \"d\"\n\n[options]\nmin-dedup-percent = 120\n",
        "x.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml:3:1: option `min-dedup-percent`: 120 is not a percentage (0..=100)"
    );

    let err = Scenario::resolve("no-such-preset").unwrap_err();
    assert!(err.to_string().contains("snapstorm scenarios"), "{err}");
}

fn refusal(toml: &str) -> String {
    Scenario::parse("x", toml, "x.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn a_sequence_with_an_unknown_action_lists_the_actions() {
    for step in [
        "\"snapshot-everything\"",
        "{ action = \"snapshot-everything\", seq = 0 }",
    ] {
        let err = refusal(&format!(
            "description = \"d\"\n[[clients]]\nsequence = [{step}]\n"
        ));
        assert!(
            err.contains("unknown action `snapshot-everything` in a sequence; the actions are ")
                && err.contains("run-gc"),
            "{err}"
        );
    }
}

#[test]
fn more_clients_than_a_run_takes_are_refused() {
    let mut toml = String::from("description = \"d\"\n");
    for _ in 0..=crate::engine::MAX_CLIENTS {
        toml.push_str("[[clients]]\nsequence = [\"run-gc\"]\n");
    }
    assert_eq!(
        refusal(&toml),
        format!(
            "x.toml: {} `[[clients]]` sequences: a run takes at most {} clients, as --clients does",
            crate::engine::MAX_CLIENTS + 1,
            crate::engine::MAX_CLIENTS
        )
    );
}

#[test]
fn a_recorded_order_that_could_never_start_is_refused_naming_the_step() {
    let backwards = "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [{ action = \"run-gc\", seq = 0, order = 2 }, { action = \"snapshot-root\", seq = 1, order = 1 }]\n";
    let err = refusal(backwards);
    assert!(
        err.contains("client 1: step 2 (`snapshot-root`, order 1) comes after `run-gc` (order 2)"),
        "{err}"
    );
}

#[test]
fn after_is_only_for_the_recorded_schedule_and_its_places() {
    let free = "description = \"d\"\n[[clients]]\nsequence = [\"run-gc\"]\n[[faults]]\nkind = \"gc-storm\"\nat = \"1s\"\nduration = \"1s\"\nafter = 1\n";
    let err = refusal(free);
    assert!(
        err.contains(
            "`after` places a fault on the recorded schedule, and this scenario's schedule is free"
        ),
        "{err}"
    );
    let beyond = "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [{ action = \"run-gc\", seq = 0, order = 0 }]\n[[faults]]\nkind = \"gc-storm\"\nat = \"1s\"\nduration = \"1s\"\nafter = 7\n";
    let err = refusal(beyond);
    assert!(
        err.contains("`after = 7` names a place the schedule does not have (its steps take places up to 0, and its 1 fault(s) and GC(s) as many after); give an `after` from 0 to 1"),
        "{err}"
    );
    // Faults take places of their own: a shrink writes one step and two
    // faults after it (a pause, then the prune) as places 0, 1 and 2.
    let two_after = "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [{ action = \"snapshot-root\", seq = 0, order = 0 }]\n[[faults]]\nkind = \"pause-client\"\nat = \"8s\"\nduration = \"10s\"\nafter = 1\n[[faults]]\nkind = \"aggressive-gc\"\nat = \"10s\"\nafter = 2\n";
    Scenario::parse("x", two_after, "x.toml").expect("places 1 and 2 are the faults'");
    let gc_on_free = "description = \"d\"\n[[clients]]\nsequence = [\"run-gc\"]\n[[gcs]]\nat = \"1s\"\nafter = 1\n";
    let err = refusal(gc_on_free);
    assert!(
        err.contains("a GC's `after` places it on the recorded schedule"),
        "{err}"
    );
    let gc_without_place = "description = \"d\"\nschedule = \"order\"\n[[clients]]\nsequence = [{ action = \"run-gc\", seq = 0, order = 0 }]\n[[gcs]]\nat = \"1s\"\n";
    let err = refusal(gc_without_place);
    assert!(
        err.contains("every GC needs `after`, and the GC at 1s has none"),
        "{err}"
    );
}

/// `races` names a snapshot step of the scenario's sequences for an
/// aggressive prune to race; it reads back as written, and anything else
/// is refused, naming the fix.
#[test]
fn races_names_a_backup_of_the_scenario_for_an_aggressive_prune() {
    let raced = |kind: &str, races: &str| {
        format!(
            "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [\n  {{ action = \"write-random-files\", seq = 4, order = 0 }},\n  {{ action = \"snapshot-root\", seq = 5, order = 1 }},\n]\n[[faults]]\nkind = \"{kind}\"\nat = \"1s\"\nafter = 2\nraces = \"{races}\"\n"
        )
    };
    let scenario = Scenario::parse("x", &raced("aggressive-gc", "client-1:5"), "x.toml").unwrap();
    assert_eq!(
        scenario.faults[0].races,
        Some(crate::faults::RacedStep { client: 1, seq: 5 })
    );
    let written = scenario.to_toml();
    assert!(written.contains("races = \"client-1:5\""), "{written}");
    assert_eq!(Scenario::parse("x", &written, "x.toml").unwrap(), scenario);

    let err = refusal(&raced("aggressive-gc", "client-1:4"));
    assert!(
        err.contains("`races = \"client-1:4\"` names client-1's step of seq 4, and the scenario's client 1 has no `snapshot-root` step of that seq"),
        "a write is no backup: {err}"
    );
    let err = refusal(&raced("aggressive-gc", "client-2:5"));
    assert!(
        err.contains("client 2 has no `snapshot-root` step"),
        "{err}"
    );
    let err = refusal(&raced("overlapping-gc", "client-1:5"));
    assert!(
        err.contains("races names the backup an aggressive prune raced; it is an option of aggressive-gc, not of overlapping-gc"),
        "{err}"
    );
    let err = refusal(&raced("aggressive-gc", "client-1/5"));
    assert!(
        err.contains("names no step: write \"client-N:SEQ\""),
        "{err}"
    );
}
