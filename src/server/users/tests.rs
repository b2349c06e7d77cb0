//! Tests of `users`.

use super::*;

#[test]
fn htpasswd_bcrypt_entries_verify() {
    let hash = bcrypt::hash("secret", 4).unwrap();
    let users = Users::from_htpasswd(&format!("# comment\n\nalice:{hash}\n"), "test").unwrap();
    assert!(users.verify("alice", "secret").is_some());
    assert!(users.verify("alice", "wrong").is_none());
    assert!(users.verify("bob", "secret").is_none());
    // Second check takes the remembered path and still refuses a wrong password.
    assert!(users.verify("alice", "secret").is_some());
    assert!(users.verify("alice", "secreT").is_none());
}

#[test]
fn malformed_htpasswd_names_the_line() {
    let err = Users::from_htpasswd("alice:{SHA}abc\n", "pw").unwrap_err();
    assert_eq!(
        err.to_string(),
        "pw:1: the entry for `alice` is not bcrypt; create it with `htpasswd -B`"
    );
    // A bcrypt prefix with a broken body is no hash either.
    let err = Users::from_htpasswd("alice:$2y$05$short\n", "pw").unwrap_err();
    assert!(err.to_string().contains("is not bcrypt"), "{err}");
    let err = Users::from_htpasswd("\nno-colon\n", "pw").unwrap_err();
    assert_eq!(err.to_string(), "pw:2: expected `user:hash`");
}

#[test]
fn a_user_given_twice_is_refused_naming_both_lines() {
    let hash = bcrypt::hash("a", 4).unwrap();
    let err = Users::from_htpasswd(&format!("alice:{hash}\nbob:{hash}\nalice:{hash}\n"), "pw")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pw:3: `alice` is given twice (first on line 1): which password holds is unclear; keep one entry"
    );
}

#[test]
fn a_cost_that_would_hold_a_core_for_seconds_is_refused() {
    let at = |cost: u32| format!("alice:$2y${cost:02}${}\n", "a".repeat(53));
    assert!(Users::from_htpasswd(&at(MAX_HTPASSWD_COST), "pw").is_ok());
    let err = Users::from_htpasswd(&at(MAX_HTPASSWD_COST + 1), "pw").unwrap_err();
    assert!(
        err.to_string()
            .contains("has cost 15: each check would take 2s or more"),
        "{err}"
    );
}

#[test]
fn revoked_user_is_refused_even_after_a_remembered_success() {
    let users = Users::new();
    users.add("c1", "pw1", false).unwrap();
    users.add("c2", "pw2", true).unwrap();
    assert_eq!(
        users.verify("c1", "pw1"),
        Some(Access { append_only: false })
    );
    assert!(users.revoke("c1"));
    assert!(users.verify("c1", "pw1").is_none());
    assert_eq!(
        users.verify("c2", "pw2"),
        Some(Access { append_only: true })
    );
    // Re-adding with a new password does not accept the old one.
    users.add("c2", "new", false).unwrap();
    assert!(users.verify("c2", "pw2").is_none());
    assert!(users.verify("c2", "new").is_some());
}

#[test]
fn unknown_names_pay_for_bcrypt_at_the_cost_users_have() {
    let hash = |password: &str, cost| bcrypt::hash(password, cost).unwrap();
    let text = format!(
        "alice:{}\nbob:{}\ncarol:{}\n",
        hash("a", 5),
        hash("b", 5),
        hash("c", 4)
    );
    let users = Users::from_htpasswd(&text, "test").unwrap();
    assert_eq!(
        users.check("mallory", "guess"),
        (None, Checked::Dummy { cost: 5 })
    );
    assert_eq!(
        users.check("alice", "guess"),
        (None, Checked::Bcrypt { cost: Some(5) })
    );
    // An empty table: the run-time cost, the one `add` uses.
    assert_eq!(
        Users::new().check("anyone", "x"),
        (
            None,
            Checked::Dummy {
                cost: RUNTIME_BCRYPT_COST
            }
        )
    );
    // The dummy follows the table when it changes.
    users.add("dave", "d", false).unwrap();
    users.add("erin", "e", false).unwrap();
    users.add("frank", "f", false).unwrap();
    assert_eq!(
        users.check("mallory", "guess"),
        (
            None,
            Checked::Dummy {
                cost: RUNTIME_BCRYPT_COST
            }
        )
    );
    assert_eq!(
        users.check("dave", "d").1,
        Checked::Bcrypt {
            cost: Some(RUNTIME_BCRYPT_COST)
        }
    );
    assert_eq!(users.check("dave", "d").1, Checked::Remembered);
}

#[test]
fn passwords_longer_than_bcrypt_reads_are_refused_at_run_time() {
    let users = Users::new();
    let longest = "p".repeat(BCRYPT_MAX_PASSWORD_BYTES);
    users.add("ok", &longest, false).unwrap();
    assert!(users.verify("ok", &longest).is_some());
    let err = users
        .add("long", &format!("{longest}x"), false)
        .unwrap_err();
    assert!(matches!(err, UsersError::PasswordTooLong { len: 73, .. }));
    assert_eq!(
        err.to_string(),
        "the password of `long` is 73 bytes; bcrypt uses only the first 72, so give one of at most 72 bytes"
    );
    assert!(users.verify("long", &format!("{longest}x")).is_none());
}

#[test]
fn htpasswd_files_are_read_up_to_a_cap_and_need_a_user() {
    let err = Users::from_htpasswd_file(Path::new("/dev/zero")).unwrap_err();
    assert!(matches!(err, UsersError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("/dev/zero: larger than 4194304 bytes")
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "# nobody\n").unwrap();
    assert!(matches!(
        Users::from_htpasswd_file(&empty),
        Err(UsersError::NoUsers { .. })
    ));
    let binary = dir.path().join("binary");
    std::fs::write(&binary, [0xff, 0xfe]).unwrap();
    assert!(matches!(
        Users::from_htpasswd_file(&binary),
        Err(UsersError::Read { .. })
    ));
}

#[test]
fn reload_replaces_the_table_or_keeps_it_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let entry =
        |name: &str, password: &str| format!("{name}:{}\n", bcrypt::hash(password, 4).unwrap());
    std::fs::write(&file, entry("alice", "a") + &entry("bob", "b")).unwrap();
    let users = Users::from_htpasswd_file(&file).unwrap();
    assert!(users.verify("alice", "a").is_some());
    assert!(users.verify("bob", "b").is_some());

    std::fs::write(&file, entry("bob", "b2") + &entry("carol", "c")).unwrap();
    assert_eq!(users.reload_htpasswd_file(&file).unwrap(), 2);
    assert_eq!(users.names(), ["bob", "carol"]);
    assert!(users.verify("alice", "a").is_none(), "removed user refused");
    assert!(users.verify("bob", "b").is_none(), "old password forgotten");
    assert!(users.verify("bob", "b2").is_some());

    for bad in ["carol:{SHA}x\n", "# nobody\n"] {
        std::fs::write(&file, bad).unwrap();
        assert!(users.reload_htpasswd_file(&file).is_err());
        assert_eq!(users.names(), ["bob", "carol"], "kept after {bad:?}");
        assert!(users.verify("carol", "c").is_some());
    }
}
