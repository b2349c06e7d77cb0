//! Tests of `faults`.

use super::*;

#[test]
fn specs_parse() {
    let spec: FaultSpec = "corrupt-pack@15s".parse().unwrap();
    assert_eq!(
        (spec.kind, spec.at, spec.duration),
        (FaultKind::CorruptPack, Duration::from_secs(15), None)
    );
    let spec: FaultSpec = "server-restart@20s:5s".parse().unwrap();
    assert_eq!(spec.duration, Some(Duration::from_secs(5)));
    let spec: FaultSpec = "network@1m:20s,latency=300ms,drop=5,error=20%"
        .parse()
        .unwrap();
    assert_eq!(spec.at, Duration::from_secs(60));
    assert_eq!(
        spec.network,
        NetworkFault {
            latency: Duration::from_millis(300),
            drop_percent: 5,
            error_percent: 20
        }
    );
    let spec: FaultSpec = "revoke-client@3s,client=client-2".parse().unwrap();
    assert_eq!(spec.client, Some(2));
    assert_eq!(
        "gc-storm@1s".parse::<FaultSpec>().unwrap().duration,
        Some(Duration::from_secs(15))
    );
}

#[test]
fn times_longer_than_a_year_are_refused() {
    assert_eq!(parse_time("365d"), Ok(MAX_TIME));
    let err = parse_time("18446744073709551615s").unwrap_err();
    assert!(err.contains("longer than a year"), "{err}");
    let err = "corrupt-pack@999999h"
        .parse::<FaultSpec>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than a year"), "{err}");
}

#[test]
fn bad_specs_name_the_problem() {
    let err = "network@1s:5s,drop=1,drop=2"
        .parse::<FaultSpec>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`drop` is given twice"), "{err}");
    let err = "corrupt-packs@15s"
        .parse::<FaultSpec>()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "fault `corrupt-packs@15s`: unknown kind `corrupt-packs`; one of: corrupt-pack,"
        ),
        "{err}"
    );
    let err = "corrupt-pack".parse::<FaultSpec>().unwrap_err().to_string();
    assert!(err.contains("write KIND@TIME"), "{err}");
    let err = "network@1s:2s,drop=150"
        .parse::<FaultSpec>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a percentage"), "{err}");
    let err = "server-restart@soon"
        .parse::<FaultSpec>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("`soon` is not a duration"), "{err}");
}

#[test]
fn specs_that_cannot_apply_are_refused() {
    let problem = |text: &str| text.parse::<FaultSpec>().unwrap_err().problem;
    assert_eq!(
        problem("network@1s:0s"),
        "a duration of 0s does nothing; give one longer than 0s, e.g. network@1s:15s"
    );
    assert_eq!(
        problem("corrupt-pack@1s:5s"),
        "corrupt-pack acts once and takes no duration; write corrupt-pack@1s"
    );
    assert!(problem("gc-storm@1s,client=2").contains("`client=` is for"));
    assert!(problem("kill-client@1s,client=0").contains("numbered from 1"));
    assert!(problem("server-restart@1s,drop=5").contains("options of network"));

    let bounds = RunBounds {
        duration: Some(Duration::from_secs(5)),
        clients: Some(4),
    };
    let late: FaultSpec = "corrupt-pack@999h".parse().unwrap();
    assert_eq!(
        late.check_bounds(&bounds).unwrap_err().to_string(),
        "fault `corrupt-pack@999h`: at 999h the run is over (it lasts 5s); give a time under 5s, or a longer --duration"
    );
    let stranger: FaultSpec = "revoke-client@1s,client=99".parse().unwrap();
    assert_eq!(
        stranger.check_bounds(&bounds).unwrap_err().to_string(),
        "fault `revoke-client@1s,client=99`: the run has 4 client(s), client-1 to client-4; give client=1 to 4, or --clients 99"
    );
    let open = RunBounds::default();
    assert!(late.check_bounds(&open).is_ok());
    assert!(stranger.check_bounds(&open).is_ok());
    let fine: FaultSpec = "network@4s:20s,latency=300ms".parse().unwrap();
    assert!(fine.check_bounds(&bounds).is_ok());
}

#[test]
fn a_spec_is_written_back_as_a_user_writes_it() {
    for text in [
        "corrupt-pack@15s",
        "server-restart@20s:5s",
        "network@1m:20s,latency=300ms,drop=5,error=20",
        "revoke-client@3s,client=2",
    ] {
        let spec: FaultSpec = text.parse().unwrap();
        assert_eq!(spec.to_string().parse::<FaultSpec>().unwrap(), spec);
    }
    assert_eq!(
        "revoke-client@3s,client=2"
            .parse::<FaultSpec>()
            .unwrap()
            .to_string(),
        "revoke-client@3s,client=2"
    );
}

