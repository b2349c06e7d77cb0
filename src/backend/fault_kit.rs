//! What every backend's fault injector does alike, whatever its server:
//! picking a victim and a client by the run's seed, flipping or deleting a
//! repository file, the GC faults (which act through the run's own GC),
//! revoking a client for a while, the network fault a proxy reads, and
//! ending all of it when the run ends.
//! A backend's injector keeps only what is its own: where its files are,
//! what damaging one damages, how its server stops and its proxy disturbs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::engine::Action;
use crate::engine::brief::brief;
use crate::engine::traits::{BackendResult, ClientId, FaultHost, GcOptions, InjectError, Injected};
use crate::faults::{FaultKind, FaultSpec, NetworkFault};

/// A fault that could not be carried out, in its own words.
pub fn fail(text: impl Into<String>) -> InjectError {
    InjectError::Failed(text.into())
}

/// A fault that queues actions for clients must be one the run knows
/// asks for them ([`FaultKind::asks_for_actions`]): a scripted run's
/// clients stay for those actions only then, and a shrunk run without them
/// loses the fault's backup (`pause-client` once did).
fn asks_for_its_actions(spec: &FaultSpec) {
    debug_assert!(
        spec.kind.asks_for_actions(),
        "{} queues actions for clients: list it in FaultKind::asks_for_actions",
        spec.kind
    );
}

/// A network fault in effect until a time: set by an injector, read by
/// its proxy for every request (or burst of bytes) it forwards.
#[derive(Debug, Default)]
pub struct NetworkSlot(Mutex<Option<(NetworkFault, Instant)>>);

impl NetworkSlot {
    /// `fault` from now until `until`.
    pub fn set(&self, fault: NetworkFault, until: Instant) {
        *self.0.lock().expect("network lock") = Some((fault, until));
    }

    /// Ends the fault now.
    pub fn clear(&self) {
        self.0.lock().expect("network lock").take();
    }

    /// The fault in effect now; one whose time is over is forgotten.
    pub fn now(&self) -> Option<NetworkFault> {
        let mut slot = self.0.lock().expect("network lock");
        match *slot {
            Some((fault, until)) if Instant::now() < until => Some(fault),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }
}

/// Lets a revoked client in again; blocking.
pub type Readmit = Arc<dyn Fn(ClientId) -> BackendResult<()> + Send + Sync>;

/// The state every injector shares: its random choices, the storms it
/// started and the clients it revoked.
pub struct FaultKit {
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Set when the run ends: long-running faults stop.
    stopping: Arc<AtomicBool>,
    storms: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Clients a `revoke-client` revoked and did not let in again yet.
    revoked: Arc<Mutex<BTreeSet<ClientId>>>,
    /// OSD processes a `stop-osd` stopped and did not let go on yet.
    stopped: Arc<Mutex<BTreeSet<u32>>>,
}

impl FaultKit {
    pub fn new(seed: u64) -> Self {
        FaultKit {
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xfa17)),
            stopping: Arc::new(AtomicBool::new(false)),
            storms: Mutex::new(Vec::new()),
            revoked: Arc::new(Mutex::new(BTreeSet::new())),
            stopped: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// Whether the run is ending (a fault waiting to undo itself leaves
    /// that to [`FaultKit::end`]).
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn pick<T: Clone>(&self, items: &[T]) -> Option<T> {
        items
            .choose(&mut *self.rng.lock().expect("rng lock"))
            .cloned()
    }

    /// The client the spec names, or one of the running ones.
    pub fn pick_client(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
    ) -> Result<ClientId, InjectError> {
        match spec.client.map(ClientId) {
            Some(client) if clients.contains(&client) => Ok(client),
            Some(client) => Err(fail(format!("{client} is not running"))),
            None => self
                .pick(clients)
                .ok_or_else(|| fail("no client is running")),
        }
    }

    /// Flips 16 bytes in the first nine tenths of `bytes`: the stored data,
    /// before any header a format keeps at the end.
    fn corrupt(&self, bytes: &mut [u8]) {
        let data_part = (bytes.len() * 9 / 10).max(1);
        let mut rng = self.rng.lock().expect("rng lock");
        for _ in 0..16 {
            let at = rng.random_range(0..data_part);
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= 0xff;
            }
        }
    }

