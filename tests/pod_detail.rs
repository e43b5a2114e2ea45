//! Integration tests: pods laid out on a real Docker daemon the way the kubelet does it,
//! asked for over HTTP like the KubeDiag agent does, checked field by field against SPEC §4.
//!
//! Needs a daemon (`DOCKER_HOST`) and the test images: run `scripts/test`. Without a daemon
//! these tests fail; they never skip.

mod support;

use pod_detail_collector::runtime::RuntimeChoice;
use serde_json::json;
use support::checks::{
    all_conditions, assert_app_image, assert_pod_identity, assert_running, assert_terminated,
};
use support::pod::{
    assert_same_second, by_name, condition, container, docker_id, is_empty, map_of, names, status,
    string_map,
};
use support::service::{chunked, missing_socket, settings_for};
use support::{Collector, Container, HOST_IP, Instance, NODE_NAME, Node, PROCESSOR_PATH, Pod};
use support::{Volume, util};

const MI: i64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// 1. Static control-plane pod on the host network, restarted 31 times.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn static_control_plane_pod_with_restarts() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let kubeconfig = node.host_dir().join("scheduler.conf");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    // The test app image has a `kube-scheduler` script that sleeps.
    let command = [
        "kube-scheduler",
        "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
        "--bind-address=127.0.0.1",
        "--kubeconfig=/etc/kubernetes/scheduler.conf",
        "--leader-elect=true",
    ];
    let created = node
        .run(
            Pod::new(node.ns("kube-system"), "kube-scheduler-test-node")
                .host_network()
                .static_pod()
                .label("component", "kube-scheduler")
                .label("tier", "control-plane")
                .volume(Volume::host_path("kubeconfig", &kubeconfig))
                .container(
                    Container::new("kube-scheduler")
                        .command(command)
                        .cpu_request(100)
                        .mount("kubeconfig", "/etc/kubernetes/scheduler.conf", true)
                        .first_attempt(30)
                        .instance(Instance::Exit(2))
                        .instance(Instance::Running),
                ),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(
        string_map(&pod["metadata"]["labels"]),
        map_of(&[("component", "kube-scheduler"), ("tier", "control-plane")])
    );
    let ann = string_map(&pod["metadata"]["annotations"]);
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(ann["kubernetes.io/config.hash"], created.uid);
    assert!(ann.contains_key("kubernetes.io/config.seen"));

    // spec
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], true, "spec.hostNetwork");
    let c = container(&pod, "kube-scheduler");
    assert_eq!(c["command"], json!(command), "command");
    assert!(
        is_empty(&c["args"]),
        "args: Cmd was not set, got {}",
        c["args"]
    );
    assert!(
        is_empty(&c["env"]),
        "env: only the image's PATH and IMAGE_DEFAULT are set, got {}",
        c["env"]
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m"}),
        "requests"
    );
    assert!(
        is_empty(&c["resources"]["limits"]),
        "limits: {}",
        c["resources"]
    );
    assert!(is_empty(&c["ports"]), "ports: {}", c["ports"]);
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    // The hostPath volume: the mount (not the termination log nor /etc/hosts) and the volume.
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(
        mounts.len(),
        1,
        "only the kubeconfig is a volume: {mounts:?}"
    );
    assert_eq!(mounts[0]["mountPath"], "/etc/kubernetes/scheduler.conf");
    assert_eq!(mounts[0]["readOnly"], true);
    let vol_name = mounts[0]["name"].as_str().expect("mount name");
    let vol = by_name(&spec["volumes"], vol_name)
        .unwrap_or_else(|| panic!("no volume {vol_name} in {}", spec["volumes"]));
    assert_eq!(
        vol["hostPath"]["path"],
        kubeconfig.display().to_string(),
        "hostPath volume"
    );
    assert_app_image(&node, &pod, "kube-scheduler").await;

    // status
    let st = status(&pod, "kube-scheduler");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        pod["status"]["podIP"], HOST_IP,
        "podIP of a host-network pod"
    );
    assert_eq!(pod["status"]["podIPs"], json!([{"ip": HOST_IP}]));
    let (sandbox_started, _) = util::state_times(&node.docker, &created.sandbox_id).await;
    assert_same_second(&pod["status"]["startTime"], &sandbox_started, "startTime");
    assert_eq!(st["restartCount"], 31, "restartCount");
    assert_running(
        &node,
        st,
        created.instance("kube-scheduler", 31),
        "kube-scheduler",
    )
    .await;
    assert_terminated(
        &node,
        &st["lastState"]["terminated"],
        created.instance("kube-scheduler", 30),
        2,
        "Error",
        "lastState",
    )
    .await;
    all_conditions(&pod, "True");

    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Two containers with ports, requests/limits, volumes and a secret in the environment.
