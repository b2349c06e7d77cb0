//! Carrying out faults on the embedded backend: its repository directory,
//! its server, and the proxy in front of it. What a fault explains is the
//! engine's business (attribution); this only makes it happen and tells the
//! run when it starts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use super::EmbeddedServer;
use crate::engine::Action;
use crate::engine::brief::brief;
use crate::engine::damage::{Damage, DataRef};
use crate::engine::traits::{
    ClientId, FaultHost, FaultInjector, GcOptions, InjectError, Injected, Server,
};
use crate::faults::{FaultKind, FaultSpec, KILL_CUT};

/// Faults for the embedded backend.
pub struct EmbeddedFaults {
    server: Arc<EmbeddedServer>,
    runtime: tokio::runtime::Handle,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Set when the run ends: long-running faults stop.
    stopping: Arc<AtomicBool>,
    storms: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Clients a `revoke-client` revoked and did not let in again yet.
    revoked: Arc<Mutex<BTreeSet<ClientId>>>,
}

fn fail(text: impl Into<String>) -> InjectError {
    InjectError::Failed(text.into())
}

impl EmbeddedFaults {
    pub fn new(server: Arc<EmbeddedServer>, runtime: tokio::runtime::Handle, seed: u64) -> Self {
        EmbeddedFaults {
            server,
            runtime,
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xfa17)),
            stopping: Arc::new(AtomicBool::new(false)),
            storms: Mutex::new(Vec::new()),
            revoked: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    fn pick<T: Clone>(&self, items: &[T]) -> Option<T> {
        items
            .choose(&mut *self.rng.lock().expect("rng lock"))
            .cloned()
    }

    fn pick_client(&self, spec: &FaultSpec, clients: &[ClientId]) -> Result<ClientId, InjectError> {
        match spec.client.map(ClientId) {
            Some(client) if clients.contains(&client) => Ok(client),
            Some(client) => Err(fail(format!("{client} is not running"))),
            None => self
                .pick(clients)
                .ok_or_else(|| fail("no client is running")),
        }
    }

    /// Files of one kind in the repository (`data` walks its subdirectories).
    fn repository_files(&self, repo_dir: &Path, kind: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(repo_dir.join(kind))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.into_path())
            .collect();
        files.sort();
        files
    }

    fn relative(&self, path: &Path) -> String {
        self.server
            .repo_dir()
            .and_then(|dir| path.strip_prefix(dir).ok())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// A random file of `kind` to damage, named relative to the repository.
    fn victim(&self, kind: &str, what: &str) -> Result<PathBuf, InjectError> {
        // Refused before the run starts where the storage is no directory.
        let repo_dir = self.server.repo_dir().ok_or_else(|| {
            fail("the repository is on a REST server: its files cannot be damaged from here")
        })?;
        self.pick(&self.repository_files(repo_dir, kind))
            .ok_or_else(|| InjectError::NoVictimYet(format!("the repository has no {what} yet")))
    }

    /// What damaging `victim` (a data pack, or an index file) damages, read
    /// from the repository before it is done.
    fn damage_of(&self, kind: FaultKind, victim: &Path) -> Damage {
        let Some(inspector) = self.server.inspector() else {
            return Damage::new();
        };
        match kind {
            FaultKind::DeleteIndex => {
                let name = victim
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let blobs = inspector
                    .index()
                    .map(|index| index.named_only_by(&name))
                    .unwrap_or_default();
                std::iter::once(DataRef::File(self.relative(victim)))
                    .chain(blobs.into_iter().map(DataRef::Blob))
                    .collect()
            }
            _ => inspector.pack_damage(victim, || inspector.index().ok()),
        }
    }

    fn corrupt(&self, pack: &Path) -> Result<(), InjectError> {
        let mut bytes =
            std::fs::read(pack).map_err(|e| fail(format!("read {}: {e}", pack.display())))?;
        // Flip bytes in the blob part, before the pack header at the end.
        let blob_part = (bytes.len() * 9 / 10).max(1);
        let mut rng = self.rng.lock().expect("rng lock");
        for _ in 0..16 {
            let at = rng.random_range(0..blob_part);
            bytes[at] ^= 0xff;
        }
        drop(rng);
        std::fs::write(pack, &bytes).map_err(|e| fail(format!("write {}: {e}", pack.display())))
    }

    fn delete(&self, victim: &Path) -> Result<(), InjectError> {
        std::fs::remove_file(victim).map_err(|e| fail(format!("delete {}: {e}", victim.display())))
    }
}

