//! Every command the README and docs/ show in a `sh` block, run as a
//! newcomer would type it: from a fresh working directory, with the
//! documents' relative paths, expecting the exit code its `# exit N`
//! comment names (0 without one). And every relative link and anchor in
//! them resolves.
//! `cargo run --release [-- ARGS]` is the snapstorm binary cargo built for
//! the tests; the console's command runs in a tmux pane.

mod common;

use std::path::Path;
use std::time::Duration;

use common::tmux::Tmux;

/// The README's test command: this suite itself, so it is not run here.
const TEST_COMMAND: &str = "./scripts/test";

/// One command of the README, with the exit code it promises.
#[derive(Debug, Clone)]
struct ReadmeCommand {
    line: String,
    exit: i32,
}

/// Blocks run as a whole elsewhere: the `serve` example by
/// `tests/server_restic.rs`, the GC comparison by `tests/contract.rs`, the
/// shrink examples (one state dir through several commands) by
/// `tests/reproduce.rs`; the gc-storm example, whose exit depends on a race,
/// by [`the_gc_storm_example_gives_nothing_back_wrong`].
const WHOLE_BLOCKS: [&str; 6] = [
    "serve-example",
    "gc-comparison",
    "shrink-example",
    "shrink-paused",
    "shrink-gc",
    "gc-storm-example",
];

/// The commands of every ```sh block of README.md and docs/, but those of
/// [`WHOLE_BLOCKS`].
fn readme_commands() -> Vec<ReadmeCommand> {
    let mut all = common::documents()
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n");
    for name in WHOLE_BLOCKS {
        let (before, rest) = all
            .split_once(&format!("<!-- {name} -->"))
            .unwrap_or_else(|| panic!("no document marks {name}"));
        let after = rest.split_once(&format!("<!-- /{name} -->")).unwrap().1;
        all = format!("{before}{after}");
    }
    let mut commands = Vec::new();
    for block in all.split("```sh\n").skip(1) {
        let block = block.split("\n```").next().unwrap();
        for line in block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (line, exit) = match line.split_once("# exit ") {
                Some((command, code)) => (command.trim(), code.trim().parse().unwrap()),
                None => (line, 0),
            };
            commands.push(ReadmeCommand {
                line: line.to_owned(),
                exit,
            });
        }
    }
    commands
}

/// The command as the shell runs it here: `cargo run --release --` is the binary.
fn as_run(line: &str) -> String {
    match line.strip_prefix("cargo run --release -- ") {
        Some(args) => format!("snapstorm {args}"),
        None => line.to_owned(),
    }
}

/// Runs a headless command in its own fresh directory; checks its exit
/// code and that a `--report` it names was written there.
fn run_headless(root: &Path, n: usize, command: &ReadmeCommand, path: &str) -> Result<(), String> {
    let cwd = root.join(format!("fresh-{n}"));
    std::fs::create_dir(&cwd).unwrap();
    let shell = as_run(&command.line);
    let out = std::process::Command::new("bash")
        .args(["-c", &shell])
        .current_dir(&cwd)
        .env("PATH", path)
        // A run without --state-dir keeps its state in a temp dir: this test's.
        .env("TMPDIR", &cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let said = format!(
        "`{}` exited {code}, the README says {}\n{}\n{}",
        command.line,
        command.exit,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if code != command.exit {
        return Err(said);
    }
    if let Some(report) = shell.split("--report ").nth(1) {
        let report = cwd.join(report.split_whitespace().next().unwrap());
        let json: serde_json::Value = std::fs::read(&report)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| format!("no report at {}: {said}", report.display()))?;
        if json["seed"].is_null() {
            return Err(format!("{} is not a report: {json}", report.display()));
        }
    }
    Ok(())
}

/// The console's command in a tmux pane: the screen comes up with four
/// clients, `q` quits with exit 0 and the shell gets its prompt back.
fn run_console(root: &Path, command: &ReadmeCommand, path: &str) {
    let cwd = root.join("fresh-console");
    std::fs::create_dir(&cwd).unwrap();
    let tmux = Tmux::sized_in(140, 45, Some(&cwd));
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("PROMPT$")
    });
    let typed = format!(
        "export PATH='{path}' TMPDIR='{}'; snapstorm; echo EXIT=$?",
        cwd.display()
    );
    assert_eq!(command.line, "cargo run --release");
    tmux.send(&[&typed, "Enter"]);
    tmux.wait_for(
        "the console with four clients",
        Duration::from_secs(120),
        |s| s.contains("snapstorm ·") && s.contains("clients 4") && s.contains("client-4"),
    );
    tmux.send(&["q"]);
    let screen = tmux.wait_for("the exit code", Duration::from_secs(120), |s| {
        s.lines().any(|l| l.starts_with("EXIT="))
    });
    assert!(
        screen.contains(&format!("EXIT={}", command.exit)),
        "`{}`:\n{screen}",
        command.line
    );
}

