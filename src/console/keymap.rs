// Over 500 lines: the one key map is a table, one row per key; the code around it is short.
//! The one key map. Every key the console takes is a [`Binding`] in a
//! [`Row`] of [`KEYMAP`]: where it works, what it does, and how the status
//! bar hints at it. Key dispatch ([`action_for`]), the help overlay, the
//! status bar's hints and README's key table are all made from it, so
//! none of them can say a key does something it does not.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::UiAction;
use crate::faults::FaultKind;
use crate::run::MAX_CLIENTS;

/// Where a binding works; the first that applies takes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Anywhere, before anything else.
    Always,
    /// While a client number is typed (after `/` or a digit).
    GoTo,
    /// The fault menu (its digits; other keys as in any overlay).
    FaultMenu,
    /// A failure's diff (besides what any overlay takes).
    FailureDiff,
    /// Any overlay: help, fault menu, a client's stream, a failure's diff.
    Overlay,
    /// No overlay open.
    Main,
}

/// Which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Code(KeyCode),
    /// Any character from the first to the second (digits; the fault
    /// menu's letters), handed to the action.
    Digits(char, char),
    /// A character with the control key.
    Ctrl(char),
    /// Not a key: the mouse, which [`super::app::App::mouse_action`] reads.
    Mouse,
}

impl Key {
    /// The digit it matches in `event`, or `'\0'` for a plain match.
    fn matches(self, event: &KeyEvent) -> Option<char> {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        match (self, event.code) {
            (Key::Ctrl(c), KeyCode::Char(got)) if ctrl && c == got => Some('\0'),
            (Key::Char(c), KeyCode::Char(got)) if !ctrl && c == got => Some('\0'),
            (Key::Digits(from, to), KeyCode::Char(got)) if !ctrl && (from..=to).contains(&got) => {
                Some(got)
            }
            (Key::Code(code), got) if code == got => Some('\0'),
            _ => None,
        }
    }

    /// How a person names it, as the help does (`space`, `PgUp`, `0-9`).
    pub fn name(self) -> String {
        match self {
            Key::Char(' ') => "space".into(),
            Key::Char(c) => c.to_string(),
            Key::Digits(from, to) => format!("{from}-{to}"),
            Key::Ctrl(c) => format!("ctrl-{c}"),
            Key::Mouse => "mouse".into(),
            Key::Code(code) => match code {
                KeyCode::Up => "↑".into(),
                KeyCode::Down => "↓".into(),
                KeyCode::Left => "←".into(),
                KeyCode::Right => "→".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::PageDown => "PgDn".into(),
                KeyCode::Home => "Home".into(),
                KeyCode::End => "End".into(),
                KeyCode::Enter => "enter".into(),
                KeyCode::Esc => "esc".into(),
                KeyCode::Tab => "tab".into(),
                KeyCode::BackTab => "shift-tab".into(),
                KeyCode::Backspace => "backspace".into(),
                other => format!("{other:?}"),
            },
        }
    }
}

/// What a binding does.
#[derive(Debug, Clone, Copy)]
pub enum Does {
    Act(UiAction),
    /// An action made of the digit pressed.
    Digit(fn(char) -> Option<UiAction>),
    /// The mouse: see [`Key::Mouse`].
    Mouse,
}

/// Where a hint shows in the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// No overlay, the clients selected.
    Clients,
    /// No overlay, the failures selected.
    Failures,
    FailureDiff,
    FaultMenu,
    /// Help, or a client's stream.
    OtherOverlay,
    GoTo,
}

/// A hint in the status bar: the key as the bar writes it, a word, and its
/// place (hints are dropped from the last place when space runs out).
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    pub bar: Bar,
    pub key: &'static str,
    pub text: &'static str,
    pub place: u8,
}

const fn hint(bar: Bar, place: u8, key: &'static str, text: &'static str) -> Hint {
    Hint {
        bar,
        key,
        text,
        place,
    }
}

/// One key in one context.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub key: Key,
    pub context: Context,
    pub does: Does,
    pub hints: &'static [Hint],
}

const fn bind(key: Key, context: Context, action: UiAction) -> Binding {
    Binding {
        key,
        context,
        does: Does::Act(action),
        hints: &[],
    }
}

const fn hinted(key: Key, context: Context, action: UiAction, hints: &'static [Hint]) -> Binding {
    Binding {
        key,
        context,
        does: Does::Act(action),
        hints,
    }
}

/// A row of the help and of README's table: the keys as they are written
/// there, what they do, and the bindings behind them.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub keys: &'static str,
    /// What the keys do; `{max_clients}` stands for [`MAX_CLIENTS`].
    does: &'static str,
    pub bindings: &'static [Binding],
}

