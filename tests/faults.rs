//! Faults and abuse against the real webhook server on loopback over TLS: bodies that are
//! not AdmissionReviews, oversized and endless bodies, clients that stall or vanish at every
//! stage, more connections than the server takes, garbage instead of a TLS handshake, and
//! traffic while the certificate rotates and the configuration reloads. After each, the server
//! must still answer a real AdmissionReview correctly.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http::{self, Client, H1, Proto};
use common::{
    CONFIG, HOST, TestCa, TestServer, check_envelope, fixture, fixture_json, images, pairs,
    patched_pod,
};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pullthrough::reload::Outcome;
use pullthrough::server::{Limits, MUTATE_PATH, ServeOptions};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SIMPLE: &str = "pod-create-simple.json";
/// Short enough that a stalled client is dropped within the test, long enough for a loaded
/// 2-core machine to finish a real handshake and request.
const SHORT: Duration = Duration::from_millis(600);

fn short_limits() -> Limits {
    Limits {
        body_limit: common::BODY_LIMIT,
        request_timeout: Duration::from_secs(3),
    }
}

fn short_options(max_connections: usize) -> ServeOptions {
    ServeOptions {
        handshake_timeout: SHORT,
        header_read_timeout: SHORT,
        max_connections,
        drain_timeout: Duration::from_secs(2),
    }
}

async fn short_server(max_connections: usize) -> TestServer {
    TestServer::start_with_options(CONFIG, short_limits(), short_options(max_connections)).await
}

/// The simple fixture, answered over a new connection with `proto`, rewritten as expected.
async fn assert_serves(server: &TestServer, proto: Proto) {
    let request = fixture_json(SIMPLE);
    let mut client = server.client(proto).await;
    let resp = client.post(MUTATE_PATH, &fixture(SIMPLE)).await;
    let response = check_envelope(&request, &resp);
    assert_eq!(
        images(&patched_pod(&request, &response)).main,
        pairs(&[("app", &format!("{HOST}/docker-hub/library/nginx:1.27"))])
    );
}

async fn assert_serves_both(server: &TestServer) {
    for proto in Proto::ALL {
        assert_serves(server, proto).await;
    }
}

/// Reads until the peer closes; returns how long that took, or `None` if it is still open
/// after `within`. Bytes the server sends first (an alert, a 408) are skipped.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A new HTTP/1.1 connection that has sent the head of a POST to the webhook announcing
/// `body_len` bytes of JSON, and nothing of the body.
async fn post_head(
    server: &TestServer,
    body_len: usize,
) -> H1<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = server.connector(Proto::Http1);
    let stream = http::connect_tls(&connector, server.webhook_addr, "localhost")
        .await
        .unwrap();
    let mut conn = H1::new(stream);
    let head = http::h1_head(
        "POST",
        MUTATE_PATH,
        &[("content-type", "application/json")],
        body_len,
    );
    conn.write_raw(&head).await.unwrap();
    conn
}

