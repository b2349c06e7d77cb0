//! Waiting for restic's locks. restic refuses a command while another
//! process holds a lock that excludes it (a forget's or a prune's exclusive
//! lock; for those, any lock), and a process that is gone can leave its
//! lock behind (SIGKILLed by `kill-client` or at its deadline, or its last
//! request, the lock's removal, cut off). The wait is decided by whose the
//! lock is, from the table of processes snapstorm ran:
//!
//! - a process of snapstorm's still running (a client's, the GC's prune):
//!   wait until it ends, then try again at once — no polling of the
//!   repository, no new restic process while it runs;
//! - one that ended, or one snapstorm does not know: `restic unlock`, which
//!   removes the locks of processes that are gone on this host (0.14.0 and
//!   0.18.1 alike: `Lock.Stale`, the process does not answer a signal) and
//!   leaves live ones, then try again — after a growing pause with restic
//!   0.14, which has no way to wait for a lock; with `--retry-lock` from
//!   restic 0.16 on, which waits in the one process (each new process
//!   opens the repository again: a key derivation).
//!
//! Until the patience runs out; then the caller judges the wait by its
//! holder (`CallContext::gave_up_waiting`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::errors::{Said, final_words, lock_holder, said_by};
use super::process::{Output, Processes, ResticVersion};
use crate::backend::process::ProcessRecord;
use crate::engine::traits::BackendResult;

/// The first pause after `restic unlock` (restic 0.14), doubled each time.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause.
const LONGEST_PAUSE: Duration = Duration::from_secs(4);

/// What came of a call that may have waited for locks.
#[derive(Debug)]
pub(super) enum Waited {
    /// restic ran to an end other than a lock it could not take.
    Done(Output),
    /// The patience ran out with the lock still held; `holder` is the
    /// process that held it, when it is one of snapstorm's.
    GaveUp {
        output: Output,
        holder: Option<ProcessRecord>,
    },
}

/// How one call waits for locks.
pub(super) struct LockWait<'a> {
    pub version: ResticVersion,
    /// Every restic process snapstorm runs (clients' and the GC's).
    pub processes: &'a Processes,
    /// How long the call may wait, in all.
    pub patience: Duration,
    /// When the call started.
    pub started: Instant,
}

impl LockWait<'_> {
    /// Runs `attempt` until restic gets past the locks or the patience
    /// runs out. `attempt` gets `Some(wait)` when restic is to wait for
    /// the lock itself (`--retry-lock`), `unlock` runs `restic unlock`.
    pub fn run(
        &self,
        mut attempt: impl FnMut(Option<Duration>) -> BackendResult<Output>,
        mut unlock: impl FnMut() -> BackendResult<Output>,
    ) -> BackendResult<Waited> {
        let mut pause = FIRST_PAUSE;
        let mut retry_lock = None;
        loop {
            let output = attempt(retry_lock.take())?;
            if output.success() || said_by(&output) != Some(Said::Locked) {
                return Ok(Waited::Done(output));
            }
            let holder = self.holder(&output);
            let left = self.patience.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                return Ok(Waited::GaveUp { output, holder });
            }
            match holder {
                Some(running) if running.ended.is_none() => {
                    if !self.processes.wait_ended(running.pid, left) {
                        let holder = self.processes.find(running.pid);
                        return Ok(Waited::GaveUp { output, holder });
                    }
                }
                _ => {
                    // Removes the locks of processes that are gone; a
                    // failure to run it shows in the next attempt.
                    let _ = unlock()?;
                    if self.version.retries_locks() {
                        let left = self.patience.saturating_sub(self.started.elapsed());
                        retry_lock = Some(left.max(Duration::from_millis(1)));
                    } else {
                        std::thread::sleep(pause.min(left));
                        pause = (pause * 2).min(LONGEST_PAUSE);
                    }
                }
            }
        }
    }

    /// The process of snapstorm's whose lock restic names, if it is one.
    fn holder(&self, output: &Output) -> Option<ProcessRecord> {
        let named = lock_holder(&final_words(&output.stderr))?;
        (Some(named.host.as_str()) == this_host())
            .then(|| self.processes.find(named.pid))
            .flatten()
    }
}

