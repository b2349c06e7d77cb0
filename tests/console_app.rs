//! The console's App driven by keys: the commands it sends, and — against a
//! real run on the embedded backend — what the engine does with them.

mod common;

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use snapstorm::console::app::{App, ClientState, Overlay};
use snapstorm::console::theme::Theme;
use snapstorm::engine::Action;
use snapstorm::engine::scenario::Scenario;
use snapstorm::engine::traits::{ClientId, GcOptions};
use snapstorm::faults::FaultKind;
use snapstorm::run::launch::{RunSpec, launch};
use snapstorm::run::{Command, CountsFeed, Event, RunHandle};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Presses a key the way the console does: key → action → update → command.
fn press(app: &mut App, code: KeyCode) -> Option<Command> {
    let action = app.key_action(key(code))?;
    app.update(action)
}

fn app_with_clients(n: u32) -> App {
    let mut app = App::new(&common::console::info(), Instant::now(), Theme::plain());
    for id in 1..=n {
        app.apply_event(Event::ClientAdded(ClientId(id)));
    }
    app
}

#[test]
fn keys_become_the_right_commands() {
    let mut app = app_with_clients(3);
    assert_eq!(
        press(&mut app, KeyCode::Char('a')),
        Some(Command::AddClient)
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('g')),
        Some(Command::Gc(GcOptions::default()))
    );
    assert_eq!(
        press(&mut app, KeyCode::Char(' ')),
        Some(Command::TogglePauseAll)
    );
    // Selection moves with arrows, j/k and wraps; commands go to the selected client.
    assert_eq!(press(&mut app, KeyCode::Right), None);
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Some(Command::TogglePauseClient(ClientId(2)))
    );
    assert_eq!(press(&mut app, KeyCode::Char('j')), None);
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        Some(Command::Enqueue(ClientId(3), Action::SnapshotRoot))
    );
    assert_eq!(press(&mut app, KeyCode::Char('j')), None);
    assert_eq!(app.selected, Some(ClientId(1)), "selection wraps around");
    assert_eq!(press(&mut app, KeyCode::Char('k')), None);
    assert_eq!(
        press(&mut app, KeyCode::Char('v')),
        Some(Command::Enqueue(ClientId(3), Action::RestoreRandomSnapshot))
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('x')),
        Some(Command::RemoveClient(ClientId(3)))
    );
    assert_eq!(app.clients[&ClientId(3)].state, ClientState::Removing);
    // A client being removed takes no more commands.
    assert_eq!(press(&mut app, KeyCode::Char('x')), None);
    // Help opens and takes the keys until closed.
    assert_eq!(press(&mut app, KeyCode::Char('?')), None);
    assert_eq!(app.overlay, Overlay::Help);
    assert_eq!(press(&mut app, KeyCode::Char('a')), None);
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!(app.overlay, Overlay::None);
    // The fault menu takes a digit: the fault, aimed at the selected client where it matters.
    assert_eq!(press(&mut app, KeyCode::Char('f')), None);
    assert_eq!(app.overlay, Overlay::FaultMenu);
    match press(&mut app, KeyCode::Char('1')) {
        Some(Command::InjectFault(spec)) => assert_eq!(spec.kind, FaultKind::CorruptPack),
        other => panic!("expected corrupt-pack, got {other:?}"),
    }
    assert_eq!(app.overlay, Overlay::None);
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected, Some(ClientId(1)));
    press(&mut app, KeyCode::Char('f'));
    match press(&mut app, KeyCode::Char('6')) {
        Some(Command::InjectFault(spec)) => {
            assert_eq!(spec.kind, FaultKind::RevokeClient);
            assert_eq!(spec.client, Some(1));
        }
        other => panic!("expected revoke-client, got {other:?}"),
    }
    assert_eq!(
        press(&mut app, KeyCode::Char('c')),
        Some(Command::Enqueue(app.selected.unwrap(), Action::VerifyRepo))
    );
    // q and Ctrl-C quit.
    assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Command::Shutdown));
    let mut app = app_with_clients(1);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    let action = app.key_action(ctrl_c).unwrap();
    assert_eq!(app.update(action), Some(Command::Shutdown));
}

