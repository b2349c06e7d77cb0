//! `snapstorm replay` and `snapstorm shrink`: a failure found in a run,
//! reproduced on a fresh repository, and cut down to the smallest scenario
//! that still fails the same way.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use super::{EXIT_ABORTED, EXIT_FAILURES, EXIT_OK, RepositoryArgs, UsageError};
use crate::backend::location::RepositoryLocation;
use crate::engine::scenario::{Scenario, Schedule};
use crate::reproduce::replay::{
    Found, Recording, ReplayError, Signature, found_in, run_scenario, stop_at,
};
use crate::reproduce::shrink::{AtLeast, Ended, Progress, ShrinkConfig, Size, shell_word, shrink};
use crate::run::launch::LaunchError;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The state dir of the run to replay (only read; never changed).
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,

    /// How many times to run it.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub tries: u32,

    /// free: every client runs its actions back to back, faults at their
    /// times; order: actions and faults start in the recorded order;
    /// recorded: in that order, each as long after the start before it as recorded.
    #[arg(long, value_enum, default_value_t = Schedule::Free)]
    pub schedule: Schedule,

    /// Where each try's fresh state dir is made (default: the system's temp dir).
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,

    #[command(flatten)]
    pub storage: RepositoryArgs,
}

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// The state dir of the run whose failure to shrink (only read; never changed).
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,

    /// Tries per candidate (with --at-least auto, the recording gets them all first).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub tries: u32,

    /// A candidate counts as failing when at least K of its tries fail the
    /// same way. auto (default): as many as the recording's own tries did,
    /// so a race that fails every time shrinks only to candidates that fail
    /// every time, and not to a lucky run; 1: any try.
    #[arg(long, value_name = "K|auto", default_value = "auto", value_parser = parse_at_least)]
    pub at_least: AtLeast,

    /// How many runs go at once, each on its own fresh repository: a
    /// candidate's tries, and the candidates the search would try next if
    /// it passes. Runs that wait (a paused client, the recorded gaps) leave
    /// the machine idle; runs that compute share it, which can change the
    /// timing a race depends on, so a candidate found so must also fail
    /// one try alone. 3 by default: on 2 cores it tried 30 to 40
    /// candidates in 10 minutes where one at a time tried 18 to 24, and
    /// its results failed as often alone or more often on each of four
    /// recordings measured (docs/findings.md).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub parallel: u32,

    /// Stop searching after this long and keep the smallest found (e.g. 10m,
    /// 1h). The runs in hand then are stopped, and a shrink ends as soon as
    /// they have wound down (their final checks, seconds). The recording's
    /// own tries are the exception: they run to their end, since without
    /// them there is nothing to shrink.
    #[arg(long, value_name = "TIME", default_value = "10m", value_parser = super::parse_positive_duration)]
    pub budget: Duration,

    /// recorded (default): candidates start actions and faults in the recorded
    /// order, each as long after the start before it as recorded, which keeps
    /// a race when actions around it are left out; order: the order alone;
    /// free: as fast as they go.
    #[arg(long, value_enum, default_value_t = Schedule::Recorded)]
    pub schedule: Schedule,

    /// The scenario file to write; `snapstorm run --scenario FILE` runs it.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Where each candidate's fresh state dir is made (default: the system's temp dir).
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,

    #[command(flatten)]
    pub storage: RepositoryArgs,
}

/// Why a try could not run: a setup problem every try would meet (a fault
/// the storage cannot take, a program missing) is bad usage (exit 2); a
/// crash is snapstorm's own (exit 3). Neither says anything about the
/// failure being looked for.
fn try_failed(which: &str, error: LaunchError) -> anyhow::Error {
    let text = format!("{which}: {error}");
    match error {
        LaunchError::Crashed(_) => anyhow::anyhow!(text),
        _ => UsageError(text).into(),
    }
}

