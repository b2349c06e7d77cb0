//! The run's page for a large run: 64 clients for 30 minutes (about
//! 230,000 actions at two a second per client, five faults, twenty
//! failures), synthesised in the trace's own types and drawn as
//! `snapstorm report` draws it. The goals are a page under ~5 MB and drawn
//! in under 2 s; it prints the page's size and the median and worst of
//! ten draws, then criterion's own figure.
//!
//! Run with `cargo bench --bench report_page`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use snapstorm::engine::record::{ActionParams, ActionRecord};
use snapstorm::engine::store::{Failure, FailureKind};
use snapstorm::engine::trace::{FaultLine, RunStartLine, TraceLine};
use snapstorm::engine::{Action, ClientId, Origin, Outcome};
use snapstorm::faults::FaultKind;
use snapstorm::page::Story;

const CLIENTS: u32 = 64;
const RUN_MS: u64 = 30 * 60 * 1000;
/// Each client's mean action length plus the pause after it.
const STEP_MS: u64 = 500;

/// A small deterministic generator: the same trace every time.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FAULTS: [(FaultKind, u64, Option<u64>); 5] = [
    (FaultKind::Network, 120_000, Some(60_000)),
    (FaultKind::CorruptPack, 400_000, None),
    (FaultKind::ServerRestart, 700_000, Some(20_000)),
    (FaultKind::KillClient, 1_000_000, None),
    (FaultKind::Network, 1_400_000, Some(120_000)),
];

fn label(kind: FaultKind, at: u64) -> String {
    format!("{}@{:.1}s", kind.name(), at as f64 / 1000.0)
}

fn trace() -> (Vec<TraceLine>, Vec<Failure>) {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let mut lines = vec![TraceLine::Start(Box::new(RunStartLine {
        time: "2026-01-01T00:00:00.000Z".into(),
        run: 1,
        start: true,
        seed: 1,
        scenario: "randomized-small".into(),
        scenario_toml: String::new(),
        clients: CLIENTS,
        duration_ms: Some(RUN_MS),
        actions_per_client: None,
        faults: FAULTS
            .iter()
            .map(|(kind, at, _)| label(*kind, *at))
            .collect(),
    }))];
    for (order, (kind, at, duration)) in FAULTS.iter().enumerate() {
        lines.push(TraceLine::Fault(Box::new(FaultLine {
            time: "2026-01-01T00:00:00.000Z".into(),
            run: 1,
            fault: label(*kind, *at),
            kind: *kind,
            target: "data/ab/ab12".into(),
            client: None,
            duration_ms: *duration,
            spec: None,
            at_ms: *at,
            order: order as u64,
        })));
    }
    let kinds = [
        Action::WriteRandomFiles,
        Action::SnapshotRoot,
        Action::RestoreRandomSnapshot,
        Action::DeleteRandomSnapshot,
        Action::DeleteFiles,
        Action::DeleteRandomSubdirectory,
    ];
    let mut failures = Vec::new();
    let mut snapshots: Vec<String> = Vec::new();
    for client in 1..=CLIENTS {
        let mut at = draw.below(1000);
        let mut seq = 0;
        while at < RUN_MS {
            let action = kinds[draw.below(kinds.len() as u64) as usize];
            let duration = match action {
                Action::SnapshotRoot | Action::RestoreRandomSnapshot => 50 + draw.below(2000),
                _ => draw.below(300),
            };
            let in_fault = FAULTS
                .iter()
                .find(|(_, start, length)| at >= *start && at < start + length.unwrap_or(30_000));
            let roll = draw.below(1000);
            let (outcome, explained_by) = match in_fault {
                Some((kind, start, _)) if roll < 150 => {
                    (Outcome::Error, Some(label(*kind, *start)))
                }
                _ if roll < 3 => (Outcome::Error, None),
                _ if roll < 30 => (Outcome::NoOp, None),
                _ => (Outcome::Ok, None),
            };
            let snapshot = match (action, outcome) {
                (Action::SnapshotRoot, Outcome::Ok) => {
                    let id = format!("{:064x}", draw.next());
                    snapshots.push(id.clone());
                    Some(id)
                }
                (Action::RestoreRandomSnapshot | Action::DeleteRandomSnapshot, Outcome::Ok)
                    if !snapshots.is_empty() =>
                {
                    Some(snapshots[draw.below(snapshots.len() as u64) as usize].clone())
                }
                _ => None,
            };
            let failed = action == Action::RestoreRandomSnapshot
                && snapshot.is_some()
                && failures.len() < 20
                && draw.below(5000) == 0;
            let outcome = if failed { Outcome::Failure } else { outcome };
            if failed {
                failures.push(Failure {
                    run: 1,
                    time: "2026-01-01T00:10:00.000Z".into(),
                    client: ClientId(client),
                    snapshot: snapshot.clone(),
                    action: Origin::Action(action),
                    kind: FailureKind::ContentMismatch,
                    summary: "restored content differs: 1 changed".into(),
                    details: "changed: dir/file-1 (size 4096 → 4096, content differs)\n".repeat(20),
                    explained_by: explained_by.clone(),
                    unreadable: None,
                });
            }
            lines.push(TraceLine::Action(Box::new(ActionRecord {
                time: "2026-01-01T00:00:00.000Z".into(),
                run: 1,
                client: ClientId(client),
                seq,
                order: 0,
                at_ms: at,
                drawn_as: None,
                action,
                params: ActionParams::default(),
                outcome,
                duration_ms: duration,
                snapshot,
                details: [("bytes".to_owned(), serde_json::json!(draw.below(64 << 20)))]
                    .into_iter()
                    .collect(),
                message: (outcome != Outcome::Ok)
                    .then(|| "request failed: connection reset".into()),
                error_class: None,
                final_check: false,
                abandoned: false,
                explained_by,
                live: 3,
                deleted: 1,
                failures: Vec::new(),
            })));
            seq += 1;
            at += duration + draw.below(2 * STEP_MS - duration.min(STEP_MS));
        }
    }
    (lines, failures)
}

