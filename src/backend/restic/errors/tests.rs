//! Tests of `errors`.

use super::*;
use crate::backend::embedded::evidence::Disturbance;
use crate::engine::traits::ErrorClass;
use std::time::Duration;

fn failed(stderr: &str) -> Output {
    exited(1, stderr)
}

fn exited(code: i32, stderr: &str) -> Output {
    Output {
        exit: Exit::Code(code),
        stdout: String::new(),
        stderr: stderr.to_owned(),
    }
}

/// A call of `user` (empty: a process that sends no request), starting now.
fn call<'a>(evidence: &'a Evidence, user: &'a str, command: &'a str) -> CallContext<'a> {
    CallContext {
        evidence,
        user,
        started: Instant::now(),
        command,
    }
}

fn class(evidence: &Evidence, command: &str, output: &Output) -> ErrorClass {
    call(evidence, "client-2", command).classify(output).class()
}

fn is(stderr: &str, expected: ErrorClass) {
    is_output(&failed(stderr), expected);
}

fn is_output(output: &Output, expected: ErrorClass) {
    assert_eq!(
        class(&Evidence::new(), "backup", output),
        expected,
        "{output:?}"
    );
}

// Captured from restic 0.14.0: `forget` while a backup held its lock.
const LOCKED_0_14: &str = "unable to create lock in backend: repository is already locked by PID 15996 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-02 07:50:20 (4.4419485s ago)\nstorage ID 34c24b1e\nthe `unlock` command can be used to remove stale locks\n";
// Captured from restic 0.18.1, the same, with --json (exit code 11).
const LOCKED_0_18_JSON: &str = r#"{"message_type":"exit_error","code":11,"message":"unable to create lock in backend: repository is already locked by PID 16505 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-02 07:50:29 (4.895737324s ago)\nstorage ID 4a2242b3\nthe `unlock` command can be used to remove stale locks"}
"#;
// Captured from restic 0.18.1 without --json (exit code 11).
const LOCKED_0_18: &str = "repo already locked, waiting up to 0s for the lock\nunable to create lock in backend: repository is already locked by PID 16505 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-02 07:50:29 (4.36375665s ago)\nstorage ID 4a2242b3\nthe `unlock` command can be used to remove stale locks\n";

#[test]
fn a_lock_held_by_another_process_is_a_race() {
    is(LOCKED_0_14, ErrorClass::Raced);
    is_output(&exited(11, LOCKED_0_18), ErrorClass::Raced);
    is_output(&exited(11, LOCKED_0_18_JSON), ErrorClass::Raced);
    assert_eq!(said_by(&failed(LOCKED_0_14)), Some(Said::Locked));
    // 0.17 on: the exit code says it, whatever the words.
    assert_eq!(said_by(&exited(11, "")), Some(Said::Locked));
    // An exclusive lock (a prune's, a forget's), as both versions word it.
    is(
        "unable to create lock in backend: repository is already locked exclusively by PID 4711 on vm by root (UID 0, GID 0)",
        ErrorClass::Raced,
    );
}

#[test]
fn the_lock_holder_is_read_from_both_versions() {
    let holder = LockHolder {
        pid: 15996,
        host: "vm".into(),
        exclusive: false,
    };
    assert_eq!(lock_holder(LOCKED_0_14), Some(holder));
    let holder = LockHolder {
        pid: 16505,
        host: "vm".into(),
        exclusive: false,
    };
    assert_eq!(
        lock_holder(&final_words(LOCKED_0_18_JSON)),
        Some(holder.clone())
    );
    assert_eq!(lock_holder(LOCKED_0_18), Some(holder));
    assert_eq!(
        lock_holder(
            "repository is already locked exclusively by PID 7 on host-a.example by root (UID 0, GID 0)"
        ),
        Some(LockHolder {
            pid: 7,
            host: "host-a.example".into(),
            exclusive: true,
        })
    );
    assert_eq!(lock_holder("Fatal: something else"), None);
    assert_eq!(
        lock_holder("repository is already locked by PID x on h by u"),
        None
    );
}

