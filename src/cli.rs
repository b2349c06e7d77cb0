//! Command-line interface: what a person can type, and what each command does
//! at the binary's edge (argument checks, exit codes, signals).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod reproduce;
pub use reproduce::{ReplayArgs, ShrinkArgs};

use crate::engine::scenario::Scenario;
use crate::engine::store::write_durably;
use crate::faults::{FaultKind, FaultSpec, RunBounds};
use crate::run::launch::{RunSpec, launch};
use crate::run::{RunHandle, RunLimit};
use crate::server::{Auth, ConnectionLimits, RestServer, ServerConfig, Users};

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

#[derive(Debug, Parser)]
#[command(
    name = "snapstorm",
    version,
    about = "Multi-client robustness testing for snapshot/backup repositories",
    long_about = "snapstorm starts a repository server and several backup clients that run random \
actions (write files, snapshot, restore and verify, delete, GC) against one shared repository, \
and proves every restore byte-for-byte against what was on disk when the snapshot was taken.\n\n\
Without a command it opens the interactive console (keys: ? in the console, or the README). \
When standard output is not a terminal it runs headless instead, as `snapstorm run` does.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Options of the console.
    #[command(flatten)]
    pub session: SessionArgs,

    /// Options only the console has.
    #[command(flatten)]
    pub console: ConsoleArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run clients against one repository without the console, then report.
    #[command(
        long_about = "Run clients against one repository without the console, then report.\n\n\
Every client runs the scenario's actions against the shared repository; every restore is \
verified against the fingerprint taken when its snapshot was made. Progress goes to stderr, \
a summary to stdout.\n\n\
Exit codes: 0 no verification failure, 1 at least one, 2 bad usage or setup, \
3 the run stopped on snapstorm's own side (its trace could not be written)."
    )]
    Run(RunArgs),
    /// List the scenario presets.
    Scenarios,
    /// List the faults that can be injected, and how to write them.
    Faults,
    /// Serve repositories over the restic REST protocol (for restic, rustic or snapstorm clients).
    #[command(
        long_about = "Serve repositories over the restic REST protocol (for restic, rustic or snapstorm clients).\n\n\
Ctrl-C or SIGTERM stops it (in-flight requests get 5 s to finish); SIGHUP reloads the htpasswd \
file (a bad file is reported and the users loaded before stay). Connections that stall before or \
between requests are closed, and connections are capped per peer address and in total.\n\n\
Exit codes: 0 stopped by a signal, 2 bad usage or setup (one line names the fix; nothing is written)."
    )]
    Serve(ServeArgs),
    /// Run a recorded run again on a fresh repository; say whether its failure comes back.
    #[command(
        long_about = "Run a recorded run again on a fresh repository; say whether its failure comes back.\n\n\
Every client's recorded actions run again, each drawing the same inputs (files, sizes, dedup \
shares, which snapshot) from the recorded seed, and the faults that took effect are injected again. \
The recorded state dir is only read: each try runs in a fresh state dir (under --into), kept when \
the failure came back. Each try says whether the same kind of failure (what failed, and the \
kind of fault that explains it) came back.\n\n\
Exit codes: 1 the failure came back in at least one try (as `snapstorm run` exits 1 on a \
failure, so `git bisect run` reads it as bad), 0 it never did, 2 bad usage or a state dir \
with no recorded failure (nothing is run or written)."
    )]
    Replay(ReplayArgs),
    /// Search for the smallest scenario that still fails as a recorded run did.
    #[command(
        long_about = "Search for the smallest scenario that still fails as a recorded run did.\n\n\
Delta debugging over the recorded run: fewer clients, fewer actions per client, fewer and \
shorter faults, smaller files. Each candidate runs on a fresh repository up to --tries times \
and counts as failing if any try fails the same way. Progress goes to stderr (a live line on a \
terminal, a line per candidate otherwise); Ctrl-C stops and writes the smallest found so far. \
The output is a scenario file with a fixed sequence per client and its faults: \
`snapstorm run --scenario FILE --strict` runs it (exit 1 when it fails).\n\n\
Exit codes: 0 the scenario was written, 1 the recording did not fail the same way in any try \
(nothing written), 2 bad usage or a state dir with no recorded failure (nothing is run or written)."
    )]
    Shrink(ShrinkArgs),
}

