//! The layout shows the architecture, and imports run downward only:
//! front ends (console, cli, headless) → the page → reproduce → run → backend →
//! multiclient (the delegating writer and snapshotter) → engine, server,
//! fault model. A module that imports upward fails here, naming the file
//! and the line.

use std::path::Path;

/// Every `crate::…` path a source file names, with its line number.
fn crate_paths(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .flat_map(|(n, line)| {
            line.match_indices("crate::")
                .map(move |(at, _)| (n + 1, line[at + "crate::".len()..].to_owned()))
        })
        .filter_map(|(n, rest)| {
            let module: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!module.is_empty()).then_some((n, module))
        })
        .collect()
}

/// Files under `src/<layer>` must not name any of `forbidden`.
fn assert_layer(layer: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let files: Vec<_> = if root.is_dir() {
        walkdir::WalkDir::new(&root)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect()
    } else {
        vec![root.with_extension("rs")]
    };
    assert!(!files.is_empty(), "no sources for {layer}");
    let mut upward = Vec::new();
    for file in files {
        for (line, module) in crate_paths(&file) {
            if forbidden.contains(&module.as_str()) {
                upward.push(format!("{}:{line}: crate::{module}", file.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "{layer} imports upward:\n{}",
        upward.join("\n")
    );
}

/// Front ends, above everything else.
const FRONT_ENDS: [&str; 3] = ["console", "cli", "headless"];

fn with_front_ends(more: &[&'static str]) -> Vec<&'static str> {
    more.iter().chain(FRONT_ENDS.iter()).copied().collect()
}

#[test]
fn the_fault_model_imports_nothing_else_of_snapstorm() {
    assert_layer(
        "faults",
        &with_front_ends(&[
            "page",
            "engine",
            "server",
            "backend",
            "multiclient",
            "run",
            "reproduce",
        ]),
    );
}

#[test]
fn the_engine_imports_no_backend_no_injector_and_no_front_end() {
    assert_layer(
        "engine",
        &with_front_ends(&[
            "page",
            "backend",
            "multiclient",
            "run",
            "reproduce",
            "server",
        ]),
    );
}

#[test]
fn the_server_imports_only_itself() {
    assert_layer(
        "server",
        &with_front_ends(&[
            "page",
            "engine",
            "faults",
            "backend",
            "multiclient",
            "run",
            "reproduce",
        ]),
    );
}

#[test]
fn the_delegating_writer_and_snapshotter_sit_on_the_engine() {
    assert_layer(
        "multiclient",
        &with_front_ends(&["page", "backend", "run", "reproduce", "server"]),
    );
}

#[test]
fn backends_import_no_run_and_no_front_end() {
    assert_layer("backend", &with_front_ends(&["page", "run", "reproduce"]));
}

#[test]
fn the_run_imports_no_reproduction_and_no_front_end() {
    assert_layer("run", &with_front_ends(&["page", "reproduce"]));
}

#[test]
fn reproduction_imports_no_front_end() {
    assert_layer("reproduce", &with_front_ends(&["page"]));
}

#[test]
fn the_page_reads_the_engine_and_imports_no_front_end_and_no_run() {
    assert_layer(
        "page",
        &with_front_ends(&["backend", "multiclient", "run", "server"]),
    );
}
