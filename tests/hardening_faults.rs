//! Hardening: the Docker daemon is sick. A fault-injecting proxy (`tests/faults`) sits between
//! the collector and the real test daemon and plays every kind of sickness: socket missing at
//! start (appearing later), connections refused, connections reset, a hung daemon, `500`s,
//! garbage JSON, containers vanishing between list and inspect. Each time the collector must
//! answer `500` with a sentence that says what happened, keep `/healthz` answering, and recover
//! by itself once the daemon is well again. `/metrics` must count it all.
//!
//! Needs the test daemon (`DOCKER_HOST`) and images: run `scripts/test`.

mod faults;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use faults::{Mode, Proxy, client, get, metric, post};
use serde_json::{Value, json};
use support::service::settings_for;
use support::{Container, Node, Pod};

const DETAIL: &str = "podDetailCollector";

fn pod_body(namespace: &str, name: &str) -> Value {
    json!({"pod.namespace": namespace, "pod.name": name, "node": "test-node"})
}

/// The rebuilt pod out of a 200 answer.
fn pod_of(answer: &faults::Answer) -> Value {
    assert_eq!(answer.status, 200, "expected a pod: {}", answer.body);
    let v: Value = serde_json::from_str(&answer.body).expect("JSON answer");
    let text = v["collector.kubernetes.pod.detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no pod detail string: {}", answer.body));
    serde_json::from_str(text).expect("pod JSON")
}

