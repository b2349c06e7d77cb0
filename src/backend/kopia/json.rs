//! kopia's `--json` output, read into just what snapstorm needs. The shapes
//! follow kopia's `snapshot/manifest.go` (`Manifest`, `SourceInfo` in
//! `snapshot/source.go`) as `cli/json_output.go` prints them: one indented
//! object from `snapshot create --json`, a list from `snapshot list --json`.

use serde::Deserialize;

/// Where a snapshot came from (`snapshot.SourceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SourceJson {
    #[serde(default)]
    pub host: String,
    #[serde(default, rename = "userName")]
    pub user_name: String,
    #[serde(default)]
    pub path: String,
}

/// A snapshot manifest (`snapshot.Manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestJson {
    /// The manifest id: what `snapshot restore` and `snapshot delete` take.
    pub id: String,
    pub source: SourceJson,
    /// Set when the snapshot is partial (kopia's `incomplete`).
    #[serde(default, rename = "incomplete")]
    pub incomplete_reason: Option<String>,
}

/// The manifest `snapshot create --json` printed (one source: one object).
pub fn parse_created(stdout: &str) -> Result<ManifestJson, serde_json::Error> {
    serde_json::Deserializer::from_str(stdout.trim())
        .into_iter::<ManifestJson>()
        .next()
        .unwrap_or_else(|| serde_json::from_str::<ManifestJson>(""))
}

/// The manifests of `snapshot list --json`.
pub fn parse_listed(stdout: &str) -> Result<Vec<ManifestJson>, serde_json::Error> {
    parse_list(stdout)
}

/// A JSON list kopia printed (`snapshot list`, `content list`, `blob list`
/// with `--json`); an empty listing may print nothing, `null` or `[]`.
pub fn parse_list<T: serde::de::DeserializeOwned>(
    stdout: &str,
) -> Result<Vec<T>, serde_json::Error> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str::<Option<Vec<T>>>(text)?.unwrap_or_default())
}

#[cfg(test)]
pub(super) mod fixtures {
    /// `snapshot create --json` of one source: `jsonIndentedBytes(manifest,
    /// "  ")` in `cli/command_snapshot_create.go` (`reportSnapshotStatus`),
    /// the fields of `snapshot/manifest.go` without `stats`
    /// (`cli/json_output.go`, `cleanupSnapshotManifestForJSON`); a manifest
    /// id is 16 random bytes in hex (`repo/manifest/manifest_manager.go`).
    pub const CREATED: &str = r#"{
  "id": "b4c1f0a29e8d7c6b5a4f3e2d1c0b9a87",
  "source": {
    "host": "snapstorm",
    "userName": "client-1",
    "path": "/tmp/state/clients/client-1/data"
  },
  "description": "",
  "startTime": "2026-11-26T01:02:03.123456789Z",
  "endTime": "2026-11-26T01:02:04.223456789Z",
  "rootEntry": {
    "name": "data",
    "type": "d",
    "mode": "0755",
    "mtime": "2026-11-26T01:02:00.000000001Z",
    "obj": "k5d1c7e2b6f3a4e8d9c0b1a2f3e4d5c6b",
    "summ": {
      "size": 5,
      "files": 1,
      "symlinks": 0,
      "dirs": 1,
      "maxTime": "2026-11-26T01:02:00.000000001Z",
      "numFailed": 0
    }
  }
}
"#;

    /// `snapshot create --json` of a snapshot cut short: `incomplete` is
    /// `IncompleteReason` in `snapshot/manifest.go`.
    pub const PARTIAL: &str = r#"{
  "id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
  "source": {"host": "snapstorm", "userName": "client-2", "path": "/d"},
  "description": "",
  "startTime": "2026-11-26T01:02:03Z",
  "endTime": "2026-11-26T01:02:04Z",
  "incomplete": "canceled",
  "rootEntry": {"name": "d", "type": "d", "obj": "k00"}
}
"#;

    /// `snapshot list --all --json`: the `jsonList` of
    /// `cli/command_snapshot_list.go` (`[`, manifests joined by `,`, `]`),
    /// each a `snapshot/manifest.go` manifest.
    pub const LISTED: &str = r#"[{"id":"b4c1f0a29e8d7c6b5a4f3e2d1c0b9a87","source":{"host":"snapstorm","userName":"client-1","path":"/tmp/state/clients/client-1/data"},"description":"","startTime":"2026-11-26T01:02:03.123456789Z","endTime":"2026-11-26T01:02:04.223456789Z","rootEntry":{"name":"data","type":"d","mode":"0755","mtime":"2026-11-26T01:02:00.000000001Z","obj":"k5d1c7e2b6f3a4e8d9c0b1a2f3e4d5c6b","summ":{"size":5,"files":1,"symlinks":0,"dirs":1,"maxTime":"2026-11-26T01:02:00.000000001Z","numFailed":0}},"retentionReason":["latest-1"]}
,{"id":"9f8e7d6c5b4a39281706f5e4d3c2b1a0","source":{"host":"snapstorm","userName":"client-2","path":"/tmp/state/clients/client-2/data"},"description":"","startTime":"2026-11-26T01:02:05Z","endTime":"2026-11-26T01:02:06Z","rootEntry":{"name":"data","type":"d","obj":"k11"}}
]
"#;
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_created_snapshot_names_its_manifest_id() {
        let created = parse_created(CREATED).unwrap();
        assert_eq!(created.id, "b4c1f0a29e8d7c6b5a4f3e2d1c0b9a87");
        assert_eq!(created.source.user_name, "client-1");
        assert_eq!(created.source.host, "snapstorm");
        assert_eq!(created.incomplete_reason, None);
        let partial = parse_created(PARTIAL).unwrap();
        assert_eq!(partial.incomplete_reason.as_deref(), Some("canceled"));
        assert!(parse_created("").is_err());
        assert!(parse_created("ERROR unable to connect").is_err());
    }

    #[test]
    fn the_listing_gives_every_manifest_id() {
        let listed = parse_listed(LISTED).unwrap();
        let ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "b4c1f0a29e8d7c6b5a4f3e2d1c0b9a87",
                "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
            ]
        );
        assert_eq!(listed[1].source.user_name, "client-2");
        assert_eq!(parse_listed("[]\n").unwrap(), vec![]);
        assert_eq!(parse_listed("null\n").unwrap(), vec![]);
        assert_eq!(parse_listed("").unwrap(), vec![]);
        assert!(parse_listed("{\"id\":").is_err());
    }
}
