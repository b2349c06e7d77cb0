//! The Server of the restic and mixed backends: the embedded server (the
//! same REST server, proxy, evidence and faults), named for its backend,
//! with a choice of GC: rustic_core's prune, or `restic prune`, which
//! takes restic's exclusive lock, run directly on the repository directory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::client::LOCK_PATIENCE;
use super::errors::CallContext;
use super::locks::{LockWait, Waited};
use super::process::{Invocation, Output, Processes, ResticBinary, Target};
use crate::backend::embedded::EmbeddedServer;
use crate::engine::damage::Unreadable;
use crate::engine::options::GcTool;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientId, Details, GcDone, GcOptions,
    RepoCheck, Server, ServerInfo, SnapshotId,
};

/// The name `unlock`'s `restic unlock --remove-all` runs under in the
/// table of processes: no client's, not the GC's.
const UNLOCK_USER: &str = "snapstorm-unlock";

/// How long a `restic prune` may take before it is SIGKILLed.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(600);

/// The embedded server under another backend's name, with its GC tool.
pub struct ResticServer {
    inner: Arc<EmbeddedServer>,
    backend: String,
    gc: GcTool,
    binary: ResticBinary,
    repo_password: String,
    /// Every restic process of the run: a prune runs as [`super::GC_USER`]
    /// there, so a client waiting for its lock knows it raced the GC, and
    /// the prune waits for the clients' processes to end.
    processes: Arc<Processes>,
    /// Prunes never overlap each other.
    gc_lock: Mutex<()>,
}

impl ResticServer {
    pub fn new(
        inner: Arc<EmbeddedServer>,
        backend: &str,
        gc: GcTool,
        binary: ResticBinary,
        repo_password: String,
        processes: Arc<Processes>,
    ) -> Self {
        ResticServer {
            inner,
            backend: backend.to_owned(),
            gc,
            binary,
            repo_password,
            processes,
            gc_lock: Mutex::new(()),
        }
    }

    /// restic on the storage directly (not through the proxy), as `user`
    /// in the table of processes.
    fn direct(&self, user: &str, args: Vec<String>) -> BackendResult<Output> {
        // The directory, or the external server's URL with its password:
        // in restic's environment only, scrubbed from what it prints.
        let target = Target {
            repository: self.inner.direct_repository().expose().to_owned(),
            password: self.repo_password.clone(),
            also_secret: self.inner.storage_secrets(),
            environment: self.inner.direct_environment(),
        };
        Invocation {
            binary: &self.binary,
            target: &target,
            cache_dir: None,
            args,
            cwd: None,
            deadline: PRUNE_TIMEOUT,
            processes: Some((&self.processes, user)),
            on_stdout_line: None,
        }
        .run()
        .map_err(|e| BackendError::Local(format!("cannot run restic: {e}")))
    }

    /// `restic unlock --remove-all`, as another host's user runs it to
    /// clear a repository that says it is locked: every lock goes, live
    /// ones too (`unlock`). Returns what restic said.
    pub fn remove_all_locks(&self) -> BackendResult<String> {
        let output = self.direct(UNLOCK_USER, vec!["unlock".into(), "--remove-all".into()])?;
        if !output.success() {
            return Err(BackendError::Failed(format!(
                "restic unlock --remove-all: {}",
                output.stderr.trim()
            )));
        }
        Ok(format!("{}{}", output.stdout, output.stderr)
            .trim()
            .to_owned())
    }

    /// `restic unlock` (locks of processes that are gone: a killed client's)
    /// and `restic prune`, on the storage directly (not through the proxy).
    fn restic_prune(&self, options: &GcOptions) -> BackendResult<Details> {
        let _one_at_a_time = options.one_at_a_time(&self.gc_lock);
        let evidence = self.inner.evidence();
        let _seen = evidence.gc_running();
        let run = |args: Vec<String>| self.direct(super::GC_USER, args);
        let started = std::time::Instant::now();
        let mut args = vec!["prune".to_owned()];
        if options.aggressive {
            args.extend(["--max-unused".to_owned(), "0".to_owned()]);
        }
        // Locks of processes that are gone first (a killed client's); then
        // the exclusive lock waits for every restic client's lock to go.
        let _ = run(vec!["unlock".into()])?;
        let waited = LockWait {
            version: self.binary.version,
            processes: &self.processes,
            patience: LOCK_PATIENCE,
            started,
        }
        .run(
            |retry_lock| {
                let mut all = args.clone();
                if let Some(wait) = retry_lock {
                    all.splice(
                        0..0,
                        ["--retry-lock".to_owned(), format!("{}ms", wait.as_millis())],
                    );
                }
                run(all)
            },
            || run(vec!["unlock".into()]),
        )?;
        let output = match waited {
            Waited::Done(output) | Waited::GaveUp { output, .. } => output,
        };
        if !output.success() {
            // No request: only the text and the exit tell what happened.
            return Err(CallContext {
                evidence,
                user: "",
                started,
                command: "prune",
            }
            .classify_local(&output));
        }
        let mut details = Details::new();
        details.insert("tool".into(), json!("restic"));
        details.insert("aggressive".into(), json!(options.aggressive));
        if let Some(line) = output
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with("to delete:"))
        {
            details.insert("to-delete".into(), json!(line.trim()));
        }
        Ok(details)
    }
}

impl Server for ResticServer {
    fn info(&self) -> ServerInfo {
        ServerInfo {
            backend: self.backend.clone(),
            ..self.inner.info()
        }
    }

    fn authorize_client(&self, client: ClientId) -> BackendResult<ClientCredentials> {
        self.inner.authorize_client(client)
    }

    fn remove_client(&self, client: ClientId) -> BackendResult<()> {
        self.inner.remove_client(client)
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        match self.gc {
            GcTool::Rustic => self.inner.run_gc(options),
            // restic prunes on its own: what it removed is not seen.
            GcTool::Restic => Ok(GcDone {
                details: self.restic_prune(options)?,
                removed: None,
                listed: None,
                raced: Vec::new(),
            }),
        }
    }

    fn unreadable(&self, snapshots: &[SnapshotId]) -> Unreadable {
        self.inner.unreadable(snapshots)
    }

    fn list_snapshots(&self) -> BackendResult<Vec<SnapshotId>> {
        self.inner.list_snapshots()
    }

    fn verify_repo(&self) -> BackendResult<RepoCheck> {
        self.inner.verify_repo()
    }

    fn repository_size(&self) -> u64 {
        self.inner.repository_size()
    }
}
