//! The server's users: who may talk to it, and whether they may delete.
//!
//! Passwords are stored only as bcrypt hashes (the format `htpasswd -B`
//! writes). Users can be added and revoked while the server runs; a revoked
//! user is refused on its very next request because every request looks the
//! user up afresh.
//!
//! bcrypt is deliberately slow (tens of milliseconds per check), far too slow
//! to pay on every request of a backup client. A successful check is therefore
//! remembered as a BLAKE3 digest of the password next to the bcrypt hash it was
//! checked against; the memory is dropped when the user is revoked or its
//! password changes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

/// bcrypt cost for passwords hashed at run time. Lower than the crate's
/// default (12): users added by the engine have long random passwords, and
/// adding a client should not stall for a quarter of a second.
pub const RUNTIME_BCRYPT_COST: u32 = 8;

/// What an authenticated user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May not delete or overwrite anything but its own locks.
    pub append_only: bool,
}

#[derive(Debug, Clone)]
struct User {
    bcrypt_hash: String,
    append_only: bool,
}

/// A password that bcrypt already accepted for a given hash.
#[derive(Debug, Clone)]
struct VerifiedPassword {
    bcrypt_hash: String,
    password_digest: blake3::Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{path}: cannot read htpasswd file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("invalid user name `{0}`: use letters, digits, `.`, `_` or `-`")]
    BadName(String),
    #[error("cannot hash password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

/// The user table, shared between the HTTP handlers and whoever manages users.
#[derive(Debug, Default)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
    verified: RwLock<HashMap<String, VerifiedPassword>>,
}

impl Users {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an Apache htpasswd file whose entries are all bcrypt
    /// (`$2a$`, `$2b$`, `$2y$`), as `htpasswd -B` writes them.
    pub fn from_htpasswd_file(path: &Path) -> Result<Self, UsersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_htpasswd(&text, &shown)
    }

    /// Parses htpasswd text; `origin` names the source in error messages.
    pub fn from_htpasswd(text: &str, origin: &str) -> Result<Self, UsersError> {
        let users = Users::new();
        let malformed = |line: usize, reason: String| UsersError::Malformed {
            path: origin.to_owned(),
            line,
            reason,
        };
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| malformed(line_no, "expected `user:hash`".into()))?;
            if !valid_user_name(name) {
                return Err(malformed(line_no, format!("invalid user name `{name}`")));
            }
            if !is_bcrypt_hash(hash) {
                return Err(malformed(
                    line_no,
                    format!("the entry for `{name}` is not bcrypt; create it with `htpasswd -B`"),
                ));
            }
            users.insert_hashed(name, hash, false);
        }
        Ok(users)
    }

    /// Adds (or replaces) a user with a plain-text password, hashed here.
    pub fn add(&self, name: &str, password: &str, append_only: bool) -> Result<(), UsersError> {
        if !valid_user_name(name) {
            return Err(UsersError::BadName(name.to_owned()));
        }
        let hash = bcrypt::hash(password, RUNTIME_BCRYPT_COST)?;
        self.insert_hashed(name, &hash, append_only);
        Ok(())
    }

    /// Makes every user of the table append-only (the server's `--append-only`).
    pub fn set_all_append_only(&self) {
        for user in self.users.write().expect("users lock").values_mut() {
            user.append_only = true;
        }
    }

    fn insert_hashed(&self, name: &str, bcrypt_hash: &str, append_only: bool) {
        self.verified.write().expect("verified lock").remove(name);
        self.users.write().expect("users lock").insert(
            name.to_owned(),
            User {
                bcrypt_hash: bcrypt_hash.to_owned(),
                append_only,
            },
        );
    }

    /// Removes a user; its next request is refused. Returns whether it existed.
    pub fn revoke(&self, name: &str) -> bool {
        let existed = self
            .users
            .write()
            .expect("users lock")
            .remove(name)
            .is_some();
        self.verified.write().expect("verified lock").remove(name);
        existed
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .users
            .read()
            .expect("users lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Checks a user's password. May run bcrypt: call it off the async threads.
    pub fn verify(&self, name: &str, password: &str) -> Option<Access> {
        let user = self.users.read().expect("users lock").get(name).cloned()?;
        let access = Access {
            append_only: user.append_only,
        };
        let digest = blake3::hash(password.as_bytes());
        let remembered = self
            .verified
            .read()
            .expect("verified lock")
            .get(name)
            .is_some_and(|v| v.bcrypt_hash == user.bcrypt_hash && v.password_digest == digest);
        if remembered {
            return Some(access);
        }
        if !bcrypt::verify(password, &user.bcrypt_hash).unwrap_or(false) {
            return None;
        }
        // Remember the success only if the user was not revoked or changed meanwhile.
        let still_same = self
            .users
            .read()
            .expect("users lock")
            .get(name)
            .is_some_and(|u| u.bcrypt_hash == user.bcrypt_hash);
        if !still_same {
            return None;
        }
        self.verified.write().expect("verified lock").insert(
            name.to_owned(),
            VerifiedPassword {
                bcrypt_hash: user.bcrypt_hash,
                password_digest: digest,
            },
        );
        Some(access)
    }
}

fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn is_bcrypt_hash(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
        && hash.len() == 60
}

#[cfg(test)]
mod tests {
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
        let err = Users::from_htpasswd("\nno-colon\n", "pw").unwrap_err();
        assert_eq!(err.to_string(), "pw:2: expected `user:hash`");
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
}
