//! Verifying a restored tree against its fingerprint, against `diff -r` of
//! the same two trees, in the same run.
//!
//! What a restore's verification costs: the fingerprint of the original
//! was taken when the snapshot was (so it is not timed); the restored tree
//! is fingerprinted and the two compared. `diff -r` has to read both trees.
//! Two sets: 10,000 files of 4 KiB, and one 1 GiB file. Each side is timed
//! three times with the files in the page cache, and the best time counts.
//! The ratio printed is diff's time divided by snapstorm's: above 1.0 means
//! snapstorm is faster.
//!
//! Run with `cargo bench --bench verify`; `benches/compare.sh` runs it too.

mod common;

use std::path::Path;
use std::process::Command;

use rand::SeedableRng;
use snapstorm::engine::fingerprint::{CompareOptions, Fingerprint};

use common::best_of;

fn diff_r(original: &Path, restored: &Path) {
    let status = Command::new("diff")
        .arg("-r")
        .arg(original)
        .arg(restored)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("diff on PATH");
    assert!(status.success(), "the trees are the same");
}

fn compare(label: &str, original: &Path, restored: &Path) {
    let expected = Fingerprint::of_tree(original).expect("fingerprint of the original");
    // Warm the page cache so both sides read from memory.
    diff_r(original, restored);
    let ours = best_of(|| {
        let actual = Fingerprint::of_tree(restored).expect("fingerprint of the restore");
        assert!(expected.diff(&actual, CompareOptions::default()).is_empty());
    });
    let theirs = best_of(|| diff_r(original, restored));
    println!(
        "{label:<22} snapstorm {:>8.1} ms   diff -r {:>8.1} ms   ratio {:.2}x",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; there are no other options.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let root = common::scratch();
    let dirs = |set: &str| {
        let (a, b) = (
            root.path().join(set).join("original"),
            root.path().join(set).join("restored"),
        );
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        (a, b)
    };

    let (a, b) = dirs("small");
    common::small_files(&mut rng, &[&a, &b]);
    compare("10,000 x 4 KiB", &a, &b);
    std::fs::remove_dir_all(root.path().join("small")).unwrap();

    let (a, b) = dirs("large");
    common::one_large_file(&mut rng, &[&a, &b]);
    compare("1 x 1 GiB", &a, &b);
}