// ---------------------------------------------------------------------------------------------
const SECRET: &str = "s3cr3t-Pa55w0rd";

fn checkout_pod(ns: String) -> Pod {
    Pod::new(ns, "checkout-7d9f8b6c5-x2x9z")
        .label("app", "checkout")
        .label("pod-template-hash", "7d9f8b6c5")
        .annotation("prometheus.io/scrape", "true")
        .volume(Volume::secret("db-credentials"))
        .volume(Volume::projected("kube-api-access-q7x2m"))
        .volume(Volume::empty_dir("cache"))
        .container(
            Container::new("api")
                .cpu(250, 500)
                .memory_request(64 * MI)
                .memory_limit(128 * MI)
                .port("http", 8080)
                .port("metrics", 9090)
                .env("DB_HOST", "postgres.shop.svc")
                .env("DB_PASSWORD", SECRET)
                .mount("db-credentials", "/etc/db", true)
                .mount(
                    "kube-api-access-q7x2m",
                    "/var/run/secrets/kubernetes.io/serviceaccount",
                    true,
                )
                .mount("cache", "/cache", false),
        )
        .container(
            Container::new("log-shipper")
                .command(["sh", "-c"])
                .args(["while true; do sleep 5; done"])
                .cpu_request(50)
                .memory_limit(32 * MI)
                .mount("cache", "/cache", true),
        )
}

#[tokio::test]
async fn two_containers_with_resources_ports_volumes_and_secret_env() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node.run(checkout_pod(node.ns("shop"))).await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let spec = &pod["spec"];
    assert!(
        spec["hostNetwork"].is_null() || spec["hostNetwork"] == false,
        "hostNetwork: {}",
        spec["hostNetwork"]
    );

    // api: the image's own CMD runs, so no command/args; env minus the image's; redacted.
    let api = container(&pod, "api");
    assert!(is_empty(&api["command"]), "api command: {}", api["command"]);
    assert!(
        is_empty(&api["args"]),
        "api args (image CMD): {}",
        api["args"]
    );
    assert_eq!(
        names(&api["env"]),
        vec!["DB_HOST", "DB_PASSWORD"],
        "env minus the image's PATH and IMAGE_DEFAULT"
    );
    let password = by_name(&api["env"], "DB_PASSWORD").unwrap();
    assert_ne!(
        password["value"], SECRET,
        "env values are redacted by default"
    );
    assert!(
        !pod.to_string().contains(SECRET),
        "the secret leaks somewhere in the pod: {pod}"
    );
    assert_eq!(
        api["ports"],
        json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        ]),
        "ports from the annotation"
    );
    assert_eq!(
        api["resources"],
        json!({
            "requests": {"cpu": "250m"},
            "limits": {"cpu": "500m", "memory": "128Mi"}
        }),
        "api resources (memory requests never reach Docker)"
    );
    let mut mounts: Vec<(String, String, bool)> = api["volumeMounts"]
        .as_array()
        .expect("api volumeMounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        vec![
            ("cache".to_string(), "/cache".to_string(), false),
            ("db-credentials".to_string(), "/etc/db".to_string(), true),
            (
                "kube-api-access-q7x2m".to_string(),
                "/var/run/secrets/kubernetes.io/serviceaccount".to_string(),
                true
            ),
        ],
        "api volumeMounts (no termination log, no /etc/hosts)"
    );
    for (name, kind) in [
        ("db-credentials", "secret"),
        ("kube-api-access-q7x2m", "projected"),
        ("cache", "emptyDir"),
    ] {
        let v = by_name(&spec["volumes"], name)
            .unwrap_or_else(|| panic!("no volume {name} in {}", spec["volumes"]));
        assert!(v.get(kind).is_some(), "volume {name} should be {kind}: {v}");
    }
    assert_app_image(&node, &pod, "api").await;

    // log-shipper: command and args as given.
    let ship = container(&pod, "log-shipper");
    assert_eq!(ship["command"], json!(["sh", "-c"]));
    assert_eq!(ship["args"], json!(["while true; do sleep 5; done"]));
    assert_eq!(
        ship["resources"],
        json!({"requests": {"cpu": "50m"}, "limits": {"memory": "32Mi"}}),
        "log-shipper resources"
    );
    assert!(is_empty(&ship["env"]), "log-shipper env: {}", ship["env"]);
    assert!(is_empty(&ship["ports"]), "log-shipper ports");

    // status
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(
        is_empty(&pod["status"]["podIP"]),
        "no address is known for a sandbox without eth0: {}",
        pod["status"]["podIP"]
    );
    for name in ["api", "log-shipper"] {
        let st = status(&pod, name);
        assert_running(&node, st, created.current(name), name).await;
        assert_eq!(st["restartCount"], 0, "{name} restartCount");
        assert!(
            is_empty(&st["lastState"]),
            "{name} lastState: {}",
            st["lastState"]
        );
    }
    all_conditions(&pod, "True");
    collector.shutdown().await;

    // With reveal_env the operator sees the value.
    let mut settings = settings_for(&node);
    settings.reveal_env = true;
    let revealing = Collector::start_with(settings).await;
    let pod = revealing.pod(&created.namespace, &created.name).await;
    let api = container(&pod, "api");
    assert_eq!(
        by_name(&api["env"], "DB_PASSWORD").unwrap()["value"],
        SECRET
    );
    assert_eq!(
        by_name(&api["env"], "DB_HOST").unwrap()["value"],
        "postgres.shop.svc"
    );
    revealing.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. OOM-killed, then restarted.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn oom_killed_container_restarted() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("batch"), "memhog").container(
                Container::new("hog")
                    .memory_limit(16 * MI)
                    .instance(Instance::OomKilled)
                    .instance(Instance::Running),
            ),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let c = container(&pod, "hog");
    assert_eq!(c["resources"], json!({"limits": {"memory": "16Mi"}}));
    let st = status(&pod, "hog");
    assert_eq!(st["restartCount"], 1);
    assert_running(&node, st, created.current("hog"), "hog").await;
    assert_terminated(
        &node,
        &st["lastState"]["terminated"],
        created.previous("hog"),
        137,
        "OOMKilled",
        "hog lastState",
    )
    .await;
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4./5. Jobs: the sandbox is stopped once the pod is done.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn completed_job_succeeded() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("jobs"), "pi-29123456-abcde")
                .label("job-name", "pi-29123456")
                .label("batch.kubernetes.io/controller-uid", "8d3a7a1c")
                .container(Container::new("pi").instance(Instance::Exit(0)))
                .finished(),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let c = container(&pod, "pi");
    assert_eq!(c["command"], json!(["sh", "-c", "exit 0"]));
    assert!(is_empty(&c["resources"]), "resources: {}", c["resources"]);
    let st = status(&pod, "pi");
    assert_terminated(
        &node,
        &st["state"]["terminated"],
        created.current("pi"),
        0,
        "Completed",
        "pi state",
    )
    .await;
    assert_eq!(st["containerID"], docker_id(created.current("pi")));
    assert_eq!(st["ready"], false);
    assert_eq!(st["started"], false);
    assert_eq!(st["restartCount"], 0);
    assert!(is_empty(&st["lastState"]), "lastState: {}", st["lastState"]);
    let ready = condition(&pod, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False");
    collector.shutdown().await;
}

