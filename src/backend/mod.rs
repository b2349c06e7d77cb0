//! Backends: one module per backend, each implementing the engine's traits
//! (`Server`, `ClientSnapshotter` and a `ClientFactory` that makes clients).

pub mod embedded;
