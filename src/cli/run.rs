//! The commands that run: `run` (headless), the console, and the lists
//! (`scenarios`, `faults`); their exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::backend::location::{
    LocationError, REPOSITORY_PASSWORD_ENV, RepositoryLocation, Secret,
};
use crate::backend::tls::CaCerts;
use crate::engine::scenario::{Scenario, ScenarioRepository};
use crate::engine::store::write_durably;
use crate::faults::{FaultKind, FaultSpec, RunBounds};
use crate::run::launch::{RunSpec, launch};
use crate::run::{RunHandle, RunLimit};

use super::output::{self, Output};
use super::*;
use crate::headless::Followed;

/// `snapstorm faults`.
pub fn faults() -> ExitCode {
    for kind in FaultKind::ALL {
        println!("{:<16} {}", kind.name(), kind.describe());
    }
    let network = crate::faults::NetworkFault::default();
    println!(
        "\nwrite KIND@TIME[:DURATION][,key=value…], e.g. --fault corrupt-pack@15s --fault server-restart@20s:5s\n\
         network options: latency={}, drop={} (percent of requests), error={} (percent answered 500)\n\
         revoke-client / kill-client / pause-client option: client=N (default: a random client)\n\
         truncate-pack option: size=SIZE (default 2MiB; a pack longer than it is cut to it)\n\
         pack and index faults option: victim=client-N/K, the K-th data pack (index file for delete-index) client-N stored (default: a random one; a run's trace names its victim so, for its replay)\n\
         storage-errors option: share={share} (percent of requests the storage answers 500/503)\n\
         stale-lock / unlock: --backend restic or mixed (restic's locks; rustic_core takes none)\n\
         stop-osd option: pid=PID, a ceph-osd process on this machine (needed; scripts/ceph start prints osdN_pid=)\n\
         parallel-forget: every running client (2 or more) forgets at once (action forget-snapshots)\n\
         --backend kopia: every fault but {refused}, and no victim=; network's error= resets the connection (TLS passes the proxy untouched)",
        crate::faults::compact_duration(network.latency),
        network.drop_percent,
        network.error_percent,
        share = crate::faults::DEFAULT_STORAGE_ERROR_SHARE,
        refused = FaultKind::ALL
            .into_iter()
            .filter(|kind| crate::backend::kopia::refusal(*kind).is_some())
            .map(FaultKind::name)
            .collect::<Vec<_>>()
            .join(", "),
    );
    ExitCode::from(EXIT_OK)
}

/// The exit code of a finished run, as the engine decides it
/// ([`crate::engine::report::RunExit`]): failures no fault explains (or,
/// strict, any failure) give 1 — found before a halt, they still stand; a
/// run that stopped on snapstorm's own side gives 3.
pub fn exit_code(report: &crate::engine::Report, strict: bool) -> ExitCode {
    ExitCode::from(report.exit(strict).code())
}

/// Says why a run stopped on snapstorm's own side, and which checks it
/// left to the next run, if it did.
pub(super) fn say_if_cut_short(report: &crate::engine::Report) {
    if let Some(reason) = &report.halted {
        eprintln!(
            "snapstorm: the run stopped early: {reason}; nothing after it is a verdict on the repository"
        );
    }
    if report.abandoned_actions > 0 {
        eprintln!(
            "snapstorm: the run ended without {} action(s) still running after its grace; their errors are the run's own, and the final checks are left to the next run with --state-dir {}",
            report.abandoned_actions, report.state_dir
        );
    }
}

/// `snapstorm scenarios`: the seed's presets, then the field's reported
/// failures under a heading of their own.
pub fn scenarios() -> ExitCode {
    use crate::engine::scenario::PresetGroup;
    let presets = Scenario::presets();
    for (group, heading) in [
        (PresetGroup::Seed, None),
        (
            PresetGroup::Field,
            Some("\nfailures reported from the field (each with its fault):"),
        ),
    ] {
        if let Some(heading) = heading {
            println!("{heading}");
        }
        for scenario in presets.iter().filter(|s| PresetGroup::of(&s.name) == group) {
            println!("{:<40} {}", scenario.name, scenario.description);
        }
    }
    ExitCode::from(EXIT_OK)
}

