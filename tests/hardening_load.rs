//! Hardening: load. A bounded storm of diagnoses on loopback (32 concurrent clients, a fixed
//! number of requests, a time limit) against the real binary: zero errors, and memory that
//! returns to its baseline. Calls toward Docker are capped (`--runtime-concurrency`), which a
//! proxy in front of the daemon measures, so a storm cannot overload a sick daemon.
//!
//! Needs the test daemon (`DOCKER_HOST`) and images: run `scripts/test`.

mod faults;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faults::{Mode, Proxy, ServeProcess, client, metric, send};
use serde_json::json;
use support::service::settings_for;
use support::{Container, Node, Pod};

const CLIENTS: usize = 32;
/// Requests per client in each measured round.
const PER_CLIENT: usize = 25;
/// Each round must finish within this.
const ROUND_LIMIT: Duration = Duration::from_secs(40);
/// Docker calls in flight at once, at most.
const DOCKER_CAP: usize = 4;
const MIB: u64 = 1024 * 1024;

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    errors: AtomicUsize,
}

/// One request of the mix, by its number: what to send and the status it must get.
fn nth_request(n: usize, ns: &str) -> (&'static str, &'static str, Option<Vec<u8>>, u16) {
    let detail = "/processor/podDetailCollector";
    let body = |v: serde_json::Value| Some(v.to_string().into_bytes());
    match n % 10 {
        0..=2 => (
            "POST",
            detail,
            body(json!({"pod.namespace": ns, "pod.name": "web", "node": "test-node"})),
            200,
        ),
        3..=4 => (
            "POST",
            detail,
            body(json!({"pod.namespace": ns, "pod.name": "db"})),
            200,
        ),
        5 => (
            "POST",
            "/processor/podListCollector",
            body(json!({"pod.namespace": ns})),
            200,
        ),
        6 => ("GET", "/healthz", None, 200),
        7 => ("POST", detail, Some(b"{\"pod.name\": 42".to_vec()), 400),
        8 => (
            "POST",
            detail,
            body(json!({"pod.namespace": ns, "pod.name": "ghost"})),
            404,
        ),
        _ => ("GET", "/metrics", None, 200),
    }
}

/// `CLIENTS` clients, `per_client` requests each, all at once; returns how long it took.
async fn round(
    base: std::net::SocketAddr,
    ns: &str,
    per_client: usize,
    tally: &Arc<Tally>,
    first_errors: &Arc<std::sync::Mutex<Vec<String>>>,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let ns = ns.to_string();
            let tally = tally.clone();
            let first_errors = first_errors.clone();
            tokio::spawn(async move {
                let http = client();
                for i in 0..per_client {
                    let (method, path, body, want) = nth_request(c * 7 + i, &ns);
                    let url = format!("http://{base}{path}");
                    tally.sent.fetch_add(1, Ordering::SeqCst);
                    let outcome = send(&http, method, &url, body).await;
                    let bad = match &outcome {
                        Ok(answer) if answer.status == want => None,
                        Ok(answer) => Some(format!(
                            "{method} {path}: {} (wanted {want}): {}",
                            answer.status, answer.body
                        )),
                        Err(err) => Some(format!("{method} {path}: {err}")),
                    };
                    if let Some(bad) = bad {
                        tally.errors.fetch_add(1, Ordering::SeqCst);
                        let mut list = first_errors.lock().unwrap();
                        if list.len() < 5 {
                            list.push(bad);
                        }
                    }
                }
            })
        })
        .collect();
    let joined = tokio::time::timeout(ROUND_LIMIT, futures_util::future::join_all(tasks)).await;
    assert!(
        joined.is_ok(),
        "a round of {} requests did not finish within {ROUND_LIMIT:?}",
        CLIENTS * per_client
    );
    started.elapsed()
}

