//! The console's state and how it changes: engine events and key presses
//! come in, commands for the engine go out. Nothing here draws or blocks;
//! drawing is a pure function of [`App`] (see `layout.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_logger::LevelFilter;

use super::theme::Theme;
use crate::engine::Action;
use crate::engine::stats::{ClientCounts, Counts, Outcome};
use crate::engine::store::Failure;
use crate::engine::traits::{ClientId, GcOptions, Injected};
use crate::faults::{FaultKind, FaultSpec};
use crate::multiclient::run::{Command, Event, RunInfo};

/// Actions kept per client pane: enough to fill any pane, bounded memory.
pub const STREAM_CAPACITY: usize = 64;
/// Seconds of throughput history.
pub const THROUGHPUT_SECONDS: usize = 240;

/// What a key press asks the console to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiAction {
    AddClient,
    RemoveSelected,
    Gc,
    TogglePauseAll,
    TogglePauseSelected,
    SnapshotNow,
    VerifyNow,
    SelectNext,
    SelectPrevious,
    SwitchFocus,
    OpenDetails,
    ToggleHelp,
    CloseOverlay,
    CycleLogLevel,
    /// Restore-and-verify is per snapshot; this checks the whole repository.
    VerifyRepo,
    OpenFaultMenu,
    InjectFault(FaultKind),
    Quit,
}

/// Which panel the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Clients,
    Failures,
}

/// What is drawn over everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// The full details of failure N.
    Failure(usize),
    /// The selected client's whole stream and counts.
    Client(ClientId),
    /// The faults that can be injected, by number.
    FaultMenu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Running,
    Paused,
    /// Asked to leave; its current action finishes first.
    Removing,
    Removed,
    /// Could not connect or crashed.
    Broken,
}

impl ClientState {
    pub fn label(self) -> &'static str {
        match self {
            ClientState::Running => "running",
            ClientState::Paused => "paused",
            ClientState::Removing => "removing",
            ClientState::Removed => "removed",
            ClientState::Broken => "broken",
        }
    }
}

/// One finished action in a client's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub action: Action,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub note: Option<String>,
    /// An injected fault explains this error or failure.
    pub expected: bool,
}

/// What the console shows of one client besides its counts (those are the
/// engine's, in [`App::counts`]).
#[derive(Debug, Clone)]
pub struct ClientView {
    pub id: ClientId,
    pub state: ClientState,
    /// Most recent last; at most [`STREAM_CAPACITY`].
    pub stream: VecDeque<StreamEntry>,
    pub running: Option<(Action, Instant)>,
    pub message: Option<String>,
}

impl ClientView {
    fn new(id: ClientId) -> Self {
        ClientView {
            id,
            state: ClientState::Running,
            stream: VecDeque::with_capacity(STREAM_CAPACITY),
            running: None,
            message: None,
        }
    }
}

/// Shutdown in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping {
    pub deadline: Instant,
    pub in_flight: usize,
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    pub theme: Theme,
    pub backend: String,
    pub address: String,
    pub repository: PathBuf,
    pub state_dir: PathBuf,
    pub seed: u64,
    pub scenario: String,
    pub run_counter: u32,
    pub started: Instant,
    pub now: Instant,
    pub repo_bytes: Option<u64>,
    pub clients: BTreeMap<ClientId, ClientView>,
    pub selected: Option<ClientId>,
    pub focus: Focus,
    pub failures: Vec<Failure>,
    pub failure_selected: usize,
    pub overlay: Overlay,
    pub paused_all: bool,
    pub gc_running: usize,
    /// The engine's counts, as last published: every number on screen.
    pub counts: Counts,
    /// Clients taking actions now, as the run last said.
    pub running_clients: usize,
    pub log_level: LevelFilter,
    /// Actions finished per second, oldest first.
    pub throughput: VecDeque<u64>,
    finished_this_second: u64,
    second_started: Instant,
    pub stopping: Option<Stopping>,
    pub finished: bool,
    /// Faults injected so far.
    pub faults: Vec<Injected>,
    /// Last notice for the status bar (e.g. a client that could not connect).
    pub notice: Option<String>,
}

impl App {
    pub fn new(info: &RunInfo, now: Instant, theme: Theme) -> Self {
        App {
            theme,
            backend: info.server.backend.clone(),
            address: info.server.address.clone(),
            repository: info.server.repository.clone(),
            state_dir: info.state_dir.clone(),
            seed: info.seed,
            scenario: info.scenario.clone(),
            run_counter: info.run_counter,
            started: now,
            now,
            repo_bytes: None,
            clients: BTreeMap::new(),
            selected: None,
            focus: Focus::Clients,
            failures: info.startup_failures.clone(),
            failure_selected: 0,
            overlay: Overlay::None,
            paused_all: false,
            gc_running: 0,
            counts: Counts::default(),
            running_clients: 0,
            log_level: LevelFilter::Info,
            throughput: VecDeque::with_capacity(THROUGHPUT_SECONDS),
            finished_this_second: 0,
            second_started: now,
            stopping: None,
            finished: false,
            faults: Vec::new(),
            notice: None,
        }
    }

