//! snapstorm's own restic REST server (protocol v2, with v1 listings).
//!
//! snapstorm serves the repository under test itself rather than embedding
//! an existing server, because it must add and revoke users while clients
//! run, refuse deletes from append-only users, run several servers in one
//! process, and later inject faults at the HTTP level.
//!
//! ```no_run
//! # async fn demo() -> Result<(), snapstorm::server::ServerError> {
//! use std::sync::Arc;
//! use snapstorm::server::{RestServer, ServerConfig, Users};
//!
//! let users = Arc::new(Users::new());
//! users.add("client-1", "s3cret", false).unwrap();
//! let server = RestServer::start(ServerConfig::loopback("/tmp/repos", users.clone())).await?;
//! println!("rest:{}", server.repository_url("client-1", "s3cret", "repo"));
//! users.revoke("client-1"); // the next request of client-1 gets 401
//! server.stop().await;
//! # Ok(()) }
//! ```

pub(crate) mod http;
pub(crate) mod listener;
pub mod locks;
pub mod outage;
pub mod resource;
pub mod storage;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use http::{Auth, RequestObserver};
pub use listener::{ConnectionLimits, Serving};
pub use locks::LockOwner;
pub use outage::StorageOutage;
pub use storage::{Reclaimed, Storage};
pub use users::{Access, Users, UsersError};

use http::AppState;

/// How in-flight requests may take to finish when the server stops before
/// their connections are cut.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory holding the repositories (the root repository is this
    /// directory itself; `/NAME/` is `data_dir/NAME`).
    pub data_dir: PathBuf,
    /// Address to bind; port 0 lets the OS choose.
    pub listen: SocketAddr,
    pub auth: Auth,
    /// Make every user append-only.
    pub append_only: bool,
    /// Refuse uploads whose SHA-256 does not match their id.
    pub verify_uploads: bool,
    pub shutdown_grace: Duration,
    /// Told of every request the server refuses (401, 403).
    pub observer: Option<Arc<dyn RequestObserver>>,
    /// Timeouts and caps that keep stalled clients from starving the
    /// others; lowered at start when the open-file limit cannot hold them.
    pub limits: ConnectionLimits,
    /// The storage failing a share of requests when it is turned on.
    pub outage: Option<Arc<StorageOutage>>,
}

impl ServerConfig {
    /// A server on 127.0.0.1 with an OS-chosen port, requiring `users`.
    pub fn loopback(data_dir: impl Into<PathBuf>, users: Arc<Users>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth: Auth::Users(users),
            append_only: false,
            verify_uploads: true,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            observer: None,
            // Every client of a loopback server comes from 127.0.0.1 (the
            // engine's through its fault proxy), so a per-peer cap would
            // only be a second, smaller total cap.
            limits: ConnectionLimits {
                max_connections_per_peer: ConnectionLimits::DEFAULT_MAX_CONNECTIONS,
                ..ConnectionLimits::default()
            },
            outage: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr}: {source} (is another server using that port? choose another with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Entry point: starts servers.
pub struct RestServer;

impl RestServer {
    /// Binds and starts serving in a background task of the current tokio runtime.
    ///
    /// Nothing is written before the port is bound: a start that fails
    /// (port in use) leaves no data directory behind. Before the first
    /// connection is accepted, the temp files of uploads a crash broke off
    /// are removed.
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        let data_dir = check_data_dir(&config.data_dir)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        if data_dir == DataDir::Missing {
            create_data_dir(&config.data_dir)?;
        }
        let storage = Storage::new(config.data_dir.clone());
        let reclaimed = {
            let storage = storage.clone();
            tokio::task::spawn_blocking(move || storage.remove_stale_uploads())
                .await
                .unwrap_or_default()
        };
        if reclaimed.files > 0 {
            tracing::info!(
                target: "snapstorm::server",
                files = reclaimed.files,
                bytes = reclaimed.bytes,
                "removed {} partial upload{} left by an earlier run ({})",
                reclaimed.files,
                if reclaimed.files == 1 { "" } else { "s" },
                bytesize::ByteSize(reclaimed.bytes),
            );
        }
        let limits = fit_to_open_files(config.limits);
        let state = Arc::new(AppState {
            storage,
            auth: config.auth.clone(),
            append_only: config.append_only,
            verify_uploads: config.verify_uploads,
            observer: config.observer.clone(),
            outage: config.outage.clone(),
            password_checks: http::AppState::password_check_slots(),
        });
        let serving = Serving::serve(listener, http::router(state), config.shutdown_grace, limits)
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        tracing::info!(target: "snapstorm::server", addr = %serving.addr(), data_dir = %config.data_dir.display(), "serving");
        Ok(RunningServer {
            serving,
            config,
            limits,
            reclaimed,
        })
    }
}

/// Lowers `limits` to what the process's open-file limit can hold, saying so.
fn fit_to_open_files(limits: ConnectionLimits) -> ConnectionLimits {
    let Some(open_files) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    else {
        return limits;
    };
    let fitted = limits.fitted_to_open_files(open_files);
    if fitted != limits {
        tracing::warn!(
            target: "snapstorm::server",
            "the open-file limit ({open_files}) holds only {} connections ({} per peer) instead of {}; raise it (ulimit -n {}) for more",
            fitted.max_connections,
            fitted.max_connections_per_peer,
            limits.max_connections,
            limits.open_files_needed(),
        );
    }
    fitted
}

/// Raises this process's soft open-file limit towards what `limits` need,
/// as far as the hard limit allows. For programs whose main job is serving
/// (`snapstorm serve`); a library embedding the server decides for itself.
pub fn raise_open_file_limit(limits: &ConnectionLimits) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let Some(soft) = current.current else {
        return;
    };
    let wanted = current.maximum.map_or(limits.open_files_needed(), |hard| {
        hard.min(limits.open_files_needed())
    });
    if wanted > soft {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: current.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(target: "snapstorm::server", %error, "cannot raise the open-file limit");
        }
    }
}

/// Whether the data directory exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataDir {
    Present,
    Missing,
}

/// Checks the data directory without writing anything.
fn check_data_dir(dir: &std::path::Path) -> Result<DataDir, ServerError> {
    let fail = |source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            std::fs::read_dir(dir).map_err(fail)?;
            Ok(DataDir::Present)
        }
        Ok(_) => Err(fail(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DataDir::Missing),
        Err(e) => Err(fail(e)),
    }
}

/// Creates the data directory (but not its parents).
fn create_data_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    std::fs::create_dir(dir).map_err(|source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// A server that is serving; stop it with [`RunningServer::stop`].
pub struct RunningServer {
    serving: Serving,
    config: ServerConfig,
    limits: ConnectionLimits,
    reclaimed: Reclaimed,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The limits in force: the configured ones, fitted to the open-file limit.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// What the start removed of uploads a crash broke off.
    pub fn reclaimed(&self) -> Reclaimed {
        self.reclaimed
    }

    /// `http://user:password@addr/repo/`, the form restic and rustic take after `rest:`.
    pub fn repository_url(&self, user: &str, password: &str, repo: &str) -> String {
        format!("http://{user}:{password}@{}/{repo}/", self.addr())
    }

    /// Stops accepting, lets in-flight requests finish for the configured
    /// grace period, then cuts the remaining connections.
    pub async fn stop(self) {
        let addr = self.addr();
        self.serving.stop().await;
        tracing::info!(target: "snapstorm::server", %addr, "stopped");
    }
}