#[tokio::test]
async fn failed_job_with_termination_message() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let message = "cannot reach db:5432: connection refused";
    let created = node
        .run(
            Pod::new(node.ns("jobs"), "migrate-db-x7k2p")
                .label("job-name", "migrate-db")
                .container(
                    Container::new("migrate")
                        .cpu(100, 100)
                        .memory_limit(64 * MI)
                        .instance(Instance::ExitWithMessage(1, message.into())),
                )
                .finished(),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    assert_eq!(
        container(&pod, "migrate")["resources"],
        json!({
            "requests": {"cpu": "100m"},
            "limits": {"cpu": "100m", "memory": "64Mi"}
        }),
        "Guaranteed resources (no memory request from Docker)"
    );
    let st = status(&pod, "migrate");
    let term = &st["state"]["terminated"];
    assert_terminated(&node, term, created.current("migrate"), 1, "Error", "state").await;
    let got = term["message"].as_str().unwrap_or_default();
    assert!(
        got.contains(message),
        "message should hold the termination-log text {message:?}, got {got:?}"
    );
    assert_eq!(st["ready"], false);
    assert_eq!(st["restartCount"], 0);
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Created, never started.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn created_never_started_is_pending() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "slow-start")
                .container(Container::new("app").instance(Instance::Created)),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["phase"], "Pending");
    let st = status(&pod, "app");
    assert_eq!(
        st["state"],
        json!({"waiting": {"reason": "ContainerCreating"}}),
        "state"
    );
    assert_eq!(st["ready"], false);
    assert_eq!(st["started"], false);
    assert_eq!(st["restartCount"], 0);
    let ready = condition(&pod, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "False");
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. The same pod name in two namespaces: two pods.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn same_name_in_two_namespaces() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let a = node
        .run(
            Pod::new(node.ns("team-a"), "web")
                .label("team", "a")
                .container(Container::new("nginx")),
        )
        .await;
    let b = node
        .run(
            Pod::new(node.ns("team-b"), "web")
                .label("team", "b")
                .container(Container::new("httpd").cpu_request(200))
                .container(Container::new("exporter")),
        )
        .await;

    for created in [&a, &b] {
        let pod = collector.pod(&created.namespace, "web").await;
        assert_pod_identity(&pod, created);
        let mut status_names = names(&pod["status"]["containerStatuses"]);
        status_names.sort();
        let mut want: Vec<String> = created.containers.iter().map(|(n, _)| n.clone()).collect();
        want.sort();
        assert_eq!(
            status_names, want,
            "{}: containerStatuses",
            created.namespace
        );
        for (name, _) in &created.containers {
            assert_eq!(
                status(&pod, name)["containerID"],
                docker_id(created.current(name)),
                "{}/{name}",
                created.namespace
            );
        }
    }
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. The HTTP contract.
// ---------------------------------------------------------------------------------------------
#[tokio::test]
async fn bad_requests_answer_400() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", b"".to_vec()),
        ("not JSON", b"pod.name=x".to_vec()),
        ("truncated JSON", br#"{"pod.namespace":"default","#.to_vec()),
        (
            "an array",
            br#"[{"pod.namespace":"default","pod.name":"x"}]"#.to_vec(),
        ),
        ("a string", br#""default/x""#.to_vec()),
        ("null", b"null".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("no pod.name", br#"{"pod.namespace":"default"}"#.to_vec()),
        ("no pod.namespace", br#"{"pod.name":"x"}"#.to_vec()),
        (
            "empty pod.name",
            br#"{"pod.namespace":"default","pod.name":""}"#.to_vec(),
        ),
        (
            "empty pod.namespace",
            br#"{"pod.namespace":"","pod.name":"x"}"#.to_vec(),
        ),
        (
            "numeric pod.name",
            br#"{"pod.namespace":"default","pod.name":5}"#.to_vec(),
        ),
        (
            "null pod.namespace",
            br#"{"pod.namespace":null,"pod.name":"x"}"#.to_vec(),
        ),
        (
            "object pod.name",
            br#"{"pod.namespace":"default","pod.name":{"a":"b"}}"#.to_vec(),
        ),
    ];
    for (what, body) in bodies {
        let reply = collector.post_raw(body).await;
        assert_eq!(reply.status, 400, "{what}: body {}", reply.body);
        reply.expect_error(400);
    }
    collector.shutdown().await;
}

#[tokio::test]
async fn unknown_pod_answers_404_naming_it() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let ns = node.ns("nowhere");
    let reply = collector.ask(&ns, "ghost-pod").await;
    let text = reply.expect_error(404);
    assert!(
        text.contains(&ns) && text.contains("ghost-pod"),
        "the error should name the pod: {text}"
    );

    // A pod of that name elsewhere does not count.
    let other = node
        .run(Pod::new(node.ns("elsewhere"), "ghost-pod").container(Container::new("app")))
        .await;
    collector.ask(&ns, "ghost-pod").await.expect_error(404);
    collector.pod(&other.namespace, "ghost-pod").await;
    collector.shutdown().await;
}

#[tokio::test]
async fn wrong_method_answers_405_with_allow() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    for method in ["GET", "PUT", "DELETE"] {
        let reply = collector.request(method, PROCESSOR_PATH, None).await;
        reply.expect_error(405);
        assert_eq!(
            reply.header("allow"),
            Some("POST"),
            "{method}: Allow header"
        );
    }
    collector.shutdown().await;
}

#[tokio::test]
async fn body_over_the_limit_answers_413() {
    let node = Node::new().await;
    let mut settings = settings_for(&node);
    settings.body_limit = 256;
    let collector = Collector::start_with(settings).await;
    let big = json!({
        "pod.namespace": "default",
        "pod.name": "x",
        "padding": "p".repeat(4096),
    });
    collector.post_json(&big).await.expect_error(413);

    // Also when the body comes without Content-Length.
    let body = serde_json::to_vec(&big).unwrap();
    let reply = collector
        .raw_http(
            &format!("POST {PROCESSOR_PATH} HTTP/1.1\r\nTransfer-Encoding: chunked"),
            &chunked(&body, 512),
        )
        .await;
    reply.expect_error(413);

    // A small body still goes through.
    let ns = node.ns("small");
    collector.ask(&ns, "x").await.expect_error(404);
    collector.shutdown().await;
}

#[tokio::test]
async fn any_content_type_chunked_bodies_and_extra_keys_are_accepted() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(Pod::new(node.ns("default"), "echo").container(Container::new("app")))
        .await;
    let body = json!({"pod.namespace": created.namespace, "pod.name": "echo"});
    let bytes = serde_json::to_vec(&body).unwrap();

    // No Content-Type at all (the agent's way), and odd ones.
    let reply = collector.post_raw(bytes.clone()).await;
    assert_eq!(reply.expect_pod()["metadata"]["uid"], created.uid.as_str());
    for ct in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let reply = collector
            .request_with(
                "POST",
                PROCESSOR_PATH,
                Some(bytes.clone()),
                &[("content-type", ct)],
            )
            .await;
        assert_eq!(reply.status, 200, "Content-Type {ct}: {}", reply.body);
        reply.expect_pod();
    }

    // Chunked, no Content-Length, no Content-Type.
    let reply = collector
        .raw_http(
            &format!("POST {PROCESSOR_PATH} HTTP/1.1\r\nTransfer-Encoding: chunked"),
            &chunked(&bytes, 7),
        )
        .await;
    assert_eq!(reply.expect_pod()["metadata"]["uid"], created.uid.as_str());

    // The agent's full context, with non-string values on keys the collector does not read.
    let reply = collector
        .post_json(&json!({
            "pod.namespace": created.namespace,
            "pod.name": "echo",
            "node": NODE_NAME,
            "container": "app",
            "diagnosis.namespace": "default",
            "diagnosis.name": "d1",
            "diagnosis.uid": "4f1c2a5e-0000-4000-8000-000000000001",
            "task.retries": 3,
            "task.labels": {"a": "b"},
            "extra": [1, 2, 3],
            "flag": true,
            "nothing": null,
        }))
        .await;
    assert_eq!(reply.expect_pod()["metadata"]["name"], "echo");
    collector.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let reply = collector.get("/healthz").await;
    assert_eq!(reply.status, 200, "healthz: {}", reply.body);
    let reply = collector.get("/readyz").await;
    assert_eq!(reply.status, 200, "readyz with a daemon: {}", reply.body);
    collector.shutdown().await;
}