fn review_with(request: &Value) -> Vec<u8> {
    serde_json::to_vec(request).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_v1_admission_reviews_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let simple = fixture_json(SIMPLE);
    let pod = simple["request"]["object"].clone();
    let mut v1beta1 = simple.clone();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    v1beta1["request"]["uid"] = json!("v1beta1-uid");
    let mut no_request = simple.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut null_request = simple.clone();
    null_request["request"] = Value::Null;
    let mut numeric_uid = simple.clone();
    numeric_uid["request"]["uid"] = json!(42);
    let mut no_operation = simple.clone();
    no_operation["request"]
        .as_object_mut()
        .unwrap()
        .remove("operation");
    no_operation["request"]["uid"] = json!("no-operation-uid");
    let full = fixture(SIMPLE);
    let truncated = full[..full.len() / 2].to_vec();
    // Far deeper than serde_json's recursion limit: refused, not a stack overflow.
    let deep = format!(
        "{{\"request\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let mut invalid_utf8 = full.clone();
    let at = invalid_utf8.windows(5).position(|w| w == b"nginx").unwrap();
    invalid_utf8[at] = 0xff;

    // Bodies with no readable uid: HTTP 400, nothing else can be answered.
    let unanswerable: Vec<(&str, Vec<u8>)> = vec![
        ("a Pod", review_with(&pod)),
        ("no request", review_with(&no_request)),
        ("null request", review_with(&null_request)),
        ("numeric uid", review_with(&numeric_uid)),
        ("truncated JSON", truncated),
        ("deeply nested JSON", deep.into_bytes()),
        ("invalid UTF-8", invalid_utf8),
        ("empty body", Vec::new()),
        ("JSON array", b"[1,2,3]".to_vec()),
    ];
    // Readable uid, unusable review: an AdmissionReview refusing it with code 400.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("v1beta1", review_with(&v1beta1)),
        ("no operation", review_with(&no_operation)),
    ];

    for proto in Proto::ALL {
        let mut client = server.client(proto).await;
        for (what, body) in &unanswerable {
            let resp = client.post(MUTATE_PATH, body).await;
            assert_eq!(resp.status, 400, "{proto:?} {what}: {}", resp.text());
            assert!(
                !resp.text().contains("nginx"),
                "{proto:?} {what}: the error must not echo the body: {}",
                resp.text()
            );
        }
        for (what, body) in &refused {
            let resp = client.post(MUTATE_PATH, body).await;
            assert_eq!(resp.status, 200, "{proto:?} {what}: {}", resp.text());
            let review = resp.json();
            assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
            assert_eq!(
                review["response"]["allowed"], false,
                "{proto:?} {what}: {review}"
            );
            assert_eq!(review["response"]["status"]["code"], 400, "{review}");
            assert!(review["response"].get("patch").is_none(), "{review}");
        }
        // The same kept-alive connection still answers a good review.
        let resp = client.post(MUTATE_PATH, &full).await;
        check_envelope(&simple, &resp);
        assert_serves(&server, proto).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_huge_body_gets_413_before_it_is_sent_and_a_chunked_one_when_it_passes_the_limit()
 {
    let server = TestServer::start().await;
    let connector = server.connector(Proto::Http1);

    // A Content-Length of 1 GiB and not one byte of body: refused at once.
    let mut conn = post_head(&server, 1 << 30).await;
    let resp = tokio::time::timeout(Duration::from_secs(3), conn.read_response())
        .await
        .expect("no early 413")
        .unwrap();
    assert_eq!(resp.status, 413, "{}", resp.text());

    // A chunked body with no length: refused once it passes the limit.
    let stream = http::connect_tls(&connector, server.webhook_addr, "localhost")
        .await
        .unwrap();
    let mut conn = H1::new(stream);
    conn.write_raw(
        format!(
            "POST {MUTATE_PATH} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    let mut sent = 0;
    // The server may stop reading and answer while chunks are still going out.
    while sent <= 2 * common::BODY_LIMIT && conn.write_raw(chunk.as_bytes()).await.is_ok() {
        sent += 0x4000;
    }
    let status = tokio::time::timeout(Duration::from_secs(3), conn.read_response())
        .await
        .expect("no 413")
        .map(|r| r.status);
    assert_eq!(status.unwrap(), 413);

    // Over HTTP/2, a body past the limit is refused the same way.
    let mut big = fixture_json(SIMPLE);
    big["request"]["object"]["metadata"]["annotations"] =
        json!({"padding": "y".repeat(4 * common::BODY_LIMIT)});
    let mut h2 = server.client(Proto::Http2).await;
    let resp = h2.post(MUTATE_PATH, &review_with(&big)).await;
    assert_eq!(resp.status, 413);
    assert_serves_both(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_halfway_gets_408_at_the_deadline() {
    let server = short_server(64).await;
    let body = fixture(SIMPLE);
    let mut conn = post_head(&server, body.len()).await;
    conn.write_raw(&body[..body.len() / 2]).await.unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(8), conn.read_response())
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert!(
        resp.text().contains("not completed in time"),
        "{}",
        resp.text()
    );
    let took = started.elapsed();
    let deadline = short_limits().request_timeout;
    assert!(
        took + Duration::from_millis(200) >= deadline && took < deadline + Duration::from_secs(2),
        "answered after {took:?}, deadline {deadline:?}"
    );
    assert_serves_both(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_before_or_inside_the_request_head_are_disconnected() {
    let server = short_server(64).await;
    let connector = server.connector(Proto::Http1);
    let limit = SHORT * 4;

    // TCP connected, no TLS handshake at all.
    let mut tcp = TcpStream::connect(server.webhook_addr).await.unwrap();
    let took = closed_within(&mut tcp, limit).await;
    assert!(took.is_some(), "a silent TCP client is never dropped");

    // Half a ClientHello, then silence.
    let mut tcp = TcpStream::connect(server.webhook_addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await
        .unwrap();
    assert!(
        closed_within(&mut tcp, limit).await.is_some(),
        "a stalled handshake is never dropped"
    );

    // TLS done, not one byte of HTTP.
    let mut tls = http::connect_tls(&connector, server.webhook_addr, "localhost")
        .await
        .unwrap();
    assert!(
        closed_within(&mut tls, limit).await.is_some(),
        "a TLS client that never sends a request is never dropped"
    );

    // Half a request head, then silence.
    let mut tls = http::connect_tls(&connector, server.webhook_addr, "localhost")
        .await
        .unwrap();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_within(&mut tls, limit).await.is_some(),
        "a head that never ends is never dropped"
    );

    // A head dripped one byte at a time, each well within the timeout: the head as a whole
    // must still be finished in time.
    let mut tls = http::connect_tls(&connector, server.webhook_addr, "localhost")
        .await
        .unwrap();
    let started = Instant::now();
    let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut dropped = false;
    for b in head {
        if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
            dropped = true;
            break;
        }
        let mut probe = [0u8; 512];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), tls.read(&mut probe)).await
        {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "a dripped head was read for {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < limit + Duration::from_secs(1));

    assert_serves_both(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_tls_handshake_is_dropped_and_the_server_keeps_serving() {
    let server = short_server(64).await;
    let garbage: Vec<Vec<u8>> = vec![
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        (0..4096u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[1])
            .collect(),
        // A TLS record header announcing a huge handshake message.
        vec![0x16, 0x03, 0x03, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff],
        vec![0; 64],
    ];
    for bytes in &garbage {
        let mut tcp = TcpStream::connect(server.webhook_addr).await.unwrap();
        // The server may close before all is written.
        let _ = tcp.write_all(bytes).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(SHORT * 4, tcp.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "connection left open after garbage {:?}",
            &bytes[..8]
        );
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/"),
            "plain HTTP answered on the TLS port"
        );
    }
    assert_serves_both(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_free_their_connection_slot() {
    // Two slots only: a slot kept by a vanished client would soon lock everyone out.
    let server = short_server(2).await;
    let body = fixture(SIMPLE);
    let connector = server.connector(Proto::Http1);
    for round in 0..4 {
        // HTTP/1.1: the head and half of the body, then the connection is dropped.
        let stream = http::connect_tls(&connector, server.webhook_addr, "localhost")
            .await
            .unwrap();
        let mut conn = H1::new(stream);
        let mut partial = http::h1_head(
            "POST",
            MUTATE_PATH,
            &[("content-type", "application/json")],
            body.len(),
        );
        partial.extend_from_slice(&body[..body.len() / 2]);
        conn.write_raw(&partial).await.unwrap();
        drop(conn);

        // HTTP/2: a stream whose body never ends, then the connection is dropped.
        let stream = http::connect_tls(
            &server.connector(Proto::Http2),
            server.webhook_addr,
            "localhost",
        )
        .await
        .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(
            &body[..body.len() / 2],
        ))))
        .await
        .unwrap();
        let request = hyper::Request::post(format!("https://localhost{MUTATE_PATH}"))
            .header("content-type", "application/json")
            .body(StreamBody::new(tokio_stream(rx)).boxed())
            .unwrap();
        let pending = tokio::spawn(async move { sender.send_request(request).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        driver.abort();
        pending.abort();
        drop(tx);

        tokio::time::timeout(Duration::from_secs(5), assert_serves_both(&server))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no free connection slot"));
    }
    server.stop().await;
}

/// A stream of frames from a channel.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_clients_wait_and_are_served_once_idle_ones_go() {
    const MAX: usize = 4;
    let server = short_server(MAX).await;
    let connector = server.connector(Proto::Http1);

    // Every slot taken by a client that finished its handshake and sends nothing.
    let mut idle = Vec::new();
    for _ in 0..MAX {
        idle.push(
            http::connect_tls(&connector, server.webhook_addr, "localhost")
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    // The next client is not refused: it waits in the listen backlog, then is served when the
    // header-read timeout drops the idle ones.
    for proto in Proto::ALL {
        assert_serves(&server, proto).await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= SHORT / 2,
        "served after {waited:?}: the connection limit is not enforced"
    );
    for mut conn in idle {
        assert!(
            closed_within(&mut conn, Duration::from_secs(2))
                .await
                .is_some()
        );
    }

    // Idle clients that leave on their own free their slots at once.
    let server = TestServer::start_with_options(
        CONFIG,
        short_limits(),
        ServeOptions {
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
            ..short_options(MAX)
        },
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..MAX {
        idle.push(TcpStream::connect(server.webhook_addr).await.unwrap());
    }
    let waiting = {
        let connector = server.connector(Proto::Http2);
        let addr = server.webhook_addr;
        tokio::spawn(async move {
            let mut client = Client::connect(&connector, addr, Proto::Http2).await?;
            client
                .request("POST", MUTATE_PATH, &[], &fixture(SIMPLE))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a client past the limit was served while every slot was held"
    );
    drop(idle);
    let resp = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("still waiting after the idle clients left")
        .unwrap()
        .unwrap();
    check_envelope(&fixture_json(SIMPLE), &resp);
    assert_serves_both(&server).await;
    server.stop().await;
}

/// A TLS client configuration trusting every CA in `roots`, without session resumption.
fn connector_trusting(roots: &[CertificateDer<'static>], proto: Proto) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![proto.alpn().to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_certificate_rotation_and_config_reload_are_all_answered_correctly() {
    let mut server = TestServer::start().await;
    let ca = TestCa::new("rotation CA");
    let roots = vec![server.ca_der(), ca.der()];
    let accounts = ["123456789012", "210987654321"];
    let expected: Vec<String> = accounts
        .iter()
        .map(|a| format!("{a}.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27"))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let proto = Proto::ALL[worker % 2];
        let connector = connector_trusting(&roots, proto);
        let (addr, stop, answered, expected) = (
            server.webhook_addr,
            stop.clone(),
            answered.clone(),
            expected.clone(),
        );
        clients.push(tokio::spawn(async move {
            let request = fixture_json(SIMPLE);
            let body = fixture(SIMPLE);
            let mut leaves = std::collections::BTreeSet::new();
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Acquire) {
                // A few requests per connection, then a new connection and handshake.
                let mut client = Client::connect(&connector, addr, proto)
                    .await
                    .unwrap_or_else(|e| panic!("worker {worker}: connect failed: {e}"));
                leaves.insert(client.peer_leaf());
                for _ in 0..3 {
                    let resp = client
                        .request("POST", MUTATE_PATH, &[], &body)
                        .await
                        .unwrap_or_else(|e| panic!("worker {worker}: request failed: {e}"));
                    let response = check_envelope(&request, &resp);
                    let image = images(&patched_pod(&request, &response)).main[0].1.clone();
                    assert!(expected.contains(&image), "worker {worker}: got {image}");
                    seen.insert(image);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            (leaves.len(), seen.len())
        }));
    }

    let mut rotations = 0;
    let mut reloads = 0;
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_millis(2500) || round < 6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        round += 1;
        let (chain, key, _) = ca.leaf(&["localhost", &format!("gen{round}.test")]);
        server.volume.update(chain.as_bytes(), key.as_bytes());
        assert_eq!(server.cert_reloader.poll_once(), Outcome::Reloaded);
        rotations += 1;
        server.write_config(&format!(
            "accountId: \"{}\"\nregion: eu-west-1\n",
            accounts[round % 2]
        ));
        assert_eq!(server.config_reloader.poll_once(), Outcome::Reloaded);
        reloads += 1;
    }
    stop.store(true, Ordering::Release);
    let mut leaves_seen = 0;
    let mut images_seen = 0;
    for c in clients {
        let (leaves, images) = tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("a worker hung")
            .unwrap();
        leaves_seen = leaves_seen.max(leaves);
        images_seen = images_seen.max(images);
    }
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered >= 24, "only {answered} requests answered");
    assert!(
        leaves_seen >= 2,
        "no worker saw a rotated certificate ({rotations} rotations)"
    );
    assert_eq!(
        images_seen, 2,
        "no worker saw both configurations ({reloads} reloads)"
    );

    // The last configuration is the one in force.
    let last = format!(
        "{}.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27",
        accounts[round % 2]
    );
    let connector = connector_trusting(&roots, Proto::Http2);
    let mut client = Client::connect(&connector, server.webhook_addr, Proto::Http2)
        .await
        .unwrap();
    let request = fixture_json(SIMPLE);
    let resp = client.post(MUTATE_PATH, &fixture(SIMPLE)).await;
    let response = check_envelope(&request, &resp);
    assert_eq!(images(&patched_pod(&request, &response)).main[0].1, last);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_closed_when_idle_and_kept_while_used() {
    let server = short_server(64).await;
    let body = fixture(SIMPLE);
    let request = fixture_json(SIMPLE);
    for proto in Proto::ALL {
        // Used more often than the idle timeout, for longer than it: kept open.
        let mut busy = server.client(proto).await;
        let started = Instant::now();
        while started.elapsed() < SHORT * 2 {
            check_envelope(&request, &busy.post(MUTATE_PATH, &body).await);
            tokio::time::sleep(SHORT / 4).await;
        }
        check_envelope(&request, &busy.post(MUTATE_PATH, &body).await);

        // Left alone past the timeout: closed by the server (GOAWAY for HTTP/2).
        let mut idle = server.client(proto).await;
        check_envelope(&request, &idle.post(MUTATE_PATH, &body).await);
        tokio::time::sleep(SHORT * 2).await;
        match &mut idle {
            Client::H2(h2) => assert!(h2.is_closed(), "idle HTTP/2 connection still open"),
            Client::H1(h1) => assert!(
                closed_within(&mut h1.io, Duration::from_millis(100))
                    .await
                    .is_some(),
                "idle HTTP/1.1 connection still open"
            ),
        }
    }
    assert_serves_both(&server).await;
    server.stop().await;
}
