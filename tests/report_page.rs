//! The run's page: a real run with faults leaves `report.html` in its
//! state dir and `snapstorm report` draws it again; the page has a lane per
//! client, each fault's band at its time, every failure and fault named,
//! no reference to anything outside it, and Debian's chromium renders it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require_program, snapstorm_run};

/// Text as the page writes it (maud escapes these).
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The value of `attribute` in each tag of `html` that has it.
fn attribute_values(html: &str, tag_start: &str, attribute: &str) -> Vec<String> {
    html.match_indices(tag_start)
        .filter_map(|(at, _)| {
            let tag = &html[at..at + html[at..].find('>')?];
            let from = tag.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
            Some(tag[from..from + tag[from..].find('"')?].to_owned())
        })
        .collect()
}

/// Every tag of the page (`<…>`), with what it refers to.
fn tags(html: &str) -> Vec<&str> {
    html.split('<')
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(tag, _)| tag))
        .collect()
}

fn assert_self_contained(html: &str) {
    for tag in tags(html) {
        assert!(
            !tag.contains("http") && !tag.contains("//") && !tag.contains("src="),
            "a tag refers outside the page: <{tag}>"
        );
        assert!(
            !tag.starts_with("script") && !tag.starts_with("link"),
            "<{tag}>"
        );
    }
    assert!(!html.contains("@import") && !html.contains("url("));
}

/// Renders `page` in headless chromium at `width`×`height` and returns the
/// PNG's size and how many of its pixels are not white.
fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> (u32, u32, usize) {
    let chromium = require_program("chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={width},{height}"),
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && png.is_file(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.line_size / info.width as usize;
    let inked = pixels[..info.line_size * info.height as usize]
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|&c| c < 0xf0))
        .count();
    (info.width, info.height, inked)
}

#[test]
fn a_run_with_faults_leaves_a_page_that_names_them_and_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("report.json");
    let (code, _, err, json) = snapstorm_run(
        &state,
        &report,
        &[
            "--clients",
            "3",
            "--duration",
            "8s",
            "--seed",
            "1",
            "--fault",
            "network@2s:3s",
            "--fault",
            "corrupt-pack@5s",
        ],
    );
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    assert!(
        state.join("report.html").is_file(),
        "the run left no report.html: {err}"
    );
    assert!(err.contains("page written to"), "{err}");

    let page = dir.path().join("page.html");
    let out = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args([
            "report",
            state.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html,
        std::fs::read_to_string(state.join("report.html")).unwrap(),
        "the page the run left and the one `snapstorm report` draws differ"
    );

    let lanes = attribute_values(&html, "<text class=\"lane\"", "class").len();
    assert_eq!(lanes, 3, "one lane per client");
    for client in 1..=3 {
        assert!(html.contains(&format!(">client-{client}</text>")));
    }

    // Each fault: named, and its band (or line) where its time puts it.
    let total_ms: f64 = attribute_values(&html, "<svg class=\"timeline\"", "data-total-ms")[0]
        .parse()
        .unwrap();
    let bands = attribute_values(&html, "<rect class=\"band\"", "data-at-ms");
    let band_x = attribute_values(&html, "<rect class=\"band\"", "x");
    let faults = json["faults"].as_array().unwrap();
    assert!(!faults.is_empty());
    for fault in faults {
        let label = fault["label"].as_str().unwrap();
        assert!(html.contains(&escaped(label)), "fault {label} not named");
        if fault["kind"] == "network" {
            let at = fault["at_ms"].as_u64().unwrap();
            let at_text = at.to_string();
            let band = bands
                .iter()
                .position(|b| *b == at_text)
                .unwrap_or_else(|| panic!("no band for {label} at {at} ms: {bands:?}"));
            let x: f64 = band_x[band].parse().unwrap();
            let expected = 70.0 + at as f64 * 1200.0 / total_ms;
            assert!((x - expected).abs() < 0.2, "{label}: x {x}, not {expected}");
        }
    }
    // Every failure: named with its cause.
    let failures = json["failures"].as_array().unwrap();
    for failure in failures {
        let summary = failure["summary"].as_str().unwrap();
        assert!(
            html.contains(&escaped(summary)),
            "failure not named: {summary}"
        );
        let cause = failure["explained_by"].as_str().unwrap_or("unexpected");
        assert!(html.contains(&escaped(cause)));
    }
    if !failures.is_empty() {
        assert!(html.contains("snapstorm shrink"));
    }
    assert_self_contained(&html);

    let width: u32 = attribute_values(&html, "<meta name=\"viewport\"", "content")[0]
        .strip_prefix("width=")
        .unwrap()
        .parse()
        .unwrap();
    let png = dir.path().join("page.png");
    let (w, h, inked) = screenshot(&page, &png, width, 1600);
    assert_eq!((w, h), (width, 1600), "the screenshot's size");
    let share = inked as f64 / f64::from(w * h);
    assert!(
        share > 0.03,
        "the screenshot is blank: {share:.4} of it inked"
    );
}

#[test]
fn a_dir_that_is_no_state_dir_is_refused_in_one_line_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.html");
    let out = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args([
            "report",
            dir.path().to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("not a state dir") && err.contains("--state-dir"),
        "{err}"
    );
    assert!(!page.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_damaged_trace_is_refused_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trace.jsonl"), "{\"run\":1}\nnot json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(["report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trace.jsonl:1") || err.contains("trace.jsonl:2"),
        "{err}"
    );
    assert!(!dir.path().join("report.html").exists());
}
