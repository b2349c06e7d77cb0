//! The embedded backend's Server: the repository's storage, and the fault
//! proxy in front that clients connect through. The storage is a directory
//! (the state dir's own, or one `--repository` names) that snapstorm's REST
//! server serves, a REST server snapstorm does not run, or S3 storage. GC,
//! listing and the check run on the storage directly, never through the
//! fault proxy: on the directory, with rustic's REST backend through a
//! loopback proxy of the server's own that adds the external server's
//! credentials, or on the bucket with the location's keys.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustic_backend::BackendOptions;
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BytesList, CheckOptions, ConfigOptions, Credentials, FileType, Id, KeyOptions, LimitOption,
    OpenStatus, PruneOptions, ReadBackend, Repository, RepositoryBackends, RepositoryOptions,
    RusticError, RusticResult, WriteBackend,
};
use serde_json::json;

use super::REPO_NAME;
use super::evidence::Evidence;
use super::files::{RepoFiles, RestFiles};
use super::inspect::{Index, Inspector};
use super::proxy::{FaultProxy, Upstream, UpstreamAuth, UpstreamTls};
use super::race::IndexHolds;
use crate::backend::location::{
    RepositoryLocation, RestLocation, S3_ACCESS_KEY_ENV, S3_REGION_ENV, S3_SECRET_KEY_ENV,
    S3Location, Secret,
};
use crate::backend::s3::{S3Backend, S3Patience};
use crate::backend::tls::HandshakeError;
use crate::engine::brief::brief;
use crate::engine::damage::{Damage, DataRef, Unreadable};
use crate::engine::file_writer::disk_usage;
use crate::engine::guard::catch_panic;
use crate::engine::store::random_password;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientId, Details, GcDone, GcOptions, Problem,
    RacedUpload, RepoCheck, Server, ServerInfo, SnapshotId,
};
use crate::faults::RacedStep;
use crate::server::{RestServer, RunningServer, ServerConfig, StorageOutage, Users};

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

/// How patient the server's own REST client is with an external server:
/// a dead server is an error in seconds, as for the clients.
fn rest_options() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("retry".to_owned(), "2".to_owned()),
        ("timeout".to_owned(), "60s".to_owned()),
    ])
}

/// How patient the server's own work is with S3 storage: as with an
/// external REST server.
const S3_PATIENCE: S3Patience = S3Patience {
    retries: 2,
    timeout: std::time::Duration::from_secs(60),
};

/// Opens a bucket's repository with the location's keys.
fn s3_backends(location: &S3Location) -> RusticResult<RepositoryBackends> {
    Ok(RepositoryBackends::new(
        Arc::new(S3Backend::new(location, S3_PATIENCE)?),
        None,
    ))
}

/// Opens an external REST server's repository through the server's own,
/// undisturbed proxy (not the fault proxy).
fn rest_backends(url: &Secret) -> RusticResult<RepositoryBackends> {
    BackendOptions::default()
        .repository(url.expose())
        .options(rest_options())
        .to_backends()
}

/// Where the repository's files are, as the server's own work reaches them.
enum Storage {
    /// A directory snapstorm's REST server serves; read directly.
    Directory {
        /// What the repository's size is measured on.
        data_dir: PathBuf,
        repo_dir: PathBuf,
        /// The repository read directly: what faults damage, what failures need.
        inspector: Arc<Inspector>,
    },
    /// A REST server snapstorm does not run, reached through a proxy of
    /// the server's own that adds the storage's credentials.
    Rest {
        /// That proxy's URL, with the internal user's password.
        url: Secret,
        internal: Secret,
        _direct: FaultProxy,
        /// The repository read (and damaged) through that proxy.
        inspector: Arc<Inspector>,
    },
    /// S3 storage, reached directly with the location's keys; clients sign
    /// their own requests and come through their own ports of the fault
    /// proxy.
    S3 {
        location: S3Location,
        /// The repository read through the storage's API with those keys.
        inspector: Arc<Inspector>,
    },
}

/// The user of the server's own proxy to an external storage.
const DIRECT_USER: &str = "snapstorm";

impl Storage {
    fn backends(&self) -> BackendResult<RepositoryBackends> {
        match self {
            Storage::Directory { repo_dir, .. } => local_backends(repo_dir),
            Storage::Rest { url, .. } => Ok(rest_backends(url)?),
            Storage::S3 { location, .. } => Ok(s3_backends(location)?),
        }
    }
}

