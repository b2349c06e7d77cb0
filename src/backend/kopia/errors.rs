//! What a failed kopia process means for the verdict, decided in this order:
//!
//! 1. Evidence ([`classify_with`]): the fault proxy disturbed the client's
//!    connections while the call ran, or the server was down — the call
//!    says nothing about the data, whatever kopia wrote (a client killed by
//!    `kill-client` dies by SIGKILL, and that is this).
//! 2. How the process ended: killed by a signal, or SIGKILLed at its
//!    deadline (a hang) — the backend's own failure, whatever it wrote.
//! 3. Text: kopia ends every failure with exit code 1 and a wrapped Go
//!    error (`ERROR …: …`), so its fixed messages are the only type left.
//!    They are listed once, in [`MESSAGES`], each with a test.

use super::process::{Exit, Output};
use crate::engine::traits::BackendError;

/// What a kopia message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// The snapshot asked for does not exist.
    SnapshotNotFound,
    /// The server refused the user (deleted, wrong password) or the
    /// connection broke: the request did not get through.
    NotThrough,
    /// Data the repository should hold is missing or unreadable.
    Data,
    /// `server user add` of a user the repository already has.
    UserExists,
    /// `server acl enable` on a repository whose ACLs are on.
    AclEnabled,
    /// snapstorm's own file system (restore target, cache, config).
    Local,
}

/// kopia's fixed messages (v0.23, the file each comes from in a comment);
/// the first the error text contains, case-insensitively, decides. Every
/// entry has a test below.
pub const MESSAGES: [(&str, Said); 25] = [
    // First: a refusal or a broken connection wrapped in any other message
    // ("unable to find snapshots by ID x: … access denied") says nothing
    // about the data.
    // internal/server/grpc_session.go: a user the server does not know
    ("access denied", Said::NotThrough),
    ("missing credentials", Said::NotThrough),
    // gRPC and net/http transport errors
    ("connection refused", Said::NotThrough),
    ("connection reset by peer", Said::NotThrough),
    ("context deadline exceeded", Said::NotThrough),
    ("unexpected eof", Said::NotThrough),
    // snapshot/manager.go ErrSnapshotNotFound
    ("snapshot not found", Said::SnapshotNotFound),
    // cli/command_snapshot_delete.go: no manifest and no root object with the id
    ("no snapshots matched", Said::SnapshotNotFound),
    (
        "error deleting snapshots by root id",
        Said::SnapshotNotFound,
    ),
    // snapshot/snapshotfs/objref.go: an id that is neither manifest nor object
    ("unable to find snapshots by id", Said::SnapshotNotFound),
    ("error parsing root object id", Said::SnapshotNotFound),
    ("can't parse object id", Said::SnapshotNotFound),
    // repo/content/index: an id of the wrong length for the repository's
    // hash (a 64-hex id where kopia's ids are 32) names nothing it has
    ("invalid content id", Said::SnapshotNotFound),
    // cli/command_snapshot_restore.go: an id that matches no snapshot
    ("no snapshots contain data for", Said::SnapshotNotFound),
    // repo/object/object_manager.go, repo/content/content_manager.go,
    // repo/blob/storage.go
    ("object not found", Said::Data),
    ("content not found", Said::Data),
    ("blob not found", Said::Data),
    // snapshot/snapshotfs/snapshot_verifier.go: an object whose pack is gone
    ("backed by missing blob", Said::Data),
    // repo/content/content_manager.go: a content whose bytes are not what
    // its id says (a flipped pack)
    ("invalid checksum", Said::Data),
    // internal/user/user_manager.go ErrUserAlreadyExists
    ("user already exists", Said::UserExists),
    // cli/command_acl_enable.go
    ("acls already enabled", Said::AclEnabled),
    ("no space left on device", Said::Local),
    ("read-only file system", Said::Local),
    ("file name too long", Said::Local),
    ("permission denied", Said::Local),
];

/// What kopia said, by the first known message the text contains.
pub fn said(text: &str) -> Option<Said> {
    crate::backend::process::first_message(&MESSAGES, text)
}

