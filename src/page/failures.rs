//! Failures: each with its diff, the fault that explains it or
//! `unexpected`, and the command that shrinks it. The diffs are
//! `state.json`'s (the trace keeps only a failure's summary line); when it
//! cannot be read, the trace's failed actions are listed without them.

use maud::{Markup, html};

use super::axis::clock;
use super::story::Story;
use crate::engine::Outcome;
use crate::reproduce::shrink::shrink_command;

pub fn section(story: &Story) -> Markup {
    let shrink = shrink_command(&story.state_dir, std::path::Path::new("minimal.toml"));
    let last_failed_run = story.failures.iter().flatten().map(|f| f.run).max();
    html! {
        section #failures {
            h2 { "Failures" }
            @match &story.failures {
                Some(failures) if failures.is_empty() => p { "No failure in any run." },
                Some(failures) => {
                    p.note {
                        "Shrinking works on the last run that found a failure (run " (last_failed_run.unwrap_or(0)) "): "
                        code { (shrink) }
                    }
                    @for failure in failures {
                        div.failure.(if failure.explained_by.is_none() { "unexpected" } else { "explained" }) {
                            h3 {
                                (failure.kind.name()) " · run " (failure.run) " · " (failure.client) " · " (failure.action.name())
                                @if let Some(id) = &failure.snapshot { " · snapshot " code { (id) } }
                            }
                            p {
                                "Cause: "
                                @match &failure.explained_by {
                                    Some(fault) => strong { (fault) },
                                    None => strong.unexpected { "unexpected" },
                                }
                                " · " (failure.time)
                            }
                            p { (failure.summary) }
                            @if let Some(unreadable) = &failure.unreadable {
                                p.note { "Could not read: " (unreadable.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                            }
                            pre { (failure.details) }
                            @if Some(failure.run) == last_failed_run {
                                p { "Shrink it: " code { (shrink) } }
                            }
                        }
                    }
                }
                None => {
                    p.gap { "state.json cannot be read: the trace's failed actions, without their diffs." }
                    @for (at, action) in story.actions().filter(|(_, a)| a.outcome == Outcome::Failure) {
                        div.failure.(if action.explained_by.is_none() { "unexpected" } else { "explained" }) {
                            h3 { "run " (action.run) " · " (action.client) " · " (action.action.name()) " at " (clock(at)) }
                            p { "Cause: " strong { (action.explained_by.as_deref().unwrap_or("unexpected")) } }
                            p { (action.message.as_deref().unwrap_or("")) }
                            p { "Shrink it: " code { (shrink) } }
                        }
                    }
                }
            }
        }
    }
}
