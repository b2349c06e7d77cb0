//! Tests of the kopia server.

use super::*;
use crate::backend::kopia::starting::{FIRST_LISTEN, server_start_args};

/// A self-signed certificate (`openssl req -x509 -newkey ec -pkeyopt
/// ec_paramgen_curve:P-256 -subj /CN=127.0.0.1`), the PEM kind kopia's
/// `tlsutil.WriteCertificateToFile` writes.
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUAe/DyOuUYd3yootHZ6tZp3uCU2YwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMB4XDTI2MTEyNjAxMjQ0OVoXDTM2MTEyMzAx
MjQ0OVowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEbVxTfXRy1fPKq+OPvfkEZ4x+Y9+usqHyxz6GpRRoaRAEPBUUEP368RK4
+ErXy4xcyhjLHTK44ImgimiVYvLsXqNTMFEwHQYDVR0OBBYEFJAwPGwfoXMhP2m8
EShyfpUF0dfGMB8GA1UdIwQYMBaAFJAwPGwfoXMhP2m8EShyfpUF0dfGMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAOsi3oNvLHRIkszwsNniC1D2
XxHFOPeMR8JgAoo6xe5iAiEA240BkGYKIycNm8UxSMq4fmgCL9FFSZDq+/GOGF/R
nYE=
-----END CERTIFICATE-----
";

#[test]
fn the_fingerprint_is_the_sha256_of_the_certificates_der() {
    // `openssl x509 -noout -fingerprint -sha256`, lower case, no colons.
    assert_eq!(
        certificate_fingerprint(CERT).as_deref(),
        Some("90980844b8ce28a14f8de4f31bffd5670fd9f626e3e68444f39dbeae06f61acf")
    );
    assert_eq!(
        certificate_fingerprint(&format!("junk\n{CERT}junk\n")).as_deref(),
        certificate_fingerprint(CERT).as_deref()
    );
    assert_eq!(certificate_fingerprint("no certificate"), None);
}

/// What `kopia server start` writes to stderr (`cli/command_server_tls.go`,
/// `maybeGenerateTLS` and `startServerWithOptionalTLSAndListener`).
const STARTED: &str = "SERVER CERT SHA256: 3f1c0d7e\nSERVER ADDRESS: https://127.0.0.1:40123\n\nServer will allow connections from users whose accounts are stored in the repository.\n";

#[test]
fn the_address_is_read_from_what_the_server_prints() {
    assert_eq!(
        server_address(STARTED).as_deref(),
        Some("https://127.0.0.1:40123")
    );
    assert_eq!(server_address("SERVER ADDRESS: http://127.0.0.1:1\n"), None);
    assert_eq!(server_address("opening repository\n"), None);
}

/// A script standing in for kopia, so that the server's own logic runs
/// for real: it records every call's arguments and password, and as
/// `server start` writes the certificate, prints what kopia prints and
/// serves until its stdin closes (`--shutdown-on-stdin`).
fn fake_kopia(dir: &Path) -> KopiaBinary {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-kopia");
    let script = format!(
        r#"#!/bin/sh
echo "$* | $KOPIA_PASSWORD" >> {calls}
case "$*" in
  *"server start"*)
cert=$(echo "$*" | sed 's/.*--tls-cert-file \([^ ]*\).*/\1/')
key=$(echo "$*" | sed 's/.*--tls-key-file \([^ ]*\).*/\1/')
cat > "$cert" <<'PEM'
{CERT}PEM
echo key > "$key"
echo "SERVER CERT SHA256: 90980844b8ce28a14f8de4f31bffd5670fd9f626e3e68444f39dbeae06f61acf" >&2
echo "SERVER ADDRESS: https://127.0.0.1:4711" >&2
cat > /dev/null
echo stopped >> {calls}
;;
  *"snapshot list"*) echo "[]" ;;
esac
exit 0
"#,
        calls = dir.join("calls").display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    KopiaBinary { path }
}