/// Turns session options into a run spec, checking everything before
/// anything is written: faults are checked against the run's `bounds`
/// where they are known.
pub fn session_spec(args: &SessionArgs, bounds: RunBounds) -> Result<RunSpec, UsageError> {
    let scenario = Scenario::resolve(&args.scenario).map_err(|e| UsageError(e.to_string()))?;
    let faults: Vec<FaultSpec> = scenario
        .faults
        .iter()
        .chain(&args.faults)
        .cloned()
        .collect();
    for fault in &faults {
        fault
            .check_bounds(&bounds)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    let seed = args.seed.or(scenario.seed).unwrap_or_else(rand::random);
    let state_dir = match &args.state_dir {
        Some(dir) => {
            if dir.exists() && !dir.is_dir() {
                return Err(UsageError(format!(
                    "--state-dir {}: not a directory; give a directory (it is created if missing)",
                    dir.display()
                )));
            }
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("snapstorm-")
            .tempdir()
            .map_err(|e| {
                UsageError(format!(
                    "cannot create a temporary state dir: {e}; give one with --state-dir"
                ))
            })?
            .keep(),
    };
    // Fixed per-client sequences bring their own clients.
    let clients = match scenario.clients.len() {
        0 => args.clients,
        scripted => scripted as u32,
    };
    let mut spec = RunSpec::new(scenario, state_dir, seed);
    spec.clients = clients;
    spec.verify_inherited_per_client = args.verify_inherited;
    spec.faults = faults;
    spec.backend = args.backend;
    spec.repository = repository(args, &spec.scenario)?;
    spec.repository_password = joined_password(&spec.repository);
    Ok(spec)
}

/// Overwrites the password written in the location `typed` where `ps`
/// reads this process's command line (its own memory, through
/// `/proc/self/mem`), with as many `*`: it stays visible only from the
/// program's start until here. Best effort: where that memory cannot be
/// written, the warning still says what was exposed.
fn hide_from_ps(typed: &str) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let Some(password) = typed_password(typed).filter(|p| !p.is_empty()) else {
        return;
    };
    let hide = || -> std::io::Result<()> {
        // Fields 48 and 49 of /proc/self/stat: where the arguments are.
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // After the name, the fields start at field 3.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let (Some(start), Some(end)) = (field(48), field(49)) else {
            return Ok(());
        };
        let mut mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/self/mem")?;
        let mut args = vec![0u8; end.saturating_sub(start) as usize];
        mem.seek(SeekFrom::Start(start))?;
        mem.read_exact(&mut args)?;
        let needle = password.as_bytes();
        let mut changed = false;
        let mut at = 0;
        while let Some(found) = args[at..]
            .windows(needle.len())
            .position(|window| window == needle)
        {
            let from = at + found;
            args[from..from + needle.len()].fill(b'*');
            at = from + needle.len();
            changed = true;
        }
        if changed {
            mem.seek(SeekFrom::Start(start))?;
            mem.write_all(&args)?;
        }
        Ok(())
    };
    if let Err(error) = hide() {
        tracing::debug!(%error, "cannot hide the password from ps");
    }
}

/// The password as typed in `rest:http://USER:PASSWORD@HOST/…`.
fn typed_password(typed: &str) -> Option<&str> {
    let (_, rest) = typed.split_once("://")?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, password)| password)
}

/// The password of a repository another run made on storage several runs
/// share, from where restic users keep it (`RESTIC_PASSWORD`): a new state
/// dir joins that repository instead of making one with a password of its
/// own. Not for the state dir's own repository, which no other run shares.
fn joined_password(repository: &RepositoryLocation) -> Option<Secret> {
    if *repository == RepositoryLocation::Embedded {
        return None;
    }
    std::env::var(REPOSITORY_PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty())
        .map(Secret::new)
}

/// The run's repository: the command line's location, else the scenario
/// file's `[repository]`.
fn repository(args: &SessionArgs, scenario: &Scenario) -> Result<RepositoryLocation, UsageError> {
    args.storage.location(scenario.repository.as_ref())
}