/// Options shared by the console and the headless runner.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Number of clients to start with.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::run::MAX_CLIENTS)))]
    pub clients: u32,

    /// A preset (see `snapstorm scenarios`) or the path of a scenario TOML file.
    #[arg(long, value_name = "NAME|FILE", default_value = crate::engine::scenario::DEFAULT_SCENARIO)]
    pub scenario: String,

    /// Seed of the run: the same seed gives every client the same actions. Random if not given.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Where the repository, fingerprints and trace live. Give the same directory
    /// again to resume: the run re-verifies snapshots of earlier runs. A fresh
    /// temporary directory if not given.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Inject a fault at a time into the run: KIND@TIME[:DURATION][,key=value…]
    /// (repeatable; e.g. corrupt-pack@15s, server-restart@20s:5s; see `snapstorm faults`).
    #[arg(long = "fault", value_name = "KIND@TIME[:DURATION]")]
    pub faults: Vec<FaultSpec>,

    /// When resuming, each client first restores and verifies this many of
    /// its most recent snapshots from earlier runs; `all` verifies every one.
    #[arg(long, value_name = "N|all", default_value = "1", value_parser = parse_count_or_all)]
    pub verify_inherited: usize,

    /// Which clients run: embedded (rustic_core, compiled in), restic (Debian's
    /// restic binary, one process per call) or mixed (the two alternating on
    /// one repository) or kopia (the kopia program as server and clients).
    /// restic and mixed need `restic` on PATH; kopia needs `kopia` on PATH
    /// or at KOPIA_EXE.
    #[arg(
        long,
        value_name = "embedded|restic|mixed|kopia",
        default_value = "embedded"
    )]
    pub backend: crate::backend::BackendKind,
}

/// Options only the interactive console has.
#[derive(Debug, Clone, Default, Args)]
pub struct ConsoleArgs {
    /// Do not ring the terminal bell when the first unexpected failure shows.
    #[arg(long)]
    pub no_bell: bool,

    /// Also write the machine-readable JSON report to FILE on quit (it is
    /// always written as report.json in the state dir).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Without --state-dir: keep the temporary state dir on exit (the default),
    /// so the run can be resumed or looked into.
    #[arg(long, overrides_with = "no_keep")]
    pub keep: bool,

    /// Without --state-dir: delete the temporary state dir on exit (the
    /// report is kept only where --report writes it).
    #[arg(long, overrides_with = "keep")]
    pub no_keep: bool,
}

