//! Carrying out faults on the embedded backend: its repository directory,
//! its server, and the proxy in front of it. What a fault explains is the
//! engine's business (attribution); this only makes it happen and tells the
//! run when it starts.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustic_core::FileType;

use super::EmbeddedServer;
use super::inspect::Inspector;
use super::stored::StoredKind;
use crate::backend::fault_kit::{FaultKit, Readmit, fail};
use crate::backend::s3::repository_path;
use crate::engine::damage::{Damage, DataRef};
use crate::engine::traits::{
    BackendResult, ClientId, FaultHost, FaultInjector, InjectError, Injected, Server,
};
use crate::faults::{FaultKind, FaultSpec, KILL_CUT, VictimRole};

/// The host a `stale-lock` names as its lock's: not this one, so restic
/// cannot tell the process is gone and keeps the lock for 30 minutes.
pub const STALE_LOCK_HOST: &str = "snapstorm-gone-host";
/// The process a `stale-lock` names as its lock's.
const STALE_LOCK_PID: u32 = 4242;

/// How long a fault whose role (`victim=`) names a file its client has
/// not stored yet waits for it, while the client acts, before it takes the
/// nearest role there is.
const ROLE_WAIT: Duration = Duration::from_secs(15);

/// How long a fault waits for the answer to the upload of the file it
/// drew, whose role comes with that answer (an upload the storage has
/// taken is answered within moments; a network fault may hold it longer).
const UPLOAD_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The file a pack or index fault damages.
struct Victim {
    /// Its name (the id).
    name: String,
    /// The role it holds, where a client stored it through the proxy: the
    /// trace names the fault with it, so that its replay finds it again.
    role: Option<VictimRole>,
}

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
    /// Since when each fault (by its spec) has waited for the file its
    /// role names.
    role_waits: Mutex<HashMap<String, Instant>>,
}

impl EmbeddedFaults {
    pub fn new(server: Arc<EmbeddedServer>, runtime: tokio::runtime::Handle, seed: u64) -> Self {
        EmbeddedFaults {
            server,
            runtime,
            kit: FaultKit::new(seed),
            remove_all_locks: None,
            stale_locks: Mutex::new(Vec::new()),
            role_waits: Mutex::new(HashMap::new()),
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

    /// The file of `kind` that takes `spec`'s damage: the one its role
    /// names (`victim=`), or else one drawn at random; with the role it
    /// holds, where a client stored it through the proxy.
    fn victim(
        &self,
        spec: &FaultSpec,
        kind: FileType,
        what: &str,
        host: &dyn FaultHost,
    ) -> Result<Victim, InjectError> {
        let mut files = self
            .server
            .inspector()
            .files()
            .list(kind)
            .map_err(|e| fail(format!("cannot list the repository's {what}s: {e}")))?;
        files.retain(|file| FaultKit::can_damage(spec, file.version.len));
        let mut names: Vec<String> = files.into_iter().map(|file| file.name).collect();
        names.sort();
        let by_role = match spec.victim {
            Some(role) => self.by_role(spec, role, &names, kind, what, host)?,
            None => None,
        };
        // Drawn either way, once: the seed's later draws (the bytes a
        // corrupt-pack flips) stay those of the recording.
        let drawn = self.kit.pick(&names);
        if let Some(victim) = by_role {
            return Ok(victim);
        }
        let name = drawn.ok_or_else(|| FaultKit::no_victim(spec, what))?;
        // The storage lists a file before its upload's answer has come
        // back through the proxy with its role: that answer is waited for.
        let proxy = self.server.proxy();
        proxy.wait_for_answer(&name, UPLOAD_ANSWER_WAIT);
        let role = proxy.role_of(&name).and_then(|(user, nth)| {
            let client = user.parse::<ClientId>().ok()?;
            Some(VictimRole {
                client: client.0,
                nth,
            })
        });
        Ok(Victim { name, role })
    }

    /// The file `role` names among `names` (the files that can take the
    /// damage, sorted), or the nearest role there is: the client's newest
    /// such file. `None`: the client stored none that is there (a random
    /// one then). A file not stored yet is waited for a while, as long as
    /// the client acts: one that has stopped stores nothing more (on the
    /// recorded schedule its next action waits for this fault's turn).
    fn by_role(
        &self,
        spec: &FaultSpec,
        role: VictimRole,
        names: &[String],
        kind: FileType,
        what: &str,
        host: &dyn FaultHost,
    ) -> Result<Option<Victim>, InjectError> {
        let stored_kind = match kind {
            FileType::Index => StoredKind::Index,
            _ => StoredKind::Pack,
        };
        let stored = self
            .server
            .proxy()
            .stored_by(&ClientId(role.client).to_string(), stored_kind);
        let there = |name: &String| names.binary_search(name).is_ok();
        let named = role
            .nth
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| stored.get(i));
        if named.is_none() && host.acting(ClientId(role.client)) && self.waits_for_role(spec) {
            return Err(InjectError::NoVictimYet(format!(
                "client-{} has stored {} {what}(s) so far, and the fault damages {}",
                role.client,
                stored.len(),
                role.describe(what)
            )));
        }
        self.role_waits
            .lock()
            .expect("role waits lock")
            .remove(&spec.to_string());
        if let Some(name) = named.filter(|name| there(name)) {
            return Ok(Some(Victim {
                name: name.clone(),
                role: Some(role),
            }));
        }
        // The run went otherwise than the one the role was taken from:
        // the nearest role there is, the client's newest such file.
        let nearest = stored
            .iter()
            .enumerate()
            .rev()
            .find(|(_, name)| there(name));
        tracing::warn!(
            target: "snapstorm::faults",
            "{spec}: {} is not in the repository, or cannot take the damage; {}",
            role.describe(what),
            match nearest {
                Some(_) => format!("client-{}'s newest {what} instead", role.client),
                None => format!("a random {what} instead"),
            }
        );
        Ok(nearest.map(|(i, name)| Victim {
            name: name.clone(),
            role: Some(VictimRole {
                client: role.client,
                nth: u32::try_from(i + 1).unwrap_or(u32::MAX),
            }),
        }))
    }

    /// Whether a fault whose role names a file its client has not stored
    /// yet waits on (a replayed fault can come before the upload it
    /// damaged in the recording has finished), for up to [`ROLE_WAIT`].
    fn waits_for_role(&self, spec: &FaultSpec) -> bool {
        let mut waiting = self.role_waits.lock().expect("role waits lock");
        let since = waiting.entry(spec.to_string()).or_insert_with(Instant::now);
        since.elapsed() < ROLE_WAIT
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
                let Victim { name: victim, role } = self.victim(spec, files, what, &**host)?;
                let target = repository_path(files, &victim);
                let inspector = self.server.inspector();
                let contents = Self::contents(inspector, spec, files, &victim)?;
                let damage = Self::damage_of(inspector, spec.kind, &victim, contents.as_deref());
                let label = host.fault_starts_on(spec.kind, &target, role);
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
                let target = self.kit.aggressive_gc(spec, host, &label, target);
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
