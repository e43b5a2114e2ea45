//! The KubeDiag HTTP contract through the real router and server, with no daemon and no root:
//! the runtime behind it is a stub Docker API on a Unix socket that knows no container (so a
//! pod lookup is a 404). Part of the fast tier (`scripts/test --fast`); the real daemons are
//! in the other suites.

mod support;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pod_detail_collector::Settings;
use pod_detail_collector::runtime::RuntimeChoice;
use serde_json::json;
use support::service::{Collector, PROCESSORS, chunked};

/// A Docker API that answers like an empty daemon, and counts what it was asked.
struct EmptyDocker {
    socket: PathBuf,
    calls: Arc<AtomicUsize>,
}

impl EmptyDocker {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pdc-contract-{}-{}",
            std::process::id(),
            support::util::random_hex(8)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the stub socket");
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async move { Ok::<_, Infallible>(answer(request.uri().path())) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EmptyDocker { socket, calls }
    }

    fn settings(&self) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().expect("listen address"),
            runtime: RuntimeChoice::Docker(format!("unix://{}", self.socket.display())),
            node_name: "contract-node".into(),
            body_limit: 1024,
            ..Settings::default()
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn answer(path: &str) -> Response<Full<Bytes>> {
    let body = if path.ends_with("/_ping") {
        "OK".to_string()
    } else if path.ends_with("/version") {
        json!({"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"}).to_string()
    } else if path.ends_with("/containers/json") {
        "[]".to_string()
    } else {
        return Response::builder()
            .status(404)
            .body(Full::new(Bytes::from(r#"{"message":"page not found"}"#)))
            .unwrap_or_default();
    };
    Response::builder()
        .header("content-type", "application/json")
        .header("api-version", "1.41")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_json_sentence_and_no_runtime_call() {
    let docker = EmptyDocker::start();
    let collector = Collector::start_with(docker.settings()).await;
    for (what, body) in [
        ("empty", b"".to_vec()),
        ("not JSON", b"pod.namespace=default".to_vec()),
        ("an array", br#"[{"pod.namespace":"default"}]"#.to_vec()),
        ("no name", br#"{"pod.namespace":"default"}"#.to_vec()),
        (
            "empty name",
            br#"{"pod.namespace":"default","pod.name":""}"#.to_vec(),
        ),
        (
            "name not a string",
            br#"{"pod.namespace":"default","pod.name":7}"#.to_vec(),
        ),
        (
            "selector injection",
            br#"{"pod.namespace":"default","pod.name":"x,io.kubernetes.pod.uid=1"}"#.to_vec(),
        ),
    ] {
        let text = collector.post_raw(body).await.expect_error(400);
        assert!(text.contains("bad request"), "{what}: {text}");
    }
    assert_eq!(docker.calls(), 0, "a bad request reached the runtime");
    collector.shutdown().await;
}

#[tokio::test]
async fn an_unknown_pod_is_404_naming_pod_and_node() {
    let docker = EmptyDocker::start();
    let collector = Collector::start_with(docker.settings()).await;
    let text = collector.ask("default", "nowhere").await.expect_error(404);
    assert!(
        text.contains("default/nowhere") && text.contains("contract-node"),
        "{text}"
    );
    // Non-string context the collector does not read is no failure.
    let reply = collector
        .post_json(&json!({"pod.namespace": "default", "pod.name": "nowhere", "task": {"n": 1}}))
        .await;
    reply.expect_error(404);
    assert!(docker.calls() > 0, "the runtime was not asked");
    collector.shutdown().await;
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let docker = EmptyDocker::start();
    let collector = Collector::start_with(docker.settings()).await;
    for (path, _) in PROCESSORS {
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let reply = collector.request(method, path, None).await;
            reply.expect_error(405);
            assert_eq!(reply.header("allow"), Some("POST"), "{method} {path}");
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = collector.request("POST", path, Some(b"{}".to_vec())).await;
        reply.expect_error(405);
        assert_eq!(reply.header("allow"), Some("GET"), "POST {path}");
    }
    let unknown = collector.request("POST", "/processor/nope", None).await;
    let text = unknown.expect_error(404);
    assert!(text.contains("/processor/podDetailCollector"), "{text}");
    collector.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_or_without_a_length() {
    let docker = EmptyDocker::start();
    let collector = Collector::start_with(docker.settings()).await;
    let big = json!({"pod.namespace": "default", "pod.name": "x", "pad": "p".repeat(4096)});
    let text = collector.post_json(&big).await.expect_error(413);
    assert!(text.contains("1024"), "{text}");
    let body = serde_json::to_vec(&big).expect("json");
    let reply = collector
        .raw_http(
            "POST /processor/podDetailCollector HTTP/1.1\r\nTransfer-Encoding: chunked",
            &chunked(&body, 300),
        )
        .await;
    reply.expect_error(413);
    assert_eq!(
        docker.calls(),
        0,
        "an oversized request reached the runtime"
    );
    collector.shutdown().await;
}

#[tokio::test]
async fn probes_and_metrics() {
    let docker = EmptyDocker::start();
    let collector = Collector::start_with(docker.settings()).await;
    assert_eq!(collector.request("GET", "/healthz", None).await.status, 200);
    let ready = collector.request("GET", "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    collector.ask("default", "nowhere").await.expect_error(404);
    let metrics = collector.request("GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains(
            r#"pod_detail_collector_http_requests_total{route="/processor/podDetailCollector",code="404"} 1"#
        ),
        "{}",
        metrics.body
    );
    collector.shutdown().await;

    // A runtime that is not there: not ready, with the reason.
    let gone = Collector::start_with(Settings {
        runtime: RuntimeChoice::Docker("unix:///nonexistent/docker.sock".into()),
        ..docker.settings()
    })
    .await;
    let reply = gone.request("GET", "/readyz", None).await;
    let text = reply.expect_error(503);
    assert!(text.contains("/nonexistent/docker.sock"), "{text}");
    gone.shutdown().await;
}

/// With no runtime named, the first well-known socket that answers as its kind is read: a
/// socket that does not speak CRI (Docker's own containerd has no CRI plugin) is passed over,
/// and a missing one too.
#[tokio::test]
async fn discovery_passes_over_sockets_that_are_not_the_kubelets_runtime() {
    use pod_detail_collector::runtime::Kind;
    let docker = EmptyDocker::start();
    let not_cri = EmptyDocker::start();
    let settings = Settings {
        runtime: RuntimeChoice::Discover(vec![
            (Kind::Cri, PathBuf::from("/nonexistent/containerd.sock")),
            (Kind::Cri, not_cri.socket.clone()),
            (Kind::Docker, docker.socket.clone()),
        ]),
        runtime_timeout: std::time::Duration::from_secs(2),
        ..docker.settings()
    };
    let collector = Collector::start_with(settings).await;
    let ready = collector.request("GET", "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["runtime"], "docker", "{}", ready.body);
    collector.ask("default", "nowhere").await.expect_error(404);
    collector.shutdown().await;

    // Nothing there: not ready, naming where it looked, and a pod lookup is a 500.
    let nothing = Collector::start_with(Settings {
        runtime: RuntimeChoice::Discover(vec![(
            Kind::Cri,
            PathBuf::from("/nonexistent/containerd.sock"),
        )]),
        ..docker.settings()
    })
    .await;
    let text = nothing
        .request("GET", "/readyz", None)
        .await
        .expect_error(503);
    assert!(text.contains("/nonexistent/containerd.sock"), "{text}");
    nothing.ask("default", "x").await.expect_error(500);
    nothing.shutdown().await;
}
