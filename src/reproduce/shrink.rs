// Over 500 lines: the delta debugging search is one algorithm, its phases sharing its state.
//! Shrinking: the smallest run that still fails the same way. Delta
//! debugging (Zeller's ddmin) over a recording: first a prune and the
//! backup it raced, where the recording names one; then whole clients,
//! single actions and faults, shorter faults and smaller files. Each
//! candidate is tried up to N times, and counts as failing if enough tries
//! find the recording's kind of failure (a race does not fail every time).
//! Runs may go at once (`parallel`): a candidate's tries, and the next
//! candidates ddmin would try if this one passes. A run that waits (a
//! paused client, the recorded gaps) leaves the machine idle, and each run
//! is independent, on a fresh repository.
//!
//! The search runs candidates through a runner it is given, so it is the
//! same against the embedded backend and against a test backend.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytesize::ByteSize;

use crate::engine::options::ActionOptions;
use crate::engine::scenario::{ClientScript, Scenario, Schedule};
use crate::faults::FaultSpec;
use crate::reproduce::replay::{Found, Recording, renumber, scripted};

/// How big a run is: what a shrink makes smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    pub clients: usize,
    pub actions: usize,
    pub faults: usize,
}

impl Size {
    pub fn of(scenario: &Scenario) -> Size {
        Size {
            clients: scenario.clients.len(),
            actions: scenario.clients.iter().map(|c| c.steps.len()).sum(),
            faults: scenario.faults.len(),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{} · {} · {}",
            plural(self.clients, "client"),
            plural(self.actions, "action"),
            plural(self.faults, "fault")
        )
    }
}

/// What the search reports after each candidate.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub phase: &'static str,
    pub candidates: usize,
    pub runs: usize,
    /// The candidate just tried, and whether it failed the same way.
    pub tried: Size,
    pub failed: bool,
    pub best: Size,
    /// How many of a candidate's tries must fail, once known.
    pub at_least: Option<u32>,
    pub elapsed: Duration,
    /// The candidate, when it is the new smallest failing one (worth
    /// writing down at once: the search may be stopped any moment).
    pub new_best: Option<&'a Scenario>,
}

/// How a shrink is run.
pub struct ShrinkConfig {
    /// Tries per candidate.
    pub tries: u32,
    /// How many runs go at once (at least 1): a candidate's tries, and
    /// the candidates after it.
    pub parallel: u32,
    /// How many of a candidate's tries must fail the same way.
    pub at_least: AtLeast,
    /// The search stops after this long, keeping the best found: the runs
    /// in hand then are stopped (the recording's own tries excepted).
    pub budget: Duration,
    pub schedule: Schedule,
}

/// How many of a candidate's tries must fail the same way for it to count
/// as failing. More than one keeps only candidates that fail reliably, where
/// a race that fails once in a while would otherwise shrink to a lucky run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLeast {
    /// This many (1: any).
    Tries(u32),
    /// As many as the recording's own tries: the recording gets all its
    /// tries, and a candidate must fail as often. A race that fails every
    /// time then shrinks only to candidates that fail every time, one that
    /// fails now and then to candidates that fail at least once.
    AsRecorded,
}

/// What runs made at once found: each run's failures, one for each
/// scenario given and in that order, or `None` when they were cut short
/// (the shrink is stopping, or the runs were stopped at the moment they
/// were given; fewer answers than scenarios say the same).
pub type TryResults = Option<Vec<Vec<Found>>>;

/// Runs the scenarios it is given once each, all at once, and stops them
/// at the moment given, if any: a run stopped there has no answer.
pub type Runner<'a> = dyn FnMut(&[&Scenario], Option<Instant>) -> TryResults + 'a;

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Nothing smaller fails the same way.
    Minimal,
    /// The budget ran out.
    Budget,
    /// Asked to stop (Ctrl-C).
    Stopped,
    /// The recording itself did not fail the same way in any try.
    NotReproduced,
}

pub struct Shrunk {
    /// The smallest scenario that failed the same way.
    pub scenario: Scenario,
    pub before: Size,
    pub after: Size,
    pub candidates: usize,
    pub runs: usize,
    pub ended: Ended,
    /// How many of a candidate's tries had to fail (with
    /// [`AtLeast::AsRecorded`], as many as the recording's did).
    pub at_least: u32,
    /// Runs stopped in hand when the budget ran out (their answers unknown).
    pub cut: usize,
    /// Candidates that passed without a run: each left out the fault that
    /// explains every failure looked for.
    pub skipped: usize,
}

