//! The console's state and how it changes: engine events and key presses
//! come in, commands for the engine go out. Nothing here draws or blocks;
//! drawing is a pure function of [`App`] (see `layout.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use tui_logger::LevelFilter;

use super::theme::Theme;
use crate::engine::Action;
use crate::engine::stats::{ClientCounts, Counts, Outcome};
use crate::engine::store::Failure;
use crate::engine::traits::{ClientId, GcOptions, Injected};
use crate::faults::{FaultKind, FaultSpec};
use crate::run::{Command, Event, MAX_CLIENTS, RunInfo};

/// Actions kept per client: the details overlay shows them all; bounded memory.
pub const STREAM_CAPACITY: usize = 1000;
/// How long a notice stays on its line.
pub const NOTICE_FOR: Duration = Duration::from_secs(20);
/// How long after a server-restart's down time the header says "restarting".
const RESTARTING_FOR: Duration = Duration::from_secs(3);
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
    /// Next / previous in the list (`j` / `k`, Tab order).
    SelectNext,
    SelectPrevious,
    /// Spatial moves in the client grid (in the table and failures: up and down).
    SelectLeft,
    SelectRight,
    SelectUp,
    SelectDown,
    SwitchFocus,
    OpenDetails,
    ToggleHelp,
    CloseOverlay,
    CycleLogLevel,
    /// Restore-and-verify is per snapshot; this checks the whole repository.
    VerifyRepo,
    OpenFaultMenu,
    InjectFault(FaultKind),
    /// Scrolling an overlay: a line, a page, to the start or the end.
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    ScrollTop,
    ScrollBottom,
    /// In a failure's details: the next (older) or previous (newer) failure.
    NextFailure,
    PreviousFailure,
    /// Compact table of clients instead of panes (and back).
    ToggleTable,
    /// Show removed clients again (or collapse them).
    ToggleRemoved,
    /// Keep the state for `snapstorm shrink` of the selected failure.
    ShrinkSelected,
    /// Start typing a client number to go to (`/`, or a digit).
    GoTo(Option<char>),
    GoToInput(char),
    GoToBackspace,
    GoToConfirm,
    /// A left click at (column, row) of the screen.
    Click(u16, u16),
    WheelUp,
    WheelDown,
    Quit,
}

/// A fault that lasts, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFault {
    pub label: String,
    pub kind: FaultKind,
    pub until: Instant,
}

/// The server, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Up,
    /// Stopped by a `server-restart`; back in this long.
    Down(Duration),
    /// The restart is due: serving again any moment.
    Restarting,
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
    /// Being connected, or waiting to try again.
    Connecting,
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
            ClientState::Connecting => "connecting",
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
    /// What it made or touched: the snapshot a `snapshot-root` created, the
    /// files and bytes a write wrote, the snapshot a restore checked.
    pub made: Option<String>,
    /// An injected fault explains this error or failure.
    pub expected: bool,
}

