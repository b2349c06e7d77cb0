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
//!
//! A name that is not in the table is checked against a dummy bcrypt hash
//! of the cost the table's users have, so a request with an unknown name
//! takes as long as one with a known name and a wrong password: timing
//! does not tell which users exist.
//!
//! bcrypt reads only the first 72 bytes of a password. Users added at run
//! time may therefore not have longer ones; an htpasswd file cannot say how
//! long its passwords were, so a longer password there is noticed only when
//! it is used (a warning names the user).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, RwLock};

/// bcrypt cost for passwords hashed at run time. Lower than the crate's
/// default (12): users added by the engine have long random passwords, and
/// adding a client should not stall for a quarter of a second.
pub const RUNTIME_BCRYPT_COST: u32 = 8;

/// bcrypt uses only this many bytes of a password; two passwords that share
/// them are the same password to it.
pub const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

/// Largest htpasswd file read. An entry is about 70 bytes, so this holds
/// some 60,000 users; anything larger is not an htpasswd file (`/dev/zero`,
/// a disk image) and would otherwise be read into memory without end.
pub const MAX_HTPASSWD_BYTES: u64 = 4 * 1024 * 1024;

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
    #[error(
        "{path}: larger than {} bytes, too large for an htpasswd file; give the file `htpasswd -B` writes",
        MAX_HTPASSWD_BYTES
    )]
    TooLarge { path: String },
    #[error("{path}: no users; add one with `htpasswd -B {path} USER`")]
    NoUsers { path: String },
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("invalid user name `{0}`: use letters, digits, `.`, `_` or `-`")]
    BadName(String),
    #[error(
        "the password of `{name}` is {len} bytes; bcrypt uses only the first {}, so give one of at most {} bytes",
        BCRYPT_MAX_PASSWORD_BYTES,
        BCRYPT_MAX_PASSWORD_BYTES
    )]
    PasswordTooLong { name: String, len: usize },
    #[error("cannot hash password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

/// A bcrypt hash of a password nobody knows, checked for names that are
/// not in the table.
#[derive(Debug, Clone)]
struct DummyHash {
    cost: u32,
    hash: String,
}

/// Which check decided a password, so tests can see the path taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// The same password was accepted before for the same hash.
    Remembered,
    /// bcrypt against the user's own hash (of this cost, if readable).
    Bcrypt { cost: Option<u32> },
    /// Unknown name: bcrypt against the dummy hash of this cost.
    Dummy { cost: u32 },
}

/// The user table, shared between the HTTP handlers and whoever manages users.
#[derive(Debug, Default)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
    verified: RwLock<HashMap<String, VerifiedPassword>>,
    dummy: Mutex<Option<DummyHash>>,
}

