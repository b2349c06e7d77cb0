//! How long the console takes to draw a full frame with 64 clients, into
//! ratatui's TestBackend (no terminal I/O: the cost is snapstorm's own
//! layout and widgets). The goal is a median under 2 ms.
//!
//! Run with `cargo bench --bench console`.

#[path = "../tests/common/console.rs"]
mod console_fixtures;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use snapstorm::console::app::App;
use snapstorm::console::layout;
use snapstorm::console::theme::Theme;
use snapstorm::engine::record::ActionRecord;
use snapstorm::engine::stats::{ClientCounts, ClientReport, Counts};
use snapstorm::engine::traits::ClientId;
use snapstorm::engine::{Action, Outcome};
use snapstorm::run::Event;

const CLIENTS: u32 = 64;
/// A large terminal, so that every client's row is drawn.
const WIDTH: u16 = 200;
const HEIGHT: u16 = 90;

/// A finished action of `client`, as the console receives it.
fn record(client: u32, seq: u64, action: Action, ms: u64) -> ActionRecord {
    console_fixtures::record(client, seq, action, Outcome::Ok, ms, 1)
}

/// 64 clients that have each done a few actions, half of them busy now,
/// with a minute of throughput history: what the console shows mid-run.
fn busy_app() -> (App, Instant) {
    let t0 = Instant::now();
    let mut app = App::new(&console_fixtures::info(), t0, Theme::coloured());
    let script = [
        Action::WriteRandomFiles,
        Action::SnapshotRoot,
        Action::RestoreRandomSnapshot,
        Action::DeleteFiles,
    ];
    let mut counts = Counts::default();
    for client in 1..=CLIENTS {
        app.apply_event(Event::ClientAdded(ClientId(client)));
        for (seq, action) in script.iter().enumerate() {
            let ms = 100 + u64::from(client) * 7 + seq as u64;
            app.apply_event(Event::ActionFinished(Box::new(record(
                client, seq as u64, *action, ms,
            ))));
        }
        let own = ClientCounts {
            actions: script.len() as u64,
            snapshots_created: 1,
            snapshots_live: 1,
            restores_verified: 1,
            ..ClientCounts::default()
        };
        counts.totals.actions += own.actions;
        counts.totals.snapshots_created += own.snapshots_created;
        counts.totals.snapshots_live += own.snapshots_live;
        counts.totals.restores_verified += own.restores_verified;
        counts.clients.push(ClientReport {
            id: ClientId(client),
            kind: Some("rustic".into()),
            counts: own,
        });
    }
    app.set_counts(counts, CLIENTS as usize);
    let now = t0 + Duration::from_secs(75);
    for client in (1..=CLIENTS).step_by(2) {
        app.apply_event(Event::ActionStarted {
            client: ClientId(client),
            action: Action::SnapshotRoot,
            at: now - Duration::from_millis(u64::from(client) * 20),
        });
    }
    app.repo_bytes = Some(512 * 1024 * 1024);
    app.counts.throughput = std::iter::once(app.counts.totals.actions)
        .chain(std::iter::repeat_n(0, 74))
        .collect();
    app.tick(now);
    (app, now)
}

fn full_frame(c: &mut Criterion) {
    let (app, _) = busy_app();
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test backend");
    c.bench_function("console frame, 64 clients, 200x90", |b| {
        b.iter(|| {
            terminal
                .draw(|frame| layout::draw(frame, black_box(&app)))
                .expect("draw");
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = full_frame
}
criterion_main!(benches);
