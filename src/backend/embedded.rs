//! The embedded backend: snapstorm's own REST server serving a restic-format
//! repository, and `rustic_core` clients that reach it over HTTP.
//!
//! - The Server initializes (or reopens) the repository directly on disk,
//!   serves it on 127.0.0.1, adds one user per client with a random password
//!   and revokes it when the client goes. GC is a rustic prune run directly
//!   on the repository directory while the server keeps serving.
//! - A client opens the repository through rustic's REST backend with its
//!   own cache directory. rustic's REST client is blocking: every call here
//!   must run on a blocking thread, never inside async code.
//! - rustic_core takes no repository locks. The default GC is rustic's
//!   two-phase prune, which keeps unused data for a grace period; the
//!   aggressive GC deletes at once and can remove data an in-flight backup
//!   relies on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustic_backend::BackendOptions;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeyOptions, LimitOption,
    LocalDestination, LsOptions, OpenStatus, PathList, PruneOptions, Repository,
    RepositoryBackends, RepositoryOptions, RestoreOptions, RusticError, SnapshotOptions,
};
use serde_json::json;

use crate::engine::brief::brief;
use crate::engine::exec::catch_panic;
use crate::engine::file_writer::disk_usage;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientFactory, ClientId, ClientSnapshotter,
    Details, GcOptions, RepoCheck, Server, ServerInfo, SnapshotId, Snapshotter,
};
use crate::faults::proxy::FaultProxy;
use crate::server::{RestServer, RunningServer, ServerConfig, Users};

/// The repository's name on the server: clients use `http://…/repo/`.
pub const REPO_NAME: &str = "repo";

/// How patient rustic's REST client is. The defaults (5 retries, 10 minutes)
/// would hide a dead server for minutes; these make it an error in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub request_timeout: Duration,
    pub retries: u32,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            request_timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

impl From<Box<RusticError>> for BackendError {
    fn from(error: Box<RusticError>) -> Self {
        let text = error.display_log();
        if is_transient(&text) {
            BackendError::Transient(text)
        } else {
            BackendError::Failed(text)
        }
    }
}

/// Whether a rustic error says the request did not get through (the server
/// away, a refused user, a dropped connection) or raced a concurrent prune
/// that replaced an index file — as opposed to data that is not there or
/// not intact. Only the latter can make a restore a verification failure.
fn is_transient(text: &str) -> bool {
    let index_replaced = text.contains("404 Not Found") && text.contains("/index/");
    let not_through = [
        "error sending request",
        "request or response body error",
        "connection closed",
        "Connection refused",
        "operation timed out",
        "401 Unauthorized",
        "403 Forbidden",
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
    ]
    .iter()
    .any(|marker| text.contains(marker));
    index_replaced || not_through
}

/// Opens the repository directory itself (no server, no cache).
fn local_backends(repo_dir: &Path) -> BackendResult<RepositoryBackends> {
    Ok(BackendOptions::default()
        .repository(
            repo_dir
                .to_str()
                .ok_or_else(|| BackendError::failed("repository path is not UTF-8"))?,
        )
        .to_backends()?)
}

fn open_with_key(
    options: &RepositoryOptions,
    backends: &RepositoryBackends,
    key: &MasterKey,
) -> BackendResult<Repository<OpenStatus>> {
    Ok(Repository::new(options, backends)?.open(&Credentials::Masterkey(key.clone()))?)
}

/// The Server of the embedded backend: the REST server, and the fault
/// proxy in front of it that clients connect through.
pub struct EmbeddedServer {
    users: Arc<Users>,
    /// Each client's credentials, so a revoked client can be let in again.
    credentials: Mutex<HashMap<ClientId, ClientCredentials>>,
    running: tokio::sync::Mutex<Option<RunningServer>>,
    config: ServerConfig,
    proxy: FaultProxy,
    data_dir: PathBuf,
    repo_dir: PathBuf,
    key: MasterKey,
    /// Prunes never overlap each other.
    gc_lock: Mutex<()>,
}

