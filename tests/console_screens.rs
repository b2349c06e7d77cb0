//! Whole-screen snapshots of the console, drawn on ratatui's TestBackend
//! from an `App` fed with the same events a run sends. Run-specific values
//! (port, state directory) are filtered out of the snapshots.

mod common;

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::text::Span;
use snapstorm::console::app::{App, UiAction};
use snapstorm::console::layout;
use snapstorm::console::theme::Theme;
use snapstorm::engine::progress::{ProgressView, Stage};
use snapstorm::engine::stats::{ClientCounts, ClientReport};
use snapstorm::engine::store::Failure;
use snapstorm::engine::traits::ClientId;
use snapstorm::engine::{Action, Origin, Outcome};
use snapstorm::run::Event;

use common::console::{info, record, render, text};

/// Publishes counts as the engine would, after changing one client's:
/// the screen displays these, it counts nothing itself.
fn publish(app: &mut App, client: u32, change: impl FnOnce(&mut ClientCounts)) {
    let mut counts = app.counts.clone();
    match counts.clients.iter_mut().find(|c| c.id == ClientId(client)) {
        Some(report) => change(&mut report.counts),
        None => {
            let mut fresh = ClientCounts::default();
            change(&mut fresh);
            counts.clients.push(ClientReport {
                id: ClientId(client),
                kind: None,
                counts: fresh,
            });
        }
    }
    let mut totals = ClientCounts::default();
    for c in &counts.clients {
        totals.actions += c.counts.actions;
        totals.snapshots_created += c.counts.snapshots_created;
        totals.snapshots_live += c.counts.snapshots_live;
        totals.snapshots_deleted += c.counts.snapshots_deleted;
        totals.restores_verified += c.counts.restores_verified;
        totals.verification_failures += c.counts.verification_failures;
        totals.unexpected_failures += c.counts.unexpected_failures;
        totals.errors += c.counts.errors;
        totals.no_ops += c.counts.no_ops;
    }
    counts.totals = totals;
    let running = app.clients.len();
    app.set_counts(counts, running);
}

/// A failure the engine counted for `client`.
fn count_failure(app: &mut App, client: u32, unexpected: bool) {
    publish(app, client, |c| {
        c.actions += 1;
        c.verification_failures += 1;
        c.unexpected_failures += u64::from(unexpected);
    });
}

/// The client's snapshot is part way (45 of 120 MiB), as the engine publishes it.
fn snapshot_part_way(app: &mut App, client: u32) {
    let mut counts = app.counts.clone();
    counts.in_progress.insert(
        ClientId(client),
        ProgressView {
            stage: Stage::Transfer,
            files_done: None,
            files_total: Some(212),
            bytes_done: 45 << 20,
            bytes_total: Some(120 << 20),
            reported: true,
        },
    );
    let running = app.running_clients;
    app.set_counts(counts, running);
}

/// The engine's throughput when every action so far finished in the run's
/// first second and `seconds` have passed since.
fn finished_in_the_first_second(app: &mut App, seconds: u64) {
    let first = app.counts.totals.actions;
    app.counts.throughput = std::iter::once(first)
        .chain(std::iter::repeat_n(0, seconds as usize - 1))
        .collect();
}

/// Four clients, each having written, snapshotted and verified; two running now.
fn busy_app(theme: Theme) -> (App, Instant) {
    let t0 = Instant::now();
    let mut app = App::new(&info(), t0, theme);
    let script = [
        (Action::WriteRandomFiles, Outcome::Ok, 164),
        (Action::SnapshotRoot, Outcome::Ok, 1240),
        (Action::RestoreRandomSnapshot, Outcome::Ok, 310),
        (Action::DeleteRandomSnapshot, Outcome::NoOp, 0),
        (Action::DeleteFiles, Outcome::Ok, 3),
    ];
    for client in 1..=4 {
        app.apply_event(Event::ClientAdded(ClientId(client)));
        for (seq, (action, outcome, ms)) in script.iter().enumerate() {
            let live = usize::from(seq >= 1);
            let event = Event::ActionFinished(Box::new(record(
                client,
                seq as u64,
                *action,
                *outcome,
                ms + u64::from(client),
                live,
            )));
            app.apply_event(event);
        }
        publish(&mut app, client, |c| {
            c.actions = script.len() as u64;
            c.snapshots_created = 1;
            c.snapshots_live = 1;
            c.restores_verified = 1;
            c.no_ops = 1;
        });
    }
    let now = t0 + Duration::from_secs(83);
    app.apply_event(Event::ActionStarted {
        client: ClientId(2),
        action: Action::SnapshotRoot,
        at: now - Duration::from_millis(1500),
    });
    app.apply_event(Event::ActionStarted {
        client: ClientId(4),
        action: Action::WriteRandomFiles,
        at: now - Duration::from_millis(250),
    });
    snapshot_part_way(&mut app, 2);
    app.repo_bytes = Some(48 * 1024 * 1024 + 300 * 1024);
    finished_in_the_first_second(&mut app, (now - t0).as_secs());
    app.tick(now);
    (app, now)
}

