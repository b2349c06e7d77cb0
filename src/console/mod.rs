//! The interactive console: `snapstorm` with no subcommand.
//!
//! Events → actions → `update` → draw: key presses become [`UiAction`]s,
//! `App::update` turns them into commands for the run, engine events are
//! drained once per frame into the `App`, and every frame is drawn as a pure
//! function of it. The engine runs on its own tasks and blocking threads, so
//! a slow backend never freezes keys or redraws.
//!
//! The terminal is restored on every exit path: a guard's `Drop`, and a
//! panic hook for the UI thread. Panics in backend threads are caught by the
//! engine and must not touch the terminal, so the hook leaves them alone.

pub mod app;
mod clients;
mod failures;
mod fault_menu;
mod format;
mod header;
mod help_panel;
pub mod keymap;
pub mod layout;
mod log_pane;
mod status_bar;
pub mod theme;
mod throughput;

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

pub use app::{App, UiAction};
pub use format::bytes as format_bytes;
pub use log_pane::PaneLayer as LogLayer;

use crate::backend::BackendKind;
use crate::backend::location::RepositoryLocation;
use crate::engine::file_writer::disk_usage;
use crate::engine::report::Report;
use crate::run::launch::{LaunchError, RunSpec, embedded_parts, launch, launch_with};
use crate::run::{Command, CountsFeed, Event, RunHandle, RunInfo};

/// Frames per second: the rate at which events are drained and the screen redrawn.
const FRAME: Duration = Duration::from_millis(100);
/// How often the repository's size on disk is measured.
const SIZE_EVERY: Duration = Duration::from_secs(2);

/// Whether the terminal is in raw mode on the alternate screen right now.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call twice.
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(
            io::stdout(),
            crossterm::event::DisableMouseCapture,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Owns the terminal while the console runs; restores it when dropped.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let mut stdout = io::stdout();
        if let Err(error) = execute!(
            stdout,
            EnterAlternateScreen,
            crossterm::event::EnableMouseCapture,
            crossterm::cursor::Hide
        ) {
            restore_terminal();
            return Err(error);
        }
        let terminal =
            Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore_terminal())?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Panics on the UI thread restore the terminal before the message is
/// printed; panics elsewhere (inside a backend call, caught and reported as
/// that action's error) are logged instead of written over the screen.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            restore_terminal();
            default(info);
        } else {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info
                .location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            tracing::error!(
                target: "snapstorm::panic",
                "A backend call panicked in {}{location}; it counts as that action's error: {}",
                std::thread::current().name().unwrap_or("a worker thread"),
                crate::engine::brief::brief(&message)
            );
        }
    }));
}

/// How the console behaves, apart from the run itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Ring the terminal bell on the first unexpected failure.
    pub bell: bool,
    /// The server's own address, when clients reach it through a proxy.
    pub behind_proxy: Option<String>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            bell: true,
            behind_proxy: None,
        }
    }
}

/// Runs the console until the person quits; returns the run's report.
/// What a console session leaves: the run's report, and the shrink command
/// if `R` asked for one (its state dir must then be kept).
pub struct ConsoleOutcome {
    pub report: Report,
    pub shrink_command: Option<String>,
}

