//! Carrying out faults on the embedded backend: its repository directory,
//! its server, and the proxy in front of it. What a fault explains is the
//! engine's business (attribution); this only makes it happen and tells the
//! run when it starts.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustic_core::FileType;

use super::EmbeddedServer;
use super::inspect::Inspector;
use crate::backend::fault_kit::{FaultKit, Readmit, fail};
use crate::backend::s3::repository_path;
use crate::engine::damage::{Damage, DataRef};
use crate::engine::traits::{
    BackendResult, ClientId, FaultHost, FaultInjector, InjectError, Injected, Server,
};
use crate::faults::{FaultKind, FaultSpec, KILL_CUT};

/// The host a `stale-lock` names as its lock's: not this one, so restic
/// cannot tell the process is gone and keeps the lock for 30 minutes.
pub const STALE_LOCK_HOST: &str = "snapstorm-gone-host";
/// The process a `stale-lock` names as its lock's.
const STALE_LOCK_PID: u32 = 4242;

/// Removes every lock in the repository, live ones too, and says what it
/// removed (`unlock`: restic's `unlock --remove-all`, where restic runs).
pub type RemoveAllLocks = Arc<dyn Fn() -> BackendResult<String> + Send + Sync>;

/// Faults for the embedded backend.
pub struct EmbeddedFaults {
    server: Arc<EmbeddedServer>,
    runtime: tokio::runtime::Handle,
    kit: FaultKit,
    /// `unlock`: where the clients take locks (restic's).
    remove_all_locks: Option<RemoveAllLocks>,
    /// Labels of the `stale-lock`s whose lock is still there: an `unlock`
    /// ends them.
    stale_locks: Mutex<Vec<String>>,
}

impl EmbeddedFaults {
    pub fn new(server: Arc<EmbeddedServer>, runtime: tokio::runtime::Handle, seed: u64) -> Self {
        EmbeddedFaults {
            server,
            runtime,
            kit: FaultKit::new(seed),
            remove_all_locks: None,
            stale_locks: Mutex::new(Vec::new()),
        }
    }

    /// With clients that take locks: `unlock` removes them all this way.
    pub fn removing_locks_with(mut self, remove: RemoveAllLocks) -> Self {
        self.remove_all_locks = Some(remove);
        self
    }

    /// `stale-lock`: an exclusive lock of a process gone on another host,
    /// fresh, so restic keeps it (it cannot ask that host's processes).
    fn leave_stale_lock(&self) -> Result<String, InjectError> {
        let lock = serde_json::json!({
            "time": rustic_core::jiff::Timestamp::now().to_string(),
            "exclusive": true,
            "hostname": STALE_LOCK_HOST,
            "username": "snapstorm",
            "pid": STALE_LOCK_PID,
        });
        self.server
            .inspector()
            .write_lock(lock.to_string().as_bytes())
            .map_err(|e| fail(e.to_string()))
    }

    fn readmit(&self) -> Readmit {
        let server = self.server.clone();
        Arc::new(move |client| server.readmit_client(client))
    }

    /// A random file of `kind` that can take `spec`'s damage: its name.
    fn victim(&self, spec: &FaultSpec, kind: FileType, what: &str) -> Result<String, InjectError> {
        let mut files = self
            .server
            .inspector()
            .files()
            .list(kind)
            .map_err(|e| fail(format!("cannot list the repository's {what}s: {e}")))?;
        files.retain(|file| FaultKit::can_damage(spec, file.version.len));
        let mut names: Vec<String> = files.into_iter().map(|file| file.name).collect();
        names.sort();
        self.kit
            .pick(&names)
            .ok_or_else(|| FaultKit::no_victim(spec, what))
    }

