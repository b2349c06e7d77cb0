//! Backend errors arrive with backtraces, context blocks and debug dumps;
//! the console, the trace and one-line summaries need the gist.

/// Longest one-line summary kept.
const MAX_BRIEF: usize = 300;

/// `text` without a trailing backtrace (rustic's `Backtrace:` section, or a
/// debug-printed `backtrace: Some(…)` field).
pub fn without_backtrace(text: &str) -> &str {
    let cut = [text.find("\nBacktrace:"), text.find(", backtrace: Some(")]
        .into_iter()
        .flatten()
        .min();
    match cut {
        Some(at) => text[..at].trim_end(),
        None => text.trim_end(),
    }
}

/// The gist of an error in one line of at most 300 characters.
pub fn brief(text: &str) -> String {
    let text = without_backtrace(text);
    let gist = if let Some(start) = text.find("guidance: \"") {
        // A debug-printed RusticError: keep what led to it and its guidance.
        let prefix = text[..start].split("RusticError").next().unwrap_or("");
        let rest = &text[start + "guidance: \"".len()..];
        let guidance = rest.split('"').next().unwrap_or(rest);
        format!("{} {guidance}", prefix.trim_end_matches(['{', ' ']))
    } else if let Some((head, tail)) = text.split_once("\nMessage:\n") {
        let first = head.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let message = tail.lines().next().unwrap_or("");
        format!("{} — {}", first.trim(), message.trim())
    } else {
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    };
    let gist = gist.split_whitespace().collect::<Vec<_>>().join(" ");
    if gist.chars().count() > MAX_BRIEF {
        let mut cut: String = gist.chars().take(MAX_BRIEF - 1).collect();
        cut.push('…');
        cut
    } else {
        gist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_printed_rustic_errors_keep_their_guidance() {
        let text = "called `Result::unwrap()` on an `Err` value: RusticError { kind: Cryptography, guidance: \"Data decryption failed, MAC check failed.\", docs_url: None, backtrace: Some(Backtrace [{ fn: \"x\" }]) }";
        assert_eq!(
            brief(text),
            "called `Result::unwrap()` on an `Err` value: Data decryption failed, MAC check failed."
        );
    }

    #[test]
    fn display_logged_errors_keep_their_message() {
        let text = "Error: error checking pack c9b63a47 : `rustic_core` experienced an error.\n\nMessage:\nData decryption failed, MAC check failed.\n\nContext:\n- nonce: [1]\n\nBacktrace:\n   0: x";
        assert_eq!(
            brief(text),
            "Error: error checking pack c9b63a47 : `rustic_core` experienced an error. — Data decryption failed, MAC check failed."
        );
        assert!(!without_backtrace(text).contains("0: x"));
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(brief(&long).chars().count(), 300);
        assert_eq!(brief("plain error\nsecond line"), "plain error");
    }
}