#[tokio::test]
async fn missing_daemon_is_not_ready_and_answers_500() {
    let node = Node::new().await;
    let missing = missing_socket(&node.dir);
    let mut settings = settings_for(&node);
    settings.runtime = RuntimeChoice::Docker(missing.clone());
    settings.runtime_timeout = std::time::Duration::from_secs(2);
    let collector = Collector::start_with(settings).await;
    let socket_path = missing.trim_start_matches("unix://");

    let reply = collector.get("/healthz").await;
    assert_eq!(reply.status, 200, "healthz does not depend on the daemon");

    let reply = collector.get("/readyz").await;
    assert_eq!(reply.status, 503, "readyz without a daemon: {}", reply.body);
    assert!(
        reply.body.contains(socket_path),
        "readyz should tell which daemon: {}",
        reply.body
    );

    let reply = collector.ask("default", "web-0").await;
    let text = reply.expect_error(500);
    assert!(
        text.contains(socket_path),
        "the error should name the daemon: {text}"
    );
    assert!(
        text.contains("default/web-0") || (text.contains("default") && text.contains("web-0")),
        "the error should name the pod: {text}"
    );
    collector.shutdown().await;
}

/// Unknown paths are not the processor: they must not answer 200.
#[tokio::test]
async fn unknown_path_is_not_found() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let reply = collector
        .request("POST", "/processor/other", Some(b"{}".to_vec()))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    collector.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// More of SPEC §3/§4: a recreated sandbox, a command that cannot run, host namespaces and
