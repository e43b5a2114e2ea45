//! Contract limits that fit real pipelines (issue 12): a 4 MiB body limit whose 413 a client
//! that sends its whole body can read; slow clients bounded by the read timeout (headers, body,
//! an answer not read) while others are served; a cap on open connections.
//!
//! Needs the test daemon (`DOCKER_HOST`): run `scripts/test`.

mod faults;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faults::{Mode, Proxy, bare_settings, client, metric, send};
use pod_detail_collector::Settings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;
const PATH: &str = "/processor/podDetailCollector";

/// Reads one HTTP/1.1 answer (head and `Content-Length` body) off the stream.
async fn read_answer(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body_start) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..end]).to_string(), end + 4);
        }
    };
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while raw.len() < body_start + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let end = (body_start + length).min(raw.len());
    let body = String::from_utf8_lossy(&raw[body_start..end]).to_string();
    Some((status, head.to_ascii_lowercase(), body))
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A JSON object of `size` bytes that names a pod, like a KubeDiag context full of results.
fn context_of(size: usize) -> Vec<u8> {
    let mut body = br#"{"pod.namespace":"pdc-none","pod.name":"web-0","#.to_vec();
    let mut i = 0;
    while body.len() + 64 < size {
        body.extend_from_slice(format!(r#""result.{i}":"{}","#, "x".repeat(40)).as_bytes());
        i += 1;
    }
    body.extend_from_slice(br#""end":"1"}"#);
    body
}

async fn scrape(addr: SocketAddr) -> String {
    send(&client(), "GET", &format!("http://{addr}/metrics"), None)
        .await
        .expect("scrape")
        .body
}

/// The body limit is 4 MiB by default; over it, a client that writes its whole body before it
/// reads (most do) reads a 413 — on a connection that still serves when the body was read to
/// its end, or with `Connection: close` past the drain bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_a_413_the_client_can_read() {
    let proxy = Proxy::with_mode(Mode::Http500);
    let running = proxy.collector(bare_settings()).await;
    let addr = running.addr;
    assert_eq!(bare_settings().body_limit, 4 * MIB, "the default limit");
    let mut tried = 0;

    // A real pipeline's context (1.5 MiB) is accepted: it reaches Docker (here: a sick one).
    let answer = send(
        &client(),
        "POST",
        &format!("http://{addr}{PATH}"),
        Some(context_of(3 * MIB / 2)),
    )
    .await
    .expect("post 1.5 MiB");
    assert_eq!(
        answer.status, 500,
        "1.5 MiB is within the limit: {}",
        answer.body
    );
    tried += 1;
    proxy.clear_log();

    let six = context_of(6 * MIB);
    // 1. Content-Length, sent whole, then the answer read; the connection serves on.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        six.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&six).await.expect("the whole 6 MiB body");
    let (status, head, body) = read_answer(&mut stream).await.expect("a readable answer");
    assert_eq!(status, 413, "{head}");
    assert!(
        body.contains("larger than the limit of 4194304 bytes"),
        "{body}"
    );
    assert!(!head.contains("connection: close"), "{head}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("next request");
    let (status, _, _) = read_answer(&mut stream).await.expect("the next answer");
    assert_eq!(status, 200, "the connection serves on after the 413");
    tried += 1;

    // 2. Chunked, no Content-Length, sent whole.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("head");
    stream
        .write_all(&chunked(&six, 64 * 1024))
        .await
        .expect("the whole chunked body");
    let (status, _, body) = read_answer(&mut stream).await.expect("a readable answer");
    assert_eq!(status, 413, "chunked: {body}");
    tried += 1;

    // 3. An ordinary HTTP client.
    let answer = send(
        &client(),
        "POST",
        &format!("http://{addr}{PATH}"),
        Some(six.clone()),
    )
    .await
    .expect("reqwest reads the 413 instead of a reset");
    assert_eq!(answer.status, 413, "{}", answer.body);
    tried += 1;

    // 4. Far past the drain bound (32 MiB), sent whole before reading: answered, then the
    //    connection is closed after a lingering read, so the client still reads the 413
    //    instead of a reset.
    let huge = vec![b'x'; 32 * MIB];
    for chunked_body in [false, true] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let (head, body) = if chunked_body {
            (
                format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
                chunked(&huge, MIB),
            )
        } else {
            (
                format!(
                    "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    huge.len()
                ),
                huge.clone(),
            )
        };
        stream.write_all(head.as_bytes()).await.expect("head");
        let sent = tokio::time::timeout(Duration::from_secs(20), stream.write_all(&body)).await;
        assert!(
            matches!(sent, Ok(Ok(()))),
            "32 MiB (chunked: {chunked_body}): the body could not be sent whole: {sent:?}"
        );
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(
            text.starts_with("http/1.1 413"),
            "32 MiB (chunked: {chunked_body}): {text:?}"
        );
        assert!(text.contains("connection: close"), "{text}");
        tried += 1;
    }

    // 5. A declared length over the limit with `Expect: 100-continue`: answered at once,
    //    nothing sent.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                6 * MIB
            )
            .as_bytes(),
        )
        .await
        .expect("head");
    let started = Instant::now();
    let (status, head, _) = read_answer(&mut stream).await.expect("an answer");
    assert_eq!(status, 413, "{head}");
    assert!(started.elapsed() < Duration::from_secs(2));
    tried += 1;

    assert_eq!(proxy.requests(), 0, "over-limit bodies reached Docker");
    eprintln!(
        "bodies: {tried} tried (1.5 MiB accepted; 6 MiB with Content-Length, chunked and \
         through reqwest, 32 MiB with and without Content-Length, 6 MiB announced with \
         100-continue), every over-limit one answered a readable 413, none reached Docker"
    );
    running.shutdown().await;
}