impl Users {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an Apache htpasswd file whose entries are all bcrypt
    /// (`$2a$`, `$2b$`, `$2y$`), as `htpasswd -B` writes them, and which
    /// names at least one user. At most [`MAX_HTPASSWD_BYTES`] are read.
    pub fn from_htpasswd_file(path: &Path) -> Result<Self, UsersError> {
        let shown = path.display().to_string();
        let read_error = |source| UsersError::Read {
            path: shown.clone(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_error)?
            .take(MAX_HTPASSWD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_HTPASSWD_BYTES {
            return Err(UsersError::TooLarge { path: shown });
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        let users = Self::from_htpasswd(&text, &shown)?;
        if users.users.read().expect("users lock").is_empty() {
            return Err(UsersError::NoUsers { path: shown });
        }
        Ok(users)
    }

    /// Replaces the whole table with the users of an htpasswd file (the
    /// server's SIGHUP). On any error the table stays as it was. Returns
    /// how many users the file has.
    pub fn reload_htpasswd_file(&self, path: &Path) -> Result<usize, UsersError> {
        let fresh = Self::from_htpasswd_file(path)?;
        let fresh = fresh.users.into_inner().expect("users lock");
        let count = fresh.len();
        let hashes: HashMap<String, String> = fresh
            .iter()
            .map(|(name, user)| (name.clone(), user.bcrypt_hash.clone()))
            .collect();
        *self.users.write().expect("users lock") = fresh;
        // Remembered successes stay valid only for unchanged passwords.
        self.verified
            .write()
            .expect("verified lock")
            .retain(|name, v| hashes.get(name) == Some(&v.bcrypt_hash));
        Ok(count)
    }

    /// Parses htpasswd text; `origin` names the source in error messages.
    pub fn from_htpasswd(text: &str, origin: &str) -> Result<Self, UsersError> {
        let users = Users::new();
        let malformed = |line: usize, reason: String| UsersError::Malformed {
            path: origin.to_owned(),
            line,
            reason,
        };
        let mut first_line = std::collections::HashMap::new();
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
            if let Some(first) = first_line.insert(name.to_owned(), line_no) {
                return Err(malformed(
                    line_no,
                    format!(
                        "`{name}` is given twice (first on line {first}): which password holds is unclear; keep one entry"
                    ),
                ));
            }
            match bcrypt_cost(hash) {
                None => {
                    return Err(malformed(
                        line_no,
                        format!(
                            "the entry for `{name}` is not bcrypt; create it with `htpasswd -B`"
                        ),
                    ));
                }
                Some(cost) if cost > MAX_HTPASSWD_COST => {
                    return Err(malformed(
                        line_no,
                        format!(
                            "the hash of `{name}` has cost {cost}: each check would take {} or more, and a few requests would keep the server's cores busy; give cost {MAX_HTPASSWD_COST} or less (`htpasswd -B -C 10`)",
                            humantime::format_duration(check_time(cost))
                        ),
                    ));
                }
                Some(_) => {}
            }
            users.insert_hashed(name, hash, false);
        }
        Ok(users)
    }

    /// Adds (or replaces) a user with a plain-text password, hashed here.
    /// Passwords longer than [`BCRYPT_MAX_PASSWORD_BYTES`] are refused:
    /// bcrypt would silently ignore the rest.
    pub fn add(&self, name: &str, password: &str, append_only: bool) -> Result<(), UsersError> {
        if !valid_user_name(name) {
            return Err(UsersError::BadName(name.to_owned()));
        }
        if password.len() > BCRYPT_MAX_PASSWORD_BYTES {
            return Err(UsersError::PasswordTooLong {
                name: name.to_owned(),
                len: password.len(),
            });
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
        self.check(name, password).0
    }

    /// The user's access if this password was checked before and the user
    /// is unchanged; `None` when bcrypt is needed ([`Users::verify`]).
    /// Never runs bcrypt, so it may be called on the async threads: a
    /// client's requests after its first skip the hop to a blocking thread.
    pub fn verify_remembered(&self, name: &str, password: &str) -> Option<Access> {
        let user = self.users.read().expect("users lock").get(name).cloned()?;
        let digest = blake3::hash(password.as_bytes());
        self.remembered(name, &user, &digest).then_some(Access {
            append_only: user.append_only,
        })
    }

    /// Whether bcrypt accepted the password with this digest for `user`'s current hash.
    fn remembered(&self, name: &str, user: &User, digest: &blake3::Hash) -> bool {
        self.verified
            .read()
            .expect("verified lock")
            .get(name)
            .is_some_and(|v| v.bcrypt_hash == user.bcrypt_hash && v.password_digest == *digest)
    }

    fn check(&self, name: &str, password: &str) -> (Option<Access>, Checked) {
        let Some(user) = self.users.read().expect("users lock").get(name).cloned() else {
            // As slow as a wrong password for a known name.
            let dummy = self.dummy_hash();
            let _ = bcrypt::verify(password, &dummy.hash);
            return (None, Checked::Dummy { cost: dummy.cost });
        };
        let checked = Checked::Bcrypt {
            cost: bcrypt_cost(&user.bcrypt_hash),
        };
        let access = Access {
            append_only: user.append_only,
        };
        let digest = blake3::hash(password.as_bytes());
        if self.remembered(name, &user, &digest) {
            return (Some(access), Checked::Remembered);
        }
        if !bcrypt::verify(password, &user.bcrypt_hash).unwrap_or(false) {
            return (None, checked);
        }
        // Remember the success only if the user was not revoked or changed meanwhile.
        let still_same = self
            .users
            .read()
            .expect("users lock")
            .get(name)
            .is_some_and(|u| u.bcrypt_hash == user.bcrypt_hash);
        if !still_same {
            return (None, checked);
        }
        if password.len() > BCRYPT_MAX_PASSWORD_BYTES {
            tracing::warn!(
                target: "snapstorm::server",
                user = name,
                "password longer than {BCRYPT_MAX_PASSWORD_BYTES} bytes: bcrypt checks only the first {BCRYPT_MAX_PASSWORD_BYTES}, the rest adds no protection"
            );
        }
        self.verified.write().expect("verified lock").insert(
            name.to_owned(),
            VerifiedPassword {
                bcrypt_hash: user.bcrypt_hash,
                password_digest: digest,
            },
        );
        (Some(access), checked)
    }

    /// The dummy hash for unknown names, of the cost most users' hashes
    /// have (the higher one on a tie; the run-time cost for an empty
    /// table), made once per cost.
    fn dummy_hash(&self) -> DummyHash {
        let cost = {
            let users = self.users.read().expect("users lock");
            let mut counts: HashMap<u32, usize> = HashMap::new();
            for user in users.values() {
                if let Some(cost) = bcrypt_cost(&user.bcrypt_hash) {
                    *counts.entry(cost).or_default() += 1;
                }
            }
            counts
                .into_iter()
                .max_by_key(|&(cost, count)| (count, cost))
                .map_or(RUNTIME_BCRYPT_COST, |(cost, _)| cost)
        };
        let mut dummy = self.dummy.lock().expect("dummy hash lock");
        match dummy.as_ref() {
            Some(made) if made.cost == cost => made.clone(),
            _ => {
                let secret = hex::encode(rand::random::<[u8; 16]>());
                // A cost bcrypt cannot make is no real user's either.
                let cost = if (4..=31).contains(&cost) {
                    cost
                } else {
                    RUNTIME_BCRYPT_COST
                };
                let made = DummyHash {
                    cost,
                    hash: bcrypt::hash(secret, cost).expect("bcrypt hashes at a valid cost"),
                };
                *dummy = Some(made.clone());
                made
            }
        }
    }
}

fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// The highest bcrypt cost an htpasswd file may give: about a second per
/// check on a core of today (cost 12 is about a quarter of one, each step
/// doubles it), so a request never holds a core for minutes.
pub const MAX_HTPASSWD_COST: u32 = 14;

/// About how long one check of this cost takes (cost 12: 250 ms).
fn check_time(cost: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250).saturating_mul(1 << cost.saturating_sub(12).min(20))
}

/// The cost of a well-formed bcrypt hash (`$2b$10$` and 53 characters of
/// bcrypt's base64), or `None`.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .find_map(|prefix| hash.strip_prefix(prefix))?;
    let (cost, salt_and_hash) = rest.split_once('$')?;
    let cost: u32 = (cost.len() == 2).then(|| cost.parse().ok()).flatten()?;
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    ((4..=31).contains(&cost) && salt_and_hash.len() == 53 && salt_and_hash.chars().all(alphabet))
        .then_some(cost)
}

#[cfg(test)]
mod tests;
