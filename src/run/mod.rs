//! The run: a supervisor that connects clients, runs each client's worker,
//! injects faults, and makes the final checks; and the launch that wires a
//! backend's parts into it. Front ends drive it through [`RunHandle`].

mod api;
mod clients;
mod fault_host;
pub mod launch;
pub mod schedule;
mod supervisor;
mod worker;

pub use api::{
    Command, CountsFeed, Event, MAX_CLIENTS, RunHandle, RunInfo, RunLimit, RunParts,
    SHUTDOWN_GRACE, StartError, connect_backoff, start,
};
