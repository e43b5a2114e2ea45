//! Hardening: the collector holds root on the node (the Docker socket), so it must only read.
//! A recording proxy in front of the daemon proves it only ever sends `GET` (and `HEAD`) for
//! ping, version, info, container list/inspect and image inspect, whatever it is asked.
//! Secrets: environment values are redacted in every route by default (the pod list too); the
//! reveal option is explicit and logged at start.
//!
//! Needs the test daemon (`DOCKER_HOST`) and images: run `scripts/test`.

mod faults;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use faults::{Logged, Mode, Proxy, ServeProcess, client, get, post, send};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pod_detail_collector::server;
use serde_json::{Value, json};
use support::service::settings_for;
use support::{Container, Instance, Node, Pod};

/// What the collector may ask the daemon: `(method, path pattern)`; `{id}` is a container or
/// image ID (hex, or `sha256:` + hex).
const ALLOWED: &[(&str, &str)] = &[
    ("GET|HEAD", "/_ping"),
    ("GET", "/version"),
    ("GET", "/info"),
    ("GET", "/containers/json"),
    ("GET", "/containers/{id}/json"),
    ("GET", "/images/{id}/json"),
    // With the event index (the default): Docker's in-memory event log, read in a bounded
    // window.
    ("GET", "/events"),
];

fn is_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The allowed call a request is, if any.
fn allowed(call: &Logged) -> Option<&'static str> {
    ALLOWED.iter().find_map(|(methods, pattern)| {
        if !methods.split('|').any(|m| m == call.method) {
            return None;
        }
        let matches = match pattern.split_once("{id}") {
            None => call.path == *pattern,
            Some((prefix, suffix)) => call
                .path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(is_id),
        };
        matches.then_some(*pattern)
    })
}

fn secret_pod(namespace: String, name: &str, secret: &str) -> Pod {
    Pod::new(namespace, name)
        .container(
            Container::new("api")
                .env("DB_HOST", "postgres.shop.svc")
                .env("DB_PASSWORD", secret)
                .env("API_TOKEN", &format!("tok-{secret}"))
                .first_attempt(0)
                .instance(Instance::Exit(1))
                .instance(Instance::Running),
        )
        .container(Container::new("worker").env("WORKER_KEY", &format!("wk-{secret}")))
}

/// The pods out of a pod list answer.
fn pod_list(answer: &faults::Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "pod list: {}", answer.body);
    let outer: Value = serde_json::from_str(&answer.body).expect("JSON");
    let text = outer["collector.kubernetes.pod.list"]
        .as_str()
        .expect("pod list string");
    serde_json::from_str::<Vec<Value>>(text).expect("a list of pods")
}

fn pod_detail(answer: &faults::Answer) -> Value {
    assert_eq!(answer.status, 200, "pod detail: {}", answer.body);
    let outer: Value = serde_json::from_str(&answer.body).expect("JSON");
    serde_json::from_str(
        outer["collector.kubernetes.pod.detail"]
            .as_str()
            .expect("pod detail string"),
    )
    .expect("pod JSON")
}

/// `(container, variable) -> value` of every env entry of a pod.
fn env_of(pod: &Value) -> HashMap<(String, String), Value> {
    let mut env = HashMap::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for e in c["env"].as_array().into_iter().flatten() {
            env.insert(
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    e["name"].as_str().unwrap_or_default().to_string(),
                ),
                e["value"].clone(),
            );
        }
    }
    env
}

/// Container IDs and states of a namespace, to compare before and after.
async fn snapshot(node: &Node, namespace: &str) -> Vec<(String, String)> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("io.kubernetes.pod.namespace={namespace}")],
    )]);
    let list = node
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    let mut states = Vec::new();
    for c in list {
        let id = c.id.unwrap_or_default();
        let (started, finished) = support::util::state_times(&node.docker, &id).await;
        states.push((
            id,
            format!("{:?} started {started} finished {finished}", c.state),
        ));
    }
    states.sort();
    states
}

