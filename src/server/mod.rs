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
pub mod resource;
pub mod storage;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use http::{Auth, RefusalObserver};
pub use listener::Serving;
pub use storage::Storage;
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
    pub observer: Option<Arc<dyn RefusalObserver>>,
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
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        prepare_data_dir(&config.data_dir)?;
        let state = Arc::new(AppState {
            storage: Storage::new(config.data_dir.clone()),
            auth: config.auth.clone(),
            append_only: config.append_only,
            verify_uploads: config.verify_uploads,
            observer: config.observer.clone(),
        });
        let serving = Serving::bind(config.listen, http::router(state), config.shutdown_grace)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        tracing::info!(target: "snapstorm::server", addr = %serving.addr(), data_dir = %config.data_dir.display(), "serving");
        Ok(RunningServer { serving, config })
    }
}

/// Checks the data directory, creating it (but not its parents) if missing.
fn prepare_data_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    let fail = |source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(fail)?
        }
        Err(e) => return Err(fail(e)),
    }
    std::fs::read_dir(dir).map_err(fail)?;
    Ok(())
}

/// A server that is serving; stop it with [`RunningServer::stop`].
pub struct RunningServer {
    serving: Serving,
    config: ServerConfig,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.serving.addr()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
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