#[test]
fn a_json_exit_error_is_read_as_its_message() {
    // Captured from restic 0.18.1 (`backup --json` of an empty directory).
    let json = r#"{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: snapshot is empty"}"#;
    assert_eq!(
        final_words(json),
        "Fatal: unable to save snapshot: snapshot is empty"
    );
    let output = failed(json);
    // The lock's words, without restic's hint at `unlock`.
    let locked = call(&Evidence::new(), "client-1", "forget")
        .classify(&exited(11, LOCKED_0_18_JSON))
        .to_string();
    assert!(
        locked.starts_with("restic forget: unable to create lock in backend: repository is already locked by PID 16505"),
        "{locked}"
    );
    assert!(
        locked.ends_with("storage ID 4a2242b3 (exit code 11)"),
        "{locked}"
    );
    let error = call(&Evidence::new(), "client-1", "backup").classify(&output);
    assert!(matches!(error, BackendError::NothingToDo(_)), "{error:?}");
}

#[test]
fn a_json_error_line_is_read_as_its_words() {
    // Captured from restic 0.18.1: `restore --json` of a pack with 16
    // bytes flipped (`ui/restore/json.go`, `errorUpdate`; Go escapes `<`).
    let stderr = r#"{"message_type":"error","error":{"message":"decrypting blob \u003cdata/1cbbc2f6\u003e from 7e8653b3 failed: ciphertext verification failed"},"during":"restore","item":"/big"}
{"message_type":"exit_error","code":1,"message":"Fatal: There were 1 errors\n"}
"#;
    assert_eq!(
        final_words(stderr),
        "/big: decrypting blob <data/1cbbc2f6> from 7e8653b3 failed: ciphertext verification failed\nFatal: There were 1 errors\n"
    );
    is(stderr, ErrorClass::Data);
    // An index file gone in a GC's race, in JSON: its name still counts.
    let evidence = Evidence::new();
    let call = call(&evidence, "client-2", "restore");
    drop(evidence.gc_running());
    let json = r#"{"message_type":"exit_error","code":1,"message":"Fatal: \u003cindex/4418130495\u003e does not exist"}"#;
    assert_eq!(call.classify(&failed(json)).class(), ErrorClass::Raced);
    // A status line is not words.
    let status = r#"{"message_type":"status","percent_done":0.5}"#;
    assert_eq!(final_words(status), status);
}

#[test]
fn notices_of_retries_are_not_the_verdict() {
    // Captured from restic 0.18.1: a server that refused connections
    // for a while, then a short id it does not have.
    let stderr = "Stat(<config/>) returned error, retrying after 704.037503ms: Head \"http://client-1:***@127.0.0.1:1/r18/config\": dial tcp 127.0.0.1:1: connect: connection refused\nStat(<config/>) operation successful after 1 retries\nFatal: failed to find snapshot: no matching ID found for prefix \"00000000\"\n";
    assert_eq!(said(&final_words(stderr)), Some(Said::SnapshotNotFound));
    is(stderr, ErrorClass::Data);
}

#[test]
fn a_missing_snapshot_is_data() {
    // restic 0.14.0, `restore` of an id it does not have.
    is(
        "invalid id \"abcdef12\": no matching ID found for prefix \"abcdef12\"",
        ErrorClass::Data,
    );
    // restic 0.18.1 through snapstorm's server: a whole id, a short one.
    is(
        "Load(<snapshot/0000000000>, 0, 0) failed: <snapshot/0000000000> does not exist\nLoad(<snapshot/0000000000>, 0, 0) failed: <snapshot/0000000000> does not exist\nFatal: failed to find snapshot: failed to load snapshot [null]: <snapshot/0000000000> does not exist\n",
        ErrorClass::Data,
    );
    is(
        "Fatal: failed to find snapshot: no matching ID found for prefix \"00000000\"\n",
        ErrorClass::Data,
    );
}

