//! Carrying out faults on the embedded backend: its repository directory,
//! its server, and the proxy in front of it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use super::{FaultKind, FaultLedger, FaultSpec};
use crate::backend::embedded::EmbeddedServer;
use crate::engine::Action;
use crate::engine::exec::Engine;
use crate::engine::traits::{ClientId, GcOptions, Server};

/// How long a killed client stays cut off: long enough for its retries to
/// give up, so the snapshot in flight fails with its partial upload left behind.
pub const KILL_WINDOW: Duration = Duration::from_secs(10);

/// A fault that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// `corrupt-pack@15.2s`: how failures name it.
    pub label: String,
    pub kind: FaultKind,
    /// What it hit.
    pub target: String,
    pub duration: Option<Duration>,
    /// Actions the run should queue for a client (kill-client needs a snapshot in flight).
    pub enqueue: Vec<(ClientId, Action)>,
}

/// Injects faults into a running run.
pub trait FaultInjector: Send + Sync {
    /// Puts `spec` into effect now; anything that ends later is scheduled.
    /// `clients` are the clients running now. Blocking: call it off the async threads.
    fn inject(&self, spec: &FaultSpec, clients: &[ClientId]) -> Result<Injected, String>;
    /// Whether an injected fault damaged the repository's data (then the run
    /// ends with a full repository check).
    fn damaged_data(&self) -> bool;
    /// Ends faults still going (a GC storm) and waits for them; the run's
    /// final checks must not race them. Blocking.
    fn stop(&self);
}

/// Faults for the embedded backend.
pub struct EmbeddedFaults {
    server: Arc<EmbeddedServer>,
    engine: Arc<Engine>,
    ledger: Arc<FaultLedger>,
    runtime: tokio::runtime::Handle,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Set when the run ends: long-running faults stop.
    stopping: Arc<AtomicBool>,
    storms: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl EmbeddedFaults {
    pub fn new(
        server: Arc<EmbeddedServer>,
        engine: Arc<Engine>,
        ledger: Arc<FaultLedger>,
        runtime: tokio::runtime::Handle,
        seed: u64,
    ) -> Self {
        EmbeddedFaults {
            server,
            engine,
            ledger,
            runtime,
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xfa17)),
            stopping: Arc::new(AtomicBool::new(false)),
            storms: Mutex::new(Vec::new()),
        }
    }

    fn pick<T: Clone>(&self, items: &[T]) -> Option<T> {
        items
            .choose(&mut *self.rng.lock().expect("rng lock"))
            .cloned()
    }

    fn pick_client(&self, spec: &FaultSpec, clients: &[ClientId]) -> Result<ClientId, String> {
        match spec.client {
            Some(client) if clients.contains(&client) => Ok(client),
            Some(client) => Err(format!("{client} is not running")),
            None => self
                .pick(clients)
                .ok_or_else(|| "no client is running".to_owned()),
        }
    }

    /// Files of one kind in the repository (`data` walks its subdirectories).
    fn repository_files(&self, kind: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(self.server.repo_dir().join(kind))
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
        path.strip_prefix(self.server.repo_dir())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn corrupt_pack(&self) -> Result<String, String> {
        let packs = self.repository_files("data");
        let pack = self
            .pick(&packs)
            .ok_or("the repository has no data pack yet")?;
        let mut bytes =
            std::fs::read(&pack).map_err(|e| format!("read {}: {e}", pack.display()))?;
        // Flip bytes in the blob part, before the pack header at the end.
        let blob_part = (bytes.len() * 9 / 10).max(1);
        let mut rng = self.rng.lock().expect("rng lock");
        for _ in 0..16 {
            let at = rng.random_range(0..blob_part);
            bytes[at] ^= 0xff;
        }
        drop(rng);
        std::fs::write(&pack, &bytes).map_err(|e| format!("write {}: {e}", pack.display()))?;
        Ok(self.relative(&pack))
    }

    fn delete_one(&self, kind: &str, what: &str) -> Result<String, String> {
        let files = self.repository_files(kind);
        let victim = self
            .pick(&files)
            .ok_or(format!("the repository has no {what} yet"))?;
        std::fs::remove_file(&victim).map_err(|e| format!("delete {}: {e}", victim.display()))?;
        Ok(self.relative(&victim))
    }

    fn gc(&self, aggressive: bool) -> Result<(), String> {
        self.server
            .run_gc(&GcOptions { aggressive })
            .map(|_| self.engine.note_gc_run())
            .map_err(|e| e.to_string())
    }
}