/// Where the tries' repositories go (`--repository`), checked before
/// anything runs: a directory must be there, as for `run`.
fn tries_repository(args: &RepositoryArgs) -> Result<RepositoryLocation, UsageError> {
    let location = args.location(None)?;
    if let RepositoryLocation::Directory(dir) = &location
        && !dir.is_dir()
    {
        return Err(UsageError(format!(
            "--repository {}: no such directory; create it (or mount the storage there) first",
            dir.display()
        )));
    }
    Ok(location)
}

/// The repository of the try in `dir`: below `base`, named as the try's
/// state dir, so that every try starts on a fresh one.
fn try_repository(base: &RepositoryLocation, dir: &Path) -> std::io::Result<RepositoryLocation> {
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let location = base.within(&name);
    if let RepositoryLocation::Directory(dir) = &location {
        std::fs::create_dir_all(dir)?;
    }
    Ok(location)
}

/// The recording, or a usage error (exit 2) that names the fix.
fn load(state_dir: &Path) -> Result<Recording, UsageError> {
    if !state_dir.is_dir() {
        return Err(UsageError(format!(
            "{}: no such directory; give the --state-dir of a run",
            state_dir.display()
        )));
    }
    let recording = Recording::load(state_dir).map_err(|e| UsageError(e.to_string()))?;
    if recording.backend != "embedded" {
        return Err(UsageError(format!(
            "{}: recorded on the `{}` backend; replay and shrink run on the embedded backend only, so give the state dir of an embedded run",
            state_dir.display(),
            recording.backend
        )));
    }
    if recording.targets.is_empty() {
        return Err(UsageError(
            ReplayError::NoFailure(state_dir.to_path_buf()).to_string(),
        ));
    }
    Ok(recording)
}

/// Where the tries' state dirs go: never inside the recorded state dir,
/// which replay and shrink only read.
fn check_into(into: &Option<PathBuf>, recorded: &Path) -> Result<PathBuf, UsageError> {
    match into {
        Some(dir) => {
            super::output::check_dir("--into", dir, &[recorded])?;
            Ok(dir.clone())
        }
        None => Ok(std::env::temp_dir()),
    }
}

/// A fresh state dir for one try, removed when dropped unless kept.
fn fresh_dir(into: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(into)
        .map_err(|e| anyhow::anyhow!("cannot make a state dir in {}: {e}", into.display()))
}

/// A runtime, and what Ctrl-C asked: the first stops after the run in
/// hand, the second aborts it.
struct Interrupts {
    runtime: tokio::runtime::Runtime,
    stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
}

impl Interrupts {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Runtime::new()?;
        let (stop_tx, stop) = watch::channel(false);
        let (abort_tx, abort) = watch::channel(false);
        runtime.spawn(async move {
            let mut interrupts =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    .expect("install the SIGINT handler");
            interrupts.recv().await;
            eprintln!("snapstorm: interrupted; finishing the run in hand (Ctrl-C again to abort)");
            let _ = stop_tx.send(true);
            interrupts.recv().await;
            let _ = abort_tx.send(true);
        });
        Ok(Interrupts {
            runtime,
            stop,
            abort,
        })
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `work` to its end, or `None` when a second Ctrl-C aborts it.
    fn run<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let mut abort = self.abort.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                value = work => Some(value),
                _ = abort.wait_for(|aborted| *aborted) => None,
            }
        })
    }

    /// Leaves at once: runs in hand are dropped, nothing waits for them.
    fn abort(self) -> ExitCode {
        eprintln!("snapstorm: aborted");
        self.runtime.shutdown_background();
        ExitCode::from(EXIT_ABORTED)
    }
}

fn describe(recording: &Recording) -> String {
    let scenario = recording.scenario(Schedule::Free);
    let resumed = match recording.before.as_slice() {
        [] => String::new(),
        [only] => format!(", after run {} again", only.run),
        [first, .., last] => format!(", after runs {}–{} again", first.run, last.run),
    };
    format!(
        "run {} of {} (seed {}, scenario {}): {}{resumed}",
        recording.recorded.run,
        recording.state_dir.display(),
        recording.recorded.seed,
        recording.recorded.scenario.name,
        Size::of(&scenario)
    )
}