/// A count, or `all` (as many as there are).
fn parse_count_or_all(text: &str) -> Result<usize, String> {
    match text {
        "all" => Ok(usize::MAX),
        _ => text
            .parse()
            .map_err(|_| format!("`{text}` is neither a number nor `all`")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub session: SessionArgs,

    /// Stop starting actions after this long (e.g. 30s, 5m). Default 30s unless --actions is given.
    #[arg(long, value_name = "TIME", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Each client stops after this many scenario actions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub actions: Option<u64>,

    /// Write the machine-readable JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Exit 1 on any verification failure, also one an injected fault explains.
    #[arg(long)]
    pub strict: bool,
}

/// Default length of a headless run without --duration or --actions.
pub const DEFAULT_RUN_DURATION: Duration = Duration::from_secs(30);

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = crate::faults::parse_time(text)?;
    if duration.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(duration)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding the repositories: `/` is this directory, `/NAME/` is DIR/NAME.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Address to listen on. Binds loopback unless told otherwise.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Apache htpasswd file with bcrypt entries (create one with `htpasswd -B -c FILE USER`).
    /// SIGHUP reloads it.
    #[arg(long, value_name = "FILE", required_unless_present = "no_auth")]
    pub htpasswd: Option<PathBuf>,

    /// Users may add data but not delete or overwrite it (their own locks excepted).
    #[arg(long)]
    pub append_only: bool,

    /// Serve without authentication. Anyone who can reach the port can read and delete.
    /// Refused on an address that is not loopback unless --i-know-no-auth-is-public is given.
    #[arg(long, conflicts_with = "htpasswd")]
    pub no_auth: bool,

    /// Let --no-auth serve on an address that is not loopback.
    #[arg(long)]
    pub i_know_no_auth_is_public: bool,

    /// Accept uploads without checking that their content hashes to their id.
    #[arg(long)]
    pub no_verify_upload: bool,

    /// Close a connection whose request line and headers are not complete this
    /// long after their first byte.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Close a connection that has no request in progress and moves no byte for this long.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Connections open at once; at the cap, new ones wait. Lowered if the
    /// open-file limit cannot hold them (a warning says so).
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_CONNECTIONS, value_parser = parse_count)]
    pub max_connections: usize,

    /// Connections open at once from one IP address; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_CONNECTIONS_PER_PEER, value_parser = parse_count)]
    pub max_connections_per_peer: usize,
}

fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (write a whole number, e.g. 64)")),
    }
}

/// A problem with what the user asked for: exit code 2 and one line naming the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Routes tracing (and the backend's `log` records) into the console's log pane.
pub fn init_console_logging(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match verbose {
        // rustic_backend warns of every request it retries: the evidence
        // already tells of those, and a network fault would fill the pane.
        0 => "info,snapstorm=debug,snapstorm::server=info,rustic_core=warn,rustic_backend=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(crate::console::LogLayer);
    // rustic logs through the `log` crate: `try_init` also turns those
    // records into events, so they are filtered, folded and trimmed like
    // snapstorm's own (tui-logger with tracing support takes none itself).
    let _ = subscriber.try_init();
    let _ = tui_logger::init_logger(tui_logger::LevelFilter::Trace);
    tui_logger::set_default_level(tui_logger::LevelFilter::Debug);
    for target in ["rustic_core", "rustic_backend", "reqwest", "hyper"] {
        tui_logger::set_level_for_target(target, tui_logger::LevelFilter::Warn);
    }
}

pub fn init_logging(verbose: u8, quiet_default: bool) {
    let default = match verbose {
        0 if quiet_default => "warn",
        0 => "info",
        1 => "snapstorm=debug,info",
        _ => "trace",
    };
    init_logging_filter(default);
}

/// Logs to stderr with this filter, unless RUST_LOG gives one.
pub fn init_logging_filter(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// `snapstorm serve`: runs until Ctrl-C or SIGTERM; SIGHUP reloads the htpasswd file.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Checked here: clap's `requires` counts a flag's default as given.
    if args.i_know_no_auth_is_public && !args.no_auth {
        return Err(UsageError(
            "--i-know-no-auth-is-public only goes with --no-auth; drop it, or add --no-auth".into(),
        )
        .into());
    }
    if args.no_auth
        && !args.i_know_no_auth_is_public
        && !args.listen.ip().to_canonical().is_loopback()
    {
        return Err(UsageError(format!(
            "--no-auth on {} lets anyone who can reach it read and delete every repository; \
             listen on a loopback address (--listen 127.0.0.1:PORT), use --htpasswd, or add --i-know-no-auth-is-public",
            args.listen
        ))
        .into());
    }
    let htpasswd = match &args.htpasswd {
        Some(path) => {
            let users = Users::from_htpasswd_file(path).map_err(|e| UsageError(e.to_string()))?;
            warn_if_exposed(path);
            Some(Htpasswd {
                path: path.clone(),
                users: Arc::new(users),
            })
        }
        None => None,
    };
    let auth = match &htpasswd {
        Some(htpasswd) => Auth::Users(htpasswd.users.clone()),
        None => Auth::Open,
    };
    let limits = ConnectionLimits {
        header_read_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
    };
    crate::server::raise_open_file_limit(&limits);
    let config = ServerConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        auth,
        append_only: args.append_only,
        verify_uploads: !args.no_verify_upload,
        shutdown_grace: crate::server::DEFAULT_SHUTDOWN_GRACE,
        observer: None,
        limits,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Before serving, so that a signal sent as soon as the address is
        // printed is answered, not fatal.
        let mut signals = ServeSignals::install()?;
        let server = RestServer::start(config)
            .await
            .map_err(|e| UsageError(e.to_string()))?;
        eprintln!(
            "snapstorm: serving {} on http://{} (Ctrl-C stops)",
            server.config().data_dir.display(),
            server.addr()
        );
        while signals.next().await == ServeSignal::Reload {
            match &htpasswd {
                Some(htpasswd) => htpasswd.reload(),
                None => eprintln!("snapstorm: SIGHUP: nothing to reload (serving with --no-auth)"),
            }
        }
        eprintln!("snapstorm: stopping");
        server.stop().await;
        Ok(ExitCode::from(EXIT_OK))
    })
}