// privileges, init containers, and a pod address given by CNI.
// ---------------------------------------------------------------------------------------------

/// After the sandbox died (e.g. a node reboot) the kubelet made a new one (attempt 1) and
/// restarted the container in it: the newest sandbox wins, the old instance is lastState.
#[tokio::test]
async fn recreated_sandbox_newest_wins() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let ns = node.ns("default");
    let before = node
        .run(
            Pod::new(ns.clone(), "cache-0")
                .label("app", "cache")
                .container(Container::new("redis").instance(Instance::Exit(137)))
                .finished(),
        )
        .await;
    let after = node
        .run(
            Pod::new(ns.clone(), "cache-0")
                .uid(&before.uid)
                .label("app", "cache")
                .sandbox_attempt(1)
                .container(Container::new("redis").first_attempt(1)),
        )
        .await;

    let pod = collector.pod(&ns, "cache-0").await;
    assert_pod_identity(&pod, &after);
    assert_eq!(pod["status"]["phase"], "Running", "the new sandbox runs");
    let (started, _) = util::state_times(&node.docker, &after.sandbox_id).await;
    assert_same_second(&pod["status"]["startTime"], &started, "startTime");
    let st = status(&pod, "redis");
    assert_eq!(st["restartCount"], 1);
    assert_running(&node, st, after.current("redis"), "redis").await;
    assert_terminated(
        &node,
        &st["lastState"]["terminated"],
        before.current("redis"),
        137,
        "Error",
        "redis lastState",
    )
    .await;
    assert_eq!(
        names(&pod["spec"]["containers"]),
        vec!["redis"],
        "one container, however many sandboxes"
    );
    collector.shutdown().await;
}

