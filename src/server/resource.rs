//! Turning a request path into the one repository resource it names.
//!
//! Every path component is checked here, before anything touches the disk:
//! only restic's file types, 64-digit hex ids, repository names made of safe
//! characters. `..`, absolute paths, hidden names and anything unknown are
//! rejected, so the storage layer never sees a path it did not build itself.

use std::fmt;

/// The kinds of file a restic repository holds, as named in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Keys,
    Locks,
    Snapshots,
    Index,
    Data,
}

impl FileType {
    pub const ALL: [FileType; 5] = [
        FileType::Keys,
        FileType::Locks,
        FileType::Snapshots,
        FileType::Index,
        FileType::Data,
    ];

    /// The directory name, which is also the URL segment.
    pub fn dir_name(self) -> &'static str {
        match self {
            FileType::Keys => "keys",
            FileType::Locks => "locks",
            FileType::Snapshots => "snapshots",
            FileType::Index => "index",
            FileType::Data => "data",
        }
    }

    fn from_segment(segment: &str) -> Option<Self> {
        FileType::ALL.into_iter().find(|t| t.dir_name() == segment)
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// A restic file id: the SHA-256 of the file's content, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId(String);

impl FileId {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| FileId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which repository a request addresses: the one at `/` or one under `/NAME/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepoName {
    Root,
    Named(String),
}

impl RepoName {
    /// Repository names are one path segment of `[A-Za-z0-9_-][A-Za-z0-9._-]*`,
    /// and never a file type or `config`, which would make `/NAME/` ambiguous.
    pub(crate) fn from_segment(segment: &str) -> Option<Self> {
        let mut bytes = segment.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let reserved = segment == "config" || FileType::from_segment(segment).is_some();
        (first_ok && rest_ok && !reserved && segment.len() <= 128)
            .then(|| RepoName::Named(segment.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoName::Root => f.write_str("/"),
            RepoName::Named(name) => write!(f, "/{name}/"),
        }
    }
}

/// What inside a repository a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The repository itself (`POST /NAME/?create=true`).
    Repository,
    /// The `config` file.
    Config,
    /// The listing of one file type (`GET /NAME/data/`).
    Listing(FileType),
    /// One file (`/NAME/data/<id>`).
    File(FileType, FileId),
}

/// A fully validated request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub repo: RepoName,
    pub target: Target,
}

/// Why a path was refused; the text goes back to the client in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path component is not valid percent-encoded UTF-8")]
    BadEncoding,
    #[error("empty path component (absolute or doubled slashes are not allowed)")]
    EmptyComponent,
    #[error("`.`, `..` and hidden names are not allowed")]
    DotComponent,
    #[error("unknown file type `{0}`")]
    UnknownType(String),
    #[error("`{0}` is not a 64-digit lowercase hex id")]
    BadId(String),
    #[error("`{0}` is not a valid repository name")]
    BadRepoName(String),
    #[error("too many path components")]
    TooDeep,
}

impl Resource {
    /// Parses the raw (still percent-encoded) request path.
    pub fn parse(raw_path: &str) -> Result<Self, PathError> {
        let trimmed = raw_path.strip_prefix('/').unwrap_or(raw_path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let segments: Vec<String> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed
                .split('/')
                .map(decode_segment)
                .collect::<Result<_, _>>()?
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();

        // The first segment is a repository name unless it is one of the
        // root repository's own entries.
        let (repo, rest) = match segments.split_first() {
            Some((first, rest))
                if *first != "config" && FileType::from_segment(first).is_none() =>
            {
                let repo = RepoName::from_segment(first)
                    .ok_or_else(|| PathError::BadRepoName((*first).to_owned()))?;
                (repo, rest)
            }
            _ => (RepoName::Root, segments.as_slice()),
        };

        let target = match rest {
            [] => Target::Repository,
            ["config"] => Target::Config,
            [kind] => Target::Listing(parse_type(kind)?),
            [kind, id] => {
                let kind = parse_type(kind)?;
                let id = FileId::parse(id).ok_or_else(|| PathError::BadId((*id).to_owned()))?;
                Target::File(kind, id)
            }
            _ => return Err(PathError::TooDeep),
        };
        Ok(Resource { repo, target })
    }
}

fn parse_type(segment: &str) -> Result<FileType, PathError> {
    FileType::from_segment(segment).ok_or_else(|| PathError::UnknownType(segment.to_owned()))
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::EmptyComponent);
    }
    let decoded = percent_decode(raw).ok_or(PathError::BadEncoding)?;
    if decoded.starts_with('.') {
        return Err(PathError::DotComponent);
    }
    if decoded.contains(['/', '\\', '\0']) {
        return Err(PathError::BadEncoding);
    }
    Ok(decoded)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn root_repository_paths() {
        assert_eq!(
            Resource::parse("/").unwrap(),
            Resource {
                repo: RepoName::Root,
                target: Target::Repository
            }
        );
        assert_eq!(Resource::parse("/config").unwrap().target, Target::Config);
        assert_eq!(
            Resource::parse("/data/").unwrap().target,
            Target::Listing(FileType::Data)
        );
        assert_eq!(
            Resource::parse(&format!("/keys/{ID}")).unwrap().target,
            Target::File(FileType::Keys, FileId::parse(ID).unwrap())
        );
    }

    #[test]
    fn named_repository_paths() {
        let r = Resource::parse(&format!("/repo-1/snapshots/{ID}")).unwrap();
        assert_eq!(r.repo, RepoName::Named("repo-1".into()));
        assert_eq!(
            r.target,
            Target::File(FileType::Snapshots, FileId::parse(ID).unwrap())
        );
        assert_eq!(
            Resource::parse("/repo/").unwrap().target,
            Target::Repository
        );
        assert_eq!(
            Resource::parse("/repo/config").unwrap().target,
            Target::Config
        );
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(Resource::parse("/../config"), Err(PathError::DotComponent));
        assert_eq!(
            Resource::parse("/%2e%2e/config"),
            Err(PathError::DotComponent)
        );
        assert_eq!(
            Resource::parse("//etc/passwd"),
            Err(PathError::EmptyComponent)
        );
        assert_eq!(
            Resource::parse("/%2Fetc/config"),
            Err(PathError::BadEncoding)
        );
        assert_eq!(
            Resource::parse("/.hidden/config"),
            Err(PathError::DotComponent)
        );
        assert_eq!(
            Resource::parse("/repo/bogus/"),
            Err(PathError::UnknownType("bogus".into()))
        );
        assert_eq!(
            Resource::parse("/data/xyz"),
            Err(PathError::BadId("xyz".into()))
        );
        assert!(matches!(
            Resource::parse(&format!("/data/{}", ID.to_uppercase())),
            Err(PathError::BadId(_))
        ));
        assert_eq!(Resource::parse("/a/b/c/d"), Err(PathError::TooDeep));
        assert_eq!(
            Resource::parse("/bad%zz/config"),
            Err(PathError::BadEncoding)
        );
        assert!(matches!(
            Resource::parse("/na%20me/config"),
            Err(PathError::BadRepoName(_))
        ));
    }
}