/// A run the test drives as the console does: events drained into the
/// app, the engine's counts taken as they are published.
struct Driven {
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    counts: CountsFeed,
}

/// A run taken apart for a test that plays the console: the app fed by the
/// run's events and counts, the commands that go in, and the task that ends
/// with the report.
fn playing(
    handle: RunHandle,
) -> (
    Driven,
    App,
    tokio::sync::mpsc::UnboundedSender<Command>,
    tokio::task::JoinHandle<snapstorm::engine::Report>,
) {
    let RunHandle {
        info,
        commands,
        events,
        counts,
        task,
    } = handle;
    let app = App::new(&info, Instant::now(), Theme::plain());
    (Driven { events, counts }, app, commands, task)
}

impl Driven {
    fn refresh(&self, app: &mut App) {
        app.set_counts(self.counts.now(), self.counts.running_clients());
        app.tick(Instant::now());
    }

    /// Drains events into the app until `done` holds (or fails after `limit`).
    async fn until(
        &mut self,
        app: &mut App,
        limit: Duration,
        what: &str,
        done: impl Fn(&App) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        self.refresh(app);
        while !done(app) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let frame = tokio::time::Instant::now() + Duration::from_millis(100);
            match tokio::time::timeout_at(frame, self.events.recv()).await {
                Ok(Some(event)) => app.apply_event(event),
                Ok(None) => panic!("run ended while waiting for {what}"),
                Err(_) => {}
            }
            self.refresh(app);
        }
    }
}

fn actions(app: &App) -> u64 {
    app.counts.totals.actions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_drive_a_real_run() {
    let state = tempfile::tempdir().unwrap();
    let spec = small_run(
        state.path(),
        "description = \"d\"\n[weights]\nwrite-random-files = 2\nsnapshot-root = 2\nrestore-random-snapID = 1\n\
         [options]\nmax-num-files-per-write = 10\nmax-file-size = \"32KiB\"\n",
        9,
        2,
    );
    let (mut run, mut app, commands, task) = playing(launch(spec).await.unwrap());
    let send = |app: &mut App, code: KeyCode| {
        if let Some(command) = press(app, code) {
            commands.send(command).unwrap();
        }
    };
    let minute = Duration::from_secs(60);

    run.until(&mut app, minute, "two clients with snapshots", |a| {
        a.clients.len() == 2
            && a.clients
                .keys()
                .all(|id| a.client_counts(*id).snapshots_created >= 1)
    })
    .await;

    send(&mut app, KeyCode::Char('a'));
    run.until(&mut app, minute, "client 3", |a| a.running_clients == 3)
        .await;

    send(&mut app, KeyCode::Char('g'));
    run.until(&mut app, minute, "gc 1", |a| a.counts.gc_runs == 1)
        .await;

    send(&mut app, KeyCode::Char(' '));
    run.until(&mut app, minute, "paused", |a| a.paused_all)
        .await;
    // Paused: once the actions in flight are done, nothing new starts.
    run.until(&mut app, minute, "idle clients", |a| {
        a.clients.values().all(|c| c.running.is_none())
    })
    .await;
    let finished_before = actions(&app);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(event) = run.events.try_recv() {
        app.apply_event(event);
    }
    run.refresh(&mut app);
    assert_eq!(actions(&app), finished_before, "no action while paused");

    // Snapshot now works while paused (it is an explicit request).
    let created = app.client_counts(ClientId(1)).snapshots_created;
    send(&mut app, KeyCode::Char('s'));
    run.until(&mut app, minute, "snapshot now", |a| {
        a.client_counts(ClientId(1)).snapshots_created > created
    })
    .await;

    send(&mut app, KeyCode::Char('x'));
    run.until(&mut app, minute, "client 1 removed", |a| {
        a.clients[&ClientId(1)].state == ClientState::Removed
    })
    .await;
    run.until(&mut app, minute, "two clients running", |a| {
        a.running_clients == 2
    })
    .await;

    send(&mut app, KeyCode::Char('q'));
    run.until(&mut app, minute, "finish", |a| a.finished).await;
    let report = task.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.gc_runs, 1);
    assert_eq!(report.clients.len(), 3);
}