macro_rules! assert_screen {
    ($name:expr, $buffer:expr) => {
        insta::with_settings!({filters => vec![
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
            (r"/tmp/snapstorm-[A-Za-z0-9]+", "[state-dir]"),
        ]}, {
            insta::assert_snapshot!($name, text(&$buffer));
        });
    };
}

#[test]
fn startup_with_four_clients() {
    let (app, _) = busy_app(Theme::coloured());
    let screen = render(&app, 140, 45);
    assert_screen!("startup_four_clients", screen);
    let t = text(&screen);
    assert!(t.contains("clients 4 · failures 0"), "{t}");
    assert!(t.contains("· gc 0"), "{t}");
    assert!(
        t.contains("⟳ snapshot-root 1.5s"),
        "running action with elapsed time:\n{t}"
    );
}

#[test]
fn a_failure_is_shown_and_its_diff_opens_with_enter() {
    let (mut app, _) = busy_app(Theme::coloured());
    let failure = Failure {
        run: 1,
        time: "2026-11-25T12:01:00.000Z".into(),
        client: ClientId(3),
        snapshot: Some("3f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1b".into()),
        action: Origin::Action(Action::RestoreRandomSnapshot),
        kind: snapstorm::engine::store::FailureKind::ContentMismatch,
        explained_by: None,
        unreadable: None,
        summary: "restore differs: 1 missing, 0 extra, 1 changed (first: missing dir-1/file-07)".into(),
        details: "restore differs: 1 missing, 0 extra, 1 changed (first: missing dir-1/file-07)\nmissing (1):\n  dir-1/file-07\nchanged (1):\n  dir-2/file-99: content differs".into(),
    };
    let mut failed = record(
        3,
        5,
        Action::RestoreRandomSnapshot,
        Outcome::Failure,
        420,
        1,
    );
    failed.message = Some(failure.summary.clone());
    failed.failures = vec![failure];
    app.apply_event(Event::ActionFinished(Box::new(failed)));
    count_failure(&mut app, 3, true);
    let screen = render(&app, 140, 45);
    assert_screen!("failure_shown", screen);
    assert!(text(&screen).contains("failures 1"));

    assert_eq!(app.update(UiAction::SwitchFocus), None);
    assert_eq!(app.update(UiAction::OpenDetails), None);
    let detail = render(&app, 140, 45);
    assert_screen!("failure_detail", detail);
    assert!(text(&detail).contains("dir-2/file-99: content differs"));
}

#[test]
fn help_overlay_lists_every_key() {
    let (mut app, _) = busy_app(Theme::coloured());
    app.update(UiAction::ToggleHelp);
    let screen = render(&app, 140, 45);
    assert_screen!("help_overlay", screen);
    let t = text(&screen);
    for row in snapstorm::console::keymap::KEYMAP {
        assert!(t.contains(row.keys), "help lacks {}", row.keys);
    }
}

#[test]
fn paused_shows_in_the_header_and_on_every_pane() {
    let (mut app, _) = busy_app(Theme::coloured());
    app.apply_event(Event::PausedAll(true));
    let screen = render(&app, 140, 45);
    assert_screen!("paused", screen);
    let t = text(&screen);
    assert!(t.contains(" PAUSED "));
    assert_eq!(t.matches("paused (all)").count(), 4);
}

