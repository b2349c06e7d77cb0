//! A blob much larger than what the server may hold in memory streams
//! through `snapstorm serve` in both directions.

mod common;

use std::io::Read;

use common::{ServeProcess, write_htpasswd};
use sha2::{Digest, Sha256};

const BLOB_BYTES: u64 = 768 * 1024 * 1024;
/// Generous bound for a server that streams: buffers, runtime, allocator slack.
const MEMORY_BOUND: u64 = 128 * 1024 * 1024;

/// Produces `len` bytes of a cheap, position-dependent pattern without
/// holding them: the client side must not need the blob in memory either.
struct PatternReader {
    position: u64,
    len: u64,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = (self.len - self.position) as usize;
        let n = buf.len().min(left);
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            let p = self.position + i as u64;
            *byte = (p as u8) ^ ((p >> 12) as u8).wrapping_mul(31);
        }
        self.position += n as u64;
        Ok(n)
    }
}

fn pattern() -> PatternReader {
    PatternReader {
        position: 0,
        len: BLOB_BYTES,
    }
}

fn sha256_of(mut reader: impl Read) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

#[test]
fn large_blob_streams_without_sitting_in_server_memory() {
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("big", "pw")]);
    let data_dir = work.path().join("repos");
    let server = ServeProcess::start(&[
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ]);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let base = format!("http://{}/repo", server.addr);
    let created = client
        .post(format!("{base}/?create=true"))
        .basic_auth("big", Some("pw"))
        .send()
        .unwrap();
    assert!(created.status().is_success());

    let id = sha256_of(pattern());
    let uploaded = client
        .post(format!("{base}/data/{id}"))
        .basic_auth("big", Some("pw"))
        .body(reqwest::blocking::Body::sized(pattern(), BLOB_BYTES))
        .send()
        .unwrap();
    assert!(uploaded.status().is_success(), "{:?}", uploaded.text());
    let stored = data_dir.join("repo/data").join(&id[..2]).join(&id);
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), BLOB_BYTES);

    let download = client
        .get(format!("{base}/data/{id}"))
        .basic_auth("big", Some("pw"))
        .send()
        .unwrap();
    assert!(download.status().is_success());
    assert_eq!(
        sha256_of(download),
        id,
        "downloaded content is what was uploaded"
    );

    let peak = server.peak_rss();
    assert!(
        peak < MEMORY_BOUND,
        "server peak RSS {} MiB for a {} MiB blob: it buffers instead of streaming",
        peak >> 20,
        BLOB_BYTES >> 20
    );
    println!(
        "server peak RSS {} MiB for a {} MiB blob",
        peak >> 20,
        BLOB_BYTES >> 20
    );
}
