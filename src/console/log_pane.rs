//! The log: tracing events (snapstorm's and the backend's), filterable by
//! level, paged with PgUp/PgDn. Before a line reaches the pane it is made
//! readable: repeated lines fold into one with a count (a GC storm's panics
//! no longer flood it), paths into the cargo registry or the toolchain are
//! trimmed, and fields read as part of the sentence.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerWidget, TuiWidgetEvent, TuiWidgetState};

use super::app::App;

/// How long a repeated line waits before its count is written anyway.
const FOLD_FLUSH: Duration = Duration::from_secs(3);

/// The log pane's own state: which page is shown (tui-logger's page mode).
pub struct LogView {
    state: TuiWidgetState,
    /// Scrolled back: new lines do not move the page.
    pub paged: bool,
}

impl std::fmt::Debug for LogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogView")
            .field("paged", &self.paged)
            .finish_non_exhaustive()
    }
}

impl LogView {
    pub fn new(level: tui_logger::LevelFilter) -> Self {
        LogView {
            state: TuiWidgetState::new().set_default_display_level(level),
            paged: false,
        }
    }

    /// A page back (older lines).
    pub fn page_up(&mut self) {
        self.state.transition(TuiWidgetEvent::PrevPageKey);
        self.paged = true;
    }

    /// A page forward; past the newest line it follows the log again.
    pub fn page_down(&mut self) {
        self.state.transition(TuiWidgetEvent::NextPageKey);
    }

    /// Back to the newest lines, following as they come.
    pub fn follow(&mut self) {
        self.state.transition(TuiWidgetEvent::EscapeKey);
        self.paged = false;
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let paging = if app.log.paged {
        " · paged: PgUp PgDn, esc follows"
    } else {
        " · PgUp: older"
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(format!(
            " log ≥ {} (l: level){paging} ",
            app.log_level.as_str().to_lowercase()
        ));
    let widget = TuiLoggerWidget::default()
        .block(block)
        .state(&app.log.state)
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".to_owned()))
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .style_error(theme.failure())
        .style_warn(theme.error())
        .style_info(theme.ok())
        .style_debug(theme.dim())
        .style_trace(theme.dim());
    frame.render_widget(widget, area);
}

/// `text` with paths into the cargo registry and the toolchain cut to the
/// part that names the crate and file.
pub fn trim_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            out.push(' ');
        }
        let trimmed = if let Some(at) = word.find("/registry/src/") {
            // …/registry/src/index.crates.io-HASH/crate-1.2.3/src/file.rs → crate-1.2.3/src/file.rs
            let rest = &word[at + "/registry/src/".len()..];
            rest.split_once('/').map_or(rest, |(_, path)| path)
        } else if let Some(at) = word.find("/rustc/") {
            let rest = &word[at + "/rustc/".len()..];
            rest.split_once('/').map_or(rest, |(_, path)| path)
        } else {
            word
        };
        out.push_str(trimmed);
    }
    out
}

/// Folds repeated lines: the first is written, the repeats are counted and
/// written as one line when a different line comes or a few seconds pass.
#[derive(Debug, Default)]
pub struct Folder {
    last: Option<(log::Level, String, String)>,
    /// `last` with its numbers blanked: lines that differ only in them fold.
    key: String,
    repeats: u64,
    since: Option<Instant>,
}

/// A line for the pane: level, target, text.
pub type LogLine = (log::Level, String, String);

impl Folder {
    /// `text` with each number or hex id (a run of hex digits holding a
    /// digit) as one `#`: `:9` and `:10` fold, and so do two snapshot ids.
    fn key_of(text: &str) -> String {
        let mut key = String::with_capacity(text.len());
        let mut run = String::new();
        let end_run = |key: &mut String, run: &mut String| {
            if run.chars().any(|c| c.is_ascii_digit()) {
                key.push('#');
            } else {
                key.push_str(run);
            }
            run.clear();
        };
        for c in text.chars() {
            if c.is_ascii_hexdigit() {
                run.push(c);
            } else {
                end_run(&mut key, &mut run);
                key.push(c);
            }
        }
        end_run(&mut key, &mut run);
        key
    }

    fn repeated_line(&mut self) -> Option<LogLine> {
        let (level, target, _) = self.last.as_ref()?;
        if self.repeats == 0 {
            return None;
        }
        let line = (
            *level,
            target.clone(),
            format!(
                "The line above repeated {} more time{}.",
                self.repeats,
                if self.repeats == 1 { "" } else { "s" }
            ),
        );
        self.repeats = 0;
        Some(line)
    }

    /// The lines to write for one more line of the log.
    pub fn fold(
        &mut self,
        level: log::Level,
        target: &str,
        text: &str,
        now: Instant,
    ) -> Vec<LogLine> {
        let key = Folder::key_of(text);
        if self.last.is_some() && key == self.key {
            self.repeats += 1;
            self.since.get_or_insert(now);
            return Vec::new();
        }
        let mut out: Vec<LogLine> = self.repeated_line().into_iter().collect();
        out.push((level, target.to_owned(), text.to_owned()));
        self.last = Some((level, target.to_owned(), text.to_owned()));
        self.key = key;
        self.since = None;
        out
    }