#[test]
fn the_server_starts_adds_users_and_ends_with_its_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let kopia = fake_kopia(dir.path());
    let repo = dir.path().join("repository");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = KopiaServer::start(
        kopia,
        KopiaStorage::Filesystem(repo.clone()),
        &dir.path().join("kopia"),
        "repo-secret",
        runtime.handle().clone(),
        1,
    )
    .unwrap();
    assert_eq!(server.address(), "https://127.0.0.1:4711");
    assert_eq!(
        server.fingerprint(),
        "90980844b8ce28a14f8de4f31bffd5670fd9f626e3e68444f39dbeae06f61acf"
    );
    let credentials = server.authorize_client(ClientId(1)).unwrap();
    assert_eq!(credentials.user, "client-1@snapstorm");
    // The client connects to a proxy port of its own, in front of the server.
    let proxied = credentials.url.strip_prefix("https://127.0.0.1:").unwrap();
    assert_ne!(proxied, "4711");
    assert_eq!(
        server.authorize_client(ClientId(1)).unwrap().url,
        credentials.url,
        "a client authorized again keeps its port"
    );
    server.remove_client(ClientId(1)).unwrap();
    assert_eq!(server.list_snapshots().unwrap(), Vec::<String>::new());
    server.stop();
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let commands: Vec<&str> = calls
        .lines()
        .map(|line| {
            let args = line.split(" | ").next().unwrap();
            // Past the --config-file and --log-dir of every call.
            args.splitn(5, ' ').nth(4).unwrap_or(args)
        })
        .collect();
    let starts = |prefix: &str| commands.iter().position(|c| c.starts_with(prefix));
    let order = [
        "repository create filesystem --path",
        "server acl enable",
        "server acl add --user *@* --access FULL --target type=snapshot",
        "server start --address 127.0.0.1:0",
        "server status --address https://127.0.0.1:4711 --server-cert-fingerprint 9098",
        "server user add client-1@snapstorm --user-password-hash",
        "server refresh --address https://127.0.0.1:4711",
        "server user delete client-1@snapstorm",
        "snapshot list --all --json",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|prefix| starts(prefix).unwrap_or_else(|| panic!("no `{prefix}` in\n{calls}")))
        .collect();
    assert!(positions.is_sorted(), "{calls}");
    assert!(calls.contains("--tls-generate-cert"), "{calls}");
    assert_eq!(
        calls.lines().last(),
        Some("stopped"),
        "ended with its stdin"
    );
    // The repository password only ever in the environment, the
    // client's password nowhere.
    for line in calls.lines().filter(|l| l.contains(" | ")) {
        let (args, password) = line.split_once(" | ").unwrap();
        assert_eq!(password, "repo-secret", "{line}");
        assert!(!args.contains("repo-secret"), "{line}");
        assert!(!args.contains(&credentials.password), "{line}");
    }
}

#[test]
fn a_server_that_cannot_start_is_an_error_in_its_own_words() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake-kopia");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$*\" in *\"server start\"*) echo \"ERROR unable to initialize repository: invalid repository password $KOPIA_PASSWORD\" >&2; exit 1;; esac\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = match KopiaServer::start(
        KopiaBinary { path },
        KopiaStorage::Filesystem(dir.path().join("repository")),
        &dir.path().join("kopia"),
        "repo-secret",
        runtime.handle().clone(),
        1,
    ) {
        Ok(_) => panic!("a server that exited started"),
        Err(error) => error.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(error.contains("kopia server start: ERROR unable to initialize repository: invalid repository password *** (exit code 1)"), "{error}");
}

#[test]
fn the_server_listens_on_loopback_with_tls_and_ends_with_snapstorm() {
    let first = server_start_args(FIRST_LISTEN, "/s/server.cert", "/s/server.key", true);
    assert_eq!(
        first,
        [
            "server",
            "start",
            "--address",
            "127.0.0.1:0",
            "--no-ui",
            "--shutdown-on-stdin",
            "--tls-cert-file",
            "/s/server.cert",
            "--tls-key-file",
            "/s/server.key",
            "--tls-generate-cert"
        ]
    );
    let later = server_start_args("127.0.0.1:4711", "/s/server.cert", "/s/server.key", false);
    assert!(!later.contains(&"--tls-generate-cert".to_owned()));
    assert_eq!(
        later[3], "127.0.0.1:4711",
        "a restart listens where the first start did"
    );
    assert_eq!(kopia_user(ClientId(3)), "client-3@snapstorm");
}

