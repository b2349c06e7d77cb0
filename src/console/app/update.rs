//! Keys and clicks become [`UiAction`]s (by the key map), and each action
//! changes the state or asks the run for something. Never waits: what the
//! run does about it comes back as events.

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use tui_logger::LevelFilter;

use crate::console::keymap;
use crate::engine::Action;
use crate::engine::traits::GcOptions;
use crate::faults::{FaultKind, FaultSpec};
use crate::run::{Command, MAX_CLIENTS};

use super::*;

impl App {
    /// What a key means here, by the key map (the go-to prompt, then an
    /// open overlay, take the keys first).
    pub fn key_action(&self, key: KeyEvent) -> Option<UiAction> {
        keymap::action_for(
            &key,
            keymap::Where {
                goto: self.goto.is_some(),
                overlay: self.overlay != Overlay::None,
                fault_menu: self.overlay == Overlay::FaultMenu,
                failure_diff: matches!(self.overlay, Overlay::Failure(_)),
            },
        )
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
    /// Applies a UI action; returns the command the run should receive.
    /// Never waits: what the run does about it comes back as events.
    pub fn update(&mut self, action: UiAction) -> Option<Command> {
        use UiAction::*;
        if self.stopping.is_some() && !action.only_looks() {
            // Once stopping, only looking around is allowed.
            return None;
        }
        match action {
            AddClient | RemoveSelected | Gc | TogglePauseAll | TogglePauseSelected
            | SnapshotNow | VerifyNow | VerifyRepo | InjectFault(_) | Quit => self.ask_run(action),
            SelectNext | SelectPrevious | SelectLeft | SelectRight | SelectUp | SelectDown
            | SwitchFocus | WheelUp | WheelDown | Click(..) => self.select(action),
            OpenDetails | ToggleHelp | CloseOverlay | OpenFaultMenu | ScrollUp | ScrollDown
            | PageUp | PageDown | ScrollTop | ScrollBottom | NextFailure | PreviousFailure => {
                self.look(action);
                None
            }
            GoTo(_) | GoToInput(_) | GoToBackspace | GoToConfirm => {
                self.go_to(action);
                None
            }
            CycleLogLevel | ToggleTable | ToggleRemoved | ShrinkSelected => {
                self.change_view(action);
                None
            }
        }
    }

    /// The actions that ask the run for something.
    fn ask_run(&mut self, action: UiAction) -> Option<Command> {
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
            UiAction::InjectFault(kind) => self.fault_from_menu(kind),
            UiAction::Quit => {
                self.goto = None;
                self.open(Overlay::None);
                Some(Command::Shutdown)
            }
            _ => None,
        }
    }

    /// A fault from the menu; one that hits a client hits the selected one.
    fn fault_from_menu(&mut self, kind: FaultKind) -> Option<Command> {
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

    /// The actions that change how the console shows things.
    fn change_view(&mut self, action: UiAction) {
        match action {
            UiAction::CycleLogLevel => {
                self.log_level = match self.log_level {
                    LevelFilter::Error => LevelFilter::Warn,
                    LevelFilter::Warn => LevelFilter::Info,
                    LevelFilter::Info => LevelFilter::Debug,
                    LevelFilter::Debug => LevelFilter::Trace,
                    _ => LevelFilter::Error,
                };
                self.log = crate::console::log_pane::LogView::new(self.log_level);
            }
            UiAction::ToggleTable => {
                let now_table = crate::console::layout::client_table_shown(self);
                self.table = Some(!now_table);
            }
            UiAction::ShrinkSelected => self.keep_for_shrink(),
            UiAction::ToggleRemoved => self.toggle_removed(),
            _ => {}
        }
    }

    /// `R`: keep the state and show the shrink command of the selected failure.
    fn keep_for_shrink(&mut self) {
        if self.focus != Focus::Failures || self.failures.is_empty() {
            self.notify("Nothing to shrink: select a failure first (tab to the failures panel).");
            return;
        }
        let command = crate::reproduce::shrink::shrink_command(
            &self.state_dir,
            std::path::Path::new("minimal.toml"),
        );
        self.notify(format!(
            "The state is kept; after quitting, shrink this failure with: {command}"
        ));
        self.shrink_command = Some(command);
    }

    fn toggle_removed(&mut self) {
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
    }
}

impl UiAction {
    /// Whether it only looks around (all that is left once the run stops).
    fn only_looks(self) -> bool {
        matches!(
            self,
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
        )
    }
}
