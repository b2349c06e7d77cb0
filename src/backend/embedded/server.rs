//! The embedded backend's Server: the repository on disk, snapstorm's REST
//! server serving it, and the fault proxy in front that clients connect
//! through. GC, listing and the full check run directly on the directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_backend::BackendOptions;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, LimitOption, OpenStatus, PruneOptions,
    Repository, RepositoryBackends, RepositoryOptions,
};
use serde_json::json;

use super::REPO_NAME;
use super::evidence::Evidence;
use super::proxy::FaultProxy;
use crate::engine::brief::brief;
use crate::engine::file_writer::disk_usage;
use crate::engine::guard::catch_panic;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientId, Details, GcOptions, RepoCheck,
    Server, ServerInfo, SnapshotId,
};
use crate::server::{RestServer, RunningServer, ServerConfig, Users};

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

pub(super) fn open_with_key(
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
    /// What happened to requests, outages and GCs: the clients' evidence.
    evidence: Arc<Evidence>,
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
        let evidence = Arc::new(Evidence::new());
        let mut config = ServerConfig::loopback(data_dir, users.clone());
        config.observer = Some(evidence.clone());
        let running = RestServer::start(config.clone())
            .await
            .map_err(BackendError::failed)?;
        // A restart comes back on the same port.
        config.listen = running.addr();
        let proxy = FaultProxy::start(running.addr(), seed, evidence.clone())
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
            evidence,
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

    pub fn evidence(&self) -> &Arc<Evidence> {
        &self.evidence
    }

    /// Stops serving: the proxy, then the server (in-flight requests get the
    /// server's grace period).
    pub async fn stop(&self) {
        self.evidence.server_stopped();
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
            .map_err(|e| BackendError::failed(format!("cannot restart the fault proxy: {e}")))?;
        self.evidence.server_serving();
        Ok(())
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
                    "the repository in {} does not accept the password in this state dir's state.json (repository_password); restore state.json from a copy, or choose another --state-dir",
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
        let _seen = self.evidence.gc_running();
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

pub(super) fn snapshot_ids(mut snapshots: Vec<SnapshotFile>) -> Vec<SnapshotId> {
    snapshots.sort_unstable();
    snapshots
        .into_iter()
        .map(|s| s.id.to_hex().to_string())
        .collect()
}