/// kopia 0.23.1's `snapshot verify --verify-files-percent=100` and
/// `content verify --download-percent=100` after a pack was flipped and
/// another deleted (captured from the program).
#[test]
fn what_kopia_could_not_read_is_named_by_its_packs() {
    let missing = "error processing root@vm:/tmp/kx/data@2026-12-02 15:23:52 UTC/f4: object 483d098253951771aaf0df2399449a13 is backed by missing blob pf21f11027f2aab8bad4c3dce51e541eb-sf73b3d5713ba8dd5147";
    let flipped = "error processing root@vm:/tmp/kx/data@2026-12-02 15:23:52 UTC/f3: error reading object e475fbaa6852fe09d34a414154548fa0: unable to open object e475fbaa6852fe09d34a414154548fa0: unexpected content error: invalid checksum at p5c61ed540d73f73add8e114ce65a0153-s671d563724c3e73b147 offset 32 length 3000028/3000028: decrypt: unable to decrypt content: cipher: message authentication failed";
    assert!(is_verify_error(missing) && is_verify_error(flipped));
    assert!(!is_verify_error("encountered 2 errors"));
    // `content verify --download-percent=100`, the same damage.
    let content_missing = "content 7d376cd0cad598537e0ec5d6d573c4c6 depends on missing blob p828c4163682d44fa2c48729586168130-sf1c1a4f18c5886ad147";
    assert!(is_verify_error(content_missing));
    assert!(!is_verify_error(
        "verify contents: encountered 6 errors: the repository is corrupted"
    ));
    assert_eq!(
        unreadable_in(content_missing).unwrap(),
        [DataRef::Pack(
            "p828c4163682d44fa2c48729586168130-sf1c1a4f18c5886ad147".into()
        )]
    );
    assert!(!is_verify_error("Listed 10 blobs."));
    assert_eq!(
        unreadable_in(missing).unwrap(),
        [DataRef::Pack(
            "pf21f11027f2aab8bad4c3dce51e541eb-sf73b3d5713ba8dd5147".into()
        )]
    );
    assert_eq!(
        unreadable_in(flipped).unwrap(),
        [DataRef::Pack(
            "p5c61ed540d73f73add8e114ce65a0153-s671d563724c3e73b147".into()
        )]
    );
    // A content missing from the index names no pack: the object stands for it.
    assert_eq!(
        unreadable_in("error processing x/f: unable to open object 0c9f9c5499ba1d39d402e66a6fec8d57: content 0c9f9c5499ba1d39d402e66a6fec8d57 not found: object not found").unwrap(),
        [DataRef::Blob("0c9f9c5499ba1d39d402e66a6fec8d57".into())]
    );
    assert_eq!(unreadable_in("error processing x/f: something new"), None);
    // A pack cut short (truncate-pack, empty-pack), kopia 0.23.1's words.
    let truncated = "content 19f9d76dcec1a1dbd64c0f2e5ae33397 out of bounds of its pack blob pc24585143eec5a07273c5018ccb23404-see8cc8a7d80a5124147";
    assert!(is_verify_error(truncated));
    assert_eq!(
        unreadable_in(truncated).unwrap(),
        [DataRef::Pack(
            "pc24585143eec5a07273c5018ccb23404-see8cc8a7d80a5124147".into()
        )]
    );
    // Its summary lines repeat what the content lines named.
    assert!(!is_verify_error(
        "truncatedPack\t{\"packID\":\"pc24585143eec5a07273c5018ccb23404-see8cc8a7d80a5124147\",\"numberOfReferencedContents\":6}"
    ));
    assert_eq!(
        errors_counted(
            "Listed 237 blobs.\nverify contents: encountered 24 errors: the repository is corrupted, it is missing pack blobs with index-referenced content\n"
        ),
        Some(24)
    );
    assert_eq!(errors_counted("Listed 237 blobs.\n"), None);
    assert!(!is_blob_id("p5c61ed"));
    assert!(!is_blob_id("processing"));
    assert!(is_blob_id(
        "q8dd77ded0b9308be7c15366d08c5dae9-sf73b3d5713ba8dd5147"
    ));
}
