//! `MultiClientFileWriter`: one `LocalFileWriter` per client, created on
//! first use; every call goes to the calling client's writer.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::engine::file_writer::LocalFileWriter;
use crate::engine::options::ActionOptions;
use crate::engine::traits::{ActionRng, ClientId, FileWriter, WriteEffect};

/// Where a client's data directory is.
pub type DataDirFor = Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>;

pub struct MultiClientFileWriter {
    data_dir_for: DataDirFor,
    writers: RwLock<HashMap<ClientId, Arc<LocalFileWriter>>>,
}

impl MultiClientFileWriter {
    pub fn new(data_dir_for: DataDirFor) -> Self {
        MultiClientFileWriter {
            data_dir_for,
            writers: RwLock::new(HashMap::new()),
        }
    }

    fn writer(&self, client: ClientId) -> io::Result<Arc<LocalFileWriter>> {
        if let Some(writer) = self.writers.read().expect("writers lock").get(&client) {
            return Ok(writer.clone());
        }
        let mut writers = self.writers.write().expect("writers lock");
        if let Some(writer) = writers.get(&client) {
            return Ok(writer.clone());
        }
        let writer = Arc::new(LocalFileWriter::new((self.data_dir_for)(client))?);
        writers.insert(client, writer.clone());
        Ok(writer)
    }

    /// Clients that have a writer.
    pub fn clients(&self) -> Vec<ClientId> {
        let mut ids: Vec<_> = self
            .writers
            .read()
            .expect("writers lock")
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }
}

impl FileWriter for MultiClientFileWriter {
    fn data_dir(&self, client: ClientId) -> PathBuf {
        (self.data_dir_for)(client)
    }

    fn write_random_files(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        self.writer(client)?
            .write_random_files(client, options, rng)
    }

    fn delete_random_subdirectory(
        &self,
        client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        self.writer(client)?
            .delete_random_subdirectory(client, options, rng)
    }

    fn delete_directory_contents(
        &self,
        client: ClientId,
        options: &ActionOptions,
        percent: u8,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        self.writer(client)?
            .delete_directory_contents(client, options, percent, rng)
    }

    fn delete_everything(&self, client: ClientId) -> io::Result<()> {
        self.writer(client)?.delete_everything(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn each_client_writes_into_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let writer = MultiClientFileWriter::new(Box::new(move |c| root.join(c.to_string())));
        let mut rng = ActionRng::seed_from_u64(1);
        writer
            .write_random_files(ClientId(2), &ActionOptions::default(), &mut rng)
            .unwrap();
        assert_eq!(writer.clients(), vec![ClientId(2)]);
        assert!(
            dir.path()
                .join("client-2")
                .read_dir()
                .unwrap()
                .next()
                .is_some()
        );
        assert!(!dir.path().join("client-1").exists());
    }
}
