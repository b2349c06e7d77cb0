//! Running one `restic` process: its environment (repository and password
//! through environment variables, never on the command line), its own
//! process group, a deadline after which the whole group is SIGKILLed, and
//! a table of the processes running now, so that `kill-client` can kill
//! the one a client is running.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// The `restic` program snapstorm runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticBinary {
    pub path: PathBuf,
}

/// No `restic` on `PATH`: what to install.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "restic not found on PATH: the restic and mixed backends run Debian's restic; install it with `apt-get install restic`, or run with --backend embedded"
)]
pub struct ResticMissing;

impl ResticBinary {
    /// The first executable `restic` on `PATH`.
    pub fn find() -> Result<Self, ResticMissing> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::var_os("PATH").ok_or(ResticMissing)?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("restic"))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
            .map(|path| ResticBinary { path })
            .ok_or(ResticMissing)
    }
}

/// Where a restic process points, and with which secrets. The secrets go
/// into the child's environment only (readable by its owner alone, in
/// `/proc/PID/environ`), never into its arguments.
#[derive(Clone)]
pub struct Target {
    /// `rest:http://user:password@host/repo/`, or a local directory.
    pub repository: String,
    pub password: String,
    /// Secrets to hide in any text kept from the process (the REST password).
    pub also_secret: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").finish_non_exhaustive()
    }
}

/// How a restic process ended.
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
}

/// The restic processes running now, by the user they run as: what
/// `kill-client` kills.
#[derive(Debug, Default)]
pub struct Processes {
    running: Mutex<HashMap<String, Vec<u32>>>,
}

impl Processes {
    pub fn new() -> Self {
        Processes::default()
    }

    fn started(&self, user: &str, pid: u32) {
        self.running
            .lock()
            .expect("processes lock")
            .entry(user.to_owned())
            .or_default()
            .push(pid);
    }

    fn ended(&self, user: &str, pid: u32) {
        let mut running = self.running.lock().expect("processes lock");
        if let Some(pids) = running.get_mut(user) {
            pids.retain(|p| *p != pid);
            if pids.is_empty() {
                running.remove(user);
            }
        }
    }

