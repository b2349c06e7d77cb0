//! `snapstorm report`: a state dir's page, and the page every run leaves
//! beside its `report.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::output;
use super::{EXIT_OK, UsageError};
use crate::page::{PAGE_FILE, PageError};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The state dir of a run (its --state-dir): its trace.jsonl is read,
    /// with state.json and report.json where they are.
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,

    /// Where the page goes (default: report.html in the state dir).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `snapstorm report STATE_DIR [-o FILE]`: exit 0 with the page written,
/// 2 when the state dir cannot be read or the page cannot be written
/// (nothing is half-written: a temp file is renamed into place).
pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if !args.state_dir.is_dir() {
        return Err(UsageError(format!(
            "{}: not a directory; give the --state-dir of a run",
            args.state_dir.display()
        ))
        .into());
    }
    let path = args
        .output
        .unwrap_or_else(|| args.state_dir.join(PAGE_FILE));
    let out = output::check_file("-o", &path, &[])?;
    let output::Output::File(file) = out else {
        return Err(UsageError(format!(
            "-o {}: not a regular file; give a file name ending in .html",
            path.display()
        ))
        .into());
    };
    let bytes = crate::page::write_page(&args.state_dir, &file).map_err(usage)?;
    eprintln!(
        "snapstorm: page written to {} ({} KiB)",
        file.display(),
        bytes.div_ceil(1024)
    );
    Ok(ExitCode::from(EXIT_OK))
}

fn usage(error: PageError) -> UsageError {
    UsageError(error.to_string())
}

/// Writes the page of the run just ended beside its report.json; a page
/// that cannot be drawn is said, and the run's verdict stands without it.
pub(super) fn keep_page(state_dir: &Path, say: impl Fn(String)) {
    let path = state_dir.join(PAGE_FILE);
    match crate::page::write_page(state_dir, &path) {
        Ok(_) => say(format!("page written to {}", path.display())),
        Err(error) => say(format!("cannot write the page {}: {error}", path.display())),
    }
}
