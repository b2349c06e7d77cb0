use std::process::ExitCode;

use clap::Parser;
use snapstorm::cli::{self, Cli, Command, EXIT_USAGE, UsageError};

/// Tells glibc's malloc to give memory back. Its defaults keep up to eight
/// arenas per core, and its mmap threshold rises with every large buffer
/// freed, so the megabyte buffers of the clients' threads end up in arena
/// heaps that are never returned: a 4-client run grew past 1 GB of resident
/// memory for about 150 MB of live data. One arena per core (two at least)
/// and large buffers always mapped on their own keep it near the live size
/// (README "Performance" has the measurements, against mimalloc and
/// jemalloc too). A `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` in the
/// environment is left to glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores)
        .unwrap_or(libc::c_int::MAX)
        .max(2);
    // SAFETY: mallopt only sets allocator parameters; it runs first thing
    // in main, before any other thread exists.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return cli::parse_error(error),
    };
    snapstorm::console::install_panic_hook();
    let result = match cli.command {
        Some(Command::Serve(args)) => {
            cli::init_logging(cli::Logs::Serve, cli.verbose);
            cli::serve(args)
        }
        Some(Command::Run(args)) => {
            cli::init_logging(cli::Logs::Run, cli.verbose);
            cli::run(args)
        }
        Some(Command::Replay(args)) => {
            cli::init_logging(cli::Logs::Reproduce, cli.verbose);
            cli::reproduce::replay(args)
        }
        Some(Command::Shrink(args)) => {
            cli::init_logging(cli::Logs::Reproduce, cli.verbose);
            cli::reproduce::shrink_run(args)
        }
        Some(Command::Report(args)) => {
            cli::init_logging(cli::Logs::Reproduce, cli.verbose);
            cli::report(args)
        }
        Some(Command::Scenarios) => Ok(cli::scenarios()),
        Some(Command::Faults) => Ok(cli::faults()),
        None => cli::console(cli.session, cli.console, cli.verbose),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("snapstorm: {error:#}");
            // Anything but bad usage failed on snapstorm's own side (a
            // crash, a file it could not write): never a verdict on the
            // repository, so never the exit code of a failure found.
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(cli::EXIT_HALTED)
            }
        }
    }
}
