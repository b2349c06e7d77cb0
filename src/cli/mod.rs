//! Command-line interface: what a person can type, and what each command does
//! at the binary's edge (argument checks, exit codes, signals).

mod args;
mod logging;
mod output;
mod report;
pub mod reproduce;
mod run;
mod serve;
mod usage;

pub use args::*;
pub use logging::{Logs, init_logging};
pub use report::{ReportArgs, report};
pub use reproduce::{ReplayArgs, ShrinkArgs};
pub use run::{console, exit_code, faults, run, scenarios, session_spec};
pub use serve::serve;
pub use usage::{UsageError, parse_error, usage_line};

/// Exit code for a run without verification failures.
pub const EXIT_OK: u8 = 0;
/// Exit code when a verification failure was found.
pub const EXIT_FAILURES: u8 = 1;
/// Exit code for bad usage or a setup problem; nothing was run.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the run stopped on snapstorm's own side (its trace in the
/// state dir could not be written): what it found until then is recorded,
/// and no verdict is drawn on the repository from the rest.
pub const EXIT_HALTED: u8 = 3;
/// Exit code after a second Ctrl-C: nothing waited for, no verdict (a shell's 128 + SIGINT).
pub const EXIT_ABORTED: u8 = 130;

#[cfg(test)]
mod tests {
    use crate::engine::report::RunExit;

    #[test]
    fn the_engine_s_run_exits_are_the_documented_codes() {
        assert_eq!(RunExit::Clean.code(), super::EXIT_OK);
        assert_eq!(RunExit::Failed.code(), super::EXIT_FAILURES);
        assert_eq!(RunExit::Halted.code(), super::EXIT_HALTED);
        assert_eq!(RunExit::of(0, 2, false, true), RunExit::Failed);
        assert_eq!(RunExit::of(0, 2, false, false), RunExit::Clean);
        assert_eq!(RunExit::of(0, 2, true, false), RunExit::Halted);
        assert_eq!(RunExit::of(1, 2, true, false), RunExit::Failed);
    }
}
