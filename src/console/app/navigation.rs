//! Moving around: selection in the grid, the table and the failures,
//! overlays and their scrolling, the go-to prompt, clicks.

use crate::engine::traits::ClientId;
use crate::run::Command;

use super::*;

impl App {
    /// Selection: in the grid, the table or the failures, by key, wheel or click.
    pub(super) fn select(&mut self, action: UiAction) -> Option<Command> {
        match action {
            UiAction::SelectNext | UiAction::SelectRight => self.step(1, 1),
            UiAction::SelectPrevious | UiAction::SelectLeft => self.step(-1, 1),
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
            UiAction::WheelUp | UiAction::WheelDown if self.overlay != Overlay::None => {
                self.scroll_by(if action == UiAction::WheelUp { -1 } else { 1 });
                None
            }
            UiAction::WheelUp => self.step(-1, 1),
            UiAction::WheelDown => self.step(1, 1),
            UiAction::Click(column, row) => {
                if self.overlay == Overlay::None {
                    self.click(column, row);
                }
                None
            }
            _ => None,
        }
    }

    /// Overlays: open, close, scroll, and step through failures in a diff.
    pub(super) fn look(&mut self, action: UiAction) {
        match action {
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
            }
            UiAction::ToggleHelp => {
                let overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
                self.open(overlay);
            }
            UiAction::CloseOverlay => {
                if self.overlay == Overlay::None && self.goto.is_none() {
                    self.log.follow();
                }
                self.goto = None;
                self.open(Overlay::None);
            }
            UiAction::OpenFaultMenu => self.open(Overlay::FaultMenu),
            UiAction::ScrollUp if self.overlay != Overlay::None => self.scroll_by(-1),
            UiAction::ScrollDown if self.overlay != Overlay::None => self.scroll_by(1),
            UiAction::PageUp if self.overlay == Overlay::None => self.log.page_up(),
            UiAction::PageDown if self.overlay == Overlay::None => self.log.page_down(),
            UiAction::PageUp => self.scroll_by(-(self.overlay_page() as i32)),
            UiAction::PageDown => self.scroll_by(self.overlay_page() as i32),
            UiAction::ScrollTop => self.overlay_scroll = 0,
            UiAction::ScrollBottom => {
                self.overlay_scroll = crate::console::layout::overlay_max_scroll(self);
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
            }
            _ => {}
        }
    }

    /// The go-to prompt: a client number typed, then enter.
    pub(super) fn go_to(&mut self, action: UiAction) {
        match action {
            UiAction::GoTo(first) => {
                self.goto = Some(first.map(String::from).unwrap_or_default());
            }
            UiAction::GoToInput(digit) => {
                if let Some(text) = self.goto.as_mut()
                    && text.len() < 6
                {
                    text.push(digit);
                }
            }
            UiAction::GoToBackspace => {
                if let Some(text) = self.goto.as_mut() {
                    text.pop();
                }
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
            }
            _ => {}
        }
    }

    /// Selects `id` if nothing is selected yet, or only a later client that
    /// is still connecting: clients connect side by side, in any order, and
    /// the first one is selected when the screen comes up.
    pub(super) fn select_first(&mut self, id: ClientId) {
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
    pub(super) fn open(&mut self, overlay: Overlay) {
        self.overlay = overlay;
        self.overlay_scroll = 0;
    }
    pub(super) fn scroll_by(&mut self, lines: i32) {
        let max = crate::console::layout::overlay_max_scroll(self);
        let next = (self.overlay_scroll as i32 + lines).clamp(0, max as i32);
        self.overlay_scroll = next as u16;
    }
    /// Lines an overlay shows at once (a page, less one line kept for context).
    pub(super) fn overlay_page(&self) -> u16 {
        crate::console::layout::overlay_inner(self)
            .height
            .saturating_sub(1)
            .max(1)
    }
    pub(super) fn grid_columns(&self) -> isize {
        match self.focus {
            Focus::Clients => crate::console::layout::client_columns(self).max(1) as isize,
            Focus::Failures => 1,
        }
    }
    pub(super) fn click(&mut self, column: u16, row: u16) {
        match crate::console::layout::hit(self, column, row) {
            Some(crate::console::layout::Hit::Client(id)) => {
                self.selected = Some(id);
                self.focus = Focus::Clients;
            }
            Some(crate::console::layout::Hit::Failure(index)) => {
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
    pub(super) fn selected_or_say(&mut self, what: &str) -> Option<ClientId> {
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
    pub(super) fn nearest_visible(&self, id: ClientId) -> Option<ClientId> {
        let visible = self.visible_clients();
        visible
            .iter()
            .find(|&&v| v > id)
            .or_else(|| visible.iter().rev().find(|&&v| v < id))
            .copied()
    }
    /// Moves the selection by `step` × `stride` places (a row of the grid is
    /// `stride` places): clients wrap at the ends, failures stop there.
    pub(super) fn step(&mut self, step: isize, stride: isize) -> Option<Command> {
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
