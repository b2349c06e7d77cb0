//! Mixed clients on one repository: odd clients are rustic_core, even
//! clients the restic program. The restic repository format allows it; the
//! interesting races are between the two implementations (rustic_core
//! takes no locks, restic does).

use crate::engine::traits::{BackendResult, ClientFactory, ClientId, ClientSnapshotter};

/// Makes a rustic_core or a restic client, alternating by client number.
pub struct MixedClients {
    pub rustic: Box<dyn ClientFactory>,
    pub restic: Box<dyn ClientFactory>,
}

impl MixedClients {
    fn factory(&self, client: ClientId) -> &dyn ClientFactory {
        if client.0 % 2 == 1 {
            self.rustic.as_ref()
        } else {
            self.restic.as_ref()
        }
    }
}

impl ClientFactory for MixedClients {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        self.factory(client).new_client(client)
    }

    fn kind(&self, client: ClientId) -> String {
        self.factory(client).kind(client)
    }
}