/// Repeated actions and a GC storm, the two places counts used to part:
/// what the console shows is what the report says, number by number, and
/// the snapshots it counts are the ones the metadata recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_reports_counts() {
    let state = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse(
        "repeated",
        "description = \"d\"\n[weights]\nwrite-random-files = 1\nsnapshot-root = 2\nrestore-random-snapID = 2\n\
         [options]\nmax-num-files-per-write = 5\nmax-file-size = \"16KiB\"\n\
         [action-options.snapshot-root]\nrepeat-action = 3\n\
         [action-options.restore-random-snapID]\nrepeat-action = 3\n",
        "repeated",
    )
    .unwrap();
    let mut spec = RunSpec::new(scenario, state.path().to_path_buf(), 12);
    spec.clients = 2;
    spec.limit.duration = Some(Duration::from_secs(10));
    let mut storm = snapstorm::faults::FaultSpec::new(FaultKind::GcStorm, Duration::from_secs(2));
    storm.duration = Some(Duration::from_secs(4));
    spec.faults = vec![storm];
    let (mut run, mut app, _commands, task) = playing(launch(spec).await.unwrap());
    run.until(&mut app, Duration::from_secs(120), "finish", |a| a.finished)
        .await;
    let report = task.await.unwrap();
    run.refresh(&mut app);

    assert!(
        report.gc_runs >= 2,
        "the storm collected: {}",
        report.gc_runs
    );
    let repeated = report.actions["snapshot-root"].count;
    assert!(
        report.totals.snapshots_created > repeated,
        "each snapshot-root made three snapshots: {} from {repeated} actions",
        report.totals.snapshots_created
    );
    assert_eq!(app.counts.gc_runs, report.gc_runs);
    assert_eq!(app.counts.totals, report.totals);
    assert_eq!(app.counts.clients, report.clients);
    assert_eq!(app.counts.faults_injected, report.faults.len() as u64);

    // The screen shows those numbers.
    let screen = screen(&app, 140, 45);
    let t = &report.totals;
    for shown in [
        format!("gc {}", report.gc_runs),
        format!(
            "snapshots {} created, {} live",
            t.snapshots_created, t.snapshots_live
        ),
        format!("verified {}", t.restores_verified),
        format!(
            "failures {} ({} unexpected)",
            t.verification_failures, t.unexpected_failures
        ),
        format!("errors {}", t.errors),
    ] {
        assert!(screen.contains(&shown), "screen lacks `{shown}`:\n{screen}");
    }
    for client in &report.clients {
        let c = &client.counts;
        let pane = format!(
            "live {} · del {} · ok {} · fail {}",
            c.snapshots_live, c.snapshots_deleted, c.restores_verified, c.unexpected_failures
        );
        assert!(screen.contains(&pane), "screen lacks `{pane}`:\n{screen}");
    }

    // An independent source: the snapshots the metadata recorded in this run.
    let state_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("state.json")).unwrap()).unwrap();
    let recorded: u64 = state_json["clients"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| {
            c["live"].as_array().unwrap().len() as u64
                + c["deleted"].as_array().unwrap().len() as u64
        })
        .sum();
    assert_eq!(recorded, t.snapshots_created);
}

/// The screen as text, one line per row.
fn screen(app: &App, width: u16, height: u16) -> String {
    common::console::text(&common::console::render(app, width, height))
}

/// What a pane said of a running action: its share done, and the bytes
/// done and in all, as drawn (`⟳ snapshot-root 1.2s 37% 106.0 MiB/288.0 MiB`).
fn progress_shown(screen: &str, action: &str) -> Vec<(u64, String, String)> {
    let running = format!("⟳ {action} ");
    screen
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(&running)? + running.len()..];
            let mut words = rest.split_whitespace().skip(1);
            let percent = words.next()?.strip_suffix('%')?.parse().ok()?;
            let (done, total) = words
                .by_ref()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
                .split_once('/')
                .map(|(d, t)| (d.to_owned(), t.to_owned()))?;
            Some((percent, done, total))
        })
        .collect()
}