/// Everything the collector can be asked, with the daemon healthy or sick: the proxy records
/// only reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_only_ever_reads_from_docker() {
    let node = Node::new().await;
    let secret = support::util::random_hex(24);
    let ns = node.ns("readonly");
    let created = node.run(secret_pod(ns.clone(), "web", &secret)).await;
    let before = snapshot(&node, &ns).await;

    let proxy = Proxy::start();
    let mut settings = settings_for(&node);
    settings.runtime_timeout = Duration::from_secs(1);
    let running = proxy.collector(settings).await;
    let base = running.addr;
    let http = client();
    let api_id = created.current("api").to_string();

    let mut asked = 0usize;
    let bodies: Vec<(&str, Value)> = vec![
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "web"}),
        ),
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "absent"}),
        ),
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "web", "container": "api", "action": "restart"}),
        ),
        ("podListCollector", json!({"pod.namespace": ns})),
        ("podListCollector", json!({})),
        ("containerCollector", json!({"container.all": "true"})),
        ("containerCollector", json!({"container.all": false})),
        ("dockerInfoCollector", json!({})),
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "web,io.kubernetes.pod.name=x"}),
        ),
    ];
    for (processor, body) in &bodies {
        let answer = post(&http, base, processor, body).await;
        assert!(answer.status < 500, "{processor} {body}: {}", answer.body);
        asked += 1;
    }
    for path in ["/readyz", "/healthz", "/metrics"] {
        assert_eq!(get(&http, base, path).await.status, 200, "{path}");
        asked += 1;
    }
    let head = send(&http, "HEAD", &format!("http://{base}/readyz"), None)
        .await
        .expect("HEAD /readyz");
    assert_eq!(head.status, 200);
    asked += 1;
    // Writes asked of the collector, in every shape: none reaches Docker.
    let writes = [
        ("PUT", "/processor/podDetailCollector".to_string()),
        ("DELETE", "/processor/podDetailCollector".to_string()),
        ("PATCH", "/processor/containerCollector".to_string()),
        ("POST", "/containers/create".to_string()),
        ("POST", format!("/containers/{api_id}/kill")),
        ("POST", format!("/v1.41/containers/{api_id}/stop")),
        ("POST", format!("/containers/{api_id}/exec")),
        ("DELETE", format!("/containers/{api_id}")),
        ("POST", "/images/create?fromImage=busybox".to_string()),
        ("POST", "/processor/../containers/prune".to_string()),
        ("POST", "/healthz".to_string()),
        ("DELETE", "/metrics".to_string()),
    ];
    for (method, path) in &writes {
        let answer = send(
            &http,
            method,
            &format!("http://{base}{path}"),
            Some(br#"{"pod.namespace":"default","pod.name":"web"}"#.to_vec()),
        )
        .await
        .expect("an answer");
        assert!(
            (400..500).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            answer.body
        );
        asked += 1;
    }
    // The same again with a sick daemon (it must not "repair" anything either).
    for mode in [Mode::Http500, Mode::Garbage, Mode::Hang] {
        proxy.set_mode(mode.clone());
        for (processor, body) in bodies.iter().take(4) {
            let answer = post(&http, base, processor, body).await;
            assert!(
                answer.status >= 400,
                "{processor} with a sick daemon: {}",
                answer.body
            );
            asked += 1;
        }
        // (A garbage `/_ping` answer is still an answer: only the others are not ready.)
        let ready = get(&http, base, "/readyz").await;
        if mode != Mode::Garbage {
            assert_eq!(ready.status, 503, "{mode:?}: {}", ready.body);
        }
        asked += 1;
    }
    proxy.set_mode(Mode::Pass);
    running.shutdown().await;

    // The same questions to a collector that keeps pod membership from Docker's event log.
    let mut settings = settings_for(&node);
    settings.event_index = true;
    let indexed = proxy.collector(settings).await;
    // Until it has read the daemon's clock (its first seconds) it answers from lists; then
    // from the event log.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut rounds = 0;
    while rounds < 2 || !proxy.log().iter().any(|call| call.path == "/events") {
        assert!(
            std::time::Instant::now() < deadline,
            "the indexed collector never read Docker's events"
        );
        for (processor, body) in &bodies {
            let answer = post(&http, indexed.addr, processor, body).await;
            assert!(answer.status < 500, "{processor} {body}: {}", answer.body);
            asked += 1;
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    indexed.shutdown().await;

    let log = proxy.log();
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for call in &log {
        let pattern = allowed(call)
            .unwrap_or_else(|| panic!("the collector sent {} {} to Docker", call.method, call.uri));
        *seen.entry(pattern).or_default() += 1;
    }
    for (_, pattern) in ALLOWED {
        assert!(
            seen.contains_key(pattern),
            "never saw {pattern}: the test should exercise every call ({seen:?})"
        );
    }
    let after = snapshot(&node, &ns).await;
    assert_eq!(before, after, "the pod's containers changed");

    // The recorder does see writes: a POST sent through the proxy on purpose (to a path the
    // daemon does not have, so nothing happens) is recorded as such.
    let stream = tokio::net::UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect to the proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::post("/v1.41/pdc-recorder-selfcheck")
        .header("host", "docker")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("self-check");
    assert_eq!(response.status().as_u16(), 404);
    let _ = response.into_body().collect().await;
    let last = proxy.log().pop().expect("recorded");
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/pdc-recorder-selfcheck")
    );
    assert!(allowed(&last).is_none());

    eprintln!(
        "read-only proof: {asked} requests to the collector, {} calls to Docker, all reads: {seen:?}",
        log.len()
    );
}

/// Environment values never leave the collector by default, on any route, the pod list
/// included; `reveal_env` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_are_redacted_in_every_route_unless_revealed() {
    let node = Node::new().await;
    let secret = support::util::random_hex(24);
    let ns = node.ns("secrets");
    node.run(secret_pod(ns.clone(), "web", &secret)).await;
    node.run(secret_pod(ns.clone(), "web-2", &secret)).await;
    let secrets = [
        secret.clone(),
        format!("tok-{secret}"),
        format!("wk-{secret}"),
    ];

    let running = server::start(settings_for(&node)).await.expect("start");
    let base = running.addr;
    let http = client();
    let mut answers = Vec::new();
    for (processor, body) in [
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "web"}),
        ),
        (
            "podDetailCollector",
            json!({"pod.namespace": ns, "pod.name": "web-2"}),
        ),
        ("podListCollector", json!({"pod.namespace": ns})),
        ("podListCollector", json!({})),
        ("containerCollector", json!({"container.all": true})),
        ("dockerInfoCollector", json!({})),
    ] {
        let answer = post(&http, base, processor, &body).await;
        assert_eq!(answer.status, 200, "{processor}: {}", answer.body);
        answers.push((processor, answer));
    }
    for path in ["/readyz", "/metrics", "/healthz"] {
        answers.push((path, get(&http, base, path).await));
    }
    for (route, answer) in &answers {
        for s in &secrets {
            assert!(
                !answer.body.contains(s.as_str()),
                "{route} leaks an environment value: {}",
                answer.body
            );
        }
    }
    // The names stay, the values are redacted, in the detail and in the list.
    let detail = pod_detail(&answers[0].1);
    let list = pod_list(&answers[2].1);
    assert_eq!(list.len(), 2, "two pods in {ns}");
    for pod in std::iter::once(&detail).chain(&list) {
        let env = env_of(pod);
        for key in [
            ("api", "DB_PASSWORD"),
            ("api", "API_TOKEN"),
            ("api", "DB_HOST"),
            ("worker", "WORKER_KEY"),
        ] {
            let value = env
                .get(&(key.0.to_string(), key.1.to_string()))
                .unwrap_or_else(|| panic!("no env {key:?} in {}", pod["metadata"]["name"]));
            assert_eq!(
                value, "<redacted>",
                "{key:?} in {}",
                pod["metadata"]["name"]
            );
        }
    }
    let all = pod_list(&answers[3].1);
    assert!(
        all.iter()
            .filter(|p| p["metadata"]["namespace"] == ns.as_str())
            .count()
            == 2,
        "the all-namespaces list holds both pods"
    );
    running.shutdown().await;

    // Revealing is explicit.
    let mut settings = settings_for(&node);
    settings.reveal_env = true;
    let revealing = server::start(settings).await.expect("start");
    let detail = pod_detail(
        &post(
            &http,
            revealing.addr,
            "podDetailCollector",
            &json!({"pod.namespace": ns, "pod.name": "web"}),
        )
        .await,
    );
    assert_eq!(
        env_of(&detail)[&("api".to_string(), "DB_PASSWORD".to_string())],
        secret.as_str()
    );
    let list = pod_list(
        &post(
            &http,
            revealing.addr,
            "podListCollector",
            &json!({"pod.namespace": ns}),
        )
        .await,
    );
    for pod in &list {
        assert_eq!(
            env_of(pod)[&("worker".to_string(), "WORKER_KEY".to_string())],
            format!("wk-{secret}").as_str()
        );
    }
    revealing.shutdown().await;
}

