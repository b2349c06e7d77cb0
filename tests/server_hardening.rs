//! The server against hostile or careless input: stalled connections,
//! other users' locks, crashes mid-upload, configuration changes while it
//! runs, and set-ups that would expose it.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ServeProcess, TestServer, basic_auth, connect_from, restic_id, write_htpasswd};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use rustix::process::{Resource, Signal};
use snapstorm::server::{Auth, ConnectionLimits};

/// A peer other than the well-behaved client (which uses 127.0.0.1).
const STALLER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Half a request head: the request line and a header, never the blank line.
const HALF_A_HEAD: &[u8] = b"GET /repo/config HTTP/1.1\r\nHost: snapstorm\r\n";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Opens `count` connections from `from`; every third sends half a request
/// head, the others nothing. The server may close some of them: they are
/// held open on this side all the same. Stops early when a connection
/// cannot even be queued (the server stopped accepting).
fn stalled_connections(
    runtime: &tokio::runtime::Runtime,
    from: Ipv4Addr,
    addr: SocketAddr,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut held = Vec::with_capacity(count);
        for n in 0..count {
            let connecting = connect_from(from, addr);
            let Ok(stream) = tokio::time::timeout(Duration::from_secs(2), connecting).await else {
                break;
            };
            let mut stream = stream.unwrap();
            if n % 3 == 0 {
                // The server may have closed it already: that is fine.
                let _ = stream.write_all(HALF_A_HEAD).await;
            }
            held.push(stream);
        }
        held
    })
}

/// A well-behaved client's session: create a repository, upload, list, read.
fn working_client_session(addr: SocketAddr, round: usize) {
    let client = client();
    let base = format!("http://{addr}/repo");
    let status = client
        .post(format!("{base}/?create=true"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap_or_else(|e| panic!("round {round}: create: {e}"))
        .status();
    assert!(status == StatusCode::OK || status == StatusCode::FORBIDDEN);
    let content = format!("snapshot {round}").into_bytes();
    let id = restic_id(&content);
    let status = client
        .post(format!("{base}/snapshots/{id}"))
        .basic_auth("alice", Some("pw"))
        .body(content.clone())
        .send()
        .unwrap_or_else(|e| panic!("round {round}: upload: {e}"))
        .status();
    assert_eq!(status, StatusCode::OK, "round {round}");
    let back = client
        .get(format!("{base}/snapshots/{id}"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap_or_else(|e| panic!("round {round}: read: {e}"))
        .bytes()
        .unwrap();
    assert_eq!(&back[..], &content[..], "round {round}");
}

#[test]
fn a_thousand_stalled_connections_do_not_lock_out_a_working_client() {
    common::raise_open_file_limit(4096);
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "pw")]);
    let data = dir.path().join("repos");
    // The server gets 256 file descriptors: without caps, 1,000 stalled
    // connections exhaust them and every accept fails from then on.
    let server = ServeProcess::start_with(
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--htpasswd".as_ref(),
            htpasswd.as_os_str(),
        ],
        |command| common::limit_child(command, Resource::Nofile, 256),
    );
    let runtime = common::runtime();
    let stalled = stalled_connections(&runtime, STALLER, server.addr, 1000);
    for round in 0..20 {
        working_client_session(server.addr, round);
    }
    assert_eq!(stalled.len(), 1000, "the server kept accepting");
    assert!(
        server
            .stderr()
            .contains("the open-file limit (256) holds only 96 connections (12 per peer)"),
        "{}",
        server.stderr()
    );
    assert!(
        !server.stderr().contains("Too many open files"),
        "{}",
        server.stderr()
    );
    drop(stalled);
    assert!(server.interrupt().success());
}

/// Reads until the server closes the connection; `None` if it has not
/// within `timeout`.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(got),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn short_timeouts() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..ConnectionLimits::default()
    }
}

