//! Carrying out faults on the kopia backend: its filesystem repository,
//! its server, and the connection proxy in front of it. What a fault
//! explains is the engine's business; this makes it happen and says what
//! it damaged.
//!
//! - `corrupt-pack`, `delete-pack`: a `p` blob, one of kopia's data packs
//!   that holds live contents (concurrent clients leave packs whose every
//!   content has a newer copy: damage to one of those meets nobody). Its
//!   damage is that pack, by the blob id kopia's errors name (`invalid
//!   checksum at p…`, `backed by missing blob p…`).
//! - `delete-index` cannot happen here: kopia's index blobs (`x`) index the
//!   snapshot manifests too, so deleting one hides snapshots from the
//!   listing — and a snapshot missing from the listing is one the
//!   repository lost, which no fault explains. It is refused before the run
//!   starts ([`refusal`]).
//! - `server-restart`: the server stopped, and started again where it
//!   listened, with the same certificate.
//! - `network`, `kill-client`: at the proxy (see `proxy.rs`); a killed
//!   client's kopia process is SIGKILLed by the run's hook.
//! - `revoke-client`: the client's user deleted on the server (kopia
//!   answers `PermissionDenied`), added again when the duration ends.
//! - `aggressive-gc`, `gc-storm`: the run's GC. kopia does not say which
//!   packs its maintenance removed, so an aggressive GC explains by its
//!   time (the weaker rule the docs name).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::server::{KopiaServer, kopia_user};
use crate::backend::fault_kit::{FaultKit, Readmit, fail};
use crate::engine::damage::DataRef;
use crate::engine::traits::{ClientId, FaultHost, FaultInjector, InjectError, Injected, Server};
use crate::faults::{FaultKind, FaultSpec, KILL_CUT};

/// Why a fault cannot happen on the kopia backend, if it cannot: said
/// before the run starts, never found out during it.
pub fn refusal(kind: FaultKind) -> Option<&'static str> {
    match kind {
        FaultKind::DeleteIndex => Some(
            "kopia's index blobs index the snapshot manifests too: deleting one hides snapshots from the listing, and a snapshot missing from the listing is one the repository lost, which no fault may explain; use corrupt-pack or delete-pack",
        ),
        FaultKind::OverlappingGc => Some(
            "kopia's maintenance runs here as one owner on one host; two hosts' maintenance at once (kopia #1087) is not set up yet; use gc-storm or aggressive-gc",
        ),
        FaultKind::PauseClient => Some(
            "pause-client is not carried out on kopia yet: its clients' TLS passes the proxy as bytes, where no upload can be told from another to hold; use kill-client",
        ),
        FaultKind::StaleLock | FaultKind::Unlock => Some(
            "kopia's clients take no locks in the repository (kopia is lock-free): there is no lock to leave or remove",
        ),
        FaultKind::StorageErrors => Some(
            "storage errors are answered by snapstorm's own REST server, and kopia's repository is served by kopia's own server; use network (HTTP 500s at the proxy)",
        ),
        FaultKind::ParallelForget => Some(
            "kopia has no forget by policy to run from its clients (its retention runs in maintenance); parallel-forget is not set up for kopia yet; use overlapping maintenance through gc-storm",
        ),
        _ => None,
    }
}

/// Faults for the kopia backend.
pub struct KopiaFaults {
    server: Arc<KopiaServer>,
    kit: FaultKit,
}

impl KopiaFaults {
    pub fn new(server: Arc<KopiaServer>, seed: u64) -> Self {
        KopiaFaults {
            server,
            kit: FaultKit::new(seed),
        }
    }

    fn readmit(&self) -> Readmit {
        let server = self.server.clone();
        Arc::new(move |client| server.readmit_client(client))
    }

