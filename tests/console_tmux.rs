//! The console for real: the snapstorm binary in a 140×45 tmux pane, keys
//! typed with `send-keys`, the screen read with `capture-pane`.

mod common;

use std::time::Duration;

use common::tmux::Tmux;

/// Starts the console for 2 clients in a fresh tmux pane, from a shell.
fn start_console(state: &std::path::Path, seed: u32) -> Tmux {
    start_console_with(state, &format!("--clients 2 --seed {seed}"))
}

/// Starts the console with `args` in a fresh tmux pane, from a shell.
fn start_console_with(state: &std::path::Path, args: &str) -> Tmux {
    let tmux = Tmux::new();
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let command = format!(
        "{} {args} --state-dir {}; echo EXIT=$?",
        env!("CARGO_BIN_EXE_snapstorm"),
        state.join("state").display()
    );
    tmux.send(&[&command, "Enter"]);
    tmux
}

/// With `-v` rustic's own `log` records reach the log pane as sentences
/// of their own (its source places left out); reading them must not hang
/// the console (jiff logs while it reads the time zones the pane stamps
/// lines with).
#[test]
fn verbose_shows_rustics_own_records_in_the_log() {
    let state = tempfile::tempdir().unwrap();
    let tmux = start_console_with(state.path(), "-v --clients 1 --seed 3");
    let minutes = Duration::from_secs(120);
    let screen = tmux.wait_for("rustic's own record", minutes, |s| {
        s.contains("starting to backup")
    });
    assert!(!screen.contains("log.file"), "{screen}");
    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit", minutes, exited_to_prompt);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
}

/// A long snapshot of the real binary shows how far it got in its pane
/// (its total against the data written: `console_app`'s test of the same).
#[test]
fn a_long_snapshot_shows_its_share_done() {
    let state = tempfile::tempdir().unwrap();
    let scenario = state.path().join("long.toml");
    std::fs::write(
        &scenario,
        "description = \"three files of 96 MiB\"\nsequence = [\"write-random-files\", \"snapshot-root\"]\n\
         [options]\nmin-num-files-per-write = 3\nmax-num-files-per-write = 3\n\
         min-file-size = \"96MiB\"\nmax-file-size = \"96MiB\"\nmax-dir-depth = 1\n",
    )
    .unwrap();
    let tmux = start_console_with(
        state.path(),
        &format!("--clients 1 --seed 3 --scenario {}", scenario.display()),
    );
    let minutes = Duration::from_secs(120);
    tmux.wait_for("a snapshot part way", minutes, |s| {
        s.lines().any(|line| {
            line.contains("⟳ snapshot-root")
                && line.contains("iB/")
                && line.split_whitespace().any(|w| {
                    w.strip_suffix('%')
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| (1..100).contains(&p))
                })
        })
    });
    tmux.send(&["q"]);
    tmux.wait_for("exit", minutes, exited_to_prompt);
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
        s.contains("expected: corrupt-pack@")
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

/// At 80×24 the console shows its clients as a table, the help scrolls to
/// its last line, and quitting writes the report where `--report` says and
/// into the state dir.
#[test]
fn at_80x24_a_table_scrolling_help_and_the_report_on_quit() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::sized_in(80, 24, None);
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let report = dir.path().join("console-report.json");
    let state = dir.path().join("state");
    let command = format!(
        "{} --clients 4 --seed 8 --no-bell --state-dir {} --report {}; echo EXIT=$?",
        env!("CARGO_BIN_EXE_snapstorm"),
        state.display(),
        report.display()
    );
    tmux.send(&[&command, "Enter"]);
    let minutes = Duration::from_secs(120);
    // Four panes do not fit 80×24: one row per client instead.
    let screen = tmux.wait_for("the client table", minutes, |s| {
        s.contains("client     state") && s.contains("clients 4 · failures")
    });
    for client in 1..=4 {
        assert!(screen.contains(&format!("client-{client} ")), "{screen}");
    }
    assert!(screen.contains("?  more"), "{screen}");
    // t switches to panes (they scroll by rows) and back.
    tmux.send(&["t"]);
    tmux.wait_for("panes", minutes, |s| s.contains("(↑↓) · t: table"));
    tmux.send(&["t"]);
    tmux.wait_for("the table again", minutes, |s| {
        s.contains("client     state")
    });
    // The help does not fit: End shows its last line.
    tmux.send(&["?"]);
    tmux.wait_for("help", minutes, |s| s.contains("help — esc closes"));
    tmux.send(&["End"]);
    tmux.wait_for("the end of the help", minutes, |s| {
        s.contains("r shows them)") && s.contains("· end ·")
    });
    tmux.send(&["Home"]);
    tmux.wait_for("the start of the help", minutes, |s| s.contains("lines 1–"));
    tmux.send(&["Escape"]);
    tmux.wait_for("help closed", minutes, |s| !s.contains("help — esc closes"));
    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit", minutes, exited_to_prompt);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("--report written")).unwrap();
    assert_eq!(written["clients"].as_array().unwrap().len(), 4);
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("report.json")).expect("report.json in the state dir"),
    )
    .unwrap();
    assert_eq!(kept, written);
    let page = std::fs::read_to_string(state.join("report.html")).expect("report.html beside it");
    assert!(page.contains("client-4</text>"), "a lane per client");
    let joined: String = screen.lines().map(str::trim_end).collect();
    assert!(joined.contains("report written to"), "{screen}");
}

