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

mod http;
pub mod resource;
pub mod storage;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use http::Auth;
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
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(AppState {
            storage: Storage::new(config.data_dir.clone()),
            auth: config.auth.clone(),
            append_only: config.append_only,
            verify_uploads: config.verify_uploads,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(accept_loop(
            listener,
            http::router(state),
            stop_rx,
            config.shutdown_grace,
        ));
        tracing::info!(target: "snapstorm::server", %addr, data_dir = %config.data_dir.display(), "serving");
        Ok(RunningServer {
            addr,
            config,
            stop: Some(stop_tx),
            task: Some(task),
        })
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
    addr: SocketAddr,
    config: ServerConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// `http://user:password@addr/repo/`, the form restic and rustic take after `rest:`.
    pub fn repository_url(&self, user: &str, password: &str, repo: &str) -> String {
        format!("http://{user}:{password}@{}/{repo}/", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish for the configured
    /// grace period, then cuts the remaining connections.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
            tracing::info!(target: "snapstorm::server", addr = %self.addr, "stopped");
        }
    }
}

/// Accepts connections until told to stop; then closes the listener (new
/// connections are refused), gives in-flight requests `grace` to finish and
/// cuts whatever is left. Owning the connection tasks is what makes a stop
/// real, which the server-restart fault relies on.
async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    mut stop: oneshot::Receiver<()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let service = TowerToHyperService::new(app.clone());
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::trace!(target: "snapstorm::server", %error, "connection ended");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "snapstorm::server", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "snapstorm::server", "in-flight requests did not finish in time; cutting them");
    }
    connections.shutdown().await;
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