/// One action or fault of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Unit {
    Step { client: usize, step: usize },
    Fault(usize),
}

/// The search's state: what is kept, and how the rest is scaled down.
#[derive(Debug, Clone)]
struct Candidate {
    units: Vec<Unit>,
    /// Durations of the faults, by index in the recording.
    durations: Vec<Option<Duration>>,
    options: ActionOptions,
    action_options: Vec<(crate::engine::Action, ActionOptions)>,
}

enum Verdict {
    Fails,
    Passes,
    Stop,
}

/// A candidate's tries so far.
struct Trial {
    scenario: Scenario,
    /// The scenario as written, by which a candidate met again is known.
    key: String,
    /// Not met before: its tries are run and told.
    fresh: bool,
    failing: u32,
    done: u32,
    /// Known once enough tries tell either way.
    failed: Option<bool>,
    /// No try of it has failed alone yet (runs go at once).
    unconfirmed: bool,
}

struct Search<'a> {
    recording: &'a Recording,
    config: &'a ShrinkConfig,
    runner: &'a mut Runner<'a>,
    progress: &'a mut dyn FnMut(&Progress<'_>),
    stop: &'a dyn Fn() -> bool,
    seen: HashMap<String, bool>,
    candidates: usize,
    runs: usize,
    started: Instant,
    /// When the runs in hand are stopped: the budget's end, once the
    /// recording's own tries have told whether there is anything to shrink.
    cut_at: Option<Instant>,
    /// Runs stopped in hand by `cut_at`.
    cut: usize,
    /// Candidates settled as passing without a run (see [`Shrunk::skipped`]).
    skipped: usize,
    /// Whether the recording's own scenario holds the faults that explain
    /// its failures: only then is a candidate without them known to pass.
    faults_explain: bool,
    best: Candidate,
    phase: &'static str,
    ended: Option<Ended>,
    /// How many of a candidate's tries must fail; `None` while the
    /// recording's tries measure it.
    needed: Option<u32>,
}

