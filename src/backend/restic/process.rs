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

/// A restic release, as `restic version` names it (`restic 0.18.1
/// compiled with go1.26.8 on linux/amd64`). What restic can do differs by
/// release; the backend asks this, never the text of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResticVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ResticVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ResticVersion {
            major,
            minor,
            patch,
        }
    }

    /// The version in the output of `restic version` (a build of a
    /// development tree, `restic 0.18.1-dev (compiled manually)`, counts as
    /// its release).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim_start().strip_prefix("restic ")?;
        let word = rest.split_whitespace().next()?;
        let mut numbers = word
            .split(['.', '-'])
            .map(|part| part.trim_start_matches('v').parse::<u32>());
        let (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) =
            (numbers.next(), numbers.next(), numbers.next())
        else {
            return None;
        };
        Some(ResticVersion::new(major, minor, patch))
    }

    /// `--retry-lock DURATION` (restic 0.16.0 on): restic waits for a lock
    /// in its own process instead of failing at once, so a wait costs no
    /// new process (each opens the repository: a key derivation).
    pub fn retries_locks(self) -> bool {
        self >= ResticVersion::new(0, 16, 0)
    }

    /// `restore --json` prints status lines as `backup --json` does
    /// (restic 0.16.0 on); before, a restore prints no progress.
    pub fn restore_reports_progress(self) -> bool {
        self >= ResticVersion::new(0, 16, 0)
    }
}

impl std::fmt::Display for ResticVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A restic program snapstorm cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResticUnusable {
    #[error(transparent)]
    Missing(#[from] ProgramMissing),
    #[error(
        "{path}: `restic version` did not name a restic version ({said}): point RESTIC_EXE at the restic program"
    )]
    NoVersion { path: String, said: String },
}

/// The `restic` program snapstorm runs, and its release (asked once, when
/// the program is found: never per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticBinary {
    pub path: PathBuf,
    pub version: ResticVersion,
}

impl ResticBinary {
    /// `RESTIC_EXE` when it is set, otherwise the first `restic` on `PATH`.
    pub fn find() -> Result<Self, ResticUnusable> {
        ResticBinary::at(RESTIC.find()?)
    }

    /// The restic program at `path`, its version asked with `restic version`.
    pub fn at(path: PathBuf) -> Result<Self, ResticUnusable> {
        let unusable = |said: String| ResticUnusable::NoVersion {
            path: path.display().to_string(),
            said,
        };
        let output = Run {
            program: &path,
            args: vec!["version".into()],
            env: Vec::new(),
            cwd: None,
            deadline: Duration::from_secs(60),
            processes: None,
            secrets: Vec::new(),
            on_stdout_line: None,
        }
        .run()
        .map_err(|e| unusable(e.to_string()))?;
        match ResticVersion::parse(&output.stdout) {
            Some(version) if output.success() => Ok(ResticBinary { path, version }),
            _ => Err(unusable(match output.stdout.trim() {
                "" => output.explanation(&[]),
                printed => format!("printed {printed:?}, {}", output.explanation(&[])),
            })),
        }
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
    /// What restic reads from its environment besides the repository and
    /// its password: an S3 storage's keys. Every value is hidden too.
    pub environment: Vec<(String, String)>,
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
        secrets.extend(
            self.target
                .environment
                .iter()
                .filter(|(name, _)| name != crate::backend::location::S3_REGION_ENV)
                .map(|(_, value)| value.clone()),
        );
        let mut env = vec![
            (
                "RESTIC_REPOSITORY".to_owned(),
                self.target.repository.clone(),
            ),
            ("RESTIC_PASSWORD".to_owned(), self.target.password.clone()),
            // restic's `--json` status lines four times a second: enough
            // for the console, few enough to read as they come.
            ("RESTIC_PROGRESS_FPS".to_owned(), "4".to_owned()),
        ];
        env.extend(self.target.environment.iter().cloned());
        Run {
            program: &self.binary.path,
            args,
            env,
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
    fn the_version_is_read_from_restic_version() {
        // Captured: Debian's restic, and restic 0.18.1 built from its module.
        assert_eq!(
            ResticVersion::parse("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n"),
            Some(ResticVersion::new(0, 14, 0))
        );
        assert_eq!(
            ResticVersion::parse("restic 0.18.1 compiled with go1.26.8 on linux/amd64\n"),
            Some(ResticVersion::new(0, 18, 1))
        );
        // A build of restic's development tree (`version.go` appends -dev).
        assert_eq!(
            ResticVersion::parse(
                "restic 0.18.1-dev (compiled manually) compiled with go1.24.1 on linux/amd64"
            ),
            Some(ResticVersion::new(0, 18, 1))
        );
        assert_eq!(ResticVersion::parse("kopia 0.23.1"), None);
        assert_eq!(ResticVersion::parse(""), None);
        assert_eq!(ResticVersion::new(0, 18, 1).to_string(), "0.18.1");
    }

    #[test]
    fn what_a_version_can_do() {
        let debian = ResticVersion::new(0, 14, 0);
        let current = ResticVersion::new(0, 18, 1);
        assert!(!debian.retries_locks() && current.retries_locks());
        assert!(ResticVersion::new(0, 16, 0).retries_locks());
        assert!(!ResticVersion::new(0, 15, 2).retries_locks());
        assert!(!debian.restore_reports_progress() && current.restore_reports_progress());
    }

    #[test]
    fn a_program_that_names_no_restic_version_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("restic");
        std::fs::write(&fake, "#!/bin/sh\necho 'not restic'\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let refused = ResticBinary::at(fake.clone()).unwrap_err().to_string();
        assert!(refused.contains(fake.to_str().unwrap()), "{refused}");
        assert!(refused.contains("not restic"), "{refused}");
        assert!(refused.contains("RESTIC_EXE"), "{refused}");
    }

    #[test]
    fn secrets_go_into_the_environment_never_the_arguments() {
        let binary = ResticBinary {
            path: "/bin/restic".into(),
            version: ResticVersion::new(0, 14, 0),
        };
        let target = Target {
            repository: "rest:http://client-1:rest-secret@127.0.0.1:1/repo/".into(),
            password: "repo-secret".into(),
            also_secret: vec!["rest-secret".into()],
            environment: Vec::new(),
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
