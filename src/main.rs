use std::process::ExitCode;

use clap::Parser;
use snapstorm::cli::{self, Cli, Command, EXIT_USAGE, UsageError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return cli::parse_error(error),
    };
    snapstorm::console::install_panic_hook();
    let result = match cli.command {
        Some(Command::Serve(args)) => {
            cli::init_logging(cli.verbose, false);
            cli::serve(args)
        }
        Some(Command::Run(args)) => {
            cli::init_logging(cli.verbose, true);
            cli::run(args)
        }
        Some(Command::Replay(args)) => {
            cli::reproduce::init_logging(cli.verbose);
            cli::reproduce::replay(args)
        }
        Some(Command::Shrink(args)) => {
            cli::reproduce::init_logging(cli.verbose);
            cli::reproduce::shrink_run(args)
        }
        Some(Command::Scenarios) => Ok(cli::scenarios()),
        Some(Command::Faults) => Ok(cli::faults()),
        None => cli::console(cli.session, cli.verbose),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("snapstorm: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(cli::EXIT_FAILURES)
            }
        }
    }
}