fn story() -> Story {
    let (lines, failures) = trace();
    Story::from_lines(
        PathBuf::from("/tmp/snapstorm-bench"),
        lines,
        Some(failures),
        None,
        Vec::new(),
    )
}

/// Writes the trace as a run writes it, into a fresh state dir.
fn state_dir(lines: &[TraceLine], failures: &[Failure]) -> tempfile::TempDir {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("trace.jsonl")).unwrap());
    for line in lines {
        match line {
            TraceLine::Start(start) => serde_json::to_writer(&mut out, start),
            TraceLine::Action(action) => serde_json::to_writer(&mut out, action),
            TraceLine::Fault(fault) => serde_json::to_writer(&mut out, fault),
            TraceLine::Gc(gc) => serde_json::to_writer(&mut out, gc),
            TraceLine::Prune(prune) => serde_json::to_writer(&mut out, prune),
        }
        .unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    let state = serde_json::json!({
        "format": 1, "run_counter": 1, "backend": "embedded", "repository_password": "x",
        "clients": {}, "failures": failures, "runs": [],
    });
    std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
    dir
}

fn report_page(c: &mut Criterion) {
    let (lines, failures) = trace();
    let dir = state_dir(&lines, &failures);
    let trace_mb = std::fs::metadata(dir.path().join("trace.jsonl"))
        .unwrap()
        .len() as f64
        / 1e6;
    let mut whole: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        snapstorm::page::write_page(dir.path(), &dir.path().join("report.html")).unwrap();
        whole.push(start.elapsed());
    }
    whole.sort();
    // To look at the page: REPORT_PAGE_COPY=/tmp/page.html cargo bench --bench report_page
    if let Some(copy) = std::env::var_os("REPORT_PAGE_COPY") {
        std::fs::copy(dir.path().join("report.html"), copy).unwrap();
    }
    eprintln!(
        "report page: `snapstorm report` on the {trace_mb:.0} MB trace (read, draw, write): {:.0} ms median, {:.0} ms worst (5 runs)",
        whole[whole.len() / 2].as_secs_f64() * 1000.0,
        whole[whole.len() - 1].as_secs_f64() * 1000.0,
    );
    let story = story();
    let actions: usize = story.runs.iter().map(|r| r.actions.len()).sum();
    let mut times: Vec<Duration> = Vec::new();
    let mut size = 0;
    for _ in 0..10 {
        let start = Instant::now();
        size = black_box(snapstorm::page::draw(&story)).len();
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "report page: {CLIENTS} clients, 30 min, {actions} actions: {:.2} MB; drawn in {:.0} ms median, {:.0} ms worst (10 draws)",
        size as f64 / 1e6,
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
    let mut group = c.benchmark_group("report_page");
    group.sample_size(10);
    group.bench_function("64 clients, 30 minutes", |b| {
        b.iter(|| black_box(snapstorm::page::draw(&story)))
    });
    group.finish();
}

criterion_group!(benches, report_page);
criterion_main!(benches);