impl EmbeddedServer {
    /// Creates the repository under `data_dir/repo` (or reopens it with
    /// `password`) and starts serving it on 127.0.0.1, behind the fault
    /// proxy (seeded with `seed` for its random choices).
    pub async fn start(
        data_dir: &Path,
        password: &str,
        seed: u64,
    ) -> BackendResult<Arc<EmbeddedServer>> {
        let repo_dir = data_dir.join(REPO_NAME);
        let key = {
            let repo_dir = repo_dir.clone();
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || init_or_open(&repo_dir, &password))
                .await
                .map_err(BackendError::failed)??
        };
        let users = Arc::new(Users::new());
        let mut config = ServerConfig::loopback(data_dir, users.clone());
        let running = RestServer::start(config.clone())
            .await
            .map_err(BackendError::failed)?;
        // A restart comes back on the same port.
        config.listen = running.addr();
        let proxy = FaultProxy::start(running.addr(), seed)
            .await
            .map_err(|e| BackendError::failed(format!("cannot start the fault proxy: {e}")))?;
        Ok(Arc::new(EmbeddedServer {
            users,
            credentials: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(Some(running)),
            config,
            proxy,
            data_dir: data_dir.to_path_buf(),
            repo_dir,
            key,
            gc_lock: Mutex::new(()),
        }))
    }

    /// Where clients connect (the proxy).
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// Where the REST server itself listens.
    pub fn server_addr(&self) -> SocketAddr {
        self.config.listen
    }

    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    pub fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    pub fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// Stops serving: the proxy, then the server (in-flight requests get the
    /// server's grace period).
    pub async fn stop(&self) {
        self.proxy.stop().await;
        if let Some(running) = self.running.lock().await.take() {
            running.stop().await;
        }
    }

    /// Serves again after [`EmbeddedServer::stop`], on the same ports, with the same users.
    pub async fn restart(&self) -> BackendResult<()> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            *running = Some(
                RestServer::start(self.config.clone())
                    .await
                    .map_err(BackendError::failed)?,
            );
        }
        self.proxy
            .restart()
            .await
            .map_err(|e| BackendError::failed(format!("cannot restart the fault proxy: {e}")))
    }

    /// Lets a revoked client in again, with the password it already has.
    pub fn readmit_client(&self, client: ClientId) -> BackendResult<()> {
        let credentials = self
            .credentials
            .lock()
            .expect("credentials lock")
            .get(&client)
            .cloned()
            .ok_or_else(|| BackendError::failed(format!("{client} was never authorized")))?;
        self.users
            .add(&credentials.user, &credentials.password, false)
            .map_err(BackendError::failed)
    }

    fn open_local(&self) -> BackendResult<Repository<OpenStatus>> {
        let options = RepositoryOptions::default().no_cache(true);
        open_with_key(&options, &local_backends(&self.repo_dir)?, &self.key)
    }
}

/// Initializes the repository if it has no config yet, else opens it; returns its master key.
fn init_or_open(repo_dir: &Path, password: &str) -> BackendResult<MasterKey> {
    std::fs::create_dir_all(repo_dir).map_err(BackendError::failed)?;
    let backends = local_backends(repo_dir)?;
    let options = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&options, &backends)?;
    let credentials = Credentials::password(password);
    let opened = if repo.config_id()?.is_none() {
        repo.init(
            &credentials,
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )?
    } else {
        repo.open(&credentials).map_err(|e| {
            if e.is_incorrect_password() {
                BackendError::failed(format!(
                    "the repository in {} does not accept this state directory's password",
                    repo_dir.display()
                ))
            } else {
                e.into()
            }
        })?
    };
    Ok(opened.key())
}

fn random_password() -> String {
    use rand::RngExt;
    hex::encode(rand::rng().random::<[u8; 16]>())
}

impl Server for EmbeddedServer {
    fn info(&self) -> ServerInfo {
        ServerInfo {
            backend: "embedded".into(),
            address: format!("http://{}/{REPO_NAME}/", self.addr()),
            repository: self.repo_dir.clone(),
        }
    }

    fn authorize_client(&self, client: ClientId) -> BackendResult<ClientCredentials> {
        let user = client.to_string();
        let password = random_password();
        self.users
            .add(&user, &password, false)
            .map_err(BackendError::failed)?;
        let credentials = ClientCredentials {
            url: format!("rest:http://{user}:{password}@{}/{REPO_NAME}/", self.addr()),
            user,
            password,
        };
        self.credentials
            .lock()
            .expect("credentials lock")
            .insert(client, credentials.clone());
        Ok(credentials)
    }

