//! Small text formats shared by the screen regions.

use std::time::Duration;

use crate::engine::progress::{ProgressView, Stage};
use crate::engine::stats::Outcome;

/// `123ms`, `4.5s`, `2m03s`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// `01:02:03`.
pub fn clock(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// The mark an outcome gets in a stream; `expected`: an injected fault explains it.
pub fn outcome_mark(outcome: Outcome, expected: bool) -> &'static str {
    match (outcome, expected) {
        (Outcome::Ok, _) => "✓",
        (Outcome::NoOp, _) => "–",
        (Outcome::Error, false) => "✗",
        (Outcome::Error, true) => "⚡",
        (Outcome::Failure, false) => "✗✗",
        (Outcome::Failure, true) => "⚑",
    }
}

/// `text` padded with spaces to `width` terminal cells: wide glyphs such as
/// `⚡` take two cells, so padding by characters would shift the columns after them.
pub fn pad(text: &str, width: usize) -> String {
    let cells = ratatui::text::Span::raw(text).width();
    format!("{text}{}", " ".repeat(width.saturating_sub(cells)))
}

/// `text` cut to `width` cells, with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut cells = 0;
    let total = ratatui::text::Span::raw(text).width();
    if total <= width {
        return text.to_owned();
    }
    for ch in text.chars() {
        let w = ratatui::text::Span::raw(ch.to_string()).width();
        if cells + w + 1 > width {
            break;
        }
        cells += w;
        out.push(ch);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// `1m05s`, `42s`: a time left, to the second.
pub fn seconds(duration: Duration) -> String {
    let s = duration.as_secs_f64().ceil() as u64;
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// How far a snapshot or restore has got, most telling first (the pane
/// cuts the end): `37% 45.0 MiB/120.0 MiB 3/4 files`, `reading source`;
/// only what it covers (`1.1 GiB in 12 files`) when the backend cannot
/// tell how far it got. Empty when nothing is known.
pub fn progress(view: &ProgressView) -> String {
    match view.stage {
        Stage::Reading => return "reading source".to_owned(),
        Stage::Verifying => return "comparing".to_owned(),
        Stage::Transfer => {}
    }
    if !view.reported {
        return match (view.bytes_total, view.files_total) {
            (Some(bytes_total), Some(1)) => format!("{} in 1 file", bytes(bytes_total)),
            (Some(bytes_total), Some(files)) if files > 0 => {
                format!("{} in {files} files", bytes(bytes_total))
            }
            _ => String::new(),
        };
    }
    let mut parts = Vec::new();
    match (view.percent(), view.bytes_total) {
        (Some(percent), Some(total)) => {
            parts.push(format!("{percent}%"));
            parts.push(format!("{}/{}", bytes(view.bytes_done), bytes(total)));
        }
        _ if view.bytes_done > 0 => parts.push(bytes(view.bytes_done)),
        _ => {}
    }
    if let Some(done) = view.files_done {
        match view.files_total {
            Some(total) => parts.push(format!("{done}/{total} files")),
            None => parts.push(format!("{done} files")),
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(millis(5), "5ms");
        assert_eq!(millis(1234), "1.2s");
        assert_eq!(millis(123_000), "2m03s");
        assert_eq!(clock(Duration::from_secs(3723)), "01:02:03");
        assert_eq!(
            crate::engine::damage::short_id("0123456789abcdef"),
            "01234567"
        );
        assert_eq!(pad("⚡", 3), "⚡ ", "⚡ takes two cells");
        assert_eq!(pad("✓", 3), "✓  ");
        assert_eq!(fit("restore-random-snapshot", 8), "restore…");
        assert_eq!(fit("short", 8), "short");
        assert_eq!(seconds(Duration::from_millis(4200)), "5s");
    }

    #[test]
    fn progress_says_the_share_first() {
        let view = ProgressView {
            stage: Stage::Transfer,
            files_done: None,
            files_total: Some(4),
            bytes_done: 45 << 20,
            bytes_total: Some(120 << 20),
            reported: true,
        };
        assert_eq!(progress(&view), "37% 45.0 MiB/120.0 MiB");
        let restic = ProgressView {
            files_done: Some(3),
            ..view
        };
        assert_eq!(progress(&restic), "37% 45.0 MiB/120.0 MiB 3/4 files");
        let no_total = ProgressView {
            bytes_total: None,
            ..view
        };
        assert_eq!(progress(&no_total), "45.0 MiB");
        let empty_source = ProgressView {
            bytes_done: 0,
            bytes_total: Some(0),
            ..view
        };
        assert_eq!(progress(&empty_source), "");
        let reading = ProgressView {
            stage: Stage::Reading,
            ..view
        };
        assert_eq!(progress(&reading), "reading source");
        let silent_backend = ProgressView {
            bytes_done: 0,
            reported: false,
            ..view
        };
        assert_eq!(progress(&silent_backend), "120.0 MiB in 4 files");
        let one_file = ProgressView {
            files_total: Some(1),
            ..silent_backend
        };
        assert_eq!(progress(&one_file), "120.0 MiB in 1 file");
    }
}