    /// What `spec`'s kind leaves of a pack (or index) holding `bytes`:
    /// flipped bytes, a cut (as storage that stored it short), nothing in
    /// it, or no file at all (`None`).
    pub fn damaged(&self, spec: &FaultSpec, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        match spec.kind {
            FaultKind::CorruptPack => self.corrupt(&mut bytes),
            FaultKind::TruncatePack => {
                bytes.truncate(usize::try_from(spec.truncate_to().as_u64()).unwrap_or(usize::MAX))
            }
            FaultKind::EmptyPack => bytes.clear(),
            _ => return None,
        }
        Some(bytes)
    }

    /// Damages the file at `file` as [`FaultKit::damaged`] says.
    pub fn damage_file(&self, spec: &FaultSpec, file: &Path) -> Result<(), InjectError> {
        let failed =
            |what: &str, e: std::io::Error| fail(format!("{what} {}: {e}", file.display()));
        let bytes = std::fs::read(file).map_err(|e| failed("read", e))?;
        match self.damaged(spec, bytes) {
            Some(bytes) => std::fs::write(file, bytes).map_err(|e| failed("write", e)),
            None => std::fs::remove_file(file).map_err(|e| failed("delete", e)),
        }
    }

    /// Whether a file of `len` bytes can take `spec`'s damage: a cut needs
    /// a file longer than the cut, emptying one that has content.
    pub fn can_damage(spec: &FaultSpec, len: u64) -> bool {
        match spec.kind {
            FaultKind::TruncatePack => len > spec.truncate_to().as_u64(),
            FaultKind::EmptyPack => len > 0,
            _ => true,
        }
    }

    /// Why there is no victim yet for `spec`, naming what it wants
    /// (`what`: "data pack", "index file").
    pub fn no_victim(spec: &FaultSpec, what: &str) -> InjectError {
        let wanted = match spec.kind {
            FaultKind::TruncatePack => format!(
                "{what} longer than {}",
                crate::faults::compact_size(spec.truncate_to())
            ),
            _ => what.to_owned(),
        };
        InjectError::NoVictimYet(format!("the repository has no {wanted} yet"))
    }

    /// `aggressive-gc` (labelled `label`, `spec`): the run's GC with
    /// instant delete, racing the backup `spec.races` names where it names
    /// one; its damage is what the GC says it removed, and the backups it
    /// raced are recorded for a replay. Returns the target as the report
    /// shows it.
    pub fn aggressive_gc(
        &self,
        spec: &FaultSpec,
        host: &Arc<dyn FaultHost>,
        label: &str,
        target: String,
    ) -> String {
        // On an already damaged repository the prune itself can fail: that
        // is a consequence to report, not a fault that did not happen.
        match host.run_gc(&GcOptions {
            aggressive: true,
            race: spec.races,
            ..GcOptions::default()
        }) {
            Ok(done) => {
                host.fault_pruned(label, &done);
                host.fault_damaged(label, done.removed);
                target
            }
            Err(error) => {
                host.fault_failed(label);
                format!("{target}; the GC failed: {}", brief(&error.to_string()))
            }
        }
    }

    /// `overlapping-gc` (labelled `label`): two of the run's safe GCs at
    /// once, neither waiting for the other; its damage is what both
    /// removed. Returns the target as the report shows it.
    pub fn overlapping_gc(&self, host: &Arc<dyn FaultHost>, label: &str, target: String) -> String {
        let options = GcOptions {
            aggressive: false,
            overlapping: true,
            race: None,
        };
        let (first, second) = std::thread::scope(|scope| {
            let other = scope.spawn(|| host.run_gc(&options));
            let first = host.run_gc(&options);
            let second = other.join().unwrap_or_else(|_| {
                Err(crate::engine::traits::BackendError::Panicked("GC".into()))
            });
            (first, second)
        });
        let mut removed = Some(crate::engine::damage::Damage::new());
        let mut failed = Vec::new();
        for result in [first, second] {
            match result {
                Ok(done) => match (&mut removed, done.removed) {
                    (Some(all), Some(this)) => all.extend(this),
                    // One of them cannot tell what it removed: time decides.
                    _ => removed = None,
                },
                // A GC that failed part-way may have removed some of what
                // it meant to, and cannot say what: time decides.
                Err(error) => {
                    removed = None;
                    failed.push(brief(&error.to_string()));
                }
            }
        }
        if failed.len() == 2 {
            host.fault_failed(label);
        } else {
            host.fault_damaged(label, removed);
        }
        match failed.as_slice() {
            [] => target,
            failures => format!(
                "{target}; {} of 2 failed: {}",
                failures.len(),
                failures.join("; ")
            ),
        }
    }