/// Classifies a kopia `command` (`snapshot create`…) that did not succeed.
pub fn classify(command: &str, output: &Output) -> BackendError {
    let text = format!("kopia {command}: {}", explanation(output));
    match output.exit {
        Exit::Signal(_) | Exit::TimedOut(_) => return BackendError::Failed(text),
        Exit::Code(_) => {}
    }
    match said(&output.stderr) {
        Some(Said::SnapshotNotFound | Said::Data) => BackendError::Data(text),
        Some(Said::NotThrough) => BackendError::NotThrough(text),
        Some(Said::Local) => BackendError::Local(text),
        Some(Said::UserExists | Said::AclEnabled) | None => BackendError::Failed(text),
    }
}

/// Classifies as [`classify`] does, with the proxy's evidence first:
/// `disturbed` says why the call's connections may not have got through.
pub fn classify_with(command: &str, output: &Output, disturbed: Option<String>) -> BackendError {
    match disturbed {
        Some(why) => {
            BackendError::NotThrough(format!("kopia {command}: {why}: {}", explanation(output)))
        }
        None => classify(command, output),
    }
}

/// The process's own words: how it ended and the last lines it wrote.
pub fn explanation(output: &Output) -> String {
    output.explanation(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::traits::ErrorClass;
    use std::time::Duration;

    fn failed(stderr: &str) -> Output {
        Output {
            exit: Exit::Code(1),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        }
    }

    fn is(stderr: &str, expected: ErrorClass) {
        assert_eq!(
            classify("snapshot restore", &failed(stderr)).class(),
            expected,
            "{stderr}"
        );
    }

    // Each message as kopia wraps it (`errors.Wrap` joins with ": ").
    #[test]
    fn a_missing_manifest_is_data() {
        is(
            "ERROR error loading snapshot 0a1b: snapshot not found",
            ErrorClass::Data,
        );
    }
    #[test]
    fn a_delete_of_an_id_nothing_has_is_data() {
        is(
            "ERROR error deleting snapshots by root ID 0000: no snapshots matched 0000",
            ErrorClass::Data,
        );
        is(
            "ERROR error deleting snapshots by root ID 0000: invalid object ID: malformed",
            ErrorClass::Data,
        );
    }
    #[test]
    fn a_restore_of_an_id_nothing_has_is_data() {
        is(
            "ERROR unable to get filesystem entry: unable to find snapshots by ID 0000: not found",
            ErrorClass::Data,
        );
        is(
            "ERROR unable to get filesystem entry: can't parse object ID zz: malformed",
            ErrorClass::Data,
        );
        is(
            "ERROR unable to get filesystem entry: error parsing root object ID: malformed",
            ErrorClass::Data,
        );
    }
    /// What kopia 0.23.1 printed for ids it never had (captured from the
    /// program, `snapshot restore ID DIR`).
    #[test]
    fn ids_kopia_0_23_1_never_had_are_data() {
        let zeros = "0".repeat(64);
        is(
            &format!(
                "error restoring: restore error: error copying: copy file: error creating file: unable to open snapshot file for /t/out: unable to open object: {zeros}: unexpected content error: error getting content info from index: error getting id {zeros} from index shard: invalid content ID: \"{zeros}\" (33 vs 17)"
            ),
            ErrorClass::Data,
        );
        let short = "0".repeat(32);
        is(
            &format!(
                "error restoring: restore error: error copying: copy file: error creating file: unable to open snapshot file for /t/out: unable to open object: {short}: content {short} not found: object not found"
            ),
            ErrorClass::Data,
        );
        is("no snapshots contain data for zz", ErrorClass::Data);
        is(
            &format!("error deleting snapshots by root ID {zeros}: no snapshots matched {zeros}"),
            ErrorClass::Data,
        );
    }

    #[test]
    fn a_refused_user_did_not_get_through() {
        is(
            "ERROR error connecting to API server: rpc error: code = PermissionDenied desc = access denied for client-1@snapstorm",
            ErrorClass::NotThrough,
        );
        is(
            "rpc error: code = PermissionDenied desc = missing credentials",
            ErrorClass::NotThrough,
        );
        // Wrapped in a message about a snapshot: still not through.
        is(
            "ERROR unable to get filesystem entry: unable to find snapshots by ID b4c1: rpc error: code = PermissionDenied desc = access denied for client-1@snapstorm",
            ErrorClass::NotThrough,
        );
    }
    #[test]
    fn a_broken_connection_did_not_get_through() {
        is(
            "dial tcp 127.0.0.1:4711: connect: connection refused",
            ErrorClass::NotThrough,
        );
        is("read tcp: connection reset by peer", ErrorClass::NotThrough);
        is(
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
            ErrorClass::NotThrough,
        );
        is(
            "error reading from server: unexpected EOF",
            ErrorClass::NotThrough,
        );
    }
    #[test]
    fn missing_repository_data_is_data() {
        is(
            "ERROR error restoring: unable to open object: object not found",
            ErrorClass::Data,
        );
        is("error getting content: content not found", ErrorClass::Data);
        is("error reading pack: BLOB not found", ErrorClass::Data);
    }
    /// What kopia 0.23.1 printed after a pack was flipped and after one was
    /// deleted (captured from the program: `snapshot restore`, `snapshot
    /// verify --verify-files-percent=100`).
    #[test]
    fn a_flipped_or_missing_pack_of_kopia_0_23_1_is_data() {
        is(
            "error restoring: restore error: copy file: error creating file: cannot write data to file \"/tmp/kx/r1/f1\": unexpected content error: invalid checksum at p5c61ed540d73f73add8e114ce65a0153-s671d563724c3e73b147 offset 3000060 length 2356926/2356926: decrypt: unable to decrypt content: cipher: message authentication failed",
            ErrorClass::Data,
        );
        is(
            "error processing root@vm:/tmp/kx/data@2026-12-02 15:23:52 UTC/f4: object 483d098253951771aaf0df2399449a13 is backed by missing blob pf21f11027f2aab8bad4c3dce51e541eb-sf73b3d5713ba8dd5147",
            ErrorClass::Data,
        );
        is(
            "error restoring: restore error: copy file: error creating file: unable to open snapshot file for /tmp/kx/r2/f4: unable to open object: 483d098253951771aaf0df2399449a13: unexpected content error: error getting cached content from blob \"pf21f11027f2aab8bad4c3dce51e541eb-sf73b3d5713ba8dd5147\": failed to get blob with ID pf21f11027f2aab8bad4c3dce51e541eb-sf73b3d5713ba8dd5147: BLOB not found",
            ErrorClass::Data,
        );
    }
    #[test]
    fn a_disturbed_call_did_not_get_through_whatever_kopia_said() {
        let output = failed("error restoring: content not found");
        let error = classify_with(
            "snapshot restore",
            &output,
            Some("the proxy dropped a request (network fault)".into()),
        );
        assert_eq!(error.class(), ErrorClass::NotThrough);
        assert!(error.to_string().contains("network fault"), "{error}");
        assert_eq!(
            classify_with("snapshot restore", &output, None).class(),
            ErrorClass::Data
        );
    }
    #[test]
    fn user_and_acl_answers_are_recognised_and_no_verdict() {
        assert_eq!(
            said("ERROR error getting new user profile: user already exists"),
            Some(Said::UserExists)
        );
        assert_eq!(said("ERROR ACLs already enabled"), Some(Said::AclEnabled));
        is("ERROR user already exists", ErrorClass::Other);
    }
    #[test]
    fn snapstorms_own_file_system_is_local() {
        is("mkdir /t/r: no space left on device", ErrorClass::Local);
        is("open /t/r: read-only file system", ErrorClass::Local);
        is("open /t/r/x: file name too long", ErrorClass::Local);
        is("open /t/r: permission denied", ErrorClass::Local);
    }
    #[test]
    fn anything_else_is_the_backends_own_failure() {
        is("ERROR something new", ErrorClass::Other);
    }

    #[test]
    fn how_the_process_ended_decides_before_the_text() {
        let killed = Output {
            exit: Exit::Signal(9),
            stdout: String::new(),
            stderr: "snapshot not found".into(),
        };
        assert_eq!(
            classify("snapshot create", &killed).class(),
            ErrorClass::Other
        );
        let hung = Output {
            exit: Exit::TimedOut(Duration::from_secs(1)),
            ..killed.clone()
        };
        let error = classify("snapshot create", &hung);
        assert_eq!(error.class(), ErrorClass::Other);
        assert!(
            error.to_string().contains("still running after 1s"),
            "{error}"
        );
    }

    #[test]
    fn every_message_is_lower_case_so_it_can_match() {
        for (message, _) in MESSAGES {
            assert_eq!(message, message.to_lowercase());
        }
    }
}
