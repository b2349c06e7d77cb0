//! `MultiClientSnapshotter`: owns the Server and one `ClientSnapshotter`
//! per client. Each call goes to the calling client's snapshotter, created
//! and connected on first use; GC goes to the Server.
//!
//! Every call into a backend runs under `catch_unwind`: a panic inside a
//! backend (rustic_core's restore panics on a missing pack) becomes that
//! call's error, never a crash of the run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::engine::guard::guarded;
use crate::engine::progress::Progress;
use crate::engine::traits::{
    BackendResult, ClientFactory, ClientId, ClientSnapshotter, Details, GcOptions, Server,
    SnapshotId, Snapshotter,
};

pub struct MultiClientSnapshotter {
    server: Arc<dyn Server>,
    factory: Arc<dyn ClientFactory>,
    clients: RwLock<HashMap<ClientId, Arc<dyn ClientSnapshotter>>>,
}

impl MultiClientSnapshotter {
    pub fn new(server: Arc<dyn Server>, factory: Arc<dyn ClientFactory>) -> Self {
        MultiClientSnapshotter {
            server,
            factory,
            clients: RwLock::new(HashMap::new()),
        }
    }

    pub fn server(&self) -> &Arc<dyn Server> {
        &self.server
    }

    /// Authorizes the client on the server and connects its snapshotter.
    pub fn connect_client(&self, client: ClientId) -> BackendResult<()> {
        self.client(client).map(|_| ())
    }

    /// Disconnects the client and revokes it on the server. Its snapshots stay.
    pub fn remove_client(&self, client: ClientId) -> BackendResult<()> {
        let removed = self.clients.write().expect("clients lock").remove(&client);
        let disconnected = match removed {
            Some(snapshotter) => guarded(|| snapshotter.disconnect(client)),
            None => Ok(()),
        };
        let revoked = guarded(|| self.server.remove_client(client));
        disconnected.and(revoked)
    }

    pub fn connected_clients(&self) -> Vec<ClientId> {
        let mut ids: Vec<_> = self
            .clients
            .read()
            .expect("clients lock")
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }

    fn client(&self, client: ClientId) -> BackendResult<Arc<dyn ClientSnapshotter>> {
        if let Some(existing) = self.clients.read().expect("clients lock").get(&client) {
            return Ok(existing.clone());
        }
        // Connected without the lock held: clients connect side by side, and
        // the others' actions never wait for a connection. Only the run
        // connects a new id, once, so two connects of one id do not race.
        let snapshotter: Arc<dyn ClientSnapshotter> =
            guarded(|| self.factory.new_client(client))?.into();
        let credentials = guarded(|| self.server.authorize_client(client))?;
        guarded(|| snapshotter.connect(client, &credentials))?;
        let mut clients = self.clients.write().expect("clients lock");
        Ok(clients.entry(client).or_insert(snapshotter).clone())
    }
}

impl Snapshotter for MultiClientSnapshotter {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        let snapshotter = self.client(client)?;
        guarded(|| snapshotter.create_snapshot(client, source, progress))
    }

    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        let snapshotter = self.client(client)?;
        guarded(|| snapshotter.list_snapshots(client))
    }

    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        progress: &Progress,
    ) -> BackendResult<()> {
        let snapshotter = self.client(client)?;
        guarded(|| snapshotter.restore_snapshot(client, id, target, progress))
    }

    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        let snapshotter = self.client(client)?;
        guarded(|| snapshotter.delete_snapshot(client, id))
    }

    fn forget_all_but_newest(
        &self,
        client: ClientId,
        deleting: &(dyn Fn() + Sync),
    ) -> BackendResult<Vec<SnapshotId>> {
        let snapshotter = self.client(client)?;
        guarded(|| snapshotter.forget_all_but_newest(client, deleting))
    }

    fn client_kind(&self, client: ClientId) -> Option<String> {
        Some(self.factory.kind(client))
    }

    /// GC is the Server's job, whoever asks for it.
    fn run_gc(&self, _client: ClientId, options: &GcOptions) -> BackendResult<Details> {
        guarded(|| self.server.run_gc(options)).map(|done| done.details)
    }
}