/// Shrinks `recording` to the smallest scenario whose run still finds one
/// of its kinds of failure. `runner` runs each scenario it is given once,
/// all at once (never more than `config.parallel`; a candidate's tries are
/// its scenario given several times), and stops them at the moment it is
/// given (the budget's end); `stop` is asked between rounds (and the
/// runner should end its runs early when it says so).
pub fn shrink(
    recording: &Recording,
    config: &ShrinkConfig,
    runner: &mut Runner<'_>,
    progress: &mut dyn FnMut(&Progress<'_>),
    stop: &dyn Fn() -> bool,
) -> Shrunk {
    // In the order they started: ddmin's halves are then stretches of the
    // run (all that came after the failure, say), not clients again.
    let mut units: Vec<(Option<u64>, Unit)> = recording
        .recorded
        .clients
        .iter()
        .enumerate()
        .flat_map(|(client, script)| {
            script
                .steps
                .iter()
                .enumerate()
                .map(move |(step, s)| (s.order, Unit::Step { client, step }))
        })
        .chain(
            recording
                .recorded
                .faults
                .iter()
                .enumerate()
                .map(|(i, f)| (f.after, Unit::Fault(i))),
        )
        .collect();
    units.sort_by_key(|(order, _)| *order);
    let units: Vec<Unit> = units.into_iter().map(|(_, unit)| unit).collect();
    let whole = Candidate {
        units,
        durations: recording
            .recorded
            .faults
            .iter()
            .map(|f| f.duration)
            .collect(),
        options: recording.recorded.scenario.options.clone(),
        action_options: recording
            .recorded
            .scenario
            .action_options
            .iter()
            .map(|(a, o)| (*a, o.clone()))
            .collect(),
    };
    let mut search = Search {
        recording,
        config,
        runner,
        progress,
        stop,
        seen: HashMap::new(),
        candidates: 0,
        runs: 0,
        started: Instant::now(),
        cut_at: None,
        cut: 0,
        skipped: 0,
        faults_explain: false,
        best: whole.clone(),
        phase: "the recording",
        ended: None,
        needed: match config.at_least {
            AtLeast::Tries(k) => Some(k.clamp(1, config.tries.max(1))),
            AtLeast::AsRecorded => None,
        },
    };
    let before = Size::of(&search.scenario(&whole));
    search.faults_explain = recording.could_fail(&search.scenario(&whole));
    // The recording's tries run whole: without their answer there is
    // nothing to shrink (and, with `auto`, no measure of how often).
    if !matches!(search.test(&whole), Verdict::Fails) {
        let ended = search.ended.unwrap_or(Ended::NotReproduced);
        return search.finish(before, ended);
    }
    search.cut_at = Some(search.started + config.budget);
    search.run_phases();
    let ended = search.ended.unwrap_or(Ended::Minimal);
    search.finish(before, ended)
}

impl Search<'_> {
    fn finish(self, before: Size, ended: Ended) -> Shrunk {
        let scenario = self.scenario(&self.best);
        Shrunk {
            after: Size::of(&scenario),
            scenario,
            before,
            candidates: self.candidates,
            runs: self.runs,
            ended,
            at_least: self.needed.unwrap_or(0),
            cut: self.cut,
            skipped: self.skipped,
        }
    }

    fn run_phases(&mut self) {
        // A prune that raced a backup names it: the two alone are the
        // smallest candidate, and the quickest (its run starts at the
        // backup). Measured on one recording, ddmin's halves ran out of
        // budget at 22 actions, every candidate running the first 40 s.
        self.phase = "the race";
        let races = self.races();
        if !races.is_empty() {
            match self.first_failing(&races) {
                Some(Some(first)) => self.best = races[first].clone(),
                Some(None) => {}
                None => return,
            }
        }
        // Whole clients first: the cheapest big cut.
        self.phase = "clients";
        let clients: Vec<usize> = (0..self.recording.recorded.clients.len()).collect();
        let kept = self.ddmin(clients, |best, keep: &[usize]| {
            let mut c = best.clone();
            c.units.retain(|u| match u {
                Unit::Step { client, .. } => keep.contains(client),
                Unit::Fault(_) => true,
            });
            c
        });
        if kept.is_none() {
            return;
        }
        self.phase = "actions and faults";
        let units = self.best.units.clone();
        if self
            .ddmin(units, |best, keep: &[Unit]| {
                let mut c = best.clone();
                c.units = keep.to_vec();
                c
            })
            .is_none()
        {
            return;
        }
        self.phase = "shorter faults";
        let kept_faults: Vec<usize> = self
            .best
            .units
            .iter()
            .filter_map(|u| match u {
                Unit::Fault(i) => Some(*i),
                _ => None,
            })
            .collect();
        for fault in kept_faults {
            while let Some(duration) = self.best.durations[fault] {
                let shorter = duration / 2;
                if shorter < Duration::from_secs(1) {
                    break;
                }
                let mut c = self.best.clone();
                c.durations[fault] = Some(shorter);
                match self.test(&c) {
                    Verdict::Fails => self.best = c,
                    Verdict::Passes => break,
                    Verdict::Stop => return,
                }
            }
        }
        self.phase = "smaller files";
        let writes = self
            .scenario(&self.best)
            .clients
            .iter()
            .flat_map(|c| &c.steps)
            .any(|s| s.action == crate::engine::Action::WriteRandomFiles);
        // Without a write, file sizes change nothing.
        if !writes {
            return;
        }
        loop {
            let c = smaller_files(&self.best);
            let Some(c) = c else { break };
            match self.test(&c) {
                Verdict::Fails => self.best = c,
                Verdict::Passes => break,
                Verdict::Stop => return,
            }
        }
    }

    /// For each prune the recording names a raced backup for: the prune
    /// and that backup alone, then with the backup's client's steps before
    /// it (what it backs up may be what they wrote). Smallest first.
    fn races(&self) -> Vec<Candidate> {
        let recorded = &self.recording.recorded;
        let mut alone = Vec::new();
        let mut with_before = Vec::new();
        for (fault, spec) in recorded.faults.iter().enumerate() {
            let Some(race) = spec.races else { continue };
            let Some((client, script)) = recorded
                .clients
                .iter()
                .enumerate()
                .find(|(_, script)| script.draws_as == race.client)
            else {
                continue;
            };
            let Some(raced) = script.steps.iter().position(|s| s.seq == race.seq) else {
                continue;
            };
            let keeping = |first: usize| {
                let mut c = self.best.clone();
                c.units.retain(|unit| match *unit {
                    Unit::Fault(f) => f == fault,
                    Unit::Step {
                        client: owner,
                        step,
                    } => owner == client && (first..=raced).contains(&step),
                });
                c
            };
            alone.push(keeping(raced));
            if raced > 0 {
                with_before.push(keeping(0));
            }
        }
        alone.extend(with_before);
        alone
    }

    /// ddmin over `items`, each subset made a candidate by `make` from the
    /// best so far. `None` when the search was stopped.
    fn ddmin<T: Clone>(
        &mut self,
        mut items: Vec<T>,
        make: impl Fn(&Candidate, &[T]) -> Candidate,
    ) -> Option<Vec<T>> {
        let mut n = 2usize;
        while items.len() >= 2 {
            let chunks = split(&items, n);
            let mut reduced = false;
            // Complements first: a failure that needs parts of several chunks survives them.
            let complements: Vec<Vec<T>> = (0..chunks.len())
                .map(|skip| {
                    chunks
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .flat_map(|(_, c)| c.iter().cloned())
                        .collect()
                })
                .collect();
            let candidates: Vec<Candidate> =
                complements.iter().map(|c| make(&self.best, c)).collect();
            if let Some(first) = self.first_failing(&candidates)? {
                self.best = candidates[first].clone();
                items = complements[first].clone();
                n = (n - 1).max(2);
                reduced = true;
            }
            if !reduced && n > 2 {
                let candidates: Vec<Candidate> =
                    chunks.iter().map(|c| make(&self.best, c)).collect();
                if let Some(first) = self.first_failing(&candidates)? {
                    self.best = candidates[first].clone();
                    items = chunks[first].clone();
                    n = 2;
                    reduced = true;
                }
            }
            if !reduced {
                if n >= items.len() {
                    break;
                }
                n = (n * 2).min(items.len());
            }
        }
        Some(items)
    }

    /// Whether the candidate fails the same way in enough of its tries.
    fn test(&mut self, candidate: &Candidate) -> Verdict {
        match self.first_failing(std::slice::from_ref(candidate)) {
            Some(Some(_)) => Verdict::Fails,
            Some(None) => Verdict::Passes,
            None => Verdict::Stop,
        }
    }

    /// The first of `candidates`, in their order, that fails the same way
    /// in enough of its tries (`Some(None)`: none does; `None`: the search
    /// stops). Their runs share the slots: each round gives every
    /// undecided candidate one more try in turn, then more while slots are
    /// free, so the ones after the first run while it is still undecided.
    fn first_failing(&mut self, candidates: &[Candidate]) -> Option<Option<usize>> {
        let tries = self.config.tries.max(1);
        // The recording, measuring how often it fails, gets every try.
        let measuring = self.needed.is_none();
        let needed = self.needed.unwrap_or(1);
        let mut trials: Vec<Trial> = candidates
            .iter()
            .map(|candidate| {
                let scenario = self.scenario(candidate);
                let key = scenario.to_toml();
                let known = if scenario.clients.is_empty() {
                    // A run with no action is not a run of fixed sequences at all.
                    Some(false)
                } else if let Some(&known) = self.seen.get(&key) {
                    Some(known)
                } else if self.faults_explain && !self.recording.could_fail(&scenario) {
                    // Without the fault that explains the failure it cannot
                    // be found (a third of the candidates of one measured
                    // shrink left both faults out).
                    self.skipped += 1;
                    self.seen.insert(key.clone(), false);
                    Some(false)
                } else {
                    None
                };
                Trial {
                    scenario,
                    key,
                    fresh: known.is_none(),
                    // The recording's own failures need no confirming.
                    unconfirmed: known.is_none() && !measuring && self.config.parallel > 1,
                    failing: 0,
                    done: 0,
                    failed: known,
                }
            })
            .collect();
        loop {
            // One not begun that is now known (the same scenario as one
            // settled meanwhile) is not run again.
            for trial in trials
                .iter_mut()
                .filter(|t| t.failed.is_none() && t.done == 0)
            {
                if let Some(&failed) = self.seen.get(&trial.key) {
                    (trial.failed, trial.fresh, trial.unconfirmed) = (Some(failed), false, false);
                }
            }
            // The answer, once every candidate before the first failing
            // one has passed.
            let front = match trials.iter().position(|t| t.failed != Some(false)) {
                None => return Some(None),
                Some(first) if trials[first].failed == Some(true) && !trials[first].unconfirmed => {
                    // Failing ones are told now: the first as the new best.
                    let best = Size::of(&trials[first].scenario);
                    self.seen.insert(trials[first].key.clone(), true);
                    for (i, trial) in trials.iter().enumerate() {
                        if trial.fresh && trial.failed == Some(true) {
                            self.report(&trial.scenario, true, best, i == first);
                        }
                    }
                    return Some(Some(first));
                }
                // Else the first undecided one; or the first failing one,
                // when it failed only in runs beside others, whose share
                // of the cores can make a race a run alone does not (a
                // shrink found such a scenario that failed 0 of 10 times
                // alone): one try alone must fail too, a round of its own.
                Some(first) => first,
            };
            let confirming = trials[front].failed == Some(true);
            if self.out_of_time() {
                return None;
            }
            let mut round: Vec<usize> = Vec::new();
            if confirming {
                round.push(front);
            } else {
                // One more try for each undecided candidate, in turn, until
                // the slots are taken or each has as many as could still
                // settle it as failing (all of them when measuring).
                let slots = self.config.parallel.max(1) as usize;
                let mut given = vec![0u32; trials.len()];
                loop {
                    let before = round.len();
                    for (i, trial) in trials.iter().enumerate() {
                        let wanted = if measuring {
                            tries - trial.done
                        } else {
                            needed.saturating_sub(trial.failing)
                        };
                        if trial.failed.is_none() && given[i] < wanted && round.len() < slots {
                            given[i] += 1;
                            round.push(i);
                        }
                    }
                    if round.len() == before || round.len() == slots {
                        break;
                    }
                }
            }
            let scenarios: Vec<&Scenario> = round.iter().map(|&i| &trials[i].scenario).collect();
            self.runs += scenarios.len();
            // A runner that gives no result for a run it was given stops
            // the search (it is stopping, or the budget stopped the runs),
            // as one that gives none at all.
            let results = match (self.runner)(&scenarios, self.cut_at) {
                Some(results) if results.len() == round.len() => results,
                _ => {
                    self.ended = Some(if !(self.stop)() && self.budget_spent() {
                        self.cut = round.len();
                        Ended::Budget
                    } else {
                        Ended::Stopped
                    });
                    return None;
                }
            };
            let alone = round.len() == 1;
            for (&i, found) in round.iter().zip(&results) {
                let trial = &mut trials[i];
                trial.done += 1;
                if self.recording.matches(found).is_some() {
                    trial.failing += 1;
                    if alone {
                        trial.unconfirmed = false;
                    }
                } else if confirming {
                    // Its try alone passed: it passes.
                    self.passed(trial);
                }
            }
            for trial in trials.iter_mut().filter(|t| t.failed.is_none()) {
                let (failing, done) = (trial.failing, trial.done);
                // It stops as soon as the answer is known either way.
                let answer = if measuring {
                    (done >= tries).then_some(failing >= 1)
                } else if failing >= needed {
                    Some(true)
                } else if failing + (tries - done) < needed {
                    Some(false)
                } else {
                    None
                };
                match answer {
                    None => {}
                    Some(false) => self.passed(trial),
                    Some(true) => {
                        trial.failed = Some(true);
                        if measuring {
                            self.needed = Some(failing);
                        }
                        // A failing one not confirmed alone is not known to
                        // fail. It is told once the answer is known: only
                        // the first failing one is the new best.
                        if !trial.unconfirmed {
                            self.seen.insert(trial.key.clone(), true);
                        }
                    }
                }
            }
        }
    }

    /// `trial` passes: known from now on, and told.
    fn passed(&mut self, trial: &mut Trial) {
        (trial.failed, trial.unconfirmed) = (Some(false), false);
        self.seen.insert(trial.key.clone(), false);
        let best = self.best_size();
        self.report(&trial.scenario, false, best, false);
    }

    /// Whether the search must stop before the next round: asked to, or
    /// out of time (never during the recording's own tries).
    fn out_of_time(&mut self) -> bool {
        if (self.stop)() {
            self.ended = Some(Ended::Stopped);
        } else if self.budget_spent() {
            self.ended = Some(Ended::Budget);
        }
        self.ended.is_some()
    }

    fn budget_spent(&self) -> bool {
        self.cut_at.is_some_and(|at| Instant::now() >= at)
    }

    fn best_size(&self) -> Size {
        Size::of(&self.scenario(&self.best))
    }

    /// Tells the progress of a candidate settled; `new_best` when it is the
    /// search's next best.
    fn report(&mut self, tried: &Scenario, failed: bool, best: Size, new_best: bool) {
        self.candidates += 1;
        (self.progress)(&Progress {
            phase: self.phase,
            candidates: self.candidates,
            runs: self.runs,
            tried: Size::of(tried),
            failed,
            best,
            at_least: self.needed,
            elapsed: self.started.elapsed(),
            new_best: new_best.then_some(tried),
        });
    }

    /// The candidate as a scenario: clients left without actions are left
    /// out, the rest keep the inputs they drew, places are renumbered.
    fn scenario(&self, candidate: &Candidate) -> Scenario {
        let recording = self.recording;
        let mut clients: Vec<ClientScript> = recording
            .recorded
            .clients
            .iter()
            .enumerate()
            .filter_map(|(index, script)| {
                let steps: Vec<_> = script
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(step, _)| {
                        candidate.units.contains(&Unit::Step {
                            client: index,
                            step: *step,
                        })
                    })
                    .map(|(_, s)| *s)
                    .collect();
                (!steps.is_empty()).then(|| ClientScript {
                    steps,
                    ..script.clone()
                })
            })
            .collect();
        let mut faults: Vec<FaultSpec> = recording
            .recorded
            .faults
            .iter()
            .enumerate()
            .filter(|(i, _)| candidate.units.contains(&Unit::Fault(*i)))
            .map(|(i, f)| FaultSpec {
                duration: candidate.durations[i],
                ..f.clone()
            })
            .collect();
        // GCs asked for by hand stay in every candidate, at their places.
        let mut gcs = recording.recorded.gcs.clone();
        renumber(&mut clients, &mut faults, &mut gcs);
        let mut scenario = scripted(
            &recording.recorded.scenario,
            recording.recorded.seed,
            self.config.schedule,
            &clients,
            &faults,
            &gcs,
        );
        scenario.options = candidate.options.clone();
        scenario.action_options = candidate.action_options.iter().cloned().collect();
        scenario
    }
}