/// The binary says at start whether it redacts or reveals, and does what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reveal_option_is_explicit_and_logged_at_start() {
    let node = Node::new().await;
    let secret = support::util::random_hex(24);
    let ns = node.ns("reveal");
    node.run(secret_pod(ns.clone(), "web", &secret)).await;
    let docker_host = support::util::docker_host();
    let kubelet_root = node.kubelet_root.display().to_string();
    let http = client();
    let body = json!({"pod.namespace": ns, "pod.name": "web"});

    for reveal in [false, true] {
        let mut args = vec![
            "--docker-host",
            docker_host.as_str(),
            "--node-name",
            "test-node",
            "--kubelet-root",
            kubelet_root.as_str(),
        ];
        if reveal {
            args.push("--reveal-env");
        }
        let process = ServeProcess::start(&args).await;
        let wanted = if reveal {
            "environment values: revealed"
        } else {
            "environment values: redacted"
        };
        let log = process.log();
        let line = log
            .iter()
            .find(|l| l.contains("environment values:"))
            .unwrap_or_else(|| panic!("no start-up line about environment values: {log:?}"));
        assert!(line.contains(wanted), "expected {wanted:?}, got {line:?}");
        if reveal {
            assert!(
                line.contains("WARN"),
                "revealing is logged as a warning: {line}"
            );
        }
        let answer = post(&http, process.addr, "podDetailCollector", &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body.contains(&secret),
            reveal,
            "reveal={reveal}: {}",
            answer.body
        );
    }
}
