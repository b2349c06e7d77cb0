//! The embedded backend's Server: the repository on disk, snapstorm's REST
//! server serving it, and the fault proxy in front that clients connect
//! through. GC, listing and the full check run directly on the directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustic_backend::BackendOptions;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BytesList, CheckOptions, ConfigOptions, Credentials, FileType, Id, KeyOptions, LimitOption,
    OpenStatus, PruneOptions, ReadBackend, Repository, RepositoryBackends, RepositoryOptions,
    RusticResult, WriteBackend,
};
use serde_json::json;

use super::REPO_NAME;
use super::evidence::Evidence;
use super::inspect::Inspector;
use super::proxy::FaultProxy;
use crate::engine::brief::brief;
use crate::engine::damage::{Damage, DataRef, Unreadable};
use crate::engine::file_writer::disk_usage;
use crate::engine::guard::catch_panic;
use crate::engine::store::random_password;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientId, Details, GcDone, GcOptions, Problem,
    RepoCheck, Server, ServerInfo, SnapshotId,
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
    /// The repository read directly: what faults damage, what failures need.
    inspector: Arc<Inspector>,
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
            inspector: Arc::new(Inspector::new(&repo_dir, &key)),
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

    /// The repository's master key, for clients of this run.
    pub fn master_key(&self) -> MasterKey {
        self.key.clone()
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

    /// The repository read directly (damage, what a failure needs).
    pub fn inspector(&self) -> &Arc<Inspector> {
        &self.inspector
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

    /// The repository directory, with every pack a GC removes recorded
    /// first, with the blobs its header names.
    fn open_recording(&self) -> BackendResult<(Repository<OpenStatus>, Arc<Removals>)> {
        let local = local_backends(&self.repo_dir)?.repository();
        let removals = Arc::new(Removals {
            inner: local,
            inspector: self.inspector.clone(),
            removed: Mutex::new(Damage::new()),
        });
        let backends = RepositoryBackends::new(removals.clone(), None);
        let options = RepositoryOptions::default().no_cache(true);
        Ok((open_with_key(&options, &backends, &self.key)?, removals))
    }
}

/// The repository directory as a GC sees it, recording each pack it
/// removes — and the blobs the pack held, read from its header just before
/// — so an aggressive GC's damage is exactly what it removed.
struct Removals {
    inner: Arc<dyn WriteBackend>,
    inspector: Arc<Inspector>,
    removed: Mutex<Damage>,
}

impl Removals {
    fn removed(&self) -> Damage {
        self.removed.lock().expect("removals lock").clone()
    }
}

impl ReadBackend for Removals {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

impl WriteBackend for Removals {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.inner.write_bytes(tpe, id, cacheable, content)
    }
    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        if tpe == FileType::Pack {
            let path = self.inspector.pack_path(&id.to_hex());
            let damage = self
                .inspector
                .pack_damage(&path, || self.inspector.index().ok());
            self.removed.lock().expect("removals lock").extend(damage);
        }
        self.inner.remove(tpe, id, cacheable)
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

impl Server for EmbeddedServer {
    fn info(&self) -> ServerInfo {
        ServerInfo {
            backend: "embedded".into(),
            address: format!("http://{}/{REPO_NAME}/", self.addr()),
            behind_proxy: Some(self.server_addr().to_string()),
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

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let _one_at_a_time = self.gc_lock.lock().expect("gc lock");
        let _seen = self.evidence.gc_running();
        let (repo, removals) = self.open_recording()?;
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
        let removed = removals.removed();
        let packs = removed
            .iter()
            .filter(|r| matches!(r, DataRef::Pack(_)))
            .count();
        details.insert("packs-deleted".into(), json!(packs));
        Ok(GcDone {
            details,
            removed: Some(removed),
        })
    }

    fn list_snapshots(&self) -> BackendResult<Vec<SnapshotId>> {
        let repo = self.open_local()?;
        Ok(snapshot_ids(repo.get_all_snapshots()?))
    }

    /// snapstorm's own check of the repository (every file against its
    /// id, every pack the index names, everything every snapshot needs),
    /// whose problems name what they found unreadable; and rustic's check
    /// reading all data as a second opinion: what rustic finds where the
    /// first found nothing names nothing, so no damage explains it.
    fn verify_repo(&self) -> BackendResult<RepoCheck> {
        let mut problems = self
            .inspector
            .check()
            .map_err(|e| BackendError::Failed(format!("the repository check failed: {e}")))?;
        let rustic = rustic_check(self);
        if !rustic.is_empty() {
            let text = format!(
                "rustic's check found {} error(s): {}",
                rustic.len(),
                rustic.join("; ")
            );
            // Where snapstorm's check found problems too, rustic's words are
            // about them: explained as they are, no more.
            let named: Damage = problems
                .iter()
                .flat_map(|p| match &p.unreadable {
                    Unreadable::Named(items) => items.clone(),
                    Unreadable::Unknown => Damage::new(),
                })
                .collect();
            problems.push(Problem {
                text,
                unreadable: Unreadable::Named(named),
            });
        }
        Ok(RepoCheck {
            healthy: problems.is_empty(),
            problems,
        })
    }

    fn unreadable(&self, snapshots: &[SnapshotId]) -> Unreadable {
        match self.inspector.unreadable(snapshots) {
            Ok(items) => Unreadable::Named(items),
            Err(error) => {
                tracing::warn!(%error, "cannot tell what a failure could not read");
                Unreadable::Unknown
            }
        }
    }

    fn repository_size(&self) -> u64 {
        disk_usage(&self.data_dir)
    }
}

/// rustic's check reading all data, its errors in its own words (it can
/// itself fail, or panic, on a damaged repository: then that is its finding).
fn rustic_check(server: &EmbeddedServer) -> Vec<String> {
    let checked = catch_panic(|| -> BackendResult<Vec<String>> {
        let repo = server.open_local()?;
        let results = repo.check(CheckOptions::default().read_data(true))?;
        Ok(results
            .0
            .iter()
            // rustic does not export the level type; warnings (e.g. a pack no
            // index names yet) are not damage.
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, error)| error.to_string())
            .collect())
    });
    match checked {
        Ok(Ok(problems)) => problems,
        Ok(Err(error)) => vec![format!("the check failed: {error}")],
        Err(panic) => vec![format!("the check panicked: {}", brief(&panic.message))],
    }
}

pub(super) fn snapshot_ids(mut snapshots: Vec<SnapshotFile>) -> Vec<SnapshotId> {
    snapshots.sort_unstable();
    snapshots
        .into_iter()
        .map(|s| s.id.to_hex().to_string())
        .collect()
}
