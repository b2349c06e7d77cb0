//! Snapshots: each from its creation to its deletion (or to the end), with
//! its verified restores and any failure on it. A row per snapshot, in the
//! order they were made. Beyond a few hundred rows, snapshots with a
//! failure are all kept and the others sampled evenly; the page says so.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::axis::{Axis, LEFT, PLOT_WIDTH, clock};
use super::story::{Shade, Story};
use super::timeline::action_title;
use crate::engine::record::ActionRecord;
use crate::engine::{Action, ClientId, Outcome};

/// The most rows drawn.
const MAX_ROWS: usize = 400;
const TOP: u32 = 6;
const BOTTOM: u32 = 24;

/// One snapshot's life, as the trace tells it.
#[derive(Debug, Default)]
struct Life<'a> {
    client: Option<ClientId>,
    /// When it was made (its snapshot action's end); `None`: made before
    /// the trace begins, drawn from its first mention.
    created: Option<u64>,
    first_seen: u64,
    deleted: Option<u64>,
    /// Restores of it (and other actions naming it), with their place on the axis.
    restores: Vec<(u64, &'a ActionRecord)>,
    /// Failures the state dir recorded on it.
    failures: Vec<String>,
}

impl Life<'_> {
    fn failed(&self) -> bool {
        !self.failures.is_empty() || self.restores.iter().any(|(_, a)| Shade::of(a).is_failure())
    }
}

fn lives(story: &Story) -> Vec<(&str, Life<'_>)> {
    let mut order: Vec<&str> = Vec::new();
    let mut lives: BTreeMap<&str, Life> = BTreeMap::new();
    for (at, action) in story.actions() {
        let Some(id) = action.snapshot.as_deref() else {
            continue;
        };
        let life = lives.entry(id).or_insert_with(|| {
            order.push(id);
            Life {
                first_seen: at,
                ..Life::default()
            }
        });
        let end = at + action.duration_ms;
        match (action.action, action.outcome) {
            (Action::SnapshotRoot, Outcome::Ok) => {
                life.created = Some(end);
                life.client = Some(action.client);
            }
            (Action::DeleteRandomSnapshot, Outcome::Ok) => life.deleted = Some(end),
            _ => life.restores.push((at, action)),
        }
    }
    for failure in story.failures.iter().flatten() {
        if let Some(life) = failure.snapshot.as_deref().and_then(|id| lives.get_mut(id)) {
            life.failures.push(format!(
                "{} ({})",
                failure.summary,
                failure.explained_by.as_deref().unwrap_or("unexpected")
            ));
        }
    }
    order
        .into_iter()
        .filter_map(|id| Some((id, lives.remove(id)?)))
        .collect()
}

/// Every snapshot with a failure, and the others evenly sampled, up to `MAX_ROWS`.
fn rows<'a>(lives: Vec<(&'a str, Life<'a>)>) -> (Vec<(&'a str, Life<'a>)>, usize) {
    let all = lives.len();
    if all <= MAX_ROWS {
        return (lives, all);
    }
    let failed = lives.iter().filter(|(_, l)| l.failed()).count();
    let room = MAX_ROWS.saturating_sub(failed).max(1);
    let healthy = all - failed;
    let mut seen = 0usize;
    let kept = lives
        .into_iter()
        .filter(|(_, life)| {
            if life.failed() {
                return true;
            }
            seen += 1;
            (seen * room).div_ceil(healthy) != ((seen - 1) * room).div_ceil(healthy)
        })
        .collect();
    (kept, all)
}

pub fn section(story: &Story) -> Markup {
    let axis = Axis::new(story.total_ms());
    let (rows, all) = rows(lives(story));
    let row_height = (600 / rows.len().max(1) as u32).clamp(3, 14);
    let height = TOP + row_height * rows.len() as u32 + BOTTOM;
    let width = LEFT + PLOT_WIDTH + 10;
    let bottom = TOP + row_height * rows.len() as u32;
    let end = story.total_ms();
    html! {
        section #snapshots {
            h2 { "Snapshots" }
            p.note {
                (all) " snapshot(s), each from its creation to its deletion (or the end of the trace); "
                "● a restore (green: verified), ✕ a failure on it. Hover for details."
                @if rows.len() < all {
                    " Only " (rows.len()) " rows drawn: every snapshot with a failure, the others sampled evenly."
                }
            }
            @if rows.is_empty() {
                p.gap { "no snapshot was made" }
            } @else {
                svg.snapshots width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" {
                    @for (n, (id, life)) in rows.iter().enumerate() {
                        @let y = f64::from(TOP + n as u32 * row_height) + f64::from(row_height) / 2.0;
                        @let from = life.created.unwrap_or(life.first_seen);
                        @let to = life.deleted.unwrap_or(end);
                        line x1=(format!("{:.1}", axis.x(from))) x2=(format!("{:.1}", axis.x(to).max(axis.x(from) + 1.0))) y1=(format!("{y:.1}")) y2=(format!("{y:.1}"))
                            stroke=(if life.failed() { "#d62828" } else { "#4a6fa5" }) stroke-width=(row_height.saturating_sub(1).clamp(1, 4)) {
                            title { (life_title(id, life)) }
                        }
                        @for (at, restore) in &life.restores {
                            circle cx=(format!("{:.1}", axis.x(*at))) cy=(format!("{y:.1}")) r=(f64::from(row_height).min(8.0) / 2.0) fill=(Shade::of(restore).colour()) {
                                title { (action_title(*at, restore)) }
                            }
                        }
                    }
                    @for (ms, label) in axis.ticks() {
                        line x1=(axis.x(ms)) x2=(axis.x(ms)) y1=(bottom) y2=(bottom + 4) stroke="#555" {}
                        text x=(axis.x(ms)) y=(bottom + 16) text-anchor="middle" font-size="11" { (label) }
                    }
                }
            }
        }
    }
}

fn life_title(id: &str, life: &Life) -> String {
    let verified = life
        .restores
        .iter()
        .filter(|(_, a)| a.outcome == Outcome::Ok && a.action != Action::VerifyRepo)
        .count();
    let mut title = format!(
        "snapshot {id}{}\n{} · {}\n{verified} verified restore(s)",
        life.client.map(|c| format!(" by {c}")).unwrap_or_default(),
        match life.created {
            Some(at) => format!("made at {}", clock(at)),
            None => format!(
                "made before the trace; first named at {}",
                clock(life.first_seen)
            ),
        },
        match life.deleted {
            Some(at) => format!("deleted at {}", clock(at)),
            None => "never deleted".into(),
        },
    );
    for failure in &life.failures {
        title.push_str("\nfailure: ");
        title.push_str(failure);
    }
    title
}