impl Row {
    /// What the keys do, limits filled in.
    pub fn does(&self) -> String {
        self.does.replace("{max_clients}", &MAX_CLIENTS.to_string())
    }
}

use Context::*;
use Key::{Char, Code, Ctrl, Digits};

/// The fault menu's key of each fault, in [`FaultKind::ALL`]'s order: the
/// digits, then letters (the menu is modal, so they mean nothing else there).
pub const FAULT_KEYS: [char; FaultKind::ALL.len()] = [
    '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i',
];

fn fault_by_key(key: char) -> Option<UiAction> {
    let index = FAULT_KEYS.iter().position(|k| *k == key)?;
    FaultKind::ALL
        .get(index)
        .map(|kind| UiAction::InjectFault(*kind))
}

/// Every key, in the order of the help and README.
pub const KEYMAP: &[Row] = &[
    Row {
        keys: "a",
        does: "add a client (authorized on the server, connected, running; at most {max_clients})",
        bindings: &[hinted(
            Char('a'),
            Main,
            UiAction::AddClient,
            &[hint(Bar::Clients, 2, "a", "add")],
        )],
    },
    Row {
        keys: "x",
        does: "remove the selected client (finishes its action, then revoked)",
        bindings: &[hinted(
            Char('x'),
            Main,
            UiAction::RemoveSelected,
            &[hint(Bar::Clients, 3, "x", "remove")],
        )],
    },
    Row {
        keys: "g",
        does: "garbage-collect the repository now",
        bindings: &[hinted(
            Char('g'),
            Main,
            UiAction::Gc,
            &[hint(Bar::Clients, 11, "g", "gc")],
        )],
    },
    Row {
        keys: "space",
        does: "pause / resume all clients (actions in flight finish)",
        bindings: &[hinted(
            Char(' '),
            Main,
            UiAction::TogglePauseAll,
            &[hint(Bar::Clients, 1, "space", "pause all")],
        )],
    },
    Row {
        keys: "p",
        does: "pause / resume the selected client",
        bindings: &[hinted(
            Char('p'),
            Main,
            UiAction::TogglePauseSelected,
            &[hint(Bar::Clients, 10, "p", "pause")],
        )],
    },
    Row {
        keys: "s",
        does: "snapshot now (selected client)",
        bindings: &[hinted(
            Char('s'),
            Main,
            UiAction::SnapshotNow,
            &[hint(Bar::Clients, 8, "s", "snap")],
        )],
    },
    Row {
        keys: "v",
        does: "restore and verify now (selected client)",
        bindings: &[hinted(
            Char('v'),
            Main,
            UiAction::VerifyNow,
            &[hint(Bar::Clients, 9, "v", "verify")],
        )],
    },
    Row {
        keys: "c",
        does: "check the whole repository, reading all data (verify-repo)",
        bindings: &[hinted(
            Char('c'),
            Main,
            UiAction::VerifyRepo,
            &[hint(Bar::Clients, 12, "c", "check")],
        )],
    },
    Row {
        keys: "f",
        does: "fault menu: inject a fault now, 1-9 and a-i (client faults hit the selected client)",
        bindings: &[
            hinted(
                Char('f'),
                Main,
                UiAction::OpenFaultMenu,
                &[hint(Bar::Clients, 4, "f", "faults")],
            ),
            Binding {
                key: Digits('1', '9'),
                context: FaultMenu,
                does: Does::Digit(fault_by_key),
                hints: &[hint(Bar::FaultMenu, 0, "1-9 a-i", "inject")],
            },
            Binding {
                key: Digits('a', 'i'),
                context: FaultMenu,
                does: Does::Digit(fault_by_key),
                hints: &[],
            },
        ],
    },
    Row {
        keys: "↑ ↓ ← →",
        does: "select a client in the grid (up and down in the table and failures)",
        bindings: &[
            hinted(
                Code(KeyCode::Up),
                Main,
                UiAction::SelectUp,
                &[hint(Bar::Failures, 1, "↑↓", "select failure")],
            ),
            bind(Code(KeyCode::Down), Main, UiAction::SelectDown),
            bind(Code(KeyCode::Left), Main, UiAction::SelectLeft),
            bind(Code(KeyCode::Right), Main, UiAction::SelectRight),
            hinted(
                Code(KeyCode::Up),
                Overlay,
                UiAction::ScrollUp,
                &[
                    hint(Bar::FailureDiff, 1, "↑↓ PgUp PgDn", "scroll"),
                    hint(Bar::FaultMenu, 2, "↑↓", "scroll"),
                    hint(Bar::OtherOverlay, 1, "↑↓ PgUp PgDn Home End", "scroll"),
                ],
            ),
            bind(Code(KeyCode::Down), Overlay, UiAction::ScrollDown),
        ],
    },
    Row {
        keys: "j k",
        does: "next / previous client or failure",
        bindings: &[
            bind(Char('j'), Main, UiAction::SelectNext),
            bind(Char('k'), Main, UiAction::SelectPrevious),
            bind(Char('j'), Overlay, UiAction::ScrollDown),
            bind(Char('k'), Overlay, UiAction::ScrollUp),
        ],
    },
    Row {
        keys: "tab",
        does: "switch between clients and failures (shift-tab too)",
        bindings: &[
            hinted(
                Code(KeyCode::Tab),
                Main,
                UiAction::SwitchFocus,
                &[
                    hint(Bar::Clients, 6, "tab", "failures"),
                    hint(Bar::Failures, 3, "tab", "clients"),
                ],
            ),
            bind(Code(KeyCode::BackTab), Main, UiAction::SwitchFocus),
        ],
    },
    Row {
        keys: "enter",
        does: "details: the client's whole stream, or a failure's full diff",
        bindings: &[
            hinted(
                Code(KeyCode::Enter),
                Main,
                UiAction::OpenDetails,
                &[
                    hint(Bar::Clients, 5, "⏎", "details"),
                    hint(Bar::Failures, 2, "⏎", "full diff"),
                ],
            ),
            bind(Code(KeyCode::Enter), Overlay, UiAction::CloseOverlay),
        ],
    },
    Row {
        keys: "n N",
        does: "in a failure's diff: the next (older) / previous failure",
        bindings: &[
            hinted(
                Char('n'),
                FailureDiff,
                UiAction::NextFailure,
                &[hint(Bar::FailureDiff, 2, "n N", "older/newer failure")],
            ),
            bind(Char('N'), FailureDiff, UiAction::PreviousFailure),
        ],
    },
    Row {
        keys: "PgUp PgDn",
        does: "page an overlay (space too), or with none open the log (esc follows it again)",
        bindings: &[
            bind(Code(KeyCode::PageUp), Overlay, UiAction::PageUp),
            bind(Code(KeyCode::PageDown), Overlay, UiAction::PageDown),
            bind(Char(' '), Overlay, UiAction::PageDown),
            bind(Code(KeyCode::PageUp), Main, UiAction::PageUp),
            bind(Code(KeyCode::PageDown), Main, UiAction::PageDown),
        ],
    },
    Row {
        keys: "Home End",
        does: "to the start / end of an overlay (g and G too)",
        bindings: &[
            bind(Code(KeyCode::Home), Overlay, UiAction::ScrollTop),
            bind(Code(KeyCode::End), Overlay, UiAction::ScrollBottom),
            bind(Char('g'), Overlay, UiAction::ScrollTop),
            bind(Char('G'), Overlay, UiAction::ScrollBottom),
        ],
    },
    Row {
        keys: "t",
        does: "clients as a compact table, or as panes",
        bindings: &[hinted(
            Char('t'),
            Main,
            UiAction::ToggleTable,
            &[hint(Bar::Clients, 7, "t", "table")],
        )],
    },
    Row {
        keys: "r",
        does: "show / collapse removed clients",
        bindings: &[hinted(
            Char('r'),
            Main,
            UiAction::ToggleRemoved,
            &[hint(Bar::Clients, 14, "r", "removed")],
        )],
    },
    Row {
        keys: "R",
        does: "shrink the selected failure: its state is kept, the command shown",
        bindings: &[bind(Char('R'), Main, UiAction::ShrinkSelected)],
    },
    Row {
        keys: "/ 0-9",
        does: "go to a client by number (enter selects, backspace corrects)",
        bindings: &[
            hinted(
                Char('/'),
                Main,
                UiAction::GoTo(None),
                &[hint(Bar::Clients, 13, "/", "go to")],
            ),
            Binding {
                key: Digits('0', '9'),
                context: Main,
                does: Does::Digit(|digit| Some(UiAction::GoTo(Some(digit)))),
                hints: &[],
            },
            Binding {
                key: Digits('0', '9'),
                context: GoTo,
                does: Does::Digit(|digit| Some(UiAction::GoToInput(digit))),
                hints: &[hint(Bar::GoTo, 0, "0-9", "client number")],
            },
            bind(Code(KeyCode::Backspace), GoTo, UiAction::GoToBackspace),
            hinted(
                Code(KeyCode::Enter),
                GoTo,
                UiAction::GoToConfirm,
                &[hint(Bar::GoTo, 1, "⏎", "go")],
            ),
        ],
    },
    Row {
        keys: "l",
        does: "log level: error, warn, info, debug, trace",
        bindings: &[bind(Char('l'), Main, UiAction::CycleLogLevel)],
    },
    Row {
        keys: "mouse",
        does: "click selects a client or failure; the wheel scrolls (shift-drag selects text)",
        bindings: &[Binding {
            key: Key::Mouse,
            context: Always,
            does: Does::Mouse,
            hints: &[],
        }],
    },
    Row {
        keys: "?",
        does: "this help",
        bindings: &[
            bind(Char('?'), Main, UiAction::ToggleHelp),
            bind(Char('?'), Overlay, UiAction::ToggleHelp),
        ],
    },
    Row {
        keys: "esc",
        does: "close an overlay",
        bindings: &[
            hinted(
                Code(KeyCode::Esc),
                GoTo,
                UiAction::CloseOverlay,
                &[hint(Bar::GoTo, 2, "esc", "cancel")],
            ),
            hinted(
                Code(KeyCode::Esc),
                Overlay,
                UiAction::CloseOverlay,
                &[
                    hint(Bar::FailureDiff, 0, "esc", "close"),
                    hint(Bar::FaultMenu, 1, "esc", "close"),
                    hint(Bar::OtherOverlay, 0, "esc", "close"),
                ],
            ),
            bind(Code(KeyCode::Esc), Main, UiAction::CloseOverlay),
        ],
    },
    Row {
        keys: "q",
        does: "quit: finish actions in flight, save, stop the server",
        bindings: &[
            hinted(
                Char('q'),
                Main,
                UiAction::Quit,
                &[
                    hint(Bar::Clients, 0, "q", "quit"),
                    hint(Bar::Failures, 0, "q", "quit"),
                ],
            ),
            hinted(
                Char('q'),
                Overlay,
                UiAction::Quit,
                &[
                    hint(Bar::FailureDiff, 3, "q", "quit"),
                    hint(Bar::FaultMenu, 3, "q", "quit"),
                    hint(Bar::OtherOverlay, 2, "q", "quit"),
                ],
            ),
        ],
    },
    Row {
        keys: "ctrl-c",
        does: "quit, as q",
        bindings: &[bind(Ctrl('c'), Always, UiAction::Quit)],
    },
];