/// The command that shrinks the failure of the run in `state_dir` into
/// `output`: what a front end shows for a failure whose state it kept.
pub fn shrink_command(state_dir: &Path, output: &Path) -> String {
    format!(
        "snapstorm shrink {} -o {}",
        shell_word(&state_dir.display().to_string()),
        shell_word(&output.display().to_string())
    )
}

/// A word a POSIX shell reads back as it is.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Halves the largest file size and the files per write, where they can go lower.
fn smaller_files(candidate: &Candidate) -> Option<Candidate> {
    let shrink = |o: &ActionOptions| {
        let mut o = o.clone();
        let max = (o.max_file_size.as_u64() / 2).max(o.min_file_size.as_u64());
        o.max_file_size = ByteSize::b(max);
        o.max_num_files_per_write = (o.max_num_files_per_write / 2).max(o.min_num_files_per_write);
        o
    };
    let mut c = candidate.clone();
    c.options = shrink(&c.options);
    for (_, options) in &mut c.action_options {
        *options = shrink(options);
    }
    let changed = c.options != candidate.options
        || c.action_options
            .iter()
            .zip(&candidate.action_options)
            .any(|(a, b)| a.1 != b.1);
    changed.then_some(c)
}

/// `items` in `n` chunks of nearly equal length.
fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.min(items.len()).max(1);
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + (items.len() - start) / (n - i);
        chunks.push(items[start..end].to_vec());
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests;
