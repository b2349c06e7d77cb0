//! Setting up a run: the one path the console, the headless runner and the
//! tests take from options to a running [`RunHandle`]. The embedded, restic
//! and mixed backends run on the embedded server (its REST server, proxy,
//! evidence and faults) and decide the clients and the GC; the kopia backend
//! runs kopia's own server and clients, behind its own proxy, with its own
//! faults.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::BackendKind;
use crate::backend::bucket::{BucketError, BucketState, ensure_bucket};
use crate::backend::embedded::{
    ClientTimeouts, EmbeddedFaults, EmbeddedServer, RemoveAllLocks, RusticClients, StorageError,
    reach_storage, refuses_deletes,
};
use crate::backend::kopia::{KopiaBinary, KopiaClients, KopiaFaults, KopiaServer, KopiaStorage};
use crate::backend::location::{RepositoryLocation, Secret};
use crate::backend::restic::{
    DEFAULT_ACTION_TIMEOUT, MixedClients, Processes, ResticBinary, ResticClients, ResticServer,
};
use crate::engine::Action;
use crate::engine::exec::{Engine, EngineConfig};
use crate::engine::fingerprint::CompareOptions;
use crate::engine::options::GcTool;
use crate::engine::scenario::Scenario;
use crate::engine::store::{MetadataStore, StateLayout};
use crate::engine::traits::{ClientFactory, FaultInjector, FileWriter, Server, Snapshotter};
use crate::faults::FaultSpec;
use crate::multiclient::{MultiClientFileWriter, MultiClientSnapshotter};
use crate::run::{self, RunHandle, RunLimit, RunParts};

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub clients: u32,
    pub seed: u64,
    pub scenario: Scenario,
    pub state_dir: PathBuf,
    pub limit: RunLimit,
    pub compare: CompareOptions,
    pub verify_inherited_per_client: usize,
    pub timeouts: ClientTimeouts,
    /// Faults to inject, at their times into the run.
    pub faults: Vec<FaultSpec>,
    /// Which clients run.
    pub backend: BackendKind,
    /// The restic program of the restic and mixed backends; `None`: as
    /// users name it (`RESTIC_EXE`, else `restic` on PATH).
    pub restic_exe: Option<PathBuf>,
    /// Where the repository is (`--repository`); the state dir's own
    /// directory by default.
    pub repository: RepositoryLocation,
    /// The password of a repository another run made, for a new state
    /// dir (`RESTIC_PASSWORD`): several runs, one repository.
    pub repository_password: Option<Secret>,
}

impl RunSpec {
    pub fn new(scenario: Scenario, state_dir: PathBuf, seed: u64) -> Self {
        RunSpec {
            clients: 4,
            seed,
            scenario,
            state_dir,
            limit: RunLimit::default(),
            compare: CompareOptions::default(),
            verify_inherited_per_client: 1,
            timeouts: ClientTimeouts::default(),
            faults: Vec::new(),
            backend: BackendKind::default(),
            restic_exe: None,
            repository: RepositoryLocation::Embedded,
            repository_password: None,
        }
    }
}

