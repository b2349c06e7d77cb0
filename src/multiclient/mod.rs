//! The seed's multi-client framework (the seed: Kopia's robustness test,
//! which snapstorm re-designs): writers and snapshotters that delegate to
//! one instance per client, and the harness that runs clients concurrently.

pub mod file_writer;
pub mod harness;
pub mod snapshotter;

pub use file_writer::MultiClientFileWriter;
pub use harness::run_n;
pub use snapshotter::MultiClientSnapshotter;