fn container_names(pod: &Value) -> Vec<String> {
    let mut names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every runtime sickness in turn on one server, each followed by recovery without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_by_itself_from_every_runtime_fault() {
    let node = Node::new().await;
    let created = node
        .run(Pod::new(node.ns("faults"), "web").container(Container::new("app")))
        .await;
    // The socket does not exist when the service starts.
    let proxy = Proxy::with_mode(Mode::Missing);
    let socket = proxy.socket_path().display().to_string();
    let mut settings = settings_for(&node);
    settings.runtime_timeout = Duration::from_secs(1);
    // Each fault below is met by the list path's own calls (with the event index, a list
    // or image inspect that fails may not be needed: tests/event_index.rs covers its faults).
    settings.event_index = false;
    let running = proxy.collector(settings).await;
    let base = running.addr;
    let http = client();
    let ask = pod_body(&created.namespace, "web");

    let mut faults_injected = 0usize;
    let mut recoveries = 0usize;
    let mut answers_500 = 0usize;
    let mut answers_200 = 0usize;
    let mut healthz = 0usize;

    // (what the proxy does, what the error must say, must /readyz say 503)
    let cases: Vec<(&str, Mode, Vec<&str>, bool)> = vec![
        (
            "socket missing at start",
            Mode::Missing,
            vec!["unreachable", "no socket at"],
            true,
        ),
        (
            "connections refused",
            Mode::Refused,
            vec!["unreachable", "refused"],
            true,
        ),
        (
            "connections reset without an answer",
            Mode::Reset,
            vec!["unreachable"],
            true,
        ),
        (
            "daemon hung",
            Mode::Hang,
            vec!["did not answer within 1s"],
            true,
        ),
        (
            "daemon answers 500",
            Mode::Http500,
            vec!["answered 500", "the daemon is sick"],
            true,
        ),
        (
            "daemon answers garbage JSON",
            Mode::Garbage,
            vec!["could not be read"],
            false,
        ),
        (
            "socket removed while serving",
            Mode::Missing,
            vec!["unreachable"],
            true,
        ),
        (
            "list hangs after version negotiation",
            Mode::only("/containers/json", Mode::Hang),
            vec!["did not answer within 1s"],
            false,
        ),
        (
            "container inspect answers garbage",
            Mode::only("/containers/", Mode::Garbage),
            vec!["could not be read"],
            false,
        ),
        (
            "image inspect answers 500",
            Mode::only("/images/", Mode::Http500),
            vec!["answered 500"],
            false,
        ),
    ];

    for (i, (what, mode, fragments, not_ready)) in cases.into_iter().enumerate() {
        proxy.set_mode(mode);
        faults_injected += 1;
        let started = Instant::now();
        let answer = post(&http, base, DETAIL, &ask).await;
        assert_eq!(
            answer.status, 500,
            "{what}: expected 500, got {}: {}",
            answer.status, answer.body
        );
        answers_500 += 1;
        assert!(
            answer.content_type.starts_with("application/json"),
            "{what}: content type {}",
            answer.content_type
        );
        let text = answer.error_text();
        for fragment in &fragments {
            assert!(
                text.contains(fragment),
                "{what}: the error should say {fragment:?}: {text}"
            );
        }
        assert!(
            text.contains(&socket),
            "{what}: the error should name the daemon {socket}: {text}"
        );
        assert!(
            text.contains(&created.namespace) && text.contains("web"),
            "{what}: the error should name the pod: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{what}: answered after {:?}, runtime timeout is 1s",
            started.elapsed()
        );

        // The process keeps serving.
        let health = get(&http, base, "/healthz").await;
        assert_eq!(health.status, 200, "{what}: /healthz {}", health.body);
        assert!(
            health.elapsed < Duration::from_millis(500),
            "{what}: /healthz took {:?}",
            health.elapsed
        );
        healthz += 1;
        if not_ready {
            let ready = get(&http, base, "/readyz").await;
            assert_eq!(ready.status, 503, "{what}: /readyz {}", ready.body);
            assert!(
                ready.body.contains(&socket),
                "{what}: /readyz should name the daemon: {}",
                ready.body
            );
        }

        // The daemon is well again: the next request succeeds, no restart.
        proxy.set_mode(Mode::Pass);
        let answer = post(&http, base, DETAIL, &ask).await;
        let pod = pod_of(&answer);
        assert_eq!(
            pod["metadata"]["uid"],
            created.uid.as_str(),
            "{what}: recovered pod (case {i})"
        );
        answers_200 += 1;
        let ready = get(&http, base, "/readyz").await;
        assert_eq!(
            ready.status, 200,
            "{what}: /readyz after recovery {}",
            ready.body
        );
        recoveries += 1;
    }

    // /metrics counted every answer and every kind of runtime failure.
    let scrape = get(&http, base, "/metrics").await;
    assert_eq!(scrape.status, 200);
    let text = scrape.body;
    let route = ("route", "/processor/podDetailCollector");
    let count = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels).unwrap_or(0.0);
    assert_eq!(
        count(
            "pod_detail_collector_http_requests_total",
            &[route, ("code", "500")]
        ),
        answers_500 as f64,
        "{text}"
    );
    assert_eq!(
        count(
            "pod_detail_collector_http_requests_total",
            &[route, ("code", "200")]
        ),
        answers_200 as f64,
        "{text}"
    );
    assert_eq!(
        count(
            "pod_detail_collector_http_requests_total",
            &[("route", "/healthz"), ("code", "200")]
        ),
        healthz as f64,
        "{text}"
    );
    assert_eq!(
        count(
            "pod_detail_collector_http_request_duration_seconds_count",
            &[route]
        ),
        (answers_500 + answers_200) as f64,
        "{text}"
    );
    for (kind, at_least) in [
        ("timeout", 2.0),
        ("unreachable", 2.0),
        ("api", 2.0),
        ("bad_answer", 2.0),
    ] {
        let seen = count(
            "pod_detail_collector_runtime_errors_total",
            &[("kind", kind)],
        );
        assert!(
            seen >= at_least,
            "runtime_errors_total{{kind={kind}}} = {seen}, expected at least {at_least}: {text}"
        );
    }
    eprintln!(
        "runtime faults: {faults_injected} injected, {recoveries} recoveries, \
         {answers_500} answered 500, {answers_200} answered 200, proxy saw {} faulted requests",
        proxy.faulted()
    );
    running.shutdown().await;
}

