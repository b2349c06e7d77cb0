//! The data packs and index files each client stored, in the order the
//! storage took them, as the proxy saw them go through. A pack or index
//! fault names its victim by its place here (`client-2/5`: the 5th data
//! pack client-2 stored, see [`VictimRole`]) because a replay runs on a
//! fresh repository, where the same data lands in files of other names but
//! the same client stores it at much the same place in its order. Not
//! always the same: a client uploads several packs at once (restic's
//! connections, rustic's data and tree packers), and two that finish
//! together can swap places.
//!
//! [`VictimRole`]: crate::faults::VictimRole

use std::collections::HashMap;
use std::time::Instant;

/// What a stored file is, as a data fault looks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredKind {
    /// A file under `data/`.
    Pack,
    /// A file under `index/`.
    Index,
}

impl StoredKind {
    /// The kind of the file at a request's `path`, if it is one: its
    /// folder is `data` or `index` (`/repo/data/<id>` on a REST server), or
    /// a pack's two-hex-digit folder under `data` (`/bucket/prefix/data/ab/<id>`
    /// on S3). Read from the end, so that a bucket, prefix or repository
    /// path named `data` or `index` is no file's folder.
    fn of_path(path: &str) -> Option<StoredKind> {
        let mut folders = path.rsplit('/').skip(1);
        match (folders.next(), folders.next()) {
            (Some("data"), _) => Some(StoredKind::Pack),
            (Some("index"), _) => Some(StoredKind::Index),
            (Some(sub), Some("data"))
                if sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(StoredKind::Pack)
            }
            _ => None,
        }
    }
}

/// Who stored a file, its place (from 1) in their order, and when the
/// storage took it (the first time).
#[derive(Debug)]
struct Role {
    user: String,
    nth: u32,
    taken_at: Instant,
}

/// Who stored which file, and when in their order.
#[derive(Debug, Default)]
pub struct StoredFiles {
    /// Each user's files of a kind, in the order the storage took them.
    by_user: HashMap<(String, StoredKind), Vec<String>>,
    /// Each file's role: an upload tried again is not counted twice.
    roles: HashMap<String, Role>,
    /// The counted files whose uploads the storage is taking now, and how
    /// many of each: a file is in the storage's listing before its success
    /// answer comes back through the proxy and gives it its role.
    uploading: HashMap<String, usize>,
}

impl StoredFiles {
    /// The storage answered success to `user`'s upload to `path` (a whole
    /// file, not a part of one); says what kind of file it stored, if one
    /// that is counted.
    pub fn took(&mut self, user: &str, path: &str) -> Option<StoredKind> {
        let kind = StoredKind::of_path(path)?;
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.is_empty() || self.roles.contains_key(name) {
            return Some(kind);
        }
        let files = self.by_user.entry((user.to_owned(), kind)).or_default();
        files.push(name.to_owned());
        let nth = u32::try_from(files.len()).unwrap_or(u32::MAX);
        self.roles.insert(
            name.to_owned(),
            Role {
                user: user.to_owned(),
                nth,
                taken_at: Instant::now(),
            },
        );
        Some(kind)
    }

    /// An upload to `path` goes to the storage (counted files only).
    pub fn upload_begins(&mut self, path: &str) {
        if let Some(name) = Self::counted_name(path) {
            *self.uploading.entry(name.to_owned()).or_default() += 1;
        }
    }

    /// The upload to `path` is over, stored or not (after [`Self::took`]
    /// when it was stored).
    pub fn upload_ends(&mut self, path: &str) {
        if let Some(name) = Self::counted_name(path)
            && let Some(count) = self.uploading.get_mut(name)
        {
            *count -= 1;
            if *count == 0 {
                self.uploading.remove(name);
            }
        }
    }

    /// Whether an upload of the file `name` is under way.
    pub fn is_uploading(&self, name: &str) -> bool {
        self.uploading.contains_key(name)
    }

    /// The name of the counted file at `path`.
    fn counted_name(path: &str) -> Option<&str> {
        StoredKind::of_path(path)?;
        path.rsplit('/').next().filter(|name| !name.is_empty())
    }

    /// The files of `kind` that `user` stored, first stored first.
    pub fn by(&self, user: &str, kind: StoredKind) -> &[String] {
        self.by_user
            .get(&(user.to_owned(), kind))
            .map_or(&[], Vec::as_slice)
    }

    /// Who stored the file `name`, and when the storage took it.
    pub fn stored_when(&self, name: &str) -> Option<(&str, Instant)> {
        let role = self.roles.get(name)?;
        Some((role.user.as_str(), role.taken_at))
    }

    /// Who stored the file `name`, and its place (from 1) in their order.
    pub fn role_of(&self, name: &str) -> Option<(&str, u32)> {
        self.roles
            .get(name)
            .map(|role| (role.user.as_str(), role.nth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_s_files_are_counted_in_the_order_they_were_stored() {
        let mut stored = StoredFiles::default();
        assert_eq!(
            stored.took("client-1", "/repo/data/aa11"),
            Some(StoredKind::Pack)
        );
        stored.took("client-2", "/bucket/pre/data/bb/bb22");
        stored.took("client-1", "/repo/index/cc33");
        stored.took("client-1", "/repo/data/dd44");
        // Tried again after a dropped answer: still its 1st.
        stored.took("client-1", "/repo/data/aa11");
        assert_eq!(stored.took("client-1", "/repo/snapshots/ee55"), None);
        assert_eq!(stored.took("client-1", "/repo/keys/ff66"), None);
        // A bucket or prefix named like a folder is none.
        assert_eq!(stored.took("client-1", "/data/index/snapshots/aa77"), None);
        assert_eq!(
            stored.took("client-1", "/index/pre/data/cd/cd88"),
            Some(StoredKind::Pack)
        );
        assert_eq!(stored.took("client-1", "/data/pre/data/zz/ee99"), None);

        assert_eq!(
            stored.by("client-1", StoredKind::Pack),
            ["aa11", "dd44", "cd88"]
        );
        assert_eq!(stored.by("client-1", StoredKind::Index), ["cc33"]);
        assert_eq!(stored.by("client-2", StoredKind::Pack), ["bb22"]);
        assert!(stored.by("client-3", StoredKind::Pack).is_empty());
        assert_eq!(stored.role_of("dd44"), Some(("client-1", 2)));
        assert_eq!(stored.role_of("bb22"), Some(("client-2", 1)));
        assert_eq!(stored.role_of("cc33"), Some(("client-1", 1)));
        assert_eq!(stored.role_of("ee55"), None);
    }

    /// A file is under way from its upload's request to its answer, each
    /// upload of it counted (a client may send it again meanwhile).
    #[test]
    fn an_upload_is_under_way_until_its_answer() {
        let mut stored = StoredFiles::default();
        stored.upload_begins("/repo/data/aa11");
        stored.upload_begins("/bucket/pre/data/aa/aa11");
        stored.upload_begins("/repo/snapshots/ee55");
        assert!(stored.is_uploading("aa11"));
        assert!(!stored.is_uploading("ee55"), "snapshots are not counted");
        stored.took("client-1", "/repo/data/aa11");
        stored.upload_ends("/repo/data/aa11");
        assert!(stored.is_uploading("aa11"), "one upload of it is left");
        stored.upload_ends("/bucket/pre/data/aa/aa11");
        assert!(!stored.is_uploading("aa11"));
        assert_eq!(stored.role_of("aa11"), Some(("client-1", 1)));
        // An end without a beginning changes nothing.
        stored.upload_ends("/repo/data/bb22");
        assert!(!stored.is_uploading("bb22"));
    }
}
