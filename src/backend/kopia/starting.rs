//! How `kopia server start` is started and found: its arguments, the
//! address and certificate fingerprint it prints, and the wait until it
//! serves.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use super::errors::classify;
use super::process::{Invocation, KopiaBinary, Output};
use super::server::utf8;
use crate::engine::traits::{BackendError, BackendResult};

/// How long the server may take to open the repository and answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The SHA-256 of the first certificate of a PEM file, in hex: what
/// `--server-cert-fingerprint` takes (kopia prints the same as `SERVER CERT
/// SHA256:`, `cli/command_server_tls.go`; its robustness framework computes
/// it from the file, `getFingerPrintFromCert`).
pub fn certificate_fingerprint(pem: &str) -> Option<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN CERTIFICATE-----")
        .skip(1)
        .take_while(|line| *line != "-----END CERTIFICATE-----")
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|der| !der.is_empty())?;
    Some(hex::encode(sha2::Sha256::digest(&der)))
}

/// The address in kopia's `SERVER ADDRESS: https://127.0.0.1:PORT` line.
pub fn server_address(log: &str) -> Option<String> {
    log.lines()
        .find_map(|line| line.trim().strip_prefix("SERVER ADDRESS: "))
        .filter(|address| address.starts_with("https://"))
        .map(str::to_owned)
}

/// The address the first start listens on: a port kopia picks. A restart
/// asks for the same port again, so the address users saw stays right.
pub const FIRST_LISTEN: &str = "127.0.0.1:0";

/// The arguments of `server start` on `listen`: the certificate generated
/// on the first start and reused later.
pub fn server_start_args(listen: &str, cert: &str, key: &str, generate: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "server",
        "start",
        "--address",
        listen,
        "--no-ui",
        "--shutdown-on-stdin",
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    if generate {
        args.push("--tls-generate-cert".to_owned());
    }
    args
}

/// Starts `kopia server start` on `listen`, its output into
/// `dir/server.log`, and waits for the address it serves on.
pub(super) fn start_server(
    binary: &KopiaBinary,
    listen: &str,
    dir: &Path,
    repo_password: &str,
    control_password: &str,
) -> BackendResult<(Child, ChildStdin, String, String)> {
    let local = |e: std::io::Error| BackendError::Local(format!("kopia server: {e}"));
    let cert = dir.join("server.cert");
    let key = dir.join("server.key");
    let generate = !(cert.exists() && key.exists());
    if generate {
        // kopia refuses to generate over either file.
        let _ = std::fs::remove_file(&cert);
        let _ = std::fs::remove_file(&key);
    }
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(local)?;
    let config_file = dir.join(super::server::SERVER_CONFIG);
    let log_dir = dir.join("logs");
    let invocation = Invocation {
        binary,
        config_file: &config_file,
        log_dir: &log_dir,
        password: repo_password,
        secret_env: vec![("KOPIA_SERVER_CONTROL_PASSWORD", control_password.to_owned())],
        args: server_start_args(listen, utf8(&cert)?, utf8(&key)?, generate),
        cwd: None,
        deadline: START_TIMEOUT,
        processes: None,
    };
    let mut command = invocation.command();
    command
        .stdin(Stdio::piped())
        .stdout(log.try_clone().map_err(local)?)
        .stderr(log);
    let mut child = command.spawn().map_err(local)?;
    let stdin = child.stdin.take().expect("piped stdin");
    let started = Instant::now();
    let read_log = || {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    let address = loop {
        let text = read_log();
        if let Some(address) = server_address(&text) {
            break address;
        }
        let ended = child.try_wait().ok().flatten();
        if ended.is_some() || started.elapsed() > START_TIMEOUT {
            let exit = match ended {
                Some(status) => super::process::Exit::Code(status.code().unwrap_or(-1)),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    super::process::Exit::TimedOut(START_TIMEOUT)
                }
            };
            let output = Output {
                exit,
                stdout: String::new(),
                stderr: crate::backend::process::scrub(
                    &text,
                    &[repo_password.to_owned(), control_password.to_owned()],
                ),
            };
            return Err(classify("server start", &output));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pem = std::fs::read_to_string(&cert).map_err(local)?;
    let fingerprint = certificate_fingerprint(&pem).ok_or_else(|| {
        BackendError::Failed(format!(
            "kopia server: no certificate in {}",
            cert.display()
        ))
    })?;
    // What kopia printed for a certificate it generated must be the file's.
    let printed = read_log().lines().find_map(|l| {
        l.trim()
            .strip_prefix("SERVER CERT SHA256: ")
            .map(str::to_owned)
    });
    if let Some(printed) = printed
        && printed != fingerprint
    {
        return Err(BackendError::Failed(format!(
            "kopia server: printed certificate fingerprint {printed}, the file's is {fingerprint}"
        )));
    }
    Ok((child, stdin, address, fingerprint))
}