#[test]
fn forget_warns_of_an_id_it_did_not_find() {
    // `forget` of an id the repository does not have: a warning and
    // exit code 0, in both versions.
    let v0_14 = "Ignoring \"0000000000000000000000000000000000000000000000000000000000000000\": no matching ID found for prefix \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let v0_18 = "Load(<snapshot/0000000000>, 0, 0) failed: <snapshot/0000000000> does not exist\nLoad(<snapshot/0000000000>, 0, 0) failed: <snapshot/0000000000> does not exist\nIgnoring \"0000000000000000000000000000000000000000000000000000000000000000\": failed to load snapshot [null]: <snapshot/0000000000> does not exist\n";
    for stderr in [v0_14, v0_18] {
        assert_eq!(said_by(&exited(0, stderr)), Some(Said::SnapshotNotFound));
    }
}

#[test]
fn a_refused_user_did_not_get_through() {
    // restic 0.14.0.
    is(
        "Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\nIs there a repository at the following location?\nrest:http://client-2:***@127.0.0.1:1/repo/",
        ErrorClass::NotThrough,
    );
    // restic 0.18.1, `snapshots --json` (401 is final there: no retry).
    is(
        "Stat(<config/>) failed: unexpected HTTP response (401): 401 Unauthorized\n{\"message_type\":\"exit_error\",\"code\":1,\"message\":\"Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\\nIs there a repository at the following location?\\nrest:http://client-1:***@127.0.0.1:18765/r18/\"}\n",
        ErrorClass::NotThrough,
    );
    is(
        "Save(<lock/12>) returned error: unexpected HTTP response (403): 403 Forbidden",
        ErrorClass::NotThrough,
    );
}
#[test]
fn a_refused_connection_did_not_get_through() {
    // restic 0.14.0 (0.18.1 retries these for 15 minutes, its words
    // the same: Go's net/http).
    is(
        "Fatal: unable to open config file: client.Head: Head \"http://client-2:***@127.0.0.1:1/repo/config\": dial tcp 127.0.0.1:1: connect: connection refused",
        ErrorClass::NotThrough,
    );
    is(
        "read tcp 127.0.0.1:4->127.0.0.1:5: read: connection reset by peer",
        ErrorClass::NotThrough,
    );
    is(
        "Post \"http://x/repo/data/ab\": unexpected EOF",
        ErrorClass::NotThrough,
    );
    is(
        "Fatal: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
        ErrorClass::NotThrough,
    );
}
#[test]
fn a_404_on_an_index_file_is_a_race_with_a_gc_and_lost_data_without() {
    // `cat index` of an index file deleted after it was listed:
    // restic 0.14.0 (after ten retries) and restic 0.18.1 (no retry).
    let retry = "Load(<index/4122a5381e>, 0, 0) returned error, retrying after 552.330144ms: <index/4122a5381e> does not exist\n";
    let v0_14 = format!("{}<index/4122a5381e> does not exist\n", retry.repeat(10));
    let v0_18 = "Load(<index/4418130495>, 0, 0) failed: <index/4418130495> does not exist\nLoad(<index/4418130495>, 0, 0) failed: <index/4418130495> does not exist\n<index/4418130495> does not exist\n";
    for stderr in [v0_14.as_str(), v0_18] {
        let evidence = Evidence::new();
        assert_eq!(
            class(&evidence, "restore", &failed(stderr)),
            ErrorClass::Data
        );
        let call = call(&evidence, "client-2", "restore");
        drop(evidence.gc_running());
        assert_eq!(call.classify(&failed(stderr)).class(), ErrorClass::Raced);
    }
    // A pack that is gone (`restore`): restic 0.14.0, then 0.18.1.
    let evidence = Evidence::new();
    let call = call(&evidence, "client-2", "restore");
    drop(evidence.gc_running());
    for pack_gone in [
        "ignoring error for /big: StreamPack: <data/8fd552dc80> does not exist\nignoring error for /f: StreamPack: <data/8fd552dc80> does not exist\nignoring error for /big: UtimesNano: no such file or directory\nignoring error for /f: UtimesNano: no such file or directory\nFatal: There were 4 errors\n",
        "Load(<data/7e8653b3b0>, 3000200, 0) failed: <data/7e8653b3b0> does not exist\nignoring error for /big: ReadFull(<data/7e8653b3b0>): <data/7e8653b3b0> does not exist\nFatal: There were 3 errors\n",
    ] {
        assert_eq!(
            call.classify(&failed(pack_gone)).class(),
            ErrorClass::Data,
            "a GC never removes a pack in use: {pack_gone}"
        );
    }
}
#[test]
fn no_repository_is_data() {
    // restic 0.18.1 (exit code 10) for a repository without a config.
    let output = exited(
        10,
        "Fatal: repository does not exist: unable to open config file: stat nothere18/config: no such file or directory\nIs there a repository at the following location?\nnothere18\n",
    );
    assert_eq!(said_by(&output), Some(Said::FileNotFound));
    is_output(&output, ErrorClass::Data);
}
#[test]
fn a_500_nobody_injected_is_the_servers_failure() {
    is(
        "Save(<data/ab>) returned error: unexpected HTTP response (500): 500 Internal Server Error",
        ErrorClass::Other,
    );
}
#[test]
fn damaged_data_is_data() {
    // restic 0.14.0, then 0.18.1: a pack with 16 bytes flipped.
    is(
        "ignoring error for /big: ciphertext verification failed\nFatal: There were 1 errors\n",
        ErrorClass::Data,
    );
    is(
        "ignoring error for /big: decrypting blob <data/1cbbc2f6> from 7e8653b3 failed: ciphertext verification failed\nFatal: There were 1 errors\n",
        ErrorClass::Data,
    );
    // Both: every index file gone.
    is(
        "ignoring error for /: id 57217ab25be04627527e76167c58955c9f5e6d1ca19e983fb6acc88a44d22840 not found in repository\nFatal: There were 2 errors\n",
        ErrorClass::Data,
    );
    is("id 5f3e2a not found in index", ErrorClass::Data);
    is(
        "Pack ID does not match, want 1a2b, got 3c4d",
        ErrorClass::Data,
    );
    is("invalid data returned", ErrorClass::Data);
    is(
        "The index references 1 needed pack files which are missing from the repository:\nd3e28921\nFatal: packs from index missing in repo",
        ErrorClass::Data,
    );
}
#[test]
fn the_local_file_system_is_local() {
    is("open /t/f: no space left on device", ErrorClass::Local);
    is("mkdir /t: read-only file system", ErrorClass::Local);
    is("write /t/f: disk quota exceeded", ErrorClass::Local);
    is("open /t/xxxx: file name too long", ErrorClass::Local);
    is("open /t/f: permission denied", ErrorClass::Local);
}
#[test]
fn an_empty_source_is_nothing_to_do() {
    let evidence = Evidence::new();
    // restic 0.14.0, and 0.18.1 with --json: both refuse.
    for stderr in [
        "Fatal: unable to save snapshot: snapshot is empty",
        r#"{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: snapshot is empty"}"#,
    ] {
        let error = call(&evidence, "client-1", "backup").classify(&failed(stderr));
        assert!(
            matches!(&error, BackendError::NothingToDo(why) if why.starts_with("nothing to snapshot")),
            "{error:?}"
        );
    }
}
#[test]
fn an_empty_source_is_nothing_to_do_whatever_befell_the_requests() {
    // As restic 0.18.1 ended a backup in a measured run while the proxy
    // failed some of its requests: lock files another process removed
    // meanwhile, then the empty source.
    let stderr = "Load(<lock/44f1167473>, 0, 0) failed: <lock/44f1167473> does not exist\nLoad(<lock/44f1167473>, 0, 0) failed: <lock/44f1167473> does not exist\n{\"message_type\":\"exit_error\",\"code\":1,\"message\":\"Fatal: unable to save snapshot: snapshot is empty\"}\n";
    assert_eq!(
        final_words(stderr),
        "Fatal: unable to save snapshot: snapshot is empty"
    );
    let evidence = Evidence::new();
    let call = call(&evidence, "client-4", "backup");
    evidence.request("client-4", Disturbance::InjectedError);
    let error = call.classify(&failed(stderr));
    assert!(matches!(error, BackendError::NothingToDo(_)), "{error:?}");
    // A lock file gone is no verdict: the rest of the words decide.
    assert_eq!(
        said(&final_words(
            "Load(<lock/44f1167473>, 0, 0) failed: <lock/44f1167473> does not exist\nFatal: something new"
        )),
        None
    );
}