#[test]
fn fault_menu_and_an_expected_failure() {
    let (mut app, _) = busy_app(Theme::coloured());
    let mut expected = record(
        1,
        7,
        Action::RestoreRandomSnapshot,
        Outcome::Failure,
        900,
        1,
    );
    expected.message =
        Some("restore failed: backend panicked: Data decryption failed, MAC check failed.".into());
    expected.explained_by = Some("corrupt-pack@6.4s".into());
    expected.failures = vec![Failure {
        run: 1,
        time: "2026-11-25T12:02:00.000Z".into(),
        client: ClientId(1),
        snapshot: Some("aa11bb22cc33dd44".into()),
        action: Origin::Action(Action::RestoreRandomSnapshot),
        kind: snapstorm::engine::store::FailureKind::RestoreFailed,
        summary: "restore failed: backend panicked: Data decryption failed, MAC check failed."
            .into(),
        details: "Data decryption failed, MAC check failed.".into(),
        explained_by: Some("corrupt-pack@6.4s".into()),
        unreadable: None,
    }];
    app.apply_event(Event::ActionFinished(Box::new(expected)));
    count_failure(&mut app, 1, false);
    let screen = render(&app, 140, 45);
    assert_screen!("expected_failure", screen);
    let t = text(&screen);
    assert!(t.contains("failures 1 (0 unexpected)"), "{t}");
    assert!(t.contains("expected: corrupt-pack@6.4s"), "{t}");
    app.update(UiAction::OpenFaultMenu);
    let menu = render(&app, 140, 45);
    assert_screen!("fault_menu", menu);
    for kind in snapstorm::faults::FaultKind::ALL {
        assert!(text(&menu).contains(kind.name()), "menu lacks {kind}");
    }
}

#[test]
fn too_small_terminal_says_so() {
    let (app, _) = busy_app(Theme::coloured());
    let screen = render(&app, 60, 15);
    assert_screen!("too_small", screen);
    assert!(text(&screen).contains("60×15, need at least 80×24"));
}

#[test]
fn no_color_keeps_selection_and_failures_visible_without_colour() {
    let (mut app, _) = busy_app(Theme::plain());
    let mut failed = record(
        2,
        9,
        Action::RestoreRandomSnapshot,
        Outcome::Failure,
        400,
        1,
    );
    let summary = "restore differs: 0 missing, 1 extra, 0 changed (first: extra x)";
    failed.message = Some(summary.into());
    failed.failures = vec![Failure {
        run: 1,
        time: "2026-11-25T12:03:00.000Z".into(),
        client: ClientId(2),
        snapshot: Some("bb22cc33dd44ee55".into()),
        action: Origin::Action(Action::RestoreRandomSnapshot),
        kind: snapstorm::engine::store::FailureKind::ContentMismatch,
        summary: summary.into(),
        details: "extra (1):
  x"
        .into(),
        explained_by: None,
        unreadable: None,
    }];
    app.apply_event(Event::ActionFinished(Box::new(failed)));
    count_failure(&mut app, 2, true);
    let screen = render(&app, 140, 45);
    assert_screen!("no_color", screen);
    for cell in screen.content() {
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "NO_COLOR draws no colour: {cell:?}"
        );
    }
    // The selected pane's title (client-1) is reversed; the failed stream entry of client-2 too.
    let find = |needle: &str| -> (u16, u16) {
        let t = text(&screen);
        for (y, line) in t.lines().enumerate() {
            if let Some(byte) = line.find(needle) {
                return (line[..byte].chars().count() as u16, y as u16);
            }
        }
        panic!("{needle} not on screen");
    };
    let (x, y) = find("▶ client-1");
    assert!(
        screen[(x + 2, y)].modifier.contains(Modifier::REVERSED),
        "selection stands out"
    );
    let (x, y) = find("✗✗");
    assert!(
        screen[(x, y)]
            .modifier
            .contains(Modifier::REVERSED | Modifier::BOLD),
        "failure stands out"
    );
}

#[test]
fn resize_redraws_for_the_new_size() {
    let (app, _) = busy_app(Theme::coloured());
    let mut terminal = Terminal::new(TestBackend::new(140, 45)).unwrap();
    terminal.draw(|frame| layout::draw(frame, &app)).unwrap();
    terminal.backend_mut().resize(100, 30);
    terminal.autoresize().unwrap();
    terminal.draw(|frame| layout::draw(frame, &app)).unwrap();
    let t = text(terminal.backend().buffer());
    assert_eq!(t.lines().count(), 30);
    assert!(t.lines().next().unwrap().chars().count() <= 100);
    assert!(t.contains("clients 4"));
}

