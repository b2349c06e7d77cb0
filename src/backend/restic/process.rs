//! One `restic` process: the repository and its password through
//! `RESTIC_REPOSITORY` and `RESTIC_PASSWORD` (never on the command line),
//! its own cache directory, run by the shared runner (`backend::process`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::backend::process::{Exit, Output, Processes, ProgramMissing};
use crate::backend::process::{Program, Run};

/// The environment variable that names the restic program.
pub const RESTIC_EXE: &str = "RESTIC_EXE";

/// restic, as the restic and mixed backends look for it.
pub const RESTIC: Program = Program {
    name: "restic",
    variable: RESTIC_EXE,
    install: "install it with `apt-get install restic` (Debian's is 0.14)",
    needed_by: "the restic and mixed backends",
};

/// The `restic` program snapstorm runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticBinary {
    pub path: PathBuf,
}

impl ResticBinary {
    /// `RESTIC_EXE` when it is set, otherwise the first `restic` on `PATH`.
    pub fn find() -> Result<Self, ProgramMissing> {
        RESTIC.find().map(|path| ResticBinary { path })
    }
}

/// Where a restic process points, and with which secrets.
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
    /// Called with each line restic prints as it prints it (`--json` status).
    pub on_stdout_line: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Invocation<'_> {
    fn to_run(&self) -> Run<'_> {
        let mut args: Vec<OsString> = Vec::new();
        // Absolute: the process runs in another directory (a backup runs in
        // its source, and a relative cache there would be backed up).
        match self.cache_dir {
            Some(dir) => {
                args.push("--cache-dir".into());
                args.push(
                    std::path::absolute(dir)
                        .unwrap_or_else(|_| dir.to_path_buf())
                        .into(),
                );
            }
            None => args.push("--no-cache".into()),
        }
        args.extend(self.args.iter().map(OsString::from));
        let mut secrets = vec![self.target.password.clone()];
        secrets.extend(self.target.also_secret.iter().cloned());
        Run {
            program: &self.binary.path,
            args,
            env: vec![
                ("RESTIC_REPOSITORY", self.target.repository.clone()),
                ("RESTIC_PASSWORD", self.target.password.clone()),
                // restic's `--json` status lines four times a second: enough
                // for the console, few enough to read as they come.
                ("RESTIC_PROGRESS_FPS", "4".to_owned()),
            ],
            cwd: self.cwd,
            deadline: self.deadline,
            processes: self.processes,
            secrets,
            on_stdout_line: self.on_stdout_line,
        }
    }

    /// The command line, as `ps` would show it: no secret in it.
    pub fn command(&self) -> std::process::Command {
        self.to_run().command()
    }

    /// Runs the process to its end or its deadline.
    pub fn run(self) -> std::io::Result<Output> {
        self.to_run().run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn secrets_go_into_the_environment_never_the_arguments() {
        let binary = ResticBinary {
            path: "/bin/restic".into(),
        };
        let target = Target {
            repository: "rest:http://client-1:rest-secret@127.0.0.1:1/repo/".into(),
            password: "repo-secret".into(),
            also_secret: vec!["rest-secret".into()],
        };
        let invocation = Invocation {
            binary: &binary,
            target: &target,
            cache_dir: Some(Path::new("/tmp/cache")),
            args: vec!["snapshots".into(), "--json".into()],
            cwd: None,
            deadline: Duration::from_secs(1),
            processes: None,
            on_stdout_line: None,
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
}