/// A snapshot and a restore of 288 MiB, in a real run: while each runs its
/// pane shows how far it got, and the total it shows is what was written
/// (three files of 96 MiB, as the scenario asks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_snapshot_and_restore_show_how_far_they_got() {
    let state = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse(
        "long",
        "description = \"d\"\n[options]\nmin-num-files-per-write = 3\nmax-num-files-per-write = 3\n\
         min-file-size = \"96MiB\"\nmax-file-size = \"96MiB\"\nmax-dir-depth = 1\n\
         [[clients]]\nsequence = [\"write-random-files\", \"snapshot-root\", \"restore-random-snapID\"]\n",
        "long",
    )
    .unwrap();
    let spec = RunSpec::new(scenario, state.path().to_path_buf(), 3);
    let (mut run, mut app, _commands, task) = playing(launch(spec).await.unwrap());
    let mut shown: Vec<(&str, (u64, String, String))> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while !app.finished {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never ended"
        );
        let frame = tokio::time::Instant::now() + Duration::from_millis(10);
        while let Ok(Some(event)) = tokio::time::timeout_at(frame, run.events.recv()).await {
            app.apply_event(event);
        }
        run.refresh(&mut app);
        let text = screen(&app, 140, 45);
        for action in ["snapshot-root", "restore-random-snapID"] {
            shown.extend(
                progress_shown(&text, action)
                    .into_iter()
                    .map(|p| (action, p)),
            );
        }
    }
    let report = task.await.unwrap();
    assert_eq!(report.totals.restores_verified, 1, "{report:?}");
    for action in ["snapshot-root", "restore-random-snapID"] {
        let of_action: Vec<_> = shown.iter().filter(|(a, _)| *a == action).collect();
        assert!(
            of_action
                .iter()
                .any(|(_, (percent, _, _))| (1..100).contains(percent)),
            "{action} never showed a share under way: {of_action:?}"
        );
        assert!(
            of_action
                .iter()
                .all(|(_, (_, _, total))| total == "288.0 MiB"),
            "{action} showed another total: {of_action:?}"
        );
    }
}

fn notice(app: &App) -> String {
    app.current_notice().unwrap_or_default().to_owned()
}

#[test]
fn arrows_move_in_the_grid_as_it_is_drawn() {
    // 200×60 draws 6 clients as 3 columns of panes.
    let mut app = app_with_clients(6);
    app.resize(200, 60);
    assert_eq!(snapstorm::console::layout::client_columns(&app), 3);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(ClientId(4)), "down: the pane below");
    press(&mut app, KeyCode::Right);
    assert_eq!(app.selected, Some(ClientId(5)));
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(ClientId(5)), "no row below: stays");
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected, Some(ClientId(2)));
    press(&mut app, KeyCode::Left);
    assert_eq!(app.selected, Some(ClientId(1)));
    // The table (t) has one column: down is the next row.
    press(&mut app, KeyCode::Char('t'));
    assert!(snapstorm::console::layout::client_table_shown(&app));
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(ClientId(2)));
    // Go to a client by number, or with /.
    press(&mut app, KeyCode::Char('6'));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(ClientId(6)));
    press(&mut app, KeyCode::Char('/'));
    press(&mut app, KeyCode::Char('3'));
    assert_eq!(app.goto.as_deref(), Some("3"));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(ClientId(3)));
    press(&mut app, KeyCode::Char('/'));
    press(&mut app, KeyCode::Char('9'));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(ClientId(3)));
    assert!(
        notice(&app).contains("There is no client 9"),
        "{}",
        notice(&app)
    );
}