/// `docker start` failed (no such executable) twice: Docker keeps the instances `created`
/// with exit code 127 and no finish time.
#[tokio::test]
async fn command_that_cannot_run() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "typo").container(
                Container::new("app")
                    .instance(Instance::CannotRun)
                    .instance(Instance::CannotRun),
            ),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(
        pod["status"]["phase"], "Running",
        "the kubelet counts a container that could not start as stopped; the sandbox runs"
    );
    let st = status(&pod, "app");
    assert_eq!(st["restartCount"], 1);
    assert_eq!(st["ready"], false);
    assert_eq!(st["started"], false);
    for (state, id) in [
        (&st["state"]["terminated"], created.current("app")),
        (&st["lastState"]["terminated"], created.previous("app")),
    ] {
        assert!(state.is_object(), "terminated expected: {st}");
        assert_eq!(state["reason"], "ContainerCannotRun", "{state}");
        assert_eq!(state["exitCode"], 127, "{state}");
        assert_eq!(state["containerID"], docker_id(id));
        let message = state["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("no-such-command"),
            "message should be the runtime's error: {message:?}"
        );
        let c = util::inspect(&node.docker, id).await;
        let created_at = c.created.clone().expect("created");
        assert_same_second(&state["startedAt"], &created_at, "startedAt = creation");
        assert_same_second(&state["finishedAt"], &created_at, "finishedAt = creation");
    }
    assert_eq!(
        container(&pod, "app")["command"],
        json!([support::kubelet::MISSING_COMMAND])
    );
    collector.shutdown().await;
}

/// A node agent: host network, host PID and IPC, privileged, a working directory and a
/// hostPath mount; no requests or limits.
#[tokio::test]
async fn privileged_host_namespaces_daemonset_pod() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let host_sys = node.host_dir().join("sys");
    std::fs::create_dir_all(&host_sys).unwrap();
    let created = node
        .run(
            Pod::new(node.ns("monitoring"), "node-exporter-8kq2d")
                .label("app.kubernetes.io/name", "node-exporter")
                .label("controller-revision-hash", "6b9c8d7f5")
                .label("pod-template-generation", "3")
                .annotation("kubernetes.io/psp", "privileged")
                .host_network()
                .host_pid()
                .host_ipc()
                .termination_grace_period(5)
                .volume(Volume::host_path("sys", &host_sys))
                .container(
                    Container::new("node-exporter")
                        .working_dir("/host")
                        .args(["sleep", "3600"])
                        .mount("sys", "/host/sys", true),
                )
                // Privileged containers cannot start on these machines: this one is only
                // created, which is enough for its HostConfig.
                .container(
                    Container::new("privileged-helper")
                        .privileged()
                        .instance(Instance::Created),
                ),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], true, "hostNetwork");
    assert_eq!(spec["hostPID"], true, "hostPID");
    assert_eq!(spec["hostIPC"], true, "hostIPC");
    assert_eq!(spec["terminationGracePeriodSeconds"], 5);
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    assert_eq!(pod["status"]["podIP"], HOST_IP);
    assert_eq!(
        container(&pod, "privileged-helper")["securityContext"]["privileged"],
        true,
        "privileged"
    );
    let c = container(&pod, "node-exporter");
    assert!(
        c["securityContext"]["privileged"].is_null() || c["securityContext"]["privileged"] == false,
        "node-exporter is not privileged: {}",
        c["securityContext"]
    );
    assert_eq!(c["workingDir"], "/host", "workingDir");
    assert!(is_empty(&c["command"]), "command: {}", c["command"]);
    assert_eq!(c["args"], json!(["sleep", "3600"]), "args");
    assert!(is_empty(&c["resources"]), "resources: {}", c["resources"]);
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["mountPath"], "/host/sys");
    assert_eq!(mounts[0]["readOnly"], true);
    let vol = by_name(&spec["volumes"], mounts[0]["name"].as_str().unwrap()).expect("volume");
    assert_eq!(vol["hostPath"]["path"], host_sys.display().to_string());
    assert_running(
        &node,
        status(&pod, "node-exporter"),
        created.current("node-exporter"),
        "node-exporter",
    )
    .await;
    collector.shutdown().await;
}