/// `snapstorm replay`: exit 1 when the failure came back in some try, 0 when it never did.
pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let into = check_into(&args.into, &args.state_dir)?;
    let repository = tries_repository(&args.storage)?;
    let recording = load(&args.state_dir)?;
    let scenario = recording.scenario(args.schedule);
    let before = recording.runs_before(args.schedule);
    eprintln!(
        "snapstorm: replaying {} on the {} schedule; looking for {}",
        describe(&recording),
        args.schedule.name(),
        recording.looking_for()
    );
    let interrupts = Interrupts::new()?;
    let mut reproduced = 0u32;
    let mut tried = 0u32;
    let mut first: Option<Found> = None;
    for number in 1..=args.tries {
        if interrupts.stopped() {
            break;
        }
        let dir = fresh_dir(&into, "snapstorm-replay-")?;
        let location = try_repository(&repository, dir.path())?;
        // The runs it resumed first, in the same state dir, then the run itself.
        let runs = before.iter().chain(std::iter::once(&scenario));
        let Some(report) = interrupts.run(async {
            let mut last = None;
            for run in runs {
                let report = run_scenario(
                    run.clone(),
                    dir.path().to_path_buf(),
                    location.clone(),
                    interrupts.stop.clone(),
                    // A replay's try runs whole: its state dir is the evidence.
                    &[],
                )
                .await;
                let stop = report.is_err() || *interrupts.stop.borrow();
                last = Some(report);
                if stop {
                    break;
                }
            }
            last.expect("a try runs at least the recorded run")
        }) else {
            // Its runs are dropped, not stopped: the dir is left as they left it.
            let _ = dir.keep();
            return Ok(interrupts.abort());
        };
        let report = match report {
            Ok(report) => report,
            Err(error) => {
                drop(dir);
                if let RepositoryLocation::Directory(made) = &location {
                    // Only if the refused try left it empty.
                    let _ = std::fs::remove_dir(made);
                }
                return Err(try_failed(&format!("try {number}"), error));
            }
        };
        if interrupts.stopped() {
            // Cut short: says nothing either way (the dir goes).
            break;
        }
        tried += 1;
        let found = found_in(&report, &scenario);
        match recording.matches(&found) {
            Some(hit) => {
                reproduced += 1;
                first.get_or_insert_with(|| hit.clone());
                println!(
                    "try {number}/{}: reproduced: {hit} · state kept in {}",
                    args.tries,
                    dir.keep().display()
                );
            }
            None => {
                let other = match found.first() {
                    Some(other) => format!("found {other} instead"),
                    None => "no failure".to_owned(),
                };
                println!("try {number}/{}: not reproduced ({other})", args.tries);
            }
        }
    }
    let shown = first.as_ref().unwrap_or(&recording.targets[0]);
    println!("reproduced {reproduced} of {tried}: {shown}");
    Ok(ExitCode::from(if reproduced > 0 {
        EXIT_FAILURES
    } else {
        EXIT_OK
    }))
}

/// `--at-least`: a number of tries from 1 to 100, or `auto`.
fn parse_at_least(text: &str) -> Result<AtLeast, String> {
    if text == "auto" {
        return Ok(AtLeast::AsRecorded);
    }
    match text.parse::<u32>() {
        Ok(k @ 1..=100) => Ok(AtLeast::Tries(k)),
        _ => Err("a number of tries from 1 to 100, or auto".into()),
    }
}