/// RSS after the process has been idle a moment.
async fn settled_rss(process: &ServeProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.rss_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_zero_errors_and_memory_back_to_baseline() {
    let node = Node::new().await;
    let ns = node.ns("load");
    node.run(
        Pod::new(ns.clone(), "web")
            .container(Container::new("app").env("DB_PASSWORD", "hunter2"))
            .container(Container::new("sidecar")),
    )
    .await;
    node.run(Pod::new(ns.clone(), "db").container(Container::new("postgres")))
        .await;
    let proxy = Proxy::start();
    let docker_host = proxy.docker_host();
    let kubelet_root = node.kubelet_root.display().to_string();
    let cap = DOCKER_CAP.to_string();
    let process = ServeProcess::start(&[
        "--docker-host",
        &docker_host,
        "--node-name",
        "test-node",
        "--kubelet-root",
        &kubelet_root,
        "--runtime-concurrency",
        &cap,
    ])
    .await;
    let base = process.addr;
    let tally = Arc::new(Tally::default());
    let first_errors = Arc::new(std::sync::Mutex::new(Vec::new()));

    // Warm up with the same concurrency: threads, pools and caches reach their working size.
    round(base, &ns, 3, &tally, &first_errors).await;
    let baseline = settled_rss(&process).await;
    let mut rss = Vec::new();
    let mut durations = Vec::new();
    for _ in 0..2 {
        durations.push(round(base, &ns, PER_CLIENT, &tally, &first_errors).await);
        rss.push(settled_rss(&process).await);
    }
    let sent = tally.sent.load(Ordering::SeqCst);
    let errors = tally.errors.load(Ordering::SeqCst);
    let docker_calls = proxy.requests();
    let max_docker = proxy.max_in_flight();
    eprintln!(
        "load: {CLIENTS} clients, {sent} requests sent ({} per measured round, rounds took \
         {durations:.1?}), {errors} errors, {docker_calls} Docker calls, at most {max_docker} \
         in flight (cap {DOCKER_CAP}); RSS baseline {:.1} MiB, after rounds {:?} MiB",
        CLIENTS * PER_CLIENT,
        baseline as f64 / MIB as f64,
        rss.iter()
            .map(|r| format!("{:.1}", *r as f64 / MIB as f64))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        errors,
        0,
        "errors under load, first ones: {:?}",
        first_errors.lock().unwrap()
    );
    assert!(
        max_docker <= DOCKER_CAP,
        "{max_docker} Docker calls in flight at once, cap {DOCKER_CAP}"
    );
    // Memory returns to the baseline: no growth with the number of requests served.
    let last = *rss.last().unwrap();
    assert!(
        last <= baseline + 8 * MIB,
        "RSS {:.1} MiB after {sent} requests, baseline {:.1} MiB",
        last as f64 / MIB as f64,
        baseline as f64 / MIB as f64
    );
    assert!(
        rss[1] <= rss[0] + 3 * MIB,
        "RSS grows round over round: {rss:?}"
    );

    // The server's own accounting agrees: every request counted, no 5xx.
    let http = client();
    let text = send(&http, "GET", &format!("http://{base}/metrics"), None)
        .await
        .expect("scrape")
        .body;
    let counted = metric(&text, "pod_detail_collector_http_requests_total", &[]).unwrap_or(0.0);
    assert_eq!(
        counted as usize, sent,
        "requests counted by /metrics\n{text}"
    );
    for code in ["500", "502", "503"] {
        assert_eq!(
            metric(
                &text,
                "pod_detail_collector_http_requests_total",
                &[("code", code)]
            ),
            None,
            "{code} answers under load\n{text}"
        );
    }
    assert_eq!(
        metric(&text, "pod_detail_collector_runtime_errors_total", &[]),
        None,
        "runtime errors under load\n{text}"
    );
}

/// The cap on Docker calls in flight holds under a storm against a slow daemon, and is what
/// limits them (a larger cap lets more through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_calls_in_flight_are_capped_and_configurable() {
    let node = Node::new().await;
    let ns = node.ns("cap");
    node.run(
        Pod::new(ns.clone(), "web")
            .container(Container::new("app"))
            .container(Container::new("sidecar")),
    )
    .await;
    let proxy = Proxy::start();
    let http = client();
    let mut sent = 0;
    for cap in [2usize, 6] {
        let mut settings = settings_for(&node);
        settings.runtime_concurrency = cap;
        let running = proxy.collector(settings).await;
        let base = running.addr;
        // Connect first, then make the daemon slow and send a storm.
        let body = json!({"pod.namespace": ns, "pod.name": "web"});
        assert_eq!(
            faults::post(&http, base, "podDetailCollector", &body)
                .await
                .status,
            200
        );
        proxy.set_mode(Mode::Slow(Duration::from_millis(40)));
        proxy.reset_max_in_flight();
        let storm = (0..16).map(|_| faults::post(&http, base, "podDetailCollector", &body));
        let answers = futures_util::future::join_all(storm).await;
        sent += answers.len() + 1;
        for answer in &answers {
            assert_eq!(answer.status, 200, "cap {cap}: {}", answer.body);
        }
        let max = proxy.max_in_flight();
        eprintln!(
            "runtime concurrency {cap}: at most {max} Docker calls in flight for 16 concurrent requests"
        );
        assert!(
            max <= cap,
            "cap {cap}: {max} Docker calls in flight at once"
        );
        assert!(
            max >= cap.min(3),
            "cap {cap}: only {max} in flight, the storm did not reach the cap"
        );
        proxy.set_mode(Mode::Pass);
        running.shutdown().await;
    }
    eprintln!("concurrency cap: {sent} requests sent, 0 errors");
}