/// The htpasswd file `snapstorm serve` serves, and the table loaded from it.
struct Htpasswd {
    path: PathBuf,
    users: Arc<Users>,
}

impl Htpasswd {
    /// Replaces the users with the file's, or keeps them when the file is bad.
    fn reload(&self) {
        let before = self.users.names().len();
        match self.users.reload_htpasswd_file(&self.path) {
            Ok(count) => eprintln!(
                "snapstorm: SIGHUP: reloaded {}: {count} user{}",
                self.path.display(),
                if count == 1 { "" } else { "s" }
            ),
            Err(e) => eprintln!(
                "snapstorm: SIGHUP: not reloaded, still serving the {before} user{} loaded before: {e}",
                if before == 1 { "" } else { "s" }
            ),
        }
        warn_if_exposed(&self.path);
    }
}

/// One line when an htpasswd file is open to group or others: whoever can
/// read its bcrypt hashes can guess passwords offline, and whoever can
/// write it can add users.
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Some(mode) = std::fs::metadata(path)
        .ok()
        .filter(|meta| meta.is_file())
        .map(|meta| meta.permissions().mode() & 0o777)
    else {
        return;
    };
    let exposure = if mode & 0o022 != 0 {
        "writable by group or others: anyone who can write it can add users"
    } else if mode & 0o044 != 0 {
        "readable by group or others: its bcrypt hashes can be attacked offline"
    } else {
        return;
    };
    eprintln!(
        "snapstorm: warning: {} is {exposure} (mode {mode:03o}); chmod 600 {}",
        path.display(),
        path.display()
    );
}

/// What a signal asks of `snapstorm serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServeSignal {
    Stop,
    Reload,
}

/// SIGINT and SIGTERM stop the server, SIGHUP reloads its users.
struct ServeSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl ServeSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ServeSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> ServeSignal {
        tokio::select! {
            _ = self.interrupt.recv() => ServeSignal::Stop,
            _ = self.terminate.recv() => ServeSignal::Stop,
            _ = self.hangup.recv() => ServeSignal::Reload,
        }
    }
}

/// `snapstorm faults`.
pub fn faults() -> ExitCode {
    for kind in FaultKind::ALL {
        println!("{:<16} {}", kind.name(), kind.describe());
    }
    println!(
        "\nwrite KIND@TIME[:DURATION][,key=value…], e.g. --fault corrupt-pack@15s --fault server-restart@20s:5s\n\
         network options: latency=200ms, drop=10 (percent of requests), error=10 (percent answered 500)\n\
         revoke-client / kill-client option: client=N (default: a random client)"
    );
    ExitCode::from(EXIT_OK)
}

