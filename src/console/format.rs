//! Small text formats shared by the screen regions.

use std::time::Duration;

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

/// The first eight characters of a snapshot id, as restic shows them.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
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
        assert_eq!(short_id("0123456789abcdef"), "01234567");
    }
}