#[test]
fn anything_else_is_the_backends_own_failure() {
    is("Fatal: something new", ErrorClass::Other);
}

#[test]
fn every_message_has_a_test() {
    let tested = include_str!("tests.rs").to_lowercase();
    for (message, _) in MESSAGES {
        let message = message.to_lowercase().replace('"', "\\\"");
        assert!(tested.contains(&message), "no test names {message:?}");
    }
}

#[test]
fn how_the_process_ended_decides_before_the_text() {
    let evidence = Evidence::new();
    let killed = Output {
        exit: Exit::Signal(9),
        stdout: String::new(),
        stderr: "no matching ID found".into(),
    };
    assert_eq!(class(&evidence, "backup", &killed), ErrorClass::Other);
    let hung = Output {
        exit: Exit::TimedOut(Duration::from_secs(1)),
        ..killed.clone()
    };
    assert_eq!(class(&evidence, "backup", &hung), ErrorClass::Other);
    let unreadable = Output {
        exit: Exit::Code(3),
        ..killed.clone()
    };
    assert_eq!(class(&evidence, "backup", &unreadable), ErrorClass::Local);
    assert_eq!(class(&evidence, "restore", &unreadable), ErrorClass::Data);
}

#[test]
fn a_process_that_sent_no_request_is_judged_by_its_words() {
    let evidence = Evidence::new();
    let call = call(&evidence, "", "prune");
    evidence.server_stopped();
    let missing =
        failed("The index references 1 needed pack files which are missing from the repository");
    assert_eq!(call.classify(&missing).class(), ErrorClass::NotThrough);
    assert_eq!(call.classify_local(&missing).class(), ErrorClass::Data);
}

