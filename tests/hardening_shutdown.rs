//! Hardening: graceful shutdown. On SIGTERM (the kubelet stopping the pod) the binary finishes
//! the requests in flight, refuses new connections, and exits 0.
//!
//! Needs the test daemon (`DOCKER_HOST`): run `scripts/test`.

mod faults;

use std::time::{Duration, Instant};

use faults::{Mode, Proxy, ServeProcess, client, post};
use serde_json::json;

const IN_FLIGHT: usize = 3;
const SLOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0() {
    let proxy = Proxy::start();
    let docker_host = proxy.docker_host();
    let mut process =
        ServeProcess::start(&["--docker-host", &docker_host, "--node-name", "test-node"]).await;
    let addr = process.addr;
    let http = client();
    let info = post(&http, addr, "dockerInfoCollector", &json!({})).await;
    assert_eq!(info.status, 200, "{}", info.body);

    // The daemon turns slow: these requests are in flight when SIGTERM comes.
    proxy.set_mode(Mode::only("/info", Mode::Slow(SLOW)));
    let started = Instant::now();
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            // A client each: separate connections.
            let http = client();
            tokio::spawn(async move { post(&http, addr, "dockerInfoCollector", &json!({})).await })
        })
        .collect();
    while proxy.in_flight() < IN_FLIGHT {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the requests did not reach the daemon"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    process.sigterm();
    assert!(
        process
            .wait_for_log("shutting down", Duration::from_secs(5))
            .await,
        "no shutdown log line: {:?}",
        process.log()
    );
    // New connections are refused while the old requests are still running.
    let refused_at = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                break started.elapsed();
            }
            Err(err) => panic!("connect after SIGTERM: unexpected error {err}"),
            Ok(_) => {
                assert!(
                    started.elapsed() < SLOW - Duration::from_millis(500),
                    "still accepting connections {:?} after SIGTERM",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        refused_at < SLOW,
        "refused only after the requests in flight were done"
    );
    assert_eq!(
        proxy.in_flight(),
        IN_FLIGHT,
        "the requests are still in flight"
    );
    let fresh = faults::send(&client(), "GET", &format!("http://{addr}/healthz"), None).await;
    assert!(
        fresh.is_err(),
        "a new request was served after SIGTERM: {fresh:?}"
    );

    // The requests in flight finish, with their answers.
    for task in in_flight {
        let answer = task.await.expect("request task");
        assert_eq!(
            answer.status, 200,
            "request in flight at SIGTERM: {}",
            answer.body
        );
        assert!(
            answer.body.contains("collector.kubernetes.docker.info"),
            "{}",
            answer.body
        );
        assert!(answer.elapsed >= SLOW - Duration::from_millis(200));
    }
    let status = process
        .wait(Duration::from_secs(10))
        .await
        .expect("the collector exits after its requests are done");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        process.log().iter().any(|l| l.contains("stopped")),
        "{:?}",
        process.log()
    );
    eprintln!(
        "shutdown: {IN_FLIGHT} requests in flight at SIGTERM all answered 200, new connections \
         refused {refused_at:.1?} after they started, exit 0 after {:.1?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_0_at_once() {
    // No daemon at all: shutdown must not depend on it.
    let dir = faults::short_temp_dir("pdc-sd");
    let docker_host = format!("unix://{}/missing.sock", dir.display());
    let mut process =
        ServeProcess::start(&["--docker-host", &docker_host, "--node-name", "test-node"]).await;
    // An idle keep-alive connection must not hold the shutdown up.
    let http = client();
    let health = faults::get(&http, process.addr, "/healthz").await;
    assert_eq!(health.status, 200);
    let started = Instant::now();
    process.sigterm();
    let status = process
        .wait(Duration::from_secs(5))
        .await
        .expect("exits within 5s");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?} to stop",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(dir);
}