/// The exit code of a finished run: failures no fault explains (or, strict,
/// any failure) give 1 — found before a halt, they still stand; a run that
/// stopped on snapstorm's own side gives 3.
pub fn exit_code(report: &crate::engine::Report, strict: bool) -> ExitCode {
    let failed = if strict {
        !report.failures.is_empty()
    } else {
        report.unexpected_failures() > 0
    };
    ExitCode::from(if failed {
        EXIT_FAILURES
    } else if report.halted.is_some() {
        EXIT_HALTED
    } else {
        EXIT_OK
    })
}

/// Says why a run stopped on snapstorm's own side, if it did.
fn say_if_halted(report: &crate::engine::Report) {
    if let Some(reason) = &report.halted {
        eprintln!(
            "snapstorm: the run stopped early: {reason}; nothing after it is a verdict on the repository"
        );
    }
}

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

/// `snapstorm scenarios`.
pub fn scenarios() -> ExitCode {
    for scenario in Scenario::presets() {
        println!("{:<40} {}", scenario.name, scenario.description);
    }
    ExitCode::from(EXIT_OK)
}

/// Turns session options into a run spec, checking everything before
/// anything is written: faults are checked against the run's `bounds`
/// where they are known.
pub fn session_spec(args: &SessionArgs, bounds: RunBounds) -> Result<RunSpec, UsageError> {
    let scenario = Scenario::resolve(&args.scenario).map_err(|e| UsageError(e.to_string()))?;
    let faults: Vec<FaultSpec> = scenario
        .faults
        .iter()
        .chain(&args.faults)
        .cloned()
        .collect();
    for fault in &faults {
        fault
            .check_bounds(&bounds)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    let seed = args.seed.or(scenario.seed).unwrap_or_else(rand::random);
    let state_dir = match &args.state_dir {
        Some(dir) => {
            if dir.exists() && !dir.is_dir() {
                return Err(UsageError(format!(
                    "--state-dir {}: not a directory; give a directory (it is created if missing)",
                    dir.display()
                )));
            }
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("snapstorm-")
            .tempdir()
            .map_err(|e| {
                UsageError(format!(
                    "cannot create a temporary state dir: {e}; give one with --state-dir"
                ))
            })?
            .keep(),
    };
    // Fixed per-client sequences bring their own clients.
    let clients = match scenario.clients.len() {
        0 => args.clients,
        scripted => scripted as u32,
    };
    let mut spec = RunSpec::new(scenario, state_dir, seed);
    spec.clients = clients;
    spec.verify_inherited_per_client = args.verify_inherited;
    spec.faults = faults;
    spec.backend = args.backend;
    Ok(spec)
}

fn check_report_path(path: &Path) -> Result<(), UsageError> {
    check_output_path("--report", path)
}

/// A file `option` is to write: its directory must exist, and it must not be one.
fn check_output_path(option: &str, path: &Path) -> Result<(), UsageError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(UsageError(format!(
            "{option} {}: directory {} does not exist; create it or write the file elsewhere",
            path.display(),
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(UsageError(format!(
            "{option} {}: is a directory; give a file name",
            path.display()
        )));
    }
    Ok(())
}

/// `snapstorm run`: a headless run; exit 0 clean, 1 on verification failures.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(report) = &args.report {
        check_report_path(report)?;
    }
    // Fixed per-client sequences end the run when they are done.
    let scripted = Scenario::resolve(&args.session.scenario).is_ok_and(|s| !s.clients.is_empty());
    let limit = RunLimit {
        duration: args
            .duration
            .or((args.actions.is_none() && !scripted).then_some(DEFAULT_RUN_DURATION)),
        actions_per_client: args.actions,
    };
    // A headless run never adds clients: a fault can name only these.
    let bounds = RunBounds {
        duration: limit.duration,
        clients: Some(args.session.clients),
    };
    let mut spec = session_spec(&args.session, bounds)?;
    spec.limit = limit;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let handle = launch(spec).await.map_err(|e| UsageError(e.to_string()))?;
        let RunHandle {
            info,
            commands,
            events,
            counts,
            task,
        } = handle;
        crate::headless::follow(&info, events, commands, &counts).await;
        let report = task
            .await
            .map_err(|e| anyhow::anyhow!("run crashed: {e}"))?;
        anyhow::Ok(report)
    })?;
    print!("{}", crate::headless::summary(&report));
    say_if_halted(&report);
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report)?;
        write_durably(path, &json)
            .map_err(|e| anyhow::anyhow!("cannot write report {}: {e}", path.display()))?;
        eprintln!("snapstorm: report written to {}", path.display());
    }
    eprintln!(
        "snapstorm: state kept in {0}; resume with --state-dir {0}",
        report.state_dir
    );
    Ok(exit_code(&report, args.strict))
}

