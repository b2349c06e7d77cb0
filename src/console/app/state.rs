//! The console's state: the clients as seen, the failures, the overlay,
//! the selection, notices; what a run told it and what it has been asked.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::layout::Rect;
use tui_logger::LevelFilter;

use crate::console::theme::Theme;
use crate::engine::Action;
use crate::engine::stats::{ClientCounts, Counts, Outcome};
use crate::engine::store::Failure;
use crate::engine::traits::{ClientId, Injected};
use crate::faults::FaultKind;
use crate::run::RunInfo;

/// Actions kept per client: the details overlay shows them all; bounded memory.
pub const STREAM_CAPACITY: usize = 1000;
/// How long a notice stays on its line.
pub const NOTICE_FOR: Duration = Duration::from_secs(20);
/// How long after a server-restart's down time the header says "restarting".
pub(super) const RESTARTING_FOR: Duration = Duration::from_secs(3);

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
    pub(super) fn new(id: ClientId) -> Self {
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
    pub log: crate::console::log_pane::LogView,
    /// Actions finished per second, oldest first.
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
    pub(super) bell_rung: bool,
    pub(super) bell_due: bool,
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
            log: crate::console::log_pane::LogView::new(LevelFilter::Info),
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
            behind_proxy: info.server.behind_proxy.clone(),
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

    /// Clients in the run or on their way in: what `a` counts against the limit.
    pub(super) fn clients_in_run(&self) -> u32 {
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
}
