//! kopia's GC as snapstorm asks for it.
//!
//! A normal GC is kopia's own full maintenance at its default safety: what
//! kopia users schedule, safe beside running clients, and it frees a deleted
//! snapshot's data only after its safety margins (hours to days).
//!
//! An aggressive GC (the `aggressive-gc` fault, the contract suite) must
//! free what only deleted snapshots held at once. One full maintenance at
//! `--safety=none` does not, as measured with kopia 0.23.1: its snapshot GC
//! marks the unused contents deleted, but the same run's rewrite of short
//! packs copies the deleted contents along with the live ones (kopia keeps
//! them until they are dropped from the index), and later runs drop them
//! from the index but never rewrite a single short pack, so the dead bytes
//! stay in a pack that is still referenced. When kopia drops a deleted
//! content from the index also depends on the times of earlier GC runs (it
//! waits for a later run to start after the deletion), so the number of
//! runs it takes differs from run to run. An aggressive GC is therefore
//! rounds of, at most [`MAX_ROUNDS`]:
//!
//! 1. `maintenance run --full --safety=none`: marks what no snapshot uses
//!    as deleted, drops what earlier rounds marked, deletes packs left
//!    with no content;
//! 2. `content rewrite --safety=none` of the live contents of every pack
//!    that is mostly dead or deleted ([`packs_to_compact`]), from `content
//!    list --deleted --json` and `blob list --json`;
//!
//! until no pack is worth compacting and no deleted content is left.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One content of `content list --json` (`cli/command_content_list.go`).
#[derive(Debug, Clone, Deserialize)]
pub struct ContentJson {
    #[serde(rename = "contentID")]
    pub content_id: String,
    #[serde(rename = "packFile")]
    pub pack_file: String,
    /// Bytes the content takes in its pack.
    pub length: u64,
    #[serde(default)]
    pub deleted: bool,
}

/// One blob of `blob list --json` (`cli/command_blob_list.go`).
#[derive(Debug, Clone, Deserialize)]
pub struct BlobJson {
    pub id: String,
    pub length: u64,
}

/// Waits for the wall clock's next whole second. kopia drops a deleted
/// content from the index only when it was deleted before the start of a
/// later completed GC run, and it keeps both times in whole seconds: a
/// round that starts in the second its contents were marked never counts
/// as later. With kopia calls a few milliseconds apart (since processes
/// are waited for in the kernel), the contract suite's GC test freed
/// nothing in 2 of 4 runs without this wait, and passed 7 of 7 with it.
pub fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into_second = std::time::Duration::from_nanos(u64::from(now.subsec_nanos()));
    std::thread::sleep(std::time::Duration::from_millis(1_010) - into_second);
}

/// The most rounds an aggressive GC takes; the GC's details say how many
/// it took.
pub const MAX_ROUNDS: usize = 6;

/// The fewest dead bytes worth a rewrite: below this a pack's own header
/// and local index are most of the difference.
const MIN_DEAD_BYTES: u64 = 64 * 1024;

/// The live contents of every pack (`p` data, `q` metadata) whose dead
/// bytes are at least a fifth of it and [`MIN_DEAD_BYTES`]: what must be
/// rewritten so that the pack can be deleted.
pub fn packs_to_compact(contents: &[ContentJson], blobs: &[BlobJson]) -> Vec<String> {
    let mut live: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for content in contents.iter().filter(|c| !c.deleted) {
        let pack = live.entry(content.pack_file.as_str()).or_default();
        pack.0 += content.length;
        pack.1.push(content.content_id.as_str());
    }
    let mut rewrite = Vec::new();
    for blob in blobs
        .iter()
        .filter(|b| b.id.starts_with('p') || b.id.starts_with('q'))
    {
        let Some((live_bytes, ids)) = live.get(blob.id.as_str()) else {
            // No live content: the last maintenance run deletes it.
            continue;
        };
        let dead = blob.length.saturating_sub(*live_bytes);
        if dead >= MIN_DEAD_BYTES && dead * 5 >= blob.length {
            rewrite.extend(ids.iter().map(|id| (*id).to_owned()));
        }
    }
    rewrite
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::kopia::json::parse_list;

    /// `content list --json` and `blob list --json --prefix=p` as kopia
    /// 0.23.1 printed them after two maintenance runs: a 10 MB pack holding
    /// 2 MB of live contents.
    const CONTENTS: &str = r#"[
 {"packFile":"pf4c27179601a56880a17cc5a0085522d-s8edd3075d7f375e7147","time":1796214664,"originalLength":2000000,"length":2000028,"packOffset":2391790,"contentID":"95919e04bf68c738bb735fcc8f282aaa","deleted":false,"formatVersion":3},
 {"packFile":"pf4c27179601a56880a17cc5a0085522d-s8edd3075d7f375e7147","time":1796214664,"originalLength":2,"length":30,"packOffset":4391818,"contentID":"b7b5e38eb039af2b065a315f999d63e5","deleted":false,"formatVersion":3},
 {"packFile":"qe865504c64f65192bc252515fcad2137-s8edd3075d7f375e7147","time":1796214664,"originalLength":424,"length":288,"packOffset":32,"contentID":"k313d2cc46bc33c3468a3bf607ef9b6bb","deleted":false,"formatVersion":3}
]"#;
    const BLOBS: &str = r#"[
 {"id":"pf4c27179601a56880a17cc5a0085522d-s8edd3075d7f375e7147","length":10002768,"timestamp":"2026-12-02T12:31:04.885808199Z"},
 {"id":"qe865504c64f65192bc252515fcad2137-s8edd3075d7f375e7147","length":4577,"timestamp":"2026-12-02T12:31:04.885808199Z"}
]"#;

    #[test]
    fn a_mostly_dead_pack_has_its_live_contents_rewritten() {
        let contents: Vec<ContentJson> = parse_list(CONTENTS).unwrap();
        let blobs: Vec<BlobJson> = parse_list(BLOBS).unwrap();
        assert_eq!(
            packs_to_compact(&contents, &blobs),
            [
                "95919e04bf68c738bb735fcc8f282aaa",
                "b7b5e38eb039af2b065a315f999d63e5"
            ]
        );
    }

    #[test]
    fn a_full_pack_and_a_small_metadata_pack_are_left_alone() {
        let contents: Vec<ContentJson> = parse_list(CONTENTS).unwrap();
        let full = [BlobJson {
            id: "pf4c27179601a56880a17cc5a0085522d-s8edd3075d7f375e7147".into(),
            length: 2_000_100,
        }];
        assert!(packs_to_compact(&contents, &full).is_empty());
        // The q pack's overhead (header, local index) is 40% of it, but
        // a few KB: not worth a rewrite.
        let blobs: Vec<BlobJson> = parse_list(BLOBS).unwrap();
        let only_q = &blobs[1..];
        assert!(packs_to_compact(&contents, only_q).is_empty());
    }

    #[test]
    fn deleted_contents_count_as_dead() {
        let mut contents: Vec<ContentJson> = parse_list(CONTENTS).unwrap();
        contents[0].deleted = true;
        let blobs: Vec<BlobJson> = parse_list(BLOBS).unwrap();
        assert_eq!(
            packs_to_compact(&contents, &blobs),
            ["b7b5e38eb039af2b065a315f999d63e5"]
        );
    }

    #[test]
    fn an_empty_listing_is_nothing() {
        assert!(parse_list::<BlobJson>("").unwrap().is_empty());
        assert!(parse_list::<BlobJson>("null").unwrap().is_empty());
    }
}