pub fn run(spec: RunSpec, options: ConsoleOptions) -> Result<ConsoleOutcome, ConsoleError> {
    let runtime = tokio::runtime::Runtime::new().map_err(ConsoleError::Terminal)?;
    runtime.block_on(async move {
        let (handle, behind_proxy) = if spec.backend == BackendKind::Kopia {
            // kopia's own server, which its clients reach directly.
            (launch(spec).await.map_err(ConsoleError::Launch)?, None)
        } else {
            let parts = embedded_parts(&spec).await.map_err(ConsoleError::Launch)?;
            // Clients connect through the fault proxy; the header names the
            // storage behind it too (a location without its credentials).
            let behind_proxy = match parts.server.location() {
                RepositoryLocation::Embedded => parts.server.server_addr().to_string(),
                location => location.short(),
            };
            let handle = launch_with(spec, parts)
                .await
                .map_err(ConsoleError::Launch)?;
            (handle, Some(behind_proxy))
        };
        let RunHandle {
            info,
            commands,
            events,
            counts,
            task,
        } = handle;
        let guard = TerminalGuard::enter();
        let mut guard = match guard {
            Ok(guard) => guard,
            Err(error) => {
                let _ = commands.send(Command::Shutdown);
                let _ = task.await;
                return Err(ConsoleError::Terminal(error));
            }
        };
        let outcome = event_loop(
            &mut guard.terminal,
            &info,
            ConsoleOptions {
                behind_proxy,
                ..options
            },
            &commands,
            events,
            &counts,
        )
        .await;
        drop(guard);
        if outcome.is_err() {
            let _ = commands.send(Command::Shutdown);
        }
        let report = task
            .await
            .map_err(|e| ConsoleError::Terminal(io::Error::other(e)))?;
        outcome.map(|shrink_command| ConsoleOutcome {
            report,
            shrink_command,
        })
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Launch(LaunchError),
    #[error("terminal: {0}")]
    Terminal(io::Error),
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    info: &RunInfo,
    options: ConsoleOptions,
    commands: &mpsc::UnboundedSender<Command>,
    mut events: mpsc::UnboundedReceiver<Event>,
    counts: &CountsFeed,
) -> Result<Option<String>, ConsoleError> {
    let mut app = App::new(info, Instant::now(), theme::Theme::from_env());
    app.bell = options.bell;
    if app.inherited_snapshots > 0 {
        // Once: it reads the metadata, which a frame should not wait for.
        let feed = counts.clone();
        app.inherited.0 = tokio::task::spawn_blocking(move || feed.inherited_to_verify())
            .await
            .unwrap_or(0);
    }
    app.behind_proxy = options.behind_proxy;
    if let Ok(size) = terminal.size() {
        app.resize(size.width, size.height);
    }
    let mut input = EventStream::new();
    let mut frames = tokio::time::interval(FRAME);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (size_tx, mut sizes) = mpsc::unbounded_channel();
    let sampler = tokio::spawn(sample_size(info.server.repository.clone(), size_tx));
    // Signal streams live for the whole loop, so no signal falls between two turns.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ConsoleError::Terminal)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ConsoleError::Terminal)?;
    let mut quit_sent = false;
    let quit = |app: &mut App, quit_sent: &mut bool| {
        if !*quit_sent {
            if let Some(command) = app.update(UiAction::Quit) {
                let _ = commands.send(command);
            }
            *quit_sent = true;
        }
    };
    let result = loop {
        tokio::select! {
            _ = frames.tick() => {}
            input_event = input.next() => match input_event {
                Some(Ok(event @ (TermEvent::Key(_) | TermEvent::Mouse(_)))) => {
                    let action = match event {
                        TermEvent::Key(key) => app.key_action(key),
                        TermEvent::Mouse(mouse) => app.mouse_action(mouse),
                        _ => None,
                    };
                    if let Some(action) = action {
                        if action == UiAction::Quit {
                            quit(&mut app, &mut quit_sent);
                        } else if let Some(command) = app.update(action) {
                            let _ = commands.send(command);
                        }
                    }
                }
                Some(Ok(TermEvent::Resize(width, height))) => app.resize(width, height),
                Some(Ok(_)) => {}
                // The terminal went away: stop the run cleanly.
                Some(Err(_)) | None => quit(&mut app, &mut quit_sent),
            },
            Some(bytes) = sizes.recv() => app.repo_bytes = Some(bytes),
            _ = terminate.recv() => quit(&mut app, &mut quit_sent),
            _ = interrupt.recv() => quit(&mut app, &mut quit_sent),
        }
        loop {
            match events.try_recv() {
                Ok(event) => app.apply_event(event),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    app.finished = true;
                    break;
                }
            }
        }
        app.set_counts(counts.now(), counts.running_clients());
        if app.inherited_snapshots > 0 {
            app.inherited.1 = counts.inherited_verified();
        }
        if app.take_bell() {
            // BEL: the terminal beeps or flashes, as it is set up to.
            use std::io::Write;
            let _ = io::stdout().write_all(b"\x07");
            let _ = io::stdout().flush();
        }
        app.tick(Instant::now());
        log_pane::flush_folded();
        tui_logger::move_events();
        if let Err(error) = terminal.draw(|frame| layout::draw(frame, &app)) {
            break Err(ConsoleError::Terminal(error));
        }
        if app.finished {
            break Ok(app.shrink_command.take());
        }
    };
    sampler.abort();
    result
}

/// Measures the repository directory every few seconds, off the UI thread.
async fn sample_size(repository: PathBuf, sizes: mpsc::UnboundedSender<u64>) {
    loop {
        let dir = repository.clone();
        if let Ok(bytes) = tokio::task::spawn_blocking(move || disk_usage(&dir)).await
            && sizes.send(bytes).is_err()
        {
            return;
        }
        tokio::time::sleep(SIZE_EVERY).await;
    }
}