/// A daemon that hangs once the collector is connected: every route that needs it answers 500
/// within the runtime timeout with a message that says so, concurrently, while /healthz and
/// /metrics keep answering at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_daemon_answers_500_within_the_timeout_while_healthz_answers() {
    hung_daemon(false).await;
}

/// The same when the daemon hangs from the start (the collector never got to negotiate the
/// API version): concurrent requests must not wait for each other's negotiation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_daemon_from_the_start_answers_every_request_within_the_timeout() {
    hung_daemon(true).await;
}

async fn hung_daemon(hang_from_start: bool) {
    let node = Node::new().await;
    let created = node
        .run(Pod::new(node.ns("hang"), "web").container(Container::new("app")))
        .await;
    let timeout = Duration::from_secs(2);
    {
        let proxy = Proxy::with_mode(if hang_from_start {
            Mode::Hang
        } else {
            Mode::Pass
        });
        let mut settings = settings_for(&node);
        settings.runtime_timeout = timeout;
        let running = proxy.collector(settings).await;
        let base = running.addr;
        let http = client();
        let ask = pod_body(&created.namespace, "web");
        if !hang_from_start {
            pod_of(&post(&http, base, DETAIL, &ask).await);
            proxy.set_mode(Mode::Hang);
        }

        let started = Instant::now();
        let hung = [
            ("podDetailCollector", ask.clone()),
            ("podDetailCollector", pod_body(&created.namespace, "other")),
            (
                "podListCollector",
                json!({"pod.namespace": created.namespace}),
            ),
            ("containerCollector", json!({})),
            ("dockerInfoCollector", json!({})),
        ];
        let requests = hung.iter().map(|(processor, body)| {
            let http = http.clone();
            async move { (processor, post(&http, base, processor, body).await) }
        });
        let readyz = {
            let http = http.clone();
            async move { get(&http, base, "/readyz").await }
        };
        let probes = {
            let http = http.clone();
            async move {
                let mut worst = Duration::ZERO;
                let mut n = 0;
                // Probe while the daemon calls hang.
                while started.elapsed() < timeout - Duration::from_millis(300) {
                    let health = get(&http, base, "/healthz").await;
                    assert_eq!(health.status, 200, "/healthz during the hang");
                    let metrics = get(&http, base, "/metrics").await;
                    assert_eq!(metrics.status, 200, "/metrics during the hang");
                    worst = worst.max(health.elapsed).max(metrics.elapsed);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (n, worst)
            }
        };
        let (answers, ready, (probed, worst)) =
            tokio::join!(futures_util::future::join_all(requests), readyz, probes);
        assert!(probed >= 3, "probed /healthz only {probed} times");
        assert!(
            worst < Duration::from_millis(500),
            "/healthz or /metrics took {worst:?} while the daemon hung"
        );
        let timings: Vec<String> = answers
            .iter()
            .map(|(p, a)| format!("{p} {} in {:.1?}", a.status, a.elapsed))
            .chain([format!("/readyz {} in {:.1?}", ready.status, ready.elapsed)])
            .collect();
        for (processor, answer) in &answers {
            assert_eq!(answer.status, 500, "{processor}: {}", answer.body);
            let text = answer.error_text();
            assert!(
                text.contains("did not answer within 2s"),
                "{processor}: the error should say the daemon did not answer in time: {text}"
            );
            assert!(
                answer.elapsed >= timeout - Duration::from_millis(100)
                    && answer.elapsed < timeout + Duration::from_millis(1500),
                "{processor}: answered after {:?}, runtime timeout {timeout:?} \
                 (daemon hung from the start: {hang_from_start}); all: {timings:?}",
                answer.elapsed
            );
        }
        assert_eq!(ready.status, 503, "/readyz while hung: {}", ready.body);
        assert!(
            ready.body.contains("did not answer within 2s"),
            "{}",
            ready.body
        );

        // Well again: recovers without a restart.
        proxy.set_mode(Mode::Pass);
        let pod = pod_of(&post(&http, base, DETAIL, &ask).await);
        assert_eq!(pod["metadata"]["uid"], created.uid.as_str());
        eprintln!(
            "hung daemon (from start: {hang_from_start}): {} requests hung and answered 500, \
             {probed} health probes, worst {worst:?}",
            answers.len() + 1
        );
        running.shutdown().await;
    }
}

/// Containers removed between list and inspect are skipped; when all of them are gone the pod
/// is not on this node (404), not a server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_vanishing_between_list_and_inspect_are_skipped() {
    let node = Node::new().await;
    let created = node
        .run(
            Pod::new(node.ns("vanish"), "web")
                .container(Container::new("app"))
                .container(Container::new("sidecar")),
        )
        .await;
    let proxy = Proxy::start();
    let settings = settings_for(&node);
    let running = proxy.collector(settings).await;
    let base = running.addr;
    let http = client();
    let ask = pod_body(&created.namespace, "web");

    let pod = pod_of(&post(&http, base, DETAIL, &ask).await);
    assert_eq!(container_names(&pod), vec!["app", "sidecar"]);

    // The sidecar is removed between list and inspect.
    let sidecar = created.current("sidecar").to_string();
    proxy.set_mode(Mode::Vanish(HashSet::from([sidecar.clone()])));
    let answer = post(&http, base, DETAIL, &ask).await;
    let pod = pod_of(&answer);
    assert_eq!(
        container_names(&pod),
        vec!["app"],
        "the vanished sidecar is skipped"
    );
    assert!(
        !answer.body.contains(&sidecar),
        "the vanished container shows up: {}",
        answer.body
    );
    let vanished_once = proxy.faulted();
    assert!(vanished_once >= 1, "the proxy made the sidecar vanish");

    // Every container vanished: the pod is not here any more.
    let all: HashSet<String> = [
        created.sandbox_id.clone(),
        created.current("app").to_string(),
        sidecar.clone(),
    ]
    .into();
    proxy.set_mode(Mode::Vanish(all));
    let answer = post(&http, base, DETAIL, &ask).await;
    assert_eq!(answer.status, 404, "all vanished: {}", answer.body);
    // The pod list skips them too.
    let list = post(
        &http,
        base,
        "podListCollector",
        &json!({"pod.namespace": created.namespace}),
    )
    .await;
    assert_eq!(
        list.status, 200,
        "pod list with vanished containers: {}",
        list.body
    );
    let pods: Value = serde_json::from_str(
        serde_json::from_str::<Value>(&list.body).unwrap()["collector.kubernetes.pod.list"]
            .as_str()
            .expect("pod list string"),
    )
    .unwrap();
    assert_eq!(pods.as_array().map(Vec::len), Some(0), "{pods}");

    proxy.set_mode(Mode::Pass);
    let pod = pod_of(&post(&http, base, DETAIL, &ask).await);
    assert_eq!(container_names(&pod), vec!["app", "sidecar"]);
    eprintln!(
        "vanishing containers: {} inspects answered 404",
        proxy.faulted()
    );
    running.shutdown().await;
}