    /// The count of repeats that have waited long enough.
    pub fn flush(&mut self, now: Instant) -> Option<LogLine> {
        let since = self.since?;
        if now.saturating_duration_since(since) < FOLD_FLUSH {
            return None;
        }
        self.since = None;
        self.repeated_line()
    }
}

static FOLDER: Mutex<Folder> = Mutex::new(Folder {
    last: None,
    key: String::new(),
    repeats: 0,
    since: None,
});

/// Hands lines to tui-logger (its `log` logger is not installed with tracing support).
fn write(lines: impl IntoIterator<Item = LogLine>) {
    let drain = tui_logger::Drain::new();
    for (level, target, text) in lines {
        drain.log(
            &log::Record::builder()
                .level(level)
                .target(&target)
                .args(format_args!("{text}"))
                .build(),
        );
    }
}

/// Writes the counts of repeated lines that have waited long enough (once a frame).
pub fn flush_folded() {
    let line = FOLDER
        .lock()
        .map(|mut f| f.flush(Instant::now()))
        .ok()
        .flatten();
    write(line);
}

/// The message of a tracing event, its fields after it as `name value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    /// A `log` record's own target (its event's is `log`).
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            // Where in rustic's source a `log` record was made: noise here.
            "log.module_path" | "log.file" | "log.line" => {}
            name => {
                let _ = write!(self.rest, "; {name} {value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_owned()),
            "log.module_path" | "log.file" => {}
            name => {
                let _ = write!(self.rest, "; {name} {value}");
            }
        }
    }
}

/// Sends tracing events (and the `log` records they carry) to the log
/// pane, folded and trimmed.
pub struct PaneLayer;

/// Records this pane cannot take: tui-logger stamps each line with jiff's
/// clock, and jiff logs while it reads the time zones for that clock, so
/// taking jiff's own records would wait on itself.
fn never_shown(target: &str) -> bool {
    target == "jiff" || target.starts_with("jiff::")
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PaneLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        if never_shown(target) {
            return;
        }
        let text = trim_paths(&format!("{}{}", fields.message, fields.rest));
        let level = match *meta.level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let lines = FOLDER
            .lock()
            .map(|mut f| f.fold(level, target, &text, Instant::now()))
            .unwrap_or_default();
        write(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_fold_into_a_count() {
        let mut folder = Folder::default();
        let t0 = Instant::now();
        let panic = "A backend thread panicked: SendError { .. } at crossbeam-channel-0.5.15/src/channel.rs:9";
        assert_eq!(folder.fold(log::Level::Error, "x", panic, t0).len(), 1);
        for n in 0..40 {
            let again = panic.replace(":9", &format!(":{n}"));
            assert!(folder.fold(log::Level::Error, "x", &again, t0).is_empty());
        }
        assert_eq!(folder.flush(t0 + Duration::from_secs(1)), None, "not yet");
        let next = folder.fold(log::Level::Info, "x", "GC finished.", t0);
        assert_eq!(
            next.iter().map(|l| l.2.as_str()).collect::<Vec<_>>(),
            ["The line above repeated 40 more times.", "GC finished."]
        );
        // Repeats that stop are counted after a while, without a new line.
        folder.fold(log::Level::Info, "x", "GC finished.", t0);
        let flushed = folder.flush(t0 + FOLD_FLUSH).unwrap();
        assert_eq!(flushed.2, "The line above repeated 1 more time.");
        assert_eq!(folder.flush(t0 + FOLD_FLUSH * 2), None);
    }

    #[test]
    fn lines_that_differ_in_ids_fold_and_words_stay() {
        // rustic_backend's retries during a network fault, as the pane got them.
        let retry = |id: &str, port: u16| {
            format!(
                "Error error sending request for url (http://127.0.0.1:{port}/repo/snapshots/{id}) at 1s, retrying"
            )
        };
        let one = retry(
            "845830f7e37a1fb48a5c0f4c277797fc21f8f9510244b4863aa76bd6767c9d86",
            33469,
        );
        let other = retry(
            "05925d04507e680db8f374ff4c59822d6f6353b11228c0d2075f44543630f71e",
            4100,
        );
        assert_eq!(Folder::key_of(&one), Folder::key_of(&other));
        assert_ne!(
            Folder::key_of("Error HTTP status server error"),
            Folder::key_of(&one),
        );
        // Words of hex letters only are words.
        assert_eq!(Folder::key_of("added a bad cafe"), "added a bad cafe");
        assert_eq!(Folder::key_of("pack ab12 at :10"), "pack # at :#");
    }

    #[test]
    fn registry_and_toolchain_paths_are_trimmed() {
        assert_eq!(
            trim_paths(
                "panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rustic_core-0.8.0/src/repository.rs:12:5: oops"
            ),
            "panicked at rustic_core-0.8.0/src/repository.rs:12:5: oops"
        );
        assert_eq!(
            trim_paths(
                "at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops.rs:1"
            ),
            "at library/core/src/ops.rs:1"
        );
        assert_eq!(trim_paths("state /tmp/x/state"), "state /tmp/x/state");
    }
}