#[test]
fn a_cut_takes_its_size_and_only_a_cut_does() {
    let cut: FaultSpec = "truncate-pack@20s,size=512KiB".parse().unwrap();
    assert_eq!(cut.truncate_to(), ByteSize::kib(512));
    assert_eq!(cut.to_string(), "truncate-pack@20s,size=512KiB");
    let default: FaultSpec = "truncate-pack@20s".parse().unwrap();
    assert_eq!(default.truncate_to(), DEFAULT_TRUNCATE_TO);
    assert_eq!(default.to_string(), "truncate-pack@20s");
    // A scenario file's entry round-trips, size and all.
    let entry = ScenarioFault::from_spec(&cut);
    assert_eq!(entry.size.as_deref(), Some("512KiB"));
    assert_eq!(entry.to_spec().unwrap(), cut);
    for (text, says) in [
        (
            "empty-pack@1s,size=2MiB",
            "size is an option of truncate-pack",
        ),
        ("truncate-pack@1s,size=0", "write empty-pack instead"),
        ("truncate-pack@1s,size=lots", "is not a size"),
        ("empty-pack@1s:5s", "acts once"),
    ] {
        let error = text.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(error.contains(says), "{text}: {error}");
    }
    assert_eq!(compact_size(ByteSize::b(1536)), "1536");
    assert_eq!(compact_size(ByteSize::kib(1536)), "1536KiB");
    assert_eq!(compact_size(ByteSize::mib(2)), "2MiB");
}

/// `storage-errors`: `share=` parsed and written back, refused on other
/// kinds and at 0; the default the menu names is the one used.
#[test]
fn storage_errors_take_a_share() {
    let spec: FaultSpec = "storage-errors@10s:20s,share=45".parse().unwrap();
    assert_eq!(spec.error_share(), 45);
    assert_eq!(spec.to_string(), "storage-errors@10s:20s,share=45");
    let scenario = ScenarioFault::from_spec(&spec);
    assert_eq!(scenario.to_spec().unwrap(), spec);
    let plain: FaultSpec = "storage-errors@10s".parse().unwrap();
    assert_eq!(plain.error_share(), DEFAULT_STORAGE_ERROR_SHARE);
    assert_eq!(plain.duration, Some(Duration::from_secs(15)));
    assert!(
        FaultKind::StorageErrors
            .describe()
            .contains(&format!("({DEFAULT_STORAGE_ERROR_SHARE}%)"))
    );
    for bad in [
        "network@1s,share=5",
        "storage-errors@1s,share=0",
        "storage-errors@1s,share=101",
    ] {
        assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
    }
}

#[test]
fn stop_osd_names_its_process_and_nothing_else_takes_a_pid() {
    let spec: FaultSpec = "stop-osd@10s:20s,pid=4242".parse().unwrap();
    assert_eq!(spec.pid, Some(4242));
    assert_eq!(spec.duration, Some(Duration::from_secs(20)));
    assert_eq!(spec.to_string(), "stop-osd@10s:20s,pid=4242");
    let scenario = ScenarioFault::from_spec(&spec);
    assert_eq!(scenario.to_spec().unwrap(), spec);
    let plain: FaultSpec = "stop-osd@10s,pid=7".parse().unwrap();
    assert_eq!(plain.duration, Some(Duration::from_secs(15)));
    let missing = "stop-osd@10s:20s".parse::<FaultSpec>().unwrap_err();
    assert!(missing.to_string().contains("pid=PID"), "{missing}");
    for bad in [
        "stop-osd@1s,pid=0",
        "stop-osd@1s,pid=osd",
        "network@1s,pid=5",
        "kill-client@1s,pid=5",
    ] {
        assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
    }
}

/// `victim=`: a pack or index fault's file by its role, parsed and written
/// back (a scenario file's entry too); refused on faults that damage no
/// file, in a form it cannot read, and for a client the run never has.
#[test]
fn a_victim_is_named_by_the_client_that_stored_it_and_its_place() {
    let spec: FaultSpec = "corrupt-pack@20s,victim=client-2/5".parse().unwrap();
    assert_eq!(spec.victim, Some(VictimRole { client: 2, nth: 5 }));
    assert_eq!(spec.to_string(), "corrupt-pack@20s,victim=client-2/5");
    assert_eq!(ScenarioFault::from_spec(&spec).to_spec().unwrap(), spec);
    let index: FaultSpec = "delete-index@1s,victim=client-1/1".parse().unwrap();
    assert_eq!(index.victim, Some(VictimRole { client: 1, nth: 1 }));
    assert_eq!(
        VictimRole { client: 3, nth: 12 }.describe("data pack"),
        "client-3's 12th data pack"
    );
    for (nth, says) in [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (11, "11th"),
        (22, "22nd"),
    ] {
        let role = VictimRole { client: 1, nth };
        assert!(role.describe("pack").contains(says), "{nth}");
    }
    for (bad, says) in [
        (
            "network@1s,victim=client-1/1",
            "victim names a damaged file",
        ),
        (
            "kill-client@1s,victim=client-1/1",
            "victim names a damaged file",
        ),
        ("corrupt-pack@1s,victim=client-0/1", "counted from 1"),
        ("corrupt-pack@1s,victim=client-1/0", "counted from 1"),
        ("corrupt-pack@1s,victim=2/5", "write victim=client-N/K"),
        ("corrupt-pack@1s,victim=client-2", "write victim=client-N/K"),
    ] {
        let error = bad.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }
    let far: FaultSpec = "delete-pack@1s,victim=client-5/1".parse().unwrap();
    let bounds = RunBounds {
        duration: None,
        clients: Some(4),
    };
    let error = far.check_bounds(&bounds).unwrap_err().to_string();
    assert!(error.contains("no client-5"), "{error}");
}

/// The reference lists every fault a user can name, in its table.
#[test]
fn docs_list_every_fault() {
    let docs = include_str!("../../docs/faults.md");
    for kind in FaultKind::ALL {
        let row = format!("| `{kind}` |");
        assert!(
            docs.lines().any(|line| line.starts_with(&row)),
            "docs/faults.md has no row for {kind}"
        );
    }
}
