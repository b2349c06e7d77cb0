//! The console's App driven by keys: the commands it sends, and — against a
//! real run on the embedded backend — what the engine does with them.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use snapstorm::console::app::{App, ClientState, Overlay};
use snapstorm::console::theme::Theme;
use snapstorm::engine::Action;
use snapstorm::engine::scenario::Scenario;
use snapstorm::engine::traits::{ClientId, GcOptions};
use snapstorm::faults::FaultKind;
use snapstorm::multiclient::launch::{RunSpec, launch};
use snapstorm::multiclient::run::{Command, Event};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Presses a key the way the console does: key → action → update → command.
fn press(app: &mut App, code: KeyCode) -> Option<Command> {
    let action = app.key_action(key(code))?;
    app.update(action)
}

fn app_with_clients(n: u32) -> App {
    let info = snapstorm::multiclient::run::RunInfo {
        seed: 1,
        scenario: "x".into(),
        state_dir: "/tmp/x".into(),
        server: snapstorm::engine::traits::ServerInfo {
            backend: "embedded".into(),
            address: "http://127.0.0.1:1/repo/".into(),
            repository: "/tmp/x/repository/repo".into(),
        },
        run_counter: 1,
        inherited_snapshots: 0,
        startup_failures: vec![],
    };
    let mut app = App::new(&info, Instant::now(), Theme::plain());
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
    assert_eq!(press(&mut app, KeyCode::Down), None);
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
            assert_eq!(spec.client, Some(ClientId(1)));
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

/// Drains events into the app until `done` holds (or fails after `limit`).
async fn until(
    app: &mut App,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    limit: Duration,
    what: &str,
    done: impl Fn(&App) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done(app) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => app.apply_event(event),
            Ok(None) => panic!("run ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
        app.tick(Instant::now());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_drive_a_real_run() {
    let state = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse(
        "small",
        "description = \"d\"\n[weights]\nwrite-random-files = 2\nsnapshot-root = 2\nrestore-random-snapID = 1\n\
         [options]\nmax-num-files-per-write = 10\nmax-file-size = \"32KiB\"\n",
        "small",
    )
    .unwrap();
    let mut spec = RunSpec::new(scenario, state.path().to_path_buf(), 9);
    spec.clients = 2;
    let handle = launch(spec).await.unwrap();
    let (info, commands, mut events, task) = handle.into_parts();
    let mut app = App::new(&info, Instant::now(), Theme::plain());
    let send = |app: &mut App, code: KeyCode| {
        if let Some(command) = press(app, code) {
            commands.send(command).unwrap();
        }
    };
    let minute = Duration::from_secs(60);

    until(
        &mut app,
        &mut events,
        minute,
        "two clients with snapshots",
        |a| a.clients.len() == 2 && a.clients.values().all(|c| c.created >= 1),
    )
    .await;

    send(&mut app, KeyCode::Char('a'));
    until(&mut app, &mut events, minute, "client 3", |a| {
        a.active_clients() == 3
    })
    .await;

    send(&mut app, KeyCode::Char('g'));
    until(&mut app, &mut events, minute, "gc 1", |a| a.gc_runs == 1).await;

    send(&mut app, KeyCode::Char(' '));
    until(&mut app, &mut events, minute, "paused", |a| a.paused_all).await;
    // Paused: once the actions in flight are done, nothing new starts.
    until(&mut app, &mut events, minute, "idle clients", |a| {
        a.clients.values().all(|c| c.running.is_none())
    })
    .await;
    let finished_before = app.clients.values().map(|c| c.actions).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(event) = events.try_recv() {
        app.apply_event(event);
    }
    assert_eq!(
        app.clients.values().map(|c| c.actions).sum::<u64>(),
        finished_before,
        "no action while paused"
    );

    // Snapshot now works while paused (it is an explicit request).
    send(&mut app, KeyCode::Char('s'));
    until(&mut app, &mut events, minute, "snapshot now", |a| {
        a.clients[&ClientId(1)].created >= 2
    })
    .await;

    send(&mut app, KeyCode::Char('x'));
    until(&mut app, &mut events, minute, "client 1 removed", |a| {
        a.clients[&ClientId(1)].state == ClientState::Removed
    })
    .await;
    assert_eq!(app.active_clients(), 2);

    send(&mut app, KeyCode::Char('q'));
    until(&mut app, &mut events, minute, "finish", |a| a.finished).await;
    let report = task.await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.gc_runs, 1);
    assert_eq!(report.clients.len(), 3);
}