/// `/metrics` is Prometheus text that counts requests by route and code, their latency, and
/// runtime call errors by kind, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_runtime_errors() {
    let node = Node::new().await;
    let proxy = Proxy::start();
    let mut settings = settings_for(&node);
    settings.runtime_timeout = Duration::from_secs(1);
    let running = proxy.collector(settings).await;
    let base = running.addr;
    let http = client();
    let ns = node.ns("metrics");

    for body in [
        json!([]),
        json!({}),
        json!({"pod.namespace": "a,b", "pod.name": "x"}),
    ] {
        assert_eq!(post(&http, base, DETAIL, &body).await.status, 400);
    }
    for name in ["ghost-1", "ghost-2"] {
        assert_eq!(
            post(&http, base, DETAIL, &pod_body(&ns, name)).await.status,
            404
        );
    }
    let url = format!("http://{base}/processor/{DETAIL}");
    let put = faults::send(&http, "PUT", &url, None).await.expect("PUT");
    assert_eq!(put.status, 405);
    assert_eq!(get(&http, base, "/no/such/path").await.status, 404);
    assert_eq!(get(&http, base, "/healthz").await.status, 200);
    // One runtime failure of each kind, now that the client is connected.
    for mode in [Mode::Http500, Mode::Garbage, Mode::Hang, Mode::Refused] {
        proxy.set_mode(mode.clone());
        let answer = post(&http, base, DETAIL, &pod_body(&ns, "ghost-1")).await;
        assert_eq!(answer.status, 500, "{mode:?}: {}", answer.body);
    }
    proxy.set_mode(Mode::Pass);

    let scrape = get(&http, base, "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .content_type
            .starts_with("application/openmetrics-text")
            || scrape.content_type.starts_with("text/plain"),
        "content type {}",
        scrape.content_type
    );
    let text = &scrape.body;
    assert!(text.ends_with("# EOF\n"), "{text}");
    for family in [
        "# TYPE pod_detail_collector_http_requests counter",
        "# TYPE pod_detail_collector_http_request_duration_seconds histogram",
        "# TYPE pod_detail_collector_runtime_errors counter",
    ] {
        assert!(text.contains(family), "missing {family:?}: {text}");
    }
    let requests =
        |labels: &[(&str, &str)]| metric(text, "pod_detail_collector_http_requests_total", labels);
    let detail = ("route", "/processor/podDetailCollector");
    assert_eq!(requests(&[detail, ("code", "400")]), Some(3.0), "{text}");
    assert_eq!(requests(&[detail, ("code", "404")]), Some(2.0), "{text}");
    assert_eq!(requests(&[detail, ("code", "405")]), Some(1.0), "{text}");
    assert_eq!(requests(&[detail, ("code", "500")]), Some(4.0), "{text}");
    assert_eq!(
        requests(&[("route", "other"), ("code", "404")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests(&[("route", "/healthz"), ("code", "200")]),
        Some(1.0),
        "{text}"
    );
    let latency = "pod_detail_collector_http_request_duration_seconds";
    assert_eq!(
        metric(text, &format!("{latency}_count"), &[detail]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        metric(
            text,
            &format!("{latency}_bucket"),
            &[detail, ("le", "+Inf")]
        ),
        Some(10.0),
        "{text}"
    );
    // The hung request took the runtime timeout: it is not in the fast buckets.
    let fast = metric(
        text,
        &format!("{latency}_bucket"),
        &[detail, ("le", "0.512")],
    )
    .expect("a 0.512 s bucket");
    assert!(
        fast <= 9.0,
        "the 1 s timeout landed in a fast bucket: {text}"
    );
    let sum = metric(text, &format!("{latency}_sum"), &[detail]).expect("latency sum");
    assert!(
        sum >= 1.0,
        "latency sum {sum} should include the 1 s timeout"
    );
    for kind in ["api", "bad_answer", "timeout", "unreachable"] {
        assert_eq!(
            metric(
                text,
                "pod_detail_collector_runtime_errors_total",
                &[("kind", kind)]
            ),
            Some(1.0),
            "runtime errors of kind {kind}: {text}"
        );
    }
    running.shutdown().await;
}

/// A missing socket is a runtime failure like any other: it is counted as `unreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_socket_is_counted_as_an_unreachable_runtime_error() {
    let node = Node::new().await;
    let proxy = Proxy::with_mode(Mode::Missing);
    let settings = settings_for(&node);
    let running = proxy.collector(settings).await;
    let base = running.addr;
    let http = client();
    let answer = post(&http, base, DETAIL, &pod_body("default", "web-0")).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(
        answer.error_text().contains("no socket at"),
        "{}",
        answer.body
    );
    let text = get(&http, base, "/metrics").await.body;
    assert_eq!(
        metric(
            &text,
            "pod_detail_collector_runtime_errors_total",
            &[("kind", "unreachable")]
        ),
        Some(1.0),
        "a request that failed on the missing socket is a runtime error: {text}"
    );
    running.shutdown().await;
}