/// Why the repository cannot be used; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot reach {location} ({why}); start the server there, or correct --repository")]
    Unreachable { location: String, why: String },
    #[error(
        "{location} refused snapstorm's credentials ({why}); set RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD (or --repository-credentials FILE) to a user of that server"
    )]
    Refused { location: String, why: String },
    #[error(
        "{location} refused the S3 keys ({why}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key pair of that storage that may read and write the bucket"
    )]
    KeysRefused { location: String, why: String },
    #[error(
        "the repository at {location} does not accept the password in this state dir's state.json (repository_password); give the state dir it was made with, or another --repository"
    )]
    OtherPassword { location: String },
    #[error("--repository {location}: {why}")]
    Directory { location: String, why: String },
    #[error(
        "{location} showed a certificate snapstorm does not trust ({why}); give its CA's certificate with --cacert FILE (or RESTIC_CACERT), or correct the host name in --repository"
    )]
    Untrusted { location: String, why: String },
    #[error("cannot start the repository server: {0}")]
    Backend(#[from] BackendError),
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
    /// snapstorm's REST server, when it serves the storage.
    config: Option<ServerConfig>,
    proxy: FaultProxy,
    /// Where the proxy forwards: snapstorm's REST server or the external one.
    upstream: SocketAddr,
    storage: Storage,
    /// Where the location names the repository: what clients ask the proxy
    /// for (`/repo/`, `/` or the external server's path).
    url_path: String,
    location: RepositoryLocation,
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
        Self::start_on(&RepositoryLocation::Embedded, data_dir, password, seed)
            .await
            .map_err(|e| match e {
                StorageError::Backend(error) => error,
                other => BackendError::failed(other.to_string()),
            })
    }

    /// Creates the repository at `location` (or reopens it with `password`)
    /// and puts the fault proxy in front of it; the state dir's own
    /// repository is under `data_dir/repo`. Nothing is created where the
    /// storage cannot be reached or refuses snapstorm.
    pub async fn start_on(
        location: &RepositoryLocation,
        data_dir: &Path,
        password: &str,
        seed: u64,
    ) -> Result<Arc<EmbeddedServer>, StorageError> {
        let evidence = Arc::new(Evidence::new());
        let users = Arc::new(Users::new());
        let (storage, key, url_path, running, config, upstream) = match location {
            RepositoryLocation::Rest(rest) => {
                let tls = storage_tls(location)?;
                let addr = reach(&rest.to_string(), &rest.authority(), tls.as_ref()).await?;
                let auth = UpstreamAuth::basic(rest.user(), rest.password().map(Secret::expose));
                // The server's own work (GC, listing, check, restic prune)
                // reaches the storage through a proxy of its own, never
                // disturbed, that adds the storage's credentials: the
                // storage's password is in no URL, error text, log line or
                // process environment.
                let direct = FaultProxy::start(
                    Upstream {
                        addr,
                        auth: auth.clone(),
                        tls: tls.clone(),
                    },
                    seed,
                    Arc::new(Evidence::new()),
                )
                .await
                .map_err(|e| BackendError::failed(format!("cannot start a proxy: {e}")))?;
                let internal = random_password();
                direct.admit(DIRECT_USER, &internal);
                let url = Secret::new(format!(
                    "rest:http://{DIRECT_USER}:{internal}@{}{}",
                    direct.addr(),
                    rest.path()
                ));
                let base = format!("http://{}{}", direct.addr(), rest.path());
                let internal = Secret::new(internal);
                // reqwest's blocking client is built off the async threads.
                let (key, files) = {
                    let (url, password, location, internal) = (
                        url.clone(),
                        password.to_owned(),
                        location.clone(),
                        internal.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        let key =
                            init_or_open_external(&location, || rest_backends(&url), &password)?;
                        let backend = rest_backends(&url)
                            .map_err(BackendError::from)?
                            .repository();
                        let files = RestFiles::new(backend, base, DIRECT_USER, internal)
                            .map_err(BackendError::failed)?;
                        Ok::<_, StorageError>((key, files))
                    })
                    .await
                    .map_err(BackendError::failed)??
                };
                let storage = Storage::Rest {
                    url,
                    internal,
                    _direct: direct,
                    inspector: Arc::new(Inspector::new(RepoFiles::Rest(files), &key)),
                };
                let upstream = Upstream { addr, auth, tls };
                (storage, key, rest.path().to_owned(), None, None, upstream)
            }
            RepositoryLocation::S3(s3) => {
                let tls = storage_tls(location)?;
                let addr = reach(&s3.to_string(), &s3.authority(), tls.as_ref()).await?;
                // reqwest's blocking client is built off the async threads.
                let (key, files) = {
                    let (s3, password) = (s3.clone(), password.to_owned());
                    tokio::task::spawn_blocking(move || {
                        let key = init_or_open_external(
                            &RepositoryLocation::S3(s3.clone()),
                            || s3_backends(&s3),
                            &password,
                        )?;
                        let files = S3Backend::new(&s3, S3_PATIENCE).map_err(BackendError::from)?;
                        Ok::<_, StorageError>((key, files))
                    })
                    .await
                    .map_err(BackendError::failed)??
                };
                let upstream = Upstream {
                    addr,
                    auth: UpstreamAuth::Signed,
                    tls,
                };
                let storage = Storage::S3 {
                    location: s3.clone(),
                    inspector: Arc::new(Inspector::new(RepoFiles::S3(Arc::new(files)), &key)),
                };
                let url_path = match s3.prefix() {
                    "" => format!("/{}/", s3.bucket()),
                    prefix => format!("/{}/{prefix}/", s3.bucket()),
                };
                (storage, key, url_path, None, None, upstream)
            }
            local => {
                // snapstorm's server serves its data directory; a directory
                // `--repository` names is served itself, at `/`.
                let (served, repo_dir, url_path) = match local {
                    RepositoryLocation::Directory(dir) => {
                        check_directory(dir)?;
                        (dir.clone(), dir.clone(), "/".to_owned())
                    }
                    _ => (
                        data_dir.to_path_buf(),
                        data_dir.join(REPO_NAME),
                        format!("/{REPO_NAME}/"),
                    ),
                };
                let key = {
                    let (repo_dir, password) = (repo_dir.clone(), password.to_owned());
                    tokio::task::spawn_blocking(move || init_or_open(&repo_dir, &password))
                        .await
                        .map_err(BackendError::failed)??
                };
                let mut config = ServerConfig::loopback(&served, users.clone());
                config.observer = Some(evidence.clone());
                config.outage = Some(Arc::new(StorageOutage::new(seed)));
                let running = RestServer::start(config.clone())
                    .await
                    .map_err(BackendError::failed)?;
                // A restart comes back on the same port.
                config.listen = running.addr();
                let upstream = Upstream::passing(running.addr());
                let storage = Storage::Directory {
                    data_dir: served,
                    inspector: Arc::new(Inspector::new(
                        RepoFiles::Directory(repo_dir.clone()),
                        &key,
                    )),
                    repo_dir,
                };
                (
                    storage,
                    key,
                    url_path,
                    Some(running),
                    Some(config),
                    upstream,
                )
            }
        };
        let upstream_addr = upstream.addr;
        let proxy = FaultProxy::start(upstream, seed, evidence.clone())
            .await
            .map_err(|e| BackendError::failed(format!("cannot start the fault proxy: {e}")))?;
        Ok(Arc::new(EmbeddedServer {
            users,
            credentials: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(running),
            config,
            proxy,
            upstream: upstream_addr,
            storage,
            url_path,
            location: location.clone(),
            key,
            gc_lock: Mutex::new(()),
            evidence,
        }))
    }

    /// Where clients connect (the proxy).
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// Where the storage itself listens (snapstorm's REST server or the
    /// external one).
    pub fn server_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// Where the repository is, as `--repository` names it.
    pub fn location(&self) -> &RepositoryLocation {
        &self.location
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

    /// The failing storage of `storage-errors`, where snapstorm's own
    /// server serves the storage; none in front of an external one.
    pub fn storage_outage(&self) -> Option<&Arc<StorageOutage>> {
        self.config
            .as_ref()
            .and_then(|config| config.outage.as_ref())
    }

    /// The repository's directory, where the storage is one.
    pub fn repo_dir(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Directory { repo_dir, .. } => Some(repo_dir),
            Storage::Rest { .. } | Storage::S3 { .. } => None,
        }
    }

    /// The repository as a program run on it directly names it (restic's
    /// `RESTIC_REPOSITORY`): the directory, the URL of the server's own
    /// proxy to the external storage — a secret, for a process's
    /// environment only — or the S3 location.
    pub fn direct_repository(&self) -> Secret {
        match &self.storage {
            Storage::Directory { repo_dir, .. } => Secret::new(repo_dir.display().to_string()),
            Storage::Rest { url, .. } => url.clone(),
            Storage::S3 { location, .. } => Secret::new(location.to_string()),
        }
    }

    /// What a program run on the storage directly reads from its
    /// environment besides the repository: an S3 storage's keys.
    pub fn direct_environment(&self) -> Vec<(String, String)> {
        match &self.storage {
            Storage::S3 { location, .. } => s3_environment(location),
            Storage::Directory { .. } | Storage::Rest { .. } => Vec::new(),
        }
    }

    /// What a program run on the storage directly must never print.
    pub fn storage_secrets(&self) -> Vec<String> {
        match &self.storage {
            Storage::Directory { .. } => Vec::new(),
            Storage::Rest { internal, .. } => vec![internal.expose().to_owned()],
            Storage::S3 { location, .. } => location
                .secret_key()
                .map(|key| vec![key.expose().to_owned()])
                .unwrap_or_default(),
        }
    }

    pub fn evidence(&self) -> &Arc<Evidence> {
        &self.evidence
    }

    /// The repository read directly (damage, what a failure needs): the
    /// directory's files, or the storage's through its API.
    pub fn inspector(&self) -> &Arc<Inspector> {
        match &self.storage {
            Storage::Directory { inspector, .. }
            | Storage::S3 { inspector, .. }
            | Storage::Rest { inspector, .. } => inspector,
        }
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
        if let (None, Some(config)) = (running.as_ref(), &self.config) {
            *running = Some(
                RestServer::start(config.clone())
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
        self.admit(&credentials.user, &credentials.password)
    }

    /// Lets a user in: at the proxy where it checks clients (the storage
    /// has one user), else at snapstorm's REST server.
    fn admit(&self, user: &str, password: &str) -> BackendResult<()> {
        if self.proxy.checks_clients() {
            self.proxy.admit(user, password);
            return Ok(());
        }
        self.users
            .add(user, password, false)
            .map_err(BackendError::failed)
    }

    fn open_local(&self) -> BackendResult<Repository<OpenStatus>> {
        let options = RepositoryOptions::default().no_cache(true);
        open_with_key(&options, &self.storage.backends()?, &self.key)
    }

    /// The packs the GC removed that clients had stored and that the
    /// index did not name when the GC began (`indexed`): a running backup
    /// stored them and had not yet written its index, or had written it but
    /// not yet its snapshot, so the GC took them for unused (a killed
    /// backup's leftovers are such packs too; a replay tells them apart by
    /// the step that stored them). Who stored each, and when, says which.
    fn raced(&self, removed: &Damage, indexed: Option<&Index>) -> Vec<RacedUpload> {
        let Some(indexed) = indexed else {
            return Vec::new();
        };
        removed
            .iter()
            .filter_map(|item| match item {
                DataRef::Pack(id) if !indexed.names_pack(id) => {
                    let (user, stored) = self.proxy.stored_when(id)?;
                    Some(RacedUpload {
                        client: user.parse().ok()?,
                        stored,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The repository directory, with every pack a GC removes recorded
    /// first, with the blobs its header names; a GC that races a backup
    /// lists the packs as `race` says.
    fn open_recording(
        &self,
        race: Option<Racing>,
    ) -> BackendResult<(Repository<OpenStatus>, Arc<Removals>)> {
        let inner = self.storage.backends()?.repository();
        let removals = Arc::new(Removals {
            inner,
            inspector: self.inspector().clone(),
            removed: Mutex::new(Damage::new()),
            race,
            listed: Mutex::new(None),
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
    /// Reads a removed pack's header (and the index) just before.
    inspector: Arc<Inspector>,
    removed: Mutex<Damage>,
    /// The backup the GC races, as in the recording: its packs are listed
    /// only once the backup's index upload waits.
    race: Option<Racing>,
    /// When the GC listed the packs.
    listed: Mutex<Option<std::time::Instant>>,
}

/// The backup a GC races (see [`IndexHolds`]).
#[derive(Clone)]
struct Racing {
    holds: Arc<IndexHolds>,
    race: RacedStep,
}

/// Ends a race when the GC ends, listed or not.
struct Settled(Racing);

impl Drop for Settled {
    fn drop(&mut self) {
        self.0.holds.settle(self.0.race);
    }
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
        if tpe != FileType::Pack {
            return self.inner.list_with_size(tpe);
        }
        // The prune's listing of the packs, after it read the index.
        let listed = match &self.race {
            Some(Racing { holds, race }) => {
                let user = ClientId(race.client).to_string();
                holds.race(&user, *race, || self.inner.list_with_size(tpe))?
            }
            None => self.inner.list_with_size(tpe)?,
        };
        *self.listed.lock().expect("listed lock") = Some(std::time::Instant::now());
        Ok(listed)
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
            let inspector = &self.inspector;
            let damage = inspector.pack_damage(&id.to_hex(), None, || inspector.index().ok());
            self.removed.lock().expect("removals lock").extend(damage);
        }
        self.inner.remove(tpe, id, cacheable)
    }
}

/// A directory `--repository` names must be there (a mount that is not
/// mounted must not become an empty local directory) and be writable.
fn check_directory(dir: &Path) -> Result<(), StorageError> {
    let error = |why: String| StorageError::Directory {
        location: dir.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        error(format!(
            "{e}; create the directory (or mount the storage there) first"
        ))
    })?;
    if !meta.is_dir() {
        return Err(error("not a directory".into()));
    }
    if meta.permissions().readonly() {
        return Err(error(
            "not writable; give a directory snapstorm may write".into(),
        ));
    }
    Ok(())
}

/// Whether the external REST server refuses deletes (rest-server
/// `--append-only`), asked before anything is written: a DELETE of a
/// snapshot no repository has (all zeros) is answered 403 by an append-only
/// server, and success or 404 by others. An unreachable server, or one that
/// refuses the credentials, is an error here already.
pub async fn refuses_deletes(rest: &RestLocation) -> Result<bool, StorageError> {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    let location = RepositoryLocation::Rest(rest.clone());
    let tls = storage_tls(&location)?;
    let addr = reach(&rest.to_string(), &rest.authority(), tls.as_ref()).await?;
    let upstream = Upstream {
        addr,
        auth: UpstreamAuth::Client,
        tls,
    };
    let connector =
        super::proxy::upstream_connector(upstream.tls.as_ref()).map_err(BackendError::failed)?;
    let client: Client<_, Empty<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let uri = format!(
        "{}{}snapshots/{}",
        upstream.base(),
        rest.path(),
        "0".repeat(64)
    );
    let mut request = http::Request::delete(uri)
        .body(Empty::new())
        .map_err(BackendError::failed)?;
    if let UpstreamAuth::Storage(Some(value)) =
        UpstreamAuth::basic(rest.user(), rest.password().map(Secret::expose))
    {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| StorageError::Unreachable {
            location: rest.to_string(),
            why: "no answer in 10 s".into(),
        })?
        .map_err(|e| StorageError::Unreachable {
            location: rest.to_string(),
            why: e.to_string(),
        })?;
    match answer.status().as_u16() {
        401 => Err(StorageError::Refused {
            location: rest.to_string(),
            why: "HTTP 401".into(),
        }),
        403 => Ok(true),
        _ => Ok(false),
    }
}

/// The keys and region of S3 storage as restic (and the AWS tools) read
/// them from the environment.
pub(crate) fn s3_environment(location: &S3Location) -> Vec<(String, String)> {
    vec![
        (
            S3_ACCESS_KEY_ENV.to_owned(),
            location.access_key().unwrap_or_default().to_owned(),
        ),
        (
            S3_SECRET_KEY_ENV.to_owned(),
            location
                .secret_key()
                .map(|key| key.expose().to_owned())
                .unwrap_or_default(),
        ),
        (S3_REGION_ENV.to_owned(), location.region().to_owned()),
    ]
}

/// Over https, how snapstorm's connections to the storage trust it: the
/// system's roots and `--cacert`'s. `None` for plain HTTP.
fn storage_tls(location: &RepositoryLocation) -> Result<Option<UpstreamTls>, StorageError> {
    let (host, ca) = match location {
        RepositoryLocation::Rest(rest) if rest.is_https() => (rest.host(), rest.ca()),
        RepositoryLocation::S3(s3) if s3.is_https() => (s3.host(), s3.ca()),
        _ => return Ok(None),
    };
    let config = ca.client_config().map_err(|e| StorageError::Untrusted {
        location: location.to_string(),
        why: format!("no TLS configuration: {e}"),
    })?;
    Ok(Some(UpstreamTls {
        // An address in brackets (`[::1]`) is a name without them.
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        config,
    }))
}

/// The storage answers where `--repository` says, over https with a
/// certificate snapstorm trusts: asked before anything is written.
pub async fn reach_storage(location: &RepositoryLocation) -> Result<(), StorageError> {
    let authority = match location {
        RepositoryLocation::Rest(rest) => rest.authority(),
        RepositoryLocation::S3(s3) => s3.authority(),
        _ => return Ok(()),
    };
    let tls = storage_tls(location)?;
    reach(&location.to_string(), &authority, tls.as_ref()).await?;
    Ok(())
}

/// A storage's address (`authority`, `HOST:PORT`), resolved once (the
/// proxy connects to it) and reached; over https, its certificate is
/// checked too, so that one not trusted is told as such, not as a storage
/// that does not answer.
async fn reach(
    location: &str,
    authority: &str,
    tls: Option<&UpstreamTls>,
) -> Result<SocketAddr, StorageError> {
    let addr = resolve(location, authority).await?;
    if let Some(tls) = tls {
        let handshake = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            crate::backend::tls::handshake(addr, &tls.host, tls.config.clone()),
        )
        .await
        .map_err(|_| StorageError::Unreachable {
            location: location.to_owned(),
            why: format!("no TLS handshake with {addr} in 5 s"),
        })?;
        match handshake {
            Ok(()) => {}
            Err(HandshakeError::Untrusted(why)) => {
                return Err(StorageError::Untrusted {
                    location: location.to_owned(),
                    why,
                });
            }
            Err(HandshakeError::Failed(why)) => {
                return Err(StorageError::Unreachable {
                    location: location.to_owned(),
                    why,
                });
            }
        }
    }
    Ok(addr)
}

/// A storage's address (`authority`, `HOST:PORT`), resolved once: the
/// first of its addresses that takes a connection (`localhost` may resolve
/// to ::1 first, where a server on 127.0.0.1 does not listen).
async fn resolve(location: &str, authority: &str) -> Result<SocketAddr, StorageError> {
    let unreachable = |why: String| StorageError::Unreachable {
        location: location.to_owned(),
        why,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| unreachable(format!("cannot resolve {authority}: {e}")))?
        .collect();
    let mut last = format!("{authority} resolves to no address");
    for addr in addrs {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(addr),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("no answer from {addr} in 5 s"),
        }
    }
    Err(unreachable(last))
}

/// Initializes the external storage's repository if it has no config yet,
/// else opens it; an answer that refuses snapstorm's credentials, or a
/// repository that refuses the state's password, names the fix.
fn init_or_open_external(
    location: &RepositoryLocation,
    backends: impl FnOnce() -> RusticResult<RepositoryBackends>,
    password: &str,
) -> Result<MasterKey, StorageError> {
    let shown = location.to_string();
    let on_s3 = matches!(location, RepositoryLocation::S3(_));
    let classify = |error: Box<rustic_core::RusticError>| -> StorageError {
        let answer = super::errors::http_answer(&*error);
        let why = brief(&error.display_log());
        match answer {
            Some(Some(401 | 403)) if on_s3 => StorageError::KeysRefused {
                location: shown.clone(),
                why,
            },
            Some(Some(401 | 403)) => StorageError::Refused {
                location: shown.clone(),
                why,
            },
            Some(Some(_)) | None => StorageError::Backend(error.into()),
            Some(None) => StorageError::Unreachable {
                location: shown.clone(),
                why,
            },
        }
    };
    let backends = backends().map_err(classify)?;
    let options = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&options, &backends).map_err(classify)?;
    let credentials = Credentials::password(password);
    let opened = if repo.config_id().map_err(classify)?.is_none() {
        repo.init(
            &credentials,
            &KeyOptions::default(),
            &ConfigOptions::default(),
        )
        .map_err(classify)?
    } else {
        repo.open(&credentials).map_err(|e| {
            if e.is_incorrect_password() {
                StorageError::OtherPassword {
                    location: shown.clone(),
                }
            } else {
                classify(e)
            }
        })?
    };
    Ok(opened.key())
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
            address: format!("http://{}{}", self.addr(), self.url_path),
            // The header names the storage behind the proxy: snapstorm's
            // own REST server, or the location without its credentials.
            behind_proxy: Some(match &self.location {
                RepositoryLocation::Embedded => self.server_addr().to_string(),
                location => location.short(),
            }),
            repository: match &self.storage {
                Storage::Directory { repo_dir, .. } => repo_dir.clone(),
                // No path on this machine: the location, as `--repository` names it.
                Storage::Rest { .. } | Storage::S3 { .. } => {
                    PathBuf::from(self.location.to_string())
                }
            },
        }
    }

    fn authorize_client(&self, client: ClientId) -> BackendResult<ClientCredentials> {
        let user = client.to_string();
        let password = random_password();
        self.admit(&user, &password)?;
        let credentials = match &self.storage {
            // Through the client's own port of the fault proxy, signed with the storage's keys.
            Storage::S3 { location, .. } => {
                let port = self.proxy.listener_for(&user).map_err(|e| {
                    BackendError::failed(format!(
                        "cannot open a port of the fault proxy for {user}: {e}"
                    ))
                })?;
                ClientCredentials {
                    url: location.through(port).to_string(),
                    environment: s3_environment(location),
                    user,
                    password,
                }
            }
            _ => ClientCredentials {
                url: format!(
                    "rest:http://{user}:{password}@{}{}",
                    self.addr(),
                    self.url_path
                ),
                environment: Vec::new(),
                user,
                password,
            },
        };
        self.credentials
            .lock()
            .expect("credentials lock")
            .insert(client, credentials.clone());
        Ok(credentials)
    }

    fn remove_client(&self, client: ClientId) -> BackendResult<()> {
        let user = client.to_string();
        if self.proxy.checks_clients() {
            self.proxy.refuse(&user);
        } else {
            self.users.revoke(&user);
        }
        Ok(())
    }

    fn hold_for_gc(&self, race: RacedStep) -> bool {
        self.proxy
            .index_holds()
            .arm(&ClientId(race.client).to_string(), race);
        true
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let _one_at_a_time = options.one_at_a_time(&self.gc_lock);
        let _seen = self.evidence.gc_running();
        let race = options.race.map(|race| Racing {
            holds: self.proxy.index_holds(),
            race,
        });
        // However the prune ends, the backup it races goes on.
        let _settled = race.clone().map(Settled);
        // What the index names as the GC begins (read just before the GC
        // reads it): a pack it removes that this does not name was a
        // running backup's.
        let indexed = if options.aggressive {
            self.inspector().index().ok()
        } else {
            None
        };
        let (repo, removals) = self.open_recording(race)?;
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
        let raced = self.raced(&removed, indexed.as_ref());
        let listed = *removals.listed.lock().expect("listed lock");
        let packs = removed
            .iter()
            .filter(|r| matches!(r, DataRef::Pack(_)))
            .count();
        details.insert("packs-deleted".into(), json!(packs));
        Ok(GcDone {
            details,
            removed: Some(removed),
            listed,
            raced,
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
        let inspector = self.inspector();
        // rustic's check first: damage done while it reads (a fault in the
        // middle of a long check on S3) is still there when snapstorm's own
        // check reads after it, and so is named.
        let rustic = rustic_check(self)?;
        let check = || {
            inspector
                .check()
                .map_err(|e| BackendError::Failed(format!("the repository check failed: {e}")))
        };
        // As with rustic's check: what a second look finds again is damage;
        // what it does not was a race with work going on (another run's GC
        // replacing the index under this one's reading).
        let mut problems = check()?;
        if !problems.is_empty() {
            let again: BTreeSet<String> = check()?.into_iter().map(|p| p.text).collect();
            problems.retain(|p| again.contains(&p.text));
        }
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
        match self.inspector().unreadable(snapshots) {
            Ok(items) => Unreadable::Named(items),
            Err(error) => {
                tracing::warn!(%error, "cannot tell what a failure could not read");
                Unreadable::Unknown
            }
        }
    }

    fn repository_size(&self) -> u64 {
        match &self.storage {
            Storage::Directory { data_dir, .. } => disk_usage(data_dir),
            // The sizes the server lists (its files' bytes, not its disk's).
            Storage::Rest { .. } | Storage::S3 { .. } => {
                listed_size(&self.storage).unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot list the repository's sizes");
                    0
                })
            }
        }
    }
}

/// How often rustic's check runs when a file it listed is gone before it
/// read it.
const CHECK_ATTEMPTS: usize = 3;

/// The size rustic_core 0.13's check computes for an index entry that
/// names no blob: a sealed pack header of nothing (32 bytes) and its length
/// (4). rustic's own prune writes such entries for the unindexed packs it
/// marks for deletion (a killed client's, a backup's still in flight), and
/// its check then compares them with the pack's real size.
const EMPTY_ENTRY_SIZE: &str = "index_size: 36,";

/// rustic's check reading all data, its errors in its own words (it can
/// itself fail, or panic, on a damaged repository: then that is its
/// finding). A check that failed on a file it listed and then did not find
/// raced the run (a client deleted a snapshot, a GC replaced an index in
/// the middle of it): it runs again, and if it never gets through, that is
/// the action's error, not a finding.
fn rustic_check(server: &EmbeddedServer) -> BackendResult<Vec<String>> {
    let first = rustic_check_once(server)?;
    if first.is_empty() {
        return Ok(first);
    }
    // A check beside a backup can find what is no damage: a snapshot saved
    // after the check read the index names trees the check did not see
    // ("subtree blob … is missing in index"), and another run's backups
    // are beside every check of a shared repository. Damage stays where
    // it is; what a second check does not find again was such a race.
    let second = rustic_check_once(server)?;
    let (kept, raced): (Vec<String>, Vec<String>) = first
        .into_iter()
        .partition(|problem| second.contains(problem));
    if !raced.is_empty() {
        tracing::info!(raced = ?raced, "rustic's check found these once, not again: races with backups, not damage");
    }
    Ok(kept)
}

/// One run of rustic's check (see [`rustic_check`]).
fn rustic_check_once(server: &EmbeddedServer) -> BackendResult<Vec<String>> {
    for attempt in 1..=CHECK_ATTEMPTS {
        let checked = catch_panic(|| -> BackendResult<Result<Vec<String>, Box<RusticError>>> {
            let repo = server.open_local()?;
            Ok(repo
                .check(CheckOptions::default().read_data(true))
                .map(|results| {
                    results
                        .0
                        .iter()
                        // rustic does not export the level type; warnings (e.g.
                        // a pack no index names yet) are not damage.
                        .filter(|(level, _)| format!("{level:?}") == "Error")
                        // Nor its error type: a pack marked for deletion whose
                        // entry names no blob is not one whose size is wrong.
                        .filter(|(_, error)| {
                            let error = format!("{error:?}");
                            !(error.contains("SizeMismatchIndex")
                                && error.contains("to_delete: true")
                                && error.contains(EMPTY_ENTRY_SIZE))
                        })
                        .map(|(_, error)| error.to_string())
                        .collect()
                }))
        });
        match checked {
            Ok(Ok(Ok(problems))) => return Ok(problems),
            Ok(Ok(Err(error))) if super::errors::http_answer(&*error) == Some(Some(404)) => {
                if attempt == CHECK_ATTEMPTS {
                    return Err(BackendError::Raced(format!(
                        "files went while rustic's check read them, {CHECK_ATTEMPTS} times: {}",
                        brief(&error.display_log())
                    )));
                }
                tracing::info!(attempt, error = %brief(&error.display_log()), "a file went while rustic's check read it; checking again");
            }
            Ok(Ok(Err(error))) => return Ok(vec![format!("the check failed: {error}")]),
            Ok(Err(error)) => return Ok(vec![format!("the check failed: {error}")]),
            Err(panic) => {
                return Ok(vec![format!(
                    "the check panicked: {}",
                    brief(&panic.message)
                )]);
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// The bytes of every file the storage lists.
fn listed_size(storage: &Storage) -> BackendResult<u64> {
    let backend = storage.backends()?.repository();
    let mut total = 0u64;
    for tpe in [
        FileType::Config,
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ] {
        if tpe == FileType::Config {
            total += backend
                .read_full(tpe, &Id::default())
                .map_or(0, |b| b.len() as u64);
            continue;
        }
        total += backend
            .list_with_size(tpe)?
            .iter()
            .map(|(_, size)| u64::from(*size))
            .sum::<u64>();
    }
    Ok(total)
}

pub(super) fn snapshot_ids(mut snapshots: Vec<SnapshotFile>) -> Vec<SnapshotId> {
    snapshots.sort_unstable();
    snapshots
        .into_iter()
        .map(|s| s.id.to_hex().to_string())
        .collect()
}
