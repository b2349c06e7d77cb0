//! `run-gc`, and every other GC (the console's key, GC faults): through the Server.

use super::Step;
use crate::engine::exec::Engine;
use crate::engine::guard::guarded;
use crate::engine::store::now_rfc3339;
use crate::engine::trace::GcLine;
use crate::engine::traits::{BackendResult, GcDone, GcOptions};

impl Engine {
    /// A GC asked for outside every client's stream (the console's `g`),
    /// traced with its place so that a replay runs it again there;
    /// `placed` is called once it has its place (see `exec_step`).
    pub fn gc_asked(&self, options: &GcOptions, placed: impl FnOnce()) -> BackendResult<GcDone> {
        let (order, at_ms) = self.take_start();
        placed();
        self.trace_event(&GcLine {
            time: now_rfc3339(),
            run: self.run,
            gc: true,
            aggressive: options.aggressive,
            at_ms,
            order,
        });
        self.gc(options)
    }
    /// Garbage-collects on the server now (the console's key, a GC fault),
    /// counted with the GCs of `run-gc` actions.
    pub fn gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let done = guarded(|| self.server.run_gc(options))?;
        self.stats.record_gc();
        Ok(done)
    }
    pub(super) fn run_gc(&self) -> Step {
        match self.gc(&GcOptions::default()) {
            Ok(done) => {
                let mut step = Step::ok();
                step.details = done.details;
                step
            }
            Err(error) => Step::backend_error(error),
        }
    }
}
