//! Tests of `listener`.

use super::*;

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        ..ConnectionLimits::default()
    }
}

#[test]
fn deadlines_follow_what_the_connection_is_doing() {
    let t0 = Instant::now();
    let mut state = ActivityState {
        in_flight: 0,
        last_moved: t0,
        head_started: None,
    };
    assert_eq!(
        state.deadline(&limits()),
        Some((
            t0 + Duration::from_secs(60),
            Expiry::Idle(Duration::from_secs(60))
        ))
    );
    // Half a head: the header timeout runs from its first byte.
    let t1 = t0 + Duration::from_secs(10);
    state.head_started = Some(t1);
    state.last_moved = t1 + Duration::from_secs(3);
    assert_eq!(
        state.deadline(&limits()),
        Some((
            t1 + Duration::from_secs(5),
            Expiry::HeaderRead(Duration::from_secs(5))
        ))
    );
    // A request in progress is never cut.
    state.in_flight = 1;
    assert_eq!(state.deadline(&limits()), None);
    // Unlimited: no deadline, no overflow.
    state.in_flight = 0;
    assert_eq!(state.deadline(&ConnectionLimits::UNLIMITED), None);
}

#[test]
fn caps_fit_the_open_file_limit() {
    let wanted = ConnectionLimits::default();
    assert_eq!(wanted.open_files_needed(), 1024 * 2 + 64);
    assert_eq!(wanted.fitted_to_open_files(20_000), wanted);
    let fitted = wanted.fitted_to_open_files(256);
    assert_eq!(fitted.max_connections, 96);
    assert_eq!(fitted.max_connections_per_peer, 12);
    assert!(fitted.open_files_needed() <= 256);
    let tiny = wanted.fitted_to_open_files(10);
    assert_eq!(
        (tiny.max_connections, tiny.max_connections_per_peer),
        (1, 1)
    );
    let unlimited = ConnectionLimits::UNLIMITED.fitted_to_open_files(1024);
    assert_eq!(unlimited.max_connections, 480);
    assert_eq!(unlimited.max_connections_per_peer, 480);
}

#[test]
fn a_peer_holds_at_most_its_cap() {
    let counts = Arc::new(PeerCounts::default());
    let ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
    let a = PeerCounts::claim(&counts, ip, 2).unwrap();
    let _b = PeerCounts::claim(&counts, mapped, 2).unwrap();
    assert!(PeerCounts::claim(&counts, ip, 2).is_none());
    assert!(PeerCounts::claim(&counts, "127.0.0.1".parse().unwrap(), 2).is_some());
    drop(a);
    assert!(PeerCounts::claim(&counts, ip, 2).is_some());
}

#[tokio::test]
async fn an_accepted_connection_sends_without_waiting_for_acks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    assert!(!stream.nodelay().unwrap(), "Nagle is on for a fresh socket");
    let conn = Connection::new(stream, ());
    assert!(conn.stream.nodelay().unwrap());
}