    /// What `victim` holds now, read once: its damage is recorded from it,
    /// and a fault that changes it writes it back changed (on S3: one GET,
    /// one PUT). A pack about to be deleted is read for the record only
    /// (unreadable, the index names its blobs instead); an index file is
    /// not read.
    fn contents(
        inspector: &Inspector,
        spec: &FaultSpec,
        kind: FileType,
        victim: &str,
    ) -> Result<Option<Vec<u8>>, InjectError> {
        let read = || inspector.files().read(kind, victim);
        match spec.kind {
            FaultKind::DeleteIndex => Ok(None),
            FaultKind::DeletePack => Ok(read().ok()),
            _ => read()
                .map(Some)
                .map_err(|e| fail(format!("read {}: {e}", repository_path(kind, victim)))),
        }
    }

    /// What damaging `victim` (a data pack, or an index file) damages, read
    /// from the repository (and `contents`) before it is done.
    fn damage_of(
        inspector: &Inspector,
        kind: FaultKind,
        victim: &str,
        contents: Option<&[u8]>,
    ) -> Damage {
        match kind {
            FaultKind::DeleteIndex => {
                let blobs = inspector
                    .index()
                    .map(|index| index.named_only_by(victim))
                    .unwrap_or_default();
                std::iter::once(DataRef::File(repository_path(FileType::Index, victim)))
                    .chain(blobs.into_iter().map(DataRef::Blob))
                    .collect()
            }
            _ => inspector.pack_damage(victim, contents, || inspector.index().ok()),
        }
    }
}

