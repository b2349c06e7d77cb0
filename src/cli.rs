//! Command-line interface: what a person can type, and what each command does
//! at the binary's edge (argument checks, exit codes, signals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::server::{Auth, RestServer, ServerConfig, Users};

/// Exit code for a run without verification failures.
pub const EXIT_OK: u8 = 0;
/// Exit code when a verification failure was found.
pub const EXIT_FAILURES: u8 = 1;
/// Exit code for bad usage or a setup problem; nothing was run.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "snapstorm",
    version,
    about = "Multi-client robustness testing for snapshot/backup repositories",
    long_about = "snapstorm starts a repository server and several backup clients that run random \
actions (write files, snapshot, restore and verify, delete, GC) against one shared repository, \
and proves every restore byte-for-byte against what was on disk when the snapshot was taken."
)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve repositories over the restic REST protocol (for restic, rustic or snapstorm clients).
    Serve(ServeArgs),
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
    #[arg(long, value_name = "FILE", required_unless_present = "no_auth")]
    pub htpasswd: Option<PathBuf>,

    /// Users may add data but not delete or overwrite it (locks excepted).
    #[arg(long)]
    pub append_only: bool,

    /// Serve without authentication. Anyone who can reach the port can read and delete.
    #[arg(long, conflicts_with = "htpasswd")]
    pub no_auth: bool,

    /// Accept uploads without checking that their content hashes to their id.
    #[arg(long)]
    pub no_verify_upload: bool,
}

/// A problem with what the user asked for: exit code 2 and one line naming the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "snapstorm=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `snapstorm serve`: runs until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let auth = if args.no_auth {
        Auth::Open
    } else {
        let path = args.htpasswd.as_ref().expect("clap requires --htpasswd without --no-auth");
        let users = Users::from_htpasswd_file(path).map_err(|e| UsageError(e.to_string()))?;
        if users.names().is_empty() {
            return Err(UsageError(format!(
                "{}: no users; add one with `htpasswd -B {} USER`",
                path.display(),
                path.display()
            ))
            .into());
        }
        Auth::Users(Arc::new(users))
    };
    let config = ServerConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        auth,
        append_only: args.append_only,
        verify_uploads: !args.no_verify_upload,
        shutdown_grace: crate::server::DEFAULT_SHUTDOWN_GRACE,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = RestServer::start(config).await.map_err(|e| UsageError(e.to_string()))?;
        eprintln!(
            "snapstorm: serving {} on http://{} (Ctrl-C stops)",
            server.config().data_dir.display(),
            server.addr()
        );
        wait_for_stop_signal().await;
        eprintln!("snapstorm: stopping");
        server.stop().await;
        Ok(ExitCode::from(EXIT_OK))
    })
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
