use std::process::ExitCode;

use clap::Parser;
use snapstorm::cli::{self, Cli, Command, EXIT_USAGE, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = !matches!(cli.command, Some(Command::Serve(_)));
    cli::init_logging(cli.verbose, quiet);
    let result = match cli.command {
        Some(Command::Serve(args)) => cli::serve(args),
        Some(Command::Run(args)) => cli::run(args),
        Some(Command::Scenarios) => Ok(cli::scenarios()),
        None => {
            eprintln!("snapstorm: choose a command; see `snapstorm --help`");
            return ExitCode::from(EXIT_USAGE);
        }
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