impl RepositoryArgs {
    /// The `--repository` location (else `table`'s, a scenario file's), with
    /// its credentials; a password written in it is used, with a warning (it
    /// was visible to `ps` while snapstorm started), and shown nowhere after.
    pub(super) fn location(
        &self,
        table: Option<&ScenarioRepository>,
    ) -> Result<RepositoryLocation, UsageError> {
        let (text, credentials, on_command_line) = match (&self.repository, table) {
            (Some(text), _) => (text, self.repository_credentials.clone(), true),
            (None, Some(table)) => (
                &table.location,
                self.repository_credentials
                    .clone()
                    .or_else(|| table.credentials.clone()),
                false,
            ),
            (None, None) if self.repository_credentials.is_some() => {
                return Err(UsageError(
                    "--repository-credentials is for a rest: repository; give --repository rest:http://HOST:PORT/PATH too".into(),
                ));
            }
            (None, None) if !self.cacert.is_empty() => {
                return Err(UsageError(
                    "--cacert is for storage reached over https; give --repository rest:https://… or s3:https://… too, or drop --cacert (and RESTIC_CACERT)".into(),
                ));
            }
            (None, None) => return Ok(RepositoryLocation::Embedded),
        };
        let usage = |e: LocationError| UsageError(e.to_string());
        // The command line's --cacert, else the table's.
        let files = match table {
            Some(table) if self.cacert.is_empty() => &table.cacert,
            _ => &self.cacert,
        };
        let ca = CaCerts::load(files).map_err(|e| UsageError(e.to_string()))?;
        let location = RepositoryLocation::parse(text)
            .and_then(|location| location.with_ca_certs(ca))
            .map_err(usage)?;
        match location {
            RepositoryLocation::Rest(rest) => {
                let rest = rest
                    .with_credentials(|name| std::env::var(name).ok(), credentials.as_deref())
                    .map_err(usage)?;
                if rest.password_in_url() && on_command_line {
                    hide_from_ps(text);
                    eprintln!(
                        "snapstorm: warning: the password written in --repository was visible to other users of this machine (ps) while snapstorm started; give it in RESTIC_REST_PASSWORD or --repository-credentials instead"
                    );
                } else if rest.password_in_url() {
                    eprintln!(
                        "snapstorm: warning: the scenario file's [repository] location holds a password: whoever reads the file reads it; give it in RESTIC_REST_PASSWORD or a credentials file instead"
                    );
                }
                Ok(RepositoryLocation::Rest(rest))
            }
            _ if credentials.is_some() => Err(UsageError(
                "--repository-credentials is for a rest: repository; drop it (an s3: location takes its keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
            )),
            RepositoryLocation::S3(s3) => s3
                .with_credentials(|name| std::env::var(name).ok())
                .map(RepositoryLocation::S3)
                .map_err(usage),
            RepositoryLocation::Directory(dir) => {
                // Recorded in the state dir: the same directory from anywhere.
                let dir = std::path::absolute(&dir)
                    .map_err(|e| UsageError(format!("--repository {}: {e}", dir.display())))?;
                Ok(RepositoryLocation::Directory(dir))
            }
            RepositoryLocation::Embedded => Ok(RepositoryLocation::Embedded),
        }
    }
}

/// Where `--report` goes, checked before anything runs: never into the
/// state dir the run uses.
fn report_output(
    report: &Option<PathBuf>,
    session: &SessionArgs,
) -> Result<Option<Output>, UsageError> {
    let state_dirs: Vec<&Path> = session.state_dir.iter().map(PathBuf::as_path).collect();
    report
        .as_ref()
        .map(|path| output::check_file("--report", path, &state_dirs))
        .transpose()
}

/// Writes the report as `report.json` in the state dir (the page drawn from
/// it beside it, as `report.html`), and to `--report` if given; `say`
/// tells where. A `--report` that cannot be written is an error (exit 2),
/// the copy in the state dir named.
fn keep_report(
    report: &crate::engine::Report,
    output: Option<&Output>,
    say: impl Fn(String),
) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    let kept = PathBuf::from(&report.state_dir).join("report.json");
    match write_durably(&kept, &json) {
        Ok(()) => say(format!("report written to {}", kept.display())),
        Err(error) => say(format!("cannot write {}: {error}", kept.display())),
    }
    super::report::keep_page(Path::new(&report.state_dir), &say);
    if let Some(output) = output {
        output.write(&json).map_err(|e| {
            UsageError(format!(
                "--report {}: cannot write it: {e}; the report is in {}",
                output.path().display(),
                kept.display()
            ))
        })?;
        say(format!("report written to {}", output.path().display()));
    }
    Ok(())
}