    /// `gc-storm`: the run's safe GC over and over until `until`, on a
    /// thread of its own.
    pub fn gc_storm(&self, host: &Arc<dyn FaultHost>, until: Instant) -> Result<(), InjectError> {
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
        Ok(())
    }

    /// `revoke-client`: the spec's client (or a running one) revoked by
    /// `revoke`, and let in again with `readmit` when the spec's duration
    /// ends. Returns its label and target.
    pub fn revoke_client(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
        revoke: impl FnOnce(ClientId) -> BackendResult<()>,
        readmit: Readmit,
    ) -> Result<(String, String), InjectError> {
        let client = self.pick_client(spec, clients)?;
        let label = host.fault_starts(spec.kind, &client.to_string(), Some(client), spec.duration);
        revoke(client).map_err(|e| fail(e.to_string()))?;
        self.revoked(client, spec.duration, readmit);
        Ok((label, client.to_string()))
    }

    /// `kill-client` and `pause-client`: the spec's client (or a running
    /// one) is caught by the backend's proxy once it uploads (`arm` arms
    /// that: a cut, or a hold); a write and a snapshot are queued so that
    /// it has something to upload now.
    pub fn catch_mid_snapshot(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
        arm: impl FnOnce(ClientId),
    ) -> Result<Injected, InjectError> {
        asks_for_its_actions(spec);
        let client = self.pick_client(spec, clients)?;
        let label = host.fault_starts(spec.kind, &client.to_string(), Some(client), spec.duration);
        arm(client);
        Ok(Injected {
            label,
            kind: spec.kind,
            target: client.to_string(),
            duration: spec.duration,
            enqueue: vec![
                (client, Action::WriteRandomFiles),
                (client, Action::SnapshotRoot),
            ],
        })
    }

    /// `parallel-forget`: every running client forgets by policy next, the
    /// forgets overlapping (the engine holds each until all have come, then
    /// lets them go in turn as the one before begins deleting); the fault
    /// ends when the last forget does.
    pub fn forget_together(
        &self,
        spec: &FaultSpec,
        clients: &[ClientId],
        host: &Arc<dyn FaultHost>,
    ) -> Result<Injected, InjectError> {
        asks_for_its_actions(spec);
        if clients.len() < 2 {
            return Err(InjectError::NoVictimYet(
                "fewer than two clients run: no forget to race another".into(),
            ));
        }
        let target = clients
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let label = host.fault_starts(spec.kind, &target, None, None);
        host.start_together(&label, clients);
        Ok(Injected {
            label,
            kind: spec.kind,
            target,
            duration: None,
            enqueue: clients
                .iter()
                .map(|client| (*client, Action::ForgetSnapshots))
                .collect(),
        })
    }

