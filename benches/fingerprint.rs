//! Fingerprint speed against `b3sum` on the same files, in the same run.
//!
//! Two sets: 10,000 files of 4 KiB, and one 1 GiB file. Each is timed three
//! times (files already in the page cache) and the best time counts. The
//! ratio printed is b3sum's time divided by snapstorm's: 1.0 means as fast,
//! the target is at least 0.8.
//!
//! Run with `cargo bench --bench fingerprint`; it needs `b3sum` on PATH
//! (`apt-get install -y b3sum`) and says so when it is missing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand::SeedableRng;
use snapstorm::engine::fingerprint::Fingerprint;

use common::best_of;

fn b3sum(dir: &Path, names: &[String]) {
    let status = Command::new("b3sum")
        .arg("--no-names")
        .args(names)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("b3sum on PATH (apt-get install b3sum)");
    assert!(status.success());
}

fn compare(label: &str, dir: &Path, names: &[String], bytes: u64) {
    // Warm the page cache so both sides read from memory.
    b3sum(dir, names);
    let ours = best_of(|| {
        let fingerprint = Fingerprint::of_tree(dir).expect("fingerprint");
        assert_eq!(fingerprint.content_bytes(), bytes);
    });
    let theirs = best_of(|| b3sum(dir, names));
    let gib_s = |d: Duration| bytes as f64 / d.as_secs_f64() / f64::from(1 << 30);
    println!(
        "{label:<22} snapstorm {:>8.1} ms ({:.2} GiB/s)   b3sum {:>8.1} ms ({:.2} GiB/s)   ratio {:.2}x",
        ours.as_secs_f64() * 1e3,
        gib_s(ours),
        theirs.as_secs_f64() * 1e3,
        gib_s(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; there are no other options.
    if Command::new("b3sum").arg("--version").output().is_err() {
        eprintln!(
            "fingerprint bench: `b3sum` is not on PATH; it is what snapstorm is measured against: install it with `apt-get install -y b3sum`"
        );
        std::process::exit(2);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let root = common::scratch();

    let small = root.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let names = common::small_files(&mut rng, &[&small]);
    compare("10,000 x 4 KiB", &small, &names, 10_000 * 4096);

    let large = root.path().join("large");
    std::fs::create_dir(&large).unwrap();
    common::one_large_file(&mut rng, &[&large]);
    compare("1 x 1 GiB", &large, &["big".to_owned()], 1 << 30);
}