/// What the console is showing, as far as keys care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Where {
    pub goto: bool,
    /// An overlay is open; and which kind, when it takes keys of its own.
    pub overlay: bool,
    pub fault_menu: bool,
    pub failure_diff: bool,
}

impl Where {
    /// The contexts whose bindings apply, in the order they take keys.
    fn contexts(self) -> Vec<Context> {
        let mut contexts = vec![Always];
        if self.goto {
            // Typing a number: nothing else takes keys.
            contexts.push(GoTo);
            return contexts;
        }
        if self.fault_menu {
            contexts.push(FaultMenu);
        }
        if self.failure_diff {
            contexts.push(FailureDiff);
        }
        contexts.push(if self.overlay { Overlay } else { Main });
        contexts
    }
}

/// What `key` does in `place`, by the key map.
pub fn action_for(key: &KeyEvent, place: Where) -> Option<UiAction> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    for context in place.contexts() {
        for binding in KEYMAP
            .iter()
            .flat_map(|row| row.bindings)
            .filter(|b| b.context == context)
        {
            let Some(digit) = binding.key.matches(key) else {
                continue;
            };
            match binding.does {
                Does::Act(action) => return Some(action),
                Does::Digit(make) => return make(digit),
                Does::Mouse => {}
            }
        }
    }
    None
}

/// The hints of one place of the status bar, in their order.
pub fn hints(bar: Bar) -> Vec<(&'static str, &'static str)> {
    let mut hints: Vec<&Hint> = KEYMAP
        .iter()
        .flat_map(|row| row.bindings)
        .flat_map(|b| b.hints)
        .filter(|h| h.bar == bar)
        .collect();
    hints.sort_by_key(|h| h.place);
    hints.iter().map(|h| (h.key, h.text)).collect()
}

/// README's key table, as the help shows it.
pub fn markdown_table() -> String {
    let mut table = String::from("| key | does |\n|---|---|\n");
    for row in KEYMAP {
        table.push_str(&format!("| `{}` | {} |\n", row.keys, row.does()));
    }
    table
}

#[cfg(test)]
mod tests;