    fn remove_client(&self, client: ClientId) -> BackendResult<()> {
        self.users.revoke(&client.to_string());
        Ok(())
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<Details> {
        let _one_at_a_time = self.gc_lock.lock().expect("gc lock");
        let repo = self.open_local()?;
        let prune = if options.aggressive {
            PruneOptions::default()
                .instant_delete(true)
                .keep_delete(rustic_core::jiff::Span::new())
                .keep_pack(rustic_core::jiff::Span::new())
                .max_unused(LimitOption::Percentage(0))
                .max_repack(LimitOption::Unlimited)
        } else {
            PruneOptions::default()
        };
        let plan = repo.prune_plan(&prune)?;
        let stats = &plan.stats;
        let mut details = Details::new();
        details.insert("aggressive".into(), json!(options.aggressive));
        details.insert("packs-unused".into(), json!(stats.packs.unused));
        details.insert("packs-repacked".into(), json!(stats.packs.repack));
        details.insert("packs-removed".into(), json!(stats.packs_to_delete.remove));
        details.insert("bytes-unused".into(), json!(stats.size_sum().unused));
        repo.prune(&prune, plan)?;
        Ok(details)
    }

    fn list_snapshots(&self) -> BackendResult<Vec<SnapshotId>> {
        let repo = self.open_local()?;
        Ok(snapshot_ids(repo.get_all_snapshots()?))
    }

    /// rustic's check reading all data — which reads only the packs live
    /// snapshots use — plus a scan of every file against its id, so damage
    /// to data no snapshot needs any more is reported too.
    fn verify_repo(&self) -> BackendResult<RepoCheck> {
        // rustic's check can itself fail, or panic, on a damaged repository:
        // either way the damage is what gets reported.
        let checked = catch_panic(|| -> BackendResult<Vec<String>> {
            let repo = self.open_local()?;
            let results = repo.check(CheckOptions::default().read_data(true))?;
            Ok(results
                .0
                .iter()
                // rustic does not export the level type; warnings (e.g. a pack no
                // index names yet) are not damage.
                .filter(|(level, _)| format!("{level:?}") == "Error")
                .map(|(level, error)| format!("{level:?}: {error}"))
                .collect())
        });
        let mut problems = match checked {
            Ok(Ok(problems)) => problems,
            Ok(Err(error)) => vec![format!("Error: the repository check failed: {error}")],
            Err(panic) => vec![format!(
                "Error: the repository check panicked: {}",
                brief(&panic)
            )],
        };
        problems.extend(files_not_matching_their_id(&self.repo_dir));
        Ok(RepoCheck {
            healthy: problems.is_empty(),
            problems,
        })
    }

    fn repository_size(&self) -> u64 {
        disk_usage(&self.data_dir)
    }
}

/// Repository files (all but `config`) are named by the SHA-256 of their
/// content; every file whose content does not match is listed.
fn files_not_matching_their_id(repo_dir: &Path) -> Vec<String> {
    use rayon::prelude::*;
    use sha2::Digest;
    let files: Vec<PathBuf> = ["data", "index", "snapshots", "keys"]
        .iter()
        .flat_map(|kind| walkdir::WalkDir::new(repo_dir.join(kind)))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.into_path())
        .collect();
    let mut problems: Vec<String> = files
        .par_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let relative = path
                .strip_prefix(repo_dir)
                .unwrap_or(path)
                .display()
                .to_string();
            let mut file = match std::fs::File::open(path) {
                Ok(file) => file,
                // Removed meanwhile (a delete or a prune): nothing to compare.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => return Some(format!("Error: {relative}: cannot read: {e}")),
            };
            let mut hasher = sha2::Sha256::new();
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                match std::io::Read::read(&mut file, &mut buffer) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buffer[..n]),
                    Err(e) => return Some(format!("Error: {relative}: cannot read: {e}")),
                }
            }
            let actual = hex::encode(hasher.finalize());
            (actual != name).then(|| {
                format!("Error: {relative}: content does not match its id (SHA-256 {actual})")
            })
        })
        .collect();
    problems.sort();
    problems
}

fn snapshot_ids(mut snapshots: Vec<SnapshotFile>) -> Vec<SnapshotId> {
    snapshots.sort_unstable();
    snapshots
        .into_iter()
        .map(|s| s.id.to_hex().to_string())
        .collect()
}

/// What a connected client holds: enough to open the repository again
/// cheaply (with the master key, no key derivation) for every call, so no
/// state survives from one action to the next.
#[derive(Clone)]
struct Connection {
    backends: RepositoryBackends,
    options: RepositoryOptions,
    key: MasterKey,
}

/// A rustic_core client of the embedded server.
pub struct RusticClient {
    cache_dir: PathBuf,
    repo_password: String,
    timeouts: ClientTimeouts,
    connection: Mutex<Option<Connection>>,
}

impl RusticClient {
    pub fn new(cache_dir: PathBuf, repo_password: String, timeouts: ClientTimeouts) -> Self {
        RusticClient {
            cache_dir,
            repo_password,
            timeouts,
            connection: Mutex::new(None),
        }
    }

    fn open(&self, client: ClientId) -> BackendResult<Repository<OpenStatus>> {
        let connection = self
            .connection
            .lock()
            .expect("connection lock")
            .clone()
            .ok_or(BackendError::NotConnected(client))?;
        // The repository exists (this client opened it when it connected): if
        // it cannot be opened now, the requests did not get through. rustic
        // reports a refused `HEAD config` as a missing config, whatever the
        // status, so the error text alone would not say so.
        open_with_key(&connection.options, &connection.backends, &connection.key).map_err(|error| {
            match error {
                BackendError::Failed(text) => {
                    BackendError::Transient(format!("cannot open the repository: {text}"))
                }
                other => other,
            }
        })
    }
}