impl FaultInjector for EmbeddedFaults {
    fn inject(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
    ) -> Result<Injected, InjectError> {
        let duration = spec.duration;
        let starts = |target: &str, client: Option<ClientId>| {
            host.fault_starts(spec.kind, target, client, duration)
        };
        let (label, target) = match spec.kind {
            FaultKind::CorruptPack
            | FaultKind::DeletePack
            | FaultKind::DeleteIndex
            | FaultKind::TruncatePack
            | FaultKind::EmptyPack => {
                let (files, what) = match spec.kind {
                    FaultKind::DeleteIndex => (FileType::Index, "index file"),
                    _ => (FileType::Pack, "data pack"),
                };
                let victim = self.victim(spec, files, what)?;
                let target = repository_path(files, &victim);
                let inspector = self.server.inspector();
                let contents = Self::contents(inspector, spec, files, &victim)?;
                let damage = Self::damage_of(inspector, spec.kind, &victim, contents.as_deref());
                let label = starts(&target, None);
                host.fault_damaged(&label, Some(damage));
                // Through the storage's own API where it is no directory.
                let damaged = contents.and_then(|bytes| self.kit.damaged(spec, bytes));
                inspector
                    .replace(files, &victim, damaged)
                    .map_err(|e| fail(format!("damage {target}: {e}")))?;
                (label, target)
            }
            FaultKind::ServerRestart => {
                let down_for = duration.unwrap_or_default();
                let target = format!(
                    "server {} (via {})",
                    self.server.server_addr(),
                    self.server.addr()
                );
                let label = starts(&target, None);
                self.runtime.block_on(self.server.stop());
                let server = self.server.clone();
                let stopping = self.kit.stopping();
                self.runtime.spawn(async move {
                    tokio::time::sleep(down_for).await;
                    if stopping.load(Ordering::SeqCst) {
                        // The run ends: `end_all` brings the server back.
                        return;
                    }
                    match server.restart().await {
                        Ok(()) => tracing::warn!(target: "snapstorm::faults", "server-restart: serving again"),
                        Err(error) => tracing::error!(target: "snapstorm::faults", %error, "server-restart: cannot serve again"),
                    }
                });
                (label, target)
            }
            FaultKind::Network => {
                let until = Instant::now() + duration.unwrap_or_default();
                let n = spec.network;
                let target = format!(
                    "proxy {}: latency {}ms, drop {}%, error {}%",
                    self.server.addr(),
                    n.latency.as_millis(),
                    n.drop_percent,
                    n.error_percent
                );
                let label = starts(&target, None);
                self.server.proxy().set_network(n, until);
                (label, target)
            }
            FaultKind::StorageErrors => {
                let outage = self.server.storage_outage().ok_or_else(|| {
                    fail("the storage is an external server: snapstorm cannot make it fail")
                })?;
                let share = spec.error_share();
                let target = format!(
                    "storage behind {}: {share}% of requests answered 500/503",
                    self.server.addr()
                );
                let label = starts(&target, None);
                outage.fail(share, Instant::now() + duration.unwrap_or_default());
                (label, target)
            }
            FaultKind::RevokeClient => {
                let server = self.server.clone();
                self.kit.revoke_client(
                    spec,
                    clients,
                    host,
                    |client| server.remove_client(client),
                    self.readmit(),
                )?
            }
            FaultKind::KillClient => {
                return self.kit.catch_mid_snapshot(spec, clients, host, |client| {
                    self.server.proxy().arm_kill(&client.to_string(), KILL_CUT)
                });
            }
            FaultKind::PauseClient => {
                let frozen_for = duration.unwrap_or_default();
                return self.kit.catch_mid_snapshot(spec, clients, host, |client| {
                    self.server
                        .proxy()
                        .arm_pause(&client.to_string(), frozen_for)
                });
            }
            FaultKind::AggressiveGc => {
                let target = "repository (instant delete, keep-delete 0)".to_owned();
                let label = starts(&target, None);
                let target = self.kit.aggressive_gc(host, &label, target);
                (label, target)
            }
            FaultKind::OverlappingGc => {
                let target = "repository (two safe GCs at once)".to_owned();
                let label = starts(&target, None);
                let target = self.kit.overlapping_gc(host, &label, target);
                (label, target)
            }
            FaultKind::StopOsd => self.kit.stop_osd(spec, host)?,
            FaultKind::ParallelForget => return self.kit.forget_together(spec, clients, host),
            FaultKind::StaleLock => {
                if self.remove_all_locks.is_none() {
                    return Err(fail(
                        "the clients take no locks (rustic_core is lock-free): a lock left behind would hold nobody",
                    ));
                }
                let label = starts(
                    &format!("locks: exclusive, PID {STALE_LOCK_PID} on {STALE_LOCK_HOST}"),
                    None,
                );
                let file = match self.leave_stale_lock() {
                    Ok(file) => file,
                    Err(error) => {
                        host.fault_failed(&label);
                        return Err(error);
                    }
                };
                self.stale_locks
                    .lock()
                    .expect("stale locks lock")
                    .push(label.clone());
                (label, file)
            }
            FaultKind::Unlock => {
                let remove = self.remove_all_locks.as_ref().ok_or_else(|| {
                    fail("the clients take no locks (rustic_core is lock-free): there is nothing to unlock")
                })?;
                let label = starts("every lock (restic unlock --remove-all)", None);
                let target = match remove() {
                    Ok(said) => {
                        // The locks left behind are gone with the rest.
                        let removed = std::mem::take(
                            &mut *self.stale_locks.lock().expect("stale locks lock"),
                        );
                        for stale in removed {
                            host.fault_ends(&stale);
                        }
                        format!("every lock: {said}")
                    }
                    Err(error) => {
                        host.fault_failed(&label);
                        format!("every lock, failed: {error}")
                    }
                };
                (label, target)
            }
            FaultKind::GcStorm => {
                let until = Instant::now() + duration.unwrap_or_default();
                let target = "repository (safe GC, repeatedly)".to_owned();
                let label = starts(&target, None);
                self.kit.gc_storm(host, until)?;
                (label, target)
            }
        };
        Ok(Injected {
            label,
            kind: spec.kind,
            target,
            duration,
            enqueue: Vec::new(),
        })
    }

    fn end_all(&self) -> Result<(), InjectError> {
        self.server.proxy().clear_network();
        self.server.proxy().clear_kills();
        if let Some(outage) = self.server.storage_outage() {
            outage.end();
        }
        self.kit.end(&self.readmit())?;
        self.runtime
            .block_on(self.server.restart())
            .map_err(|e| fail(format!("the server does not serve again: {e}")))
    }
}