#[test]
fn removed_clients_collapse_and_commands_on_nothing_say_so() {
    let mut app = app_with_clients(5);
    app.resize(80, 24);
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Enter);
    for id in 1..=3 {
        app.apply_event(Event::ClientRemoved(ClientId(id)));
    }
    assert_eq!(app.visible_clients(), vec![ClientId(4), ClientId(5)]);
    assert_eq!(
        app.selected,
        Some(ClientId(4)),
        "selection moves off a removed client"
    );
    // r shows them; selecting one and acting on it says why nothing happens.
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.visible_clients().len(), 5);
    press(&mut app, KeyCode::Char('1'));
    press(&mut app, KeyCode::Enter);
    for key in ['x', 's', 'v', 'p', 'c'] {
        assert_eq!(press(&mut app, KeyCode::Char(key)), None, "{key}");
        assert!(
            notice(&app).starts_with("Nothing to") && notice(&app).contains("client-1 is removed"),
            "{key}: {}",
            notice(&app)
        );
    }
    // The fault menu never aims at it.
    press(&mut app, KeyCode::Char('f'));
    assert_eq!(
        press(&mut app, KeyCode::Char('6')),
        None,
        "revoke-client on a removed client"
    );
    assert!(
        notice(&app).contains("none that runs is selected"),
        "{}",
        notice(&app)
    );
    press(&mut app, KeyCode::Esc);
    // Collapsing again moves the selection off it.
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.selected, Some(ClientId(4)));
    press(&mut app, KeyCode::Char('f'));
    match press(&mut app, KeyCode::Char('6')) {
        Some(Command::InjectFault(spec)) => assert_eq!(spec.client, Some(4)),
        other => panic!("revoke-client on client-4: {other:?}"),
    }
    // With every client removed, x says there is nothing to remove.
    app.apply_event(Event::ClientRemoved(ClientId(4)));
    app.apply_event(Event::ClientRemoved(ClientId(5)));
    assert_eq!(app.selected, None);
    assert_eq!(press(&mut app, KeyCode::Char('x')), None);
    assert!(
        notice(&app).contains("no client is selected"),
        "{}",
        notice(&app)
    );
}

#[test]
fn adding_stops_at_the_client_limit() {
    let mut app = app_with_clients(60);
    for _ in 0..4 {
        assert_eq!(
            press(&mut app, KeyCode::Char('a')),
            Some(Command::AddClient)
        );
    }
    assert_eq!(press(&mut app, KeyCode::Char('a')), None, "64 is the limit");
    assert!(
        notice(&app).contains("64 clients is the limit"),
        "{}",
        notice(&app)
    );
    // A removed client makes room.
    app.apply_event(Event::ClientRemoved(ClientId(1)));
    assert_eq!(
        press(&mut app, KeyCode::Char('a')),
        Some(Command::AddClient)
    );
}

#[test]
fn the_bell_rings_once_on_the_first_unexpected_failure() {
    let mut app = app_with_clients(1);
    let mut counts = app.counts.clone();
    app.set_counts(counts.clone(), 1);
    assert!(!app.take_bell());
    counts.totals.verification_failures = 1;
    app.set_counts(counts.clone(), 1);
    assert!(!app.take_bell(), "an expected failure rings nothing");
    counts.totals.unexpected_failures = 1;
    app.set_counts(counts.clone(), 1);
    assert!(app.take_bell());
    counts.totals.unexpected_failures = 2;
    app.set_counts(counts.clone(), 1);
    assert!(!app.take_bell(), "only the first");
    let mut quiet = app_with_clients(1);
    quiet.bell = false;
    quiet.set_counts(counts, 1);
    assert!(!quiet.take_bell(), "--no-bell");
}

#[test]
fn a_click_selects_and_the_wheel_scrolls() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = app_with_clients(4);
    app.resize(140, 45);
    let click = |app: &mut App, column, row| {
        let mouse = MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        };
        let action = app.mouse_action(mouse).unwrap();
        app.update(action)
    };
    // 140×45: three columns of panes under a 5-line header; client-4 starts the second row.
    click(&mut app, 10, 25);
    assert_eq!(app.selected, Some(ClientId(4)));
    click(&mut app, 60, 8);
    assert_eq!(app.selected, Some(ClientId(2)));
    // The wheel scrolls an open overlay.
    press(&mut app, KeyCode::Char('?'));
    app.resize(80, 24);
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 40,
        row: 12,
        modifiers: KeyModifiers::NONE,
    };
    let action = app.mouse_action(wheel).unwrap();
    app.update(action);
    app.update(action);
    assert_eq!(app.overlay_scroll, 2);
}