#[test]
fn connections_that_stall_before_or_between_requests_are_closed() {
    let s = TestServer::start(|c| c.limits = short_timeouts());
    s.users.add("alice", "pw", false).unwrap();
    let auth = basic_auth("alice", "pw");
    let addr = s.addr();

    let mut silent = TcpStream::connect(addr).unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(HALF_A_HEAD).unwrap();
    let mut kept_alive = TcpStream::connect(addr).unwrap();
    kept_alive
        .write_all(
            format!("HEAD /config HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n").as_bytes(),
        )
        .unwrap();

    // Generous: the timeouts are 1 s and 2 s; a server without them never closes.
    let patience = Duration::from_secs(20);
    assert!(
        read_until_closed(&mut silent, patience).is_some(),
        "a connection that never sends a byte is closed"
    );
    assert!(
        read_until_closed(&mut half, patience).is_some(),
        "a connection that sends half a request head is closed"
    );
    let answered = read_until_closed(&mut kept_alive, patience)
        .expect("an idle keep-alive connection is closed after its request");
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
}

#[test]
fn a_slow_request_in_progress_is_not_cut_by_the_timeouts() {
    let s = TestServer::start(|c| c.limits = short_timeouts());
    s.users.add("alice", "pw", false).unwrap();
    let status = client()
        .post(s.url("/repo/?create=true"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    // Ten bytes, one every 400 ms: twice the idle timeout, four times the header timeout.
    let body = b"0123456789";
    let mut stream = TcpStream::connect(s.addr()).unwrap();
    stream
        .write_all(
            format!(
                "POST /repo/snapshots/{} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                restic_id(body),
                basic_auth("alice", "pw"),
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    for byte in body {
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(&[*byte]).unwrap();
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(20)).unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn connection_caps_hold_per_peer_and_in_total() {
    let s = TestServer::start(|c| {
        c.limits = ConnectionLimits {
            max_connections: 8,
            max_connections_per_peer: 3,
            ..ConnectionLimits::default()
        }
    });
    s.users.add("alice", "pw", false).unwrap();
    let addr = s.addr();
    let runtime = common::runtime();
    let std_stream = |stream: tokio::net::TcpStream| {
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    };

    // One peer holds its three; its fourth is closed at once.
    let first_peer = stalled_connections(&runtime, STALLER, addr, 3);
    assert_eq!(first_peer.len(), 3);
    let mut fourth = std_stream(runtime.block_on(connect_from(STALLER, addr)).unwrap());
    assert!(
        read_until_closed(&mut fourth, Duration::from_secs(10)).is_some(),
        "a peer's connection beyond its cap is closed"
    );
    // Another peer is served meanwhile.
    working_client_session(addr, 0);
    // Its connection is closed; give the server a moment to see that.
    std::thread::sleep(Duration::from_millis(300));

    // Two more peers fill the total of eight: a new connection waits…
    let mut others = stalled_connections(&runtime, Ipv4Addr::new(127, 0, 0, 3), addr, 3);
    others.extend(stalled_connections(
        &runtime,
        Ipv4Addr::new(127, 0, 0, 4),
        addr,
        2,
    ));
    let mut waiting = TcpStream::connect(addr).unwrap();
    waiting
        .write_all(
            format!(
                "HEAD /config HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
                basic_auth("alice", "pw")
            )
            .as_bytes(),
        )
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "no answer while eight connections are open: {early:?}"
    );
    // …until one closes.
    drop(others.pop());
    let answer = read_until_closed(&mut waiting, Duration::from_secs(10)).unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(first_peer);
}

#[test]
fn append_only_users_delete_only_their_own_locks_also_after_a_restart() {
    let s = TestServer::start(|_| {});
    s.users.add("alice", "alice-pw", true).unwrap();
    s.users.add("eve", "eve-pw", true).unwrap();
    s.users.add("admin", "admin-pw", false).unwrap();
    let client = client();
    let request = |s: &TestServer, method: reqwest::Method, user: &str, path: &str, body: &[u8]| {
        client
            .request(method, s.url(path))
            .basic_auth(user, Some(format!("{user}-pw")))
            .body(body.to_vec())
            .send()
            .unwrap()
            .status()
    };
    use reqwest::Method;
    assert_eq!(
        request(&s, Method::POST, "admin", "/repo/?create=true", b""),
        StatusCode::OK
    );
    let alice_lock = format!("/repo/locks/{}", restic_id(b"alice's lock"));
    let eve_lock = format!("/repo/locks/{}", restic_id(b"eve's lock"));
    assert_eq!(
        request(&s, Method::POST, "alice", &alice_lock, b"alice's lock"),
        StatusCode::OK
    );
    assert_eq!(
        request(&s, Method::POST, "eve", &eve_lock, b"eve's lock"),
        StatusCode::OK
    );
    assert_eq!(
        request(&s, Method::DELETE, "eve", &alice_lock, b""),
        StatusCode::FORBIDDEN,
        "eve may not delete alice's lock"
    );
    // Ownership leaves the listing as restic expects it.
    let listed: serde_json::Value = client
        .get(s.url("/repo/locks/"))
        .basic_auth("eve", Some("eve-pw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // A restart keeps who owns what.
    let s = TestServer::start_in(s.into_dir(), |_| {});
    s.users.add("alice", "alice-pw", true).unwrap();
    s.users.add("eve", "eve-pw", true).unwrap();
    s.users.add("admin", "admin-pw", false).unwrap();
    assert_eq!(
        request(&s, Method::DELETE, "eve", &alice_lock, b""),
        StatusCode::FORBIDDEN
    );
    assert!(s.dir.path().join(&alice_lock[1..]).is_file());
    assert_eq!(
        request(&s, Method::DELETE, "alice", &alice_lock, b""),
        StatusCode::OK
    );
    assert_eq!(
        request(&s, Method::DELETE, "eve", &eve_lock, b""),
        StatusCode::OK
    );
    assert_eq!(
        request(&s, Method::DELETE, "eve", &eve_lock, b""),
        StatusCode::NOT_FOUND
    );

    // A lock nobody created through the server (a local client's) is no
    // append-only user's; a user who may delete anything removes it.
    let local_lock = format!("repo/locks/{}", restic_id(b"local"));
    std::fs::write(s.dir.path().join(&local_lock), b"local").unwrap();
    let local_lock = format!("/{local_lock}");
    assert_eq!(
        request(&s, Method::DELETE, "alice", &local_lock, b""),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        request(&s, Method::DELETE, "admin", &local_lock, b""),
        StatusCode::OK
    );
}

#[test]
fn without_authentication_the_anonymous_caller_owns_its_locks() {
    let s = TestServer::start(|c| {
        c.auth = Auth::Open;
        c.append_only = true;
    });
    let client = client();
    let status = client
        .post(s.url("/repo/?create=true"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let lock = s.url(&format!("/repo/locks/{}", restic_id(b"lock")));
    let status = client
        .post(&lock)
        .body(&b"lock"[..])
        .send()
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        client.delete(&lock).send().unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn start_removes_uploads_a_crash_broke_off_but_not_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    let repo = data.join("repo");
    for sub in ["keys", "locks", "snapshots", "index", "data/ab"] {
        std::fs::create_dir_all(repo.join(sub)).unwrap();
    }
    let stale = [
        (repo.join("data/ab/.tmp-pack1"), 3 * 1024 * 1024),
        (repo.join("locks/.tmp-lock"), 100),
        (repo.join(".tmp-config"), 10),
        (data.join(".tmp-rootconfig"), 10),
    ];
    for (path, len) in &stale {
        std::fs::write(path, vec![7u8; *len]).unwrap();
    }
    let id = restic_id(b"kept");
    let kept = repo.join("data/ab").join(&id);
    std::fs::write(&kept, b"kept").unwrap();
    // An upload another server on this directory is still writing.
    let live = repo.join("data/ab/.tmp-live");
    let live_file = std::fs::File::create(&live).unwrap();
    rustix::fs::flock(&live_file, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "pw")]);
    let server = ServeProcess::start(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ]);
    for (path, _) in &stale {
        assert!(!path.exists(), "{} removed", path.display());
    }
    assert!(kept.is_file(), "repository files are kept");
    assert!(live.is_file(), "a live upload is kept");
    let reported: Vec<String> = server
        .stderr_lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("partial upload"))
        .cloned()
        .collect();
    assert_eq!(reported.len(), 1, "{}", server.stderr());
    assert!(
        reported[0].contains("removed 4 partial uploads left by an earlier run (3.0 MiB)"),
        "{}",
        reported[0]
    );
    assert!(server.interrupt().success());
}

/// Whether `user` gets past authentication (a missing file is 404, not 401).
fn authenticates(addr: SocketAddr, user: &str, password: &str) -> bool {
    let status = client()
        .head(format!("http://{addr}/config"))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
        .status();
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED,
        "{status}"
    );
    status != StatusCode::UNAUTHORIZED
}

#[test]
fn sighup_reloads_the_htpasswd_file_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "a")]);
    let data = dir.path().join("repos");
    let server = ServeProcess::start(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ]);
    assert!(authenticates(server.addr, "alice", "a"));
    assert!(!authenticates(server.addr, "bob", "b"));

    write_htpasswd(&htpasswd, &[("bob", "b")]);
    let seen = server.stderr_line_count();
    server.signal(Signal::HUP);
    let line = server.wait_for_line("on reload", seen, Duration::from_secs(10), |l| {
        l.contains("SIGHUP")
    });
    assert!(
        line.contains("reloaded") && line.contains("1 user"),
        "{line}"
    );
    assert!(authenticates(server.addr, "bob", "b"), "a new user gets in");
    assert!(
        !authenticates(server.addr, "alice", "a"),
        "a removed user gets 401"
    );

    // A bad file is reported and changes nothing.
    std::fs::write(&htpasswd, "bob:{SHA}abc\n").unwrap();
    let seen = server.stderr_line_count();
    server.signal(Signal::HUP);
    let line = server.wait_for_line("on reload", seen, Duration::from_secs(10), |l| {
        l.contains("SIGHUP")
    });
    assert!(
        line.contains("not reloaded, still serving the 1 user loaded before")
            && line.contains("is not bcrypt; create it with `htpasswd -B`"),
        "{line}"
    );
    assert!(authenticates(server.addr, "bob", "b"));

    let seen = server.stderr_line_count();
    server.signal(Signal::TERM);
    let mut server = server;
    let status = server.wait();
    assert!(status.success(), "{status:?}");
    let lines = server.stderr_lines.lock().unwrap()[seen..].join("\n");
    assert!(lines.contains("snapstorm: stopping"), "{lines}");
}

