//! The console for real: the snapstorm binary in a 140×45 tmux pane, keys
//! typed with `send-keys`, the screen read with `capture-pane`.

mod common;

use std::time::Duration;

use common::tmux::Tmux;

/// Starts the console for 2 clients in a fresh tmux pane, from a shell.
fn start_console(state: &std::path::Path, seed: u32) -> Tmux {
    let tmux = Tmux::new();
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let command = format!(
        "{} --clients 2 --seed {seed} --state-dir {}; echo EXIT=$?",
        env!("CARGO_BIN_EXE_snapstorm"),
        state.join("state").display()
    );
    tmux.send(&[&command, "Enter"]);
    tmux
}

#[test]
fn fault_menu_injects_and_the_screen_marks_what_it_explains() {
    let state = tempfile::tempdir().unwrap();
    let tmux = start_console(state.path(), 5);
    let minutes = Duration::from_secs(120);
    tmux.wait_for("snapshots", minutes, |s| {
        live_snapshots(s, 0).is_some_and(|n| n >= 1) && live_snapshots(s, 1).is_some_and(|n| n >= 1)
    });
    tmux.send(&["f"]);
    tmux.wait_for("the fault menu", minutes, |s| {
        s.contains("inject a fault now") && s.contains("gc-storm")
    });
    tmux.send(&["1"]);
    tmux.wait_for("the fault counted", minutes, |s| s.contains("faults 1"));
    // A full check now finds the flipped bytes; the failure is shown as expected.
    tmux.send(&["c"]);
    tmux.wait_for("an expected failure", minutes, |s| {
        s.contains("⚑ expected: corrupt-pack@")
    });
    let screen = tmux.screen();
    assert!(screen.contains("(0 unexpected)"), "{screen}");
    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit", minutes, exited_to_prompt);
    assert!(
        screen.lines().any(|l| l == "EXIT=0"),
        "only expected failures: exit 0\n{screen}"
    );
}

/// The console's process printed its exit code and the shell prompt is back.
fn exited_to_prompt(screen: &str) -> bool {
    let mut lines = screen.lines().skip_while(|l| !l.starts_with("EXIT="));
    lines.next().is_some() && lines.any(|l| l.starts_with("PROMPT$"))
}

/// `live N` of a client's pane, read from the screen.
fn live_snapshots(screen: &str, pane_column: usize) -> Option<u32> {
    screen.lines().find_map(|line| {
        let panes: Vec<&str> = line.split('│').filter(|p| p.starts_with("live ")).collect();
        panes
            .get(pane_column)?
            .strip_prefix("live ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn console_in_tmux_adds_a_client_runs_gc_pauses_and_quits() {
    let state = tempfile::tempdir().unwrap();
    let tmux = start_console(state.path(), 11);

    let minutes = Duration::from_secs(120);
    tmux.wait_for("both clients with completed snapshots", minutes, |s| {
        s.contains("clients 2")
            && live_snapshots(s, 0).is_some_and(|n| n >= 1)
            && live_snapshots(s, 1).is_some_and(|n| n >= 1)
    });

    tmux.send(&["a"]);
    tmux.wait_for("clients 3", minutes, |s| s.contains("clients 3"));

    tmux.send(&["g"]);
    tmux.wait_for("gc 1", minutes, |s| s.contains("gc 1"));

    tmux.send(&["Space"]);
    tmux.wait_for("PAUSED", minutes, |s| s.contains("PAUSED"));

    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit code and prompt", minutes, exited_to_prompt);
    assert!(
        screen.lines().any(|l| l == "EXIT=0"),
        "console exits 0 after a clean run:\n{screen}"
    );
    let after = screen.split("\nEXIT=0").nth(1).unwrap();
    assert!(
        after.contains("PROMPT$"),
        "the shell prompt is back:\n{screen}"
    );
    assert!(
        screen.contains("no verification failures"),
        "summary printed after the console:\n{screen}"
    );
}