/// A recent kubelet marks init containers with `io.kubernetes.container.type=init`.
#[tokio::test]
async fn init_containers_are_told_apart() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "app-with-init")
                .container(
                    Container::new("wait-for-db")
                        .container_type("init")
                        .instance(Instance::Exit(0)),
                )
                .container(Container::new("app").container_type("container")),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_eq!(pod["metadata"]["uid"], created.uid.as_str());
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        vec!["wait-for-db"],
        "spec.initContainers"
    );
    assert_eq!(
        names(&pod["spec"]["containers"]),
        vec!["app"],
        "spec.containers"
    );
    assert_eq!(
        names(&pod["status"]["containerStatuses"]),
        vec!["app"],
        "containerStatuses"
    );
    let init = by_name(&pod["status"]["initContainerStatuses"], "wait-for-db")
        .unwrap_or_else(|| panic!("initContainerStatuses: {}", pod["status"]));
    assert_terminated(
        &node,
        &init["state"]["terminated"],
        created.current("wait-for-db"),
        0,
        "Completed",
        "init state",
    )
    .await;
    assert_eq!(pod["status"]["phase"], "Running");
    assert_running(&node, status(&pod, "app"), created.current("app"), "app").await;
    collector.shutdown().await;
}

/// Under CNI the sandbox has `NetworkMode=none`; the pod IP is eth0's address inside the
/// sandbox's network namespace, which Docker does not report.
#[tokio::test]
async fn pod_ip_from_the_sandbox_network_namespace() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "web-5c7b9d")
                .pod_ip("198.51.100.23/24")
                .container(Container::new("web").port("http", 8080)),
        )
        .await;

    let pod = collector.pod(&created.namespace, &created.name).await;
    assert_pod_identity(&pod, &created);
    assert_eq!(pod["status"]["podIP"], "198.51.100.23", "podIP");
    assert_eq!(pod["status"]["podIPs"], json!([{"ip": "198.51.100.23"}]));
    assert_eq!(pod["status"]["hostIP"], HOST_IP);
    collector.shutdown().await;
}

/// A static pod whose manifest is readable: the manifest fills what Docker cannot tell
/// (priority class, probes, memory requests, hostPath volume names); the runtime still says
/// what actually runs.
#[tokio::test]
async fn static_pod_manifest_fills_what_docker_cannot_tell() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let ns = node.ns("kube-system");
    let kubeconfig = node.host_dir().join("scheduler.conf");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: kube-scheduler
  namespace: {ns}
  labels:
    component: kube-scheduler
    tier: control-plane
spec:
  priorityClassName: system-node-critical
  hostNetwork: true
  containers:
  - name: kube-scheduler
    image: registry.k8s.io/kube-scheduler:v1.30.2
    command:
    - kube-scheduler
    - --kubeconfig=/etc/kubernetes/scheduler.conf
    livenessProbe:
      httpGet:
        host: 127.0.0.1
        path: /healthz
        port: 10259
        scheme: HTTPS
      initialDelaySeconds: 10
    resources:
      requests:
        cpu: 100m
        memory: 64Mi
    volumeMounts:
    - name: kubeconfig
      mountPath: /etc/kubernetes/scheduler.conf
      readOnly: true
  volumes:
  - name: kubeconfig
    hostPath:
      path: {path}
      type: FileOrCreate