/// A run could not start; nothing ran. The text names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    State(#[from] crate::engine::store::StoreError),
    #[error("cannot start the repository server: {0}")]
    Backend(#[source] crate::engine::traits::BackendError),
    /// The repository's storage cannot be reached, or refuses snapstorm.
    #[error(transparent)]
    Storage(StorageError),
    /// The S3 store cannot be reached, refuses the keys, or has no bucket
    /// and cannot make one.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Start(#[from] run::StartError),
    #[error("cannot open the action trace: {0}")]
    Trace(#[source] std::io::Error),
    /// A task of the launch (or of the run it awaited) panicked.
    #[error("crashed: {0}")]
    Crashed(#[from] tokio::task::JoinError),
    /// The backend cannot run here (a program missing, an option it lacks).
    #[error("{0}")]
    Setup(String),
}

/// The parts of a run, before any client runs. Tests use this to wrap or
/// replace a part; [`launch`] uses it as is.
pub struct EmbeddedParts {
    pub store: Arc<MetadataStore>,
    /// The embedded server every backend runs on (faults act on it).
    pub server: Arc<EmbeddedServer>,
    /// The Server the engine talks to: `server`, or the restic backends'
    /// view of it (their name, their GC).
    pub engine_server: Arc<dyn Server>,
    pub clients: Arc<dyn ClientFactory>,
    pub writer: Arc<MultiClientFileWriter>,
    /// `unlock`: where the clients take locks (restic's), how every lock
    /// is removed.
    pub remove_all_locks: Option<RemoveAllLocks>,
    /// The restic processes of the clients and the GC, when the backend runs
    /// restic: any still running when the run ends is killed then.
    pub processes: Option<Arc<Processes>>,
}

/// The restic binary, when the backend needs it, and a GC the backend can
/// run: checked before anything is written.
fn check_backend(spec: &RunSpec) -> Result<Option<ResticBinary>, LaunchError> {
    let gc = spec.scenario.options.gc;
    if gc == GcTool::Restic && !spec.backend.runs_restic() {
        return Err(LaunchError::Setup(format!(
            "scenario option gc = \"restic\" needs restic: run with --backend restic or --backend mixed, or drop the option (backend {})",
            spec.backend
        )));
    }
    check_location(spec)?;
    for fault in &spec.faults {
        if let Some(pid) = fault.pid {
            crate::backend::fault_kit::osd_process(pid)
                .map_err(|why| LaunchError::Setup(format!("--fault {fault}: {why}")))?;
        }
    }
    if !spec.backend.runs_restic() {
        if let Some(fault) = spec.faults.iter().find(|f| f.kind.acts_on_locks()) {
            return Err(LaunchError::Setup(format!(
                "--fault {fault} acts on restic's locks, and the {} backend's clients take none (rustic_core is lock-free): run with --backend restic or --backend mixed, or drop the fault",
                spec.backend
            )));
        }
        return Ok(None);
    }
    match &spec.restic_exe {
        Some(path) => ResticBinary::at(path.clone()),
        None => ResticBinary::find(),
    }
    .map(Some)
    .map_err(|e| LaunchError::Setup(e.to_string()))
}

/// What the repository's location cannot do, refused before anything is
/// written: kopia keeps its repository in the state dir or an S3 bucket,
/// and the files of an external REST server (or of kopia's bucket) cannot
/// be damaged from here (yet).
fn check_location(spec: &RunSpec) -> Result<(), LaunchError> {
    let repository = &spec.repository;
    match (spec.backend, repository) {
        (_, RepositoryLocation::Embedded) => return Ok(()),
        (BackendKind::Kopia, RepositoryLocation::Directory(_) | RepositoryLocation::Rest(_)) => {
            return Err(LaunchError::Setup(format!(
                "--repository {repository}: kopia keeps its repository in the state dir or in an S3 bucket (s3:http://HOST:PORT/BUCKET): drop --repository, give an s3: location, or choose another --backend"
            )));
        }
        _ => {}
    }
    let external = matches!(
        repository,
        RepositoryLocation::Rest(_) | RepositoryLocation::S3(_)
    );
    // Files are damaged in a directory here, or through S3's API or the
    // REST protocol; kopia's in a bucket are out of reach.
    if matches!(repository, RepositoryLocation::S3(_))
        && spec.backend == BackendKind::Kopia
        && let Some(fault) = spec.faults.iter().find(|f| f.kind.writes_files())
    {
        return Err(LaunchError::Setup(format!(
            "--fault {fault} writes the repository's files itself, which is not yet supported on kopia's repository in a bucket ({repository}): drop the fault, or run on a repository in a directory"
        )));
    }
    // A REST server stores a file under the hash of its content only
    // (rest-server checks it) and never over another: a file can be
    // deleted there, or a lock left, but not replaced by a damaged one.
    if matches!(repository, RepositoryLocation::Rest(_))
        && let Some(fault) = spec.faults.iter().find(|f| f.kind.overwrites_files())
    {
        return Err(LaunchError::Setup(format!(
            "--fault {fault} writes a damaged file over a whole one, and a REST server ({repository}) stores a file only under the hash of its content, never over another: use delete-pack or delete-index there, or run on a directory or S3"
        )));
    }
    if external && let Some(fault) = spec.faults.iter().find(|f| f.kind.needs_own_server()) {
        return Err(LaunchError::Setup(format!(
            "--fault {fault} makes snapstorm's own server fail requests, and {repository} is served by another: drop the fault, use network (HTTP 500s at the proxy), or run on a repository in a directory"
        )));
    }
    Ok(())
}

/// The storage, asked before anything is written: an external REST server
/// answers (over https, with a certificate snapstorm trusts), takes the
/// credentials, and can do what the faults need (an append-only server
/// refuses the deletes of a GC fault); an S3 store answers likewise, takes
/// the keys and has the bucket (created if it had none).
async fn check_storage(spec: &RunSpec) -> Result<(), LaunchError> {
    let rest = match &spec.repository {
        // Asking for the deletes reaches the server, its handshake included.
        RepositoryLocation::Rest(rest) => rest,
        RepositoryLocation::S3(s3) => {
            reach_storage(&spec.repository)
                .await
                .map_err(LaunchError::Storage)?;
            let state = ensure_bucket(s3).await?;
            if state == BucketState::Created {
                tracing::info!(location = %s3, "created the bucket");
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let append_only = refuses_deletes(rest).await.map_err(LaunchError::Storage)?;
    if append_only
        && let Some(fault) = spec
            .faults
            .iter()
            .find(|f| f.kind.runs_any_gc() || f.kind.damages_files())
    {
        return Err(LaunchError::Setup(format!(
            "--fault {fault} deletes from the repository, and {rest} refuses deletes (append-only): drop the fault, or serve the repository without --append-only"
        )));
    }
    Ok(())
}

/// Opens the state directory and starts the embedded server.
pub async fn embedded_parts(spec: &RunSpec) -> Result<EmbeddedParts, LaunchError> {
    if spec.backend == BackendKind::Kopia {
        return Err(LaunchError::Setup(
            "the kopia backend runs kopia's own server, not the embedded one: start it with `launch`, as `snapstorm run --backend kopia` and the console do".into(),
        ));
    }
    let restic = check_backend(spec)?;
    check_storage(spec).await?;
    let layout = StateLayout::new(&spec.state_dir);
    let store = open_store(spec, &layout).await?;
    // The repository opens with the state's password before the run is
    // recorded: a state dir that does not fit its repository stays as it was.
    let server = EmbeddedServer::start_on(
        &spec.repository,
        &layout.repository(),
        &store.repository_password(),
        spec.seed,
    )
    .await
    .map_err(|error| match error {
        StorageError::Backend(error) => LaunchError::Backend(error),
        other => LaunchError::Storage(other),
    })
    .inspect_err(|_| store.undo_setup())?;
    if let Err(error) = begin_run(spec, &store).await {
        server.stop().await;
        store.undo_setup();
        return Err(error);
    }
    let cache_layout = layout.clone();
    let hosts = store.clone();
    let rustic = RusticClients {
        cache_dir_for: Box::new(move |client| cache_layout.client_cache(client)),
        host_for: Box::new(move |client| hosts.host_of(client)),
        key: server.master_key(),
        timeouts: spec.timeouts,
        evidence: server.evidence().clone(),
    };
    let mut remove_all_locks: Option<RemoveAllLocks> = None;
    let mut client_processes: Option<Arc<Processes>> = None;
    let (clients, engine_server): (Arc<dyn ClientFactory>, Arc<dyn Server>) = match restic {
        None => (Arc::new(rustic), server.clone()),
        Some(binary) => {
            let processes = Arc::new(Processes::new());
            // kill-client: the proxy cuts the client off mid-snapshot, and
            // its restic process is SIGKILLed there and then.
            let killer = processes.clone();
            server.proxy().on_cut(Arc::new(move |user| {
                let killed = killer.kill(user);
                if killed > 0 {
                    tracing::warn!(target: "snapstorm::faults", user, killed, "kill-client: SIGKILLed the client's restic process");
                }
            }));
            // pause-client: while the proxy holds the client, its restic
            // process is stopped (SIGSTOP), and it goes on after (SIGCONT).
            let freezer = processes.clone();
            server.proxy().on_hold(Arc::new(move |user, frozen| {
                let signalled = freezer.freeze(user, frozen);
                if signalled > 0 {
                    let signal = if frozen { "SIGSTOP" } else { "SIGCONT" };
                    tracing::warn!(target: "snapstorm::faults", user, signalled, signal, "pause-client: signalled the client's restic process");
                }
            }));
            let cache_layout = layout.clone();
            let hosts = store.clone();
            let restic = ResticClients {
                binary: binary.clone(),
                cache_dir_for: Box::new(move |client| cache_layout.client_cache(client)),
                host_for: Box::new(move |client| hosts.host_of(client)),
                repo_password: store.repository_password(),
                action_timeout: DEFAULT_ACTION_TIMEOUT,
                evidence: server.evidence().clone(),
                processes: processes.clone(),
            };
            // The GC's restic prune runs in the same table: clients and
            // the GC wait for each other's locks by it.
            client_processes = Some(processes.clone());
            let restic_processes = processes;
            let clients: Arc<dyn ClientFactory> = match spec.backend {
                BackendKind::Mixed => Arc::new(MixedClients {
                    rustic: Box::new(rustic),
                    restic: Box::new(restic),
                }),
                _ => Arc::new(restic),
            };
            let engine_server = Arc::new(ResticServer::new(
                server.clone(),
                spec.backend.name(),
                spec.scenario.options.gc,
                binary,
                store.repository_password(),
                restic_processes,
            ));
            let unlocker = engine_server.clone();
            remove_all_locks = Some(Arc::new(move || unlocker.remove_all_locks()));
            (clients, engine_server)
        }
    };
    let writer = writer_for(layout);
    Ok(EmbeddedParts {
        store,
        server,
        engine_server,
        clients,
        writer,
        remove_all_locks,
        processes: client_processes,
    })
}

impl EmbeddedParts {
    /// The engine over these parts, delegating to one client per id.
    pub fn engine(
        &self,
        spec: &RunSpec,
    ) -> Result<(Arc<Engine>, Arc<MultiClientSnapshotter>), LaunchError> {
        engine_over(
            spec,
            &self.store,
            &self.engine_server,
            &self.clients,
            &self.writer,
        )
    }
}

/// The engine over a backend's server and clients, delegating to one
/// client per id.
fn engine_over(
    spec: &RunSpec,
    store: &Arc<MetadataStore>,
    server: &Arc<dyn Server>,
    clients: &Arc<dyn ClientFactory>,
    writer: &Arc<MultiClientFileWriter>,
) -> Result<(Arc<Engine>, Arc<MultiClientSnapshotter>), LaunchError> {
    let snapshotter = Arc::new(MultiClientSnapshotter::new(server.clone(), clients.clone()));
    let config = EngineConfig {
        seed: spec.seed,
        scenario: spec.scenario.clone(),
        compare: spec.compare,
        verify_inherited_per_client: spec.verify_inherited_per_client,
    };
    let writer: Arc<dyn FileWriter> = writer.clone();
    let as_snapshotter: Arc<dyn Snapshotter> = snapshotter.clone();
    let engine = Engine::new(
        config,
        writer,
        as_snapshotter,
        server.clone(),
        store.clone(),
    )
    .map_err(LaunchError::Trace)?;
    Ok((Arc::new(engine), snapshotter))
}

/// Opens (or creates) the state directory for the spec's backend.
async fn open_store(
    spec: &RunSpec,
    layout: &StateLayout,
) -> Result<Arc<MetadataStore>, LaunchError> {
    let layout = layout.clone();
    let backend = spec.backend.name();
    let repository = spec.repository.recorded();
    let password = spec.repository_password.clone();
    let store = tokio::task::spawn_blocking(move || {
        MetadataStore::open_for(
            layout,
            backend,
            repository.as_deref(),
            password.as_ref().map(Secret::expose),
        )
    })
    .await??;
    Ok(Arc::new(store))
}

/// Records the run's start, once its repository opened with the state's
/// password: a state dir that does not fit its repository stays as it was.
async fn begin_run(spec: &RunSpec, store: &Arc<MetadataStore>) -> Result<(), LaunchError> {
    let store = store.clone();
    let (seed, scenario) = (spec.seed, spec.scenario.name.clone());
    match tokio::task::spawn_blocking(move || store.begin_run(seed, &scenario)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.into()),
        Err(error) => Err(error.into()),
    }
}

fn writer_for(layout: StateLayout) -> Arc<MultiClientFileWriter> {
    Arc::new(MultiClientFileWriter::new(Box::new(move |client| {
        layout.client_data(client)
    })))
}

/// The parts of a kopia run: kopia's server and clients, before any client
/// runs.
pub struct KopiaParts {
    pub store: Arc<MetadataStore>,
    /// The running `kopia server start`.
    pub server: Arc<KopiaServer>,
    /// `server`, as the engine sees it.
    pub engine_server: Arc<dyn Server>,
    pub clients: Arc<dyn ClientFactory>,
    pub writer: Arc<MultiClientFileWriter>,
    /// The kopia processes of the clients: any still running when the run
    /// ends is killed then.
    pub processes: Arc<Processes>,
}

/// The kopia program, and a run it can do: checked before anything is
/// written.
fn check_kopia(spec: &RunSpec) -> Result<KopiaBinary, LaunchError> {
    check_backend(spec)?;
    for fault in &spec.faults {
        if let Some(why) = crate::backend::kopia::refusal(fault.kind) {
            return Err(LaunchError::Setup(format!(
                "--fault {fault} cannot happen on kopia: {why}"
            )));
        }
        if fault.victim.is_some() {
            return Err(LaunchError::Setup(format!(
                "--fault {fault} cannot happen on kopia: victim= names a pack by the client that stored it, which kopia's server does not tell; leave victim= out (a random pack)"
            )));
        }
    }
    if spec.scenario.may_take(Action::ForgetSnapshots) {
        return Err(LaunchError::Setup(format!(
            "the scenario's action {} cannot run on kopia: kopia has no forget by policy to run from its clients; give it weight 0 or drop it",
            Action::ForgetSnapshots
        )));
    }
    // What kopia is given of the storage (the --cacert files among it),
    // before anything is written.
    if let RepositoryLocation::S3(s3) = &spec.repository
        && let Err(error) = KopiaStorage::S3(s3.clone()).args()
    {
        return Err(LaunchError::Setup(error.to_string()));
    }
    KopiaBinary::find().map_err(|e| LaunchError::Setup(e.to_string()))
}

/// Opens the state directory, creates or connects to its kopia repository
/// and starts `kopia server start` on it.
pub async fn kopia_parts(spec: &RunSpec) -> Result<KopiaParts, LaunchError> {
    let binary = check_kopia(spec)?;
    check_storage(spec).await?;
    let layout = StateLayout::new(&spec.state_dir);
    let store = open_store(spec, &layout).await?;
    let server = {
        let binary = binary.clone();
        let storage = match &spec.repository {
            RepositoryLocation::S3(s3) => KopiaStorage::S3(s3.clone()),
            _ => KopiaStorage::Filesystem(layout.repository()),
        };
        let dir = layout.root().join("kopia");
        let password = store.repository_password();
        let (runtime, seed) = (tokio::runtime::Handle::current(), spec.seed);
        tokio::task::spawn_blocking(move || {
            KopiaServer::start(binary, storage, &dir, &password, runtime, seed)
        })
        .await?
        .map_err(LaunchError::Backend)
        .inspect_err(|_| store.undo_setup())?
    };
    let server = Arc::new(server);
    if let Err(error) = begin_run(spec, &store).await {
        let server = server.clone();
        let _ = tokio::task::spawn_blocking(move || server.stop()).await;
        store.undo_setup();
        return Err(error);
    }
    let processes = Arc::new(Processes::new());
    // kill-client: the proxy cuts the client off mid-upload, and its kopia
    // process is SIGKILLed there and then.
    let killer = processes.clone();
    server.proxy().on_cut(Arc::new(move |user| {
        let killed = killer.kill(user);
        if killed > 0 {
            tracing::warn!(target: "snapstorm::faults", user, killed, "kill-client: SIGKILLed the client's kopia process");
        }
    }));
    let (dir_layout, cache_layout) = (layout.clone(), layout.clone());
    let clients: Arc<dyn ClientFactory> = Arc::new(KopiaClients {
        binary,
        dir_for: Box::new(move |client| dir_layout.client_dir(client)),
        cache_dir_for: Box::new(move |client| cache_layout.client_cache(client)),
        fingerprint: server.fingerprint().to_owned(),
        action_timeout: crate::backend::kopia::DEFAULT_ACTION_TIMEOUT,
        processes: processes.clone(),
        evidence: server.evidence().clone(),
    });
    Ok(KopiaParts {
        store,
        engine_server: server.clone(),
        server,
        clients,
        writer: writer_for(layout),
        processes,
    })
}

impl KopiaParts {
    /// The engine over these parts, delegating to one client per id.
    pub fn engine(
        &self,
        spec: &RunSpec,
    ) -> Result<(Arc<Engine>, Arc<MultiClientSnapshotter>), LaunchError> {
        engine_over(
            spec,
            &self.store,
            &self.engine_server,
            &self.clients,
            &self.writer,
        )
    }
}

/// At the run's very end, after the stop's grace: a client process still
/// running belongs to an action the run stopped waiting for. It is killed
/// (its process group), so that it neither outlives snapstorm nor holds
/// its exit until the process's own deadline.
fn end_abandoned(processes: Option<&Processes>) {
    let killed = processes.map_or(0, Processes::kill_all);
    if killed > 0 {
        tracing::warn!(
            killed,
            "killed the client processes of actions still running at the end of the run"
        );
    }
}

/// Starts a kopia run, its faults carried out by [`KopiaFaults`].
async fn launch_kopia(spec: RunSpec, parts: KopiaParts) -> Result<RunHandle, LaunchError> {
    let (engine, snapshotter) = parts.engine(&spec)?;
    let faults: Arc<dyn FaultInjector> =
        Arc::new(KopiaFaults::new(parts.server.clone(), spec.seed));
    let server = parts.server.clone();
    let processes = parts.processes.clone();
    let stop_server = Box::pin(async move {
        end_abandoned(Some(&processes));
        let _ = tokio::task::spawn_blocking(move || server.stop()).await;
    });
    let handle = run::start(RunParts {
        engine,
        snapshotter,
        initial_clients: spec.clients,
        limit: spec.limit,
        state_dir: spec.state_dir.clone(),
        faults: Some(faults),
        fault_plan: spec.faults.clone(),
        on_finish: stop_server,
    })
    .await;
    match handle {
        Ok(handle) => Ok(handle),
        Err(error) => {
            let server = parts.server.clone();
            let _ = tokio::task::spawn_blocking(move || server.stop()).await;
            Err(LaunchError::Start(error))
        }
    }
}

/// Starts a run of `spec` on its backend.
pub async fn launch(spec: RunSpec) -> Result<RunHandle, LaunchError> {
    if spec.backend == BackendKind::Kopia {
        let parts = kopia_parts(&spec).await?;
        return launch_kopia(spec, parts).await;
    }
    let parts = embedded_parts(&spec).await?;
    launch_with(spec, parts).await
}

/// Starts a run over parts the caller may have adjusted.
pub async fn launch_with(spec: RunSpec, parts: EmbeddedParts) -> Result<RunHandle, LaunchError> {
    let (engine, snapshotter) = parts.engine(&spec)?;
    let mut faults = EmbeddedFaults::new(
        parts.server.clone(),
        tokio::runtime::Handle::current(),
        spec.seed,
    );
    if let Some(remove) = parts.remove_all_locks.clone() {
        faults = faults.removing_locks_with(remove);
    }
    let faults: Arc<dyn FaultInjector> = Arc::new(faults);
    let server = parts.server.clone();
    let processes = parts.processes.clone();
    let stop_server = Box::pin(async move {
        end_abandoned(processes.as_deref());
        server.stop().await
    });
    let handle = run::start(RunParts {
        engine,
        snapshotter,
        initial_clients: spec.clients,
        limit: spec.limit,
        state_dir: spec.state_dir.clone(),
        faults: Some(faults),
        fault_plan: spec.faults.clone(),
        on_finish: stop_server,
    })
    .await;
    match handle {
        Ok(handle) => Ok(handle),
        Err(error) => {
            parts.server.stop().await;
            Err(LaunchError::Start(error))
        }
    }
}