    /// SIGKILLs every restic process `user` runs now (each whole process
    /// group); returns how many.
    pub fn kill(&self, user: &str) -> usize {
        let running = self.running.lock().expect("processes lock");
        let pids = running.get(user).cloned().unwrap_or_default();
        for pid in &pids {
            kill_group(*pid);
        }
        pids.len()
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The process is its group's leader (see `process_group(0)`); a
        // group already gone is no error.
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// One restic invocation.
pub struct Invocation<'a> {
    pub binary: &'a ResticBinary,
    pub target: &'a Target,
    pub cache_dir: Option<&'a Path>,
    pub args: Vec<String>,
    pub cwd: Option<&'a Path>,
    pub deadline: Duration,
    /// Registers the process under this user while it runs.
    pub processes: Option<(&'a Processes, &'a str)>,
}

impl Invocation<'_> {
    /// The command line, as `ps` would show it: no secret in it.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary.path);
        // Absolute: the process runs in another directory (a backup runs in
        // its source, and a relative cache there would be backed up).
        match self.cache_dir {
            Some(dir) => command
                .arg("--cache-dir")
                .arg(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())),
            None => command.arg("--no-cache"),
        };
        command.args(&self.args);
        // Only what restic needs: no RESTIC_* of snapstorm's own environment
        // leaks in.
        command.env_clear();
        for keep in ["HOME", "TMPDIR", "PATH"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        command
            .env("RESTIC_REPOSITORY", &self.target.repository)
            .env("RESTIC_PASSWORD", &self.target.password)
            // restic's own progress lines only every few seconds.
            .env("RESTIC_PROGRESS_FPS", "0.2");
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
        let mut child = self.command().spawn()?;
        let pid = child.id();
        if let Some((processes, user)) = self.processes {
            processes.started(user, pid);
        }
        let read = |stream: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut stream) = stream {
                    let _ = stream.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let started = Instant::now();
        let waited = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(Some(status)),
                Ok(None) if started.elapsed() >= self.deadline => {
                    kill_group(pid);
                    let _ = child.wait();
                    break Ok(None);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => {
                    kill_group(pid);
                    let _ = child.wait();
                    break Err(error);
                }
            }
        };
        if let Some((processes, user)) = self.processes {
            processes.ended(user, pid);
        }
        // The group is gone, so are the pipes' writers (restic starts no
        // children of its own that outlive it).
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let exit = match waited? {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Code(-1),
            },
            None => Exit::TimedOut(self.deadline),
        };
        Ok(Output {
            exit,
            stdout: self.scrub(&stdout),
            stderr: self.scrub(&stderr),
        })
    }

    fn scrub(&self, bytes: &[u8]) -> String {
        scrub(
            &String::from_utf8_lossy(bytes),
            std::iter::once(&self.target.password).chain(&self.target.also_secret),
        )
    }
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
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            repository: "rest:http://client-1:rest-secret@127.0.0.1:1/repo/".into(),
            password: "repo-secret".into(),
            also_secret: vec!["rest-secret".into()],
        }
    }

    #[test]
    fn secrets_go_into_the_environment_never_the_arguments() {
        let binary = ResticBinary {
            path: "/bin/restic".into(),
        };
        let target = target();
        let invocation = Invocation {
            binary: &binary,
            target: &target,
            cache_dir: Some(Path::new("/tmp/cache")),
            args: vec!["snapshots".into(), "--json".into()],
            cwd: None,
            deadline: Duration::from_secs(1),
            processes: None,
        };
        let command = invocation.command();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--cache-dir", "/tmp/cache", "snapshots", "--json"]);
        assert!(!args.iter().any(|a| a.contains("secret")));
        let env: HashMap<String, String> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(env["RESTIC_PASSWORD"], "repo-secret");
        assert_eq!(env["RESTIC_REPOSITORY"], target.repository);
    }

    #[test]
    fn output_is_scrubbed_of_every_secret() {
        let secrets = ["repo-secret".to_owned(), "rest-secret".to_owned()];
        assert_eq!(
            scrub(
                "Fatal: http://client-1:rest-secret@x with repo-secret",
                &secrets
            ),
            "Fatal: http://client-1:***@x with ***"
        );
    }

    /// A stand-in program for the runner's own logic: a shell script that
    /// hangs, run under the name restic would have.
    fn script(dir: &Path, body: &str) -> ResticBinary {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("restic");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        ResticBinary { path }
    }

    #[test]
    fn a_hung_process_and_its_children_are_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-alive");
        // The child of the hung process writes a file if it survives.
        let binary = script(
            dir.path(),
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        );
        let target = target();
        let started = Instant::now();
        let output = Invocation {
            binary: &binary,
            target: &target,
            cache_dir: None,
            args: vec![],
            cwd: None,
            deadline: Duration::from_millis(300),
            processes: None,
        }
        .run()
        .unwrap();
        assert_eq!(output.exit, Exit::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the whole process group was killed");
    }

    #[test]
    fn kill_sigkills_the_process_a_user_runs() {
        let dir = tempfile::tempdir().unwrap();
        let binary = script(dir.path(), "echo started; sleep 30");
        let target = target();
        let processes = std::sync::Arc::new(Processes::new());
        let killer = {
            let processes = processes.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(10);
                while processes.kill("client-1") == 0 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let output = Invocation {
            binary: &binary,
            target: &target,
            cache_dir: None,
            args: vec![],
            cwd: None,
            deadline: Duration::from_secs(20),
            processes: Some((&processes, "client-1")),
        }
        .run()
        .unwrap();
        killer.join().unwrap();
        assert_eq!(output.exit, Exit::Signal(9));
        assert_eq!(
            processes.kill("client-1"),
            0,
            "an ended process is forgotten"
        );
    }
}