#[test]
fn every_readme_command_runs_verbatim_from_a_fresh_directory() {
    let commands = readme_commands();
    let lines: Vec<&str> = commands.iter().map(|c| c.line.as_str()).collect();
    for expected in [
        "cargo run --release",
        "cargo run --release -- run --clients 4 --duration 60s --seed 7 --report r.json",
        TEST_COMMAND,
    ] {
        assert!(
            lines.contains(&expected),
            "README lost `{expected}`: {lines:#?}"
        );
    }
    let root = tempfile::tempdir().unwrap();
    let path = common::path_with(&common::snapstorm_bin_dir(root.path()));

    // The test command is this suite itself: CI runs exactly it.
    let ci =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == TEST_COMMAND),
        ".ci/run runs `{TEST_COMMAND}`"
    );
    let headless: Vec<&ReadmeCommand> = commands
        .iter()
        .filter(|c| c.line != TEST_COMMAND && c.line != "cargo run --release")
        .collect();
    for command in &headless {
        assert!(
            as_run(&command.line).starts_with("snapstorm "),
            "a README command this test does not know how to run: `{}`",
            command.line
        );
    }
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = headless
            .iter()
            .enumerate()
            .map(|(n, command)| {
                let (root, path) = (root.path(), path.as_str());
                scope.spawn(move || run_headless(root, n, command, path))
            })
            .collect();
        for console in commands.iter().filter(|c| c.line == "cargo run --release") {
            run_console(root.path(), console, &path);
        }
        runs.into_iter()
            .filter_map(|run| run.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README's gc-storm example, verbatim: exit 0, or 1 only for what the
/// README says the safe GC may do — a snapshot it hid (`not found in
/// index`), reported as unexpected. Nothing given back wrong, nothing else.
#[test]
fn the_gc_storm_example_gives_nothing_back_wrong() {
    let root = tempfile::tempdir().unwrap();
    let path = common::path_with(&common::snapstorm_bin_dir(root.path()));
    let fresh = root.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let out = std::process::Command::new("bash")
        .args(["-e", "-c", &common::readme_script("gc-storm-example")])
        .current_dir(&fresh)
        .env("PATH", path)
        .env("TMPDIR", root.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = common::read_json(&fresh.join("storm.json"));
    let failures = report["failures"].as_array().unwrap();
    for failure in failures {
        assert_eq!(failure["kind"], "restore-failed", "{said}");
        assert_eq!(failure["unexpected"], true, "{said}");
        assert!(
            failure["details"]
                .as_str()
                .unwrap()
                .contains("not found in index"),
            "{said}"
        );
    }
    let expected_exit = if failures.is_empty() { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected_exit), "{said}");
    assert!(report["gc_runs"].as_u64().unwrap() >= 1, "{said}");
}

/// A heading's anchor as GitHub makes it: lower case, spaces to hyphens,
/// everything but letters, digits, hyphens and underscores dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings.
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            !in_code && line.starts_with('#')
        })
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let documents = common::documents();
    let mut broken = Vec::new();
    let mut links = 0;
    for (path, text) in &documents {
        let dir = path.parent().unwrap();
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|t| !t.starts_with("http://") && !t.starts_with("https://"))
        {
            links += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target, None),
            };
            let file = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", path.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let text = std::fs::read_to_string(&file).unwrap();
                if !anchors(&text).iter().any(|a| a == fragment) {
                    broken.push(format!("{}: {target}: no such heading", path.display()));
                }
            }
        }
    }
    assert!(
        links > 20,
        "the documents link to each other: {links} links"
    );
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(anchor(" Backends: `--backend`"), "backends---backend");
    assert_eq!(anchor(" The console: `snapstorm`"), "the-console-snapstorm");
    assert_eq!(
        anchor(" The aggressive-GC data loss, shrunk"),
        "the-aggressive-gc-data-loss-shrunk"
    );
}

/// docs/architecture.md's layout table is true: every path it names
/// exists, and every room of src/, every file of benches/ and every script
/// of scripts/ is named.
#[test]
fn the_layout_table_names_every_room() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let layout = doc.split("## Layout").nth(1).expect("a Layout section");
    let rows: Vec<&str> = layout.lines().filter(|l| l.starts_with("| `")).collect();
    let named: Vec<String> = rows
        .iter()
        .flat_map(|row| row.split('|').nth(1).unwrap().split('`').skip(1).step_by(2))
        .map(str::to_owned)
        .collect();
    for path in &named {
        assert!(
            root.join(path).exists(),
            "the layout names {path}, which is not there"
        );
    }
    let text = layout.to_owned();
    for dir in ["src", "benches", "scripts"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name == "common" {
                continue;
            }
            assert!(
                text.contains(&name.to_string()),
                "docs/architecture.md's layout does not name {dir}/{name}"
            );
        }
    }
}
