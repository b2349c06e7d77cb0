//! One `kopia` process: its own config file (`--config-file`), the
//! repository or user password only through `KOPIA_PASSWORD` (never on the
//! command line), no update checks, no credentials persisted outside the
//! config, run by the shared runner (`backend::process`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::backend::process::{Exit, Output, Processes, ProgramMissing};
use crate::backend::process::{Program, Run};

/// The environment variable that names the kopia program, as in kopia's
/// own robustness framework (`tests/tools/kopiarunner/kopiarun.go`).
pub const KOPIA_EXE: &str = "KOPIA_EXE";

/// kopia, as the kopia backend looks for it.
pub const KOPIA: Program = Program {
    name: "kopia",
    variable: KOPIA_EXE,
    install: "put it on PATH",
    needed_by: "the kopia backend",
};

/// The `kopia` program snapstorm runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KopiaBinary {
    pub path: PathBuf,
}

impl KopiaBinary {
    /// `KOPIA_EXE` when it is set, otherwise the first `kopia` on `PATH`.
    pub fn find() -> Result<Self, ProgramMissing> {
        KOPIA.find().map(|path| KopiaBinary { path })
    }
}

/// One kopia invocation.
pub struct Invocation<'a> {
    pub binary: &'a KopiaBinary,
    /// The connection this process uses (`--config-file`).
    pub config_file: &'a Path,
    /// Where kopia writes its own log files (`--log-dir`).
    pub log_dir: &'a Path,
    /// The repository password, or a client's server password: through
    /// `KOPIA_PASSWORD`.
    pub password: &'a str,
    /// More of the environment (the server-control password), each a secret.
    pub secret_env: Vec<(&'static str, String)>,
    pub args: Vec<String>,
    pub cwd: Option<&'a Path>,
    pub deadline: Duration,
    /// Registers the process under this user while it runs.
    pub processes: Option<(&'a Processes, &'a str)>,
}

fn absolute(path: &Path) -> OsString {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .into()
}

impl Invocation<'_> {
    pub(super) fn to_run(&self) -> Run<'_> {
        // Absolute: a snapshot runs with the source as its directory.
        let mut args: Vec<OsString> = vec![
            "--config-file".into(),
            absolute(self.config_file),
            "--log-dir".into(),
            absolute(self.log_dir),
        ];
        args.extend(self.args.iter().map(OsString::from));
        let mut env = vec![
            ("KOPIA_PASSWORD", self.password.to_owned()),
            // The password stays in this process's environment: never in a
            // keyring or a file next to the config.
            ("KOPIA_PERSIST_CREDENTIALS_ON_CONNECT", "false".to_owned()),
            ("KOPIA_USE_KEYRING", "false".to_owned()),
            ("KOPIA_CHECK_FOR_UPDATES", "false".to_owned()),
        ];
        let mut secrets = vec![self.password.to_owned()];
        for (key, value) in &self.secret_env {
            env.push((key, value.clone()));
            secrets.push(value.clone());
        }
        Run {
            program: &self.binary.path,
            args,
            env: env
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            cwd: self.cwd,
            deadline: self.deadline,
            processes: self.processes,
            secrets,
            on_stdout_line: None,
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
        let binary = KopiaBinary {
            path: "/bin/kopia".into(),
        };
        let invocation = Invocation {
            binary: &binary,
            config_file: Path::new("/s/kopia/server.config"),
            log_dir: Path::new("/s/kopia/logs"),
            password: "repo-secret",
            secret_env: vec![("KOPIA_SERVER_PASSWORD", "control-secret".into())],
            args: vec!["snapshot".into(), "list".into(), "--json".into()],
            cwd: None,
            deadline: Duration::from_secs(1),
            processes: None,
        };
        let command = invocation.command();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--config-file",
                "/s/kopia/server.config",
                "--log-dir",
                "/s/kopia/logs",
                "snapshot",
                "list",
                "--json"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("secret")));
        let env: HashMap<String, String> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(env["KOPIA_PASSWORD"], "repo-secret");
        assert_eq!(env["KOPIA_SERVER_PASSWORD"], "control-secret");
        assert_eq!(env["KOPIA_PERSIST_CREDENTIALS_ON_CONNECT"], "false");
        assert_eq!(
            invocation.to_run().secrets,
            ["repo-secret", "control-secret"]
        );
    }
}