#[test]
fn evidence_comes_first() {
    let evidence = Evidence::new();
    let call = call(&evidence, "client-2", "backup");
    let killed = Output {
        exit: Exit::Signal(9),
        stdout: String::new(),
        stderr: String::new(),
    };
    evidence.request("client-1", Disturbance::CutOff);
    assert_eq!(call.classify(&killed).class(), ErrorClass::Other);
    evidence.request("client-2", Disturbance::CutOff);
    let error = call.classify(&killed);
    assert_eq!(error.class(), ErrorClass::NotThrough);
    assert!(error.to_string().contains("kill-client"), "{error}");
}

fn holder(user: &str, started: Instant, ended: Option<Instant>) -> ProcessRecord {
    ProcessRecord {
        pid: 15996,
        user: user.into(),
        started,
        ended,
    }
}

#[test]
fn a_lock_wait_is_the_doing_of_what_disturbed_its_holder() {
    let evidence = Evidence::new();
    let holder_started = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    evidence.request("client-2", Disturbance::Dropped);
    std::thread::sleep(Duration::from_millis(2));
    let waiter = call(&evidence, "client-4", "forget");
    let locked = failed(LOCKED_0_14);
    let running = holder("client-2", holder_started, None);
    match waiter.gave_up_waiting(&locked, Some(&running)) {
        BackendError::HeldUp { by, since, why } => {
            assert_eq!(by, ClientId(2));
            assert_eq!(since, holder_started);
            assert!(why.starts_with("held up "), "{why}");
            assert!(
                why.contains(" s by the lock of client-2's restic process (PID 15996, running for"),
                "{why}"
            );
            assert!(
                why.contains("the proxy dropped a request (network fault)"),
                "{why}"
            );
            assert!(
                why.contains("restic forget: unable to create lock"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Its lock left behind by a process that ended after the fault cut it off.
    let ended = holder("client-2", holder_started, Some(Instant::now()));
    let error = waiter.gave_up_waiting(&locked, Some(&ended));
    assert_eq!(error.class(), ErrorClass::NotThrough);
    assert!(
        error.to_string().contains("its lock left behind"),
        "{error}"
    );
}

#[test]
fn a_lock_wait_on_an_undisturbed_holder_is_a_race() {
    let evidence = Evidence::new();
    // Another client's trouble, and the holder's after it ended, are not the holder's.
    evidence.request("client-3", Disturbance::Dropped);
    let holder_started = Instant::now();
    let ended = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    evidence.request("client-2", Disturbance::Dropped);
    let waiter = call(&evidence, "client-4", "forget");
    let locked = failed(LOCKED_0_14);
    let long_backup = holder("client-2", holder_started, Some(ended));
    let error = waiter.gave_up_waiting(&locked, Some(&long_backup));
    assert_eq!(error.class(), ErrorClass::Raced, "{error}");
    assert!(
        error.to_string().contains("client-2's restic process"),
        "{error}"
    );
    // The GC's prune is raced, whatever befell requests.
    let gc = holder(super::super::GC_USER, holder_started, None);
    evidence.server_stopped();
    evidence.server_serving();
    let later = call(&evidence, "client-4", "forget");
    assert_eq!(
        later.gave_up_waiting(&locked, Some(&gc)).class(),
        ErrorClass::Raced
    );
    // A holder no process of the run is: locked out, not raced.
    assert_eq!(
        later.gave_up_waiting(&locked, None).class(),
        ErrorClass::LockedOut
    );
}

#[test]
fn a_waiter_whose_own_requests_were_disturbed_did_not_get_through() {
    let evidence = Evidence::new();
    let waiter = call(&evidence, "client-4", "forget");
    evidence.request("client-4", Disturbance::InjectedError);
    let error = waiter.gave_up_waiting(&failed(LOCKED_0_14), None);
    assert!(matches!(error, BackendError::NotThrough(_)), "{error:?}");
    let undisturbed = holder("client-2", Instant::now(), None);
    let error = waiter.gave_up_waiting(&failed(LOCKED_0_14), Some(&undisturbed));
    assert!(matches!(error, BackendError::NotThrough(_)), "{error:?}");
}

#[test]
fn the_holder_comes_before_the_waiters_own_requests() {
    // The server down for everyone while the waiter waited: what held
    // the lock is the cause, and its client is the one judged.
    let evidence = Evidence::new();
    let holder_started = Instant::now();
    let waiter = call(&evidence, "client-4", "forget");
    evidence.server_stopped();
    evidence.server_serving();
    let running = holder("client-2", holder_started, None);
    let error = waiter.gave_up_waiting(&failed(LOCKED_0_14), Some(&running));
    assert!(
        matches!(
            &error,
            BackendError::HeldUp {
                by: ClientId(2),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("the server was down"), "{error}");
}

/// restic's backup loads every snapshot listed to find its parent: one
/// another client deleted meanwhile is a 404, which the proxy saw, so the
/// failed backup raced that delete; nothing is missing.
#[test]
fn a_snapshot_another_client_deleted_under_a_backup_is_a_race() {
    let evidence = Evidence::new();
    let id = "3fc01b5fe6a07e8c3fd1a3c5e8d6a3dc6a0e1b0e07bb2b4c79a3b4b4bd1c2a7f";
    let backup = call(&evidence, "client-2", "backup");
    evidence.deleted("client-3", &format!("/bucket/s3/snapshots/{id}"));
    crate::server::RequestObserver::not_found(
        &evidence,
        "client-2",
        &format!("/bucket/s3/snapshots/{id}"),
    );
    let output = failed(
        "Load(<snapshot/3fc01b5fe6>, 0, 0) failed: The specified key does not exist.\nError loading snapshot 3fc01b5f: failed to load snapshot 3fc01b5f: The specified key does not exist.",
    );
    let error = backup.classify(&output);
    assert_eq!(error.class(), ErrorClass::Raced, "{error}");
    assert!(
        error
            .to_string()
            .contains("client-3 deleted snapshot 3fc01b5f"),
        "{error}"
    );
    // Without the delete, the same words are missing data.
    let alone = Evidence::new();
    assert_eq!(
        call(&alone, "client-2", "backup").classify(&output).class(),
        ErrorClass::Data
    );
}
