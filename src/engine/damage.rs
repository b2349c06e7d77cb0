//! Damage and what an incident could not read, in the repository's own
//! names: the two sides of attribution by cause. A fault that damages data
//! records what it damaged; a failure names what it could not read; the
//! fault explains the failure only when the second lies inside the first.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing in a repository that can be damaged or found unreadable, by
/// the id the repository names it with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum DataRef {
    /// A pack file: missing, or its content no longer what its id says.
    Pack(String),
    /// A blob (a chunk of file content, or a tree) that no index names any more.
    Blob(String),
    /// Another repository file (an index file), by its path in the repository.
    File(String),
}

impl fmt::Display for DataRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataRef::Pack(id) => write!(f, "pack {}", short_id(id)),
            DataRef::Blob(id) => write!(f, "blob {}", short_id(id)),
            DataRef::File(path) => write!(f, "file {path}"),
        }
    }
}

/// The first 8 hex digits, as restic and rustic show ids.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// What an incident could not read, as far as the backend can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreadable {
    /// The backend cannot tell: a data fault then explains the incident by
    /// its time alone (the weaker rule, for backends that give no evidence).
    #[default]
    Unknown,
    /// These items; empty when nothing the incident needs is missing now,
    /// and then no damage explains it.
    Named(BTreeSet<DataRef>),
}

impl Unreadable {
    pub fn named(items: impl IntoIterator<Item = DataRef>) -> Self {
        Unreadable::Named(items.into_iter().collect())
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Unreadable::Named(_))
    }

    /// A list for people: the first few items, and how many in all.
    pub fn describe(items: &BTreeSet<DataRef>, shown: usize) -> String {
        let mut text = items
            .iter()
            .take(shown)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if items.len() > shown {
            text.push_str(&format!(" and {} more", items.len() - shown));
        }
        text
    }
}

/// What a data fault damaged, read from the repository when it did it.
pub type Damage = BTreeSet<DataRef>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_show_short_and_lists_say_how_many_more() {
        let items: BTreeSet<DataRef> = [
            DataRef::Pack("3f2a1b2c4d5e".into()),
            DataRef::Blob("18ac1e4c9999".into()),
            DataRef::File("index/35c4".into()),
        ]
        .into();
        assert_eq!(
            Unreadable::describe(&items, 2),
            "pack 3f2a1b2c, blob 18ac1e4c and 1 more"
        );
        assert_eq!(
            serde_json::to_string(&DataRef::Pack("ab".into())).unwrap(),
            r#"{"kind":"pack","id":"ab"}"#
        );
    }
}
