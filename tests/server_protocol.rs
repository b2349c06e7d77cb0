//! The REST server's protocol behaviour, checked over real HTTP.

mod common;

use common::{ID_A, TestServer, basic_auth, disk_state, raw_request, restic_id};
use reqwest::StatusCode;
use reqwest::blocking::Client;

const V2: &str = "application/vnd.x.restic.rest.v2";

fn server_with_users() -> TestServer {
    let server = TestServer::start(|_| {});
    server.users.add("alice", "alice-pw", false).unwrap();
    server.users.add("appender", "append-pw", true).unwrap();
    server
}

fn client() -> Client {
    Client::builder().build().unwrap()
}

fn create_repo(s: &TestServer, repo: &str) {
    let r = client()
        .post(s.url(&format!("/{repo}/?create=true")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn upload(s: &TestServer, user: (&str, &str), path: &str, body: Vec<u8>) -> StatusCode {
    client()
        .post(s.url(path))
        .basic_auth(user.0, Some(user.1))
        .body(body)
        .send()
        .unwrap()
        .status()
}

const ALICE: (&str, &str) = ("alice", "alice-pw");
const APPENDER: (&str, &str) = ("appender", "append-pw");

#[test]
fn create_save_list_read_delete_round_trip() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let layout = s.dir.path().join("repo");
    for dir in ["keys", "locks", "snapshots", "index", "data/00", "data/ff"] {
        assert!(layout.join(dir).is_dir(), "{dir} missing after create");
    }

    let content = b"hello restic".to_vec();
    let id = restic_id(&content);
    assert_eq!(
        upload(&s, ALICE, &format!("/repo/data/{id}"), content.clone()),
        StatusCode::OK
    );
    assert!(
        layout.join("data").join(&id[..2]).join(&id).is_file(),
        "data files go under data/XX/"
    );
    // No temp file is left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(layout.join("data").join(&id[..2]))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // v2 listing has names and sizes; v1 only names.
    let v2 = client()
        .get(s.url("/repo/data/"))
        .basic_auth("alice", Some("alice-pw"))
        .header("Accept", V2)
        .send()
        .unwrap();
    assert_eq!(v2.headers()["content-type"], V2);
    let listed: serde_json::Value = v2.json().unwrap();
    assert_eq!(listed, serde_json::json!([{ "name": id, "size": 12 }]));
    let v1: serde_json::Value = client()
        .get(s.url("/repo/data/"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v1, serde_json::json!([id]));

    // HEAD gives the length; GET the content.
    let head = client()
        .head(s.url(&format!("/repo/data/{id}")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "12");
    let body = client()
        .get(s.url(&format!("/repo/data/{id}")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], b"hello restic");

    // Overwrite is refused, for everyone.
    assert_eq!(
        upload(&s, ALICE, &format!("/repo/data/{id}"), content.clone()),
        StatusCode::FORBIDDEN
    );

    // Delete, then it is gone.
    let del = client()
        .delete(s.url(&format!("/repo/data/{id}")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    let gone = client()
        .head(s.url(&format!("/repo/data/{id}")))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[test]
fn config_and_root_repository() {
    let s = server_with_users();
    let auth = basic_auth("alice", "alice-pw");
    let head = client()
        .head(s.url("/config"))
        .header("Authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    create_repo(&s, "");
    assert_eq!(
        upload(&s, ALICE, "/config", b"cfg".to_vec()),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(s.dir.path().join("config")).unwrap(), b"cfg");
    assert_eq!(
        upload(&s, ALICE, "/config", b"other".to_vec()),
        StatusCode::FORBIDDEN
    );
    let got = client()
        .get(s.url("/config"))
        .header("Authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), b"cfg");
}

#[test]
fn upload_must_hash_to_its_id() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let before = disk_state(s.dir.path());
    let wrong = format!("/repo/index/{}", restic_id(b"something else"));
    assert_eq!(
        upload(&s, ALICE, &wrong, b"content".to_vec()),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(disk_state(s.dir.path()), before);
}

#[test]
fn uploads_to_a_missing_repository_are_refused() {
    let s = server_with_users();
    let before = disk_state(s.dir.path());
    let path = format!("/nope/keys/{}", restic_id(b"k"));
    assert_eq!(
        upload(&s, ALICE, &path, b"k".to_vec()),
        StatusCode::NOT_FOUND
    );
    assert_eq!(disk_state(s.dir.path()), before);
}

#[test]
fn range_reads_including_at_and_beyond_the_end() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let content: Vec<u8> = (0..100u8).collect();
    let id = restic_id(&content);
    upload(&s, ALICE, &format!("/repo/data/{id}"), content.clone());
    let get = |range: &str| {
        client()
            .get(s.url(&format!("/repo/data/{id}")))
            .basic_auth("alice", Some("alice-pw"))
            .header("Range", range)
            .send()
            .unwrap()
    };
    let r = get("bytes=10-19");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(r.bytes().unwrap().as_ref(), &content[10..20]);

    let r = get("bytes=90-500");
    assert_eq!(
        r.status(),
        StatusCode::PARTIAL_CONTENT,
        "end beyond the file is clamped"
    );
    assert_eq!(r.bytes().unwrap().as_ref(), &content[90..]);

    let r = get("bytes=-5");
    assert_eq!(r.bytes().unwrap().as_ref(), &content[95..]);

    for beyond in ["bytes=100-", "bytes=100-120", "bytes=5000-6000"] {
        let r = get(beyond);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{beyond}");
        assert_eq!(r.headers()["content-range"], "bytes */100");
    }
}

#[test]
fn append_only_user_cannot_delete_or_overwrite_but_may_remove_locks() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let mut written = Vec::new();
    for kind in ["data", "index", "snapshots", "keys", "locks"] {
        let content = format!("{kind} content").into_bytes();
        let id = restic_id(&content);
        assert_eq!(
            upload(&s, APPENDER, &format!("/repo/{kind}/{id}"), content.clone()),
            StatusCode::OK
        );
        written.push((kind, id, content));
    }
    let before = disk_state(s.dir.path());
    for (kind, id, content) in &written {
        if *kind == "locks" {
            continue;
        }
        let del = client()
            .delete(s.url(&format!("/repo/{kind}/{id}")))
            .basic_auth(APPENDER.0, Some(APPENDER.1))
            .send()
            .unwrap();
        assert_eq!(del.status(), StatusCode::FORBIDDEN, "delete {kind}");
        assert_eq!(
            upload(&s, APPENDER, &format!("/repo/{kind}/{id}"), content.clone()),
            StatusCode::FORBIDDEN,
            "overwrite {kind}"
        );
    }
    assert_eq!(
        disk_state(s.dir.path()),
        before,
        "refused requests changed nothing"
    );

    let (_, lock_id, _) = written.iter().find(|(k, _, _)| *k == "locks").unwrap();
    let del = client()
        .delete(s.url(&format!("/repo/locks/{lock_id}")))
        .basic_auth(APPENDER.0, Some(APPENDER.1))
        .send()
        .unwrap();
    assert_eq!(
        del.status(),
        StatusCode::OK,
        "append-only users remove their locks"
    );
    // A normal user may delete data.
    let (_, data_id, _) = &written[0];
    let del = client()
        .delete(s.url(&format!("/repo/data/{data_id}")))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
}

#[test]
fn server_wide_append_only_applies_to_every_user() {
    let s = TestServer::start(|c| c.append_only = true);
    s.users.add("alice", "alice-pw", false).unwrap();
    create_repo(&s, "repo");
    let content = b"k".to_vec();
    let id = restic_id(&content);
    upload(&s, ALICE, &format!("/repo/keys/{id}"), content);
    let del = client()
        .delete(s.url(&format!("/repo/keys/{id}")))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::FORBIDDEN);
}

#[test]
fn credentials_wrong_missing_or_revoked_get_401_and_change_nothing() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let content = b"snap".to_vec();
    let id = restic_id(&content);
    let path = format!("/repo/snapshots/{id}");
    let before = disk_state(s.dir.path());

    let no_auth = client()
        .post(s.url(&path))
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(no_auth.status(), StatusCode::UNAUTHORIZED);
    assert!(no_auth.headers().contains_key("www-authenticate"));
    assert_eq!(
        upload(&s, ("alice", "wrong"), &path, content.clone()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload(&s, ("mallory", "alice-pw"), &path, content.clone()),
        StatusCode::UNAUTHORIZED
    );
    let garbage = client()
        .get(s.url("/repo/keys/"))
        .header("Authorization", "Basic !!!notbase64")
        .send()
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(disk_state(s.dir.path()), before);

    // A user that worked a moment ago is refused right after it is revoked.
    let list = |user: (&str, &str)| {
        client()
            .get(s.url("/repo/keys/"))
            .basic_auth(user.0, Some(user.1))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(list(ALICE), StatusCode::OK);
    assert!(s.users.revoke("alice"));
    assert_eq!(list(ALICE), StatusCode::UNAUTHORIZED);
    assert_eq!(upload(&s, ALICE, &path, content), StatusCode::UNAUTHORIZED);
    assert_eq!(list(APPENDER), StatusCode::OK, "other users are unaffected");
    assert_eq!(disk_state(s.dir.path()), before);
}

#[test]
fn hostile_paths_get_400_and_touch_nothing() {
    let s = server_with_users();
    create_repo(&s, "repo");
    // A file outside the data dir that a traversal would reach.
    let outside = s
        .dir
        .path()
        .parent()
        .unwrap()
        .join(format!("outside-{}", std::process::id()));
    let before = disk_state(s.dir.path());
    let auth = basic_auth("alice", "alice-pw");
    let cases = [
        ("GET", "/../../etc/passwd".to_string()),
        ("GET", "/repo/../../etc/passwd".to_string()),
        ("POST", "/repo/%2e%2e/config".to_string()),
        (
            "POST",
            format!(
                "/..%2f{}/config",
                outside.file_name().unwrap().to_str().unwrap()
            ),
        ),
        ("GET", "//etc/passwd".to_string()),
        ("POST", "/%2Ftmp%2Fx/config".to_string()),
        ("GET", "/repo/secrets/".to_string()),
        ("POST", format!("/repo/bogus/{ID_A}")),
        ("POST", "/repo/data/not-an-id".to_string()),
        ("DELETE", "/repo/keys/ABCDEF".to_string()),
        ("POST", "/repo/.hidden/config".to_string()),
        ("GET", "/repo/data/a/b".to_string()),
    ];
    for (method, path) in cases {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        let (status, text) = raw_request(s.addr(), request.as_bytes());
        assert_eq!(status, 400, "{method} {path}: {text}");
    }
    assert_eq!(disk_state(s.dir.path()), before);
    assert!(!outside.exists());
}

#[test]
fn truncated_upload_leaves_no_file() {
    let s = server_with_users();
    create_repo(&s, "repo");
    let before = disk_state(s.dir.path());
    let content = vec![7u8; 100_000];
    let id = restic_id(&content);
    let head = format!(
        "POST /repo/data/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        basic_auth("alice", "alice-pw"),
        content.len()
    );
    {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&content[..40_000]).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Dropped here: the connection closes mid-body.
    }
    // Give the server a moment to notice and clean up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while disk_state(s.dir.path()) != before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        disk_state(s.dir.path()),
        before,
        "a broken upload leaves no file, not even a temp file"
    );
    // The same upload, complete, then works.
    assert_eq!(
        upload(&s, ALICE, &format!("/repo/data/{id}"), content),
        StatusCode::OK
    );
}

#[test]
fn listing_a_missing_repository_is_404_and_unknown_methods_405() {
    let s = server_with_users();
    let r = client()
        .get(s.url("/missing/data/"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    create_repo(&s, "repo");
    let r = client()
        .put(s.url("/repo/config"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = client()
        .post(s.url("/repo/"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "POST without ?create=true"
    );
}

#[test]
fn stopped_server_refuses_connections() {
    let mut s = server_with_users();
    let addr = s.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    s.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "connections are refused after stop"
    );
}
