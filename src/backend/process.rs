//! Running a backup tool's process, shared by the backends whose clients
//! are programs (restic, kopia): secrets only in the child's environment,
//! its own process group, a deadline after which the whole group is
//! SIGKILLed, output kept with every secret replaced by `***`, and a table
//! of the processes run, so that `kill-client` can kill the one a client is
//! running, and a lock a process left can be traced to whose it was.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// The first executable `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| runnable(candidate))
}

fn runnable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A program a backend runs, as users name it: the environment variable
/// (`RESTIC_EXE`, `KOPIA_EXE`) when it is set, else the first on `PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// `restic`, `kopia`.
    pub name: &'static str,
    /// `RESTIC_EXE`, `KOPIA_EXE`.
    pub variable: &'static str,
    /// How to get it, for the message when it is missing.
    pub install: &'static str,
    /// What needs it (`the restic and mixed backends`).
    pub needed_by: &'static str,
}

/// A program that is not there, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramMissing {
    #[error(
        "{name} not found on PATH: {needed_by} run the `{name}` program; {install}, or name it with {variable}=/path/to/{name}, or run with --backend embedded"
    )]
    NotOnPath {
        name: &'static str,
        variable: &'static str,
        install: &'static str,
        needed_by: &'static str,
    },
    #[error(
        "{variable}={path} is not an executable file: point {variable} at the {name} program, or unset it to use {name} on PATH"
    )]
    BadVariable {
        name: &'static str,
        variable: &'static str,
        path: String,
    },
}

impl Program {
    pub fn find(&self) -> Result<PathBuf, ProgramMissing> {
        match std::env::var_os(self.variable).filter(|v| !v.is_empty()) {
            Some(exe) => {
                let path = PathBuf::from(&exe);
                if runnable(&path) {
                    Ok(path)
                } else {
                    Err(ProgramMissing::BadVariable {
                        name: self.name,
                        variable: self.variable,
                        path: path.display().to_string(),
                    })
                }
            }
            None => find_program(self.name).ok_or(ProgramMissing::NotOnPath {
                name: self.name,
                variable: self.variable,
                install: self.install,
                needed_by: self.needed_by,
            }),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by a signal (SIGKILL from `kill-client`, or any other).
    Signal(i32),
    /// Still running at the deadline: its process group was SIGKILLed.
    TimedOut(Duration),
}

/// What a finished process left: how it ended and its output, with every
/// secret replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// What the process said last (its last three lines of stderr, but
    /// those starting with one of `noise`) and how it ended: the text of
    /// an error that names the tool's own words.
    pub fn explanation(&self, noise: &[&str]) -> String {
        let said = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .filter(|line| !noise.iter().any(|prefix| line.starts_with(prefix)))
            .collect::<Vec<_>>();
        let said = before_stack_trace(&said);
        let said = said[said.len().saturating_sub(3)..].join("; ");
        let how = match &self.exit {
            Exit::Code(code) => format!("exit code {code}"),
            Exit::Signal(signal) => format!("killed by signal {signal}"),
            Exit::TimedOut(after) => {
                format!("still running after {}s, killed", after.as_secs_f64())
            }
        };
        if said.is_empty() {
            how
        } else {
            format!("{} ({how})", crate::engine::brief::brief(&said))
        }
    }
}

/// The lines before a Go stack trace, which restic prints under an error
/// it did not expect: the error is above it, and the trace's last lines
/// (`runtime.goexit`) would say nothing. A frame is a function's line, then
/// its file's (`…/errgroup.go:93`).
fn before_stack_trace<'a>(lines: &'a [&'a str]) -> &'a [&'a str] {
    let is_file_line = |line: &str| {
        line.rsplit_once(':').is_some_and(|(path, number)| {
            (path.ends_with(".go") || path.ends_with(".s"))
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
        })
    };
    match lines.iter().position(|line| is_file_line(line)) {
        Some(file) if file >= 2 => &lines[..file - 1],
        _ => lines,
    }
}

/// What a tool said, by the first entry of its message `table` the text
/// contains (case-insensitively): one lookup for every tool's table.
pub fn first_message<T: Copy>(table: &[(&str, T)], text: &str) -> Option<T> {
    let text = text.to_lowercase();
    table
        .iter()
        .find(|(message, _)| text.contains(&message.to_lowercase()))
        .map(|(_, said)| *said)
}

/// A process a backend ran: whose it was and when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: u32,
    /// The user it ran as (`client-N`, or the GC's name).
    pub user: String,
    pub started: Instant,
    /// `None` while it runs.
    pub ended: Option<Instant>,
}

/// How long an ended process is remembered: restic takes a lock older than
/// this (its `StaleLockTimeout`, 30 minutes in 0.14 and 0.18) for stale
/// whoever held it, so no later question needs the process.
const ENDED_KEPT_FOR: Duration = Duration::from_secs(30 * 60);
/// At most this many ended processes are remembered (the oldest go first).
const ENDED_KEPT: usize = 16_384;

#[derive(Debug, Default)]
struct Table {
    running: HashMap<u32, ProcessRecord>,
    ended: std::collections::VecDeque<ProcessRecord>,
}

/// The processes a backend runs, by the user they run as: the ones running
/// now are what `kill-client` kills; the ones that ended are remembered for
/// a while with their start and end, so that a lock a process left behind
/// can be traced to whose it was and when it ran.
#[derive(Debug, Default)]
pub struct Processes {
    table: Mutex<Table>,
    /// Signalled whenever a process ends.
    ended_one: std::sync::Condvar,
}

impl Processes {
    pub fn new() -> Self {
        Processes::default()
    }

