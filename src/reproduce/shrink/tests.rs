//! Tests of `shrink`.

use super::*;

#[test]
fn the_shrink_command_quotes_what_a_shell_would_split() {
    assert_eq!(
        shrink_command(Path::new("/tmp/snapstorm-x1"), Path::new("minimal.toml")),
        "snapstorm shrink /tmp/snapstorm-x1 -o minimal.toml"
    );
    assert_eq!(
        shrink_command(Path::new("/tmp/it's here"), Path::new("a b.toml")),
        r"snapstorm shrink '/tmp/it'\''s here' -o 'a b.toml'"
    );
}

#[test]
fn chunks_cover_the_items_in_order() {
    let items: Vec<u32> = (0..7).collect();
    let chunks = split(&items, 3);
    assert_eq!(chunks, vec![vec![0, 1], vec![2, 3], vec![4, 5, 6]]);
    assert_eq!(split(&items, 10).len(), 7);
}

/// A candidate that leaves a client out runs the rest numbered from 1: a
/// fault aimed at a kept client (`client=`, `victim=`, `races`) follows it
/// to its new number, and one whose client is gone picks for itself (and
/// a prune whose raced step is gone races nothing).
#[test]
fn faults_follow_their_clients_to_the_numbers_they_run_under() {
    use crate::engine::scenario::ScriptStep;
    use crate::faults::{FaultKind, RacedStep, VictimRole};
    let script = |draws_as: u32, order: u64| ClientScript {
        draws_as,
        run: 1,
        steps: vec![ScriptStep {
            action: crate::engine::Action::WriteRandomFiles,
            seq: 0,
            order: Some(order),
            at_ms: None,
            picks: None,
        }],
    };
    // Client 2 of the recording was left out.
    let mut clients = vec![script(1, 10), script(3, 30)];
    let fault = |kind: FaultKind, client: Option<u32>, victim: Option<VictimRole>| FaultSpec {
        client,
        victim,
        after: Some(20),
        ..FaultSpec::new(kind, Duration::ZERO)
    };
    let mut faults = vec![
        fault(FaultKind::KillClient, Some(3), None),
        fault(
            FaultKind::CorruptPack,
            None,
            Some(VictimRole { client: 3, nth: 4 }),
        ),
        fault(
            FaultKind::DeletePack,
            None,
            Some(VictimRole { client: 2, nth: 1 }),
        ),
        fault(FaultKind::RevokeClient, Some(2), None),
        FaultSpec {
            races: Some(RacedStep { client: 3, seq: 0 }),
            ..fault(FaultKind::AggressiveGc, None, None)
        },
        FaultSpec {
            races: Some(RacedStep { client: 3, seq: 1 }),
            ..fault(FaultKind::AggressiveGc, None, None)
        },
        FaultSpec {
            races: Some(RacedStep { client: 2, seq: 0 }),
            ..fault(FaultKind::AggressiveGc, None, None)
        },
    ];
    renumber(&mut clients, &mut faults, &mut []);
    // The recording's numbers stay until a scenario is made of them (a
    // shrink makes one per candidate from the same recording).
    assert_eq!(faults[0].client, Some(3), "renumber leaves clients be");
    let faults = crate::reproduce::replay::aimed_as_numbered(&clients, &faults);
    assert_eq!(faults[0].client, Some(2));
    assert_eq!(faults[1].victim, Some(VictimRole { client: 2, nth: 4 }));
    assert_eq!(faults[2].victim, None);
    assert_eq!(faults[3].client, None);
    assert_eq!(faults[4].races, Some(RacedStep { client: 2, seq: 0 }));
    assert_eq!(faults[5].races, None, "client-3 has no step 1 left");
    assert_eq!(faults[6].races, None, "client-2 is left out");
    assert_eq!(faults[0].after, Some(1), "places renumbered too");
}