/// A client added while the server is down: keys still act at once, the
/// client says it will try again, and it joins once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_added_while_the_server_is_down_retries_and_joins() {
    use snapstorm::run::launch::{embedded_parts, launch_with};
    let state = tempfile::tempdir().unwrap();
    let spec = small_run(
        state.path(),
        "description = \"d\"\n[weights]\nwrite-random-files = 2\nsnapshot-root = 1\n\
         [options]\nmax-num-files-per-write = 3\nmax-file-size = \"8KiB\"\n",
        21,
        1,
    );
    let parts = embedded_parts(&spec).await.unwrap();
    let server = parts.server.clone();
    let (mut run, mut app, commands, task) = playing(launch_with(spec, parts).await.unwrap());
    let minute = Duration::from_secs(60);
    run.until(&mut app, minute, "client 1", |a| a.running_clients == 1)
        .await;

    server.stop().await;
    commands
        .send(press(&mut app, KeyCode::Char('a')).unwrap())
        .unwrap();
    run.until(&mut app, minute, "client 2 failing to connect", |a| {
        a.clients.get(&ClientId(2)).is_some_and(|c| {
            c.message
                .as_deref()
                .is_some_and(|m| m.contains("trying again in"))
        })
    })
    .await;
    assert_eq!(app.clients[&ClientId(2)].state, ClientState::Connecting);
    // The run is not stuck behind the connection: a key acts now.
    commands
        .send(press(&mut app, KeyCode::Char(' ')).unwrap())
        .unwrap();
    run.until(&mut app, Duration::from_secs(5), "paused at once", |a| {
        a.paused_all
    })
    .await;
    assert_ne!(app.clients[&ClientId(2)].state, ClientState::Running);

    server.restart().await.unwrap();
    run.until(&mut app, minute, "client 2 connected", |a| {
        a.clients[&ClientId(2)].state == ClientState::Paused
            || (a.clients[&ClientId(2)].state == ClientState::Running && a.running_clients == 2)
    })
    .await;
    commands.send(Command::Shutdown).unwrap();
    run.until(&mut app, minute, "finish", |a| a.finished).await;
    let report = task.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// Sixteen clients connect side by side: the console shows them coming in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_at_once_and_the_header_counts_them() {
    let state = tempfile::tempdir().unwrap();
    let spec = small_run(state.path(), WRITES_ONLY, 22, 16);
    let (mut run, mut app, commands, task) = playing(launch(spec).await.unwrap());
    let most = std::cell::Cell::new(0);
    let header = std::cell::RefCell::new(String::new());
    run.until(&mut app, Duration::from_secs(120), "16 clients", |a| {
        let (connecting, total) = a.connecting();
        if connecting > most.get() {
            most.set(connecting);
            *header.borrow_mut() = screen(a, 100, 30).lines().nth(1).unwrap_or("").to_owned();
            assert!(total <= 16);
        }
        a.running_clients == 16
    })
    .await;
    // Connected one after another, one would be connecting at a time.
    assert!(most.get() >= 8, "at most {} connecting at once", most.get());
    let header = header.into_inner();
    assert!(
        header.contains(&format!("connecting {}/16", 16 - most.get())),
        "{header}"
    );
    commands.send(Command::Shutdown).unwrap();
    run.until(&mut app, Duration::from_secs(60), "finish", |a| a.finished)
        .await;
    task.await.unwrap();
}

/// A scenario of small writes only.
const WRITES_ONLY: &str = "description = \"d\"\n[weights]\nwrite-random-files = 1\n\
     [options]\nmax-num-files-per-write = 2\nmax-file-size = \"4KiB\"\n";

/// A run of `clients` clients on `state`, with a scenario of small files.
fn small_run(state: &std::path::Path, scenario: &str, seed: u64, clients: u32) -> RunSpec {
    let scenario = Scenario::parse("small", scenario, "small").unwrap();
    let mut spec = RunSpec::new(scenario, state.to_path_buf(), seed);
    spec.clients = clients;
    spec
}

/// A failure of client-1, as the engine would report it.
fn a_failure() -> snapstorm::engine::store::Failure {
    snapstorm::engine::store::Failure {
        run: 1,
        time: "t".into(),
        client: ClientId(1),
        snapshot: None,
        action: snapstorm::engine::Origin::FinalCheck,
        kind: Default::default(),
        summary: "s".into(),
        details: "d".into(),
        explained_by: None,
        unreadable: None,
    }
}

/// README's key table is the key map's, row by row.
#[test]
fn the_readme_key_table_is_the_key_map() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let table = snapstorm::console::keymap::markdown_table();
    assert!(
        readme.contains(&table),
        "README's console section should hold this table:\n{table}"
    );
}

