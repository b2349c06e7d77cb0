//! `snapstorm serve` refuses bad set-ups with exit code 2 and one line naming the fix.

mod common;

use std::process::Command;

use common::write_htpasswd;

fn serve(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_setups_exit_2_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    let data_arg = data.to_str().unwrap();

    let missing = dir.path().join("nope.htpasswd");
    let (code, err) = serve(&[
        "--data-dir",
        data_arg,
        "--htpasswd",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read htpasswd file"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let malformed = dir.path().join("bad.htpasswd");
    std::fs::write(&malformed, "alice:$apr1$abc$def\n").unwrap();
    let (code, err) = serve(&[
        "--data-dir",
        data_arg,
        "--htpasswd",
        malformed.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "bad.htpasswd:1: the entry for `alice` is not bcrypt; create it with `htpasswd -B`"
        ),
        "{err}"
    );

    let empty = dir.path().join("empty.htpasswd");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let (code, err) = serve(&[
        "--data-dir",
        data_arg,
        "--htpasswd",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no users; add one with `htpasswd -B"), "{err}");

    let good = dir.path().join("good.htpasswd");
    write_htpasswd(&good, &[("alice", "pw")]);
    let file_as_dir = dir.path().join("a-file");
    std::fs::write(&file_as_dir, "x").unwrap();
    let (code, err) = serve(&[
        "--data-dir",
        file_as_dir.to_str().unwrap(),
        "--htpasswd",
        good.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a directory"), "{err}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let (code, err) = serve(&[
        "--data-dir",
        data_arg,
        "--htpasswd",
        good.to_str().unwrap(),
        "--listen",
        &port,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is another server using that port? choose another with --listen"),
        "{err}"
    );

    let (code, err) = serve(&["--data-dir", data_arg]);
    assert_eq!(code, 2, "--htpasswd or --no-auth is required");
    assert!(err.contains("--htpasswd"), "{err}");
    assert!(
        !data.exists() || std::fs::read_dir(&data).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn requests_are_logged_at_debug_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users");
    write_htpasswd(&htpasswd, &[("alice", "sup3rs3cret")]);
    let data = dir.path().join("repos");
    let server = common::ServeProcess::start(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
        "-v".as_ref(),
    ]);
    let client = reqwest::blocking::Client::new();
    let status = client
        .post(format!("http://{}/repo/?create=true", server.addr))
        .basic_auth("alice", Some("sup3rs3cret"))
        .send()
        .unwrap()
        .status();
    assert!(status.is_success());
    let lines = server.stderr_lines.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !lines.lock().unwrap().iter().any(|l| l.contains("request"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = lines.lock().unwrap().join("\n");
    assert!(
        text.contains("method=POST")
            && text.contains("path=\"/repo/\"")
            && text.contains("user=\"alice\""),
        "{text}"
    );
    assert!(
        !text.contains("sup3rs3cret") && !text.to_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(server.interrupt().success());
}

#[test]
fn serve_options_default_to_the_servers_own_limits() {
    use clap::Parser;
    use snapstorm::cli::{Cli, Command};
    use snapstorm::server::ConnectionLimits;
    let cli = Cli::try_parse_from(["snapstorm", "serve", "--data-dir", "d", "--no-auth"]).unwrap();
    let Some(Command::Serve(args)) = cli.command else {
        panic!("not serve: {cli:?}")
    };
    let defaults = ConnectionLimits::default();
    assert_eq!(args.header_timeout, defaults.header_read_timeout);
    assert_eq!(args.idle_timeout, defaults.idle_timeout);
    assert_eq!(args.max_connections, defaults.max_connections);
    assert_eq!(
        args.max_connections_per_peer,
        defaults.max_connections_per_peer
    );
}

#[test]
fn the_public_no_auth_flag_goes_only_with_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users");
    write_htpasswd(&htpasswd, &[("alice", "pw")]);
    let data = dir.path().join("repos");
    let (code, err) = serve(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--i-know-no-auth-is-public",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "snapstorm: --i-know-no-auth-is-public only goes with --no-auth; drop it, or add --no-auth\n"
    );
    assert!(!data.exists());
}