/// An unexpected failure of `client`, as the engine reports it.
fn unexpected_failure(app: &mut App, client: u32, seq: u64, file: &str) {
    let summary = format!("restore differs: 1 missing, 0 extra, 0 changed (first: missing {file})");
    let failure = Failure {
        run: 1,
        time: "2026-11-25T12:01:00.000Z".into(),
        client: ClientId(client),
        snapshot: Some(format!(
            "{seq:02}9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1b"
        )),
        action: Origin::Action(Action::RestoreRandomSnapshot),
        kind: snapstorm::engine::store::FailureKind::ContentMismatch,
        explained_by: None,
        unreadable: None,
        summary: summary.clone(),
        details: format!(
            "{summary}\nmissing (1):\n  {file}\n{}",
            (1..=40)
                .map(|i| format!("  context line {i} of the diff"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let mut failed = record(
        client,
        seq,
        Action::RestoreRandomSnapshot,
        Outcome::Failure,
        420,
        1,
    );
    failed.message = Some(summary);
    failed.failures = vec![failure];
    app.apply_event(Event::ActionFinished(Box::new(failed)));
    count_failure(app, client, true);
}

/// The run the console must hold up under: 32 clients of which 20 were
/// removed, everything paused, an unexpected failure, a network fault in
/// effect for 9 more seconds.
fn storm_app(width: u16, height: u16) -> App {
    let t0 = Instant::now();
    let mut app = App::new(&info(), t0, Theme::coloured());
    app.resize(width, height);
    for client in 1..=32 {
        app.apply_event(Event::ClientAdded(ClientId(client)));
        for seq in 0..3u64 {
            let (action, outcome, ms) = match seq {
                0 => (Action::WriteRandomFiles, Outcome::Ok, 164),
                1 => (Action::SnapshotRoot, Outcome::Ok, 1240),
                _ => (Action::RestoreRandomSnapshot, Outcome::Ok, 310),
            };
            let mut done = record(client, seq, action, outcome, ms, 1);
            if action == Action::RestoreRandomSnapshot {
                done.snapshot = Some(format!("4f2a91c0{client:02}"));
            }
            match action {
                Action::SnapshotRoot => {
                    done.snapshot = Some(format!(
                        "4f2a91c0{client:02}e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d44e6f9a2c1be0d4"
                    ))
                }
                Action::WriteRandomFiles => {
                    done.details.insert("files".into(), serde_json::json!(12));
                    done.details
                        .insert("bytes".into(), serde_json::json!(1_363_148));
                }
                _ => {}
            }
            app.apply_event(Event::ActionFinished(Box::new(done)));
        }
        publish(&mut app, client, |c| {
            c.actions = 3;
            c.snapshots_created = 1;
            c.snapshots_live = 1;
            c.restores_verified = 1;
        });
    }
    for client in 1..=20 {
        app.apply_event(Event::ClientRemoved(ClientId(client)));
    }
    let mut counts = app.counts.clone();
    counts.faults_injected = 1;
    app.set_counts(counts, 12);
    unexpected_failure(&mut app, 23, 5, "dir-1/file-07");
    app.apply_event(Event::PausedAll(true));
    app.apply_event(Event::FaultInjected(snapstorm::engine::traits::Injected {
        label: "network@61.0s".into(),
        kind: snapstorm::faults::FaultKind::Network,
        target: "proxy 127.0.0.1:41234: latency 200ms, drop 5%, error 5%".into(),
        duration: Some(Duration::from_secs(15)),
        enqueue: Vec::new(),
    }));
    let now = t0 + Duration::from_secs(6);
    app.apply_event(Event::ActionStarted {
        client: ClientId(24),
        action: Action::SnapshotRoot,
        at: now - Duration::from_millis(2500),
    });
    snapshot_part_way(&mut app, 24);
    app.repo_bytes = Some(48 * 1024 * 1024);
    finished_in_the_first_second(&mut app, (now - t0).as_secs());
    app.tick(now);
    app
}

/// What every size must show at once: paused, the unexpected failure, the fault in effect.
fn assert_all_visible(t: &str) {
    assert!(t.contains(" PAUSED "), "PAUSED:\n{t}");
    assert!(t.contains("1 UNEXPECTED"), "the failure banner:\n{t}");
    assert!(
        t.contains("⚡ network 9s left"),
        "the fault and its time left:\n{t}"
    );
    assert!(t.contains("client-23"), "the failing client:\n{t}");
    assert!(
        t.contains("⟳ snapshot-root 2.5s 37%"),
        "how far the running snapshot got:\n{t}"
    );
    assert!(t.contains("failures 1 (1 unexpected)"), "the totals:\n{t}");
    assert!(
        t.contains("20 removed client(s) collapsed — r shows them"),
        "removed clients collapse:\n{t}"
    );
    assert!(t.contains("? "), "? more is always there:\n{t}");
    for removed in 1..=20 {
        assert!(
            !t.contains(&format!("client-{removed} ")),
            "removed client-{removed} is drawn:\n{t}"
        );
    }
}

#[test]
fn thirty_two_clients_twenty_removed_at_every_size() {
    for (width, height) in [(80, 24), (100, 30), (140, 45), (200, 60)] {
        let app = storm_app(width, height);
        let screen = render(&app, width, height);
        let t = text(&screen);
        assert_all_visible(&t);
        if width >= 100 {
            // What the last actions made: the snapshots a restore checked, in panes or table.
            assert!(t.contains("4f2a91c0"), "what actions made:\n{t}");
        }
        assert_screen!(format!("storm_{width}x{height}"), screen);
        // The selection moved off the removed clients.
        assert_eq!(app.selected, Some(ClientId(21)));
    }
    // 80×24 has no room for 12 panes: the table; 200×60 has room for them all.
    assert!(layout::client_table_shown(&storm_app(80, 24)));
    assert!(!layout::client_table_shown(&storm_app(200, 60)));
}

#[test]
fn overlays_scroll_to_their_end_at_80x24() {
    let mut app = storm_app(80, 24);
    // Help: its last line is out of view until End.
    app.update(UiAction::ToggleHelp);
    let t = text(&render(&app, 80, 24));
    assert!(
        !t.contains("r shows them)"),
        "help's end starts out of view:\n{t}"
    );
    app.update(UiAction::ScrollBottom);
    let screen = render(&app, 80, 24);
    let t = text(&screen);
    assert!(t.contains("r shows them)"), "help's last line:\n{t}");
    assert!(t.contains("end ·"), "says it is at the end:\n{t}");
    assert_screen!("help_end_80x24", screen);
    app.update(UiAction::ScrollTop);
    assert_eq!(app.overlay_scroll, 0);
    app.update(UiAction::PageDown);
    assert!(app.overlay_scroll > 5);
    app.update(UiAction::CloseOverlay);

    // Fault menu: every fault at 80×24, the last one once scrolled to the end.
    app.update(UiAction::OpenFaultMenu);
    app.update(UiAction::ScrollBottom);
    let t = text(&render(&app, 80, 24));
    let last = snapstorm::faults::FaultKind::ALL.last().unwrap().name();
    let key = snapstorm::console::keymap::FAULT_KEYS.last().unwrap();
    assert!(
        t.contains(&format!("{key}  {last}")),
        "the last fault:\n{t}"
    );
    app.update(UiAction::CloseOverlay);

    // A failure's diff, to its last line.
    app.update(UiAction::SwitchFocus);
    app.update(UiAction::OpenDetails);
    app.update(UiAction::ScrollBottom);
    let screen = render(&app, 80, 24);
    let t = text(&screen);
    assert!(t.contains("context line 40 of the diff"), "{t}");
    assert_screen!("failure_end_80x24", screen);
    app.update(UiAction::CloseOverlay);

    // A client's whole stream, down to its first action.
    app.update(UiAction::SwitchFocus);
    app.update(UiAction::OpenDetails);
    app.update(UiAction::ScrollBottom);
    let t = text(&render(&app, 80, 24));
    assert!(
        t.contains("all 3 actions, newest first") || t.contains("write-random-files"),
        "{t}"
    );
    assert!(t.contains("write-random-files"), "the oldest action:\n{t}");
}

#[test]
fn failures_are_listed_newest_first_with_client_action_and_kind() {
    let mut app = storm_app(100, 30);
    for (n, client) in [(6u64, 24), (7, 25), (8, 26)] {
        unexpected_failure(&mut app, client, n, &format!("dir-{n}/file"));
    }
    let t = text(&render(&app, 100, 30));
    let newest = t
        .find("client-26 restore-random-snapID content-mismatch")
        .expect(&t);
    let older = t
        .find("client-25 restore-random-snapID content-mismatch")
        .expect(&t);
    assert!(newest < older, "newest first:\n{t}");
    assert!(
        t.contains("content-mismatch 089a2c1b"),
        "kind and snapshot:\n{t}"
    );
    let wide = text(&render(
        &{
            let mut wide = storm_app(200, 60);
            unexpected_failure(&mut wide, 26, 8, "dir-8/file");
            wide
        },
        200,
        60,
    ));
    assert!(
        wide.contains("client-26 restore-random-snapID content-mismatch 089a2c1b"),
        "one row at 200 columns:\n{wide}"
    );
}

#[test]
fn key_hints_fit_with_more_always_last() {
    for width in [80u16, 100, 140] {
        let app = storm_app(width, 30);
        let t = text(&render(&app, width, 30));
        let status = t.lines().last().unwrap();
        assert!(status.contains(" q  quit"), "{status}");
        assert!(status.trim_end().ends_with("?  more"), "{status}");
    }
    // A notice has its own line and leaves the hints whole.
    let mut app = storm_app(80, 24);
    app.update(UiAction::RemoveSelected);
    app.apply_event(Event::ClientRemoved(ClientId(21)));
    app.selected = Some(ClientId(21));
    app.show_removed = true;
    assert_eq!(app.update(UiAction::SnapshotNow), None);
    let t = text(&render(&app, 80, 24));
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[22].contains("Nothing to snapshot: client-21 is removed"),
        "{t}"
    );
    assert!(lines[23].contains("?  more"), "{t}");
}

#[test]
fn wide_glyphs_do_not_shift_columns() {
    let (mut app, _) = busy_app(Theme::coloured());
    let mut record = record(1, 9, Action::WriteRandomFiles, Outcome::Error, 50, 1);
    record.explained_by = Some("network@1.0s".into());
    app.apply_event(Event::ActionFinished(Box::new(record)));
    let t = text(&render(&app, 140, 45));
    // Display columns, not bytes: where `needle` starts on the first line holding `mark`.
    let column = |mark: &str, needle: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("│{mark}")))
            .and_then(|l| l.find(needle).map(|b| Span::raw(&l[..b]).width()))
            .unwrap_or_else(|| panic!("{mark} … {needle} not on screen:\n{t}"))
    };
    assert_eq!(
        column("⚡ ", "write-random-files"),
        column("✓  delete-files", "delete-files"),
        "action names line up after ⚡ and ✓:\n{t}"
    );
}