    fn started(&self, user: &str, pid: u32) {
        let record = ProcessRecord {
            pid,
            user: user.to_owned(),
            started: Instant::now(),
            ended: None,
        };
        self.table
            .lock()
            .expect("processes lock")
            .running
            .insert(pid, record);
    }

    fn ended(&self, pid: u32) {
        let now = Instant::now();
        let mut table = self.table.lock().expect("processes lock");
        if let Some(mut record) = table.running.remove(&pid) {
            record.ended = Some(now);
            while table.ended.len() >= ENDED_KEPT
                || table
                    .ended
                    .front()
                    .and_then(|r| r.ended)
                    .is_some_and(|ended| now.duration_since(ended) > ENDED_KEPT_FOR)
            {
                table.ended.pop_front();
            }
            table.ended.push_back(record);
        }
        self.ended_one.notify_all();
    }

    /// Waits until the process `pid` is not running (it ended, or it is
    /// not one of these), at most `timeout`; returns whether it is not.
    pub fn wait_ended(&self, pid: u32, timeout: Duration) -> bool {
        let table = self.table.lock().expect("processes lock");
        let (table, _) = self
            .ended_one
            .wait_timeout_while(table, timeout, |table| table.running.contains_key(&pid))
            .expect("processes lock");
        !table.running.contains_key(&pid)
    }

    /// SIGKILLs every process `user` runs now (each whole process group);
    /// returns how many.
    pub fn kill(&self, user: &str) -> usize {
        kill_groups(&self.running_pids(Some(user)))
    }

    /// SIGKILLs every process running now, whoever's (each whole process
    /// group); returns how many.
    pub fn kill_all(&self) -> usize {
        kill_groups(&self.running_pids(None))
    }

    /// Stops (`SIGSTOP`, `frozen`) or continues (`SIGCONT`) every process
    /// `user` runs now, each whole process group; returns how many.
    pub fn freeze(&self, user: &str, frozen: bool) -> usize {
        let signal = if frozen { Signal::STOP } else { Signal::CONT };
        let pids = self.running_pids(Some(user));
        for pid in &pids {
            signal_group(*pid, signal);
        }
        pids.len()
    }

    /// The processes running now: `user`'s, or everyone's.
    fn running_pids(&self, user: Option<&str>) -> Vec<u32> {
        let table = self.table.lock().expect("processes lock");
        table
            .running
            .values()
            .filter(|r| user.is_none_or(|user| r.user == user))
            .map(|r| r.pid)
            .collect()
    }

    /// The id of a process `user` runs now, if any.
    pub fn running_pid(&self, user: &str) -> Option<u32> {
        let table = self.table.lock().expect("processes lock");
        table
            .running
            .values()
            .find(|r| r.user == user)
            .map(|r| r.pid)
    }

    /// The process with this id: the one running now, else the last one
    /// that ended (ids are reused only after the kernel's `pid_max` went
    /// round, far more processes than a run starts while it remembers).
    pub fn find(&self, pid: u32) -> Option<ProcessRecord> {
        let table = self.table.lock().expect("processes lock");
        table
            .running
            .get(&pid)
            .or_else(|| table.ended.iter().rev().find(|r| r.pid == pid))
            .cloned()
    }
}

fn kill_group(pid: u32) {
    signal_group(pid, Signal::KILL);
}

/// SIGKILLs each of `pids`' process groups; returns how many.
fn kill_groups(pids: &[u32]) -> usize {
    for &pid in pids {
        kill_group(pid);
    }
    pids.len()
}

fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The process is its group's leader (see `process_group(0)`); a
        // group already gone is no error.
        let _ = kill_process_group(pid, signal);
    }
}