/// `snapstorm serve ARGS…` that must fail: its exit code and stderr. Killed
/// (and the test failed) if it is still running after 30 s.
fn serve_fails(args: &[&str], configure: impl FnOnce(&mut std::process::Command)) -> (i32, String) {
    let mut command = common::serve_command(args);
    configure(&mut command);
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_auth_on_a_public_address_needs_to_be_meant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    let data_arg = data.to_str().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (code, err) = serve_fails(
            &["--data-dir", data_arg, "--no-auth", "--listen", listen],
            |_| {},
        );
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("--no-auth on {listen}"))
                && err.contains("add --i-know-no-auth-is-public"),
            "{err}"
        );
        assert!(!data.exists(), "nothing written");
    }
    // Meant: it serves.
    let server = ServeProcess::start_with(
        &[
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--no-auth".as_ref(),
            "--i-know-no-auth-is-public".as_ref(),
            "--listen".as_ref(),
            "0.0.0.0:0".as_ref(),
        ],
        |_| {},
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let status = client()
        .head(format!("http://{addr}/config"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // SIGHUP with nothing to reload does not stop it either.
    server.signal(Signal::HUP);
    server.wait_for_line("on SIGHUP", 0, Duration::from_secs(10), |l| {
        l.contains("nothing to reload")
    });
    assert!(server.interrupt().success());
}

#[test]
fn an_htpasswd_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "a")]);
    let start = || {
        ServeProcess::start(&[
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--htpasswd".as_ref(),
            htpasswd.as_os_str(),
        ])
    };
    std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = start();
    let warnings: Vec<String> = server
        .stderr_lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("warning"))
        .cloned()
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "snapstorm: warning: {0} is readable by group or others: its bcrypt hashes can be attacked offline (mode 644); chmod 600 {0}",
            htpasswd.display()
        )]
    );
    assert!(server.interrupt().success());

    std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = start();
    assert!(!server.stderr().contains("warning"), "{}", server.stderr());
    assert!(server.interrupt().success());
}

#[test]
fn a_start_that_fails_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "a")]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let (code, err) = serve_fails(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--listen",
            &port,
        ],
        |_| {},
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("choose another with --listen"), "{err}");
    assert!(!data.exists(), "no data directory after a failed start");
}

#[test]
fn a_huge_htpasswd_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("repos");
    // 2 GiB of address space: reading /dev/zero without bound fails fast
    // instead of taking the machine's memory.
    let (code, err) = serve_fails(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--htpasswd",
            "/dev/zero",
        ],
        |command| common::limit_child(command, Resource::As, 2 << 30),
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("/dev/zero: larger than 4194304 bytes, too large for an htpasswd file"),
        "{err}"
    );
    assert!(!data.exists());
}
