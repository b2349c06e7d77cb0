//! What a person can type: the commands and their options (clap), with
//! the parsers that bound each value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::faults::FaultSpec;
use crate::server::ConnectionLimits;

use super::*;

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
3 the run stopped on snapstorm's own side (its trace could not be written, or snapstorm failed)."
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
A run that resumed earlier runs is replayed after them: each try runs those first, from their own \
recorded actions, in its state dir. The recorded state dir is only read: each try runs in a fresh state dir (under --into), kept when \
the failure came back. With --repository LOCATION, each try's repository is a fresh one below \
LOCATION, named as its state dir (s3:…/BUCKET/PREFIX/snapstorm-replay-…); without it, the try's \
state dir holds it. Each try says whether the same kind of failure (what failed, and the \
kind of fault that explains it) came back.\n\n\
Exit codes: 1 the failure came back in at least one try (as `snapstorm run` exits 1 on a \
failure, so `git bisect run` reads it as bad), 0 it never did, 2 bad usage, a state dir \
with no recorded failure, or a try that cannot run where asked (nothing is left), 3 snapstorm \
itself failed (no answer either way)."
    )]
    Replay(ReplayArgs),
    /// Search for the smallest scenario that still fails as a recorded run did.
    #[command(
        long_about = "Search for the smallest scenario that still fails as a recorded run did.\n\n\
Delta debugging over the recorded run: fewer clients, fewer actions per client, fewer and \
shorter faults, smaller files. Each candidate runs on a fresh repository up to --tries times \
(below --repository LOCATION when given, as replay's tries) and counts as failing if enough \
of them fail the same way (--at-least; by default as many as the recording's own tries did); \
--parallel N runs up to N of those runs at once. Progress goes to stderr (a live line on a \
terminal, a line per candidate otherwise); Ctrl-C or --budget stops and writes the smallest \
found so far (the budget is asked before a candidate begins, so it can be passed by one \
candidate's tries). \
The output is a scenario file with a fixed sequence per client and its faults: \
`snapstorm run --scenario FILE --strict` runs it (exit 1 when it fails).\n\n\
Exit codes: 0 the scenario was written, 1 the recording did not fail the same way in any try \
(nothing written), 2 bad usage, a state dir with no recorded failure or a run that resumed \
earlier runs (nothing is run or written; replay such a run), or candidates that cannot run \
where asked, 3 snapstorm itself failed."
    )]
    Shrink(ShrinkArgs),
    /// Draw a state dir's run as one HTML page: verdict, timeline, latency, rate, snapshots, failures.
    #[command(
        long_about = "Draw a state dir's run as one HTML page: verdict, timeline, latency, rate, snapshots, failures.\n\n\
The page is drawn from the state dir's trace.jsonl (so any past run can be drawn), with the \
failures' diffs from state.json and the engine's verdict from report.json. Every run of a resumed \
state dir is shown, run boundaries marked. It is one self-contained file: inline SVG and CSS, no \
script, nothing from the network; hovering over a bar shows the action. Every run also leaves \
report.html beside report.json in its state dir.\n\n\
Exit codes: 0 the page was written, 2 the state dir cannot be read or the page cannot be written \
(one line names the fix; nothing is half-written)."
    )]
    Report(ReportArgs),
}

/// Defaults shown in `--help`, written from the constants they stand for.
static HEADER_TIMEOUT: LazyLock<String> = LazyLock::new(|| {
    crate::faults::compact_duration(ConnectionLimits::DEFAULT_HEADER_READ_TIMEOUT)
});
static IDLE_TIMEOUT: LazyLock<String> =
    LazyLock::new(|| crate::faults::compact_duration(ConnectionLimits::DEFAULT_IDLE_TIMEOUT));
static BACKEND_NAMES: LazyLock<String> = LazyLock::new(|| {
    crate::backend::BackendKind::ALL
        .map(crate::backend::BackendKind::name)
        .join("|")
});

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

    /// Which clients run: embedded (rustic_core, compiled in), restic (the
    /// restic binary, one process per call) or mixed (the two alternating on
    /// one repository) or kopia (the kopia program as server and clients).
    /// restic and mixed need `restic` on PATH or at RESTIC_EXE; kopia needs `kopia` on PATH
    /// or at KOPIA_EXE.
    #[arg(
        long,
        value_name = BACKEND_NAMES.as_str(),
        default_value = crate::backend::BackendKind::Embedded.name()
    )]
    pub backend: crate::backend::BackendKind,

    #[command(flatten)]
    pub storage: RepositoryArgs,
}

/// Where the repository under test lives: for a run, and for replay's and
/// shrink's tries (each a fresh repository below it).
#[derive(Debug, Clone, Default, Args)]
pub struct RepositoryArgs {
    /// Where the repository under test lives, written as restic writes it:
    /// rest:http(s)://HOST:PORT/PATH (a REST server: rest-server,
    /// rustic_server, `snapstorm serve` elsewhere),
    /// s3:http(s)://HOST:PORT/BUCKET[/PREFIX] (S3-compatible object storage,
    /// path-style, every backend; the bucket is created if missing; without
    /// a scheme, https) or a directory (local, NFS, FUSE, a slow disk; it
    /// must exist). Default: the state dir's own repository. The REST
    /// server's user and password come from RESTIC_REST_USERNAME and
    /// RESTIC_REST_PASSWORD, or --repository-credentials; one written in the
    /// URL works, with a warning. S3 keys come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY, the region from AWS_DEFAULT_REGION (default
    /// us-east-1). A state dir belongs to one location. Several runs (on
    /// several machines) can share one repository: a new state dir takes
    /// its password from RESTIC_PASSWORD, and each run checks only its own
    /// snapshots. A
    /// scenario file's `[repository]` table (location, credentials) gives
    /// one too; this option wins.
    #[arg(long, value_name = "LOCATION")]
    pub repository: Option<String>,

    /// A file holding the REST server's USER:PASSWORD on its first line,
    /// readable by its owner only (chmod 600).
    #[arg(long, value_name = "FILE")]
    pub repository_credentials: Option<PathBuf>,

    /// For an https location: a file of PEM certificates to trust besides
    /// the system's (the CA that signed the storage's certificate), as
    /// restic's --cacert. Repeat it, or give several separated by commas.
    #[arg(
        long,
        value_name = "FILE",
        env = "RESTIC_CACERT",
        value_delimiter = ','
    )]
    pub cacert: Vec<PathBuf>,
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
pub(super) fn parse_count_or_all(text: &str) -> Result<usize, String> {
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

pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
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
    #[arg(long, value_name = "TIME", default_value = HEADER_TIMEOUT.as_str(), value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Close a connection that has no request in progress and moves no byte for this long.
    #[arg(long, value_name = "TIME", default_value = IDLE_TIMEOUT.as_str(), value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Connections open at once; at the cap, new ones wait. Lowered if the
    /// open-file limit cannot hold them (a warning says so).
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_CONNECTIONS, value_parser = parse_count)]
    pub max_connections: usize,

    /// Connections open at once from one IP address; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_CONNECTIONS_PER_PEER, value_parser = parse_count)]
    pub max_connections_per_peer: usize,
}

pub(super) fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (write a whole number, e.g. 64)")),
    }
}