/// Slow-loris: connections that trickle their headers or their body, or send nothing, are
/// dropped within the read timeout, while other requests are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_within_the_bound_while_others_are_served() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const SLOW: usize = 8;
    let proxy = Proxy::start();
    let running = proxy
        .collector(Settings {
            read_timeout: TIMEOUT,
            ..bare_settings()
        })
        .await;
    let addr = running.addr;

    // Headers a byte every 200 ms, forever; a connection that sends nothing.
    let mut slow = Vec::new();
    for i in 0..SLOW {
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let line = format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            if i > 0 {
                let _ = stream.write_all(line.as_bytes()).await;
            }
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    read = stream.read(&mut byte) => {
                        // Closed by the server (or an answer, which must not happen).
                        let n = read.unwrap_or(0);
                        return (started.elapsed(), n);
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if i > 0 && stream.write_all(b"a").await.is_err() {
                            return (started.elapsed(), 0);
                        }
                    }
                }
                if started.elapsed() > Duration::from_secs(15) {
                    return (started.elapsed(), usize::MAX);
                }
            }
        }));
    }
    // A body a byte every 200 ms.
    let slow_body = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{");
        stream.write_all(head.as_bytes()).await.expect("head");
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            while writer.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut raw)).await;
        trickle.abort();
        (started.elapsed(), String::from_utf8_lossy(&raw).to_string())
    });

    // Meanwhile the server answers others, quickly.
    let http = client();
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + TIMEOUT + Duration::from_secs(1);
    while Instant::now() < until {
        for (method, path, body) in [
            ("GET", "/healthz", None),
            (
                "POST",
                "/processor/dockerInfoCollector",
                Some(b"{}".to_vec()),
            ),
        ] {
            let answer = send(&http, method, &format!("http://{addr}{path}"), body)
                .await
                .expect("served while slow clients hold connections");
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            slowest = slowest.max(answer.elapsed);
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );

    for task in slow {
        let (after, read) = task.await.expect("slow client");
        assert_eq!(
            read, 0,
            "the slow client got an answer or was never dropped"
        );
        assert!(
            after >= TIMEOUT - Duration::from_millis(300)
                && after < TIMEOUT + Duration::from_secs(2),
            "dropped after {after:?}, the bound is {TIMEOUT:?}"
        );
    }
    let (after, text) = slow_body.await.expect("slow body");
    assert!(text.starts_with("HTTP/1.1 408"), "slow body: {text:?}");
    assert!(text.contains("did not arrive within 2s"), "{text}");
    assert!(
        after < TIMEOUT + Duration::from_secs(2),
        "408 after {after:?}"
    );

    let metrics = scrape(addr).await;
    let refused = |reason| {
        metric(
            &metrics,
            "pod_detail_collector_refused_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused("header_timeout"), SLOW as f64, "{metrics}");
    assert_eq!(refused("body_timeout"), 1.0, "{metrics}");
    eprintln!(
        "slow clients: {SLOW} slow-header/idle connections dropped within {TIMEOUT:?}, a slow \
         body answered 408; meanwhile {served} requests served, the slowest in {slowest:?}"
    );
    running.shutdown().await;
}

/// An answer the client does not read ends the connection after the read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_nobody_reads_ends_the_connection() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let proxy = Proxy::with_mode(Mode::Http500);
    let running = proxy
        .collector(Settings {
            read_timeout: TIMEOUT,
            ..bare_settings()
        })
        .await;
    let addr = running.addr;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(addr).await.expect("connect");
    let (_reader, mut writer) = stream.into_split();
    // Thousands of pipelined requests whose answers fill every buffer: never read.
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(pipelined.as_bytes()).await;
        writer
    });
    let deadline = Instant::now() + TIMEOUT * 4 + Duration::from_secs(5);
    loop {
        let text = scrape(addr).await;
        if metric(
            &text,
            "pod_detail_collector_refused_total",
            &[("reason", "write_timeout")],
        ) == Some(1.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled connection was not closed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writing.abort();
    running.shutdown().await;
}

/// At most `max_connections` are open; one more waits until one closes (here: idle ones the
/// read timeout drops) instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_one() {
    const CAP: usize = 3;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let proxy = Proxy::start();
    let running = proxy
        .collector(Settings {
            read_timeout: TIMEOUT,
            max_connections: CAP,
            ..bare_settings()
        })
        .await;
    let addr = running.addr;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let answer = send(
        &client(),
        "POST",
        &format!("http://{addr}/processor/dockerInfoCollector"),
        Some(json!({}).to_string().into_bytes()),
    )
    .await
    .expect("served once a connection is free");
    let waited = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        waited >= TIMEOUT - Duration::from_millis(700) && waited < TIMEOUT + Duration::from_secs(3),
        "waited {waited:?} for a connection (the idle ones are dropped after {TIMEOUT:?})"
    );
    let text = scrape(addr).await;
    let open = metric(&text, "pod_detail_collector_http_connections", &[]).unwrap_or(-1.0);
    assert!(
        (1.0..=CAP as f64).contains(&open),
        "open connections: {open}\n{text}"
    );
    eprintln!("connection cap {CAP}: one more request waited {waited:?}, then was served");
    drop(idle);
    running.shutdown().await;
}