/// Without --state-dir, --no-keep deletes the temporary state dir on exit
/// and says how big it was; with --state-dir it is refused before anything runs.
#[test]
fn no_keep_deletes_the_temporary_state_dir_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let tmux = Tmux::sized_in(100, 30, None);
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let command = format!(
        "TMPDIR={} {} --clients 1 --seed 2 --no-keep --no-bell; echo EXIT=$?",
        tmp.path().display(),
        env!("CARGO_BIN_EXE_snapstorm")
    );
    tmux.send(&[&command, "Enter"]);
    let minutes = Duration::from_secs(120);
    tmux.wait_for("a running client", minutes, |s| {
        s.contains("clients 1 · failures")
    });
    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit", minutes, exited_to_prompt);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    let joined: String = screen.lines().map(str::trim_end).collect();
    assert!(
        joined.contains("deleted the temporary state dir"),
        "{screen}"
    );
    assert!(
        joined.contains("), as --no-keep asked"),
        "the size:\n{screen}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(["--no-keep", "--state-dir"])
        .arg(tmp.path().join("kept"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("--no-keep deletes only a temporary state dir"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!tmp.path().join("kept").exists(), "nothing written");
}

/// kopia in the console: four kopia clients snapshot through kopia's own
/// server, `a` adds a fifth (a new kopia user, connected), `x` removes the
/// selected one (its kopia user deleted), the fault menu revokes one and
/// disturbs the network at the proxy, and the run ends clean.
#[test]
fn the_console_runs_kopia_clients_adds_removes_and_injects_faults() {
    let kopia = common::require_program("kopia");
    let state = tempfile::tempdir().unwrap();
    let tmux = Tmux::new();
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let command = format!(
        "KOPIA_EXE={} {} --backend kopia --clients 4 --seed 3 --state-dir {}; echo EXIT=$?",
        kopia.display(),
        env!("CARGO_BIN_EXE_snapstorm"),
        state.path().join("state").display()
    );
    tmux.send(&[&command, "Enter"]);

    let minutes = Duration::from_secs(180);
    tmux.wait_for("four kopia clients with snapshots", minutes, |s| {
        s.contains("clients 4")
            && live_snapshots(s, 0).is_some_and(|n| n >= 1)
            && live_snapshots(s, 1).is_some_and(|n| n >= 1)
    });
    tmux.send(&["a"]);
    tmux.wait_for("clients 5", minutes, |s| s.contains("clients 5"));
    tmux.send(&["x"]);
    let screen = tmux.wait_for("clients 4 again", minutes, |s| s.contains("clients 4"));
    assert!(
        screen.contains(
            "kopia server 127.0.0.1, a proxy port per client → proxy → https://127.0.0.1:"
        ),
        "the header names the proxy and kopia's server behind it:\n{screen}"
    );
    // The fault menu: revoke the selected client, then a network fault.
    tmux.send(&["f"]);
    tmux.wait_for("the fault menu", minutes, |s| s.contains("revoke-client"));
    tmux.send(&["6"]);
    tmux.wait_for("the revoke noted", minutes, |s| {
        s.contains("Injected revoke-client@")
    });
    tmux.send(&["f"]);
    tmux.wait_for("the fault menu", minutes, |s| s.contains("network"));
    tmux.send(&["5"]);
    tmux.wait_for("the network fault in effect", minutes, |s| {
        s.contains("⚡ network")
    });

    tmux.send(&["q"]);
    let screen = tmux.wait_for("exit code and prompt", minutes, exited_to_prompt);
    let report = common::read_json(&state.path().join("state/report.json"));
    assert_eq!(report["backend"], "kopia", "{report:#}");
    // A kopia run whose faults explain its errors exits 0 (1 only for
    // kopia's own manifest race, which adding a client can meet).
    let code = if screen.lines().any(|l| l == "EXIT=0") {
        0
    } else if screen.lines().any(|l| l == "EXIT=1") {
        1
    } else {
        panic!("no exit code:\n{screen}")
    };
    common::assert_nothing_unexpected_but_kopia_s_race(code, &screen, &report);
    let kinds: Vec<_> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.len(), 5, "four, then a fifth: {report:#}");
    assert!(kinds.iter().all(|k| k == "kopia"), "{kinds:?}");
    let faults: Vec<_> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["injected"] == true))
        .collect();
    assert_eq!(
        faults,
        [("revoke-client", true), ("network", true)],
        "{report:#}"
    );
    assert!(
        report["totals"]["snapshots_created"].as_u64().unwrap() >= 2,
        "{report:#}"
    );
}
