//! The embedded backend's clients: rustic_core over HTTP, through the
//! fault proxy, one user per client. Every call is classified with the
//! backend's evidence (see `errors.rs`), and a panic inside rustic becomes
//! the call's error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustic_backend::BackendOptions;
use rustic_core::repofile::MasterKey;
use rustic_core::{
    BackupOptions, Credentials, ErrorKind, LocalDestination, LsOptions, OpenStatus, PathList,
    Progress as RusticProgressBar, ProgressBars, ProgressType, Repository, RepositoryBackends,
    RepositoryOptions, RestoreOptions, RusticError, RusticProgress, RusticResult, SnapshotOptions,
};

use super::ClientTimeouts;
use super::errors::CallContext;
use super::evidence::Evidence;
use super::server::snapshot_ids;
use crate::backend::location::RepositoryLocation;
use crate::backend::s3::{S3Backend, S3Patience};
use crate::engine::guard::catch_panic;
use crate::engine::progress::Progress;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientFactory, ClientId, ClientSnapshotter,
    Details, GcOptions, SnapshotId, Snapshotter,
};

/// What a connected client holds: enough to open the repository again
/// cheaply (with the master key, no key derivation) for every call, so no
/// state survives from one action to the next.
#[derive(Clone)]
struct Connection {
    backends: RepositoryBackends,
    options: RepositoryOptions,
    key: MasterKey,
    /// The user its requests carry, to look it up in the evidence.
    user: String,
}

/// Why a call failed, before classification: rustic's error, or an
/// outcome already classified.
enum CallError {
    Rustic(Box<RusticError>),
    Classified(BackendError),
}

impl From<Box<RusticError>> for CallError {
    fn from(error: Box<RusticError>) -> Self {
        CallError::Rustic(error)
    }
}

impl From<BackendError> for CallError {
    fn from(error: BackendError) -> Self {
        CallError::Classified(error)
    }
}

type CallResult<T> = Result<T, CallError>;

/// A rustic_core client of the embedded server.
pub struct RusticClient {
    cache_dir: PathBuf,
    /// The host name its snapshots carry.
    host: String,
    /// The repository's master key (see [`RusticClients::key`]).
    key: MasterKey,
    timeouts: ClientTimeouts,
    evidence: Arc<Evidence>,
    connection: Mutex<Option<Connection>>,
}

impl RusticClient {
    pub fn new(
        cache_dir: PathBuf,
        host: String,
        key: MasterKey,
        timeouts: ClientTimeouts,
        evidence: Arc<Evidence>,
    ) -> Self {
        RusticClient {
            cache_dir,
            host,
            key,
            timeouts,
            evidence,
            connection: Mutex::new(None),
        }
    }

    /// Opens the repository for one call and runs `work` on it; its error
    /// or panic is classified with what the evidence saw meanwhile.
    fn call<T>(
        &self,
        client: ClientId,
        work: impl FnOnce(Repository<OpenStatus>) -> CallResult<T>,
    ) -> BackendResult<T> {
        self.call_reporting(client, &Progress::unobserved(), work)
    }

    /// As [`RusticClient::call`], with rustic's byte counts of a backup or
    /// restore reported into `progress`.
    fn call_reporting<T>(
        &self,
        client: ClientId,
        progress: &Progress,
        work: impl FnOnce(Repository<OpenStatus>) -> CallResult<T>,
    ) -> BackendResult<T> {
        self.call_with(client, progress, Cache::Used, work)
    }

    /// As [`RusticClient::call`], reading every file from the repository
    /// (`--no-cache`).
    fn call_uncached<T>(
        &self,
        client: ClientId,
        work: impl FnOnce(Repository<OpenStatus>) -> CallResult<T>,
    ) -> BackendResult<T> {
        self.call_with(client, &Progress::unobserved(), Cache::Skipped, work)
    }

    fn call_with<T>(
        &self,
        client: ClientId,
        progress: &Progress,
        cache: Cache,
        work: impl FnOnce(Repository<OpenStatus>) -> CallResult<T>,
    ) -> BackendResult<T> {
        let connection = self
            .connection
            .lock()
            .expect("connection lock")
            .clone()
            .ok_or(BackendError::NotConnected(client))?;
        let context = CallContext {
            evidence: &self.evidence,
            user: &connection.user,
            started: Instant::now(),
        };
        let outcome = catch_panic(|| {
            let bars = BytesProgress(progress.clone());
            let options = connection.options.clone().no_cache(cache == Cache::Skipped);
            let repo = Repository::new_with_progress(&options, &connection.backends, bars)?
                .open(&Credentials::Masterkey(connection.key.clone()))?;
            work(repo)
        });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(CallError::Rustic(error))) => Err(context.classify(&error)),
            Ok(Err(CallError::Classified(error))) => Err(error),
            Err(panic) => Err(context.classify_panic(panic.message)),
        }
    }
}