/// Every key the help lists does something somewhere: pressed in the
/// main view, in an overlay and in a failure's diff, through the same
/// dispatch the console uses.
#[test]
fn every_key_in_the_help_acts() {
    use snapstorm::console::app::UiAction;
    use snapstorm::console::keymap::{KEYMAP, Key};
    let event = |k: Key| -> Option<KeyEvent> {
        Some(match k {
            Key::Char(c) => KeyEvent::new(
                KeyCode::Char(c),
                if c.is_uppercase() {
                    KeyModifiers::SHIFT
                } else {
                    KeyModifiers::NONE
                },
            ),
            Key::Code(code) => key(code),
            Key::Digits(from, _) => key(KeyCode::Char(from)),
            Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
            Key::Mouse => return None,
        })
    };
    let mut failure_app = app_with_clients(2);
    failure_app.failures.push(a_failure());
    failure_app.update(UiAction::SwitchFocus);
    failure_app.update(UiAction::OpenDetails);
    let mut help_app = app_with_clients(2);
    help_app.update(UiAction::ToggleHelp);
    let mut menu_app = app_with_clients(2);
    menu_app.update(UiAction::OpenFaultMenu);
    let mut goto_app = app_with_clients(2);
    goto_app.update(UiAction::GoTo(None));
    let main_app = app_with_clients(2);
    for row in KEYMAP {
        for binding in row.bindings {
            let Some(pressed) = event(binding.key) else {
                continue;
            };
            let acts = [&main_app, &help_app, &failure_app, &menu_app, &goto_app]
                .iter()
                .any(|app| app.key_action(pressed).is_some());
            assert!(
                acts,
                "`{}` ({}) does nothing anywhere",
                row.keys,
                row.does()
            );
        }
    }
    // n and N step between failures in the diff; 1-9 inject from the menu.
    assert_eq!(
        failure_app.key_action(key(KeyCode::Char('n'))),
        Some(UiAction::NextFailure)
    );
    assert_eq!(
        menu_app.key_action(key(KeyCode::Char('1'))),
        Some(UiAction::InjectFault(snapstorm::faults::FaultKind::ALL[0]))
    );
    assert_eq!(
        goto_app.key_action(key(KeyCode::Char('3'))),
        Some(UiAction::GoToInput('3'))
    );
    assert_eq!(main_app.key_action(key(KeyCode::F(5))), None);
}

/// Quitting while the first clients still connect ends the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_while_clients_connect_ends_the_run() {
    let state = tempfile::tempdir().unwrap();
    let spec = small_run(state.path(), WRITES_ONLY, 23, 8);
    let (mut run, mut app, commands, task) = playing(launch(spec).await.unwrap());
    commands.send(Command::Shutdown).unwrap();
    run.until(&mut app, Duration::from_secs(120), "finish", |a| a.finished)
        .await;
    let report = task.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// `R` on a selected failure keeps the state and shows the shrink command;
/// with no failure selected it says what to do instead.
#[test]
fn shrink_key_shows_the_command_for_the_selected_failure() {
    use snapstorm::console::app::UiAction;
    let mut app = app_with_clients(2);
    assert_eq!(app.update(UiAction::ShrinkSelected), None);
    assert!(
        app.current_notice()
            .is_some_and(|n| n.starts_with("Nothing to shrink")),
        "{:?}",
        app.current_notice()
    );
    assert_eq!(app.shrink_command, None);
    app.failures.push(a_failure());
    app.update(UiAction::SwitchFocus);
    assert_eq!(
        app.key_action(key(KeyCode::Char('R'))),
        Some(UiAction::ShrinkSelected)
    );
    assert_eq!(app.update(UiAction::ShrinkSelected), None);
    let expected = snapstorm::reproduce::shrink::shrink_command(
        &app.state_dir,
        std::path::Path::new("minimal.toml"),
    );
    assert!(expected.starts_with("snapstorm shrink "), "{expected}");
    assert_eq!(app.shrink_command.as_deref(), Some(expected.as_str()));
    assert!(
        app.current_notice().is_some_and(|n| n.contains(&expected)),
        "{:?}",
        app.current_notice()
    );
}
