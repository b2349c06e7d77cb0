//! Tests of `process`.

use super::*;

#[test]
fn output_is_scrubbed_of_every_secret() {
    let secrets = ["repo-secret".to_owned(), "rest-secret".to_owned()];
    assert_eq!(
        scrub(
            "Fatal: http://client-1:rest-secret@x with repo-secret",
            &secrets
        ),
        "Fatal: http://client-1:***@x with ***"
    );
}

/// A shell script standing in for a backup tool: the runner's own logic.
fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tool");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run<'a>(program: &'a Path, deadline: Duration) -> Run<'a> {
    Run {
        program,
        args: vec![],
        env: vec![("SECRET".into(), "s3cret".into())],
        cwd: None,
        deadline,
        processes: None,
        secrets: vec!["s3cret".into()],
        on_stdout_line: None,
    }
}

#[test]
fn secrets_in_the_output_are_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "echo \"out $SECRET\"; echo \"err $SECRET\" >&2; exit 3",
    );
    let output = run(&program, Duration::from_secs(20)).run().unwrap();
    assert_eq!(output.exit, Exit::Code(3));
    assert_eq!(output.stdout, "out ***\n");
    assert_eq!(output.stderr, "err ***\n");
}

#[test]
fn a_hung_process_and_its_children_are_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child-alive");
    // The child of the hung process writes a file if it survives.
    let program = script(
        dir.path(),
        &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
    );
    let started = Instant::now();
    let output = run(&program, Duration::from_millis(300)).run().unwrap();
    assert_eq!(output.exit, Exit::TimedOut(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!marker.exists(), "the whole process group was killed");
}

#[test]
fn kill_sigkills_the_process_a_user_runs() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "echo started; sleep 30");
    let processes = std::sync::Arc::new(Processes::new());
    let killer = {
        let processes = processes.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(10);
            while processes.kill("client-1") == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let output = Run {
        processes: Some((&processes, "client-1")),
        ..run(&program, Duration::from_secs(20))
    }
    .run()
    .unwrap();
    killer.join().unwrap();
    assert_eq!(output.exit, Exit::Signal(9));
    assert_eq!(
        processes.kill("client-1"),
        0,
        "an ended process is not killed"
    );
}

#[test]
fn kill_all_sigkills_every_user_s_process() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "echo started; sleep 30");
    let processes = std::sync::Arc::new(Processes::new());
    let runs: Vec<_> = ["client-1", "client-2"]
        .into_iter()
        .map(|user| {
            let (processes, program) = (processes.clone(), program.clone());
            std::thread::spawn(move || {
                Run {
                    processes: Some((&processes, user)),
                    ..run(&program, Duration::from_secs(20))
                }
                .run()
                .unwrap()
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while processes.running_pid("client-1").is_none() || processes.running_pid("client-2").is_none()
    {
        assert!(Instant::now() < until, "both processes start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(processes.kill_all(), 2);
    for run in runs {
        assert_eq!(run.join().unwrap().exit, Exit::Signal(9));
    }
    assert_eq!(processes.kill_all(), 0, "ended processes are not killed");
}

#[test]
fn an_ended_process_is_remembered_with_its_times() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "echo $$");
    let processes = Processes::new();
    let before = Instant::now();
    let output = Run {
        processes: Some((&processes, "client-2")),
        ..run(&program, Duration::from_secs(20))
    }
    .run()
    .unwrap();
    let pid: u32 = output.stdout.trim().parse().unwrap();
    let record = processes.find(pid).expect("the process is remembered");
    assert_eq!(record.user, "client-2");
    assert!(record.started >= before);
    assert!(record.ended.is_some_and(|ended| ended >= record.started));
    assert_eq!(processes.find(pid.wrapping_add(1)), None);
    assert!(processes.wait_ended(pid, Duration::ZERO));
}

#[test]
fn a_wait_for_a_process_ends_when_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "echo $$; sleep 1");
    let processes = std::sync::Arc::new(Processes::new());
    let runner = {
        let (processes, program) = (processes.clone(), program.clone());
        std::thread::spawn(move || {
            Run {
                processes: Some((&processes, "client-1")),
                ..run(&program, Duration::from_secs(20))
            }
            .run()
            .unwrap()
        })
    };
    let pid = loop {
        let running = processes
            .table
            .lock()
            .unwrap()
            .running
            .keys()
            .next()
            .copied();
        if let Some(pid) = running {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        !processes.wait_ended(pid, Duration::from_millis(10)),
        "still running"
    );
    assert!(processes.wait_ended(pid, Duration::from_secs(20)));
    assert!(processes.find(pid).unwrap().ended.is_some());
    runner.join().unwrap();
}

#[test]
fn the_explanation_is_the_error_above_a_go_stack_trace() {
    // restic 0.18.1's stderr for an error it did not expect (`%+v`).
    let stderr = "\
Save(<data/8c0eb68404>) returned error, retrying after 1s
unable to save snapshot: Save(<data/8c0eb68404>) failed: The specified key does not exist.
github.com/restic/restic/internal/backend/s3.(*Backend).Save
\t/restic/internal/backend/s3/s3.go:321
golang.org/x/sync/errgroup.(*Group).Go.func1
\tgolang.org/x/sync@v0.16.0/errgroup/errgroup.go:93
runtime.goexit
\truntime/asm_amd64.s:1771
";
    let output = Output {
        exit: Exit::Code(1),
        stdout: String::new(),
        stderr: stderr.to_owned(),
    };
    let said = output.explanation(&[]);
    assert!(said.contains("The specified key does not exist"), "{said}");
    assert!(!said.contains("goexit"), "{said}");
    assert!(said.ends_with("(exit code 1)"), "{said}");
    // Without a trace, the last lines as before.
    let plain = Output {
        stderr: "one\ntwo\nthree\nFatal: four\n".to_owned(),
        ..output
    };
    assert_eq!(
        plain.explanation(&[]),
        "two; three; Fatal: four (exit code 1)"
    );
}