/// Whether a call reads the snapshot and index files the client's cache
/// holds from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    Used,
    Skipped,
}

/// rustic's progress bars, as snapstorm listens to them: the byte bar of a
/// backup (`backing up...`) or restore (`restoring file contents...`) goes
/// into the call's [`Progress`]; the counters and spinners of reading
/// indexes and snapshots say nothing about how far the call has got.
#[derive(Debug)]
struct BytesProgress(Progress);

impl ProgressBars for BytesProgress {
    fn progress(&self, kind: ProgressType, _prefix: &str) -> RusticProgressBar {
        match kind {
            ProgressType::Bytes => RusticProgressBar::new(BytesBar(self.0.clone())),
            ProgressType::Counter | ProgressType::Spinner => RusticProgressBar::hidden(),
        }
    }
}

/// One byte bar. It says it is hidden only so that a backup does not walk
/// its source a second time to count its size: the engine's fingerprint
/// of the source already gave the total.
#[derive(Debug)]
struct BytesBar(Progress);

impl RusticProgress for BytesBar {
    fn is_hidden(&self) -> bool {
        true
    }

    fn set_length(&self, len: u64) {
        self.0.set_bytes_total(len);
    }

    fn set_title(&self, _title: &str) {}

    fn inc(&self, inc: u64) {
        self.0.add_bytes(inc);
    }

    fn finish(&self) {}
}

fn utf8(path: &Path, what: &str) -> CallResult<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        CallError::Classified(BackendError::Local(format!("{what} path is not UTF-8")))
    })
}

impl Snapshotter for RusticClient {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        self.call_reporting(client, progress, |repo| {
            let repo = repo.to_indexed_ids()?;
            let snapshot = SnapshotOptions::default()
                .host(self.host.clone())
                .label("snapstorm".to_string())
                .to_snapshot()?;
            let sources = PathList::from_string(&utf8(source, "source")?)?
                .sanitize()
                .map_err(|e| CallError::Classified(BackendError::Local(e.to_string())))?;
            // Contents at the snapshot root, so a restore gives back the directory itself.
            let options = BackupOptions::default().as_path(PathBuf::from("/"));
            let snapshot = repo.backup(&options, &sources, snapshot)?;
            Ok(snapshot.id.to_hex().to_string())
        })
    }

    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        self.call(client, |repo| Ok(snapshot_ids(repo.get_all_snapshots()?)))
    }

    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        progress: &Progress,
    ) -> BackendResult<()> {
        self.call_reporting(client, progress, |repo| {
            let repo = repo.to_indexed()?;
            let snapshot = repo.get_snapshots(&[id])?.pop().ok_or_else(|| {
                CallError::Classified(BackendError::Data(format!("snapshot {id} not found")))
            })?;
            let node = repo.node_from_snapshot_and_path(&snapshot, "")?;
            let entries = repo.ls(&node, &LsOptions::default())?;
            let destination =
                LocalDestination::new(&utf8(target, "restore")?, true, !node.is_dir())?;
            let options = RestoreOptions::default();
            let plan = repo.prepare_restore(&options, entries.clone(), &destination, false)?;
            repo.restore(plan, &options, entries, &destination)?;
            Ok(())
        })
    }

    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        self.call(client, |repo| {
            // Looked up first: some servers answer a DELETE of a file they
            // do not have with success (rest-server makes deletes
            // idempotent), and deleting what is not there is an error about
            // data, on every storage.
            let snapshot = repo.get_snapshots(&[id])?.pop().ok_or_else(|| {
                CallError::Classified(BackendError::Data(format!("snapshot {id} not found")))
            })?;
            repo.delete_snapshots(&[snapshot.id])?;
            Ok(())
        })
    }

    /// As `rustic forget --no-cache --filter-host HOST --keep-last 1` does:
    /// every snapshot file the repository lists is read from it, then this
    /// host's are chosen (a file deleted between the listing and its read
    /// fails the whole call: rustic #1421, where the forgets ran without a
    /// cache; the client's cache would hold most files, as each backup
    /// reads every snapshot to find its parent).
    fn forget_all_but_newest(
        &self,
        client: ClientId,
        deleting: &(dyn Fn() + Sync),
    ) -> BackendResult<Vec<SnapshotId>> {
        self.call_uncached(client, |repo| {
            let mut ours =
                repo.get_matching_snapshots(|snapshot| snapshot.hostname == self.host)?;
            ours.sort_by(|a, b| a.time.cmp(&b.time));
            ours.pop();
            let ids: Vec<_> = ours.iter().map(|snapshot| snapshot.id).collect();
            deleting();
            repo.delete_snapshots(&ids)?;
            Ok(ids.iter().map(|id| id.to_hex().to_string()).collect())
        })
    }

    fn run_gc(&self, _client: ClientId, _options: &GcOptions) -> BackendResult<Details> {
        Err(BackendError::gc_is_the_servers())
    }
}