/// This machine's name as restic writes it into a lock: Go's `os.Hostname`,
/// which reads `/proc/sys/kernel/hostname`.
fn this_host() -> Option<&'static str> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::process::Exit;
    use std::cell::RefCell;

    fn locked_by(pid: u32, host: &str) -> Output {
        Output {
            exit: Exit::Code(1),
            stdout: String::new(),
            stderr: format!(
                "unable to create lock in backend: repository is already locked by PID {pid} on {host} by root (UID 0, GID 0)\nlock was created at 2026-12-02 07:50:20 (4.4s ago)\nstorage ID 34c24b1e\n"
            ),
        }
    }

    fn ok() -> Output {
        Output {
            exit: Exit::Code(0),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn wait<'a>(
        version: ResticVersion,
        processes: &'a Processes,
        patience: Duration,
    ) -> LockWait<'a> {
        LockWait {
            version,
            processes,
            patience,
            started: Instant::now(),
        }
    }

    const V0_14: ResticVersion = ResticVersion::new(0, 14, 0);
    const V0_18: ResticVersion = ResticVersion::new(0, 18, 1);

    #[test]
    fn a_lock_of_a_process_snapstorm_does_not_know_is_unlocked_and_tried_again() {
        let host = this_host().expect("a host name");
        for version in [V0_14, V0_18] {
            let processes = Processes::new();
            let attempts = RefCell::new(Vec::new());
            let unlocks = RefCell::new(0);
            let waited = wait(version, &processes, Duration::from_secs(30))
                .run(
                    |retry_lock| {
                        attempts.borrow_mut().push(retry_lock);
                        Ok(if attempts.borrow().len() == 1 {
                            locked_by(4_000_000, host)
                        } else {
                            ok()
                        })
                    },
                    || {
                        *unlocks.borrow_mut() += 1;
                        Ok(ok())
                    },
                )
                .unwrap();
            assert!(matches!(waited, Waited::Done(output) if output.success()));
            assert_eq!(*unlocks.borrow(), 1, "{version}");
            let attempts = attempts.into_inner();
            assert_eq!(attempts[0], None);
            // 0.16 on waits in restic; 0.14 in snapstorm.
            assert_eq!(attempts[1].is_some(), version.retries_locks(), "{version}");
        }
    }

    /// A process registered as `user`'s for as long as it runs (`sleep`).
    fn holder_process(
        processes: &std::sync::Arc<Processes>,
        user: &'static str,
        seconds: &'static str,
    ) -> (u32, std::thread::JoinHandle<()>) {
        let runner = {
            let processes = processes.clone();
            std::thread::spawn(move || {
                crate::backend::process::Run {
                    program: std::path::Path::new("/bin/sleep"),
                    args: vec![seconds.into()],
                    env: Vec::new(),
                    cwd: None,
                    deadline: Duration::from_secs(60),
                    processes: Some((&processes, user)),
                    secrets: Vec::new(),
                    on_stdout_line: None,
                }
                .run()
                .unwrap();
            })
        };
        loop {
            if let Some(pid) = processes.running_pid(user) {
                return (pid, runner);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_lock_of_a_running_process_of_snapstorms_is_waited_for_without_unlock() {
        let host = this_host().expect("a host name");
        let processes = std::sync::Arc::new(Processes::new());
        let (pid, runner) = holder_process(&processes, "client-2", "1");
        let attempts = RefCell::new(0);
        let started = Instant::now();
        let waited = wait(V0_14, &processes, Duration::from_secs(30))
            .run(
                |retry_lock| {
                    assert_eq!(retry_lock, None, "snapstorm waits for its own process");
                    *attempts.borrow_mut() += 1;
                    Ok(if *attempts.borrow() == 1 {
                        locked_by(pid, host)
                    } else {
                        ok()
                    })
                },
                || panic!("a live holder's lock is not unlocked"),
            )
            .unwrap();
        assert!(matches!(waited, Waited::Done(output) if output.success()));
        assert_eq!(*attempts.borrow(), 2, "tried again once, when it ended");
        assert!(started.elapsed() >= Duration::from_millis(500));
        runner.join().unwrap();
    }

    #[test]
    fn a_running_holder_past_the_patience_is_named() {
        let host = this_host().expect("a host name");
        let processes = std::sync::Arc::new(Processes::new());
        let (pid, runner) = holder_process(&processes, "client-2", "2");
        let waited = wait(V0_18, &processes, Duration::from_millis(200))
            .run(|_| Ok(locked_by(pid, host)), || panic!("no unlock"))
            .unwrap();
        match waited {
            Waited::GaveUp { holder, .. } => {
                let holder = holder.expect("snapstorm's process");
                assert_eq!((holder.pid, holder.user.as_str()), (pid, "client-2"));
                assert_eq!(holder.ended, None);
            }
            other => panic!("{other:?}"),
        }
        runner.join().unwrap();
    }

    #[test]
    fn patience_runs_out_with_the_holder_named() {
        let processes = Processes::new();
        let waited = wait(V0_14, &processes, Duration::from_millis(300))
            .run(|_| Ok(locked_by(4_000_000, "elsewhere")), || Ok(ok()))
            .unwrap();
        match waited {
            Waited::GaveUp { output, holder } => {
                assert!(output.stderr.contains("PID 4000000"));
                assert_eq!(holder, None, "a process of another host is not snapstorm's");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_other_end_is_the_callers() {
        let processes = Processes::new();
        let refused = Output {
            exit: Exit::Code(1),
            stdout: String::new(),
            stderr: "Fatal: unable to open config file: unexpected HTTP response (401)".into(),
        };
        let waited = wait(V0_18, &processes, Duration::from_secs(30))
            .run(|_| Ok(refused.clone()), || panic!("no lock, no unlock"))
            .unwrap();
        assert!(matches!(waited, Waited::Done(output) if output == refused));
    }
}