impl Snapshotter for RusticClient {
    fn create_snapshot(&self, client: ClientId, source: &Path) -> BackendResult<SnapshotId> {
        let repo = self.open(client)?.to_indexed_ids()?;
        let snapshot = SnapshotOptions::default()
            .host(client.to_string())
            .label("snapstorm".to_string())
            .to_snapshot()?;
        let source = source
            .to_str()
            .ok_or_else(|| BackendError::failed("source path is not UTF-8"))?;
        let sources = PathList::from_string(source)?
            .sanitize()
            .map_err(BackendError::failed)?;
        // Contents at the snapshot root, so a restore gives back the directory itself.
        let options = BackupOptions::default().as_path(PathBuf::from("/"));
        let snapshot = repo.backup(&options, &sources, snapshot)?;
        Ok(snapshot.id.to_hex().to_string())
    }

    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        let repo = self.open(client)?;
        Ok(snapshot_ids(repo.get_all_snapshots()?))
    }

    fn restore_snapshot(&self, client: ClientId, id: &str, target: &Path) -> BackendResult<()> {
        let repo = self.open(client)?.to_indexed()?;
        let snapshot = repo
            .get_snapshots(&[id])?
            .pop()
            .ok_or_else(|| BackendError::failed(format!("snapshot {id} not found")))?;
        let node = repo.node_from_snapshot_and_path(&snapshot, "")?;
        let entries = repo.ls(&node, &LsOptions::default())?;
        let target = target
            .to_str()
            .ok_or_else(|| BackendError::failed("restore path is not UTF-8"))?;
        let destination = LocalDestination::new(target, true, !node.is_dir())?;
        let options = RestoreOptions::default();
        let plan = repo.prepare_restore(&options, entries.clone(), &destination, false)?;
        repo.restore(plan, &options, entries, &destination)?;
        Ok(())
    }

    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        let repo = self.open(client)?;
        let id = id.parse().map_err(BackendError::failed)?;
        repo.delete_snapshots(&[id])?;
        Ok(())
    }

    fn run_gc(&self, _client: ClientId, _options: &GcOptions) -> BackendResult<Details> {
        Err(BackendError::failed(
            "GC runs on the Server, not on a client",
        ))
    }
}

impl ClientSnapshotter for RusticClient {
    fn connect(&self, _client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        std::fs::create_dir_all(&self.cache_dir).map_err(BackendError::failed)?;
        let rest_options = BTreeMap::from([
            ("retry".to_owned(), self.timeouts.retries.to_string()),
            (
                "timeout".to_owned(),
                format!("{}s", self.timeouts.request_timeout.as_secs().max(1)),
            ),
        ]);
        let backends = BackendOptions::default()
            .repository(&credentials.url)
            .options(rest_options)
            .to_backends()?;
        let options = RepositoryOptions::default().cache_dir(&self.cache_dir);
        let repo = Repository::new(&options, &backends)?
            .open(&Credentials::password(&self.repo_password))?;
        *self.connection.lock().expect("connection lock") = Some(Connection {
            backends,
            options,
            key: repo.key(),
        });
        Ok(())
    }

    fn disconnect(&self, _client: ClientId) -> BackendResult<()> {
        self.connection.lock().expect("connection lock").take();
        Ok(())
    }
}

/// Makes a `RusticClient` per client, each with its own cache directory.
pub struct RusticClients {
    pub cache_dir_for: Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>,
    pub repo_password: String,
    pub timeouts: ClientTimeouts,
}

impl ClientFactory for RusticClients {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(RusticClient::new(
            (self.cache_dir_for)(client),
            self.repo_password.clone(),
            self.timeouts,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient;

    #[test]
    fn requests_that_did_not_get_through_are_transient_lost_data_is_not() {
        assert!(is_transient(
            "Error: Backoff failed (kind: related to the backend): caused by: HTTP status client error (404 Not Found) for url (http://127.0.0.1:1/repo/index/35c4)"
        ));
        assert!(is_transient(
            "caused by: error sending request for url (http://127.0.0.1:1/repo/config)"
        ));
        assert!(is_transient(
            "HTTP status client error (401 Unauthorized) for url"
        ));
        assert!(!is_transient(
            "HTTP status client error (404 Not Found) for url (http://127.0.0.1:1/repo/data/ab/abcd)"
        ));
        assert!(!is_transient(
            "Error: Tree ID `18ac1e4c` not found in index"
        ));
        assert!(!is_transient("Data decryption failed, MAC check failed."));
    }
}