impl FaultInjector for EmbeddedFaults {
    fn inject(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
    ) -> Result<Injected, InjectError> {
        let mut enqueue = Vec::new();
        let duration = spec.duration;
        let starts = |target: &str, client: Option<ClientId>| {
            host.fault_starts(spec.kind, target, client, duration)
        };
        let (label, target) = match spec.kind {
            FaultKind::CorruptPack | FaultKind::DeletePack | FaultKind::DeleteIndex => {
                let (files, what) = match spec.kind {
                    FaultKind::DeleteIndex => ("index", "index file"),
                    _ => ("data", "data pack"),
                };
                let victim = self.victim(files, what)?;
                let target = self.relative(&victim);
                let damage = self.damage_of(spec.kind, &victim);
                let label = starts(&target, None);
                host.fault_damaged(&label, Some(damage));
                match spec.kind {
                    FaultKind::CorruptPack => self.corrupt(&victim)?,
                    _ => self.delete(&victim)?,
                }
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
                let stopping = self.stopping.clone();
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
            FaultKind::RevokeClient => {
                let client = self.pick_client(spec, clients)?;
                let label = starts(&client.to_string(), Some(client));
                self.server
                    .remove_client(client)
                    .map_err(|e| fail(e.to_string()))?;
                self.revoked.lock().expect("revoked lock").insert(client);
                if let Some(duration) = duration {
                    let server = self.server.clone();
                    let revoked = self.revoked.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(duration).await;
                        if !revoked.lock().expect("revoked lock").remove(&client) {
                            return;
                        }
                        match server.readmit_client(client) {
                            Ok(()) => tracing::warn!(target: "snapstorm::faults", %client, "revoke-client: readmitted"),
                            Err(error) => tracing::error!(target: "snapstorm::faults", %client, %error, "cannot readmit"),
                        }
                    });
                }
                (label, client.to_string())
            }
            FaultKind::KillClient => {
                let client = self.pick_client(spec, clients)?;
                let label = starts(&client.to_string(), Some(client));
                self.server.proxy().arm_kill(&client.to_string(), KILL_CUT);
                // Make sure it has something to upload, and uploads it now.
                enqueue = vec![
                    (client, Action::WriteRandomFiles),
                    (client, Action::SnapshotRoot),
                ];
                (label, client.to_string())
            }
            FaultKind::AggressiveGc => {
                let target = "repository (instant delete, keep-delete 0)".to_owned();
                let label = starts(&target, None);
                // On an already damaged repository the prune itself can fail: that
                // is a consequence to report, not a fault that did not happen.
                let target = match host.run_gc(&GcOptions { aggressive: true }) {
                    Ok(done) => {
                        host.fault_damaged(&label, done.removed);
                        target
                    }
                    Err(error) => {
                        host.fault_failed(&label);
                        format!("{target}; the GC failed: {}", brief(&error.to_string()))
                    }
                };
                (label, target)
            }
            FaultKind::GcStorm => {
                let until = Instant::now() + duration.unwrap_or_default();
                let target = "repository (safe GC, repeatedly)".to_owned();
                let label = starts(&target, None);
                let host = host.clone();
                let stopping = self.stopping.clone();
                let storm = std::thread::Builder::new()
                    .name("gc-storm".into())
                    .spawn(move || {
                        let mut runs = 0u32;
                        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                            match host.run_gc(&GcOptions::default()) {
                                Ok(_) => runs += 1,
                                Err(error) => tracing::warn!(target: "snapstorm::faults", %error, "gc-storm: GC failed"),
                            }
                        }
                        tracing::warn!(target: "snapstorm::faults", runs, "gc-storm over");
                    })
                    .map_err(|e| fail(e.to_string()))?;
                self.storms.lock().expect("storms lock").push(storm);
                (label, target)
            }
        };
        Ok(Injected {
            label,
            kind: spec.kind,
            target,
            duration,
            enqueue,
        })
    }

    fn end_all(&self) -> Result<(), InjectError> {
        self.stopping.store(true, Ordering::SeqCst);
        let storms: Vec<_> = self.storms.lock().expect("storms lock").drain(..).collect();
        for storm in storms {
            let _ = storm.join();
        }
        self.server.proxy().clear_network();
        self.server.proxy().clear_kills();
        let revoked = std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        for client in revoked {
            self.server
                .readmit_client(client)
                .map_err(|e| fail(format!("cannot let {client} in again: {e}")))?;
        }
        self.runtime
            .block_on(self.server.restart())
            .map_err(|e| fail(format!("the server does not serve again: {e}")))
    }
}