    /// The data packs (`p` blobs) of the repository that hold live
    /// contents (all of them, if kopia cannot say which): each file's path,
    /// and its blob id (the sharded path without separators or `.f`).
    fn packs(&self) -> Vec<(PathBuf, String)> {
        let in_use = self
            .server
            .packs_in_use()
            .inspect_err(|error| tracing::warn!(target: "snapstorm::faults", %error, "cannot tell which packs hold live contents"))
            .ok();
        // Data faults are refused before a run on storage that is no
        // directory here (`run::launch`).
        let Some(repo) = self.server.repo_dir() else {
            return Vec::new();
        };
        let mut packs: Vec<(PathBuf, String)> = walkdir::WalkDir::new(repo.join("p"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| {
                let id = blob_id(repo, e.path())?;
                Some((e.into_path(), id))
            })
            .filter(|(_, id)| in_use.as_ref().is_none_or(|packs| packs.contains(id)))
            .collect();
        packs.sort();
        packs
    }
}

/// kopia's blob id of a file of its filesystem storage: `p/5c6/1ed…-s67….f`
/// is `p5c61ed…-s67…`. Files being written (no `.f`) are none.
fn blob_id(repo: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(repo).ok()?.to_str()?;
    let id: String = relative.strip_suffix(".f")?.split('/').collect();
    Some(id)
}

impl FaultInjector for KopiaFaults {
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
            FaultKind::DeleteIndex
            | FaultKind::OverlappingGc
            | FaultKind::StorageErrors
            | FaultKind::PauseClient
            | FaultKind::StaleLock
            | FaultKind::Unlock
            | FaultKind::ParallelForget => {
                return Err(fail(refusal(spec.kind).unwrap_or("not on kopia")));
            }
            FaultKind::CorruptPack
            | FaultKind::DeletePack
            | FaultKind::TruncatePack
            | FaultKind::EmptyPack => {
                if let Some(victim) = spec.victim {
                    return Err(fail(format!(
                        "victim={victim} names a pack by the client that stored it, which kopia's server does not tell; on kopia a pack fault draws its pack at random (leave victim= out)"
                    )));
                }
                let mut packs = self.packs();
                packs.retain(|(file, _)| {
                    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                    FaultKit::can_damage(spec, len)
                });
                let (file, id) = self
                    .kit
                    .pick(&packs)
                    .ok_or_else(|| FaultKit::no_victim(spec, "data pack"))?;
                let label = starts(&id, None);
                host.fault_damaged(&label, Some([DataRef::Pack(id.clone())].into()));
                self.kit.damage_file(spec, &file)?;
                (label, id)
            }
            FaultKind::ServerRestart => {
                let down_for = duration.unwrap_or_default();
                let target = format!("kopia server {}", self.server.address());
                let label = starts(&target, None);
                self.server.stop_serving();
                let server = self.server.clone();
                let stopping = self.kit.stopping();
                std::thread::Builder::new()
                    .name("server-restart".into())
                    .spawn(move || {
                        std::thread::sleep(down_for);
                        if stopping.load(Ordering::SeqCst) {
                            // The run ends: `end_all` brings the server back.
                            return;
                        }
                        match server.serve_again() {
                            Ok(()) => tracing::warn!(target: "snapstorm::faults", "server-restart: serving again"),
                            Err(error) => tracing::error!(target: "snapstorm::faults", %error, "server-restart: cannot serve again"),
                        }
                    })
                    .map_err(|e| fail(e.to_string()))?;
                (label, target)
            }
            FaultKind::Network => {
                let until = Instant::now() + duration.unwrap_or_default();
                let n = spec.network;
                let target = format!(
                    "proxy: latency {}ms, drop {}%, reset {}%",
                    n.latency.as_millis(),
                    n.drop_percent,
                    n.error_percent
                );
                let label = starts(&target, None);
                self.server.proxy().set_network(n, until);
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
            FaultKind::StopOsd => self.kit.stop_osd(spec, host)?,
            FaultKind::KillClient => {
                return self.kit.catch_mid_snapshot(spec, clients, host, |client| {
                    self.server.proxy().arm_kill(&kopia_user(client), KILL_CUT)
                });
            }
            FaultKind::AggressiveGc => {
                let target =
                    "repository (maintenance at safety none, until nothing is left to free)"
                        .to_owned();
                let label = starts(&target, None);
                let target = self.kit.aggressive_gc(spec, host, &label, target);
                (label, target)
            }
            FaultKind::GcStorm => {
                let until = Instant::now() + duration.unwrap_or_default();
                let target = "repository (full maintenance, repeatedly)".to_owned();
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
        // Serving first: letting a revoked client in asks the server.
        self.server
            .serve_again()
            .map_err(|e| fail(format!("the kopia server does not serve again: {e}")))?;
        self.kit.end(&self.readmit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_file_is_named_by_its_id() {
        let repo = Path::new("/r");
        assert_eq!(
            blob_id(
                repo,
                Path::new("/r/p/5c6/1ed540d73f73add8e114ce65a0153-s671d563724c3e73b147.f")
            )
            .as_deref(),
            Some("p5c61ed540d73f73add8e114ce65a0153-s671d563724c3e73b147")
        );
        assert_eq!(blob_id(repo, Path::new("/r/p/5c6/1ed5.tmp")), None);
    }

    #[test]
    fn only_delete_index_overlapping_gc_and_storage_errors_are_refused_and_they_say_why() {
        let refused: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|kind| refusal(*kind).is_some())
            .collect();
        assert_eq!(
            refused,
            [
                FaultKind::DeleteIndex,
                FaultKind::OverlappingGc,
                FaultKind::StorageErrors,
                FaultKind::PauseClient,
                FaultKind::StaleLock,
                FaultKind::Unlock,
                FaultKind::ParallelForget
            ]
        );
        assert!(
            refusal(FaultKind::DeleteIndex)
                .unwrap()
                .contains("manifests")
        );
        assert!(
            refusal(FaultKind::OverlappingGc)
                .unwrap()
                .contains("one owner")
        );
    }
}