/// `snapstorm shrink`: exit 0 with the smallest scenario written, 1 when the
/// recording did not fail the same way in any try (nothing written).
pub fn shrink_run(args: ShrinkArgs) -> anyhow::Result<ExitCode> {
    // Where things go is checked first: a wrong place is refused whatever
    // the recording holds.
    let into = check_into(&args.into, &args.state_dir)?;
    let output = super::output::check_file("-o", &args.output, &[&args.state_dir])?;
    let repository = tries_repository(&args.storage)?;
    let recording = load(&args.state_dir)?;
    if let Some(first) = recording.before.first() {
        return Err(UsageError(format!(
            "{}: run {} resumed the runs before it (from run {}), and a shrunk scenario starts on a fresh repository, so it cannot keep what they left; `snapstorm replay` runs them first, or record the failure in a run of its own",
            args.state_dir.display(),
            recording.recorded.run,
            first.run
        ))
        .into());
    }
    if let AtLeast::Tries(k) = args.at_least
        && k > args.tries
    {
        return Err(UsageError(format!(
            "--at-least {k}: more than the {} tries a candidate gets; give --tries {k} or more",
            args.tries
        ))
        .into());
    }
    let target = recording.looking_for();
    eprintln!(
        "snapstorm: shrinking {} on the {} schedule, failing in {} of {} tr{} per candidate, for at most {}; looking for {target}",
        describe(&recording),
        args.schedule.name(),
        match args.at_least {
            AtLeast::AsRecorded => "as many as the recording does".to_owned(),
            AtLeast::Tries(1) => "any".to_owned(),
            AtLeast::Tries(k) => format!("at least {k}"),
        },
        args.tries,
        if args.tries == 1 { "y" } else { "ies" },
        crate::faults::compact_duration(args.budget)
    );
    let interrupts = Interrupts::new()?;
    let aborted = std::cell::Cell::new(false);
    let cannot_run: std::cell::RefCell<Option<anyhow::Error>> = std::cell::RefCell::new(None);
    let config = ShrinkConfig {
        tries: args.tries,
        parallel: args.parallel,
        at_least: args.at_least,
        budget: args.budget,
        schedule: args.schedule,
    };
    // A candidate's try stops at the first failure the shrink looks for:
    // the rest of the run could not make it pass.
    let looked_for: Vec<Signature> = recording.targets.iter().map(|t| t.signature).collect();
    let mut runner = |scenarios: &[&Scenario], stop_by: Option<Instant>| {
        // Each try's dir goes when `dirs` does, on every way out.
        let mut dirs = Vec::new();
        for _ in scenarios {
            match fresh_dir(&into, "snapstorm-shrink-") {
                Ok(dir) => dirs.push(dir),
                Err(error) => {
                    cannot_run.replace(Some(error));
                    return None;
                }
            }
        }
        // Ctrl-C, or the budget's end, stops the runs in hand.
        let stop = {
            let _runtime = interrupts.runtime.enter();
            stop_at(interrupts.stop.clone(), stop_by)
        };
        let runs = scenarios.iter().zip(&dirs).map(|(scenario, dir)| {
            let location = try_repository(&repository, dir.path());
            let (scenario, dir) = ((*scenario).clone(), dir.path().to_path_buf());
            let (stop, looked_for) = (stop.clone(), &looked_for);
            async move {
                match location {
                    Ok(location) => run_scenario(scenario, dir, location, stop, looked_for).await,
                    Err(error) => Err(LaunchError::Setup(error.to_string())),
                }
            }
        });
        let reports = interrupts.run(futures_util::future::join_all(runs));
        drop(dirs);
        let Some(reports) = reports else {
            aborted.set(true);
            return None;
        };
        // Runs stopped early say nothing either way.
        if *stop.borrow() {
            return None;
        }
        let mut found = Vec::new();
        for (report, scenario) in reports.into_iter().zip(scenarios) {
            found.push(match report {
                Ok(report) => found_in(&report, scenario),
                // Snapstorm's own crash: this try says nothing.
                Err(error @ LaunchError::Crashed(_)) => {
                    eprintln!("snapstorm: a candidate could not run: {error}");
                    Vec::new()
                }
                // A setup problem every candidate would meet: the search stops.
                Err(error) => {
                    cannot_run.replace(Some(try_failed("a candidate", error)));
                    return None;
                }
            });
        }
        Some(found)
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let describe_best = |scenario: &Scenario, before: Size| {
        let mut scenario = scenario.clone();
        scenario.description = format!(
            "shrunk from run {} of {}: {} ({} → {})",
            recording.recorded.run,
            recording.state_dir.display(),
            target,
            before,
            Size::of(&scenario)
        );
        scenario
    };
    let before = Size::of(&recording.scenario(args.schedule));
    let mut write_error = None;
    let mut progress = |p: &Progress<'_>| {
        // Each new smallest is written at once: a stop at any moment keeps it.
        // (into a stream — a FIFO, a device — only the last one is written)
        if let Some(best) = p.new_best
            && matches!(output, super::output::Output::File(_))
            && let Err(e) = output.write(describe_best(best, before).to_toml().as_bytes())
        {
            write_error = Some(format!("cannot write {}: {e}", args.output.display()));
        }
        let line = format!(
            "[{:>5}s] {} · candidates {} · runs {} · tried {} ({}) · best {}{}",
            p.elapsed.as_secs(),
            p.phase,
            p.candidates,
            p.runs,
            p.tried,
            if p.failed { "fails" } else { "passes" },
            p.best,
            p.at_least
                .map(|k| format!(" · must fail {k} of {}", args.tries))
                .unwrap_or_default()
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("{line}"),
        }
    };
    let stopped = || interrupts.stopped();
    let shrunk = shrink(&recording, &config, &mut runner, &mut progress, &stopped);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(error) = cannot_run.take() {
        return Err(error);
    }
    if aborted.get() {
        // Each new smallest was written when it was found.
        return Ok(interrupts.abort());
    }
    if shrunk.ended == Ended::NotReproduced {
        eprintln!(
            "snapstorm: the recording did not fail with {target} in {} tr{}; nothing written (give more --tries, or try --schedule {})",
            args.tries,
            if args.tries == 1 { "y" } else { "ies" },
            match args.schedule {
                Schedule::Free => "recorded",
                Schedule::Order => "recorded or free",
                Schedule::Recorded => "order or free",
            }
        );
        return Ok(ExitCode::from(EXIT_FAILURES));
    }
    if let Some(error) = write_error {
        anyhow::bail!(error);
    }
    let scenario = describe_best(&shrunk.scenario, shrunk.before);
    output.write(scenario.to_toml().as_bytes()).map_err(|e| {
        UsageError(format!(
            "-o {}: cannot write it: {e}",
            args.output.display()
        ))
    })?;
    let why = match shrunk.ended {
        Ended::Minimal => "nothing smaller fails the same way",
        Ended::Budget if shrunk.cut > 0 => &format!(
            "the budget ran out ({} run{} in hand stopped); the best so far is written",
            shrunk.cut,
            if shrunk.cut == 1 { "" } else { "s" }
        ),
        Ended::Budget => "the budget ran out; the best so far is written",
        Ended::Stopped => "interrupted; the best so far is written",
        Ended::NotReproduced => unreachable!("handled above"),
    };
    println!(
        "{} → {} in {} candidates ({} runs, each failing in at least {} of {} tr{}{}{}): {why}",
        shrunk.before,
        shrunk.after,
        shrunk.candidates,
        shrunk.runs,
        shrunk.at_least,
        args.tries,
        if args.tries == 1 { "y" } else { "ies" },
        if args.at_least == AtLeast::AsRecorded {
            ", as the recording did"
        } else {
            ""
        },
        match shrunk.skipped {
            0 => String::new(),
            n => format!(
                "; {n} more passed without a run, leaving out the fault that explains the failure"
            ),
        }
    );
    println!(
        "wrote {}; run it with: snapstorm run --scenario {} --strict",
        args.output.display(),
        shell_word(&args.output.display().to_string())
    );
    Ok(ExitCode::from(EXIT_OK))
}