    /// Takes the counts the engine publishes now.
    pub fn set_counts(&mut self, counts: Counts, running_clients: usize) {
        self.counts = counts;
        self.running_clients = running_clients;
    }

    /// One client's counts (zero before its first action).
    pub fn client_counts(&self, id: ClientId) -> ClientCounts {
        self.counts.client(id).cloned().unwrap_or_default()
    }

    /// Moves the clock: finishes throughput seconds that have passed.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        while now.duration_since(self.second_started) >= Duration::from_secs(1) {
            if self.throughput.len() == THROUGHPUT_SECONDS {
                self.throughput.pop_front();
            }
            self.throughput.push_back(self.finished_this_second);
            self.finished_this_second = 0;
            self.second_started += Duration::from_secs(1);
        }
    }

    /// Applies one event from the engine.
    pub fn apply_event(&mut self, event: Event) {
        match event {
            Event::ClientAdded(id) => {
                self.clients.insert(id, ClientView::new(id));
                self.selected.get_or_insert(id);
            }
            Event::ClientError(id, message) => {
                let client = self
                    .clients
                    .entry(id)
                    .or_insert_with(|| ClientView::new(id));
                client.message = Some(message.clone());
                let acted = self.counts.client(id).is_some_and(|c| c.actions > 0);
                if client.running.is_none() && !acted {
                    client.state = ClientState::Broken;
                }
                self.notice = Some(format!("{id}: {message}"));
            }
            Event::ClientRemoved(id) => {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.state = ClientState::Removed;
                    client.running = None;
                }
            }
            Event::ActionStarted { client, action, at } => {
                if let Some(view) = self.clients.get_mut(&client) {
                    view.running = Some((action, at));
                }
            }
            Event::ActionFinished(record) => {
                self.finished_this_second += 1;
                if let Some(stopping) = self.stopping.as_mut() {
                    stopping.in_flight = stopping.in_flight.saturating_sub(1);
                }
                if let Some(failure) = &record.failure {
                    self.failures.push(failure.clone());
                }
                let Some(view) = self.clients.get_mut(&record.client) else {
                    return;
                };
                view.running = None;
                let expected = record.explained_by.is_some();
                if view.stream.len() == STREAM_CAPACITY {
                    view.stream.pop_front();
                }
                view.stream.push_back(StreamEntry {
                    action: record.action,
                    outcome: record.outcome,
                    duration_ms: record.duration_ms,
                    note: match &record.explained_by {
                        Some(fault) => Some(format!(
                            "(expected: {fault}) {}",
                            record.message.as_deref().unwrap_or("")
                        )),
                        None => record.message.clone(),
                    },
                    expected,
                });
            }
            Event::GcStarted => self.gc_running += 1,
            Event::GcFinished(result) => {
                self.gc_running = self.gc_running.saturating_sub(1);
                if let Err(error) = result {
                    self.notice = Some(format!("GC failed: {error}"));
                }
            }
            Event::PausedAll(paused) => self.paused_all = paused,
            Event::ClientPaused(id, paused) => {
                if let Some(view) = self.clients.get_mut(&id) {
                    view.state = if paused {
                        ClientState::Paused
                    } else {
                        ClientState::Running
                    };
                }
            }
            Event::Stopping { in_flight, grace } => {
                self.stopping = Some(Stopping {
                    deadline: self.now + grace,
                    in_flight,
                });
            }
            Event::FaultInjected(injected) => {
                self.notice = Some(format!("injected {} → {}", injected.label, injected.target));
                self.faults.push(injected);
            }
            Event::FaultFailed { kind, error } => {
                self.notice = Some(format!("{kind} not injected: {error}"))
            }
            Event::Failures(failures) => self.failures.extend(failures),
            Event::Finished(_) => self.finished = true,
        }
    }

    /// What a key means here (an open overlay takes the keys first).
    pub fn key_action(&self, key: KeyEvent) -> Option<UiAction> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Some(UiAction::Quit);
        }
        if self.overlay == Overlay::FaultMenu
            && let KeyCode::Char(digit @ '1'..='9') = key.code
        {
            let index = digit as usize - '1' as usize;
            return FaultKind::ALL
                .get(index)
                .map(|kind| UiAction::InjectFault(*kind));
        }
        if self.overlay != Overlay::None {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') => Some(UiAction::CloseOverlay),
                KeyCode::Char('q') => Some(UiAction::Quit),
                _ => None,
            };
        }
        Some(match key.code {
            KeyCode::Char('a') => UiAction::AddClient,
            KeyCode::Char('x') => UiAction::RemoveSelected,
            KeyCode::Char('g') => UiAction::Gc,
            KeyCode::Char(' ') => UiAction::TogglePauseAll,
            KeyCode::Char('p') => UiAction::TogglePauseSelected,
            KeyCode::Char('s') => UiAction::SnapshotNow,
            KeyCode::Char('v') => UiAction::VerifyNow,
            KeyCode::Down | KeyCode::Right | KeyCode::Char('j') => UiAction::SelectNext,
            KeyCode::Up | KeyCode::Left | KeyCode::Char('k') => UiAction::SelectPrevious,
            KeyCode::Tab | KeyCode::BackTab => UiAction::SwitchFocus,
            KeyCode::Enter => UiAction::OpenDetails,
            KeyCode::Char('?') => UiAction::ToggleHelp,
            KeyCode::Char('l') => UiAction::CycleLogLevel,
            KeyCode::Char('c') => UiAction::VerifyRepo,
            KeyCode::Char('f') => UiAction::OpenFaultMenu,
            KeyCode::Char('q') => UiAction::Quit,
            KeyCode::Esc => UiAction::CloseOverlay,
            _ => return None,
        })
    }

    /// Applies a UI action; returns the command the engine should receive.
    pub fn update(&mut self, action: UiAction) -> Option<Command> {
        if self.stopping.is_some()
            && action != UiAction::ToggleHelp
            && action != UiAction::CloseOverlay
        {
            // Once stopping, only looking around is allowed.
            return None;
        }
        match action {
            UiAction::AddClient => Some(Command::AddClient),
            UiAction::RemoveSelected => {
                let id = self.selected_active()?;
                if let Some(view) = self.clients.get_mut(&id) {
                    view.state = ClientState::Removing;
                }
                Some(Command::RemoveClient(id))
            }
            UiAction::Gc => Some(Command::Gc(GcOptions::default())),
            UiAction::TogglePauseAll => Some(Command::TogglePauseAll),
            UiAction::TogglePauseSelected => self.selected_active().map(Command::TogglePauseClient),
            UiAction::SnapshotNow => self
                .selected_active()
                .map(|id| Command::Enqueue(id, Action::SnapshotRoot)),
            UiAction::VerifyNow => self
                .selected_active()
                .map(|id| Command::Enqueue(id, Action::RestoreRandomSnapshot)),
            UiAction::SelectNext => {
                self.move_selection(1);
                None
            }
            UiAction::SelectPrevious => {
                self.move_selection(-1);
                None
            }
            UiAction::SwitchFocus => {
                self.focus = match self.focus {
                    Focus::Clients if !self.failures.is_empty() => Focus::Failures,
                    _ => Focus::Clients,
                };
                None
            }
            UiAction::OpenDetails => {
                self.overlay = match self.focus {
                    Focus::Failures if !self.failures.is_empty() => {
                        Overlay::Failure(self.failure_selected)
                    }
                    _ => match self.selected {
                        Some(id) => Overlay::Client(id),
                        None => Overlay::None,
                    },
                };
                None
            }
            UiAction::ToggleHelp => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
                None
            }
            UiAction::CloseOverlay => {
                self.overlay = Overlay::None;
                None
            }
            UiAction::CycleLogLevel => {
                self.log_level = match self.log_level {
                    LevelFilter::Error => LevelFilter::Warn,
                    LevelFilter::Warn => LevelFilter::Info,
                    LevelFilter::Info => LevelFilter::Debug,
                    LevelFilter::Debug => LevelFilter::Trace,
                    _ => LevelFilter::Error,
                };
                None
            }
            UiAction::VerifyRepo => self
                .selected_active()
                .map(|id| Command::Enqueue(id, Action::VerifyRepo)),
            UiAction::OpenFaultMenu => {
                self.overlay = Overlay::FaultMenu;
                None
            }
            UiAction::InjectFault(kind) => {
                self.overlay = Overlay::None;
                let mut spec = FaultSpec::new(kind, std::time::Duration::ZERO);
                if matches!(kind, FaultKind::RevokeClient | FaultKind::KillClient) {
                    spec.client = self.selected_active().map(|id| id.0);
                    if kind == FaultKind::RevokeClient {
                        spec.duration = Some(Duration::from_secs(15));
                    }
                }
                Some(Command::InjectFault(spec))
            }
            UiAction::Quit => {
                self.overlay = Overlay::None;
                Some(Command::Shutdown)
            }
        }
    }

    /// The selected client, if it is still part of the run.
    fn selected_active(&self) -> Option<ClientId> {
        let id = self.selected?;
        let view = self.clients.get(&id)?;
        matches!(view.state, ClientState::Running | ClientState::Paused).then_some(id)
    }

    fn move_selection(&mut self, step: isize) {
        match self.focus {
            Focus::Clients => {
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                if ids.is_empty() {
                    return;
                }
                let current = self
                    .selected
                    .and_then(|id| ids.iter().position(|&i| i == id))
                    .unwrap_or(0);
                let next = (current as isize + step).rem_euclid(ids.len() as isize) as usize;
                self.selected = Some(ids[next]);
            }
            Focus::Failures => {
                if self.failures.is_empty() {
                    return;
                }
                let len = self.failures.len() as isize;
                self.failure_selected =
                    (self.failure_selected as isize + step).rem_euclid(len) as usize;
            }
        }
    }
}