"#,
        path = kubeconfig.display()
    );
    std::fs::write(
        collector.settings.manifest_dir.join("kube-scheduler.yaml"),
        manifest,
    )
    .unwrap();
    let created = node
        .run(
            Pod::new(ns.clone(), &format!("kube-scheduler-{NODE_NAME}"))
                .host_network()
                .static_pod()
                .label("component", "kube-scheduler")
                .label("tier", "control-plane")
                .volume(Volume::host_path("kubeconfig", &kubeconfig))
                .container(
                    Container::new("kube-scheduler")
                        .command([
                            "kube-scheduler",
                            "--kubeconfig=/etc/kubernetes/scheduler.conf",
                        ])
                        .cpu_request(100)
                        .memory_request(64 * MI)
                        .mount("kubeconfig", "/etc/kubernetes/scheduler.conf", true),
                ),
        )
        .await;

    let pod = collector.pod(&ns, &created.name).await;
    assert_pod_identity(&pod, &created);
    let spec = &pod["spec"];
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    let c = container(&pod, "kube-scheduler");
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"], 10259,
        "probe from the manifest: {c}"
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m", "memory": "64Mi"}),
        "the memory request only the manifest knows"
    );
    assert_eq!(
        c["image"],
        util::app_image().as_str(),
        "the runtime says what image actually runs"
    );
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(
        mounts[0]["name"], "kubeconfig",
        "volume name from the manifest"
    );
    let vol = by_name(&spec["volumes"], "kubeconfig")
        .unwrap_or_else(|| panic!("volumes: {}", spec["volumes"]));
    assert_eq!(vol["hostPath"]["path"], kubeconfig.display().to_string());
    assert_eq!(
        spec["volumes"].as_array().map(Vec::len),
        Some(1),
        "no duplicate volume: {}",
        spec["volumes"]
    );
    collector.shutdown().await;
}

/// Containers whose sandbox is gone still belong to the pod (same UID label).
#[tokio::test]
async fn containers_outlive_their_removed_sandbox() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "orphaned")
                .label("app", "orphaned")
                .container(Container::new("app").cpu_request(100)),
        )
        .await;
    node.docker
        .remove_container(
            &created.sandbox_id,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .expect("remove the sandbox");

    let pod = collector.pod(&created.namespace, &created.name).await;
    let meta = &pod["metadata"];
    assert_eq!(meta["name"], "orphaned");
    assert_eq!(meta["namespace"], created.namespace.as_str());
    assert_eq!(meta["uid"], created.uid.as_str());
    assert_eq!(names(&pod["spec"]["containers"]), vec!["app"]);
    assert_eq!(
        status(&pod, "app")["containerID"],
        docker_id(created.current("app"))
    );
    collector.shutdown().await;
}

/// Malformed annotation values are ignored, never a 500; names may carry the seventh
/// `_<8 hex>` part of a name clash.
#[tokio::test]
async fn malformed_annotations_and_clashing_names_are_tolerated() {
    let node = Node::new().await;
    let collector = Collector::start(&node).await;
    let created = node
        .run(
            Pod::new(node.ns("default"), "odd")
                .name_clash_suffix()
                .container(
                    Container::new("app")
                        .port("http", 8080)
                        .raw_annotation("io.kubernetes.container.ports", "[{not json")
                        .raw_annotation("io.kubernetes.pod.terminationGracePeriod", "soon")
                        .raw_annotation("io.kubernetes.container.preStopHandler", "{{{")
                        .raw_annotation("io.kubernetes.container.type", "sidecar-ish")
                        .raw_annotation("io.kubernetes.container.terminationMessagePolicy", ""),
                )
                .container(
                    Container::new("counter")
                        .raw_annotation("io.kubernetes.container.restartCount", "-x-")
                        .raw_annotation("io.kubernetes.pod.terminationGracePeriod", "soon"),
                ),
        )
        .await;

    let reply = collector.ask(&created.namespace, "odd").await;
    let pod = reply.expect_pod();
    assert_eq!(pod["metadata"]["uid"], created.uid.as_str());
    let mut all = names(&pod["spec"]["containers"]);
    all.sort();
    assert_eq!(all, vec!["app", "counter"], "an unknown type is not init");
    let app = container(&pod, "app");
    assert!(
        is_empty(&app["ports"]),
        "broken ports left out: {}",
        app["ports"]
    );
    assert!(
        pod["spec"]["terminationGracePeriodSeconds"].is_null(),
        "a broken grace period is left out: {}",
        pod["spec"]["terminationGracePeriodSeconds"]
    );
    assert_running(&node, status(&pod, "app"), created.current("app"), "app").await;
    let counter = status(&pod, "counter");
    assert!(
        counter["restartCount"].is_null() || counter["restartCount"] == 0,
        "a broken restartCount is not invented: {}",
        counter["restartCount"]
    );
    assert_running(&node, counter, created.current("counter"), "counter").await;
    collector.shutdown().await;
}

/// The fixtures' own date arithmetic (for `kubernetes.io/config.seen`).
#[test]
fn fixture_civil_dates() {
    assert_eq!(util::civil_from_days(0), (1970, 1, 1));
    assert_eq!(util::civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(util::civil_from_days(19_782), (2024, 2, 29));
}