    /// Records `client` as revoked (the backend has just revoked it) and,
    /// for a `duration`, lets it in again with `readmit` when that ends.
    fn revoked(&self, client: ClientId, duration: Option<Duration>, readmit: Readmit) {
        self.revoked.lock().expect("revoked lock").insert(client);
        let Some(duration) = duration else {
            return;
        };
        let revoked = self.revoked.clone();
        let stopping = self.stopping.clone();
        let _ = std::thread::Builder::new()
            .name("readmit".into())
            .spawn(move || {
                let until = Instant::now() + duration;
                while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(
                        Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
                    );
                }
                // The run's end lets every revoked client in itself.
                if stopping.load(Ordering::SeqCst)
                    || !revoked.lock().expect("revoked lock").remove(&client)
                {
                    return;
                }
                match readmit(client) {
                    Ok(()) => tracing::warn!(target: "snapstorm::faults", %client, "revoke-client: readmitted"),
                    Err(error) => tracing::error!(target: "snapstorm::faults", %client, %error, "cannot readmit"),
                }
            });
    }

    /// `stop-osd`: the OSD's process (`pid=`) stopped with SIGSTOP, and
    /// continued with SIGCONT when the spec's duration ends (or the run
    /// does). Returns its label and target.
    pub fn stop_osd(
        &self,
        spec: &FaultSpec,
        host: &Arc<dyn FaultHost>,
    ) -> Result<(String, String), InjectError> {
        let pid = spec.pid.ok_or_else(|| {
            fail("stop-osd needs the OSD's process: give it as --fault stop-osd@T:DURATION,pid=PID")
        })?;
        osd_process(pid).map_err(fail)?;
        let target = format!("ceph-osd PID {pid}");
        let label = host.fault_starts(spec.kind, &target, None, spec.duration);
        signal_osd(pid, rustix::process::Signal::STOP)?;
        self.stopped.lock().expect("stopped lock").insert(pid);
        let (stopped, down_for) = (self.stopped.clone(), spec.duration.unwrap_or_default());
        std::thread::spawn(move || {
            std::thread::sleep(down_for);
            // Gone from the set: the run's end let it go on already.
            if stopped.lock().expect("stopped lock").remove(&pid) {
                match signal_osd(pid, rustix::process::Signal::CONT) {
                    Ok(()) => {
                        tracing::warn!(target: "snapstorm::faults", pid, "stop-osd: the OSD goes on")
                    }
                    Err(error) => {
                        tracing::error!(target: "snapstorm::faults", pid, %error, "stop-osd: cannot let the OSD go on")
                    }
                }
            }
        });
        Ok((label, target))
    }

    /// The run ends: storms stop (and are waited for), every client still
    /// revoked is let in again, and every OSD still stopped goes on.
    pub fn end(&self, readmit: &Readmit) -> Result<(), InjectError> {
        self.stopping.store(true, Ordering::SeqCst);
        let stopped = std::mem::take(&mut *self.stopped.lock().expect("stopped lock"));
        for pid in stopped {
            signal_osd(pid, rustix::process::Signal::CONT)?;
        }
        let storms: Vec<_> = self.storms.lock().expect("storms lock").drain(..).collect();
        for storm in storms {
            let _ = storm.join();
        }
        let revoked = std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        for client in revoked {
            readmit(client).map_err(|e| fail(format!("cannot let {client} in again: {e}")))?;
        }
        Ok(())
    }
}

/// Whether `pid` is a Ceph OSD's process on this machine (its name in
/// `/proc`, `ceph-osd`): `stop-osd` stops nothing else.
pub fn osd_process(pid: u32) -> Result<(), String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|_| {
        format!("no process {pid} on this machine; give the pid of a running ceph-osd (scripts/ceph start prints osdN_pid=)")
    })?;
    match comm.trim() {
        "ceph-osd" => Ok(()),
        other => Err(format!(
            "process {pid} is {other}, not ceph-osd; give the pid of a running ceph-osd (scripts/ceph start prints osdN_pid=)"
        )),
    }
}

/// One signal to one OSD process (not its group: an OSD is no process of
/// snapstorm's).
fn signal_osd(pid: u32, signal: rustix::process::Signal) -> Result<(), InjectError> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| fail(format!("{pid} is no process id")))?;
    rustix::process::kill_process(raw, signal)
        .map_err(|e| fail(format!("cannot signal ceph-osd PID {pid}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_that_queue_actions_are_the_ones_listed_as_asking() {
        for kind in [
            FaultKind::KillClient,
            FaultKind::PauseClient,
            FaultKind::ParallelForget,
        ] {
            asks_for_its_actions(&FaultSpec::new(kind, Duration::ZERO));
        }
    }

    #[test]
    #[should_panic(expected = "list it in FaultKind::asks_for_actions")]
    fn a_kind_that_queues_actions_unlisted_is_caught() {
        asks_for_its_actions(&FaultSpec::new(FaultKind::CorruptPack, Duration::ZERO));
    }
}