/// What an action made or touched, in a few words (see [`StreamEntry::made`]).
fn made_by(record: &crate::engine::record::ActionRecord) -> Option<String> {
    let snapshot = record
        .snapshot
        .as_deref()
        .map(|id| super::format::short_id(id).to_owned());
    match record.action {
        // The snapshot it made, restored or deleted: its id says which.
        Action::SnapshotRoot | Action::RestoreRandomSnapshot | Action::DeleteRandomSnapshot => {
            snapshot
        }
        Action::WriteRandomFiles => {
            let files = record.details.get("files")?.as_u64()?;
            let bytes = record.details.get("bytes")?.as_u64()?;
            Some(format!(
                "{files} file{}, {}",
                if files == 1 { "" } else { "s" },
                super::format::bytes(bytes)
            ))
        }
        _ => None,
    }
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
    /// The log pane's page (PgUp/PgDn when no overlay is open).
    pub log: super::log_pane::LogView,
    /// Actions finished per second, oldest first.
    pub throughput: VecDeque<u64>,
    finished_this_second: u64,
    second_started: Instant,
    pub stopping: Option<Stopping>,
    pub finished: bool,
    /// Faults injected so far.
    pub faults: Vec<Injected>,
    /// Faults with a duration, while they last (and a little after).
    pub active_faults: Vec<ActiveFault>,
    /// Last notice and when it came (e.g. a client that could not connect).
    pub notice: Option<(String, Instant)>,
    /// The terminal's size, as last drawn: where panes and overlays are.
    pub screen: Rect,
    /// Lines an overlay is scrolled down by.
    pub overlay_scroll: u16,
    /// Table of clients (`Some(true)`), panes (`Some(false)`), or chosen by what fits.
    pub table: Option<bool>,
    /// Removed clients shown (they collapse into one line otherwise).
    pub show_removed: bool,
    /// `R` asked to shrink a failure: the command to print on exit (and the
    /// state dir must then be kept).
    pub shrink_command: Option<String>,
    /// The client number being typed after `/` or a digit.
    pub goto: Option<String>,
    /// Ring the terminal bell on the first unexpected failure.
    pub bell: bool,
    bell_rung: bool,
    bell_due: bool,
    /// Clients asked for with `a` whose connection has not begun.
    pub pending_adds: u32,
    /// Inherited snapshots verified at start: (to verify, verified).
    pub inherited: (u64, u64),
    /// Snapshots inherited from earlier runs.
    pub inherited_snapshots: u64,
    /// The server's own address when clients reach it through the fault proxy.
    pub behind_proxy: Option<String>,
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
            log: super::log_pane::LogView::new(LevelFilter::Info),
            throughput: VecDeque::with_capacity(THROUGHPUT_SECONDS),
            finished_this_second: 0,
            second_started: now,
            stopping: None,
            finished: false,
            faults: Vec::new(),
            active_faults: Vec::new(),
            notice: None,
            screen: Rect::new(0, 0, 140, 45),
            overlay_scroll: 0,
            table: None,
            show_removed: false,
            shrink_command: None,
            goto: None,
            bell: true,
            bell_rung: false,
            bell_due: false,
            pending_adds: 0,
            inherited: (0, 0),
            inherited_snapshots: info.inherited_snapshots,
            behind_proxy: None,
        }
    }

    /// Selects `id` if nothing is selected yet, or only a later client that
    /// is still connecting: clients connect side by side, in any order, and
    /// the first one is selected when the screen comes up.
    fn select_first(&mut self, id: ClientId) {
        let replace = match self.selected {
            None => true,
            Some(current) => {
                current > id
                    && self.clients.get(&current).map(|v| v.state) == Some(ClientState::Connecting)
            }
        };
        if replace {
            self.selected = Some(id);
        }
    }

    /// Clients connecting now, and clients connected or connecting (not removed).
    pub fn connecting(&self) -> (usize, usize) {
        let connecting = self
            .clients
            .values()
            .filter(|v| v.state == ClientState::Connecting)
            .count();
        let total = self
            .clients
            .values()
            .filter(|v| !matches!(v.state, ClientState::Removed | ClientState::Broken))
            .count();
        (connecting, total)
    }

    /// The terminal's size changed (or is known for the first time).
    pub fn resize(&mut self, width: u16, height: u16) {
        self.screen = Rect::new(0, 0, width, height);
    }

    /// Shows `text` on the notice line.
    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), self.now));
    }

    /// The notice to show now, if it is recent.
    pub fn current_notice(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| self.now.saturating_duration_since(*at) < NOTICE_FOR)
            .map(|(text, _)| text.as_str())
    }

    /// True once, after the first unexpected failure, when the bell is on.
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.bell_due)
    }

    /// Timed faults still in effect now.
    pub fn faults_in_effect(&self) -> impl Iterator<Item = &ActiveFault> {
        self.active_faults.iter().filter(|f| f.until > self.now)
    }

    /// Up, or down / restarting because of a `server-restart`.
    pub fn server_state(&self) -> ServerState {
        let restarts = self
            .active_faults
            .iter()
            .filter(|f| f.kind == FaultKind::ServerRestart);
        let mut state = ServerState::Up;
        for fault in restarts {
            if fault.until > self.now {
                return ServerState::Down(fault.until - self.now);
            }
            if self.now < fault.until + RESTARTING_FOR {
                state = ServerState::Restarting;
            }
        }
        state
    }

    /// Clients drawn in the grid or table, in order: removed ones only when shown.
    pub fn visible_clients(&self) -> Vec<ClientId> {
        self.clients
            .values()
            .filter(|v| self.show_removed || v.state != ClientState::Removed)
            .map(|v| v.id)
            .collect()
    }

    /// Clients removed and collapsed out of view.
    pub fn hidden_removed(&self) -> usize {
        if self.show_removed {
            return 0;
        }
        self.clients
            .values()
            .filter(|v| v.state == ClientState::Removed)
            .count()
    }

    /// Clients in the run or on their way in: what `a` counts against the limit.
    fn clients_in_run(&self) -> u32 {
        let connected = self
            .clients
            .values()
            .filter(|v| {
                matches!(
                    v.state,
                    ClientState::Connecting
                        | ClientState::Running
                        | ClientState::Paused
                        | ClientState::Removing
                )
            })
            .count() as u32;
        connected + self.pending_adds
    }

    /// Takes the counts the engine publishes now.
    pub fn set_counts(&mut self, counts: Counts, running_clients: usize) {
        if counts.totals.unexpected_failures > 0 && !self.bell_rung {
            self.bell_rung = true;
            self.bell_due = self.bell;
        }
        self.counts = counts;
        self.running_clients = running_clients;
    }

    /// One client's counts (zero before its first action).
    pub fn client_counts(&self, id: ClientId) -> ClientCounts {
        self.counts.client(id).cloned().unwrap_or_default()
    }

    /// What kind of client it is (`rustic`, `restic`), as the engine reports it.
    pub fn client_kind(&self, id: ClientId) -> Option<&str> {
        self.counts
            .clients
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.kind.as_deref())
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
            Event::ClientConnecting { client, attempt } => {
                if attempt == 1 {
                    self.pending_adds = self.pending_adds.saturating_sub(1);
                }
                let view = self
                    .clients
                    .entry(client)
                    .or_insert_with(|| ClientView::new(client));
                view.state = ClientState::Connecting;
                self.select_first(client);
            }
            Event::ClientAdded(id) => {
                let view = self
                    .clients
                    .entry(id)
                    .or_insert_with(|| ClientView::new(id));
                view.state = ClientState::Running;
                view.message = None;
                self.select_first(id);
            }
            Event::ClientError(id, message) => {
                let client = self
                    .clients
                    .entry(id)
                    .or_insert_with(|| ClientView::new(id));
                client.message = Some(message.clone());
                let acted = self.counts.client(id).is_some_and(|c| c.actions > 0);
                if client.state != ClientState::Connecting && client.running.is_none() && !acted {
                    client.state = ClientState::Broken;
                }
                self.selected.get_or_insert(id);
                self.notify(format!("{id}: {message}"));
            }
            Event::ClientRemoved(id) => {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.state = ClientState::Removed;
                    client.running = None;
                }
                if self.selected == Some(id) && !self.show_removed {
                    self.selected = self.nearest_visible(id);
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
                self.failures.extend(record.failures.iter().cloned());
                let Some(view) = self.clients.get_mut(&record.client) else {
                    return;
                };
                view.running = None;
                let expected = record.explained_by.is_some();
                let made = made_by(&record);
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
                    made,
                    expected,
                });
            }
            Event::GcStarted => self.gc_running += 1,
            Event::GcFinished(result) => {
                self.gc_running = self.gc_running.saturating_sub(1);
                if let Err(error) = result {
                    self.notify(format!("GC failed: {error}"));
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
                self.notify(format!(
                    "Injected {} into {}.",
                    injected.label, injected.target
                ));
                if let Some(duration) = injected.duration {
                    self.active_faults
                        .retain(|f| f.until + RESTARTING_FOR > self.now);
                    self.active_faults.push(ActiveFault {
                        label: injected.label.clone(),
                        kind: injected.kind,
                        until: self.now + duration,
                    });
                }
                self.faults.push(injected);
            }
            Event::FaultFailed { kind, error } => {
                self.notify(format!("{kind} was not injected: {error}"))
            }
            Event::Failures(failures) => self.failures.extend(failures),
            Event::Finished(_) => self.finished = true,
        }
    }

    /// What a key means here (the go-to prompt, then an open overlay, take the keys first).
    pub fn key_action(&self, key: KeyEvent) -> Option<UiAction> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Some(UiAction::Quit);
        }
        if self.goto.is_some() {
            return match key.code {
                KeyCode::Char(digit @ '0'..='9') => Some(UiAction::GoToInput(digit)),
                KeyCode::Backspace => Some(UiAction::GoToBackspace),
                KeyCode::Enter => Some(UiAction::GoToConfirm),
                KeyCode::Esc => Some(UiAction::CloseOverlay),
                _ => None,
            };
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
            let in_failure = matches!(self.overlay, Overlay::Failure(_));
            return match key.code {
                KeyCode::Esc | KeyCode::Enter => Some(UiAction::CloseOverlay),
                KeyCode::Char('?') => Some(UiAction::ToggleHelp),
                KeyCode::Char('q') => Some(UiAction::Quit),
                KeyCode::Up | KeyCode::Char('k') => Some(UiAction::ScrollUp),
                KeyCode::Down | KeyCode::Char('j') => Some(UiAction::ScrollDown),
                KeyCode::PageUp => Some(UiAction::PageUp),
                KeyCode::PageDown | KeyCode::Char(' ') => Some(UiAction::PageDown),
                KeyCode::Home | KeyCode::Char('g') => Some(UiAction::ScrollTop),
                KeyCode::End | KeyCode::Char('G') => Some(UiAction::ScrollBottom),
                KeyCode::Char('n') if in_failure => Some(UiAction::NextFailure),
                KeyCode::Char('N') if in_failure => Some(UiAction::PreviousFailure),
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
            KeyCode::Char('j') => UiAction::SelectNext,
            KeyCode::Char('k') => UiAction::SelectPrevious,
            KeyCode::Left => UiAction::SelectLeft,
            KeyCode::Right => UiAction::SelectRight,
            KeyCode::Up => UiAction::SelectUp,
            KeyCode::Down => UiAction::SelectDown,
            KeyCode::Tab | KeyCode::BackTab => UiAction::SwitchFocus,
            KeyCode::Enter => UiAction::OpenDetails,
            KeyCode::Char('?') => UiAction::ToggleHelp,
            KeyCode::Char('l') => UiAction::CycleLogLevel,
            KeyCode::Char('c') => UiAction::VerifyRepo,
            KeyCode::Char('f') => UiAction::OpenFaultMenu,
            KeyCode::Char('t') => UiAction::ToggleTable,
            KeyCode::Char('r') => UiAction::ToggleRemoved,
            KeyCode::Char('R') => UiAction::ShrinkSelected,
            KeyCode::Char('/') => UiAction::GoTo(None),
            KeyCode::Char(digit @ '0'..='9') => UiAction::GoTo(Some(digit)),
            KeyCode::Char('q') => UiAction::Quit,
            KeyCode::Esc => UiAction::CloseOverlay,
            KeyCode::PageUp => UiAction::PageUp,
            KeyCode::PageDown => UiAction::PageDown,
            _ => return None,
        })
    }

    /// What a mouse event means here: a click selects, the wheel scrolls.
    pub fn mouse_action(&self, mouse: MouseEvent) -> Option<UiAction> {
        match mouse.kind {
            MouseEventKind::Down(crossterm::event::MouseButton::Left) => {
                Some(UiAction::Click(mouse.column, mouse.row))
            }
            MouseEventKind::ScrollUp => Some(UiAction::WheelUp),
            MouseEventKind::ScrollDown => Some(UiAction::WheelDown),
            _ => None,
        }
    }

    /// Applies a UI action; returns the command the engine should receive.
    /// Never waits: what the engine does about it comes back as events.
    pub fn update(&mut self, action: UiAction) -> Option<Command> {
        let looking = matches!(
            action,
            UiAction::ToggleHelp
                | UiAction::CloseOverlay
                | UiAction::ScrollUp
                | UiAction::ScrollDown
                | UiAction::PageUp
                | UiAction::PageDown
                | UiAction::ScrollTop
                | UiAction::ScrollBottom
                | UiAction::WheelUp
                | UiAction::WheelDown
        );
        if self.stopping.is_some() && !looking {
            // Once stopping, only looking around is allowed.
            return None;
        }
        match action {
            UiAction::AddClient => {
                if self.clients_in_run() >= MAX_CLIENTS {
                    self.notify(format!(
                        "Not added: {MAX_CLIENTS} clients is the limit (as for --clients); remove one with x first."
                    ));
                    return None;
                }
                self.pending_adds += 1;
                Some(Command::AddClient)
            }
            UiAction::RemoveSelected => {
                let id = self.selected_or_say("remove")?;
                if let Some(view) = self.clients.get_mut(&id) {
                    view.state = ClientState::Removing;
                }
                Some(Command::RemoveClient(id))
            }
            UiAction::Gc => Some(Command::Gc(GcOptions::default())),
            UiAction::TogglePauseAll => Some(Command::TogglePauseAll),
            UiAction::TogglePauseSelected => self
                .selected_or_say("pause")
                .map(Command::TogglePauseClient),
            UiAction::SnapshotNow => self
                .selected_or_say("snapshot")
                .map(|id| Command::Enqueue(id, Action::SnapshotRoot)),
            UiAction::VerifyNow => self
                .selected_or_say("verify")
                .map(|id| Command::Enqueue(id, Action::RestoreRandomSnapshot)),
            UiAction::VerifyRepo => self
                .selected_or_say("check the repository with")
                .map(|id| Command::Enqueue(id, Action::VerifyRepo)),
            UiAction::SelectNext => self.step(1, 1),
            UiAction::SelectPrevious => self.step(-1, 1),
            UiAction::SelectLeft => self.step(-1, 1),
            UiAction::SelectRight => self.step(1, 1),
            UiAction::SelectUp => {
                let columns = self.grid_columns();
                self.step(-1, columns)
            }
            UiAction::SelectDown => {
                let columns = self.grid_columns();
                self.step(1, columns)
            }
            UiAction::SwitchFocus => {
                self.focus = match self.focus {
                    Focus::Clients if !self.failures.is_empty() => {
                        if self.failure_selected >= self.failures.len() {
                            self.failure_selected = self.failures.len() - 1;
                        }
                        Focus::Failures
                    }
                    _ => Focus::Clients,
                };
                None
            }
            UiAction::OpenDetails => {
                let overlay = match self.focus {
                    Focus::Failures if !self.failures.is_empty() => {
                        Overlay::Failure(self.failure_selected.min(self.failures.len() - 1))
                    }
                    _ => match self.selected {
                        Some(id) => Overlay::Client(id),
                        None => Overlay::None,
                    },
                };
                self.open(overlay);
                None
            }
            UiAction::ToggleHelp => {
                let overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
                self.open(overlay);
                None
            }
            UiAction::CloseOverlay => {
                if self.overlay == Overlay::None && self.goto.is_none() {
                    self.log.follow();
                }
                self.goto = None;
                self.open(Overlay::None);
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
                self.log = super::log_pane::LogView::new(self.log_level);
                None
            }
            UiAction::OpenFaultMenu => {
                self.open(Overlay::FaultMenu);
                None
            }
            UiAction::InjectFault(kind) => {
                let mut spec = FaultSpec::new(kind, std::time::Duration::ZERO);
                if kind.targets_client() {
                    // Never a removed client: the selected one if it runs, else none.
                    let Some(id) = self.selected_active() else {
                        self.notify(format!(
                            "{kind} hits the selected client, and none that runs is selected: close the menu (esc) and select one."
                        ));
                        return None;
                    };
                    spec.client = Some(id.0);
                    if kind == FaultKind::RevokeClient {
                        spec.duration = Some(Duration::from_secs(15));
                    }
                }
                self.open(Overlay::None);
                Some(Command::InjectFault(spec))
            }
            UiAction::ScrollUp | UiAction::WheelUp if self.overlay != Overlay::None => {
                self.scroll_by(-1);
                None
            }
            UiAction::ScrollDown | UiAction::WheelDown if self.overlay != Overlay::None => {
                self.scroll_by(1);
                None
            }
            UiAction::WheelUp => self.step(-1, 1),
            UiAction::WheelDown => self.step(1, 1),
            UiAction::ScrollUp | UiAction::ScrollDown => None,
            UiAction::PageUp if self.overlay == Overlay::None => {
                self.log.page_up();
                None
            }
            UiAction::PageDown if self.overlay == Overlay::None => {
                self.log.page_down();
                None
            }
            UiAction::PageUp => {
                self.scroll_by(-(self.overlay_page() as i32));
                None
            }
            UiAction::PageDown => {
                self.scroll_by(self.overlay_page() as i32);
                None
            }
            UiAction::ScrollTop => {
                self.overlay_scroll = 0;
                None
            }
            UiAction::ScrollBottom => {
                self.overlay_scroll = super::layout::overlay_max_scroll(self);
                None
            }
            UiAction::NextFailure | UiAction::PreviousFailure => {
                if let Overlay::Failure(index) = self.overlay
                    && !self.failures.is_empty()
                {
                    // Newest first on screen: "next" goes to an older one.
                    let len = self.failures.len() as isize;
                    let step = if action == UiAction::NextFailure {
                        -1
                    } else {
                        1
                    };
                    let next = (index as isize + step).rem_euclid(len) as usize;
                    self.failure_selected = next;
                    self.open(Overlay::Failure(next));
                }
                None
            }
            UiAction::ToggleTable => {
                let now_table = super::layout::client_table_shown(self);
                self.table = Some(!now_table);
                None
            }
            UiAction::ShrinkSelected => {
                if self.focus != Focus::Failures || self.failures.is_empty() {
                    self.notify(
                        "Nothing to shrink: select a failure first (tab to the failures panel).",
                    );
                    return None;
                }
                let command = crate::reproduce::shrink::shrink_command(
                    &self.state_dir,
                    std::path::Path::new("minimal.toml"),
                );
                self.notify(format!(
                    "The state is kept; after quitting, shrink this failure with: {command}"
                ));
                self.shrink_command = Some(command);
                None
            }
            UiAction::ToggleRemoved => {
                self.show_removed = !self.show_removed;
                if !self.show_removed
                    && let Some(id) = self.selected
                    && self.clients.get(&id).map(|v| v.state) == Some(ClientState::Removed)
                {
                    self.selected = self.nearest_visible(id);
                }
                let removed = self
                    .clients
                    .values()
                    .filter(|v| v.state == ClientState::Removed)
                    .count();
                self.notify(if self.show_removed {
                    format!("Showing {removed} removed client(s); r collapses them.")
                } else {
                    format!("{removed} removed client(s) collapsed; r shows them.")
                });
                None
            }
            UiAction::GoTo(first) => {
                self.goto = Some(first.map(String::from).unwrap_or_default());
                None
            }
            UiAction::GoToInput(digit) => {
                if let Some(text) = self.goto.as_mut()
                    && text.len() < 6
                {
                    text.push(digit);
                }
                None
            }
            UiAction::GoToBackspace => {
                if let Some(text) = self.goto.as_mut() {
                    text.pop();
                }
                None
            }
            UiAction::GoToConfirm => {
                let text = self.goto.take().unwrap_or_default();
                match text.parse::<u32>().ok().map(ClientId) {
                    Some(id) if self.clients.contains_key(&id) => {
                        if self.clients[&id].state == ClientState::Removed {
                            self.show_removed = true;
                        }
                        self.selected = Some(id);
                        self.focus = Focus::Clients;
                    }
                    _ => self.notify(format!("There is no client {text}.")),
                }
                None
            }
            UiAction::Click(column, row) => {
                if self.overlay == Overlay::None {
                    self.click(column, row);
                }
                None
            }
            UiAction::Quit => {
                self.goto = None;
                self.open(Overlay::None);
                Some(Command::Shutdown)
            }
        }
    }

    fn open(&mut self, overlay: Overlay) {
        self.overlay = overlay;
        self.overlay_scroll = 0;
    }

    fn scroll_by(&mut self, lines: i32) {
        let max = super::layout::overlay_max_scroll(self);
        let next = (self.overlay_scroll as i32 + lines).clamp(0, max as i32);
        self.overlay_scroll = next as u16;
    }

    /// Lines an overlay shows at once (a page, less one line kept for context).
    fn overlay_page(&self) -> u16 {
        super::layout::overlay_inner(self)
            .height
            .saturating_sub(1)
            .max(1)
    }

    fn grid_columns(&self) -> isize {
        match self.focus {
            Focus::Clients => super::layout::client_columns(self).max(1) as isize,
            Focus::Failures => 1,
        }
    }

    fn click(&mut self, column: u16, row: u16) {
        match super::layout::hit(self, column, row) {
            Some(super::layout::Hit::Client(id)) => {
                self.selected = Some(id);
                self.focus = Focus::Clients;
            }
            Some(super::layout::Hit::Failure(index)) => {
                self.failure_selected = index;
                self.focus = Focus::Failures;
            }
            None => {}
        }
    }

    /// The selected client, if it is still part of the run.
    pub fn selected_active(&self) -> Option<ClientId> {
        let id = self.selected?;
        let view = self.clients.get(&id)?;
        matches!(view.state, ClientState::Running | ClientState::Paused).then_some(id)
    }

    /// The selected running client, or a notice that says why there is none.
    fn selected_or_say(&mut self, what: &str) -> Option<ClientId> {
        if let Some(id) = self.selected_active() {
            return Some(id);
        }
        let why = match self.selected.and_then(|id| self.clients.get(&id)) {
            Some(view) => format!("{} is {}", view.id, view.state.label()),
            None => "no client is selected".to_owned(),
        };
        self.notify(format!(
            "Nothing to {what}: {why}; select a running client (arrows, / or its number), or add one with a."
        ));
        None
    }

    /// The visible client nearest after `id` (else before it).
    fn nearest_visible(&self, id: ClientId) -> Option<ClientId> {
        let visible = self.visible_clients();
        visible
            .iter()
            .find(|&&v| v > id)
            .or_else(|| visible.iter().rev().find(|&&v| v < id))
            .copied()
    }

    /// Moves the selection by `step` × `stride` places (a row of the grid is
    /// `stride` places): clients wrap at the ends, failures stop there.
    fn step(&mut self, step: isize, stride: isize) -> Option<Command> {
        match self.focus {
            Focus::Clients => {
                let ids = self.visible_clients();
                if ids.is_empty() {
                    return None;
                }
                let current = self
                    .selected
                    .and_then(|id| ids.iter().position(|&i| i == id));
                let Some(current) = current else {
                    self.selected = Some(ids[0]);
                    return None;
                };
                let len = ids.len() as isize;
                let target = current as isize + step * stride;
                let next = if stride > 1 && !(0..len).contains(&target) {
                    // Up from the top row or down from the bottom one: stay in the column.
                    current as isize
                } else {
                    target.rem_euclid(len)
                };
                self.selected = Some(ids[next as usize]);
            }
            Focus::Failures => {
                if self.failures.is_empty() {
                    return None;
                }
                // Newest first on screen: down goes to an older failure.
                let last = self.failures.len() as isize - 1;
                let next = (self.failure_selected as isize - step * stride).clamp(0, last);
                self.failure_selected = next as usize;
            }
        }
        None
    }
}