impl ClientSnapshotter for RusticClient {
    fn connect(&self, _client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| BackendError::Local(e.to_string()))?;
        let rest_options = BTreeMap::from([
            ("retry".to_owned(), self.timeouts.retries.to_string()),
            (
                "timeout".to_owned(),
                format!("{}s", self.timeouts.request_timeout.as_secs().max(1)),
            ),
        ]);
        let context = CallContext {
            evidence: &self.evidence,
            user: &credentials.user,
            started: Instant::now(),
        };
        let classify = |error: Box<RusticError>| context.classify(&error);
        let backends = if credentials.url.starts_with("s3:") {
            s3_backends(credentials, self.timeouts).map_err(classify)?
        } else {
            BackendOptions::default()
                .repository(&credentials.url)
                .options(rest_options)
                .to_backends()
                .map_err(classify)?
        };
        let options = RepositoryOptions::default().cache_dir(&self.cache_dir);
        let repo = Repository::new(&options, &backends)
            .map_err(classify)?
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(classify)?;
        *self.connection.lock().expect("connection lock") = Some(Connection {
            backends,
            options,
            key: repo.key(),
            user: credentials.user.clone(),
        });
        Ok(())
    }

    fn disconnect(&self, _client: ClientId) -> BackendResult<()> {
        self.connection.lock().expect("connection lock").take();
        Ok(())
    }
}

/// A bucket's repository, through the address the credentials name (the
/// client's listener of the fault proxy), signed with the keys they carry.
fn s3_backends(
    credentials: &ClientCredentials,
    timeouts: ClientTimeouts,
) -> RusticResult<RepositoryBackends> {
    let invalid =
        |why: String| RusticError::new(ErrorKind::InvalidInput, "{why}").attach_context("why", why);
    let RepositoryLocation::S3(location) =
        RepositoryLocation::parse(&credentials.url).map_err(|e| invalid(e.to_string()))?
    else {
        return Err(invalid(format!("{} is no S3 location", credentials.url)));
    };
    let location = location
        .with_credentials(|name| {
            credentials
                .environment
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
        .map_err(|e| invalid(e.to_string()))?;
    let patience = S3Patience {
        retries: timeouts.retries as usize,
        timeout: timeouts
            .request_timeout
            .max(std::time::Duration::from_secs(1)),
    };
    Ok(RepositoryBackends::new(
        Arc::new(S3Backend::new(&location, patience)?),
        None,
    ))
}

/// Makes a `RusticClient` per client, each with its own cache directory.
pub struct RusticClients {
    pub cache_dir_for: Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>,
    /// The host name each client's snapshots carry.
    pub host_for: Box<dyn Fn(ClientId) -> String + Send + Sync>,
    /// The repository's master key, derived once for the run: a client's
    /// connect reads the repository as its user, without a key derivation
    /// (scrypt, about half a second of CPU) of its own — 64 of those were
    /// most of a 64-client start.
    pub key: MasterKey,
    pub timeouts: ClientTimeouts,
    /// The server's evidence, that every client classifies its errors with.
    pub evidence: Arc<Evidence>,
}

impl ClientFactory for RusticClients {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(RusticClient::new(
            (self.cache_dir_for)(client),
            (self.host_for)(client),
            self.key.clone(),
            self.timeouts,
            self.evidence.clone(),
        )))
    }

    fn kind(&self, _client: ClientId) -> String {
        super::KIND.to_owned()
    }
}