#[test]
fn a_resumed_run_shows_its_inherited_snapshots_being_verified() {
    let (mut app, _) = busy_app(Theme::coloured());
    app.inherited_snapshots = 12;
    app.inherited = (4, 3);
    for width in [80u16, 140] {
        let t = text(&render(&app, width, 30));
        assert!(t.contains("inherited 12 · verified 3/4"), "{t}");
    }
}

#[test]
fn each_client_shows_its_kind_in_panes_and_table() {
    let (mut app, _) = busy_app(Theme::coloured());
    let mut counts = app.counts.clone();
    for report in &mut counts.clients {
        report.kind = Some(
            if report.id.0 % 2 == 1 {
                "rustic"
            } else {
                "restic"
            }
            .into(),
        );
    }
    app.set_counts(counts, 4);
    let panes = text(&render(&app, 140, 45));
    let title = |client: &str| {
        panes
            .lines()
            .find(|l| l.contains(&format!(" {client} ")))
            .unwrap_or_else(|| panic!("{client} has no pane:\n{panes}"))
            .to_owned()
    };
    assert!(title("client-1").contains("rustic"), "{panes}");
    assert!(title("client-2").contains("restic"), "{panes}");
    app.table = Some(true);
    let table = text(&render(&app, 140, 45));
    let header = table
        .lines()
        .find(|l| l.contains("client     kind    state"))
        .unwrap_or_else(|| panic!("no kind column:\n{table}"));
    let kind_at = Span::raw(&header[..header.find("kind").unwrap()]).width();
    let row = table
        .lines()
        .find(|l| l.contains("client-2 "))
        .unwrap_or_else(|| panic!("no row for client-2:\n{table}"));
    let restic_at = Span::raw(&row[..row.find("restic").expect("kind in row")]).width();
    assert_eq!(kind_at, restic_at, "kind column lines up:\n{table}");
}
