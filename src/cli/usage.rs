//! Usage errors: one line, the problem then the fix, exit code 2; and the
//! checks of output paths before anything runs.

use std::process::ExitCode;

use super::*;

/// A problem with what the user asked for: exit code 2 and one line naming the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// clap's own error for `--help` and `--version` (printed as clap prints
/// them); any other is a usage error said in one line, exit code 2.
pub fn parse_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
        _ => {
            let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
            eprintln!("snapstorm: {}", usage_line(&error, &args));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// A clap usage error in the project's one line, the problem and then the
/// fix: `--clients: 0 is not in 1..=64 (run `snapstorm run --help`)`. Built
/// from the error's kind and context, not from clap's text.
pub fn usage_line(error: &clap::Error, args: &[std::ffi::OsString]) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = |kind: ContextKind| -> Option<String> {
        match error.get(kind)? {
            ContextValue::String(s) => Some(s.clone()),
            ContextValue::Strings(v) if !v.is_empty() => Some(v.join(", ")),
            ContextValue::StyledStr(s) => Some(s.to_string()),
            ContextValue::StyledStrs(v) if !v.is_empty() => Some(
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ContextValue::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    // `--clients <N>`: the option, and clap's placeholder for its value.
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    let option = arg.split_whitespace().next().unwrap_or_default().to_owned();
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    let did_you_mean = |kind: ContextKind| {
        text(kind)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default()
    };
    let problem = match error.kind() {
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_else(|| format!("`{value}` is not valid"));
            format!("{option}: {why}")
        }
        ErrorKind::InvalidValue if value.is_empty() => {
            format!("{option} needs a value: write {arg}")
        }
        ErrorKind::InvalidValue => format!(
            "{option}: `{value}` is not one of {}{}",
            text(ContextKind::ValidValue).unwrap_or_default(),
            did_you_mean(ContextKind::SuggestedValue)
        ),
        ErrorKind::UnknownArgument => format!(
            "unexpected argument `{arg}`{}{}",
            did_you_mean(ContextKind::SuggestedArg),
            text(ContextKind::Suggested)
                .map(|s| format!("; {s}"))
                .unwrap_or_default()
        ),
        ErrorKind::InvalidSubcommand => format!(
            "unknown command `{}`{}",
            text(ContextKind::InvalidSubcommand).unwrap_or_default(),
            did_you_mean(ContextKind::SuggestedSubcommand)
        ),
        ErrorKind::MissingRequiredArgument => match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(v)) if v.len() > 1 => format!("{arg} are required"),
            _ => format!("{arg} is required"),
        },
        ErrorKind::ArgumentConflict => format!(
            "{} cannot be used with {}",
            text(ContextKind::InvalidArg)
                .or_else(|| text(ContextKind::InvalidSubcommand))
                .unwrap_or_default(),
            text(ContextKind::PriorArg).unwrap_or_else(|| "one of the other arguments".into())
        ),
        ErrorKind::NoEquals => format!("{option} takes its value after `=`: write {option}=VALUE"),
        ErrorKind::TooManyValues => format!("{option}: `{value}` is one value too many"),
        ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("{option}: wrong number of values")
        }
        ErrorKind::InvalidUtf8 => "an argument is not valid UTF-8".to_owned(),
        // Kinds with no context to build from: clap's first line, without its prefix.
        _ => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    };
    // The help of the command the user was typing.
    let command = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()
        .and_then(|m| m.subcommand_name().map(str::to_owned));
    let help = match command {
        Some(name) => format!("snapstorm {name} --help"),
        None => "snapstorm --help".to_owned(),
    };
    format!("{problem} (run `{help}`)")
}
