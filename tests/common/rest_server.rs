//! restic's own `rest-server` (from `REST_SERVER_EXE`, else on PATH) as an
//! external storage: a free loopback port, its data in a temporary
//! directory, stopped by its pid on every path (also a failing test's).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server lets clients in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `--no-auth`.
    None,
    /// `--htpasswd-file` with one user, [`USER`] / [`PASSWORD`].
    Htpasswd,
}

pub const USER: &str = "storage-user";
/// Long and unusual, so that a search for it in what snapstorm wrote finds
/// only a leak.
pub const PASSWORD: &str = "rest-Secret-7Qx9zLw3pK";

/// A running `rest-server`; dropping it kills the process.
pub struct RestServerProcess {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// Serving https with the certificate in `tests/tls` (for `localhost`
    /// and 127.0.0.1, signed by `tests/tls/ca.pem`).
    tls: bool,
}

/// The CA that signed `tests/tls/server.pem`: what `--cacert` is given.
pub fn test_ca() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem")
}

/// Which REST server serves the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// restic's `rest-server`.
    RestServer,
    /// `snapstorm serve`, as on another machine: the binary under test.
    SnapstormServe,
}

impl RestServerProcess {
    /// Starts `rest-server --path DIR --listen 127.0.0.1:PORT` with `auth`,
    /// `--append-only` if asked; fails the test, naming the program, when
    /// it is missing.
    pub fn start(auth: Auth, append_only: bool) -> Self {
        Self::start_program(Program::RestServer, auth, append_only)
    }

    /// As [`RestServerProcess::start`], with `program` serving.
    pub fn start_program(program: Program, auth: Auth, append_only: bool) -> Self {
        Self::spawn(program, auth, append_only, false)
    }

    /// restic's `rest-server` over https (`--tls`), its certificate for
    /// `localhost` signed by [`test_ca`].
    pub fn start_tls(auth: Auth) -> Self {
        Self::spawn(Program::RestServer, auth, false, true)
    }

    fn spawn(program: Program, auth: Auth, append_only: bool, tls: bool) -> Self {
        let (path, data_flag, htpasswd_flag) = match program {
            Program::RestServer => (
                super::require_program("rest-server"),
                "--path",
                "--htpasswd-file",
            ),
            Program::SnapstormServe => (
                PathBuf::from(env!("CARGO_BIN_EXE_snapstorm")),
                "--data-dir",
                "--htpasswd",
            ),
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // A free port: bound, then let go for the server to take.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut command = Command::new(&path);
        if program == Program::SnapstormServe {
            command.arg("serve");
        }
        command
            .arg(data_flag)
            .arg(&data)
            .args(["--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match auth {
            Auth::None => {
                command.arg("--no-auth");
            }
            Auth::Htpasswd => {
                let htpasswd = dir.path().join("htpasswd");
                super::write_htpasswd(&htpasswd, &[(USER, PASSWORD)]);
                command.arg(htpasswd_flag).arg(&htpasswd);
            }
        }
        if append_only {
            command.arg("--append-only");
        }
        if tls {
            let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
            command
                .arg("--tls")
                .arg("--tls-cert")
                .arg(fixtures.join("server.pem"))
                .arg("--tls-key")
                .arg(fixtures.join("server-key.pem"));
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let server = RestServerProcess {
            child,
            addr,
            dir,
            tls,
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "rest-server did not listen on {} in 10 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process's id (its command line is checked for secrets).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rest:http://127.0.0.1:PORT/NAME/` (over https:
    /// `rest:https://localhost:PORT/NAME/`, the name its certificate
    /// holds), without credentials.
    pub fn location(&self, name: &str) -> String {
        if self.tls {
            format!("rest:https://localhost:{}/{name}/", self.addr.port())
        } else {
            format!("rest:http://{}/{name}/", self.addr)
        }
    }

    /// Where the server keeps the repository `name`.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// The temporary directory the server's data is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RestServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