/// One run of a program.
pub struct Run<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    /// The child's whole environment, besides `HOME`, `TMPDIR` and `PATH`:
    /// nothing of snapstorm's own environment leaks in.
    pub env: Vec<(String, String)>,
    pub cwd: Option<&'a Path>,
    pub deadline: Duration,
    /// Registers the process under this user while it runs.
    pub processes: Option<(&'a Processes, &'a str)>,
    /// Replaced by `***` in everything kept from the process.
    pub secrets: Vec<String>,
    /// Called with each line of standard output as it comes (progress
    /// lines); the output is kept whole all the same.
    pub on_stdout_line: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Run<'_> {
    /// The command, as `ps` would show it.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.args);
        command.env_clear();
        for keep in ["HOME", "TMPDIR", "PATH"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        command
    }

    /// Runs the process to its end or its deadline.
    pub fn run(self) -> std::io::Result<Output> {
        let began = Instant::now();
        let mut child = self.command().spawn()?;
        let pid = child.id();
        if let Some((processes, user)) = self.processes {
            processes.started(user, pid);
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let on_line = self.on_stdout_line;
        let (waited, stdout, stderr) = std::thread::scope(|scope| {
            let stdout = scope.spawn(move || match (stdout, on_line) {
                (Some(stream), Some(on_line)) => read_lines(stream, on_line),
                (Some(mut stream), None) => {
                    let mut bytes = Vec::new();
                    let _ = stream.read_to_end(&mut bytes);
                    bytes
                }
                (None, _) => Vec::new(),
            });
            let stderr = scope.spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut stream) = stderr {
                    let _ = stream.read_to_end(&mut bytes);
                }
                bytes
            });
            let waited = self.wait(&mut child, pid);
            let stdout = stdout.join().unwrap_or_default();
            let stderr = stderr.join().unwrap_or_default();
            (waited, stdout, stderr)
        });
        if let Some((processes, _)) = self.processes {
            processes.ended(pid);
        }
        let exit = match waited? {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            },
            None => Exit::TimedOut(self.deadline),
        };
        // The wall time around the process, for benches/kopia.sh to set
        // beside the process's own (what snapstorm adds to each call).
        tracing::trace!(target: "snapstorm::process", pid, wall_us = began.elapsed().as_micros() as u64, "process ended");
        Ok(Output {
            exit,
            stdout: scrub(&String::from_utf8_lossy(&stdout), &self.secrets),
            stderr: scrub(&String::from_utf8_lossy(&stderr), &self.secrets),
        })
    }

    /// Waits for the child to end; at the deadline (or if waiting fails)
    /// its whole group is killed. `None`: it was killed at the deadline.
    ///
    /// The wait blocks in the kernel rather than polling, so a call ends
    /// the moment its process does (a poll every 20 ms added 10 ms to
    /// each kopia and restic call on average: benches/kopia.sh). A
    /// watchdog kills the group at the deadline; the child is reaped only
    /// after the watchdog has stopped, so its pid cannot be reused under it.
    fn wait(
        &self,
        child: &mut std::process::Child,
        pid: u32,
    ) -> std::io::Result<Option<std::process::ExitStatus>> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let deadline = self.deadline;
        let watchdog = std::thread::spawn(move || {
            let expired = matches!(
                stopped.recv_timeout(deadline),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if expired {
                kill_group(pid);
            }
            expired
        });
        let exited = wait_without_reaping(pid);
        drop(stop);
        let expired = watchdog.join().unwrap_or(false);
        if exited.is_err() {
            kill_group(pid);
        }
        let status = child.wait();
        exited?;
        let status = status?;
        let killed_by_watchdog = expired && status.signal() == Some(Signal::KILL.as_raw());
        Ok((!killed_by_watchdog).then_some(status))
    }
}

/// Blocks until the child `pid` has exited, leaving it to be reaped.
fn wait_without_reaping(pid: u32) -> std::io::Result<()> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("no such process id"))?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Reads `stream` to its end, handing each whole line to `on_line`; returns
/// everything read.
fn read_lines(stream: impl Read, on_line: &(dyn Fn(&str) + Sync)) -> Vec<u8> {
    let mut reader = std::io::BufReader::new(stream);
    let mut bytes = Vec::new();
    loop {
        let start = bytes.len();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) | Err(_) => break,
            Ok(_) => on_line(String::from_utf8_lossy(&bytes[start..]).trim_end()),
        }
    }
    bytes
}

/// `text` with every secret replaced by `***`.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a String>) -> String {
    secrets
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
}

#[cfg(test)]
mod tests;