/// `snapstorm` without a command: the console, or a headless run when
/// standard output is not a terminal.
pub fn console(args: SessionArgs, console: ConsoleArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if console.no_keep && args.state_dir.is_some() {
        return Err(UsageError(
            "--no-keep deletes only a temporary state dir; drop it, or drop --state-dir".into(),
        )
        .into());
    }
    if !std::io::stdout().is_terminal() {
        init_logging(verbose, true);
        eprintln!(
            "snapstorm: standard output is not a terminal; running headless for {}s (see `snapstorm run --help`)",
            DEFAULT_RUN_DURATION.as_secs()
        );
        return run(RunArgs {
            session: args,
            duration: None,
            actions: None,
            report: console.report,
            strict: false,
        });
    }
    if let Some(report) = &console.report {
        check_report_path(report)?;
    }
    // Clients can be added in the console and it runs until quit: faults
    // that never come to pass are reported as not injected instead.
    let spec = session_spec(&args, RunBounds::default())?;
    init_console_logging(verbose);
    let options = crate::console::ConsoleOptions {
        bell: !console.no_bell,
        ..Default::default()
    };
    let outcome = crate::console::run(spec, options).map_err(|e| match e {
        crate::console::ConsoleError::Launch(e) => anyhow::Error::from(UsageError(e.to_string())),
        other => anyhow::Error::from(other),
    })?;
    let report = &outcome.report;
    print!("{}", crate::headless::summary(report));
    say_if_halted(report);
    let json = serde_json::to_vec_pretty(&report)?;
    let state_dir = PathBuf::from(&report.state_dir);
    let kept_report = state_dir.join("report.json");
    match write_durably(&kept_report, &json) {
        Ok(()) => println!("report written to {}", kept_report.display()),
        Err(error) => eprintln!("snapstorm: cannot write {}: {error}", kept_report.display()),
    }
    if let Some(path) = &console.report {
        write_durably(path, &json)
            .map_err(|e| anyhow::anyhow!("cannot write report {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if args.state_dir.is_none() {
        // A temporary dir can hold gigabytes: say how much, and keep it only if asked to.
        let size = crate::console::format_bytes(crate::engine::file_writer::disk_usage(&state_dir));
        if console.no_keep && outcome.shrink_command.is_some() {
            println!(
                "state kept in the temporary dir {} ({size}) despite --no-keep: R asked to shrink a failure from it",
                state_dir.display()
            );
        } else if console.no_keep {
            std::fs::remove_dir_all(&state_dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot delete the temporary state dir {}: {e}",
                    state_dir.display()
                )
            })?;
            println!(
                "deleted the temporary state dir {} ({size}), as --no-keep asked",
                state_dir.display()
            );
        } else {
            println!(
                "state kept in the temporary dir {0} ({size}); resume with --state-dir {0}, delete it when done (or run with --no-keep)",
                state_dir.display()
            );
        }
    } else {
        println!(
            "state kept in {0}; resume with --state-dir {0}",
            report.state_dir
        );
    }
    if let Some(command) = &outcome.shrink_command {
        println!("to shrink the failure R selected: {command}");
    }
    Ok(exit_code(report, false))
}
