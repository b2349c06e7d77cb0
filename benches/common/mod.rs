//! What the file benches share: timing, their scratch directory and the
//! data sets they measure on.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::RngExt;

/// Each side is timed this many times; the best time counts.
const RUNS: usize = 3;

pub fn best_of(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// A scratch directory under `SNAPSTORM_BENCH_DIR` (default: here), after
/// printing the machine's core count.
pub fn scratch() -> tempfile::TempDir {
    println!(
        "cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    tempfile::tempdir_in(std::env::var_os("SNAPSTORM_BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("temp dir for the bench files")
}

/// 10,000 random files of 4 KiB in each of `dirs` (the same content in
/// every one); their names.
pub fn small_files(rng: &mut impl RngExt, dirs: &[&Path]) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    (0..10_000)
        .map(|i| {
            rng.fill(&mut buf[..]);
            let name = format!("f{i:05}");
            for dir in dirs {
                std::fs::write(dir.join(&name), &buf).unwrap();
            }
            name
        })
        .collect()
}

/// One random file of 1 GiB named `big` in each of `dirs` (the same content).
pub fn one_large_file(rng: &mut impl RngExt, dirs: &[&Path]) {
    use std::io::Write;
    let mut files: Vec<_> = dirs
        .iter()
        .map(|dir| std::io::BufWriter::new(std::fs::File::create(dir.join("big")).unwrap()))
        .collect();
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        rng.fill(&mut chunk[..]);
        for file in &mut files {
            file.write_all(&chunk).unwrap();
        }
    }
    for file in &mut files {
        file.flush().unwrap();
    }
}