impl FaultInjector for EmbeddedFaults {
    fn inject(&self, spec: &FaultSpec, clients: &[ClientId]) -> Result<Injected, String> {
        let mut enqueue = Vec::new();
        let duration = spec.duration;
        let record = |target: String, client: Option<ClientId>| {
            self.ledger.record(spec.kind, target, client, duration)
        };
        let (label, target) = match spec.kind {
            FaultKind::CorruptPack => {
                let target = self.corrupt_pack()?;
                (record(target.clone(), None), target)
            }
            FaultKind::DeletePack => {
                let target = self.delete_one("data", "data pack")?;
                (record(target.clone(), None), target)
            }
            FaultKind::DeleteIndex => {
                let target = self.delete_one("index", "index file")?;
                (record(target.clone(), None), target)
            }
            FaultKind::ServerRestart => {
                let down_for = duration.unwrap_or_default();
                let target = format!(
                    "server {} (via {})",
                    self.server.server_addr(),
                    self.server.addr()
                );
                let label = record(target.clone(), None);
                self.runtime.block_on(self.server.stop());
                let server = self.server.clone();
                let stopping = self.stopping.clone();
                self.runtime.spawn(async move {
                    tokio::time::sleep(down_for).await;
                    if stopping.load(Ordering::SeqCst) {
                        // The run ended meanwhile; its own shutdown stops the server.
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
                let label = record(target.clone(), None);
                self.server.proxy().set_network(n, until);
                (label, target)
            }
            FaultKind::RevokeClient => {
                let client = self.pick_client(spec, clients)?;
                let label = record(client.to_string(), Some(client));
                self.server
                    .remove_client(client)
                    .map_err(|e| e.to_string())?;
                if let Some(duration) = duration {
                    let server = self.server.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(duration).await;
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
                let label = record(client.to_string(), Some(client));
                self.server
                    .proxy()
                    .arm_kill(&client.to_string(), KILL_WINDOW);
                // Make sure it has something to upload, and uploads it now.
                enqueue = vec![
                    (client, Action::WriteRandomFiles),
                    (client, Action::SnapshotRoot),
                ];
                (label, client.to_string())
            }
            FaultKind::AggressiveGc => {
                let target = "repository (instant delete, keep-delete 0)".to_owned();
                let label = record(target.clone(), None);
                // On an already damaged repository the prune itself can fail: that
                // is a consequence to report, not a fault that did not happen.
                let target = match self.gc(true) {
                    Ok(()) => target,
                    Err(error) => format!(
                        "{target}; the GC failed: {}",
                        crate::engine::brief::brief(&error)
                    ),
                };
                (label, target)
            }
            FaultKind::GcStorm => {
                let until = Instant::now() + duration.unwrap_or_default();
                let target = "repository (safe GC, repeatedly)".to_owned();
                let label = record(target.clone(), None);
                let server = self.server.clone();
                let engine = self.engine.clone();
                let stopping = self.stopping.clone();
                let storm = std::thread::Builder::new()
                    .name("gc-storm".into())
                    .spawn(move || {
                        let mut runs = 0u32;
                        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                            match server.run_gc(&GcOptions::default()) {
                                Ok(_) => {
                                    runs += 1;
                                    engine.note_gc_run();
                                }
                                Err(error) => tracing::warn!(target: "snapstorm::faults", %error, "gc-storm: GC failed"),
                            }
                        }
                        tracing::warn!(target: "snapstorm::faults", runs, "gc-storm over");
                    })
                    .map_err(|e| e.to_string())?;
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

    fn damaged_data(&self) -> bool {
        self.ledger.damaged_data()
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let storms: Vec<_> = self.storms.lock().expect("storms lock").drain(..).collect();
        for storm in storms {
            let _ = storm.join();
        }
    }
}