/// `snapstorm run`: a headless run; exit 0 clean, 1 on verification failures.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let output = report_output(&args.report, &args.session)?;
    // Fixed per-client sequences end the run when they are done.
    let scripted = Scenario::resolve(&args.session.scenario).is_ok_and(|s| !s.clients.is_empty());
    let limit = RunLimit {
        duration: args
            .duration
            .or((args.actions.is_none() && !scripted).then_some(DEFAULT_RUN_DURATION)),
        actions_per_client: args.actions,
    };
    // A headless run never adds clients: a fault can name only these.
    let bounds = RunBounds {
        duration: limit.duration,
        clients: Some(args.session.clients),
    };
    let mut spec = session_spec(&args.session, bounds)?;
    spec.limit = limit;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let handle = launch(spec).await.map_err(|e| UsageError(e.to_string()))?;
        let RunHandle {
            info,
            commands,
            events,
            counts,
            task,
        } = handle;
        if crate::headless::follow(&info, events, commands, &counts).await == Followed::Aborted {
            return anyhow::Ok(None);
        }
        let report = task
            .await
            .map_err(|e| anyhow::anyhow!("run crashed: {e}"))?;
        anyhow::Ok(Some(report))
    })?;
    let Some(report) = report else {
        // A second Ctrl-C: the actions in hand are left, nothing waits for them.
        runtime.shutdown_background();
        return Ok(ExitCode::from(EXIT_ABORTED));
    };
    print!("{}", crate::headless::summary(&report));
    say_if_cut_short(&report);
    keep_report(&report, output.as_ref(), |line| {
        eprintln!("snapstorm: {line}")
    })?;
    eprintln!(
        "snapstorm: state kept in {0}; resume with --state-dir {0}",
        report.state_dir
    );
    Ok(exit_code(&report, args.strict))
}

/// `snapstorm` without a command: the console, or a headless run when
/// standard output is not a terminal.
pub fn console(args: SessionArgs, console: ConsoleArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if console.no_keep && args.state_dir.is_some() {
        return Err(UsageError(
            "--no-keep deletes only a temporary state dir; drop it, or drop --state-dir".into(),
        )
        .into());
    }
    if !std::io::stdout().is_terminal() {
        init_logging(Logs::Run, verbose);
        eprintln!(
            "snapstorm: standard output is not a terminal; running headless for {}s (see `snapstorm run --help`)",
            DEFAULT_RUN_DURATION.as_secs()
        );
        return run(RunArgs {
            session: args,
            duration: None,
            actions: None,
            report: console.report,
            strict: false,
        });
    }
    let output = report_output(&console.report, &args)?;
    // Clients can be added in the console and it runs until quit: faults
    // that never come to pass are reported as not injected instead.
    let spec = session_spec(&args, RunBounds::default())?;
    init_logging(Logs::Console, verbose);
    let options = crate::console::ConsoleOptions {
        bell: !console.no_bell,
    };
    let outcome = crate::console::run(spec, options).map_err(|e| match e {
        crate::console::ConsoleError::Launch(e) => anyhow::Error::from(UsageError(e.to_string())),
        other => anyhow::Error::from(other),
    })?;
    let report = &outcome.report;
    print!("{}", crate::headless::summary(report));
    say_if_cut_short(report);
    let state_dir = PathBuf::from(&report.state_dir);
    keep_report(report, output.as_ref(), |line| println!("{line}"))?;
    if args.state_dir.is_none() {
        // A temporary dir can hold gigabytes: say how much, and keep it only if asked to.
        let size = crate::console::format_bytes(crate::engine::file_writer::disk_usage(&state_dir));
        if console.no_keep && outcome.shrink_command.is_some() {
            println!(
                "state kept in the temporary dir {} ({size}) despite --no-keep: R asked to shrink a failure from it",
                state_dir.display()
            );
        } else if console.no_keep {
            std::fs::remove_dir_all(&state_dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot delete the temporary state dir {}: {e}",
                    state_dir.display()
                )
            })?;
            println!(
                "deleted the temporary state dir {} ({size}), as --no-keep asked",
                state_dir.display()
            );
        } else {
            println!(
                "state kept in the temporary dir {0} ({size}); resume with --state-dir {0}, delete it when done (or run with --no-keep)",
                state_dir.display()
            );
        }
    } else {
        println!(
            "state kept in {0}; resume with --state-dir {0}",
            report.state_dir
        );
    }
    if let Some(command) = &outcome.shrink_command {
        println!("to shrink the failure R selected: {command}");
    }
    Ok(exit_code(report, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tls::fixture;

    #[test]
    fn a_scenario_table_s_cacert_is_taken_unless_the_command_line_gives_one() {
        let table = ScenarioRepository {
            location: "rest:https://nas.example/backups".into(),
            credentials: None,
            cacert: vec![fixture("ca.pem")],
        };
        let RepositoryLocation::Rest(rest) =
            RepositoryArgs::default().location(Some(&table)).unwrap()
        else {
            panic!("not a rest: location");
        };
        assert_eq!(rest.ca().files(), [fixture("ca.pem")]);
        // The command line's wins: the file it names is the one read.
        let args = RepositoryArgs {
            cacert: vec![fixture("missing.pem")],
            ..RepositoryArgs::default()
        };
        let error = args.location(Some(&table)).unwrap_err().to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }
}
