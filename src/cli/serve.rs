//! `snapstorm serve`: the restic REST server on its own, until Ctrl-C or
//! SIGTERM; SIGHUP reloads the htpasswd file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::server::{Auth, ConnectionLimits, RestServer, ServerConfig, Users};

use super::*;

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
        outage: None,
        limits,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(async move {
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
    });
    // A password check still running (bcrypt cannot be interrupted) does
    // not hold the exit beyond the grace.
    runtime.shutdown_timeout(crate::server::DEFAULT_SHUTDOWN_GRACE);
    served
}

/// The htpasswd file `snapstorm serve` serves, and the table loaded from it.
pub(super) struct Htpasswd {
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
pub(super) fn warn_if_exposed(path: &Path) {
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
pub(super) enum ServeSignal {
    Stop,
    Reload,
}

/// SIGINT and SIGTERM stop the server, SIGHUP reloads its users.
pub(super) struct ServeSignals {
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
