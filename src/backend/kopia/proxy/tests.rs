//! The proxy against a real TCP echo server on loopback.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// An echo server: every byte it reads it writes back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    proxy: ConnectionProxy,
    evidence: Arc<Evidence>,
    started: Instant,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(echo_server());
    let evidence = Arc::new(Evidence::new());
    let proxy = ConnectionProxy::new(upstream, runtime.handle().clone(), 7, evidence.clone());
    Fixture {
        runtime,
        proxy,
        evidence,
        started: Instant::now(),
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `bytes` and reads as many back, or the error that ended the read.
fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(bytes)?;
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

#[test]
fn bytes_pass_both_ways_unchanged_and_each_user_keeps_its_own_listener() {
    let f = fixture();
    let one = f.proxy.listener_for("client-1@snapstorm").unwrap();
    let two = f.proxy.listener_for("client-2@snapstorm").unwrap();
    assert_ne!(one, two);
    assert_eq!(f.proxy.listener_for("client-1@snapstorm").unwrap(), one);
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut stream = connect(one);
    assert_eq!(round_trip(&mut stream, &payload).unwrap(), payload);
    assert_eq!(f.evidence.disturbed("client-1@snapstorm", f.started), None);
}

#[test]
fn a_server_that_is_down_closes_the_connection_and_the_evidence_names_its_user() {
    let f = fixture();
    let one = f.proxy.listener_for("client-1@snapstorm").unwrap();
    f.proxy.set_upstream(None);
    let mut stream = connect(one);
    let ended = round_trip(&mut stream, b"hello");
    assert!(ended.is_err(), "{ended:?}");
    assert_eq!(
        f.evidence.disturbed("client-1@snapstorm", f.started),
        Some("the proxy could not reach the server".into())
    );
    assert_eq!(f.evidence.disturbed("client-2@snapstorm", f.started), None);
}

#[test]
fn a_network_fault_drops_and_resets_connections_in_its_shares() {
    let f = fixture();
    let one = f.proxy.listener_for("client-1@snapstorm").unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let dropping = NetworkFault {
        latency: Duration::from_millis(1),
        drop_percent: 100,
        error_percent: 0,
    };
    f.proxy.set_network(dropping, until);
    let mut stream = connect(one);
    let dropped = round_trip(&mut stream, b"hello");
    assert_eq!(dropped.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    assert_eq!(
        f.evidence.disturbed("client-1@snapstorm", f.started),
        Some("the proxy dropped a request (network fault)".into())
    );

    let resetting = NetworkFault {
        drop_percent: 0,
        error_percent: 100,
        ..dropping
    };
    f.proxy.set_network(resetting, until);
    let since = Instant::now();
    let mut stream = connect(one);
    let reset = round_trip(&mut stream, b"hello");
    assert_eq!(reset.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(
        f.evidence.disturbed("client-1@snapstorm", since),
        Some("the proxy reset a connection (network fault)".into())
    );

    f.proxy.clear_network();
    let mut stream = connect(one);
    assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");
}

#[test]
fn an_armed_kill_cuts_the_uploading_client_only_and_calls_the_hook() {
    let f = fixture();
    let one = f.proxy.listener_for("client-1@snapstorm").unwrap();
    let two = f.proxy.listener_for("client-2@snapstorm").unwrap();
    let cut: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = cut.clone();
    f.proxy.on_cut(Arc::new(move |user| {
        seen.lock().unwrap().push(user.to_owned())
    }));
    f.proxy
        .arm_kill("client-1@snapstorm", Duration::from_secs(30));
    // A small exchange goes through: the kill waits for an upload.
    let mut stream = connect(one);
    assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");
    let upload = vec![7u8; 2 * KILL_AFTER_BYTES as usize];
    assert!(round_trip(&mut stream, &upload).is_err());
    assert_eq!(*cut.lock().unwrap(), vec!["client-1@snapstorm".to_owned()]);
    // Cut off for the window: a new connection gets nothing.
    let mut again = connect(one);
    assert!(round_trip(&mut again, b"hello").is_err());
    // The other client goes on.
    let mut other = connect(two);
    assert_eq!(round_trip(&mut other, &upload).unwrap(), upload);
    assert_eq!(f.evidence.disturbed("client-2@snapstorm", f.started), None);
    f.proxy.clear_kills();
    let mut after = connect(one);
    assert_eq!(round_trip(&mut after, b"hello").unwrap(), b"hello");
    drop(f.runtime);
}
